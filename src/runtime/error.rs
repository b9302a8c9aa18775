//! Errors the runtime API returns.

use crate::trap::TrapCode;
use std::fmt;

/// An error a host function returned, carried back to the host that called into wasm.
pub type HostError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A wasm trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    code: TrapCode,
}

impl Trap {
    /// A trap with `code`.
    pub fn new(code: TrapCode) -> Trap {
        Trap { code }
    }

    /// Why execution stopped.
    pub fn code(&self) -> TrapCode {
        self.code
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasm trap: {}", self.code.message())
    }
}

impl std::error::Error for Trap {}

/// Everything that can go wrong using the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating or loading a module failed.
    #[error(transparent)]
    Module(#[from] super::module::ModuleLoadError),
    /// An import could not be satisfied.
    #[error("{reason}: {module}::{name}")]
    Link {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// "unknown import" or "incompatible import type ...".
        reason: String,
    },
    /// Execution trapped (including during instantiation).
    #[error(transparent)]
    Trap(#[from] Trap),
    /// A host function returned an error.
    #[error("host function error: {0}")]
    Host(HostError),
    /// Values or types passed to the API do not match.
    #[error("type mismatch: {0}")]
    TypeMismatch(String),
    /// An object from one store was used with another.
    #[error("object used with the wrong store")]
    WrongStore,
    /// The OS refused a resource (memory reservation, ...).
    #[error("resource limit: {0}")]
    Resource(String),
    /// An index is out of range.
    #[error("out of bounds: {0}")]
    OutOfBounds(String),
}

impl Error {
    /// The trap, if this error is one.
    pub fn as_trap(&self) -> Option<&Trap> {
        match self {
            Error::Trap(t) => Some(t),
            _ => None,
        }
    }
}
