//! Random programs under the property tests' oracle (see `tests/props.rs`): the
//! walker's frames against a shadow stack at every host callback and every trap,
//! payload canaries on every access, exact drops, and the same behaviour with a
//! collection at every host callback as without.
//!
//! The fuzz input seeds the program generator (`tests/props/gen.rs`, included by path
//! so generator and oracle are the same code as the property tests'). Host panics are
//! turned into host errors: libFuzzer's panic hook aborts on any panic.

#![no_main]

#[allow(dead_code, reason = "shared with the property tests")]
#[path = "../../tests/props/cfi.rs"]
mod cfi;
#[allow(dead_code, reason = "shared with the property tests")]
#[path = "../../tests/props/gen.rs"]
mod gen;
#[allow(dead_code, reason = "shared with the property tests")]
#[path = "../../tests/props/oracle.rs"]
mod oracle;

use framewalk::{Config, Engine};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // The oracle compares whole trap backtraces: no frame limit.
    static ENGINE: Engine = Engine::new(Config {
        max_wasm_stack: 256 * 1024,
        wasm_backtrace_max_frames: None,
        ..Config::default()
    })
    .expect("engine");
}

fuzz_target!(|data: &[u8]| {
    let Some(program) = gen::program_from_bytes(data) else {
        return;
    };
    let mut stats = oracle::Stats::default();
    let options = oracle::Options {
        allow_panics: false,
    };
    let result = ENGINE.with(|engine| oracle::check_program(engine, &program, options, &mut stats));
    if let Err(e) = result {
        panic!("{e}\n\n{}\n{program:?}", program.to_wat());
    }
});
