//! Cost of one profiler sample once the SIGPROF handler is entered, by depth.
//!
//! A host function called by wasm N frames deep (`rec(N - 1)`: N frames of `$rec`)
//! runs, inside `b.iter`, everything the handler does for a sample after the kernel
//! has delivered the signal: read the thread's activations, classify the PC, walk the
//! exact stack, write the sample into the ring (`Sampler::bench_sample`, a hidden hook
//! over the handler's own `record`; the ring position is restored after each call).
//!
//! - `sample_wasm/N`: the sample as the handler takes it in wasm code: the registers of
//!   the host call's exit record (its return address in the calling wasm function,
//!   frame state `Body`) with that exit cleared, so the walk starts from the registers.
//! - `sample_host/N`: a sample in the host function: classified as host code called
//!   from wasm and walked from the exit record.
//!
//! Throughput is N elements (frames): criterion also reports frames per second. The
//! goal (issue 24) is at most 150 ns + 2 ns a frame. Not measured here: the kernel's
//! timer interrupt and signal delivery, which dominate a real sample's cost (see the
//! README's profiler section).
//!
//! Run with `cargo bench --bench profile`. Everything runs on one thread with a
//! 256 MiB stack.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Bencher, BenchmarkId, Criterion, Throughput};
use framewalk::profile::{SampleClock, SampleKind, Sampler, SamplerConfig};
use framewalk::{Caller, Config, Engine, Extern, Func, Instance, Module, Store, Val};

const DEPTHS: [usize; 3] = [10, 100, 1000];

const WAT: &str = r#"
(module $profile_bench
  (import "host" "sample" (func $sample (result i32)))
  ;; rec(n): n + 1 frames of $rec, then the host samples.
  (func $rec (export "rec") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (call $sample))
      (else (i32.add (i32.const 1) (call $rec (i32.sub (local.get 0) (i32.const 1)))))))
)
"#;

struct BenchHost {
    /// The sampler (a `*const Sampler`), lent for the benchmark.
    sampler: usize,
    /// The running `Bencher` (a `*mut Bencher<'_>`), lent to `sample` for one call.
    bencher: usize,
    in_wasm: bool,
    /// What the last sample found (checked once per benchmark).
    last: Option<(SampleKind, usize)>,
}

fn samples(c: &mut Criterion) {
    let engine = Engine::new(Config {
        max_wasm_stack: 64 << 20,
        ..Config::default()
    })
    .expect("engine");
    let module = Module::new(&engine, WAT.as_bytes()).expect("module compiles");
    let mut store = Store::new(
        &engine,
        BenchHost {
            sampler: 0,
            bencher: 0,
            in_wasm: false,
            last: None,
        },
    );
    let sample = Func::wrap(&mut store, |mut caller: Caller<'_, BenchHost>, (): ()| {
        let data = caller.data();
        // SAFETY: `samples` lends its sampler for the whole benchmark, on this thread.
        let sampler = unsafe { &*(data.sampler as *const Sampler) };
        let in_wasm = data.in_wasm;
        let bencher = data.bencher as *mut Bencher<'_>;
        if bencher.is_null() {
            caller.data_mut().last = sampler.bench_sample(in_wasm);
        } else {
            // SAFETY: the benchmark routine lent its `Bencher` for this call and does
            // not use it until the call returns.
            let b = unsafe { &mut *bencher };
            b.iter(|| black_box(sampler.bench_sample(black_box(in_wasm))));
        }
        0
    })
    .expect("sample");
    let instance = Instance::new(&mut store, &module, &[Extern::Func(sample)]).expect("instance");
    let rec = instance.get_func(&store, "rec").expect("rec");
    // One sample a second of CPU time: the timer stays out of the way.
    let sampler = Sampler::start(SamplerConfig {
        hz: 1,
        clock: SampleClock::ThreadCpuTime,
        buffer_bytes: 1 << 20,
    })
    .expect("sampler");
    store.data_mut().sampler = &sampler as *const Sampler as usize;
    let call = |store: &mut Store<BenchHost>, n: usize| {
        let mut results = [Val::I32(0)];
        let arg = i32::try_from(n - 1).expect("depth fits i32");
        rec.call(store, &[Val::I32(arg)], &mut results)
            .expect("rec");
    };
    for (name, in_wasm, kind) in [
        ("sample_wasm", true, SampleKind::Wasm),
        ("sample_host", false, SampleKind::Host),
    ] {
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(3));
        store.data_mut().in_wasm = in_wasm;
        for n in DEPTHS {
            store.data_mut().bencher = 0;
            call(&mut store, n);
            assert_eq!(
                store.data().last,
                Some((kind, n)),
                "a {name} sample {n} frames deep"
            );
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                store.data_mut().bencher = b as *mut Bencher<'_> as usize;
                call(&mut store, n);
                store.data_mut().bencher = 0;
            });
        }
        group.finish();
    }
    store.data_mut().sampler = 0;
    drop(sampler);
}

criterion_group!(benches, samples);

fn main() {
    // As `criterion_main!`, on a thread whose stack holds 1,000 wasm frames.
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
