//! Wasm → host calls through both of their paths (`runtime::host_call`): a **direct
//! entry** (`Func::wrap` with every parameter in an argument register and at most one
//! result: the wasm caller jumps into Rust with its arguments in registers) and the
//! **exit trampoline** (more parameters, several results, `Func::new`). For every
//! shape: the values arrive exactly and in order, the result comes back exactly, the
//! host function sees the exact wasm stack (the exit was recorded), and after it
//! returns, wasm runs on with no exit left recorded (a later trap still has its exact
//! backtrace). The host functions are defined by name in a `Linker` (its `func_wrap`
//! and `func_new` make them as `Func::wrap` and `Func::new` do).

use anyhow::Result;
use framewalk::types::ValType;
use framewalk::{Caller, Engine, ExternRef, FuncType, Linker, Module, Store, Val};

/// What each host function saw: its name, its arguments and the wasm backtrace.
type Log = Vec<String>;

fn record(caller: &Caller<'_, Log>, call: String) -> String {
    let frames: Vec<String> = caller
        .force_backtrace()
        .expect("a host function called from wasm can walk")
        .iter()
        .map(|f| f.func_name.as_deref().unwrap_or("?").to_string())
        .collect();
    format!("{call} <- {}", frames.join(" <- "))
}

const WAT: &str = r#"
(module $shapes
  (import "h" "mix" (func $mix (param i32 i64 f32 f64) (result f64)))
  (import "h" "four" (func $four (param i32 i32 i32 i32) (result i32)))
  (import "h" "five" (func $five (param i32 i32 i32 i32 i32) (result i64)))
  (import "h" "eight" (func $eight (param f64 f64 f64 f64 f64 f64 f64 f64) (result f32)))
  (import "h" "nine" (func $nine (param f32 f32 f32 f32 f32 f32 f32 f32 f32) (result f64)))
  (import "h" "pair" (func $pair (param i32) (result i32 i64)))
  (import "h" "dynamic" (func $dynamic (param i64 f32) (result i64)))
  (import "h" "ident" (func $ident (param externref) (result externref)))
  (import "h" "neg" (func $neg (param i32) (result i32)))
  (import "h" "noop" (func $noop))

  (func $call_mix (export "mix") (result f64)
    (call $mix (i32.const -3) (i64.const 0x100000001) (f32.const 1.5) (f64.const 0.25)))
  (func $call_four (export "four") (result i32)
    (call $four (i32.const 1) (i32.const 2) (i32.const 3) (i32.const 4)))
  (func $call_five (export "five") (result i64)
    (call $five (i32.const 1) (i32.const 2) (i32.const 3) (i32.const 4) (i32.const 5)))
  (func $call_eight (export "eight") (result f32)
    (call $eight (f64.const 1) (f64.const 2) (f64.const 3) (f64.const 4)
                 (f64.const 5) (f64.const 6) (f64.const 7) (f64.const 8)))
  (func $call_nine (export "nine") (result f64)
    (call $nine (f32.const 1) (f32.const 2) (f32.const 3) (f32.const 4) (f32.const 5)
                (f32.const 6) (f32.const 7) (f32.const 8) (f32.const 9)))
  (func $call_pair (export "pair") (result i64)
    (local $b i64)
    (local.set $b (call $pair (i32.const 20)))
    (i64.add (i64.extend_i32_u) (local.get $b)))
  (func $call_dynamic (export "dynamic") (result i64)
    (call $dynamic (i64.const -9) (f32.const 2.5)))
  (func $call_ident (export "ident") (param externref) (result externref)
    (call $ident (local.get 0)))
  ;; The argument is an i64 cut down to i32: its register's upper half may still hold
  ;; the high word; the host must see 5. The result is zero-extended back: the host's
  ;; i32 must come back as exactly 32 bits.
  (func $call_neg (export "neg") (param i64) (result i64)
    (i64.extend_i32_u (call $neg (i32.wrap_i64 (local.get 0)))))
  ;; After the host returns, wasm traps: the trap's backtrace starts here, not at the
  ;; (gone) exit.
  (func $noop_then_trap (export "noop_then_trap")
    (call $noop)
    (unreachable))
)
"#;

/// Defines the module's imports, `"h"` and the function's name, each a closure of one
/// shape.
fn define_host_functions(linker: &mut Linker<Log>) -> Result<()> {
    linker.func_wrap(
        "h",
        "mix",
        |mut c: Caller<'_, Log>, (a, b, x, y): (i32, i64, f32, f64)| {
            let line = record(&c, format!("mix({a}, {b}, {x}, {y})"));
            c.data_mut().push(line);
            f64::from(a) + b as f64 + f64::from(x) + y
        },
    )?;
    linker.func_wrap(
        "h",
        "four",
        |mut c: Caller<'_, Log>, (a, b, x, y): (i32, i32, i32, i32)| {
            let line = record(&c, format!("four({a}, {b}, {x}, {y})"));
            c.data_mut().push(line);
            a * 1000 + b * 100 + x * 10 + y
        },
    )?;
    linker.func_wrap(
        "h",
        "five",
        |mut c: Caller<'_, Log>, p: (i32, i32, i32, i32, i32)| {
            let line = record(&c, format!("five{p:?}"));
            c.data_mut().push(line);
            i64::from(p.0 * 10_000 + p.1 * 1000 + p.2 * 100 + p.3 * 10 + p.4)
        },
    )?;
    type Eight = (f64, f64, f64, f64, f64, f64, f64, f64);
    linker.func_wrap("h", "eight", |mut c: Caller<'_, Log>, p: Eight| {
        let line = record(&c, format!("eight{p:?}"));
        c.data_mut().push(line);
        (p.0 - p.7) as f32
    })?;
    type Nine = (f32, f32, f32, f32, f32, f32, f32, f32, f32);
    linker.func_wrap("h", "nine", |mut c: Caller<'_, Log>, p: Nine| {
        let line = record(&c, format!("nine{p:?}"));
        c.data_mut().push(line);
        f64::from(p.8) * 100.0 + f64::from(p.0)
    })?;
    linker.func_wrap("h", "pair", |mut c: Caller<'_, Log>, a: i32| {
        let line = record(&c, format!("pair({a})"));
        c.data_mut().push(line);
        (a + 1, i64::from(a) << 32)
    })?;
    linker.func_new(
        "h",
        "dynamic",
        FuncType::new([ValType::I64, ValType::F32], [ValType::I64]),
        |mut c: Caller<'_, Log>, params: &[Val], results: &mut [Val]| {
            let (Some(a), Val::F32(bits)) = (params[0].i64(), &params[1]) else {
                return Err("wrong parameter types".into());
            };
            let x = f32::from_bits(*bits);
            let line = record(&c, format!("dynamic({a}, {x})"));
            c.data_mut().push(line);
            results[0] = Val::I64(a * (x * 2.0) as i64);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "h",
        "ident",
        |mut c: Caller<'_, Log>, r: Option<ExternRef>| {
            let seen = r
                .as_ref()
                .and_then(|r| r.data().downcast_ref::<u32>().copied());
            let line = record(&c, format!("ident({seen:?})"));
            c.data_mut().push(line);
            r
        },
    )?;
    linker.func_wrap("h", "neg", |mut c: Caller<'_, Log>, a: i32| {
        let line = record(&c, format!("neg({a})"));
        c.data_mut().push(line);
        -a
    })?;
    linker.func_wrap("h", "noop", |mut c: Caller<'_, Log>| {
        let line = record(&c, "noop()".into());
        c.data_mut().push(line);
    })?;
    Ok(())
}

#[test]
fn every_shape_of_host_function_gets_its_values_and_the_exact_stack() -> Result<()> {
    let engine = Engine::new(Default::default())?;
    let module = Module::new(&engine, WAT.as_bytes())?;
    let mut store = Store::new(&engine, Log::new());
    let mut linker = Linker::new(&engine);
    define_host_functions(&mut linker)?;
    let instance = linker.instantiate(&mut store, &module)?;

    let f64_of = |store: &mut Store<Log>, name: &str| -> Result<f64> {
        Ok(instance
            .get_typed_func::<(), f64>(&*store, name)?
            .call(&mut *store, ())?)
    };
    assert_eq!(f64_of(&mut store, "mix")?, 4_294_967_295.75);
    assert_eq!(
        instance
            .get_typed_func::<(), i32>(&store, "four")?
            .call(&mut store, ())?,
        1234
    );
    assert_eq!(
        instance
            .get_typed_func::<(), i64>(&store, "five")?
            .call(&mut store, ())?,
        12345
    );
    assert_eq!(
        instance
            .get_typed_func::<(), f32>(&store, "eight")?
            .call(&mut store, ())?,
        -7.0
    );
    assert_eq!(f64_of(&mut store, "nine")?, 901.0);
    assert_eq!(
        instance
            .get_typed_func::<(), i64>(&store, "pair")?
            .call(&mut store, ())?,
        21 + (20 << 32)
    );
    assert_eq!(
        instance
            .get_typed_func::<(), i64>(&store, "dynamic")?
            .call(&mut store, ())?,
        -45
    );
    let r = ExternRef::new(&mut store, 77u32);
    let back = instance
        .get_typed_func::<Option<ExternRef>, Option<ExternRef>>(&store, "ident")?
        .call(&mut store, Some(r.clone()))?
        .expect("the reference comes back");
    assert!(ExternRef::ptr_eq(&back, &r));
    assert_eq!(
        instance
            .get_typed_func::<i64, i64>(&store, "neg")?
            .call(&mut store, 0x7fff_ffff_0000_0005)?,
        0xffff_fffb
    );
    let err = instance
        .get_typed_func::<(), ()>(&store, "noop_then_trap")?
        .call(&mut store, ())
        .unwrap_err();
    let trap = err.as_trap().expect("a trap");
    assert_eq!(trap.code(), framewalk::TrapCode::Unreachable);
    let trap_frames: Vec<_> = trap
        .frames()
        .iter()
        .map(|f| f.func_name.as_deref().unwrap_or("?").to_string())
        .collect();
    assert_eq!(trap_frames, ["noop_then_trap"]);

    assert_eq!(
        store.data(),
        &[
            "mix(-3, 4294967297, 1.5, 0.25) <- call_mix",
            "four(1, 2, 3, 4) <- call_four",
            "five(1, 2, 3, 4, 5) <- call_five",
            "eight(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0) <- call_eight",
            "nine(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) <- call_nine",
            "pair(20) <- call_pair",
            "dynamic(-9, 2.5) <- call_dynamic",
            "ident(Some(77)) <- call_ident",
            "neg(5) <- call_neg",
            "noop() <- noop_then_trap",
        ]
    );
    Ok(())
}
