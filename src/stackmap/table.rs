//! An owned, decoded index over a parsed section, for collectors that look up every
//! frame of a stack.
//!
//! [`StackMapSection::lookup`] reads the section in place: a page-table step, a binary
//! search over the page's return offsets, then three more dependent loads (the
//! safepoint's map number, the map's start, the map's header) before the bitmap: a
//! chain of about six dependent loads per frame, which is most of a collection's cost
//! per frame. A [`StackMapTable`] decodes the section once, when a module is loaded,
//! into an open-addressed hash table keyed by return offset:
//!
//! ```text
//!   slot = (return_offset * 0x9e3779b1) >> (32 - log2(capacity)), then linear probing
//!   +---------------+------+----------------------------+-----------+
//!   | return_offset | span | bitmap word, or its offset | bits_len  |   16 bytes
//!   +---------------+------+----------------------------+-----------+
//!   bits_len <= 1: the bitmap is stored inline (the common case: at most 32 slots)
//!   bits_len >= 2: the bitmap is `bits_len` words at that offset in the table's own
//!                  copy of the longer bitmaps
//!   bits_len == EMPTY: a free slot (ends a probe)
//! ```
//!
//! so a lookup is one hashed load that usually holds the whole answer, and a miss (a
//! call with no live references, which has no safepoint) usually ends at the first or
//! second slot. The capacity is the power of two at least twice the number of
//! safepoints: at most half full, 32 to 64 bytes per safepoint.
//!
//! The table owns everything it answers from (bitmaps of more than one word are copied
//! out of the section), so it borrows nothing: a runtime keeps it beside the section's
//! bytes, or drops those, with no lifetime to extend. [`StackMapTable::parse`] goes
//! from untrusted bytes to a table in one step.
//!
//! Invariant: for every `u32` return offset, [`StackMapTable::lookup`] answers exactly
//! what [`StackMapSection::lookup`] on the same section answers (tests below compare
//! them at every offset of generated sections), and every probe ends (at least half the
//! slots are free).

use super::reader::{StackMap, StackMapSection, Word};
use super::StackMapError;

/// `bits_len` of a free slot.
const EMPTY: u32 = u32::MAX;

/// Multiplier of the hash (2^32 / golden ratio, odd).
const HASH: u32 = 0x9e37_79b1;

/// One safepoint, decoded; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
struct Entry {
    return_offset: u32,
    span: u32,
    /// The bitmap itself (`bits_len <= 1`) or its word offset in the table's
    /// `long_maps`.
    bits: Word,
    bits_len: u32,
}

const FREE: Entry = Entry {
    return_offset: 0,
    span: 0,
    bits: [0; 4],
    bits_len: EMPTY,
};

/// A decoded index of a [`StackMapSection`], owning all it answers from; see the module
/// docs.
#[derive(Clone, Debug)]
pub struct StackMapTable {
    /// `32 - log2(slots.len())`: the hash keeps the top bits.
    shift: u32,
    /// `slots.len() - 1` (the length is a power of two, at least 2).
    mask: usize,
    slots: Box<[Entry]>,
    /// Number of safepoints.
    len: usize,
    /// The bitmaps of more than one word, copied out of the section (each once, however
    /// many safepoints share it).
    long_maps: Box<[Word]>,
}

impl StackMapTable {
    /// Parses untrusted section bytes ([`StackMapSection::parse`]) and decodes them: a
    /// table that does not borrow `bytes`.
    ///
    /// # Errors
    ///
    /// The [`StackMapError`] of the parse.
    pub fn parse(bytes: &[u8]) -> Result<StackMapTable, StackMapError> {
        Ok(StackMapTable::new(&StackMapSection::parse(bytes)?))
    }

    /// Decodes `section` (linear in its size; allocates the table and a copy of the
    /// bitmaps longer than one word).
    pub fn new(section: &StackMapSection<'_>) -> StackMapTable {
        let map_data = section.map_data();
        // Word offset in the section's map data -> word offset in `long_maps`.
        let mut copied: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let mut long_maps: Vec<Word> = Vec::new();
        let entries = section.decoded();
        let len = section.len();
        // At least twice the safepoints, so at least half the slots stay free. The
        // section holds at most `u32::MAX` safepoints, so this fits.
        let capacity = (2 * len).next_power_of_two().max(2);
        let bits = capacity.trailing_zeros();
        let mut slots = vec![FREE; capacity].into_boxed_slice();
        let mask = capacity - 1;
        let shift = 32 - bits;
        for [return_offset, span, bits_start, bits_len] in entries {
            let bits = match bits_len {
                0 => [0; 4],
                // parse: the bitmap lies inside the map data.
                1 => map_data[bits_start as usize],
                _ => {
                    let at = *copied.entry(bits_start).or_insert_with(|| {
                        // A section's map data is at most `u32::MAX` words, and each
                        // distinct map is copied once: the offset fits a `u32`.
                        let at = long_maps.len() as u32;
                        let start = bits_start as usize;
                        // parse: the bitmap lies inside the map data.
                        long_maps.extend_from_slice(&map_data[start..start + bits_len as usize]);
                        at
                    });
                    at.to_le_bytes()
                }
            };
            let mut i = home(return_offset, shift);
            while slots[i].bits_len != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = Entry {
                return_offset,
                span,
                bits,
                bits_len,
            };
        }
        StackMapTable {
            shift,
            mask,
            slots,
            len,
            long_maps: long_maps.into_boxed_slice(),
        }
    }

    /// The stack map of the safepoint at `return_offset`, or `None` if there is none:
    /// the same answer as [`StackMapSection::lookup`]. No allocation.
    #[inline]
    pub fn lookup(&self, return_offset: u32) -> Option<StackMap<'_>> {
        let mut i = home(return_offset, self.shift);
        loop {
            debug_assert!(i < self.slots.len());
            // SAFETY: `slots.len()` is `2^(32 - shift)` and `mask + 1` (`new` sets all
            // three together; they are private and never changed), `home` is below
            // `2^(32 - shift)`, and `(i + 1) & mask` below `mask + 1`: `i` is in bounds.
            let entry = unsafe { self.slots.get_unchecked(i) };
            if entry.return_offset == return_offset && entry.bits_len != EMPTY {
                return Some(self.map_of(entry));
            }
            if entry.bits_len == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The map of an occupied entry.
    #[inline]
    fn map_of<'s>(&'s self, entry: &'s Entry) -> StackMap<'s> {
        match entry.bits_len {
            0 => StackMap::one_word(entry.span, 0),
            1 => StackMap::one_word(entry.span, u32::from_le_bytes(entry.bits)),
            n => {
                let start = u32::from_le_bytes(entry.bits) as usize;
                // `new` stored a bitmap that lies inside `long_maps`.
                let bits = self.long_maps.get(start..start + n as usize).unwrap_or(&[]);
                StackMap::from_parts(entry.span, bits)
            }
        }
    }

    /// Number of safepoints.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no safepoint at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The slot where probing for `return_offset` starts.
#[inline(always)]
fn home(return_offset: u32, shift: u32) -> usize {
    // `shift` is at most 31 (the capacity is at least 2).
    (return_offset.wrapping_mul(HASH) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stackmap::StackMapBuilder;

    #[test]
    fn answers_as_the_section_at_every_offset() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
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
            // The owned form outlives the bytes it was parsed from.
            let owned = {
                let copy = bytes.clone();
                StackMapTable::parse(&copy).unwrap()
            };
            assert_eq!(table.len(), section.len());
            assert_eq!(table.is_empty(), section.is_empty());
            for r in 0..offset + 100 {
                let map = table.lookup(r);
                assert_eq!(map, section.lookup(r), "case {case}, offset {r}");
                assert_eq!(owned.lookup(r), map, "case {case}, offset {r}");
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

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parse_rejects_what_the_section_rejects() {
        for bytes in [&b""[..], b"FWSM", &[0u8; 48]] {
            assert_eq!(
                StackMapTable::parse(bytes).map(|t| t.len()),
                StackMapSection::parse(bytes).map(|s| s.len()),
            );
            assert!(StackMapTable::parse(bytes).is_err());
        }
    }
}
