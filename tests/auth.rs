//! Tokens on every interface of a real `fanlog serve --config`: missing or
//! unknown tokens are refused (401, Unauthorized), a token for `a.*`
//! cannot read or write `b` (403, Forbidden), browsers use tickets or a
//! cookie, and an open broker stays on loopback unless told otherwise.

mod common;

use std::time::Duration;

use fanlog::client::{Client, ConnectOptions, QuicOptions, StartFrom, Transport};
use fanlog::protocol::Message;
use fanlog::protocol::frame::ErrorCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[auth.tokens]]
token = "rw-a"
publish = ["a.*"]
subscribe = ["a.*"]

[[auth.tokens]]
token = "read-a"
subscribe = ["a.*"]

[[auth.tokens]]
# sha256("admin-secret")
token_sha256 = "ADMIN_HASH"
publish = ["*"]
subscribe = ["*"]
admin = true
"#;

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start(dir: &std::path::Path) -> common::ServeProcess {
    let cfg = dir.join("fanlog.toml");
    std::fs::write(
        &cfg,
        CONFIG.replace("ADMIN_HASH", &sha256_hex("admin-secret")),
    )
    .unwrap();
    let data = dir.join("data");
    common::ServeProcess::start(
        &data,
        &["--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

async fn native(
    addr: &str,
    quic_ca: Option<std::path::PathBuf>,
    token: Option<&str>,
) -> Result<Client, fanlog::client::ClientError> {
    let mut o = ConnectOptions::new(addr);
    o.token = token.map(str::to_owned);
    if let Some(ca) = quic_ca {
        o.transport = Transport::Quic(QuicOptions {
            ca: Some(ca),
            ..QuicOptions::default()
        });
    }
    Client::connect_with(o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_the_binary_protocol_over_tcp_and_quic() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let ca = dir.path().join("data/tls/cert.pem");
    let quic = serve.quic.clone().unwrap();
    for (addr, ca) in [(serve.tcp.as_str(), None), (quic.as_str(), Some(ca))] {
        for token in [None, Some("wrong")] {
            let e = native(addr, ca.clone(), token).await.expect_err("refused");
            assert_eq!(
                e.code(),
                Some(ErrorCode::Unauthorized),
                "{addr} {token:?}: {e}"
            );
        }
        let c = native(addr, ca.clone(), Some("rw-a")).await.unwrap();
        c.publish("a.x", Message::new("ok")).await.unwrap();
        let e = c.publish("b", Message::new("no")).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
        let e = c
            .subscribe("b", StartFrom::Earliest)
            .await
            .expect_err("forbidden");
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
        let e = c.commit("b", "g", 0).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
        assert!(c.subscribe("a.x", StartFrom::Earliest).await.is_ok());
        let e = c
            .worker("b", "g", fanlog::client::WorkerOptions::default())
            .await
            .expect_err("forbidden");
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
        let r = native(addr, ca.clone(), Some("read-a")).await.unwrap();
        // Read rights are enough to work a shared group.
        let mut w = r
            .worker("a.x", "g", fanlog::client::WorkerOptions::default())
            .await
            .unwrap();
        let job = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("a job")
            .unwrap()
            .unwrap();
        job.ack().await.unwrap();
        let e = r.publish("a.x", Message::new("no")).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
        // The admin publishes to b; rw-a does not even see b.
        let admin = native(addr, ca.clone(), Some("admin-secret"))
            .await
            .unwrap();
        admin.publish("b", Message::new("secret")).await.unwrap();
        let names: Vec<String> = c
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(
            names.contains(&"a.x".to_owned()) && !names.contains(&"b".to_owned()),
            "{names:?}"
        );
    }
    assert!(serve.terminate().success());
}

async fn http(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_every_http_route() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let base = format!("http://{}", serve.http.clone().unwrap());
    let u = |p: &str| format!("{base}{p}");
    // Public: the console page and health.
    assert_eq!(reqwest::get(u("/")).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        reqwest::get(u("/healthz")).await.unwrap().status().as_u16(),
        200
    );

    let (s, _, _) = http(
        Method::POST,
        u("/topics/a.x/messages"),
        Some("admin-secret"),
        Some(json!(1)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, _) = http(
        Method::POST,
        u("/topics/b/messages"),
        Some("admin-secret"),
        Some(json!(2)),
    )
    .await;
    assert_eq!(s, 201);

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, u("/topics/b/messages"), Some(json!(1))),
        (Method::GET, u("/topics/b/messages?from=0"), None),
        (Method::GET, u("/topics/b"), None),
        (Method::GET, u("/topics/b/poll?after=0&timeout=1"), None),
        (Method::GET, u("/topics/b/events"), None),
        (Method::GET, u("/topics/b/ws"), None),
        (Method::POST, u("/topics/b/shared/g/fetch?worker=w"), None),
        (
            Method::POST,
            u("/topics/b/shared/g/ack?worker=w"),
            Some(json!({"seqs": [0]})),
        ),
        (
            Method::POST,
            u("/topics/b/shared/g/nack?worker=w"),
            Some(json!({"seq": 0})),
        ),
        (Method::GET, u("/topics/b/shared/g"), None),
        (Method::GET, u("/topics/b/shared/g/ws"), None),
        (
            Method::POST,
            u("/hooks"),
            Some(json!({"topic": "b", "url": "http://93.184.216.34/"})),
        ),
        (Method::GET, u("/topics"), None),
        (Method::GET, u("/hooks"), None),
        (Method::GET, u("/asyncapi.json"), None),
    ];
    for (m, url, body) in &routes {
        for token in [None, Some("wrong")] {
            let (s, h, v) = http(m.clone(), url.clone(), token, body.clone()).await;
            assert_eq!(s, 401, "{m} {url} {token:?}: {v}");
            assert_eq!(h["www-authenticate"], "Bearer");
            assert!(v["error"].is_string());
        }
    }
    // A token for a.* may not touch b.
    for (m, url, body) in &routes[..12] {
        let (s, _, v) = http(m.clone(), url.clone(), Some("rw-a"), body.clone()).await;
        assert_eq!(s, 403, "{m} {url}: {v}");
    }
    let form = [
        ("hub.mode", "subscribe"),
        ("hub.topic", &u("/topics/b")),
        ("hub.callback", "http://93.184.216.34/cb"),
    ];
    let r = reqwest::Client::new()
        .post(u("/websub"))
        .bearer_auth("rw-a")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // ... and sees only its own topics.
    let (_, _, topics) = http(Method::GET, u("/topics"), Some("rw-a"), None).await;
    let names: Vec<&str> = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.x"]);
    let (_, _, doc) = http(Method::GET, u("/asyncapi.json"), Some("rw-a"), None).await;
    assert!(doc["channels"].get("b").is_none() && doc["channels"].get("a.x").is_some());
    // Administration needs an admin token, even on the token's own topics.
    let admin_routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PUT, u("/topics/a.new"), Some(json!({}))),
        (Method::DELETE, u("/topics/a.x"), None),
        (
            Method::POST,
            u("/topics/a.x/truncate"),
            Some(json!({"before": 1})),
        ),
        (Method::GET, u("/topics/a.x/groups"), None),
        (
            Method::PUT,
            u("/topics/a.x/groups/g"),
            Some(json!({"seq": 0})),
        ),
        (Method::GET, u("/metrics"), None),
    ];
    for (m, url, body) in &admin_routes {
        for (token, want) in [(None, 401), (Some("rw-a"), 403), (Some("read-a"), 403)] {
            let (s, _, v) = http(m.clone(), url.clone(), token, body.clone()).await;
            assert_eq!(s, want, "{m} {url} {token:?}: {v}");
        }
    }
    let (s, _, v) = http(
        Method::GET,
        u("/topics/a.x/groups"),
        Some("admin-secret"),
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!([])));
    // Work sharing needs read rights, not admin: a read-only token works
    // a shared group of a.x.
    let (s, _, v) = http(
        Method::POST,
        u("/topics/a.x/shared/g/fetch?worker=w&max=5&wait=2s"),
        Some("read-a"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"][0]["seq"], 0, "{v}");
    let (s, _, v) = http(
        Method::POST,
        u("/topics/a.x/shared/g/ack?worker=w"),
        Some("read-a"),
        Some(json!({"seqs": [0]})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let (s, _, v) = http(Method::GET, u("/topics/a.x/shared/g"), Some("read-a"), None).await;
    assert_eq!((s, v["floor"].as_u64()), (200, Some(1)), "{v}");
    // Within its rights it works.
    let (s, _, _) = http(
        Method::POST,
        u("/topics/a.x/messages"),
        Some("rw-a"),
        Some(json!(3)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, _) = http(
        Method::POST,
        u("/topics/a.x/messages"),
        Some("read-a"),
        Some(json!(4)),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, page) = http(
        Method::GET,
        u("/topics/a.x/messages?from=0"),
        Some("read-a"),
        None,
    )
    .await;
    assert_eq!(
        (s, page["messages"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_use_single_use_tickets_or_an_httponly_cookie() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let host = serve.http.clone().unwrap();
    let u = |p: &str| format!("http://{host}{p}");
    // The topic exists: a token that may only read cannot create it.
    let (s, _, _) = http(
        Method::POST,
        u("/topics/a.x/messages"),
        Some("rw-a"),
        Some(json!(0)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, t) = http(Method::POST, u("/tickets"), Some("read-a"), None).await;
    assert_eq!(s, 201, "{t}");
    let ticket = t["ticket"].as_str().unwrap().to_owned();
    assert!(t["expires_in"].as_u64().unwrap() <= 60);
    // The ticket opens one stream, once.
    let r = reqwest::get(u(&format!("/topics/a.x/events?ticket={ticket}")))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(r);
    let r = reqwest::get(u(&format!("/topics/a.x/events?ticket={ticket}")))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a ticket is single use");
    // A WebSocket with a ticket; a publish beyond the token's rights
    // closes it with 4403.
    let (s, _, t) = http(Method::POST, u("/tickets"), Some("read-a"), None).await;
    assert_eq!(s, 201);
    let url = format!(
        "ws://{host}/topics/a.x/ws?ticket={}",
        t["ticket"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"op": "publish", "data": "x"}).to_string().into(),
    ))
    .await
    .unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                break u16::from(f.code);
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4403);
    // Long-lived tokens never travel in URLs.
    let r = reqwest::get(u("/topics/a.x/messages?token=read-a"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = reqwest::get(u("/topics/a.x/messages?ticket=read-a"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A session cookie: HttpOnly, and it works until it is closed.
    let r = reqwest::Client::new()
        .post(u("/session"))
        .bearer_auth("read-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |method: Method, path: &str| {
        reqwest::Client::new()
            .request(method, u(path))
            .header("cookie", pair.clone())
    };
    let r = with_cookie(Method::GET, "/topics/a.x/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = with_cookie(Method::GET, "/topics/b/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A ticket cannot be had with a cookie or a ticket: only with a token.
    let r = with_cookie(Method::POST, "/tickets").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = with_cookie(Method::DELETE, "/session")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = with_cookie(Method::GET, "/topics/a.x/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(serve.terminate().success());
}

#[test]
fn an_open_broker_listens_on_loopback_only_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(["serve", "--data"])
        .arg(dir.path())
        .args(["--tcp", "0.0.0.0:0", "--quic", "off", "--http", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-open-network") && err.contains("0.0.0.0"),
        "{err}"
    );
    let serve = common::ServeProcess::start(
        dir.path(),
        &[
            "--tcp",
            "0.0.0.0:0",
            "--quic",
            "off",
            "--allow-open-network",
        ],
    );
    let status = serve.terminate();
    assert!(status.success(), "{status:?}");
}
