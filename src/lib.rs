//! framewalk: walks the stacks of Cranelift-compiled WebAssembly without libunwind.
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
