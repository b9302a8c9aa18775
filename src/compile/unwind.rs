//! The `.eh_frame` section: Cranelift's System V unwind info for every function in the
//! text, written with `gimli::write` (the `gimli` that `cranelift-codegen` re-exports,
//! so its types are the ones `UnwindInfo::to_fde` produces).
//!
//! One CIE (Cranelift's, for the ISA) and one FDE per function or entry trampoline, in
//! text order. FDE addresses are `DW_EH_PE_pcrel | DW_EH_PE_sdata4`, relative to where
//! the loader copies the section: [`eh_frame_offset`] bytes after the start of the
//! text (see `artifact::sections`). The section therefore needs no relocation once
//! the text is at its final address.
//!
//! Nothing in framewalk's walker reads it: it is for debuggers and profilers, and for
//! the property tests, which unwind every walked stack a second way with it.

use super::CompileError;
use crate::artifact::sections::eh_frame_offset;
use cranelift_codegen::gimli::{
    self,
    write::{Address, EhFrame, EndianVec, FrameTable},
};
use cranelift_codegen::isa::{unwind::UnwindInfo, TargetIsa};

/// Builds the `.eh_frame` bytes for a text of `text_len` bytes holding `functions`
/// (text offset, Cranelift unwind info).
///
/// # Errors
///
/// [`CompileError::Host`] if the ISA has no System V CIE or gives non-System V unwind
/// info; [`CompileError::TooLarge`] if an offset does not fit the 32-bit encoding.
pub fn build_eh_frame(
    isa: &dyn TargetIsa,
    text_len: usize,
    functions: &[(u32, UnwindInfo)],
) -> Result<Vec<u8>, CompileError> {
    let mut cie = isa
        .create_systemv_cie()
        .ok_or_else(|| CompileError::Host("the ISA has no System V CIE".into()))?;
    cie.fde_address_encoding = gimli::constants::DW_EH_PE_pcrel | gimli::constants::DW_EH_PE_sdata4;
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    let eh_off = eh_frame_offset(text_len)
        .and_then(|o| i64::try_from(o).ok())
        .ok_or(CompileError::TooLarge("text"))?;
    for (start, info) in functions {
        let UnwindInfo::SystemV(info) = info else {
            return Err(CompileError::Host(
                "expected System V unwind info on this host".into(),
            ));
        };
        // With `pcrel`, gimli writes `value - (position of the field in the section)`,
        // so `value` is the function's address relative to the section's start.
        let relative = i64::from(*start) - eh_off;
        table.add_fde(cie_id, info.to_fde(Address::Constant(relative as u64)));
    }
    let mut eh_frame = EhFrame(EndianVec::new(gimli::LittleEndian));
    table.write_eh_frame(&mut eh_frame).map_err(|e| match e {
        gimli::write::Error::ValueTooLarge => CompileError::TooLarge("eh_frame offsets"),
        other => CompileError::Host(format!("writing .eh_frame: {other}")),
    })?;
    Ok(eh_frame.0.into_vec())
}
