//! What a sample interrupted, and the exact wasm stack at that instruction.
//!
//! A sample lands at an arbitrary instruction. The frame-pointer walk of
//! `crate::unwind` is exact at call sites (every frame set up, `[fp]` the caller's FP,
//! `[fp + 8]` the return address), but not everywhere inside a function: Cranelift
//! 0.112's x64 code (every function compiled with `preserve_frame_pointers`) has four
//! other states, found once per module by [`FrameStateTable::build`] from its code bytes
//! (never in the signal handler):
//!
//! ```text
//!  offset 0   push rbp               FrameState::Entry:     return address at [sp],
//!                                                            rbp is still the caller's FP
//!  offset 1   mov  rbp, rsp          FrameState::AfterPush: return address at [sp + 8],
//!                                                            rbp is still the caller's FP
//!  offset 4   ...                    FrameState::Body:      [rbp] caller's FP, [rbp + 8]
//!                                                            the return address
//!  (a function whose tail calls need more stack arguments than it received grows its
//!   argument area after the stack-limit check:)
//!             sub  rsp, D
//!             mov  rbp, rsp          (rbp still the frame's FP before this executes)
//!             mov  r11, [rsp + D]    FrameState::Moving { D }: the frame record is still
//!             mov  [rsp], r11        at [rbp + D] (saved FP) and [rbp + D + 8] (return
//!             mov  r11, [rsp + D + 8] address) until the last of these four moves has
//!             mov  [rsp + 8], r11     executed
//!  ...
//!             mov  rsp, rbp          Body (rbp is still the frame's FP)
//!             pop  rbp
//!             ret / ret N / jmp      FrameState::TornDown: the frame is gone, rbp is the
//!             (or a tail call's        caller's FP and the return address is at [sp]
//!              return-address move     (a tail call moves it up and adds to rsp first:
//!              and `add rsp, D`)       [sp] holds it after each of those instructions)
//! ```
//!
//! Cranelift's own CFI describes neither the epilogue (it has no rows after
//! `pop rbp`) nor the moving window (its CFA is `rsp + 16` there), so the table is
//! built from the instructions, matched byte for byte against the few encodings
//! Cranelift emits for these sequences; a function whose bytes do not match (its
//! prologue, or what follows an epilogue's `pop rbp`) gets [`FrameState::Unknown`]
//! there, and samples in it are counted as [`SampleKind::Unwalkable`] rather than
//! guessed.
//!
//! [`classify`] then decides, from the interrupted registers, the kind of code at the
//! PC and the thread's activations, what the sample is and which frames it has (see
//! [`SampleKind`]): the exact wasm stack, newest first, or a classification with no
//! frames. It reads memory only through a [`StackReader`] and code only through a
//! [`CodeLookup`], does not allocate, lock or panic, so the signal handler runs it on
//! the live stack and unit tests on fake ones. `tests/profile_step.rs` checks it at
//! every instruction of a single-stepped program (trap flag) against the `.eh_frame`
//! CFI unwind of the same registers, and against the previous instruction's stack
//! where that CFI is wrong (after `pop rbp`, in the frame-moving window).

use core::ops::ControlFlow;

use crate::unwind::{
    visit_frames, Activation, ActivationList, CodeLookup, Frame, StackReader, StartRegs,
};

/// What a sample interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SampleKind {
    /// Wasm code: the frames are the exact wasm stack, the interrupted function first.
    Wasm = 0,
    /// Host code called from wasm (an exit is recorded): the frames are the wasm stack
    /// below the host call, newest first.
    Host = 1,
    /// A transition between host and wasm: the entry stubs and trampolines, an
    /// activation being pushed or popped, an exit stub before its record is written or
    /// after it is cleared. No frames.
    Transition = 2,
    /// Host code called from wasm without an exit record: a libcall (memory.grow, table
    /// operations, float rounding, the trap handler), or the last instructions of a
    /// host function after it cleared its exit. The wasm frames below it cannot be
    /// found without an unwinder for host code: no frames.
    Libcall = 3,
    /// No activation on the thread: host code that is not inside a call into wasm. No
    /// frames.
    OutsideWasm = 4,
    /// The stack could not be walked exactly (an instruction whose frame state is not
    /// recognized, or a walk error): counted, no frames. None is expected.
    Unwalkable = 5,
}

impl SampleKind {
    /// Every kind, in the order of their discriminants.
    pub const ALL: [SampleKind; 6] = [
        SampleKind::Wasm,
        SampleKind::Host,
        SampleKind::Transition,
        SampleKind::Libcall,
        SampleKind::OutsideWasm,
        SampleKind::Unwalkable,
    ];

    /// The kind with discriminant `raw`.
    pub fn from_raw(raw: u8) -> Option<SampleKind> {
        SampleKind::ALL.get(raw as usize).copied()
    }

    /// The synthetic frame outputs put on top of (or instead of) the wasm frames:
    /// `None` for wasm code.
    pub fn leaf_label(self) -> Option<&'static str> {
        match self {
            SampleKind::Wasm => None,
            SampleKind::Host => Some("[host]"),
            SampleKind::Transition => Some("[transition]"),
            SampleKind::Libcall => Some("[libcall]"),
            SampleKind::OutsideWasm => Some("[outside wasm]"),
            SampleKind::Unwalkable => Some("[unwalkable]"),
        }
    }
}

/// Where an instruction of a wasm function is relative to its frame's setup; see the
/// module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    /// The frame record is complete and `rbp` points at it.
    Body,
    /// At the function's first instruction, `push rbp`.
    Entry,
    /// After `push rbp`, at `mov rbp, rsp`.
    AfterPush,
    /// After the epilogue's `pop rbp`, up to and including the return or tail call.
    TornDown,
    /// The frame record is being moved down by this many bytes: it is at `rbp + D`.
    Moving(u32),
    /// Bytes that matched none of the sequences Cranelift emits.
    Unknown,
}

/// One run of instructions of a non-`Body` state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Special {
    /// Text offset of the first instruction.
    start: u32,
    /// One past the last byte.
    end: u32,
    state: FrameState,
}

/// The non-`Body` instruction runs of one module's functions, sorted by text offset:
/// what [`FrameStateTable::state_at`] answers from, in a signal handler (a binary
/// search, no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameStateTable {
    specials: Box<[Special]>,
}

/// `push rbp; mov rbp, rsp`.
const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
/// `mov rsp, rbp; pop rbp`.
const EPILOGUE_RESTORE: [u8; 4] = [0x48, 0x89, 0xec, 0x5d];
/// `mov rbp, rsp`.
const MOV_RBP_RSP: [u8; 3] = [0x48, 0x89, 0xe5];

impl FrameStateTable {
    /// The table of the functions `functions` (`(text offset, length)`, sorted, inside
    /// `text`), from the code bytes in `text`.
    pub fn build(text: &[u8], functions: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut specials = Vec::new();
        for (start, len) in functions {
            let (s, e) = (start as usize, start as usize + len as usize);
            let Some(code) = text.get(s..e) else {
                continue;
            };
            function_specials(code, start, &mut specials);
        }
        specials.sort_by_key(|s| s.start);
        FrameStateTable {
            specials: specials.into_boxed_slice(),
        }
    }

    /// The state of the instruction at text offset `text_offset` (which must be inside
    /// one of the table's functions). Allocation-free: a binary search.
    pub fn state_at(&self, text_offset: u32) -> FrameState {
        let after = self.specials.partition_point(|s| s.start <= text_offset);
        match after.checked_sub(1).and_then(|i| self.specials.get(i)) {
            Some(s) if text_offset < s.end => s.state,
            _ => FrameState::Body,
        }
    }

    /// How many instruction runs are not `Body` (for tests and statistics).
    pub fn special_runs(&self) -> usize {
        self.specials.len()
    }
}

/// Adds the special runs of one function (`code`, at text offset `base`).
fn function_specials(code: &[u8], base: u32, out: &mut Vec<Special>) {
    let at = |off: usize, len: usize, state| Special {
        start: base + off as u32,
        end: base + (off + len) as u32,
        state,
    };
    if !code.starts_with(&PROLOGUE) {
        out.push(at(0, code.len(), FrameState::Unknown));
        return;
    }
    out.push(at(0, 1, FrameState::Entry));
    out.push(at(1, 3, FrameState::AfterPush));
    if let Some((from, len, diff)) = moving_window(code) {
        out.push(at(from, len, FrameState::Moving(diff)));
    }
    let mut i = PROLOGUE.len();
    while let Some(found) = find(&code[i..], &EPILOGUE_RESTORE) {
        let after_pop = i + found + EPILOGUE_RESTORE.len();
        match torn_down_len(&code[after_pop..]) {
            Some(len) => {
                out.push(at(after_pop, len, FrameState::TornDown));
                i = after_pop + len;
            }
            None => {
                // Not an epilogue Cranelift emits: leave the rest of the function
                // unclassified rather than guess where the frame is.
                out.push(at(after_pop, code.len() - after_pop, FrameState::Unknown));
                return;
            }
        }
    }
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the torn-down run after an epilogue's `pop rbp`: an optional
/// return-address move of a tail call (`mov tmp, [rsp]; mov [rsp + D], tmp; add rsp,
/// D`), then `ret`, `ret N` or a `jmp`. `None` if the bytes are none of these.
fn torn_down_len(code: &[u8]) -> Option<usize> {
    let mut i = 0;
    // mov r64, [rsp]: REX.W(.R) 8B modrm(00 reg 100) SIB 24
    if let [rex, 0x8b, modrm, 0x24, ..] = *code.get(i..)? {
        if (rex == 0x48 || rex == 0x4c) && modrm & 0xc7 == 0x04 {
            i += 4;
            // mov [rsp + disp8/disp32], r64: REX 89 modrm(01/10 reg 100) SIB 24 disp
            let [rex, 0x89, modrm, 0x24, ..] = *code.get(i..)? else {
                return None;
            };
            if rex != 0x48 && rex != 0x4c {
                return None;
            }
            i += match modrm & 0xc7 {
                0x44 => 5,
                0x84 => 8,
                _ => return None,
            };
            // add rsp, imm8 / imm32
            i += match *code.get(i..)? {
                [0x48, 0x83, 0xc4, ..] => 4,
                [0x48, 0x81, 0xc4, ..] => 7,
                _ => return None,
            };
        }
    }
    let terminator = match *code.get(i..)? {
        [0xc3, ..] => 1,
        [0xc2, _, _, ..] => 3,
        [0xe9, _, _, _, _, ..] => 5,
        [0xff, modrm, ..] if modrm & 0xf8 == 0xe0 => 2,
        [0x41, 0xff, modrm, ..] if modrm & 0xf8 == 0xe0 => 3,
        _ => return None,
    };
    Some(i + terminator)
}

/// The moving window of a function that grows its argument area (see the module docs):
/// `(offset of the first move, length of the four moves, D)`.
fn moving_window(code: &[u8]) -> Option<(usize, usize, u32)> {
    // Search after the prologue for `sub rsp, D; mov rbp, rsp`.
    let mut i = PROLOGUE.len();
    loop {
        let found = find(&code[i..], &MOV_RBP_RSP)? + i;
        i = found + 1;
        let diff = if found >= 4 && code[found - 4..found - 1] == [0x48, 0x83, 0xec] {
            u32::from(code[found - 1])
        } else if found >= 7 && code[found - 7..found - 4] == [0x48, 0x81, 0xec] {
            u32::from_le_bytes(code[found - 4..found].try_into().ok()?)
        } else {
            continue;
        };
        let first = found + MOV_RBP_RSP.len();
        let mut j = first;
        // mov r11, [rsp + D]; mov [rsp], r11; mov r11, [rsp + D + 8]; mov [rsp + 8], r11
        j += load_r11(code.get(j..)?, diff)?;
        j += expect(code.get(j..)?, &[0x4c, 0x89, 0x1c, 0x24])?;
        j += load_r11(code.get(j..)?, diff.checked_add(8)?)?;
        j += expect(code.get(j..)?, &[0x4c, 0x89, 0x5c, 0x24, 0x08])?;
        return Some((first, j - first, diff));
    }
}

/// The length of `mov r11, [rsp + disp]` at the start of `code`, if it is that.
fn load_r11(code: &[u8], disp: u32) -> Option<usize> {
    match *code {
        [0x4c, 0x8b, 0x5c, 0x24, d, ..] if u32::from(d) == disp && d < 0x80 => Some(5),
        [0x4c, 0x8b, 0x9c, 0x24, a, b, c, d, ..] if u32::from_le_bytes([a, b, c, d]) == disp => {
            Some(8)
        }
        _ => None,
    }
}

/// `bytes.len()` if `code` starts with `bytes`.
fn expect(code: &[u8], bytes: &[u8]) -> Option<usize> {
    code.starts_with(bytes).then_some(bytes.len())
}

/// What kind of code a PC is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcKind {
    /// A wasm function body, in this frame state.
    Wasm(FrameState),
    /// A module's text outside every function body: an entry or exit trampoline.
    Trampoline,
    /// One of framewalk's hand-written entry or exit stubs.
    Stub,
    /// Anything else: host code.
    Host,
}

/// The registers a sample interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRegs {
    /// The interrupted instruction.
    pub pc: usize,
    /// `rbp`.
    pub fp: usize,
    /// `rsp`.
    pub sp: usize,
}

/// One wasm frame of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawFrame {
    /// The PC: the interrupted instruction for the newest frame of a `Wasm` sample, a
    /// return address otherwise.
    pub pc: usize,
    /// The code registry's id of the module.
    pub module: usize,
    /// The function's index in its module.
    pub func_index: u32,
    /// `pc` minus the start of the module's text.
    pub text_offset: u32,
}

/// What [`classify`] found: the kind, how many frames it wrote, and whether there were
/// more than fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The kind of the sample.
    pub kind: SampleKind,
    /// Frames written to the output, newest first.
    pub frames: usize,
    /// The stack had more frames than the output holds (the oldest were left out).
    pub truncated: bool,
}

/// The fields of one activation, copied (the newest first in [`classify`]'s input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivationSnapshot {
    /// [`Activation::entry_fp`].
    pub entry_fp: usize,
    /// [`Activation::exit_fp`].
    pub exit_fp: usize,
    /// [`Activation::exit_sp`].
    pub exit_sp: usize,
    /// [`Activation::exit_pc`].
    pub exit_pc: usize,
}

impl ActivationSnapshot {
    /// The fields of `a`.
    pub fn of(a: &Activation) -> Self {
        ActivationSnapshot {
            entry_fp: a.entry_fp,
            exit_fp: a.exit_fp,
            exit_sp: a.exit_sp,
            exit_pc: a.exit_pc,
        }
    }
}

/// Classifies a sample and writes its wasm frames (newest first) to `out`.
///
/// `activations` are the thread's activations, newest first (every store's: a
/// thread's stack is one); `kind` is what [`PcKind`] the PC is in; `reader` must
/// read the thread's stack from `regs.sp` up to the oldest `entry_fp` (and the
/// recorded exits); `code` locates wasm PCs.
pub fn classify<R, C>(
    regs: SampleRegs,
    kind: PcKind,
    activations: &[ActivationSnapshot],
    reader: &R,
    code: &C,
    out: &mut [RawFrame],
) -> Classified
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    let mut sink = Sink {
        out,
        len: 0,
        truncated: false,
    };
    let kind = classify_into(regs, kind, activations, reader, code, &mut sink);
    let (frames, truncated) = match kind {
        SampleKind::Wasm | SampleKind::Host => (sink.len, sink.truncated),
        _ => (0, false),
    };
    Classified {
        kind,
        frames,
        truncated,
    }
}

/// Where the frames go.
struct Sink<'a> {
    out: &'a mut [RawFrame],
    len: usize,
    truncated: bool,
}

impl Sink<'_> {
    fn push(&mut self, frame: &Frame) -> ControlFlow<()> {
        match self.out.get_mut(self.len) {
            Some(slot) => {
                *slot = RawFrame {
                    pc: frame.pc,
                    module: frame.location.module,
                    func_index: frame.location.func_index,
                    text_offset: frame.location.text_offset,
                };
                self.len += 1;
                ControlFlow::Continue(())
            }
            None => {
                self.truncated = true;
                ControlFlow::Break(())
            }
        }
    }
}

fn classify_into<R, C>(
    regs: SampleRegs,
    kind: PcKind,
    activations: &[ActivationSnapshot],
    reader: &R,
    code: &C,
    sink: &mut Sink<'_>,
) -> SampleKind
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    let Some(newest) = activations.first() else {
        return match kind {
            // Wasm code runs only inside an activation, and so do trampolines.
            PcKind::Wasm(_) => SampleKind::Unwalkable,
            PcKind::Trampoline | PcKind::Stub => SampleKind::Transition,
            PcKind::Host => SampleKind::OutsideWasm,
        };
    };
    let older = &activations[1..];
    if newest.exit_sp != 0 {
        // Control left wasm through a recorded exit and is in host code (or in the exit
        // stub after writing the record, or a trampoline of the host function).
        if matches!(kind, PcKind::Wasm(_)) {
            return SampleKind::Unwalkable;
        }
        return walk_from_exits(activations, reader, code, sink, SampleKind::Host);
    }
    let state = match kind {
        PcKind::Wasm(state) => state,
        PcKind::Trampoline | PcKind::Stub => return SampleKind::Transition,
        PcKind::Host => {
            // The activation is not complete yet (entry_fp not written), or its wasm
            // frames are gone and `framewalk_enter` is returning (SP above entry_fp):
            // the entry path, in Rust or in the stub.
            if newest.entry_fp == 0 || regs.sp >= newest.entry_fp {
                return SampleKind::Transition;
            }
            return SampleKind::Libcall;
        }
    };
    if newest.entry_fp == 0 || regs.sp >= newest.entry_fp {
        return SampleKind::Unwalkable;
    }
    // The newest activation, walked from the sample's registers.
    let start = match state {
        FrameState::Body => Some(StartRegs {
            pc: regs.pc,
            fp: regs.fp,
            sp: regs.sp,
        }),
        FrameState::Moving(diff) => Some(StartRegs {
            pc: regs.pc,
            fp: match regs.fp.checked_add(diff as usize) {
                Some(fp) => fp,
                None => return SampleKind::Unwalkable,
            },
            sp: regs.sp,
        }),
        FrameState::Entry | FrameState::AfterPush | FrameState::TornDown => {
            // The interrupted function has no frame record: it is the newest frame, and
            // its caller is found from the return address on top of the stack.
            let Some(location) = code.lookup_pc(regs.pc) else {
                return SampleKind::Unwalkable;
            };
            let leaf = Frame {
                pc: regs.pc,
                fp: regs.fp,
                sp: regs.sp,
                location,
                activation_index: 0,
            };
            if sink.push(&leaf).is_break() {
                return SampleKind::Wasm;
            }
            let ra_at = if state == FrameState::AfterPush {
                regs.sp.checked_add(8)
            } else {
                Some(regs.sp)
            };
            let Some(ra) = ra_at.and_then(|a| reader.read_word(a)) else {
                return SampleKind::Unwalkable;
            };
            if regs.fp == newest.entry_fp {
                // Called by the entry trampoline (or the direct entry stub): the only
                // wasm frame of this activation. The return address is not wasm code.
                if code.lookup_pc(ra).is_some() {
                    return SampleKind::Unwalkable;
                }
                None
            } else {
                Some(StartRegs {
                    pc: ra,
                    fp: regs.fp,
                    // The caller's SP at its call: above the return address.
                    sp: ra_at.unwrap_or(0) + 8,
                })
            }
        }
        FrameState::Unknown => return SampleKind::Unwalkable,
    };
    if let Some(start) = start {
        if walk_one(newest, Some(start), reader, code, sink).is_err() {
            return SampleKind::Unwalkable;
        }
        if sink.truncated {
            return SampleKind::Wasm;
        }
    }
    walk_from_exits(older, reader, code, sink, SampleKind::Wasm)
}

/// Walks each of `activations` from its recorded exit, appending the frames; `kind`
/// on success.
fn walk_from_exits<R, C>(
    activations: &[ActivationSnapshot],
    reader: &R,
    code: &C,
    sink: &mut Sink<'_>,
    kind: SampleKind,
) -> SampleKind
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    for a in activations {
        if walk_one(a, None, reader, code, sink).is_err() {
            return SampleKind::Unwalkable;
        }
        if sink.truncated {
            break;
        }
    }
    kind
}

/// The frames of one activation, from `start` or its recorded exit.
fn walk_one<R, C>(
    a: &ActivationSnapshot,
    start: Option<StartRegs>,
    reader: &R,
    code: &C,
    sink: &mut Sink<'_>,
) -> Result<(), crate::unwind::WalkError>
where
    R: StackReader + ?Sized,
    C: CodeLookup + ?Sized,
{
    // A list of this activation alone: the thread's activations are linked through
    // their records (across stores), not through `prev` (one store's).
    let alone = Activation {
        prev: core::ptr::null(),
        entry_fp: a.entry_fp,
        exit_fp: a.exit_fp,
        exit_sp: a.exit_sp,
        exit_pc: a.exit_pc,
        owner: 0,
    };
    // SAFETY: `alone` is a valid activation with a null `prev`, it outlives the list
    // (both end with this function), and nothing writes it meanwhile.
    let list = unsafe { ActivationList::from_head(&alone) };
    visit_frames(list, start, reader, code, |frame| sink.push(frame)).map(|_| ())
}

#[cfg(test)]
mod tests;
