//! Stack roots: the slots of live references in every wasm frame of an activation list,
//! found by walking the frames and looking each return address up in a stack map.
//!
//! This is the part of a collection a runtime would otherwise write itself, and the
//! runtime in this crate uses it too. The runtime supplies three things:
//!
//! - the frames: an [`ActivationList`], a [`StackReader`] for the range the walk reads,
//!   and a [`CodeLookup`] that knows which code is wasm;
//! - for each frame, its [`StackMap`] (or `None`: no live references there), usually
//!   `table.lookup(frame.location.text_offset)` on the
//!   [`StackMapTable`](crate::stackmap::StackMapTable) (or the section) of the frame's
//!   module (`frame.location.module`);
//! - what to do with each slot's address.
//!
//! Invariants:
//! - a slot is reported only for a frame the walker yielded (every check passed) whose
//!   map spans exactly that frame (`span == fp - sp`), at `frame.sp + offset` with
//!   `offset < span`, so it lies inside that frame;
//! - nothing allocates.

use core::ops::ControlFlow;

use super::RootSource;
use crate::stackmap::StackMap;
use crate::unwind::{visit_frames, ActivationList, CodeLookup, Frame, StackReader, WalkError};

/// Calls `slot(frame, address)` for every live reference slot of every wasm frame of
/// `activations`, newest frame first, walking from the recorded exits. `stack_map`
/// gives each frame's map.
///
/// # Errors
///
/// The walk's first [`WalkError`] (the slots of the frames before it were reported),
/// or [`WalkError::StackMapSpanMismatch`] if a frame's map does not span exactly that
/// frame (`fp - sp`), before any slot of that frame is reported.
// Out of line: inlined into a caller's larger frame, its loop measured slower (the
// GC pause rose from 9.7 to 11.1 ns per frame in `walk_floor`).
#[inline(never)]
pub fn visit_stack_roots<'m, R, C>(
    activations: ActivationList<'_>,
    reader: &R,
    code: &C,
    mut stack_map: impl FnMut(&Frame) -> Option<StackMap<'m>>,
    mut slot: impl FnMut(&Frame, usize),
) -> Result<(), WalkError>
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    let walk = visit_frames(activations, None, reader, code, |frame| {
        if let Some(map) = stack_map(frame) {
            // A map describes a frame of `span` bytes from its SP to its FP: one found
            // for a frame of another size belongs to other code. Checking it also keeps
            // every slot (`offset < span`) inside the frame, below `fp`.
            let span = map.span() as usize;
            if frame.fp - frame.sp != span {
                return ControlFlow::Break(WalkError::StackMapSpanMismatch {
                    pc: frame.pc,
                    span,
                    frame_span: frame.fp - frame.sp,
                });
            }
            map.for_each_slot(|offset| slot(frame, frame.sp + offset as usize));
        }
        ControlFlow::Continue(())
    })?;
    match walk {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// A [`RootSource`] over an activation list: the roots of a collection, for a runtime
/// that keeps its own list, code registry and stack-map sections.
///
/// `stack_map` maps a frame to its stack map, as for [`visit_stack_roots`]. The reader
/// must allow every word of the frames walked, e.g. a
/// [`LiveStackReader`](crate::unwind::LiveStackReader) over
/// [`ActivationList::recorded_exit_range`].
pub struct StackRoots<'a, R, C: ?Sized, M> {
    activations: ActivationList<'a>,
    reader: R,
    code: &'a C,
    stack_map: M,
}

impl<'a, R, C, M> StackRoots<'a, R, C, M>
where
    R: StackReader,
    C: CodeLookup + ?Sized,
    M: Fn(&Frame) -> Option<StackMap<'a>>,
{
    /// The roots of the frames of `activations`.
    ///
    /// # Safety
    ///
    /// What [`RootSource`] promises, for these arguments:
    /// - `activations` is the whole list of the store's activations on this thread
    ///   (usually `ActivationList::from_head(head).only_owner(store)`), every one of
    ///   them stopped at a recorded exit that is current (cleared whenever control went
    ///   back to the code it describes), while this value is used;
    /// - `code` registers exactly the store's compiled functions (no trampolines), and
    ///   `stack_map(frame)` gives the map its compiler made for the call at
    ///   `frame.location.text_offset` of `frame.location.module`'s code, or `None` only
    ///   where no reference is live across that call; every reference value that can be
    ///   live across a call is in its map;
    /// - `reader` reads every word of those frames (e.g. a
    ///   [`LiveStackReader`](crate::unwind::LiveStackReader) over
    ///   [`ActivationList::recorded_exit_range`]).
    ///
    /// The walk still checks every frame (a [`WalkError`] frees nothing), and each map's
    /// span against its frame (`fp - sp`), which catches a map of the wrong module.
    pub unsafe fn new(
        activations: ActivationList<'a>,
        reader: R,
        code: &'a C,
        stack_map: M,
    ) -> Self {
        StackRoots {
            activations,
            reader,
            code,
            stack_map,
        }
    }

    /// [`visit_stack_roots`] over these frames: `slot(frame, address)` per live slot.
    ///
    /// # Errors
    ///
    /// As for [`visit_stack_roots`].
    pub fn visit(&self, slot: impl FnMut(&Frame, usize)) -> Result<(), WalkError> {
        visit_stack_roots(
            self.activations,
            &self.reader,
            self.code,
            &self.stack_map,
            slot,
        )
    }
}

// SAFETY: `StackRoots::new`'s contract is `RootSource`'s, for the arguments it keeps;
// the slots reported are those of `visit_stack_roots`, inside frames the walker
// checked, read through the same reader.
unsafe impl<'a, R, C, M> RootSource for StackRoots<'a, R, C, M>
where
    R: StackReader,
    C: CodeLookup + ?Sized,
    M: Fn(&Frame) -> Option<StackMap<'a>>,
{
    type Reader = R;

    fn visit_root_slots(&self, mut slot: impl FnMut(usize)) -> Result<(), WalkError> {
        self.visit(|_, address| slot(address))
    }

    fn reader(&self) -> &R {
        &self.reader
    }
}
