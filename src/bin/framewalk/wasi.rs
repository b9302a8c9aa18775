//! WASI preview 1 for `framewalk run` ([`framewalk::wasi`]): its flags, the program's
//! context, and the exit status of `proc_exit`. Without the `wasi` feature the flags
//! remain and a module importing WASI is refused with a message that says so.

use anyhow::Result;
#[cfg(feature = "wasi")]
use anyhow::{bail, Context as _};
use framewalk::{Linker, Module};

/// The import module of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// The flags of `framewalk run` for WASI programs.
#[derive(clap::Args, Debug, Default)]
pub struct WasiArgs {
    /// Set the environment variable NAME to VALUE for a WASI program (repeatable; the
    /// program sees no other variable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Preopen the host directory HOST for a WASI program as GUEST (default: HOST as
    /// written), e.g. `--dir data::/data`. Its paths stay beneath HOST: `..` and
    /// symbolic links that lead outside are refused (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
}

/// The WASI context kept in the store's host data.
#[cfg(feature = "wasi")]
pub type Context = framewalk::wasi::WasiCtx;
/// The WASI context kept in the store's host data (none without the `wasi` feature).
#[cfg(not(feature = "wasi"))]
pub type Context = ();

/// Whether `module` imports anything from WASI preview 1.
pub fn imports_wasi(module: &Module) -> bool {
    module.imports().any(|(m, _, _)| m == MODULE)
}

/// The context of a program with arguments `argv` (its name first) and the flags'
/// environment and preopened directories, with the process's stdin, stdout and
/// stderr.
#[cfg(feature = "wasi")]
pub fn context(flags: &WasiArgs, argv: &[String]) -> Result<Context> {
    use framewalk::wasi::{open_dir, WasiCtxBuilder};
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdio().args(argv)?;
    for var in &flags.env {
        let Some((name, value)) = var.split_once('=') else {
            bail!("--env {var}: expected NAME=VALUE");
        };
        builder.env(name, value)?;
    }
    for dir in &flags.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
        let opened = open_dir(host).with_context(|| format!("--dir {dir}: opening {host}"))?;
        builder
            .preopened_dir(opened, guest)
            .with_context(|| format!("--dir {dir}"))?;
    }
    Ok(builder.build())
}

/// Without the `wasi` feature: the flags are refused.
#[cfg(not(feature = "wasi"))]
pub fn context(flags: &WasiArgs, _argv: &[String]) -> Result<Context> {
    if !flags.env.is_empty() || !flags.dirs.is_empty() {
        anyhow::bail!("--env and --dir need framewalk built with the `wasi` feature");
    }
    Ok(())
}

/// Defines WASI preview 1 in `linker`, on the context `get_cx` finds.
#[cfg(feature = "wasi")]
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get_cx: impl Fn(&mut T) -> &mut Context + Copy + Send + Sync + 'static,
) -> Result<()> {
    Ok(framewalk::wasi::add_to_linker(linker, get_cx)?)
}

/// Without the `wasi` feature there is nothing to define.
#[cfg(not(feature = "wasi"))]
pub fn add_to_linker<T: 'static>(
    _linker: &mut Linker<T>,
    _get_cx: impl Fn(&mut T) -> &mut Context + Copy + Send + Sync + 'static,
) -> Result<()> {
    Ok(())
}

/// What an unknown import's message adds: the host modules `framewalk run` provides.
pub const PROVIDED: &str = if cfg!(feature = "wasi") {
    "`framewalk run` provides only the `framewalk` and `wasi_snapshot_preview1` host modules"
} else {
    "`framewalk run` provides only the `framewalk` host module (this build has no `wasi` \
     feature for `wasi_snapshot_preview1`)"
};

/// The status the program passed to `proc_exit`, if that is how `error` came about.
pub fn exit_status(error: &anyhow::Error) -> Option<i32> {
    #[cfg(feature = "wasi")]
    {
        error
            .downcast_ref::<framewalk::Error>()
            .and_then(framewalk::wasi::exit_status)
    }
    #[cfg(not(feature = "wasi"))]
    {
        let _ = error;
        None
    }
}
