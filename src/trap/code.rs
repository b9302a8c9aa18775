//! Why wasm execution stopped: the trap codes framewalk records for every trap site.

use std::fmt;

/// The reason for a trap, as recorded in an artifact's trap section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TrapCode {
    /// `unreachable` was executed.
    Unreachable = 0,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero = 1,
    /// Integer overflow (`i32.div_s` of `INT_MIN / -1`, or a float→int conversion out of range).
    IntegerOverflow = 2,
    /// A float→int conversion of NaN.
    BadConversionToInteger = 3,
    /// A linear memory access out of bounds.
    MemoryOutOfBounds = 4,
    /// A table access out of bounds.
    TableOutOfBounds = 5,
    /// `call_indirect` to a null element.
    IndirectCallToNull = 6,
    /// `call_indirect` to a function of the wrong type.
    BadSignature = 7,
    /// The wasm stack limit was reached.
    StackOverflow = 8,
    /// A host function returned an error.
    HostError = 9,
    /// Misaligned atomic access (not produced by WebAssembly 2.0 code).
    HeapMisaligned = 10,
}

impl TrapCode {
    /// Every code, by discriminant.
    pub const ALL: [TrapCode; 11] = [
        TrapCode::Unreachable,
        TrapCode::IntegerDivisionByZero,
        TrapCode::IntegerOverflow,
        TrapCode::BadConversionToInteger,
        TrapCode::MemoryOutOfBounds,
        TrapCode::TableOutOfBounds,
        TrapCode::IndirectCallToNull,
        TrapCode::BadSignature,
        TrapCode::StackOverflow,
        TrapCode::HostError,
        TrapCode::HeapMisaligned,
    ];

    /// The code with this discriminant, if any (for reading untrusted sections).
    pub fn from_u8(v: u8) -> Option<TrapCode> {
        TrapCode::ALL.get(usize::from(v)).copied()
    }

    /// The code Cranelift's trap instruction carries, mapped to framewalk's.
    #[cfg(feature = "cranelift")]
    pub fn from_clif(code: cranelift_codegen::ir::TrapCode) -> Option<TrapCode> {
        use cranelift_codegen::ir::TrapCode as C;
        Some(match code {
            C::StackOverflow => TrapCode::StackOverflow,
            C::HeapOutOfBounds => TrapCode::MemoryOutOfBounds,
            C::HeapMisaligned => TrapCode::HeapMisaligned,
            C::TableOutOfBounds => TrapCode::TableOutOfBounds,
            C::IndirectCallToNull => TrapCode::IndirectCallToNull,
            C::BadSignature => TrapCode::BadSignature,
            C::IntegerOverflow => TrapCode::IntegerOverflow,
            C::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
            C::BadConversionToInteger => TrapCode::BadConversionToInteger,
            C::UnreachableCodeReached => TrapCode::Unreachable,
            C::User(HOST_ERROR_USER_CODE) => TrapCode::HostError,
            _ => return None,
        })
    }

    /// The message the WebAssembly spec tests expect (and `Trap`'s `Display` prints).
    pub fn message(self) -> &'static str {
        match self {
            TrapCode::Unreachable => "unreachable",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::TableOutOfBounds => "undefined element: out of bounds table access",
            TrapCode::IndirectCallToNull => "uninitialized element",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::StackOverflow => "call stack exhausted",
            TrapCode::HostError => "host function error",
            TrapCode::HeapMisaligned => "misaligned memory access",
        }
    }
}

/// The `TrapCode::User` value generated code uses for "the host function failed".
pub const HOST_ERROR_USER_CODE: u16 = 1;

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_round_trip() {
        for (i, c) in TrapCode::ALL.iter().enumerate() {
            assert_eq!(*c as u8 as usize, i);
            assert_eq!(TrapCode::from_u8(i as u8), Some(*c));
        }
        assert_eq!(TrapCode::from_u8(TrapCode::ALL.len() as u8), None);
    }
}
