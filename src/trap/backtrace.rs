//! `Trap`: why wasm stopped, with the wasm frames that were live, as users see it.

use super::{SourceLocation, TrapCode, WasmBacktrace};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// One wasm frame of a trap's backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Function index in its module (imports included in the index space).
    pub func_index: u32,
    /// The function's name from the name section (shared with the module, so a frame
    /// costs no allocation for it).
    pub func_name: Option<Arc<str>>,
    /// The module's name from the name section.
    pub module_name: Option<Arc<str>>,
    /// Offset of the instruction in the module's wasm binary, if known.
    pub wasm_offset: Option<u32>,
    /// Offset of the instruction from the start of its function's body in the wasm
    /// binary, if known.
    pub func_offset: Option<u32>,
    /// The native PC (the trapping instruction, or a return address).
    pub pc: usize,
    /// Where the instruction is in the source, from the module's DWARF: the innermost
    /// inlined function first, the frame's own function last. Empty when the module
    /// has no debug information for it.
    pub source: Vec<SourceLocation>,
}

/// A host function's error as carried in a trap.
pub type HostError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why wasm execution stopped, and where.
///
/// An out-of-bounds load or store that faulted on a linear memory's guard pages also
/// carries the wasm address it touched ([`fault_address`](Self::fault_address)), which
/// `Display` prints on a second line:
/// `memory fault at wasm address 0x10000 in linear memory of size 0x10000`.
#[derive(Debug)]
pub struct Trap {
    code: TrapCode,
    /// Boxed: a `Trap` travels in `Result`s, which stay small this way.
    details: Box<TrapDetails>,
}

#[derive(Debug)]
struct TrapDetails {
    host_error: Option<HostError>,
    /// The frames as captured (compact, names borrowed from each module).
    backtrace: WasmBacktrace,
    /// The frames in owned form: given to `new`/`host`/`with_frames`, or made from
    /// `backtrace` on first use.
    frames: OnceLock<Vec<FrameInfo>>,
    /// Frames the walk found beyond the capture limit (counted, not symbolized).
    omitted_frames: usize,
    walk_error: Option<String>,
    /// For a fault on a guard page: (wasm address, memory size in bytes at the time).
    memory_fault: Option<(u64, u64)>,
}

impl Trap {
    /// A trap with `code` and a backtrace, newest frame first.
    pub fn new(code: TrapCode, frames: Vec<FrameInfo>) -> Trap {
        Trap {
            code,
            details: Box::new(TrapDetails {
                host_error: None,
                backtrace: WasmBacktrace::new(),
                frames: OnceLock::from(frames),
                omitted_frames: 0,
                walk_error: None,
                memory_fault: None,
            }),
        }
    }

    /// A host function's error, with the wasm frames below the host function.
    pub fn host(error: HostError, frames: Vec<FrameInfo>) -> Trap {
        let mut trap = Trap::new(TrapCode::HostError, frames);
        trap.details.host_error = Some(error);
        trap
    }

    /// Replaces the backtrace with `frames`, newest first ([`backtrace`](Self::backtrace)
    /// becomes empty).
    pub fn with_frames(mut self, frames: Vec<FrameInfo>) -> Trap {
        self.details.backtrace = WasmBacktrace::new();
        self.details.frames = OnceLock::from(frames);
        self
    }

    /// Replaces the backtrace with `backtrace`, newest first; [`frames`](Self::frames)
    /// is made from it when first asked for.
    pub fn with_backtrace(mut self, backtrace: WasmBacktrace) -> Trap {
        self.details.backtrace = backtrace;
        self.details.frames = OnceLock::new();
        self
    }

    /// The backtrace as captured: frames that borrow their names from their modules.
    /// Empty for a trap made from a list of [`FrameInfo`]s (`new`, `with_frames`).
    pub fn backtrace(&self) -> &WasmBacktrace {
        &self.details.backtrace
    }

    /// Records that the walk found `n` older frames beyond the ones captured.
    pub fn with_omitted_frames(mut self, n: usize) -> Trap {
        self.details.omitted_frames = n;
        self
    }

    /// How many older wasm frames the walk found beyond [`frames`](Self::frames): the
    /// capture limit (`Config::wasm_backtrace_max_frames` in framewalk's runtime)
    /// stopped symbolizing there.
    pub fn omitted_frames(&self) -> usize {
        self.details.omitted_frames
    }

    /// Records that the backtrace is incomplete because the walk failed.
    pub fn with_walk_error(mut self, e: String) -> Trap {
        self.details.walk_error = Some(e);
        self
    }

    /// Why execution stopped.
    pub fn code(&self) -> TrapCode {
        self.code
    }

    /// The wasm frames, newest first, across every activation.
    pub fn frames(&self) -> &[FrameInfo] {
        self.details
            .frames
            .get_or_init(|| self.details.backtrace.to_frame_infos())
    }

    /// The host function's error, for `TrapCode::HostError`.
    pub fn host_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.details.host_error.as_deref()
    }

    /// Takes the host function's error out.
    pub fn into_host_error(self) -> Option<HostError> {
        self.details.host_error
    }

    /// Records that the trap is a fault of an out-of-bounds access at wasm `address` in
    /// a linear memory of `memory_size` bytes.
    pub fn with_memory_fault(mut self, address: u64, memory_size: u64) -> Trap {
        self.details.memory_fault = Some((address, memory_size));
        self
    }

    /// For an out-of-bounds load or store that faulted on a guard page: the wasm
    /// linear-memory address it touched first past the accessible bytes (`index +
    /// offset`, or for an access straddling the end, the end). `None` for every other
    /// trap, including an out-of-bounds access caught by an explicit check (a static
    /// offset over 2 GiB, or `memory.copy`/`fill`/`init`), where no address was touched.
    pub fn fault_address(&self) -> Option<u64> {
        self.details.memory_fault.map(|(address, _)| address)
    }

    /// The size in bytes of the linear memory at the time of the fault, when
    /// [`fault_address`](Self::fault_address) is `Some`.
    pub fn fault_memory_size(&self) -> Option<u64> {
        self.details.memory_fault.map(|(_, size)| size)
    }
}

/// Formats frames the way a trap prints them: a `wasm backtrace:` line, then one line
/// per frame, newest first (`    0:   0x4a - demo!divide`), function names demangled,
/// each followed by its source locations when the module has DWARF:
///
/// ```text
///     0:   0x86 - shapes::average(shapes::Grid const&, int)
///                   inlined shapes::checked_div(int, int) at ./shapes.cpp:15:18
///                   at ./shapes.cpp:23:12
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Backtrace<'a>(pub &'a [FrameInfo]);

impl FrameInfo {
    /// The function's name, demangled (Rust and C++) when framewalk is built with the
    /// `debuginfo` feature.
    pub fn demangled_name(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.func_name.as_deref().map(super::display_name)
    }

    /// `module!function`, as a backtrace line names the frame.
    fn write_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.module_name {
            write!(f, "{m}!")?;
        }
        match self.demangled_name() {
            Some(n) => f.write_str(&n),
            None => write!(f, "<wasm function {}>", self.func_index),
        }
    }

    /// The frame's source locations, one line each, under its backtrace line.
    fn write_source(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for loc in &self.source {
            f.write_str("\n                  ")?;
            if loc.inlined {
                match loc.display_function() {
                    Some(name) => write!(f, "inlined {name} ")?,
                    None => f.write_str("inlined ")?,
                }
            }
            write!(f, "at {}", loc.display_position())?;
        }
        Ok(())
    }

    /// Whether two frames print the same line (same function and offset).
    fn same_line(&self, other: &FrameInfo) -> bool {
        self.func_index == other.func_index
            && self.wasm_offset == other.wasm_offset
            && self.module_name == other.module_name
    }
}

/// `n` with a comma between thousands: `32,755`.
struct Thousands(usize);

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Runs of identical lines at least this long are folded by `{:#}`.
const FOLD_RUN: usize = 3;

impl fmt::Display for Backtrace<'_> {
    /// One line per frame. With `{:#}`, a run of `FOLD_RUN` or more identical lines
    /// (deep recursion, a stack overflow) prints its first line and
    /// `... N more frames of module!function`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wasm backtrace:")?;
        let mut i = 0;
        while let Some(frame) = self.0.get(i) {
            write!(f, "\n  {i:>3}: ")?;
            match frame.wasm_offset {
                Some(o) => write!(f, "{o:#6x} - ")?,
                None => f.write_str("       - ")?,
            }
            frame.write_name(f)?;
            frame.write_source(f)?;
            // Only the folding form measures the run: measuring it for every line of the
            // plain form made printing a run of n identical frames quadratic (seconds for
            // a stack overflow's 32,000).
            let run = if f.alternate() {
                self.0[i..]
                    .iter()
                    .take_while(|other| other.same_line(frame))
                    .count()
            } else {
                1
            };
            if run >= FOLD_RUN {
                write!(f, "\n         ... {} more frames of ", Thousands(run - 1))?;
                frame.write_name(f)?;
                i += run;
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.details.host_error {
            Some(e) => write!(f, "{e}")?,
            None => write!(f, "wasm trap: {}", self.code.message())?,
        }
        if let Some((address, size)) = self.details.memory_fault {
            write!(
                f,
                "\nmemory fault at wasm address {address:#x} in linear memory of size {size:#x}"
            )?;
        }
        let frames = self.frames();
        if frames.is_empty()
            && self.details.omitted_frames == 0
            && self.details.walk_error.is_none()
        {
            return Ok(());
        }
        if f.alternate() {
            write!(f, "\n{:#}", Backtrace(frames))?;
        } else {
            write!(f, "\n{}", Backtrace(frames))?;
        }
        if self.details.omitted_frames > 0 {
            write!(
                f,
                "\n         ... {} more frames not captured",
                Thousands(self.details.omitted_frames)
            )?;
        }
        if let Some(e) = &self.details.walk_error {
            write!(f, "\n  (backtrace incomplete: {e})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Trap {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.details
            .host_error
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(func_index: u32, name: Option<&str>, off: u32) -> FrameInfo {
        FrameInfo {
            func_index,
            func_name: name.map(Into::into),
            module_name: Some("demo".into()),
            wasm_offset: Some(off),
            func_offset: None,
            pc: 0,
            source: Vec::new(),
        }
    }

    #[test]
    fn display_matches_the_documented_shape() {
        let t = Trap::new(
            TrapCode::IntegerDivisionByZero,
            vec![
                frame(0, Some("divide"), 0x4a),
                frame(1, Some("middle"), 0x61),
                frame(2, None, 0x75),
            ],
        );
        assert_eq!(
            t.to_string(),
            "wasm trap: integer divide by zero\nwasm backtrace:\n    0:   0x4a - demo!divide\n    1:   0x61 - demo!middle\n    2:   0x75 - demo!<wasm function 2>"
        );
    }

    #[test]
    fn only_the_alternate_form_folds_a_run() {
        let mut frames = vec![frame(0, Some("top"), 0x10)];
        frames.extend((0..4).map(|_| frame(1, Some("deep"), 0x20)));
        frames.push(frame(2, Some("main"), 0x30));
        frames.extend((0..2).map(|_| frame(1, Some("deep"), 0x20)));
        let t = Trap::new(TrapCode::StackOverflow, frames);
        let plain = t.to_string();
        assert_eq!(plain.matches("demo!deep").count(), 6, "{plain}");
        assert!(!plain.contains("more frames"), "{plain}");
        // A run of 4 folds; a run of 2 (below FOLD_RUN) does not.
        assert_eq!(
            format!("{t:#}"),
            "wasm trap: call stack exhausted\nwasm backtrace:\n    0:   0x10 - demo!top\n    1:   0x20 - demo!deep\n         ... 3 more frames of demo!deep\n    5:   0x30 - demo!main\n    6:   0x20 - demo!deep\n    7:   0x20 - demo!deep"
        );
    }
}
