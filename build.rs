//! Fails the build closed when framewalk's Cranelift code would be linked against the
//! unpatched cranelift-frontend.
//!
//! cranelift-frontend 0.112.3 from crates.io reuses the stack slot of a reference that
//! is still live through a loop (third_party/cranelift-frontend/FRAMEWALK-PATCH.md), so
//! the collector would free references wasm still holds. framewalk's own `Cargo.toml`
//! fixes that with `[patch.crates-io]`, but a `[patch]` is not inherited by crates that
//! depend on framewalk: they would silently get the unsound spiller. The patched copy
//! declares `links = "framewalk_cranelift_frontend_fix"` and its build script prints
//! `cargo:spiller=...`, which Cargo hands to this script (a direct dependent) as
//! `DEP_FRAMEWALK_CRANELIFT_FRONTEND_FIX_SPILLER`. When the `cranelift` feature is on and
//! that variable is missing, this script sets a cfg that makes `src/lib.rs` stop with a
//! `compile_error!` saying what to add.

/// The fix the patched crate must report (bumped if the patch changes incompatibly).
const REQUIRED_FIX: &str = "no-slot-reuse-1";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(framewalk_unpatched_cranelift_frontend)");
    println!("cargo::rerun-if-env-changed=DEP_FRAMEWALK_CRANELIFT_FRONTEND_FIX_SPILLER");
    if std::env::var_os("CARGO_FEATURE_CRANELIFT").is_none() {
        return;
    }
    let fix = std::env::var("DEP_FRAMEWALK_CRANELIFT_FRONTEND_FIX_SPILLER").ok();
    if fix.as_deref() != Some(REQUIRED_FIX) {
        println!("cargo::rustc-cfg=framewalk_unpatched_cranelift_frontend");
        println!(
            "cargo::warning=cranelift-frontend is not framewalk's patched copy (spiller fix {:?}, \
             need {REQUIRED_FIX:?}); see the compile error below",
            fix.as_deref().unwrap_or("absent")
        );
    }
}
