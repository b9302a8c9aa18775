//! Instantiation: resolving imports, laying out the vmctx, initializing tables,
//! memories and globals, applying segments and running the start function.

use super::error::{Error, LinkError};
use super::externals::{Global, Memory, Table};
use super::func::{invoke, Func, TypedFunc};
use super::module::Module;
use super::storage::{GlobalStorage, MemoryStorage, TableStorage};
use super::store::{AsStore, AsStoreMut, StoreOpaque};
use super::values::WasmTuple;
use super::vmcontext::{ArrayCallFn, VMFuncRef, VMOffsets, ValRaw, VMCTX_MAGIC};
use crate::compile::module_info::{ConstExpr, ConstOp, ExportIndex, ImportKind, SegmentMode};
use crate::trap::Trap;
use crate::trap::TrapCode;
use crate::types::{ExternType, Limits, MemoryType, TableType};
use std::alloc::Layout;
use std::ptr::NonNull;

/// An import or export value.
#[derive(Clone, Debug)]
pub enum Extern {
    /// A function.
    Func(Func),
    /// A table.
    Table(Table),
    /// A memory.
    Memory(Memory),
    /// A global.
    Global(Global),
}

impl From<Func> for Extern {
    fn from(f: Func) -> Extern {
        Extern::Func(f)
    }
}

impl From<Memory> for Extern {
    fn from(m: Memory) -> Extern {
        Extern::Memory(m)
    }
}

impl From<Table> for Extern {
    fn from(t: Table) -> Extern {
        Extern::Table(t)
    }
}

impl From<Global> for Extern {
    fn from(g: Global) -> Extern {
        Extern::Global(g)
    }
}

impl Extern {
    /// The type this value satisfies as an import: a function's type, a global's, and
    /// for a memory or table its current size as the minimum with its declared
    /// maximum. Fails with [`Error::WrongStore`] if it belongs to another store.
    pub fn ty(&self, store: &impl AsStore) -> Result<ExternType, Error> {
        let store = store.store_opaque();
        Ok(match self {
            Extern::Func(f) => ExternType::Func(f.ty(store)?),
            Extern::Memory(m) => {
                let mem = &store.memories[m.id(store)?];
                ExternType::Memory(MemoryType {
                    limits: Limits {
                        min: mem.pages(),
                        max: mem.ty.limits.max,
                    },
                    is_64: mem.ty.is_64,
                })
            }
            Extern::Table(t) => {
                let table = &store.tables[t.id(store)?];
                ExternType::Table(TableType {
                    element: table.ty.element,
                    limits: Limits {
                        min: u64::from(table.len()),
                        max: table.ty.limits.max,
                    },
                })
            }
            Extern::Global(g) => ExternType::Global(g.ty(store)?),
        })
    }

    /// Whether this value belongs to `store`.
    pub(crate) fn belongs_to(&self, store: &StoreOpaque) -> bool {
        match self {
            Extern::Func(f) => f.store_id == store.id,
            Extern::Memory(m) => m.id(store).is_ok(),
            Extern::Table(t) => t.id(store).is_ok(),
            Extern::Global(g) => g.id(store).is_ok(),
        }
    }

    /// The function, if this is one.
    pub fn into_func(self) -> Option<Func> {
        match self {
            Extern::Func(f) => Some(f),
            _ => None,
        }
    }
    /// The memory, if this is one.
    pub fn into_memory(self) -> Option<Memory> {
        match self {
            Extern::Memory(m) => Some(m),
            _ => None,
        }
    }
    /// The table, if this is one.
    pub fn into_table(self) -> Option<Table> {
        match self {
            Extern::Table(t) => Some(t),
            _ => None,
        }
    }
    /// The global, if this is one.
    pub fn into_global(self) -> Option<Global> {
        match self {
            Extern::Global(g) => Some(g),
            _ => None,
        }
    }
}

/// An instance's state, owned (boxed) by its store. `vmctx.instance` points here.
pub(crate) struct InstanceData {
    pub(crate) module: Module,
    pub(crate) vmctx: NonNull<u8>,
    layout: Layout,
    /// Store indices of every memory/table/global (imported first).
    pub(crate) memory_ids: Vec<usize>,
    pub(crate) table_ids: Vec<usize>,
    pub(crate) global_ids: Vec<usize>,
    /// Direct pointers to the same storage, for libcalls.
    pub(crate) memories: Vec<*mut MemoryStorage>,
    pub(crate) tables: Vec<*mut TableStorage>,
    /// Passive element segments' values; `None` once dropped. Externref segments own
    /// one count per non-null value (see `drop_element`).
    pub(crate) elements: Vec<Option<Vec<usize>>>,
    /// Whether each data segment was dropped.
    pub(crate) data_dropped: Vec<bool>,
}

impl InstanceData {
    /// Drops element segment `index` (`elem.drop`, or after an active segment was
    /// applied), releasing the counts an externref segment owns.
    pub(crate) fn drop_element(&mut self, index: usize) {
        let Some(values) = self.elements.get_mut(index).and_then(Option::take) else {
            return;
        };
        if self.module.inner.info.elements[index].ty == crate::types::ValType::ExternRef {
            for v in values.into_iter().filter(|v| *v != 0) {
                // SAFETY: the segment owned one count of each value.
                unsafe { crate::gc::release(v) };
            }
        }
    }
}

impl Drop for InstanceData {
    fn drop(&mut self) {
        for i in 0..self.elements.len() {
            self.drop_element(i);
        }
        // SAFETY: allocated in `instantiate` with this layout.
        unsafe { std::alloc::dealloc(self.vmctx.as_ptr(), self.layout) }
    }
}

impl InstanceData {
    pub(crate) fn offsets(&self) -> &VMOffsets {
        &self.module.inner.offsets
    }

    fn write<T>(&self, offset: u32, value: T) {
        // SAFETY: every offset comes from `VMOffsets` of this module and lies inside the
        // vmctx allocation; fields are naturally aligned by the layout.
        unsafe {
            self.vmctx
                .as_ptr()
                .add(offset as usize)
                .cast::<T>()
                .write(value)
        }
    }

    pub(crate) fn func_ref_ptr(&self, index: u32) -> *const VMFuncRef {
        // SAFETY: in-bounds offset of the vmctx (see `write`).
        unsafe {
            self.vmctx
                .as_ptr()
                .add(self.offsets().func_ref(index) as usize) as *const VMFuncRef
        }
    }
}

/// An instantiated module in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    store_id: u64,
    index: usize,
}

impl Instance {
    /// Instantiates `module` with `imports` given in the module's import order.
    pub fn new(
        mut store: impl AsStoreMut,
        module: &Module,
        imports: &[Extern],
    ) -> Result<Instance, Error> {
        let store = store.store_opaque_mut();
        instantiate(store, module, imports)
    }

    pub(crate) fn from_vmctx(store: &StoreOpaque, vmctx: *mut u8) -> Option<Instance> {
        if vmctx.is_null() {
            return None;
        }
        store
            .instances
            .iter()
            .position(|i| i.vmctx.as_ptr() == vmctx)
            .map(|index| Instance {
                store_id: store.id,
                index,
            })
    }

    fn data<'a>(&self, store: &'a StoreOpaque) -> Option<&'a InstanceData> {
        (store.id == self.store_id).then(|| &*store.instances[self.index])
    }

    /// The module this instance was created from.
    pub fn module<'a>(&self, store: &'a impl AsStore) -> Option<&'a Module> {
        self.data(store.store_opaque()).map(|d| &d.module)
    }

    /// Looks up an export by name.
    pub fn get_export(&self, store: &impl AsStore, name: &str) -> Option<Extern> {
        let store = store.store_opaque();
        let data = self.data(store)?;
        let (_, idx) = data
            .module
            .inner
            .info
            .exports
            .iter()
            .find(|(n, _)| n == name)?;
        Some(match *idx {
            ExportIndex::Func(f) => {
                Extern::Func(Func::from_vmfuncref(store.id, data.func_ref_ptr(f)))
            }
            ExportIndex::Memory(m) => {
                Extern::Memory(Memory::from_id(store.id, data.memory_ids[m as usize]))
            }
            ExportIndex::Table(t) => {
                Extern::Table(Table::from_id(store.id, data.table_ids[t as usize]))
            }
            ExportIndex::Global(g) => {
                Extern::Global(Global::from_id(store.id, data.global_ids[g as usize]))
            }
        })
    }

    /// The exported function `name`.
    pub fn get_func(&self, store: &impl AsStore, name: &str) -> Option<Func> {
        self.get_export(store, name)?.into_func()
    }

    /// The exported function `name`, typed: [`Instance::get_func`] then
    /// [`Func::typed`]. Fails with [`Error::UnknownExport`] if the instance exports
    /// nothing of that name, and [`Error::TypeMismatch`] if the export is not a function
    /// or not of type `P -> R`.
    pub fn get_typed_func<P: WasmTuple, R: WasmTuple>(
        &self,
        store: &impl AsStore,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let export = self
            .get_export(store, name)
            .ok_or_else(|| Error::UnknownExport(name.to_string()))?;
        let kind = match &export {
            Extern::Func(_) => "function",
            Extern::Table(_) => "table",
            Extern::Memory(_) => "memory",
            Extern::Global(_) => "global",
        };
        let func = export.into_func().ok_or_else(|| {
            Error::TypeMismatch(format!("export `{name}` is a {kind}, not a function"))
        })?;
        func.typed(store)
    }

    /// The exported memory `name`.
    pub fn get_memory(&self, store: &impl AsStore, name: &str) -> Option<Memory> {
        self.get_export(store, name)?.into_memory()
    }

    /// The exported global `name`.
    pub fn get_global(&self, store: &impl AsStore, name: &str) -> Option<Global> {
        self.get_export(store, name)?.into_global()
    }

    /// The exported table `name`.
    pub fn get_table(&self, store: &impl AsStore, name: &str) -> Option<Table> {
        self.get_export(store, name)?.into_table()
    }
}

/// Whether a definition of type `actual` satisfies an import of type `expected`:
/// the same function or global type; a memory or table whose limits (its current size
/// as the minimum) lie within the import's, and for a table the same element type.
pub(crate) fn import_matches(expected: &ExternType, actual: &ExternType) -> bool {
    match (expected, actual) {
        (ExternType::Func(e), ExternType::Func(a)) => e == a,
        (ExternType::Global(e), ExternType::Global(a)) => e == a,
        (ExternType::Memory(e), ExternType::Memory(a)) => {
            e.is_64 == a.is_64 && a.limits.matches(&e.limits)
        }
        (ExternType::Table(e), ExternType::Table(a)) => {
            e.element == a.element && a.limits.matches(&e.limits)
        }
        _ => false,
    }
}

/// The error for import `i` of `module`, given `ext`, whose type does not satisfy it.
fn incompatible(store: &StoreOpaque, module: &Module, i: usize, ext: &Extern) -> Error {
    let Some((m, name, expected)) = module.imports().nth(i) else {
        return Error::OutOfBounds(format!("import {i}"));
    };
    match ext.ty(store) {
        Ok(actual) => LinkError::IncompatibleImport {
            module: m.to_string(),
            name: name.to_string(),
            expected: Box::new(expected),
            actual: Box::new(actual),
        }
        .into(),
        Err(e) => e,
    }
}

fn instantiate(
    store: &mut StoreOpaque,
    module: &Module,
    imports: &[Extern],
) -> Result<Instance, Error> {
    if !super::Engine::same(&store.engine, &module.inner.engine) {
        return Err(Error::TypeMismatch(
            "module belongs to another engine".into(),
        ));
    }
    let info = &module.inner.info;
    if imports.len() != info.imports.len() {
        return Err(Error::TypeMismatch(format!(
            "module needs {} imports, {} given",
            info.imports.len(),
            imports.len()
        )));
    }
    if module.inner.engine.config().wasm_tail_call {
        let shift = info
            .types
            .iter()
            .map(crate::compile::environ::stack_arg_bytes)
            .max()
            .unwrap_or(0);
        store.max_frame_shift = store.max_frame_shift.max(shift);
    }
    let offsets = module.inner.offsets;
    let layout = Layout::from_size_align(offsets.size().max(8) as usize, 16)
        .map_err(|e| Error::Resource(e.to_string()))?;
    // SAFETY: the layout has non-zero size.
    let vmctx = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
        .ok_or_else(|| Error::Resource("out of memory for vmctx".into()))?;
    let mut data = Box::new(InstanceData {
        module: module.clone(),
        vmctx,
        layout,
        memory_ids: Vec::new(),
        table_ids: Vec::new(),
        global_ids: Vec::new(),
        memories: Vec::new(),
        tables: Vec::new(),
        elements: Vec::new(),
        data_dropped: vec![false; info.data.len()],
    });
    let data_ptr: *mut InstanceData = &mut *data;
    data.write(VMOffsets::MAGIC, VMCTX_MAGIC);
    data.write(VMOffsets::STORE, &mut *store.vm as *mut _ as usize);
    data.write(VMOffsets::INSTANCE, data_ptr as usize);
    for (i, id) in module.inner.type_ids.iter().enumerate() {
        data.write(offsets.type_id(i as u32), *id);
    }

    // Imports.
    let mut func_index = 0u32;
    for (i, (imp, ext)) in info.imports.iter().zip(imports).enumerate() {
        match (&imp.kind, ext) {
            (ImportKind::Func(t), Extern::Func(f)) => {
                if f.store_id != store.id {
                    return Err(Error::WrongStore);
                }
                let fr = *f.vmfuncref();
                if fr.type_id != module.inner.type_ids[*t as usize] {
                    return Err(incompatible(store, module, i, ext));
                }
                data.write(offsets.func_ref(func_index), fr);
                func_index += 1;
            }
            (ImportKind::Memory(ty), Extern::Memory(m)) => {
                let id = m.id(store)?;
                let mem = &mut store.memories[id];
                let actual = crate::types::Limits {
                    min: mem.pages(),
                    max: mem.ty.limits.max,
                };
                if mem.ty.is_64 != ty.is_64 || !actual.matches(&ty.limits) {
                    return Err(incompatible(store, module, i, ext));
                }
                data.write(
                    offsets.memory(data.memory_ids.len() as u32),
                    &mut mem.def as *mut _ as usize,
                );
                data.memories.push(&mut **mem);
                data.memory_ids.push(id);
            }
            (ImportKind::Table(ty), Extern::Table(t)) => {
                let id = t.id(store)?;
                let table = &mut store.tables[id];
                let actual = crate::types::Limits {
                    min: u64::from(table.len()),
                    max: table.ty.limits.max,
                };
                if table.ty.element != ty.element || !actual.matches(&ty.limits) {
                    return Err(incompatible(store, module, i, ext));
                }
                data.write(
                    offsets.table(data.table_ids.len() as u32),
                    &mut table.def as *mut _ as usize,
                );
                data.tables.push(&mut **table);
                data.table_ids.push(id);
            }
            (ImportKind::Global(ty), Extern::Global(g)) => {
                let id = g.id(store)?;
                let global = &mut store.globals[id];
                if global.ty != *ty {
                    return Err(incompatible(store, module, i, ext));
                }
                data.write(
                    offsets.global(data.global_ids.len() as u32),
                    &mut global.def as *mut _ as usize,
                );
                data.global_ids.push(id);
            }
            _ => return Err(incompatible(store, module, i, ext)),
        }
    }

    // Defined functions.
    let type_ids = &module.inner.type_ids;
    for (i, f) in module.inner.functions.iter().enumerate() {
        let index = info.num_imported_funcs + i as u32;
        data.write(
            offsets.func_ref(index),
            VMFuncRef {
                wasm_call: f.body as *const u8,
                array_call: f.entry_trampoline as *const u8,
                vmctx: vmctx.as_ptr(),
                type_id: type_ids[info.functions[index as usize] as usize],
                flags: 0,
            },
        );
    }

    // Defined memories.
    for ty in &info.memories[info.num_imported_memories as usize..] {
        let mut mem = MemoryStorage::new(*ty).map_err(|e| Error::Resource(e.to_string()))?;
        data.write(
            offsets.memory(data.memory_ids.len() as u32),
            &mut mem.def as *mut _ as usize,
        );
        data.memories.push(&mut *mem);
        data.memory_ids.push(store.memories.len());
        store.memories.push(mem);
    }

    // Defined globals (their initializers may read imported globals and name functions).
    for (i, ty) in info.globals[info.num_imported_globals as usize..]
        .iter()
        .enumerate()
    {
        let bits = eval_const(store, &data, &info.global_inits[i]);
        let mut g = GlobalStorage::new(*ty, bits);
        data.write(
            offsets.global(data.global_ids.len() as u32),
            &mut g.def as *mut _ as usize,
        );
        data.global_ids.push(store.globals.len());
        store.globals.push(g);
    }

    // Defined tables.
    for (i, ty) in info.tables[info.num_imported_tables as usize..]
        .iter()
        .enumerate()
    {
        let init = info.table_inits[i]
            .as_ref()
            .map_or(0, |c| eval_const(store, &data, c) as usize);
        let mut t = TableStorage::new(*ty, init)
            .ok_or_else(|| Error::Resource(format!("table of {} elements", ty.limits.min)))?;
        data.write(
            offsets.table(data.table_ids.len() as u32),
            &mut t.def as *mut _ as usize,
        );
        data.tables.push(&mut *t);
        data.table_ids.push(store.tables.len());
        store.tables.push(t);
    }

    // Element segments: evaluate all (externref segments own counts of their values).
    let mut pending_active = Vec::new();
    for (i, seg) in info.elements.iter().enumerate() {
        let values: Vec<usize> = seg
            .items
            .iter()
            .map(|c| eval_const(store, &data, c) as usize)
            .collect();
        if seg.ty == crate::types::ValType::ExternRef {
            for v in values.iter().filter(|v| **v != 0) {
                // SAFETY: the value was read from a live global.
                unsafe { crate::gc::retain(*v) };
            }
        }
        data.elements.push(Some(values));
        match &seg.mode {
            SegmentMode::Passive => {}
            SegmentMode::Declared => data.drop_element(i),
            SegmentMode::Active { index, offset } => {
                let at = eval_const(store, &data, offset) as u32;
                pending_active.push((i, *index, at));
            }
        }
    }

    let index = store.instances.len();
    store.instances.push(data);
    let instance = Instance {
        store_id: store.id,
        index,
    };

    // Active segments, in order; a failure traps but leaves earlier writes in place.
    for (seg, table, at) in pending_active {
        let data = &mut *store.instances[index];
        let values = data.elements[seg].clone().unwrap_or_default();
        // SAFETY: table pointers point at boxed storage owned by the store, alive and not
        // otherwise borrowed here.
        let tp = data.tables[table as usize];
        let t = unsafe { &mut *tp };
        let end = at as usize + values.len();
        if end > t.len() as usize {
            return Err(Trap::new(TrapCode::TableOutOfBounds, Vec::new()).into());
        }
        t.write_all(at as usize, &values);
        data.drop_element(seg);
    }
    let data = &*store.instances[index];
    let wasm = module.wasm_bytes();
    let mut applied = Vec::new();
    for (i, seg) in info.data.iter().enumerate() {
        if let SegmentMode::Active { index: mem, offset } = &seg.mode {
            // SAFETY: as for tables above.
            let mp = data.memories[*mem as usize];
            let m = unsafe { &mut *mp };
            // The offset is an i32 for a 32-bit memory, an i64 for a 64-bit one, both
            // unsigned addresses.
            let at = eval_const(store, data, offset);
            let at = if m.ty.is_64 {
                at as u64
            } else {
                at as u32 as u64
            };
            let bytes = &wasm[seg.range.clone()];
            let range = usize::try_from(at)
                .ok()
                .and_then(|at| Some(at..at.checked_add(bytes.len())?))
                .filter(|r| r.end <= m.data().len());
            let Some(range) = range else {
                return Err(Trap::new(TrapCode::MemoryOutOfBounds, Vec::new()).into());
            };
            m.data_mut()[range].copy_from_slice(bytes);
            applied.push(i);
        }
    }
    for i in applied {
        store.instances[index].data_dropped[i] = true;
    }

    if let Some(start) = info.start {
        let f = store.instances[index].func_ref_ptr(start);
        // SAFETY: `f` is this instance's function, which takes no arguments (validated).
        let f = unsafe { &*f };
        if is_host_func(f) {
            // An imported host function as the start function: it is called on behalf of
            // this instance, so its `Caller` sees the instance (as if a wasm function of
            // it had made the call), e.g. `caller.get_export("memory")`.
            let caller_vmctx = store.instances[index].vmctx.as_ptr();
            // SAFETY: `f` is a live host function of this store taking no arguments and
            // returning none; `caller_vmctx` is the live vmctx of an instance of it.
            unsafe { call_host_start(store, f, caller_vmctx)? };
        } else {
            // SAFETY: as above.
            unsafe { invoke(store, f, &mut [])? };
        }
    }
    Ok(instance)
}

/// Whether `f` is a host function (its `vmctx` is a host function context).
fn is_host_func(f: &VMFuncRef) -> bool {
    f.flags & VMFuncRef::HOST != 0
}

/// Calls the host function `f` of type `[] -> []` as the start function of the
/// instance whose vmctx is `caller_vmctx`. Like the host branch of `invoke` (no wasm
/// frame, so no activation), but with the instance as the caller.
///
/// # Safety
/// `f` must be a host function of `store` of type `[] -> []`, and `caller_vmctx` the
/// vmctx of a live instance of `store`.
unsafe fn call_host_start(
    store: &mut StoreOpaque,
    f: &VMFuncRef,
    caller_vmctx: *mut u8,
) -> Result<(), Error> {
    // SAFETY: a host context's `array_call` is its `host_array_call`.
    let entry: ArrayCallFn = unsafe { std::mem::transmute(f.array_call) };
    let mut none: [ValRaw; 0] = [];
    // SAFETY: per this function's contract; no argument or result slots are needed.
    let ok = unsafe { entry(f.vmctx, caller_vmctx, none.as_mut_ptr(), 0) };
    if ok {
        Ok(())
    } else {
        Err(super::entry::take_host_failure(store, Vec::new()))
    }
}

fn eval_const(store: &StoreOpaque, data: &InstanceData, c: &ConstExpr) -> u128 {
    let global = |g: u32| store.globals[data.global_ids[g as usize]].def.bits;
    match c {
        ConstExpr::I32(v) => u128::from(*v as u32),
        ConstExpr::I64(v) => u128::from(*v as u64),
        ConstExpr::F32(v) => u128::from(*v),
        ConstExpr::F64(v) => u128::from(*v),
        ConstExpr::V128(v) => *v,
        ConstExpr::RefNull => 0,
        ConstExpr::RefFunc(f) => data.func_ref_ptr(*f) as u128,
        ConstExpr::GlobalGet(g) => global(*g),
        // Integer programs: a global they read is an i32 or i64 (the validator checked).
        ConstExpr::Program(ops) => u128::from(eval_program(ops, |g| global(g) as u64)),
    }
}

/// Runs an extended constant expression. The validator checked its stack discipline
/// (every operator finds its operands, one value is left); a program that breaks it
/// anyway gives 0 rather than a panic.
fn eval_program(ops: &[ConstOp], global: impl Fn(u32) -> u64) -> u64 {
    let mut stack: Vec<u64> = Vec::with_capacity(ops.len());
    for op in ops {
        let binary: fn(u64, u64) -> u64 = match *op {
            ConstOp::I32(v) => {
                stack.push(v as u32 as u64);
                continue;
            }
            ConstOp::I64(v) => {
                stack.push(v as u64);
                continue;
            }
            ConstOp::GlobalGet(g) => {
                stack.push(global(g));
                continue;
            }
            ConstOp::I32Add => |a, b| u64::from((a as u32).wrapping_add(b as u32)),
            ConstOp::I32Sub => |a, b| u64::from((a as u32).wrapping_sub(b as u32)),
            ConstOp::I32Mul => |a, b| u64::from((a as u32).wrapping_mul(b as u32)),
            ConstOp::I64Add => u64::wrapping_add,
            ConstOp::I64Sub => u64::wrapping_sub,
            ConstOp::I64Mul => u64::wrapping_mul,
        };
        let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
            return 0;
        };
        stack.push(binary(a, b));
    }
    stack.pop().unwrap_or(0)
}
