//! Lookup speed of the stack-map section at 10, 1,000 and 100,000 safepoints.
//!
//! Each iteration is one `lookup` of the next query from a fixed pseudo-random list
//! (4,096 queries spread over the whole section, so the binary search does not get to
//! reuse one path through the cache). `hit` looks up return offsets that are in the
//! section, `miss` offsets that are not (one byte past a safepoint, which is never a
//! safepoint here), `hit_slots` also walks the slots as a collector would;
//! `table_hit` and `table_miss` ask the same of a `StackMapTable` decoded from the
//! section (what framewalk's collector uses).
//!
//! Run with `cargo bench --bench stackmap`; criterion writes the median of each to
//! `target/criterion/stackmap_lookup/<case>/<n>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use framewalk::stackmap::{StackMapBuilder, StackMapSection, StackMapTable};

#[path = "common/splitmix.rs"]
mod splitmix;

use splitmix::Rng;

/// A section with `n` safepoints, 8 to 128 bytes apart (like calls in real code),
/// using a pool of 64 distinct maps; returns the bytes and the safepoint offsets.
fn section(n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u32>) {
    let pool: Vec<(u32, Vec<u32>)> = (0..64)
        .map(|_| {
            let words = 2 + rng.below(62) as u32;
            let live = rng.below(6);
            let slots = (0..live).map(|_| 8 * rng.below(u64::from(words)) as u32);
            (8 * words, slots.collect())
        })
        .collect();
    let mut builder = StackMapBuilder::new();
    let mut offsets = Vec::with_capacity(n);
    let mut offset = 0u32;
    for _ in 0..n {
        offset += 8 + rng.below(121) as u32;
        let (span, slots) = &pool[rng.below(pool.len() as u64) as usize];
        builder.add(offset, *span, slots).expect("valid safepoint");
        offsets.push(offset);
    }
    (builder.finish(), offsets)
}

const QUERIES: usize = 4096; // a power of two, for the wrap-around mask

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("stackmap_lookup");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut rng = Rng(0x5eed);
    for n in [10usize, 1_000, 100_000] {
        let (bytes, offsets) = section(n, &mut rng);
        let section = StackMapSection::parse(&bytes).expect("builder output parses");
        assert_eq!(section.len(), n);
        let hits: Vec<u32> = (0..QUERIES)
            .map(|_| offsets[rng.below(n as u64) as usize])
            .collect();
        // Safepoints are at least 8 bytes apart, so `offset + 1` is never one.
        let misses: Vec<u32> = hits.iter().map(|o| o + 1).collect();
        assert!(hits.iter().all(|&o| section.lookup(o).is_some()));
        assert!(misses.iter().all(|&o| section.lookup(o).is_none()));

        for (case, queries) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(case, n), queries, |b, queries| {
                let mut i = 0;
                b.iter(|| {
                    let query = queries[i];
                    i = (i + 1) & (QUERIES - 1);
                    black_box(section.lookup(black_box(query)))
                });
            });
        }
        // The same queries on the decoded table a collector builds at load time.
        let table = StackMapTable::new(&section);
        assert!(hits.iter().all(|&o| table.lookup(o) == section.lookup(o)));
        assert!(misses.iter().all(|&o| table.lookup(o).is_none()));
        for (case, queries) in [("table_hit", &hits), ("table_miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(case, n), queries, |b, queries| {
                let mut i = 0;
                b.iter(|| {
                    let query = queries[i];
                    i = (i + 1) & (QUERIES - 1);
                    black_box(table.lookup(black_box(query)))
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("hit_slots", n), &hits, |b, queries| {
            let mut i = 0;
            b.iter(|| {
                let query = queries[i];
                i = (i + 1) & (QUERIES - 1);
                let map = section.lookup(black_box(query)).expect("hit");
                black_box(map.slots().fold(map.span(), |acc, slot| acc ^ slot))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
