use super::neighbor::{parse_arp_table, parse_ip_neigh};
use super::process::cap_eff;
use super::*;
use std::net::{IpAddr, Ipv4Addr};

#[test]
fn mac_parsing() {
    assert_eq!(
        parse_mac("02:aB:00:ff:10:0e"),
        Some([2, 0xab, 0, 0xff, 0x10, 0x0e])
    );
    assert_eq!(parse_mac("2:b:0:f:1:e"), Some([2, 0xb, 0, 0xf, 1, 0xe]));
    for bad in [
        "",
        "02:ab:00:ff:10",
        "02:ab:00:ff:10:0e:01",
        "02:ab:00:ff:10:zz",
        "02:ab::ff:10:0e",
        "002:ab:00:ff:10:0e",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

const ARP: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
198.18.0.1       0x1         0x2         52:54:00:12:34:56     *        eth0
198.18.0.1       0x1         0x2         52:54:00:aa:bb:cc     *        eth1
198.18.0.9       0x1         0x0         00:00:00:00:00:00     *        eth0
198.18.0.10      0x1         0x2         garbage               *        eth0
";

#[test]
fn arp_table_parsing() {
    let ip = Ipv4Addr::new(198, 18, 0, 1);
    assert_eq!(
        parse_arp_table(ARP, ip, "eth0"),
        Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(
        parse_arp_table(ARP, ip, "eth1"),
        Some([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc])
    );
    assert_eq!(parse_arp_table(ARP, ip, "eth2"), None);
    assert_eq!(
        parse_arp_table(ARP, Ipv4Addr::new(198, 18, 0, 9), "eth0"),
        None
    );
    assert_eq!(
        parse_arp_table(ARP, Ipv4Addr::new(198, 18, 0, 10), "eth0"),
        None
    );
    assert_eq!(parse_arp_table("", ip, "eth0"), None);
}

#[test]
fn ip_neigh_parsing() {
    assert_eq!(
        parse_ip_neigh("fe80::1 lladdr 52:54:00:12:34:56 router REACHABLE\n"),
        Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(parse_ip_neigh("fe80::1  FAILED\n"), None);
    assert_eq!(parse_ip_neigh("fe80::1 lladdr\n"), None);
    assert_eq!(parse_ip_neigh(""), None);
}

#[test]
fn cap_eff_parsing() {
    let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000002000\n";
    assert_eq!(cap_eff(status), Some(1 << 13));
    assert_eq!(cap_eff("CapEff:\tzz\n"), None);
    assert_eq!(cap_eff("Name: x\n"), None);
}

#[test]
fn loopback_facts() {
    assert_eq!(interface_mac("lo").unwrap(), [0; 6]);
    assert_eq!(interface_mtu("lo").unwrap(), 65536);
    let addrs = interface_addrs("lo").unwrap();
    assert!(
        addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{addrs:?}"
    );
}

#[test]
fn missing_interface_errors() {
    for name in ["rt-no-such0", "", "a-name-longer-than-15"] {
        assert!(interface_mac(name).is_err(), "{name}");
        assert!(interface_mtu(name).is_err(), "{name}");
    }
    let err = interface_mtu("rt-no-such0").unwrap_err().to_string();
    assert!(err.contains("rt-no-such0"), "{err}");
    assert_eq!(
        interface_addrs("rt-no-such0").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[test]
fn neighbor_lookup_of_unknown_address_is_none() {
    let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 255, 254));
    assert_eq!(neighbor_mac(ip, "lo").unwrap(), None);
}

#[test]
fn enter_netns_rejects_bad_names() {
    for name in ["", "a/b", "..", "rt-no-such-netns-0"] {
        assert!(enter_netns(name).is_err(), "{name}");
    }
}
