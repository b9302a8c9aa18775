#!/bin/sh
# Rebuilds vecsum.wasm from vecsum.c with Debian's clang 14 and wasm-ld 14
# (`apt-get install clang-14 lld-14`): wasm32 with SIMD (-msimd128), optimized, with
# DWARF. The .wasm is checked in; CI does not need clang.
set -eu
cd "$(dirname "$0")"
clang-14 --target=wasm32 -msimd128 -O2 -g -fdebug-prefix-map="$PWD"=. \
    -nostdlib -Wl,--no-entry -Wl,--export=sum -Wl,--export=sum_at \
    -Wl,--export=madd_rev -o vecsum.wasm vecsum.c
