//! The classifier on fake stacks, one test per PC state, and the frame-state table on
//! the bytes Cranelift 0.112 emits.

use super::*;
use crate::unwind::fake_stack::{
    build, pc_in, ActivationSpec, BuiltStack, FakeCode, FrameSpec, STACK_TOP, TRAMPOLINE_PC,
};

/// The function the tests interrupt (its frames are the newest).
const G: u32 = 40;

fn spec(funcs: &[u32]) -> ActivationSpec {
    ActivationSpec {
        owner: 1,
        frames: funcs
            .iter()
            .map(|&func| FrameSpec {
                func,
                pc_offset: 0x10 + func as usize,
                slots: 4,
            })
            .collect(),
        host_gap: 2,
    }
}

/// Two activations: the newest with `newest` frames (youngest first), the older with
/// three, walked from its exit.
fn two_activations(newest: &[u32], use_start: bool) -> BuiltStack {
    build(&[spec(newest), spec(&[7, 8, 9])], use_start, STACK_TOP)
}

fn snapshots(built: &BuiltStack) -> Vec<ActivationSnapshot> {
    built
        .activations
        .iter()
        .map(ActivationSnapshot::of)
        .collect()
}

fn raw(f: &Frame) -> RawFrame {
    RawFrame {
        pc: f.pc,
        module: f.location.module,
        func_index: f.location.func_index,
        text_offset: f.location.text_offset,
    }
}

fn raw_at(pc: usize) -> RawFrame {
    let loc = FakeCode.lookup_pc(pc).expect("fake pc");
    RawFrame {
        pc,
        module: loc.module,
        func_index: loc.func_index,
        text_offset: loc.text_offset,
    }
}

fn run(
    built: &BuiltStack,
    acts: &[ActivationSnapshot],
    regs: SampleRegs,
    kind: PcKind,
) -> (SampleKind, Vec<RawFrame>, bool) {
    let mut out = [RawFrame::default(); 64];
    let c = classify(regs, kind, acts, &built.stack, &FakeCode, &mut out);
    (c.kind, out[..c.frames].to_vec(), c.truncated)
}

fn truth(built: &BuiltStack) -> Vec<RawFrame> {
    built.truth.iter().map(raw).collect()
}

/// A naive frame-pointer walk from `(pc, rbp)`: what a profiler without the frame
/// states would record.
fn naive(built: &BuiltStack, acts: &[ActivationSnapshot], regs: SampleRegs) -> Vec<RawFrame> {
    let mut out = [RawFrame::default(); 64];
    let c = classify(
        regs,
        PcKind::Wasm(FrameState::Body),
        acts,
        &built.stack,
        &FakeCode,
        &mut out,
    );
    out[..c.frames].to_vec()
}

#[test]
fn body_is_the_plain_walk_of_every_activation() {
    let built = two_activations(&[3, 2, 1], true);
    let start = built.start.expect("start");
    let regs = SampleRegs {
        pc: start.pc,
        fp: start.fp,
        sp: start.sp,
    };
    let (kind, frames, truncated) = run(
        &built,
        &snapshots(&built),
        regs,
        PcKind::Wasm(FrameState::Body),
    );
    assert_eq!(kind, SampleKind::Wasm);
    assert!(!truncated);
    assert_eq!(frames, truth(&built));
    assert_eq!(frames.len(), 6);
}

/// The newest activation's youngest frame (`3`) has just called `G`; `G` is at
/// `state`. Returns the registers and the expected frames.
fn in_callee(built: &mut BuiltStack, state: FrameState, g_offset: usize) -> SampleRegs {
    let start = built.start.expect("start");
    // The call pushed the return address into `3` just below its SP.
    let ra_at = start.sp - 8;
    assert_eq!(built.stack.get(ra_at), start.pc);
    let sp = match state {
        FrameState::AfterPush => {
            // `push rbp` stored the caller's FP below the return address.
            built.stack.set(ra_at - 8, start.fp);
            ra_at - 8
        }
        _ => ra_at,
    };
    SampleRegs {
        pc: pc_in(G, g_offset),
        fp: start.fp,
        sp,
    }
}

fn expected_with_callee(built: &BuiltStack, g_offset: usize) -> Vec<RawFrame> {
    let mut expected = vec![raw_at(pc_in(G, g_offset))];
    expected.extend(truth(built));
    expected
}

#[test]
fn entry_keeps_the_caller_that_a_naive_walk_drops() {
    let mut built = two_activations(&[3, 2, 1], true);
    let regs = in_callee(&mut built, FrameState::Entry, 0);
    let acts = snapshots(&built);
    let (kind, frames, _) = run(&built, &acts, regs, PcKind::Wasm(FrameState::Entry));
    assert_eq!(kind, SampleKind::Wasm);
    let expected = expected_with_callee(&built, 0);
    assert_eq!(frames, expected);
    // The naive walk from rbp skips `3`, the caller.
    let naive = naive(&built, &acts, regs);
    assert_eq!(naive[0], expected[0]);
    assert_ne!(naive[1..], expected[1..]);
    assert_eq!(
        naive[1], expected[2],
        "the naive walk's second frame is `2`"
    );
}

#[test]
fn after_push_reads_the_return_address_above_the_saved_fp() {
    let mut built = two_activations(&[3, 2, 1], true);
    let regs = in_callee(&mut built, FrameState::AfterPush, 1);
    let acts = snapshots(&built);
    let (kind, frames, _) = run(&built, &acts, regs, PcKind::Wasm(FrameState::AfterPush));
    assert_eq!(kind, SampleKind::Wasm);
    assert_eq!(frames, expected_with_callee(&built, 1));
    // Read as if at entry, [sp] is the saved FP, not a return address: no exact stack.
    let (wrong, _, _) = run(&built, &acts, regs, PcKind::Wasm(FrameState::Entry));
    assert_eq!(wrong, SampleKind::Unwalkable);
}

#[test]
fn torn_down_at_a_return_or_tail_call_keeps_the_caller() {
    let mut built = two_activations(&[3, 2, 1], true);
    // After `pop rbp`, at `ret`: the same registers as at entry, another PC.
    let regs = in_callee(&mut built, FrameState::TornDown, 0x80);
    let acts = snapshots(&built);
    let (kind, frames, _) = run(&built, &acts, regs, PcKind::Wasm(FrameState::TornDown));
    assert_eq!(kind, SampleKind::Wasm);
    let expected = expected_with_callee(&built, 0x80);
    assert_eq!(frames, expected);
    assert_ne!(naive(&built, &acts, regs), expected);
}

#[test]
fn entry_of_the_oldest_frame_ends_at_the_trampoline() {
    // The newest activation has no wasm frame yet: the trampoline just called `G`.
    let mut built = two_activations(&[], false);
    let acts = {
        let mut a = snapshots(&built);
        a[0].exit_sp = 0;
        a
    };
    let entry_fp = acts[0].entry_fp;
    // The trampoline's call pushed its return address just below its frame.
    let ra_at = entry_fp - 16 - 8;
    built.stack.set(ra_at, TRAMPOLINE_PC);
    for (state, off, sp) in [
        (FrameState::Entry, 0, ra_at),
        (FrameState::AfterPush, 1, ra_at - 8),
        (FrameState::TornDown, 0x80, ra_at),
    ] {
        built.stack.set(ra_at - 8, entry_fp);
        let regs = SampleRegs {
            pc: pc_in(G, off),
            fp: entry_fp,
            sp,
        };
        let (kind, frames, _) = run(&built, &acts, regs, PcKind::Wasm(state));
        assert_eq!(kind, SampleKind::Wasm, "{state:?}");
        let mut expected = vec![raw_at(pc_in(G, off))];
        expected.extend(truth(&built));
        assert_eq!(frames, expected, "{state:?}");
    }
}

#[test]
fn moving_frame_record_is_found_below_rbp() {
    // `G` is the youngest frame, with 4 slots (64 bytes) below its record; it moved
    // rsp and rbp down by 48 and has not finished copying the record.
    let built = two_activations(&[G, 2, 1], true);
    let start = built.start.expect("start");
    let diff = 48;
    let regs = SampleRegs {
        pc: start.pc,
        fp: start.fp - diff,
        sp: start.sp,
    };
    let acts = snapshots(&built);
    let (kind, frames, _) = run(
        &built,
        &acts,
        regs,
        PcKind::Wasm(FrameState::Moving(diff as u32)),
    );
    assert_eq!(kind, SampleKind::Wasm);
    assert_eq!(frames, truth(&built));
    // From rbp itself the walk reads the half-copied record (filler words).
    let (naive_kind, _, _) = run(&built, &acts, regs, PcKind::Wasm(FrameState::Body));
    assert_eq!(naive_kind, SampleKind::Unwalkable);
}

#[test]
fn unknown_state_is_counted_not_guessed() {
    let built = two_activations(&[3, 2, 1], true);
    let start = built.start.expect("start");
    let regs = SampleRegs {
        pc: start.pc,
        fp: start.fp,
        sp: start.sp,
    };
    let (kind, frames, _) = run(
        &built,
        &snapshots(&built),
        regs,
        PcKind::Wasm(FrameState::Unknown),
    );
    assert_eq!((kind, frames.len()), (SampleKind::Unwalkable, 0));
}

#[test]
fn host_called_from_wasm_has_the_wasm_stack_below_it() {
    let built = two_activations(&[3, 2, 1], false);
    let acts = snapshots(&built);
    assert_ne!(acts[0].exit_sp, 0);
    // Anywhere outside wasm: the host function, the exit stub after its record, the
    // exit trampoline.
    for kind in [PcKind::Host, PcKind::Stub, PcKind::Trampoline] {
        let regs = SampleRegs {
            pc: 0x1234,
            fp: 0,
            sp: acts[0].exit_sp - 0x200,
        };
        let (got, frames, _) = run(&built, &acts, regs, kind);
        assert_eq!(got, SampleKind::Host);
        assert_eq!(frames, truth(&built));
    }
}

#[test]
fn transitions_have_no_frames() {
    let built = two_activations(&[3, 2, 1], false);
    let mut acts = snapshots(&built);
    // The exit was cleared (or not yet written): the exit stub, the entry stubs and the
    // trampolines are transitions.
    acts[0].exit_sp = 0;
    let entry_fp = acts[0].entry_fp;
    for kind in [PcKind::Stub, PcKind::Trampoline] {
        let regs = SampleRegs {
            pc: 0x1234,
            fp: 0,
            sp: entry_fp - 0x100,
        };
        assert_eq!(
            run(&built, &acts, regs, kind),
            (SampleKind::Transition, vec![], false)
        );
    }
    // Host code of the entry path: the activation pushed but entry_fp not yet written,
    // or framewalk_enter returned (SP above entry_fp).
    let above = SampleRegs {
        pc: 0x1234,
        fp: 0,
        sp: entry_fp + 0x40,
    };
    assert_eq!(
        run(&built, &acts, above, PcKind::Host).0,
        SampleKind::Transition
    );
    let mut incomplete = acts.clone();
    incomplete[0].entry_fp = 0;
    let below = SampleRegs {
        sp: entry_fp - 0x100,
        ..above
    };
    assert_eq!(
        run(&built, &incomplete, below, PcKind::Host).0,
        SampleKind::Transition
    );
    // No activation at all, but a trampoline or stub PC: also a transition.
    assert_eq!(
        run(&built, &[], below, PcKind::Stub).0,
        SampleKind::Transition
    );
}

#[test]
fn host_code_below_a_complete_activation_without_exit_is_a_libcall() {
    let built = two_activations(&[3, 2, 1], false);
    let mut acts = snapshots(&built);
    acts[0].exit_sp = 0;
    let regs = SampleRegs {
        pc: 0x1234,
        fp: 0,
        sp: acts[0].entry_fp - 0x300,
    };
    assert_eq!(
        run(&built, &acts, regs, PcKind::Host),
        (SampleKind::Libcall, vec![], false)
    );
}

#[test]
fn no_activation_is_outside_wasm_and_wasm_without_one_is_unwalkable() {
    let built = two_activations(&[3], false);
    let regs = SampleRegs {
        pc: 0x1234,
        fp: 0,
        sp: 0x1000,
    };
    assert_eq!(
        run(&built, &[], regs, PcKind::Host).0,
        SampleKind::OutsideWasm
    );
    assert_eq!(
        run(&built, &[], regs, PcKind::Wasm(FrameState::Body)).0,
        SampleKind::Unwalkable
    );
}

#[test]
fn wasm_pc_with_an_exit_recorded_is_unwalkable() {
    let built = two_activations(&[3, 2, 1], false);
    let acts = snapshots(&built);
    let regs = SampleRegs {
        pc: pc_in(3, 0x20),
        fp: acts[0].exit_fp,
        sp: acts[0].exit_sp,
    };
    assert_eq!(
        run(&built, &acts, regs, PcKind::Wasm(FrameState::Body)).0,
        SampleKind::Unwalkable
    );
}

#[test]
fn a_full_buffer_keeps_the_newest_frames_and_says_so() {
    let built = two_activations(&[3, 2, 1], true);
    let start = built.start.expect("start");
    let regs = SampleRegs {
        pc: start.pc,
        fp: start.fp,
        sp: start.sp,
    };
    for n in 1..6 {
        let mut out = vec![RawFrame::default(); n];
        let c = classify(
            regs,
            PcKind::Wasm(FrameState::Body),
            &snapshots(&built),
            &built.stack,
            &FakeCode,
            &mut out,
        );
        assert_eq!((c.kind, c.frames, c.truncated), (SampleKind::Wasm, n, true));
        assert_eq!(out, truth(&built)[..n]);
    }
}

#[test]
fn a_corrupt_older_activation_makes_the_sample_unwalkable() {
    let built = two_activations(&[3, 2, 1], true);
    let start = built.start.expect("start");
    let mut acts = snapshots(&built);
    acts[1].exit_pc ^= 0x10; // stale: differs from the return address on the stack
    let regs = SampleRegs {
        pc: start.pc,
        fp: start.fp,
        sp: start.sp,
    };
    assert_eq!(
        run(&built, &acts, regs, PcKind::Wasm(FrameState::Body)),
        (SampleKind::Unwalkable, vec![], false)
    );
}

// The frame-state table, on code bytes as Cranelift 0.112 emits them (from
// `objdump -d` of `framewalk compile` output).

/// `(i32) -> i32` returning through `ret` after a call: prologue, stack check, call,
/// epilogue.
const CALL_THEN_RET: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, // push rbp; mov rbp, rsp
    0x4c, 0x8b, 0x57, 0x08, // mov r10, [rdi + 8]
    0x4d, 0x8b, 0x12, // mov r10, [r10]
    0x49, 0x83, 0xc2, 0x10, // add r10, 16
    0x49, 0x39, 0xe2, // cmp r10, rsp
    0x0f, 0x87, 0x16, 0x00, 0x00, 0x00, // ja trap
    0x4c, 0x8b, 0x47, 0x20, // mov r8, [rdi + 0x20]
    0x49, 0x89, 0xfb, // mov r11, rdi
    0x49, 0x8b, 0x7b, 0x30, // mov rdi, [r11 + 0x30]
    0x4c, 0x89, 0xde, // mov rsi, r11
    0x41, 0xff, 0xd0, // call r8
    0x48, 0x89, 0xec, 0x5d, // mov rsp, rbp; pop rbp
    0xc3, // ret
    0x0f, 0x0b, // ud2
];

/// A `tail` function with stack arguments: `ret 0x30`.
const RET_N: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xd0, 0x48, 0x89, 0xec, 0x5d, 0xc2, 0x30, 0x00, 0xcc, 0xcc,
];

/// A function whose tail call needs 0x30 more bytes of stack arguments: it moves its
/// frame record down, and ends with `jmp rel32`.
const GROWS_THEN_TAIL_CALLS: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, // 0x00
    0x4c, 0x8b, 0x57, 0x08, 0x4d, 0x8b, 0x12, 0x49, 0x83, 0xc2, 0x40, 0x49, 0x39, 0xe2, 0x0f, 0x87,
    0x3e, 0x00, 0x00, 0x00, // 0x04..0x18: stack check
    0x48, 0x83, 0xec, 0x30, // 0x18 sub rsp, 0x30
    0x48, 0x89, 0xe5, // 0x1c mov rbp, rsp
    0x4c, 0x8b, 0x5c, 0x24, 0x30, // 0x1f mov r11, [rsp + 0x30]
    0x4c, 0x89, 0x1c, 0x24, // 0x24 mov [rsp], r11
    0x4c, 0x8b, 0x5c, 0x24, 0x38, // 0x28 mov r11, [rsp + 0x38]
    0x4c, 0x89, 0x5c, 0x24, 0x08, // 0x2d mov [rsp + 8], r11
    0x89, 0x55, 0x10, // 0x32 mov [rbp + 0x10], edx
    0x48, 0x89, 0xfe, // 0x35 mov rsi, rdi
    0x48, 0x89, 0xec, 0x5d, // 0x38 mov rsp, rbp; pop rbp
    0xe9, 0x00, 0x00, 0x00, 0x00, // 0x3c jmp
    0x0f, 0x0b, // 0x41 ud2
];

/// A tail call to a host import through a register.
const TAIL_CALLS_REGISTER: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x4c, 0x8b, 0x57, 0x20, 0x48, 0x89, 0xec, 0x5d, 0x41, 0xff, 0xe2, 0x0f,
    0x0b,
];

/// A tail call that needs fewer stack arguments than the function received: moves the
/// return address up after `pop rbp`.
const SHRINKS_THEN_TAIL_CALLS: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xec, 0x5d, // 0x08:
    0x4c, 0x8b, 0x1c, 0x24, // mov r11, [rsp]
    0x4c, 0x89, 0x5c, 0x24, 0x20, // mov [rsp + 0x20], r11
    0x48, 0x83, 0xc4, 0x20, // add rsp, 0x20
    0xe9, 0x00, 0x00, 0x00, 0x00, // jmp
];

fn states(code: &[u8]) -> Vec<FrameState> {
    let table = FrameStateTable::build(code, [(0, code.len() as u32)]);
    (0..code.len() as u32).map(|o| table.state_at(o)).collect()
}

fn expect_states(code: &[u8], runs: &[(usize, usize, FrameState)]) {
    let got = states(code);
    let mut want = vec![FrameState::Body; code.len()];
    want[0] = FrameState::Entry;
    want[1..4].fill(FrameState::AfterPush);
    for &(from, to, state) in runs {
        want[from..to].fill(state);
    }
    assert_eq!(got, want);
}

#[test]
fn table_marks_prologue_and_ret_epilogue() {
    // After `pop rbp` (0x2c): the `ret` (and nothing after it).
    expect_states(CALL_THEN_RET, &[(0x2d, 0x2e, FrameState::TornDown)]);
    expect_states(RET_N, &[(0x0b, 0x0e, FrameState::TornDown)]);
}

#[test]
fn table_marks_the_moving_window_and_the_tail_call() {
    expect_states(
        GROWS_THEN_TAIL_CALLS,
        &[
            (0x1f, 0x32, FrameState::Moving(0x30)),
            (0x3c, 0x41, FrameState::TornDown),
        ],
    );
    expect_states(TAIL_CALLS_REGISTER, &[(0x0c, 0x0f, FrameState::TornDown)]);
    expect_states(
        SHRINKS_THEN_TAIL_CALLS,
        &[(0x08, 0x1a, FrameState::TornDown)],
    );
}

#[test]
fn table_refuses_what_it_does_not_recognize() {
    // No `push rbp; mov rbp, rsp`: the whole function is unknown.
    let mut no_prologue = CALL_THEN_RET.to_vec();
    no_prologue[0] = 0x90;
    assert!(states(&no_prologue)
        .iter()
        .all(|s| *s == FrameState::Unknown));
    // An epilogue followed by something else: unknown from there on.
    let mut odd = CALL_THEN_RET.to_vec();
    odd[0x2d] = 0x90;
    let got = states(&odd);
    assert!(got[0x2d..].iter().all(|s| *s == FrameState::Unknown));
    assert_eq!(got[0x2c], FrameState::Body);
}

#[test]
fn table_of_several_functions_keeps_them_apart() {
    let mut text = CALL_THEN_RET.to_vec();
    text.resize(0x40, 0xcc);
    text.extend_from_slice(RET_N);
    let table = FrameStateTable::build(
        &text,
        [(0, CALL_THEN_RET.len() as u32), (0x40, RET_N.len() as u32)],
    );
    assert_eq!(table.state_at(0), FrameState::Entry);
    assert_eq!(table.state_at(0x2d), FrameState::TornDown);
    assert_eq!(table.state_at(0x40), FrameState::Entry);
    assert_eq!(table.state_at(0x41), FrameState::AfterPush);
    assert_eq!(table.state_at(0x44), FrameState::Body);
    assert_eq!(table.state_at(0x4b), FrameState::TornDown);
    assert_eq!(table.special_runs(), 6);
}
