//! A loaded module: its artifact bytes (owned or memory-mapped), its code mapped
//! executable, and the metadata re-read from the embedded wasm.
//!
//! Every module goes through the artifact: `Module::new` compiles, writes the ELF
//! artifact and loads it like `Module::deserialize` would, so the path a saved artifact
//! takes is the path every test takes. Loading an artifact from elsewhere is `unsafe`
//! (its machine code runs); `Module::new` refuses artifact bytes. The artifact's metadata sections stay in the
//! artifact bytes and are read through borrowed views.

use super::code_memory::CodeMemory;
use super::engine::Engine;
use super::gdb_jit::{self, GdbJitRegistration, JitFunction};
use super::libcalls;
use crate::artifact::{self, Artifact, ArtifactError};
use crate::compile::module_info::{self, ModuleInfo};
use crate::compile::{self, CompileError};
use crate::debuginfo::{DebugInfoError, SourceMap};
use crate::runtime::vmcontext::VMOffsets;
use crate::stackmap::StackMapBuilder;
use crate::types::{ExternType, FuncType};
use crate::unwind::{FunctionRange, ModuleRegistration, ModuleText};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Why a module could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleLoadError {
    /// Compilation failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The artifact is invalid.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the artifact failed.
    #[error(transparent)]
    Write(#[from] artifact::WriteError),
    /// Mapping the code failed.
    #[error(transparent)]
    Code(#[from] super::code_memory::CodeMemoryError),
    /// [`compile_artifact`] or [`Module::new`] was given an artifact: they compile wasm
    /// (binary or text). Loading an artifact runs its machine code, which only the
    /// `unsafe` [`Module::deserialize`] does.
    #[error(
        "the input is already a compiled framewalk artifact (an ELF object), not wasm \
         (loading one runs its machine code: `unsafe Module::deserialize`)"
    )]
    AlreadyCompiled,
}

/// The bytes of an artifact: owned, or a read-only file mapping.
enum ArtifactBytes {
    Owned(Vec<u8>),
    Mapped { ptr: *const u8, len: usize },
}

// SAFETY: the mapping is read-only and private; sharing it between threads is sound.
unsafe impl Send for ArtifactBytes {}
// SAFETY: as above.
unsafe impl Sync for ArtifactBytes {}

impl ArtifactBytes {
    fn map_file(path: &Path) -> std::io::Result<ArtifactBytes> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large"))?;
        if len == 0 {
            return Ok(ArtifactBytes::Owned(Vec::new()));
        }
        // SAFETY: a private read-only mapping of a file we opened; checked for MAP_FAILED.
        // If another process truncates the file while mapped, reads fault (SIGBUS) — the
        // same caveat every mmap-based loader has; artifacts are not meant to be edited in place.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ArtifactBytes::Mapped {
            ptr: ptr.cast(),
            len,
        })
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            ArtifactBytes::Owned(v) => v,
            // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
            ArtifactBytes::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl Drop for ArtifactBytes {
    fn drop(&mut self) {
        if let ArtifactBytes::Mapped { ptr, len } = self {
            // SAFETY: we own this mapping and nothing borrows it past `self`.
            unsafe {
                libc::munmap(ptr.cast_mut().cast(), *len);
            }
        }
    }
}

/// The byte range of the (sorted, validated) address-map `pairs` whose text offsets lie
/// in `[start, end)`.
fn entries_within(pairs: &[u8], start: u32, end: u64) -> (u32, u32) {
    let size = artifact::sections::PAIR_SIZE;
    let n = pairs.len() / size;
    let offset_at = |i: usize| {
        let b = &pairs[i * size..i * size + 4];
        u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // The number of entries whose offset is below `bound`.
    let below = |bound: u64| {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if offset_at(mid) < bound {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    };
    // A validated section is far below 4 GiB.
    let byte = |i: usize| u32::try_from(i * size).unwrap_or(u32::MAX);
    (byte(below(u64::from(start))), byte(below(end)))
}

/// Where one defined function lives in the mapped code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoadedFunction {
    pub(crate) body: usize,
    pub(crate) body_len: u32,
    pub(crate) entry_trampoline: usize,
    /// Length of the entry trampoline's code (0: none).
    pub(crate) entry_trampoline_len: u32,
    pub(crate) text_offset: u32,
}

/// What symbolizing a frame of one defined function needs, 16 bytes per function (a
/// backtrace over many functions touches little memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FuncSymbolRange {
    /// The function's first byte, from the start of the text.
    pub(crate) text_offset: u32,
    /// Offset of the function's body in the wasm binary.
    pub(crate) wasm_body_start: u32,
    /// The address-map entries inside this function's code, as a byte range of the
    /// address map: a symbolized frame searches a few entries, not the whole module's.
    pub(crate) address_map: (u32, u32),
}

pub(crate) struct ModuleInner {
    /// Must stay the first field: unregistering comes before freeing what the registry
    /// data points at.
    registration: OnceLock<ModuleRegistration<'static>>,
    /// The description given to a debugger (`Config::gdb_jit`); withdrawn before the
    /// code it describes is unmapped.
    _gdb_jit: Option<GdbJitRegistration>,
    pub(crate) engine: Engine,
    bytes: ArtifactBytes,
    text: Range<usize>,
    traps: Range<usize>,
    /// The address map section. It borrows `bytes`, whose heap buffer or mapping never
    /// moves and is freed only when this struct is dropped; kept as a slice so that
    /// symbolizing a frame does not re-derive it from `bytes`.
    address_map: &'static [u8],
    wasm: Range<usize>,
    /// Where the stack-map section is in `bytes` (validated at load).
    stack_maps: Range<usize>,
    /// The stack-map section decoded for collections (it owns what it answers from).
    pub(crate) stack_map_table: crate::stackmap::StackMapTable,
    pub(crate) info: ModuleInfo,
    pub(crate) offsets: VMOffsets,
    pub(crate) code: CodeMemory,
    pub(crate) functions: Vec<LoadedFunction>,
    /// Per defined function, what symbolizing its frames needs.
    pub(crate) symbol_ranges: Box<[FuncSymbolRange]>,
    /// Engine-wide type id of each module type.
    pub(crate) type_ids: Vec<u32>,
    /// Function names (shared with every backtrace frame that names them).
    pub(crate) names: Vec<Option<Arc<str>>>,
    /// The module's name from the name section.
    pub(crate) module_name: Option<Arc<str>>,
    /// Source lines from the module's DWARF, read the first time a frame asks.
    source_map: OnceLock<Result<SourceMap, DebugInfoError>>,
    /// Where each function's prologue and epilogues are, for a sampling profiler's
    /// signal handler (built at load from the code bytes: one pass over the text).
    #[cfg(feature = "profile")]
    pub(crate) frame_states: crate::profile::FrameStateTable,
}

impl ModuleInner {
    /// The module's DWARF line tables, read on first use.
    fn source_map(&self) -> &Result<SourceMap, DebugInfoError> {
        self.source_map
            .get_or_init(|| SourceMap::parse(&self.bytes.as_slice()[self.wasm.clone()]))
    }

    /// The trap section (validated pairs).
    pub(crate) fn trap_bytes(&self) -> &[u8] {
        &self.bytes.as_slice()[self.traps.clone()]
    }

    /// The address map (validated pairs).
    pub(crate) fn address_map_bytes(&self) -> &[u8] {
        self.address_map
    }
}

impl crate::trap::FrameSymbols for ModuleInner {
    fn module_name(&self) -> Option<&str> {
        self.module_name.as_deref()
    }

    fn func_name(&self, func_index: u32) -> Option<&str> {
        self.names.get(func_index as usize)?.as_deref()
    }

    fn shared_names(&self, func_index: u32) -> (Option<Arc<str>>, Option<Arc<str>>) {
        (
            self.names.get(func_index as usize).cloned().flatten(),
            self.module_name.clone(),
        )
    }

    fn source_locations(&self, wasm_offset: u32) -> Vec<crate::trap::SourceLocation> {
        if !self.info.has_dwarf {
            return Vec::new();
        }
        match self.source_map() {
            Ok(map) => map.locations(wasm_offset),
            Err(_) => Vec::new(),
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// A compiled WebAssembly module, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.inner.info.name)
            .field("functions", &self.inner.functions.len())
            .finish()
    }
}

fn subrange(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// Compiles `bytes` (wasm binary or text) into artifact bytes.
pub fn compile_artifact(engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, ModuleLoadError> {
    if Module::is_artifact(bytes) {
        return Err(ModuleLoadError::AlreadyCompiled);
    }
    let compiled = compile::compile_module_with(
        &*engine.inner.isa,
        engine.inner.config.wasm_features(),
        compile::CodegenOptions {
            epoch_interruption: engine.inner.config.epoch_interruption,
        },
        bytes,
    )?;
    let mut builder = StackMapBuilder::new();
    for safepoint in &compiled.stack_maps {
        builder
            .add_safepoint(safepoint)
            .map_err(|e| CompileError::Host(format!("stack map: {e}")))?;
    }
    let stack_maps = builder.finish();
    Ok(artifact::write_artifact(
        &compiled,
        &stack_maps,
        engine.inner.isa_fingerprint,
    )?)
}

impl Module {
    /// The module of a backtrace frame ([`WasmFrame::symbols`](crate::trap::WasmFrame::symbols)),
    /// if framewalk's runtime captured it.
    pub fn from_frame_symbols(symbols: &Arc<dyn crate::trap::FrameSymbols>) -> Option<Module> {
        symbols
            .clone()
            .into_any()
            .downcast::<ModuleInner>()
            .ok()
            .map(|inner| Module { inner })
    }

    /// Compiles a module from wasm binary or text.
    ///
    /// # Errors
    ///
    /// [`ModuleLoadError::AlreadyCompiled`] for artifact bytes: loading one runs its
    /// machine code, which only the `unsafe` [`Module::deserialize`] does.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Result<Module, ModuleLoadError> {
        let artifact = compile_artifact(engine, bytes)?;
        Self::from_bytes(engine, ArtifactBytes::Owned(artifact))
    }

    /// Loads a module from artifact bytes produced by [`Module::serialize`],
    /// [`compile_artifact`] or `framewalk compile`.
    ///
    /// The bytes are validated before any code is mapped: the checksum catches
    /// accidental damage, and every offset, length, index and relocation the loader
    /// reads is checked against the text, the function table, the call frame
    /// information and the embedded wasm, so damage short of rewriting the code is an
    /// error. But an artifact *is* machine code: no check can tell code that does what
    /// its wasm says from code that does something else.
    ///
    /// # Safety
    ///
    /// `bytes` must be an artifact written by [`Module::serialize`],
    /// [`compile_artifact`] or `framewalk compile` from input the caller trusts, by a
    /// build of framewalk with the same artifact format, and not modified since (the
    /// ISA fingerprint and format version are checked; the rest is the caller's word).
    /// An artifact crafted to pass the checks can run arbitrary code in this process.
    pub unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> Result<Module, ModuleLoadError> {
        Self::from_bytes(engine, ArtifactBytes::Owned(bytes.to_vec()))
    }

    /// Loads a module from an artifact file, mapping it rather than reading it; see
    /// [`Module::deserialize`].
    ///
    /// # Safety
    ///
    /// As for [`Module::deserialize`]: the file must be an artifact written by
    /// framewalk from input the caller trusts, and must not change while it is mapped
    /// (a truncation while mapped faults on access, as with every mapped file).
    pub unsafe fn deserialize_file(
        engine: &Engine,
        path: impl AsRef<Path>,
    ) -> Result<Module, ModuleLoadError> {
        let path = path.as_ref();
        let bytes = ArtifactBytes::map_file(path).map_err(|source| ModuleLoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(engine, bytes)
    }

    /// Whether `bytes` look like an artifact (an ELF file) rather than wasm.
    pub fn is_artifact(bytes: &[u8]) -> bool {
        bytes.starts_with(b"\x7fELF")
    }

    fn from_bytes(engine: &Engine, bytes: ArtifactBytes) -> Result<Module, ModuleLoadError> {
        let all = bytes.as_slice();
        let art = Artifact::parse(all, engine.inner.isa_fingerprint)?;
        let (info, bodies) = module_info::parse_with(art.wasm, engine.inner.config.wasm_features())
            .map_err(CompileError::from)?;
        // Where each defined function's body starts in the wasm binary (for
        // `FrameInfo::func_offset`).
        let body_starts: Vec<u32> = bodies
            .iter()
            .map(|b| u32::try_from(b.body.range().start).unwrap_or(u32::MAX))
            .collect();
        drop(bodies);
        let found = info.interface_fingerprint();
        if found != art.interface {
            return Err(ArtifactError::InterfaceMismatch {
                found,
                expected: art.interface,
            }
            .into());
        }
        let offsets = compile::vmoffsets(&info)?;
        if art.num_functions() != info.num_defined_funcs() as usize {
            return Err(ArtifactError::Malformed {
                section: artifact::sections::FUNCTIONS,
                reason: "function count does not match the embedded wasm".into(),
            }
            .into());
        }
        let code = CodeMemory::new(art.text, art.eh_frame, &art.relocs, libcalls::address_of)?;
        let base = code.base();
        let mut functions = Vec::with_capacity(art.num_functions());
        let mut symbol_ranges = Vec::with_capacity(art.num_functions());
        let mut names: Vec<Option<Arc<str>>> = vec![None; info.functions.len()];
        for (i, f) in art.functions().enumerate() {
            if f.func_index != info.num_imported_funcs + i as u32 {
                return Err(ArtifactError::Malformed {
                    section: artifact::sections::FUNCTIONS,
                    reason: format!("record {i} is for function {}", f.func_index),
                }
                .into());
            }
            functions.push(LoadedFunction {
                body: base + f.offset as usize,
                body_len: f.len,
                entry_trampoline: f.entry_trampoline.map_or(0, |(o, _)| base + o as usize),
                entry_trampoline_len: f.entry_trampoline.map_or(0, |(_, len)| len),
                text_offset: f.offset,
            });
            symbol_ranges.push(FuncSymbolRange {
                text_offset: f.offset,
                wasm_body_start: body_starts.get(i).copied().unwrap_or(u32::MAX),
                address_map: entries_within(
                    art.address_map_bytes(),
                    f.offset,
                    u64::from(f.offset) + u64::from(f.len),
                ),
            });
        }
        for (i, n) in &info.func_names {
            if let Some(slot) = names.get_mut(*i as usize) {
                *slot = Some(n.as_str().into());
            }
        }
        let type_ids = info.types.iter().map(|t| engine.type_id(t)).collect();
        let module_name: Option<Arc<str>> = info.name.as_deref().map(Into::into);
        let text = subrange(all, art.text);
        let traps = subrange(all, art.trap_bytes());
        // SAFETY: the slice borrows the artifact bytes, which move into the same
        // `ModuleInner` and whose storage never moves or is freed before it.
        let address_map: &'static [u8] = unsafe { std::mem::transmute(art.address_map_bytes()) };
        let wasm = subrange(all, art.wasm);
        let stack_map_table =
            crate::stackmap::StackMapTable::parse(art.stack_maps).map_err(|e| {
                ArtifactError::Malformed {
                    section: artifact::sections::STACK_MAPS,
                    reason: e.to_string(),
                }
            })?;
        let stack_maps = subrange(all, art.stack_maps);
        #[cfg(feature = "profile")]
        let frame_states = crate::profile::FrameStateTable::build(
            art.text,
            functions
                .iter()
                .filter(|f| f.body_len > 0)
                .map(|f| (f.text_offset, f.body_len)),
        );
        drop(art);
        let gdb_jit = if engine.inner.config.gdb_jit && !code.is_empty() {
            Some(describe_to_debugger(&code, &functions, &info, &names)?)
        } else {
            None
        };
        let inner = Arc::new(ModuleInner {
            registration: OnceLock::new(),
            _gdb_jit: gdb_jit,
            engine: engine.clone(),
            bytes,
            text,
            traps,
            address_map,
            stack_maps,
            stack_map_table,
            wasm,
            info,
            offsets,
            code,
            functions,
            symbol_ranges: symbol_ranges.into_boxed_slice(),
            type_ids,
            names,
            module_name,
            source_map: OnceLock::new(),
            #[cfg(feature = "profile")]
            frame_states,
        });
        if !inner.code.is_empty() {
            let text = ModuleText {
                text_start: inner.code.base(),
                text_len: inner.code.len(),
                functions: inner
                    .functions
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.body_len > 0)
                    .map(|(i, f)| FunctionRange {
                        start: f.text_offset,
                        len: f.body_len,
                        func_index: inner.info.num_imported_funcs + i as u32,
                    })
                    .collect(),
                data: Arc::as_ptr(&inner) as usize,
            };
            let registration = super::registry::REGISTRY
                .register(text)
                .map_err(|e| CompileError::Host(format!("registering code: {e}")))?;
            let _ = inner.registration.set(registration);
        }
        Ok(Module { inner })
    }

    /// The engine the module was compiled or loaded for.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The artifact bytes (what `framewalk compile` writes).
    pub fn serialize(&self) -> Vec<u8> {
        self.inner.bytes.as_slice().to_vec()
    }

    /// The artifact, validated again (cheap) for inspection.
    pub fn artifact(&self) -> Result<Artifact<'_>, ArtifactError> {
        Artifact::parse(
            self.inner.bytes.as_slice(),
            self.inner.engine.inner.isa_fingerprint,
        )
    }

    /// The module's name from the name section.
    pub fn name(&self) -> Option<&str> {
        self.inner.info.name.as_deref()
    }

    /// Imports: (module, name, type).
    pub fn imports(&self) -> impl Iterator<Item = (&str, &str, ExternType)> + '_ {
        let info = &self.inner.info;
        info.imports.iter().map(move |i| {
            let ty = match &i.kind {
                module_info::ImportKind::Func(t) => {
                    ExternType::Func(info.types[*t as usize].clone())
                }
                module_info::ImportKind::Table(t) => ExternType::Table(*t),
                module_info::ImportKind::Memory(m) => ExternType::Memory(*m),
                module_info::ImportKind::Global(g) => ExternType::Global(*g),
            };
            (i.module.as_str(), i.name.as_str(), ty)
        })
    }

    /// Exports: (name, type).
    pub fn exports(&self) -> impl Iterator<Item = (&str, ExternType)> + '_ {
        let info = &self.inner.info;
        info.exports.iter().map(move |(name, e)| {
            let ty = match e {
                module_info::ExportIndex::Func(f) => ExternType::Func(info.func_type(*f).clone()),
                module_info::ExportIndex::Table(t) => ExternType::Table(info.tables[*t as usize]),
                module_info::ExportIndex::Memory(m) => {
                    ExternType::Memory(info.memories[*m as usize])
                }
                module_info::ExportIndex::Global(g) => {
                    ExternType::Global(info.globals[*g as usize])
                }
            };
            (name.as_str(), ty)
        })
    }

    /// The type of function `index`.
    pub fn func_type(&self, index: u32) -> Option<&FuncType> {
        let info = &self.inner.info;
        info.functions
            .get(index as usize)
            .map(|t| &info.types[*t as usize])
    }

    /// Name of function `index`, if the name section gave one.
    pub fn func_name(&self, index: u32) -> Option<&str> {
        self.inner.names.get(index as usize)?.as_deref()
    }

    /// The module's source-level debug information: the line tables and inlined calls
    /// of its DWARF custom sections (`.debug_info`, `.debug_line`, …), which
    /// backtraces use for [`FrameInfo::source`](crate::trap::FrameInfo::source). Read
    /// the first time it is needed; empty for a module without DWARF.
    ///
    /// # Errors
    ///
    /// The [`DebugInfoError`] that made the DWARF unreadable: the module still runs,
    /// and its backtraces have no source lines.
    pub fn source_map(&self) -> Result<&SourceMap, &DebugInfoError> {
        self.inner.source_map().as_ref()
    }

    /// The stack-map section bytes.
    pub fn stack_map_bytes(&self) -> &[u8] {
        &self.inner.bytes.as_slice()[self.inner.stack_maps.clone()]
    }

    /// The embedded wasm binary.
    pub fn wasm_bytes(&self) -> &[u8] {
        &self.inner.bytes.as_slice()[self.inner.wasm.clone()]
    }

    /// Length of the text section in bytes.
    pub fn text_len(&self) -> usize {
        self.inner.bytes.as_slice()[self.inner.text.clone()].len()
    }

    /// The address range of the loaded, relocated text (the functions and their entry
    /// trampolines).
    pub fn text_range(&self) -> Range<usize> {
        let base = self.inner.code.base();
        base..base + self.inner.code.len()
    }

    /// The module's `.eh_frame` as loaded: System V call frame information for every
    /// function and entry trampoline, valid at the address of the returned slice (its
    /// FDE addresses are PC-relative; see `artifact::sections`). framewalk's walker
    /// does not use it; it is for debuggers, profilers and checks of the walker.
    pub fn eh_frame(&self) -> &[u8] {
        self.inner.code.eh_frame()
    }

    /// Where each defined function's body was loaded, by function index.
    pub fn function_symbols(&self) -> impl Iterator<Item = FunctionSymbol<'_>> + '_ {
        let inner = &*self.inner;
        inner.functions.iter().enumerate().map(move |(i, f)| {
            let func_index = inner.info.num_imported_funcs + i as u32;
            FunctionSymbol {
                func_index,
                name: inner
                    .names
                    .get(func_index as usize)
                    .and_then(|n| n.as_deref()),
                start: f.body,
                len: f.body_len as usize,
            }
        })
    }

    /// Writes a Linux `perf` JIT map of this module's functions to `out`: one line
    /// `START SIZE NAME` per defined function (hex, no `0x`), named
    /// `wasm[MODULE]::FUNCTION` from the name section (`<unnamed>` for a module without
    /// a name, `function[INDEX]` for a function without one). Appending it to
    /// `/tmp/perf-<pid>.map` lets `perf report` name wasm code; the map stays valid as
    /// long as the module is loaded.
    pub fn write_perf_map(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for f in self.function_symbols() {
            let name = native_symbol_name(self.name(), f.func_index, f.name);
            writeln!(out, "{:x} {:x} {name}", f.start, f.len)?;
        }
        Ok(())
    }
}

/// The name a function has outside wasm (perf maps, debuggers): `wasm[MODULE]::NAME`.
fn native_symbol_name(module: Option<&str>, func_index: u32, name: Option<&str>) -> String {
    let module = module.unwrap_or("<unnamed>");
    match name {
        Some(name) => format!("wasm[{module}]::{name}"),
        None => format!("wasm[{module}]::function[{func_index}]"),
    }
}

/// Registers loaded code with the GDB JIT interface.
fn describe_to_debugger(
    code: &CodeMemory,
    functions: &[LoadedFunction],
    info: &ModuleInfo,
    names: &[Option<Arc<str>>],
) -> Result<GdbJitRegistration, ModuleLoadError> {
    let mut symbols = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        let func_index = info.num_imported_funcs + i as u32;
        let name = native_symbol_name(
            info.name.as_deref(),
            func_index,
            names.get(func_index as usize).and_then(|n| n.as_deref()),
        );
        if f.entry_trampoline_len > 0 {
            symbols.push(JitFunction {
                name: format!("{name}::entry_trampoline"),
                start: f.entry_trampoline,
                len: f.entry_trampoline_len as usize,
            });
        }
        if f.body_len > 0 {
            symbols.push(JitFunction {
                name,
                start: f.body,
                len: f.body_len as usize,
            });
        }
    }
    let eh_frame = code.eh_frame();
    let image = gdb_jit::object_image(
        code.base()..code.base() + code.len(),
        &symbols,
        eh_frame.as_ptr() as usize,
        eh_frame,
    )
    .map_err(|e| CompileError::Host(format!("writing the GDB JIT object: {e}")))?;
    Ok(GdbJitRegistration::register(image))
}

/// Where one defined function of a loaded [`Module`] lives in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionSymbol<'a> {
    /// Index in the module's function space (imports first).
    pub func_index: u32,
    /// Name from the name section.
    pub name: Option<&'a str>,
    /// Address of the first byte of its body.
    pub start: usize,
    /// Length of its body in bytes.
    pub len: usize,
}
