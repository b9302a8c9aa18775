//! Reading and redirecting a Linux x86-64 signal context.

/// The registers a trap needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapRegisters {
    /// Faulting instruction.
    pub pc: usize,
    /// Frame pointer (rbp).
    pub fp: usize,
    /// Stack pointer (rsp).
    pub sp: usize,
}

/// Reads the trap registers from a `ucontext_t`.
///
/// # Safety
/// `ucontext` must be the third argument of an `SA_SIGINFO` handler.
pub unsafe fn trap_registers(ucontext: *mut libc::c_void) -> TrapRegisters {
    // SAFETY: per the contract, this is the kernel's ucontext for this signal.
    let uc = unsafe { &*(ucontext as *const libc::ucontext_t) };
    let g = &uc.uc_mcontext.gregs;
    TrapRegisters {
        pc: g[libc::REG_RIP as usize] as usize,
        fp: g[libc::REG_RBP as usize] as usize,
        sp: g[libc::REG_RSP as usize] as usize,
    }
}

/// The data address of a fault (`si_addr`) for SIGSEGV and SIGBUS, or 0 for other
/// signals (whose `si_addr` is the instruction's address, not data).
///
/// # Safety
/// `info` must be the second argument of an `SA_SIGINFO` handler for `signal`.
pub unsafe fn fault_address(signal: libc::c_int, info: *const libc::siginfo_t) -> usize {
    if info.is_null() || (signal != libc::SIGSEGV && signal != libc::SIGBUS) {
        return 0;
    }
    // SAFETY: per the contract `info` is the kernel's siginfo for a SIGSEGV or SIGBUS,
    // whose `si_addr` field is set; reading a field is async-signal-safe.
    unsafe { (*info).si_addr() as usize }
}

/// Makes the interrupted thread, when the handler returns, call `target(args[0..5])`
/// on its own stack, below the interrupted stack pointer (past the 128-byte red zone),
/// with a null return address: `target` must never return.
///
/// # Safety
/// `ucontext` must be the third argument of an `SA_SIGINFO` handler, the interrupted
/// stack must have room below its SP for `target` to run, and `target` must be an
/// `extern "C"` function taking five word-sized arguments that never returns.
pub unsafe fn redirect(ucontext: *mut libc::c_void, target: usize, args: [usize; 5]) {
    // SAFETY: per the contract.
    let uc = unsafe { &mut *(ucontext as *mut libc::ucontext_t) };
    let g = &mut uc.uc_mcontext.gregs;
    let sp = g[libc::REG_RSP as usize] as usize;
    // Below the red zone, 16-byte aligned, then a fake return address so `target`
    // starts with the stack alignment of a normal call.
    let new_sp = ((sp - 256) & !15) - 8;
    // SAFETY: `new_sp` lies in the interrupted thread's stack, below everything live.
    unsafe { (new_sp as *mut usize).write(0) };
    g[libc::REG_RSP as usize] = new_sp as i64;
    g[libc::REG_RIP as usize] = target as i64;
    g[libc::REG_RDI as usize] = args[0] as i64;
    g[libc::REG_RSI as usize] = args[1] as i64;
    g[libc::REG_RDX as usize] = args[2] as i64;
    g[libc::REG_RCX as usize] = args[3] as i64;
    g[libc::REG_R8 as usize] = args[4] as i64;
}
