//! A sampling profiler for wasm guests.
//!
//! [`Sampler::start`] arms a timer on the calling thread's CPU time; at each tick a
//! SIGPROF handler records what the thread is doing: the exact wasm stack when it runs
//! wasm code (at any instruction: prologues, epilogues and tail calls included, see
//! [`classify`]), the wasm stack below a host function that wasm called, or the kind of
//! code it is in otherwise ([`SampleKind`]). [`Sampler::stop`] symbolizes each distinct
//! PC once (function names, wasm offsets, source lines and inlined frames from the
//! module's DWARF) and returns a [`Profile`], which writes
//!
//! - `.folded`: one line per distinct stack, root first, frames joined by `;`, a space
//!   and the sample count ([`Profile::write_folded`], what flame-graph tools read);
//! - `.json`: the Firefox Profiler's processed format ([`Profile::write_json`]);
//! - `.svg`: a flame graph ([`Profile::write_svg`]).
//!
//! ```
//! use framewalk::profile::{Sampler, SamplerConfig};
//! use framewalk::{Engine, Instance, Module, Store};
//!
//! let engine = Engine::new(Default::default())?;
//! let module = Module::new(&engine, br#"(module (func (export "spin") (param i32)
//!     (loop (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#)?;
//! let mut store = Store::new(&engine, ());
//! let instance = Instance::new(&mut store, &module, &[])?;
//! let spin = instance.get_typed_func::<i32, ()>(&mut store, "spin")?;
//! let sampler = Sampler::start(SamplerConfig { hz: 1000, ..Default::default() })?;
//! spin.call(&mut store, 1_000_000)?;
//! let profile = sampler.stop();
//! let summary = profile.summary();
//! assert_eq!(summary.taken, profile.samples().len() as u64);
//! let mut folded = Vec::new();
//! profile.write_folded(&mut folded)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The handler allocates nothing, takes no lock and cannot panic; a full sample ring
//! drops samples and counts them. Nothing is added to generated code, and nothing runs
//! while no sampler is started (the one cost of the feature is a scan of each module's
//! code at load for its frame states).
//!
//! Cost of a sample: the handler's own work (reading the activations, classifying, the
//! walk, writing the ring; `cargo bench --bench profile`) is a few hundred nanoseconds
//! plus 2–3 ns a frame. The sample ring is made resident ahead of the handler (see
//! [`SamplerConfig::buffer_bytes`]) so that it does not take page faults. What a sample
//! costs the program beyond that is the kernel's: the timer interrupt and the signal's
//! delivery and return, on a virtual machine tens of microseconds with the `Wall`
//! clock's high-resolution timer ([`SampleClock`]).

pub mod classify;
mod output;
mod sampler;

pub use classify::{FrameState, FrameStateTable, SampleKind};
pub use sampler::{SampleClock, Sampler, SamplerConfig, MAX_FRAMES};

use std::collections::HashMap;
use std::time::Duration;

use classify::RawFrame;

/// Why profiling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The configuration is out of range.
    #[error("invalid profiler configuration: {0}")]
    InvalidConfig(String),
    /// The calling thread already has a running sampler.
    #[error("this thread is already being sampled")]
    AlreadySampling,
    /// The operating system refused a call.
    #[error("{what} failed: {source}")]
    Os {
        /// The call.
        what: &'static str,
        /// Its error.
        source: std::io::Error,
    },
    /// The output format is not known (by extension).
    #[error("unknown profile format {0:?} (use .folded, .json or .svg)")]
    UnknownFormat(String),
    /// Writing the output failed.
    #[error("writing the profile: {0}")]
    Write(#[from] std::io::Error),
    /// The flame graph could not be drawn.
    #[error("drawing the flame graph: {0}")]
    FlameGraph(String),
}

/// One frame of a profile: a wasm function (or an inlined function in one), or a
/// synthetic frame such as `[host]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileFrame {
    /// The name outputs show: the source function (demangled) for a module with DWARF,
    /// else the name section's, else `wasm-function[N]`; or the synthetic label.
    pub name: String,
    /// The module's name, if it has one.
    pub module: Option<String>,
    /// The function's index in its module (`None` for synthetic frames).
    pub func_index: Option<u32>,
    /// The wasm offset of the instruction, if known.
    pub wasm_offset: Option<u32>,
    /// The source file, from DWARF.
    pub file: Option<String>,
    /// The source line, from DWARF.
    pub line: Option<u32>,
    /// Whether this frame is a function inlined into the frame below it.
    pub inlined: bool,
}

impl ProfileFrame {
    fn synthetic(label: &str) -> Self {
        ProfileFrame {
            name: label.to_string(),
            module: None,
            func_index: None,
            wasm_offset: None,
            file: None,
            line: None,
            inlined: false,
        }
    }
}

/// One sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// What the thread was doing.
    pub kind: SampleKind,
    /// When, from the sampler's start (wall-clock time).
    pub time: Duration,
    /// The stack, root first: indices into [`Profile::frames`]. A `Wasm` sample ends
    /// with the interrupted function; the other kinds end with their synthetic frame
    /// (`[host]`, `[transition]`, ...), on top of the wasm frames for `Host`.
    pub stack: Vec<usize>,
    /// The stack was deeper than [`MAX_FRAMES`]: its oldest frames are missing (its
    /// root is a `[truncated]` frame).
    pub truncated: bool,
}

/// Counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Samples recorded.
    pub taken: u64,
    /// Samples dropped because the ring was full.
    pub dropped: u64,
    /// Samples by kind (index: `SampleKind as usize`).
    pub by_kind: [u64; SampleKind::ALL.len()],
}

impl Summary {
    /// Samples of `kind`.
    pub fn count(&self, kind: SampleKind) -> u64 {
        self.by_kind[kind as usize]
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "samples: {} taken, {} dropped; {} in wasm, {} in host code called from wasm, \
             {} in a transition, {} in a libcall, {} outside wasm",
            self.taken,
            self.dropped,
            self.count(SampleKind::Wasm),
            self.count(SampleKind::Host),
            self.count(SampleKind::Transition),
            self.count(SampleKind::Libcall),
            self.count(SampleKind::OutsideWasm),
        )?;
        let unwalkable = self.count(SampleKind::Unwalkable);
        if unwalkable > 0 {
            write!(f, ", {unwalkable} unwalkable")?;
        }
        Ok(())
    }
}

/// The samples of a run, symbolized.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    interval: Duration,
    frames: Vec<ProfileFrame>,
    samples: Vec<Sample>,
    summary: Summary,
}

impl Profile {
    /// The sampling interval (of thread CPU time).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Every distinct frame; samples refer to them by index.
    pub fn frames(&self) -> &[ProfileFrame] {
        &self.frames
    }

    /// The samples, in the order they were taken.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The counts.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// The names of a sample's stack, root first.
    pub fn stack_names<'a>(&'a self, sample: &'a Sample) -> impl Iterator<Item = &'a str> + 'a {
        sample.stack.iter().map(|&i| self.frames[i].name.as_str())
    }

    /// Adds the samples of `other` (another thread's, say) to this profile.
    pub fn merge(&mut self, other: &Profile) {
        let mut index: HashMap<ProfileFrame, usize> = self
            .frames
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, f)| (f, i))
            .collect();
        let remap: Vec<usize> = other
            .frames
            .iter()
            .map(|f| {
                *index.entry(f.clone()).or_insert_with(|| {
                    self.frames.push(f.clone());
                    self.frames.len() - 1
                })
            })
            .collect();
        for s in &other.samples {
            self.samples.push(Sample {
                stack: s.stack.iter().map(|&i| remap[i]).collect(),
                ..s.clone()
            });
        }
        self.summary.taken += other.summary.taken;
        self.summary.dropped += other.summary.dropped;
        for (a, b) in self.summary.by_kind.iter_mut().zip(other.summary.by_kind) {
            *a += b;
        }
        if self.interval.is_zero() {
            self.interval = other.interval;
        }
    }

    /// The distinct stacks (names root first, joined by `;`) and their sample counts,
    /// sorted by stack: the lines of the `.folded` output.
    pub fn folded(&self) -> Vec<(String, u64)> {
        let mut counts: HashMap<&[usize], u64> = HashMap::new();
        for s in &self.samples {
            *counts.entry(&s.stack).or_default() += 1;
        }
        let mut lines: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(stack, n)| {
                let names: Vec<std::borrow::Cow<'_, str>> = stack
                    .iter()
                    .map(|&i| folded_name(&self.frames[i].name))
                    .collect();
                (names.join(";"), n)
            })
            .collect();
        lines.sort();
        // Two frames may print alike (same name, other offsets): merge their lines.
        lines.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
        lines
    }

    /// Writes the `.folded` format: one line per distinct stack, root first, frames
    /// joined by `;`, then a space and the sample count.
    pub fn write_folded(&self, out: &mut dyn std::io::Write) -> Result<(), ProfileError> {
        for (stack, n) in self.folded() {
            writeln!(out, "{stack} {n}")?;
        }
        Ok(())
    }

    /// Writes the profile to `path` in the format its extension names (`.folded`,
    /// `.json`, `.svg`).
    ///
    /// # Errors
    ///
    /// [`ProfileError::UnknownFormat`] for another extension; any error writing.
    pub fn write_to_path(&self, path: &std::path::Path) -> Result<(), ProfileError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let write: fn(&Profile, &mut dyn std::io::Write) -> Result<(), ProfileError> =
            match ext.as_str() {
                "folded" => Profile::write_folded,
                "json" => Profile::write_json,
                "svg" => Profile::write_svg,
                _ => return Err(ProfileError::UnknownFormat(ext)),
            };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        write(self, &mut file)?;
        std::io::Write::flush(&mut file)?;
        Ok(())
    }
}

/// A frame name as the folded format can carry it: no `;` (the separator) and no
/// line break.
fn folded_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains([';', '\n', '\r']) {
        name.replace([';', '\n', '\r'], "_").into()
    } else {
        name.into()
    }
}

/// What one recorded PC symbolizes to: its frames, outermost first (a function with
/// inlined calls expands to several).
fn symbolize(raw: &RawFrame, exact: bool) -> Vec<ProfileFrame> {
    use crate::runtime::registry::REGISTRY;
    let found = REGISTRY.with_view(|view| {
        let (loc, data) = view.lookup_with_data(raw.pc)?;
        if loc.module != raw.module {
            return None; // another module now lives at this address
        }
        let frame = crate::unwind::Frame {
            pc: raw.pc,
            fp: 0,
            sp: 0,
            location: loc,
            activation_index: 0,
        };
        // The module is registered in this view: `data` is its live `ModuleInner`.
        Some(crate::runtime::registry::symbolize(
            &frame,
            exact,
            Some(data),
        ))
    });
    let Some(info) = found else {
        return vec![ProfileFrame {
            name: format!("wasm-function[{}]", raw.func_index),
            module: Some(format!("<unloaded module {}>", raw.module)),
            func_index: Some(raw.func_index),
            wasm_offset: None,
            file: None,
            line: None,
            inlined: false,
        }];
    };
    let module = info.module_name.as_deref().map(str::to_string);
    let own_name = info
        .func_name
        .as_deref()
        .map(|n| crate::trap::display_name(n).into_owned())
        .unwrap_or_else(|| format!("wasm-function[{}]", info.func_index));
    if info.source.is_empty() {
        return vec![ProfileFrame {
            name: own_name,
            module,
            func_index: Some(info.func_index),
            wasm_offset: info.wasm_offset,
            file: None,
            line: None,
            inlined: false,
        }];
    }
    // Source locations are innermost first; frames go outermost first.
    info.source
        .iter()
        .rev()
        .map(|loc| ProfileFrame {
            name: loc
                .display_function()
                .map(|n| n.into_owned())
                .unwrap_or_else(|| own_name.clone()),
            module: module.clone(),
            func_index: Some(info.func_index),
            wasm_offset: info.wasm_offset,
            file: loc.file.as_deref().map(str::to_string),
            line: loc.line,
            inlined: loc.inlined,
        })
        .collect()
}

/// The profile of the raw ring contents (see `sampler`'s module docs).
fn build_profile(
    interval: Duration,
    slots: &[RawFrame],
    by_kind: [u64; SampleKind::ALL.len()],
    dropped: u64,
) -> Profile {
    let mut profile = Profile {
        interval,
        summary: Summary {
            taken: by_kind.iter().sum(),
            dropped,
            by_kind,
        },
        ..Profile::default()
    };
    let mut frame_ids: HashMap<ProfileFrame, usize> = HashMap::new();
    let mut intern = |profile: &mut Profile, f: ProfileFrame| -> usize {
        *frame_ids.entry(f.clone()).or_insert_with(|| {
            profile.frames.push(f);
            profile.frames.len() - 1
        })
    };
    // Each distinct (PC, exactness) is symbolized once.
    let mut symbolized: HashMap<(usize, usize, bool), Vec<usize>> = HashMap::new();
    let mut i = 0;
    while i < slots.len() {
        let header = slots[i];
        let n = header.func_index as usize;
        let Some(kind) = SampleKind::from_raw(header.pc as u8) else {
            break;
        };
        let truncated = header.pc & 0x100 != 0;
        let Some(raw) = slots.get(i + 1..i + 1 + n) else {
            break;
        };
        i += 1 + n;
        let mut stack = Vec::new();
        if truncated {
            stack.push(intern(&mut profile, ProfileFrame::synthetic("[truncated]")));
        }
        // Newest first in the ring; root first in the profile.
        for (depth, frame) in raw.iter().enumerate().rev() {
            let exact = kind == SampleKind::Wasm && depth == 0;
            let key = (frame.module, frame.pc, exact);
            let ids = symbolized.entry(key).or_insert_with(|| {
                symbolize(frame, exact)
                    .into_iter()
                    .map(|f| intern(&mut profile, f))
                    .collect()
            });
            stack.extend_from_slice(ids);
        }
        if let Some(label) = kind.leaf_label() {
            stack.push(intern(&mut profile, ProfileFrame::synthetic(label)));
        }
        profile.samples.push(Sample {
            kind,
            time: Duration::from_nanos(header.module as u64),
            stack,
            truncated,
        });
    }
    profile
}
