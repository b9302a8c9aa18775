//! wasm → Cranelift IR → x86-64 machine code.
//!
//! [`compile_module`] validates a module, translates each function body with
//! `cranelift-wasm` through [`environ::FuncEnv`], compiles it with `cranelift-codegen`
//! (`opt_level=speed`, `preserve_frame_pointers=true`, `unwind_info=true`), adds an
//! entry trampoline for every function the host can reach, and lays everything out in
//! one text section with the metadata the artifact stores beside it: the function
//! table, relocations, trap sites, the address map, the stack maps and the `.eh_frame`
//! CFI ([`unwind`]).
//!
//! Every function is 16-byte aligned in the text; all offsets in [`CompiledModule`] are
//! relative to the start of the text.

pub mod environ;
pub mod libcall;
pub mod module_info;
pub mod trampoline;
pub mod unwind;

use crate::runtime::vmcontext::VMOffsets;
use crate::stackmap::cranelift::function_safepoints;
use crate::stackmap::Safepoint;
use crate::trap::TrapCode;
use cranelift_codegen::ir::{self, ExternalName};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{binemit::Reloc, control::ControlPlane, Context, FinalizedRelocTarget};
use cranelift_wasm::FuncTranslator;
use libcall::Libcall;
use module_info::{ModuleError, ModuleInfo};

/// Why compilation failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The module is invalid or uses an unsupported feature.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// Translation to Cranelift IR failed (an unsupported construct).
    #[error("function {func_index}: {message}")]
    Translate {
        /// The function.
        func_index: u32,
        /// What went wrong.
        message: String,
    },
    /// Cranelift failed to compile a function.
    #[error("function {func_index}: code generation failed: {message}")]
    Codegen {
        /// The function.
        func_index: u32,
        /// What went wrong.
        message: String,
    },
    /// The module is too large for framewalk's 32-bit offsets.
    #[error("module too large: {0}")]
    TooLarge(&'static str),
    /// The host ISA is not supported.
    #[error("unsupported host: {0}")]
    Host(String),
}

/// Builds the Cranelift ISA for the host with framewalk's flags.
pub fn host_isa() -> Result<OwnedTargetIsa, CompileError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| CompileError::Host(format!("setting {k}={v}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    // The walker follows the frame-pointer chain: every frame must keep one.
    set(&mut flags, "preserve_frame_pointers", "true")?;
    set(&mut flags, "enable_probestack", "false")?;
    // System V CFI for every function, written to the artifact's `.eh_frame` (see
    // `unwind`) for debuggers, profilers and the tests' cross-check of the walker. The
    // walker itself never reads it.
    set(&mut flags, "unwind_info", "true")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let builder = cranelift_native::builder().map_err(|e| CompileError::Host(e.to_string()))?;
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| CompileError::Host(e.to_string()))
}

/// Address-map value for code that belongs to no wasm instruction.
pub const NO_WASM_OFFSET: u32 = u32::MAX;

/// How a relocation patches the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocKind {
    /// 8-byte absolute address.
    Abs8,
    /// 4-byte PC-relative (`call rel32`): target + addend - patch address.
    PcRel4,
}

/// What a relocation points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocTarget {
    /// A wasm function's body in the same text.
    WasmFunc(u32),
    /// A framewalk libcall.
    Libcall(Libcall),
    /// A Cranelift float helper, by symbol.
    ClifLibcall(&'static str),
}

/// One relocation in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset in the text of the bytes to patch.
    pub offset: u32,
    /// How to patch.
    pub kind: RelocKind,
    /// The target.
    pub target: RelocTarget,
    /// Added to the target address.
    pub addend: i64,
}

/// One compiled wasm function in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionRecord {
    /// Function index (imports included in the index space).
    pub func_index: u32,
    /// Offset of its body.
    pub offset: u32,
    /// Length of its body.
    pub len: u32,
    /// Offset of its entry trampoline, if it escapes to the host.
    pub entry_trampoline: Option<(u32, u32)>,
}

/// Everything compilation produces; the artifact writer turns it into an ELF object.
#[derive(Debug)]
pub struct CompiledModule {
    /// Machine code of all functions and trampolines.
    pub text: Vec<u8>,
    /// Defined functions, ordered by function index.
    pub functions: Vec<FunctionRecord>,
    /// Relocations to apply at load.
    pub relocs: Vec<Relocation>,
    /// Trap sites (text offset, code), sorted by offset.
    pub traps: Vec<(u32, TrapCode)>,
    /// Text offset → wasm bytecode offset, sorted by text offset.
    pub address_map: Vec<(u32, u32)>,
    /// Stack maps, sorted by return offset.
    pub stack_maps: Vec<Safepoint>,
    /// The original wasm binary.
    pub wasm: Vec<u8>,
    /// Function names, by function index.
    pub names: Vec<(u32, String)>,
    /// The `.eh_frame` section: a CIE and one FDE per function and entry trampoline,
    /// valid where the loader places it (see [`unwind`]).
    pub eh_frame: Vec<u8>,
    /// [`ModuleInfo::interface_fingerprint`] of the module the code was compiled for.
    pub interface: u64,
}

/// One function's compiled code and metadata, offsets relative to the function.
struct FunctionCode {
    body: Vec<u8>,
    relocs: Vec<Relocation>,
    traps: Vec<(u32, TrapCode)>,
    srclocs: Vec<(u32, u32)>,
    stack_maps: Vec<Safepoint>,
    unwind: Option<cranelift_codegen::isa::unwind::UnwindInfo>,
}

/// Compiles one Cranelift function, mapping its relocations through `names`.
fn compile_function(
    isa: &dyn TargetIsa,
    func: ir::Function,
    func_index: u32,
) -> Result<FunctionCode, CompileError> {
    let mut ctx = Context::for_function(func);
    let codegen_err = |message: String| CompileError::Codegen {
        func_index,
        message,
    };
    ctx.compile(isa, &mut ControlPlane::default())
        .map_err(|e| codegen_err(format!("{:?}", e.inner)))?;
    let compiled = ctx
        .compiled_code()
        .ok_or_else(|| codegen_err("no code".into()))?;
    let buffer = &compiled.buffer;

    let mut relocs = Vec::new();
    for r in buffer.relocs() {
        let kind = match r.kind {
            Reloc::Abs8 => RelocKind::Abs8,
            Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => RelocKind::PcRel4,
            other => return Err(codegen_err(format!("unexpected relocation {other:?}"))),
        };
        let target = match &r.target {
            FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
                let name = &ctx.func.params.user_named_funcs()[*name];
                match name.namespace {
                    environ::NS_WASM_FUNC => RelocTarget::WasmFunc(name.index),
                    environ::NS_LIBCALL => RelocTarget::Libcall(
                        Libcall::ALL
                            .get(name.index as usize)
                            .copied()
                            .ok_or_else(|| codegen_err("bad libcall".into()))?,
                    ),
                    _ => return Err(codegen_err("bad relocation namespace".into())),
                }
            }
            FinalizedRelocTarget::ExternalName(ExternalName::LibCall(lc)) => {
                RelocTarget::ClifLibcall(
                    libcall::clif_libcall_symbol(*lc)
                        .ok_or_else(|| codegen_err(format!("unsupported libcall {lc:?}")))?,
                )
            }
            other => {
                return Err(codegen_err(format!(
                    "unexpected relocation target {other:?}"
                )))
            }
        };
        relocs.push(Relocation {
            offset: r.offset,
            kind,
            target,
            addend: r.addend,
        });
    }
    let mut traps = Vec::new();
    for t in buffer.traps() {
        let code = TrapCode::from_clif(t.code)
            .ok_or_else(|| codegen_err(format!("unexpected trap code {:?}", t.code)))?;
        traps.push((t.offset, code));
    }
    // Address map entries cover each source-location range from its start; code with
    // no wasm instruction (prologue checks, trap islands, gaps) gets an explicit
    // `NO_WASM_OFFSET` entry so that a lookup never borrows a neighbour's offset.
    let mut srclocs: Vec<(u32, u32)> = Vec::new();
    for s in buffer.get_srclocs_sorted() {
        let loc = if s.loc.is_default() {
            NO_WASM_OFFSET
        } else {
            s.loc.bits()
        };
        match srclocs.last_mut() {
            Some(last) if last.0 == s.start => last.1 = loc,
            _ => srclocs.push((s.start, loc)),
        }
        srclocs.push((s.end, NO_WASM_OFFSET));
    }
    srclocs.dedup_by(|next, prev| prev.1 == next.1);
    let stack_maps = function_safepoints(buffer.user_stack_maps()).collect();
    let unwind = compiled
        .create_unwind_info(isa)
        .map_err(|e| codegen_err(format!("unwind info: {e:?}")))?;
    Ok(FunctionCode {
        body: buffer.data().to_vec(),
        relocs,
        traps,
        srclocs,
        stack_maps,
        unwind,
    })
}

/// Compiles a function with no relocations (an exit trampoline) and returns its code.
pub fn compile_standalone(
    isa: &dyn TargetIsa,
    func: ir::Function,
) -> Result<Vec<u8>, CompileError> {
    let code = compile_function(isa, func, u32::MAX)?;
    if !code.relocs.is_empty() {
        return Err(CompileError::Codegen {
            func_index: u32::MAX,
            message: "standalone code has relocations".into(),
        });
    }
    Ok(code.body)
}

/// Appends code into the text being laid out.
struct TextBuilder {
    module: CompiledModule,
    /// (text offset, CFI) of every appended function with unwind info.
    unwind: Vec<(u32, cranelift_codegen::isa::unwind::UnwindInfo)>,
}

impl TextBuilder {
    fn append(&mut self, code: FunctionCode) -> Result<(u32, u32), CompileError> {
        let text = &mut self.module.text;
        while !text.len().is_multiple_of(16) {
            text.push(0xcc); // int3 padding between functions
        }
        let start = u32::try_from(text.len()).map_err(|_| CompileError::TooLarge("text"))?;
        let len = u32::try_from(code.body.len()).map_err(|_| CompileError::TooLarge("function"))?;
        start
            .checked_add(len)
            .ok_or(CompileError::TooLarge("text"))?;
        text.extend_from_slice(&code.body);
        if let Some(info) = code.unwind {
            self.unwind.push((start, info));
        }
        let m = &mut self.module;
        m.relocs.extend(code.relocs.into_iter().map(|mut r| {
            r.offset += start;
            r
        }));
        m.traps
            .extend(code.traps.into_iter().map(|(o, c)| (o + start, c)));
        // An entry at the very end of the function would lie past its code.
        m.address_map.extend(
            code.srclocs
                .into_iter()
                .filter(|(o, _)| *o < len)
                .map(|(o, w)| (o + start, w)),
        );
        m.stack_maps
            .extend(code.stack_maps.into_iter().map(|mut s| {
                s.return_offset += start;
                s
            }));
        Ok((start, len))
    }
}

/// How code is generated, besides the wasm features accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodegenOptions {
    /// Check the store's epoch deadline at every function entry and loop header
    /// (`Config::epoch_interruption`).
    pub epoch_interruption: bool,
}

/// Validates and compiles a wasm module (binary or text).
pub fn compile_module(isa: &dyn TargetIsa, bytes: &[u8]) -> Result<CompiledModule, CompileError> {
    compile_module_with(
        isa,
        module_info::supported_features(),
        CodegenOptions::default(),
        bytes,
    )
}

/// [`compile_module`] with only `features` (a subset of
/// [`module_info::supported_features`]) enabled, and `options`.
pub fn compile_module_with(
    isa: &dyn TargetIsa,
    features: wasmparser::WasmFeatures,
    options: CodegenOptions,
    bytes: &[u8],
) -> Result<CompiledModule, CompileError> {
    let wasm = module_info::wat_to_wasm(bytes)?;
    let (info, bodies) = module_info::parse_with(&wasm, features)?;
    let offsets = vmoffsets(&info)?;

    let mut out = TextBuilder {
        module: CompiledModule {
            text: Vec::new(),
            functions: Vec::new(),
            relocs: Vec::new(),
            traps: Vec::new(),
            address_map: Vec::new(),
            stack_maps: Vec::new(),
            wasm: wasm.to_vec(),
            names: Vec::new(),
            eh_frame: Vec::new(),
            interface: info.interface_fingerprint(),
        },
        unwind: Vec::new(),
    };
    let codes =
        translate_and_compile(isa, &info, offsets, options, bodies).map_err(|e| match e {
            CompileError::Module(e) => {
                CompileError::Module(module_info::name_the_missing_proposal(&wasm, features, e))
            }
            other => other,
        })?;
    let escaping = info.escaping_functions();
    for (func_index, code) in codes {
        let (offset, len) = out.append(code)?;
        out.module.functions.push(FunctionRecord {
            func_index,
            offset,
            len,
            entry_trampoline: None,
        });
    }
    for f in escaping {
        if f < info.num_imported_funcs {
            continue;
        }
        let tramp = trampoline::entry_trampoline(f, info.func_type(f));
        let code = compile_function(isa, tramp, f)?;
        let range = out.append(code)?;
        let rec = &mut out.module.functions[(f - info.num_imported_funcs) as usize];
        rec.entry_trampoline = Some(range);
    }
    let mut names: Vec<(u32, String)> = info.func_names.clone().into_iter().collect();
    names.sort();
    out.module.names = names;
    out.module.eh_frame = unwind::build_eh_frame(isa, out.module.text.len(), &out.unwind)?;
    Ok(out.module)
}

/// The vmctx layout of a module.
pub fn vmoffsets(info: &ModuleInfo) -> Result<VMOffsets, CompileError> {
    let c = |n: usize| u32::try_from(n).map_err(|_| CompileError::TooLarge("index space"));
    VMOffsets::new(
        c(info.types.len())?,
        c(info.functions.len())?,
        c(info.memories.len())?,
        c(info.tables.len())?,
        c(info.globals.len())?,
    )
    .ok_or(CompileError::TooLarge("vmctx"))
}

/// Translates and compiles every body, using all cores; results are in function order.
fn translate_and_compile(
    isa: &dyn TargetIsa,
    info: &ModuleInfo,
    offsets: VMOffsets,
    options: CodegenOptions,
    bodies: Vec<module_info::FunctionToCompile<'_>>,
) -> Result<Vec<(u32, FunctionCode)>, CompileError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(bodies.len().max(1));
    let mut chunks: Vec<Vec<module_info::FunctionToCompile<'_>>> =
        (0..threads).map(|_| Vec::new()).collect();
    // Round-robin keeps large and small functions spread across threads.
    for (i, b) in bodies.into_iter().enumerate() {
        chunks[i % threads].push(b);
    }
    let results: Vec<Result<Vec<(u32, FunctionCode)>, CompileError>> = if threads <= 1 {
        // A panic inside Cranelift must not escape as a panic of the caller: the
        // threaded path below turns it into an error at `join`, and so does this one.
        chunks
            .into_iter()
            .map(|c| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compile_chunk(isa, info, offsets, options, c)
                }))
                .unwrap_or_else(|_| Err(CompileError::Host("the code generator panicked".into())))
            })
            .collect()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| s.spawn(move || compile_chunk(isa, info, offsets, options, c)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CompileError::Host("the code generator panicked".into()))
                    })
                })
                .collect()
        })
    };
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all)
}

/// Indices of the externref locals of a function (its parameters come first), and the
/// number of locals (parameters included).
fn externref_locals(
    ty: &crate::types::FuncType,
    body: &wasmparser::FunctionBody<'_>,
) -> Result<(Vec<u32>, u32), wasmparser::BinaryReaderError> {
    use crate::types::ValType;
    let mut out: Vec<u32> = (0..ty.params().len() as u32)
        .filter(|i| ty.params()[*i as usize] == ValType::ExternRef)
        .collect();
    let mut index = ty.params().len() as u32;
    for decl in body.get_locals_reader()? {
        let (count, t) = decl?;
        if module_info::val_type_of(t) == Some(ValType::ExternRef) {
            out.extend(index..index.saturating_add(count));
        }
        index = index.saturating_add(count);
    }
    Ok((out, index))
}

fn compile_chunk(
    isa: &dyn TargetIsa,
    info: &ModuleInfo,
    offsets: VMOffsets,
    options: CodegenOptions,
    bodies: Vec<module_info::FunctionToCompile<'_>>,
) -> Result<Vec<(u32, FunctionCode)>, CompileError> {
    let mut translator = FuncTranslator::new();
    let mut out = Vec::with_capacity(bodies.len());
    for body in bodies {
        let func_index = body.index;
        let ty = info.func_type(func_index);
        let mut func = ir::Function::with_name_signature(
            ir::UserFuncName::user(environ::NS_WASM_FUNC, func_index),
            environ::wasm_signature(ty),
        );
        let (ref_locals, num_locals) = externref_locals(ty, &body.body).map_err(|e| {
            CompileError::Module(ModuleError::classify(e.offset(), e.message().to_string()))
        })?;
        let mut env =
            environ::FuncEnv::new(isa, info, offsets, ty, ref_locals, num_locals, options);
        let mut validator = body.validator.into_validator(Default::default());
        translator
            .translate_body(&mut validator, body.body, &mut func, &mut env)
            .map_err(|e| match e {
                cranelift_wasm::WasmError::InvalidWebAssembly { message, offset } => {
                    CompileError::Module(ModuleError::classify(offset, message))
                }
                other => CompileError::Translate {
                    func_index,
                    message: other.to_string(),
                },
            })?;
        out.push((func_index, compile_function(isa, func, func_index)?));
    }
    Ok(out)
}
