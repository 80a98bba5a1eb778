//! An established session: the data-packet keys, the KCP session and the multiplexer, and
//! what a sealed packet's plaintext carries.
//!
//! ```text
//!  0        1
//! +--------+------------------------------+
//! |  kind  |  body                        |
//! +--------+------------------------------+
//! kind 0x01: body is one KCP packet
//! kind 0x02: body is one datagram ([`crate::tunnel`] datagram header + UDP payload)
//! kind 0x03: the sender ended the session; body: one reason byte (see [`CloseNotice`])
//! kind 0x04: alive: a server's answer to a probe on a live session (empty body)
//! ```

use std::time::Instant;

use crate::crypto::{self, Opener, Sealer, SessionCrypto};
use crate::kcp::KcpSession;
use crate::mux::Mux;

use super::{ConnConfig, ConnStats};

/// Plaintext kind byte: the body is one KCP packet.
pub(super) const KIND_KCP: u8 = 0x01;
/// Plaintext kind byte: the body is one datagram (never retransmitted).
pub(super) const KIND_DATAGRAM: u8 = 0x02;
/// Plaintext kind byte: the session is over.
pub(super) const KIND_CLOSE: u8 = 0x03;
/// Plaintext kind byte: the server is alive (answers a probe on a live session).
pub(super) const KIND_ALIVE: u8 = 0x04;

/// Why a peer ended a session, as carried by a close notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseNotice {
    /// The server stops (SIGTERM).
    Shutdown = 1,
    /// The client's key was removed from the server's configuration.
    Revoked = 2,
}

impl CloseNotice {
    pub(super) fn from_byte(b: u8) -> Option<CloseNotice> {
        match b {
            1 => Some(CloseNotice::Shutdown),
            2 => Some(CloseNotice::Revoked),
            _ => None,
        }
    }
}

pub(super) struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
    pub kcp: KcpSession,
    pub mux: Mux,
}

impl Session {
    pub fn new(
        mut keys: SessionCrypto,
        conv: u32,
        cfg: &ConnConfig,
        is_client: bool,
        now: Instant,
    ) -> Box<Session> {
        keys.set_phase_len(cfg.rekey_packets);
        Box::new(Session {
            sealer: keys.sealer,
            opener: keys.opener,
            kcp: KcpSession::new(conv, &cfg.kcp, now),
            mux: Mux::new(cfg.mux.clone(), is_client, now),
        })
    }

    /// Key phases moved through, both directions.
    pub fn key_updates(&self) -> u64 {
        self.sealer.phase() + self.opener.phase()
    }

    /// The counters this session keeps itself (replays, key phases, KCP retransmissions);
    /// the connection adds its own.
    pub fn stats(&self) -> ConnStats {
        let kcp = self.kcp.stats();
        ConnStats {
            replays: self.opener.stats().replays,
            key_updates: self.key_updates(),
            retransmits: kcp.retransmits,
            fast_retransmits: kcp.fast_retransmits,
            ..ConnStats::default()
        }
    }

    /// Writes `kind` + `body` after the crypto header at `buf[at..]` and seals it in place.
    /// `None`: it does not fit the buffer (skipped); `Some(Err)`: the counter is exhausted.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        at: usize,
        kind: u8,
        body: &[u8],
    ) -> Option<Result<usize, crypto::SealError>> {
        let Some(room) = self.body_room(buf, at) else {
            tracing::warn!(
                len = body.len(),
                kind,
                "no room for a packet in the frame buffer"
            );
            return None;
        };
        let Some(dst) = room.get_mut(..body.len()) else {
            tracing::warn!(
                len = body.len(),
                kind,
                "packet larger than the frame buffer"
            );
            return None;
        };
        dst.copy_from_slice(body);
        self.seal_body(buf, at, kind, body.len())
    }

    /// Where a body goes in `buf` for a packet sealed at `buf[at..]`: after the crypto
    /// header and the kind byte, up to the room the tag needs at the end. Write it there
    /// and call [`Session::seal_body`].
    pub fn body_room<'b>(&self, buf: &'b mut [u8], at: usize) -> Option<&'b mut [u8]> {
        let start = at + crypto::HEADER_LEN + 1;
        let tag = self.sealer.overhead() - crypto::HEADER_LEN;
        let end = buf.len().checked_sub(tag)?;
        buf.get_mut(start..end)
    }

    /// Seals in place the `len`-byte body already written at [`Session::body_room`],
    /// with `kind` in front of it.
    pub fn seal_body(
        &mut self,
        buf: &mut [u8],
        at: usize,
        kind: u8,
        len: usize,
    ) -> Option<Result<usize, crypto::SealError>> {
        *buf.get_mut(at + crypto::HEADER_LEN)? = kind;
        Some(self.sealer.seal(buf, at, 1 + len).map_err(|e| {
            tracing::warn!(error = %e, "cannot seal: closing session");
            e
        }))
    }
}
