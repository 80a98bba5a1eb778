//! Bidirectional byte relay with half-close propagation.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TunnelStream;

const BUFFER_LEN: usize = 16 * 1024;

/// Copies bytes between a tunnel stream and the target connection until both directions
/// have ended (or either fails). Returns `(tunnel → target, target → tunnel)` byte counts.
pub async fn relay<S: TunnelStream>(tunnel: S, target: TcpStream) -> (u64, u64) {
    pipe(tunnel, target).await
}

/// Relays between `a` and `b`; returns `(a → b, b → a)` byte counts. EOF read from one side
/// shuts down the write half of the other; an error in either direction ends both.
pub(crate) async fn pipe<A, B>(a: A, b: B) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin + Send,
    B: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let a_to_b = AtomicU64::new(0);
    let b_to_a = AtomicU64::new(0);
    let forward = copy_half(&mut a_read, &mut b_write, &a_to_b);
    let backward = copy_half(&mut b_read, &mut a_write, &b_to_a);
    tokio::pin!(forward, backward);
    let (mut forward_done, mut backward_done) = (false, false);
    while !(forward_done && backward_done) {
        tokio::select! {
            result = &mut forward, if !forward_done => {
                forward_done = true;
                if result.is_err() {
                    break;
                }
            }
            result = &mut backward, if !backward_done => {
                backward_done = true;
                if result.is_err() {
                    break;
                }
            }
        }
    }
    (
        a_to_b.load(Ordering::Relaxed),
        b_to_a.load(Ordering::Relaxed),
    )
}

async fn copy_half<R, W>(reader: &mut R, writer: &mut W, count: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_LEN];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        writer.write_all(chunk).await?;
        writer.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
