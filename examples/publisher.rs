//! A microservice that publishes order events to fanlog.
//!
//! The producer batches and pipelines: `send` queues a message and returns
//! a receipt at once; the receipt resolves to the message's seq once the
//! broker acknowledged it. Each message carries an idempotency key, so a
//! retry after a lost answer is appended once.
//!
//! ```sh
//! fanlog serve &
//! cargo run --example publisher -- 127.0.0.1:7400 100
//! ```

use fanlog::client::{Client, Message, ProducerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:7400".into());
    let count: u64 = args.next().map_or(Ok(10), |n| n.parse())?;

    let client = Client::connect(&server).await?;
    let producer = client.producer("orders", ProducerOptions::default());
    let mut receipts = Vec::new();
    for id in 0..count {
        let event = format!(r#"{{"order": {id}, "total_cents": {}}}"#, 1000 + id);
        let message = Message::new(event)
            .with_content_type("application/json")
            .with_idempotency_key(format!("order-{id}"));
        receipts.push(producer.send(message).await?);
    }
    for receipt in receipts {
        let seq = receipt.await?;
        println!("{seq}");
    }
    Ok(())
}
