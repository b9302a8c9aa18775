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

    /// True if this reader vouches for every pair of words in `[lo, hi)` whose address is
    /// a multiple of 16: `read_pair(addr)` would answer `Some` for each such `addr` with
    /// `lo <= addr` and `addr + 16 <= hi`, for as long as the reader is borrowed.
    ///
    /// The walker asks once per activation, for the range that activation's frames must
    /// lie in, and then reads those frames with
    /// [`read_pair_covered`](Self::read_pair_covered), without a check per frame. The
    /// default vouches for nothing, so every read goes through `read_pair`.
    #[inline]
    fn covers(&self, lo: usize, hi: usize) -> bool {
        let _ = (lo, hi);
        false
    }

    /// [`read_pair`](Self::read_pair) of a pair that [`covers`](Self::covers) vouched
    /// for: the reader may skip its checks. The default checks anyway.
    ///
    /// # Safety
    ///
    /// `covers(lo, hi)` returned true for this reader (borrowed since), `addr` is a
    /// multiple of 16, `lo <= addr` and `addr + 16 <= hi`.
    #[inline]
    unsafe fn read_pair_covered(&self, addr: usize) -> [usize; 2] {
        // Only a reader that broke `covers`' promise gets here with an unreadable pair.
        self.read_pair(addr).unwrap_or([0; 2])
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

    #[inline]
    fn covers(&self, lo: usize, hi: usize) -> bool {
        (**self).covers(lo, hi)
    }

    #[inline]
    unsafe fn read_pair_covered(&self, addr: usize) -> [usize; 2] {
        // SAFETY: the caller's promise, for the same reader.
        unsafe { (**self).read_pair_covered(addr) }
    }
}

/// Reads the current thread's stack, but only aligned words inside `[lo, hi)`.
///
/// A walk (and a collection's slot reads) reads only words in the range
/// [`ActivationList::stack_range`](super::ActivationList::stack_range) gives: from the
/// newest start (the start registers' SP, or the lowest recorded exit) to the
/// `entry_fp` of the oldest walked activation, so that range is a sufficient choice of
/// `[lo, hi)`. The thread's whole stack mapping works too.
///
/// Neither `Send` nor `Sync`: it reads the stack of the thread that created it.
#[derive(Debug)]
pub struct LiveStackReader {
    lo: usize,
    hi: usize,
    /// How many addresses from `lo` on start a readable word (`[addr, addr + 8)`
    /// inside `[lo, hi)`): `hi - lo - 7`, or 0 when the range is shorter than a word.
    /// `read_word` then needs one compare for the range.
    word_starts: usize,
    /// The same for a pair of words (`[addr, addr + 16)`): `hi - lo - 15`, or 0.
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
            word_starts: hi.saturating_sub(lo).saturating_sub(size_of::<usize>() - 1),
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
        // One compare: below `lo` wraps to a huge offset; `word_starts` excludes any
        // word reaching `hi` (so `addr + 8` cannot overflow either).
        if addr.wrapping_sub(self.lo) >= self.word_starts
            || !addr.is_multiple_of(align_of::<usize>())
        {
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

    #[inline]
    fn covers(&self, lo: usize, hi: usize) -> bool {
        self.lo <= lo && lo <= hi && hi <= self.hi
    }

    #[inline]
    unsafe fn read_pair_covered(&self, addr: usize) -> [usize; 2] {
        debug_assert!(self.read_pair(addr).is_some());
        let words = core::ptr::with_exposed_provenance::<[usize; 2]>(addr);
        // SAFETY: by the caller's promise `[addr, addr + 16)` lies inside a range `covers`
        // accepted, so inside `[self.lo, self.hi)`, and `addr` is aligned: the read
        // `read_pair` would make.
        unsafe { words.read() }
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

    #[test]
    fn vouches_only_inside_its_range() {
        #[repr(align(16))]
        struct Words([usize; 6]);
        let words = Words([11, 22, 33, 44, 55, 66]);
        let lo = words.0.as_ptr().expose_provenance();
        let hi = lo + size_of::<Words>();
        // SAFETY: `words` is a live local of this thread for the reader's lifetime, its
        // provenance is exposed above, and nothing writes it.
        let reader = unsafe { LiveStackReader::new(lo + 16, hi) };
        assert!(reader.covers(lo + 16, hi));
        assert!(reader.covers(lo + 32, lo + 48));
        assert!(reader.covers(lo + 32, lo + 32), "an empty range");
        assert!(!reader.covers(lo, hi), "starts below lo");
        assert!(!reader.covers(lo + 16, hi + 16), "ends above hi");
        assert!(!reader.covers(lo + 48, lo + 32), "inverted");
        assert!(!reader.covers(0, usize::MAX));
        for addr in [lo + 16, lo + 32] {
            // SAFETY: `covers(lo + 16, hi)` held, `addr` is a multiple of 16 (the
            // array is 16-aligned) and `[addr, addr + 16)` is inside.
            let covered = unsafe { reader.read_pair_covered(addr) };
            assert_eq!(Some(covered), reader.read_pair(addr));
        }
        // SAFETY: as above, through a reference (the blanket impl forwards).
        assert_eq!(
            unsafe { <&LiveStackReader>::read_pair_covered(&&reader, lo + 32) },
            [55, 66]
        );
    }
}
