//! Headless Chromium for the browser tests, driven over the DevTools
//! protocol. Needs `chromium` on PATH (`./scripts/test.sh` installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Headless Chromium showing `url` until dropped.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Opens `url` in a new headless Chromium with its own profile.
    pub fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args(chromium_flags(profile.path()))
            .args(["--remote-debugging-port=0", "--window-size=1100,700"])
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is needed for the browser tests (scripts/test.sh installs it)");
        Self { child, profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chromium_flags(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// One page of a [`Browser`], driven over the DevTools protocol.
pub struct DevTools {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl DevTools {
    /// Attaches to the browser's page showing `url`.
    pub async fn attach(browser: &Browser, url: &str) -> Self {
        // Chromium writes the port it picked into the profile.
        let port_file = browser.profile.path().join("DevToolsActivePort");
        let t = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.parse::<u16>().ok()))
            {
                break port;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no DevTools port");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let pages: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools list")
            .json()
            .await
            .expect("DevTools JSON");
        let target = pages
            .as_array()
            .and_then(|a| a.iter().find(|p| p["url"].as_str() == Some(url)))
            .unwrap_or_else(|| panic!("no page at {url}: {pages}"));
        let ws_url = target["webSocketDebuggerUrl"].as_str().unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("DevTools socket");
        Self { ws, next_id: 0 }
    }

    /// Calls a DevTools method and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        self.next_id += 1;
        let id = self.next_id;
        let req = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(WsMessage::text(req.to_string()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a DevTools answer in time")
                .expect("open")
                .expect("frame");
            if let WsMessage::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// The page's HTML as it is now.
    pub async fn html(&mut self) -> String {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({
                    "expression": "document.documentElement.outerHTML",
                    "returnByValue": true,
                }),
            )
            .await;
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png" }),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }

    /// The value of a JavaScript expression evaluated in the page (a
    /// promise is awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                }),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until the page's HTML satisfies `ok`, and returns it.
    pub async fn wait_html(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let html = self.html().await;
            if ok(&html) {
                return html;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "{what}: {html}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lays the page out as a `width` x `height` CSS-pixel viewport.
    pub async fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false,
            }),
        )
        .await;
    }

    /// Takes a PNG of the page, checks it is one, keeps it under the
    /// target directory as `name` and says where on stderr (shown in the
    /// test output).
    pub async fn keep_screenshot(
        &mut self,
        dir: &std::path::Path,
        name: &str,
    ) -> std::path::PathBuf {
        let png = self.screenshot().await;
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: {} bytes",
            png.len()
        );
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}
