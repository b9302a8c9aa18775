//! `Store<T>`: owns instances, memories, tables, globals, host functions and the host
//! data `T`. Everything wasm can reach lives in a store and is freed with it.
//!
//! The store is boxed so that raw pointers held by generated code (the
//! `VMStoreContext`) and by host function contexts stay valid when the `Store` value
//! moves.

use super::code_memory::CodeMemory;
use super::engine::Engine;
use super::instance::InstanceData;
use super::storage::{GlobalStorage, MemoryStorage, TableStorage};
use super::vmcontext::VMStoreContext;
use crate::gc::ExternRef;
use crate::types::FuncType;
use std::any::Any;
use std::sync::Arc;

/// A host function context owned by a store, freed by its own drop function.
pub(crate) struct OwnedHostFunc {
    pub(crate) ptr: *mut u8,
    pub(crate) drop_fn: unsafe fn(*mut u8),
}

impl Drop for OwnedHostFunc {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::into_raw` of the type `drop_fn` was instantiated
        // for, and is dropped exactly once (here).
        unsafe { (self.drop_fn)(self.ptr) }
    }
}

/// The part of a store that does not depend on `T`.
pub struct StoreOpaque {
    pub(crate) id: u64,
    pub(crate) engine: Engine,
    pub(crate) vm: Box<VMStoreContext>,
    // Boxed so that their addresses never change: generated code and vmctxs hold
    // pointers to them while the vectors grow.
    #[expect(
        clippy::vec_box,
        reason = "stable addresses for pointers held by generated code"
    )]
    pub(crate) instances: Vec<Box<InstanceData>>,
    #[expect(
        clippy::vec_box,
        reason = "stable addresses for pointers held by generated code"
    )]
    pub(crate) memories: Vec<Box<MemoryStorage>>,
    #[expect(
        clippy::vec_box,
        reason = "stable addresses for pointers held by generated code"
    )]
    pub(crate) tables: Vec<Box<TableStorage>>,
    #[expect(
        clippy::vec_box,
        reason = "stable addresses for pointers held by generated code"
    )]
    pub(crate) globals: Vec<Box<GlobalStorage>>,
    pub(crate) host_funcs: Vec<OwnedHostFunc>,
    pub(crate) exit_trampolines: Vec<Arc<CodeMemory>>,
    pub(crate) gc_stats: crate::gc::GcStats,
    /// The smallest automatic-collection threshold ([`GC_THRESHOLD_FLOOR`] unless set).
    gc_threshold_floor: usize,
    /// Function types by engine-wide id, copied from the engine's registry on first
    /// use, so a call checks its arguments without the engine's lock.
    func_types: Vec<Option<Arc<FuncType>>>,
    pub(crate) pending_error: Option<crate::trap::HostError>,
    pub(crate) pending_panic: Option<Box<dyn Any + Send>>,
    /// How far a tail call in this store's code may move a frame below its caller's
    /// SP: the largest stack-argument area of any function type of its instances'
    /// modules (0 while no module can make tail calls with stack arguments).
    pub(crate) max_frame_shift: usize,
}

impl StoreOpaque {
    /// This store's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Adds `r` to the root set (it is about to enter wasm frames) and returns the
    /// address wasm sees.
    pub(crate) fn root_externref(&mut self, r: &ExternRef) -> Result<usize, super::Error> {
        self.check_owner(r)?;
        // SAFETY: `r` is a live handle of this store.
        unsafe { self.vm.externrefs.insert(r.as_raw()) };
        Ok(r.as_raw())
    }

    /// Makes sure the function type with engine-wide id `id` is in this store's cache
    /// (the engine's lock is taken once per type and store); false if the engine has no
    /// such type. Then [`StoreOpaque::cached_func_type`] is an index.
    pub(crate) fn cache_func_type(&mut self, id: u32) -> bool {
        let i = id as usize;
        if let Some(Some(_)) = self.func_types.get(i) {
            return true;
        }
        let Some(ty) = self.engine.type_of(id) else {
            return false;
        };
        if self.func_types.len() <= i {
            self.func_types.resize(i + 1, None);
        }
        self.func_types[i] = Some(ty);
        true
    }

    /// The function type with id `id` if [`StoreOpaque::cache_func_type`] cached it.
    pub(crate) fn cached_func_type(&self, id: u32) -> Option<&FuncType> {
        self.func_types.get(id as usize)?.as_deref()
    }

    /// Refuses a reference made for another store (see `gc::ExternRef`'s invariant).
    pub(crate) fn check_owner(&self, r: &ExternRef) -> Result<(), super::Error> {
        if r.owner() == self.id as usize {
            Ok(())
        } else {
            Err(super::Error::WrongStore)
        }
    }

    /// Runs a collection if the root set has outgrown its threshold. Called where
    /// references are about to enter wasm, before any of them is inserted.
    ///
    /// Inlined: on every call path it is two loads and a compare; the collection itself
    /// is out of line.
    #[inline(always)]
    pub(crate) fn maybe_gc(&mut self) {
        if self.vm.externrefs.len() >= self.vm.gc_threshold {
            self.gc_over_threshold();
        }
    }

    #[cold]
    #[inline(never)]
    fn gc_over_threshold(&mut self) {
        let _ = self.gc();
    }

    /// Collects garbage `externref`s: walks this store's wasm frames, keeps the
    /// references found in live stack-map slots, frees the rest of the root set that
    /// nothing owns. The threshold then adapts to twice the survivors (at least
    /// [`GC_THRESHOLD_FLOOR`], or the floor set with `Store::set_gc_threshold_floor`).
    ///
    /// Automatic collections happen where references enter wasm: host -> wasm calls,
    /// host function results, and — from wasm code, through a recorded exit —
    /// `table.get`/`global.get` of a reference not yet in the root set, so a long call
    /// that reads references out of tables stays bounded.
    pub fn gc(&mut self) -> Result<(), crate::unwind::WalkError> {
        let roots = super::gc_roots::StoreRoots::new(self);
        // SAFETY: `&mut self` means no wasm of this store runs: every activation of it
        // on this thread is stopped at a recorded exit (this is a host function, or the
        // libcall of `collect_garbage_from_wasm` after recording one), and `StoreRoots`
        // walks them all. The runtime gives every reference the host holds a count (a
        // host function's reference arguments become `ExternRef` handles before its
        // code runs; results are inserted in the set as they enter wasm).
        let result =
            unsafe { crate::gc::collect(&mut self.vm.externrefs, &roots, &mut self.gc_stats) };
        self.vm.gc_threshold = (self.vm.externrefs.len() * 2).max(self.gc_threshold_floor);
        result
    }

    /// Collection statistics.
    pub fn gc_stats(&self) -> crate::gc::GcStats {
        self.gc_stats
    }

    /// Sets this store's epoch deadline `ticks` epochs after the engine's current one:
    /// with [`Config::epoch_interruption`](super::Config::epoch_interruption), wasm of
    /// this store traps with [`TrapCode::Interrupt`](crate::TrapCode::Interrupt) at the
    /// first function entry or loop header it reaches once
    /// [`Engine::increment_epoch`](super::Engine::increment_epoch) has been called that
    /// many times. Until set there is no deadline (unlike Wasmtime, whose default
    /// deadline is the current epoch). Without `epoch_interruption` no code checks it.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        self.vm.epoch_deadline = self.engine.current_epoch().saturating_add(ticks);
    }

    /// The wasm frames of this store's activations on this thread, newest first,
    /// symbolized, as a trap here would report them: none when
    /// [`Config::wasm_backtrace`](super::Config::wasm_backtrace) is off, at most
    /// [`Config::wasm_backtrace_max_frames`](super::Config::wasm_backtrace_max_frames)
    /// (the walk stops there). Empty when no wasm of this store is on the stack.
    /// Inside a host function it is [`Caller::backtrace`]; [`force_backtrace`]
    /// ignores the configuration.
    ///
    /// [`force_backtrace`]: Self::force_backtrace
    pub fn backtrace(&self) -> Result<Vec<crate::trap::FrameInfo>, crate::unwind::WalkError> {
        super::entry::store_backtrace(self, super::entry::CaptureLimit::of(self))
    }

    /// Every wasm frame of this store's activations on this thread, newest first,
    /// symbolized, whatever the configuration says (see [`Caller::force_backtrace`]).
    pub fn force_backtrace(&self) -> Result<Vec<crate::trap::FrameInfo>, crate::unwind::WalkError> {
        super::entry::store_backtrace(self, super::entry::CaptureLimit::ALL)
    }

    /// The frames of [`backtrace`](Self::backtrace) in the compact form, with the
    /// count of the frames beyond the limit, as a trap here would report them (see
    /// [`Caller::wasm_backtrace`]).
    pub fn wasm_backtrace(&self) -> Result<crate::trap::WasmBacktrace, crate::unwind::WalkError> {
        super::entry::store_wasm_backtrace(self, super::entry::CaptureLimit::of(self))
    }

    /// Every wasm frame in the compact form, whatever the configuration says (see
    /// [`Caller::force_wasm_backtrace`]).
    pub fn force_wasm_backtrace(
        &self,
    ) -> Result<crate::trap::WasmBacktrace, crate::unwind::WalkError> {
        super::entry::store_wasm_backtrace(self, super::entry::CaptureLimit::ALL)
    }

    /// Current size of the root set (references that may be on the stack).
    pub fn root_set_len(&self) -> usize {
        self.vm.externrefs.len()
    }
}

/// The smallest automatic-collection threshold (root-set size).
pub const GC_THRESHOLD_FLOOR: usize = 1024;

impl Drop for StoreOpaque {
    fn drop(&mut self) {
        // Instances first (their element segments hold counts), then tables and globals
        // (which own counts), then the root set: every reference the store still holds
        // is released exactly once; those the host still owns stay valid.
        self.instances.clear();
        self.tables.clear();
        self.globals.clear();
        // SAFETY: the store is going away: no wasm of it runs (a running call borrows
        // the store), and the references the host keeps are counted handles.
        unsafe { self.vm.externrefs.clear() };
    }
}

impl ExternRef {
    /// Wraps `value` for `store`: the reference may be passed to that store's wasm,
    /// tables and globals (any other store refuses it with `Error::WrongStore`). It is
    /// freed when no host handle, table, global or live wasm frame holds it.
    pub fn new<T: std::any::Any>(mut store: impl AsStoreMut, value: T) -> ExternRef {
        ExternRef::with_owner(store.store_opaque_mut().id as usize, value)
    }

    /// The payload, mutably, if this handle is its only owner: `None` if another host
    /// handle, a table slot, a global or an element segment also holds the reference
    /// (see [`ExternRef::owner_count`]), or if `store` is not the store it was made for.
    ///
    /// Why both `&mut self` and `&mut store`, and why `None` when shared: handles
    /// alias. Every clone of a handle (and every handle made from a table, a global, a
    /// host function's argument or [`Caller::stack_roots`]) reaches the same payload,
    /// and [`ExternRef::data`] reads it through a shared borrow of any one handle. So
    /// `&mut self` alone excludes nothing:
    ///
    /// - owners that already exist (other handles, table slots, globals, segments)
    ///   show up in the count, so a count of 1 means this handle is the only one;
    /// - owners that could appear while the returned borrow lives are all made through
    ///   the store (running wasm, reading a table or global, walking the stack roots
    ///   of wasm frames that hold the reference without a count), so the borrow also
    ///   holds the owning store exclusively.
    ///
    /// Together they make the returned `&mut` the only path to the payload while it
    /// lives, as `Rc::get_mut` does for an `Rc`. (Wasmtime's `data_mut(&mut self,
    /// store)` needs no count check because its `data` also borrows the store.)
    pub fn data_mut<'a, S: AsStoreMut>(
        &'a mut self,
        store: &'a mut S,
    ) -> Option<&'a mut dyn std::any::Any> {
        if store.store_opaque_mut().check_owner(self).is_err() || self.owner_count() != 1 {
            return None;
        }
        // SAFETY: this handle owns the only count and the owning store is borrowed
        // exclusively for the lifetime of the result, so no other handle exists or can
        // be made while it lives (see above); the header is live while we own a count.
        Some(unsafe { self.payload_mut() })
    }
}

pub(crate) struct StoreInner<T> {
    pub(crate) opaque: StoreOpaque,
    pub(crate) data: T,
}

/// A collection of wasm objects and host data `T`.
///
/// # Threads
///
/// A `Store` is neither `Send` nor `Sync`, whatever `T` is, and must stay so. The
/// `externref` counts it shares with host handles are plain words: generated code
/// updates them inline without atomic instructions (`table.set`, `global.set`, element
/// segments), and so do the store's tables, globals and collections (which also free
/// the values whose count reached zero). [`ExternRef`] handles are `!Send`, but that
/// alone does not keep one count on one thread: a store moved to thread B while a
/// handle to one of its references stays on thread A would let A drop (or clone) the
/// handle while B's wasm stores the same reference into a table. Both sides do a
/// non-atomic read-modify-write of the same count: a data race, whose lost update
/// either frees the value while a table slot still holds it (use after free) or leaks
/// it. A `Send` store would therefore need atomic counts in generated code, or a
/// guarantee that no handle of the store lives elsewhere, which the types cannot give.
///
/// ```compile_fail
/// fn is_send<S: Send>() {}
/// is_send::<framewalk::Store<()>>();
/// ```
pub struct Store<T> {
    pub(crate) inner: Box<StoreInner<T>>,
    /// Keeps the store `!Send` and `!Sync` on purpose (see above), not only because of
    /// the raw pointers it happens to hold.
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl<T> Store<T> {
    /// A new store for `engine` holding `data`.
    pub fn new(engine: &Engine, data: T) -> Store<T> {
        Store {
            inner: Box::new(StoreInner {
                opaque: StoreOpaque {
                    // One counter for every runtime of the process: another runtime on
                    // the same stack never has this store's owner id.
                    id: crate::unwind::new_owner_id() as u64,
                    engine: engine.clone(),
                    vm: Box::new(VMStoreContext {
                        stack_limit: 0,
                        activation_head: std::ptr::null(),
                        externrefs: Default::default(),
                        gc_threshold: GC_THRESHOLD_FLOOR,
                        epoch_ptr: &engine.inner.epoch,
                        epoch_deadline: u64::MAX,
                    }),
                    instances: Vec::new(),
                    memories: Vec::new(),
                    tables: Vec::new(),
                    globals: Vec::new(),
                    host_funcs: Vec::new(),
                    exit_trampolines: Vec::new(),
                    gc_stats: Default::default(),
                    func_types: Vec::new(),
                    gc_threshold_floor: GC_THRESHOLD_FLOOR,
                    pending_error: None,
                    pending_panic: None,
                    max_frame_shift: 0,
                },
                data,
            }),
            _not_send: std::marker::PhantomData,
        }
    }

    /// The host data.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    /// The host data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.opaque.engine
    }

    /// Runs a garbage collection of this store's `externref`s now.
    pub fn gc(&mut self) -> Result<(), crate::unwind::WalkError> {
        self.inner.opaque.gc()
    }

    /// [`StoreOpaque::set_epoch_deadline`]: interrupt wasm of this store `ticks` epochs
    /// from now.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        self.inner.opaque.set_epoch_deadline(ticks)
    }

    /// Sets the smallest root-set size that triggers an automatic collection (default
    /// [`GC_THRESHOLD_FLOOR`]; at least 1). After each collection the threshold is
    /// twice the survivors, but never below this. Automatic collections run where
    /// references enter wasm: host -> wasm arguments, host function results, and
    /// `table.get`/`global.get` in wasm code (which then collects from wasm). A floor
    /// of 1 collects at nearly every such point: slow, but a thorough test of a
    /// program's stack maps.
    pub fn set_gc_threshold_floor(&mut self, floor: usize) {
        let opaque = &mut self.inner.opaque;
        opaque.gc_threshold_floor = floor.max(1);
        opaque.vm.gc_threshold = (opaque.vm.externrefs.len() * 2).max(opaque.gc_threshold_floor);
    }

    /// Collection statistics.
    pub fn gc_stats(&self) -> crate::gc::GcStats {
        self.inner.opaque.gc_stats
    }

    /// The wasm frames of this store's activations on this thread, newest first,
    /// symbolized (see [`StoreOpaque::backtrace`]). A `Store` is lent to every call
    /// into its wasm, so from code holding it no wasm frame of it is live and the list
    /// is empty; host functions see the frames below them through
    /// [`Caller::backtrace`] (or `StoreOpaque::backtrace` of any [`AsStore`]).
    pub fn backtrace(&self) -> Result<Vec<crate::trap::FrameInfo>, crate::unwind::WalkError> {
        self.inner.opaque.backtrace()
    }
}

impl<T> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.inner.opaque.id)
            .field("instances", &self.inner.opaque.instances.len())
            .finish()
    }
}

/// The host's view of the store while a host function runs, plus the calling instance.
pub struct Caller<'a, T> {
    pub(crate) store: &'a mut StoreInner<T>,
    pub(crate) caller_vmctx: *mut u8,
}

impl<T> Caller<'_, T> {
    /// The host data.
    pub fn data(&self) -> &T {
        &self.store.data
    }

    /// The host data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.store.data
    }

    /// The wasm frames of this store's activations, newest first, symbolized: what a
    /// trap here would report, so it follows the engine's [`Config`]:
    ///
    /// - with [`wasm_backtrace`](super::Config::wasm_backtrace) off, it is empty (no walk);
    /// - with [`wasm_backtrace_max_frames`](super::Config::wasm_backtrace_max_frames) (20 by
    ///   default), it holds at most that many, the newest, and the walk stops there.
    ///
    /// [`force_backtrace`](Self::force_backtrace) has every frame whatever the
    /// configuration. Allocates the result; see [`Caller::visit_frames`] for the
    /// allocation-free walk.
    ///
    /// [`Config`]: super::Config
    pub fn backtrace(&self) -> Result<Vec<crate::trap::FrameInfo>, crate::unwind::WalkError> {
        self.store.opaque.backtrace()
    }

    /// Every wasm frame of this store's activations, newest first, symbolized,
    /// whatever [`Config::wasm_backtrace`] and [`Config::wasm_backtrace_max_frames`]
    /// say (as Wasmtime's `WasmBacktrace::force_capture`): for a profiler, a debugger
    /// or a test of the walk.
    ///
    /// [`Config::wasm_backtrace`]: super::Config::wasm_backtrace
    /// [`Config::wasm_backtrace_max_frames`]: super::Config::wasm_backtrace_max_frames
    pub fn force_backtrace(&self) -> Result<Vec<crate::trap::FrameInfo>, crate::unwind::WalkError> {
        self.store.opaque.force_backtrace()
    }

    /// What a trap here would report, in the compact form: each frame is plain data
    /// that borrows its names from its module, which the backtrace holds once (no
    /// allocation or reference count per frame beyond the `Vec`). As Wasmtime's
    /// `WasmBacktrace::capture`, it follows the engine's configuration:
    ///
    /// - with [`Config::wasm_backtrace`] off, it is empty (no walk);
    /// - with [`Config::wasm_backtrace_max_frames`], it symbolizes at most that many
    ///   frames, the newest, and counts the others
    ///   ([`WasmBacktrace::omitted_frames`](crate::trap::WasmBacktrace::omitted_frames)),
    ///   as a trap does.
    ///
    /// Its `Display` is the trap's backtrace. The frames are those of
    /// [`backtrace`](Self::backtrace); [`force_wasm_backtrace`] has them all.
    ///
    /// [`Config::wasm_backtrace`]: super::Config::wasm_backtrace
    /// [`Config::wasm_backtrace_max_frames`]: super::Config::wasm_backtrace_max_frames
    /// [`force_wasm_backtrace`]: Self::force_wasm_backtrace
    pub fn wasm_backtrace(&self) -> Result<crate::trap::WasmBacktrace, crate::unwind::WalkError> {
        self.store.opaque.wasm_backtrace()
    }

    /// Every wasm frame in the compact form of [`wasm_backtrace`](Self::wasm_backtrace),
    /// whatever the configuration says (as Wasmtime's `WasmBacktrace::force_capture`);
    /// [`omitted_frames`](crate::trap::WasmBacktrace::omitted_frames) is 0.
    pub fn force_wasm_backtrace(
        &self,
    ) -> Result<crate::trap::WasmBacktrace, crate::unwind::WalkError> {
        self.store.opaque.force_wasm_backtrace()
    }

    /// Calls `f` on each wasm frame of this store's activations, newest first, until it
    /// returns `Break`; other stores' activations interleaved on the stack are skipped.
    /// Does not allocate.
    #[inline]
    pub fn visit_frames<B>(
        &self,
        f: impl FnMut(&crate::unwind::Frame) -> std::ops::ControlFlow<B>,
    ) -> Result<Option<B>, crate::unwind::WalkError> {
        super::entry::visit_store_frames(&self.store.opaque, f)
    }

    /// Calls `f` with this store's activations on this thread, newest first (as the
    /// walker reads them, stopping at the first out-of-order record), and a reader of
    /// the stack words between the lowest recorded exit (its `exit_sp`, less the word
    /// below it that the walk checks) and the highest `entry_fp`: the words of their
    /// wasm frames, live while this host function runs.
    /// `None` when no activation has a recorded exit.
    ///
    /// This is for a second unwinder that checks or extends the frame-pointer walk (the
    /// property tests unwind the same frames with the CFI of [`Module::eh_frame`]). The
    /// reader lives only for the call of `f`; allocates the list.
    ///
    /// [`Module::eh_frame`]: super::Module::eh_frame
    pub fn with_activation_stack<B>(
        &self,
        f: impl FnOnce(&[crate::unwind::ActivationInfo], &crate::unwind::LiveStackReader) -> B,
    ) -> Option<B> {
        let store = &self.store.opaque;
        let (lo, hi) = super::entry::store_stack_bounds(store)?;
        // SAFETY: a `Caller` exists only while its host function runs, called by the
        // store's newest activation on this thread, so the list is live and unchanged
        // while `f` runs (`f` gets no access to the store).
        let list = unsafe { crate::unwind::ActivationList::from_head(store.vm.activation_head) }
            .only_owner(store.id as usize);
        let activations: Vec<_> = list.iter().map_while(Result::ok).collect();
        // SAFETY: `[lo, hi)` spans the live frames of these activations on this thread
        // (see `store_stack_bounds`), which stay live and unwritten while `f` runs; the
        // reader cannot outlive the call.
        let reader = unsafe { crate::unwind::LiveStackReader::new(lo, hi) };
        Some(f(&activations, &reader))
    }

    /// Runs a garbage collection of this store's `externref`s now (see
    /// [`StoreOpaque::gc`]).
    pub fn gc(&mut self) -> Result<(), crate::unwind::WalkError> {
        self.store.opaque.gc()
    }

    /// The engine of the caller's store.
    pub fn engine(&self) -> &Engine {
        &self.store.opaque.engine
    }

    /// [`StoreOpaque::set_epoch_deadline`], from a host function (e.g. to give the
    /// guest more time).
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        self.store.opaque.set_epoch_deadline(ticks)
    }

    /// The references held in live stack slots of this store's wasm frames (what a
    /// collection would keep as stack roots), newest frame first, each with the index of
    /// the function whose frame holds it. A reference held in several slots appears
    /// once per slot.
    pub fn stack_roots(&self) -> Result<Vec<(u32, ExternRef)>, crate::unwind::WalkError> {
        super::gc_roots::stack_roots(&self.store.opaque)
    }

    /// Calls `f` with each reference [`stack_roots`](Self::stack_roots) would return, in
    /// the same order, with the same function index, but borrowed: no handle is made,
    /// nothing is allocated, no count changes. It is the scan a collection makes (the
    /// walk, every frame's stack-map lookup, every live slot), without the marking.
    ///
    /// # Errors
    ///
    /// The walk's error, or [`WalkError::UnreadableStack`] for the first slot that
    /// could not be read (every other slot was still visited).
    ///
    /// [`WalkError::UnreadableStack`]: crate::unwind::WalkError::UnreadableStack
    pub fn visit_stack_roots(
        &self,
        f: impl FnMut(u32, &ExternRef),
    ) -> Result<(), crate::unwind::WalkError> {
        super::gc_roots::visit_stack_refs(&self.store.opaque, f)
    }

    /// Collection statistics.
    pub fn gc_stats(&self) -> crate::gc::GcStats {
        self.store.opaque.gc_stats
    }

    /// An export of the calling instance (e.g. its memory), if called from wasm.
    pub fn get_export(&self, name: &str) -> Option<super::instance::Extern> {
        let inst = super::instance::Instance::from_vmctx(&self.store.opaque, self.caller_vmctx)?;
        inst.get_export(&self.store.opaque, name)
    }
}

/// Anything that gives shared access to a store.
pub trait AsStore {
    /// The store.
    fn store_opaque(&self) -> &StoreOpaque;
}

/// Anything that gives exclusive access to a store.
pub trait AsStoreMut: AsStore {
    /// The store.
    fn store_opaque_mut(&mut self) -> &mut StoreOpaque;
}

impl AsStore for StoreOpaque {
    fn store_opaque(&self) -> &StoreOpaque {
        self
    }
}

impl AsStoreMut for StoreOpaque {
    fn store_opaque_mut(&mut self) -> &mut StoreOpaque {
        self
    }
}

impl<T> AsStore for Store<T> {
    fn store_opaque(&self) -> &StoreOpaque {
        &self.inner.opaque
    }
}

impl<T> AsStoreMut for Store<T> {
    fn store_opaque_mut(&mut self) -> &mut StoreOpaque {
        &mut self.inner.opaque
    }
}

impl<T> AsStore for Caller<'_, T> {
    fn store_opaque(&self) -> &StoreOpaque {
        &self.store.opaque
    }
}

impl<T> AsStoreMut for Caller<'_, T> {
    fn store_opaque_mut(&mut self) -> &mut StoreOpaque {
        &mut self.store.opaque
    }
}

impl<S: AsStore + ?Sized> AsStore for &S {
    fn store_opaque(&self) -> &StoreOpaque {
        (**self).store_opaque()
    }
}

impl<S: AsStore + ?Sized> AsStore for &mut S {
    fn store_opaque(&self) -> &StoreOpaque {
        (**self).store_opaque()
    }
}

impl<S: AsStoreMut + ?Sized> AsStoreMut for &mut S {
    fn store_opaque_mut(&mut self) -> &mut StoreOpaque {
        (**self).store_opaque_mut()
    }
}
