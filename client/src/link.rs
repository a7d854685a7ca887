//! A link: one byte stream carrying frames (a TCP connection or a QUIC
//! stream), run by two small tasks that turn it into channels of frames.

use bytes::{Bytes, BytesMut};
use fanlog_protocol::frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Identifies a link within one connection generation.
pub(crate) type LinkId = u32;

/// Something that happened on a link.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) generation: u64,
    pub(crate) link: LinkId,
    /// A whole frame, or `Err` when the link ended (with why).
    pub(crate) frame: Result<Bytes, String>,
}

/// The sending side of a link.
///
/// Its queue has no bound of its own because the driver bounds what enters
/// it: one frame per request in flight (at most
/// [`ConnectOptions::max_in_flight`](crate::ConnectOptions::max_in_flight),
/// resends after a reconnect included), at most two credit notices per
/// subscription, one unsubscribe each. Likewise `incoming` (frames read
/// for the driver) holds at most the answers to those requests plus each
/// subscription's credit window of records: the broker sends nothing
/// else. A bounded channel there could only deadlock the driver against
/// a broker blocked writing to it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Link {
    /// Queues encoded frames; false when the link is gone.
    pub(crate) fn send(&self, bytes: Vec<u8>) -> bool {
        self.tx.send(bytes).is_ok()
    }
}

/// Starts the tasks of a link over `rd`/`wr`; frames arrive on `incoming`.
pub(crate) fn spawn<R, W>(
    rd: R,
    wr: W,
    generation: u64,
    link: LinkId,
    max_frame: usize,
    incoming: mpsc::UnboundedSender<Incoming>,
) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(wr, rx));
    tokio::spawn(read_loop(rd, generation, link, max_frame, incoming));
    Link { tx }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        // A lone frame (a large publish batch) goes out as it is; several
        // small ones queued together are coalesced into one write.
        let out = match rx.try_recv() {
            Err(_) => first,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while batch.len() < (256 << 10) {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                std::mem::take(&mut batch)
            }
        };
        if wr.write_all(&out).await.is_err() {
            return;
        }
        if batch.capacity() == 0 {
            // Keep the coalescing buffer's allocation for next time.
            batch = out;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    generation: u64,
    link: LinkId,
    max_frame: usize,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let end = loop {
        match frame::frame_size(&buf, max_frame) {
            // An HTTP answer where a frame should be: the address is the
            // broker's HTTP port (or another HTTP server), not its binary one.
            Err(_) if buf.starts_with(b"HTTP") => {
                break "it answered in HTTP: that is an HTTP port; the binary protocol listens on the broker's --tcp address (default 127.0.0.1:7400)".to_string();
            }
            Err(e) => break e.to_string(),
            Ok(Some(size)) if buf.len() >= size => {
                let frame = buf.split_to(size).freeze();
                if incoming
                    .send(Incoming {
                        generation,
                        link,
                        frame: Ok(frame),
                    })
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(Some(size)) => buf.reserve(size - buf.len()),
            Ok(None) => buf.reserve(64 << 10),
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "connection closed by the broker".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    let _ = incoming.send(Incoming {
        generation,
        link,
        frame: Err(end),
    });
}
