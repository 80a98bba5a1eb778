//! Counters of the endpoint layer: per connection ([`ConnStats`]) and per reason a server
//! dropped a packet without answering ([`DropStats`]). Both add up with `+=`, so the daemon
//! aggregates live and closed connections in one place.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStats {
    pub handshakes_ok: u64,
    /// Packets on this flow that no key opened (forged, corrupted, or another session's).
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
    /// Datagrams refused by `Connection::send_datagram` (too large, queue full, no session).
    pub datagrams_dropped: u64,
    /// Probes sent (client) because nothing authenticated came back for a while.
    pub probes_out: u64,
    /// Key phases the session moved through in each direction (rekeys).
    pub key_updates: u64,
}

impl AddAssign for ConnStats {
    fn add_assign(&mut self, o: ConnStats) {
        self.handshakes_ok += o.handshakes_ok;
        self.auth_failures += o.auth_failures;
        self.replays += o.replays;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rst_ignored += o.rst_ignored;
        self.datagrams_out += o.datagrams_out;
        self.datagrams_in += o.datagrams_in;
        self.datagrams_dropped += o.datagrams_dropped;
        self.probes_out += o.probes_out;
        self.key_updates += o.key_updates;
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
