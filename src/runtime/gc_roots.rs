//! The runtime's side of a collection: this store's wasm frames (through the
//! activation list and the code registry) and each frame's live reference slots
//! (through its module's stack-map section).

use super::registry::REGISTRY;
use super::store::StoreOpaque;
use crate::gc::RootSource;
use crate::unwind::{Activation, ActivationList, Frame, LiveStackReader, StackReader, WalkError};

/// The roots of one store, captured at the start of a collection.
pub(crate) struct StoreRoots {
    head: *const Activation,
    owner: usize,
    reader: LiveStackReader,
}

impl StoreRoots {
    pub(crate) fn new(store: &StoreOpaque) -> StoreRoots {
        let head = store.vm.activation_head;
        let owner = store.id as usize;
        let (lo, hi) = super::entry::store_stack_bounds(store).unwrap_or((0, 0));
        StoreRoots {
            head,
            owner,
            // SAFETY: `[lo, hi)` spans the live wasm frames of this store's activations
            // on this thread (see `store_stack_bounds`); empty when there are none.
            reader: unsafe { LiveStackReader::new(lo, hi) },
        }
    }
}

impl StoreRoots {
    /// Calls `slot(frame, address)` for every live reference slot of every wasm frame.
    pub(crate) fn visit_slots(&self, slot: impl FnMut(&Frame, usize)) -> Result<(), WalkError> {
        if self.head.is_null() {
            return Ok(());
        }
        // SAFETY: the store's list is live on this thread and unchanged during the walk.
        let list = unsafe { ActivationList::from_head(self.head) }.only_owner(self.owner);
        REGISTRY.with_view(|view| {
            // The table of the module the walk is in, looked up again only when the
            // walk enters another module's code.
            let mut table: (usize, Option<&crate::stackmap::StackMapTable<'_>>) =
                (usize::MAX, None);
            let stack_map = |frame: &Frame| {
                if frame.location.module != table.0 {
                    // The walker just looked this frame's PC up through `view`.
                    let found = view.last_data().map(|data| {
                        // SAFETY: the frame's module is registered while its code is on
                        // the stack, which outlasts this walk.
                        let module: &super::module::ModuleInner =
                            unsafe { &*(data as *const super::module::ModuleInner) };
                        &module.stack_map_table
                    });
                    table = (frame.location.module, found);
                }
                // Exact lookup by return address: no entry, no live references.
                table.1?.lookup(frame.location.text_offset)
            };
            crate::gc::visit_stack_roots(list, &self.reader, view, stack_map, slot)
        })
    }
}

impl RootSource for StoreRoots {
    type Reader = LiveStackReader;

    fn visit_root_slots(&self, mut slot: impl FnMut(usize)) -> Result<(), WalkError> {
        self.visit_slots(|_, addr| slot(addr))
    }

    fn reader(&self) -> &LiveStackReader {
        &self.reader
    }
}

/// The non-null references in live stack-map slots of `store`'s wasm frames, newest
/// frame first, with the function index of the frame holding each.
pub(crate) fn stack_roots(
    store: &StoreOpaque,
) -> Result<Vec<(u32, crate::gc::ExternRef)>, WalkError> {
    let roots = StoreRoots::new(store);
    let mut out = Vec::new();
    roots.visit_slots(|frame, addr| {
        if let Some(raw) = roots.reader.read_word(addr).filter(|r| *r != 0) {
            // SAFETY: a live slot holds a live reference (owned or in the root set).
            if let Some(r) = unsafe { crate::gc::ExternRef::clone_from_raw(raw) } {
                out.push((frame.location.func_index, r));
            }
        }
    })?;
    Ok(out)
}
