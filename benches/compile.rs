//! Compile time of a realistic module: 1,000 functions with arithmetic, memory
//! accesses, branches and calls. `cargo bench --bench compile`.

use criterion::{criterion_group, criterion_main, Criterion};
use framewalk::{Engine, Module};

fn generated_module(funcs: usize) -> String {
    let mut wat = String::from("(module (memory 1) (table 16 funcref)\n");
    for i in 0..funcs {
        let callee = if i == 0 { 0 } else { i - 1 };
        wat.push_str(&format!(
            "(func $f{i} (param $a i32) (param $b i32) (result i32) (local $t i32)
               (local.set $t (i32.add (local.get $a) (i32.const {i})))
               (if (i32.gt_s (local.get $t) (local.get $b))
                 (then (local.set $t (i32.mul (local.get $t) (local.get $b))))
                 (else (local.set $t (i32.sub (local.get $b) (local.get $t)))))
               (i32.store (i32.and (local.get $t) (i32.const 1020)) (local.get $a))
               (local.set $t (i32.add (local.get $t) (i32.load (i32.const 64))))
               (if (result i32) (i32.eqz (local.get $b))
                 (then (local.get $t))
                 (else (call $f{callee} (local.get $t) (i32.sub (local.get $b) (i32.const 1))))))\n"
        ));
    }
    wat.push_str("(export \"f0\" (func $f0)))");
    wat
}

fn compile(c: &mut Criterion) {
    let engine = Engine::new(Default::default()).unwrap();
    let wasm = wat::parse_str(generated_module(1000)).unwrap();
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("1000 functions (wasm -> artifact -> loaded module)", |b| {
        b.iter(|| Module::new(&engine, &wasm).unwrap())
    });
    let artifact = framewalk::runtime::compile_artifact(&engine, &wasm).unwrap();
    g.bench_function("1000 functions: load artifact only", |b| {
        // SAFETY: the artifact was just compiled by this engine.
        b.iter(|| unsafe { Module::deserialize(&engine, &artifact) }.unwrap())
    });
    g.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
