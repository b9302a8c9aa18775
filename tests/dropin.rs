//! The drop-in layers used by a second runtime: `examples/dropin.rs` has its own code
//! generator, trampolines, activation pushes and code registration, and uses only
//! framewalk's `unwind`, `stackmap` and `gc` (this test also runs with
//! `--no-default-features`, where nothing else exists). What it reports is what a user
//! of those layers observes: the roots found in each frame, the references freed by
//! each collection, every payload dropped exactly once, and a backtrace across two
//! activations with a host frame between them.

#[path = "../examples/dropin.rs"]
mod dropin;

use dropin::{BacktraceFrame, Collection, FrameRoots};

fn frame(function: &'static str, activation: usize, roots: &[i64]) -> FrameRoots {
    FrameRoots {
        function,
        activation,
        roots: roots.to_vec(),
    }
}

#[test]
fn collections_find_each_frames_references_and_free_the_rest_exactly_once() {
    let report = dropin::run_demo().expect("the demo runs");
    // main: 100 + 200 + middle; middle: 100 + 300 + inner; inner: 500 + 0 + 3 frames.
    assert_eq!(report.result, 1203, "references read after the collections");
    assert_eq!(
        report.collections,
        vec![
            // At the bottom, in `inner` (activation 0), below the host frame of
            // `reenter`: every reference a frame still uses is a root of that frame;
            // the one `middle` made and dropped (400) is freed.
            Collection {
                frames: vec![
                    frame("inner", 0, &[500]),
                    frame("middle", 1, &[100, 300]),
                    frame("main", 1, &[100, 200]),
                ],
                freed: vec![400],
            },
            // In `main` after `middle` returned: what only the popped frames held goes.
            Collection {
                frames: vec![frame("main", 0, &[100, 200])],
                freed: vec![300, 500],
            },
            // At teardown, no toy frames: the rest goes.
            Collection {
                frames: vec![],
                freed: vec![100, 200],
            },
        ]
    );
    let mut drops = report.drops.clone();
    drops.sort();
    assert_eq!(
        drops,
        [100, 200, 300, 400, 500],
        "each payload dropped once"
    );
    assert_eq!(report.stats.collections, 3);
    assert_eq!(report.stats.freed, 5);
}

#[test]
fn a_backtrace_crosses_the_host_frame_between_two_activations() {
    let report = dropin::run_demo().expect("the demo runs");
    let frames: Vec<(&str, usize)> = report
        .backtrace
        .iter()
        .map(|f: &BacktraceFrame| (f.function, f.activation))
        .collect();
    assert_eq!(frames, [("inner", 0), ("middle", 1), ("main", 1)]);
    // Each frame is stopped at a call, in its own function's code, in text order.
    let offsets: Vec<u32> = report.backtrace.iter().map(|f| f.text_offset).collect();
    assert!(
        offsets[2] < offsets[1] && offsets[1] < offsets[0],
        "{offsets:?}"
    );
    let printed = report.to_string();
    assert!(
        printed.contains("  0: toy!inner (activation 0")
            && printed.contains("  1: toy!middle (activation 1")
            && printed.contains("  2: toy!main (activation 1"),
        "{printed}"
    );
}
