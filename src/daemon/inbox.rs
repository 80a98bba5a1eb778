//! [`Inbox`]: what a packet worker has received for one stream and its task has not taken
//! yet — bytes, then FIN, or a reset — in one buffer shared by the two.
//!
//! It replaces a per-stream channel of messages, which held peer data in one allocation per
//! DATA frame (a peer sending 1-byte frames paid 9 bytes on the wire for ~60 bytes of
//! memory) and kept it until the task read it, even when the stream had been reset while
//! its task was still dialing. Here:
//!
//! - the bytes are bounded by the mux's flow control (the stream window, and the session's
//!   receive bound over all streams), and small pieces are packed into the last buffer, so
//!   memory stays within about twice the bytes held;
//! - a reset drops the bytes at once and wakes the task, whatever it is doing;
//! - the worker only locks it to append, so the packet path never waits on a task.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Pieces smaller than this are packed into the previous buffer.
const PACK: usize = 64 * 1024;

/// What the task takes out next.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamMsg {
    /// Stream bytes, in order.
    Data(Vec<u8>),
    /// The peer will send no more (after every byte before it).
    Fin,
    /// The stream or its session is gone; bytes not yet taken are dropped.
    Reset,
}

#[derive(Debug, Default)]
struct State {
    data: VecDeque<Vec<u8>>,
    bytes: usize,
    fin: bool,
    reset: bool,
}

/// A stream's received bytes and end, shared by its worker (writer) and task (reader).
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<State>,
    /// Wakes `recv`: something arrived.
    ready: Notify,
    /// Wakes `wait_reset`.
    gone: Notify,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a copy of received bytes (ignored after a FIN or reset).
    pub fn push(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        {
            let mut s = self.lock();
            if s.fin || s.reset {
                return;
            }
            s.bytes += data.len();
            match s.data.back_mut() {
                Some(last) if last.len() + data.len() <= PACK => last.extend_from_slice(data),
                _ => s.data.push_back(data.to_vec()),
            }
        }
        self.ready.notify_one();
    }

    /// The peer finished: the task gets FIN after the bytes already pushed.
    pub fn finish(&self) {
        self.lock().fin = true;
        self.ready.notify_one();
    }

    /// The stream is gone: drops the bytes not taken; the task gets `Reset` next.
    pub fn reset(&self) {
        {
            let mut s = self.lock();
            s.reset = true;
            s.data.clear();
            s.bytes = 0;
        }
        self.ready.notify_one();
        self.gone.notify_one();
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// True once reset.
    pub fn is_reset(&self) -> bool {
        self.lock().reset
    }

    /// Takes the next message without waiting.
    pub fn try_recv(&self) -> Option<StreamMsg> {
        let mut s = self.lock();
        if s.reset {
            return Some(StreamMsg::Reset);
        }
        if let Some(d) = s.data.pop_front() {
            s.bytes -= d.len();
            return Some(StreamMsg::Data(d));
        }
        s.fin.then_some(StreamMsg::Fin)
    }

    /// Waits for the next message. One task reads an inbox.
    pub async fn recv(&self) -> StreamMsg {
        loop {
            if let Some(m) = self.try_recv() {
                return m;
            }
            self.ready.notified().await;
        }
    }

    /// Resolves once the inbox is reset (for a task busy elsewhere, e.g. writing).
    pub async fn wait_reset(&self) {
        while !self.is_reset() {
            self.gone.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Inbox, StreamMsg};

    #[test]
    fn bytes_then_fin_in_order_small_pieces_packed() {
        let inbox = Inbox::default();
        for _ in 0..1000 {
            inbox.push(&[1]);
        }
        inbox.push(&[2; 10]);
        inbox.finish();
        inbox.push(&[3]); // after FIN: ignored
        assert_eq!(inbox.bytes(), 1010);
        let Some(StreamMsg::Data(d)) = inbox.try_recv() else {
            panic!("data first");
        };
        assert_eq!(d.len(), 1010, "1-byte pieces share one buffer");
        assert_eq!(inbox.try_recv(), Some(StreamMsg::Fin));
        assert_eq!(inbox.try_recv(), Some(StreamMsg::Fin));
    }

    #[test]
    fn reset_drops_the_bytes_and_wins_over_fin() {
        let inbox = Inbox::default();
        inbox.push(&[1; 100_000]);
        inbox.finish();
        inbox.reset();
        assert_eq!(inbox.bytes(), 0);
        assert_eq!(inbox.try_recv(), Some(StreamMsg::Reset));
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_for_data_and_for_reset() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let reader = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.recv().await })
        };
        tokio::task::yield_now().await;
        inbox.push(b"x");
        assert_eq!(reader.await.unwrap(), StreamMsg::Data(b"x".to_vec()));
        let waiter = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.wait_reset().await })
        };
        tokio::task::yield_now().await;
        inbox.reset();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken by the reset")
            .unwrap();
    }
}
