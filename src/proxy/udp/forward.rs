//! UDP forwards (client): datagrams arriving on a local UDP port go to one fixed target
//! through the tunnel, and replies come back to the sender.
//!
//! Each client source address gets its own tunnel association (opened on its first
//! datagram, so the target sees one source per client, as with a NAT) and a bounded queue
//! that holds its datagrams while the association opens. An association idle for the idle
//! time ends; the number of associations per rule is capped. Every datagram not carried is
//! counted by why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{bump, UdpCounters, UdpDrop, MAX_UDP_PAYLOAD};
use crate::proxy::{shutdown_requested, Connector};
use crate::tunnel::Target;

/// Datagrams one source may have queued towards its association.
const SOURCE_QUEUE: usize = 256;

/// Limits of one UDP forward rule.
#[derive(Clone, Copy, Debug)]
pub struct UdpForwardLimits {
    /// An association with no datagram either way for this long ends.
    pub idle: Duration,
    /// Most client sources served at once; datagrams of further ones are dropped.
    pub max_sources: usize,
}

impl Default for UdpForwardLimits {
    fn default() -> Self {
        UdpForwardLimits {
            idle: Duration::from_secs(60),
            max_sources: 1024,
        }
    }
}

/// Serves one UDP forward on `socket` until `shutdown` becomes true.
pub async fn serve_udp_forward<C: Connector>(
    socket: UdpSocket,
    target: Target,
    connector: C,
    counters: Arc<UdpCounters>,
    limits: UdpForwardLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    super::enlarge_recv_buffer(&socket);
    let socket = Arc::new(socket);
    let local = socket.local_addr().ok();
    info!(?local, %target, "udp forward: listening");
    let mut sources: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    loop {
        let (n, from) = tokio::select! {
            () = shutdown_requested(&mut shutdown) => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    debug!(%error, "udp forward: receive error");
                    continue;
                }
            },
        };
        bump(&counters.received);
        let live = sources.get(&from).is_some_and(|tx| !tx.is_closed());
        if !live {
            sources.retain(|_, tx| !tx.is_closed());
            if sources.len() >= limits.max_sources {
                bump(&counters.dropped_limit);
                continue;
            }
            let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
            let source = Source {
                from,
                socket: socket.clone(),
                target: target.clone(),
                counters: counters.clone(),
                idle: limits.idle,
            };
            let connector = connector.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = source.run(rx, &connector) => {}
                    () = shutdown_requested(&mut stop) => {}
                }
            });
            sources.insert(from, tx);
        }
        let Some(tx) = sources.get(&from) else {
            continue;
        };
        if tx.try_send(buf[..n].to_vec()).is_err() {
            // Full, or the source's task ended just now (its queue is counted there).
            bump(&counters.dropped_queue_full);
        }
    }
    info!(?local, "udp forward: stopped");
}

/// One client source of a forward and its association.
struct Source {
    from: SocketAddr,
    socket: Arc<UdpSocket>,
    target: Target,
    counters: Arc<UdpCounters>,
    idle: Duration,
}

impl Source {
    async fn run<C: Connector>(self, mut rx: mpsc::Receiver<Vec<u8>>, connector: &C) {
        let from = self.from;
        let mut assoc = match connector.associate(self.target.clone()).await {
            Ok(a) => a,
            Err(result) => {
                warn!(%from, target = %self.target, ?result, "udp forward: association failed");
                self.discard(rx);
                return;
            }
        };
        debug!(%from, target = %self.target, "udp forward: association open");
        let sender = assoc.sender();
        let mut last = Instant::now();
        let reason = loop {
            tokio::select! {
                d = rx.recv() => {
                    let Some(payload) = d else { break "forward stopped" };
                    last = Instant::now();
                    match sender.send(&self.target, &payload) {
                        Ok(()) => {}
                        Err(UdpDrop::Closed) => break "tunnel association ended",
                        Err(why) => debug!(%from, %why, "udp forward: datagram dropped"),
                    }
                }
                d = assoc.recv() => {
                    let Some((_, payload)) = d else { break "tunnel association ended" };
                    last = Instant::now();
                    match self.socket.send_to(&payload, from).await {
                        Ok(_) => bump(&self.counters.delivered),
                        Err(error) => {
                            debug!(%from, %error, "udp forward: send failed");
                            bump(&self.counters.send_errors);
                        }
                    }
                }
                () = tokio::time::sleep_until(last + self.idle) => break "idle",
            }
        };
        debug!(%from, reason, "udp forward: association closed");
        self.discard(rx);
    }

    /// Counts what is still queued for an association that is gone.
    fn discard(&self, mut rx: mpsc::Receiver<Vec<u8>>) {
        rx.close();
        while rx.try_recv().is_ok() {
            bump(&self.counters.dropped_queue_full);
        }
    }
}
