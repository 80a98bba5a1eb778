//! Deployment behaviour of the daemon in network namespaces (root only): firewall rules that
//! follow the daemon (`firewall.auto`), the kernel kept out (no RST, no conntrack entry for
//! the tunnel flow), and a config that leaves interface, address and gateway MAC to
//! detection.

mod common;

use common::capture::Capture;
use common::data::{expected_hash, receive_hashed, send_seeded};
use common::{serial, wait_for, Netns, Side, Topology, TunnelSpec};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Tagged rules (iptables and ip6tables) in `ns`.
fn tagged_rules(ns: &Netns, port: u16) -> usize {
    let tag = format!("rawtun:{port}");
    ["iptables-save", "ip6tables-save"]
        .iter()
        .map(|tool| {
            let out = ns.exec(&[tool]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("-A") && l.contains(&tag))
                .count()
        })
        .sum()
}

/// Moves `len` bytes through the forward 127.0.0.1:9000 -> server 127.0.0.1:9001.
fn transfer(t: &Topology, len: u64) {
    let sink = t
        .server
        .run(|| TcpListener::bind("127.0.0.1:9001").expect("bind"));
    let rx = t.server.thread(move || {
        let (mut c, _) = sink.accept().expect("accept");
        receive_hashed(&mut c, len).expect("receive")
    });
    let sent = t.client.run(move || {
        let mut c = TcpStream::connect("127.0.0.1:9000").expect("forward");
        send_seeded(&mut c, 3, len).expect("send")
    });
    assert_eq!(rx.join().expect("receiver"), sent);
    assert_eq!(sent, expected_hash(3, len));
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn firewall_rules_follow_the_daemon_and_survive_kill_9_as_one_copy() {
    common::require_root();
    let _s = serial();
    let mut t = Topology::pair();
    let spec = TunnelSpec::default();
    t.write_configs(&spec);
    assert_eq!(tagged_rules(&t.server, spec.port), 0);
    t.start_server();
    t.start_client();
    // One copy of the rule set: incoming dropped in raw, NOTRACK out, RST drop (per family
    // in use).
    let server_rules = tagged_rules(&t.server, spec.port);
    let client_rules = tagged_rules(&t.client, spec.port);
    assert!(
        server_rules >= 3 && server_rules.is_multiple_of(3),
        "{server_rules} server rules"
    );
    assert!(
        client_rules >= 3 && client_rules.is_multiple_of(3),
        "{client_rules} client rules"
    );
    transfer(&t, 4 << 20);
    assert!(t.stop(Side::Server).success());
    assert_eq!(
        tagged_rules(&t.server, spec.port),
        0,
        "server rules left after SIGTERM"
    );
    // A crash leaves the rules; the restarted daemon must not duplicate them.
    t.start_server();
    let pids = t.server.pids();
    assert!(
        !pids.is_empty(),
        "no process in {}: {}",
        t.server.name(),
        t.logs()
    );
    for pid in &pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    // Dead: gone, or a zombie until the harness reaps it.
    let dead = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    };
    assert!(wait_for(Duration::from_secs(5), || pids.iter().all(dead)));
    assert_eq!(
        tagged_rules(&t.server, spec.port),
        server_rules,
        "rules after kill -9"
    );
    t.start_server();
    assert_eq!(
        tagged_rules(&t.server, spec.port),
        server_rules,
        "exactly one copy after restart"
    );
    transfer(&t, 1 << 20);
    assert!(t.stop(Side::Server).success());
    assert_eq!(tagged_rules(&t.server, spec.port), 0);
    assert!(t.stop(Side::Client).success());
    assert_eq!(
        tagged_rules(&t.client, spec.port),
        0,
        "client rules left after SIGTERM"
    );
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn kernel_sends_no_rst_and_tracks_no_tunnel_connection() {
    common::require_root();
    let _s = serial();
    let mut t = Topology::pair();
    let spec = TunnelSpec::default();
    t.write_configs(&spec);
    // Make conntrack active in the server namespace (a rule that needs it), so the absence
    // of entries for the tunnel means the rules worked, not that nothing tracks.
    t.server.exec_ok(&[
        "iptables",
        "-A",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "INVALID",
        "-j",
        "DROP",
    ]);
    t.start_server();
    t.start_client();
    let file = t.path("server.pcap");
    let capture = Capture::start(&t.server, &t.server_if, &file);
    let segs_before = [tcp_in_segs(&t.server), tcp_in_segs(&t.client)];
    transfer(&t, 8 << 20);
    let segs_after = [tcp_in_segs(&t.server), tcp_in_segs(&t.client)];
    // A control flow that conntrack does track: a kernel TCP connection to another port.
    let ctl = t
        .server
        .run(|| TcpListener::bind("0.0.0.0:7000").expect("bind control"));
    let server_ip = t.server_ip;
    let _c = t
        .client
        .run(move || TcpStream::connect((server_ip, 7000)).expect("control connect"));
    let _a = ctl.accept().expect("accept control");
    let (pcap, _) = capture.stop();
    let parsed: Vec<_> = pcap
        .frames
        .iter()
        .filter_map(|f| rawtun::wire::parse_frame(rawtun::wire::LinkType::Ethernet, f).ok())
        .map(|p| p.repr)
        .collect();
    assert!(
        parsed.len() > 1000,
        "capture saw {} TCP frames",
        parsed.len()
    );
    let rsts = parsed
        .iter()
        .filter(|r| r.src.port() == spec.port && r.flags.contains(rawtun::wire::TcpFlags::RST))
        .count();
    assert_eq!(
        rsts, 0,
        "the server kernel sent {rsts} RSTs from the tunnel port"
    );
    // The kernel's TCP input never ran for the tunnel's packets on either end: they were
    // dropped in the raw table after the packet sockets took their copy. What it did take
    // in is the applications' own TCP (the transfer's sockets to and from the daemons,
    // 64 KiB segments on loopback): far fewer than the tunnel's frames, of which the server
    // alone received more than half (with NOTRACK instead of the drop, its kernel took
    // every one of them in).
    for (end, (before, after)) in ["server", "client"]
        .iter()
        .zip(segs_before.iter().zip(segs_after.iter()))
    {
        assert!(
            after - before < parsed.len() as u64 / 4,
            "the {end} kernel took {} TCP segments in during a transfer of {} tunnel frames",
            after - before,
            parsed.len()
        );
    }
    let out = t.server.exec(&["conntrack", "-L", "-p", "tcp"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("dport=7000"),
        "conntrack not active? table:\n{table}"
    );
    assert!(
        !table.contains(&format!("port={}", spec.port)),
        "conntrack tracks the tunnel:\n{table}"
    );
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn config_without_interface_address_or_router_mac_works() {
    common::require_root();
    let _s = serial();
    let mut t = Topology::pair();
    let spec = TunnelSpec::default();
    let (server_cfg, client_cfg) = t.write_configs(&spec);
    // Leave only `network:` out entirely: everything in it is detected.
    for path in [&server_cfg, &client_cfg] {
        let yaml = std::fs::read_to_string(path).expect("config");
        let mut out = String::new();
        let mut skipping = false;
        for line in yaml.lines() {
            if line == "network:" {
                skipping = true;
                continue;
            }
            if skipping && line.starts_with(' ') {
                continue;
            }
            skipping = false;
            out += line;
            out += "\n";
        }
        assert!(
            !out.contains("router_mac") && !out.contains("interface"),
            "{out}"
        );
        std::fs::write(path, out).expect("write");
    }
    // A server finds its interface by the default route.
    let client_ip = t.client_ip.to_string();
    t.server
        .exec_ok(&["ip", "route", "add", "default", "via", &client_ip]);
    // Neighbour tables start empty: detection must resolve the MAC itself.
    t.client.exec_ok(&["ip", "neigh", "flush", "all"]);
    t.start_server();
    t.start_client();
    transfer(&t, 4 << 20);
    assert!(t.logs().contains("network detected"), "{}", t.logs());
}

/// `rawtun check` on every shipped config exits 0 on a host with a default route (a
/// namespace whose gateway is another namespace: detection's ARP stays inside them); a
/// config error exits 2 naming file, line and field.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn check_accepts_every_shipped_config_and_names_errors() {
    common::require_root();
    let _s = serial();
    let host = Netns::new("ch");
    let gw = Netns::new("cg");
    host.exec_ok(&[
        "ip",
        "link",
        "add",
        "rtch0",
        "type",
        "veth",
        "peer",
        "name",
        "rtcg0",
        "netns",
        gw.name(),
    ]);
    host.exec_ok(&["ip", "addr", "add", "198.18.60.2/24", "dev", "rtch0"]);
    host.exec_ok(&["ip", "link", "set", "rtch0", "up"]);
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    gw.exec_ok(&["ip", "addr", "add", "198.18.60.1/24", "dev", "rtcg0"]);
    gw.exec_ok(&["ip", "link", "set", "rtcg0", "up"]);
    host.exec_ok(&["ip", "route", "add", "default", "via", "198.18.60.1"]);
    let dir = common::repo_path("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = host.exec(&[
            env!("CARGO_BIN_EXE_rawtun"),
            "check",
            "-c",
            path.to_str().expect("utf-8"),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{}:\n{text}", path.display());
        assert!(
            text.contains("network (detected): interface rtch0"),
            "{text}"
        );
        // Both example configs keep the default kcp.mtu of 1350.
        assert!(
            text.contains("largest UDP datagram: 1339 bytes to IPv4, 1327 to IPv6"),
            "{text}"
        );
        checked += 1;
    }
    assert!(checked >= 2);
    // A config error: exit code 2, file:line: field.
    let bad = std::env::temp_dir().join(format!("rawtun-bad-{}.yaml", std::process::id()));
    let text = std::fs::read_to_string(dir.join("client.yaml")).expect("client.yaml");
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("mtu:"))
        .expect("mtu line")
        + 1;
    let broken: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("mtu:") {
                l.replacen("1350", "9000", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&bad, broken.join("\n")).expect("write");
    let out = host.exec(&[
        env!("CARGO_BIN_EXE_rawtun"),
        "check",
        "-c",
        bad.to_str().expect("utf-8"),
    ]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(":{line}: transport.kcp.mtu")),
        "{err}"
    );
}

/// The namespace's `Tcp: InSegs` (segments the kernel's TCP input received).
fn tcp_in_segs(ns: &common::Netns) -> u64 {
    let snmp = ns.exec_ok(&["cat", "/proc/net/snmp"]);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Tcp InSegs in /proc/net/snmp:\n{snmp}"))
}
