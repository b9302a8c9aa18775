// framewalk: announces the safepoint-spiller fix to crates that depend on this one
// directly (Cargo passes it to their build scripts as
// DEP_FRAMEWALK_CRANELIFT_FRONTEND_FIX_SPILLER), so framewalk's build fails closed when
// the unpatched crates.io release is resolved instead. See FRAMEWALK-PATCH.md.
fn main() {
    println!("cargo::metadata=spiller=no-slot-reuse-1");
    println!("cargo::rerun-if-changed=build.rs");
}
