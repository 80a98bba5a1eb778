//! [`OpenRequest`]: the header a client sends to open a tunnel stream (layout in the
//! module doc of [`crate::tunnel`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::target::{is_valid_domain, Target};
use super::{HeaderError, VERSION};

const PROTOCOL_TCP: u8 = 1;
const PROTOCOL_UDP: u8 = 2;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Transport the server should use towards the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A TCP connection; the stream carries its bytes.
    Tcp,
    /// UDP datagrams to and from the target.
    Udp,
}

/// The stream open header: protocol and target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Where to connect.
    pub target: Target,
}

impl OpenRequest {
    /// Number of bytes [`OpenRequest::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let address = match &self.target {
            Target::Ip(SocketAddr::V4(_)) => 4,
            Target::Ip(SocketAddr::V6(_)) => 16,
            Target::Domain(name, _) => 1 + domain_bytes(name).len(),
        };
        3 + address + 2
    }

    /// Appends the header to `out`.
    ///
    /// A domain that fails [`is_valid_domain`] (front ends never build one) is written as an
    /// empty name, which [`OpenRequest::decode`] rejects, so the server refuses the stream
    /// instead of connecting somewhere unintended.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let protocol = match self.protocol {
            Protocol::Tcp => PROTOCOL_TCP,
            Protocol::Udp => PROTOCOL_UDP,
        };
        out.extend_from_slice(&[VERSION, protocol]);
        match &self.target {
            Target::Ip(SocketAddr::V4(addr)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&addr.ip().octets());
            }
            Target::Ip(SocketAddr::V6(addr)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&addr.ip().octets());
            }
            Target::Domain(name, _) => {
                let bytes = domain_bytes(name);
                out.push(ATYP_DOMAIN);
                // domain_bytes returns at most 255 bytes, so the length fits in one byte.
                out.push(bytes.len() as u8);
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(&self.target.port().to_be_bytes());
    }

    /// Parses a header that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<OpenRequest, HeaderError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let protocol = match r.u8()? {
            PROTOCOL_TCP => Protocol::Tcp,
            PROTOCOL_UDP => Protocol::Udp,
            other => return Err(HeaderError::Protocol(other)),
        };
        let target = match r.u8()? {
            ATYP_IPV4 => {
                let ip = Ipv4Addr::from(r.array::<4>()?);
                Target::Ip(SocketAddr::from((ip, r.port()?)))
            }
            ATYP_IPV6 => {
                let ip = Ipv6Addr::from(r.array::<16>()?);
                Target::Ip(SocketAddr::from((ip, r.port()?)))
            }
            ATYP_DOMAIN => {
                let len = usize::from(r.u8()?);
                if len == 0 {
                    return Err(HeaderError::EmptyDomain);
                }
                let raw = r.take(len)?;
                let name = std::str::from_utf8(raw)
                    .ok()
                    .filter(|name| is_valid_domain(name))
                    .ok_or(HeaderError::DomainChars)?;
                Target::Domain(name.to_owned(), r.port()?)
            }
            other => return Err(HeaderError::AddressType(other)),
        };
        if !r.0.is_empty() {
            return Err(HeaderError::Trailing(r.0.len()));
        }
        Ok(OpenRequest { protocol, target })
    }
}

fn domain_bytes(name: &str) -> &[u8] {
    if is_valid_domain(name) {
        name.as_bytes()
    } else {
        &[]
    }
}

/// Cursor over untrusted bytes; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        if self.0.len() < n {
            return Err(HeaderError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn port(&mut self) -> Result<u16, HeaderError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }
}
