//! The server's side: every client flow that reaches the tunnel port, by client address,
//! and the silent treatment of everything else.
//!
//! A flow is created only for an opening that proved a key ([`Gate`]): a fresh SYN proof
//! (fake-TCP handshake on) or a fresh msg1 (handshake off). Anything else for an unknown
//! flow is tried as a probe; a valid, fresh probe gets a reset (the only thing this server
//! ever sends without a flow), anything else is dropped and counted. The table is bounded:
//! when it is full, the oldest connection without a confirmed session makes room; when every
//! connection is confirmed, the new flow is refused.
//!
//! Work is proportional to what happens, not to the table's size: each connection's
//! deadline sits in a timer heap, and a connection is visited only when its deadline is
//! due or when something touched it (a frame, or the caller through
//! [`Listener::connection_mut`]); those wait in a ready list until
//! [`Listener::poll_transmit`] serves them. Two thousand idle sessions cost nothing at a
//! wake-up that is not theirs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
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
    /// Visits to a connection: a due deadline, or the work after a frame or a command.
    /// Idle connections add nothing here until their own deadline.
    pub conn_polls: u64,
    /// Timer heap entries skipped because their connection's deadline had moved.
    pub timers_stale: u64,
}

/// One connection of the table and its place in the timer heap and the ready list.
struct Entry {
    conn: Connection,
    created: Instant,
    /// This connection's deadline as last computed: its live entry in the timer heap
    /// (other entries there for it are stale and skipped when they come up).
    scheduled: Option<Instant>,
    /// In the ready list.
    ready: bool,
}

impl Entry {
    /// When this connection needs a visit: its own deadline, or the end of its half-open
    /// lifetime while no session is confirmed.
    fn deadline(&self) -> Option<Instant> {
        let own = self.conn.poll_timeout();
        if self.conn.is_confirmed() {
            return own;
        }
        let expiry = self.created + HALF_OPEN_LIFETIME;
        Some(own.map_or(expiry, |t| t.min(expiry)))
    }
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
    conns: HashMap<SocketAddr, Entry>,
    /// Connection deadlines, earliest first; an entry that no longer matches its
    /// connection's `scheduled` is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    /// Connections that may have something to send, events or a changed deadline.
    ready: Vec<SocketAddr>,
    /// Flows in the order they were created (some since confirmed or gone): where
    /// [`Listener::evict_half_open`] looks for the oldest half-open one.
    opened: VecDeque<(Instant, SocketAddr)>,
    /// The ready connection [`Listener::poll_transmit`] is draining.
    current: Option<SocketAddr>,
    /// The latest time the caller passed in (what "due now" means to `poll_timeout`).
    clock: Instant,
    gate: Gate,
    /// Stateless replies and when they were queued.
    outbox: VecDeque<(Vec<u8>, Instant)>,
    /// Events collected from served and dropped connections, for the caller.
    events: Vec<ListenerEvent>,
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
        let clock = cfg.wall.at;
        Listener {
            cfg,
            local,
            local_mac,
            router_mac,
            max_flows,
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            ready: Vec::new(),
            opened: VecDeque::new(),
            current: None,
            clock,
            gate: Gate::new(identities, gate, shared, rng),
            outbox: VecDeque::new(),
            events: Vec::new(),
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
        self.mark_all();
        for (peer, Entry { conn, .. }) in self.conns.iter_mut() {
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
        self.mark_all();
        for e in self.conns.values_mut() {
            e.conn.close_with_notice(CloseNotice::Shutdown, now);
        }
    }

    pub fn connections(&self) -> impl Iterator<Item = (&SocketAddr, &Connection)> {
        self.conns.iter().map(|(k, e)| (k, &e.conn))
    }

    pub fn connection(&self, peer: &SocketAddr) -> Option<&Connection> {
        self.conns.get(peer).map(|e| &e.conn)
    }

    /// One connection, to act on (a stream write, a credit, a reset): it is served at the
    /// next [`Listener::poll_transmit`].
    pub fn connection_mut(&mut self, peer: &SocketAddr) -> Option<&mut Connection> {
        let e = self.conns.get_mut(peer)?;
        if !e.ready {
            e.ready = true;
            self.ready.push(*peer);
        }
        Some(&mut e.conn)
    }

    /// Every connection, to act on: all of them are served at the next
    /// [`Listener::poll_transmit`] (tests and rare whole-table changes; per-connection work
    /// goes through [`Listener::connection_mut`]).
    pub fn connections_mut(&mut self) -> impl Iterator<Item = (&SocketAddr, &mut Connection)> {
        self.mark_all();
        self.conns.iter_mut().map(|(k, e)| (k, &mut e.conn))
    }

    /// Puts `peer`'s connection, if there is one, on the ready list.
    fn mark(&mut self, peer: SocketAddr) {
        if let Some(e) = self.conns.get_mut(&peer) {
            if !e.ready {
                e.ready = true;
                self.ready.push(peer);
            }
        }
    }

    fn mark_all(&mut self) {
        for (peer, e) in self.conns.iter_mut() {
            if !e.ready {
                e.ready = true;
                self.ready.push(*peer);
            }
        }
    }

    /// Feeds one captured frame. Returns the client address it belonged to, if any.
    pub fn handle_frame(&mut self, frame: &ParsedFrame<'_>, now: Instant) -> Option<SocketAddr> {
        self.clock = self.clock.max(now);
        let owner = self.frame(frame, now);
        // Whatever the frame did to its connection (data, ACKs, a session, a close) is
        // served at the next `poll_transmit`.
        self.mark(frame.repr.src);
        owner
    }

    fn frame(&mut self, frame: &ParsedFrame<'_>, now: Instant) -> Option<SocketAddr> {
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
        if let Some(Entry { conn, .. }) = self.conns.get_mut(&peer) {
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
                if let Some(Entry { conn, .. }) = self.conns.get_mut(&src) {
                    conn.confirm_segment(frame);
                    conn.install_session(o.accepted, o.conv, o.client, o.msg2, now);
                }
            }
            Some(Err(())) => {}
            None => match self.gate.check_probe(src, dst, p, now_ms) {
                Some((_, probe)) => {
                    if self.gate.reset_allowed(probe.client, now) {
                        if let Some(Entry { conn, .. }) = self.conns.get_mut(&src) {
                            conn.answer_probe(now);
                        }
                    }
                }
                None => match self.conns.get_mut(&src) {
                    Some(Entry { conn, .. }) if conn.phase() == super::Phase::Established => {
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
        // Forget the openings that are no longer half-open once they outnumber the table.
        if self.opened.len() > 2 * self.conns.len() + 64 {
            let conns = &self.conns;
            self.opened.retain(|(created, peer)| {
                conns
                    .get(peer)
                    .is_some_and(|e| e.created == *created && !e.conn.is_confirmed())
            });
        }
        self.opened.push_back((now, r.src));
        let e = self.conns.entry(r.src).or_insert(Entry {
            conn,
            created: now,
            scheduled: None,
            ready: false,
        });
        Some(&mut e.conn)
    }

    /// Drops the oldest connection without a confirmed session; false if there is none.
    /// Takes the oldest entries of `opened` until one is still half-open, so its cost does
    /// not grow with the table (a key holder's stream of openings into a full table).
    fn evict_half_open(&mut self) -> bool {
        while let Some((created, peer)) = self.opened.pop_front() {
            let half_open = self
                .conns
                .get(&peer)
                .is_some_and(|e| e.created == created && !e.conn.is_confirmed());
            if half_open {
                self.remove(peer, true);
                return true;
            }
        }
        false
    }

    /// Removes a connection, keeping its counters and (if it had a session) reporting it.
    /// Its entries in the timer heap and the ready list go stale and are skipped.
    fn remove(&mut self, peer: SocketAddr, evicted: bool) {
        let Some(Entry { mut conn, .. }) = self.conns.remove(&peer) else {
            return;
        };
        while let Some(event) = conn.poll_event() {
            self.events.push(ListenerEvent { peer, event });
        }
        if evicted && conn.phase() == super::Phase::Established {
            self.events.push(ListenerEvent {
                peer,
                event: ConnEvent::SessionLost(CloseReason::HandshakeTimeout),
            });
        }
        self.stats.flows_expired += 1;
        self.retired.retire(&conn);
    }

    /// The next frame to send, written into `buf`: stateless replies (resets) first, then
    /// what the ready connections have. A ready connection is served once its frames run
    /// out: its events are collected, it is dropped if closed (or half-open for too long),
    /// and its deadline goes into the timer heap.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<std::ops::Range<usize>> {
        self.clock = self.clock.max(now);
        if let Some((f, _)) = self.outbox.pop_front() {
            buf.get_mut(..f.len())?.copy_from_slice(&f);
            return Some(0..f.len());
        }
        loop {
            let peer = match self.current {
                Some(p) => p,
                None => {
                    let p = self.ready.pop()?;
                    self.current = Some(p);
                    p
                }
            };
            if let Some(e) = self.conns.get_mut(&peer) {
                if let Some(r) = e.conn.poll_transmit(now, buf) {
                    return Some(r);
                }
            }
            self.current = None;
            self.settle(peer, now);
        }
    }

    /// After a ready connection has sent everything: collects its events, drops it if it is
    /// closed or stale, else (re)schedules its deadline.
    fn settle(&mut self, peer: SocketAddr, now: Instant) {
        let Some(e) = self.conns.get_mut(&peer) else {
            return;
        };
        e.ready = false;
        self.stats.conn_polls += 1;
        while let Some(event) = e.conn.poll_event() {
            self.events.push(ListenerEvent { peer, event });
        }
        // Half-open: no confirmed session yet (a replayed handshake stays here).
        let stale = !e.conn.is_confirmed()
            && now.saturating_duration_since(e.created) >= HALF_OPEN_LIFETIME;
        if e.conn.is_closed() || stale {
            let evicted = stale && !e.conn.is_closed();
            self.remove(peer, evicted);
            return;
        }
        // A changed deadline gets a new heap entry; the old one goes stale and is skipped
        // when it comes up (a heap pop, no visit).
        let d = e.deadline();
        if e.scheduled != d {
            e.scheduled = d;
            if let Some(d) = d {
                self.timers.push(Reverse((d, peer)));
            }
        }
        self.compact_timers();
    }

    /// Rebuilds the timer heap from the connections' deadlines once stale entries (left by
    /// deadlines that moved, and by dropped connections) outnumber live ones, so
    /// the heap stays proportional to the table. Reuses the heap's allocation.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.conns.len() + 64 {
            return;
        }
        let mut v = std::mem::take(&mut self.timers).into_vec();
        v.clear();
        v.extend(
            self.conns
                .iter()
                .filter_map(|(p, e)| e.scheduled.map(|t| Reverse((t, *p)))),
        );
        self.timers = BinaryHeap::from(v);
    }

    /// Runs the timers of the connections whose deadline has come; they are then served
    /// (and dropped if closed or stale) at the next [`Listener::poll_transmit`]. Events of
    /// connections dropped since the last call are appended to `events`.
    pub fn handle_timeout(&mut self, now: Instant, events: &mut Vec<ListenerEvent>) {
        self.clock = self.clock.max(now);
        while let Some(&Reverse((t, peer))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.conns.get_mut(&peer) else {
                continue;
            };
            if e.scheduled != Some(t) {
                self.stats.timers_stale += 1;
                continue;
            }
            e.scheduled = None;
            self.stats.conn_polls += 1;
            if e.conn.poll_timeout().is_some_and(|d| d <= now) {
                e.conn.handle_timeout(now);
            }
            if !e.ready {
                e.ready = true;
                self.ready.push(peer);
            }
        }
        events.append(&mut self.events);
    }

    /// The earliest instant something is due: a queued reset, a connection that is ready
    /// to be served (due at once), or the earliest deadline in the timer heap (which may be
    /// a stale entry: waking for it costs one heap pop).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty() || self.current.is_some() {
            return Some(self.clock);
        }
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        match (timer, self.outbox.front()) {
            (Some(a), Some((_, b))) => Some(a.min(*b)),
            (a, b) => a.or(b.map(|(_, t)| *t)),
        }
    }

    /// Collects the events of the connections served or dropped since the last call, and
    /// of the ready ones not yet served.
    pub fn poll_events(&mut self, events: &mut Vec<ListenerEvent>) {
        events.append(&mut self.events);
        for peer in &self.ready {
            if let Some(e) = self.conns.get_mut(peer) {
                while let Some(event) = e.conn.poll_event() {
                    events.push(ListenerEvent { peer: *peer, event });
                }
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
        self.retired.total(self.conns.values().map(|e| &e.conn))
    }
}
