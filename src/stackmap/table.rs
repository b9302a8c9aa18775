//! An owned, decoded index over a parsed section, for collectors that look up every
//! frame of a stack.
//!
//! [`StackMapSection::lookup`] reads the section in place: a page-table step, a binary
//! search over the page's return offsets, then three more dependent loads (the
//! safepoint's map number, the map's start, the map's header) before the bitmap. A
//! [`StackMapTable`] decodes those once, when a module is loaded: each safepoint
//! becomes one 16-byte entry `(return offset, span, bitmap start, bitmap words)`, so
//! the search lands on a cache line that already holds the answer, and the next load
//! is the bitmap itself. The bitmaps stay in the section (borrowed).
//!
//! Invariant: for every `u32` return offset, [`StackMapTable::lookup`] answers exactly
//! what [`StackMapSection::lookup`] on the same section answers (tests below compare
//! them at every offset of generated sections). Memory: 16 bytes per safepoint plus 4
//! per page.

use super::reader::{StackMap, StackMapSection, Word};

/// One safepoint, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
struct Entry {
    return_offset: u32,
    span: u32,
    /// Word offset of the bitmap in the section's map data.
    bits_start: u32,
    /// Words in the bitmap.
    bits_len: u32,
}

/// A decoded index of a [`StackMapSection`]; see the module docs.
#[derive(Clone, Debug)]
pub struct StackMapTable<'a> {
    /// Page `p` covers return offsets `r` with `r >> page_shift == p` (as the section).
    page_shift: u32,
    /// `P + 1` entries: `entries[pages[p]..pages[p + 1]]` are the safepoints of page `p`.
    pages: Box<[u32]>,
    /// Every safepoint, by increasing return offset.
    entries: Box<[Entry]>,
    /// The section's map data, where the bitmaps are.
    map_data: &'a [Word],
}

impl<'a> StackMapTable<'a> {
    /// Decodes `section` (linear in its size; allocates the two tables).
    pub fn new(section: &StackMapSection<'a>) -> StackMapTable<'a> {
        let (page_shift, pages, entries) = section.decoded();
        StackMapTable {
            page_shift,
            pages: pages.collect(),
            entries: entries
                .map(|[return_offset, span, bits_start, bits_len]| Entry {
                    return_offset,
                    span,
                    bits_start,
                    bits_len,
                })
                .collect(),
            map_data: section.map_data(),
        }
    }

    /// The stack map of the safepoint at `return_offset`, or `None` if there is none:
    /// the same answer as [`StackMapSection::lookup`]. No allocation.
    #[inline]
    pub fn lookup(&self, return_offset: u32) -> Option<StackMap<'a>> {
        let page = (return_offset >> self.page_shift) as usize;
        // A page past the table has no entries (`page + 1` cannot overflow: a `u32`
        // shifted right fits a `usize` with room to spare).
        let first = *self.pages.get(page)? as usize;
        let end = *self.pages.get(page + 1)? as usize;
        let run = self.entries.get(first..end)?;
        let at = run.partition_point(|e| e.return_offset < return_offset);
        let entry = run.get(at).filter(|e| e.return_offset == return_offset)?;
        let start = entry.bits_start as usize;
        let bits = self.map_data.get(start..start + entry.bits_len as usize)?;
        Some(StackMap::from_parts(entry.span, bits))
    }

    /// Number of safepoints.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no safepoint at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stackmap::StackMapBuilder;

    /// Deterministic xorshift, so failures reproduce.
    fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed | 1;
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    #[test]
    fn answers_as_the_section_at_every_offset() {
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..60 {
            let mut builder = StackMapBuilder::new();
            let count = match case {
                0 => 0,
                1 => 1,
                _ => next(300) + 1,
            };
            let mut offset = next(64) as u32;
            for _ in 0..count {
                // Dense clusters and long gaps, so pages hold from none to many.
                offset += if next(8) == 0 {
                    1 + next(5000) as u32
                } else {
                    1 + next(24) as u32
                };
                let span = 8 * (1 + next(40) as u32);
                let slots: Vec<u32> = (0..span / 8)
                    .filter(|_| next(3) == 0)
                    .map(|s| s * 8)
                    .collect();
                builder.add(offset, span, &slots).unwrap();
            }
            let bytes = builder.finish();
            let section = StackMapSection::parse(&bytes).unwrap();
            let table = StackMapTable::new(&section);
            assert_eq!(table.len(), section.len());
            assert_eq!(table.is_empty(), section.is_empty());
            for r in 0..offset + 100 {
                let map = table.lookup(r);
                assert_eq!(map, section.lookup(r), "case {case}, offset {r}");
                if let Some(map) = map {
                    let mut each = Vec::new();
                    map.for_each_slot(|s| each.push(s));
                    assert_eq!(each, map.slots().collect::<Vec<_>>());
                }
            }
            for r in [u32::MAX, u32::MAX - 1, 1 << 31] {
                assert_eq!(table.lookup(r), section.lookup(r));
            }
        }
    }
}
