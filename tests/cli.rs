//! The `framewalk` command line, driven as a user would: its stdout, stderr and exit
//! status.

mod common;

use common::{chain_overflow_lines, chain_wat, cycle_overflow_lines, cycle_wat, Wasm};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/run.rs"]
mod run;

use run::{framewalk, stderr, stdout};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framewalk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_wat(name: &str, wat: &str) -> String {
    let p = temp(name);
    std::fs::write(&p, wat).unwrap();
    p.display().to_string()
}

#[test]
fn gc_example_keeps_live_references_and_frees_dropped_ones() {
    let o = framewalk(&["run", &example("gc.wat"), "--gc-stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "604\n0\n");
    let err = stderr(&o);
    assert!(
        err.starts_with("gc: 2 collections, 4 stack roots found (last 0), 8 references freed"),
        "{err}"
    );
}

#[test]
fn gc_example_is_unchanged_when_collecting_at_every_host_call() {
    let o = framewalk(&["run", &example("gc.wat"), "--gc-every-call"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "604\n0\n");
}

#[test]
fn trap_example_prints_one_backtrace_over_three_activations() {
    let o = framewalk(&["run", &example("trap.wat")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: wasm trap: integer divide by zero\n\
         wasm backtrace:\n    \
         0:   0x51 - trap_demo!divide\n    \
         1:   0x5c - trap_demo!descend\n    \
         2:   0x66 - trap_demo!descend\n    \
         3:   0x66 - trap_demo!descend\n    \
         4:   0x6e - trap_demo!main\n"
    );
}

#[test]
fn dwarf_example_prints_source_lines_and_inlined_calls() {
    let shapes = example("dwarf/shapes.wasm");
    let o = framewalk(&["run", &shapes, "--invoke", "run", "4", "4"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("error: wasm trap: integer divide by zero\nwasm backtrace:\n"));
    let lines: Vec<&str> = err.lines().skip(2).map(str::trim).collect();
    // Offsets are pinned by tests/debuginfo.rs; here, the shape the user sees.
    assert_eq!(lines.len(), 8, "{err}");
    assert!(
        lines[0].starts_with("0:")
            && lines[0].ends_with(" - shapes::average(shapes::Grid const&, int)"),
        "{err}"
    );
    assert_eq!(
        lines[1],
        "inlined shapes::divide(int, int) at ./shapes.cpp:16:18"
    );
    assert_eq!(
        lines[2],
        "inlined shapes::checked_div(int, int) at ./shapes.cpp:20:12"
    );
    assert_eq!(lines[3], "at ./shapes.cpp:28:12");
    assert!(
        lines[4].ends_with(" - shapes::row_average(shapes::Grid&, int)"),
        "{err}"
    );
    assert_eq!(lines[5], "at ./shapes.cpp:33:12");
    assert!(lines[6].ends_with(" - run"), "{err}");
    assert_eq!(lines[7], "at ./shapes.cpp:59:12");

    let o = framewalk(&["run", &shapes, "--invoke", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stderr(&o).lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], "wasm backtrace:");
    assert!(lines[1].ends_with(" - shapes::report()"));
    assert_eq!(lines[2], "at ./shapes.cpp:40:5");
    assert!(lines[3].ends_with(" - show"));
    assert_eq!(lines[4], "at ./shapes.cpp:69:5");

    let o = framewalk(&["run", &shapes, "--invoke", "run", "4", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n");
}

/// A +simd128 module from a real toolchain (examples/simd: clang 14, -O2 -g) runs:
/// v128 arguments and results through `--invoke`, and a trap in a `v128.load` names
/// its source lines.
#[test]
fn simd_example_computes_and_traps_with_source_lines() {
    let vecsum = example("simd/vecsum.wasm");
    let o = framewalk(&["run", &vecsum, "--invoke", "sum", "3", "64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "6048\n");
    let o = framewalk(&["run", &vecsum, "--invoke", "sum", "1", "7"]);
    assert_eq!(stdout(&o), "21\n", "{}", stderr(&o));

    // (a * b + c) per i32 lane, lanes reversed; results print lane 0 lowest.
    let o = framewalk(&[
        "run",
        &vecsum,
        "--invoke",
        "madd_rev",
        "i32x4:1,2,3,4",
        "i32x4:10,10,10,-10",
        "0x1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // [11, 20, 30, -40] reversed: lane 0 is -40.
    assert_eq!(stdout(&o), "0x0000000b000000140000001effffffd8\n");

    let o = framewalk(&["run", &vecsum, "--invoke", "sum_at", "4294967280", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().map(str::trim).collect();
    assert_eq!(
        lines[0], "error: wasm trap: out of bounds memory access",
        "{err}"
    );
    assert_eq!(
        lines[1], "memory fault at wasm address 0xfffffff0 in linear memory of size 0x20000",
        "{err}"
    );
    assert_eq!(lines[2], "wasm backtrace:");
    assert!(
        lines[3].starts_with("0:") && lines[3].ends_with(" - sum_lanes"),
        "{err}"
    );
    // The `wasm_v128_load(p + i)` in the loop of sum_lanes, called from sum_at.
    assert_eq!(lines[4], "at ./vecsum.c:27:35", "{err}");
    assert!(
        lines[5].starts_with("1:") && lines[5].ends_with(" - sum_at"),
        "{err}"
    );
    assert_eq!(lines[6], "at ./vecsum.c:45:12", "{err}");
    assert_eq!(lines.len(), 7, "{err}");

    // The same through a compiled artifact.
    let artifact = temp("vecsum.fwa").display().to_string();
    let o = framewalk(&["compile", &vecsum, "--output", &artifact]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = framewalk(&[
        "run",
        "--allow-precompiled",
        &artifact,
        "--invoke",
        "madd_rev",
        "i32x4:1,2,3,4",
        "i32x4:10,10,10,-10",
        "0x1",
    ]);
    assert_eq!(
        stdout(&o),
        "0x0000000b000000140000001effffffd8\n",
        "{}",
        stderr(&o)
    );

    // A v128 argument that is not one is refused with the syntax.
    let o = framewalk(&["run", &vecsum, "--invoke", "madd_rev", "1", "2", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`1` is not a v128"), "{}", stderr(&o));
}

/// GDB, if it is installed and may trace a child here: `None` (with a note) if not.
fn gdb_batch(commands: &[&str], program: &[&str]) -> Option<String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-q", "-nx", "-batch"]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.arg("--args")
        .arg(env!("CARGO_BIN_EXE_framewalk"))
        .args(program);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: gdb is not runnable here ({e}); .ci/run installs it");
            return None;
        }
    };
    let text = format!("{}{}", stdout(&out), stderr(&out));
    if text.contains("ptrace: Operation not permitted") || text.contains("Couldn't get registers") {
        eprintln!("skipped: gdb may not trace processes here:\n{text}");
        return None;
    }
    Some(text)
}

#[test]
fn gdb_names_wasm_frames_through_the_jit_interface() {
    let Some(out) = gdb_batch(
        &[
            "set pagination off",
            "handle SIGILL stop nopass",
            "run",
            "bt 6",
        ],
        &[
            "run",
            &example("dwarf/shapes.wasm"),
            "--invoke",
            "run",
            "4",
            "4",
        ],
    ) else {
        return;
    };
    assert!(out.contains("received signal SIGILL"), "{out}");
    // `#N  0xADDRESS in NAME ()`: the names of the first five frames.
    let names: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split(" in ").nth(1))
        .map(|n| n.trim_end_matches(" ()"))
        .take(5)
        .collect();
    assert_eq!(
        names,
        [
            "wasm[<unnamed>]::shapes::average(shapes::Grid const&, int)",
            "wasm[<unnamed>]::shapes::row_average(shapes::Grid&, int)",
            "wasm[<unnamed>]::run",
            "wasm[<unnamed>]::run::entry_trampoline",
            "framewalk_enter",
        ],
        "{out}"
    );
}

#[test]
fn compute_example_with_arguments() {
    let o = framewalk(&["run", &example("compute.wat"), "--invoke", "fib", "20"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "6765\n");
}

#[test]
fn every_example_gives_the_same_output_from_its_compiled_artifact() {
    for name in ["gc.wat", "trap.wat", "compute.wat"] {
        let art = temp(&format!("{name}.fwo"));
        let c = framewalk(&["compile", &example(name), "-o", &art.display().to_string()]);
        assert!(c.status.success(), "{name}: {}", stderr(&c));
        let from_source = framewalk(&["run", &example(name)]);
        let from_artifact = framewalk(&["run", "--allow-precompiled", &art.display().to_string()]);
        assert_eq!(stdout(&from_source), stdout(&from_artifact), "{name}");
        assert_eq!(stderr(&from_source), stderr(&from_artifact), "{name}");
        assert_eq!(
            from_source.status.code(),
            from_artifact.status.code(),
            "{name}"
        );
    }
}

/// An artifact is machine code: `run` loads one only with `--allow-precompiled`, and
/// says so in one line otherwise (without running anything).
#[test]
fn running_an_artifact_needs_allow_precompiled() {
    let art = temp("compute-trust.fwo").display().to_string();
    let c = framewalk(&["compile", &example("compute.wat"), "-o", &art]);
    assert!(c.status.success(), "{}", stderr(&c));
    let refused = framewalk(&["run", &art]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stdout(&refused), "");
    let err = stderr(&refused);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("is a compiled artifact"), "{err}");
    assert!(err.contains("--allow-precompiled"), "{err}");
    let allowed = framewalk(&["run", "--allow-precompiled", &art]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(
        stdout(&allowed),
        stdout(&framewalk(&["run", &example("compute.wat")]))
    );
}

#[test]
fn objdump_lists_functions_safepoints_traps_and_a_summary() {
    let art = temp("gc-objdump.fwo");
    assert!(framewalk(&[
        "compile",
        &example("gc.wat"),
        "-o",
        &art.display().to_string()
    ])
    .status
    .success());
    let o = framewalk(&["objdump", &art.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("function 5 level: text 0x0.."), "{out}");
    assert!(out.contains("function 6 main: text"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("safepoint") && l.contains("live [sp+")),
        "{out}"
    );
    assert!(out.contains("call stack exhausted"), "{out}");
    assert!(out.contains(" -> wasm 0x"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("summary: 2 functions, 4 safepoints, 1 distinct maps"),
        "{out}"
    );
    let only_traps = stdout(&framewalk(&[
        "objdump",
        "--traps",
        &art.display().to_string(),
    ]));
    assert!(
        !only_traps.contains("  safepoint") && only_traps.contains("  trap 0x"),
        "{only_traps}"
    );
}

/// A 32-bit memory's loads keep their guard-page code: the load is the function's only
/// trap site (no bounds check). A 64-bit memory's load has an explicit check of the
/// index before it, a second trap site. Both report out-of-bounds accesses.
#[test]
fn only_64_bit_memories_have_explicit_bounds_checks() {
    for (index, sites) in [("", 1), ("i64", 2)] {
        let ty = if index.is_empty() { "i32" } else { "i64" };
        let wat = write_wat(
            &format!("load-{ty}.wat"),
            &format!(
                "(module (memory {index} 1) (func (export \"load\") (param {ty}) (result i32) \
                   (i32.load offset=16 (local.get 0))))"
            ),
        );
        let art = temp(&format!("load-{ty}.fwo")).display().to_string();
        let o = framewalk(&["compile", &wat, "-o", &art]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&framewalk(&["objdump", "--traps", &art]));
        let traps: Vec<_> = out.lines().filter(|l| l.contains("  trap 0x")).collect();
        assert_eq!(traps.len(), sites, "{ty}: {out}");
        assert!(
            traps
                .iter()
                .all(|l| l.ends_with("out of bounds memory access")),
            "{ty}: {out}"
        );
    }
}

#[test]
fn run_help_documents_the_host_module() {
    let o = framewalk(&["run", "--help"]);
    let out = stdout(&o);
    for f in [
        "new_ref",
        "ref_value",
        "live_refs",
        "gc",
        "reenter",
        "backtrace",
        "frames",
        "--gc-stats",
    ] {
        assert!(out.contains(f), "--help lacks {f}: {out}");
    }
}

#[test]
fn ref_value_of_null_traps_with_a_clear_message_and_backtrace() {
    let wat = write_wat(
        "null.wat",
        r#"(module $m
             (import "framewalk" "ref_value" (func $v (param externref) (result i64)))
             (func $main (export "main") (result i64) (call $v (ref.null extern))))"#,
    );
    let o = framewalk(&["run", &wat]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: ref_value: null reference\nwasm backtrace:\n    0: "),
        "{err}"
    );
    assert!(err.ends_with(" - m!main\n"), "{err}");
}

#[test]
fn backtrace_and_frames_see_every_activation() {
    let wat = write_wat(
        "frames.wat",
        r#"(module $f
             (import "framewalk" "frames" (func $frames (result i32)))
             (import "framewalk" "backtrace" (func $bt))
             (import "framewalk" "reenter" (func $re (param funcref i64) (result i64)))
             (elem declare func $inner)
             (func $inner (param i64) (result i64) (call $bt) (i64.extend_i32_u (call $frames)))
             (func $main (export "main") (result i64) (call $re (ref.func $inner) (i64.const 0))))"#,
    );
    let o = framewalk(&["run", &wat]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2\n", "inner + main, across two activations");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(lines[0], "wasm backtrace:");
    assert!(
        lines[1].ends_with(" - f!inner") && lines[2].ends_with(" - f!main"),
        "{err}"
    );
}

#[test]
fn bad_imports_get_a_one_line_link_error() {
    let unknown = write_wat(
        "unknown.wat",
        r#"(module (import "framewalk" "nope" (func)))"#,
    );
    let o = framewalk(&["run", &unknown]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: unknown import: \"framewalk\" \"nope\" (func) has not been defined \
         (see `framewalk run --help`)\n"
    );

    let wrong = write_wat(
        "wrong.wat",
        r#"(module (import "framewalk" "gc" (func (param i32))))"#,
    );
    let o = framewalk(&["run", &wrong]);
    assert_eq!(
        stderr(&o),
        "error: incompatible import type for \"framewalk\" \"gc\": the module imports \
         (func (param i32)), but the definition is (func)\n"
    );

    let other = write_wat("other.wat", r#"(module (import "env" "f" (func)))"#);
    let o = framewalk(&["run", &other]);
    assert_eq!(o.status.code(), Some(1));
    let provided = if cfg!(feature = "wasi") {
        "`framewalk run` provides only the `framewalk` and `wasi_snapshot_preview1` host modules"
    } else {
        "`framewalk run` provides only the `framewalk` host module (this build has no `wasi` \
         feature for `wasi_snapshot_preview1`)"
    };
    assert_eq!(
        stderr(&o),
        format!("error: unknown import: \"env\" \"f\" (func) has not been defined: {provided}\n")
    );
}

#[test]
fn user_errors_are_one_line_without_a_panic() {
    for (args, expected) in [
        (
            vec!["run", "/nonexistent/x.wat"],
            "error: reading /nonexistent/x.wat: No such file or directory (os error 2)\n",
        ),
        (
            vec!["run", &example("compute.wat"), "--invoke", "nope"],
            "error: module has no exported function `nope`\n",
        ),
        (
            vec!["run", &example("compute.wat"), "--invoke", "fib", "x"],
            "error: `x` is not an i32: invalid digit found in string\n",
        ),
        (
            vec!["run", &example("compute.wat"), "--invoke", "fib"],
            "error: `fib` has type (func (param i32) (result i32)): expected 1 arguments, got 0\n",
        ),
    ] {
        let o = framewalk(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o), expected, "{args:?}");
    }
    let bad = write_wat("bad.wat", "(module (func (result i32) (i64.const 0)))");
    let o = framewalk(&["run", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: loading ")
            && err.contains("invalid wasm")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn unsupported_features_are_named_in_a_one_line_error() {
    // Exceptions (SIMD was the example until it ran).
    let exceptions = write_wat(
        "exceptions.wat",
        "(module (tag $t) (func (export \"main\") (result i32) (throw $t)))",
    );
    let o = framewalk(&["run", &exceptions]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: loading ") && err.contains("unsupported wasm feature"),
        "{err}"
    );
    assert!(err.contains("exceptions"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let shared = write_wat(
        "shared.wat",
        "(module (memory 1 1 shared) (func (export \"main\") (result i32) (i32.const 0)))",
    );
    let err = stderr(&framewalk(&["run", &shared]));
    assert!(
        err.contains("unsupported wasm feature") && err.contains("threads"),
        "{err}"
    );
}

#[test]
fn a_stack_overflow_prints_its_repeated_frames_folded() {
    let wat = write_wat(
        "deep.wat",
        r#"(module $deep
             (func $down (export "main") (param i32) (result i32)
               (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1))))"#,
    );
    let o = framewalk(&["run", &wat, "--invoke", "main", "0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    // The message, the header, the trapping frame (the prologue's stack check), the
    // first recursive call site, then one line for all the others.
    assert_eq!(lines[0], "error: wasm trap: call stack exhausted", "{err}");
    assert_eq!(lines[1], "wasm backtrace:", "{err}");
    assert!(lines.len() <= 6, "not folded: {} lines", lines.len());
    let folded = lines
        .iter()
        .find(|l| l.trim_start().starts_with("... "))
        .unwrap_or_else(|| panic!("no folded line:\n{err}"));
    let count: usize = folded
        .trim_start()
        .trim_start_matches("... ")
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    // 512 KiB of stack at 32 or more bytes per frame: thousands of frames, folded.
    assert!(count > 1_000, "{folded}");
    assert!(folded.ends_with(" more frames of deep!down"), "{folded}");
}

/// The frame count of a `{:#}` backtrace printed by the CLI: one more than the number
/// of its last line, or, if that line folds a cycle of `period` frames after one
/// copy starting at frame `first` (`... N more ...`), `first + (N + 1) * period`.
fn printed_frames(err: &str, first: usize, period: usize) -> usize {
    let last = err.lines().last().expect("a backtrace").trim_start();
    let number = |s: &str| s.replace(',', "").parse::<usize>().expect("a count");
    match last.strip_prefix("... ") {
        Some(fold) => first + (number(fold.split(' ').next().unwrap()) + 1) * period,
        None => number(last.split(':').next().unwrap()) + 1,
    }
}

/// `framewalk run` of a module that overflows the stack through a cycle of one, two or
/// three functions prints the cycle once and counts its other repetitions.
#[test]
fn a_stack_overflow_through_a_cycle_prints_it_folded() {
    for (file, cycle) in [
        ("self.wat", &["a"][..]),
        ("mutual.wat", &["a", "b"]),
        ("three.wat", &["a", "b", "c"]),
    ] {
        let wat = cycle_wat(cycle);
        let path = write_wat(file, &wat);
        let o = framewalk(&["run", &path, "--invoke", "main"]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        let n = printed_frames(&err, 1, cycle.len());
        let mut expected = vec![
            "error: wasm trap: call stack exhausted".to_string(),
            "wasm backtrace:".to_string(),
        ];
        expected.extend(cycle_overflow_lines(&Wasm::new(&wat), cycle, n));
        assert_eq!(err, expected.join("\n") + "\n");
    }
}

/// `framewalk run` of a module that overflows the stack through 32,000 distinct
/// functions (the last recursing) prints the newest 40 entries, a count of the frames
/// elided and the oldest 20.
#[test]
fn a_stack_overflow_through_32000_functions_prints_its_ends() {
    const N: usize = 32_000;
    let wat = chain_wat(N);
    let path = write_wat("chain.wat", &wat);
    let o = framewalk(&["run", &path, "--invoke", "main"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let mut expected = vec![
        "error: wasm trap: call stack exhausted".to_string(),
        "wasm backtrace:".to_string(),
    ];
    expected.extend(chain_overflow_lines(
        &Wasm::new(&wat),
        N,
        printed_frames(&err, 0, 1),
    ));
    assert_eq!(err, expected.join("\n") + "\n");
}

#[test]
fn objdump_shows_the_eh_frame_size() {
    let art = temp("compute-objdump.fwo");
    let path = art.display().to_string();
    assert!(
        framewalk(&["compile", &example("compute.wat"), "-o", &path])
            .status
            .success()
    );
    let out = stdout(&framewalk(&["objdump", "--functions", &path]));
    let summary = out.lines().last().unwrap();
    let size: usize = summary
        .split(".eh_frame ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" bytes"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no .eh_frame size in {summary:?}"));
    let bytes = std::fs::read(&art).unwrap();
    let parsed = framewalk::artifact::Artifact::parse_for_inspection(&bytes).unwrap();
    assert_eq!(size, parsed.eh_frame.len());
    assert!(size > 0);
}

/// `run --perf-map` writes Linux perf's JIT map: one `START SIZE NAME` line (hex) per
/// defined function, with the module's names and the function table's sizes.
#[test]
fn run_with_perf_map_writes_one_line_per_function() {
    let wat = r#"(module $perfdemo
      (func $square (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
      (func (param i32) (result i32) (i32.add (call $square (local.get 0)) (i32.const 1)))
      (func $main (export "main") (result i32) (call 1 (i32.const 6))))"#;
    let file = write_wat("perf.wat", wat);
    let child = Command::new(env!("CARGO_BIN_EXE_framewalk"))
        .args(["run", &file, "--perf-map"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("framewalk runs");
    let map_path = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let o = child.wait_with_output().unwrap();
    let map = std::fs::read_to_string(&map_path);
    let _ = std::fs::remove_file(&map_path);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "37\n");
    let map = map.expect("the perf map was written");

    // The function table of the same module, from its artifact.
    let engine = framewalk::Engine::new(Default::default()).unwrap();
    let bytes = framewalk::runtime::compile_artifact(&engine, wat.as_bytes()).unwrap();
    let art = framewalk::artifact::Artifact::parse_for_inspection(&bytes).unwrap();
    let want: Vec<(String, u64)> = art
        .functions()
        .map(|f| {
            let name = match f.name {
                Some(n) => format!("wasm[perfdemo]::{n}"),
                None => format!("wasm[perfdemo]::function[{}]", f.func_index),
            };
            (name, u64::from(f.len))
        })
        .collect();
    assert_eq!(want.len(), 3);

    let mut got = Vec::new();
    let mut starts = Vec::new();
    for line in map.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(start), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("malformed line {line:?}");
        };
        let start = u64::from_str_radix(start, 16).unwrap_or_else(|_| panic!("{line:?}"));
        let size = u64::from_str_radix(size, 16).unwrap_or_else(|_| panic!("{line:?}"));
        assert!(start != 0 && size != 0, "{line:?}");
        starts.push((start, size));
        got.push((name.to_string(), size));
    }
    assert_eq!(got, want, "map:\n{map}");
    // Distinct, non-overlapping code ranges in one text.
    starts.sort();
    for w in starts.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{starts:x?}");
    }
}

/// Inputs that are not wasm at all get a message that says so, in one line, and the
/// type messages read as English.
#[test]
fn messages_for_the_wrong_kind_of_input() {
    // Binary bytes that are neither `\0asm` nor UTF-8: not "invalid wat".
    let junk = temp("junk.bin");
    std::fs::write(&junk, [0x89u8, b'P', b'N', b'G', 0, 0xff, 0xfe]).unwrap();
    let o = framewalk(&["run", &junk.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(
            "not a WebAssembly module: no binary `\\0asm` header, and not text \
                      (invalid UTF-8 at byte 0x0)"
        ),
        "{err}"
    );
    assert!(!err.contains("invalid wat"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // `compile` given an artifact.
    let wat = write_wat("once.wat", "(module (func (export \"main\")))");
    let artifact = temp("once.fwo").display().to_string();
    let o = framewalk(&["compile", &wat, "-o", &artifact]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = temp("twice.fwo").display().to_string();
    let o = framewalk(&["compile", &artifact, "-o", &again]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the input is already a compiled framewalk artifact"),
        "{err}"
    );

    // A reference parameter given a number.
    let refs = write_wat(
        "refs.wat",
        "(module (func (export \"main\") (param externref) (result i32) (i32.const 1)))",
    );
    let err = stderr(&framewalk(&["run", &refs, "--invoke", "main", "7"]));
    assert!(
        err.contains("only `null` can be passed for an externref parameter"),
        "{err}"
    );
}

/// `--timeout` stops a guest that never ends: the trap's message and backtrace, exit
/// status 1.
#[test]
fn a_timeout_stops_an_infinite_loop_with_its_backtrace() {
    let wat = write_wat(
        "spin.wat",
        r#"(module $spin
             (func $forever (loop $l (br $l)))
             (func $main (export "main") (call $forever)))"#,
    );
    let o = framewalk(&["run", "--timeout", "100ms", &wat]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "error: wasm trap: interrupt", "{err}");
    assert_eq!(lines[1], "wasm backtrace:", "{err}");
    assert!(lines[2].ends_with(" - spin!forever"), "{err}");
    assert!(lines[3].ends_with(" - spin!main"), "{err}");
    assert_eq!(lines.len(), 4, "{err}");
    let o = framewalk(&["run", "--timeout", "soon", &wat]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`soon` is not a duration"),
        "{}",
        stderr(&o)
    );
}

/// The epoch checks exist only in code compiled for them: one per function entry and
/// loop header with `--epoch-interruption`, none without.
#[test]
fn epoch_checks_are_compiled_only_when_asked_for() {
    let wat = write_wat(
        "epoch.wat",
        r#"(module
             (func (export "count") (param i32)
               (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#,
    );
    for (flag, sites) in [(None, 0), (Some("--epoch-interruption"), 2)] {
        let art = temp(&format!("epoch-{sites}.fwo")).display().to_string();
        let mut args = vec!["compile", &wat, "-o", &art];
        args.extend(flag);
        let o = framewalk(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&framewalk(&["objdump", "--traps", &art]));
        let traps: Vec<_> = out.lines().filter(|l| l.contains("  trap 0x")).collect();
        assert_eq!(traps.len(), sites, "{flag:?}: {out}");
        assert!(traps.iter().all(|l| l.ends_with("interrupt")), "{out}");
    }
}
