//! The host modules that `framewalk run` offers to every module it runs: the library's
//! [`framewalk::host`], with the CLI's help text and error messages, and WASI preview 1
//! ([`crate::wasi`]).

use anyhow::{anyhow, Result};
use framewalk::host::MODULE;
use framewalk::{Error, Instance, LinkError, Linker, Module, Store};

pub use framewalk::host::HostState;

/// The host data of a run: the host module's state and the WASI context.
pub struct RunState {
    /// The `framewalk` host module's state.
    pub host: HostState,
    /// WASI's context (arguments, environment, stdio, preopened directories).
    pub wasi: crate::wasi::Context,
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

/// Instantiates `module` with its imports taken from the host modules. An import the
/// `framewalk` module lacks says where the list of its functions is; one of another
/// module names the modules provided.
pub fn instantiate(store: &mut Store<RunState>, module: &Module) -> Result<Instance> {
    let mut linker = Linker::new(store.engine());
    framewalk::host::add_to_linker_with(&mut linker, |s: &RunState| &s.host)?;
    crate::wasi::add_to_linker(&mut linker, |s: &mut RunState| &mut s.wasi)?;
    linker.instantiate(store, module).map_err(|e| match e {
        Error::Link(LinkError::UnknownImport { ref module, .. }) if module == MODULE => {
            anyhow!("{e} (see `framewalk run --help`)")
        }
        Error::Link(LinkError::UnknownImport { .. }) => {
            anyhow!("{e}: {}", crate::wasi::PROVIDED)
        }
        other => other.into(),
    })
}
