//! Artifacts as untrusted input: a corrupted, truncated or foreign file gives a typed
//! error, never a panic; a valid one runs exactly like the module it came from.

use anyhow::Result;
use framewalk::artifact::{sections, ArtifactError};
use framewalk::runtime::{compile_artifact, ModuleLoadError};
use framewalk::{Engine, Instance, Module, Store};
use object::{Object, ObjectSection};

const WAT: &str = r#"
(module $art
  (memory (export "mem") 1)
  (data (i32.const 16) "framewalk")
  (table 2 funcref)
  (elem (i32.const 0) $double $square)
  (type $t (func (param i32) (result i32)))
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  (func (export "apply") (param i32 i32) (result i32)
    (call_indirect (type $t) (local.get 0) (local.get 1)))
  (func (export "byte") (param i32) (result i32) (i32.load8_u (local.get 0))))
"#;

fn engine() -> Engine {
    Engine::new(Default::default()).unwrap()
}

fn apply(engine: &Engine, module: &Module, x: i32, f: i32) -> Result<i32> {
    let mut store = Store::new(engine, ());
    let inst = Instance::new(&mut store, module, &[])?;
    let apply = inst
        .get_func(&store, "apply")
        .unwrap()
        .typed::<(i32, i32), i32>(&store)?;
    Ok(apply.call(&mut store, (x, f))?)
}

/// Loads `bytes`, which must fail with an artifact error (the payload of the result).
fn load_err(engine: &Engine, bytes: &[u8]) -> ArtifactError {
    // SAFETY: the bytes are an artifact of ours, damaged to be rejected; if one loads
    // anyway the test fails before anything in it runs.
    match unsafe { Module::deserialize(engine, bytes) } {
        Ok(_) => panic!("corrupt artifact loaded"),
        Err(ModuleLoadError::Artifact(e)) => e,
        Err(other) => panic!("expected an artifact error, got {other}"),
    }
}

fn section_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let file = object::File::parse(bytes).unwrap();
    let (start, len) = file.section_by_name(name).unwrap().file_range().unwrap();
    start as usize..(start + len) as usize
}

/// Rewrites the header checksum so that only the structural checks can catch `bytes`.
fn fix_checksum(bytes: &mut [u8]) {
    let at = section_range(bytes, sections::HEADER).start + sections::CHECKSUM_OFFSET;
    let sum = sections::fnv1a(&[&bytes[..at], &[0u8; 8], &bytes[at + 8..]]);
    bytes[at..at + 8].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn an_artifact_runs_like_its_source_from_memory_and_from_a_file() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    let from_source = Module::new(&engine, WAT.as_bytes())?;
    // SAFETY: the bytes were just compiled by this engine, from `WAT`.
    let from_bytes = unsafe { Module::deserialize(&engine, &bytes) }?;
    let path = std::env::temp_dir().join(format!("framewalk-artifact-{}.fwo", std::process::id()));
    std::fs::write(&path, &bytes)?;
    // SAFETY: this test wrote the file from those bytes and nothing else writes it.
    let from_file = unsafe { Module::deserialize_file(&engine, &path) }?;
    for m in [&from_source, &from_bytes, &from_file] {
        assert_eq!(apply(&engine, m, 7, 0)?, 14);
        assert_eq!(apply(&engine, m, 7, 1)?, 49);
    }
    assert_eq!(from_file.serialize(), bytes);
    std::fs::remove_file(path)?;
    Ok(())
}

#[test]
fn every_truncation_is_a_typed_error() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let e = load_err(&engine, &bytes[..len]);
        assert!(
            matches!(
                e,
                ArtifactError::Elf(_)
                    | ArtifactError::MissingSection(_)
                    | ArtifactError::Checksum { .. }
                    | ArtifactError::Malformed { .. }
            ),
            "truncated to {len}: {e}"
        );
    }
    Ok(())
}

#[test]
fn a_flipped_byte_in_any_section_is_caught_by_the_checksum() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    for name in [
        sections::TEXT,
        sections::FUNCTIONS,
        sections::NAMES,
        sections::TRAPS,
        sections::ADDRESS_MAP,
        sections::STACK_MAPS,
        sections::WASM,
        sections::EH_FRAME,
    ] {
        let r = section_range(&bytes, name);
        if r.is_empty() {
            continue;
        }
        for at in [r.start, r.start + r.len() / 2, r.end - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                matches!(load_err(&engine, &bad), ArtifactError::Checksum { .. }),
                "{name} at {at}"
            );
        }
    }
    Ok(())
}

#[test]
fn structurally_corrupt_sections_with_a_valid_checksum_are_typed_errors() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    // Every byte of the metadata sections, flipped one at a time, with the checksum
    // recomputed: the structural validation alone must hold. Loading may also succeed
    // (e.g. a changed name), but must never panic.
    let mut errors = 0;
    let mut loaded = 0;
    for name in [
        sections::FUNCTIONS,
        sections::TRAPS,
        sections::ADDRESS_MAP,
        sections::STACK_MAPS,
        sections::NAMES,
        sections::EH_FRAME,
    ] {
        let r = section_range(&bytes, name);
        for at in r {
            let mut bad = bytes.clone();
            bad[at] ^= 0xff;
            fix_checksum(&mut bad);
            // SAFETY: an edit of an artifact of ours; a module that loads is dropped
            // unrun.
            match unsafe { Module::deserialize(&engine, &bad) } {
                Ok(_) => loaded += 1,
                Err(ModuleLoadError::Artifact(ArtifactError::Malformed { .. })) => errors += 1,
                Err(ModuleLoadError::Artifact(e)) => panic!("{name}: unexpected {e}"),
                Err(e) => panic!("{name}: unexpected {e}"),
            }
        }
    }
    assert!(
        errors > 0 && loaded < errors,
        "errors {errors}, loaded {loaded}"
    );
    // A specific one: a function record pointing past the text.
    let mut bad = bytes.clone();
    let f = section_range(&bad, sections::FUNCTIONS).start;
    bad[f + 4..f + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_checksum(&mut bad);
    match load_err(&engine, &bad) {
        ArtifactError::Malformed { section, reason } => {
            assert_eq!(section, sections::FUNCTIONS);
            assert!(reason.contains("outside the text"), "{reason}");
        }
        e => panic!("unexpected {e}"),
    }
    Ok(())
}

#[test]
fn foreign_and_garbage_files_are_rejected() -> Result<()> {
    let engine = engine();
    assert!(matches!(load_err(&engine, &[]), ArtifactError::Elf(_)));
    assert!(matches!(
        load_err(&engine, b"\x7fELF garbage garbage garbage"),
        ArtifactError::Elf(_)
    ));
    // An ordinary ELF file: this test binary.
    let me = std::fs::read(std::env::current_exe()?)?;
    assert_eq!(
        load_err(&engine, &me),
        ArtifactError::MissingSection(sections::HEADER)
    );
    // Wrong version, with a matching checksum.
    let mut bytes = compile_artifact(&engine, WAT.as_bytes())?;
    let h = section_range(&bytes, sections::HEADER).start;
    bytes[h + 8] = 99;
    fix_checksum(&mut bytes);
    assert_eq!(
        load_err(&engine, &bytes),
        ArtifactError::Version {
            found: 99,
            expected: sections::VERSION
        }
    );
    Ok(())
}

/// A module of `n` functions whose externref locals are live across calls, in a few
/// recurring patterns (as compiled code from one source language tends to be).
fn externref_heavy_module(n: usize) -> String {
    let mut wat = String::from(
        "(module (import \"h\" \"f\" (func $f (param externref) (result externref)))\n",
    );
    for i in 0..n {
        let keep = 1 + i % 4; // 1..=4 references live across the calls
        let mut body = String::new();
        for k in 0..keep {
            body.push_str(&format!("(local.set $l{k} (call $f (local.get $p)))\n"));
        }
        for k in 0..keep {
            body.push_str(&format!("(drop (call $f (local.get $l{k})))\n"));
        }
        let locals: String = (0..keep)
            .map(|k| format!(" (local $l{k} externref)"))
            .collect();
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param $p externref) (result externref){locals}\n{body}(local.get $p))\n"
        ));
    }
    wat.push(')');
    wat
}

#[test]
fn identical_stack_maps_are_stored_once() -> Result<()> {
    let isa = framewalk::compile::host_isa()?;
    let wat = externref_heavy_module(400);
    let compiled = framewalk::compile::compile_module(&*isa, wat.as_bytes())?;
    let build = || {
        let mut b = framewalk::stackmap::StackMapBuilder::new();
        for m in &compiled.stack_maps {
            b.add(m.return_offset, m.span, &m.slots).unwrap();
        }
        b
    };
    let safepoints = compiled.stack_maps.len();
    let distinct = build().distinct_maps();
    let with = build().encoded_len(true);
    let without = build().encoded_len(false);
    println!(
        "400 functions: {safepoints} safepoints, {distinct} distinct maps; section {with} bytes with dedup \
         ({:.1} per safepoint), {without} bytes without ({:.1} per safepoint)",
        with as f64 / safepoints as f64,
        without as f64 / safepoints as f64
    );
    assert!(safepoints > 1000, "{safepoints}");
    assert!(
        distinct < safepoints / 20,
        "{distinct} distinct of {safepoints}"
    );
    assert!(with < without, "{with} vs {without}");
    assert_eq!(build().finish().len(), with);
    Ok(())
}

/// Every section of the format is in the artifact, and every one is checked: dropping
/// any of them (renaming it) is a `MissingSection` error.
#[test]
fn every_section_is_required() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    for name in sections::ALL_METADATA.iter().chain([&sections::TEXT]) {
        let file = object::File::parse(&bytes[..])?;
        let index = file.section_by_name(name).unwrap().index();
        drop(file);
        // Rename the section in the section-name string table: its first byte, `.`,
        // becomes `_`, so the name no longer matches.
        let mut bad = bytes.clone();
        let elf = object::read::elf::ElfFile64::<object::LittleEndian>::parse(&bytes[..])?;
        use object::read::elf::SectionHeader as _;
        let header = elf.section_by_index(index)?.elf_section_header();
        let strtab = elf
            .elf_section_table()
            .section(object::SectionIndex(usize::from(
                elf.elf_header().e_shstrndx.get(object::LittleEndian),
            )))?;
        let name_at = strtab.sh_offset(object::LittleEndian) as usize
            + header.sh_name(object::LittleEndian) as usize;
        assert_eq!(bad[name_at], b'.');
        bad[name_at] = b'_';
        if *name != sections::HEADER {
            fix_checksum(&mut bad);
        }
        assert_eq!(
            load_err(&engine, &bad),
            ArtifactError::MissingSection(name),
            "{name}"
        );
    }
    Ok(())
}

/// The loaded `.eh_frame` has one FDE per function body and per entry trampoline,
/// covering exactly its code at its loaded address (read back with gimli's reader).
#[test]
fn eh_frame_describes_every_function_where_it_was_loaded() -> Result<()> {
    use cranelift_codegen::gimli::read::{BaseAddresses, CieOrFde, EhFrame, UnwindSection};
    use cranelift_codegen::gimli::LittleEndian;
    let engine = engine();
    let module = Module::new(&engine, WAT.as_bytes())?;
    let base = module.text_range().start as u64;
    let eh = module.eh_frame();
    assert_eq!(
        eh.as_ptr() as usize,
        module.text_range().start + sections::eh_frame_offset(module.text_len()).unwrap(),
        "the loaded .eh_frame sits where its PC-relative addresses assume"
    );
    let section = EhFrame::new(eh, LittleEndian);
    let bases = BaseAddresses::default().set_eh_frame(eh.as_ptr() as u64);
    let mut fdes = Vec::new();
    let mut entries = section.entries(&bases);
    while let Some(entry) = entries.next()? {
        if let CieOrFde::Fde(partial) = entry {
            let fde = partial.parse(UnwindSection::cie_from_offset)?;
            fdes.push((fde.initial_address() - base, fde.len()));
        }
    }
    let art = module.artifact()?;
    let mut want = Vec::new();
    for f in art.functions() {
        want.push((u64::from(f.offset), u64::from(f.len)));
        if let Some((o, l)) = f.entry_trampoline {
            want.push((u64::from(o), u64::from(l)));
        }
    }
    fdes.sort();
    want.sort();
    assert_eq!(fdes, want);
    assert!(
        want.len() > art.num_functions(),
        "trampolines too: {want:?}"
    );
    // And the symbols a profiler gets are the same function bodies.
    let symbols: Vec<(u64, u64)> = module
        .function_symbols()
        .map(|f| (f.start as u64 - base, f.len as u64))
        .collect();
    assert!(symbols.iter().all(|s| want.contains(s)), "{symbols:?}");
    assert_eq!(symbols.len(), art.num_functions());
    Ok(())
}

#[test]
fn an_fde_outside_the_text_is_rejected() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    let r = section_range(&bytes, sections::EH_FRAME);
    // The CIE comes first: its length word, then the FDE's length word and CIE pointer,
    // then the FDE's PC-relative start address (sdata4).
    let cie_len = u32::from_le_bytes(bytes[r.start..r.start + 4].try_into()?) as usize;
    let pc_begin = r.start + 4 + cie_len + 8;
    let mut bad = bytes.clone();
    bad[pc_begin..pc_begin + 4].copy_from_slice(&0x4000_0000i32.to_le_bytes());
    fix_checksum(&mut bad);
    match load_err(&engine, &bad) {
        ArtifactError::Malformed { section, reason } => {
            assert_eq!(section, sections::EH_FRAME);
            assert!(reason.contains("outside the text"), "{reason}");
        }
        e => panic!("unexpected {e}"),
    }
    Ok(())
}

/// A 64-bit memory's type (its `i64` index and limits past `u32`) survives the
/// artifact, and the loaded code bounds-checks it like the source's; an engine with
/// memory64 turned off refuses the artifact by naming the proposal.
#[test]
fn a_64_bit_memory_round_trips_through_an_artifact() -> Result<()> {
    use framewalk::types::ExternType;
    use framewalk::{Config, MemoryType};
    let wat = r#"(module
        (import "host" "mem" (memory i64 1 0x100000000))
        (memory (export "own") i64 2 0x1000000000)
        (func (export "load") (param i64) (result i32) (i32.load (local.get 0))))"#;
    let engine = engine();
    let bytes = compile_artifact(&engine, wat.as_bytes())?;
    // SAFETY: the bytes were just compiled by this build.
    let module = unsafe { Module::deserialize(&engine, &bytes)? };
    let imported: Vec<_> = module.imports().map(|(_, _, ty)| ty.clone()).collect();
    assert_eq!(
        imported,
        [ExternType::Memory(MemoryType::new64(1, Some(1 << 32)))]
    );
    let mut store = Store::new(&engine, ());
    let host = framewalk::Memory::new(&mut store, MemoryType::new64(1, Some(1)))?;
    let inst = Instance::new(&mut store, &module, &[framewalk::Extern::Memory(host)])?;
    let own = inst.get_memory(&store, "own").unwrap();
    assert_eq!(own.ty(&store)?, MemoryType::new64(2, Some(1 << 36)));
    let load = inst.get_typed_func::<i64, i32>(&store, "load")?;
    // Memory 0 is the imported one, of 1 page.
    assert_eq!(load.call(&mut store, 0xfffc)?, 0);
    assert!(load.call(&mut store, 0xfffd).is_err());
    assert!(load.call(&mut store, 1 << 32).is_err());

    let without = Engine::new(Config {
        wasm_memory64: false,
        ..Default::default()
    })?;
    // SAFETY: the bytes were just compiled by this build.
    let e = unsafe { Module::deserialize(&without, &bytes) }.expect_err("memory64 is off");
    assert!(
        e.to_string().contains("unsupported wasm feature: memory64"),
        "{e}"
    );
    Ok(())
}

#[path = "artifact/crafted.rs"]
mod crafted;

/// The child process of [`crafted_metadata_edits_never_crash`]: runs one crafted
/// artifact (named by `FRAMEWALK_CRAFTED_CHILD`) and exits. Ignored; the parent runs it.
#[test]
#[ignore = "the child process of crafted_metadata_edits_never_crash"]
fn crafted_child() {
    if let Ok(spec) = std::env::var(crafted::CHILD_ENV) {
        crafted::child_main(&spec);
    }
}

/// The crafted-artifact experiment (`tests/artifact/crafted.rs`): metadata bytes edited
/// with the checksum recomputed, each loaded and run in a child process. Every 17th
/// byte by default; `FRAMEWALK_CRAFTED_STRIDE=1` edits all of them.
///
/// No edit may panic, hang or crash the process, except in the two tables the code's
/// own behaviour depends on and nothing else describes, whose edits are
/// indistinguishable from rewriting the code:
///
/// - `.fw.traps` (and its section header's size): which faulting instructions are
///   wasm traps. A trap site moved off its instruction, or dropped, leaves a fault at a
///   PC the table does not list, which is a crash by design (as in Wasmtime: a fault in
///   wasm code that is not a trap is a bug in the code).
/// - the bitmaps of `.fw.stackmaps`: which frame slots hold references. A bit set for
///   a slot holding an integer makes the collector follow it; only analysing the code
///   could tell. (Their spans, offsets and structure are checked.)
#[test]
fn crafted_metadata_edits_never_crash() -> Result<()> {
    let engine = engine();
    let base = compile_artifact(&engine, crafted::WAT.as_bytes())?;
    let stride = crafted::stride(17);
    let started = std::time::Instant::now();
    let report = crafted::run_experiment(&base, stride, 2);
    println!(
        "crafted artifact of {} bytes, every {stride}th metadata byte, {:.1} s:\n{}",
        base.len(),
        started.elapsed().as_secs_f64(),
        report.table()
    );
    for (region, off, edit, outcome, detail) in &report.notable {
        println!("{region}+{off:#x} {edit:?}: {outcome:?} {detail}");
    }
    let failures: usize = crafted::Outcome::FAILURES
        .iter()
        .map(|o| report.total(*o))
        .sum();
    println!("{failures} panics, crashes, overflows or hangs");
    let explained = |region: &str| {
        matches!(
            region,
            ".fw.traps" | "section headers [.fw.traps]" | ".fw.stackmaps"
        )
    };
    let unexplained: Vec<_> = report
        .notable
        .iter()
        .filter(|(region, _, _, outcome, _)| {
            crafted::Outcome::FAILURES.contains(outcome) && !explained(region)
        })
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
    assert_eq!(report.total(crafted::Outcome::Panic), 0);
    assert_eq!(report.total(crafted::Outcome::Hang), 0);
    assert!(
        report.total(crafted::Outcome::Error) > report.total(crafted::Outcome::Differs),
        "most edits are rejected"
    );
    Ok(())
}

/// `Module::new` compiles wasm; given an artifact it refuses with a typed error, since
/// a safe function must not load machine code.
#[test]
fn module_new_refuses_an_artifact() -> Result<()> {
    let engine = engine();
    let bytes = compile_artifact(&engine, WAT.as_bytes())?;
    match Module::new(&engine, &bytes) {
        Err(ModuleLoadError::AlreadyCompiled) => {}
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("Module::new loaded an artifact"),
    }
    let message = ModuleLoadError::AlreadyCompiled.to_string();
    assert!(message.contains("Module::deserialize"), "{message}");
    Ok(())
}
