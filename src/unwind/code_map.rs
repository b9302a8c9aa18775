//! Flat PC → function maps: one fixed-width entry per 16 bytes of a module's text, so
//! finding the function of a PC is one load and one compare instead of a search.
//!
//! Cranelift starts every function on a 16-byte boundary, so a 16-byte *granule* of
//! text holds code of at most one function (the function that starts in or before it),
//! possibly followed by padding. Entry `g` of the map describes the granule at text
//! offset `g * 16` as
//!
//! ```text
//!   31                                5 4        0
//!  +-----------------------------------+----------+
//!  |            func_index             |   pad    |   16 = no function in this granule
//!  +-----------------------------------+----------+
//! ```
//!
//! where `pad` (0 to 16) counts the granule's trailing bytes that are *not* the
//! function's: 16 - (bytes of the function in the granule), so 16 for a granule of no
//! function. A PC at offset `o` is in function `e >> 5` exactly when
//! `o % 16 < 16 - pad`, that is when bit 4 of `e + o % 16` is clear: the sum stays below
//! 32, so the test is one add and one bit test, and never disturbs `func_index`. The
//! map costs 4 bytes per 16 bytes of code.
//!
//! [`FlatCodeMap`] owns a map; [`CodeMap`] is a borrowed, `Copy` view of one that also
//! knows where its text is, so a walker can keep it in registers for a whole run of
//! frames in one module (see [`CodeLookup::code_map`](super::CodeLookup::code_map)).
//!
//! Invariants: a map is built only from function ranges that are sorted, disjoint,
//! non-empty, inside the text and 16-byte aligned at their starts; `CodeMap::lookup`
//! answers exactly as a binary search over those ranges would, for every PC (tests
//! below check every byte of several layouts).

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::registry::FunctionRange;
use super::walker::CodeLocation;

/// Bytes of text per entry.
const GRANULE: u32 = 16;
/// Bits of an entry that hold how many bytes of its granule are not its function's.
const CODE_BITS: u32 = 5;
/// Entry of a granule that belongs to no function: `16 + o % 16` always has bit 4 set.
const NO_FUNCTION: u32 = GRANULE;

/// An owned flat map of one module's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatCodeMap {
    granules: Box<[u32]>,
    /// Length of the text the map describes.
    text_len: u32,
}

impl FlatCodeMap {
    /// The map of `functions` in a text of `text_len` bytes, or `None` if a function
    /// does not start on a 16-byte boundary or its index does not fit an entry
    /// (`func_index >= 2^27`): the caller then searches the ranges instead.
    ///
    /// `functions` must be sorted, disjoint, non-empty and inside the text (as
    /// [`CodeRegistry::register`](super::CodeRegistry::register) checks); `text_len`
    /// must be at least 1 and at most `u32::MAX`.
    pub fn new(functions: &[FunctionRange], text_len: usize) -> Option<FlatCodeMap> {
        // Padding (at most GRANULE) plus an offset in the granule stays below 1 << CODE_BITS,
        // and GRANULE is one bit.
        const _: () = assert!(2 * GRANULE <= 1 << CODE_BITS && GRANULE.is_power_of_two());
        let text_len = u32::try_from(text_len).ok().filter(|&l| l > 0)?;
        let fits = |f: &FunctionRange| {
            u64::from(f.start) + u64::from(f.len) <= u64::from(text_len)
                && f.len > 0
                && f.func_index <= (u32::MAX >> CODE_BITS)
        };
        if functions.is_empty() || functions.iter().any(|f| f.start % GRANULE != 0 || !fits(f)) {
            return None;
        }
        let n = text_len.div_ceil(GRANULE) as usize;
        let mut granules = vec![NO_FUNCTION; n];
        for f in functions {
            // `fits` above: the end fits the text and `func_index` fits above
            // CODE_BITS.
            let end = f.start + f.len;
            let first = (f.start / GRANULE) as usize;
            let last = ((end - 1) / GRANULE) as usize;
            let tag = f.func_index << CODE_BITS;
            for (g, slot) in granules.iter_mut().enumerate().take(last + 1).skip(first) {
                let granule_start = g as u32 * GRANULE;
                // The function covers 1..=GRANULE bytes of the granule (at least its
                // first), so the padding is 0..GRANULE.
                *slot = tag | (GRANULE - (end - granule_start).min(GRANULE));
            }
        }
        Some(FlatCodeMap {
            granules: granules.into_boxed_slice(),
            text_len,
        })
    }

    /// A view of this map for text loaded at `text_start`, answering with module id
    /// `module`. `text_start + text_len` must not overflow (registration checks it).
    pub fn view(&self, text_start: usize, module: usize) -> CodeMap<'_> {
        CodeMap {
            text_start,
            text_len: self.text_len as usize,
            module,
            granules: NonNull::from(&*self.granules).cast(),
            _map: PhantomData,
        }
    }
}

/// A borrowed flat map of one module's text at its load address; see the module docs.
///
/// Four words, so that a walker keeps one in registers: the entries are a bare pointer
/// whose length (`text_len / 16`, rounded up) the view knows from its text.
#[derive(Clone, Copy, Debug)]
pub struct CodeMap<'a> {
    text_start: usize,
    /// At most `u32::MAX`; 0 only for [`CodeMap::EMPTY`].
    text_len: usize,
    module: usize,
    /// `text_len.div_ceil(GRANULE)` entries (none for `EMPTY`).
    granules: NonNull<u32>,
    _map: PhantomData<&'a [u32]>,
}

// SAFETY: a `CodeMap` is a shared borrow of a `[u32]` (plus plain integers); it only
// reads the entries, as a `&[u32]` could from any thread.
unsafe impl Send for CodeMap<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for CodeMap<'_> {}

impl CodeMap<'_> {
    /// A map of no text: it contains no PC.
    pub const EMPTY: CodeMap<'static> = CodeMap {
        text_start: 0,
        text_len: 0,
        module: 0,
        granules: NonNull::dangling(),
        _map: PhantomData,
    };

    /// True if `pc` is inside this map's text (code or padding).
    #[inline(always)]
    pub fn contains(&self, pc: usize) -> bool {
        pc.wrapping_sub(self.text_start) < self.text_len
    }

    /// The function containing `pc`, or `None` if `pc` is outside the text or in
    /// padding between functions.
    #[inline(always)]
    pub fn lookup(&self, pc: usize) -> Option<CodeLocation> {
        if !self.contains(pc) {
            return None;
        }
        // Below `text_len`, a `u32`.
        let text_offset = (pc - self.text_start) as u32;
        let g = (text_offset / GRANULE) as usize;
        // SAFETY: `text_offset < text_len`, and the pointer is to the
        // `text_len.div_ceil(GRANULE)` entries of a live `FlatCodeMap` (`view` builds it
        // from the map's own length; `EMPTY` has no text, so no offset gets here), so
        // `g` is in bounds and the borrow `'_` keeps them alive.
        let entry = unsafe { self.granules.add(g).read() };
        // `entry`'s low bits are the padding `p <= 16`, and `text_offset % 16 < 16 - p`
        // exactly when `p + text_offset % 16 < 16`; the sum is below 32.
        if (entry + text_offset % GRANULE) & GRANULE != 0 {
            return None;
        }
        Some(CodeLocation {
            module: self.module,
            func_index: entry >> CODE_BITS,
            text_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u32, len: u32, func_index: u32) -> FunctionRange {
        FunctionRange {
            start,
            len,
            func_index,
        }
    }

    /// The answer of a binary search over `functions`, as the registry gives it.
    fn searched(functions: &[FunctionRange], text_len: u32, offset: u32) -> Option<u32> {
        if offset >= text_len {
            return None;
        }
        let after = functions.partition_point(|f| f.start <= offset);
        let f = functions.get(after.checked_sub(1)?)?;
        (offset - f.start < f.len).then_some(f.func_index)
    }

    #[test]
    fn every_byte_matches_a_search() {
        let layouts: [(&[FunctionRange], u32); 4] = [
            // Functions ending mid-granule, at a granule end, and one granule long.
            (&[range(0, 40, 3), range(48, 16, 4), range(64, 1, 9)], 70),
            // A gap of whole granules, and the text ending inside the last function's
            // granule.
            (&[range(16, 17, 0), range(96, 30, 1)], 126),
            // One function filling the text exactly.
            (&[range(0, 64, 7)], 64),
            // Text longer than its last function (trailing padding).
            (&[range(0, 3, 0), range(16, 16, 1)], 100),
        ];
        let text_start = 0x7000_0000_0010usize;
        for (functions, text_len) in layouts {
            let map = FlatCodeMap::new(functions, text_len as usize).expect("aligned");
            let view = map.view(text_start, 5);
            for offset in 0..text_len + 40 {
                let pc = text_start + offset as usize;
                let found = view.lookup(pc);
                assert_eq!(
                    found.map(|l| l.func_index),
                    searched(functions, text_len, offset),
                    "offset {offset} of {functions:?}"
                );
                if let Some(l) = found {
                    assert_eq!((l.module, l.text_offset), (5, offset));
                }
                assert_eq!(view.contains(pc), offset < text_len);
            }
            for below in 1..40 {
                assert_eq!(view.lookup(text_start - below), None);
            }
        }
    }

    #[test]
    fn unaligned_or_oversized_layouts_have_no_map() {
        assert_eq!(FlatCodeMap::new(&[range(8, 8, 0)], 32), None);
        assert_eq!(FlatCodeMap::new(&[], 32), None);
        assert_eq!(
            FlatCodeMap::new(&[range(0, 8, (u32::MAX >> 5) + 1)], 32),
            None
        );
        assert_eq!(
            FlatCodeMap::new(&[range(0, 40, 0)], 32),
            None,
            "past the text"
        );
        assert_eq!(FlatCodeMap::new(&[range(0, 8, 0)], 0), None, "empty text");
        let top = FlatCodeMap::new(&[range(0, 8, u32::MAX >> 5)], 32).expect("fits");
        assert_eq!(
            top.view(0x1000, 1).lookup(0x1007).map(|l| l.func_index),
            Some(u32::MAX >> 5)
        );
    }

    #[test]
    fn the_empty_map_contains_nothing() {
        for pc in [0, 1, 0x7000_0000_0010, usize::MAX] {
            assert!(!CodeMap::EMPTY.contains(pc));
            assert_eq!(CodeMap::EMPTY.lookup(pc), None);
        }
    }

    #[test]
    fn text_at_the_top_of_the_address_space() {
        let map = FlatCodeMap::new(&[range(0, 32, 1)], 32).expect("aligned");
        let start = usize::MAX - 31;
        let view = map.view(start, 1);
        assert_eq!(view.lookup(usize::MAX).map(|l| l.text_offset), Some(31));
        assert_eq!(view.lookup(0), None, "wraps to 0: outside");
        assert_eq!(view.lookup(start - 1), None);
    }
}
