//! `rawtun::sys::route::detect` in network namespaces (root only): a client's route to a
//! far server via the veth peer as gateway, with the gateway's MAC resolved from an empty
//! neighbour table; a server's default route; an on-link server; a tun interface (raw IP,
//! no MAC); and the errors for no route, an unanswered gateway and a missing interface.

mod common;

use common::{Netns, Topology};
use rawtun::sys::route::{detect, DetectError, LinkKind};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// A "server" beyond the gateway (198.19.0.0/16 is inside 198.18.0.0/15 and unused by the
/// harness's /30s, which live in 198.18.0.0/16).
const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn neighbours(ns: &Netns) -> String {
    ns.exec_ok(&["ip", "neigh", "show"])
}

/// A pair whose client namespace has a default route via the server's veth address.
fn routed_pair() -> Topology {
    let t = Topology::pair();
    let gw = t.server_ip.to_string();
    t.client
        .exec_ok(&["ip", "route", "add", "default", "via", &gw]);
    t
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn client_finds_interface_address_gateway_and_its_mac() {
    common::require_root();
    let t = routed_pair();
    assert!(
        !neighbours(&t.client).contains(&t.server_ip.to_string()),
        "the neighbour table starts empty: {}",
        neighbours(&t.client)
    );
    let found = t
        .client
        .run(|| detect(Some(IpAddr::V4(FAR)), None, None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.interface, t.client_if);
    assert_eq!(found.local_ip, IpAddr::V4(t.client_ip));
    assert_eq!(found.gateway, Some(IpAddr::V4(t.server_ip)));
    assert_eq!(found.next_hop_mac.map(mac_text), Some(t.server_mac.clone()));
    assert_eq!(found.link, LinkKind::Ethernet);

    // A server in the same namespace: the default route's interface and gateway.
    let server = t
        .client
        .run(|| detect(None, None, None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server, found);
    // ... or the interface owning the configured address.
    let ip = IpAddr::V4(t.client_ip);
    let by_addr = t
        .client
        .run(move || detect(None, None, Some(ip)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_addr, found);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn on_link_server_is_its_own_next_hop() {
    common::require_root();
    let t = Topology::pair();
    let server = IpAddr::V4(t.server_ip);
    let ifname = t.client_if.clone();
    let found = t
        .client
        .run(move || detect(Some(server), Some(&ifname), None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.interface, t.client_if);
    assert_eq!(found.gateway, None);
    assert_eq!(found.next_hop_mac.map(mac_text), Some(t.server_mac.clone()));
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn tun_interface_is_raw_ip_without_mac() {
    common::require_root();
    let ns = Netns::new("dtun");
    ns.exec_ok(&["ip", "tuntap", "add", "mode", "tun", "name", "rttun0"]);
    ns.exec_ok(&["ip", "addr", "add", "198.19.230.1/24", "dev", "rttun0"]);
    ns.exec_ok(&["ip", "link", "set", "rttun0", "up"]);
    ns.exec_ok(&["ip", "route", "add", "default", "dev", "rttun0"]);
    let found = ns
        .run(|| detect(Some(IpAddr::V4(FAR)), None, None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.interface, "rttun0");
    assert_eq!(found.local_ip, IpAddr::V4(Ipv4Addr::new(198, 19, 230, 1)));
    assert_eq!(found.gateway, None);
    assert_eq!(found.next_hop_mac, None);
    assert_eq!(found.link, LinkKind::RawIp);
    let server = ns
        .run(|| detect(None, None, None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server, found);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn errors_say_what_is_missing() {
    common::require_root();
    let t = Topology::pair();
    // No default route: neither a client to a far server nor a server can be detected.
    let err = t
        .client
        .run(|| detect(Some(IpAddr::V4(FAR)), None, None))
        .unwrap_err();
    assert!(matches!(err, DetectError::NoRoute { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("set network.interface and network.ipv4.addr"),
        "{err}"
    );
    let err = t.client.run(|| detect(None, None, None)).unwrap_err();
    assert!(matches!(err, DetectError::NoDefaultRoute { .. }), "{err}");
    // The server's own address.
    let own = IpAddr::V4(t.client_ip);
    let err = t
        .client
        .run(move || detect(Some(own), None, None))
        .unwrap_err();
    assert!(matches!(err, DetectError::LocalDestination { .. }), "{err}");
    // A configured interface that does not exist.
    let err = t
        .client
        .run(|| detect(Some(IpAddr::V4(FAR)), Some("nope0"), None))
        .unwrap_err();
    assert!(matches!(err, DetectError::NoSuchInterface { .. }), "{err}");
    let err = t
        .client
        .run(|| detect(None, Some("nope0"), None))
        .unwrap_err();
    assert!(matches!(err, DetectError::NoSuchInterface { .. }), "{err}");
    // An address no interface has.
    let stray = IpAddr::V4(Ipv4Addr::new(198, 19, 250, 250));
    let err = t
        .client
        .run(move || detect(None, None, Some(stray)))
        .unwrap_err();
    assert!(
        matches!(err, DetectError::NoInterfaceWithAddr { .. }),
        "{err}"
    );

    // A gateway nobody answers for: the MAC error after the bounded wait.
    t.client
        .exec_ok(&["ip", "addr", "add", "198.19.240.1/24", "dev", &t.client_if]);
    t.client
        .exec_ok(&["ip", "route", "add", "default", "via", "198.19.240.9"]);
    let start = Instant::now();
    let err = t
        .client
        .run(|| detect(Some(IpAddr::V4(FAR)), None, None))
        .unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, DetectError::NoNeighborMac { .. }), "{err}");
    assert!(
        err.to_string().ends_with("set network.ipv4.router_mac"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
