//! The `framewalk` command line: run, compile and inspect wasm modules.

mod host;
mod objdump;
#[cfg(feature = "profile")]
mod profile;
mod wasi;

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
    /// Run a .wat, .wasm or compiled artifact. A module that imports
    /// `wasi_snapshot_preview1` runs as a WASI command: `_start` with the arguments
    /// after FILE, exiting with the status it passes to `proc_exit`.
    #[command(after_help = host::HELP)]
    Run {
        /// The module.
        file: PathBuf,
        /// The export to call (default: `main`, or `_start`, or just instantiate). For
        /// a WASI module, the arguments after FILE are then the function's (after
        /// its `_initialize`, if exported).
        #[arg(long)]
        invoke: Option<String>,
        #[command(flatten)]
        wasi: wasi::WasiArgs,
        /// Print garbage-collection statistics to stderr at exit.
        #[arg(long)]
        gc_stats: bool,
        /// Run a collection at the start of every call to the `framewalk` host module
        /// (finds rooting bugs: a reference freed too early is reported by `ref_value`).
        #[arg(long)]
        gc_every_call: bool,
        /// Run FILE even if it is a compiled artifact. An artifact is machine code that
        /// runs in this process unchecked: pass this only for the output of
        /// `framewalk compile` of input you trust, by this version of framewalk.
        #[arg(long)]
        allow_precompiled: bool,
        /// Write `/tmp/perf-<PID>.map` (Linux perf's JIT map: `START SIZE NAME` per
        /// wasm function) so that `perf report` names wasm code.
        #[arg(long)]
        perf_map: bool,
        /// Stop the guest after this much wall-clock time (e.g. `500ms`, `2s`, `1.5s`,
        /// `1m`): it traps with `interrupt` and its backtrace at its next function entry
        /// or loop header. Compiles the checks in (an artifact must then be compiled
        /// with `framewalk compile --epoch-interruption`).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
        #[cfg(feature = "profile")]
        #[command(flatten)]
        profile: profile::ProfileArgs,
        /// Arguments for the invoked function, or a WASI program's arguments (every
        /// word after the first of them is the program's, flags too). A v128 is `0x` and
        /// up to 32 hex digits (lane 0 lowest, as results print) or a shape and its
        /// lanes, lane 0 first: `i32x4:1,2,3,4` (also i8x16, i16x8, i64x2, f32x4, f64x2).
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
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
        /// Compile the epoch checks `framewalk run --timeout` needs.
        #[arg(long)]
        epoch_interruption: bool,
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
            allow_precompiled,
            perf_map,
            timeout,
            wasi,
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
                allow_precompiled,
                perf_map,
                timeout,
                wasi,
                #[cfg(feature = "profile")]
                profile,
            },
        ),
        Command::Compile {
            file,
            output,
            epoch_interruption,
        } => compile(&file, &output, epoch_interruption),
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
        // A WASI program's `proc_exit(n)`: its status, and no message.
        if let Some(status) = wasi::exit_status(&e) {
            std::process::exit(status);
        }
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

fn load(engine: &Engine, file: &Path, allow_precompiled: bool) -> Result<Module> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let module = if Module::is_artifact(&bytes) {
        if !allow_precompiled {
            bail!(
                "{} is a compiled artifact, whose machine code would run unchecked; \
                 run it with --allow-precompiled if it is `framewalk compile` output \
                 of input you trust",
                file.display()
            );
        }
        // SAFETY: the user vouched for the file with --allow-precompiled: it is the
        // output of `framewalk compile` of input they trust (the flag's contract).
        unsafe { Module::deserialize_file(engine, file) }
    } else {
        Module::new(engine, &bytes)
    };
    module.with_context(|| format!("loading {}", file.display()))
}

/// A duration as `--timeout` takes it: a number with a unit (`ms`, `s`, `m`), or plain
/// seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 2s, 1.5s, 1m)"))?;
    std::time::Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 2s, 1.5s, 1m)"))
}

fn compile(file: &Path, output: &Path, epoch_interruption: bool) -> Result<()> {
    let engine = Engine::new(framewalk::Config {
        epoch_interruption,
        ..Default::default()
    })?;
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
        ValType::V128 => Val::V128(parse_v128(s)?),
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

/// A `v128` argument: `0x` and 1 to 32 hex digits (the 128 bits, lane 0 lowest, as
/// results print), or a shape and its lanes, lane 0 first: `i32x4:1,2,3,-4`
/// (shapes `i8x16`, `i16x8`, `i32x4`, `i64x2`, `f32x4`, `f64x2`; integer lanes signed
/// or unsigned).
fn parse_v128(s: &str) -> Result<u128> {
    let bad = || format!("`{s}` is not a v128 (`0x` and 32 hex digits, or e.g. `i32x4:1,2,3,4`)");
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let hex = hex.replace('_', "");
        if hex.is_empty() || hex.len() > 32 {
            bail!(bad());
        }
        return u128::from_str_radix(&hex, 16).with_context(bad);
    }
    let (shape, lanes) = s.split_once(':').with_context(bad)?;
    let lanes: Vec<&str> = lanes.split(',').map(str::trim).collect();
    let (count, width) = match shape {
        "i8x16" => (16, 8),
        "i16x8" => (8, 16),
        "i32x4" | "f32x4" => (4, 32),
        "i64x2" | "f64x2" => (2, 64),
        _ => bail!(bad()),
    };
    if lanes.len() != count {
        bail!("`{s}`: {shape} has {count} lanes, not {}", lanes.len());
    }
    let mut bits = 0u128;
    for (i, lane) in lanes.iter().enumerate() {
        let lane_bits: u64 = match shape {
            "f32x4" => u64::from(
                lane.parse::<f32>()
                    .with_context(|| format!("`{lane}` is not an f32"))?
                    .to_bits(),
            ),
            "f64x2" => lane
                .parse::<f64>()
                .with_context(|| format!("`{lane}` is not an f64"))?
                .to_bits(),
            _ => {
                let v: i128 = lane
                    .parse()
                    .with_context(|| format!("`{lane}` is not an integer"))?;
                let (min, max) = (-(1i128 << (width - 1)), (1i128 << width) - 1);
                if v < min || v > max {
                    bail!("`{lane}` does not fit a {width}-bit lane");
                }
                (v as u64) & (u64::MAX >> (64 - width))
            }
        };
        bits |= u128::from(lane_bits) << (i * width);
    }
    Ok(bits)
}

fn format_val(v: &Val) -> String {
    match v {
        Val::V128(b) => format!("{b:#034x}"),
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
    allow_precompiled: bool,
    perf_map: bool,
    timeout: Option<std::time::Duration>,
    wasi: wasi::WasiArgs,
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
        allow_precompiled,
        perf_map,
        timeout,
        wasi: wasi_flags,
        #[cfg(feature = "profile")]
        profile,
    } = options;
    // The whole backtrace: repeated cycles are folded, a long middle elided, when
    // printed. Modules are described to GDB (`gdb --args framewalk run ...` names
    // wasm frames).
    let engine = Engine::new(framewalk::Config {
        wasm_backtrace_max_frames: None,
        gdb_jit: true,
        epoch_interruption: timeout.is_some(),
        ..Default::default()
    })?;
    // The run loads this one module (re-entries instantiate it again, from the same
    // code), so its functions are the whole map.
    let module = load(&engine, file, allow_precompiled)?;
    if perf_map {
        append_perf_map(&module)?;
    }
    // A WASI command's arguments are the words after FILE, with its name first; with
    // --invoke they are the function's.
    let is_wasi = wasi::imports_wasi(&module);
    let mut argv = vec![file.display().to_string()];
    if is_wasi && invoke.is_none() {
        argv.extend_from_slice(args);
    }
    let mut store = Store::new(
        &engine,
        host::RunState {
            host: host::HostState {
                live: Default::default(),
                gc_every_call,
            },
            wasi: wasi::context(&wasi_flags, &argv)?,
        },
    );
    if let Some(timeout) = timeout {
        // The deadline is the next epoch, which a timer thread starts when the time is
        // up; the process ends with the run, the thread with it.
        store.set_epoch_deadline(1);
        let engine = engine.clone();
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            engine.increment_epoch();
        });
    }
    let run = || {
        if is_wasi && invoke.is_none() {
            run_command(&mut store, &module)
        } else {
            run_in(&mut store, &module, invoke, args, is_wasi)
        }
    };
    #[cfg(feature = "profile")]
    let result = profile::around(&profile, run);
    #[cfg(not(feature = "profile"))]
    let result = {
        let mut run = run;
        run()
    };
    if gc_stats {
        eprintln!("{}", store.gc_stats());
    }
    result
}

/// Runs a WASI command: `_start`, whose arguments are in the WASI context.
fn run_command(store: &mut Store<host::RunState>, module: &Module) -> Result<()> {
    let instance = host::instantiate(store, module)?;
    if instance.get_func(&*store, "_start").is_none() {
        bail!("the WASI module exports no `_start` (call a reactor's function with --invoke NAME)");
    }
    let start = instance.get_typed_func::<(), ()>(&*store, "_start")?;
    start.call(&mut *store, ())?;
    Ok(())
}

fn run_in(
    store: &mut Store<host::RunState>,
    module: &Module,
    invoke: Option<&str>,
    args: &[String],
    is_wasi: bool,
) -> Result<()> {
    let instance = host::instantiate(store, module)?;
    // A WASI reactor initializes itself before any other export is called.
    if is_wasi {
        if let Ok(init) = instance.get_typed_func::<(), ()>(&*store, "_initialize") {
            init.call(&mut *store, ())?;
        }
    }
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
