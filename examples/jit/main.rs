//! A language VM on cranelift-jit that uses framewalk's drop-in layers.
//!
//! `examples/dropin.rs` shows the contract of `docs/EMBEDDING.md` on a toy with one
//! module, hand-laid code memory and no traps. This example is the shape a language
//! implementer actually has: a small s-expression language compiled lazily, one
//! function at a time, with `cranelift-jit` + `cranelift-module` +
//! `cranelift-frontend` 0.112, two modules calling each other, host functions that
//! collect, re-enter the JIT and walk the stack, and traps caught by framewalk's
//! signal handlers. From framewalk it uses only what builds with
//! `default-features = false`: `unwind`, `stackmap`, `gc` and `trap`.
//!
//! # The language
//!
//! ```text
//! program := (module NAME (fn NAME ((x int|ref) ...) int|ref EXPR) ...) ...
//! EXPR    := INTEGER | x | (let ((x EXPR) ...) EXPR) | (if EXPR EXPR EXPR)
//!          | (+ a b) | (- a b) | (* a b) | (/ a b) | (< a b) | (= a b)
//!          | (trap N)                 ; Cranelift `trap User(N)`: ud2, SIGILL
//!          | (f args...) | (module.f args...)      ; calls, also into another module
//!          | (new n) | (value r) | (null? r) | (consume r) | (gc) | (reenter f n)
//!          | (backtrace) | (set-global r) | (global)
//!          | (gc-fast)                ; a collection called without the exit trampoline
//! ```
//!
//! Values are `int` (i64) and `ref`: an `ExternRef`'s header address as an i64, which
//! the code generator declares to Cranelift as needing a stack map. `(/ a b)` is
//! `sdiv`, whose `idiv` faults on a zero divisor (SIGFPE).
//!
//! # The runtime
//!
//! - **Lazy compilation.** Every function starts uncompiled: its entry in its
//!   module's function table (in the module's vmctx) is 0. A call loads the entry;
//!   a 0 calls the host's `resolve(module, index)` through the exit trampoline (so the
//!   exit is recorded and a walk or a collection meanwhile is sound), which compiles
//!   that one function (`JITModule::define_function`, `finalize_definitions`),
//!   registers it as its own `ModuleText` with one `FunctionRange`, decodes its stack
//!   maps (`user_stack_maps()`), trap sites (`traps()`) and source lines
//!   (`get_srclocs_sorted()`), and fills the entry.
//! - **Two modules**, each with its vmctx and function table; a call into another
//!   module loads that module's vmctx from the caller's. A frame's registration id
//!   (`frame.location.module`) names its (module, function), whose stack maps the
//!   collector uses.
//! - **Trampolines** are CLIF too, compiled eagerly and never registered.
//! - **Traps** go through `framewalk::trap`: one process-wide registration whose
//!   `lookup` reads the registry and the function's trap sites, an `on_trap` that
//!   walks from the trap's registers and `resume`s the `call_resumable` of the call that
//!   entered the code. A trap in a nested activation (under `reenter`) comes back to the
//!   host function, which cannot be resumed across: it returns to the JIT code with a
//!   flag set, and that code traps again (`PROPAGATE`), ending its own activation.
//!
//! # Files
//!
//! | file | holds |
//! | --- | --- |
//! | `lang.rs` | the parser and type checker (nothing about framewalk) |
//! | `codegen.rs` | the vmctx layout, the CLIF of functions and trampolines, `exit_record` |
//! | `vm.rs` | the VM: calls, lazy compilation and registration, host functions, walks, collections |
//! | `traps.rs` | the trap hooks, `TrapReport` |
//! | `main.rs` | [`Faults`], the demo program and its report |
//!
//! # Where each rule of `docs/EMBEDDING.md` is upheld
//!
//! | contract | here |
//! | --- | --- |
//! | frame pointers (1) | `Vm::new`: `preserve_frame_pointers` in the `JITBuilder` flags |
//! | entry: push, `entry_fp`, pop (2) | `codegen::lower_entry` (one per arity), called by `Vm::call_function` |
//! | exit: record (`exit_fp`, `exit_sp`, `exit_pc`), clear (2) | `codegen::exit_record`, the one helper `lower_exit` writes the record with; every host function but `(gc-fast)` is called through `lower_exit` |
//! | every path pops (2) | `Vm::call_function` unlinks after a trap; `vm::host_dispatch` aborts on panic |
//! | registry, one function at a time, trampolines left out (3) | `Vm::compile`; `Drop for Vm` unregisters before freeing the code |
//! | walk (4) | `Vm::walk` (backtraces), `Vm::collect`; their reader covers `ActivationList::stack_range` (`Vm::reader`) |
//! | stack maps (5) | `codegen::Lower` declares refs; `Vm::compile` builds the section; `Vm::collect` looks frames up |
//! | references enter frames (6) | `Vm::enter`: every ref a host function or the host gives to JIT code |
//! | owners that outlive frames (6) | `set-global` (`gc::retain`/`release`); `consume` and results returned to the host take a count |
//! | collection (6) | `Vm::collect`: `StackRoots` with each frame's `StackMapTable`, `gc::collect` |
//! | threads (7) | one VM per thread: `Vm` holds `Cell`s and `ExternRef`s (neither `Send` nor `Sync`); owner ids from `unwind::new_owner_id` |
//! | backtraces (8) | `Vm::walk`: plain `BacktraceFrame`s with source lines from `get_srclocs_sorted` (not `trap::WasmBacktrace`) |
//! | traps (9) | `traps::trap_registration` (`trap::register`, `trap::ensure_alt_stack`), `traps::trap_lookup`, `traps::on_trap` (`trap::resume`), `Vm::call_function` (`trap::call_resumable`) |
//!
//! [`Faults`] breaks one rule at a time on purpose; `tests/jit.rs` shows what each
//! break does, as a user sees it.
//!
//! Run it with `cargo run --release --example jit`.

mod codegen;
mod lang;
mod traps;
mod vm;

pub use traps::{CallError, TrapReport};
pub use vm::{BacktraceFrame, Collection, FrameRoots, Log, Value, Vm};

use std::fmt;

use framewalk::gc::GcStats;

// ===== Rule breakers =====

/// Breaks one rule of `docs/EMBEDDING.md` each, on purpose; all off by default.
/// `tests/jit.rs` shows what each one does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Rule 6: `consume` collects without taking a count for its argument, which no
    /// frame holds any more (it was its last use): the collection frees it while the
    /// host function still holds its address.
    pub consume_without_count: bool,
    /// Rule 6: a reference a JIT function returns to the host is handed over as a raw
    /// address without a count ([`Value::Uncounted`]); the next collection frees it.
    pub return_without_count: bool,
    /// Rule 5: reference values are not declared to need stack maps: a reference live
    /// across a call is in no map, and a collection at that call frees it.
    pub undeclared_refs: bool,
    /// Rule 5: each frame's stack map is looked up in the other language module's
    /// tables (same function index, same offset). Demonstrated only on programs where
    /// that lookup finds nothing (`tests/jit.rs`'s `KEEP`): a map that did match would
    /// name slots holding other values, which the collector would take for references.
    pub maps_of_wrong_module: bool,
    /// Rule 2: the exit trampoline records its own FP and SP as the exit instead of the
    /// JIT frame's that called it (with the right `exit_pc`). The walk's exit check
    /// catches it: the word below the recorded SP is not the recorded PC (it is the
    /// return address of the trampoline's own call), so every walk ends with
    /// `WalkError::StaleExit` and collections free nothing, trampolines registered or
    /// not.
    pub exit_in_trampoline_frame: bool,
    /// Rule 2: the exit trampoline does not clear the exit record (`exit_sp` = 0) when
    /// the host returns. Harmless while every walk is made through a new exit; a walk
    /// from a host call that skips the exit trampoline (`(gc-fast)`) reads the old
    /// record, and the exit check ends it with `WalkError::StaleExit` (instead of
    /// `NoExitRecorded`): it frees nothing either way.
    pub exit_not_cleared: bool,
    /// Rule 2: the entry trampoline records `entry_fp` = its FP + 16 instead of its own
    /// FP, so the oldest JIT frame's saved FP (the trampoline's FP) does not end the
    /// chain: the walk steps into the entry trampoline's frame. Unregistered, that
    /// frame's PC is reported (`WalkError::PcNotInWasmCode`, nothing freed).
    pub entry_fp_past_trampoline: bool,
    /// Rule 3: the trampolines are registered as language code. With
    /// `entry_fp_past_trampoline`, the walk then takes the entry trampoline's frame
    /// for a language frame and follows the saved FP in it (the host's RBP, any
    /// value): the walk ends there or stops at a frame-pointer check, depending on the
    /// host, instead of reporting the trampoline.
    pub register_trampolines: bool,
}

// ===== The demo =====

/// The demo program. Line numbers matter: backtraces and tests name them.
pub const DEMO: &str = "\
(module lib
  (fn square ((n int)) int (* n n))
  (fn unused ((n int)) int (+ n 1))
  (fn hold ((r ref) (n int)) int
    (let ((c (new n)))
      (+ (gc)
         (+ (backtrace) (+ (value r) (value c))))))
  (fn make ((n int)) ref (new n))
  (fn ratio ((a int) (b int)) int (/ a b))
  (fn check ((n int)) int
    (if (< n 0) (trap 7) (ratio 1000 n))))
(module app
  (fn main ((n int)) int
    (let ((a (new n))
          (b (new 200)))
      (let ((s (middle a))
            (g (gc)))
        (+ (+ (value a) (value b)) (+ s (+ g (lib.square 3)))))))
  (fn middle ((x ref)) int
    (let ((c (new 300))
          (junk (new 400))
          (r (reenter inner 500)))
      (+ (+ (value x) (value c)) r)))
  (fn inner ((n int)) int
    (let ((d (new n))
          (k (set-global (new 800)))
          (h (lib.hold d 600)))
      (+ (consume (new 700))
         (+ (value d) (+ h (value (global)))))))
  (fn boom ((n int)) int
    (let ((r (new (+ 900 n))))
      (+ (reenter deep n) (value r))))
  (fn deep ((n int)) int
    (let ((q (new (- 950 n))))
      (+ (lib.check n) (value q)))))
";

/// What the demo run showed.
#[derive(Clone, Debug)]
pub struct Report {
    /// `app.main(100)`.
    pub result: i64,
    /// `app.boom(0)` (a division by zero) and `app.boom(-1)` (`(trap 7)`), each two
    /// activations deep.
    pub traps: Vec<TrapReport>,
    pub log: Log,
    pub registrations: usize,
    /// Every payload drop, in order, through teardown.
    pub drops: Vec<i64>,
    pub stats: GcStats,
}

/// Runs `app.main(100)` of [`DEMO`], a collection from the host, `app.boom(0)` and
/// `app.boom(-1)` (both trap), another collection, then teardown.
pub fn run_demo(faults: Faults) -> Result<Report, String> {
    let vm = Vm::new(DEMO, faults)?;
    let result = match vm.call("app", "main", &[Value::Int(100)]) {
        Ok(Value::Int(n)) => n,
        other => return Err(format!("unexpected result {other:?}")),
    };
    vm.collect_now();
    let mut traps = Vec::new();
    for n in [0, -1] {
        match vm.call("app", "boom", &[Value::Int(n)]) {
            Err(CallError::Trap(t)) => traps.push(t),
            other => return Err(format!("app.boom({n}) should trap: {other:?}")),
        }
    }
    // What the abandoned frames held goes now.
    vm.collect_now();
    let (log, registrations, stats) = (vm.log(), vm.registrations(), vm.stats());
    let drops = vm.finish();
    Ok(Report {
        result,
        traps,
        log,
        registrations,
        drops,
        stats,
    })
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fr in &self.frames {
            writeln!(
                f,
                "    activation {} {:<12} roots {:?}",
                fr.activation, fr.function, fr.roots
            )?;
        }
        if self.frames.is_empty() {
            writeln!(f, "    no JIT frames")?;
        }
        match &self.error {
            Some(e) => writeln!(f, "    walk failed: {e}; freed nothing"),
            None => writeln!(f, "    freed {:?}", self.freed),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "app.main(100) = {}", self.result)?;
        writeln!(f, "compiled, in order: {}", self.log.compiled.join(", "))?;
        writeln!(f, "registrations: {}", self.registrations)?;
        for (i, c) in self.log.collections.iter().enumerate() {
            writeln!(f, "collection {}:", i + 1)?;
            write!(f, "{c}")?;
        }
        for bt in &self.log.backtraces {
            writeln!(f, "backtrace:")?;
            match bt {
                Ok(frames) => {
                    for (i, fr) in frames.iter().enumerate() {
                        writeln!(f, "  {i}: {fr}")?;
                    }
                }
                Err(e) => writeln!(f, "  walk failed: {e}")?,
            }
        }
        for t in &self.traps {
            write!(f, "{t}")?;
        }
        for e in &self.log.events {
            writeln!(f, "event: {e}")?;
        }
        writeln!(f, "dropped: {:?}", self.drops)?;
        writeln!(f, "{}", self.stats)
    }
}

#[allow(dead_code, reason = "tests/jit.rs includes this file as a module")]
fn main() -> Result<(), String> {
    print!("{}", run_demo(Faults::default())?);
    Ok(())
}
