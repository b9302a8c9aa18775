//! Reading stack words: the walker's only access to stack memory.
//!
//! The walker is generic over [`StackReader`], so its stepping logic is safe code that
//! runs unchanged on fake stacks in tests. [`LiveStackReader`] reads the real stack;
//! its `read_word` holds the one unsafe memory read of the walk, guarded by a range
//! fixed when the reader is created.
//!
//! Invariant: a reader answers `None` rather than reading outside the memory it was
//! given; the walker turns `None` into `WalkError::UnreadableStack`.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};

/// Reads one word of stack memory.
///
/// The live implementation, [`LiveStackReader`], reads the real stack; tests use fake
/// stacks. Implementations must not panic and, to stay usable from a signal handler,
/// should not allocate or take locks.
pub trait StackReader {
    /// The word at `addr`, or `None` if this reader cannot or will not read it.
    fn read_word(&self, addr: usize) -> Option<usize>;

    /// The two consecutive words at `addr` and `addr + WORD_SIZE` (a frame's saved FP
    /// and return address), or `None` if either cannot be read. The default reads each
    /// with [`read_word`](Self::read_word); a reader may check both at once, but must
    /// answer the same.
    #[inline]
    fn read_pair(&self, addr: usize) -> Option<[usize; 2]> {
        let second = addr.checked_add(size_of::<usize>())?;
        Some([self.read_word(addr)?, self.read_word(second)?])
    }
}

impl<T: StackReader + ?Sized> StackReader for &T {
    #[inline]
    fn read_word(&self, addr: usize) -> Option<usize> {
        (**self).read_word(addr)
    }

    #[inline]
    fn read_pair(&self, addr: usize) -> Option<[usize; 2]> {
        (**self).read_pair(addr)
    }
}

/// Reads the current thread's stack, but only aligned words inside `[lo, hi)`.
///
/// A walk reads only words at or above where it starts (the start registers' FP, or
/// `exit_sp - 16` of the newest walked activation) and strictly below the `entry_fp` of
/// the oldest walked activation, so that range is a sufficient choice of `[lo, hi)`.
/// The thread's whole stack mapping works too.
///
/// Neither `Send` nor `Sync`: it reads the stack of the thread that created it.
#[derive(Debug)]
pub struct LiveStackReader {
    lo: usize,
    hi: usize,
    /// How many addresses from `lo` on start a readable pair of words (`[addr,
    /// addr + 16)` inside `[lo, hi)`): `hi - lo - 15`, or 0 when the range is shorter
    /// than two words. `read_pair` then needs one compare for the range.
    pair_starts: usize,
    _this_thread: PhantomData<*const ()>,
}

impl LiveStackReader {
    /// A reader of the words in `[lo, hi)`.
    ///
    /// # Safety
    ///
    /// For as long as the reader exists, every aligned word in `[lo, hi)` must be
    /// mapped, readable memory of the current thread's stack (or memory otherwise owned
    /// by this thread), with its provenance exposed (addresses taken from registers,
    /// from the stack itself, or from pointers passed through
    /// `pointer::expose_provenance`), and no other thread may write to it while
    /// `read_word` runs. Frames that are live while the reader is used (those above the
    /// walking code's own frame) satisfy this.
    pub unsafe fn new(lo: usize, hi: usize) -> Self {
        LiveStackReader {
            lo,
            hi,
            pair_starts: hi
                .saturating_sub(lo)
                .saturating_sub(2 * size_of::<usize>() - 1),
            _this_thread: PhantomData,
        }
    }

    /// Lowest readable address.
    pub fn lo(&self) -> usize {
        self.lo
    }

    /// One past the highest readable address.
    pub fn hi(&self) -> usize {
        self.hi
    }
}

impl StackReader for LiveStackReader {
    #[inline]
    fn read_word(&self, addr: usize) -> Option<usize> {
        if !addr.is_multiple_of(align_of::<usize>()) {
            return None;
        }
        let end = addr.checked_add(size_of::<usize>())?;
        if addr < self.lo || end > self.hi {
            return None;
        }
        let word = core::ptr::with_exposed_provenance::<usize>(addr);
        // SAFETY: `addr` is aligned for `usize` and `[addr, addr + 8)` lies inside
        // `[lo, hi)`, which the contract of `LiveStackReader::new` makes readable memory
        // with exposed provenance that no other thread writes while this read runs.
        Some(unsafe { word.read() })
    }

    #[inline]
    fn read_pair(&self, addr: usize) -> Option<[usize; 2]> {
        // One compare: below `lo` wraps to a huge offset; `pair_starts` excludes any
        // pair reaching `hi` (so `addr + 16` cannot overflow either).
        if addr.wrapping_sub(self.lo) >= self.pair_starts
            || !addr.is_multiple_of(align_of::<usize>())
        {
            return None;
        }
        let words = core::ptr::with_exposed_provenance::<[usize; 2]>(addr);
        // SAFETY: `addr` is aligned for `usize` and `[addr, addr + 16)` lies inside
        // `[lo, hi)`, as for `read_word`.
        Some(unsafe { words.read() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_aligned_words_inside_the_range() {
        let words: [usize; 4] = [11, 22, 33, 44];
        let lo = words.as_ptr().expose_provenance();
        let hi = lo + size_of::<[usize; 4]>();
        // SAFETY: `words` is a live local of this thread for the reader's lifetime, its
        // provenance is exposed above, and nothing writes it.
        let reader = unsafe { LiveStackReader::new(lo + 8, hi) };
        assert_eq!(reader.lo(), lo + 8);
        assert_eq!(reader.hi(), hi);
        assert_eq!(reader.read_word(lo), None, "below lo");
        assert_eq!(reader.read_word(lo + 8), Some(22));
        assert_eq!(reader.read_word(lo + 24), Some(44));
        assert_eq!(reader.read_word(hi), None, "at hi");
        assert_eq!(reader.read_word(lo + 12), None, "misaligned");
        assert_eq!(reader.read_word(usize::MAX - 7), None, "end overflows");
        assert_eq!(reader.read_word(0), None);
        assert_eq!(reader.read_pair(lo + 8), Some([22, 33]));
        assert_eq!(reader.read_pair(lo + 16), Some([33, 44]));
        assert_eq!(reader.read_pair(lo + 24), None, "second word at hi");
        assert_eq!(reader.read_pair(lo), None, "first word below lo");
        assert_eq!(reader.read_pair(lo + 12), None, "misaligned");
        assert_eq!(reader.read_pair(usize::MAX - 7), None, "end overflows");
        // SAFETY: as above (subranges of `words`).
        let (one_word, inverted) = unsafe {
            (
                LiveStackReader::new(lo + 8, lo + 16),
                LiveStackReader::new(lo + 16, lo + 8),
            )
        };
        assert_eq!(one_word.read_word(lo + 8), Some(22));
        assert_eq!(
            one_word.read_pair(lo + 8),
            None,
            "a one-word range has no pair"
        );
        assert_eq!(inverted.read_word(lo + 8), None);
        assert_eq!(inverted.read_pair(lo + 8), None);
    }
}
