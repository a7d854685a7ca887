//! What the peer benchmarks share: installing and starting NATS and Redis
//! on loopback, a payload, and the table and HTML report of ratios.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub fn ensure_installed(bin: &str, pkg: &str) {
    if Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    eprintln!("installing {pkg} with apt");
    let ok = Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {pkg}"
            ),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot install {pkg}: run `apt-get install {pkg}` as root"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "peer on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn start_nats(dir: &std::path::Path) -> (Peer, u16) {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    wait_port(port);
    (Peer(child), port)
}

pub fn start_redis(dir: &std::path::Path) -> (Peer, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    wait_port(port);
    (Peer(child), port)
}

pub fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0x61u8; size])
}

pub struct Row {
    pub what: String,
    pub fanlog: f64,
    pub peer: &'static str,
    pub peer_value: f64,
    pub unit: &'static str,
    /// The target ratio, where it sets one.
    pub target: Option<f64>,
    /// For latency, smaller is better.
    pub lower_is_better: bool,
}

impl Row {
    pub fn verdict(&self) -> (String, &'static str) {
        match self.target {
            Some(t) if self.ratio() >= t => (format!("{t:.1}x"), "met"),
            Some(t) => (format!("{t:.1}x"), "NOT MET"),
            None => ("-".into(), ""),
        }
    }

    pub fn ratio(&self) -> f64 {
        if self.lower_is_better {
            self.peer_value / self.fanlog
        } else {
            self.fanlog / self.peer_value
        }
    }
}

pub fn html(title: &str, rows: &[Row]) -> String {
    let mut body = String::new();
    for r in rows {
        let max = r.fanlog.max(r.peer_value).max(1e-9);
        let bar = |v: f64, color: &str| {
            format!(
                "<div style=\"background:{color};height:14px;width:{:.1}%\"></div>",
                v / max * 100.0
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>fanlog {:.0} {u}{}</td><td>{} {:.0} {u}{}</td><td><b>{:.2}x</b> (target {}) {}</td></tr>",
            r.what,
            r.fanlog,
            bar(r.fanlog, "#1f6feb"),
            r.peer,
            r.peer_value,
            bar(r.peer_value, "#8b949e"),
            r.ratio(),
            r.verdict().0,
            match r.verdict().1 {
                "NOT MET" => "<span style=\"color:#c00\">not met</span>",
                other => other,
            },
            u = r.unit,
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em}}td{{padding:6px 12px;vertical-align:top;width:25%}}\
         table{{border-collapse:collapse;width:100%}}tr{{border-bottom:1px solid #ddd}}</style></head>\
         <body><h1>{title}</h1><table>{body}</table>\
         <p>Ratios are fanlog / peer (peer / fanlog for latency), measured in the same run.</p></body></html>\n"
    )
}

/// The table of ratios on stdout.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<46} {:>14} {:<20} {:>14} {:>8} {:>7}  ",
        "workload", "fanlog", "vs", "peer", "ratio", "target"
    );
    for r in rows {
        let (target, verdict) = r.verdict();
        println!(
            "{:<46} {:>14.0} {:<20} {:>14.0} {:>7.2}x {:>7}  {}",
            r.what,
            r.fanlog,
            r.peer,
            r.peer_value,
            r.ratio(),
            target,
            verdict
        );
    }
}

/// Keeps this run's rows as `dir/<unix seconds>.json`; answers the run
/// before it (by name), if there was one.
pub fn save_run(dir: &std::path::Path, rows: &[Row]) -> Option<serde_json::Value> {
    std::fs::create_dir_all(dir).ok()?;
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    runs.sort();
    let previous = runs
        .last()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let this: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "what": r.what, "peer": r.peer, "fanlog": r.fanlog,
                "peer_value": r.peer_value, "ratio": r.ratio(),
            })
        })
        .collect();
    let doc = serde_json::json!({ "at": now, "rows": this });
    let _ = std::fs::write(dir.join(format!("{now}.json")), doc.to_string());
    previous
}

/// [`html`] with the previous run's ratio beside each row (when it had
/// the row).
pub fn html_beside(title: &str, rows: &[Row], previous: Option<&serde_json::Value>) -> String {
    let Some(prev) = previous else {
        return html(title, rows);
    };
    let at = prev["at"].as_u64().unwrap_or(0);
    let ratio_of = |r: &Row| {
        prev["rows"].as_array().and_then(|all| {
            all.iter()
                .find(|p| p["what"] == r.what.as_str() && p["peer"] == r.peer)
                .and_then(|p| p["ratio"].as_f64())
        })
    };
    let mut body = String::new();
    for r in rows {
        let before = ratio_of(r).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{before}</td><td><b>{:.2}x</b></td><td>{}</td></tr>",
            r.what,
            r.peer,
            r.ratio(),
            r.verdict().0,
        ));
    }
    let table = format!(
        "<h2>Before and after</h2><table><tr><th>workload</th><th>vs</th>\
         <th>previous run ({at}, Unix seconds)</th><th>this run</th><th>target</th></tr>{body}</table>"
    );
    html(title, rows).replace("</body>", &format!("{table}</body>"))
}
