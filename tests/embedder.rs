//! API gaps found by porting Wasmtime's integration tests (issue 14), checked from the
//! embedder's side: what a start function's host import sees, host functions that do
//! not write their results, host-side table bulk operations with their reference
//! counts, `ExternRef::data_mut`, typed exports, 16-value tuples, `Store::backtrace`
//! and the library's `framewalk` host module (through its `Linker`).

use anyhow::Result;
use framewalk::host::HostState;
use framewalk::runtime::AsStore;
use framewalk::types::{TableType, ValType};
use framewalk::{
    Caller, Engine, Error, Extern, ExternRef, Func, FuncType, Instance, Limits, Linker, Module,
    Store, Table, TrapCode, Val,
};
use std::cell::RefCell;
use std::rc::Rc;

fn engine() -> Engine {
    Engine::new(Default::default()).expect("engine")
}

fn names(frames: &[framewalk::trap::FrameInfo]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.func_name.as_deref().unwrap_or("?").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// 1. A start function that is an imported host function sees the instance.

#[test]
fn start_host_function_sees_the_instance_being_instantiated() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "host" "start" (func $start))
              (memory (export "memory") 1)
              (global (export "answer") i32 (i32.const 42))
              (data (i32.const 16) "framewalk")
              (start $start))"#,
    )?;
    // What the start function saw: the data segment's bytes and the global's value.
    let mut store = Store::new(&engine, Vec::<String>::new());
    let start = Func::wrap(&mut store, |mut caller: Caller<'_, Vec<String>>, (): ()| {
        let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
            caller.data_mut().push("no memory".into());
            return;
        };
        let answer = caller
            .get_export("answer")
            .and_then(Extern::into_global)
            .map(|g| g.get(&caller).unwrap().i32().unwrap());
        let bytes = memory.data(&caller).unwrap()[16..25].to_vec();
        memory.data_mut(&mut caller).unwrap()[0] = 0x5a;
        let seen = format!("{} {answer:?}", String::from_utf8(bytes).unwrap());
        caller.data_mut().push(seen);
    })?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(start)])?;
    assert_eq!(store.data(), &["framewalk Some(42)".to_string()]);
    // Its write to the memory is the instance's.
    let memory = instance.get_memory(&store, "memory").unwrap();
    assert_eq!(memory.data(&store)?[0], 0x5a);

    // Called from the host, the same function has no calling instance.
    start.call(&mut store, &[], &mut [])?;
    assert_eq!(store.data()[1], "no memory");
    Ok(())
}

#[test]
fn start_host_function_error_fails_instantiation_with_its_message() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module (import "host" "start" (func $start)) (start $start))"#,
    )?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.func_wrap(
        "host",
        "start",
        |caller: Caller<'_, ()>| -> Result<(), String> {
            Err(format!(
                "start saw an instance: {}",
                caller.get_export("missing").is_none()
            ))
        },
    )?;
    let err = linker.instantiate(&mut store, &module).unwrap_err();
    let trap = err.as_trap().expect("a trap");
    assert_eq!(trap.code(), TrapCode::HostError);
    assert_eq!(
        trap.host_error().unwrap().to_string(),
        "start saw an instance: true"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// 2. `Func::new` results the closure never wrote.

const CALLS_HOST: &[u8] = br#"(module $calls
  (import "host" "f" (func $f (param i32) (result i32)))
  (func $call (export "call") (param i32) (result i32) (call $f (local.get 0))))"#;

fn call_dynamic_host(
    write: impl Fn(&[Val], &mut [Val]) + Send + Sync + 'static,
) -> Result<std::result::Result<i32, Error>> {
    let engine = engine();
    let module = Module::new(&engine, CALLS_HOST)?;
    let mut store = Store::new(&engine, ());
    let ty = FuncType::new([ValType::I32], [ValType::I32]);
    let f = Func::new(&mut store, ty, move |_, params, results| {
        write(params, results);
        Ok(())
    })?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(f)])?;
    let call = instance.get_typed_func::<i32, i32>(&store, "call")?;
    Ok(call.call(&mut store, 7))
}

#[test]
fn func_new_result_left_unwritten_is_a_host_error() -> Result<()> {
    let err = call_dynamic_host(|_, _| {})?.unwrap_err();
    let trap = err.as_trap().expect("a trap");
    assert_eq!(trap.code(), TrapCode::HostError);
    assert_eq!(
        trap.host_error().unwrap().to_string(),
        "host function of type (func (param i32) (result i32)) did not write result 0 (i32)"
    );
    // The backtrace starts at the wasm function that called it.
    assert_eq!(names(trap.frames()), ["call"]);
    Ok(())
}

#[test]
fn func_new_results_written_as_zero_or_wrong_type() -> Result<()> {
    // An explicit zero is a result, not a missing one.
    assert_eq!(
        call_dynamic_host(|_, results| results[0] = Val::I32(0))?.unwrap(),
        0
    );
    assert_eq!(
        call_dynamic_host(|params, results| results[0] = Val::I32(params[0].i32().unwrap() * 6))?
            .unwrap(),
        42
    );
    let err = call_dynamic_host(|_, results| results[0] = Val::I64(0))?.unwrap_err();
    assert_eq!(
        err.as_trap().unwrap().host_error().unwrap().to_string(),
        "host function returned i64 where i32 was expected"
    );
    Ok(())
}

#[test]
fn func_new_second_result_unwritten_called_from_the_host() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let ty = FuncType::new([], [ValType::I64, ValType::I64, ValType::F32]);
    let f = Func::new(&mut store, ty, |_, _, results| {
        results[0] = Val::I64(1);
        results[2] = Val::from(2.5f32);
        Ok(())
    })?;
    let mut results = vec![Val::I64(0), Val::I64(0), Val::F32(0)];
    let err = f.call(&mut store, &[], &mut results).unwrap_err();
    assert_eq!(
        err.to_string(),
        "host function of type (func (result i64 i64 f32)) did not write result 1 (i64)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3a. Table::fill and Table::copy, with externref counts.

/// A payload that logs its drop.
struct Logged {
    id: i32,
    log: Rc<RefCell<Vec<i32>>>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.log.borrow_mut().push(self.id);
    }
}

fn logged(store: &mut Store<()>, id: i32, log: &Rc<RefCell<Vec<i32>>>) -> ExternRef {
    ExternRef::new(
        store,
        Logged {
            id,
            log: log.clone(),
        },
    )
}

/// Which payload each slot holds (0 for null), read from the host.
fn slots(store: &Store<()>, t: &Table) -> Vec<i32> {
    (0..t.size(store).unwrap())
        .map(|i| match t.get(store, i).unwrap().unwrap() {
            Val::ExternRef(Some(r)) => r.data().downcast_ref::<Logged>().unwrap().id,
            Val::ExternRef(None) => 0,
            other => panic!("not an externref: {other:?}"),
        })
        .collect()
}

fn extern_table(n: u32) -> TableType {
    TableType {
        element: ValType::ExternRef,
        limits: Limits {
            min: n.into(),
            max: None,
        },
    }
}

#[test]
fn table_fill_and_copy_move_externref_counts() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (table (export "t") 6 externref)
              (func (export "nulls") (result i32)
                (local $i i32) (local $n i32)
                (block $done
                  (loop $next
                    (br_if $done (i32.eq (local.get $i) (table.size 0)))
                    (local.set $n (i32.add (local.get $n)
                      (i32.shl (ref.is_null (table.get 0 (local.get $i))) (local.get $i))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $next)))
                (local.get $n)))"#,
    )?;
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[])?;
    let t = instance.get_table(&store, "t").unwrap();
    let nulls = instance.get_typed_func::<(), i32>(&store, "nulls")?;
    let a = logged(&mut store, 1, &log);
    let b = logged(&mut store, 2, &log);

    t.fill(&mut store, 1, Val::ExternRef(Some(a.clone())), 3)?;
    assert_eq!(slots(&store, &t), [0, 1, 1, 1, 0, 0]);
    assert_eq!(a.owner_count(), 4, "the handle and three slots");
    // Wasm sees the filled slots (bit i set = slot i null).
    assert_eq!(nulls.call(&mut store, ())?, 0b110001);

    // Out of bounds like `table.fill`: an error, nothing written.
    let err = t
        .fill(&mut store, 4, Val::ExternRef(Some(b.clone())), 3)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of bounds: table.fill of 3 elements at 4 in a table of 6"
    );
    assert_eq!(b.owner_count(), 1);
    t.fill(&mut store, 6, Val::ExternRef(Some(b.clone())), 0)?; // empty, at the end
    assert!(matches!(
        t.fill(&mut store, 7, Val::ExternRef(None), 0),
        Err(Error::OutOfBounds(_))
    ));
    assert!(matches!(
        t.fill(&mut store, 0, Val::I32(1), 1),
        Err(Error::TypeMismatch(_))
    ));

    // Overlapping copy within one table: [b, a, a, a, 0, 0] -> copy 0..3 to 2..5.
    t.set(&mut store, 0, Val::ExternRef(Some(b.clone())))?;
    Table::copy(&mut store, &t, 2, &t, 0, 3)?;
    assert_eq!(slots(&store, &t), [2, 1, 2, 1, 1, 0]);
    assert_eq!((a.owner_count(), b.owner_count()), (1 + 3, 1 + 2));

    // Across tables.
    let u = Table::new(&mut store, extern_table(3), Val::ExternRef(None))?;
    Table::copy(&mut store, &u, 1, &t, 1, 2)?;
    assert_eq!(slots(&store, &u), [0, 1, 2]);
    assert_eq!((a.owner_count(), b.owner_count()), (1 + 4, 1 + 3));

    // Bounds of either range, and element types.
    let err = Table::copy(&mut store, &u, 0, &t, 5, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of bounds: table.copy of 2 elements from 5 in a table of 6"
    );
    let err = Table::copy(&mut store, &u, 2, &t, 0, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of bounds: table.copy of 2 elements to 2 in a table of 3"
    );
    let funcs = Table::new(
        &mut store,
        TableType {
            element: ValType::FuncRef,
            limits: Limits { min: 3, max: None },
        },
        Val::FuncRef(None),
    )?;
    let err = Table::copy(&mut store, &u, 0, &funcs, 0, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "type mismatch: table.copy from a table of funcref to a table of externref"
    );
    assert_eq!(slots(&store, &u), [0, 1, 2], "failed copies wrote nothing");

    // Clearing every slot gives the counts back; the last handles free the payloads
    // (after a collection: wasm's `table.get`s put them in the stack-root set).
    t.fill(&mut store, 0, Val::ExternRef(None), 6)?;
    Table::copy(&mut store, &u, 0, &t, 0, 3)?;
    assert_eq!((a.owner_count(), b.owner_count()), (1, 1));
    drop((a, b));
    store.gc()?;
    let mut freed = log.borrow().clone();
    freed.sort();
    assert_eq!(freed, [1, 2]);
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3b. ExternRef::data_mut.

#[test]
fn externref_data_mut_only_for_the_only_owner_and_its_store() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mut r = ExternRef::new(&mut store, 5i64);
    *r.data_mut(&mut store)
        .unwrap()
        .downcast_mut::<i64>()
        .unwrap() += 1;
    assert_eq!(r.data().downcast_ref::<i64>(), Some(&6));

    // Shared with another handle, a table slot, or asked through another store: no.
    let other = r.clone();
    assert!(r.data_mut(&mut store).is_none());
    drop(other);
    assert!(r.data_mut(&mut store).is_some());
    let t = Table::new(&mut store, extern_table(1), Val::ExternRef(Some(r.clone())))?;
    assert!(r.data_mut(&mut store).is_none());
    t.set(&mut store, 0, Val::ExternRef(None))?;
    assert!(r.data_mut(&mut store).is_some());
    let mut elsewhere = Store::new(&engine, ());
    assert!(r.data_mut(&mut elsewhere).is_none());
    Ok(())
}

#[test]
fn externref_data_mut_from_host_functions_while_wasm_holds_it() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "host" "make" (func $make (result externref)))
              (import "host" "bump" (func $bump (param externref) (result i32)))
              (func (export "run") (result i32)
                (local $r externref)
                (local.set $r (call $make))
                (drop (call $bump (local.get $r)))
                (drop (call $bump (local.get $r)))
                (call $bump (local.get $r))))"#,
    )?;
    let mut store = Store::new(&engine, ());
    let make = Func::wrap(&mut store, |mut caller: Caller<'_, ()>, (): ()| {
        Some(ExternRef::new(&mut caller, 40i32))
    })?;
    // Only a wasm local holds the reference: the argument's handle is its one owner.
    let bump = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, ()>, r: Option<ExternRef>| -> i32 {
            let mut r = r.unwrap();
            match r.data_mut(&mut caller) {
                Some(v) => {
                    let v = v.downcast_mut::<i32>().unwrap();
                    *v += 1;
                    *v
                }
                None => -1,
            }
        },
    )?;
    let instance = Instance::new(
        &mut store,
        &module,
        &[Extern::Func(make), Extern::Func(bump)],
    )?;
    let run = instance.get_typed_func::<(), i32>(&store, "run")?;
    assert_eq!(run.call(&mut store, ())?, 43);
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3c. TrapCode and Instance::get_typed_func at the crate root.

#[test]
fn get_typed_func_and_trap_code() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (memory (export "memory") 1)
              (func (export "div") (param i32 i32) (result i32)
                (i32.div_s (local.get 0) (local.get 1))))"#,
    )?;
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[])?;
    let div = instance.get_typed_func::<(i32, i32), i32>(&store, "div")?;
    assert_eq!(div.call(&mut store, (84, 2))?, 42);
    let err = div.call(&mut store, (1, 0)).unwrap_err();
    assert_eq!(
        err.as_trap().map(|t| t.code()),
        Some(TrapCode::IntegerDivisionByZero)
    );

    let err = instance
        .get_typed_func::<(), ()>(&store, "nope")
        .unwrap_err();
    assert!(matches!(&err, Error::UnknownExport(n) if n == "nope"));
    assert_eq!(err.to_string(), "unknown export: `nope`");
    let err = instance
        .get_typed_func::<i64, i32>(&store, "div")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "type mismatch: function is (func (param i32 i32) (result i32)), requested (func (param i64) (result i32))"
    );
    let err = instance
        .get_typed_func::<(), ()>(&store, "memory")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "type mismatch: export `memory` is a memory, not a function"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3d. Tuples of 16 values, as typed parameters, results and host function signatures.

type Sixteen = (
    i32,
    i64,
    f32,
    f64,
    i32,
    i64,
    f32,
    f64,
    i32,
    i64,
    f32,
    f64,
    i32,
    i64,
    f32,
    f64,
);
type SixteenRev = (
    f64,
    f32,
    i64,
    i32,
    f64,
    f32,
    i64,
    i32,
    f64,
    f32,
    i64,
    i32,
    f64,
    f32,
    i64,
    i32,
);

type Eight = (f64, f32, i64, i32, f64, f32, i64, i32);

fn halves(t: SixteenRev) -> (Eight, Eight) {
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p) = t;
    ((a, b, c, d, e, f, g, h), (i, j, k, l, m, n, o, p))
}

#[test]
fn sixteen_value_tuples() -> Result<()> {
    let types = "i32 i64 f32 f64 ".repeat(4);
    let reversed = "f64 f32 i64 i32 ".repeat(4);
    let gets: String = (0..16).rev().map(|i| format!("(local.get {i}) ")).collect();
    let forward: String = (0..16).map(|i| format!("(local.get {i}) ")).collect();
    let wat = format!(
        r#"(module
             (import "host" "rev" (func $rev (param {types}) (result {reversed})))
             (func (export "rev") (param {types}) (result {reversed}) {gets})
             (func (export "via_host") (param {types}) (result {reversed})
               (call $rev {forward})))"#
    );
    let engine = engine();
    let module = Module::new(&engine, wat.as_bytes())?;
    let mut store = Store::new(&engine, ());
    let host_rev = Func::wrap(
        &mut store,
        |_: Caller<'_, ()>,
         (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p): Sixteen|
         -> SixteenRev { (p, o, n, m, l, k, j, i, h, g, f, e, d, c, b, a) },
    )?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(host_rev)])?;
    let args: Sixteen = (
        1, 2, 3.5, 4.25, 5, 6, 7.5, 8.25, 9, 10, 11.5, 12.25, 13, 14, 15.5, 16.25,
    );
    let expected: SixteenRev = (
        16.25, 15.5, 14, 13, 12.25, 11.5, 10, 9, 8.25, 7.5, 6, 5, 4.25, 3.5, 2, 1,
    );
    for name in ["rev", "via_host"] {
        let f = instance.get_typed_func::<Sixteen, SixteenRev>(&store, name)?;
        // (Tuples of more than 12 values implement neither `PartialEq` nor `Debug`.)
        assert_eq!(
            halves(f.call(&mut store, args)?),
            halves(expected),
            "{name}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3e. Store::backtrace.

#[test]
fn store_backtrace_lists_wasm_frames_only_while_wasm_runs() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module $bt
              (import "host" "probe" (func $probe (param i32)))
              (func $inner (param i32) (call $probe (local.get 0)))
              (func $outer (export "outer") (param i32) (call $inner (local.get 0))))"#,
    )?;
    let mut store = Store::new(&engine, Vec::<Vec<String>>::new());
    assert_eq!(store.backtrace()?, [], "no wasm on the stack");
    let probe = Func::wrap(
        &mut store,
        |mut caller: Caller<'_, Vec<Vec<String>>>, fail: i32| -> Result<(), String> {
            let from_store = caller.store_opaque().backtrace().unwrap();
            assert_eq!(from_store, caller.backtrace().unwrap());
            caller.data_mut().push(names(&from_store));
            if fail != 0 {
                return Err("probe failed".into());
            }
            Ok(())
        },
    )?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(probe)])?;
    let outer = instance.get_typed_func::<i32, ()>(&store, "outer")?;
    outer.call(&mut store, 0)?;
    assert_eq!(store.data()[0], ["inner", "outer"]);
    assert_eq!(
        store.backtrace()?,
        [],
        "the activation is gone after the call"
    );
    let err = outer.call(&mut store, 1).unwrap_err();
    assert_eq!(names(err.as_trap().unwrap().frames()), ["inner", "outer"]);
    assert_eq!(store.backtrace()?, [], "and after a trap");
    Ok(())
}

// ---------------------------------------------------------------------------------
// 4. The `framewalk` host module as a library item.

#[test]
fn host_module_provides_the_imports_a_module_asks_for() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "framewalk" "new_ref" (func $new (param i64) (result externref)))
              (import "framewalk" "ref_value" (func $value (param externref) (result i64)))
              (import "framewalk" "live_refs" (func $live (result i64)))
              (import "framewalk" "gc" (func $gc))
              (import "framewalk" "frames" (func $frames (result i32)))
              (func (export "keep") (result i64)
                (local $r externref)
                (local.set $r (call $new (i64.const 40)))
                (drop (call $new (i64.const 7)))
                (call $gc)
                ;; the dropped object is freed, the one in $r is not
                (i64.add (call $value (local.get $r)) (call $live)))
              (func $depth (result i32) (call $frames))
              (func (export "depth") (result i32) (call $depth)))"#,
    )?;
    let mut store = Store::new(&engine, HostState::default());
    let instance = framewalk::host::linker(&engine).instantiate(&mut store, &module)?;
    let keep = instance.get_typed_func::<(), i64>(&store, "keep")?;
    assert_eq!(keep.call(&mut store, ())?, 41);
    assert_eq!(
        store.data().live.get(),
        1,
        "$r is in the root set until a GC"
    );
    store.gc()?;
    assert_eq!(store.data().live.get(), 0);
    let depth = instance.get_typed_func::<(), i32>(&store, "depth")?;
    assert_eq!(depth.call(&mut store, ())?, 2);
    Ok(())
}

#[test]
fn host_module_refuses_imports_it_does_not_have() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, HostState::default());
    let linker = framewalk::host::linker(&engine);
    let mut refused = |wat: &str| -> Result<String> {
        let module = Module::new(&engine, wat.as_bytes())?;
        Ok(linker
            .instantiate(&mut store, &module)
            .unwrap_err()
            .to_string())
    };
    assert_eq!(
        refused(r#"(module (import "env" "f" (func)))"#)?,
        r#"unknown import: "env" "f" (func) has not been defined"#
    );
    assert_eq!(
        refused(r#"(module (import "framewalk" "nope" (func (param i32))))"#)?,
        r#"unknown import: "framewalk" "nope" (func (param i32)) has not been defined"#
    );
    assert_eq!(
        refused(r#"(module (import "framewalk" "gc" (func (param i32))))"#)?,
        r#"incompatible import type for "framewalk" "gc": the module imports (func (param i32)), but the definition is (func)"#
    );
    assert_eq!(
        refused(r#"(module (import "framewalk" "gc" (memory 1)))"#)?,
        r#"incompatible import type for "framewalk" "gc": the module imports (memory 1), but the definition is (func)"#
    );
    // One host function alone, for an embedder's own import list.
    let frames = framewalk::host::func(&mut store, "frames").expect("frames");
    assert_eq!(
        frames.ty(&store)?,
        FuncType::new([], [ValType::I32]),
        "the host module's own type"
    );
    assert!(framewalk::host::func(&mut store, "nope").is_none());
    Ok(())
}

// ---------------------------------------------------------------------------------
// 5. Host functions without parameters, without the `(): ()` parameter.

#[test]
fn wrap_closures_without_parameters() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module $noparams
              (import "host" "answer" (func $answer (result i32)))
              (import "host" "count" (func $count))
              (import "host" "fail" (func $fail (result i64)))
              (func (export "run") (result i32) (call $count) (call $count) (call $answer))
              (func $failing (export "failing") (result i64) (call $fail)))"#,
    )?;
    let mut store = Store::new(&engine, 0i32);
    let answer = Func::wrap(&mut store, |caller: Caller<'_, i32>| 40 + *caller.data())?;
    let count = Func::wrap(&mut store, |mut caller: Caller<'_, i32>| {
        *caller.data_mut() += 1;
    })?;
    let fail = Func::wrap(&mut store, |_: Caller<'_, i32>| -> Result<i64, String> {
        Err("no parameters, still an error".into())
    })?;
    // The old form still works alongside.
    let old_form = Func::wrap(&mut store, |_: Caller<'_, i32>, (): ()| 7i32)?;
    assert_eq!(
        [&answer, &count, &fail, &old_form].map(|f| f.ty(&store).unwrap().to_string()),
        [
            "(func (result i32))",
            "(func)",
            "(func (result i64))",
            "(func (result i32))"
        ]
    );
    let imports = [answer, count, fail].map(Extern::Func);
    let instance = Instance::new(&mut store, &module, &imports)?;
    let run = instance.get_typed_func::<(), i32>(&store, "run")?;
    assert_eq!(run.call(&mut store, ())?, 42);
    let err = instance
        .get_typed_func::<(), i64>(&store, "failing")?
        .call(&mut store, ())
        .unwrap_err();
    let trap = err.as_trap().unwrap();
    assert_eq!(
        trap.host_error().unwrap().to_string(),
        "no parameters, still an error"
    );
    assert_eq!(names(trap.frames()), ["failing"]);
    Ok(())
}

// ---------------------------------------------------------------------------------
// A frame's offset in its function and its module; the compact backtrace.

/// Where each defined function's body starts in `wasm` (module-relative offsets).
fn body_starts(wasm: &[u8]) -> Vec<u32> {
    let mut starts = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::CodeSectionEntry(body)) = payload {
            starts.push(body.range().start as u32);
        }
    }
    starts
}

#[test]
fn frames_know_their_offset_in_the_function_and_their_module() -> Result<()> {
    let engine = engine();
    let wasm = wat::parse_str(
        r#"(module $mod
             (import "host" "look" (func $look (result i32)))
             (func $inner (result i32) (i32.add (i32.const 1) (call $look)))
             (func $outer (export "outer") (result i32) (nop) (call $inner)))"#,
    )?;
    let module = Module::new(&engine, &wasm)?;
    let mut store = Store::new(&engine, Vec::new());
    let look = Func::wrap(&mut store, |mut caller: Caller<'_, Vec<String>>| -> i32 {
        let owned = caller.backtrace().expect("walk");
        let compact = caller.wasm_backtrace().expect("walk");
        let mut seen = Vec::new();
        assert_eq!(compact.len(), owned.len());
        for (f, info) in compact.frames().zip(&owned) {
            // The two forms agree on everything.
            assert_eq!(f.to_frame_info(), *info);
            let module = Module::from_frame_symbols(f.symbols()).expect("a framewalk module");
            seen.push(format!(
                "{}!{} wasm {:?} func {:?} module {}",
                f.module_name().unwrap_or("?"),
                f.func_name().unwrap_or("?"),
                f.wasm_offset(),
                f.func_offset(),
                module.name().unwrap_or("?"),
            ));
        }
        *caller.data_mut() = seen;
        compact.len() as i32
    })?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(look)])?;
    let outer = instance.get_typed_func::<(), i32>(&store, "outer")?;
    assert_eq!(outer.call(&mut store, ())?, 3);
    // The call instructions: `call $look` is the third byte of $inner's code after its
    // locals (i32.const 1 is two bytes), `call $inner` the second of $outer's (after
    // nop); a body starts with its locals count (one byte, 0 here).
    let starts = body_starts(&wasm);
    let (inner, outer) = (starts[0], starts[1]);
    assert_eq!(
        *store.data(),
        [
            format!(
                "mod!inner wasm {:?} func Some(3) module mod",
                Some(inner + 3)
            ),
            format!(
                "mod!outer wasm {:?} func Some(2) module mod",
                Some(outer + 2)
            ),
        ]
    );
    Ok(())
}

#[test]
fn funcrefs_are_typed_parameters_and_results() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "host" "pick" (func $pick (param i32) (result funcref)))
              (type $to_i32 (func (result i32)))
              (table $t 2 funcref)
              (elem (i32.const 0) $seven $eight)
              (func $seven (result i32) (i32.const 7))
              (func $eight (result i32) (i32.const 8))
              (func (export "get") (param i32) (result funcref) (table.get $t (local.get 0)))
              ;; Calls the function the host picks, through the table.
              (func (export "call_picked") (param i32) (result i32)
                (table.set $t (i32.const 1) (call $pick (local.get 0)))
                (call_indirect (type $to_i32) (i32.const 1))))"#,
    )?;
    let mut store = Store::new(&engine, Vec::<Func>::new());
    let pick = Func::wrap(
        &mut store,
        |caller: Caller<'_, Vec<Func>>, i: i32| -> Option<Func> {
            caller.data().get(i as usize).copied()
        },
    )?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(pick)])?;
    let get = instance.get_typed_func::<i32, Option<Func>>(&store, "get")?;
    let seven = get.call(&mut store, 0)?.expect("slot 0 holds $seven");
    let eight = get.call(&mut store, 1)?.expect("slot 1 holds $eight");
    assert_eq!(seven.typed::<(), i32>(&store)?.call(&mut store, ())?, 7);
    assert_eq!(eight.typed::<(), i32>(&store)?.call(&mut store, ())?, 8);
    // Host results of type funcref go back into wasm.
    *store.data_mut() = vec![eight, seven];
    let call_picked = instance.get_typed_func::<i32, i32>(&store, "call_picked")?;
    assert_eq!(call_picked.call(&mut store, 0)?, 8);
    assert_eq!(call_picked.call(&mut store, 1)?, 7);
    // A function of another store is refused as an argument.
    let mut other = Store::new(&engine, Vec::<Func>::new());
    let foreign = Func::wrap(&mut other, |_: Caller<'_, Vec<Func>>| -> i32 { 0 })?;
    let set = Module::new(
        &engine,
        br#"(module (table $t 1 funcref)
              (func (export "set") (param funcref) (table.set $t (i32.const 0) (local.get 0))))"#,
    )?;
    let set =
        Instance::new(&mut store, &set, &[])?.get_typed_func::<Option<Func>, ()>(&store, "set")?;
    assert!(matches!(
        set.call(&mut store, Some(foreign)),
        Err(Error::WrongStore)
    ));
    set.call(&mut store, None)?;
    Ok(())
}

/// A global given a value of another type says both types, with their articles.
#[test]
fn a_global_of_the_wrong_type_names_both_types() {
    let engine = framewalk::Engine::new(Default::default()).unwrap();
    let mut store = framewalk::Store::new(&engine, ());
    let ty = framewalk::GlobalType {
        content: ValType::ExternRef,
        mutable: true,
    };
    let err = framewalk::Global::new(&mut store, ty, framewalk::Val::I32(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "type mismatch: an i32 value for an externref global"
    );
}

// ---------------------------------------------------------------------------------
// 64-bit memories (memory64) from the host's side.

/// A host-made 64-bit memory: its type says so, `size` and `grow` count pages in u64,
/// a module importing an i64 memory uses it (and sees the host's writes), a module
/// importing an i32 memory does not link against it (nor an i64 import against a
/// 32-bit memory), and sizes beyond what framewalk reserves are resource errors.
#[test]
fn a_host_made_64_bit_memory_links_only_as_a_64_bit_import() -> Result<()> {
    use framewalk::{Memory, MemoryType};
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mem = Memory::new(&mut store, MemoryType::new64(1, Some(3)))?;
    assert_eq!(mem.ty(&store)?, MemoryType::new64(1, Some(3)));
    assert!(mem.ty(&store)?.is_64);
    assert_eq!(mem.size(&store)?, 1);
    assert_eq!(mem.grow(&mut store, 1)?, 1);
    assert_eq!(mem.size(&store)?, 2);
    assert!(matches!(mem.grow(&mut store, 2), Err(Error::Resource(_))));
    assert!(matches!(
        mem.grow(&mut store, u64::MAX),
        Err(Error::Resource(_))
    ));
    mem.data_mut(&mut store)?[0x1_fff8..].copy_from_slice(&7u64.to_le_bytes());

    let user = Module::new(
        &engine,
        br#"(module
              (import "host" "mem" (memory i64 1))
              (func (export "read") (param i64) (result i64) (i64.load (local.get 0)))
              (func (export "size") (result i64) (memory.size)))"#,
    )?;
    let instance = Instance::new(&mut store, &user, &[Extern::Memory(mem)])?;
    let read = instance.get_typed_func::<i64, i64>(&store, "read")?;
    assert_eq!(read.call(&mut store, 0x1_fff8)?, 7);
    let size = instance.get_typed_func::<(), i64>(&store, "size")?;
    assert_eq!(size.call(&mut store, ())?, 2);
    let Err(Error::Trap(trap)) = read.call(&mut store, 0x1_fffc) else {
        panic!("a read straddling the end traps")
    };
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(trap.fault_address(), Some(0x2_0000), "{trap}");

    let wants_32 = Module::new(&engine, br#"(module (import "host" "mem" (memory 1)))"#)?;
    let e = Instance::new(&mut store, &wants_32, &[Extern::Memory(mem)])
        .expect_err("an i32 import does not take a 64-bit memory");
    assert!(matches!(e, Error::Link { .. }), "{e}");
    let mem32 = Memory::new(&mut store, MemoryType::new(1, None))?;
    assert!(!mem32.ty(&store)?.is_64);
    let e = Instance::new(&mut store, &user, &[Extern::Memory(mem32)])
        .expect_err("an i64 import does not take a 32-bit memory");
    assert!(matches!(e, Error::Link { .. }), "{e}");

    for ty in [
        MemoryType::new64(1 << 20 | 1, None),
        MemoryType::new64(1 << 40, Some(1 << 41)),
        MemoryType::new(65537, None),
        MemoryType::new64(2, Some(1)),
    ] {
        let e = Memory::new(&mut store, ty).expect_err("cannot be made");
        assert!(matches!(e, Error::Resource(_)), "{ty:?}: {e}");
    }
    Ok(())
}

/// A 32-bit and a 64-bit memory in one module (multi-memory with memory64):
/// `memory.copy` between them takes each address in its memory's index type and the
/// length as an i32; `memory.init` and active data segments take i64 addresses in the
/// 64-bit memory, and one above 4 GiB is out of bounds rather than wrapped.
#[test]
fn copies_between_a_32_bit_and_a_64_bit_memory() -> Result<()> {
    let engine = engine();
    let wat = r#"(module
          (memory $m32 (export "m32") 1)
          (memory $m64 (export "m64") i64 1)
          (data (memory $m64) (i64.const 0xfff0) "abcd")
          (data $seg "wxyz")
          (func (export "to32") (param $dst i32) (param $src i64) (param $len i32)
            (memory.copy $m32 $m64 (local.get $dst) (local.get $src) (local.get $len)))
          (func (export "to64") (param $dst i64) (param $src i32) (param $len i32)
            (memory.copy $m64 $m32 (local.get $dst) (local.get $src) (local.get $len)))
          (func (export "init64") (param $dst i64)
            (memory.init $m64 $seg (local.get $dst) (i32.const 0) (i32.const 4))))"#;
    let module = Module::new(&engine, wat.as_bytes())?;
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[])?;
    let m32 = instance.get_memory(&store, "m32").expect("m32");
    let m64 = instance.get_memory(&store, "m64").expect("m64");
    let to32 = instance.get_typed_func::<(i32, i64, i32), ()>(&store, "to32")?;
    let to64 = instance.get_typed_func::<(i64, i32, i32), ()>(&store, "to64")?;
    let init64 = instance.get_typed_func::<i64, ()>(&store, "init64")?;

    to32.call(&mut store, (0x10, 0xfff0, 4))?;
    assert_eq!(&m32.data(&store)?[0x10..0x14], b"abcd");
    to64.call(&mut store, (0x20, 0x10, 4))?;
    assert_eq!(&m64.data(&store)?[0x20..0x24], b"abcd");
    init64.call(&mut store, 0xfffc)?;
    assert_eq!(&m64.data(&store)?[0xfffc..], b"wxyz");
    for (what, result) in [
        ("to32 from 4 GiB", to32.call(&mut store, (0x10, 1 << 32, 4))),
        (
            "to32 past the end",
            to32.call(&mut store, (0x10, 0xfffe, 4)),
        ),
        ("to64 to 4 GiB", to64.call(&mut store, (1 << 32, 0x10, 4))),
        ("init64 at 4 GiB", init64.call(&mut store, 1 << 32)),
        ("init64 at -4", init64.call(&mut store, -4)),
    ] {
        match result {
            Err(Error::Trap(t)) => assert_eq!(t.code(), TrapCode::MemoryOutOfBounds, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(&m32.data(&store)?[..0x10], [0; 0x10]);
    assert_eq!(&m64.data(&store)?[..0x10], [0; 0x10]);

    // An active segment above 4 GiB would land at 0 if the offset were truncated.
    let far = Module::new(
        &engine,
        br#"(module (memory (export "m") i64 1) (data (i64.const 0x100000000) "x"))"#,
    )?;
    match Instance::new(&mut store, &far, &[]) {
        Err(Error::Trap(t)) => assert_eq!(t.code(), TrapCode::MemoryOutOfBounds),
        other => panic!("a segment at 4 GiB: {other:?}"),
    }
    Ok(())
}
