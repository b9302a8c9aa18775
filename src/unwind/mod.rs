//! The unwinder: walks the wasm frames of every activation, using frame pointers only.
//!
//! # The model
//!
//! Wasm code is compiled by Cranelift with frame pointers, so every wasm frame starts
//! `push rbp; mov rbp, rsp`. For a frame with frame pointer FP (see
//! `arch/x86_64/frame.rs` for the layout and the constants):
//!
//! - the caller's FP is `[FP + arch::SAVED_FP_OFFSET]` (= `[FP]`),
//! - the return address into the caller is `[FP + arch::RETURN_ADDR_OFFSET]` (= `[FP + 8]`),
//! - the caller's SP at its call is `FP + arch::CALLER_SP_OFFSET` (= `FP + 16`).
//!
//! Every host-to-wasm call pushes an [`Activation`] onto an intrusive list (newest
//! first). Its `entry_fp` is the FP of the host-side entry trampoline's frame, so the
//! oldest wasm frame of the activation saved `entry_fp` at its `[FP]`. When wasm calls
//! out to the host, the exit path records the youngest wasm frame in the activation:
//! `exit_fp`, its FP, `exit_sp`, its SP at the call, and `exit_pc`, the return address
//! into it (its PC). The exit needs no frame of its own, so host code can be entered by
//! a jump and return straight to wasm.
//!
//! ```text
//!   higher addresses: older
//!   +--------------------------------+
//!   | host frames (never read)       |
//!   +--------------------------------+
//!   | return address into host       |
//!   | saved FP of host               | <-- entry_fp (activation 1, older)
//!   | entry trampoline locals        |
//!   +--------------------------------+
//!   | return addr into trampoline    |     not read: [fp2] == entry_fp ends the run
//!   | saved FP = entry_fp            | <-- fp2: oldest wasm frame of activation 1
//!   | slots, outgoing args           |     sp2 = fp1 + 16
//!   +--------------------------------+
//!   | return address = pc2           |
//!   | saved FP = fp2                 | <-- fp1 = exit_fp (activation 1): youngest wasm
//!   | slots, outgoing args           |     frame of activation 1
//!   +--------------------------------+ <-- sp1 = exit_sp (activation 1)
//!   | return address = pc1           |     pushed by fp1's call out to the host
//!   +--------------------------------+
//!   | host frames (never read)       |     e.g. a host function that re-entered wasm
//!   +--------------------------------+
//!   | saved FP of host               | <-- entry_fp (activation 0, newest)
//!   | ...                            |
//!   | wasm frames of activation 0    |     walked from its exit, or from a trap's
//!   | ...                            |     StartRegs { pc, fp, sp }
//!   +--------------------------------+
//!   lower addresses: newer
//! ```
//!
//! # The two-phase walk
//!
//! 1. **Activations**, newest first ([`ActivationList`], optionally limited to one
//!    owner store with [`ActivationList::only_owner`]). Only the records are read;
//!    the host frames between activations are never touched, so they need neither
//!    frame pointers nor unwind tables.
//! 2. **A frame-pointer run inside each activation.** It starts at the recorded exit
//!    (`fp = exit_fp`, `pc = exit_pc`, `sp = exit_sp`) or, for the first
//!    activation visited, at explicit [`StartRegs`] (a trap's registers), and follows
//!    `fp = [fp]`, `pc = [fp + 8]`, `sp = previous fp + 16` until the next FP equals
//!    `entry_fp`.
//!
//! [`FrameCursor`] does this step by step (`new`, `frame`, `advance`, `done`);
//! [`visit_frames`] calls a closure on each [`Frame`] until it breaks. Neither
//! allocates, locks or panics, so both can run in a signal handler given a
//! [`StackReader`] and a [`CodeLookup`] that do not either ([`LiveStackReader`] and
//! [`CodeRegistry`] qualify).
//!
//! # Checks
//!
//! Every PC must be inside registered wasm code; every FP must be non-null, a multiple
//! of `arch::FP_ALIGN`, strictly greater than the previous one and inside its
//! activation's range (between where the run started and `entry_fp`); every read must
//! be allowed by the [`StackReader`]; all address arithmetic is checked; an activation
//! walked from its exit must have one recorded; `entry_fp`s strictly increase from
//! newer to older activations, and each run starts strictly above the newer
//! activation's `entry_fp`. Each failure is a [`WalkError`] variant, and the frames
//! yielded before it passed every check.
//!
//! # Termination
//!
//! A walk cannot loop: within an activation each FP is strictly greater than the last
//! and at most `entry_fp`; across activations each run starts above the previous
//! activation's `entry_fp`, and the activation iterator requires `entry_fp` to
//! strictly increase even over activations filtered out by owner (which also ends a
//! cyclic list). So every step of the walk moves strictly up a bounded address range.
//!
//! # What the walk reads
//!
//! Within one activation it reads only words in `[run start, entry_fp)`, where the run
//! start is the start FP or, from a recorded exit, `exit_fp`; and for a recorded exit,
//! one word `arch::EXIT_CHECK_BELOW_SP` below `exit_sp`, where the exit's call left its
//! return address on architectures that push one: a record whose `exit_pc` differs from
//! it is stale ([`WalkError::StaleExit`]). A collection reads stack-map slots in
//! `[sp, fp)` of each frame. A [`LiveStackReader`] over
//! [`ActivationList::stack_range`] therefore suffices.

mod activation;
mod code_map;
mod error;
mod reader;
pub mod registry;
mod walker;

#[cfg(test)]
pub(crate) mod fake_stack;
#[cfg(test)]
mod tests;

pub use activation::{
    new_owner_id, Activation, ActivationInfo, ActivationIter, ActivationList,
    ACTIVATION_ENTRY_FP_OFFSET, ACTIVATION_EXIT_FP_OFFSET, ACTIVATION_EXIT_PC_OFFSET,
    ACTIVATION_EXIT_SP_OFFSET, ACTIVATION_OWNER_OFFSET, ACTIVATION_PREV_OFFSET, ACTIVATION_SIZE,
};
pub use code_map::{CodeMap, FlatCodeMap};
pub use error::WalkError;
pub use reader::{LiveStackReader, StackReader};
pub use registry::{
    reads_in_progress_on_this_thread, CodeRegistry, FunctionRange, ModuleRegistration, ModuleText,
    RegistryError, RegistryView,
};
pub use walker::{visit_frames, CodeLocation, CodeLookup, Frame, FrameCursor, StartRegs};
