//! Counters of the endpoint layer: per connection ([`ConnStats`]), per set of connections
//! that come and go ([`ConnTotals`]), and per reason a server dropped a packet without
//! answering ([`DropStats`]). They add up with `+=`, so the server's [`super::Listener`] and
//! the client's packet worker aggregate live and ended connections the same way.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use super::Connection;

/// Counters of one connection, or of several added up. Every field is a counter: it only
/// goes up over a connection's life (a session the connection replaces is folded in, see
/// [`Connection::stats`]), and a sum over connections only goes up as long as the ones that
/// end are kept in a [`ConnTotals`]. Gauges (sessions, streams, RTT) are not here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnStats {
    /// Counter: handshakes completed (a server counts each msg1 it accepted, candidates too).
    pub handshakes_ok: u64,
    /// Counter: packets on this flow that no key opened (forged, corrupted, or another
    /// session's).
    pub auth_failures: u64,
    /// Counter: packets dropped by the replay window.
    pub replays: u64,
    /// Counter: fake-TCP segments with a payload received on this flow.
    pub packets_in: u64,
    /// Counter: frames sent on this flow (fake-TCP control segments, handshake messages,
    /// probes, data, datagrams, close notices).
    pub packets_out: u64,
    /// Counter: payload bytes of the segments received.
    pub bytes_in: u64,
    /// Counter: bytes of the frames sent (headers included).
    pub bytes_out: u64,
    /// Counter: TCP RSTs from the path that the flow ignored.
    pub rst_ignored: u64,
    /// Counter: datagrams sealed and sent.
    pub datagrams_out: u64,
    /// Counter: datagrams received (authenticated).
    pub datagrams_in: u64,
    /// Counter: datagrams refused by `Connection::send_datagram` (too large, queue full, no
    /// session) or still queued when the session ended.
    pub datagrams_dropped: u64,
    /// Counter: probes sent (client) because nothing authenticated came back for a while.
    pub probes_out: u64,
    /// Counter: key phases the sessions moved through in each direction (rekeys).
    pub key_updates: u64,
    /// Counter: KCP retransmissions after a retransmission timeout.
    pub retransmits: u64,
    /// Counter: KCP fast retransmissions (after `resend` later ACKs).
    pub fast_retransmits: u64,
}

impl AddAssign for ConnStats {
    fn add_assign(&mut self, o: ConnStats) {
        // Destructured, so a field added to the struct and not here fails to compile.
        let ConnStats {
            handshakes_ok,
            auth_failures,
            replays,
            packets_in,
            packets_out,
            bytes_in,
            bytes_out,
            rst_ignored,
            datagrams_out,
            datagrams_in,
            datagrams_dropped,
            probes_out,
            key_updates,
            retransmits,
            fast_retransmits,
        } = o;
        self.handshakes_ok += handshakes_ok;
        self.auth_failures += auth_failures;
        self.replays += replays;
        self.packets_in += packets_in;
        self.packets_out += packets_out;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.rst_ignored += rst_ignored;
        self.datagrams_out += datagrams_out;
        self.datagrams_in += datagrams_in;
        self.datagrams_dropped += datagrams_dropped;
        self.probes_out += probes_out;
        self.key_updates += key_updates;
        self.retransmits += retransmits;
        self.fast_retransmits += fast_retransmits;
    }
}

/// The counters of a set of connections that come and go: the server's flow table (kept by
/// the [`super::Listener`]) or a client worker's sessions. A connection's counters are
/// folded in by [`ConnTotals::retire`] when it is dropped, so [`ConnTotals::total`] over the
/// live ones never goes down when a session ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnTotals {
    retired: ConnStats,
}

impl ConnTotals {
    /// Keeps the counters of `conn`, which is about to be dropped. Call it exactly once per
    /// connection, on every path that drops one.
    pub fn retire(&mut self, conn: &Connection) {
        self.retired += conn.stats();
    }

    /// The counters of the connections retired so far.
    pub fn retired(&self) -> ConnStats {
        self.retired
    }

    /// The retired connections' counters plus those of `live`.
    pub fn total<'a>(&self, live: impl IntoIterator<Item = &'a Connection>) -> ConnStats {
        let mut t = self.retired;
        for conn in live {
            t += conn.stats();
        }
        t
    }
}

/// Why a server dropped a packet without answering, by reason. Every packet from a source
/// that has not proven a key ends in one of these (or in a connection's `auth_failures`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropStats {
    /// Not for the tunnel's address or port.
    pub misdirected: u64,
    /// A SYN whose proof did not verify (a stranger's SYN).
    pub syn_invalid: u64,
    /// A SYN whose proof verified for a time outside the clock window or before start.
    pub syn_stale: u64,
    /// A SYN already seen (a replay).
    pub syn_replay: u64,
    /// A msg1 whose mac1 did not verify.
    pub msg1_invalid: u64,
    /// A msg1 outside the clock window or made before this server started.
    pub msg1_stale: u64,
    /// A msg1 already seen (a replay).
    pub msg1_replay: u64,
    /// A handshake refused by the per-source or total rate limit.
    pub handshake_rate: u64,
    /// A msg1 that passed the cheap checks but failed the DH work: unknown or removed client,
    /// cipher or version mismatch.
    pub handshake_failed: u64,
    /// A valid probe outside the clock window or already seen.
    pub probe_stale: u64,
    /// A reset (or a live session's answer to a probe) not sent because of the rate limit.
    pub reset_rate: u64,
    /// Anything else for a flow the server has no state for (junk, data of a lost session
    /// that is not a probe, bare ACKs).
    pub no_flow: u64,
    /// A new flow refused because the flow table is full of established sessions.
    pub table_full: u64,
    /// Seen-sets or rate tables full: refused (fail closed).
    pub state_full: u64,
}

impl DropStats {
    /// (reason, count) pairs in a fixed order, for status and metrics.
    pub fn reasons(&self) -> [(&'static str, u64); 14] {
        [
            ("misdirected", self.misdirected),
            ("syn_invalid", self.syn_invalid),
            ("syn_stale", self.syn_stale),
            ("syn_replay", self.syn_replay),
            ("msg1_invalid", self.msg1_invalid),
            ("msg1_stale", self.msg1_stale),
            ("msg1_replay", self.msg1_replay),
            ("handshake_rate", self.handshake_rate),
            ("handshake_failed", self.handshake_failed),
            ("probe_stale", self.probe_stale),
            ("reset_rate", self.reset_rate),
            ("no_flow", self.no_flow),
            ("table_full", self.table_full),
            ("state_full", self.state_full),
        ]
    }

    pub fn total(&self) -> u64 {
        self.reasons().iter().map(|(_, n)| n).sum()
    }
}

impl AddAssign for DropStats {
    fn add_assign(&mut self, o: DropStats) {
        self.misdirected += o.misdirected;
        self.syn_invalid += o.syn_invalid;
        self.syn_stale += o.syn_stale;
        self.syn_replay += o.syn_replay;
        self.msg1_invalid += o.msg1_invalid;
        self.msg1_stale += o.msg1_stale;
        self.msg1_replay += o.msg1_replay;
        self.handshake_rate += o.handshake_rate;
        self.handshake_failed += o.handshake_failed;
        self.probe_stale += o.probe_stale;
        self.reset_rate += o.reset_rate;
        self.no_flow += o.no_flow;
        self.table_full += o.table_full;
        self.state_full += o.state_full;
    }
}
