//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod nats;
pub mod receiver;
pub mod scenarios;

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
        ..BrokerConfig::default()
    }
}

/// Opens the broker on `dir`, on this run's storage ([`backend`]).
pub fn open(dir: &Path, cfg: &BrokerConfig) -> Broker {
    backend::open(dir, cfg)
}

/// Every record of a topic, as (seq, payload), read from seq 0.
pub fn read_all(broker: &Broker, topic: &str) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let batch = broker.read(topic, from, 1000).expect("read");
        if batch.records.is_empty() {
            // On a cluster, records below the edge's tail come in blocks
            // that the read asked for: ask again until they are here.
            let end = broker.topic_info(topic).expect("topic").next_seq;
            if batch.next < end && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                from = batch.next;
                continue;
            }
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
        .envs(backend::child_envs())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut first = Some(first_tx);
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| {
                // The first line of the child's own, not libtest's.
                if !l.is_empty()
                    && !l.starts_with("running ")
                    && let Some(tx) = first.take()
                {
                    let _ = tx.send(());
                }
            })
            .collect::<Vec<_>>()
    });
    if backend::cluster() {
        // Joining the cluster takes the child longer than opening a
        // directory: `after` counts from its first line of work.
        let _ = first_rx.recv_timeout(std::time::Duration::from_secs(30));
    }
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
        ..BrokerConfig::default()
    }
}

/// A broker serving TCP and QUIC on 127.0.0.1 port 0, in this process,
/// through the same composition root as `fanlog serve`.
pub struct TestServer {
    pub broker: Broker,
    pub tcp: std::net::SocketAddr,
    pub quic: std::net::SocketAddr,
    pub cert: PathBuf,
    server: fanlog::server::Server,
}

impl TestServer {
    /// Starts serving `dir` on these addresses (port 0 for any).
    pub async fn start_on(
        dir: &Path,
        cfg: &BrokerConfig,
        tcp: std::net::SocketAddr,
        quic: std::net::SocketAddr,
    ) -> Self {
        let broker = open(dir, cfg);
        let server = fanlog::server::Server::builder(broker.clone())
            .tcp(tcp)
            .quic(quic)
            .start()
            .await
            .expect("serve");
        Self {
            broker,
            tcp: server.addr("tcp").unwrap(),
            quic: server.addr("quic").unwrap(),
            cert: server.certificate().unwrap().to_owned(),
            server,
        }
    }

    pub async fn start(dir: &Path, cfg: &BrokerConfig) -> Self {
        let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        Self::start_on(dir, cfg, any, any).await
    }

    /// Graceful stop: listeners tell their sessions, wait, then the broker closes.
    pub async fn stop(self) {
        self.server.stop().await.expect("graceful stop");
    }

    pub fn tcp_options(&self) -> fanlog::client::ConnectOptions {
        fanlog::client::ConnectOptions::new(self.tcp.to_string())
    }

    pub fn quic_options(&self) -> fanlog::client::ConnectOptions {
        let mut o = fanlog::client::ConnectOptions::new(self.quic.to_string());
        o.transport = fanlog::client::Transport::Quic(fanlog::client::QuicOptions {
            ca: Some(self.cert.clone()),
            ..Default::default()
        });
        o
    }
}

/// A `fanlog serve` child process.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub tcp: String,
    pub quic: Option<String>,
    pub http: Option<String>,
    /// Further listeners: (`tls` | `https`, address).
    pub others: Vec<(String, String)>,
}

impl ServeProcess {
    /// The address of a further listener (`tls`, `https`).
    pub fn listener(&self, kind: &str) -> String {
        self.others
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {kind} listener"))
    }
}

impl ServeProcess {
    /// Starts the real binary on port 0 and waits for its `listening` lines.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        Self::start_with_env(data, args, &[])
    }

    /// [`ServeProcess::start`] with these environment variables set.
    pub fn start_with_env(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn(
            std::process::Command::new(env!("CARGO_BIN_EXE_fanlog")),
            data,
            args,
            envs,
        )
    }

    /// [`ServeProcess::start`] with HTTP on, QUIC off, and hooks allowed to
    /// reach loopback receivers.
    pub fn start_for_hooks(data: &Path) -> Self {
        Self::start(
            data,
            &[
                "--http",
                "127.0.0.1:0",
                "--quic",
                "off",
                "--allow-hook-target",
                "127.0.0.1/32",
            ],
        )
    }

    /// [`ServeProcess::start`] under an open-file limit of `nofile` (soft
    /// and hard), set by util-linux's `prlimit`.
    pub fn start_with_nofile(data: &Path, args: &[&str], nofile: u64) -> Self {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_fanlog"));
        Self::spawn(cmd, data, args, &[])
    }

    fn spawn(
        mut cmd: std::process::Command,
        data: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        let (backend_args, backend_envs) = backend::serve_args(data, args);
        let mut child = cmd
            .envs(envs.iter().copied())
            .envs(backend_envs)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(backend_args)
            .args(if args.contains(&"--tcp") {
                &[][..]
            } else {
                &["--tcp", "127.0.0.1:0"][..]
            })
            .args(if args.contains(&"--http") {
                &[][..]
            } else {
                &["--http", "off"][..]
            })
            // Never the fixed default port: tests run in parallel.
            .args(if args.contains(&"--quic") {
                &[][..]
            } else {
                &["--quic", "127.0.0.1:0"][..]
            })
            .args(args)
            .stdout(std::process::Stdio::piped())
            // FANLOG_TEST_STDERR=1 shows the brokers' logs when debugging.
            .stderr(if std::env::var_os("FANLOG_TEST_STDERR").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .spawn()
            .expect("spawn fanlog serve");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut tcp, mut quic, mut http) = (None, None, None);
        let mut others = Vec::new();
        let wanted_others = ["--tls", "--https"]
            .iter()
            .filter(|f| args.windows(2).any(|w| w[0] == **f && w[1] != "off"))
            .count();
        let quic_off = args.windows(2).any(|w| w == ["--quic", "off"]);
        let http_on = args.windows(2).any(|w| w[0] == "--http" && w[1] != "off");
        while tcp.is_none()
            || (quic.is_none() && !quic_off)
            || (http.is_none() && http_on)
            || others.len() < wanted_others
        {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("read stdout");
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("listening"), Some("tcp"), Some(a)) => tcp = Some(a.to_owned()),
                (Some("listening"), Some("quic"), Some(a)) => quic = Some(a.to_owned()),
                (Some("listening"), Some("http"), Some(a)) => http = Some(a.to_owned()),
                (Some("listening"), Some(kind), Some(a)) if kind == "tls" || kind == "https" => {
                    others.push((kind.to_owned(), a.to_owned()));
                }
                _ => panic!("unexpected line from serve: {line:?}"),
            }
        }
        Self {
            child,
            tcp: tcp.unwrap(),
            quic,
            http,
            others,
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid"),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM");
        self.child.wait().expect("wait")
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

/// A test that fails before it stops its broker leaves no process behind.
impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the `fanlog` binary with `args` and returns its stdout, asserting success.
pub fn fanlog(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(args)
        .output()
        .expect("run fanlog");
    assert!(
        out.status.success(),
        "fanlog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs `fanlog bench ARGS --json` and parses its last line.
pub fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = fanlog(&all);
    let last = out.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is JSON ({e}): {last}"))
}

/// A number field of a JSON object.
pub fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// Raises this process's open-file limit to its hard limit; returns it.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).expect("setrlimit");
    lim.current.unwrap_or(u64::MAX)
}

/// Fields of a process's /proc status in kB, e.g. `["VmHWM:", "VmRSS:"]`.
pub fn status_kb<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Resident memory of a process from /proc (kB): (anonymous, total).
pub fn rss_kb(pid: u32) -> (u64, u64) {
    let [anon, total] = status_kb(pid, ["RssAnon:", "VmRSS:"]);
    (anon, total)
}

/// The HTTP edge over `broker` on 127.0.0.1 port 0, in this process,
/// through the same composition root as `fanlog serve`.
pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    server: fanlog::server::Server,
}

impl HttpServer {
    pub async fn start(broker: &Broker, config: fanlog::server::edge::HttpConfig) -> Self {
        let server = fanlog::server::Server::builder(broker.clone())
            .http(([127, 0, 0, 1], 0).into())
            .http_config(config)
            .start()
            .await
            .expect("serve http");
        Self::of(server)
    }

    fn of(server: fanlog::server::Server) -> Self {
        Self {
            addr: server.addr("http").expect("an http listener"),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful stop: open streams end, the server tasks finish, then the
    /// broker closes.
    pub async fn stop(self) {
        self.server.stop().await.expect("graceful stop");
    }
}

/// A broker with hooks and its HTTP edge, in this process.
pub struct Rig {
    pub broker: Broker,
    pub hooks: fanlog::server::hooks::Hooks,
    pub http: HttpServer,
}

impl Rig {
    pub async fn start(dir: &std::path::Path, hooks: fanlog::server::hooks::HooksConfig) -> Self {
        let broker = open(
            dir,
            &config(
                Durability::Interval(std::time::Duration::from_millis(10)),
                1 << 20,
            ),
        );
        let server = fanlog::server::Server::builder(broker.clone())
            .http(([127, 0, 0, 1], 0).into())
            .hooks(hooks)
            .start()
            .await
            .unwrap();
        Self {
            broker,
            hooks: server.hooks().unwrap().clone(),
            http: HttpServer::of(server),
        }
    }

    /// Graceful stop: the edge, then the hooks, then the broker.
    pub async fn stop(self) {
        self.http.stop().await;
    }
    pub async fn create(
        &self,
        body: serde_json::Value,
    ) -> (axum::http::StatusCode, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(self.http.url("/hooks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (axum::http::StatusCode, serde_json::Value) {
        let resp = reqwest::get(self.http.url(path)).await.unwrap();
        let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn publish(&self, topic: &str, n: u64) {
        for i in 0..n {
            let m = fanlog::Message::new(format!("{{\"n\":{i}}}"))
                .with_content_type("application/json");
            self.broker.publish(topic, m).await.unwrap();
        }
    }
}

pub fn local_hooks() -> fanlog::server::hooks::HooksConfig {
    fanlog::server::hooks::HooksConfig {
        allow_targets: vec!["127.0.0.1".into()],
        ..fanlog::server::hooks::HooksConfig::default()
    }
}

/// The topic's info once retention settled: embedded, the flusher's pass
/// (about once a second) may drop one more segment after the rolls did;
/// a cluster applies retention itself, and a flush brings the edge's view
/// of it up to date. Settled once the first seq stays put for 1.5 s (10 s
/// at most).
pub async fn retention_settled(broker: &Broker, topic: &str) -> fanlog::broker::TopicInfo {
    use std::time::Duration;
    let mut info = broker.topic_info(topic).expect("topic");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut since = tokio::time::Instant::now();
    while since.elapsed() < Duration::from_millis(1500) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        broker.flush().expect("flush");
        let now = broker.topic_info(topic).expect("topic");
        if now.first_seq != info.first_seq {
            since = tokio::time::Instant::now();
        }
        info = now;
    }
    info
}

/// GETs `url` and parses the answer as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// Sends `req` and reads its JSON answer (any status).
pub async fn send_json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send()
        .await
        .unwrap_or_else(|e| panic!("request: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("answer not JSON: {e}"))
}

/// Flips bits of the byte at `at` of `path` (corruption on purpose).
pub fn flip(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5A]).unwrap();
}

/// Entry `i` of a segment index: the byte position of its record.
pub fn index_entry(index: &Path, i: u64) -> u64 {
    let bytes = std::fs::read(index).unwrap();
    let at = (i * 4) as usize;
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64
}

/// The base seq of a segment file, from its name.
pub fn segment_base(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Publishes `m{i}` for each `i` of `range` as text over HTTP, with a
/// bearer `token` if given; each must be accepted.
pub async fn publish_numbered(
    http: &str,
    topic: &str,
    range: std::ops::Range<u32>,
    token: Option<&str>,
) {
    let c = reqwest::Client::new();
    for i in range {
        let mut req = c.post(format!("http://{http}/topics/{topic}/messages"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req
            .header("content-type", "text/plain")
            .body(format!("m{i}"))
            .send()
            .await
            .expect("publish");
        assert_eq!(r.status(), 201);
    }
}
