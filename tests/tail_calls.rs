//! Tail calls (`return_call`, `return_call_indirect`): a tail call replaces its
//! caller's frame, so a backtrace shows the callee where the caller was; tail calls to
//! host imports, tail calls that trap, references held by older frames across a
//! collection in a tail-called function (also when the callee needs a larger argument
//! area than its caller had, which moves its frame), and tail recursion in constant
//! stack.
//!
//! Expected offsets come from the module's binary (`common::Wasm`), never written as
//! numbers.

mod common;

use anyhow::{bail, Result};
use common::Wasm;
use framewalk::{Caller, Config, Engine, Extern, ExternRef, Func, Instance, Module, Store, Val};
use std::sync::{Arc, Mutex};
use wasmparser::Operator;

const CANARY: u64 = 0x7a11_ca11_5eed_0001;

struct Payload {
    id: i32,
    canary: u64,
    log: Arc<Mutex<Vec<i32>>>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        assert_eq!(self.canary, CANARY, "payload {} dropped twice", self.id);
        self.canary = 0;
        self.log.lock().unwrap().push(self.id);
    }
}

#[derive(Default)]
struct Data {
    /// Ids of the payloads dropped so far.
    log: Arc<Mutex<Vec<i32>>>,
    /// The drop log right after each collection requested by wasm.
    after_gc: Vec<Vec<i32>>,
    /// Each `frames` call's backtrace as (function index, wasm offset).
    frames: Vec<Vec<(u32, Option<u32>)>>,
}

const WAT: &str = r#"
(module $tail
  (import "host" "make" (func $make (param i32) (result externref)))
  (import "host" "check" (func $check (param externref) (result i32)))
  (import "host" "gc" (func $gc))
  (import "host" "frames" (func $frames (result i32)))
  (import "host" "gc8" (func $gc8 (param i64 i64 i64 i64 i64 i64 i64 i64) (result i64)))
  (type $to_i32 (func (result i32)))
  (table $t 2 funcref)
  (elem (i32.const 0) $leaf $frames)

  ;; $a is replaced by $leaf: the walk from `frames` sees $leaf called from $replace.
  (func $leaf (result i32) (call $frames))
  (func $a (result i32) (return_call $leaf))
  (func $replace (export "replace") (result i32) (i32.add (call $a) (i32.const 0)))

  ;; A tail call to a host import: the host is called from $to_host.
  (func $a_host (result i32) (return_call $frames))
  (func $to_host (export "to_host") (result i32) (i32.add (call $a_host) (i32.const 0)))
  ;; The exported function itself tail-calls the host: no wasm frame is left.
  (func (export "to_host_directly") (result i32) (return_call $frames))

  ;; Through the table: element 0 is $leaf, element 1 the host import.
  (func $a_ind (param i32) (result i32) (return_call_indirect (type $to_i32) (local.get 0)))
  (func $indirect (export "indirect") (param i32) (result i32)
    (i32.add (call $a_ind (local.get 0)) (i32.const 0)))

  ;; A trap in a tail-called function.
  (func $div (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
  (func $a_trap (param i32) (result i32) (return_call $div (local.get 0)))
  (func $trap (export "trap") (param i32) (result i32)
    (i32.add (call $a_trap (local.get 0)) (i32.const 0)))

  ;; Tail recursion, and mutual tail recursion between a function with one parameter
  ;; and one with eight (whose arguments partly go on the stack: each call from $even
  ;; to $odd needs a larger argument area than $even's own).
  (func $count (export "count") (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 0))
      (else (return_call $count (i64.sub (local.get $n) (i64.const 1))))))
  (func $even (export "even") (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 1))
      (else (return_call $odd (i64.sub (local.get $n) (i64.const 1))
        (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4) (i64.const 5)
        (i64.const 6) (i64.const 7)))))
  (func $odd (param $n i64) (param i64 i64 i64 i64 i64 i64 i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 0))
      (else (return_call $even (i64.sub (local.get $n) (i64.const 1))))))
  (func $count_ind (export "count_indirect") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 7))
      (else (return_call $count_ind (i32.sub (local.get $n) (i32.const 1))))))

  ;; References across a collection in a tail-called function. $gc_wide takes its
  ;; reference and seven more arguments (partly on the stack); $hand holds a reference
  ;; it drops before its tail call to $gc_wide; $hold keeps its own reference across
  ;; it all.
  (func $gc_wide (param $r externref) (param i64 i64 i64 i64 i64 i64 i64) (result i32)
    (call $gc)
    (call $check (local.get $r)))
  (func $hand (param $id i32) (result i32)
    (drop (call $make (i32.const 99)))
    (return_call $gc_wide (call $make (local.get $id))
      (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4) (i64.const 5)
      (i64.const 6) (i64.const 7)))
  (func (export "hold") (result i32)
    (local $keep externref)
    (local.set $keep (call $make (i32.const 1)))
    (i32.add (i32.mul (call $hand (i32.const 2)) (i32.const 10))
             (call $check (local.get $keep))))

  ;; The same with a host function as the tail callee: the collection runs from an
  ;; exit whose newest wasm frame is $hold_host's.
  (func $hand_host (result i64)
    (drop (call $make (i32.const 98)))
    (return_call $gc8 (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4)
      (i64.const 5) (i64.const 6) (i64.const 7) (i64.const 8)))
  (func (export "hold_host") (result i32)
    (local $keep externref)
    (local.set $keep (call $make (i32.const 3)))
    (i32.add (i32.wrap_i64 (call $hand_host)) (call $check (local.get $keep))))
)
"#;

fn payload_id(r: Option<&ExternRef>) -> i32 {
    match r {
        None => -1,
        Some(r) => {
            let p = r.data().downcast_ref::<Payload>().expect("a payload");
            assert_eq!(p.canary, CANARY, "payload {} used after it was freed", p.id);
            p.id
        }
    }
}

fn collect(caller: &mut Caller<'_, Data>) {
    caller.gc().expect("the collection walks every frame");
    let log = caller.data().log.lock().unwrap().clone();
    caller.data_mut().after_gc.push(log);
}

struct Fixture {
    wasm: Wasm,
    store: Store<Data>,
    instance: Instance,
}

impl Fixture {
    fn new(config: Config) -> Result<Fixture> {
        let wasm = Wasm::new(WAT);
        let engine = Engine::new(config)?;
        let module = Module::new(&engine, &wasm.bytes)?;
        let mut store = Store::new(&engine, Data::default());
        let make = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Data>, id: i32| -> Option<ExternRef> {
                let log = caller.data().log.clone();
                Some(ExternRef::new(
                    &mut caller,
                    Payload {
                        id,
                        canary: CANARY,
                        log,
                    },
                ))
            },
        )?;
        let check = Func::wrap(
            &mut store,
            |_: Caller<'_, Data>, r: Option<ExternRef>| -> i32 { payload_id(r.as_ref()) },
        )?;
        let gc = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| {
            collect(&mut caller)
        })?;
        let frames = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| -> i32 {
            let frames: Vec<_> = caller
                .backtrace()
                .expect("the walk from a host function")
                .iter()
                .map(|f| (f.func_index, f.wasm_offset))
                .collect();
            let n = frames.len() as i32;
            caller.data_mut().frames.push(frames);
            n
        })?;
        let gc8 = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Data>,
             (a, b, c, d, e, f, g, h): (i64, i64, i64, i64, i64, i64, i64, i64)|
             -> i64 {
                collect(&mut caller);
                a + b + c + d + e + f + g + h
            },
        )?;
        let imports = [make, check, gc, frames, gc8].map(Extern::Func);
        let instance = Instance::new(&mut store, &module, &imports)?;
        Ok(Fixture {
            wasm,
            store,
            instance,
        })
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Result<Val, framewalk::Error> {
        let f = self.instance.get_func(&self.store, name).unwrap();
        let mut results = [Val::I32(0)];
        f.call(&mut self.store, args, &mut results)?;
        Ok(results[0].clone())
    }

    fn at_call(&self, caller: &str, callee: &str) -> (u32, Option<u32>) {
        (self.wasm.func(caller), Some(self.wasm.call(caller, callee)))
    }

    fn last_frames(&self) -> Vec<(u32, Option<u32>)> {
        self.store.data().frames.last().cloned().unwrap_or_default()
    }
}

/// A trap's frames as (function index, wasm offset), newest first.
fn frames_of(trap: &framewalk::Trap) -> Vec<(u32, Option<u32>)> {
    trap.frames()
        .iter()
        .map(|f| (f.func_index, f.wasm_offset))
        .collect()
}

fn fixture() -> Result<Fixture> {
    Fixture::new(Config::default())
}

#[test]
fn a_tail_call_replaces_its_callers_frame() -> Result<()> {
    let mut fx = fixture()?;
    assert_eq!(fx.call("replace", &[])?.i32().unwrap(), 2);
    assert_eq!(
        fx.last_frames(),
        [fx.at_call("leaf", "frames"), fx.at_call("replace", "a")],
        "$a is gone: $leaf sits where it was"
    );
    Ok(())
}

#[test]
fn a_tail_call_to_a_host_import_is_called_from_the_callers_caller() -> Result<()> {
    let mut fx = fixture()?;
    assert_eq!(fx.call("to_host", &[])?.i32().unwrap(), 1);
    assert_eq!(fx.last_frames(), [fx.at_call("to_host", "a_host")]);
    // With no wasm frame left the walk is empty, and the result still gets back.
    assert_eq!(fx.call("to_host_directly", &[])?.i32().unwrap(), 0);
    assert_eq!(fx.last_frames(), []);
    Ok(())
}

#[test]
fn a_tail_call_through_a_table_reaches_wasm_and_host_functions() -> Result<()> {
    let mut fx = fixture()?;
    assert_eq!(fx.call("indirect", &[Val::I32(0)])?.i32().unwrap(), 2);
    assert_eq!(
        fx.last_frames(),
        [
            fx.at_call("leaf", "frames"),
            fx.at_call("indirect", "a_ind")
        ]
    );
    assert_eq!(fx.call("indirect", &[Val::I32(1)])?.i32().unwrap(), 1);
    assert_eq!(fx.last_frames(), [fx.at_call("indirect", "a_ind")]);
    // Out of the table's range, the tail call traps before it replaces the frame that
    // made it: $a_ind is the newest frame, at its `return_call_indirect`.
    let e = fx.call("indirect", &[Val::I32(2)]).unwrap_err();
    let trap = e.as_trap();
    let Some(trap) = trap else {
        bail!("expected a trap, got {e}")
    };
    assert_eq!(trap.code(), framewalk::TrapCode::TableOutOfBounds);
    let tail_call = fx.wasm.only_op("a_ind", "return_call_indirect", |op| {
        matches!(op, Operator::ReturnCallIndirect { .. })
    });
    let frames = frames_of(trap);
    assert_eq!(
        frames,
        [
            (fx.wasm.func("a_ind"), Some(tail_call)),
            fx.at_call("indirect", "a_ind")
        ]
    );
    Ok(())
}

#[test]
fn a_trap_in_a_tail_called_function_has_the_exact_backtrace() -> Result<()> {
    let mut fx = fixture()?;
    assert_eq!(fx.call("trap", &[Val::I32(1)])?.i32().unwrap(), 1);
    let e = fx.call("trap", &[Val::I32(0)]).unwrap_err();
    let Some(trap) = e.as_trap() else {
        bail!("expected a trap, got {e}")
    };
    assert_eq!(trap.code(), framewalk::TrapCode::IntegerDivisionByZero);
    let div = fx
        .wasm
        .only_op("div", "i32.div_s", |op| matches!(op, Operator::I32DivS));
    let frames = frames_of(trap);
    assert_eq!(
        frames,
        [
            (fx.wasm.func("div"), Some(div)),
            fx.at_call("trap", "a_trap")
        ]
    );
    // The store is still usable.
    assert_eq!(fx.call("replace", &[])?.i32().unwrap(), 2);
    Ok(())
}

#[test]
fn tail_recursion_runs_in_constant_stack() -> Result<()> {
    // 16 KiB of wasm stack: a million real calls would need tens of megabytes.
    let mut fx = Fixture::new(Config {
        max_wasm_stack: 16 * 1024,
        ..Config::default()
    })?;
    assert_eq!(fx.call("count", &[Val::I64(1_000_000)])?.i64().unwrap(), 0);
    assert_eq!(
        fx.call("count_indirect", &[Val::I32(1_000_000)])?
            .i32()
            .unwrap(),
        7
    );
    // Between a frame with no stack arguments and one with several.
    assert_eq!(fx.call("even", &[Val::I64(1_000_000)])?.i64().unwrap(), 1);
    assert_eq!(fx.call("even", &[Val::I64(1_000_001)])?.i64().unwrap(), 0);
    Ok(())
}

#[test]
fn references_of_older_frames_survive_a_collection_in_a_tail_callee() -> Result<()> {
    let mut fx = fixture()?;
    // $hold's reference (1) and $gc_wide's argument (2) are live at the collection;
    // the one $hand dropped (99) is not.
    assert_eq!(fx.call("hold", &[])?.i32().unwrap(), 21);
    assert_eq!(fx.store.data().after_gc, [vec![99]]);
    // Host function as the tail callee, with stack arguments: $hold_host's reference (3)
    // survives, 98 does not.
    assert_eq!(fx.call("hold_host", &[])?.i32().unwrap(), 36 + 3);
    let after = &fx.store.data().after_gc[1];
    assert!(after.contains(&98), "{after:?}");
    assert!(!after.contains(&3), "{after:?}");
    Ok(())
}
