//! The built-in host module `framewalk`: externrefs, collections, re-entry and stack
//! inspection for modules written in `.wat`. `framewalk run` offers it to every module
//! it runs; embedders and tests get the same functions through a [`Linker`]
//! ([`linker`], [`add_to_linker`]) or one at a time ([`func`]).
//!
//! The functions (module `framewalk`):
//!
//! ```text
//! new_ref   (param i64) (result externref)   a new host object holding the integer
//! ref_value (param externref) (result i64)   the integer inside (traps on null, an object
//!                                            not made by new_ref, or a freed one)
//! live_refs (result i64)                     objects made by new_ref not yet freed
//! gc                                         run a full collection now
//! reenter   (param funcref i64) (result i64) call the [i64] -> [i64] function through a
//!                                            new host -> wasm activation
//! backtrace                                  print the current wasm backtrace to stderr
//! frames    (result i32)                     wasm frames the walker sees now
//! ```
//!
//! Each `new_ref` object carries a canary that its drop clears, so `ref_value` on an
//! object freed while wasm could still reach it fails with a host error instead of
//! reading freed data unnoticed.

use crate::runtime::{Caller, Engine, Error, Extern, Func, HostError, Linker, Store, Val};
use crate::trap::Backtrace;
use crate::types::{FuncType, ValType};
use crate::ExternRef;
use std::cell::Cell;
use std::ops::ControlFlow;
use std::rc::Rc;

const CANARY: u64 = 0xf4a3_e9a1_c0ff_ee01;

/// The name of the host module.
pub const MODULE: &str = "framewalk";

/// What the host functions share: the store's data (`Store<HostState>`).
#[derive(Debug, Default)]
pub struct HostState {
    /// Objects made by `new_ref` and not yet freed.
    pub live: Rc<Cell<i64>>,
    /// Collect at the start of every host call (`framewalk run --gc-every-call`).
    pub gc_every_call: bool,
}

/// The payload of a `new_ref` object.
struct HostObject {
    value: i64,
    canary: u64,
    live: Rc<Cell<i64>>,
}

impl Drop for HostObject {
    fn drop(&mut self) {
        self.canary = 0;
        self.live.set(self.live.get() - 1);
    }
}

fn maybe_gc<T>(caller: &mut Caller<'_, T>, get: impl Fn(&T) -> &HostState) -> Result<(), String> {
    if get(caller.data()).gc_every_call {
        caller
            .gc()
            .map_err(|e| format!("gc: stack walk failed: {e}"))?;
    }
    Ok(())
}

/// Defines the host module's functions in `linker`, each as [`MODULE`] and its name
/// (fails only if one of those names is already defined and shadowing is off).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), Error> {
    add_to_linker_with(linker, |state| state)
}

/// [`add_to_linker`] for stores whose host data holds a [`HostState`] among other
/// things (`framewalk run` keeps WASI's context beside it): `get` finds it.
pub fn add_to_linker_with<T: 'static>(
    linker: &mut Linker<T>,
    get: impl Fn(&T) -> &HostState + Copy + Send + Sync + 'static,
) -> Result<(), Error> {
    linker
        .func_wrap(
            MODULE,
            "new_ref",
            move |mut caller: Caller<'_, T>, value: i64| -> Result<Option<ExternRef>, String> {
                maybe_gc(&mut caller, get)?;
                let live = get(caller.data()).live.clone();
                live.set(live.get() + 1);
                Ok(Some(ExternRef::new(
                    &mut caller,
                    HostObject {
                        value,
                        canary: CANARY,
                        live,
                    },
                )))
            },
        )?
        .func_wrap(
            MODULE,
            "ref_value",
            move |mut caller: Caller<'_, T>, r: Option<ExternRef>| -> Result<i64, String> {
                maybe_gc(&mut caller, get)?;
                let r = r.ok_or("ref_value: null reference")?;
                let obj = r
                    .data()
                    .downcast_ref::<HostObject>()
                    .ok_or("ref_value: not an object made by framewalk::new_ref")?;
                if obj.canary != CANARY {
                    return Err(
                        "ref_value: the object was freed while still reachable (canary broken)"
                            .into(),
                    );
                }
                Ok(obj.value)
            },
        )?
        .func_wrap(
            MODULE,
            "live_refs",
            move |mut caller: Caller<'_, T>| -> Result<i64, String> {
                maybe_gc(&mut caller, get)?;
                Ok(get(caller.data()).live.get())
            },
        )?
        .func_wrap(
            MODULE,
            "gc",
            move |mut caller: Caller<'_, T>| -> Result<(), String> {
                caller
                    .gc()
                    .map_err(|e| format!("gc: stack walk failed: {e}"))
            },
        )?
        .func_wrap(
            MODULE,
            "backtrace",
            move |mut caller: Caller<'_, T>| -> Result<(), String> {
                maybe_gc(&mut caller, get)?;
                let frames = caller.backtrace().map_err(|e| format!("backtrace: {e}"))?;
                eprintln!("{}", Backtrace(&frames));
                Ok(())
            },
        )?
        .func_wrap(
            MODULE,
            "frames",
            move |mut caller: Caller<'_, T>| -> Result<i32, String> {
                maybe_gc(&mut caller, get)?;
                let mut n = 0;
                caller
                    .visit_frames(|_| {
                        n += 1;
                        ControlFlow::<()>::Continue(())
                    })
                    .map_err(|e| format!("frames: {e}"))?;
                Ok(n)
            },
        )?
        .func_new(
            MODULE,
            "reenter",
            FuncType::new([ValType::FuncRef, ValType::I64], [ValType::I64]),
            move |mut caller, params, results| {
                maybe_gc(&mut caller, get)?;
                let (Val::FuncRef(f), Val::I64(arg)) = (&params[0], &params[1]) else {
                    return Err("reenter: bad arguments".into());
                };
                let f = f.ok_or("reenter: null function reference")?;
                let callee = f
                    .typed::<i64, i64>(&caller)
                    .map_err(|e| format!("reenter: {e}"))?;
                // A trap inside comes back as an error carrying its backtrace, which this
                // host function's caller reports as its own failure.
                let r = callee
                    .call(&mut caller, *arg)
                    .map_err(|e| -> HostError { Box::new(e) })?;
                results[0] = Val::I64(r);
                Ok(())
            },
        )?;
    Ok(())
}

/// A linker for `engine` that defines the host module (see [`add_to_linker`]), to
/// which an embedder may add its own definitions.
pub fn linker(engine: &Engine) -> Linker<HostState> {
    let mut linker = Linker::new(engine);
    add_to_linker(&mut linker).expect("an empty linker has none of the host module's names");
    linker
}

/// The host module's function `name` made in `store`, or `None` if it has no such
/// function: for an embedder's own import list (the other functions are not made).
pub fn func(store: &mut Store<HostState>, name: &str) -> Option<Func> {
    linker(store.engine())
        .get(store, MODULE, name)
        .and_then(Extern::into_func)
}
