//! Memory-mapped files. The only module that turns raw mapping pointers into
//! slices; every `unsafe` block of the log lives here.
//!
//! Files are mapped read-only and shared: readers slice records straight out
//! of the page cache. The single writer appends with positional writes
//! (`pwrite`) into the same page cache, which the mapping shows at once.
//! Writing through a writable shared mapping was measured slower: every
//! writeback write-protects each written page again (one TLB-shootdown IPI
//! per page), and prefaulting zero-fills pages only to overwrite them.
//!
//! # Invariants the callers keep
//! - The single writer writes only bytes that no reader has been told about
//!   yet (beyond the published head), and never rewrites bytes below it while
//!   the log is open. Recovery, which does rewrite, runs before any reader
//!   exists.
//! - A file is never shortened below a byte range that a reader may still
//!   slice; sealing a segment shortens it only past its last record.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{FallocateFlags, fallocate};

/// A file mapped shared and read-only for its whole mapped length, written
/// with positional writes.
#[derive(Debug)]
pub(crate) struct MappedFile {
    file: File,
    map: MmapRaw,
}

impl MappedFile {
    /// Creates `path` (it must not exist), sized and preallocated to `len`.
    pub(crate) fn create(path: &Path, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Self::from_file(file, len)
    }

    /// Opens `path` and maps at least `min_len` bytes, growing (and
    /// preallocating) the file when it is shorter.
    pub(crate) fn open(path: &Path, min_len: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len().max(min_len);
        Self::from_file(file, len)
    }

    /// Like [`Self::open`], creating the file when it is missing (derived
    /// data such as an index, which recovery rebuilds).
    pub(crate) fn open_or_create(path: &Path, min_len: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len().max(min_len);
        Self::from_file(file, len)
    }

    fn from_file(file: File, len: u64) -> io::Result<Self> {
        if file.metadata()?.len() < len {
            file.set_len(len)?;
        }
        preallocate(&file, 0, len);
        // memmap2 handles len 0 (an empty slice, no mmap call).
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw_read_only(&file)?;
        Ok(Self { file, map })
    }

    /// The mapped length.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The file's current length on disk.
    pub(crate) fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Bytes `[at, at + len)` of the mapping, or `None` when out of bounds.
    ///
    /// # Safety
    /// No write ([`Self::write_at`], [`Self::zero_tail`]) may touch the range
    /// while the returned slice lives; the log ensures this by reading only
    /// below the head that its single writer published with a release store.
    pub(crate) unsafe fn slice(&self, at: usize, len: usize) -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        // SAFETY: the range is inside the mapping (checked above), the mapping
        // lives as long as `self`, and the caller guarantees no concurrent
        // mutable alias.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(at), len) })
    }

    /// Writes `bytes` at `at`, which must lie inside the mapping so readers
    /// can see them. Only the single writer (beyond the published head) or
    /// recovery (alone) calls this.
    pub(crate) fn write_at(&self, at: usize, bytes: &[u8]) -> io::Result<()> {
        if at
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.map.len())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write of {} bytes at {at} past the mapping of {}",
                    bytes.len(),
                    self.map.len()
                ),
            ));
        }
        self.file.write_all_at(bytes, at as u64)
    }

    /// Makes everything written to the file durable (fdatasync).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Zeroes `[at, end of mapping)`: by punching a hole (cheap, and reads back
    /// as zeros), falling back to writing zeros where the file system cannot.
    ///
    /// Only for recovery, before any reader exists.
    pub(crate) fn zero_tail(&self, at: usize) -> io::Result<()> {
        let len = self.map.len().saturating_sub(at);
        if len == 0 {
            return Ok(());
        }
        let punched = fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            at as u64,
            len as u64,
        );
        if punched.is_ok() {
            preallocate(&self.file, at as u64, len as u64);
            return Ok(());
        }
        let zeros = vec![0u8; len.min(1 << 20)];
        let mut pos = at;
        while pos < at + len {
            let n = zeros.len().min(at + len - pos);
            self.write_at(pos, &zeros[..n])?;
            pos += n;
        }
        self.sync_data()
    }

    /// Shortens the file to `len` bytes (sealing a segment). The mapping keeps
    /// its length; nothing may touch it past `len` afterwards.
    pub(crate) fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Reserves disk blocks so appends neither fault on allocation nor hit ENOSPC
/// in the middle of a record. Best effort: not every file system supports it.
fn preallocate(file: &File, at: u64, len: u64) {
    if len > 0 {
        let _ = fallocate(file, FallocateFlags::KEEP_SIZE, at, len);
    }
}

/// fsync of a directory, so that files created or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
