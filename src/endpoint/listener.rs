//! The server's side: every client flow that reaches the tunnel port, by client address,
//! and the silent treatment of everything else.
//!
//! A flow is created only for an opening that proved a key ([`Gate`]): a fresh SYN proof
//! (fake-TCP handshake on) or a fresh msg1 (handshake off). Anything else for an unknown
//! flow is tried as a probe; a valid, fresh probe gets a reset (the only thing this server
//! ever sends without a flow), anything else is dropped and counted. The table is bounded:
//! when it is full, the oldest connection without a confirmed session makes room; when every
//! connection is confirmed, the new flow is refused.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

use super::connection::{ClientInfo, ConnConfig, ConnEvent, Connection, WallClock};
use super::gate::{Gate, GateConfig, GateShared};
use super::session::CloseNotice;
use super::{CloseReason, ConnStats, ConnTotals, DropStats};
use crate::crypto::proof::{self, Probe, SHORT_MAX};
use crate::crypto::{Binding, ServerIdentity};
use crate::faketcp::{self, FlowAddrs};
use crate::wire::{self, ParsedFrame, TcpFlags};

/// A connection that has not confirmed a session after this long is dropped, so openings
/// (even valid ones) cannot pin memory.
const HALF_OPEN_LIFETIME: Duration = Duration::from_secs(30);
/// Stateless replies (resets) waiting for [`Listener::poll_transmit`] at most.
const OUTBOX: usize = 64;

/// Counters of the listener itself (per-connection counters live in the connections, and
/// those of dropped connections in [`Listener::retired`]). All of them only go up.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenerStats {
    /// Connections created for openings that proved a key.
    pub flows_created: u64,
    /// Connections dropped (closed, stale half-open, or evicted to make room).
    pub flows_expired: u64,
    /// Probes answered with a reset.
    pub resets_sent: u64,
    /// Packets dropped without an answer, by reason.
    pub drops: DropStats,
}

/// An event of one of the listener's connections.
#[derive(Debug)]
pub struct ListenerEvent {
    pub peer: SocketAddr,
    pub event: ConnEvent,
}

/// Server endpoint: a table of [`Connection`]s keyed by client address, behind a [`Gate`].
pub struct Listener {
    cfg: ConnConfig,
    local: SocketAddr,
    local_mac: [u8; 6],
    /// Gateway MAC to send to; `None` answers to the MAC the client's frame came from.
    router_mac: Option<[u8; 6]>,
    max_flows: usize,
    conns: HashMap<SocketAddr, (Connection, Instant)>,
    gate: Gate,
    /// Stateless replies and when they were queued.
    outbox: VecDeque<(Vec<u8>, Instant)>,
    /// Events of connections dropped to make room.
    orphans: Vec<ListenerEvent>,
    stats: ListenerStats,
    /// Counters of the connections dropped so far.
    retired: ConnTotals,
}

impl Listener {
    /// A listener for `local` with the server keys `identities`. `shared` is the gate state
    /// all workers of the server share; `seed` seeds the listener's random choices.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ConnConfig,
        identities: Arc<[ServerIdentity]>,
        gate: GateConfig,
        shared: GateShared,
        local: SocketAddr,
        local_mac: [u8; 6],
        router_mac: Option<[u8; 6]>,
        max_flows: usize,
        seed: [u8; 32],
    ) -> Listener {
        let rng = rand::rngs::StdRng::from_seed(seed);
        Listener {
            cfg,
            local,
            local_mac,
            router_mac,
            max_flows,
            conns: HashMap::new(),
            gate: Gate::new(identities, gate, shared, rng),
            outbox: VecDeque::new(),
            orphans: Vec::new(),
            stats: ListenerStats::default(),
            retired: ConnTotals::default(),
        }
    }

    pub fn stats(&self) -> ListenerStats {
        let mut s = self.stats;
        s.drops = self.gate.drops;
        s
    }

    /// The Unix-time mapping for proofs (the daemon refreshes it).
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.cfg.wall = wall;
    }

    /// New server keys and client lists (SIGHUP): sessions of clients that are no longer
    /// allowed end at once, and the client is told so.
    pub fn set_identities(&mut self, identities: Arc<[ServerIdentity]>, now: Instant) {
        let allowed = |info: &ClientInfo| {
            identities
                .iter()
                .any(|i| i.public == info.server && i.client_by_id(&info.id).is_some())
        };
        for (peer, (conn, _)) in self.conns.iter_mut() {
            conn.retain_candidates(allowed);
            let Some(info) = conn.client_info() else {
                continue;
            };
            if !allowed(info) {
                tracing::info!(%peer, client = %info.name, "client removed from the configuration: ending its session");
                conn.close_with_notice(CloseNotice::Revoked, now);
            }
        }
        self.gate.identities = identities;
    }

    /// Ends every session, telling each client (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        for (conn, _) in self.conns.values_mut() {
            conn.close_with_notice(CloseNotice::Shutdown, now);
        }
    }

    pub fn connections(&self) -> impl Iterator<Item = (&SocketAddr, &Connection)> {
        self.conns.iter().map(|(k, (c, _))| (k, c))
    }

    pub fn connection(&self, peer: &SocketAddr) -> Option<&Connection> {
        self.conns.get(peer).map(|(c, _)| c)
    }

    pub fn connection_mut(&mut self, peer: &SocketAddr) -> Option<&mut Connection> {
        self.conns.get_mut(peer).map(|(c, _)| c)
    }

    pub fn connections_mut(&mut self) -> impl Iterator<Item = (&SocketAddr, &mut Connection)> {
        self.conns.iter_mut().map(|(k, (c, _))| (k, c))
    }

    /// Feeds one captured frame. Returns the client address it belonged to, if any.
    pub fn handle_frame(&mut self, frame: &ParsedFrame<'_>, now: Instant) -> Option<SocketAddr> {
        let r = &frame.repr;
        if r.dst.port() != self.local.port()
            || (!self.local.ip().is_unspecified() && r.dst.ip() != self.local.ip())
        {
            self.gate.drops.misdirected += 1;
            return None;
        }
        let peer = r.src;
        let now_ms = self.cfg.wall.unix_ms(now);
        let syn = r.flags.contains(TcpFlags::SYN) && !r.flags.contains(TcpFlags::ACK);
        if let Some((conn, _)) = self.conns.get_mut(&peer) {
            // A SYN that is not a copy of the one that opened the flow must prove a key too.
            let known_syn = conn.flow().peer_isn() == Some(r.seq);
            if syn && !known_syn && !self.gate.check_syn(frame, now, now_ms) {
                return None;
            }
            let p = conn.handle_frame(frame, now)?;
            self.unclaimed(frame, p, now, now_ms);
            return Some(peer);
        }
        if syn {
            if !self.cfg.flow.handshake {
                self.gate.drops.no_flow += 1;
            } else if self.gate.check_syn(frame, now, now_ms) {
                let conn = self.new_flow(frame, now)?;
                conn.handle_frame(frame, now);
                return Some(peer);
            }
            return None;
        }
        if frame.payload.is_empty() {
            self.gate.drops.no_flow += 1;
            return None;
        }
        if !self.cfg.flow.handshake {
            let (src, dst) = (r.src, r.dst);
            match self
                .gate
                .accept_msg1(src, dst, frame.payload, self.cfg.cipher, now, now_ms)
            {
                Some(Ok(o)) => {
                    let conn = self.new_flow(frame, now)?;
                    conn.handle_frame(frame, now);
                    conn.confirm_segment(frame);
                    conn.install_session(o.accepted, o.conv, o.client, o.msg2, now);
                    return Some(peer);
                }
                Some(Err(())) => return None,
                None => {}
            }
        }
        self.unknown_flow(frame, now, now_ms);
        None
    }

    /// A payload that the session of its (existing) flow could not use: a msg1 (a first or
    /// newer session), a probe (answered with a sealed "alive"), or nothing (counted).
    fn unclaimed(&mut self, frame: &ParsedFrame<'_>, p: &[u8], now: Instant, now_ms: u64) {
        let (src, dst) = (frame.repr.src, frame.repr.dst);
        let cipher = self.cfg.cipher;
        match self.gate.accept_msg1(src, dst, p, cipher, now, now_ms) {
            Some(Ok(o)) => {
                if let Some((conn, _)) = self.conns.get_mut(&src) {
                    conn.confirm_segment(frame);
                    conn.install_session(o.accepted, o.conv, o.client, o.msg2, now);
                }
            }
            Some(Err(())) => {}
            None => match self.gate.check_probe(src, dst, p, now_ms) {
                Some((_, probe)) => {
                    if self.gate.reset_allowed(probe.client, now) {
                        if let Some((conn, _)) = self.conns.get_mut(&src) {
                            conn.answer_probe(now);
                        }
                    }
                }
                None => match self.conns.get_mut(&src) {
                    Some((conn, _)) if conn.phase() == super::Phase::Established => {
                        conn.count_unclaimed();
                    }
                    // A half-open flow waits for a msg1; this was none.
                    _ => self.gate.drops.msg1_invalid += 1,
                },
            },
        }
    }

    /// A payload for a flow we have no state for: a probe gets a reset, the rest nothing.
    fn unknown_flow(&mut self, frame: &ParsedFrame<'_>, now: Instant, now_ms: u64) {
        let r = &frame.repr;
        let Some((identity, probe)) = self.gate.check_probe(r.src, r.dst, frame.payload, now_ms)
        else {
            self.gate.drops.no_flow += 1;
            return;
        };
        if !self.gate.reset_allowed(probe.client, now) || self.outbox.len() >= OUTBOX {
            return;
        }
        if let Some(reset) = self.reset_frame(frame, identity, &probe) {
            tracing::info!(peer = %r.src, "probe for a session we do not have: reset sent");
            self.stats.resets_sent += 1;
            self.outbox.push_back((reset, now));
        }
    }

    /// The frame of a reset answering `probe`, in the sequence space the client sees.
    fn reset_frame(
        &mut self,
        to: &ParsedFrame<'_>,
        identity: usize,
        probe: &Probe,
    ) -> Option<Vec<u8>> {
        let r = &to.repr;
        let id = self.gate.identities.get(identity)?;
        let rng = &mut self.gate.rng;
        let remote_mac = self.router_mac.unwrap_or(r.src_mac);
        // Continue the timestamp clock the client last saw from us (its TSecr).
        let tsval = match r.options.timestamp {
            Some((_, ecr)) if ecr != 0 => ecr.wrapping_add(1 + rng.next_u32() % 8),
            _ => rng.next_u32(),
        };
        let ip_id = rng.next_u32() as u16;
        let repr =
            faketcp::reply_repr(&self.cfg.flow, to, self.local_mac, remote_mac, tsval, ip_id);
        let hl = wire::header_len(&repr);
        let mut buf = vec![0u8; hl + SHORT_MAX];
        let flow = Binding::flow(r.src, r.dst);
        let len = proof::write_reset(id, &flow, probe, rng, &mut buf[hl..])?;
        let start = wire::emit_frame(&repr, &mut buf, hl, len).ok()?;
        buf.truncate(hl + len);
        buf.drain(..start);
        Some(buf)
    }

    /// Creates the connection for a flow whose opening proved a key, making room if needed.
    fn new_flow(&mut self, frame: &ParsedFrame<'_>, now: Instant) -> Option<&mut Connection> {
        let r = &frame.repr;
        if self.conns.len() >= self.max_flows && !self.evict_half_open() {
            self.gate.drops.table_full += 1;
            return None;
        }
        let addrs = FlowAddrs {
            local: SocketAddr::new(r.dst.ip(), self.local.port()),
            remote: r.src,
            local_mac: self.local_mac,
            remote_mac: self.router_mac.unwrap_or(r.src_mac),
        };
        let mut seed = [0u8; 32];
        self.gate.rng.fill_bytes(&mut seed);
        let conn = Connection::server(self.cfg.clone(), addrs, seed, now);
        tracing::debug!(peer = %r.src, "new flow");
        self.stats.flows_created += 1;
        let (conn, _) = self.conns.entry(r.src).or_insert((conn, now));
        Some(conn)
    }

    /// Drops the oldest connection without a confirmed session; false if there is none.
    fn evict_half_open(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, (c, _))| !c.is_confirmed())
            .min_by_key(|(_, (_, created))| *created)
            .map(|(peer, _)| *peer);
        let Some(peer) = oldest else { return false };
        self.remove(peer, true);
        true
    }

    /// Removes a connection, keeping its counters and (if it had a session) reporting it.
    fn remove(&mut self, peer: SocketAddr, evicted: bool) {
        let Some((mut conn, _)) = self.conns.remove(&peer) else {
            return;
        };
        while let Some(event) = conn.poll_event() {
            self.orphans.push(ListenerEvent { peer, event });
        }
        if evicted && conn.phase() == super::Phase::Established {
            self.orphans.push(ListenerEvent {
                peer,
                event: ConnEvent::SessionLost(CloseReason::HandshakeTimeout),
            });
        }
        self.stats.flows_expired += 1;
        self.retired.retire(&conn);
    }

    /// A stateless reply to send (resets), written at the start of `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<std::ops::Range<usize>> {
        let (f, _) = self.outbox.pop_front()?;
        buf.get_mut(..f.len())?.copy_from_slice(&f);
        Some(0..f.len())
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
                gone.push((*peer, stale && !conn.is_closed()));
            }
        }
        for (peer, stale) in gone {
            self.remove(peer, stale);
        }
        events.append(&mut self.orphans);
    }

    /// Earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self
            .conns
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
            .min();
        // Queued resets are due since they were queued.
        match (conns, self.outbox.front()) {
            (Some(a), Some((_, b))) => Some(a.min(*b)),
            (a, b) => a.or(b.map(|(_, t)| *t)),
        }
    }

    /// Collects pending events of all connections.
    pub fn poll_events(&mut self, events: &mut Vec<ListenerEvent>) {
        events.append(&mut self.orphans);
        for (peer, (conn, _)) in self.conns.iter_mut() {
            while let Some(event) = conn.poll_event() {
                events.push(ListenerEvent { peer: *peer, event });
            }
        }
    }

    /// The counters of the connections dropped so far (add the live ones' to get totals
    /// that never go down).
    pub fn retired(&self) -> &ConnTotals {
        &self.retired
    }

    /// Live connections plus the counters of dropped ones, added up.
    pub fn totals(&self) -> ConnStats {
        self.retired.total(self.conns.values().map(|(c, _)| c))
    }
}
