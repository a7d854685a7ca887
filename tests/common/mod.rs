//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fanlog::{Broker, BrokerConfig, Durability, TopicConfig};

/// A config with small segments, so tests roll segments quickly.
pub fn config(durability: Durability, segment_bytes: u64) -> BrokerConfig {
    BrokerConfig {
        topic: TopicConfig {
            durability,
            segment_bytes,
            max_message_bytes: (segment_bytes as usize / 2).min(1 << 20),
            ..TopicConfig::default()
        },
    }
}

pub fn open(dir: &Path, cfg: &BrokerConfig) -> Broker {
    Broker::open(dir, cfg.clone()).expect("open broker")
}

/// Every record of a topic, as (seq, payload), read from seq 0.
pub fn read_all(broker: &Broker, topic: &str) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = broker.read(topic, from, 1000).expect("read");
        if batch.records.is_empty() {
            return out;
        }
        out.extend(
            batch
                .records
                .iter()
                .map(|r| (r.seq(), r.payload().to_vec())),
        );
        from = batch.next;
    }
}

/// Segment data files of a topic, in log order.
pub fn segment_files(data: &Path, topic: &str) -> Vec<PathBuf> {
    files_with(data, topic, "log")
}

/// Segment index files of a topic, in log order.
pub fn index_files(data: &Path, topic: &str) -> Vec<PathBuf> {
    files_with(data, topic, "idx")
}

fn files_with(data: &Path, topic: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("topics").join(topic))
        .expect("topic dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    v
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs the test `child_test` of the current test binary as a child process
/// with `envs`, `kill -9`s it after `after`, and returns the complete lines it
/// printed to stdout. The child test must return at once unless its
/// environment variable is set.
pub fn run_child_then_kill(
    child_test: &str,
    envs: &[(&str, String)],
    after: std::time::Duration,
) -> Vec<String> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    reader.join().expect("reader")
}

/// A config whose small segments are removed beyond `retention_bytes` or
/// `retention_age`.
pub fn retention_config(
    retention_bytes: Option<u64>,
    retention_age: Option<std::time::Duration>,
) -> BrokerConfig {
    BrokerConfig {
        topic: TopicConfig {
            durability: Durability::Never,
            segment_bytes: 4096,
            max_message_bytes: 1024,
            retention_bytes,
            retention_age,
            ..TopicConfig::default()
        },
    }
}
