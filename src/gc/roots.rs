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
//! A map's slots are offsets from the frame's SP at the call, `fp - span`. The walker's
//! `frame.sp` (its callee's FP + 16) is that SP, except below a tail call that needed a
//! larger incoming-argument area than its caller had: the callee's prologue then moved
//! its frame down by the difference (Cranelift's `tail` convention), so `frame.sp` lies
//! that far below. A runtime whose code makes tail calls says how far that can be
//! (`max_frame_shift`); with 0 every map must span exactly `fp - frame.sp`.
//!
//! Invariants:
//! - a slot is reported only for a frame the walker yielded (every check passed) whose
//!   map's span `s` fits that frame: `fp - s` is `frame.sp`, or above it by a multiple
//!   of 16 up to `max_frame_shift`; the slot is at `fp - s + offset` with `offset < s`,
//!   so it lies inside that frame, above every newer frame;
//! - nothing allocates.

use core::ops::ControlFlow;

use super::RootSource;
use crate::stackmap::StackMap;
use crate::unwind::{visit_frames, ActivationList, CodeLookup, Frame, StackReader, WalkError};

/// Calls `slot(frame, address)` for every live reference slot of every wasm frame of
/// `activations`, newest frame first, walking from the recorded exits. `stack_map`
/// gives each frame's map. For code that makes no tail calls; see
/// [`visit_stack_roots_shifted`].
///
/// # Errors
///
/// The walk's first [`WalkError`] (the slots of the frames before it were reported),
/// or [`WalkError::StackMapSpanMismatch`] if a frame's map does not span exactly that
/// frame (`fp - sp`), before any slot of that frame is reported.
pub fn visit_stack_roots<'m, R, C>(
    activations: ActivationList<'_>,
    reader: &R,
    code: &C,
    stack_map: impl FnMut(&Frame) -> Option<StackMap<'m>>,
    slot: impl FnMut(&Frame, usize),
) -> Result<(), WalkError>
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    visit_stack_roots_shifted(activations, reader, code, 0, stack_map, slot)
}

/// [`visit_stack_roots`] for code that makes tail calls: a frame's map may also span
/// from its FP down to a point above `frame.sp` by a multiple of 16 up to
/// `max_frame_shift` bytes (the most a tail call can move a callee's frame down: the
/// largest stack-argument area of any function type its code calls, see the module
/// doc). The slots are then offsets from `fp - span`.
///
/// # Errors
///
/// As [`visit_stack_roots`], with [`WalkError::StackMapSpanMismatch`] for a map that
/// fits its frame in neither way.
// Out of line: inlined into a caller's larger frame, its loop measured slower (the
// GC pause rose from 9.7 to 11.1 ns per frame in `walk_floor`).
#[inline(never)]
pub fn visit_stack_roots_shifted<'m, R, C>(
    activations: ActivationList<'_>,
    reader: &R,
    code: &C,
    max_frame_shift: usize,
    mut stack_map: impl FnMut(&Frame) -> Option<StackMap<'m>>,
    mut slot: impl FnMut(&Frame, usize),
) -> Result<(), WalkError>
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    let walk = visit_frames(activations, None, reader, code, |frame| {
        if let Some(map) = stack_map(frame) {
            // A map describes a frame of `span` bytes below its FP: one found for a
            // frame of another size belongs to other code. Checking it also keeps every
            // slot (`offset < span`) inside the frame, below `fp` and above the newer
            // frames.
            let span = map.span() as usize;
            // How far the map's SP (`fp - span`) lies above the walked one: 0 but below
            // a tail call that moved its callee down (a span above `fp - sp` wraps to a
            // shift no bound allows).
            let frame_span = frame.fp - frame.sp;
            let shift = frame_span.wrapping_sub(span);
            if shift != 0 && (shift > max_frame_shift || shift % 16 != 0) {
                return ControlFlow::Break(WalkError::StackMapSpanMismatch {
                    pc: frame.pc,
                    span,
                    frame_span,
                });
            }
            let base = frame.sp + shift;
            map.for_each_slot(|offset| slot(frame, base + offset as usize));
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
    max_frame_shift: usize,
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
            max_frame_shift: 0,
        }
    }

    /// For code that makes tail calls: how far below its caller's SP a tail call may
    /// have moved a callee's frame (see [`visit_stack_roots_shifted`]; default 0).
    ///
    /// With the maps [`StackRoots::new`]'s contract requires, a larger bound changes
    /// nothing (each map's slots are counted from `fp - span`, the frame's own SP); it
    /// only widens what a map of the wrong code can get past. Too small a bound stops a
    /// collection with [`WalkError::StackMapSpanMismatch`] (nothing freed) below a tail
    /// call that moved its callee.
    pub fn with_max_frame_shift(mut self, max_frame_shift: usize) -> Self {
        self.max_frame_shift = max_frame_shift;
        self
    }

    /// [`visit_stack_roots_shifted`] over these frames: `slot(frame, address)` per live
    /// slot.
    ///
    /// # Errors
    ///
    /// As for [`visit_stack_roots_shifted`].
    pub fn visit(&self, slot: impl FnMut(&Frame, usize)) -> Result<(), WalkError> {
        visit_stack_roots_shifted(
            self.activations,
            &self.reader,
            self.code,
            self.max_frame_shift,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stackmap::{StackMapBuilder, StackMapTable};
    use crate::unwind::fake_stack::{
        build, ActivationSpec, BuiltStack, FakeCode, FrameSpec, LinkedActivations, STACK_TOP,
    };

    /// One activation of three frames (youngest first), walked from its exit.
    fn three_frames() -> BuiltStack {
        let frame = |func, slots| FrameSpec {
            func,
            pc_offset: 0x10 + func as usize,
            slots,
        };
        build(
            &[ActivationSpec {
                owner: 1,
                frames: vec![frame(3, 2), frame(2, 3), frame(1, 1)],
                host_gap: 3,
            }],
            false,
            STACK_TOP,
        )
    }

    /// A table with a map for each frame of `built`: span `fp - sp` (plus `skew` for
    /// frame `skewed`), live slot 0 and the slot 8 below the span.
    fn maps(built: &BuiltStack, skewed: usize, skew: u32) -> StackMapTable {
        let mut builder = StackMapBuilder::new();
        let mut frames = built.truth.clone();
        frames.sort_by_key(|f| f.location.text_offset);
        for f in &frames {
            let mut span = (f.fp - f.sp) as u32;
            if built.truth[skewed].location == f.location {
                span += skew;
            }
            builder
                .add(f.location.text_offset, span, &[0, span - 8])
                .unwrap();
        }
        StackMapTable::parse(&builder.finish()).unwrap()
    }

    fn slots(built: &BuiltStack, table: &StackMapTable) -> (Vec<usize>, Result<(), WalkError>) {
        let linked = LinkedActivations::new(&built.activations);
        let mut found = Vec::new();
        let result = visit_stack_roots(
            linked.list(),
            &built.stack,
            &FakeCode,
            |frame| table.lookup(frame.location.text_offset),
            |_, addr| found.push(addr),
        );
        (found, result)
    }

    #[test]
    fn every_slot_of_every_frame_lies_inside_its_frame() {
        let built = three_frames();
        let (found, result) = slots(&built, &maps(&built, 0, 0));
        assert_eq!(result, Ok(()));
        let expected: Vec<usize> = built.truth.iter().flat_map(|f| [f.sp, f.fp - 8]).collect();
        assert_eq!(found, expected);
    }

    /// A map whose span is not its frame's (found in another module's section, say) is
    /// refused before any of its slots is reported: the collection that asked frees
    /// nothing, instead of taking other words of the frame for references.
    #[test]
    fn a_map_of_another_frame_size_ends_the_scan() {
        let built = three_frames();
        for skew in [8, 16, 64] {
            let (found, result) = slots(&built, &maps(&built, 1, skew));
            let (young, middle) = (&built.truth[0], &built.truth[1]);
            assert_eq!(found, [young.sp, young.fp - 8], "only the frame before it");
            assert_eq!(
                result,
                Err(WalkError::StackMapSpanMismatch {
                    pc: middle.pc,
                    span: middle.fp - middle.sp + skew as usize,
                    frame_span: middle.fp - middle.sp,
                })
            );
        }
    }

    /// A tail call that needed a larger argument area moved its callee's frame down:
    /// the caller's map then spans less than `fp - frame.sp`. With a shift allowed, its
    /// slots are found from `fp - span`; beyond the shift allowed, or by a shift that is
    /// not a multiple of 16, the map is refused as before.
    #[test]
    fn a_frame_moved_down_by_a_tail_call_is_scanned_from_its_fp() {
        let frame = |func, slots| FrameSpec {
            func,
            pc_offset: 0x10 + func as usize,
            slots,
        };
        let built = build(
            &[ActivationSpec {
                owner: 1,
                frames: vec![frame(3, 2), frame(2, 8), frame(1, 1)],
                host_gap: 3,
            }],
            false,
            STACK_TOP,
        );
        let middle = built.truth[1];
        let visit = |shrink: u32, max_shift: usize| {
            let mut builder = StackMapBuilder::new();
            let mut frames = built.truth.clone();
            frames.sort_by_key(|f| f.location.text_offset);
            for f in &frames {
                let mut span = (f.fp - f.sp) as u32;
                if f.location == middle.location {
                    span -= shrink;
                }
                builder
                    .add(f.location.text_offset, span, &[0, span - 8])
                    .unwrap();
            }
            let table = StackMapTable::parse(&builder.finish()).unwrap();
            let linked = LinkedActivations::new(&built.activations);
            let mut found = Vec::new();
            let result = visit_stack_roots_shifted(
                linked.list(),
                &built.stack,
                &FakeCode,
                max_shift,
                |frame| table.lookup(frame.location.text_offset),
                |_, addr| found.push(addr),
            );
            (found, result)
        };
        let (young, old) = (&built.truth[0], &built.truth[2]);
        for (shrink, max_shift) in [(16, 16), (16, 64), (32, 32)] {
            let (found, result) = visit(shrink, max_shift);
            assert_eq!(result, Ok(()), "shrink {shrink}, max {max_shift}");
            let base = middle.sp + shrink as usize;
            assert_eq!(
                found,
                [
                    young.sp,
                    young.fp - 8,
                    base,
                    middle.fp - 8,
                    old.sp,
                    old.fp - 8
                ]
            );
        }
        for (shrink, max_shift) in [(16, 0), (32, 16), (8, 64)] {
            let (found, result) = visit(shrink, max_shift);
            assert_eq!(found, [young.sp, young.fp - 8], "only the frame before it");
            assert_eq!(
                result,
                Err(WalkError::StackMapSpanMismatch {
                    pc: middle.pc,
                    span: middle.fp - middle.sp - shrink as usize,
                    frame_span: middle.fp - middle.sp,
                }),
                "shrink {shrink}, max {max_shift}"
            );
        }
    }
}
