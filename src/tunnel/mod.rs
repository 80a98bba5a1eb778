//! The tunnel stream headers: what a client asks for when it opens a stream, and what the
//! server answers. Both are sans-IO byte formats; [`crate::proxy`] does the socket work.
//!
//! # Open request (client → server, the payload that opens a mux stream)
//!
//! ```text
//!  0         1          2      3
//! +---------+----------+------+--------------------------+------------+
//! | VERSION | PROTOCOL | ATYP | ADDRESS (variable)       | PORT (u16) |
//! |   = 1   | 1=TCP    |      |                          | big endian |
//! |         | 2=UDP    |      |                          |            |
//! +---------+----------+------+--------------------------+------------+
//!
//! ATYP = 1 (IPv4):   ADDRESS = 4 bytes
//! ATYP = 4 (IPv6):   ADDRESS = 16 bytes
//! ATYP = 3 (domain): ADDRESS = LEN (1 byte, 1..=255) + LEN bytes of hostname characters
//!                    (ASCII letters, digits, '-', '.', '_'); resolved on the server
//! ```
//!
//! The address types reuse the SOCKS5 numbering (RFC 1928 §5) so a SOCKS5 request maps onto
//! an open request one to one. The request must fill the buffer exactly: trailing bytes are
//! an error, so a decoder never guesses where the header ends.
//!
//! # Connect result (server → client, the first bytes of the stream)
//!
//! ```text
//!  0         1
//! +---------+--------+
//! | VERSION | RESULT |     RESULT: 0 ok, 1 refused, 2 unreachable, 3 timeout,
//! |   = 1   |        |             4 denied by policy, 5 other failure
//! +---------+--------+
//! ```
//!
//! After an `ok` result raw data flows both ways; after any other result the server closes
//! the stream. [`ConnectResult::socks5_reply_code`] maps a result to the RFC 1928 §6 reply.
//!
//! # UDP associations
//!
//! A UDP association is a stream opened with PROTOCOL = 2. Its target is the fixed
//! destination of a UDP forward, or `0.0.0.0:0` ("any", SOCKS5 UDP ASSOCIATE, where every
//! datagram names its own). The server answers with a connect result as for TCP; the stream
//! then carries no data and lives as long as the association: either side ends the
//! association by closing it (control connection closed, idle expiry, session lost).
//!
//! The datagrams themselves never enter the stream: each travels in its own sealed packet
//! beside the KCP session (see [`crate::endpoint`]), is never retransmitted, and starts with
//! this header:
//!
//! ```text
//! +-------------------+------+--------------------------+------------+-----------+
//! | ASSOCIATION (u32) | ATYP | ADDRESS (variable)       | PORT (u16) | PAYLOAD   |
//! | = the stream id   |      | as in the open request   | big endian | (rest)    |
//! +-------------------+------+--------------------------+------------+-----------+
//! ```
//!
//! Client → server the address is the destination; server → client it is the source the
//! reply came from. A datagram must fit in one packet whole (see
//! [`crate::endpoint::Connection::max_datagram`]): larger ones are dropped and counted,
//! never cut.

mod datagram;
mod open;
mod result;
mod target;
#[cfg(test)]
mod tests;

pub use datagram::{
    datagram_association, datagram_header_len, decode_datagram, encode_datagram, max_udp_payloads,
    DatagramRef,
};
pub use open::{OpenRequest, Protocol};
pub use result::ConnectResult;
pub use target::{is_valid_domain, Target, TargetError};

/// Version byte that starts every tunnel header.
pub const VERSION: u8 = 1;

/// Why a tunnel header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The buffer ends before the header does.
    #[error("header truncated")]
    Truncated,
    /// The version byte is not [`VERSION`].
    #[error("unsupported header version {0}")]
    Version(u8),
    /// The protocol byte is neither TCP nor UDP.
    #[error("unknown protocol {0}")]
    Protocol(u8),
    /// The address type byte is not IPv4, IPv6 or domain.
    #[error("unknown address type {0}")]
    AddressType(u8),
    /// A domain name of length zero.
    #[error("empty domain name")]
    EmptyDomain,
    /// A domain name with characters outside letters, digits, '-', '.', '_'.
    #[error("invalid characters in domain name")]
    DomainChars,
    /// The connect result byte is unknown.
    #[error("unknown connect result {0}")]
    Result(u8),
    /// Bytes follow the end of the header.
    #[error("{0} trailing bytes after header")]
    Trailing(usize),
}
