//! The sampling profiler on real runs: the share of each call chain (7:3 by
//! construction), every sampled stack a path of the program's call graph (a dropped or
//! invented frame breaks the path), host time under its wasm caller, and several
//! sampled threads with traps, collections and module registrations going on.

use framewalk::profile::{Profile, SampleClock, SampleKind, Sampler, SamplerConfig};
use framewalk::{Caller, Engine, Instance, Linker, Module, Store};
use std::time::{Duration, Instant};

/// `run` does the same work 7 times through `chain_a1 -> chain_a2 -> work` and 3 times
/// through `chain_b1 -> work`; `work` calls the small `step` in a loop, so samples land
/// in prologues and epilogues often.
const PROGRAM: &str = r#"
(module
  (import "h" "spin" (func $spin (param i32) (result i32)))
  (func $step (param i32) (result i32)
    (i32.add (i32.mul (local.get 0) (i32.const 1103515245)) (i32.const 12345)))
  (func $work (param $n i32) (result i32) (local $x i32)
    (loop $l
      (local.set $x (call $step (local.get $x)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $x))
  (func $chain_a2 (param i32) (result i32) (call $work (local.get 0)))
  (func $chain_a1 (param i32) (result i32) (call $chain_a2 (local.get 0)))
  (func $chain_b1 (param i32) (result i32) (call $work (local.get 0)))
  (func $run (export "run") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (if (i32.lt_u (i32.rem_u (local.get $i) (i32.const 10)) (i32.const 7))
        (then (local.set $acc (i32.add (local.get $acc) (call $chain_a1 (local.get $n)))))
        (else (local.set $acc (i32.add (local.get $acc) (call $chain_b1 (local.get $n))))))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                          (i32.const 10))))
    (local.get $acc))
  (func $host_caller (export "host_caller") (param i32) (result i32)
    (call $spin (local.get 0)))
  (func $trap (export "trap") (call $chain_trap))
  (func $chain_trap unreachable)
)
"#;

/// The call paths of `PROGRAM` from an export, root first. Every wasm stack a sample
/// records must be a prefix of one of them.
const PATHS: &[&[&str]] = &[
    &["run", "chain_a1", "chain_a2", "work", "step"],
    &["run", "chain_b1", "work", "step"],
    &["host_caller"],
    &["trap", "chain_trap"],
];

struct Program {
    store: Store<()>,
    instance: Instance,
}

fn program(engine: &Engine) -> Program {
    let module = Module::new(engine, PROGRAM.as_bytes()).expect("compile");
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("h", "spin", |_c: Caller<'_, ()>, micros: i32| {
            let until = Instant::now() + Duration::from_micros(micros as u64);
            let mut x = 0i32;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x
        })
        .expect("define spin");
    let mut store = Store::new(engine, ());
    let instance = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    Program { store, instance }
}

impl Program {
    fn run(&mut self, n: i32) -> i32 {
        let run = self
            .instance
            .get_typed_func::<i32, i32>(&self.store, "run")
            .expect("run");
        run.call(&mut self.store, n).expect("run")
    }

    fn host_caller(&mut self, micros: i32) {
        let f = self
            .instance
            .get_typed_func::<i32, i32>(&self.store, "host_caller")
            .expect("host_caller");
        f.call(&mut self.store, micros).expect("host_caller");
    }

    fn trap(&mut self) {
        let f = self
            .instance
            .get_typed_func::<(), ()>(&self.store, "trap")
            .expect("trap");
        assert!(f.call(&mut self.store, ()).is_err());
    }
}

/// Checks every sample's stack against `PATHS` and the synthetic frames, and that none
/// is unwalkable; returns the wasm names of each sample (synthetic frames removed).
fn check_stacks(profile: &Profile) -> Vec<Vec<String>> {
    assert_eq!(
        profile.summary().count(SampleKind::Unwalkable),
        0,
        "{}",
        profile.summary()
    );
    let mut stacks = Vec::new();
    for sample in profile.samples() {
        let names: Vec<&str> = profile.stack_names(sample).collect();
        let (wasm, leaf) = match sample.kind.leaf_label() {
            Some(label) => {
                assert_eq!(names.last(), Some(&label), "{names:?}");
                (&names[..names.len() - 1], Some(label))
            }
            None => (&names[..], None),
        };
        match sample.kind {
            SampleKind::Wasm => assert!(!wasm.is_empty()),
            SampleKind::Host => {}
            _ => assert!(wasm.is_empty(), "{:?} has frames {names:?}", sample.kind),
        }
        assert!(
            PATHS.iter().any(|p| p.starts_with(wasm)),
            "{:?} sample {names:?} (leaf {leaf:?}) is not a path of the program",
            sample.kind
        );
        stacks.push(wasm.iter().map(|s| s.to_string()).collect());
    }
    stacks
}

/// The share of chain `a` among the samples in `work` or below, in percent, and how
/// many samples that is.
fn chain_a_share(stacks: &[Vec<String>]) -> (f64, usize) {
    let in_work: Vec<_> = stacks
        .iter()
        .filter(|s| s.iter().any(|n| n == "work"))
        .collect();
    let a = in_work
        .iter()
        .filter(|s| s.iter().any(|n| n == "chain_a1"))
        .count();
    let b = in_work
        .iter()
        .filter(|s| s.iter().any(|n| n == "chain_b1"))
        .count();
    assert_eq!(a + b, in_work.len());
    (
        100.0 * a as f64 / in_work.len().max(1) as f64,
        in_work.len(),
    )
}

/// Samples `program.run` until `min_samples` are in (or a minute passes).
fn sample_runs(clock: SampleClock, hz: u32, min_samples: u64) -> Profile {
    let engine = Engine::new(Default::default()).expect("engine");
    let mut p = program(&engine);
    let sampler = Sampler::start(SamplerConfig {
        hz,
        clock,
        ..Default::default()
    })
    .expect("start sampler");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sampler.samples_taken() < min_samples && Instant::now() < deadline {
        p.run(20_000);
    }
    sampler.stop()
}

fn assert_seven_to_three(profile: &Profile) {
    let stacks = check_stacks(profile);
    let (share, n) = chain_a_share(&stacks);
    eprintln!(
        "{}; chain a: {share:.1}% of {n} samples in work",
        profile.summary()
    );
    assert!(n >= 2000, "only {n} samples in work");
    assert!((65.0..=75.0).contains(&share), "chain a has {share:.1}%");
}

/// The thread's CPU time paces the samples (at most the kernel's tick rate: this takes
/// about 2,000 / CONFIG_HZ seconds of CPU).
#[test]
fn cpu_time_samples_split_seven_to_three() {
    assert_seven_to_three(&sample_runs(SampleClock::ThreadCpuTime, 1000, 2100));
}

#[test]
fn wall_clock_samples_at_10_khz_split_seven_to_three() {
    assert_seven_to_three(&sample_runs(SampleClock::Wall, 10_000, 2100));
}

#[test]
fn host_time_is_under_its_wasm_caller() {
    let engine = Engine::new(Default::default()).expect("engine");
    let mut p = program(&engine);
    let sampler = Sampler::start(SamplerConfig {
        hz: 10_000,
        clock: SampleClock::Wall,
        ..Default::default()
    })
    .expect("start sampler");
    for _ in 0..20 {
        p.host_caller(5_000);
    }
    let profile = sampler.stop();
    let stacks = check_stacks(&profile);
    let host: Vec<_> = profile
        .samples()
        .iter()
        .zip(&stacks)
        .filter(|(s, _)| s.kind == SampleKind::Host)
        .collect();
    assert!(host.len() > 200, "{}", profile.summary());
    for (_, wasm) in &host {
        assert_eq!(wasm.as_slice(), ["host_caller"]);
    }
    let folded = profile.folded();
    assert!(
        folded
            .iter()
            .any(|(stack, n)| stack == "host_caller;[host]" && *n as usize == host.len()),
        "{folded:?}"
    );
}

#[test]
fn threads_sample_themselves_through_traps_collections_and_registrations() {
    let engine = Engine::new(Default::default()).expect("engine");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let profiles = std::thread::scope(|s| {
        // Registrations and unregistrations while the others are sampled.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m = Module::new(&engine, b"(module (func (export \"f\")))").expect("compile");
                drop(m);
            }
        });
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let engine = &engine;
                s.spawn(move || {
                    let mut p = program(engine);
                    let sampler = Sampler::start(SamplerConfig {
                        hz: 5_000,
                        clock: SampleClock::Wall,
                        ..Default::default()
                    })
                    .expect("start sampler");
                    assert!(matches!(
                        Sampler::start(SamplerConfig::default()),
                        Err(framewalk::profile::ProfileError::AlreadySampling)
                    ));
                    for i in 0..100 {
                        p.run(50_000);
                        if i % 5 == t {
                            p.trap();
                            p.store.gc().expect("gc");
                            p.host_caller(200);
                        }
                    }
                    sampler.stop()
                })
            })
            .collect();
        let profiles: Vec<Profile> = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        profiles
    });
    let mut merged = Profile::default();
    for p in &profiles {
        check_stacks(p);
        assert!(p.summary().count(SampleKind::Wasm) > 50, "{}", p.summary());
        merged.merge(p);
    }
    assert_eq!(
        merged.summary().taken,
        profiles.iter().map(|p| p.summary().taken).sum::<u64>()
    );
    check_stacks(&merged);
}

#[test]
fn a_full_ring_drops_and_counts() {
    let engine = Engine::new(Default::default()).expect("engine");
    let mut p = program(&engine);
    let sampler = Sampler::start(SamplerConfig {
        hz: 20_000,
        clock: SampleClock::Wall,
        // Room for a few samples only (each reserves MAX_FRAMES slots).
        buffer_bytes: 24 * (framewalk::profile::MAX_FRAMES + 40),
    })
    .expect("start sampler");
    for _ in 0..20 {
        p.run(20_000);
    }
    let profile = sampler.stop();
    let summary = profile.summary();
    assert!(summary.dropped > 0, "{summary}");
    assert_eq!(summary.taken as usize, profile.samples().len());
    check_stacks(&profile);
}

#[test]
fn invalid_configurations_are_refused() {
    for config in [
        SamplerConfig {
            hz: 0,
            ..Default::default()
        },
        SamplerConfig {
            hz: 1_000_000,
            ..Default::default()
        },
        SamplerConfig {
            buffer_bytes: 100,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Sampler::start(config),
            Err(framewalk::profile::ProfileError::InvalidConfig(_))
        ));
    }
}
