// A small SIMD program for wasm32 with -msimd128: sums and dot products over
// i32x4 vectors, one function taking and returning v128 values directly, and an
// entry point that sums through a pointer the caller chooses (a bad one traps in a
// v128.load). Built by build.sh; tests/cli.rs runs it.
#include <stdint.h>
#include <wasm_simd128.h>

#define N 64

static int32_t data[N];

// data[i] = seed * i.
__attribute__((noinline)) static void fill(int32_t seed) {
    v128_t step = wasm_i32x4_splat(4 * seed);
    v128_t v = wasm_i32x4_make(0, seed, 2 * seed, 3 * seed);
    for (int i = 0; i < N; i += 4) {
        wasm_v128_store(&data[i], v);
        v = wasm_i32x4_add(v, step);
    }
}

// The sum of p[0..n], four lanes at a time.
__attribute__((noinline)) static int32_t sum_lanes(const int32_t *p, int n) {
    v128_t acc = wasm_i32x4_splat(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        acc = wasm_i32x4_add(acc, wasm_v128_load(p + i));
    }
    int32_t s = wasm_i32x4_extract_lane(acc, 0) + wasm_i32x4_extract_lane(acc, 1) +
                wasm_i32x4_extract_lane(acc, 2) + wasm_i32x4_extract_lane(acc, 3);
    for (; i < n; i++) {
        s += p[i];
    }
    return s;
}

// seed * (0 + 1 + ... + (n - 1)) for n <= 64.
int32_t sum(int32_t seed, int32_t n) {
    fill(seed);
    return sum_lanes(data, n);
}

// The sum of n values starting at byte address addr (traps when out of bounds).
int32_t sum_at(uint32_t addr, int32_t n) {
    return sum_lanes((const int32_t *)(uintptr_t)addr, n);
}

// a * b + c per i32 lane, then lanes reversed: v128 in, v128 out.
v128_t madd_rev(v128_t a, v128_t b, v128_t c) {
    v128_t r = wasm_i32x4_add(wasm_i32x4_mul(a, b), c);
    return wasm_i32x4_shuffle(r, r, 3, 2, 1, 0);
}
