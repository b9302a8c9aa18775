//! The `framewalk` host module that `framewalk run` offers to every module it runs:
//! externrefs, collections, re-entry and stack inspection from a `.wat` file.

use anyhow::{bail, Result};
use framewalk::trap::Backtrace;
use framewalk::{Caller, Extern, ExternRef, Func, FuncType, Module, Store, Val, ValType};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::rc::Rc;

const CANARY: u64 = 0xf4a3_e9a1_c0ff_ee01;

/// What the host functions share.
pub struct HostState {
    /// Objects made by `new_ref` and not yet freed.
    pub live: Rc<Cell<i64>>,
    /// Collect at the start of every host call (`--gc-every-call`).
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

/// The help text for `framewalk run --help`.
pub const HELP: &str = "\
Modules may import these functions from the built-in host module `framewalk`:
  new_ref   (param i64) (result externref)  a new host object holding the integer
  ref_value (param externref) (result i64)  the integer inside (traps on null/foreign/freed)
  live_refs (result i64)                    objects made by new_ref not yet freed
  gc                                        run a full collection now
  reenter   (param funcref i64) (result i64) call the [i64]->[i64] function through a new
                                            host->wasm activation
  backtrace                                 print the current wasm backtrace to stderr
  frames    (result i32)                    wasm frames the walker sees now";

fn maybe_gc(caller: &mut Caller<'_, HostState>) -> Result<(), String> {
    if caller.data().gc_every_call {
        caller
            .gc()
            .map_err(|e| format!("gc: stack walk failed: {e}"))?;
    }
    Ok(())
}

fn ty(params: &[ValType], results: &[ValType]) -> FuncType {
    FuncType::new(params.iter().copied(), results.iter().copied())
}

/// The host function `name`, or `None` if the host module has no such function.
fn make(store: &mut Store<HostState>, name: &str) -> Result<Option<Func>> {
    let f = match name {
        "new_ref" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, value: i64| -> Result<Option<ExternRef>, String> {
                maybe_gc(&mut caller)?;
                let live = caller.data().live.clone();
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
        )?,
        "ref_value" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, r: Option<ExternRef>| -> Result<i64, String> {
                maybe_gc(&mut caller)?;
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
        )?,
        "live_refs" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, (): ()| -> Result<i64, String> {
                maybe_gc(&mut caller)?;
                Ok(caller.data().live.get())
            },
        )?,
        "gc" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, (): ()| -> Result<(), String> {
                caller
                    .gc()
                    .map_err(|e| format!("gc: stack walk failed: {e}"))
            },
        )?,
        "backtrace" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, (): ()| -> Result<(), String> {
                maybe_gc(&mut caller)?;
                let frames = caller.backtrace().map_err(|e| format!("backtrace: {e}"))?;
                eprintln!("{}", Backtrace(&frames));
                Ok(())
            },
        )?,
        "frames" => Func::wrap(
            store,
            |mut caller: Caller<'_, HostState>, (): ()| -> Result<i32, String> {
                maybe_gc(&mut caller)?;
                let mut n = 0;
                caller
                    .visit_frames(|_| {
                        n += 1;
                        ControlFlow::<()>::Continue(())
                    })
                    .map_err(|e| format!("frames: {e}"))?;
                Ok(n)
            },
        )?,
        "reenter" => Func::new(
            store,
            ty(&[ValType::FuncRef, ValType::I64], &[ValType::I64]),
            |mut caller, params, results| {
                maybe_gc(&mut caller)?;
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
                    .map_err(|e| -> framewalk::trap::HostError { Box::new(e) })?;
                results[0] = Val::I64(r);
                Ok(())
            },
        )?,
        _ => return Ok(None),
    };
    Ok(Some(f))
}

/// Resolves `module`'s imports against the host module.
pub fn imports(store: &mut Store<HostState>, module: &Module) -> Result<Vec<Extern>> {
    let wanted: Vec<(String, String, framewalk::types::ExternType)> = module
        .imports()
        .map(|(m, n, t)| (m.to_string(), n.to_string(), t))
        .collect();
    let mut out = Vec::new();
    for (m, n, t) in wanted {
        if m != "framewalk" {
            bail!("unknown import `{m}::{n}`: `framewalk run` provides only the `framewalk` host module");
        }
        let Some(f) = make(store, &n)? else {
            bail!("unknown import `framewalk::{n}` (see `framewalk run --help`)");
        };
        let actual = f.ty(&*store)?;
        match &t {
            framewalk::types::ExternType::Func(want) if *want == actual => {}
            other => bail!(
                "import `framewalk::{n}` has type {}, but the host function is {actual}",
                match other {
                    framewalk::types::ExternType::Func(f) => f.to_string(),
                    other => other.kind().to_string(),
                }
            ),
        }
        out.push(Extern::Func(f));
    }
    Ok(out)
}
