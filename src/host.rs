//! The built-in host module `framewalk`: externrefs, collections, re-entry and stack
//! inspection for modules written in `.wat`. `framewalk run` offers it to every module
//! it runs; embedders and tests get the same functions from [`imports`] (all of a
//! module's imports) or [`func`] (one function).
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

use crate::runtime::{Caller, Error, Extern, Func, HostError, Module, Store, Val};
use crate::trap::Backtrace;
use crate::types::{ExternType, FuncType, ValType};
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

/// Why [`imports`] could not provide a module's imports.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The import is from another module than [`MODULE`].
    #[error("unknown import `{module}::{name}`: only the `framewalk` host module is provided")]
    UnknownModule {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// The host module has no function of this name.
    #[error("unknown import `framewalk::{name}`")]
    UnknownFunction {
        /// The import's field name.
        name: String,
    },
    /// The module imports the function (or a non-function) with another type.
    #[error("import `framewalk::{name}` has type {wanted}, but the host function is {actual}")]
    IncompatibleType {
        /// The import's field name.
        name: String,
        /// The type the module asks for (a function type, or the kind of extern).
        wanted: String,
        /// The host function's type.
        actual: FuncType,
    },
    /// Creating the host function failed.
    #[error(transparent)]
    Runtime(#[from] Error),
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

fn maybe_gc(caller: &mut Caller<'_, HostState>) -> Result<(), String> {
    if caller.data().gc_every_call {
        caller
            .gc()
            .map_err(|e| format!("gc: stack walk failed: {e}"))?;
    }
    Ok(())
}

/// The host module's function `name` in `store`, or `None` if it has no such function.
pub fn func(store: &mut Store<HostState>, name: &str) -> Result<Option<Func>, Error> {
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
            FuncType::new([ValType::FuncRef, ValType::I64], [ValType::I64]),
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
                    .map_err(|e| -> HostError { Box::new(e) })?;
                results[0] = Val::I64(r);
                Ok(())
            },
        )?,
        _ => return Ok(None),
    };
    Ok(Some(f))
}

/// `module`'s imports, in its import order, from the host module: each must be a
/// function of [`MODULE`] with the type the host function has.
pub fn imports(store: &mut Store<HostState>, module: &Module) -> Result<Vec<Extern>, ImportError> {
    let mut out = Vec::new();
    for (module, name, ty) in module.imports() {
        if module != MODULE {
            return Err(ImportError::UnknownModule {
                module: module.to_string(),
                name: name.to_string(),
            });
        }
        let name = name.to_string();
        let Some(f) = func(store, &name)? else {
            return Err(ImportError::UnknownFunction { name });
        };
        let actual = f.ty(&*store)?;
        match ty {
            ExternType::Func(want) if want == actual => {}
            other => {
                let wanted = match other {
                    ExternType::Func(f) => f.to_string(),
                    other => other.kind().to_string(),
                };
                return Err(ImportError::IncompatibleType {
                    name,
                    wanted,
                    actual,
                });
            }
        }
        out.push(Extern::Func(f));
    }
    Ok(out)
}
