//! The `framewalk` command line: run, compile and inspect wasm modules.

mod host;
mod objdump;
#[cfg(feature = "profile")]
mod profile;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use framewalk::{Engine, Func, Module, Store, Val, ValType};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "framewalk",
    version,
    about = "Run Cranelift-compiled WebAssembly and walk its stacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a .wat, .wasm or compiled artifact.
    #[command(after_help = host::HELP)]
    Run {
        /// The module.
        file: PathBuf,
        /// The export to call (default: `main`, or `_start`, or just instantiate).
        #[arg(long)]
        invoke: Option<String>,
        /// Print garbage-collection statistics to stderr at exit.
        #[arg(long)]
        gc_stats: bool,
        /// Run a collection at the start of every call to the `framewalk` host module
        /// (finds rooting bugs: a reference freed too early is reported by `ref_value`).
        #[arg(long)]
        gc_every_call: bool,
        /// Write `/tmp/perf-<PID>.map` (Linux perf's JIT map: `START SIZE NAME` per
        /// wasm function) so that `perf report` names wasm code.
        #[arg(long)]
        perf_map: bool,
        #[cfg(feature = "profile")]
        #[command(flatten)]
        profile: profile::ProfileArgs,
        /// Arguments for the invoked function.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List what an artifact holds: functions, stack maps, trap sites, address map
    /// (all of them unless some are selected).
    Objdump {
        /// The artifact.
        file: PathBuf,
        /// Function names and ranges.
        #[arg(long)]
        functions: bool,
        /// Safepoints with their live slots.
        #[arg(long)]
        stack_maps: bool,
        /// Trap sites.
        #[arg(long)]
        traps: bool,
        /// Text offset -> wasm offset entries.
        #[arg(long)]
        address_map: bool,
    },
    /// Compile a .wat or .wasm into an artifact (an ELF object).
    Compile {
        /// The module.
        file: PathBuf,
        /// Where to write the artifact.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            file,
            invoke,
            gc_stats,
            gc_every_call,
            perf_map,
            #[cfg(feature = "profile")]
            profile,
            args,
        } => run(
            &file,
            invoke.as_deref(),
            &args,
            RunOptions {
                gc_stats,
                gc_every_call,
                perf_map,
                #[cfg(feature = "profile")]
                profile,
            },
        ),
        Command::Compile { file, output } => compile(&file, &output),
        Command::Objdump {
            file,
            functions,
            stack_maps,
            traps,
            address_map,
        } => {
            let all = !(functions || stack_maps || traps || address_map);
            std::fs::read(&file)
                .with_context(|| format!("reading {}", file.display()))
                .and_then(|bytes| {
                    objdump::render(
                        &bytes,
                        objdump::Parts {
                            functions: functions || all,
                            stack_maps: stack_maps || all,
                            traps: traps || all,
                            address_map: address_map || all,
                        },
                    )
                })
                .map(|s| print!("{s}"))
        }
    };
    if let Err(e) = result {
        match e.downcast_ref::<framewalk::Error>() {
            // A trap prints its message and backtrace; its source (a host function's
            // error) is already the message.
            // `{:#}` folds repeated cycles of frames and elides a long middle (a
            // stack overflow is a few lines and counts, not 30,000 lines).
            Some(framewalk::Error::Trap(trap)) => eprintln!("error: {trap:#}"),
            _ => eprintln!("error: {e:#}"),
        }
        std::process::exit(1);
    }
}

fn load(engine: &Engine, file: &Path) -> Result<Module> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let module = if Module::is_artifact(&bytes) {
        Module::deserialize_file(engine, file)
    } else {
        Module::new(engine, &bytes)
    };
    module.with_context(|| format!("loading {}", file.display()))
}

fn compile(file: &Path, output: &Path) -> Result<()> {
    let engine = Engine::new(Default::default())?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let artifact = framewalk::runtime::compile_artifact(&engine, &bytes)
        .with_context(|| format!("compiling {}", file.display()))?;
    std::fs::write(output, artifact).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

fn parse_arg(ty: ValType, s: &str) -> Result<Val> {
    Ok(match ty {
        ValType::I32 => Val::I32(
            s.parse::<i32>()
                .or_else(|_| s.parse::<u32>().map(|v| v as i32))
                .with_context(|| format!("`{s}` is not an i32"))?,
        ),
        ValType::I64 => Val::I64(
            s.parse::<i64>()
                .or_else(|_| s.parse::<u64>().map(|v| v as i64))
                .with_context(|| format!("`{s}` is not an i64"))?,
        ),
        ValType::F32 => Val::F32(
            s.parse::<f32>()
                .with_context(|| format!("`{s}` is not an f32"))?
                .to_bits(),
        ),
        ValType::F64 => Val::F64(
            s.parse::<f64>()
                .with_context(|| format!("`{s}` is not an f64"))?
                .to_bits(),
        ),
        ValType::FuncRef | ValType::ExternRef => {
            if s == "null" {
                Val::default_for(ty)
            } else {
                bail!(
                    "only `null` can be passed for {} parameter",
                    ty.with_article()
                )
            }
        }
    })
}

fn format_val(v: &Val) -> String {
    match v {
        Val::I32(x) => x.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F32(b) => f32::from_bits(*b).to_string(),
        Val::F64(b) => f64::from_bits(*b).to_string(),
        Val::FuncRef(None) | Val::ExternRef(None) => "null".into(),
        Val::FuncRef(Some(_)) => "<funcref>".into(),
        Val::ExternRef(Some(_)) => "<externref>".into(),
    }
}

/// The flags of `framewalk run`.
struct RunOptions {
    gc_stats: bool,
    gc_every_call: bool,
    perf_map: bool,
    #[cfg(feature = "profile")]
    profile: profile::ProfileArgs,
}

/// Appends `module`'s functions to this process's perf JIT map, `/tmp/perf-<PID>.map`.
fn append_perf_map(module: &Module) -> Result<()> {
    use std::io::Write as _;
    let path = PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut lines = Vec::new();
    module.write_perf_map(&mut lines)?;
    file.write_all(&lines)
        .with_context(|| format!("writing {}", path.display()))
}

fn run(file: &Path, invoke: Option<&str>, args: &[String], options: RunOptions) -> Result<()> {
    let RunOptions {
        gc_stats,
        gc_every_call,
        perf_map,
        #[cfg(feature = "profile")]
        profile,
    } = options;
    // The whole backtrace: repeated cycles are folded, a long middle elided, when
    // printed. Modules are described to GDB (`gdb --args framewalk run ...` names
    // wasm frames).
    let engine = Engine::new(framewalk::Config {
        wasm_backtrace_max_frames: None,
        gdb_jit: true,
        ..Default::default()
    })?;
    // The run loads this one module (re-entries instantiate it again, from the same
    // code), so its functions are the whole map.
    let module = load(&engine, file)?;
    if perf_map {
        append_perf_map(&module)?;
    }
    let mut store = Store::new(
        &engine,
        host::HostState {
            live: Default::default(),
            gc_every_call,
        },
    );
    #[cfg(feature = "profile")]
    let result = profile::around(&profile, || run_in(&mut store, &module, invoke, args));
    #[cfg(not(feature = "profile"))]
    let result = run_in(&mut store, &module, invoke, args);
    if gc_stats {
        eprintln!("{}", store.gc_stats());
    }
    result
}

fn run_in(
    store: &mut Store<host::HostState>,
    module: &Module,
    invoke: Option<&str>,
    args: &[String],
) -> Result<()> {
    let instance = host::instantiate(store, module)?;
    let name = match invoke {
        Some(n) => Some(n.to_string()),
        None => ["main", "_start"]
            .iter()
            .find(|n| instance.get_func(&store, n).is_some())
            .map(|n| n.to_string()),
    };
    let Some(name) = name else {
        if !args.is_empty() {
            bail!("arguments given but no function to invoke (use --invoke NAME)");
        }
        return Ok(());
    };
    let func: Func = instance
        .get_func(&store, &name)
        .ok_or_else(|| anyhow!("module has no exported function `{name}`"))?;
    let ty = func.ty(&store)?;
    if args.len() != ty.params().len() {
        bail!(
            "`{name}` has type {ty}: expected {} arguments, got {}",
            ty.params().len(),
            args.len()
        );
    }
    let params = ty
        .params()
        .iter()
        .zip(args)
        .map(|(t, a)| parse_arg(*t, a))
        .collect::<Result<Vec<_>>>()?;
    let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default_for(*t)).collect();
    func.call(&mut *store, &params, &mut results)?;
    for r in &results {
        println!("{}", format_val(r));
    }
    Ok(())
}
