//! Wire formats of the fake-TCP layer: Ethernet (RFC 894), IPv4 (RFC 791), IPv6 (RFC 8200)
//! and TCP (RFC 9293, options from RFC 7323) parse and emit, plus the Internet checksum
//! (RFC 1071).
//!
//! Each header has a zero-copy view `Packet<T: AsRef<[u8]>>` (named byte ranges in a `field`
//! module; after `new_checked` succeeds no accessor panics) and a `Repr` with
//! `parse`/`emit`/`buffer_len`. [`frame`] composes them into one captured frame:
//!
//! ```text
//! LinkType::Ethernet: | Ethernet 14 (+4 if 802.1Q) | IPv4 20..60 / IPv6 40 | TCP 20..60 | payload |
//! LinkType::RawIp:    |                              IPv4 / IPv6            | TCP        | payload |
//! ```
//!
//! Nothing here allocates or panics on any input: any bytes give a value or an [`Error`].

pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;

#[cfg(test)]
mod tests;

pub use frame::{emit_frame, header_len, parse_frame, FrameRepr, ParsedFrame};
pub use tcp::{TcpFlags, TcpOptions};

/// What sits in front of the IP header in captured and injected frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// A 14-byte Ethernet II header (RFC 894); one 802.1Q tag is skipped on parse.
    #[default]
    Ethernet,
    /// No link header (tun, PPP, `DLT_RAW`): the first nibble gives the IP version.
    RawIp,
}

impl LinkType {
    /// Bytes of link header written by `emit` for this link type.
    pub const fn header_len(self) -> usize {
        match self {
            LinkType::Ethernet => ethernet::HEADER_LEN,
            LinkType::RawIp => 0,
        }
    }
}

/// Why a frame could not be parsed or emitted.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the header or the length it declares.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the format forbids.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A valid packet of a kind this layer does not handle (fragments, other protocols).
    #[error("unsupported packet: {0}")]
    Unsupported(&'static str),
    /// The IPv4 header or TCP checksum does not verify.
    #[error("bad checksum")]
    Checksum,
}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, Error>;

/// A named byte range inside a header.
pub(crate) type Field = core::ops::Range<usize>;

/// IP protocol / IPv6 next-header number of TCP.
pub const IP_PROTOCOL_TCP: u8 = 6;
