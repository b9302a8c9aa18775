//! The compiled-module artifact: an ELF object holding the machine code and framewalk's
//! metadata sections. `sections` lists them with their layouts; `write` produces an
//! artifact from a [`CompiledModule`](crate::compile::CompiledModule); `read` validates
//! untrusted bytes and exposes borrowed views.

pub mod read;
pub mod sections;
pub mod write;

pub use read::{Artifact, ArtifactError, FunctionView, LoadReloc, LoadTarget};
pub use write::{write_artifact, WriteError};
