//! Where the saved frame pointer and the return address sit in an x86-64 frame.
//!
//! Every Cranelift function compiled with `preserve_frame_pointers = true`, and every
//! framewalk trampoline, begins with
//!
//! ```text
//! push rbp          ; save the caller's frame pointer
//! mov  rbp, rsp     ; FP := address of that saved word
//! sub  rsp, N       ; callee-saves, stack slots, outgoing arguments
//! ```
//!
//! so a frame stopped at a call (or at a trap) looks like this, high addresses on top:
//!
//! ```text
//!              +---------------------------+
//!  FP + 16 --> | caller's frame ...        |  = the caller's SP at its `call` instruction
//!              +---------------------------+
//!  FP + 8  --> | return address            |  pushed by the caller's `call`: a PC in the caller
//!  FP + 0  --> | caller's FP               |  pushed by `push rbp`; FP (rbp) points here
//!              +---------------------------+
//!  FP - 8  --> | callee-saved registers     |
//!              | stack slots (spills, refs) |
//!              | outgoing arguments         |
//!  SP      --> +---------------------------+  (SP at a call in this frame)
//! ```
//!
//! Facts (all offsets in bytes, relative to a frame's FP):
//! - the caller's FP is the word at `FP + SAVED_FP_OFFSET`;
//! - the return address into the caller is the word at `FP + RETURN_ADDR_OFFSET`;
//! - the caller's SP at its call site is `FP + CALLER_SP_OFFSET`;
//! - FP is a multiple of `FP_ALIGN`: the System V ABI keeps SP 16-byte aligned at
//!   every `call`, the call pushes 8 bytes and `push rbp` another 8;
//! - the stack grows down, so a caller's FP is strictly greater than its callee's.

/// Size in bytes of one stack word (a saved FP, a return address).
pub const WORD_SIZE: usize = 8;

/// Offset from a frame's FP of the word that holds the caller's FP (`[FP]`).
pub const SAVED_FP_OFFSET: usize = 0;

/// Offset from a frame's FP of the word that holds the return address into the caller
/// (`[FP + 8]`).
pub const RETURN_ADDR_OFFSET: usize = 8;

/// Offset from a frame's FP to the caller's SP at its call instruction (`FP + 16`):
/// just above the return address.
pub const CALLER_SP_OFFSET: usize = 16;

/// Every frame pointer is a multiple of this many bytes.
pub const FP_ALIGN: usize = 16;

/// The stack grows towards lower addresses: older frames have higher FPs.
pub const STACK_GROWS_DOWN: bool = true;

/// How far below a recorded exit's SP the walk finds a copy of the exit's PC to check
/// the record against, or 0 where no such copy exists. On x86-64 the exit's `call`
/// pushed the return address just below the caller's SP (`[exit_sp - 8]`), and it is
/// there for as long as the host code it called runs; a record whose `exit_pc`
/// differs from that word is stale (left over from an earlier exit). An architecture
/// whose calls leave the return address in a register (aarch64's `bl`) sets 0 and
/// trusts the record.
pub const EXIT_CHECK_BELOW_SP: usize = WORD_SIZE;

// The walker reads these words as `usize`.
const _: () = assert!(WORD_SIZE == core::mem::size_of::<usize>());
const _: () = assert!(RETURN_ADDR_OFFSET == SAVED_FP_OFFSET + WORD_SIZE);
const _: () = assert!(CALLER_SP_OFFSET == RETURN_ADDR_OFFSET + WORD_SIZE);
const _: () = assert!(FP_ALIGN.is_power_of_two() && FP_ALIGN >= 2 * WORD_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the frame facts that the walker and the trampolines rely on.
    #[test]
    fn frame_layout_is_push_rbp_mov_rbp_rsp() {
        assert_eq!(WORD_SIZE, 8);
        assert_eq!(SAVED_FP_OFFSET, 0);
        assert_eq!(RETURN_ADDR_OFFSET, 8);
        assert_eq!(CALLER_SP_OFFSET, 16);
        assert_eq!(FP_ALIGN, 16);
        assert_eq!(EXIT_CHECK_BELOW_SP, 8);
        const { assert!(STACK_GROWS_DOWN) };
    }
}
