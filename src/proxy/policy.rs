//! The server's target policy: which destination addresses a client may reach, checked on
//! every address actually connected to or sent to (after name resolution).
//!
//! Safe by default: without a `targets` section the server refuses the ranges that reach
//! the server itself or the networks behind it, and reaches only the public internet:
//!
//! | class | ranges |
//! |---|---|
//! | unspecified | `0.0.0.0/8`, `::/128` (connecting to them reaches loopback on Linux) |
//! | loopback | `127.0.0.0/8`, `::1/128` |
//! | IPv4-compatible | `::/96` (deprecated embedding) |
//! | private | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fec0::/10` (site-local) |
//! | shared | `100.64.0.0/10` (carrier-grade NAT; one cloud's metadata lives there) |
//! | link-local | `169.254.0.0/16`, `fe80::/10` |
//! | unique-local | `fc00::/7` |
//! | multicast | `224.0.0.0/4`, `ff00::/8` |
//! | reserved | `240.0.0.0/4` (includes the broadcast address `255.255.255.255`) |
//! | NAT64 local-use | `64:ff9b:1::/48` |
//! | metadata | `169.254.169.254`, `169.254.170.2`, `100.100.100.200`, `168.63.129.16`, `fd00:ec2::254`, `fd20:ce::254` |
//! | own address | every address (and IPv4 broadcast address) of the server's interfaces, loopback aside (it is its own class) |
//!
//! Addresses are unwrapped first: an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) and an
//! address under the NAT64 well-known prefix `64:ff9b::/96` are judged as the IPv4 address
//! they carry.
//!
//! Then (see [`TargetAcl`]): a matching `targets.deny` rule refuses; a matching
//! `targets.allow` rule permits, but an address in protected classes only when the rule's
//! network lies inside every protected range that holds the address (so `127.0.0.1:22`
//! opens the server's sshd, `10.0.0.0/8` opens that private network, `0.0.0.0/0` opens
//! neither, and the metadata address needs its own rule); anything else is refused.
//! `allow` defaults to `[public]`, which matches every address but opens no protected one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Cidr, TargetAcl, TargetNet};

/// How long the list of the server's own addresses is reused before it is read again.
const OWN_ADDRS_TTL: Duration = Duration::from_secs(5);

/// The built-in protected classes and their ranges (see the module docs).
const PROTECTED: &[(Protected, &[&str])] = &[
    (Protected::Unspecified, &["0.0.0.0/8", "::/128"]),
    (Protected::Loopback, &["127.0.0.0/8", "::1/128"]),
    (Protected::Ipv4Compatible, &["::/96"]),
    (
        Protected::Private,
        &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fec0::/10"],
    ),
    (Protected::Shared, &["100.64.0.0/10"]),
    (Protected::LinkLocal, &["169.254.0.0/16", "fe80::/10"]),
    (Protected::UniqueLocal, &["fc00::/7"]),
    (Protected::Multicast, &["224.0.0.0/4", "ff00::/8"]),
    (Protected::Reserved, &["240.0.0.0/4"]),
    (Protected::Nat64Local, &["64:ff9b:1::/48"]),
    (
        Protected::Metadata,
        &[
            "169.254.169.254/32",
            "169.254.170.2/32",
            "100.100.100.200/32",
            "168.63.129.16/32",
            "fd00:ec2::254/128",
            "fd20:ce::254/128",
        ],
    ),
];

/// Why an address is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protected {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `::/96`.
    Ipv4Compatible,
    /// RFC 1918 and IPv6 site-local.
    Private,
    /// `100.64.0.0/10` (RFC 6598).
    Shared,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` and the broadcast address.
    Reserved,
    /// `64:ff9b:1::/48` (RFC 8215).
    Nat64Local,
    /// Cloud instance metadata services.
    Metadata,
    /// An address of one of the server's own interfaces.
    OwnAddress,
}

impl Protected {
    /// A short name for logs and `rawtun check`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protected::Unspecified => "unspecified",
            Protected::Loopback => "loopback",
            Protected::Ipv4Compatible => "IPv4-compatible",
            Protected::Private => "private",
            Protected::Shared => "shared (CGNAT)",
            Protected::LinkLocal => "link-local",
            Protected::UniqueLocal => "unique-local",
            Protected::Multicast => "multicast",
            Protected::Reserved => "reserved/broadcast",
            Protected::Nat64Local => "NAT64 local-use",
            Protected::Metadata => "cloud metadata",
            Protected::OwnAddress => "the server's own address",
        }
    }
}

/// Why the policy refused an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A `targets.deny` rule matched.
    #[error("matches targets.deny")]
    Denied,
    /// The address is protected and no allow rule opens it.
    #[error("{} address, not opened by targets.allow", .0.as_str())]
    Protected(Protected),
    /// No `targets.allow` rule matches.
    #[error("not in targets.allow")]
    NotAllowed,
}

/// The last list of own addresses and when it was read.
type OwnCache = Arc<Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>>>;

/// Where the server's own addresses come from.
#[derive(Clone)]
enum OwnSource {
    /// Read from the interfaces (getifaddrs), cached for [`OWN_ADDRS_TTL`].
    System(OwnCache),
    /// A fixed list (tests).
    Fixed(Arc<Vec<IpAddr>>),
}

/// The effective target policy: the config's rules, the protected ranges and the server's
/// own addresses. Cheap to clone.
#[derive(Clone)]
pub struct TargetPolicy {
    acl: TargetAcl,
    own: OwnSource,
    /// Every address permitted (tests and tools only).
    open: bool,
}

impl fmt::Debug for TargetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetPolicy")
            .field("acl", &self.acl)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// `addr` as the address the policy judges: IPv4-mapped and NAT64 (`64:ff9b::/96`)
/// addresses become the IPv4 address they carry.
pub fn unwrap_embedded(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            const NAT64: u128 = 0x0064_ff9b_u128 << 96;
            if bits >> 32 == NAT64 >> 32 {
                return IpAddr::V4(Ipv4Addr::from(bits as u32));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn cidr(text: &str) -> Cidr {
    Cidr::from_str(text).expect("invariant: the built-in protected ranges are valid CIDRs")
}

fn host(ip: IpAddr) -> Cidr {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    cidr(&format!("{ip}/{prefix}"))
}

/// Whether network `inner` lies inside network `outer`.
fn inside(inner: &Cidr, outer: &Cidr) -> bool {
    inner.addr().is_ipv4() == outer.addr().is_ipv4()
        && inner.prefix() >= outer.prefix()
        && outer.contains(inner.addr())
}

impl TargetPolicy {
    /// The policy of `acl` with the server's own addresses read from its interfaces.
    pub fn new(acl: TargetAcl) -> TargetPolicy {
        TargetPolicy {
            acl,
            own: OwnSource::System(Arc::default()),
            open: false,
        }
    }

    /// The policy of `acl` with a fixed list of own addresses (tests).
    pub fn with_own_addrs(acl: TargetAcl, own: Vec<IpAddr>) -> TargetPolicy {
        TargetPolicy {
            acl,
            own: OwnSource::Fixed(Arc::new(own)),
            open: false,
        }
    }

    /// A policy that permits every address (tests and tools that dial on purpose).
    pub fn allow_all() -> TargetPolicy {
        TargetPolicy {
            acl: TargetAcl::default(),
            own: OwnSource::Fixed(Arc::default()),
            open: true,
        }
    }

    /// The rules.
    pub fn acl(&self) -> &TargetAcl {
        &self.acl
    }

    /// The server's own addresses now (read at most every few seconds).
    pub fn own_addrs(&self) -> Arc<Vec<IpAddr>> {
        match &self.own {
            OwnSource::Fixed(list) => list.clone(),
            OwnSource::System(cache) => {
                let mut slot = cache.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if let Some((at, list)) = slot.as_ref() {
                    if now.saturating_duration_since(*at) < OWN_ADDRS_TTL {
                        return list.clone();
                    }
                }
                let list = match crate::sys::local_addrs() {
                    Ok(list) => Arc::new(list),
                    Err(error) => {
                        // Keep the last list rather than forget every own address.
                        tracing::warn!(%error, "cannot read the interface addresses");
                        slot.as_ref().map(|(_, l)| l.clone()).unwrap_or_default()
                    }
                };
                *slot = Some((now, list.clone()));
                list
            }
        }
    }

    /// The protected ranges that hold `ip` (already unwrapped), with their class.
    pub fn protected_ranges(&self, ip: IpAddr) -> Vec<(Protected, Cidr)> {
        let mut out: Vec<(Protected, Cidr)> = PROTECTED
            .iter()
            .flat_map(|(class, ranges)| ranges.iter().map(move |r| (*class, cidr(r))))
            .filter(|(_, c)| c.contains(ip))
            .collect();
        // Loopback addresses are the loopback class already (all of 127/8 is local).
        let own = self.own_addrs();
        if !ip.is_loopback() && own.iter().any(|a| unwrap_embedded(*a) == ip) {
            out.push((Protected::OwnAddress, host(ip)));
        }
        out
    }

    /// Checks one destination the server is about to connect or send to.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refusal> {
        if self.open {
            return Ok(());
        }
        let ip = unwrap_embedded(addr.ip());
        let addr = SocketAddr::new(ip, addr.port());
        if self.acl.deny().iter().any(|r| r.matches(addr)) {
            return Err(Refusal::Denied);
        }
        let protected = self.protected_ranges(ip);
        let matching = self.acl.allow().iter().filter(|r| r.matches(addr));
        for rule in matching {
            let opens = match rule.net {
                TargetNet::Public => protected.is_empty(),
                TargetNet::Net(net) => protected.iter().all(|(_, range)| inside(&net, range)),
            };
            if opens {
                return Ok(());
            }
        }
        match protected.first() {
            Some((class, _)) => Err(Refusal::Protected(*class)),
            None => Err(Refusal::NotAllowed),
        }
    }

    /// Whether the policy permits `addr`.
    pub fn permits(&self, addr: SocketAddr) -> bool {
        self.check(addr).is_ok()
    }

    /// The effective policy as text, for `rawtun check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let list = |rules: &[crate::config::TargetRule]| {
            if rules.is_empty() {
                "(none)".to_owned()
            } else {
                rules
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "  deny (wins):  {}", list(self.acl.deny()));
        let _ = writeln!(s, "  allow:        {}", list(self.acl.allow()));
        let _ = writeln!(
            s,
            "  protected (refused unless an allow rule inside the range names them):"
        );
        for (class, ranges) in PROTECTED {
            let _ = writeln!(s, "    {:<24} {}", class.as_str(), ranges.join(", "));
        }
        let own = self.own_addrs();
        let own: Vec<String> = own
            .iter()
            .filter(|a| !a.is_loopback())
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            s,
            "    {:<24} {}",
            Protected::OwnAddress.as_str(),
            if own.is_empty() {
                "(none found)".to_owned()
            } else {
                own.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "  IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96) addresses are judged as the IPv4 address they carry"
        );
        s
    }
}

#[cfg(test)]
mod tests;
