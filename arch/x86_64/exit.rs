//! The wasm → host exits: code that records where the youngest wasm frame is before
//! host code runs, so that a walk from the host can start there.
//!
//! An exit is recorded in the newest [`Activation`](crate::unwind::Activation) of the
//! caller's store as three words: `exit_fp`, the calling wasm frame's FP (RBP,
//! untouched by the call), `exit_sp`, its SP at the call (RSP + 8 on entry, just above
//! the return address), and `exit_pc`, that return address (`[RSP]` on entry). Nothing
//! is pushed for the record, so the host code can be entered by a jump and return
//! straight into wasm: one call level, not two.
//!
//! - `framewalk_wasm_to_host` is the `wasm_call` of every host function (runtime only).
//!   With the wasm calling convention's arguments in place (`rdi` = the host function's
//!   context, `rsi` = the calling instance's vmctx, the parameters after them), it
//!   records the exit and jumps to the host function's wasm-convention code, whose
//!   address is in its context. It touches only `r10` and `r11`, which carry no
//!   argument in the System V convention nor in Cranelift's `tail` (wasm's), so every
//!   argument arrives unchanged. The host code clears `exit_sp` before it returns to
//!   wasm. Reached by a tail call (`return_call` to a host import), the caller's frame
//!   is already gone: RBP and `[RSP]` are its caller's, and so is the exit recorded.
//! - `framewalk_call_with_exit_frame(vmctx, target)` calls `target(vmctx, exit_fp,
//!   exit_sp, exit_pc)` for a libcall that may walk (a collection requested by wasm
//!   code). It keeps a frame of its own (it returns to wasm itself) and passes its
//!   caller's FP, SP and return address, read from that frame.
//!
//! Both are framewalk-runtime ABI (the store and host-context layouts), built only
//! with the `runtime` feature; a runtime of its own writes its exits its own way (see
//! `docs/EMBEDDING.md`).

/// Offset, in a host function's context, of the address `framewalk_wasm_to_host`
/// jumps to: code with the wasm calling convention of the function's type.
pub const HOST_CTX_WASM_TARGET_OFFSET: usize = 16;

core::arch::global_asm!(
    ".pushsection .text.framewalk_wasm_to_host,\"ax\",@progbits",
    ".globl framewalk_wasm_to_host",
    ".type framewalk_wasm_to_host,@function",
    // A cache line of its own: placed across a 64-byte boundary (as a 16-byte
    // alignment allows), every wasm -> host call measured 0.6 ns slower.
    ".p2align 6",
    "framewalk_wasm_to_host:",
    // rdi = host context, rsi = caller vmctx; the activation the caller runs in is
    // [[rsi + store] + head].
    "mov r11, [rsi + {store}]",
    "mov r11, [r11 + {head}]",
    "mov [r11 + {exit_fp}], rbp",
    "mov r10, [rsp]",
    "mov [r11 + {exit_pc}], r10",
    "lea r10, [rsp + 8]",
    "mov [r11 + {exit_sp}], r10",
    "jmp qword ptr [rdi + {target}]",
    ".size framewalk_wasm_to_host, . - framewalk_wasm_to_host",
    ".globl framewalk_wasm_to_host_end",
    "framewalk_wasm_to_host_end:",
    ".popsection",
    store = const crate::runtime::vmcontext::VMOffsets::STORE,
    head = const crate::runtime::vmcontext::VMStoreContext::ACTIVATION_HEAD_OFFSET,
    exit_fp = const crate::unwind::ACTIVATION_EXIT_FP_OFFSET,
    exit_sp = const crate::unwind::ACTIVATION_EXIT_SP_OFFSET,
    exit_pc = const crate::unwind::ACTIVATION_EXIT_PC_OFFSET,
    target = const HOST_CTX_WASM_TARGET_OFFSET,
);

// Stack alignment: the call into the stub leaves RSP = 8 (mod 16); `push rbp` makes it
// 0, as `call` requires.
core::arch::global_asm!(
    ".pushsection .text.framewalk_call_with_exit_frame,\"ax\",@progbits",
    ".globl framewalk_call_with_exit_frame",
    ".type framewalk_call_with_exit_frame,@function",
    ".p2align 4",
    "framewalk_call_with_exit_frame:",
    // rdi = vmctx, rsi = target
    "push rbp",
    "mov rbp, rsp",
    "mov rax, rsi",
    "mov rsi, [rbp]",
    "lea rdx, [rbp + 16]",
    "mov rcx, [rbp + 8]",
    "call rax",
    "pop rbp",
    "ret",
    ".size framewalk_call_with_exit_frame, . - framewalk_call_with_exit_frame",
    ".globl framewalk_call_with_exit_frame_end",
    "framewalk_call_with_exit_frame_end:",
    ".popsection",
);

unsafe extern "C" {
    /// Not a function: the address one past `framewalk_wasm_to_host`.
    #[cfg(feature = "profile")]
    pub fn framewalk_wasm_to_host_end();

    /// Not a function: the address one past `framewalk_call_with_exit_frame`.
    #[cfg(feature = "profile")]
    pub fn framewalk_call_with_exit_frame_end();

    /// The wasm-convention entry of every host function (see the module doc). Only
    /// generated code calls it, through a `VMFuncRef`; never call it from Rust.
    pub fn framewalk_wasm_to_host();

    /// Calls `target(vmctx, exit_fp, exit_sp, exit_pc)` with the FP, the SP at the call
    /// and the return address of this stub's caller: for a call from wasm code, the
    /// exit a walk can start from (see the module doc). Only generated code calls it.
    pub fn framewalk_call_with_exit_frame(vmctx: *mut u8, target: usize);
}
