//! The frame-pointer walk: a cursor over wasm frames and a visitor built on it.
//!
//! See the module documentation of `crate::unwind` for the model. Memory is read
//! through a [`StackReader`], activations through an [`ActivationList`], and code is
//! identified through a [`CodeLookup`]. The one unsafe call is
//! [`StackReader::read_pair_covered`], for a frame inside the range its reader vouched
//! for (`covers`) at the start of the frame's run.
//!
//! Invariants kept by [`FrameCursor`]:
//! - every yielded frame passed every check (PC in wasm code, FP non-null, aligned,
//!   strictly above the previous FP, inside its activation's range);
//! - FPs of yielded frames strictly increase over the whole walk, across activations;
//! - no stack word at or above an activation's `entry_fp`, nor below the FP its walk
//!   started from, is ever read;
//! - nothing allocates, locks or panics (all address arithmetic is checked).

use core::ops::ControlFlow;

use super::activation::{ActivationInfo, ActivationIter, ActivationList};
use super::code_map::CodeMap;
use super::error::WalkError;
use super::reader::StackReader;
use crate::arch;

// The range checks below assume older frames sit at higher addresses.
const _: () = assert!(arch::STACK_GROWS_DOWN);
// A frame's SP is at most the next FP_ALIGN boundary above its FP (see `next_in_run`).
const _: () = assert!(arch::CALLER_SP_OFFSET <= arch::FP_ALIGN);

/// What the walker needs to know about code: which wasm function contains a PC.
///
/// The [`CodeRegistry`](super::registry::CodeRegistry) implements it for a runtime;
/// tests use fakes. Implementations used from a signal handler must not allocate or
/// take locks.
pub trait CodeLookup {
    /// The wasm function containing `pc`, or `None` if `pc` is not in wasm code.
    fn lookup_pc(&self, pc: usize) -> Option<CodeLocation>;

    /// A flat map of the code around `pc`, if this lookup has one and `pc` is in one
    /// of its functions. The walker keeps the map it was last given (in registers, for
    /// a run of frames) and answers every PC inside it with [`CodeMap::lookup`]
    /// instead of calling back; so for every PC inside a returned map,
    /// `map.lookup(pc)` must equal `self.lookup_pc(pc)`. The default has no maps: the
    /// walker then calls `lookup_pc` for every frame.
    #[inline]
    fn code_map(&self, pc: usize) -> Option<CodeMap<'_>> {
        let _ = pc;
        None
    }
}

impl<T: CodeLookup + ?Sized> CodeLookup for &T {
    #[inline]
    fn lookup_pc(&self, pc: usize) -> Option<CodeLocation> {
        (**self).lookup_pc(pc)
    }

    #[inline]
    fn code_map(&self, pc: usize) -> Option<CodeMap<'_>> {
        (**self).code_map(pc)
    }
}

/// Where a PC is in wasm code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLocation {
    /// Opaque id of the module (assigned by the code registry).
    pub module: usize,
    /// Index of the function in the module's function space.
    pub func_index: u32,
    /// `pc` minus the start of the module's text section.
    pub text_offset: u32,
}

/// The registers a walk starts from instead of an activation's recorded exit, e.g. a
/// trap's registers taken from a signal context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartRegs {
    /// The PC of the youngest wasm frame (the trapping instruction).
    pub pc: usize,
    /// Its frame pointer.
    pub fp: usize,
    /// Its stack pointer.
    pub sp: usize,
}

/// One wasm frame found by the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The PC in this frame's function: the start PC for the first frame of a walk
    /// started from [`StartRegs`], otherwise a return address (the instruction after
    /// the call that is in progress).
    pub pc: usize,
    /// This frame's frame pointer.
    pub fp: usize,
    /// This frame's SP at the call in progress: the callee's FP + 16 (for the youngest
    /// frame of an activation: its recorded `exit_sp`, or the start SP). A stack map's
    /// slots are offsets from it.
    pub sp: usize,
    /// The function containing `pc`.
    pub location: CodeLocation,
    /// Position of this frame's activation in the list (newest = 0), counting the
    /// activations of every owner.
    pub activation_index: usize,
}

/// Where the cursor is.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// At `frame`, inside an activation whose walk started at FP `lo` and ends when
    /// the chain reaches `entry_fp`.
    At {
        frame: Frame,
        lo: usize,
        entry_fp: usize,
    },
    /// No more frames (the walk finished or failed).
    Done,
}

/// Where a step from one frame leads.
enum Step {
    /// The next frame of the run, located.
    Frame(Frame),
    /// The next frame of the run, but its PC is outside the code map: it still has to
    /// be located.
    Unmapped(Unmapped),
    /// The run ended (its chain reached `entry_fp`).
    End,
}

/// A frame whose PC the walker has not located yet.
struct Unmapped {
    pc: usize,
    fp: usize,
    sp: usize,
    activation_index: usize,
}

/// What the saved FP of a frame says about the next step.
enum NextFp {
    /// Another wasm frame with this FP.
    Frame(usize),
    /// The chain reached `entry_fp`: this activation has no more wasm frames.
    End,
}

/// A cursor over the wasm frames of an activation list, newest first.
///
/// `new` positions it on the first frame (or at the end); `frame` reads the current
/// frame; `advance` moves to the next one, checking it. After an error, or at the end,
/// `done` is true and `advance` does nothing. It never allocates.
pub struct FrameCursor<'a, R: StackReader + ?Sized, C: CodeLookup + ?Sized> {
    reader: &'a R,
    code: &'a C,
    activations: ActivationIter<'a>,
    position: Position,
    /// The code map `code` last gave, answering PCs inside it ([`CodeMap::EMPTY`] if
    /// none).
    map: CodeMap<'a>,
}

impl<'a, R: StackReader + ?Sized, C: CodeLookup + ?Sized> FrameCursor<'a, R, C> {
    /// A cursor on the first wasm frame of `activations`.
    ///
    /// If `start` is given, the first activation visited (the newest one that passes
    /// the owner filter) is walked from those registers instead of from its recorded
    /// exit; every other activation is walked from its recorded exit (`exit_pc`,
    /// `exit_fp`, `exit_sp`).
    ///
    /// # Errors
    ///
    /// Any [`WalkError`] found while locating the first frame.
    pub fn new(
        activations: ActivationList<'a>,
        start: Option<StartRegs>,
        reader: &'a R,
        code: &'a C,
    ) -> Result<Self, WalkError> {
        let mut cursor = FrameCursor {
            reader,
            code,
            activations: activations.iter(),
            position: Position::Done,
            map: CodeMap::EMPTY,
        };
        cursor.enter_next_activation(start)?;
        Ok(cursor)
    }

    /// The current frame, or `None` when the walk is done.
    #[inline]
    pub fn frame(&self) -> Option<Frame> {
        match self.position {
            Position::At { frame, .. } => Some(frame),
            Position::Done => None,
        }
    }

    /// True when there are no more frames (the walk finished or failed).
    pub fn done(&self) -> bool {
        matches!(self.position, Position::Done)
    }

    /// Moves to the next older frame, possibly in an older activation.
    ///
    /// # Errors
    ///
    /// Any [`WalkError`] found while checking the next frame; the cursor is then done.
    #[inline]
    pub fn advance(&mut self) -> Result<(), WalkError> {
        let Position::At {
            frame,
            lo,
            entry_fp,
        } = self.position
        else {
            return Ok(());
        };
        // Done unless the step below succeeds.
        self.position = Position::Done;
        let next = match self.step(false, &self.map, &frame, lo, entry_fp)? {
            Step::Frame(next) => next,
            Step::Unmapped(next) => self.locate_unmapped(next)?,
            Step::End => return self.enter_next_activation(None),
        };
        self.position = Position::At {
            frame: next,
            lo,
            entry_fp,
        };
        Ok(())
    }

    /// The step from `frame` to the next frame of its activation's run (which started
    /// at FP `lo` and ends at `entry_fp`); `covered`: the reader vouched for
    /// `[lo, entry_fp)`.
    ///
    /// The common step (a saved FP that is aligned and strictly between `frame.fp` and
    /// `entry_fp`) is one compare; anything else goes through `next_fp_in_chain`, which
    /// gives the same answer and the same errors. The next frame is located here when
    /// its PC repeats `frame`'s or is inside `map` (the cursor's code map), which makes
    /// no call; otherwise it is `Unmapped`, for
    /// [`locate_unmapped`](Self::locate_unmapped).
    #[inline(always)]
    fn step(
        &self,
        covered: bool,
        map: &CodeMap<'a>,
        frame: &Frame,
        lo: usize,
        entry_fp: usize,
    ) -> Result<Step, WalkError> {
        let [saved, pc] = self.read_frame_in_run(covered, frame.fp)?;
        let fp = if fp_steps_inside(saved, frame.fp, entry_fp) {
            saved
        } else {
            match next_fp_in_chain(saved, frame.fp, lo, entry_fp)? {
                NextFp::Frame(next) => next,
                NextFp::End => return Ok(Step::End),
            }
        };
        // `frame.fp` is a multiple of FP_ALIGN strictly below `entry_fp`, another one,
        // so this cannot overflow.
        let sp = frame.fp + arch::CALLER_SP_OFFSET;
        // Recursion repeats a return address: the same PC is the same location (and a
        // `CodeLookup` that remembers its last answer still holds it).
        let location = if pc == frame.pc {
            frame.location
        } else if map.contains(pc) {
            map.lookup(pc).ok_or(WalkError::PcNotInWasmCode { pc })?
        } else {
            return Ok(Step::Unmapped(Unmapped {
                pc,
                fp,
                sp,
                activation_index: frame.activation_index,
            }));
        };
        Ok(Step::Frame(Frame {
            pc,
            fp,
            sp,
            location,
            activation_index: frame.activation_index,
        }))
    }

    /// The frame of a `Step::Unmapped`, located through the lookup, whose code map (if
    /// any) becomes the cursor's.
    #[inline]
    fn locate_unmapped(&mut self, next: Unmapped) -> Result<Frame, WalkError> {
        let Unmapped {
            pc,
            fp,
            sp,
            activation_index,
        } = next;
        let (map, found) = self.locate_outside(pc);
        self.map = map;
        Ok(Frame {
            pc,
            fp,
            sp,
            location: found.ok_or(WalkError::PcNotInWasmCode { pc })?,
            activation_index,
        })
    }

    /// Positions the cursor on the first frame of the next activation that has wasm
    /// frames, or at the end.
    fn enter_next_activation(&mut self, mut start: Option<StartRegs>) -> Result<(), WalkError> {
        while let Some(activation) = self.activations.next() {
            let activation = activation?;
            let mut map = self.map;
            let first = self.first_frame(&mut map, &activation, start.take());
            self.map = map;
            if let Some(position) = first? {
                self.position = position;
                return Ok(());
            }
        }
        Ok(())
    }

    /// The youngest wasm frame of `activation`, or `None` if its recorded exit leads
    /// straight back to its entry (no wasm frames).
    fn first_frame(
        &self,
        map: &mut CodeMap<'a>,
        activation: &ActivationInfo,
        start: Option<StartRegs>,
    ) -> Result<Option<Position>, WalkError> {
        let entry_fp = activation.entry_fp;
        check_fp_shape(entry_fp)?;
        // Frames of this activation lie strictly between the newer activation's entry
        // frame and this one's.
        let start_range_lo = match activation.newer_entry_fp {
            Some(newer) => newer.checked_add(1).ok_or(WalkError::AddressOverflow {
                base: newer,
                offset: 1,
            })?,
            None => 1,
        };
        // `entry_fp` is non-zero (checked above), so this never fails.
        let start_range_hi = entry_fp.checked_sub(1).ok_or(WalkError::NullFramePointer)?;
        let check_start_fp = |fp: usize| {
            check_fp_shape(fp)?;
            if fp < start_range_lo || fp > start_range_hi {
                return Err(WalkError::FramePointerOutOfRange {
                    fp,
                    lo: start_range_lo,
                    hi: start_range_hi,
                });
            }
            Ok(())
        };
        let (regs, from_exit) = match start {
            Some(regs) => (regs, false),
            None => {
                if activation.exit_sp == 0 {
                    return Err(WalkError::NoExitRecorded {
                        activation_index: activation.index,
                    });
                }
                // An exit made with no wasm frame below the entry (the entry trampoline
                // itself called out): nothing to walk in this activation.
                if activation.exit_fp == entry_fp {
                    return Ok(None);
                }
                let regs = StartRegs {
                    pc: activation.exit_pc,
                    fp: activation.exit_fp,
                    sp: activation.exit_sp,
                };
                (regs, true)
            }
        };
        check_start_fp(regs.fp)?;
        if regs.sp > regs.fp {
            return Err(WalkError::StackPointerAboveFramePointer {
                sp: regs.sp,
                fp: regs.fp,
            });
        }
        if regs.sp < start_range_lo {
            return Err(WalkError::StackPointerOutOfRange {
                sp: regs.sp,
                lo: start_range_lo,
                hi: start_range_hi,
            });
        }
        if from_exit {
            self.check_exit_is_current(activation)?;
        }
        let frame = Frame {
            pc: regs.pc,
            fp: regs.fp,
            sp: regs.sp,
            location: self.locate(map, regs.pc)?,
            activation_index: activation.index,
        };
        Ok(Some(Position::At {
            frame,
            lo: frame.fp,
            entry_fp,
        }))
    }

    /// Checks a recorded exit against the stack where the architecture leaves a copy of
    /// its PC (`arch::EXIT_CHECK_BELOW_SP`): a record that was not cleared when control
    /// went back to wasm, and is read by a later walk that no new exit preceded,
    /// describes frames that have changed since, and the word there no longer matches.
    /// One read per activation walked from an exit, made after `exit_sp` was found inside
    /// the activation's range.
    #[inline]
    fn check_exit_is_current(&self, activation: &ActivationInfo) -> Result<(), WalkError> {
        if arch::EXIT_CHECK_BELOW_SP == 0 {
            return Ok(());
        }
        let addr = activation
            .exit_sp
            .checked_sub(arch::EXIT_CHECK_BELOW_SP)
            .ok_or(WalkError::StackPointerOutOfRange {
                sp: activation.exit_sp,
                lo: arch::EXIT_CHECK_BELOW_SP,
                hi: activation.entry_fp,
            })?;
        let found = self
            .reader
            .read_word(addr)
            .ok_or(WalkError::UnreadableStack { addr })?;
        if found != activation.exit_pc {
            return Err(WalkError::StaleExit {
                activation_index: activation.index,
                exit_pc: activation.exit_pc,
                found,
            });
        }
        Ok(())
    }

    /// Reads the saved FP and the return address of the frame at `fp` (adjacent words,
    /// checked at once).
    #[inline(always)]
    fn read_frame(&self, fp: usize) -> Result<[usize; 2], WalkError> {
        const _: () = assert!(arch::RETURN_ADDR_OFFSET == arch::SAVED_FP_OFFSET + arch::WORD_SIZE);
        let addr = offset(fp, arch::SAVED_FP_OFFSET)?;
        match self.reader.read_pair(addr) {
            Some(words) => Ok(words),
            // Name the word that could not be read, as two single reads would.
            None => {
                self.read_at(fp, arch::SAVED_FP_OFFSET)?;
                self.read_at(fp, arch::RETURN_ADDR_OFFSET)?;
                // A reader whose pair and single reads disagree: blame the pair.
                Err(WalkError::UnreadableStack { addr })
            }
        }
    }

    /// Reads the word at `fp + off`.
    #[inline]
    fn read_at(&self, fp: usize, off: usize) -> Result<usize, WalkError> {
        let addr = offset(fp, off)?;
        self.reader
            .read_word(addr)
            .ok_or(WalkError::UnreadableStack { addr })
    }

    /// The wasm function containing `pc`: from `map` if `pc` is inside it, else from
    /// the lookup (which may give a new map for the next PCs).
    #[inline(always)]
    fn locate(&self, map: &mut CodeMap<'a>, pc: usize) -> Result<CodeLocation, WalkError> {
        if map.contains(pc) {
            return map.lookup(pc).ok_or(WalkError::PcNotInWasmCode { pc });
        }
        let (new_map, found) = self.locate_outside(pc);
        *map = new_map;
        found.ok_or(WalkError::PcNotInWasmCode { pc })
    }

    /// `locate` for a PC outside the current map: the map of `pc`'s code, if the
    /// lookup has one, and the answer from it or (without a map) from `lookup_pc`.
    /// Kept out of line so that the caller's loop holds its map in registers.
    #[inline(never)]
    fn locate_outside(&self, pc: usize) -> (CodeMap<'a>, Option<CodeLocation>) {
        match self.code.code_map(pc).filter(|m| m.contains(pc)) {
            Some(m) => (m, m.lookup(pc)),
            None => (CodeMap::EMPTY, self.code.lookup_pc(pc)),
        }
    }
}

/// `base + off`, or an error instead of an overflow.
#[inline]
fn offset(base: usize, off: usize) -> Result<usize, WalkError> {
    base.checked_add(off)
        .ok_or(WalkError::AddressOverflow { base, offset: off })
}

/// Checks that `fp` could be a frame pointer at all: non-null and aligned.
#[inline]
fn check_fp_shape(fp: usize) -> Result<(), WalkError> {
    if fp == 0 {
        return Err(WalkError::NullFramePointer);
    }
    if !fp.is_multiple_of(arch::FP_ALIGN) {
        return Err(WalkError::MisalignedFramePointer { fp });
    }
    Ok(())
}

/// True if `saved`, the saved FP read from the frame at `fp`, is a multiple of
/// `FP_ALIGN` strictly between `fp` and `entry_fp` (both multiples of `FP_ALIGN`,
/// `fp < entry_fp`): the common step, which `next_fp_in_chain` would answer with
/// `NextFp::Frame(saved)`.
///
/// One compare instead of three: with `e = entry_fp - saved`, the step is good exactly
/// when `e` is a multiple of `FP_ALIGN` in `[FP_ALIGN, entry_fp - fp - FP_ALIGN]`.
/// Rotating `e` right by `log2(FP_ALIGN)` divides such an `e` exactly and turns any
/// other (misaligned, or wrapped because `saved > entry_fp`) into a number above every
/// bound, and `e == 0` (the end of the chain) wraps to the largest value when 1 is
/// taken off, so one unsigned compare of `rotated - 1` against `(entry_fp - fp) /
/// FP_ALIGN - 1` decides.
#[inline(always)]
fn fp_steps_inside(saved: usize, fp: usize, entry_fp: usize) -> bool {
    const SHIFT: u32 = arch::FP_ALIGN.trailing_zeros();
    const _: () = assert!(arch::FP_ALIGN.is_power_of_two());
    let units = entry_fp
        .wrapping_sub(saved)
        .rotate_right(SHIFT)
        .wrapping_sub(1);
    let limit = ((entry_fp - fp) >> SHIFT).wrapping_sub(1);
    units < limit
}

/// Classifies `next`, the saved FP read from the frame at `fp`, in an activation whose
/// chain started at `lo` and ends at `entry_fp` (`lo <= fp < entry_fp`).
#[inline]
fn next_fp_in_chain(
    next: usize,
    fp: usize,
    lo: usize,
    entry_fp: usize,
) -> Result<NextFp, WalkError> {
    if next == entry_fp {
        return Ok(NextFp::End);
    }
    check_fp_shape(next)?;
    if next < lo || next > entry_fp {
        return Err(WalkError::FramePointerOutOfRange {
            fp: next,
            lo,
            hi: entry_fp,
        });
    }
    if next == fp {
        return Err(WalkError::FramePointerDidNotMove { fp });
    }
    if next < fp {
        return Err(WalkError::FramePointerMovedBackwards { fp, next_fp: next });
    }
    Ok(NextFp::Frame(next))
}

/// Calls `f` on every wasm frame of `activations`, newest first, until `f` breaks.
///
/// `start` is as in [`FrameCursor::new`]. Returns `Ok(Some(b))` if `f` returned
/// `ControlFlow::Break(b)`, `Ok(None)` if every frame was visited. Does not allocate.
///
/// # Errors
///
/// The first [`WalkError`] found; `f` has then seen exactly the frames before it.
#[inline(always)]
pub fn visit_frames<R, C, B>(
    activations: ActivationList<'_>,
    start: Option<StartRegs>,
    reader: &R,
    code: &C,
    mut f: impl FnMut(&Frame) -> ControlFlow<B>,
) -> Result<Option<B>, WalkError>
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    let mut cursor = FrameCursor::new(activations, start, reader, code)?;
    while let Position::At {
        frame,
        lo,
        entry_fp,
    } = cursor.position
    {
        cursor.position = Position::Done;
        let run = cursor.visit_run(frame, lo, entry_fp, &mut f)?;
        if run.is_some() {
            return Ok(run);
        }
        cursor.enter_next_activation(None)?;
    }
    Ok(None)
}

impl<'a, R: StackReader + ?Sized, C: CodeLookup + ?Sized> FrameCursor<'a, R, C> {
    /// `visit_frames` over one activation's run, from `frame` (its first, located)
    /// until the chain reaches `entry_fp`: `Ok(Some(b))` if `f` broke, `Ok(None)` at the
    /// end of the run.
    ///
    /// The steps of [`advance`](FrameCursor::advance), arranged so that the inner loop
    /// (frames that [`step`](Self::step) locates itself) makes no call: its state, the
    /// map's and the visitor's then stay in registers.
    #[inline(always)]
    fn visit_run<B>(
        &mut self,
        mut frame: Frame,
        lo: usize,
        entry_fp: usize,
        f: &mut impl FnMut(&Frame) -> ControlFlow<B>,
    ) -> Result<Option<B>, WalkError> {
        // Every frame of the run lies in `[lo, entry_fp)`: a reader that vouches for
        // that range is read without a check per frame (the branch on `covered` goes
        // the same way every time).
        let covered = self.reader.covers(lo, entry_fp);
        loop {
            // The map in a local, so that it stays in registers; the cursor's only
            // changes in `locate_unmapped`, outside this loop.
            let map = self.map;
            let unmapped = loop {
                if let ControlFlow::Break(b) = f(&frame) {
                    return Ok(Some(b));
                }
                frame = match self.step(covered, &map, &frame, lo, entry_fp)? {
                    Step::Frame(next) => next,
                    Step::Unmapped(next) => break next,
                    Step::End => return Ok(None),
                };
            };
            frame = self.locate_unmapped(unmapped)?;
        }
    }

    /// [`read_frame`](Self::read_frame) of a frame of the current run (so `fp` is a
    /// multiple of FP_ALIGN in `[lo, entry_fp)`); `covered`: the reader vouched for
    /// that range.
    #[inline(always)]
    fn read_frame_in_run(&self, covered: bool, fp: usize) -> Result<[usize; 2], WalkError> {
        const _: () = assert!(arch::SAVED_FP_OFFSET == 0 && arch::FP_ALIGN.is_multiple_of(16));
        if covered {
            // SAFETY: `covers(lo, entry_fp)` held for this reader; `fp` is a multiple of
            // FP_ALIGN (so of 16) with `lo <= fp < entry_fp`, `entry_fp` another, so
            // `fp + 16 <= entry_fp`; and the pair is read at `fp` itself.
            Ok(unsafe { self.reader.read_pair_covered(fp) })
        } else {
            self.read_frame(fp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_checked() {
        assert_eq!(offset(0x1000, 8), Ok(0x1008));
        assert_eq!(
            offset(usize::MAX - 7, 16),
            Err(WalkError::AddressOverflow {
                base: usize::MAX - 7,
                offset: 16
            })
        );
    }

    /// The one-compare step agrees with the three checks it replaces, for aligned frames
    /// near the bottom and the top of the address space and every saved FP around them.
    #[test]
    fn fp_steps_inside_is_the_plain_check() {
        let plain = |saved: usize, fp: usize, entry_fp: usize| {
            saved.is_multiple_of(arch::FP_ALIGN) && saved > fp && saved < entry_fp
        };
        let top = usize::MAX - (arch::FP_ALIGN - 1);
        for base in [0, 0x7fff_0000, top - 64 * arch::FP_ALIGN] {
            for f in 0..16 {
                for e in f + 1..=20 {
                    let (fp, entry_fp) = (base + f * arch::FP_ALIGN, base + e * arch::FP_ALIGN);
                    if entry_fp > top {
                        continue;
                    }
                    let around = (0..=25 * arch::FP_ALIGN).map(|d| base.wrapping_add(d));
                    for saved in around.chain([0, 1, usize::MAX, top, usize::MAX / 2 + 1]) {
                        assert_eq!(
                            fp_steps_inside(saved, fp, entry_fp),
                            plain(saved, fp, entry_fp),
                            "saved {saved:#x} fp {fp:#x} entry {entry_fp:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn next_fp_classification() {
        let (lo, fp, entry) = (0x1000, 0x1100, 0x2000);
        let next = |n| {
            next_fp_in_chain(n, fp, lo, entry).map(|r| match r {
                NextFp::Frame(f) => Some(f),
                NextFp::End => None,
            })
        };
        assert_eq!(next(entry), Ok(None));
        assert_eq!(next(0x1200), Ok(Some(0x1200)));
        assert_eq!(next(0), Err(WalkError::NullFramePointer));
        assert_eq!(
            next(0x1208),
            Err(WalkError::MisalignedFramePointer { fp: 0x1208 })
        );
        assert_eq!(next(fp), Err(WalkError::FramePointerDidNotMove { fp }));
        assert_eq!(
            next(0x1010),
            Err(WalkError::FramePointerMovedBackwards {
                fp,
                next_fp: 0x1010
            })
        );
        for out in [0xff0, 0x2010, usize::MAX & !15] {
            assert_eq!(
                next(out),
                Err(WalkError::FramePointerOutOfRange {
                    fp: out,
                    lo,
                    hi: entry
                })
            );
        }
    }
}
