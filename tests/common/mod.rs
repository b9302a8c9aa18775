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

    /// The body of function `$func`.
    fn body(&self, func: &str) -> wasmparser::FunctionBody<'_> {
        let index = self.func(func);
        let defined = index
            .checked_sub(self.imported_funcs)
            .unwrap_or_else(|| panic!("${func} is an import: it has no body"));
        let mut seen = 0;
        for payload in Parser::new(0).parse_all(&self.bytes) {
            if let Payload::CodeSectionEntry(body) = payload.expect("test module parses") {
                if seen == defined {
                    return body;
                }
                seen += 1;
            }
        }
        panic!("no body for ${func}")
    }

    /// Offsets of every operator of function `$func` that satisfies `pred`, in order.
    pub fn ops(&self, func: &str, pred: impl Fn(&Operator<'_>) -> bool) -> Vec<u32> {
        let mut reader = self.body(func).get_operators_reader().expect("operators");
        let mut out = Vec::new();
        while !reader.eof() {
            let (op, offset) = reader.read_with_offset().expect("operator");
            if pred(&op) {
                out.push(u32::try_from(offset).expect("offset fits u32"));
            }
        }
        out
    }

    /// The offset of `$func`'s body (its locals, after the size) in the binary: where a
    /// frame stopped in the function's entry (the prologue's stack check) is reported.
    pub fn body_start(&self, func: &str) -> u32 {
        u32::try_from(self.body(func).range().start).expect("offset fits u32")
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

    /// The expected frame of `$func` stopped in its entry, before its first
    /// instruction: a stack overflow's newest frame.
    pub fn at_entry(&self, func: &str) -> Expected {
        self.frame(func, self.body_start(func))
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
/// spaces, offset as `0x..` right-aligned in 6 columns, each column wider when its
/// longest number needs it, `module!function`).
pub fn render_trap(first_line: &str, expected: &[Expected]) -> String {
    let mut out = first_line.to_string();
    if expected.is_empty() {
        return out;
    }
    out.push_str("\nwasm backtrace:");
    let columns = Columns::of(
        expected.len(),
        expected.iter().filter_map(|e| e.wasm_offset),
    );
    for (i, e) in expected.iter().enumerate() {
        out.push('\n');
        out.push_str(&columns.line(i, e));
    }
    out
}

/// The widths of a backtrace's columns: the frame number's and the offset's, at least 3
/// and 6, wider when the longest number needs it.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    index: usize,
    offset: usize,
}

impl Columns {
    /// The columns of a backtrace of `frames` frames whose largest offset is among
    /// `offsets`.
    pub fn of(frames: usize, offsets: impl Iterator<Item = u32>) -> Columns {
        Columns {
            index: frames.saturating_sub(1).to_string().len().max(3),
            offset: offsets
                .map(|o| format!("0x{o:x}").len())
                .max()
                .unwrap_or(0)
                .max(6),
        }
    }

    /// The line of frame `i`, `e`.
    pub fn line(&self, i: usize, e: &Expected) -> String {
        let offset = e.wasm_offset.map_or(String::new(), |o| format!("0x{o:x}"));
        let module = e
            .module_name
            .as_deref()
            .map_or(String::new(), |m| format!("{m}!"));
        format!(
            "  {i:>w$}: {offset:>ow$} - {module}{}",
            e.func_name,
            w = self.index,
            ow = self.offset
        )
    }

    /// A folded or elided line saying `what`, indented two columns into the offset.
    pub fn note(&self, what: &str) -> String {
        format!("{:w$}... {what}", "", w = self.index + 6)
    }
}

/// `n` with a comma between thousands: `32,755`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A module `$cycle` whose export `main` is `cycle[0]`, which calls `cycle[1]`, and so
/// on, the last calling the first again: recursion through the cycle until the stack
/// overflows.
pub fn cycle_wat(cycle: &[&str]) -> String {
    let mut wat = String::from("(module $cycle\n");
    for (k, name) in cycle.iter().enumerate() {
        let export = if k == 0 { r#" (export "main")"# } else { "" };
        let next = cycle[(k + 1) % cycle.len()];
        wat.push_str(&format!("  (func ${name}{export} (call ${next}))\n"));
    }
    wat.push(')');
    wat
}

/// The expected `{:#}` backtrace (after its `wasm backtrace:` line) of a stack
/// overflow of `n` frames through the module of [`cycle_wat`]`(cycle)`: the newest
/// frame stopped at its function's entry, then one copy of the cycle (newest first,
/// each at its call), one line counting the other whole copies (`... N more frames
/// of m!f` for a cycle of one, `... N more repetitions of m!a → m!b` in call order
/// otherwise), then the frames of the last, partial copy (the oldest is `main`).
pub fn cycle_overflow_lines(wasm: &Wasm, cycle: &[&str], n: usize) -> Vec<String> {
    let p = cycle.len();
    // Oldest first: frame n-1 is cycle[0] at its call, n-2 is cycle[1], ...
    let at = |i: usize| {
        let k = (n - 1 - i) % p;
        if i == 0 {
            wasm.at_entry(cycle[k])
        } else {
            wasm.at_call(cycle[k], cycle[(k + 1) % p])
        }
    };
    let copies = (n - 1) / p;
    let mut offsets: Vec<u32> = cycle.iter().map(|f| wasm.body_start(f)).collect();
    offsets.extend(
        cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(f, g)| wasm.call(f, g)),
    );
    let columns = Columns::of(n, offsets.into_iter());
    let mut lines: Vec<String> = (0..=p).map(|i| columns.line(i, &at(i))).collect();
    let more = thousands(copies - 1);
    lines.push(if p == 1 {
        columns.note(&format!(
            "{more} more frames of {}",
            qualified(wasm, cycle[0])
        ))
    } else {
        let names: Vec<String> = (1..=p)
            .rev()
            .map(|i| qualified(wasm, &at(i).func_name))
            .collect();
        columns.note(&format!(
            "{more} more repetitions of {}",
            names.join(" \u{2192} ")
        ))
    });
    lines.extend((1 + copies * p..n).map(|i| columns.line(i, &at(i))));
    lines
}

/// `module!name` of function `$name` of `wasm`.
fn qualified(wasm: &Wasm, name: &str) -> String {
    match &wasm.module_name {
        Some(m) => format!("{m}!{name}"),
        None => name.to_string(),
    }
}

/// A module `$chain` whose export `main` calls `$f0`, which calls `$f1`, and so on to
/// `$f{n-1}`, which calls itself: `n` distinct frames, then recursion until the stack
/// overflows.
pub fn chain_wat(n: usize) -> String {
    let mut wat = String::from("(module $chain\n  (func $main (export \"main\") (call $f0))\n");
    for i in 0..n - 1 {
        wat.push_str(&format!("  (func $f{i} (call $f{}))\n", i + 1));
    }
    wat.push_str(&format!("  (func $f{0} (call $f{0})))\n", n - 1));
    wat
}

/// The expected `{:#}` backtrace (after its `wasm backtrace:` line) of a stack
/// overflow of `frames` frames through the module of [`chain_wat`]`(n)`, which must
/// have overflowed in the recursion of `$f{n-1}` (after at least three calls): the
/// newest frame at `$f{n-1}`'s entry, its recursive calls folded into one line, then
/// 38 more calls of the chain (the newest 40 entries), the count of the frames elided,
/// and the 20 oldest frames (`$f18` to `$f0`, then `main`).
pub fn chain_overflow_lines(wasm: &Wasm, n: usize, frames: usize) -> Vec<String> {
    let last = format!("f{}", n - 1);
    let recursive = frames
        .checked_sub(n + 1)
        .filter(|r| *r >= 3)
        .unwrap_or_else(|| {
            panic!("{frames} frames: the overflow must happen in ${last}'s recursion")
        });
    let top = wasm.at_entry(&last);
    let recursing = wasm.at_call(&last, &last);
    // Frame `first_chain + j` is $f{n-2-j} at its call of the next, the oldest `main`.
    let first_chain = 1 + recursive;
    let chain_frame = |i: usize| match n - 1 - (i - first_chain) {
        0 => wasm.at_call("main", "f0"),
        k => wasm.at_call(&format!("f{}", k - 1), &format!("f{k}")),
    };
    let columns = Columns::of(
        frames,
        [top.wasm_offset, recursing.wasm_offset]
            .into_iter()
            .flatten(),
    );
    let mut lines = vec![
        columns.line(0, &top),
        columns.line(1, &recursing),
        columns.note(&format!(
            "{} more frames of chain!{last}",
            thousands(recursive - 1)
        )),
    ];
    lines.extend((first_chain..first_chain + 38).map(|i| columns.line(i, &chain_frame(i))));
    let oldest = frames - 20;
    lines.push(columns.note(&format!(
        "{} frames elided ...",
        thousands(oldest - (first_chain + 38))
    )));
    lines.extend((oldest..frames).map(|i| columns.line(i, &chain_frame(i))));
    lines
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
