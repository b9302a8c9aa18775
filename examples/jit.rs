//! A language VM on cranelift-jit that uses framewalk's drop-in layers.
//!
//! `examples/dropin.rs` shows the contract of `docs/EMBEDDING.md` on a toy with one
//! module, hand-laid code memory and no traps. This example is the shape a language
//! implementer actually has: a small s-expression language compiled lazily, one
//! function at a time, with `cranelift-jit` + `cranelift-module` +
//! `cranelift-frontend` 0.112, two modules calling each other, host functions that
//! collect, re-enter the JIT and walk the stack, and traps caught by framewalk's
//! signal handlers. From framewalk it uses only what builds with
//! `default-features = false`: `unwind`, `stackmap`, `gc` and `trap`.
//!
//! # The language
//!
//! ```text
//! program := (module NAME (fn NAME ((x int|ref) ...) int|ref EXPR) ...) ...
//! EXPR    := INTEGER | x | (let ((x EXPR) ...) EXPR) | (if EXPR EXPR EXPR)
//!          | (+ a b) | (- a b) | (* a b) | (/ a b) | (< a b) | (= a b)
//!          | (trap N)                 ; Cranelift `trap User(N)`: ud2, SIGILL
//!          | (f args...) | (module.f args...)      ; calls, also into another module
//!          | (new n) | (value r) | (null? r) | (consume r) | (gc) | (reenter f n)
//!          | (backtrace) | (set-global r) | (global)
//! ```
//!
//! Values are `int` (i64) and `ref`: an `ExternRef`'s header address as an i64, which
//! the code generator declares to Cranelift as needing a stack map. `(/ a b)` is
//! `sdiv`, whose `idiv` faults on a zero divisor (SIGFPE).
//!
//! # Where each rule of `docs/EMBEDDING.md` is upheld
//!
//! | contract | here |
//! | --- | --- |
//! | frame pointers (1) | `Vm::new`: `preserve_frame_pointers` in the `JITBuilder` flags |
//! | entry: push, `entry_fp`, pop (2) | `lower_entry` (CLIF, one per arity), called by `Vm::call_function` |
//! | exit: record, clear (2) | `exit_record`, the one helper `lower_exit` uses for both |
//! | every path pops (2) | `Vm::call_function` unlinks after a trap; `host_dispatch` aborts on panic |
//! | registry, one function at a time, trampolines left out (3) | `Vm::compile` |
//! | walk (4) | `Vm::walk` (backtraces), `Vm::collect` |
//! | stack maps (5) | `Lower::function` declares refs; `Vm::compile` builds the section; `Vm::collect` looks frames up |
//! | references enter frames (6) | `Vm::enter`: every ref a host function or the host gives to JIT code |
//! | owners that outlive frames (6) | `set-global` (`gc::retain`/`release`); `consume` and results returned to the host take a count |
//! | collection (6) | `Vm::collect`: `StackRoots` with each frame's `StackMapTable`, `gc::collect` |
//! | traps (8) | `on_trap`, `trap_lookup`, `Vm::call_function` |
//!
//! [`Faults`] breaks one rule at a time on purpose; `tests/jit.rs` shows what each
//! break does, as a user sees it.
//!
//! Run it with `cargo run --release --example jit`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use cranelift_codegen::entity::packed_option::ReservedValue;
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types::I64, AbiParam, InstBuilder, MemFlags, Signature, SourceLoc,
};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use framewalk::gc::{self, ExternRef, GcStats, RootSource, StackRoots, VMExternRefSet};
use framewalk::stackmap::{Safepoint, StackMapBuilder, StackMapSection, StackMapTable};
use framewalk::trap::{self, ResumePoint, TrapCode, TrapHandlerRegistration, TrapHooks};
use framewalk::unwind::{
    visit_frames, Activation, ActivationList, CodeRegistry, Frame, FunctionRange, LiveStackReader,
    ModuleRegistration, ModuleText, StackReader, StartRegs, WalkError, ACTIVATION_ENTRY_FP_OFFSET,
    ACTIVATION_EXIT_FP_OFFSET, ACTIVATION_EXIT_SP_OFFSET, ACTIVATION_PREV_OFFSET,
};

// =================================================================================
// The language: syntax
// =================================================================================

/// A value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int,
    Ref,
}

/// A host function (called through the exit trampoline). The discriminant is what
/// JIT code passes to `host_dispatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
enum Host {
    /// `resolve(module, index)`: compiles a function on its first call.
    Resolve = 0,
    New,
    Value,
    Consume,
    Gc,
    Reenter,
    Backtrace,
    SetGlobal,
    Global,
}

impl Host {
    const ALL: [Host; 9] = [
        Host::Resolve,
        Host::New,
        Host::Value,
        Host::Consume,
        Host::Gc,
        Host::Reenter,
        Host::Backtrace,
        Host::SetGlobal,
        Host::Global,
    ];

    fn by_name(name: &str) -> Option<(Host, &'static [Ty], Ty)> {
        Some(match name {
            "new" => (Host::New, &[Ty::Int], Ty::Ref),
            "value" => (Host::Value, &[Ty::Ref], Ty::Int),
            "consume" => (Host::Consume, &[Ty::Ref], Ty::Int),
            "gc" => (Host::Gc, &[], Ty::Int),
            "backtrace" => (Host::Backtrace, &[], Ty::Int),
            "set-global" => (Host::SetGlobal, &[Ty::Ref], Ty::Int),
            "global" => (Host::Global, &[], Ty::Ref),
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Eq,
}

/// A typed expression with the source line it starts on.
#[derive(Clone, Debug)]
struct Expr {
    line: u32,
    ty: Ty,
    kind: ExprKind,
}

#[derive(Clone, Debug)]
enum ExprKind {
    Int(i64),
    /// A parameter or a `let` binding, by slot (parameters first).
    Local(usize),
    Let(usize, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>),
    Trap(u16),
    Call {
        module: usize,
        func: usize,
        args: Vec<Expr>,
    },
    Host(Host, Vec<Expr>),
    /// `(reenter f n)`: the host calls `f` (of the caller's module) with `n`.
    Reenter(usize, Box<Expr>),
}

/// A function's signature and body (the body is parsed up front, compiled lazily).
#[derive(Clone, Debug)]
struct Function {
    name: String,
    params: Vec<Ty>,
    result: Ty,
    slots: Vec<Ty>,
    body: Expr,
}

#[derive(Clone, Debug)]
struct LangModule {
    name: String,
    functions: Vec<Function>,
}

/// An s-expression with the line of its first token.
#[derive(Clone, Debug)]
enum Sexp {
    Atom(String, u32),
    List(Vec<Sexp>, u32),
}

impl Sexp {
    fn line(&self) -> u32 {
        match self {
            Sexp::Atom(_, l) | Sexp::List(_, l) => *l,
        }
    }
    fn atom(&self) -> Result<&str, String> {
        match self {
            Sexp::Atom(a, _) => Ok(a),
            Sexp::List(_, l) => Err(format!("line {l}: expected a name")),
        }
    }
    fn list(&self) -> Result<&[Sexp], String> {
        match self {
            Sexp::List(items, _) => Ok(items),
            Sexp::Atom(a, l) => Err(format!("line {l}: expected a list, found {a}")),
        }
    }
}

fn read_sexps(source: &str) -> Result<Vec<Sexp>, String> {
    let mut stack: Vec<(Vec<Sexp>, u32)> = vec![(Vec::new(), 0)];
    for (i, text) in source.lines().enumerate() {
        let line = i as u32 + 1;
        let text = text.split(';').next().unwrap_or("");
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        for token in spaced.split_whitespace() {
            match token {
                "(" => stack.push((Vec::new(), line)),
                ")" => {
                    let (items, start) = stack
                        .pop()
                        .filter(|_| !stack.is_empty())
                        .ok_or(format!("line {line}: unbalanced `)`"))?;
                    let parent = stack.last_mut().ok_or(format!("line {line}: unbalanced"))?;
                    parent.0.push(Sexp::List(items, start));
                }
                atom => {
                    let top = stack.last_mut().ok_or(format!("line {line}: unbalanced"))?;
                    top.0.push(Sexp::Atom(atom.to_string(), line));
                }
            }
        }
    }
    match stack.pop() {
        Some((items, _)) if stack.is_empty() => Ok(items),
        _ => Err("unbalanced `(`".into()),
    }
}

fn parse_ty(s: &Sexp) -> Result<Ty, String> {
    match s.atom()? {
        "int" => Ok(Ty::Int),
        "ref" => Ok(Ty::Ref),
        other => Err(format!("line {}: unknown type {other}", s.line())),
    }
}

/// Signatures of every function: `(module, name) -> (index, params, result)`.
type Signatures = HashMap<(String, String), (usize, Vec<Ty>, Ty)>;

/// Parses and type-checks a program.
fn parse_program(source: &str) -> Result<Vec<LangModule>, String> {
    let sexps = read_sexps(source)?;
    // First pass: signatures, so that calls can go forwards and across modules.
    let mut sigs = Signatures::new();
    let mut module_names = Vec::new();
    for m in &sexps {
        let items = m.list()?;
        if items.len() < 2 || items[0].atom()? != "module" {
            return Err(format!("line {}: expected (module NAME ...)", m.line()));
        }
        let mname = items[1].atom()?.to_string();
        for (index, f) in items[2..].iter().enumerate() {
            let f = f.list()?;
            if f.len() != 5 || f[0].atom()? != "fn" {
                return Err(format!(
                    "line {}: expected (fn NAME PARAMS TYPE BODY)",
                    f[0].line()
                ));
            }
            let params = f[2]
                .list()?
                .iter()
                .map(|p| match p.list()? {
                    [_, ty] => parse_ty(ty),
                    _ => Err(format!("line {}: expected (NAME TYPE)", p.line())),
                })
                .collect::<Result<_, _>>()?;
            let key = (mname.clone(), f[1].atom()?.to_string());
            sigs.insert(key, (index, params, parse_ty(&f[3])?));
        }
        module_names.push(mname);
    }
    let mut modules = Vec::new();
    for (mi, m) in sexps.iter().enumerate() {
        let items = m.list()?;
        let mut functions = Vec::new();
        for f in &items[2..] {
            let f = f.list()?;
            let mut scope = Vec::new();
            let mut slots = Vec::new();
            for p in f[2].list()? {
                let p = p.list()?;
                scope.push((p[0].atom()?.to_string(), slots.len()));
                slots.push(parse_ty(&p[1])?);
            }
            let params = slots.clone();
            let result = parse_ty(&f[3])?;
            let mut checker = Checker {
                sigs: &sigs,
                modules: &module_names,
                module: mi,
                scope,
                slots,
            };
            let body = checker.expr(&f[4])?;
            let name = f[1].atom()?.to_string();
            if body.ty != result {
                return Err(format!("{name}: the body is not of the declared type"));
            }
            functions.push(Function {
                name,
                params,
                result,
                slots: checker.slots,
                body,
            });
        }
        modules.push(LangModule {
            name: module_names[mi].clone(),
            functions,
        });
    }
    Ok(modules)
}

struct Checker<'a> {
    sigs: &'a Signatures,
    modules: &'a [String],
    module: usize,
    scope: Vec<(String, usize)>,
    slots: Vec<Ty>,
}

impl Checker<'_> {
    fn function(&self, name: &str, line: u32) -> Result<(usize, usize, &[Ty], Ty), String> {
        let (m, f) = match name.split_once('.') {
            Some((m, f)) => (m, f),
            None => (self.modules[self.module].as_str(), name),
        };
        let mi = self.modules.iter().position(|n| n == m);
        let sig = self.sigs.get(&(m.to_string(), f.to_string()));
        match (mi, sig) {
            (Some(mi), Some((fi, params, result))) => Ok((mi, *fi, params, *result)),
            _ => Err(format!("line {line}: unknown function {name}")),
        }
    }

    fn expr(&mut self, s: &Sexp) -> Result<Expr, String> {
        let line = s.line();
        let e = |ty, kind| Ok(Expr { line, ty, kind });
        let items = match s {
            Sexp::Atom(a, _) => {
                if let Ok(n) = a.parse::<i64>() {
                    return e(Ty::Int, ExprKind::Int(n));
                }
                let (_, slot) = self
                    .scope
                    .iter()
                    .rev()
                    .find(|(n, _)| n == a)
                    .ok_or(format!("line {line}: unknown name {a}"))?;
                return e(self.slots[*slot], ExprKind::Local(*slot));
            }
            Sexp::List(items, _) => items,
        };
        let head = items
            .first()
            .ok_or(format!("line {line}: empty list"))?
            .atom()?;
        let args = &items[1..];
        let typed = |c: &mut Self, s: &Sexp, ty: Ty| -> Result<Expr, String> {
            let x = c.expr(s)?;
            if x.ty != ty {
                return Err(format!("line {}: expected {ty:?}", s.line()));
            }
            Ok(x)
        };
        let arity = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("line {line}: {head} takes {n} arguments"))
            }
        };
        let op = match head {
            "+" => Some(BinOp::Add),
            "-" => Some(BinOp::Sub),
            "*" => Some(BinOp::Mul),
            "/" => Some(BinOp::Div),
            "<" => Some(BinOp::Lt),
            "=" => Some(BinOp::Eq),
            _ => None,
        };
        if let Some(op) = op {
            arity(2)?;
            let a = typed(self, &args[0], Ty::Int)?;
            let b = typed(self, &args[1], Ty::Int)?;
            return e(Ty::Int, ExprKind::Bin(op, Box::new(a), Box::new(b)));
        }
        match head {
            "let" => {
                arity(2)?;
                let depth = self.scope.len();
                let mut bindings = Vec::new();
                for b in args[0].list()? {
                    let b = b.list()?;
                    if b.len() != 2 {
                        return Err(format!("line {line}: expected (NAME EXPR)"));
                    }
                    let value = self.expr(&b[1])?;
                    let slot = self.slots.len();
                    self.slots.push(value.ty);
                    self.scope.push((b[0].atom()?.to_string(), slot));
                    bindings.push((slot, value));
                }
                let mut body = self.expr(&args[1])?;
                self.scope.truncate(depth);
                for (slot, value) in bindings.into_iter().rev() {
                    body = Expr {
                        line: value.line,
                        ty: body.ty,
                        kind: ExprKind::Let(slot, Box::new(value), Box::new(body)),
                    };
                }
                Ok(body)
            }
            "if" => {
                arity(3)?;
                let c = typed(self, &args[0], Ty::Int)?;
                let t = self.expr(&args[1])?;
                let f = typed(self, &args[2], t.ty)?;
                e(t.ty, ExprKind::If(Box::new(c), Box::new(t), Box::new(f)))
            }
            "null?" => {
                arity(1)?;
                let r = typed(self, &args[0], Ty::Ref)?;
                e(Ty::Int, ExprKind::IsNull(Box::new(r)))
            }
            "trap" => {
                arity(1)?;
                let n = args[0]
                    .atom()?
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n != PROPAGATE)
                    .ok_or(format!("line {line}: a trap code is below {PROPAGATE}"))?;
                e(Ty::Int, ExprKind::Trap(n))
            }
            "reenter" => {
                arity(2)?;
                let (m, f, params, result) = self.function(args[0].atom()?, line)?;
                if m != self.module || params != [Ty::Int] || result != Ty::Int {
                    return Err(format!("line {line}: reenter takes an (int) -> int here"));
                }
                let n = typed(self, &args[1], Ty::Int)?;
                e(Ty::Int, ExprKind::Reenter(f, Box::new(n)))
            }
            _ => {
                let (callee, params, result) = match Host::by_name(head) {
                    Some((host, params, result)) => (Err(host), params.to_vec(), result),
                    None => {
                        let (module, func, params, result) = self.function(head, line)?;
                        (Ok((module, func)), params.to_vec(), result)
                    }
                };
                arity(params.len())?;
                let args = args
                    .iter()
                    .zip(&params)
                    .map(|(a, ty)| typed(self, a, *ty))
                    .collect::<Result<Vec<_>, _>>()?;
                let kind = match callee {
                    Ok((module, func)) => ExprKind::Call { module, func, args },
                    Err(host) => ExprKind::Host(host, args),
                };
                e(result, kind)
            }
        }
    }
}

// =================================================================================
// Rule breakers
// =================================================================================

/// Breaks one rule of `docs/EMBEDDING.md` each, on purpose; all off by default.
/// `tests/jit.rs` shows what each one does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Rule 6: `consume` collects without taking a count for its argument, which no
    /// frame holds any more (it was its last use): the collection frees it while the
    /// host function still holds its address.
    pub consume_without_count: bool,
    /// Rule 6: a reference a JIT function returns to the host is handed over as a raw
    /// address without a count ([`Value::Uncounted`]); the next collection frees it.
    pub return_without_count: bool,
    /// Rule 5: reference values are not declared to need stack maps: a reference live
    /// across a call is in no map, and a collection at that call frees it.
    pub undeclared_refs: bool,
    /// Rule 5: each frame's stack map is looked up in the other language module's
    /// tables (same function index, same offset). Demonstrated only on programs where
    /// that lookup finds nothing (`tests/jit.rs`'s `KEEP`): a map that did match would
    /// name slots holding other values, which the collector would take for references.
    pub maps_of_wrong_module: bool,
    /// Rule 2: the exit trampoline records its own frame as the exit instead of the
    /// JIT frame that called it. Alone, walks fail (the trampoline's PC is not
    /// registered code) and collections free nothing.
    pub exit_in_trampoline_frame: bool,
    /// Rule 3: the trampolines are registered as language code. With the previous
    /// fault, the walk then goes through the exit trampoline's frame silently.
    pub register_trampolines: bool,
}

// =================================================================================
// Code generation
// =================================================================================

/// The context every JIT function gets as its first argument, one per language
/// module. Generated code reads it at the `VMCTX_*` offsets.
#[repr(C)]
struct VmCtx {
    /// The store's activation-list head (shared by the modules of the store).
    head: *const Cell<*const Activation>,
    /// This module's function table: a function's address, or 0 until compiled.
    table: *const Cell<usize>,
    /// Every module's `VmCtx`, by module index (for calls into another module).
    modules: *const *const VmCtx,
    /// This module's index.
    module: usize,
    /// The VM, for host functions.
    vm: *const Vm,
    /// Non-zero while a trap of a nested activation is being propagated: JIT code
    /// checks it after each `reenter` and traps with [`PROPAGATE`].
    propagating: *const Cell<i64>,
}

const VMCTX_HEAD: i32 = std::mem::offset_of!(VmCtx, head) as i32;
const VMCTX_TABLE: i32 = std::mem::offset_of!(VmCtx, table) as i32;
const VMCTX_MODULES: i32 = std::mem::offset_of!(VmCtx, modules) as i32;
const VMCTX_PROPAGATING: i32 = std::mem::offset_of!(VmCtx, propagating) as i32;

/// The user trap code JIT code raises to carry a nested activation's trap out of its
/// own activation (the host function that saw it cannot unwind JIT frames itself).
const PROPAGATE: u16 = u16::MAX;

/// Entry trampolines exist for JIT functions of up to this many parameters.
const MAX_HOST_ARGS: usize = 3;

/// `(vmctx, params...) -> i64`: every value is an i64 in CLIF.
fn signature(module: &JITModule, params: usize) -> Signature {
    let mut sig = module.make_signature();
    sig.params.extend((0..=params).map(|_| AbiParam::new(I64)));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The signature of the exit trampoline and of `host_dispatch`:
/// `(vmctx, host, a0, a1) -> i64`.
fn exit_signature(module: &JITModule) -> Signature {
    signature(module, 3)
}

/// A function with one entry block holding the parameters; `body` finishes it.
fn build(
    func: &mut ir::Function,
    body: impl FnOnce(&mut FunctionBuilder, &[ir::Value]) -> Result<(), String>,
) -> Result<(), String> {
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let params = b.block_params(block).to_vec();
    body(&mut b, &params)?;
    b.seal_all_blocks();
    b.finalize();
    Ok(())
}

/// Writes the exit record of the newest activation `head`: `Some((fp, sp))` records
/// the youngest JIT frame's FP and its SP at the call, `None` clears the record
/// (`exit_sp` = 0: "no exit recorded"). The one place generated code writes it.
fn exit_record(b: &mut FunctionBuilder, head: ir::Value, exit: Option<(ir::Value, ir::Value)>) {
    let flags = MemFlags::trusted();
    match exit {
        Some((fp, sp)) => {
            b.ins()
                .store(flags, fp, head, ACTIVATION_EXIT_FP_OFFSET as i32);
            b.ins()
                .store(flags, sp, head, ACTIVATION_EXIT_SP_OFFSET as i32);
        }
        None => {
            let zero = b.ins().iconst(I64, 0);
            b.ins()
                .store(flags, zero, head, ACTIVATION_EXIT_SP_OFFSET as i32);
        }
    }
}

/// The exit trampoline `exit(vmctx, host, a0, a1) -> i64`: records the JIT frame
/// that called it as the exit of the newest activation (its FP is what this
/// trampoline saved at its own `[FP]`; its SP at the call is `FP + 16`), calls
/// `host_dispatch`, and clears the record before returning to JIT code.
fn lower_exit(jit: &mut JITModule, func: &mut ir::Function, faults: Faults) -> Result<(), String> {
    let dispatch = jit
        .declare_function(
            "framewalk_jit_host_dispatch",
            Linkage::Import,
            &exit_signature(jit),
        )
        .map_err(|e| e.to_string())?;
    let dispatch = jit.declare_func_in_func(dispatch, func);
    build(func, |b, args| {
        let flags = MemFlags::trusted();
        let fp = b.ins().get_frame_pointer(I64);
        let (exit_fp, exit_sp) = if faults.exit_in_trampoline_frame {
            (fp, b.ins().get_stack_pointer(I64))
        } else {
            (b.ins().load(I64, flags, fp, 0), b.ins().iadd_imm(fp, 16))
        };
        let head_cell = b.ins().load(I64, flags, args[0], VMCTX_HEAD);
        let head = b.ins().load(I64, flags, head_cell, 0);
        exit_record(b, head, Some((exit_fp, exit_sp)));
        let call = b.ins().call(dispatch, args);
        let result = b.inst_results(call)[0];
        // Activations the host pushed meanwhile are gone again: the head is ours.
        let head = b.ins().load(I64, flags, head_cell, 0);
        exit_record(b, head, None);
        b.ins().return_(&[result]);
        Ok(())
    })
}

/// The entry trampoline for callees of `arity` parameters:
/// `entry(vmctx, activation, callee, args...) -> i64`. Fills in the activation (prev =
/// the current head, `entry_fp` = its own FP, no exit; the host set the owner), makes
/// it the head, calls `callee(vmctx, args...)`, and restores the head. The callee
/// saves this trampoline's FP at its `[FP]`: that is where a walk of the activation
/// ends.
fn lower_entry(jit: &JITModule, func: &mut ir::Function, arity: usize) -> Result<(), String> {
    let callee_sig = signature(jit, arity);
    build(func, |b, args| {
        let [vmctx, activation, callee] = [args[0], args[1], args[2]];
        let flags = MemFlags::trusted();
        let fp = b.ins().get_frame_pointer(I64);
        let head_cell = b.ins().load(I64, flags, vmctx, VMCTX_HEAD);
        let prev = b.ins().load(I64, flags, head_cell, 0);
        b.ins()
            .store(flags, prev, activation, ACTIVATION_PREV_OFFSET as i32);
        b.ins()
            .store(flags, fp, activation, ACTIVATION_ENTRY_FP_OFFSET as i32);
        exit_record(b, activation, None);
        // Fully initialised: from now on it may be walked.
        b.ins().store(flags, activation, head_cell, 0);
        let sig = b.import_signature(callee_sig);
        let mut call_args = vec![vmctx];
        call_args.extend_from_slice(&args[3..]);
        let call = b.ins().call_indirect(sig, callee, &call_args);
        let result = b.inst_results(call)[0];
        b.ins().store(flags, prev, head_cell, 0);
        b.ins().return_(&[result]);
        Ok(())
    })
}

/// Lowers one language function to CLIF. Every `ref` variable, every `ref` call
/// result and every `ref` block parameter is declared to need a stack map, so each
/// reference live across a call is spilled to a slot the call's stack map names.
/// Each expression's line becomes the source location of its instructions.
#[derive(Clone, Copy)]
struct Lower<'a> {
    jit: &'a JITModule,
    module: usize,
    exit: usize,
    vmctx: ir::Value,
    declare_refs: bool,
}

impl Lower<'_> {
    fn function(&self, func: &mut ir::Function, f: &Function) -> Result<(), String> {
        build(func, |b, params| {
            let lower = Lower {
                vmctx: params[0],
                ..*self
            };
            for (slot, ty) in f.slots.iter().enumerate() {
                let var = Variable::from_u32(slot as u32);
                b.declare_var(var, I64);
                if *ty == Ty::Ref && self.declare_refs {
                    b.declare_var_needs_stack_map(var);
                }
            }
            for (slot, param) in params[1..].iter().enumerate() {
                b.def_var(Variable::from_u32(slot as u32), *param);
            }
            let result = lower.expr(b, &f.body)?;
            b.ins().return_(&[result]);
            Ok(())
        })
    }

    fn needs_stack_map(&self, b: &mut FunctionBuilder, v: ir::Value, ty: Ty) {
        if ty == Ty::Ref && self.declare_refs {
            b.declare_value_needs_stack_map(v);
        }
    }

    fn expr(&self, b: &mut FunctionBuilder, e: &Expr) -> Result<ir::Value, String> {
        b.set_srcloc(SourceLoc::new(e.line));
        let v = match &e.kind {
            ExprKind::Int(n) => b.ins().iconst(I64, *n),
            ExprKind::Local(slot) => b.use_var(Variable::from_u32(*slot as u32)),
            ExprKind::Let(slot, value, body) => {
                let v = self.expr(b, value)?;
                b.def_var(Variable::from_u32(*slot as u32), v);
                self.expr(b, body)?
            }
            ExprKind::If(c, t, f) => {
                let c = self.expr(b, c)?;
                let (then_block, else_block, join) =
                    (b.create_block(), b.create_block(), b.create_block());
                let result = b.append_block_param(join, I64);
                self.needs_stack_map(b, result, e.ty);
                b.ins().brif(c, then_block, &[], else_block, &[]);
                for (block, arm) in [(then_block, t), (else_block, f)] {
                    b.switch_to_block(block);
                    let v = self.expr(b, arm)?;
                    b.ins().jump(join, &[v]);
                }
                b.switch_to_block(join);
                result
            }
            ExprKind::Bin(op, x, y) => {
                let (x, y) = (self.expr(b, x)?, self.expr(b, y)?);
                b.set_srcloc(SourceLoc::new(e.line));
                match op {
                    BinOp::Add => b.ins().iadd(x, y),
                    BinOp::Sub => b.ins().isub(x, y),
                    BinOp::Mul => b.ins().imul(x, y),
                    // Traps on a zero divisor (the `idiv` faults: SIGFPE) and on
                    // i64::MIN / -1 (a checked `ud2`: SIGILL).
                    BinOp::Div => b.ins().sdiv(x, y),
                    BinOp::Lt => {
                        let c = b.ins().icmp(IntCC::SignedLessThan, x, y);
                        b.ins().uextend(I64, c)
                    }
                    BinOp::Eq => {
                        let c = b.ins().icmp(IntCC::Equal, x, y);
                        b.ins().uextend(I64, c)
                    }
                }
            }
            ExprKind::IsNull(r) => {
                let r = self.expr(b, r)?;
                let c = b.ins().icmp_imm(IntCC::Equal, r, 0);
                b.ins().uextend(I64, c)
            }
            ExprKind::Trap(n) => {
                b.ins().trap(ir::TrapCode::User(*n));
                // Code after a trap is unreachable, but the expression needs a value.
                let after = b.create_block();
                b.switch_to_block(after);
                b.ins().iconst(I64, 0)
            }
            ExprKind::Call { module, func, args } => {
                let mut values = Vec::new();
                for a in args {
                    values.push(self.expr(b, a)?);
                }
                b.set_srcloc(SourceLoc::new(e.line));
                let v = self.call(b, *module, *func, &values);
                self.needs_stack_map(b, v, e.ty);
                v
            }
            ExprKind::Host(host, args) => {
                let mut values = Vec::new();
                for a in args {
                    values.push(self.expr(b, a)?);
                }
                b.set_srcloc(SourceLoc::new(e.line));
                let v = self.host(b, *host, &values);
                self.needs_stack_map(b, v, e.ty);
                v
            }
            ExprKind::Reenter(func, arg) => {
                let arg = self.expr(b, arg)?;
                b.set_srcloc(SourceLoc::new(e.line));
                let func = b.ins().iconst(I64, *func as i64);
                let result = self.host(b, Host::Reenter, &[func, arg]);
                // A trap in the nested activation ended it; this one ends here too.
                let flags = MemFlags::trusted();
                let flag = b.ins().load(I64, flags, self.vmctx, VMCTX_PROPAGATING);
                let flag = b.ins().load(I64, flags, flag, 0);
                b.ins().trapnz(flag, ir::TrapCode::User(PROPAGATE));
                result
            }
        };
        Ok(v)
    }

    /// A call to the exit trampoline: `host(args)` with missing arguments 0.
    fn host(&self, b: &mut FunctionBuilder, host: Host, args: &[ir::Value]) -> ir::Value {
        let mut values = vec![self.vmctx, b.ins().iconst(I64, host as i64)];
        values.extend_from_slice(args);
        while values.len() < 4 {
            values.push(b.ins().iconst(I64, 0));
        }
        let exit = b.ins().iconst(I64, self.exit as i64);
        let sig = b.import_signature(exit_signature(self.jit));
        let call = b.ins().call_indirect(sig, exit, &values);
        b.inst_results(call)[0]
    }

    /// A call to function `func` of module `module` through that module's function
    /// table; a null entry (not compiled yet) is resolved by the host first.
    fn call(
        &self,
        b: &mut FunctionBuilder,
        module: usize,
        func: usize,
        args: &[ir::Value],
    ) -> ir::Value {
        let flags = MemFlags::trusted();
        let vmctx = if module == self.module {
            self.vmctx
        } else {
            let modules = b.ins().load(I64, flags, self.vmctx, VMCTX_MODULES);
            b.ins().load(I64, flags, modules, 8 * module as i32)
        };
        let table = b.ins().load(I64, flags, vmctx, VMCTX_TABLE);
        let entry = b.ins().load(I64, flags, table, 8 * func as i32);
        let (resolve, call) = (b.create_block(), b.create_block());
        let target = b.append_block_param(call, I64);
        b.ins().brif(entry, call, &[entry], resolve, &[]);
        b.switch_to_block(resolve);
        let (m, f) = (
            b.ins().iconst(I64, module as i64),
            b.ins().iconst(I64, func as i64),
        );
        let resolved = self.host(b, Host::Resolve, &[m, f]);
        b.ins().jump(call, &[resolved]);
        b.switch_to_block(call);
        let sig = b.import_signature(signature(self.jit, args.len()));
        let mut values = vec![vmctx];
        values.extend_from_slice(args);
        let call = b.ins().call_indirect(sig, target, &values);
        b.inst_results(call)[0]
    }
}

// =================================================================================
// The runtime
// =================================================================================

/// The code registry of every VM in the process: which PCs are language code. The
/// trap handler's lookup reads it (no lock, no allocation) in signal context.
static REGISTRY: CodeRegistry = CodeRegistry::new();

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
struct CompiledFunction {
    /// Unregisters the code when dropped: declared first, so dropped before `info`,
    /// which the registration's data word points to.
    registration: ModuleRegistration<'static>,
    info: Box<FunctionInfo>,
}

/// What the collector, backtraces and the trap handler need about one function. Its
/// address is the registration's data word, which the trap handler reads in signal
/// context (through `REGISTRY.lookup_with_data`): immutable once registered.
struct FunctionInfo {
    vm: *const Vm,
    /// Its stack-map section: return offsets relative to the function's first byte,
    /// the registered `text_start`.
    stack_maps: Box<[u8]>,
    /// `(offset, code)` of each trap site, sorted, read by the trap handler.
    traps: Vec<(u32, TrapCode)>,
    /// `(start, end, line)` code ranges and their source lines.
    lines: Vec<(u32, u32, u32)>,
}

impl FunctionInfo {
    fn line_at(&self, offset: u32) -> Option<u32> {
        self.lines
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&offset))
            .map(|(_, _, line)| *line)
    }
}

/// What a registration id names.
#[derive(Clone, Copy, Debug)]
enum Code {
    Function(usize, usize),
    Trampolines,
}

/// A language module at run time: its vmctx, function table and compiled functions.
struct ModuleState {
    vmctx: Box<VmCtx>,
    table: Box<[Cell<usize>]>,
    compiled: RefCell<Vec<Option<CompiledFunction>>>,
}

/// A VM: one store (activation list, root set) over several language modules.
pub struct Vm {
    faults: Faults,
    owner: usize,
    program: Vec<LangModule>,
    /// Dropped (unregistering every function) before `jit` frees the code.
    modules: Vec<ModuleState>,
    _vmctxs: Box<[*const VmCtx]>,
    head: Box<Cell<*const Activation>>,
    trampoline_registration: Option<ModuleRegistration<'static>>,
    exit: usize,
    entries: [usize; MAX_HOST_ARGS + 1],
    by_registration: RefCell<HashMap<usize, Code>>,
    set: RefCell<VMExternRefSet>,
    /// The language's one global: a raw reference holding a count, or 0.
    global: Cell<usize>,
    drops: Rc<RefCell<Vec<i64>>>,
    stats: Cell<GcStats>,
    log: RefCell<Log>,
    /// Where `on_trap` resumes: the innermost `call_resumable` of `call_function`
    /// (nested calls share the point; each restores it when it returns).
    resume_point: ResumePoint,
    /// The trap `on_trap` recorded, until `call_function` returns it.
    trap: RefCell<Option<TrapReport>>,
    propagating: Box<Cell<i64>>,
    jit: RefCell<Option<JITModule>>,
}

/// Owner ids of activations: one per VM, so that a walk can skip other VMs'.
static NEXT_OWNER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

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
            lower_entry(&jit, &mut ctx.func, arity)?;
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
            owner: NEXT_OWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            program,
            modules,
            _vmctxs: vmctxs,
            head,
            trampoline_registration,
            exit: addresses[0],
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
        for m in &mut vm.modules {
            m.vmctx.vm = vm_ptr;
        }
        Ok(vm)
    }

    fn name(&self, module: usize, func: usize) -> String {
        let m = &self.program[module];
        format!("{}.{}", m.name, m.functions[func].name)
    }

    fn find(&self, module: &str, func: &str) -> Result<(usize, usize), String> {
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
    fn compile(&self, module: usize, func: usize) -> Result<usize, String> {
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
        let stack_maps = builder.finish().into_boxed_slice();
        StackMapSection::parse(&stack_maps).map_err(|e| e.to_string())?;
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
    fn enter(&self, raw: usize) -> usize {
        // SAFETY: `raw` is 0 or a live header of this VM's references (the host holds
        // a count, or a frame or the set holds it while this host function runs).
        unsafe { self.set.borrow_mut().insert(raw) };
        raw
    }

    /// Calls a function with raw arguments through the entry trampoline of its arity,
    /// under `call_resumable`: a trap in the code it runs comes back here.
    fn call_function(&self, module: usize, func: usize, args: &[i64]) -> Result<i64, CallError> {
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
    fn activations(&self) -> ActivationList<'_> {
        // SAFETY: the list is built by the entry trampolines on this thread's stack and
        // not modified while the view is used (no JIT code runs meanwhile: this is
        // called from host functions and from the host).
        unsafe { ActivationList::from_head(self.head.get()) }.only_owner(self.owner)
    }

    /// A reader of the stack words the frames of `list` occupy.
    fn reader(list: &ActivationList<'_>) -> LiveStackReader {
        let (lo, hi) = list.recorded_exit_range().unwrap_or((0, 0));
        // SAFETY: called on the thread that runs the JIT code, from a host function or
        // with no JIT frames: `[lowest exit_sp - 16, highest entry_fp)` is that thread's
        // live stack, above this frame.
        unsafe { LiveStackReader::new(lo, hi) }
    }

    fn code_of(&self, frame: &Frame) -> Option<Code> {
        self.by_registration
            .borrow()
            .get(&frame.location.module)
            .copied()
    }

    fn frame_name(&self, frame: &Frame) -> String {
        match self.code_of(frame) {
            Some(Code::Function(m, f)) => self.name(m, f),
            Some(Code::Trampolines) => "<trampolines>".into(),
            None => "?".into(),
        }
    }

    /// The frame's source line: of the call in progress (the instruction before the
    /// return address), or of the instruction at `pc` itself for a trapping frame.
    fn frame_line(&self, frame: &Frame, trapping: bool) -> Option<u32> {
        let Some(Code::Function(m, f)) = self.code_of(frame) else {
            return None;
        };
        let compiled = self.modules[m].compiled.borrow();
        let offset = frame.location.text_offset - u32::from(!trapping);
        compiled[f].as_ref()?.info.line_at(offset)
    }

    /// Walks this VM's frames (from the recorded exits, or from `start` for the
    /// newest activation).
    fn walk(&self, start: Option<StartRegs>) -> Result<Vec<BacktraceFrame>, WalkError> {
        let list = self.activations();
        let reader = match start {
            None => Self::reader(&list),
            Some(regs) => {
                let hi = list
                    .iter()
                    .filter_map(Result::ok)
                    .map(|a| a.entry_fp)
                    .max()
                    .unwrap_or(0);
                // SAFETY: `on_trap` runs on the thread that trapped, below the trapping
                // frame: `[sp, highest entry_fp)` is its live stack.
                unsafe { LiveStackReader::new(regs.sp, hi) }
            }
        };
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
    fn collect(&self) -> Collection {
        let list = self.activations();
        let compiled: Vec<_> = self.modules.iter().map(|m| m.compiled.borrow()).collect();
        // Each compiled function's section, decoded for this collection.
        let sections: Vec<Vec<Option<StackMapSection<'_>>>> = compiled
            .iter()
            .map(|fs| {
                fs.iter()
                    .map(|f| {
                        f.as_ref()
                            .and_then(|f| StackMapSection::parse(&f.info.stack_maps).ok())
                    })
                    .collect()
            })
            .collect();
        let tables: Vec<Vec<Option<StackMapTable<'_>>>> = sections
            .iter()
            .map(|fs| {
                fs.iter()
                    .map(|s| s.as_ref().map(StackMapTable::new))
                    .collect()
            })
            .collect();
        let faults = self.faults;
        let by_registration = self.by_registration.borrow();
        let stack_map = |frame: &Frame| {
            let Some(Code::Function(mut m, f)) =
                by_registration.get(&frame.location.module).copied()
            else {
                return None;
            };
            if faults.maps_of_wrong_module {
                m = (m + 1) % tables.len();
            }
            tables[m]
                .get(f)?
                .as_ref()?
                .lookup(frame.location.text_offset)
        };
        let roots = StackRoots::new(list, Self::reader(&list), &REGISTRY, stack_map);

        // Every frame, then the values of its live slots (for the report).
        let mut frames: Vec<(usize, FrameRoots)> = Vec::new();
        let reader = Self::reader(&list);
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
        if let Err(e) = gc::collect(&mut self.set.borrow_mut(), &roots, &mut stats) {
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

    fn new_ref(&self, value: i64) -> usize {
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

    fn host_call(&self, vmctx: &VmCtx, host: Host, a0: i64, a1: i64) -> Result<i64, String> {
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
            Host::Gc => Ok(if self.collect().error.is_some() {
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
    fn consume(&self, raw: usize) -> Result<i64, String> {
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

fn register_trampolines(
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
        self.set.get_mut().clear();
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
struct EntryCall {
    entry: usize,
    vmctx: *const VmCtx,
    activation: *mut Activation,
    target: usize,
    args: [i64; MAX_HOST_ARGS],
    arity: usize,
    result: i64,
}

/// Calls the entry trampoline an [`EntryCall`] names (under `call_resumable`).
///
/// # Safety
/// `call` must point to a live `EntryCall` made by `Vm::call_function`.
unsafe extern "C" fn enter(call: *mut c_void) {
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

// =================================================================================
// Traps
// =================================================================================

/// A trap, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrapReport {
    pub code: TrapCode,
    pub message: String,
    /// Every frame at the trap, newest first, across activations.
    pub backtrace: Result<Vec<BacktraceFrame>, WalkError>,
}

impl fmt::Display for TrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trap: {}", self.message)?;
        match &self.backtrace {
            Ok(frames) => {
                for (i, fr) in frames.iter().enumerate() {
                    writeln!(f, "  {i}: {fr}")?;
                }
                Ok(())
            }
            Err(e) => writeln!(f, "  walk failed: {e}"),
        }
    }
}

/// Why a call from the host failed.
#[derive(Debug)]
pub enum CallError {
    Trap(TrapReport),
    /// A bad call (no such function, wrong arguments) or a compile error.
    Invalid(String),
}

impl From<String> for CallError {
    fn from(e: String) -> CallError {
        CallError::Invalid(e)
    }
}

impl From<&str> for CallError {
    fn from(e: &str) -> CallError {
        CallError::Invalid(e.to_string())
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Trap(t) => write!(f, "{t}"),
            CallError::Invalid(e) => f.write_str(e),
        }
    }
}

/// The framewalk trap code of a Cranelift trap site this language can reach.
fn trap_code(code: ir::TrapCode) -> Option<TrapCode> {
    Some(match code {
        ir::TrapCode::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
        ir::TrapCode::IntegerOverflow => TrapCode::IntegerOverflow,
        ir::TrapCode::User(n) => TrapCode::Custom(n),
        _ => return None,
    })
}

/// The trap-handler registration every VM of the process shares (their code is all
/// in [`REGISTRY`]), made by the first [`Vm::new`] and kept for the process.
fn trap_registration() -> Result<(), String> {
    static REGISTRATION: std::sync::OnceLock<Result<TrapHandlerRegistration, String>> =
        std::sync::OnceLock::new();
    let hooks = TrapHooks {
        lookup: trap_lookup,
        on_trap,
    };
    REGISTRATION
        .get_or_init(|| trap::register(hooks).map_err(|e| e.to_string()))
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)?;
    // Each thread that runs JIT code gets an alternate signal stack.
    trap::handler::ensure_alt_stack();
    Ok(())
}

/// The [`FunctionInfo`] a registration's data word points to (0 for the trampolines'
/// registration, which has none).
///
/// # Safety
/// `data` must come from a lookup in [`REGISTRY`] of a PC of code that is running on
/// this thread (its VM, and so its registration and info, are alive for as long as the
/// reference is used).
unsafe fn function_info<'a>(data: usize) -> Option<&'a FunctionInfo> {
    // SAFETY: per the contract, a non-zero data word is a live `FunctionInfo`.
    (data != 0).then(|| unsafe { &*(data as *const FunctionInfo) })
}

/// In signal context: the trap code of a trap site at `pc` in any VM's code. Only
/// reads: the registry (lock-free) and the function's immutable trap sites.
fn trap_lookup(pc: usize, _signal: i32) -> Option<TrapCode> {
    let (location, data) = REGISTRY.lookup_with_data(pc)?;
    // SAFETY: `pc` is the faulting PC of this thread: its function is running.
    let info = unsafe { function_info(data) }?;
    let i = info
        .traps
        .binary_search_by_key(&location.text_offset, |t| t.0)
        .ok()?;
    Some(info.traps[i].1)
}

/// Runs on the faulting stack after a trap `trap_lookup` claimed: records the trap
/// with its backtrace (unless it only propagates a nested one) and resumes at the
/// `call_resumable` of the call that entered the trapping code. It unlinks nothing:
/// `Vm::call_function` pops the activation when `call_resumable` returns `true`.
unsafe extern "C" fn on_trap(pc: usize, fp: usize, sp: usize, code: usize, _fault: usize) -> ! {
    let point = record_trap(pc, fp, sp, code);
    // SAFETY: the point was recorded by the `call_resumable` of `Vm::call_function` that
    // entered the trapping code, still running below us; between it and this frame
    // are `enter`, the entry trampoline and JIT frames, which own nothing, and this
    // frame, whose values `record_trap` already dropped.
    unsafe { trap::resume(point) }
}

fn record_trap(pc: usize, fp: usize, sp: usize, code: usize) -> *const ResumePoint {
    // SAFETY: `trap_lookup` claimed `pc`: it is in a running function of this thread.
    let info = REGISTRY
        .lookup_with_data(pc)
        .and_then(|(_, data)| unsafe { function_info(data) });
    let Some(info) = info else {
        std::process::abort();
    };
    // SAFETY: the VM that compiled the function outlives every run of its code.
    let vm = unsafe { &*info.vm };
    let code = TrapCode::from_raw(code).unwrap_or(TrapCode::Custom(0));
    if code != TrapCode::Custom(PROPAGATE) {
        let message = match code {
            TrapCode::Custom(n) => format!("user trap {n}"),
            other => other.message().to_string(),
        };
        let backtrace = vm.walk(Some(StartRegs { pc, fp, sp }));
        *vm.trap.borrow_mut() = Some(TrapReport {
            code,
            message,
            backtrace,
        });
    }
    &vm.resume_point
}

/// The host side of every exit. A panic must not unwind through JIT frames (they
/// have no unwind info): abort.
extern "C" fn host_dispatch(vmctx: *const VmCtx, host: i64, a0: i64, a1: i64) -> i64 {
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

// =================================================================================
// The demo
// =================================================================================

/// The demo program. Line numbers matter: backtraces and tests name them.
pub const DEMO: &str = "\
(module lib
  (fn square ((n int)) int (* n n))
  (fn unused ((n int)) int (+ n 1))
  (fn hold ((r ref) (n int)) int
    (let ((c (new n)))
      (+ (gc)
         (+ (backtrace) (+ (value r) (value c))))))
  (fn make ((n int)) ref (new n))
  (fn ratio ((a int) (b int)) int (/ a b))
  (fn check ((n int)) int
    (if (< n 0) (trap 7) (ratio 1000 n))))
(module app
  (fn main ((n int)) int
    (let ((a (new n))
          (b (new 200)))
      (let ((s (middle a))
            (g (gc)))
        (+ (+ (value a) (value b)) (+ s (+ g (lib.square 3)))))))
  (fn middle ((x ref)) int
    (let ((c (new 300))
          (junk (new 400))
          (r (reenter inner 500)))
      (+ (+ (value x) (value c)) r)))
  (fn inner ((n int)) int
    (let ((d (new n))
          (k (set-global (new 800)))
          (h (lib.hold d 600)))
      (+ (consume (new 700))
         (+ (value d) (+ h (value (global)))))))
  (fn boom ((n int)) int
    (let ((r (new (+ 900 n))))
      (+ (reenter deep n) (value r))))
  (fn deep ((n int)) int
    (let ((q (new (- 950 n))))
      (+ (lib.check n) (value q)))))
";

/// What the demo run showed.
#[derive(Clone, Debug)]
pub struct Report {
    /// `app.main(100)`.
    pub result: i64,
    /// `app.boom(0)` (a division by zero) and `app.boom(-1)` (`(trap 7)`), each two
    /// activations deep.
    pub traps: Vec<TrapReport>,
    pub log: Log,
    pub registrations: usize,
    /// Every payload drop, in order, through teardown.
    pub drops: Vec<i64>,
    pub stats: GcStats,
}

/// Runs `app.main(100)` of [`DEMO`], a collection from the host, `app.boom(0)` and
/// `app.boom(-1)` (both trap), another collection, then teardown.
pub fn run_demo(faults: Faults) -> Result<Report, String> {
    let vm = Vm::new(DEMO, faults)?;
    let result = match vm.call("app", "main", &[Value::Int(100)]) {
        Ok(Value::Int(n)) => n,
        other => return Err(format!("unexpected result {other:?}")),
    };
    vm.collect_now();
    let mut traps = Vec::new();
    for n in [0, -1] {
        match vm.call("app", "boom", &[Value::Int(n)]) {
            Err(CallError::Trap(t)) => traps.push(t),
            other => return Err(format!("app.boom({n}) should trap: {other:?}")),
        }
    }
    // What the abandoned frames held goes now.
    vm.collect_now();
    let (log, registrations, stats) = (vm.log(), vm.registrations(), vm.stats());
    let drops = vm.finish();
    Ok(Report {
        result,
        traps,
        log,
        registrations,
        drops,
        stats,
    })
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fr in &self.frames {
            writeln!(
                f,
                "    activation {} {:<12} roots {:?}",
                fr.activation, fr.function, fr.roots
            )?;
        }
        if self.frames.is_empty() {
            writeln!(f, "    no JIT frames")?;
        }
        match &self.error {
            Some(e) => writeln!(f, "    walk failed: {e}; freed nothing"),
            None => writeln!(f, "    freed {:?}", self.freed),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "app.main(100) = {}", self.result)?;
        writeln!(f, "compiled, in order: {}", self.log.compiled.join(", "))?;
        writeln!(f, "registrations: {}", self.registrations)?;
        for (i, c) in self.log.collections.iter().enumerate() {
            writeln!(f, "collection {}:", i + 1)?;
            write!(f, "{c}")?;
        }
        for bt in &self.log.backtraces {
            writeln!(f, "backtrace:")?;
            match bt {
                Ok(frames) => {
                    for (i, fr) in frames.iter().enumerate() {
                        writeln!(f, "  {i}: {fr}")?;
                    }
                }
                Err(e) => writeln!(f, "  walk failed: {e}")?,
            }
        }
        for t in &self.traps {
            write!(f, "{t}")?;
        }
        for e in &self.log.events {
            writeln!(f, "event: {e}")?;
        }
        writeln!(f, "dropped: {:?}", self.drops)?;
        writeln!(f, "{}", self.stats)
    }
}

#[allow(dead_code, reason = "tests/jit.rs includes this file as a module")]
fn main() -> Result<(), String> {
    print!("{}", run_demo(Faults::default())?);
    Ok(())
}
