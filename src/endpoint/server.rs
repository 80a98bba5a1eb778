//! The server's side of a connection. Sessions come from the listener's [`super::Gate`],
//! which checks each msg1 before any public-key work; the connection keeps what it needs to
//! answer a retransmitted msg1 (its msg2, until the client's first data packet confirms the
//! session), and a newer session from the same flow (a client that restarted on the same
//! port), which replaces the current one only once a data packet opens with it, so a
//! replayed msg1 never displaces a live session.

use std::time::Instant;

use super::connection::{digest, ClientInfo, ConnEvent, Connection, Payload, Role};
use super::session::Session;
use super::CloseReason;
use crate::crypto::{Accepted, OpenError};

/// A session from a newer msg1 on a live flow, with its msg2.
struct Pending {
    session: Box<Session>,
    client: ClientInfo,
    reply: (u64, Vec<u8>),
}

#[derive(Default)]
pub(super) struct ServerSide {
    pub(super) client: Option<ClientInfo>,
    /// Digest of the msg1 the session came from, and the msg2 answering it.
    reply: Option<(u64, Vec<u8>)>,
    /// A msg2 to send, and since when it is due.
    outbox: Option<(Vec<u8>, Instant)>,
    pending: Option<Pending>,
    /// A data packet has opened with the session (the peer holds its keys).
    pub(super) confirmed: bool,
}

impl ServerSide {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.outbox.as_ref().map(|(_, due)| *due)
    }
}

impl Connection {
    /// A payload in `rx_scratch[..n]` from the client; unclaimed when it is not for the
    /// session (the listener tries it as a msg1 or probe).
    pub(super) fn server_payload(&mut self, n: usize, now: Instant) -> Payload {
        let Role::Server(s) = &self.role else {
            return Payload::Unclaimed;
        };
        if self.session.is_none() {
            return Payload::Unclaimed;
        }
        // Before opening (which works in place): what a failed open needs.
        let spare = s.pending.as_ref().map(|_| self.rx_scratch[..n].to_vec());
        let watch_dup = !s.confirmed || s.pending.is_some();
        let d = watch_dup.then(|| digest(&self.rx_scratch[..n]));
        match self.open_current(n, now) {
            Ok(()) => {
                if let Role::Server(s) = &mut self.role {
                    s.confirmed = true;
                }
                Payload::Authentic
            }
            Err(OpenError::Replay) => Payload::Dropped,
            Err(_) => self.server_unopened(spare, d, now),
        }
    }

    /// The current session could not open a packet: it may be for the pending session, or
    /// a retransmitted msg1.
    fn server_unopened(&mut self, spare: Option<Vec<u8>>, d: Option<u64>, now: Instant) -> Payload {
        let Role::Server(s) = &mut self.role else {
            return Payload::Unclaimed;
        };
        if let (Some(mut copy), Some(p)) = (spare, s.pending.as_mut()) {
            if let Ok(pt) = p.session.opener.open(&mut copy) {
                // The peer holds the newer keys: it restarted. Switch sessions.
                let len = pt.len();
                let off = pt.as_ptr() as usize - copy.as_ptr() as usize;
                self.rx_scratch[..len].copy_from_slice(&copy[off..off + len]);
                if let Some(p) = s.pending.take() {
                    self.session = Some(p.session);
                    s.client = Some(p.client);
                    s.reply = Some(p.reply);
                }
                s.confirmed = true;
                tracing::info!(peer = %self.flow.addrs().remote, "peer restarted: switched to its new session");
                self.events
                    .push_back(ConnEvent::SessionLost(CloseReason::PeerRestarted));
                self.events.push_back(ConnEvent::Established);
                self.handle_plaintext(0..len, now);
                return Payload::Authentic;
            }
        }
        let Some(d) = d else {
            return Payload::Unclaimed;
        };
        if !s.confirmed && s.reply.as_ref().is_some_and(|(m, _)| *m == d) {
            // Our msg2 was lost: the client sent msg1 again.
            s.outbox = s.reply.as_ref().map(|(_, m2)| (m2.clone(), now));
            return Payload::Dropped;
        }
        if let Some(p) = &s.pending {
            if p.reply.0 == d {
                s.outbox = Some((p.reply.1.clone(), now));
                return Payload::Dropped;
            }
        }
        Payload::Unclaimed
    }

    /// Installs a session the listener's gate accepted from `msg1`, with the `msg2` to send.
    /// On a flow that already has a session it becomes pending (see the module docs).
    pub(crate) fn install_session(
        &mut self,
        accepted: Accepted,
        conv: u32,
        client: ClientInfo,
        msg1: &[u8],
        msg2: Vec<u8>,
        now: Instant,
    ) {
        let session = Session::new(accepted.keys, conv, &self.cfg, false, now);
        let reply = (digest(msg1), msg2.clone());
        let Role::Server(s) = &mut self.role else {
            return;
        };
        self.stats.handshakes_ok += 1;
        s.outbox = Some((msg2, now));
        if self.session.is_some() {
            tracing::info!(peer = %self.flow.addrs().remote, client = %client.name, "new handshake on a live flow: waiting for its first data packet");
            s.pending = Some(Pending {
                session,
                client,
                reply,
            });
            return;
        }
        tracing::info!(peer = %self.flow.addrs().remote, client = %client.name, "session established");
        self.session = Some(session);
        s.client = Some(client);
        s.reply = Some(reply);
        self.events.push_back(ConnEvent::Established);
    }

    /// Drops a pending (newer) session whose client `keep` refuses (it was removed).
    pub(crate) fn retain_pending(&mut self, keep: impl Fn(&ClientInfo) -> bool) {
        if let Role::Server(s) = &mut self.role {
            if s.pending.as_ref().is_some_and(|p| !keep(&p.client)) {
                s.pending = None;
            }
        }
    }

    /// A msg2 to (re)send, written at `buf[at..]`; returns its length.
    pub(super) fn server_unsealed(&mut self, buf: &mut [u8], at: usize) -> Option<usize> {
        let Role::Server(s) = &mut self.role else {
            return None;
        };
        let (msg2, _) = s.outbox.take()?;
        let len = msg2.len();
        buf.get_mut(at..at + len)?.copy_from_slice(&msg2);
        Some(len)
    }
}
