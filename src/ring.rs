//! [`ByteRing`]: a growable FIFO of bytes, the send buffer of a KCP session and of each mux
//! stream.
//!
//! - KCP: one ring holds the segments in flight and the bytes queued behind them. Segments
//!   are cut from it in order and released from its front as the peer's `una` passes them,
//!   so a segment is just a range of the ring: no buffer per segment, and once the ring has
//!   grown to the session's peak (at most `2 × sndwnd` full segments, the bound of
//!   `KcpSession::send_capacity`) sending allocates nothing.
//! - mux: a stream's bytes not yet framed. A ring costs its peak backlog rounded up to a
//!   power of two; the `BytesMut` it replaced grew to two to four times the backlog, because
//!   bytes released from its front are only reclaimed once they outnumber the bytes held
//!   (measured: ~2 MB per busy stream on a 50 ms link, see docs/BENCHMARKS.md).
//!
//! A ring keeps its capacity until it is dropped or [`ByteRing::release`] is called.

/// A growable ring of bytes (FIFO): append at the back, read anywhere, release at the front.
#[derive(Debug, Default)]
pub(crate) struct ByteRing {
    buf: Vec<u8>,
    head: usize,
    len: usize,
}

/// Smallest capacity allocated.
const MIN_CAPACITY: usize = 256;

impl ByteRing {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees the buffer if no byte is held and it is larger than `keep` bytes, so a buffer
    /// that grew for a burst does not stay at its peak while idle, and a small one is kept
    /// (no allocation per write for a stream that drains at every pass).
    pub fn release_above(&mut self, keep: usize) {
        if self.len == 0 && self.buf.len() > keep {
            self.buf = Vec::new();
            self.head = 0;
        }
    }

    /// The first `n` bytes (fewer if fewer are held), as up to two slices in order.
    pub fn front(&self, n: usize) -> (&[u8], &[u8]) {
        let n = n.min(self.len);
        if n == 0 {
            return (&[], &[]);
        }
        let cap = self.buf.len();
        let first = n.min(cap - self.head);
        (
            &self.buf[self.head..self.head + first],
            &self.buf[..n - first],
        )
    }

    /// Bytes the ring can hold before it grows.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Appends `data`, growing the ring (to a power of two) if it does not fit.
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.len + data.len() > self.buf.len() {
            self.grow(self.len + data.len());
        }
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap;
        let (first, second) = data.split_at(data.len().min(cap - tail));
        self.buf[tail..tail + first.len()].copy_from_slice(first);
        self.buf[..second.len()].copy_from_slice(second);
        self.len += data.len();
    }

    fn grow(&mut self, need: usize) {
        let mut buf = vec![0u8; need.next_power_of_two().max(MIN_CAPACITY)];
        let len = self.len;
        self.copy_out(0, &mut buf[..len]);
        self.buf = buf;
        self.head = 0;
    }

    /// Drops the first `n` bytes (all of them if `n` exceeds the length).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.buf.len()
        };
    }

    /// Copies the bytes at `from..from + out.len()` into `out`; false (and nothing copied)
    /// if that range is not held.
    pub fn copy_out(&self, from: usize, out: &mut [u8]) -> bool {
        if from.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        if out.is_empty() {
            return true;
        }
        let cap = self.buf.len();
        let start = (self.head + from) % cap;
        let first = out.len().min(cap - start);
        let (a, b) = out.split_at_mut(first);
        a.copy_from_slice(&self.buf[start..start + first]);
        b.copy_from_slice(&self.buf[..b.len()]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_grows_and_reads_back_in_order() {
        let mut r = ByteRing::default();
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        r.push(&data[..3000]);
        assert_eq!(r.capacity(), 4096);
        r.consume(2500);
        // Wraps around the end without growing.
        r.push(&data[3000..6000]);
        assert_eq!((r.len(), r.capacity()), (3500, 4096));
        let mut out = vec![0u8; 3500];
        assert!(r.copy_out(0, &mut out));
        assert_eq!(out, &data[2500..6000]);
        // Grows while wrapped: the order survives.
        r.push(&data[6000..10_000]);
        assert_eq!((r.len(), r.capacity()), (7500, 8192));
        let mut out = vec![0u8; 100];
        assert!(r.copy_out(7400, &mut out));
        assert_eq!(out, &data[9900..10_000]);
        assert!(!r.copy_out(7401, &mut out), "past the end");
        r.consume(usize::MAX);
        assert_eq!(r.len(), 0);
        assert!(r.copy_out(0, &mut []));
    }

    #[test]
    fn front_reads_across_the_wrap_and_release_frees_only_when_empty() {
        let mut r = ByteRing::default();
        let data: Vec<u8> = (0..=255).cycle().take(4096 + 1000).collect();
        r.push(&data[..4000]);
        r.consume(3500);
        r.push(&data[4000..4600]); // 500 + 600 held, wrapped at 4096
        assert_eq!(r.capacity(), 4096);
        let (a, b) = r.front(usize::MAX);
        assert_eq!((a.len(), b.len()), (596, 504));
        assert_eq!([a, b].concat(), &data[3500..4600]);
        let (a, b) = r.front(10);
        assert_eq!((a, b.len()), (&data[3500..3510], 0));
        r.release_above(0);
        assert_eq!(r.capacity(), 4096, "not empty: kept");
        r.consume(1100);
        assert!(r.is_empty());
        assert_eq!(r.front(5), (&[][..], &[][..]));
        r.release_above(4096);
        assert_eq!(r.capacity(), 4096, "not above the limit: kept");
        r.release_above(4095);
        assert_eq!(r.capacity(), 0);
        r.push(&data[..3]);
        assert_eq!(r.front(3).0, &data[..3]);
    }
}
