//! The Internet checksum (RFC 1071) and the TCP pseudo-headers it covers
//! (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
//!
//! The checksum is the 16-bit one's-complement of the one's-complement sum of the data taken
//! as big-endian 16-bit words (an odd last byte is padded with a zero byte). Because the sum
//! is associative and commutative (RFC 1071 §2), it is accumulated here eight bytes at a time
//! into a wide integer and folded to 16 bits once at the end.
//!
//! Partial sums are plain `u64` values: [`sum`] a byte range, [`add`] partial sums, and
//! [`fold`] the result. A region is valid when the sum over it, checksum field included,
//! folds to `0xffff`; see [`is_valid`].

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds two partial sums with end-around carry (one's-complement addition on 64 bits).
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // When the add overflowed, `s <= u64::MAX - 1`, so adding the carry cannot overflow.
    s + u64::from(carry)
}

/// One's-complement sum of `data` as big-endian 16-bit words, not yet folded.
///
/// `data` must start at an even offset of the checksummed region for partial sums to
/// combine with [`add`]; an odd trailing byte is treated as if followed by a zero byte.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    // Each 8-byte word is split into two 32-bit halves added into a 64-bit accumulator:
    // no carry is lost until 2^31 words (16 GiB), far beyond any packet.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_be_bytes(w);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        acc += u64::from(last) << 8;
    }
    acc
}

/// Folds a partial sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    // The loop leaves `s <= 0xffff`.
    s as u16
}

/// The checksum field value for `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// True when a partial sum taken over a region that includes its checksum field is valid.
#[inline]
pub fn is_valid(s: u64) -> bool {
    fold(s) == 0xffff
}

/// Partial sum of the IPv4 pseudo-header (RFC 9293 §3.1): source, destination, zero,
/// protocol, and the TCP length (header plus payload).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    u64::from(u32::from(src) >> 16)
        + u64::from(u32::from(src) & 0xffff)
        + u64::from(u32::from(dst) >> 16)
        + u64::from(u32::from(dst) & 0xffff)
        + u64::from(protocol)
        + u64::from(length)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer length, three zero bytes and the next-header value.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u64 {
    sum(&src.octets())
        + sum(&dst.octets())
        + u64::from(length >> 16)
        + u64::from(length & 0xffff)
        + u64::from(next_header)
}
