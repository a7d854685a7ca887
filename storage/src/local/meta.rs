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
//!
//! Revisions live in memory: one process owns the directory (its `LOCK`),
//! so a revision read in this process is the one to compare against.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use fanlog_protocol::TopicName;
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
}

impl LocalMeta {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            revisions: Mutex::new(HashMap::new()),
        }
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
        let path = self.path(ns, key)?;
        let mut revisions = self.revisions.lock();
        let Some(value) = read(&path)? else {
            return Ok(None);
        };
        let revision = *revisions.entry((ns, key.to_owned())).or_insert(1);
        Ok(Some(Versioned { value, revision }))
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8], expect: Expect) -> Result<u64> {
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

    fn delete(&self, ns: Namespace, key: &str) -> Result<()> {
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
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
