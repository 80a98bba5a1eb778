//! Bidirectional byte relay that keeps closes honest: EOF on one side becomes a FIN
//! (`shutdown()` of the other side's write half) and the other direction goes on
//! (half-close); a reset or read/write error on either side becomes a reset of the other
//! (an RST on a TCP socket: `SO_LINGER` 0, then close), never a FIN, so an application
//! never mistakes a cut-off transfer for a complete one.
//!
//! Why its own loop rather than `tokio::io::copy_bidirectional`: that helper reports an
//! error but closes both sides the same way whatever happened, and it cannot tell a clean
//! EOF from a reset to the side that must carry it on. Here each direction is a small copy
//! loop whose outcome ([`Ok`] = EOF, [`Err`] = reset) decides how the other side is closed,
//! and the sides themselves know how to close abortively ([`Abortable`]).
//!
//! [`reset_pipe`] is an in-process pipe (tokio's `DuplexStream`) whose ends carry a reset
//! across: the daemon's client joins a front end's socket to its tunnel stream with it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

use super::TunnelStream;

/// Largest read of a copy loop.
const BUFFER_LEN: usize = 16 * 1024;
/// First read buffer of a copy loop; it doubles up to [`BUFFER_LEN`] each time a read fills
/// it, so an idle stream (10,000 of them on a busy client) holds 2 × 2 KiB, not 2 × 16 KiB.
const FIRST_BUFFER_LEN: usize = 2 * 1024;

/// A byte stream that can be closed abortively. `abort` prepares it; dropping it then sends
/// the reset (a TCP socket gets `SO_LINGER` 0, so its close is an RST).
pub trait Abortable {
    /// Makes the coming close a reset.
    fn abort(&self);
}

impl Abortable for TcpStream {
    fn abort(&self) {
        let _ = self.set_zero_linger();
    }
}

/// A plain duplex pipe has no reset: its end closes with EOF (tests use it as a tunnel).
impl Abortable for DuplexStream {
    fn abort(&self) {}
}

/// One end of a [`reset_pipe`].
#[derive(Debug)]
pub struct PipeEnd {
    inner: DuplexStream,
    /// Set by this end's `abort`.
    mine: Arc<AtomicBool>,
    /// Set by the other end's `abort`.
    theirs: Arc<AtomicBool>,
}

/// An in-process byte pipe (`capacity` bytes buffered each way) whose ends pass a reset:
/// after one end is aborted and dropped, the other reads its remaining bytes and then
/// `ConnectionReset` instead of EOF.
pub fn reset_pipe(capacity: usize) -> (PipeEnd, PipeEnd) {
    let (a, b) = tokio::io::duplex(capacity);
    let (fa, fb) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    (
        PipeEnd {
            inner: a,
            mine: fa.clone(),
            theirs: fb.clone(),
        },
        PipeEnd {
            inner: b,
            mine: fb,
            theirs: fa,
        },
    )
}

impl PipeEnd {
    /// True once the other end was aborted.
    pub fn peer_aborted(&self) -> bool {
        self.theirs.load(Ordering::Acquire)
    }
}

impl Abortable for PipeEnd {
    fn abort(&self) {
        self.mine.store(true, Ordering::Release);
    }
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() == before && self.peer_aborted() => {
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.peer_aborted() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a relay ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Bytes `a → b`.
    pub up: u64,
    /// Bytes `b → a`.
    pub down: u64,
    /// Both directions ended with EOF (false: a reset or error aborted both sides).
    pub clean: bool,
}

/// Copies bytes between a tunnel stream and the target connection until both directions
/// have ended or either is reset. Returns `(tunnel → target, target → tunnel)` byte counts.
pub async fn relay<S: TunnelStream>(tunnel: S, target: TcpStream) -> (u64, u64) {
    let o = pipe(tunnel, target).await;
    (o.up, o.down)
}

/// Relays between `a` and `b`. EOF read from one side shuts down the write half of the
/// other and the other direction continues; an error or reset in either direction aborts
/// both sides (each closes with a reset).
pub async fn pipe<A, B>(a: A, b: B) -> RelayOutcome
where
    A: AsyncRead + AsyncWrite + Abortable + Unpin + Send,
    B: AsyncRead + AsyncWrite + Abortable + Unpin + Send,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let a_to_b = AtomicU64::new(0);
    let b_to_a = AtomicU64::new(0);
    let clean = {
        let forward = copy_half(&mut a_read, &mut b_write, &a_to_b);
        let backward = copy_half(&mut b_read, &mut a_write, &b_to_a);
        tokio::pin!(forward, backward);
        let (mut forward_done, mut backward_done) = (false, false);
        let mut clean = true;
        while !(forward_done && backward_done) {
            tokio::select! {
                result = &mut forward, if !forward_done => {
                    forward_done = true;
                    if result.is_err() {
                        clean = false;
                        break;
                    }
                }
                result = &mut backward, if !backward_done => {
                    backward_done = true;
                    if result.is_err() {
                        clean = false;
                        break;
                    }
                }
            }
        }
        clean
    };
    let a = a_read.unsplit(a_write);
    let b = b_read.unsplit(b_write);
    if !clean {
        a.abort();
        b.abort();
    }
    drop((a, b));
    RelayOutcome {
        up: a_to_b.load(Ordering::Relaxed),
        down: b_to_a.load(Ordering::Relaxed),
        clean,
    }
}

async fn copy_half<R, W>(reader: &mut R, writer: &mut W, count: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FIRST_BUFFER_LEN];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        writer.write_all(chunk).await?;
        writer.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n == buf.len() && buf.len() < BUFFER_LEN {
            buf.resize((buf.len() * 2).min(BUFFER_LEN), 0);
        }
    }
}

#[cfg(test)]
mod tests;
