//! A second runtime on framewalk's drop-in layers.
//!
//! This is what a runtime author with their own compiler writes to get framewalk's
//! walker and collector: a toy language (functions of `Int` and `Ref` values, calls,
//! host calls), its own code generator on Cranelift (CLIF written by hand with
//! cranelift-frontend), its own entry and exit trampolines that push activations and
//! record exits, its own code memory and module registration. From framewalk it uses
//! only what builds with `default-features = false`: [`framewalk::unwind`] (the
//! activation record, the code registry, the walk), [`framewalk::stackmap`] (the
//! section builder fed with plain data, the reader) and [`framewalk::gc`] (`ExternRef`,
//! the root set, `StackRoots`, `collect`). `docs/EMBEDDING.md` explains the contract;
//! `tests/dropin.rs` checks what this prints.
//!
//! The demo program keeps references live across calls, crosses a host frame between
//! two activations (`reenter`), collects at the bottom, and takes a backtrace there:
//!
//! ```text
//! main(n):   a = new(n); b = new(200); s = middle(a); g = gc(); value(a) + value(b) + s + g
//! middle(x): c = new(300); _ = new(400); r = reenter(inner, 500); value(x) + value(c) + r
//! inner(n):  d = new(n); g = gc(); t = backtrace(); value(d) + g + t
//! ```
//!
//! Run it with `cargo run --release --example dropin`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{
    self, types::I64, AbiParam, ExternalName, InstBuilder, MemFlags, Signature, UserExternalName,
    UserFuncName,
};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{binemit::Reloc, Context, FinalizedRelocTarget};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use framewalk::gc::{self, ExternRef, GcStats, RootSource, StackRoots, VMExternRefSet};
use framewalk::stackmap::{Safepoint, StackMapBuilder, StackMapSection};
use framewalk::unwind::{
    visit_frames, Activation, ActivationList, CodeRegistry, FunctionRange, LiveStackReader,
    ModuleRegistration, ModuleText, StackReader, ACTIVATION_ENTRY_FP_OFFSET,
    ACTIVATION_EXIT_FP_OFFSET, ACTIVATION_EXIT_PC_OFFSET, ACTIVATION_EXIT_SP_OFFSET,
    ACTIVATION_PREV_OFFSET,
};

// ---------------------------------------------------------------------------------
// The toy language
// ---------------------------------------------------------------------------------

/// A value type: a 64-bit integer or a reference to a host value (an `externref`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int,
    Ref,
}

/// A host function the toy code can call (through the exit trampoline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// `new(n)`: a new reference to a host value holding `n`.
    New,
    /// `value(r)`: the number a reference holds.
    Value,
    /// `gc()`: a collection; returns 0.
    Gc,
    /// `reenter(f, n)`: the host calls toy function `f` with `n` (a new activation).
    Reenter,
    /// `backtrace()`: walks the stack and returns the number of frames.
    Backtrace,
}

impl Host {
    const ALL: [Host; 5] = [
        Host::New,
        Host::Value,
        Host::Gc,
        Host::Reenter,
        Host::Backtrace,
    ];

    fn params(self) -> &'static [Ty] {
        match self {
            Host::New => &[Ty::Int],
            Host::Value => &[Ty::Ref],
            Host::Gc | Host::Backtrace => &[],
            Host::Reenter => &[Ty::Int, Ty::Int],
        }
    }

    fn result(self) -> Ty {
        match self {
            Host::New => Ty::Ref,
            _ => Ty::Int,
        }
    }
}

/// An expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Int(i64),
    /// A parameter or an earlier `let`, by index (parameters first).
    Local(usize),
    Add(Box<Expr>, Box<Expr>),
    /// A call to the toy function with this index.
    Call(usize, Vec<Expr>),
    Host(Host, Vec<Expr>),
}

/// A function: parameters, `let` bindings in order, and a result expression.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: &'static str,
    pub params: Vec<Ty>,
    pub lets: Vec<(Ty, Expr)>,
    pub result: Expr,
}

/// The demo program of the module docs.
pub fn demo_program() -> Vec<Function> {
    use Expr::*;
    let host = |h, args: Vec<Expr>| Host(h, args);
    let add = |a: Expr, b: Expr| Add(Box::new(a), Box::new(b));
    let value = |i| host(self::Host::Value, vec![Local(i)]);
    vec![
        Function {
            name: "main",
            params: vec![Ty::Int],
            lets: vec![
                (Ty::Ref, host(self::Host::New, vec![Local(0)])), // 1: a
                (Ty::Ref, host(self::Host::New, vec![Int(200)])), // 2: b
                (Ty::Int, Call(1, vec![Local(1)])),               // 3: s = middle(a)
                (Ty::Int, host(self::Host::Gc, vec![])),          // 4: g
            ],
            result: add(add(value(1), value(2)), add(Local(3), Local(4))),
        },
        Function {
            name: "middle",
            params: vec![Ty::Ref],
            lets: vec![
                (Ty::Ref, host(self::Host::New, vec![Int(300)])), // 1: c
                (Ty::Ref, host(self::Host::New, vec![Int(400)])), // 2: garbage
                (
                    Ty::Int,
                    host(self::Host::Reenter, vec![Int(2), Int(500)]), // 3: r
                ),
            ],
            result: add(add(value(0), value(1)), Local(3)),
        },
        Function {
            name: "inner",
            params: vec![Ty::Int],
            lets: vec![
                (Ty::Ref, host(self::Host::New, vec![Local(0)])), // 1: d
                (Ty::Int, host(self::Host::Gc, vec![])),          // 2: g
                (Ty::Int, host(self::Host::Backtrace, vec![])),   // 3: t
            ],
            result: add(value(1), add(Local(2), Local(3))),
        },
    ]
}

/// The type of `e` in a function whose locals so far have types `locals`.
fn type_of(program: &[Function], locals: &[Ty], e: &Expr) -> Result<Ty, String> {
    let expect = |args: &[Expr], params: &[Ty], what: &str| -> Result<(), String> {
        if args.len() != params.len() {
            return Err(format!("{what} takes {} arguments", params.len()));
        }
        for (a, p) in args.iter().zip(params) {
            if type_of(program, locals, a)? != *p {
                return Err(format!("argument of {what} should be {p:?}"));
            }
        }
        Ok(())
    };
    match e {
        Expr::Int(_) => Ok(Ty::Int),
        Expr::Local(i) => locals.get(*i).copied().ok_or(format!("no local {i}")),
        Expr::Add(a, b) => {
            expect(&[(**a).clone(), (**b).clone()], &[Ty::Int, Ty::Int], "+")?;
            Ok(Ty::Int)
        }
        Expr::Call(f, args) => {
            let callee = program.get(*f).ok_or(format!("no function {f}"))?;
            expect(args, &callee.params, callee.name)?;
            result_type(program, callee)
        }
        Expr::Host(h, args) => {
            expect(args, h.params(), &format!("{h:?}"))?;
            Ok(h.result())
        }
    }
}

/// A function's result type (functions do not recurse, so this terminates).
fn result_type(program: &[Function], f: &Function) -> Result<Ty, String> {
    let mut locals = f.params.clone();
    for (ty, e) in &f.lets {
        if type_of(program, &locals, e)? != *ty {
            return Err(format!("{}: a let of type {ty:?} has another type", f.name));
        }
        locals.push(*ty);
    }
    type_of(program, &locals, &f.result)
}

// ---------------------------------------------------------------------------------
// The code generator
// ---------------------------------------------------------------------------------

/// Byte offset of the activation-list head in [`VmCtx`] (generated code reads it).
const VMCTX_HEAD_OFFSET: i32 = std::mem::offset_of!(VmCtx, head) as i32;
/// Relocation namespace of calls between functions of the toy module.
const NS_FUNCTION: u32 = 0;

/// The context every toy function gets as its first argument.
#[repr(C)]
struct VmCtx {
    /// The newest activation of this runtime (the head of its list), or null. Written
    /// by the entry trampoline; read by the exit trampoline and the collector.
    head: Cell<*const Activation>,
    /// The runtime, for host functions.
    runtime: Cell<*const ToyRuntime>,
}

/// One function's machine code.
struct CompiledFunction {
    code: Vec<u8>,
    /// `(offset, callee index)` of absolute 8-byte call targets to patch.
    relocs: Vec<(u32, u32)>,
    /// Safepoints, return offsets relative to the function's start.
    safepoints: Vec<Safepoint>,
}

fn host_isa() -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    // The one invariant the walker needs from the compiler: every frame keeps the
    // frame-pointer chain (`push rbp; mov rbp, rsp`).
    for (k, v) in [("preserve_frame_pointers", "true"), ("opt_level", "speed")] {
        flags.set(k, v).map_err(|e| e.to_string())?;
    }
    cranelift_codegen::isa::lookup(target_lexicon::Triple::host())
        .map_err(|e| e.to_string())?
        .finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())
}

/// `(vmctx, params...) -> i64`: every toy value is an i64 in CLIF.
fn signature(isa: &OwnedTargetIsa, params: usize) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    sig.params.extend((0..=params).map(|_| AbiParam::new(I64)));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// Compiles `func` and turns its relocations and user stack maps into plain data.
fn compile(isa: &OwnedTargetIsa, func: ir::Function) -> Result<CompiledFunction, String> {
    let mut ctx = Context::for_function(func);
    ctx.compile(&**isa, &mut ControlPlane::default())
        .map_err(|e| format!("{:?}", e.inner))?;
    let compiled = ctx.compiled_code().ok_or("no code")?;
    let mut relocs = Vec::new();
    for r in compiled.buffer.relocs() {
        match (&r.kind, &r.target) {
            (Reloc::Abs8, FinalizedRelocTarget::ExternalName(ExternalName::User(name)))
                if r.addend == 0 =>
            {
                let name = &ctx.func.params.user_named_funcs()[*name];
                relocs.push((r.offset, name.index));
            }
            other => return Err(format!("unexpected relocation {other:?}")),
        }
    }
    // Cranelift 0.112 reports (return offset, span, map) per call with live
    // references; the map's entries are offsets up from the SP at the call. That is
    // exactly a `Safepoint` (framewalk's `cranelift` feature has the same adapter).
    let safepoints = compiled
        .buffer
        .user_stack_maps()
        .iter()
        .map(|(offset, span, map)| Safepoint {
            return_offset: *offset,
            span: *span,
            slots: map.entries().map(|(_, slot)| slot).collect(),
        })
        .collect();
    Ok(CompiledFunction {
        code: compiled.code_buffer().to_vec(),
        relocs,
        safepoints,
    })
}

/// The CLIF of toy function `index`. Reference-typed locals are declared to need
/// stack maps, and so is every reference a call returns, so each reference live across
/// a call is spilled to a slot the stack map names.
fn lower_function(
    isa: &OwnedTargetIsa,
    program: &[Function],
    index: usize,
    exit_index: u32,
) -> Result<ir::Function, String> {
    let f = &program[index];
    let mut func = ir::Function::with_name_signature(
        UserFuncName::user(NS_FUNCTION, index as u32),
        signature(isa, f.params.len()),
    );
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let vmctx = b.block_params(block)[0];
    let mut locals = Vec::new();
    let declare = |b: &mut FunctionBuilder, locals: &mut Vec<Ty>, ty: Ty| {
        let var = Variable::from_u32(locals.len() as u32);
        b.declare_var(var, I64);
        if ty == Ty::Ref {
            b.declare_var_needs_stack_map(var);
        }
        locals.push(ty);
        var
    };
    for (i, ty) in f.params.iter().enumerate() {
        let var = declare(&mut b, &mut locals, *ty);
        let param = b.block_params(block)[i + 1];
        b.def_var(var, param);
    }
    let mut lower = Lower {
        isa,
        program,
        exit_index,
        vmctx,
    };
    for (ty, e) in &f.lets {
        let v = lower.expr(&mut b, e)?;
        let var = declare(&mut b, &mut locals, *ty);
        b.def_var(var, v);
    }
    let result = lower.expr(&mut b, &f.result)?;
    b.ins().return_(&[result]);
    b.finalize();
    Ok(func)
}

struct Lower<'a> {
    isa: &'a OwnedTargetIsa,
    program: &'a [Function],
    exit_index: u32,
    vmctx: ir::Value,
}

impl Lower<'_> {
    fn expr(&mut self, b: &mut FunctionBuilder, e: &Expr) -> Result<ir::Value, String> {
        Ok(match e {
            Expr::Int(n) => b.ins().iconst(I64, *n),
            Expr::Local(i) => b.use_var(Variable::from_u32(*i as u32)),
            Expr::Add(x, y) => {
                let (x, y) = (self.expr(b, x)?, self.expr(b, y)?);
                b.ins().iadd(x, y)
            }
            Expr::Call(f, args) => {
                let mut values = vec![self.vmctx];
                for a in args {
                    values.push(self.expr(b, a)?);
                }
                let v = self.call(b, *f as u32, args.len(), &values);
                if result_type(self.program, &self.program[*f])? == Ty::Ref {
                    b.declare_value_needs_stack_map(v);
                }
                v
            }
            Expr::Host(h, args) => {
                let id = b.ins().iconst(I64, *h as i64);
                let mut values = vec![self.vmctx, id];
                for a in args {
                    values.push(self.expr(b, a)?);
                }
                while values.len() < 4 {
                    values.push(b.ins().iconst(I64, 0));
                }
                let v = self.call(b, self.exit_index, 3, &values);
                if h.result() == Ty::Ref {
                    b.declare_value_needs_stack_map(v);
                }
                v
            }
        })
    }

    /// A call to function `callee` of the module (patched through an `Abs8` relocation).
    fn call(
        &self,
        b: &mut FunctionBuilder,
        callee: u32,
        params: usize,
        args: &[ir::Value],
    ) -> ir::Value {
        let name = b
            .func
            .declare_imported_user_function(UserExternalName::new(NS_FUNCTION, callee));
        let signature = b.import_signature(signature(self.isa, params));
        let callee = b.import_function(ir::ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: false,
        });
        let call = b.ins().call(callee, args);
        b.inst_results(call)[0]
    }
}

/// A one-block function `index` of `params` i64 parameters (after the vmctx), whose
/// body `body` builds from the parameters (the vmctx first) and then returns.
fn one_block_function(
    isa: &OwnedTargetIsa,
    index: u32,
    params: usize,
    body: impl FnOnce(&mut FunctionBuilder, &[ir::Value]),
) -> ir::Function {
    let mut func = ir::Function::with_name_signature(
        UserFuncName::user(NS_FUNCTION, index),
        signature(isa, params),
    );
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let args = b.block_params(block).to_vec();
    body(&mut b, &args);
    b.finalize();
    func
}

/// The exit trampoline, `exit(vmctx, host, a0, a1) -> i64`: records the toy frame that
/// called it as the newest activation's exit (`exit_fp` = that frame's FP, which the
/// trampoline saved at its own `[FP]`; `exit_pc` = the return address into it, at
/// `[FP + 8]`; `exit_sp` = its SP at the call, `FP + 16`), calls the host, and clears
/// `exit_sp` when the host returns.
fn lower_exit(isa: &OwnedTargetIsa, index: u32) -> ir::Function {
    one_block_function(isa, index, 3, |b, args| {
        let vmctx = args[0];
        let flags = MemFlags::trusted();
        let fp = b.ins().get_frame_pointer(I64);
        let caller_fp = b.ins().load(I64, flags, fp, 0);
        let caller_pc = b.ins().load(I64, flags, fp, 8);
        let caller_sp = b.ins().iadd_imm(fp, 16);
        let head = b.ins().load(I64, flags, vmctx, VMCTX_HEAD_OFFSET);
        b.ins()
            .store(flags, caller_fp, head, ACTIVATION_EXIT_FP_OFFSET as i32);
        b.ins()
            .store(flags, caller_pc, head, ACTIVATION_EXIT_PC_OFFSET as i32);
        b.ins()
            .store(flags, caller_sp, head, ACTIVATION_EXIT_SP_OFFSET as i32);
        let dispatch = b
            .ins()
            .iconst(I64, host_dispatch as *const () as usize as i64);
        let sig = b.import_signature(signature(isa, 3));
        let call = b.ins().call_indirect(sig, dispatch, args);
        let result = b.inst_results(call)[0];
        // Nested activations the host made are gone again: the head is ours.
        let head = b.ins().load(I64, flags, vmctx, VMCTX_HEAD_OFFSET);
        let zero = b.ins().iconst(I64, 0);
        b.ins()
            .store(flags, zero, head, ACTIVATION_EXIT_SP_OFFSET as i32);
        b.ins().return_(&[result]);
    })
}

/// The entry trampoline, `entry(vmctx, activation, callee, arg) -> i64`: fills in the
/// activation (prev = the current head, `entry_fp` = its own FP, no exit), makes it the
/// head, calls `callee(vmctx, arg)`, and restores the head. The callee's frame saves
/// this trampoline's FP at its `[FP]`, which is how a walk knows the activation ends.
fn lower_entry(isa: &OwnedTargetIsa, index: u32) -> ir::Function {
    one_block_function(isa, index, 3, |b, args| {
        let [vmctx, activation, callee, arg] = [args[0], args[1], args[2], args[3]];
        let flags = MemFlags::trusted();
        let fp = b.ins().get_frame_pointer(I64);
        let prev = b.ins().load(I64, flags, vmctx, VMCTX_HEAD_OFFSET);
        let zero = b.ins().iconst(I64, 0);
        b.ins()
            .store(flags, prev, activation, ACTIVATION_PREV_OFFSET as i32);
        b.ins()
            .store(flags, fp, activation, ACTIVATION_ENTRY_FP_OFFSET as i32);
        b.ins()
            .store(flags, zero, activation, ACTIVATION_EXIT_SP_OFFSET as i32);
        // Fully initialised (the owner was set by the host): now it may be walked.
        b.ins().store(flags, activation, vmctx, VMCTX_HEAD_OFFSET);
        let sig = b.import_signature(signature(isa, 1));
        let call = b.ins().call_indirect(sig, callee, &[vmctx, arg]);
        let result = b.inst_results(call)[0];
        b.ins().store(flags, prev, vmctx, VMCTX_HEAD_OFFSET);
        b.ins().return_(&[result]);
    })
}

// ---------------------------------------------------------------------------------
// Code memory
// ---------------------------------------------------------------------------------

/// Executable memory holding the module's code (mapped writable, then read + execute).
struct CodeMemory {
    ptr: *mut u8,
    len: usize,
}

impl CodeMemory {
    /// Maps `code`, patching `(offset, target index)` absolute relocations to
    /// `base + offsets[target]`.
    fn new(code: &[u8], relocs: &[(u32, u32)], offsets: &[u32]) -> Result<CodeMemory, String> {
        let len = code.len().next_multiple_of(4096).max(4096);
        // SAFETY: an anonymous private mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err("mmap failed".into());
        }
        let memory = CodeMemory {
            ptr: ptr.cast(),
            len,
        };
        // SAFETY: the mapping is `len >= code.len()` bytes, writable, and ours alone.
        let bytes = unsafe { std::slice::from_raw_parts_mut(memory.ptr, len) };
        bytes[..code.len()].copy_from_slice(code);
        for &(at, target) in relocs {
            let address = memory.ptr as u64 + u64::from(offsets[target as usize]);
            bytes[at as usize..at as usize + 8].copy_from_slice(&address.to_le_bytes());
        }
        // SAFETY: the same mapping; from now on it is only executed and read.
        if unsafe { libc::mprotect(ptr, len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err("mprotect failed".into());
        }
        Ok(memory)
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the module's registration (dropped first)
        // and every activation running this code are gone.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------

/// The code registry of this runtime: which PCs are toy functions. One per process,
/// like framewalk's own; the walker reads it without locks.
static REGISTRY: CodeRegistry = CodeRegistry::new();

/// The activation owner id of this runtime's activations (one runtime per thread here).
const OWNER: usize = 0x70_79;

/// A host value a toy reference points to; records its drop.
struct Payload {
    value: i64,
    drops: Rc<RefCell<Vec<i64>>>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.drops.borrow_mut().push(self.value);
    }
}

/// The roots one collection found in one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRoots {
    pub function: &'static str,
    /// The frame's activation, newest = 0.
    pub activation: usize,
    /// The values of the references in the frame's live slots, sorted.
    pub roots: Vec<i64>,
}

/// One collection: the roots per frame (newest first) and what it freed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub frames: Vec<FrameRoots>,
    /// Values of the references this collection freed, sorted.
    pub freed: Vec<i64>,
}

/// One frame of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacktraceFrame {
    pub function: &'static str,
    pub activation: usize,
    /// The frame's PC minus the start of the module's text.
    pub text_offset: u32,
}

/// What a run showed.
#[derive(Clone, Debug)]
pub struct Report {
    pub result: i64,
    /// The collections made by `gc()` calls, then the one at teardown.
    pub collections: Vec<Collection>,
    /// The last `backtrace()`.
    pub backtrace: Vec<BacktraceFrame>,
    /// Every payload drop, in order.
    pub drops: Vec<i64>,
    pub stats: GcStats,
    pub safepoints: usize,
}

/// A loaded toy module and its store: code, stack maps, root set, activations.
pub struct ToyRuntime {
    program: Vec<Function>,
    /// Kept for its `Drop`, which unregisters the code; dropped before `code`, so a
    /// module is unregistered before its code is unmapped.
    _registration: ModuleRegistration<'static>,
    code: CodeMemory,
    /// Start of each toy function, then the exit and entry trampolines.
    offsets: Vec<u32>,
    stack_maps: Vec<u8>,
    vmctx: Box<VmCtx>,
    set: RefCell<VMExternRefSet>,
    stats: Cell<GcStats>,
    drops: Rc<RefCell<Vec<i64>>>,
    collections: RefCell<Vec<Collection>>,
    backtrace: RefCell<Vec<BacktraceFrame>>,
}

impl ToyRuntime {
    /// Type-checks, compiles and loads `program`.
    pub fn new(program: Vec<Function>) -> Result<Box<ToyRuntime>, String> {
        for f in &program {
            result_type(&program, f)?;
        }
        let isa = host_isa()?;
        let n = program.len() as u32;
        let (exit_index, entry_index) = (n, n + 1);
        let mut functions = Vec::new();
        for i in 0..program.len() {
            functions.push(compile(
                &isa,
                lower_function(&isa, &program, i, exit_index)?,
            )?);
        }
        functions.push(compile(&isa, lower_exit(&isa, exit_index))?);
        functions.push(compile(&isa, lower_entry(&isa, entry_index))?);

        // Lay the text out: toy functions (16-byte aligned), then the trampolines.
        let mut text = Vec::new();
        let mut offsets = Vec::new();
        let mut relocs = Vec::new();
        let mut stack_maps = StackMapBuilder::new();
        for f in &functions {
            text.resize(text.len().next_multiple_of(16), 0xcc);
            let start = u32::try_from(text.len()).map_err(|e| e.to_string())?;
            offsets.push(start);
            text.extend_from_slice(&f.code);
            relocs.extend(f.relocs.iter().map(|&(at, target)| (start + at, target)));
            for s in &f.safepoints {
                let placed = Safepoint {
                    return_offset: start + s.return_offset,
                    ..s.clone()
                };
                stack_maps
                    .add_safepoint(&placed)
                    .map_err(|e| e.to_string())?;
            }
        }
        let code = CodeMemory::new(&text, &relocs, &offsets)?;
        let stack_maps = stack_maps.finish();
        StackMapSection::parse(&stack_maps).map_err(|e| e.to_string())?;

        // Register only the toy functions: trampoline PCs are not toy code, so a walk
        // that met one would report it instead of yielding a frame.
        let text_len = offsets[program.len()] as usize;
        let ranges = (0..program.len())
            .map(|i| FunctionRange {
                start: offsets[i],
                len: functions[i].code.len() as u32,
                func_index: i as u32,
            })
            .collect();
        let registration = REGISTRY
            .register(ModuleText {
                text_start: code.ptr as usize,
                text_len,
                functions: ranges,
                data: 0,
            })
            .map_err(|e| e.to_string())?;

        let runtime = Box::new(ToyRuntime {
            program,
            _registration: registration,
            code,
            offsets,
            stack_maps,
            vmctx: Box::new(VmCtx {
                head: Cell::new(std::ptr::null()),
                runtime: Cell::new(std::ptr::null()),
            }),
            set: RefCell::new(VMExternRefSet::default()),
            stats: Cell::new(GcStats::default()),
            drops: Rc::default(),
            collections: RefCell::default(),
            backtrace: RefCell::default(),
        });
        runtime.vmctx.runtime.set(&*runtime);
        Ok(runtime)
    }

    /// Calls toy function `f` (which takes one `Int`) with `arg`, in a new activation.
    pub fn call(&self, f: usize, arg: i64) -> Result<i64, String> {
        let callee = self.program.get(f).ok_or("no such function")?;
        if callee.params != [Ty::Int] || result_type(&self.program, callee)? != Ty::Int {
            return Err(format!("{} is not (Int) -> Int", callee.name));
        }
        let base = self.code.ptr as usize;
        let entry = base + self.offsets[self.program.len() + 1] as usize;
        let target = base + self.offsets[f] as usize;
        // The entry trampoline fills in everything but the owner, then links it.
        let mut activation = Activation::new(0, OWNER);
        type Entry = unsafe extern "C" fn(*const VmCtx, *mut Activation, usize, i64) -> i64;
        // SAFETY: `entry` is the entry trampoline compiled with this signature; the
        // activation outlives the call, and the trampoline unlinks it before returning.
        Ok(unsafe {
            let entry: Entry = std::mem::transmute(entry);
            entry(&*self.vmctx, &raw mut activation, target, arg)
        })
    }

    /// This runtime's activations (none while no toy code runs).
    fn activations(&self) -> ActivationList<'_> {
        // SAFETY: the list is built by the entry trampolines on this thread's stack and
        // not modified while this view is used (toy code cannot run meanwhile).
        unsafe { ActivationList::from_head(self.vmctx.head.get()) }.only_owner(OWNER)
    }

    /// A reader of the stack words the frames of `list` occupy.
    fn reader(list: &ActivationList<'_>) -> LiveStackReader {
        let (lo, hi) = list.recorded_exit_range().unwrap_or((0, 0));
        // SAFETY: called from a host function on the thread that runs the toy code:
        // `[lowest exit_sp - 16, highest entry_fp)` is that thread's live stack, above the
        // host function's own frame.
        unsafe { LiveStackReader::new(lo, hi) }
    }

    fn host_call(&self, host: Host, a0: i64, a1: i64) -> Result<i64, String> {
        match host {
            Host::New => {
                let r = ExternRef::with_owner(
                    OWNER,
                    Payload {
                        value: a0,
                        drops: self.drops.clone(),
                    },
                );
                let raw = r.as_raw();
                // The reference enters toy frames: it joins the root set, so it stays
                // alive without a count until a collection finds no frame holding it.
                // SAFETY: `r` is live and belongs to this runtime's (only) set.
                unsafe { self.set.borrow_mut().insert(raw) };
                drop(r);
                Ok(raw as i64)
            }
            Host::Value => {
                // SAFETY: toy code passes only references it got from `new`, which the
                // root set or a stack map keeps alive.
                let r = unsafe { ExternRef::clone_from_raw(a0 as usize) }.ok_or("null")?;
                let p = r.data().downcast_ref::<Payload>().ok_or("not a payload")?;
                Ok(p.value)
            }
            Host::Gc => {
                self.collect(self.activations())?;
                Ok(0)
            }
            Host::Reenter => self.call(a0 as usize, a1),
            Host::Backtrace => {
                let list = self.activations();
                let reader = Self::reader(&list);
                let mut frames = Vec::new();
                visit_frames(list, None, &reader, &REGISTRY, |frame| {
                    frames.push(BacktraceFrame {
                        function: self.program[frame.location.func_index as usize].name,
                        activation: frame.activation_index,
                        text_offset: frame.location.text_offset,
                    });
                    ControlFlow::<()>::Continue(())
                })
                .map_err(|e| e.to_string())?;
                let n = frames.len() as i64;
                *self.backtrace.borrow_mut() = frames;
                Ok(n)
            }
        }
    }

    /// One collection over the frames of `list`: records each frame's roots, then lets
    /// framewalk mark them and free the rest of the root set.
    fn collect(&self, list: ActivationList<'_>) -> Result<(), String> {
        let section = StackMapSection::parse(&self.stack_maps).map_err(|e| e.to_string())?;
        // SAFETY: `list` is every toy activation on this thread, all stopped at exits
        // the exit trampoline recorded (this runs in a host function, or with no toy
        // code running); the registry holds exactly the toy functions, and their one
        // section is the map of every return address in them; the reader spans the
        // frames (`reader`).
        let roots = unsafe {
            StackRoots::new(list, Self::reader(&list), &REGISTRY, |frame| {
                section.lookup(frame.location.text_offset)
            })
        };
        let mut frames: Vec<FrameRoots> = Vec::new();
        let reader = roots.reader();
        roots
            .visit(|frame, slot| {
                let function = self.program[frame.location.func_index as usize].name;
                let new_frame = frames.last().is_none_or(|f| {
                    (f.function, f.activation) != (function, frame.activation_index)
                });
                if new_frame {
                    frames.push(FrameRoots {
                        function,
                        activation: frame.activation_index,
                        roots: Vec::new(),
                    });
                }
                let raw = reader.read_word(slot).unwrap_or(0);
                // SAFETY: a live slot holds 0 or a live reference.
                if let Some(r) = unsafe { ExternRef::clone_from_raw(raw) } {
                    let value = r.data().downcast_ref::<Payload>().map_or(-1, |p| p.value);
                    frames.last_mut().unwrap().roots.push(value);
                }
            })
            .map_err(|e| e.to_string())?;
        frames.iter_mut().for_each(|f| f.roots.sort());
        let before = self.drops.borrow().len();
        let mut stats = self.stats.get();
        // SAFETY: `roots` finds every root (above); the host holds no reference without
        // a count (`Host::New` hands its reference to toy code through the set, and
        // `Host::Value`, the one host function with a reference argument, takes a count
        // at once and collects nothing); this is the runtime's one set.
        unsafe { gc::collect(&mut self.set.borrow_mut(), &roots, &mut stats) }
            .map_err(|e| e.to_string())?;
        self.stats.set(stats);
        let mut freed = self.drops.borrow()[before..].to_vec();
        freed.sort();
        self.collections
            .borrow_mut()
            .push(Collection { frames, freed });
        Ok(())
    }

    /// Ends the run: a last collection with no toy frames frees every reference that
    /// only frames held, then the report.
    pub fn finish(self: Box<Self>, result: i64) -> Result<Report, String> {
        self.collect(ActivationList::empty())?;
        let report = Report {
            result,
            collections: self.collections.borrow().clone(),
            backtrace: self.backtrace.borrow().clone(),
            drops: Vec::new(),
            stats: self.stats.get(),
            safepoints: StackMapSection::parse(&self.stack_maps)
                .map_err(|e| e.to_string())?
                .len(),
        };
        let drops = self.drops.clone();
        drop(self);
        let drops = drops.borrow().clone();
        Ok(Report { drops, ..report })
    }
}

impl Drop for ToyRuntime {
    fn drop(&mut self) {
        // SAFETY: nothing runs toy code any more (a running call borrows the runtime):
        // free what the set still holds.
        unsafe { self.set.get_mut().clear() };
    }
}

/// The host side of every exit: decodes the host function and runs it. A panic or an
/// error must not unwind through toy frames (they have no unwind info): abort.
extern "C" fn host_dispatch(vmctx: *const VmCtx, host: i64, a0: i64, a1: i64) -> i64 {
    // SAFETY: toy code passes the vmctx it was called with, which lives in its
    // runtime; the runtime outlives every call into its code.
    let runtime = unsafe { &*(*vmctx).runtime.get() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let host = *Host::ALL.get(host as usize).ok_or("bad host function")?;
        runtime.host_call(host, a0, a1)
    }));
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("dropin: host function failed: {e}");
            std::process::abort()
        }
        Err(_) => {
            eprintln!("dropin: host function panicked");
            std::process::abort()
        }
    }
}

/// Compiles and runs the demo program with `main(100)`.
pub fn run_demo() -> Result<Report, String> {
    let runtime = ToyRuntime::new(demo_program())?;
    let result = runtime.call(0, 100)?;
    runtime.finish(result)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "result: {}", self.result)?;
        writeln!(f, "stack-map safepoints: {}", self.safepoints)?;
        for (i, c) in self.collections.iter().enumerate() {
            writeln!(f, "collection {}:", i + 1)?;
            for fr in &c.frames {
                writeln!(
                    f,
                    "  activation {} {:<6} roots {:?}",
                    fr.activation, fr.function, fr.roots
                )?;
            }
            if c.frames.is_empty() {
                writeln!(f, "  no toy frames")?;
            }
            writeln!(f, "  freed {:?}", c.freed)?;
        }
        writeln!(f, "backtrace:")?;
        for (i, fr) in self.backtrace.iter().enumerate() {
            writeln!(
                f,
                "  {i}: toy!{} (activation {}, text offset {:#x})",
                fr.function, fr.activation, fr.text_offset
            )?;
        }
        writeln!(f, "dropped: {:?}", self.drops)?;
        writeln!(f, "{}", self.stats)
    }
}

#[allow(dead_code, reason = "tests/dropin.rs includes this file as a module")]
fn main() -> Result<(), String> {
    print!("{}", run_demo()?);
    Ok(())
}
