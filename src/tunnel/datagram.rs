//! The datagram header: what precedes every UDP payload in a datagram packet (layout in the
//! module doc of [`crate::tunnel`]).

use super::target::{address_len, read_address, write_address, Reader, Target};
use super::HeaderError;

/// Bytes of the association id at the start of the header.
const ID_LEN: usize = 4;

/// Header bytes in front of a payload addressed to `addr`.
pub fn datagram_header_len(addr: &Target) -> usize {
    ID_LEN + address_len(addr)
}

/// The largest UDP payloads to an IPv4 and an IPv6 destination when a datagram body may
/// be `max_body` bytes (a domain destination costs 4 bytes plus the name's length).
pub fn max_udp_payloads(max_body: usize) -> (usize, usize) {
    let v4 = Target::Ip((std::net::Ipv4Addr::UNSPECIFIED, 0).into());
    let v6 = Target::Ip((std::net::Ipv6Addr::UNSPECIFIED, 0).into());
    (
        max_body.saturating_sub(datagram_header_len(&v4)),
        max_body.saturating_sub(datagram_header_len(&v6)),
    )
}

/// Appends the header and the payload of one datagram to `out`.
pub fn encode_datagram(association: u32, addr: &Target, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(datagram_header_len(addr) + payload.len());
    out.extend_from_slice(&association.to_be_bytes());
    write_address(addr, out);
    out.extend_from_slice(payload);
}

/// One decoded datagram, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct DatagramRef<'a> {
    /// The association (the id of its control stream).
    pub association: u32,
    /// Destination (client → server) or source (server → client).
    pub addr: Target,
    /// The UDP payload, possibly empty.
    pub payload: &'a [u8],
}

/// Reads the association id only (the worker routes by it before anyone decodes the rest).
pub fn datagram_association(bytes: &[u8]) -> Result<u32, HeaderError> {
    Ok(u32::from_be_bytes(Reader(bytes).array::<ID_LEN>()?))
}

/// Parses a datagram; everything after the address is payload.
pub fn decode_datagram(bytes: &[u8]) -> Result<DatagramRef<'_>, HeaderError> {
    let mut r = Reader(bytes);
    let association = u32::from_be_bytes(r.array::<ID_LEN>()?);
    let addr = read_address(&mut r)?;
    Ok(DatagramRef {
        association,
        addr,
        payload: r.0,
    })
}
