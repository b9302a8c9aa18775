//! What epoch interruption costs compute-bound code: `cargo bench --bench epoch`.
//!
//! The same kernels compiled without and with `Config::epoch_interruption` (with a
//! deadline set that is never reached): `fib(25)` from `examples/compute.wat` (a check
//! at every function entry), FNV-1a over 64 KiB of memory byte by byte (a check at
//! every iteration's loop header, a load, an xor and a multiply per iteration) and the
//! worst case, a loop whose whole body is a counter and an add (the check's load,
//! compare and branch are then most of each iteration). Each row prints the median and the minimum of `SAMPLES`
//! runs; the two configurations alternate run by run, so drift hits both alike.

use framewalk::runtime::WasmTuple;
use framewalk::{Config, Engine, Instance, Module, Store, TypedFunc};
use std::time::Instant;

const SAMPLES: usize = 200;

const LOOP: &str = r#"(module
  (func (export "sum") (param $n i32) (result i64) (local $acc i64)
    (loop $l
      (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $n))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $acc)))"#;

const FNV: &str = r#"(module
  (memory 1)
  (func (export "fnv") (param $n i32) (result i32) (local $h i32) (local $i i32)
    (local.set $h (i32.const 0x811c9dc5))
    (loop $l
      (local.set $h (i32.mul
        (i32.xor (local.get $h) (i32.load8_u (local.get $i)))
        (i32.const 0x01000193)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                          (local.get $n))))
    (local.get $h)))"#;

fn setup<R: WasmTuple>(
    epoch_interruption: bool,
    wat: &str,
    export: &str,
) -> (Store<()>, TypedFunc<i32, R>) {
    let engine = Engine::new(Config {
        epoch_interruption,
        ..Config::default()
    })
    .unwrap();
    let module = Module::new(&engine, wat.as_bytes()).unwrap();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let func = instance.get_typed_func::<i32, R>(&store, export).unwrap();
    (store, func)
}

fn compare<R: WasmTuple>(row: &str, wat: &str, export: &str, arg: i32) {
    let (mut plain, f_plain) = setup::<R>(false, wat, export);
    let (mut checked, f_checked) = setup::<R>(true, wat, export);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let t = Instant::now();
        std::hint::black_box(f_plain.call(&mut plain, arg).unwrap());
        off.push(t.elapsed().as_nanos() as f64);
        let t = Instant::now();
        std::hint::black_box(f_checked.call(&mut checked, arg).unwrap());
        on.push(t.elapsed().as_nanos() as f64);
    }
    let a = report(&format!("{row}, no checks"), off);
    let b = report(&format!("{row}, epoch checks"), on);
    println!("{:<40} {:+.1}% (minima)", "", (b / a - 1.0) * 100.0);
}

fn report(name: &str, mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    println!(
        "{name:<40} median {:>8.3} ms   min {:>8.3} ms   ({SAMPLES} runs)",
        ns[ns.len() / 2] / 1e6,
        ns[0] / 1e6
    );
    ns[0]
}

fn main() {
    compare::<i32>(
        "fib(25)",
        include_str!("../examples/compute.wat"),
        "fib",
        25,
    );
    compare::<i32>("FNV-1a over 64 KiB", FNV, "fnv", 65_536);
    compare::<i64>("empty loop of 1,000,000", LOOP, "sum", 1_000_000);
}
