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
    ".globl framewalk_enter",
    ".type framewalk_enter,@function",
    ".p2align 4",
    "framewalk_enter:",
    // rdi = *mut EntryRegs, rsi = entry point, rdx = callee vmctx, rcx = caller vmctx,
    // r8 = values, r9 = len
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rdi + 8], rsp",
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
    ".popsection",
);

unsafe extern "C" {
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

    /// Resumes at the return of the `framewalk_enter` that recorded `regs`, making it
    /// return [`ENTRY_TRAPPED`].
    pub fn framewalk_resume(regs: *const EntryRegs) -> !;
}

const _: () = {
    assert!(core::mem::offset_of!(EntryRegs, entry_fp_out) == 0);
    assert!(core::mem::offset_of!(EntryRegs, resume_sp) == 8);
};
