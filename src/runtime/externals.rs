//! Handles to memories, tables and globals owned by a store.

use super::error::Error;
use super::storage::{GlobalStorage, MemoryStorage, TableStorage};
use super::store::{AsStore, AsStoreMut, Caller, StoreOpaque};
use super::values::Val;
use crate::types::{GlobalType, MemoryType, TableType};

macro_rules! handle {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            store_id: u64,
            index: usize,
        }

        impl $name {
            pub(crate) fn from_id(store_id: u64, index: usize) -> Self {
                $name { store_id, index }
            }

            pub(crate) fn id(&self, store: &StoreOpaque) -> Result<usize, Error> {
                if store.id == self.store_id {
                    Ok(self.index)
                } else {
                    Err(Error::WrongStore)
                }
            }
        }
    };
}

handle!(Memory, "A linear memory.");
handle!(Table, "A table of references.");
handle!(Global, "A global variable.");

impl Memory {
    /// A new memory of type `ty`. Fails with [`Error::Resource`] if its minimum
    /// exceeds its maximum or what framewalk reserves for its index type (65,536 pages
    /// for a 32-bit memory, 2^20 pages, 64 GiB, for a 64-bit one), or if the OS
    /// refuses the reservation.
    pub fn new(mut store: impl AsStoreMut, ty: MemoryType) -> Result<Memory, Error> {
        let store = store.store_opaque_mut();
        let m = MemoryStorage::new(ty).map_err(|e| Error::Resource(e.to_string()))?;
        store.memories.push(m);
        Ok(Memory::from_id(store.id, store.memories.len() - 1))
    }

    fn storage<'a>(&self, store: &'a StoreOpaque) -> Result<&'a MemoryStorage, Error> {
        Ok(&store.memories[self.id(store)?])
    }

    /// Size in pages (64 KiB each).
    pub fn size(&self, store: &impl AsStore) -> Result<u64, Error> {
        Ok(self.storage(store.store_opaque())?.pages())
    }

    /// The memory's bytes.
    pub fn data<'a>(&self, store: &'a impl AsStore) -> Result<&'a [u8], Error> {
        Ok(self.storage(store.store_opaque())?.data())
    }

    /// The memory's bytes, mutably.
    pub fn data_mut<'a>(&self, store: &'a mut impl AsStoreMut) -> Result<&'a mut [u8], Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        Ok(store.memories[id].data_mut())
    }

    /// The memory's bytes and the store's host data, both mutably, inside a host
    /// function: what a host call that reads its arguments from linear memory and
    /// its state from the host data needs at once (Wasmtime's
    /// `Memory::data_and_store_mut`).
    pub fn data_and_store_mut<'a, T>(
        &self,
        caller: &'a mut Caller<'_, T>,
    ) -> Result<(&'a mut [u8], &'a mut T), Error> {
        let inner = &mut *caller.store;
        let id = self.id(&inner.opaque)?;
        Ok((inner.opaque.memories[id].data_mut(), &mut inner.data))
    }

    /// Grows by `delta` pages, returning the old size. Fails with [`Error::Resource`]
    /// past the memory's maximum or framewalk's limit for its index type (see
    /// [`Memory::new`]).
    pub fn grow(&self, mut store: impl AsStoreMut, delta: u64) -> Result<u64, Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        store.memories[id]
            .grow(delta)
            .ok_or_else(|| Error::Resource(format!("cannot grow memory by {delta} pages")))
    }

    /// The memory's type.
    pub fn ty(&self, store: &impl AsStore) -> Result<MemoryType, Error> {
        Ok(self.storage(store.store_opaque())?.ty)
    }
}

fn ref_to_raw(store: &StoreOpaque, ty: TableType, v: &Val) -> Result<usize, Error> {
    if v.ty() != ty.element {
        return Err(Error::TypeMismatch(format!(
            "{} value for a table of {}",
            v.ty(),
            ty.element
        )));
    }
    Ok(v.to_owned_raw(store)?.0 as usize)
}

/// `at..at + len` if it lies within a table of `size` elements (a zero-length range
/// may start at `size`, as for the wasm bulk instructions).
fn in_bounds(at: u32, len: u32, size: u32) -> Option<std::ops::Range<usize>> {
    let end = at.checked_add(len)?;
    (end <= size).then_some(at as usize..end as usize)
}

impl Table {
    /// A new table of type `ty` with every element `init`.
    pub fn new(mut store: impl AsStoreMut, ty: TableType, init: Val) -> Result<Table, Error> {
        let store = store.store_opaque_mut();
        let raw = ref_to_raw(store, ty, &init)?;
        let t = TableStorage::new(ty, raw)
            .ok_or_else(|| Error::Resource(format!("table of {} elements", ty.limits.min)))?;
        store.tables.push(t);
        Ok(Table::from_id(store.id, store.tables.len() - 1))
    }

    fn storage<'a>(&self, store: &'a StoreOpaque) -> Result<&'a TableStorage, Error> {
        Ok(&store.tables[self.id(store)?])
    }

    /// Number of elements.
    pub fn size(&self, store: &impl AsStore) -> Result<u32, Error> {
        Ok(self.storage(store.store_opaque())?.len())
    }

    /// The table's type.
    pub fn ty(&self, store: &impl AsStore) -> Result<TableType, Error> {
        Ok(self.storage(store.store_opaque())?.ty)
    }

    /// Element `index`, or `None` if out of bounds.
    pub fn get(&self, store: &impl AsStore, index: u32) -> Result<Option<Val>, Error> {
        let store = store.store_opaque();
        let t = self.storage(store)?;
        Ok(t.elements()
            .get(index as usize)
            .map(|raw| Val::from_raw(super::vmcontext::ValRaw(*raw as u128), t.ty.element, store)))
    }

    /// Sets element `index`.
    pub fn set(&self, mut store: impl AsStoreMut, index: u32, v: Val) -> Result<(), Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        let raw = ref_to_raw(store, store.tables[id].ty, &v)?;
        if index >= store.tables[id].len() {
            return Err(Error::OutOfBounds(format!("table index {index}")));
        }
        store.tables[id].set(index as usize, raw);
        Ok(())
    }

    /// Sets the `len` elements from `dst` to `val`, like the `table.fill` instruction:
    /// fails with [`Error::OutOfBounds`] (changing nothing) if `dst + len` exceeds the
    /// table's size. In an `externref` table every slot filled owns one count of `val`
    /// and releases the count of the value it held.
    pub fn fill(
        &self,
        mut store: impl AsStoreMut,
        dst: u32,
        val: Val,
        len: u32,
    ) -> Result<(), Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        let raw = ref_to_raw(store, store.tables[id].ty, &val)?;
        let size = store.tables[id].len();
        let range = in_bounds(dst, len, size).ok_or_else(|| {
            Error::OutOfBounds(format!(
                "table.fill of {len} elements at {dst} in a table of {size}"
            ))
        })?;
        store.tables[id].fill(range, raw);
        Ok(())
    }

    /// Copies `len` elements of `src_table` from `src_index` to `dst_table` at
    /// `dst_index`, like the `table.copy` instruction: the ranges may overlap (also in
    /// one table), and the call fails (changing nothing) with [`Error::OutOfBounds`] if
    /// either range exceeds its table's size, or with [`Error::TypeMismatch`] if the
    /// element types differ. In `externref` tables each overwritten slot releases its
    /// old value's count and owns one count of the value copied into it.
    pub fn copy(
        mut store: impl AsStoreMut,
        dst_table: &Table,
        dst_index: u32,
        src_table: &Table,
        src_index: u32,
        len: u32,
    ) -> Result<(), Error> {
        let store = store.store_opaque_mut();
        let (dst_id, src_id) = (dst_table.id(store)?, src_table.id(store)?);
        let (dst_ty, src_ty) = (store.tables[dst_id].ty, store.tables[src_id].ty);
        if dst_ty.element != src_ty.element {
            return Err(Error::TypeMismatch(format!(
                "table.copy from a table of {} to a table of {}",
                src_ty.element, dst_ty.element
            )));
        }
        let (dst_size, src_size) = (store.tables[dst_id].len(), store.tables[src_id].len());
        let bounds = |at: u32, size: u32, what: &str| {
            in_bounds(at, len, size).ok_or_else(|| {
                Error::OutOfBounds(format!(
                    "table.copy of {len} elements {what} {at} in a table of {size}"
                ))
            })
        };
        let src = bounds(src_index, src_size, "from")?;
        let dst = bounds(dst_index, dst_size, "to")?;
        if dst_id == src_id {
            store.tables[dst_id].copy_within(src, dst.start);
        } else {
            // Distinct tables: the source keeps its counts while the destination takes
            // its own (`write_all` retains each new value before releasing the old).
            let values = store.tables[src_id].elements()[src].to_vec();
            store.tables[dst_id].write_all(dst.start, &values);
        }
        Ok(())
    }

    /// Grows by `delta` elements set to `init`, returning the old size.
    pub fn grow(&self, mut store: impl AsStoreMut, delta: u32, init: Val) -> Result<u32, Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        let raw = ref_to_raw(store, store.tables[id].ty, &init)?;
        store.tables[id]
            .grow(delta, raw)
            .ok_or_else(|| Error::Resource(format!("cannot grow table by {delta}")))
    }
}

impl Global {
    /// A new global of type `ty` with value `v`.
    pub fn new(mut store: impl AsStoreMut, ty: GlobalType, v: Val) -> Result<Global, Error> {
        let store = store.store_opaque_mut();
        if v.ty() != ty.content {
            return Err(Error::TypeMismatch(format!(
                "{} value for {} global",
                v.ty().with_article(),
                ty.content.with_article()
            )));
        }
        let bits = v.to_owned_raw(store)?.0;
        store.globals.push(GlobalStorage::new(ty, bits));
        Ok(Global::from_id(store.id, store.globals.len() - 1))
    }

    /// The global's type.
    pub fn ty(&self, store: &impl AsStore) -> Result<GlobalType, Error> {
        let store = store.store_opaque();
        Ok(store.globals[self.id(store)?].ty)
    }

    /// The current value.
    pub fn get(&self, store: &impl AsStore) -> Result<Val, Error> {
        let store = store.store_opaque();
        let g = &store.globals[self.id(store)?];
        Ok(Val::from_raw(
            super::vmcontext::ValRaw(g.def.bits),
            g.ty.content,
            store,
        ))
    }

    /// Sets the value of a mutable global.
    pub fn set(&self, mut store: impl AsStoreMut, v: Val) -> Result<(), Error> {
        let store = store.store_opaque_mut();
        let id = self.id(store)?;
        let ty = store.globals[id].ty;
        if !ty.mutable {
            return Err(Error::TypeMismatch("global is immutable".into()));
        }
        if v.ty() != ty.content {
            return Err(Error::TypeMismatch(format!(
                "{} value for {} global",
                v.ty().with_article(),
                ty.content.with_article()
            )));
        }
        let bits = v.to_owned_raw(store)?.0;
        store.globals[id].set(bits);
        Ok(())
    }
}
