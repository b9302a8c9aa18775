#!/bin/sh
# Builds the WASI test programs with Debian's toolchain:
#   apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32
# The .wasm files are committed, so tests and CI need no compiler; run this after
# changing a .c file. -g keeps the DWARF that backtraces read for file:line; the
# prefix map names the sources examples/wasi/NAME.c wherever the tree is checked out.
set -eu
cd "$(dirname "$0")"
CC=${CC:-clang-14}
for src in hello cat escape trap exit; do
    "$CC" --target=wasm32-wasi --sysroot=/usr -O1 -g \
        -fdebug-prefix-map="$(pwd)"=examples/wasi -o "$src.wasm" "$src.c"
done
