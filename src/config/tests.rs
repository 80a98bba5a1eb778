//! Unit tests of the config module: presets, defaults, parsers and window arithmetic.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use proptest::prelude::*;

use super::net::{mac, mac_string, tcp_flags, tcp_flags_string};
use super::*;

const CLIENT: &str =
    "role: client\nserver:\n  addr: \"203.0.113.10:9999\"\ntransport:\n  kcp:\n    key: \"k3y\"\n";
const SERVER: &str =
    "role: server\nlisten:\n  addr: \":9999\"\ntransport:\n  kcp:\n    key: \"k3y\"\n";

fn with(base: &str, extra: &str) -> Result<Config, ConfigError> {
    parse(&format!("{base}{extra}"), "t.yaml")
}

fn kcp_with(lines: &str) -> Result<Kcp, ConfigError> {
    let indented: String = lines.lines().map(|l| format!("    {l}\n")).collect();
    with(CLIENT, &indented).map(|c| c.transport.kcp)
}

#[test]
fn minimal_client_gets_all_defaults() {
    let c = with(CLIENT, "").expect("valid");
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.network.tcp.local_flag, vec![0x18]);
    assert!(c.network.tcp.handshake);
    assert_eq!(c.network.pcap_sockbuf, 4 << 20);
    assert_eq!(c.network.backend, Backend::AfPacket);
    let k = &c.transport.kcp;
    assert_eq!(
        (k.mode, k.nodelay, k.interval_ms),
        (KcpMode::Fast, false, 30)
    );
    assert_eq!((k.mtu, k.rcvwnd, k.sndwnd), (1350, 8192, 8192));
    assert_eq!((k.smuxbuf, k.streambuf), (32 << 20, 8 << 20));
    let t = c.transport.timeouts;
    assert_eq!(t.keepalive, Duration::from_secs(10));
    assert_eq!(t.idle, Duration::from_secs(60));
    assert!(c.firewall.auto);
    assert!(c.performance.packet_workers >= 1 && c.performance.packet_workers <= 64);
    assert!(!c.network.qdisc_bypass);
    let pcap = with(CLIENT, "network:\n  backend: pcap\n").expect("valid");
    assert_eq!(pcap.network.backend, Backend::Pcap);
    let bypass = with(CLIENT, "network:\n  afpacket:\n    qdisc_bypass: true\n").expect("valid");
    assert!(bypass.network.qdisc_bypass);
    let s = with(SERVER, "").expect("valid");
    assert_eq!(s.network.pcap_sockbuf, 8 << 20);
    assert_eq!(s.listen, Some("0.0.0.0:9999".parse().unwrap()));
}

#[test]
fn every_mode_applies_its_preset() {
    for (mode, nodelay, interval) in [
        ("normal", false, 40),
        ("fast", false, 30),
        ("fast2", true, 20),
        ("fast3", true, 10),
        ("manual", false, 30),
    ] {
        let k = kcp_with(&format!("mode: {mode}")).expect("valid");
        assert_eq!(
            (k.nodelay, k.interval_ms, k.resend, k.nocongestion),
            (nodelay, interval, 2, true),
            "{mode}"
        );
    }
}

#[test]
fn explicit_values_win_in_any_mode_and_accept_bools() {
    let k = kcp_with("mode: normal\nnodelay: true\ninterval: 15\nresend: 0\nnocongestion: false")
        .expect("valid");
    assert_eq!(
        (k.nodelay, k.interval_ms, k.resend, k.nocongestion),
        (true, 15, 0, false)
    );
    let k = kcp_with("mode: fast3\nnodelay: 0\nnocongestion: 0").expect("valid");
    assert_eq!(
        (k.nodelay, k.nocongestion, k.interval_ms),
        (false, false, 10)
    );
}

#[test]
fn streambuf_default_follows_a_small_smuxbuf() {
    let k = kcp_with("smuxbuf: 4194304").expect("valid");
    assert_eq!(k.streambuf, 4 << 20);
    let e = kcp_with("smuxbuf: 4194304\nstreambuf: 8388608").expect_err("stream > session");
    assert_eq!(e.field, "transport.kcp.streambuf");
    assert_eq!(e.line, Some(8));
}

#[test]
fn window_caps_match_the_documented_arithmetic() {
    let k = kcp_with("").expect("valid");
    let (kcp, stream) = k.window_cap_bps(Duration::from_millis(200));
    assert_eq!(kcp, 8192 * 1350 * 8 * 5); // 442_368_000
    assert_eq!(stream, (8u64 << 20) * 8 * 5); // 335_544_320
    let (kcp500, _) = k.window_cap_bps(Duration::from_millis(500));
    assert_eq!(kcp500, 8192 * 1350 * 8 * 2);
    let paqet = kcp_with("rcvwnd: 512\nsndwnd: 128").expect("valid");
    let (cap, _) = paqet.window_cap_bps(Duration::from_millis(200));
    assert_eq!(cap, 128 * 1350 * 8 * 5, "the smaller window caps"); // ≈ 6.9 Mbit/s
    assert_eq!(k.window_cap_bps(Duration::ZERO), (u64::MAX, u64::MAX));
}

#[test]
fn timeouts_rules() {
    let t = |s: &str| with(CLIENT, &format!("  timeouts:\n{s}"));
    let e = t("    keepalive: 40\n    idle: 60\n").expect_err("idle too short");
    assert_eq!(
        (e.field.as_str(), e.line),
        ("transport.timeouts.idle", Some(9))
    );
    let c = t("    keepalive: 40\n").expect("idle follows keepalive");
    assert_eq!(c.transport.timeouts.idle, Duration::from_secs(120));
    assert!(t("    idle: 29\n").is_err());
    assert!(t("    dial: 0\n").is_err());
}

#[test]
fn server_address_ports_resolve_to_listen() {
    let c = with(SERVER, "network:\n  ipv4:\n    addr: \"203.0.113.10:0\"\n").expect("valid");
    let v4 = c.network.ipv4.expect("ipv4");
    assert_eq!(v4.addr.port(), 9999);
    assert_eq!(v4.router_mac, None);
    let e = with(SERVER, "network:\n  ipv4:\n    addr: \"203.0.113.10:80\"\n").expect_err("port");
    assert_eq!((e.field.as_str(), e.line), ("network.ipv4.addr", Some(9)));
    let e = with(CLIENT, "network:\n  ipv6:\n    addr: \"198.18.0.1:0\"\n").expect_err("family");
    assert_eq!(e.field, "network.ipv6.addr");
    let e = with(
        CLIENT,
        "network:\n  ipv4:\n    router_mac: \"aa:bb:cc:dd:ee:ff\"\n",
    )
    .expect_err("addr");
    assert_eq!((e.field.as_str(), e.line), ("network.ipv4.addr", Some(8)));
}

#[test]
fn other_refusals() {
    let cases = [
        (CLIENT, "log:\n  level: loud\n", "log.level"),
        (CLIENT, "network:\n  backend: xdp\n", "network.backend"),
        (CLIENT, "network:\n  backend: pcap\n  afpacket:\n    qdisc_bypass: true\n", "network.afpacket.qdisc_bypass"),
        (CLIENT, "network:\n  interface: \"a very long name\"\n", "network.interface"),
        (CLIENT, "network:\n  tcp:\n    remote_flag: []\n", "network.tcp.remote_flag"),
        (CLIENT, "network:\n  tcp:\n    remote_flag:\n      - PA\n      - N\n", "network.tcp.remote_flag[1]"),
        (CLIENT, "network:\n  pcap:\n    sockbuf: 512\n", "network.pcap.sockbuf"),
        (CLIENT, "targets:\n  deny: [\"10.0.0.0/8\"]\n", "targets"),
        (SERVER, "server:\n  addr: \"203.0.113.1:1\"\n", "server"),
        (SERVER, "targets:\n  allow: []\n", "targets.allow"),
        (SERVER, "targets:\n  deny:\n    - \"10.0.0.1/8\"\n", "targets.deny[0]"),
        (SERVER, "forward:\n  - listen: \"127.0.0.1:1\"\n    target: \"a:1\"\n", "forward"),
        (CLIENT, "forward:\n  - listen: \"127.0.0.1:1\"\n    target: \"::1:80\"\n", "forward[0].target"),
        (CLIENT, "forward:\n  - listen: \"127.0.0.1:1\"\n    target: \"1.2.3.999:80\"\n", "forward[0].target"),
        (CLIENT, "forward:\n  - listen: \"127.0.0.1:1\"\n    target: \"a.example:0\"\n", "forward[0].target"),
        (CLIENT, "forward:\n  - listen: \"127.0.0.1:1\"\n    target: \"a:1\"\n    protocol: sctp\n", "forward[0].protocol"),
        (CLIENT, "socks5:\n  - listen: \"127.0.0.1:1\"\nforward:\n  - listen: \"127.0.0.1:1\"\n    target: \"a:1\"\n", "forward[0].listen"),
        (CLIENT, "socks5:\n  - listen: \"127.0.0.1:1\"\n    password: p\n", "socks5[0].username"),
        (CLIENT, "performance:\n  packet_workers: 65\n", "performance.packet_workers"),
        (CLIENT, "metrics:\n  listen: \"localhost:9\"\n", "metrics.listen"),
        ("role: client\nserver:\n  addr: \"203.0.113.10:9999\"\n", "transport:\n  conn: 300\n  kcp:\n    key: k\n", "transport.conn"),
        ("role: peer\n", "", "role"),
    ];
    for (base, extra, field) in cases {
        let err = with(base, extra).expect_err(extra);
        assert_eq!(err.field, field, "{err}");
        assert!(err.line.is_some(), "{err}");
    }
    let e = with("server:\n  addr: \"203.0.113.10:9999\"\n", "").expect_err("no role");
    assert_eq!(
        (e.field.as_str(), e.line),
        ("role", None),
        "a missing key has no line"
    );
    let e = kcp_with("mode: turbo").expect_err("mode");
    assert_eq!(e.field, "transport.kcp.mode");
    let e = with("role: client\nserver:\n  addr: \"203.0.113.10:9999\"\n", "").expect_err("no key");
    assert_eq!((e.field.as_str(), e.line), ("transport.kcp.key", None));
    assert!(
        e.message
            .starts_with("is required: generate keys with `rawtun keygen`"),
        "{e}"
    );
}

const SK: &str = "0a2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";

fn public(secret_hex: &str) -> String {
    crate::crypto::StaticSecret::from_hex(secret_hex)
        .expect("key")
        .public()
        .to_hex()
}

#[test]
fn per_client_keys_load_and_are_checked() {
    let ck = "1b2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
    let server = format!(
        "role: server\nlisten:\n  addr: \":9999\"\nidentity:\n  private_key: \"{SK}\"\nclients:\n  - name: alice\n    public_key: \"{}\"\n",
        public(ck)
    );
    let c = with(&server, "").expect("per-client server");
    assert_eq!(c.auth.clients.len(), 1);
    assert_eq!(c.auth.clients[0].name, "alice");
    assert!(c.auth.shared.is_none());
    let shown = format!("{c:?}") + &c.to_effective_yaml();
    assert!(!shown.contains(SK), "private key shown");
    assert!(
        shown.contains(&public(ck)),
        "client keys are public and shown"
    );
    // The effective config loads again (with its secrets redacted, so only its shape).
    let client = format!(
        "role: client\nserver:\n  addr: \"203.0.113.10:9999\"\n  public_key: \"{}\"\nidentity:\n  private_key: \"{ck}\"\n",
        public(SK)
    );
    let c = with(&client, "").expect("per-client client");
    assert_eq!(c.auth.server_public.map(|k| k.to_hex()), Some(public(SK)));
    assert_eq!(c.network.nat, Nat::Auto);
    for (base, extra, field) in [
        (
            client.as_str(),
            "transport:\n  kcp:\n    key: \"x\"\n",
            "identity.private_key",
        ),
        (
            "role: client\nserver:\n  addr: \"203.0.113.10:9999\"\n",
            &format!("identity:\n  private_key: \"{ck}\"\n"),
            "server.public_key",
        ),
        (
            server.as_str(),
            "  - name: carol\n    public_key: \"00ff\"\n",
            "clients[1].public_key",
        ),
        (
            server.as_str(),
            &format!("  - name: alice\n    public_key: \"{}\"\n", public(SK)),
            "clients[1].name",
        ),
        (
            server.as_str(),
            &format!("  - name: bob\n    public_key: \"{}\"\n", public(ck)),
            "clients[1].public_key",
        ),
        (
            server.as_str(),
            "  - name: \"no spaces\"\n    public_key: \"x\"\n",
            "clients[1].name",
        ),
        (
            SERVER,
            "clients:\n  - name: a\n    public_key: \"x\"\n",
            "clients[0].public_key",
        ),
        (
            SERVER,
            &format!("identity:\n  private_key: \"{SK}\"\n"),
            "clients",
        ),
        (CLIENT, "network:\n  nat: maybe\n", "network.nat"),
        (SERVER, "network:\n  nat: true\n", "network.nat"),
    ] {
        let e = with(base, extra).expect_err(extra);
        assert_eq!(e.field, field, "{extra}: {e}");
    }
    let e = with(SERVER, "identity:\n  private_key: \"zz\"\n").expect_err("bad hex");
    assert_eq!(e.field, "identity.private_key");
    for (v, want) in [("true", Nat::Yes), ("false", Nat::No), ("auto", Nat::Auto)] {
        let c = with(CLIENT, &format!("network:\n  nat: {v}\n")).expect(v);
        assert_eq!(c.network.nat, want);
    }
}

#[test]
fn nat_auto_binds_only_global_addresses() {
    for (ip, global) in [
        ("198.18.0.1", true),
        ("203.0.113.7", true),
        ("192.168.1.100", false),
        ("10.0.0.5", false),
        ("100.64.1.1", false),
        ("2001:2::1", true),
        ("fd00::1", false),
        ("fe80::1", false),
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(Nat::Auto.bind_source(ip), global, "{ip}");
        assert!(!Nat::Yes.bind_source(ip));
        assert!(Nat::No.bind_source(ip));
    }
}

#[test]
fn duplicate_keys_point_at_the_second_copy() {
    let e = with(CLIENT, "    mtu: 1200\n    mtu: 1300\n").expect_err("dup");
    assert_eq!(
        (e.field.as_str(), e.line),
        ("transport.kcp.mtu", Some(8)),
        "{e}"
    );
    let e = with(CLIENT, "role: server\n").expect_err("dup");
    assert_eq!((e.field.as_str(), e.line), ("role", Some(7)), "{e}");
}

#[test]
fn syntax_and_type_errors_carry_a_line() {
    let e = with(CLIENT, "    mtu: big\n").expect_err("type");
    assert_eq!((e.field.as_str(), e.line), ("transport.kcp.mtu", Some(7)));
    assert!(e.message.contains("expected an integer"), "{e}");
    let e = parse("role: client\n  bad: [\n", "t.yaml").expect_err("syntax");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn debug_hides_secrets() {
    let c = with(
        CLIENT,
        "socks5:\n  - listen: \"127.0.0.1:1080\"\n    username: u\n    password: s3cret\n",
    )
    .expect("valid");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("k3y") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert_eq!(
        c.socks5[0].auth.as_ref().map(|a| a.password.as_str()),
        Some("s3cret")
    );
}

#[test]
fn flag_letters_map_to_header_bits() {
    assert_eq!(tcp_flags("PA"), Ok(0x18));
    assert_eq!(tcp_flags("FSRPAUEC"), Ok(0xff));
    assert_eq!(tcp_flags("NS"), Ok(0x02), "N is ignored");
    assert!(tcp_flags("PX").is_err());
    assert!(tcp_flags("").is_err());
    assert!(tcp_flags("pa").is_err());
    assert_eq!(tcp_flags_string(0x18), "PA");
    assert_eq!(tcp_flags_string(0x12), "SA");
}

#[test]
fn mac_parse_and_format() {
    assert_eq!(
        mac("AA:bb:0C:dd:ee:ff"),
        Ok([0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0xff])
    );
    for bad in [
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:00",
        "aa-bb-cc-dd-ee-ff",
        "a:bb:cc:dd:ee:fff",
        "gg:bb:cc:dd:ee:ff",
    ] {
        assert!(mac(bad).is_err(), "{bad}");
    }
    assert_eq!(mac_string(&[2, 0, 0x5e, 0, 0x53, 1]), "02:00:5e:00:53:01");
}

#[test]
fn host_port_forms() {
    let hp = |s: &str| HostPort::from_str(s);
    assert_eq!(
        hp("[2001:db8::1]:443").map(|h| h.host),
        Ok(Host::Ip("2001:db8::1".parse().unwrap()))
    );
    assert_eq!(
        hp("Example.COM:80").map(|h| h.host),
        Ok(Host::Domain("example.com".into()))
    );
    for bad in [
        "example.com",
        ":80",
        "-a.example:1",
        "a..b:1",
        "[::1]80",
        "a:70000",
    ] {
        assert!(hp(bad).is_err(), "{bad}");
    }
}

#[test]
fn acl_rules_default_to_public_and_match_address_and_port() {
    let c = |s: &str| Cidr::from_str(s).expect("cidr");
    let ip = |s: &str| IpAddr::from_str(s).expect("ip");
    let rule = |s: &str| TargetRule::from_str(s).expect("rule");
    let sa = |s: &str| s.parse::<std::net::SocketAddr>().expect("socket address");
    assert_eq!(TargetAcl::default().allow(), &[TargetAcl::PUBLIC]);
    assert!(TargetAcl::default().deny().is_empty());
    assert!(rule("198.18.0.0/15").matches(sa("198.18.200.1:80")));
    assert!(!rule("198.18.0.0/15:443").matches(sa("198.18.200.1:80")));
    assert!(rule("198.18.0.0/15:80-90").matches(sa("[::ffff:198.18.0.1]:85")));
    assert!(rule("[2001:2::/48]:22").matches(sa("[2001:2::9]:22")));
    assert!(!rule("[2001:2::/48]:22").matches(sa("[2001:3::9]:22")));
    assert!(c("0.0.0.0/0").contains(ip("255.255.255.255")));
    assert!(c("::1").contains(ip("::1")));
    assert!(Cidr::from_str("10.0.0.0/33").is_err());
    assert!(Cidr::from_str("10.0.0.1/8").is_err());
}

proptest! {
    #[test]
    fn cidr_contains_matches_prefix_compare(a: u32, b: u32, prefix in 0u8..=32) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let net = Cidr::from_str(&format!("{}/{prefix}", std::net::Ipv4Addr::from(a & mask))).expect("masked");
        let ip = IpAddr::from(std::net::Ipv4Addr::from(b));
        prop_assert_eq!(net.contains(ip), (a & mask) == (b & mask));
    }

    #[test]
    fn host_port_display_round_trips(ip: IpAddr, port in 1u16..) {
        let hp = HostPort { host: Host::Ip(ip), port };
        prop_assert_eq!(HostPort::from_str(&hp.to_string()), Ok(hp));
    }

    #[test]
    fn parse_never_panics(text in "[a-z_:\\[\\]\"'\\- \n0-9.#|]{0,200}") {
        let _ = parse(&text, "fuzz.yaml");
    }
}
