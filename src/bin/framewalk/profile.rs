//! `framewalk run --profile PATH [--profile-hz N]`: sample the run's wasm stacks.

use anyhow::{Context, Result};
use framewalk::profile::{SampleClock, Sampler, SamplerConfig};
use std::path::PathBuf;

/// The profiling flags of `framewalk run`.
#[derive(clap::Args, Debug, Default)]
pub struct ProfileArgs {
    /// Sample the run's stacks and write the profile here, in the format the
    /// extension names: `.folded` (flame-graph tools' input), `.json` (the Firefox
    /// Profiler) or `.svg` (a flame graph). A summary goes to stderr.
    #[arg(long, value_name = "PATH")]
    pub profile: Option<PathBuf>,
    /// Samples per second of the thread's CPU time (or of wall-clock time with
    /// `--profile-clock wall`).
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "profile")]
    pub profile_hz: u32,
    /// The clock that paces samples: `cpu`, the thread's CPU time (Linux checks it on
    /// its scheduler tick, so at most CONFIG_HZ samples a second, often 250), or `wall`
    /// (a high-resolution timer: any rate, waiting time sampled too).
    #[arg(
        long,
        value_name = "CLOCK",
        default_value = "cpu",
        requires = "profile"
    )]
    pub profile_clock: ProfileClock,
}

/// `--profile-clock`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum ProfileClock {
    /// The thread's CPU time.
    #[default]
    Cpu,
    /// Wall-clock time.
    Wall,
}

/// Runs `run` under a sampler if `--profile` was given; the profile is written (and
/// the summary printed) even when the run fails.
pub fn around<T>(args: &ProfileArgs, run: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(path) = &args.profile else {
        return run();
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !["folded", "json", "svg"].contains(&ext) {
        anyhow::bail!(
            "--profile {}: the extension must be .folded, .json or .svg",
            path.display()
        );
    }
    let sampler = Sampler::start(SamplerConfig {
        hz: args.profile_hz,
        clock: match args.profile_clock {
            ProfileClock::Cpu => SampleClock::ThreadCpuTime,
            ProfileClock::Wall => SampleClock::Wall,
        },
        ..Default::default()
    })
    .context("starting the profiler")?;
    let result = run();
    let profile = sampler.stop();
    eprintln!("profile: {}", profile.summary());
    profile
        .write_to_path(path)
        .with_context(|| format!("writing {}", path.display()))?;
    result
}
