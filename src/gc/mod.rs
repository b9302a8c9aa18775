//! Garbage collection of `externref`s. For now: the reference type itself.

mod externref;

pub use externref::{ExternRef, VMExternData};
