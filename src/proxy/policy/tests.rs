use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::{unwrap_embedded, Protected, Refusal, TargetPolicy};
use crate::config::{TargetAcl, TargetRule};

const OWN: &str = "198.18.0.2";

fn policy(allow: Option<&[&str]>, deny: &[&str]) -> TargetPolicy {
    let rules = |v: &[&str]| -> Vec<TargetRule> {
        v.iter()
            .map(|s| TargetRule::from_str(s).expect("rule"))
            .collect()
    };
    let acl = TargetAcl::new(allow.map(rules), rules(deny));
    let own = vec![
        IpAddr::from_str(OWN).unwrap(),
        IpAddr::from_str("198.18.0.3").unwrap(), // its /30's broadcast
        IpAddr::from_str("2001:2::2").unwrap(),
        IpAddr::from_str("127.0.0.1").unwrap(),
    ];
    TargetPolicy::with_own_addrs(acl, own)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

#[test]
fn default_refuses_every_protected_class_and_permits_public() {
    let p = policy(None, &[]);
    for (addr, class) in [
        ("127.0.0.1:22", Protected::Loopback),
        ("127.9.9.9:80", Protected::Loopback),
        ("0.0.0.0:80", Protected::Unspecified),
        ("0.1.2.3:80", Protected::Unspecified),
        ("[::]:80", Protected::Unspecified),
        ("[::1]:80", Protected::Unspecified), // also loopback and ::/96; first class wins
        ("10.1.2.3:80", Protected::Private),
        ("172.16.0.1:80", Protected::Private),
        ("172.31.255.255:80", Protected::Private),
        ("192.168.1.1:80", Protected::Private),
        ("100.64.0.1:80", Protected::Shared),
        ("100.100.100.200:80", Protected::Shared),
        ("169.254.169.254:80", Protected::LinkLocal),
        ("[fe80::1]:80", Protected::LinkLocal),
        ("[fd00::1]:80", Protected::UniqueLocal),
        ("[fd00:ec2::254]:80", Protected::UniqueLocal),
        ("224.0.0.1:80", Protected::Multicast),
        ("[ff02::1]:80", Protected::Multicast),
        ("255.255.255.255:80", Protected::Reserved),
        ("240.0.0.1:80", Protected::Reserved),
        ("168.63.129.16:80", Protected::Metadata),
        ("198.18.0.2:80", Protected::OwnAddress),
        ("198.18.0.3:80", Protected::OwnAddress),
        ("[2001:2::2]:80", Protected::OwnAddress),
    ] {
        let got = p.check(sa(addr));
        assert!(matches!(got, Err(Refusal::Protected(_))), "{addr}: {got:?}");
        if let Err(Refusal::Protected(c)) = got {
            if !matches!(addr, "[::1]:80" | "[::]:80") {
                assert_eq!(c, class, "{addr}");
            }
        }
    }
    for addr in [
        "198.18.0.1:80",
        "198.51.100.7:443",
        "[2001:2::1]:80",
        "8.8.8.8:53",
    ] {
        assert_eq!(p.check(sa(addr)), Ok(()), "{addr}");
    }
}

#[test]
fn mapped_and_nat64_forms_are_judged_as_their_ipv4_address() {
    let p = policy(None, &[]);
    assert_eq!(
        unwrap_embedded("64:ff9b::7f00:1".parse().unwrap()),
        IpAddr::from_str("127.0.0.1").unwrap()
    );
    for addr in [
        "[::ffff:127.0.0.1]:22",
        "[64:ff9b::7f00:1]:22",
        "[64:ff9b::a9fe:a9fe]:80",
        "[::ffff:10.0.0.1]:80",
        "[::ffff:198.18.0.2]:80",
        "[64:ff9b:1::1]:80",
        "[::7f00:1]:80", // IPv4-compatible form
    ] {
        assert!(p.check(sa(addr)).is_err(), "{addr}");
    }
    assert_eq!(
        p.check(sa("[64:ff9b::c633:6407]:80")),
        Ok(()),
        "NAT64 of a public address"
    );
}

#[test]
fn allow_opens_a_protected_address_only_from_inside_its_ranges() {
    let p = policy(
        Some(&["public", "127.0.0.1:22", "10.0.0.0/8", "[::1]:8080-8090"]),
        &[],
    );
    assert_eq!(p.check(sa("127.0.0.1:22")), Ok(()));
    assert!(p.check(sa("127.0.0.1:23")).is_err(), "other port");
    assert!(p.check(sa("127.0.0.2:22")).is_err(), "other address");
    assert_eq!(
        p.check(sa("10.9.8.7:80")),
        Ok(()),
        "the private network named"
    );
    assert!(
        p.check(sa("192.168.0.1:80")).is_err(),
        "another private network"
    );
    assert_eq!(p.check(sa("[::1]:8085")), Ok(()));
    assert!(p.check(sa("[::1]:8091")).is_err());
    assert_eq!(p.check(sa("198.51.100.1:80")), Ok(()), "public stays open");

    let wide = policy(Some(&["0.0.0.0/0", "::/0", "169.254.0.0/16"]), &[]);
    assert!(
        wide.check(sa("127.0.0.1:22")).is_err(),
        "0.0.0.0/0 opens no protected range"
    );
    assert!(
        wide.check(sa("198.18.0.2:22")).is_err(),
        "nor the own address"
    );
    assert_eq!(wide.check(sa("169.254.1.1:80")), Ok(()), "link-local named");
    assert!(
        wide.check(sa("169.254.169.254:80")).is_err(),
        "metadata needs its own rule"
    );
    let meta = policy(Some(&["169.254.169.254:80"]), &[]);
    assert_eq!(meta.check(sa("169.254.169.254:80")), Ok(()));

    let own = policy(Some(&["public", "198.18.0.0/30"]), &[]);
    assert!(
        own.check(sa("198.18.0.2:22")).is_err(),
        "own address needs its own rule"
    );
    let own = policy(Some(&["public", "198.18.0.2:22"]), &[]);
    assert_eq!(own.check(sa("198.18.0.2:22")), Ok(()));
    let lo = policy(Some(&["127.0.0.0/8"]), &[]);
    assert_eq!(
        lo.check(sa("127.0.0.1:80")),
        Ok(()),
        "loopback is not also 'own'"
    );
}

#[test]
fn allow_list_without_public_is_a_whitelist_and_deny_wins() {
    let p = policy(
        Some(&["198.18.0.0/15", "127.0.0.1:22"]),
        &["198.19.0.0/16", "127.0.0.1:22"],
    );
    assert_eq!(p.check(sa("198.18.200.1:80")), Ok(()));
    assert_eq!(p.check(sa("198.19.0.1:80")), Err(Refusal::Denied));
    assert_eq!(p.check(sa("127.0.0.1:22")), Err(Refusal::Denied));
    assert_eq!(p.check(sa("192.0.2.1:80")), Err(Refusal::NotAllowed));
    let ports = policy(Some(&["public:80", "public:443"]), &["public:25"]);
    assert_eq!(ports.check(sa("198.51.100.1:443")), Ok(()));
    assert_eq!(ports.check(sa("198.51.100.1:22")), Err(Refusal::NotAllowed));
    assert!(ports.check(sa("10.0.0.1:80")).is_err());
}

#[test]
fn allow_all_permits_everything() {
    let p = TargetPolicy::allow_all();
    assert!(p.permits(sa("127.0.0.1:22")));
    assert!(p.permits(sa("[::]:0")));
}

#[test]
fn system_own_addresses_include_loopback() {
    let p = TargetPolicy::new(TargetAcl::default());
    let own = p.own_addrs();
    assert!(own.iter().any(IpAddr::is_loopback), "{own:?}");
    assert!(p.describe().contains("127.0.0.0/8"));
}

#[test]
fn rule_spelling_round_trips() {
    for text in [
        "public",
        "public:443",
        "127.0.0.1",
        "127.0.0.1:22",
        "10.0.0.0/8",
        "10.0.0.0/8:8000-8100",
        "::1",
        "fd00::/8",
        "[::1]:22",
        "[fd00::/8]:443",
    ] {
        let rule = TargetRule::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rule.to_string(), text);
    }
    for bad in [
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "10.0.0.1/8",
        "[::1]22",
        "x",
        "1.2.3.4:9-1",
        "public:",
    ] {
        assert!(TargetRule::from_str(bad).is_err(), "{bad}");
    }
}
