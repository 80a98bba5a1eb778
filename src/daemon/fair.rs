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
//! round like one session, however many flows it forges. A lane holds at most `lane_cap`
//! items (a frame beyond is dropped); when all lanes together hold `cap`, a new frame
//! pushes out the oldest frame of the longest lane (as SFQ and fq_codel do), so the flow
//! that sends the most is the one that loses packets (its reliability layer resends them)
//! and a light flow always gets in. Commands other than datagrams are never dropped:
//! stream credit bounds their bytes, and the worker stops draining its channel when the
//! lanes hold twice `cap`, so the channel's bound holds the tasks back.
//!
//! Lanes are keyed by addresses that are not authenticated: frames forged with an
//! established session's address and port land in that session's lane and compete with
//! its own (they fail authentication later, counted as before).
//!
//! A turn is one item whatever its size: a stream's 32 KiB data command counts as much as
//! a 60-byte acknowledgement (byte-fair deficit round-robin would weigh them; not done).

use std::collections::{HashMap, VecDeque};

/// Emptied lanes kept for reuse, and the capacity each keeps.
const SPARE_LANES: usize = 64;
const SPARE_CAPACITY: usize = 16;

struct Lane<T> {
    items: VecDeque<(T, bool)>,
    /// Items pushed as `must` still in the lane: a lane with any is never evicted from.
    musts: usize,
}

/// Per-flow lanes served round-robin, with a bound per lane and in all.
pub struct FairQueue<T> {
    lanes: HashMap<u64, Lane<T>>,
    /// Lanes with items, in the order they are served.
    turn: VecDeque<u64>,
    /// Emptied lanes kept for reuse, so a steady state allocates nothing.
    spare: Vec<VecDeque<(T, bool)>>,
    len: usize,
    cap: usize,
    lane_cap: usize,
}

/// What became of a pushed item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// Queued.
    Queued,
    /// Queued, and the oldest item of the longest lane was dropped to make room.
    Evicted(T),
    /// Refused: its lane holds `lane_cap` items, or all lanes hold `cap` and no other
    /// lane is longer than its own.
    Refused(T),
}

impl<T> FairQueue<T> {
    /// At most `cap` droppable items in all and `lane_cap` in one lane (both at least 1).
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

    /// Whether the caller should stop draining its channel: the lanes hold twice `cap`
    /// (frames never exceed `cap`; the rest are commands).
    pub fn is_saturated(&self) -> bool {
        self.len >= 2 * self.cap
    }

    /// Appends `item` to `lane`. A droppable item is refused when its lane is full; when
    /// the queue is full it takes the place of the oldest item of the longest lane that
    /// holds only droppable items, or is refused if that lane is its own. `must` items
    /// (commands) are always taken: the caller bounds them with [`FairQueue::is_saturated`].
    pub fn push(&mut self, lane: u64, item: T, must: bool) -> Pushed<T> {
        let own = self.lanes.get(&lane).map_or(0, |l| l.items.len());
        if !must && own >= self.lane_cap {
            return Pushed::Refused(item);
        }
        let mut evicted = None;
        if !must && self.len >= self.cap {
            match self.longest_droppable() {
                Some((victim, n)) if victim != lane && n > own => {
                    evicted = self.evict(victim);
                }
                _ => return Pushed::Refused(item),
            }
        }
        let l = match self.lanes.get_mut(&lane) {
            Some(l) => l,
            None => {
                let items = self.spare.pop().unwrap_or_default();
                self.turn.push_back(lane);
                self.lanes.entry(lane).or_insert(Lane { items, musts: 0 })
            }
        };
        l.items.push_back((item, must));
        l.musts += usize::from(must);
        self.len += 1;
        match evicted {
            Some(e) => Pushed::Evicted(e),
            None => Pushed::Queued,
        }
    }

    /// The next item: the oldest of the lane whose turn it is; that lane then goes to the
    /// back of the line.
    pub fn pop(&mut self) -> Option<T> {
        let lane = self.turn.pop_front()?;
        let l = self.lanes.get_mut(&lane)?;
        let (item, must) = l.items.pop_front()?;
        l.musts -= usize::from(must);
        self.len -= 1;
        if l.items.is_empty() {
            self.release(lane);
        } else {
            self.turn.push_back(lane);
        }
        Some(item)
    }

    /// The longest lane without `must` items, and its length.
    fn longest_droppable(&self) -> Option<(u64, usize)> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.musts == 0)
            .map(|(&k, l)| (k, l.items.len()))
            .max_by_key(|&(_, n)| n)
    }

    /// Drops the oldest item of `lane` (which holds no `must` items).
    fn evict(&mut self, lane: u64) -> Option<T> {
        let l = self.lanes.get_mut(&lane)?;
        let (item, _) = l.items.pop_front()?;
        self.len -= 1;
        if l.items.is_empty() {
            self.turn.retain(|&k| k != lane);
            self.release(lane);
        }
        Some(item)
    }

    /// Forgets the emptied `lane` (already out of `turn`), keeping its memory for reuse.
    fn release(&mut self, lane: u64) {
        if let Some(l) = self.lanes.remove(&lane) {
            if self.spare.len() < SPARE_LANES {
                let mut items = l.items;
                // A lane a burst made large gives its memory back.
                items.shrink_to(SPARE_CAPACITY);
                self.spare.push(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued<T: std::fmt::Debug>(p: Pushed<T>) {
        assert!(matches!(p, Pushed::Queued), "{p:?}");
    }

    #[test]
    fn a_thin_lane_is_served_within_one_turn_of_a_fat_one() {
        let mut q = FairQueue::new(10_000, 5_000);
        for i in 0..4000 {
            queued(q.push(1, (1, i), false));
        }
        queued(q.push(2, (2, 0), false));
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
            queued(q.push(7, (7, i), false));
            queued(q.push(9, (9, i), true));
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, [(7, 0), (9, 0), (7, 1), (9, 1), (7, 2), (9, 2)]);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_full_lane_refuses() {
        let mut q = FairQueue::new(100, 3);
        for i in 0..3 {
            queued(q.push(1, i, false));
        }
        assert_eq!(q.push(1, 3, false), Pushed::Refused(3));
        queued(q.push(2, 10, false));
        // A command is taken even so.
        queued(q.push(1, 4, true));
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn when_full_the_longest_lane_loses_its_oldest_and_a_light_flow_gets_in() {
        let mut q = FairQueue::new(8, 5);
        for i in 0..5 {
            queued(q.push(1, 10 + i, false));
        }
        for i in 0..3 {
            queued(q.push(2, 20 + i, false));
        }
        // Full: a new flow gets in at the longest lane's expense.
        assert_eq!(q.push(3, 30, false), Pushed::Evicted(10));
        // So does a shorter lane (3 < 4).
        assert_eq!(q.push(2, 23, false), Pushed::Evicted(11));
        // The longest lane cannot push itself out; a shorter one pushes it out.
        assert_eq!(q.push(2, 24, false), Pushed::Refused(24));
        assert_eq!(q.push(1, 15, false), Pushed::Evicted(20));
        assert_eq!(q.len(), 8);
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, [12, 21, 30, 13, 22, 14, 23, 15]);
    }

    #[test]
    fn lanes_with_commands_are_never_evicted_from() {
        let mut q = FairQueue::new(4, 4);
        queued(q.push(1, 1, true));
        queued(q.push(1, 2, false)); // a datagram behind a command
        queued(q.push(1, 3, false));
        queued(q.push(2, 20, false));
        assert!(!q.is_saturated());
        // Lane 1 is the longest, but holds a command: lane 2 loses.
        assert_eq!(q.push(3, 30, false), Pushed::Evicted(20));
        // Now the longest droppable lane is the pusher's own.
        assert_eq!(q.push(3, 31, false), Pushed::Refused(31));
        queued(q.push(4, 40, true));
        assert_eq!(q.len(), 5);
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, [1, 30, 40, 2, 3]);
    }

    #[test]
    fn an_evicted_lane_that_empties_leaves_the_turn() {
        let mut q = FairQueue::new(1, 2);
        queued(q.push(1, 10, false));
        assert_eq!(q.push(2, 20, false), Pushed::Evicted(10));
        assert_eq!(q.lanes.len(), 1);
        assert_eq!(q.turn.len(), 1);
        assert_eq!(q.pop(), Some(20));
        assert!(q.is_empty() && q.lanes.is_empty() && q.turn.is_empty());
    }

    #[test]
    fn commands_saturate_at_twice_the_cap() {
        let mut q = FairQueue::new(2, 2);
        for i in 0..3 {
            queued(q.push(1, i, true));
            assert!(!q.is_saturated());
        }
        queued(q.push(1, 3, true));
        assert!(q.is_saturated());
    }

    #[test]
    fn emptied_lanes_are_reused_and_give_memory_back() {
        let mut q = FairQueue::new(10_000, 5_000);
        for round in 0..10u64 {
            queued(q.push(round, round, false));
            assert_eq!(q.pop(), Some(round));
        }
        assert!(q.lanes.is_empty() && q.turn.is_empty());
        assert_eq!(q.spare.len(), 1);
        for i in 0..4096 {
            queued(q.push(1, i, false));
        }
        while q.pop().is_some() {}
        assert!(q.spare.iter().all(|l| l.capacity() < 4096));
    }
}
