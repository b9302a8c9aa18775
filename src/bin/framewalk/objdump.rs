//! `framewalk objdump`: what an artifact holds, function by function.

use anyhow::{Context, Result};
use framewalk::artifact::Artifact;
use framewalk::stackmap::StackMapSection;
use std::fmt::Write as _;

/// Which parts to print.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// Function names and ranges.
    pub functions: bool,
    /// Safepoints with their live slots.
    pub stack_maps: bool,
    /// Trap sites.
    pub traps: bool,
    /// Address-map entries.
    pub address_map: bool,
}

/// Renders the listing of `bytes`.
pub fn render(bytes: &[u8], parts: Parts) -> Result<String> {
    let art = Artifact::parse_for_inspection(bytes).context("reading artifact")?;
    let maps = StackMapSection::parse(art.stack_maps).context("reading the stack-map section")?;
    let traps: Vec<(u32, framewalk::trap::TrapCode)> = art.traps().collect();
    let addrs: Vec<(u32, u32)> = art.address_map().collect();
    let safepoints: Vec<_> = maps.iter().collect();
    let mut out = String::new();
    for f in art.functions() {
        let end = f.offset + f.len;
        let in_range = |o: u32| o >= f.offset && o <= end;
        if parts.functions || parts.stack_maps || parts.traps || parts.address_map {
            let name = f
                .name
                .map(str::to_string)
                .unwrap_or_else(|| format!("<wasm function {}>", f.func_index));
            writeln!(
                out,
                "function {} {name}: text {:#x}..{:#x} ({} bytes)",
                f.func_index, f.offset, end, f.len
            )?;
            if let Some((o, l)) = f.entry_trampoline {
                if parts.functions {
                    writeln!(out, "  entry trampoline: {:#x}..{:#x}", o, o + l)?;
                }
            }
        }
        if parts.stack_maps {
            for (off, map) in safepoints.iter().filter(|(o, _)| in_range(*o)) {
                let slots: Vec<String> = map.slots().map(|s| format!("sp+{s}")).collect();
                writeln!(
                    out,
                    "  safepoint {off:#x} (ret): frame span {} live [{}]",
                    map.span(),
                    slots.join(", ")
                )?;
            }
        }
        if parts.traps {
            for (off, code) in traps.iter().filter(|(o, _)| *o >= f.offset && *o < end) {
                writeln!(out, "  trap {off:#x}: {code}")?;
            }
        }
        if parts.address_map {
            for (off, wasm) in addrs.iter().filter(|(o, _)| *o >= f.offset && *o < end) {
                writeln!(out, "  {off:#x} -> wasm {wasm:#x}")?;
            }
        }
    }
    let n = maps.len();
    let bytes_per = if n == 0 {
        0.0
    } else {
        maps.bytes().len() as f64 / n as f64
    };
    writeln!(
        out,
        "summary: {} functions, {} safepoints, {} distinct maps, stack-map section {} bytes ({bytes_per:.1} bytes per safepoint), {} trap sites, {} address-map entries, text {} bytes, .eh_frame {} bytes",
        art.num_functions(),
        n,
        maps.map_count(),
        maps.bytes().len(),
        traps.len(),
        addrs.len(),
        art.text.len(),
        art.eh_frame.len()
    )?;
    Ok(out)
}
