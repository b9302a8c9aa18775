//! Source lines and demangled names in backtraces.
//!
//! The DWARF comes from a real toolchain: `examples/dwarf/shapes.wasm` is
//! `examples/dwarf/shapes.cpp` built by clang 14 for wasm32 at `-O1 -g`
//! (`examples/dwarf/build.sh`). Expected offsets are computed from the binary
//! (`common::Wasm`); expected lines and columns from the source text, by finding the
//! line that contains a piece of code and the column of a marker in it. Nothing
//! expected is written as a number.

mod common;

use common::Wasm;
use framewalk::trap::{FrameInfo, SourceLocation, TrapCode};
use framewalk::{Caller, Engine, Error, Extern, Func, Instance, Module, Store, Trap, Val};
use wasmparser::Operator;

const SHAPES: &[u8] = include_bytes!("../examples/dwarf/shapes.wasm");
const SOURCE: &str = include_str!("../examples/dwarf/shapes.cpp");
/// The source file's path as the build recorded it (`-fdebug-prefix-map=$PWD=.`).
const FILE: &str = "./shapes.cpp";

const AVERAGE: &str = "shapes::average(shapes::Grid const&, int)";
const ROW_AVERAGE: &str = "shapes::row_average(shapes::Grid&, int)";
const REPORT: &str = "shapes::report()";

/// `(line, column)`, both 1-based, of `marker` in the one line of the source that
/// contains `code`.
fn at(code: &str, marker: &str) -> (u32, u32) {
    let found: Vec<(usize, &str)> = SOURCE
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(code))
        .collect();
    assert_eq!(found.len(), 1, "exactly one source line contains {code:?}");
    let (index, line) = found[0];
    let column = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is in {line:?}"));
    (index as u32 + 1, column as u32 + 1)
}

/// The expected location: `function` is the demangled name.
fn loc(function: &str, (line, column): (u32, u32), inlined: bool) -> (String, String, bool) {
    (
        function.to_string(),
        format!("{FILE}:{line}:{column}"),
        inlined,
    )
}

/// The comparable form of a frame's source locations.
fn locations(source: &[SourceLocation]) -> Vec<(String, String, bool)> {
    source
        .iter()
        .map(|l| {
            (
                l.display_function().unwrap_or_default().into_owned(),
                l.display_position().to_string(),
                l.inlined,
            )
        })
        .collect()
}

struct Shapes {
    wasm: Wasm,
    store: Store<Vec<Vec<FrameInfo>>>,
    instance: Instance,
    module: Module,
}

impl Shapes {
    /// Instantiates `bytes` (shapes.wasm or its artifact) with a `framewalk.backtrace`
    /// import that records the backtrace it sees.
    fn new(bytes: &[u8]) -> Shapes {
        let engine = Engine::new(Default::default()).unwrap();
        let module = Module::new(&engine, bytes).unwrap();
        Shapes::with_module(module)
    }

    fn with_module(module: Module) -> Shapes {
        let mut store = Store::new(module.engine(), Vec::new());
        let backtrace = Func::wrap(&mut store, |mut caller: Caller<'_, Vec<Vec<FrameInfo>>>| {
            let frames = caller.backtrace().unwrap();
            caller.data_mut().push(frames);
        })
        .unwrap();
        let instance = Instance::new(&mut store, &module, &[Extern::Func(backtrace)]).unwrap();
        Shapes {
            wasm: Wasm::from_binary(SHAPES.to_vec()),
            store,
            instance,
            module,
        }
    }

    fn trap(&mut self, name: &str, params: &[Val]) -> Trap {
        let f = self.instance.get_func(&self.store, name).unwrap();
        let mut results = vec![Val::I32(0); f.ty(&self.store).unwrap().results().len()];
        match f.call(&mut self.store, params, &mut results) {
            Err(Error::Trap(t)) => t,
            other => panic!("{name}: expected a trap, got {other:?}"),
        }
    }
}

#[test]
fn a_trap_names_the_source_line_and_every_inlined_call() {
    let mut s = Shapes::new(SHAPES);
    let trap = s.trap("run", &[Val::I32(4), Val::I32(4)]);
    assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
    let w = &s.wasm;
    let divide = w.only_op(AVERAGE, "i32.div_s", |op| matches!(op, Operator::I32DivS));
    let offsets: Vec<_> = trap.frames().iter().map(|f| f.wasm_offset).collect();
    assert_eq!(
        offsets,
        [
            Some(divide),
            Some(w.call(ROW_AVERAGE, AVERAGE)),
            Some(w.call("run", ROW_AVERAGE))
        ]
    );
    let frames = trap.frames();
    assert_eq!(
        locations(&frames[0].source),
        [
            loc(
                "shapes::divide(int, int)",
                at("return total / count;", "/"),
                true
            ),
            loc(
                "shapes::checked_div(int, int)",
                at("return divide(total, count);", "divide"),
                true
            ),
            loc(
                AVERAGE,
                at("return checked_div(total, count);", "checked_div"),
                false
            ),
        ]
    );
    assert_eq!(
        locations(&frames[1].source),
        [loc(
            ROW_AVERAGE,
            at("return average(grid, count);", "average"),
            false
        )]
    );
    assert_eq!(
        locations(&frames[2].source),
        [loc(
            "run",
            at("return shapes::row_average(grid, row);", "shapes"),
            false
        )]
    );
    // The raw names are kept as the module gives them; display demangles.
    assert_eq!(
        frames[0].source[0].function.as_deref(),
        Some("_ZN6shapesL6divideEii")
    );

    let line = |(l, c): (u32, u32)| format!("{FILE}:{l}:{c}");
    assert_eq!(
        trap.to_string(),
        format!(
            "wasm trap: integer divide by zero\n\
             wasm backtrace:\n    \
             0: {:#6x} - {AVERAGE}\n                  \
             inlined shapes::divide(int, int) at {}\n                  \
             inlined shapes::checked_div(int, int) at {}\n                  \
             at {}\n    \
             1: {:#6x} - {ROW_AVERAGE}\n                  \
             at {}\n    \
             2: {:#6x} - run\n                  \
             at {}",
            divide,
            line(at("return total / count;", "/")),
            line(at("return divide(total, count);", "divide")),
            line(at("return checked_div(total, count);", "checked_div")),
            w.call(ROW_AVERAGE, AVERAGE),
            line(at("return average(grid, count);", "average")),
            w.call("run", ROW_AVERAGE),
            line(at("return shapes::row_average(grid, row);", "shapes")),
        )
    );
}

#[test]
fn the_compact_backtrace_looks_lines_up_on_demand() {
    let mut s = Shapes::new(SHAPES);
    let trap = s.trap("fail", &[]);
    assert_eq!(trap.code(), TrapCode::Unreachable);
    let bt = trap.backtrace();
    assert_eq!(bt.len(), 2);
    let newest = bt.frame(0).unwrap();
    assert_eq!(newest.func_name(), Some("fail_loudly()"));
    assert_eq!(
        locations(&newest.source_locations()),
        [loc(
            "fail_loudly()",
            at("__builtin_trap();", "__builtin_trap"),
            false
        )]
    );
    assert_eq!(
        locations(&bt.frame(1).unwrap().source_locations()),
        [loc("fail", at("    fail_loudly();", "fail_loudly"), false)]
    );
}

#[test]
fn a_host_function_sees_source_lines_below_it() {
    let mut s = Shapes::new(SHAPES);
    let show = s.instance.get_func(&s.store, "show").unwrap();
    show.call(&mut s.store, &[], &mut []).unwrap();
    let seen = s.store.data();
    assert_eq!(seen.len(), 1);
    let frames = &seen[0];
    let names: Vec<_> = frames
        .iter()
        .map(|f| f.demangled_name().unwrap().into_owned())
        .collect();
    assert_eq!(names, [REPORT, "show"]);
    assert_eq!(
        frames[0].wasm_offset,
        Some(s.wasm.call(REPORT, "backtrace"))
    );
    assert_eq!(
        locations(&frames[0].source),
        [loc(REPORT, at("    backtrace();", "backtrace"), false)]
    );
    assert_eq!(
        locations(&frames[1].source),
        [loc("show", at("    shapes::report();", "shapes"), false)]
    );
}

#[test]
fn a_saved_artifact_keeps_its_source_lines() {
    let engine = Engine::new(Default::default()).unwrap();
    let artifact = Module::new(&engine, SHAPES).unwrap().serialize();
    // SAFETY: the bytes are `serialize` of a module this test just compiled.
    let module = unsafe { Module::deserialize(&engine, &artifact) }.unwrap();
    let mut s = Shapes::with_module(module);
    let trap = s.trap("run", &[Val::I32(2), Val::I32(2)]);
    assert_eq!(
        locations(&trap.frames()[1].source),
        [loc(
            ROW_AVERAGE,
            at("return average(grid, count);", "average"),
            false
        )]
    );
    assert!(!s.module.source_map().unwrap().is_empty());
}

#[test]
fn a_module_without_dwarf_prints_as_before() {
    let wat = r#"(module $plain
        (func $inner (result i32) (unreachable))
        (func $main (export "main") (result i32) (call $inner)))"#;
    let w = Wasm::new(wat);
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, &w.bytes).unwrap();
    assert!(module.source_map().unwrap().is_empty());
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let main = instance.get_typed_func::<(), i32>(&store, "main").unwrap();
    let Err(Error::Trap(trap)) = main.call(&mut store, ()) else {
        panic!("main traps")
    };
    assert!(trap.frames().iter().all(|f| f.source.is_empty()));
    assert_eq!(
        trap.to_string(),
        format!(
            "wasm trap: unreachable\nwasm backtrace:\n    \
             0: {:#6x} - plain!inner\n    \
             1: {:#6x} - plain!main",
            w.only_op("inner", "unreachable", |op| matches!(
                op,
                Operator::Unreachable
            )),
            w.call("main", "inner")
        )
    );
}

/// `bytes` with a custom section `name` holding `data` appended.
fn with_custom_section(mut bytes: Vec<u8>, name: &str, data: &[u8]) -> Vec<u8> {
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
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    bytes.push(0);
    leb(payload.len(), &mut bytes);
    bytes.extend_from_slice(&payload);
    bytes
}

#[test]
fn malformed_dwarf_costs_the_lines_not_the_module() {
    let w = Wasm::new(
        r#"(module (func (export "main") (result i32) (i32.div_u (i32.const 1) (i32.const 0))))"#,
    );
    // A unit header that claims more bytes than the section has, then a valid-looking
    // version 4 header whose abbreviation offset is out of range.
    let bytes = with_custom_section(
        w.bytes.clone(),
        ".debug_info",
        &[0xff, 0xff, 0xff, 0x0f, 4, 0],
    );
    let bytes = with_custom_section(bytes, ".debug_abbrev", &[1, 0x11, 1]);
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, &bytes).unwrap();
    let err = module.source_map().unwrap_err();
    assert!(err.to_string().starts_with("malformed DWARF"), "{err}");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let main = instance.get_typed_func::<(), i32>(&store, "main").unwrap();
    let Err(Error::Trap(trap)) = main.call(&mut store, ()) else {
        panic!("main traps")
    };
    assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
    assert_eq!(trap.frames().len(), 1);
    assert!(trap.frames()[0].source.is_empty());
}

#[test]
fn mangled_names_in_the_name_section_are_demangled() {
    // rustc (legacy and v0 mangling) and C++ names, as toolchains write them.
    let rust_legacy = "_ZN4core9panicking5panic17h9c6e7a8d1d3bb6a1E";
    let rust_v0 = "_RNvMCs4fqI2P2rA04_4demoNtB2_4Grid7average";
    let cpp = "_ZN6shapes7averageERKNS_4GridEi";
    let wat = format!(
        r#"(module $mangled
        (func ${rust_legacy} (unreachable))
        (func ${rust_v0} (call ${rust_legacy}))
        (func ${cpp} (call ${rust_v0}))
        (func $main (export "main") (call ${cpp})))"#
    );
    let w = Wasm::new(&wat);
    let engine = Engine::new(Default::default()).unwrap();
    let module = Module::new(&engine, &w.bytes).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let main = instance.get_typed_func::<(), ()>(&store, "main").unwrap();
    let Err(Error::Trap(trap)) = main.call(&mut store, ()) else {
        panic!("main traps")
    };
    let raw: Vec<_> = trap
        .frames()
        .iter()
        .map(|f| f.func_name.as_deref().unwrap())
        .collect();
    assert_eq!(raw, [rust_legacy, rust_v0, cpp, "main"]);
    let shown: Vec<_> = trap
        .frames()
        .iter()
        .map(|f| f.demangled_name().unwrap().into_owned())
        .collect();
    assert_eq!(
        shown,
        [
            "core::panicking::panic",
            "<demo::Grid>::average",
            "shapes::average(shapes::Grid const&, int)",
            "main"
        ]
    );
    assert_eq!(
        trap.to_string(),
        format!(
            "wasm trap: unreachable\nwasm backtrace:\n    \
             0: {:#6x} - mangled!core::panicking::panic\n    \
             1: {:#6x} - mangled!<demo::Grid>::average\n    \
             2: {:#6x} - mangled!shapes::average(shapes::Grid const&, int)\n    \
             3: {:#6x} - mangled!main",
            w.only_op(rust_legacy, "unreachable", |op| matches!(
                op,
                Operator::Unreachable
            )),
            w.call(rust_v0, rust_legacy),
            w.call(cpp, rust_v0),
            w.call("main", cpp),
        )
    );
}
