//! Value and function types shared by the compiler, the artifact loader and the runtime.
//!
//! framewalk supports WebAssembly 2.0 with SIMD and relaxed SIMD (plus multi-memory,
//! extended-const, memory64 and tail calls, which add no value types), so the value
//! types are the four numeric types, `v128` and the two reference types. Function types are compared structurally
//! and interned engine-wide (see `runtime::type_registry`).

use std::fmt;

/// A WebAssembly value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 128-bit vector (SIMD): never a reference, so never a GC root.
    V128,
    /// A nullable reference to a function.
    FuncRef,
    /// A nullable reference to a host value.
    ExternRef,
}

impl ValType {
    /// The type's name with its indefinite article, as messages use it: "an i32",
    /// "an externref", "a funcref".
    pub fn with_article(self) -> String {
        let article = match self {
            // "vee": a consonant sound.
            ValType::FuncRef | ValType::V128 => "a",
            // i32, i64 ("eye"), f32, f64 ("eff"), externref: a vowel sound.
            _ => "an",
        };
        format!("{article} {self}")
    }

    /// Whether this is a reference type.
    pub fn is_ref(self) -> bool {
        matches!(self, ValType::FuncRef | ValType::ExternRef)
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

#[cfg(test)]
mod article_tests {
    use super::ValType;

    #[test]
    fn every_type_reads_with_its_article() {
        let read: Vec<String> = [
            ValType::I32,
            ValType::I64,
            ValType::F32,
            ValType::F64,
            ValType::V128,
            ValType::FuncRef,
            ValType::ExternRef,
        ]
        .into_iter()
        .map(ValType::with_article)
        .collect();
        assert_eq!(
            read,
            [
                "an i32",
                "an i64",
                "an f32",
                "an f64",
                "a v128",
                "a funcref",
                "an externref"
            ]
        );
    }
}

/// The type of a function: parameters and results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuncType {
    params: Box<[ValType]>,
    results: Box<[ValType]>,
}

impl FuncType {
    /// A function type with these parameters and results.
    pub fn new(
        params: impl IntoIterator<Item = ValType>,
        results: impl IntoIterator<Item = ValType>,
    ) -> Self {
        FuncType {
            params: params.into_iter().collect(),
            results: results.into_iter().collect(),
        }
    }

    /// Parameter types, in order.
    pub fn params(&self) -> &[ValType] {
        &self.params
    }

    /// Result types, in order.
    pub fn results(&self) -> &[ValType] {
        &self.results
    }
}

impl fmt::Display for FuncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(func")?;
        if !self.params.is_empty() {
            f.write_str(" (param")?;
            for p in self.params.iter() {
                write!(f, " {p}")?;
            }
            f.write_str(")")?;
        }
        if !self.results.is_empty() {
            f.write_str(" (result")?;
            for r in self.results.iter() {
                write!(f, " {r}")?;
            }
            f.write_str(")")?;
        }
        f.write_str(")")
    }
}

/// Limits of a memory (in 64 KiB pages) or a table (in elements).
///
/// 64 bits wide because a 64-bit memory (memory64) may declare more than `u32::MAX`
/// pages; a 32-bit memory's limits are at most 65,536 pages and a table's at most
/// `u32::MAX` elements (the validator checks modules; `Memory::new` and `Table::new`
/// check the types they are given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Initial size.
    pub min: u64,
    /// Maximum size, if any.
    pub max: Option<u64>,
}

impl Limits {
    /// Whether limits `self` (of an import's definition) satisfy `required`.
    pub fn matches(&self, required: &Limits) -> bool {
        self.min >= required.min
            && match (self.max, required.max) {
                (_, None) => true,
                (Some(actual), Some(req)) => actual <= req,
                (None, Some(_)) => false,
            }
    }
}

/// The type of a linear memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryType {
    /// Size limits in pages.
    pub limits: Limits,
    /// Whether addresses are `i64` (a 64-bit memory, the memory64 proposal) rather
    /// than `i32`. An import matches only a memory of the same index type.
    pub is_64: bool,
}

impl MemoryType {
    /// A 32-bit memory of at least `min` pages and at most `max`.
    pub fn new(min: u32, max: Option<u32>) -> MemoryType {
        MemoryType {
            limits: Limits {
                min: u64::from(min),
                max: max.map(u64::from),
            },
            is_64: false,
        }
    }

    /// A 64-bit memory (memory64) of at least `min` pages and at most `max`.
    pub fn new64(min: u64, max: Option<u64>) -> MemoryType {
        MemoryType {
            limits: Limits { min, max },
            is_64: true,
        }
    }
}

/// The type of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableType {
    /// `FuncRef` or `ExternRef`.
    pub element: ValType,
    /// Size limits in elements.
    pub limits: Limits,
}

/// The type of a global.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GlobalType {
    /// The value type.
    pub content: ValType,
    /// Whether `global.set` may change it.
    pub mutable: bool,
}

/// The type of an import or export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternType {
    /// A function.
    Func(FuncType),
    /// A table.
    Table(TableType),
    /// A linear memory.
    Memory(MemoryType),
    /// A global.
    Global(GlobalType),
}

impl ExternType {
    /// A short word for the kind of entity ("func", "table", "memory", "global").
    pub fn kind(&self) -> &'static str {
        match self {
            ExternType::Func(_) => "func",
            ExternType::Table(_) => "table",
            ExternType::Memory(_) => "memory",
            ExternType::Global(_) => "global",
        }
    }
}

/// Limits as the text format writes them: `min` or `min max`.
impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.min)?;
        if let Some(max) = self.max {
            write!(f, " {max}")?;
        }
        Ok(())
    }
}

/// The text format's type: `(memory 1)`, `(memory 1 2)`, `(memory i64 1)`.
impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_64 {
            write!(f, "(memory i64 {})", self.limits)
        } else {
            write!(f, "(memory {})", self.limits)
        }
    }
}

/// The text format's type: `(table 1 funcref)`, `(table 0 8 externref)`.
impl fmt::Display for TableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(table {} {})", self.limits, self.element)
    }
}

/// The text format's type: `(global i32)`, `(global (mut i64))`.
impl fmt::Display for GlobalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mutable {
            write!(f, "(global (mut {}))", self.content)
        } else {
            write!(f, "(global {})", self.content)
        }
    }
}

/// The text format's type of the entity, as an import declares it:
/// `(func (param i32) (result i32))`, `(memory 1)`, `(table 1 funcref)`,
/// `(global (mut i32))`.
impl fmt::Display for ExternType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternType::Func(t) => t.fmt(f),
            ExternType::Table(t) => t.fmt(f),
            ExternType::Memory(t) => t.fmt(f),
            ExternType::Global(t) => t.fmt(f),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn extern_types_read_as_the_text_format_writes_them() {
        let limits = |min, max| Limits { min, max };
        let shown: Vec<String> = [
            ExternType::Func(FuncType::new([ValType::I32, ValType::I64], [ValType::F32])),
            ExternType::Func(FuncType::new([], [])),
            ExternType::Memory(MemoryType {
                limits: limits(1, None),
                is_64: false,
            }),
            ExternType::Memory(MemoryType {
                limits: limits(1, Some(2)),
                is_64: false,
            }),
            ExternType::Memory(MemoryType {
                limits: limits(1, None),
                is_64: true,
            }),
            ExternType::Table(TableType {
                element: ValType::FuncRef,
                limits: limits(0, Some(8)),
            }),
            ExternType::Global(GlobalType {
                content: ValType::I32,
                mutable: false,
            }),
            ExternType::Global(GlobalType {
                content: ValType::ExternRef,
                mutable: true,
            }),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "(func (param i32 i64) (result f32))",
                "(func)",
                "(memory 1)",
                "(memory 1 2)",
                "(memory i64 1)",
                "(table 0 8 funcref)",
                "(global i32)",
                "(global (mut externref))",
            ]
        );
    }
}
