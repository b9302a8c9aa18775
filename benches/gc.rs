//! Collector costs. `cargo bench --bench gc`.
//!
//! - `pause/D frames/K table refs`: one `Store::gc` (from a host function at the bottom
//!   of D wasm frames, each holding one externref live across its call) while K other
//!   references are held only by a table. The pause should follow D, not K.
//! - `pause distinct/1000 frames`: the same collection at the bottom of a chain of 1,000
//!   *different* functions, each holding one externref across its call: every frame
//!   has its own return address, so every frame is a stack-map lookup (recursion above
//!   repeats one return address, which the scan looks up once).
//! - `scan distinct/1000 frames`: the same stack, scanned as a collection scans it but
//!   without marking or sweeping (`Caller::visit_stack_roots`, reading each
//!   reference's header where the mark would go).
//! - `pass externref into wasm`: a typed host -> wasm call that stores its externref
//!   argument into a table slot.

#[path = "common/chains.rs"]
mod chains;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use framewalk::{Caller, Engine, Extern, ExternRef, Func, Instance, Module, Store, Val};

const WAT: &str = r#"
(module
  (import "host" "bottom" (func $bottom))
  (import "host" "make" (func $make (param i32) (result externref)))
  (table $t (export "t") 0 externref)
  ;; `$r` is read after the call, so it is live across it: one stack root per frame.
  (func $down (export "down") (param $n i32) (result i32)
    (local $r externref)
    (local.set $r (call $make (local.get $n)))
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $bottom) (i32.const 0))
      (else (call $down (i32.sub (local.get $n) (i32.const 1)))))
    (i32.add (ref.is_null (local.get $r))))
  (func (export "grow") (param $n i32) (param $r externref) (result i32)
    (table.grow $t (local.get $r) (local.get $n)))
  (func (export "store") (param $r externref)
    (table.set $t (i32.const 0) (local.get $r))))
"#;

/// Functions in the chain of distinct frames.
const CHAIN: usize = 1000;

#[derive(Default)]
struct Data {
    /// A `*mut criterion::Bencher` while a benchmark runs inside `bottom`.
    bencher: usize,
    /// Time the scan alone (`Caller::visit_stack_roots`) instead of a collection.
    scan: bool,
}

fn setup(engine: &Engine, module: &Module) -> (Store<Data>, Instance) {
    let mut store = Store::new(engine, Data::default());
    let bottom = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| {
        let b = caller.data().bencher as *mut criterion::Bencher<'_>;
        // SAFETY: the benchmark below stores a live `&mut Bencher` for the duration of
        // the wasm call that reaches this host function.
        let b = unsafe { &mut *b };
        if caller.data().scan {
            // What a collection does before its sweep: the walk, every frame's stack
            // map, every live slot, and a read of each reference's header (where the
            // mark would go).
            b.iter(|| {
                let mut counts = 0;
                caller
                    .visit_stack_roots(|_, r| counts += r.owner_count())
                    .unwrap();
                counts
            });
        } else {
            b.iter(|| caller.gc().unwrap());
        }
    })
    .unwrap();
    let make = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Data>, n: i32| -> Option<ExternRef> {
            Some(ExternRef::new(&mut caller, n))
        },
    )
    .unwrap();
    let inst = Instance::new(
        &mut store,
        module,
        &[Extern::Func(bottom), Extern::Func(make)],
    )
    .unwrap();
    (store, inst)
}

fn pause(c: &mut Criterion) {
    let engine = Engine::new(framewalk::Config {
        max_wasm_stack: 64 << 20,
        ..Default::default()
    })
    .unwrap();
    let module = Module::new(&engine, WAT.as_bytes()).unwrap();
    let mut g = c.benchmark_group("gc pause");
    for k in [1_000u32, 100_000] {
        for d in [10u32, 100, 1000] {
            let (mut store, inst) = setup(&engine, &module);
            // K distinct references held only by the table.
            let grow = inst.get_func(&store, "grow").unwrap();
            for i in 0..k {
                let r = ExternRef::new(&mut store, i);
                grow.call(
                    &mut store,
                    &[Val::I32(1), Val::ExternRef(Some(r))],
                    &mut [Val::I32(0)],
                )
                .unwrap();
            }
            store.gc().unwrap();
            let down = inst
                .get_func(&store, "down")
                .unwrap()
                .typed::<i32, i32>(&store)
                .unwrap();
            g.bench_with_input(
                BenchmarkId::new(format!("{d} frames"), format!("{k} table refs")),
                &d,
                |b, &d| {
                    store.data_mut().bencher = b as *mut criterion::Bencher<'_> as usize;
                    down.call(&mut store, d as i32 - 1).unwrap();
                    store.data_mut().bencher = 0;
                    // The collections found every frame's reference.
                    assert_eq!(store.gc_stats().last_stack_roots, d as usize);
                },
            );
        }
    }
    g.finish();

    let chain = Module::new(&engine, chains::gc_chain_wat(CHAIN).as_bytes()).unwrap();
    let (mut store, inst) = setup(&engine, &chain);
    let run = inst
        .get_func(&store, "chain")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    let mut g = c.benchmark_group("gc pause distinct");
    g.bench_function(format!("{CHAIN} frames"), |b| {
        store.data_mut().bencher = b as *mut criterion::Bencher<'_> as usize;
        run.call(&mut store, ()).unwrap();
        store.data_mut().bencher = 0;
        assert_eq!(store.gc_stats().last_stack_roots, CHAIN);
    });
    g.finish();

    let mut g = c.benchmark_group("gc scan distinct");
    store.data_mut().scan = true;
    g.bench_function(format!("{CHAIN} frames"), |b| {
        store.data_mut().bencher = b as *mut criterion::Bencher<'_> as usize;
        run.call(&mut store, ()).unwrap();
        store.data_mut().bencher = 0;
    });
    g.finish();
}

fn pass(c: &mut Criterion) {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, WAT.as_bytes()).unwrap();
    let (mut store, inst) = setup(&engine, &module);
    let grow = inst.get_func(&store, "grow").unwrap();
    grow.call(
        &mut store,
        &[Val::I32(1), Val::ExternRef(None)],
        &mut [Val::I32(0)],
    )
    .unwrap();
    let store_ref = inst
        .get_func(&store, "store")
        .unwrap()
        .typed::<Option<ExternRef>, ()>(&store)
        .unwrap();
    let r = ExternRef::new(&mut store, 42u64);
    c.bench_function("pass externref into wasm (typed call, table.set)", |b| {
        b.iter(|| store_ref.call(&mut store, Some(r.clone())).unwrap())
    });
}

criterion_group!(benches, pause, pass);
criterion_main!(benches);
