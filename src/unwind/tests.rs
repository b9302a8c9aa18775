//! Walker tests on fake stacks: exact frames, every error, and property tests.

use core::cell::{Cell, RefCell};
use core::ops::ControlFlow;

use proptest::prelude::*;

use super::fake_stack::{
    build, pc_in, walk, ActivationSpec, BuiltStack, FakeCode, FakeStack, FrameSpec,
    LinkedActivations, CODE_START, FUNC_COUNT, FUNC_SIZE, HOST_PC, STACK_TOP, TRAMPOLINE_PC,
};
use super::*;

fn frames(funcs: &[(u32, usize)]) -> Vec<FrameSpec> {
    funcs
        .iter()
        .map(|&(func, slots)| FrameSpec {
            func,
            pc_offset: 0x10 + func as usize,
            slots,
        })
        .collect()
}

fn activation(owner: usize, funcs: &[(u32, usize)]) -> ActivationSpec {
    ActivationSpec {
        owner,
        frames: frames(funcs),
        host_gap: 3,
    }
}

/// Builds `specs` and walks it, with an owner filter; asserts the walk is exact and
/// returns the frames.
fn walk_exact(built: &BuiltStack, owner: Option<usize>) -> Vec<Frame> {
    let linked = LinkedActivations::new(&built.activations);
    let list = match owner {
        Some(o) => linked.list().only_owner(o),
        None => linked.list(),
    };
    let (expected, start) = built.expected(owner);
    let (got, result) = walk(list, start, &built.stack, &FakeCode);
    assert_eq!(result, Ok(()));
    assert_eq!(got, expected);
    got
}

/// Walks `built` as is (all owners) and returns the frames and the result.
fn walk_built(built: &BuiltStack) -> (Vec<Frame>, Result<(), WalkError>) {
    let linked = LinkedActivations::new(&built.activations);
    walk(linked.list(), built.start, &built.stack, &FakeCode)
}

#[test]
fn one_activation_from_its_exit() {
    let built = build(
        &[activation(1, &[(3, 0), (2, 1), (1, 4)])],
        false,
        STACK_TOP,
    );
    let got = walk_exact(&built, None);
    let (exit_fp, exit_sp) = (built.activations[0].exit_fp, built.activations[0].exit_sp);
    let entry_fp = built.activations[0].entry_fp;
    assert_eq!(
        got.iter()
            .map(|f| (f.location.func_index, f.pc))
            .collect::<Vec<_>>(),
        [
            (3, pc_in(3, 0x13)),
            (2, pc_in(2, 0x12)),
            (1, pc_in(1, 0x11))
        ]
    );
    // Youngest: fp = exit_fp, pc = exit_pc, sp = exit_sp.
    assert_eq!(got[0].fp, exit_fp);
    assert_eq!(got[0].pc, built.activations[0].exit_pc);
    assert_eq!(got[0].sp, exit_sp);
    // Older: sp = callee fp + 16; the oldest frame's saved FP is entry_fp.
    assert_eq!(got[1].sp, got[0].fp + 16);
    assert_eq!(got[2].sp, got[1].fp + 16);
    assert_eq!(built.stack.get(got[2].fp), entry_fp);
    // Frame sizes: slots below FP push the callee's FP down.
    assert_eq!(got[1].fp - got[0].fp, 16 + 16); // saved FP + return address, 1 slot
    assert_eq!(got[2].fp - got[1].fp, 16 + 16 * 4); // 4 slots
    for f in &got {
        assert_eq!(f.location.module, 7);
        assert_eq!(f.location.text_offset as usize, f.pc - CODE_START);
        assert_eq!(f.activation_index, 0);
        assert!(f.sp <= f.fp);
    }
}

#[test]
fn several_activations_newest_first() {
    let built = build(
        &[
            activation(1, &[(5, 2)]),
            activation(1, &[(4, 0), (3, 1)]),
            activation(1, &[(2, 3), (1, 0), (0, 0)]),
        ],
        false,
        STACK_TOP,
    );
    let got = walk_exact(&built, None);
    assert_eq!(
        got.iter()
            .map(|f| (f.activation_index, f.location.func_index))
            .collect::<Vec<_>>(),
        [(0, 5), (1, 4), (1, 3), (2, 2), (2, 1), (2, 0)]
    );
    assert!(got.windows(2).all(|w| w[0].fp < w[1].fp));
    // The youngest frame of each older activation starts from that activation's exit.
    assert_eq!(
        (got[1].fp, got[1].sp),
        (built.activations[1].exit_fp, built.activations[1].exit_sp)
    );
    assert_eq!(
        (got[3].fp, got[3].sp),
        (built.activations[2].exit_fp, built.activations[2].exit_sp)
    );
}

#[test]
fn interleaved_owners_are_filtered() {
    let built = build(
        &[
            activation(2, &[(9, 0)]),
            activation(1, &[(8, 1), (7, 0)]),
            activation(2, &[(6, 0), (5, 2)]),
            activation(1, &[(4, 0)]),
            activation(2, &[(3, 1)]),
        ],
        false,
        STACK_TOP,
    );
    let all = walk_exact(&built, None);
    assert_eq!(all.len(), 7);
    let one = walk_exact(&built, Some(1));
    assert_eq!(
        one.iter()
            .map(|f| (f.activation_index, f.location.func_index))
            .collect::<Vec<_>>(),
        [(1, 8), (1, 7), (3, 4)]
    );
    let two = walk_exact(&built, Some(2));
    assert_eq!(
        two.iter()
            .map(|f| (f.activation_index, f.location.func_index))
            .collect::<Vec<_>>(),
        [(0, 9), (2, 6), (2, 5), (4, 3)]
    );
    assert!(walk_exact(&built, Some(3)).is_empty());
}

#[test]
fn explicit_start_registers() {
    let built = build(
        &[activation(1, &[(3, 2), (2, 0)]), activation(1, &[(1, 0)])],
        true,
        STACK_TOP,
    );
    let start = built.start.unwrap();
    assert_eq!(built.activations[0].exit_sp, 0);
    let got = walk_exact(&built, None);
    assert_eq!(
        got[0],
        Frame {
            pc: start.pc,
            fp: start.fp,
            sp: start.sp,
            location: FakeCode.lookup_pc(start.pc).unwrap(),
            activation_index: 0,
        }
    );
    assert_eq!(got[1].sp, start.fp + 16);
    assert_eq!(got.len(), 3);

    // The start applies only to the first activation visited; when no activation
    // passes the owner filter it is not used at all.
    let linked = LinkedActivations::new(&built.activations);
    let (got, result) = walk(
        linked.list().only_owner(2),
        Some(start),
        &built.stack,
        &FakeCode,
    );
    assert_eq!((got.len(), result), (0, Ok(())));
}

#[test]
fn start_with_sp_equal_to_fp_is_fine_but_above_is_not() {
    let built = build(&[activation(1, &[(3, 0)])], true, STACK_TOP);
    let linked = LinkedActivations::new(&built.activations);
    let start = built.start.unwrap();
    let same = StartRegs {
        sp: start.fp,
        ..start
    };
    let (got, result) = walk(linked.list(), Some(same), &built.stack, &FakeCode);
    assert_eq!((got.len(), result), (1, Ok(())));
    assert_eq!(got[0].sp, start.fp);
    let above = StartRegs {
        sp: start.fp + 8,
        ..start
    };
    let (got, result) = walk(linked.list(), Some(above), &built.stack, &FakeCode);
    assert_eq!(got.len(), 0);
    assert_eq!(
        result,
        Err(WalkError::StackPointerAboveFramePointer {
            sp: start.fp + 8,
            fp: start.fp
        })
    );
}

#[test]
fn empty_list_and_activation_without_wasm_frames() {
    let stack = FakeStack::new(0x1000, 4);
    let (got, result) = walk(ActivationList::empty(), None, &stack, &FakeCode);
    assert_eq!((got.len(), result), (0, Ok(())));

    // The middle activation exited straight back out of its entry trampoline.
    let built = build(
        &[
            activation(1, &[(3, 0)]),
            activation(1, &[]),
            activation(1, &[(1, 0)]),
        ],
        false,
        STACK_TOP,
    );
    let middle = &built.activations[1];
    assert_eq!(middle.exit_fp, middle.entry_fp);
    let got = walk_exact(&built, None);
    assert_eq!(
        got.iter().map(|f| f.activation_index).collect::<Vec<_>>(),
        [0, 2]
    );
}

/// A reader that records every address read.
struct RecordingReader<'a> {
    inner: &'a FakeStack,
    reads: RefCell<Vec<usize>>,
}

impl StackReader for RecordingReader<'_> {
    fn read_word(&self, addr: usize) -> Option<usize> {
        self.reads.borrow_mut().push(addr);
        self.inner.read_word(addr)
    }
}

#[test]
fn reads_stay_inside_each_activations_frames() {
    let built = build(
        &[
            activation(1, &[(3, 1), (2, 0)]),
            activation(2, &[(1, 2)]),
            activation(1, &[(0, 0), (4, 3), (5, 0)]),
        ],
        true,
        STACK_TOP,
    );
    let reader = RecordingReader {
        inner: &built.stack,
        reads: RefCell::new(Vec::new()),
    };
    let linked = LinkedActivations::new(&built.activations);
    let (got, result) = walk(linked.list(), built.start, &reader, &FakeCode);
    assert_eq!((got, result), (built.truth.clone(), Ok(())));
    let reads = reader.reads.into_inner();
    assert!(!reads.is_empty());
    for addr in reads {
        assert!(
            built.walk_ranges.iter().any(|r| r.contains(&addr)),
            "read {addr:#x} outside {:x?}",
            built.walk_ranges
        );
    }
}

#[test]
fn cursor_steps_like_the_visitor() {
    let built = build(
        &[activation(1, &[(3, 0), (2, 1)]), activation(1, &[(1, 0)])],
        false,
        STACK_TOP,
    );
    let linked = LinkedActivations::new(&built.activations);
    let mut cursor = FrameCursor::new(linked.list(), None, &built.stack, &FakeCode).unwrap();
    let mut got = Vec::new();
    while !cursor.done() {
        got.push(cursor.frame().unwrap());
        cursor.advance().unwrap();
    }
    assert_eq!(got, built.truth);
    assert_eq!(cursor.frame(), None);
    assert_eq!(
        cursor.advance(),
        Ok(()),
        "advancing a finished cursor does nothing"
    );
    assert!(cursor.done());

    // Works through `dyn` readers and lookups too.
    let reader: &dyn StackReader = &built.stack;
    let code: &dyn CodeLookup = &FakeCode;
    let (got, result) = walk(linked.list(), None, reader, code);
    assert_eq!((got, result), (built.truth.clone(), Ok(())));
}

#[test]
fn visitor_stops_at_break_without_reading_further() {
    let built = build(
        &[activation(1, &[(3, 0), (2, 1), (1, 0)])],
        false,
        STACK_TOP,
    );
    let linked = LinkedActivations::new(&built.activations);
    let reads = Cell::new(0);
    struct Counting<'a>(&'a FakeStack, &'a Cell<usize>);
    impl StackReader for Counting<'_> {
        fn read_word(&self, addr: usize) -> Option<usize> {
            self.1.set(self.1.get() + 1);
            self.0.read_word(addr)
        }
    }
    let reader = Counting(&built.stack, &reads);
    let found = visit_frames(linked.list(), None, &reader, &FakeCode, |frame| {
        if frame.location.func_index == 2 {
            ControlFlow::Break(frame.fp)
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(found, Ok(Some(built.truth[1].fp)));
    // One word for the exit (its return address), two for the step to the second
    // frame.
    assert_eq!(reads.get(), 3);
}

#[test]
fn walk_with_the_real_registry() {
    let registry = CodeRegistry::new();
    let module = registry
        .register(ModuleText {
            text_start: CODE_START,
            text_len: FUNC_COUNT as usize * FUNC_SIZE,
            functions: (0..FUNC_COUNT)
                .map(|i| FunctionRange {
                    start: i * FUNC_SIZE as u32,
                    len: FUNC_SIZE as u32,
                    func_index: 100 + i,
                })
                .collect(),
            data: 0,
        })
        .unwrap();
    let built = build(&[activation(1, &[(3, 0), (2, 1)])], false, STACK_TOP);
    let linked = LinkedActivations::new(&built.activations);
    let (got, result) = walk(linked.list(), None, &built.stack, &registry);
    assert_eq!(result, Ok(()));
    let expected: Vec<_> = built
        .truth
        .iter()
        .map(|f| Frame {
            location: CodeLocation {
                module: module.id(),
                func_index: 100 + f.location.func_index,
                text_offset: f.location.text_offset,
            },
            ..*f
        })
        .collect();
    assert_eq!(got, expected);
    drop(module);
    let (got, result) = walk(linked.list(), None, &built.stack, &registry);
    assert_eq!(got.len(), 0);
    assert_eq!(
        result,
        Err(WalkError::PcNotInWasmCode {
            pc: built.truth[0].pc
        })
    );
}

/// Walks through a [`RegistryView`], which hands the walker flat code maps: frames that
/// alternate between a module with a map and one without (function indices too large
/// for map entries) come out exactly as through the registry itself, and
/// `RegistryView::last_data` names each frame's module while the visitor sees it.
#[test]
fn walk_through_a_registry_view_with_code_maps() {
    let half = FUNC_COUNT / 2;
    let registry = CodeRegistry::new();
    let register = |first: u32, index_base: u32, data: usize| {
        registry
            .register(ModuleText {
                text_start: CODE_START + first as usize * FUNC_SIZE,
                text_len: half as usize * FUNC_SIZE,
                functions: (0..half)
                    .map(|i| FunctionRange {
                        start: i * FUNC_SIZE as u32,
                        len: FUNC_SIZE as u32,
                        func_index: index_base + i,
                    })
                    .collect(),
                data,
            })
            .unwrap()
    };
    // Module A (functions 0..half) has a map; module B's indices do not fit one.
    let a = register(0, 10, 0xaaa);
    let b = register(half, u32::MAX >> 5, 0xbbb);
    let in_b = |func: u32| func >= half;
    let built = build(
        &[
            activation(1, &[(3, 0), (half + 1, 1), (half + 1, 0), (4, 2), (5, 0)]),
            activation(1, &[(half + 7, 0), (2, 1), (half, 0)]),
        ],
        true,
        STACK_TOP,
    );
    let linked = LinkedActivations::new(&built.activations);
    let (through_registry, result) = walk(linked.list(), built.start, &built.stack, &registry);
    assert_eq!(result, Ok(()));
    assert_eq!(through_registry.len(), built.truth.len());
    for (got, truth) in through_registry.iter().zip(&built.truth) {
        let func = truth.location.func_index;
        let (module, index) = if in_b(func) {
            (b.id(), (u32::MAX >> 5) + func - half)
        } else {
            (a.id(), 10 + func)
        };
        assert_eq!(
            (got.location.module, got.location.func_index),
            (module, index)
        );
        assert_eq!((got.pc, got.fp, got.sp), (truth.pc, truth.fp, truth.sp));
    }
    let mut seen = Vec::new();
    let result = registry.with_view(|view| {
        visit_frames(linked.list(), built.start, &built.stack, view, |frame| {
            seen.push((*frame, view.last_data()));
            ControlFlow::<()>::Continue(())
        })
    });
    assert_eq!(result, Ok(None));
    let frames: Vec<Frame> = seen.iter().map(|(f, _)| *f).collect();
    assert_eq!(frames, through_registry);
    for ((_, data), truth) in seen.iter().zip(&built.truth) {
        let expected = if in_b(truth.location.func_index) {
            0xbbb
        } else {
            0xaaa
        };
        assert_eq!(*data, Some(expected), "data of {truth:?}");
    }
    // The cursor gives the same frames.
    registry.with_view(|view| {
        let mut cursor = FrameCursor::new(linked.list(), built.start, &built.stack, view).unwrap();
        let mut got = Vec::new();
        while let Some(frame) = cursor.frame() {
            got.push(frame);
            cursor.advance().unwrap();
        }
        assert_eq!(got, through_registry);
    });
    // With module B unregistered, the walk stops at the first of its PCs.
    drop(b);
    let result = registry.with_view(|view| {
        visit_frames(linked.list(), built.start, &built.stack, view, |_| {
            ControlFlow::<()>::Continue(())
        })
    });
    assert!(
        matches!(result, Err(WalkError::PcNotInWasmCode { .. })),
        "{result:?}"
    );
}

#[test]
fn live_reader_walks_a_real_buffer() {
    // Lay out frames in a real buffer at its real addresses and walk them through the
    // unsafe reader (this is what Miri checks).
    let specs = [activation(1, &[(3, 1), (2, 0)]), activation(2, &[(1, 0)])];
    let words = build(&specs, true, STACK_TOP).stack.words.len();
    let mut buffer = vec![0usize; words + 2];
    let buffer_start = buffer.as_mut_ptr().expose_provenance();
    let top = (buffer_start + words * 8 + 15) & !15;
    let built = build(&specs, true, top);
    assert!(built.stack.base >= buffer_start);
    let first = (built.stack.base - buffer_start) / 8;
    buffer[first..first + words].copy_from_slice(&built.stack.words);
    let buffer_start = buffer.as_ptr().expose_provenance();
    let lo = built.start.unwrap().fp;
    let hi = built.activations.last().unwrap().entry_fp;
    assert!(lo >= buffer_start && hi <= buffer_start + buffer.len() * 8);
    // SAFETY: `[lo, hi)` lies inside `buffer`, a live allocation of this thread whose
    // provenance was exposed just above and that is not written until the reader is
    // gone.
    let reader = unsafe { LiveStackReader::new(lo, hi) };
    let linked = LinkedActivations::new(&built.activations);
    let (got, result) = walk(linked.list(), built.start, &reader, &FakeCode);
    assert_eq!((got, result), (built.truth.clone(), Ok(())));
    // `reader` is dropped before `buffer` (reverse declaration order).
}

// ---- Errors ----------------------------------------------------------------------

/// A three-frame, one-activation stack and its frames, for corrupting.
fn three_frames() -> BuiltStack {
    build(
        &[activation(1, &[(3, 1), (2, 2), (1, 0)])],
        false,
        STACK_TOP,
    )
}

#[test]
fn frame_pointer_pointing_to_itself() {
    let mut built = three_frames();
    let fp = built.truth[1].fp;
    built.stack.set(fp, fp);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..2]);
    assert_eq!(result, Err(WalkError::FramePointerDidNotMove { fp }));

    // A recorded exit whose FP is below its SP.
    let mut built = three_frames();
    let sp = built.activations[0].exit_sp;
    built.activations[0].exit_fp = sp - 16;
    assert_eq!(
        walk_built(&built),
        (
            vec![],
            Err(WalkError::StackPointerAboveFramePointer { sp, fp: sp - 16 })
        )
    );
}

#[test]
fn frame_pointer_pointing_back() {
    let mut built = three_frames();
    let (younger, fp) = (built.truth[0].fp, built.truth[2].fp);
    built.stack.set(fp, younger);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth);
    assert_eq!(
        result,
        Err(WalkError::FramePointerMovedBackwards {
            fp,
            next_fp: younger
        })
    );
}

#[test]
fn misaligned_and_null_frame_pointers() {
    for (bad, error) in [
        (8usize, WalkError::MisalignedFramePointer { fp: 0 }),
        (1, WalkError::MisalignedFramePointer { fp: 0 }),
        (0, WalkError::NullFramePointer),
    ] {
        let mut built = three_frames();
        let fp = built.truth[0].fp;
        let next = if bad == 0 { 0 } else { built.truth[1].fp + bad };
        built.stack.set(fp, next);
        let (got, result) = walk_built(&built);
        assert_eq!(got, built.truth[..1]);
        let expected = match error {
            WalkError::MisalignedFramePointer { .. } => {
                WalkError::MisalignedFramePointer { fp: next }
            }
            other => other,
        };
        assert_eq!(result, Err(expected));
    }
}

#[test]
fn frame_pointer_past_entry() {
    let mut built = three_frames();
    let entry_fp = built.activations[0].entry_fp;
    let exit_fp = built.activations[0].exit_fp;
    let oldest = built.truth[2].fp;
    built.stack.set(oldest, entry_fp + 16);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth);
    assert_eq!(
        result,
        Err(WalkError::FramePointerOutOfRange {
            fp: entry_fp + 16,
            lo: exit_fp,
            hi: entry_fp
        })
    );
}

#[test]
fn frame_pointer_below_start() {
    let mut built = three_frames();
    let exit_fp = built.activations[0].exit_fp;
    let entry_fp = built.activations[0].entry_fp;
    let fp = built.truth[1].fp;
    built.stack.set(fp, exit_fp - 32);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..2]);
    assert_eq!(
        result,
        Err(WalkError::FramePointerOutOfRange {
            fp: exit_fp - 32,
            lo: exit_fp,
            hi: entry_fp
        })
    );

    // With start registers, the range starts at the start FP.
    let mut built = build(&[activation(1, &[(3, 1), (2, 2), (1, 0)])], true, STACK_TOP);
    let start = built.start.unwrap();
    let fp = built.truth[1].fp;
    built.stack.set(fp, start.fp - 16);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..2]);
    assert_eq!(
        result,
        Err(WalkError::FramePointerOutOfRange {
            fp: start.fp - 16,
            lo: start.fp,
            hi: built.activations[0].entry_fp,
        })
    );
}

#[test]
fn start_outside_its_activation() {
    let built = build(
        &[activation(1, &[(3, 0)]), activation(1, &[(2, 0)])],
        true,
        STACK_TOP,
    );
    let linked = LinkedActivations::new(&built.activations);
    let entry_fp = built.activations[0].entry_fp;
    for fp in [entry_fp, entry_fp + 16] {
        let start = StartRegs {
            fp,
            sp: fp,
            ..built.start.unwrap()
        };
        let (got, result) = walk(linked.list(), Some(start), &built.stack, &FakeCode);
        assert_eq!(got.len(), 0);
        assert_eq!(
            result,
            Err(WalkError::FramePointerOutOfRange {
                fp,
                lo: 1,
                hi: entry_fp - 1
            })
        );
    }
    let start = StartRegs {
        fp: 0,
        ..built.start.unwrap()
    };
    let (_, result) = walk(linked.list(), Some(start), &built.stack, &FakeCode);
    assert_eq!(result, Err(WalkError::NullFramePointer));
}

#[test]
fn exit_outside_its_activation() {
    let fresh = || {
        build(
            &[activation(1, &[(3, 0)]), activation(1, &[(2, 0)])],
            false,
            STACK_TOP,
        )
    };
    let mut built = fresh();
    let newer_entry = built.activations[0].entry_fp;
    let entry_fp = built.activations[1].entry_fp;
    let (lo, hi) = (newer_entry + 1, entry_fp - 1);
    // The older activation's exit must lie above the newer one's entry frame...
    built.activations[1].exit_sp = newer_entry;
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..1]);
    assert_eq!(
        result,
        Err(WalkError::StackPointerOutOfRange {
            sp: newer_entry,
            lo,
            hi
        })
    );
    // ...with its SP at most its FP...
    let mut built = fresh();
    let exit_fp = built.activations[1].exit_fp;
    built.activations[1].exit_sp = exit_fp + 16;
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..1]);
    assert_eq!(
        result,
        Err(WalkError::StackPointerAboveFramePointer {
            sp: exit_fp + 16,
            fp: exit_fp
        })
    );
    // ...and its FP checked like a start FP: inside the range, aligned, non-null.
    for (exit_fp, error) in [
        (
            entry_fp + 16,
            WalkError::FramePointerOutOfRange {
                fp: entry_fp + 16,
                lo,
                hi,
            },
        ),
        (
            newer_entry,
            WalkError::FramePointerOutOfRange {
                fp: newer_entry,
                lo,
                hi,
            },
        ),
        (
            exit_fp + 8,
            WalkError::MisalignedFramePointer { fp: exit_fp + 8 },
        ),
        (0, WalkError::NullFramePointer),
    ] {
        let mut built = fresh();
        built.activations[1].exit_fp = exit_fp;
        let (got, result) = walk_built(&built);
        assert_eq!(got, built.truth[..1]);
        assert_eq!(result, Err(error), "exit_fp {exit_fp:#x}");
    }
    // Equal to entry_fp: the host was called from the entry frame, no wasm frames.
    let mut built = fresh();
    built.activations[1].exit_fp = entry_fp;
    assert_eq!(walk_built(&built), (built.truth[..1].to_vec(), Ok(())));
}

/// A recorded exit whose PC is not the return address its call left below `exit_sp`
/// is stale: the record was not cleared when control went back to wasm, and no new
/// exit was recorded before this walk. The walk stops there, before reading the frames
/// the record describes.
#[test]
fn a_stale_exit_is_detected() {
    let mut built = build(
        &[activation(1, &[(3, 0)]), activation(1, &[(2, 1), (1, 0)])],
        false,
        STACK_TOP,
    );
    let exit_pc = built.activations[1].exit_pc;
    assert_eq!(
        built.stack.get(built.activations[1].exit_sp - 8),
        exit_pc,
        "the fake stack keeps the exit's return address below its SP"
    );
    assert_eq!(
        walk_built(&built).0,
        built.truth,
        "current: walks everything"
    );
    // Wasm code went on after the host returned (and then called out without recording
    // a new exit): another call left another return address there.
    let other = built.truth[0].pc;
    built.stack.set(built.activations[1].exit_sp - 8, other);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..1]);
    assert_eq!(
        result,
        Err(WalkError::StaleExit {
            activation_index: 1,
            exit_pc,
            found: other
        })
    );
}

#[test]
fn pc_outside_wasm_code() {
    let mut built = three_frames();
    let fp = built.truth[1].fp;
    built.stack.set(fp + 8, HOST_PC);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..2]);
    assert_eq!(result, Err(WalkError::PcNotInWasmCode { pc: HOST_PC }));

    // A start PC outside wasm code.
    let built = build(&[activation(1, &[(3, 0)])], true, STACK_TOP);
    let linked = LinkedActivations::new(&built.activations);
    let start = StartRegs {
        pc: CODE_START - 1,
        ..built.start.unwrap()
    };
    let (got, result) = walk(linked.list(), Some(start), &built.stack, &FakeCode);
    assert_eq!(got.len(), 0);
    assert_eq!(
        result,
        Err(WalkError::PcNotInWasmCode { pc: CODE_START - 1 })
    );
}

#[test]
fn unreadable_stack_word() {
    let mut built = three_frames();
    let fp = built.truth[1].fp;
    built.stack.unreadable.push(fp + 8..fp + 16);
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..2]);
    assert_eq!(result, Err(WalkError::UnreadableStack { addr: fp + 8 }));

    // A wrong entry_fp (too high) lets the chain run past the real entry frame: the
    // return address into the trampoline is not wasm code...
    let mut built = build(&[activation(1, &[(3, 0)])], false, STACK_TOP);
    let entry_fp = built.activations[0].entry_fp;
    built.activations[0].entry_fp = entry_fp + 16 * 3;
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth);
    assert_eq!(
        result,
        Err(WalkError::PcNotInWasmCode { pc: TRAMPOLINE_PC })
    );
    // ...and if that word looked like wasm code, the next read would hit the
    // (unreadable) host frames.
    let oldest = built.truth[0].fp;
    built.stack.set(oldest + 8, pc_in(1, 1));
    let (got, result) = walk_built(&built);
    assert_eq!(got.len(), 2);
    assert_eq!(result, Err(WalkError::UnreadableStack { addr: entry_fp }));
}

#[test]
fn missing_exit() {
    // The newest activation, walked without start registers.
    let mut built = three_frames();
    built.activations[0].exit_sp = 0;
    assert_eq!(
        walk_built(&built),
        (
            vec![],
            Err(WalkError::NoExitRecorded {
                activation_index: 0
            })
        )
    );
    // An older activation: the newer one's frames come first.
    let mut built = build(
        &[activation(1, &[(3, 0)]), activation(1, &[(2, 0)])],
        true,
        STACK_TOP,
    );
    built.activations[1].exit_sp = 0;
    let (got, result) = walk_built(&built);
    assert_eq!(got, built.truth[..1]);
    assert_eq!(
        result,
        Err(WalkError::NoExitRecorded {
            activation_index: 1
        })
    );
}

#[test]
fn activations_out_of_order() {
    let mut built = build(
        &[
            activation(1, &[(3, 0)]),
            activation(2, &[(2, 0)]),
            activation(1, &[(1, 0)]),
        ],
        false,
        STACK_TOP,
    );
    let newer = built.activations[1].entry_fp;
    built.activations[2].entry_fp = newer;
    for owner in [None, Some(1), Some(2)] {
        let linked = LinkedActivations::new(&built.activations);
        let list = match owner {
            Some(o) => linked.list().only_owner(o),
            None => linked.list(),
        };
        let (_, result) = walk(list, None, &built.stack, &FakeCode);
        assert_eq!(
            result,
            Err(WalkError::ActivationsOutOfOrder {
                activation_index: 2,
                newer_entry_fp: newer,
                entry_fp: newer
            }),
            "{owner:?}"
        );
    }
}

#[test]
fn misaligned_or_null_entry() {
    let mut built = three_frames();
    built.activations[0].entry_fp += 8;
    let (_, result) = walk_built(&built);
    assert_eq!(
        result,
        Err(WalkError::MisalignedFramePointer {
            fp: built.activations[0].entry_fp
        })
    );
    built.activations[0].entry_fp = 0;
    let (_, result) = walk_built(&built);
    assert_eq!(result, Err(WalkError::NullFramePointer));
}

#[test]
fn frames_at_the_top_of_the_address_space() {
    // The entry frame sits at the highest aligned address; nothing may overflow.
    let top_entry = usize::MAX & !15;
    let specs = [activation(1, &[(3, 0), (2, 1)])];
    let built = build(&specs, true, STACK_TOP);
    let words = built.stack.words.len();
    // Rebuild so that the oldest activation's entry_fp is `top_entry`.
    let delta = top_entry - built.activations[0].entry_fp;
    // Wrapping: host words above the entry frame shift past the top (never read).
    let shift = |a: usize| a.wrapping_add(delta);
    let mut stack = FakeStack::new(built.stack.base + delta, words);
    for i in 0..words {
        let word = built.stack.words[i];
        // Shift stack addresses (aligned words inside the stack); keep PCs and filler.
        let is_fp = word.is_multiple_of(16) && word >= built.stack.base && word <= STACK_TOP;
        stack.words[i] = if is_fp { shift(word) } else { word };
    }
    let activations = vec![Activation::new(top_entry, 1)];
    let start = built.start.map(|s| StartRegs {
        pc: s.pc,
        fp: shift(s.fp),
        sp: shift(s.sp),
    });
    let linked = LinkedActivations::new(&activations);
    let (got, result) = walk(linked.list(), start, &stack, &FakeCode);
    assert_eq!(result, Ok(()));
    assert_eq!(
        got,
        built
            .truth
            .iter()
            .map(|f| Frame {
                fp: shift(f.fp),
                sp: shift(f.sp),
                ..*f
            })
            .collect::<Vec<_>>()
    );

    // Corrupt the chain with values near usize::MAX: errors, never overflow panics.
    let oldest = got[1].fp;
    for bad in [
        usize::MAX,
        usize::MAX - 7,
        top_entry + 1,
        top_entry + 8,
        oldest,
    ] {
        let mut stack = stack.clone();
        stack.set(oldest, bad);
        let (_, result) = walk(linked.list(), start, &stack, &FakeCode);
        assert!(result.is_err(), "{bad:#x}");
    }
    // Exits at the very top: rejected by range checks, not by arithmetic.
    for (exit_fp, exit_sp) in [
        (top_entry - 16, usize::MAX),
        (top_entry - 16, top_entry),
        (usize::MAX, top_entry - 16),
    ] {
        let mut activations = vec![Activation::new(top_entry, 1)];
        activations[0].exit_fp = exit_fp;
        activations[0].exit_sp = exit_sp;
        let linked = LinkedActivations::new(&activations);
        let (got, result) = walk(linked.list(), None, &stack, &FakeCode);
        assert!(
            got.is_empty() && result.is_err(),
            "{exit_fp:#x} {exit_sp:#x}"
        );
    }
    // A reader that answers anything, at the top of memory.
    struct Anything(usize);
    impl StackReader for Anything {
        fn read_word(&self, _: usize) -> Option<usize> {
            Some(self.0)
        }
    }
    for word in [usize::MAX, top_entry, top_entry - 16, pc_in(1, 1)] {
        let mut activations = vec![Activation::new(top_entry, 1)];
        activations[0].exit_fp = word;
        activations[0].exit_sp = top_entry;
        let linked = LinkedActivations::new(&activations);
        let (got, _) = walk(linked.list(), None, &Anything(word), &FakeCode);
        assert!(got.len() <= 1, "{word:#x}");
    }
}

// ---- Property tests -----------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported with their seed; don't write regression files into the
        // source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (0..FUNC_COUNT, 1..FUNC_SIZE, 0usize..4).prop_map(|(func, pc_offset, slots)| FrameSpec {
        func,
        pc_offset,
        slots,
    })
}

/// 1 to 4 activations of owner 1 or 2 with, in all, at most 1000 frames.
fn activation_specs() -> impl Strategy<Value = Vec<ActivationSpec>> {
    let max_depth = if cfg!(miri) { 40 } else { 1000 };
    (1usize..=4).prop_flat_map(move |n| {
        let per = max_depth / n;
        prop::collection::vec(
            (
                1usize..=2,
                prop::collection::vec(frame_spec(), 1..=per),
                1usize..4,
            )
                .prop_map(|(owner, frames, host_gap)| ActivationSpec {
                    owner,
                    frames,
                    host_gap,
                }),
            n,
        )
    })
}

/// A corrupted word's new value.
#[derive(Clone, Debug)]
enum Corruption {
    /// Odd and outside wasm code: never a valid FP or PC.
    Poison(usize),
    /// Something a broken runtime might plausibly write.
    Plausible(Plausible),
}

#[derive(Clone, Debug)]
enum Plausible {
    /// An FP of some true frame, shifted by `16 * k`.
    FrameFp(prop::sample::Index, i8),
    /// A PC inside wasm code.
    Pc(u32, usize),
    Zero,
    Max,
    Any(usize),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        any::<usize>()
            .prop_map(|v| v | 1)
            .prop_filter("outside wasm code", |v| FakeCode.lookup_pc(*v).is_none())
            .prop_map(Corruption::Poison),
        prop_oneof![
            (any::<prop::sample::Index>(), -2i8..=2).prop_map(|(i, k)| Plausible::FrameFp(i, k)),
            (0..FUNC_COUNT, 0..FUNC_SIZE).prop_map(|(f, o)| Plausible::Pc(f, o)),
            Just(Plausible::Zero),
            Just(Plausible::Max),
            any::<usize>().prop_map(Plausible::Any),
        ]
        .prop_map(Corruption::Plausible),
    ]
}

impl Corruption {
    fn value(&self, built: &BuiltStack) -> usize {
        match self {
            Corruption::Poison(v) => *v,
            Corruption::Plausible(p) => match p {
                Plausible::FrameFp(i, k) => {
                    let fp = i.get(&built.truth).fp;
                    fp.wrapping_add_signed(16 * isize::from(*k))
                }
                Plausible::Pc(f, o) => pc_in(*f, *o),
                Plausible::Zero => 0,
                Plausible::Max => usize::MAX,
                Plausible::Any(v) => *v,
            },
        }
    }
}

/// Reads a fake stack and notes whether the walk has read the word at `watched`.
struct WatchingReader<'a> {
    inner: &'a FakeStack,
    watched: usize,
    hit: Cell<bool>,
}

impl StackReader for WatchingReader<'_> {
    fn read_word(&self, addr: usize) -> Option<usize> {
        if addr == self.watched {
            self.hit.set(true);
        }
        self.inner.read_word(addr)
    }
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed chains: the walk yields exactly the constructed frames, with and
    /// without start registers and owner filters.
    #[test]
    fn well_formed_chains_walk_exactly(
        specs in activation_specs(),
        use_start: bool,
        owner in prop::option::of(1usize..=2),
    ) {
        let built = build(&specs, use_start, STACK_TOP);
        let linked = LinkedActivations::new(&built.activations);
        let list = match owner {
            Some(o) => linked.list().only_owner(o),
            None => linked.list(),
        };
        let (expected, start) = built.expected(owner);
        let (got, result) = walk(list, start, &built.stack, &FakeCode);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(got, expected);
    }

    /// One corrupted stack word: until the walk reads it, frames are the true ones; a
    /// poisoned word that is read ends the walk with an error; the walk never panics
    /// and never yields more frames than exist.
    #[test]
    fn one_corrupted_word_never_goes_wrong(
        specs in activation_specs(),
        use_start: bool,
        at in any::<prop::sample::Index>(),
        corruption in corruption(),
    ) {
        let mut built = build(&specs, use_start, STACK_TOP);
        let i = at.index(built.stack.words.len());
        let addr = built.stack.addr_of(i);
        let original = built.stack.words[i];
        let value = corruption.value(&built);
        built.stack.words[i] = value;
        let reader = WatchingReader { inner: &built.stack, watched: addr, hit: Cell::new(false) };
        let linked = LinkedActivations::new(&built.activations);
        let mut got = Vec::new();
        let mut diverged = false;
        let result = visit_frames(linked.list(), built.start, &reader, &FakeCode, |frame| {
            if !reader.hit.get() {
                assert_eq!(Some(frame), built.truth.get(got.len()), "frame before the corrupted read");
            } else {
                diverged = true;
            }
            got.push(*frame);
            ControlFlow::<()>::Continue(())
        });
        prop_assert!(got.len() <= built.truth.len());
        // The walk reads each frame's saved FP and return address together, so it also
        // reads (and ignores) the return address of each run's oldest frame, whose
        // saved FP is the activation's entry FP.
        let ignored = built.truth.iter().enumerate().any(|(k, f)| {
            let oldest_of_run = built.truth.get(k + 1).is_none_or(|n| n.activation_index != f.activation_index);
            oldest_of_run && f.fp + 8 == addr
        });
        if !reader.hit.get() || ignored {
            prop_assert_eq!(result, Ok(None));
            prop_assert_eq!(&got, &built.truth);
        }
        if let (Corruption::Poison(_), false) = (&corruption, ignored) {
            prop_assert!(!diverged, "a poisoned word yielded a frame");
            if reader.hit.get() {
                prop_assert!(result.is_err());
                prop_assert_eq!(&got[..], &built.truth[..got.len()]);
            }
        }
        if value == original {
            // The "corruption" did not change anything.
            prop_assert_eq!(result, Ok(None));
        }
        // The fake stack itself vouches for its runs (`StackReader::covers`), so the
        // walker reads it without a check per frame: the same frames, the same end.
        let linked = LinkedActivations::new(&built.activations);
        let (covered, covered_result) = walk(linked.list(), built.start, &built.stack, &FakeCode);
        prop_assert_eq!(covered, got);
        prop_assert_eq!(covered_result, result.map(|broke| assert!(broke.is_none())));
    }

    /// A corrupted activation record (entry FP, exit FP or exit SP): no panic, no
    /// extra frames, and frames of newer activations are unaffected.
    #[test]
    fn corrupted_activation_record(
        specs in activation_specs(),
        use_start: bool,
        which in any::<prop::sample::Index>(),
        field in 0u8..4,
        corruption in corruption(),
    ) {
        let mut built = build(&specs, use_start, STACK_TOP);
        let a = which.index(built.activations.len());
        let value = corruption.value(&built);
        match field {
            0 => built.activations[a].exit_fp = value,
            1 => built.activations[a].exit_sp = value,
            2 => built.activations[a].exit_pc = value,
            _ => built.activations[a].entry_fp = value,
        }
        let (got, _) = walk_built(&built);
        prop_assert!(got.len() <= built.truth.len());
        let newer = built.truth.iter().take_while(|f| f.activation_index < a).count();
        prop_assert_eq!(&got[..newer.min(got.len())], &built.truth[..newer.min(got.len())]);
        // Newer activations' frames are all yielded: this record is read only after.
        prop_assert!(got.len() >= newer);
    }
}
