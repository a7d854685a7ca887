//! Which storage the behaviour suites run on. By default the embedded
//! mmap log; with `TEST_BACKEND=cluster` a NATS JetStream cluster of three
//! servers that this test process starts once and shares, every data
//! directory a namespace of its own (so tests stay apart and a broker
//! opened again on the same directory finds its topics again).
//!
//! `scripts/test.sh` runs the suites named there a second time this way.

use std::path::Path;
use std::sync::OnceLock;

use fanlog::{Broker, BrokerConfig};

use super::nats::NatsCluster;

/// Whether this run's brokers keep their topics in a cluster.
pub fn cluster() -> bool {
    std::env::var("TEST_BACKEND").is_ok_and(|v| v == "cluster")
}

/// Where a child test process finds its parent's cluster.
const URLS_ENV: &str = "TEST_NATS_URLS";

/// The shared cluster's URLs: the parent's (a child test process), or a
/// cluster started on first use on a thread of its own (its servers
/// outlive every test and stop when this process exits).
fn urls() -> &'static str {
    static SHARED: OnceLock<(Option<NatsCluster>, String)> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            if let Ok(urls) = std::env::var(URLS_ENV) {
                return (None, urls);
            }
            let c = std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(NatsCluster::start_shared())
            })
            .join()
            .expect("start the shared NATS cluster");
            let urls = c.urls();
            (Some(c), urls)
        })
        .1
}

/// The environment a child test process needs to use this run's storage.
pub fn child_envs() -> Vec<(String, String)> {
    if cluster() {
        vec![(URLS_ENV.into(), urls().to_owned())]
    } else {
        Vec::new()
    }
}

/// The cluster namespace of the broker on `dir`: the same for the same
/// directory, different for every other.
pub fn namespace(dir: &Path) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(&dir);
    format!("t{h:016x}")
}

/// Each topic's tail on an edge in this run (a quarter of the default).
const CACHE_BYTES: usize = 16 << 20;

/// Opens the broker on `dir` with this run's storage.
pub fn open(dir: &Path, cfg: &BrokerConfig) -> Broker {
    if !cluster() {
        return Broker::open(dir, cfg.clone()).expect("open broker");
    }
    use fanlog::storage::jetstream::{ClusterOptions, JsStorage};
    let mut opts = ClusterOptions::new(urls().split(',').map(str::to_owned).collect());
    opts.namespace = namespace(dir);
    opts.cache_bytes = CACHE_BYTES;
    let storage = JsStorage::connect(opts, cfg.topic.max_message_bytes).expect("join the cluster");
    std::fs::create_dir_all(dir).expect("data dir");
    Broker::with_storage(dir, Box::new(storage), cfg.clone()).expect("open broker on the cluster")
}

/// Arguments and environment that make a `fanlog serve` on `data` an edge
/// of the shared cluster in this run (nothing when the run is local, or
/// when the arguments already name a cluster).
pub fn serve_args(data: &Path, args: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
    if !cluster() || args.contains(&"--cluster") {
        return (Vec::new(), Vec::new());
    }
    (
        vec!["--cluster".into(), urls().to_owned()],
        vec![
            ("FANLOG_CLUSTER__NAMESPACE".into(), namespace(data)),
            // A small tail, so that reads below it (from the cluster) are
            // exercised, and memory bounds hold as they do embedded.
            (
                "FANLOG_CLUSTER__CACHE_BYTES".into(),
                CACHE_BYTES.to_string(),
            ),
        ],
    )
}
