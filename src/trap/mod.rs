//! Traps: their codes, the signal handlers that catch them in wasm code, and the
//! `Trap` value with its backtrace.

mod backtrace;
mod code;
pub mod handler;
mod wasm_backtrace;

pub use backtrace::{Backtrace, FrameInfo, HostError, Trap};
pub use code::{TrapCode, HOST_ERROR_USER_CODE};
pub use wasm_backtrace::{FrameSymbols, WasmBacktrace, WasmFrame};
