//! Stage two of loading: raw serde structs → validated [`Config`], with defaults, role
//! rules and error locations (file, line, dotted field).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::locate::LineIndex;
use super::net::{self, HostPort, TargetAcl, TargetRule};
use super::raw::{
    RawConfig, RawForward, RawIp, RawLimits, RawNetwork, RawSocks5, RawTargets, Switchable,
};
use super::{
    auth, transport, AddrConfig, Backend, Config, ConfigError, Credentials, Firewall, ForwardRule,
    Limits, LogLevel, Metrics, Nat, Network, Performance, Protocol, Role, Socks5Rule, TcpShape,
};

/// Where errors point: the origin name and the text's line index.
pub(super) struct Ctx<'a> {
    origin: &'a str,
    index: &'a LineIndex,
}

impl Ctx<'_> {
    /// An error about `field`, located at its line (or its nearest ancestor's).
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, self.index.line_of(field), field, message)
    }

    /// An error about `field` located at `anchor`'s line when `field` is absent.
    fn err_near(&self, field: &str, anchor: &str, message: impl Into<String>) -> ConfigError {
        let line = self
            .index
            .line_of(field)
            .or_else(|| self.index.line_of(anchor));
        ConfigError::new(self.origin, line, field, message)
    }
}

/// `v` checked against `lo..=hi` and converted.
pub(super) fn ranged<T: TryFrom<i64>>(
    ctx: &Ctx,
    field: &str,
    v: i64,
    lo: i64,
    hi: i64,
) -> Result<T, ConfigError> {
    let out_of_range = || ctx.err(field, format!("{v} is out of range {lo}..={hi}"));
    if v < lo || v > hi {
        return Err(out_of_range());
    }
    T::try_from(v).map_err(|_| out_of_range())
}

/// [`ranged`] for an optional field with a default.
pub(super) fn ranged_or<T: TryFrom<i64>>(
    ctx: &Ctx,
    field: &str,
    v: Option<i64>,
    lo: i64,
    hi: i64,
    default: T,
) -> Result<T, ConfigError> {
    v.map_or(Ok(default), |v| ranged(ctx, field, v, lo, hi))
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let index = LineIndex::new(text);
    let raw: RawConfig =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::from_yaml(origin, &index, &e))?;
    let ctx = Ctx {
        origin,
        index: &index,
    };
    config(&ctx, raw)
}

fn config(ctx: &Ctx, raw: RawConfig) -> Result<Config, ConfigError> {
    let role = match raw.role.as_deref() {
        Some("client") => Role::Client,
        Some("server") => Role::Server,
        Some(other) => return Err(ctx.err("role", format!("{other:?} is not client or server"))),
        None => return Err(ctx.err("role", "is required (client or server)")),
    };
    let log_level = match raw.log.and_then(|l| l.level).as_deref() {
        None | Some("info") => LogLevel::Info,
        Some("none") => LogLevel::None,
        Some("trace") => LogLevel::Trace,
        Some("debug") => LogLevel::Debug,
        Some("warn") => LogLevel::Warn,
        Some("error") => LogLevel::Error,
        Some("fatal") => LogLevel::Fatal,
        Some(other) => {
            let msg =
                format!("{other:?} is not one of none, trace, debug, info, warn, error, fatal");
            return Err(ctx.err("log.level", msg));
        }
    };
    let socks5_raw = raw.socks5.unwrap_or_default();
    let forward_raw = raw.forward.unwrap_or_default();
    let only = |field: &str, role: &str| {
        let other = if role == "client" { "server" } else { "client" };
        ctx.err(field, format!("is {role}-only but role is {other}"))
    };
    let (listen, server) = match role {
        Role::Server => {
            if !socks5_raw.is_empty() {
                return Err(only("socks5", "client"));
            }
            if !forward_raw.is_empty() {
                return Err(only("forward", "client"));
            }
            if raw.server.is_some() {
                return Err(only("server", "client"));
            }
            let addr = raw.listen.and_then(|l| l.addr).ok_or_else(|| {
                ctx.err_near("listen.addr", "role", "is required for role server")
            })?;
            let listen = listen_addr(&addr).map_err(|m| ctx.err("listen.addr", m))?;
            (Some(listen), None)
        }
        Role::Client => {
            if raw.listen.is_some() {
                return Err(only("listen", "server"));
            }
            if raw.targets.is_some() {
                return Err(only("targets", "server"));
            }
            if raw.limits.is_some() {
                return Err(only("limits", "server"));
            }
            let addr = raw
                .server
                .as_ref()
                .and_then(|s| s.addr.clone())
                .ok_or_else(|| {
                    ctx.err_near("server.addr", "role", "is required for role client")
                })?;
            let server = net::socket_addr(&addr).map_err(|m| ctx.err("server.addr", m))?;
            if server.ip().is_unspecified() {
                return Err(ctx.err("server.addr", format!("{addr:?}: needs the server's IP")));
            }
            (None, Some(server))
        }
    };
    let mut used = HashMap::new();
    let socks5 = socks5_rules(ctx, socks5_raw, &mut used)?;
    let forward = forward_rules(ctx, forward_raw, &mut used)?;
    let network = network(ctx, role, listen, raw.network.unwrap_or_default())?;
    let transport = transport::transport(ctx, raw.transport)?;
    let server_public = raw.server.and_then(|s| s.public_key);
    let auth = auth::auth(
        ctx,
        role,
        transport.kcp.key.clone(),
        raw.identity,
        server_public,
        raw.clients,
    )?;
    let workers = raw.performance.and_then(|p| p.packet_workers);
    let workers: usize = ranged_or(ctx, "performance.packet_workers", workers, 0, 64, 0)?;
    let packet_workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
        n => n,
    };
    let metrics = match raw.metrics.and_then(|m| m.listen) {
        Some(s) => Some(net::socket_addr(&s).map_err(|m| ctx.err("metrics.listen", m))?),
        None => None,
    };
    Ok(Config {
        role,
        log_level,
        listen,
        server,
        socks5,
        forward,
        network,
        transport,
        performance: Performance { packet_workers },
        firewall: Firewall {
            auto: raw.firewall.and_then(|f| f.auto).unwrap_or(true),
        },
        metrics: Metrics { listen: metrics },
        targets: targets(ctx, raw.targets.unwrap_or_default())?,
        limits: limits(ctx, raw.limits.unwrap_or_default())?,
        auth,
    })
}

/// `":port"` (all IPv4 addresses) or `"ip:port"`.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    match s.strip_prefix(':') {
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
            _ => Err(format!(
                "{s:?} is not :port or ip:port with a non-zero port"
            )),
        },
        None => net::socket_addr(s),
    }
}

/// Records a local listener, refusing a second use of the same address and protocol.
fn claim(
    ctx: &Ctx,
    used: &mut HashMap<(SocketAddr, Protocol), String>,
    field: String,
    addr: SocketAddr,
    protocol: Protocol,
) -> Result<(), ConfigError> {
    if let Some(prev) = used.get(&(addr, protocol)) {
        let msg = format!("{addr} ({}) is already used by {prev}", protocol.as_str());
        return Err(ctx.err(&field, msg));
    }
    used.insert((addr, protocol), field);
    Ok(())
}

fn socks5_rules(
    ctx: &Ctx,
    raw: Vec<RawSocks5>,
    used: &mut HashMap<(SocketAddr, Protocol), String>,
) -> Result<Vec<Socks5Rule>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("socks5[{i}].{name}");
        let listen = r
            .listen
            .ok_or_else(|| ctx.err(&f("listen"), "is required"))
            .and_then(|s| net::socket_addr(&s).map_err(|m| ctx.err(&f("listen"), m)))?;
        claim(ctx, used, f("listen"), listen, Protocol::Tcp)?;
        let username = r.username.unwrap_or_default();
        let password = r.password.unwrap_or_default();
        let auth = match (username.is_empty(), password.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(ctx.err(&f("password"), "username is set, so password is required"))
            }
            (true, false) => {
                return Err(ctx.err(&f("username"), "password is set, so username is required"))
            }
            (false, false) => {
                for (name, v) in [("username", &username), ("password", &password)] {
                    if v.len() > 255 {
                        return Err(ctx.err(&f(name), "is longer than 255 bytes (RFC 1929)"));
                    }
                }
                Some(Credentials { username, password })
            }
        };
        out.push(Socks5Rule { listen, auth });
    }
    Ok(out)
}

fn forward_rules(
    ctx: &Ctx,
    raw: Vec<RawForward>,
    used: &mut HashMap<(SocketAddr, Protocol), String>,
) -> Result<Vec<ForwardRule>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("forward[{i}].{name}");
        let protocol = match r.protocol.as_deref() {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(other) => {
                return Err(ctx.err(&f("protocol"), format!("{other:?} is not tcp or udp")))
            }
        };
        let listen = r
            .listen
            .ok_or_else(|| ctx.err(&f("listen"), "is required"))
            .and_then(|s| net::socket_addr(&s).map_err(|m| ctx.err(&f("listen"), m)))?;
        claim(ctx, used, f("listen"), listen, protocol)?;
        let target = r
            .target
            .ok_or_else(|| ctx.err(&f("target"), "is required"))
            .and_then(|s| HostPort::from_str(&s).map_err(|m| ctx.err(&f("target"), m)))?;
        out.push(ForwardRule {
            listen,
            target,
            protocol,
        });
    }
    Ok(out)
}

fn network(
    ctx: &Ctx,
    role: Role,
    listen: Option<SocketAddr>,
    raw: RawNetwork,
) -> Result<Network, ConfigError> {
    let interface = match raw.interface {
        Some(name) => {
            let bad = name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c == '/' || c.is_whitespace());
            if bad {
                let msg = format!("{name:?} is not an interface name (1–15 chars, no / or spaces)");
                return Err(ctx.err("network.interface", msg));
            }
            Some(name)
        }
        None => None,
    };
    let ipv4 = raw
        .ipv4
        .map(|r| addr_config(ctx, "network.ipv4", true, role, listen, r))
        .transpose()?;
    let ipv6 = raw
        .ipv6
        .map(|r| addr_config(ctx, "network.ipv6", false, role, listen, r))
        .transpose()?;
    let tcp = raw.tcp.unwrap_or_default();
    let tcp = TcpShape {
        local_flag: flags(ctx, "network.tcp.local_flag", tcp.local_flag)?,
        remote_flag: flags(ctx, "network.tcp.remote_flag", tcp.remote_flag)?,
        handshake: tcp.handshake.unwrap_or(true),
    };
    let default_sockbuf = match role {
        Role::Client => 4 << 20,
        Role::Server => 8 << 20,
    };
    let sockbuf = raw.pcap.and_then(|p| p.sockbuf);
    let pcap_sockbuf = ranged_or(
        ctx,
        "network.pcap.sockbuf",
        sockbuf,
        1024,
        100 << 20,
        default_sockbuf,
    )?;
    let nat = match &raw.nat {
        None => Nat::Auto,
        Some(Switchable::Bool(true)) => Nat::Yes,
        Some(Switchable::Bool(false)) => Nat::No,
        Some(Switchable::Text(t)) => match t.as_str() {
            "auto" => Nat::Auto,
            "true" | "yes" => Nat::Yes,
            "false" | "no" => Nat::No,
            other => {
                return Err(ctx.err(
                    "network.nat",
                    format!("{other:?} is not true, false or auto"),
                ))
            }
        },
    };
    if nat != Nat::Auto && role == Role::Server {
        return Err(ctx.err("network.nat", "is client-only but role is server"));
    }
    let backend = match raw.backend.as_deref() {
        None | Some("afpacket") => Backend::AfPacket,
        Some("pcap") => Backend::Pcap,
        Some(other) => {
            return Err(ctx.err(
                "network.backend",
                format!("{other:?} is neither afpacket nor pcap"),
            ))
        }
    };
    let qdisc_bypass = raw.afpacket.and_then(|a| a.qdisc_bypass).unwrap_or(false);
    if qdisc_bypass && backend != Backend::AfPacket {
        return Err(ctx.err(
            "network.afpacket.qdisc_bypass",
            "needs network.backend: afpacket (libpcap always sends through the qdisc)",
        ));
    }
    Ok(Network {
        interface,
        ipv4,
        ipv6,
        tcp,
        pcap_sockbuf,
        backend,
        qdisc_bypass,
        nat,
    })
}

fn addr_config(
    ctx: &Ctx,
    section: &str,
    v4: bool,
    role: Role,
    listen: Option<SocketAddr>,
    raw: RawIp,
) -> Result<AddrConfig, ConfigError> {
    let field = format!("{section}.addr");
    let text = raw
        .addr
        .ok_or_else(|| ctx.err(&field, format!("is required when {section} is given")))?;
    let family = if v4 { "IPv4" } else { "IPv6" };
    let mut addr = SocketAddr::from_str(&text)
        .ok()
        .filter(|a| a.is_ipv4() == v4)
        .ok_or_else(|| ctx.err(&field, format!("{text:?} is not {family} ip:port")))?;
    if addr.ip().is_unspecified() {
        let msg = format!("{text:?}: give this host's {family} address, or omit {section}");
        return Err(ctx.err(&field, msg));
    }
    if let (Role::Server, Some(listen)) = (role, listen) {
        match addr.port() {
            0 => addr.set_port(listen.port()),
            p if p == listen.port() => {}
            p => {
                let msg = format!("port {p} must be 0 or listen.addr's port {}", listen.port());
                return Err(ctx.err(&field, msg));
            }
        }
    }
    let router_mac = match raw.router_mac {
        Some(s) => {
            let field = format!("{section}.router_mac");
            Some(net::mac(&s).map_err(|m| ctx.err(&field, m))?)
        }
        None => None,
    };
    Ok(AddrConfig { addr, router_mac })
}

fn flags(ctx: &Ctx, field: &str, raw: Option<Vec<String>>) -> Result<Vec<u8>, ConfigError> {
    let Some(list) = raw else {
        return Ok(vec![0x18]); // "PA"
    };
    if list.is_empty() || list.len() > 64 {
        return Err(ctx.err(field, format!("has {} entries; give 1 to 64", list.len())));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| net::tcp_flags(s).map_err(|m| ctx.err(&format!("{field}[{i}]"), m)))
        .collect()
}

fn targets(ctx: &Ctx, raw: RawTargets) -> Result<TargetAcl, ConfigError> {
    let list = |name: &str, v: Vec<String>| -> Result<Vec<TargetRule>, ConfigError> {
        v.iter()
            .enumerate()
            .map(|(i, s)| {
                TargetRule::from_str(s).map_err(|m| ctx.err(&format!("targets.{name}[{i}]"), m))
            })
            .collect()
    };
    let allow = match raw.allow {
        Some(v) if v.is_empty() => {
            let msg = "is empty, which would refuse every target; omit it for the default [public]";
            return Err(ctx.err("targets.allow", msg));
        }
        Some(v) => Some(list("allow", v)?),
        None => None,
    };
    let deny = list("deny", raw.deny.unwrap_or_default())?;
    Ok(TargetAcl::new(allow, deny))
}

fn limits(ctx: &Ctx, raw: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let f = |name: &str| format!("limits.{name}");
    let n = |name: &str, v: Option<i64>, default: usize| -> Result<usize, ConfigError> {
        ranged_or(ctx, &f(name), v, 1, 1 << 20, default)
    };
    Ok(Limits {
        streams_per_session: n(
            "streams_per_session",
            raw.streams_per_session,
            d.streams_per_session,
        )?,
        dials_per_session: n(
            "dials_per_session",
            raw.dials_per_session,
            d.dials_per_session,
        )?,
        lookups_per_session: n(
            "lookups_per_session",
            raw.lookups_per_session,
            d.lookups_per_session,
        )?,
        udp_associations_per_session: n(
            "udp_associations_per_session",
            raw.udp_associations_per_session,
            d.udp_associations_per_session,
        )?,
        sessions_per_address: n(
            "sessions_per_address",
            raw.sessions_per_address,
            d.sessions_per_address,
        )?,
        lookups: n("lookups", raw.lookups, d.lookups)?,
    })
}
