//! Damaged metadata files under a real `fanlog serve`: one bad file affects
//! only what it describes, is reported, and never weakens durability
//! silently. A topic whose `settings.json` is bad or missing is refused
//! (503, naming the file) while every other topic is served; a bad
//! `hooks.json` is moved aside and the broker starts; one bad byte in
//! `offsets.log` costs one commit, not the consumer groups after it.

mod common;

use serde_json::{Value, json};

async fn status_and_body(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_file_stops_only_what_it_describes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let c = reqwest::Client::new();
    let serve = common::ServeProcess::start_for_hooks(data);
    let http = serve.http.clone().unwrap();
    let r = c
        .put(format!("http://{http}/topics/strict"))
        .json(&json!({"fsync": "always"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    for t in ["strict", "plain"] {
        let r = c
            .post(format!("http://{http}/topics/{t}/messages"))
            .body("m")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    for g in 0..50 {
        let r = c
            .put(format!("http://{http}/topics/plain/groups/group-{g:02}"))
            .json(&json!({"seq": 1}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let r = c
        .post(format!("http://{http}/hooks"))
        .json(&json!({"topic": "plain", "url": "http://127.0.0.1:9/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert!(serve.terminate().success());

    let settings = data.join("topics/strict/settings.json");
    let offsets = data.join("topics/plain/offsets.log");
    // A bad settings.json, a hooks.json that is not JSON, a flipped byte in
    // the middle of offsets.log.
    std::fs::write(&settings, b"{\"fsync\": ").unwrap();
    std::fs::write(data.join("hooks.json"), b"\x00garbage").unwrap();
    let mut bytes = std::fs::read(&offsets).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&offsets, &bytes).unwrap();

    let serve = common::ServeProcess::start_for_hooks(data);
    let http = serve.http.clone().unwrap();
    let (s, v) = status_and_body(&c, format!("http://{http}/topics/strict/messages")).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("settings.json"),
        "{v}"
    );
    let r = c
        .post(format!("http://{http}/topics/strict/messages"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "not written with other settings");
    // Nor created again over its bad file.
    let r = c
        .put(format!("http://{http}/topics/strict"))
        .json(&json!({"fsync": "never"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(std::fs::read(&settings).unwrap(), b"{\"fsync\": ");
    let (s, _) = status_and_body(&c, format!("http://{http}/topics/plain/messages")).await;
    assert_eq!(s, 200);
    let (_, groups) = status_and_body(&c, format!("http://{http}/topics/plain/groups")).await;
    let n = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["group"].as_str().is_some_and(|n| n.starts_with("group-")))
        .count();
    assert_eq!(
        n, 49,
        "one damaged commit lost, not the groups after it: {groups}"
    );
    let (_, hooks) = status_and_body(&c, format!("http://{http}/hooks")).await;
    assert_eq!(hooks, json!([]));
    let aside = std::fs::read_dir(data).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("hooks.json.bad-")
    });
    assert!(aside, "the bad hooks.json is kept aside");
    assert!(serve.terminate().success());

    // A deleted settings.json does not silently revert the topic to the
    // broker's settings (fsync interval): still refused, saying so.
    std::fs::remove_file(&settings).unwrap();
    let serve = common::ServeProcess::start_for_hooks(data);
    let http = serve.http.clone().unwrap();
    let (s, v) = status_and_body(&c, format!("http://{http}/topics/strict/messages")).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("missing"), "{v}");
    assert!(serve.terminate().success());

    // Restored: the topic is served again, with its own settings.
    std::fs::write(&settings, br#"{"fsync": "always"}"#).unwrap();
    let serve = common::ServeProcess::start_for_hooks(data);
    let http = serve.http.clone().unwrap();
    let (s, v) = status_and_body(&c, format!("http://{http}/topics/strict/messages")).await;
    assert_eq!((s, v["messages"][0]["data"].as_str()), (200, Some("m")));
    assert!(serve.terminate().success());
}
