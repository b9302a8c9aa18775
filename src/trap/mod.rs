//! Traps: their codes, the signal handlers that catch them in wasm code, and the
//! `Trap` value with its backtrace.

mod backtrace;
mod code;
pub mod handler;
mod source_location;
mod wasm_backtrace;

pub use backtrace::{Backtrace, FrameInfo, HostError, Trap};
pub use code::{TrapCode, HOST_ERROR_USER_CODE};
pub use source_location::SourceLocation;
pub use wasm_backtrace::{FrameSymbols, WasmBacktrace, WasmFrame};

/// A function name as a backtrace prints it: demangled (Rust and C++) when framewalk is
/// built with the `debuginfo` feature, as it is otherwise.
pub fn display_name(name: &str) -> std::borrow::Cow<'_, str> {
    #[cfg(feature = "debuginfo")]
    {
        crate::debuginfo::demangle(name)
    }
    #[cfg(not(feature = "debuginfo"))]
    {
        std::borrow::Cow::Borrowed(name)
    }
}
