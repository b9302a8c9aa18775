//! The storage behind memories, tables and globals. Each is boxed and owned by a store;
//! generated code holds pointers to the `#[repr(C)]` definition at the start of each.
//!
//! # Linear memory layout
//!
//! Every linear memory is one reservation whose base never moves. A 32-bit memory,
//! whatever its declared maximum, reserves [`MEMORY_RESERVATION`] bytes:
//!
//! ```text
//!   base                  base + current_length     base + MEMORY_BOUND   base + MEMORY_RESERVATION
//!   | read-write (wasm pages) | PROT_NONE (grow makes it RW) | PROT_NONE guard (never RW) |
//!   |<------------- MEMORY_BOUND = 4 GiB ------------------>|<-- MEMORY_GUARD = 2 GiB -->|
//! ```
//!
//! Generated code relies on this (see `compile::environ`): a 32-bit wasm index plus a
//! static offset of at most `MEMORY_GUARD` minus the access size always lands inside
//! the reservation, so such accesses carry no explicit bounds check; an out-of-bounds
//! one faults on a `PROT_NONE` page and the signal handler turns the fault into a
//! `MemoryOutOfBounds` trap. `current_length` is always a multiple of [`WASM_PAGE`] (a
//! multiple of the host page size), so an access straddling the end faults too.
//!
//! A 64-bit memory (memory64) reserves its largest size plus the same guard:
//!
//! ```text
//!   base                  base + current_length     base + max bytes      + MEMORY_GUARD
//!   | read-write (wasm pages) | PROT_NONE (grow makes it RW) | PROT_NONE guard (never RW) |
//! ```
//!
//! where the largest size is its declared maximum, capped at [`MEMORY64_MAX_PAGES`]
//! (64 GiB: a 64-bit index can name far more than any host can reserve, so there is
//! no bound the guard could cover). Generated code checks each access's index
//! against `current_length` explicitly and leaves the static offset and access size
//! to the guard, so an index at or below the length plus an offset of at most
//! `MEMORY_GUARD` stays inside the reservation, and an access past the end still
//! faults with its exact address. `memory.grow` beyond the cap fails (-1); a memory
//! whose minimum exceeds it cannot be created.

use super::vmcontext::{VMGlobalDefinition, VMMemoryDefinition, VMTableDefinition};
use crate::gc::{release, retain};
use crate::types::{GlobalType, MemoryType, TableType, ValType};

/// WebAssembly page size.
pub const WASM_PAGE: usize = 65536;
/// The largest table framewalk allocates, in elements (a larger `table.grow` fails with -1).
pub const MAX_TABLE_ELEMENTS: u32 = 10_000_000;

/// The bytes of a linear memory that 32-bit wasm addresses can reach without the
/// static offset: 4 GiB, the `HeapStyle::Static` bound generated code is compiled with.
pub const MEMORY_BOUND: u64 = 1 << 32;
/// The inaccessible guard region after [`MEMORY_BOUND`]: 2 GiB, the
/// `offset_guard_size` generated code is compiled with. Accesses whose static offset
/// plus size fit in it need no explicit bounds check.
pub const MEMORY_GUARD: u64 = 2 << 30;
/// The virtual reservation of every linear memory: bound plus guard (6 GiB, `PROT_NONE`
/// and `MAP_NORESERVE` until grown, so it costs address space, not memory).
pub const MEMORY_RESERVATION: u64 = MEMORY_BOUND + MEMORY_GUARD;

/// The most pages a 64-bit memory can have in framewalk (64 GiB), whatever its type
/// allows: its reservation is this (or its smaller declared maximum) plus
/// [`MEMORY_GUARD`], and the base never moves.
pub const MEMORY64_MAX_PAGES: u64 = 1 << 20;
/// The most pages a 32-bit memory can have: 4 GiB, its whole index space.
pub const MEMORY32_MAX_PAGES: u64 = 1 << 16;

// The largest 32-bit memory (65,536 pages) fills the bound exactly, and the bound is a
// multiple of the host page size, so the guard starts on a page boundary.
const _: () = assert!(MEMORY32_MAX_PAGES * WASM_PAGE as u64 == MEMORY_BOUND);

/// A linear memory: a reservation (see the module doc: [`MEMORY_RESERVATION`] bytes
/// for a 32-bit memory whatever its maximum, which only limits `grow`; the capped
/// maximum plus [`MEMORY_GUARD`] for a 64-bit one), of which `current_length` bytes
/// are accessible. The base never moves.
#[repr(C)]
#[derive(Debug)]
pub struct MemoryStorage {
    /// What generated code reads. Must stay the first field.
    pub def: VMMemoryDefinition,
    reserved: usize,
    max_pages: u64,
    /// The memory's type.
    pub ty: MemoryType,
}

impl MemoryStorage {
    /// Reserves and initializes a memory of type `ty`. Fails if its minimum exceeds
    /// its maximum or what framewalk can reserve for its index type
    /// ([`MEMORY32_MAX_PAGES`], [`MEMORY64_MAX_PAGES`]), or if the OS refuses.
    pub fn new(ty: MemoryType) -> std::io::Result<Box<MemoryStorage>> {
        let cap = if ty.is_64 {
            MEMORY64_MAX_PAGES
        } else {
            MEMORY32_MAX_PAGES
        };
        if ty.limits.min > cap {
            let bits = if ty.is_64 { 64 } else { 32 };
            return Err(std::io::Error::other(format!(
                "a {bits}-bit memory of {} pages: framewalk's limit is {cap} pages",
                ty.limits.min
            )));
        }
        let max_pages = ty.limits.max.unwrap_or(cap).min(cap);
        let reserved = if ty.is_64 {
            // At most 2^20 pages: no overflow in the multiplication.
            max_pages * WASM_PAGE as u64 + MEMORY_GUARD
        } else {
            // At most 65,536 pages = MEMORY_BOUND, so `grow` stays inside the bound.
            MEMORY_RESERVATION
        };
        let reserved = usize::try_from(reserved).map_err(std::io::Error::other)?;
        // SAFETY: an anonymous private PROT_NONE reservation; checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut m = Box::new(MemoryStorage {
            def: VMMemoryDefinition {
                base: base.cast(),
                current_length: 0,
            },
            reserved,
            max_pages,
            ty,
        });
        if m.grow(ty.limits.min).is_none() {
            return Err(std::io::Error::other(
                "initial memory size exceeds its maximum",
            ));
        }
        Ok(m)
    }

    /// Current size in pages.
    pub fn pages(&self) -> u64 {
        (self.def.current_length / WASM_PAGE) as u64
    }

    /// Grows by `delta` pages; returns the old size, or `None` if it would exceed the
    /// maximum (declared, or framewalk's cap for the index type) or the OS refused.
    pub fn grow(&mut self, delta: u64) -> Option<u64> {
        let old = self.pages();
        let new = old.checked_add(delta)?;
        if new > self.max_pages {
            return None;
        }
        if delta > 0 {
            // `new <= max_pages`, whose bytes plus the guard fit `reserved` (a usize).
            let new_len = usize::try_from(new).ok()? * WASM_PAGE;
            debug_assert!(new_len <= self.reserved);
            // SAFETY: `base..base+new_len` lies inside our reservation.
            let rc = unsafe {
                libc::mprotect(
                    self.def.base.cast(),
                    new_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return None;
            }
            self.def.current_length = new_len;
        }
        Some(old)
    }

    /// The wasm address of host address `addr` if it lies in this memory's reservation
    /// (accessible or not): `addr - base`.
    pub fn wasm_address(&self, addr: usize) -> Option<u64> {
        let offset = addr.checked_sub(self.def.base as usize)?;
        (offset < self.reserved).then_some(offset as u64)
    }

    /// The accessible bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: `current_length` bytes from `base` are mapped read-write.
        unsafe { std::slice::from_raw_parts(self.def.base, self.def.current_length) }
    }

    /// The accessible bytes, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes this the only Rust view.
        unsafe { std::slice::from_raw_parts_mut(self.def.base, self.def.current_length) }
    }
}

impl Drop for MemoryStorage {
    fn drop(&mut self) {
        // SAFETY: we own the reservation.
        unsafe {
            libc::munmap(self.def.base.cast(), self.reserved);
        }
    }
}

/// A table: pointer-sized elements (`*const VMFuncRef` or an externref pointer; 0 = null).
#[repr(C)]
#[derive(Debug)]
pub struct TableStorage {
    /// What generated code reads. Must stay the first field.
    pub def: VMTableDefinition,
    elements: Vec<usize>,
    /// The table's type.
    pub ty: TableType,
}

impl TableStorage {
    fn holds_externrefs(&self) -> bool {
        self.ty.element == ValType::ExternRef
    }

    /// Adds `n` owners to an externref `raw` (a table slot owns its reference).
    fn retain_n(&self, raw: usize, n: usize) {
        if raw != 0 && self.holds_externrefs() {
            for _ in 0..n {
                // SAFETY: `raw` is a live header: the caller holds it.
                unsafe { retain(raw) };
            }
        }
    }

    fn release_one(&self, raw: usize) {
        if raw != 0 && self.holds_externrefs() {
            // SAFETY: the slot owned one count of `raw`.
            unsafe { release(raw) };
        }
    }

    /// A table of type `ty` with every element `init` (a live reference or 0).
    pub fn new(ty: TableType, init: usize) -> Option<Box<TableStorage>> {
        if ty.limits.min > u64::from(MAX_TABLE_ELEMENTS) {
            return None;
        }
        let mut t = Box::new(TableStorage {
            def: VMTableDefinition {
                base: std::ptr::null_mut(),
                current_elements: 0,
                _pad: 0,
            },
            elements: vec![init; ty.limits.min as usize],
            ty,
        });
        t.retain_n(init, ty.limits.min as usize);
        t.sync();
        Some(t)
    }

    /// Stores `raw` at `index` (in bounds), moving counts from the old value to the new.
    pub fn set(&mut self, index: usize, raw: usize) {
        self.retain_n(raw, 1);
        let old = std::mem::replace(&mut self.elements[index], raw);
        self.release_one(old);
    }

    /// Fills `range` (in bounds) with `raw`.
    pub fn fill(&mut self, range: std::ops::Range<usize>, raw: usize) {
        for i in range {
            self.set(i, raw);
        }
    }

    /// Copies `values` into `at..` (in bounds), with counts.
    pub fn write_all(&mut self, at: usize, values: &[usize]) {
        for (i, v) in values.iter().enumerate() {
            self.set(at + i, *v);
        }
    }

    /// `copy_within` with counts (the ranges may overlap).
    pub fn copy_within(&mut self, src: std::ops::Range<usize>, dst: usize) {
        if self.holds_externrefs() {
            for v in &self.elements[src.clone()] {
                if *v != 0 {
                    // SAFETY: a slot's value is live.
                    unsafe { retain(*v) };
                }
            }
            for v in &self.elements[dst..dst + src.len()] {
                if *v != 0 {
                    // SAFETY: the slot owned this count; the retains above keep any
                    // value that is also being copied alive.
                    unsafe { release(*v) };
                }
            }
        }
        self.elements.copy_within(src, dst);
    }

    fn sync(&mut self) {
        self.def.base = self.elements.as_mut_ptr();
        self.def.current_elements = self.elements.len() as u32;
    }

    /// Number of elements.
    pub fn len(&self) -> u32 {
        self.elements.len() as u32
    }

    /// The elements.
    pub fn elements(&self) -> &[usize] {
        &self.elements
    }

    /// Grows by `delta` elements set to `init`; returns the old size or `None`.
    pub fn grow(&mut self, delta: u32, init: usize) -> Option<u32> {
        let old = self.len();
        let new = old.checked_add(delta)?;
        let max = self
            .ty
            .limits
            .max
            .unwrap_or(u64::MAX)
            .min(u64::from(MAX_TABLE_ELEMENTS));
        if u64::from(new) > max {
            return None;
        }
        self.elements.resize(new as usize, init);
        self.retain_n(init, delta as usize);
        self.sync();
        Some(old)
    }
}

impl Drop for TableStorage {
    fn drop(&mut self) {
        for v in std::mem::take(&mut self.elements) {
            self.release_one(v);
        }
    }
}

/// A global's storage. An externref global owns one count of its value.
#[repr(C)]
#[derive(Debug)]
pub struct GlobalStorage {
    /// What generated code reads. Must stay the first field.
    pub def: VMGlobalDefinition,
    /// The global's type.
    pub ty: GlobalType,
}

impl GlobalStorage {
    /// A global holding `bits` (for an externref: a live reference or 0, retained here).
    pub fn new(ty: GlobalType, bits: u128) -> Box<GlobalStorage> {
        if ty.content == ValType::ExternRef && bits != 0 {
            // SAFETY: the caller holds the reference.
            unsafe { retain(bits as usize) };
        }
        Box::new(GlobalStorage {
            def: VMGlobalDefinition { bits },
            ty,
        })
    }

    /// Replaces the value, moving counts for externrefs.
    pub fn set(&mut self, bits: u128) {
        let is_ref = self.ty.content == ValType::ExternRef;
        if is_ref && bits != 0 {
            // SAFETY: the caller holds the new reference.
            unsafe { retain(bits as usize) };
        }
        let old = std::mem::replace(&mut self.def.bits, bits);
        if is_ref && old != 0 {
            // SAFETY: the global owned one count of the old value.
            unsafe { release(old as usize) };
        }
    }
}

impl Drop for GlobalStorage {
    fn drop(&mut self) {
        self.set(0);
    }
}
