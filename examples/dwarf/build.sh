#!/bin/sh
# Rebuilds shapes.wasm from shapes.cpp with Debian's clang 14 and wasm-ld 14
# (`apt-get install clang-14 lld-14`). The .wasm is checked in; CI does not need clang.
# wasm-ld 14 writes demangled names into the name section (`--no-demangle` does not
# change that); the mangled ones are DWARF's linkage names, which framewalk demangles.
set -eu
cd "$(dirname "$0")"
# shapes.wasm carries DWARF 4 (clang 14's default); shapes-dwarf5.wasm the same code
# with DWARF 5 (.debug_line_str, .debug_str_offsets, .debug_addr, .debug_rnglists),
# the default of newer clang and rustc.
for version in 4 5; do
    out=shapes.wasm
    [ "$version" = 5 ] && out=shapes-dwarf5.wasm
    clang-14 --target=wasm32 -O1 -gdwarf-$version -fdebug-prefix-map="$PWD"=. \
        -nostdlib -fno-exceptions -Wl,--no-entry -Wl,--export-dynamic \
        -o "$out" shapes.cpp
done
