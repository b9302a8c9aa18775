//! Call costs measured as the distribution over many short runs, for figures that hold
//! on a noisy machine: `cargo bench --bench call_floor`.
//!
//! Each row times `SAMPLES` runs of a wasm loop of `LOOP` iterations (or `LOOP` typed
//! host -> wasm calls) and prints the median and the minimum per iteration. The minimum
//! is the machine's floor for that code (interference only ever adds time); criterion's
//! `calls` bench gives the same rows with confidence intervals. Rows:
//! - `empty loop`: the loop alone;
//! - `wasm -> wasm`: the loop calling a no-op wasm function;
//! - `wasm -> host`: the loop calling a no-op `Func::wrap` import (a direct entry);
//! - `wasm -> host, Func::new`: the same through the exit trampoline (the path of
//!   `Func::new` and of host functions with several results or stack parameters);
//! - `typed () -> i32`: `TypedFunc::call` of a function returning a constant;
//! - `untyped (i32, i32) -> i32`: `Func::call` of `add` with `Val`s.

use framewalk::{Caller, Engine, Extern, Func, FuncType, Instance, Module, Store, Val};
use std::time::Instant;

const LOOP: i32 = 10_000;
const SAMPLES: usize = 2_000;

fn report(name: &str, mut per_iter: Vec<f64>) {
    per_iter.sort_by(f64::total_cmp);
    println!(
        "{name:<26} median {:>7.3} ns   min {:>7.3} ns   ({SAMPLES} runs of {LOOP})",
        per_iter[per_iter.len() / 2],
        per_iter[0]
    );
}

fn main() {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, include_bytes!("calls.wat")).unwrap();
    let mut store = Store::new(&engine, ());
    let noop = Func::wrap(&mut store, |_: Caller<'_, ()>| {}).unwrap();
    let noop_dynamic = Func::new(&mut store, FuncType::new([], []), |_, _, _| Ok(())).unwrap();
    let imports = [noop, noop_dynamic].map(Extern::Func);
    let inst = Instance::new(&mut store, &module, &imports).unwrap();
    for (row, export) in [
        ("empty loop", "empty_loop"),
        ("wasm -> wasm", "wasm_calls"),
        ("wasm -> host", "host_calls"),
        ("wasm -> host, Func::new", "dynamic_host_calls"),
    ] {
        let f = inst.get_typed_func::<i32, ()>(&store, export).unwrap();
        let times = (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                f.call(&mut store, std::hint::black_box(LOOP)).unwrap();
                t.elapsed().as_nanos() as f64 / f64::from(LOOP)
            })
            .collect();
        report(row, times);
    }
    let answer = inst.get_typed_func::<(), i32>(&store, "answer").unwrap();
    let times = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..LOOP {
                std::hint::black_box(answer.call(&mut store, ()).unwrap());
            }
            t.elapsed().as_nanos() as f64 / f64::from(LOOP)
        })
        .collect();
    report("typed () -> i32", times);
    let add = inst.get_func(&store, "add").unwrap();
    let args = [Val::I32(1), Val::I32(2)];
    let mut results = [Val::I32(0)];
    let times = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..LOOP {
                add.call(&mut store, std::hint::black_box(&args), &mut results)
                    .unwrap();
            }
            t.elapsed().as_nanos() as f64 / f64::from(LOOP)
        })
        .collect();
    report("untyped (i32, i32) -> i32", times);
}
