//! Per-session budgets of the server's dial path (dials and name lookups in flight) and the
//! counters of every refusal that a policy or limit causes.
//!
//! A [`SessionBudget`] belongs to one client session; every stream task of that session
//! holds it. Taking a slot is non-blocking: when the session already has its limit in
//! flight the open is refused at once (a failed connect result), never queued, so one
//! client's flood costs the others nothing. Slots are RAII guards, released when the dial
//! or lookup ends or its future is dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Refusals by cause, shared by the whole daemon.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Targets refused by the target policy (TCP dials and UDP association targets; single
    /// datagrams are counted as UDP drops).
    pub targets_denied: AtomicU64,
    /// Stream opens refused: the session had `limits.streams_per_session` streams.
    pub refused_streams: AtomicU64,
    /// Opens refused: the session had `limits.dials_per_session` dials in flight.
    pub refused_dials: AtomicU64,
    /// Opens refused: the session had `limits.lookups_per_session` lookups in flight.
    pub refused_lookups: AtomicU64,
    /// UDP associations refused: `limits.udp_associations_per_session` open.
    pub refused_udp: AtomicU64,
    /// Sessions closed: the client address had `limits.sessions_per_address` sessions.
    pub refused_sessions: AtomicU64,
    /// Streams reset because the peer exceeded a stream window or the session's receive
    /// bound (`transport.kcp.smuxbuf`).
    pub reset_over_buffer: AtomicU64,
}

/// A copy of [`LimitCounters`] for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSnapshot {
    pub targets_denied: u64,
    pub refused_streams: u64,
    pub refused_dials: u64,
    pub refused_lookups: u64,
    pub refused_udp: u64,
    pub refused_sessions: u64,
    pub reset_over_buffer: u64,
}

impl LimitCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> LimitSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LimitSnapshot {
            targets_denied: get(&self.targets_denied),
            refused_streams: get(&self.refused_streams),
            refused_dials: get(&self.refused_dials),
            refused_lookups: get(&self.refused_lookups),
            refused_udp: get(&self.refused_udp),
            refused_sessions: get(&self.refused_sessions),
            reset_over_buffer: get(&self.reset_over_buffer),
        }
    }
}

/// What one session may have in flight on the dial path.
#[derive(Debug)]
pub struct SessionBudget {
    max_dials: usize,
    max_lookups: usize,
    dials: AtomicUsize,
    lookups: AtomicUsize,
    counters: Arc<LimitCounters>,
}

/// One dial or lookup slot of a session; released on drop.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<SessionBudget>,
    lookup: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let n = if self.lookup {
            &self.budget.lookups
        } else {
            &self.budget.dials
        };
        n.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionBudget {
    /// A budget of `max_dials` dials and `max_lookups` lookups in flight.
    pub fn new(max_dials: usize, max_lookups: usize, counters: Arc<LimitCounters>) -> Arc<Self> {
        Arc::new(SessionBudget {
            max_dials,
            max_lookups,
            dials: AtomicUsize::new(0),
            lookups: AtomicUsize::new(0),
            counters,
        })
    }

    /// A budget without limits (tests, tools).
    pub fn unlimited() -> Arc<Self> {
        SessionBudget::new(usize::MAX, usize::MAX, Arc::default())
    }

    /// The refusal counters this budget reports to.
    pub fn counters(&self) -> &Arc<LimitCounters> {
        &self.counters
    }

    fn take(self: &Arc<Self>, lookup: bool) -> Option<Slot> {
        let (n, max, refused) = if lookup {
            (
                &self.lookups,
                self.max_lookups,
                &self.counters.refused_lookups,
            )
        } else {
            (&self.dials, self.max_dials, &self.counters.refused_dials)
        };
        let taken = n
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v < max).then_some(v + 1)
            })
            .is_ok();
        if !taken {
            LimitCounters::bump(refused);
            return None;
        }
        Some(Slot {
            budget: self.clone(),
            lookup,
        })
    }

    /// A dial slot, or `None` (counted) when the session has its limit in flight.
    pub fn try_dial(self: &Arc<Self>) -> Option<Slot> {
        self.take(false)
    }

    /// A lookup slot, or `None` (counted) when the session has its limit in flight.
    pub fn try_lookup(self: &Arc<Self>) -> Option<Slot> {
        self.take(true)
    }

    /// Dials in flight now.
    pub fn dials(&self) -> usize {
        self.dials.load(Ordering::Acquire)
    }

    /// Lookups in flight now.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Acquire)
    }
}

/// Memory one stream costs the server beyond its buffered bytes, as documented: the relay's
/// read buffer (up to 32 KiB while the target sends), the inbox, slot, mux state, the task
/// and its socket's user-space side.
pub const STREAM_OVERHEAD: u64 = 48 * 1024;

/// The documented bound on the memory one client session can make the server hold, in
/// bytes, for `cfg` (a server config):
///
/// ```text
///   2 × smuxbuf                        received, not yet written to targets (inbox packing ≤ 2×)
/// + smuxbuf                            read from targets, not yet framed (session send credit)
/// + (sndwnd + rcvwnd) × mtu            KCP send and receive windows
/// + streams_per_session × 48 KiB       per-stream state and relay buffers
/// ```
///
/// A client address may hold `sessions_per_address` times this.
pub fn session_memory_bound(cfg: &crate::config::Config) -> u64 {
    let k = &cfg.transport.kcp;
    let smux = k.smuxbuf as u64;
    let kcp = (u64::from(k.sndwnd) + u64::from(k.rcvwnd)) * u64::from(k.mtu);
    3 * smux + kcp + cfg.limits.streams_per_session as u64 * STREAM_OVERHEAD
}
