//! Cost of walking wasm stacks and of trap round trips, by depth.
//!
//! - `visit_frames/N`: one `Caller::visit_frames` over N wasm frames (recursion depth
//!   N, then a host function that walks inside `b.iter`), counting frames. No
//!   allocation, no symbolization.
//! - `backtrace/N`: one `Caller::force_backtrace` over the same N frames (walk,
//!   symbolize, allocate the `Vec<FrameInfo>`; forced, so every frame whatever the
//!   configuration).
//! - `wasm_backtrace/N`: one `Caller::force_wasm_backtrace` (walk, symbolize into the
//!   compact form whose frames borrow names from one `Arc` per module).
//! - `visit_frames_distinct/1000`, `backtrace_distinct/1000`: the same over a chain of
//!   1,000 *different* functions (`$f0` calls `$f1` ... calls the host), so every frame
//!   has its own return address and function: no per-walk cache hit, a registry lookup
//!   and an address-map search per frame.
//! - `raw_fp_chain/N`: the physical limit for comparison: following `[fp]` N - 1 times
//!   from the youngest wasm frame, no checks, no lookups.
//! - `trap_round_trip/N`: call an export that recurses to depth N and executes
//!   `unreachable`; the signal handler captures the N-frame backtrace; the call
//!   returns `Err(Trap)`.
//! - `nested_trap_round_trip/N`: the same trap in the innermost of N nested host ↔
//!   wasm activations (one wasm frame each); every host function returns its inner
//!   call's `Err`.
//!
//! Throughput is set to N elements (frames or activations), so criterion also reports
//! frames per second; ns per frame is the median divided by N.
//!
//! Run with `cargo bench --bench walk` (needs `harness = false` for this bench in
//! `Cargo.toml`). Criterion writes each median to
//! `target/criterion/<group>/<N>/new/estimates.json`. Everything runs on one thread
//! with a 256 MiB stack, so 1,000 nested activations fit.

use std::hint::black_box;
use std::time::Duration;

#[path = "common/chains.rs"]
mod chains;
#[path = "common/fp_chain.rs"]
mod fp_chain;

use fp_chain::{chase, count_frames, youngest_fp_and_count};

use criterion::{criterion_group, Bencher, BenchmarkId, Criterion, Throughput};
use framewalk::{Caller, Config, Engine, Error, Extern, Func, Instance, Module, Store, Val};

const DEPTHS: [usize; 3] = [10, 100, 1000];

const WAT: &str = r#"
(module $walk_bench
  (import "host" "walk" (func $walk (result i32)))
  (import "host" "down" (func $down (param i32) (result i32)))
  ;; rec(n): n + 1 frames of $rec, then the host walks.
  (func $rec (export "rec") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (call $walk))
      (else (i32.add (i32.const 1) (call $rec (i32.sub (local.get 0) (i32.const 1)))))))
  ;; rec_trap(n): n + 1 frames of $rec_trap, then unreachable.
  (func $rec_trap (export "rec_trap") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (unreachable))
      (else (i32.add (i32.const 1) (call $rec_trap (i32.sub (local.get 0) (i32.const 1)))))))
  ;; nest(n): n + 1 activations (the host's `down` calls nest(n - 1)), then unreachable.
  (func $nest (export "nest") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (unreachable))
      (else (call $down (local.get 0)))))
)
"#;

/// What the walking host function does inside `b.iter`.
#[derive(Clone, Copy)]
enum WalkKind {
    Visit,
    Backtrace,
    WasmBacktrace,
    RawChain,
}

/// Functions in the chain of distinct frames.
const CHAIN: usize = 1000;

struct BenchHost {
    instance: Option<Instance>,
    /// The running `Bencher` (a `*mut Bencher<'_>`), lent to `walk` for one call.
    bencher: usize,
    kind: WalkKind,
    /// Frames the last walk saw (checked once per benchmark).
    frames: usize,
}

struct Fixture {
    store: Store<BenchHost>,
    instance: Instance,
    chain: Instance,
}

impl Fixture {
    fn new() -> Fixture {
        // Traps symbolize every frame here (the trap rows measure a whole backtrace).
        let engine = Engine::new(Config {
            max_wasm_stack: 64 << 20,
            wasm_backtrace_max_frames: None,
            ..Config::default()
        })
        .expect("engine");
        let module = Module::new(&engine, WAT.as_bytes()).expect("module compiles");
        let mut store = Store::new(
            &engine,
            BenchHost {
                instance: None,
                bencher: 0,
                kind: WalkKind::Visit,
                frames: 0,
            },
        );
        let walk = Func::wrap(&mut store, |mut caller: Caller<'_, BenchHost>, (): ()| {
            let count_frames = |caller: &Caller<'_, BenchHost>| match caller.data().kind {
                WalkKind::Visit => count_frames(caller),
                // Forced: every frame, whatever the configuration.
                WalkKind::Backtrace => caller.force_backtrace().expect("walk").len(),
                WalkKind::WasmBacktrace => caller.force_wasm_backtrace().expect("walk").len(),
                WalkKind::RawChain => {
                    let (fp, n) = youngest_fp_and_count(caller);
                    black_box(chase(fp, n));
                    n
                }
            };
            let bencher = caller.data().bencher as *mut Bencher<'_>;
            if bencher.is_null() {
                let n = count_frames(&caller);
                caller.data_mut().frames = n;
            } else {
                // SAFETY: the benchmark routine lent its `Bencher` for this call and
                // does not use it until the call returns.
                let b = unsafe { &mut *bencher };
                if let WalkKind::RawChain = caller.data().kind {
                    // Measure only the chase: find the youngest FP once.
                    let (fp, n) = youngest_fp_and_count(&caller);
                    b.iter(|| chase(black_box(fp), n));
                } else {
                    b.iter(|| black_box(count_frames(&caller)));
                }
            }
            0
        })
        .expect("walk");
        let down = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, BenchHost>, n: i32| -> Result<i32, Error> {
                let instance = caller.data().instance.expect("instance");
                let nest = instance.get_func(&caller, "nest").expect("nest");
                let mut results = [Val::I32(0)];
                nest.call(&mut caller, &[Val::I32(n - 1)], &mut results)?;
                Ok(results[0].i32().expect("i32"))
            },
        )
        .expect("down");
        let instance = Instance::new(
            &mut store,
            &module,
            &[Extern::Func(walk), Extern::Func(down)],
        )
        .expect("instance");
        store.data_mut().instance = Some(instance);
        let chain =
            Module::new(&engine, chains::walk_chain_wat(CHAIN).as_bytes()).expect("chain compiles");
        let chain = Instance::new(&mut store, &chain, &[Extern::Func(walk)]).expect("chain");
        Fixture {
            store,
            instance,
            chain,
        }
    }

    fn call(&mut self, name: &str, arg: usize) -> Result<i32, Error> {
        let f = self.instance.get_func(&self.store, name).expect(name);
        let mut results = [Val::I32(0)];
        let arg = i32::try_from(arg).expect("arg fits i32");
        f.call(&mut self.store, &[Val::I32(arg)], &mut results)?;
        Ok(results[0].i32().expect("i32"))
    }
}

fn walks(c: &mut Criterion) {
    let mut fx = Fixture::new();
    for (name, kind) in [
        ("visit_frames", WalkKind::Visit),
        ("backtrace", WalkKind::Backtrace),
        ("wasm_backtrace", WalkKind::WasmBacktrace),
        ("raw_fp_chain", WalkKind::RawChain),
    ] {
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(3));
        for n in DEPTHS {
            fx.store.data_mut().kind = kind;
            fx.store.data_mut().bencher = 0;
            fx.call("rec", n - 1).expect("rec");
            assert_eq!(fx.store.data().frames, n, "rec({}) has {n} frames", n - 1);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                fx.store.data_mut().bencher = b as *mut Bencher<'_> as usize;
                fx.call("rec", n - 1).expect("rec");
                fx.store.data_mut().bencher = 0;
            });
        }
        group.finish();
    }
    let chain = fx
        .chain
        .get_func(&fx.store, "chain")
        .expect("chain")
        .typed::<(), i32>(&fx.store)
        .expect("() -> i32");
    for (name, kind) in [
        ("visit_frames_distinct", WalkKind::Visit),
        ("backtrace_distinct", WalkKind::Backtrace),
        ("wasm_backtrace_distinct", WalkKind::WasmBacktrace),
    ] {
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(3));
        fx.store.data_mut().kind = kind;
        fx.store.data_mut().bencher = 0;
        chain.call(&mut fx.store, ()).expect("chain");
        assert_eq!(
            fx.store.data().frames,
            CHAIN,
            "the chain has {CHAIN} frames"
        );
        group.throughput(Throughput::Elements(CHAIN as u64));
        group.bench_function(BenchmarkId::from_parameter(CHAIN), |b| {
            fx.store.data_mut().bencher = b as *mut Bencher<'_> as usize;
            chain.call(&mut fx.store, ()).expect("chain");
            fx.store.data_mut().bencher = 0;
        });
        group.finish();
    }
}

fn trap_round_trips(c: &mut Criterion) {
    let mut fx = Fixture::new();
    let mut group = c.benchmark_group("trap_round_trip");
    group.measurement_time(Duration::from_secs(3));
    for n in DEPTHS {
        let trap = fx.call("rec_trap", n - 1).expect_err("rec_trap traps");
        let frames = trap.as_trap().expect("a trap").frames().len();
        assert_eq!(frames, n, "rec_trap({}) traps with {n} frames", n - 1);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                let e = fx.call("rec_trap", n - 1).expect_err("traps");
                black_box(e.as_trap().map(|t| t.frames().len()))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("nested_trap_round_trip");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in DEPTHS {
        let trap = fx.call("nest", n - 1).expect_err("nest traps");
        assert!(trap.as_trap().is_some(), "nest({}) ends in a trap", n - 1);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| black_box(fx.call("nest", n - 1).is_err()))
        });
    }
    group.finish();
}

criterion_group!(benches, walks, trap_round_trips);

fn main() {
    // As `criterion_main!`, on a thread whose stack holds 1,000 nested activations.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            benches();
            Criterion::default().configure_from_args().final_summary();
        })
        .expect("spawn bench thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}
