//! Errors the runtime API returns.

use crate::trap::Trap;

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
    /// An instance has no export of this name.
    #[error("unknown export: `{0}`")]
    UnknownExport(String),
    /// Execution trapped (including during instantiation).
    #[error(transparent)]
    Trap(#[from] Trap),
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
