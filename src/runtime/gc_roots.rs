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
    max_frame_shift: usize,
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
            max_frame_shift: store.max_frame_shift,
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
            let mut table: (usize, Option<&crate::stackmap::StackMapTable>) = (usize::MAX, None);
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
            crate::gc::visit_stack_roots_shifted(
                list,
                &self.reader,
                view,
                self.max_frame_shift,
                stack_map,
                slot,
            )
        })
    }
}

// SAFETY: the store's list holds every activation of the store on this thread; a
// collection runs only from the host (every activation stopped at a recorded exit, see
// `StoreOpaque::gc`); the registry holds exactly the store's compiled wasm functions,
// and each frame's map is its module's table entry for that return offset; the reader
// spans every frame walked (`store_stack_bounds`).
unsafe impl RootSource for StoreRoots {
    type Reader = LiveStackReader;

    fn visit_root_slots(&self, mut slot: impl FnMut(usize)) -> Result<(), WalkError> {
        self.visit_slots(|_, addr| slot(addr))
    }

    fn reader(&self) -> &LiveStackReader {
        &self.reader
    }
}

/// Calls `f` with every non-null reference in a live stack-map slot of `store`'s wasm
/// frames, newest frame first, and the function index of the frame holding it; the
/// reference is borrowed (no count is taken). Does not allocate.
///
/// # Errors
///
/// The walk's error, or [`WalkError::UnreadableStack`] for the first slot that could
/// not be read (every other slot was still visited).
pub(crate) fn visit_stack_refs(
    store: &StoreOpaque,
    mut f: impl FnMut(u32, &crate::gc::ExternRef),
) -> Result<(), WalkError> {
    let roots = StoreRoots::new(store);
    let mut unreadable = None;
    roots.visit_slots(|frame, addr| {
        let Some(raw) = roots.reader.read_word(addr) else {
            unreadable.get_or_insert(WalkError::UnreadableStack { addr });
            return;
        };
        // SAFETY: a live slot holds 0 or a live reference (owned or in the root set),
        // alive while this host call runs; the borrow ends with `f`'s call.
        if let Some(r) = unsafe { crate::gc::ExternRef::borrow_raw(raw) } {
            f(frame.location.func_index, &r);
        }
    })?;
    unreadable.map_or(Ok(()), Err)
}

/// The non-null references in live stack-map slots of `store`'s wasm frames, newest
/// frame first, with the function index of the frame holding each (new handles).
pub(crate) fn stack_roots(
    store: &StoreOpaque,
) -> Result<Vec<(u32, crate::gc::ExternRef)>, WalkError> {
    let mut out = Vec::new();
    visit_stack_refs(store, |func_index, r| out.push((func_index, r.clone())))?;
    Ok(out)
}
