//! [`ByteRing`]: the send buffer of a KCP session, one ring of bytes for the segments in
//! flight and the bytes queued behind them.
//!
//! Segments are cut from the ring in order and released from its front as the peer's `una`
//! passes them, so a segment is just a range of the ring: no buffer per segment, and after
//! the ring has grown to the session's peak (at most `2 × sndwnd` full segments, the bound
//! of [`super::KcpSession::send_capacity`]) sending allocates nothing. The ring keeps that
//! capacity for the life of the session.

/// A growable ring of bytes (FIFO): append at the back, read anywhere, release at the front.
#[derive(Debug, Default)]
pub(super) struct ByteRing {
    buf: Vec<u8>,
    head: usize,
    len: usize,
}

/// Smallest capacity allocated.
const MIN_CAPACITY: usize = 4096;

impl ByteRing {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
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
}
