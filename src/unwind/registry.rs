//! The code registry: which module and function contains a PC.
//!
//! Modules register their text section and its sorted function ranges when their code
//! becomes executable, and unregister (by dropping the [`ModuleRegistration`]) before it
//! is unmapped. [`CodeRegistry::lookup_pc`] finds a PC's module in O(log modules), then
//! its function in O(1) through the module's [`FlatCodeMap`] (or O(log functions) for a
//! module whose functions are not 16-byte aligned). A walk through a [`RegistryView`]
//! gets the module's [`CodeMap`] and answers the PCs of a run of frames in that module
//! itself, searching the modules again only when a PC leaves it.
//!
//! The modules form a persistent B+-tree keyed by `text_start`: leaves hold up to 16
//! modules, inner nodes up to 16 subtrees, each node with the low keys of its items in
//! one array. Registering or unregistering one module costs O(log modules) (16 *
//! height item copies and allocations of nodes, the height being at most
//! 1 + log8(modules / 2)), so a JIT that registers each function as its own module
//! pays O(n log n) for n functions, not O(n^2).
//!
//! ```text
//!  published root ---> [ 0x5000 | 0x9000 | ... ]          inner: low key per subtree
//!                        /          \
//!  [ module 3: [0x5000, 0x5400) | module 7: ... ]  [ module 1: [0x9000, 0x9800) | ... ]
//!         |                                               leaves: modules, sorted,
//!         v  functions of module 3 (offsets, sorted)      never overlapping
//!   +-----------+-----------+-----------+
//!   | f0 [0,40) | f1 [48,96)| f2 [96,..)|   gaps (padding) are not code
//!   +-----------+-----------+-----------+
//! ```
//!
//! # Reads without locks
//!
//! A lookup may run in a signal handler that interrupted the very thread that is
//! registering a module, so the read path takes no lock, does not allocate and touches
//! no reference count: the registry publishes an immutable snapshot (the root of a
//! tree) through an `AtomicPtr`, and readers announce themselves in one of two reader
//! counters (picked by the parity of an epoch counter), then descend the tree through
//! plain `&` references. A writer, serialised by a mutex, builds a new tree by path
//! copying (new nodes for the root-to-leaf path it changes, plus at most one sibling per
//! level that it splits or merges; every other node is an `Arc` shared with the current
//! tree), swaps it in, flips the epoch, then waits until the old parity's counter
//! drains before freeing the old snapshot; that frees only the nodes (and the entries
//! of unregistered modules) no newer tree shares (a minimal read-copy-update). Readers
//! never wait for writers; a writer waits only for readers that started before its
//! swap.
//!
//! Invariants:
//! - module text ranges in a snapshot are non-empty, sorted and pairwise disjoint, so
//!   only the module with the greatest `text_start <= pc` can contain `pc`, and only the
//!   two neighbours of a new module's place can overlap it;
//! - the tree of a snapshot is a B+-tree: every leaf at the same depth, every node but
//!   the root with 8 to 16 items, an inner root with at least 2, each node's low keys
//!   those of its items; the snapshot's `len` counts its modules;
//! - nodes are never mutated once built (a change copies them), so a node shared by
//!   several snapshots reads the same in each;
//! - function ranges of a module are non-empty, sorted, disjoint and inside the text;
//! - a snapshot reachable from `current`, or loaded by a reader that registered in the
//!   current epoch's counter, is not freed (nor any node or entry it reaches) until
//!   that reader leaves;
//! - module ids come from one counter for the whole process (shared by every
//!   `CodeRegistry`) and are never reused: an id names one registration in the process,
//!   so a stale id cannot name a newer module, and ids from two registries never mix.
//!
//! Registering and unregistering must not happen in a signal handler (they allocate,
//! lock and may wait).

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};

use super::code_map::{CodeMap, FlatCodeMap};
use super::walker::{CodeLocation, CodeLookup};

/// One function's code inside a module's text section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionRange {
    /// Offset of the function's first byte from the start of the text section.
    pub start: u32,
    /// Length in bytes (non-zero).
    pub len: u32,
    /// Index of the function in the module's function space.
    pub func_index: u32,
}

/// A module's code, as given to [`CodeRegistry::register`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleText {
    /// Address of the first byte of the executable text.
    pub text_start: usize,
    /// Length of the text in bytes (non-zero, at most `u32::MAX + 1`).
    pub text_len: usize,
    /// The functions, sorted by `start`, non-overlapping, inside the text.
    pub functions: Vec<FunctionRange>,
    /// Opaque word returned with every lookup in this module
    /// ([`CodeRegistry::lookup_with_data`]); the runtime stores a pointer to its
    /// module there, valid while the registration lives.
    pub data: usize,
}

/// Why a module could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `text_len` is 0.
    #[error("module text is empty")]
    EmptyText,
    /// `text_len` does not fit offsets in a `u32`.
    #[error("module text of {text_len} bytes is larger than 4 GiB")]
    TextTooLarge {
        /// The given length.
        text_len: usize,
    },
    /// `text_start + text_len` overflows.
    #[error("module text at {text_start:#x} of {text_len} bytes wraps around the address space")]
    TextRangeOverflows {
        /// The given start.
        text_start: usize,
        /// The given length.
        text_len: usize,
    },
    /// The text overlaps a registered module's text.
    #[error("module text overlaps registered module {module}")]
    OverlapsModule {
        /// Id of the registered module.
        module: usize,
    },
    /// A function has length 0.
    #[error("function {func_index} is empty")]
    EmptyFunction {
        /// The function's index.
        func_index: u32,
    },
    /// A function ends past the end of the text.
    #[error("function {func_index} ends outside the module text")]
    FunctionOutsideText {
        /// The function's index.
        func_index: u32,
    },
    /// Two functions are out of order or overlap.
    #[error("function {second} starts before function {first} ends")]
    FunctionsOutOfOrder {
        /// The earlier function in the given list.
        first: u32,
        /// The function that follows it in the list.
        second: u32,
    },
}

/// A registered module, shared between snapshots.
#[derive(Debug)]
struct ModuleEntry {
    id: usize,
    text_start: usize,
    /// One past the last byte; `text_start < text_end`.
    text_end: usize,
    functions: Box<[FunctionRange]>,
    data: usize,
    /// The flat map of the functions, when they all start on 16-byte boundaries (as
    /// Cranelift aligns them): a lookup is then one load and one compare.
    map: Option<FlatCodeMap>,
}

impl ModuleEntry {
    /// The view of `map` (this entry's) at this module's text.
    #[inline(always)]
    fn code_map<'a>(&self, map: &'a FlatCodeMap) -> CodeMap<'a> {
        map.view(self.text_start, self.id)
    }

    #[inline(always)]
    fn lookup(&self, pc: usize) -> Option<CodeLocation> {
        if let Some(map) = &self.map {
            return self.code_map(map).lookup(pc);
        }
        if pc >= self.text_end {
            return None;
        }
        // Fails (`None`) below the text; fits a `u32` as registration checked.
        let text_offset = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        let after = self
            .functions
            .partition_point(|func| func.start <= text_offset);
        let func = self.functions.get(after.checked_sub(1)?)?;
        // `func.start <= text_offset` by the search, so this never fails.
        if text_offset.checked_sub(func.start)? >= func.len {
            return None;
        }
        Some(CodeLocation {
            module: self.id,
            func_index: func.func_index,
            text_offset,
        })
    }
}

/// Most items (modules of a leaf, children of an inner node) in one node.
const FANOUT: usize = 16;
/// Fewest items in a node other than the root.
const MIN_ITEMS: usize = FANOUT / 2;

/// A node of the persistent B+-tree of modules, keyed by `text_start`. Nodes are
/// immutable once built and shared (`Arc`) between the trees of successive snapshots:
/// a change copies the nodes on one root-to-leaf path (and at most one sibling per
/// level that it merges or splits) and shares every other node with the old tree.
#[derive(Debug)]
enum Node {
    /// Up to `FANOUT` modules, sorted by `text_start`.
    Leaf(Packed<Arc<ModuleEntry>>),
    /// Up to `FANOUT` subtrees of equal height, sorted by their lowest `text_start`.
    Inner(Packed<Arc<Node>>),
}

/// The items of a node in fixed arrays (no second allocation per node), with the low
/// key of each item next to the others so that a search reads a few cache lines.
#[derive(Debug)]
struct Packed<T> {
    /// Items in use, 1 to `FANOUT` (`MIN_ITEMS` or more outside the root) in a
    /// published tree; fewer only in a node a removal is about to merge away.
    len: usize,
    /// `lows[i]` is `items[i]`'s lowest `text_start`, for `i < len`; sorted.
    lows: [usize; FANOUT],
    /// `Some` exactly for `i < len`.
    items: [Option<T>; FANOUT],
}

/// What a node can hold.
trait Item: Clone {
    /// The lowest `text_start` under this item.
    fn low(&self) -> usize;
    /// The node of these items.
    fn node(items: Packed<Self>) -> Node;
}

impl Item for Arc<ModuleEntry> {
    fn low(&self) -> usize {
        self.text_start
    }
    fn node(items: Packed<Self>) -> Node {
        Node::Leaf(items)
    }
}

impl Item for Arc<Node> {
    fn low(&self) -> usize {
        match &**self {
            Node::Leaf(p) => p.lows[0],
            Node::Inner(p) => p.lows[0],
        }
    }
    fn node(items: Packed<Self>) -> Node {
        Node::Inner(items)
    }
}

impl<T: Item> Packed<T> {
    /// The node of `items` (at most `FANOUT`, sorted; any more are dropped).
    fn new(items: Vec<T>) -> Packed<T> {
        let mut packed = Packed {
            len: items.len().min(FANOUT),
            lows: [usize::MAX; FANOUT],
            items: Default::default(),
        };
        for (i, item) in items.into_iter().take(FANOUT).enumerate() {
            packed.lows[i] = item.low();
            packed.items[i] = Some(item);
        }
        packed
    }

    /// The items in use.
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().take(self.len).flatten()
    }

    /// The items, shared with this node (for building its replacement).
    fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }

    /// The index of the last item whose low key is at most `key` (the item under which
    /// the greatest `text_start <= key` is), or `None` if `key` is below them all.
    #[inline(always)]
    fn slot(&self, key: usize) -> Option<usize> {
        // A count rather than a search: the keys are sorted, and a count over a few
        // words compiles to straight-line code.
        let below = self.lows.iter().take(self.len).filter(|&&low| low <= key);
        below.count().checked_sub(1)
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)?.as_ref()
    }
}

impl Node {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(p) => p.len,
            Node::Inner(p) => p.len,
        }
    }

    /// The module whose text contains `pc`: the one with the greatest `text_start <=
    /// pc`, if its text reaches `pc` (texts are disjoint, so no other can contain it).
    #[inline(always)]
    fn find(&self, pc: usize) -> Option<&ModuleEntry> {
        self.floor(pc).filter(|m| pc < m.text_end)
    }

    /// The module with the greatest `text_start <= key`.
    #[inline(always)]
    fn floor(&self, key: usize) -> Option<&ModuleEntry> {
        let mut node = self;
        loop {
            match node {
                Node::Inner(inner) => node = inner.get(inner.slot(key)?)?,
                Node::Leaf(leaf) => return leaf.get(leaf.slot(key)?).map(|m| &**m),
            }
        }
    }

    /// The module with the least `text_start >= key`.
    fn ceiling(&self, key: usize) -> Option<&ModuleEntry> {
        match self {
            Node::Leaf(leaf) => {
                let at = leaf
                    .slot(key)
                    .map_or(0, |i| i + usize::from(leaf.lows[i] < key));
                leaf.get(at).map(|m| &**m)
            }
            Node::Inner(inner) => match inner.slot(key) {
                // Every module here is at or above `key`: the first one.
                None => inner.get(0)?.ceiling(key),
                // In the subtree that has the floor of `key`, or else first in the next.
                Some(i) => inner
                    .get(i)?
                    .ceiling(key)
                    .or_else(|| inner.get(i + 1)?.ceiling(key)),
            },
        }
    }
}

/// `items` (at most `2 * FANOUT`, sorted) as one node, or two halves if they do not fit
/// one; each half then has at least `MIN_ITEMS` if `items` had more than `FANOUT`.
fn pack<T: Item>(mut items: Vec<T>) -> Vec<Arc<Node>> {
    if items.len() <= FANOUT {
        vec![Arc::new(T::node(Packed::new(items)))]
    } else {
        let right = items.split_off(items.len() / 2);
        vec![
            Arc::new(T::node(Packed::new(items))),
            Arc::new(T::node(Packed::new(right))),
        ]
    }
}

/// `node` with `module` added, as one node or (if it overflowed) two; no module of
/// `node` starts at `module.text_start`.
fn insert_below(node: &Node, module: Arc<ModuleEntry>) -> Vec<Arc<Node>> {
    match node {
        Node::Leaf(leaf) => {
            let mut modules = leaf.to_vec();
            let at = leaf.slot(module.text_start).map_or(0, |i| i + 1);
            modules.insert(at.min(modules.len()), module);
            pack(modules)
        }
        Node::Inner(inner) => {
            let mut children = inner.to_vec();
            let at = inner.slot(module.text_start).unwrap_or(0);
            let Some(child) = children.get(at) else {
                return vec![];
            };
            let replaced = insert_below(child, module);
            children.splice(at..=at, replaced);
            pack(children)
        }
    }
}

/// The tree `root` with `module` added; no module of `root` starts at
/// `module.text_start`.
fn insert(root: &Link, module: Arc<ModuleEntry>) -> Arc<Node> {
    let Some(root) = root else {
        return Arc::new(Node::Leaf(Packed::new(vec![module])));
    };
    let mut parts = insert_below(root, module);
    match (parts.pop(), parts.pop()) {
        (Some(right), Some(left)) => Arc::new(Node::Inner(Packed::new(vec![left, right]))),
        (Some(only), None) => only,
        // `insert_below` always returns one or two nodes.
        _ => Arc::clone(root),
    }
}

/// Siblings `left` and `right` (of equal height) as one node, or two that both have
/// at least `MIN_ITEMS` if their items do not fit one.
fn merge(left: &Arc<Node>, right: &Arc<Node>) -> Vec<Arc<Node>> {
    match (&**left, &**right) {
        (Node::Leaf(l), Node::Leaf(r)) => pack(l.iter().chain(r.iter()).cloned().collect()),
        (Node::Inner(l), Node::Inner(r)) => pack(l.iter().chain(r.iter()).cloned().collect()),
        // Siblings always have the same height.
        _ => vec![Arc::clone(left), Arc::clone(right)],
    }
}

/// `node` without the module that starts at `key`, if that module is `id` (`None`
/// otherwise). The result may have fewer than `MIN_ITEMS` items (even none): the
/// caller merges it with a sibling.
fn remove_below(node: &Node, key: usize, id: usize) -> Option<Arc<Node>> {
    match node {
        Node::Leaf(leaf) => {
            let at = leaf.slot(key)?;
            leaf.get(at).filter(|m| m.text_start == key && m.id == id)?;
            let mut modules = leaf.to_vec();
            modules.remove(at);
            Some(Arc::new(Node::Leaf(Packed::new(modules))))
        }
        Node::Inner(inner) => {
            let at = inner.slot(key)?;
            let mut children = inner.to_vec();
            let child = remove_below(children.get(at)?, key, id)?;
            if child.len() >= MIN_ITEMS {
                children[at] = child;
            } else if at + 1 < children.len() {
                let merged = merge(&child, &children[at + 1]);
                children.splice(at..at + 2, merged);
            } else if at > 0 {
                let merged = merge(&children[at - 1], &child);
                children.splice(at - 1..at + 1, merged);
            } else {
                // An only child (a root of one child is never built).
                children[at] = child;
            }
            Some(Arc::new(Node::Inner(Packed::new(children))))
        }
    }
}

/// The tree `root` without module `id`, which starts at `key`; `None` if `root` has no
/// such module.
fn remove(root: &Link, key: usize, id: usize) -> Option<Link> {
    let root = remove_below(root.as_ref()?, key, id)?;
    Some(match &*root {
        Node::Leaf(leaf) if leaf.len == 0 => None,
        // The root's last two children merged: the tree gets one level lower.
        Node::Inner(inner) if inner.len == 1 => inner.get(0).cloned(),
        _ => Some(root),
    })
}

/// A tree, or no modules.
type Link = Option<Arc<Node>>;

/// An immutable set of modules: a persistent B+-tree by `text_start`.
#[derive(Debug, Default)]
struct Snapshot {
    root: Link,
    /// The number of modules in the tree.
    len: usize,
}

impl Snapshot {
    /// No modules (what `read` sees before the first registration).
    const EMPTY: Snapshot = Snapshot { root: None, len: 0 };

    /// The module whose text contains `pc`.
    #[inline(always)]
    fn module_at(&self, pc: usize) -> Option<&ModuleEntry> {
        self.root.as_deref()?.find(pc)
    }

    fn lookup(&self, pc: usize) -> Option<CodeLocation> {
        self.lookup_with_data(pc).map(|(loc, _)| loc)
    }

    fn lookup_with_data(&self, pc: usize) -> Option<(CodeLocation, usize)> {
        let module = self.module_at(pc)?;
        module.lookup(pc).map(|loc| (loc, module.data))
    }

    /// The modules next to a new text starting at `start`: the last one starting below
    /// `start` and the first one starting at or above it. Only these can overlap it,
    /// since the texts in the tree are sorted and disjoint.
    fn neighbours(&self, start: usize) -> (Option<&ModuleEntry>, Option<&ModuleEntry>) {
        let Some(root) = self.root.as_deref() else {
            return (None, None);
        };
        let below = start.checked_sub(1).and_then(|key| root.floor(key));
        (below, root.ceiling(start))
    }
}

/// Maps PCs to (module, function) for every registered module.
///
/// Lookups are lock-free and allocation-free (see the module docs); registration is
/// serialised. `CodeRegistry::new` is `const`, so a process-wide registry can be a
/// `static`.
#[derive(Debug)]
pub struct CodeRegistry {
    /// The current snapshot (`Box::into_raw`), or null for no modules.
    current: AtomicPtr<Snapshot>,
    /// Increments on every published snapshot; its parity picks the reader counter.
    epoch: AtomicUsize,
    /// Readers inside a lookup, by the epoch parity they registered under.
    readers: [AtomicUsize; 2],
    /// Serialises writers.
    writer: Mutex<()>,
}

/// The next module id, shared by every [`CodeRegistry`] of the process: ids start at 1
/// and are never reused, so an id names one registration in the whole process.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl Default for CodeRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl CodeRegistry {
    /// An empty registry.
    pub const fn new() -> Self {
        CodeRegistry {
            current: AtomicPtr::new(ptr::null_mut()),
            epoch: AtomicUsize::new(0),
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
            writer: Mutex::new(()),
        }
    }

    /// Registers a module's code; it stays registered until the returned handle is
    /// dropped. Costs O(log modules) (see the module docs); the module gets an id no
    /// other registration in the process has ([`ModuleRegistration::id`]).
    ///
    /// # Errors
    ///
    /// A [`RegistryError`] if the text or the function ranges are malformed, or if the
    /// text overlaps a registered module.
    pub fn register(&self, module: ModuleText) -> Result<ModuleRegistration<'_>, RegistryError> {
        let ModuleText {
            text_start,
            text_len,
            functions,
            data,
        } = module;
        if text_len == 0 {
            return Err(RegistryError::EmptyText);
        }
        // Offsets are `u32`: the last byte's offset must fit.
        if u32::try_from(text_len - 1).is_err() {
            return Err(RegistryError::TextTooLarge { text_len });
        }
        let text_end =
            text_start
                .checked_add(text_len)
                .ok_or(RegistryError::TextRangeOverflows {
                    text_start,
                    text_len,
                })?;
        check_functions(&functions, text_len)?;

        let map = FlatCodeMap::new(&functions, text_len);
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (snapshot, id) = self.read(|snapshot| {
            // Only the neighbours can overlap: the tree is sorted and disjoint.
            let (below, above) = snapshot.neighbours(text_start);
            if let Some(below) = below.filter(|m| m.text_end > text_start) {
                return Err(RegistryError::OverlapsModule { module: below.id });
            }
            if let Some(above) = above.filter(|m| m.text_start < text_end) {
                return Err(RegistryError::OverlapsModule { module: above.id });
            }
            // Taken only once the module is accepted, so a rejected module uses no id.
            let id = NEXT_ID.fetch_add(1, SeqCst);
            let entry = Arc::new(ModuleEntry {
                id,
                text_start,
                text_end,
                functions: functions.into_boxed_slice(),
                data,
                map,
            });
            let root = insert(&snapshot.root, entry);
            let len = snapshot.len + 1;
            Ok((
                Snapshot {
                    root: Some(root),
                    len,
                },
                id,
            ))
        })?;
        self.publish(snapshot);
        Ok(ModuleRegistration {
            registry: self,
            id,
            text_start,
        })
    }

    /// The number of registered modules.
    pub fn module_count(&self) -> usize {
        self.read(|snapshot| snapshot.len)
    }

    /// The wasm function containing `pc`, if any. Lock-free and allocation-free.
    pub fn lookup(&self, pc: usize) -> Option<CodeLocation> {
        self.read(|snapshot| snapshot.lookup(pc))
    }

    /// Runs `f` with a view of the registered modules that stays valid for the whole
    /// call: one reader registration for many lookups (a whole walk), instead of one per
    /// lookup. The view also remembers the last module it found, since consecutive
    /// frames are usually in the same module. Lock-free and allocation-free.
    #[inline(always)]
    pub fn with_view<T>(&self, f: impl FnOnce(&RegistryView<'_>) -> T) -> T {
        self.read(|snapshot| {
            f(&RegistryView {
                snapshot,
                last: std::cell::Cell::new(None),
            })
        })
    }

    /// Like [`CodeRegistry::lookup`], also returning the module's
    /// [`ModuleText::data`]. Lock-free and allocation-free.
    pub fn lookup_with_data(&self, pc: usize) -> Option<(CodeLocation, usize)> {
        self.read(|snapshot| snapshot.lookup_with_data(pc))
    }

    /// Removes module `id`, whose text starts at `text_start`; called by
    /// [`ModuleRegistration`]'s `Drop`.
    fn unregister(&self, id: usize, text_start: usize) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.read(|snapshot| {
            // The registration being dropped keeps its module in the tree, so `remove`
            // finds it; if it did not, there would be nothing to remove.
            let root = remove(&snapshot.root, text_start, id)?;
            Some(Snapshot {
                root,
                len: snapshot.len - 1,
            })
        });
        if let Some(snapshot) = snapshot {
            self.publish(snapshot);
        }
    }

    /// Runs `f` on the current snapshot without taking a lock.
    #[inline(always)]
    fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        let _reader = self.enter_read();
        let current = self.current.load(SeqCst);
        // One call of `f` (not one per case), so that it can be inlined here: a walk's
        // closure then shares its caller's frame, and the caller's visitor state can
        // live in registers.
        let snapshot = if current.is_null() {
            &Snapshot::EMPTY
        } else {
            // SAFETY: `current` came from `Box::into_raw` in `publish`. `_reader`
            // counts this thread in the counter of an epoch that was current after it
            // registered, and every writer that replaces a snapshot waits, before
            // freeing it, for the counter of the epoch it flips away from (see
            // `publish`); the writer that replaces `current` (or the one after it)
            // therefore waits for `_reader` to be dropped, after `f` returns.
            // Snapshots are never mutated after publication.
            unsafe { &*current }
        };
        f(snapshot)
    }

    /// Registers a reader in the counter of the current epoch.
    fn enter_read(&self) -> ReadGuard<'_> {
        loop {
            let epoch = self.epoch.load(SeqCst);
            let counter = &self.readers[epoch % 2];
            counter.fetch_add(1, SeqCst);
            // If a writer flipped the epoch meanwhile, it may not wait for this
            // counter: retry under the new epoch.
            if self.epoch.load(SeqCst) == epoch {
                READS_ON_THIS_THREAD.set(READS_ON_THIS_THREAD.get() + 1);
                return ReadGuard { counter };
            }
            counter.fetch_sub(1, SeqCst);
        }
    }

    /// Makes `snapshot` current and frees the old one once no reader can hold it.
    /// Callers hold `self.writer`.
    fn publish(&self, snapshot: Snapshot) {
        let new = Box::into_raw(Box::new(snapshot));
        let old = self.current.swap(new, SeqCst);
        let epoch = self.epoch.fetch_add(1, SeqCst);
        // Readers that registered under `epoch` may have loaded `old`; readers that
        // register from now on see the new epoch and can only load `new` (or later).
        while self.readers[epoch % 2].load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        if !old.is_null() {
            // SAFETY: `old` came from `Box::into_raw` in an earlier `publish`, is no
            // longer reachable from `current`, and every reader that could have loaded
            // it has left (the loop above); only this writer frees it.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

impl Drop for CodeRegistry {
    fn drop(&mut self) {
        let current = *self.current.get_mut();
        if !current.is_null() {
            // SAFETY: `&mut self` excludes readers and writers; `current` came from
            // `Box::into_raw` and is freed only here.
            drop(unsafe { Box::from_raw(current) });
        }
    }
}

impl CodeLookup for CodeRegistry {
    fn lookup_pc(&self, pc: usize) -> Option<CodeLocation> {
        self.lookup(pc)
    }
}

/// A consistent view of the registry for a sequence of lookups; see
/// [`CodeRegistry::with_view`].
pub struct RegistryView<'a> {
    snapshot: &'a Snapshot,
    /// The module of the most recent successful lookup or code map (a walk answers the
    /// PCs inside a code map itself, so it stores here once per module run, not per
    /// frame).
    last: std::cell::Cell<Option<&'a ModuleEntry>>,
}

impl<'a> RegistryView<'a> {
    /// The function containing `pc` and its module's data word.
    #[inline(always)]
    pub fn lookup_with_data(&self, pc: usize) -> Option<(CodeLocation, usize)> {
        let module = self.module_at(pc)?;
        let found = module.lookup(pc)?;
        self.last.set(Some(module));
        Some((found, module.data))
    }

    /// The id and data word of the module whose text contains `pc`, whether or not `pc`
    /// is inside one of its functions (a sampling profiler tells code between the
    /// functions, such as trampolines, from host code with it). Lock-free and
    /// allocation-free; does not change the view's last module.
    #[inline]
    pub fn module_text_at(&self, pc: usize) -> Option<(usize, usize)> {
        let module = self.snapshot.module_at(pc)?;
        Some((module.id, module.data))
    }

    /// The module whose text contains `pc`: the last one found, else a search.
    #[inline(always)]
    fn module_at(&self, pc: usize) -> Option<&'a ModuleEntry> {
        if let Some(m) = self.last.get() {
            if pc >= m.text_start && pc < m.text_end {
                return Some(m);
            }
        }
        self.snapshot.module_at(pc)
    }

    /// The data word of the module of the most recent successful lookup through this
    /// view, without searching again. For a walk through this view, that is the module
    /// of the frame just yielded, as long as the visitor makes no lookups of its own
    /// through the same view (the walker answers PCs inside the [`CodeMap`] it was last
    /// given without asking the view again).
    #[inline]
    pub fn last_data(&self) -> Option<usize> {
        // `last` changes only on a successful lookup (or map) in another module, and a
        // failed lookup leaves it alone: it is always the module of the last success.
        self.last.get().map(|m| m.data)
    }
}

impl CodeLookup for RegistryView<'_> {
    #[inline(always)]
    fn lookup_pc(&self, pc: usize) -> Option<CodeLocation> {
        self.lookup_with_data(pc).map(|(loc, _)| loc)
    }

    /// The flat map of the module containing `pc`, if `pc` is in one of its functions
    /// and the module has a map; the module becomes the last one found (as for a
    /// successful [`lookup_with_data`](Self::lookup_with_data)).
    #[inline]
    fn code_map(&self, pc: usize) -> Option<CodeMap<'_>> {
        let module = self.module_at(pc)?;
        let map = module.code_map(module.map.as_ref()?);
        map.lookup(pc)?;
        self.last.set(Some(module));
        Some(map)
    }
}

/// Leaves the reader counter it entered when dropped.
struct ReadGuard<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, SeqCst);
        READS_ON_THIS_THREAD.set(READS_ON_THIS_THREAD.get() - 1);
    }
}

thread_local! {
    /// Registry reads in progress on this thread (lookups, `with_view` closures), over
    /// every registry. A plain `Cell` with a constant initialiser and no destructor:
    /// safe to touch from a signal handler's lookup.
    static READS_ON_THIS_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The number of registry reads in progress on the calling thread, over every
/// [`CodeRegistry`]: lookups running, and [`CodeRegistry::with_view`] closures not yet
/// returned.
///
/// A read counts itself in its registry until it ends; one abandoned without ending (a
/// `with_view` closure left by resuming past it after a trap) would keep the count
/// raised, and every later `register` or unregister of that registry would wait for it
/// for ever. [`trap::resume`](crate::trap::resume) therefore refuses to resume while
/// this is not 0.
pub fn reads_in_progress_on_this_thread() -> usize {
    READS_ON_THIS_THREAD.get()
}

/// Keeps a module registered; dropping it unregisters the module.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters the module at once"]
pub struct ModuleRegistration<'r> {
    registry: &'r CodeRegistry,
    id: usize,
    /// The module's `text_start`: its key in the registry's tree.
    text_start: usize,
}

impl ModuleRegistration<'_> {
    /// The module's id, as found in [`CodeLocation::module`]: unique in the process
    /// (every [`CodeRegistry`] takes ids from one counter) and never reused, so a
    /// collector may key its per-module data by it across several registries.
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Drop for ModuleRegistration<'_> {
    fn drop(&mut self) {
        self.registry.unregister(self.id, self.text_start);
    }
}

/// Checks that `functions` are non-empty, sorted, disjoint and inside `text_len`.
fn check_functions(functions: &[FunctionRange], text_len: usize) -> Result<(), RegistryError> {
    let mut previous: Option<(u32, u64)> = None; // (func_index, end)
    for func in functions {
        if func.len == 0 {
            return Err(RegistryError::EmptyFunction {
                func_index: func.func_index,
            });
        }
        let end = u64::from(func.start) + u64::from(func.len);
        if end > text_len as u64 {
            return Err(RegistryError::FunctionOutsideText {
                func_index: func.func_index,
            });
        }
        if let Some((first, previous_end)) = previous {
            if u64::from(func.start) < previous_end {
                return Err(RegistryError::FunctionsOutOfOrder {
                    first,
                    second: func.func_index,
                });
            }
        }
        previous = Some((func.func_index, end));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(start: u32, len: u32, func_index: u32) -> FunctionRange {
        FunctionRange {
            start,
            len,
            func_index,
        }
    }

    fn module(text_start: usize, text_len: usize, functions: &[FunctionRange]) -> ModuleText {
        ModuleText {
            text_start,
            text_len,
            functions: functions.to_vec(),
            data: text_start ^ 0x5a5a,
        }
    }

    #[test]
    fn finds_functions_and_not_gaps() {
        let registry = CodeRegistry::new();
        let a = registry
            .register(module(
                0x1000,
                0x100,
                &[func(0, 0x40, 0), func(0x50, 0x30, 3)],
            ))
            .unwrap();
        let b = registry
            .register(module(0x400, 0x10, &[func(0, 0x10, 9)]))
            .unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(registry.module_count(), 2);
        let at = |pc| {
            registry
                .lookup(pc)
                .map(|l| (l.module, l.func_index, l.text_offset))
        };
        assert_eq!(at(0x1000), Some((a.id(), 0, 0)));
        assert_eq!(at(0x103f), Some((a.id(), 0, 0x3f)));
        assert_eq!(at(0x1040), None, "padding between functions");
        assert_eq!(at(0x1050), Some((a.id(), 3, 0x50)));
        assert_eq!(at(0x107f), Some((a.id(), 3, 0x7f)));
        assert_eq!(at(0x1080), None, "inside text, after the last function");
        assert_eq!(at(0x1100), None, "past the text");
        assert_eq!(at(0xfff), None);
        assert_eq!(at(0x40f), Some((b.id(), 9, 0xf)));
        assert_eq!(at(0), None);
        assert_eq!(at(usize::MAX), None);
        assert_eq!(registry.lookup_pc(0x1001), registry.lookup(0x1001));

        drop(a);
        assert_eq!(at(0x1000), None, "unregistered on drop");
        assert_eq!(at(0x400), Some((b.id(), 9, 0)));
        drop(b);
        assert_eq!(registry.module_count(), 0);
    }

    /// The flat table and the binary search (used when a function index does not fit a
    /// table entry) give what a linear scan of the functions gives, at every byte.
    #[test]
    fn every_byte_maps_to_the_function_a_scan_finds() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        for case in 0..200 {
            let registry = CodeRegistry::new();
            let mut functions = Vec::new();
            let mut at = 0u32;
            for i in 0..1 + next(12) as u32 {
                at += 16 * next(3) as u32;
                let len = 1 + next(40) as u32;
                // Large indices too; in some cases one too large for a table entry.
                let func_index = match (case % 4, i) {
                    (1, 0) => (u32::MAX >> 5) - 1,
                    (2, 0) => u32::MAX >> 5,
                    _ => i * 7 + next(5) as u32,
                };
                functions.push(func(at, len, func_index));
                at = (at + len).next_multiple_of(16);
            }
            let text_len = at as usize + 16 * next(3) as usize;
            let base = 0x10_0000;
            let _m = registry
                .register(module(base, text_len, &functions))
                .unwrap();
            for off in 0..text_len as u32 + 20 {
                let expected = functions
                    .iter()
                    .find(|f| off >= f.start && off - f.start < f.len)
                    .map(|f| (f.func_index, off));
                let got = registry
                    .lookup(base + off as usize)
                    .map(|l| (l.func_index, l.text_offset));
                assert_eq!(got, expected, "case {case}, offset {off:#x}, {functions:?}");
            }
        }
    }

    #[test]
    fn rejects_malformed_and_overlapping_modules() {
        let registry = CodeRegistry::new();
        let _a = registry
            .register(module(0x1000, 0x100, &[func(0, 0x100, 0)]))
            .unwrap();
        let err = |m| registry.register(m).map(|r| r.id()).unwrap_err();
        assert_eq!(err(module(0x2000, 0, &[])), RegistryError::EmptyText);
        assert_eq!(
            err(module(usize::MAX - 4, 8, &[])),
            RegistryError::TextRangeOverflows {
                text_start: usize::MAX - 4,
                text_len: 8
            }
        );
        assert_eq!(
            err(module(0, (1 << 32) + 1, &[])),
            RegistryError::TextTooLarge {
                text_len: (1 << 32) + 1
            }
        );
        for (start, len) in [(0x10ff, 1), (0xf00, 0x101), (0x1080, 8), (0x0, 0x2000)] {
            assert!(
                matches!(
                    err(module(start, len, &[])),
                    RegistryError::OverlapsModule { .. }
                ),
                "{start:#x}+{len:#x}"
            );
        }
        assert_eq!(
            err(module(0x2000, 0x10, &[func(0, 0, 4)])),
            RegistryError::EmptyFunction { func_index: 4 }
        );
        assert_eq!(
            err(module(0x2000, 0x10, &[func(8, 9, 4)])),
            RegistryError::FunctionOutsideText { func_index: 4 }
        );
        assert_eq!(
            err(module(0x2000, 0x10, &[func(4, 4, 1), func(7, 2, 2)])),
            RegistryError::FunctionsOutOfOrder {
                first: 1,
                second: 2
            }
        );
        assert_eq!(
            err(module(0x2000, 0x10, &[func(8, 4, 1), func(0, 2, 2)])),
            RegistryError::FunctionsOutOfOrder {
                first: 1,
                second: 2
            }
        );
        // Adjacent modules are fine, and failed registrations left nothing behind.
        let _b = registry.register(module(0x1100, 0x10, &[])).unwrap();
        let _c = registry.register(module(0xff0, 0x10, &[])).unwrap();
        assert_eq!(registry.module_count(), 3);
    }

    #[test]
    fn ids_are_not_reused() {
        let registry = CodeRegistry::new();
        let first = registry.register(module(0x1000, 1, &[])).unwrap().id();
        let second = registry.register(module(0x1000, 1, &[])).unwrap().id();
        assert_ne!(first, second);
    }

    /// Ids come from one counter for the whole process: two registries never hand out
    /// the same id, even for the same text.
    #[test]
    fn ids_are_unique_across_registries() {
        let (first, second) = (CodeRegistry::new(), CodeRegistry::new());
        let mut registrations = Vec::new();
        for i in 0..100 {
            let text = module(0x1000 + i * 0x10, 0x10, &[func(0, 0x10, 0)]);
            registrations.push(first.register(text.clone()).unwrap());
            registrations.push(second.register(text).unwrap());
        }
        let mut ids: Vec<usize> = registrations.iter().map(ModuleRegistration::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let (a, b) = (
            first.lookup(0x1005).unwrap(),
            second.lookup(0x1005).unwrap(),
        );
        assert_ne!(a.module, b.module);
        assert_eq!((a.func_index, a.text_offset), (b.func_index, b.text_offset));
    }

    /// The in-order texts of `link`, after checking the tree's invariants at every node:
    /// items in use and unused, node fill, low keys, search order, disjoint texts, and
    /// every leaf at the same depth. Returns the height too.
    fn checked_texts(link: &Link) -> (Vec<(usize, usize)>, usize) {
        fn check<T: Item>(packed: &Packed<T>, is_root: bool) -> Vec<T> {
            let min = if is_root { 1 } else { MIN_ITEMS };
            assert!((min..=FANOUT).contains(&packed.len), "fill {}", packed.len);
            for (i, (item, low)) in packed.items.iter().zip(packed.lows).enumerate() {
                assert_eq!(item.is_some(), i < packed.len);
                assert_eq!(item.as_ref().map_or(usize::MAX, Item::low), low);
            }
            packed.to_vec()
        }
        fn walk(node: &Node, is_root: bool, texts: &mut Vec<(usize, usize)>) -> usize {
            match node {
                Node::Leaf(leaf) => {
                    let modules = check(leaf, is_root);
                    texts.extend(modules.iter().map(|m| (m.text_start, m.text_end)));
                    1
                }
                Node::Inner(inner) => {
                    let children = check(inner, is_root);
                    assert!(!is_root || children.len() >= 2, "a root has two children");
                    let heights: Vec<usize> =
                        children.iter().map(|c| walk(c, false, texts)).collect();
                    assert!(heights.iter().all(|&h| h == heights[0]), "{heights:?}");
                    1 + heights[0]
                }
            }
        }
        let mut texts = Vec::new();
        let height = link
            .as_deref()
            .map_or(0, |root| walk(root, true, &mut texts));
        for (start, end) in &texts {
            assert!(start < end, "non-empty text");
        }
        for pair in texts.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "sorted and disjoint: {pair:?}");
        }
        (texts, height)
    }

    /// A module of the model: what the registry should hold.
    struct Expected {
        start: usize,
        end: usize,
        functions: Vec<FunctionRange>,
        data: usize,
        id: usize,
    }

    impl Expected {
        /// True if the registry builds a flat map for this module.
        fn has_map(&self) -> bool {
            !self.functions.is_empty() && self.functions.iter().all(|f| f.start % 16 == 0)
        }
    }

    /// What a lookup of `pc` must answer, by a linear scan of the model.
    fn expected_at(model: &[Expected], pc: usize) -> Option<(CodeLocation, usize)> {
        let m = model.iter().find(|m| m.start <= pc && pc < m.end)?;
        let offset = u32::try_from(pc - m.start).unwrap();
        let f = m
            .functions
            .iter()
            .find(|f| offset >= f.start && offset - f.start < f.len)?;
        let location = CodeLocation {
            module: m.id,
            func_index: f.func_index,
            text_offset: offset,
        };
        Some((location, m.data))
    }

    /// Checks every way of looking `pcs` up (the registry, one view for all of them, the
    /// view's code maps) against the model.
    fn check_lookups(registry: &CodeRegistry, model: &[Expected], pcs: &[usize]) {
        for &pc in pcs {
            let expected = expected_at(model, pc);
            assert_eq!(registry.lookup_with_data(pc), expected, "pc {pc:#x}");
            assert_eq!(registry.lookup(pc), expected.map(|(l, _)| l), "pc {pc:#x}");
        }
        registry.with_view(|view| {
            for &pc in pcs {
                let expected = expected_at(model, pc);
                let last = view.last_data();
                assert_eq!(view.lookup_with_data(pc), expected, "view, pc {pc:#x}");
                assert_eq!(view.last_data(), expected.map_or(last, |(_, d)| Some(d)));
                let map = view.code_map(pc);
                let module = model.iter().find(|m| m.start <= pc && pc < m.end);
                let with_map = expected.filter(|_| module.is_some_and(Expected::has_map));
                assert_eq!(map.and_then(|map| map.lookup(pc)), with_map.map(|(l, _)| l));
                assert_eq!(map.is_some(), with_map.is_some(), "code map at {pc:#x}");
            }
        });
    }

    /// The PCs at and around the edges of `m` and of its functions.
    fn edges(m: &Expected) -> Vec<usize> {
        let mut pcs = vec![m.start.wrapping_sub(1), m.start, m.end - 1, m.end];
        for f in &m.functions {
            let start = m.start + f.start as usize;
            let end = start + f.len as usize;
            pcs.extend([start.wrapping_sub(1), start, end - 1, end]);
        }
        pcs
    }

    /// Thousands of random registrations (many rejected as overlapping, many adjacent
    /// to a registered module) and unregistrations against a sorted `Vec`: every
    /// answer, error, count and the tree's invariants agree with the model.
    #[test]
    fn random_operations_agree_with_a_sorted_vec() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let registry = CodeRegistry::new();
        let mut model: Vec<Expected> = Vec::new();
        let mut registrations: Vec<ModuleRegistration<'_>> = Vec::new();
        let (base, span) = (0x40_0000usize, 0x2_0000usize);
        let (mut registered, mut rejected, mut tallest) = (0, 0, 0);
        for op in 0..8000 {
            // Up to a few hundred modules (trees of three levels, whose inner nodes
            // split and merge) and down to a few, twice over.
            let target = if (op / 2000) % 2 == 0 { 400 } else { 10 };
            let grow = if model.is_empty() {
                true
            } else if model.len() < target {
                next(10) < 7
            } else {
                next(10) < 3
            };
            let mut touched = Vec::new();
            if grow {
                let aligned = next(4) != 0;
                let mut functions = Vec::new();
                let mut at = 0u32;
                for i in 0..next(4) as u32 {
                    at += if aligned { 16 * next(3) } else { next(24) } as u32;
                    let len = 1 + next(48) as u32;
                    functions.push(func(at, len, i * 3 + next(3) as u32));
                    at = if aligned {
                        (at + len).next_multiple_of(16)
                    } else {
                        at + len
                    };
                }
                let text_len = (at as usize + next(40) as usize).max(1);
                // Random places, and places right next to a registered module.
                let start = match (next(4), model.get(next(model.len() as u64 + 1) as usize)) {
                    (0, Some(m)) => m.end,
                    (1, Some(m)) => m.start.saturating_sub(text_len),
                    _ => base + next(span as u64) as usize,
                };
                let end = start + text_len;
                let at = model.partition_point(|m| m.start < start);
                let overlap = match (at.checked_sub(1).map(|i| &model[i]), model.get(at)) {
                    (Some(below), _) if below.end > start => Some(below.id),
                    (_, Some(above)) if above.start < end => Some(above.id),
                    _ => None,
                };
                let text = ModuleText {
                    text_start: start,
                    text_len,
                    functions: functions.clone(),
                    data: next(1 << 40) as usize,
                };
                let data = text.data;
                match (registry.register(text), overlap) {
                    (Ok(registration), None) => {
                        registered += 1;
                        model.insert(
                            at,
                            Expected {
                                start,
                                end,
                                functions,
                                data,
                                id: registration.id(),
                            },
                        );
                        registrations.push(registration);
                        touched.push(at);
                    }
                    (Err(err), Some(module)) => {
                        rejected += 1;
                        assert_eq!(err, RegistryError::OverlapsModule { module }, "op {op}");
                        touched.extend(model.iter().position(|m| m.id == module));
                    }
                    (got, expected) => panic!(
                        "op {op}: [{start:#x}, {end:#x}) gave {:?}, expected overlap {expected:?}",
                        got.map(|r| r.id())
                    ),
                }
            } else {
                let victim = next(registrations.len() as u64) as usize;
                let registration = registrations.swap_remove(victim);
                let at = model
                    .iter()
                    .position(|m| m.id == registration.id())
                    .unwrap();
                let gone = model.remove(at);
                drop(registration);
                let mut pcs = edges(&gone);
                pcs.push(gone.start + (gone.end - gone.start) / 2);
                check_lookups(&registry, &model, &pcs);
                touched.extend([at.wrapping_sub(1), at]);
            }
            assert_eq!(registry.module_count(), model.len(), "op {op}");
            let mut pcs: Vec<usize> = (0..8)
                .map(|_| base - 0x100 + next(span as u64 + 0x300) as usize)
                .collect();
            for i in touched {
                for m in [i.wrapping_sub(1), i, i + 1]
                    .iter()
                    .filter_map(|&j| model.get(j))
                {
                    pcs.extend(edges(m));
                }
            }
            check_lookups(&registry, &model, &pcs);
            if op % 200 == 0 {
                let all: Vec<usize> = model.iter().flat_map(edges).collect();
                check_lookups(&registry, &model, &all);
                let (texts, height) = registry.read(|snapshot| checked_texts(&snapshot.root));
                let expected: Vec<_> = model.iter().map(|m| (m.start, m.end)).collect();
                assert_eq!(texts, expected, "op {op}");
                tallest = tallest.max(height);
            }
        }
        // The run exercised both outcomes many times, and trees of three levels.
        assert_eq!(tallest, 3);
        assert!(
            registered > 2000 && rejected > 500,
            "{registered} / {rejected}"
        );
        drop(registrations);
        assert_eq!(registry.module_count(), 0);
        assert_eq!(registry.lookup(base + span / 2), None);
    }

    /// A registry of 10,000 single-function modules (a JIT registering one function at
    /// a time) finds every function and no gap, and empties as they are dropped.
    #[test]
    fn ten_thousand_single_function_modules() {
        const N: usize = 10_000;
        let registry = CodeRegistry::new();
        let mut next = crate::test_rng::xorshift(0x51_7cc1_b727_220a);
        let mut model = Vec::with_capacity(N);
        let mut registrations = Vec::with_capacity(N);
        let mut at = 0x7f00_0000_0000usize;
        for i in 0..N {
            let len = 16 * (1 + next(8) as usize);
            let text = ModuleText {
                text_start: at,
                text_len: len,
                functions: vec![func(0, len as u32 - next(16) as u32, i as u32)],
                data: i,
            };
            let registration = registry.register(text.clone()).unwrap();
            model.push((registration.id(), text));
            registrations.push(registration);
            // A gap of 16 bytes between modules.
            at += len + 16;
        }
        assert_eq!(registry.module_count(), N);
        let check = |model: &[(usize, ModuleText)]| {
            for (id, text) in model {
                let f = text.functions[0];
                let last = text.text_start + f.len as usize - 1;
                let found = registry.lookup_with_data(last).unwrap();
                assert_eq!((found.0.module, found.0.func_index), (*id, f.func_index));
                assert_eq!(found.1, text.data);
                assert_eq!(registry.lookup(text.text_start + text.text_len), None);
                let found = registry.with_view(|view| view.lookup_with_data(text.text_start));
                assert_eq!(found.map(|(l, d)| (l.module, d)), Some((*id, text.data)));
            }
        };
        check(&model);
        let height = registry.read(|snapshot| {
            let (texts, height) = checked_texts(&snapshot.root);
            assert_eq!(texts.len(), N);
            height
        });
        // Nodes of at least 8 items (the root at least 2) hold 10,000 modules in at
        // most 5 levels.
        assert!(height <= 5, "height {height}");
        // Unregister in a random order, checking the survivors from time to time.
        while !registrations.is_empty() {
            let victim = next(registrations.len() as u64) as usize;
            let id = registrations.swap_remove(victim).id();
            let at = model.iter().position(|(m, _)| *m == id).unwrap();
            let (_, text) = model.swap_remove(at);
            assert_eq!(registry.lookup(text.text_start), None);
            if registrations.len() % 2500 == 0 {
                check(&model);
            }
            if registrations.len() % 250 == 0 {
                let texts = registry.read(|snapshot| checked_texts(&snapshot.root).0);
                assert_eq!(texts.len(), registrations.len());
            }
        }
        assert_eq!(registry.module_count(), 0);
    }

    /// A module with no code for the tree tests.
    fn entry(id: usize, text_start: usize) -> Arc<ModuleEntry> {
        Arc::new(ModuleEntry {
            id,
            text_start,
            text_end: text_start + 16,
            functions: Box::new([]),
            data: 0,
            map: None,
        })
    }

    /// The addresses of the nodes of `link`.
    fn node_set(link: &Link) -> std::collections::HashSet<*const Node> {
        let mut set = std::collections::HashSet::new();
        let mut stack: Vec<&Arc<Node>> = link.iter().collect();
        while let Some(node) = stack.pop() {
            set.insert(Arc::as_ptr(node));
            if let Node::Inner(inner) = &**node {
                stack.extend(inner.items.iter().flatten());
            }
        }
        set
    }

    /// Inserting into or removing from a tree builds at most two new nodes per level
    /// (the copy on the path, and a split or merged sibling) and shares every other node
    /// with the old tree, which stays as it was.
    #[test]
    fn changes_copy_only_a_path_and_share_the_rest() {
        const N: usize = 10_000;
        // In address order, as a JIT allocates.
        let mut tree: Link = None;
        for i in 0..N {
            tree = Some(insert(&tree, entry(i + 1, 64 * i)));
        }
        let (texts, height) = checked_texts(&tree);
        assert_eq!(texts.len(), N);
        assert!(height <= 5, "height {height}");
        let old_nodes = node_set(&tree);
        let new_nodes = |new: &Link| node_set(new).difference(&old_nodes).count();
        let mut next = crate::test_rng::xorshift(0x0123_4567_89ab_cdef);
        for round in 0..200 {
            let i = next(N as u64) as usize;
            // Into the gap after module `i`.
            let added = Some(insert(&tree, entry(N + 1 + round, 64 * i + 32)));
            let (texts, added_height) = checked_texts(&added);
            assert_eq!(texts.len(), N + 1);
            assert!(texts.contains(&(64 * i + 32, 64 * i + 48)));
            assert!(
                new_nodes(&added) <= 2 * added_height,
                "insert copied too much"
            );
            let removed = remove(&tree, 64 * i, i + 1).expect("module i is there");
            let (texts, _) = checked_texts(&removed);
            assert_eq!(texts.len(), N - 1);
            assert!(!texts.contains(&(64 * i, 64 * i + 16)));
            assert!(new_nodes(&removed) <= 2 * height, "remove copied too much");
            assert!(checked_texts(&removed).1 <= height);
            // The wrong id or a missing key removes nothing.
            assert!(remove(&tree, 64 * i, i + 2).is_none());
            assert!(remove(&tree, 64 * i + 8, i + 1).is_none());
        }
        // The old tree is untouched.
        assert_eq!(node_set(&tree), old_nodes);
        assert_eq!(checked_texts(&tree).0, texts_of(N));

        fn texts_of(n: usize) -> Vec<(usize, usize)> {
            (0..n).map(|i| (64 * i, 64 * i + 16)).collect()
        }
    }

    /// Many modules come and go (so the tree is rebuilt along many paths) while other
    /// threads look up modules that stay: through the registry and through views held
    /// across many lookups, every stable PC is found in its module.
    #[test]
    fn lookups_stay_exact_while_the_tree_changes() {
        let registry = CodeRegistry::new();
        let stable: Vec<(usize, ModuleRegistration<'_>)> = (0..64)
            .map(|i| {
                let start = 0x100_0000 + i * 0x200;
                let text = module(start, 0x100, &[func(0, 0x100, i as u32)]);
                (start, registry.register(text).unwrap())
            })
            .collect();
        let rounds = if cfg!(miri) { 2 } else { 10 };
        let writing = AtomicUsize::new(2);
        std::thread::scope(|scope| {
            for t in 0..2usize {
                let (registry, writing) = (&registry, &writing);
                scope.spawn(move || {
                    let mut next = crate::test_rng::xorshift(0x1234 + t as u64);
                    for _ in 0..rounds {
                        // Into the gaps between the stable modules.
                        let mut churn: Vec<_> = (0..32)
                            .map(|i| {
                                let start = 0x100_0000 + (2 * i + t) * 0x200 + 0x100;
                                let text = module(start, 0x80, &[func(0, 0x80, 1000)]);
                                registry.register(text).unwrap()
                            })
                            .collect();
                        while !churn.is_empty() {
                            drop(churn.swap_remove(next(churn.len() as u64) as usize));
                        }
                    }
                    writing.fetch_sub(1, SeqCst);
                });
            }
            for _ in 0..2 {
                let (registry, stable, writing) = (&registry, &stable, &writing);
                scope.spawn(move || {
                    // Until both writers are done (and a few rounds at least).
                    let mut round = 0;
                    while round < 20 || writing.load(SeqCst) != 0 {
                        round += 1;
                        registry.with_view(|view| {
                            for (i, (start, registration)) in stable.iter().enumerate() {
                                let pc = start + (i * 7 + round) % 0x100;
                                let (found, _) = view.lookup_with_data(pc).unwrap();
                                assert_eq!(found.module, registration.id());
                                assert_eq!(found.func_index, i as u32);
                                let churned = view.lookup_pc(start + 0x140);
                                assert!(churned.is_none_or(|l| l.func_index == 1000));
                            }
                        });
                        let (start, registration) = &stable[round % stable.len()];
                        let found = registry.lookup(start + 0xff).unwrap();
                        assert_eq!(found.module, registration.id());
                        // Outside any read: a writer waits only for readers inside one,
                        // and on an oversubscribed machine a reader preempted inside
                        // would hold it up for a whole time slice.
                        std::thread::yield_now();
                    }
                });
            }
        });
        assert_eq!(registry.module_count(), stable.len());
    }

    #[test]
    fn registry_is_send_and_sync_and_static() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CodeRegistry>();
        static REGISTRY: CodeRegistry = CodeRegistry::new();
        let _m = REGISTRY
            .register(module(0x7000, 4, &[func(0, 4, 1)]))
            .unwrap();
        assert_eq!(REGISTRY.lookup(0x7003).map(|l| l.func_index), Some(1));
    }

    /// Lookups of a module that stays registered always succeed while other threads
    /// register and unregister neighbours; churned modules are found or absent, never
    /// misattributed.
    #[test]
    fn lookups_run_while_other_threads_register() {
        let registry = CodeRegistry::new();
        let stable = registry
            .register(module(0x10_0000, 0x100, &[func(0, 0x100, 42)]))
            .unwrap();
        let stable_id = stable.id();
        let rounds = if cfg!(miri) { 5 } else { 300 };
        std::thread::scope(|scope| {
            for t in 0..2usize {
                let registry = &registry;
                scope.spawn(move || {
                    for round in 0..rounds {
                        let base = 0x20_0000 + t * 0x1000;
                        let m = registry
                            .register(module(base, 0x10, &[func(0, 0x10, round as u32)]))
                            .unwrap();
                        let found = registry.lookup(base + 1).unwrap();
                        assert_eq!((found.module, found.func_index), (m.id(), round as u32));
                    }
                });
            }
            for _ in 0..2 {
                let registry = &registry;
                scope.spawn(move || {
                    for _ in 0..rounds * 2 {
                        let found = registry.lookup(0x10_0010).unwrap();
                        assert_eq!((found.module, found.func_index), (stable_id, 42));
                        for t in 0..2usize {
                            if let Some(found) = registry.lookup(0x20_0001 + t * 0x1000) {
                                assert_ne!(found.module, stable_id);
                                assert_eq!(found.text_offset, 1);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(registry.module_count(), 1);
    }
}
