//! A sans-IO model of a two-port link with seeded loss, delay, jitter, reordering,
//! duplication and an MTU, driven in virtual time.
//!
//! Call order: [`MemNetwork::send`] whenever an endpoint transmits, then
//! [`MemNetwork::poll_deliver`] until it returns `None`, and sleep (or advance the virtual
//! clock) until [`MemNetwork::next_delivery`]. The same seed and the same calls give the same
//! deliveries, byte for byte.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How one direction of the link treats frames. Every frame draws the same four random
/// numbers whatever the settings, so changing one probability does not shift the others.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkModel {
    /// Probability a frame is lost.
    pub loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter`. Jitter alone never reorders: a frame
    /// is never delivered before one sent earlier in the same direction (a FIFO queue).
    pub jitter: Duration,
    /// Probability a frame gets extra delay (`max(delay / 2, 1 ms) + jitter`) outside the
    /// FIFO, so it lands after frames sent later.
    pub reorder: f64,
    /// Probability a delivered frame arrives twice.
    pub duplicate: f64,
    /// Largest frame (whole link-layer frame, in bytes) carried; larger ones are dropped
    /// and counted as oversize.
    pub mtu: usize,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for LinkModel {
    /// A perfect link: no loss, no delay, Ethernet-sized frames (1514 bytes), seed 0.
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            mtu: 1514,
            seed: 0,
        }
    }
}

/// Counters of a [`MemNetwork`] (one direction, or both summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed to `send`.
    pub sent: u64,
    /// Frames returned by `poll_deliver` (duplicates included).
    pub delivered: u64,
    /// Frames dropped by `loss`.
    pub lost: u64,
    /// Extra copies scheduled by `duplicate`.
    pub duplicated: u64,
    /// Frames given the reordering delay.
    pub reordered: u64,
    /// Frames dropped for exceeding `mtu`.
    pub oversize: u64,
}

impl LinkStats {
    fn sum(self, o: LinkStats) -> LinkStats {
        LinkStats {
            sent: self.sent + o.sent,
            delivered: self.delivered + o.delivered,
            lost: self.lost + o.lost,
            duplicated: self.duplicated + o.duplicated,
            reordered: self.reordered + o.reordered,
            oversize: self.oversize + o.oversize,
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for link simulation.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[derive(Debug)]
struct Direction {
    model: LinkModel,
    rng: SplitMix64,
    /// Delivery time of the last in-order frame (the FIFO tail).
    tail: Option<Instant>,
    stats: LinkStats,
}

#[derive(Debug)]
struct Pending {
    at: Instant,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Two ports (0 and 1) joined by a simulated link; port 0 sends through `a_to_b`, port 1
/// through `b_to_a`.
#[derive(Debug)]
pub struct MemNetwork {
    directions: [Direction; 2],
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

impl MemNetwork {
    /// A link with one model per direction. Each direction has its own PRNG, seeded from its
    /// model's seed and the direction, so equal seeds do not give mirrored losses.
    pub fn new(a_to_b: LinkModel, b_to_a: LinkModel) -> Self {
        let direction = |model: LinkModel, salt: u64| Direction {
            rng: SplitMix64(model.seed ^ salt),
            model,
            tail: None,
            stats: LinkStats::default(),
        };
        Self {
            directions: [
                direction(a_to_b, 0),
                direction(b_to_a, 0x5bd1_e995_5bd1_e995),
            ],
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// The same model both ways.
    pub fn symmetric(model: LinkModel) -> Self {
        Self::new(model.clone(), model)
    }

    /// Port `from` (0 or 1) transmits `frame` at `now`.
    ///
    /// # Panics
    /// If `from` is not 0 or 1 (a test bug, not a network input).
    pub fn send(&mut self, now: Instant, from: usize, frame: &[u8]) {
        assert!(from < 2, "MemNetwork ports are 0 and 1, got {from}");
        let d = &mut self.directions[from];
        d.stats.sent += 1;
        let (lose, jitter, reorder, duplicate) =
            (d.rng.unit(), d.rng.unit(), d.rng.unit(), d.rng.unit());
        if frame.len() > d.model.mtu {
            d.stats.oversize += 1;
            return;
        }
        if lose < d.model.loss {
            d.stats.lost += 1;
            return;
        }
        let jitter = d.model.jitter.mul_f64(jitter);
        let base = now + d.model.delay + jitter;
        let at = if reorder < d.model.reorder {
            d.stats.reordered += 1;
            base + (d.model.delay / 2).max(Duration::from_millis(1)) + d.model.jitter
        } else {
            let at = d.tail.map_or(base, |tail| tail.max(base));
            d.tail = Some(at);
            at
        };
        let copies = if duplicate < d.model.duplicate {
            d.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.queue.push(Reverse(Pending {
                at,
                seq: self.seq,
                to: 1 - from,
                frame: frame.to_vec(),
            }));
        }
    }

    /// The next frame due at or before `now`, with the port it arrives on.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<(usize, Vec<u8>)> {
        if self.queue.peek()?.0.at > now {
            return None;
        }
        let Reverse(p) = self.queue.pop()?;
        self.directions[1 - p.to].stats.delivered += 1;
        Some((p.to, p.frame))
    }

    /// When the next frame becomes due, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.0.at)
    }

    /// Frames in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Counters of both directions summed.
    pub fn stats(&self) -> LinkStats {
        self.directions[0].stats.sum(self.directions[1].stats)
    }

    /// Counters of the direction port `from` sends through.
    ///
    /// # Panics
    /// If `from` is not 0 or 1.
    pub fn stats_from(&self, from: usize) -> LinkStats {
        assert!(from < 2, "MemNetwork ports are 0 and 1, got {from}");
        self.directions[from].stats
    }
}
