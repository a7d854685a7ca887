//! A consumer-group worker: reads `orders` from the group's committed
//! offset, handles each message, and commits past it. Stopped and started
//! again (or run after a crash), it resumes where the group stopped: no
//! message is skipped; one handled but not yet committed comes again, so
//! handling should be idempotent.
//!
//! ```sh
//! cargo run --example worker -- 127.0.0.1:7400 billing
//! ```

use fanlog::client::{Client, Event, StartFrom};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:7400".into());
    let group = args.next().unwrap_or_else(|| "billing".into());
    // Stop after this many messages (0: run until interrupted).
    let limit: u64 = args.next().map_or(Ok(0), |n| n.parse())?;

    let client = Client::connect(&server).await?;
    let mut sub = client
        .subscribe("orders", StartFrom::Group(group.clone()))
        .await?;
    let mut handled = 0;
    while let Some(event) = sub.next().await {
        match event? {
            Event::Record(r) => {
                println!("{}\t{}", r.seq(), String::from_utf8_lossy(r.payload()));
                client.commit("orders", &group, r.seq() + 1).await?;
                handled += 1;
                if handled == limit {
                    break;
                }
            }
            Event::Gap { from, to } => {
                eprintln!(
                    "messages {from}..{to} were removed by retention before this group read them"
                );
            }
        }
    }
    Ok(())
}
