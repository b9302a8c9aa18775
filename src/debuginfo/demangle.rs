//! Demangling of the function names toolchains write into wasm name sections and DWARF.

use std::borrow::Cow;

/// `name` demangled if it is a Rust (legacy `_ZN…E` or v0 `_R…`) or Itanium C++
/// (`_Z…`) mangled name; otherwise `name` itself. Rust names lose their hash suffix
/// (`core::panicking::panic`, not `core::panicking::panic::h0123…`).
///
/// Names come from untrusted modules: a name that does not parse is returned as it is,
/// and the C++ demangler's recursion limits bound the work on a malicious one.
pub fn demangle(name: &str) -> Cow<'_, str> {
    // Rust first: legacy Rust names are also valid-looking Itanium names, and
    // rustc-demangle rejects anything that is not Rust.
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return Cow::Owned(format!("{d:#}"));
    }
    if name.starts_with("_Z") {
        if let Ok(symbol) = cpp_demangle::Symbol::new(name) {
            if let Ok(d) = symbol.demangle(&cpp_demangle::DemangleOptions::default()) {
                return Cow::Owned(d);
            }
        }
    }
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn rust_legacy_names_lose_their_hash() {
        assert_eq!(
            demangle("_ZN4core9panicking5panic17h9c6e7a8d1d3bb6a1E"),
            "core::panicking::panic"
        );
    }

    #[test]
    fn rust_v0_names_are_demangled() {
        // `<demo::Grid>::average` in a crate `demo`.
        assert_eq!(
            demangle("_RNvMCs4fqI2P2rA04_4demoNtB2_4Grid7average"),
            "<demo::Grid>::average"
        );
    }

    #[test]
    fn cpp_names_are_demangled() {
        assert_eq!(
            demangle("_ZN6shapes7averageERKNS_4GridEi"),
            "shapes::average(shapes::Grid const&, int)"
        );
        assert_eq!(
            demangle("_ZN6shapesL11checked_divEii"),
            "shapes::checked_div(int, int)"
        );
    }

    #[test]
    fn other_names_are_returned_as_they_are() {
        for name in [
            "main",
            "_Z",
            "_ZN",
            "_R",
            "_ZNzzzz",
            "",
            "shapes::average",
            "$func7",
        ] {
            assert_eq!(demangle(name), name, "{name:?}");
        }
    }

    #[test]
    fn deeply_nested_garbage_does_not_overflow_the_stack() {
        let name = format!("_Z{}", "PFv".repeat(20_000));
        let _ = demangle(&name);
        let name = format!("_RNv{}", "NvC".repeat(20_000));
        let _ = demangle(&name);
    }
}
