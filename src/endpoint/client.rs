//! The client's side of a connection: the opening (SYN proof, msg1 and its retransmission),
//! msg2, and liveness: when nothing authenticated has come back for a while after we sent,
//! a probe goes out; a server that has no session for us (it restarted) answers it with a
//! reset bound to our flow, and we reconnect at once. A path that is merely down answers
//! nothing, so a blackout never ends the session before the idle timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

use super::connection::{digest, ConnConfig, ConnEvent, Connection, Payload, Role};
use super::session::Session;
use super::CloseReason;
use crate::crypto::proof::{self, NONCE_LEN};
use crate::crypto::{Binding, ClientIdentity, HandshakeError, Initiator, OpenError};
use crate::faketcp::{Flow, FlowAddrs};

/// First msg1 retransmission interval; doubles up to [`HELLO_RETRY_MAX`].
const HELLO_RETRY: Duration = Duration::from_millis(1000);
const HELLO_RETRY_MAX: Duration = Duration::from_secs(4);
/// Probe nonces remembered (a reset must answer one of them).
const PROBES_KEPT: usize = 8;
/// Packets up to this size are kept before opening, to be checked as a duplicate msg2 or a
/// reset if they do not open.
const SHORT_COPY: usize = 256;

/// Initiators kept while waiting for msg2 (a late msg2 may answer an older msg1).
const INITIATORS: usize = 4;

/// msg1 and its retransmission schedule. Every retransmission is a fresh msg1 (new
/// ephemeral key and time): a server refuses a msg1 it has seen, and a fresh time also lets
/// a client whose clock is a little behind a just-restarted server in.
struct Hello {
    /// The initiators of the msg1s sent, newest last.
    initiators: VecDeque<Initiator>,
    /// The msg1 to send next, and whether it was sent already.
    msg1: Vec<u8>,
    sent: bool,
    next_send: Instant,
    retry: Duration,
    conv: u32,
    binding: Binding,
}

/// When to probe, and the probes awaiting an answer.
#[derive(Default)]
struct Liveness {
    /// The first packet sent since we last heard from the server.
    unheard_since: Option<Instant>,
    next_probe: Option<Instant>,
    probes: VecDeque<[u8; NONCE_LEN]>,
}

impl Liveness {
    /// Silence after sending that makes us probe: twice the retransmission timeout, within
    /// 300 ms ..= 3 s.
    fn quiet(rto: Duration) -> Duration {
        (rto * 2).clamp(Duration::from_millis(300), Duration::from_secs(3))
    }

    /// Interval between probes while the silence lasts.
    fn interval(rto: Duration) -> Duration {
        rto.clamp(Duration::from_millis(500), Duration::from_secs(3))
    }

    fn due(&self, rto: Duration) -> Option<Instant> {
        let since = self.unheard_since?;
        let quiet = since + Self::quiet(rto);
        Some(self.next_probe.map_or(quiet, |t| t.max(quiet)))
    }

    fn sent(&mut self, now: Instant) {
        self.unheard_since.get_or_insert(now);
    }

    fn heard(&mut self) {
        self.unheard_since = None;
        self.next_probe = None;
        self.probes.clear();
    }
}

pub(super) struct ClientSide {
    identity: Arc<ClientIdentity>,
    hello: Option<Hello>,
    /// The handshake must finish by then.
    deadline: Instant,
    /// Digest of the accepted msg2, so a retransmitted copy is dropped quietly.
    accepted_msg2: Option<u64>,
    /// The flow as the server saw it (from msg2): what probes and resets are bound to.
    flow_binding: Option<Binding>,
    live: Liveness,
}

impl ClientSide {
    pub(super) fn handshake_expired(&self, now: Instant) -> bool {
        self.hello.is_some() && now >= self.deadline
    }

    pub(super) fn poll_timeout(&self, flow_up: bool, rto: Duration) -> Option<Instant> {
        match &self.hello {
            Some(h) if flow_up => Some(h.next_send.min(self.deadline)),
            Some(_) => Some(self.deadline),
            None => self.live.due(rto),
        }
    }
}

impl Connection {
    /// A client connection for `identity`: starts the fake-TCP handshake (if configured),
    /// whose SYN carries the opening proof, then the Noise handshake. `seed` seeds every
    /// random choice of the connection (ports are the caller's).
    pub fn client(
        cfg: ConnConfig,
        identity: Arc<ClientIdentity>,
        addrs: FlowAddrs,
        seed: [u8; 32],
        now: Instant,
    ) -> Result<Connection, HandshakeError> {
        let mut rng = rand::rngs::StdRng::from_seed(seed);
        let t = cfg.wall.unix_ms(now);
        let binding = if cfg.bind_source {
            Binding::source(addrs.local)
        } else {
            Binding::NONE
        };
        let (isn, ts_offset) = if cfg.flow.handshake {
            let p = proof::syn_proof(&identity, &binding, t);
            (p.isn, p.tsval)
        } else {
            (rng.next_u32(), rng.next_u32())
        };
        let conv = rng.next_u32();
        let ip_id = rng.next_u32() as u16;
        let flow = Flow::client(cfg.flow.clone(), addrs, isn, ts_offset, ip_id, now);
        let mut msg1 = Vec::new();
        let initiator = Initiator::start(
            &identity,
            cfg.cipher,
            t,
            &binding,
            &conv.to_be_bytes(),
            &mut rng,
            &mut msg1,
        )?;
        let side = ClientSide {
            identity,
            hello: Some(Hello {
                initiators: VecDeque::from([initiator]),
                msg1,
                sent: false,
                next_send: now,
                retry: HELLO_RETRY,
                conv,
                binding,
            }),
            deadline: now + cfg.handshake_timeout,
            accepted_msg2: None,
            flow_binding: None,
            live: Liveness::default(),
        };
        Ok(Connection::new(
            cfg,
            flow,
            Role::Client(Box::new(side)),
            rng,
        ))
    }

    /// A payload in `rx_scratch[..n]` from the server.
    pub(super) fn client_payload(&mut self, n: usize, now: Instant) -> Payload {
        let Role::Client(c) = &mut self.role else {
            return Payload::Dropped;
        };
        if let Some(hello) = c.hello.as_mut() {
            let msg2 = &self.rx_scratch[..n];
            let mut finished = None;
            let mut last_err = None;
            for init in hello.initiators.iter_mut().rev() {
                match init.finish(msg2) {
                    Ok(done) => {
                        finished = Some(done);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let Some((keys, payload)) = finished else {
                self.stats.auth_failures += 1;
                if let Some(e) = last_err {
                    tracing::debug!(error = %e, "handshake response rejected");
                }
                return Payload::Dropped;
            };
            let d = digest(msg2);
            let conv = hello.conv;
            c.flow_binding = Binding::decode_flow(&payload).map(|(b, _)| b);
            if c.flow_binding.is_none() {
                tracing::warn!("server did not say how it sees our flow: no probes");
            }
            c.hello = None;
            c.accepted_msg2 = Some(d);
            let mut session = Session::new(keys, conv, &self.cfg, true, now);
            // First data at once: confirms the session to the server and measures the RTT.
            session.mux.ping(now);
            self.session = Some(session);
            self.stats.handshakes_ok += 1;
            tracing::info!(peer = %self.flow.addrs().remote, "session established");
            self.events.push_back(ConnEvent::Established);
            return Payload::Authentic;
        }
        let mut copy = [0u8; SHORT_COPY];
        let short = n <= SHORT_COPY;
        if short {
            copy[..n].copy_from_slice(&self.rx_scratch[..n]);
        }
        match self.open_current(n, now) {
            Ok(()) => {
                if let Role::Client(c) = &mut self.role {
                    c.live.heard();
                }
                Payload::Authentic
            }
            Err(OpenError::Replay) => Payload::Dropped,
            Err(_) => {
                let Role::Client(c) = &self.role else {
                    return Payload::Dropped;
                };
                if short {
                    let packet = &copy[..n];
                    if c.accepted_msg2 == Some(digest(packet)) {
                        return Payload::Dropped;
                    }
                    let probes: Vec<_> = c.live.probes.iter().copied().collect();
                    let is_reset = c.flow_binding.is_some_and(|b| {
                        !probes.is_empty() && proof::check_reset(&c.identity, &b, &probes, packet)
                    });
                    if is_reset {
                        tracing::info!(
                            peer = %self.flow.addrs().remote,
                            "server has no session for us (it restarted): reconnecting"
                        );
                        self.close(CloseReason::PeerRestarted);
                        return Payload::Dropped;
                    }
                }
                self.stats.auth_failures += 1;
                Payload::Dropped
            }
        }
    }

    /// msg1 when due, or a probe when due: written at `buf[at..]`; returns its length.
    pub(super) fn client_unsealed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        at: usize,
    ) -> Option<usize> {
        let rto = self.rto();
        let t = self.cfg.wall.unix_ms(now);
        let Role::Client(c) = &mut self.role else {
            return None;
        };
        if let Some(h) = c.hello.as_mut() {
            if now < h.next_send {
                return None;
            }
            if h.sent {
                // A retransmission: a fresh msg1.
                let mut msg1 = Vec::new();
                let conv = h.conv.to_be_bytes();
                let cipher = self.cfg.cipher;
                match Initiator::start(
                    &c.identity,
                    cipher,
                    t,
                    &h.binding,
                    &conv,
                    &mut self.rng,
                    &mut msg1,
                ) {
                    Ok(init) => {
                        if h.initiators.len() >= INITIATORS {
                            h.initiators.pop_front();
                        }
                        h.initiators.push_back(init);
                        h.msg1 = msg1;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot build msg1"),
                }
            }
            h.sent = true;
            h.next_send = now + h.retry;
            h.retry = (h.retry * 2).min(HELLO_RETRY_MAX);
            let len = h.msg1.len();
            buf.get_mut(at..at + len)?.copy_from_slice(&h.msg1);
            return Some(len);
        }
        let binding = c.flow_binding?;
        if self.session.is_none() || c.live.due(rto).is_none_or(|t| now < t) {
            return None;
        }
        let (len, nonce) =
            proof::write_probe(&c.identity, &binding, t, &mut self.rng, buf.get_mut(at..)?)?;
        if c.live.probes.len() >= PROBES_KEPT {
            c.live.probes.pop_front();
        }
        c.live.probes.push_back(nonce);
        c.live.next_probe = Some(now + Liveness::interval(rto));
        self.stats.probes_out += 1;
        tracing::debug!(peer = %self.flow.addrs().remote, "nothing heard for a while: probing");
        Some(len)
    }

    /// A sealed packet went out at `now`: it starts the silence clock. (After a pure
    /// acknowledgement a live server says nothing, so the client probes once; a live server
    /// answers a probe with a sealed "alive", which stops the clock until the next send.)
    pub(super) fn sent_sealed(&mut self, now: Instant) {
        if let Role::Client(c) = &mut self.role {
            c.live.sent(now);
        }
    }
}
