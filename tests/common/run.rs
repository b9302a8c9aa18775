//! Running the `framewalk` binary as a user would: what `tests/cli.rs` and
//! `tests/wasi.rs` share. Included by path (`#[path = "common/run.rs"]`), not through
//! `common`, because only test binaries built with the CLI have its path.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::{Command, Output};

/// Runs `framewalk` with `args` and waits for it.
pub fn framewalk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_framewalk"))
        .args(args)
        .output()
        .expect("framewalk runs")
}

/// Its standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
