//! A session's outgoing bytes: small frames encoded into owned buffers, and
//! delivered records left where they are, in the log's mapping.
//!
//! The writer hands both to the socket in one vectored write, so a record is
//! copied once, by the kernel, from the page cache into the socket: never
//! into a user-space buffer first. For a topic with many subscribers that is
//! the copy that would otherwise be made once per subscriber.

use std::future::Future;
use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use fanlog_broker::RecordRun;

/// A piece of outgoing bytes.
pub(crate) enum Chunk {
    /// Encoded frames (acks, delivery heads, errors...).
    Owned(Vec<u8>),
    /// Delivered records, in place in the log.
    Mapped(RecordRun),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Mapped(r) => r.as_slice(),
        }
    }
}

/// What a session has to send, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    chunks: Vec<Chunk>,
    /// Bytes in `chunks`.
    sealed: usize,
    /// The buffer frames are encoded into; sealed into `chunks` when a mapped
    /// run follows it or the outbox is taken.
    tail: Vec<u8>,
}

impl Outbox {
    /// The buffer to encode the next frame into.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Queues a run of records after what is already queued.
    pub(crate) fn push_run(&mut self, run: RecordRun) {
        self.seal();
        self.sealed += run.len();
        self.chunks.push(Chunk::Mapped(run));
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.sealed + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything queued, in order.
    pub(crate) fn take(&mut self) -> Vec<Chunk> {
        self.seal();
        self.sealed = 0;
        std::mem::take(&mut self.chunks)
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            self.sealed += tail.len();
            self.chunks.push(Chunk::Owned(tail));
        }
    }
}

/// Most slices handed to one vectored write (Linux takes up to 1024).
const MAX_SLICES: usize = 64;

/// Where a session's writer puts its chunks: a byte stream through
/// [`write_chunks`], or a QUIC stream that takes them as shared buffers
/// (the mapped runs of records included) without a copy on our side.
pub(crate) trait ChunkWriter: Send + 'static {
    /// Writes every chunk, in order.
    fn write(&mut self, chunks: Vec<Chunk>) -> impl Future<Output = io::Result<()>> + Send + '_;
    /// Ends the stream.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send + '_;
}

/// A byte stream as a [`ChunkWriter`].
pub(crate) struct Stream<W>(pub(crate) W);

impl<W: AsyncWrite + Unpin + Send + 'static> ChunkWriter for Stream<W> {
    async fn write(&mut self, chunks: Vec<Chunk>) -> io::Result<()> {
        write_chunks(&mut self.0, &chunks).await
    }

    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.0).await;
    }
}

impl ChunkWriter for quinn::SendStream {
    async fn write(&mut self, chunks: Vec<Chunk>) -> io::Result<()> {
        let mut bufs: Vec<bytes::Bytes> = chunks
            .into_iter()
            .map(|c| match c {
                Chunk::Owned(v) => bytes::Bytes::from(v),
                // The run keeps its segment mapped until quinn is done.
                Chunk::Mapped(run) => bytes::Bytes::from_owner(run),
            })
            .collect();
        self.write_all_chunks(&mut bufs)
            .await
            .map_err(io::Error::other)
    }

    async fn shutdown(&mut self) {
        let _ = self.finish();
    }
}

/// Writes `chunks` in order: vectored where the writer supports it, else
/// one chunk at a time.
pub(crate) async fn write_chunks<W>(wr: &mut W, chunks: &[Chunk]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if !wr.is_write_vectored() {
        for c in chunks {
            wr.write_all(c.as_slice()).await?;
        }
        return Ok(());
    }
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c.as_slice())).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let n = left.len().min(MAX_SLICES);
        let written = wr.write_vectored(&left[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Past what was written, possibly mid-chunk.
        IoSlice::advance_slices(&mut left, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A writer that takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.step - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.step {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_keep_every_byte_in_order() {
        let chunks: Vec<Chunk> = (0..200u32)
            .map(|i| Chunk::Owned((0..(i % 13 + 1)).map(|b| (i + b) as u8).collect()))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.as_slice().to_vec()).collect();
        for vectored in [true, false] {
            for step in [1, 3, 7, 64, 10_000] {
                let mut w = Trickle {
                    out: Vec::new(),
                    step,
                    vectored,
                };
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(write_chunks(&mut w, &chunks))
                    .unwrap();
                assert_eq!(w.out, expected, "step {step}, vectored {vectored}");
            }
        }
    }

    #[test]
    fn the_outbox_keeps_frames_and_counts_bytes() {
        let mut o = Outbox::default();
        assert!(o.is_empty());
        o.buf().extend_from_slice(b"abc");
        o.buf().extend_from_slice(b"de");
        assert_eq!(o.len(), 5);
        let chunks = o.take();
        assert!(o.is_empty());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].as_slice(), b"abcde");
    }
}
