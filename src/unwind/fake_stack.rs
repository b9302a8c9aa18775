//! Test support: fake stacks, fake code and a builder of well-formed frame chains.
//!
//! The builder lays out activations exactly as the runtime does (see the diagram in
//! `crate::unwind`): host frames (made unreadable, so a walk that touches them fails),
//! an entry trampoline frame, wasm frames built with `push rbp; mov rbp, rsp`, and the
//! return address the youngest frame's call out pushed, with the exit recorded as that
//! frame's FP and SP. It also returns the frames a correct walk must yield.

use core::cell::Cell;
use core::ops::{ControlFlow, Range};

use super::activation::{Activation, ActivationList};
use super::reader::StackReader;
use super::walker::{visit_frames, CodeLocation, CodeLookup, Frame, StartRegs};
use super::WalkError;
use crate::arch::{CALLER_SP_OFFSET, RETURN_ADDR_OFFSET, SAVED_FP_OFFSET, WORD_SIZE};

/// Start of the fake wasm text.
pub(crate) const CODE_START: usize = 0x5000_0000;
/// Every fake function is this long.
pub(crate) const FUNC_SIZE: usize = 0x100;
/// Number of fake functions.
pub(crate) const FUNC_COUNT: u32 = 64;
/// Module id reported by [`FakeCode`].
pub(crate) const FAKE_MODULE: usize = 7;
/// A return address into the entry trampoline (host code, not wasm).
pub(crate) const TRAMPOLINE_PC: usize = 0x7777_0001;
/// A return address into host code.
pub(crate) const HOST_PC: usize = 0x6666_0003;
/// Default top of fake stacks.
pub(crate) const STACK_TOP: usize = 0x7ff0_0000_0000;

/// The PC at `offset` in fake function `func`.
pub(crate) fn pc_in(func: u32, offset: usize) -> usize {
    CODE_START + func as usize * FUNC_SIZE + offset
}

/// Maps `[CODE_START, CODE_START + FUNC_COUNT * FUNC_SIZE)` to functions of
/// `FUNC_SIZE` bytes each.
pub(crate) struct FakeCode;

impl CodeLookup for FakeCode {
    fn lookup_pc(&self, pc: usize) -> Option<CodeLocation> {
        let text_offset = pc.checked_sub(CODE_START)?;
        let func_index = u32::try_from(text_offset / FUNC_SIZE).ok()?;
        if func_index >= FUNC_COUNT {
            return None;
        }
        Some(CodeLocation {
            module: FAKE_MODULE,
            func_index,
            text_offset: u32::try_from(text_offset).ok()?,
        })
    }
}

/// A word that is neither a plausible FP (odd) nor a wasm PC: fills slots.
pub(crate) fn filler(i: usize) -> usize {
    0xF111_0000_0000_0001 | (i << 4)
}

/// A fake stack of `words` starting at `base`; addresses in `unreadable` are refused.
///
/// It vouches (`StackReader::covers`) for every range of its words with no unreadable
/// address, and checks that the walker keeps its side of that promise: a
/// `read_pair_covered` outside the range it last vouched for panics.
#[derive(Clone, Debug)]
pub(crate) struct FakeStack {
    pub base: usize,
    pub words: Vec<usize>,
    pub unreadable: Vec<Range<usize>>,
    /// The range of the last `covers` that answered true.
    vouched: Cell<Option<(usize, usize)>>,
}

impl FakeStack {
    /// `len` filler words from `base` (8-byte aligned).
    pub fn new(base: usize, len: usize) -> Self {
        assert_eq!(base % WORD_SIZE, 0);
        FakeStack {
            base,
            words: (0..len).map(filler).collect(),
            unreadable: Vec::new(),
            vouched: Cell::new(None),
        }
    }

    fn index(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        if off % WORD_SIZE != 0 || off / WORD_SIZE >= self.words.len() {
            return None;
        }
        Some(off / WORD_SIZE)
    }

    /// Writes the word at `addr` (which must be inside the stack).
    pub fn set(&mut self, addr: usize, value: usize) {
        let i = self.index(addr).expect("address inside the fake stack");
        self.words[i] = value;
    }

    /// The word at `addr` (which must be inside the stack).
    pub fn get(&self, addr: usize) -> usize {
        self.words[self.index(addr).expect("address inside the fake stack")]
    }

    /// The address of word `i`.
    pub fn addr_of(&self, i: usize) -> usize {
        self.base + i * WORD_SIZE
    }
}

impl StackReader for FakeStack {
    fn read_word(&self, addr: usize) -> Option<usize> {
        if self.unreadable.iter().any(|r| r.contains(&addr)) {
            return None;
        }
        self.words.get(self.index(addr)?).copied()
    }

    fn covers(&self, lo: usize, hi: usize) -> bool {
        let end = self.base + self.words.len() * WORD_SIZE;
        let ok = self.base <= lo
            && lo <= hi
            && hi <= end
            && !self.unreadable.iter().any(|r| r.start < hi && lo < r.end);
        if ok {
            self.vouched.set(Some((lo, hi)));
        }
        ok
    }

    unsafe fn read_pair_covered(&self, addr: usize) -> [usize; 2] {
        let (lo, hi) = self
            .vouched
            .get()
            .expect("read_pair_covered without covers");
        assert!(
            addr.is_multiple_of(16) && lo <= addr && addr + 16 <= hi,
            "read_pair_covered({addr:#x}) outside the vouched [{lo:#x}, {hi:#x})"
        );
        self.read_pair(addr).expect("a vouched pair reads")
    }
}

/// One wasm frame to build.
#[derive(Clone, Debug)]
pub(crate) struct FrameSpec {
    /// The function the frame's PC is in.
    pub func: u32,
    /// Offset of the PC in the function (`1..FUNC_SIZE`).
    pub pc_offset: usize,
    /// Size of the frame below its saved FP, in 16-byte units.
    pub slots: usize,
}

/// One activation to build.
#[derive(Clone, Debug)]
pub(crate) struct ActivationSpec {
    /// Owner id.
    pub owner: usize,
    /// Wasm frames, youngest first.
    pub frames: Vec<FrameSpec>,
    /// Size of the host frames above its entry frame, in 16-byte units (at least 1).
    pub host_gap: usize,
}

/// A fake stack with activations, and the frames a correct walk yields.
pub(crate) struct BuiltStack {
    pub stack: FakeStack,
    /// Newest first, unlinked (`prev` is null); link with [`LinkedActivations`].
    pub activations: Vec<Activation>,
    /// Registers of the youngest frame of the newest activation, if it was built to be
    /// walked from them (its `exit_sp` is then 0).
    pub start: Option<StartRegs>,
    /// Every wasm frame, newest first.
    pub truth: Vec<Frame>,
    /// The address ranges holding each activation's frames, `[exit or start fp,
    /// entry_fp)`, newest first: the only words a walk may read.
    pub walk_ranges: Vec<Range<usize>>,
}

impl BuiltStack {
    /// The frames a walk over activations of `owner` (or all) must yield, and the start
    /// registers to pass (only if the newest activation is walked).
    pub fn expected(&self, owner: Option<usize>) -> (Vec<Frame>, Option<StartRegs>) {
        let walked = |i: usize| owner.is_none_or(|o| self.activations[i].owner == o);
        let frames = self
            .truth
            .iter()
            .filter(|f| walked(f.activation_index))
            .copied()
            .collect();
        let start = self.start.filter(|_| walked(0));
        (frames, start)
    }
}

/// Lays out `specs` (newest first) below `top` (16-byte aligned). If `use_start`, the
/// newest activation (if it has frames) records no exit and is walked from
/// [`BuiltStack::start`].
pub(crate) fn build(specs: &[ActivationSpec], use_start: bool, top: usize) -> BuiltStack {
    assert_eq!(top % 16, 0);
    let words: usize = specs
        .iter()
        .map(|a| {
            // host gap + entry frame + entry locals + frames + the exit's two words
            2 * a.host_gap + 2 + 2 + a.frames.iter().map(|f| 2 + 2 * f.slots).sum::<usize>() + 2
        })
        .sum::<usize>()
        + 2;
    let base = top - words * WORD_SIZE;
    let mut stack = FakeStack::new(base, words);
    let mut activations = Vec::new();
    let mut truth_oldest_first = Vec::new();
    let mut walk_ranges = Vec::new();
    let mut start = None;
    let mut cur = top;
    for (n, spec) in specs.iter().enumerate().rev() {
        let activation_index = n;
        let region_top = cur;
        cur -= 16 * spec.host_gap.max(1);
        let entry_fp = cur - 16;
        stack.set(entry_fp + SAVED_FP_OFFSET, cur);
        stack.set(entry_fp + RETURN_ADDR_OFFSET, HOST_PC);
        stack.unreadable.push(entry_fp..region_top);
        // Entry trampoline locals, then the call into wasm.
        let mut caller_sp = entry_fp - 16;
        let mut caller_fp = entry_fp;
        let mut return_addr = TRAMPOLINE_PC;
        let mut built = Vec::new();
        for frame in spec.frames.iter().rev() {
            let fp = caller_sp - 16;
            stack.set(fp + SAVED_FP_OFFSET, caller_fp);
            stack.set(fp + RETURN_ADDR_OFFSET, return_addr);
            let pc = pc_in(frame.func, frame.pc_offset);
            built.push((pc, fp));
            caller_fp = fp;
            caller_sp = fp - 16 * frame.slots;
            return_addr = pc;
        }
        // The exit: the return address pushed by the youngest frame's call out, and
        // no frame below it (the record holds that frame's FP and SP).
        let exit_base = caller_sp - 16;
        stack.set(exit_base + RETURN_ADDR_OFFSET, return_addr);
        let mut activation = Activation::new(entry_fp, spec.owner);
        let youngest_sp = caller_sp;
        if use_start && n == 0 && !built.is_empty() {
            start = Some(StartRegs {
                pc: return_addr,
                fp: caller_fp,
                sp: youngest_sp,
            });
            walk_ranges.push(caller_fp..entry_fp);
        } else {
            activation.exit_fp = caller_fp;
            activation.exit_sp = caller_sp;
            activation.exit_pc = return_addr;
            walk_ranges.push(exit_base..entry_fp);
        }
        activations.push(activation);
        // `built` is oldest first; the SP of a frame is its callee's FP + 16.
        let mut frames = Vec::new();
        for (i, &(pc, fp)) in built.iter().enumerate() {
            let sp = match built.get(i + 1) {
                Some(&(_, callee_fp)) => callee_fp + CALLER_SP_OFFSET,
                None => youngest_sp,
            };
            frames.push(Frame {
                pc,
                fp,
                sp,
                location: FakeCode.lookup_pc(pc).expect("pc in fake code"),
                activation_index,
            });
        }
        truth_oldest_first.extend(frames);
        cur = exit_base;
    }
    activations.reverse();
    walk_ranges.reverse();
    truth_oldest_first.reverse();
    BuiltStack {
        stack,
        activations,
        start,
        truth: truth_oldest_first,
        walk_ranges,
    }
}

/// Activations copied into one buffer and linked newest first.
pub(crate) struct LinkedActivations {
    storage: Vec<Activation>,
    head: *const Activation,
}

impl LinkedActivations {
    /// Copies `activations` (newest first) and links them.
    pub fn new(activations: &[Activation]) -> Self {
        let mut storage: Vec<Activation> = activations
            .iter()
            .map(|a| Activation {
                prev: core::ptr::null(),
                entry_fp: a.entry_fp,
                exit_fp: a.exit_fp,
                exit_sp: a.exit_sp,
                exit_pc: a.exit_pc,
                owner: a.owner,
            })
            .collect();
        let base = storage.as_mut_ptr();
        for i in 1..storage.len() {
            // SAFETY: `i - 1` and `i` are in bounds of `storage`, whose buffer is not
            // reallocated afterwards.
            unsafe { (*base.add(i - 1)).prev = base.add(i) };
        }
        let head = if storage.is_empty() {
            core::ptr::null()
        } else {
            base.cast_const()
        };
        LinkedActivations { storage, head }
    }

    /// The linked list.
    pub fn list(&self) -> ActivationList<'_> {
        debug_assert_eq!(self.head.is_null(), self.storage.is_empty());
        // SAFETY: `head` and the `prev` links point into `storage`, which lives as long
        // as the returned borrow of `self` and is never written after linking.
        unsafe { ActivationList::from_head(self.head) }
    }
}

/// Walks with [`visit_frames`] and returns the frames seen and how the walk ended.
pub(crate) fn walk(
    list: ActivationList<'_>,
    start: Option<StartRegs>,
    reader: &(impl StackReader + ?Sized),
    code: &(impl CodeLookup + ?Sized),
) -> (Vec<Frame>, Result<(), WalkError>) {
    let mut frames = Vec::new();
    let result = visit_frames(list, start, reader, code, |frame| {
        frames.push(*frame);
        ControlFlow::<()>::Continue(())
    });
    (frames, result.map(|broke| assert!(broke.is_none())))
}
