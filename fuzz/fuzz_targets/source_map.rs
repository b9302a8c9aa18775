//! Reads arbitrary bytes as a module's DWARF sections and demangles what it finds
//! (see `framewalk::debuginfo::fuzz_source_map`): never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    framewalk::debuginfo::fuzz_source_map(data);
});
