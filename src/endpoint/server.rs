//! The server's side of a connection. Sessions come from the listener's [`super::Gate`],
//! which checks each msg1 before any public-key work. A client retransmits a *fresh* msg1
//! (new ephemeral key and time) when its msg2 is lost, so a flow may be handed several
//! sessions before the client's first data packet says which one it finished: the first
//! becomes current, later ones wait as candidates, and a data packet that opens with a
//! candidate promotes it. The same covers a client that restarted on the same port. A
//! recorded msg1 replayed on the flow is refused by the seen-set and never answered.

use std::collections::VecDeque;
use std::time::Instant;

use super::connection::{ClientInfo, ConnEvent, Connection, Payload, Role};
use super::session::Session;
use super::CloseReason;
use crate::crypto::{Accepted, OpenError};

/// Sessions a flow keeps waiting for a data packet at most (the newest win).
const CANDIDATES: usize = 4;

/// A session from a newer msg1 on this flow, not yet confirmed by a data packet.
struct Candidate {
    session: Box<Session>,
    client: ClientInfo,
}

#[derive(Default)]
pub(super) struct ServerSide {
    pub(super) client: Option<ClientInfo>,
    /// msg2s to send, oldest first, with since when they are due.
    outbox: VecDeque<(Vec<u8>, Instant)>,
    candidates: VecDeque<Candidate>,
    /// A data packet has opened with the current session (the peer holds its keys).
    pub(super) confirmed: bool,
}

impl ServerSide {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.outbox.front().map(|(_, due)| *due)
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
        // Opening works in place: keep a copy for the candidates.
        let spare = (!s.candidates.is_empty()).then(|| self.rx_scratch[..n].to_vec());
        match self.open_current(n, now) {
            Ok(()) => {
                if let Role::Server(s) = &mut self.role {
                    s.confirmed = true;
                }
                Payload::Authentic
            }
            Err(OpenError::Replay) => Payload::Dropped,
            Err(_) => match spare {
                Some(copy) => self.try_candidates(copy, now),
                None => Payload::Unclaimed,
            },
        }
    }

    /// The current session could not open `copy`: it may be for a candidate.
    fn try_candidates(&mut self, mut copy: Vec<u8>, now: Instant) -> Payload {
        let Role::Server(s) = &mut self.role else {
            return Payload::Unclaimed;
        };
        for i in 0..s.candidates.len() {
            let mut attempt = copy.clone();
            let Ok(pt) = s.candidates[i].session.opener.open(&mut attempt) else {
                continue;
            };
            let (len, off) = (pt.len(), pt.as_ptr() as usize - attempt.as_ptr() as usize);
            copy.clear();
            copy.extend_from_slice(&attempt[off..off + len]);
            let Some(c) = s.candidates.remove(i) else {
                break;
            };
            s.candidates.clear();
            // The replaced session's counters stay with the connection.
            if let Some(old) = self.session.replace(c.session) {
                self.stats += old.stats();
            }
            s.client = Some(c.client);
            s.confirmed = true;
            tracing::info!(peer = %self.flow.addrs().remote, "the client finished a newer handshake: switched to it");
            self.events
                .push_back(ConnEvent::SessionLost(CloseReason::PeerRestarted));
            self.events.push_back(ConnEvent::Established);
            self.rx_scratch[..len].copy_from_slice(&copy);
            self.handle_plaintext(0..len, now);
            return Payload::Authentic;
        }
        Payload::Unclaimed
    }

    /// Installs a session the listener's gate accepted, with the `msg2` to send. On a flow
    /// that already has a session it becomes a candidate (see the module docs).
    pub(crate) fn install_session(
        &mut self,
        accepted: Accepted,
        conv: u32,
        client: ClientInfo,
        msg2: Vec<u8>,
        now: Instant,
    ) {
        let session = Session::new(accepted.keys, conv, &self.cfg, false, now);
        let Role::Server(s) = &mut self.role else {
            return;
        };
        self.stats.handshakes_ok += 1;
        s.outbox.push_back((msg2, now));
        if self.session.is_some() {
            tracing::info!(peer = %self.flow.addrs().remote, client = %client.name, "another handshake on this flow: waiting for its first data packet");
            if s.candidates.len() >= CANDIDATES {
                s.candidates.pop_front();
            }
            s.candidates.push_back(Candidate { session, client });
            return;
        }
        tracing::info!(peer = %self.flow.addrs().remote, client = %client.name, "session established");
        self.session = Some(session);
        s.client = Some(client);
        self.events.push_back(ConnEvent::Established);
    }

    /// Drops candidate sessions whose client `keep` refuses (it was removed).
    pub(crate) fn retain_candidates(&mut self, keep: impl Fn(&ClientInfo) -> bool) {
        if let Role::Server(s) = &mut self.role {
            s.candidates.retain(|c| keep(&c.client));
        }
    }

    /// The next msg2 to send, written at `buf[at..]`; returns its length.
    pub(super) fn server_unsealed(&mut self, buf: &mut [u8], at: usize) -> Option<usize> {
        let Role::Server(s) = &mut self.role else {
            return None;
        };
        let (msg2, _) = s.outbox.pop_front()?;
        let len = msg2.len();
        buf.get_mut(at..at + len)?.copy_from_slice(&msg2);
        Some(len)
    }
}
