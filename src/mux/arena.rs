//! [`Arena`]: received bytes handed out as [`Bytes`] without an allocation per piece.
//!
//! Pieces are copied into one block and split off it; [`Bytes`] keeps the block alive while
//! any piece of it is held. When the block is full and every piece of it has been dropped,
//! the block is reused in place (`BytesMut::reserve` reclaims a buffer it alone holds), so a
//! reader that drops what it is given before the next block fills makes the arena allocate
//! nothing. A reader that keeps pieces makes it start a new block instead: one allocation
//! per [`BLOCK`] bytes, and a held piece keeps its whole block in memory.

use bytes::{Bytes, BytesMut};

/// Size of a block: large enough for the largest mux frame payload (64 KiB - 1).
pub const BLOCK: usize = 64 * 1024;

/// A source of [`Bytes`] for received data. See the module docs.
#[derive(Debug, Default)]
pub struct Arena {
    block: BytesMut,
}

impl Arena {
    /// A copy of `data` as [`Bytes`].
    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.block.capacity() < data.len() {
            self.block.reserve(data.len().max(BLOCK));
        }
        self.block.extend_from_slice(data);
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_reused_once_its_pieces_are_dropped() {
        let mut a = Arena::default();
        let first = a.copy(b"hello");
        let base = first.as_ptr();
        assert_eq!(first, &b"hello"[..]);
        drop(first);
        // Fill the block, dropping each piece: the next piece starts the same block again.
        let mut left = BLOCK - 5;
        while left > 0 {
            let n = left.min(1000);
            assert_eq!(a.copy(&vec![7; n]).len(), n);
            left -= n;
        }
        let again = a.copy(b"x");
        assert_eq!(again.as_ptr(), base, "the block was reclaimed");
        // A piece still held forces a new block.
        let held = again;
        let mut left = BLOCK - 1;
        while left > 0 {
            let n = left.min(1000);
            a.copy(&vec![7; n]);
            left -= n;
        }
        let other = a.copy(b"y");
        assert_ne!(other.as_ptr(), held.as_ptr());
        assert_eq!((&held[..], &other[..]), (&b"x"[..], &b"y"[..]));
    }
}
