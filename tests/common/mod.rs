//! What the `unwind` and `traps` integration tests share: the ground truth a backtrace
//! is checked against.
//!
//! Expected wasm offsets are never written as numbers in a test. They are computed
//! from the module's binary with `wasmparser`: "the offset of the call to `$g` in
//! `$f`" is found by decoding `$f`'s body with `OperatorsReader::read_with_offset`,
//! which gives module-relative offsets — the same offsets a trap reports (the
//! trapping instruction for the newest frame of a trap, the `call` instruction for
//! every caller and for the newest frame of a walk from a host function).
//!
//! The expected `Display` of a trap is rendered here from those frames, independently
//! of framewalk's own formatter, following the documented shape:
//!
//! ```text
//! wasm trap: integer divide by zero
//! wasm backtrace:
//!     0:   0x3b - demo!divide
//!     1:   0x44 - demo!middle
//! ```
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod foreign;

use framewalk::trap::FrameInfo;
use wasmparser::{KnownCustom, Name, Operator, Parser, Payload, TypeRef};

/// A module's binary with its function names, for computing expected frames.
pub struct Wasm {
    /// The binary (what `Module::new` is given).
    pub bytes: Vec<u8>,
    /// The module name from the name section.
    pub module_name: Option<String>,
    imported_funcs: u32,
    /// `(function index, name)` from the name section.
    names: Vec<(u32, String)>,
}

/// One frame a backtrace must contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Function index in the module's function space (imports first).
    pub func_index: u32,
    /// The function's name from the name section.
    pub func_name: String,
    /// The module's name from the name section.
    pub module_name: Option<String>,
    /// Module-relative offset of the instruction; `None` where the PC is at no wasm
    /// instruction (a function's prologue).
    pub wasm_offset: Option<u32>,
}

impl Wasm {
    /// Assembles `wat` and reads its names.
    pub fn new(wat: &str) -> Wasm {
        Wasm::from_binary(wat::parse_str(wat).expect("test module assembles"))
    }

    /// Reads the names of the wasm binary `bytes`.
    pub fn from_binary(bytes: Vec<u8>) -> Wasm {
        let mut imported_funcs = 0;
        let mut names = Vec::new();
        let mut module_name = None;
        for payload in Parser::new(0).parse_all(&bytes) {
            match payload.expect("test module parses") {
                Payload::ImportSection(reader) => {
                    for import in reader {
                        if matches!(import.expect("import").ty, TypeRef::Func(_)) {
                            imported_funcs += 1;
                        }
                    }
                }
                Payload::CustomSection(reader) => {
                    if let KnownCustom::Name(section) = reader.as_known() {
                        for name in section {
                            match name.expect("name subsection") {
                                Name::Module { name, .. } => module_name = Some(name.to_string()),
                                Name::Function(map) => {
                                    for naming in map {
                                        let naming = naming.expect("function name");
                                        names.push((naming.index, naming.name.to_string()));
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Wasm {
            bytes,
            module_name,
            imported_funcs,
            names,
        }
    }

    /// The index of the function named `$name` (without the `$`).
    pub fn func(&self, name: &str) -> u32 {
        self.names
            .iter()
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("no function named ${name}"))
            .0
    }

    /// The name of function `index`.
    pub fn name_of(&self, index: u32) -> &str {
        self.names
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, n)| n.as_str())
            .unwrap_or_else(|| panic!("function {index} has no name"))
    }

    /// Offsets of every operator of function `$func` that satisfies `pred`, in order.
    pub fn ops(&self, func: &str, pred: impl Fn(&Operator<'_>) -> bool) -> Vec<u32> {
        let index = self.func(func);
        let defined = index
            .checked_sub(self.imported_funcs)
            .unwrap_or_else(|| panic!("${func} is an import: it has no body"));
        let mut seen = 0;
        for payload in Parser::new(0).parse_all(&self.bytes) {
            if let Payload::CodeSectionEntry(body) = payload.expect("test module parses") {
                if seen == defined {
                    let mut reader = body.get_operators_reader().expect("operators");
                    let mut out = Vec::new();
                    while !reader.eof() {
                        let (op, offset) = reader.read_with_offset().expect("operator");
                        if pred(&op) {
                            out.push(u32::try_from(offset).expect("offset fits u32"));
                        }
                    }
                    return out;
                }
                seen += 1;
            }
        }
        panic!("no body for ${func}")
    }

    /// The offset of the one operator of `$func` that satisfies `pred`; `what` names
    /// it in the failure message.
    pub fn only_op(&self, func: &str, what: &str, pred: impl Fn(&Operator<'_>) -> bool) -> u32 {
        let found = self.ops(func, pred);
        assert_eq!(found.len(), 1, "${func} must contain exactly one {what}");
        found[0]
    }

    /// The offsets of every `call $callee` in `$caller`, in order.
    pub fn calls(&self, caller: &str, callee: &str) -> Vec<u32> {
        let target = self.func(callee);
        self.ops(
            caller,
            |op| matches!(op, Operator::Call { function_index } if *function_index == target),
        )
    }

    /// The offset of the one `call $callee` in `$caller`.
    pub fn call(&self, caller: &str, callee: &str) -> u32 {
        let found = self.calls(caller, callee);
        assert_eq!(found.len(), 1, "${caller} must call ${callee} exactly once");
        found[0]
    }

    /// The offset of the one `call_indirect` in `$caller`.
    pub fn call_indirect(&self, caller: &str) -> u32 {
        self.only_op(caller, "call_indirect", |op| {
            matches!(op, Operator::CallIndirect { .. })
        })
    }

    /// The expected frame of `$func` at `wasm_offset`.
    pub fn frame(&self, func: &str, wasm_offset: u32) -> Expected {
        Expected {
            wasm_offset: Some(wasm_offset),
            ..self.frame_without_offset(func)
        }
    }

    /// The expected frame of `$func` stopped at no wasm instruction.
    pub fn frame_without_offset(&self, func: &str) -> Expected {
        Expected {
            func_index: self.func(func),
            func_name: func.to_string(),
            module_name: self.module_name.clone(),
            wasm_offset: None,
        }
    }

    /// The expected frame of `$caller` stopped at its one `call $callee`.
    pub fn at_call(&self, caller: &str, callee: &str) -> Expected {
        self.frame(caller, self.call(caller, callee))
    }
}

/// The comparable part of an actual frame.
fn actual(f: &FrameInfo) -> (u32, Option<&str>, Option<&str>, Option<u32>) {
    (
        f.func_index,
        f.func_name.as_deref(),
        f.module_name.as_deref(),
        f.wasm_offset,
    )
}

/// Renders frames one per line, for failure messages.
fn listing<'a>(frames: impl Iterator<Item = (u32, Option<&'a str>, Option<u32>)>) -> String {
    frames
        .enumerate()
        .map(|(i, (index, name, offset))| {
            format!(
                "  {i}: {}#{index} @ {}",
                name.unwrap_or("?"),
                offset.map_or("none".to_string(), |o| format!("{o:#x}"))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `frames` are exactly `expected`, in order: same function index, name,
/// module name and wasm offset. On failure prints the first difference and, for short
/// lists, both lists.
pub fn assert_frames(frames: &[FrameInfo], expected: &[Expected]) {
    let first_diff = frames
        .iter()
        .zip(expected)
        .position(|(f, e)| {
            actual(f)
                != (
                    e.func_index,
                    Some(e.func_name.as_str()),
                    e.module_name.as_deref(),
                    e.wasm_offset,
                )
        })
        .or((frames.len() != expected.len()).then(|| frames.len().min(expected.len())));
    let Some(i) = first_diff else {
        return;
    };
    let short = frames.len().max(expected.len()) <= 64;
    panic!(
        "backtrace differs at frame {i} (got {} frames, expected {}):\n  got      {:?}\n  expected {:?}{}",
        frames.len(),
        expected.len(),
        frames.get(i).map(actual),
        expected.get(i),
        if short {
            format!(
                "\ngot:\n{}\nexpected:\n{}",
                listing(frames.iter().map(|f| (f.func_index, f.func_name.as_deref(), f.wasm_offset))),
                listing(expected.iter().map(|e| (e.func_index, Some(e.func_name.as_str()), e.wasm_offset)))
            )
        } else {
            String::new()
        }
    );
}

/// The full `Display` of a trap whose first line is `first_line` and whose backtrace
/// is `expected`, in the documented format (index right-aligned in 3 columns after two
/// spaces, offset as `0x..` right-aligned in 6 columns, `module!function`).
pub fn render_trap(first_line: &str, expected: &[Expected]) -> String {
    let mut out = first_line.to_string();
    if expected.is_empty() {
        return out;
    }
    out.push_str("\nwasm backtrace:");
    for (i, e) in expected.iter().enumerate() {
        let offset = e.wasm_offset.map_or(String::new(), |o| format!("0x{o:x}"));
        let module = e
            .module_name
            .as_deref()
            .map_or(String::new(), |m| format!("{m}!"));
        out.push_str(&format!(
            "\n  {i:>3}: {offset:>6} - {module}{}",
            e.func_name
        ));
    }
    out
}

/// Reads a count from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

/// Runs `f` on a new thread with a `stack_mib` MiB stack and returns its result
/// (re-raising its panic).
pub fn with_big_stack<R: Send + 'static>(
    stack_mib: usize,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    std::thread::Builder::new()
        .stack_size(stack_mib << 20)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
