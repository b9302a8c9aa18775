//! Zero-copy reader of the stack-map section.
//!
//! This matches the encoding written by `builder.rs` and described in the module docs
//! of `stackmap`. [`StackMapSection::parse`] checks every invariant listed there once;
//! afterwards the accessors index the tables directly, and the indexing cannot go out
//! of bounds because of those checks (the fuzz target and the property tests exercise
//! exactly this claim).

use std::fmt;
use std::iter::FusedIterator;

use super::{
    header, SectionPart, StackMapError, FORMAT_VERSION, HEADER_SIZE, MAGIC, MAP_HEADER_WORDS,
    MAX_PAGE_SHIFT, SLOTS_PER_WORD, SLOT_SIZE,
};

/// One little-endian `u32` in the section, unaligned.
pub(super) type Word = [u8; 4];

#[inline]
fn word(w: Word) -> u32 {
    u32::from_le_bytes(w)
}

/// A parsed stack-map section, borrowing its bytes.
///
/// Construct it with [`StackMapSection::parse`]; every method after that is
/// infallible, allocation-free and O(log N) at most.
#[derive(Clone, Copy)]
pub struct StackMapSection<'a> {
    bytes: &'a [u8],
    /// Page `p` covers return offsets `r` with `r >> page_shift == p`.
    page_shift: u32,
    /// `P + 1` entries: entries `page_table[p]..page_table[p + 1]` of the index are
    /// exactly those in page `p`.
    page_table: &'a [Word],
    /// Return offsets, strictly increasing.
    index: &'a [Word],
    /// Map number of each safepoint, `< map_table.len()`.
    map_refs: &'a [Word],
    /// Word offset of each map in `map_data`; every map fits in `map_data`.
    map_table: &'a [Word],
    map_data: &'a [Word],
}

/// The stack map of one safepoint: the frame span and the live slots.
///
/// Two `StackMap`s are equal when they have the same span and the same slots.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StackMap<'a> {
    span: u32,
    /// The bitmap's first word (0 for an empty bitmap), held by value: most maps have
    /// one word, which a collector then reads without following a pointer.
    first: u32,
    /// The words after the first. The whole bitmap is minimal (empty, or its last word
    /// non-zero), so each map has exactly one representation.
    rest: &'a [Word],
}

/// Reads the `u32` at byte `at` of the header (the caller has checked the length).
fn header_field(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    word(w)
}

/// Bytes of a table of `count` words starting at `offset`; cannot overflow a `u64`
/// (`count` is at most `u32::MAX + 1`).
fn table_end(offset: u32, count: u64) -> u64 {
    u64::from(offset) + 4 * count
}

fn len_u64(bytes: &[u8]) -> u64 {
    // usize is at most 64 bits on every target Rust supports.
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

impl<'a> StackMapSection<'a> {
    /// Checks `bytes` against every invariant of the format and returns a reader over
    /// them. Runs in time linear in the size of the section and allocates nothing.
    ///
    /// # Errors
    ///
    /// A [`StackMapError`] naming the first violated invariant: wrong magic or version,
    /// a bad page shift, a table that is truncated, misaligned, overlapping or followed
    /// by trailing bytes, an index that is not strictly increasing, a page table that
    /// does not match the index, a map reference out of range or out of order, an
    /// unused map, or a map that is malformed or runs past the map data.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StackMapError> {
        let len = bytes.len();
        if let Some(found) = bytes.get(header::MAGIC..header::MAGIC + 4) {
            if found != MAGIC {
                let mut magic = [0; 4];
                magic.copy_from_slice(found);
                return Err(StackMapError::BadMagic { found: magic });
            }
        }
        if len_u64(bytes) < u64::from(HEADER_SIZE) {
            return Err(StackMapError::Truncated {
                part: SectionPart::Header,
                needed: u64::from(HEADER_SIZE),
                len,
            });
        }
        let version = header_field(bytes, header::VERSION);
        if version != FORMAT_VERSION {
            return Err(StackMapError::UnsupportedVersion { found: version });
        }
        let safepoint_count = u64::from(header_field(bytes, header::SAFEPOINT_COUNT));
        let map_count = u64::from(header_field(bytes, header::MAP_COUNT));
        let page_shift = header_field(bytes, header::PAGE_SHIFT);
        let page_count = header_field(bytes, header::PAGE_COUNT);
        let map_data_words = u64::from(header_field(bytes, header::MAP_DATA_WORDS));
        if page_shift > MAX_PAGE_SHIFT {
            return Err(StackMapError::BadPageShift { shift: page_shift });
        }

        // The tables, in the order they must appear, each 4-byte aligned, none
        // overlapping its predecessor; the last one must end the section.
        let tables = [
            (
                SectionPart::PageTable,
                header::PAGE_TABLE_OFFSET,
                u64::from(page_count) + 1,
            ),
            (SectionPart::Index, header::INDEX_OFFSET, safepoint_count),
            (
                SectionPart::MapRefs,
                header::MAP_REFS_OFFSET,
                safepoint_count,
            ),
            (SectionPart::MapTable, header::MAP_TABLE_OFFSET, map_count),
            (
                SectionPart::MapData,
                header::MAP_DATA_OFFSET,
                map_data_words,
            ),
        ];
        let mut slices: [&'a [Word]; 5] = [&[]; 5];
        let mut previous_end = u64::from(HEADER_SIZE);
        for (slot, (part, field, count)) in slices.iter_mut().zip(tables) {
            let offset = header_field(bytes, field);
            if !offset.is_multiple_of(4) {
                return Err(StackMapError::MisalignedTable { part, offset });
            }
            if u64::from(offset) < previous_end {
                return Err(StackMapError::OverlappingTable {
                    part,
                    offset,
                    previous_end,
                });
            }
            let end = table_end(offset, count);
            if end > len_u64(bytes) {
                return Err(StackMapError::Truncated {
                    part,
                    needed: end,
                    len,
                });
            }
            // Both bounds are at most `len`, so they fit a usize.
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let stop = usize::try_from(end).unwrap_or(usize::MAX);
            let (words, rest) = bytes
                .get(start..stop)
                .ok_or(StackMapError::Truncated {
                    part,
                    needed: end,
                    len,
                })?
                .as_chunks::<4>();
            debug_assert!(rest.is_empty(), "a table is a whole number of words");
            *slot = words;
            previous_end = end;
        }
        if previous_end != len_u64(bytes) {
            return Err(StackMapError::TrailingBytes {
                end: previous_end,
                len,
            });
        }
        let [page_table, index, map_refs, map_table, map_data] = slices;

        let section = StackMapSection {
            bytes,
            page_shift,
            page_table,
            index,
            map_refs,
            map_table,
            map_data,
        };
        section.check_index()?;
        section.check_page_table()?;
        section.check_maps()?;
        section.check_map_refs()?;
        Ok(section)
    }

    /// The index is strictly increasing.
    fn check_index(&self) -> Result<(), StackMapError> {
        for (entry, pair) in self.index.windows(2).enumerate() {
            let (previous, offset) = (word(pair[0]), word(pair[1]));
            if previous >= offset {
                return Err(StackMapError::UnsortedIndex {
                    entry: entry + 1,
                    previous,
                    offset,
                });
            }
        }
        Ok(())
    }

    /// The page count fits the last offset, and each page-table entry is exactly the
    /// first index entry at or after its page. Needs a sorted index.
    fn check_page_table(&self) -> Result<(), StackMapError> {
        // `page_table` has `page_count + 1 >= 1` words (checked by the table layout).
        let page_count = self.page_table.len() - 1;
        let expected_pages = self
            .index
            .last()
            .map_or(0, |&last| u64::from(word(last) >> self.page_shift) + 1);
        if page_count as u64 != expected_pages {
            return Err(StackMapError::PageCountMismatch {
                page_count: u32::try_from(page_count).unwrap_or(u32::MAX),
                expected: expected_pages,
            });
        }
        // One merged pass over pages and entries: O(P + N).
        let mut entry = 0;
        for (page, &recorded) in self.page_table.iter().enumerate() {
            while self
                .index
                .get(entry)
                .is_some_and(|&offset| ((word(offset) >> self.page_shift) as usize) < page)
            {
                entry += 1;
            }
            let recorded = word(recorded);
            if usize::try_from(recorded).ok() != Some(entry) {
                return Err(StackMapError::PageTableMismatch {
                    page: u32::try_from(page).unwrap_or(u32::MAX),
                    recorded,
                    expected: entry as u64,
                });
            }
        }
        Ok(())
    }

    /// The maps tile the map data, the map table points at each map, and each map is
    /// well formed.
    fn check_maps(&self) -> Result<(), StackMapError> {
        let data_words = self.map_data.len();
        let data_words_u32 = u32::try_from(data_words).unwrap_or(u32::MAX);
        let mut expected: usize = 0;
        for (map, &recorded) in self.map_table.iter().enumerate() {
            // `map < map_count`, which came from a u32.
            let map = u32::try_from(map).unwrap_or(u32::MAX);
            let recorded = word(recorded);
            if usize::try_from(recorded).ok() != Some(expected) {
                return Err(StackMapError::MapOffsetMismatch {
                    map,
                    recorded,
                    expected: expected as u64,
                });
            }
            let runs_past_end = |end: u64| StackMapError::MapRunsPastEnd {
                map,
                end,
                data_words: data_words_u32,
            };
            // `expected <= data_words`, so adding small constants cannot overflow.
            let (span, count) = match self.map_data.get(expected..expected + 2) {
                Some(&[span, count]) => (word(span), word(count)),
                _ => return Err(runs_past_end(expected as u64 + 2)),
            };
            let bits_start = expected + MAP_HEADER_WORDS as usize;
            let end = bits_start as u64 + u64::from(count);
            if end > data_words as u64 {
                return Err(runs_past_end(end));
            }
            // `end <= data_words`, a usize.
            let bits_end = bits_start + count as usize;
            let bits = &self.map_data[bits_start..bits_end];
            if !span.is_multiple_of(SLOT_SIZE) {
                return Err(StackMapError::MisalignedMapSpan { map, span });
            }
            if let Some(&last) = bits.last() {
                let last = word(last);
                if last == 0 {
                    return Err(StackMapError::NonCanonicalBitmap { map });
                }
                let top_bit = u64::from(last.ilog2());
                let slot_number = (bits.len() as u64 - 1) * u64::from(SLOTS_PER_WORD) + top_bit;
                let slot = slot_number * u64::from(SLOT_SIZE);
                if slot >= u64::from(span) {
                    return Err(StackMapError::MapSlotOutsideFrame { map, slot, span });
                }
            }
            expected = bits_end;
        }
        if expected != data_words {
            return Err(StackMapError::UnusedMapData {
                used: expected as u64,
                data_words: data_words_u32,
            });
        }
        Ok(())
    }

    /// Every safepoint refers to an existing map, maps are numbered in order of first
    /// use, and every map is used.
    fn check_map_refs(&self) -> Result<(), StackMapError> {
        let map_count = u32::try_from(self.map_table.len()).unwrap_or(u32::MAX);
        let mut next_new: u32 = 0;
        for (entry, &map) in self.map_refs.iter().enumerate() {
            let map = word(map);
            if map >= map_count {
                return Err(StackMapError::MapOutOfRange {
                    entry,
                    map,
                    map_count,
                });
            }
            if map > next_new {
                return Err(StackMapError::MapOrderNotCanonical {
                    entry,
                    map,
                    expected: next_new,
                });
            }
            if map == next_new {
                next_new += 1; // <= map_count, so no overflow
            }
        }
        if next_new != map_count {
            return Err(StackMapError::UnusedMap {
                map: next_new,
                map_count,
            });
        }
        Ok(())
    }

    /// The stack map of the safepoint whose return address is `return_offset` bytes
    /// from the start of `.text`, or `None` if there is none.
    ///
    /// `None` means the frame holds no live references at that call; the lookup is an
    /// exact match and never answers with a neighbouring safepoint. One page-table
    /// step, then a binary search over the safepoints of one page; no allocation.
    #[inline]
    pub fn lookup(&self, return_offset: u32) -> Option<StackMap<'a>> {
        self.find(return_offset)
            .map(|entry| self.map_of_entry(entry))
    }

    /// The index entry whose return offset is exactly `return_offset`.
    #[inline]
    fn find(&self, return_offset: u32) -> Option<usize> {
        let page = (return_offset >> self.page_shift) as usize;
        // Page `page` has no entry if `page >= P`, i.e. `page + 1` is past the table.
        let first = word(*self.page_table.get(page)?) as usize;
        let end = word(*self.page_table.get(page.checked_add(1)?)?) as usize;
        // parse: `first <= end <= N` for every page.
        let run = &self.index[first..end];
        let within = run
            .binary_search_by(|&probe| word(probe).cmp(&return_offset))
            .ok()?;
        Some(first + within)
    }

    /// The map of index entry `entry < len()`.
    #[inline]
    fn map_of_entry(&self, entry: usize) -> StackMap<'a> {
        let (span, bits_start, count) = self.map_parts(entry);
        StackMap::from_parts(span, &self.map_data[bits_start..bits_start + count])
    }

    /// The span of the map of index entry `entry < len()`, and where its bitmap lies in
    /// the map data (word offset, word count).
    #[inline]
    fn map_parts(&self, entry: usize) -> (u32, usize, usize) {
        // parse: map_refs has one word per index entry, each `< map_table.len()`.
        let map = word(self.map_refs[entry]) as usize;
        // parse: the map table points at a whole, well-formed map inside map_data.
        let start = word(self.map_table[map]) as usize;
        let span = word(self.map_data[start]);
        let count = word(self.map_data[start + 1]) as usize;
        (span, start + MAP_HEADER_WORDS as usize, count)
    }

    /// For [`StackMapTable`](super::StackMapTable): each safepoint's return offset,
    /// span, and where its bitmap lies in [`map_data`](Self::map_data) (word offset,
    /// word count).
    pub(super) fn decoded(&self) -> impl Iterator<Item = [u32; 4]> + 'a {
        let section = *self;
        (0..self.index.len()).map(move |entry| {
            let (span, bits_start, count) = section.map_parts(entry);
            // parse: the map data has at most `u32::MAX` words (its length is a header
            // field), so both fit.
            [
                word(section.index[entry]),
                span,
                bits_start as u32,
                count as u32,
            ]
        })
    }

    /// The map data words (where [`decoded`](Self::decoded) bitmaps lie).
    pub(super) fn map_data(&self) -> &'a [Word] {
        self.map_data
    }

    /// Number of safepoints.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the section has no safepoint at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of distinct maps stored (at most [`len`](Self::len); smaller when
    /// safepoints share maps).
    pub fn map_count(&self) -> usize {
        self.map_table.len()
    }

    /// All safepoints as `(return_offset, map)`, by increasing offset.
    pub fn iter(&self) -> Entries<'a> {
        Entries {
            section: *self,
            next: 0,
        }
    }

    /// The bytes the section was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl fmt::Debug for StackMapSection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackMapSection")
            .field("len", &self.len())
            .field("map_count", &self.map_count())
            .field("page_shift", &self.page_shift)
            .field("page_count", &(self.page_table.len() - 1))
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<'a> IntoIterator for &StackMapSection<'a> {
    type Item = (u32, StackMap<'a>);
    type IntoIter = Entries<'a>;

    fn into_iter(self) -> Entries<'a> {
        self.iter()
    }
}

/// Iterator over the safepoints of a section, by increasing return offset; see
/// [`StackMapSection::iter`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    section: StackMapSection<'a>,
    next: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u32, StackMap<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let offset = word(*self.section.index.get(self.next)?);
        let map = self.section.map_of_entry(self.next);
        self.next += 1;
        Some((offset, map))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.section.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Entries<'_> {}
impl FusedIterator for Entries<'_> {}

impl<'a> StackMap<'a> {
    /// A map of `span` whose bitmap is `bits` (minimal, as the section stores it).
    pub(super) fn from_parts(span: u32, bits: &'a [Word]) -> StackMap<'a> {
        match bits.split_first() {
            Some((&first, rest)) => StackMap {
                span,
                first: word(first),
                rest,
            },
            None => StackMap::one_word(span, 0),
        }
    }

    /// A map of `span` whose bitmap is the single word `first` (0: no slots).
    pub(super) fn one_word(span: u32, first: u32) -> StackMap<'a> {
        StackMap {
            span,
            first,
            rest: &[],
        }
    }

    /// Distance in bytes from the frame pointer down to the stack pointer at the call:
    /// `SP_at_call = FP - span`. Always a multiple of 8.
    pub fn span(&self) -> u32 {
        self.span
    }

    /// The live slots as byte offsets from `SP_at_call`, ascending; each is a multiple
    /// of 8 and below [`span`](Self::span). The reference is at `FP - span + slot`.
    pub fn slots(&self) -> Slots<'a> {
        Slots {
            rest: self.rest,
            word_index: 0,
            current: self.first,
            remaining: self.slot_count(),
        }
    }

    /// Calls `f` with each live slot (a byte offset from `SP_at_call`), ascending: the
    /// same slots as [`slots`](Self::slots), without counting them first.
    #[inline]
    pub fn for_each_slot(&self, mut f: impl FnMut(u32)) {
        let mut each_in = |mut bits: u32, base: u32| {
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                f((base + bit) * SLOT_SIZE);
            }
        };
        each_in(self.first, 0);
        for (j, &w) in self.rest.iter().enumerate() {
            // A valid map has its slots below a u32 span, so this cannot wrap.
            each_in(word(w), (j as u32 + 1) * SLOTS_PER_WORD);
        }
    }

    /// Number of live slots.
    pub fn slot_count(&self) -> usize {
        self.first.count_ones() as usize
            + self
                .rest
                .iter()
                .map(|&w| word(w).count_ones() as usize)
                .sum::<usize>()
    }

    /// Whether `slot` (a byte offset from `SP_at_call`) holds a live reference.
    pub fn contains(&self, slot: u32) -> bool {
        if !slot.is_multiple_of(SLOT_SIZE) {
            return false;
        }
        let n = slot / SLOT_SIZE;
        let (w, b) = ((n / SLOTS_PER_WORD) as usize, n % SLOTS_PER_WORD);
        let bits = match w.checked_sub(1) {
            None => self.first,
            Some(r) => self.rest.get(r).map_or(0, |&bits| word(bits)),
        };
        bits >> b & 1 == 1
    }
}

impl fmt::Debug for StackMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackMap")
            .field("span", &self.span)
            .field("slots", &self.slots().collect::<Vec<_>>())
            .finish()
    }
}

/// Iterator over the live slots of a [`StackMap`], ascending; see [`StackMap::slots`].
#[derive(Clone, Debug)]
pub struct Slots<'a> {
    /// The map's words after its first.
    rest: &'a [Word],
    /// Index in the whole bitmap of the word that `current` came from.
    word_index: usize,
    /// The not-yet-yielded bits of that word.
    current: u32,
    remaining: usize,
}

impl Iterator for Slots<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.current == 0 {
            self.current = word(*self.rest.get(self.word_index)?);
            self.word_index += 1;
        }
        let bit = self.current.trailing_zeros();
        self.current &= self.current - 1;
        self.remaining -= 1;
        // A valid map has its slots below a u32 span, so this cannot wrap.
        let slot_number = self.word_index as u32 * SLOTS_PER_WORD + bit;
        Some(slot_number * SLOT_SIZE)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Slots<'_> {}
impl FusedIterator for Slots<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stackmap::builder::page_layout;
    use crate::stackmap::StackMapBuilder;

    /// Writes the little-endian `u32` `value` at byte `at`.
    fn put(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn get(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// A hand-assembled section, field by field, so each test can break one thing.
    struct Raw {
        index: Vec<u32>,
        map_refs: Vec<u32>,
        maps: Vec<Vec<u32>>, // each: span, K, bits...
    }

    impl Raw {
        fn valid() -> Raw {
            Raw {
                index: vec![0x10, 0x20, 0x30],
                map_refs: vec![0, 1, 0],
                maps: vec![vec![32, 1, 0b101], vec![16, 0]],
            }
        }

        /// Lays the tables out back to back after the header, with the page table
        /// the builder would choose (computed here from its definition).
        fn encode(&self) -> Vec<u8> {
            let n = self.index.len() as u32;
            let m = self.maps.len() as u32;
            let w: u32 = self.maps.iter().map(|m| m.len() as u32).sum();
            let (shift, pages) = page_layout(self.index.len(), self.index.last().copied());
            let page_table: Vec<u32> = (0..=pages)
                .map(|p| {
                    let first = self.index.iter().position(|&o| u64::from(o >> shift) >= p);
                    first.unwrap_or(self.index.len()) as u32
                })
                .collect();
            let page_table_offset = HEADER_SIZE;
            let index_offset = page_table_offset + 4 * page_table.len() as u32;
            let refs_offset = index_offset + 4 * n;
            let table_offset = refs_offset + 4 * n;
            let data_offset = table_offset + 4 * m;
            let mut words = vec![
                u32::from_le_bytes(MAGIC),
                FORMAT_VERSION,
                n,
                m,
                shift,
                pages as u32,
                page_table_offset,
                index_offset,
                refs_offset,
                table_offset,
                data_offset,
                w,
            ];
            words.extend(&page_table);
            words.extend(&self.index);
            words.extend(&self.map_refs);
            let mut start = 0;
            for map in &self.maps {
                words.push(start);
                start += map.len() as u32;
            }
            for map in &self.maps {
                words.extend(map);
            }
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        }
    }

    /// Maps of one, two and three bitmap words, through the section and the table:
    /// every way of reading the slots agrees with the slots given to the builder.
    #[test]
    fn multi_word_maps_answer_every_query_alike() {
        let cases: [&[u32]; 5] = [
            &[],
            &[0, 8 * 31],
            &[8 * 32],
            &[0, 8 * 5, 8 * 31, 8 * 32, 8 * 63, 8 * 64, 8 * 70],
            &[8 * 95],
        ];
        let mut builder = StackMapBuilder::new();
        for (i, slots) in cases.iter().enumerate() {
            builder.add(0x100 * (i as u32 + 1), 8 * 96, slots).unwrap();
        }
        let bytes = builder.finish();
        let section = StackMapSection::parse(&bytes).unwrap();
        let table = super::super::StackMapTable::new(&section);
        for (i, slots) in cases.iter().enumerate() {
            let offset = 0x100 * (i as u32 + 1);
            for map in [
                section.lookup(offset).unwrap(),
                table.lookup(offset).unwrap(),
            ] {
                assert_eq!(map.slots().collect::<Vec<_>>(), *slots);
                assert_eq!(map.slots().len(), slots.len());
                assert_eq!(map.slot_count(), slots.len());
                let mut each = Vec::new();
                map.for_each_slot(|s| each.push(s));
                assert_eq!(each, *slots);
                for slot in (0..8 * 100).step_by(4) {
                    assert_eq!(map.contains(slot), slots.contains(&slot), "slot {slot}");
                }
            }
        }
    }

    #[test]
    fn hand_assembled_section_matches_the_documented_layout() {
        let bytes = Raw::valid().encode();
        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!(section.len(), 3);
        assert_eq!(section.map_count(), 2);
        let a = section.lookup(0x10).unwrap();
        assert_eq!((a.span(), a.slots().collect::<Vec<_>>()), (32, vec![0, 16]));
        assert_eq!(section.lookup(0x30), Some(a));
        let b = section.lookup(0x20).unwrap();
        assert_eq!((b.span(), b.slot_count()), (16, 0));
        assert_eq!(section.lookup(0x11), None);
        assert_eq!(section.lookup(0x0f), None);
        assert_eq!(section.lookup(0), None);
        assert_eq!(section.lookup(u32::MAX), None);
        assert!(a.contains(16) && !a.contains(8) && !a.contains(17) && !a.contains(4096));

        // The builder writes exactly these bytes for the same input.
        let mut builder = StackMapBuilder::new();
        builder.add(0x30, 32, &[16, 0]).unwrap();
        builder.add(0x20, 16, &[]).unwrap();
        builder.add(0x10, 32, &[0, 16]).unwrap();
        assert_eq!(builder.finish(), bytes);
    }

    #[test]
    fn empty_section() {
        let bytes = Raw {
            index: vec![],
            map_refs: vec![],
            maps: vec![],
        }
        .encode();
        assert_eq!(bytes.len(), HEADER_SIZE as usize + 4); // page_table == [0]
        let section = StackMapSection::parse(&bytes).unwrap();
        assert!(section.is_empty());
        assert_eq!(section.map_count(), 0);
        assert_eq!(section.lookup(0), None);
        assert_eq!(section.iter().count(), 0);
        assert_eq!(StackMapBuilder::new().finish(), bytes);
    }

    #[test]
    fn bad_magic_and_short_inputs() {
        assert_eq!(
            StackMapSection::parse(b"ELF\x7f and more").unwrap_err(),
            StackMapError::BadMagic { found: *b"ELF\x7f" }
        );
        for len in 0..HEADER_SIZE as usize {
            let bytes = &Raw::valid().encode()[..len];
            assert_eq!(
                StackMapSection::parse(bytes).unwrap_err(),
                StackMapError::Truncated {
                    part: SectionPart::Header,
                    needed: 48,
                    len
                },
                "length {len}"
            );
        }
    }

    #[test]
    fn unsupported_version() {
        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::VERSION, 2);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::UnsupportedVersion { found: 2 }
        );
    }

    #[test]
    fn every_truncation_is_reported() {
        let bytes = Raw::valid().encode();
        for len in HEADER_SIZE as usize..bytes.len() {
            let err = StackMapSection::parse(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, StackMapError::Truncated { len: l, .. } if l == len),
                "length {len}: {err}"
            );
        }
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = Raw::valid().encode();
        let end = bytes.len();
        bytes.extend([0; 4]);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::TrailingBytes {
                end: end as u64,
                len: end + 4
            }
        );
    }

    #[test]
    fn huge_counts_are_truncation_not_overflow() {
        for field in [
            header::SAFEPOINT_COUNT,
            header::MAP_COUNT,
            header::MAP_DATA_WORDS,
        ] {
            for value in [u32::MAX, u32::MAX / 4 + 1, 1 << 30] {
                let mut bytes = Raw::valid().encode();
                put(&mut bytes, field, value);
                let err = StackMapSection::parse(&bytes).unwrap_err();
                assert!(
                    matches!(err, StackMapError::Truncated { needed, .. } if needed > bytes.len() as u64),
                    "field {field} = {value}: {err}"
                );
            }
        }
        // Offsets at the top of the u32 range with huge counts: still u64 arithmetic.
        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::INDEX_OFFSET, u32::MAX - 3);
        put(&mut bytes, header::SAFEPOINT_COUNT, u32::MAX);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::Truncated {
                part: SectionPart::Index,
                needed: u64::from(u32::MAX - 3) + 4 * u64::from(u32::MAX),
                len: bytes.len()
            }
        );
    }

    #[test]
    fn zero_counts_with_leftover_tables_are_rejected() {
        // Claim zero safepoints but keep the tables: the page count no longer fits.
        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::SAFEPOINT_COUNT, 0);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::PageCountMismatch {
                page_count: 1,
                expected: 0
            }
        );
    }

    #[test]
    fn misaligned_and_overlapping_tables() {
        let mut bytes = Raw::valid().encode();
        let refs = get(&bytes, header::MAP_REFS_OFFSET);
        put(&mut bytes, header::MAP_REFS_OFFSET, refs + 2);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::MisalignedTable {
                part: SectionPart::MapRefs,
                offset: refs + 2
            }
        );

        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::MAP_REFS_OFFSET, refs - 4);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::OverlappingTable {
                part: SectionPart::MapRefs,
                offset: refs - 4,
                previous_end: u64::from(refs)
            }
        );

        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::PAGE_TABLE_OFFSET, 0);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::OverlappingTable {
                part: SectionPart::PageTable,
                offset: 0,
                previous_end: u64::from(HEADER_SIZE)
            }
        );
    }

    #[test]
    fn bad_page_shift_and_page_count() {
        let mut bytes = Raw::valid().encode();
        put(&mut bytes, header::PAGE_SHIFT, 32);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::BadPageShift { shift: 32 }
        );

        // Index 0x10, 0x20, 0x30 with shift 6: one page. Claim shift 4 instead: the
        // last offset 0x30 is then in page 3, so 4 pages are needed.
        let mut bytes = Raw::valid().encode();
        assert_eq!(get(&bytes, header::PAGE_SHIFT), 6);
        put(&mut bytes, header::PAGE_SHIFT, 4);
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::PageCountMismatch {
                page_count: 1,
                expected: 4
            }
        );
    }

    #[test]
    fn page_table_must_match_the_index() {
        // A valid section with shift 4 and 4 pages: [0, 0, 1, 2, 3] for offsets
        // 0x10, 0x20, 0x30 (pages 1, 2, 3; page 0 empty).
        let raw = Raw::valid();
        let mut bytes = raw.encode();
        let table = get(&bytes, header::PAGE_TABLE_OFFSET) as usize;
        let index = get(&bytes, header::INDEX_OFFSET) as usize;
        // Grow the page table from 2 to 5 words, then fix the later table offsets.
        let words: Vec<u8> = [0u32, 0, 1, 2, 3]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        bytes.splice(table..index, words);
        for field in [
            header::INDEX_OFFSET,
            header::MAP_REFS_OFFSET,
            header::MAP_TABLE_OFFSET,
            header::MAP_DATA_OFFSET,
        ] {
            let moved = get(&bytes, field) + 12;
            put(&mut bytes, field, moved);
        }
        put(&mut bytes, header::PAGE_SHIFT, 4);
        put(&mut bytes, header::PAGE_COUNT, 4);
        let section = StackMapSection::parse(&bytes).unwrap();
        for offset in [0x10, 0x20, 0x30] {
            assert!(section.lookup(offset).is_some());
        }
        assert_eq!(section.lookup(0x0), None);
        assert_eq!(section.lookup(0x31), None);
        assert_eq!(section.lookup(0x40), None); // page 4: past the table

        // Page 2 said to start at entry 0: lookups of 0x10 would search page 2.
        let mut wrong = bytes.clone();
        put(&mut wrong, table + 8, 0);
        assert_eq!(
            StackMapSection::parse(&wrong).unwrap_err(),
            StackMapError::PageTableMismatch {
                page: 2,
                recorded: 0,
                expected: 1
            }
        );
        // The last entry must be N.
        let mut wrong = bytes.clone();
        put(&mut wrong, table + 16, 2);
        assert_eq!(
            StackMapSection::parse(&wrong).unwrap_err(),
            StackMapError::PageTableMismatch {
                page: 4,
                recorded: 2,
                expected: 3
            }
        );
        // A page table pointing past the index.
        let mut wrong = bytes;
        put(&mut wrong, table + 4, u32::MAX);
        assert_eq!(
            StackMapSection::parse(&wrong).unwrap_err(),
            StackMapError::PageTableMismatch {
                page: 1,
                recorded: u32::MAX,
                expected: 0
            }
        );
    }

    #[test]
    fn gaps_between_tables_are_accepted() {
        // Move the map data 8 bytes further, keeping the section consistent.
        let mut bytes = Raw::valid().encode();
        let data = get(&bytes, header::MAP_DATA_OFFSET) as usize;
        bytes.splice(data..data, [0xAA; 8]);
        put(&mut bytes, header::MAP_DATA_OFFSET, data as u32 + 8);
        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!(section.lookup(0x20).unwrap().span(), 16);
    }

    #[test]
    fn unsorted_index() {
        let mut raw = Raw::valid();
        raw.index = vec![0x10, 0x30, 0x20];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::UnsortedIndex {
                entry: 2,
                previous: 0x30,
                offset: 0x20
            }
        );
        raw.index = vec![0x10, 0x10, 0x20];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::UnsortedIndex {
                entry: 1,
                previous: 0x10,
                offset: 0x10
            }
        );
    }

    #[test]
    fn map_references_out_of_range() {
        let mut raw = Raw::valid();
        raw.map_refs = vec![0, 1, 2];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapOutOfRange {
                entry: 2,
                map: 2,
                map_count: 2
            }
        );
        raw.map_refs = vec![0, u32::MAX, 1];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapOutOfRange {
                entry: 1,
                map: u32::MAX,
                map_count: 2
            }
        );
    }

    #[test]
    fn map_order_and_unused_maps() {
        let mut raw = Raw::valid();
        raw.map_refs = vec![1, 0, 0];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapOrderNotCanonical {
                entry: 0,
                map: 1,
                expected: 0
            }
        );
        raw.map_refs = vec![0, 0, 0];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::UnusedMap {
                map: 1,
                map_count: 2
            }
        );
    }

    #[test]
    fn map_table_must_point_at_each_map() {
        let mut bytes = Raw::valid().encode();
        let table = get(&bytes, header::MAP_TABLE_OFFSET) as usize;
        put(&mut bytes, table + 4, 4); // map 1 really starts at word 3
        assert_eq!(
            StackMapSection::parse(&bytes).unwrap_err(),
            StackMapError::MapOffsetMismatch {
                map: 1,
                recorded: 4,
                expected: 3
            }
        );
    }

    #[test]
    fn maps_running_past_the_end() {
        // The bitmap word count of the last map points past the map data.
        let mut raw = Raw::valid();
        raw.maps[1] = vec![16, 5, 1];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapRunsPastEnd {
                map: 1,
                end: 3 + 2 + 5,
                data_words: 6
            }
        );
        let mut raw = Raw::valid();
        raw.maps[1] = vec![16, u32::MAX];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapRunsPastEnd {
                map: 1,
                end: 3 + 2 + u64::from(u32::MAX),
                data_words: 5
            }
        );
        // A map header cut in half.
        let mut raw = Raw::valid();
        raw.maps[1] = vec![16];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapRunsPastEnd {
                map: 1,
                end: 5,
                data_words: 4
            }
        );
    }

    #[test]
    fn leftover_map_data() {
        let mut raw = Raw::valid();
        raw.maps[1] = vec![16, 0, 7];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::UnusedMapData {
                used: 5,
                data_words: 6
            }
        );
    }

    #[test]
    fn malformed_maps() {
        let mut raw = Raw::valid();
        raw.maps[0] = vec![32, 2, 0b101, 0];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::NonCanonicalBitmap { map: 0 }
        );
        let mut raw = Raw::valid();
        raw.maps[0] = vec![36, 1, 0b101];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MisalignedMapSpan { map: 0, span: 36 }
        );
        let mut raw = Raw::valid();
        raw.maps[0] = vec![16, 1, 0b101];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapSlotOutsideFrame {
                map: 0,
                slot: 16,
                span: 16
            }
        );
        // The highest representable slot of a huge bitmap, far beyond any u32 span.
        let mut raw = Raw::valid();
        raw.maps[1] = vec![u32::MAX - 7, 1, 1 << 31];
        let bytes = raw.encode();
        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!(
            section.lookup(0x20).unwrap().slots().collect::<Vec<_>>(),
            [31 * 8]
        );
        let mut raw = Raw::valid();
        raw.maps[1] = vec![8, 2, 0, 1];
        assert_eq!(
            StackMapSection::parse(&raw.encode()).unwrap_err(),
            StackMapError::MapSlotOutsideFrame {
                map: 1,
                slot: 256,
                span: 8
            }
        );
    }

    /// A slot number that does not fit a u32 byte offset: 64 MiB of bitmap.
    #[test]
    #[cfg_attr(miri, ignore = "allocates and scans 64 MiB")]
    fn slot_beyond_u32_in_a_huge_bitmap() {
        let mut raw = Raw::valid();
        let mut big = vec![u32::MAX - 7, 1 << 24];
        big.extend(std::iter::repeat_n(0, (1 << 24) - 1));
        big.push(1 << 31);
        raw.maps[1] = big;
        let err = StackMapSection::parse(&raw.encode()).unwrap_err();
        assert_eq!(
            err,
            StackMapError::MapSlotOutsideFrame {
                map: 1,
                slot: ((1u64 << 24) * 32 - 1) * 8,
                span: u32::MAX - 7
            }
        );
    }

    #[test]
    fn slots_across_several_words() {
        let mut raw = Raw::valid();
        // Slots 0, 31*8, 32*8 (word 1 bit 0), 95*8 (word 2 bit 31).
        raw.maps[0] = vec![1024, 3, 1 | 1 << 31, 1, 1 << 31];
        let bytes = raw.encode();
        let map = StackMapSection::parse(&bytes)
            .unwrap()
            .lookup(0x10)
            .unwrap();
        assert_eq!(map.slots().collect::<Vec<_>>(), [0, 248, 256, 760]);
        assert_eq!(map.slot_count(), 4);
        let mut slots = map.slots();
        assert_eq!(slots.len(), 4);
        slots.next();
        assert_eq!(slots.len(), 3);
        assert_eq!(slots.by_ref().count(), 3);
        assert_eq!(slots.next(), None);
        assert_eq!(
            format!("{map:?}"),
            "StackMap { span: 1024, slots: [0, 248, 256, 760] }"
        );
    }

    #[test]
    fn errors_display_their_fields() {
        let err = StackMapError::UnsortedIndex {
            entry: 2,
            previous: 0x30,
            offset: 0x20,
        };
        assert_eq!(
            err.to_string(),
            "stack-map index is not strictly increasing: entry 2 is 0x20, after 0x30"
        );
        let err = StackMapError::TrailingBytes { end: 40, len: 44 };
        assert!(err.to_string().contains("4 trailing bytes"), "{err}");
    }
}
