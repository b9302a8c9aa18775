//! A global allocator for the property tests that keeps freed `externref` headers and
//! payloads out of circulation for a while (a quarantine), so that a reference the
//! collector freed too early is *detected* (its payload's canary reads "dead") rather
//! than corrupting the heap: while a block is quarantined, generated code may still
//! bump its count and the oracle may still read it, harmlessly.
//!
//! Only blocks of [`QUARANTINED_SIZES`] are held: those of `VMExternData` (count,
//! next, flags, owner, `Box<dyn Any>`; 40 bytes without the owner) and of the test's
//! `Payload`. A second free
//! of a block still in quarantine is counted in [`double_frees`] and otherwise
//! ignored. The 65,536 most recent such frees are held; older ones are released.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The sizes of the blocks held back.
pub const QUARANTINED_SIZES: [usize; 2] = [40, 48];

const RING: usize = 1 << 16;
const TABLE_BITS: u32 = 17;
const TABLE: usize = 1 << TABLE_BITS;

struct State {
    /// Quarantined blocks, oldest at `head` once `len == RING`.
    ring: [usize; RING],
    /// Their sizes.
    sizes: [u8; RING],
    head: usize,
    len: usize,
    /// The same blocks as a set: open addressing, linear probing, 0 is empty.
    table: [usize; TABLE],
}

static STATE: Mutex<State> = Mutex::new(State {
    ring: [0; RING],
    sizes: [0; RING],
    head: 0,
    len: 0,
    table: [0; TABLE],
});

static DOUBLE_FREES: AtomicUsize = AtomicUsize::new(0);

/// Frees of a block that was already in quarantine, so far.
pub fn double_frees() -> usize {
    DOUBLE_FREES.load(Ordering::Relaxed)
}

fn slot_of(p: usize) -> usize {
    (p >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TABLE_BITS)
}

impl State {
    fn find(&self, p: usize) -> Option<usize> {
        let mut i = slot_of(p);
        loop {
            match self.table[i] {
                0 => return None,
                q if q == p => return Some(i),
                _ => i = (i + 1) & (TABLE - 1),
            }
        }
    }

    fn insert(&mut self, p: usize) {
        let mut i = slot_of(p);
        while self.table[i] != 0 {
            i = (i + 1) & (TABLE - 1);
        }
        self.table[i] = p;
    }

    /// Removes slot `i`, shifting back the entries of its probe run.
    fn remove_at(&mut self, mut i: usize) {
        let mut j = i;
        loop {
            j = (j + 1) & (TABLE - 1);
            let q = self.table[j];
            if q == 0 {
                break;
            }
            let k = slot_of(q);
            // Move `q` into the hole unless its home lies cyclically in (i, j].
            let home_between = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !home_between {
                self.table[i] = q;
                i = j;
            }
        }
        self.table[i] = 0;
    }
}

/// Whether frees of `layout` go through the quarantine.
fn held(layout: Layout) -> bool {
    QUARANTINED_SIZES.contains(&layout.size()) && layout.align() <= 8
}

/// The allocator: `System`, with the quarantine in front of frees of
/// [`QUARANTINED_SIZES`].
pub struct Quarantine;

// SAFETY: every allocation is `System`'s; a quarantined block is handed back to
// `System` exactly once (set membership filters repeated frees), with its layout.
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !held(layout) {
            // SAFETY: forwarded with the caller's contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a fresh block, then the old one goes through `dealloc`.
        unsafe {
            let new = System.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !held(layout) {
            // SAFETY: forwarded with the caller's contract.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let p = ptr as usize;
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        if s.find(p).is_some() {
            DOUBLE_FREES.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if s.len == RING {
            let old = s.ring[s.head];
            let size = usize::from(s.sizes[s.head]);
            if let Some(i) = s.find(old) {
                s.remove_at(i);
            }
            // SAFETY: `old` was quarantined with this size and an alignment of at most
            // 8, which `System` serves with plain `malloc` whatever the alignment asked.
            unsafe { System.dealloc(old as *mut u8, Layout::from_size_align_unchecked(size, 8)) };
        } else {
            s.len += 1;
        }
        let head = s.head;
        s.ring[head] = p;
        s.sizes[head] = layout.size() as u8;
        s.head = (head + 1) % RING;
        s.insert(p);
    }
}
