//! SOCKS5 messages (RFC 1928, RFC 1929) as types with `read_from`/`write_to`.
//!
//! Method negotiation (RFC 1928 §3), client → server, then server → client:
//!
//! ```text
//! +-----+----------+----------+      +-----+--------+
//! | VER | NMETHODS | METHODS  |      | VER | METHOD |
//! +-----+----------+----------+      +-----+--------+
//! |  5  |    1     | 1 to 255 |      |  5  |   1    |
//! +-----+----------+----------+      +-----+--------+
//! ```
//!
//! Username/password sub-negotiation (RFC 1929 §2), client → server, then server → client
//! (STATUS 0 = success):
//!
//! ```text
//! +-----+------+----------+------+----------+      +-----+--------+
//! | VER | ULEN |  UNAME   | PLEN |  PASSWD  |      | VER | STATUS |
//! +-----+------+----------+------+----------+      +-----+--------+
//! |  1  |  1   | 1 to 255 |  1   | 1 to 255 |      |  1  |   1    |
//! +-----+------+----------+------+----------+      +-----+--------+
//! ```
//!
//! Request (RFC 1928 §4) and reply (§6); ADDR is 4 bytes (ATYP 1), 16 bytes (ATYP 4) or a
//! length byte and that many bytes of domain name (ATYP 3, §5); PORT is big endian:
//!
//! ```text
//! +-----+-----+-------+------+----------+----------+
//! | VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |    CMD: 1 CONNECT, 2 BIND,
//! +-----+-----+-------+------+----------+----------+         3 UDP ASSOCIATE
//! |  5  |  1  | X'00' |  1   | Variable |    2     |
//! +-----+-----+-------+------+----------+----------+
//! +-----+-----+-------+------+----------+----------+
//! | VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |    REP: see `reply`
//! +-----+-----+-------+------+----------+----------+
//! |  5  |  1  | X'00' |  1   | Variable |    2     |
//! +-----+-----+-------+------+----------+----------+
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tunnel::{is_valid_domain, Target};

/// The SOCKS protocol version byte.
pub const VERSION: u8 = 5;
/// The username/password sub-negotiation version byte (RFC 1929 §2).
pub const PASSWORD_VERSION: u8 = 1;

/// Authentication method numbers (RFC 1928 §3).
pub mod method {
    /// No authentication required.
    pub const NO_AUTH: u8 = 0;
    /// Username/password (RFC 1929).
    pub const USERNAME_PASSWORD: u8 = 2;
    /// No acceptable methods; the client must close.
    pub const NO_ACCEPTABLE: u8 = 0xff;
}

/// Reply codes (RFC 1928 §6).
pub mod reply {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0;
    /// General SOCKS server failure.
    pub const GENERAL_FAILURE: u8 = 1;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Why a SOCKS5 message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Socks5Error {
    /// The connection failed or ended mid-message.
    #[error("socks5 i/o: {0}")]
    Io(#[from] io::Error),
    /// The version byte is not 5 (or 1 in the password sub-negotiation).
    #[error("unsupported version {0}")]
    Version(u8),
    /// The request's command byte is unknown (the whole request was read).
    #[error("unknown command {0}")]
    Command(u8),
    /// The request's address type is unknown (the rest of the request is unread).
    #[error("unknown address type {0}")]
    AddressType(u8),
    /// A domain name that is empty or has characters a host name cannot have.
    #[error("invalid domain name")]
    Domain,
}

/// Method negotiation request: the methods the client offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// Offered method numbers (see [`method`]).
    pub methods: Vec<u8>,
}

impl Greeting {
    /// Reads a greeting.
    pub async fn read_from<R: AsyncRead + Unpin>(r: &mut R) -> Result<Greeting, Socks5Error> {
        let version = r.read_u8().await?;
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        let count = r.read_u8().await?;
        let mut methods = vec![0u8; usize::from(count)];
        r.read_exact(&mut methods).await?;
        Ok(Greeting { methods })
    }

    /// Writes the greeting (at most 255 methods are written).
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        let methods = self.methods.get(..255).unwrap_or(&self.methods);
        let mut buf = vec![VERSION, methods.len() as u8];
        buf.extend_from_slice(methods);
        w.write_all(&buf).await
    }
}

/// Method negotiation response: the method the server chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodSelection {
    /// Chosen method, or [`method::NO_ACCEPTABLE`].
    pub method: u8,
}

impl MethodSelection {
    /// Reads a method selection.
    pub async fn read_from<R: AsyncRead + Unpin>(
        r: &mut R,
    ) -> Result<MethodSelection, Socks5Error> {
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).await?;
        let [version, method] = buf;
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        Ok(MethodSelection { method })
    }

    /// Writes the method selection.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&[VERSION, self.method]).await
    }
}

/// Username/password request (RFC 1929). Fields are raw bytes: RFC 1929 does not say
/// they are UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordRequest {
    /// The user name, 1..=255 bytes.
    pub username: Vec<u8>,
    /// The password, 1..=255 bytes.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("username", &String::from_utf8_lossy(&self.username))
            .finish_non_exhaustive()
    }
}

impl PasswordRequest {
    /// Reads a username/password request.
    pub async fn read_from<R: AsyncRead + Unpin>(
        r: &mut R,
    ) -> Result<PasswordRequest, Socks5Error> {
        let version = r.read_u8().await?;
        if version != PASSWORD_VERSION {
            return Err(Socks5Error::Version(version));
        }
        let username = read_short_bytes(r).await?;
        let password = read_short_bytes(r).await?;
        Ok(PasswordRequest { username, password })
    }

    /// Writes the request (fields longer than 255 bytes are cut at 255).
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        let mut buf = vec![PASSWORD_VERSION];
        push_short_bytes(&mut buf, &self.username);
        push_short_bytes(&mut buf, &self.password);
        w.write_all(&buf).await
    }
}

/// Username/password response (RFC 1929): status 0 is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordResponse {
    /// 0 on success, anything else on failure.
    pub status: u8,
}

impl PasswordResponse {
    /// Reads a username/password response.
    pub async fn read_from<R: AsyncRead + Unpin>(
        r: &mut R,
    ) -> Result<PasswordResponse, Socks5Error> {
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).await?;
        let [version, status] = buf;
        if version != PASSWORD_VERSION {
            return Err(Socks5Error::Version(version));
        }
        Ok(PasswordResponse { status })
    }

    /// Writes the response.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&[PASSWORD_VERSION, self.status]).await
    }
}

/// Request commands (RFC 1928 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Connect to the destination over TCP.
    Connect,
    /// Accept one inbound connection (not supported: reply 7).
    Bind,
    /// Relay UDP datagrams (RFC 1928 §7).
    UdpAssociate,
}

impl Command {
    /// The command byte.
    pub fn code(self) -> u8 {
        match self {
            Command::Connect => 1,
            Command::Bind => 2,
            Command::UdpAssociate => 3,
        }
    }

    fn from_code(code: u8) -> Option<Command> {
        match code {
            1 => Some(Command::Connect),
            2 => Some(Command::Bind),
            3 => Some(Command::UdpAssociate),
            _ => None,
        }
    }
}

/// A client request: command and destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What the client wants.
    pub command: Command,
    /// The destination; a domain that is an IP literal becomes [`Target::Ip`].
    pub target: Target,
}

impl Request {
    /// Reads a request. An unknown command is reported after the whole request is read.
    pub async fn read_from<R: AsyncRead + Unpin>(r: &mut R) -> Result<Request, Socks5Error> {
        let mut head = [0u8; 3];
        r.read_exact(&mut head).await?;
        let [version, command, _reserved] = head;
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        let target = read_address(r).await?;
        let command = Command::from_code(command).ok_or(Socks5Error::Command(command))?;
        Ok(Request { command, target })
    }

    /// Writes the request (an invalid domain is written as an empty name).
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        let mut buf = vec![VERSION, self.command.code(), 0];
        push_address(&mut buf, &self.target);
        w.write_all(&buf).await
    }
}

/// The server's reply to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Reply code (see [`reply`] and [`crate::tunnel::ConnectResult::socks5_reply_code`]).
    pub code: u8,
    /// BND.ADDR/BND.PORT: 0.0.0.0:0, except for UDP ASSOCIATE (the relay's address).
    pub bound: Target,
}

impl Reply {
    /// A reply with code `code` and bound address 0.0.0.0:0.
    pub fn new(code: u8) -> Reply {
        Reply {
            code,
            bound: Target::Ip(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
        }
    }

    /// Reads a reply.
    pub async fn read_from<R: AsyncRead + Unpin>(r: &mut R) -> Result<Reply, Socks5Error> {
        let mut head = [0u8; 3];
        r.read_exact(&mut head).await?;
        let [version, code, _reserved] = head;
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        let bound = read_address(r).await?;
        Ok(Reply { code, bound })
    }

    /// Writes the reply.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        let mut buf = vec![VERSION, self.code, 0];
        push_address(&mut buf, &self.bound);
        w.write_all(&buf).await
    }
}

/// The header in front of every datagram between a client and the UDP relay
/// (RFC 1928 §7); ADDR as in a request. FRAG ≠ 0 marks a fragment, which this relay drops.
///
/// ```text
/// +-----+------+------+----------+----------+----------+
/// | RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
/// +-----+------+------+----------+----------+----------+
/// |  2  |  1   |  1   | Variable |    2     | Variable |
/// +-----+------+------+----------+----------+----------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    /// Fragment number; 0 for a whole datagram.
    pub frag: u8,
    /// Destination (client → relay) or source (relay → client).
    pub addr: Target,
}

impl UdpHeader {
    /// Parses the header at the start of `datagram`; returns it and where DATA starts.
    pub async fn parse(datagram: &[u8]) -> Result<(UdpHeader, usize), Socks5Error> {
        let mut r = datagram;
        let mut head = [0u8; 3];
        r.read_exact(&mut head).await?;
        let addr = read_address(&mut r).await?;
        let header = UdpHeader {
            frag: head[2],
            addr,
        };
        Ok((header, datagram.len() - r.len()))
    }

    /// Appends the header (RSV zero).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, self.frag]);
        push_address(out, &self.addr);
    }
}

async fn read_short_bytes<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u8().await?;
    let mut bytes = vec![0u8; usize::from(len)];
    r.read_exact(&mut bytes).await?;
    Ok(bytes)
}

fn push_short_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = bytes.get(..255).unwrap_or(bytes);
    buf.push(bytes.len() as u8);
    buf.extend_from_slice(bytes);
}

/// Reads ATYP, ADDR and PORT (RFC 1928 §5).
async fn read_address<R: AsyncRead + Unpin>(r: &mut R) -> Result<Target, Socks5Error> {
    let target = match r.read_u8().await? {
        ATYP_IPV4 => {
            let mut ip = [0u8; 4];
            r.read_exact(&mut ip).await?;
            Target::Ip(SocketAddr::from((Ipv4Addr::from(ip), r.read_u16().await?)))
        }
        ATYP_IPV6 => {
            let mut ip = [0u8; 16];
            r.read_exact(&mut ip).await?;
            Target::Ip(SocketAddr::from((Ipv6Addr::from(ip), r.read_u16().await?)))
        }
        ATYP_DOMAIN => {
            let raw = read_short_bytes(r).await?;
            let port = r.read_u16().await?;
            let name = String::from_utf8(raw).map_err(|_| Socks5Error::Domain)?;
            if let Ok(ip) = name.parse::<IpAddr>() {
                Target::Ip(SocketAddr::new(ip, port))
            } else if is_valid_domain(&name) {
                Target::Domain(name, port)
            } else {
                return Err(Socks5Error::Domain);
            }
        }
        other => return Err(Socks5Error::AddressType(other)),
    };
    Ok(target)
}

fn push_address(buf: &mut Vec<u8>, target: &Target) {
    match target {
        Target::Ip(SocketAddr::V4(addr)) => {
            buf.push(ATYP_IPV4);
            buf.extend_from_slice(&addr.ip().octets());
        }
        Target::Ip(SocketAddr::V6(addr)) => {
            buf.push(ATYP_IPV6);
            buf.extend_from_slice(&addr.ip().octets());
        }
        Target::Domain(name, _) => {
            buf.push(ATYP_DOMAIN);
            let name = if is_valid_domain(name) {
                name.as_bytes()
            } else {
                &[]
            };
            push_short_bytes(buf, name);
        }
    }
    buf.extend_from_slice(&target.port().to_be_bytes());
}
