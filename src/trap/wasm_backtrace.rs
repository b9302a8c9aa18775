//! `WasmBacktrace`: a symbolized backtrace that costs no allocation and no reference
//! count per frame.
//!
//! A frame is four words of plain data; its names are borrowed from its module's
//! [`FrameSymbols`], which the backtrace holds once per module (one `Arc` each, taken
//! when the module first appears). [`FrameInfo`] is the owned, self-contained form of
//! one frame; [`WasmBacktrace::to_frame_infos`] makes those on demand.
//!
//! Invariant: every frame's `module` indexes `modules`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use super::{FrameInfo, SourceLocation};

/// What a module tells a backtrace about its frames: its name and its functions' names.
/// Implemented by the runtime's module (framewalk's `Module`); a drop-in runtime
/// implements it for its own.
pub trait FrameSymbols: Send + Sync + 'static {
    /// The module's name (from the name section), if any.
    fn module_name(&self) -> Option<&str>;
    /// The name of function `func_index` (imports included in the index space), if any.
    fn func_name(&self, func_index: u32) -> Option<&str>;
    /// The same names as `Arc<str>`s, for [`FrameInfo`]; by default copies of the above.
    fn shared_names(&self, func_index: u32) -> (Option<Arc<str>>, Option<Arc<str>>) {
        (
            self.func_name(func_index).map(Arc::from),
            self.module_name().map(Arc::from),
        )
    }
    /// The source locations of the instruction at `wasm_offset` (its offset in the
    /// module's binary), innermost inlined function first, from the module's debug
    /// information; empty (the default) when there is none.
    fn source_locations(&self, wasm_offset: u32) -> Vec<SourceLocation> {
        let _ = wasm_offset;
        Vec::new()
    }
    /// The module itself, for downcasting to the runtime's type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The symbols of a frame whose module is unknown.
struct NoSymbols;

impl FrameSymbols for NoSymbols {
    fn module_name(&self) -> Option<&str> {
        None
    }
    fn func_name(&self, _: u32) -> Option<&str> {
        None
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// `u32::MAX`: no offset known.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct RawFrame {
    pc: usize,
    module: u32,
    func_index: u32,
    wasm_offset: u32,
    func_offset: u32,
}

/// Symbolized wasm frames, newest first, with their modules' symbols held once each.
#[derive(Clone, Default)]
pub struct WasmBacktrace {
    /// Distinct modules in order of first appearance, each with the key it was pushed
    /// with (the runtime uses its module's address).
    modules: Vec<(usize, Arc<dyn FrameSymbols>)>,
    frames: Vec<RawFrame>,
    /// Older frames the walk found beyond the capture limit (counted, not symbolized).
    omitted: usize,
}

impl WasmBacktrace {
    /// An empty backtrace.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backtrace with room for `frames` frames (and one module) before it
    /// allocates again.
    pub fn with_capacity(frames: usize) -> Self {
        WasmBacktrace {
            modules: Vec::with_capacity(1),
            frames: Vec::with_capacity(frames),
            omitted: 0,
        }
    }

    /// How many older wasm frames the walk found beyond [`frames`](Self::frames): the
    /// capture limit (`Config::wasm_backtrace_max_frames` in framewalk's runtime)
    /// stopped symbolizing there. 0 for a capture without a limit.
    pub fn omitted_frames(&self) -> usize {
        self.omitted
    }

    /// Records that the walk found `n` older frames beyond the ones pushed.
    pub fn set_omitted_frames(&mut self, n: usize) {
        self.omitted = n;
    }

    /// Gives back unused capacity when more than half of it is unused.
    pub fn shrink_if_sparse(&mut self) {
        if self.frames.capacity() / 2 > self.frames.len() {
            self.frames.shrink_to_fit();
        }
    }

    /// Appends a frame (older than every frame so far) of the module identified by
    /// `module_key` (any value unique to the module while the backtrace is built, e.g.
    /// its address). `symbols` is called only the first time a key appears.
    #[inline]
    pub fn push(
        &mut self,
        module_key: usize,
        symbols: impl FnOnce() -> Arc<dyn FrameSymbols>,
        func_index: u32,
        wasm_offset: Option<u32>,
        func_offset: Option<u32>,
        pc: usize,
    ) {
        let module = match self.modules.last() {
            Some((key, _)) if *key == module_key => self.modules.len() - 1,
            _ => match self.modules.iter().position(|(key, _)| *key == module_key) {
                Some(i) => i,
                None => {
                    self.modules.push((module_key, symbols()));
                    self.modules.len() - 1
                }
            },
        };
        self.frames.push(RawFrame {
            pc,
            // At most one module per frame, and frames fit in memory.
            module: module as u32,
            func_index,
            wasm_offset: wasm_offset.unwrap_or(NONE),
            func_offset: func_offset.unwrap_or(NONE),
        });
    }

    /// Appends a copy of the newest frame so far if its PC is `pc` (recursion repeats
    /// return addresses: same PC, same function, same offsets) and returns whether it
    /// did.
    #[inline]
    pub fn repeat_last(&mut self, pc: usize) -> bool {
        match self.frames.last() {
            Some(last) if last.pc == pc => {
                let copy = *last;
                self.frames.push(copy);
                true
            }
            _ => false,
        }
    }

    /// Appends a frame whose module is unknown (no names); keyed as module 0.
    pub fn push_unnamed(&mut self, func_index: u32, pc: usize) {
        self.push(0, || Arc::new(NoSymbols), func_index, None, None, pc);
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames, newest first.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = WasmFrame<'_>> + '_ {
        self.frames.iter().map(move |raw| WasmFrame {
            raw: *raw,
            symbols: &self.modules[raw.module as usize].1,
        })
    }

    /// Frame `i` (newest = 0).
    pub fn frame(&self, i: usize) -> Option<WasmFrame<'_>> {
        self.frames.get(i).map(|raw| WasmFrame {
            raw: *raw,
            symbols: &self.modules[raw.module as usize].1,
        })
    }

    /// The owned form of every frame (names as `Arc<str>`s).
    pub fn to_frame_infos(&self) -> Vec<FrameInfo> {
        self.frames().map(|f| f.to_frame_info()).collect()
    }
}

impl fmt::Debug for WasmBacktrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.frames()).finish()
    }
}

impl fmt::Display for WasmBacktrace {
    /// As a trap prints its backtrace (see [`Backtrace`](super::Backtrace), whose `{:#}`
    /// folds and elides), then `... N more frames not captured` if the capture limit
    /// omitted frames. Nothing for an empty backtrace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() && self.omitted == 0 {
            return Ok(());
        }
        let frames = self.to_frame_infos();
        if f.alternate() {
            write!(f, "{:#}", super::Backtrace(&frames))?;
        } else {
            write!(f, "{}", super::Backtrace(&frames))?;
        }
        super::backtrace::write_omitted(f, self.omitted)
    }
}

/// One frame of a [`WasmBacktrace`], borrowing its names from the backtrace.
#[derive(Clone, Copy)]
pub struct WasmFrame<'a> {
    raw: RawFrame,
    symbols: &'a Arc<dyn FrameSymbols>,
}

impl<'a> WasmFrame<'a> {
    /// Function index in its module (imports included in the index space).
    pub fn func_index(&self) -> u32 {
        self.raw.func_index
    }

    /// The function's name, if the module names it.
    pub fn func_name(&self) -> Option<&'a str> {
        self.symbols.func_name(self.raw.func_index)
    }

    /// The module's name, if it has one.
    pub fn module_name(&self) -> Option<&'a str> {
        self.symbols.module_name()
    }

    /// Offset of the instruction in the module's wasm binary, if known.
    pub fn wasm_offset(&self) -> Option<u32> {
        (self.raw.wasm_offset != NONE).then_some(self.raw.wasm_offset)
    }

    /// Offset of the instruction from the start of its function's body in the wasm
    /// binary, if known.
    pub fn func_offset(&self) -> Option<u32> {
        (self.raw.func_offset != NONE).then_some(self.raw.func_offset)
    }

    /// The native PC (the trapping instruction, or a return address).
    pub fn pc(&self) -> usize {
        self.raw.pc
    }

    /// The frame's module (for framewalk's runtime: `Module::from_frame_symbols`).
    pub fn symbols(&self) -> &'a Arc<dyn FrameSymbols> {
        self.symbols
    }

    /// The source locations of this frame's instruction (see
    /// [`FrameSymbols::source_locations`]); empty without debug information.
    pub fn source_locations(&self) -> Vec<SourceLocation> {
        match self.wasm_offset() {
            Some(offset) => self.symbols.source_locations(offset),
            None => Vec::new(),
        }
    }

    /// The owned form of this frame, with its source locations.
    pub fn to_frame_info(&self) -> FrameInfo {
        let (func_name, module_name) = self.symbols.shared_names(self.raw.func_index);
        FrameInfo {
            func_index: self.raw.func_index,
            func_name,
            module_name,
            wasm_offset: self.wasm_offset(),
            func_offset: self.func_offset(),
            pc: self.raw.pc,
            source: self.source_locations(),
        }
    }
}

impl fmt::Debug for WasmFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmFrame")
            .field("func_index", &self.func_index())
            .field("func_name", &self.func_name())
            .field("module_name", &self.module_name())
            .field("wasm_offset", &self.wasm_offset())
            .field("func_offset", &self.func_offset())
            .field("pc", &format_args!("{:#x}", self.pc()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(&'static str, Vec<&'static str>);

    impl FrameSymbols for Names {
        fn module_name(&self) -> Option<&str> {
            Some(self.0)
        }
        fn func_name(&self, i: u32) -> Option<&str> {
            self.1.get(i as usize).copied()
        }
        fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    #[test]
    fn frames_borrow_names_from_one_copy_per_module() {
        let a: Arc<dyn FrameSymbols> = Arc::new(Names("a", vec!["f", "g"]));
        let b: Arc<dyn FrameSymbols> = Arc::new(Names("b", vec!["h"]));
        let mut bt = WasmBacktrace::new();
        let mut made = 0;
        for (key, module, func) in [(1, &a, 0), (1, &a, 1), (2, &b, 0), (1, &a, 1)] {
            bt.push(
                key,
                || {
                    made += 1;
                    module.clone()
                },
                func,
                Some(10 + func),
                None,
                0x1000,
            );
        }
        assert_eq!(made, 2, "one Arc per module");
        assert_eq!(Arc::strong_count(&a), 2);
        let names: Vec<_> = bt
            .frames()
            .map(|f| {
                (
                    f.module_name().unwrap(),
                    f.func_name().unwrap(),
                    f.wasm_offset(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("a", "f", Some(10)),
                ("a", "g", Some(11)),
                ("b", "h", Some(10)),
                ("a", "g", Some(11))
            ]
        );
        let infos = bt.to_frame_infos();
        assert_eq!(infos[2].module_name.as_deref(), Some("b"));
        assert_eq!(infos[3].func_offset, None);
        assert_eq!(bt.frame(1).unwrap().func_name(), Some("g"));
        assert!(bt.frame(4).is_none());
    }
}
