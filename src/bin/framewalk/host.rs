//! The `framewalk` host module that `framewalk run` offers to every module it runs: the
//! library's [`framewalk::host`], with the CLI's help text and error messages.

use anyhow::{anyhow, Result};
use framewalk::host::MODULE;
use framewalk::{Error, Instance, LinkError, Module, Store};

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

/// Instantiates `module` with its imports taken from the host module. An import the
/// host module lacks says where the list of its functions is, or that it is the only
/// module provided.
pub fn instantiate(store: &mut Store<HostState>, module: &Module) -> Result<Instance> {
    let linker = framewalk::host::linker(store.engine());
    linker.instantiate(store, module).map_err(|e| match e {
        Error::Link(LinkError::UnknownImport { ref module, .. }) if module == MODULE => {
            anyhow!("{e} (see `framewalk run --help`)")
        }
        Error::Link(LinkError::UnknownImport { .. }) => {
            anyhow!("{e}: `framewalk run` provides only the `{MODULE}` host module")
        }
        other => other.into(),
    })
}
