//! Why execution stopped: the trap codes framewalk records for every wasm trap site,
//! plus [`TrapCode::Custom`] for a runtime's own codes.
//!
//! Two encodings, with different domains:
//! - [`TrapCode::from_u8`] / [`TrapCode::to_u8`]: the byte of an artifact's trap
//!   section. Wasm codes only (the discriminants `0..=11`, in the order of
//!   [`TrapCode::ALL`]); a `Custom` code has no byte and is never written to an artifact.
//! - [`TrapCode::to_raw`] / [`TrapCode::from_raw`]: the word passed through the signal
//!   handler to a runtime's `on_trap` (`code` argument). Lossless for every code: a
//!   wasm code as its discriminant, `Custom(n)` as `0x1_0000 + n`.

use std::fmt;

/// The reason for a trap: a wasm code (as recorded in an artifact's trap section) or a
/// runtime-defined one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapCode {
    /// `unreachable` was executed.
    Unreachable,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// Integer overflow (`i32.div_s` of `INT_MIN / -1`, or a float→int conversion out of range).
    IntegerOverflow,
    /// A float→int conversion of NaN.
    BadConversionToInteger,
    /// A linear memory access out of bounds.
    MemoryOutOfBounds,
    /// A table access out of bounds.
    TableOutOfBounds,
    /// `call_indirect` to a null element.
    IndirectCallToNull,
    /// `call_indirect` to a function of the wrong type.
    BadSignature,
    /// The wasm stack limit was reached.
    StackOverflow,
    /// A host function returned an error.
    HostError,
    /// Misaligned atomic access (not produced by WebAssembly 2.0 code).
    HeapMisaligned,
    /// The store's epoch deadline was reached (`Config::epoch_interruption`).
    Interrupt,
    /// A trap a runtime defines for itself (another language's codes, carried through
    /// the shared signal handlers); the number is the runtime's own.
    Custom(u16),
}

impl TrapCode {
    /// Every wasm code, by discriminant (the artifact byte). `Custom` is not listed.
    pub const ALL: [TrapCode; 12] = [
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
        TrapCode::Interrupt,
    ];

    /// The wasm code with this discriminant, if any (for reading untrusted sections).
    /// Never a `Custom` code.
    pub fn from_u8(v: u8) -> Option<TrapCode> {
        TrapCode::ALL.get(usize::from(v)).copied()
    }

    /// The artifact byte of a wasm code (its discriminant); `None` for `Custom`.
    pub const fn to_u8(self) -> Option<u8> {
        let raw = self.to_raw();
        if raw < CUSTOM_RAW_BASE {
            Some(raw as u8)
        } else {
            None
        }
    }

    /// The word that carries this code through `on_trap`'s `code` argument: a wasm
    /// code's discriminant, or [`CUSTOM_RAW_BASE`]` + n` for `Custom(n)`.
    pub const fn to_raw(self) -> usize {
        match self {
            TrapCode::Unreachable => 0,
            TrapCode::IntegerDivisionByZero => 1,
            TrapCode::IntegerOverflow => 2,
            TrapCode::BadConversionToInteger => 3,
            TrapCode::MemoryOutOfBounds => 4,
            TrapCode::TableOutOfBounds => 5,
            TrapCode::IndirectCallToNull => 6,
            TrapCode::BadSignature => 7,
            TrapCode::StackOverflow => 8,
            TrapCode::HostError => 9,
            TrapCode::HeapMisaligned => 10,
            TrapCode::Interrupt => 11,
            TrapCode::Custom(n) => CUSTOM_RAW_BASE + n as usize,
        }
    }

    /// The code [`TrapCode::to_raw`] encoded as `raw`, or `None` if no code encodes
    /// to it (so a corrupt word is never mistaken for a code).
    pub fn from_raw(raw: usize) -> Option<TrapCode> {
        if raw >= CUSTOM_RAW_BASE {
            let n = u16::try_from(raw - CUSTOM_RAW_BASE).ok()?;
            return Some(TrapCode::Custom(n));
        }
        TrapCode::from_u8(u8::try_from(raw).ok()?)
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
            C::User(INTERRUPT_USER_CODE) => TrapCode::Interrupt,
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
            TrapCode::Interrupt => "interrupt",
            TrapCode::Custom(_) => "runtime-defined trap",
        }
    }
}

/// The `TrapCode::User` value generated code uses for "the host function failed".
pub const HOST_ERROR_USER_CODE: u16 = 1;

/// The `TrapCode::User` value of an epoch check that found the deadline reached.
pub const INTERRUPT_USER_CODE: u16 = 2;

/// `TrapCode::Custom(n).to_raw()` is `CUSTOM_RAW_BASE + n`: above every wasm code.
pub const CUSTOM_RAW_BASE: usize = 0x1_0000;

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapCode::Custom(n) => write!(f, "{} {n}", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_round_trip() {
        for (i, c) in TrapCode::ALL.iter().enumerate() {
            assert_eq!(c.to_u8(), Some(i as u8));
            assert_eq!(TrapCode::from_u8(i as u8), Some(*c));
        }
        assert_eq!(TrapCode::from_u8(TrapCode::ALL.len() as u8), None);
        assert_eq!(TrapCode::Custom(0).to_u8(), None);
    }

    #[test]
    fn raw_encoding_round_trips_every_code() {
        for (i, c) in TrapCode::ALL.iter().enumerate() {
            assert_eq!(c.to_raw(), i);
            assert_eq!(TrapCode::from_raw(i), Some(*c));
        }
        for n in [0u16, 1, 7, 0x7fff, u16::MAX] {
            let c = TrapCode::Custom(n);
            assert_eq!(c.to_raw(), 0x1_0000 + usize::from(n));
            assert_eq!(TrapCode::from_raw(c.to_raw()), Some(c));
        }
        // Words no code encodes to.
        for raw in [
            TrapCode::ALL.len(),
            0xff,
            0x100,
            0xffff,
            0x2_0000,
            usize::MAX,
        ] {
            assert_eq!(TrapCode::from_raw(raw), None, "{raw:#x}");
        }
    }

    #[test]
    fn custom_codes_display_their_number() {
        assert_eq!(TrapCode::Custom(7).message(), "runtime-defined trap");
        assert_eq!(TrapCode::Custom(7).to_string(), "runtime-defined trap 7");
        assert_eq!(TrapCode::Unreachable.to_string(), "unreachable");
    }
}
