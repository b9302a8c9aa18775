//! framewalk: walks the stacks of Cranelift-compiled WebAssembly without libunwind.
//!
//! # What it does
//!
//! framewalk compiles WebAssembly 2.0 (SIMD included; with relaxed SIMD,
//! extended-const, multi-memory, memory64 and tail calls) with Cranelift into an ELF
//! artifact and runs it. `v128` values ([`Val::V128`], [`V128`]) go everywhere a value
//! goes; they are never GC roots. Every host → wasm call pushes an activation record;
//! every wasm → host call records where wasm was left. A frame-pointer walker
//! ([`unwind`]) steps only through the wasm frames inside each activation, so host
//! frames in between — C built without frame pointers, another JIT — are never read.
//! The same walk gives:
//!
//! - exact trap backtraces ([`trap::Trap`], via signal handlers in [`trap`], no `setjmp`);
//! - the stack roots of a deferred-reference-counting collector for `externref` ([`gc`]),
//!   found through a stack-map section stored in the artifact ([`stackmap`],
//!   [`artifact`]).
//!
//! # What the caller provides
//!
//! An [`Engine`], modules (`.wat`, `.wasm` or artifacts), a [`Store`] with host data, and
//! imports ([`Func::wrap`], [`Func::new`], [`Memory`], [`Table`], [`Global`], or the
//! built-in host module of `framewalk run`, [`host`]), defined by name in a [`Linker`] or
//! given in import order to [`Instance::new`]. A runtime
//! with its own compiler can use [`unwind`], [`stackmap`], [`gc`] and [`trap`] alone: they
//! see the world through an activation list, a code-lookup trait and a stack reader,
//! and several runtimes can share one process (its trap handlers, its stacks).
//!
//! WASI preview 1 programs (C through wasi-libc, Rust for `wasm32-wasip1`) run with
//! [`wasi`] (feature `wasi`): its functions defined in a [`Linker`], with arguments,
//! environment, stdio and preopened directories confined to what was preopened.
//!
//! # Non-goals
//!
//! Other architectures than x86-64 Linux (the per-architecture facts live in `arch/`),
//! (for now) the other post-2.0 proposals (threads, exceptions, GC, function
//! references, ...): a module that needs one is refused with a typed error naming it;
//! moving collection.
//!
//! # Features
//!
//! - `runtime` (default): the compiler, artifacts, `Store`/`Instance`/`Func` and the CLI.
//! - `wasi` (default): WASI preview 1 ([`wasi`], `framewalk run` of WASI programs) on
//!   wasi-common 25 and cap-std.
//! - `cranelift`: only the adapter from Cranelift 0.112's stack maps
//!   ([`stackmap::cranelift`]) for a runtime with its own Cranelift compiler.
//! - With `default-features = false`, the drop-in layers alone: [`unwind`],
//!   [`stackmap`], [`gc`], [`trap`] and [`arch`], with no Cranelift, wasmparser or
//!   `object` dependency. `docs/EMBEDDING.md` is the guide (the contract, and what
//!   breaking each rule does); `examples/jit/` is a second runtime built on them with
//!   `cranelift-jit`, and `examples/dropin.rs` the smallest one.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "runtime")] {
//! use framewalk::{Caller, Engine, Extern, Func, Instance, Module, Store};
//!
//! let engine = Engine::new(Default::default())?;
//! let module = Module::new(&engine, br#"
//!     (module $demo
//!       (import "host" "depth" (func $depth (result i32)))
//!       (func $inner (result i32) (call $depth))
//!       (func (export "outer") (result i32) (call $inner)))
//! "#)?;
//! let mut store = Store::new(&engine, ());
//! // A host function that walks the wasm stack it was called from.
//! let depth = Func::wrap(&mut store, |caller: Caller<'_, ()>, (): ()| -> i32 {
//!     caller.backtrace().map(|frames| frames.len() as i32).unwrap_or(-1)
//! })?;
//! let instance = Instance::new(&mut store, &module, &[Extern::Func(depth)])?;
//! let outer = instance.get_func(&store, "outer").unwrap().typed::<(), i32>(&store)?;
//! assert_eq!(outer.call(&mut store, ())?, 2); // $inner and the exported function
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// The crate docs describe the runtime too; without it those links have no target.
#![cfg_attr(not(feature = "runtime"), allow(rustdoc::broken_intra_doc_links))]

#[path = "../arch/mod.rs"]
pub mod arch;
#[cfg(feature = "runtime")]
pub mod artifact;
#[cfg(feature = "runtime")]
pub mod compile;
#[cfg(feature = "debuginfo")]
pub mod debuginfo;
pub mod gc;
#[cfg(feature = "runtime")]
pub mod host;
#[cfg(feature = "profile")]
pub mod profile;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod stackmap;
pub mod trap;
#[cfg(feature = "runtime")]
pub mod types;
pub mod unwind;
#[cfg(feature = "wasi")]
pub mod wasi;

#[cfg(test)]
mod test_rng;

// The build script sets this cfg when the `cranelift` feature is on but the resolved
// cranelift-frontend is the crates.io release rather than the patched copy in
// third_party/ (see build.rs and third_party/cranelift-frontend/FRAMEWALK-PATCH.md).
#[cfg(framewalk_unpatched_cranelift_frontend)]
compile_error!(
    "framewalk needs its patched cranelift-frontend 0.112.3, but the crates.io release was \
     resolved. Its safepoint spiller reuses a stack slot of a reference that is still live \
     through a loop, so a garbage collection frees a reference that wasm still holds. \
     `[patch]` sections of a dependency are not inherited: add to the Cargo.toml at the \
     root of your workspace \
     `[patch.crates-io] cranelift-frontend = { path = \"<framewalk>/third_party/cranelift-frontend\" }` \
     (or the same folder through `git = ...`), or build framewalk with \
     `default-features = false` to use only the drop-in layers (unwind, stackmap, gc, trap)."
);

pub use gc::ExternRef;
#[cfg(feature = "runtime")]
pub use runtime::{
    Caller, Config, Engine, Error, Extern, Func, Global, Instance, LinkError, Linker, Memory,
    Module, Store, Table, Trap, TypedFunc, Val, V128,
};
pub use trap::TrapCode;
#[cfg(feature = "runtime")]
pub use types::{ExternType, FuncType, GlobalType, Limits, MemoryType, TableType, ValType};
