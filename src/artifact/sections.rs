//! The one list of sections in a framewalk artifact, and their fixed-width formats.
//!
//! An artifact is an ELF64 little-endian x86-64 relocatable object:
//!
//! ```text
//! .text            machine code of every function and entry trampoline (16-byte aligned)
//! .rela.text       relocations: calls between functions (R_X86_64_PLT32/PC32) and to
//!                  libcalls (R_X86_64_64 against undefined `framewalk_libcall_*`)
//! .symtab          one symbol per function body `framewalk_wasm_func_<index>`
//! .fw.header       magic, version, checksum, ISA fingerprint, interface (HEADER_SIZE bytes)
//! .fw.functions    one FUNCTION_RECORD_SIZE record per defined function, by index:
//!                  ┌───────────┬────────┬─────┬─────────────┬──────────┬──────────┬──────────┐
//!                  │func_index │ offset │ len │ tramp_offset│ tramp_len│ name_off │ name_len │  u32 each
//!                  └───────────┴────────┴─────┴─────────────┴──────────┴──────────┴──────────┘
//!                  tramp_len = 0: no entry trampoline. name_len = 0: no name.
//! .fw.names        UTF-8 function names, referenced by the function records
//! .fw.traps        sorted (text offset u32, trap code u32) pairs
//! .fw.addrmap      sorted (text offset u32, wasm offset u32) pairs
//! .fw.stackmaps    the stack-map section (see `crate::stackmap`)
//! .fw.wasm         the original wasm binary (module metadata is re-read from it)
//! .eh_frame        System V CFI (DWARF call frame information) of every function and
//!                  entry trampoline, for debuggers, profilers and tests; see below
//! ```
//!
//! `.eh_frame` is position independent once loaded: its FDE addresses are PC-relative
//! (`DW_EH_PE_pcrel | DW_EH_PE_sdata4`) and computed for the layout every loader uses,
//! with the section's bytes copied to [`eh_frame_offset`]`(text length)` bytes after the
//! first byte of the loaded text (like a linker placing `.eh_frame` after `.text`):
//!
//! ```text
//!   text base                      text base + eh_frame_offset(text.len())
//!   ┌───────────────────────┬─pad─┬────────────────────────────┐
//!   │ .text (relocated)     │     │ .eh_frame (copied as is)   │
//!   └───────────────────────┴─────┴────────────────────────────┘
//!   FDE address field at E + k holds  function start - (E + k)
//! ```
//!
//! So no relocation of `.eh_frame` is needed at load; in the ELF object itself (where
//! every section is at address 0) its addresses are not meaningful to other tools. The
//! frame-pointer walker never reads it.
//!
//! All integers are little-endian and independent of the host's pointer size.
//! The checksum (FNV-1a 64 over the whole file with the checksum field zeroed) detects
//! corruption before any code is mapped.

/// The machine code.
pub const TEXT: &str = ".text";
/// Header: magic, version, checksum, ISA fingerprint.
pub const HEADER: &str = ".fw.header";
/// Function table.
pub const FUNCTIONS: &str = ".fw.functions";
/// Function names.
pub const NAMES: &str = ".fw.names";
/// Trap sites.
pub const TRAPS: &str = ".fw.traps";
/// Text offset → wasm offset.
pub const ADDRESS_MAP: &str = ".fw.addrmap";
/// Stack maps.
pub const STACK_MAPS: &str = ".fw.stackmaps";
/// The wasm binary.
pub const WASM: &str = ".fw.wasm";
/// Call frame information of the text (not read by the walker).
pub const EH_FRAME: &str = ".eh_frame";

/// Every section besides the text, in the order they are written.
pub const ALL_METADATA: &[&str] = &[
    HEADER,
    FUNCTIONS,
    NAMES,
    TRAPS,
    ADDRESS_MAP,
    STACK_MAPS,
    WASM,
    EH_FRAME,
];

/// `.fw.header` magic.
pub const MAGIC: [u8; 8] = *b"FRAMEWLK";
/// Current format version (4: the header holds the interface fingerprint; 3: the memory
/// libcalls take 64-bit operands, for memory64).
pub const VERSION: u32 = 4;
/// Header layout: `magic[8]`, version u32, reserved u32, checksum u64, isa fingerprint
/// u64, interface fingerprint u64 (`ModuleInfo::interface_fingerprint` of the module the
/// code was compiled for, compared at load with the embedded wasm's).
pub const HEADER_SIZE: usize = 40;
/// Offset of the checksum inside the header.
pub const CHECKSUM_OFFSET: usize = 16;
/// Offset of the ISA fingerprint inside the header.
pub const ISA_OFFSET: usize = 24;
/// Offset of the interface fingerprint inside the header.
pub const INTERFACE_OFFSET: usize = 32;
/// Size of one `.fw.functions` record.
pub const FUNCTION_RECORD_SIZE: usize = 28;
/// Size of one `.fw.traps` or `.fw.addrmap` entry.
pub const PAIR_SIZE: usize = 8;
/// Prefix of function symbols.
pub const FUNC_SYMBOL_PREFIX: &str = "framewalk_wasm_func_";

/// Alignment of the loaded `.eh_frame` after the text.
pub const EH_FRAME_ALIGN: usize = 16;

/// Where a loader puts `.eh_frame`, as an offset from the start of the loaded text of
/// `text_len` bytes; the section's PC-relative addresses assume it (`None` on
/// overflow).
pub fn eh_frame_offset(text_len: usize) -> Option<usize> {
    text_len.checked_next_multiple_of(EH_FRAME_ALIGN)
}

/// FNV-1a 64 of `parts`, in order.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
