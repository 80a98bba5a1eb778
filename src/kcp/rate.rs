//! Delivery-rate cap: keeps the data in flight near the path's bandwidth-delay product, so
//! a bulk transfer does not build a standing queue at the bottleneck (a slow link's buffer,
//! or a receiver whose CPU is the limit).
//!
//! Without it a KCP sender keeps its whole window in flight (8192 segments ≈ 11 MB by
//! default): on a 1 Gbit/s path that is up to ~90 ms of queue in front of every packet
//! behind it, datagrams and other streams included, and on a rate-limited path the queue
//! overflows and KCP retransmits what the bottleneck dropped, over and over. The cap works
//! like BBR's congestion window, without pacing:
//!
//! - the delivery rate is measured per interval (≥ one smoothed RTT, ≥ 5 ms) from the
//!   segments the peer acknowledged, and its maximum over the last 10 s is kept; an
//!   interval in which the sender ran out of data (application-limited) only counts when
//!   it raises the maximum, so a quiet session does not forget its path;
//! - the minimum RTT is kept, and re-measured every 10 s by a short drain (the cap drops
//!   to [`FLOOR`] for max(200 ms, min RTT)) so a queue cannot pass itself off as the path;
//! - the cap is max([`FLOOR`], gain × max rate × min RTT). During *startup* the gain is 3:
//!   the measured rate can triple every round trip while the path has room. Once it grew by
//!   less than 25% for three intervals in a row the path is full, and the gain drops to
//!   1.25: at most a quarter of a BDP waits in queues, and the rate can still grow by a
//!   quarter per round trip when the path gets faster. Startup begins again when no rate
//!   sample is left (10 s without a transfer that filled the cap).
//!
//! Loss is not a signal here: random loss on long paths is what rawtun's users have. The
//! cap counts segments really outstanding, so a hole left by a lost segment does not stall
//! new data. Measured (tests/udp.rs): on a 20 Mbit/s link with a 30 ms queue a bulk upload
//! now adds 5 ms to a datagram's round trip instead of 20 ms, and retransmits 38 segments
//! instead of ~800,000; on a bare veth it adds 3 ms instead of 10–28 ms, for ~10% less
//! throughput where rawtun's CPU is the bottleneck. `transport.kcp.ratecap: false` turns it
//! off.

use std::collections::VecDeque;

/// Smallest cap, in segments.
pub const FLOOR: u64 = 32;
/// How long a rate sample counts towards the maximum, and how often the minimum RTT is
/// re-measured (ms).
const WINDOW_MS: u64 = 10_000;
/// Shortest measuring interval (ms).
const MIN_INTERVAL_MS: u64 = 5;
/// Shortest drain when re-measuring the minimum RTT (ms).
const PROBE_MS: u64 = 200;
/// Startup ends after this many intervals without 25% growth.
const STARTUP_ROUNDS: u32 = 3;
/// Gains in quarters: 1.25 once the path is full, 3 during startup.
const GAIN_X4: u64 = 5;
const STARTUP_GAIN_X4: u64 = 12;

#[derive(Debug, Default)]
pub(super) struct RateCap {
    /// Minimum RTT (ms, at least 1) and when it was last measured.
    min_rtt: Option<(u32, u64)>,
    /// Segments acknowledged so far.
    delivered: u64,
    /// The interval being measured: its start (ms) and `delivered` then.
    interval: Option<(u64, u64)>,
    /// Rate samples (when, segments per second), decreasing: the front is the maximum.
    rates: VecDeque<(u64, u64)>,
    /// Re-measuring the minimum RTT until this time, and the least RTT seen so far in it.
    probe: Option<(u64, u32)>,
    /// Startup is over: the path was seen full (see the module docs).
    filled: bool,
    /// The rate startup last grew to, and intervals since it grew by 25%.
    full_rate: u64,
    stalled_rounds: u32,
    /// The sender ran out of data during the current interval.
    app_limited: bool,
    /// When `on_tick` last ran (ms): an idle session does not tick.
    last_tick: u64,
}

impl RateCap {
    /// The sender had room to send and nothing to send.
    pub(super) fn on_app_limited(&mut self) {
        self.app_limited = true;
    }

    /// Counts segments the peer acknowledged.
    pub(super) fn on_delivered(&mut self, segments: u64) {
        self.delivered += segments;
    }

    /// Takes one RTT sample (ms) at `now` (ms).
    pub(super) fn on_rtt(&mut self, rtt: u32, now: u64) {
        let rtt = rtt.max(1);
        if let Some((_, least)) = &mut self.probe {
            *least = (*least).min(rtt);
        }
        match self.min_rtt {
            Some((m, _)) if m <= rtt => {}
            _ => self.min_rtt = Some((rtt, now)),
        }
    }

    /// Closes the measuring interval if it is long enough, and starts or ends a drain; call
    /// after processing ACKs and on timer ticks. `srtt` is the smoothed RTT (ms).
    pub(super) fn on_tick(&mut self, now: u64, srtt: u32) {
        let gap = now.saturating_sub(std::mem::replace(&mut self.last_tick, now));
        match self.interval {
            None => self.interval = Some((now, self.delivered)),
            Some((start, at_start)) => {
                let length = now.saturating_sub(start);
                if length >= MIN_INTERVAL_MS.max(u64::from(srtt)) {
                    let rate = (self.delivered - at_start) * 1000 / length;
                    let max = self.rates.front().map_or(0, |&(_, r)| r);
                    if !std::mem::take(&mut self.app_limited) || rate > max {
                        self.add_sample(now, rate);
                    }
                    self.interval = Some((now, self.delivered));
                }
                while self
                    .rates
                    .front()
                    .is_some_and(|&(t, _)| t + WINDOW_MS < now)
                {
                    self.rates.pop_front();
                }
                if self.rates.is_empty() && self.filled {
                    // Nothing measured for a whole window: start over.
                    self.filled = false;
                    self.full_rate = 0;
                    self.stalled_rounds = 0;
                }
            }
        }
        match (self.probe, self.min_rtt) {
            (Some((until, least)), old) if now >= until => {
                self.probe = None;
                // No sample during the drain (an idle session): keep the old minimum.
                let m = if least == u32::MAX {
                    old.map_or(least, |(m, _)| m)
                } else {
                    least
                };
                self.min_rtt = (m != u32::MAX).then_some((m, now));
            }
            (None, Some((m, at))) if self.filled && now >= at + WINDOW_MS => {
                let drain = PROBE_MS.max(u64::from(m));
                if gap >= drain {
                    // The session was idle for at least a drain: the queue is gone already,
                    // so do not throttle the burst that ends the silence.
                    self.min_rtt = Some((m, now));
                } else {
                    self.probe = Some((now + drain, u32::MAX));
                }
            }
            _ => {}
        }
    }

    fn add_sample(&mut self, now: u64, rate: u64) {
        while self.rates.back().is_some_and(|&(_, r)| r <= rate) {
            self.rates.pop_back();
        }
        self.rates.push_back((now, rate));
        if !self.filled {
            if rate >= self.full_rate + self.full_rate / 4 {
                self.full_rate = rate;
                self.stalled_rounds = 0;
            } else {
                self.stalled_rounds += 1;
                self.filled = self.stalled_rounds >= STARTUP_ROUNDS;
            }
        }
    }

    /// The most segments that may be in flight now; `None` until a rate and an RTT have
    /// been measured.
    pub(super) fn cap(&self) -> Option<u64> {
        if self.probe.is_some() {
            return Some(FLOOR);
        }
        let gain = if self.filled {
            GAIN_X4
        } else {
            STARTUP_GAIN_X4
        };
        let (&(_, rate), (rtt, _)) = (self.rates.front()?, self.min_rtt?);
        Some((gain * rate * u64::from(rtt)).div_ceil(4000).max(FLOOR))
    }

    /// The current estimates, for stats: (max rate in segments/s, min RTT in ms).
    pub(super) fn estimates(&self) -> (u64, u32) {
        (
            self.rates.front().map_or(0, |&(_, r)| r),
            self.min_rtt.map_or(0, |(m, _)| m),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `rate` segments per second for one interval of `rtt` ms ending at `now`.
    fn interval(r: &mut RateCap, now: &mut u64, rtt: u32, rate: u64) {
        r.on_rtt(rtt, *now);
        r.on_delivered(rate * u64::from(rtt) / 1000);
        *now += u64::from(rtt);
        r.on_tick(*now, rtt);
    }

    #[test]
    fn startup_then_full_path_gains() {
        let mut r = RateCap::default();
        assert_eq!(r.cap(), None, "nothing measured yet");
        let mut now = 0;
        r.on_tick(now, 100);
        // 10,000 segments/s at 100 ms: BDP 1000 segments.
        interval(&mut r, &mut now, 100, 10_000);
        assert_eq!(r.cap(), Some(3000), "startup: 3 × BDP");
        for _ in 0..STARTUP_ROUNDS {
            interval(&mut r, &mut now, 100, 10_000);
        }
        assert_eq!(r.cap(), Some(1250), "full: 1.25 × BDP");
        assert_eq!(r.estimates(), (10_000, 100));
    }

    #[test]
    fn growth_keeps_startup_going_and_the_floor_holds() {
        let mut r = RateCap::default();
        let mut now = 0;
        r.on_tick(now, 10);
        let mut rate = 100;
        for _ in 0..10 {
            interval(&mut r, &mut now, 10, rate);
            rate *= 2;
        }
        assert!(!r.filled, "doubling every interval is still startup");
        let mut slow = RateCap::default();
        slow.on_tick(0, 10);
        let mut t = 0;
        interval(&mut slow, &mut t, 10, 100);
        assert_eq!(slow.cap(), Some(FLOOR), "3 × 1 segment is under the floor");
    }

    #[test]
    fn application_limited_intervals_do_not_lower_the_maximum() {
        let mut r = RateCap::default();
        let mut now = 0;
        r.on_tick(now, 50);
        for _ in 0..=STARTUP_ROUNDS {
            interval(&mut r, &mut now, 50, 20_000);
        }
        let full = r.cap();
        for _ in 0..20 {
            r.on_app_limited();
            interval(&mut r, &mut now, 50, 10);
        }
        assert_eq!(r.cap(), full, "a quiet second keeps the path's figures");
    }

    #[test]
    fn min_rtt_is_remeasured_with_a_drain_every_window() {
        let mut r = RateCap::default();
        let mut now = 0;
        r.on_tick(now, 20);
        for _ in 0..=STARTUP_ROUNDS {
            interval(&mut r, &mut now, 20, 50_000);
        }
        assert!(r.filled);
        // The path got longer: 40 ms samples never lower the 20 ms minimum...
        while now < WINDOW_MS + 20 {
            interval(&mut r, &mut now, 40, 50_000);
        }
        // ...until the drain: the cap falls to the floor, then the minimum is 40 ms.
        assert_eq!(r.cap(), Some(FLOOR));
        while r.probe.is_some() {
            interval(&mut r, &mut now, 40, 1_000);
        }
        assert_eq!(r.estimates().1, 40);
        assert_eq!(r.cap(), Some(5 * 50_000 * 40 / 4000));
    }

    #[test]
    fn an_idle_gap_counts_as_the_drain() {
        let mut r = RateCap::default();
        let mut now = 0;
        r.on_tick(now, 20);
        while now < 6_000 {
            interval(&mut r, &mut now, 20, 50_000);
        }
        assert!(r.filled);
        let full = r.cap();
        // An idle session does not tick: the next tick comes after 5 s of silence, past the
        // time to re-measure (the queue drained long ago).
        now += 5_000;
        r.on_tick(now, 20);
        assert!(r.probe.is_none(), "a drain at the start of the next burst");
        assert_eq!(r.cap(), full);
        // Busy again: the next re-measuring is a window later.
        let resumed = now;
        while now < resumed + WINDOW_MS - 100 {
            interval(&mut r, &mut now, 20, 50_000);
            assert!(r.probe.is_none());
        }
        while now < resumed + WINDOW_MS + 100 {
            interval(&mut r, &mut now, 20, 50_000);
        }
        assert_eq!(r.cap(), Some(FLOOR), "the drain a window after the gap");
    }
}
