//! Freshness state: which openings and probes a server has already accepted, so a recorded
//! one replayed later gets nothing, and the time rule that makes "later" finite.
//!
//! An opening (SYN proof, msg1) or probe carries its creation time `t` (Unix milliseconds,
//! MAC-protected). The server accepts it only when
//!
//! 1. `|t − now| ≤ skew` (a recording replayed after `skew` is stale: a day later fails), and
//! 2. `t ≥ the server's start time` (after a restart the seen-sets are empty, so anything
//!    recorded before the restart must not be fresh), and
//! 3. its digest is not in the [`SeenSet`] (a replay within `skew` was already seen).
//!
//! This is WireGuard's timestamp rule made to work for many concurrent sessions of one key
//! (a set instead of a single greatest timestamp) and across restarts (rule 2) without
//! writing anything to disk.
//!
//! The [`SeenSet`] keeps two generations of digests and drops the older one every
//! `2 × skew`, so an entry lives between `2 × skew` and `4 × skew` — longer than any time
//! it could still pass rule 1. Digests are keyed SipHash of the proof bytes with a
//! per-process random key, so nobody can aim collisions at it. Its size is capped; when full
//! it refuses new entries (fail closed: a legitimate opening retries, a replay never passes).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;

/// Largest clock difference between client and server that openings tolerate, in ms.
pub const CLOCK_SKEW_MS: u64 = 120_000;

/// Why a time-stamped proof is not fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Outside `now ± skew`.
    OutOfWindow,
    /// Made before this server started.
    BeforeStart,
}

/// Checks rules 1 and 2 of the module docs.
pub fn check_time(t_ms: u64, now_ms: u64, start_ms: u64, skew_ms: u64) -> Result<(), Staleness> {
    if t_ms.abs_diff(now_ms) > skew_ms {
        return Err(Staleness::OutOfWindow);
    }
    if t_ms < start_ms {
        return Err(Staleness::BeforeStart);
    }
    Ok(())
}

/// Rebuilds a full millisecond time from its low 32 bits, taking the value closest to
/// `now_ms` (a 32-bit millisecond clock wraps every 49.7 days).
pub fn widen_ms(low: u32, now_ms: u64) -> u64 {
    let diff = low.wrapping_sub(now_ms as u32) as i32;
    now_ms.wrapping_add_signed(i64::from(diff))
}

/// Digests of accepted proofs, in two rotating generations (see the module docs).
pub struct SeenSet {
    hasher: RandomState,
    /// Rotations so far (callers that keep per-generation quotas compare it).
    generation: u64,
    current: HashSet<u64>,
    previous: HashSet<u64>,
    rotated_at_ms: u64,
    span_ms: u64,
    capacity: usize,
}

/// [`SeenSet::insert`]'s verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: recorded.
    Fresh,
    /// Already recorded: a replay (or a retransmission the caller handles otherwise).
    Replay,
    /// The set is full: refused unrecorded.
    Full,
}

impl SeenSet {
    /// A set for proofs valid `skew_ms` either side of now, holding at most `capacity`
    /// digests per generation.
    pub fn new(skew_ms: u64, capacity: usize, now_ms: u64) -> SeenSet {
        SeenSet {
            hasher: RandomState::new(),
            generation: 0,
            current: HashSet::new(),
            previous: HashSet::new(),
            rotated_at_ms: now_ms,
            span_ms: 2 * skew_ms.max(1),
            capacity,
        }
    }

    fn rotate(&mut self, now_ms: u64) {
        if now_ms >= self.rotated_at_ms + self.span_ms {
            let skipped = now_ms >= self.rotated_at_ms + 2 * self.span_ms;
            self.previous = std::mem::take(&mut self.current);
            if skipped {
                self.previous.clear();
            }
            self.rotated_at_ms = now_ms;
            self.generation += 1;
        }
    }

    /// Rotations so far, as of `now_ms`.
    pub fn generation(&mut self, now_ms: u64) -> u64 {
        self.rotate(now_ms);
        self.generation
    }

    fn digest(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher;
        let mut h = self.hasher.build_hasher();
        for p in parts {
            h.write(p);
        }
        h.finish()
    }

    /// True if these proof bytes were recorded (does not record them).
    pub fn contains(&mut self, parts: &[&[u8]], now_ms: u64) -> bool {
        self.rotate(now_ms);
        let d = self.digest(parts);
        self.current.contains(&d) || self.previous.contains(&d)
    }

    /// Records the proof bytes `parts` unless they are there already.
    pub fn insert(&mut self, parts: &[&[u8]], now_ms: u64) -> Seen {
        self.rotate(now_ms);
        let d = self.digest(parts);
        if self.current.contains(&d) || self.previous.contains(&d) {
            return Seen::Replay;
        }
        if self.current.len() >= self.capacity {
            return Seen::Full;
        }
        self.current.insert(d);
        Seen::Fresh
    }

    /// Digests held (both generations).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_rule() {
        let (now, start, skew) = (1_000_000, 900_000, 120_000);
        assert_eq!(check_time(now, now, start, skew), Ok(()));
        assert_eq!(check_time(now + skew, now, start, skew), Ok(()));
        assert_eq!(
            check_time(now + skew + 1, now, start, skew),
            Err(Staleness::OutOfWindow)
        );
        assert_eq!(
            check_time(now - skew - 1, now, start, skew),
            Err(Staleness::OutOfWindow)
        );
        assert_eq!(
            check_time(start - 1, now, start, skew),
            Err(Staleness::BeforeStart)
        );
        // A day later.
        assert_eq!(
            check_time(now, now + 86_400_000, start, skew),
            Err(Staleness::OutOfWindow)
        );
    }

    #[test]
    fn widen_picks_the_nearest_wrap() {
        let now = 0x1_2345_6789_u64;
        assert_eq!(widen_ms(now as u32, now), now);
        assert_eq!(widen_ms((now - 5000) as u32, now), now - 5000);
        assert_eq!(widen_ms((now + 5000) as u32, now), now + 5000);
        let near_wrap = 0x2_0000_0000_u64 - 10;
        assert_eq!(widen_ms((near_wrap + 20) as u32, near_wrap), near_wrap + 20);
        assert_eq!(widen_ms(3, 0x2_0000_0001), 0x2_0000_0003);
    }

    #[test]
    fn seen_set_remembers_until_stale_and_is_bounded() {
        let skew = 1000;
        let mut s = SeenSet::new(skew, 3, 0);
        assert_eq!(s.insert(&[b"a"], 0), Seen::Fresh);
        assert_eq!(s.insert(&[b"a"], 10), Seen::Replay);
        assert!(s.contains(&[b"a"], 10));
        assert_eq!(s.insert(&[b"b"], 10), Seen::Fresh);
        assert_eq!(s.insert(&[b"c"], 10), Seen::Fresh);
        assert_eq!(s.insert(&[b"d"], 10), Seen::Full);
        // One rotation later "a" is still remembered (it could still be within the window).
        assert_eq!(s.insert(&[b"a"], 2 * skew), Seen::Replay);
        assert_eq!(s.insert(&[b"d"], 2 * skew), Seen::Fresh);
        // Two rotations later it is gone, by which time the time rule rejects it anyway.
        assert!(!s.contains(&[b"a"], 4 * skew));
        assert_eq!(s.len(), 1);
        // A long pause drops both generations.
        assert!(!s.contains(&[b"d"], 100 * skew));
        assert!(s.is_empty());
    }
}
