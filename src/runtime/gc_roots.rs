//! The runtime's side of a collection: this store's wasm frames (through the
//! activation list and the code registry) and each frame's live reference slots
//! (through its module's stack-map section).

use super::registry::REGISTRY;
use super::store::StoreOpaque;
use crate::gc::RootSource;
use crate::unwind::{Activation, ActivationList, LiveStackReader, StackReader, WalkError};
use std::ops::ControlFlow;

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

impl RootSource for StoreRoots {
    fn visit_root_slots(&self, slot: &mut dyn FnMut(usize)) -> Result<(), WalkError> {
        if self.head.is_null() {
            return Ok(());
        }
        // SAFETY: the store's list is live on this thread and unchanged during the GC.
        let list = unsafe { ActivationList::from_head(self.head) }.only_owner(self.owner);
        crate::unwind::visit_frames(list, None, &self.reader, &REGISTRY, |frame| {
            if let Some((_, data)) = REGISTRY.lookup_with_data(frame.pc) {
                // SAFETY: the frame's module is registered while its code is on the stack.
                let module = unsafe { &*(data as *const super::module::ModuleInner) };
                if let Some(map) = module.stack_maps.lookup(frame.location.text_offset) {
                    for off in map.slots() {
                        slot(frame.sp + off as usize);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        })?;
        Ok(())
    }

    fn reader(&self) -> &dyn StackReader {
        &self.reader
    }
}
