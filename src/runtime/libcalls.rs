//! The Rust side of the libcalls generated code calls (see `compile::libcall` for ids
//! and signatures). Each takes the calling instance's vmctx first. Those that can fail
//! return 0 for failure and the generated code traps at the call site; none unwinds.
//! None of them walks the stack except `collect_garbage`, which generated code calls
//! only through `call_with_exit_frame` (`arch/x86_64/exit.rs`), which passes it the
//! calling wasm frame's FP and SP to record as the exit, so the walk starts at the wasm
//! frame that called it.

use super::instance::InstanceData;
use super::vmcontext::VMOffsets;
use crate::artifact::LoadTarget;
use crate::compile::libcall::Libcall;

/// The instance behind `vmctx`.
///
/// # Safety
/// `vmctx` must be a live instance vmctx: generated code passes its own.
unsafe fn instance<'a>(vmctx: *mut u8) -> &'a mut InstanceData {
    // SAFETY: per the contract, the INSTANCE field holds the boxed `InstanceData`.
    unsafe { &mut *(*(vmctx.add(VMOffsets::INSTANCE as usize) as *const *mut InstanceData)) }
}

/// `start..start+len` if it lies within `bound` (neither the sum nor anything past
/// `bound` wraps: the check is on the full 64-bit values).
fn range(start: u64, len: u64, bound: usize) -> Option<std::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    (end <= bound as u64).then_some(start as usize..end as usize)
}

/// `start..start+len` for 32-bit operands (tables).
fn range32(start: u32, len: u32, bound: usize) -> Option<std::ops::Range<usize>> {
    range(u64::from(start), u64::from(len), bound)
}

/// Memory libcalls take 64-bit operands for memories of either index type (see
/// `compile::libcall`); `memory_grow` returns all ones on failure.
unsafe extern "C" fn memory_grow(vmctx: *mut u8, mem: u32, delta: u64) -> u64 {
    // SAFETY: called by generated code with its vmctx; memory pointers are live.
    let m = unsafe { &mut *instance(vmctx).memories[mem as usize] };
    m.grow(delta).unwrap_or(u64::MAX)
}

unsafe extern "C" fn memory_copy(
    vmctx: *mut u8,
    dst_mem: u32,
    src_mem: u32,
    dst: u64,
    src: u64,
    len: u64,
) -> u32 {
    // SAFETY: as above.
    let inst = unsafe { instance(vmctx) };
    // SAFETY: as above; both may be the same memory, so only raw pointers are used.
    let (d, s) = unsafe {
        (
            &*inst.memories[dst_mem as usize],
            &*inst.memories[src_mem as usize],
        )
    };
    let (Some(dr), Some(sr)) = (
        range(dst, len, d.def.current_length),
        range(src, len, s.def.current_length),
    ) else {
        return 0;
    };
    // SAFETY: both ranges are in bounds of mapped memory; `copy` handles overlap.
    unsafe { std::ptr::copy(s.def.base.add(sr.start), d.def.base.add(dr.start), dr.len()) };
    1
}

unsafe extern "C" fn memory_fill(vmctx: *mut u8, mem: u32, dst: u64, val: u32, len: u64) -> u32 {
    // SAFETY: as above.
    let m = unsafe { &mut *instance(vmctx).memories[mem as usize] };
    let Some(r) = range(dst, len, m.def.current_length) else {
        return 0;
    };
    m.data_mut()[r].fill(val as u8);
    1
}

unsafe extern "C" fn memory_init(
    vmctx: *mut u8,
    mem: u32,
    seg: u32,
    dst: u64,
    src: u64,
    len: u64,
) -> u32 {
    // SAFETY: as above.
    let inst = unsafe { instance(vmctx) };
    let module = inst.module.clone();
    let wasm = module.wasm_bytes();
    let data: &[u8] = if inst.data_dropped[seg as usize] {
        &[]
    } else {
        &wasm[module.inner.info.data[seg as usize].range.clone()]
    };
    // SAFETY: as above.
    let m = unsafe { &mut *inst.memories[mem as usize] };
    let (Some(dr), Some(sr)) = (
        range(dst, len, m.def.current_length),
        range(src, len, data.len()),
    ) else {
        return 0;
    };
    m.data_mut()[dr].copy_from_slice(&data[sr]);
    1
}

unsafe extern "C" fn data_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: as above.
    unsafe { instance(vmctx) }.data_dropped[seg as usize] = true;
}

unsafe extern "C" fn table_grow(vmctx: *mut u8, table: u32, delta: u32, init: u64) -> u32 {
    // SAFETY: as above.
    let t = unsafe { &mut *instance(vmctx).tables[table as usize] };
    t.grow(delta, init as usize).unwrap_or(u32::MAX)
}

unsafe extern "C" fn table_fill(vmctx: *mut u8, table: u32, dst: u32, val: u64, len: u32) -> u32 {
    // SAFETY: as above.
    let t = unsafe { &mut *instance(vmctx).tables[table as usize] };
    let Some(r) = range32(dst, len, t.len() as usize) else {
        return 0;
    };
    t.fill(r, val as usize);
    1
}

unsafe extern "C" fn table_copy(
    vmctx: *mut u8,
    dst_t: u32,
    src_t: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: as above.
    let inst = unsafe { instance(vmctx) };
    let (dp, sp) = (inst.tables[dst_t as usize], inst.tables[src_t as usize]);
    // SAFETY: live table storage; read lengths only.
    let (dlen, slen) = unsafe { ((*dp).len() as usize, (*sp).len() as usize) };
    let (Some(dr), Some(sr)) = (range32(dst, len, dlen), range32(src, len, slen)) else {
        return 0;
    };
    if dp == sp {
        // SAFETY: one table, borrowed once.
        unsafe { &mut *dp }.copy_within(sr, dr.start);
    } else {
        // SAFETY: two distinct tables.
        let (d, s) = unsafe { (&mut *dp, &*sp) };
        d.write_all(dr.start, &s.elements()[sr]);
    }
    1
}

unsafe extern "C" fn table_init(
    vmctx: *mut u8,
    table: u32,
    seg: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: as above.
    let inst = unsafe { instance(vmctx) };
    let empty = Vec::new();
    let values = inst.elements[seg as usize].as_ref().unwrap_or(&empty);
    // SAFETY: as above.
    let t = unsafe { &mut *inst.tables[table as usize] };
    let (Some(dr), Some(sr)) = (
        range32(dst, len, t.len() as usize),
        range32(src, len, values.len()),
    ) else {
        return 0;
    };
    t.write_all(dr.start, &values[sr]);
    1
}

unsafe extern "C" fn elem_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: as above.
    unsafe { instance(vmctx) }.drop_element(seg as usize);
}

unsafe extern "C" fn table_set_externref(vmctx: *mut u8, table: u32, index: u32, val: u64) -> u32 {
    // SAFETY: as above.
    let t = unsafe { &mut *instance(vmctx).tables[table as usize] };
    if index >= t.len() {
        return 0;
    }
    // The value is live: it is on the wasm stack, hence owned or in the root set.
    t.set(index as usize, val as usize);
    1
}

unsafe extern "C" fn global_set_externref(vmctx: *mut u8, global: u32, val: u64) {
    // SAFETY: as above; the global pointer in the vmctx points at live storage whose
    // first field is the definition, i.e. at the `GlobalStorage`.
    let inst = unsafe { instance(vmctx) };
    let off = inst.offsets().global(global) as usize;
    // SAFETY: in-bounds vmctx field holding a `*mut GlobalStorage`.
    let g = unsafe {
        &mut *(*(inst.vmctx.as_ptr().add(off) as *const *mut super::storage::GlobalStorage))
    };
    g.set(u128::from(val));
}

extern "C" fn ceilf32(x: f32) -> f32 {
    x.ceil()
}
extern "C" fn ceilf64(x: f64) -> f64 {
    x.ceil()
}
extern "C" fn floorf32(x: f32) -> f32 {
    x.floor()
}
extern "C" fn floorf64(x: f64) -> f64 {
    x.floor()
}
extern "C" fn truncf32(x: f32) -> f32 {
    x.trunc()
}
extern "C" fn truncf64(x: f64) -> f64 {
    x.trunc()
}
extern "C" fn nearestf32(x: f32) -> f32 {
    x.round_ties_even()
}
extern "C" fn nearestf64(x: f64) -> f64 {
    x.round_ties_even()
}

/// The address a relocation against an external symbol resolves to.
pub(crate) fn address_of(target: LoadTarget) -> usize {
    match target {
        LoadTarget::Text(_) => 0,
        LoadTarget::Libcall(l) => match l {
            Libcall::MemoryGrow => memory_grow as *const () as usize,
            Libcall::MemoryCopy => memory_copy as *const () as usize,
            Libcall::MemoryFill => memory_fill as *const () as usize,
            Libcall::MemoryInit => memory_init as *const () as usize,
            Libcall::DataDrop => data_drop as *const () as usize,
            Libcall::TableGrow => table_grow as *const () as usize,
            Libcall::TableFill => table_fill as *const () as usize,
            Libcall::TableCopy => table_copy as *const () as usize,
            Libcall::TableInit => table_init as *const () as usize,
            Libcall::ElemDrop => elem_drop as *const () as usize,
            Libcall::TableSetExternref => table_set_externref as *const () as usize,
            Libcall::GlobalSetExternref => global_set_externref as *const () as usize,
            Libcall::CallWithExitFrame => {
                crate::arch::framewalk_call_with_exit_frame as *const () as usize
            }
            Libcall::CollectGarbage => {
                super::entry::collect_garbage_from_wasm as *const () as usize
            }
        },
        LoadTarget::ClifLibcall(name) => match name {
            "framewalk_clif_ceilf32" => ceilf32 as *const () as usize,
            "framewalk_clif_ceilf64" => ceilf64 as *const () as usize,
            "framewalk_clif_floorf32" => floorf32 as *const () as usize,
            "framewalk_clif_floorf64" => floorf64 as *const () as usize,
            "framewalk_clif_truncf32" => truncf32 as *const () as usize,
            "framewalk_clif_truncf64" => truncf64 as *const () as usize,
            "framewalk_clif_nearestf32" => nearestf32 as *const () as usize,
            _ => nearestf64 as *const () as usize,
        },
    }
}
