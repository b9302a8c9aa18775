//! The runtime: the VM (one store over several language modules), lazy compilation
//! and registration, host functions, walks and collections.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use cranelift_codegen::entity::packed_option::ReservedValue;
use cranelift_codegen::ir;
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Module};

use framewalk::gc::{self, ExternRef, GcStats, RootSource, StackRoots, VMExternRefSet};
use framewalk::stackmap::{Safepoint, StackMapBuilder, StackMapTable};
use framewalk::trap::{self, ResumePoint, TrapCode};
use framewalk::unwind::{
    new_owner_id, visit_frames, Activation, ActivationList, CodeRegistry, Frame, FunctionRange,
    LiveStackReader, ModuleRegistration, ModuleText, StackReader, StartRegs, WalkError,
};

use super::codegen::*;
use super::lang::*;
use super::traps::*;
use super::Faults;

/// The code registry of every VM in the process: which PCs are language code. The
/// trap handler's lookup reads it (no lock, no allocation) in signal context.
pub(crate) static REGISTRY: CodeRegistry = CodeRegistry::new();

/// A value crossing the host boundary.
#[derive(Debug)]
pub enum Value {
    Int(i64),
    /// A counted handle: the host owns it.
    Ref(ExternRef),
    /// Only with [`Faults::return_without_count`]: a reference's raw address the host
    /// holds without a count (the bug that fault shows). Never dereferenced.
    Uncounted(usize),
}

/// A host value a reference points to; records its drop.
pub(crate) struct Payload {
    pub(crate) value: i64,
    pub(crate) drops: Rc<RefCell<Vec<i64>>>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.drops.borrow_mut().push(self.value);
    }
}

/// The roots one collection found in one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRoots {
    /// `module.function`.
    pub function: String,
    /// The frame's activation, newest = 0.
    pub activation: usize,
    /// The values of the references in the frame's live slots, sorted.
    pub roots: Vec<i64>,
}

/// One collection: every frame (newest first) with its roots, and what it freed, or
/// the walk error that made it free nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub frames: Vec<FrameRoots>,
    pub freed: Vec<i64>,
    pub error: Option<WalkError>,
}

/// One frame of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacktraceFrame {
    /// `module.function`.
    pub function: String,
    /// The source line of the call in progress (or of the trapping instruction).
    pub line: Option<u32>,
    pub activation: usize,
}

impl fmt::Display for BacktraceFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.function)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, " (activation {})", self.activation)
    }
}

/// What the VM recorded while it ran.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Functions in the order they were compiled, as `module.function`.
    pub compiled: Vec<String>,
    /// Every collection, in order.
    pub collections: Vec<Collection>,
    /// Every `(backtrace)`: its frames, or the walk error.
    pub backtraces: Vec<Result<Vec<BacktraceFrame>, WalkError>>,
    /// Host-side observations (e.g. a payload freed while a host function held it).
    pub events: Vec<String>,
}

/// One compiled function: its registration and what the runtime knows about its
/// code.
pub(crate) struct CompiledFunction {
    /// Unregisters the code when dropped: declared first, so dropped before `info`,
    /// which the registration's data word points to.
    pub(crate) registration: ModuleRegistration<'static>,
    pub(crate) info: Box<FunctionInfo>,
}

/// What the collector, backtraces and the trap handler need about one function. Its
/// address is the registration's data word, which the trap handler reads in signal
/// context (through `REGISTRY.lookup_with_data`): immutable once registered.
pub(crate) struct FunctionInfo {
    pub(crate) vm: *const Vm,
    /// Its stack maps, decoded once when it was compiled (the table owns them): return
    /// offsets relative to the function's first byte, the registered `text_start`.
    pub(crate) stack_maps: StackMapTable,
    /// `(offset, code)` of each trap site, sorted, read by the trap handler.
    pub(crate) traps: Vec<(u32, TrapCode)>,
    /// `(start, end, line)` code ranges and their source lines.
    pub(crate) lines: Vec<(u32, u32, u32)>,
}

impl FunctionInfo {
    pub(crate) fn line_at(&self, offset: u32) -> Option<u32> {
        self.lines
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&offset))
            .map(|(_, _, line)| *line)
    }
}

/// What a registration id names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Code {
    Function(usize, usize),
    Trampolines,
}

/// A language module at run time: its vmctx, function table and compiled functions.
pub(crate) struct ModuleState {
    pub(crate) vmctx: Box<VmCtx>,
    pub(crate) table: Box<[Cell<usize>]>,
    pub(crate) compiled: RefCell<Vec<Option<CompiledFunction>>>,
}

/// A VM: one store (activation list, root set) over several language modules.
pub struct Vm {
    pub(crate) faults: Faults,
    /// The owner id of its activations and references (see [`Vm::owner`]).
    pub(crate) owner: usize,
    pub(crate) program: Vec<LangModule>,
    /// Dropped (unregistering every function) before `jit` frees the code.
    pub(crate) modules: Vec<ModuleState>,
    pub(crate) _vmctxs: Box<[*const VmCtx]>,
    pub(crate) head: Box<Cell<*const Activation>>,
    pub(crate) trampoline_registration: Option<ModuleRegistration<'static>>,
    pub(crate) exit: usize,
    pub(crate) exit_len: usize,
    pub(crate) entries: [usize; MAX_HOST_ARGS + 1],
    pub(crate) by_registration: RefCell<HashMap<usize, Code>>,
    pub(crate) set: RefCell<VMExternRefSet>,
    /// The language's one global: a raw reference holding a count, or 0.
    pub(crate) global: Cell<usize>,
    pub(crate) drops: Rc<RefCell<Vec<i64>>>,
    pub(crate) stats: Cell<GcStats>,
    pub(crate) log: RefCell<Log>,
    /// Where `on_trap` resumes: the innermost `call_resumable` of `call_function`
    /// (nested calls share the point; each restores it when it returns).
    pub(crate) resume_point: ResumePoint,
    /// The trap `on_trap` recorded, until `call_function` returns it.
    pub(crate) trap: RefCell<Option<TrapReport>>,
    pub(crate) propagating: Box<Cell<i64>>,
    pub(crate) jit: RefCell<Option<JITModule>>,
}

impl Vm {
    /// Parses `source`, compiles the trampolines, and leaves every language function
    /// uncompiled.
    pub fn new(source: &str, faults: Faults) -> Result<Box<Vm>, String> {
        let program = parse_program(source)?;
        // Rule 1: every frame keeps the frame-pointer chain.
        let flags = [("preserve_frame_pointers", "true"), ("opt_level", "speed")];
        let mut builder =
            JITBuilder::with_flags(&flags, default_libcall_names()).map_err(|e| e.to_string())?;
        builder.symbol("framewalk_jit_host_dispatch", host_dispatch as *const u8);
        let mut jit = JITModule::new(builder);

        // The trampolines, compiled eagerly; not registered (rule 3) unless a fault
        // says so.
        let mut ids: Vec<FuncId> = Vec::new();
        let mut ctx = jit.make_context();
        let exit_sig = exit_signature(&jit);
        let exit_id = jit
            .declare_anonymous_function(&exit_sig)
            .map_err(|e| e.to_string())?;
        ctx.func.signature = exit_sig;
        lower_exit(&mut jit, &mut ctx.func, faults)?;
        jit.define_function(exit_id, &mut ctx)
            .map_err(|e| e.to_string())?;
        let mut sizes = vec![ctx.compiled_code().map_or(0, |c| c.code_info().total_size)];
        ids.push(exit_id);
        for arity in 0..=MAX_HOST_ARGS {
            jit.clear_context(&mut ctx);
            ctx.func.signature = signature(&jit, arity + 2);
            let id = jit
                .declare_anonymous_function(&ctx.func.signature)
                .map_err(|e| e.to_string())?;
            lower_entry(&jit, &mut ctx.func, arity, faults)?;
            jit.define_function(id, &mut ctx)
                .map_err(|e| e.to_string())?;
            sizes.push(ctx.compiled_code().map_or(0, |c| c.code_info().total_size));
            ids.push(id);
        }
        jit.finalize_definitions().map_err(|e| e.to_string())?;
        let addresses: Vec<usize> = ids
            .iter()
            .map(|id| jit.get_finalized_function(*id) as usize)
            .collect();
        let mut entries = [0; MAX_HOST_ARGS + 1];
        entries.copy_from_slice(&addresses[1..]);

        let by_registration = RefCell::new(HashMap::new());
        let trampoline_registration = if faults.register_trampolines {
            let registration = register_trampolines(&addresses, &sizes)?;
            by_registration
                .borrow_mut()
                .insert(registration.id(), Code::Trampolines);
            Some(registration)
        } else {
            None
        };

        trap_registration()?;
        let head = Box::new(Cell::new(std::ptr::null()));
        let propagating = Box::new(Cell::new(0));
        let mut modules: Vec<ModuleState> = program
            .iter()
            .enumerate()
            .map(|(i, m)| ModuleState {
                vmctx: Box::new(VmCtx {
                    head: &*head,
                    table: std::ptr::null(),
                    modules: std::ptr::null(),
                    module: i,
                    vm: std::ptr::null(),
                    propagating: &*propagating,
                }),
                table: (0..m.functions.len()).map(|_| Cell::new(0)).collect(),
                compiled: RefCell::new((0..m.functions.len()).map(|_| None).collect()),
            })
            .collect();
        let vmctxs: Box<[*const VmCtx]> = modules.iter().map(|m| &*m.vmctx as *const _).collect();
        for m in &mut modules {
            m.vmctx.table = m.table.as_ptr();
            m.vmctx.modules = vmctxs.as_ptr();
        }
        let mut vm = Box::new(Vm {
            faults,
            // Set to the VM's address below.
            owner: 0,
            program,
            modules,
            _vmctxs: vmctxs,
            head,
            trampoline_registration,
            exit: addresses[0],
            exit_len: sizes[0] as usize,
            entries,
            by_registration,
            set: RefCell::new(VMExternRefSet::default()),
            global: Cell::new(0),
            drops: Rc::default(),
            stats: Cell::new(GcStats::default()),
            log: RefCell::default(),
            resume_point: ResumePoint::new(),
            trap: RefCell::new(None),
            propagating,
            jit: RefCell::new(Some(jit)),
        });
        let vm_ptr: *const Vm = &*vm;
        // The owner id of its activations and references, unique in the process: no
        // other VM, and no store of another runtime (framewalk's `Store` takes its ids
        // from the same counter), has it.
        vm.owner = new_owner_id();
        for m in &mut vm.modules {
            m.vmctx.vm = vm_ptr;
        }
        Ok(vm)
    }

    pub(crate) fn name(&self, module: usize, func: usize) -> String {
        let m = &self.program[module];
        format!("{}.{}", m.name, m.functions[func].name)
    }

    pub(crate) fn find(&self, module: &str, func: &str) -> Result<(usize, usize), String> {
        let mi = self
            .program
            .iter()
            .position(|m| m.name == module)
            .ok_or(format!("no module {module}"))?;
        let fi = self.program[mi]
            .functions
            .iter()
            .position(|f| f.name == func)
            .ok_or(format!("no function {module}.{func}"))?;
        Ok((mi, fi))
    }

    /// Compiles function `func` of `module` (if it is not yet), registers it, and
    /// fills its table entry; returns its address. Called by the host through the
    /// exit path (`resolve`), so every JIT frame is stopped at a recorded exit and a
    /// walk or a collection meanwhile is sound.
    pub(crate) fn compile(&self, module: usize, func: usize) -> Result<usize, String> {
        let state = &self.modules[module];
        if state.table[func].get() != 0 {
            return Ok(state.table[func].get());
        }
        let mut jit_slot = self.jit.borrow_mut();
        let jit = jit_slot.as_mut().ok_or("the VM is shut down")?;
        let f = &self.program[module].functions[func];
        let sig = signature(jit, f.params.len());
        let id = jit
            .declare_anonymous_function(&sig)
            .map_err(|e| e.to_string())?;
        let mut ctx: Context = jit.make_context();
        ctx.func.signature = sig;
        Lower {
            jit,
            module,
            exit: self.exit,
            // Set to the first parameter by `Lower::function`.
            vmctx: ir::Value::reserved_value(),
            declare_refs: !self.faults.undeclared_refs,
        }
        .function(&mut ctx.func, f)?;
        jit.define_function(id, &mut ctx)
            .map_err(|e| format!("{}: {e:?}", self.name(module, func)))?;
        let compiled = ctx.compiled_code().ok_or("no code")?;
        let size = compiled.code_info().total_size;
        // Cranelift 0.112 gives (return offset from the function start, span, map)
        // per call with live references: a framewalk `Safepoint` as it is, since the
        // function is registered as its own text starting at its first byte.
        let mut builder = StackMapBuilder::new();
        for (offset, span, map) in compiled.buffer.user_stack_maps() {
            builder
                .add_safepoint(&Safepoint {
                    return_offset: *offset,
                    span: *span,
                    slots: map.entries().map(|(_, slot)| slot).collect(),
                })
                .map_err(|e| e.to_string())?;
        }
        let stack_maps = StackMapTable::parse(&builder.finish()).map_err(|e| e.to_string())?;
        let mut traps: Vec<(u32, TrapCode)> = compiled
            .buffer
            .traps()
            .iter()
            .filter_map(|t| Some((t.offset, trap_code(t.code)?)))
            .collect();
        traps.sort_by_key(|t| t.0);
        let lines = compiled
            .buffer
            .get_srclocs_sorted()
            .iter()
            .filter(|s| !s.loc.is_default())
            .map(|s| (s.start, s.end, s.loc.bits()))
            .collect();
        jit.finalize_definitions().map_err(|e| e.to_string())?;
        let address = jit.get_finalized_function(id) as usize;
        drop(jit_slot);

        let info = Box::new(FunctionInfo {
            vm: self,
            stack_maps,
            traps,
            lines,
        });
        let registration = REGISTRY
            .register(ModuleText {
                text_start: address,
                text_len: size as usize,
                functions: vec![FunctionRange {
                    start: 0,
                    len: size,
                    func_index: func as u32,
                }],
                data: &*info as *const FunctionInfo as usize,
            })
            .map_err(|e| e.to_string())?;
        let entry = CompiledFunction { registration, info };
        self.by_registration
            .borrow_mut()
            .insert(entry.registration.id(), Code::Function(module, func));
        state.compiled.borrow_mut()[func] = Some(entry);
        state.table[func].set(address);
        self.log.borrow_mut().compiled.push(self.name(module, func));
        Ok(address)
    }

    /// Calls `module.func` from the host with `args`, in a new activation.
    pub fn call(&self, module: &str, func: &str, args: &[Value]) -> Result<Value, CallError> {
        let (mi, fi) = self.find(module, func)?;
        let f = &self.program[mi].functions[fi];
        if args.len() != f.params.len() || args.len() > MAX_HOST_ARGS {
            return Err(format!("{module}.{func} takes {} arguments", f.params.len()).into());
        }
        let mut raw = [0i64; MAX_HOST_ARGS];
        for (i, (a, ty)) in args.iter().zip(&f.params).enumerate() {
            raw[i] = match (a, ty) {
                (Value::Int(n), Ty::Int) => *n,
                (Value::Ref(r), Ty::Ref) => self.enter(r.as_raw()) as i64,
                _ => {
                    return Err(
                        format!("argument {i} of {module}.{func} has the wrong type").into(),
                    )
                }
            };
        }
        let result = self.call_function(mi, fi, &raw[..args.len()])?;
        Ok(match f.result {
            Ty::Int => Value::Int(result),
            Ty::Ref if self.faults.return_without_count => Value::Uncounted(result as usize),
            // The reference leaves JIT frames for the host, which outlives them: take a
            // count before anything can collect.
            // SAFETY: the root set keeps what JIT code returned alive until the next
            // collection, and none ran since the callee returned.
            Ty::Ref => match unsafe { ExternRef::clone_from_raw(result as usize) } {
                Some(r) => Value::Ref(r),
                None => Value::Int(0),
            },
        })
    }

    /// A reference given to JIT frames joins the root set (rule 6).
    pub(crate) fn enter(&self, raw: usize) -> usize {
        // SAFETY: `raw` is 0 or a live header of this VM's references (the host holds
        // a count, or a frame or the set holds it while this host function runs).
        unsafe { self.set.borrow_mut().insert(raw) };
        raw
    }

    /// Calls a function with raw arguments through the entry trampoline of its arity,
    /// under `call_resumable`: a trap in the code it runs comes back here.
    pub(crate) fn call_function(
        &self,
        module: usize,
        func: usize,
        args: &[i64],
    ) -> Result<i64, CallError> {
        let target = self.compile(module, func)?;
        let mut activation = Activation::new(0, self.owner);
        let mut call = EntryCall {
            entry: self.entries[args.len()],
            vmctx: &*self.modules[module].vmctx,
            activation: &raw mut activation,
            target,
            args: [0; MAX_HOST_ARGS],
            arity: args.len(),
            result: 0,
        };
        call.args[..args.len()].copy_from_slice(args);
        let head = self.head.get();
        let point = (&raw const self.resume_point).cast_mut();
        // SAFETY: the point lives in the boxed VM for the whole call; `enter` is safe to
        // call with this `EntryCall` (see there); `on_trap` resumes across only `enter`,
        // the entry trampoline, JIT frames and its own frame, which own nothing, and
        // `enter` cannot unwind (JIT code does not, host functions abort on panic).
        let trapped = unsafe { trap::call_resumable(point, enter, (&raw mut call).cast()) };
        if trapped {
            // The trampoline never got to unlink the activation: pop it here (rule 2).
            self.head.set(head);
            self.propagating.set(0);
            let report = self.trap.borrow_mut().take();
            return Err(CallError::Trap(report.ok_or("a trap without a report")?));
        }
        Ok(call.result)
    }

    /// This VM's activations.
    pub(crate) fn activations(&self) -> ActivationList<'_> {
        // SAFETY: the list is built by the entry trampolines on this thread's stack and
        // not modified while the view is used (no JIT code runs meanwhile: this is
        // called from host functions and from the host).
        unsafe { ActivationList::from_head(self.head.get()) }.only_owner(self.owner)
    }

    /// A reader of the stack words a walk of `list` reads: from the recorded exits,
    /// or from `start` (a trap's registers) for the newest activation.
    pub(crate) fn reader(list: &ActivationList<'_>, start: Option<StartRegs>) -> LiveStackReader {
        let (lo, hi) = list.stack_range(start).unwrap_or((0, 0));
        // SAFETY: called on the thread that runs the JIT code, below every frame of the
        // range: from a host function (the exits are above this frame), from `on_trap`
        // (running on the faulting stack below the trapping frame, whose SP and FP are
        // `start`), or from the host with no JIT frames (an empty range). `[lo, hi)`, from
        // the lowest start to the highest `entry_fp`, is then that thread's live stack.
        unsafe { LiveStackReader::new(lo, hi) }
    }

    /// The exit trampoline's code, `[start, end)`.
    pub fn exit_trampoline(&self) -> std::ops::Range<usize> {
        self.exit..self.exit + self.exit_len
    }

    pub(crate) fn code_of(&self, frame: &Frame) -> Option<Code> {
        self.by_registration
            .borrow()
            .get(&frame.location.module)
            .copied()
    }

    pub(crate) fn frame_name(&self, frame: &Frame) -> String {
        match self.code_of(frame) {
            Some(Code::Function(m, f)) => self.name(m, f),
            Some(Code::Trampolines) => "<trampolines>".into(),
            None => "?".into(),
        }
    }

    /// The frame's source line: of the call in progress (the instruction before the
    /// return address), or of the instruction at `pc` itself for a trapping frame.
    pub(crate) fn frame_line(&self, frame: &Frame, trapping: bool) -> Option<u32> {
        let Some(Code::Function(m, f)) = self.code_of(frame) else {
            return None;
        };
        let compiled = self.modules[m].compiled.borrow();
        let offset = frame.location.text_offset - u32::from(!trapping);
        compiled[f].as_ref()?.info.line_at(offset)
    }

    /// Walks this VM's frames (from the recorded exits, or from `start` for the
    /// newest activation).
    pub(crate) fn walk(&self, start: Option<StartRegs>) -> Result<Vec<BacktraceFrame>, WalkError> {
        let list = self.activations();
        let reader = Self::reader(&list, start);
        let mut frames = Vec::new();
        let mut first = start.is_some();
        visit_frames(list, start, &reader, &REGISTRY, |frame| {
            frames.push(BacktraceFrame {
                function: self.frame_name(frame),
                line: self.frame_line(frame, first),
                activation: frame.activation_index,
            });
            first = false;
            ControlFlow::<()>::Continue(())
        })?;
        Ok(frames)
    }

    /// One collection over this VM's frames: records each frame's roots, then lets
    /// framewalk mark them and free the rest of the root set (rule 6).
    pub(crate) fn collect(&self) -> Collection {
        let list = self.activations();
        let compiled: Vec<_> = self.modules.iter().map(|m| m.compiled.borrow()).collect();
        let faults = self.faults;
        let by_registration = self.by_registration.borrow();
        let stack_map = |frame: &Frame| {
            let Some(Code::Function(mut m, f)) =
                by_registration.get(&frame.location.module).copied()
            else {
                return None;
            };
            if faults.maps_of_wrong_module {
                m = (m + 1) % compiled.len();
            }
            compiled[m]
                .get(f)?
                .as_ref()?
                .info
                .stack_maps
                .lookup(frame.location.text_offset)
        };
        // SAFETY: `list` is every activation of this VM on this thread, each stopped at
        // an exit the exit trampoline recorded (this runs in a host function, or from
        // the host with no JIT code running); the registry holds exactly the compiled
        // language functions, and `stack_map` gives each frame its own function's map
        // (unless a `Faults` switch breaks that on purpose); the reader spans the frames.
        let roots =
            unsafe { StackRoots::new(list, Self::reader(&list, None), &REGISTRY, stack_map) };

        // Every frame, then the values of its live slots (for the report).
        let mut frames: Vec<(usize, FrameRoots)> = Vec::new();
        let reader = Self::reader(&list, None);
        let walk = visit_frames(list, None, &reader, &REGISTRY, |frame| {
            frames.push((
                frame.fp,
                FrameRoots {
                    function: self.frame_name(frame),
                    activation: frame.activation_index,
                    roots: Vec::new(),
                },
            ));
            ControlFlow::<()>::Continue(())
        });
        let mut error = walk.err();
        if error.is_none() {
            let slots = roots.visit(|frame, slot| {
                let raw = roots.reader().read_word(slot).unwrap_or(0);
                // SAFETY: a live slot of a live frame holds 0 or a live reference (the
                // root set keeps every reference JIT frames hold alive until now).
                let Some(r) = (unsafe { ExternRef::clone_from_raw(raw) }) else {
                    return;
                };
                let value = r.data().downcast_ref::<Payload>().map_or(-1, |p| p.value);
                if let Some((_, f)) = frames.iter_mut().find(|(fp, _)| *fp == frame.fp) {
                    f.roots.push(value);
                }
            });
            error = slots.err();
        }
        let before = self.drops.borrow().len();
        let mut stats = self.stats.get();
        // SAFETY: `roots` finds every root (above); the host holds every reference it
        // keeps with a count (`consume` and returned references take one first, unless
        // a `Faults` switch breaks that on purpose); this is the VM's one set.
        if let Err(e) = unsafe { gc::collect(&mut self.set.borrow_mut(), &roots, &mut stats) } {
            error.get_or_insert(e);
        }
        self.stats.set(stats);
        let mut freed = self.drops.borrow()[before..].to_vec();
        freed.sort();
        let mut frames: Vec<FrameRoots> = frames.into_iter().map(|(_, f)| f).collect();
        frames.iter_mut().for_each(|f| f.roots.sort());
        let collection = Collection {
            frames,
            freed,
            error,
        };
        self.log.borrow_mut().collections.push(collection.clone());
        collection
    }

    /// A collection made by the host (not from a host function called by JIT code).
    pub fn collect_now(&self) -> Collection {
        self.collect()
    }

    pub(crate) fn new_ref(&self, value: i64) -> usize {
        let r = ExternRef::with_owner(
            self.owner,
            Payload {
                value,
                drops: self.drops.clone(),
            },
        );
        // The reference enters JIT frames: the set keeps it alive without a count
        // until a collection finds no frame holding it.
        self.enter(r.as_raw())
    }

    pub(crate) fn host_call(
        &self,
        vmctx: &VmCtx,
        host: Host,
        a0: i64,
        a1: i64,
    ) -> Result<i64, String> {
        match host {
            Host::Resolve => Ok(self.compile(a0 as usize, a1 as usize)? as i64),
            Host::New => Ok(self.new_ref(a0) as i64),
            Host::Value => {
                // SAFETY: JIT code passes references a live frame holds, which the root
                // set or a stack map keeps alive.
                let r =
                    unsafe { ExternRef::clone_from_raw(a0 as usize) }.ok_or("null reference")?;
                Ok(r.data()
                    .downcast_ref::<Payload>()
                    .ok_or("not a payload")?
                    .value)
            }
            Host::Consume => self.consume(a0 as usize),
            Host::Gc | Host::GcFast => Ok(if self.collect().error.is_some() {
                -1
            } else {
                0
            }),
            Host::Reenter => match self.call_function(vmctx.module, a0 as usize, &[a1]) {
                Ok(v) => Ok(v),
                // Host frames cannot be resumed across: return to the JIT code, which
                // sees the flag and traps with `PROPAGATE`, ending its own activation.
                Err(CallError::Trap(report)) => {
                    *self.trap.borrow_mut() = Some(report);
                    self.propagating.set(1);
                    Ok(0)
                }
                Err(CallError::Invalid(e)) => Err(e),
            },
            Host::Backtrace => {
                let walk = self.walk(None);
                let n = walk.as_ref().map_or(-1, |f| f.len() as i64);
                self.log.borrow_mut().backtraces.push(walk);
                Ok(n)
            }
            Host::SetGlobal => {
                // The global outlives frames: it holds a count (rule 6).
                // SAFETY: `a0` is 0 or a live reference a frame holds; the old value
                // holds the count taken when it was stored.
                unsafe {
                    if a0 != 0 {
                        gc::retain(a0 as usize);
                    }
                    let old = self.global.replace(a0 as usize);
                    if old != 0 {
                        gc::release(old);
                    }
                }
                Ok(0)
            }
            Host::Global => Ok(self.enter(self.global.get()) as i64),
        }
    }

    /// `(consume r)`: receives `r` as its caller's last use (no frame holds it any
    /// more), collects, then reads it. The host boundary takes a count for it first:
    /// that count is all that keeps it alive through the collection.
    pub(crate) fn consume(&self, raw: usize) -> Result<i64, String> {
        if self.faults.consume_without_count {
            // SAFETY: live now: the root set holds it until the collection below.
            let r = unsafe { ExternRef::clone_from_raw(raw) }.ok_or("null reference")?;
            let value = r
                .data()
                .downcast_ref::<Payload>()
                .ok_or("not a payload")?
                .value;
            // Drop the handle at once: what remains is a raw address with no count,
            // the bug. (Reading the value first only names the payload in the log.)
            drop(r);
            let freed = self.collect().freed;
            if freed.contains(&value) {
                // Stop here: reading it now would read freed memory.
                self.log.borrow_mut().events.push(format!(
                    "consume: payload {value} was freed while the host function held it"
                ));
                return Ok(-1);
            }
            return Ok(value);
        }
        // SAFETY: live now: the root set holds it until the collection below.
        let r = unsafe { ExternRef::clone_from_raw(raw) }.ok_or("null reference")?;
        self.collect();
        let value = r
            .data()
            .downcast_ref::<Payload>()
            .ok_or("not a payload")?
            .value;
        Ok(value)
    }

    /// How many registrations this VM holds (one per compiled function, plus the
    /// trampolines' under [`Faults::register_trampolines`]).
    pub fn registrations(&self) -> usize {
        self.modules
            .iter()
            .map(|m| m.compiled.borrow().iter().flatten().count())
            .sum::<usize>()
            + usize::from(self.trampoline_registration.is_some())
    }

    /// The owner id of this VM's activations and references, from
    /// `unwind::new_owner_id`: no other runtime of the process has it.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// Payload drops so far, in order.
    pub fn drops(&self) -> Vec<i64> {
        self.drops.borrow().clone()
    }

    pub fn log(&self) -> Log {
        self.log.borrow().clone()
    }

    pub fn stats(&self) -> GcStats {
        self.stats.get()
    }

    /// Tears the VM down: releases the global, empties the root set, unregisters and
    /// frees the code. Returns every payload drop, in order.
    pub fn finish(self: Box<Self>) -> Vec<i64> {
        let drops = self.drops.clone();
        drop(self);
        let drops = drops.borrow().clone();
        drops
    }
}

pub(crate) fn register_trampolines(
    addresses: &[usize],
    sizes: &[u32],
) -> Result<ModuleRegistration<'static>, String> {
    let start = *addresses.iter().min().ok_or("no trampolines")?;
    let end = addresses
        .iter()
        .zip(sizes)
        .map(|(a, s)| a + *s as usize)
        .max()
        .ok_or("no trampolines")?;
    let mut functions: Vec<FunctionRange> = addresses
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (a, s))| FunctionRange {
            start: (a - start) as u32,
            len: *s,
            func_index: i as u32,
        })
        .collect();
    functions.sort_by_key(|f| f.start);
    REGISTRY
        .register(ModuleText {
            text_start: start,
            text_len: end - start,
            functions,
            data: 0,
        })
        .map_err(|e| e.to_string())
}

impl Drop for Vm {
    fn drop(&mut self) {
        // No JIT code runs any more: release the global's count and free what the
        // set still holds.
        let global = self.global.replace(0);
        if global != 0 {
            // SAFETY: the global held one count.
            unsafe { gc::release(global) };
        }
        // SAFETY: no JIT code runs (a running call borrows the VM), and the host's own
        // references are counted handles.
        unsafe { self.set.get_mut().clear() };
        // Unregister every function before its code is freed (rule 3).
        for m in &self.modules {
            m.compiled.borrow_mut().clear();
        }
        self.trampoline_registration = None;
        if let Some(jit) = self.jit.get_mut().take() {
            // SAFETY: no function of this module runs (no activation of this VM is
            // linked) or is registered, and no table entry is called again.
            unsafe { jit.free_memory() };
        }
    }
}

/// The arguments of an entry trampoline call, and its result, for [`enter`].
pub(crate) struct EntryCall {
    pub(crate) entry: usize,
    pub(crate) vmctx: *const VmCtx,
    pub(crate) activation: *mut Activation,
    pub(crate) target: usize,
    pub(crate) args: [i64; MAX_HOST_ARGS],
    pub(crate) arity: usize,
    pub(crate) result: i64,
}

/// Calls the entry trampoline an [`EntryCall`] names (under `call_resumable`).
///
/// # Safety
/// `call` must point to a live `EntryCall` made by `Vm::call_function`.
pub(crate) unsafe extern "C" fn enter(call: *mut c_void) {
    // SAFETY: `call_function` passes its `EntryCall`, live and unaliased for the call.
    let call = unsafe { &mut *call.cast::<EntryCall>() };
    let (entry, vmctx, act, target) = (call.entry, call.vmctx, call.activation, call.target);
    let [a, b, c] = call.args;
    // SAFETY: `entry` is the entry trampoline for `arity` parameters, compiled with
    // `(vmctx, activation, callee, args...) -> i64`; `target` is a function of that
    // arity of the module `vmctx` belongs to; the activation outlives the call, and
    // the trampoline unlinks it before returning.
    call.result = unsafe {
        match call.arity {
            0 => std::mem::transmute::<usize, extern "C" fn(_, _, _) -> i64>(entry)(
                vmctx, act, target,
            ),
            1 => std::mem::transmute::<usize, extern "C" fn(_, _, _, _) -> i64>(entry)(
                vmctx, act, target, a,
            ),
            2 => std::mem::transmute::<usize, extern "C" fn(_, _, _, _, _) -> i64>(entry)(
                vmctx, act, target, a, b,
            ),
            _ => std::mem::transmute::<usize, extern "C" fn(_, _, _, _, _, _) -> i64>(entry)(
                vmctx, act, target, a, b, c,
            ),
        }
    };
}

/// The host side of every exit. A panic must not unwind through JIT frames (they
/// have no unwind info): abort.
pub(crate) extern "C" fn host_dispatch(vmctx: *const VmCtx, host: i64, a0: i64, a1: i64) -> i64 {
    // SAFETY: JIT code passes the vmctx it was called with, which its VM owns; the VM
    // outlives every call into its code.
    let vmctx = unsafe { &*vmctx };
    // SAFETY: as above.
    let vm = unsafe { &*vmctx.vm };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let host = *Host::ALL.get(host as usize).ok_or("bad host function")?;
        vm.host_call(vmctx, host, a0, a1)
    }));
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("jit: host function failed: {e}");
            std::process::abort()
        }
        Err(_) => {
            eprintln!("jit: host function panicked");
            std::process::abort()
        }
    }
}
