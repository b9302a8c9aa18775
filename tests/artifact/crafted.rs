//! Crafted artifacts: every metadata byte of a real artifact edited on purpose, the
//! checksum recomputed the way the writer does, then loaded, instantiated and run in a
//! child process, so that a crash is counted rather than fatal.
//!
//! "Metadata" is every byte of the file the loader parses except the machine code:
//! the ELF header, the section header table, and every section but `.text`. Each byte
//! is set to a few values (`xor 0x01`, `0xff`, `0x00`, `0x80`; a value equal to the
//! byte is skipped). The child (this test binary run again with
//! [`CHILD_ENV`] naming the edit) loads the artifact, instantiates it with the
//! `framewalk` host module, calls every export and prints what each call returned. The
//! parent classifies the child's end:
//!
//! ```text
//! error      the load or instantiation returned an error (a clean, typed rejection)
//! same       ran, and every call returned what the unedited artifact returns
//! differs    ran to the end (exit 0), but some call returned something else
//! panic      a Rust panic (untrusted input must never panic)
//! crash      killed by a signal
//! overflow   the process's Rust stack overflowed
//! hang       still running after the timeout (killed)
//! ```
//!
//! Size: `FRAMEWALK_CRAFTED_STRIDE=N` edits every Nth byte of each region (1: every
//! byte, the full experiment); the default keeps a CI run short. The per-region counts
//! are printed (`--nocapture`).

use framewalk::artifact::sections;
use framewalk::{Engine, Module, Store, Val};
use object::{Object, ObjectSection};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Names the edit the child applies: `PATH:OFFSET:OP` (`OP` an [`Edit`] index), or
/// `PATH` alone for the unedited artifact.
pub const CHILD_ENV: &str = "FRAMEWALK_CRAFTED_CHILD";

/// The module: imports (the `framewalk` host module), exports, calls between defined
/// functions (relocations), Cranelift float libcalls, memory and table growth
/// (libcalls), a funcref table with `call_indirect`, an externref table and global,
/// references live across calls (stack maps), host re-entry, every kind of trap, and a
/// function with more arguments than registers (an entry trampoline).
pub const WAT: &str = r#"
(module $crafted
  (import "framewalk" "new_ref" (func $new_ref (param i64) (result externref)))
  (import "framewalk" "ref_value" (func $ref_value (param externref) (result i64)))
  (import "framewalk" "live_refs" (func $live_refs (result i64)))
  (import "framewalk" "gc" (func $gc))
  (import "framewalk" "reenter" (func $reenter (param funcref i64) (result i64)))
  (type $unary (func (param i64) (result i64)))
  (memory 1 4)
  (data (i32.const 16) "framewalk")
  (table $funcs 4 funcref)
  (elem (table $funcs) (i32.const 0) func $double $square $level)
  (table $refs 2 externref)
  (global $kept (mut externref) (ref.null extern))
  (global $divisor (mut i32) (i32.const 7))
  (func $double (type $unary) (i64.mul (local.get 0) (i64.const 2)))
  (func $square (type $unary) (i64.mul (local.get 0) (local.get 0)))
  (func $level (type $unary)
    (local $r externref)
    (local.set $r (call $new_ref (i64.mul (local.get 0) (i64.const 100))))
    (drop (call $new_ref (i64.const -1)))
    (i64.add
      (if (result i64) (i64.eqz (local.get 0))
        (then (call $gc) (call $live_refs))
        (else (call $reenter (ref.func $level) (i64.sub (local.get 0) (i64.const 1)))))
      (call $ref_value (local.get $r))))
  (func (export "refs") (param i64) (result i64)
    (local $a externref)
    (local.set $a (call $new_ref (local.get 0)))
    (table.set $refs (i32.const 1) (call $new_ref (i64.const 5)))
    (global.set $kept (local.get $a))
    (call $gc)
    (i64.add
      (i64.add (call $ref_value (local.get $a))
               (call $ref_value (table.get $refs (i32.const 1))))
      (i64.add (call $level (i64.const 2)) (call $ref_value (global.get $kept)))))
  (func (export "apply") (param i32 i64) (result i64)
    (call_indirect $funcs (type $unary) (local.get 1) (local.get 0)))
  (func (export "calls") (param i64) (result i64)
    (i64.add (call $double (local.get 0)) (call $square (local.get 0))))
  (func (export "grow") (result i32)
    (drop (table.grow $refs (ref.null extern) (i32.const 1)))
    (i32.add (memory.grow (i32.const 1)) (table.size $refs)))
  (func (export "floats") (param f32 f64) (result f64)
    (f64.add (f64.promote_f32 (f32.nearest (local.get 0)))
             (f64.add (f64.floor (local.get 1)) (f64.ceil (local.get 1)))))
  (func (export "traps") (param i32) (result i32)
    (if (i32.eqz (local.get 0)) (then unreachable))
    (drop (i32.load (i32.mul (local.get 0) (i32.const 0x4000))))
    (i32.div_s (i32.const 1000) (i32.sub (local.get 0) (i32.const 1))))
  (func (export "many") (param i64 i64 i64 i64 i64 i64 i64 i64 f64 i32) (result i64 f64)
    (i64.add (local.get 0) (i64.add (local.get 7) (i64.extend_i32_u (local.get 9))))
    (f64.add (local.get 8) (f64.const 0.5)))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))
"#;

/// The calls the child makes: export name and arguments.
fn calls() -> Vec<(&'static str, Vec<Val>)> {
    let f32 = |x: f32| Val::F32(x.to_bits());
    let f64 = |x: f64| Val::F64(x.to_bits());
    vec![
        ("refs", vec![Val::I64(3)]),
        ("apply", vec![Val::I32(0), Val::I64(21)]),
        ("apply", vec![Val::I32(1), Val::I64(9)]),
        ("apply", vec![Val::I32(2), Val::I64(1)]),
        ("apply", vec![Val::I32(3), Val::I64(1)]),
        ("calls", vec![Val::I64(6)]),
        ("grow", vec![]),
        ("floats", vec![f32(2.5), f64(-1.25)]),
        ("traps", vec![Val::I32(0)]),
        ("traps", vec![Val::I32(1)]),
        ("traps", vec![Val::I32(3)]),
        ("traps", vec![Val::I32(100)]),
        (
            "many",
            vec![
                Val::I64(1),
                Val::I64(2),
                Val::I64(3),
                Val::I64(4),
                Val::I64(5),
                Val::I64(6),
                Val::I64(7),
                Val::I64(8),
                f64(0.25),
                Val::I32(-1),
            ],
        ),
        ("load", vec![Val::I32(17)]),
    ]
}

/// One edit of one byte.
#[derive(Clone, Copy, Debug)]
pub enum Edit {
    /// Flip the low bit.
    Xor01,
    /// Set to 0xff.
    SetFf,
    /// Set to 0x00.
    Set00,
    /// Set to 0x80.
    Set80,
}

impl Edit {
    const ALL: [Edit; 4] = [Edit::Xor01, Edit::SetFf, Edit::Set00, Edit::Set80];

    fn apply(self, b: u8) -> u8 {
        match self {
            Edit::Xor01 => b ^ 0x01,
            Edit::SetFf => 0xff,
            Edit::Set00 => 0x00,
            Edit::Set80 => 0x80,
        }
    }
}

/// How one child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Rejected with an error at load or instantiation.
    Error,
    /// Ran; every call answered as the unedited artifact does.
    Same,
    /// Ran to the end; some call answered differently.
    Differs,
    /// A Rust panic.
    Panic,
    /// Killed by a signal.
    Crash,
    /// The Rust stack overflowed.
    Overflow,
    /// Timed out.
    Hang,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Error,
        Outcome::Same,
        Outcome::Differs,
        Outcome::Panic,
        Outcome::Crash,
        Outcome::Overflow,
        Outcome::Hang,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Error => "error",
            Outcome::Same => "same",
            Outcome::Differs => "differs",
            Outcome::Panic => "panic",
            Outcome::Crash => "crash",
            Outcome::Overflow => "overflow",
            Outcome::Hang => "hang",
        }
    }

    /// The outcomes that are failures of the loader's validation.
    pub const FAILURES: [Outcome; 4] = [
        Outcome::Panic,
        Outcome::Crash,
        Outcome::Overflow,
        Outcome::Hang,
    ];
}

/// The regions edited: `(name, file range)`, the ELF header, the section header table
/// and every section with file bytes except `.text`, found with the `object` crate.
pub fn metadata_regions(bytes: &[u8]) -> Vec<(String, Range<usize>)> {
    let file = object::read::elf::ElfFile64::<object::LittleEndian>::parse(bytes)
        .expect("the base artifact parses");
    let header = file.elf_header();
    let e = object::LittleEndian;
    let shoff = header.e_shoff.get(e) as usize;
    let shsize = usize::from(header.e_shnum.get(e)) * usize::from(header.e_shentsize.get(e));
    let mut out = vec![
        (
            "ELF header".to_string(),
            0..usize::from(header.e_ehsize.get(e)),
        ),
        ("section headers".to_string(), shoff..shoff + shsize),
    ];
    for section in file.sections() {
        let name = section.name().unwrap_or("?").to_string();
        let Some((off, len)) = section.file_range() else {
            continue;
        };
        if name == ".text" || len == 0 {
            continue;
        }
        out.push((name, off as usize..(off + len) as usize));
    }
    out
}

/// Recomputes the header checksum as `artifact::write` does (FNV-1a 64 of the file with
/// the field zeroed) where the edited file's `.fw.header` is, else where `base` has it.
fn fix_checksum(base: &[u8], b: &mut [u8]) {
    let header = |bytes: &[u8]| -> Option<usize> {
        let file = object::File::parse(bytes).ok()?;
        let (off, len) = file.section_by_name(sections::HEADER)?.file_range()?;
        (len >= sections::HEADER_SIZE as u64).then_some(off as usize)
    };
    let Some(at) = header(b)
        .or_else(|| header(base))
        .map(|h| h + sections::CHECKSUM_OFFSET)
        .filter(|at| at + 8 <= b.len())
    else {
        return;
    };
    let sum = sections::fnv1a(&[&b[..at], &[0u8; 8], &b[at + 8..]]);
    b[at..at + 8].copy_from_slice(&sum.to_le_bytes());
}

/// `base` with byte `at` edited by `edit` and the checksum recomputed; `None` if the
/// edit changes nothing.
pub fn crafted(base: &[u8], at: usize, edit: Edit) -> Option<Vec<u8>> {
    let new = edit.apply(base[at]);
    if new == base[at] {
        return None;
    }
    let mut b = base.to_vec();
    b[at] = new;
    fix_checksum(base, &mut b);
    Some(b)
}

fn format_val(v: &Val) -> String {
    match v {
        Val::I32(x) => x.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F32(b) => format!("{}", f32::from_bits(*b)),
        Val::F64(b) => format!("{}", f64::from_bits(*b)),
        Val::V128(b) => format!("{b:#034x}"),
        Val::FuncRef(None) | Val::ExternRef(None) => "null".into(),
        Val::FuncRef(Some(_)) => "<funcref>".into(),
        Val::ExternRef(Some(_)) => "<externref>".into(),
    }
}

/// Exit status of a child whose artifact was rejected.
const EXIT_REJECTED: i32 = 3;

/// The child: loads the artifact named by [`CHILD_ENV`], runs it and prints each call's
/// answer; exits with [`EXIT_REJECTED`] if loading or instantiating fails.
pub fn child_main(spec: &str) -> ! {
    let mut parts = spec.rsplitn(3, ':');
    let (path, at, op) = match (parts.next(), parts.next(), parts.next()) {
        (Some(op), Some(at), Some(path)) => (
            path.to_string(),
            Some(at.parse::<usize>().unwrap()),
            op.parse::<usize>().unwrap(),
        ),
        _ => (spec.to_string(), None, 0),
    };
    let base = std::fs::read(&path).unwrap();
    let bytes = match at {
        Some(at) => crafted(&base, at, Edit::ALL[op]).unwrap(),
        None => base,
    };
    let engine = Engine::new(Default::default()).unwrap();
    let reject = |stage: &str, e: &dyn std::fmt::Display| -> ! {
        println!("{stage}: {e}");
        std::process::exit(EXIT_REJECTED)
    };
    let module = match load(&engine, &bytes) {
        Ok(m) => m,
        Err(e) => reject("load", &e),
    };
    let mut store = Store::new(&engine, framewalk::host::HostState::default());
    let linker = framewalk::host::linker(&engine);
    let instance = match linker.instantiate(&mut store, &module) {
        Ok(i) => i,
        Err(e) => reject("instantiate", &e),
    };
    for (name, params) in calls() {
        let Some(func) = instance.get_func(&store, name) else {
            println!("{name}: missing");
            continue;
        };
        let ty = match func.ty(&store) {
            Ok(ty) => ty,
            Err(e) => {
                println!("{name}: {e}");
                continue;
            }
        };
        let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default_for(*t)).collect();
        match func.call(&mut store, &params, &mut results) {
            Ok(()) => {
                let shown: Vec<String> = results.iter().map(format_val).collect();
                println!("{name}: {}", shown.join(" "));
            }
            Err(e) => {
                let first = e.to_string();
                println!("{name}: error: {}", first.lines().next().unwrap_or(""));
            }
        }
    }
    // A typed call (no entry trampoline when the arguments fit in registers).
    match instance
        .get_func(&store, "calls")
        .map(|f| f.typed::<i64, i64>(&store))
    {
        Some(Ok(f)) => println!(
            "typed calls: {:?}",
            f.call(&mut store, 5).map_err(|e| e.to_string())
        ),
        Some(Err(e)) => println!("typed calls: {e}"),
        None => println!("typed calls: missing"),
    }
    std::process::exit(0)
}

fn load(engine: &Engine, bytes: &[u8]) -> Result<Module, framewalk::runtime::ModuleLoadError> {
    // SAFETY: not sound in general: the bytes are a deliberate edit of an artifact of
    // ours, and running them is the experiment. It runs in a child process, whose
    // crash the parent counts.
    unsafe { Module::deserialize(engine, bytes) }
}

/// How a child ended, with its output.
struct ChildEnd {
    outcome: Outcome,
    stdout: String,
    detail: String,
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn run_child(spec: &str) -> ChildEnd {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crafted_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    // libtest's own lines around the child's output.
    let stdout: String = stdout
        .lines()
        .map(|l| l.strip_prefix("test crafted_child ... ").unwrap_or(l))
        .filter(|l| !l.starts_with("running ") && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let last_err = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let (outcome, detail) = match status {
        None => (Outcome::Hang, String::new()),
        Some(s) if stderr.contains("has overflowed its stack") => {
            (Outcome::Overflow, format!("{s}"))
        }
        Some(_) if stderr.contains("panicked at") => (
            Outcome::Panic,
            stderr
                .lines()
                .skip_while(|l| !l.contains("panicked at"))
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Some(s) if s.signal().is_some() => (
            Outcome::Crash,
            format!("signal {} {last_err}", s.signal().unwrap_or(0)),
        ),
        Some(s) if s.code() == Some(EXIT_REJECTED) => (Outcome::Error, stdout.trim().to_string()),
        Some(s) if s.code() == Some(0) => (Outcome::Same, String::new()),
        Some(s) => (Outcome::Crash, format!("{s} {last_err}")),
    };
    ChildEnd {
        outcome,
        stdout,
        detail,
    }
}

/// The experiment's result: counts per region and outcome, and the failing cases.
pub struct Report {
    /// `(region, outcome) -> count`.
    pub counts: BTreeMap<(String, Outcome), usize>,
    /// Cases (region, offset in region, edit, detail) that did not end in `error` or
    /// `same`.
    pub notable: Vec<(String, usize, Edit, Outcome, String)>,
    /// Regions in file order.
    pub regions: Vec<String>,
}

impl Report {
    /// The table: one row per region, one column per outcome, and totals.
    pub fn table(&self) -> String {
        let mut s = format!("{:<18}", "region");
        for o in Outcome::ALL {
            s.push_str(&format!("{:>9}", o.name()));
        }
        s.push('\n');
        let mut totals = [0usize; 7];
        for r in &self.regions {
            s.push_str(&format!("{r:<18}"));
            for (i, o) in Outcome::ALL.iter().enumerate() {
                let n = self.counts.get(&(r.clone(), *o)).copied().unwrap_or(0);
                totals[i] += n;
                s.push_str(&format!("{n:>9}"));
            }
            s.push('\n');
        }
        s.push_str(&format!("{:<18}", "total"));
        for n in totals {
            s.push_str(&format!("{n:>9}"));
        }
        s.push('\n');
        s
    }

    /// How many cases ended with `outcome`.
    pub fn total(&self, outcome: Outcome) -> usize {
        self.counts
            .iter()
            .filter(|((_, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Runs the experiment on `base` (an artifact of [`WAT`]) with every `stride`th byte of
/// each region, `jobs` children at a time.
pub fn run_experiment(base: &[u8], stride: usize, jobs: usize) -> Report {
    let dir = std::env::temp_dir().join(format!("framewalk-crafted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("base.fwo");
    std::fs::write(&path, base).unwrap();
    let path_str = path.to_str().unwrap().to_string();

    let baseline = run_child(&path_str);
    assert_eq!(
        baseline.outcome,
        Outcome::Same,
        "the unedited artifact runs: {} {}",
        baseline.stdout,
        baseline.detail
    );
    assert!(baseline.stdout.contains("refs: "), "{}", baseline.stdout);

    let regions = metadata_regions(base);
    // Which section each section header describes, to name edits of the headers.
    let header_names: Vec<String> = {
        let file = object::File::parse(base).expect("the base artifact parses");
        let mut names = vec![String::new(); file.sections().count() + 1];
        for section in file.sections() {
            if let Some(slot) = names.get_mut(section.index().0) {
                *slot = section.name().unwrap_or("?").to_string();
            }
        }
        names
    };
    let mut cases = Vec::new();
    for (name, range) in &regions {
        for at in range.clone().step_by(stride.max(1)) {
            for (op, edit) in Edit::ALL.iter().enumerate() {
                if edit.apply(base[at]) != base[at] {
                    cases.push((name.clone(), range.start, at, op));
                }
            }
        }
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, start, at, op)) = cases.get(i) else {
                    break;
                };
                let end = run_child(&format!("{path_str}:{at}:{op}"));
                let outcome = match end.outcome {
                    Outcome::Same if end.stdout != baseline.stdout => Outcome::Differs,
                    o => o,
                };
                let detail = match outcome {
                    Outcome::Differs => diff(&baseline.stdout, &end.stdout),
                    _ => end.detail,
                };
                results.lock().unwrap().push((
                    name.clone(),
                    at - start,
                    Edit::ALL[*op],
                    outcome,
                    detail,
                ));
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut counts = BTreeMap::new();
    let mut notable = Vec::new();
    for (name, off, edit, outcome, detail) in results.into_inner().unwrap() {
        *counts.entry((name.clone(), outcome)).or_insert(0) += 1;
        if !matches!(outcome, Outcome::Error | Outcome::Same) {
            let name = if name == "section headers" {
                let described = header_names.get(off / 64);
                format!(
                    "section headers [{}]",
                    described.map_or("?", |n| n.as_str())
                )
            } else {
                name
            };
            notable.push((name, off, edit, outcome, detail));
        }
    }
    notable.sort_by(|a, b| (&a.0, a.1, a.3).cmp(&(&b.0, b.1, b.3)));
    Report {
        counts,
        notable,
        regions: regions.into_iter().map(|(n, _)| n).collect(),
    }
}

/// The lines of `got` that `want` does not have.
fn diff(want: &str, got: &str) -> String {
    let want: Vec<&str> = want.lines().collect();
    got.lines()
        .filter(|l| !want.contains(l))
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The stride from `FRAMEWALK_CRAFTED_STRIDE`, else `default`.
pub fn stride(default: usize) -> usize {
    std::env::var("FRAMEWALK_CRAFTED_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
