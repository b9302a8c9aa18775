//! Host -> wasm call costs. `cargo bench --bench calls`.

use criterion::{criterion_group, criterion_main, Criterion};
use framewalk::{Engine, Instance, Module, Store, Val};

fn calls(c: &mut Criterion) {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(
        &engine,
        br#"(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Instance::new(&mut store, &module, &[]).unwrap();
    let add = inst.get_func(&store, "add").unwrap();
    let typed = add.typed::<(i32, i32), i32>(&store).unwrap();
    c.bench_function("typed call (i32, i32) -> i32", |b| {
        b.iter(|| {
            typed
                .call(&mut store, (std::hint::black_box(1), 2))
                .unwrap()
        })
    });
    let mut results = [Val::I32(0)];
    c.bench_function("untyped call (i32, i32) -> i32", |b| {
        b.iter(|| {
            add.call(&mut store, &[Val::I32(1), Val::I32(2)], &mut results)
                .unwrap()
        })
    });
}

criterion_group!(benches, calls);
criterion_main!(benches);
