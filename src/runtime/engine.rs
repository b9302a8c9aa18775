//! The engine: the code generator, the engine-wide type registry and the exit
//! trampolines for host functions. Cheap to clone (an `Arc`).

use super::code_memory::CodeMemory;
use crate::compile::{self, trampoline, CompileError};
use crate::types::FuncType;
use cranelift_codegen::isa::OwnedTargetIsa;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Maximum bytes of native stack wasm may use per host → wasm entry.
    pub max_wasm_stack: usize,
    /// Whether traps capture a wasm backtrace (default `true`). Off, a trap costs no
    /// walk at all and [`Trap::frames`](crate::Trap::frames) is empty.
    pub wasm_backtrace: bool,
    /// How many frames a trap's backtrace symbolizes, newest first (default 20, as
    /// Wasmtime); the frames beyond are only counted
    /// ([`Trap::omitted_frames`](crate::Trap::omitted_frames)). `None`: all of them.
    pub wasm_backtrace_max_frames: Option<NonZeroUsize>,
    /// Whether each module is described to GDB through its JIT interface when loaded
    /// (default `false`): a debugger then names wasm functions (`wasm[MODULE]::NAME`)
    /// and unwinds through them with their CFI. Costs one small in-memory ELF per
    /// module.
    pub gdb_jit: bool,
    /// Whether modules may have several memories (the multi-memory proposal; default
    /// `true`, as Wasmtime). Off, such a module is refused as needing it.
    pub wasm_multi_memory: bool,
    /// Whether constant expressions may compute (the extended-const proposal: integer
    /// add, sub and mul; default `true`, as Wasmtime).
    pub wasm_extended_const: bool,
    /// Whether memories may be 64-bit (the memory64 proposal: `i64` addresses and
    /// page counts; default `true`). Off, such a module is refused as needing it.
    /// framewalk's tables stay 32-bit: a 64-bit table is refused either way.
    pub wasm_memory64: bool,
    /// Whether functions may make tail calls (`return_call`, `return_call_indirect`;
    /// the tail-call proposal; default `true`, as Wasmtime). A tail call replaces its
    /// caller's frame: a backtrace shows the callee where the caller was.
    pub wasm_tail_call: bool,
    /// Whether modules may use 128-bit SIMD (`v128` and its operators; default
    /// `true`, as Wasmtime). Off, such a module is refused as needing it (and relaxed
    /// SIMD is off too, since it builds on SIMD).
    pub wasm_simd: bool,
    /// Whether modules may use relaxed SIMD (default `true`). Its operators whose
    /// results the specification leaves to the implementation (`relaxed_madd`,
    /// `relaxed_swizzle`, `relaxed_trunc`, ...) give, on one host, the same result
    /// every time: the instruction Cranelift picks for that host's CPU features.
    pub wasm_relaxed_simd: bool,
    /// Whether compiled code checks the engine's epoch at every function entry and loop
    /// header (default `false`: no check is compiled, and nothing is paid). On, a store
    /// whose deadline ([`Store::set_epoch_deadline`](crate::Store::set_epoch_deadline))
    /// the epoch reaches ([`Engine::increment_epoch`]) traps with
    /// [`TrapCode::Interrupt`](crate::TrapCode::Interrupt) and a backtrace: how a
    /// runaway guest is stopped from another thread. Artifacts record it: one compiled
    /// with it loads only into an engine with it, and the other way round.
    pub epoch_interruption: bool,
}

impl Config {
    /// The wasm features this configuration compiles.
    pub(crate) fn wasm_features(&self) -> wasmparser::WasmFeatures {
        use wasmparser::WasmFeatures as F;
        let mut features = crate::compile::module_info::supported_features();
        features.set(F::MULTI_MEMORY, self.wasm_multi_memory);
        features.set(F::EXTENDED_CONST, self.wasm_extended_const);
        features.set(F::MEMORY64, self.wasm_memory64);
        features.set(F::TAIL_CALL, self.wasm_tail_call);
        features.set(F::SIMD, self.wasm_simd);
        features.set(F::RELAXED_SIMD, self.wasm_simd && self.wasm_relaxed_simd);
        features
    }
}

/// The default of [`Config::wasm_backtrace_max_frames`].
pub const DEFAULT_WASM_BACKTRACE_MAX_FRAMES: NonZeroUsize = match NonZeroUsize::new(20) {
    Some(n) => n,
    None => unreachable!(),
};

impl Default for Config {
    fn default() -> Self {
        Config {
            max_wasm_stack: 512 * 1024,
            wasm_backtrace: true,
            wasm_backtrace_max_frames: Some(DEFAULT_WASM_BACKTRACE_MAX_FRAMES),
            gdb_jit: false,
            wasm_multi_memory: true,
            wasm_extended_const: true,
            wasm_memory64: true,
            wasm_tail_call: true,
            wasm_simd: true,
            wasm_relaxed_simd: true,
            epoch_interruption: false,
        }
    }
}

/// Compiles modules and owns what every store of it shares.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) isa: OwnedTargetIsa,
    pub(crate) isa_fingerprint: u64,
    pub(crate) config: Config,
    /// The epoch counter of [`Engine::increment_epoch`]; stores point at it (its
    /// address is stable: it lives in the `Arc`).
    pub(crate) epoch: std::sync::atomic::AtomicU64,
    types: Mutex<TypeRegistry>,
    exit_trampolines: Mutex<HashMap<FuncType, Arc<CodeMemory>>>,
}

#[derive(Default)]
struct TypeRegistry {
    ids: HashMap<FuncType, u32>,
    types: Vec<Arc<FuncType>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("isa", &self.inner.isa.triple().to_string())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Engine {
    /// An engine for the host CPU with `config`.
    pub fn new(config: Config) -> Result<Engine, CompileError> {
        let isa = compile::host_isa()?;
        let desc = format!(
            "framewalk {} cranelift 0.112.3{} {} {} {}",
            env!("CARGO_PKG_VERSION"),
            if config.epoch_interruption {
                " epoch-interruption"
            } else {
                ""
            },
            isa.triple(),
            isa.flags(),
            isa.isa_flags()
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let isa_fingerprint = crate::artifact::sections::fnv1a(&[desc.as_bytes()]);
        Ok(Engine {
            inner: Arc::new(EngineInner {
                isa,
                isa_fingerprint,
                config,
                epoch: std::sync::atomic::AtomicU64::new(0),
                types: Mutex::new(TypeRegistry::default()),
                exit_trampolines: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Advances the engine's epoch by one. With [`Config::epoch_interruption`], wasm
    /// running in a store whose deadline ([`Store::set_epoch_deadline`](crate::Store::set_epoch_deadline))
    /// this reaches traps with [`TrapCode::Interrupt`](crate::TrapCode::Interrupt) at its
    /// next function entry or loop header. Cheap (one atomic add) and callable from any
    /// thread, e.g. a timer thread.
    pub fn increment_epoch(&self) {
        self.inner
            .epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The engine's current epoch.
    pub fn current_epoch(&self) -> u64 {
        self.inner.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether two handles are the same engine.
    pub fn same(a: &Engine, b: &Engine) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// The engine-wide id of a function type (interned on first use).
    pub(crate) fn type_id(&self, ty: &FuncType) -> u32 {
        let mut reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = reg.ids.get(ty) {
            return *id;
        }
        let id = reg.types.len() as u32;
        reg.types.push(Arc::new(ty.clone()));
        reg.ids.insert(ty.clone(), id);
        id
    }

    /// The function type with engine-wide id `id` (stores cache it: see
    /// `StoreOpaque::func_type`).
    pub(crate) fn type_of(&self, id: u32) -> Option<Arc<FuncType>> {
        let reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        reg.types.get(id as usize).cloned()
    }

    /// The exit trampoline (wasm → host) for host functions of type `ty`, compiled on
    /// first use and shared by every store of this engine.
    pub(crate) fn exit_trampoline(&self, ty: &FuncType) -> Result<Arc<CodeMemory>, CompileError> {
        let mut cache = self
            .inner
            .exit_trampolines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(ty) {
            return Ok(c.clone());
        }
        let func = trampoline::exit_trampoline(ty);
        let code = compile::compile_standalone(&*self.inner.isa, func)?;
        let mem = CodeMemory::new(&code, &[], &[], |_| 0)
            .map_err(|e| CompileError::Host(e.to_string()))?;
        let mem = Arc::new(mem);
        cache.insert(ty.clone(), mem.clone());
        Ok(mem)
    }
}
