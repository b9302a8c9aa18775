//! Traps: every kind, with its exact message and exact backtrace, the store working
//! after each, host errors and panics, traps inside nested activations, and traps on
//! two threads at once.
//!
//! Every expected backtrace is built from offsets computed from the module binary
//! (see `common`), and compared as a whole: `trap.to_string()` against the full
//! rendered text, and `trap.frames()` frame by frame.
//!
//! `TRAPS_THREAD_ITERATIONS` (default 2,000) sets how many traps and walks each of the
//! two threads of [`two_threads_trap_and_walk_concurrently`] does.

mod common;

use common::{
    assert_frames, chain_overflow_lines, chain_wat, cycle_overflow_lines, cycle_wat, env_count,
    render_trap, with_big_stack, Expected, Wasm,
};
use framewalk::trap::TrapCode;
use framewalk::{Caller, Config, Engine, Error, Extern, Func, Instance, Module, Store, Trap, Val};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use wasmparser::Operator;

/// One trapping function per trap kind, each called from an exported function, so
/// every backtrace has two frames: the trapping instruction and the export's call.
const TRAPS_WAT: &str = r#"
(module $traps
  (type $to_i32 (func (result i32)))
  (import "host" "fail" (func $host_fail (param i32) (result i32)))
  (import "host" "panic" (func $host_panic (param i32) (result i32)))
  (import "host" "reenter" (func $host_reenter (param i32) (result i32)))
  (import "host" "walk" (func $host_walk (result i32)))
  (memory 1)
  (table $table 4 funcref)
  (elem (i32.const 0) $seven $seven_i64)

  (func $seven (result i32) (i32.const 7))
  (func $seven_i64 (result i64) (i64.const 7))

  (func $do_unreachable (result i32) (unreachable))
  (func $divide (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func $truncate (param f32) (result i32) (i32.trunc_f32_s (local.get 0)))
  (func $load (param i32) (result i32) (i32.load (local.get 0)))
  (func $table_get (param i32) (result i32) (ref.is_null (table.get $table (local.get 0))))
  (func $call_slot (param i32) (result i32) (call_indirect (type $to_i32) (local.get 0)))
  (func $recurse (param i32) (result i32)
    (call $recurse (i32.add (local.get 0) (i32.const 1))))

  (func $unreachable (export "unreachable") (result i32) (call $do_unreachable))
  (func $divide_by_zero (export "divide_by_zero") (result i32)
    (call $divide (i32.const 1) (i32.const 0)))
  (func $overflow (export "overflow") (result i32)
    (call $divide (i32.const 0x80000000) (i32.const -1)))
  (func $nan_to_int (export "nan_to_int") (result i32)
    (call $truncate (f32.const nan)))
  (func $big_to_int (export "big_to_int") (result i32)
    (call $truncate (f32.const 3e9)))
  (func $memory_oob (export "memory_oob") (result i32)
    (call $load (i32.const 65536)))
  (func $table_oob (export "table_oob") (result i32)
    (call $table_get (i32.const 4)))
  (func $null_element (export "null_element") (result i32)
    (call $call_slot (i32.const 2)))
  (func $type_mismatch (export "type_mismatch") (result i32)
    (call $call_slot (i32.const 1)))
  (func $undefined_element (export "undefined_element") (result i32)
    (call $call_slot (i32.const 4)))
  (func $exhaust (export "exhaust") (result i32)
    (call $recurse (i32.const 0)))
  (func $host_error (export "host_error") (result i32)
    (call $host_fail (i32.const 13)))
  (func $panics (export "panics") (param i32) (result i32)
    (call $host_panic (local.get 0)))
  (func $panics_nine (export "panics_nine") (result i32)
    (call $host_panic (i32.const 9)))
  (func $walk_middle (result i32) (call $host_walk))
  (func $walks (export "walks") (result i32) (call $walk_middle))
  (func $nest (export "nest") (param i32) (result i32)
    (call $host_reenter (local.get 0)))

  ;; Uses memory, a direct call, call_indirect and a host call: x/7 + 7 + 2.
  (func $works (export "works") (param i32) (result i32)
    (i32.store (i32.const 16) (local.get 0))
    (i32.add
      (i32.add
        (call $divide (i32.load (i32.const 16)) (i32.const 7))
        (call_indirect (type $to_i32) (i32.const 0)))
      (call $host_fail (i32.const 1))))
)
"#;

/// `works(700)`: 700 / 7 + 7 + (1 + 1).
const WORKS_ARG: i32 = 700;
const WORKS_RESULT: i32 = 109;

/// The message `host.fail` fails with.
const HOST_FAIL_MESSAGE: &str = "host says no: 13";

fn is_call_indirect(op: &Operator<'_>) -> bool {
    matches!(op, Operator::CallIndirect { .. })
}

/// Host state of the trap tests' store.
#[derive(Default)]
struct Host {
    instance: Option<Instance>,
    /// The export the innermost `reenter` calls.
    innermost: &'static str,
    /// At which depth `reenter` calls `innermost` instead of `nest`.
    bottom: i32,
    /// What the innermost `reenter` saw: the inner call's error, rendered.
    seen_at_bottom: Option<String>,
    /// The inner call's error frames, as seen by the innermost `reenter`.
    frames_at_bottom: Vec<framewalk::trap::FrameInfo>,
    /// What the last `walk` saw.
    walked: Vec<framewalk::trap::FrameInfo>,
}

/// A store with an instance of [`TRAPS_WAT`], and the module's ground truth.
struct Fixture {
    wasm: Wasm,
    store: Store<Host>,
    instance: Instance,
}

impl Fixture {
    fn new(engine: &Engine) -> Fixture {
        let wasm = Wasm::new(TRAPS_WAT);
        let module = Module::new(engine, &wasm.bytes).expect("module compiles");
        Fixture::with_module(engine, wasm, &module)
    }

    fn with_module(engine: &Engine, wasm: Wasm, module: &Module) -> Fixture {
        let mut store = Store::new(engine, Host::default());
        let fail = Func::wrap(&mut store, |_: Caller<'_, Host>, n: i32| {
            if n == 13 {
                Err(HOST_FAIL_MESSAGE.to_string())
            } else {
                Ok(n + 1)
            }
        })
        .unwrap();
        let panic = Func::wrap(&mut store, |_: Caller<'_, Host>, n: i32| -> i32 {
            std::panic::panic_any(format!("host panic {n}"))
        })
        .unwrap();
        let reenter = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Host>, depth: i32| -> Result<i32, Error> {
                let host = caller.data();
                let instance = host.instance.expect("instance set");
                let (name, bottom) = (host.innermost, depth >= host.bottom);
                let mut results = [Val::I32(0)];
                let result = if bottom {
                    let f = instance.get_func(&caller, name).expect("innermost export");
                    f.call(&mut caller, &[], &mut results)
                } else {
                    let f = instance.get_func(&caller, "nest").expect("nest");
                    f.call(&mut caller, &[Val::I32(depth + 1)], &mut results)
                };
                if bottom {
                    if let Err(e) = &result {
                        caller.data_mut().seen_at_bottom = Some(e.to_string());
                        caller.data_mut().frames_at_bottom =
                            e.as_trap().map(|t| t.frames().to_vec()).unwrap_or_default();
                    }
                }
                result?;
                Ok(results[0].i32().expect("i32 result"))
            },
        )
        .unwrap();
        let walk = Func::wrap(&mut store, |mut caller: Caller<'_, Host>, (): ()| -> i32 {
            let frames = caller.force_backtrace().expect("walk succeeds");
            let n = frames.len() as i32;
            caller.data_mut().walked = frames;
            n
        })
        .unwrap();
        let imports = [
            Extern::Func(fail),
            Extern::Func(panic),
            Extern::Func(reenter),
            Extern::Func(walk),
        ];
        let instance = Instance::new(&mut store, module, &imports).expect("instantiates");
        store.data_mut().instance = Some(instance);
        Fixture {
            wasm,
            store,
            instance,
        }
    }

    fn call(&mut self, name: &str, params: &[Val]) -> Result<i32, Error> {
        let f = self.instance.get_func(&self.store, name).expect(name);
        let mut results = [Val::I32(0)];
        f.call(&mut self.store, params, &mut results)?;
        Ok(results[0].i32().expect("i32 result"))
    }

    /// Calls `name`, which must trap; returns the trap.
    fn trap(&mut self, name: &str, params: &[Val]) -> Trap {
        match self.call(name, params) {
            Ok(v) => panic!("{name} returned {v} instead of trapping"),
            Err(Error::Trap(t)) => t,
            Err(e) => panic!("{name} failed without a trap: {e}"),
        }
    }

    /// The store still runs wasm correctly (memory, calls, tables, host calls), and a
    /// walk from a host function sees exactly the current frames: no activation of an
    /// abandoned call was left behind.
    fn assert_works(&mut self) {
        assert_eq!(
            self.call("works", &[Val::I32(WORKS_ARG)]).expect("works"),
            WORKS_RESULT
        );
        assert_eq!(self.call("walks", &[]).expect("walks"), 2);
        let expected = [
            self.wasm.at_call("walk_middle", "host_walk"),
            self.wasm.at_call("walks", "walk_middle"),
        ];
        assert_frames(&self.store.data().walked, &expected);
    }
}

/// A case of [`every_trap_kind_has_its_message_and_backtrace`]: an export, the
/// function it calls, and the trapping instruction in that function.
struct Case {
    export: &'static str,
    callee: &'static str,
    code: TrapCode,
    message: &'static str,
    /// What the trapping instruction is, and how to find it in `callee`.
    what: &'static str,
    op: fn(&Operator<'_>) -> bool,
    /// `Trap::fault_address`: the wasm address of an access that faulted on a guard
    /// page, `None` for every other trap.
    fault_address: Option<u64>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            export: "unreachable",
            callee: "do_unreachable",
            code: TrapCode::Unreachable,
            message: "wasm trap: unreachable",
            what: "unreachable",
            op: |op| matches!(op, Operator::Unreachable),
            fault_address: None,
        },
        Case {
            export: "divide_by_zero",
            callee: "divide",
            code: TrapCode::IntegerDivisionByZero,
            message: "wasm trap: integer divide by zero",
            what: "i32.div_s",
            op: |op| matches!(op, Operator::I32DivS),
            fault_address: None,
        },
        Case {
            export: "overflow",
            callee: "divide",
            code: TrapCode::IntegerOverflow,
            message: "wasm trap: integer overflow",
            what: "i32.div_s",
            op: |op| matches!(op, Operator::I32DivS),
            fault_address: None,
        },
        Case {
            export: "nan_to_int",
            callee: "truncate",
            code: TrapCode::BadConversionToInteger,
            message: "wasm trap: invalid conversion to integer",
            what: "i32.trunc_f32_s",
            op: |op| matches!(op, Operator::I32TruncF32S),
            fault_address: None,
        },
        Case {
            export: "big_to_int",
            callee: "truncate",
            code: TrapCode::IntegerOverflow,
            message: "wasm trap: integer overflow",
            what: "i32.trunc_f32_s",
            op: |op| matches!(op, Operator::I32TruncF32S),
            fault_address: None,
        },
        Case {
            export: "memory_oob",
            callee: "load",
            code: TrapCode::MemoryOutOfBounds,
            message: "wasm trap: out of bounds memory access\n\
                      memory fault at wasm address 0x10000 in linear memory of size 0x10000",
            what: "i32.load",
            op: |op| matches!(op, Operator::I32Load { .. }),
            fault_address: Some(0x10000),
        },
        Case {
            export: "table_oob",
            callee: "table_get",
            code: TrapCode::TableOutOfBounds,
            message: "wasm trap: undefined element: out of bounds table access",
            what: "table.get",
            op: |op| matches!(op, Operator::TableGet { .. }),
            fault_address: None,
        },
        Case {
            export: "null_element",
            callee: "call_slot",
            code: TrapCode::IndirectCallToNull,
            message: "wasm trap: uninitialized element",
            what: "call_indirect",
            op: is_call_indirect,
            fault_address: None,
        },
        Case {
            export: "type_mismatch",
            callee: "call_slot",
            code: TrapCode::BadSignature,
            message: "wasm trap: indirect call type mismatch",
            what: "call_indirect",
            op: is_call_indirect,
            fault_address: None,
        },
        Case {
            export: "undefined_element",
            callee: "call_slot",
            code: TrapCode::TableOutOfBounds,
            message: "wasm trap: undefined element: out of bounds table access",
            what: "call_indirect",
            op: is_call_indirect,
            fault_address: None,
        },
    ]
}

fn engine() -> Engine {
    Engine::new(Config::default()).expect("engine")
}

/// Each trap kind: its code, its exact `Display` (message and backtrace), and its
/// frames; after each, the same store runs `works` correctly, and the same trap
/// happens again identically.
#[test]
fn every_trap_kind_has_its_message_and_backtrace() {
    let mut fx = Fixture::new(&engine());
    fx.assert_works();
    for case in cases() {
        let offset = fx.wasm.only_op(case.callee, case.what, case.op);
        let expected = [
            fx.wasm.frame(case.callee, offset),
            fx.wasm.at_call(case.export, case.callee),
        ];
        for attempt in 0..2 {
            let trap = fx.trap(case.export, &[]);
            assert_eq!(
                trap.code(),
                case.code,
                "{} (attempt {attempt})",
                case.export
            );
            assert!(trap.host_error().is_none(), "{}", case.export);
            assert_eq!(trap.fault_address(), case.fault_address, "{}", case.export);
            assert_frames(trap.frames(), &expected);
            assert_eq!(
                trap.to_string(),
                render_trap(case.message, &expected),
                "{} (attempt {attempt})",
                case.export
            );
            fx.assert_works();
        }
    }
}

/// A host function's error: its own message on the first line, `HostError` as the
/// code, the error itself given back, and the backtrace starting at the wasm
/// function that called the import (at its `call` instruction).
#[test]
fn host_error_has_its_message_and_backtrace() {
    let mut fx = Fixture::new(&engine());
    let expected = [fx.wasm.at_call("host_error", "host_fail")];
    for _ in 0..2 {
        let trap = fx.trap("host_error", &[]);
        assert_eq!(trap.code(), TrapCode::HostError);
        assert_eq!(
            trap.host_error().map(|e| e.to_string()).as_deref(),
            Some(HOST_FAIL_MESSAGE)
        );
        assert_frames(trap.frames(), &expected);
        assert_eq!(trap.to_string(), render_trap(HOST_FAIL_MESSAGE, &expected));
        fx.assert_works();
    }
}

/// Infinite recursion: "call stack exhausted" once the wasm stack reaches
/// `max_wasm_stack`. The newest frame stopped in `$recurse`'s entry (the prologue's
/// stack check), before any wasm instruction, so it reports the start of the
/// function's body; every other `$recurse` frame is at its `call $recurse`, and the
/// oldest frame is `$exhaust` at its call.
///
/// The frame count follows from the limit: each `$recurse` frame is at least 16
/// bytes (return address and saved FP) and, for this body, at most 64.
#[test]
fn stack_exhaustion_has_its_message_and_backtrace() {
    let max_wasm_stack = 512 * 1024;
    let engine = Engine::new(Config {
        max_wasm_stack,
        wasm_backtrace_max_frames: None,
        ..Config::default()
    })
    .expect("engine");
    let mut fx = Fixture::new(&engine);
    let recurse_call = fx.wasm.call("recurse", "recurse");
    for _ in 0..2 {
        let trap = fx.trap("exhaust", &[]);
        assert_eq!(trap.code(), TrapCode::StackOverflow);
        let n = trap.frames().len();
        assert!(
            (max_wasm_stack / 64..=max_wasm_stack / 16).contains(&n),
            "{n} frames for a {max_wasm_stack}-byte stack"
        );
        let mut expected = vec![fx.wasm.at_entry("recurse")];
        expected.extend((0..n - 2).map(|_| fx.wasm.frame("recurse", recurse_call)));
        expected.push(fx.wasm.at_call("exhaust", "recurse"));
        assert_frames(trap.frames(), &expected);
        assert_eq!(
            trap.to_string(),
            render_trap("wasm trap: call stack exhausted", &expected)
        );
        fx.assert_works();
    }
}

/// Calls the export `main` of `wat`, which must overflow the stack, with every frame
/// captured; returns the module's names and the trap.
fn overflow(wat: &str) -> (Wasm, Trap) {
    let engine = Engine::new(Config {
        wasm_backtrace_max_frames: None,
        ..Config::default()
    })
    .expect("engine");
    let wasm = Wasm::new(wat);
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let main = instance.get_func(&store, "main").expect("main");
    match main.call(&mut store, &[], &mut []) {
        Err(Error::Trap(t)) => {
            assert_eq!(t.code(), TrapCode::StackOverflow, "{t}");
            (wasm, t)
        }
        other => panic!("expected a stack overflow, got {other:?}"),
    }
}

/// A stack overflow through a cycle of functions (`a → b → a ...`, `a → b → c → a
/// ...`): `{:#}` prints the newest frame (at its function's entry), one copy of the
/// cycle and one line counting the other copies; `frames()` still has every frame.
#[test]
fn an_overflow_through_a_cycle_prints_the_cycle_once_and_counts_it() {
    for cycle in [&["a"][..], &["a", "b"], &["a", "b", "c"]] {
        let (wasm, trap) = overflow(&cycle_wat(cycle));
        let n = trap.frames().len();
        assert!(n > 10_000, "{n} frames");
        // Every frame is captured: oldest first, cycle[0] (main), cycle[1], ...
        let p = cycle.len();
        let mut expected: Vec<Expected> = (1..n)
            .map(|j| wasm.at_call(cycle[(j - 1) % p], cycle[j % p]))
            .collect();
        expected.push(wasm.at_entry(cycle[(n - 1) % p]));
        expected.reverse();
        assert_frames(trap.frames(), &expected);

        let mut lines = vec![
            "wasm trap: call stack exhausted".to_string(),
            "wasm backtrace:".to_string(),
        ];
        lines.extend(cycle_overflow_lines(&wasm, cycle, n));
        let shown = format!("{trap:#}");
        assert_eq!(shown, lines.join("\n"));
        assert!(shown.lines().count() <= 2 + 1 + p + 1 + p, "{shown}");
    }
    // The two-function cycle, as a person reads it.
    let (_, trap) = overflow(&cycle_wat(&["a", "b"]));
    let shown = format!("{trap:#}");
    let fold = shown.lines().last().unwrap().trim_start();
    assert!(
        fold.starts_with("... ") && fold.ends_with(" more repetitions of cycle!a \u{2192} cycle!b"),
        "{shown}"
    );
}

/// A stack overflow through 32,000 distinct functions (the last one recursing, since
/// 32,000 frames of 16 bytes do not fill the default 512 KiB): `{:#}` prints the
/// newest 40 entries (the recursion folded into one), the number of frames elided,
/// and the oldest 20 frames.
#[test]
fn an_overflow_through_32000_functions_elides_the_middle() {
    const N: usize = 32_000;
    let (wasm, trap) = overflow(&chain_wat(N));
    let frames = trap.frames();
    // Every frame is captured: main, f0 .. f31999, then f31999 recursing.
    let indices: Vec<u32> = frames.iter().rev().map(|f| f.func_index).collect();
    let chain: Vec<u32> = (0..=N as u32).collect();
    assert_eq!(indices[..=N], chain[..]);
    assert!(indices[N..].iter().all(|&i| i == N as u32));

    let mut lines = vec![
        "wasm trap: call stack exhausted".to_string(),
        "wasm backtrace:".to_string(),
    ];
    lines.extend(chain_overflow_lines(&wasm, N, frames.len()));
    assert_eq!(format!("{trap:#}"), lines.join("\n"));
    assert_eq!(lines.len(), 2 + 3 + 38 + 1 + 20);
}

/// A panic in a host function is resumed in the host, with its payload, after the wasm
/// frames are gone; the store keeps working. Also from the innermost of three nested
/// activations: the panic crosses every activation and reaches the outermost caller.
#[test]
fn host_panic_is_resumed_in_the_host() {
    let mut fx = Fixture::new(&engine());
    for n in [5, 6] {
        let payload = catch_unwind(AssertUnwindSafe(|| fx.call("panics", &[Val::I32(n)])))
            .expect_err("the host panic reaches the caller");
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some(format!("host panic {n}").as_str())
        );
        fx.assert_works();
    }

    fx.store.data_mut().innermost = "panics_nine";
    fx.store.data_mut().bottom = 1;
    let payload = catch_unwind(AssertUnwindSafe(|| fx.call("nest", &[Val::I32(0)])))
        .expect_err("the host panic reaches the outermost caller");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("host panic 9")
    );
    fx.assert_works();
    // The nesting itself still works: a trap at the bottom, then a normal call.
    fx.store.data_mut().innermost = "unreachable";
    assert!(matches!(
        fx.call("nest", &[Val::I32(0)]),
        Err(Error::Trap(_))
    ));
    fx.assert_works();
}

/// The frames of `activations` nested activations of `nest` (host `reenter` between
/// them), newest first: each is `$nest` at its call to `reenter`.
fn nest_frames(wasm: &Wasm, activations: usize) -> Vec<Expected> {
    (0..activations)
        .map(|_| wasm.at_call("nest", "host_reenter"))
        .collect()
}

/// A trap in the innermost of three nested activations (host → `nest` → host →
/// `nest` → host → `divide_by_zero` → `$divide` traps): the innermost host function
/// sees a trap whose backtrace holds every activation's frames, newest first.
#[test]
fn trap_in_innermost_of_three_activations_has_every_frame() {
    let mut fx = Fixture::new(&engine());
    fx.store.data_mut().innermost = "divide_by_zero";
    fx.store.data_mut().bottom = 1;
    let div = fx
        .wasm
        .only_op("divide", "i32.div_s", |op| matches!(op, Operator::I32DivS));
    let mut expected = vec![
        fx.wasm.frame("divide", div),
        fx.wasm.at_call("divide_by_zero", "divide"),
    ];
    expected.extend(nest_frames(&fx.wasm, 2));
    let text = render_trap("wasm trap: integer divide by zero", &expected);

    let outer = fx.trap("nest", &[Val::I32(0)]);
    let host = fx.store.data_mut();
    assert_frames(&host.frames_at_bottom, &expected);
    assert_eq!(host.seen_at_bottom.take().as_deref(), Some(text.as_str()));
    fx.assert_works();

    // The host functions returned the inner error unchanged, so the caller sees the
    // same trap, captured once: same code, same frames, same text.
    assert_eq!(outer.code(), TrapCode::IntegerDivisionByZero);
    assert_frames(outer.frames(), &expected);
    assert_eq!(outer.to_string(), text);
}

/// A trap in the innermost of 1,000 nested host ↔ wasm activations. Each host function
/// returns its inner call's `Err` unchanged; the outermost caller gets the original
/// trap, with a backtrace captured once that lists every activation's frames.
#[test]
fn trap_in_innermost_of_1000_activations_propagates_once() {
    let activations = env_count("TRAPS_NESTED_ACTIVATIONS", 1000);
    with_big_stack(256, move || {
        let engine = Engine::new(Config {
            max_wasm_stack: 128 << 20,
            wasm_backtrace_max_frames: None,
            ..Config::default()
        })
        .expect("engine");
        let mut fx = Fixture::new(&engine);
        fx.store.data_mut().innermost = "unreachable";
        // `nest(0)` … `nest(activations - 2)`, then the `unreachable` activation.
        fx.store.data_mut().bottom = i32::try_from(activations - 2).expect("fits");
        let unreachable = fx.wasm.only_op("do_unreachable", "unreachable", |op| {
            matches!(op, Operator::Unreachable)
        });
        let mut expected = vec![
            fx.wasm.frame("do_unreachable", unreachable),
            fx.wasm.at_call("unreachable", "do_unreachable"),
        ];
        expected.extend(nest_frames(&fx.wasm, activations - 1));
        let text = render_trap("wasm trap: unreachable", &expected);

        let trap = fx.trap("nest", &[Val::I32(0)]);
        // The innermost host function saw the whole backtrace.
        assert_frames(&fx.store.data().frames_at_bottom, &expected);
        // Check the code before rendering: a wrapped error renders every level.
        assert_eq!(
            trap.code(),
            TrapCode::Unreachable,
            "the outermost caller must get the original trap, not a host error wrapping it"
        );
        assert_frames(trap.frames(), &expected);
        assert_eq!(trap.to_string(), text);
        fx.assert_works();
    });
}

/// Two threads, each with its own store (one shared engine and module), trapping and
/// walking at the same time: every trap's backtrace and every walk is exactly right.
/// Each thread uses a different trap, so a backtrace taken from the wrong thread's
/// state would show. Per iteration: a trap, a host error (walk from the exit record)
/// and a walk from a host function (`Caller::backtrace`).
#[test]
fn two_threads_trap_and_walk_concurrently() {
    let iterations = env_count("TRAPS_THREAD_ITERATIONS", 2000);
    let engine = engine();
    let wasm = Wasm::new(TRAPS_WAT);
    let module = Arc::new(Module::new(&engine, &wasm.bytes).expect("module compiles"));
    let threads: Vec<_> = ["divide_by_zero", "memory_oob"]
        .into_iter()
        .map(|export| {
            let module = module.clone();
            let engine = engine.clone();
            std::thread::spawn(move || {
                let wasm = Wasm::new(TRAPS_WAT);
                let case = cases()
                    .into_iter()
                    .find(|c| c.export == export)
                    .expect("case");
                let offset = wasm.only_op(case.callee, case.what, case.op);
                let expected = [
                    wasm.frame(case.callee, offset),
                    wasm.at_call(export, case.callee),
                ];
                let text = render_trap(case.message, &expected);
                // A host error's backtrace is walked from the exit record.
                let walk_expected = [wasm.at_call("host_error", "host_fail")];
                let walk_text = render_trap(HOST_FAIL_MESSAGE, &walk_expected);
                let mut fx = Fixture::with_module(&engine, wasm, &module);
                for i in 0..iterations {
                    let trap = fx.trap(export, &[]);
                    assert_eq!(trap.to_string(), text, "{export}, iteration {i}");
                    assert_frames(trap.frames(), &expected);
                    let trap = fx.trap("host_error", &[]);
                    assert_eq!(trap.to_string(), walk_text, "host_error, iteration {i}");
                    fx.assert_works();
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
}

/// `$dive` recurses `n` times, then divides by zero: a trap `n + 1` frames deep.
const DIVE_WAT: &str = r#"
(module $dive
  (func $dive (export "dive") (param i32) (result i32)
    (if (result i32) (local.get 0)
      (then (call $dive (i32.sub (local.get 0) (i32.const 1))))
      (else (i32.div_s (i32.const 1) (local.get 0))))))
"#;

/// What a frame says about the wasm code (its PC differs from engine to engine).
fn lines(frames: &[framewalk::trap::FrameInfo]) -> Vec<(u32, Option<u32>)> {
    frames
        .iter()
        .map(|f| (f.func_index, f.wasm_offset))
        .collect()
}

fn dive(config: Config, depth: i32) -> Trap {
    let engine = Engine::new(config).expect("engine");
    let module = Module::new(&engine, DIVE_WAT.as_bytes()).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let dive = instance
        .get_func(&store, "dive")
        .unwrap()
        .typed::<i32, i32>(&store)
        .unwrap();
    match dive.call(&mut store, depth) {
        Err(Error::Trap(t)) => t,
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_trap_symbolizes_at_most_the_configured_frames_and_counts_the_rest() {
    // Default: the 20 newest frames, the other 81 counted.
    let trap = dive(Config::default(), 100);
    assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
    assert_eq!(trap.frames().len(), 20);
    assert_eq!(trap.omitted_frames(), 81);
    assert!(trap
        .frames()
        .iter()
        .all(|f| f.func_name.as_deref() == Some("dive")));
    let shown = trap.to_string();
    assert_eq!(shown.lines().count(), 2 + 20 + 1, "{shown}");
    assert!(
        shown.ends_with("\n         ... 81 more frames not captured"),
        "{shown}"
    );

    // A limit of 5, and none.
    let five = dive(
        Config {
            wasm_backtrace_max_frames: std::num::NonZeroUsize::new(5),
            ..Config::default()
        },
        100,
    );
    assert_eq!((five.frames().len(), five.omitted_frames()), (5, 96));
    assert_eq!(
        lines(five.frames()),
        lines(&trap.frames()[..5]),
        "the same newest frames"
    );
    let all = dive(
        Config {
            wasm_backtrace_max_frames: None,
            ..Config::default()
        },
        100,
    );
    assert_eq!((all.frames().len(), all.omitted_frames()), (101, 0));
    assert_eq!(lines(&all.frames()[..20]), lines(trap.frames()));
    // The folded form: the trapping frame, the first call site, then one line.
    let folded = format!("{all:#}");
    assert!(
        folded.ends_with("\n         ... 99 more frames of dive!dive"),
        "{folded}"
    );
    assert_eq!(folded.lines().count(), 2 + 2 + 1, "{folded}");
}

/// What a host function captured: `Caller::wasm_backtrace`, `backtrace`, and their
/// forced forms.
#[derive(Default)]
struct Captures {
    compact: framewalk::trap::WasmBacktrace,
    owned: Vec<framewalk::trap::FrameInfo>,
    forced_compact: framewalk::trap::WasmBacktrace,
    forced_owned: Vec<framewalk::trap::FrameInfo>,
}

/// Recurses to `depth` under `config`, then calls a host function that captures the
/// four backtraces and fails; returns them and the host error's trap.
fn capture_then_fail(config: Config, depth: i32) -> (Captures, Trap) {
    let engine = Engine::new(config).expect("engine");
    let module = Module::new(
        &engine,
        br#"(module $probe
             (import "host" "probe" (func $probe (result i32)))
             (func $down (export "down") (param i32) (result i32)
               (if (result i32) (local.get 0)
                 (then (call $down (i32.sub (local.get 0) (i32.const 1))))
                 (else (call $probe)))))"#,
    )
    .expect("module compiles");
    let mut store = Store::new(&engine, Captures::default());
    let probe = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Captures>, (): ()| -> Result<i32, String> {
            let captures = Captures {
                compact: caller.wasm_backtrace().expect("walk"),
                owned: caller.backtrace().expect("walk"),
                forced_compact: caller.force_wasm_backtrace().expect("walk"),
                forced_owned: caller.force_backtrace().expect("walk"),
            };
            *caller.data_mut() = captures;
            Err("probe failed".into())
        },
    )
    .expect("probe");
    let instance = Instance::new(&mut store, &module, &[Extern::Func(probe)]).expect("instance");
    let down = instance
        .get_typed_func::<i32, i32>(&store, "down")
        .expect("down");
    let trap = match down.call(&mut store, depth) {
        Err(Error::Trap(t)) => t,
        other => panic!("expected the probe's error, got {other:?}"),
    };
    (std::mem::take(store.data_mut()), trap)
}

/// `Caller::wasm_backtrace` and `Caller::backtrace` are what a trap at that point
/// reports, under every configuration: all frames, the newest `max_frames` (the rest
/// counted), none. The forced captures have every frame whatever the configuration.
#[test]
fn a_capture_in_a_host_function_is_what_a_trap_there_reports() {
    use std::num::NonZeroUsize;
    const DEPTH: i32 = 30;
    let all = DEPTH as usize + 1;
    for (config, shown, omitted) in [
        (Config::default(), 20, all - 20),
        (
            Config {
                wasm_backtrace_max_frames: NonZeroUsize::new(3),
                ..Config::default()
            },
            3,
            all - 3,
        ),
        (
            Config {
                wasm_backtrace_max_frames: None,
                ..Config::default()
            },
            all,
            0,
        ),
        (
            Config {
                wasm_backtrace: false,
                ..Config::default()
            },
            0,
            0,
        ),
    ] {
        let what = format!("{config:?}");
        let (c, trap) = capture_then_fail(config, DEPTH);
        assert_eq!(
            (c.compact.len(), c.compact.omitted_frames()),
            (shown, omitted),
            "{what}"
        );
        assert_eq!(c.compact.to_frame_infos(), trap.frames(), "{what}");
        assert_eq!(c.compact.omitted_frames(), trap.omitted_frames(), "{what}");
        assert_eq!(c.owned, trap.frames(), "{what}");
        // Printed as the trap prints its backtrace (after the trap's message).
        let text = format!("{trap:#}");
        let backtrace = text.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(format!("{:#}", c.compact), backtrace, "{what}");
        // Forced: every frame, the newest the same as the capture's.
        assert_eq!(c.forced_compact.len(), all, "{what}");
        assert_eq!(c.forced_compact.omitted_frames(), 0, "{what}");
        assert_eq!(c.forced_compact.to_frame_infos(), c.forced_owned, "{what}");
        assert_eq!(c.forced_owned[..shown], c.owned[..], "{what}");
        assert!(c
            .forced_owned
            .iter()
            .all(|f| f.func_name.as_deref() == Some("down")));
    }
}

#[test]
fn a_trap_without_backtrace_capture_has_only_its_message() {
    let trap = dive(
        Config {
            wasm_backtrace: false,
            ..Config::default()
        },
        100,
    );
    assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
    assert!(trap.frames().is_empty());
    assert_eq!(trap.omitted_frames(), 0);
    assert_eq!(trap.to_string(), "wasm trap: integer divide by zero");
    // The store is still usable, and capture is per engine.
    let again = dive(Config::default(), 3);
    assert_eq!(again.frames().len(), 4);
}

/// A trap whose instruction directly follows a call has the same PC as that call's
/// return address in the caller's frame: the two frames must still name different
/// instructions (the `unreachable`, then the `call`). Found by the property tests.
#[test]
fn a_trap_right_after_a_call_and_that_call_are_different_frames() {
    let wat = r#"
      (module $after
        (func $f (export "f") (param i32)
          (if (local.get 0) (then (call $f (i32.sub (local.get 0) (i32.const 1)))))
          (unreachable)))"#;
    let wasm = Wasm::new(wat);
    let engine = Engine::new(Config::default()).expect("engine");
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let f = instance.get_typed_func::<i32, ()>(&store, "f").unwrap();
    let Err(Error::Trap(trap)) = f.call(&mut store, 2) else {
        panic!("f traps")
    };
    let unreachable = wasm.only_op("f", "unreachable", |op| matches!(op, Operator::Unreachable));
    let call = wasm.call("f", "f");
    let offsets: Vec<_> = trap.frames().iter().map(|fr| fr.wasm_offset).collect();
    assert_eq!(
        offsets,
        [Some(unreachable), Some(call), Some(call)],
        "{trap}"
    );
    let compact: Vec<_> = trap
        .backtrace()
        .frames()
        .map(|fr| fr.wasm_offset())
        .collect();
    assert_eq!(compact, offsets);
}

/// Loads and stores past the end of linear memory: every 32-bit memory has guard pages
/// and no explicit bounds check, so these fault on the access itself. Each access has a
/// static offset, so the faulting address is `index + offset`, not the index.
const FAULT_WAT: &str = r#"
(module $fault
  (memory (export "mem") 1 4)
  (func $load_at (export "load_at") (param i32) (result i32)
    (i32.load offset=0x20 (local.get 0)))
  (func $store_at (export "store_at") (param i32) (param i32)
    (i32.store offset=0x20 (local.get 0) (local.get 1)))
  (func $load_i64_at (export "load_i64_at") (param i32) (result i64)
    (i64.load (local.get 0)))
  (func $store_i64_at (export "store_i64_at") (param i32) (param i64)
    (i64.store (local.get 0) (local.get 1)))
  (func $load_far (export "load_far") (param i32) (result i32)
    (i32.load offset=0x80000000 (local.get 0)))
  (func $fill (export "fill") (param i32) (param i32)
    (memory.fill (local.get 0) (i32.const 0xab) (local.get 1)))
  (func $grow (export "grow") (param i32) (result i32)
    (memory.grow (local.get 0)))
  (func $size (export "size") (result i32) (memory.size))
  (func $outer (export "outer") (param i32) (result i32)
    (i32.add (call $load_at (local.get 0)) (i32.const 1))))
"#;

/// A store with one instance of [`FAULT_WAT`].
struct FaultFixture {
    wasm: Wasm,
    store: Store<()>,
    instance: Instance,
}

impl FaultFixture {
    fn new() -> FaultFixture {
        let wasm = Wasm::new(FAULT_WAT);
        let engine = engine();
        let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        FaultFixture {
            wasm,
            store,
            instance,
        }
    }

    fn call(&mut self, name: &str, params: &[Val]) -> Result<Option<Val>, Error> {
        let f = self.instance.get_func(&self.store, name).expect(name);
        let mut results = [Val::I32(0)];
        let n = f.ty(&self.store).expect("type").results().len();
        f.call(&mut self.store, params, &mut results[..n])?;
        Ok(results[..n].first().cloned())
    }

    fn i32(&mut self, name: &str, params: &[Val]) -> i32 {
        let v = self
            .call(name, params)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        v.and_then(|v| v.i32()).expect("i32 result")
    }

    fn trap(&mut self, name: &str, params: &[Val]) -> Trap {
        match self.call(name, params) {
            Ok(v) => panic!("{name}({params:?}) returned {v:?} instead of trapping"),
            Err(Error::Trap(t)) => t,
            Err(e) => panic!("{name} failed without a trap: {e}"),
        }
    }

    fn bytes(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let mem = self.instance.get_memory(&self.store, "mem").expect("mem");
        mem.data(&self.store).expect("data")[range].to_vec()
    }
}

/// The first line and the memory-fault line of an out-of-bounds trap's `Display`.
fn fault_lines(address: u64, size: u64) -> String {
    format!(
        "wasm trap: out of bounds memory access\n\
         memory fault at wasm address {address:#x} in linear memory of size {size:#x}"
    )
}

/// An `i32.load offset=0x20` whose index is in bounds but whose effective address is
/// not: the trap is `MemoryOutOfBounds` at `index + offset`, the message says so on its
/// second line, and the backtrace names the load and the call to its function.
#[test]
fn an_out_of_bounds_load_reports_its_wasm_address() {
    let mut fx = FaultFixture::new();
    // The last i32 of the page is readable through the same instruction.
    assert_eq!(fx.i32("outer", &[Val::I32(0x10000 - 0x24)]), 1);
    let load = fx.wasm.only_op("load_at", "i32.load", |op| {
        matches!(op, Operator::I32Load { .. })
    });
    let expected = [
        fx.wasm.frame("load_at", load),
        fx.wasm.at_call("outer", "load_at"),
    ];
    // (index, faulting address): past the end, `index + offset`; straddling the end,
    // the first byte past it (where the access touched the guard).
    for (index, address) in [
        (0xfff0u32, 0x10010u64),
        (0x12345, 0x12365),
        (0x10000 - 0x23, 0x10000),
    ] {
        let trap = fx.trap("outer", &[Val::I32(index as i32)]);
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
        assert_eq!(trap.fault_address(), Some(address), "{trap}");
        assert_eq!(trap.fault_memory_size(), Some(0x10000));
        assert_frames(trap.frames(), &expected);
        assert_eq!(
            trap.to_string(),
            render_trap(&fault_lines(address, 0x10000), &expected)
        );
    }
}

/// An `i32.store offset=0x20` past the end traps with its address and writes nothing;
/// one just inside the end writes.
#[test]
fn an_out_of_bounds_store_reports_its_wasm_address_and_writes_nothing() {
    let mut fx = FaultFixture::new();
    let end = 0x10000usize;
    fx.call(
        "store_at",
        &[Val::I32(0x10000 - 0x24), Val::I32(0x0102_0304)],
    )
    .expect("last i32 is writable");
    assert_eq!(fx.bytes(end - 4..end), [4, 3, 2, 1]);
    let trap = fx.trap("store_at", &[Val::I32(0x10000), Val::I32(-1)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0x10020));
    let store = fx.wasm.only_op("store_at", "i32.store", |op| {
        matches!(op, Operator::I32Store { .. })
    });
    let expected = [fx.wasm.frame("store_at", store)];
    assert_frames(trap.frames(), &expected);
    assert_eq!(
        trap.to_string(),
        render_trap(&fault_lines(0x10020, 0x10000), &expected)
    );
    assert_eq!(fx.bytes(end - 4..end), [4, 3, 2, 1]);
}

/// An 8-byte access that straddles the end (its first 4 bytes accessible) traps as a
/// whole: no partial read, no partial write. The faulting address is the first byte
/// past the end, where the access touched the guard.
#[test]
fn an_access_straddling_the_end_traps_without_a_partial_access() {
    let mut fx = FaultFixture::new();
    let end = 0x10000usize;
    fx.call(
        "store_at",
        &[Val::I32(0x10000 - 0x24), Val::I32(0x0102_0304)],
    )
    .expect("last i32 is writable");
    let straddle = 0x10000 - 4;
    let trap = fx.trap("load_i64_at", &[Val::I32(straddle)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0x10000), "{trap}");
    let trap = fx.trap("store_i64_at", &[Val::I32(straddle), Val::I64(-1)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0x10000), "{trap}");
    assert_eq!(fx.bytes(end - 4..end), [4, 3, 2, 1]);
    // The last 8 bytes, by contrast, are accessible.
    assert!(fx.call("load_i64_at", &[Val::I32(0x10000 - 8)]).is_ok());
}

/// After `memory.grow` the address that faulted is accessible (and keeps its zeroes),
/// `memory.size` follows, and the fault moves to the new end.
#[test]
fn after_memory_grow_the_faulting_address_works() {
    let mut fx = FaultFixture::new();
    let before = fx.trap("load_at", &[Val::I32(0xfff0)]);
    assert_eq!(before.fault_address(), Some(0x10010));
    assert_eq!(fx.i32("grow", &[Val::I32(1)]), 1);
    assert_eq!(fx.i32("size", &[]), 2);
    assert_eq!(fx.i32("load_at", &[Val::I32(0xfff0)]), 0);
    fx.call("store_at", &[Val::I32(0xfff0), Val::I32(77)])
        .expect("store in the new page");
    assert_eq!(fx.i32("load_at", &[Val::I32(0xfff0)]), 77);
    let after = fx.trap("load_at", &[Val::I32(0x1fff0)]);
    assert_eq!(after.fault_address(), Some(0x20010));
    assert_eq!(after.fault_memory_size(), Some(0x20000));
    // Growing past the declared maximum (4 pages) still fails, guard or not.
    assert_eq!(fx.i32("grow", &[Val::I32(3)]), -1);
    assert_eq!(fx.i32("grow", &[Val::I32(2)]), 2);
    assert_eq!(fx.i32("size", &[]), 4);
    let top = fx.trap("load_at", &[Val::I32(0x40000 - 0x20)]);
    assert_eq!(top.fault_address(), Some(0x40000));
}

/// An index near 4 GiB plus the static offset reaches past 4 GiB, into the guard
/// region after the bound: the address is the full 33-bit sum.
#[test]
fn an_address_past_4_gib_traps_with_its_full_address() {
    let mut fx = FaultFixture::new();
    let trap = fx.trap("load_at", &[Val::I32(0xffff_fff0u32 as i32)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0xffff_fff0 + 0x20));
    assert_eq!(
        trap.to_string().lines().nth(1),
        Some("memory fault at wasm address 0x100000010 in linear memory of size 0x10000")
    );
    let trap = fx.trap("store_at", &[Val::I32(-1), Val::I32(1)]);
    assert_eq!(trap.fault_address(), Some(0xffff_ffff + 0x20));
}

/// A static offset over the guard size gets an explicit check against the 4 GiB bound:
/// an access ending past 4 GiB traps there, with no address; one ending below 4 GiB but
/// past `current_length` still faults on the inaccessible pages, with its address.
/// Out-of-bounds bulk memory operations are checked by their libcalls: no address.
#[test]
fn out_of_bounds_traps_without_a_faulting_access_have_no_address() {
    let mut fx = FaultFixture::new();
    let trap = fx.trap("load_far", &[Val::I32(0x8000_0000u32 as i32)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), None);
    assert_eq!(trap.fault_memory_size(), None);
    assert!(
        trap.to_string()
            .starts_with("wasm trap: out of bounds memory access\nwasm backtrace:"),
        "{trap}"
    );
    let trap = fx.trap("load_far", &[Val::I32(0x1000)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0x8000_1000));
    let trap = fx.trap("fill", &[Val::I32(0xff00), Val::I32(0x200)]);
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), None);
    assert_eq!(
        fx.bytes(0xff00..0x10000),
        vec![0; 0x100],
        "fill wrote nothing"
    );
}

/// Two instances in one store, each with its own memory of a different size: a fault
/// is attributed to the memory of the instance that faulted (framewalk compiles
/// WebAssembly 2.0, without multi-memory, so an instance has at most one memory).
#[test]
fn a_fault_is_attributed_to_the_memory_it_hit() {
    let engine = engine();
    let small = Module::new(&engine, &Wasm::new(FAULT_WAT).bytes).expect("small");
    let big_wat = FAULT_WAT.replace(
        "(memory (export \"mem\") 1 4)",
        "(memory (export \"mem\") 3)",
    );
    let big = Module::new(&engine, &Wasm::new(&big_wat).bytes).expect("big");
    let mut store = Store::new(&engine, ());
    let first = Instance::new(&mut store, &small, &[]).expect("first");
    let second = Instance::new(&mut store, &big, &[]).expect("second");
    let third = Instance::new(&mut store, &small, &[]).expect("third");
    for (instance, size) in [(second, 0x30000u64), (first, 0x10000), (third, 0x10000)] {
        let load = instance
            .get_typed_func::<i32, i32>(&store, "load_at")
            .expect("load_at");
        let Err(Error::Trap(trap)) = load.call(&mut store, (size - 0x10) as i32) else {
            panic!("load past the end of a {size:#x}-byte memory traps")
        };
        assert_eq!(trap.fault_address(), Some(size + 0x10), "{trap}");
        assert_eq!(trap.fault_memory_size(), Some(size), "{trap}");
        // And just inside the end of this memory (beyond the other's) is readable.
        assert_eq!(
            load.call(&mut store, (size - 0x24) as i32)
                .expect("in bounds"),
            0
        );
    }
}

/// Multi-memory: each memory has its own guard region, and a fault in one says which
/// memory's bounds it crossed (its size) and the wasm address in it; an address that
/// is out of bounds for one memory is an ordinary access in a larger one.
#[test]
fn a_fault_in_a_second_memory_names_that_memory() {
    let wat = r#"
      (module $two
        (memory $small 1)
        (memory $big 3)
        (func $load_small (export "load_small") (param i32) (result i32)
          (i32.load $small (local.get 0)))
        (func $load_big (export "load_big") (param i32) (result i32)
          (i32.load $big (local.get 0)))
        (func (export "store_big") (param i32 i32)
          (i32.store $big (local.get 0) (local.get 1))))"#;
    let wasm = Wasm::new(wat);
    let engine = Engine::new(Config::default()).expect("engine");
    let module = Module::new(&engine, &wasm.bytes).expect("two memories compile");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let store_big = instance
        .get_typed_func::<(i32, i32), ()>(&store, "store_big")
        .unwrap();
    let load_big = instance
        .get_typed_func::<i32, i32>(&store, "load_big")
        .unwrap();
    let load_small = instance
        .get_typed_func::<i32, i32>(&store, "load_small")
        .unwrap();
    store_big.call(&mut store, (0x2_0000, 77)).unwrap();
    assert_eq!(load_big.call(&mut store, 0x2_0000).unwrap(), 77);
    for (f, name, address, size) in [
        (&load_small, "load_small", 0x2_0000u64, 0x1_0000u64),
        (&load_big, "load_big", 0x3_0004, 0x3_0000),
    ] {
        let Err(Error::Trap(trap)) = f.call(&mut store, address as i32) else {
            panic!("{name} traps")
        };
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds, "{trap}");
        assert_eq!(trap.fault_address(), Some(address), "{trap}");
        let load = wasm.only_op(name, "i32.load", |op| {
            matches!(op, Operator::I32Load { .. })
        });
        let offsets: Vec<_> = trap.frames().iter().map(|fr| fr.wasm_offset).collect();
        assert_eq!(offsets, [Some(load)], "{trap}");
        assert!(
            trap.to_string().contains(&format!(
                "memory fault at wasm address {address:#x} in linear memory of size {size:#x}"
            )),
            "{trap}"
        );
    }
}

/// A 64-bit memory (memory64) of 1 page, at most 4: `i64` addresses, explicit checks of
/// the index against the current length, guard pages for the static offset.
const FAULT64_WAT: &str = r#"
(module $fault64
  (memory (export "mem") i64 1 4)
  (func $load_at (export "load_at") (param i64) (result i32)
    (i32.load offset=0x20 (local.get 0)))
  (func $store_at (export "store_at") (param i64) (param i32)
    (i32.store offset=0x20 (local.get 0) (local.get 1)))
  (func $load_i64_at (export "load_i64_at") (param i64) (result i64)
    (i64.load (local.get 0)))
  (func $load_huge_offset (export "load_huge_offset") (param i64) (result i32)
    (i32.load offset=0x100000000 (local.get 0)))
  (func $fill (export "fill") (param i64) (param i64)
    (memory.fill (local.get 0) (i32.const 0xab) (local.get 1)))
  (func $copy (export "copy") (param i64 i64 i64)
    (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func $grow (export "grow") (param i64) (result i64)
    (memory.grow (local.get 0)))
  (func $size (export "size") (result i64) (memory.size))
  (func $outer (export "outer") (param i64) (result i32)
    (i32.add (call $load_at (local.get 0)) (i32.const 1))))
"#;

/// Calls `name` of a [`FAULT64_WAT`] instance: its integer result (an i32 widened),
/// or its trap.
fn call64(
    store: &mut Store<()>,
    instance: Instance,
    name: &str,
    params: &[Val],
) -> Result<Option<i64>, Trap> {
    let f = instance.get_func(&*store, name).expect(name);
    let n = f.ty(&*store).expect("type").results().len();
    let mut results = [Val::I32(0)];
    match f.call(&mut *store, params, &mut results[..n]) {
        Ok(()) => Ok(results[..n]
            .first()
            .map(|v| v.i64().or(v.i32().map(i64::from)).expect("an integer"))),
        Err(Error::Trap(t)) => Err(t),
        Err(e) => panic!("{name} failed without a trap: {e}"),
    }
}

/// A 64-bit memory: the last bytes are readable and writable through `i64` addresses;
/// an access that starts in bounds and ends past the end faults on the guard with its
/// exact wasm address and the full backtrace; an index past the end fails the explicit
/// check (no access happens, so no address), as do indices above 4 GiB, which never
/// wrap to a low address; after `memory.grow` (an `i64` result) the fault moves.
#[test]
fn a_64_bit_memory_traps_out_of_bounds_with_exact_addresses() {
    let wasm = Wasm::new(FAULT64_WAT);
    let engine = engine();
    let module = Module::new(&engine, &wasm.bytes).expect("memory64 module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let s = &mut store;
    let end = 0x10000i64;

    // In bounds near the end.
    call64(
        s,
        instance,
        "store_at",
        &[Val::I64(end - 0x24), Val::I32(0x0102_0304)],
    )
    .expect("the last i32 is writable");
    assert_eq!(
        call64(s, instance, "outer", &[Val::I64(end - 0x24)]).expect("readable"),
        Some(0x0102_0305)
    );
    let mem = instance.get_memory(&*s, "mem").expect("mem");
    assert_eq!(mem.data(&*s).expect("data")[0xfffc..], [4, 3, 2, 1]);

    // Starts in bounds, ends past the end: a fault with the address of the access.
    let load = wasm.only_op("load_at", "i32.load", |op| {
        matches!(op, Operator::I32Load { .. })
    });
    let expected = [
        wasm.frame("load_at", load),
        wasm.at_call("outer", "load_at"),
    ];
    for (index, address) in [
        (end - 0x10, 0x10010u64),
        (end, 0x10020),
        (end - 0x23, 0x10000),
    ] {
        let trap = call64(s, instance, "outer", &[Val::I64(index)]).expect_err("traps");
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
        assert_eq!(trap.fault_address(), Some(address), "{trap}");
        assert_eq!(trap.fault_memory_size(), Some(0x10000));
        assert_frames(trap.frames(), &expected);
        assert_eq!(
            trap.to_string(),
            render_trap(&fault_lines(address, 0x10000), &expected)
        );
    }
    let trap = call64(s, instance, "load_i64_at", &[Val::I64(end - 4)]).expect_err("straddles");
    assert_eq!(trap.fault_address(), Some(0x10000), "{trap}");

    // Past the end, at 4 GiB and beyond (which must not wrap to 0 or 0x10), and at
    // the top of the 64-bit space: the explicit check traps, before any access.
    for index in [
        end + 1,
        1 << 32,
        (1 << 32) + 0x10,
        0x10_0000_0000,
        -0x20, // 2^64 - 0x20: index + offset wraps to 0 in 64 bits
        -1,
    ] {
        let trap = call64(s, instance, "outer", &[Val::I64(index)]).expect_err("traps");
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds, "{index:#x}");
        assert_eq!(trap.fault_address(), None, "{index:#x}: {trap}");
        assert_frames(trap.frames(), &expected);
        assert_eq!(
            trap.to_string(),
            render_trap("wasm trap: out of bounds memory access", &expected)
        );
        let trap =
            call64(s, instance, "store_at", &[Val::I64(index), Val::I32(-1)]).expect_err("traps");
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds, "{index:#x}");
    }
    // A static offset of 4 GiB: checked in full, whatever the index.
    for index in [0, end, -1] {
        let trap = call64(s, instance, "load_huge_offset", &[Val::I64(index)]).expect_err("oob");
        assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds, "{index:#x}");
    }
    // Nothing was written by the failed stores.
    assert_eq!(mem.data(&*s).expect("data")[0xfffc..], [4, 3, 2, 1]);
    assert_eq!(mem.data(&*s).expect("data")[..0x30], [0; 0x30]);

    // Bulk operations on i64 operands: a range ending past the end, or one whose
    // start or length is above 4 GiB, traps (no wrapping to a small range).
    for (dst, len) in [(end - 8, 9), (1 << 32, 1), (0, (1 << 32) + 1), (8, -8)] {
        let trap = call64(s, instance, "fill", &[Val::I64(dst), Val::I64(len)])
            .expect_err("fill out of bounds");
        assert_eq!(
            trap.code(),
            TrapCode::MemoryOutOfBounds,
            "{dst:#x} {len:#x}"
        );
        assert_eq!(trap.fault_address(), None);
        let trap = call64(
            s,
            instance,
            "copy",
            &[Val::I64(0), Val::I64(dst), Val::I64(len)],
        )
        .expect_err("copy out of bounds");
        assert_eq!(
            trap.code(),
            TrapCode::MemoryOutOfBounds,
            "{dst:#x} {len:#x}"
        );
    }
    assert_eq!(mem.data(&*s).expect("data")[..0x30], [0; 0x30]);
    call64(s, instance, "fill", &[Val::I64(end - 8), Val::I64(8)]).expect("fill the end");
    assert_eq!(mem.data(&*s).expect("data")[0xfff8..], [0xab; 8]);

    // Grow: i64 results, the old size or -1.
    assert_eq!(
        call64(s, instance, "grow", &[Val::I64(1)]).expect("grow"),
        Some(1)
    );
    assert_eq!(call64(s, instance, "size", &[]).expect("size"), Some(2));
    assert_eq!(mem.size(&*s).expect("size"), 2);
    assert_eq!(
        call64(s, instance, "outer", &[Val::I64(end)]).expect("the new page is readable"),
        Some(1)
    );
    let trap = call64(s, instance, "outer", &[Val::I64(2 * end - 0x10)]).expect_err("traps");
    assert_eq!(trap.fault_address(), Some(0x20010), "{trap}");
    assert_eq!(trap.fault_memory_size(), Some(0x20000), "{trap}");
    // Past the declared maximum of 4, and by counts that overflow in 32 or 64 bits.
    for delta in [3, 1 << 32, 1 << 48, -1] {
        assert_eq!(
            call64(s, instance, "grow", &[Val::I64(delta)]).expect("grow"),
            Some(-1),
            "{delta:#x}"
        );
    }
    assert_eq!(call64(s, instance, "size", &[]).expect("size"), Some(2));
}

/// A 64-bit memory without a maximum is capped at what framewalk reserves (2^20 pages,
/// 64 GiB): `memory.grow` past it returns -1 (and the memory keeps working); a
/// module whose memory starts past it does not instantiate.
#[test]
fn a_64_bit_memory_is_capped_at_what_framewalk_reserves() {
    let engine = engine();
    let wat = r#"(module
        (memory (export "mem") i64 1)
        (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
        (func (export "load") (param i64) (result i32) (i32.load (local.get 0))))"#;
    let module = Module::new(&engine, &Wasm::new(wat).bytes).expect("compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let grow = instance
        .get_typed_func::<i64, i64>(&store, "grow")
        .expect("grow");
    assert_eq!(grow.call(&mut store, 1 << 20).expect("grow"), -1);
    assert_eq!(grow.call(&mut store, 1 << 47).expect("grow"), -1);
    assert_eq!(grow.call(&mut store, 1).expect("grow"), 1);
    let load = instance
        .get_typed_func::<i64, i32>(&store, "load")
        .expect("load");
    assert_eq!(load.call(&mut store, 0x1fffc).expect("in bounds"), 0);

    let too_big = Module::new(&engine, &Wasm::new("(module (memory i64 0x100001))").bytes)
        .expect("valid: the type allows 2^48 pages");
    let e = Instance::new(&mut store, &too_big, &[]).expect_err("too big to reserve");
    assert!(matches!(e, Error::Resource(_)), "{e}");
    assert!(
        e.to_string().contains("64-bit memory of 1048577 pages"),
        "{e}"
    );
}
