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

/// A module whose every boundary carries `v128`s: host functions (`Func::wrap` and
/// `Func::new`, with register and stack arguments), exports called typed and
/// untyped, a funcref table, a global, and wasm → wasm calls with stack arguments.
const SIMD_WAT: &str = r#"
(module $simd
  (import "h" "vwrap" (func $vwrap (param v128 i32 v128) (result v128)))
  (import "h" "vnew" (func $vnew (param v128) (result v128 i32)))
  (import "h" "vten" (func $vten (param v128 v128 v128 v128 v128 v128 v128 v128 v128 v128)
                              (result v128)))
  (global $g (export "g") (mut v128) (v128.const i32x4 7 8 9 10))
  (table $t 1 funcref)
  (elem (table $t) (i32.const 0) func $rot)
  (type $vv (func (param v128) (result v128)))

  ;; Lanes rotated by one i32 lane: lane i of the result is lane i+1 of the input.
  (func $rot (type $vv)
    (i8x16.shuffle 4 5 6 7 8 9 10 11 12 13 14 15 0 1 2 3 (local.get 0) (local.get 0)))

  ;; Ten vectors: the ninth and tenth go on the stack. Each is weighted by its
  ;; position so that a swapped or dropped argument shows.
  (func $ten (export "ten") (param v128 v128 v128 v128 v128 v128 v128 v128 v128 v128)
                            (result v128)
    (local $acc v128) (local $i i32)
    (local.set $acc (local.get 0))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 1)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 2)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 3)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 4)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 5)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 6)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 7)))
    (local.set $acc (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 8)))
    (i32x4.add (i32x4.mul (local.get $acc) (i32x4.splat (i32.const 3))) (local.get 9)))

  (func (export "add") (param v128 v128) (result v128) (i32x4.add (local.get 0) (local.get 1)))
  (func (export "one") (param v128) (result v128) (i64x2.neg (local.get 0)))
  (func (export "get_g") (result v128) (global.get $g))
  (func (export "split") (param v128) (result i64 v128 i64)
    (i64x2.extract_lane 0 (local.get 0))
    (i64x2.shl (local.get 0) (i32.const 1))
    (i64x2.extract_lane 1 (local.get 0)))

  ;; Through the table, the Func::wrap import, the Func::new import.
  (func $through_all (export "through_all") (param $v v128) (result v128 i32)
    (local $r v128) (local $n i32)
    (local.set $r (call_indirect $t (type $vv) (local.get $v) (i32.const 0)))
    (local.set $r (call $vwrap (local.get $r) (i32.const 5) (global.get $g)))
    (call $vnew (local.get $r)))

  ;; The ten-vector host function, and the ten-vector wasm function through a call and
  ;; a tail call: their results must agree.
  (func (export "ten_host") (param $v v128) (result v128)
    (call $vten (local.get $v) (i32x4.splat (i32.const 1)) (i32x4.splat (i32.const 2))
      (i32x4.splat (i32.const 3)) (i32x4.splat (i32.const 4)) (i32x4.splat (i32.const 5))
      (i32x4.splat (i32.const 6)) (i32x4.splat (i32.const 7)) (i32x4.splat (i32.const 8))
      (local.get $v)))
  (func (export "ten_call") (param $v v128) (result v128)
    (call $ten (local.get $v) (i32x4.splat (i32.const 1)) (i32x4.splat (i32.const 2))
      (i32x4.splat (i32.const 3)) (i32x4.splat (i32.const 4)) (i32x4.splat (i32.const 5))
      (i32x4.splat (i32.const 6)) (i32x4.splat (i32.const 7)) (i32x4.splat (i32.const 8))
      (local.get $v)))
  (func (export "ten_tail") (param $v v128) (result v128)
    (return_call $ten (local.get $v) (i32x4.splat (i32.const 1)) (i32x4.splat (i32.const 2))
      (i32x4.splat (i32.const 3)) (i32x4.splat (i32.const 4)) (i32x4.splat (i32.const 5))
      (i32x4.splat (i32.const 6)) (i32x4.splat (i32.const 7)) (i32x4.splat (i32.const 8))
      (local.get $v)))
)
"#;

/// i32x4 lanes, lane 0 first, as a v128's bits.
fn i32x4(l: [u32; 4]) -> u128 {
    l.iter()
        .rev()
        .fold(0u128, |acc, &x| acc << 32 | u128::from(x))
}

fn lanes(v: u128) -> [u32; 4] {
    std::array::from_fn(|i| (v >> (32 * i)) as u32)
}

/// What `$ten` (and the host's `vten`) compute: Horner's rule in base 3, per lane.
fn ten_model(args: [u128; 10]) -> u128 {
    let mut acc = [0u32; 4];
    for a in args {
        let l = lanes(a);
        for i in 0..4 {
            acc[i] = acc[i].wrapping_mul(3).wrapping_add(l[i]);
        }
    }
    i32x4(acc)
}

fn ten_args(v: u128) -> [u128; 10] {
    let mut args = [v; 10];
    for (i, a) in args.iter_mut().enumerate().take(9).skip(1) {
        *a = i32x4([i as u32; 4]);
    }
    args
}

#[test]
fn v128_values_cross_every_boundary_exactly() -> Result<()> {
    use framewalk::V128;
    let engine = Engine::new(Default::default())?;
    let module = Module::new(&engine, SIMD_WAT.as_bytes())?;
    let mut linker = Linker::<Log>::new(&engine);
    linker.func_wrap(
        "h",
        "vwrap",
        |mut caller: Caller<'_, Log>, (a, n, g): (V128, i32, V128)| -> V128 {
            let call = format!("vwrap({:#x}, {n}, {:#x})", a.as_u128(), g.as_u128());
            let line = record(&caller, call);
            caller.data_mut().push(line);
            // a + n * g, per i32 lane.
            let (la, lg) = (lanes(a.as_u128()), lanes(g.as_u128()));
            V128::from(i32x4(std::array::from_fn(|i| {
                la[i].wrapping_add((n as u32).wrapping_mul(lg[i]))
            })))
        },
    )?;
    linker.func_new(
        "h",
        "vnew",
        FuncType::new([ValType::V128], [ValType::V128, ValType::I32]),
        |mut caller, params, results| {
            let v = params[0].v128().expect("a v128 argument");
            let line = record(&caller, format!("vnew({v:#x})"));
            caller.data_mut().push(line);
            results[0] = Val::V128(!v);
            results[1] = Val::I32(lanes(v).iter().fold(0u32, |a, l| a.wrapping_add(*l)) as i32);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "h",
        "vten",
        |_: Caller<'_, Log>,
         (a, b, c, d, e, f, g, h, i, j): (
            V128,
            V128,
            V128,
            V128,
            V128,
            V128,
            V128,
            V128,
            V128,
            V128,
        )| { V128::from(ten_model([a, b, c, d, e, f, g, h, i, j].map(V128::as_u128))) },
    )?;
    let mut store = Store::new(&engine, Log::new());
    let inst = linker.instantiate(&mut store, &module)?;

    // Typed calls: one parameter, two, a v128 result with no parameter, several
    // results around a v128.
    let v = i32x4([1, 2, 3, 0xffff_fff0]);
    let w = i32x4([10, 20, 30, 0x20]);
    let add = inst.get_typed_func::<(V128, V128), V128>(&store, "add")?;
    assert_eq!(
        add.call(&mut store, (V128::from(v), V128::from(w)))?
            .as_u128(),
        i32x4([11, 22, 33, 0x10])
    );
    let one = inst.get_typed_func::<V128, V128>(&store, "one")?;
    let neg = |x: u128| {
        let (lo, hi) = (x as u64, (x >> 64) as u64);
        u128::from(lo.wrapping_neg()) | u128::from(hi.wrapping_neg()) << 64
    };
    assert_eq!(one.call(&mut store, V128::from(v))?.as_u128(), neg(v));
    let get_g = inst.get_typed_func::<(), V128>(&store, "get_g")?;
    assert_eq!(get_g.call(&mut store, ())?.as_u128(), i32x4([7, 8, 9, 10]));
    let split = inst.get_typed_func::<V128, (i64, V128, i64)>(&store, "split")?;
    let (lo, shifted, hi) = split.call(&mut store, V128::from(v))?;
    assert_eq!((lo as u64, hi as u64), (v as u64, (v >> 64) as u64));
    let shl1 = u128::from((v as u64) << 1) | u128::from(((v >> 64) as u64) << 1) << 64;
    assert_eq!(shifted.as_u128(), shl1);

    // The global, from the host: set, read back by wasm and by the host.
    let g = inst.get_global(&store, "g").expect("g");
    g.set(&mut store, Val::V128(w))?;
    assert_eq!(g.get(&store)?.v128(), Some(w));
    assert_eq!(get_g.call(&mut store, ())?.as_u128(), w);
    let e = g.set(&mut store, Val::I64(1)).unwrap_err().to_string();
    assert!(e.contains("an i64 value for a v128 global"), "{e}");

    // Untyped: through the table, the `Func::wrap` import and the `Func::new` one.
    let all = inst.get_func(&store, "through_all").expect("through_all");
    let mut results = [Val::I32(0), Val::I32(0)];
    all.call(&mut store, &[Val::V128(v)], &mut results)?;
    let rotated = i32x4([2, 3, 0xffff_fff0, 1]);
    let (lr, lw) = (lanes(rotated), lanes(w));
    let mixed = i32x4(std::array::from_fn(|i| lr[i].wrapping_add(5 * lw[i])));
    assert_eq!(results[0].v128(), Some(!mixed));
    assert_eq!(
        results[1].i32(),
        Some(lanes(mixed).iter().fold(0u32, |a, l| a.wrapping_add(*l)) as i32)
    );
    assert_eq!(
        store.data().as_slice(),
        [
            format!("vwrap({rotated:#x}, 5, {w:#x}) <- through_all"),
            format!("vnew({mixed:#x}) <- through_all"),
        ]
    );

    // Ten vectors, two on the stack: host → wasm (the entry trampoline), wasm → host
    // (the exit trampoline), wasm → wasm by call and by tail call.
    let x = i32x4([0x1234_5678, 0x9abc_def0, 5, 0x8000_0000]);
    let want = ten_model(ten_args(x));
    let ten = inst.get_func(&store, "ten").expect("ten");
    let args = ten_args(x).map(Val::V128);
    let mut out = [Val::I32(0)];
    ten.call(&mut store, &args, &mut out)?;
    assert_eq!(out[0].v128(), Some(want), "host -> wasm");
    for name in ["ten_host", "ten_call", "ten_tail"] {
        let f = inst.get_typed_func::<V128, V128>(&store, name)?;
        assert_eq!(f.call(&mut store, V128::from(x))?.as_u128(), want, "{name}");
    }
    Ok(())
}
