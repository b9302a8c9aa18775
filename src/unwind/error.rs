//! Why a walk stopped early.
//!
//! Every check the walker makes has its own variant, so a test (or a bug report) says
//! exactly which invariant of the frame chain or the activation list broke. A walk that
//! returns an error has yielded only frames that passed every check before it.

/// A failed check during a stack walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A PC (a trap PC or a return address) is not inside any registered wasm
    /// function.
    #[error("pc {pc:#x} is not inside registered wasm code")]
    PcNotInWasmCode {
        /// The offending PC.
        pc: usize,
    },
    /// A frame pointer (in the chain, a start register, `entry_fp` or `exit_fp`) is 0.
    #[error("null frame pointer")]
    NullFramePointer,
    /// A frame pointer is not a multiple of `arch::FP_ALIGN`.
    #[error("frame pointer {fp:#x} is not 16-byte aligned")]
    MisalignedFramePointer {
        /// The offending frame pointer.
        fp: usize,
    },
    /// The caller's FP read from a frame is lower than that frame's FP (but not below
    /// the activation's range): the chain points back towards newer frames.
    #[error("frame pointer moved backwards from {fp:#x} to {next_fp:#x}")]
    FramePointerMovedBackwards {
        /// FP of the frame whose saved FP was read.
        fp: usize,
        /// The saved FP read from it.
        next_fp: usize,
    },
    /// The caller's FP read from a frame equals that frame's FP: a one-frame loop.
    #[error("frame pointer {fp:#x} points to itself")]
    FramePointerDidNotMove {
        /// The frame pointer that points to itself.
        fp: usize,
    },
    /// A frame pointer lies outside the stack range of its activation, `lo..=hi`.
    ///
    /// For a caller's FP read from the chain, `lo` is where the walk of this activation
    /// started (the start registers' FP, or the recorded `exit_fp`) and `hi` is the
    /// activation's `entry_fp`. For the start itself (the start FP, or `exit_fp`), the
    /// range is strictly between the next newer activation's `entry_fp` (or 0) and
    /// this activation's `entry_fp`.
    #[error("frame pointer {fp:#x} is outside its activation's range {lo:#x}..={hi:#x}")]
    FramePointerOutOfRange {
        /// The offending frame pointer.
        fp: usize,
        /// Lowest allowed value.
        lo: usize,
        /// Highest allowed value.
        hi: usize,
    },
    /// The start registers (or a recorded exit) have an SP above their FP; a frame's SP
    /// is never above its FP.
    #[error("start sp {sp:#x} is above start fp {fp:#x}")]
    StackPointerAboveFramePointer {
        /// The start SP.
        sp: usize,
        /// The start FP.
        fp: usize,
    },
    /// A start SP or a recorded `exit_sp` lies below its activation's range: at or
    /// below the next newer activation's `entry_fp` (`lo` is one above it, or 1).
    #[error("stack pointer {sp:#x} is outside its activation's range {lo:#x}..={hi:#x}")]
    StackPointerOutOfRange {
        /// The offending stack pointer.
        sp: usize,
        /// Lowest allowed value.
        lo: usize,
        /// Highest allowed value.
        hi: usize,
    },
    /// An activation's recorded exit is stale: the return address the exit's call
    /// left on the stack (`arch::EXIT_CHECK_BELOW_SP` below `exit_sp`) is not its
    /// `exit_pc`. The exit was not cleared when control went back to wasm, and the
    /// frames it describes have changed since.
    #[error(
        "activation {activation_index} has a stale exit: exit_pc {exit_pc:#x}, but the \
         stack holds {found:#x} there"
    )]
    StaleExit {
        /// Position of the activation in the list (newest = 0).
        activation_index: usize,
        /// The recorded `exit_pc`.
        exit_pc: usize,
        /// The word found where the exit's call left its return address.
        found: usize,
    },
    /// A stack map's span (its frame's FP minus its SP at the call) is not the size of
    /// the frame it was looked up for: the map belongs to other code (e.g. the wrong
    /// module's section was asked), so its slots would name the wrong words.
    #[error("the stack map for pc {pc:#x} spans {span} bytes, but its frame spans {frame_span}")]
    StackMapSpanMismatch {
        /// The frame's PC.
        pc: usize,
        /// The map's span.
        span: usize,
        /// `fp - sp` of the frame.
        frame_span: usize,
    },
    /// The stack reader refused to read the word at `addr`.
    #[error("cannot read the stack word at {addr:#x}")]
    UnreadableStack {
        /// Address of the word.
        addr: usize,
    },
    /// `base + offset` overflowed while computing a stack address.
    #[error("stack address {base:#x} + {offset} overflows")]
    AddressOverflow {
        /// The frame pointer the offset was added to.
        base: usize,
        /// The offset in bytes.
        offset: usize,
    },
    /// An activation that the walk must start from its recorded exit has `exit_sp == 0`.
    #[error("activation {activation_index} has no recorded exit")]
    NoExitRecorded {
        /// Position of the activation in the list (newest = 0).
        activation_index: usize,
    },
    /// Going from newer to older activations, `entry_fp` did not strictly increase.
    /// This also ends walks over a cyclic list.
    #[error(
        "activation {activation_index} has entry_fp {entry_fp:#x}, not above the newer \
         activation's {newer_entry_fp:#x}"
    )]
    ActivationsOutOfOrder {
        /// Position of the offending activation in the list (newest = 0).
        activation_index: usize,
        /// `entry_fp` of the next newer activation.
        newer_entry_fp: usize,
        /// `entry_fp` of the offending activation.
        entry_fp: usize,
    },
}
