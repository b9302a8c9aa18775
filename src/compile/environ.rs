//! framewalk's `FuncEnvironment`: how each WebAssembly construct that touches the
//! instance is lowered to Cranelift IR against the vmctx layout of
//! [`crate::runtime::vmcontext::VMOffsets`].
//!
//! Calling convention of every wasm function (Cranelift's `tail`, [`WASM_CALL_CONV`]):
//!
//! ```text
//! fn(callee_vmctx: i64, caller_vmctx: i64, params...) -> results
//! ```
//!
//! `callee_vmctx` is the instance the function belongs to; `caller_vmctx` is the instance
//! of the calling wasm code (so host functions can find their caller). Calls between
//! functions of one module are direct `call`s; calls to imports and `call_indirect` load
//! a [`VMFuncRef`] and call its `wasm_call` pointer. `return_call` and
//! `return_call_indirect` are the same with Cranelift's `return_call*`: the caller's
//! frame is gone before the callee runs (a tail call to a host function records an exit
//! whose newest wasm frame is the caller's caller).
//!
//! Invariants:
//! - accesses to a 32-bit linear memory rely on guard pages, as Wasmtime's do on
//!   64-bit hosts: such a memory is a `HeapStyle::Static` heap with a bound of
//!   `runtime::storage::MEMORY_BOUND` (4 GiB) and an `offset_guard_size` of
//!   `MEMORY_GUARD` (2 GiB), matching the reservation of bound + guard that every
//!   32-bit `MemoryStorage` makes (bytes past `current_length` are `PROT_NONE`). For a
//!   32-bit index and `offset + access size <= MEMORY_GUARD + 1` (every realistic
//!   offset) cranelift-wasm 0.112.3 emits no check at all: an out-of-bounds access
//!   faults on the load or store itself, whose PC is a `HeapOutOfBounds` trap site (its
//!   `MemFlags` can trap), and the signal handler reports the faulting address. Larger
//!   offsets get an explicit check that the access ends within the 4 GiB bound (`trapnz
//!   heap_oob`, no address), and the `PROT_NONE` pages between `current_length` and
//!   the bound catch the rest; offsets past the bound trap unconditionally;
//! - a 64-bit memory (memory64) cannot be covered by guard pages: it is a
//!   `HeapStyle::Dynamic` heap whose bound is `current_length`, reloaded from the
//!   `VMMemoryDefinition` (it changes with `memory.grow`), with the same
//!   `offset_guard_size`, which its `MemoryStorage` also reserves past its largest
//!   size. For `offset + access size <= MEMORY_GUARD` cranelift-wasm then checks only
//!   `index > current_length` (`trapnz heap_oob`, no address: the access never
//!   happens), and an access that starts in bounds but ends past the end faults on
//!   the guard with its exact address, as for 32-bit memories; larger offsets get the
//!   full check `index + offset + size > current_length` (overflow included);
//! - `memory.size` and the bulk-memory libcalls read
//!   `VMMemoryDefinition::current_length`; the libcalls take 64-bit operands for both
//!   index types (32-bit ones are zero-extended here);
//! - every trap happens at a trap site Cranelift records in wasm code: a trap
//!   instruction (including the check of a libcall's failure status) or a load or store
//!   of linear memory;
//! - every `externref` value (parameters, locals, call results, `table.get`,
//!   `global.get`, typed `select` results, block parameters and the merged values of
//!   reference locals at joins) is declared to need a stack map, so it appears in the
//!   stack map of every safepoint it is live across. cranelift-frontend's spiller then
//!   gives each such value its own stack slot for the whole function: the crates.io
//!   0.112.3 spiller shared slots between values whose live ranges overlap in loops,
//!   which is why framewalk builds a patched copy (`third_party/cranelift-frontend`).

use super::libcall::Libcall;
use super::module_info::ModuleInfo;
use crate::runtime::storage::{MEMORY32_MAX_PAGES, MEMORY64_MAX_PAGES, MEMORY_BOUND, MEMORY_GUARD};
use crate::runtime::vmcontext::{VMFuncRef, VMMemoryDefinition, VMOffsets, VMTableDefinition};
use crate::types::{FuncType, ValType};
use cranelift_codegen::cursor::FuncCursor;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    self, types, AbiParam, ArgumentPurpose, ExtFuncData, ExternalName, GlobalValueData,
    InstBuilder, MemFlags, Signature, TrapCode, UserExternalName,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig, TargetIsa};
use cranelift_entity::{EntityRef, PrimaryMap, SecondaryMap};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_wasm::{
    wasm_unsupported, FuncEnvironment, FuncIndex, FuncTranslationState, GlobalIndex,
    GlobalVariable, Heap, HeapData, HeapStyle, MemoryIndex, TableIndex, TargetEnvironment,
    TypeConvert, TypeIndex, WasmHeapType, WasmResult,
};
use std::collections::HashMap;

/// External-name namespace of wasm functions (index = function index).
pub const NS_WASM_FUNC: u32 = 0;
/// External-name namespace of libcalls (index = `Libcall as u32`).
pub const NS_LIBCALL: u32 = 1;

/// The Cranelift type of a wasm value type.
pub fn clif_type(ty: ValType) -> ir::Type {
    match ty {
        ValType::I32 => types::I32,
        ValType::I64 => types::I64,
        ValType::F32 => types::F32,
        ValType::F64 => types::F64,
        // Cranelift's wasm translator gives every v128 value this type (and bitcasts
        // it to the lane type each operator needs).
        ValType::V128 => types::I8X16,
        ValType::FuncRef | ValType::ExternRef => types::I64,
    }
}

/// The calling convention of every wasm function (and of the exit trampolines, which
/// wasm calls like any function): Cranelift's `tail`, so that `return_call` can replace
/// a frame. On x86-64 it passes arguments in the System V registers, keeps the System V
/// callee-saved registers and returns one result in `rax`/`xmm0`; it differs from
/// System V only for several results (more return registers) and stack arguments (the
/// callee pops them). Host code therefore calls wasm directly, and wasm calls Rust
/// `extern "C"` functions directly, only for register arguments and at most one
/// result (see `runtime::host_call` and `runtime::entry::invoke_direct`).
pub const WASM_CALL_CONV: CallConv = CallConv::Tail;

/// The Cranelift signature of a wasm function of type `ty`.
pub fn wasm_signature(ty: &FuncType) -> Signature {
    let mut sig = Signature::new(WASM_CALL_CONV);
    sig.params
        .push(AbiParam::special(types::I64, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(types::I64));
    sig.params
        .extend(ty.params().iter().map(|t| AbiParam::new(clif_type(*t))));
    sig.returns
        .extend(ty.results().iter().map(|t| AbiParam::new(clif_type(*t))));
    sig
}

/// Bytes of stack arguments a call to a wasm function of type `ty` passes under
/// [`WASM_CALL_CONV`] on x86-64, as Cranelift's `x64::abi::compute_arg_locs` lays
/// them out: in parameter order, the integer arguments (the two hidden vmctx pointers
/// first) after the sixth and the float and vector arguments after the eighth go on the
/// stack, 8 bytes each, except a `v128`, which takes 16 bytes at a 16-aligned offset;
/// the area is a multiple of 16 (Cranelift's `tail` convention, which the callee
/// pops). A tail call moves its callee's frame down by at most the largest of these
/// over the types it can call (see `gc::visit_stack_roots_shifted`).
pub fn stack_arg_bytes(ty: &FuncType) -> usize {
    let (mut ints, mut vregs, mut offset) = (HIDDEN_PARAMS, 0usize, 0usize);
    for t in ty.params() {
        let size = match t {
            ValType::F32 | ValType::F64 | ValType::V128 => {
                vregs += 1;
                if vregs <= 8 {
                    continue;
                }
                if *t == ValType::V128 {
                    16
                } else {
                    8
                }
            }
            ValType::I32 | ValType::I64 | ValType::FuncRef | ValType::ExternRef => {
                ints += 1;
                if ints <= 6 {
                    continue;
                }
                8
            }
        };
        offset = offset.next_multiple_of(size) + size;
    }
    offset.next_multiple_of(16)
}

/// Number of hidden parameters before the wasm parameters.
const HIDDEN_PARAMS: usize = 2;

/// The environment for translating one function.
pub struct FuncEnv<'a> {
    isa: &'a dyn TargetIsa,
    info: &'a ModuleInfo,
    offsets: VMOffsets,
    /// Type of the function being translated.
    func_type: &'a FuncType,
    heaps: PrimaryMap<Heap, HeapData>,
    /// For each heap, the global value of its `VMMemoryDefinition::current_length`.
    memory_lengths: SecondaryMap<Heap, Option<ir::GlobalValue>>,
    vmctx: Option<ir::GlobalValue>,
    libcalls: HashMap<Libcall, ir::FuncRef>,
    /// Signature refs of indirect calls, by module type index (for result stack maps).
    indirect_sigs: HashMap<ir::SigRef, u32>,
    /// Open control constructs: (kind, param types, result types).
    control: Vec<(ControlKind, Vec<ValType>, Vec<ValType>)>,
    /// Indices of the externref locals (parameters included).
    ref_locals: Vec<u32>,
    /// Number of wasm locals, parameters included (the translator's variables
    /// `0..num_locals`; the environment's own come after).
    num_locals: u32,
    options: super::CodegenOptions,
    /// With epoch interruption: the store context and the address of the engine's epoch
    /// counter, loaded once at function entry, and the variable caching the store's
    /// deadline (reloaded after every call, the only way the host can move it while
    /// this function runs).
    epoch: Option<(ir::Value, ir::Value, Variable)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ControlKind {
    Function,
    Block,
    Loop,
    If,
}

impl<'a> FuncEnv<'a> {
    /// An environment for translating a function of type `func_type` in `info`.
    pub fn new(
        isa: &'a dyn TargetIsa,
        info: &'a ModuleInfo,
        offsets: VMOffsets,
        func_type: &'a FuncType,
        ref_locals: Vec<u32>,
        num_locals: u32,
        options: super::CodegenOptions,
    ) -> Self {
        FuncEnv {
            isa,
            info,
            offsets,
            func_type,
            heaps: PrimaryMap::new(),
            memory_lengths: SecondaryMap::new(),
            vmctx: None,
            libcalls: HashMap::new(),
            indirect_sigs: HashMap::new(),
            control: Vec::new(),
            ref_locals,
            num_locals,
            options,
            epoch: None,
        }
    }

    /// With epoch interruption, (re)loads the store's deadline into its variable: at
    /// function entry and after every call (a host function may have moved it).
    fn reload_epoch_deadline(&mut self, builder: &mut FunctionBuilder) {
        let Some((store, _, deadline)) = self.epoch else {
            return;
        };
        let value = builder.ins().load(
            types::I64,
            MemFlags::trusted(),
            store,
            crate::runtime::vmcontext::VMStoreContext::EPOCH_DEADLINE_OFFSET as i32,
        );
        builder.def_var(deadline, value);
    }

    /// With epoch interruption, traps with `INTERRUPT_USER_CODE` if the engine's epoch
    /// has reached the store's deadline: a load of the counter (another thread advances
    /// it), a compare with the cached deadline and a conditional trap.
    fn check_epoch(&mut self, builder: &mut FunctionBuilder) {
        let Some((_, counter, deadline)) = self.epoch else {
            return;
        };
        // An atomic load: the counter changes under the code (another thread increments
        // it), and a plain load in a loop that stores nothing would be merged with the
        // first one by Cranelift's redundant-load elimination, leaving a loop that never
        // sees the new epoch. On x86-64 it is the same `mov`.
        let now = builder
            .ins()
            .atomic_load(types::I64, MemFlags::trusted(), counter);
        let deadline = builder.use_var(deadline);
        let reached = builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, now, deadline);
        builder
            .ins()
            .trapnz(reached, TrapCode::User(crate::trap::INTERRUPT_USER_CODE));
    }

    /// At the start of a block where control flow joins (after `end`, `else`, at a loop
    /// header), reads every externref local once, so the frontend materializes the
    /// local's merged value as a block parameter here and declares it as needing a stack
    /// map. Otherwise a merged value that is live across a later call, but only read
    /// after a further join, is a block parameter nobody declared, and is in no stack map.
    fn declare_merged_ref_locals(&self, builder: &mut FunctionBuilder) {
        if builder.is_unreachable() || builder.current_block().is_none() {
            return;
        }
        for local in &self.ref_locals {
            let _ = builder.try_use_var(cranelift_frontend::Variable::from_u32(*local));
        }
    }

    fn block_type(&self, ty: &wasmparser::BlockType) -> (Vec<ValType>, Vec<ValType>) {
        use crate::compile::module_info::val_type_of;
        match ty {
            wasmparser::BlockType::Empty => (Vec::new(), Vec::new()),
            wasmparser::BlockType::Type(t) => (Vec::new(), val_type_of(*t).into_iter().collect()),
            wasmparser::BlockType::FuncType(i) => self
                .info
                .types
                .get(*i as usize)
                .map(|f| (f.params().to_vec(), f.results().to_vec()))
                .unwrap_or_default(),
        }
    }

    /// Declares the externref-typed parameters of the builder's current block as
    /// needing stack maps (block parameters are new SSA values the translator does not
    /// declare; a reference merged at the end of a block lives in one).
    fn declare_block_params(builder: &mut FunctionBuilder, types: &[ValType]) {
        let Some(block) = builder.current_block() else {
            return;
        };
        let params = builder.func.dfg.block_params(block).to_vec();
        if params.len() != types.len() {
            return;
        }
        for (v, t) in params.into_iter().zip(types) {
            if *t == ValType::ExternRef {
                builder.declare_value_needs_stack_map(v);
            }
        }
    }

    /// Inlined fast path of "a reference enters wasm frames": link it into the store's
    /// root set unless it is null or already there (see `gc::VMExternRefSet`).
    fn enter_root_set(&mut self, builder: &mut FunctionBuilder, v: ir::Value) {
        use crate::gc::{VMExternData, IN_SET};
        use crate::runtime::vmcontext::VMStoreContext;
        let check = builder.create_block();
        let insert = builder.create_block();
        let done = builder.create_block();
        builder.set_cold_block(insert);
        builder.ins().brif(v, check, &[], done, &[]);
        builder.seal_block(check);
        builder.switch_to_block(check);
        let flags = builder.ins().load(
            types::I64,
            MemFlags::trusted(),
            v,
            VMExternData::FLAGS_OFFSET as i32,
        );
        let in_set = builder.ins().band_imm(flags, IN_SET as i64);
        builder.ins().brif(in_set, done, &[], insert, &[]);
        builder.seal_block(insert);
        builder.switch_to_block(insert);
        let vmctx = {
            let gv = self.vmctx_gv(builder.func);
            builder.ins().global_value(types::I64, gv)
        };
        let store = builder.ins().load(
            types::I64,
            MemFlags::trusted().with_readonly(),
            vmctx,
            VMOffsets::STORE as i32,
        );
        let head = builder.ins().load(
            types::I64,
            MemFlags::trusted(),
            store,
            VMStoreContext::EXTERNREF_SET_HEAD_OFFSET as i32,
        );
        builder.ins().store(
            MemFlags::trusted(),
            head,
            v,
            VMExternData::NEXT_OFFSET as i32,
        );
        let flags = builder.ins().bor_imm(flags, IN_SET as i64);
        builder.ins().store(
            MemFlags::trusted(),
            flags,
            v,
            VMExternData::FLAGS_OFFSET as i32,
        );
        builder.ins().store(
            MemFlags::trusted(),
            v,
            store,
            VMStoreContext::EXTERNREF_SET_HEAD_OFFSET as i32,
        );
        let len = builder.ins().load(
            types::I64,
            MemFlags::trusted(),
            store,
            VMStoreContext::EXTERNREF_SET_LEN_OFFSET as i32,
        );
        let len = builder.ins().iadd_imm(len, 1);
        builder.ins().store(
            MemFlags::trusted(),
            len,
            store,
            VMStoreContext::EXTERNREF_SET_LEN_OFFSET as i32,
        );
        // Over the threshold: collect now, from wasm, so that a long call that reads
        // many references out of tables or globals keeps the set bounded. `v` was
        // declared to need a stack map by the caller, so if it is used after this call
        // it is in the call's stack map (a root), like every other live reference.
        let threshold = builder.ins().load(
            types::I64,
            MemFlags::trusted(),
            store,
            VMStoreContext::GC_THRESHOLD_OFFSET as i32,
        );
        let over = builder.ins().icmp(
            ir::condcodes::IntCC::UnsignedGreaterThanOrEqual,
            len,
            threshold,
        );
        let collect = builder.create_block();
        builder.set_cold_block(collect);
        builder.ins().brif(over, collect, &[], done, &[]);
        builder.seal_block(collect);
        builder.switch_to_block(collect);
        let collector = self.libcall_ref(builder.func, Libcall::CollectGarbage);
        let target = builder.ins().func_addr(types::I64, collector);
        let mut pos = builder.cursor();
        self.call_libcall(&mut pos, Libcall::CallWithExitFrame, &[target]);
        builder.ins().jump(done, &[]);
        builder.seal_block(done);
        builder.switch_to_block(done);
    }

    fn vmctx_gv(&mut self, func: &mut ir::Function) -> ir::GlobalValue {
        *self
            .vmctx
            .get_or_insert_with(|| func.create_global_value(GlobalValueData::VMContext))
    }

    fn vmctx_val(&mut self, pos: &mut FuncCursor) -> ir::Value {
        let gv = self.vmctx_gv(pos.func);
        pos.ins().global_value(types::I64, gv)
    }

    /// A readonly pointer loaded from `vmctx + offset` (the vmctx's pointer fields never
    /// change after instantiation).
    fn vmctx_load_gv(&mut self, func: &mut ir::Function, offset: u32) -> ir::GlobalValue {
        let vmctx = self.vmctx_gv(func);
        func.create_global_value(GlobalValueData::Load {
            base: vmctx,
            offset: (offset as i32).into(),
            global_type: types::I64,
            flags: MemFlags::trusted().with_readonly(),
        })
    }

    fn table_def(&mut self, pos: &mut FuncCursor, table: TableIndex) -> ir::Value {
        let vmctx = self.vmctx_val(pos);
        pos.ins().load(
            types::I64,
            MemFlags::trusted().with_readonly(),
            vmctx,
            self.offsets.table(table.as_u32()) as i32,
        )
    }

    /// Loads the address of element `index` of `table`, trapping with
    /// `TableOutOfBounds` if it is out of range.
    fn table_elem_addr(
        &mut self,
        pos: &mut FuncCursor,
        table: TableIndex,
        index: ir::Value,
    ) -> ir::Value {
        let def = self.table_def(pos, table);
        let len = pos.ins().load(
            types::I32,
            MemFlags::trusted(),
            def,
            VMTableDefinition::LENGTH_OFFSET as i32,
        );
        let oob = pos
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, index, len);
        pos.ins().trapnz(oob, TrapCode::TableOutOfBounds);
        let base = pos.ins().load(
            types::I64,
            MemFlags::trusted(),
            def,
            VMTableDefinition::BASE_OFFSET as i32,
        );
        let index = pos.ins().uextend(types::I64, index);
        let offset = pos.ins().ishl_imm(index, 3);
        pos.ins().iadd(base, offset)
    }

    fn libcall_ref(&mut self, func: &mut ir::Function, lc: Libcall) -> ir::FuncRef {
        if let Some(r) = self.libcalls.get(&lc) {
            return *r;
        }
        let signature = func.import_signature(lc.signature());
        let name = func.declare_imported_user_function(UserExternalName {
            namespace: NS_LIBCALL,
            index: lc as u32,
        });
        let r = func.import_function(ExtFuncData {
            name: ExternalName::User(name),
            signature,
            colocated: false,
        });
        self.libcalls.insert(lc, r);
        r
    }

    /// Calls a libcall with the vmctx prepended; returns its results.
    fn call_libcall(
        &mut self,
        pos: &mut FuncCursor,
        lc: Libcall,
        args: &[ir::Value],
    ) -> Vec<ir::Value> {
        let r = self.libcall_ref(pos.func, lc);
        let vmctx = self.vmctx_val(pos);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(vmctx);
        all.extend_from_slice(args);
        let call = pos.ins().call(r, &all);
        pos.func.dfg.inst_results(call).to_vec()
    }

    /// Calls a libcall that returns a success flag and traps with `code` on failure.
    fn call_checked(
        &mut self,
        pos: &mut FuncCursor,
        lc: Libcall,
        args: &[ir::Value],
        code: TrapCode,
    ) {
        let ok = self.call_libcall(pos, lc, args)[0];
        pos.ins().trapz(ok, code);
    }

    fn i32_const(pos: &mut FuncCursor, v: u32) -> ir::Value {
        pos.ins().iconst(types::I32, i64::from(v))
    }

    /// An unsigned wasm operand (an address, length or page count) as an i64 libcall
    /// operand: an i32 is zero-extended.
    fn to_i64(pos: &mut FuncCursor, v: ir::Value) -> ir::Value {
        if pos.func.dfg.value_type(v) == types::I64 {
            v
        } else {
            pos.ins().uextend(types::I64, v)
        }
    }

    /// An i64 page count as memory `index`'s index type: truncated to i32 for a 32-bit
    /// memory (it is at most 65,536, or all ones for a failed grow, which becomes -1).
    fn to_index_type(&self, pos: &mut FuncCursor, index: MemoryIndex, v: ir::Value) -> ir::Value {
        if self.info.memories[index.index()].is_64 {
            v
        } else {
            pos.ins().ireduce(types::I32, v)
        }
    }

    /// Declares every externref result of `inst` (a call returning `results`) as needing
    /// a stack map: 0.112 leaves call results to the environment.
    fn declare_ref_results(builder: &mut FunctionBuilder, inst: ir::Inst, results: &[ValType]) {
        let values = builder.func.dfg.inst_results(inst).to_vec();
        for (v, ty) in values.into_iter().zip(results) {
            if *ty == ValType::ExternRef {
                builder.declare_value_needs_stack_map(v);
            }
        }
    }

    /// How to call function `callee_index` (a call or a tail call): a defined function
    /// directly, with this instance's vmctx as both hidden arguments; an import through
    /// the `VMFuncRef` copied into this vmctx, with its own vmctx as the callee's.
    fn direct_callee(
        &mut self,
        builder: &mut FunctionBuilder,
        callee_index: FuncIndex,
        callee: ir::FuncRef,
        call_args: &[ir::Value],
    ) -> Callee {
        let vmctx = {
            let gv = self.vmctx_gv(builder.func);
            builder.ins().global_value(types::I64, gv)
        };
        let mut args = Vec::with_capacity(call_args.len() + HIDDEN_PARAMS);
        if callee_index.as_u32() < self.info.num_imported_funcs {
            let off = self.offsets.func_ref(callee_index.as_u32()) as i32;
            let flags = MemFlags::trusted().with_readonly();
            let code = builder.ins().load(
                types::I64,
                flags,
                vmctx,
                off + VMFuncRef::WASM_CALL_OFFSET as i32,
            );
            let callee_vmctx = builder.ins().load(
                types::I64,
                flags,
                vmctx,
                off + VMFuncRef::VMCTX_OFFSET as i32,
            );
            args.push(callee_vmctx);
            args.push(vmctx);
            args.extend_from_slice(call_args);
            let sig = builder.func.dfg.ext_funcs[callee].signature;
            Callee::Indirect { sig, code, args }
        } else {
            args.push(vmctx);
            args.push(vmctx);
            args.extend_from_slice(call_args);
            Callee::Direct(args)
        }
    }

    /// The code and arguments of a call through element `index` of `table` with type
    /// `sig_index`: traps with `IndirectCallToNull` on a null element and
    /// `BadSignature` on a function of another type.
    fn table_callee(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        sig_index: TypeIndex,
        index: ir::Value,
        call_args: &[ir::Value],
    ) -> (ir::Value, Vec<ir::Value>) {
        let mut pos = builder.cursor();
        let addr = self.table_elem_addr(&mut pos, table_index, index);
        let func_ref = pos.ins().load(types::I64, MemFlags::trusted(), addr, 0);
        pos.ins().trapz(func_ref, TrapCode::IndirectCallToNull);
        let flags = MemFlags::trusted().with_readonly();
        let actual = pos.ins().load(
            types::I32,
            flags,
            func_ref,
            VMFuncRef::TYPE_ID_OFFSET as i32,
        );
        let vmctx = self.vmctx_val(&mut pos);
        let expected = pos.ins().load(
            types::I32,
            flags,
            vmctx,
            self.offsets.type_id(sig_index.as_u32()) as i32,
        );
        let mismatch = pos.ins().icmp(IntCC::NotEqual, actual, expected);
        pos.ins().trapnz(mismatch, TrapCode::BadSignature);
        let code = pos.ins().load(
            types::I64,
            flags,
            func_ref,
            VMFuncRef::WASM_CALL_OFFSET as i32,
        );
        let callee_vmctx =
            pos.ins()
                .load(types::I64, flags, func_ref, VMFuncRef::VMCTX_OFFSET as i32);
        let mut args = Vec::with_capacity(call_args.len() + HIDDEN_PARAMS);
        args.push(callee_vmctx);
        args.push(vmctx);
        args.extend_from_slice(call_args);
        (code, args)
    }
}

/// A call's target, as [`FuncEnv::direct_callee`] finds it.
enum Callee {
    /// A function of this module, called by name with these arguments.
    Direct(Vec<ir::Value>),
    /// An import, called through `code` with signature `sig`.
    Indirect {
        sig: ir::SigRef,
        code: ir::Value,
        args: Vec<ir::Value>,
    },
}

impl TypeConvert for FuncEnv<'_> {
    fn lookup_heap_type(&self, _index: wasmparser::UnpackedIndex) -> WasmHeapType {
        // Concrete heap types need the function-references proposal, which the validator
        // rejects before translation; `Func` keeps this total without a panic.
        WasmHeapType::Func
    }

    fn lookup_type_index(
        &self,
        index: wasmparser::UnpackedIndex,
    ) -> cranelift_wasm::EngineOrModuleTypeIndex {
        let i = index.as_module_index().unwrap_or(0);
        cranelift_wasm::EngineOrModuleTypeIndex::Module(
            cranelift_wasm::ModuleInternedTypeIndex::from_u32(i),
        )
    }
}

impl TargetEnvironment for FuncEnv<'_> {
    fn target_config(&self) -> TargetFrontendConfig {
        self.isa.frontend_config()
    }

    fn heap_access_spectre_mitigation(&self) -> bool {
        false
    }

    fn proof_carrying_code(&self) -> bool {
        false
    }

    fn reference_type(&self, ty: WasmHeapType) -> (ir::Type, bool) {
        let needs_stack_map = matches!(ty, WasmHeapType::Extern | WasmHeapType::NoExtern);
        (types::I64, needs_stack_map)
    }
}

impl FuncEnvironment for FuncEnv<'_> {
    fn is_wasm_parameter(&self, _signature: &Signature, index: usize) -> bool {
        index >= HIDDEN_PARAMS
    }

    fn param_needs_stack_map(&self, _signature: &Signature, index: usize) -> bool {
        index
            .checked_sub(HIDDEN_PARAMS)
            .and_then(|i| self.func_type.params().get(i))
            == Some(&ValType::ExternRef)
    }

    fn sig_ref_result_needs_stack_map(&self, sig_ref: ir::SigRef, index: usize) -> bool {
        self.indirect_sigs
            .get(&sig_ref)
            .and_then(|t| self.info.types[*t as usize].results().get(index))
            == Some(&ValType::ExternRef)
    }

    fn func_ref_result_needs_stack_map(
        &self,
        func: &ir::Function,
        func_ref: ir::FuncRef,
        index: usize,
    ) -> bool {
        let sig = func.dfg.ext_funcs[func_ref].signature;
        self.sig_ref_result_needs_stack_map(sig, index)
    }

    fn translate_loop_header(&mut self, builder: &mut FunctionBuilder) -> WasmResult<()> {
        self.check_epoch(builder);
        Ok(())
    }

    fn before_translate_function(
        &mut self,
        builder: &mut FunctionBuilder,
        _state: &FuncTranslationState,
    ) -> WasmResult<()> {
        // The prologue of every function compares SP with the store's stack limit.
        let store = self.vmctx_load_gv(builder.func, VMOffsets::STORE);
        let limit = builder.func.create_global_value(GlobalValueData::Load {
            base: store,
            offset: (crate::runtime::vmcontext::VMStoreContext::STACK_LIMIT_OFFSET as i32).into(),
            global_type: types::I64,
            flags: MemFlags::trusted(),
        });
        builder.func.stack_limit = Some(limit);
        if self.options.epoch_interruption {
            let vmctx = self.vmctx_gv(builder.func);
            let vmctx = builder.ins().global_value(types::I64, vmctx);
            let readonly = MemFlags::trusted().with_readonly();
            let store = builder
                .ins()
                .load(types::I64, readonly, vmctx, VMOffsets::STORE as i32);
            let counter = builder.ins().load(
                types::I64,
                readonly,
                store,
                crate::runtime::vmcontext::VMStoreContext::EPOCH_PTR_OFFSET as i32,
            );
            let deadline = Variable::new(self.num_locals as usize);
            builder.declare_var(deadline, types::I64);
            self.epoch = Some((store, counter, deadline));
            self.reload_epoch_deadline(builder);
            self.check_epoch(builder);
        }
        self.control.clear();
        self.control.push((
            ControlKind::Function,
            Vec::new(),
            self.func_type.results().to_vec(),
        ));
        Ok(())
    }

    fn before_translate_operator(
        &mut self,
        op: &wasmparser::Operator,
        _builder: &mut FunctionBuilder,
        _state: &FuncTranslationState,
    ) -> WasmResult<()> {
        use wasmparser::Operator as O;
        match op {
            O::Block { blockty } => {
                let (p, r) = self.block_type(blockty);
                self.control.push((ControlKind::Block, p, r));
            }
            O::Loop { blockty } => {
                let (p, r) = self.block_type(blockty);
                self.control.push((ControlKind::Loop, p, r));
            }
            O::If { blockty } => {
                let (p, r) = self.block_type(blockty);
                self.control.push((ControlKind::If, p, r));
            }
            _ => {}
        }
        Ok(())
    }

    fn after_translate_operator(
        &mut self,
        op: &wasmparser::Operator,
        builder: &mut FunctionBuilder,
        state: &FuncTranslationState,
    ) -> WasmResult<()> {
        use wasmparser::Operator as O;
        match op {
            O::Loop { .. } => {
                if let Some((_, params, _)) = self.control.last() {
                    let params = params.clone();
                    Self::declare_block_params(builder, &params);
                }
                if state.reachable() {
                    self.declare_merged_ref_locals(builder);
                }
            }
            O::Else => {
                if let Some((_, params, _)) = self.control.last() {
                    let params = params.clone();
                    Self::declare_block_params(builder, &params);
                }
                if state.reachable() {
                    self.declare_merged_ref_locals(builder);
                }
            }
            O::End => {
                if let Some((kind, _, results)) = self.control.pop() {
                    if kind != ControlKind::Function {
                        Self::declare_block_params(builder, &results);
                        if state.reachable() {
                            self.declare_merged_ref_locals(builder);
                        }
                    }
                }
            }
            // cranelift-wasm does not declare the result of a typed `select`.
            O::TypedSelect { ty }
                if crate::compile::module_info::val_type_of(*ty) == Some(ValType::ExternRef) =>
            {
                if let Some(inst) = builder
                    .current_block()
                    .and_then(|b| builder.func.layout.last_inst(b))
                {
                    if let Some(v) = builder.func.dfg.inst_results(inst).first().copied() {
                        builder.declare_value_needs_stack_map(v);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn make_global(
        &mut self,
        func: &mut ir::Function,
        index: GlobalIndex,
    ) -> WasmResult<GlobalVariable> {
        let ty = self.info.globals[index.index()].content;
        if ty == ValType::ExternRef {
            return Ok(GlobalVariable::Custom);
        }
        let gv = self.vmctx_load_gv(func, self.offsets.global(index.as_u32()));
        Ok(GlobalVariable::Memory {
            gv,
            offset: 0.into(),
            ty: clif_type(ty),
        })
    }

    fn heaps(&self) -> &PrimaryMap<Heap, HeapData> {
        &self.heaps
    }

    fn make_heap(&mut self, func: &mut ir::Function, index: MemoryIndex) -> WasmResult<Heap> {
        let mem = self.info.memories[index.index()];
        let def = self.vmctx_load_gv(func, self.offsets.memory(index.as_u32()));
        // The base never moves: every memory reserves bound + guard when created.
        let base = func.create_global_value(GlobalValueData::Load {
            base: def,
            offset: (VMMemoryDefinition::BASE_OFFSET as i32).into(),
            global_type: types::I64,
            flags: MemFlags::trusted().with_readonly(),
        });
        // What `memory.size` reads, and the bound of a 64-bit memory's accesses (a
        // 32-bit memory's bound is its guard pages): it changes with `memory.grow`,
        // so it is reloaded after calls.
        let length = func.create_global_value(GlobalValueData::Load {
            base: def,
            offset: (VMMemoryDefinition::LENGTH_OFFSET as i32).into(),
            global_type: types::I64,
            flags: MemFlags::trusted(),
        });
        let heap = if mem.is_64 {
            // A 64-bit memory's size is capped by what framewalk reserves, which also
            // keeps these byte counts from overflowing (the type allows 2^48 pages).
            let bytes = |pages: u64| pages.min(MEMORY64_MAX_PAGES) << 16;
            self.heaps.push(HeapData {
                base,
                min_size: bytes(mem.limits.min),
                max_size: Some(bytes(mem.limits.max.unwrap_or(MEMORY64_MAX_PAGES))),
                offset_guard_size: MEMORY_GUARD,
                style: HeapStyle::Dynamic { bound_gv: length },
                index_type: types::I64,
                memory_type: None,
                page_size_log2: 16,
            })
        } else {
            let bytes = |pages: u64| pages.min(MEMORY32_MAX_PAGES) << 16;
            self.heaps.push(HeapData {
                base,
                min_size: bytes(mem.limits.min),
                max_size: Some(bytes(mem.limits.max.unwrap_or(MEMORY32_MAX_PAGES))),
                offset_guard_size: MEMORY_GUARD,
                style: HeapStyle::Static {
                    bound: MEMORY_BOUND,
                },
                index_type: types::I32,
                memory_type: None,
                page_size_log2: 16,
            })
        };
        self.memory_lengths[heap] = Some(length);
        Ok(heap)
    }

    fn make_indirect_sig(
        &mut self,
        func: &mut ir::Function,
        index: TypeIndex,
    ) -> WasmResult<ir::SigRef> {
        let ty = &self.info.types[index.index()];
        let sig = func.import_signature(wasm_signature(ty));
        self.indirect_sigs.insert(sig, index.as_u32());
        Ok(sig)
    }

    fn make_direct_func(
        &mut self,
        func: &mut ir::Function,
        index: FuncIndex,
    ) -> WasmResult<ir::FuncRef> {
        let ty = self.info.functions[index.index()];
        let signature = func.import_signature(wasm_signature(&self.info.types[ty as usize]));
        self.indirect_sigs.insert(signature, ty);
        let name = func.declare_imported_user_function(UserExternalName {
            namespace: NS_WASM_FUNC,
            index: index.as_u32(),
        });
        Ok(func.import_function(ExtFuncData {
            name: ExternalName::User(name),
            signature,
            colocated: true,
        }))
    }

    fn translate_call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee_index: FuncIndex,
        callee: ir::FuncRef,
        call_args: &[ir::Value],
    ) -> WasmResult<ir::Inst> {
        let inst = match self.direct_callee(builder, callee_index, callee, call_args) {
            Callee::Direct(args) => builder.ins().call(callee, &args),
            Callee::Indirect { sig, code, args } => builder.ins().call_indirect(sig, code, &args),
        };
        let results = self
            .info
            .func_type(callee_index.as_u32())
            .results()
            .to_vec();
        Self::declare_ref_results(builder, inst, &results);
        self.reload_epoch_deadline(builder);
        Ok(inst)
    }

    fn translate_call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        sig_index: TypeIndex,
        sig_ref: ir::SigRef,
        callee: ir::Value,
        call_args: &[ir::Value],
    ) -> WasmResult<Option<ir::Inst>> {
        let (code, args) = self.table_callee(builder, table_index, sig_index, callee, call_args);
        let inst = builder.ins().call_indirect(sig_ref, code, &args);
        let results = self.info.types[sig_index.index()].results().to_vec();
        Self::declare_ref_results(builder, inst, &results);
        self.reload_epoch_deadline(builder);
        Ok(Some(inst))
    }

    fn translate_return_call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        sig_index: TypeIndex,
        sig_ref: ir::SigRef,
        callee: ir::Value,
        call_args: &[ir::Value],
    ) -> WasmResult<()> {
        let (code, args) = self.table_callee(builder, table_index, sig_index, callee, call_args);
        builder.ins().return_call_indirect(sig_ref, code, &args);
        Ok(())
    }

    fn translate_return_call_ref(
        &mut self,
        _builder: &mut FunctionBuilder,
        _sig_ref: ir::SigRef,
        _callee: ir::Value,
        _call_args: &[ir::Value],
    ) -> WasmResult<()> {
        // Only reachable with the function-references proposal, which the validator
        // refuses.
        Err(wasm_unsupported!("function references"))
    }

    fn translate_return_call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee_index: FuncIndex,
        callee: ir::FuncRef,
        call_args: &[ir::Value],
    ) -> WasmResult<()> {
        match self.direct_callee(builder, callee_index, callee, call_args) {
            Callee::Direct(args) => builder.ins().return_call(callee, &args),
            Callee::Indirect { sig, code, args } => {
                builder.ins().return_call_indirect(sig, code, &args)
            }
        };
        Ok(())
    }

    fn translate_call_ref(
        &mut self,
        _builder: &mut FunctionBuilder,
        _sig_ref: ir::SigRef,
        _callee: ir::Value,
        _call_args: &[ir::Value],
    ) -> WasmResult<ir::Inst> {
        Err(wasm_unsupported!("typed function references"))
    }

    fn translate_memory_grow(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        val: ir::Value,
    ) -> WasmResult<ir::Value> {
        let mem = Self::i32_const(&mut pos, index.as_u32());
        let delta = Self::to_i64(&mut pos, val);
        let old = self.call_libcall(&mut pos, Libcall::MemoryGrow, &[mem, delta])[0];
        Ok(self.to_index_type(&mut pos, index, old))
    }

    fn translate_memory_size(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        heap: Heap,
    ) -> WasmResult<ir::Value> {
        let Some(length) = self.memory_lengths[heap] else {
            return Err(wasm_unsupported!("memory.size of a heap made elsewhere"));
        };
        let len = pos.ins().global_value(types::I64, length);
        let pages = pos.ins().ushr_imm(len, 16);
        Ok(self.to_index_type(&mut pos, index, pages))
    }

    fn translate_memory_copy(
        &mut self,
        mut pos: FuncCursor,
        src_index: MemoryIndex,
        _src_heap: Heap,
        dst_index: MemoryIndex,
        _dst_heap: Heap,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let d = Self::i32_const(&mut pos, dst_index.as_u32());
        let s = Self::i32_const(&mut pos, src_index.as_u32());
        // Each operand has its memory's index type; `len` is an i32 unless both are
        // 64-bit. All are unsigned.
        let [dst, src, len] = [dst, src, len].map(|v| Self::to_i64(&mut pos, v));
        self.call_checked(
            &mut pos,
            Libcall::MemoryCopy,
            &[d, s, dst, src, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_memory_fill(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        dst: ir::Value,
        val: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let m = Self::i32_const(&mut pos, index.as_u32());
        let [dst, len] = [dst, len].map(|v| Self::to_i64(&mut pos, v));
        self.call_checked(
            &mut pos,
            Libcall::MemoryFill,
            &[m, dst, val, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_memory_init(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        seg_index: u32,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let m = Self::i32_const(&mut pos, index.as_u32());
        let s = Self::i32_const(&mut pos, seg_index);
        // `dst` has the memory's index type; `src` and `len` (in the segment) are i32.
        let [dst, src, len] = [dst, src, len].map(|v| Self::to_i64(&mut pos, v));
        self.call_checked(
            &mut pos,
            Libcall::MemoryInit,
            &[m, s, dst, src, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_data_drop(&mut self, mut pos: FuncCursor, seg_index: u32) -> WasmResult<()> {
        let s = Self::i32_const(&mut pos, seg_index);
        self.call_libcall(&mut pos, Libcall::DataDrop, &[s]);
        Ok(())
    }

    fn translate_table_size(
        &mut self,
        mut pos: FuncCursor,
        index: TableIndex,
    ) -> WasmResult<ir::Value> {
        let def = self.table_def(&mut pos, index);
        Ok(pos.ins().load(
            types::I32,
            MemFlags::trusted(),
            def,
            VMTableDefinition::LENGTH_OFFSET as i32,
        ))
    }

    fn translate_table_grow(
        &mut self,
        mut pos: FuncCursor,
        table_index: TableIndex,
        delta: ir::Value,
        init_value: ir::Value,
    ) -> WasmResult<ir::Value> {
        let t = Self::i32_const(&mut pos, table_index.as_u32());
        Ok(self.call_libcall(&mut pos, Libcall::TableGrow, &[t, delta, init_value])[0])
    }

    fn translate_table_get(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        index: ir::Value,
    ) -> WasmResult<ir::Value> {
        let mut pos = builder.cursor();
        let addr = self.table_elem_addr(&mut pos, table_index, index);
        let v = pos.ins().load(types::I64, MemFlags::trusted(), addr, 0);
        if self.info.tables[table_index.index()].element == ValType::ExternRef {
            builder.declare_value_needs_stack_map(v);
            self.enter_root_set(builder, v);
        }
        Ok(v)
    }

    fn translate_table_set(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        value: ir::Value,
        index: ir::Value,
    ) -> WasmResult<()> {
        let mut pos = builder.cursor();
        if self.info.tables[table_index.index()].element == ValType::ExternRef {
            // Counts move from the old value to the new one: done by the runtime.
            let t = Self::i32_const(&mut pos, table_index.as_u32());
            self.call_checked(
                &mut pos,
                Libcall::TableSetExternref,
                &[t, index, value],
                TrapCode::TableOutOfBounds,
            );
            return Ok(());
        }
        let addr = self.table_elem_addr(&mut pos, table_index, index);
        pos.ins().store(MemFlags::trusted(), value, addr, 0);
        Ok(())
    }

    fn translate_table_copy(
        &mut self,
        mut pos: FuncCursor,
        dst_table_index: TableIndex,
        src_table_index: TableIndex,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let d = Self::i32_const(&mut pos, dst_table_index.as_u32());
        let s = Self::i32_const(&mut pos, src_table_index.as_u32());
        self.call_checked(
            &mut pos,
            Libcall::TableCopy,
            &[d, s, dst, src, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_table_fill(
        &mut self,
        mut pos: FuncCursor,
        table_index: TableIndex,
        dst: ir::Value,
        val: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let t = Self::i32_const(&mut pos, table_index.as_u32());
        self.call_checked(
            &mut pos,
            Libcall::TableFill,
            &[t, dst, val, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_table_init(
        &mut self,
        mut pos: FuncCursor,
        seg_index: u32,
        table_index: TableIndex,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        let t = Self::i32_const(&mut pos, table_index.as_u32());
        let s = Self::i32_const(&mut pos, seg_index);
        self.call_checked(
            &mut pos,
            Libcall::TableInit,
            &[t, s, dst, src, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_elem_drop(&mut self, mut pos: FuncCursor, seg_index: u32) -> WasmResult<()> {
        let s = Self::i32_const(&mut pos, seg_index);
        self.call_libcall(&mut pos, Libcall::ElemDrop, &[s]);
        Ok(())
    }

    fn translate_ref_null(
        &mut self,
        mut pos: FuncCursor,
        _ty: WasmHeapType,
    ) -> WasmResult<ir::Value> {
        Ok(pos.ins().iconst(types::I64, 0))
    }

    fn translate_ref_is_null(
        &mut self,
        mut pos: FuncCursor,
        value: ir::Value,
    ) -> WasmResult<ir::Value> {
        let is_null = pos.ins().icmp_imm(IntCC::Equal, value, 0);
        Ok(pos.ins().uextend(types::I32, is_null))
    }

    fn translate_ref_func(
        &mut self,
        mut pos: FuncCursor,
        func_index: FuncIndex,
    ) -> WasmResult<ir::Value> {
        let vmctx = self.vmctx_val(&mut pos);
        Ok(pos
            .ins()
            .iadd_imm(vmctx, i64::from(self.offsets.func_ref(func_index.as_u32()))))
    }

    fn translate_custom_global_get(
        &mut self,
        builder: &mut FunctionBuilder,
        global_index: GlobalIndex,
    ) -> WasmResult<ir::Value> {
        let mut pos = builder.cursor();
        let vmctx = self.vmctx_val(&mut pos);
        let def = pos.ins().load(
            types::I64,
            MemFlags::trusted().with_readonly(),
            vmctx,
            self.offsets.global(global_index.as_u32()) as i32,
        );
        let v = pos.ins().load(types::I64, MemFlags::trusted(), def, 0);
        builder.declare_value_needs_stack_map(v);
        self.enter_root_set(builder, v);
        Ok(v)
    }

    fn translate_custom_global_set(
        &mut self,
        builder: &mut FunctionBuilder,
        global_index: GlobalIndex,
        val: ir::Value,
    ) -> WasmResult<()> {
        let mut pos = builder.cursor();
        let g = Self::i32_const(&mut pos, global_index.as_u32());
        self.call_libcall(&mut pos, Libcall::GlobalSetExternref, &[g, val]);
        Ok(())
    }

    fn translate_atomic_wait(
        &mut self,
        _pos: FuncCursor,
        _index: MemoryIndex,
        _heap: Heap,
        _addr: ir::Value,
        _expected: ir::Value,
        _timeout: ir::Value,
    ) -> WasmResult<ir::Value> {
        Err(wasm_unsupported!("threads"))
    }

    fn translate_atomic_notify(
        &mut self,
        _pos: FuncCursor,
        _index: MemoryIndex,
        _heap: Heap,
        _addr: ir::Value,
        _count: ir::Value,
    ) -> WasmResult<ir::Value> {
        Err(wasm_unsupported!("threads"))
    }

    fn translate_ref_i31(&mut self, _pos: FuncCursor, _val: ir::Value) -> WasmResult<ir::Value> {
        Err(wasm_unsupported!("GC"))
    }

    fn translate_i31_get_s(
        &mut self,
        _pos: FuncCursor,
        _i31ref: ir::Value,
    ) -> WasmResult<ir::Value> {
        Err(wasm_unsupported!("GC"))
    }

    fn translate_i31_get_u(
        &mut self,
        _pos: FuncCursor,
        _i31ref: ir::Value,
    ) -> WasmResult<ir::Value> {
        Err(wasm_unsupported!("GC"))
    }
}

#[cfg(test)]
mod stack_arg_tests {
    use super::{stack_arg_bytes, wasm_signature};
    use crate::types::{FuncType, ValType};
    use cranelift_codegen::ir::{Function, InstBuilder, UserFuncName};
    use cranelift_codegen::Context;
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

    /// The bytes of stack arguments a function of type `ty` pops, as Cranelift
    /// compiles it: a `tail`-convention callee returns with `ret imm16` (`c2 lo hi`)
    /// when it has stack arguments, a plain `ret` (`c3`) otherwise.
    fn popped_by_cranelift(ty: &FuncType) -> usize {
        let isa = crate::compile::host_isa().expect("host ISA");
        let mut func = Function::with_name_signature(UserFuncName::user(0, 0), wasm_signature(ty));
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let block = b.create_block();
        b.append_block_params_for_function_params(block);
        b.switch_to_block(block);
        b.seal_block(block);
        b.ins().return_(&[]);
        b.finalize();
        let mut ctx = Context::for_function(func);
        let code = ctx
            .compile(&*isa, &mut Default::default())
            .expect("compiles")
            .code_buffer()
            .to_vec();
        match code.as_slice() {
            [.., 0xc2, lo, hi] => usize::from(u16::from_le_bytes([*lo, *hi])),
            [.., 0xc3] => 0,
            other => panic!("no ret at the end of {other:02x?}"),
        }
    }

    /// `stack_arg_bytes` agrees with Cranelift for register-only types, integers and
    /// floats past their registers, and `v128`s (16 bytes, 16-aligned) mixed with
    /// both.
    #[test]
    fn stack_argument_bytes_match_cranelift() {
        use ValType::*;
        let types: Vec<Vec<ValType>> = vec![
            vec![],
            vec![I32; 4],
            vec![I32; 5],
            vec![I64; 7],
            vec![F64; 8],
            vec![F64; 9],
            vec![V128; 8],
            vec![V128; 9],
            vec![V128; 10],
            [vec![F32; 8], vec![V128, F32, V128]].concat(),
            [vec![F32; 9], vec![V128]].concat(),
            [vec![I32; 5], vec![F64; 8], vec![V128, I64, V128]].concat(),
            [vec![V128; 8], vec![F64, V128, F32, F32, V128]].concat(),
            [vec![ExternRef; 5], vec![V128; 9], vec![FuncRef]].concat(),
        ];
        for params in types {
            let ty = FuncType::new(params, []);
            assert_eq!(stack_arg_bytes(&ty), popped_by_cranelift(&ty), "{ty}");
        }
    }
}
