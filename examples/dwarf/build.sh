#!/bin/sh
# Rebuilds shapes.wasm from shapes.cpp with Debian's clang 14 and wasm-ld 14
# (`apt-get install clang-14 lld-14`). The .wasm is checked in; CI does not need clang.
# wasm-ld 14 writes demangled names into the name section (`--no-demangle` does not
# change that); the mangled ones are DWARF's linkage names, which framewalk demangles.
set -eu
cd "$(dirname "$0")"
clang-14 --target=wasm32 -O1 -g -fdebug-prefix-map="$PWD"=. \
    -nostdlib -fno-exceptions -Wl,--no-entry -Wl,--export-dynamic \
    -o shapes.wasm shapes.cpp
