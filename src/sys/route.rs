//! Detection of what a config may leave out: the interface, the local address, the gateway
//! and its MAC, and whether the interface carries Ethernet headers.
//!
//! A client asks the kernel for its route to the server (`ip -j route get ADDR`); a server
//! takes the default route (`ip -j route show default`), or the interface that owns the
//! configured local address. The link type comes from `ip -j link show dev IFACE` (`ether`
//! → Ethernet; `none` (tun, WireGuard) and `ppp` → raw IP, which needs no MAC). The next
//! hop's MAC is read from the neighbour table; when it has no entry yet, one UDP datagram
//! to the next hop's discard port (9) makes the kernel resolve it (ARP / neighbour
//! discovery), and the table is polled until a deadline ([`RESOLVE_TIMEOUT`]).
//!
//! iproute2's JSON output is parsed with `serde_json`. Every error names what was missing
//! and the config field that supplies it.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long [`detect`] waits for the kernel to resolve the next hop's MAC.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The UDP port the resolution probe is sent to (discard, RFC 863).
const DISCARD_PORT: u16 = 9;

/// What sits in front of the IP header on the detected interface.
pub type LinkKind = crate::wire::LinkType;

/// The result of [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The interface packets leave by.
    pub interface: String,
    /// The local address on it (the route's preferred source, or the configured one).
    pub local_ip: IpAddr,
    /// The gateway of the route, `None` when the destination is on-link (or a server's
    /// interface has no default route).
    pub gateway: Option<IpAddr>,
    /// The MAC of the next hop (gateway, or the on-link destination); `None` on raw-IP
    /// links and for a server without a gateway.
    pub next_hop_mac: Option<[u8; 6]>,
    /// Ethernet or raw IP.
    pub link: LinkKind,
}

/// Why detection failed; each message names the config field that avoids it.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// `ip` could not be started.
    #[error("cannot run `{command}`: {source} (install the iproute2 package)")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// `ip` failed for a reason not covered below.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// `ip` printed something unexpected.
    #[error("cannot understand the output of `{command}`: {detail}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The kernel has no route to the server.
    #[error("no route to {to}: {reason}; set network.interface and {field}.addr")]
    NoRoute {
        /// The server address.
        to: IpAddr,
        /// What the kernel said.
        reason: String,
        /// `network.ipv4` or `network.ipv6`.
        field: &'static str,
    },
    /// The server address belongs to this machine.
    #[error("{to} is an address of this machine, not a remote server; check server.addr")]
    LocalDestination {
        /// The server address.
        to: IpAddr,
    },
    /// A server without configured interface has no default route.
    #[error("no default {family} route to detect the interface from; set network.interface and {field}.addr")]
    NoDefaultRoute {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// `network.ipv4` or `network.ipv6`.
        field: &'static str,
    },
    /// No interface has the configured local address.
    #[error("no interface has the address {ip}; fix {field}.addr or set network.interface")]
    NoInterfaceWithAddr {
        /// The configured address.
        ip: IpAddr,
        /// `network.ipv4` or `network.ipv6`.
        field: &'static str,
    },
    /// The named interface does not exist.
    #[error("there is no interface {interface}; fix network.interface")]
    NoSuchInterface {
        /// The name.
        interface: String,
    },
    /// The interface has no address of the family in use.
    #[error("interface {interface} has no {family} address; set {field}.addr")]
    NoAddress {
        /// The interface.
        interface: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// `network.ipv4` or `network.ipv6`.
        field: &'static str,
    },
    /// The interface's link layer is neither Ethernet nor headerless.
    #[error("interface {interface} has link type `{link_type}`; rawtun works on Ethernet, tun and PPP interfaces: set network.interface")]
    UnsupportedLink {
        /// The interface.
        interface: String,
        /// iproute2's name for its link type.
        link_type: String,
    },
    /// The next hop did not answer ARP / neighbour solicitation in time.
    #[error("the MAC address of {next_hop} on {interface} is unknown: not in the neighbour table and not resolved within {} ms; set {field}.router_mac", waited.as_millis())]
    NoNeighborMac {
        /// The gateway or on-link server.
        next_hop: IpAddr,
        /// The interface.
        interface: String,
        /// How long resolution was waited for.
        waited: Duration,
        /// `network.ipv4` or `network.ipv6`.
        field: &'static str,
    },
}

/// One route of `ip -j route` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub dev: String,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
    /// `type` (`unicast` when absent; `local` for this machine's own addresses).
    pub kind: String,
    pub metric: u64,
}

/// Interface, local address, gateway, next-hop MAC and link type.
///
/// Client: `toward` is the server's address and the route to it decides (restricted to
/// `interface` and `local_ip` when given). Server: `toward` is `None`; the interface is
/// `interface`, else the one owning `local_ip`, else the default route's; the gateway is
/// that interface's default route's. The address family is `toward`'s, else `local_ip`'s,
/// else IPv4.
pub fn detect(
    toward: Option<IpAddr>,
    interface: Option<&str>,
    local_ip: Option<IpAddr>,
) -> Result<Detected, DetectError> {
    let toward = toward.map(|ip| ip.to_canonical());
    let local_ip = local_ip.map(|ip| ip.to_canonical());
    let v6 = toward.or(local_ip).is_some_and(|ip| ip.is_ipv6());
    let fam = Family::new(v6);
    let route = match toward {
        Some(dst) => route_to(dst, interface, local_ip, fam)?,
        None => server_route(interface, local_ip, fam)?,
    };
    let (ifindex, link) = link_of(&route.dev)?;
    let local_ip = match local_ip.or(route.prefsrc) {
        Some(ip) => ip,
        None => first_address(&route.dev, fam)?,
    };
    let next_hop = route.gateway.or(toward);
    let next_hop_mac = match (link, next_hop) {
        (LinkKind::Ethernet, Some(hop)) => {
            Some(resolve_mac(hop, &route.dev, ifindex, local_ip, fam)?)
        }
        _ => None,
    };
    Ok(Detected {
        interface: route.dev,
        local_ip,
        gateway: route.gateway,
        next_hop_mac,
        link,
    })
}

/// The address family in use and the config section that configures it.
#[derive(Clone, Copy)]
struct Family {
    flag: &'static str,
    name: &'static str,
    field: &'static str,
}

impl Family {
    fn new(v6: bool) -> Family {
        if v6 {
            Family {
                flag: "-6",
                name: "IPv6",
                field: "network.ipv6",
            }
        } else {
            Family {
                flag: "-4",
                name: "IPv4",
                field: "network.ipv4",
            }
        }
    }
}

fn route_to(
    dst: IpAddr,
    interface: Option<&str>,
    local_ip: Option<IpAddr>,
    fam: Family,
) -> Result<Route, DetectError> {
    let mut args = vec![
        fam.flag.to_owned(),
        "route".into(),
        "get".into(),
        dst.to_string(),
    ];
    if let Some(src) = local_ip {
        args.extend(["from".into(), src.to_string()]);
    }
    if let Some(dev) = interface {
        args.extend(["oif".into(), dev.to_owned()]);
    }
    let command = command_line(&args);
    let out = ip_json(&args).map_err(|e| match e {
        DetectError::Failed { stderr, .. }
            if stderr.contains("does not exist") || stderr.contains("Cannot find device") =>
        {
            match interface {
                Some(dev) => DetectError::NoSuchInterface {
                    interface: dev.to_owned(),
                },
                None => DetectError::NoRoute {
                    to: dst,
                    reason: stderr,
                    field: fam.field,
                },
            }
        }
        DetectError::Failed { stderr, .. } => DetectError::NoRoute {
            to: dst,
            reason: stderr,
            field: fam.field,
        },
        other => other,
    })?;
    let route = parse_routes(&out)
        .map_err(|detail| DetectError::Parse {
            command: command.clone(),
            detail,
        })?
        .into_iter()
        .next()
        .ok_or_else(|| DetectError::Parse {
            command,
            detail: "no route in the output".into(),
        })?;
    match route.kind.as_str() {
        "local" => Err(DetectError::LocalDestination { to: dst }),
        "unicast" => Ok(route),
        other => Err(DetectError::NoRoute {
            to: dst,
            reason: format!("the route is of type {other}"),
            field: fam.field,
        }),
    }
}

fn server_route(
    interface: Option<&str>,
    local_ip: Option<IpAddr>,
    fam: Family,
) -> Result<Route, DetectError> {
    let args = [fam.flag, "route", "show", "default"].map(str::to_owned);
    let command = command_line(&args);
    let mut defaults =
        parse_routes(&ip_json(&args)?).map_err(|detail| DetectError::Parse { command, detail })?;
    defaults.sort_by_key(|r| r.metric);
    let dev = match (interface, local_ip) {
        (Some(dev), _) => dev.to_owned(),
        (None, Some(ip)) => interface_with_addr(ip, fam)?,
        (None, None) => match defaults.first() {
            Some(route) => route.dev.clone(),
            None => {
                return Err(DetectError::NoDefaultRoute {
                    family: fam.name,
                    field: fam.field,
                })
            }
        },
    };
    let gateway = defaults
        .iter()
        .find(|r| r.dev == dev)
        .and_then(|r| r.gateway);
    Ok(Route {
        dev,
        gateway,
        prefsrc: None,
        kind: "unicast".into(),
        metric: 0,
    })
}

/// The interface that has address `ip` (`ip -j addr show`).
fn interface_with_addr(ip: IpAddr, fam: Family) -> Result<String, DetectError> {
    let args = [fam.flag, "addr", "show"].map(str::to_owned);
    let command = command_line(&args);
    let json = ip_json(&args)?;
    parse_addr_owner(&json, ip)
        .map_err(|detail| DetectError::Parse { command, detail })?
        .ok_or(DetectError::NoInterfaceWithAddr {
            ip,
            field: fam.field,
        })
}

/// Interface index and link kind of `dev` (`ip -j link show dev DEV`).
fn link_of(dev: &str) -> Result<(u32, LinkKind), DetectError> {
    let args = ["link", "show", "dev", dev].map(str::to_owned);
    let command = command_line(&args);
    let json = ip_json(&args).map_err(|e| match e {
        DetectError::Failed { .. } => DetectError::NoSuchInterface {
            interface: dev.to_owned(),
        },
        other => other,
    })?;
    let (ifindex, link_type) =
        parse_link(&json).map_err(|detail| DetectError::Parse { command, detail })?;
    let kind = match link_type.as_str() {
        // Loopback frames carry a (zeroed) Ethernet header.
        "ether" | "loopback" => LinkKind::Ethernet,
        "none" | "ppp" => LinkKind::RawIp,
        _ => {
            return Err(DetectError::UnsupportedLink {
                interface: dev.to_owned(),
                link_type,
            })
        }
    };
    Ok((ifindex, kind))
}

/// The first address of `fam` on `dev`, preferring global over link-local IPv6 addresses.
fn first_address(dev: &str, fam: Family) -> Result<IpAddr, DetectError> {
    let addrs = super::interface_addrs(dev).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DetectError::NoSuchInterface {
            interface: dev.to_owned(),
        },
        _ => DetectError::Failed {
            command: format!("getifaddrs ({dev})"),
            stderr: e.to_string(),
        },
    })?;
    let mut candidates: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|ip| ip.is_ipv6() == (fam.flag == "-6") && !ip.is_loopback())
        .collect();
    candidates.sort_by_key(is_link_local);
    candidates.first().copied().ok_or(DetectError::NoAddress {
        interface: dev.to_owned(),
        family: fam.name,
        field: fam.field,
    })
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// The MAC of `hop` on `dev`: from the neighbour table, else after prompting the kernel to
/// resolve it with a UDP datagram to the discard port, polling until [`RESOLVE_TIMEOUT`].
fn resolve_mac(
    hop: IpAddr,
    dev: &str,
    ifindex: u32,
    local_ip: IpAddr,
    fam: Family,
) -> Result<[u8; 6], DetectError> {
    let lookup = || super::neighbor_mac(hop, dev).ok().flatten();
    if let Some(mac) = lookup() {
        return Ok(mac);
    }
    let start = Instant::now();
    let deadline = start + RESOLVE_TIMEOUT;
    let mut next_probe = start;
    loop {
        let now = Instant::now();
        if now >= next_probe {
            probe(hop, local_ip, ifindex);
            next_probe = now + Duration::from_millis(500);
        }
        if let Some(mac) = lookup() {
            return Ok(mac);
        }
        if now >= deadline {
            return Err(DetectError::NoNeighborMac {
                next_hop: hop,
                interface: dev.to_owned(),
                waited: now - start,
                field: fam.field,
            });
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline - now));
    }
}

/// Sends one empty UDP datagram from `local_ip` to `hop`:9 so the kernel resolves `hop`'s
/// link address. Failures are ignored: the neighbour table is what is checked afterwards.
fn probe(hop: IpAddr, local_ip: IpAddr, ifindex: u32) {
    let scoped = |ip: IpAddr, port: u16| match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, ifindex))
        }
        _ => SocketAddr::new(ip, port),
    };
    if let Ok(socket) = UdpSocket::bind(scoped(local_ip, 0)) {
        let _ = socket.send_to(&[], scoped(hop, DISCARD_PORT));
    }
}

fn command_line(args: &[String]) -> String {
    format!("ip -j {}", args.join(" "))
}

/// Runs `ip -j ARGS` and returns its stdout.
fn ip_json(args: &[String]) -> Result<String, DetectError> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| DetectError::Spawn {
            command: command_line(args),
            source,
        })?;
    if !out.status.success() {
        return Err(DetectError::Failed {
            command: command_line(args),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json_array(json: &str) -> Result<Vec<Value>, String> {
    // `ip -j` prints nothing at all for an empty list on some versions.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str(json).map_err(|e| e.to_string())? {
        Value::Array(items) => Ok(items),
        other => Err(format!("expected a JSON array, got {other}")),
    }
}

fn ip_field(obj: &Value, key: &str) -> Result<Option<IpAddr>, String> {
    match obj.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("`{key}` is not an IP address: {text:?}")),
    }
}

/// Routes of `ip -j route get` / `ip -j route show` output.
pub(crate) fn parse_routes(json: &str) -> Result<Vec<Route>, String> {
    json_array(json)?
        .iter()
        .map(|obj| {
            let dev = obj
                .get("dev")
                .and_then(Value::as_str)
                .ok_or("a route without `dev`")?
                .to_owned();
            // IPv4 routes via an IPv6 gateway (RFC 5549) carry `via: {family, host}`.
            let gateway = match ip_field(obj, "gateway")? {
                Some(ip) => Some(ip),
                None => match obj.get("via") {
                    Some(via) => ip_field(via, "host")?,
                    None => None,
                },
            };
            Ok(Route {
                dev,
                gateway,
                prefsrc: ip_field(obj, "prefsrc")?,
                kind: obj
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unicast")
                    .to_owned(),
                metric: obj.get("metric").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// `ifindex` and `link_type` of `ip -j link show dev DEV` output.
pub(crate) fn parse_link(json: &str) -> Result<(u32, String), String> {
    let items = json_array(json)?;
    let link = items.first().ok_or("no interface in the output")?;
    let ifindex = link
        .get("ifindex")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("no `ifindex`")?;
    let link_type = link
        .get("link_type")
        .and_then(Value::as_str)
        .ok_or("no `link_type`")?;
    Ok((ifindex, link_type.to_owned()))
}

/// The interface whose `addr_info` has `local == ip`, from `ip -j addr show` output.
pub(crate) fn parse_addr_owner(json: &str, ip: IpAddr) -> Result<Option<String>, String> {
    for link in json_array(json)? {
        let Some(infos) = link.get("addr_info").and_then(Value::as_array) else {
            continue;
        };
        for info in infos {
            if ip_field(info, "local")? == Some(ip) {
                let name = link
                    .get("ifname")
                    .and_then(Value::as_str)
                    .ok_or("an interface without `ifname`")?;
                return Ok(Some(name.to_owned()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
