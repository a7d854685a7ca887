//! Memory-mapped files. The only module that turns raw mapping pointers into
//! slices; every `unsafe` block of the crate lives here, and this module
//! alone keeps what makes them sound.
//!
//! Files are mapped read-only and shared: readers slice records straight out
//! of the page cache. The single writer appends with positional writes
//! (`pwrite`) into the same page cache, which the mapping shows at once.
//! Writing through a writable shared mapping was measured slower: every
//! writeback write-protects each written page again (one TLB-shootdown IPI
//! per page), and prefaulting zero-fills pages only to overwrite them.
//!
//! # How a slice stays immutable
//! Each file has a published watermark. [`MappedFile::read`] (shared
//! access) hands out bytes only below it; [`MappedFile::write_at`] and
//! [`MappedFile::truncate`] refuse to touch anything below it, and the
//! watermark only grows. So a slice from `read` is never written while it
//! lives, whatever the caller does. Recovery, which reads and rewrites
//! bytes that were never published, does so through `&mut self`
//! ([`MappedFile::read_exclusive`], [`MappedFile::zero_tail`]): the borrow
//! checker proves that no other access to the file exists meanwhile (and the
//! data directory's lock keeps other processes out).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;
use rustix::fs::{FallocateFlags, fallocate};

/// The first disk reservation of a file, and the largest step by which a
/// reservation grows ahead of the writes.
const FIRST_RESERVATION: usize = 64 * 1024;
const MAX_RESERVATION_STEP: usize = 8 << 20;
/// Slices one vectored write takes at most (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// A file mapped shared and read-only for its whole mapped length, written
/// with positional writes.
///
/// The file has its full length from the start, but sparse: disk blocks are
/// reserved (`fallocate`) in steps ahead of the writes, each step as large
/// as what the file already holds (64 KiB first, at most 8 MiB), so an empty
/// topic costs a few blocks rather than its whole segment, and what is
/// reserved ahead never exceeds what is written.
#[derive(Debug)]
pub(crate) struct MappedFile {
    /// The open file, until [`Self::release`]: a sealed, synced segment is
    /// read through its mapping alone and holds no file descriptor.
    file: RwLock<Option<File>>,
    map: MmapRaw,
    /// Bytes from 0 whose blocks are reserved (or written); only the single
    /// writer (or recovery) moves it.
    reserved: AtomicUsize,
    /// Bytes from 0 that readers may see: complete, and never written
    /// again while the file is mapped. Only grows.
    published: AtomicUsize,
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
        // memmap2 handles len 0 (an empty slice, no mmap call).
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw_read_only(&file)?;
        // Nothing is known to be reserved: the first write reserves from
        // where it starts (blocks before it hold data already).
        Ok(Self {
            file: RwLock::new(Some(file)),
            map,
            reserved: AtomicUsize::new(0),
            published: AtomicUsize::new(0),
        })
    }

    /// Reserves disk blocks for `[at, end)` and a step beyond, when not yet
    /// done, so appends neither fault on allocation nor hit ENOSPC in the
    /// middle of a record. Best effort: a file system without `fallocate`
    /// allocates on write, and a full disk fails the write itself.
    fn reserve(&self, at: usize, end: usize) {
        let reserved = self.reserved.load(Ordering::Relaxed);
        if end <= reserved {
            return;
        }
        let step = end.clamp(FIRST_RESERVATION, MAX_RESERVATION_STEP);
        let until = end.saturating_add(step).min(self.map.len()).max(end);
        let from = reserved.max(at);
        if let Some(file) = &*self.file.read() {
            preallocate(file, from as u64, (until - from) as u64);
        }
        self.reserved.store(until, Ordering::Relaxed);
    }

    /// The mapped length.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Runs `f` on the open file, or fails when it was released.
    fn with_file<T>(&self, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        match &*self.file.read() {
            Some(file) => f(file),
            None => Err(io::Error::other(
                "the file was released: its segment is sealed",
            )),
        }
    }

    /// Closes the file descriptor; the mapping stays readable. For a sealed
    /// segment whose bytes are synced: nothing writes or syncs it again.
    pub(crate) fn release(&self) {
        self.file.write().take();
    }

    /// True once [`Self::release`] closed the file.
    pub(crate) fn is_released(&self) -> bool {
        self.file.read().is_none()
    }

    /// The file's current length on disk.
    pub(crate) fn file_len(&self) -> io::Result<u64> {
        self.with_file(|f| Ok(f.metadata()?.len()))
    }

    /// Makes bytes `[0, upto)` readable through [`Self::read`], and
    /// immutable from now on (release: whatever was written below `upto`
    /// before this call is what readers see). Never moves back.
    pub(crate) fn publish(&self, upto: usize) {
        self.published
            .fetch_max(upto.min(self.map.len()), Ordering::Release);
    }

    /// The published length (acquire).
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Published bytes `[at, at + len)`, or `None` when any of them is not
    /// published.
    pub(crate) fn read(&self, at: usize, len: usize) -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        if end > self.published() {
            return None;
        }
        // SAFETY: `[at, end)` lies inside the mapping (published never
        // exceeds its length) and the mapping lives as long as `self`. The
        // bytes are published, and nothing writes or truncates below the
        // published mark (`write_at` and `truncate` refuse; `zero_tail`
        // needs `&mut self`, impossible while this borrow lives), so they
        // do not change while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(at), len) })
    }

    /// Bytes `[at, at + len)` of the mapping, published or not, or `None`
    /// past its end: for recovery, which owns the file alone.
    pub(crate) fn read_exclusive(&mut self, at: usize, len: usize) -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        // SAFETY: inside the mapping (checked above), which lives as long
        // as `self`; `&mut self` is held for the slice's life, so no write
        // through this file can happen meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(at), len) })
    }

    /// Writes `bytes` at `at`, at or past the published mark and inside
    /// the mapping (so readers can see them once published).
    pub(crate) fn write_at(&self, at: usize, bytes: &[u8]) -> io::Result<()> {
        self.check_write(at, bytes.len())?;
        self.with_file(|f| f.write_all_at(bytes, at as u64))
    }

    /// Writes the slices of `bufs` one after the other from `at` (one
    /// positional vectored write per [`IOV_MAX`] slices), under the rules
    /// of [`Self::write_at`].
    pub(crate) fn write_vectored_at(&self, at: usize, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.check_write(at, len)?;
        self.with_file(|f| {
            let (mut bufs, mut at) = (bufs, at as u64);
            while !bufs.is_empty() {
                let n = bufs.len().min(IOV_MAX);
                match rustix::io::pwritev(f, &bufs[..n], at) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(written) => {
                        at += written as u64;
                        IoSlice::advance_slices(&mut bufs, written);
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
    }

    /// Refuses a write of `len` bytes at `at` below the published mark or
    /// past the mapping; reserves the disk for it.
    fn check_write(&self, at: usize, len: usize) -> io::Result<()> {
        if at < self.published() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write at {at}, below the published {}: published bytes never change",
                    self.published()
                ),
            ));
        }
        let Some(end) = at.checked_add(len).filter(|&end| end <= self.map.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write of {len} bytes at {at} past the mapping of {}",
                    self.map.len()
                ),
            ));
        };
        self.reserve(at, end);
        Ok(())
    }

    /// Makes everything written to the file durable (fdatasync).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.with_file(File::sync_data)
    }

    /// Zeroes `[at, end of mapping)`: by punching a hole (cheap, and reads back
    /// as zeros), falling back to writing zeros where the file system cannot.
    ///
    /// Only for recovery, which owns the file alone.
    pub(crate) fn zero_tail(&mut self, at: usize) -> io::Result<()> {
        let len = self.map.len().saturating_sub(at);
        if len == 0 {
            return Ok(());
        }
        let punched = self.with_file(|file| {
            fallocate(
                file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                at as u64,
                len as u64,
            )
            .map_err(io::Error::from)
        });
        if punched.is_ok() {
            // The next writes reserve again, in steps.
            self.reserved.store(at, Ordering::Relaxed);
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

    /// Shortens the file to `len` bytes, never below the published mark
    /// (sealing a segment). The mapping keeps its length; nothing may touch
    /// it past `len` afterwards.
    pub(crate) fn truncate(&self, len: u64) -> io::Result<()> {
        if len < self.published() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "truncate to {len}, below the published {}",
                    self.published()
                ),
            ));
        }
        self.with_file(|f| f.set_len(len))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Bytes of disk the file holds (allocated blocks, preallocated ones
    /// included).
    fn on_disk(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn disk_is_reserved_in_steps_that_grow_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = MappedFile::create(&path, 64 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 20);
        assert!(on_disk(&path) < 64 * 1024, "empty: {}", on_disk(&path));
        f.write_at(0, &[1u8; 4096]).unwrap();
        let first = on_disk(&path);
        assert!(first <= 2 * FIRST_RESERVATION as u64, "{first}");
        // 4 MiB written: at most as much again reserved ahead.
        let chunk = vec![2u8; 1 << 20];
        for i in 0..4 {
            f.write_at(4096 + i * chunk.len(), &chunk).unwrap();
        }
        let used = on_disk(&path);
        assert!(used >= 4 << 20, "{used}");
        assert!(
            used <= 9 << 20,
            "reserved ahead is bounded by what is written: {used}"
        );
        // Zeroing the tail gives the reservation back.
        let mut f = f;
        f.zero_tail(4096).unwrap();
        assert!(on_disk(&path) < 1 << 20, "{}", on_disk(&path));
    }

    #[test]
    fn published_bytes_are_readable_and_never_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = MappedFile::create(&dir.path().join("f"), 64 * 1024).unwrap();
        f.write_at(0, b"abcdefgh").unwrap();
        assert_eq!(f.read(0, 8), None, "not published yet");
        f.publish(8);
        assert_eq!(f.read(0, 8), Some(&b"abcdefgh"[..]));
        assert_eq!(f.read(4, 8), None, "past the mark");
        assert!(f.write_at(7, b"x").is_err(), "below the mark");
        assert!(f.truncate(4).is_err(), "below the mark");
        f.write_at(8, b"ijkl").unwrap();
        f.publish(4);
        assert_eq!(f.published(), 8, "the mark never moves back");
        f.publish(12);
        assert_eq!(f.read(8, 4), Some(&b"ijkl"[..]));
    }
}
