//! A worker's input, shared fairly between flows.
//!
//! Frames reach a worker from the capture thread and commands from the stream tasks, all
//! through one bounded channel. Handled in arrival order, that channel is a FIFO in which
//! a client pushing bulk as fast as it can puts thousands of frames ahead of every other
//! client's next packet: measured in `tests/limits.rs`, a worker whose queue held 5,848
//! frames made another client's echo round trip 100-235 ms late across a 100 ms path.
//!
//! So the worker drains the channel into lanes and serves them round-robin, one item per
//! lane per turn (packet fairness). Each established session has a lane for its frames
//! and one for its streams' commands; every other frame (handshakes, probes, strangers on
//! any number of source ports) shares one lane, so a stranger's flood gets one turn per
//! round like one session, however many flows it forges. Each lane holds at most
//! `lane_cap` items and all lanes together `cap`: a frame beyond either is dropped (the
//! caller counts it), so the flow that sends the most is the one that loses packets, and
//! its reliability layer retransmits them. Commands other than datagrams are never
//! dropped: stream credit bounds their bytes, and the worker stops draining the channel
//! when the lanes are full, so the channel's bound holds the tasks back.
//!
//! A turn is one item whatever its size: a stream's 32 KiB data command counts as much as
//! a 60-byte acknowledgement (byte-fair deficit round-robin would weigh them; not done).

use std::collections::{HashMap, VecDeque};

/// Emptied lanes kept for reuse, and the capacity each keeps.
const SPARE_LANES: usize = 64;
const SPARE_CAPACITY: usize = 16;

/// Per-flow lanes served round-robin, with a bound per lane and in all.
pub struct FairQueue<T> {
    lanes: HashMap<u64, VecDeque<T>>,
    /// Lanes with items, in the order they are served.
    turn: VecDeque<u64>,
    /// Emptied lanes kept for reuse, so a steady state allocates nothing.
    spare: Vec<VecDeque<T>>,
    len: usize,
    cap: usize,
    lane_cap: usize,
}

/// Why [`FairQueue::push`] refused an item.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The item's lane holds `lane_cap` items.
    LaneFull,
    /// All lanes together hold `cap` items.
    Full,
}

impl<T> FairQueue<T> {
    /// At most `cap` items in all and `lane_cap` in one lane (both at least 1).
    pub fn new(cap: usize, lane_cap: usize) -> FairQueue<T> {
        FairQueue {
            lanes: HashMap::new(),
            turn: VecDeque::new(),
            spare: Vec::new(),
            len: 0,
            cap: cap.max(1),
            lane_cap: lane_cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the queue holds `cap` items (the caller stops draining its channel).
    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    /// Appends `item` to `lane`, unless that lane or the queue is full. `must` items
    /// (commands) are taken whatever the bounds: the caller bounds them by not draining
    /// its channel while [`FairQueue::is_full`].
    pub fn push(&mut self, lane: u64, item: T, must: bool) -> Result<(), (Refused, T)> {
        if !must && self.len >= self.cap {
            return Err((Refused::Full, item));
        }
        let q = match self.lanes.get_mut(&lane) {
            Some(q) => q,
            None => {
                let q = self.spare.pop().unwrap_or_default();
                self.turn.push_back(lane);
                self.lanes.entry(lane).or_insert(q)
            }
        };
        if !must && q.len() >= self.lane_cap {
            return Err((Refused::LaneFull, item));
        }
        q.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item: the oldest of the lane whose turn it is; that lane then goes to the
    /// back of the line.
    pub fn pop(&mut self) -> Option<T> {
        let lane = self.turn.pop_front()?;
        let q = self.lanes.get_mut(&lane)?;
        let item = q.pop_front();
        if q.is_empty() {
            if let Some(mut q) = self.lanes.remove(&lane) {
                if self.spare.len() < SPARE_LANES {
                    // A lane a burst made large gives its memory back.
                    q.shrink_to(SPARE_CAPACITY);
                    self.spare.push(q);
                }
            }
        } else {
            self.turn.push_back(lane);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thin_lane_is_served_within_one_turn_of_a_fat_one() {
        let mut q = FairQueue::new(10_000, 5_000);
        for i in 0..4000 {
            q.push(1, (1, i), false).unwrap();
        }
        q.push(2, (2, 0), false).unwrap();
        // The thin lane's item comes second, not after the 4,000 of the fat lane.
        assert_eq!(q.pop(), Some((1, 0)));
        assert_eq!(q.pop(), Some((2, 0)));
        assert_eq!(q.pop(), Some((1, 1)));
        assert_eq!(q.len(), 3998);
    }

    #[test]
    fn lanes_alternate_and_keep_their_order() {
        let mut q = FairQueue::new(100, 100);
        for i in 0..3 {
            q.push(7, (7, i), false).unwrap();
            q.push(9, (9, i), false).unwrap();
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, [(7, 0), (9, 0), (7, 1), (9, 1), (7, 2), (9, 2)]);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn the_fat_lane_is_the_one_that_loses() {
        let mut q = FairQueue::new(8, 3);
        for i in 0..3 {
            q.push(1, i, false).unwrap();
        }
        assert_eq!(q.push(1, 3, false), Err((Refused::LaneFull, 3)));
        // Another flow still gets in.
        q.push(2, 10, false).unwrap();
        for i in 0..3 {
            q.push(3, 20 + i, false).unwrap();
        }
        q.push(4, 30, false).unwrap();
        assert!(q.is_full());
        assert_eq!(q.push(5, 40, false), Err((Refused::Full, 40)));
        // A command is taken even so; the caller stops draining.
        q.push(6, 50, true).unwrap();
        assert_eq!(q.len(), 9);
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, [0, 10, 20, 30, 50, 1, 21, 2, 22]);
    }

    #[test]
    fn emptied_lanes_are_reused() {
        let mut q = FairQueue::new(100, 100);
        for round in 0..10u64 {
            q.push(round, round, false).unwrap();
            assert_eq!(q.pop(), Some(round));
        }
        assert!(q.lanes.is_empty() && q.turn.is_empty());
        assert_eq!(q.spare.len(), 1);
    }

    #[test]
    fn a_lane_a_burst_made_large_gives_its_memory_back() {
        let mut q = FairQueue::new(10_000, 5_000);
        for i in 0..4096 {
            q.push(1, i, false).unwrap();
        }
        while q.pop().is_some() {}
        assert!(q.spare.iter().all(|l| l.capacity() < 4096));
    }
}
