//! Consumer offsets: the committed position of each consumer group of a topic.
//!
//! Stored as a small log of its own (`offsets.log` in the topic directory), so
//! a commit is one appended record, never a rewrite in place.
//!
//! Wire format of one commit (integers little-endian):
//!
//! ```text
//! offset size  field
//!  0      4    crc32c of bytes [4, 13 + name_len)
//!  4      8    committed offset: the next seq the group will read
//! 12      1    name_len
//! 13   name_len  group name
//! ```
//!
//! On open the file is replayed (last commit of a group wins) and a torn or
//! corrupt tail is cut off; a corrupt commit in the middle is skipped (the
//! scan finds the next commit that verifies) and the file is written anew. When the file grows well past its live contents
//! it is compacted: written anew beside it, synced, and renamed over it.
//!
//! A commit writes its record at once (so it survives a process crash);
//! every sync, and compaction, runs on the flusher thread, never on the
//! committer's. Under [`Durability::Always`] a committer waits for the next
//! sync, and commits that arrive while one runs share the one after it
//! (group commit, as publishes do).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fanlog_protocol::GroupName;
use parking_lot::Mutex;

use super::mmap::sync_dir;
use crate::Durability;
use crate::{OffsetStore, Result, StorageError};

const FILE: &str = "offsets.log";
const COMPACT_AT: u64 = 64 << 10;

#[derive(Debug)]
struct State {
    /// Shared with a sync in progress, which runs outside the lock.
    file: Arc<File>,
    len: u64,
    groups: HashMap<GroupName, u64>,
    dirty: bool,
    /// Commits written since open.
    written: u64,
}

/// How far commits are synced.
#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// Commits `1..=upto` are durable.
    upto: u64,
    /// A sync failed: no later commit is acknowledged as durable.
    failed: bool,
}

/// A topic's consumer group offsets in `offsets.log`; the local
/// [`crate::OffsetStore`].
#[derive(Debug)]
pub struct LocalOffsets {
    dir: PathBuf,
    durability: Durability,
    state: Mutex<State>,
    synced: tokio::sync::watch::Sender<Synced>,
    /// Syncs that wrote something, since open.
    syncs: std::sync::atomic::AtomicU64,
}

fn encode(group: &GroupName, seq: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    // Group names are at most 255 bytes (GroupName's invariant).
    out.push(group.as_str().len() as u8);
    out.extend_from_slice(group.as_str().as_bytes());
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The commit at `at`, if one that verifies starts there: (group, seq, end).
fn commit_at(bytes: &[u8], at: usize) -> Option<(GroupName, u64, usize)> {
    let head = bytes.get(at..at + 13)?;
    let name_len = head[12] as usize;
    let end = at + 13 + name_len;
    let body = bytes.get(at + 4..end)?;
    let crc = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if name_len == 0 || crc != crc32c::crc32c(body) {
        return None;
    }
    let name = GroupName::from_bytes(&bytes[at + 13..end]).ok()?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[4..12]);
    Some((name, u64::from_le_bytes(seq), end))
}

/// What replaying `offsets.log` found.
struct Replayed {
    groups: HashMap<GroupName, u64>,
    /// End of the last valid commit: what follows is a torn tail.
    valid_end: usize,
    /// Bytes before `valid_end` that were not valid commits (corruption in
    /// the middle, skipped).
    skipped: usize,
}

/// Replays commits in order (the last of a group wins). A commit that fails
/// its checksum in the middle is skipped: the scan moves on byte by byte to
/// the next commit that verifies, so one bad byte costs one commit (its
/// group keeps its commit before it), never the commits after it.
fn replay(bytes: &[u8]) -> Replayed {
    let mut r = Replayed {
        groups: HashMap::new(),
        valid_end: 0,
        skipped: 0,
    };
    let mut at = 0;
    while at < bytes.len() {
        match commit_at(bytes, at) {
            Some((name, seq, end)) => {
                r.skipped += at - r.valid_end;
                r.groups.insert(name, seq);
                r.valid_end = end;
                at = end;
            }
            None => at += 1,
        }
    }
    r
}

impl LocalOffsets {
    /// Opens the offsets of the topic in `dir`, cutting a torn tail.
    pub(crate) fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let path = dir.join(FILE);
        let io = StorageError::io(&path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StorageError::io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(StorageError::io(&path))?;
        let Replayed {
            groups,
            valid_end: valid,
            skipped,
        } = replay(&bytes);
        if valid < bytes.len() {
            tracing::warn!(file = %path.display(), cut = bytes.len() - valid, "truncating torn offsets tail");
            file.set_len(valid as u64).map_err(io)?;
        }
        let store = Self {
            dir: dir.to_owned(),
            durability,
            state: Mutex::new(State {
                file: Arc::new(file),
                len: valid as u64,
                groups,
                dirty: false,
                written: 0,
            }),
            synced: tokio::sync::watch::Sender::new(Synced::default()),
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        if skipped > 0 {
            // Written anew, so the bad bytes cannot be read again.
            tracing::error!(file = %path.display(), skipped, "corrupt commits in the middle of the offsets were skipped; every valid commit is kept");
            store.compact(&mut store.state.lock())?;
        }
        Ok(store)
    }

    #[cfg(test)]
    fn commit_any(&self, group: &GroupName, seq: u64) -> Result<()> {
        self.commit(group, seq, usize::MAX).map(drop)
    }

    /// Tells the waiters how a sync of commits `..=upto` went.
    fn synced_upto(&self, upto: u64, result: Result<()>) -> Result<()> {
        match &result {
            Ok(()) => self.synced.send_modify(|s| s.upto = s.upto.max(upto)),
            Err(_) => self.synced.send_modify(|s| s.failed = true),
        }
        result
    }

    fn compact(&self, st: &mut State) -> Result<()> {
        let path = self.dir.join(FILE);
        let tmp = self.dir.join("offsets.log.tmp");
        let mut bytes = Vec::new();
        for (g, s) in &st.groups {
            encode(g, *s, &mut bytes);
        }
        let io = StorageError::io;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir).map_err(io(&self.dir))?;
        st.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?,
        );
        st.len = bytes.len() as u64;
        st.dirty = false;
        Ok(())
    }
}

/// The error of a commit that cannot be made durable.
fn sync_failed(path: &Path) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(
            "a sync of the consumer offsets failed; no commit is acknowledged",
        ),
    }
}

fn live_len(groups: &HashMap<GroupName, u64>) -> u64 {
    groups.keys().map(|g| 13 + g.as_str().len() as u64).sum()
}

impl OffsetStore for LocalOffsets {
    /// The committed offset of `group`, if it ever committed.
    fn committed(&self, group: &GroupName) -> Option<u64> {
        self.state.lock().groups.get(group).copied()
    }
    /// Every group and its committed offset.
    fn groups(&self) -> Vec<(GroupName, u64)> {
        let mut v: Vec<_> = self
            .state
            .lock()
            .groups
            .iter()
            .map(|(g, s)| (g.clone(), *s))
            .collect();
        v.sort();
        v
    }
    /// Records `seq` as `group`'s offset. The write reaches the kernel before
    /// this returns (so it survives a process crash). Under
    /// [`Durability::Always`] the commit's ticket is returned: it is durable
    /// once [`OffsetStore::durable`] says so, after the flusher's next sync.
    fn commit(&self, group: &GroupName, seq: u64, max_groups: usize) -> Result<Option<u64>> {
        let path = self.dir.join(FILE);
        if self.synced.borrow().failed {
            return Err(sync_failed(&path));
        }
        let mut st = self.state.lock();
        if !st.groups.contains_key(group) && st.groups.len() >= max_groups {
            return Err(StorageError::LimitReached(format!(
                "the topic holds its limit of {max_groups} consumer groups"
            )));
        }
        let mut rec = Vec::with_capacity(13 + group.as_str().len());
        encode(group, seq, &mut rec);
        (&*st.file)
            .write_all(&rec)
            .map_err(StorageError::io(&path))?;
        st.len += rec.len() as u64;
        st.groups.insert(group.clone(), seq);
        st.dirty = true;
        st.written += 1;
        Ok((self.durability == Durability::Always).then_some(st.written))
    }
    /// Waits until the commit of `ticket` is synced.
    ///
    /// # Errors
    /// A sync of the offsets failed.
    fn durable(&self, ticket: u64) -> crate::DurableWait<'_> {
        Box::pin(async move {
            let mut rx = self.synced.subscribe();
            match rx.wait_for(|s| s.upto >= ticket || s.failed).await {
                Ok(s) if s.upto >= ticket => Ok(()),
                _ => Err(sync_failed(&self.dir.join(FILE))),
            }
        })
    }
    /// Syncs the commits written since the last sync, compacting the file
    /// first when it has grown well past its live contents. Called on the
    /// flusher thread (and at close); the lock is not held while the disk
    /// syncs, so commits go on meanwhile and share the next sync.
    fn sync(&self) -> Result<()> {
        let path = self.dir.join(FILE);
        let (upto, file) = {
            let mut st = self.state.lock();
            if st.len > COMPACT_AT && st.len > 8 * live_len(&st.groups) {
                // Compaction syncs what it writes.
                let upto = st.written;
                let compacted = self.compact(&mut st);
                drop(st);
                return self.synced_upto(upto, compacted);
            }
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            (st.written, Arc::clone(&st.file))
        };
        let synced = file.sync_data().map_err(StorageError::io(&path));
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.synced_upto(upto, synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GroupName {
        GroupName::new(s).unwrap()
    }

    #[test]
    fn commits_replay_and_last_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        s.commit_any(&g("a"), 5).unwrap();
        s.commit_any(&g("b"), 1).unwrap();
        s.commit_any(&g("a"), 9).unwrap();
        drop(s);
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        assert_eq!(s.committed(&g("a")), Some(9));
        assert_eq!(s.committed(&g("b")), Some(1));
        assert_eq!(s.committed(&g("c")), None);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_commits_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        s.commit_any(&g("a"), 5).unwrap();
        s.commit_any(&g("a"), 6).unwrap();
        drop(s);
        let path = dir.path().join(FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        // Tear the second record, then corrupt variant: flip a byte.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        assert_eq!(s.committed(&g("a")), Some(5));
        s.commit_any(&g("a"), 7).unwrap();
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        assert_eq!(s.committed(&g("a")), Some(5));
    }

    #[test]
    fn a_bad_byte_mid_file_costs_one_commit_not_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        for i in 0..100u64 {
            s.commit_any(&g(&format!("group-{i}")), i + 1).unwrap();
        }
        s.commit_any(&g("group-7"), 1000).unwrap();
        drop(s);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside commit 3 (each is 13 + 7 or 8 bytes).
        bytes[3 * 20 + 6] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        let groups = s.groups();
        assert_eq!(groups.len(), 99, "only the damaged group's commit is lost");
        assert_eq!(s.committed(&g("group-3")), None);
        assert_eq!(s.committed(&g("group-99")), Some(100));
        assert_eq!(s.committed(&g("group-7")), Some(1000));
        drop(s);
        // Written anew: a second open finds no damage and the same groups.
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        assert_eq!(s.groups(), groups);
    }

    /// Under `always` commits wait for a sync that others share: many
    /// concurrent committers, far fewer syncs, and each commit durable only
    /// once its sync has run.
    #[test]
    fn commits_under_always_share_syncs() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(LocalOffsets::open(dir.path(), Durability::Always).unwrap());
        // Nothing is durable before a sync runs.
        let first = s.commit(&g("early"), 1, usize::MAX).unwrap().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waited = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(50), s.durable(first)).await
        });
        assert!(waited.is_err(), "durable before any sync");
        // A flusher: syncs every millisecond until the committers are done.
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let flusher = {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    s.sync().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        rt.block_on(async {
            let committers: Vec<_> = (0..200u64)
                .map(|i| {
                    let s = s.clone();
                    async move {
                        let ticket = s
                            .commit(&g(&format!("g{}", i % 10)), i, usize::MAX)
                            .unwrap();
                        s.durable(ticket.unwrap()).await.unwrap();
                    }
                })
                .collect();
            futures_util::future::join_all(committers).await;
        });
        done.store(true, Ordering::Relaxed);
        flusher.join().unwrap();
        let syncs = s.syncs.load(Ordering::Relaxed);
        assert!((1..200).contains(&syncs), "{syncs} syncs for 201 commits");
        drop(s);
        let s = LocalOffsets::open(dir.path(), Durability::Always).unwrap();
        assert_eq!(s.committed(&g("g9")), Some(199));
        assert_eq!(s.committed(&g("early")), Some(1));
    }

    #[test]
    fn compaction_keeps_every_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        for i in 0..10_000u64 {
            s.commit_any(&g(if i % 2 == 0 { "even" } else { "odd" }), i)
                .unwrap();
            // The flusher syncs, and compacts, about every tick.
            if i % 100 == 99 {
                s.sync().unwrap();
            }
        }
        let len = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(len < COMPACT_AT + 100, "compacted: {len}");
        drop(s);
        let s = LocalOffsets::open(dir.path(), Durability::Never).unwrap();
        assert_eq!(s.committed(&g("even")), Some(9998));
        assert_eq!(s.committed(&g("odd")), Some(9999));
    }
}
