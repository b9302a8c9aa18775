//! Executable memory for one module's text, followed by its `.eh_frame`.
//!
//! ```text
//!   base                     base + eh_frame_offset(len)
//!   │ text (relocated) │ pad │ .eh_frame │ pad to a page │
//! ```
//!
//! The `.eh_frame` copy sits where the artifact's PC-relative CFI expects it (see
//! `artifact::sections`), so it describes the loaded code without relocation. It is
//! mapped read-execute with the text, and nothing in framewalk executes or walks with
//! it.
//!
//! Invariant (W^X): the mapping is read-write while the text is copied in and relocated,
//! then read-execute for the rest of its life; it is never writable and executable at
//! once.

use crate::artifact::{LoadReloc, LoadTarget};
use crate::compile::RelocKind;
use std::ptr::NonNull;

/// Why code could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum CodeMemoryError {
    /// `mmap` or `mprotect` failed.
    #[error("mapping code memory: {0}")]
    Os(std::io::Error),
    /// The text is too large to lay out.
    #[error("text of {0} bytes is too large to map")]
    TooLarge(usize),
    /// A PC-relative relocation target is more than 2 GiB away.
    #[error("relocation at {offset:#x} is out of range")]
    OutOfRange {
        /// Text offset of the relocation.
        offset: u32,
    },
}

/// Page-aligned read-execute memory holding relocated machine code.
#[derive(Debug)]
pub struct CodeMemory {
    ptr: NonNull<u8>,
    map_len: usize,
    len: usize,
    eh_frame_offset: usize,
    eh_frame_len: usize,
}

// SAFETY: the memory is immutable (read-execute) once constructed; sharing a read-only
// mapping between threads is sound.
unsafe impl Send for CodeMemory {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for CodeMemory {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl CodeMemory {
    /// Maps `text` and, after it, `eh_frame` (at `sections::eh_frame_offset`), applies
    /// `relocs` to the text using `resolve` for external symbols, and makes it
    /// executable.
    pub fn new(
        text: &[u8],
        eh_frame: &[u8],
        relocs: &[LoadReloc],
        resolve: impl Fn(LoadTarget) -> usize,
    ) -> Result<Self, CodeMemoryError> {
        let page = page_size();
        let too_large = || CodeMemoryError::TooLarge(text.len());
        let eh_frame_offset =
            crate::artifact::sections::eh_frame_offset(text.len()).ok_or_else(too_large)?;
        let map_len = eh_frame_offset
            .checked_add(eh_frame.len())
            .and_then(|end| end.max(1).checked_next_multiple_of(page))
            .ok_or_else(too_large)?;
        // SAFETY: an anonymous private mapping with no address hint has no preconditions;
        // the result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(CodeMemoryError::Os(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| CodeMemoryError::Os(std::io::Error::other("mmap returned null")))?;
        let mem = CodeMemory {
            ptr,
            map_len,
            len: text.len(),
            eh_frame_offset,
            eh_frame_len: eh_frame.len(),
        };
        // SAFETY: the mapping is `map_len >= eh_frame_offset + eh_frame.len()` bytes,
        // writable, and private to us.
        let code = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), map_len) };
        code[..text.len()].copy_from_slice(text);
        code[eh_frame_offset..eh_frame_offset + eh_frame.len()].copy_from_slice(eh_frame);
        let base = ptr.as_ptr() as usize;
        for r in relocs {
            let target = match r.target {
                LoadTarget::Text(off) => base + off as usize,
                other => resolve(other),
            };
            let at = r.offset as usize;
            let value = (target as i64).wrapping_add(r.addend);
            match r.kind {
                RelocKind::Abs8 => code[at..at + 8].copy_from_slice(&value.to_le_bytes()),
                RelocKind::PcRel4 => {
                    let rel = value.wrapping_sub((base + at) as i64);
                    let rel = i32::try_from(rel)
                        .map_err(|_| CodeMemoryError::OutOfRange { offset: r.offset })?;
                    code[at..at + 4].copy_from_slice(&rel.to_le_bytes());
                }
            }
        }
        // SAFETY: `ptr..ptr+map_len` is our mapping; switching it to read-execute ends the
        // writable phase (W^X).
        let rc = unsafe {
            libc::mprotect(
                ptr.as_ptr().cast(),
                map_len,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        };
        if rc != 0 {
            return Err(CodeMemoryError::Os(std::io::Error::last_os_error()));
        }
        Ok(mem)
    }

    /// Address of the first byte of text.
    pub fn base(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Length of the text.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The loaded `.eh_frame`, valid at its address (right after the text).
    pub fn eh_frame(&self) -> &[u8] {
        // SAFETY: `[eh_frame_offset, + eh_frame_len)` lies inside our mapping (checked in
        // `new`), which is readable and immutable for as long as `self` lives.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr.as_ptr().add(self.eh_frame_offset),
                self.eh_frame_len,
            )
        }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: we own the mapping; no code in it can be running once the module (and
        // therefore every instance using it) is gone.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.map_len);
        }
    }
}
