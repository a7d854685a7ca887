//! A full disk under a real `fanlog serve --fsync always`: the data
//! directory is a 3 MiB tmpfs (mounted by the test; it needs root, which CI
//! has). Publishes are refused with `Unavailable` / HTTP 503 + Retry-After
//! once the disk is full, never acknowledged; every acknowledged message
//! stays readable; writes resume once space is freed, at the next seq; and
//! a kill -9 afterwards loses nothing acknowledged.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use fanlog::protocol::frame::ErrorCode;
use futures_util::StreamExt;

/// A size-limited tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", at.display());
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("message {i:08} ").into_bytes();
    p.resize(1024, b'.');
    p
}

async fn read_all(c: &Client, n: u64) {
    let mut sub = c.subscribe("full", StartFrom::Seq(0)).await.unwrap();
    for i in 0..n {
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
        {
            Some(Ok(Event::Record(d))) => assert_eq!((d.seq(), d.payload()), (i, &payload(i)[..])),
            other => panic!("seq {i}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_what_was_acknowledged_and_recovers() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs this test as root"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _fs = Tmpfs::mount(&mnt, "3m");
    // Room to free later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();
    let data = mnt.join("data");
    let args = [
        "--fsync",
        "always",
        "--quic",
        "off",
        "--http",
        "127.0.0.1:0",
    ];
    let serve = common::ServeProcess::start(&data, &args);
    let c = Client::connect(&serve.tcp).await.unwrap();

    // Publish until the disk is full.
    let mut acked = 0u64;
    let refusal = loop {
        match c.publish("full", Message::new(payload(acked))).await {
            Ok(seq) => {
                assert_eq!(seq, acked);
                acked += 1;
                assert!(acked < 10_000, "the disk never filled");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.code(), Some(ErrorCode::Unavailable), "{refusal}");
    assert!(acked > 100, "only {acked} messages fit");
    eprintln!("disk full after {acked} acknowledged messages: {refusal}");
    // Still full: refused again, over the wire and over HTTP.
    let e = c
        .publish("full", Message::new(payload(acked)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
    let http = serve.http.clone().unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{http}/topics/full/messages"))
        .body(payload(acked))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    // Readers keep reading everything acknowledged.
    read_all(&c, acked).await;

    // Space returns: writes resume at the next seq.
    std::fs::remove_file(&filler).unwrap();
    let seq = c
        .publish("full", Message::new(payload(acked)))
        .await
        .unwrap();
    assert_eq!(seq, acked, "no gap, no reuse");
    acked += 1;
    drop(c);

    // A crash afterwards loses nothing acknowledged.
    serve.kill9();
    let serve = common::ServeProcess::start(&data, &args);
    let c = Client::connect(&serve.tcp).await.unwrap();
    read_all(&c, acked).await;
    assert_eq!(
        c.publish("full", Message::new(payload(acked)))
            .await
            .unwrap(),
        acked
    );
    drop(c);
    assert!(serve.terminate().success());
}
