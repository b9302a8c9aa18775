//! The process-wide registry of loaded wasm code, and what the runtime derives from a
//! PC: the trap code of a trap site (for the signal handlers) and the symbolized frame
//! (for backtraces).
//!
//! Each registered module carries, as its registry data, a pointer to its
//! `ModuleInner`; the registration is the first field of `ModuleInner`, so it is
//! dropped (and the module unregistered) before anything it points at.

use super::module::ModuleInner;
use crate::artifact::read::lookup_le;
use crate::trap::{FrameInfo, TrapCode};
use crate::unwind::{CodeRegistry, Frame};

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

/// The function name, module name and wasm offset of a walked frame. `exact` says the
/// PC is the faulting instruction rather than a return address (whose call instruction
/// ends just before it).
pub(crate) fn symbolize(frame: &Frame, exact: bool, data: Option<usize>) -> FrameInfo {
    let loc = frame.location;
    let lookup = data
        .map(|d| (loc, d))
        .or_else(|| REGISTRY.lookup_with_data(frame.pc));
    let mut info = FrameInfo {
        func_index: loc.func_index,
        func_name: None,
        module_name: None,
        wasm_offset: None,
        pc: frame.pc,
    };
    let Some((_, data)) = lookup else {
        return info;
    };
    // SAFETY: the frame is live wasm code of a registered module.
    let m = unsafe { module(data) };
    info.func_name = m.names.get(loc.func_index as usize).cloned().flatten();
    info.module_name = m.module_name.clone();
    let key = if exact {
        loc.text_offset
    } else {
        loc.text_offset.saturating_sub(1)
    };
    let function = loc
        .func_index
        .checked_sub(m.info.num_imported_funcs)
        .and_then(|i| m.functions.get(i as usize));
    if let Some(f) = function {
        // Only this function's entries: the last one at or before `key`.
        let (first, end) = f.address_map;
        let entries = m.address_map_bytes().get(first..end).unwrap_or(&[]);
        if let Some((off, wasm)) = lookup_le(entries, key) {
            if off >= f.text_offset && wasm != crate::compile::NO_WASM_OFFSET {
                info.wasm_offset = Some(wasm);
            }
        }
    }
    info
}
