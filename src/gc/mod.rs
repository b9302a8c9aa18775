//! Deferred reference counting for `externref`, after Wasmtime PR #1832, fed by
//! framewalk's own walker and stack-map section.
//!
//! # The scheme
//!
//! - **Explicit counts** ([`VMExternData`]'s `count`) are held by owners that outlive a
//!   wasm frame: host handles ([`ExternRef`]), table slots, globals, element segments.
//!   Generated code changes them only on `table.set`/`global.set`-like operations.
//! - **No counts for wasm frames.** A reference held only by wasm locals and operands
//!   costs nothing while it is used. Instead, every reference that *enters* wasm frames
//!   (an argument from the host, a host function's result, `table.get`, `global.get`)
//!   joins the store's over-approximated set of stack roots ([`VMExternRefSet`]) — in
//!   generated code through an inlined check of one header bit.
//! - **A collection** walks this store's activations with the framewalk walker, looks
//!   every frame's return address up (exactly) in its module's stack-map section, marks
//!   each reference found in a live slot, then sweeps the set: an unmarked reference
//!   leaves the set and is freed if nothing else owns it. The marked ones (the precise
//!   stack roots) become the new over-approximation.
//! - **When in doubt, keep**: if the walk fails, the collection marks nothing as dead.
//!
//! Invariants (checked by `debug_assert!`s naming them):
//! 1. every reference a live wasm frame can reach is owned (count > 0) or in the set;
//! 2. a header is freed only when it has no owner and is not in the set;
//! 3. marks exist only during a collection.
//!
//! `collect` is here; the runtime supplies the frames (its activation list and code
//! registry) and the stack maps (its modules' sections) through [`RootSource`], most
//! simply a [`StackRoots`]. `docs/EMBEDDING.md` describes what a runtime with its own
//! compiler must uphold to use this module; `examples/dropin.rs` does it.

mod externref;
mod roots;
mod set;
mod stats;

pub use externref::{release, retain, ExternRef, VMExternData, IN_SET, MARK};
pub use roots::{visit_stack_roots, visit_stack_roots_shifted, StackRoots};
pub use set::VMExternRefSet;
pub use stats::GcStats;

use crate::unwind::{StackReader, WalkError};

/// Where a collection finds the stack roots.
///
/// # Safety
///
/// A collection frees every reference of the set that this source does not report and
/// nothing else owns, so implementing the trait promises what the collector cannot
/// check:
/// - `visit_root_slots` reports the address of every stack slot through which a live
///   frame of the store can still use a reference of the set: every frame of every
///   activation of the store on this thread, each with the stack map its compiler made
///   for exactly the call it is stopped at (a map that leaves out a live reference
///   frees it while in use);
/// - every reported address can be read through `reader()`, and a non-zero word there
///   is a live header of this store's references (a map that names a slot holding
///   anything else makes the collector write to whatever that word points at).
///
/// [`StackRoots`] upholds it for a runtime that keeps the contract of
/// `docs/EMBEDDING.md`, given what its `unsafe` constructor asks.
pub unsafe trait RootSource {
    /// How slots are read.
    type Reader: StackReader;

    /// Calls `slot(address)` for every live reference slot of every wasm frame of the
    /// store, newest first; the address is where the reference is stored.
    ///
    /// # Errors
    ///
    /// The first [`WalkError`] of the walk; a collection then frees nothing.
    fn visit_root_slots(&self, slot: impl FnMut(usize)) -> Result<(), WalkError>;

    /// Reads a slot found by `visit_root_slots`.
    fn reader(&self) -> &Self::Reader;
}

/// One collection: marks the precise stack roots, sweeps the set, and records stats.
///
/// # Safety
///
/// - `roots` finds every root of this store: the store's activations are all stopped
///   at recorded exits on this thread (no wasm of the store runs during the call), and
///   `roots` upholds the contract of [`RootSource`];
/// - every reference of the set that the host holds without a count (a reference
///   passed to a host function as its last use, one about to be returned to the host)
///   has been given one ([`retain`]) first: otherwise it is unreachable from any frame
///   and is freed;
/// - `set` is this store's set, and no other collection or sweep of it runs meanwhile
///   (a payload's `Drop` may not collect this store).
///
/// # Errors
///
/// The walk error if the walk failed, or [`WalkError::UnreadableStack`] if the reader
/// refused a slot a stack map names; then nothing was freed.
pub unsafe fn collect<R: RootSource>(
    set: &mut VMExternRefSet,
    roots: &R,
    stats: &mut GcStats,
) -> Result<(), WalkError> {
    let start = std::time::Instant::now();
    let mut unreadable = None;
    let reader = roots.reader();
    let walk = roots.visit_root_slots(|addr| {
        let Some(raw) = reader.read_word(addr) else {
            // A slot that cannot be read may hold a live reference: free nothing.
            unreadable.get_or_insert(WalkError::UnreadableStack { addr });
            return;
        };
        if raw != 0 {
            // SAFETY: a slot named by a stack map of a live frame holds a live
            // reference (invariant 1 keeps it alive; `RootSource`'s contract).
            unsafe { set.mark(raw) };
        }
    });
    let walk = walk.and_then(|()| unreadable.map_or(Ok(()), Err));
    // The marked references are the distinct ones found: the sweep keeps exactly
    // those (every marked one is in the set), and an aborted collection unmarks them.
    let (found, freed) = match &walk {
        Ok(()) => {
            // SAFETY: the walk completed, so (by this function's contract) every
            // reference a live frame can use is marked or owned.
            let freed = unsafe { set.sweep() };
            (set.len(), freed)
        }
        Err(_) => (set.unmark_all(), 0),
    };
    stats.record(found, freed, set.len(), start.elapsed());
    walk
}
