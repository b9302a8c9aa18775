//! Property tests of the whole format: builder and reader against a model, and the
//! reader against hostile bytes. Case counts come from proptest's defaults or the
//! `PROPTEST_CASES` environment variable.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

/// What one safepoint should answer: span and the sorted slot set.
type Expected = (u32, BTreeSet<u32>);

/// A map: a span (multiple of 8) and a set of aligned slots below it. Mostly small
/// frames, sometimes large ones whose bitmaps need several words, and sometimes the
/// largest span (with slots kept in its lowest 32 KiB, so bitmaps stay small).
fn map_strategy() -> impl Strategy<Value = Expected> {
    prop_oneof![
        4 => 0u32..=16,
        1 => 0u32..=600,
        1 => Just((u32::MAX - 7) / SLOT_SIZE),
    ]
    .prop_flat_map(|words| {
        let slots = if words == 0 {
            Just(BTreeSet::new()).boxed()
        } else {
            let top = (words - 1).min(4095);
            // Slot numbers anywhere in the frame, with the edges 0 and top likely.
            let slot = prop_oneof![Just(0), Just(top), 0..=top, top.saturating_sub(40)..=top];
            proptest::collection::btree_set(slot, 0..12).boxed()
        };
        (
            Just(words * SLOT_SIZE),
            slots.prop_map(|set| set.into_iter().map(|n| n * SLOT_SIZE).collect()),
        )
    })
}

/// Return offsets: clustered (so neighbours are often safepoints too), anywhere, and
/// at both ends of the u32 range.
fn offset_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..64, any::<u32>(), (u32::MAX - 63)..=u32::MAX]
}

/// A model: return offset -> expected answer, drawing maps from a small pool so that
/// sharing (and therefore deduplication) is common.
fn model_strategy() -> impl Strategy<Value = BTreeMap<u32, Expected>> {
    (
        proptest::collection::vec(map_strategy(), 1..8),
        proptest::collection::btree_map(offset_strategy(), any::<Index>(), 0..200),
    )
        .prop_map(|(pool, picks)| {
            picks
                .into_iter()
                .map(|(offset, pick)| (offset, pick.get(&pool).clone()))
                .collect()
        })
}

/// Builds a section from `model`, adding the safepoints in the order of `order`.
fn build(model: &BTreeMap<u32, Expected>, order: &[u32], dedup: bool) -> Vec<u8> {
    let mut builder = StackMapBuilder::new();
    for offset in order {
        let (span, slots) = &model[offset];
        // Give the slots unsorted and with a repeat: the builder treats them as a set.
        let mut given: Vec<u32> = slots.iter().rev().copied().collect();
        given.extend(slots.first());
        builder.add(*offset, *span, &given).unwrap();
    }
    assert_eq!(builder.len(), model.len());
    builder.finish_with(dedup)
}

fn answer(section: &StackMapSection<'_>, offset: u32) -> Option<Expected> {
    section
        .lookup(offset)
        .map(|map| (map.span(), map.slots().collect()))
}

/// A valid section to mutate, with several maps, shared maps and multi-word bitmaps.
fn sample_section() -> Vec<u8> {
    let mut builder = StackMapBuilder::new();
    builder.add(0x10, 32, &[0, 16]).unwrap();
    builder.add(0x11, 16, &[]).unwrap();
    builder.add(0x40, 32, &[0, 16]).unwrap();
    builder.add(0x44, 520, &[512, 0, 256]).unwrap();
    builder.add(0x1000, 8, &[0]).unwrap();
    builder.finish()
}

proptest! {
    /// Builder then reader gives back exactly the model: every offset in it, and
    /// `None` for every offset not in it, including the neighbours of each entry.
    #[test]
    fn round_trip_matches_the_model(
        (model, order) in model_strategy().prop_flat_map(|model| {
            let order: Vec<u32> = model.keys().copied().collect();
            (Just(model), Just(order).prop_shuffle())
        }),
        dedup in any::<bool>(),
        probes in proptest::collection::vec(any::<u32>(), 0..16),
    ) {
        let bytes = build(&model, &order, dedup);
        let section = StackMapSection::parse(&bytes).unwrap();

        prop_assert_eq!(section.len(), model.len());
        let distinct: BTreeSet<&Expected> = model.values().collect();
        let maps = if dedup { distinct.len() } else { model.len() };
        prop_assert_eq!(section.map_count(), maps);

        for (&offset, expected) in &model {
            prop_assert_eq!(answer(&section, offset), Some(expected.clone()));
            for neighbour in [offset.checked_sub(1), offset.checked_add(1)].into_iter().flatten() {
                prop_assert_eq!(answer(&section, neighbour), model.get(&neighbour).cloned());
            }
        }
        for probe in probes.into_iter().chain([0, u32::MAX]) {
            prop_assert_eq!(answer(&section, probe), model.get(&probe).cloned());
        }
        let iterated: Vec<(u32, Expected)> = section
            .iter()
            .map(|(offset, map)| (offset, (map.span(), map.slots().collect())))
            .collect();
        prop_assert_eq!(iterated, model.clone().into_iter().collect::<Vec<_>>());

        // Insertion order does not matter: the output is canonical.
        let sorted: Vec<u32> = model.keys().copied().collect();
        prop_assert_eq!(&bytes, &build(&model, &sorted, dedup));
        check_section(&section);
    }

    /// Arbitrary bytes either fail to parse or answer consistently, without panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_reader_on(&bytes);
    }

    /// Bytes with a valid magic and version and small random fields, so that parsing
    /// gets past the header and into the table and map checks.
    #[test]
    fn plausible_headers_never_panic(
        fields in proptest::collection::vec(0u32..48, 7),
        body in proptest::collection::vec(prop_oneof![0u32..8, any::<u32>()], 0..64),
    ) {
        let mut words = vec![u32::from_le_bytes(MAGIC), FORMAT_VERSION];
        words.extend(&fields);
        words.extend(&body);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        check_reader_on(&bytes);
    }

    /// Mutations of a valid section (truncation, byte flips, words overwritten with
    /// boundary values) either fail to parse or answer consistently, without panics.
    #[test]
    fn mutated_sections_never_panic(
        model in model_strategy(),
        cut in any::<Index>(),
        truncate in any::<bool>(),
        flips in proptest::collection::vec((any::<Index>(), 1u8..=255), 0..4),
        overwrites in proptest::collection::vec(
            (any::<Index>(), prop_oneof![
                Just(0u32), Just(1), Just(4), Just(8), Just(36), Just(0x7fff_ffff),
                Just(0x8000_0000), Just(u32::MAX - 3), Just(u32::MAX), any::<u32>(),
            ]),
            0..3,
        ),
    ) {
        let order: Vec<u32> = model.keys().copied().collect();
        let mut bytes = build(&model, &order, true);
        for (at, value) in overwrites {
            let words = bytes.len() / 4;
            let at = 4 * at.index(words);
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        for (at, mask) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_reader_on(&bytes);
    }
}

/// Every single-bit flip and every truncation of a small valid section (under Miri,
/// one bit per byte, which still touches every field).
#[test]
fn exhaustive_bit_flips_and_truncations_never_panic() {
    let bytes = sample_section();
    let mut parsed = 0;
    for at in 0..bytes.len() {
        let bits = if cfg!(miri) { at % 8..at % 8 + 1 } else { 0..8 };
        for bit in bits {
            let mut mutated = bytes.clone();
            mutated[at] ^= 1 << bit;
            parsed += usize::from(StackMapSection::parse(&mutated).is_ok());
            check_reader_on(&mutated);
        }
    }
    for len in 0..bytes.len() {
        assert!(
            StackMapSection::parse(&bytes[..len]).is_err(),
            "length {len}"
        );
    }
    // Some flips (slot bits, offsets that stay sorted) give valid sections, and those
    // went through the full consistency check above.
    assert!(parsed > 0);
}

/// `fuzz_reader` (and `check_reader_on` behind it) on a few fixed inputs, as a smoke
/// test of the fuzz entry point.
#[test]
fn fuzz_entry_point_smoke() {
    let valid = sample_section();
    let inputs: [&[u8]; 5] = [b"", b"FWSM", &MAGIC, &valid, &valid[..valid.len() - 1]];
    for input in inputs {
        check_reader_on(input);
        #[cfg(feature = "fuzzing")]
        fuzz_reader(input);
    }
    check_section(&StackMapSection::parse(&valid).unwrap());
}
