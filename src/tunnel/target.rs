//! [`Target`]: where a tunnel stream should connect, as an IP socket address or a domain
//! name resolved by the server.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::HeaderError;
use std::str::FromStr;

/// Longest domain name an open request can carry (its length is one byte).
pub const MAX_DOMAIN_LEN: usize = 255;

/// Destination of a tunnel stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IP address and port, connected to as is.
    Ip(SocketAddr),
    /// A host name and port; the server resolves the name. Valid names satisfy
    /// [`is_valid_domain`]; front ends only build valid ones.
    Domain(String, u16),
}

impl Target {
    /// The destination port.
    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(addr) => addr.port(),
            Target::Domain(_, port) => *port,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(addr) => write!(f, "{addr}"),
            Target::Domain(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// True for 1..=255 bytes of ASCII letters, digits, '-', '.' and '_'.
pub fn is_valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOMAIN_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Why a `host:port` string is not a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `:port` suffix.
    #[error("missing :port in {0:?}")]
    MissingPort(String),
    /// The port is not a number in 0..=65535.
    #[error("invalid port in {0:?}")]
    Port(String),
    /// The host is neither an IP address nor a valid domain name.
    #[error("invalid host in {0:?}")]
    Host(String),
}

impl FromStr for Target {
    type Err = TargetError;

    /// Parses `1.2.3.4:80`, `[2001:db8::1]:443` or `example.com:443`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Target::Ip(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| TargetError::MissingPort(s.to_owned()))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| TargetError::Port(s.to_owned()))?;
        if !is_valid_domain(host) {
            return Err(TargetError::Host(s.to_owned()));
        }
        Ok(Target::Domain(host.to_owned(), port))
    }
}

const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Bytes [`write_address`] appends for `target`: ATYP, address, port.
pub(super) fn address_len(target: &Target) -> usize {
    let address = match target {
        Target::Ip(SocketAddr::V4(_)) => 4,
        Target::Ip(SocketAddr::V6(_)) => 16,
        Target::Domain(name, _) => 1 + domain_bytes(name).len(),
    };
    1 + address + 2
}

/// Appends ATYP, address and port (SOCKS5 numbering, RFC 1928 §5). An invalid domain is
/// written as an empty name, which [`read_address`] rejects.
pub(super) fn write_address(target: &Target, out: &mut Vec<u8>) {
    match target {
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
    out.extend_from_slice(&target.port().to_be_bytes());
}

/// Reads what [`write_address`] wrote.
pub(super) fn read_address(r: &mut Reader<'_>) -> Result<Target, HeaderError> {
    Ok(match r.u8()? {
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
    })
}

fn domain_bytes(name: &str) -> &[u8] {
    if is_valid_domain(name) {
        name.as_bytes()
    } else {
        &[]
    }
}

/// Cursor over untrusted bytes; every read checks the length.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        if self.0.len() < n {
            return Err(HeaderError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn port(&mut self) -> Result<u16, HeaderError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }
}
