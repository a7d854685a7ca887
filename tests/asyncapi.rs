//! `GET /asyncapi.json` of a running `fanlog serve` is a valid AsyncAPI 3.0
//! document (checked against the official JSON Schema, kept in
//! `tests/data/`), with the broker's servers and a channel per topic.

mod common;

use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!("data/asyncapi-3.0.0.schema.json"))
        .expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_asyncapi_3() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let client = reqwest::Client::new();
    for topic in ["orders", "sensors.temp-1"] {
        let r = client
            .post(format!("http://{http}/topics/{topic}/messages"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    // A work-sharing group running on orders.
    let r = client
        .post(format!(
            "http://{http}/topics/orders/shared/billing/fetch?worker=w1&max=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let resp = client
        .get(format!("http://{http}/asyncapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = resp.json().await.unwrap();

    let v = validator();
    let errs = errors(&v, &doc);
    assert!(
        errs.is_empty(),
        "invalid AsyncAPI document: {errs:#?}\n{doc:#}"
    );

    assert_eq!(doc["asyncapi"], "3.0.0");
    // It names the HTTP API's OpenAPI document, which is served there.
    let openapi = doc["info"]["externalDocs"]["url"].as_str().unwrap();
    assert_eq!(openapi, format!("http://{http}/openapi.json"));
    let r = client.get(openapi).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["openapi"], "3.1.0");
    let servers = doc["servers"].as_object().unwrap();
    assert_eq!(servers["tcp"]["host"], serve.tcp.as_str());
    assert_eq!(servers["quic"]["host"], serve.quic.as_deref().unwrap());
    assert_eq!(servers["http"]["host"], http.as_str());
    assert_eq!(servers["ws"]["protocol"], "ws");
    for topic in ["orders", "sensors.temp-1"] {
        assert_eq!(doc["channels"][topic]["address"], topic);
        assert_eq!(
            doc["operations"][format!("{topic}.publish")]["action"],
            "receive"
        );
        assert_eq!(
            doc["operations"][format!("{topic}.subscribe")]["channel"]["$ref"],
            format!("#/channels/{topic}")
        );
    }

    // Work sharing: handing out and settling, the running group named.
    let work = &doc["operations"]["orders.work"];
    assert_eq!(work["action"], "send");
    assert!(
        work["description"]
            .as_str()
            .unwrap()
            .ends_with("Running now: billing."),
        "{work}"
    );
    assert_eq!(
        work["messages"][0]["$ref"],
        "#/channels/orders/messages/job"
    );
    assert_eq!(
        doc["operations"]["sensors.temp-1.settle"]["action"],
        "receive"
    );
    assert_eq!(
        doc["components"]["messages"]["job"]["payload"]["required"][3],
        "deliveries"
    );

    // The check can fail: the same document without its info, or with an
    // operation whose action is not send/receive, is refused.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!errors(&v, &broken).is_empty());
    let mut broken = doc.clone();
    broken["operations"]["orders.publish"]["action"] = "publish".into();
    assert!(!errors(&v, &broken).is_empty());
    assert!(serve.terminate().success());
}
