//! Parses arbitrary bytes as a stack-map section; when they parse, every lookup path
//! must answer consistently (see `framewalk::stackmap::fuzz_reader`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    framewalk::stackmap::fuzz_reader(data);
});
