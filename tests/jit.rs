//! A language VM on cranelift-jit (`examples/jit/`) using only framewalk's drop-in
//! layers (this test also runs with `--no-default-features`, where nothing else
//! exists). What it checks is what a user of that VM observes: program results, the
//! roots each collection found per frame, what each freed, every payload dropped
//! exactly once, exact backtraces with source lines, the lazy compilation order; and,
//! for each rule of `docs/EMBEDDING.md` the VM can break on purpose ([`Faults`]), the
//! failure that break causes.

#[path = "../examples/jit/main.rs"]
mod jit;

use framewalk::trap::TrapCode;
use framewalk::unwind::WalkError;
use jit::{BacktraceFrame, CallError, Collection, Faults, FrameRoots, Value, Vm};

fn frame(function: &str, activation: usize, roots: &[i64]) -> FrameRoots {
    FrameRoots {
        function: function.to_string(),
        activation,
        roots: roots.to_vec(),
    }
}

fn collection(frames: Vec<FrameRoots>, freed: &[i64]) -> Collection {
    Collection {
        frames,
        freed: freed.to_vec(),
        error: None,
    }
}

fn at(function: &str, line: u32, activation: usize) -> BacktraceFrame {
    BacktraceFrame {
        function: function.to_string(),
        line: Some(line),
        activation,
    }
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

#[test]
fn the_demo_collects_exactly_what_no_frame_holds_and_drops_every_payload_once() {
    let report = jit::run_demo(Faults::default()).expect("the demo runs");
    // inner: consume 700 + 500 + hold (0 + 4 frames + 500 + 600) + global 800 = 3104;
    // middle: 100 + 300 + 3104; main: 100 + 200 + 3504 + 0 + 9.
    assert_eq!(report.result, 3813);
    assert_eq!(
        report.log.collections,
        vec![
            // In lib.hold, two activations deep, with the host frame of `reenter`
            // between them: every reference a frame still uses is its root; 400
            // (made and dropped by middle) is freed; 800 is kept by the global's count.
            collection(
                vec![
                    frame("lib.hold", 0, &[500, 600]),
                    frame("app.inner", 0, &[500]),
                    frame("app.middle", 1, &[100, 300]),
                    frame("app.main", 1, &[100, 200]),
                ],
                &[400],
            ),
            // In `consume`: 700 is in no frame (it was its caller's last use) but the
            // host boundary holds a count for it, so only hold's 600 goes.
            collection(
                vec![
                    frame("app.inner", 0, &[500]),
                    frame("app.middle", 1, &[100, 300]),
                    frame("app.main", 1, &[100, 200]),
                ],
                &[600],
            ),
            // In main after middle returned: what only the popped frames held goes.
            collection(vec![frame("app.main", 0, &[100, 200])], &[300, 500]),
            // From the host, no JIT frames.
            collection(vec![], &[100, 200]),
            // After the two traps: what the abandoned frames of boom and deep held.
            collection(vec![], &[899, 900, 950, 951]),
        ]
    );
    // 700 when consume dropped its count; 800 when teardown released the global.
    assert_eq!(
        report.drops,
        [400, 600, 700, 500, 300, 200, 100, 951, 899, 950, 900, 800]
    );
    assert_eq!(report.stats.collections, 5);
    assert_eq!(report.stats.freed, 10);
    assert!(report.log.events.is_empty(), "{:?}", report.log.events);
}

#[test]
fn a_backtrace_names_every_frame_and_line_across_modules_and_activations() {
    let report = jit::run_demo(Faults::default()).expect("the demo runs");
    assert_eq!(
        report.log.backtraces,
        vec![Ok(vec![
            at("lib.hold", 7, 0),
            at("app.inner", 27, 0),
            at("app.middle", 22, 1),
            at("app.main", 16, 1),
        ])]
    );
    let printed = report.to_string();
    assert!(
        printed.contains("  0: lib.hold line 7 (activation 0)")
            && printed.contains("  3: app.main line 16 (activation 1)"),
        "{printed}"
    );
}

#[test]
fn a_division_by_zero_traps_with_every_frame_and_line_across_activations() {
    let report = jit::run_demo(Faults::default()).expect("the demo runs");
    let trap = &report.traps[0];
    assert_eq!(trap.code, TrapCode::IntegerDivisionByZero);
    assert_eq!(trap.message, "integer divide by zero");
    // The trapping `idiv` (line 9), the calls in progress above it, and boom's
    // `reenter` in the older activation, past the host frame between the two.
    assert_eq!(
        trap.backtrace,
        Ok(vec![
            at("lib.ratio", 9, 0),
            at("lib.check", 11, 0),
            at("app.deep", 35, 0),
            at("app.boom", 32, 1),
        ])
    );
    assert_eq!(
        trap.to_string(),
        "trap: integer divide by zero\n  0: lib.ratio line 9 (activation 0)\n  \
         1: lib.check line 11 (activation 0)\n  2: app.deep line 35 (activation 0)\n  \
         3: app.boom line 32 (activation 1)\n"
    );
}

#[test]
fn an_explicit_trap_carries_its_own_code() {
    let report = jit::run_demo(Faults::default()).expect("the demo runs");
    let trap = &report.traps[1];
    assert_eq!(trap.code, TrapCode::Custom(7));
    assert_eq!(trap.message, "user trap 7");
    assert_eq!(
        trap.backtrace,
        Ok(vec![
            at("lib.check", 11, 0),
            at("app.deep", 35, 0),
            at("app.boom", 32, 1),
        ])
    );
}

#[test]
fn after_a_trap_the_vm_runs_on_and_its_activations_are_gone() {
    let vm = Vm::new(jit::DEMO, Faults::default()).unwrap();
    let Err(CallError::Trap(trap)) = vm.call("lib", "ratio", &[Value::Int(1), Value::Int(0)])
    else {
        panic!("ratio(1, 0) traps");
    };
    assert_eq!(trap.backtrace, Ok(vec![at("lib.ratio", 9, 0)]));
    // The trapped activation was popped: a collection walks no JIT frame, and the
    // same code runs again.
    assert_eq!(vm.collect_now(), collection(vec![], &[]));
    let Value::Int(q) = vm
        .call("lib", "ratio", &[Value::Int(84), Value::Int(2)])
        .unwrap()
    else {
        panic!("ratio returns an int");
    };
    assert_eq!(q, 42);
    // The whole demo program still runs, collections and all, after the trap.
    let Value::Int(r) = vm.call("app", "main", &[Value::Int(100)]).unwrap() else {
        panic!("main returns an int");
    };
    assert_eq!(r, 3813);
    let drops = vm.finish();
    assert_eq!(sorted(drops), [100, 200, 300, 400, 500, 600, 700, 800]);
}

#[test]
fn functions_compile_on_their_first_call_one_registration_each() {
    let report = jit::run_demo(Faults::default()).expect("the demo runs");
    // In call order; lib.unused and lib.make are never called, never compiled.
    assert_eq!(
        report.log.compiled,
        [
            "app.main",
            "app.middle",
            "app.inner",
            "lib.hold",
            "lib.square",
            "app.boom",
            "app.deep",
            "lib.check",
            "lib.ratio"
        ]
    );
    assert_eq!(
        report.registrations, 9,
        "one per function, none for trampolines"
    );
}

#[test]
fn a_function_called_again_is_not_compiled_again() {
    let vm = Vm::new(jit::DEMO, Faults::default()).unwrap();
    for n in [2, 3] {
        let Value::Int(v) = vm.call("lib", "square", &[Value::Int(n)]).unwrap() else {
            panic!("square returns an int");
        };
        assert_eq!(v, n * n);
    }
    assert_eq!(vm.log().compiled, ["lib.square"]);
    assert_eq!(vm.registrations(), 1);
}

#[test]
fn a_reference_returned_to_the_host_is_counted_and_survives_collections() {
    let vm = Vm::new(jit::DEMO, Faults::default()).unwrap();
    let Value::Ref(r) = vm.call("lib", "make", &[Value::Int(42)]).unwrap() else {
        panic!("make returns a counted reference");
    };
    assert_eq!(vm.collect_now(), collection(vec![], &[]));
    assert_eq!(r.owner_count(), 1);
    assert_eq!(r.owner(), vm.owner(), "made for this VM");
    let other = Vm::new(jit::DEMO, Faults::default()).unwrap();
    assert_ne!(other.owner(), vm.owner(), "each VM has its own owner id");
    drop(other);
    drop(r);
    assert_eq!(vm.drops(), [42], "dropped when the host's count went");
    assert_eq!(vm.finish(), [42]);
}

// ---------------------------------------------------------------------------------
// Rule breakers: each shows the failure as a user sees it, next to the correct run.
// ---------------------------------------------------------------------------------

/// A program where a broken collection cannot make JIT code read freed memory: after
/// the `gc`, `keep` only tests its reference for null (no payload read). Every
/// function of `app` has an index with no compiled function of `lib` (lib.leaf is
/// never called), so maps looked up in the wrong module are always "none".
const KEEP: &str = "\
(module lib
  (fn leaf ((n int)) int (+ n 1)))
(module app
  (fn main ((n int)) int
    (+ (keep n) 0))
  (fn keep ((n int)) int
    (let ((r (new n)))
      (+ (gc) (+ (backtrace) (null? r))))))
";

struct KeepRun {
    result: i64,
    collection: Collection,
    backtrace: Result<Vec<BacktraceFrame>, WalkError>,
    drops_after_call: Vec<i64>,
    drops: Vec<i64>,
}

fn run_keep(faults: Faults) -> KeepRun {
    let vm = Vm::new(KEEP, faults).unwrap();
    let Value::Int(result) = vm.call("app", "main", &[Value::Int(7)]).unwrap() else {
        panic!("main returns an int");
    };
    let log = vm.log();
    let drops_after_call = vm.drops();
    KeepRun {
        result,
        collection: log.collections[0].clone(),
        backtrace: log.backtraces[0].clone(),
        drops_after_call,
        drops: vm.finish(),
    }
}

#[test]
fn correct_keep_run_finds_the_reference_live_across_the_collection() {
    let run = run_keep(Faults::default());
    assert_eq!(run.result, 2, "gc 0 + 2 frames + not null");
    assert_eq!(
        run.collection,
        collection(
            vec![frame("app.keep", 0, &[7]), frame("app.main", 0, &[])],
            &[]
        )
    );
    assert_eq!(
        run.backtrace,
        Ok(vec![at("app.keep", 8, 0), at("app.main", 5, 0)])
    );
    assert_eq!(run.drops_after_call, [] as [i64; 0]);
    assert_eq!(run.drops, [7], "freed at teardown, once");
}

#[test]
fn an_undeclared_reference_is_freed_while_its_frame_still_holds_it() {
    let run = run_keep(Faults {
        undeclared_refs: true,
        ..Faults::default()
    });
    // No stack map names it: the frame looks empty and the collection frees 7, which
    // `keep` still holds (it tests it afterwards).
    assert_eq!(
        run.collection,
        collection(
            vec![frame("app.keep", 0, &[]), frame("app.main", 0, &[])],
            &[7]
        )
    );
    assert_eq!(run.drops_after_call, [7], "dropped during the call");
    assert_eq!(run.drops, [7], "and only once");
}

#[test]
fn stack_maps_of_the_wrong_module_miss_live_references() {
    let run = run_keep(Faults {
        maps_of_wrong_module: true,
        ..Faults::default()
    });
    assert_eq!(
        run.collection,
        collection(
            vec![frame("app.keep", 0, &[]), frame("app.main", 0, &[])],
            &[7]
        )
    );
    assert_eq!(run.drops_after_call, [7]);
    assert_eq!(run.drops, [7]);
}

#[test]
fn an_exit_recorded_in_the_trampolines_frame_is_caught_as_stale_and_frees_nothing() {
    for register_trampolines in [false, true] {
        let faults = Faults {
            exit_in_trampoline_frame: true,
            register_trampolines,
            ..Faults::default()
        };
        let vm = Vm::new(KEEP, faults).unwrap();
        let exit = vm.exit_trampoline();
        let Value::Int(result) = vm.call("app", "main", &[Value::Int(7)]).unwrap() else {
            panic!("main returns an int");
        };
        let log = vm.log();
        let drops_after_call = vm.drops();
        // The record has the right PC (the return address into app.keep) with the
        // trampoline's FP and SP. The word below that SP is the return address of the
        // trampoline's own call to the host, not the recorded PC: the exit check ends
        // the walk before any frame, whether trampoline code is registered or not.
        let stale = |e: &WalkError| match *e {
            WalkError::StaleExit {
                activation_index: 0,
                exit_pc,
                found,
            } => exit_pc != found && exit.contains(&found) && !exit.contains(&exit_pc),
            _ => false,
        };
        let collection = &log.collections[0];
        assert!(
            collection.error.as_ref().is_some_and(stale),
            "{collection:?}"
        );
        assert_eq!(collection.frames, [], "no frame is walked");
        assert_eq!(collection.freed, [] as [i64; 0], "nothing is freed");
        assert!(
            log.backtraces[0].as_ref().err().is_some_and(stale),
            "{:?}",
            log.backtraces[0]
        );
        assert_eq!(result, -2, "gc and backtrace both reported failure");
        assert_eq!(drops_after_call, [] as [i64; 0]);
        assert_eq!(vm.finish(), [7], "dropped at teardown, once");
    }
}

#[test]
fn an_entry_fp_past_the_trampoline_is_reported_at_the_unregistered_trampoline() {
    let run = run_keep(Faults {
        entry_fp_past_trampoline: true,
        ..Faults::default()
    });
    // app.main's saved FP is the entry trampoline's FP, below the recorded entry_fp:
    // the walk steps to it, and its return address (into the entry trampoline) is
    // not registered code. Both frames before it were walked; nothing is freed.
    let collection = &run.collection;
    assert!(
        matches!(collection.error, Some(WalkError::PcNotInWasmCode { .. })),
        "{collection:?}"
    );
    assert_eq!(
        collection.frames,
        [frame("app.keep", 0, &[]), frame("app.main", 0, &[])]
    );
    assert_eq!(collection.freed, [] as [i64; 0]);
    assert!(matches!(
        run.backtrace,
        Err(WalkError::PcNotInWasmCode { .. })
    ));
    assert_eq!(run.result, -2, "gc and backtrace both reported failure");
    assert_eq!(run.drops_after_call, [] as [i64; 0]);
    assert_eq!(run.drops, [7], "dropped at teardown, once");
}

#[test]
fn registered_trampolines_turn_a_broken_chain_into_a_walk_through_a_trampoline_frame() {
    let run = run_keep(Faults {
        entry_fp_past_trampoline: true,
        register_trampolines: true,
        ..Faults::default()
    });
    // The same broken chain, but the entry trampoline's PC now counts as language
    // code: the walk yields its frame as a third frame of a two-call program, then
    // follows the FP saved in it, the host's RBP (whatever the host left there: the
    // walk may end there, or stop at a frame-pointer check; never at the trampoline's
    // PC, which is what the unregistered run reported).
    // (A frame's roots are listed only when the whole walk succeeded, which here
    // depends on the host's RBP: compare the frames walked.)
    let collection = &run.collection;
    let walked: Vec<(&str, usize)> = collection
        .frames
        .iter()
        .map(|f| (f.function.as_str(), f.activation))
        .collect();
    assert_eq!(
        walked,
        [("app.keep", 0), ("app.main", 0), ("<trampolines>", 0)],
        "{collection:?}"
    );
    assert!(
        !matches!(collection.error, Some(WalkError::PcNotInWasmCode { .. })),
        "{collection:?}"
    );
    match &run.backtrace {
        Ok(frames) => assert_eq!(
            frames[2],
            BacktraceFrame {
                function: "<trampolines>".into(),
                line: None,
                activation: 0
            }
        ),
        Err(e) => assert!(!matches!(e, WalkError::PcNotInWasmCode { .. }), "{e:?}"),
    }
    assert_eq!(collection.freed, [] as [i64; 0]);
    assert_eq!(run.drops, [7], "dropped at teardown, once");
}

/// A program that collects at the same point twice: through the exit trampoline
/// (`gc`), then straight from JIT code (`gc-fast`), with `r` live across both.
const FAST: &str = "\
(module app
  (fn main ((n int)) int
    (let ((r (new n)))
      (+ (gc) (+ (* 10 (gc-fast)) (null? r))))))
";

fn run_fast(faults: Faults) -> KeepRun {
    let vm = Vm::new(FAST, faults).unwrap();
    let Value::Int(result) = vm.call("app", "main", &[Value::Int(7)]).unwrap() else {
        panic!("main returns an int");
    };
    let log = vm.log();
    assert_eq!(log.collections.len(), 2);
    assert_eq!(
        log.collections[0],
        collection(vec![frame("app.main", 0, &[7])], &[]),
        "the collection through the exit trampoline is exact"
    );
    let drops_after_call = vm.drops();
    KeepRun {
        result,
        collection: log.collections[1].clone(),
        backtrace: Ok(Vec::new()),
        drops_after_call,
        drops: vm.finish(),
    }
}

#[test]
fn a_collection_that_skips_the_exit_trampoline_finds_no_exit_and_frees_nothing() {
    let run = run_fast(Faults::default());
    // `gc` cleared its exit on the way back: `gc-fast` finds none recorded.
    assert_eq!(
        run.collection,
        Collection {
            frames: vec![],
            freed: vec![],
            error: Some(WalkError::NoExitRecorded {
                activation_index: 0
            }),
        }
    );
    assert_eq!(run.result, -10, "gc 0, gc-fast -1, not null");
    assert_eq!(run.drops_after_call, [] as [i64; 0]);
    assert_eq!(run.drops, [7]);
}

#[test]
fn an_exit_left_uncleared_is_caught_as_stale_by_a_later_walk_and_frees_nothing() {
    let run = run_fast(Faults {
        exit_not_cleared: true,
        ..Faults::default()
    });
    // `gc`'s record is still there: same frame, same SP, but the word below that SP is
    // now the return address of the `gc-fast` call, not of the `gc` call.
    match run.collection.error {
        Some(WalkError::StaleExit {
            activation_index: 0,
            exit_pc,
            found,
        }) => assert_ne!(exit_pc, found),
        ref other => panic!("expected StaleExit, got {other:?}"),
    }
    assert_eq!(run.collection.frames, []);
    assert_eq!(run.collection.freed, [] as [i64; 0]);
    assert_eq!(run.result, -10);
    assert_eq!(run.drops_after_call, [] as [i64; 0]);
    assert_eq!(run.drops, [7]);
}

#[test]
fn an_uncleared_exit_is_harmless_while_every_walk_goes_through_the_exit_trampoline() {
    let correct = jit::run_demo(Faults::default()).unwrap();
    let broken = jit::run_demo(Faults {
        exit_not_cleared: true,
        ..Faults::default()
    })
    .unwrap();
    // Every collection, backtrace and trap is made through a new exit (or from a
    // trap's registers): the records left behind are never read.
    assert_eq!(broken.result, correct.result);
    assert_eq!(broken.log.collections, correct.log.collections);
    assert_eq!(broken.log.backtraces, correct.log.backtraces);
    assert_eq!(broken.traps, correct.traps);
    assert_eq!(broken.drops, correct.drops);
    assert_eq!(broken.stats.freed, correct.stats.freed);
}

#[test]
fn consume_without_a_count_frees_its_argument_under_the_host_function() {
    let correct = jit::run_demo(Faults::default()).unwrap();
    let broken = jit::run_demo(Faults {
        consume_without_count: true,
        ..Faults::default()
    })
    .unwrap();
    // The collection inside `consume` frees 700 too: no frame holds it (last use)
    // and the host took no count.
    assert_eq!(correct.log.collections[1].freed, [600]);
    assert_eq!(broken.log.collections[1].freed, [600, 700]);
    assert_eq!(
        broken.log.events,
        ["consume: payload 700 was freed while the host function held it"]
    );
    // consume stopped (-1) instead of reading freed memory: 3813 - 700 - 1.
    assert_eq!(broken.result, 3112);
    assert_eq!(sorted(broken.drops.clone()), sorted(correct.drops.clone()));
}

#[test]
fn a_reference_returned_without_a_count_is_freed_by_the_next_collection() {
    let vm = Vm::new(
        jit::DEMO,
        Faults {
            return_without_count: true,
            ..Faults::default()
        },
    )
    .unwrap();
    let Value::Uncounted(raw) = vm.call("lib", "make", &[Value::Int(42)]).unwrap() else {
        panic!("make returns a raw address under this fault");
    };
    assert_ne!(raw, 0);
    // The host still holds `raw`, yet the payload is gone (never dereferenced here).
    assert_eq!(vm.collect_now(), collection(vec![], &[42]));
    assert_eq!(vm.drops(), [42]);
    assert_eq!(vm.finish(), [42], "dropped once");
}
