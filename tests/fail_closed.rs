//! framewalk's compiler never builds silently against the unpatched cranelift-frontend.
//!
//! A crate that depends on framewalk does not inherit framewalk's `[patch.crates-io]`,
//! so Cargo resolves the crates.io cranelift-frontend 0.112.3 for it, whose safepoint
//! spiller frees references live through loops (third_party/cranelift-frontend/
//! FRAMEWALK-PATCH.md). `build.rs` and `src/lib.rs` turn that into a compile error that
//! says what to add. This test builds such a dependent (`cargo check`, its own target
//! folder) three ways: without the patch (must fail, with the message), with the patch
//! the message names (must build), and with `default-features = false` and no patch
//! (the drop-in layers need no frontend, so it must build).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MESSAGE: &str = "framewalk needs its patched cranelift-frontend 0.112.3";

fn dependent(dir: &Path, framewalk: &str, patch: bool) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut manifest = format!(
        "[package]\nname = \"dependent\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\nframewalk = {{ path = {root:?}{framewalk} }}\n\n\
         [workspace]\n"
    );
    if patch {
        manifest.push_str(&format!(
            "\n[patch.crates-io]\ncranelift-frontend = {{ path = {:?} }}\n",
            format!("{root}/third_party/cranelift-frontend")
        ));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    // The same versions as framewalk's own build, so nothing new is resolved.
    std::fs::copy(Path::new(root).join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(["check", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("cargo runs")
}

/// One target folder for the three builds: they share every crate but the frontend.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fail-closed-target")
}

#[test]
fn a_dependent_without_the_patch_fails_to_build_and_is_told_what_to_add() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fail-closed");
    let unpatched = dependent(&base.join("unpatched"), "", false);
    let stderr = String::from_utf8_lossy(&unpatched.stderr);
    assert!(
        !unpatched.status.success(),
        "built without the patch:\n{stderr}"
    );
    assert!(
        stderr.contains(MESSAGE)
            && stderr.contains("[patch.crates-io] cranelift-frontend = { path = "),
        "the error does not say what to add:\n{stderr}"
    );

    let patched = dependent(&base.join("patched"), "", true);
    let stderr = String::from_utf8_lossy(&patched.stderr);
    assert!(patched.status.success(), "failed with the patch:\n{stderr}");

    let dropin = dependent(&base.join("dropin"), ", default-features = false", false);
    let stderr = String::from_utf8_lossy(&dropin.stderr);
    assert!(dropin.status.success(), "drop-in layers failed:\n{stderr}");
}
