//! Epoch interruption: with `Config::epoch_interruption`, compiled code checks the
//! engine's epoch against the store's deadline at every function entry and loop header
//! and traps with `TrapCode::Interrupt` (and a backtrace) once it is reached; without
//! it, no check is compiled and the epoch changes nothing.

mod common;

use anyhow::{bail, Result};
use common::Wasm;
use framewalk::{Caller, Config, Engine, Extern, Func, Instance, Module, Store, TrapCode};
use std::time::Duration;
use wasmparser::Operator;

const WAT: &str = r#"
(module $epochs
  (import "host" "tick" (func $tick))
  (global $count (export "count") (mut i32) (i32.const 0))
  ;; Counts iterations, each of which advances the epoch once (through the host).
  (func $ticking (export "ticking") (param $n i32)
    (loop $l
      (call $tick)
      (global.set $count (i32.add (global.get $count) (i32.const 1)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func $main (export "main") (param i32) (call $ticking (local.get 0)))
  ;; Never ends on its own, and calls nothing.
  (func $forever (export "forever") (loop $l (br $l)))
  (func $run_forever (export "run_forever") (call $forever))
  ;; A call chain whose callee is entered after the deadline.
  (func $leaf (result i32) (i32.const 7))
  (func $tick_then_call (export "tick_then_call") (result i32) (call $tick) (call $leaf))
)
"#;

struct Fixture {
    wasm: Wasm,
    engine: Engine,
    store: Store<()>,
    instance: Instance,
}

fn fixture(epoch_interruption: bool) -> Result<Fixture> {
    let wasm = Wasm::new(WAT);
    let engine = Engine::new(Config {
        epoch_interruption,
        ..Config::default()
    })?;
    let module = Module::new(&engine, &wasm.bytes)?;
    let mut store = Store::new(&engine, ());
    let tick = Func::wrap(&mut store, |caller: Caller<'_, ()>, (): ()| {
        caller.engine().increment_epoch();
    })?;
    let instance = Instance::new(&mut store, &module, &[Extern::Func(tick)])?;
    Ok(Fixture {
        wasm,
        engine,
        store,
        instance,
    })
}

impl Fixture {
    fn count(&self) -> i32 {
        let g = self.instance.get_global(&self.store, "count").unwrap();
        g.get(&self.store).unwrap().i32().unwrap()
    }

    fn frames(&self, trap: &framewalk::Trap) -> Vec<(u32, Option<u32>)> {
        trap.frames()
            .iter()
            .map(|f| (f.func_index, f.wasm_offset))
            .collect()
    }

    fn loop_of(&self, func: &str) -> u32 {
        self.wasm
            .only_op(func, "loop", |op| matches!(op, Operator::Loop { .. }))
    }
}

fn interrupt(e: framewalk::Error) -> Result<framewalk::Trap> {
    match e {
        framewalk::Error::Trap(t) if t.code() == TrapCode::Interrupt => Ok(t),
        other => bail!("expected an interrupt, got {other}"),
    }
}

#[test]
fn the_deadline_interrupts_at_the_next_loop_header() -> Result<()> {
    let mut fx = fixture(true)?;
    let main = fx.instance.get_typed_func::<i32, ()>(&fx.store, "main")?;
    fx.store.set_epoch_deadline(3);
    let trap = interrupt(main.call(&mut fx.store, 100).unwrap_err())?;
    // Three iterations advanced the epoch to the deadline; the fourth header trapped.
    assert_eq!(fx.count(), 3);
    assert_eq!(
        trap.to_string().lines().next(),
        Some("wasm trap: interrupt")
    );
    assert_eq!(
        fx.frames(&trap),
        [
            (fx.wasm.func("ticking"), Some(fx.loop_of("ticking"))),
            (fx.wasm.func("main"), Some(fx.wasm.call("main", "ticking")))
        ]
    );
    // The store is usable, and a new deadline gives the guest that much more.
    fx.store.set_epoch_deadline(2);
    let trap = interrupt(main.call(&mut fx.store, 100).unwrap_err())?;
    assert_eq!(fx.count(), 5);
    assert_eq!(trap.frames().len(), 2);
    // A loop that ends before the deadline runs to its end.
    fx.store.set_epoch_deadline(10);
    main.call(&mut fx.store, 4)?;
    assert_eq!(fx.count(), 9);
    Ok(())
}

#[test]
fn a_function_entered_after_the_deadline_traps_at_its_entry() -> Result<()> {
    let mut fx = fixture(true)?;
    let f = fx
        .instance
        .get_typed_func::<(), i32>(&fx.store, "tick_then_call")?;
    fx.store.set_epoch_deadline(1);
    let trap = interrupt(f.call(&mut fx.store, ()).unwrap_err())?;
    let frames = fx.frames(&trap);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].0, fx.wasm.func("leaf"));
    assert_eq!(
        frames[1],
        (
            fx.wasm.func("tick_then_call"),
            Some(fx.wasm.call("tick_then_call", "leaf"))
        )
    );
    Ok(())
}

#[test]
fn another_thread_stops_an_infinite_loop() -> Result<()> {
    let mut fx = fixture(true)?;
    let f = fx
        .instance
        .get_typed_func::<(), ()>(&fx.store, "run_forever")?;
    fx.store.set_epoch_deadline(1);
    let engine = fx.engine.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        engine.increment_epoch();
    });
    let trap = interrupt(f.call(&mut fx.store, ()).unwrap_err())?;
    timer.join().unwrap();
    assert_eq!(
        fx.frames(&trap),
        [
            (fx.wasm.func("forever"), Some(fx.loop_of("forever"))),
            (
                fx.wasm.func("run_forever"),
                Some(fx.wasm.call("run_forever", "forever"))
            )
        ]
    );
    Ok(())
}

#[test]
fn without_epoch_interruption_the_epoch_changes_nothing() -> Result<()> {
    let mut fx = fixture(false)?;
    let main = fx.instance.get_typed_func::<i32, ()>(&fx.store, "main")?;
    fx.store.set_epoch_deadline(1);
    main.call(&mut fx.store, 50)?;
    assert_eq!(fx.count(), 50);
    assert_eq!(fx.engine.current_epoch(), 50);
    Ok(())
}

#[test]
fn without_a_deadline_nothing_is_interrupted() -> Result<()> {
    let mut fx = fixture(true)?;
    let main = fx.instance.get_typed_func::<i32, ()>(&fx.store, "main")?;
    main.call(&mut fx.store, 50)?;
    assert_eq!(fx.count(), 50);
    Ok(())
}

#[test]
fn an_artifact_loads_only_into_an_engine_with_its_epoch_setting() -> Result<()> {
    let wasm = Wasm::new(WAT);
    let plain = Engine::new(Config::default())?;
    let checked = Engine::new(Config {
        epoch_interruption: true,
        ..Config::default()
    })?;
    let artifact = framewalk::runtime::compile_artifact(&plain, &wasm.bytes)?;
    // SAFETY: compiled just above by this build.
    let Err(e) = (unsafe { Module::deserialize(&checked, &artifact) }) else {
        panic!("an artifact without epoch checks is refused by an engine that needs them");
    };
    assert!(e.to_string().contains("epoch_interruption"), "{e}");
    let artifact = framewalk::runtime::compile_artifact(&checked, &wasm.bytes)?;
    // SAFETY: as above.
    assert!(unsafe { Module::deserialize(&plain, &artifact) }.is_err());
    // SAFETY: as above.
    assert!(unsafe { Module::deserialize(&checked, &artifact) }.is_ok());
    Ok(())
}
