//! A binary-protocol subscriber of a topic that is deleted, over TCP and
//! QUIC against a real `fanlog serve`: its subscription ends with a clear
//! error (TopicNotFound) instead of waiting forever, and the connection goes
//! on serving everything else.

mod common;

use std::time::Duration;

use fanlog::client::{Client, ConnectOptions, QuicOptions, StartFrom, Transport};
use fanlog::protocol::Message;
use fanlog::protocol::frame::ErrorCode;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_ends_its_subscriptions_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let quic = serve.quic.clone().unwrap();
    let mut quic_opts = ConnectOptions::new(&quic);
    quic_opts.transport = Transport::Quic(QuicOptions {
        ca: Some(dir.path().join("tls/cert.pem")),
        ..QuicOptions::default()
    });
    for (i, opts) in [ConnectOptions::new(&serve.tcp), quic_opts]
        .into_iter()
        .enumerate()
    {
        let topic = format!("doomed{i}");
        let c = Client::connect_with(opts).await.unwrap();
        c.publish(&topic, Message::new("before")).await.unwrap();
        let mut sub = c.subscribe(&topic, StartFrom::Earliest).await.unwrap();
        assert!(matches!(sub.next().await, Some(Ok(_))));
        let r = reqwest::Client::new()
            .delete(format!("http://{http}/topics/{topic}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let ended = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("the subscription hears of the deletion");
        match ended {
            Some(Err(e)) => {
                assert_eq!(e.code(), Some(ErrorCode::TopicNotFound), "{e}");
                assert!(e.to_string().contains("deleted"), "{e}");
            }
            other => panic!("{i}: {other:?}"),
        }
        // The stream is over, and the connection still serves.
        let after = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap();
        assert!(after.is_none(), "{after:?}");
        assert_eq!(
            c.publish("other", Message::new("x")).await.unwrap(),
            i as u64
        );
    }
    assert!(serve.terminate().success());
}
