//! Typed host → wasm calls (`TypedFunc::call`) through both of their paths: **direct**
//! (every argument fits in an argument register and there is at most one result:
//! `framewalk_enter_direct` calls the wasm function itself with its own calling
//! convention) and through the **entry trampoline** (the array convention: more
//! arguments, several results). For each: the arguments arrive in order, the result
//! comes back exactly, a trap inside unwinds to the right place with the exact
//! backtrace, and a host function called from inside sees the exact stack and can
//! collect garbage without losing a reference the wasm frames hold.

use anyhow::Result;
use framewalk::{Caller, Engine, Extern, ExternRef, Func, Instance, Module, Store, TrapCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const WAT: &str = r#"
(module $typed
  (import "h" "probe" (func $probe (param i32) (result i32)))
  (import "h" "collect" (func $collect))
  (import "h" "reenter" (func $reenter (param i32) (result i32)))

  ;; Positional encodings, so that a swapped or dropped argument shows.
  (func (export "mixed") (param i32 f64 i64 f32 i32 f64) (result f64)
    (f64.add
      (f64.add
        (f64.add (f64.convert_i32_s (local.get 0)) (f64.mul (local.get 1) (f64.const 10)))
        (f64.mul (f64.convert_i64_s (local.get 2)) (f64.const 100)))
      (f64.add
        (f64.mul (f64.promote_f32 (local.get 3)) (f64.const 1000))
        (f64.add (f64.mul (f64.convert_i32_s (local.get 4)) (f64.const 10000))
                 (f64.mul (local.get 5) (f64.const 100000))))))
  (func (export "five_ints") (param i32 i32 i32 i32 i32) (result i64)
    (i64.extend_i32_s
      (i32.add (i32.mul (local.get 0) (i32.const 10000))
        (i32.add (i32.mul (local.get 1) (i32.const 1000))
          (i32.add (i32.mul (local.get 2) (i32.const 100))
            (i32.add (i32.mul (local.get 3) (i32.const 10)) (local.get 4)))))))
  (func (export "eight_floats") (param f32 f32 f32 f32 f32 f32 f32 f32) (result f32)
    (f32.sub (local.get 0) (f32.mul (local.get 7) (f32.const 2))))
  (func (export "two_results") (param i32) (result i32 i64)
    (i32.add (local.get 0) (i32.const 1))
    (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32)))
  (func (export "neg_i32") (param i32) (result i32) (i32.sub (i32.const 0) (local.get 0)))
  (func (export "ident") (param externref) (result externref) (local.get 0))

  ;; Traps three frames down; the host caller must get control back intact.
  (func $deepest (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
  (func $middle (param i32) (result i32) (call $deepest (local.get 0)))
  (func $divide (export "divide") (param i32) (result i32) (call $middle (local.get 0)))

  ;; A host call two frames down.
  (func $inner (param i32) (result i32) (call $probe (local.get 0)))
  (func $outer (export "outer") (param i32) (result i32) (call $inner (local.get 0)))

  ;; Holds a reference in a local across a host call that collects.
  (func (export "keep") (param externref) (result externref)
    (call $collect)
    (local.get 0))

  ;; The host re-enters wasm with a typed call of its own.
  (func $nest (export "nest") (param i32) (result i32)
    (i32.add (call $reenter (local.get 0)) (i32.const 1)))
)
"#;

struct State {
    stacks: Vec<Vec<String>>,
    inner: Option<framewalk::TypedFunc<i32, i32>>,
}

fn names(frames: &[framewalk::trap::FrameInfo]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.func_name.as_deref().unwrap_or("?").to_string())
        .collect()
}

fn setup() -> Result<(Store<State>, Instance)> {
    let engine = Engine::new(Default::default())?;
    let module = Module::new(&engine, WAT.as_bytes())?;
    let mut store = Store::new(
        &engine,
        State {
            stacks: Vec::new(),
            inner: None,
        },
    );
    let probe = Func::wrap(&mut store, |mut c: Caller<'_, State>, x: i32| {
        let stack = names(&c.force_backtrace().expect("walk from a host function"));
        c.data_mut().stacks.push(stack);
        x * 2
    })?;
    let collect = Func::wrap(&mut store, |mut c: Caller<'_, State>| {
        c.gc().expect("collect from a host function");
    })?;
    let reenter = Func::wrap(&mut store, |mut c: Caller<'_, State>, x: i32| {
        let inner = c.data().inner.expect("set before the call");
        inner.call(&mut c, x).expect("nested typed call")
    })?;
    let imports = [probe, collect, reenter].map(Extern::Func);
    let instance = Instance::new(&mut store, &module, &imports)?;
    let outer = instance.get_typed_func::<i32, i32>(&store, "outer")?;
    store.data_mut().inner = Some(outer);
    Ok((store, instance))
}

#[test]
fn arguments_and_results_of_every_class_arrive_in_order() -> Result<()> {
    let (mut store, instance) = setup()?;
    type Mixed = (i32, f64, i64, f32, i32, f64);
    let mixed = instance.get_typed_func::<Mixed, f64>(&store, "mixed")?;
    assert_eq!(mixed.call(&mut store, (1, 2.0, 3, 4.0, 5, 6.0))?, 654_321.0);
    let five = instance.get_typed_func::<(i32, i32, i32, i32, i32), i64>(&store, "five_ints")?;
    assert_eq!(five.call(&mut store, (1, 2, 3, 4, 5))?, 12_345);
    type Eight = (f32, f32, f32, f32, f32, f32, f32, f32);
    let eight = instance.get_typed_func::<Eight, f32>(&store, "eight_floats")?;
    assert_eq!(
        eight.call(&mut store, (100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5))?,
        85.0
    );
    let two = instance.get_typed_func::<i32, (i32, i64)>(&store, "two_results")?;
    assert_eq!(two.call(&mut store, 7)?, (8, 7 << 32));
    let neg = instance.get_typed_func::<i32, i32>(&store, "neg_i32")?;
    assert_eq!(neg.call(&mut store, 5)?, -5);
    assert_eq!(neg.call(&mut store, i32::MIN)?, i32::MIN);
    // The same functions called untyped agree (the array path).
    let mut out = [framewalk::Val::I64(0)];
    let untyped = instance.get_func(&store, "five_ints").unwrap();
    untyped.call(
        &mut store,
        &[1, 2, 3, 4, 5].map(framewalk::Val::I32),
        &mut out,
    )?;
    assert_eq!(out[0].i64(), Some(12_345));
    Ok(())
}

#[test]
fn references_pass_through_and_survive_a_collection_inside() -> Result<()> {
    let (mut store, instance) = setup()?;
    let drops = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>, u32);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ident = instance.get_typed_func::<Option<ExternRef>, Option<ExternRef>>(&store, "ident")?;
    assert!(ident.call(&mut store, None)?.is_none());
    let r = ExternRef::new(&mut store, Counted(drops.clone(), 9));
    let back = ident
        .call(&mut store, Some(r.clone()))?
        .expect("comes back");
    assert!(ExternRef::ptr_eq(&back, &r));
    drop(back);

    let keep = instance.get_typed_func::<Option<ExternRef>, Option<ExternRef>>(&store, "keep")?;
    let only_in_wasm = ExternRef::new(&mut store, Counted(drops.clone(), 10));
    // After this call the host holds nothing of it: only the wasm frame's local (a
    // stack-map root during the collection) keeps it alive until it is returned.
    let back = keep.call(&mut store, Some(only_in_wasm))?.expect("kept");
    let payload = back.data().downcast_ref::<Counted>().expect("a Counted").1;
    assert_eq!(payload, 10);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "nothing freed while held");
    drop(back);
    drop(r);
    store.gc()?;
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "both freed once unreachable"
    );
    Ok(())
}

#[test]
fn a_trap_inside_returns_control_with_the_exact_backtrace() -> Result<()> {
    let (mut store, instance) = setup()?;
    let divide = instance.get_typed_func::<i32, i32>(&store, "divide")?;
    // Locals of this frame live in callee-saved registers across the calls: a trap must
    // hand them back intact.
    let mut results = Vec::new();
    for i in [1, 0, -1, 0, 1] {
        match divide.call(&mut store, i) {
            Ok(v) => results.push(Ok(v)),
            Err(e) => {
                let trap = e.as_trap().expect("a trap");
                assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
                assert_eq!(names(trap.frames()), ["deepest", "middle", "divide"]);
                results.push(Err(i));
            }
        }
    }
    assert_eq!(results, [Ok(1), Err(0), Ok(-1), Err(0), Ok(1)]);
    assert_eq!(store.backtrace()?, [], "no activation left behind");
    Ok(())
}

#[test]
fn host_functions_inside_see_the_exact_stack_even_when_nested() -> Result<()> {
    let (mut store, instance) = setup()?;
    let outer = instance.get_typed_func::<i32, i32>(&store, "outer")?;
    assert_eq!(outer.call(&mut store, 21)?, 42);
    let nest = instance.get_typed_func::<i32, i32>(&store, "nest")?;
    // nest -> reenter (host) -> outer -> inner -> probe (host): two activations, both
    // entered directly.
    assert_eq!(nest.call(&mut store, 4)?, 9);
    assert_eq!(
        store.data().stacks,
        [vec!["inner", "outer"], vec!["inner", "outer", "nest"]]
    );
    Ok(())
}
