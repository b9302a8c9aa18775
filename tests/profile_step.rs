//! The single-step oracle of the profiler (issue 24): a small program with calls, a
//! host call that re-enters wasm, a tail call that moves its frame down and one that
//! moves the return address up (an epilogue of several instructions) is run with the
//! trap flag set, so the CPU raises SIGTRAP after every instruction — host code, the
//! entry and exit stubs, the trampolines and every wasm instruction. At each step the
//! SIGTRAP handler takes a sample of the interrupted registers exactly as the SIGPROF
//! handler does (`Sampler::step_sample`: same activations, PC kind, classification and
//! walk) and checks it on the spot against a second ground truth, so that the stack it
//! checks is the live one:
//!
//! - **Wasm code** (`PcKind::Wasm`): the sample must be `Wasm`, and its frames must be
//!   the `.eh_frame` CFI unwind of the same registers (gimli's `UnwindContext`, the leaf
//!   from the row at its PC, each caller from the row at its return address minus one,
//!   until the return address leaves the wasm bodies with RBP at the activation's
//!   `entry_fp`; older activations from their recorded exits). Cranelift's CFI is wrong
//!   after an epilogue's `pop rbp` (no rows there) and in a tail call's frame-moving
//!   window (CFA `rsp + 16` while RBP is moved), so there — `FrameState::TornDown` and
//!   `FrameState::Moving` — the expected stack is the previous step's (these runs are
//!   straight-line code inside one function: the previous step must be the
//!   instruction just before, in the same function, and only the leaf's PC changes).
//!   The same holds for the `mov rbp, rsp` between a tail call's `sub rsp, D` and the
//!   move (the CFI already describes the moved frame there), recognized by its bytes.
//!   That rule does not trust the classification: were a body instruction wrongly
//!   labelled, its stack would still be the previous one. Every other wasm step that
//!   follows an instruction of the same function (not at the function's first byte,
//!   so not a call's or return's target) is checked against the previous step as well.
//! - **Host code called from wasm** (a recorded exit): the frames must be the CFI unwind
//!   from the exits.
//! - **Transitions** must be at a PC that is not wasm code: a stub, a trampoline, or
//!   host code while the newest activation is incomplete or returning.
//!
//! `OutsideWasm` samples must have no activation; `Libcall` samples (the last
//! instructions of the host function after it cleared its exit) are only counted.
//! No sample may be `Unwalkable`. Each frame state (entry before and after
//! `push rbp`, body, torn down, moving) and the host and transition kinds must occur.
//! The handler allocates nothing: its state (CFI tables, gimli's context, counters and
//! the first mismatches) is built before stepping starts. It is installed for the
//! stepped call only and the previous SIGTRAP action restored after (framewalk's trap
//! handlers take SIGILL, SIGFPE, SIGSEGV and SIGBUS, not SIGTRAP). The whole call is
//! stepped, host code included: the run is deterministic and takes milliseconds.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use cranelift_codegen::gimli::{
    read::{BaseAddresses, CfaRule, CieOrFde, EhFrame, RegisterRule, UnwindContext, UnwindSection},
    EhFrameOffset, LittleEndian, X86_64,
};
use framewalk::profile::classify::{ActivationSnapshot, PcKind, RawFrame, SampleRegs};
use framewalk::profile::{FrameState, SampleClock, SampleKind, Sampler, SamplerConfig};
use framewalk::{Caller, Engine, Linker, Module, Store};

const PROGRAM: &str = r#"
(module
  (import "h" "host" (func $host (param i32) (result i32)))
  (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $mid (param i32) (result i32) (call $leaf (call $leaf (local.get 0))))
;; Has stack arguments its tail callee does not: moves the return address up.
  (func $many (param i64 i64 i64 i64 i64 i64 i64 i64) (result i64)
    (return_call $small (i64.add (local.get 0) (local.get 7))))
  (func $small (param i64) (result i64) (i64.mul (local.get 0) (i64.const 3)))
  ;; Needs a larger argument area than its own for $many: moves its frame.
  (func $tail (param i64) (result i64)
    (return_call $many (local.get 0) (i64.const 1) (i64.const 2) (i64.const 3)
      (i64.const 4) (i64.const 5) (i64.const 6) (i64.const 7)))
  (func $inner (export "inner") (param i32) (result i32) (call $mid (local.get 0)))
  (func $run (export "run") (param i32) (result i32)
    (local.set 0 (call $mid (local.get 0)))
    (local.set 0 (call $host (local.get 0)))
    (i32.add (local.get 0) (i32.wrap_i64 (call $tail (i64.extend_i32_u (local.get 0))))))
)
"#;

/// Most frames (and activations) a checked sample may have.
const MAX: usize = 16;
/// Mismatches kept for the report.
const KEPT: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct F {
    pc: usize,
    func: u32,
}

#[derive(Clone, Copy, Debug)]
struct Mismatch {
    step: u64,
    regs: SampleRegs,
    kind: SampleKind,
    pc_kind: PcKind,
    what: &'static str,
    got: [F; MAX],
    got_len: usize,
    want: [F; MAX],
    want_len: usize,
}

/// Everything the SIGTRAP handler uses, built before stepping.
struct Oracle {
    sampler: Sampler,
    eh_frame: &'static [u8],
    bases: BaseAddresses,
    /// (start, end, FDE offset), sorted.
    fdes: Vec<(u64, u64, EhFrameOffset<usize>)>,
    /// (start, end, function index) of each wasm body, sorted.
    bodies: Vec<(usize, usize, u32)>,
    ctx: UnwindContext<usize>,
    steps: u64,
    /// Steps by `SampleKind` discriminant.
    kinds: [u64; 6],
    /// Wasm steps by frame state: entry, after push, body, torn down, moving, unknown.
    states: [u64; 6],
    /// The previous wasm step: its step number, function and expected frames.
    prev: Option<(u64, u32, [F; MAX], usize)>,
    /// Samples checked against the CFI, and also against the previous step.
    cfi_checked: u64,
    also_previous: u64,
    /// Samples checked against the previous step alone (the CFI is wrong there).
    previous_checked: u64,
    /// Wasm steps inside the re-entry (two activations), host steps with wasm frames.
    reentered: u64,
    host_with_frames: u64,
    /// The current and the longest run of consecutive torn-down steps.
    torn_down_run: u64,
    longest_torn_down: u64,
    mismatches: [Option<Mismatch>; KEPT],
    mismatch_count: u64,
}

static ORACLE: AtomicPtr<Oracle> = AtomicPtr::new(std::ptr::null_mut());
static STEPPING: AtomicBool = AtomicBool::new(false);

impl Oracle {
    fn body_of(&self, at: usize) -> Option<u32> {
        let i = self.bodies.partition_point(|b| b.0 <= at);
        let b = self.bodies.get(i.checked_sub(1)?)?;
        (at < b.1).then_some(b.2)
    }

    /// One CFI step: the caller's (pc, rbp, rsp) of a frame at `pc` (the row at
    /// `pc - 1` for a return address).
    fn cfi_step(
        &mut self,
        row_at: usize,
        rbp: usize,
        rsp: usize,
        lo: usize,
        hi: usize,
    ) -> Result<(usize, usize, usize), &'static str> {
        let at = row_at as u64;
        let i = self.fdes.partition_point(|f| f.0 <= at);
        let offset = match i.checked_sub(1).map(|i| &self.fdes[i]) {
            Some((_, end, offset)) if at < *end => *offset,
            _ => return Err("no FDE covers the pc"),
        };
        let eh_frame = EhFrame::new(self.eh_frame, LittleEndian);
        let fde = eh_frame
            .fde_from_offset(&self.bases, offset, EhFrame::cie_from_offset)
            .map_err(|_| "bad FDE")?;
        let row = fde
            .unwind_info_for_address(&eh_frame, &self.bases, &mut self.ctx, at)
            .map_err(|_| "no CFI row")?;
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                let base = match *register {
                    X86_64::RBP => rbp,
                    X86_64::RSP => rsp,
                    _ => return Err("CFA from another register"),
                };
                base.wrapping_add_signed(*offset as isize)
            }
            _ => return Err("CFA expression"),
        };
        let read = |addr: usize| {
            if addr < lo || addr.saturating_add(8) > hi {
                return Err("stack word out of range");
            }
            // SAFETY: `[lo, hi)` is this thread's live stack, from the interrupted SP (or
            // the lowest exit) to above the oldest entry frame.
            Ok(unsafe { (addr as *const usize).read() })
        };
        let ra = match row.register(X86_64::RA) {
            RegisterRule::Offset(o) => read(cfa.wrapping_add_signed(o as isize))?,
            _ => return Err("return address rule"),
        };
        let caller_rbp = match row.register(X86_64::RBP) {
            RegisterRule::Offset(o) => read(cfa.wrapping_add_signed(o as isize))?,
            RegisterRule::Undefined | RegisterRule::SameValue => rbp,
            _ => return Err("rbp rule"),
        };
        if cfa <= rsp {
            return Err("CFA not above RSP");
        }
        Ok((ra, caller_rbp, cfa))
    }

    /// The CFI unwind of one activation from a wasm PC (`leaf`: the PC itself, not a
    /// return address), appended to `out`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one activation's start registers, bounds and output, all used once"
    )]
    fn cfi_activation(
        &mut self,
        mut pc: usize,
        mut rbp: usize,
        mut rsp: usize,
        mut leaf: bool,
        entry_fp: usize,
        (lo, hi): (usize, usize),
        out: &mut [F; MAX],
        len: &mut usize,
    ) -> Result<(), &'static str> {
        loop {
            let row_at = if leaf { pc } else { pc.wrapping_sub(1) };
            let Some(func) = self.body_of(row_at) else {
                break;
            };
            if *len == MAX {
                return Err("too many frames");
            }
            out[*len] = F { pc, func };
            *len += 1;
            (pc, rbp, rsp) = self.cfi_step(row_at, rbp, rsp, lo, hi)?;
            leaf = false;
        }
        if rbp != entry_fp {
            return Err("CFI unwind did not end at the entry frame");
        }
        Ok(())
    }

    fn on_step(&mut self, regs: SampleRegs) {
        self.steps += 1;
        let mut raw = [RawFrame::default(); MAX];
        let mut acts = [ActivationSnapshot {
            entry_fp: 0,
            exit_fp: 0,
            exit_sp: 0,
            exit_pc: 0,
        }; MAX];
        let Some((kind, pc_kind, n, n_acts)) = self.sampler.step_sample(regs, &mut raw, &mut acts)
        else {
            self.fail(
                regs,
                SampleKind::Unwalkable,
                PcKind::Host,
                "ring full",
                &[],
                &[],
            );
            return;
        };
        self.kinds[kind as usize] += 1;
        let mut got = [F::default(); MAX];
        for (g, r) in got.iter_mut().zip(&raw[..n]) {
            *g = F {
                pc: r.pc,
                func: r.func_index,
            };
        }
        let got = &got[..n];
        if n_acts == MAX || n == MAX {
            self.fail(regs, kind, pc_kind, "too deep", got, &[]);
            return;
        }
        let acts = &acts[..n_acts];
        let state = match pc_kind {
            PcKind::Wasm(s) => Some(s),
            _ => None,
        };
        if let Some(s) = state {
            let i = match s {
                FrameState::Entry => 0,
                FrameState::AfterPush => 1,
                FrameState::Body => 2,
                FrameState::TornDown => 3,
                FrameState::Moving(_) => 4,
                FrameState::Unknown => 5,
            };
            self.states[i] += 1;
        }
        self.torn_down_run = match state {
            Some(FrameState::TornDown) => self.torn_down_run + 1,
            _ => 0,
        };
        self.longest_torn_down = self.longest_torn_down.max(self.torn_down_run);
        match (kind, pc_kind) {
            (SampleKind::Unwalkable, _) => {
                return self.fail(regs, kind, pc_kind, "unwalkable", got, &[]);
            }
            (SampleKind::Wasm, PcKind::Wasm(_)) | (SampleKind::Host, _) => {}
            (SampleKind::Transition, PcKind::Stub | PcKind::Trampoline) => return,
            (SampleKind::Transition, PcKind::Host) => {
                // The entry path in Rust: the newest activation incomplete or returning.
                match acts.first() {
                    Some(a) if a.exit_sp == 0 && (a.entry_fp == 0 || regs.sp >= a.entry_fp) => {
                        return
                    }
                    _ => return self.fail(regs, kind, pc_kind, "transition in host", got, &[]),
                }
            }
            (SampleKind::OutsideWasm, PcKind::Host) if acts.is_empty() => return,
            (SampleKind::Libcall, PcKind::Host) => return,
            _ => return self.fail(regs, kind, pc_kind, "kind for this pc", got, &[]),
        }
        // The expected frames.
        let mut want = [F::default(); MAX];
        let mut len = 0;
        let mut lo = usize::MAX;
        let mut hi = 0;
        for a in acts {
            if a.exit_sp != 0 {
                lo = lo.min(a.exit_sp - 8);
            }
            hi = hi.max(a.entry_fp + 16);
        }
        if state.is_some() {
            lo = lo.min(regs.sp);
        }
        let func = self.body_of(regs.pc);
        // The previous step's stack, when this instruction follows one of the same
        // function (not a call or return: this is not the function's first byte).
        let mut shadow_want = None;
        if let (Some((step, prev_func, frames, prev_len)), Some(f)) = (self.prev, func) {
            let at_start = self.bodies.iter().any(|b| b.2 == f && b.0 == regs.pc);
            if step + 1 == self.steps && prev_func == f && prev_len > 0 && !at_start {
                let mut frames = frames;
                frames[0].pc = regs.pc;
                shadow_want = Some((frames, prev_len));
            }
        }
        // `mov rbp, rsp` after a tail call's `sub rsp, D`: Cranelift's CFI already
        // has the moved frame (CFA `rsp + 16`), RBP not yet.
        let in_body = self
            .bodies
            .iter()
            .any(|b| b.0 <= regs.pc && regs.pc + 3 <= b.1);
        let mov_rbp_rsp = state == Some(FrameState::Body)
            && in_body
            // SAFETY: the 3 bytes at the PC are inside a loaded wasm body.
            && unsafe { std::slice::from_raw_parts(regs.pc as *const u8, 3) } == [0x48, 0x89, 0xe5];
        let shadow =
            mov_rbp_rsp || matches!(state, Some(FrameState::TornDown | FrameState::Moving(_)));
        let mut result = Ok(());
        if shadow {
            match shadow_want {
                Some((frames, n)) => {
                    want = frames;
                    len = n;
                }
                None => result = Err("no previous step in the same function"),
            }
        } else {
            for (i, a) in acts.iter().enumerate() {
                if result.is_err() {
                    break;
                }
                result = if i == 0 && state.is_some() {
                    if a.exit_sp != 0 {
                        Err("wasm pc with an exit recorded")
                    } else {
                        self.cfi_activation(
                            regs.pc,
                            regs.fp,
                            regs.sp,
                            true,
                            a.entry_fp,
                            (lo, hi),
                            &mut want,
                            &mut len,
                        )
                    }
                } else if a.exit_sp == 0 {
                    Err("older activation without an exit")
                } else {
                    // SAFETY: the return address of the exit's call, on the live stack.
                    let ra = unsafe { ((a.exit_sp - 8) as *const usize).read() };
                    self.cfi_activation(
                        ra,
                        a.exit_fp,
                        a.exit_sp,
                        false,
                        a.entry_fp,
                        (lo, hi),
                        &mut want,
                        &mut len,
                    )
                };
            }
        }
        if let Err(what) = result {
            self.prev = None;
            return self.fail(regs, kind, pc_kind, what, got, &want[..len]);
        }
        self.prev = match (state, func) {
            (Some(_), Some(f)) => Some((self.steps, f, want, len)),
            _ => None,
        };
        if shadow {
            self.previous_checked += 1;
        } else {
            self.cfi_checked += 1;
            self.also_previous += u64::from(shadow_want.is_some());
        }
        if state.is_some() && acts.len() >= 2 {
            self.reentered += 1;
        }
        if kind == SampleKind::Host && !got.is_empty() {
            self.host_with_frames += 1;
        }
        if got != &want[..len] {
            self.fail(regs, kind, pc_kind, "frames differ", got, &want[..len]);
        } else if let Some((frames, n)) = shadow_want.filter(|_| !shadow) {
            if got != &frames[..n] {
                self.fail(
                    regs,
                    kind,
                    pc_kind,
                    "differs from the previous step",
                    got,
                    &frames[..n],
                );
            }
        }
    }

    fn fail(
        &mut self,
        regs: SampleRegs,
        kind: SampleKind,
        pc_kind: PcKind,
        what: &'static str,
        got: &[F],
        want: &[F],
    ) {
        let i = self.mismatch_count as usize;
        self.mismatch_count += 1;
        if let Some(slot) = self.mismatches.get_mut(i) {
            let mut m = Mismatch {
                step: self.steps,
                regs,
                kind,
                pc_kind,
                what,
                got: [F::default(); MAX],
                got_len: got.len(),
                want: [F::default(); MAX],
                want_len: want.len(),
            };
            m.got[..got.len()].copy_from_slice(got);
            m.want[..want.len()].copy_from_slice(want);
            *slot = Some(m);
        }
    }
}

extern "C" fn on_sigtrap(_: libc::c_int, _: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    // SAFETY: installed with SA_SIGINFO: `ucontext` is the kernel's, for this thread.
    let uc = unsafe { &mut *(ucontext as *mut libc::ucontext_t) };
    let gregs = &mut uc.uc_mcontext.gregs;
    if !STEPPING.load(Ordering::Relaxed) {
        gregs[libc::REG_EFL as usize] &= !0x100;
        return;
    }
    let regs = SampleRegs {
        pc: gregs[libc::REG_RIP as usize] as usize,
        fp: gregs[libc::REG_RBP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
    };
    let oracle = ORACLE.load(Ordering::Relaxed);
    if !oracle.is_null() {
        // SAFETY: the oracle outlives the stepping and only this handler uses it while
        // STEPPING is set (the main thread reads it after clearing it and the flag).
        unsafe { (*oracle).on_step(regs) };
    }
    gregs[libc::REG_EFL as usize] |= 0x100;
}

#[test]
fn every_instruction_has_the_cfi_stack() {
    let engine = Engine::new(Default::default()).expect("engine");
    let module = Module::new(&engine, PROGRAM.as_bytes()).expect("compile");
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("h", "host", |mut c: Caller<'_, ()>, x: i32| {
            let inner = c
                .get_export("inner")
                .and_then(|e| e.into_func())
                .expect("inner");
            let inner = inner.typed::<i32, i32>(&c).expect("typed");
            inner.call(&mut c, x).expect("re-entry") * 2
        })
        .expect("define host");
    let mut store = Store::new(&engine, ());
    let instance = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let run = instance
        .get_typed_func::<i32, i32>(&store, "run")
        .expect("run");
    let expected = run.call(&mut store, 5).expect("unstepped run");

    // The module's CFI, as loaded.
    let eh_frame: &'static [u8] = {
        let loaded = module.eh_frame();
        // SAFETY: `module` lives until the end of the test, after the oracle is gone.
        unsafe { std::slice::from_raw_parts(loaded.as_ptr(), loaded.len()) }
    };
    let bases = BaseAddresses::default()
        .set_eh_frame(eh_frame.as_ptr() as u64)
        .set_text(module.text_range().start as u64);
    let mut fdes = Vec::new();
    let section = EhFrame::new(eh_frame, LittleEndian);
    let mut entries = section.entries(&bases);
    while let Some(entry) = entries.next().expect("eh_frame") {
        if let CieOrFde::Fde(partial) = entry {
            let fde = partial
                .parse(UnwindSection::cie_from_offset)
                .expect("eh_frame FDE");
            let start = fde.initial_address();
            fdes.push((start, start + fde.len(), EhFrameOffset(fde.offset())));
        }
    }
    fdes.sort_by_key(|f| f.0);
    let mut bodies: Vec<(usize, usize, u32)> = module
        .function_symbols()
        .map(|f| (f.start, f.start + f.len, f.func_index))
        .collect();
    bodies.sort();

    let sampler = Sampler::start(SamplerConfig {
        hz: 1,
        clock: SampleClock::default(),
        buffer_bytes: 1 << 20,
    })
    .expect("sampler");
    let mut oracle = Box::new(Oracle {
        sampler,
        eh_frame,
        bases,
        fdes,
        bodies,
        ctx: UnwindContext::new(),
        steps: 0,
        kinds: [0; 6],
        states: [0; 6],
        prev: None,
        cfi_checked: 0,
        also_previous: 0,
        previous_checked: 0,
        reentered: 0,
        host_with_frames: 0,
        torn_down_run: 0,
        longest_torn_down: 0,
        mismatches: [None; KEPT],
        mismatch_count: 0,
    });

    // SAFETY: sigaction is plain data; all-zero is a valid (empty) value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SA_ONSTACK as framewalk's handlers: on the alternate stack the sampler set up.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    action.sa_sigaction = on_sigtrap as *const () as usize;
    // SAFETY: a valid sigset to initialize.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a valid signal and pointers to initialized sigactions.
    assert_eq!(
        unsafe { libc::sigaction(libc::SIGTRAP, &action, &mut old) },
        0
    );

    ORACLE.store(&mut *oracle, Ordering::SeqCst);
    STEPPING.store(true, Ordering::SeqCst);
    // SAFETY: sets the trap flag: every following instruction of this thread raises
    // SIGTRAP, which the handler above takes (and keeps the flag set) until STEPPING is
    // cleared; touches only the stack slot it pushes and the flags.
    unsafe {
        std::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq");
    }
    let result = run.call(&mut store, 5);
    STEPPING.store(false, Ordering::SeqCst);
    // The handler has cleared the trap flag at the step after the store.
    ORACLE.store(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: restores the previous SIGTRAP action.
    unsafe { libc::sigaction(libc::SIGTRAP, &old, std::ptr::null_mut()) };
    assert_eq!(result.expect("stepped run"), expected);

    let o = &*oracle;
    let kinds: Vec<(SampleKind, u64)> = SampleKind::ALL
        .iter()
        .map(|k| (*k, o.kinds[*k as usize]))
        .collect();
    eprintln!(
        "{} steps; by kind {kinds:?}; wasm by state [entry, after push, body, torn down, \
         moving, unknown] {:?}; checked against the CFI {} (and the previous step {}), \
         against the previous step alone {}; wasm steps in the re-entry {}, host steps \
         with frames {}",
        o.steps,
        o.states,
        o.cfi_checked,
        o.also_previous,
        o.previous_checked,
        o.reentered,
        o.host_with_frames
    );
    for m in o.mismatches.iter().flatten() {
        eprintln!(
            "step {} {:?} {:?} {:?}: {}\n  got  {:x?}\n  want {:x?}",
            m.step,
            m.regs,
            m.kind,
            m.pc_kind,
            m.what,
            &m.got[..m.got_len],
            &m.want[..m.want_len]
        );
    }
    assert_eq!(o.mismatch_count, 0, "samples that differ from the oracle");
    for (i, name) in ["entry", "after push", "body", "torn down", "moving"]
        .iter()
        .enumerate()
    {
        assert!(o.states[i] > 0, "no wasm step in state {name}");
    }
    assert_eq!(o.states[5], 0, "wasm steps in an unknown state");
    assert_eq!(
        o.kinds[SampleKind::Wasm as usize],
        o.states.iter().sum::<u64>(),
        "every wasm step is a Wasm sample"
    );
    assert!(o.reentered > 0, "no wasm step inside the re-entry");
    assert!(o.host_with_frames > 0, "no host step with wasm frames");
    assert!(o.also_previous > 0 && o.previous_checked > 0);
    assert!(
        o.longest_torn_down >= 3,
        "no epilogue moving the return address for a tail call"
    );
    for k in [SampleKind::Wasm, SampleKind::Host, SampleKind::Transition] {
        assert!(o.kinds[k as usize] > 0, "no {k:?} step");
    }
    drop(oracle);
}
