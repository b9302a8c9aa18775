//! `SourceLocation`: where in the source a wasm instruction came from, as the module's
//! debug information tells it.

use std::fmt;
use std::sync::Arc;

/// One source-level location of a wasm instruction. A frame has several when the
/// compiler inlined calls: the innermost inlined function first, each followed by the
/// function it was inlined into, the frame's own function last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceLocation {
    /// The source function this location is in, as the debug information names it
    /// (often a mangled linkage name; [`SourceLocation::display_function`] demangles).
    pub function: Option<Arc<str>>,
    /// The source file's path as the toolchain recorded it.
    pub file: Option<Arc<str>>,
    /// 1-based line, if known.
    pub line: Option<u32>,
    /// 1-based column, if known.
    pub column: Option<u32>,
    /// Whether this location is inside a function inlined into the next location's.
    pub inlined: bool,
}

impl SourceLocation {
    /// `file:line:column`, with the parts that are known.
    pub fn display_position(&self) -> impl fmt::Display + '_ {
        Position(self)
    }

    /// The function's name, demangled when framewalk is built with demangling (the
    /// `debuginfo` feature).
    pub fn display_function(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.function.as_deref().map(super::display_name)
    }
}

struct Position<'a>(&'a SourceLocation);

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.file.as_deref().unwrap_or("<unknown file>"))?;
        if let Some(line) = self.0.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.0.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}
