//! UDP through the tunnel.
//!
//! A UDP *association* is a tunnel stream opened with protocol UDP that carries no data
//! after the connect result; the datagrams travel beside it in their own packets, each
//! starting with the [`crate::tunnel`] datagram header (association id, address). This
//! module holds what both ends share:
//!
//! - [`UdpAssociation`]: one association as a front end or the server uses it — `send` a
//!   payload to an address, `recv` the next payload with its address — over a
//!   [`DatagramSink`] (the daemon's packet worker, or an in-memory pipe in tests);
//! - [`UdpCounters`]: every datagram that is not delivered is counted by why;
//! - the client front ends: SOCKS5 UDP ASSOCIATE lives in [`crate::proxy::socks5`], UDP
//!   forwards in [`forward`];
//! - the server side in [`server`]: one association's sockets towards its targets.
//!
//! Datagrams are never cut: one whose header and payload do not fit in a packet
//! ([`DatagramSink::max_body`]) is dropped and counted as oversize.

pub mod forward;
pub mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::tunnel::{datagram_header_len, decode_datagram, encode_datagram, Target};

/// Largest UDP payload a socket can hand over (IPv4: 65,535 − 20 − 8); receive buffers are
/// this large so the kernel never truncates a datagram before we see its size.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Receive buffer asked for on UDP sockets that take bursts (forwards, relays, server
/// associations), so a busy moment does not overflow the kernel's default (~208 KiB).
pub const SOCKET_RECV_BUFFER: usize = 4 << 20;

/// Enlarges `socket`'s receive buffer to [`SOCKET_RECV_BUFFER`]; a failure is logged, not
/// fatal (the default buffer still works).
pub fn enlarge_recv_buffer(socket: &tokio::net::UdpSocket) {
    if let Err(error) = crate::sys::set_recv_buffer(socket, SOCKET_RECV_BUFFER) {
        tracing::debug!(%error, "udp: cannot enlarge the receive buffer");
    }
}

/// Why a datagram did not enter the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UdpDrop {
    /// Header + payload exceed what one packet carries.
    #[error("datagram of {len} bytes (with header) exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The packet worker's queue is full.
    #[error("tunnel queue full")]
    QueueFull,
    /// The association or its session has ended.
    #[error("association closed")]
    Closed,
}

/// Where an association's outgoing datagram bodies go.
pub trait DatagramSink: Send + Sync + 'static {
    /// Queues one body (datagram header + payload) without waiting.
    fn send_body(&self, body: Vec<u8>) -> Result<(), UdpDrop>;
    /// Largest body one packet carries.
    fn max_body(&self) -> usize;
}

/// Counters of the UDP paths of one daemon (client front ends or server associations).
#[derive(Debug, Default)]
pub struct UdpCounters {
    /// Associations opened.
    pub associations: AtomicU64,
    /// Associations open now.
    pub associations_active: AtomicU64,
    /// Datagrams taken from local sockets: client, from applications; server, replies
    /// from targets (accepted ones).
    pub received: AtomicU64,
    /// Datagrams handed to the tunnel.
    pub tunnel_out: AtomicU64,
    /// Datagrams that came out of the tunnel.
    pub tunnel_in: AtomicU64,
    /// Datagrams written to local sockets: client, to applications; server, to targets.
    pub delivered: AtomicU64,
    /// Too large for one packet (never cut).
    pub dropped_oversize: AtomicU64,
    /// A queue on the way was full.
    pub dropped_queue_full: AtomicU64,
    /// SOCKS5 datagrams with FRAG ≠ 0 (fragmentation is not supported, RFC 1928 §7).
    pub dropped_fragment: AtomicU64,
    /// From a source that may not use the association (SOCKS5: not the associating client;
    /// server: an address the association never sent to).
    pub dropped_foreign: AtomicU64,
    /// Undecodable headers.
    pub dropped_malformed: AtomicU64,
    /// Server: destinations the policy denies or that do not resolve.
    pub dropped_denied: AtomicU64,
    /// Over an association limit (per forward rule, per session).
    pub dropped_limit: AtomicU64,
    /// Failed `send_to` on a UDP socket.
    pub send_errors: AtomicU64,
}

/// A copy of [`UdpCounters`] for reports.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct UdpSnapshot {
    pub associations: u64,
    pub associations_active: u64,
    pub received: u64,
    pub tunnel_out: u64,
    pub tunnel_in: u64,
    pub delivered: u64,
    pub dropped_oversize: u64,
    pub dropped_queue_full: u64,
    pub dropped_fragment: u64,
    pub dropped_foreign: u64,
    pub dropped_malformed: u64,
    pub dropped_denied: u64,
    pub dropped_limit: u64,
    pub send_errors: u64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl UdpCounters {
    pub fn snapshot(&self) -> UdpSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UdpSnapshot {
            associations: get(&self.associations),
            associations_active: get(&self.associations_active),
            received: get(&self.received),
            tunnel_out: get(&self.tunnel_out),
            tunnel_in: get(&self.tunnel_in),
            delivered: get(&self.delivered),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_fragment: get(&self.dropped_fragment),
            dropped_foreign: get(&self.dropped_foreign),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_denied: get(&self.dropped_denied),
            dropped_limit: get(&self.dropped_limit),
            send_errors: get(&self.send_errors),
        }
    }

    /// Counts a refused send by its reason.
    pub fn count_drop(&self, why: UdpDrop) {
        match why {
            UdpDrop::TooLarge { .. } => bump(&self.dropped_oversize),
            UdpDrop::QueueFull => bump(&self.dropped_queue_full),
            UdpDrop::Closed => {}
        }
    }
}

/// The sending half of an association; cheap to clone.
#[derive(Clone)]
pub struct UdpSender {
    id: u32,
    sink: Arc<dyn DatagramSink>,
    counters: Arc<UdpCounters>,
}

impl UdpSender {
    /// Largest payload that fits one packet when addressed to `addr`.
    pub fn max_payload(&self, addr: &Target) -> usize {
        self.sink
            .max_body()
            .saturating_sub(datagram_header_len(addr))
    }

    /// Sends `payload` to `addr` (client → server: the destination; server → client: the
    /// source). A refusal is counted here; the caller only decides whether to log.
    pub fn send(&self, addr: &Target, payload: &[u8]) -> Result<(), UdpDrop> {
        let len = datagram_header_len(addr) + payload.len();
        let max = self.sink.max_body();
        let sent = if len > max {
            Err(UdpDrop::TooLarge { len, max })
        } else {
            let mut body = Vec::with_capacity(len);
            encode_datagram(self.id, addr, payload, &mut body);
            self.sink.send_body(body)
        };
        match sent {
            Ok(()) => bump(&self.counters.tunnel_out),
            Err(why) => self.counters.count_drop(why),
        }
        sent
    }

    pub fn counters(&self) -> &Arc<UdpCounters> {
        &self.counters
    }
}

/// One UDP association: send with [`UdpAssociation::sender`], receive with
/// [`UdpAssociation::recv`]. Dropping every sender and the association ends it (the sink
/// closes its control stream).
pub struct UdpAssociation {
    sender: UdpSender,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl UdpAssociation {
    /// `rx` yields the bodies the peer sent on this association, and ends with it.
    pub fn new(
        id: u32,
        sink: Arc<dyn DatagramSink>,
        rx: mpsc::Receiver<Vec<u8>>,
        counters: Arc<UdpCounters>,
    ) -> UdpAssociation {
        bump(&counters.associations);
        counters.associations_active.fetch_add(1, Ordering::Relaxed);
        UdpAssociation {
            sender: UdpSender { id, sink, counters },
            rx,
        }
    }

    pub fn sender(&self) -> UdpSender {
        self.sender.clone()
    }

    pub fn counters(&self) -> &Arc<UdpCounters> {
        &self.sender.counters
    }

    /// The next datagram from the peer: its address and payload. `None` once the
    /// association has ended. Undecodable bodies are counted and skipped.
    pub async fn recv(&mut self) -> Option<(Target, Vec<u8>)> {
        loop {
            let mut body = self.rx.recv().await?;
            let (addr, start) = match decode_datagram(&body) {
                Ok(d) => {
                    let start = body.len() - d.payload.len();
                    (d.addr, start)
                }
                Err(_) => {
                    bump(&self.sender.counters.dropped_malformed);
                    continue;
                }
            };
            bump(&self.sender.counters.tunnel_in);
            body.drain(..start);
            return Some((addr, body));
        }
    }
}

impl Drop for UdpAssociation {
    fn drop(&mut self) {
        self.sender
            .counters
            .associations_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The IP address of a datagram's source, as the client side needs it (the server only
/// ever reports IP sources; a domain is a protocol error, counted by the caller).
pub fn source_ip(addr: &Target) -> Option<SocketAddr> {
    match addr {
        Target::Ip(a) => Some(*a),
        Target::Domain(..) => None,
    }
}
