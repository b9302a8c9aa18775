//! Source-level debug information for backtraces: a module's DWARF read into flat,
//! sorted tables ([`SourceMap`]), and the demangling of Rust and C++ names
//! ([`demangle`]).
//!
//! Toolchains that target wasm (clang, rustc) put DWARF in custom sections named
//! `.debug_info`, `.debug_line`, … In those sections an address is an offset from the
//! start of the code section's contents (the byte after the section's size), not from
//! the start of the binary; [`SourceMap`] converts, so its callers speak in the same
//! offsets as every other part of framewalk (an instruction's offset in the `.wasm`).
//!
//! Invariants:
//! - the DWARF is untrusted input: reading it never panics, and a malformed unit is
//!   an error ([`DebugInfoError`]), never a wrong location;
//! - a lookup allocates only the locations it returns and costs two binary searches
//!   plus a scan of the inlined calls of one function;
//! - DWARF that this reader does not understand (a form it cannot resolve, an address
//!   wider than 32 bits) leaves a location out rather than guessing.

mod demangle;
mod source_map;

pub use demangle::demangle;
pub use source_map::{DebugInfoError, SourceMap};

/// The sections [`fuzz_source_map`] builds from its input, in order.
#[cfg(any(test, feature = "fuzzing"))]
pub const FUZZ_SECTIONS: [&str; 6] = [
    ".debug_info",
    ".debug_abbrev",
    ".debug_line",
    ".debug_str",
    ".debug_ranges",
    ".debug_rnglists",
];

/// Fuzzing entry point: `data` becomes the `.debug_*` sections of a small module (the
/// first 12 bytes give the six sections' lengths, `u16` little-endian, in the order of
/// [`FUZZ_SECTIONS`]); the map must parse or fail without a
/// panic, and answer every offset of the module, and every name must demangle.
/// Returns how many locations the lookups found (0 if the DWARF did not parse).
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_source_map(data: &[u8]) -> usize {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(payload.len(), out);
        out.extend_from_slice(payload);
    }
    let (lengths, mut rest) = data.split_at(data.len().min(2 * FUZZ_SECTIONS.len()));
    // A module with one function `(func)` of 16 `nop`s, so code offsets exist.
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut wasm);
    section(3, &[1, 0], &mut wasm);
    let mut body = vec![0];
    body.extend_from_slice(&[0x01; 16]);
    body.push(0x0b);
    let mut code = vec![1];
    leb(body.len(), &mut code);
    code.extend_from_slice(&body);
    section(10, &code, &mut wasm);
    for (name, len) in FUZZ_SECTIONS.iter().zip(lengths.chunks_exact(2)) {
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let (contents, tail) = rest.split_at(rest.len().min(len));
        rest = tail;
        let mut payload = Vec::new();
        leb(name.len(), &mut payload);
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(contents);
        section(0, &payload, &mut wasm);
    }
    let mut found = 0;
    if let Ok(map) = SourceMap::parse(&wasm) {
        for offset in 0..wasm.len() as u32 + 2 {
            for loc in map.locations(offset) {
                found += 1;
                if let Some(f) = &loc.function {
                    let _ = demangle(f);
                }
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = demangle(s);
    }
    found
}
