//! The in-memory backend for tests: the [`MemNetwork`] link model (sans-IO, virtual time)
//! and [`mem_pair`], a real-time adapter implementing [`PacketRx`]/[`PacketTx`] over it.
//!
//! The adapter has no scheduler thread: the network sits behind a mutex, `send` schedules a
//! frame at `Instant::now()`, and `recv` delivers whatever is due, then waits on a condvar
//! until the next delivery or its read timeout. Frames are Ethernet ([`LinkType::Ethernet`]).

mod link;

pub use link::{LinkModel, LinkStats, MemNetwork};

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{LinkType, PacketRx, PacketTx, RxStats};

/// Default read timeout of a [`MemRx`].
const READ_TIMEOUT: Duration = Duration::from_millis(100);

struct State {
    net: MemNetwork,
    /// Delivered frames not yet read, per port.
    inbox: [VecDeque<Vec<u8>>; 2],
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Test code: a panicking peer thread must not hide the frames from the other side.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receive half of one end of a [`mem_pair`].
pub struct MemRx {
    shared: Arc<Shared>,
    port: usize,
    timeout: Duration,
    stats: RxStats,
}

/// The transmit half of one end of a [`mem_pair`].
pub struct MemTx {
    shared: Arc<Shared>,
    port: usize,
}

/// Two endpoints joined by a simulated link in real time: end A (port 0) sends through
/// `a_to_b`, end B (port 1) through `b_to_a`. Returns `((rx_a, tx_a), (rx_b, tx_b))`;
/// the link type is [`LinkType::Ethernet`].
pub fn mem_pair(a_to_b: LinkModel, b_to_a: LinkModel) -> ((MemRx, MemTx), (MemRx, MemTx)) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            net: MemNetwork::new(a_to_b, b_to_a),
            inbox: [VecDeque::new(), VecDeque::new()],
        }),
        wake: Condvar::new(),
    });
    let end = |port| {
        let rx = MemRx {
            shared: Arc::clone(&shared),
            port,
            timeout: READ_TIMEOUT,
            stats: RxStats::default(),
        };
        let tx = MemTx {
            shared: Arc::clone(&shared),
            port,
        };
        (rx, tx)
    };
    (end(0), end(1))
}

impl MemRx {
    /// The link type of mem frames.
    pub fn link_type(&self) -> LinkType {
        LinkType::Ethernet
    }

    /// Changes how long `recv` waits before returning `Ok(None)` (default 100 ms).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Counters of the whole simulated link.
    pub fn link_stats(&self) -> LinkStats {
        self.shared.lock().net.stats()
    }
}

impl PacketRx for MemRx {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.shared.lock();
        loop {
            let now = Instant::now();
            let mut for_peer = false;
            while let Some((to, frame)) = state.net.poll_deliver(now) {
                for_peer |= to != self.port;
                if let Some(inbox) = state.inbox.get_mut(to) {
                    inbox.push_back(frame);
                }
            }
            if for_peer {
                self.shared.wake.notify_all();
            }
            if let Some(frame) = state.inbox[self.port].pop_front() {
                match buf.get_mut(..frame.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(&frame);
                        self.stats.received += 1;
                        return Ok(Some(frame.len()));
                    }
                    None => {
                        self.stats.oversize += 1;
                        continue;
                    }
                }
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake_at = state
                .net
                .next_delivery()
                .map_or(deadline, |t| t.min(deadline));
            let wait = wake_at.saturating_duration_since(now);
            state = self
                .shared
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn stats(&self) -> RxStats {
        self.stats
    }
}

impl PacketTx for MemTx {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.shared
            .lock()
            .net
            .send(Instant::now(), self.port, frame);
        self.shared.wake.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
