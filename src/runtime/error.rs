//! Errors the runtime API returns.

use crate::trap::Trap;
use crate::types::ExternType;

/// Everything that can go wrong using the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating or loading a module failed.
    #[error(transparent)]
    Module(#[from] super::module::ModuleLoadError),
    /// An import could not be satisfied, or a [`Linker`](super::Linker) definition was
    /// refused.
    #[error(transparent)]
    Link(#[from] LinkError),
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

/// Why imports could not be resolved, or a [`Linker`](super::Linker) refused a
/// definition. Imports are named as the text format writes them, `"module" "name"`,
/// and types as an import declares them (`(func (param i32))`, `(memory 1)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The linker has no definition for an import the module needs.
    #[error("unknown import: \"{module}\" \"{name}\" {ty} has not been defined")]
    UnknownImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
        /// The type the module imports.
        ty: ExternType,
    },
    /// The definition given for an import has another type than the module declares
    /// (for memories and tables: limits that do not satisfy the import's; their
    /// current size counts as the minimum).
    #[error(
        "incompatible import type for \"{module}\" \"{name}\": the module imports {expected}, \
         but the definition is {actual}"
    )]
    IncompatibleImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
        /// The type the module imports (boxed, as `actual`, to keep [`Error`] small).
        expected: Box<ExternType>,
        /// The type of the definition.
        actual: Box<ExternType>,
    },
    /// A second definition of a name while shadowing is off.
    #[error(
        "\"{module}\" \"{name}\" is already defined (call Linker::allow_shadowing(true) \
         to let a later definition replace it)"
    )]
    Duplicate {
        /// The definition's module name.
        module: String,
        /// The definition's field name.
        name: String,
    },
    /// A definition belongs to another store than the one it is defined or
    /// instantiated with.
    #[error("\"{module}\" \"{name}\" belongs to another store than the one it is used with")]
    WrongStore {
        /// The definition's module name.
        module: String,
        /// The definition's field name.
        name: String,
    },
    /// The linker was made for another engine than the store's.
    #[error("the linker was made for another engine than the store's")]
    WrongEngine,
}
