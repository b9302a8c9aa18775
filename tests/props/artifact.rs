//! Corrupt artifacts: mutations of a real artifact (re-checksummed, so they get past
//! the checksum into the structural validation) and arbitrary bytes, fed to
//! `Module::deserialize`, which must return `Ok` or `Err` and never panic or crash.
//! A module that loads is dropped without running anything.
//!
//! The mutations address the artifact by ELF region (the ELF header, the section
//! header table, each section's contents) so that small metadata sections are hit as
//! often as the large `.text`. The ELF walk here is independent of framewalk's reader.

#![allow(dead_code, reason = "shared by the property tests and the fuzz target")]

use framewalk::{Engine, Module};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::ops::Range;

/// The module whose artifact is mutated: code with relocations (calls, libcalls),
/// stack maps (references live across calls), every trap kind, tables, globals,
/// memory and data and element segments.
pub const BASE_WAT: &str = r#"
(module $base
  (type $t0 (func (param i32) (result i32)))
  (import "host" "make" (func $make (param i32) (result externref)))
  (import "host" "check" (func $check (param externref) (result i32)))
  (memory 1 4)
  (data (i32.const 16) "framewalk")
  (table $ft 4 funcref)
  (elem (table $ft) (i32.const 0) func $a $b)
  (table $t 2 externref)
  (global $g (mut externref) (ref.null extern))
  (global $n (mut i32) (i32.const 7))
  (func $a (type $t0) (i32.add (local.get 0) (i32.const 1)))
  (func $b (type $t0) (i32.div_u (local.get 0) (global.get $n)))
  (func $hold (export "hold") (param i32) (result i32)
    (local $r externref) (local $s externref)
    (local.set $r (call $make (local.get 0)))
    (local.set $s (call $make (i32.const 2)))
    (table.set $t (i32.const 1) (local.get $s))
    (global.set $g (local.get $r))
    (drop (call_indirect $ft (type $t0) (local.get 0) (local.get 0)))
    (i32.add (call $check (local.get $r)) (call $check (table.get $t (i32.const 1)))))
  (func (export "grow") (result i32)
    (drop (table.grow $t (ref.null extern) (i32.const 1)))
    (memory.grow (i32.const 1)))
  (func (export "floats") (param f32 f64) (result f64)
    (f64.add (f64.promote_f32 (f32.nearest (local.get 0))) (f64.floor (local.get 1))))
  (func (export "traps") (param i32) (result i32)
    (if (i32.eqz (local.get 0)) (then unreachable))
    (drop (i32.load (local.get 0)))
    (i32.div_s (i32.const 1) (i32.sub (local.get 0) (i32.const 1))))
)
"#;

/// A value to write.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// One of a few boundary values.
    Boundary(u8),
    /// The bytes there now, plus a small delta.
    Delta(i8),
    /// Anything.
    Raw(u64),
}

const BOUNDARIES: [u64; 14] = [
    0,
    1,
    2,
    8,
    16,
    28,
    64,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// One edit of the artifact. Positions are `(region, offset)`, taken modulo what exists.
#[derive(Clone, Copy, Debug)]
pub enum Mutation {
    /// Overwrite `1 << width_log2` bytes (little-endian).
    Write {
        /// Region index.
        region: u8,
        /// Offset in the region.
        offset: u32,
        /// 0..=3: 1, 2, 4 or 8 bytes.
        width_log2: u8,
        /// What to write.
        value: Value,
    },
    /// Flip one bit.
    Flip {
        /// Region index.
        region: u8,
        /// Offset in the region.
        offset: u32,
        /// Bit 0..8.
        bit: u8,
    },
    /// Copy bytes from one place to another (e.g. one record over another).
    Copy {
        /// Source region.
        from_region: u8,
        /// Source offset.
        from: u32,
        /// Destination region.
        to_region: u8,
        /// Destination offset.
        to: u32,
        /// Bytes.
        len: u8,
    },
    /// Cut the file at this point.
    Truncate {
        /// Region index.
        region: u8,
        /// Offset in the region.
        offset: u32,
    },
}

/// A corrupted artifact: edits, then (usually) a fresh checksum.
#[derive(Clone, Debug)]
pub struct ArtifactCase {
    /// The edits, in order.
    pub mutations: Vec<Mutation>,
    /// Whether to recompute the checksum after editing.
    pub fix_checksum: bool,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0..BOUNDARIES.len() as u8).prop_map(Value::Boundary),
        3 => any::<i8>().prop_map(Value::Delta),
        1 => any::<u64>().prop_map(Value::Raw),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<u8>(), any::<u32>(), 0..4u8, value()).prop_map(
            |(region, offset, width_log2, value)| Mutation::Write {
                region,
                offset,
                width_log2,
                value
            }
        ),
        3 => (any::<u8>(), any::<u32>(), 0..8u8)
            .prop_map(|(region, offset, bit)| Mutation::Flip { region, offset, bit }),
        1 => (any::<u8>(), any::<u32>(), any::<u8>(), any::<u32>(), 1..64u8).prop_map(
            |(from_region, from, to_region, to, len)| Mutation::Copy {
                from_region,
                from,
                to_region,
                to,
                len
            }
        ),
        1 => (any::<u8>(), any::<u32>())
            .prop_map(|(region, offset)| Mutation::Truncate { region, offset }),
    ]
}

/// Corrupted artifacts.
pub fn artifact_case() -> impl Strategy<Value = ArtifactCase> {
    (vec(mutation(), 1..5), prop::bool::weighted(0.9)).prop_map(|(mutations, fix_checksum)| {
        ArtifactCase {
            mutations,
            fix_checksum,
        }
    })
}

/// The case the strategy builds from `bytes` as its random choices (the fuzz target).
pub fn artifact_case_from_bytes(bytes: &[u8]) -> Option<ArtifactCase> {
    let mut runner = super::gen::runner_from_bytes(bytes);
    artifact_case()
        .new_tree(&mut runner)
        .ok()
        .map(|t| t.current())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The sections of an ELF64 little-endian file: `(name, file range)`; `None` if the
/// section header table is unreadable.
pub fn elf_sections(b: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    let shoff = usize::try_from(u64_at(b, 0x28)?).ok()?;
    let shentsize = usize::from(u16_at(b, 0x3a)?);
    let shnum = usize::from(u16_at(b, 0x3c)?);
    let shstrndx = usize::from(u16_at(b, 0x3e)?);
    if shentsize < 0x28 {
        return None;
    }
    let header = |i: usize| -> Option<(u32, u32, Range<usize>)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(b, at)?;
        let kind = u32_at(b, at + 4)?;
        let off = usize::try_from(u64_at(b, at + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(b, at + 0x20)?).ok()?;
        Some((name, kind, off..off.checked_add(size)?))
    };
    let (_, _, strtab) = header(shstrndx)?;
    let strtab = b.get(strtab)?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let (name, kind, range) = header(i)?;
        let name = strtab.get(name as usize..)?;
        let name = &name[..name.iter().position(|c| *c == 0)?];
        // SHT_NOBITS occupies no file bytes.
        if kind != 8 && range.end <= b.len() && !range.is_empty() {
            out.push((String::from_utf8_lossy(name).into_owned(), range));
        }
    }
    Some(out)
}

/// The file offset of the section header of section `name`, if found.
pub fn section_header(b: &[u8], name: &str) -> Option<usize> {
    let shoff = usize::try_from(u64_at(b, 0x28)?).ok()?;
    let shnum = usize::from(u16_at(b, 0x3c)?);
    let range = elf_sections(b)?.into_iter().find(|(n, _)| n == name)?.1;
    (0..shnum)
        .map(|i| shoff + i * 64)
        .find(|at| u64_at(b, at + 0x18) == Some(range.start as u64))
}

/// The regions mutations address: ELF header, section header table, each section.
pub fn regions(b: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    out.push(0..64.min(b.len()));
    if let (Some(shoff), Some(n)) = (u64_at(b, 0x28), u16_at(b, 0x3c)) {
        let start = shoff as usize;
        let end = start.saturating_add(usize::from(n) * 64).min(b.len());
        if start < end {
            out.push(start..end);
        }
    }
    out.extend(
        elf_sections(b)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, r)| r),
    );
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Recomputes the checksum in `.fw.header` (FNV-1a 64 of the file with the field
/// zeroed), if the header can still be found.
pub fn fix_checksum(b: &mut [u8]) {
    let Some(sections) = elf_sections(b) else {
        return;
    };
    let Some((_, header)) = sections.iter().find(|(n, _)| n == ".fw.header") else {
        return;
    };
    let at = header.start + 16;
    if header.len() < 24 || at + 8 > b.len() {
        return;
    }
    b[at..at + 8].fill(0);
    let sum = fnv1a(b);
    b[at..at + 8].copy_from_slice(&sum.to_le_bytes());
}

/// `base` with `case` applied.
pub fn apply(base: &[u8], case: &ArtifactCase) -> Vec<u8> {
    let regions = regions(base);
    let mut b = base.to_vec();
    let pos = |region: u8, offset: u32| -> usize {
        let r = &regions[usize::from(region) % regions.len()];
        r.start + offset as usize % r.len().max(1)
    };
    let mut cut = b.len();
    for m in &case.mutations {
        match *m {
            Mutation::Write {
                region,
                offset,
                width_log2,
                value,
            } => {
                let at = pos(region, offset);
                let width = 1usize << (width_log2 & 3);
                let end = (at + width).min(b.len());
                let mut old = [0u8; 8];
                old[..end - at].copy_from_slice(&b[at..end]);
                let v = match value {
                    Value::Boundary(i) => BOUNDARIES[usize::from(i) % BOUNDARIES.len()],
                    Value::Delta(d) => u64::from_le_bytes(old).wrapping_add(d as i64 as u64),
                    Value::Raw(v) => v,
                };
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            Mutation::Flip {
                region,
                offset,
                bit,
            } => {
                let at = pos(region, offset);
                b[at] ^= 1 << (bit & 7);
            }
            Mutation::Copy {
                from_region,
                from,
                to_region,
                to,
                len,
            } => {
                let from = pos(from_region, from);
                let to = pos(to_region, to);
                let len = usize::from(len).min(b.len() - from).min(b.len() - to);
                b.copy_within(from..from + len, to);
            }
            Mutation::Truncate { region, offset } => cut = cut.min(pos(region, offset)),
        }
    }
    b.truncate(cut);
    if case.fix_checksum {
        fix_checksum(&mut b);
    }
    b
}

/// How `Module::deserialize` answered.
#[derive(Debug)]
pub enum Loaded {
    /// It loaded (and was dropped unrun).
    Ok,
    /// It was rejected with this message.
    Err(String),
}

/// Loads `bytes`; a panic propagates (that is the bug the fuzz target looks for).
pub fn load(engine: &Engine, bytes: &[u8]) -> Loaded {
    // SAFETY: the bytes are an edit of an artifact of ours (or arbitrary bytes) that
    // the loader must accept or reject; a module that loads is dropped unrun, so none
    // of its code runs. What the loader itself reads is what is under test.
    match unsafe { Module::deserialize(engine, bytes) } {
        Ok(module) => {
            drop(module);
            Loaded::Ok
        }
        Err(e) => Loaded::Err(e.to_string()),
    }
}

/// The error kind of a rejection, for a coverage summary (the message up to a colon or
/// digit).
pub fn error_kind(message: &str) -> String {
    let end = message
        .find(|c: char| c == ':' || c == '(' || c.is_ascii_digit())
        .unwrap_or(message.len());
    message[..end].trim().to_string()
}
