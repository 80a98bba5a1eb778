//! Per-flow TCP shape (sans-IO): makes the frames of one (local, remote) address pair look
//! like a live TCP connection to middleboxes on the path.
//!
//! A [`Flow`] owns the sequence space of its side (random ISN given by the caller, `seq`
//! advancing by exactly the payload length), acknowledges the highest byte seen from the
//! peer, stamps every segment with RFC 7323 timestamps (TSval = milliseconds since the
//! flow was created plus a caller-given random offset; TSecr = the peer's last TSval),
//! increments the IPv4 identification per segment, and cycles the data-segment flags
//! through `local_flags` (paqet's `local_flag`). It can run a SYN / SYN-ACK / ACK handshake
//! first so NATs and stateful firewalls open state:
//!
//! ```text
//!   client (SynSent)                         server (Listen)
//!     SYN  seq=ISNc, MSS SACK-Perm TS WS ───▶  (retransmitted 1 s, 2 s, 4 s, 8 s, 8 s ...)
//!                                         ◀─── SYN-ACK seq=ISNs ack=ISNc+1   (SynReceived;
//!     ACK  seq=ISNc+1 ack=ISNs+1 ─────────▶      re-sent whenever the SYN is seen again)
//!   Established                              Established (on that ACK or the first data)
//! ```
//!
//! Forged or real RSTs never end a flow: they are counted and ignored. A new SYN on an
//! established server flow means the client restarted: the flow starts over and reports
//! [`Inbound::Restarted`].
//!
//! Driving a flow (quinn-proto style): feed every parsed frame of the flow to
//! [`Flow::handle_segment`]; after it returns `Control` or `Restarted`, and whenever
//! [`Flow::poll_timeout`] passes, call [`Flow::poll_control`] until it returns `None` and send
//! what it wrote; wrap outgoing payloads with [`Flow::encapsulate`] (payload placed after
//! [`Flow::headroom`] bytes). The flow never reads a clock: `now` is always passed in.

mod flow;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use crate::wire::{FrameRepr, LinkType, ParsedFrame, TcpFlags, TcpOptions};

pub use flow::Flow;

/// Settings shared by the flows of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Link header written in front of IP.
    pub link: LinkType,
    /// Flags of data segments, used in order and cycling (paqet's `local_flag`). SYN and RST
    /// bits are removed (the peer would take them for control segments); an empty list
    /// means `[PA]`.
    pub local_flags: Vec<TcpFlags>,
    /// Run the SYN / SYN-ACK / ACK handshake before data.
    pub handshake: bool,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// TCP window advertised in every segment (a window-scale option goes in the SYN).
    pub window: u16,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            link: LinkType::Ethernet,
            local_flags: vec![TcpFlags::PSH_ACK],
            handshake: true,
            ttl: 64,
            window: 65535,
        }
    }
}

/// The two ends of a flow and the MAC addresses for the link header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAddrs {
    /// This side's address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Source MAC of emitted frames (ignored for `RawIp`).
    pub local_mac: [u8; 6],
    /// Destination MAC of emitted frames: the peer or the gateway (ignored for `RawIp`).
    pub remote_mac: [u8; 6],
}

/// What [`Flow::handle_segment`] made of a segment. A [`Inbound::Payload`]'s sequence number
/// and timestamp are not taken until the caller confirms the payload authenticated
/// ([`Flow::confirm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Tunnel payload to pass up (possibly a duplicate: the layers above dedupe).
    Payload(&'a [u8]),
    /// A handshake segment was consumed; call [`Flow::poll_control`].
    Control,
    /// The peer sent a new SYN on an established flow: its state was reset; call
    /// [`Flow::poll_control`] and drop the sessions above this flow.
    Restarted,
    /// An RST was seen, counted and ignored.
    IgnoredRst,
    /// Nothing to do: pure ACK, segment for another address or port, unexpected control.
    Ignored,
}

/// Why [`Flow::encapsulate`] refused a payload.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    /// The handshake has not completed: queue the payload and retry later.
    #[error("flow is not established yet")]
    NotEstablished,
    /// The payload does not fit in one IP packet.
    #[error("payload too large for one segment")]
    TooLarge,
    /// The buffer has too little headroom or room for the payload.
    #[error(transparent)]
    Wire(#[from] crate::wire::Error),
}

/// Counters of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// RST segments seen and ignored.
    pub rst_ignored: u64,
    /// Segments handed to `handle_segment`.
    pub segments_in: u64,
    /// Frames written by `poll_control` and `encapsulate`.
    pub segments_out: u64,
    /// SYNs sent again after the first (client only).
    pub syn_retransmits: u64,
}

/// The header of a data segment answering `to`, a segment of a flow this side keeps no state
/// for (a server's reset after a restart). It continues the sequence space the peer sees:
/// seq = the peer's ack, ack = the peer's seq + its payload length, TSecr = the peer's TSval,
/// flags the first of `cfg.local_flags`. `local_mac` / `remote_mac` address the link header.
pub fn reply_repr(
    cfg: &FlowConfig,
    to: &ParsedFrame<'_>,
    local_mac: [u8; 6],
    remote_mac: [u8; 6],
    tsval: u32,
    ip_id: u16,
) -> FrameRepr {
    let r = &to.repr;
    let flags = cfg
        .local_flags
        .first()
        .map(|f| f.without(TcpFlags::SYN | TcpFlags::RST))
        .filter(|f| f.contains(TcpFlags::ACK))
        .unwrap_or(TcpFlags::PSH_ACK);
    FrameRepr {
        link: cfg.link,
        src_mac: local_mac,
        dst_mac: remote_mac,
        src: r.dst,
        dst: r.src,
        ttl: cfg.ttl,
        ip_id,
        // Payloads are far below 2^32 bytes.
        seq: r.ack,
        ack: r.seq.wrapping_add(to.payload.len() as u32),
        flags,
        window: cfg.window,
        options: TcpOptions {
            timestamp: Some((tsval, r.options.timestamp.map_or(0, |(val, _)| val))),
            ..TcpOptions::default()
        },
    }
}
