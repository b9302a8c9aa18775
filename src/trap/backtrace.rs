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

    /// Replaces the backtrace with `backtrace`, newest first, and the count of
    /// [`omitted_frames`](Self::omitted_frames) with its count;
    /// [`frames`](Self::frames) is made from it when first asked for.
    pub fn with_backtrace(mut self, backtrace: WasmBacktrace) -> Trap {
        self.details.omitted_frames = backtrace.omitted_frames();
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
/// each followed by its source locations when the module has DWARF. The number and
/// offset columns are 3 and 6 wide, or as wide as their longest number. `{:#}` folds
/// repeated cycles and elides a long middle (see the `Display` impl):
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

    /// The frame's source locations, one line each, under its backtrace line, indented
    /// by `indent` spaces.
    fn write_source(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        for loc in &self.source {
            write!(f, "\n{:indent$}", "")?;
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

/// A cycle of frames repeated at least this many times in a row is folded by `{:#}`.
const FOLD_RUN: usize = 3;

/// The longest cycle, in frames, that `{:#}` folds: mutual recursion through up to this
/// many functions (or call sites).
const FOLD_MAX_PERIOD: usize = 16;

/// With `{:#}`, a backtrace of more entries (a line, or a folded cycle) than
/// `KEEP_NEWEST + KEEP_OLDEST + 1` prints its newest `KEEP_NEWEST` entries, one line
/// counting the frames in between, and its oldest `KEEP_OLDEST` entries: where it
/// stopped, and how it got started, in about a screenful.
const KEEP_NEWEST: usize = 40;
/// See [`KEEP_NEWEST`].
const KEEP_OLDEST: usize = 20;

/// What one entry of a backtrace prints: frames `start..start + period * repeats`, a
/// cycle of `period` frames repeated `repeats` times in a row (a lone frame is a cycle
/// of one, once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: usize,
    period: usize,
    repeats: usize,
}

impl Entry {
    fn frames(&self) -> usize {
        self.period * self.repeats
    }
}

/// The entries of `frames` in order, newest first: with `fold`, each repeated cycle
/// (see [`cycle_at`]) is one entry; without, every frame is.
struct Entries<'a> {
    frames: &'a [FrameInfo],
    next: usize,
    fold: bool,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let start = self.next;
        if start >= self.frames.len() {
            return None;
        }
        let (period, repeats) = if self.fold {
            cycle_at(self.frames, start)
        } else {
            (1, 1)
        };
        self.next = start + period * repeats;
        Some(Entry {
            start,
            period,
            repeats,
        })
    }
}

/// The cycle that starts at `frames[start]` and repeats there, as `(period, repeats)`:
/// among the periods up to `FOLD_MAX_PERIOD` whose cycle repeats at least `FOLD_RUN`
/// times in a row, the one whose repeats cover the most frames (the shortest of those
/// on a tie: `a b a b` is two repeats of `a b`, not one of `a b a b`); `(1, 1)`, the
/// lone frame, when none does.
///
/// Linear overall: a period that fails fails at its first comparison unless the frames
/// really repeat, and the frames a chosen cycle covers (which bound every other
/// period's extension) are skipped by the caller.
fn cycle_at(frames: &[FrameInfo], start: usize) -> (usize, usize) {
    let mut best = (1, 1);
    for period in 1..=FOLD_MAX_PERIOD {
        let needed = start + period * FOLD_RUN;
        if needed > frames.len() {
            break;
        }
        let repeats_here = |j: usize| frames[j].same_line(&frames[j - period]);
        if !(start + period..needed).all(repeats_here) {
            continue;
        }
        let end = (needed..frames.len())
            .find(|&j| !repeats_here(j))
            .unwrap_or(frames.len());
        let repeats = (end - start) / period;
        if period * repeats > best.0 * best.1 {
            best = (period, repeats);
        }
    }
    best
}

/// The widths of a backtrace's two columns, frame number and offset: 3 and 6 (`0x` and
/// four hex digits), or wider when a number needs it, so that every name starts in the
/// same column.
#[derive(Clone, Copy)]
struct Columns {
    index: usize,
    offset: usize,
}

impl Columns {
    fn of(frames: &[FrameInfo]) -> Columns {
        let digits = |mut n: u64, base: u64| {
            let mut d = 1;
            while n >= base {
                n /= base;
                d += 1;
            }
            d
        };
        let last = frames.len().saturating_sub(1) as u64;
        let max_offset = frames.iter().filter_map(|f| f.wasm_offset).max();
        Columns {
            index: digits(last, 10).max(3),
            offset: max_offset
                .map_or(0, |o| 2 + digits(u64::from(o), 16))
                .max(6),
        }
    }

    /// The indent of a line under a frame's offset (a folded or elided line).
    fn under_offset(&self) -> usize {
        self.index + 6
    }

    /// The indent of a source line: two past the start of the name.
    fn source(&self) -> usize {
        self.index + self.offset + 9
    }
}

impl Backtrace<'_> {
    /// One frame's line (and its source lines), numbered `i`.
    fn write_frame(&self, f: &mut fmt::Formatter<'_>, columns: Columns, i: usize) -> fmt::Result {
        let frame = &self.0[i];
        let Columns { index, offset } = columns;
        write!(f, "\n  {i:>index$}: ")?;
        match frame.wasm_offset {
            Some(o) => write!(f, "{o:#offset$x} - ")?,
            None => write!(f, "{:offset$} - ", "")?,
        }
        frame.write_name(f)?;
        frame.write_source(f, columns.source())
    }

    /// An entry: its cycle's frames once, then a line for its other repeats.
    fn write_entry(
        &self,
        f: &mut fmt::Formatter<'_>,
        columns: Columns,
        entry: Entry,
    ) -> fmt::Result {
        for i in entry.start..entry.start + entry.period {
            self.write_frame(f, columns, i)?;
        }
        if entry.repeats < 2 {
            return Ok(());
        }
        let indent = columns.under_offset();
        let more = Thousands(entry.repeats - 1);
        if entry.period == 1 {
            write!(f, "\n{:indent$}... {more} more frames of ", "")?;
            return self.0[entry.start].write_name(f);
        }
        write!(f, "\n{:indent$}... {more} more repetitions of ", "")?;
        // In call order, caller first: the reverse of the lines above.
        let cycle = &self.0[entry.start..entry.start + entry.period];
        for (k, frame) in cycle.iter().rev().enumerate() {
            if k > 0 {
                f.write_str(" \u{2192} ")?;
            }
            frame.write_name(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Backtrace<'_> {
    /// One line per frame, newest first. With `{:#}`, for a person to read:
    ///
    /// - a cycle of up to `FOLD_MAX_PERIOD` (16) frames repeated `FOLD_RUN` (3) or more
    ///   times in a row (recursion, a stack overflow) prints once, followed by
    ///   `... N more frames of module!f` for a cycle of one frame, or
    ///   `... N more repetitions of module!a → module!b` (the cycle in call order,
    ///   caller first) for a longer one;
    /// - past `KEEP_NEWEST + KEEP_OLDEST + 1` (61) entries (a line, or a folded cycle),
    ///   only the newest `KEEP_NEWEST` (40) and the oldest `KEEP_OLDEST` (20) print, with
    ///   `... N frames elided ...` between them.
    ///
    /// Frame numbers stay those of [`frames`](Trap::frames): a folded or elided line
    /// skips them. Formatting takes time linear in the number of frames.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wasm backtrace:")?;
        let fold = f.alternate();
        let entries = || Entries {
            frames: self.0,
            next: 0,
            fold,
        };
        let columns = Columns::of(self.0);
        let count = if fold { entries().count() } else { 0 };
        if count <= KEEP_NEWEST + KEEP_OLDEST + 1 {
            return entries().try_for_each(|entry| self.write_entry(f, columns, entry));
        }
        let mut elided = 0;
        for (k, entry) in entries().enumerate() {
            if k < KEEP_NEWEST || k >= count - KEEP_OLDEST {
                if elided > 0 {
                    let indent = columns.under_offset();
                    write!(
                        f,
                        "\n{:indent$}... {} frames elided ...",
                        "",
                        Thousands(elided)
                    )?;
                    elided = 0;
                }
                self.write_entry(f, columns, entry)?;
            } else {
                elided += entry.frames();
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
        write_omitted(f, self.details.omitted_frames)?;
        if let Some(e) = &self.details.walk_error {
            write!(f, "\n  (backtrace incomplete: {e})")?;
        }
        Ok(())
    }
}

/// The line after a backtrace that counts the frames the capture limit omitted, if any.
pub(super) fn write_omitted(f: &mut fmt::Formatter<'_>, omitted: usize) -> fmt::Result {
    if omitted > 0 {
        write!(
            f,
            "\n         ... {} more frames not captured",
            Thousands(omitted)
        )?;
    }
    Ok(())
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

    /// `{:#}` of `frames` as lines, without the header.
    fn folded(frames: &[FrameInfo]) -> Vec<String> {
        format!("{:#}", Backtrace(frames))
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_cycle_of_two_folds_as_one_copy_in_call_order() {
        let mut frames = vec![frame(0, Some("a"), 0x10)];
        for _ in 0..5 {
            frames.push(frame(1, Some("b"), 0x20));
            frames.push(frame(0, Some("a"), 0x30));
        }
        frames.push(frame(2, Some("main"), 0x40));
        assert_eq!(
            folded(&frames),
            [
                "    0:   0x10 - demo!a",
                "    1:   0x20 - demo!b",
                "    2:   0x30 - demo!a",
                "         ... 4 more repetitions of demo!a \u{2192} demo!b",
                "   11:   0x40 - demo!main",
            ]
        );
        // Only the display folds: every frame is still there, and the plain form
        // prints each.
        assert_eq!(Backtrace(&frames).to_string().lines().count(), 13);
    }

    #[test]
    fn a_cycle_repeated_twice_or_longer_than_the_limit_is_not_folded() {
        let two: Vec<_> = (0..2)
            .flat_map(|_| [frame(1, Some("b"), 0x20), frame(0, Some("a"), 0x30)])
            .collect();
        assert_eq!(folded(&two).len(), 4, "{:?}", folded(&two));
        let long: Vec<_> = (0..3)
            .flat_map(|_| (0..=FOLD_MAX_PERIOD as u32).map(|i| frame(i, None, 0x10 + i)))
            .collect();
        assert_eq!(folded(&long).len(), long.len());
    }

    #[test]
    fn the_cycle_covering_most_frames_is_folded() {
        // `a a a b` three times: one cycle of four, not a run of `a` then `b`.
        let frames: Vec<_> = (0..3)
            .flat_map(|_| {
                [
                    frame(0, Some("a"), 0x10),
                    frame(0, Some("a"), 0x10),
                    frame(0, Some("a"), 0x10),
                    frame(1, Some("b"), 0x20),
                ]
            })
            .collect();
        let lines = folded(&frames);
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(
            lines[4],
            "         ... 2 more repetitions of demo!b \u{2192} demo!a \u{2192} demo!a \u{2192} demo!a"
        );
    }

    #[test]
    fn a_long_middle_is_elided_between_the_newest_and_oldest_entries() {
        let frames: Vec<_> = (0..1000).map(|i| frame(i, None, 0x100 + i)).collect();
        let lines = folded(&frames);
        assert_eq!(lines.len(), KEEP_NEWEST + 1 + KEEP_OLDEST, "{lines:?}");
        assert_eq!(lines[0], "    0:  0x100 - demo!<wasm function 0>");
        assert_eq!(
            lines[KEEP_NEWEST - 1],
            "   39:  0x127 - demo!<wasm function 39>"
        );
        assert_eq!(lines[KEEP_NEWEST], "         ... 940 frames elided ...");
        assert_eq!(
            lines[KEEP_NEWEST + 1],
            "  980:  0x4d4 - demo!<wasm function 980>"
        );
        assert_eq!(
            lines.last().unwrap(),
            "  999:  0x4e7 - demo!<wasm function 999>"
        );
        // A folded run is one entry: it counts as one line's worth of the budget, and
        // its frames count when elided.
        let mut frames: Vec<_> = (0..50).map(|i| frame(i, None, 0x100 + i)).collect();
        frames.extend((0..500).map(|_| frame(50, None, 0x200)));
        frames.extend((51..100).map(|i| frame(i, None, 0x100 + i)));
        let lines = folded(&frames);
        assert_eq!(lines[KEEP_NEWEST], "         ... 539 frames elided ...");
        // Up to KEEP_NEWEST + KEEP_OLDEST + 1 entries print whole.
        let frames: Vec<_> = (0..61).map(|i| frame(i, None, 0x100 + i)).collect();
        assert_eq!(folded(&frames).len(), 61);
    }

    #[test]
    fn columns_widen_for_long_numbers() {
        let mut frames: Vec<_> = (0..1000).map(|_| frame(0, Some("deep"), 0x20)).collect();
        frames.push(frame(1, Some("far"), 0x12345));
        frames.push(FrameInfo {
            wasm_offset: None,
            ..frame(2, Some("entry"), 0)
        });
        assert_eq!(
            folded(&frames),
            [
                "     0:    0x20 - demo!deep",
                "          ... 999 more frames of demo!deep",
                "  1000: 0x12345 - demo!far",
                "  1001:         - demo!entry",
            ]
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
