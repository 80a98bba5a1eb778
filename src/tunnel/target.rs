//! [`Target`]: where a tunnel stream should connect, as an IP socket address or a domain
//! name resolved by the server.

use std::fmt;
use std::net::SocketAddr;
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
