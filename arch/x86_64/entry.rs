//! The host → wasm entry and the resume-after-trap path: the one place with assembly.
//!
//! `framewalk_enter` saves the System V callee-saved registers, records in an
//! [`EntryRegs`] the stack pointer to resume at and the frame pointer the callee's
//! entry trampoline is about to set up, then calls the array-convention entry point.
//! `framewalk_resume` abandons every frame below that recorded stack pointer and
//! returns from `framewalk_enter` with [`ENTRY_TRAPPED`], restoring the saved
//! registers. No unwinder, no `setjmp`/`longjmp`: the frames between are Cranelift
//! frames (and the trap handler's own frame), none of which owns anything that needs
//! dropping.
//!
//! ```text
//!   framewalk_enter's frame            (higher addresses)
//!   | return address into Rust      |
//!   | saved rbp                     | <- rbp of framewalk_enter
//!   | rbx r12 r13 r14 r15, padding  |
//!   |                               | <- resume_sp (16-byte aligned)
//!   | return address into enter     |
//!   | saved rbp (trampoline)        | <- *entry_fp_out = resume_sp - 16: the entry
//!   | ...                           |    trampoline's FP, which the oldest wasm
//!                                        frame saves at its [FP]
//! ```
//!
//! `framewalk_enter_direct` builds the same frame (so resuming works the same way) but
//! calls a wasm function itself, with the wasm calling convention and the arguments in
//! registers taken from a [`RegisterArgs`]: typed calls whose arguments all fit skip
//! the entry trampoline. There is then no trampoline frame, and `entry_fp` is
//! `framewalk_enter_direct`'s own FP (`rbp` in the picture), which the wasm function
//! saves at its `[FP]`.
//!
//! Invariant: the callee's first instructions are `push rbp; mov rbp, rsp` (every
//! Cranelift function compiled with `preserve_frame_pointers`), which is what makes
//! `entry_fp` exact.

/// Where `framewalk_enter` records its resume point and the callee's frame pointer.
#[repr(C)]
#[derive(Debug)]
pub struct EntryRegs {
    /// Where to write the FP the entry trampoline will have (the walk of this
    /// activation stops there): the activation's `entry_fp` field.
    pub entry_fp_out: *mut usize,
    /// SP to restore when resuming after a trap (written by `framewalk_enter`).
    pub resume_sp: usize,
}

/// `framewalk_enter` returned because the callee returned, with a failure result.
pub const ENTRY_FAILED: u32 = 0;
/// `framewalk_enter` returned because the callee returned successfully.
pub const ENTRY_OK: u32 = 1;
/// `framewalk_enter` returned through `framewalk_resume` (a trap or a host error).
pub const ENTRY_TRAPPED: u32 = 2;

core::arch::global_asm!(
    ".pushsection .text.framewalk_enter,\"ax\",@progbits",
    // The frame both entries build, and that framewalk_resume returns through: the
    // callee-saved registers, then the resume SP (rdi = *mut EntryRegs) recorded.
    ".macro framewalk_entry_frame",
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rdi + 8], rsp",
    ".endm",
    ".globl framewalk_enter",
    ".type framewalk_enter,@function",
    ".p2align 4",
    "framewalk_enter:",
    // rdi = *mut EntryRegs, rsi = entry point, rdx = callee vmctx, rcx = caller vmctx,
    // r8 = values, r9 = len
    "framewalk_entry_frame",
    "lea rax, [rsp - 16]",
    "mov r10, [rdi]",
    "mov [r10], rax",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "mov rdx, r8",
    "mov rcx, r9",
    "call rax",
    "movzx eax, al",
    "2:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size framewalk_enter, . - framewalk_enter",
    ".globl framewalk_resume",
    ".type framewalk_resume,@function",
    ".p2align 4",
    "framewalk_resume:",
    // rdi = *const EntryRegs
    "mov rsp, [rdi + 8]",
    "mov eax, 2",
    "jmp 2b",
    ".size framewalk_resume, . - framewalk_resume",
    // The same frame as framewalk_enter (so framewalk_resume's jump to the shared
    // epilogue works for both), but the callee is a wasm function itself, called with
    // its own convention: no trampoline frame, so entry_fp is this frame's FP.
    ".globl framewalk_enter_direct",
    ".type framewalk_enter_direct,@function",
    ".p2align 4",
    "framewalk_enter_direct:",
    // rdi = *mut EntryRegs, rsi = wasm function, rdx = callee vmctx, rcx = caller vmctx,
    // r8 = *mut RegisterArgs, r9 = whether any argument is a float
    "framewalk_entry_frame",
    "mov r10, [rdi]",
    "mov [r10], rbp",
    "mov rbx, r8",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "test r9, r9",
    "jz 3f",
    "movsd xmm0, [rbx + 32]",
    "movsd xmm1, [rbx + 40]",
    "movsd xmm2, [rbx + 48]",
    "movsd xmm3, [rbx + 56]",
    "movsd xmm4, [rbx + 64]",
    "movsd xmm5, [rbx + 72]",
    "movsd xmm6, [rbx + 80]",
    "movsd xmm7, [rbx + 88]",
    "3:",
    "mov rdx, [rbx]",
    "mov rcx, [rbx + 8]",
    "mov r8, [rbx + 16]",
    "mov r9, [rbx + 24]",
    "call rax",
    "mov [rbx], rax",
    "movsd [rbx + 32], xmm0",
    "mov eax, 1",
    "jmp 2b",
    ".size framewalk_enter_direct, . - framewalk_enter_direct",
    // One past the last byte of the three stubs above (a sampling profiler tells their
    // instructions apart from host code by address).
    ".globl framewalk_entry_stubs_end",
    "framewalk_entry_stubs_end:",
    ".popsection",
);

/// The arguments of a wasm function called by [`framewalk_enter_direct`], as its
/// calling convention passes them after the two vmctx arguments, and on return its
/// result.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RegisterArgs {
    /// Integer-class arguments (`i32` in the low half, `i64`, references), in order:
    /// `rdx`, `rcx`, `r8`, `r9`. On return, `ints[0]` holds `rax`.
    pub ints: [u64; REGISTER_ARGS_INTS],
    /// `f32`/`f64` arguments (in the low bits), in order: `xmm0`..`xmm7`. On return,
    /// `floats[0]` holds `xmm0`.
    pub floats: [u64; REGISTER_ARGS_FLOATS],
}

/// How many integer-class arguments a [`RegisterArgs`] passes (the System V argument
/// registers left after the two vmctx arguments).
pub const REGISTER_ARGS_INTS: usize = 4;
/// How many float arguments a [`RegisterArgs`] passes.
pub const REGISTER_ARGS_FLOATS: usize = 8;

unsafe extern "C" {
    /// Not a function: the address one past `framewalk_enter`, `framewalk_resume` and
    /// `framewalk_enter_direct`, which the assembler places in this order.
    #[cfg(feature = "profile")]
    pub fn framewalk_entry_stubs_end();

    /// Calls `entry(callee_vmctx, caller_vmctx, values, len)` recording `regs`.
    /// Returns [`ENTRY_OK`] / [`ENTRY_FAILED`] from the callee's boolean result, or
    /// [`ENTRY_TRAPPED`] if `framewalk_resume` was called with the same `regs`.
    pub fn framewalk_enter(
        regs: *mut EntryRegs,
        entry: *const u8,
        callee_vmctx: *mut u8,
        caller_vmctx: *mut u8,
        values: *mut u64,
        len: usize,
    ) -> u32;

    /// Resumes at the return of the `framewalk_enter` (or `framewalk_enter_direct`)
    /// that recorded `regs`, making it return [`ENTRY_TRAPPED`].
    pub fn framewalk_resume(regs: *const EntryRegs) -> !;

    /// Calls the wasm function `wasm_call(callee_vmctx, caller_vmctx, args..)` with
    /// its own calling convention, recording `regs` as `framewalk_enter` does, except
    /// that `entry_fp` is this stub's own FP (the wasm function saves it at its `[FP]`).
    /// The arguments come from `args` (floats only if `floats` is non-zero); the
    /// result is left in `args.ints[0]` (`rax`) and `args.floats[0]` (`xmm0`). Returns
    /// [`ENTRY_OK`], or [`ENTRY_TRAPPED`] through `framewalk_resume`.
    pub fn framewalk_enter_direct(
        regs: *mut EntryRegs,
        wasm_call: *const u8,
        callee_vmctx: *mut u8,
        caller_vmctx: *mut u8,
        args: *mut RegisterArgs,
        floats: usize,
    ) -> u32;
}

const _: () = {
    assert!(core::mem::offset_of!(EntryRegs, entry_fp_out) == 0);
    assert!(core::mem::offset_of!(EntryRegs, resume_sp) == 8);
    // The assembly's offsets.
    assert!(core::mem::offset_of!(RegisterArgs, ints) == 0);
    assert!(core::mem::offset_of!(RegisterArgs, floats) == 32);
    assert!(REGISTER_ARGS_INTS == 4 && REGISTER_ARGS_FLOATS == 8);
};

/// The address ranges of the entry stubs (`framewalk_enter`, `framewalk_resume`,
/// `framewalk_enter_direct`) and the exit stubs (`framewalk_wasm_to_host`,
/// `framewalk_call_with_exit_frame`): code that runs between host and wasm.
#[cfg(feature = "profile")]
pub fn stub_ranges() -> [core::ops::Range<usize>; 3] {
    use super::exit::{
        framewalk_call_with_exit_frame, framewalk_call_with_exit_frame_end, framewalk_wasm_to_host,
        framewalk_wasm_to_host_end,
    };
    let addr = |f: unsafe extern "C" fn()| f as *const () as usize;
    [
        framewalk_enter as *const () as usize..addr(framewalk_entry_stubs_end),
        addr(framewalk_wasm_to_host)..addr(framewalk_wasm_to_host_end),
        framewalk_call_with_exit_frame as *const () as usize
            ..addr(framewalk_call_with_exit_frame_end),
    ]
}
