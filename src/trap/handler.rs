//! Signal handlers that turn faults in JIT code into traps, shared by every runtime in
//! the process.
//!
//! # The protocol a runtime follows
//!
//! 1. **Register** its [`TrapHooks`] with [`register`] (any number of runtimes, each
//!    once; every call takes effect or returns a [`TrapHandlerError`]). It keeps the
//!    returned [`TrapHandlerRegistration`] for as long as its code may trap.
//! 2. **Give each thread that runs its code an alternate signal stack** with
//!    [`ensure_alt_stack`], so a handler can run when the fault was a stack overflow.
//!    Registration is per process, alternate stacks per thread: a thread without one
//!    still has its traps delivered (the handler then runs on the faulting stack).
//! 3. **Enter its code through [`call_resumable`](super::call_resumable)** (or its own
//!    equivalent), with a [`ResumePoint`](super::ResumePoint) its `on_trap` can find
//!    (e.g. in a thread-local).
//! 4. **`lookup(pc, signal)` runs in signal context**: no allocation, no locks, no
//!    blocking, nothing that is not async-signal-safe. It returns the trap code of a
//!    trap site of this runtime at `pc`, and `None` for every other PC (lookups of
//!    different runtimes must claim disjoint code: the first that claims a PC gets it).
//!    A runtime carries its own codes as [`TrapCode::Custom`].
//! 5. **`on_trap(pc, fp, sp, code, fault_address)` runs outside signal context**, on
//!    the faulting thread's own stack below the faulting SP: the handler rewrites the
//!    signal context so that, when the kernel returns from the handler, the thread calls
//!    `on_trap` instead of re-executing the faulting instruction. `code` is
//!    [`TrapCode::to_raw`] (decode it with [`TrapCode::from_raw`]). It must never
//!    return: it captures what it needs (it may walk from `StartRegs { pc, fp, sp }`,
//!    allocate, take locks) and calls [`resume`](super::resume) with the point of the
//!    `call_resumable` that entered the code.
//!
//! **Stack reserve.** The redirect starts `on_trap` at most [`REDIRECT_STACK_BYTES`]
//! (280) bytes below the faulting SP: past the 128-byte red zone, 16-byte aligned,
//! with a fake (null) return address. A runtime whose stack-limit check traps must
//! therefore keep at least that much, plus what `on_trap` and its callees (a walk,
//! the allocation of a backtrace) use, between its stack limit and the end of the
//! thread's stack. On a thread without an alternate signal stack the kernel's signal
//! frame (the `siginfo_t`, the `ucontext_t` and the extended register state: a few
//! KiB) also goes below the faulting SP, before the redirect.
//!
//! # Dispatch between runtimes
//!
//! The handlers for SIGILL, SIGFPE, SIGSEGV and SIGBUS are installed by the first
//! [`register`] of the process and stay installed for the rest of it. Each registration
//! owns one of [`MAX_RUNTIMES`] slots, an `AtomicPtr` to its hooks (boxed). A handler
//! reads the slots in order (atomic loads only: lock-free) and asks each registered
//! runtime's `lookup`; the first that claims the PC gets the trap, so each runtime gets
//! exactly its own traps. A fault no runtime claims goes to the disposition that was
//! in place before our handlers: its `sa_sigaction`/`sa_handler` is called, or, if it
//! was the default action (or ignore), that disposition is restored and the faulting
//! instruction re-executes into it.
//!
//! Dropping a registration clears its slot, then waits until no handler is between
//! its increment and decrement of a reader count (the window in which it may read a
//! hooks pointer), then frees the hooks: a handler never reads freed hooks. A fault
//! claimed before the drop may still run that runtime's `on_trap` afterwards (it is a
//! plain function). The handlers themselves stay installed: another runtime may be
//! registered, and uninstalling would race with the faults of other threads (a
//! handler running while the disposition is swapped back, a later runtime that
//! recorded ours as its previous disposition and chains to it); with no runtime
//! registered they only cost a few loads before chaining.
//!
//! # The install window
//!
//! Per signal, the previous disposition lives in a slot with a state: not installed,
//! installing, ready. The installer (one at a time, under a mutex) sets "installing",
//! calls `sigaction` (from then on our handler may run for that signal, in any thread),
//! writes the previous disposition it got into the slot, then publishes "ready" with
//! release ordering. A handler that must chain loads the state with acquire ordering
//! and spins while it is not "ready": a fault of another thread arriving in the window
//! between `sigaction` and the recording waits a few instructions and is then chained
//! to the right disposition, never to nothing. The spin cannot wait for ever because
//! the installer cannot be the one spinning: it blocks the four signals on its own
//! thread during the install (a signal sent to it is delivered after "ready"), and
//! between `sigaction` and "ready" it only copies a struct into a static, which does
//! not fault. A handler cannot see "not installed" for a signal it was invoked for:
//! "installing" is stored before the `sigaction` that made our handler reachable, and a
//! failed `sigaction` changes no disposition.
//!
//! # Which signal means what, for framewalk's runtime
//!
//! SIGILL is a `ud2` (every explicit check, including the prologue's stack-limit check,
//! so a stack overflow is a SIGILL with `StackOverflow` and never a fault on a guard
//! page), SIGFPE a division, SIGSEGV a load or store of linear memory that hit a
//! `PROT_NONE` page past `current_length` (its PC is a `MemoryOutOfBounds` trap site).
//! For SIGSEGV/SIGBUS the handler also passes the faulting data address (`si_addr`) to
//! `on_trap`, read from the `siginfo_t` in signal context (a plain field read,
//! async-signal-safe) and carried in a register like the PC, FP and SP.

use super::TrapCode;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// What a runtime provides to the handlers.
#[derive(Clone, Copy, Debug)]
pub struct TrapHooks {
    /// The trap code of this runtime's trap site at `pc`, or `None` if `pc` is not one
    /// (including every PC outside this runtime's code). Runs in signal context: no
    /// allocation, no locks.
    pub lookup: fn(pc: usize, signal: i32) -> Option<TrapCode>,
    /// Called (outside signal context, on the interrupted stack) with
    /// `(pc, fp, sp, code.to_raw(), fault_address)`; never returns. `fault_address` is
    /// the faulting data address (`si_addr`) of a SIGSEGV or SIGBUS — for a guard-page
    /// heap, the host address an out-of-bounds load or store touched — and 0 for the
    /// other signals.
    pub on_trap: unsafe extern "C" fn(usize, usize, usize, usize, usize) -> !,
}

/// How many registrations can be live at once.
pub const MAX_RUNTIMES: usize = 32;

/// The most stack, in bytes below the faulting SP, that the redirect to `on_trap`
/// uses before `on_trap`'s own frame: the 128-byte red zone, 128 bytes of margin, up to
/// 15 bytes of alignment and the 8-byte fake return address.
pub const REDIRECT_STACK_BYTES: usize = 280;

/// Why [`register`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrapHandlerError {
    /// Every slot holds a live registration.
    #[error("{max} runtimes already hold trap-handler registrations")]
    TooManyRuntimes {
        /// [`MAX_RUNTIMES`].
        max: usize,
    },
    /// `sigaction` refused to install the handler for a signal. The handlers of the
    /// signals before it stay installed; a later [`register`] retries the rest.
    #[error("installing the handler for signal {signal} failed (errno {errno})")]
    Install {
        /// The signal.
        signal: i32,
        /// `errno` after `sigaction`.
        errno: i32,
    },
}

/// A runtime's claim on its traps; dropping it stops the runtime claiming any PC.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters the hooks at once"]
pub struct TrapHandlerRegistration {
    slot: usize,
}

impl TrapHandlerRegistration {
    /// The slot this registration holds (`0..MAX_RUNTIMES`); handlers ask lower slots
    /// first.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

/// The registered hooks: null, or a `Box<TrapHooks>` owned by the registration of
/// that slot.
static SLOTS: [AtomicPtr<TrapHooks>; MAX_RUNTIMES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_RUNTIMES];
/// How many handlers are between reading the slots and being done with the hooks.
static READERS: AtomicUsize = AtomicUsize::new(0);

const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS];

const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const READY: u8 = 2;

/// The disposition a signal had before our handler, and whether it is recorded yet.
struct PreviousAction {
    state: AtomicU8,
    action: UnsafeCell<MaybeUninit<libc::sigaction>>,
}

// SAFETY: `action` is written once, by the installer (serialized by `INSTALL_LOCK`),
// before `state` becomes READY with release ordering, and never again; it is read only
// after loading READY with acquire ordering.
unsafe impl Sync for PreviousAction {}

static PREVIOUS: [PreviousAction; 4] = [const {
    PreviousAction {
        state: AtomicU8::new(NOT_INSTALLED),
        action: UnsafeCell::new(MaybeUninit::uninit()),
    }
}; 4];
static INSTALL_LOCK: Mutex<()> = Mutex::new(());
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Registers a runtime's hooks: from now on, a fault whose PC its `lookup` claims is
/// redirected to its `on_trap`. The first registration of the process installs the
/// handlers. Lock-free for the handlers; may block briefly on other registrations.
pub fn register(hooks: TrapHooks) -> Result<TrapHandlerRegistration, TrapHandlerError> {
    install_handlers()?;
    let hooks = Box::into_raw(Box::new(hooks));
    match claim_slot(&SLOTS, hooks) {
        Some(slot) => Ok(TrapHandlerRegistration { slot }),
        None => {
            // SAFETY: `hooks` came from `Box::into_raw` above and was published nowhere.
            drop(unsafe { Box::from_raw(hooks) });
            Err(TrapHandlerError::TooManyRuntimes { max: MAX_RUNTIMES })
        }
    }
}

/// Stores `hooks` in the first free slot, returning its index.
fn claim_slot(slots: &[AtomicPtr<TrapHooks>], hooks: *mut TrapHooks) -> Option<usize> {
    slots.iter().position(|slot| {
        slot.compare_exchange(
            std::ptr::null_mut(),
            hooks,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
    })
}

impl Drop for TrapHandlerRegistration {
    fn drop(&mut self) {
        let hooks = SLOTS[self.slot].swap(std::ptr::null_mut(), Ordering::SeqCst);
        // A handler that loaded `hooks` incremented READERS before its load (both
        // SeqCst, and our swap precedes this load in the single total order), so it is
        // counted here; one that increments later loads the cleared slot.
        while READERS.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        if !hooks.is_null() {
            // SAFETY: the slot held our box (only its registration clears it), and no
            // handler can still read it (above).
            drop(unsafe { Box::from_raw(hooks) });
        }
    }
}

/// Installs the four handlers if they are not yet (once per process).
fn install_handlers() -> Result<(), TrapHandlerError> {
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    // Block the four signals on this thread while installing, so that no handler runs
    // on it between a `sigaction` and the recording of its previous disposition (it
    // would spin on the state this thread is about to publish). See the module docs.
    // SAFETY: sigset_t is plain data, initialized by sigemptyset.
    let mut block: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigsets; valid signal numbers.
    unsafe {
        libc::sigemptyset(&mut block);
        for sig in SIGNALS {
            libc::sigaddset(&mut block, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old_mask);
    }
    let result = SIGNALS
        .iter()
        .zip(&PREVIOUS)
        .try_for_each(|(sig, previous)| install_one(*sig, previous));
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    result?;
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// Installs the handler for `signal` and records its previous disposition in `slot`.
/// Called with `INSTALL_LOCK` held and the signals blocked on this thread.
fn install_one(signal: libc::c_int, slot: &PreviousAction) -> Result<(), TrapHandlerError> {
    if slot.state.load(Ordering::Acquire) == READY {
        return Ok(()); // installed by an earlier, partly failed, install
    }
    // SAFETY: sigaction is plain data; all-zero is a valid (empty) value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SA_SIGINFO: we need the ucontext to read and redirect registers.
    // SA_ONSTACK: run on the thread's alternate stack if the fault was a stack overflow.
    // SA_NODEFER: a fault inside the handler (a bug) is not deferred into a hang.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
    action.sa_sigaction = handle as *const () as usize;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialize.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    slot.state.store(INSTALLING, Ordering::SeqCst);
    // SAFETY: valid signal number and pointers to initialized sigactions.
    if unsafe { libc::sigaction(signal, &action, &mut previous) } != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // The disposition did not change: our handler cannot run for `signal`.
        slot.state.store(NOT_INSTALLED, Ordering::SeqCst);
        return Err(TrapHandlerError::Install { signal, errno });
    }
    // SAFETY: we hold INSTALL_LOCK and the state is not READY, so no handler reads
    // `action` (they spin until READY) and no other installer writes it.
    unsafe { (*slot.action.get()).write(previous) };
    slot.state.store(READY, Ordering::Release);
    Ok(())
}

extern "C" fn handle(signal: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let Some(i) = SIGNALS.iter().position(|s| *s == signal) else {
        return;
    };
    // SAFETY: we were installed with SA_SIGINFO, so `ucontext` is the kernel's.
    let regs = unsafe { crate::arch::trap_registers(ucontext) };
    if let Some((on_trap, code)) = claimant(regs.pc, signal) {
        // SAFETY: installed with SA_SIGINFO, so `info` is the kernel's for `signal`.
        let fault_address = unsafe { crate::arch::fault_address(signal, info) };
        // SAFETY: the PC is a trap site of the runtime that claimed it, whose stack has
        // room below SP (the protocol's reserve); `on_trap` never returns.
        unsafe {
            crate::arch::redirect(
                ucontext,
                on_trap as usize,
                [regs.pc, regs.fp, regs.sp, code.to_raw(), fault_address],
            )
        };
        return;
    }
    chain(&PREVIOUS[i], signal, info, ucontext);
}

/// The `on_trap` and code of the first registered runtime whose `lookup` claims `pc`.
fn claimant(
    pc: usize,
    signal: libc::c_int,
) -> Option<(
    unsafe extern "C" fn(usize, usize, usize, usize, usize) -> !,
    TrapCode,
)> {
    READERS.fetch_add(1, Ordering::SeqCst);
    let mut found = None;
    for slot in &SLOTS {
        let hooks = slot.load(Ordering::SeqCst);
        if hooks.is_null() {
            continue;
        }
        // SAFETY: a non-null slot points to live hooks: a registration's drop frees
        // them only after clearing the slot and seeing READERS at 0, and we counted
        // ourselves in READERS before this load.
        let hooks = unsafe { *hooks };
        if let Some(code) = (hooks.lookup)(pc, signal) {
            found = Some((hooks.on_trap, code));
            break;
        }
    }
    READERS.fetch_sub(1, Ordering::SeqCst);
    found
}

/// Hands a fault no runtime claimed to the disposition our handler replaced.
fn chain(
    previous: &PreviousAction,
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    // Our handler runs for `signal` only after the installer's `sigaction`, and the
    // installer publishes READY right after it: wait out that window (module docs).
    while previous.state.load(Ordering::Acquire) != READY {
        std::hint::spin_loop();
    }
    // SAFETY: READY was published after `action` was written, and it is never
    // written again.
    let prev = unsafe { (*previous.action.get()).assume_init_ref() };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // Restore the previous disposition; returning re-executes the faulting
        // instruction, which now gets the default action (e.g. a core dump).
        // SAFETY: restoring a disposition we saved from the kernel.
        unsafe { libc::sigaction(signal, prev, std::ptr::null_mut()) };
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            // SAFETY: with SA_SIGINFO the field holds a three-argument handler.
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(signal, info, ucontext);
    } else {
        let f: extern "C" fn(libc::c_int) =
            // SAFETY: without SA_SIGINFO the field holds a one-argument handler.
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(signal);
    }
}

/// An alternate signal stack for the current thread, freed when the thread exits.
struct AltStack {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disable the alternate stack before unmapping it.
        unsafe {
            let mut ss: libc::stack_t = std::mem::zeroed();
            ss.ss_flags = libc::SS_DISABLE;
            libc::sigaltstack(&ss, std::ptr::null_mut());
            libc::munmap(self.ptr, self.len);
        }
    }
}

thread_local! {
    static ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Gives the current thread an alternate signal stack if it has none.
pub fn ensure_alt_stack() {
    ALT_STACK.with(|s| {
        if s.borrow().is_some() {
            return;
        }
        // SAFETY: querying the current alternate stack has no preconditions.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= 64 * 1024 {
            return; // someone else installed a big enough one
        }
        let len = 64 * 1024;
        // SAFETY: anonymous mapping, checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return;
        }
        let ss = libc::stack_t {
            ss_sp: ptr,
            ss_flags: 0,
            ss_size: len,
        };
        // SAFETY: `ss` describes memory we own for the thread's lifetime.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        *s.borrow_mut() = Some(AltStack { ptr, len });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_lookup(_pc: usize, _signal: i32) -> Option<TrapCode> {
        None
    }

    unsafe extern "C" fn no_trap(_: usize, _: usize, _: usize, _: usize, _: usize) -> ! {
        std::process::abort()
    }

    #[test]
    fn slots_fill_in_order_and_refuse_when_full() {
        let slots: [AtomicPtr<TrapHooks>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];
        let mut hooks = [TrapHooks {
            lookup: no_lookup,
            on_trap: no_trap,
        }; 4];
        let ptrs: Vec<*mut TrapHooks> = hooks.iter_mut().map(|h| h as *mut _).collect();
        assert_eq!(claim_slot(&slots, ptrs[0]), Some(0));
        assert_eq!(claim_slot(&slots, ptrs[1]), Some(1));
        assert_eq!(claim_slot(&slots, ptrs[2]), Some(2));
        assert_eq!(claim_slot(&slots, ptrs[3]), None);
        slots[1].store(std::ptr::null_mut(), Ordering::SeqCst);
        assert_eq!(claim_slot(&slots, ptrs[3]), Some(1));
        assert_eq!(slots[1].load(Ordering::SeqCst), ptrs[3]);
    }

    #[test]
    fn register_installs_every_handler_and_records_the_previous_dispositions() {
        let reg = register(TrapHooks {
            lookup: no_lookup,
            on_trap: no_trap,
        })
        .expect("register");
        assert!(reg.slot() < MAX_RUNTIMES);
        for (sig, previous) in SIGNALS.iter().zip(&PREVIOUS) {
            assert_eq!(previous.state.load(Ordering::Acquire), READY);
            // SAFETY: querying a disposition.
            let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid signal, null new action, valid out pointer.
            assert_eq!(
                unsafe { libc::sigaction(*sig, std::ptr::null(), &mut now) },
                0
            );
            assert_eq!(now.sa_sigaction, handle as *const () as usize);
        }
        drop(reg);
    }
}
