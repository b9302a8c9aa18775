//! The JIT example's VM (examples/jit.rs) on framewalk's drop-in layers.

#[path = "../examples/jit.rs"]
mod jit;
