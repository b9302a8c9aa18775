//! The CLIF of the two transition trampolines.
//!
//! - The **entry trampoline** (host → wasm), one per escaping wasm function, has the
//!   array calling convention ([`ArrayCallFn`](crate::runtime::vmcontext::ArrayCallFn)):
//!   it loads the arguments from the value array, calls the wasm function directly and
//!   stores the results back. It is the one place a host call enters wasm.
//! - The **exit trampoline** (wasm → host), one per function type, has the wasm calling
//!   convention: it spills the arguments into a value array on its own stack frame,
//!   calls the host function's array-convention entry point (loaded from the host
//!   context, see [`HOST_CTX_ARRAY_CALL_OFFSET`]); a failing host function leaves
//!   through the runtime instead of returning. Wasm reaches it through
//!   `arch::framewalk_wasm_to_host`, which has already recorded the exit, for host
//!   functions without a direct entry (see `runtime::host_call`).
//!
//! Both are ordinary Cranelift functions compiled with frame pointers, so the
//! frame-pointer chain stays intact across every transition.

use super::environ::{clif_type, wasm_signature, NS_WASM_FUNC};
use crate::runtime::vmcontext::ValRaw;
use crate::trap::HOST_ERROR_USER_CODE;
use crate::types::{FuncType, ValType};
use cranelift_codegen::ir::{
    self, types, AbiParam, ExtFuncData, ExternalName, InstBuilder, MemFlags, Signature,
    StackSlotData, StackSlotKind, TrapCode, UserExternalName, UserFuncName,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// Offset, inside a host function context, of its array-call entry point.
pub const HOST_CTX_ARRAY_CALL_OFFSET: i32 = 8;

/// Set in the `len` argument of a host function's array entry point when an exit
/// trampoline calls it (a wasm caller whose exit is recorded): a failing host function
/// then leaves through the runtime's `raise` instead of returning. Calls from the host
/// (`Func::call` of a host function, a host start function) leave it clear and get the
/// failure back as `false`.
pub const ARRAY_CALL_FROM_WASM: u64 = 1 << 63;

/// The Cranelift signature of the array calling convention.
pub fn array_call_signature() -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I8));
    sig
}

/// Byte offset of value `index` in a value array: one [`ValRaw`] slot per value.
fn slot_offset(index: usize) -> i32 {
    (index * ValRaw::SIZE as usize) as i32
}

fn load_value(b: &mut FunctionBuilder, ty: ValType, base: ir::Value, index: usize) -> ir::Value {
    b.ins()
        .load(clif_type(ty), MemFlags::trusted(), base, slot_offset(index))
}

fn store_value(b: &mut FunctionBuilder, v: ir::Value, base: ir::Value, index: usize) {
    b.ins()
        .store(MemFlags::trusted(), v, base, slot_offset(index));
}

/// The entry trampoline for wasm function `func_index` of type `ty`.
pub fn entry_trampoline(func_index: u32, ty: &FuncType) -> ir::Function {
    let mut func = ir::Function::with_name_signature(
        UserFuncName::user(2, func_index),
        array_call_signature(),
    );
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let params = b.block_params(block).to_vec();
    let (callee_vmctx, caller_vmctx, values) = (params[0], params[1], params[2]);

    let mut args = vec![callee_vmctx, caller_vmctx];
    for (i, t) in ty.params().iter().enumerate() {
        args.push(load_value(&mut b, *t, values, i));
    }
    let sig = b.import_signature(wasm_signature(ty));
    let name = b.func.declare_imported_user_function(UserExternalName {
        namespace: NS_WASM_FUNC,
        index: func_index,
    });
    let callee = b.import_function(ExtFuncData {
        name: ExternalName::User(name),
        signature: sig,
        colocated: true,
    });
    let call = b.ins().call(callee, &args);
    let results = b.inst_results(call).to_vec();
    for (i, v) in results.into_iter().enumerate() {
        store_value(&mut b, v, values, i);
    }
    let ok = b.ins().iconst(types::I8, 1);
    b.ins().return_(&[ok]);
    b.finalize();
    func
}

/// The exit trampoline for host functions of type `ty`.
///
/// The exit is recorded before the trampoline runs (by `arch::framewalk_wasm_to_host`,
/// which jumps here) and cleared by the host entry point when the host function
/// succeeds. A failed host function does not return here: its array entry point leaves
/// through the runtime (`runtime::entry::raise`), which captures the backtrace from the
/// recorded exit and resumes at the activation's entry. The trampoline's own failure
/// branch is only a guard (a host entry point that returned failure anyway traps with
/// the host-error code).
pub fn exit_trampoline(ty: &FuncType) -> ir::Function {
    let mut func = ir::Function::with_name_signature(UserFuncName::user(3, 0), wasm_signature(ty));
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let params = b.block_params(block).to_vec();
    let (callee_vmctx, caller_vmctx) = (params[0], params[1]);

    let len = ty.params().len().max(ty.results().len()).max(1);
    let slot = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        len as u32 * ValRaw::SIZE,
        ValRaw::ALIGN_SHIFT,
    ));
    let values = b.ins().stack_addr(types::I64, slot, 0);
    for (i, v) in params[2..].iter().enumerate() {
        store_value(&mut b, *v, values, i);
    }
    let host = b.ins().load(
        types::I64,
        MemFlags::trusted().with_readonly(),
        callee_vmctx,
        HOST_CTX_ARRAY_CALL_OFFSET,
    );
    let sig = b.import_signature(array_call_signature());
    let n = b
        .ins()
        .iconst(types::I64, (len as u64 | ARRAY_CALL_FROM_WASM) as i64);
    let call = b
        .ins()
        .call_indirect(sig, host, &[callee_vmctx, caller_vmctx, values, n]);
    let ok = b.inst_results(call)[0];
    let fail = b.create_block();
    let done = b.create_block();
    b.ins().brif(ok, done, &[], fail, &[]);
    b.seal_block(fail);
    b.seal_block(done);
    b.switch_to_block(fail);
    b.ins().trap(TrapCode::User(HOST_ERROR_USER_CODE));
    b.switch_to_block(done);
    let mut results = Vec::new();
    for (i, t) in ty.results().iter().enumerate() {
        let v = load_value(&mut b, *t, values, i);
        if *t == ValType::ExternRef {
            b.declare_value_needs_stack_map(v);
        }
        results.push(v);
    }
    b.ins().return_(&results);
    b.finalize();
    func
}
