//! The GDB JIT interface: loaded modules described to a debugger attached to (or
//! starting) the process, so that `bt`, `info symbol` and `disassemble` name wasm
//! functions and GDB unwinds through them with their CFI.
//!
//! The protocol (GDB manual, "JIT Compilation Interface"): the process exports a
//! descriptor `__jit_debug_descriptor` heading a doubly linked list of in-memory
//! object files, and a function `__jit_debug_register_code` on which the debugger sets
//! a breakpoint; to add or remove an entry, the process links it in or out, sets the
//! descriptor's action and relevant entry, and calls the function.
//!
//! Each module's object file is a small relocatable ELF built with `object`: a `.text`
//! section with no bytes (the code stays where it is) whose section address is the
//! loaded text, one symbol per function (`wasm[MODULE]::FUNCTION`, as in the perf map),
//! and the module's `.eh_frame` placed at its loaded address, whose PC-relative FDE
//! addresses are then right as they stand. Section addresses of a relocatable file
//! are what GDB (through BFD) adds to its symbols' values, which is how LLVM's ORC
//! registers JIT code too.
//!
//! Invariants: the list is changed only under [`LOCK`]; an entry and its image live
//! until their registration is dropped, which unlinks them first.
//!
//! The two symbols are defined once per process by whoever implements the interface,
//! so framewalk cannot share a binary with another JIT that defines them too (e.g.
//! Wasmtime's `wasmtime-jit-debug`): the link fails with a duplicate symbol.

use std::ops::Range;
use std::ptr::{addr_of_mut, null_mut};
use std::sync::Mutex;

use object::write::{Object, SectionFlags, StandardSection, Symbol, SymbolSection};
use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope};

#[repr(C)]
struct JitCodeEntry {
    next: *mut JitCodeEntry,
    prev: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// The descriptor GDB reads (layout fixed by the protocol, version 1).
#[repr(C)]
pub struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

const JIT_REGISTER: u32 = 1;
const JIT_UNREGISTER: u32 = 2;

/// Found by name by the debugger. Only touched under [`LOCK`].
#[no_mangle]
#[used]
static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: 0,
    relevant_entry: null_mut(),
    first_entry: null_mut(),
};

/// The debugger's breakpoint: called after every change to the list.
#[no_mangle]
#[inline(never)]
extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty asm statement; without `nomem` it is a compiler barrier, so
    // the list writes before the call are done and the call is not optimized away.
    unsafe { std::arch::asm!("", options(nostack, preserves_flags)) }
}

static LOCK: Mutex<()> = Mutex::new(());

/// One module described to the debugger; dropping it withdraws the description.
pub(crate) struct GdbJitRegistration {
    entry: Box<JitCodeEntry>,
    _image: Box<[u8]>,
}

// SAFETY: the entry's pointers are only read or written under `LOCK` (and by the
// debugger while the process is stopped); the image is immutable.
unsafe impl Send for GdbJitRegistration {}
// SAFETY: as above; `&GdbJitRegistration` gives no access to anything.
unsafe impl Sync for GdbJitRegistration {}

impl GdbJitRegistration {
    /// Links `image` (an object file) into the debugger's list.
    pub(crate) fn register(image: Vec<u8>) -> GdbJitRegistration {
        let image = image.into_boxed_slice();
        let mut entry = Box::new(JitCodeEntry {
            next: null_mut(),
            prev: null_mut(),
            symfile_addr: image.as_ptr(),
            symfile_size: image.len() as u64,
        });
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let descriptor = addr_of_mut!(__jit_debug_descriptor);
        let entry_ptr: *mut JitCodeEntry = &mut *entry;
        // SAFETY: under `LOCK`, the descriptor and every linked entry (each owned by a
        // live registration) are ours to change.
        unsafe {
            let first = (*descriptor).first_entry;
            (*entry_ptr).next = first;
            if !first.is_null() {
                (*first).prev = entry_ptr;
            }
            (*descriptor).first_entry = entry_ptr;
            (*descriptor).relevant_entry = entry_ptr;
            (*descriptor).action_flag = JIT_REGISTER;
        }
        __jit_debug_register_code();
        GdbJitRegistration {
            entry,
            _image: image,
        }
    }
}

impl Drop for GdbJitRegistration {
    fn drop(&mut self) {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let descriptor = addr_of_mut!(__jit_debug_descriptor);
        let entry: *mut JitCodeEntry = &mut *self.entry;
        // SAFETY: as in `register`; `entry` is linked (registered and not yet dropped).
        unsafe {
            let (prev, next) = ((*entry).prev, (*entry).next);
            if prev.is_null() {
                (*descriptor).first_entry = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*descriptor).relevant_entry = entry;
            (*descriptor).action_flag = JIT_UNREGISTER;
        }
        __jit_debug_register_code();
    }
}

/// A function for the debugger: its symbol name, address and length.
pub(crate) struct JitFunction {
    pub(crate) name: String,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// The object file describing code loaded at `text` with `functions` in it and its
/// `.eh_frame` (`eh_frame_bytes`, loaded at `eh_frame_addr`).
pub(crate) fn object_image(
    text: Range<usize>,
    functions: &[JitFunction],
    eh_frame_addr: usize,
    eh_frame_bytes: &[u8],
) -> Result<Vec<u8>, object::write::Error> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text_id = obj.section_id(StandardSection::Text);
    // No bytes: the code is already in memory (SHT_NOBITS, executable).
    obj.append_section_bss(text_id, (text.end - text.start) as u64, 16);
    obj.section_mut(text_id).flags = SectionFlags::Elf {
        sh_flags: u64::from(object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR),
    };
    for f in functions {
        obj.add_symbol(Symbol {
            name: f.name.clone().into_bytes(),
            value: (f.start - text.start) as u64,
            size: f.len as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(text_id),
            flags: SymbolFlags::None,
        });
    }
    if !eh_frame_bytes.is_empty() {
        let eh = obj.add_section(
            Vec::new(),
            b".eh_frame".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        obj.append_section_data(eh, eh_frame_bytes, 8);
        obj.section_mut(eh).flags = SectionFlags::Elf {
            sh_flags: u64::from(object::elf::SHF_ALLOC),
        };
    }
    let mut bytes = obj.write()?;
    set_section_address(&mut bytes, b".text", text.start as u64);
    set_section_address(&mut bytes, b".eh_frame", eh_frame_addr as u64);
    Ok(bytes)
}

/// Sets `sh_addr` of the section named `name` in the ELF64 little-endian `bytes` (as
/// written by `object`; a missing section is left alone).
fn set_section_address(bytes: &mut [u8], name: &[u8], addr: u64) {
    use object::read::elf::{ElfFile64, FileHeader};
    use object::{Object as _, ObjectSection as _};
    let Ok(file) = ElfFile64::<Endianness>::parse(&*bytes) else {
        return;
    };
    let Some(index) = file.section_by_name_bytes(name).map(|s| s.index().0) else {
        return;
    };
    let header = file.elf_header();
    let shoff = header.e_shoff(Endianness::Little) as usize;
    let shentsize = usize::from(header.e_shentsize(Endianness::Little));
    // `sh_addr` follows sh_name (4), sh_type (4) and sh_flags (8).
    let at = shoff + index * shentsize + 16;
    if let Some(field) = bytes.get_mut(at..at + 8) {
        field.copy_from_slice(&addr.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::ElfFile64;
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    #[test]
    fn the_image_places_symbols_and_eh_frame_at_their_loaded_addresses() {
        let text = 0x7f00_1234_0000..0x7f00_1234_0400;
        let functions = [
            JitFunction {
                name: "wasm[m]::a".into(),
                start: text.start,
                len: 0x100,
            },
            JitFunction {
                name: "wasm[m]::b".into(),
                start: text.start + 0x180,
                len: 0x40,
            },
        ];
        let eh = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let image = object_image(text.clone(), &functions, text.end + 0x10, &eh).unwrap();
        let file = ElfFile64::<Endianness>::parse(&*image).unwrap();
        let t = file.section_by_name(".text").unwrap();
        assert_eq!(t.address(), text.start as u64);
        assert_eq!(t.size(), 0x400);
        let e = file.section_by_name(".eh_frame").unwrap();
        assert_eq!(e.address(), (text.end + 0x10) as u64);
        assert_eq!(e.data().unwrap(), eh);
        let symbols: Vec<(String, u64, u64)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text)
            .map(|s| {
                (
                    s.name().unwrap().to_string(),
                    t.address() + s.address(),
                    s.size(),
                )
            })
            .collect();
        assert_eq!(
            symbols,
            [
                ("wasm[m]::a".to_string(), text.start as u64, 0x100),
                ("wasm[m]::b".to_string(), text.start as u64 + 0x180, 0x40)
            ]
        );
    }

    /// Our entries in the debugger's list, first to last.
    fn listed(ours: &[*const u8]) -> Vec<*const u8> {
        let _guard = LOCK.lock().unwrap();
        let mut out = Vec::new();
        // SAFETY: under LOCK; every linked entry belongs to a live registration.
        unsafe {
            let mut e = (*addr_of_mut!(__jit_debug_descriptor)).first_entry;
            let mut prev: *mut JitCodeEntry = null_mut();
            while !e.is_null() {
                assert_eq!((*e).prev, prev, "back links match forward links");
                if ours.contains(&(*e).symfile_addr) {
                    out.push((*e).symfile_addr);
                }
                prev = e;
                e = (*e).next;
            }
        }
        out
    }

    #[test]
    fn registrations_link_in_newest_first_and_unlink_on_drop() {
        let a = GdbJitRegistration::register(vec![1; 8]);
        let b = GdbJitRegistration::register(vec![2; 8]);
        let c = GdbJitRegistration::register(vec![3; 8]);
        let ours = [a._image.as_ptr(), b._image.as_ptr(), c._image.as_ptr()];
        assert_eq!(listed(&ours), [ours[2], ours[1], ours[0]]);
        drop(b);
        assert_eq!(listed(&ours), [ours[2], ours[0]]);
        drop(c);
        assert_eq!(listed(&ours), [ours[0]]);
        drop(a);
        assert!(listed(&ours).is_empty());
    }
}
