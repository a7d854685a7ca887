//! `GET /openapi.json` is a valid OpenAPI 3.1 document (checked against
//! the official JSON Schema, kept in `tests/data/`) that describes every
//! route the broker serves, and no route it does not serve.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("data/openapi-3.1.schema.json")).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("the OpenAPI schema compiles")
}

/// Every `(METHOD, /path)` the document describes, its path as written.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The routes the human docs name (`GET /topics/{t}/events`...), with
/// their placeholders spelled as the document spells them.
fn documented_routes() -> BTreeSet<(String, String)> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(docs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for chunk in text.split('`').skip(1).step_by(2) {
            let Some((method, rest)) = chunk.split_once(' ') else {
                continue;
            };
            if !["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method) {
                continue;
            }
            let path = rest.split(['?', ' ']).next().unwrap_or("");
            if !path.starts_with('/') {
                continue;
            }
            let path = path.replace("{t}", "{topic}").replace("{g}", "{group}");
            routes.insert((method.to_owned(), path));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_1_and_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let client = reqwest::Client::new();
    let r = client
        .get(rig.http.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();

    // Valid against the official schema, version 3.1.
    let errors: Vec<String> = validator()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "not valid OpenAPI 3.1: {errors:#?}");
    assert_eq!(doc["openapi"], "3.1.0");

    let ops = operations(&doc);
    // Every route the docs name is described.
    let missing: Vec<_> = documented_routes().difference(&ops).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes in docs/ without a schema: {missing:?}"
    );
    // The document describes itself, and the routes the docs name only in
    // passing.
    for (m, p) in [
        ("GET", "/openapi.json"),
        ("DELETE", "/hooks/{id}"),
        ("GET", "/hooks/{id}"),
        ("POST", "/topics/{topic}/shared/{group}/ack"),
        ("POST", "/topics/{topic}/shared/{group}/nack"),
    ] {
        assert!(ops.contains(&(m.into(), p.into())), "{m} {p} not described");
    }

    // Operation ids name the generated clients' functions: one each.
    let mut ids = BTreeSet::new();
    for (method, path) in &ops {
        let id = doc["paths"][path][method.to_lowercase()]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for s in ["bearer", "session", "ticket"] {
        assert!(schemes.contains_key(s), "security scheme {s}");
    }

    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        // An answer on success, with a body schema unless it has none.
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "101"),
            "{method} {path}: no success response"
        );
        // Every refusal has the one error body.
        for (status, r) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorJson",
                    "{method} {path} {status}"
                );
            }
        }
        // Each `{param}` of the path is declared.
        for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            assert!(
                declared,
                "{method} {path}: path parameter {name} undeclared"
            );
        }
        // And the broker serves it: the router's own refusals of an unknown
        // route or method never answer a described operation.
        let url = rig.http.url(
            &path
                .replace("{topic}", "openapi-probe")
                .replace("{group}", "g")
                .replace("{id}", "hook_none"),
        );
        let url = if path.ends_with("/poll") {
            format!("{url}?timeout=0")
        } else {
            url
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client.request(method.clone(), &url).send().await.unwrap();
        let status = r.status().as_u16();
        // A stream answers its head and goes on: its status is enough.
        let body = if path.ends_with("/events") {
            String::new()
        } else {
            r.text().await.unwrap()
        };
        assert!(
            !body.contains("no such route") && !body.contains("method not allowed on this route"),
            "{method} {path} is described but not served: {status} {body}"
        );
    }
    rig.stop().await;
}

/// Routes are added only with `routes!`, which takes each one's path and
/// method from its handler's `#[utoipa::path]`: so a route without a
/// schema can only come from a call that bypasses it, which this finds.
#[test]
fn no_route_is_added_without_its_description() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src");
    let mut files = vec![dir];
    let mut offenders = Vec::new();
    let mut described = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        described += text.matches("#[utoipa::path(").count();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for call in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".merge(",
            ] {
                if code.contains(call) {
                    offenders.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes added without their OpenAPI description (register them with routes!): {offenders:#?}"
    );
    // Every described handler is in the document.
    let doc = fanlog::server::edge::openapi::document();
    let ops: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
        .sum();
    assert_eq!(
        ops, described,
        "a handler with #[utoipa::path] is not registered with routes!"
    );
}

/// A Python client generated from `/openapi.json` by openapi-python-client
/// (`tests/interop/openapi_client.py`) publishes bytes and a CloudEvent
/// over a real `fanlog serve` with a token, and reads them back.
#[test]
fn a_python_client_generated_from_the_document_publishes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fanlog.toml");
    std::fs::write(
        &cfg,
        "[[auth.tokens]]\ntoken = \"py-token\"\npublish = [\"py-*\"]\nsubscribe = [\"py-*\"]\n",
    )
    .unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data"),
        &["--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    );
    let base = format!("http://{}", serve.http.clone().unwrap());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/openapi_client.py");
    let work = dir.path().join("py");
    std::fs::create_dir(&work).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([base.as_str(), "py-token", work.to_str().unwrap()])
        .output()
        .expect("python3 (scripts/test.sh installs it and openapi-python-client)");
    assert!(
        out.status.success(),
        "the generated client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(got["published"], serde_json::json!([0, 1, 2, 3]));
    assert_eq!(got["next"], 4);
    assert_eq!(got["topics"], serde_json::json!(["py-generated"]));
    let read = got["read"].as_array().unwrap();
    assert_eq!(read.len(), 4, "{got}");
    assert_eq!(read[0]["seq"], 0);
    assert_eq!(read[0]["data"], "hello from python");
    assert_eq!(read[0]["content_type"], "application/octet-stream");
    // The structured CloudEvent is stored in binary mode: its data, with
    // its content type.
    assert_eq!(read[1]["seq"], 1);
    assert_eq!(read[1]["data"], "{\"n\":1}");
    assert_eq!(read[1]["content_type"], "application/json");
    // The batch, in order.
    assert_eq!(read[2]["data"], "batched 0");
    assert_eq!(read[3]["data"], "{\"n\":2}");
    assert_eq!(read[3]["content_type"], "application/json");
    serve.terminate();
}
