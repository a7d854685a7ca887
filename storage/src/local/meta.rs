//! The local metadata store: small documents as files in the data
//! directory, each written atomically (a temporary file synced, renamed over
//! the old one, the directory synced), so a crash leaves the old document or
//! the new one.
//!
//! Where each namespace lives:
//! - [`Namespace::Settings`]: `DATA/topics/NAME/settings.json`, a topic's
//!   own settings ([`crate::TopicOverrides`] as JSON, e.g.
//!   `{"fsync": "always", "retention_age": "7days"}`). Every topic has one
//!   (`{}` when it has no settings of its own), so that a deleted file is
//!   noticed: a topic whose `settings.json` is missing or bad is not opened
//!   rather than opened with the broker's settings, which could be weaker.
//! - [`Namespace::Hooks`]: `DATA/KEY` (the registry is `hooks.json`).
//! - [`Namespace::Shared`]: `DATA/topics/TOPIC/shared.GROUP.json`, a
//!   work-sharing group's floor and the seqs settled above it (deleted
//!   with its topic).
//! - [`Namespace::Tickets`]: in memory. A ticket lives seconds and is
//!   good for one connection to this process, so it need not survive a
//!   restart; at most [`MAX_EXPIRING`] live at once.
//!
//! Revisions live in memory: one process owns the directory (its `LOCK`),
//! so a revision read in this process is the one to compare against.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fanlog_protocol::{GroupName, TopicName};
use parking_lot::Mutex;

use super::mmap::sync_dir;
use crate::{Expect, MetaStore, Namespace, Result, StorageError, Versioned};

const SETTINGS_FILE: &str = "settings.json";

/// Documents in files under a data directory.
#[derive(Debug)]
pub struct LocalMeta {
    dir: PathBuf,
    /// The revision of each document read or written since open; a
    /// document first seen on disk is at revision 1.
    revisions: Mutex<HashMap<(Namespace, String), u64>>,
    /// Documents kept in memory with their expiry (tickets).
    memory: Mutex<HashMap<(Namespace, String), (Versioned, Instant)>>,
}

/// Most in-memory documents alive at once.
pub const MAX_EXPIRING: usize = 100_000;

impl LocalMeta {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            revisions: Mutex::new(HashMap::new()),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// A live in-memory document (expired ones count as absent).
    fn live(&self, ns: Namespace, key: &str, take: bool) -> Option<Versioned> {
        let mut memory = self.memory.lock();
        let slot = (ns, key.to_owned());
        let (doc, until) = if take {
            memory.remove(&slot)?
        } else {
            memory.get(&slot).cloned()?
        };
        (until > Instant::now()).then_some(doc)
    }

    /// The file of a document; keys are plain file names (topic names for
    /// settings), never paths.
    fn path(&self, ns: Namespace, key: &str) -> Result<PathBuf> {
        let plain = !key.is_empty() && !key.starts_with('.') && !key.contains(['/', '\\', '\0']);
        match ns {
            Namespace::Settings if TopicName::new(key).is_ok() => {
                Ok(self.dir.join("topics").join(key).join(SETTINGS_FILE))
            }
            Namespace::Hooks if plain => Ok(self.dir.join(key)),
            Namespace::Shared => match key.split_once('/') {
                Some((topic, group))
                    if TopicName::new(topic).is_ok() && GroupName::new(group).is_ok() =>
                {
                    Ok(self
                        .dir
                        .join("topics")
                        .join(topic)
                        .join(format!("shared.{group}.json")))
                }
                _ => Err(StorageError::Config(format!(
                    "{key:?} is not <topic>/<group>"
                ))),
            },
            Namespace::Tickets => Err(StorageError::Config(
                "tickets are kept in memory: use put_expiring and take".into(),
            )),
            _ => Err(StorageError::Config(format!(
                "{key:?} is not a key of the {ns:?} documents"
            ))),
        }
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path)(e)),
    }
}

/// Replaces `path` with `bytes` atomically and durably, through a
/// temporary file of its own (two writers never share one).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("doc");
    let tmp = dir.join(format!("{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StorageError::io(path)(e));
    }
    sync_dir(dir).map_err(StorageError::io(dir))
}

impl MetaStore for LocalMeta {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>> {
        if ns == Namespace::Tickets {
            return Ok(self.live(ns, key, false));
        }
        let path = self.path(ns, key)?;
        let mut revisions = self.revisions.lock();
        let Some(value) = read(&path)? else {
            return Ok(None);
        };
        let revision = *revisions.entry((ns, key.to_owned())).or_insert(1);
        Ok(Some(Versioned { value, revision }))
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8], expect: Expect) -> Result<u64> {
        // Tickets are refused here (they expire: `put_expiring`).
        let path = self.path(ns, key)?;
        // Held across the check and the write: a compare-and-swap.
        let mut revisions = self.revisions.lock();
        let slot = (ns, key.to_owned());
        let exists = path.exists();
        let current = exists.then(|| *revisions.get(&slot).unwrap_or(&1));
        let ok = match expect {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Revision(r) => current == Some(r),
        };
        if !ok {
            return Err(StorageError::Conflict {
                namespace: format!("{ns:?}"),
                key: key.to_owned(),
            });
        }
        write_atomic(&path, value)?;
        let next = current.unwrap_or(0) + 1;
        revisions.insert(slot, next);
        Ok(next)
    }

    fn put_expiring(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<u64> {
        if ns != Namespace::Tickets {
            return Err(StorageError::Config(format!(
                "{ns:?} documents do not expire"
            )));
        }
        let now = Instant::now();
        let mut memory = self.memory.lock();
        if memory.len() >= MAX_EXPIRING {
            memory.retain(|_, (_, until)| *until > now);
        }
        if memory.len() >= MAX_EXPIRING {
            return Err(StorageError::LimitReached(format!(
                "{MAX_EXPIRING} tickets are outstanding"
            )));
        }
        let slot = (ns, key.to_owned());
        if memory.get(&slot).is_some_and(|(_, until)| *until > now) {
            return Err(StorageError::Conflict {
                namespace: format!("{ns:?}"),
                key: key.to_owned(),
            });
        }
        let doc = Versioned {
            value: value.to_vec(),
            revision: 1,
        };
        memory.insert(slot, (doc, now + ttl));
        Ok(1)
    }

    fn take(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>> {
        if ns == Namespace::Tickets {
            return Ok(self.live(ns, key, true));
        }
        let mut revisions = self.revisions.lock();
        let path = self.path(ns, key)?;
        let Some(value) = read(&path)? else {
            return Ok(None);
        };
        let revision = revisions.remove(&(ns, key.to_owned())).unwrap_or(1);
        std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(StorageError::io(dir))?;
        }
        Ok(Some(Versioned { value, revision }))
    }

    fn delete(&self, ns: Namespace, key: &str) -> Result<()> {
        if ns == Namespace::Tickets {
            self.memory.lock().remove(&(ns, key.to_owned()));
            return Ok(());
        }
        let path = self.path(ns, key)?;
        let mut revisions = self.revisions.lock();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path)(e)),
        }
        revisions.remove(&(ns, key.to_owned()));
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(StorageError::io(dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_guard_writes_and_keys_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let m = LocalMeta::new(dir.path());
        assert_eq!(m.get(Namespace::Hooks, "hooks.json").unwrap(), None);
        let r1 = m
            .put(Namespace::Hooks, "hooks.json", b"a", Expect::Absent)
            .unwrap();
        assert!(matches!(
            m.put(Namespace::Hooks, "hooks.json", b"b", Expect::Absent),
            Err(StorageError::Conflict { .. })
        ));
        let r2 = m
            .put(Namespace::Hooks, "hooks.json", b"b", Expect::Revision(r1))
            .unwrap();
        assert!(r2 > r1);
        assert!(matches!(
            m.put(Namespace::Hooks, "hooks.json", b"c", Expect::Revision(r1)),
            Err(StorageError::Conflict { .. })
        ));
        let got = m.get(Namespace::Hooks, "hooks.json").unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.revision), (&b"b"[..], r2));
        assert_eq!(std::fs::read(dir.path().join("hooks.json")).unwrap(), b"b");
        m.delete(Namespace::Hooks, "hooks.json").unwrap();
        assert_eq!(m.get(Namespace::Hooks, "hooks.json").unwrap(), None);
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(m.put(Namespace::Hooks, bad, b"x", Expect::Any).is_err());
        }
        assert!(m.get(Namespace::Settings, "no/topic").is_err());
        // Tickets: in memory, single use, gone after their time.
        m.put_expiring(Namespace::Tickets, "t1", b"g", Duration::from_secs(60))
            .unwrap();
        assert!(matches!(
            m.put_expiring(Namespace::Tickets, "t1", b"g", Duration::from_secs(60)),
            Err(StorageError::Conflict { .. })
        ));
        assert_eq!(
            m.take(Namespace::Tickets, "t1").unwrap().unwrap().value,
            b"g"
        );
        assert_eq!(m.take(Namespace::Tickets, "t1").unwrap(), None);
        m.put_expiring(Namespace::Tickets, "t2", b"g", Duration::from_millis(1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.take(Namespace::Tickets, "t2").unwrap(), None, "expired");
        assert!(m.put(Namespace::Tickets, "t3", b"g", Expect::Any).is_err());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
