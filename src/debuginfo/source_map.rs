//! `SourceMap`: a module's DWARF line tables and inlined-call trees, flattened into
//! sorted fixed-width arrays that answer "which source lines is this wasm offset".
//!
//! Built once per module (framewalk's runtime builds it the first time a backtrace
//! asks for source lines) from the `.debug_*` custom sections with gimli; afterwards
//! it holds no reference to the DWARF.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use gimli::{constants, AttributeValue, EndianSlice, LittleEndian, SectionId};

use crate::trap::SourceLocation;

type R<'a> = EndianSlice<'a, LittleEndian>;
type Dwarf<'a> = gimli::Dwarf<R<'a>>;
type Unit<'a> = gimli::Unit<R<'a>>;

/// Why a module's DWARF could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugInfoError {
    /// What was being read.
    pub context: &'static str,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for DebugInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DWARF ({}): {}", self.context, self.message)
    }
}

impl std::error::Error for DebugInfoError {}

fn error(context: &'static str) -> impl Fn(gimli::Error) -> DebugInfoError {
    move |e| DebugInfoError {
        context,
        message: e.to_string(),
    }
}

/// `file` of a line row that ends a sequence: no location from here on. (A row whose
/// file the line table does not name has the same value, and also gives no location.)
const END: u32 = u32::MAX;
/// No name or file.
const NONE: u32 = u32::MAX;

/// One row of a line table: from `addr` (a code-section offset) on, until the next
/// row, the code comes from `file:line:column` (`line`/`column` 0 = unknown).
#[derive(Clone, Copy, Debug)]
struct Row {
    addr: u32,
    file: u32,
    line: u32,
    column: u32,
}

/// A function's code range, with the inlined calls inside it.
#[derive(Clone, Copy, Debug)]
struct FunctionRange {
    start: u32,
    end: u32,
    /// Index into `functions`.
    function: u32,
}

#[derive(Clone, Copy, Debug)]
struct Function {
    name: u32,
    /// `inlines[first..last]`.
    inlines: (u32, u32),
}

/// One address range of an inlined call.
#[derive(Clone, Copy, Debug)]
struct Inline {
    start: u32,
    end: u32,
    /// How many inlined calls enclose this one in its function (0 = directly inside).
    depth: u32,
    name: u32,
    call_file: u32,
    call_line: u32,
    call_column: u32,
}

/// A module's source lines and inlined calls, by wasm offset.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    /// Offset of the code section's contents in the binary (DWARF address 0).
    code_start: u32,
    /// Sorted by `addr`.
    rows: Box<[Row]>,
    /// Sorted by `start`.
    ranges: Box<[FunctionRange]>,
    functions: Box<[Function]>,
    /// Grouped by function.
    inlines: Box<[Inline]>,
    files: Box<[Arc<str>]>,
    names: Box<[Arc<str>]>,
}

impl SourceMap {
    /// Reads the DWARF custom sections of the wasm binary `wasm`. A module without
    /// DWARF gives an empty map; so does a binary that does not parse (the module's
    /// own validation reports that).
    ///
    /// # Errors
    ///
    /// [`DebugInfoError`] if a DWARF section is malformed.
    pub fn parse(wasm: &[u8]) -> Result<SourceMap, DebugInfoError> {
        let Some((code_start, sections)) = debug_sections(wasm) else {
            return Ok(SourceMap::default());
        };
        if sections.is_empty() {
            return Ok(SourceMap::default());
        }
        let empty: &[u8] = &[];
        let dwarf: Dwarf<'_> = Dwarf::load(|id: SectionId| -> Result<_, gimli::Error> {
            let bytes = sections
                .iter()
                .find(|(name, _)| *name == id.name())
                .map_or(empty, |(_, b)| *b);
            Ok(EndianSlice::new(bytes, LittleEndian))
        })
        .map_err(error("loading sections"))?;
        let mut builder = Builder::default();
        let mut units = dwarf.units();
        while let Some(header) = units.next().map_err(error(".debug_info unit header"))? {
            let unit = dwarf.unit(header).map_err(error(".debug_info unit"))?;
            builder.add_unit(&dwarf, &unit)?;
        }
        Ok(builder.finish(code_start))
    }

    /// Whether the module had no usable line information.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.ranges.is_empty()
    }

    /// The source locations of the instruction at `wasm_offset` (its offset in the
    /// binary): the innermost inlined function first, the enclosing function last.
    /// Empty if the debug information does not cover the offset.
    pub fn locations(&self, wasm_offset: u32) -> Vec<SourceLocation> {
        let Some(addr) = wasm_offset.checked_sub(self.code_start) else {
            return Vec::new();
        };
        let row = self.row_at(addr);
        let function = self.function_at(addr);
        if row.is_none() && function.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // The position inside the innermost function: the line table's row; each
        // inlined call then contributes its call site as the next one out.
        let mut position = row.map_or((NONE, 0, 0), |r| (r.file, r.line, r.column));
        if let Some(function) = function {
            let (first, last) = function.inlines;
            let mut chain: Vec<&Inline> = self
                .inlines
                .get(first as usize..last as usize)
                .unwrap_or_default()
                .iter()
                .filter(|i| i.start <= addr && addr < i.end)
                .collect();
            chain.sort_by_key(|i| std::cmp::Reverse(i.depth));
            for inline in chain {
                out.push(self.location(inline.name, position, true));
                position = (inline.call_file, inline.call_line, inline.call_column);
            }
            out.push(self.location(function.name, position, false));
        } else {
            out.push(self.location(NONE, position, false));
        }
        out
    }

    fn location(
        &self,
        name: u32,
        (file, line, column): (u32, u32, u32),
        inlined: bool,
    ) -> SourceLocation {
        SourceLocation {
            function: self.names.get(name as usize).cloned(),
            file: self.files.get(file as usize).cloned(),
            line: (line != 0).then_some(line),
            column: (column != 0 && line != 0).then_some(column),
            inlined,
        }
    }

    fn row_at(&self, addr: u32) -> Option<&Row> {
        let i = self.rows.partition_point(|r| r.addr <= addr);
        let row = self.rows.get(i.checked_sub(1)?)?;
        (row.file != END).then_some(row)
    }

    fn function_at(&self, addr: u32) -> Option<&Function> {
        let i = self.ranges.partition_point(|r| r.start <= addr);
        // Ranges of different functions do not overlap in linked code; look back a
        // little in case a tombstoned or nested range precedes the right one.
        self.ranges[..i]
            .iter()
            .rev()
            .take(4)
            .find(|r| addr < r.end)
            .and_then(|r| self.functions.get(r.function as usize))
    }
}

/// A custom section: its name and contents.
type Section<'a> = (&'a str, &'a [u8]);

/// The offset of the code section's contents and the `.debug_*` custom sections, or
/// `None` if the binary does not parse far enough.
fn debug_sections(wasm: &[u8]) -> Option<(u32, Vec<Section<'_>>)> {
    let mut code_start = None;
    let mut sections = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            wasmparser::Payload::CodeSectionStart { range, .. } => {
                code_start = u32::try_from(range.start).ok();
            }
            wasmparser::Payload::CustomSection(c) if c.name().starts_with(".debug_") => {
                sections.push((c.name(), c.data()));
            }
            _ => {}
        }
    }
    Some((code_start?, sections))
}

/// Tombstone addresses linkers give code they removed (and address 0, which in wasm
/// is the code section's function count, never an instruction).
fn is_tombstone(addr: u64) -> bool {
    addr == 0 || addr >= 0xffff_fff0
}

#[derive(Default)]
struct Builder {
    rows: Vec<Row>,
    ranges: Vec<FunctionRange>,
    functions: Vec<Function>,
    /// Each with the index of its function in `functions`.
    inlines: Vec<(u32, Inline)>,
    files: Interner,
    names: Interner,
}

/// Distinct strings, each stored once and named by its index.
#[derive(Default)]
struct Interner {
    strings: Vec<Arc<str>>,
    ids: HashMap<String, u32>,
}

impl Interner {
    /// The index of `s` (added if new), or `NONE` for no string.
    fn id(&mut self, s: Option<String>) -> u32 {
        let Some(s) = s else { return NONE };
        if let Some(id) = self.ids.get(&s) {
            return *id;
        }
        // Fewer strings than section bytes, far below 4 G.
        let id = self.strings.len() as u32;
        self.strings.push(Arc::from(s.as_str()));
        self.ids.insert(s, id);
        id
    }
}

/// What encloses the DIE being visited.
#[derive(Clone, Copy)]
enum Scope {
    Function(u32),
    Inline,
    Other,
}

impl Builder {
    fn add_unit(&mut self, dwarf: &Dwarf<'_>, unit: &Unit<'_>) -> Result<(), DebugInfoError> {
        // The unit's files, by line-table file index, as indices into `files`.
        let mut unit_files = Vec::new();
        if let Some(program) = unit.line_program.clone() {
            let header = program.header();
            let base = if header.version() >= 5 { 0 } else { 1 };
            let count = header.file_names().len() as u64;
            for index in base..base + count {
                let id = match header.file(index) {
                    Some(file) => self.file_id(file_path(dwarf, unit, header, file)),
                    None => NONE,
                };
                unit_files.push(id);
            }
            self.add_rows(program, &unit_files, base)?;
        }
        let file_of = |index: u64| -> u32 {
            index
                .checked_sub(if unit.header.version() >= 5 { 0 } else { 1 })
                .and_then(|i| unit_files.get(usize::try_from(i).ok()?).copied())
                .unwrap_or(NONE)
        };

        let mut entries = unit.entries();
        let mut depth: isize = 0;
        let mut scopes: Vec<(isize, Scope)> = Vec::new();
        while let Some((delta, entry)) = entries.next_dfs().map_err(error(".debug_info entries"))? {
            depth += delta;
            while scopes.last().is_some_and(|(d, _)| *d >= depth) {
                scopes.pop();
            }
            let scope = match entry.tag() {
                constants::DW_TAG_subprogram => {
                    let ranges = die_ranges(dwarf, unit, entry)?;
                    if ranges.is_empty() {
                        Scope::Other
                    } else {
                        let function = self.functions.len() as u32;
                        let name = self.die_name(dwarf, unit, entry);
                        // Its inlined calls' range is set by `finish`.
                        self.functions.push(Function {
                            name,
                            inlines: (0, 0),
                        });
                        for (start, end) in ranges {
                            self.ranges.push(FunctionRange {
                                start,
                                end,
                                function,
                            });
                        }
                        Scope::Function(function)
                    }
                }
                constants::DW_TAG_inlined_subroutine => {
                    // The innermost enclosing function, and how many inlined calls lie
                    // between it and this one.
                    let mut nesting = 0;
                    let mut function = None;
                    for (_, s) in scopes.iter().rev() {
                        match s {
                            Scope::Inline => nesting += 1,
                            Scope::Function(f) => {
                                function = Some(*f);
                                break;
                            }
                            Scope::Other => {}
                        }
                    }
                    match function {
                        Some(f) => {
                            let name = self.die_name(dwarf, unit, entry);
                            let udata = |at| -> Result<u32, DebugInfoError> {
                                Ok(entry
                                    .attr(at)
                                    .map_err(error("inlined call attributes"))?
                                    .and_then(|a| a.udata_value())
                                    .and_then(|v| u32::try_from(v).ok())
                                    .unwrap_or(0))
                            };
                            let call_file = match entry
                                .attr(constants::DW_AT_call_file)
                                .map_err(error("inlined call attributes"))?
                                .and_then(|a| a.udata_value())
                            {
                                Some(index) => file_of(index),
                                None => NONE,
                            };
                            let call_line = udata(constants::DW_AT_call_line)?;
                            let call_column = udata(constants::DW_AT_call_column)?;
                            for (start, end) in die_ranges(dwarf, unit, entry)? {
                                self.inlines.push((
                                    f,
                                    Inline {
                                        start,
                                        end,
                                        depth: nesting,
                                        name,
                                        call_file,
                                        call_line,
                                        call_column,
                                    },
                                ));
                            }
                            Scope::Inline
                        }
                        None => Scope::Other,
                    }
                }
                _ => Scope::Other,
            };
            if entry.has_children() {
                scopes.push((depth, scope));
            }
        }
        Ok(())
    }

    fn add_rows(
        &mut self,
        program: gimli::IncompleteLineProgram<R<'_>>,
        unit_files: &[u32],
        base: u64,
    ) -> Result<(), DebugInfoError> {
        let mut rows = program.rows();
        let mut sequence: Vec<Row> = Vec::new();
        let mut skip = false;
        while let Some((_, row)) = rows.next_row().map_err(error(".debug_line rows"))? {
            if sequence.is_empty() && !skip {
                skip = is_tombstone(row.address());
            }
            let Ok(addr) = u32::try_from(row.address()) else {
                skip = true;
                if row.end_sequence() {
                    sequence.clear();
                    skip = false;
                }
                continue;
            };
            if row.end_sequence() {
                if !skip {
                    self.rows.append(&mut sequence);
                    self.rows.push(Row {
                        addr,
                        file: END,
                        line: 0,
                        column: 0,
                    });
                }
                sequence.clear();
                skip = false;
                continue;
            }
            if skip {
                continue;
            }
            let file = row
                .file_index()
                .checked_sub(base)
                .and_then(|i| unit_files.get(usize::try_from(i).ok()?).copied())
                .unwrap_or(NONE);
            let line = row
                .line()
                .and_then(|l| u32::try_from(l.get()).ok())
                .unwrap_or(0);
            let column = match row.column() {
                gimli::ColumnType::LeftEdge => 0,
                gimli::ColumnType::Column(c) => u32::try_from(c.get()).unwrap_or(0),
            };
            sequence.push(Row {
                addr,
                file,
                line,
                column,
            });
        }
        // A sequence the program did not end is dropped: its extent is unknown.
        Ok(())
    }

    fn file_id(&mut self, path: Option<String>) -> u32 {
        self.files.id(path)
    }

    fn name_id(&mut self, name: Option<String>) -> u32 {
        self.names.id(name)
    }

    /// The DIE's linkage name if it or what it refers to has one, else its plain name.
    fn die_name(
        &mut self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'_>>,
    ) -> u32 {
        let string = |value| attr_string(dwarf, unit, value);
        let mut linkage = None;
        let mut plain = None;
        let mut offset = None;
        // Follow `DW_AT_abstract_origin` / `DW_AT_specification` within the unit, a few
        // hops at most (a cycle in malformed DWARF ends here too).
        for _ in 0..8 {
            let die;
            let current = match offset {
                None => entry,
                Some(o) => match unit.entry(o) {
                    Ok(d) => {
                        die = d;
                        &die
                    }
                    Err(_) => break,
                },
            };
            let attr = |at| current.attr_value(at).ok().flatten();
            if linkage.is_none() {
                linkage = attr(constants::DW_AT_linkage_name)
                    .or_else(|| attr(constants::DW_AT_MIPS_linkage_name))
                    .and_then(string);
            }
            if plain.is_none() {
                plain = attr(constants::DW_AT_name).and_then(string);
            }
            if linkage.is_some() {
                break;
            }
            match attr(constants::DW_AT_abstract_origin)
                .or_else(|| attr(constants::DW_AT_specification))
            {
                Some(AttributeValue::UnitRef(o)) => offset = Some(o),
                _ => break,
            }
        }
        self.name_id(linkage.or(plain))
    }

    fn finish(mut self, code_start: u32) -> SourceMap {
        // Stable: rows of one sequence keep their order, and an end row sorts before a
        // sequence that starts at the same address.
        self.rows.sort_by_key(|r| (r.addr, r.file != END));
        self.ranges.sort_by_key(|r| r.start);
        // Group the inlined calls by function (a nested function's DIE may interleave
        // them) and give each function its slice.
        self.inlines.sort_by_key(|(f, _)| *f);
        let mut at = 0;
        for (index, function) in self.functions.iter_mut().enumerate() {
            let first = at;
            while self
                .inlines
                .get(at)
                .is_some_and(|(f, _)| *f as usize == index)
            {
                at += 1;
            }
            // Counts fit `u32`: sections are far smaller than 4 GiB.
            function.inlines = (first as u32, at as u32);
        }
        let inlines: Vec<Inline> = self.inlines.into_iter().map(|(_, i)| i).collect();
        SourceMap {
            code_start,
            rows: self.rows.into(),
            ranges: self.ranges.into(),
            functions: self.functions.into(),
            inlines: inlines.into(),
            files: self.files.strings.into(),
            names: self.names.strings.into(),
        }
    }
}

/// The DIE's address ranges that fit in 32 bits and are not tombstones.
fn die_ranges(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R<'_>>,
) -> Result<Vec<(u32, u32)>, DebugInfoError> {
    let mut out = Vec::new();
    let mut ranges = dwarf
        .die_ranges(unit, entry)
        .map_err(error("address ranges"))?;
    while let Some(r) = ranges.next().map_err(error("address ranges"))? {
        if is_tombstone(r.begin) || r.end <= r.begin {
            continue;
        }
        if let (Ok(start), Ok(end)) = (u32::try_from(r.begin), u32::try_from(r.end)) {
            out.push((start, end));
        }
    }
    Ok(out)
}

/// A string attribute's value, if it resolves (lossy UTF-8).
fn attr_string(dwarf: &Dwarf<'_>, unit: &Unit<'_>, value: AttributeValue<R<'_>>) -> Option<String> {
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().into_owned())
}

/// The path of a line-table file: absolute as recorded, else joined to its directory
/// and, if that is relative, to the unit's compilation directory.
fn file_path(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    header: &gimli::LineProgramHeader<R<'_>>,
    file: &gimli::FileEntry<R<'_>>,
) -> Option<String> {
    let string = |value| attr_string(dwarf, unit, value);
    let name = string(file.path_name())?;
    if name.starts_with('/') {
        return Some(name);
    }
    let comp_dir = unit.comp_dir.map(|d| d.to_string_lossy().into_owned());
    let dir = match file.directory(header).and_then(string) {
        Some(d) if d.starts_with('/') => Some(d),
        Some(d) if !d.is_empty() => Some(match &comp_dir {
            // DWARF 5 lists the compilation directory itself as directory 0.
            Some(c) if *c != d => join(c, &d),
            _ => d,
        }),
        _ => comp_dir,
    };
    Some(match dir {
        Some(d) if !d.is_empty() => join(&d, &name),
        _ => name,
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clang 14's output for examples/dwarf/shapes.cpp (see build.sh there).
    const SHAPES: &[u8] = include_bytes!("../../examples/dwarf/shapes.wasm");
    /// The same code with DWARF 5.
    const SHAPES_DWARF5: &[u8] = include_bytes!("../../examples/dwarf/shapes-dwarf5.wasm");

    /// The byte ranges of `wasm`'s `.debug_*` section contents, and of its code section.
    fn layout(wasm: &[u8]) -> (Vec<std::ops::Range<usize>>, std::ops::Range<usize>) {
        let mut debug = Vec::new();
        let mut code = 0..0;
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            match payload.unwrap() {
                wasmparser::Payload::CustomSection(c) if c.name().starts_with(".debug_") => {
                    debug.push(c.data_offset()..c.data_offset() + c.data().len());
                }
                wasmparser::Payload::CodeSectionStart { range, .. } => code = range,
                _ => {}
            }
        }
        (debug, code)
    }

    /// The name section's function names, by function index.
    fn names(wasm: &[u8]) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            if let wasmparser::Payload::CustomSection(c) = payload.unwrap() {
                if let wasmparser::KnownCustom::Name(names) = c.as_known() {
                    for name in names {
                        if let wasmparser::Name::Function(map) = name.unwrap() {
                            for n in map {
                                let n = n.unwrap();
                                out.insert(n.index, n.name.to_string());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_function_of_shapes_starts_in_its_own_source_function() {
        let map = SourceMap::parse(SHAPES).unwrap();
        assert!(!map.is_empty());
        let (_, code) = layout(SHAPES);
        let names = names(SHAPES);
        // shapes.wasm imports one function; defined functions follow it.
        let mut index = 1;
        for payload in wasmparser::Parser::new(0).parse_all(SHAPES) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut ops = body.get_operators_reader().unwrap();
                let (_, first) = ops.read_with_offset().unwrap();
                let locs = map.locations(first as u32);
                let outer = locs
                    .last()
                    .unwrap_or_else(|| panic!("no location at {first:#x}"));
                assert_eq!(outer.file.as_deref(), Some("./shapes.cpp"));
                assert!(!outer.inlined);
                // wasm-ld 14 wrote demangled names into the name section; DWARF has the
                // linkage names.
                let function = outer.function.as_deref().map(super::super::demangle);
                assert_eq!(function.as_deref(), names.get(&index).map(String::as_str));
                index += 1;
            }
        }
        assert_eq!(index, 8, "seven defined functions");
        // Before the code section and past it: nothing.
        assert!(map.locations(code.start as u32 - 1).is_empty());
        assert!(map.locations(code.end as u32 + 1).is_empty());
        assert!(map.locations(u32::MAX).is_empty());
    }

    /// DWARF 5 (string offsets, line strings, address and range lists, file 0) reads
    /// the same as DWARF 4: the two builds share their code byte for byte, and every
    /// offset of it has the same locations.
    #[test]
    fn dwarf5_reads_the_same_as_dwarf4() {
        let (debug4, code4) = layout(SHAPES);
        let (debug5, code5) = layout(SHAPES_DWARF5);
        assert_eq!(SHAPES[code4.clone()], SHAPES_DWARF5[code5.clone()]);
        assert_eq!(code4.start, code5.start);
        assert_ne!(debug4.len(), debug5.len(), "different DWARF sections");
        let (v4, v5) = (
            SourceMap::parse(SHAPES).unwrap(),
            SourceMap::parse(SHAPES_DWARF5).unwrap(),
        );
        let mut located = 0;
        for offset in code4.start as u32..code4.end as u32 {
            let a = v4.locations(offset);
            assert_eq!(a, v5.locations(offset), "offset {offset:#x}");
            located += usize::from(!a.is_empty());
        }
        assert!(
            located > (code4.len() * 9) / 10,
            "{located} of {} located",
            code4.len()
        );
    }

    /// Damaged DWARF never panics: `DWARF_MUTATIONS` (default 3,000) copies of each of
    /// shapes.wasm and its DWARF 5 build, with one to four bytes of their debug
    /// sections changed, each parse to an error or to a map whose every lookup is
    /// answered.
    #[test]
    fn damaged_dwarf_never_panics() {
        let n: u64 = std::env::var("DWARF_MUTATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3_000);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for original in [SHAPES, SHAPES_DWARF5] {
            let (debug, code) = layout(original);
            let debug_bytes: Vec<usize> = debug.iter().flat_map(|r| r.clone()).collect();
            let (mut errors, mut parsed) = (0, 0);
            for _ in 0..n {
                let mut wasm = original.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = debug_bytes[(next() % debug_bytes.len() as u64) as usize];
                    wasm[at] = match next() % 3 {
                        0 => next() as u8,
                        1 => wasm[at] ^ (1 << (next() % 8)),
                        _ => 0xff,
                    };
                }
                match SourceMap::parse(&wasm) {
                    Ok(map) => {
                        parsed += 1;
                        for offset in code.clone() {
                            let _ = map.locations(offset as u32);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
            // Both outcomes happen: the mutations reach the parser, and not all break it.
            if n >= 1_000 {
                assert!(errors > 0 && parsed > 0, "{errors} errors, {parsed} parsed");
            }
        }
    }

    /// The fuzz target's path on a few fixed inputs (the target itself needs nightly).
    #[test]
    fn fuzz_entry_point_runs_on_raw_inputs() {
        // shapes.wasm's sections in the target's order.
        let mut sections = Vec::new();
        for name in crate::debuginfo::FUZZ_SECTIONS {
            let bytes = debug_sections(SHAPES)
                .unwrap()
                .1
                .into_iter()
                .find(|(n, _)| *n == name)
                .map_or(&[][..], |(_, b)| b);
            sections.push(bytes);
        }
        let mut input = Vec::new();
        for s in &sections {
            input.extend_from_slice(&(s.len() as u16).to_le_bytes());
        }
        for s in &sections {
            input.extend_from_slice(s);
        }
        assert_eq!(crate::debuginfo::fuzz_source_map(&[]), 0);
        assert_eq!(crate::debuginfo::fuzz_source_map(&[0xff; 64]), 0);
        // shapes.wasm's DWARF over the target's own little function: its rows cover
        // the function's offsets, so lookups find locations.
        assert!(crate::debuginfo::fuzz_source_map(&input) > 0);
    }
}
