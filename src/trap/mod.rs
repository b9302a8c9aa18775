//! Traps: their codes now; signal handling and backtraces come with the walker.

mod code;

pub use code::{TrapCode, HOST_ERROR_USER_CODE};
