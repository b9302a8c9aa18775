//! The oracle: runs a generated [`Program`] and checks the walker and the collector
//! against ground truth that neither of them computes.
//!
//! - **Frames.** Every generated function reports its entry and exit to the host, which
//!   keeps a shadow stack of wasm frames across activations. At every host callback the
//!   walker's frames ([`Caller::backtrace`]) must be the shadow stack, newest first, and
//!   every trap's frames must be the shadow stack at the trap (behind a run of `$spin`
//!   frames for stack exhaustion). Each frame's wasm offset must be an instruction of
//!   its function that can be there: a call for every caller and for the newest frame of
//!   a host callback, the trapping instruction for the newest frame of a trap. Names
//!   come from the name section.
//! - **Frames, a second way.** At every host callback the same wasm frames are also
//!   unwound with the modules' `.eh_frame` CFI (`props/cfi.rs`, gimli's reader, from
//!   the registers at each activation's recorded exit); the frame-pointer walk must give
//!   exactly the same frames (PCs and FPs, activation by activation).
//! - **References.** Every payload carries a canary and its id; every access (the
//!   `$check` import, every stack root at every callback, every table and global slot
//!   after every call) checks that it is alive and was never dropped. After the last
//!   call and a collection, the live payloads must be exactly those the host, the tables
//!   and the globals still hold (no leak), and after the store is dropped every payload
//!   was dropped exactly once.
//! - **Differential.** The program runs twice, collecting at every host callback
//!   ([`GcMode::Always`]) and never on purpose ([`GcMode::Never`]); both runs must
//!   observe the same values, results, traps and final tables and globals.
//!
//! A failure is a `String` naming the property that broke; the first one also goes to
//! stderr at once (a use-after-free may crash the process before it is reported).

#![allow(dead_code, reason = "shared by the property tests and the fuzz target")]

use super::cfi::{CfiFrame, CfiTables};
use super::gen::{Make, Program, Sig, NUM_IMPORTS};
use framewalk::runtime::{AsStoreMut, HostError};
use framewalk::trap::{FrameInfo, TrapCode};
use framewalk::{
    Caller, Engine, Error, Extern, ExternRef, Func, Instance, Module, Store, Val, V128,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use wasmparser::{Operator, Parser, Payload as WasmPayload};

const CANARY: u64 = 0x5eed_cafe_f00d_d00d;
const DEAD: u64 = 0xdead_dead_dead_dead;
/// Function entries allowed per host → wasm call before `$enter` fails.
const BUDGET: u32 = 400;

/// Whether host callbacks force a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcMode {
    /// At the start of every host callback, and from wasm wherever a reference
    /// enters the root set from a table or global (the store's threshold floor is 1).
    Always,
    /// Only where the program calls `$gc` (and the store's own trigger).
    Never,
}

/// How to run programs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Whether `$panic` panics (else it returns an error). Off under libFuzzer, whose
    /// panic hook aborts.
    pub allow_panics: bool,
}

/// What a run observed, compared between the two GC modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obs {
    /// `$check` saw this payload id (-1: null).
    Check(i32),
    /// A host → wasm call returned this (payload id, -1 for null, or the i32).
    Returned(i64),
    /// A host → wasm call trapped; `frames` are function indices, newest first.
    Trapped {
        /// The trap code.
        code: TrapCode,
        /// The backtrace's function indices.
        frames: Vec<u32>,
    },
    /// A host panic crossed a host → wasm call.
    Panicked,
}

/// Counters for a coverage summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Programs run (each in both modes).
    pub programs: u64,
    /// Host callbacks, each checked against the shadow stack.
    pub callbacks: u64,
    /// Frames the CFI unwinder found (and the frame-pointer walk matched).
    pub cfi_frames: u64,
    /// Collections.
    pub collections: u64,
    /// Payloads freed by collections.
    pub freed_by_gc: u64,
    /// Stack roots checked.
    pub roots: u64,
    /// Payloads created.
    pub payloads: u64,
    /// Deepest shadow stack seen at a callback.
    pub max_frames: usize,
    /// Most nested activations seen.
    pub max_activations: usize,
    /// Host → wasm calls that returned.
    pub returns: u64,
    /// Traps, by code.
    pub traps: BTreeMap<String, u64>,
    /// Host panics that crossed wasm.
    pub panics: u64,
    /// Calls of `$tail_host` (each reached by a `return_call`).
    pub tail_host_calls: u64,
    /// `v128` tokens handed back intact at `$exit` (each live across its frame's
    /// calls).
    pub vectors: u64,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.programs += other.programs;
        self.callbacks += other.callbacks;
        self.cfi_frames += other.cfi_frames;
        self.collections += other.collections;
        self.freed_by_gc += other.freed_by_gc;
        self.roots += other.roots;
        self.payloads += other.payloads;
        self.max_frames = self.max_frames.max(other.max_frames);
        self.max_activations = self.max_activations.max(other.max_activations);
        self.returns += other.returns;
        for (k, v) in &other.traps {
            *self.traps.entry(k.clone()).or_default() += v;
        }
        self.panics += other.panics;
        self.tail_host_calls += other.tail_host_calls;
        self.vectors += other.vectors;
    }
}

/// The payload panicked with by `$panic`.
pub struct HostPanic;

/// Installs (once) a panic hook that stays quiet for [`HostPanic`] and defers to the
/// previous hook for everything else.
pub fn quiet_host_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<HostPanic>().is_none() {
                previous(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------
// Ground truth from the module binary.

/// The instructions that can be at a frame's wasm offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Call,
    CallIndirect,
    Unreachable,
    DivU,
    Load,
    TableGet,
    TableSet,
    /// The function's entry (its body's start, before the first instruction): where a
    /// frame stopped by the prologue's stack check is reported.
    Entry,
    Other,
}

struct FuncMeta {
    name: String,
    ops: HashMap<u32, Op>,
}

/// What the oracle knows from the binary (each function's name and instructions) and
/// from the compiled module (its CFI, for the second unwinder).
pub struct Meta {
    funcs: HashMap<u32, FuncMeta>,
    spin: u32,
    cfi: CfiTables,
}

impl Meta {
    /// Decodes `bytes` (the binary of `program`), with `cfi`, that of its module.
    pub fn new(bytes: &[u8], program: &Program, cfi: CfiTables) -> Result<Meta, String> {
        let mut funcs = HashMap::new();
        let mut index = NUM_IMPORTS;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(|e| format!("binary: {e}"))?;
            if let WasmPayload::CodeSectionEntry(body) = payload {
                let mut reader = body
                    .get_operators_reader()
                    .map_err(|e| format!("binary: {e}"))?;
                let mut ops = HashMap::new();
                ops.insert(body.range().start as u32, Op::Entry);
                while !reader.eof() {
                    let (op, offset) = reader
                        .read_with_offset()
                        .map_err(|e| format!("binary: {e}"))?;
                    let op = match op {
                        Operator::Call { .. } => Op::Call,
                        Operator::CallIndirect { .. } => Op::CallIndirect,
                        Operator::Unreachable => Op::Unreachable,
                        Operator::I32DivU => Op::DivU,
                        Operator::I32Load { .. } => Op::Load,
                        Operator::TableGet { .. } => Op::TableGet,
                        Operator::TableSet { .. } => Op::TableSet,
                        _ => Op::Other,
                    };
                    ops.insert(offset as u32, op);
                }
                let k = (index - NUM_IMPORTS) as usize;
                let name = if k < program.funcs.len() {
                    format!("f{k}")
                } else {
                    "spin".into()
                };
                funcs.insert(index, FuncMeta { name, ops });
                index += 1;
            }
        }
        Ok(Meta {
            funcs,
            spin: program.spin_index(),
            cfi,
        })
    }

    fn op_at(&self, frame: &FrameInfo) -> Result<Option<Op>, String> {
        let f = self
            .funcs
            .get(&frame.func_index)
            .ok_or_else(|| format!("frame of unknown function {}", frame.func_index))?;
        if frame.func_name.as_deref() != Some(f.name.as_str())
            || frame.module_name.as_deref() != Some("prog")
        {
            return Err(format!(
                "frame of function {} named {:?}!{:?}, expected prog!{}",
                frame.func_index, frame.module_name, frame.func_name, f.name
            ));
        }
        Ok(match frame.wasm_offset {
            None => None,
            Some(o) => Some(*f.ops.get(&o).ok_or_else(|| {
                format!(
                    "frame of {} at wasm offset {o:#x}, which is no instruction of it",
                    f.name
                )
            })?),
        })
    }

    /// Every frame of a walk from a host callback is at a call; the newest at a direct
    /// call (of the import), unless the import was reached by a tail call (`tail_call`):
    /// the newest frame is then the tail caller's caller, at whichever call it made.
    fn check_callback_frames(&self, frames: &[FrameInfo], tail_call: bool) -> Result<(), String> {
        for (i, frame) in frames.iter().enumerate() {
            let op = self.op_at(frame)?;
            let ok = match op {
                Some(Op::Call) => true,
                Some(Op::CallIndirect) => i > 0 || tail_call,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "frame {i} ({}) of a walk from the host is at {op:?}, not a call",
                    frame.func_index
                ));
            }
        }
        Ok(())
    }

    /// The newest frame of a trap is at an instruction that raises its code; every
    /// other frame is at a call.
    fn check_trap_frames(&self, code: TrapCode, frames: &[FrameInfo]) -> Result<(), String> {
        for (i, frame) in frames.iter().enumerate() {
            let op = self.op_at(frame)?;
            let ok = if i == 0 {
                match code {
                    TrapCode::Unreachable => op == Some(Op::Unreachable),
                    TrapCode::IntegerDivisionByZero => op == Some(Op::DivU),
                    TrapCode::MemoryOutOfBounds => op == Some(Op::Load),
                    TrapCode::TableOutOfBounds => {
                        matches!(op, Some(Op::TableGet | Op::TableSet | Op::CallIndirect))
                    }
                    TrapCode::IndirectCallToNull | TrapCode::BadSignature => {
                        op == Some(Op::CallIndirect)
                    }
                    TrapCode::HostError => op == Some(Op::Call),
                    // The stack check sits in the prologue, before any instruction.
                    TrapCode::StackOverflow => {
                        frame.func_index == self.spin && op == Some(Op::Entry)
                    }
                    _ => false,
                }
            } else {
                matches!(op, Some(Op::Call | Op::CallIndirect))
            };
            if !ok {
                return Err(format!(
                    "trap {code:?}: frame {i} (function {}) is at {op:?} (offset {:?})",
                    frame.func_index, frame.wasm_offset
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Payloads.

/// The shared record of payload drops.
#[derive(Default)]
struct DropLog {
    /// Drops per payload id.
    drops: RefCell<Vec<u32>>,
    /// The host callback running now (for saying when a payload was dropped).
    now: RefCell<String>,
    /// Per payload id: the callback during which it was dropped.
    dropped_at: RefCell<Vec<String>>,
}

impl DropLog {
    fn when(&self, id: u32) -> String {
        self.dropped_at
            .borrow()
            .get(id as usize)
            .cloned()
            .unwrap_or_default()
    }
}

/// A host value wasm holds. The canary sits past the first 16 bytes, which an
/// allocator may reuse for its free lists, so it survives a premature free.
/// The log is dropped by hand, and only by a payload with a good canary, so that a
/// second drop of a freed payload (a double free) does not release it twice.
#[repr(C)]
struct Payload {
    _pad: [u64; 2],
    canary: u64,
    id: u32,
    log: ManuallyDrop<Rc<DropLog>>,
}

thread_local! {
    /// Drops of payloads whose canary was already dead (double frees).
    static BAD_DROPS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Payload {
    fn drop(&mut self) {
        if self.canary != CANARY {
            let msg = format!(
                "payload {} dropped again (canary {:#x}): a double free",
                self.id, self.canary
            );
            BAD_DROPS.with(|b| b.borrow_mut().push(msg));
            return;
        }
        self.canary = DEAD;
        if let Some(n) = self.log.drops.borrow_mut().get_mut(self.id as usize) {
            *n += 1;
        }
        if let Some(at) = self.log.dropped_at.borrow_mut().get_mut(self.id as usize) {
            at.clone_from(&self.log.now.borrow());
        }
        // SAFETY: dropped once: only here, and only while the canary is good, after
        // which it is dead.
        unsafe { ManuallyDrop::drop(&mut self.log) };
    }
}

/// The id of a live payload, or why it is not one.
fn inspect(r: &ExternRef, log: &DropLog) -> Result<u32, String> {
    let p = r
        .data()
        .downcast_ref::<Payload>()
        .ok_or("an externref whose value is not a payload")?;
    if p.canary != CANARY {
        return Err(format!(
            "payload {} used after it was freed (canary {:#x}; dropped {})",
            p.id,
            p.canary,
            log.when(p.id)
        ));
    }
    match log.drops.borrow().get(p.id as usize) {
        Some(0) => Ok(p.id),
        Some(n) => Err(format!(
            "payload {} used after it was dropped {n} time(s) ({})",
            p.id,
            log.when(p.id)
        )),
        None => Err(format!("payload id {} was never made", p.id)),
    }
}

/// `inspect`, consuming the handle: a handle to freed memory is leaked, not released
/// (releasing it would corrupt the heap before the failure is reported).
fn inspect_owned(r: Option<ExternRef>, log: &DropLog) -> Result<i32, String> {
    match r {
        None => Ok(-1),
        Some(r) => match inspect(&r, log) {
            Ok(id) => Ok(id as i32),
            Err(e) => {
                std::mem::forget(r);
                Err(e)
            }
        },
    }
}

// ---------------------------------------------------------------------------------
// The host.

struct Host {
    mode: GcMode,
    opts: Options,
    meta: Rc<Meta>,
    /// Module function indices of the live wasm frames, oldest first.
    shadow: Vec<u32>,
    /// The `v128` token `$enter` gave each frame of `shadow`, which its `$exit` must
    /// hand back.
    tokens: Vec<u128>,
    activations: usize,
    instances: Vec<Instance>,
    pool: Vec<ExternRef>,
    payloads: Rc<DropLog>,
    log: Vec<Obs>,
    failure: Option<String>,
    invocations: u32,
    stats: Stats,
    /// The frames (newest first) of the trap a `$reenter` just passed on.
    passed_on: Option<Vec<u32>>,
}

/// A store or a caller: where the host makes references.
trait HostCx: AsStoreMut {
    fn host(&mut self) -> &mut Host;
}

impl HostCx for Store<Host> {
    fn host(&mut self) -> &mut Host {
        self.data_mut()
    }
}

impl HostCx for Caller<'_, Host> {
    fn host(&mut self) -> &mut Host {
        self.data_mut()
    }
}

/// A new payload for the store of `cx`.
fn fresh(cx: &mut impl HostCx) -> ExternRef {
    let host = cx.host();
    let id = {
        let mut drops = host.payloads.drops.borrow_mut();
        drops.push(0);
        drops.len() as u32 - 1
    };
    host.payloads.dropped_at.borrow_mut().push(String::new());
    host.stats.payloads += 1;
    let payload = Payload {
        _pad: [0; 2],
        canary: CANARY,
        id,
        log: ManuallyDrop::new(host.payloads.clone()),
    };
    ExternRef::new(cx, payload)
}

/// What `$make` (or a host call's argument) `m` gives.
fn make(cx: &mut impl HostCx, m: Make) -> Option<ExternRef> {
    match m {
        Make::Fresh => Some(fresh(cx)),
        Make::Null => None,
        Make::Pooled(k) => {
            let pool = &cx.host().pool;
            (!pool.is_empty()).then(|| pool[usize::from(k) % pool.len()].clone())
        }
    }
}

impl Host {
    /// Records the first oracle failure (and prints it at once); returns the host error
    /// that aborts the wasm in progress.
    fn fail(&mut self, msg: String) -> HostError {
        if self.failure.is_none() {
            eprintln!("props oracle failure ({:?} GC): {msg}", self.mode);
            self.failure = Some(msg);
        }
        "oracle failure".into()
    }

    /// Forgets the frames above the `depth` oldest (a trap or panic unwound them).
    fn truncate_shadow(&mut self, depth: usize) {
        self.shadow.truncate(depth);
        self.tokens.truncate(depth);
    }

    /// A fresh `v128` token for a frame: all 128 bits vary (a splitmix64 pair of the
    /// number of `$enter` calls so far).
    fn next_token(&self) -> u128 {
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let n = u64::from(self.invocations);
        u128::from(mix(2 * n)) << 64 | u128::from(mix(2 * n + 1))
    }

    fn expected_frames(&self) -> Vec<u32> {
        self.shadow.iter().rev().copied().collect()
    }

    /// Checks a failed host → wasm call against the shadow stack at the trap.
    fn trap_obs(&mut self, e: &Error) -> Result<Obs, String> {
        let Error::Trap(t) = e else {
            return Err(format!("a call failed without a trap: {e}"));
        };
        let text = t.to_string();
        if text.contains("backtrace incomplete") {
            return Err(format!("trap backtrace incomplete: {text}"));
        }
        let frames: Vec<u32> = t.frames().iter().map(|f| f.func_index).collect();
        // A trap a host function passed on arrives unchanged, with the frames of every
        // activation at the original trap.
        if let Some(passed_on) = self.passed_on.take() {
            if frames != passed_on {
                return Err(format!(
                    "trap {:?} passed on by the host: backtrace {frames:?}, \
                     expected {passed_on:?} as it was passed on",
                    t.code()
                ));
            }
        } else {
            let want = self.expected_frames();
            let mut rest = &frames[..];
            if t.code() == TrapCode::StackOverflow {
                let spins = frames.iter().take_while(|f| **f == self.meta.spin).count();
                if spins == 0 {
                    return Err(format!(
                        "stack overflow outside $spin: frames {frames:?}, shadow {want:?}"
                    ));
                }
                rest = &frames[spins..];
            }
            if rest != want.as_slice() {
                return Err(format!(
                    "trap {:?}: backtrace {frames:?}, shadow stack {want:?} (newest first)",
                    t.code()
                ));
            }
        }
        self.meta.check_trap_frames(t.code(), t.frames())?;
        // The one out-of-bounds access programs make is an `i32.load` at 65536 in their
        // one-page memory: it faults on the guard pages at that address. No other trap
        // has a fault address.
        let want_fault = (t.code() == TrapCode::MemoryOutOfBounds).then_some(65536);
        if t.fault_address() != want_fault {
            return Err(format!(
                "trap {:?}: fault address {:?}, expected {want_fault:?}",
                t.code(),
                t.fault_address()
            ));
        }
        *self
            .stats
            .traps
            .entry(format!("{:?}", t.code()))
            .or_default() += 1;
        let spins = frames.iter().take_while(|f| **f == self.meta.spin).count();
        Ok(Obs::Trapped {
            code: t.code(),
            // How deep `$spin` got depends on the stack left, not on the program.
            frames: frames[spins.saturating_sub(1)..].to_vec(),
        })
    }
}

/// What every host callback does first: check the walk against the shadow stack,
/// collect (in `GcMode::Always`), and check every stack root.
fn on_callback(caller: &mut Caller<'_, Host>, what: &str) -> Result<(), HostError> {
    if caller.data().failure.is_some() {
        return Err("oracle failure".into());
    }
    match check_callback(caller, what) {
        Ok(()) => Ok(()),
        Err(msg) => Err(caller.data_mut().fail(format!("at ${what}: {msg}"))),
    }
}

fn check_callback(caller: &mut Caller<'_, Host>, what: &str) -> Result<(), String> {
    {
        let host = caller.data();
        *host.payloads.now.borrow_mut() = format!(
            "during host callback #{} (${what}, shadow stack {:?})",
            host.stats.callbacks, host.shadow
        );
    }
    let frames = caller
        .force_backtrace()
        .map_err(|e| format!("walk failed: {e}"))?;
    let got: Vec<u32> = frames.iter().map(|f| f.func_index).collect();
    let want = caller.data().expected_frames();
    if got != want {
        return Err(format!(
            "walker frames {got:?}, shadow stack {want:?} (newest first)"
        ));
    }
    caller
        .data()
        .meta
        .check_callback_frames(&frames, what == "tail_host")?;
    check_cfi(caller)?;
    {
        let host = caller.data_mut();
        host.stats.callbacks += 1;
        host.stats.max_frames = host.stats.max_frames.max(got.len());
        host.stats.max_activations = host.stats.max_activations.max(host.activations);
    }
    if caller.data().mode == GcMode::Always {
        collect(caller)?;
    }
    // Every stack root is a live payload, in a frame of the walk, in walk order.
    let roots = caller
        .stack_roots()
        .map_err(|e| format!("stack roots: walk failed: {e}"))?;
    let log = caller.data().payloads.clone();
    let mut pos = 0;
    let mut error = None;
    let n = roots.len();
    for (func, r) in roots {
        if let Err(e) = inspect_owned(Some(r), &log) {
            error.get_or_insert(format!("stack root in a frame of {func}: {e}"));
            continue;
        }
        while pos < got.len() && got[pos] != func {
            pos += 1;
        }
        if pos == got.len() {
            error.get_or_insert(format!(
                "stack root in a frame of {func}, which is not on the stack {got:?} (or out of order)"
            ));
        }
    }
    caller.data_mut().stats.roots += n as u64;
    error.map_or(Ok(()), Err)
}

/// The frame-pointer walk and the CFI unwinder must find the same frames.
fn check_cfi(caller: &mut Caller<'_, Host>) -> Result<(), String> {
    let mut walked = Vec::new();
    caller
        .visit_frames(|f| {
            walked.push(CfiFrame {
                activation_index: f.activation_index,
                pc: f.pc,
                fp: f.fp,
            });
            std::ops::ControlFlow::<()>::Continue(())
        })
        .map_err(|e| format!("walk failed: {e}"))?;
    let meta = caller.data().meta.clone();
    let unwound = caller
        .with_activation_stack(|activations, stack| meta.cfi.unwind(activations, stack))
        .unwrap_or_else(|| Err("no activation with a recorded exit".into()))?;
    if walked != unwound {
        return Err(format!(
            "frame-pointer walk {walked:x?} differs from the CFI unwind {unwound:x?}"
        ));
    }
    caller.data_mut().stats.cfi_frames += unwound.len() as u64;
    Ok(())
}

fn collect(caller: &mut Caller<'_, Host>) -> Result<(), String> {
    let before = caller.gc_stats().freed;
    caller.gc().map_err(|e| format!("collection failed: {e}"))?;
    let freed = caller.gc_stats().freed - before;
    let host = caller.data_mut();
    host.stats.collections += 1;
    host.stats.freed_by_gc += freed;
    Ok(())
}

fn host_funcs(store: &mut Store<Host>) -> Result<Vec<Extern>, String> {
    let err = |e: Error| format!("defining a host function: {e}");
    let enter = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, index: i32| -> Result<V128, HostError> {
            let host = caller.data_mut();
            host.shadow.push(index as u32);
            host.invocations += 1;
            let token = host.next_token();
            host.tokens.push(token);
            on_callback(&mut caller, "enter")?;
            if caller.data().invocations > BUDGET {
                return Err("call budget exhausted".into());
            }
            Ok(V128::from(token))
        },
    )
    .map_err(err)?;
    let exit = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, (index, token): (i32, V128)| -> Result<(), HostError> {
            on_callback(&mut caller, "exit")?;
            let host = caller.data_mut();
            let want = host.tokens.pop();
            match host.shadow.pop() {
                Some(top) if top == index as u32 => {}
                top => {
                    return Err(host.fail(format!(
                        "$exit({index}) with {top:?} on top of the shadow stack"
                    )))
                }
            }
            if want != Some(token.as_u128()) {
                return Err(host.fail(format!(
                    "$exit({index}) handed back the v128 {:#034x}; $enter gave {}",
                    token.as_u128(),
                    want.map_or("nothing".into(), |w| format!("{w:#034x}"))
                )));
            }
            host.stats.vectors += 1;
            Ok(())
        },
    )
    .map_err(err)?;
    let make = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, code: i32| -> Result<Option<ExternRef>, HostError> {
            on_callback(&mut caller, "make")?;
            let m = match code {
                0 => Make::Fresh,
                1 => Make::Null,
                k => Make::Pooled((k - 2) as u8),
            };
            Ok(make(&mut caller, m))
        },
    )
    .map_err(err)?;
    let check = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, r: Option<ExternRef>| -> Result<i32, HostError> {
            if caller.data().failure.is_some() {
                std::mem::forget(r);
                return Err("oracle failure".into());
            }
            let log = caller.data().payloads.clone();
            let id = match inspect_owned(r, &log) {
                Ok(id) => id,
                Err(e) => return Err(caller.data_mut().fail(format!("at $check: {e}"))),
            };
            on_callback(&mut caller, "check")?;
            caller.data_mut().log.push(Obs::Check(id));
            Ok(id)
        },
    )
    .map_err(err)?;
    let gc = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, (): ()| -> Result<(), HostError> {
            on_callback(&mut caller, "gc")?;
            collect(&mut caller).map_err(|e| caller.data_mut().fail(format!("at $gc: {e}")))
        },
    )
    .map_err(err)?;
    let reenter = Func::wrap(store, reenter).map_err(err)?;
    let fail = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, (): ()| -> Result<(), HostError> {
            on_callback(&mut caller, "fail")?;
            Err("the host function failed".into())
        },
    )
    .map_err(err)?;
    let panic = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>, (): ()| -> Result<(), HostError> {
            on_callback(&mut caller, "panic")?;
            if caller.data().opts.allow_panics {
                std::panic::panic_any(HostPanic);
            }
            Err("the host function failed (instead of panicking)".into())
        },
    )
    .map_err(err)?;
    // The callee of `return_call $tail_host`: called with its caller's frame gone
    // (the walk at its callback must show so); returns its argument.
    let tail_host = Func::wrap(
        store,
        |mut caller: Caller<'_, Host>,
         (_fuel, arg): RefFunc|
         -> Result<Option<ExternRef>, HostError> {
            if let Err(e) = on_callback(&mut caller, "tail_host") {
                std::mem::forget(arg);
                return Err(e);
            }
            let log = caller.data().payloads.clone();
            if let Some(r) = &arg {
                if let Err(e) = inspect(r, &log) {
                    std::mem::forget(arg);
                    return Err(caller
                        .data_mut()
                        .fail(format!("at $tail_host: argument: {e}")));
                }
            }
            caller.data_mut().stats.tail_host_calls += 1;
            Ok(arg)
        },
    )
    .map_err(err)?;
    Ok([
        enter, exit, make, check, gc, reenter, fail, panic, tail_host,
    ]
    .map(Extern::Func)
    .to_vec())
}

type RefFunc = (i32, Option<ExternRef>);

/// `$reenter(instance, target, fuel, arg, catch)`: a nested activation.
fn reenter(
    mut caller: Caller<'_, Host>,
    (instance, target, fuel, arg, catch): (i32, i32, i32, Option<ExternRef>, i32),
) -> Result<Option<ExternRef>, HostError> {
    if let Err(e) = on_callback(&mut caller, "reenter") {
        std::mem::forget(arg);
        return Err(e);
    }
    let log = caller.data().payloads.clone();
    if let Some(r) = &arg {
        if let Err(e) = inspect(r, &log) {
            std::mem::forget(arg);
            return Err(caller
                .data_mut()
                .fail(format!("at $reenter: argument: {e}")));
        }
    }
    let instance = caller.data().instances[instance as usize];
    let typed = instance
        .get_func(&caller, &format!("f{target}"))
        .ok_or("no such export")
        .and_then(|f| {
            f.typed::<RefFunc, Option<ExternRef>>(&caller)
                .map_err(|_| "export of the wrong type")
        });
    let typed = match typed {
        Ok(t) => t,
        Err(e) => return Err(caller.data_mut().fail(format!("$reenter: {e}"))),
    };
    let saved = caller.data().shadow.len();
    caller.data_mut().activations += 1;
    let result = if catch != 0 {
        catch_unwind(AssertUnwindSafe(|| typed.call(&mut caller, (fuel, arg))))
    } else {
        Ok(typed.call(&mut caller, (fuel, arg)))
    };
    caller.data_mut().activations -= 1;
    if caller.data().failure.is_some() {
        if let Ok(Ok(r)) = result {
            std::mem::forget(r);
        }
        return Err("oracle failure".into());
    }
    let host = caller.data_mut();
    match result {
        Ok(Ok(r)) => {
            if host.shadow.len() != saved {
                return Err(host.fail(format!(
                    "a nested call returned with shadow stack {:?}, expected depth {saved}",
                    host.shadow
                )));
            }
            if let Some(Err(e)) = r.as_ref().map(|r| inspect(r, &log)) {
                std::mem::forget(r);
                return Err(host.fail(format!("$reenter result: {e}")));
            }
            Ok(r)
        }
        Ok(Err(e)) => {
            let obs = match host.trap_obs(&e) {
                Ok(obs) => obs,
                Err(msg) => return Err(host.fail(format!("nested trap: {msg}"))),
            };
            host.truncate_shadow(saved);
            if catch != 0 {
                host.log.push(obs);
                Ok(None)
            } else {
                if let Error::Trap(t) = &e {
                    host.passed_on = Some(t.frames().iter().map(|f| f.func_index).collect());
                }
                host.log.push(obs);
                Err(Box::new(e))
            }
        }
        Err(panic) => {
            if panic.downcast_ref::<HostPanic>().is_none() {
                resume_unwind(panic);
            }
            host.truncate_shadow(saved);
            host.stats.panics += 1;
            host.log.push(Obs::Panicked);
            Ok(None)
        }
    }
}

/// What one run of a program ends with.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    log: Vec<Obs>,
    /// Per instance: the payload ids in `$t`, then in the globals (-1: null).
    owned: Vec<Vec<i32>>,
    payloads: usize,
}

/// The payload ids in the tables and globals of every instance, checking each.
fn owned_ids(store: &Store<Host>) -> Result<Vec<Vec<i32>>, String> {
    let log = store.data().payloads.clone();
    let mut all = Vec::new();
    for instance in &store.data().instances {
        let mut ids = Vec::new();
        let table = instance.get_table(store, "t").ok_or("no table t")?;
        for i in 0..super::gen::TABLE_SIZE {
            match table.get(store, i).map_err(|e| format!("table.get: {e}"))? {
                Some(Val::ExternRef(r)) => {
                    ids.push(inspect_owned(r, &log).map_err(|e| format!("$t[{i}]: {e}"))?)
                }
                other => return Err(format!("$t[{i}] is {other:?}")),
            }
        }
        for g in 0..super::gen::GLOBALS {
            let global = instance
                .get_global(store, &format!("g{g}"))
                .ok_or("no global")?;
            match global.get(store).map_err(|e| format!("global.get: {e}"))? {
                Val::ExternRef(r) => {
                    ids.push(inspect_owned(r, &log).map_err(|e| format!("$g{g}: {e}"))?)
                }
                other => return Err(format!("$g{g} is {other:?}")),
            }
        }
        all.push(ids);
    }
    Ok(all)
}

fn run_once(
    engine: &Engine,
    module: &Module,
    program: &Program,
    meta: Rc<Meta>,
    mode: GcMode,
    opts: Options,
    stats: &mut Stats,
) -> Result<Outcome, String> {
    BAD_DROPS.with(|b| b.borrow_mut().clear());
    let payloads = Rc::new(DropLog::default());
    let mut store = Store::new(
        engine,
        Host {
            mode,
            opts,
            meta,
            shadow: Vec::new(),
            tokens: Vec::new(),
            activations: 0,
            instances: Vec::new(),
            pool: Vec::new(),
            payloads: payloads.clone(),
            log: Vec::new(),
            failure: None,
            invocations: 0,
            stats: Stats::default(),
            passed_on: None,
        },
    );
    if mode == GcMode::Always {
        // Also collect from wasm at every `table.get`/`global.get` that adds a
        // reference to the root set (and at every crossing that enters one).
        store.set_gc_threshold_floor(1);
    }
    for _ in 0..program.pool {
        let r = fresh(&mut store);
        store.data_mut().pool.push(r);
    }
    let imports = host_funcs(&mut store)?;
    for _ in 0..program.instances.max(1) {
        let instance = Instance::new(&mut store, module, &imports)
            .map_err(|e| format!("instantiation: {e}"))?;
        store.data_mut().instances.push(instance);
    }
    for (i, call) in program.calls.iter().enumerate() {
        *payloads.now.borrow_mut() = format!("in host call {i}, before any callback");
        let instance = store.data().instances[program.instance(call.instance)];
        let k = program.callee(call.func);
        let func = instance
            .get_func(&store, &format!("f{k}"))
            .ok_or("missing export")?;
        let fuel = i32::from(call.fuel);
        {
            let host = store.data_mut();
            host.invocations = 0;
            host.activations = 1;
        }
        let log = payloads.clone();
        let result = catch_unwind(AssertUnwindSafe(|| match program.sig(k) {
            Sig::Ref => {
                let arg = make(&mut store, call.arg);
                let f = func
                    .typed::<RefFunc, Option<ExternRef>>(&store)
                    .expect("f<k> is $sig_ref");
                f.call(&mut store, (fuel, arg)).map(|r| {
                    inspect_owned(r, &log)
                        .map(i64::from)
                        .map_err(|e| format!("result: {e}"))
                })
            }
            Sig::Int => {
                let f = func.typed::<i32, i32>(&store).expect("f<k> is $sig_int");
                f.call(&mut store, fuel).map(|v| Ok(i64::from(v)))
            }
        }));
        let host = store.data_mut();
        host.activations = 0;
        if let Some(f) = &host.failure {
            return Err(f.clone());
        }
        let obs = match result {
            Ok(Ok(v)) => {
                if !host.shadow.is_empty() {
                    return Err(format!(
                        "a call returned with shadow stack {:?}",
                        host.shadow
                    ));
                }
                host.stats.returns += 1;
                Obs::Returned(v?)
            }
            Ok(Err(e)) => {
                let obs = host.trap_obs(&e)?;
                host.truncate_shadow(0);
                obs
            }
            Err(panic) => {
                if panic.downcast_ref::<HostPanic>().is_none() {
                    resume_unwind(panic);
                }
                host.truncate_shadow(0);
                host.stats.panics += 1;
                Obs::Panicked
            }
        };
        host.log.push(obs);
        owned_ids(&store)?;
    }
    // Off the stack, everything the host, tables and globals do not hold is garbage.
    *payloads.now.borrow_mut() = "in the final collection".into();
    store.gc().map_err(|e| format!("final collection: {e}"))?;
    let owned = owned_ids(&store)?;
    let mut held: BTreeSet<i32> = owned
        .iter()
        .flatten()
        .copied()
        .filter(|id| *id >= 0)
        .collect();
    for r in &store.data().pool {
        held.insert(inspect(r, &payloads)? as i32);
    }
    let live: BTreeSet<i32> = payloads
        .drops
        .borrow()
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| id as i32)
        .collect();
    if live != held {
        return Err(format!(
            "after the final collection, live payloads {live:?} but only {held:?} are held \
             by the host, tables and globals (leak or premature free)"
        ));
    }
    let log = std::mem::take(&mut store.data_mut().log);
    stats.merge(&store.data().stats);
    drop(store);
    let drops = payloads.drops.borrow();
    if let Some(e) = BAD_DROPS.with(|b| b.borrow_mut().drain(..).next()) {
        return Err(e);
    }
    for (id, n) in drops.iter().enumerate() {
        if *n != 1 {
            return Err(format!(
                "after the store was dropped, payload {id} was dropped {n} times"
            ));
        }
    }
    Ok(Outcome {
        log,
        owned,
        payloads: drops.len(),
    })
}

/// Runs `program` in both GC modes and checks every property; `Err` names the first
/// property that failed.
pub fn check_program(
    engine: &Engine,
    program: &Program,
    opts: Options,
    stats: &mut Stats,
) -> Result<(), String> {
    let wat = program.to_wat();
    let bytes = wat::parse_str(&wat).map_err(|e| format!("generated WAT invalid: {e}"))?;
    let module = Module::new(engine, &bytes).map_err(|e| format!("compiling: {e}"))?;
    let cfi = CfiTables::new(&[&module])?;
    let meta = Rc::new(Meta::new(&bytes, program, cfi)?);
    let always = run_once(
        engine,
        &module,
        program,
        meta.clone(),
        GcMode::Always,
        opts,
        stats,
    )
    .map_err(|e| format!("GC at every host callback: {e}"))?;
    let never = run_once(engine, &module, program, meta, GcMode::Never, opts, stats)
        .map_err(|e| format!("GC only on request: {e}"))?;
    stats.programs += 1;
    if always != never {
        return Err(format!(
            "the two GC modes disagree:\n  GC at every callback: {always:?}\n  GC on request only:   {never:?}"
        ));
    }
    Ok(())
}
