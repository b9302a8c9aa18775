//! A call that can be resumed from below: the runtime-neutral resume-after-trap
//! primitive (`trap::{call_resumable, resume}` wrap it).
//!
//! `framewalk_call_resumable(point, f, arg)` saves the System V callee-saved registers
//! and RBP in its own frame (with a frame pointer, so a frame-pointer walk through
//! `f`'s frames reaches it), pushes the point's previous content, records the
//! 16-byte-aligned stack pointer in the point and calls `f(arg)`.
//! `framewalk_resume_point(point)` loads that stack pointer back and jumps to the
//! shared epilogue: every frame below is abandoned (nothing unwound, nothing dropped),
//! the point gets its previous content back, the callee-saved registers are restored
//! and `framewalk_call_resumable` returns 1 (0 when `f` returned normally).
//!
//! ```text
//!   framewalk_call_resumable's frame   (higher addresses)
//!   | return address into the caller |
//!   | saved rbp                      | <- rbp of framewalk_call_resumable
//!   | rbx r12 r13 r14 r15            |
//!   | previous content of the point  | <- recorded resume SP (16-byte aligned)
//!   | return address into this stub  |
//!   | f's frame ...                  |
//! ```
//!
//! Restoring the point's previous content on both ways out makes nested calls with
//! the same point correct, and leaves a point that no live call recorded holding what
//! it held before (0 for a fresh one), which `trap::resume` refuses.
//!
//! Invariant: the resume path finds the point in `rdi` and keeps it in `rbx` (restored
//! by the epilogue from the frame) only until it has written the point back.

core::arch::global_asm!(
    ".pushsection .text.framewalk_call_resumable,\"ax\",@progbits",
    ".globl framewalk_call_resumable",
    ".type framewalk_call_resumable,@function",
    ".p2align 4",
    "framewalk_call_resumable:",
    // rdi = *mut point, rsi = f, rdx = arg. On entry rsp = 8 (mod 16).
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rbx, rdi",
    // The point's previous content; rsp is now 16-byte aligned.
    "push qword ptr [rdi]",
    "mov [rdi], rsp",
    "mov rdi, rdx",
    "call rsi",
    "xor eax, eax",
    "2:",
    // rbx = the point (kept across the call, or set by the resume path).
    "pop rcx",
    "mov [rbx], rcx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size framewalk_call_resumable, . - framewalk_call_resumable",
    ".globl framewalk_resume_point",
    ".type framewalk_resume_point,@function",
    ".p2align 4",
    "framewalk_resume_point:",
    // rdi = *const point
    "mov rbx, rdi",
    "mov rsp, [rdi]",
    "mov eax, 1",
    "jmp 2b",
    ".size framewalk_resume_point, . - framewalk_resume_point",
    ".popsection",
);

unsafe extern "C" {
    /// Calls `f(arg)` after recording its resume stack pointer in `*point` (one word).
    /// Returns 0 when `f` returns, 1 when [`framewalk_resume_point`] was called with
    /// `point`; either way `*point` then holds what it held before the call.
    pub fn framewalk_call_resumable(
        point: *mut usize,
        f: unsafe extern "C" fn(*mut core::ffi::c_void),
        arg: *mut core::ffi::c_void,
    ) -> u32;

    /// Returns from the `framewalk_call_resumable` that recorded `point` (still on
    /// this thread's stack), abandoning every frame below it.
    pub fn framewalk_resume_point(point: *const usize) -> !;
}
