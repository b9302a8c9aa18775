//! Code generation: language functions, the entry and exit trampolines, all as CLIF
//! built with cranelift-frontend and compiled by cranelift-jit.

use std::cell::Cell;

use cranelift_codegen::ir::{
    self, condcodes::IntCC, types::I64, AbiParam, InstBuilder, MemFlags, Signature, SourceLoc,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{Linkage, Module};

use framewalk::unwind::{
    Activation, ACTIVATION_ENTRY_FP_OFFSET, ACTIVATION_EXIT_FP_OFFSET, ACTIVATION_EXIT_PC_OFFSET,
    ACTIVATION_EXIT_SP_OFFSET, ACTIVATION_PREV_OFFSET,
};

use super::lang::*;
use super::vm::*;
use super::Faults;

/// The context every JIT function gets as its first argument, one per language
/// module. Generated code reads it at the `VMCTX_*` offsets.
#[repr(C)]
pub(crate) struct VmCtx {
    /// The store's activation-list head (shared by the modules of the store).
    pub(crate) head: *const Cell<*const Activation>,
    /// This module's function table: a function's address, or 0 until compiled.
    pub(crate) table: *const Cell<usize>,
    /// Every module's `VmCtx`, by module index (for calls into another module).
    pub(crate) modules: *const *const VmCtx,
    /// This module's index.
    pub(crate) module: usize,
    /// The VM, for host functions.
    pub(crate) vm: *const Vm,
    /// Non-zero while a trap of a nested activation is being propagated: JIT code
    /// checks it after each `reenter` and traps with [`PROPAGATE`].
    pub(crate) propagating: *const Cell<i64>,
}

pub(crate) const VMCTX_HEAD: i32 = std::mem::offset_of!(VmCtx, head) as i32;
pub(crate) const VMCTX_TABLE: i32 = std::mem::offset_of!(VmCtx, table) as i32;
pub(crate) const VMCTX_MODULES: i32 = std::mem::offset_of!(VmCtx, modules) as i32;
pub(crate) const VMCTX_PROPAGATING: i32 = std::mem::offset_of!(VmCtx, propagating) as i32;

/// The user trap code JIT code raises to carry a nested activation's trap out of its
/// own activation (the host function that saw it cannot unwind JIT frames itself).
pub(crate) const PROPAGATE: u16 = u16::MAX;

/// Entry trampolines exist for JIT functions of up to this many parameters.
pub(crate) const MAX_HOST_ARGS: usize = 3;

/// `(vmctx, params...) -> i64`: every value is an i64 in CLIF.
pub(crate) fn signature(module: &JITModule, params: usize) -> Signature {
    let mut sig = module.make_signature();
    sig.params.extend((0..=params).map(|_| AbiParam::new(I64)));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The signature of the exit trampoline and of `host_dispatch`:
/// `(vmctx, host, a0, a1) -> i64`.
pub(crate) fn exit_signature(module: &JITModule) -> Signature {
    signature(module, 3)
}

/// A function with one entry block holding the parameters; `body` finishes it.
pub(crate) fn build(
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

/// Writes the exit record of the newest activation `head`: `Some((fp, sp, pc))`
/// records the youngest JIT frame's FP, its SP at the call and the return address into
/// it; `None` clears the record (`exit_sp` = 0: "no exit recorded"). The one place
/// generated code writes it.
pub(crate) fn exit_record(
    b: &mut FunctionBuilder,
    head: ir::Value,
    exit: Option<(ir::Value, ir::Value, ir::Value)>,
) {
    let flags = MemFlags::trusted();
    match exit {
        Some((fp, sp, pc)) => {
            b.ins()
                .store(flags, fp, head, ACTIVATION_EXIT_FP_OFFSET as i32);
            b.ins()
                .store(flags, pc, head, ACTIVATION_EXIT_PC_OFFSET as i32);
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
/// trampoline saved at its own `[FP]`, its PC the return address at `[FP + 8]`, its SP
/// at the call `FP + 16`), calls
/// `host_dispatch`, and clears the record before returning to JIT code (unless
/// [`Faults::exit_not_cleared`]).
pub(crate) fn lower_exit(
    jit: &mut JITModule,
    func: &mut ir::Function,
    faults: Faults,
) -> Result<(), String> {
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
        // The return address into the JIT frame that called this trampoline.
        let exit_pc = b.ins().load(I64, flags, fp, 8);
        let (exit_fp, exit_sp) = if faults.exit_in_trampoline_frame {
            (fp, b.ins().get_stack_pointer(I64))
        } else {
            (b.ins().load(I64, flags, fp, 0), b.ins().iadd_imm(fp, 16))
        };
        let head_cell = b.ins().load(I64, flags, args[0], VMCTX_HEAD);
        let head = b.ins().load(I64, flags, head_cell, 0);
        exit_record(b, head, Some((exit_fp, exit_sp, exit_pc)));
        let call = b.ins().call(dispatch, args);
        let result = b.inst_results(call)[0];
        if !faults.exit_not_cleared {
            // Activations the host pushed meanwhile are gone again: the head is ours.
            let head = b.ins().load(I64, flags, head_cell, 0);
            exit_record(b, head, None);
        }
        b.ins().return_(&[result]);
        Ok(())
    })
}

/// The entry trampoline for callees of `arity` parameters:
/// `entry(vmctx, activation, callee, args...) -> i64`. Fills in the activation (prev =
/// the current head, `entry_fp` = its own FP, no exit; the host set the owner), makes
/// it the head, calls `callee(vmctx, args...)`, and restores the head. The callee
/// saves this trampoline's FP at its `[FP]`: that is where a walk of the activation
/// ends. Under [`Faults::entry_fp_past_trampoline`] it records `FP + 16` instead, so
/// the chain no longer ends at the oldest language frame.
pub(crate) fn lower_entry(
    jit: &JITModule,
    func: &mut ir::Function,
    arity: usize,
    faults: Faults,
) -> Result<(), String> {
    let callee_sig = signature(jit, arity);
    build(func, |b, args| {
        let [vmctx, activation, callee] = [args[0], args[1], args[2]];
        let flags = MemFlags::trusted();
        let fp = b.ins().get_frame_pointer(I64);
        let entry_fp = if faults.entry_fp_past_trampoline {
            b.ins().iadd_imm(fp, 16)
        } else {
            fp
        };
        let head_cell = b.ins().load(I64, flags, vmctx, VMCTX_HEAD);
        let prev = b.ins().load(I64, flags, head_cell, 0);
        b.ins()
            .store(flags, prev, activation, ACTIVATION_PREV_OFFSET as i32);
        b.ins().store(
            flags,
            entry_fp,
            activation,
            ACTIVATION_ENTRY_FP_OFFSET as i32,
        );
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
pub(crate) struct Lower<'a> {
    pub(crate) jit: &'a JITModule,
    pub(crate) module: usize,
    pub(crate) exit: usize,
    pub(crate) vmctx: ir::Value,
    pub(crate) declare_refs: bool,
}

impl Lower<'_> {
    pub(crate) fn function(&self, func: &mut ir::Function, f: &Function) -> Result<(), String> {
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

    pub(crate) fn needs_stack_map(&self, b: &mut FunctionBuilder, v: ir::Value, ty: Ty) {
        if ty == Ty::Ref && self.declare_refs {
            b.declare_value_needs_stack_map(v);
        }
    }

    pub(crate) fn expr(&self, b: &mut FunctionBuilder, e: &Expr) -> Result<ir::Value, String> {
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

    /// A call to the exit trampoline: `host(args)` with missing arguments 0. Only
    /// [`Host::GcFast`] calls `host_dispatch` directly instead, recording no exit.
    pub(crate) fn host(
        &self,
        b: &mut FunctionBuilder,
        host: Host,
        args: &[ir::Value],
    ) -> ir::Value {
        let mut values = vec![self.vmctx, b.ins().iconst(I64, host as i64)];
        values.extend_from_slice(args);
        while values.len() < 4 {
            values.push(b.ins().iconst(I64, 0));
        }
        let target = match host {
            Host::GcFast => host_dispatch as *const () as usize,
            _ => self.exit,
        };
        let exit = b.ins().iconst(I64, target as i64);
        let sig = b.import_signature(exit_signature(self.jit));
        let call = b.ins().call_indirect(sig, exit, &values);
        b.inst_results(call)[0]
    }

    /// A call to function `func` of module `module` through that module's function
    /// table; a null entry (not compiled yet) is resolved by the host first.
    pub(crate) fn call(
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
