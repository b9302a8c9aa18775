//! A tiny deterministic generator for unit tests (xorshift64), so a failing case
//! reproduces from the test's seed alone.

/// A generator seeded with `seed` (a zero seed is made odd): each call with `n > 0`
/// gives the next value below `n`.
pub(crate) fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed | 1;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}
