//! Writes a [`CompiledModule`] as an ELF object. The byte layouts match the reader in
//! `read.rs` and are drawn in `sections.rs`.

use super::sections as s;
use crate::compile::{CompiledModule, RelocKind, RelocTarget};
use object::write::{Object, Relocation, StandardSection, Symbol, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags,
    SymbolKind, SymbolScope,
};
use std::collections::HashMap;

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The object crate refused the object.
    #[error("writing ELF: {0}")]
    Object(String),
    /// A relocation names a function that has no body in this module.
    #[error("relocation to function {0}, which is not defined in this module")]
    UndefinedFunction(u32),
}

fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Serializes `module` (with `stack_maps`, the encoded stack-map section) into ELF bytes.
pub fn write_artifact(
    module: &CompiledModule,
    stack_maps: &[u8],
    isa_fingerprint: u64,
) -> Result<Vec<u8>, WriteError> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.section_id(StandardSection::Text);
    obj.append_section_data(text, &module.text, 16);

    let mut func_symbols = HashMap::new();
    for f in &module.functions {
        let id = obj.add_symbol(Symbol {
            name: format!("{}{}", s::FUNC_SYMBOL_PREFIX, f.func_index).into_bytes(),
            value: u64::from(f.offset),
            size: u64::from(f.len),
            kind: SymbolKind::Text,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        func_symbols.insert(f.func_index, id);
    }
    let mut extern_symbols = HashMap::new();
    for r in &module.relocs {
        let symbol = match r.target {
            RelocTarget::WasmFunc(i) => *func_symbols
                .get(&i)
                .ok_or(WriteError::UndefinedFunction(i))?,
            RelocTarget::Libcall(l) => *extern_symbols
                .entry(l.symbol())
                .or_insert_with(|| undefined_symbol(&mut obj, l.symbol())),
            RelocTarget::ClifLibcall(name) => *extern_symbols
                .entry(name)
                .or_insert_with(|| undefined_symbol(&mut obj, name)),
        };
        let r_type = match r.kind {
            RelocKind::Abs8 => elf::R_X86_64_64,
            RelocKind::PcRel4 => elf::R_X86_64_PLT32,
        };
        obj.add_relocation(
            text,
            Relocation {
                offset: u64::from(r.offset),
                symbol,
                addend: r.addend,
                flags: RelocationFlags::Elf { r_type },
            },
        )
        .map_err(|e| WriteError::Object(e.to_string()))?;
    }

    let mut header = Vec::with_capacity(s::HEADER_SIZE);
    header.extend_from_slice(&s::MAGIC);
    push_u32(&mut header, s::VERSION);
    push_u32(&mut header, 0);
    header.extend_from_slice(&0u64.to_le_bytes());
    header.extend_from_slice(&isa_fingerprint.to_le_bytes());
    header.extend_from_slice(&module.interface.to_le_bytes());

    let names_by_index: HashMap<u32, &str> =
        module.names.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let mut names = Vec::new();
    let mut functions = Vec::with_capacity(module.functions.len() * s::FUNCTION_RECORD_SIZE);
    for f in &module.functions {
        push_u32(&mut functions, f.func_index);
        push_u32(&mut functions, f.offset);
        push_u32(&mut functions, f.len);
        let (to, tl) = f.entry_trampoline.unwrap_or((0, 0));
        push_u32(&mut functions, to);
        push_u32(&mut functions, tl);
        let name = names_by_index.get(&f.func_index).copied().unwrap_or("");
        push_u32(&mut functions, names.len() as u32);
        push_u32(&mut functions, name.len() as u32);
        names.extend_from_slice(name.as_bytes());
    }
    let mut traps = Vec::with_capacity(module.traps.len() * s::PAIR_SIZE);
    for (off, code) in &module.traps {
        push_u32(&mut traps, *off);
        let byte = code.to_u8().ok_or_else(|| {
            WriteError::Object(format!("trap code `{code}` has no artifact encoding"))
        })?;
        push_u32(&mut traps, u32::from(byte));
    }
    let mut addrmap = Vec::with_capacity(module.address_map.len() * s::PAIR_SIZE);
    for (off, wasm) in &module.address_map {
        push_u32(&mut addrmap, *off);
        push_u32(&mut addrmap, *wasm);
    }

    for (name, data) in [
        (s::HEADER, &header[..]),
        (s::FUNCTIONS, &functions[..]),
        (s::NAMES, &names[..]),
        (s::TRAPS, &traps[..]),
        (s::ADDRESS_MAP, &addrmap[..]),
        (s::STACK_MAPS, stack_maps),
        (s::WASM, &module.wasm[..]),
        (s::EH_FRAME, &module.eh_frame[..]),
    ] {
        let id = obj.add_section(
            Vec::new(),
            name.as_bytes().to_vec(),
            SectionKind::ReadOnlyData,
        );
        obj.append_section_data(id, data, 8);
    }
    let mut bytes = obj.write().map_err(|e| WriteError::Object(e.to_string()))?;

    // Patch the checksum into the header now that the file's bytes are final.
    let header_offset = {
        use object::{Object as _, ObjectSection as _};
        let file =
            object::File::parse(&bytes[..]).map_err(|e| WriteError::Object(e.to_string()))?;
        let section = file
            .section_by_name(s::HEADER)
            .ok_or_else(|| WriteError::Object("header section vanished".into()))?;
        section
            .file_range()
            .ok_or_else(|| WriteError::Object("header has no file range".into()))?
            .0 as usize
    };
    let at = header_offset + s::CHECKSUM_OFFSET;
    let sum = s::fnv1a(&[&bytes[..at], &[0u8; 8], &bytes[at + 8..]]);
    bytes[at..at + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(bytes)
}

fn undefined_symbol(obj: &mut Object<'_>, name: &str) -> object::write::SymbolId {
    obj.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind: SymbolKind::Text,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    })
}
