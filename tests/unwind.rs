//! Walking wasm stacks from host functions: nested activations, `call_indirect`,
//! deep recursion, foreign frames that clobber `rbp` between activations, two stores
//! whose activations interleave on one thread, and one walk across two modules.
//!
//! Every walk is compared frame by frame against ground truth computed from the
//! module binary (see `common`): function index, name, module name and the offset of
//! the `call` instruction each frame is stopped at.
//!
//! `UNWIND_RECURSION_DEPTH` (default 10,000) sets the depth of
//! [`walk_through_deep_recursion`].

mod common;

use common::{assert_frames, env_count, render_trap, with_big_stack, Expected, Wasm};
use framewalk::trap::{FrameInfo, TrapCode};
use framewalk::{Caller, Config, Engine, Error, Extern, Func, Instance, Module, Store, Val};
use std::ops::ControlFlow;
use wasmparser::Operator;

fn engine() -> Engine {
    Engine::new(Config::default()).expect("engine")
}

/// Calls the export `name` of `instance` with `params`, returning its one i32 result.
fn call_i32(
    mut store: impl framewalk::runtime::AsStoreMut,
    instance: Instance,
    name: &str,
    params: &[Val],
) -> Result<i32, Error> {
    let f = instance.get_func(&store, name).expect(name);
    let mut results = [Val::I32(0)];
    f.call(&mut store, params, &mut results)?;
    Ok(results[0].i32().expect("i32 result"))
}

/// What a walk from a host function saw, through both APIs.
#[derive(Default, Debug)]
struct Walk {
    /// `Caller::backtrace`.
    frames: Vec<FrameInfo>,
    /// `Caller::visit_frames`: `(func_index, activation_index, fp, pc)` per frame.
    visited: Vec<(u32, usize, usize, usize)>,
    /// `Caller::visit_frames` breaking at the third frame: that frame's function.
    third: Option<u32>,
}

impl Walk {
    fn take<T>(caller: &Caller<'_, T>) -> Walk {
        let frames = caller.force_backtrace().expect("backtrace succeeds");
        let mut visited = Vec::new();
        let done = caller
            .visit_frames(|f| {
                visited.push((f.location.func_index, f.activation_index, f.fp, f.pc));
                ControlFlow::<()>::Continue(())
            })
            .expect("visit succeeds");
        assert_eq!(done, None, "a walk that never breaks returns None");
        let mut seen = 0;
        let third = caller
            .visit_frames(|f| {
                seen += 1;
                if seen == 3 {
                    ControlFlow::Break(f.location.func_index)
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("visit succeeds");
        Walk {
            frames,
            visited,
            third,
        }
    }

    /// Both APIs agree with `expected`; frame pointers strictly increase.
    fn check(&self, expected: &[Expected]) {
        assert_frames(&self.frames, expected);
        let indices: Vec<u32> = self.visited.iter().map(|v| v.0).collect();
        let expected_indices: Vec<u32> = expected.iter().map(|e| e.func_index).collect();
        assert_eq!(indices, expected_indices, "visit_frames functions");
        let pcs: Vec<usize> = self.visited.iter().map(|v| v.3).collect();
        let backtrace_pcs: Vec<usize> = self.frames.iter().map(|f| f.pc).collect();
        assert_eq!(pcs, backtrace_pcs, "visit_frames and backtrace PCs");
        assert!(
            self.visited.windows(2).all(|w| w[0].2 < w[1].2),
            "frame pointers strictly increase from newest to oldest"
        );
        assert_eq!(self.third, expected.get(2).map(|e| e.func_index));
    }
}

// ---------------------------------------------------------------------------------
// Five nested activations, each with its own chain of calls.

/// Level `k` (0..levels) is a chain of `k + 1` functions `$l{k}_0` (exported as
/// `level{k}`) → … → `$l{k}_{k}`, which calls the host function `down` with `k`. Each
/// function adds 1 to what its callee returns.
fn nested_wat(levels: usize) -> String {
    let mut wat = String::from(
        "(module $nested\n  (import \"host\" \"down\" (func $down (param i32) (result i32)))\n",
    );
    for k in 0..levels {
        for j in 0..=k {
            let export = if j == 0 {
                format!(" (export \"level{k}\")")
            } else {
                String::new()
            };
            let callee = if j == k {
                format!("(call $down (i32.const {k}))")
            } else {
                format!("(call $l{k}_{})", j + 1)
            };
            wat.push_str(&format!(
                "  (func $l{k}_{j}{export} (result i32) (i32.add (i32.const 1) {callee}))\n"
            ));
        }
    }
    wat.push(')');
    wat
}

/// The frames of level `k`, newest first: `$l{k}_{k}` at its call to `down`, then each
/// `$l{k}_{j}` at its call to `$l{k}_{j+1}`.
fn level_frames(wasm: &Wasm, k: usize) -> Vec<Expected> {
    (0..=k)
        .rev()
        .map(|j| {
            let callee = if j == k {
                "down".to_string()
            } else {
                format!("l{k}_{}", j + 1)
            };
            wasm.at_call(&format!("l{k}_{j}"), &callee)
        })
        .collect()
}

#[derive(Default)]
struct Nested {
    instance: Option<Instance>,
    levels: i32,
    walk: Option<Walk>,
}

/// host → level0 → host → level1 → … → level4 → host: a walk from the innermost host
/// function lists level 4's frames, then level 3's, … then level 0's, each at the
/// offset of its `call`, and `visit_frames` reports each frame's activation (newest
/// activation = 0).
#[test]
fn walk_through_five_nested_activations() {
    const LEVELS: usize = 5;
    let wasm = Wasm::new(&nested_wat(LEVELS));
    let engine = engine();
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let mut store = Store::new(
        &engine,
        Nested {
            levels: LEVELS as i32,
            ..Nested::default()
        },
    );
    let down = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Nested>, k: i32| -> Result<i32, Error> {
            if k + 1 < caller.data().levels {
                let instance = caller.data().instance.expect("instance");
                call_i32(&mut caller, instance, &format!("level{}", k + 1), &[])
            } else {
                let walk = Walk::take(&caller);
                caller.data_mut().walk = Some(walk);
                Ok(0)
            }
        },
    )
    .unwrap();
    let instance = Instance::new(&mut store, &module, &[Extern::Func(down)]).expect("instance");
    store.data_mut().instance = Some(instance);

    // Each level adds one per function: 1 + 2 + 3 + 4 + 5.
    assert_eq!(call_i32(&mut store, instance, "level0", &[]).unwrap(), 15);

    let expected: Vec<Expected> = (0..LEVELS)
        .rev()
        .flat_map(|k| level_frames(&wasm, k))
        .collect();
    let walk = store
        .data_mut()
        .walk
        .take()
        .expect("the innermost host walked");
    walk.check(&expected);
    let activations: Vec<usize> = walk.visited.iter().map(|v| v.1).collect();
    let expected_activations: Vec<usize> = (0..LEVELS)
        .rev()
        .flat_map(|k| std::iter::repeat_n(LEVELS - 1 - k, k + 1))
        .collect();
    assert_eq!(
        activations, expected_activations,
        "activation of each frame"
    );

    // Outside any host function there is nothing to walk, and the store still works.
    assert_eq!(call_i32(&mut store, instance, "level0", &[]).unwrap(), 15);
}

// ---------------------------------------------------------------------------------
// call_indirect.

const INDIRECT_WAT: &str = r#"
(module $indirect
  (type $i_i (func (param i32) (result i32)))
  (import "host" "leaf" (func $leaf (param i32) (result i32)))
  (table 3 funcref)
  (elem (i32.const 0) $a $b $leaf)
  (func $entry (export "entry") (param i32) (result i32)
    (call_indirect (type $i_i) (local.get 0) (i32.const 0)))
  (func $a (param i32) (result i32)
    (call_indirect (type $i_i) (local.get 0) (i32.const 1)))
  (func $b (param i32) (result i32)
    (call_indirect (type $i_i) (local.get 0) (i32.const 2)))
)
"#;

#[derive(Default)]
struct Indirect {
    instance: Option<Instance>,
    walk: Option<Walk>,
}

/// Every call goes through the table, including the call of the host function (an
/// import in the table): `entry` → `$a` → `$b` → host `leaf`, which re-enters `entry`
/// twice more. The walk from the third `leaf` lists `$b`, `$a`, `entry` at their
/// `call_indirect` instructions, three times.
#[test]
fn walk_through_call_indirect() {
    let wasm = Wasm::new(INDIRECT_WAT);
    let engine = engine();
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let mut store = Store::new(&engine, Indirect::default());
    let leaf = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Indirect>, x: i32| -> Result<i32, Error> {
            if x < 2 {
                let instance = caller.data().instance.expect("instance");
                Ok(call_i32(&mut caller, instance, "entry", &[Val::I32(x + 1)])? + 1)
            } else {
                let walk = Walk::take(&caller);
                caller.data_mut().walk = Some(walk);
                Ok(40)
            }
        },
    )
    .unwrap();
    let instance = Instance::new(&mut store, &module, &[Extern::Func(leaf)]).expect("instance");
    store.data_mut().instance = Some(instance);
    assert_eq!(
        call_i32(&mut store, instance, "entry", &[Val::I32(0)]).unwrap(),
        42
    );

    let one_activation = [
        wasm.frame("b", wasm.call_indirect("b")),
        wasm.frame("a", wasm.call_indirect("a")),
        wasm.frame("entry", wasm.call_indirect("entry")),
    ];
    let expected: Vec<Expected> = one_activation.iter().cycle().take(9).cloned().collect();
    store
        .data_mut()
        .walk
        .take()
        .expect("the innermost host walked")
        .check(&expected);
}

// ---------------------------------------------------------------------------------
// Deep recursion.

const RECURSION_WAT: &str = r#"
(module $recursion
  (import "host" "bottom" (func $bottom (result i32)))
  (func $rec (export "rec") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (call $bottom))
      (else (i32.add (i32.const 1) (call $rec (i32.sub (local.get 0) (i32.const 1)))))))
)
"#;

/// `rec(N)` recurses N times, then calls the host, which walks: `$rec` at its call to
/// `bottom`, then N frames of `$rec` at its call to itself. Runs on a 256 MiB thread
/// with a 64 MiB wasm stack limit.
#[test]
fn walk_through_deep_recursion() {
    let depth = env_count("UNWIND_RECURSION_DEPTH", 10_000);
    with_big_stack(256, move || {
        let wasm = Wasm::new(RECURSION_WAT);
        let engine = Engine::new(Config {
            max_wasm_stack: 64 << 20,
            ..Config::default()
        })
        .expect("engine");
        let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
        let mut store = Store::new(&engine, None::<Walk>);
        let bottom = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Option<Walk>>, (): ()| {
                let walk = Walk::take(&caller);
                *caller.data_mut() = Some(walk);
                0
            },
        )
        .unwrap();
        let instance =
            Instance::new(&mut store, &module, &[Extern::Func(bottom)]).expect("instance");
        let n = i32::try_from(depth).expect("depth fits i32");
        assert_eq!(
            call_i32(&mut store, instance, "rec", &[Val::I32(n)]).unwrap(),
            n
        );

        let mut expected = vec![wasm.at_call("rec", "bottom")];
        expected.extend(std::iter::repeat_n(wasm.at_call("rec", "rec"), depth));
        let walk = store.data_mut().take().expect("bottom walked");
        walk.check(&expected);
        assert!(walk.visited.iter().all(|v| v.1 == 0), "one activation");
    });
}

// ---------------------------------------------------------------------------------
// Foreign frames between activations (Wasmtime PR #1832).

// The foreign code itself (assembly with no frame pointer, no CFI, rbp = poison) is in
// `tests/common/foreign.rs`.
use common::foreign::{through_foreign_frame, POISON};

const FOREIGN_WAT: &str = r#"
(module $foreign
  (import "host" "through_foreign" (func $through_foreign (param i32) (result i32)))
  (import "host" "walk" (func $walk (result i32)))
  (func $outer (export "outer") (param i32) (result i32) (call $outer_mid (local.get 0)))
  (func $outer_mid (param i32) (result i32) (call $through_foreign (local.get 0)))
  (func $inner (export "inner") (result i32) (call $inner_mid))
  (func $inner_mid (result i32) (call $walk))
  (func $inner_trap (export "inner_trap") (result i32) (call $inner_trap_mid))
  (func $inner_trap_mid (result i32) (unreachable))
)
"#;

#[derive(Default)]
struct ForeignHost {
    instance: Option<Instance>,
    walk: Option<Walk>,
    /// `(rbp_at_call, callback_saved_rbp)` of the last trip through foreign code.
    rbp_seen: Option<(u64, u64)>,
    /// The trap the callback's call returned, after it crossed the foreign frame.
    trap: Option<(TrapCode, Vec<FrameInfo>, String)>,
}

/// Wasm → host → foreign code (no frame pointer, no unwind info, `rbp` = poison) →
/// Rust callback → wasm → host, which walks; and the same with a trap in the inner
/// wasm instead of a walk.
///
/// Proof that the foreign frame really broke the native frame-pointer chain: the
/// trampoline records the value of `rbp` live at its `call` of the callback, and the
/// callback (which keeps frame pointers) records the word at its `[rbp]` — the saved
/// caller FP that any walk of the native FP chain from the callback would follow.
/// Both must be the poison. A walker that followed native frame pointers from the
/// inner activation to the outer one would therefore have read the poison as a frame
/// address. framewalk's walk still lists every wasm frame of both activations, in
/// order, because it never reads host frames: it jumps from the inner activation's
/// `entry_fp` to the outer activation's recorded exit.
#[test]
fn walk_across_foreign_frames_that_clobber_rbp() {
    let wasm = Wasm::new(FOREIGN_WAT);
    let engine = engine();
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let mut store = Store::new(&engine, ForeignHost::default());
    let through_foreign = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, ForeignHost>, which: i32| -> Result<i32, Error> {
            let export = if which == 0 { "inner" } else { "inner_trap" };
            let instance = caller.data().instance.expect("instance");
            let mut result = None;
            let rbp_seen = through_foreign_frame(&mut || {
                result = Some(call_i32(&mut caller, instance, export, &[]));
            });
            let result = result.expect("the callback ran");
            caller.data_mut().rbp_seen = Some(rbp_seen);
            match result {
                Ok(v) => Ok(v + 1),
                Err(Error::Trap(t)) => {
                    let seen = (t.code(), t.frames().to_vec(), t.to_string());
                    caller.data_mut().trap = Some(seen);
                    Ok(-1)
                }
                Err(e) => Err(e),
            }
        },
    )
    .unwrap();
    let walk = Func::wrap(&mut store, |mut caller: Caller<'_, ForeignHost>, (): ()| {
        let walk = Walk::take(&caller);
        caller.data_mut().walk = Some(walk);
        41
    })
    .unwrap();
    let instance = Instance::new(
        &mut store,
        &module,
        &[Extern::Func(through_foreign), Extern::Func(walk)],
    )
    .expect("instance");
    store.data_mut().instance = Some(instance);

    let outer = [
        wasm.at_call("outer_mid", "through_foreign"),
        wasm.at_call("outer", "outer_mid"),
    ];

    // A walk from the innermost host function.
    assert_eq!(
        call_i32(&mut store, instance, "outer", &[Val::I32(0)]).unwrap(),
        42
    );
    assert_eq!(
        store
            .data()
            .rbp_seen
            .map(|(a, b)| (format!("{a:#x}"), format!("{b:#x}"))),
        Some((format!("{POISON:#x}"), format!("{POISON:#x}"))),
        "rbp at the foreign call, and the callback's saved rbp, must be the poison"
    );
    let mut expected = vec![
        wasm.at_call("inner_mid", "walk"),
        wasm.at_call("inner", "inner_mid"),
    ];
    expected.extend(outer.iter().cloned());
    let walk = store.data_mut().walk.take().expect("walked");
    walk.check(&expected);
    let activations: Vec<usize> = walk.visited.iter().map(|v| v.1).collect();
    assert_eq!(activations, [0, 0, 1, 1]);

    // A trap in the inner activation: the backtrace, captured while the foreign frame
    // is live, has both activations; the trap returns through the foreign frame.
    store.data_mut().rbp_seen = None;
    assert_eq!(
        call_i32(&mut store, instance, "outer", &[Val::I32(1)]).unwrap(),
        -1
    );
    assert_eq!(
        store
            .data()
            .rbp_seen
            .map(|(a, b)| (format!("{a:#x}"), format!("{b:#x}"))),
        Some((format!("{POISON:#x}"), format!("{POISON:#x}"))),
        "rbp at the foreign call, and the callback's saved rbp, must be the poison"
    );
    let unreachable = wasm.only_op("inner_trap_mid", "unreachable", |op| {
        matches!(op, Operator::Unreachable)
    });
    let mut expected = vec![
        wasm.frame("inner_trap_mid", unreachable),
        wasm.at_call("inner_trap", "inner_trap_mid"),
    ];
    expected.extend(outer.iter().cloned());
    let (code, frames, text) = store
        .data_mut()
        .trap
        .take()
        .expect("the inner call trapped");
    assert_eq!(code, TrapCode::Unreachable);
    assert_frames(&frames, &expected);
    assert_eq!(text, render_trap("wasm trap: unreachable", &expected));

    // The store works after both trips.
    assert_eq!(
        call_i32(&mut store, instance, "outer", &[Val::I32(0)]).unwrap(),
        42
    );
}

// ---------------------------------------------------------------------------------
// Two stores interleaved on one thread.

const STORE_A_WAT: &str = r#"
(module $store_a
  (import "host" "to_b" (func $to_b (param i32) (result i32)))
  (import "host" "walk_a" (func $walk_a (result i32)))
  (func $a_outer (export "outer") (param i32) (result i32) (call $a_outer_mid (local.get 0)))
  (func $a_outer_mid (param i32) (result i32) (call $to_b (local.get 0)))
  (func $a_inner (export "inner") (result i32) (call $walk_a))
  (func $a_inner_trap (export "inner_trap") (result i32) (unreachable))
)
"#;

const STORE_B_WAT: &str = r#"
(module $store_b
  (import "host" "to_a" (func $to_a (param i32) (result i32)))
  (func $b_middle (export "middle") (param i32) (result i32) (call $b_deeper (local.get 0)))
  (func $b_deeper (param i32) (result i32) (call $to_a (local.get 0)))
)
"#;

struct HostA {
    instance: Option<Instance>,
    /// Store B, lent to `to_b` while it runs.
    b: Option<Store<HostB>>,
    walk: Option<Walk>,
}

#[derive(Default)]
struct HostB {
    instance: Option<Instance>,
    /// The `Caller` of the running `to_b` (store A), for `to_a` to call back into A.
    a_caller: usize,
    walk: Option<Walk>,
    /// What A's inner call returned when it trapped.
    a_trap: Option<(TrapCode, Vec<FrameInfo>)>,
}

/// Store A's wasm calls the host, which calls into store B; B's wasm calls the host,
/// which calls back into A. A walk of A from A's innermost host function sees only
/// A's wasm frames (both A activations, newest first), and a walk of B from B's host
/// function sees only B's. A trap in A's inner activation has only A's frames too.
#[test]
fn interleaved_stores_walk_only_their_own_frames() {
    let engine = engine();
    let wasm_a = Wasm::new(STORE_A_WAT);
    let wasm_b = Wasm::new(STORE_B_WAT);
    let module_a = Module::new(&engine, &wasm_a.bytes).expect("module A compiles");
    let module_b = Module::new(&engine, &wasm_b.bytes).expect("module B compiles");

    let mut b = Store::new(&engine, HostB::default());
    let to_a = Func::wrap(
        &mut b,
        |mut caller: Caller<'_, HostB>, x: i32| -> Result<i32, Error> {
            let walk = Walk::take(&caller);
            caller.data_mut().walk = Some(walk);
            let a_caller = caller.data().a_caller as *mut Caller<'_, HostA>;
            // SAFETY: `to_b` stored its live `Caller` and is suspended in B's call; it
            // does not touch that caller until the call returns.
            let a_caller = unsafe { &mut *a_caller };
            let instance = a_caller.data().instance.expect("instance A");
            let export = if x == 0 { "inner" } else { "inner_trap" };
            match call_i32(&mut *a_caller, instance, export, &[]) {
                Err(Error::Trap(t)) => {
                    caller.data_mut().a_trap = Some((t.code(), t.frames().to_vec()));
                    Ok(-1)
                }
                other => Ok(other? + 1),
            }
        },
    )
    .unwrap();
    let instance_b = Instance::new(&mut b, &module_b, &[Extern::Func(to_a)]).expect("B");
    b.data_mut().instance = Some(instance_b);

    let mut a = Store::new(
        &engine,
        HostA {
            instance: None,
            b: Some(b),
            walk: None,
        },
    );
    let to_b = Func::wrap(
        &mut a,
        |mut caller: Caller<'_, HostA>, x: i32| -> Result<i32, Error> {
            let mut b = caller.data_mut().b.take().expect("store B is home");
            b.data_mut().a_caller = &mut caller as *mut Caller<'_, HostA> as usize;
            let instance = b.data().instance.expect("instance B");
            let result = call_i32(&mut b, instance, "middle", &[Val::I32(x)]);
            b.data_mut().a_caller = 0;
            caller.data_mut().b = Some(b);
            Ok(result? + 1)
        },
    )
    .unwrap();
    let walk_a = Func::wrap(&mut a, |mut caller: Caller<'_, HostA>, (): ()| {
        let walk = Walk::take(&caller);
        caller.data_mut().walk = Some(walk);
        40
    })
    .unwrap();
    let instance_a = Instance::new(
        &mut a,
        &module_a,
        &[Extern::Func(to_b), Extern::Func(walk_a)],
    )
    .expect("A");
    a.data_mut().instance = Some(instance_a);

    let a_outer = [
        wasm_a.at_call("a_outer_mid", "to_b"),
        wasm_a.at_call("a_outer", "a_outer_mid"),
    ];
    let b_frames = [
        wasm_b.at_call("b_deeper", "to_a"),
        wasm_b.at_call("b_middle", "b_deeper"),
    ];

    assert_eq!(
        call_i32(&mut a, instance_a, "outer", &[Val::I32(0)]).unwrap(),
        42
    );
    let mut expected_a = vec![wasm_a.at_call("a_inner", "walk_a")];
    expected_a.extend(a_outer.iter().cloned());
    a.data_mut()
        .walk
        .take()
        .expect("A walked")
        .check(&expected_a);
    let b = a.data_mut().b.as_mut().expect("store B is home");
    let walk_b = b.data_mut().walk.take().expect("B walked");
    assert_frames(&walk_b.frames, &b_frames);
    assert_eq!(walk_b.visited.len(), 2);

    // A trap in A's inner activation: its backtrace has A's frames only.
    assert_eq!(
        call_i32(&mut a, instance_a, "outer", &[Val::I32(1)]).unwrap(),
        0
    );
    let unreachable = wasm_a.only_op("a_inner_trap", "unreachable", |op| {
        matches!(op, Operator::Unreachable)
    });
    let mut expected_trap = vec![wasm_a.frame("a_inner_trap", unreachable)];
    expected_trap.extend(a_outer.iter().cloned());
    let b = a.data_mut().b.as_mut().expect("store B is home");
    let (code, frames) = b.data_mut().a_trap.take().expect("A's inner call trapped");
    assert_eq!(code, TrapCode::Unreachable);
    assert_frames(&frames, &expected_trap);
}

// ---------------------------------------------------------------------------------
// Two modules in one walk.

const LIB_WAT: &str = r#"
(module $lib
  (import "host" "walk" (func $walk (result i32)))
  (func $lib_leaf (export "leaf") (result i32) (i32.add (call $walk) (i32.const 1)))
  (func $lib_mid (export "mid") (result i32) (i32.add (call $lib_leaf) (i32.const 1))))
"#;

const APP_WAT: &str = r#"
(module $app
  (import "lib" "mid" (func $mid (result i32)))
  (func $app_inner (result i32) (i32.add (call $mid) (i32.const 1)))
  (func $app_outer (export "main") (result i32) (i32.add (call $app_inner) (i32.const 1))))
"#;

/// A walk whose frames alternate between two modules gets each frame's own module
/// and function names (the walk's lookup, not the last module seen, names a frame).
#[test]
fn a_walk_across_two_modules_names_each_frame_by_its_module() {
    let engine = engine();
    let lib = Wasm::new(LIB_WAT);
    let app = Wasm::new(APP_WAT);
    let lib_module = Module::new(&engine, &lib.bytes).expect("lib compiles");
    let app_module = Module::new(&engine, &app.bytes).expect("app compiles");
    let mut store = Store::new(&engine, None::<Walk>);
    let walk = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Option<Walk>>, (): ()| {
            let walk = Walk::take(&caller);
            *caller.data_mut() = Some(walk);
            40
        },
    )
    .unwrap();
    let lib_instance = Instance::new(&mut store, &lib_module, &[Extern::Func(walk)]).expect("lib");
    let mid = lib_instance.get_func(&store, "mid").expect("mid");
    let app_instance = Instance::new(&mut store, &app_module, &[Extern::Func(mid)]).expect("app");
    assert_eq!(call_i32(&mut store, app_instance, "main", &[]).unwrap(), 44);
    store.data_mut().take().expect("walked").check(&[
        lib.at_call("lib_leaf", "walk"),
        lib.at_call("lib_mid", "lib_leaf"),
        app.at_call("app_inner", "mid"),
        app.at_call("app_outer", "app_inner"),
    ]);
}
