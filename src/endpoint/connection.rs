//! One peer flow: fake TCP + Noise handshake + AEAD + KCP + mux, driven sans-IO.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::reset::{self, RESET_PREFIX};
use crate::crypto::{self, Cipher, HandshakeError, Initiator, Opener, Psk, Sealer};
use crate::faketcp::{Flow, FlowAddrs, FlowConfig, Inbound};
use crate::kcp::{KcpConfig, KcpSession};
use crate::mux::{Mux, MuxConfig, MuxEvent, StreamId};
use crate::wire::ParsedFrame;

/// Largest frame a connection builds; callers size their transmit buffers with it.
pub const MAX_FRAME: usize = 2048;

/// Plaintext kind byte: the body is one KCP packet.
const KIND_KCP: u8 = 0x01;
/// Plaintext kind byte: the body is one datagram (never retransmitted).
const KIND_DATAGRAM: u8 = 0x02;
/// Datagrams queued for sending at most; more are dropped (counted). They leave ahead of
/// KCP packets at the next `poll_transmit`, so the queue only fills when the worker is
/// behind.
const DATAGRAM_QUEUE: usize = 512;
/// Version byte at the start of both handshake payloads.
const HANDSHAKE_VERSION: u8 = 1;
/// First handshake retransmission interval; doubles up to [`HANDSHAKE_RETRY_MAX`].
const HANDSHAKE_RETRY: Duration = Duration::from_millis(1000);
const HANDSHAKE_RETRY_MAX: Duration = Duration::from_secs(4);
/// How often a server answers undecryptable packets on a live flow by trying them as a new
/// handshake (a client that restarted on the same port) — a DH per attempt, so rate-limited.
const REHANDSHAKE_INTERVAL: Duration = Duration::from_millis(200);
/// A server answers undecryptable packets on a flow it has no session for with a stateless
/// reset at most this often.
const RESET_INTERVAL: Duration = Duration::from_millis(100);
/// How many recently sent packet prefixes a client remembers to recognise a reset.
const SENT_PREFIXES: usize = 128;

/// Everything a connection needs, shared by all connections of a daemon.
#[derive(Clone)]
pub struct ConnConfig {
    pub flow: FlowConfig,
    pub cipher: Cipher,
    pub psk: Arc<Psk>,
    pub kcp: KcpConfig,
    pub mux: MuxConfig,
    /// A client gives up a handshake (and the daemon reconnects) after this long.
    pub handshake_timeout: Duration,
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
    /// The peer restarted (new SYN or new handshake on the same flow).
    PeerRestarted,
    /// The peer broke the mux or KCP protocol after authenticating.
    Protocol,
    /// The packet counter is exhausted (2^62 packets); a new session is needed.
    CounterExhausted,
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
    /// A datagram arrived (its body: the [`crate::tunnel`] datagram header and payload).
    Datagram(Vec<u8>),
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

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnStats {
    pub handshakes_ok: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rst_ignored: u64,
    /// Datagrams sealed and sent.
    pub datagrams_out: u64,
    /// Datagrams received (authenticated).
    pub datagrams_in: u64,
    /// Datagrams refused by [`Connection::send_datagram`] (too large, queue full, no session).
    pub datagrams_dropped: u64,
}

struct Session {
    sealer: Sealer,
    opener: Opener,
    kcp: KcpSession,
    mux: Mux,
}

enum State {
    /// Client: waiting for the fake-TCP handshake, then sends msg1.
    ClientHello {
        initiator: Option<Initiator>,
        msg1: Vec<u8>,
        next_send: Instant,
        retry: Duration,
        deadline: Instant,
        conv: u32,
    },
    /// Server: waiting for msg1.
    ServerWait,
    Established {
        session: Box<Session>,
        /// Server: digest of the msg1 this session came from, and msg2 to resend when the
        /// same msg1 arrives again (its msg2 was lost).
        replay_msg: Option<(u64, Vec<u8>)>,
        /// Server: msg2 must be (re)sent.
        send_msg2: bool,
        /// Client: digest of the accepted msg2, so a retransmitted copy is dropped quietly.
        accepted_msg2: Option<u64>,
        last_rehandshake: Option<Instant>,
        /// Server: a session from a newer msg1 on this flow. It replaces `session` only once
        /// a data packet opens with it, so a replayed msg1 (which nobody can follow with
        /// data) never displaces a live session.
        pending: Option<Box<Session>>,
        /// A data packet has opened with `session` (the peer holds its keys).
        confirmed: bool,
    },
    Closed,
}

/// One peer flow and its session. See the module docs of [`crate::endpoint`] for the order
/// of calls.
pub struct Connection {
    cfg: ConnConfig,
    flow: Flow,
    state: State,
    events: VecDeque<ConnEvent>,
    stats: ConnStats,
    /// Scratch for opening packets in place and draining KCP into the mux.
    rx_scratch: Vec<u8>,
    mux_scratch: Vec<u8>,
    is_client: bool,
    /// Client: the first bytes of recently sealed packets (ring), to check resets against.
    sent_prefixes: Vec<[u8; RESET_PREFIX]>,
    sent_pos: usize,
    /// Server: a reset to send for this packet prefix.
    pending_reset: Option<[u8; RESET_PREFIX]>,
    last_reset: Option<Instant>,
    /// Datagrams waiting for `poll_transmit`, sent ahead of KCP packets.
    datagrams: VecDeque<Vec<u8>>,
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Connection {
    /// A client connection: starts the fake-TCP handshake (if configured), then the Noise
    /// handshake. `conv` is the KCP conversation id; `isn`, `ts_offset`, `ip_id` are random.
    #[allow(clippy::too_many_arguments)]
    pub fn client(
        cfg: ConnConfig,
        addrs: FlowAddrs,
        isn: u32,
        ts_offset: u32,
        ip_id: u16,
        conv: u32,
        now: Instant,
    ) -> Result<Connection, HandshakeError> {
        let flow = Flow::client(cfg.flow.clone(), addrs, isn, ts_offset, ip_id, now);
        let mut payload = vec![HANDSHAKE_VERSION];
        payload.extend_from_slice(&conv.to_be_bytes());
        let mut msg1 = Vec::new();
        let initiator = Initiator::start(&cfg.psk, cfg.cipher, &payload, &mut msg1)?;
        let deadline = now + cfg.handshake_timeout;
        Ok(Connection {
            state: State::ClientHello {
                initiator: Some(initiator),
                msg1,
                next_send: now,
                retry: HANDSHAKE_RETRY,
                deadline,
                conv,
            },
            flow,
            cfg,
            events: VecDeque::new(),
            stats: ConnStats::default(),
            rx_scratch: vec![0; MAX_FRAME],
            mux_scratch: Vec::new(),
            is_client: true,
            sent_prefixes: Vec::with_capacity(SENT_PREFIXES),
            sent_pos: 0,
            pending_reset: None,
            last_reset: None,
            datagrams: VecDeque::new(),
        })
    }

    /// A server connection for a flow a client just opened. Pass the frame that created it to
    /// [`Connection::handle_frame`] next.
    pub fn server(
        cfg: ConnConfig,
        addrs: FlowAddrs,
        isn: u32,
        ts_offset: u32,
        ip_id: u16,
        now: Instant,
    ) -> Connection {
        let flow = Flow::server(cfg.flow.clone(), addrs, isn, ts_offset, ip_id, now);
        Connection {
            state: State::ServerWait,
            flow,
            cfg,
            events: VecDeque::new(),
            stats: ConnStats::default(),
            rx_scratch: vec![0; MAX_FRAME],
            mux_scratch: Vec::new(),
            is_client: false,
            sent_prefixes: Vec::new(),
            sent_pos: 0,
            pending_reset: None,
            last_reset: None,
            datagrams: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Closed => Phase::Closed,
            State::Established { .. } => Phase::Established,
            _ if !self.flow.is_established() => Phase::Opening,
            _ => Phase::Handshaking,
        }
    }

    pub fn addrs(&self) -> &FlowAddrs {
        self.flow.addrs()
    }

    pub fn stats(&self) -> ConnStats {
        let mut s = self.stats;
        s.rst_ignored = self.flow.stats().rst_ignored;
        if let State::Established { session, .. } = &self.state {
            let o = session.opener.stats();
            s.replays += o.replays;
        }
        s
    }

    /// KCP smoothed RTT in milliseconds, once established.
    pub fn rtt_ms(&self) -> Option<u32> {
        match &self.state {
            State::Established { session, .. } => Some(session.kcp.stats().srtt_ms),
            _ => None,
        }
    }

    /// KCP counters of the session, once established.
    pub fn kcp_stats(&self) -> Option<crate::kcp::KcpStats> {
        match &self.state {
            State::Established { session, .. } => Some(session.kcp.stats()),
            _ => None,
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
        match &self.state {
            State::Established { session, .. } => session.mux.stream_count(),
            _ => 0,
        }
    }

    fn mux_mut(&mut self) -> Option<&mut Mux> {
        match &mut self.state {
            State::Established { session, .. } => Some(&mut session.mux),
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
    pub fn send_datagram(&mut self, body: Vec<u8>) -> Result<(), DatagramError> {
        let max = self.max_datagram();
        let err = if !matches!(self.state, State::Established { .. }) {
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
        self.datagrams.push_back(body);
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

    fn close(&mut self, reason: CloseReason) {
        if !matches!(self.state, State::Closed) {
            tracing::info!(peer = %self.flow.addrs().remote, ?reason, "session closed");
            self.state = State::Closed;
            self.stats.datagrams_dropped += self.datagrams.len() as u64;
            self.datagrams.clear();
            self.events.push_back(ConnEvent::SessionLost(reason));
        }
    }

    /// Feeds one captured frame that belongs to this flow.
    pub fn handle_frame(&mut self, frame: &ParsedFrame<'_>, now: Instant) {
        match self.flow.handle_segment(frame, now) {
            Inbound::Payload(p) => {
                let n = p.len();
                if n == 0 || n > self.rx_scratch.len() {
                    return;
                }
                self.stats.packets_in += 1;
                self.stats.bytes_in += n as u64;
                self.rx_scratch[..n].copy_from_slice(p);
                self.handle_payload(n, now);
            }
            // A new SYN on a live flow is answered at the fake-TCP level only. The session
            // stays: a SYN proves nothing (anyone can forge one), and a client that really
            // restarted follows with a msg1 that authenticates (see `pending`).
            Inbound::Restarted => {}
            Inbound::Control | Inbound::IgnoredRst | Inbound::Ignored => {}
        }
    }

    /// The payload sits in `rx_scratch[..n]`.
    fn handle_payload(&mut self, n: usize, now: Instant) {
        let psk = self.cfg.psk.clone();
        let cipher = self.cfg.cipher;
        match &mut self.state {
            State::Closed => {}
            State::ClientHello {
                initiator, conv, ..
            } => {
                let conv = *conv;
                let Some(init) = initiator.take() else { return };
                let msg2 = &self.rx_scratch[..n];
                let d = digest(msg2);
                match init.finish(msg2) {
                    Ok((keys, payload)) => {
                        if payload.first() != Some(&HANDSHAKE_VERSION) {
                            tracing::warn!("server handshake has unknown version");
                        }
                        self.stats.handshakes_ok += 1;
                        let session = Box::new(Session {
                            sealer: keys.sealer,
                            opener: keys.opener,
                            kcp: KcpSession::new(conv, &self.cfg.kcp, now),
                            mux: Mux::new(self.cfg.mux.clone(), true, now),
                        });
                        tracing::info!(peer = %self.flow.addrs().remote, "session established");
                        let mut session = session;
                        // First data at once: confirms the session to the server and
                        // measures the RTT.
                        session.mux.ping(now);
                        self.state = State::Established {
                            session,
                            replay_msg: None,
                            send_msg2: false,
                            accepted_msg2: Some(d),
                            last_rehandshake: None,
                            pending: None,
                            confirmed: true,
                        };
                        self.events.push_back(ConnEvent::Established);
                    }
                    Err(e) => {
                        // Initiator is consumed by a failed finish: start over with a fresh
                        // ephemeral key on the next retransmission.
                        self.stats.auth_failures += 1;
                        tracing::debug!(error = %e, "handshake response rejected");
                        let mut payload = vec![HANDSHAKE_VERSION];
                        payload.extend_from_slice(&conv.to_be_bytes());
                        if let State::ClientHello {
                            initiator, msg1, ..
                        } = &mut self.state
                        {
                            match Initiator::start(&psk, cipher, &payload, msg1) {
                                Ok(i) => *initiator = Some(i),
                                Err(e) => tracing::warn!(error = %e, "handshake restart failed"),
                            }
                        }
                    }
                }
            }
            State::ServerWait => self.server_handshake(n, now),
            State::Established {
                session,
                replay_msg,
                send_msg2,
                accepted_msg2,
                last_rehandshake,
                pending,
                confirmed,
            } => {
                // A pending newer session gets a look at packets the current one rejects.
                let spare = pending.as_ref().map(|_| self.rx_scratch[..n].to_vec());
                // Opening works in place and scrambles the bytes when it fails; keep a copy of
                // packets short enough to be a stateless reset.
                let mut short = [0u8; reset::RESET_MAX];
                let maybe_reset =
                    self.is_client && (reset::RESET_MIN..=reset::RESET_MAX).contains(&n);
                if maybe_reset {
                    short[..n].copy_from_slice(&self.rx_scratch[..n]);
                }
                let mut opened = session.opener.open(&mut self.rx_scratch[..n]);
                let mut promoted = false;
                if let (Err(_), Some(mut copy), Some(newer)) = (&opened, spare, pending.as_mut()) {
                    if let Ok(pt) = newer.opener.open(&mut copy) {
                        // The peer holds the newer keys: it restarted. Switch sessions.
                        let len = pt.len();
                        let off = pt.as_ptr() as usize - copy.as_ptr() as usize;
                        self.rx_scratch[..len].copy_from_slice(&copy[off..off + len]);
                        if let Some(newer) = pending.take() {
                            *session = newer;
                        }
                        promoted = true;
                        opened = Ok(&self.rx_scratch[..len]);
                    }
                }
                if promoted {
                    tracing::info!(peer = %self.flow.addrs().remote, "peer restarted: switched to its new session");
                    self.events
                        .push_back(ConnEvent::SessionLost(CloseReason::PeerRestarted));
                    self.events.push_back(ConnEvent::Established);
                }
                match opened {
                    Ok(pt) => {
                        *confirmed = true;
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
                                self.events.push_back(ConnEvent::Datagram(body.to_vec()));
                            }
                            _ => {}
                        }
                        self.drain_kcp(now);
                    }
                    Err(e) => {
                        // Checked whatever the error: a reset's first bytes may also decode
                        // as an old (replayed) counter.
                        if maybe_reset {
                            if let Some(p) = reset::check_reset(&psk, &short[..n]) {
                                if self.sent_prefixes.contains(&p) {
                                    tracing::info!(
                                        peer = %self.flow.addrs().remote,
                                        "server has no session for us (it restarted): reconnecting"
                                    );
                                    self.close(CloseReason::PeerRestarted);
                                    return;
                                }
                            }
                        }
                        if e == crypto::OpenError::Replay {
                            return;
                        }
                        let d = digest(&self.rx_scratch[..n]);
                        if let Some((m1, _)) = replay_msg {
                            if *m1 == d {
                                *send_msg2 = true;
                                return;
                            }
                        }
                        if *accepted_msg2 == Some(d) {
                            return;
                        }
                        if !self.is_client
                            && last_rehandshake.is_none_or(|t| now >= t + REHANDSHAKE_INTERVAL)
                        {
                            *last_rehandshake = Some(now);
                            self.server_handshake(n, now);
                        } else {
                            self.stats.auth_failures += 1;
                        }
                    }
                }
            }
        }
    }

    fn server_handshake(&mut self, n: usize, now: Instant) {
        let msg1 = &self.rx_scratch[..n];
        let d = digest(msg1);
        let mut msg2 = Vec::new();
        match crypto::respond(
            &self.cfg.psk,
            self.cfg.cipher,
            msg1,
            &[HANDSHAKE_VERSION],
            &mut msg2,
        ) {
            Ok((keys, payload)) => {
                let conv = match payload.as_slice() {
                    [HANDSHAKE_VERSION, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
                    _ => {
                        self.stats.auth_failures += 1;
                        tracing::warn!(peer = %self.flow.addrs().remote, "handshake payload malformed");
                        return;
                    }
                };
                self.stats.handshakes_ok += 1;
                let fresh = Box::new(Session {
                    sealer: keys.sealer,
                    opener: keys.opener,
                    kcp: KcpSession::new(conv, &self.cfg.kcp, now),
                    mux: Mux::new(self.cfg.mux.clone(), false, now),
                });
                if let State::Established {
                    pending,
                    replay_msg,
                    send_msg2,
                    ..
                } = &mut self.state
                {
                    tracing::info!(peer = %self.flow.addrs().remote, "new handshake on a live flow: waiting for its first data packet");
                    *pending = Some(fresh);
                    *replay_msg = Some((d, msg2));
                    *send_msg2 = true;
                    return;
                }
                tracing::info!(peer = %self.flow.addrs().remote, "session established");
                self.state = State::Established {
                    session: fresh,
                    replay_msg: Some((d, msg2)),
                    send_msg2: true,
                    accepted_msg2: None,
                    last_rehandshake: None,
                    pending: None,
                    confirmed: false,
                };
                self.events.push_back(ConnEvent::Established);
            }
            Err(e) => {
                self.stats.auth_failures += 1;
                tracing::debug!(peer = %self.flow.addrs().remote, error = %e, "handshake rejected");
                // It may be a data packet of a session this server lost (restart): tell the
                // client, statelessly, so it reconnects now rather than at its idle timeout.
                if matches!(self.state, State::ServerWait)
                    && n >= RESET_PREFIX
                    && self.last_reset.is_none_or(|t| now >= t + RESET_INTERVAL)
                {
                    let mut p = [0u8; RESET_PREFIX];
                    p.copy_from_slice(&self.rx_scratch[..RESET_PREFIX]);
                    self.pending_reset = Some(p);
                    self.last_reset = Some(now);
                }
            }
        }
    }

    fn drain_kcp(&mut self, now: Instant) {
        let State::Established { session, .. } = &mut self.state else {
            return;
        };
        let mut failed = false;
        loop {
            let n = session.kcp.recv(&mut self.rx_scratch);
            if n == 0 {
                break;
            }
            if let Err(e) = session.mux.handle_bytes(&self.rx_scratch[..n], now) {
                tracing::warn!(peer = %self.flow.addrs().remote, error = %e, "mux protocol error");
                failed = true;
                break;
            }
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
        if !self.flow.is_established() {
            return None;
        }
        let at = self.flow.headroom();
        let r = match &mut self.state {
            State::ServerWait => {
                let prefix = self.pending_reset.take()?;
                let len = reset::write_reset(
                    &self.cfg.psk,
                    &prefix,
                    prefix[0] ^ prefix[15],
                    buf.get_mut(at..)?,
                )?;
                self.flow.encapsulate(now, buf, at, len).ok()?
            }
            State::Closed => return None,
            State::ClientHello {
                msg1,
                next_send,
                retry,
                initiator,
                ..
            } => {
                if now < *next_send || initiator.is_none() {
                    return None;
                }
                *next_send = now + *retry;
                *retry = (*retry * 2).min(HANDSHAKE_RETRY_MAX);
                let len = msg1.len();
                buf.get_mut(at..at + len)?.copy_from_slice(msg1);
                self.flow.encapsulate(now, buf, at, len).ok()?
            }
            State::Established {
                session,
                replay_msg,
                send_msg2,
                ..
            } => {
                if *send_msg2 {
                    *send_msg2 = false;
                    if let Some((_, msg2)) = replay_msg {
                        let len = msg2.len();
                        buf.get_mut(at..at + len)?.copy_from_slice(msg2);
                        let r = self.flow.encapsulate(now, buf, at, len).ok()?;
                        self.count_out(r.len());
                        return Some(r);
                    }
                }
                // Datagrams first: they must not wait behind stream bytes.
                let (kind, body) = if let Some(d) = self.datagrams.pop_front() {
                    self.stats.datagrams_out += 1;
                    (KIND_DATAGRAM, d)
                } else {
                    Self::feed_kcp(
                        session,
                        &mut self.mux_scratch,
                        &self.cfg,
                        &mut self.events,
                        now,
                    );
                    (KIND_KCP, session.kcp.poll_transmit()?)
                };
                let sealed = Self::seal(&mut session.sealer, buf, at, kind, &body)?;
                let Ok(sealed) = sealed else {
                    self.close(CloseReason::CounterExhausted);
                    return None;
                };
                if self.is_client && sealed >= RESET_PREFIX {
                    let mut p = [0u8; RESET_PREFIX];
                    p.copy_from_slice(&buf[at..at + RESET_PREFIX]);
                    if self.sent_prefixes.len() < SENT_PREFIXES {
                        self.sent_prefixes.push(p);
                    } else {
                        self.sent_prefixes[self.sent_pos % SENT_PREFIXES] = p;
                    }
                    self.sent_pos = self.sent_pos.wrapping_add(1);
                }
                self.flow.encapsulate(now, buf, at, sealed).ok()?
            }
        };
        self.count_out(r.len());
        Some(r)
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

    /// Writes `kind` + `body` after the crypto header at `buf[at..]` and seals it in place.
    /// `None`: it does not fit the buffer (skipped); `Some(Err)`: the counter is exhausted.
    fn seal(
        sealer: &mut Sealer,
        buf: &mut [u8],
        at: usize,
        kind: u8,
        body: &[u8],
    ) -> Option<Result<usize, crypto::SealError>> {
        let start = at + crypto::HEADER_LEN;
        let end = start + 1 + body.len();
        if end + 32 > buf.len() {
            tracing::warn!(
                len = body.len(),
                kind,
                "packet larger than the frame buffer"
            );
            return None;
        }
        buf[start] = kind;
        buf[start + 1..end].copy_from_slice(body);
        Some(sealer.seal(buf, at, 1 + body.len()).map_err(|e| {
            tracing::warn!(error = %e, "cannot seal: closing session");
            e
        }))
    }

    fn count_out(&mut self, n: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
    }

    /// Runs timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::ClientHello { deadline, .. } => {
                if now >= *deadline {
                    self.close(CloseReason::HandshakeTimeout);
                }
            }
            State::Established { session, .. } => {
                session.kcp.handle_timeout(now);
                session.mux.handle_timeout(now);
                if session.mux.is_dead(now) {
                    self.close(CloseReason::IdleTimeout);
                    return;
                }
                self.drain_kcp(now);
            }
            State::ServerWait | State::Closed => {}
        }
    }

    /// The next instant [`Connection::handle_timeout`] or [`Connection::poll_transmit`]
    /// has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flow = self.flow.poll_timeout();
        let own = match &self.state {
            State::ClientHello {
                next_send,
                deadline,
                initiator,
                ..
            } => {
                if self.flow.is_established() && initiator.is_some() {
                    Some((*next_send).min(*deadline))
                } else {
                    Some(*deadline)
                }
            }
            State::Established { session, .. } => {
                Some(session.kcp.poll_timeout().min(session.mux.poll_timeout()))
            }
            State::ServerWait | State::Closed => None,
        };
        match (flow, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True once a data packet has opened with the current session: the peer holds its
    /// keys (a replayed handshake never gets here).
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.state,
            State::Established {
                confirmed: true,
                ..
            }
        )
    }

    /// True once the session has ended for good.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }
}
