//! The stack-map section: for every safepoint in compiled wasm code, the stack slots
//! that hold live references (`externref`s) while the call is in progress.
//!
//! A safepoint is the return address of a (non-tail) call. The collector walks the
//! wasm frames of every activation, and for each frame looks up the frame's return
//! address in this section; the answer says which words of the frame are roots.
//!
//! This module is pure data: it knows nothing about compiling, loading or walking
//! code. [`StackMapBuilder`] writes a section, [`StackMapSection`] reads one in place
//! (zero-copy over the bytes, no allocation, no `unsafe`), and [`StackMapTable`]
//! decodes a parsed section once into a hash table for collectors that look up every
//! frame (same answers, one hashed load per lookup).
//!
//! # The frame at a safepoint (x86-64, frame pointers preserved)
//!
//! ```text
//!              higher addresses
//!        |                            |
//!        +----------------------------+
//!        | return address into caller |  FP + 8
//!        +----------------------------+
//!   FP ->| caller's FP                |
//!        +----------------------------+
//!        | callee-saved registers     |
//!        | spill slots, stack slots   |
//!        |   ...                      |
//!        | live reference             |  FP - span + slot_offset
//!        |   ...                      |
//!        | outgoing arguments         |
//!        +----------------------------+  <- SP_at_call = FP - span
//!        | return address (callee)    |     (the callee's frame starts here)
//!              lower addresses
//! ```
//!
//! Each safepoint records the frame's `span`, the distance from FP down to the SP at
//! the call, and the set of live slots as byte offsets *up* from `SP_at_call`. A live
//! reference therefore sits at `FP - span + slot_offset`. Offsets are multiples of 8
//! and below `span`, so every slot lies inside the frame, under the saved FP.
//!
//! # Section layout (version 1)
//!
//! All fields are little-endian `u32`s, whatever the host: the section can be written
//! on one machine and read on another. Offsets in the header are byte offsets from the
//! start of the section; offsets inside the map data are counted in 4-byte words.
//!
//! ```text
//!  byte
//!     0 +-------------------------------+
//!       | magic            "FWSM"       |
//!     4 | version          1            |
//!     8 | safepoint_count  N            |
//!    12 | map_count        M            |
//!    16 | page_shift       S  (<= 31)   |
//!    20 | page_count       P            |
//!    24 | page_table_offset ------------+--> page table, P + 1 x u32
//!    28 | index_offset     -------------+--> return offsets, N x u32, strictly increasing
//!    32 | map_refs_offset  -------------+--> map numbers, N x u32 (parallel to the index)
//!    36 | map_table_offset -------------+--> map starts, M x u32 (word offset in map data)
//!    40 | map_data_offset  -------------+--> map data, W x u32
//!    44 | map_data_words   W            |
//!    48 +-------------------------------+
//!       | page_table[0..=P]             |  page_table[p] = first entry i whose
//!       |                               |  index[i] >> S >= p
//!       +-------------------------------+
//!       | index[0..N]                   |  index[i] = return address of safepoint i,
//!       |                               |  relative to the start of `.text`
//!       +-------------------------------+
//!       | map_refs[0..N]                |  map_refs[i] = number (< M) of the map of
//!       |                               |  safepoint i
//!       +-------------------------------+
//!       | map_table[0..M]               |  map_table[m] = word offset of map m
//!       +-------------------------------+
//!       | map data: M maps, back to back|
//!       +-------------------------------+  <- end of section (no trailing bytes)
//!
//!  one map, at word offset map_table[m] in the map data:
//!       +-------------+-------------+---------+---------+-----+-----------+
//!       | span        | words K     | bits[0] | bits[1] | ... | bits[K-1] |
//!       +-------------+-------------+---------+---------+-----+-----------+
//!       bit b of bits[j] set  <=>  a live reference at slot offset 8 * (32 * j + b)
//! ```
//!
//! The builder places the tables one after another in the order shown, starting at
//! byte 48; a reader accepts any placement that keeps them in that order, 4-byte
//! aligned, without overlap, with the map data ending exactly at the end of the section.
//!
//! # Lookup
//!
//! A lookup of return offset `r` reads `page_table[r >> S]` and `page_table[(r >> S) + 1]`,
//! which bound the entries of the page (the `2^S` bytes of `.text`) that holds `r`, and
//! binary-searches that short run of the index. The builder picks the smallest `S` that
//! gives at most `N / 2` pages, so a page holds about 2 to 4 safepoints and the page
//! table costs up to 2 bytes per safepoint. Measured on a 2-core x86-64 VM at 100,000
//! safepoints, pages of 8 to 16 took lookups from about 70 ns (plain binary search over
//! the 400 KB index, 17 dependent loads, most of them outside L1) to about 20 ns; pages
//! of 2 to 4 took a collection over 1,000 frames of distinct functions from 24.5 to
//! 19.1 µs (`cargo bench --bench gc -- distinct`): one or two search steps instead of
//! three or four dependent ones. The reader accepts any page size. Entry `i` then
//! leads to `map_refs[i]`, `map_table[m]` and the map.
//!
//! # Invariants (checked by [`StackMapSection::parse`], guaranteed by the builder)
//!
//! - `index` is strictly increasing, so an offset appears at most once.
//! - `S <= 31`; `P = (index[N-1] >> S) + 1`, or 0 when `N == 0`; `page_table[p]` is
//!   exactly the first entry at or after page `p` (so `page_table[0] == 0` and
//!   `page_table[P] == N`, non-decreasing).
//! - Every `map_refs[i] < M`. Maps are numbered in order of first use by the index:
//!   `map_refs[i]` is at most one more than the largest number used before entry `i`,
//!   and every map is used, so the map data holds no dead bytes.
//! - The maps tile the map data: map 0 starts at word 0, map `m + 1` starts right after
//!   map `m`, and the last one ends at word `W`.
//! - Every map is well formed: `span` is a multiple of 8; `K` is minimal (`K == 0`, or
//!   `bits[K-1] != 0`), so equal slot sets have equal encodings; every slot is `< span`.
//! - With deduplication (the default), two safepoints with the same span and the same
//!   slot set share one map. The reader does not depend on this: a section without
//!   sharing is just as valid.
//!
//! Because `parse` checks all of the above once, [`StackMapSection::lookup`] and
//! everything reached from it cannot fail and cannot index out of bounds afterwards.
//! Untrusted bytes get a [`StackMapError`], never a panic.
//!
//! A safepoint that is absent means "no live references in this frame": Cranelift
//! emits no stack map for a call with nothing live across it. A lookup is therefore an
//! exact match and never falls back to a neighbouring entry.
//!
//! # Example
//!
//! ```
//! use framewalk::stackmap::{StackMapBuilder, StackMapSection};
//!
//! let mut builder = StackMapBuilder::new();
//! builder.add(0x40, 32, &[0, 16])?;
//! builder.add(0x10, 32, &[16, 0])?; // same map as 0x40: stored once
//! builder.add(0x90, 48, &[])?;
//! let bytes = builder.finish();
//!
//! let section = StackMapSection::parse(&bytes)?;
//! assert_eq!(section.len(), 3);
//! assert_eq!(section.map_count(), 2);
//! let map = section.lookup(0x40).expect("0x40 is a safepoint");
//! assert_eq!(map.span(), 32);
//! assert_eq!(map.slots().collect::<Vec<_>>(), [0, 16]);
//! assert!(section.lookup(0x41).is_none());
//! # Ok::<(), framewalk::stackmap::StackMapError>(())
//! ```

mod builder;
#[cfg(feature = "cranelift")]
pub mod cranelift;
mod reader;
mod table;

#[cfg(test)]
mod tests;

pub use builder::{Safepoint, StackMapBuilder};
pub use reader::{Entries, Slots, StackMap, StackMapSection};
pub use table::StackMapTable;

/// The four bytes every stack-map section starts with.
pub const MAGIC: [u8; 4] = *b"FWSM";

/// The format version this module writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the header in bytes; the builder places the page table right after it.
pub(crate) const HEADER_SIZE: u32 = 48;

/// The builder picks the page size so that pages hold at least this many safepoints
/// on average (see "Lookup" above for the measurement behind it).
pub(crate) const MIN_ENTRIES_PER_PAGE: usize = 2;

/// The largest page shift: pages of 2 GiB, so `P <= 2`.
pub(crate) const MAX_PAGE_SHIFT: u32 = 31;

/// Byte positions of the header fields (see the layout in the module docs).
pub(crate) mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const SAFEPOINT_COUNT: usize = 8;
    pub const MAP_COUNT: usize = 12;
    pub const PAGE_SHIFT: usize = 16;
    pub const PAGE_COUNT: usize = 20;
    pub const PAGE_TABLE_OFFSET: usize = 24;
    pub const INDEX_OFFSET: usize = 28;
    pub const MAP_REFS_OFFSET: usize = 32;
    pub const MAP_TABLE_OFFSET: usize = 36;
    pub const MAP_DATA_OFFSET: usize = 40;
    pub const MAP_DATA_WORDS: usize = 44;
}

/// Words in front of a map's bitmap: `span` and the bitmap word count `K`.
pub(crate) const MAP_HEADER_WORDS: u32 = 2;

/// Every slot offset and every span is a multiple of this (one stack word).
pub const SLOT_SIZE: u32 = 8;

/// Slots described by one bitmap word.
pub(crate) const SLOTS_PER_WORD: u32 = 32;

/// A part of a stack-map section, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionPart {
    /// The fixed-size header.
    Header,
    /// The page table over the index.
    PageTable,
    /// The sorted array of return offsets.
    Index,
    /// The per-safepoint map numbers.
    MapRefs,
    /// The per-map start offsets.
    MapTable,
    /// The maps themselves.
    MapData,
}

impl std::fmt::Display for SectionPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SectionPart::Header => "header",
            SectionPart::PageTable => "page table",
            SectionPart::Index => "return-offset index",
            SectionPart::MapRefs => "map references",
            SectionPart::MapTable => "map table",
            SectionPart::MapData => "map data",
        })
    }
}

/// Why a stack-map section could not be built or parsed.
///
/// Builder errors name the safepoint by its return offset; reader errors name the
/// index entry or the map number where the section went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StackMapError {
    /// The section does not start with [`MAGIC`].
    #[error("not a stack-map section: magic is {found:02x?}, expected {MAGIC:02x?}")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The section is of a format version this reader does not know.
    #[error("unsupported stack-map section version {found} (this reader knows {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The section is shorter than its header says.
    #[error("stack-map section truncated: the {part} needs {needed} bytes, the section has {len}")]
    Truncated {
        /// The part that does not fit.
        part: SectionPart,
        /// Bytes needed up to the end of that part.
        needed: u64,
        /// Actual length of the section.
        len: usize,
    },
    /// A table does not start on a 4-byte boundary.
    #[error("stack-map {part} starts at byte {offset}, which is not a multiple of 4")]
    MisalignedTable {
        /// The misplaced table.
        part: SectionPart,
        /// Its byte offset.
        offset: u32,
    },
    /// A table starts before the previous one (or the header) ends.
    #[error("stack-map {part} starts at byte {offset}, inside the previous part, which ends at byte {previous_end}")]
    OverlappingTable {
        /// The misplaced table.
        part: SectionPart,
        /// Its byte offset.
        offset: u32,
        /// Where the part before it ends.
        previous_end: u64,
    },
    /// Bytes follow the end of the map data.
    #[error("stack-map section has {} trailing bytes after its map data (ends at byte {end}, length {len})", (*len as u64).saturating_sub(*end))]
    TrailingBytes {
        /// Where the map data ends.
        end: u64,
        /// Actual length of the section.
        len: usize,
    },
    /// The return-offset index is not strictly increasing.
    #[error("stack-map index is not strictly increasing: entry {entry} is {offset:#x}, after {previous:#x}")]
    UnsortedIndex {
        /// Position of the offending entry.
        entry: usize,
        /// The entry before it.
        previous: u32,
        /// The offending return offset.
        offset: u32,
    },
    /// The page shift is larger than 31 (pages of 2 GiB).
    #[error("stack-map page shift {shift} is larger than 31")]
    BadPageShift {
        /// The shift in the header.
        shift: u32,
    },
    /// The page count does not match the last return offset.
    #[error("stack-map section has {page_count} pages, its last return offset needs {expected}")]
    PageCountMismatch {
        /// The page count in the header.
        page_count: u32,
        /// `(last offset >> page_shift) + 1`, or 0 without safepoints.
        expected: u64,
    },
    /// A page-table entry is not the first index entry of its page.
    #[error("stack-map page {page} should start at index entry {expected}, the page table says {recorded}")]
    PageTableMismatch {
        /// The page number.
        page: u32,
        /// The entry in the page table.
        recorded: u32,
        /// The first index entry at or after that page.
        expected: u64,
    },
    /// A safepoint refers to a map number that does not exist.
    #[error("stack-map entry {entry} refers to map {map}, but there are only {map_count} maps")]
    MapOutOfRange {
        /// Position of the safepoint in the index.
        entry: usize,
        /// The map number it refers to.
        map: u32,
        /// Number of maps in the section.
        map_count: u32,
    },
    /// Maps are not numbered in order of first use.
    #[error("stack-map entry {entry} uses map {map} before map {expected}")]
    MapOrderNotCanonical {
        /// Position of the safepoint in the index.
        entry: usize,
        /// The map number it refers to.
        map: u32,
        /// The first map number not used yet.
        expected: u32,
    },
    /// A map is stored but no safepoint uses it.
    #[error("stack-map map {map} of {map_count} is never used")]
    UnusedMap {
        /// The first unused map number.
        map: u32,
        /// Number of maps in the section.
        map_count: u32,
    },
    /// The map table does not say where the map really starts.
    #[error("stack-map map {map} should start at word {expected} of the map data, the map table says {recorded}")]
    MapOffsetMismatch {
        /// The map number.
        map: u32,
        /// The start in the map table.
        recorded: u32,
        /// The word right after the previous map.
        expected: u64,
    },
    /// A map extends past the end of the map data.
    #[error("stack-map map {map} ends at word {end}, past the {data_words} words of map data")]
    MapRunsPastEnd {
        /// The map number.
        map: u32,
        /// The word where the map would end.
        end: u64,
        /// Size of the map data in words.
        data_words: u32,
    },
    /// Words are left in the map data after the last map.
    #[error("stack-map maps end at word {used}, but the map data has {data_words} words")]
    UnusedMapData {
        /// Where the last map ends.
        used: u64,
        /// Size of the map data in words.
        data_words: u32,
    },
    /// A map's bitmap ends with a zero word, so the encoding is not minimal.
    #[error("stack-map map {map} has a bitmap whose last word is zero")]
    NonCanonicalBitmap {
        /// The map number.
        map: u32,
    },
    /// A stored map has a span that is not a multiple of [`SLOT_SIZE`].
    #[error("stack-map map {map} has span {span}, not a multiple of 8")]
    MisalignedMapSpan {
        /// The map number.
        map: u32,
        /// The span stored.
        span: u32,
    },
    /// A stored map has a slot at or above its span.
    #[error("stack-map map {map} has a slot at offset {slot}, outside its span {span}")]
    MapSlotOutsideFrame {
        /// The map number.
        map: u32,
        /// The slot offset (may exceed `u32` in a corrupt map).
        slot: u64,
        /// The span stored.
        span: u32,
    },
    /// [`StackMapBuilder::add`] was given a return offset it already has.
    #[error("stack map for return offset {return_offset:#x} added twice")]
    DuplicateOffset {
        /// The repeated return offset.
        return_offset: u32,
    },
    /// A slot offset given to the builder is not a multiple of [`SLOT_SIZE`].
    #[error(
        "stack map at return offset {return_offset:#x}: slot offset {slot} is not a multiple of 8"
    )]
    MisalignedSlot {
        /// The safepoint.
        return_offset: u32,
        /// The slot offset given.
        slot: u32,
    },
    /// A slot offset given to the builder is not below the span.
    #[error("stack map at return offset {return_offset:#x}: slot offset {slot} is outside the frame span {span}")]
    SlotOutsideFrame {
        /// The safepoint.
        return_offset: u32,
        /// The slot offset given.
        slot: u32,
        /// The span given.
        span: u32,
    },
    /// A span given to the builder is not a multiple of [`SLOT_SIZE`].
    #[error("stack map at return offset {return_offset:#x}: span {span} is not a multiple of 8")]
    MisalignedSpan {
        /// The safepoint.
        return_offset: u32,
        /// The span given.
        span: u32,
    },
    /// The section would not fit the format's 32-bit offsets.
    #[error("stack-map section would be {size} bytes, more than the format's 4 GiB limit")]
    SectionTooLarge {
        /// The size the section would have without deduplication.
        size: u64,
    },
}

/// Parses arbitrary bytes as a section and, when they parse, exercises every lookup
/// path (hits, misses, neighbours, iteration, slot iteration) and checks that the
/// answers agree with each other and with a re-encoding through the builder.
///
/// Never panics on any input unless the reader breaks its own invariants, which is
/// exactly what a fuzzer should report.
#[cfg(feature = "fuzzing")]
pub fn fuzz_reader(data: &[u8]) {
    check_reader_on(data);
}

/// The body of `fuzz_reader`, also run by the unit tests without the feature.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_reader_on(data: &[u8]) {
    if let Ok(section) = StackMapSection::parse(data) {
        check_section(&section);
    }
}

/// Cross-checks every answer a parsed section gives. Panics (with the invariant that
/// broke) only if the reader is inconsistent.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_section(section: &StackMapSection<'_>) {
    let entries: Vec<(u32, StackMap<'_>)> = section.iter().collect();
    assert_eq!(
        section.iter().len(),
        section.len(),
        "iter() must know its length"
    );
    assert_eq!(
        entries.len(),
        section.len(),
        "iter() must yield len() entries"
    );
    assert_eq!(section.is_empty(), entries.is_empty());
    assert!(
        section.map_count() <= section.len(),
        "every map is used by some safepoint"
    );
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "iter() must be strictly increasing"
    );

    // What an exact-match lookup must answer, computed from the iteration alone.
    let expected = |probe: u32| {
        entries
            .binary_search_by_key(&probe, |&(offset, _)| offset)
            .ok()
            .map(|i| entries[i].1)
    };

    // The decoded table a collector uses must answer as the section does.
    let table = StackMapTable::new(section);
    assert_eq!(table.len(), section.len());
    let mut rebuilt = StackMapBuilder::new();
    let mut rebuilt_ok = true;
    for &(offset, map) in &entries {
        assert_eq!(
            section.lookup(offset),
            Some(map),
            "lookup must find every entry"
        );
        assert_eq!(
            table.lookup(offset),
            Some(map),
            "the table must find every entry"
        );
        let mut each = Vec::new();
        map.for_each_slot(|s| each.push(s));
        assert!(map.slots().eq(each), "for_each_slot must visit slots()");
        for neighbour in [offset.checked_sub(1), offset.checked_add(1)]
            .into_iter()
            .flatten()
        {
            assert_eq!(
                section.lookup(neighbour),
                expected(neighbour),
                "lookup must be an exact match"
            );
            assert_eq!(
                table.lookup(neighbour),
                expected(neighbour),
                "the table must be an exact match"
            );
        }

        let slots: Vec<u32> = map.slots().collect();
        assert_eq!(
            slots.len(),
            map.slot_count(),
            "slot_count must match slots()"
        );
        assert_eq!(
            map.slots().len(),
            map.slot_count(),
            "Slots must know its length"
        );
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "slots must ascend");
        assert!(
            slots
                .iter()
                .all(|&s| s.is_multiple_of(SLOT_SIZE) && s < map.span()),
            "slots must be aligned and inside the span"
        );
        assert_eq!(map.span() % SLOT_SIZE, 0, "span must be aligned");
        if rebuilt_ok {
            match rebuilt.add(offset, map.span(), &slots) {
                Ok(()) => {}
                Err(StackMapError::SectionTooLarge { .. }) => rebuilt_ok = false,
                Err(e) => panic!("a parsed map must be acceptable to the builder: {e}"),
            }
        }
    }
    for probe in [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX] {
        assert_eq!(
            section.lookup(probe),
            expected(probe),
            "exact match at {probe:#x}"
        );
        assert_eq!(
            table.lookup(probe),
            expected(probe),
            "table: exact match at {probe:#x}"
        );
    }

    if rebuilt_ok {
        let bytes = rebuilt.finish();
        let again = StackMapSection::parse(&bytes).expect("builder output must parse");
        assert_eq!(again.len(), section.len());
        assert!(
            again.map_count() <= section.map_count(),
            "dedup never adds maps"
        );
        assert!(
            again.iter().eq(section.iter()),
            "re-encoding must give the same answers"
        );
    }
}
