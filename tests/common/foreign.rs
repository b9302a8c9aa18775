//! Host code that has no frame pointer and no unwind info and uses `rbp` as a general
//! register, standing in for C built with `-fomit-frame-pointer
//! -fno-asynchronous-unwind-tables` or another JIT (the case of Wasmtime PR #1832).
//!
//! [`through_foreign_frame`] runs a Rust closure *below* such a frame: the assembly
//! saves `rbp`, loads [`POISON`] into it, calls back into Rust, restores `rbp`. The
//! callback entry keeps a frame pointer (`push rbp; mov rbp, rsp`) and records the word
//! at `[rbp]`, which is what a native frame-pointer walk from the callback would follow
//! next. Both recorded words equal the poison — the proof that the native chain is
//! broken there — and are returned for the test to assert.

use std::ffi::c_void;

/// The value the foreign frame keeps in `rbp` while it calls back.
pub const POISON: u64 = 0x0bad_f00d_dead_beef;

#[repr(C)]
struct Call<'a> {
    /// Written by the foreign code: `rbp` at its call of the callback.
    rbp_at_call: u64,
    /// Written by the callback entry: the saved `rbp` in its frame.
    callback_saved_rbp: u64,
    closure: &'a mut dyn FnMut(),
}

core::arch::global_asm!(
    ".pushsection .text.framewalk_common_foreign,\"ax\",@progbits",
    ".globl framewalk_common_foreign",
    ".type framewalk_common_foreign,@function",
    ".p2align 4",
    "framewalk_common_foreign:",
    "push rbp",
    "movabs rbp, {poison}",
    "mov qword ptr [rsi], rbp",
    "mov rax, rdi",
    "mov rdi, rsi",
    "call rax",
    "pop rbp",
    "ret",
    ".size framewalk_common_foreign, . - framewalk_common_foreign",
    ".globl framewalk_common_foreign_callback",
    ".type framewalk_common_foreign_callback,@function",
    ".p2align 4",
    "framewalk_common_foreign_callback:",
    "push rbp",
    "mov rbp, rsp",
    "mov rax, qword ptr [rbp]",
    "mov qword ptr [rdi + 8], rax",
    "call {body}",
    "pop rbp",
    "ret",
    ".size framewalk_common_foreign_callback, . - framewalk_common_foreign_callback",
    ".popsection",
    poison = const POISON,
    body = sym callback_body,
);

unsafe extern "C" {
    fn framewalk_common_foreign(cb: unsafe extern "C" fn(*mut c_void), arg: *mut c_void);
    fn framewalk_common_foreign_callback(arg: *mut c_void);
}

/// Runs the closure; a panic cannot cross the foreign frame, so it aborts.
///
/// # Safety
/// `arg` points to a live `Call`.
unsafe extern "C" fn callback_body(arg: *mut c_void) {
    // SAFETY: per the contract.
    let call = unsafe { &mut *(arg as *mut Call<'_>) };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (call.closure)())).is_err() {
        std::process::abort();
    }
}

/// Calls `f` below a foreign, rbp-clobbering frame. Returns `(rbp at the foreign
/// call, the saved rbp the callback found)`; both are [`POISON`] if `rbp` really was
/// clobbered.
pub fn through_foreign_frame(f: &mut dyn FnMut()) -> (u64, u64) {
    let mut call = Call {
        rbp_at_call: 0,
        callback_saved_rbp: 0,
        closure: f,
    };
    // SAFETY: `call` lives across the call; the callback only uses it.
    unsafe {
        framewalk_common_foreign(
            framewalk_common_foreign_callback,
            &mut call as *mut Call<'_> as *mut c_void,
        )
    };
    (call.rbp_at_call, call.callback_saved_rbp)
}
