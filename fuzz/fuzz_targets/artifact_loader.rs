//! `Module::deserialize` on damaged bytes must return `Ok` or `Err`, never panic or
//! crash (it is `unsafe` because a loaded artifact's code runs, but this target never
//! runs one: a module that loads is dropped without running anything).
//!
//! The first input byte picks the mode: even, the rest of the input is the artifact;
//! odd, the rest seeds edits of a real artifact (`tests/props/artifact.rs`, included by
//! path: the same mutations as the property test), re-checksummed so that most reach
//! the structural validation behind the checksum.

#![no_main]

#[allow(dead_code, reason = "shared with the property tests")]
#[path = "../../tests/props/artifact.rs"]
mod artifact;
#[allow(dead_code, reason = "shared with the property tests")]
#[path = "../../tests/props/gen.rs"]
mod gen;

use framewalk::{Config, Engine};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static ENGINE: Engine = Engine::new(Config::default()).expect("engine");
    static BASE: Vec<u8> = ENGINE.with(|engine| {
        framewalk::runtime::compile_artifact(engine, artifact::BASE_WAT.as_bytes())
            .expect("the base module compiles")
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    ENGINE.with(|engine| {
        if mode & 1 == 0 {
            let _ = artifact::load(engine, rest);
        } else if let Some(case) = artifact::artifact_case_from_bytes(rest) {
            let bytes = BASE.with(|base| artifact::apply(base, &case));
            let _ = artifact::load(engine, &bytes);
        }
    });
});
