//! `ExternRef`: a reference-counted handle to a host value that wasm can hold.
//!
//! The value lives behind a heap header, [`VMExternData`]; wasm sees the header's
//! address as a 64-bit `externref` (0 is null). Generated code reads and writes the
//! header's first three words, so the layout is `#[repr(C)]` with pinned offsets:
//!
//! ```text
//!  +0   count   explicit owners: host handles, table slots, globals, element segments
//!  +8   next    link in the store's over-approximated stack-root set (see `set.rs`)
//!  +16  flags   IN_SET (bit 0): in that set; MARK (bit 1): found on the stack by a GC
//!  +24  owner   id of the one store whose wasm may hold it
//!  +32  value   Box<dyn Any>
//! ```
//!
//! Invariant: a header is freed exactly when `count == 0` and it is not `IN_SET`; both
//! conditions are checked wherever either one changes (`release`, the GC's sweep).
//!
//! Invariant: a reference is used by the wasm of one store only, its `owner` (the
//! runtime refuses to pass it to another store's wasm, tables or globals). The root set
//! link is a single field, so a header can be in one store's set at a time; sharing it
//! between stores would let one store's collection free a reference the other store's
//! frames still hold.
//!
//! Threads: counts are plain (non-atomic) words because generated code updates them
//! inline without atomic instructions, so an `ExternRef` is neither `Send` nor `Sync`;
//! it stays on the thread of the store it is used with. The payload need not be `Send`.

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// `flags` bit: the header is linked into its store's stack-root set.
pub const IN_SET: usize = 1;
/// `flags` bit: a collection in progress found the reference on the stack.
pub const MARK: usize = 2;

/// The heap header behind an `ExternRef`.
#[repr(C)]
pub struct VMExternData {
    pub(crate) count: Cell<usize>,
    pub(crate) next: Cell<*mut VMExternData>,
    pub(crate) flags: Cell<usize>,
    owner: usize,
    value: Box<dyn Any>,
}

impl VMExternData {
    /// Offset of the owner count.
    pub const COUNT_OFFSET: u32 = std::mem::offset_of!(VMExternData, count) as u32;
    /// Offset of the set link.
    pub const NEXT_OFFSET: u32 = std::mem::offset_of!(VMExternData, next) as u32;
    /// Offset of the flags.
    pub const FLAGS_OFFSET: u32 = std::mem::offset_of!(VMExternData, flags) as u32;
}

/// Adds an owner to the header at `raw` (non-null).
///
/// # Safety
/// `raw` must be the address of a live `VMExternData`.
pub unsafe fn retain(raw: usize) {
    // SAFETY: per the contract.
    let h = unsafe { &*(raw as *const VMExternData) };
    h.count.set(h.count.get() + 1);
}

/// Removes an owner from the header at `raw` (non-null), freeing it if that was the
/// last owner and it is not in a root set.
///
/// # Safety
/// `raw` must be the address of a live `VMExternData` with a count the caller owns.
pub unsafe fn release(raw: usize) {
    // SAFETY: per the contract.
    let h = unsafe { &*(raw as *const VMExternData) };
    debug_assert!(h.count.get() > 0, "externref count underflow");
    let c = h.count.get() - 1;
    h.count.set(c);
    if c == 0 && h.flags.get() & IN_SET == 0 {
        // SAFETY: no owner and no root set: nothing can reach the header any more.
        unsafe { free(raw) };
    }
}

/// Frees a header.
///
/// # Safety
/// `raw` must come from `ExternRef::new`, with no owners and not in a set.
pub(crate) unsafe fn free(raw: usize) {
    // SAFETY: per the contract; the header came from `Box::leak`.
    drop(unsafe { Box::from_raw(raw as *mut VMExternData) });
}

/// A counted reference to a host value.
pub struct ExternRef {
    ptr: NonNull<VMExternData>,
    _not_send: PhantomData<*mut ()>,
}

impl ExternRef {
    /// Wraps `value` for use by the store with id `owner` (one owner: the returned
    /// handle). Embedders use `ExternRef::new(&mut store, value)`.
    pub fn with_owner<T: Any>(owner: usize, value: T) -> ExternRef {
        let b = Box::new(VMExternData {
            count: Cell::new(1),
            next: Cell::new(std::ptr::null_mut()),
            flags: Cell::new(0),
            owner,
            value: Box::new(value),
        });
        ExternRef {
            ptr: NonNull::from(Box::leak(b)),
            _not_send: PhantomData,
        }
    }

    fn header(&self) -> &VMExternData {
        // SAFETY: live while we hold a count.
        unsafe { self.ptr.as_ref() }
    }

    /// The payload.
    pub fn data(&self) -> &dyn Any {
        &*self.header().value
    }

    /// The payload, mutably (the runtime's `ExternRef::data_mut` checks when that is
    /// allowed).
    ///
    /// # Safety
    /// No other reference to the payload may exist or be created while the result
    /// lives: this handle must be the only owner, and nothing may make another handle
    /// (from a table, a global or a wasm frame) meanwhile.
    #[cfg(feature = "runtime")]
    pub(crate) unsafe fn payload_mut(&mut self) -> &mut dyn Any {
        // SAFETY: per the contract, the payload is reachable only through this borrow;
        // the header is live while we hold a count. Only the `value` field is borrowed
        // mutably, through the raw pointer.
        unsafe { &mut *(*self.ptr.as_ptr()).value }
    }

    /// The id of the store whose wasm may hold this reference.
    pub fn owner(&self) -> usize {
        self.header().owner
    }

    /// The address wasm sees.
    pub fn as_raw(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// A new owning handle for a non-null address wasm holds.
    ///
    /// # Safety
    /// `raw` must be 0 or the address of a live `VMExternData` (kept alive, for
    /// instance, by a store's root set while wasm holds it).
    pub unsafe fn clone_from_raw(raw: usize) -> Option<ExternRef> {
        let ptr = NonNull::new(raw as *mut VMExternData)?;
        // SAFETY: per the contract.
        unsafe { retain(raw) };
        Some(ExternRef {
            ptr,
            _not_send: PhantomData,
        })
    }

    /// A handle for a non-null address wasm holds, borrowed: it takes no count, and
    /// must not be dropped (hence the `ManuallyDrop`).
    ///
    /// # Safety
    /// `raw` must be 0 or the address of a live `VMExternData` that stays alive for as
    /// long as the handle is used; the handle must not be taken out of its
    /// `ManuallyDrop`.
    #[cfg(feature = "runtime")]
    pub(crate) unsafe fn borrow_raw(raw: usize) -> Option<std::mem::ManuallyDrop<ExternRef>> {
        let ptr = NonNull::new(raw as *mut VMExternData)?;
        Some(std::mem::ManuallyDrop::new(ExternRef {
            ptr,
            _not_send: PhantomData,
        }))
    }

    /// Whether two handles refer to the same value.
    pub fn ptr_eq(a: &ExternRef, b: &ExternRef) -> bool {
        a.ptr == b.ptr
    }

    /// Current number of explicit owners (host handles, table slots, globals).
    pub fn owner_count(&self) -> usize {
        self.header().count.get()
    }
}

impl Clone for ExternRef {
    fn clone(&self) -> Self {
        // SAFETY: live while we hold a count.
        unsafe { retain(self.as_raw()) };
        ExternRef {
            ptr: self.ptr,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ExternRef {
    fn drop(&mut self) {
        // SAFETY: we own one count.
        unsafe { release(self.as_raw()) }
    }
}

impl std::fmt::Debug for ExternRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternRef({:#x})", self.as_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn header_offsets_are_what_generated_code_uses() {
        assert_eq!(VMExternData::COUNT_OFFSET, 0);
        assert_eq!(VMExternData::NEXT_OFFSET, 8);
        assert_eq!(VMExternData::FLAGS_OFFSET, 16);
    }

    #[test]
    fn payload_dropped_exactly_once_when_last_owner_goes() {
        let witness = Rc::new(());
        let r = ExternRef::with_owner(0, witness.clone());
        let r2 = r.clone();
        // SAFETY: `r` keeps the header alive.
        let r3 = unsafe { ExternRef::clone_from_raw(r.as_raw()) }.unwrap();
        assert_eq!(r.owner_count(), 3);
        drop(r);
        drop(r2);
        assert_eq!(Rc::strong_count(&witness), 2);
        assert!(r3.data().downcast_ref::<Rc<()>>().is_some());
        drop(r3);
        assert_eq!(Rc::strong_count(&witness), 1);
    }

    #[test]
    fn a_header_in_a_set_outlives_its_last_owner() {
        let witness = Rc::new(());
        let r = ExternRef::with_owner(0, witness.clone());
        let raw = r.as_raw();
        // SAFETY: live.
        let h = unsafe { &*(raw as *const VMExternData) };
        h.flags.set(IN_SET);
        drop(r);
        assert_eq!(Rc::strong_count(&witness), 2, "in a set: still alive");
        h.flags.set(0);
        // SAFETY: no owner, out of the set.
        unsafe { free(raw) };
        assert_eq!(Rc::strong_count(&witness), 1);
    }
}
