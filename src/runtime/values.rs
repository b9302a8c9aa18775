//! `Val`, the dynamically typed value, and the static `WasmTy` mapping used by typed
//! calls and `Func::wrap`.

use super::func::Func;
use super::host_call::{self, direct_entry_if_fits, AbiRet, AbiValue, HostClosure};
use super::store::StoreOpaque;
use super::vmcontext::ValRaw;
use crate::arch::{RegisterArgs, REGISTER_ARGS_FLOATS, REGISTER_ARGS_INTS};
use crate::gc::ExternRef;
use crate::types::ValType;

/// A WebAssembly value.
#[derive(Clone, Debug)]
pub enum Val {
    /// i32
    I32(i32),
    /// i64
    I64(i64),
    /// f32, as bits (NaN payloads are preserved).
    F32(u32),
    /// f64, as bits.
    F64(u64),
    /// v128 (SIMD), as its 128 bits, little-endian: lane 0 of every shape is in the
    /// lowest bits (`i32x4 1 2 3 4` is `0x00000004_00000003_00000002_00000001`).
    V128(u128),
    /// funcref
    FuncRef(Option<Func>),
    /// externref
    ExternRef(Option<ExternRef>),
}

impl Val {
    /// The value's type.
    pub fn ty(&self) -> ValType {
        match self {
            Val::I32(_) => ValType::I32,
            Val::I64(_) => ValType::I64,
            Val::F32(_) => ValType::F32,
            Val::F64(_) => ValType::F64,
            Val::V128(_) => ValType::V128,
            Val::FuncRef(_) => ValType::FuncRef,
            Val::ExternRef(_) => ValType::ExternRef,
        }
    }

    /// The zero / null value of `ty`.
    pub fn default_for(ty: ValType) -> Val {
        match ty {
            ValType::I32 => Val::I32(0),
            ValType::I64 => Val::I64(0),
            ValType::F32 => Val::F32(0),
            ValType::F64 => Val::F64(0),
            ValType::V128 => Val::V128(0),
            ValType::FuncRef => Val::FuncRef(None),
            ValType::ExternRef => Val::ExternRef(None),
        }
    }

    /// The raw form wasm sees. Externrefs are rooted in the store; funcrefs must belong
    /// to it.
    pub(crate) fn to_raw(&self, store: &mut StoreOpaque) -> Result<ValRaw, super::Error> {
        let raw = self.to_owned_raw(store)?;
        if let Val::ExternRef(Some(r)) = self {
            store.root_externref(r)?;
        }
        Ok(raw)
    }

    /// The raw form for storing into a table or global of `store` (which retains it
    /// itself): references are not added to the root set.
    pub(crate) fn to_owned_raw(&self, store: &StoreOpaque) -> Result<ValRaw, super::Error> {
        Ok(ValRaw(match self {
            Val::I32(v) => u128::from(*v as u32),
            Val::I64(v) => u128::from(*v as u64),
            Val::F32(v) => u128::from(*v),
            Val::F64(v) => u128::from(*v),
            Val::V128(v) => *v,
            Val::FuncRef(None) | Val::ExternRef(None) => 0,
            Val::FuncRef(Some(f)) => {
                if f.store_id != store.id {
                    return Err(super::Error::WrongStore);
                }
                f.raw() as u128
            }
            Val::ExternRef(Some(r)) => {
                store.check_owner(r)?;
                r.as_raw() as u128
            }
        }))
    }

    /// Reads a raw value of type `ty` produced by wasm code of `store`.
    pub(crate) fn from_raw(raw: ValRaw, ty: ValType, store: &StoreOpaque) -> Val {
        match ty {
            ValType::I32 => Val::I32(raw.0 as u32 as i32),
            ValType::I64 => Val::I64(raw.0 as i64),
            ValType::F32 => Val::F32(raw.0 as u32),
            ValType::F64 => Val::F64(raw.0 as u64),
            ValType::V128 => Val::V128(raw.0),
            ValType::FuncRef => Val::FuncRef(Func::from_raw(store, raw.0 as usize)),
            // SAFETY: every externref wasm holds is owned (table, global) or in the
            // store's root set, so it is live.
            ValType::ExternRef => {
                Val::ExternRef(unsafe { ExternRef::clone_from_raw(raw.0 as usize) })
            }
        }
    }

    /// The i32, if this is one.
    pub fn i32(&self) -> Option<i32> {
        match self {
            Val::I32(v) => Some(*v),
            _ => None,
        }
    }

    /// The i64, if this is one.
    pub fn i64(&self) -> Option<i64> {
        match self {
            Val::I64(v) => Some(*v),
            _ => None,
        }
    }

    /// The v128's bits, if this is one.
    pub fn v128(&self) -> Option<u128> {
        match self {
            Val::V128(v) => Some(*v),
            _ => None,
        }
    }
}

impl From<i32> for Val {
    fn from(v: i32) -> Val {
        Val::I32(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I64(v)
    }
}
impl From<f32> for Val {
    fn from(v: f32) -> Val {
        Val::F32(v.to_bits())
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::F64(v.to_bits())
    }
}
impl From<V128> for Val {
    fn from(v: V128) -> Val {
        Val::V128(v.0)
    }
}

/// A `v128` (SIMD) value as a typed parameter or result (of `Func::wrap` closures and
/// `TypedFunc`s): its 128 bits, little-endian, lane 0 lowest (as [`Val::V128`]).
///
/// A newtype rather than a bare `u128`, so that a 128-bit integer is never mistaken
/// for a vector: wasm has no 128-bit integer type. Functions with a `v128` parameter
/// or result are called through the value array (the entry and exit trampolines),
/// never directly in registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V128(pub u128);

impl V128 {
    /// The vector with these bits.
    pub const fn from_bits(bits: u128) -> V128 {
        V128(bits)
    }

    /// The vector's bits.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl From<u128> for V128 {
    fn from(bits: u128) -> V128 {
        V128(bits)
    }
}

impl From<V128> for u128 {
    fn from(v: V128) -> u128 {
        v.0
    }
}

/// A Rust type that maps to one wasm value type.
pub trait WasmTy: Sized {
    /// The wasm type.
    const TYPE: ValType;
    /// How the wasm calling convention passes it (see `host_call::AbiValue`).
    type Abi: AbiValue;
    /// Whether it travels in a float register (`f32`, `f64`) rather than an integer
    /// one.
    const IS_FLOAT: bool = matches!(Self::TYPE, ValType::F32 | ValType::F64);
    /// Whether it is a `v128`, which never takes the direct (register) paths: their
    /// float registers carry 8 bytes (`RegisterArgs`, the direct host entries).
    const IS_V128: bool = matches!(Self::TYPE, ValType::V128);
    /// To the raw form (rooting references in `store`; a reference of another store
    /// is refused).
    fn into_raw(self, store: &mut StoreOpaque) -> Result<ValRaw, super::Error>;
    /// From the raw form.
    fn from_raw(raw: ValRaw, store: &StoreOpaque) -> Self;
}

/// `WasmTy` for a number type: `int_ty!(type, ValType, Abi, |v| to_bits, |r| from_bits)`.
/// The conversions are expressions spliced into the methods (not function pointers,
/// which the optimizer may leave as indirect calls on the typed-call path).
macro_rules! int_ty {
    ($t:ty, $vt:ident, $abi:ty, |$v:ident| $to:expr, |$r:ident| $from:expr) => {
        impl WasmTy for $t {
            const TYPE: ValType = ValType::$vt;
            type Abi = $abi;
            #[inline]
            fn into_raw(self, _: &mut StoreOpaque) -> Result<ValRaw, super::Error> {
                let $v = self;
                Ok(ValRaw::from_u64($to))
            }
            #[inline]
            fn from_raw(raw: ValRaw, _: &StoreOpaque) -> Self {
                let $r = raw.u64();
                $from
            }
        }
    };
}

int_ty!(i32, I32, i32, |v| v as u32 as u64, |r| r as u32 as i32);
int_ty!(u32, I32, i32, |v| v as u64, |r| r as u32);
int_ty!(i64, I64, i64, |v| v as u64, |r| r as i64);
int_ty!(u64, I64, i64, |v| v, |r| r);
int_ty!(f32, F32, f32, |v| u64::from(v.to_bits()), |r| {
    f32::from_bits(r as u32)
});
int_ty!(f64, F64, f64, |v| v.to_bits(), |r| f64::from_bits(r));

impl WasmTy for V128 {
    const TYPE: ValType = ValType::V128;
    type Abi = V128;
    #[inline]
    fn into_raw(self, _: &mut StoreOpaque) -> Result<ValRaw, super::Error> {
        Ok(ValRaw(self.0))
    }
    #[inline]
    fn from_raw(raw: ValRaw, _: &StoreOpaque) -> Self {
        V128(raw.0)
    }
}

impl WasmTy for Option<ExternRef> {
    const TYPE: ValType = ValType::ExternRef;
    type Abi = i64;
    fn into_raw(self, store: &mut StoreOpaque) -> Result<ValRaw, super::Error> {
        Ok(ValRaw(match self {
            None => 0,
            Some(r) => store.root_externref(&r)? as u128,
        }))
    }
    fn from_raw(raw: ValRaw, _: &StoreOpaque) -> Self {
        // SAFETY: see `Val::from_raw`.
        unsafe { ExternRef::clone_from_raw(raw.0 as usize) }
    }
}

/// A nullable function reference (`funcref`) as a typed parameter or result: of
/// `Func::wrap` closures and of `TypedFunc`s. A function of another store is refused.
impl WasmTy for Option<Func> {
    const TYPE: ValType = ValType::FuncRef;
    type Abi = i64;
    fn into_raw(self, store: &mut StoreOpaque) -> Result<ValRaw, super::Error> {
        Val::FuncRef(self).to_owned_raw(store)
    }
    fn from_raw(raw: ValRaw, store: &StoreOpaque) -> Self {
        Func::from_raw(store, raw.0 as usize)
    }
}

/// A tuple of wasm values (parameters or results): `()`, one value, or a tuple of 1 to
/// 16 values.
pub trait WasmTuple: Sized {
    /// The types, in order.
    fn types() -> Vec<ValType>;
    /// Number of values.
    const LEN: usize;
    /// Whether any value is an `externref` (only then can passing the tuple into wasm
    /// add to the store's root set, so only then is a collection check due).
    const HAS_EXTERNREF: bool;
    /// Whether any value is a `v128` (then calls take the value array, never the
    /// direct register paths).
    const HAS_V128: bool;
    /// Writes into `out[..LEN]`.
    fn store_raw(self, store: &mut StoreOpaque, out: &mut [ValRaw]) -> Result<(), super::Error>;
    /// Reads from `raw[..LEN]`.
    fn load_raw(raw: &[ValRaw], store: &StoreOpaque) -> Self;
    /// As results: what a direct entry returns (`()`, or the one value; `()` for
    /// several results too, which have no direct entry).
    type Ret: AbiRet;
    /// As parameters: the direct entry of closure `F` with results `R` (see
    /// `host_call`), or `None` when these types need the exit trampoline.
    fn wasm_entry<St: 'static, Hc: HostClosure<St>, Rs: WasmTuple>() -> Option<*const u8>;
    /// How many values travel in integer registers.
    const INT_ARGS: usize;
    /// How many values travel in float registers.
    const FLOAT_ARGS: usize;
    /// Whether the first value travels in a float register (false for `()`).
    const FIRST_IS_FLOAT: bool;
    /// As the parameters of a typed call without the entry trampoline
    /// (`arch::framewalk_enter_direct`): whether they all fit in argument registers
    /// (which carry 8 bytes each, so never with a `v128`).
    const FIT_IN_REGISTERS: bool = !Self::HAS_V128
        && Self::INT_ARGS <= REGISTER_ARGS_INTS
        && Self::FLOAT_ARGS <= REGISTER_ARGS_FLOATS;
    /// Writes the values into `args` in the order the calling convention assigns
    /// registers. Only for tuples that [fit](WasmTuple::FIT_IN_REGISTERS).
    fn store_args(
        self,
        store: &mut StoreOpaque,
        args: &mut RegisterArgs,
    ) -> Result<(), super::Error>;
}

impl WasmTuple for () {
    fn types() -> Vec<ValType> {
        Vec::new()
    }
    const LEN: usize = 0;
    const HAS_EXTERNREF: bool = false;
    const HAS_V128: bool = false;
    fn store_raw(self, _: &mut StoreOpaque, _: &mut [ValRaw]) -> Result<(), super::Error> {
        Ok(())
    }
    fn load_raw(_: &[ValRaw], _: &StoreOpaque) -> Self {}
    type Ret = ();
    fn wasm_entry<St: 'static, Hc: HostClosure<St>, Rs: WasmTuple>() -> Option<*const u8> {
        direct_entry_if_fits::<Self, Rs>(host_call::direct_entry_0::<St, Hc, Rs::Ret> as *const u8)
    }
    const INT_ARGS: usize = 0;
    const FLOAT_ARGS: usize = 0;
    const FIRST_IS_FLOAT: bool = false;
    fn store_args(self, _: &mut StoreOpaque, _: &mut RegisterArgs) -> Result<(), super::Error> {
        Ok(())
    }
}

impl<A: WasmTy> WasmTuple for A {
    fn types() -> Vec<ValType> {
        vec![A::TYPE]
    }
    const LEN: usize = 1;
    const HAS_EXTERNREF: bool = matches!(A::TYPE, ValType::ExternRef);
    const HAS_V128: bool = A::IS_V128;
    fn store_raw(self, store: &mut StoreOpaque, out: &mut [ValRaw]) -> Result<(), super::Error> {
        out[0] = self.into_raw(store)?;
        Ok(())
    }
    fn load_raw(raw: &[ValRaw], store: &StoreOpaque) -> Self {
        A::from_raw(raw[0], store)
    }
    type Ret = A::Abi;
    fn wasm_entry<St: 'static, Hc: HostClosure<St>, Rs: WasmTuple>() -> Option<*const u8> {
        direct_entry_if_fits::<Self, Rs>(
            host_call::direct_entry_1::<St, Hc, Rs::Ret, A::Abi> as *const u8,
        )
    }
    const INT_ARGS: usize = !A::IS_FLOAT as usize;
    const FLOAT_ARGS: usize = A::IS_FLOAT as usize;
    const FIRST_IS_FLOAT: bool = A::IS_FLOAT;
    fn store_args(
        self,
        store: &mut StoreOpaque,
        args: &mut RegisterArgs,
    ) -> Result<(), super::Error> {
        let raw = self.into_raw(store)?.u64();
        if A::IS_FLOAT {
            args.floats[0] = raw;
        } else {
            args.ints[0] = raw;
        }
        Ok(())
    }
}

/// `WasmTuple` for a tuple: `tuple!(n, ret, entry; A 0, ...)` where `ret` is the
/// `Ret` type and `entry` the direct entry of that arity in `host_call`, or `none`:
/// direct entries exist for up to 8 parameters, so host functions with more always
/// take the exit trampoline (even when, with 4 integers and up to 8 floats, they would
/// fit in registers).
macro_rules! tuple {
    ($n:expr, $ret:ty, $entry:ident; $($t:ident $i:tt),+) => {
        impl<$($t: WasmTy),+> WasmTuple for ($($t,)+) {
            fn types() -> Vec<ValType> {
                vec![$($t::TYPE),+]
            }
            const LEN: usize = $n;
            const HAS_EXTERNREF: bool = false $(|| matches!($t::TYPE, ValType::ExternRef))+;
            const HAS_V128: bool = false $(|| $t::IS_V128)+;
            fn store_raw(self, store: &mut StoreOpaque, out: &mut [ValRaw]) -> Result<(), super::Error> {
                $(out[$i] = self.$i.into_raw(store)?;)+
                Ok(())
            }
            fn load_raw(raw: &[ValRaw], store: &StoreOpaque) -> Self {
                ($($t::from_raw(raw[$i], store),)+)
            }
            type Ret = $ret;
            fn wasm_entry<St: 'static, Hc: HostClosure<St>, Rs: WasmTuple>() -> Option<*const u8> {
                tuple!(@entry $entry, St, Hc, Rs, $($t),+)
            }
            const INT_ARGS: usize = 0 $(+ !$t::IS_FLOAT as usize)+;
            const FLOAT_ARGS: usize = 0 $(+ $t::IS_FLOAT as usize)+;
            const FIRST_IS_FLOAT: bool = tuple!(@first $($t),+);
            fn store_args(self, store: &mut StoreOpaque, args: &mut RegisterArgs) -> Result<(), super::Error> {
                // Register counters: constants once the loop below is unrolled.
                let (mut int, mut float) = (0, 0);
                $(
                    let raw = self.$i.into_raw(store)?.u64();
                    if $t::IS_FLOAT {
                        args.floats[float] = raw;
                        float += 1;
                    } else {
                        args.ints[int] = raw;
                        int += 1;
                    }
                )+
                let _ = (int, float);
                Ok(())
            }
        }
    };
    (@first $first:ident $(, $rest:ident)*) => {
        $first::IS_FLOAT
    };
    (@entry none, $st:ident, $hc:ident, $rs:ident, $($t:ident),+) => {
        None
    };
    (@entry $entry:ident, $st:ident, $hc:ident, $rs:ident, $($t:ident),+) => {
        direct_entry_if_fits::<Self, $rs>(
            host_call::$entry::<$st, $hc, $rs::Ret, $($t::Abi),+> as *const u8,
        )
    };
}

tuple!(1, A::Abi, direct_entry_1; A 0);
tuple!(2, (), direct_entry_2; A 0, B 1);
tuple!(3, (), direct_entry_3; A 0, B 1, C 2);
tuple!(4, (), direct_entry_4; A 0, B 1, C 2, D 3);
tuple!(5, (), direct_entry_5; A 0, B 1, C 2, D 3, E 4);
tuple!(6, (), direct_entry_6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple!(7, (), direct_entry_7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple!(8, (), direct_entry_8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple!(9, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple!(10, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple!(11, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple!(12, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple!(13, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple!(14, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple!(15, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple!(16, (), none; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);
