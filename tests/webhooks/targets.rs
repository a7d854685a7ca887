//! Where deliveries may go: bad requests and the SSRF guard, a target no
//! longer allowed, https targets checked against trusted roots.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_the_ssrf_guard() {
    let dir = tempfile::tempdir().unwrap();
    // No allow-list: the guard refuses every loopback and private target.
    let rig = common::Rig::start(dir.path(), HooksConfig::default()).await;
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
        "http://127.0.0.1:9/hook",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let (s, v) = rig.create(json!({"topic": "t", "url": url})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("refused"),
            "{url}: {v}"
        );
    }
    for (body, why) in [
        (
            json!({"topic": "bad topic", "url": "http://93.184.216.34/"}),
            "topic",
        ),
        (json!({"topic": "t", "url": "not a url"}), "url"),
        (json!({"topic": "t", "url": "ftp://93.184.216.34/"}), "http"),
        (json!({"topic": "t"}), "url"),
        (
            json!({"topic": "t", "url": "http://93.184.216.34/", "secret": "nope"}),
            "whsec_",
        ),
        (
            json!({"topic": "t", "url": "http://93.184.216.34/", "from": 99}),
            "past the end",
        ),
    ] {
        let (s, v) = rig.create(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let resp = reqwest::Client::new()
        .post(rig.http.url("/hooks"))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = reqwest::Client::new()
        .delete(rig.http.url("/hooks/hook_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(rig.get("/hooks/hook_nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(rig.get("/hooks").await.1, json!([]));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_no_longer_allowed_is_not_delivered_to() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let (_, hook) = rig.create(json!({"topic": "a", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.stop().await;
    // The next run does not allow 127.0.0.1 any more.
    let rig = common::Rig::start(dir.path(), HooksConfig::default()).await;
    rig.publish("a", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = rig.get(&format!("/hooks/{id}")).await;
    assert_eq!(v["state"], "disabled", "{v}");
    assert!(v["last_error"].as_str().unwrap().contains("refused"), "{v}");
    assert!(rx.hits().is_empty());
    rig.stop().await;
}

/// An https receiver on 127.0.0.1 with a certificate for 127.0.0.1; returns
/// its URL, the certificate (PEM) and the requests' `webhook-id`s.
async fn https_receiver() -> (String, String, Arc<Mutex<Vec<String>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = ids.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push(id);
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (url, pem, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_trusted_roots() {
    let (url, pem, seen) = https_receiver().await;
    // Trusted: every message arrives over TLS.
    let dir = tempfile::tempdir().unwrap();
    let trusted = HooksConfig {
        trust_pem: vec![pem.into_bytes()],
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), trusted).await;
    let (s, v) = rig.create(json!({"topic": "tls", "url": url})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    rig.publish("tls", 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "no https deliveries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock().unwrap(), ids("tls", 0..5));
    rig.stop().await;

    // Not trusted (a self-signed certificate outside the roots): the
    // attempt fails with a certificate error and nothing is delivered.
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    rig.publish("tls", 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = rig.get(&format!("/hooks/{id}")).await;
        if v["attempts"].as_u64() >= Some(1) {
            let err = v["last_error"].as_str().unwrap().to_lowercase();
            assert!(err.contains("certificate"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
    rig.stop().await;
}
