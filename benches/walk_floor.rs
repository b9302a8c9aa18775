//! Walk costs per frame as the distribution over many single walks, for figures that
//! hold on a noisy machine: `cargo bench --bench walk_floor`.
//!
//! A chain of 1,000 *different* wasm functions (`$f0` calls `$f1` ... calls the host;
//! every frame has its own return address and function) ends in a host function that
//! times `SAMPLES` walks of the chain and prints the median and the minimum per frame.
//! `cargo bench --bench walk_floor -- gc` runs only the rows whose name contains `gc`.
//! The minimum is the machine's floor for that code (interference only adds time); the
//! criterion bench `walk` gives the same rows with confidence intervals. Rows:
//! - `raw fp chain`: following the saved FPs from the youngest wasm frame, no checks;
//! - `visit_frames`: `Caller::visit_frames` counting frames (checked walk, one code
//!   lookup per frame);
//! - `visit_frames, find`: the same walk with a visitor that keeps no state (it stops
//!   at the oldest frame, found by its FP): the walk without the visitor's own cost;
//! - `wasm_backtrace`: `Caller::force_wasm_backtrace` (walk and symbolize every frame,
//!   whatever the engine's backtrace limit);
//! - `backtrace`: `Caller::force_backtrace` (the owned form, names cloned per frame);
//! - `gc scan`: `Caller::visit_stack_roots` at the bottom of another chain of 1,000
//!   different functions, each holding one `externref` live across its call: the walk,
//!   a stack-map lookup and a slot read per frame, and a read of the reference's header
//!   (where a collection marks it), without the sweep;
//! - `gc pause`: `Caller::gc` at the same place (the scan with marks, then the sweep of
//!   the 1,000 references).

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;

use framewalk::{Caller, Engine, Extern, ExternRef, Func, Instance, Module, Store};

#[path = "common/chains.rs"]
mod chains;
#[path = "common/fp_chain.rs"]
mod fp_chain;

use fp_chain::{chase, count_frames, youngest_fp_and_count};

/// Functions (and frames) in the chain.
const CHAIN: usize = 1000;
/// Timed walks per row.
const SAMPLES: usize = 5_000;

/// Times `SAMPLES` runs of `walk` (which returns the frames it saw) and prints the
/// median and minimum per frame.
fn row(name: &str, mut walk: impl FnMut() -> usize) {
    // `cargo bench --bench walk_floor -- NAME` runs only the rows whose name contains
    // NAME (cargo passes `--bench` too).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !name.contains(f.as_str())) {
        return;
    }
    assert_eq!(walk(), CHAIN, "{name}: every frame of the chain");
    let mut per_frame: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            black_box(walk());
            t.elapsed().as_nanos() as f64 / CHAIN as f64
        })
        .collect();
    per_frame.sort_by(f64::total_cmp);
    println!(
        "{name:<20} median {:>7.3} ns/frame   min {:>7.3} ns/frame   ({SAMPLES} runs over {CHAIN} frames)",
        per_frame[per_frame.len() / 2],
        per_frame[0]
    );
}

fn walk_rows(caller: Caller<'_, ()>) -> i32 {
    let (youngest, n) = youngest_fp_and_count(&caller);
    row("raw fp chain", || {
        black_box(chase(black_box(youngest), n));
        n
    });
    row("visit_frames", || count_frames(&caller));
    // The same walk with a visitor that keeps no state: it looks for the oldest frame
    // (by its FP) and stops there, so every frame is visited and none is counted.
    let (oldest_fp, oldest_index) = {
        let mut last = (0, 0);
        caller
            .visit_frames(|f| {
                last = (f.fp, last.1 + 1);
                ControlFlow::<()>::Continue(())
            })
            .expect("walk");
        last
    };
    row("visit_frames, find", || {
        let found = caller
            .visit_frames(|f| {
                if f.fp == oldest_fp {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("walk");
        found.map_or(0, |()| oldest_index)
    });
    // The forced captures: every frame, whatever the engine's backtrace limit (the
    // default symbolizes 20), so these rows measure a walk of the whole chain.
    row("wasm_backtrace", || {
        caller.force_wasm_backtrace().expect("walk").len()
    });
    row("backtrace", || {
        caller.force_backtrace().expect("walk").len()
    });
    0
}

fn main() {
    let engine = Engine::new(Default::default()).expect("engine");
    let module = Module::new(&engine, chains::walk_chain_wat(CHAIN).as_bytes()).expect("chain");
    let mut store = Store::new(&engine, ());
    let walk = Func::wrap(&mut store, |caller: Caller<'_, ()>, (): ()| {
        walk_rows(caller)
    })
    .expect("walk");
    let instance = Instance::new(&mut store, &module, &[Extern::Func(walk)]).expect("instance");
    let chain = instance
        .get_typed_func::<(), i32>(&store, "chain")
        .expect("() -> i32");
    assert_eq!(chain.call(&mut store, ()).expect("chain"), CHAIN as i32);

    let module = Module::new(&engine, chains::gc_chain_wat(CHAIN).as_bytes()).expect("gc chain");
    let mut store = Store::new(&engine, ());
    let make = Func::wrap(&mut store, |mut caller: Caller<'_, ()>, i: i32| {
        Some(ExternRef::new(&mut caller, i))
    })
    .expect("make");
    let bottom = Func::wrap(&mut store, |mut caller: Caller<'_, ()>, (): ()| {
        row("gc scan", || {
            let (mut refs, mut counts) = (0, 0);
            caller
                .visit_stack_roots(|_, r| {
                    refs += 1;
                    counts += r.owner_count();
                })
                .expect("scan");
            black_box(counts);
            refs
        });
        row("gc pause", || {
            caller.gc().expect("gc");
            caller.gc_stats().last_stack_roots
        });
    })
    .expect("bottom");
    let instance = Instance::new(
        &mut store,
        &module,
        &[Extern::Func(bottom), Extern::Func(make)],
    )
    .expect("instance");
    let chain = instance
        .get_typed_func::<(), i32>(&store, "chain")
        .expect("() -> i32");
    assert_eq!(chain.call(&mut store, ()).expect("gc chain"), 0);
}
