//! The process-wide registry of loaded wasm code, and what the runtime derives from a
//! PC: the trap code of a trap site (for the signal handlers) and the symbolized frame
//! (for backtraces).
//!
//! Each registered module carries, as its registry data, a pointer to its
//! `ModuleInner`; the registration is the first field of `ModuleInner`, so it is
//! dropped (and the module unregistered) before anything it points at.

use super::module::ModuleInner;
use crate::artifact::read::lookup_le;
use crate::trap::{FrameInfo, FrameSymbols, TrapCode, WasmBacktrace};
use crate::unwind::{CodeRegistry, Frame};
use std::sync::Arc;

/// Every loaded module's code.
pub(crate) static REGISTRY: CodeRegistry = CodeRegistry::new();

/// The module whose registration carries `data`.
///
/// # Safety
/// `data` must come from a registry lookup made while the module is registered, which
/// holds while any of its code can be on a stack being walked.
unsafe fn module<'a>(data: usize) -> &'a ModuleInner {
    // SAFETY: per the contract.
    unsafe { &*(data as *const ModuleInner) }
}

/// The trap code of the trap site at `pc`, if `pc` is one in registered wasm code.
/// Lock-free and allocation-free: called from signal handlers.
pub(crate) fn trap_code_at(pc: usize, _signal: i32) -> Option<TrapCode> {
    let (loc, data) = REGISTRY.lookup_with_data(pc)?;
    // SAFETY: the module is registered; its code is executing on this thread.
    let m = unsafe { module(data) };
    let (off, code) = lookup_le(m.trap_bytes(), loc.text_offset)?;
    (off == loc.text_offset)
        .then(|| TrapCode::from_u8(code as u8))
        .flatten()
}

/// The wasm offset of a walked frame and its offset from its function body's start.
/// `exact` says the PC is the faulting instruction rather than a return address (whose
/// call instruction ends just before it).
#[inline(always)]
fn offsets(m: &ModuleInner, frame: &Frame, exact: bool) -> (Option<u32>, Option<u32>) {
    let loc = frame.location;
    let key = if exact {
        loc.text_offset
    } else {
        loc.text_offset.saturating_sub(1)
    };
    let Some(f) = loc
        .func_index
        .checked_sub(m.info.num_imported_funcs)
        .and_then(|i| m.symbol_ranges.get(i as usize))
    else {
        return (None, None);
    };
    // Only this function's entries: the last one at or before `key`.
    let (first, end) = f.address_map;
    let entries = m
        .address_map_bytes()
        .get(first as usize..end as usize)
        .unwrap_or(&[]);
    match lookup_le(entries, key) {
        Some((off, wasm)) if off >= f.text_offset && wasm != crate::compile::NO_WASM_OFFSET => {
            (Some(wasm), wasm.checked_sub(f.wasm_body_start))
        }
        _ if exact && at_function_entry(m, entries, loc.text_offset) => {
            // The function's own start, as Cranelift's start source location and
            // Wasmtime's address maps name code before the first instruction.
            let start = (f.wasm_body_start != u32::MAX).then_some(f.wasm_body_start);
            (start, start.map(|_| 0))
        }
        _ => (None, None),
    }
}

/// Whether an exact PC (at `text_offset`) with no wasm instruction of its own belongs
/// to its function's entry: the prologue before the code of the first wasm
/// instruction, or the trap site of the prologue's stack-limit check (a `ud2` that
/// Cranelift places in a trap island after the body). A stack overflow traps there,
/// before the function ran any instruction. `entries` are the function's address-map
/// pairs.
fn at_function_entry(m: &ModuleInner, entries: &[u8], text_offset: u32) -> bool {
    let stack_check = matches!(
        lookup_le(m.trap_bytes(), text_offset),
        Some((off, code)) if off == text_offset
            && TrapCode::from_u8(code as u8) == Some(TrapCode::StackOverflow)
    );
    let (pairs, _) = entries.as_chunks::<{ crate::artifact::sections::PAIR_SIZE }>();
    let first_instruction = pairs.iter().find_map(|pair| {
        let [o0, o1, o2, o3, w0, w1, w2, w3] = *pair;
        let wasm = u32::from_le_bytes([w0, w1, w2, w3]);
        (wasm != crate::compile::NO_WASM_OFFSET).then(|| u32::from_le_bytes([o0, o1, o2, o3]))
    });
    stack_check || first_instruction.is_some_and(|first| text_offset < first)
}

/// The function name, module name and offsets of a walked frame, as an owned
/// [`FrameInfo`]. `data` is the frame's registry data, if the walk just looked it up.
pub(crate) fn symbolize(frame: &Frame, exact: bool, data: Option<usize>) -> FrameInfo {
    let loc = frame.location;
    let mut info = FrameInfo {
        func_index: loc.func_index,
        func_name: None,
        module_name: None,
        wasm_offset: None,
        func_offset: None,
        pc: frame.pc,
        source: Vec::new(),
    };
    let Some(data) = data.or_else(|| REGISTRY.lookup_with_data(frame.pc).map(|(_, d)| d)) else {
        return info;
    };
    // SAFETY: the frame is live wasm code of a registered module.
    let m = unsafe { module(data) };
    info.func_name = m.names.get(loc.func_index as usize).cloned().flatten();
    info.module_name = m.module_name.clone();
    (info.wasm_offset, info.func_offset) = offsets(m, frame, exact);
    if let Some(offset) = info.wasm_offset {
        info.source = crate::trap::FrameSymbols::source_locations(m, offset);
    }
    info
}

/// Appends a walked frame to `backtrace`: plain data, plus one `Arc` of its module the
/// first time the module appears. `data` is as for [`symbolize`]. `after_exact` says
/// the previous frame was symbolized `exact`.
pub(crate) fn symbolize_into(
    backtrace: &mut WasmBacktrace,
    frame: &Frame,
    exact: bool,
    after_exact: bool,
    data: Option<usize>,
) {
    // A return address repeating the previous one (recursion) symbolizes the same. Not
    // after an exact frame: a trapping instruction right after a call has the same PC
    // as that call's return address, but names the instruction itself, not the call.
    if !exact && !after_exact && backtrace.repeat_last(frame.pc) {
        return;
    }
    let Some(data) = data.or_else(|| REGISTRY.lookup_with_data(frame.pc).map(|(_, d)| d)) else {
        backtrace.push_unnamed(frame.location.func_index, frame.pc);
        return;
    };
    // SAFETY: the frame is live wasm code of a registered module.
    let m = unsafe { module(data) };
    let (wasm_offset, func_offset) = offsets(m, frame, exact);
    let symbols = || -> Arc<dyn FrameSymbols> {
        let ptr = data as *const ModuleInner;
        // SAFETY: `data` is `Arc::as_ptr` of the module's `Arc<ModuleInner>`, and the
        // module is alive (strong count > 0) while its code is on the stack: the
        // instances running it hold it. So a new strong reference may be made.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    };
    backtrace.push(
        data,
        symbols,
        frame.location.func_index,
        wasm_offset,
        func_offset,
        frame.pc,
    );
}
