//! The one host → wasm entry path, and the two ways back out of wasm early: a trap
//! (via the signal handlers) and a host function's error or panic (via `raise`).
//!
//! Every call from the host into wasm code goes through [`invoke`] (the array
//! convention, through the callee's entry trampoline) or [`invoke_direct`] (a typed call
//! whose arguments fit in registers, straight into the wasm function), and both through
//! `enter`, which:
//!
//! 1. builds an [`EntryRecord`] on the caller's stack frame: the [`Activation`] the
//!    walker reads, the resume registers, the links to the store's and the thread's
//!    previous records;
//! 2. pushes the activation onto the store's list (`VMStoreContext::activation_head`)
//!    and the record onto the thread's list (`CURRENT`) *before* any wasm frame exists;
//! 3. calls `framewalk_enter` (or `framewalk_enter_direct`), which records `entry_fp`
//!    and the resume SP and calls the callee;
//! 4. pops both on every way out: normal return, trap, host error, host panic.
//!
//! A trap runs `on_trap` (redirected there by the signal handler) on the wasm stack; a
//! failed host call runs `raise` (called by the host function's entry point). Both capture the
//! backtrace once — walking this store's activations from the trap's registers or the
//! recorded exit — store it in the innermost record and call `framewalk_resume`, which
//! abandons every wasm frame of the activation and makes `framewalk_enter` return
//! `ENTRY_TRAPPED`. Nothing is unwound: the abandoned frames are Cranelift frames and
//! the handler's own frame, which own nothing.

use super::error::Error;
use super::store::StoreOpaque;
use super::vmcontext::{VMFuncRef, VMOffsets, VMStoreContext, ValRaw};
use crate::arch::{
    framewalk_enter, framewalk_enter_direct, framewalk_resume, EntryRegs, RegisterArgs,
    ENTRY_FAILED, ENTRY_OK, ENTRY_TRAPPED,
};
use crate::trap::{handler, FrameInfo, Trap, TrapCode, WasmBacktrace};
use crate::unwind::{Activation, ActivationList, LiveStackReader, StartRegs};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::OnceLock;

/// Everything one host → wasm call needs to find its way back.
#[repr(C)]
pub(crate) struct EntryRecord {
    /// Must stay first: the store's list points at it.
    activation: Activation,
    regs: EntryRegs,
    prev_on_thread: *mut EntryRecord,
    store: *mut StoreOpaque,
    trap: Option<Trap>,
}

thread_local! {
    /// The innermost entry record on this thread (any store), or null.
    static CURRENT: Cell<*mut EntryRecord> = const { Cell::new(std::ptr::null_mut()) };
}

thread_local! {
    /// Whether this thread has checked that the handlers and its alternate signal
    /// stack are installed.
    static READY: Cell<bool> = const { Cell::new(false) };
}

/// The activations of this thread's entry records, newest first, over every store:
/// what a sampling profiler's signal handler walks. A const-initialized `Cell` read and
/// plain loads: async-signal-safe.
#[cfg(feature = "profile")]
pub(crate) fn thread_records() -> ThreadRecords {
    ThreadRecords {
        next: CURRENT.get(),
    }
}

/// Iterator of `thread_records`.
#[cfg(feature = "profile")]
pub(crate) struct ThreadRecords {
    next: *const EntryRecord,
}

#[cfg(feature = "profile")]
impl Iterator for ThreadRecords {
    type Item = *const Activation;

    fn next(&mut self) -> Option<*const Activation> {
        if self.next.is_null() {
            return None;
        }
        let record = self.next;
        // SAFETY: records on this thread's list are live (each is on the stack below
        // the frames of the records older than it) and complete (published after a
        // compiler fence); the iterator is used on this thread only.
        self.next = unsafe { (*record).prev_on_thread };
        // SAFETY: as above; `activation` is the record's first field.
        Some(unsafe { std::ptr::addr_of!((*record).activation) })
    }
}

/// framewalk's runtime's one trap-handler registration for the process (its hooks
/// claim the PCs of every registered module), never dropped.
static REGISTRATION: OnceLock<handler::TrapHandlerRegistration> = OnceLock::new();

/// Registers the runtime's trap hooks (once per process) and gives this thread an
/// alternate signal stack (once per thread); after the first call on a thread, one
/// thread-local load.
#[inline(always)]
fn install_handlers() -> Result<(), Error> {
    if !READY.get() {
        return install_handlers_now();
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn install_handlers_now() -> Result<(), Error> {
    if REGISTRATION.get().is_none() {
        let registration = handler::register(handler::TrapHooks {
            lookup: super::registry::trap_code_at,
            on_trap,
        })
        .map_err(|e| Error::Resource(format!("trap handlers: {e}")))?;
        // If another thread registered first, ours is dropped here (unregistered):
        // both point at the same hooks, so no trap goes unclaimed meanwhile.
        let _ = REGISTRATION.set(registration);
    }
    handler::ensure_alt_stack();
    READY.set(true);
    Ok(())
}

/// Calls `f`'s array entry point with `values` (arguments in, results out).
///
/// Inlined into each caller: the common case (a wasm function that returns) is the
/// record, the two list pushes, `framewalk_enter` and the two pops; every other case
/// (a host function, a trap, a host failure) is out of line.
///
/// # Safety
/// `f` must belong to `store`, and `values` must hold the function's arguments
/// (correctly typed) and have room for its results.
#[inline(always)]
pub(crate) unsafe fn invoke(
    store: &mut StoreOpaque,
    f: &VMFuncRef,
    values: &mut [ValRaw],
) -> Result<(), Error> {
    if f.array_call.is_null() || f.flags & VMFuncRef::HOST != 0 {
        // SAFETY: per this function's contract.
        return unsafe { invoke_host_or_nothing(store, f, values) };
    }
    // SAFETY: the entry point and vmctx come from a live VMFuncRef of this store;
    // `values` is as the caller promised.
    unsafe {
        enter(store, |regs| {
            framewalk_enter(
                regs,
                f.array_call,
                f.vmctx,
                std::ptr::null_mut(),
                values.as_mut_ptr().cast(),
                values.len(),
            )
        })
    }
}

/// Calls the wasm function `f` with its own calling convention, its arguments in
/// `args` (`floats`: whether any is a float), leaving its result there: a typed call
/// without the entry trampoline (see `arch::framewalk_enter_direct`).
///
/// # Safety
/// `f` must be a wasm function (not a host function) of `store` with an array entry
/// point (it escapes to the host), and `args` must hold its arguments (correctly
/// typed, in the registers its signature assigns them); it must have at most one
/// result.
#[inline(always)]
pub(crate) unsafe fn invoke_direct(
    store: &mut StoreOpaque,
    f: &VMFuncRef,
    args: &mut RegisterArgs,
    floats: bool,
) -> Result<(), Error> {
    debug_assert!(f.flags & VMFuncRef::HOST == 0 && !f.array_call.is_null());
    // SAFETY: the function and vmctx come from a live VMFuncRef of this store; `args`
    // is as the caller promised.
    unsafe {
        enter(store, |regs| {
            framewalk_enter_direct(
                regs,
                f.wasm_call,
                f.vmctx,
                std::ptr::null_mut(),
                args,
                usize::from(floats),
            )
        })
    }
}

/// The activation around one call into wasm: pushes this call's record onto the
/// store's and the thread's lists, runs `call` (a `framewalk_enter*` given the record's
/// registers), pops both and turns the status into a result.
///
/// # Safety
/// `call` must call wasm code of `store` through a `framewalk_enter*` with the
/// registers it is given.
#[inline(always)]
unsafe fn enter(
    store: &mut StoreOpaque,
    call: impl FnOnce(*mut EntryRegs) -> u32,
) -> Result<(), Error> {
    install_handlers()?;
    let prev_limit = store.vm.stack_limit;
    if prev_limit == 0 {
        let sp = crate::arch::current_sp();
        store.vm.stack_limit = sp.saturating_sub(store.engine.config().max_wasm_stack);
    }
    let store_ptr: *mut StoreOpaque = store;
    // Never dropped: its one owning field, `trap`, is `None` on the way out (set only
    // on a trap, and then taken by `entry_failed`). This keeps the drop glue of
    // `Option<Trap>` (an out-of-line call) off the fast path.
    let mut record = std::mem::ManuallyDrop::new(EntryRecord {
        activation: Activation {
            prev: store.vm.activation_head,
            entry_fp: 0,
            exit_fp: 0,
            exit_sp: 0,
            exit_pc: 0,
            owner: store.id as usize,
        },
        regs: EntryRegs {
            entry_fp_out: std::ptr::null_mut(),
            resume_sp: 0,
        },
        prev_on_thread: CURRENT.get(),
        store: store_ptr,
        trap: None,
    });
    let record_ptr: *mut EntryRecord = &mut *record;
    // SAFETY: `record_ptr` is live; the field address is taken without a reference.
    unsafe {
        (*record_ptr).regs.entry_fp_out = std::ptr::addr_of_mut!((*record_ptr).activation.entry_fp)
    };
    store.vm.activation_head = record_ptr as *const Activation;
    // A sampling profiler's signal handler reads the thread's records (`thread_records`)
    // at any instruction: the record must be complete before it is published here.
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    CURRENT.set(record_ptr);
    // SAFETY: `record` outlives the call.
    let status = call(unsafe { &mut (*record_ptr).regs });
    // SAFETY: wasm has returned (or been abandoned); nothing else references `record`.
    let record = unsafe { &mut *record_ptr };
    CURRENT.set(record.prev_on_thread);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: `store_ptr` is the store we were lent; its vm context is live.
    let store = unsafe { &mut *store_ptr };
    store.vm.activation_head = record.activation.prev;
    store.vm.stack_limit = prev_limit;
    if status == ENTRY_OK {
        Ok(())
    } else {
        Err(entry_failed(store, record, status))
    }
}

/// [`invoke`] of a host function (no wasm frame, so no activation) or of a function
/// without an array entry point.
///
/// # Safety
/// As for [`invoke`].
#[inline(never)]
unsafe fn invoke_host_or_nothing(
    store: &mut StoreOpaque,
    f: &VMFuncRef,
    values: &mut [ValRaw],
) -> Result<(), Error> {
    if f.array_call.is_null() {
        return Err(Error::TypeMismatch(
            "function cannot be called from the host".into(),
        ));
    }
    let entry: super::vmcontext::ArrayCallFn =
        // SAFETY: a host context's `array_call` is `host_array_call`.
        unsafe { std::mem::transmute(f.array_call) };
    // SAFETY: per this function's contract.
    let ok = unsafe {
        entry(
            f.vmctx,
            std::ptr::null_mut(),
            values.as_mut_ptr(),
            values.len(),
        )
    };
    if ok {
        Ok(())
    } else {
        Err(take_host_failure(store, Vec::new()))
    }
}

/// The error of a call whose `framewalk_enter` returned `status` other than
/// `ENTRY_OK`: the trap `record` holds, or the host failure left in the store (a
/// panic resumes here).
#[cold]
#[inline(never)]
fn entry_failed(store: &mut StoreOpaque, record: &mut EntryRecord, status: u32) -> Error {
    debug_assert!(status == ENTRY_TRAPPED || status == ENTRY_FAILED);
    let trap = record.trap.take();
    if status == ENTRY_TRAPPED {
        if let Some(panic) = store.pending_panic.take() {
            drop(trap);
            std::panic::resume_unwind(panic);
        }
        Error::Trap(trap.unwrap_or_else(|| {
            Trap::new(TrapCode::Unreachable, Vec::new())
                .with_walk_error("trap record missing".into())
        }))
    } else {
        drop(trap);
        take_host_failure(store, Vec::new())
    }
}

/// The error a failed host call left in the store (resuming a panic if it was one).
pub(crate) fn take_host_failure(store: &mut StoreOpaque, frames: Vec<FrameInfo>) -> Error {
    if let Some(panic) = store.pending_panic.take() {
        std::panic::resume_unwind(panic);
    }
    let e = store
        .pending_error
        .take()
        .unwrap_or_else(|| "host function failed".into());
    Error::Trap(Trap::host(e, frames))
}

/// How much of a backtrace a trap captures (from the engine's `Config`).
#[derive(Clone, Copy)]
pub(crate) struct CaptureLimit {
    enabled: bool,
    max_frames: usize,
}

impl CaptureLimit {
    /// Every frame, whatever the configuration: a forced capture.
    pub(crate) const ALL: CaptureLimit = CaptureLimit {
        enabled: true,
        max_frames: usize::MAX,
    };

    /// What a trap in `store` captures.
    pub(crate) fn of(store: &StoreOpaque) -> CaptureLimit {
        let config = store.engine.config();
        CaptureLimit {
            enabled: config.wasm_backtrace,
            max_frames: config
                .wasm_backtrace_max_frames
                .map_or(usize::MAX, |n| n.get()),
        }
    }
}

/// What `capture` found: the symbolized frames (with the count of those beyond the
/// limit), and the walk error that ended it early, if any.
struct Captured {
    backtrace: WasmBacktrace,
    walk_error: Option<String>,
}

impl Captured {
    fn into_trap(self, trap: Trap) -> Trap {
        let trap = trap.with_backtrace(self.backtrace);
        match self.walk_error {
            Some(e) => trap.with_walk_error(e),
            None => trap,
        }
    }
}

/// Walks this store's activations (newest first) and symbolizes the first
/// `limit.max_frames` wasm frames, counting the rest; nothing when capture is off.
///
/// # Safety
/// `head` must be the store's live activation list on this thread; every activation
/// except possibly the first (if `start` is given) has its exit recorded.
unsafe fn capture(
    head: *const Activation,
    start: Option<StartRegs>,
    owner: usize,
    limit: CaptureLimit,
) -> Captured {
    let mut captured = Captured {
        backtrace: WasmBacktrace::new(),
        walk_error: None,
    };
    if !limit.enabled {
        return captured;
    }
    // SAFETY: per the contract; the list is not modified during the walk.
    let list = unsafe { ActivationList::from_head(head) }.only_owner(owner);
    // With no start or exit to walk from there is nothing to read: an empty range.
    let (lo, hi) = list.stack_range(start).unwrap_or((0, 0));
    // SAFETY: `[lo, hi)` runs from the newest start (the trap's registers, or the lowest
    // recorded exit) to the oldest entry_fp of these activations: live frames of this
    // thread's stack, above this function's own frame.
    let reader = unsafe { LiveStackReader::new(lo, hi) };
    captured.backtrace = reserved_backtrace(hi.saturating_sub(lo), limit.max_frames);
    let backtrace = &mut captured.backtrace;
    let mut omitted = 0;
    let mut seen = 0usize;
    let result = super::registry::REGISTRY.with_view(|view| {
        crate::unwind::visit_frames(list, start, &reader, view, |frame| {
            if seen < limit.max_frames {
                let exact = start.is_some() && seen == 0;
                let after_exact = start.is_some() && seen == 1;
                seen += 1;
                super::registry::symbolize_into(
                    backtrace,
                    frame,
                    exact,
                    after_exact,
                    view.last_data(),
                );
            } else {
                omitted += 1;
            }
            ControlFlow::<()>::Continue(())
        })
    });
    captured.backtrace.set_omitted_frames(omitted);
    captured.walk_error = result.err().map(|e| e.to_string());
    captured.backtrace.shrink_if_sparse();
    captured
}

/// The wasm address and memory size of a fault at host address `addr`, if it lies in
/// the reservation of one of `store`'s linear memories (reservations never overlap).
/// Every memory a store's instances can access (defined or imported) is in
/// `store.memories`.
fn memory_fault(store: &StoreOpaque, addr: usize) -> Option<(u64, u64)> {
    if addr == 0 {
        return None;
    }
    store.memories.iter().find_map(|m| {
        m.wasm_address(addr)
            .map(|wasm| (wasm, m.def.current_length as u64))
    })
}

/// Where the signal handler sends a thread that trapped in wasm code. `fault_addr` is
/// the faulting data address of a SIGSEGV/SIGBUS, 0 otherwise.
///
/// # Safety
/// Only the signal handler calls this, on the trapping thread, with the trap's
/// registers; the thread's innermost entry record is the trapping activation's.
unsafe extern "C" fn on_trap(pc: usize, fp: usize, sp: usize, code: usize, fault_addr: usize) -> ! {
    let record = CURRENT.get();
    if record.is_null() {
        // Not inside framewalk_enter: nothing to resume to. Cannot happen for a PC in
        // wasm code, which only runs inside an activation.
        std::process::abort();
    }
    // SAFETY: the record is live (its framewalk_enter frame is above us on this stack).
    let record = unsafe { &mut *record };
    let code = TrapCode::from_raw(code).unwrap_or(TrapCode::Unreachable);
    // SAFETY: the record's store is live (it lent itself to this call).
    let limit = CaptureLimit::of(unsafe { &*record.store });
    // SAFETY: the trapping activation is the head of its store's list.
    let captured = unsafe {
        capture(
            &record.activation,
            Some(StartRegs { pc, fp, sp }),
            record.activation.owner,
            limit,
        )
    };
    let mut trap = Trap::new(code, Vec::new());
    if code == TrapCode::MemoryOutOfBounds {
        // SAFETY: as above; nothing mutates the store while its wasm code is stopped here.
        if let Some((address, size)) = memory_fault(unsafe { &*record.store }, fault_addr) {
            trap = trap.with_memory_fault(address, size);
        }
    }
    record.trap = Some(captured.into_trap(trap));
    // The capture's registry view has ended: resuming leaves no reader counted.
    debug_assert_eq!(crate::unwind::reads_in_progress_on_this_thread(), 0);
    // SAFETY: `regs` was filled by the framewalk_enter that is still on this stack.
    unsafe { framewalk_resume(&record.regs) }
}

/// A host error with the backtrace of the wasm frames below the failed host call.
fn host_trap(caller_vmctx: *mut u8, e: crate::trap::HostError, limit: CaptureLimit) -> Trap {
    // SAFETY: the caller vmctx is a live instance vmctx; its store pointer is valid.
    let store_ctx =
        unsafe { *(caller_vmctx.add(VMOffsets::STORE as usize) as *const *const VMStoreContext) };
    // SAFETY: the head of the calling store is the activation the trampoline recorded.
    let head = unsafe { (*store_ctx).activation_head };
    // SAFETY: `head` is live, with its exit recorded by the trampoline.
    let owner = unsafe { (*head).owner };
    // SAFETY: as above.
    let captured = unsafe { capture(head, None, owner, limit) };
    captured.into_trap(Trap::host(e, Vec::new()))
}

/// Called by a host function's entry point, called from wasm, when the host function
/// failed (error or panic). The activation's exit is recorded, so
/// the backtrace starts at the wasm caller.
///
/// # Safety
/// Only `host_array_call` calls this, for a call from wasm, with its caller's vmctx.
pub(crate) unsafe extern "C" fn raise(caller_vmctx: *mut u8) -> ! {
    let record = CURRENT.get();
    if record.is_null() {
        std::process::abort();
    }
    // SAFETY: as in `on_trap`.
    let record = unsafe { &mut *record };
    // SAFETY: the record's store is live.
    let store = unsafe { &mut *record.store };
    let limit = CaptureLimit::of(store);
    let trap = if store.pending_panic.is_some() {
        None
    } else {
        let e = store
            .pending_error
            .take()
            .unwrap_or_else(|| "host function failed".into());
        // A host function that called back into wasm and passes its trap on: the trap
        // already carries the backtrace of every activation; keep it (captured once).
        Some(match e.downcast::<Error>() {
            Ok(inner) => match *inner {
                Error::Trap(t) => t,
                other => host_trap(caller_vmctx, Box::new(other), limit),
            },
            Err(e) => host_trap(caller_vmctx, e, limit),
        })
    };
    record.trap = trap;
    // SAFETY: as in `on_trap`.
    unsafe { framewalk_resume(&record.regs) }
}

/// Calls `f` on every wasm frame of `store`'s activations, newest first, until it
/// breaks. Meant for host functions (every activation has its exit recorded then);
/// from outside wasm it visits nothing. Does not allocate.
#[inline(always)]
pub(crate) fn visit_store_frames<B>(
    store: &StoreOpaque,
    mut f: impl FnMut(&crate::unwind::Frame) -> ControlFlow<B>,
) -> Result<Option<B>, crate::unwind::WalkError> {
    visit_store_frames_with_data(store, |frame, _| f(frame))
}

/// [`visit_store_frames`], also passing each frame's module data word (what
/// `registry::symbolize` needs), found by the walk's own lookup.
#[inline(always)]
fn visit_store_frames_with_data<B>(
    store: &StoreOpaque,
    mut f: impl FnMut(&crate::unwind::Frame, Option<usize>) -> ControlFlow<B>,
) -> Result<Option<B>, crate::unwind::WalkError> {
    let Some((lo, hi)) = store_stack_bounds(store) else {
        return Ok(None);
    };
    // SAFETY: the store's list is live on this thread (we are inside a host call made
    // by its newest activation) and is not modified during the walk.
    let list = unsafe { ActivationList::from_head(store.vm.activation_head) }
        .only_owner(store.id as usize);
    // SAFETY: `[lo, hi)` spans the live frames of these activations on this thread.
    let reader = unsafe { LiveStackReader::new(lo, hi) };
    super::registry::REGISTRY.with_view(|view| {
        crate::unwind::visit_frames(list, None, &reader, view, |frame| {
            f(frame, view.last_data())
        })
    })
}

/// The stack range `[lowest recorded exit, highest entry)` of `store`'s activations on
/// this thread, or `None` if it has none with a recorded exit.
pub(crate) fn store_stack_bounds(store: &StoreOpaque) -> Option<(usize, usize)> {
    let head = store.vm.activation_head;
    if head.is_null() {
        return None;
    }
    // SAFETY: the store's list is live on this thread and not modified meanwhile.
    let list = unsafe { ActivationList::from_head(head) }.only_owner(store.id as usize);
    list.recorded_exit_range()
}

/// Most frames a backtrace reserves room for before its walk (24 bytes each).
const MAX_RESERVED_FRAMES: usize = 4096;

/// An empty backtrace with room for the frames a walk over `span` bytes of stack can
/// find (each takes at least 16), at most `limit` and `MAX_RESERVED_FRAMES`: deep
/// stacks then fill it without regrowing it.
fn reserved_backtrace(span: usize, limit: usize) -> WasmBacktrace {
    WasmBacktrace::with_capacity((span / 16).min(limit).min(MAX_RESERVED_FRAMES))
}

/// The wasm frames of `store`, newest first, as a [`WasmBacktrace`] (names borrowed from
/// one `Arc` per module): the first `limit.max_frames` symbolized and the rest counted,
/// as a trap captures them; empty when capture is off.
pub(crate) fn store_wasm_backtrace(
    store: &StoreOpaque,
    limit: CaptureLimit,
) -> Result<WasmBacktrace, crate::unwind::WalkError> {
    if !limit.enabled {
        return Ok(WasmBacktrace::new());
    }
    let span = store_stack_bounds(store).map_or(0, |(lo, hi)| hi - lo);
    let mut backtrace = reserved_backtrace(span, limit.max_frames);
    let (mut seen, mut omitted) = (0usize, 0usize);
    visit_store_frames_with_data(store, |frame, data| {
        if seen < limit.max_frames {
            seen += 1;
            super::registry::symbolize_into(&mut backtrace, frame, false, false, data);
        } else {
            omitted += 1;
        }
        ControlFlow::<()>::Continue(())
    })?;
    backtrace.set_omitted_frames(omitted);
    backtrace.shrink_if_sparse();
    Ok(backtrace)
}

/// The symbolized wasm frames of `store`, newest first, in owned form: the first
/// `limit.max_frames` (the walk stops there); none when capture is off.
pub(crate) fn store_backtrace(
    store: &StoreOpaque,
    limit: CaptureLimit,
) -> Result<Vec<FrameInfo>, crate::unwind::WalkError> {
    let mut frames = Vec::new();
    if !limit.enabled {
        return Ok(frames);
    }
    visit_store_frames_with_data(store, |frame, data| {
        frames.push(super::registry::symbolize(frame, false, data));
        if frames.len() < limit.max_frames {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })?;
    Ok(frames)
}

/// A collection requested by wasm code: a reference entered the root set from a table
/// or global and the set reached the store's threshold (generated code checks; see
/// `compile::environ`). Called through `framewalk_call_with_exit_frame`, so `exit_fp`,
/// `exit_sp` and `exit_pc` are the calling wasm frame's FP, SP at its call and the
/// return address into it, and that call
/// site's stack map holds every reference the frame still uses (the one just read
/// among them).
///
/// # Safety
/// Only generated code calls this (through the stub), with its instance vmctx, while
/// its store's innermost activation runs on this thread.
pub(crate) unsafe extern "C" fn collect_garbage_from_wasm(
    caller_vmctx: *mut u8,
    exit_fp: usize,
    exit_sp: usize,
    exit_pc: usize,
) {
    let record = CURRENT.get();
    if record.is_null() {
        return;
    }
    // SAFETY: wasm runs in the innermost activation of this thread, whose record is
    // live on this stack; its store is the store that lent itself to this call.
    let store = unsafe { &mut *(*record).store };
    // SAFETY: the caller vmctx is a live instance vmctx; its store pointer is valid.
    let store_ctx =
        unsafe { *(caller_vmctx.add(VMOffsets::STORE as usize) as *const *const VMStoreContext) };
    if !std::ptr::eq(store_ctx, &*store.vm) {
        // Not the store of the running activation: cannot happen; collect nothing.
        return;
    }
    let head = store.vm.activation_head as *mut Activation;
    // SAFETY: the head is this store's innermost activation, running the caller; its
    // exit is not recorded while wasm runs, and nothing else reads it during this call.
    unsafe {
        (*head).exit_fp = exit_fp;
        (*head).exit_pc = exit_pc;
        // `exit_sp` makes the record valid (for a sampler's signal handler too): last.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        (*head).exit_sp = exit_sp;
    }
    // Unwinding out of here would cross wasm frames: a panic is fatal instead.
    let collected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.gc();
    }));
    // SAFETY: as above.
    unsafe { (*head).exit_sp = 0 };
    if collected.is_err() {
        std::process::abort();
    }
}
