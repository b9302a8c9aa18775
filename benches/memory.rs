//! Linear memory access in hot loops. `cargo bench --bench memory`.
//!
//! Every memory has guard pages, so a load or store of linear memory carries no
//! explicit bounds check (see `compile::environ`); these loops measure what that is
//! worth. Each run touches 64 KiB: `sum` does 16,384 `i32.load`s, `copy` 16,384 loads
//! and 16,384 stores (the second half of a two-page memory from the first); criterion
//! reports the whole loop, so divide by 16,384 for one iteration.
//!
//! Measured when guard pages replaced explicit checks (2 noisy cores, medians of
//! several runs): `sum` 10.9-11.4 us -> 6.7-6.8 us (the loop lost its reload of
//! `current_length`, the compare and the branch: 10 instructions -> 6); `copy`
//! 11.7-12.0 us -> 11.1-12.2 us, unchanged within the noise (its stores dominate).

use criterion::{criterion_group, criterion_main, Criterion};
use framewalk::{Engine, Instance, Module, Store};

/// Bytes each loop reads.
const BYTES: i32 = 64 * 1024;

fn memory(c: &mut Criterion) {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(
        &engine,
        br#"(module
              (memory 2)
              (func (export "sum") (param $n i32) (result i32)
                (local $i i32) (local $s i32)
                (loop $l
                  (local.set $s (i32.add (local.get $s) (i32.load (local.get $i))))
                  (br_if $l (i32.lt_u
                    (local.tee $i (i32.add (local.get $i) (i32.const 4)))
                    (local.get $n))))
                (local.get $s))
              (func (export "copy") (param $n i32)
                (local $i i32)
                (loop $l
                  (i32.store offset=65536 (local.get $i) (i32.load (local.get $i)))
                  (br_if $l (i32.lt_u
                    (local.tee $i (i32.add (local.get $i) (i32.const 4)))
                    (local.get $n))))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Instance::new(&mut store, &module, &[]).unwrap();
    let sum = inst.get_typed_func::<i32, i32>(&store, "sum").unwrap();
    c.bench_function("sum 64 KiB of i32.load", |b| {
        b.iter(|| sum.call(&mut store, std::hint::black_box(BYTES)).unwrap())
    });
    let copy = inst.get_typed_func::<i32, ()>(&store, "copy").unwrap();
    c.bench_function("copy 64 KiB with i32.load + i32.store", |b| {
        b.iter(|| copy.call(&mut store, std::hint::black_box(BYTES)).unwrap())
    });
}

criterion_group!(benches, memory);
criterion_main!(benches);
