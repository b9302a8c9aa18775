//! Resuming after a trap, for any runtime: [`call_resumable`] records a
//! [`ResumePoint`] and calls a function; [`resume`], called from that function's
//! callees on the same thread (typically a runtime's `on_trap`, which the signal
//! handler redirected to on the faulting stack), returns from that `call_resumable`
//! with `true`.
//!
//! Nothing between the two is unwound: the frames below `call_resumable` are simply
//! abandoned, their memory reused by whatever the caller does next. That is sound only
//! for frames that own nothing needing a drop or a cleanup — Cranelift-compiled
//! frames, the `on_trap` frame the signal handler set up, a runtime's own assembly
//! trampolines. A Rust frame between them with a live value that has drop glue (a
//! `Vec`, a lock guard, a `RefCell` borrow) is leaked, or worse left half-updated; a
//! host frame must catch its own panics and errors and never be resumed across.
//!
//! Invariants (see `arch::x86_64::resume` for the frame):
//! - while `call_resumable(point, ..)` runs, `point` holds its 16-byte-aligned resume
//!   stack pointer; when it returns (either way) `point` holds what it held before;
//! - `resume(point)` restores the callee-saved registers (`rbx`, `rbp`, `r12`–`r15`)
//!   as they were when `call_resumable` was called; other state (MXCSR, the x87 control
//!   word, the signal mask) is whatever the abandoned frames left.

use core::cell::UnsafeCell;
use core::ffi::c_void;

/// Where [`call_resumable`] records the state [`resume`] returns to.
///
/// One word: the resume stack pointer while a `call_resumable` with this point is
/// running, otherwise what it held before (0 for a new point).
#[repr(C)]
pub struct ResumePoint {
    /// The resume SP, written by the assembly through a raw pointer.
    sp: UnsafeCell<usize>,
}

impl ResumePoint {
    /// A point no call has recorded yet.
    pub const fn new() -> ResumePoint {
        ResumePoint {
            sp: UnsafeCell::new(0),
        }
    }
}

impl Default for ResumePoint {
    fn default() -> ResumePoint {
        ResumePoint::new()
    }
}

impl core::fmt::Debug for ResumePoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: a plain word read; the only writers are `call_resumable` frames of
        // this thread (the type is not `Sync`), which are not running while we do.
        let sp = unsafe { *self.sp.get() };
        f.debug_struct("ResumePoint").field("sp", &sp).finish()
    }
}

/// Calls `f(arg)`. Returns `false` when `f` returned, `true` when `resume(point)` was
/// called (from `f`'s callees, e.g. a trap handler's `on_trap` on the same stack) —
/// every frame below `call_resumable` is then abandoned without unwinding.
///
/// `point` may be reused, and nested calls may share one: each call restores the
/// point's previous content when it returns.
///
/// # Safety
/// - `point` must be valid for reads and writes of a `ResumePoint` for the whole call,
///   and not be moved while `f` runs;
/// - `f` must be safe to call with `arg`;
/// - if `f` (or a callee) calls `resume(point)`, every frame between this call and
///   that `resume` must own nothing that needs dropping or cleaning up (see the
///   module docs), and `f` must not unwind (a panic crossing an `extern "C"` function
///   aborts).
#[inline]
pub unsafe fn call_resumable(
    point: *mut ResumePoint,
    f: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) -> bool {
    // SAFETY: `ResumePoint` is `repr(C)` with one `UnsafeCell<usize>`, so `point` is a
    // valid word for the assembly to record in; the rest is the caller's contract.
    unsafe { crate::arch::framewalk_call_resumable(point.cast::<usize>(), f, arg) != 0 }
}

/// Returns from the [`call_resumable`] that recorded `point`, making it return `true`.
///
/// Aborts the process if `point` holds no resume stack pointer (0: no
/// `call_resumable` recorded it, or the one that did has returned and the point was
/// fresh), rather than jump to address 0; and, with a message on stderr, if a code
/// registry read is in progress on this thread
/// ([`reads_in_progress_on_this_thread`](crate::unwind::reads_in_progress_on_this_thread):
/// a `with_view` closure that resuming would leave without ending, after which that
/// registry's next writer would wait for ever). Finish a walk before resuming.
///
/// # Safety
/// `point` must be live and recorded by a `call_resumable` that is still running on
/// this thread's stack (below which the caller of `resume` is running); every frame
/// between that `call_resumable` and this call is abandoned, so none may own anything
/// that needs dropping (Cranelift frames, a trap handler's `on_trap` frame). Not from
/// inside a signal handler: resume from the function the handler redirected to, so the
/// kernel has restored the signal mask and left the alternate signal stack.
pub unsafe fn resume(point: *const ResumePoint) -> ! {
    // SAFETY: `point` is live per the contract; a word read.
    let sp = unsafe { *(*point).sp.get() };
    if sp == 0 {
        std::process::abort();
    }
    if crate::unwind::reads_in_progress_on_this_thread() != 0 {
        abort_with(
            "framewalk: trap::resume called inside a CodeRegistry read (a with_view \
             closure); resuming would leave it open and the registry's next writer would \
             wait for ever: end the walk first\n",
        );
    }
    // SAFETY: per the contract the point was recorded by a `call_resumable` still on
    // this thread's stack, so its SP and the saved registers above it are intact.
    unsafe { crate::arch::framewalk_resume_point(point.cast::<usize>()) }
}

/// Writes `message` to stderr and aborts (no allocation, no locks).
fn abort_with(message: &str) -> ! {
    // SAFETY: writes `message.len()` bytes of a live string to file descriptor 2; a
    // failed or short write is ignored, the abort follows either way.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Nest {
        point: ResumePoint,
        depth: Cell<u32>,
        resume_at: u32,
        reached: Cell<u32>,
    }

    unsafe extern "C" fn descend(arg: *mut c_void) {
        // SAFETY: `arg` is the `Nest` the test passes, live for the call.
        let nest = unsafe { &*(arg as *const Nest) };
        let d = nest.depth.get() + 1;
        nest.depth.set(d);
        nest.reached.set(d);
        if d == nest.resume_at {
            // SAFETY: the point was recorded by the `call_resumable` above us; the
            // frames between are `descend` frames that own nothing.
            unsafe { resume(&nest.point) };
        }
        // SAFETY: as above.
        unsafe { descend(arg) };
    }

    #[test]
    fn resume_returns_true_from_deep_below_and_restores_the_point() {
        let nest = Nest {
            point: ResumePoint::new(),
            depth: Cell::new(0),
            resume_at: 50,
            reached: Cell::new(0),
        };
        let p = &nest as *const Nest as *mut c_void;
        // SAFETY: `nest.point` lives for the call; `descend` resumes before recursing
        // past `resume_at` and its frames own nothing.
        let resumed = unsafe { call_resumable(&nest.point as *const _ as *mut _, descend, p) };
        assert!(resumed);
        assert_eq!(nest.reached.get(), 50);
        // SAFETY: no call is running with this point.
        assert_eq!(unsafe { *nest.point.sp.get() }, 0);
    }

    unsafe extern "C" fn record_sp(arg: *mut c_void) {
        // SAFETY: `arg` is the point of the running `call_resumable`, whose word the
        // test reads back (its resume SP while `f` runs).
        let sp = unsafe { *(*(arg as *const ResumePoint)).sp.get() };
        RECORDED.set(sp);
    }

    thread_local! {
        static RECORDED: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn normal_return_is_false_with_an_aligned_resume_sp_above_the_callee() {
        let point = ResumePoint::new();
        let pp = &point as *const ResumePoint as *mut ResumePoint;
        // SAFETY: `point` lives for the call; `record_sp` only reads it.
        let resumed = unsafe { call_resumable(pp, record_sp, pp.cast()) };
        assert!(!resumed);
        let sp = RECORDED.get();
        assert_ne!(sp, 0);
        assert_eq!(sp % 16, 0);
        // Below this frame (the stack grows down), above nothing of ours.
        assert!(sp < crate::arch::current_sp());
        // SAFETY: no call is running with this point.
        assert_eq!(unsafe { *point.sp.get() }, 0);
    }

    /// Two nested `call_resumable`s with one point: the inner resume returns from the
    /// inner call, and the point then holds the outer call's SP again, so a resume
    /// from the outer callee returns from the outer call.
    unsafe extern "C" fn inner(arg: *mut c_void) {
        // SAFETY: the point of the two running calls; the inner one recorded it last.
        unsafe { resume(arg as *const ResumePoint) };
    }

    unsafe extern "C" fn outer(arg: *mut c_void) {
        let point = arg as *mut ResumePoint;
        // SAFETY: as in the test: a frame-less chain of these functions.
        let resumed = unsafe { call_resumable(point, inner, arg) };
        INNER_RESUMED.set(resumed);
        // SAFETY: the outer call recorded `point` and is still running.
        unsafe { resume(point) };
    }

    thread_local! {
        static INNER_RESUMED: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn nested_calls_sharing_a_point_each_resume_to_their_own() {
        let point = ResumePoint::new();
        let pp = &point as *const ResumePoint as *mut ResumePoint;
        INNER_RESUMED.set(false);
        // SAFETY: `point` lives for the call; `outer` and `inner` own nothing.
        let resumed = unsafe { call_resumable(pp, outer, pp.cast()) };
        assert!(resumed);
        assert!(INNER_RESUMED.get());
        // SAFETY: no call is running with this point.
        assert_eq!(unsafe { *point.sp.get() }, 0);
    }
}
