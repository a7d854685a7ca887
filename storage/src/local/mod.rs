//! The embedded default storage: one data directory on this machine.
//!
//! ```text
//! DATA/LOCK                                  flock: one broker per directory
//! DATA/topics/NAME/00000000000000000000.log  segment data (records, 8-byte aligned)
//! DATA/topics/NAME/00000000000000000000.idx  u32 position per record
//! DATA/topics/NAME/offsets.log               consumer group commits
//! DATA/topics/NAME/settings.json             the topic's own settings ({} when none)
//! DATA/SETTINGS                              marker: every topic directory holds settings.json
//! DATA/hooks.json                            the hook registry (a `Hooks` document)
//! ```
//!
//! - `log.rs`: [`LocalLog`], a topic's segments with one writer and any
//!   number of readers (its invariants are listed there);
//! - `mmap.rs`: the mapping, home of every `unsafe` block of the crate;
//! - `segment.rs`, `recovery.rs`, `dedupe.rs`: the log's parts;
//! - `offsets.rs`: [`LocalOffsets`], an append-only file of CRC'd commits;
//! - `meta.rs`: [`LocalMeta`], documents as atomically replaced files.

mod dedupe;
mod log;
mod meta;
// The one module allowed `unsafe` (the workspace denies it everywhere
// else): it turns mapping pointers into slices, and keeps what makes
// that sound.
#[allow(unsafe_code)]
mod mmap;
mod offsets;
mod recovery;
mod segment;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fanlog_protocol::TopicName;
use rustix::fs::{FlockOperation, flock};

pub use log::LocalLog;
pub use meta::LocalMeta;
pub use offsets::LocalOffsets;
pub use recovery::RecoveryReport;

use crate::{
    Durability, Leases, LocalLeases, MetaStore, Namespace, OpenedTopic, Result, Storage,
    StorageError, TopicConfig, TopicOverrides,
};

/// The file in the data directory that says every topic directory holds a
/// `settings.json`.
const SETTINGS_MARKER: &str = "SETTINGS";

/// A data directory of mmap-backed topic logs, held by this process alone.
#[derive(Debug)]
pub struct LocalStorage {
    dir: PathBuf,
    topics_dir: PathBuf,
    meta: LocalMeta,
    leases: LocalLeases,
    _lock: File,
}

impl LocalStorage {
    /// Opens (creating when missing) the data directory `dir` and locks it.
    ///
    /// # Errors
    /// [`StorageError::InUse`] when another process holds it,
    /// [`StorageError::Io`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let topics_dir = dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(StorageError::io(&topics_dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StorageError::io(&lock_path))?;
        // A broker of this process that just closed may still seem to hold
        // the lock for a moment: a child process that another thread is
        // starting holds a copy of every descriptor until it execs (close-
        // on-exec closes it only then). Asked again for up to half a
        // second before the directory is called in use.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(StorageError::InUse(dir.clone()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let storage = Self {
            meta: LocalMeta::new(&dir),
            leases: LocalLeases::default(),
            topics_dir,
            dir,
            _lock: lock,
        };
        storage.give_every_topic_settings()?;
        Ok(storage)
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A directory from before settings files existed: each topic gets
    /// `{}` (it ran with the broker's settings), then the marker is
    /// written. From then on a missing file was deleted, not never written.
    fn give_every_topic_settings(&self) -> Result<()> {
        let marker = self.dir.join(SETTINGS_MARKER);
        if marker.exists() {
            return Ok(());
        }
        for name in self.topics()? {
            if self.meta.get(Namespace::Settings, name.as_str())?.is_none() {
                TopicOverrides::default().store(&self.meta, &name)?;
            }
        }
        std::fs::write(&marker, b"every topic directory holds settings.json\n")
            .map_err(StorageError::io(&marker))
    }

    fn topic_dir(&self, name: &TopicName) -> PathBuf {
        self.topics_dir.join(name.as_str())
    }

    /// The topic's own settings; a topic that has records but lost them is
    /// refused, never opened with the broker's (possibly weaker) settings.
    fn own_settings(&self, name: &TopicName) -> Result<TopicOverrides> {
        let dir = self.topic_dir(name);
        let path = dir.join("settings.json");
        let failed = |reason: String| StorageError::TopicFailed {
            topic: name.to_string(),
            reason,
        };
        match self.meta.get(Namespace::Settings, name.as_str()) {
            Ok(Some(doc)) => serde_json::from_slice(&doc.value).map_err(|e| {
                failed(format!(
                    "invalid configuration: {}: {e}. Fix the file (or remove the topic)",
                    path.display()
                ))
            }),
            Ok(None) if !log::has_segments(&dir) => {
                // Made but never written to (a crash between its directory
                // and its settings): it has nothing that settings could
                // have governed, so it starts with none of its own.
                std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
                TopicOverrides::default().store(&self.meta, name)?;
                Ok(TopicOverrides::default())
            }
            Ok(None) => Err(failed(format!(
                "{} is missing: the topic's own settings (its durability among them) are unknown. Restore the file, or write {{}} into it to run the topic with the broker's settings",
                path.display()
            ))),
            Err(e) => Err(failed(format!("{e}. Fix the file (or remove the topic)"))),
        }
    }

    fn open_dir(&self, name: &TopicName, config: TopicConfig, now_us: u64) -> Result<OpenedTopic> {
        let dir = self.topic_dir(name);
        let durability = config.durability;
        let log = LocalLog::open(name.clone(), &dir, config, now_us)?;
        let offsets = LocalOffsets::open(&dir, durability)?;
        Ok(OpenedTopic {
            log: Box::new(log),
            offsets: Box::new(offsets),
        })
    }

    /// Makes the topic's directory with `settings`, then opens it; a topic
    /// that cannot be made leaves no directory.
    fn make(
        &self,
        name: &TopicName,
        mut config: TopicConfig,
        settings: &TopicOverrides,
        now_us: u64,
    ) -> Result<OpenedTopic> {
        settings.apply(&mut config);
        let dir = self.topic_dir(name);
        let durable = config.durability != Durability::Never;
        let made = std::fs::create_dir_all(&dir)
            .map_err(StorageError::io(&dir))
            .and_then(|()| settings.store(&self.meta, name))
            .and_then(|()| self.open_dir(name, config, now_us))
            .and_then(|t| {
                if durable {
                    mmap::sync_dir(&self.topics_dir).map_err(StorageError::io(&self.topics_dir))?;
                }
                Ok(t)
            });
        if made.is_err() {
            // Closed by now (dropped), so nothing writes into it. Listing a
            // directory takes a descriptor: when the process ran out of
            // them before writing anything (the settings file could not be
            // created), the directory is empty and rmdir, which needs none,
            // removes it.
            if std::fs::remove_dir_all(&dir).is_err() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        made
    }
}

impl Storage for LocalStorage {
    fn topics(&self) -> Result<Vec<TopicName>> {
        let io = |e| StorageError::io(&self.topics_dir)(e);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.topics_dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            match entry
                .file_name()
                .to_str()
                .and_then(|n| TopicName::new(n).ok())
            {
                Some(name) => names.push(name),
                None => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a directory that is not a topic name");
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(
        &self,
        name: &TopicName,
        mut config: TopicConfig,
        create: bool,
        now_us: u64,
    ) -> Result<OpenedTopic> {
        let dir = self.topic_dir(name);
        if create && !dir.exists() {
            return self.make(name, config, &TopicOverrides::default(), now_us);
        }
        self.own_settings(name)?.apply(&mut config);
        self.open_dir(name, config, now_us)
    }

    fn create(
        &self,
        name: &TopicName,
        config: TopicConfig,
        settings: &TopicOverrides,
        now_us: u64,
    ) -> Result<OpenedTopic> {
        self.make(name, config, settings, now_us)
    }

    fn remove(&self, name: &TopicName) -> Result<()> {
        let dir = self.topic_dir(name);
        std::fs::remove_dir_all(&dir).map_err(StorageError::io(&dir))?;
        mmap::sync_dir(&self.topics_dir).map_err(StorageError::io(&self.topics_dir))
    }

    fn meta(&self) -> &dyn MetaStore {
        &self.meta
    }

    fn leases(&self) -> &dyn Leases {
        &self.leases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory is refused while another holder keeps it, and taken
    /// when that holder lets go within half a second (what a child process
    /// that has not exec'd yet looks like).
    #[test]
    fn a_directory_let_go_of_within_half_a_second_opens() {
        let dir = tempfile::tempdir().unwrap();
        let held = LocalStorage::open(dir.path()).unwrap();
        assert!(matches!(
            LocalStorage::open(dir.path()),
            Err(StorageError::InUse(_))
        ));
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            drop(held);
        });
        assert!(LocalStorage::open(dir.path()).is_ok());
        letting_go.join().unwrap();
    }
}
