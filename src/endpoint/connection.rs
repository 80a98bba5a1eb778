//! One peer flow: fake TCP + handshake + AEAD + KCP + mux, driven sans-IO. The parts that
//! differ by role live in [`super::client`] (opening, msg2, liveness probes, resets) and
//! [`super::server`] (sessions installed by the listener's gate, msg2 resends, a newer
//! session from a restarted client, close notices); this file holds what both share: the
//! session data path, streams, datagrams, timers and transmission.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;

use super::client::ClientSide;
use super::server::ServerSide;
use super::session::{CloseNotice, Session, KIND_ALIVE, KIND_CLOSE, KIND_DATAGRAM, KIND_KCP};
use super::ConnStats;
use crate::crypto::{self, Cipher, ClientId, PublicKey};
use crate::faketcp::{Flow, FlowAddrs, FlowConfig, Inbound};
use crate::kcp::KcpConfig;
use crate::mux::{Arena, Mux, MuxConfig, MuxEvent, StreamId};
use crate::wire::ParsedFrame;

/// Largest frame a connection builds; callers size their transmit buffers with it.
pub const MAX_FRAME: usize = 2048;

/// Datagrams queued for sending at most; more are dropped (counted). They leave ahead of
/// KCP packets at the next `poll_transmit`, so the queue only fills when the worker is
/// behind.
const DATAGRAM_QUEUE: usize = 512;
/// Emptied datagram buffers kept for the next ones.
const DATAGRAM_POOL: usize = 16;
/// Copies of a close notice sent (it is not retransmitted otherwise).
const NOTICE_COPIES: u8 = 2;

/// Maps the monotonic clock the endpoint runs on to Unix time, which opening proofs carry.
/// The daemon refreshes it; simulations fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub at: Instant,
    pub unix_ms: u64,
}

impl WallClock {
    /// Unix milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        if now >= self.at {
            self.unix_ms + now.duration_since(self.at).as_millis() as u64
        } else {
            self.unix_ms
                .saturating_sub(self.at.duration_since(now).as_millis() as u64)
        }
    }
}

/// Everything a connection needs, shared by all connections of a daemon.
#[derive(Clone)]
pub struct ConnConfig {
    pub flow: FlowConfig,
    pub cipher: Cipher,
    pub kcp: KcpConfig,
    pub mux: MuxConfig,
    /// A client gives up a handshake (and the daemon reconnects) after this long.
    pub handshake_timeout: Duration,
    /// Packets per key phase in each direction (see [`crate::crypto::packet`]); both ends
    /// must agree.
    pub rekey_packets: u64,
    /// Client: bind opening proofs to our source address and port (off behind NAT, where
    /// the server sees another address).
    pub bind_source: bool,
    /// Unix time for opening proofs and probes.
    pub wall: WallClock,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Fake-TCP handshake in progress (or, server side, waiting for the Noise message).
    Opening,
    /// Noise handshake in progress.
    Handshaking,
    /// Session keys agreed; streams flow.
    Established,
    /// The session ended; the connection will do nothing more.
    Closed,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    HandshakeTimeout,
    IdleTimeout,
    /// The peer restarted: the server answered a probe with a reset (client), or a newer
    /// handshake of the client replaced the session (server).
    PeerRestarted,
    /// The peer ended the session and said so.
    PeerClosed(CloseNotice),
    /// We ended it (server: the client's key was removed, or shutdown).
    Local(CloseNotice),
    /// The peer broke the mux or KCP protocol after authenticating.
    Protocol,
    /// The packet counter or the forgery limit is exhausted; a new session is needed.
    KeysExhausted,
    /// Closed by the daemon's policy (a per-client limit such as sessions per address).
    Limit,
}

/// What a connection reports to its driver.
#[derive(Debug)]
pub enum ConnEvent {
    /// The handshake finished; streams can be opened.
    Established,
    /// A stream event from the multiplexer.
    Stream(MuxEvent),
    /// The session is gone: every stream of it is gone too.
    SessionLost(CloseReason),
    /// A datagram arrived (its body: the [`crate::tunnel`] datagram header and payload), a
    /// piece of the connection's receive arena: drop it once copied or sent on.
    Datagram(Bytes),
}

/// Why [`Connection::send_datagram`] did not queue a datagram (each one is counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("datagram queue full")]
    QueueFull,
    #[error("no established session")]
    NoSession,
}

/// A server session's client, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: Arc<str>,
    pub id: ClientId,
    /// The server key it authenticated against.
    pub server: PublicKey,
}

/// What a connection made of a payload.
pub(super) enum Payload {
    /// It authenticated (the flow takes its sequence number and timestamp).
    Authentic,
    /// Handled or dropped here (a duplicate, a forgery).
    Dropped,
    /// Not for this connection's session: the listener may try it as a handshake.
    Unclaimed,
}

pub(super) enum Role {
    Client(Box<ClientSide>),
    Server(Box<ServerSide>),
}

/// One peer flow and its session. See the module docs of [`crate::endpoint`] for the order
/// of calls.
pub struct Connection {
    pub(super) cfg: ConnConfig,
    pub(super) flow: Flow,
    pub(super) role: Role,
    pub(super) session: Option<Box<Session>>,
    closed: bool,
    /// A close notice to send, how many copies are left and since when it is due; then
    /// the session ends.
    notice: Option<(CloseNotice, u8, Instant)>,
    /// Server: an "alive" answering a probe, due since then.
    alive: Option<Instant>,
    pub(super) events: VecDeque<ConnEvent>,
    pub(super) stats: ConnStats,
    /// Scratch for opening packets in place.
    pub(super) rx_scratch: Vec<u8>,
    /// Mux frames on their way into KCP's send queue.
    mux_scratch: Vec<u8>,
    /// Datagrams waiting for `poll_transmit`, sent ahead of KCP packets.
    datagrams: VecDeque<Vec<u8>>,
    /// Buffers of datagrams sent, for the next ones.
    datagram_pool: Vec<Vec<u8>>,
    /// Where received datagrams are copied to be handed out.
    datagram_arena: Arena,
    pub(super) rng: rand::rngs::StdRng,
}

pub(super) fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Connection {
    pub(super) fn new(
        cfg: ConnConfig,
        flow: Flow,
        role: Role,
        rng: rand::rngs::StdRng,
    ) -> Connection {
        Connection {
            cfg,
            flow,
            role,
            session: None,
            closed: false,
            notice: None,
            alive: None,
            events: VecDeque::new(),
            stats: ConnStats::default(),
            rx_scratch: vec![0; MAX_FRAME],
            mux_scratch: Vec::new(),
            datagrams: VecDeque::new(),
            datagram_pool: Vec::new(),
            datagram_arena: Arena::default(),
            rng,
        }
    }

    /// A server connection for a flow whose opening (SYN or msg1) proved a key. Pass the
    /// frame that created it to [`Connection::handle_frame`] next.
    pub fn server(cfg: ConnConfig, addrs: FlowAddrs, seed: [u8; 32], now: Instant) -> Connection {
        let mut rng = rand::rngs::StdRng::from_seed(seed);
        use rand::RngCore;
        let (isn, ts, ip_id) = (rng.next_u32(), rng.next_u32(), rng.next_u32() as u16);
        let flow = Flow::server(cfg.flow.clone(), addrs, isn, ts, ip_id, now);
        Connection::new(cfg, flow, Role::Server(Box::default()), rng)
    }

    pub fn phase(&self) -> Phase {
        if self.closed {
            Phase::Closed
        } else if self.session.is_some() {
            Phase::Established
        } else if !self.flow.is_established() {
            Phase::Opening
        } else {
            Phase::Handshaking
        }
    }

    pub fn addrs(&self) -> &FlowAddrs {
        self.flow.addrs()
    }

    /// The flow's fake-TCP state (for the listener).
    pub(super) fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The connection's counters: its own, those of its session, and those of sessions it
    /// replaced (a server switching to a client's newer handshake). None of them goes down.
    pub fn stats(&self) -> ConnStats {
        let mut s = self.stats;
        s.rst_ignored += self.flow.stats().rst_ignored;
        if let Some(session) = &self.session {
            s += session.stats();
        }
        s
    }

    /// KCP smoothed RTT in milliseconds, once established.
    pub fn rtt_ms(&self) -> Option<u32> {
        self.session.as_ref().map(|s| s.kcp.stats().srtt_ms)
    }

    /// KCP counters of the session, once established.
    pub fn kcp_stats(&self) -> Option<crate::kcp::KcpStats> {
        self.session.as_ref().map(|s| s.kcp.stats())
    }

    /// Server: the client this session belongs to.
    pub fn client_info(&self) -> Option<&ClientInfo> {
        match &self.role {
            Role::Server(s) => s.client.as_ref(),
            Role::Client(_) => None,
        }
    }

    /// Sends a mux PING now; its PONG arrives as `ConnEvent::Stream(MuxEvent::Pong)`.
    /// False if there is no session yet.
    pub fn ping(&mut self, now: Instant) -> bool {
        match self.mux_mut() {
            Some(m) => {
                m.ping(now);
                true
            }
            None => false,
        }
    }

    /// Number of live streams.
    pub fn stream_count(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.mux.stream_count())
    }

    fn mux_mut(&mut self) -> Option<&mut Mux> {
        match (&mut self.session, self.closed) {
            (Some(s), false) => Some(&mut s.mux),
            _ => None,
        }
    }

    /// Opens a stream whose OPEN frame carries `payload` (the tunnel open header).
    pub fn open_stream(&mut self, payload: &[u8]) -> Option<StreamId> {
        self.mux_mut()?.open_stream(payload).ok()
    }

    /// Queues bytes on a stream. Returns false if the stream or session is gone.
    pub fn stream_write(&mut self, id: StreamId, data: &[u8]) -> bool {
        match self.mux_mut() {
            Some(m) => m.write(id, data).is_ok(),
            None => false,
        }
    }

    pub fn stream_finish(&mut self, id: StreamId) {
        if let Some(m) = self.mux_mut() {
            m.finish(id);
        }
    }

    pub fn stream_reset(&mut self, id: StreamId) {
        if let Some(m) = self.mux_mut() {
            m.reset(id);
        }
    }

    /// The application has written `bytes` of this stream's data out: grant the peer credit.
    pub fn stream_consumed(&mut self, id: StreamId, bytes: usize) {
        if let Some(m) = self.mux_mut() {
            m.consumed(id, bytes);
        }
    }

    /// Largest datagram body ([`crate::tunnel`] datagram header + payload) one packet
    /// carries: `transport.kcp.mtu`, the size of the largest KCP packet, so a datagram
    /// packet is never larger on the wire than a full KCP packet.
    pub fn max_datagram(&self) -> usize {
        usize::from(self.cfg.kcp.mtu)
    }

    /// Queues one datagram body to go out, unreliably, ahead of KCP packets at the next
    /// [`Connection::poll_transmit`]. Refused (and counted) when larger than
    /// [`Connection::max_datagram`], when the queue is full, or before the session is up.
    /// The body is copied (into a buffer reused from earlier datagrams).
    pub fn send_datagram(&mut self, body: &[u8]) -> Result<(), DatagramError> {
        let max = self.max_datagram();
        let err = if self.session.is_none() || self.closed {
            Some(DatagramError::NoSession)
        } else if body.len() > max {
            Some(DatagramError::TooLarge {
                len: body.len(),
                max,
            })
        } else if self.datagrams.len() >= DATAGRAM_QUEUE {
            Some(DatagramError::QueueFull)
        } else {
            None
        };
        if let Some(e) = err {
            self.stats.datagrams_dropped += 1;
            return Err(e);
        }
        let mut buf = self.datagram_pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(body);
        self.datagrams.push_back(buf);
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// Ends the session because a per-client limit refuses it (reported as
    /// `SessionLost(CloseReason::Limit)`).
    pub fn close_by_limit(&mut self) {
        self.close(CloseReason::Limit);
    }

    pub(super) fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            tracing::info!(peer = %self.flow.addrs().remote, ?reason, "session closed");
            self.closed = true;
            self.notice = None;
            self.stats.datagrams_dropped += self.datagrams.len() as u64;
            self.datagrams.clear();
            self.events.push_back(ConnEvent::SessionLost(reason));
        }
    }

    /// Ends the session, telling the peer why (two sealed copies, at the next
    /// [`Connection::poll_transmit`]); without a session it just ends.
    pub fn close_with_notice(&mut self, notice: CloseNotice, now: Instant) {
        if self.closed || self.notice.is_some() {
            return;
        }
        if self.session.is_some() && self.flow.is_established() {
            self.notice = Some((notice, NOTICE_COPIES, now));
        } else {
            self.close(CloseReason::Local(notice));
        }
    }

    /// Feeds one captured frame that belongs to this flow. Returns the payload when nothing
    /// on this connection could use it: a server's listener then tries it as a handshake
    /// or probe (and counts it if it is neither, with [`Connection::count_unclaimed`]).
    pub fn handle_frame<'a>(&mut self, frame: &ParsedFrame<'a>, now: Instant) -> Option<&'a [u8]> {
        match self.flow.handle_segment(frame, now) {
            Inbound::Payload(p) => {
                let n = p.len();
                if n == 0 || n > self.rx_scratch.len() || self.closed {
                    return None;
                }
                self.stats.packets_in += 1;
                self.stats.bytes_in += n as u64;
                self.rx_scratch[..n].copy_from_slice(p);
                let verdict = match &self.role {
                    Role::Client(_) => self.client_payload(n, now),
                    Role::Server(_) => self.server_payload(n, now),
                };
                match verdict {
                    Payload::Authentic => {
                        self.flow.confirm(frame);
                        None
                    }
                    Payload::Dropped => None,
                    Payload::Unclaimed => Some(p),
                }
            }
            // A new SYN on a live flow is answered at the fake-TCP level only (the listener
            // let it through only if its proof is fresh). The session stays: a client that
            // really restarted follows with a msg1 that authenticates.
            Inbound::Restarted => None,
            Inbound::Control | Inbound::IgnoredRst | Inbound::Ignored => None,
        }
    }

    /// Server: a valid probe arrived on this live session; answer it with a sealed "alive"
    /// so the client stops probing.
    pub fn answer_probe(&mut self, now: Instant) {
        if self.session.is_some() && !self.closed {
            self.alive.get_or_insert(now);
        }
    }

    /// The listener accepted `frame`'s payload as a handshake: the flow takes its sequence
    /// number and timestamp.
    pub(crate) fn confirm_segment(&mut self, frame: &ParsedFrame<'_>) {
        self.flow.confirm(frame);
    }

    /// The listener found no use for a payload this connection returned.
    pub fn count_unclaimed(&mut self) {
        self.stats.auth_failures += 1;
    }

    /// Opens the packet in `rx_scratch[..n]` with the current session. `Ok(true)`: it
    /// opened and was handled.
    pub(super) fn open_current(&mut self, n: usize, now: Instant) -> Result<(), crypto::OpenError> {
        let Some(session) = self.session.as_mut() else {
            return Err(crypto::OpenError::Auth);
        };
        let opened = session.opener.open(&mut self.rx_scratch[..n]);
        match opened {
            Ok(pt) => {
                let len = pt.len();
                let off = pt.as_ptr() as usize - self.rx_scratch.as_ptr() as usize;
                self.handle_plaintext(off..off + len, now);
                Ok(())
            }
            Err(e) => {
                if session.opener.forgery_limit_reached() {
                    self.close(CloseReason::KeysExhausted);
                }
                Err(e)
            }
        }
    }

    /// Acts on an opened packet's plaintext at `rx_scratch[range]`.
    pub(super) fn handle_plaintext(&mut self, range: Range<usize>, now: Instant) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let pt = &self.rx_scratch[range];
        match pt.split_first() {
            Some((&KIND_KCP, body)) => {
                if let Err(e) = session.kcp.handle_input(body, now) {
                    tracing::debug!(error = %e, "bad KCP packet after auth");
                }
                if self.cfg.kcp.acknodelay {
                    session.kcp.flush(now);
                }
            }
            Some((&KIND_DATAGRAM, body)) => {
                self.stats.datagrams_in += 1;
                let body = self.datagram_arena.copy(body);
                self.events.push_back(ConnEvent::Datagram(body));
            }
            Some((&KIND_CLOSE, body)) => {
                let notice = body
                    .first()
                    .and_then(|&b| CloseNotice::from_byte(b))
                    .unwrap_or(CloseNotice::Shutdown);
                tracing::info!(peer = %self.flow.addrs().remote, ?notice, "peer ended the session");
                self.close(CloseReason::PeerClosed(notice));
                return;
            }
            _ => {}
        }
        self.drain_kcp(now);
    }

    pub(super) fn drain_kcp(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // The mux reads KCP's receive buffers in place.
        let Session { kcp, mux, .. } = &mut **session;
        let read = kcp.recv_with(|chunk| mux.handle_bytes(chunk, now));
        let failed = read.is_err();
        if let Err(e) = read {
            tracing::warn!(peer = %self.flow.addrs().remote, error = %e, "mux protocol error");
        }
        while let Some(ev) = session.mux.poll_event() {
            self.events.push_back(ConnEvent::Stream(ev));
        }
        if failed {
            self.close(CloseReason::Protocol);
        }
    }

    /// Writes the next frame to send into `buf` (at least [`MAX_FRAME`] bytes) and returns
    /// its range, or `None` when nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Range<usize>> {
        if let Some(r) = self.flow.poll_control(now, buf) {
            self.count_out(r.len());
            return Some(r);
        }
        if !self.flow.is_established() || self.closed {
            return None;
        }
        let at = self.flow.headroom();
        // Handshake messages and probes, which are not sealed with the session keys.
        let unsealed = match &self.role {
            Role::Client(_) => self.client_unsealed(now, buf, at),
            Role::Server(_) => self.server_unsealed(buf, at),
        };
        if let Some(len) = unsealed {
            return self.send_payload(now, buf, at, len);
        }
        if let Some((notice, left, due)) = self.notice {
            let session = self.session.as_mut()?;
            let sealed = session.seal(buf, at, KIND_CLOSE, &[notice as u8])?.ok()?;
            self.notice = Some((notice, left - 1, due));
            if left <= 1 {
                self.close(CloseReason::Local(notice));
            }
            return self.send_payload(now, buf, at, sealed);
        }
        let session = self.session.as_mut()?;
        if self.alive.take().is_some() {
            if let Some(Ok(sealed)) = session.seal(buf, at, KIND_ALIVE, &[]) {
                return self.send_payload(now, buf, at, sealed);
            }
        }
        // Datagrams first: they must not wait behind stream bytes.
        let sealed = if let Some(d) = self.datagrams.pop_front() {
            self.stats.datagrams_out += 1;
            let sealed = session.seal(buf, at, KIND_DATAGRAM, &d);
            if self.datagram_pool.len() < DATAGRAM_POOL {
                self.datagram_pool.push(d);
            }
            sealed?
        } else {
            feed_kcp(
                session,
                &mut self.mux_scratch,
                &self.cfg,
                &mut self.events,
                now,
            );
            // KCP writes its packet straight into the frame, where it is sealed in place.
            let room = session.body_room(buf, at)?;
            let len = session.kcp.poll_transmit(room)?;
            session.seal_body(buf, at, KIND_KCP, len)?
        };
        let Ok(sealed) = sealed else {
            self.close(CloseReason::KeysExhausted);
            return None;
        };
        self.sent_sealed(now);
        self.send_payload(now, buf, at, sealed)
    }

    fn send_payload(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        at: usize,
        len: usize,
    ) -> Option<Range<usize>> {
        let r = self.flow.encapsulate(now, buf, at, len).ok()?;
        self.count_out(r.len());
        Some(r)
    }

    fn count_out(&mut self, n: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
    }

    /// Runs timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Role::Client(c) = &self.role {
            if c.handshake_expired(now) {
                self.close(CloseReason::HandshakeTimeout);
                return;
            }
        }
        if let Some(session) = self.session.as_mut() {
            session.kcp.handle_timeout(now);
            session.mux.handle_timeout(now);
            if session.mux.is_dead(now) {
                self.close(CloseReason::IdleTimeout);
                return;
            }
            self.drain_kcp(now);
        }
    }

    /// The next instant [`Connection::handle_timeout`] or [`Connection::poll_transmit`]
    /// has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t = self.flow.poll_timeout();
        let mut at = |d: Option<Instant>| {
            t = match (t, d) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        };
        if let Some((_, _, due)) = self.notice {
            at(Some(due));
        }
        at(self.alive);
        if let Some(s) = &self.session {
            at(s.kcp.poll_timeout());
            at(Some(s.mux.poll_timeout()));
        }
        match &self.role {
            Role::Client(c) => at(c.poll_timeout(self.flow.is_established(), self.rto())),
            Role::Server(s) => at(s.poll_timeout()),
        }
        t
    }

    /// KCP's retransmission timeout (for probe pacing).
    pub(super) fn rto(&self) -> Duration {
        self.session.as_ref().map_or(Duration::from_secs(1), |s| {
            Duration::from_millis(u64::from(s.kcp.stats().rto_ms))
        })
    }

    /// True once a data packet has opened with the current session: the peer holds its
    /// keys (a replayed handshake never gets here). Clients are confirmed by msg2.
    pub fn is_confirmed(&self) -> bool {
        match &self.role {
            Role::Client(_) => self.session.is_some(),
            Role::Server(s) => s.confirmed,
        }
    }

    /// True once the session has ended for good.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Moves mux frames into KCP as far as KCP's send queue allows, then flushes KCP
/// (unless `wdelay`).
fn feed_kcp(
    session: &mut Session,
    scratch: &mut Vec<u8>,
    cfg: &ConnConfig,
    events: &mut VecDeque<ConnEvent>,
    now: Instant,
) {
    let mut fed = false;
    while session.mux.has_output() {
        let cap = session.kcp.send_capacity().min(64 * 1024);
        if cap == 0 {
            break;
        }
        scratch.clear();
        if session.mux.poll_output(scratch, cap, now) == 0 {
            break;
        }
        if session.kcp.send(scratch).is_err() {
            break;
        }
        fed = true;
    }
    if fed {
        while let Some(ev) = session.mux.poll_event() {
            events.push_back(ConnEvent::Stream(ev));
        }
        if !cfg.kcp.wdelay {
            session.kcp.flush(now);
        }
    }
}

/// Defaults for tests and simulations: a KCP/mux setup like the daemon's.
pub fn test_config(wall: WallClock) -> ConnConfig {
    ConnConfig {
        flow: FlowConfig::default(),
        cipher: Cipher::Aes256Gcm,
        kcp: KcpConfig {
            nodelay: true,
            interval_ms: 10,
            resend: 2,
            nocongestion: true,
            mtu: 1350,
            sndwnd: 4096,
            rcvwnd: 4096,
            wdelay: false,
            acknodelay: true,
            rate_cap: true,
        },
        mux: MuxConfig {
            stream_window: 8 << 20,
            session_window: 8 << 20,
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..MuxConfig::default()
        },
        handshake_timeout: Duration::from_secs(30),
        rekey_packets: crypto::DEFAULT_PHASE_LEN,
        bind_source: true,
        wall,
    }
}
