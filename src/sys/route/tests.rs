use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn route_get_via_gateway() {
    let json = r#"[{"dst":"198.18.9.9","gateway":"198.18.5.2","dev":"va","prefsrc":"198.18.5.1","flags":[],"uid":0,"cache":[]}]"#;
    assert_eq!(
        parse_routes(json).unwrap(),
        [Route {
            dev: "va".into(),
            gateway: Some(v4(198, 18, 5, 2)),
            prefsrc: Some(v4(198, 18, 5, 1)),
            kind: "unicast".into(),
            metric: 0,
        }]
    );
}

#[test]
fn route_get_ipv6_link_local_gateway_and_metric() {
    let json = r#"[{"dst":"2001:db8:5::9","from":"::","gateway":"fe80::1","dev":"va","prefsrc":"2001:db8::1","metric":1024,"flags":[],"pref":"medium"}]"#;
    let route = &parse_routes(json).unwrap()[0];
    assert_eq!(route.gateway, Some("fe80::1".parse().unwrap()));
    assert_eq!(route.prefsrc, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(route.metric, 1024);
}

#[test]
fn route_get_local_on_link_and_via() {
    let local = r#"[{"type":"local","dst":"198.18.5.1","dev":"lo","prefsrc":"198.18.5.1","flags":[],"uid":0,"cache":["local"]}]"#;
    assert_eq!(parse_routes(local).unwrap()[0].kind, "local");
    let on_link = r#"[{"dst":"198.18.6.9","dev":"tun7","prefsrc":"198.18.6.1","flags":[],"uid":0,"cache":[]}]"#;
    let route = &parse_routes(on_link).unwrap()[0];
    assert_eq!((route.dev.as_str(), route.gateway), ("tun7", None));
    let via =
        r#"[{"dst":"default","via":{"family":"inet6","host":"fe80::1"},"dev":"eth0","flags":[]}]"#;
    assert_eq!(
        parse_routes(via).unwrap()[0].gateway,
        Some(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)))
    );
}

#[test]
fn route_parse_errors_and_empty_output() {
    assert_eq!(parse_routes("").unwrap(), []);
    assert_eq!(parse_routes("[]\n").unwrap(), []);
    assert!(
        parse_routes(r#"[{"dst":"default","gateway":"198.18.5.2"}]"#)
            .unwrap_err()
            .contains("dev")
    );
    assert!(parse_routes(r#"[{"dev":"x","gateway":"not-ip"}]"#)
        .unwrap_err()
        .contains("gateway"));
    assert!(parse_routes(r#"{"dev":"x"}"#).is_err());
    assert!(parse_routes("[{").is_err());
}

#[test]
fn link_types() {
    let tun =
        r#"[{"ifindex":4,"ifname":"tun7","flags":["NOARP","UP"],"mtu":1500,"link_type":"none"}]"#;
    assert_eq!(parse_link(tun).unwrap(), (4, "none".to_owned()));
    let eth = r#"[{"ifindex":3,"link":"vb","ifname":"va","link_type":"ether","address":"02:00:00:00:00:01"}]"#;
    assert_eq!(parse_link(eth).unwrap(), (3, "ether".to_owned()));
    assert!(parse_link("[]").is_err());
    assert!(parse_link(r#"[{"ifindex":3}]"#).is_err());
    assert!(parse_link(r#"[{"link_type":"ether","ifindex":-1}]"#).is_err());
}

#[test]
fn address_owner() {
    let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
        {"ifindex":3,"ifname":"va","addr_info":[{"family":"inet","local":"198.18.5.1","prefixlen":24}]},
        {"ifindex":5,"ifname":"empty"},
        {"ifindex":4,"ifname":"tun7","addr_info":[{"family":"inet","local":"198.18.6.1","prefixlen":24}]}]"#;
    assert_eq!(
        parse_addr_owner(json, v4(198, 18, 6, 1))
            .unwrap()
            .as_deref(),
        Some("tun7")
    );
    assert_eq!(parse_addr_owner(json, v4(198, 18, 6, 2)).unwrap(), None);
}

#[test]
fn errors_name_the_config_field() {
    let err = DetectError::NoNeighborMac {
        next_hop: v4(198, 18, 5, 2),
        interface: "va".into(),
        waited: Duration::from_millis(2000),
        field: "network.ipv4",
    };
    assert_eq!(
        err.to_string(),
        "the MAC address of 198.18.5.2 on va is unknown: not in the neighbour table and not \
         resolved within 2000 ms; set network.ipv4.router_mac"
    );
    let err = DetectError::NoDefaultRoute {
        family: "IPv6",
        field: "network.ipv6",
    };
    assert!(err
        .to_string()
        .ends_with("set network.interface and network.ipv6.addr"));
}
