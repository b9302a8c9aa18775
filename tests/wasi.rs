//! WASI programs built by a real toolchain (C through wasi-libc, `examples/wasi/`,
//! rebuilt by its `build.sh`): run by `framewalk run` as a user would, and embedded
//! through `framewalk::wasi` with a `Linker`.

use framewalk::wasi::{self, WasiCtx, WasiCtxBuilder, WritePipe};
use framewalk::{Engine, Linker, Module, Store};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/run.rs"]
mod run;

use run::{framewalk, stderr, stdout};

fn program(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/wasi")
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// A fresh directory for one test: `data/` (to preopen) holding `inside.txt`, a
/// subdirectory and a symbolic link to `outside.txt`, which sits beside `data/`.
fn sandbox(test: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("framewalk-wasi-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::write(root.join("data/inside.txt"), "inside\n").unwrap();
    std::fs::write(root.join("outside.txt"), "SECRET\n").unwrap();
    std::os::unix::fs::symlink("../outside.txt", root.join("data/link")).unwrap();
    root
}

fn preopen(root: &Path) -> String {
    format!("{}::/data", root.join("data").display())
}

#[test]
fn hello_world_gets_its_arguments_and_environment() {
    let o = framewalk(&[
        "run",
        "--env",
        "GREETING=hi",
        &program("hello"),
        "one",
        "--two",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi, world\narg 1: one\narg 2: --two\n");
    assert_eq!(stderr(&o), "");

    // The program sees only the variables given with --env.
    let o = Command::new(env!("CARGO_BIN_EXE_framewalk"))
        .args(["run", &program("hello")])
        .env("GREETING", "from the host")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "hello, world\n");
}

#[test]
fn hello_world_runs_the_same_from_its_artifact() {
    let dir = sandbox("artifact");
    let artifact = dir.join("hello.fwa").display().to_string();
    let o = framewalk(&["compile", &program("hello"), "-o", &artifact]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = framewalk(&["run", "--allow-precompiled", &artifact, "x"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello, world\narg 1: x\n");
}

#[test]
fn a_file_in_a_preopened_directory_is_read() {
    let root = sandbox("read");
    let o = framewalk(&[
        "run",
        "--dir",
        &preopen(&root),
        &program("cat"),
        "/data/inside.txt",
        "/data/sub/../inside.txt",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "inside\ninside\n");

    // Without a guest name the directory is seen by its host path.
    let host = root.join("data");
    let o = framewalk(&[
        "run",
        "--dir",
        &host.display().to_string(),
        &program("cat"),
        &host.join("inside.txt").display().to_string(),
    ]);
    assert_eq!(stdout(&o), "inside\n", "{}", stderr(&o));

    // Nothing preopened: nothing to read.
    let o = framewalk(&["run", &program("cat"), "/data/inside.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "cat: /data/inside.txt: Capabilities insufficient\n"
    );
}

#[test]
fn escapes_from_a_preopened_directory_are_refused() {
    let root = sandbox("escape");
    let o = framewalk(&["run", "--dir", &preopen(&root), &program("escape")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // 63 is WASI's `perm` (the host refused: the path leads outside the preopened
    // directory), 76 `notcapable` (wasi-libc found no preopen for the path).
    assert_eq!(
        stdout(&o),
        "open /data/inside.txt: read 7 bytes: inside\n\n\
         open /data/../outside.txt: errno 63\n\
         open /data/link: errno 63\n\
         open /etc/passwd: errno 76\n\
         path_open inside.txt: opened\n\
         path_open ../outside.txt: errno 63\n\
         path_open sub/../../outside.txt: errno 63\n\
         path_open link: errno 63\n\
         path_open /etc/passwd: errno 63\n"
    );
    assert!(!stdout(&o).contains("SECRET"));

    let o = framewalk(&[
        "run",
        "--dir",
        &preopen(&root),
        &program("cat"),
        "/data/../outside.txt",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "cat: /data/../outside.txt: Operation not permitted\n"
    );
}

/// The frames of `trap.c` below the failing one, as every failure prints them.
const TRAP_CALLERS: &str = concat!(
    "    2:  0x220 - run\n                  at examples/wasi/trap.c:29:12\n",
    "    3:  0x1e3 - main\n                  at examples/wasi/trap.c:33:12\n",
);

#[test]
fn a_trap_prints_the_programs_stderr_then_the_backtrace_with_source_lines() {
    for (how, message, frames) in [
        (
            "abort",
            "wasm trap: unreachable\n",
            "    0:  0x30c - abort\n                  at ././libc-bottom-half/sources/abort.c:5:5\n    \
                 1:  0x2cd - fail\n                  at examples/wasi/trap.c:18:9\n",
        ),
        (
            "divide",
            "wasm trap: integer divide by zero\n",
            "    0:  0x2fa - divide\n                  at examples/wasi/trap.c:9:14\n    \
                 1:  0x276 - fail\n                  at examples/wasi/trap.c:20:16\n",
        ),
        (
            "oob",
            "wasm trap: out of bounds memory access\n\
             memory fault at wasm address 0xfffffff0 in linear memory of size 0x20000\n",
            "    0:  0x302 - poke\n                  at examples/wasi/trap.c:13:8\n    \
                 1:  0x293 - fail\n                  at examples/wasi/trap.c:22:9\n",
        ),
    ] {
        let o = framewalk(&["run", &program("trap"), how]);
        assert_eq!(o.status.code(), Some(1), "{how}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{how}");
        let expected = format!(
            "trap: about to {how}\nerror: {message}wasm backtrace:\n{frames}{TRAP_CALLERS}"
        );
        let err = stderr(&o);
        assert!(err.starts_with(&expected), "{how}:\n{err}\nexpected:\n{expected}");
        // Then wasi-libc's start-up frames, ending with the command's entry.
        assert!(err.ends_with(" - _start.command_export\n"), "{how}:\n{err}");
    }
}

#[test]
fn proc_exit_gives_the_exit_status_without_a_backtrace() {
    let o = framewalk(&["run", &program("exit")]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "exiting with 3\n");
    assert_eq!(stderr(&o), "");
}

/// A reactor: `_initialize` sets up what `greet` writes with `fd_write`; `fault`
/// passes `fd_write` an iovec array that ends past the end of memory.
const REACTOR: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (data (i32.const 16) "ready\n")
  (func (export "_initialize")
    ;; iovec at 0: { buf = 16, len = 6 }
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (global.set $ready (i32.const 1)))
  (func (export "greet") (param $times i32) (result i32)
    (loop $again
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br_if $again (local.tee $times (i32.sub (local.get $times) (i32.const 1)))))
    (global.get $ready))
  (func $fault (export "fault") (result i32)
    (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 8))))
"#;

fn write_temp(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("framewalk-wasi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

#[test]
fn invoke_calls_a_reactor_export_after_initialize() {
    let reactor = write_temp("reactor.wat", REACTOR);
    let o = framewalk(&["run", "--invoke", "greet", &reactor, "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ready\nready\n1\n");

    // A guest pointer that leads outside memory traps (as the WASI spec says a call
    // that must dereference it does), with the backtrace of the call.
    let o = framewalk(&["run", "--invoke", "fault", &reactor]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: Pointer out of bounds: Region { start: 65536, len: 4 }\n\
         wasm backtrace:\n    \
         0:   0xc1 - fault\n"
    );

    let o = framewalk(&["run", &reactor]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: the WASI module exports no `_start` (call a reactor's function with \
         --invoke NAME)\n"
    );
}

// --- The library: framewalk::wasi with a Linker ---

/// Runs `name`'s `_start` with the context `cx` and returns what it wrote to stdout
/// and the call's result.
fn embed(name: &str, cx: WasiCtxBuilder) -> (String, Result<(), framewalk::Error>) {
    let mut cx = cx;
    let out = WritePipe::new_in_memory();
    cx.stdout(Box::new(out.clone()));
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, &std::fs::read(program(name)).unwrap()).unwrap();
    let mut linker: Linker<WasiCtx> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |cx| cx).unwrap();
    let mut store = Store::new(&engine, cx.build());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let start = instance.get_typed_func::<(), ()>(&store, "_start").unwrap();
    let result = start.call(&mut store, ());
    drop(store);
    let bytes = out
        .try_into_inner()
        .expect("the store is gone")
        .into_inner();
    (String::from_utf8(bytes).unwrap(), result)
}

#[test]
fn an_embedder_runs_a_program_with_its_own_arguments_environment_and_stdout() {
    let mut cx = WasiCtxBuilder::new();
    cx.args(&["hello".into(), "embedded".into()])
        .unwrap()
        .env("GREETING", "hey")
        .unwrap();
    let (out, result) = embed("hello", cx);
    result.unwrap();
    assert_eq!(out, "hey, world\narg 1: embedded\n");
}

#[test]
fn an_embedders_preopened_directory_is_confined_too() {
    let root = sandbox("embed");
    let mut cx = WasiCtxBuilder::new();
    cx.preopened_dir(wasi::open_dir(root.join("data")).unwrap(), "/data")
        .unwrap();
    let (out, result) = embed("escape", cx);
    result.unwrap();
    assert!(
        out.starts_with("open /data/inside.txt: read 7 bytes: inside\n"),
        "{out}"
    );
    assert!(out.contains("open /data/link: errno 63\n"), "{out}");
    assert!(
        out.contains("path_open ../outside.txt: errno 63\n"),
        "{out}"
    );
    assert!(!out.contains("SECRET"), "{out}");
}

#[test]
fn an_embedder_sees_proc_exit_as_an_exit_status_and_a_trap_as_none() {
    let (out, result) = embed("exit", WasiCtxBuilder::new());
    assert_eq!(out, "exiting with 3\n");
    let e = result.unwrap_err();
    assert_eq!(wasi::exit_status(&e), Some(3));

    let mut cx = WasiCtxBuilder::new();
    cx.args(&["trap".into(), "divide".into()]).unwrap();
    let (_, result) = embed("trap", cx);
    let e = result.unwrap_err();
    assert_eq!(wasi::exit_status(&e), None);
    let trap = e.as_trap().expect("a trap");
    assert_eq!(trap.code(), framewalk::TrapCode::IntegerDivisionByZero);
}

#[test]
fn a_wasi_call_from_a_module_without_memory_traps_with_a_typed_error() {
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
             (func (export "go") (result i32) (call $yield)))"#
            .as_bytes(),
    )
    .unwrap();
    let mut linker: Linker<WasiCtx> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |cx| cx).unwrap();
    let mut store = Store::new(&engine, WasiCtxBuilder::new().build());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let go = instance.get_typed_func::<(), i32>(&store, "go").unwrap();
    let e = go.call(&mut store, ()).unwrap_err();
    let host = e
        .as_trap()
        .and_then(|t| t.host_error())
        .expect("a host error");
    assert!(matches!(
        host.downcast_ref::<wasi::WasiError>(),
        Some(wasi::WasiError::NoMemory)
    ));
}

#[test]
fn clocks_and_random_reach_the_host() {
    let engine = Engine::new(Default::default()).unwrap();
    // `sample` writes the realtime clock at 0, the monotonic clock at 8 and 32 random
    // bytes at 16, and returns the sum of the three errnos.
    let module = Module::new(
        &engine,
        r#"(module
             (import "wasi_snapshot_preview1" "clock_time_get"
               (func $time (param i32 i64 i32) (result i32)))
             (import "wasi_snapshot_preview1" "random_get"
               (func $random (param i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "sample") (result i32)
               (i32.add
                 (i32.add (call $time (i32.const 0) (i64.const 1) (i32.const 0))
                          (call $time (i32.const 1) (i64.const 1) (i32.const 8)))
                 (call $random (i32.const 16) (i32.const 32)))))"#
            .as_bytes(),
    )
    .unwrap();
    let mut linker: Linker<WasiCtx> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |cx| cx).unwrap();
    let mut store = Store::new(&engine, WasiCtxBuilder::new().build());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let sample = instance
        .get_typed_func::<(), i32>(&store, "sample")
        .unwrap();
    assert_eq!(sample.call(&mut store, ()).unwrap(), 0);
    let memory = instance.get_memory(&store, "memory").unwrap();
    let bytes = memory.data(&store).unwrap();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // The realtime clock is the host's (to within a minute), the monotonic one ticks.
    assert!(
        now.abs_diff(word(0)) < 60_000_000_000,
        "{} vs {now}",
        word(0)
    );
    assert_ne!(word(8), 0);
    assert!(bytes[16..48].iter().any(|&b| b != 0));
}
