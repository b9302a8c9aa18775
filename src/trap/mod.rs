//! Traps: their codes, the signal handlers that catch them in JIT code (shared by every
//! runtime of the process), the resume-after-trap primitive, and the `Trap` value with
//! its backtrace.

mod backtrace;
mod code;
pub mod handler;
mod resume;
mod source_location;
mod wasm_backtrace;

pub use backtrace::{Backtrace, FrameInfo, HostError, Trap};
pub use code::{TrapCode, CUSTOM_RAW_BASE, HOST_ERROR_USER_CODE, INTERRUPT_USER_CODE};
pub use handler::{
    ensure_alt_stack, register, TrapHandlerError, TrapHandlerRegistration, TrapHooks,
};
pub use resume::{call_resumable, resume, ResumePoint};
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
