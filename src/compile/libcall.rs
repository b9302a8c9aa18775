//! The runtime functions generated code may call ("libcalls"), by stable id.
//!
//! Generated code reaches a libcall through a relocation against the symbol
//! [`Libcall::symbol`]; the loader resolves it to the address of the Rust function in
//! `runtime::libcalls`. Every libcall uses the System V convention and takes the caller's
//! vmctx first. Libcalls that can fail return an `i32` that is non-zero on success; the
//! generated code turns zero into a trap at the call site, so every trap happens in wasm
//! code at a precise PC (no Rust frame ever needs unwinding).

use cranelift_codegen::ir::{types, AbiParam, Signature, Type};
use cranelift_codegen::isa::CallConv;

macro_rules! libcalls {
    ($($name:ident = $sym:literal : ($($param:ident),*) -> ($($ret:ident),*);)*) => {
        /// A runtime function callable from generated code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Libcall {
            $(
                #[doc = concat!("`", $sym, "`")]
                $name,
            )*
        }

        impl Libcall {
            /// Every libcall, in id order.
            pub const ALL: &'static [Libcall] = &[$(Libcall::$name),*];

            /// The symbol name used in artifacts.
            pub fn symbol(self) -> &'static str {
                match self {
                    $(Libcall::$name => concat!("framewalk_libcall_", $sym),)*
                }
            }

            /// Parameter types after the leading vmctx.
            fn params(self) -> &'static [Type] {
                match self {
                    $(Libcall::$name => &[$(types::$param),*],)*
                }
            }

            /// Result types.
            fn returns(self) -> &'static [Type] {
                match self {
                    $(Libcall::$name => &[$(types::$ret),*],)*
                }
            }
        }
    };
}

// The memory libcalls take addresses, lengths and page counts as 64-bit values, which
// serves 32-bit and 64-bit memories alike: generated code zero-extends an i32 operand
// (every one of them is unsigned) and truncates `memory_grow`'s result for a 32-bit
// memory (its failure value, all ones, becomes the i32 -1).
libcalls! {
    MemoryGrow = "memory_grow": (I32, I64) -> (I64);
    MemoryCopy = "memory_copy": (I32, I32, I64, I64, I64) -> (I32);
    MemoryFill = "memory_fill": (I32, I64, I32, I64) -> (I32);
    MemoryInit = "memory_init": (I32, I32, I64, I64, I64) -> (I32);
    DataDrop = "data_drop": (I32) -> ();
    TableGrow = "table_grow": (I32, I32, I64) -> (I32);
    TableFill = "table_fill": (I32, I32, I64, I32) -> (I32);
    TableCopy = "table_copy": (I32, I32, I32, I32, I32) -> (I32);
    TableInit = "table_init": (I32, I32, I32, I32, I32) -> (I32);
    ElemDrop = "elem_drop": (I32) -> ();
    TableSetExternref = "table_set_externref": (I32, I32, I64) -> (I32);
    GlobalSetExternref = "global_set_externref": (I32, I64) -> ();
    // `call_with_exit_frame(vmctx, target)` calls `target(vmctx, exit_fp, exit_sp, exit_pc)` with
    // the calling wasm frame's exit; `collect_garbage` is such a target (a collection
    // from wasm code).
    CallWithExitFrame = "call_with_exit_frame": (I64) -> ();
    CollectGarbage = "collect_garbage": (I64) -> ();
}

impl Libcall {
    /// The libcall with this symbol name.
    pub fn from_symbol(name: &str) -> Option<Libcall> {
        Libcall::ALL.iter().copied().find(|l| l.symbol() == name)
    }

    /// The Cranelift signature: `(vmctx, params..) -> returns`, System V.
    pub fn signature(self) -> Signature {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(types::I64));
        sig.params
            .extend(self.params().iter().map(|t| AbiParam::new(*t)));
        sig.returns
            .extend(self.returns().iter().map(|t| AbiParam::new(*t)));
        sig
    }
}

/// Cranelift's own runtime helpers (float rounding without SSE4.1) that generated code may
/// call. Their symbols are `framewalk_clif_<name>`.
pub fn clif_libcall_symbol(lc: cranelift_codegen::ir::LibCall) -> Option<&'static str> {
    use cranelift_codegen::ir::LibCall as L;
    Some(match lc {
        L::CeilF32 => "framewalk_clif_ceilf32",
        L::CeilF64 => "framewalk_clif_ceilf64",
        L::FloorF32 => "framewalk_clif_floorf32",
        L::FloorF64 => "framewalk_clif_floorf64",
        L::TruncF32 => "framewalk_clif_truncf32",
        L::TruncF64 => "framewalk_clif_truncf64",
        L::NearestF32 => "framewalk_clif_nearestf32",
        L::NearestF64 => "framewalk_clif_nearestf64",
        _ => return None,
    })
}

impl Libcall {
    /// Whether code compiled for the wasm operator `op` calls this libcall: the
    /// operators `environ.rs` translates into a call of it (update both together). The
    /// artifact loader checks each libcall relocation against the operator at its
    /// source location, so a relocation edited to name another libcall is refused.
    pub fn serves(self, op: &wasmparser::Operator<'_>) -> bool {
        use wasmparser::Operator as O;
        match self {
            Libcall::MemoryGrow => matches!(op, O::MemoryGrow { .. }),
            Libcall::MemoryCopy => matches!(op, O::MemoryCopy { .. }),
            Libcall::MemoryFill => matches!(op, O::MemoryFill { .. }),
            Libcall::MemoryInit => matches!(op, O::MemoryInit { .. }),
            Libcall::DataDrop => matches!(op, O::DataDrop { .. }),
            Libcall::TableGrow => matches!(op, O::TableGrow { .. }),
            Libcall::TableFill => matches!(op, O::TableFill { .. }),
            Libcall::TableCopy => matches!(op, O::TableCopy { .. }),
            Libcall::TableInit => matches!(op, O::TableInit { .. }),
            Libcall::ElemDrop => matches!(op, O::ElemDrop { .. }),
            Libcall::TableSetExternref => matches!(op, O::TableSet { .. }),
            Libcall::GlobalSetExternref => matches!(op, O::GlobalSet { .. }),
            // A reference read from a table or global enters the root set, which
            // collects from wasm when it is over its threshold (`enter_root_set`).
            Libcall::CallWithExitFrame | Libcall::CollectGarbage => {
                matches!(op, O::TableGet { .. } | O::GlobalGet { .. })
            }
        }
    }
}

/// Whether code compiled for the wasm operator `op` may call the Cranelift helper named
/// `symbol` (see [`clif_libcall_symbol`]): the float rounding operators.
pub fn clif_libcall_serves(symbol: &str, op: &wasmparser::Operator<'_>) -> bool {
    use wasmparser::Operator as O;
    match symbol {
        "framewalk_clif_ceilf32" => matches!(op, O::F32Ceil),
        "framewalk_clif_ceilf64" => matches!(op, O::F64Ceil),
        "framewalk_clif_floorf32" => matches!(op, O::F32Floor),
        "framewalk_clif_floorf64" => matches!(op, O::F64Floor),
        "framewalk_clif_truncf32" => matches!(op, O::F32Trunc),
        "framewalk_clif_truncf64" => matches!(op, O::F64Trunc),
        "framewalk_clif_nearestf32" => matches!(op, O::F32Nearest),
        "framewalk_clif_nearestf64" => matches!(op, O::F64Nearest),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip() {
        for l in Libcall::ALL {
            assert_eq!(Libcall::from_symbol(l.symbol()), Some(*l));
        }
        assert_eq!(Libcall::from_symbol("framewalk_libcall_nope"), None);
    }
}
