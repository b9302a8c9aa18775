//! Two runtimes in one process and one thread: framewalk's own wasm runtime and the
//! JIT example's language VM (`examples/jit/`, on the drop-in layers alone), each with
//! its own code registry, activation list, root set and trap hooks, sharing the
//! process-wide trap handlers and one stack.
//!
//! Each round interleaves: a wasm collection from a host function, two wasm traps, the
//! VM's collections and traps from the host, and then a wasm function whose host
//! function runs the VM (which collects, walks and traps) and collects the wasm store
//! too, with both runtimes' activations on the stack. Every collection's roots and
//! frees, every backtrace and every trap is exact, each runtime gets only its own traps
//! and frames, and every payload of both is dropped exactly once.

#[path = "../examples/jit/main.rs"]
#[allow(dead_code, reason = "this test uses part of the example's API")]
mod jit;

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{assert_frames, render_trap, Expected, Wasm};
use framewalk::trap::{FrameInfo, TrapCode};
use framewalk::{Caller, Engine, Error, Extern, ExternRef, Func, Instance, Module, Store, Val};
use jit::{BacktraceFrame, CallError, Collection, FrameRoots, TrapReport, Value, Vm};
use wasmparser::Operator;

const ROUNDS: i32 = 50;

const WAT: &str = r#"
(module $multi
  (import "host" "make" (func $make (param i32) (result externref)))
  (import "host" "gc" (func $gc))
  (import "host" "check" (func $check (param externref) (result i32)))
  (import "host" "jit" (func $jit (param i32) (result i32)))

  ;; Two references held in locals across a collection, a third dropped before it.
  (func $hold (export "hold") (param $n i32) (result i32)
    (local $a externref) (local $b externref)
    (local.set $a (call $make (local.get $n)))
    (local.set $b (call $make (i32.add (local.get $n) (i32.const 1))))
    (drop (call $make (i32.add (local.get $n) (i32.const 2))))
    (call $gc)
    (i32.add (call $check (local.get $a)) (call $check (local.get $b))))

  (func $do_unreachable (result i32) (unreachable))
  (func $divide (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func $unreachable (export "unreachable") (result i32) (call $do_unreachable))
  (func $divide_by_zero (export "divide_by_zero") (result i32)
    (call $divide (i32.const 1) (i32.const 0)))

  ;; Holds a reference across the host function that runs the JIT VM, then divides
  ;; 1 by what it returned (0: a trap).
  (func $bridge (export "bridge") (param $n i32) (result i32)
    (local $a externref) (local $q i32)
    (local.set $a (call $make (local.get $n)))
    (local.set $q (call $jit (local.get $n)))
    (i32.add (call $check (local.get $a)) (call $divide (i32.const 1) (local.get $q))))
)
"#;

/// The VM's program. Line numbers matter: backtraces name them.
const JIT_SOURCE: &str = "\
(module lib
  (fn ratio ((a int) (b int)) int (/ a b))
  (fn check ((n int)) int
    (if (< n 0) (trap 7) (ratio 1000 n))))
(module app
  (fn main ((n int)) int
    (let ((a (new n))
          (junk (new (+ n 1))))
      (+ (inner (+ n 2)) (value a))))
  (fn inner ((n int)) int
    (let ((d (new n)))
      (+ (gc) (+ (backtrace) (value d)))))
  (fn boom ((n int)) int
    (let ((r (new (+ 900 n))))
      (+ (reenter deep n) (value r))))
  (fn deep ((n int)) int
    (let ((q (new (- 950 n))))
      (+ (lib.check n) (value q)))))
";

/// A wasm payload: records its drop.
struct Payload {
    id: i32,
    drops: Rc<RefCell<Vec<i32>>>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.drops.borrow_mut().push(self.id);
    }
}

/// What the `jit` host function saw, with the wasm frames and the VM both live.
struct Nested {
    /// The wasm store's walk from the host function.
    wasm_frames: Vec<FrameInfo>,
    /// The owners of the wasm store's activations.
    wasm_owners: Vec<usize>,
    /// The VM's `app.main` result.
    main: Result<i64, String>,
    /// The VM's trap.
    trap: Option<TrapReport>,
    /// The VM's collection from the host function (no JIT frames live).
    collection: Collection,
    /// Wasm payloads dropped by the wasm collection made from the host function.
    wasm_freed: Vec<i32>,
}

struct Data {
    drops: Rc<RefCell<Vec<i32>>>,
    made: Vec<i32>,
    /// The owner ids of the references `make` made.
    ref_owners: Vec<usize>,
    /// The VM stays in the box `Vm::new` made: its vmctxs and its owner id are its
    /// address, so it must not move into an `Rc` of its own.
    #[allow(
        clippy::redundant_allocation,
        reason = "the VM must not move out of its box"
    )]
    vm: Rc<Box<Vm>>,
    /// What `jit` passes to `app.main`, and returns to wasm.
    jit_arg: i64,
    jit_result: i32,
    nested: Vec<Nested>,
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn jit_frame(function: &str, activation: usize, roots: &[i64]) -> FrameRoots {
    FrameRoots {
        function: function.to_string(),
        activation,
        roots: roots.to_vec(),
    }
}

fn at(function: &str, line: u32, activation: usize) -> BacktraceFrame {
    BacktraceFrame {
        function: function.to_string(),
        line: Some(line),
        activation,
    }
}

/// The collection inside `app.inner` of `app.main(m)`: `a` and `d` are live, the junk
/// reference is freed.
fn main_collection(m: i64) -> Collection {
    Collection {
        frames: vec![
            jit_frame("app.inner", 0, &[m + 2]),
            jit_frame("app.main", 0, &[m]),
        ],
        freed: vec![m + 1],
        error: None,
    }
}

fn main_backtrace() -> Result<Vec<BacktraceFrame>, framewalk::unwind::WalkError> {
    Ok(vec![at("app.inner", 12, 0), at("app.main", 9, 0)])
}

/// `app.boom(0)`'s trap: the `idiv` of lib.ratio, two activations deep.
fn assert_division_trap(trap: &TrapReport) {
    assert_eq!(trap.code, TrapCode::IntegerDivisionByZero);
    assert_eq!(trap.message, "integer divide by zero");
    assert_eq!(
        trap.backtrace,
        Ok(vec![
            at("lib.ratio", 2, 0),
            at("lib.check", 4, 0),
            at("app.deep", 18, 0),
            at("app.boom", 15, 1),
        ])
    );
}

fn vm_trap(vm: &Vm, n: i64) -> TrapReport {
    match vm.call("app", "boom", &[Value::Int(n)]) {
        Err(CallError::Trap(t)) => t,
        other => panic!("app.boom({n}) should trap: {other:?}"),
    }
}

fn vm_main(vm: &Vm, m: i64) -> Result<i64, String> {
    match vm.call("app", "main", &[Value::Int(m)]) {
        Ok(Value::Int(v)) => Ok(v),
        other => Err(format!("{other:?}")),
    }
}

fn wasm_trap(
    store: &mut Store<Data>,
    instance: Instance,
    name: &str,
    arg: &[Val],
) -> framewalk::Trap {
    let f = instance.get_func(&*store, name).expect(name);
    let mut results = [Val::I32(0)];
    match f.call(&mut *store, arg, &mut results) {
        Err(Error::Trap(t)) => t,
        Ok(()) => panic!("{name} returned {:?} instead of trapping", results[0]),
        Err(e) => panic!("{name} failed without a trap: {e}"),
    }
}

fn wasm_call(store: &mut Store<Data>, instance: Instance, name: &str, arg: i32) -> i32 {
    let f = instance.get_func(&*store, name).expect(name);
    let mut results = [Val::I32(0)];
    f.call(&mut *store, &[Val::I32(arg)], &mut results)
        .unwrap_or_else(|e| panic!("{name}({arg}): {e}"));
    results[0].i32().expect("i32 result")
}

fn assert_wasm_trap(trap: &framewalk::Trap, code: TrapCode, message: &str, expected: &[Expected]) {
    assert_eq!(trap.code(), code);
    assert!(trap.host_error().is_none());
    assert_frames(trap.frames(), expected);
    assert_eq!(trap.to_string(), render_trap(message, expected));
}

#[test]
fn two_runtimes_interleave_collections_and_traps_on_one_thread() {
    let wasm = Wasm::new(WAT);
    let engine = Engine::new(Default::default()).expect("engine");
    let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
    let vm: Rc<Box<Vm>> = Rc::new(Vm::new(JIT_SOURCE, jit::Faults::default()).expect("VM"));
    let drops = Rc::new(RefCell::new(Vec::new()));
    let mut store = Store::new(
        &engine,
        Data {
            drops: drops.clone(),
            made: Vec::new(),
            ref_owners: Vec::new(),
            vm: vm.clone(),
            jit_arg: 0,
            jit_result: 0,
            nested: Vec::new(),
        },
    );

    let make = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Data>, id: i32| -> Option<ExternRef> {
            let drops = caller.data().drops.clone();
            let r = ExternRef::new(&mut caller, Payload { id, drops });
            caller.data_mut().made.push(id);
            caller.data_mut().ref_owners.push(r.owner());
            Some(r)
        },
    )
    .unwrap();
    let gc = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| {
        caller.gc().expect("the wasm walk succeeds");
    })
    .unwrap();
    let check = Func::wrap(
        &mut store,
        |_: Caller<'_, Data>, r: Option<ExternRef>| -> i32 {
            r.expect("not null")
                .data()
                .downcast_ref::<Payload>()
                .expect("a payload")
                .id
        },
    )
    .unwrap();
    // Runs the VM under a wasm frame: a call that collects and walks, a trap two VM
    // activations deep, a VM collection; then a wasm collection.
    let run_jit = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, _n: i32| -> i32 {
        let wasm_frames = caller.force_backtrace().expect("the wasm walk succeeds");
        let wasm_owners = caller
            .with_activation_stack(|acts, _| acts.iter().map(|a| a.owner).collect())
            .unwrap_or_default();
        let vm = caller.data().vm.clone();
        let main = vm_main(&vm, caller.data().jit_arg);
        let trap = match vm.call("app", "boom", &[Value::Int(0)]) {
            Err(CallError::Trap(t)) => Some(t),
            _ => None,
        };
        let collection = vm.collect_now();
        let before = caller.data().drops.borrow().len();
        caller.gc().expect("the wasm walk succeeds");
        let wasm_freed = caller.data().drops.borrow()[before..].to_vec();
        caller.data_mut().nested.push(Nested {
            wasm_frames,
            wasm_owners,
            main,
            trap,
            collection,
            wasm_freed,
        });
        caller.data().jit_result
    })
    .unwrap();
    let imports = [make, gc, check, run_jit].map(Extern::Func);
    let instance = Instance::new(&mut store, &module, &imports).expect("instantiates");

    let unreachable_frames = [
        wasm.frame(
            "do_unreachable",
            wasm.only_op("do_unreachable", "unreachable", |op| {
                matches!(op, Operator::Unreachable)
            }),
        ),
        wasm.at_call("unreachable", "do_unreachable"),
    ];
    let div_s = wasm.only_op("divide", "i32.div_s", |op| matches!(op, Operator::I32DivS));
    let divide_frames = [
        wasm.frame("divide", div_s),
        wasm.at_call("divide_by_zero", "divide"),
    ];
    let bridge_trap_frames = [
        wasm.frame("divide", div_s),
        wasm.at_call("bridge", "divide"),
    ];
    let bridge_walk = [wasm.at_call("bridge", "jit")];

    let mut jit_made: Vec<i64> = Vec::new();
    let mut wasm_collections: u64 = 0;
    let mut wasm_freed: u64 = 0;
    let mut jit_collections: u64 = 0;
    for round in 0..ROUNDS {
        // Wasm: a collection from a host function frees only the dropped reference;
        // one from the host then frees what `hold`'s frames held.
        let n = round * 10 + 1;
        let before = drops.borrow().len();
        assert_eq!(wasm_call(&mut store, instance, "hold", n), 2 * n + 1);
        assert_eq!(drops.borrow()[before..], [n + 2], "round {round}");
        store.gc().expect("no wasm frames");
        assert_eq!(sorted(drops.borrow()[before..].to_vec()), [n, n + 1, n + 2]);
        wasm_collections += 2;
        wasm_freed += 3;

        // Wasm traps, with their exact backtraces.
        let t = wasm_trap(&mut store, instance, "unreachable", &[]);
        assert_wasm_trap(
            &t,
            TrapCode::Unreachable,
            "wasm trap: unreachable",
            &unreachable_frames,
        );
        let t = wasm_trap(&mut store, instance, "divide_by_zero", &[]);
        assert_wasm_trap(
            &t,
            TrapCode::IntegerDivisionByZero,
            "wasm trap: integer divide by zero",
            &divide_frames,
        );

        // The VM from the host: a collection and a walk in a call, two traps, and
        // collections with no VM frames.
        let m = 1000 * (i64::from(round) + 1);
        let log_at = vm.log().collections.len();
        let backtraces_at = vm.log().backtraces.len();
        assert_eq!(vm_main(&vm, m), Ok(2 * m + 4));
        jit_made.extend([m, m + 1, m + 2]);
        assert_eq!(
            vm.collect_now(),
            Collection {
                frames: vec![],
                freed: vec![m, m + 2],
                error: None
            }
        );
        assert_division_trap(&vm_trap(&vm, 0));
        let t = vm_trap(&vm, -1);
        assert_eq!(t.code, TrapCode::Custom(7));
        assert_eq!(
            t.backtrace,
            Ok(vec![
                at("lib.check", 4, 0),
                at("app.deep", 18, 0),
                at("app.boom", 15, 1)
            ])
        );
        jit_made.extend([900, 950, 899, 951]);
        assert_eq!(vm.collect_now().freed, [899, 900, 950, 951]);
        let log = vm.log();
        assert_eq!(log.collections[log_at], main_collection(m));
        assert_eq!(log.backtraces[backtraces_at..], [main_backtrace()]);
        jit_collections += 3;

        // Both on one stack: wasm `bridge` holds a reference across a host function
        // that runs the VM and collects the wasm store.
        let n = round * 10 + 5;
        let m = 1000 * (i64::from(round) + 1) + 500;
        let q = round % 2;
        store.data_mut().jit_arg = m;
        store.data_mut().jit_result = q;
        let log_at = vm.log().collections.len();
        let before = drops.borrow().len();
        if q == 0 {
            let t = wasm_trap(&mut store, instance, "bridge", &[Val::I32(n)]);
            assert_wasm_trap(
                &t,
                TrapCode::IntegerDivisionByZero,
                "wasm trap: integer divide by zero",
                &bridge_trap_frames,
            );
        } else {
            assert_eq!(wasm_call(&mut store, instance, "bridge", n), n + 1);
        }
        jit_made.extend([m, m + 1, m + 2, 900, 950]);
        let nested = store.data_mut().nested.pop().expect("jit ran");
        // The wasm walk from the host function sees only the wasm frame...
        assert_frames(&nested.wasm_frames, &bridge_walk);
        // ...the VM's collections and trap only VM frames (the wasm frame and the host
        // frames between are never read)...
        assert_eq!(nested.main, Ok(2 * m + 4));
        assert_eq!(vm.log().collections[log_at], main_collection(m));
        assert_division_trap(&nested.trap.expect("the VM trapped"));
        assert_eq!(
            nested.collection,
            Collection {
                frames: vec![],
                freed: vec![900, 950, m, m + 2],
                error: None
            }
        );
        // ...and the wasm collection keeps what `bridge` holds.
        assert_eq!(nested.wasm_freed, [] as [i32; 0]);
        // Separate owners: the VM's id is not the wasm store's.
        assert_eq!(nested.wasm_owners.len(), 1);
        assert_ne!(nested.wasm_owners[0], vm.owner());
        assert_eq!(drops.borrow().len(), before, "nothing of wasm freed yet");
        store.gc().expect("no wasm frames");
        assert_eq!(drops.borrow()[before..], [n]);
        wasm_collections += 2;
        wasm_freed += 1;
        jit_collections += 2;

        assert_eq!(store.gc_stats().collections, wasm_collections);
        assert_eq!(store.gc_stats().freed, wasm_freed);
        assert_eq!(vm.stats().collections, jit_collections);
    }

    // Every reference made for the wasm store has its owner id, which is not the VM's.
    let owners = &store.data().ref_owners;
    assert!(owners.iter().all(|o| *o == owners[0] && *o != vm.owner()));
    // Every wasm payload dropped exactly once (ids are unique).
    let made = sorted(store.data().made.clone());
    drop(store);
    assert_eq!(sorted(drops.borrow().clone()), made);
    // Every VM payload dropped exactly once (900 and 950 are made twice a round).
    let vm = Rc::try_unwrap(vm).ok().expect("the store let go of the VM");
    assert_eq!(sorted(vm.finish()), sorted(jit_made));
}
