//! Functions: wasm exports and host functions, called from the host dynamically
//! ([`Func::call`]) or with static types ([`TypedFunc::call`]).
//!
//! Host → wasm: [`Func::call`] and most typed calls go through [`invoke`], which calls
//! the callee's array-convention entry point (an entry trampoline for wasm functions);
//! a typed call of a wasm function whose arguments fit in registers and that has at
//! most one result calls the function directly (`entry::invoke_direct`).
//! Wasm → host: see [`host_call`](super::host_call) (a jump that records the exit, then
//! a direct entry or the type's exit trampoline).

pub(crate) use super::entry::invoke;
use super::error::Error;
use super::host_call::{
    drop_host_ctx, host_array_call, DirectEntry, HostClosure, HostFuncContext, NoDirectEntry,
    TypedEntry,
};
use super::store::{AsStore, AsStoreMut, Caller, OwnedHostFunc, StoreInner, StoreOpaque};
use super::values::{Val, WasmTuple};
use super::vmcontext::{VMFuncRef, ValRaw, HOST_CTX_MAGIC};
use super::Store;
use crate::arch::RegisterArgs;
use crate::trap::HostError;
use crate::types::FuncType;
use std::marker::PhantomData;
use std::sync::Arc;

/// A function in a store: a wasm function of some instance, or a host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Func {
    pub(crate) store_id: u64,
    ptr: *const VMFuncRef,
}

// SAFETY: a `Func` is an inert handle; using it requires the owning store, which the API
// checks by id.
unsafe impl Send for Func {}
// SAFETY: as above.
unsafe impl Sync for Func {}

impl Func {
    pub(crate) fn from_vmfuncref(store_id: u64, ptr: *const VMFuncRef) -> Func {
        Func { store_id, ptr }
    }

    pub(crate) fn from_raw(store: &StoreOpaque, raw: usize) -> Option<Func> {
        (raw != 0).then_some(Func {
            store_id: store.id,
            ptr: raw as *const VMFuncRef,
        })
    }

    pub(crate) fn raw(&self) -> usize {
        self.ptr as usize
    }

    pub(crate) fn vmfuncref(&self) -> &VMFuncRef {
        // SAFETY: a `Func` points into its store (a vmctx or a host context), which lives
        // as long as the store; callers check the store id first.
        unsafe { &*self.ptr }
    }

    /// A host function of type `ty` running `closure`. `D` gives its direct entry for
    /// wasm callers (see `host_call`), if the type has one; otherwise wasm calls it
    /// through the engine's exit trampoline for `ty`.
    fn new_raw<T: 'static, F: HostClosure<T>, D: DirectEntry>(
        store: &mut Store<T>,
        ty: FuncType,
        closure: F,
    ) -> Result<Func, Error> {
        let opaque = &mut store.inner.opaque;
        let (wasm_target, tramp) = match D::entry::<T, F>() {
            Some(entry) => (entry, None),
            None => {
                let tramp = opaque
                    .engine
                    .exit_trampoline(&ty)
                    .map_err(|e| Error::Module(e.into()))?;
                (tramp.base() as *const u8, Some(tramp))
            }
        };
        let type_id = opaque.engine.type_id(&ty);
        let store_ptr: *mut StoreInner<T> = &mut *store.inner;
        let ctx = Box::into_raw(Box::new(HostFuncContext::<T, F> {
            magic: HOST_CTX_MAGIC,
            _pad: 0,
            array_call: host_array_call::<T, F>,
            wasm_target,
            func_ref: VMFuncRef {
                wasm_call: crate::arch::framewalk_wasm_to_host as *const u8,
                array_call: host_array_call::<T, F> as *const u8,
                vmctx: std::ptr::null_mut(),
                type_id,
                flags: VMFuncRef::HOST,
            },
            store: store_ptr,
            closure,
        }));
        // SAFETY: `ctx` was just allocated and is uniquely ours.
        let func_ref = unsafe {
            (*ctx).func_ref.vmctx = ctx.cast();
            std::ptr::addr_of!((*ctx).func_ref)
        };
        let opaque = &mut store.inner.opaque;
        opaque.exit_trampolines.extend(tramp);
        opaque.host_funcs.push(OwnedHostFunc {
            ptr: ctx.cast(),
            drop_fn: drop_host_ctx::<T, F>,
        });
        Ok(Func::from_vmfuncref(opaque.id, func_ref))
    }

    /// A host function of type `ty` taking and returning dynamically typed values.
    ///
    /// The closure receives the parameters and one slot per result, and must write every
    /// result slot with a value of the declared type. The slots arrive holding
    /// placeholders that are not values of their declared types (read them only to
    /// overwrite them); a slot left unwritten fails the call with a host error
    /// (`host function of type ... did not write result N (T)`), a slot written with a
    /// value of another type with `host function returned U where T was expected`.
    pub fn new<T: 'static>(
        store: &mut Store<T>,
        ty: FuncType,
        f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), HostError> + Send + Sync + 'static,
    ) -> Result<Func, Error> {
        let fty = ty.clone();
        // Only references entering the root set make a collection check due.
        let results_have_refs = ty.results().contains(&crate::types::ValType::ExternRef);
        Func::new_raw::<T, _, NoDirectEntry>(
            store,
            ty,
            move |mut caller: Caller<'_, T>, raw: &mut [ValRaw]| {
                let params: Vec<Val> = fty
                    .params()
                    .iter()
                    .zip(raw.iter())
                    .map(|(t, r)| Val::from_raw(*r, *t, &caller.store.opaque))
                    .collect();
                // A placeholder the closure must overwrite: an unusual value of another
                // type than the result's, so that no value the closure writes for the
                // declared type can be mistaken for it.
                const UNWRITTEN: u64 = 0xf4a3_dead_0000_0001;
                let placeholder = |t: crate::types::ValType| match t {
                    crate::types::ValType::I64 => Val::F64(UNWRITTEN),
                    _ => Val::I64(UNWRITTEN as i64),
                };
                let mut results: Vec<Val> = fty.results().iter().map(|t| placeholder(*t)).collect();
                f(
                    Caller {
                        store: caller.store,
                        caller_vmctx: caller.caller_vmctx,
                    },
                    &params,
                    &mut results,
                )?;
                let opaque = caller.store_opaque_mut();
                if results_have_refs {
                    opaque.maybe_gc();
                }
                for (i, (v, t)) in results.iter().zip(fty.results()).enumerate() {
                    let unwritten = match (v, placeholder(*t)) {
                        (Val::I64(a), Val::I64(b)) => *a == b,
                        (Val::F64(a), Val::F64(b)) => *a == b,
                        _ => false,
                    };
                    if unwritten {
                        return Err(format!(
                            "host function of type {fty} did not write result {i} ({t})"
                        )
                        .into());
                    }
                    if v.ty() != *t {
                        return Err(format!(
                            "host function returned {} where {} was expected",
                            v.ty(),
                            t
                        )
                        .into());
                    }
                    raw[i] = v
                        .to_raw(opaque)
                        .map_err(|e| -> HostError { e.to_string().into() })?;
                }
                Ok(())
            },
        )
    }

    /// A host function from a Rust closure with statically typed parameters and results:
    /// `|caller: Caller<'_, T>, params: P| -> R` (`P` a [`WasmTuple`]: one value or a
    /// tuple), or `|caller: Caller<'_, T>| -> R` for a function without parameters. `R`
    /// is a [`WasmTuple`] or a `Result` of one (see [`HostResult`]). The closure's
    /// parameter types must be written out (they select the form, see [`IntoFunc`]).
    ///
    /// ```
    /// # use framewalk::{Caller, Engine, Func, Store};
    /// # let mut store = Store::new(&Engine::new(Default::default())?, ());
    /// let add = Func::wrap(&mut store, |_: Caller<'_, ()>, (a, b): (i32, i32)| a + b)?;
    /// let answer = Func::wrap(&mut store, |_: Caller<'_, ()>| 42i32)?;
    /// assert_eq!(answer.typed::<(), i32>(&store)?.call(&mut store, ())?, 42);
    /// # let _ = add;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wrap<T: 'static, M, R>(
        store: &mut Store<T>,
        f: impl IntoFunc<T, M, R>,
    ) -> Result<Func, Error> {
        f.into_func(store)
    }

    /// [`Func::wrap`] of a closure `Fn(Caller<'_, T>, P) -> R`.
    fn wrap_with_params<T: 'static, P: WasmTuple, R: HostResult>(
        store: &mut Store<T>,
        f: impl Fn(Caller<'_, T>, P) -> R + Send + Sync + 'static,
    ) -> Result<Func, Error> {
        let ty = FuncType::new(P::types(), R::Ok::types());
        Func::new_raw::<T, _, TypedEntry<P, R::Ok>>(
            store,
            ty,
            move |caller: Caller<'_, T>, raw: &mut [ValRaw]| {
                let params = P::load_raw(raw, &caller.store.opaque);
                let store: *mut StoreInner<T> = caller.store;
                let out = f(caller, params).into_result()?;
                // SAFETY: the closure's borrow of the store ended when it returned.
                let opaque = unsafe { &mut (*store).opaque };
                // Only results that are references enter the root set: no check is due
                // for the others (a compile-time constant, so no code either).
                if R::Ok::HAS_EXTERNREF {
                    opaque.maybe_gc();
                }
                out.store_raw(opaque, raw)
                    .map_err(|e| -> HostError { Box::new(e) })?;
                Ok(())
            },
        )
    }

    /// The function's type.
    pub fn ty(&self, store: &impl AsStore) -> Result<FuncType, Error> {
        let opaque = store.store_opaque();
        if opaque.id != self.store_id {
            return Err(Error::WrongStore);
        }
        opaque
            .engine
            .type_of(self.vmfuncref().type_id)
            .map(|ty| (*ty).clone())
            .ok_or_else(|| Error::TypeMismatch("unknown function type".into()))
    }

    /// Calls the function with dynamically typed `params`, writing `results`.
    ///
    /// Per call: the type comes from the store's cache (no lock, no copy of the type)
    /// and up to 16 values travel in a buffer on the stack.
    pub fn call(
        &self,
        mut store: impl AsStoreMut,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let opaque = store.store_opaque_mut();
        if opaque.id != self.store_id {
            return Err(Error::WrongStore);
        }
        let type_id = self.vmfuncref().type_id;
        let unknown = || Error::TypeMismatch("unknown function type".into());
        // Cached once per type and store, then borrowed: no lock and no reference
        // count traffic per call.
        if !opaque.cache_func_type(type_id) {
            return Err(unknown());
        }
        let ty = opaque.cached_func_type(type_id).ok_or_else(unknown)?;
        if params.len() != ty.params().len() || results.len() != ty.results().len() {
            return Err(Error::TypeMismatch(format!(
                "{ty} called with {} arguments and {} result slots",
                params.len(),
                results.len()
            )));
        }
        for (i, (p, t)) in params.iter().zip(ty.params()).enumerate() {
            if p.ty() != *t {
                return Err(Error::TypeMismatch(format!(
                    "argument {i} is {}, expected {t}",
                    p.ty()
                )));
            }
        }
        let mut buf = [ValRaw::default(); 16];
        let mut heap;
        let n = params.len().max(results.len());
        let raw: &mut [ValRaw] = if n <= buf.len() {
            &mut buf[..n]
        } else {
            heap = vec![ValRaw::default(); n];
            &mut heap
        };
        for (slot, p) in raw.iter_mut().zip(params) {
            *slot = p.to_owned_raw(opaque)?;
        }
        // Only references entering the root set make a collection check due; they join
        // it after the check (the caller's `params` keep them alive meanwhile).
        if params.iter().any(|p| matches!(p, Val::ExternRef(Some(_)))) {
            opaque.maybe_gc();
            for p in params {
                if let Val::ExternRef(Some(r)) = p {
                    opaque.root_externref(r)?;
                }
            }
        }
        // SAFETY: the store id matched, so `self` points into this live store, and the
        // argument types were checked against the function's type.
        unsafe { invoke(opaque, self.vmfuncref(), raw)? };
        let ty = opaque.cached_func_type(type_id).ok_or_else(unknown)?;
        for (i, t) in ty.results().iter().enumerate() {
            results[i] = Val::from_raw(raw[i], *t, opaque);
        }
        Ok(())
    }

    /// A statically typed view of this function; fails if the types differ.
    pub fn typed<P: WasmTuple, R: WasmTuple>(
        &self,
        store: &impl AsStore,
    ) -> Result<TypedFunc<P, R>, Error> {
        let ty = self.ty(store)?;
        if ty.params() != P::types().as_slice() || ty.results() != R::types().as_slice() {
            return Err(Error::TypeMismatch(format!(
                "function is {ty}, requested {}",
                FuncType::new(P::types(), R::types())
            )));
        }
        Ok(TypedFunc {
            func: *self,
            _marker: PhantomData,
        })
    }
}

/// A function whose parameter and result types were checked once.
#[derive(Debug)]
pub struct TypedFunc<P, R> {
    func: Func,
    _marker: PhantomData<fn(P) -> R>,
}

impl<P, R> Clone for TypedFunc<P, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P, R> Copy for TypedFunc<P, R> {}

impl<P: WasmTuple, R: WasmTuple> TypedFunc<P, R> {
    /// Calls the function.
    #[inline]
    pub fn call(&self, mut store: impl AsStoreMut, params: P) -> Result<R, Error> {
        let opaque = store.store_opaque_mut();
        if opaque.id != self.func.store_id {
            return Err(Error::WrongStore);
        }
        if P::HAS_EXTERNREF {
            opaque.maybe_gc();
        }
        let f = self.func.vmfuncref();
        if P::FIT_IN_REGISTERS && R::LEN <= 1 && !R::HAS_V128 && f.flags & VMFuncRef::HOST == 0 {
            if f.array_call.is_null() {
                return Err(Error::TypeMismatch(
                    "function cannot be called from the host".into(),
                ));
            }
            // The arguments go straight into registers: no entry trampoline.
            let mut args = RegisterArgs::default();
            params.store_args(opaque, &mut args)?;
            let floats = P::FLOAT_ARGS > 0;
            // SAFETY: types were checked in `Func::typed` (so `args` holds the
            // arguments the function takes, `R` its one result or none); the store id
            // matched; a function with an array entry point escapes to the host.
            unsafe { super::entry::invoke_direct(opaque, f, &mut args, floats)? };
            let result = if R::FIRST_IS_FLOAT {
                args.floats[0]
            } else {
                args.ints[0]
            };
            return Ok(R::load_raw(&[ValRaw::from_u64(result)], opaque));
        }
        // The value array lives on this frame, sized for the common case (a constant
        // `n`: only one branch is compiled in).
        let n = P::LEN.max(R::LEN);
        if n <= 4 {
            self.call_with(opaque, params, &mut [ValRaw::default(); 4][..n])
        } else if n <= 16 {
            self.call_with(opaque, params, &mut [ValRaw::default(); 16][..n])
        } else {
            self.call_with(opaque, params, &mut vec![ValRaw::default(); n])
        }
    }

    #[inline(always)]
    fn call_with(
        &self,
        opaque: &mut StoreOpaque,
        params: P,
        raw: &mut [ValRaw],
    ) -> Result<R, Error> {
        params.store_raw(opaque, raw)?;
        // SAFETY: types were checked in `Func::typed`; the store id matched.
        unsafe { invoke(opaque, self.func.vmfuncref(), raw)? };
        Ok(R::load_raw(raw, opaque))
    }

    /// The untyped function.
    pub fn func(&self) -> Func {
        self.func
    }
}

/// The closures [`Func::wrap`] accepts. `Params` is a marker that tells the two forms
/// apart, so that one name covers both without the impls overlapping (a closure has one
/// arity): [`WithParams<P>`] for `Fn(Caller<'_, T>, P) -> R`, [`NoParams`] for
/// `Fn(Caller<'_, T>) -> R`. Not meant to be implemented elsewhere.
pub trait IntoFunc<T, Params, Results>: Send + Sync + 'static {
    /// Makes the host function in `store`.
    fn into_func(self, store: &mut Store<T>) -> Result<Func, Error>;

    /// The function's type and a maker of the function in any store, sharing the
    /// closure: what [`Linker::func_wrap`](super::Linker::func_wrap) keeps.
    #[doc(hidden)]
    fn into_func_maker(self) -> (FuncType, FuncMaker<T>);
}

/// Makes a host function in the store it is given (the closure behind it is shared
/// by every store's function). A [`Linker`](super::Linker) keeps one per `func_wrap`
/// or `func_new` definition and runs it for each store that imports the function.
pub type FuncMaker<T> = Arc<dyn Fn(&mut Store<T>) -> Result<Func, Error> + Send + Sync>;

/// [`IntoFunc`] marker: a closure taking the caller and the parameters `P`.
pub struct WithParams<P>(PhantomData<fn(P)>);

/// [`IntoFunc`] marker: a closure taking only the caller.
pub struct NoParams;

impl<T: 'static, P: WasmTuple, R: HostResult, F> IntoFunc<T, WithParams<P>, R> for F
where
    F: Fn(Caller<'_, T>, P) -> R + Send + Sync + 'static,
{
    fn into_func(self, store: &mut Store<T>) -> Result<Func, Error> {
        Func::wrap_with_params(store, self)
    }

    fn into_func_maker(self) -> (FuncType, FuncMaker<T>) {
        let f = Arc::new(self);
        let maker = move |store: &mut Store<T>| {
            let f = Arc::clone(&f);
            Func::wrap_with_params(store, move |caller: Caller<'_, T>, params: P| {
                f(caller, params)
            })
        };
        (FuncType::new(P::types(), R::Ok::types()), Arc::new(maker))
    }
}

impl<T: 'static, R: HostResult, F> IntoFunc<T, NoParams, R> for F
where
    F: Fn(Caller<'_, T>) -> R + Send + Sync + 'static,
{
    fn into_func(self, store: &mut Store<T>) -> Result<Func, Error> {
        Func::wrap_with_params(store, move |caller: Caller<'_, T>, (): ()| self(caller))
    }

    fn into_func_maker(self) -> (FuncType, FuncMaker<T>) {
        let f = Arc::new(self);
        let maker = move |store: &mut Store<T>| {
            let f = Arc::clone(&f);
            Func::wrap_with_params(store, move |caller: Caller<'_, T>, (): ()| f(caller))
        };
        (FuncType::new([], R::Ok::types()), Arc::new(maker))
    }
}

/// What a `Func::wrap` closure may return: results, or `Result` of results.
pub trait HostResult {
    /// The results.
    type Ok: WasmTuple;
    /// Splits into results or an error.
    fn into_result(self) -> Result<Self::Ok, HostError>;
}

impl<R: WasmTuple> HostResult for R {
    type Ok = R;
    fn into_result(self) -> Result<R, HostError> {
        Ok(self)
    }
}

impl<R: WasmTuple, E: Into<HostError>> HostResult for Result<R, E> {
    type Ok = R;
    fn into_result(self) -> Result<R, HostError> {
        self.map_err(Into::into)
    }
}
