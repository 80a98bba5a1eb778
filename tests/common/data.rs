//! Test data: a seeded byte stream (splitmix64), SHA-256 hex digests, keys, and helpers that
//! push or pull an exact number of bytes over a `TcpStream` while hashing.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Deterministic byte generator (splitmix64), so each test's data is reproducible.
pub struct Prng(u64);

impl Prng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh 32-byte key as 64 hex characters (from /dev/urandom).
pub fn random_key_hex() -> String {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("/dev/urandom is readable");
    hex(&key)
}

/// Socket timeouts for data tests: a stall this long fails the test instead of hanging it.
pub const STALL: Duration = Duration::from_secs(60);

/// Writes `len` bytes of `Prng::new(seed)` to `stream`; returns the SHA-256 hex of them.
pub fn send_seeded(stream: &mut TcpStream, seed: u64, len: u64) -> std::io::Result<String> {
    stream.set_write_timeout(Some(STALL))?;
    let mut prng = Prng::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        prng.fill(&mut buf[..n]);
        stream.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    stream.flush()?;
    Ok(hex(&hasher.finalize()))
}

/// Reads exactly `len` bytes from `stream`; returns their SHA-256 hex.
pub fn receive_hashed(stream: &mut TcpStream, len: u64) -> std::io::Result<String> {
    stream.set_read_timeout(Some(STALL))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("stream closed after {} of {len} bytes", len - left),
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 hex of `len` bytes of `Prng::new(seed)` (what the sender's hash must be).
pub fn expected_hash(seed: u64, len: u64) -> String {
    let mut prng = Prng::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        prng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    hex(&hasher.finalize())
}
