//! x86-64: frame layout facts for Cranelift code compiled with frame pointers, the
//! host → wasm entry and resume-after-trap assembly, the runtime-neutral resumable
//! call, the wasm → host exits, and signal-context access.
//!
//! `arch/mod.rs` re-exports the items of this module; nothing else names
//! `arch::x86_64` directly.

pub mod entry;
pub mod exit;
pub mod frame;
pub mod resume;
pub mod signal;
