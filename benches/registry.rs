//! The code registry as a JIT uses it, one function at a time:
//! `cargo bench --bench registry` (add sizes to replace the default 10,000, e.g.
//! `cargo bench --bench registry -- 1000 10000`).
//!
//! Each round registers `n` functions one at a time, each its own `ModuleText` of one
//! function starting on a 16-byte boundary, at increasing addresses (as a JIT's code
//! allocator hands them out); then looks each one up; then unregisters them one at a
//! time. The rows print the median and the minimum over `ROUNDS` rounds of the time
//! per operation (the round's total divided by `n`):
//! - `register`: `CodeRegistry::register` of the next function;
//! - `lookup`: `CodeRegistry::lookup` of a PC inside each function, in a shuffled
//!   order (one reader registration per lookup);
//! - `view lookup`: the same PCs through one `CodeRegistry::with_view` (consecutive
//!   PCs are in different modules, so the view's last-module cache never answers);
//! - `unregister`: dropping the registrations in a shuffled order.
//!
//! The registry is a drop-in layer: this bench builds with `--no-default-features`.

use std::hint::black_box;
use std::time::Instant;

use framewalk::unwind::{CodeRegistry, FunctionRange, ModuleText};

/// Rounds per size.
const ROUNDS: usize = 11;

#[path = "common/splitmix.rs"]
mod splitmix;

use splitmix::Rng;

/// `n` functions of 16 to 512 bytes, each in its own text, back to back from a fixed
/// address (each text is its function rounded up to 16 bytes).
fn functions(n: usize, rng: &mut Rng) -> Vec<ModuleText> {
    let mut at = 0x7f00_0000_0000usize;
    (0..n)
        .map(|i| {
            let len = 16 + rng.below(497) as usize;
            let text = ModuleText {
                text_start: at,
                text_len: len.next_multiple_of(16),
                functions: vec![FunctionRange {
                    start: 0,
                    len: len as u32,
                    func_index: i as u32,
                }],
                data: i,
            };
            at += text.text_len;
            text
        })
        .collect()
}

/// Prints the median and minimum of `per_op` (nanoseconds per operation).
fn print_row(name: &str, n: usize, mut per_op: Vec<f64>) {
    per_op.sort_by(f64::total_cmp);
    println!(
        "n = {n:<7} {name:<12} median {:>9.1} ns/op   min {:>9.1} ns/op   ({} rounds)",
        per_op[per_op.len() / 2],
        per_op[0],
        per_op.len()
    );
}

fn bench(n: usize) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ n as u64);
    let texts = functions(n, &mut rng);
    let mut pcs: Vec<usize> = texts
        .iter()
        .map(|t| t.text_start + t.functions[0].len as usize / 2)
        .collect();
    rng.shuffle(&mut pcs);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);

    let (mut register, mut lookup, mut view_lookup, mut unregister) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let per_op = |t: Instant| t.elapsed().as_nanos() as f64 / n as f64;
    for _ in 0..ROUNDS {
        let registry = CodeRegistry::new();
        // Cloned outside the timed loop: the JIT hands over texts it has built.
        let round_texts = texts.clone();
        let t = Instant::now();
        let mut registrations: Vec<Option<_>> = round_texts
            .into_iter()
            .map(|text| Some(registry.register(text).expect("disjoint texts")))
            .collect();
        register.push(per_op(t));
        assert_eq!(registry.module_count(), n);

        let t = Instant::now();
        let mut found = 0;
        for &pc in &pcs {
            found += usize::from(black_box(registry.lookup(black_box(pc))).is_some());
        }
        lookup.push(per_op(t));
        assert_eq!(found, n, "every function is found");

        let t = Instant::now();
        let found = registry.with_view(|view| {
            let mut found = 0;
            for &pc in &pcs {
                found += usize::from(black_box(view.lookup_with_data(black_box(pc))).is_some());
            }
            found
        });
        view_lookup.push(per_op(t));
        assert_eq!(found, n, "every function is found through the view");

        let t = Instant::now();
        for &i in &order {
            drop(registrations[i].take());
        }
        unregister.push(per_op(t));
        assert_eq!(registry.module_count(), 0);
    }
    print_row("register", n, register);
    print_row("lookup", n, lookup);
    print_row("view lookup", n, view_lookup);
    print_row("unregister", n, unregister);
}

fn main() {
    // Cargo passes `--bench`; other arguments are sizes.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("a size"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000]
    } else {
        sizes
    };
    for n in sizes {
        bench(n);
    }
}
