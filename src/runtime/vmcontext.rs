//! The structures generated code reads and writes, and where they sit in an instance's
//! vmctx.
//!
//! Every struct here is `#[repr(C)]`; the compiler reads field offsets from the `*_OFFSET`
//! constants (computed with `memoffset::offset_of!`) and a test pins each one, so Rust and
//! the generated code cannot disagree silently.
//!
//! An instance's vmctx is one allocation laid out by [`VMOffsets`]:
//!
//! ```text
//!  vmctx + 0   ┌──────────────────────────────┐
//!              │ magic: u32  │ (padding)       │
//!          8   │ store: *mut VMStoreContext   │  stack limit, activation list head
//!         16   │ instance: *mut () (runtime)  │  back pointer for libcalls
//!         24   ├──────────────────────────────┤
//!              │ type_ids: [u32; types]       │  engine-wide id per module type index
//!              ├──────────────────────────────┤  (8-byte aligned)
//!              │ func_refs: [VMFuncRef; funcs]│  imported: a copy of the import's
//!              ├──────────────────────────────┤
//!              │ memories: [*mut VMMemoryDefinition; memories]
//!              │ tables:   [*mut VMTableDefinition;  tables]
//!              │ globals:  [*mut VMGlobalDefinition; globals]
//!              └──────────────────────────────┘
//! ```
//!
//! Memories, tables and globals are reached through one pointer each whether they are
//! imported or defined, so an exported entity can be shared by pointer and never copied.
//! The definitions they point at are boxed and owned by the store, so their addresses are
//! stable for the store's lifetime.

use crate::gc::VMExternRefSet;
use crate::unwind::Activation;
use memoffset::offset_of;

/// The four words that describe a callable function. `ref.func` values and funcref table
/// elements are pointers to one of these (null is the null reference).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VMFuncRef {
    /// Entry point with the wasm calling convention: `(callee_vmctx, caller_vmctx, params..) -> results`.
    pub wasm_call: *const u8,
    /// Entry point with the array calling convention (see [`ArrayCallFn`]); null for functions
    /// that never escape to the host.
    pub array_call: *const u8,
    /// The callee's vmctx (an instance's vmctx, or a host function's context).
    pub vmctx: *mut u8,
    /// Engine-wide signature id, compared by `call_indirect`.
    pub type_id: u32,
    /// [`VMFuncRef::HOST`] for a host function, 0 for a wasm function. Lets the host
    /// → wasm entry tell the two apart without loading through `vmctx`.
    pub flags: u32,
}

impl VMFuncRef {
    /// `flags` bit of a host function (its `vmctx` is a host function context).
    pub const HOST: u32 = 1;
    /// Offset of `wasm_call`.
    pub const WASM_CALL_OFFSET: u32 = offset_of!(VMFuncRef, wasm_call) as u32;
    /// Offset of `array_call`.
    pub const ARRAY_CALL_OFFSET: u32 = offset_of!(VMFuncRef, array_call) as u32;
    /// Offset of `vmctx`.
    pub const VMCTX_OFFSET: u32 = offset_of!(VMFuncRef, vmctx) as u32;
    /// Offset of `type_id`.
    pub const TYPE_ID_OFFSET: u32 = offset_of!(VMFuncRef, type_id) as u32;
    /// Size in bytes.
    pub const SIZE: u32 = std::mem::size_of::<VMFuncRef>() as u32;
}

/// The array calling convention: arguments are read from and results written to
/// `values[..]`, one 16-byte [`ValRaw`] each; returns `true` on success. Entry trampolines
/// (host → wasm) and host functions (wasm → host) both use it.
pub type ArrayCallFn = unsafe extern "C" fn(
    callee_vmctx: *mut u8,
    caller_vmctx: *mut u8,
    values: *mut ValRaw,
    len: usize,
) -> bool;

/// One value in the array calling convention, little-endian: i32 and f32 use the low 4
/// bytes, i64 and f64 the low 8; references are pointers (0 is null); a v128 uses all
/// 16. One slot per value whatever its type, so a value's slot is its index.
///
/// 16 bytes for every value rather than 8-byte slots with two per `v128`: every user of
/// the array (trampolines, `Func::call`, `Func::new`, typed calls) stays index-based,
/// and the untyped rows of `benches/call_floor.rs` (`untyped`, `Func::new`) show no
/// cost worth that bookkeeping.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ValRaw(pub u128);

impl ValRaw {
    /// Size in bytes of one slot.
    pub const SIZE: u32 = 16;
    /// log2 of the slots' alignment (a `u128` is 16-aligned on x86-64), as Cranelift's
    /// `StackSlotData` takes it.
    pub const ALIGN_SHIFT: u8 = 4;

    /// A 64-bit (or narrower, zero-extended) value.
    #[inline(always)]
    pub fn from_u64(v: u64) -> ValRaw {
        ValRaw(u128::from(v))
    }

    /// The low 64 bits.
    #[inline(always)]
    pub fn u64(self) -> u64 {
        self.0 as u64
    }
}

const _: () = {
    assert!(std::mem::size_of::<ValRaw>() == ValRaw::SIZE as usize);
    assert!(std::mem::align_of::<ValRaw>() == 1 << ValRaw::ALIGN_SHIFT);
};

/// A linear memory as generated code sees it.
#[repr(C)]
#[derive(Debug)]
pub struct VMMemoryDefinition {
    /// Start of the memory. Never moves (the memory reserves 4 GiB plus a 2 GiB guard
    /// up front, `runtime::storage::MEMORY_RESERVATION`).
    pub base: *mut u8,
    /// Accessible length in bytes; changes on `memory.grow`.
    pub current_length: usize,
}

impl VMMemoryDefinition {
    /// Offset of `base`.
    pub const BASE_OFFSET: u32 = offset_of!(VMMemoryDefinition, base) as u32;
    /// Offset of `current_length`.
    pub const LENGTH_OFFSET: u32 = offset_of!(VMMemoryDefinition, current_length) as u32;
}

/// A table as generated code sees it: `current_elements` pointer-sized slots at `base`.
#[repr(C)]
#[derive(Debug)]
pub struct VMTableDefinition {
    /// The elements (funcref: `*const VMFuncRef`; externref: an `ExternRef` pointer).
    pub base: *mut usize,
    /// Number of elements.
    pub current_elements: u32,
    /// Keeps the size a multiple of 8.
    pub _pad: u32,
}

impl VMTableDefinition {
    /// Offset of `base`.
    pub const BASE_OFFSET: u32 = offset_of!(VMTableDefinition, base) as u32;
    /// Offset of `current_elements`.
    pub const LENGTH_OFFSET: u32 = offset_of!(VMTableDefinition, current_elements) as u32;
}

/// A global's storage: 16 bytes holding any supported value type.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct VMGlobalDefinition {
    /// The value's bits, little-endian (i32/f32 in the low 4 bytes, i64/f64 in the low
    /// 8; a reference as a pointer in the low 8; a v128 in all 16).
    pub bits: u128,
}

/// Per-store state that generated code reaches through `vmctx.store`.
#[repr(C)]
#[derive(Debug)]
pub struct VMStoreContext {
    /// Lowest address the wasm stack may grow to; checked in every function prologue.
    /// 0 disables the check.
    pub stack_limit: usize,
    /// The newest activation of this store on the current thread's stack, or null.
    pub activation_head: *const Activation,
    /// The over-approximated set of externrefs wasm frames may hold.
    pub externrefs: VMExternRefSet,
    /// Collect when `externrefs.len` reaches this (the store's adaptive threshold).
    /// Generated code compares against it where a reference enters the set from a
    /// table or global, and collects from wasm (see `runtime::libcalls`).
    pub gc_threshold: usize,
    /// The engine's epoch counter ([`Engine::increment_epoch`](crate::Engine::increment_epoch));
    /// generated code compiled with `Config::epoch_interruption` reads it at every
    /// function entry and loop header.
    pub epoch_ptr: *const std::sync::atomic::AtomicU64,
    /// The epoch at which those checks trap with `TrapCode::Interrupt`
    /// (`u64::MAX`: never, the default).
    pub epoch_deadline: u64,
}

impl VMStoreContext {
    /// Offset of `epoch_ptr`.
    pub const EPOCH_PTR_OFFSET: u32 = offset_of!(VMStoreContext, epoch_ptr) as u32;
    /// Offset of `epoch_deadline`.
    pub const EPOCH_DEADLINE_OFFSET: u32 = offset_of!(VMStoreContext, epoch_deadline) as u32;
    /// Offset of `stack_limit`.
    pub const STACK_LIMIT_OFFSET: u32 = offset_of!(VMStoreContext, stack_limit) as u32;
    /// Offset of `activation_head`.
    pub const ACTIVATION_HEAD_OFFSET: u32 = offset_of!(VMStoreContext, activation_head) as u32;
    /// Offset of the root set's head.
    pub const EXTERNREF_SET_HEAD_OFFSET: u32 =
        offset_of!(VMStoreContext, externrefs) as u32 + VMExternRefSet::HEAD_OFFSET;
    /// Offset of the root set's length.
    pub const EXTERNREF_SET_LEN_OFFSET: u32 =
        offset_of!(VMStoreContext, externrefs) as u32 + VMExternRefSet::LEN_OFFSET;
    /// Offset of `gc_threshold`.
    pub const GC_THRESHOLD_OFFSET: u32 = offset_of!(VMStoreContext, gc_threshold) as u32;
}

/// Magic value at offset 0 of every instance vmctx.
pub const VMCTX_MAGIC: u32 = u32::from_le_bytes(*b"fwvm");
/// Magic value at offset 0 of every host function context.
pub const HOST_CTX_MAGIC: u32 = u32::from_le_bytes(*b"fwhf");

/// Field offsets of one module's vmctx. Computed once per module from its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VMOffsets {
    num_types: u32,
    num_funcs: u32,
    num_memories: u32,
    num_tables: u32,
    num_globals: u32,
    type_ids: u32,
    func_refs: u32,
    memories: u32,
    tables: u32,
    globals: u32,
    size: u32,
}

impl VMOffsets {
    /// Offset of the magic number.
    pub const MAGIC: u32 = 0;
    /// Offset of the `*mut VMStoreContext`.
    pub const STORE: u32 = 8;
    /// Offset of the runtime's instance pointer.
    pub const INSTANCE: u32 = 16;
    const HEADER: u32 = 24;

    /// Lays out a vmctx for a module with these counts. Returns `None` if it would not fit
    /// in `u32` offsets (a module that large is rejected).
    pub fn new(
        num_types: u32,
        num_funcs: u32,
        num_memories: u32,
        num_tables: u32,
        num_globals: u32,
    ) -> Option<Self> {
        let type_ids = Self::HEADER;
        let func_refs = type_ids
            .checked_add(num_types.checked_mul(4)?)?
            .checked_next_multiple_of(8)?;
        let memories = func_refs.checked_add(num_funcs.checked_mul(VMFuncRef::SIZE)?)?;
        let tables = memories.checked_add(num_memories.checked_mul(8)?)?;
        let globals = tables.checked_add(num_tables.checked_mul(8)?)?;
        let size = globals.checked_add(num_globals.checked_mul(8)?)?;
        Some(VMOffsets {
            num_types,
            num_funcs,
            num_memories,
            num_tables,
            num_globals,
            type_ids,
            func_refs,
            memories,
            tables,
            globals,
            size,
        })
    }

    /// Offset of the engine-wide type id of module type `index`.
    pub fn type_id(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_types);
        self.type_ids + index * 4
    }

    /// Offset of the `VMFuncRef` of function `index`.
    pub fn func_ref(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_funcs);
        self.func_refs + index * VMFuncRef::SIZE
    }

    /// Offset of the pointer to memory `index`'s definition.
    pub fn memory(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_memories);
        self.memories + index * 8
    }

    /// Offset of the pointer to table `index`'s definition.
    pub fn table(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_tables);
        self.tables + index * 8
    }

    /// Offset of the pointer to global `index`'s definition.
    pub fn global(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_globals);
        self.globals + index * 8
    }

    /// Total size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_match_what_generated_code_assumes() {
        assert_eq!(VMFuncRef::WASM_CALL_OFFSET, 0);
        assert_eq!(VMFuncRef::ARRAY_CALL_OFFSET, 8);
        assert_eq!(VMFuncRef::VMCTX_OFFSET, 16);
        assert_eq!(VMFuncRef::TYPE_ID_OFFSET, 24);
        assert_eq!(VMFuncRef::SIZE, 32);
        assert_eq!(VMMemoryDefinition::BASE_OFFSET, 0);
        assert_eq!(VMMemoryDefinition::LENGTH_OFFSET, 8);
        assert_eq!(VMTableDefinition::BASE_OFFSET, 0);
        assert_eq!(VMTableDefinition::LENGTH_OFFSET, 8);
        assert_eq!(std::mem::size_of::<VMGlobalDefinition>(), 16);
        assert_eq!(std::mem::size_of::<ValRaw>(), 16);
        assert_eq!(VMStoreContext::STACK_LIMIT_OFFSET, 0);
        assert_eq!(VMStoreContext::ACTIVATION_HEAD_OFFSET, 8);
        assert_eq!(VMStoreContext::EXTERNREF_SET_HEAD_OFFSET, 16);
        assert_eq!(VMStoreContext::EXTERNREF_SET_LEN_OFFSET, 24);
    }

    #[test]
    fn layout_is_ordered_and_aligned() {
        let o = VMOffsets::new(3, 2, 1, 1, 2).unwrap();
        assert_eq!(o.type_id(0), 24);
        assert_eq!(o.func_ref(0), 40); // 24 + 12 rounded up to 8
        assert_eq!(o.memory(0), 40 + 64);
        assert_eq!(o.table(0), 112);
        assert_eq!(o.global(1), 128);
        assert_eq!(o.size(), 136);
        assert!(VMOffsets::new(u32::MAX, u32::MAX, 0, 0, 0).is_none());
    }
}
