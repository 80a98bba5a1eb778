//! The server's side: every client flow that reaches the tunnel port, by client address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::connection::{ConnConfig, ConnEvent, Connection};
use crate::faketcp::FlowAddrs;
use crate::wire::{ParsedFrame, TcpFlags};

/// A connection that has not finished its handshake after this long is dropped, so a flood
/// of SYNs or bad handshakes cannot pin memory.
const HALF_OPEN_LIFETIME: Duration = Duration::from_secs(30);

/// Counters of the listener itself (per-connection counters live in the connections).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenerStats {
    /// Frames for an unknown flow that could not open one (no SYN, or table full).
    pub unknown_flow: u64,
    /// Frames addressed elsewhere (wrong IP or port).
    pub misdirected: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    /// Auth failures of connections that have since been dropped.
    pub auth_failures_closed: u64,
    /// Handshakes of connections that have since been dropped.
    pub handshakes_closed: u64,
}

/// An event of one of the listener's connections.
#[derive(Debug)]
pub struct ListenerEvent {
    pub peer: SocketAddr,
    pub event: ConnEvent,
}

/// Random numbers the listener needs for each new flow (ISN, timestamp offset, IP ID),
/// supplied by the caller so the listener stays deterministic under test.
pub trait FlowSeed {
    fn next_u32(&mut self) -> u32;
}

impl<F: FnMut() -> u32> FlowSeed for F {
    fn next_u32(&mut self) -> u32 {
        self()
    }
}

/// Server endpoint: a table of [`Connection`]s keyed by client address.
pub struct Listener {
    cfg: ConnConfig,
    local: SocketAddr,
    local_mac: [u8; 6],
    /// Gateway MAC to send to; `None` answers to the MAC the client's frame came from.
    router_mac: Option<[u8; 6]>,
    max_flows: usize,
    conns: HashMap<SocketAddr, (Connection, Instant)>,
    stats: ListenerStats,
}

impl Listener {
    pub fn new(
        cfg: ConnConfig,
        local: SocketAddr,
        local_mac: [u8; 6],
        router_mac: Option<[u8; 6]>,
        max_flows: usize,
    ) -> Listener {
        Listener {
            cfg,
            local,
            local_mac,
            router_mac,
            max_flows,
            conns: HashMap::new(),
            stats: ListenerStats::default(),
        }
    }

    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    pub fn connections(&self) -> impl Iterator<Item = (&SocketAddr, &Connection)> {
        self.conns.iter().map(|(k, (c, _))| (k, c))
    }

    pub fn connection_mut(&mut self, peer: &SocketAddr) -> Option<&mut Connection> {
        self.conns.get_mut(peer).map(|(c, _)| c)
    }

    pub fn connections_mut(&mut self) -> impl Iterator<Item = (&SocketAddr, &mut Connection)> {
        self.conns.iter_mut().map(|(k, (c, _))| (k, c))
    }

    /// Feeds one captured frame. Returns the client address it belonged to, if any.
    pub fn handle_frame(
        &mut self,
        frame: &ParsedFrame<'_>,
        now: Instant,
        seed: &mut impl FlowSeed,
    ) -> Option<SocketAddr> {
        let r = &frame.repr;
        if r.dst.port() != self.local.port()
            || (!self.local.ip().is_unspecified() && r.dst.ip() != self.local.ip())
        {
            self.stats.misdirected += 1;
            return None;
        }
        let peer = r.src;
        if !self.conns.contains_key(&peer) {
            let syn = r.flags.contains(TcpFlags::SYN) && !r.flags.contains(TcpFlags::ACK);
            let opens = if self.cfg.flow.handshake {
                syn
            } else {
                !frame.payload.is_empty()
            };
            // A client that outlived a server restart keeps sending data on its flow: accept
            // that too so the client can re-handshake without waiting for its idle timeout.
            let resumes = self.cfg.flow.handshake && !syn && !frame.payload.is_empty();
            if !(opens || resumes) || self.conns.len() >= self.max_flows {
                self.stats.unknown_flow += 1;
                return None;
            }
            let addrs = FlowAddrs {
                local: SocketAddr::new(r.dst.ip(), self.local.port()),
                remote: peer,
                local_mac: self.local_mac,
                remote_mac: self.router_mac.unwrap_or(r.src_mac),
            };
            let mut flow_cfg = self.cfg.clone();
            if resumes {
                flow_cfg.flow.handshake = false;
            }
            let conn = Connection::server(
                flow_cfg,
                addrs,
                seed.next_u32(),
                seed.next_u32(),
                seed.next_u32() as u16,
                now,
            );
            tracing::debug!(%peer, "new flow");
            self.stats.flows_created += 1;
            self.conns.insert(peer, (conn, now));
        }
        let (conn, _) = self.conns.get_mut(&peer)?;
        conn.handle_frame(frame, now);
        Some(peer)
    }

    /// Runs every connection's timers and drops closed and stale half-open connections.
    /// Events of dropped connections are returned too.
    pub fn handle_timeout(&mut self, now: Instant, events: &mut Vec<ListenerEvent>) {
        let mut gone = Vec::new();
        for (peer, (conn, created)) in self.conns.iter_mut() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
            // Half-open: no confirmed session yet (a replayed handshake stays here).
            let stale = !conn.is_confirmed()
                && now.saturating_duration_since(*created) > HALF_OPEN_LIFETIME;
            if conn.is_closed() || stale {
                while let Some(event) = conn.poll_event() {
                    events.push(ListenerEvent { peer: *peer, event });
                }
                gone.push(*peer);
            }
        }
        for peer in gone {
            if let Some((conn, _)) = self.conns.remove(&peer) {
                self.stats.flows_expired += 1;
                let cs = conn.stats();
                self.stats.auth_failures_closed += cs.auth_failures;
                self.stats.handshakes_closed += cs.handshakes_ok;
            }
        }
    }

    /// Earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|(c, created)| {
                let own = c.poll_timeout();
                if !c.is_confirmed() {
                    let expiry = *created + HALF_OPEN_LIFETIME;
                    Some(own.map_or(expiry, |t| t.min(expiry)))
                } else {
                    own
                }
            })
            .min()
    }

    /// Collects pending events of all connections.
    pub fn poll_events(&mut self, events: &mut Vec<ListenerEvent>) {
        for (peer, (conn, _)) in self.conns.iter_mut() {
            while let Some(event) = conn.poll_event() {
                events.push(ListenerEvent { peer: *peer, event });
            }
        }
    }
}
