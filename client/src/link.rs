//! A link: one byte stream carrying frames (a TCP connection or a QUIC
//! stream), run by two small tasks that turn it into channels of frames.
//! Its reader hands a subscription's records and gaps straight to the
//! subscription (see [`Routes`]); every other frame goes to the driver.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fanlog_protocol::frame::{self, Frame};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::delivery::{Delivery, Event};
use crate::error::ClientError;

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

/// Where a link's reader puts what it reads.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    /// Frames for the driver.
    pub(crate) frames: mpsc::UnboundedSender<Incoming>,
    /// The subscriptions, whose records skip the driver.
    pub(crate) routes: Arc<Mutex<Routes>>,
}

/// The subscriptions of the current connection, shared by the driver
/// (which adds and removes them) and the links' readers (which deliver to
/// them). A Deliver or Gap frame goes from the reader straight to its
/// subscription's channel: one task hop fewer on the live path than a
/// detour through the driver, and in the order it was read.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// The connection generation whose readers may deliver: a reader of
    /// a connection given up on delivers nothing more.
    pub(crate) generation: u64,
    pub(crate) subs: HashMap<u32, Route>,
}

/// What a subscription's channel carries: its next event, or why it ended.
pub(crate) type Events = Result<Event, ClientError>;

/// One subscription's end of the routes.
#[derive(Debug)]
pub(crate) struct Route {
    /// The seq to deliver next; known once the broker answered Subscribed
    /// or delivered. Records below it (sent again after a reconnect) are
    /// dropped.
    pub(crate) next: Option<u64>,
    pub(crate) events: mpsc::UnboundedSender<Events>,
}

impl Routes {
    /// Delivers a Deliver or Gap frame of `generation`; `Ok(false)` when
    /// `f` is neither (it is the driver's), `Err` when a record is corrupt.
    fn route(&mut self, generation: u64, f: &Frame<'_>, bytes: &Bytes) -> Result<bool, String> {
        let sub = match f {
            Frame::Deliver { sub, .. } | Frame::Gap { sub, .. } => *sub,
            _ => return Ok(false),
        };
        if generation != self.generation {
            return Ok(true);
        }
        // A subscription already ended keeps nothing.
        let Some(route) = self.subs.get_mut(&sub) else {
            return Ok(true);
        };
        match f {
            Frame::Deliver { records, .. } => {
                for r in records.iter() {
                    let (view, _) =
                        r.map_err(|e| format!("corrupt record from the broker: {e}"))?;
                    let seq = view.seq();
                    if route.next.is_some_and(|n| seq < n) {
                        continue; // already delivered before a reconnect
                    }
                    route.next = Some(seq + 1);
                    let d = Delivery::from_verified(bytes.slice_ref(view.as_bytes()));
                    let _ = route.events.send(Ok(Event::Record(d)));
                }
            }
            Frame::Gap { from, to, .. } => {
                route.next = Some(*to);
                let _ = route.events.send(Ok(Event::Gap {
                    from: *from,
                    to: *to,
                }));
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The sending side of a link.
///
/// Its queue has no bound of its own because the driver bounds what enters
/// it: one frame per request in flight (at most
/// [`ConnectOptions::max_in_flight`](crate::ConnectOptions::max_in_flight),
/// resends after a reconnect included), at most two credit notices per
/// subscription, one unsubscribe each. Likewise what a reader queues (frames
/// for the driver, records for a subscription) is at most the answers to
/// those requests plus each subscription's credit window of records: the
/// broker sends nothing else. A bounded channel there could only deadlock
/// the client against a broker blocked writing to it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl Link {
    /// Queues encoded frames; false when the link is gone.
    pub(crate) fn send(&self, bytes: impl Into<Bytes>) -> bool {
        self.tx.send(bytes.into()).is_ok()
    }
}

/// Where a link writes its frames: written as they are queued, without
/// copying them into one buffer when the stream can take them apart (a
/// TCP socket's vectored writes, a QUIC stream's chunks).
pub(crate) trait FrameWriter: Send + 'static {
    /// Writes every frame of `frames`, in order.
    fn write_frames<'a>(
        &'a mut self,
        frames: &'a mut [Bytes],
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'a;
    /// Ends the stream.
    fn finish(&mut self) -> impl std::future::Future<Output = ()> + Send + '_;
}

/// A byte stream as a [`FrameWriter`]: vectored writes when it has them
/// (TCP), else the frames coalesced into one write (TLS).
pub(crate) struct Stream<W>(pub(crate) W);

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWriter for Stream<W> {
    async fn write_frames(&mut self, frames: &mut [Bytes]) -> std::io::Result<()> {
        let wr = &mut self.0;
        if frames.len() == 1 || !wr.is_write_vectored() {
            if frames.len() == 1 {
                return wr.write_all(&frames[0]).await;
            }
            let mut batch = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
            for f in frames.iter() {
                batch.extend_from_slice(f);
            }
            return wr.write_all(&batch).await;
        }
        let mut slices: Vec<std::io::IoSlice<'_>> =
            frames.iter().map(|f| std::io::IoSlice::new(f)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let n = left.len().min(64);
            let written = wr.write_vectored(&left[..n]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut left, written);
        }
        Ok(())
    }

    async fn finish(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

#[cfg(feature = "tls")]
impl FrameWriter for quinn::SendStream {
    async fn write_frames(&mut self, frames: &mut [Bytes]) -> std::io::Result<()> {
        // Handed to quinn as they are: no copy on this side.
        self.write_all_chunks(frames)
            .await
            .map_err(std::io::Error::other)
    }

    async fn finish(&mut self) {
        let _ = quinn::SendStream::finish(self);
    }
}

/// Starts the tasks of a link over `rd`/`wr`; what it reads goes to `inbox`.
pub(crate) fn spawn<R, W>(
    rd: R,
    wr: W,
    generation: u64,
    link: LinkId,
    max_frame: usize,
    inbox: Inbox,
) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: FrameWriter,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(wr, rx));
    tokio::spawn(read_loop(rd, generation, link, max_frame, inbox));
    Link { tx }
}

async fn write_loop<W: FrameWriter>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut queued: Vec<Bytes> = Vec::new();
    while let Some(first) = rx.recv().await {
        // What is queued now goes out together, up to about 256 KiB.
        let mut total = first.len();
        queued.push(first);
        while total < (256 << 10) {
            match rx.try_recv() {
                Ok(more) => {
                    total += more.len();
                    queued.push(more);
                }
                Err(_) => break,
            }
        }
        if wr.write_frames(&mut queued).await.is_err() {
            return;
        }
        queued.clear();
    }
    wr.finish().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    generation: u64,
    link: LinkId,
    max_frame: usize,
    inbox: Inbox,
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
                // A frame that does not decode goes to the driver, which
                // says what is wrong with it.
                if let Ok(Some((_, f, _))) = frame::decode(&frame, max_frame) {
                    match inbox.routes.lock().route(generation, &f, &frame) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => break e,
                    }
                }
                if inbox
                    .frames
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
    let _ = inbox.frames.send(Incoming {
        generation,
        link,
        frame: Err(end),
    });
}
