//! `Linker`: imports resolved by module and name. Host functions defined once and
//! made in every store that imports them, values of one store, one instance's exports
//! wired to another module's imports, shadowing, and the errors a user reads.

use anyhow::Result;
use framewalk::types::ExternType;
use framewalk::{
    Caller, Engine, Error, Extern, Func, FuncType, Global, GlobalType, Instance, Limits, LinkError,
    Linker, Memory, MemoryType, Module, Store, Table, TableType, TrapCode, Val, ValType,
};

fn engine() -> Engine {
    Engine::new(Default::default()).expect("engine")
}

/// The error's message, for a result that must be an error.
fn message<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn func_wrap_and_func_new_imports_are_called_with_their_results() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "env" "add" (func $add (param i32 i32) (result i32)))
              (import "env" "answer" (func $answer (result i64)))
              (import "math" "mul" (func $mul (param i64 i64) (result i64)))
              (func (export "run") (result i64)
                (call $mul
                  (i64.extend_i32_s (call $add (i32.const 20) (i32.const 3)))
                  (call $answer))))"#,
    )?;
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(
            "env",
            "add",
            |mut caller: Caller<'_, u32>, (a, b): (i32, i32)| {
                *caller.data_mut() += 1;
                a + b
            },
        )?
        .func_wrap("env", "answer", |mut caller: Caller<'_, u32>| -> i64 {
            *caller.data_mut() += 1;
            42
        })?
        .func_new(
            "math",
            "mul",
            FuncType::new([ValType::I64, ValType::I64], [ValType::I64]),
            |mut caller, params, results| {
                *caller.data_mut() += 1;
                let (Val::I64(a), Val::I64(b)) = (&params[0], &params[1]) else {
                    return Err("mul: not two i64s".into());
                };
                results[0] = Val::I64(a * b);
                Ok(())
            },
        )?;
    let mut store = Store::new(&engine, 0u32);
    let instance = linker.instantiate(&mut store, &module)?;
    let run = instance.get_typed_func::<(), i64>(&store, "run")?;
    assert_eq!(run.call(&mut store, ())?, 23 * 42);
    assert_eq!(*store.data(), 3, "each host function ran once");
    Ok(())
}

#[test]
fn defined_memory_table_and_globals_are_the_imports() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module
              (import "env" "memory" (memory 1))
              (import "env" "table" (table 2 funcref))
              (import "env" "base" (global $base i32))
              (import "env" "counter" (global $counter (mut i64)))
              (type $to_i32 (func (result i32)))
              (func (export "run") (result i32)
                (i32.store8 (global.get $base) (i32.const 0x5a))
                (global.set $counter (i64.add (global.get $counter) (i64.const 1)))
                (call_indirect (type $to_i32) (i32.const 1))))"#,
    )?;
    let mut store = Store::new(&engine, ());
    let memory = Memory::new(&mut store, MemoryType::new(1, None))?;
    let seven = Func::wrap(&mut store, |_: Caller<'_, ()>| 7i32)?;
    let table = Table::new(
        &mut store,
        TableType {
            element: ValType::FuncRef,
            limits: Limits { min: 2, max: None },
        },
        Val::FuncRef(None),
    )?;
    table.set(&mut store, 1, Val::FuncRef(Some(seven)))?;
    let immutable = |content| GlobalType {
        content,
        mutable: false,
    };
    let base = Global::new(&mut store, immutable(ValType::I32), Val::I32(100))?;
    let counter = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I64,
            mutable: true,
        },
        Val::I64(41),
    )?;
    let mut linker = Linker::new(&engine);
    linker
        .define(&store, "env", "memory", memory)?
        .define(&store, "env", "table", table)?
        .define(&store, "env", "base", base)?
        .define(&store, "env", "counter", counter)?;
    let instance = linker.instantiate(&mut store, &module)?;
    let run = instance.get_typed_func::<(), i32>(&store, "run")?;
    assert_eq!(run.call(&mut store, ())?, 7, "the table's function");
    assert_eq!(
        memory.data(&store)?[100],
        0x5a,
        "written at the global's offset"
    );
    assert_eq!(counter.get(&store)?.i64(), Some(42));
    // `get` hands back what was defined.
    let got = linker.get(&mut store, "env", "counter").unwrap();
    assert_eq!(got.into_global(), Some(counter));
    assert!(linker.get(&mut store, "env", "nothing").is_none());
    Ok(())
}

const LIB: &[u8] = br#"(module $lib
  (func $double (export "double") (param i32) (result i32)
    (i32.mul (local.get 0) (i32.const 2)))
  (func $fail (export "fail") (param i32) (result i32)
    (if (i32.eqz (local.get 0)) (then unreachable))
    (local.get 0))
  (memory (export "memory") 1)
  (global (export "seed") i32 (i32.const 5)))"#;

const APP: &[u8] = br#"(module $app
  (import "lib" "double" (func $double (param i32) (result i32)))
  (import "lib" "fail" (func $fail (param i32) (result i32)))
  (import "lib" "memory" (memory 1))
  (import "lib" "seed" (global $seed i32))
  (func $main (export "main") (result i32)
    (i32.store (i32.const 0) (call $double (global.get $seed)))
    (i32.load (i32.const 0)))
  (func $calls_fail (param i32) (result i32) (call $fail (local.get 0)))
  (func $crash (export "crash") (param i32) (result i32)
    (call $calls_fail (local.get 0))))"#;

#[test]
fn instance_exports_become_another_modules_imports() -> Result<()> {
    let engine = engine();
    let lib = Module::new(&engine, LIB)?;
    let app = Module::new(&engine, APP)?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let lib_instance = linker.instantiate(&mut store, &lib)?;
    linker.instance(&store, "lib", lib_instance)?;
    let app_instance = linker.instantiate(&mut store, &app)?;

    let main = app_instance.get_typed_func::<(), i32>(&store, "main")?;
    assert_eq!(main.call(&mut store, ())?, 10);
    // The memory written is the library's.
    let lib_memory = lib_instance.get_memory(&store, "memory").unwrap();
    assert_eq!(lib_memory.data(&store)?[..4], 10i32.to_le_bytes());

    let crash = app_instance.get_typed_func::<i32, i32>(&store, "crash")?;
    assert_eq!(crash.call(&mut store, 3)?, 3);
    let err = crash.call(&mut store, 0).unwrap_err();
    let trap = err.as_trap().expect("a trap");
    assert_eq!(trap.code(), TrapCode::Unreachable);
    let frames: Vec<(Option<&str>, Option<&str>)> = trap
        .frames()
        .iter()
        .map(|f| (f.module_name.as_deref(), f.func_name.as_deref()))
        .collect();
    assert_eq!(
        frames,
        [
            (Some("lib"), Some("fail")),
            (Some("app"), Some("calls_fail")),
            (Some("app"), Some("crash")),
        ],
        "the backtrace goes through both modules"
    );
    Ok(())
}

#[test]
fn module_instantiates_and_defines_in_one_step() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.module(&mut store, "lib", &Module::new(&engine, LIB)?)?;
    let app = linker.instantiate(&mut store, &Module::new(&engine, APP)?)?;
    let main = app.get_typed_func::<(), i32>(&store, "main")?;
    assert_eq!(main.call(&mut store, ())?, 10);
    Ok(())
}

/// A module calling `"env" "f"` of type `[] -> [i32]`, and a linker that defines it.
fn calls_f(engine: &Engine) -> Result<Module> {
    Ok(Module::new(
        engine,
        br#"(module (import "env" "f" (func $f (result i32)))
                    (func (export "run") (result i32) (call $f)))"#,
    )?)
}

fn run(linker: &Linker<()>, store: &mut Store<()>, module: &Module) -> Result<i32> {
    let instance = linker.instantiate(store, module)?;
    Ok(instance
        .get_typed_func::<(), i32>(&*store, "run")?
        .call(store, ())?)
}

#[test]
fn redefining_a_name_without_shadowing_is_an_error() -> Result<()> {
    let engine = engine();
    let module = calls_f(&engine)?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.func_wrap("env", "f", |_: Caller<'_, ()>| 1i32)?;
    let duplicate = r#""env" "f" is already defined (call Linker::allow_shadowing(true) to let a later definition replace it)"#;
    assert_eq!(
        message(
            linker
                .func_wrap("env", "f", |_: Caller<'_, ()>| 2i32)
                .map(|_| ())
        ),
        duplicate
    );
    let other = Func::wrap(&mut store, |_: Caller<'_, ()>| 3i32)?;
    assert_eq!(
        message(linker.define(&store, "env", "f", other).map(|_| ())),
        duplicate
    );
    let four = Module::new(
        &engine,
        br#"(module (func (export "f") (result i32) i32.const 4) (func (export "g")))"#,
    )?;
    let four = Instance::new(&mut store, &four, &[])?;
    let err = linker
        .instance(&store, "env", four)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(
        &err,
        Error::Link(LinkError::Duplicate { module, name }) if module == "env" && name == "f"
    ));
    assert!(
        linker.get(&mut store, "env", "g").is_none(),
        "a refused instance defines none of its exports"
    );
    // The first definition stands.
    assert_eq!(run(&linker, &mut store, &module)?, 1);
    // Another name of the same module, or the same name in another module, is fine.
    linker.func_wrap("env", "g", |_: Caller<'_, ()>| 0i32)?;
    linker.func_wrap("other", "f", |_: Caller<'_, ()>| 0i32)?;
    Ok(())
}

#[test]
fn with_shadowing_the_later_definition_wins() -> Result<()> {
    let engine = engine();
    let module = calls_f(&engine)?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.allow_shadowing(true);
    linker.func_wrap("env", "f", |_: Caller<'_, ()>| 1i32)?;
    assert_eq!(run(&linker, &mut store, &module)?, 1);
    linker.func_wrap("env", "f", |_: Caller<'_, ()>| 2i32)?;
    assert_eq!(run(&linker, &mut store, &module)?, 2);
    let three = Func::wrap(&mut store, |_: Caller<'_, ()>| 3i32)?;
    linker.define(&store, "env", "f", three)?;
    assert_eq!(run(&linker, &mut store, &module)?, 3);
    let four = Module::new(
        &engine,
        br#"(module (func (export "f") (result i32) i32.const 4))"#,
    )?;
    let four = Instance::new(&mut store, &four, &[])?;
    linker.instance(&store, "env", four)?;
    assert_eq!(run(&linker, &mut store, &module)?, 4);
    // And back to a host function.
    linker.func_wrap("env", "f", |_: Caller<'_, ()>| 5i32)?;
    assert_eq!(run(&linker, &mut store, &module)?, 5);
    Ok(())
}

#[test]
fn an_unknown_import_names_module_field_and_type() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.func_wrap("env", "known", |_: Caller<'_, ()>| ())?;
    let mut refused = |wat: &str| -> Result<Error> {
        let module = Module::new(&engine, wat.as_bytes())?;
        Ok(linker.instantiate(&mut store, &module).unwrap_err())
    };
    let err = refused(
        r#"(module (import "env" "known" (func))
                   (import "env" "f" (func (param i32 externref) (result i32))))"#,
    )?;
    assert_eq!(
        err.to_string(),
        r#"unknown import: "env" "f" (func (param i32 externref) (result i32)) has not been defined"#
    );
    assert!(matches!(
        err,
        Error::Link(LinkError::UnknownImport {
            ty: ExternType::Func(_),
            ..
        })
    ));
    for (wat, expected) in [
        (
            r#"(module (import "js" "mem" (memory 1 2)))"#,
            r#"unknown import: "js" "mem" (memory 1 2) has not been defined"#,
        ),
        (
            r#"(module (import "js" "table" (table 3 externref)))"#,
            r#"unknown import: "js" "table" (table 3 externref) has not been defined"#,
        ),
        (
            r#"(module (import "js" "g" (global (mut f64))))"#,
            r#"unknown import: "js" "g" (global (mut f64)) has not been defined"#,
        ),
    ] {
        assert_eq!(refused(wat)?.to_string(), expected);
    }
    Ok(())
}

#[test]
fn an_import_of_another_type_names_both_types() -> Result<()> {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let memory = Memory::new(&mut store, MemoryType::new(1, Some(4)))?;
    let global = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I32,
            mutable: false,
        },
        Val::I32(0),
    )?;
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "f", |_: Caller<'_, ()>, x: i32| x)?
        .define(&store, "env", "memory", memory)?
        .define(&store, "env", "global", global)?;
    let mut refused = |wat: &str| -> Result<String> {
        let module = Module::new(&engine, wat.as_bytes())?;
        Ok(message(linker.instantiate(&mut store, &module)))
    };
    for (wat, expected) in [
        (
            r#"(module (import "env" "f" (func (param i64) (result i32))))"#,
            r#"incompatible import type for "env" "f": the module imports (func (param i64) (result i32)), but the definition is (func (param i32) (result i32))"#,
        ),
        (
            r#"(module (import "env" "f" (global i32)))"#,
            r#"incompatible import type for "env" "f": the module imports (global i32), but the definition is (func (param i32) (result i32))"#,
        ),
        (
            r#"(module (import "env" "memory" (memory 2)))"#,
            r#"incompatible import type for "env" "memory": the module imports (memory 2), but the definition is (memory 1 4)"#,
        ),
        (
            r#"(module (import "env" "memory" (memory 1 2)))"#,
            r#"incompatible import type for "env" "memory": the module imports (memory 1 2), but the definition is (memory 1 4)"#,
        ),
        (
            r#"(module (import "env" "global" (global (mut i32))))"#,
            r#"incompatible import type for "env" "global": the module imports (global (mut i32)), but the definition is (global i32)"#,
        ),
    ] {
        assert_eq!(refused(wat)?, expected, "{wat}");
    }
    // A memory that grew satisfies a larger minimum.
    memory.grow(&mut store, 1)?;
    let module = Module::new(&engine, br#"(module (import "env" "memory" (memory 2)))"#)?;
    linker.instantiate(&mut store, &module)?;
    Ok(())
}

#[test]
fn one_linker_serves_several_stores_with_its_host_functions() -> Result<()> {
    let engine = engine();
    let module = Module::new(
        &engine,
        br#"(module (import "env" "bump" (func $bump (param i32) (result i32)))
                    (func (export "run") (param i32) (result i32) (call $bump (local.get 0))))"#,
    )?;
    let mut linker = Linker::new(&engine);
    linker.func_wrap(
        "env",
        "bump",
        |mut caller: Caller<'_, Vec<i32>>, x: i32| -> i32 {
            caller.data_mut().push(x);
            x + 1
        },
    )?;
    let mut a = Store::new(&engine, Vec::new());
    let mut b = Store::new(&engine, Vec::new());
    let in_a = linker.instantiate(&mut a, &module)?;
    let in_b = linker.instantiate(&mut b, &module)?;
    let run_a = in_a.get_typed_func::<i32, i32>(&a, "run")?;
    let run_b = in_b.get_typed_func::<i32, i32>(&b, "run")?;
    assert_eq!(run_a.call(&mut a, 1)?, 2);
    assert_eq!(run_b.call(&mut b, 10)?, 11);
    assert_eq!(run_a.call(&mut a, 2)?, 3);
    // Each store's function sees its own store's data.
    assert_eq!(a.data(), &[1, 2]);
    assert_eq!(b.data(), &[10]);
    // A store dropped does not affect the linker or the other store.
    drop(a);
    let again = linker.instantiate(&mut b, &module)?;
    assert_eq!(
        again
            .get_typed_func::<i32, i32>(&b, "run")?
            .call(&mut b, 20)?,
        21
    );
    assert_eq!(b.data(), &[10, 20]);
    Ok(())
}

#[test]
fn a_value_of_one_store_is_refused_in_another() -> Result<()> {
    let engine = engine();
    let module = calls_f(&engine)?;
    let mut a = Store::new(&engine, ());
    let mut b = Store::new(&engine, ());
    let f_of_a = Func::wrap(&mut a, |_: Caller<'_, ()>| 1i32)?;
    let mut linker = Linker::new(&engine);
    // Defining it with a store that does not own it is refused.
    assert_eq!(
        message(linker.define(&b, "env", "f", f_of_a).map(|_| ())),
        r#""env" "f" belongs to another store than the one it is used with"#
    );
    linker.define(&a, "env", "f", f_of_a)?;
    assert_eq!(run(&linker, &mut a, &module)?, 1);
    // Used with store B, the definition of store A is refused, by name.
    let err = linker.instantiate(&mut b, &module).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""env" "f" belongs to another store than the one it is used with"#
    );
    assert!(matches!(err, Error::Link(LinkError::WrongStore { .. })));
    assert!(linker.get(&mut b, "env", "f").is_none());
    // Even after store A is gone (its handle is never followed).
    drop(a);
    assert!(linker.instantiate(&mut b, &module).is_err());
    assert!(linker.get(&mut b, "env", "f").is_none());
    // An instance of store A cannot be defined with store B either.
    let mut c = Store::new(&engine, ());
    let lib = Instance::new(&mut c, &Module::new(&engine, LIB)?, &[])?;
    assert!(matches!(
        linker.instance(&b, "lib", lib).map(|_| ()),
        Err(Error::WrongStore)
    ));
    Ok(())
}

#[test]
fn a_store_of_another_engine_is_refused() -> Result<()> {
    let engine = engine();
    let other_engine = Engine::new(Default::default())?;
    let mut linker = Linker::new(&engine);
    linker.func_wrap("env", "f", |_: Caller<'_, ()>| 1i32)?;
    let mut store = Store::new(&other_engine, ());
    let module = calls_f(&other_engine)?;
    assert_eq!(
        message(linker.instantiate(&mut store, &module)),
        "the linker was made for another engine than the store's"
    );
    assert!(linker.get(&mut store, "env", "f").is_none());
    Ok(())
}

#[test]
fn positional_imports_remain_and_name_both_types_too() -> Result<()> {
    let engine = engine();
    let module = calls_f(&engine)?;
    let mut store = Store::new(&engine, ());
    let f = Func::wrap(&mut store, |_: Caller<'_, ()>| 9i32)?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(f)])?;
    assert_eq!(
        instance
            .get_typed_func::<(), i32>(&store, "run")?
            .call(&mut store, ())?,
        9
    );
    let wrong = Func::wrap(&mut store, |_: Caller<'_, ()>| 9i64)?;
    assert_eq!(
        message(Instance::new(&mut store, &module, &[Extern::Func(wrong)])),
        r#"incompatible import type for "env" "f": the module imports (func (result i32)), but the definition is (func (result i64))"#
    );
    let g = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I32,
            mutable: false,
        },
        Val::I32(9),
    )?;
    assert_eq!(
        message(Instance::new(&mut store, &module, &[g.into()])),
        r#"incompatible import type for "env" "f": the module imports (func (result i32)), but the definition is (global i32)"#
    );
    Ok(())
}

#[test]
fn a_failed_instantiation_makes_no_host_function() -> Result<()> {
    // The closure owns a clone of `token`; the linker keeps the closure, and so does
    // every function made from it in a store. So once the linker is gone, the count
    // says whether the store holds a function made from it.
    let engine = engine();
    let token = std::sync::Arc::new(());
    let linker_with_f = || -> Result<Linker<()>> {
        let held = token.clone();
        let mut linker = Linker::new(&engine);
        linker.func_wrap("env", "f", move |_: Caller<'_, ()>| {
            let _ = &held;
            1i32
        })?;
        Ok(linker)
    };
    // The first import is fine, the second unknown: every import is checked before
    // any host function is made.
    let refused = Module::new(
        &engine,
        br#"(module (import "env" "f" (func (result i32))) (import "env" "g" (func)))"#,
    )?;
    let mut store = Store::new(&engine, ());
    let linker = linker_with_f()?;
    assert!(linker.instantiate(&mut store, &refused).is_err());
    drop(linker);
    assert_eq!(
        std::sync::Arc::strong_count(&token),
        1,
        "the store holds nothing"
    );
    // The control: a successful instantiation leaves a function in the store.
    let linker = linker_with_f()?;
    linker.instantiate(&mut store, &calls_f(&engine)?)?;
    drop(linker);
    assert_eq!(
        std::sync::Arc::strong_count(&token),
        2,
        "the store's function"
    );
    drop(store);
    assert_eq!(std::sync::Arc::strong_count(&token), 1);
    Ok(())
}

#[test]
fn a_linker_can_be_shared_between_threads_whatever_its_host_data() -> Result<()> {
    // `HostState` holds an `Rc` (not `Send`); the linker keeps only closures that are
    // `Send + Sync`, so one linker can serve stores on several threads.
    fn shareable<L: Send + Sync + Clone>(_: &L) {}
    let engine = engine();
    let linker = framewalk::host::linker(&engine);
    shareable(&linker);
    let module = Module::new(
        &engine,
        br#"(module (import "framewalk" "frames" (func $frames (result i32)))
                    (func (export "run") (result i32) (call $frames)))"#,
    )?;
    let depth = std::thread::scope(|s| {
        s.spawn(|| -> Result<i32> {
            let mut store = Store::new(&engine, framewalk::host::HostState::default());
            let instance = linker.instantiate(&mut store, &module)?;
            Ok(instance
                .get_typed_func::<(), i32>(&store, "run")?
                .call(&mut store, ())?)
        })
        .join()
        .expect("the thread ran")
    })?;
    assert_eq!(depth, 1, "the one wasm frame below the host function");
    Ok(())
}
