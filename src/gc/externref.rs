//! `ExternRef`: a reference-counted handle to a host value that wasm can hold.
//!
//! The value lives in a heap header `VMExternData { count, value }`; wasm sees the
//! header's address as a 64-bit `externref` (0 is null). Counting is atomic, so an
//! `ExternRef` is `Send + Sync` and may cross threads: the payload must be `Send + Sync`
//! too. Until the deferred-reference-counting collector lands, a store keeps every
//! reference that entered its wasm alive until the store is dropped (a leak, never a
//! use-after-free).

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The heap header behind an `ExternRef`.
#[repr(C)]
pub struct VMExternData {
    count: AtomicUsize,
    value: Box<dyn Any + Send + Sync>,
}

/// A counted reference to a host value.
pub struct ExternRef {
    ptr: NonNull<VMExternData>,
}

// SAFETY: the payload is `Send + Sync` and the count is atomic.
unsafe impl Send for ExternRef {}
// SAFETY: as above; `data()` hands out only shared references.
unsafe impl Sync for ExternRef {}

impl ExternRef {
    /// Wraps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> ExternRef {
        let b = Box::new(VMExternData {
            count: AtomicUsize::new(1),
            value: Box::new(value),
        });
        ExternRef {
            ptr: NonNull::from(Box::leak(b)),
        }
    }

    /// The payload.
    pub fn data(&self) -> &(dyn Any + Send + Sync) {
        // SAFETY: `ptr` is live while we hold a count.
        unsafe { &*self.ptr.as_ref().value }
    }

    /// The address wasm sees.
    pub fn as_raw(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// A new counted handle for a non-null address wasm holds.
    ///
    /// # Safety
    /// `raw` must be the address of a live `VMExternData` (one that some `ExternRef`, for
    /// instance a store's keep-alive list, keeps alive for the duration of this call).
    pub unsafe fn clone_from_raw(raw: usize) -> Option<ExternRef> {
        let ptr = NonNull::new(raw as *mut VMExternData)?;
        // SAFETY: the caller guarantees the header is live.
        unsafe { ptr.as_ref() }
            .count
            .fetch_add(1, Ordering::Relaxed);
        Some(ExternRef { ptr })
    }

    /// Whether two handles refer to the same value.
    pub fn ptr_eq(a: &ExternRef, b: &ExternRef) -> bool {
        a.ptr == b.ptr
    }

    /// Current count (for tests and statistics).
    pub fn strong_count(&self) -> usize {
        // SAFETY: live while we hold a count.
        unsafe { self.ptr.as_ref() }.count.load(Ordering::Acquire)
    }
}

impl Clone for ExternRef {
    fn clone(&self) -> Self {
        // SAFETY: live while we hold a count.
        unsafe { self.ptr.as_ref() }
            .count
            .fetch_add(1, Ordering::Relaxed);
        ExternRef { ptr: self.ptr }
    }
}

impl Drop for ExternRef {
    fn drop(&mut self) {
        // SAFETY: live while we hold a count.
        if unsafe { self.ptr.as_ref() }
            .count
            .fetch_sub(1, Ordering::Release)
            == 1
        {
            std::sync::atomic::fence(Ordering::Acquire);
            // SAFETY: this was the last count; the header came from `Box::leak`.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
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
    use std::sync::Arc;

    #[test]
    fn payload_dropped_exactly_once_when_last_handle_goes() {
        let witness = Arc::new(());
        let r = ExternRef::new(witness.clone());
        let r2 = r.clone();
        // SAFETY: `r` keeps the header alive.
        let r3 = unsafe { ExternRef::clone_from_raw(r.as_raw()) }.unwrap();
        assert_eq!(r.strong_count(), 3);
        drop(r);
        drop(r2);
        assert_eq!(Arc::strong_count(&witness), 2);
        assert!(r3.data().downcast_ref::<Arc<()>>().is_some());
        drop(r3);
        assert_eq!(Arc::strong_count(&witness), 1);
    }
}
