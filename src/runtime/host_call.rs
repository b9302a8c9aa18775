//! How wasm calls a host function, and how the host calls one.
//!
//! Every host function has a [`HostFuncContext`]: its closure, its store, and three
//! entry points.
//!
//! - **From wasm**, `VMFuncRef.wasm_call` is `arch::framewalk_wasm_to_host` for every
//!   host function. It records the exit in the caller's store's newest activation
//!   (`exit_fp`, `exit_sp`: the calling wasm frame, see `arch/x86_64/exit.rs`) and jumps
//!   to the context's `wasm_target`, with the wasm arguments still in their registers.
//!   That target is one of two things:
//!   - a **direct entry** ([`WasmTuple::wasm_entry`]): a Rust function with the same
//!     signature as the wasm import, generic over the closure, which puts the
//!     arguments in a small array on its own stack, runs the closure and returns the
//!     result in the return register. Used by `Func::wrap` when every parameter fits
//!     in an argument register and there is at most one result: the common case, and
//!     one call level (wasm → Rust) instead of two;
//!   - otherwise the engine's **exit trampoline** for the type (Cranelift code,
//!     `compile::trampoline`), which spills the arguments to an array and calls
//!     `array_call`.
//! - **From the host** (`Func::call`, a host start function), `array_call` is
//!   [`host_array_call`], with the values in an array and no exit involved.
//!
//! Invariants:
//! - the exit is recorded before any host code runs and cleared (`exit_sp = 0`) only
//!   after the closure returned successfully, right before control returns to wasm; a
//!   failed call never returns to wasm (it leaves through `entry::raise`);
//! - the closure runs inside `catch_unwind`: no panic unwinds into wasm frames;
//! - `wasm_target`'s signature is exactly the wasm signature of the function's type
//!   (`compile::environ::wasm_signature`, Cranelift's `tail` convention):
//!   `WasmTuple::wasm_entry` gives a direct entry only for types whose every parameter
//!   goes in a register and with at most one result, where `tail` and System V agree, so
//!   a Rust `extern "C"` function with the [`AbiValue`] types takes them from the same
//!   registers and returns in the same one. (A `tail` callee pops stack arguments and
//!   returns several results in more registers than System V: the exit trampoline,
//!   Cranelift code of the `tail` convention, serves every other type.)

use super::store::{Caller, StoreInner, StoreOpaque};
use super::values::WasmTuple;
use super::vmcontext::{ArrayCallFn, VMFuncRef, VMOffsets, VMStoreContext, ValRaw};
use crate::compile::trampoline::{ARRAY_CALL_FROM_WASM, HOST_CTX_ARRAY_CALL_OFFSET};
use crate::trap::HostError;
use crate::unwind::Activation;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What every host function is lowered to: a closure over the raw value array.
pub trait HostClosure<T>:
    Fn(Caller<'_, T>, &mut [ValRaw]) -> Result<(), HostError> + Send + Sync + 'static
{
}

impl<T, F> HostClosure<T> for F where
    F: Fn(Caller<'_, T>, &mut [ValRaw]) -> Result<(), HostError> + Send + Sync + 'static
{
}

/// A host function's context: what `callee_vmctx` points at when wasm calls it.
///
/// Generic over the closure type `F`, so that each host function gets its own entry
/// points with the closure inlined.
#[repr(C)]
pub(crate) struct HostFuncContext<T: 'static, F> {
    pub(crate) magic: u32,
    pub(crate) _pad: u32,
    /// At `HOST_CTX_ARRAY_CALL_OFFSET`: [`host_array_call`], read by exit trampolines.
    pub(crate) array_call: ArrayCallFn,
    /// At `arch::HOST_CTX_WASM_TARGET_OFFSET`: where `framewalk_wasm_to_host` jumps (a
    /// direct entry or the type's exit trampoline).
    pub(crate) wasm_target: *const u8,
    pub(crate) func_ref: VMFuncRef,
    pub(crate) store: *mut StoreInner<T>,
    pub(crate) closure: F,
}

const _: () = {
    assert!(
        std::mem::offset_of!(HostFuncContext<(), fn()>, array_call)
            == HOST_CTX_ARRAY_CALL_OFFSET as usize
    );
    assert!(
        std::mem::offset_of!(HostFuncContext<(), fn()>, wasm_target)
            == crate::arch::HOST_CTX_WASM_TARGET_OFFSET
    );
};

/// Frees a `HostFuncContext<T, F>`.
///
/// # Safety
/// `ptr` must come from `Box::into_raw(Box<HostFuncContext<T, F>>)` and not be used
/// after.
pub(crate) unsafe fn drop_host_ctx<T: 'static, F>(ptr: *mut u8) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(ptr as *mut HostFuncContext<T, F>) });
}

/// The array-convention entry point of every host function.
///
/// Returns whether the host function succeeded. Called from wasm (`len` carries
/// [`ARRAY_CALL_FROM_WASM`]: by an exit trampoline or a direct entry, after
/// `framewalk_wasm_to_host` recorded the exit), a success clears the exit and a failure
/// does not return: it leaves through [`raise`](super::entry::raise), which resumes at
/// the activation's entry, abandoning this frame (it owns nothing by then).
///
/// # Safety
/// `callee_vmctx` must point to a live `HostFuncContext<T, F>` whose store is live, and
/// `values` to `len` writable slots; generated code and `invoke` guarantee both.
/// With [`ARRAY_CALL_FROM_WASM`], `caller_vmctx` must be the calling wasm instance's
/// and its store's current activation must have its exit recorded.
pub(crate) unsafe extern "C" fn host_array_call<T: 'static, F: HostClosure<T>>(
    callee_vmctx: *mut u8,
    caller_vmctx: *mut u8,
    values: *mut ValRaw,
    len: usize,
) -> bool {
    let from_wasm = len as u64 & ARRAY_CALL_FROM_WASM != 0;
    let len = (len as u64 & !ARRAY_CALL_FROM_WASM) as usize;
    // SAFETY: per this function's contract.
    let ctx = unsafe { &*(callee_vmctx as *const HostFuncContext<T, F>) };
    debug_assert_eq!(
        ctx.magic,
        super::vmcontext::HOST_CTX_MAGIC,
        "host context magic broken"
    );
    // SAFETY: the store outlives its host functions; wasm runs only inside a call that
    // lent the store, so this is the only live access path to it.
    let store = unsafe { &mut *ctx.store };
    // SAFETY: per this function's contract.
    let values = unsafe { std::slice::from_raw_parts_mut(values, len) };
    let store_ptr: *mut StoreInner<T> = store;
    let result = catch_unwind(AssertUnwindSafe(|| {
        (ctx.closure)(
            Caller {
                store,
                caller_vmctx,
            },
            values,
        )
    }));
    if matches!(result, Ok(Ok(()))) {
        // `Ok(Ok(()))` owns nothing. Forgetting it, rather than dropping it, keeps the
        // drop glue of the whole `Result` (a call, when it is not inlined) off the
        // fast path.
        std::mem::forget(result);
        if from_wasm {
            // SAFETY: per this function's contract (a call from wasm).
            unsafe { end_exit(caller_vmctx) };
        }
        return true;
    }
    // SAFETY: the closure's borrow of the store ended with the call; the raise is as
    // this function's contract allows, and nothing in this frame needs dropping.
    unsafe {
        host_call_failed(
            &mut (*store_ptr).opaque,
            result,
            from_wasm.then_some(caller_vmctx),
        )
    }
}

/// Marks the exit recorded for a call from wasm as over: control is about to return to
/// the wasm caller, so a walk must no longer start from it.
///
/// # Safety
/// `caller_vmctx` must be a live instance vmctx whose store has an activation on this
/// thread: the one that made the call.
#[inline(always)]
unsafe fn end_exit(caller_vmctx: *mut u8) {
    // SAFETY: per the contract, the vmctx holds its store's context pointer, whose
    // newest activation is the caller's (a nested call it made has been popped).
    unsafe {
        let store_ctx =
            *(caller_vmctx.add(VMOffsets::STORE as usize) as *const *const VMStoreContext);
        let head = (*store_ctx).activation_head as *mut Activation;
        (*head).exit_sp = 0;
    }
}

/// Leaves a failed host call's error or panic in the store for `raise`/`invoke`, then,
/// for a call from wasm (`raise_from` = the caller's vmctx), leaves through `raise`.
/// Out of line, so the hot path of [`host_array_call`] saves no registers for it.
///
/// # Safety
/// With `raise_from`, as [`raise`](super::entry::raise) requires: the caller's store's
/// current activation has its exit recorded, and the frames up to it own nothing.
#[cold]
#[inline(never)]
unsafe fn host_call_failed(
    store: &mut StoreOpaque,
    failed: std::thread::Result<Result<(), HostError>>,
    raise_from: Option<*mut u8>,
) -> bool {
    match failed {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => store.pending_error = Some(e),
        Err(panic) => store.pending_panic = Some(panic),
    }
    if let Some(caller_vmctx) = raise_from {
        // SAFETY: per this function's contract.
        unsafe { super::entry::raise(caller_vmctx) }
    }
    false
}

/// How one wasm value travels in a register of the wasm calling convention: `i32`
/// (an integer register, upper half unspecified), `i64` (integers and references),
/// `f32`, `f64` (vector registers). A direct entry takes its parameters as these types.
pub trait AbiValue: Copy {
    /// The value in its array slot.
    fn to_raw(self) -> ValRaw;
    /// The value from its array slot.
    fn from_raw(raw: ValRaw) -> Self;
}

impl AbiValue for i32 {
    fn to_raw(self) -> ValRaw {
        ValRaw::from_u64(u64::from(self as u32))
    }
    fn from_raw(raw: ValRaw) -> Self {
        raw.0 as u32 as i32
    }
}

impl AbiValue for i64 {
    fn to_raw(self) -> ValRaw {
        ValRaw::from_u64(self as u64)
    }
    fn from_raw(raw: ValRaw) -> Self {
        raw.0 as i64
    }
}

impl AbiValue for f32 {
    fn to_raw(self) -> ValRaw {
        ValRaw::from_u64(u64::from(self.to_bits()))
    }
    fn from_raw(raw: ValRaw) -> Self {
        f32::from_bits(raw.0 as u32)
    }
}

impl AbiValue for f64 {
    fn to_raw(self) -> ValRaw {
        ValRaw::from_u64(self.to_bits())
    }
    fn from_raw(raw: ValRaw) -> Self {
        f64::from_bits(raw.u64())
    }
}

/// Only to complete [`WasmTy`](super::values::WasmTy) for `V128`: no direct entry takes
/// or returns a `v128` (see [`direct_entry_if_fits`]), so no register carries one.
impl AbiValue for super::values::V128 {
    fn to_raw(self) -> ValRaw {
        ValRaw(self.0)
    }
    fn from_raw(raw: ValRaw) -> Self {
        super::values::V128(raw.0)
    }
}

/// What a direct entry returns: nothing, or one [`AbiValue`] read from the first slot.
pub trait AbiRet {
    /// The return value, from the slots the closure wrote its results to.
    fn from_results(values: &[ValRaw]) -> Self;
}

impl AbiRet for () {
    fn from_results(_: &[ValRaw]) {}
}

impl<A: AbiValue> AbiRet for A {
    fn from_results(values: &[ValRaw]) -> Self {
        A::from_raw(values[0])
    }
}

/// Picks the direct entry of a host function from its closure type `F`.
pub(crate) trait DirectEntry {
    /// The direct entry for closure `F`, or `None` (use the exit trampoline).
    fn entry<T: 'static, F: HostClosure<T>>() -> Option<*const u8>;
}

/// No direct entry: `Func::new`, whose closure takes dynamically typed values.
pub(crate) struct NoDirectEntry;

impl DirectEntry for NoDirectEntry {
    fn entry<T: 'static, F: HostClosure<T>>() -> Option<*const u8> {
        None
    }
}

/// The direct entry for parameters `P` and results `R`, if they fit
/// ([`WasmTuple::wasm_entry`]): `Func::wrap`.
pub(crate) struct TypedEntry<P, R>(std::marker::PhantomData<fn(P) -> R>);

impl<P: WasmTuple, R: WasmTuple> DirectEntry for TypedEntry<P, R> {
    fn entry<T: 'static, F: HostClosure<T>>() -> Option<*const u8> {
        P::wasm_entry::<T, F, R>()
    }
}

/// `entry` if a host function with parameters `P` and results `R` can be called
/// directly with the wasm calling convention: at most one result, no `v128` (the
/// direct entries move 8-byte values), and every parameter in an argument register
/// after the two vmctx arguments (the same registers a typed call fills,
/// `arch::RegisterArgs`).
pub(crate) fn direct_entry_if_fits<P: WasmTuple, R: WasmTuple>(
    entry: *const u8,
) -> Option<*const u8> {
    (P::FIT_IN_REGISTERS && R::LEN <= 1 && !R::HAS_V128).then_some(entry)
}

/// Defines the direct entry for each arity: `name<T, F, R, A...>(callee_vmctx,
/// caller_vmctx, a...) -> R` with the wasm calling convention.
macro_rules! direct_entries {
    ($($name:ident($($a:ident $v:ident),*);)*) => {$(
        /// A direct entry (see the module doc): the closure `F` of the host function
        /// whose context is `callee_vmctx`, called from wasm with its arguments in
        /// registers; returns its result in the return register.
        ///
        /// # Safety
        /// As for [`host_array_call`] from wasm: only `framewalk_wasm_to_host` jumps
        /// here, after recording the exit, with the arguments of the function's type.
        pub(crate) unsafe extern "C" fn $name<T: 'static, F: HostClosure<T>, R: AbiRet, $($a: AbiValue),*>(
            callee_vmctx: *mut u8,
            caller_vmctx: *mut u8,
            $($v: $a,)*
        ) -> R {
            // The arguments, and one more slot: room for the result.
            let mut values = [$($v.to_raw(),)* ValRaw::default()];
            let len = values.len() as u64 | ARRAY_CALL_FROM_WASM;
            // SAFETY: per this function's contract; `values` has a slot for every
            // parameter and the result. A failure does not return.
            unsafe { host_array_call::<T, F>(callee_vmctx, caller_vmctx, values.as_mut_ptr(), len as usize) };
            R::from_results(&values)
        }
    )*};
}

direct_entries! {
    direct_entry_0();
    direct_entry_1(A a);
    direct_entry_2(A a, B b);
    direct_entry_3(A a, B b, C c);
    direct_entry_4(A a, B b, C c, D d);
    direct_entry_5(A a, B b, C c, D d, E e);
    direct_entry_6(A a, B b, C c, D d, E e, G g);
    direct_entry_7(A a, B b, C c, D d, E e, G g, H h);
    direct_entry_8(A a, B b, C c, D d, E e, G g, H h, I i);
}
