//! The raw frame-pointer chain walk the walk benches compare against: following saved
//! FPs with no checks and no lookups.

use std::ops::ControlFlow;

use framewalk::Caller;

/// The youngest wasm frame's FP and the number of wasm frames, from the checked walk.
pub fn youngest_fp_and_count<T>(caller: &Caller<'_, T>) -> (usize, usize) {
    let (mut fp, mut n) = (0usize, 0usize);
    caller
        .visit_frames(|frame| {
            if n == 0 {
                fp = frame.fp;
            }
            n += 1;
            ControlFlow::<()>::Continue(())
        })
        .expect("walk");
    (fp, n)
}

/// Follows `n - 1` saved-FP links from `fp`, with no checks: the raw chain walk.
pub fn chase(mut fp: usize, n: usize) -> usize {
    for _ in 1..n {
        // SAFETY: callers pass what `youngest_fp_and_count` just found, from the host
        // function that is still running above those frames: n live frames linked
        // through their saved FPs; this follows the same links.
        fp = unsafe { std::ptr::read_volatile(fp as *const usize) };
    }
    fp
}

/// The wasm frames `Caller::visit_frames` finds, counted by its visitor.
pub fn count_frames<T>(caller: &Caller<'_, T>) -> usize {
    let mut n = 0usize;
    caller
        .visit_frames(|_| {
            n += 1;
            ControlFlow::<()>::Continue(())
        })
        .expect("walk");
    n
}
