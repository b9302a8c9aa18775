//! The `framewalk` host module that `framewalk run` offers to every module it runs: the
//! library's [`framewalk::host`], with the CLI's help text and error messages.

use anyhow::{anyhow, Result};
use framewalk::host::ImportError;
use framewalk::{Extern, Module, Store};

pub use framewalk::host::HostState;

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

/// Resolves `module`'s imports against the host module.
pub fn imports(store: &mut Store<HostState>, module: &Module) -> Result<Vec<Extern>> {
    framewalk::host::imports(store, module).map_err(|e| match e {
        ImportError::UnknownModule { module, name } => anyhow!(
            "unknown import `{module}::{name}`: `framewalk run` provides only the `framewalk` host module"
        ),
        ImportError::UnknownFunction { name } => {
            anyhow!("unknown import `framewalk::{name}` (see `framewalk run --help`)")
        }
        other => other.into(),
    })
}
