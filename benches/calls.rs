//! Call costs across the host/wasm boundary. `cargo bench --bench calls`.
//!
//! - host -> wasm: typed and untyped calls of small functions;
//! - wasm -> wasm and wasm -> host: a wasm loop making `CALLS` calls of a no-op wasm
//!   function or a no-op host import (a `Func::wrap` closure, which wasm enters
//!   directly, or a `Func::new` one, which goes through the exit trampoline);
//!   criterion reports the whole loop, so divide by `CALLS` for one call (the loop's
//!   own cost is the `empty loop` row).

use criterion::{criterion_group, criterion_main, Criterion};
use framewalk::{Caller, Engine, Extern, Func, FuncType, Instance, Module, Store, Val};

/// Calls made by one run of each loop.
const CALLS: i32 = 1000;

fn calls(c: &mut Criterion) {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, include_bytes!("calls.wat")).unwrap();
    let mut store = Store::new(&engine, ());
    let noop = Func::wrap(&mut store, |_: Caller<'_, ()>, (): ()| {}).unwrap();
    let noop_dynamic = Func::new(&mut store, FuncType::new([], []), |_, _, _| Ok(())).unwrap();
    let imports = [noop, noop_dynamic].map(Extern::Func);
    let inst = Instance::new(&mut store, &module, &imports).unwrap();
    let add = inst.get_func(&store, "add").unwrap();
    let typed = add.typed::<(i32, i32), i32>(&store).unwrap();
    c.bench_function("typed call (i32, i32) -> i32", |b| {
        b.iter(|| {
            typed
                .call(&mut store, (std::hint::black_box(1), 2))
                .unwrap()
        })
    });
    let answer = inst
        .get_func(&store, "answer")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    c.bench_function("typed call () -> i32", |b| {
        b.iter(|| answer.call(&mut store, ()).unwrap())
    });
    let mut results = [Val::I32(0)];
    c.bench_function("untyped call (i32, i32) -> i32", |b| {
        b.iter(|| {
            add.call(&mut store, &[Val::I32(1), Val::I32(2)], &mut results)
                .unwrap()
        })
    });
    for name in [
        "empty_loop",
        "wasm_calls",
        "host_calls",
        "dynamic_host_calls",
    ] {
        let f = inst
            .get_func(&store, name)
            .unwrap()
            .typed::<i32, ()>(&store)
            .unwrap();
        c.bench_function(&format!("{name} x{CALLS}"), |b| {
            b.iter(|| f.call(&mut store, std::hint::black_box(CALLS)).unwrap())
        });
    }
}

criterion_group!(benches, calls);
criterion_main!(benches);
