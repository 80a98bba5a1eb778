//! Address-like config values: `host:port` targets, CIDR ranges and the server's target
//! ACL, Ethernet MAC addresses and TCP flag strings (`"PA"` → `0x18`). Parsers return a
//! plain message; the validator adds file, line and field.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Host part of a forward target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, resolved by the server when it dials.
    Domain(String),
}

/// `host:port` where host is IPv4, `[IPv6]` or a domain name; the port is never 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Where to connect.
    pub host: Host,
    /// Destination port (1–65535).
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not host:port (IPv4, [IPv6] or a domain name)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
            let ip = Ipv6Addr::from_str(v6).map_err(|_| bad())?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') {
                return Err(format!(
                    "{s:?}: write IPv6 addresses in brackets, [addr]:port"
                ));
            }
            let host = match Ipv4Addr::from_str(host) {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) => Host::Domain(domain(host).map_err(|m| format!("{s:?}: {m}"))?),
            };
            (host, port)
        };
        let port = nonzero_port(port).map_err(|m| format!("{s:?}: {m}"))?;
        Ok(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Domain(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn nonzero_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed here".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("bad port {s:?}")),
    }
}

/// Validates a DNS name (letters, digits, `-`, `_`; labels 1–63 bytes; total ≤ 253).
fn domain(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err("host name must be 1–253 characters".into());
    }
    let mut all_numeric = true;
    for label in trimmed.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') {
            return Err(format!("{name:?} is not a valid host name"));
        }
        all_numeric &= label.bytes().all(|b| b.is_ascii_digit());
    }
    if all_numeric {
        return Err(format!("{name:?} is not a valid IPv4 address"));
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Parses a socket address whose port must not be 0.
pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = SocketAddr::from_str(s)
        .map_err(|_| format!("{s:?} is not ip:port (IPv4 or [IPv6]:port)"))?;
    if addr.port() == 0 {
        return Err(format!("{s:?}: port 0 is not allowed here"));
    }
    Ok(addr)
}

/// An IP network, `198.18.0.0/15` or `::1/128`; a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CIDR like \"198.18.0.0/15\" or \"::1/128\"");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(ip).map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set; did you mean \"{network}/{prefix}\"?"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Destination ports of a target rule: one port or an inclusive range (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// Every port, 0 to 65535.
    pub const ALL: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    /// True for [`PortRange::ALL`].
    pub fn is_all(&self) -> bool {
        *self == PortRange::ALL
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port (1-65535) or a range like 8000-8100");
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// The addresses a target rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetNet {
    /// `public`: every address outside the protected ranges (it never opens one).
    Public,
    /// An IP network.
    Net(Cidr),
}

/// One `targets.allow` / `targets.deny` entry: addresses and ports.
///
/// Spelling: `public`, `ADDR`, `ADDR/PREFIX` for IPv4 or IPv6, optionally followed by
/// `:PORT` or `:LOW-HIGH` (IPv6 networks then in brackets: `[::1]:22`, `[fd00::/8]:443`).
/// Examples: `"127.0.0.1:22"`, `"10.0.0.0/8"`, `"198.18.0.0/15:8000-8100"`, `"::1"`,
/// `"public:443"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetRule {
    /// Addresses.
    pub net: TargetNet,
    /// Destination ports.
    pub ports: PortRange,
}

impl TargetRule {
    /// Whether `addr` (address and port) is covered; IPv4-mapped IPv6 addresses match IPv4
    /// networks. `public` matches every address here: the policy decides what is public.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        let net = match self.net {
            TargetNet::Public => true,
            TargetNet::Net(c) => c.contains(addr.ip()),
        };
        net && self.ports.contains(addr.port())
    }
}

impl FromStr for TargetRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (net, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (net, ports) = rest.split_once("]:").ok_or_else(|| {
                format!("{s:?}: write an IPv6 network with a port as [addr/prefix]:port")
            })?;
            (net, Some(ports))
        } else if s.matches(':').count() == 1 {
            let (net, ports) = s.split_once(':').unwrap_or((s, ""));
            (net, Some(ports))
        } else {
            (s, None)
        };
        let ports = match ports {
            Some(p) => PortRange::from_str(p).map_err(|m| format!("{s:?}: {m}"))?,
            None => PortRange::ALL,
        };
        let net = if net == "public" {
            TargetNet::Public
        } else {
            TargetNet::Net(Cidr::from_str(net).map_err(|_| {
                format!(
                    "{s:?} is not public or a network (\"127.0.0.1:22\", \"10.0.0.0/8\", \
                     \"[::1]:22\", \"fd00::/8\"), optionally with :PORT or :LOW-HIGH"
                )
            })?)
        };
        Ok(TargetRule { net, ports })
    }
}

impl fmt::Display for TargetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |c: &Cidr| {
            let full = if c.addr().is_ipv4() { 32 } else { 128 };
            if c.prefix() == full {
                c.addr().to_string()
            } else {
                c.to_string()
            }
        };
        match (&self.net, self.ports.is_all()) {
            (TargetNet::Public, true) => f.write_str("public"),
            (TargetNet::Public, false) => write!(f, "public:{}", self.ports),
            (TargetNet::Net(c), true) => f.write_str(&host(c)),
            (TargetNet::Net(c), false) if c.addr().is_ipv6() => {
                write!(f, "[{}]:{}", host(c), self.ports)
            }
            (TargetNet::Net(c), false) => write!(f, "{}:{}", host(c), self.ports),
        }
    }
}

/// `targets`: which destinations the server may connect to (TCP) or send to (UDP). The
/// rules are data; [`crate::proxy::TargetPolicy`] evaluates them together with the
/// protected ranges and the server's own addresses:
///
/// 1. a `deny` rule that matches refuses;
/// 2. an `allow` rule that matches permits, except that an address in a protected range
///    (loopback, private, link-local, metadata, the server's own, ...) is opened only by a
///    rule whose network lies inside every protected range holding the address;
/// 3. anything else is refused.
///
/// `allow` defaults to `[public]`: every address outside the protected ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAcl {
    allow: Vec<TargetRule>,
    deny: Vec<TargetRule>,
}

impl Default for TargetAcl {
    fn default() -> Self {
        TargetAcl::new(None, Vec::new())
    }
}

impl TargetAcl {
    /// The rule `public` (every non-protected address, every port).
    pub const PUBLIC: TargetRule = TargetRule {
        net: TargetNet::Public,
        ports: PortRange::ALL,
    };

    /// An ACL from an allow list (`None` = `[public]`) and a deny list.
    pub fn new(allow: Option<Vec<TargetRule>>, deny: Vec<TargetRule>) -> Self {
        TargetAcl {
            allow: allow.unwrap_or_else(|| vec![TargetAcl::PUBLIC]),
            deny,
        }
    }

    /// The allow list (never empty).
    pub fn allow(&self) -> &[TargetRule] {
        &self.allow
    }

    /// The deny list.
    pub fn deny(&self) -> &[TargetRule] {
        &self.deny
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub(super) fn mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address like \"aa:bb:cc:dd:ee:ff\"");
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// Formats a MAC as lowercase `aa:bb:cc:dd:ee:ff`.
pub(super) fn mac_string(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Parses one flag string such as `"PA"` into a flag byte (the letters are those of
/// [`crate::wire::TcpFlags::parse_letters`]; upper case only, as paqet writes them). `N`
/// (the NS bit, outside the flag byte) is accepted and ignored, as paqet does.
pub(super) fn tcp_flags(s: &str) -> Result<u8, String> {
    if let Some(c) = s.chars().find(|c| !"FSRPAUECN".contains(*c)) {
        return Err(format!(
            "{s:?}: unknown TCP flag letter {c:?} (use F S R P A U E C N)"
        ));
    }
    let bits = crate::wire::TcpFlags::parse_letters(s)
        .map_err(|e| format!("{s:?}: {e}"))?
        .0;
    if bits == 0 {
        return Err(format!("{s:?} sets no TCP flag"));
    }
    Ok(bits)
}

/// Formats a flag byte back into letters (`0x18` → `"PA"`).
pub(super) fn tcp_flags_string(bits: u8) -> String {
    crate::wire::TcpFlags(bits).to_string()
}
