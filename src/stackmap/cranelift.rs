//! The adapter from Cranelift 0.112's user stack maps to [`Safepoint`]s (feature
//! `cranelift`).
//!
//! Cranelift reports, per compiled function, `(return offset, span, UserStackMap)` for
//! every call with references live across it (`MachBufferFinalized::user_stack_maps`).
//! The return offset is relative to the function's first byte and the map's entries are
//! byte offsets up from the SP at the call, which is exactly what a [`Safepoint`] holds
//! once the function's position in the text is added.
//!
//! Cranelift 0.112's cranelift-frontend must be framewalk's patched copy for these maps
//! to be right when references live through loops; the `cranelift` feature refuses to
//! build against the crates.io release (see `build.rs`).

use cranelift_codegen::binemit::CodeOffset;
use cranelift_codegen::ir::UserStackMap;

use super::Safepoint;

/// The safepoints of one compiled function, in Cranelift's order (ascending return
/// offsets), each with its slots sorted. Return offsets are relative to the function's
/// first byte: add the function's offset in the text before handing them to
/// [`StackMapBuilder::add_safepoint`](super::StackMapBuilder::add_safepoint).
pub fn function_safepoints(
    user_stack_maps: &[(CodeOffset, u32, UserStackMap)],
) -> impl Iterator<Item = Safepoint> + '_ {
    user_stack_maps.iter().map(|(offset, span, map)| {
        let mut slots: Vec<u32> = map.entries().map(|(_ty, slot)| slot).collect();
        slots.sort_unstable();
        Safepoint {
            return_offset: *offset,
            span: *span,
            slots,
        }
    })
}
