//! Client side of a stream: the [`Connector`] the SOCKS5 / HTTP CONNECT / forward front
//! ends use to open streams through the tunnel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::bridge::{Command, Input, StreamPort};
use super::stats::Stats;
use crate::proxy::{reset_pipe, Connector, PipeEnd, UdpAssociation};
use crate::tunnel::{ConnectResult, OpenRequest, Protocol, Target};

/// Buffer of the in-process pipe between a front end's socket task and the stream relay
/// (a [`reset_pipe`], so a reset crosses it as a reset, not as EOF).
const PIPE: usize = 256 * 1024;

/// Opens streams on the packet workers, round robin.
#[derive(Clone)]
pub struct TunnelConnector {
    pub workers: Arc<Vec<flume::Sender<Input>>>,
    pub next: Arc<AtomicUsize>,
    /// How long to wait for the server's connect result.
    pub timeout: Duration,
    pub stats: Arc<Stats>,
}

impl Connector for TunnelConnector {
    type Stream = PipeEnd;

    async fn associate(&self, target: Target) -> Result<UdpAssociation, ConnectResult> {
        // As for streams: an association whose session died before the connect result is
        // opened once more.
        let port = match self.open_once(Protocol::Udp, &target).await {
            Err(Retry) => self
                .open_once(Protocol::Udp, &target)
                .await
                .map_err(|Retry| {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    ConnectResult::Failure
                })??,
            Ok(r) => r?,
        };
        let (port, _rest) = port;
        port.into_association(self.stats.udp.clone())
            .ok_or(ConnectResult::Failure)
    }

    async fn connect(&self, target: Target) -> Result<PipeEnd, ConnectResult> {
        // A stream that ends before the server's connect result carried no application data
        // yet (the front end relays only after connect returns), so it is safe to open it
        // again: this is what happens when the session died under it (e.g. the server
        // restarted and answered with a stateless reset), and the retry waits for the new
        // session.
        match self.connect_once(&target).await {
            Err(Retry) => self.connect_once(&target).await.map_err(|Retry| {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                ConnectResult::Failure
            })?,
            Ok(r) => r,
        }
    }
}

/// The stream ended before the connect result: the open may be tried again.
struct Retry;

impl TunnelConnector {
    async fn connect_once(&self, target: &Target) -> Result<Result<PipeEnd, ConnectResult>, Retry> {
        let (port, rest) = match self.open_once(Protocol::Tcp, target).await? {
            Ok(x) => x,
            Err(r) => return Ok(Err(r)),
        };
        let (app, relay_end) = reset_pipe(PIPE);
        let target = target.clone();
        tokio::spawn(async move {
            let (up, down) = port.relay(relay_end, rest).await;
            tracing::debug!(%target, up, down, "stream closed");
        });
        Ok(Ok(app))
    }

    /// Opens a stream (or UDP association) and waits for the server's connect result;
    /// returns the port and any bytes that followed the result.
    async fn open_once(
        &self,
        protocol: Protocol,
        target: &Target,
    ) -> Result<Result<(StreamPort, Vec<u8>), ConnectResult>, Retry> {
        let target = target.clone();
        let n = self.workers.len().max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let worker = self.workers.get(i).ok_or(Retry)?;
        let (reply, wait) = oneshot::channel();
        let req = OpenRequest { protocol, target };
        worker
            .send_async(Input::Cmd(Command::Open { req, reply }))
            .await
            .map_err(|_| Retry)?;
        let fail = |r| {
            self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            r
        };
        let mut port = match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(r))) => return Ok(Err(fail(r))),
            Ok(Err(_)) => return Ok(Err(fail(ConnectResult::Failure))),
            Err(_) => return Ok(Err(fail(ConnectResult::Timeout))),
        };
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        let prefix = tokio::time::timeout(
            self.timeout,
            port.read_exact_prefix(ConnectResult::ENCODED_LEN),
        )
        .await;
        let abandon = StreamPort::abandon;
        let (head, rest) = match prefix {
            Ok(Some(x)) => x,
            Ok(None) => {
                abandon(port).await;
                return Err(Retry);
            }
            Err(_) => {
                abandon(port).await;
                return Ok(Err(fail(ConnectResult::Timeout)));
            }
        };
        match ConnectResult::decode(&head) {
            Ok(ConnectResult::Ok) => {}
            Ok(r) => {
                abandon(port).await;
                return Ok(Err(fail(r)));
            }
            Err(_) => {
                abandon(port).await;
                return Ok(Err(fail(ConnectResult::Failure)));
            }
        }
        Ok(Ok((port, rest)))
    }
}
