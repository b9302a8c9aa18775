//! Writer of the stack-map section.
//!
//! This writes the encoding described in the module docs of `stackmap` and read by
//! `reader.rs`: header, page table, sorted index, map references, map table, map data,
//! back to back. The output is deterministic: the same set of safepoints (in any
//! insertion order) always gives the same bytes.

use std::collections::{BTreeMap, HashMap};

use super::{
    StackMapError, FORMAT_VERSION, HEADER_SIZE, MAGIC, MAP_HEADER_WORDS, MAX_PAGE_SHIFT,
    MIN_ENTRIES_PER_PAGE, SLOTS_PER_WORD, SLOT_SIZE,
};

/// One safepoint as a compiler reports it: plain data, so any code generator (any
/// Cranelift version, or another compiler) can feed [`StackMapBuilder`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Safepoint {
    /// Offset of the return address of the call from the start of the code the section
    /// describes (the module's text), i.e. what a walk finds at `[FP + 8]` of the
    /// callee minus the text start.
    pub return_offset: u32,
    /// The frame's span: its FP minus its SP at the call (a multiple of 8).
    pub span: u32,
    /// Byte offsets up from the SP at the call of the slots that hold live references
    /// (multiples of 8, each below `span`, in any order).
    pub slots: Vec<u32>,
}

/// One distinct map: span and minimal bitmap (empty, or last word non-zero).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MapKey {
    span: u32,
    bits: Box<[u32]>,
}

impl MapKey {
    /// Words the map takes in the map data.
    fn words(&self) -> u64 {
        u64::from(MAP_HEADER_WORDS) + self.bits.len() as u64
    }
}

/// Collects the safepoints of a module and serializes them as a stack-map section.
///
/// Identical maps (same span, same slot set) are stored once, in the builder as in the
/// section: memory use is one `BTreeMap` entry per safepoint plus the distinct maps.
#[derive(Clone, Debug)]
pub struct StackMapBuilder {
    /// Return offset -> number of its map in `maps`.
    safepoints: BTreeMap<u32, u32>,
    /// Distinct maps, numbered in order of insertion.
    maps: Vec<MapKey>,
    interned: HashMap<MapKey, u32>,
    /// An upper bound on the size in bytes of either encoding (with or without
    /// deduplication); kept `<= size_limit` so that `finish` cannot fail.
    size_bound: u64,
    /// `u32::MAX`: every offset in the format is a u32. Lowered only by tests.
    size_limit: u64,
}

/// The page layout for `count` safepoints whose largest return offset is `last`: the
/// smallest shift that gives at most `count / MIN_ENTRIES_PER_PAGE` pages (at least
/// one), and the resulting page count (0 without safepoints).
pub(super) fn page_layout(count: usize, last: Option<u32>) -> (u32, u64) {
    let Some(last) = last else { return (0, 0) };
    let wanted = (count / MIN_ENTRIES_PER_PAGE).max(1) as u64;
    let pages = |shift: u32| u64::from(last >> shift) + 1;
    let mut shift = 0;
    while shift < MAX_PAGE_SHIFT && pages(shift) > wanted {
        shift += 1;
    }
    (shift, pages(shift))
}

impl Default for StackMapBuilder {
    fn default() -> Self {
        StackMapBuilder::new()
    }
}

impl StackMapBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StackMapBuilder {
            safepoints: BTreeMap::new(),
            maps: Vec::new(),
            interned: HashMap::new(),
            // The header and 3 page-table words. The page table has P + 1 words, at
            // most max(3, N / 2 + 1) (see `page_layout`), so these 3 words plus the
            // one page-table word that `add` counts per safepoint bound it.
            size_bound: u64::from(HEADER_SIZE) + 4 * 3,
            size_limit: u64::from(u32::MAX),
        }
    }

    /// Adds one safepoint: the call whose return address is `return_offset` bytes
    /// from the start of `.text`, in a frame with `span = FP - SP_at_call`, with live
    /// references at the byte offsets `slots` from `SP_at_call`.
    ///
    /// Offsets may be added in any order; `slots` may be in any order, and a repeated
    /// slot counts once. On error nothing is added.
    ///
    /// # Errors
    ///
    /// [`DuplicateOffset`](StackMapError::DuplicateOffset) if `return_offset` was added
    /// before; [`MisalignedSpan`](StackMapError::MisalignedSpan) and
    /// [`MisalignedSlot`](StackMapError::MisalignedSlot) for a value that is not a
    /// multiple of 8; [`SlotOutsideFrame`](StackMapError::SlotOutsideFrame) for a slot
    /// `>= span`; [`SectionTooLarge`](StackMapError::SectionTooLarge) if the section
    /// could exceed 4 GiB.
    pub fn add(
        &mut self,
        return_offset: u32,
        span: u32,
        slots: &[u32],
    ) -> Result<(), StackMapError> {
        if self.safepoints.contains_key(&return_offset) {
            return Err(StackMapError::DuplicateOffset { return_offset });
        }
        if !span.is_multiple_of(SLOT_SIZE) {
            return Err(StackMapError::MisalignedSpan {
                return_offset,
                span,
            });
        }
        let mut highest: Option<u32> = None;
        for &slot in slots {
            if !slot.is_multiple_of(SLOT_SIZE) {
                return Err(StackMapError::MisalignedSlot {
                    return_offset,
                    slot,
                });
            }
            if slot >= span {
                return Err(StackMapError::SlotOutsideFrame {
                    return_offset,
                    slot,
                    span,
                });
            }
            highest = highest.max(Some(slot));
        }
        // Minimal bitmap: just enough words for the highest slot.
        let word_count = highest.map_or(0, |h| (h / SLOT_SIZE / SLOTS_PER_WORD) as usize + 1);
        let mut bits = vec![0u32; word_count].into_boxed_slice();
        for &slot in slots {
            let n = slot / SLOT_SIZE;
            bits[(n / SLOTS_PER_WORD) as usize] |= 1 << (n % SLOTS_PER_WORD);
        }
        let key = MapKey { span, bits };

        // Index word + map-ref word + page-table word (a bound, see `new`) +
        // map-table word + the map itself.
        let size = self.size_bound + 4 * (4 + key.words());
        if size > self.size_limit {
            return Err(StackMapError::SectionTooLarge { size });
        }

        let map = match self.interned.get(&key) {
            Some(&map) => map,
            None => {
                // At most one map per safepoint, and safepoints are distinct u32s.
                let map = u32::try_from(self.maps.len())
                    .map_err(|_| StackMapError::SectionTooLarge { size })?;
                self.maps.push(key.clone());
                self.interned.insert(key, map);
                map
            }
        };
        self.safepoints.insert(return_offset, map);
        self.size_bound = size;
        Ok(())
    }

    /// [`add`](Self::add)s one safepoint.
    ///
    /// # Errors
    ///
    /// As for [`add`](Self::add).
    pub fn add_safepoint(&mut self, safepoint: &Safepoint) -> Result<(), StackMapError> {
        self.add(safepoint.return_offset, safepoint.span, &safepoint.slots)
    }

    /// Number of safepoints added.
    pub fn len(&self) -> usize {
        self.safepoints.len()
    }

    /// Whether no safepoint was added.
    pub fn is_empty(&self) -> bool {
        self.safepoints.is_empty()
    }

    /// Number of distinct maps among the safepoints added.
    pub fn distinct_maps(&self) -> usize {
        self.maps.len()
    }

    /// Size in bytes of the section [`finish_with(dedup)`](Self::finish_with) would
    /// write now; compare both to measure what deduplication saves.
    pub fn encoded_len(&self, dedup: bool) -> usize {
        let n = self.safepoints.len() as u64;
        let (_, pages) = page_layout(self.safepoints.len(), self.last_offset());
        let maps: u64 = if dedup {
            self.maps.iter().map(|m| 4 * (1 + m.words())).sum()
        } else {
            self.safepoints
                .values()
                .map(|&m| 4 * (1 + self.maps[m as usize].words()))
                .sum()
        };
        let size = u64::from(HEADER_SIZE) + 4 * (pages + 1) + 8 * n + maps;
        // `add` keeps this <= its bound on the undeduplicated size, <= u32::MAX.
        debug_assert!(size <= self.size_bound, "size_bound must bound the size");
        usize::try_from(size).unwrap_or(usize::MAX)
    }

    fn last_offset(&self) -> Option<u32> {
        self.safepoints.last_key_value().map(|(&offset, _)| offset)
    }

    /// Serializes the section, storing identical maps once.
    pub fn finish(self) -> Vec<u8> {
        self.finish_with(true)
    }

    /// Serializes the section; with `dedup == false` every safepoint gets its own copy
    /// of its map (still a valid section). That mode exists to measure the effect of
    /// deduplication.
    ///
    /// Cannot fail: [`add`](Self::add) refuses any safepoint that would take either
    /// encoding past the format's 32-bit offsets.
    pub fn finish_with(self, dedup: bool) -> Vec<u8> {
        const UNNUMBERED: u32 = u32::MAX;
        // `add` bounded the section by u32::MAX bytes, so every count, offset and
        // word count below fits a u32.
        let to_u32 = |x: u64| u32::try_from(x).expect("add() bounds the section size");
        let expected_len = self.encoded_len(dedup);

        // Number the maps in order of first use by the sorted index (the reader
        // checks this order), and give each safepoint its map number.
        let mut number = vec![UNNUMBERED; self.maps.len()];
        let mut written: Vec<&MapKey> = Vec::new();
        let mut map_refs: Vec<u32> = Vec::with_capacity(self.safepoints.len());
        for &map in self.safepoints.values() {
            let map = map as usize;
            if !dedup || number[map] == UNNUMBERED {
                number[map] = to_u32(written.len() as u64);
                written.push(&self.maps[map]);
            }
            map_refs.push(number[map]);
        }

        let n = self.safepoints.len() as u64;
        let m = written.len() as u64;
        let (page_shift, page_count) = page_layout(self.safepoints.len(), self.last_offset());
        let data_words: u64 = written.iter().map(|map| map.words()).sum();
        let page_table_offset = u64::from(HEADER_SIZE);
        let index_offset = page_table_offset + 4 * (page_count + 1);
        let map_refs_offset = index_offset + 4 * n;
        let map_table_offset = map_refs_offset + 4 * n;
        let map_data_offset = map_table_offset + 4 * m;

        let mut out = Vec::with_capacity(expected_len);
        let mut put = |value: u32| out.extend_from_slice(&value.to_le_bytes());
        put(u32::from_le_bytes(MAGIC));
        put(FORMAT_VERSION);
        put(to_u32(n));
        put(to_u32(m));
        put(page_shift);
        put(to_u32(page_count));
        put(to_u32(page_table_offset));
        put(to_u32(index_offset));
        put(to_u32(map_refs_offset));
        put(to_u32(map_table_offset));
        put(to_u32(map_data_offset));
        put(to_u32(data_words));
        // page_table[p] = first entry whose page is >= p, for p in 0..=P.
        let mut entry: u64 = 0;
        let mut offsets = self.safepoints.keys().peekable();
        for page in 0..=page_count {
            while offsets
                .next_if(|&&o| u64::from(o >> page_shift) < page)
                .is_some()
            {
                entry += 1;
            }
            put(to_u32(entry));
        }
        for &offset in self.safepoints.keys() {
            put(offset);
        }
        for &map in &map_refs {
            put(map);
        }
        let mut start = 0;
        for map in &written {
            put(to_u32(start));
            start += map.words();
        }
        for map in &written {
            put(map.span);
            put(to_u32(map.bits.len() as u64));
            for &bits in &map.bits {
                put(bits);
            }
        }
        debug_assert_eq!(out.len(), expected_len, "encoded_len must match finish");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stackmap::StackMapSection;

    fn slots_of(section: &StackMapSection<'_>, offset: u32) -> Option<(u32, Vec<u32>)> {
        section
            .lookup(offset)
            .map(|m| (m.span(), m.slots().collect()))
    }

    #[test]
    fn round_trip_in_any_insertion_order() {
        let input: [(u32, u32, &[u32]); 5] = [
            (0x400, 64, &[8, 56]),
            (0x12, 16, &[]),
            (0x13, 2048, &[0, 8, 248, 256, 2040]),
            (u32::MAX, 64, &[56, 8]),
            (0, 8, &[0]),
        ];
        let mut forward = StackMapBuilder::new();
        let mut backward = StackMapBuilder::new();
        for &(offset, span, slots) in &input {
            forward.add(offset, span, slots).unwrap();
        }
        for &(offset, span, slots) in input.iter().rev() {
            backward.add(offset, span, slots).unwrap();
        }
        assert_eq!(forward.len(), 5);
        assert_eq!(forward.distinct_maps(), 4);
        let bytes = forward.finish();
        assert_eq!(bytes, backward.finish(), "output is canonical");

        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!(section.len(), 5);
        assert_eq!(section.map_count(), 4);
        assert_eq!(section.bytes(), &bytes[..]);
        for &(offset, span, slots) in &input {
            let mut sorted = slots.to_vec();
            sorted.sort_unstable();
            assert_eq!(slots_of(&section, offset), Some((span, sorted)));
        }
        for missing in [1, 0x11, 0x14, 0x3ff, 0x401, u32::MAX - 1] {
            assert_eq!(slots_of(&section, missing), None, "{missing:#x}");
        }
        let offsets: Vec<u32> = section.iter().map(|(o, _)| o).collect();
        assert_eq!(offsets, [0, 0x12, 0x13, 0x400, u32::MAX]);
    }

    #[test]
    fn identical_maps_are_stored_once() {
        let mut builder = StackMapBuilder::new();
        for i in 0..100u32 {
            builder.add(i * 16, 64, &[8, 16]).unwrap();
        }
        builder.add(5000, 64, &[16, 8, 8]).unwrap(); // the same set
        builder.add(5001, 72, &[8, 16]).unwrap(); // another span
        builder.add(5002, 64, &[8]).unwrap(); // another set
        assert_eq!(builder.distinct_maps(), 3);
        let deduped_len = builder.encoded_len(true);
        let plain_len = builder.encoded_len(false);
        let deduped = builder.clone().finish();
        let plain = builder.finish_with(false);
        assert_eq!((deduped.len(), plain.len()), (deduped_len, plain_len));
        // Each map stored once less saves its 3 words and its map-table word.
        assert_eq!(plain.len() - deduped.len(), (103 - 3) * 16);

        let a = StackMapSection::parse(&deduped).unwrap();
        let b = StackMapSection::parse(&plain).unwrap();
        assert_eq!((a.map_count(), b.map_count()), (3, 103));
        assert!(a.iter().eq(b.iter()), "dedup changes no answer");
    }

    #[test]
    fn page_layout_gives_about_two_safepoints_per_page() {
        assert_eq!(page_layout(0, None), (0, 0));
        // Fewer than 4 safepoints: one page holding them all.
        assert_eq!(page_layout(1, Some(0)), (0, 1));
        assert_eq!(page_layout(3, Some(0x1234)), (13, 1));
        // 15 safepoints: at most 7 pages, the smallest that do.
        assert_eq!(page_layout(15, Some(0x1234)), (10, 5));
        assert_eq!(page_layout(1, Some(u32::MAX)), (31, 2));
        // 100,000 safepoints up to 6.4 MB of code: at most 50,000 pages.
        let (shift, pages) = page_layout(100_000, Some(6_400_000));
        assert_eq!((shift, pages), (8, 25001));
        assert!(pages <= 100_000 / 2 && (6_400_000u64 >> (shift - 1)) + 1 > 50_000);
    }

    #[test]
    fn pages_split_the_index() {
        // 64 safepoints 16 bytes apart, then one far away: at most 32 pages.
        let mut builder = StackMapBuilder::new();
        for i in 0..64u32 {
            builder.add(i * 16, 16, &[8]).unwrap();
        }
        builder.add(0x10_0000, 16, &[]).unwrap();
        let bytes = builder.finish();
        let section = StackMapSection::parse(&bytes).unwrap();
        for i in 0..64u32 {
            assert_eq!(slots_of(&section, i * 16), Some((16, vec![8])));
            assert_eq!(slots_of(&section, i * 16 + 8), None);
        }
        assert_eq!(slots_of(&section, 0x10_0000), Some((16, vec![])));
        assert_eq!(slots_of(&section, 0x10_0010), None);
        assert_eq!(slots_of(&section, 0x0f_fff0), None);
        assert!(
            format!("{section:?}").contains("page_shift: 16"),
            "{section:?}"
        );
    }

    #[test]
    fn duplicate_offset_is_an_error_and_adds_nothing() {
        let mut builder = StackMapBuilder::new();
        builder.add(0x40, 32, &[0]).unwrap();
        assert_eq!(
            builder.add(0x40, 32, &[0]),
            Err(StackMapError::DuplicateOffset {
                return_offset: 0x40
            })
        );
        assert_eq!(builder.len(), 1);
    }

    #[test]
    fn bad_slots_and_spans_are_errors_and_add_nothing() {
        let mut builder = StackMapBuilder::new();
        assert_eq!(
            builder.add(1, 32, &[0, 12]),
            Err(StackMapError::MisalignedSlot {
                return_offset: 1,
                slot: 12
            })
        );
        assert_eq!(
            builder.add(2, 32, &[0, 32]),
            Err(StackMapError::SlotOutsideFrame {
                return_offset: 2,
                slot: 32,
                span: 32
            })
        );
        assert_eq!(
            builder.add(3, 0, &[0]),
            Err(StackMapError::SlotOutsideFrame {
                return_offset: 3,
                slot: 0,
                span: 0
            })
        );
        assert_eq!(
            builder.add(4, 20, &[]),
            Err(StackMapError::MisalignedSpan {
                return_offset: 4,
                span: 20
            })
        );
        assert!(builder.is_empty());
        assert_eq!(builder.distinct_maps(), 0);
        // The offsets that failed are still free.
        builder.add(1, 32, &[0]).unwrap();
        assert_eq!(builder.len(), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "allocates, hashes and scans a 64 MiB bitmap")]
    fn highest_slot_of_the_largest_span() {
        let span = u32::MAX - 7; // the largest multiple of 8
        let top = span - 8;
        let mut builder = StackMapBuilder::new();
        builder.add(7, span, &[top, 0]).unwrap();
        let expected_len = builder.encoded_len(true);
        let bytes = builder.finish();
        assert_eq!(bytes.len(), expected_len);
        // Slot number 2^29 - 2 sits in bitmap word 2^24 - 1.
        assert!(bytes.len() > 4 << 24);
        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!(slots_of(&section, 7), Some((span, vec![0, top])));
    }

    #[test]
    fn section_too_large_is_an_error_not_a_panic() {
        // The real limit is 4 GiB; the size arithmetic is the same with a small one.
        let mut builder = StackMapBuilder::new();
        for offset in 0..10 {
            builder.add(offset, 64, &[8]).unwrap();
        }
        builder.size_limit = builder.size_bound;
        let err = builder.add(10, 64, &[8]).unwrap_err();
        assert!(
            matches!(err, StackMapError::SectionTooLarge { size } if size > builder.size_limit),
            "{err}"
        );
        assert_eq!(builder.len(), 10);
        assert!(builder.encoded_len(false) <= builder.size_limit as usize);
        let bytes = builder.finish_with(false);
        let section = StackMapSection::parse(&bytes).unwrap();
        assert_eq!((section.len(), section.map_count()), (10, 10));
    }

    #[test]
    fn default_is_new() {
        let builder = StackMapBuilder::default();
        assert_eq!(builder.encoded_len(false), 48 + 4);
        assert_eq!(builder.finish(), StackMapBuilder::new().finish());
    }
}
