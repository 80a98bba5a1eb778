//! Sliding-window anti-replay filter over 64-bit packet counters (RFC 6479 bitmap).
//!
//! The bitmap is a ring of `WORDS` 64-bit words; the word holding the highest accepted
//! counter and the `WORDS - 1` words before it are live, so any counter less than
//! [`REPLAY_WINDOW`] below the highest one can still be checked exactly. Advancing clears
//! whole words, which makes an update O(1) amortised and branch-light.

/// Number of 64-bit words in the ring.
const WORDS: usize = 64;
/// Counters this far or further below the highest accepted one are rejected as too old.
pub const REPLAY_WINDOW: u64 = ((WORDS - 1) * 64) as u64;

/// Which counters have been accepted recently.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest accepted counter, `None` before the first.
    top: Option<u64>,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish()
    }
}

fn slot(counter: u64) -> (usize, u64) {
    // `% WORDS` keeps the index in range whatever the counter.
    (
        ((counter / 64) % WORDS as u64) as usize,
        1u64 << (counter % 64),
    )
}

impl ReplayWindow {
    /// An empty window: every counter is new.
    pub fn new() -> Self {
        ReplayWindow {
            top: None,
            bits: [0; WORDS],
        }
    }

    /// Highest counter accepted so far.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `counter` would be accepted (not seen, not too old). Does not record it.
    pub fn check(&self, counter: u64) -> bool {
        let Some(top) = self.top else { return true };
        if counter > top {
            return true;
        }
        if top - counter >= REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = slot(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter` if it is acceptable; returns whether it was. Call only after the
    /// packet carrying it has been authenticated.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.top {
            None => {
                self.bits = [0; WORDS];
                self.top = Some(counter);
            }
            Some(top) if counter > top => {
                let advance = counter / 64 - top / 64;
                if advance >= WORDS as u64 {
                    self.bits = [0; WORDS];
                } else {
                    for i in 1..=advance {
                        self.bits[((top / 64 + i) % WORDS as u64) as usize] = 0;
                    }
                }
                self.top = Some(counter);
            }
            Some(_) => {}
        }
        let (word, bit) = slot(counter);
        self.bits[word] |= bit;
        true
    }
}
