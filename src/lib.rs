//! framewalk: walks the stacks of Cranelift-compiled WebAssembly without libunwind.
//!
//! # What it does
//!
//! framewalk compiles WebAssembly 2.0 (without SIMD) with Cranelift into an ELF artifact
//! and runs it. Every host → wasm call pushes an activation record; every wasm → host call
//! records where wasm was left. A frame-pointer walker ([`unwind`]) steps only through the
//! wasm frames inside each activation, so host frames in between — C built without frame
//! pointers, another JIT — are never read. The same walk gives:
//!
//! - exact trap backtraces ([`Trap`], via signal handlers in [`trap`], no `setjmp`);
//! - the stack roots of a deferred-reference-counting collector for `externref` ([`gc`]),
//!   found through a stack-map section stored in the artifact ([`stackmap`],
//!   [`artifact`]).
//!
//! # What the caller provides
//!
//! An [`Engine`], modules (`.wat`, `.wasm` or artifacts), a [`Store`] with host data, and
//! imports ([`Func::wrap`], [`Func::new`], [`Memory`], [`Table`], [`Global`]). A runtime
//! with its own compiler can use [`unwind`], [`stackmap`] and [`gc`] alone: they see the
//! world through an activation list, a code-lookup trait and a stack reader.
//!
//! # Non-goals
//!
//! Other architectures than x86-64 Linux (the per-architecture facts live in `arch/`),
//! SIMD and post-2.0 proposals (rejected with a typed error), moving collection.
//!
//! # Example
//!
//! ```
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
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[path = "../arch/mod.rs"]
pub mod arch;
pub mod artifact;
pub mod compile;
pub mod gc;
pub mod runtime;
pub mod stackmap;
pub mod trap;
pub mod types;
pub mod unwind;

pub use gc::ExternRef;
pub use runtime::{
    Caller, Config, Engine, Error, Extern, Func, Global, Instance, Memory, Module, Store, Table,
    Trap, TypedFunc, Val,
};
pub use types::{FuncType, GlobalType, Limits, MemoryType, TableType, ValType};
