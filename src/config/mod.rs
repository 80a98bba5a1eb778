//! Configuration: YAML (a superset of paqet's schema, so a paqet `config.yaml` loads
//! unchanged) turned into a typed, validated [`Config`].
//!
//! Loading has two stages ("parse, don't validate"): `raw` holds serde structs that deny
//! unknown fields and keep every field optional; `validate` turns them into the types
//! below, filling defaults and applying presets. Nothing downstream re-checks a value.
//! Every error names the file, the line and the dotted field path ([`ConfigError`]).
//! The field reference is docs/CONFIG.md.

mod auth;
mod effective;
mod error;
mod locate;
mod net;
mod raw;
#[cfg(test)]
mod tests;
mod transport;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

pub use auth::{Auth, ClientKey};
pub use error::ConfigError;
pub use net::{Cidr, Host, HostPort, PortRange, TargetAcl, TargetNet, TargetRule};
pub use transport::{Kcp, KcpMode, KcpPreset, Timeouts, Transport, TransportProtocol};

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&origin, e))?;
    parse(&text, &origin)
}

/// Validates config `text`; `origin` is the file name used in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    validate::parse(text, origin)
}

/// A complete, validated configuration with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Which end of the tunnel this is.
    pub role: Role,
    /// `log.level`.
    pub log_level: LogLevel,
    /// Server: `listen.addr` (`":port"` means all IPv4 addresses). Always `Some` on a server.
    pub listen: Option<SocketAddr>,
    /// Client: `server.addr`. Always `Some` on a client.
    pub server: Option<SocketAddr>,
    /// Client SOCKS5 listeners.
    pub socks5: Vec<Socks5Rule>,
    /// Client port forwards.
    pub forward: Vec<ForwardRule>,
    /// Interface, addresses and packet shape.
    pub network: Network,
    /// Reliability layer settings.
    pub transport: Transport,
    /// Worker threads.
    pub performance: Performance,
    /// Automatic firewall rules.
    pub firewall: Firewall,
    /// Metrics endpoint.
    pub metrics: Metrics,
    /// Server: which targets may be dialed (client: unused).
    pub targets: TargetAcl,
    /// Keys: who may connect (server), how we authenticate (client).
    pub auth: Auth,
    /// Server: per-client resource bounds (client: unused).
    pub limits: Limits,
}

/// `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Offers SOCKS5/forwards locally and connects to a server.
    Client,
    /// Accepts clients and dials targets.
    Server,
}

impl Role {
    /// The YAML spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// No logging.
    None,
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors.
    Error,
    /// paqet's `fatal`: errors only.
    Fatal,
}

impl LogLevel {
    /// Filter directive for `tracing_subscriber::EnvFilter`.
    pub fn as_filter(&self) -> &'static str {
        match self {
            LogLevel::None => "off",
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal => "error",
        }
    }

    /// The YAML spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::None => "none",
            LogLevel::Fatal => "fatal",
            other => other.as_filter(),
        }
    }
}

/// One `socks5[]` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Rule {
    /// Local address to accept SOCKS5 clients on.
    pub listen: SocketAddr,
    /// RFC 1929 username/password, or `None` for no authentication.
    pub auth: Option<Credentials>,
}

/// SOCKS5 username/password (each 1–255 bytes). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One `forward[]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRule {
    /// Local address to accept on.
    pub listen: SocketAddr,
    /// Where the server connects.
    pub target: HostPort,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// `forward[].protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Stream forward (default).
    Tcp,
    /// Datagram forward.
    Udp,
}

impl Protocol {
    /// The YAML spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Interface name; `None` = detect from the route to the peer.
    pub interface: Option<String>,
    /// Local IPv4 address/port and gateway MAC; `None` = detect.
    pub ipv4: Option<AddrConfig>,
    /// Local IPv6 address/port and gateway MAC; `None` = detect/unused.
    pub ipv6: Option<AddrConfig>,
    /// Fake TCP shape.
    pub tcp: TcpShape,
    /// `network.pcap.sockbuf` in bytes.
    pub pcap_sockbuf: usize,
    /// Packet I/O backend.
    pub backend: Backend,
    /// `network.afpacket.qdisc_bypass`: AF_PACKET frames skip the interface's queueing
    /// discipline (`PACKET_QDISC_BYPASS`). Off by default: it is faster, but no traffic
    /// shaping, fq pacing or qdisc statistics apply to rawtun's frames, and a full device
    /// queue drops frames instead of queueing them.
    pub qdisc_bypass: bool,
    /// Client: whether it is behind NAT (opening proofs are then not bound to its address).
    pub nat: Nat,
}

/// `network.nat` (client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Behind NAT if the local address is not a global one (RFC 1918, 100.64/10, ULA,
    /// link-local, ...).
    Auto,
    /// Behind NAT: the server sees another source address than ours.
    Yes,
    /// Not behind NAT: bind opening proofs to our address and port.
    No,
}

impl Nat {
    /// Whether opening proofs should be bound to `local` (our source address).
    pub fn bind_source(self, local: std::net::IpAddr) -> bool {
        match self {
            Nat::Yes => false,
            Nat::No => true,
            Nat::Auto => is_global(local),
        }
    }

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Nat::Auto => "auto",
            Nat::Yes => "true",
            Nat::No => "false",
        }
    }
}

/// A unicast address that is reachable without translation (not private, shared, loopback,
/// link-local, ULA or documentation space). The benchmarking range 198.18.0.0/15 counts as
/// global: tests run in it without NAT.
pub fn is_global(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// `network.ipv4` / `network.ipv6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrConfig {
    /// Local address; port 0 on a client = pick a random port. On a server the port is
    /// always the listen port (0 in the file is resolved to it).
    pub addr: SocketAddr,
    /// Gateway MAC; `None` = detect.
    pub router_mac: Option<[u8; 6]>,
}

/// `network.tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpShape {
    /// Flag bytes cycled on packets we send (F=0x01 S=0x02 R=0x04 P=0x08 A=0x10 U=0x20
    /// E=0x40 C=0x80).
    pub local_flag: Vec<u8>,
    /// Flag bytes the peer is told to use.
    pub remote_flag: Vec<u8>,
    /// Open each session with a fake SYN / SYN-ACK / ACK.
    pub handshake: bool,
}

/// `network.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AF_PACKET: a TPACKET_V3 ring per packet worker in one fanout group, the filter in
    /// the kernel (the default).
    AfPacket,
    /// libpcap capture and injection (paqet's backend; one capture thread).
    Pcap,
}

impl Backend {
    /// The spelling in the config.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::AfPacket => "afpacket",
            Backend::Pcap => "pcap",
        }
    }
}

/// `performance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Performance {
    /// Packet worker threads (resolved: 0 in the file = number of CPUs, at most 64).
    pub packet_workers: usize,
}

/// `firewall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firewall {
    /// Install and remove iptables/nftables rules automatically.
    pub auto: bool,
}

/// `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Address of the metrics HTTP endpoint; `None` = off.
    pub listen: Option<SocketAddr>,
}

/// `limits`: what one client may hold on a server. Exceeding a bound refuses the open (a
/// stream reset or a failed connect result, counted), never queues it. The bytes a session
/// may buffer are `transport.kcp.smuxbuf` (enforced on receive by the mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams open at once on one session (TCP streams and UDP associations).
    pub streams_per_session: usize,
    /// Target connections being dialed at once for one session.
    pub dials_per_session: usize,
    /// Name lookups in flight at once for one session.
    pub lookups_per_session: usize,
    /// UDP associations open at once on one session.
    pub udp_associations_per_session: usize,
    /// Established sessions from one client IP address.
    pub sessions_per_address: usize,
    /// Name lookups in flight at once on the whole server.
    pub lookups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            streams_per_session: 1024,
            dials_per_session: 128,
            lookups_per_session: 32,
            udp_associations_per_session: 256,
            sessions_per_address: 16,
            lookups: 256,
        }
    }
}

/// Default per-session KCP windows, in packets (see docs/CONFIG.md for the arithmetic).
pub const DEFAULT_WINDOW: u16 = 8192;
/// Default `transport.kcp.mtu`.
pub const DEFAULT_MTU: u16 = 1350;
/// Default `transport.kcp.smuxbuf` (per-session receive buffer).
pub const DEFAULT_SMUXBUF: usize = 32 << 20;
/// Default `transport.kcp.streambuf` (per-stream flow-control window).
pub const DEFAULT_STREAMBUF: usize = 8 << 20;

impl Config {
    /// The effective config with every default filled in, as YAML that [`parse`] accepts;
    /// the key is shown as `"<redacted>"`.
    pub fn to_effective_yaml(&self) -> String {
        effective::to_yaml(self)
    }
}
