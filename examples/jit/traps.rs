//! Traps: the hooks registered with framewalk's trap layer, and what a trap reports.

use std::fmt;

use cranelift_codegen::ir;

use framewalk::trap::{self, ResumePoint, TrapCode, TrapHandlerRegistration, TrapHooks};
use framewalk::unwind::{StartRegs, WalkError};

use super::codegen::*;
use super::vm::*;

/// A trap, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrapReport {
    pub code: TrapCode,
    pub message: String,
    /// Every frame at the trap, newest first, across activations.
    pub backtrace: Result<Vec<BacktraceFrame>, WalkError>,
}

impl fmt::Display for TrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trap: {}", self.message)?;
        match &self.backtrace {
            Ok(frames) => {
                for (i, fr) in frames.iter().enumerate() {
                    writeln!(f, "  {i}: {fr}")?;
                }
                Ok(())
            }
            Err(e) => writeln!(f, "  walk failed: {e}"),
        }
    }
}

/// Why a call from the host failed.
#[derive(Debug)]
pub enum CallError {
    Trap(TrapReport),
    /// A bad call (no such function, wrong arguments) or a compile error.
    Invalid(String),
}

impl From<String> for CallError {
    fn from(e: String) -> CallError {
        CallError::Invalid(e)
    }
}

impl From<&str> for CallError {
    fn from(e: &str) -> CallError {
        CallError::Invalid(e.to_string())
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Trap(t) => write!(f, "{t}"),
            CallError::Invalid(e) => f.write_str(e),
        }
    }
}

/// The framewalk trap code of a Cranelift trap site this language can reach.
pub(crate) fn trap_code(code: ir::TrapCode) -> Option<TrapCode> {
    Some(match code {
        ir::TrapCode::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
        ir::TrapCode::IntegerOverflow => TrapCode::IntegerOverflow,
        ir::TrapCode::User(n) => TrapCode::Custom(n),
        _ => return None,
    })
}

/// The trap-handler registration every VM of the process shares (their code is all
/// in [`REGISTRY`]), made by the first [`Vm::new`] and kept for the process.
pub(crate) fn trap_registration() -> Result<(), String> {
    static REGISTRATION: std::sync::OnceLock<Result<TrapHandlerRegistration, String>> =
        std::sync::OnceLock::new();
    let hooks = TrapHooks {
        lookup: trap_lookup,
        on_trap,
    };
    REGISTRATION
        .get_or_init(|| trap::register(hooks).map_err(|e| e.to_string()))
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)?;
    // Each thread that runs JIT code gets an alternate signal stack.
    trap::ensure_alt_stack();
    Ok(())
}

/// The [`FunctionInfo`] a registration's data word points to (0 for the trampolines'
/// registration, which has none).
///
/// # Safety
/// `data` must come from a lookup in [`REGISTRY`] of a PC of code that is running on
/// this thread (its VM, and so its registration and info, are alive for as long as the
/// reference is used).
pub(crate) unsafe fn function_info<'a>(data: usize) -> Option<&'a FunctionInfo> {
    // SAFETY: per the contract, a non-zero data word is a live `FunctionInfo`.
    (data != 0).then(|| unsafe { &*(data as *const FunctionInfo) })
}

/// In signal context: the trap code of a trap site at `pc` in any VM's code. Only
/// reads: the registry (lock-free) and the function's immutable trap sites.
pub(crate) fn trap_lookup(pc: usize, _signal: i32) -> Option<TrapCode> {
    let (location, data) = REGISTRY.lookup_with_data(pc)?;
    // SAFETY: `pc` is the faulting PC of this thread: its function is running.
    let info = unsafe { function_info(data) }?;
    let i = info
        .traps
        .binary_search_by_key(&location.text_offset, |t| t.0)
        .ok()?;
    Some(info.traps[i].1)
}

/// Runs on the faulting stack after a trap `trap_lookup` claimed: records the trap
/// with its backtrace (unless it only propagates a nested one) and resumes at the
/// `call_resumable` of the call that entered the trapping code. It unlinks nothing:
/// `Vm::call_function` pops the activation when `call_resumable` returns `true`.
pub(crate) unsafe extern "C" fn on_trap(
    pc: usize,
    fp: usize,
    sp: usize,
    code: usize,
    _fault: usize,
) -> ! {
    let point = record_trap(pc, fp, sp, code);
    // SAFETY: the point was recorded by the `call_resumable` of `Vm::call_function` that
    // entered the trapping code, still running below us; between it and this frame
    // are `enter`, the entry trampoline and JIT frames, which own nothing, and this
    // frame, whose values `record_trap` already dropped.
    unsafe { trap::resume(point) }
}

pub(crate) fn record_trap(pc: usize, fp: usize, sp: usize, code: usize) -> *const ResumePoint {
    // SAFETY: `trap_lookup` claimed `pc`: it is in a running function of this thread.
    let info = REGISTRY
        .lookup_with_data(pc)
        .and_then(|(_, data)| unsafe { function_info(data) });
    let Some(info) = info else {
        std::process::abort();
    };
    // SAFETY: the VM that compiled the function outlives every run of its code.
    let vm = unsafe { &*info.vm };
    let code = TrapCode::from_raw(code).unwrap_or(TrapCode::Custom(0));
    if code != TrapCode::Custom(PROPAGATE) {
        let message = match code {
            TrapCode::Custom(n) => format!("user trap {n}"),
            other => other.message().to_string(),
        };
        let backtrace = vm.walk(Some(StartRegs { pc, fp, sp }));
        *vm.trap.borrow_mut() = Some(TrapReport {
            code,
            message,
            backtrace,
        });
    }
    &vm.resume_point
}
