//! Reads an artifact without trusting it and without copying its sections.
//!
//! [`Artifact::parse`] checks everything up front — ELF structure, checksum, version, ISA,
//! every record's ranges, sortedness, relocation targets — so that the accessors can index
//! without further checks and never panic. The section views borrow the input bytes.

use super::sections as s;
use crate::compile::libcall::{clif_libcall_serves, Libcall};
use crate::compile::RelocKind;
use crate::trap::TrapCode;
use object::read::elf::ElfFile64;
use object::{
    LittleEndian, Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget,
    SectionIndex,
};
use wasmparser::Operator;

/// Why an artifact was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    /// Not a parseable ELF64 little-endian file.
    #[error("not a framewalk artifact: {0}")]
    Elf(String),
    /// A required section is missing.
    #[error("artifact has no `{0}` section")]
    MissingSection(&'static str),
    /// The header's magic is wrong.
    #[error("artifact header has the wrong magic")]
    BadMagic,
    /// Written by another format version.
    #[error("artifact format version {found}, expected {expected}")]
    Version {
        /// In the file.
        found: u32,
        /// Supported.
        expected: u32,
    },
    /// The checksum does not match: the file was corrupted or edited.
    #[error("artifact checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the file is corrupted")]
    Checksum {
        /// In the header.
        stored: u64,
        /// Of the bytes.
        computed: u64,
    },
    /// Compiled for a different CPU feature set, code generator or code-generation
    /// configuration (`Config::epoch_interruption`).
    #[error("artifact was compiled for a different host or configuration (e.g. `Config::epoch_interruption`; fingerprint {found:#x}, this engine's {expected:#x})")]
    IsaMismatch {
        /// In the file.
        found: u64,
        /// This engine's.
        expected: u64,
    },
    /// A section's contents are malformed.
    #[error("section `{section}`: {reason}")]
    Malformed {
        /// Which section.
        section: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The embedded wasm describes another module interface (signatures, vmctx layout)
    /// than the one the code was compiled for.
    #[error("the embedded wasm does not match the compiled code (interface fingerprint {found:#x}, the code's {expected:#x})")]
    InterfaceMismatch {
        /// Of the embedded wasm.
        found: u64,
        /// In the header, written at compile time.
        expected: u64,
    },
    /// The ELF layout is inconsistent: sections overlap each other or the ELF headers,
    /// are misaligned, or the text's relocation or symbol table is not where the format
    /// puts it.
    #[error("ELF layout: {0}")]
    Layout(String),
    /// A relocation is malformed or targets something unknown.
    #[error("relocation at text offset {offset:#x}: {reason}")]
    BadRelocation {
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn malformed(section: &'static str, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::Malformed {
        section,
        reason: reason.into(),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    // Callers index only inside ranges validated by `Artifact::parse`.
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// What a relocation resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadTarget {
    /// Text offset of a function body in this artifact.
    Text(u32),
    /// A framewalk libcall.
    Libcall(Libcall),
    /// A Cranelift float helper (by symbol name).
    ClifLibcall(&'static str),
}

/// A validated relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadReloc {
    /// Text offset to patch (the patch fits inside the text).
    pub offset: u32,
    /// How to patch.
    pub kind: RelocKind,
    /// Target.
    pub target: LoadTarget,
    /// Addend.
    pub addend: i64,
}

/// One function as the artifact records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionView<'a> {
    /// Function index.
    pub func_index: u32,
    /// Body offset in the text.
    pub offset: u32,
    /// Body length.
    pub len: u32,
    /// Entry trampoline (offset, len), if any.
    pub entry_trampoline: Option<(u32, u32)>,
    /// Name from the name section.
    pub name: Option<&'a str>,
}

/// A validated artifact: borrowed views of its sections.
#[derive(Debug)]
pub struct Artifact<'a> {
    /// Machine code.
    pub text: &'a [u8],
    functions: &'a [u8],
    names: &'a [u8],
    traps: &'a [u8],
    address_map: &'a [u8],
    /// The stack-map section bytes (parsed by `crate::stackmap`).
    pub stack_maps: &'a [u8],
    /// The original wasm binary.
    pub wasm: &'a [u8],
    /// The `.eh_frame` section: validated CFI, whose addresses are right once it is
    /// copied to `sections::eh_frame_offset(text.len())` after the loaded text.
    pub eh_frame: &'a [u8],
    /// Relocations of the text.
    pub relocs: Vec<LoadReloc>,
    /// The interface fingerprint the code was compiled for (see
    /// `ModuleInfo::interface_fingerprint`); the loader compares it with the
    /// embedded wasm's.
    pub interface: u64,
}

const CLIF_SYMBOLS: &[&str] = &[
    "framewalk_clif_ceilf32",
    "framewalk_clif_ceilf64",
    "framewalk_clif_floorf32",
    "framewalk_clif_floorf64",
    "framewalk_clif_truncf32",
    "framewalk_clif_truncf64",
    "framewalk_clif_nearestf32",
    "framewalk_clif_nearestf64",
];

impl<'a> Artifact<'a> {
    /// Parses and validates `bytes`, expecting code for `isa_fingerprint`.
    pub fn parse(bytes: &'a [u8], isa_fingerprint: u64) -> Result<Self, ArtifactError> {
        Self::parse_checked(bytes, Some(isa_fingerprint))
    }

    /// Parses and validates `bytes` for inspection only: code compiled for another
    /// host is accepted (it must not be run).
    pub fn parse_for_inspection(bytes: &'a [u8]) -> Result<Self, ArtifactError> {
        Self::parse_checked(bytes, None)
    }

    fn parse_checked(bytes: &'a [u8], isa_fingerprint: Option<u64>) -> Result<Self, ArtifactError> {
        let file = ElfFile64::<LittleEndian>::parse(bytes)
            .map_err(|e| ArtifactError::Elf(e.to_string()))?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(ArtifactError::Elf(format!(
                "architecture {:?}, expected x86-64",
                file.architecture()
            )));
        }
        type Section<'a> = (&'a [u8], Option<(u64, u64)>, SectionIndex);
        let section = |name: &'static str| -> Result<Section<'a>, ArtifactError> {
            let sec = file
                .section_by_name(name)
                .ok_or(ArtifactError::MissingSection(name))?;
            // Sliced from the file by its file range (not `data()`), so every view lies
            // inside `bytes`: a section without file bytes (e.g. SHT_NOBITS) is refused.
            let (off, len) = sec
                .file_range()
                .ok_or_else(|| malformed(name, "has no bytes in the file"))?;
            let data = usize::try_from(off)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
                .ok_or_else(|| malformed(name, "lies outside the file"))?;
            Ok((data, Some((off, len)), sec.index()))
        };

        // Header and checksum first: nothing else is trusted before the bytes are whole.
        let (header, header_range, _) = section(s::HEADER)?;
        if header.len() < s::HEADER_SIZE {
            return Err(malformed(s::HEADER, "too short"));
        }
        if header[..8] != s::MAGIC {
            return Err(ArtifactError::BadMagic);
        }
        let version = u32_at(header, 8);
        if version != s::VERSION {
            return Err(ArtifactError::Version {
                found: version,
                expected: s::VERSION,
            });
        }
        let stored = u64::from_le_bytes(
            header[s::CHECKSUM_OFFSET..s::CHECKSUM_OFFSET + 8]
                .try_into()
                .unwrap_or_default(),
        );
        let at = header_range
            .and_then(|(o, _)| usize::try_from(o).ok())
            .and_then(|o| o.checked_add(s::CHECKSUM_OFFSET))
            .filter(|at| at.checked_add(8).is_some_and(|end| end <= bytes.len()))
            .ok_or_else(|| malformed(s::HEADER, "not stored in the file"))?;
        let computed = s::fnv1a(&[&bytes[..at], &[0u8; 8], &bytes[at + 8..]]);
        if stored != computed {
            return Err(ArtifactError::Checksum { stored, computed });
        }
        let found_isa = u64::from_le_bytes(
            header[s::ISA_OFFSET..s::ISA_OFFSET + 8]
                .try_into()
                .unwrap_or_default(),
        );
        if let Some(expected) = isa_fingerprint.filter(|e| *e != found_isa) {
            return Err(ArtifactError::IsaMismatch {
                found: found_isa,
                expected,
            });
        }

        let interface = u64::from_le_bytes(
            header[s::INTERFACE_OFFSET..s::INTERFACE_OFFSET + 8]
                .try_into()
                .unwrap_or_default(),
        );
        let (text, _, text_index) = section(s::TEXT)?;
        let text_len =
            u32::try_from(text.len()).map_err(|_| malformed(s::TEXT, "larger than 4 GiB"))?;
        let (functions, _, _) = section(s::FUNCTIONS)?;
        let (names, _, _) = section(s::NAMES)?;
        let (traps, _, _) = section(s::TRAPS)?;
        let (address_map, _, _) = section(s::ADDRESS_MAP)?;
        let (stack_maps, _, _) = section(s::STACK_MAPS)?;
        let (wasm, _, _) = section(s::WASM)?;
        let (eh_frame, _, _) = section(s::EH_FRAME)?;

        // Function records.
        if functions.len() % s::FUNCTION_RECORD_SIZE != 0 {
            return Err(malformed(
                s::FUNCTIONS,
                "length is not a whole number of records",
            ));
        }
        check_layout(&file, bytes.len(), text_index)?;
        let in_text = |off: u32, len: u32| off.checked_add(len).is_some_and(|end| end <= text_len);
        let mut prev_index = None;
        let mut prev_end = 0u32;
        // Every function body and entry trampoline, checked below not to overlap and to
        // be exactly what the call frame information describes.
        let mut code = Vec::with_capacity(2 * functions.len() / s::FUNCTION_RECORD_SIZE);
        for rec in functions.chunks_exact(s::FUNCTION_RECORD_SIZE) {
            let f = |i: usize| u32_at(rec, i * 4);
            let (index, off, len, toff, tlen, noff, nlen) =
                (f(0), f(1), f(2), f(3), f(4), f(5), f(6));
            if prev_index.is_some_and(|p| index <= p) {
                return Err(malformed(
                    s::FUNCTIONS,
                    "function indices are not increasing",
                ));
            }
            prev_index = Some(index);
            if !in_text(off, len) || (tlen != 0 && !in_text(toff, tlen)) {
                return Err(malformed(
                    s::FUNCTIONS,
                    format!("function {index} lies outside the text"),
                ));
            }
            if off < prev_end {
                return Err(malformed(
                    s::FUNCTIONS,
                    format!("function {index} overlaps the previous one"),
                ));
            }
            prev_end = off + len;
            if len != 0 {
                code.push(CodeRange {
                    start: off,
                    end: off + len,
                    func_index: index,
                    trampoline: false,
                });
            }
            if tlen != 0 {
                code.push(CodeRange {
                    start: toff,
                    end: toff + tlen,
                    func_index: index,
                    trampoline: true,
                });
            }
            let name_end = noff.checked_add(nlen).map(|e| e as usize);
            match name_end {
                Some(end) if end <= names.len() => {
                    if std::str::from_utf8(&names[noff as usize..end]).is_err() {
                        return Err(malformed(
                            s::NAMES,
                            format!("name of function {index} is not UTF-8"),
                        ));
                    }
                }
                _ => {
                    return Err(malformed(
                        s::NAMES,
                        format!("name of function {index} is out of range"),
                    ))
                }
            }
        }
        // The bodies' offsets increase with their indices (checked above), so `bodies`
        // is sorted by offset; `code` is sorted here, bodies and trampolines together.
        let bodies: Vec<CodeRange> = code.iter().copied().filter(|c| !c.trampoline).collect();
        code.sort_unstable_by_key(|c| (c.start, c.end));
        for w in code.windows(2) {
            if w[0].end > w[1].start {
                return Err(malformed(
                    s::FUNCTIONS,
                    format!(
                        "the code of function {} overlaps that of function {}",
                        w[0].func_index, w[1].func_index
                    ),
                ));
            }
        }
        check_pairs(s::TRAPS, traps, text_len, |v| {
            TrapCode::from_u8(v as u8).is_some() && v <= u32::from(u8::MAX)
        })?;
        for p in traps.chunks_exact(s::PAIR_SIZE) {
            let off = u32_at(p, 0);
            if code_at(&code, off, 1).is_none() {
                return Err(malformed(
                    s::TRAPS,
                    format!("trap site {off:#x} is outside every function"),
                ));
            }
        }
        check_pairs(s::ADDRESS_MAP, address_map, text_len, |_| true)?;
        // The call frame information and the function table describe the same code:
        // an edited function or trampoline range (or FDE) disagrees with the other.
        let mut fdes = check_eh_frame(eh_frame, text_len)?;
        fdes.sort_unstable();
        if !fdes.iter().map(|(start, len)| (*start, *len)).eq(code
            .iter()
            .map(|c| (u64::from(c.start), u64::from(c.end - c.start))))
        {
            return Err(malformed(
                s::EH_FRAME,
                "does not describe exactly the functions and entry trampolines of the \
                 function table",
            ));
        }
        check_stack_maps(stack_maps, &bodies)?;

        // Relocations. Each patches a placeholder (zero bytes) inside one function body
        // or trampoline, in increasing order without overlap, with the addend its kind
        // always has; a call in a trampoline calls that trampoline's function, a call
        // in a body calls the function the wasm `call` at that point names, and a
        // libcall is one the wasm operator at that point uses.
        let mut relocs = Vec::new();
        let mut trampoline_calls = vec![0u32; code.len()];
        let mut patched_to = 0u32;
        let text_section = file
            .section_by_index(text_index)
            .map_err(|e| malformed(s::TEXT, e.to_string()))?;
        for (offset, r) in text_section.relocations() {
            let bad = |reason: String| ArtifactError::BadRelocation { offset, reason };
            let (kind, size) = match r.flags() {
                RelocationFlags::Elf {
                    r_type: object::elf::R_X86_64_64,
                } => (RelocKind::Abs8, 8),
                RelocationFlags::Elf {
                    r_type: object::elf::R_X86_64_PLT32 | object::elf::R_X86_64_PC32,
                } => (RelocKind::PcRel4, 4),
                other => return Err(bad(format!("unsupported relocation type {other:?}"))),
            };
            let off32 = u32::try_from(offset).ok().filter(|o| in_text(*o, size));
            let Some(off32) = off32 else {
                return Err(bad("patch lies outside the text".into()));
            };
            if off32 < patched_to {
                return Err(bad(
                    "overlaps or precedes the previous relocation's patch".into()
                ));
            }
            patched_to = off32 + size;
            let Some(owner) = code_at(&code, off32, size) else {
                return Err(bad(
                    "patch lies outside every function and entry trampoline".into(),
                ));
            };
            let site = &text[off32 as usize..(off32 + size) as usize];
            if site.iter().any(|b| *b != 0) {
                return Err(bad(format!(
                    "patch site holds {site:02x?}, not a placeholder"
                )));
            }
            let addend = r.addend();
            let expected_addend = match kind {
                RelocKind::PcRel4 => -4,
                RelocKind::Abs8 => 0,
            };
            if addend != expected_addend {
                return Err(bad(format!(
                    "addend {addend}, expected {expected_addend} for {kind:?}"
                )));
            }
            let range = code[owner];
            let RelocationTarget::Symbol(sym_index) = r.target() else {
                return Err(bad("target is not a symbol".into()));
            };
            let sym = file
                .symbol_by_index(sym_index)
                .map_err(|e| bad(e.to_string()))?;
            let name = sym.name().map_err(|e| bad(e.to_string()))?;
            let target = if sym.is_undefined() {
                if let Some(l) = Libcall::from_symbol(name) {
                    LoadTarget::Libcall(l)
                } else if let Some(c) = CLIF_SYMBOLS.iter().find(|c| **c == name) {
                    LoadTarget::ClifLibcall(c)
                } else {
                    return Err(bad(format!("unknown symbol `{name}`")));
                }
            } else {
                if sym.section_index() != Some(text_index) {
                    return Err(bad(format!("symbol `{name}` is not in the text")));
                }
                let addr = u32::try_from(sym.address())
                    .ok()
                    .filter(|a| *a < text_len)
                    .ok_or_else(|| bad(format!("symbol `{name}` lies outside the text")))?;
                LoadTarget::Text(addr)
            };
            // The wasm operator the code at the patch was compiled from.
            let operator = || {
                wasm_operator_at(address_map, wasm, range, off32).map_err(|()| {
                    bad("no wasm instruction at the relocation's source location".into())
                })
            };
            match (target, kind) {
                (LoadTarget::Text(addr), RelocKind::PcRel4) => {
                    let callee = bodies
                        .binary_search_by_key(&addr, |b| b.start)
                        .map(|i| bodies[i].func_index)
                        .map_err(|_| bad(format!("target {addr:#x} does not start a function")))?;
                    if range.trampoline {
                        if callee != range.func_index {
                            return Err(bad(format!(
                                "the entry trampoline of function {} calls function {callee}",
                                range.func_index
                            )));
                        }
                        trampoline_calls[owner] += 1;
                    } else {
                        match operator()? {
                            Some(
                                Operator::Call { function_index }
                                | Operator::ReturnCall { function_index },
                            ) if function_index == callee => {}
                            op => {
                                return Err(bad(format!(
                                    "calls function {callee}, but the wasm instruction there \
                                     is {op:?}"
                                )))
                            }
                        }
                    }
                }
                (LoadTarget::Libcall(l), RelocKind::Abs8) if !range.trampoline => {
                    // A libcall address without a source location (one passed as an
                    // argument) is checked for kind and target only.
                    if let Some(op) = operator()?.filter(|op| !l.serves(op)) {
                        return Err(bad(format!(
                            "libcall {l:?} at a wasm instruction that does not use it ({op:?})"
                        )));
                    }
                }
                (LoadTarget::ClifLibcall(c), RelocKind::Abs8) if !range.trampoline => {
                    if let Some(op) = operator()?.filter(|op| !clif_libcall_serves(c, op)) {
                        return Err(bad(format!(
                            "`{c}` at a wasm instruction that does not use it ({op:?})"
                        )));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "a {kind:?} relocation cannot target {target:?} from {}",
                        if range.trampoline {
                            "an entry trampoline"
                        } else {
                            "a function body"
                        }
                    )))
                }
            }
            relocs.push(LoadReloc {
                offset: off32,
                kind,
                target,
                addend,
            });
        }
        for (range, calls) in code.iter().zip(&trampoline_calls) {
            if range.trampoline && *calls != 1 {
                return Err(malformed(
                    s::TEXT,
                    format!(
                        "the entry trampoline of function {} has {calls} relocated calls of \
                         its function, expected 1",
                        range.func_index
                    ),
                ));
            }
        }

        Ok(Artifact {
            text,
            functions,
            names,
            traps,
            address_map,
            stack_maps,
            wasm,
            eh_frame,
            relocs,
            interface,
        })
    }

    /// Number of defined functions.
    pub fn num_functions(&self) -> usize {
        self.functions.len() / s::FUNCTION_RECORD_SIZE
    }

    /// The functions, in index order.
    pub fn functions(&self) -> impl Iterator<Item = FunctionView<'a>> + '_ {
        let names = self.names;
        self.functions
            .chunks_exact(s::FUNCTION_RECORD_SIZE)
            .map(move |rec| {
                let f = |i: usize| u32_at(rec, i * 4);
                let (noff, nlen) = (f(5) as usize, f(6) as usize);
                FunctionView {
                    func_index: f(0),
                    offset: f(1),
                    len: f(2),
                    entry_trampoline: (f(4) != 0).then(|| (f(3), f(4))),
                    name: (nlen != 0)
                        .then(|| std::str::from_utf8(&names[noff..noff + nlen]).ok())
                        .flatten(),
                }
            })
    }

    /// Trap sites, sorted by text offset.
    pub fn traps(&self) -> impl Iterator<Item = (u32, TrapCode)> + 'a {
        self.traps.chunks_exact(s::PAIR_SIZE).map(|p| {
            (
                u32_at(p, 0),
                TrapCode::from_u8(u32_at(p, 4) as u8).unwrap_or(TrapCode::Unreachable),
            )
        })
    }

    /// Address map entries (text offset, wasm offset), sorted.
    pub fn address_map(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.address_map
            .chunks_exact(s::PAIR_SIZE)
            .map(|p| (u32_at(p, 0), u32_at(p, 4)))
    }

    /// The raw trap section (validated sorted pairs).
    pub fn trap_bytes(&self) -> &'a [u8] {
        self.traps
    }

    /// The raw address map (validated sorted pairs).
    pub fn address_map_bytes(&self) -> &'a [u8] {
        self.address_map
    }
}

/// Checks a section of sorted (text offset, value) pairs.
fn check_pairs(
    name: &'static str,
    bytes: &[u8],
    text_len: u32,
    value_ok: impl Fn(u32) -> bool,
) -> Result<(), ArtifactError> {
    if !bytes.len().is_multiple_of(s::PAIR_SIZE) {
        return Err(malformed(name, "length is not a whole number of entries"));
    }
    let mut prev = None;
    for p in bytes.chunks_exact(s::PAIR_SIZE) {
        let (off, v) = (u32_at(p, 0), u32_at(p, 4));
        if off >= text_len {
            return Err(malformed(
                name,
                format!("offset {off:#x} lies outside the text"),
            ));
        }
        if prev.is_some_and(|q| off < q) {
            return Err(malformed(name, "entries are not sorted"));
        }
        prev = Some(off);
        if !value_ok(v) {
            return Err(malformed(name, format!("bad value {v} at {off:#x}")));
        }
    }
    Ok(())
}

/// Checks `.eh_frame`: every entry parses, every FDE's CIE exists, its call frame
/// program runs to the end, and the code it describes lies inside the text (with the
/// section at its load offset, `sections::eh_frame_offset`). `gimli`'s reader returns
/// errors, never panics, on malformed input.
fn check_eh_frame(bytes: &[u8], text_len: u32) -> Result<Vec<(u64, u64)>, ArtifactError> {
    use cranelift_codegen::gimli::read::{
        BaseAddresses, CieOrFde, EhFrame, UnwindContext, UnwindSection,
    };
    use cranelift_codegen::gimli::LittleEndian;
    let bad = |reason: String| malformed(s::EH_FRAME, reason);
    let at = s::eh_frame_offset(text_len as usize).ok_or_else(|| bad("text too large".into()))?;
    let eh_frame = EhFrame::new(bytes, LittleEndian);
    let bases = BaseAddresses::default().set_text(0).set_eh_frame(at as u64);
    let mut entries = eh_frame.entries(&bases);
    let mut ctx = UnwindContext::new();
    let mut fdes = Vec::new();
    loop {
        let entry = entries.next().map_err(|e| bad(e.to_string()))?;
        let Some(entry) = entry else { break };
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial
            .parse(|section, bases, offset| section.cie_from_offset(bases, offset))
            .map_err(|e| bad(e.to_string()))?;
        let start = fde.initial_address();
        let end = start.checked_add(fde.len());
        if end.is_none_or(|end| end > u64::from(text_len)) {
            return Err(bad(format!(
                "FDE {} covers {start:#x}+{:#x}, outside the text",
                fdes.len(),
                fde.len()
            )));
        }
        let mut rows = fde
            .rows(&eh_frame, &bases, &mut ctx)
            .map_err(|e| bad(e.to_string()))?;
        while rows.next_row().map_err(|e| bad(e.to_string()))?.is_some() {}
        fdes.push((start, fde.len()));
    }
    Ok(fdes)
}

/// A function body or entry trampoline: `[start, end)` of the text.
#[derive(Clone, Copy, Debug)]
struct CodeRange {
    start: u32,
    end: u32,
    func_index: u32,
    trampoline: bool,
}

/// The index in `code` (sorted, non-overlapping) of the range holding
/// `[offset, offset + len)`.
fn code_at(code: &[CodeRange], offset: u32, len: u32) -> Option<usize> {
    let i = code.partition_point(|c| c.start <= offset).checked_sub(1)?;
    let end = u64::from(offset) + u64::from(len);
    (end <= u64::from(code[i].end)).then_some(i)
}

/// The wasm operator that the code at text offset `at` of `function` was compiled
/// from, by the address map (validated pairs) and the embedded wasm: `Ok(None)` if the
/// entry at or before `at` has no wasm offset (Cranelift leaves some materialized
/// constants, such as a libcall's address passed as an argument, without a source
/// location), `Err(())` if there is no entry in the function or the bytes there are not
/// an operator.
fn wasm_operator_at<'w>(
    address_map: &[u8],
    wasm: &'w [u8],
    function: CodeRange,
    at: u32,
) -> Result<Option<Operator<'w>>, ()> {
    let (pairs, _) = address_map.as_chunks::<{ s::PAIR_SIZE }>();
    let field =
        |p: &[u8; s::PAIR_SIZE], i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let first = pairs
        .partition_point(|p| field(p, 0) <= at)
        .checked_sub(1)
        .ok_or(())?;
    if field(&pairs[first], 0) < function.start {
        return Err(());
    }
    let wasm_offset = field(&pairs[first], 4);
    if wasm_offset == crate::compile::NO_WASM_OFFSET {
        return Ok(None);
    }
    let wasm_offset = usize::try_from(wasm_offset).map_err(drop)?;
    let mut reader = wasmparser::BinaryReader::new(wasm.get(wasm_offset..).ok_or(())?, wasm_offset);
    reader.read_operator().map(Some).map_err(drop)
}

/// Checks the layout of the ELF file: every section with bytes lies inside the file at
/// an offset aligned as its header says, no two of them (nor the ELF header and the
/// section header table) overlap, and the text's relocations are one `SHT_RELA` table
/// (the one named `.rela.text`, if any is) whose symbols are the one `SHT_SYMTAB`.
/// A section header edited to move, resize, retype or relink a section fails here,
/// before its bytes are read as anything.
fn check_layout(
    file: &ElfFile64<'_, LittleEndian>,
    file_len: usize,
    text_index: SectionIndex,
) -> Result<(), ArtifactError> {
    use object::elf::{SHT_NOBITS, SHT_NULL, SHT_REL, SHT_RELA, SHT_SYMTAB};
    use object::read::elf::{FileHeader as _, SectionHeader as _};
    let e = LittleEndian;
    let bad = |reason: String| ArtifactError::Layout(reason);
    let header = file.elf_header();
    let table = file.elf_section_table();
    let sh_size = std::mem::size_of::<object::elf::SectionHeader64<LittleEndian>>() as u64;
    let shoff = header.e_shoff(e);
    let mut ranges = vec![
        (
            0u64,
            u64::from(header.e_ehsize(e)),
            "the ELF header".to_string(),
        ),
        (
            shoff,
            shoff.saturating_add(sh_size.saturating_mul(table.len() as u64)),
            "the section header table".to_string(),
        ),
    ];
    let name_of = |sh: &object::elf::SectionHeader64<LittleEndian>| {
        table
            .section_name(e, sh)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_else(|_| "?".into())
    };
    let mut symtabs = Vec::new();
    let mut text_relocations = 0usize;
    for (i, sh) in table.iter().enumerate() {
        let kind = sh.sh_type(e);
        let name = name_of(sh);
        if kind == SHT_SYMTAB {
            symtabs.push(i);
        }
        let relocates_text = matches!(kind, SHT_REL | SHT_RELA)
            && usize::try_from(sh.sh_info(e)).ok() == Some(text_index.0);
        if relocates_text || name == ".rela.text" {
            text_relocations += 1;
            let link = usize::try_from(sh.sh_link(e)).ok();
            let link_kind = link
                .and_then(|l| table.section(SectionIndex(l)).ok())
                .map(|l| l.sh_type(e));
            if !relocates_text
                || kind != SHT_RELA
                || sh.sh_entsize(e) != 24
                || !sh.sh_size(e).is_multiple_of(24)
                || link_kind != Some(SHT_SYMTAB)
            {
                return Err(bad(format!(
                    "section {i} `{name}` is not a RELA table of the text's relocations \
                     against the symbol table"
                )));
            }
        }
        if kind == SHT_NULL || kind == SHT_NOBITS || sh.sh_size(e) == 0 {
            continue;
        }
        let (offset, size, align) = (sh.sh_offset(e), sh.sh_size(e), sh.sh_addralign(e));
        if align > 1 && !offset.is_multiple_of(align) {
            return Err(bad(format!(
                "section {i} `{name}` at {offset:#x} is not aligned to {align}"
            )));
        }
        let end = offset
            .checked_add(size)
            .filter(|end| *end <= file_len as u64)
            .ok_or_else(|| bad(format!("section {i} `{name}` lies outside the file")))?;
        ranges.push((offset, end, format!("section {i} `{name}`")));
    }
    if symtabs.len() > 1 || text_relocations > 1 {
        return Err(bad(format!(
            "{} symbol tables and {text_relocations} relocation tables of the text, \
             expected at most one of each",
            symtabs.len()
        )));
    }
    ranges.sort_unstable_by_key(|r| (r.0, r.1));
    for w in ranges.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(bad(format!("{} overlaps {}", w[0].2, w[1].2)));
        }
    }
    Ok(())
}

/// Checks the stack-map section's structure (`StackMapSection::parse`) and that every
/// safepoint is a return address inside a function body (`bodies`, sorted), with the
/// same span as the function's other safepoints (a function's frame has one size).
fn check_stack_maps(bytes: &[u8], bodies: &[CodeRange]) -> Result<(), ArtifactError> {
    let section = crate::stackmap::StackMapSection::parse(bytes)
        .map_err(|e| malformed(s::STACK_MAPS, e.to_string()))?;
    let mut body = 0usize;
    let mut span_of_body: Option<(usize, u32)> = None;
    for (return_offset, map) in section.iter() {
        // Offsets increase, so the bodies are visited in order.
        while bodies.get(body).is_some_and(|b| b.end < return_offset) {
            body += 1;
        }
        let Some(b) = bodies.get(body).filter(|b| b.start < return_offset) else {
            return Err(malformed(
                s::STACK_MAPS,
                format!("safepoint {return_offset:#x} is not inside a function body"),
            ));
        };
        match span_of_body {
            Some((i, span)) if i == body && span != map.span() => {
                return Err(malformed(
                    s::STACK_MAPS,
                    format!(
                        "safepoint {return_offset:#x} of function {} spans {} bytes, its \
                         other safepoints {span}",
                        b.func_index,
                        map.span()
                    ),
                ))
            }
            Some((i, _)) if i == body => {}
            _ => span_of_body = Some((body, map.span())),
        }
    }
    Ok(())
}

/// Finds the value of the last pair whose offset is `<= key` in a validated pair section.
#[inline]
pub fn lookup_le(pairs: &[u8], key: u32) -> Option<(u32, u32)> {
    let (pairs, _) = pairs.as_chunks::<{ s::PAIR_SIZE }>();
    let n = pairs.len();
    if n == 0 {
        return None;
    }
    let offset =
        |pair: &[u8; s::PAIR_SIZE]| u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
    // The last entry with offset <= key, by halving a window `[base, base + len)` that
    // holds it if any entry does. The step must not branch on the data: which half
    // holds the key is a coin flip for the branch predictor (a mispredicted branch per
    // step was the largest cost of symbolizing a frame), so it is an explicit select.
    // Indexing whole pairs keeps every index visibly below `n` (`base + half < base +
    // len <= n`), so the steps carry no bounds checks.
    let (mut base, mut len) = (0usize, n);
    while len > 1 {
        let half = len / 2;
        let upper = offset(&pairs[base + half]) <= key;
        base = std::hint::select_unpredictable(upper, base + half, base);
        len -= half;
    }
    let pair = &pairs[base];
    let off = offset(pair);
    (off <= key).then(|| {
        (
            off,
            u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::lookup_le;

    /// `lookup_le` against a linear scan, for every sorted list of offsets (with
    /// repeats) drawn from 0..6 of up to 5 entries and every key around them.
    #[test]
    fn lookup_le_finds_the_last_pair_at_or_before_the_key() {
        fn lists(len: usize, from: u32, out: &mut Vec<Vec<u32>>, cur: &mut Vec<u32>) {
            out.push(cur.clone());
            if cur.len() == len {
                return;
            }
            for next in from..6 {
                cur.push(next);
                lists(len, next, out, cur);
                cur.pop();
            }
        }
        /// Pairs `(offset, index)` for `offsets`, checked against a scan for each key.
        fn check(offsets: &[u32], keys: std::ops::Range<u32>) {
            let bytes: Vec<u8> = offsets
                .iter()
                .enumerate()
                .flat_map(|(i, o)| o.to_le_bytes().into_iter().chain((i as u32).to_le_bytes()))
                .collect();
            for key in keys {
                let expected = offsets
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, o)| **o <= key)
                    .map(|(i, o)| (*o, i as u32));
                assert_eq!(lookup_le(&bytes, key), expected, "{offsets:?} key {key}");
            }
        }
        let mut all = Vec::new();
        lists(5, 0, &mut all, &mut Vec::new());
        for offsets in all {
            check(&offsets, 0..8);
        }
        // Longer lists, sorted with repeats, against the same scan.
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        for len in 1..70 {
            let mut offsets: Vec<u32> = (0..len).map(|_| next(200) as u32).collect();
            offsets.sort_unstable();
            check(&offsets, 0..210);
        }
    }
}
