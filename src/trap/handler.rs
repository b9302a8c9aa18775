//! Signal handlers that turn faults in wasm code into traps.
//!
//! Installed once per process for SIGILL (Cranelift's `ud2` trap sites), SIGFPE (integer
//! division) and SIGSEGV/SIGBUS. A handler asks the runtime's lookup hook whether the
//! faulting PC is a trap site in wasm code; if so it redirects the thread to the
//! runtime's `on_trap` function, which runs on the wasm stack below the faulting frame
//! (not in signal context), captures the backtrace and resumes at the activation's
//! entry. Otherwise the fault is not ours and the previous handler gets it: its
//! `sa_sigaction`/`sa_handler` is called, or, if it was the default action, that
//! action is restored and the faulting instruction re-executes into it.
//!
//! Each thread that runs wasm gets an alternate signal stack, so a handler can run even
//! when the fault was caused by an exhausted stack.
//!
//! Which signal means what, for framewalk's runtime: SIGILL is a `ud2` (every explicit
//! check, including the prologue's stack-limit check, so a stack overflow is a SIGILL
//! with `StackOverflow` and never a fault on a guard page), SIGFPE a division, SIGSEGV
//! a load or store of linear memory that hit a `PROT_NONE` page past `current_length`
//! (its PC is a `MemoryOutOfBounds` trap site). For SIGSEGV/SIGBUS the handler also
//! passes the faulting data address (`si_addr`) to `on_trap`, read from the `siginfo_t`
//! in signal context (a plain field read, async-signal-safe) and carried in a register
//! like the PC, FP and SP.

use super::TrapCode;
use std::sync::OnceLock;

/// What the runtime provides to the handlers.
#[derive(Clone, Copy)]
pub struct TrapHooks {
    /// The trap code of a trap site at `pc` in wasm code, or `None` if `pc` is not one.
    /// Must not allocate or block for long: it runs in signal context.
    pub lookup: fn(pc: usize, signal: i32) -> Option<TrapCode>,
    /// Called (outside signal context, on the interrupted stack) with
    /// `(pc, fp, sp, code as usize, fault_address)`; never returns. `fault_address` is
    /// the faulting data address (`si_addr`) of a SIGSEGV or SIGBUS — for a guard-page
    /// heap, the host address an out-of-bounds load or store touched — and 0 for the
    /// other signals.
    pub on_trap: unsafe extern "C" fn(usize, usize, usize, usize, usize) -> !,
}

static HOOKS: OnceLock<TrapHooks> = OnceLock::new();
const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS];
static PREVIOUS: OnceLock<[libc::sigaction; 4]> = OnceLock::new();

/// Installs the handlers (once per process; later calls are no-ops).
pub fn install(hooks: TrapHooks) {
    if HOOKS.set(hooks).is_err() {
        return;
    }
    let mut previous: [libc::sigaction; 4] =
        // SAFETY: sigaction is plain data; all-zero is a valid (empty) value.
        unsafe { std::mem::zeroed() };
    for (i, sig) in SIGNALS.iter().enumerate() {
        // SAFETY: as above.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        // SA_SIGINFO: we need the ucontext to read and redirect registers.
        // SA_ONSTACK: run on the thread's alternate stack if the fault was a stack overflow.
        // SA_NODEFER: a fault inside the handler (a bug) is not deferred into a hang.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        action.sa_sigaction = handle as *const () as usize;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialize.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: valid signal number and pointers to initialized sigactions.
        unsafe { libc::sigaction(*sig, &action, &mut previous[i]) };
    }
    let _ = PREVIOUS.set(previous);
}

extern "C" fn handle(signal: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    if let Some(hooks) = HOOKS.get() {
        // SAFETY: we were installed with SA_SIGINFO, so `ucontext` is the kernel's.
        let regs = unsafe { crate::arch::trap_registers(ucontext) };
        if let Some(code) = (hooks.lookup)(regs.pc, signal) {
            // SAFETY: installed with SA_SIGINFO, so `info` is the kernel's for `signal`.
            let fault_address = unsafe { crate::arch::fault_address(signal, info) };
            // SAFETY: the PC is in wasm code, whose stack has room below SP (the stack
            // limit keeps a reserve); `on_trap` never returns.
            unsafe {
                crate::arch::redirect(
                    ucontext,
                    hooks.on_trap as usize,
                    [regs.pc, regs.fp, regs.sp, code as usize, fault_address],
                )
            };
            return;
        }
    }
    chain(signal, info, ucontext);
}

fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let Some(i) = SIGNALS.iter().position(|s| *s == signal) else {
        return;
    };
    let Some(previous) = PREVIOUS.get() else {
        return;
    };
    let prev = &previous[i];
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
