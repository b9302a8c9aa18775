//! The measurement behind `src/gc/set.rs`'s choice of root-set design.
//! `cargo bench --bench root_set`.
//!
//! Both designs of the over-approximated set of stack roots, modelled on the same
//! header (`count`, `flags`, `next`), doing the work the collector does; nothing is
//! freed (every reference is also held by the host), so only the set's own costs are
//! measured:
//!
//! - **list**: framewalk's design (`gc::VMExternRefSet`): an intrusive list through the
//!   headers with an in-set bit; entering is a bit test, and a link only the first time;
//!   a collection marks the stack roots and sweeps the list.
//! - **chunk**: Wasmtime's 2020 activations table: entering appends to a fixed
//!   bump-allocated chunk (compare, store, bump; counted, so the chunk owns what it
//!   holds); a full chunk forces a collection, which builds the precise set of stack
//!   roots in a hash set, then releases every chunk entry and every old
//!   over-approximated root, and keeps the precise set as the new over-approximation.
//!
//! Workloads:
//! - `enter same ref`: one reference enters wasm `N` times (a table slot read in a loop,
//!   or the same argument passed on every call), with no explicit collection;
//! - `enter distinct refs`: `N` different references enter once each;
//! - `collect`: `N` references in the set, a collection finding `S` of them on the stack.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::cell::Cell;
use std::collections::HashSet;

const IN_SET: usize = 1;
const MARK: usize = 2;
/// Entries in the chunk (Wasmtime 2020 used 512).
const CHUNK: usize = 512;

#[derive(Default)]
struct Header {
    count: Cell<usize>,
    flags: Cell<usize>,
    next: Cell<usize>,
}

/// `n` headers, each held once by the host.
fn headers(n: usize) -> Vec<Header> {
    (0..n)
        .map(|_| Header {
            count: Cell::new(1),
            ..Header::default()
        })
        .collect()
}

fn hdr(raw: usize) -> &'static Header {
    // SAFETY: every `raw` in this file is the address of a header in a `Vec<Header>`
    // that outlives the benchmark iteration using it.
    unsafe { &*(raw as *const Header) }
}

#[derive(Default)]
struct List {
    head: usize,
    len: usize,
}

impl List {
    #[inline(always)]
    fn enter(&mut self, raw: usize) {
        let h = hdr(raw);
        let flags = h.flags.get();
        if flags & IN_SET != 0 {
            return;
        }
        h.next.set(self.head);
        h.flags.set(flags | IN_SET);
        self.head = raw;
        self.len += 1;
    }

    fn collect(&mut self, stack_roots: &[usize]) {
        for &raw in stack_roots {
            let h = hdr(raw);
            h.flags.set(h.flags.get() | MARK);
        }
        let (mut kept_head, mut kept_tail, mut kept) = (0usize, 0usize, 0);
        let mut cur = std::mem::take(&mut self.head);
        while cur != 0 {
            let h = hdr(cur);
            let next = h.next.get();
            let flags = h.flags.get();
            h.next.set(0);
            if flags & MARK != 0 {
                h.flags.set(flags & !MARK);
                if kept_tail == 0 {
                    kept_head = cur;
                } else {
                    hdr(kept_tail).next.set(cur);
                }
                kept_tail = cur;
                kept += 1;
            } else {
                h.flags.set(flags & !IN_SET);
                black_box(h.count.get() == 0);
            }
            cur = next;
        }
        self.head = kept_head;
        self.len = kept;
    }
}

struct Chunk {
    chunk: Box<[usize; CHUNK]>,
    next: usize,
    over_approximated: HashSet<usize>,
    precise: HashSet<usize>,
    collections: usize,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            chunk: Box::new([0; CHUNK]),
            next: 0,
            over_approximated: HashSet::new(),
            precise: HashSet::new(),
            collections: 0,
        }
    }

    #[inline(always)]
    fn enter(&mut self, raw: usize, stack_roots: &[usize]) {
        if self.next < CHUNK {
            let h = hdr(raw);
            h.count.set(h.count.get() + 1);
            self.chunk[self.next] = raw;
            self.next += 1;
        } else {
            self.collect(stack_roots);
            self.enter(raw, stack_roots);
        }
    }

    fn release(raw: usize) {
        let h = hdr(raw);
        let c = h.count.get() - 1;
        h.count.set(c);
        black_box(c == 0);
    }

    fn collect(&mut self, stack_roots: &[usize]) {
        self.collections += 1;
        for &raw in stack_roots {
            if self.precise.insert(raw) {
                let h = hdr(raw);
                h.count.set(h.count.get() + 1);
            }
        }
        for &raw in &self.chunk[..self.next] {
            Self::release(raw);
        }
        self.next = 0;
        for raw in self.over_approximated.drain() {
            Self::release(raw);
        }
        std::mem::swap(&mut self.over_approximated, &mut self.precise);
    }
}

fn enter_same(c: &mut Criterion) {
    let n = 100_000;
    let hs = headers(1);
    let raw = &hs[0] as *const Header as usize;
    let mut g = c.benchmark_group("root set: enter same ref 100k times");
    g.bench_function("list", |b| {
        b.iter(|| {
            let mut set = List::default();
            for _ in 0..n {
                set.enter(black_box(raw));
            }
            set.collect(&[]);
        })
    });
    g.bench_function("chunk", |b| {
        b.iter(|| {
            let mut set = Chunk::new();
            for _ in 0..n {
                set.enter(black_box(raw), &[]);
            }
            set.collect(&[]);
            black_box(set.collections)
        })
    });
    g.finish();
}

fn enter_distinct(c: &mut Criterion) {
    let n = 100_000;
    let hs = headers(n);
    let raws: Vec<usize> = hs.iter().map(|h| h as *const Header as usize).collect();
    let mut g = c.benchmark_group("root set: enter 100k distinct refs");
    g.bench_function("list", |b| {
        b.iter(|| {
            let mut set = List::default();
            for &raw in &raws {
                set.enter(black_box(raw));
            }
            set.collect(&[]);
        })
    });
    g.bench_function("chunk", |b| {
        b.iter(|| {
            let mut set = Chunk::new();
            for &raw in &raws {
                set.enter(black_box(raw), &[]);
            }
            set.collect(&[]);
        })
    });
    g.finish();
}

fn collect(c: &mut Criterion) {
    let mut g = c.benchmark_group("root set: collect");
    for (n, s) in [(1_000, 100), (100_000, 1_000)] {
        let hs = headers(n);
        let raws: Vec<usize> = hs.iter().map(|h| h as *const Header as usize).collect();
        let roots: Vec<usize> = raws.iter().step_by(n / s).copied().collect();
        let id = format!("{n} in set, {} on stack", roots.len());
        g.bench_with_input(BenchmarkId::new("list", &id), &(), |b, ()| {
            b.iter_batched_ref(
                || {
                    // A fresh set: the previous iteration left its survivors flagged.
                    raws.iter().for_each(|&r| hdr(r).flags.set(0));
                    let mut set = List::default();
                    raws.iter().for_each(|&r| set.enter(r));
                    set
                },
                |set| set.collect(black_box(&roots)),
                criterion::BatchSize::LargeInput,
            );
        });
        g.bench_with_input(BenchmarkId::new("chunk", &id), &(), |b, ()| {
            // The chunk design keeps what entered since the last collection in the
            // chunk (at most `CHUNK`) and the rest in the over-approximated hash set.
            b.iter_batched_ref(
                || {
                    let mut set = Chunk::new();
                    let (older, recent) = raws.split_at(n.saturating_sub(CHUNK));
                    for &r in older {
                        let h = hdr(r);
                        h.count.set(h.count.get() + 1);
                        set.over_approximated.insert(r);
                    }
                    recent.iter().for_each(|&r| set.enter(r, &[]));
                    set
                },
                |set| set.collect(black_box(&roots)),
                criterion::BatchSize::LargeInput,
            );
        });
        drop(hs);
    }
    g.finish();
}

criterion_group!(benches, enter_same, enter_distinct, collect);
criterion_main!(benches);
