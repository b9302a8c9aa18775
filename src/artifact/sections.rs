//! The one list of sections in a framewalk artifact, and their fixed-width formats.
//!
//! An artifact is an ELF64 little-endian x86-64 relocatable object:
//!
//! ```text
//! .text            machine code of every function and entry trampoline (16-byte aligned)
//! .rela.text       relocations: calls between functions (R_X86_64_PLT32/PC32) and to
//!                  libcalls (R_X86_64_64 against undefined `framewalk_libcall_*`)
//! .symtab          one symbol per function body `framewalk_wasm_func_<index>`
//! .fw.header       magic, version, checksum, ISA fingerprint           (HEADER_SIZE bytes)
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
//! ```
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

/// Every framewalk-specific section, in the order they are written.
pub const ALL_METADATA: &[&str] = &[
    HEADER,
    FUNCTIONS,
    NAMES,
    TRAPS,
    ADDRESS_MAP,
    STACK_MAPS,
    WASM,
];

/// `.fw.header` magic.
pub const MAGIC: [u8; 8] = *b"FRAMEWLK";
/// Current format version.
pub const VERSION: u32 = 1;
/// Header layout: `magic[8]`, version u32, reserved u32, checksum u64, isa fingerprint u64.
pub const HEADER_SIZE: usize = 32;
/// Offset of the checksum inside the header.
pub const CHECKSUM_OFFSET: usize = 16;
/// Offset of the ISA fingerprint inside the header.
pub const ISA_OFFSET: usize = 24;
/// Size of one `.fw.functions` record.
pub const FUNCTION_RECORD_SIZE: usize = 28;
/// Size of one `.fw.traps` or `.fw.addrmap` entry.
pub const PAIR_SIZE: usize = 8;
/// Prefix of function symbols.
pub const FUNC_SYMBOL_PREFIX: &str = "framewalk_wasm_func_";

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
