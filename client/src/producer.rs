//! A producer that batches and pipelines automatically.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fanlog_protocol::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::Client;
use crate::error::ClientError;

/// Batching and pipelining settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// A batch is sent once it holds this many payload bytes...
    pub max_batch_bytes: usize,
    /// ...or this many messages...
    pub max_batch_messages: usize,
    /// ...or when its first message has waited this long.
    pub linger: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub max_inflight_batches: usize,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            max_batch_bytes: 256 << 10,
            max_batch_messages: 4096,
            linger: Duration::from_millis(1),
            max_inflight_batches: 16,
        }
    }
}

type Job = (Message, oneshot::Sender<Result<u64, ClientError>>);

/// Publishes to one topic, batching messages by size and linger time and
/// keeping several batches in flight. Messages are appended in the order
/// they were sent.
#[derive(Debug, Clone)]
pub struct Producer {
    tx: mpsc::Sender<Job>,
}

/// Resolves to a message's seq once the broker acknowledged it.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<u64, ClientError>>);

impl Future for Receipt {
    type Output = Result<u64, ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

impl Producer {
    pub(crate) fn start(client: Client, topic: String, options: ProducerOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.max_batch_messages.max(1) * 2);
        tokio::spawn(run(client, topic, options, rx));
        Self { tx }
    }

    /// Queues a message; waits only when the producer is full (backpressure).
    /// The returned [`Receipt`] resolves to the message's seq.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the producer task is gone.
    pub async fn send(&self, message: Message) -> Result<Receipt, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((message, reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(Receipt(rx))
    }
}

async fn run(client: Client, topic: String, options: ProducerOptions, mut rx: mpsc::Receiver<Job>) {
    let inflight = Arc::new(Semaphore::new(options.max_inflight_batches.max(1)));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.0.payload.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + options.linger;
        while bytes < options.max_batch_bytes && batch.len() < options.max_batch_messages {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(job) = next else { break };
            bytes += job.0.payload.len();
            batch.push(job);
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let (messages, replies): (Vec<Message>, Vec<_>) = batch.into_iter().unzip();
        // Queued now, in order; awaited in a task so the next batch can go.
        let ack = client.publish_batch(&topic, messages);
        tokio::spawn(async move {
            match ack.await {
                Ok(seqs) => {
                    for (reply, seq) in replies.into_iter().zip(seqs) {
                        let _ = reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
