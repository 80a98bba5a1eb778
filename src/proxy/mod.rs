//! Application-facing proxies and target dialing.
//!
//! Client side: front ends that accept local application connections and carry each one over
//! a tunnel stream — SOCKS5 ([`serve_socks5`], RFC 1928/1929), HTTP CONNECT
//! ([`serve_http_connect`]) and fixed TCP forwards ([`serve_tcp_forward`]); SOCKS5 UDP
//! ASSOCIATE and UDP forwards ([`serve_udp_forward`]) carry datagrams over tunnel UDP
//! associations ([`udp`]). The tunnel is abstracted behind [`Connector`], so these run (and
//! are tested) without the rest of the system.
//!
//! Server side: [`dial`] resolves ([`mod@resolve`], an async resolver with a bounded number of
//! lookups in flight) and connects to a target under a [`DialPolicy`] — the
//! [`TargetPolicy`] (safe by default: see [`policy`]) checked on every address used —
//! within a session's [`SessionBudget`]; [`relay`] copies bytes between a tunnel stream
//! and the target connection; [`serve_stream`] does both for one opened stream and sends
//! the [`ConnectResult`]; [`serve_udp_association`] serves one UDP association.
//!
//! Every accept loop spawns one task per connection, returns when its shutdown flag becomes
//! `true` (or its sender is dropped) and ends the connection tasks it spawned at the same
//! time. Relays keep closes honest (see [`relay`]): EOF on one side becomes `shutdown()` of
//! the other side's write half (half-close), and a reset or error on one side becomes a
//! reset of the other; the relay ends when both directions are done or either is reset.

mod budget;
mod dial;
mod forward;
mod http;
pub mod policy;
mod relay;
pub mod resolve;
mod server;
pub mod socks5;
pub mod udp;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::tunnel::{ConnectResult, Target};

pub use budget::{session_memory_bound, LimitCounters, LimitSnapshot, SessionBudget};
pub use dial::{dial, resolve, DialPolicy};
pub use forward::serve_tcp_forward;
pub use http::{read_connect_request, serve_http_connect, HeadError};
pub use policy::{Refusal, TargetPolicy};
pub use relay::{pipe, relay, reset_pipe, Abortable, PipeEnd, RelayOutcome};
pub use resolve::Resolver;
pub use server::serve_stream;
pub use socks5::{serve_socks5, Socks5Auth};
pub use udp::forward::{serve_udp_forward, UdpForwardLimits};
pub use udp::server::serve_udp_association;
pub use udp::{UdpAssociation, UdpCounters, UdpDrop};

/// A byte stream through the tunnel (a mux stream in the daemon, a pipe in tests) that can
/// be closed with a reset.
pub trait TunnelStream: AsyncRead + AsyncWrite + Abortable + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Abortable + Unpin + Send + 'static> TunnelStream for T {}

/// Opens a stream through the tunnel and waits for the server's [`ConnectResult`].
pub trait Connector: Clone + Send + Sync + 'static {
    /// The stream handed back once the server reports [`ConnectResult::Ok`].
    type Stream: TunnelStream;
    /// Opens a stream to `target`; any result other than `Ok` comes back as the error.
    fn connect(
        &self,
        target: Target,
    ) -> impl Future<Output = Result<Self::Stream, ConnectResult>> + Send;

    /// Opens a UDP association towards `target` (`0.0.0.0:0`: any destination, each
    /// datagram names its own). A connector without UDP refuses with `Failure`.
    fn associate(
        &self,
        target: Target,
    ) -> impl Future<Output = Result<UdpAssociation, ConnectResult>> + Send {
        let _ = target;
        std::future::ready(Err(ConnectResult::Failure))
    }
}

/// Reads the server's [`ConnectResult`] from the start of a freshly opened tunnel stream:
/// the stream on `Ok`, the result otherwise (`Failure` if the stream ends or is garbled).
pub async fn await_connect_result<S: TunnelStream>(mut stream: S) -> Result<S, ConnectResult> {
    let mut bytes = [0u8; ConnectResult::ENCODED_LEN];
    if stream.read_exact(&mut bytes).await.is_err() {
        return Err(ConnectResult::Failure);
    }
    match ConnectResult::decode(&bytes) {
        Ok(ConnectResult::Ok) => Ok(stream),
        Ok(other) => Err(other),
        Err(_) => Err(ConnectResult::Failure),
    }
}

/// How long a local client may take to finish a proxy handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to drain a misbehaving client's input after the error reply, so the reply is
/// delivered with a FIN instead of being lost to an RST.
const LINGER: Duration = Duration::from_secs(2);

/// Resolves once `shutdown` is `true` or its sender is gone.
pub(crate) async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown, spawning `session(stream, peer)` for each one.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    kind: &'static str,
    mut session: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    info!(?local, "{kind}: listening");
    loop {
        tokio::select! {
            () = shutdown_requested(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%peer, %error, "{kind}: set_nodelay failed");
                    }
                    let task = session(stream, peer);
                    let mut stop = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = task => {}
                            () = shutdown_requested(&mut stop) => {
                                debug!(%peer, "{kind}: connection closed by shutdown");
                            }
                        }
                    });
                }
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(%error, "{kind}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    info!(?local, "{kind}: stopped");
}

/// Closes a client connection after an error reply: sends FIN, then reads and discards
/// what the client still sends (bounded in bytes and time) so the reply is not reset away.
pub(crate) async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 1024];
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
