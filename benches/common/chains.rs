//! Wasm modules shared by the benches: chains of *different* functions, so that every
//! frame of a walk has its own return address and function.

// Each bench includes this file and uses some of it.
#![allow(dead_code)]

/// `$f0` .. `$f{n-1}`: each calls the next and adds one to its result; the last calls
/// the host's `walk` (`(import "host" "walk" (func (result i32)))`). `chain` is `$f0`:
/// n frames, n return addresses.
pub fn walk_chain_wat(n: usize) -> String {
    let mut wat =
        String::from("(module $chain\n  (import \"host\" \"walk\" (func $walk (result i32)))\n");
    for i in 0..n {
        let callee = if i + 1 == n {
            "$walk".to_string()
        } else {
            format!("$f{}", i + 1)
        };
        wat.push_str(&format!(
            "  (func $f{i} (result i32) (i32.add (call {callee}) (i32.const 1)))\n"
        ));
    }
    wat.push_str("  (export \"chain\" (func $f0)))\n");
    wat
}

/// `$f0` .. `$f{n-1}`: each makes a reference (`host.make`), calls the next function
/// (the last calls `host.bottom`), then reads the reference: one live root per frame,
/// n return addresses. `chain` is `$f0` and returns 0.
pub fn gc_chain_wat(n: usize) -> String {
    let mut wat = String::from(
        "(module\n  (import \"host\" \"bottom\" (func $bottom))\n  \
         (import \"host\" \"make\" (func $make (param i32) (result externref)))\n",
    );
    for i in 0..n {
        let callee = if i + 1 == n {
            "(call $bottom) (i32.const 0)".to_string()
        } else {
            format!("(call $f{})", i + 1)
        };
        wat.push_str(&format!(
            "  (func $f{i} (result i32) (local $r externref)\n    \
             (local.set $r (call $make (i32.const {i})))\n    \
             (i32.add {callee} (ref.is_null (local.get $r))))\n"
        ));
    }
    wat.push_str("  (export \"chain\" (func $f0)))\n");
    wat
}
