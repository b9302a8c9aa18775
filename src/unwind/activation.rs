//! Activation records: one per host-to-wasm call, linked newest first.
//!
//! The entry trampoline of every host-to-wasm call fills in an [`Activation`] on its own
//! frame and makes it the new head of the list; the exit path records `exit_fp`,
//! `exit_sp` and `exit_pc` (the youngest wasm frame's FP, its SP at the call and the
//! return address into it) when wasm calls out to the host. The walker reads this
//! list, never the host frames in between.
//!
//! ```text
//!  head --> +-----------------+      +-----------------+      +-----------------+
//!           | prev         ---+----> | prev         ---+----> | prev = null     |
//!           | entry_fp        |      | entry_fp        |      | entry_fp        |
//!           | exit_fp         |      | exit_fp         |      | exit_fp         |
//!           | exit_sp         |      | exit_sp         |      | exit_sp         |
//!           | exit_pc         |      | exit_pc         |      | exit_pc         |
//!           | owner           |      | owner           |      | owner           |
//!           +-----------------+      +-----------------+      +-----------------+
//!            newest (index 0)                                  oldest
//! ```
//!
//! Invariants (the runtime upholds them; the walker checks what it can):
//! - `Activation` is `#[repr(C)]`: the exit path writes `exit_fp`, `exit_sp` and
//!   `exit_pc`, and the entry path every field, at the offsets pinned by the
//!   `ACTIVATION_*_OFFSET` constants below.
//! - An activation is fully initialised before it becomes the head, and unlinked
//!   before its entry frame is popped, on every path (return, trap, caught panic).
//! - All activations of one list live on one stack, each newer one deeper: going from
//!   newest to oldest, `entry_fp` strictly increases. [`ActivationIter`] checks this
//!   for every activation it passes, so a corrupted (even cyclic) list ends a walk with
//!   [`WalkError::ActivationsOutOfOrder`] instead of looping.
//! - `exit_sp` is non-zero exactly while control is in the host after leaving this
//!   activation's wasm code (and `exit_fp` is then that exit's); the exit path resets
//!   `exit_sp` to 0 before the host returns to wasm. The record holds the exit's PC
//!   itself, so the walk assumes nothing about where a call leaves its return address
//!   (x86-64 pushes it below the caller's SP, aarch64 keeps it in a register), and the
//!   exit needs no frame of its own: the host function can be entered by a jump that
//!   keeps the wasm caller's return address.
//!
//! Reading the list dereferences raw pointers; that happens only in
//! [`ActivationIter::next`], under the contract of [`ActivationList::from_head`].

use core::marker::PhantomData;
use core::mem::offset_of;

use super::error::WalkError;
use super::walker::StartRegs;
use crate::arch;

/// One host-to-wasm call: the bounds of its wasm frames on the stack.
///
/// Written by generated code (the entry trampoline and the exit path), hence
/// `#[repr(C)]` with field offsets pinned by [`ACTIVATION_PREV_OFFSET`],
/// [`ACTIVATION_ENTRY_FP_OFFSET`], [`ACTIVATION_EXIT_FP_OFFSET`],
/// [`ACTIVATION_EXIT_SP_OFFSET`], [`ACTIVATION_EXIT_PC_OFFSET`] and
/// [`ACTIVATION_OWNER_OFFSET`].
#[repr(C)]
#[derive(Debug)]
pub struct Activation {
    /// The next older activation, or null for the oldest.
    pub prev: *const Activation,
    /// FP of the host-side entry trampoline frame. The oldest wasm frame of this
    /// activation saved this value at its `[FP]`; the walk of this activation stops
    /// when the chain reaches it.
    pub entry_fp: usize,
    /// While an exit is recorded (`exit_sp != 0`): the FP of the youngest wasm frame,
    /// the one that called out to the host. Its value otherwise means nothing.
    pub exit_fp: usize,
    /// While control is in the host after this activation's wasm code called out: the
    /// youngest wasm frame's SP at that call (on x86-64, just above the return address
    /// the call pushed). 0 while wasm code of this activation runs, or when nothing was
    /// recorded: `exit_sp != 0` is what says an exit is recorded.
    ///
    /// A walk starts this activation at `fp = exit_fp`, `pc = exit_pc`, `sp = exit_sp`.
    pub exit_sp: usize,
    /// While an exit is recorded: the return address into the youngest wasm frame (the
    /// instruction after its call out), which is that frame's PC. Its value otherwise
    /// means nothing.
    pub exit_pc: usize,
    /// Opaque id of the store that owns this activation; walks can be limited to one
    /// owner with [`ActivationList::only_owner`].
    pub owner: usize,
}

/// Byte offset of [`Activation::prev`].
pub const ACTIVATION_PREV_OFFSET: usize = 0;
/// Byte offset of [`Activation::entry_fp`].
pub const ACTIVATION_ENTRY_FP_OFFSET: usize = 8;
/// Byte offset of [`Activation::exit_fp`].
pub const ACTIVATION_EXIT_FP_OFFSET: usize = 16;
/// Byte offset of [`Activation::exit_sp`].
pub const ACTIVATION_EXIT_SP_OFFSET: usize = 24;
/// Byte offset of [`Activation::exit_pc`].
pub const ACTIVATION_EXIT_PC_OFFSET: usize = 32;
/// Byte offset of [`Activation::owner`].
pub const ACTIVATION_OWNER_OFFSET: usize = 40;
/// Size in bytes of an [`Activation`] (and its alignment is that of a pointer).
pub const ACTIVATION_SIZE: usize = 48;

// Generated code uses the constants; the build fails if the struct drifts from them.
const _: () = {
    assert!(offset_of!(Activation, prev) == ACTIVATION_PREV_OFFSET);
    assert!(offset_of!(Activation, entry_fp) == ACTIVATION_ENTRY_FP_OFFSET);
    assert!(offset_of!(Activation, exit_fp) == ACTIVATION_EXIT_FP_OFFSET);
    assert!(offset_of!(Activation, exit_sp) == ACTIVATION_EXIT_SP_OFFSET);
    assert!(offset_of!(Activation, exit_pc) == ACTIVATION_EXIT_PC_OFFSET);
    assert!(offset_of!(Activation, owner) == ACTIVATION_OWNER_OFFSET);
    assert!(core::mem::size_of::<Activation>() == ACTIVATION_SIZE);
};

/// A new owner id, unique in the process: the value every runtime sharing a thread's
/// stack (and the reference headers of `gc`) should use for [`Activation::owner`], so
/// that no two runtimes, or two stores of one runtime, ever share one. Ids start at 1
/// and are never reused; framewalk's own `Store` takes its id here too.
pub fn new_owner_id() -> usize {
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

impl Activation {
    /// An unlinked activation of `owner` whose entry trampoline frame has FP `entry_fp`,
    /// with no exit recorded.
    pub const fn new(entry_fp: usize, owner: usize) -> Self {
        Activation {
            prev: core::ptr::null(),
            entry_fp,
            exit_fp: 0,
            exit_sp: 0,
            exit_pc: 0,
            owner,
        }
    }
}

/// A safe view of an activation list, newest first, optionally limited to one owner.
///
/// Copying the view copies the head pointer only. The view is neither `Send` nor
/// `Sync`: a walk runs on the thread whose stack it reads.
#[derive(Clone, Copy, Debug)]
pub struct ActivationList<'a> {
    head: *const Activation,
    owner: Option<usize>,
    _activations: PhantomData<&'a Activation>,
}

impl<'a> ActivationList<'a> {
    /// A list with no activations: every walk over it yields no frames.
    pub const fn empty() -> Self {
        ActivationList {
            head: core::ptr::null(),
            owner: None,
            _activations: PhantomData,
        }
    }

    /// Views the list whose newest activation is `head` (null for an empty list).
    ///
    /// # Safety
    ///
    /// For the whole lifetime `'a`, every activation reachable from `head` through
    /// `prev` pointers (until a null `prev`) must be a valid, aligned, initialised
    /// [`Activation`] that nothing writes to while a walk over this view reads it.
    /// (On one thread this holds when the list is not modified between creating the
    /// view and finishing the walk: generated code cannot run in the meantime.)
    pub unsafe fn from_head(head: *const Activation) -> Self {
        ActivationList {
            head,
            owner: None,
            _activations: PhantomData,
        }
    }

    /// The same list, but walks visit only the activations whose `owner` equals
    /// `owner`. The others are still read (only their record, never their frames) so
    /// that ordering checks cover the whole list.
    pub fn only_owner(self, owner: usize) -> Self {
        ActivationList {
            owner: Some(owner),
            ..self
        }
    }

    /// The owner filter set by [`ActivationList::only_owner`], if any.
    pub fn owner_filter(&self) -> Option<usize> {
        self.owner
    }

    /// The stack range `[lo, hi)` that a walk of this list from its recorded exits reads,
    /// and every slot a collection reads: [`stack_range`](Self::stack_range) with no
    /// start registers. `None` when none of the activations that pass the owner filter
    /// has an exit recorded (then such a walk reads nothing). A runtime that is called
    /// from wasm uses it to build the [`LiveStackReader`](super::LiveStackReader) of a
    /// walk or a collection.
    pub fn recorded_exit_range(&self) -> Option<(usize, usize)> {
        self.stack_range(None)
    }

    /// The stack range `[lo, hi)` that a walk of this list reads when it starts the
    /// first activation it visits from `start` (a trap's registers) or, without them,
    /// from its recorded exit: `lo` is the lowest start (the start registers' SP, or a
    /// recorded `exit_sp` less [`arch::EXIT_CHECK_BELOW_SP`], where the walk checks the
    /// return address the exit's call left on architectures that leave one) and `hi`
    /// the highest `entry_fp` among the activations that pass the owner filter. Every
    /// stack-map slot of the frames walked lies in it too. `None` when no activation
    /// passes the filter or none has a start (then the walk reads nothing). Stops at
    /// the first out-of-order activation, as a walk would.
    pub fn stack_range(&self, start: Option<StartRegs>) -> Option<(usize, usize)> {
        let mut start = start;
        let mut lo = usize::MAX;
        let mut hi = 0;
        for activation in self.iter().map_while(Result::ok) {
            if let Some(regs) = start.take() {
                lo = lo.min(regs.sp.min(regs.fp));
            } else if activation.exit_sp != 0 {
                lo = lo.min(activation.exit_sp.saturating_sub(arch::EXIT_CHECK_BELOW_SP));
            }
            hi = hi.max(activation.entry_fp);
        }
        (lo < hi).then_some((lo, hi))
    }

    /// Iterates over the activations that pass the owner filter, newest first,
    /// checking that `entry_fp` strictly increases along the whole list.
    pub fn iter(&self) -> ActivationIter<'a> {
        ActivationIter {
            next: self.head,
            owner: self.owner,
            index: 0,
            newer_entry_fp: None,
            _activations: PhantomData,
        }
    }
}

/// A snapshot of one activation as a walk sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivationInfo {
    /// Position in the whole list, newest = 0, counting activations of every owner
    /// (also those an owner filter skips).
    pub index: usize,
    /// [`Activation::entry_fp`].
    pub entry_fp: usize,
    /// [`Activation::exit_fp`].
    pub exit_fp: usize,
    /// [`Activation::exit_sp`].
    pub exit_sp: usize,
    /// [`Activation::exit_pc`].
    pub exit_pc: usize,
    /// [`Activation::owner`].
    pub owner: usize,
    /// `entry_fp` of the next newer activation in the list (of any owner), or `None`
    /// for the newest. Every frame of this activation lies strictly above it.
    pub newer_entry_fp: Option<usize>,
}

/// Iterator over an [`ActivationList`]; see [`ActivationList::iter`].
///
/// Yields `Err(WalkError::ActivationsOutOfOrder { .. })` once and then ends if the
/// list's `entry_fp`s do not strictly increase, so it always terminates.
#[derive(Debug)]
pub struct ActivationIter<'a> {
    next: *const Activation,
    owner: Option<usize>,
    index: usize,
    newer_entry_fp: Option<usize>,
    _activations: PhantomData<&'a Activation>,
}

impl Iterator for ActivationIter<'_> {
    type Item = Result<ActivationInfo, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next.is_null() {
                return None;
            }
            // SAFETY: `self.next` is non-null and reachable from the head of the list
            // this iterator came from, so `ActivationList::from_head`'s contract makes it
            // a valid, aligned, initialised `Activation` that nobody writes during the
            // walk. Fields are copied out; no reference outlives this block.
            let (prev, entry_fp, exit_fp, exit_sp, exit_pc, owner) = unsafe {
                let activation = &*self.next;
                (
                    activation.prev,
                    activation.entry_fp,
                    activation.exit_fp,
                    activation.exit_sp,
                    activation.exit_pc,
                    activation.owner,
                )
            };
            let index = self.index;
            let newer_entry_fp = self.newer_entry_fp;
            if let Some(newer) = newer_entry_fp {
                if entry_fp <= newer {
                    self.next = core::ptr::null();
                    return Some(Err(WalkError::ActivationsOutOfOrder {
                        activation_index: index,
                        newer_entry_fp: newer,
                        entry_fp,
                    }));
                }
            }
            self.next = prev;
            self.newer_entry_fp = Some(entry_fp);
            // At most `usize::MAX` activations fit in memory; saturate rather than wrap.
            self.index = self.index.saturating_add(1);
            if self.owner.is_some_and(|wanted| wanted != owner) {
                continue;
            }
            return Some(Ok(ActivationInfo {
                index,
                entry_fp,
                exit_fp,
                exit_sp,
                exit_pc,
                owner,
                newer_entry_fp,
            }));
        }
    }
}

impl core::iter::FusedIterator for ActivationIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_are_pinned() {
        assert_eq!(offset_of!(Activation, prev), 0);
        assert_eq!(offset_of!(Activation, entry_fp), 8);
        assert_eq!(offset_of!(Activation, exit_fp), 16);
        assert_eq!(offset_of!(Activation, exit_sp), 24);
        assert_eq!(offset_of!(Activation, exit_pc), 32);
        assert_eq!(offset_of!(Activation, owner), 40);
        assert_eq!(core::mem::size_of::<Activation>(), 48);
        assert_eq!(core::mem::align_of::<Activation>(), 8);
        assert_eq!(ACTIVATION_PREV_OFFSET, offset_of!(Activation, prev));
        assert_eq!(ACTIVATION_ENTRY_FP_OFFSET, offset_of!(Activation, entry_fp));
        assert_eq!(ACTIVATION_EXIT_FP_OFFSET, offset_of!(Activation, exit_fp));
        assert_eq!(ACTIVATION_EXIT_SP_OFFSET, offset_of!(Activation, exit_sp));
        assert_eq!(ACTIVATION_EXIT_PC_OFFSET, offset_of!(Activation, exit_pc));
        assert_eq!(ACTIVATION_OWNER_OFFSET, offset_of!(Activation, owner));
    }

    #[test]
    fn empty_list_has_no_activations() {
        assert_eq!(ActivationList::empty().iter().count(), 0);
    }

    /// Links `storage[i].prev = &storage[i + 1]` and returns the head.
    fn link(storage: &mut [Activation]) -> *const Activation {
        let base = storage.as_mut_ptr();
        for i in 1..storage.len() {
            // SAFETY: `i - 1` and `i` are in bounds of `storage`.
            unsafe { (*base.add(i - 1)).prev = base.add(i) };
        }
        base
    }

    #[test]
    fn iterates_newest_first_with_indices_and_owner_filter() {
        let mut storage = [
            Activation::new(0x1000, 1),
            Activation::new(0x2000, 2),
            Activation::new(0x3000, 1),
        ];
        storage[1].exit_fp = 0x1800;
        storage[1].exit_sp = 0x17f0;
        let head = link(&mut storage);
        // SAFETY: `storage` is linked, outlives the list, and is not written meanwhile.
        let list = unsafe { ActivationList::from_head(head) };
        let all: Vec<_> = list.iter().map(Result::unwrap).collect();
        assert_eq!(
            all.iter()
                .map(|a| (a.index, a.entry_fp))
                .collect::<Vec<_>>(),
            [(0, 0x1000), (1, 0x2000), (2, 0x3000)]
        );
        assert_eq!((all[1].exit_fp, all[1].exit_sp), (0x1800, 0x17f0));
        assert_eq!(all[0].newer_entry_fp, None);
        assert_eq!(all[2].newer_entry_fp, Some(0x2000));
        let only_one: Vec<_> = list.only_owner(1).iter().map(Result::unwrap).collect();
        assert_eq!(
            only_one
                .iter()
                .map(|a| (a.index, a.owner, a.newer_entry_fp))
                .collect::<Vec<_>>(),
            [(0, 1, None), (2, 1, Some(0x2000))]
        );
        assert_eq!(list.only_owner(3).iter().count(), 0);
    }

    #[test]
    fn cyclic_list_ends_with_an_error() {
        let mut storage = [Activation::new(0x1000, 1), Activation::new(0x2000, 1)];
        let base = storage.as_mut_ptr();
        // SAFETY: both indices are in bounds; this builds a cycle 0 -> 1 -> 0.
        unsafe {
            (*base).prev = base.add(1);
            (*base.add(1)).prev = base;
        }
        // SAFETY: `storage` outlives the list and is not written meanwhile.
        let list = unsafe { ActivationList::from_head(base) };
        // Filtering out every activation must not hide the cycle either.
        for list in [list, list.only_owner(7)] {
            let items: Vec<_> = list.iter().collect();
            assert_eq!(
                items.last(),
                Some(&Err(WalkError::ActivationsOutOfOrder {
                    activation_index: 2,
                    newer_entry_fp: 0x2000,
                    entry_fp: 0x1000,
                }))
            );
        }
    }
}

#[cfg(test)]
mod owner_tests {
    use super::new_owner_id;

    #[test]
    fn owner_ids_are_unique_across_threads() {
        let ids: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..500).map(|_| new_owner_id()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(sorted[0] >= 1, "0 is never an owner id");
    }
}
