//! Reads a WebAssembly binary into [`ModuleInfo`]: everything about a module except its
//! function bodies' code.
//!
//! The same reader runs at compile time (with validation, collecting function bodies for
//! the translator) and when an artifact is loaded (the artifact embeds the original wasm
//! bytes, so the metadata is re-derived rather than serialized a second time).
//!
//! Invariants once [`parse`] returns `Ok`:
//! - the module validated against the engine's features, a subset of
//!   [`supported_features`] (WebAssembly 2.0 without SIMD, plus proposals);
//! - every index in the info (types, functions, tables, memories, globals, segments) is
//!   in range, because the validator checked it;
//! - `functions[..num_imported_funcs]` are the imported functions, in import order, and
//!   likewise for tables, memories and globals.

use crate::types::{FuncType, GlobalType, Limits, MemoryType, TableType, ValType};
use std::collections::HashMap;
use std::ops::Range;
use wasmparser::{
    CompositeInnerType, DataKind, ElementItems, ElementKind, ExternalKind, FuncToValidate,
    FunctionBody, KnownCustom, Name, Operator, Parser, Payload, TableInit, TypeRef, Validator,
    ValidatorResources, WasmFeatures,
};

/// Why a module was rejected before any code was generated.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The bytes are not a valid WebAssembly 2.0 module.
    #[error("invalid wasm at offset {offset:#x}: {message}")]
    Invalid {
        /// Byte offset of the problem in the module.
        offset: usize,
        /// What the validator said.
        message: String,
    },
    /// The module uses a feature framewalk does not implement.
    #[error("unsupported wasm feature: {feature} (at offset {offset:#x})")]
    Unsupported {
        /// Byte offset of the first use.
        offset: usize,
        /// The feature, as the validator names it (e.g. "SIMD support is not enabled").
        feature: String,
    },
    /// The text format could not be parsed.
    #[error("invalid wat: {0}")]
    Wat(String),
    /// The bytes are neither the binary format (no `\0asm` magic) nor text (not UTF-8).
    #[error(
        "not a WebAssembly module: no binary `\\0asm` header, and not text (invalid UTF-8 at \
         byte {utf8_error_at:#x})"
    )]
    NotWasm {
        /// Where the bytes stop being UTF-8.
        utf8_error_at: usize,
    },
}

impl ModuleError {
    fn from_validator(e: wasmparser::BinaryReaderError) -> Self {
        Self::classify(e.offset(), e.message().to_string())
    }

    /// A validator message at `offset`, as an unsupported feature or as invalid input.
    pub fn classify(offset: usize, message: String) -> Self {
        // The validator phrases every disabled proposal as "... support is not enabled";
        // name it as a feature framewalk lacks rather than as broken input.
        if message.contains("support is not enabled") || message.contains("proposal not enabled") {
            ModuleError::Unsupported {
                offset,
                feature: message,
            }
        } else {
            ModuleError::Invalid { offset, message }
        }
    }
}

/// The WebAssembly features framewalk compiles: 2.0 (SIMD included), relaxed SIMD,
/// extended-const, multi-memory, memory64 (64-bit memories; its 64-bit tables are
/// refused by name when read) and tail calls.
pub fn supported_features() -> WasmFeatures {
    WasmFeatures::WASM2
        | WasmFeatures::RELAXED_SIMD
        | WasmFeatures::EXTENDED_CONST
        | WasmFeatures::MULTI_MEMORY
        | WasmFeatures::MEMORY64
        | WasmFeatures::TAIL_CALL
}

/// The proposals beyond [`supported_features`] a module may use, each with the
/// features that enable it (with those it builds on), in the order they are tried.
fn proposals() -> [(&'static str, WasmFeatures); 13] {
    use WasmFeatures as F;
    [
        ("multi-memory", F::MULTI_MEMORY),
        ("extended-const", F::EXTENDED_CONST),
        ("SIMD", F::SIMD),
        ("relaxed SIMD", F::SIMD | F::RELAXED_SIMD),
        ("tail calls", F::TAIL_CALL),
        ("memory64", F::MEMORY64),
        ("threads (shared memory, atomics)", F::THREADS),
        ("exceptions", F::EXCEPTIONS),
        ("legacy exceptions", F::LEGACY_EXCEPTIONS),
        ("function references", F::FUNCTION_REFERENCES),
        ("GC", F::GC | F::FUNCTION_REFERENCES),
        ("custom page sizes", F::CUSTOM_PAGE_SIZES),
        (
            "shared-everything threads",
            F::SHARED_EVERYTHING_THREADS | F::THREADS,
        ),
    ]
}

/// Whether `wasm` validates with `features` (every function body included).
fn validates_with(wasm: &[u8], features: WasmFeatures) -> bool {
    Validator::new_with_features(features)
        .validate_all(wasm)
        .is_ok()
}

/// Why a module that failed to validate with `features` failed: if it is
/// valid with some proposal wasmparser knows, the proposal it needs (the first of
/// the proposals framewalk knows of that makes it valid, or several together), as
/// [`ModuleError::Unsupported`] at the offset of the first error; if it is invalid
/// under every proposal, [`ModuleError::Invalid`] with the reason the validator gives
/// with all of them enabled; if it is valid as it is, `error` unchanged (a limit of
/// framewalk's own). Only the error path pays for the extra validations.
pub fn name_the_missing_proposal(
    wasm: &[u8],
    features: WasmFeatures,
    error: ModuleError,
) -> ModuleError {
    let offset = match &error {
        ModuleError::Invalid { offset, .. } | ModuleError::Unsupported { offset, .. } => *offset,
        ModuleError::Wat(_) | ModuleError::NotWasm { .. } => return error,
    };
    // Valid as it is: the error is a limit of framewalk's own, nothing to name.
    if validates_with(wasm, features) {
        return error;
    }
    // Invalid under every proposal: say why with all of them enabled (with fewer, the
    // validator may blame a disabled proposal for what is an error in any case).
    if let Err(e) = Validator::new_with_features(WasmFeatures::all()).validate_all(wasm) {
        return ModuleError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        };
    }
    let feature = proposals()
        .into_iter()
        .find(|(_, needs)| validates_with(wasm, features | *needs))
        .map_or("several post-2.0 proposals together".into(), |(name, _)| {
            name.into()
        });
    ModuleError::Unsupported { offset, feature }
}

/// A constant expression: one instruction, as WebAssembly 2.0 allows, or (extended-const)
/// a short program of integer arithmetic over constants and global reads.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstExpr {
    /// `i32.const`
    I32(i32),
    /// `i64.const`
    I64(i64),
    /// `f32.const`, as bits.
    F32(u32),
    /// `f64.const`, as bits.
    F64(u64),
    /// `v128.const`, as its bits (little-endian, lane 0 lowest).
    V128(u128),
    /// `ref.null`
    RefNull,
    /// `ref.func`
    RefFunc(u32),
    /// `global.get` of an (imported) global.
    GlobalGet(u32),
    /// Several instructions (the extended-const proposal), in order, run on a stack; the
    /// validator checked that they leave exactly one value of the right type.
    Program(Box<[ConstOp]>),
}

/// One instruction of an extended constant expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConstOp {
    /// `i32.const`
    I32(i32),
    /// `i64.const`
    I64(i64),
    /// `global.get` of an (imported) integer global.
    GlobalGet(u32),
    /// `i32.add`, `i32.sub`, `i32.mul` (wrapping).
    I32Add,
    /// `i32.sub`
    I32Sub,
    /// `i32.mul`
    I32Mul,
    /// `i64.add`, `i64.sub`, `i64.mul` (wrapping).
    I64Add,
    /// `i64.sub`
    I64Sub,
    /// `i64.mul`
    I64Mul,
}

/// What an import provides.
#[derive(Clone, Debug)]
pub enum ImportKind {
    /// A function of the given module type index.
    Func(u32),
    /// A table.
    Table(TableType),
    /// A memory.
    Memory(MemoryType),
    /// A global.
    Global(GlobalType),
}

/// One import.
#[derive(Clone, Debug)]
pub struct Import {
    /// Module name.
    pub module: String,
    /// Field name.
    pub name: String,
    /// What is imported.
    pub kind: ImportKind,
}

/// What an export refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportIndex {
    /// A function index.
    Func(u32),
    /// A table index.
    Table(u32),
    /// A memory index.
    Memory(u32),
    /// A global index.
    Global(u32),
}

/// Where an element segment goes.
#[derive(Clone, Debug)]
pub enum SegmentMode {
    /// Copied into a table (or memory) at instantiation.
    Active {
        /// Table or memory index.
        index: u32,
        /// Where in it.
        offset: ConstExpr,
    },
    /// Used by `table.init` / `memory.init`.
    Passive,
    /// Only declares functions for `ref.func`; dropped at instantiation.
    Declared,
}

/// An element segment.
#[derive(Clone, Debug)]
pub struct ElementSegment {
    /// Where it goes.
    pub mode: SegmentMode,
    /// Element type.
    pub ty: ValType,
    /// The elements.
    pub items: Vec<ConstExpr>,
}

/// A data segment.
#[derive(Clone, Debug)]
pub struct DataSegment {
    /// Where it goes.
    pub mode: SegmentMode,
    /// Byte range of the contents inside the module's wasm bytes.
    pub range: Range<usize>,
}

/// Everything the runtime needs to know about a module, without its code.
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    /// Module name from the name section.
    pub name: Option<String>,
    /// Whether the module has DWARF custom sections (`.debug_*`): only then can its
    /// frames have source lines.
    pub has_dwarf: bool,
    /// Function types, by module type index.
    pub types: Vec<FuncType>,
    /// Imports, in order.
    pub imports: Vec<Import>,
    /// Type index of every function (imported first).
    pub functions: Vec<u32>,
    /// Every table (imported first).
    pub tables: Vec<TableType>,
    /// Initial value of each defined table's elements, if not null.
    pub table_inits: Vec<Option<ConstExpr>>,
    /// Every memory (imported first).
    pub memories: Vec<MemoryType>,
    /// Every global's type (imported first).
    pub globals: Vec<GlobalType>,
    /// Initializers of defined globals.
    pub global_inits: Vec<ConstExpr>,
    /// Exports by name, in declaration order.
    pub exports: Vec<(String, ExportIndex)>,
    /// The start function.
    pub start: Option<u32>,
    /// Element segments.
    pub elements: Vec<ElementSegment>,
    /// Data segments.
    pub data: Vec<DataSegment>,
    /// Function names from the name section.
    pub func_names: HashMap<u32, String>,
    /// Number of imported functions.
    pub num_imported_funcs: u32,
    /// Number of imported tables.
    pub num_imported_tables: u32,
    /// Number of imported memories.
    pub num_imported_memories: u32,
    /// Number of imported globals.
    pub num_imported_globals: u32,
}

impl ModuleInfo {
    /// The type of function `index`.
    pub fn func_type(&self, index: u32) -> &FuncType {
        &self.types[self.functions[index as usize] as usize]
    }

    /// A fingerprint of what compiled code depends on in this module. The artifact
    /// header records it at compile time and the loader compares it with the one of
    /// the wasm it re-reads, so the embedded wasm cannot describe other signatures or
    /// another vmctx layout than the code was compiled for.
    pub fn interface_fingerprint(&self) -> u64 {
        // Everything compiled code assumes about the module: the signatures it was
        // compiled with, the vmctx layout (the counts and kinds of imports, tables,
        // memories, globals), what instantiation writes there (initializers, segments)
        // and the start function. Names, exports and DWARF are not in it: the runtime
        // reads them from the wasm consistently whatever they are. Debug output of
        // these plain data types is deterministic (no hash maps).
        let interface = format!(
            "{:?}",
            (
                &self.types,
                &self.imports,
                &self.functions,
                &self.tables,
                &self.table_inits,
                &self.memories,
                &self.globals,
                &self.global_inits,
                self.start,
                &self.elements,
                &self.data,
                (
                    self.num_imported_funcs,
                    self.num_imported_tables,
                    self.num_imported_memories,
                    self.num_imported_globals,
                ),
            )
        );
        crate::artifact::sections::fnv1a(&[interface.as_bytes()])
    }

    /// Number of functions defined (not imported) by the module.
    pub fn num_defined_funcs(&self) -> u32 {
        self.functions.len() as u32 - self.num_imported_funcs
    }

    /// Functions that can be called from the host: exported, placed in a table, named by
    /// `ref.func` in a constant expression, or the start function. Only these need an
    /// entry trampoline. Sorted and deduplicated.
    pub fn escaping_functions(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (_, e) in &self.exports {
            if let ExportIndex::Func(f) = e {
                out.push(*f);
            }
        }
        let consts = self
            .elements
            .iter()
            .flat_map(|e| e.items.iter())
            .chain(self.global_inits.iter())
            .chain(self.table_inits.iter().flatten());
        for c in consts {
            if let ConstExpr::RefFunc(f) = c {
                out.push(*f);
            }
        }
        out.extend(self.start);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A function body waiting to be compiled, with its validator.
pub struct FunctionToCompile<'a> {
    /// The function's index (in the space that includes imports).
    pub index: u32,
    /// Its body.
    pub body: FunctionBody<'a>,
    /// Its validator; `None` when parsing without validation.
    pub validator: FuncToValidate<ValidatorResources>,
}

/// Converts a wasmparser value type, rejecting what framewalk does not support.
fn val_type(ty: wasmparser::ValType, offset: usize) -> Result<ValType, ModuleError> {
    use wasmparser::ValType as V;
    Ok(match ty {
        V::I32 => ValType::I32,
        V::I64 => ValType::I64,
        V::F32 => ValType::F32,
        V::F64 => ValType::F64,
        V::V128 => ValType::V128,
        V::Ref(r) if r == wasmparser::RefType::FUNCREF => ValType::FuncRef,
        V::Ref(r) if r == wasmparser::RefType::EXTERNREF => ValType::ExternRef,
        V::Ref(r) => {
            return Err(ModuleError::Unsupported {
                offset,
                feature: format!("reference type {r}"),
            })
        }
    })
}

/// The framewalk type of a wasmparser value type, if supported.
pub fn val_type_of(ty: wasmparser::ValType) -> Option<ValType> {
    val_type(ty, 0).ok()
}

fn ref_type(r: wasmparser::RefType, offset: usize) -> Result<ValType, ModuleError> {
    val_type(wasmparser::ValType::Ref(r), offset)
}

fn table_type(t: &wasmparser::TableType, offset: usize) -> Result<TableType, ModuleError> {
    // The validator accepts 64-bit tables with memory64; framewalk's tables are 32-bit
    // (their limits then fit a u32, which the validator checked).
    if t.table64 {
        return Err(ModuleError::Unsupported {
            offset,
            feature: "64-bit tables (table64)".into(),
        });
    }
    Ok(TableType {
        element: ref_type(t.element_type, offset)?,
        limits: Limits {
            min: t.initial,
            max: t.maximum,
        },
    })
}

fn memory_type(m: &wasmparser::MemoryType, offset: usize) -> Result<MemoryType, ModuleError> {
    // Both are refused by validation before this runs (framewalk never enables their
    // features); kept so that the reader is total on its own.
    if m.shared {
        return Err(ModuleError::Unsupported {
            offset,
            feature: "threads (shared memory, atomics)".into(),
        });
    }
    if m.page_size_log2.is_some() {
        return Err(ModuleError::Unsupported {
            offset,
            feature: "custom page sizes".into(),
        });
    }
    Ok(MemoryType {
        limits: Limits {
            min: m.initial,
            max: m.maximum,
        },
        is_64: m.memory64,
    })
}

fn global_type(g: &wasmparser::GlobalType, offset: usize) -> Result<GlobalType, ModuleError> {
    Ok(GlobalType {
        content: val_type(g.content_type, offset)?,
        mutable: g.mutable,
    })
}

fn const_expr(e: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, ModuleError> {
    let mut reader = e.get_operators_reader();
    let offset = reader.original_position();
    let err = |e: wasmparser::BinaryReaderError| ModuleError::from_validator(e);
    let unsupported = || ModuleError::Unsupported {
        offset,
        feature: "this constant expression".into(),
    };
    let first = match reader.read().map_err(err)? {
        Operator::I32Const { value } => ConstExpr::I32(value),
        Operator::I64Const { value } => ConstExpr::I64(value),
        Operator::F32Const { value } => ConstExpr::F32(value.bits()),
        Operator::F64Const { value } => ConstExpr::F64(value.bits()),
        Operator::V128Const { value } => ConstExpr::V128(value.i128() as u128),
        Operator::RefNull { .. } => ConstExpr::RefNull,
        Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
        Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
        _ => return Err(unsupported()),
    };
    let mut program = Vec::new();
    loop {
        let op = reader.read().map_err(err)?;
        if program.is_empty() {
            if let Operator::End = op {
                return Ok(first);
            }
            // More than one instruction: extended-const, integers only.
            program.push(match first {
                ConstExpr::I32(v) => ConstOp::I32(v),
                ConstExpr::I64(v) => ConstOp::I64(v),
                ConstExpr::GlobalGet(g) => ConstOp::GlobalGet(g),
                _ => return Err(unsupported()),
            });
        }
        program.push(match op {
            Operator::End => return Ok(ConstExpr::Program(program.into_boxed_slice())),
            Operator::I32Const { value } => ConstOp::I32(value),
            Operator::I64Const { value } => ConstOp::I64(value),
            Operator::GlobalGet { global_index } => ConstOp::GlobalGet(global_index),
            Operator::I32Add => ConstOp::I32Add,
            Operator::I32Sub => ConstOp::I32Sub,
            Operator::I32Mul => ConstOp::I32Mul,
            Operator::I64Add => ConstOp::I64Add,
            Operator::I64Sub => ConstOp::I64Sub,
            Operator::I64Mul => ConstOp::I64Mul,
            _ => return Err(unsupported()),
        });
    }
}

/// Parses text or binary input into wasm bytes.
pub fn wat_to_wasm(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ModuleError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.into());
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ModuleError::NotWasm {
            utf8_error_at: e.valid_up_to(),
        });
    }
    wat::parse_bytes(bytes).map_err(|e| ModuleError::Wat(e.to_string()))
}

/// Validates and reads a module. Function bodies are returned for compilation (their
/// validation happens as they are translated). A module that is valid only with a
/// proposal framewalk does not implement is [`ModuleError::Unsupported`], naming it.
pub fn parse(wasm: &[u8]) -> Result<(ModuleInfo, Vec<FunctionToCompile<'_>>), ModuleError> {
    parse_with(wasm, supported_features())
}

/// [`parse`] with `features` (a subset of [`supported_features`]) enabled.
pub fn parse_with(
    wasm: &[u8],
    features: WasmFeatures,
) -> Result<(ModuleInfo, Vec<FunctionToCompile<'_>>), ModuleError> {
    let features = features & supported_features();
    parse_module(wasm, features).map_err(|e| name_the_missing_proposal(wasm, features, e))
}

fn parse_module(
    wasm: &[u8],
    features: WasmFeatures,
) -> Result<(ModuleInfo, Vec<FunctionToCompile<'_>>), ModuleError> {
    let mut validator = Validator::new_with_features(features);
    let mut info = ModuleInfo::default();
    let mut bodies = Vec::new();
    let err = ModuleError::from_validator;
    let mut parser = Parser::new(0);
    // The readers must decode with the same features the validator enforces (e.g. a
    // memarg offset is a u32 without memory64).
    parser.set_features(features);
    for payload in parser.parse_all(wasm) {
        let payload = payload.map_err(err)?;
        match validator.payload(&payload).map_err(err)? {
            wasmparser::ValidPayload::Ok => {}
            wasmparser::ValidPayload::Func(validator, body) => {
                let index = info.num_imported_funcs + bodies.len() as u32;
                bodies.push(FunctionToCompile {
                    index,
                    body,
                    validator,
                });
                continue;
            }
            wasmparser::ValidPayload::Parser(_) | wasmparser::ValidPayload::End(_) => {}
        }
        read_payload(&mut info, payload)?;
    }
    Ok((info, bodies))
}

fn read_payload(info: &mut ModuleInfo, payload: Payload<'_>) -> Result<(), ModuleError> {
    let err = ModuleError::from_validator;
    match payload {
        Payload::TypeSection(reader) => {
            for group in reader {
                let group = group.map_err(err)?;
                for (offset, sub) in group.into_types_and_offsets() {
                    match &sub.composite_type.inner {
                        CompositeInnerType::Func(f) => {
                            let params = f
                                .params()
                                .iter()
                                .map(|t| val_type(*t, offset))
                                .collect::<Result<Vec<_>, _>>()?;
                            let results = f
                                .results()
                                .iter()
                                .map(|t| val_type(*t, offset))
                                .collect::<Result<Vec<_>, _>>()?;
                            info.types.push(FuncType::new(params, results));
                        }
                        _ => {
                            return Err(ModuleError::Unsupported {
                                offset,
                                feature: "GC types".into(),
                            })
                        }
                    }
                }
            }
        }
        Payload::ImportSection(reader) => {
            for import in reader.into_iter_with_offsets() {
                let (offset, import) = import.map_err(err)?;
                let kind = match import.ty {
                    TypeRef::Func(t) => {
                        info.functions.push(t);
                        info.num_imported_funcs += 1;
                        ImportKind::Func(t)
                    }
                    TypeRef::Table(t) => {
                        let t = table_type(&t, offset)?;
                        info.tables.push(t);
                        info.num_imported_tables += 1;
                        ImportKind::Table(t)
                    }
                    TypeRef::Memory(m) => {
                        let m = memory_type(&m, offset)?;
                        info.memories.push(m);
                        info.num_imported_memories += 1;
                        ImportKind::Memory(m)
                    }
                    TypeRef::Global(g) => {
                        let g = global_type(&g, offset)?;
                        info.globals.push(g);
                        info.num_imported_globals += 1;
                        ImportKind::Global(g)
                    }
                    TypeRef::Tag(_) => {
                        return Err(ModuleError::Unsupported {
                            offset,
                            feature: "exception handling".into(),
                        })
                    }
                };
                info.imports.push(Import {
                    module: import.module.to_string(),
                    name: import.name.to_string(),
                    kind,
                });
            }
        }
        Payload::FunctionSection(reader) => {
            for t in reader {
                info.functions.push(t.map_err(err)?);
            }
        }
        Payload::TableSection(reader) => {
            for table in reader.into_iter_with_offsets() {
                let (offset, table) = table.map_err(err)?;
                info.tables.push(table_type(&table.ty, offset)?);
                info.table_inits.push(match &table.init {
                    TableInit::RefNull => None,
                    TableInit::Expr(e) => Some(const_expr(e)?),
                });
            }
        }
        Payload::MemorySection(reader) => {
            for m in reader.into_iter_with_offsets() {
                let (offset, m) = m.map_err(err)?;
                info.memories.push(memory_type(&m, offset)?);
            }
        }
        Payload::GlobalSection(reader) => {
            for g in reader.into_iter_with_offsets() {
                let (offset, g) = g.map_err(err)?;
                info.globals.push(global_type(&g.ty, offset)?);
                info.global_inits.push(const_expr(&g.init_expr)?);
            }
        }
        Payload::ExportSection(reader) => {
            for e in reader {
                let e = e.map_err(err)?;
                let index = match e.kind {
                    ExternalKind::Func => ExportIndex::Func(e.index),
                    ExternalKind::Table => ExportIndex::Table(e.index),
                    ExternalKind::Memory => ExportIndex::Memory(e.index),
                    ExternalKind::Global => ExportIndex::Global(e.index),
                    ExternalKind::Tag => {
                        return Err(ModuleError::Unsupported {
                            offset: 0,
                            feature: "exception handling".into(),
                        })
                    }
                };
                info.exports.push((e.name.to_string(), index));
            }
        }
        Payload::StartSection { func, .. } => info.start = Some(func),
        Payload::ElementSection(reader) => {
            for e in reader.into_iter_with_offsets() {
                let (offset, e) = e.map_err(err)?;
                let mode = match e.kind {
                    ElementKind::Passive => SegmentMode::Passive,
                    ElementKind::Declared => SegmentMode::Declared,
                    ElementKind::Active {
                        table_index,
                        offset_expr,
                    } => SegmentMode::Active {
                        index: table_index.unwrap_or(0),
                        offset: const_expr(&offset_expr)?,
                    },
                };
                let (ty, items) = match e.items {
                    ElementItems::Functions(funcs) => (
                        ValType::FuncRef,
                        funcs
                            .into_iter()
                            .map(|f| f.map(ConstExpr::RefFunc).map_err(err))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    ElementItems::Expressions(ty, exprs) => (
                        ref_type(ty, offset)?,
                        exprs
                            .into_iter()
                            .map(|e| const_expr(&e.map_err(err)?))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                };
                info.elements.push(ElementSegment { mode, ty, items });
            }
        }
        Payload::DataSection(reader) => {
            for d in reader {
                let d = d.map_err(err)?;
                let mode = match d.kind {
                    DataKind::Passive => SegmentMode::Passive,
                    DataKind::Active {
                        memory_index,
                        offset_expr,
                    } => SegmentMode::Active {
                        index: memory_index,
                        offset: const_expr(&offset_expr)?,
                    },
                };
                let end = d.range.end;
                let start = end - d.data.len();
                info.data.push(DataSegment {
                    mode,
                    range: start..end,
                });
            }
        }
        Payload::CustomSection(reader) => {
            info.has_dwarf |= reader.name().starts_with(".debug_");
            if let KnownCustom::Name(names) = reader.as_known() {
                // A malformed name section is ignored, as the spec requires of custom sections.
                let _ = read_names(info, names);
            }
        }
        _ => {}
    }
    Ok(())
}

fn read_names(
    info: &mut ModuleInfo,
    names: wasmparser::NameSectionReader<'_>,
) -> Result<(), wasmparser::BinaryReaderError> {
    for name in names {
        match name? {
            Name::Module { name, .. } => info.name = Some(name.to_string()),
            Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    info.func_names
                        .insert(naming.index, naming.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The error of loading `wat` with framewalk's engine (module and function bodies
    /// validated, as every load does).
    fn error_of(wat: &str) -> String {
        let engine = crate::Engine::new(Default::default()).unwrap();
        match crate::Module::new(&engine, wat.as_bytes()) {
            Ok(_) => panic!("{wat}: accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// A valid module that needs a proposal framewalk does not implement is refused
    /// naming that proposal, never as invalid wasm, whether the proposal shows in the
    /// module's sections or only in a function body.
    #[test]
    fn modules_needing_a_proposal_name_it() {
        for (wat, proposal) in [
            ("(module (table i64 1 funcref))", "64-bit tables (table64)"),
            (
                "(module (memory 1 1 shared))",
                "threads (shared memory, atomics)",
            ),
            ("(module (memory 1 (pagesize 1)))", "custom page sizes"),
            ("(module (tag $t) (func (throw $t)))", "exceptions"),
            ("(module (type (struct (field i32))))", "GC"),
            ("(module (func (param (ref func))))", "function references"),
        ] {
            let e = error_of(wat);
            assert!(
                e.contains(&format!(
                    "unsupported wasm feature: {proposal} (at offset 0x"
                )),
                "{wat}: {e}"
            );
        }
    }

    /// A proposal turned off in the engine's `Config` is refused by name, like one
    /// framewalk does not implement; on (the default), the same module loads.
    #[test]
    fn proposals_turned_off_are_refused_by_name() {
        let engine = crate::Engine::new(crate::Config {
            wasm_multi_memory: false,
            wasm_extended_const: false,
            wasm_memory64: false,
            wasm_tail_call: false,
            wasm_simd: false,
            ..Default::default()
        })
        .unwrap();
        for (wat, proposal) in [
            (
                "(module (func (result v128) (v128.const i64x2 0 0)))",
                "SIMD",
            ),
            ("(module (global v128 (v128.const i32x4 1 2 3 4)))", "SIMD"),
            (
                "(module (func $f (result i32) (return_call $f)))",
                "tail calls",
            ),
            ("(module (memory 1) (memory 1))", "multi-memory"),
            ("(module (memory i64 1))", "memory64"),
            (
                "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
                "extended-const",
            ),
        ] {
            let e = crate::Module::new(&engine, wat.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{wat}: accepted"))
                .to_string();
            assert!(
                e.contains(&format!(
                    "unsupported wasm feature: {proposal} (at offset 0x"
                )),
                "{wat}: {e}"
            );
            let default = crate::Engine::new(Default::default()).unwrap();
            assert!(
                crate::Module::new(&default, wat.as_bytes()).is_ok(),
                "{wat}"
            );
        }
    }

    /// Relaxed SIMD turned off alone: its operators are refused by name, plain SIMD
    /// still loads.
    #[test]
    fn relaxed_simd_turned_off_is_refused_by_name() {
        let engine = crate::Engine::new(crate::Config {
            wasm_relaxed_simd: false,
            ..Default::default()
        })
        .unwrap();
        let relaxed = "(module (func (param v128) (result v128) \
                       (i32x4.relaxed_trunc_f32x4_s (local.get 0))))";
        let Err(e) = crate::Module::new(&engine, relaxed.as_bytes()) else {
            panic!("relaxed SIMD accepted with it off");
        };
        let e = e.to_string();
        assert!(
            e.contains("unsupported wasm feature: relaxed SIMD (at offset 0x"),
            "{e}"
        );
        let plain = "(module (func (param v128) (result v128) \
                     (i32x4.trunc_sat_f32x4_s (local.get 0))))";
        assert!(crate::Module::new(&engine, plain.as_bytes()).is_ok());
    }

    /// Invalid under every proposal stays invalid.
    #[test]
    fn invalid_modules_stay_invalid() {
        for wat in [
            "(module (func (result i32) (i64.const 0)))",
            "(module (func (result i32) (return_call 7)))",
        ] {
            let e = error_of(wat);
            assert!(e.contains("invalid wasm at offset"), "{wat}: {e}");
            assert!(!e.contains("unsupported"), "{wat}: {e}");
        }
    }
}
