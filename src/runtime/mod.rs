//! The runtime: engines, modules loaded from artifacts, stores, instances, functions,
//! memories, tables and globals, and the linker that instantiates modules by import name.

mod code_memory;
mod engine;
pub(crate) mod entry;
mod error;
mod externals;
mod func;
mod gc_roots;
mod gdb_jit;
mod host_call;
mod instance;
mod libcalls;
mod linker;
pub(crate) mod module;
pub(crate) mod registry;
pub(crate) mod storage;
mod store;
mod values;
pub mod vmcontext;

pub use crate::trap::{HostError, Trap};
pub use code_memory::{CodeMemory, CodeMemoryError};
pub use engine::{Config, Engine, DEFAULT_WASM_BACKTRACE_MAX_FRAMES};
pub use error::{Error, LinkError};
pub use externals::{Global, Memory, Table};
pub use func::{Func, HostResult, IntoFunc, NoParams, TypedFunc, WithParams};
pub use instance::{Extern, Instance};
pub use linker::Linker;
pub use module::{compile_artifact, FunctionSymbol, Module, ModuleLoadError};
pub use store::{AsStore, AsStoreMut, Caller, Store, StoreOpaque, GC_THRESHOLD_FLOOR};
pub use values::{Val, WasmTuple, WasmTy, V128};
