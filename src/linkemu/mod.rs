//! A sans-IO WAN link model: one direction of an emulated path with delay, jitter, random
//! and bursty (Gilbert–Elliott) loss, reordering, duplication, a rate limit with a bounded
//! queue, an MTU and blackouts. The `rawtun-linkemu` binary runs one [`Link`] per direction
//! between two interfaces; tests drive it in virtual time.
//!
//! Call order (quinn style): [`Link::handle_frame`] (or [`Link::enqueue`]) for every frame
//! that enters the link, with its arrival time; [`Link::poll_release`] until it returns
//! `None`; then wait until [`Link::next_release`]. Nothing here reads the clock.
//!
//! What a frame goes through, in order:
//!
//! ```text
//!  arrival ─► blackout? ─► MTU? ─► rate queue ─► loss (random, GE) ─► delay ± jitter ─► out
//!              drop         drop    tail drop      drop                 (FIFO)  │
//!                                   (bound)                     reorder: +gap, not FIFO
//!                                                               duplicate: a second copy
//! ```
//!
//! - The rate limiter is a serializer: a frame starts transmitting when the previous one
//!   has left (`start = max(arrival, link_free)`) and takes `len × 8 / rate`; its queueing
//!   delay is `start − arrival`. A queue bound in bytes is the same bound in time at the
//!   configured rate; a frame whose queueing delay would exceed it is tail-dropped.
//! - Frames lost after the queue still used their serialization time, as on a real wire.
//! - Jitter is uniform in `±jitter` around `delay` but frames leave in arrival order (a
//!   frame that would overtake its predecessor waits for it), so jitter alone never
//!   reorders. A reordered frame is held `reorder_gap` beyond its slot outside that order.
//! - Blackouts drop frames *entering* the link in the window (frames already in flight are
//!   still delivered, as on a path whose first hop fails).
//! - Every frame draws the same six random numbers whatever the settings, so one seed gives
//!   the same outcome frame by frame, and changing one probability does not shift the
//!   others' draws.

mod checksum;
mod parse;
mod rng;
#[cfg(test)]
mod tests;

pub use checksum::complete_checksum;
pub use parse::{
    parse_blackout, parse_duration, parse_gilbert_elliott, parse_probability, parse_queue,
    parse_rate, ParseError,
};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rng::Xoshiro256;

/// Most frames one direction holds at once (delay line and queue together); beyond it
/// arrivals are dropped as `dropped_queue`, so a misconfiguration cannot exhaust memory.
pub const HELD_LIMIT: usize = 1 << 17;

/// Gilbert–Elliott two-state loss: per frame the chain moves good→bad with `p_good_bad`
/// and bad→good with `p_bad_good`, then the frame is lost with the state's loss
/// probability. Bursts in the bad state last `1 / p_bad_good` frames on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state.
    pub p_good_bad: f64,
    /// Probability of moving from the bad to the good state.
    pub p_bad_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

/// Bound on the rate limiter's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// Largest queueing delay a frame may get.
    Time(Duration),
    /// Largest backlog in bytes (converted to time at the configured rate).
    Bytes(u64),
}

/// A window, relative to the link's epoch, during which every entering frame is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    /// Offset from the epoch.
    pub start: Duration,
    /// Length of the window.
    pub duration: Duration,
}

impl Blackout {
    fn contains(&self, offset: Duration) -> bool {
        offset >= self.start && offset - self.start < self.duration
    }
}

/// What one direction does to frames. [`Default`] forwards everything unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Delay varies uniformly in `delay ± jitter` (never below zero, never reordering).
    pub jitter: Duration,
    /// Probability a frame is lost (independently of the others).
    pub loss: f64,
    /// Bursty loss, on top of `loss`.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Probability a frame is held back `reorder_gap` so later frames overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered frame.
    pub reorder_gap: Duration,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Bottleneck rate in bit/s (whole frames counted), `None` for unlimited.
    pub rate: Option<u64>,
    /// Bound of the rate limiter's queue (ignored without `rate`).
    pub queue: QueueLimit,
    /// Largest IP packet (frame minus its Ethernet header) carried; larger ones dropped.
    pub mtu: Option<usize>,
    /// Scheduled blackouts.
    pub blackouts: Vec<Blackout>,
}

impl Default for Impairments {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            gilbert_elliott: None,
            reorder: 0.0,
            reorder_gap: Duration::from_millis(5),
            duplicate: 0.0,
            rate: None,
            queue: QueueLimit::Time(Duration::from_millis(100)),
            mtu: None,
            blackouts: Vec::new(),
        }
    }
}

/// What [`Link::handle_frame`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Held for release.
    Queued,
    /// Held for release, and a duplicate too.
    Duplicated,
    /// Lost by the independent loss probability.
    LostRandom,
    /// Lost by the Gilbert–Elliott model.
    LostBurst,
    /// Dropped because it entered during a blackout.
    LostBlackout,
    /// Tail-dropped: the rate limiter's queue was full.
    DroppedQueue,
    /// Dropped: its IP packet exceeds the MTU.
    DroppedMtu,
}

/// Counters of one [`Link`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed to the link.
    pub received: u64,
    /// Frames released (duplicates included).
    pub forwarded: u64,
    /// Bytes released.
    pub forwarded_bytes: u64,
    /// Frames lost by `loss`.
    pub lost_random: u64,
    /// Frames lost by the Gilbert–Elliott model.
    pub lost_burst: u64,
    /// Frames dropped in blackouts.
    pub lost_blackout: u64,
    /// Frames tail-dropped at the rate limiter's queue (or at [`HELD_LIMIT`]).
    pub dropped_queue: u64,
    /// Frames dropped for exceeding the MTU.
    pub dropped_mtu: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Frames held back for reordering.
    pub reordered: u64,
    /// Longest queueing delay at the rate limiter.
    pub max_queue_delay: Duration,
}

/// A frame waiting for its release instant.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    at: Instant,
    /// Arrival order, to break ties in the reorder heap.
    seq: u64,
    frame: Vec<u8>,
}

/// The random numbers drawn for one frame.
struct Draws {
    loss: f64,
    ge_step: f64,
    ge_loss: f64,
    jitter: f64,
    reorder: f64,
    duplicate: f64,
}

/// One direction of an emulated link. See the module doc for the call order.
#[derive(Debug)]
pub struct Link {
    cfg: Impairments,
    epoch: Instant,
    rng: Xoshiro256,
    /// In-order frames; release instants never decrease front to back.
    fifo: VecDeque<Held>,
    /// Reordered frames, earliest first.
    late: BinaryHeap<Reverse<Held>>,
    /// When the rate limiter finishes the frame it is sending.
    link_free: Option<Instant>,
    ge_bad: bool,
    /// Blackouts started by [`Link::start_blackout`]: `[from, until)`.
    signal_blackouts: Vec<(Instant, Instant)>,
    seq: u64,
    stats: LinkStats,
}

impl Link {
    /// A link with the given impairments; scheduled blackouts count from `epoch`.
    pub fn new(cfg: Impairments, seed: u64, epoch: Instant) -> Self {
        Self {
            cfg,
            epoch,
            rng: Xoshiro256::new(seed),
            fifo: VecDeque::new(),
            late: BinaryHeap::new(),
            link_free: None,
            ge_bad: false,
            signal_blackouts: Vec::new(),
            seq: 0,
            stats: LinkStats::default(),
        }
    }

    /// The impairments in force.
    pub fn impairments(&self) -> &Impairments {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Frames currently held (queued or in the delay line).
    pub fn held(&self) -> usize {
        self.fifo.len() + self.late.len()
    }

    /// Starts (or extends) a blackout of `duration` from `now`, as on SIGUSR1.
    pub fn start_blackout(&mut self, now: Instant, duration: Duration) {
        self.signal_blackouts.push((now, now + duration));
    }

    /// True if a frame entering at `now` would be dropped by a blackout.
    pub fn in_blackout(&self, now: Instant) -> bool {
        if self
            .signal_blackouts
            .iter()
            .any(|&(from, until)| from <= now && now < until)
        {
            return true;
        }
        let offset = now.saturating_duration_since(self.epoch);
        self.cfg.blackouts.iter().any(|b| b.contains(offset))
    }

    /// A frame enters the link at `now` (copied; see [`Link::enqueue`]).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Verdict {
        self.enqueue(now, frame.to_vec())
    }

    /// A frame enters the link at `now`, handing over its buffer.
    pub fn enqueue(&mut self, now: Instant, frame: Vec<u8>) -> Verdict {
        self.stats.received += 1;
        let draws = Draws {
            loss: self.rng.unit(),
            ge_step: self.rng.unit(),
            ge_loss: self.rng.unit(),
            jitter: self.rng.unit(),
            reorder: self.rng.unit(),
            duplicate: self.rng.unit(),
        };
        // The burst chain advances with every arriving frame, whatever happens to it.
        let ge_lost = self.cfg.gilbert_elliott.is_some_and(|ge| {
            let flip = if self.ge_bad {
                ge.p_bad_good
            } else {
                ge.p_good_bad
            };
            if draws.ge_step < flip {
                self.ge_bad = !self.ge_bad;
            }
            draws.ge_loss
                < if self.ge_bad {
                    ge.loss_bad
                } else {
                    ge.loss_good
                }
        });

        if self.in_blackout(now) {
            self.stats.lost_blackout += 1;
            return Verdict::LostBlackout;
        }
        if self.cfg.mtu.is_some_and(|mtu| ip_len(&frame) > mtu) {
            self.stats.dropped_mtu += 1;
            return Verdict::DroppedMtu;
        }
        if self.held() >= HELD_LIMIT {
            self.stats.dropped_queue += 1;
            return Verdict::DroppedQueue;
        }

        // Rate limiter: wait for the serializer, tail-drop beyond the bound.
        let departure = match self.cfg.rate {
            None => now,
            Some(rate) => {
                let start = self.link_free.map_or(now, |free| free.max(now));
                let wait = start - now;
                if wait > self.queue_bound(rate) {
                    self.stats.dropped_queue += 1;
                    return Verdict::DroppedQueue;
                }
                self.stats.max_queue_delay = self.stats.max_queue_delay.max(wait);
                let departure = start + serialization(frame.len(), rate);
                self.link_free = Some(departure);
                departure
            }
        };

        if draws.loss < self.cfg.loss {
            self.stats.lost_random += 1;
            return Verdict::LostRandom;
        }
        if ge_lost {
            self.stats.lost_burst += 1;
            return Verdict::LostBurst;
        }

        let mut at = departure + self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            let offset = self.cfg.jitter.mul_f64((draws.jitter * 2.0 - 1.0).abs());
            at = if draws.jitter >= 0.5 {
                at + offset
            } else {
                at.checked_sub(offset).unwrap_or(departure).max(departure)
            };
        }
        let duplicate = draws.duplicate < self.cfg.duplicate;
        let copy = duplicate.then(|| frame.clone());
        if draws.reorder < self.cfg.reorder {
            self.stats.reordered += 1;
            let at = at + self.cfg.reorder_gap;
            self.push_late(at, frame);
            if let Some(copy) = copy {
                self.push_late(at, copy);
            }
        } else {
            // FIFO: never leave before the frame ahead.
            let at = self.fifo.back().map_or(at, |tail| tail.at.max(at));
            self.push_fifo(at, frame);
            if let Some(copy) = copy {
                self.push_fifo(at, copy);
            }
        }
        if duplicate {
            self.stats.duplicated += 1;
            Verdict::Duplicated
        } else {
            Verdict::Queued
        }
    }

    fn queue_bound(&self, rate: u64) -> Duration {
        match self.cfg.queue {
            QueueLimit::Time(d) => d,
            QueueLimit::Bytes(bytes) => {
                serialization(usize::try_from(bytes).unwrap_or(usize::MAX), rate)
            }
        }
    }

    fn push_fifo(&mut self, at: Instant, frame: Vec<u8>) {
        self.seq += 1;
        self.fifo.push_back(Held {
            at,
            seq: self.seq,
            frame,
        });
    }

    fn push_late(&mut self, at: Instant, frame: Vec<u8>) {
        self.seq += 1;
        self.late.push(Reverse(Held {
            at,
            seq: self.seq,
            frame,
        }));
    }

    /// The earliest held release instant, if any frame is held.
    pub fn next_release(&self) -> Option<Instant> {
        let fifo = self.fifo.front().map(|h| h.at);
        let late = self.late.peek().map(|h| h.0.at);
        match (fifo, late) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame due at or before `now`, earliest first.
    pub fn poll_release(&mut self, now: Instant) -> Option<Vec<u8>> {
        let fifo = self.fifo.front().map(|h| h.at).filter(|&at| at <= now);
        let late = self.late.peek().map(|h| h.0.at).filter(|&at| at <= now);
        let held = match (fifo, late) {
            (Some(a), Some(b)) if b < a => self.late.pop().map(|h| h.0),
            (Some(_), _) => self.fifo.pop_front(),
            (None, Some(_)) => self.late.pop().map(|h| h.0),
            (None, None) => None,
        }?;
        self.stats.forwarded += 1;
        self.stats.forwarded_bytes += held.frame.len() as u64;
        Some(held.frame)
    }
}

/// Time to put `len` bytes on a wire of `rate` bit/s.
pub fn serialization(len: usize, rate: u64) -> Duration {
    let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Length of the IP packet in an Ethernet frame (after the header and any 802.1Q tags).
pub fn ip_len(frame: &[u8]) -> usize {
    let mut header = 14;
    while let Some(&[a, b]) = frame.get(header - 2..header) {
        if matches!(u16::from_be_bytes([a, b]), 0x8100 | 0x88a8) {
            header += 4;
        } else {
            break;
        }
    }
    frame.len().saturating_sub(header)
}
