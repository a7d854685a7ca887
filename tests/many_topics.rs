//! More topics than file descriptors, through a real `fanlog serve` started
//! under a low open-file limit: idle topics are closed and reopened on use,
//! so every topic keeps taking writes and serving reads, the process stays
//! under its limit, and a restart with all of them on disk succeeds. A topic
//! that cannot be made (descriptors exhausted by a limit set too high)
//! leaves no directory behind.

mod common;

use std::path::Path;

const NOFILE: u64 = 256;
const TOPICS: usize = 300;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn topic_dirs(data: &Path) -> usize {
    std::fs::read_dir(data.join("topics")).unwrap().count()
}

async fn publish(c: &reqwest::Client, http: &str, topic: &str, body: &str) -> u16 {
    c.post(format!("http://{http}/topics/{topic}/messages"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn first_message(c: &reqwest::Client, http: &str, topic: &str) -> String {
    let v = common::send_json(c.get(format!("http://{http}/topics/{topic}/messages?from=0"))).await;
    v["messages"][0]["data"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_topics_than_file_descriptors_keep_working_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--http", "127.0.0.1:0", "--quic", "off"];
    let serve = common::ServeProcess::start_with_nofile(dir.path(), &args, NOFILE);
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    for i in 0..TOPICS {
        let s = publish(&c, &http, &format!("t{i}"), &format!("m{i}")).await;
        assert_eq!(s, 201, "topic {i}");
    }
    let fds = open_fds(serve.child.id());
    println!("{TOPICS} topics under a limit of {NOFILE} descriptors: {fds} open");
    assert!(fds < NOFILE as usize, "{fds}");
    // Every topic, open or closed, is listed and readable (reopened on use).
    let list = common::send_json(c.get(format!("http://{http}/topics"))).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), TOPICS);
    assert!(list.iter().all(|t| t["next_seq"] == 1), "{list:?}");
    for i in (0..TOPICS).step_by(7) {
        assert_eq!(
            first_message(&c, &http, &format!("t{i}")).await,
            format!("m{i}")
        );
        assert_eq!(publish(&c, &http, &format!("t{i}"), "again").await, 201);
    }
    assert!(serve.terminate().success());

    // A restart with every topic on disk, under the same limit.
    let serve = common::ServeProcess::start_with_nofile(dir.path(), &args, NOFILE);
    let http = serve.http.clone().unwrap();
    for i in (0..TOPICS).step_by(13) {
        assert_eq!(
            first_message(&c, &http, &format!("t{i}")).await,
            format!("m{i}")
        );
    }
    assert!(open_fds(serve.child.id()) < NOFILE as usize);
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_cannot_be_made_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An open-topic limit above what the descriptors allow: creating topics
    // runs out of descriptors.
    let cfg = dir.path().join("fanlog.toml");
    std::fs::write(&cfg, "[limits]\nmax_open_topics = 1000\n").unwrap();
    let args = [
        "--http",
        "127.0.0.1:0",
        "--quic",
        "off",
        "--config",
        cfg.to_str().unwrap(),
    ];
    let serve = common::ServeProcess::start_with_nofile(&data, &args, NOFILE);
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    let mut made = 0;
    let mut refused = 0;
    for i in 0..TOPICS {
        match publish(&c, &http, &format!("t{i}"), "x").await {
            201 => made += 1,
            s => {
                assert!(s >= 500, "{s}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "descriptors ran out");
    assert_eq!(
        topic_dirs(&data),
        made,
        "a refused topic leaves no directory"
    );
    // The broker keeps serving the topics it has.
    assert_eq!(first_message(&c, &http, "t0").await, "x");
    assert!(serve.terminate().success());
    // And starts again (without the bad limit) with all of them.
    let serve = common::ServeProcess::start_with_nofile(&data, &args[..4], NOFILE);
    let http = serve.http.clone().unwrap();
    assert_eq!(first_message(&c, &http, "t0").await, "x");
    assert!(serve.terminate().success());
}

/// A closed topic keeps its own limits: a publish that reopens it is
/// checked against them, not against the broker's defaults it was first
/// checked with (found by the cluster tests, where another edge made the
/// topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_topic_keeps_its_own_message_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = fanlog::BrokerConfig {
        max_open_topics: Some(1),
        ..fanlog::BrokerConfig::default()
    };
    let broker = fanlog::Broker::open(dir.path(), config).unwrap();
    let own = fanlog::TopicOverrides {
        max_message_bytes: Some(100),
        ..Default::default()
    };
    broker.create_topic("small", &own).unwrap();
    // Another topic takes the one open slot: "small" is closed.
    broker
        .publish("other", fanlog::Message::new("x"))
        .await
        .unwrap();
    assert!(!broker.is_open("small"));
    let e = broker
        .publish("small", fanlog::Message::new(vec![0u8; 200]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            fanlog::broker::BrokerError::MessageTooLarge { max: 100, .. }
        ),
        "{e}"
    );
    assert_eq!(
        broker
            .publish("small", fanlog::Message::new(vec![0u8; 100]))
            .await
            .unwrap(),
        0
    );
}
