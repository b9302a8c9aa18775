//! Source-level debug information for backtraces: a module's DWARF read into flat,
//! sorted tables ([`SourceMap`]), and the demangling of Rust and C++ names
//! ([`demangle`]).
//!
//! Toolchains that target wasm (clang, rustc) put DWARF in custom sections named
//! `.debug_info`, `.debug_line`, … In those sections an address is an offset from the
//! start of the code section's contents (the byte after the section's size), not from
//! the start of the binary; [`SourceMap`] converts, so its callers speak in the same
//! offsets as every other part of framewalk (an instruction's offset in the `.wasm`).
//!
//! Invariants:
//! - the DWARF is untrusted input: reading it never panics, and a malformed unit is
//!   an error ([`DebugInfoError`]), never a wrong location;
//! - a lookup allocates only the locations it returns and costs two binary searches
//!   plus a scan of the inlined calls of one function;
//! - DWARF that this reader does not understand (a form it cannot resolve, an address
//!   wider than 32 bits) leaves a location out rather than guessing.

mod demangle;
mod source_map;

pub use demangle::demangle;
pub use source_map::{DebugInfoError, SourceMap};
