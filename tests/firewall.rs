//! `rawtun::sys::firewall` in fresh network namespaces (root only): apply is idempotent
//! (also across processes: library, then the `rawtun firewall apply` binary), remove clears
//! every copy, `present` reports all / partial / none, and the Rust rules are exactly those
//! of iptables/rawtun-iptables.sh and iptables/rawtun-nft.sh.

mod common;

use common::{describe, repo_path, Netns};
use rawtun::sys::firewall::{Backend, RuleSet, RuleState, Side};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const PORT: u16 = 9999;
const SERVER_V4: &str = "198.18.0.2:9999";
const SERVER_V6: &str = "[2001:db8::2]:9999";
/// The clients' own addresses towards those servers.
const CLIENT_V4: &str = "198.18.0.1";
const CLIENT_V6: &str = "2001:db8::1";

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn server_at(local: &str, backend: Backend) -> RuleSet {
    let local = local.parse().expect("a literal address");
    RuleSet::new(Side::Server { port: PORT, local }, Some(backend))
}

fn server(backend: Backend) -> RuleSet {
    server_at("198.18.0.2", backend)
}

fn client(addr: &str, backend: Backend) -> RuleSet {
    let server: SocketAddr = addr.parse().expect("a literal socket address");
    let local = if server.is_ipv4() {
        CLIENT_V4
    } else {
        CLIENT_V6
    };
    let local = local.parse().expect("a literal address");
    RuleSet::new(Side::Client { server, local }, Some(backend))
}

/// Runs `f` on `rules` inside `ns`, panicking on a firewall error.
fn on<T: Send + 'static>(
    ns: &Netns,
    rules: &RuleSet,
    f: fn(&RuleSet) -> Result<T, rawtun::sys::firewall::FirewallError>,
) -> T {
    let rules = rules.clone();
    ns.run(move || f(&rules).unwrap_or_else(|e| panic!("{e}")))
}

/// `iptables-save` / `ip6tables-save` output without comments and packet counters.
fn save(ns: &Netns, tool: &str) -> String {
    ns.exec_ok(&[tool])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tagged(text: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(&format!("rawtun:{PORT}")))
        .count()
}

fn nft_ruleset(ns: &Netns) -> String {
    ns.exec_ok(&["nft", "list", "ruleset"])
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn iptables_apply_twice_then_remove_all() {
    common::require_root();
    let ns = Netns::new("fwipt");
    let v6 = have("ip6tables");
    let rules = server(Backend::Iptables);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::None);
    on(&ns, &rules, RuleSet::apply);
    on(&ns, &rules, RuleSet::apply);
    assert_eq!(tagged(&save(&ns, "iptables-save")), 3);
    if v6 {
        assert_eq!(
            tagged(&save(&ns, "ip6tables-save")),
            0,
            "an IPv4 server leaves IPv6 alone"
        );
    }
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::All);

    // Client rules for the same port are separate; a v6 server only touches ip6tables.
    let c4 = client(SERVER_V4, Backend::Iptables);
    assert_eq!(on(&ns, &c4, RuleSet::present), RuleState::None);
    on(&ns, &c4, RuleSet::apply);
    on(&ns, &c4, RuleSet::apply);
    assert_eq!(tagged(&save(&ns, "iptables-save")), 6);
    if v6 {
        let c6 = client(SERVER_V6, Backend::Iptables);
        on(&ns, &c6, RuleSet::apply);
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 3);
        assert_eq!(tagged(&save(&ns, "iptables-save")), 6);
        on(&ns, &c6, RuleSet::remove);
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 0);
    }

    // A duplicate made by hand and a missing rule: partial; remove takes every copy.
    let dup = [
        "iptables",
        "-t",
        "raw",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-s",
        "198.18.0.2",
        "--sport",
        "9999",
        "-j",
        "NOTRACK",
        "-m",
        "comment",
        "--comment",
        "rawtun:9999",
    ];
    ns.exec_ok(&dup);
    ns.exec_ok(&dup);
    let mut del = dup;
    del[3] = "-D";
    del[4] = "PREROUTING";
    del[7] = "-d";
    del[9] = "--dport";
    del[12] = "DROP";
    ns.exec_ok(&del);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::Partial);
    on(&ns, &rules, RuleSet::remove);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::None);
    let left = save(&ns, "iptables-save");
    assert_eq!(tagged(&left), 3, "only the client rules stay: {left}");
    assert!(left.contains("198.18.0.2"), "{left}");
    on(&ns, &c4, RuleSet::remove);
    on(&ns, &c4, RuleSet::remove); // nothing left to remove is fine
    assert_eq!(tagged(&save(&ns, "iptables-save")), 0);
    if v6 {
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 0);
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn nft_apply_twice_then_remove_all() {
    common::require_root();
    if !have("nft") {
        eprintln!("SKIPPED: nft not installed");
        return;
    }
    let ns = Netns::new("fwnft");
    let rules = server(Backend::Nftables);
    let c4 = client(SERVER_V4, Backend::Nftables);
    let c6 = client(SERVER_V6, Backend::Nftables);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::None);
    for set in [&rules, &rules, &c4, &c4, &c6] {
        on(&ns, set, RuleSet::apply);
    }
    let all = nft_ruleset(&ns);
    assert_eq!(tagged(&all), 9, "{all}");
    assert_eq!(
        all.matches("chain server_9999_198.18.0.2_").count(),
        3,
        "{all}"
    );
    for set in [&rules, &c4, &c6] {
        assert_eq!(on(&ns, set, RuleSet::present), RuleState::All);
    }
    // A chain lost (say, by hand): partial.
    ns.exec_ok(&[
        "nft",
        "delete",
        "chain",
        "inet",
        "rawtun",
        "server_9999_198.18.0.2_rst",
    ]);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::Partial);
    on(&ns, &rules, RuleSet::remove);
    assert_eq!(on(&ns, &rules, RuleSet::present), RuleState::None);
    assert_eq!(on(&ns, &c4, RuleSet::present), RuleState::All);
    assert_eq!(tagged(&nft_ruleset(&ns)), 6);
    on(&ns, &c4, RuleSet::remove);
    on(&ns, &c6, RuleSet::remove);
    on(&ns, &c6, RuleSet::remove);
    let tables = ns.exec_ok(&["nft", "list", "tables"]);
    assert!(
        !tables.contains("rawtun"),
        "the empty table is deleted: {tables}"
    );
}

fn script(ns: &Netns, which: &str, args: &[&str]) {
    let path = repo_path(which);
    let mut all = vec!["bash", path.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    ns.exec_ok(&all);
}

/// What the script installs and what `RuleSet::apply` installs are the same rules, and
/// each recognises the other's: applying the other way round adds nothing.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn iptables_script_and_library_install_identical_rules() {
    common::require_root();
    const IPT: &str = "iptables/rawtun-iptables.sh";
    let by_script = Netns::new("fwscr");
    let by_rust = Netns::new("fwrs");
    script(&by_script, IPT, &["add", "9999", "--local", "198.18.0.2"]);
    let c4 = [
        "add",
        "9999",
        "--client",
        "198.18.0.2",
        "--local",
        CLIENT_V4,
    ];
    script(&by_script, IPT, &c4);
    for set in [
        server(Backend::Iptables),
        client(SERVER_V4, Backend::Iptables),
    ] {
        on(&by_rust, &set, RuleSet::apply);
    }
    let mut tools = vec!["iptables-save"];
    if have("ip6tables") {
        let c6 = [
            "add",
            "9999",
            "--client",
            "2001:db8::2",
            "--local",
            CLIENT_V6,
        ];
        script(&by_script, IPT, &c6);
        on(
            &by_rust,
            &client(SERVER_V6, Backend::Iptables),
            RuleSet::apply,
        );
        tools.push("ip6tables-save");
    }
    for tool in &tools {
        let (a, b) = (save(&by_script, tool), save(&by_rust, tool));
        assert!(tagged(&a) >= 3, "{tool}: {a}");
        assert_eq!(a, b, "{tool}: script vs library");
    }
    // Cross-applying adds nothing.
    on(&by_script, &server(Backend::Iptables), RuleSet::apply);
    script(&by_rust, IPT, &["add", "9999", "--local", "198.18.0.2"]);
    for tool in &tools {
        assert_eq!(save(&by_script, tool), save(&by_rust, tool), "{tool}");
    }
    // The script removes what the library installed.
    script(&by_rust, IPT, &["remove", "9999", "--local", "198.18.0.2"]);
    let c4r = [
        "remove",
        "9999",
        "--client",
        "198.18.0.2",
        "--local",
        CLIENT_V4,
    ];
    script(&by_rust, IPT, &c4r);
    assert_eq!(tagged(&save(&by_rust, "iptables-save")), 0);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn nft_script_and_library_install_identical_rules() {
    common::require_root();
    if !have("nft") {
        eprintln!("SKIPPED: nft not installed");
        return;
    }
    const NFT: &str = "iptables/rawtun-nft.sh";
    let by_script = Netns::new("fwnscr");
    let by_rust = Netns::new("fwnrs");
    script(&by_script, NFT, &["add", "9999", "--local", "198.18.0.2"]);
    let c4 = [
        "add",
        "9999",
        "--client",
        "198.18.0.2",
        "--local",
        CLIENT_V4,
    ];
    script(&by_script, NFT, &c4);
    let c6 = [
        "add",
        "9999",
        "--client",
        "2001:DB8:0::02",
        "--local",
        "2001:db8::0:1",
    ];
    script(&by_script, NFT, &c6);
    for set in [
        server(Backend::Nftables),
        client(SERVER_V4, Backend::Nftables),
        client(SERVER_V6, Backend::Nftables),
    ] {
        on(&by_rust, &set, RuleSet::apply);
    }
    let (a, b) = (nft_ruleset(&by_script), nft_ruleset(&by_rust));
    assert_eq!(tagged(&a), 9, "{a}");
    assert_eq!(a, b, "script vs library");
    on(&by_script, &server(Backend::Nftables), RuleSet::apply);
    script(&by_rust, NFT, &["add", "9999", "--local", "198.18.0.2"]);
    assert_eq!(nft_ruleset(&by_script), nft_ruleset(&by_rust));
    assert_eq!(
        on(
            &by_script,
            &client(SERVER_V6, Backend::Nftables),
            RuleSet::present
        ),
        RuleState::All
    );
    script(&by_rust, NFT, &["remove", "9999", "--local", "198.18.0.2"]);
    let c4r = [
        "remove",
        "9999",
        "--client",
        "198.18.0.2",
        "--local",
        CLIENT_V4,
    ];
    script(&by_rust, NFT, &c4r);
    on(
        &by_rust,
        &client(SERVER_V6, Backend::Nftables),
        RuleSet::remove,
    );
    assert_eq!(nft_ruleset(&by_rust).trim(), "");
}

fn write_config(dir: &Path, name: &str, body: &str) -> String {
    let key = common::data::random_key_hex();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("{body}transport:\n  kcp:\n    key: \"{key}\"\n"),
    )
    .expect("the temp dir is writable");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// A daemon that applied its rules and was SIGKILLed leaves them behind; the next process
/// applying them (here the `rawtun firewall apply` binary) must not add a second copy.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn cli_apply_after_an_earlier_process_leaves_one_copy() {
    common::require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let server_cfg = write_config(
        dir.path(),
        "s.yaml",
        "role: server\nlisten:\n  addr: \":9999\"\nnetwork:\n  ipv4:\n    addr: \"198.18.0.2:0\"\n",
    );
    let client_cfg = write_config(
        dir.path(),
        "c.yaml",
        &format!(
            "role: client\nserver:\n  addr: \"{SERVER_V4}\"\nnetwork:\n  ipv4:\n    addr: \"{CLIENT_V4}:0\"\n"
        ),
    );
    let bin = env!("CARGO_BIN_EXE_rawtun");
    let mut backends = vec![(Backend::Iptables, "iptables")];
    if have("nft") {
        backends.push((Backend::Nftables, "nftables"));
    }
    for (backend, name) in backends {
        let ns = Netns::new("fwcli");
        let listing = |ns: &Netns| match backend {
            Backend::Iptables => save(ns, "iptables-save"),
            Backend::Nftables => nft_ruleset(ns),
        };
        on(&ns, &server(backend), RuleSet::apply);
        on(&ns, &client(SERVER_V4, backend), RuleSet::apply);
        for cfg in [&server_cfg, &client_cfg] {
            ns.exec_ok(&[bin, "firewall", "apply", "-c", cfg, "--backend", name]);
            ns.exec_ok(&[bin, "firewall", "apply", "-c", cfg, "--backend", name]);
            ns.exec_ok(&[bin, "firewall", "status", "-c", cfg, "--backend", name]);
        }
        let text = listing(&ns);
        assert_eq!(tagged(&text), 6, "{name}: {text}");
        let printed = ns.exec_ok(&[
            bin,
            "firewall",
            "print",
            "-c",
            &client_cfg,
            "--backend",
            name,
        ]);
        assert!(printed.contains("198.18.0.2"), "{printed}");
        ns.exec_ok(&[
            bin,
            "firewall",
            "remove",
            "-c",
            &server_cfg,
            "--backend",
            name,
        ]);
        let out = ns.exec(&[
            bin,
            "firewall",
            "status",
            "-c",
            &server_cfg,
            "--backend",
            name,
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("no rules present"));
        ns.exec_ok(&[
            bin,
            "firewall",
            "remove",
            "-c",
            &client_cfg,
            "--backend",
            name,
        ]);
        assert_eq!(tagged(&listing(&ns)), 0, "{name}");
    }
}

/// A TCP service beside the tunnel: echoes what it reads, then, if the client says so,
/// closes abortively (an RST from port `PORT`).
const SERVICE: &str = r#"
import socket, struct, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        data = c.recv(100)
        c.sendall(data)
        if data.startswith(b'rst') and c.recv(100) == b'ok':
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    c.close()
"#;

/// Connects to the service, checks the echo, asks for an abortive close and reports what
/// the kernel delivered: "reset" (the RST arrived), "eof", "timeout" or the failure.
const PROBE: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
try:
    c = socket.create_connection((addr, port), timeout=3)
    c.sendall(b'rst please')
    if c.recv(100) != b'rst please':
        print('bad echo'); sys.exit()
    c.sendall(b'ok')
    print('eof' if c.recv(100) == b'' else 'data')
except ConnectionResetError:
    print('reset')
except (TimeoutError, socket.timeout):
    print('timeout')
except OSError as e:
    print('error', e)
"#;

fn probe_service(ns: &Netns, addr: &str) -> String {
    let port = PORT.to_string();
    let out = ns.exec(&["python3", "-c", PROBE, addr, &port]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// rawtun on 198.18.x.y:PORT and a kernel TCP service on the same port at another IPv4
/// address of the same host, and at an IPv6 address: the service keeps connection tracking
/// (a host firewall that drops untracked packets lets it through) and its RSTs reach its
/// clients, with rawtun running and after it stops; the tunnel works meanwhile.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_service_on_the_same_port_at_another_address_is_untouched() {
    common::require_root();
    let _s = common::serial();
    let spec = common::TunnelSpec {
        port: PORT,
        ..common::TunnelSpec::default()
    };
    let mut t = common::Topology::tunnel(spec);
    // A second subnet on the same link: the service's address on the server host.
    let (service, service6) = ("198.19.254.2", "2001:2::2");
    t.server
        .exec_ok(&["ip", "addr", "add", "198.19.254.2/30", "dev", &t.server_if]);
    t.client
        .exec_ok(&["ip", "addr", "add", "198.19.254.1/30", "dev", &t.client_if]);
    let v6 = have("ip6tables");
    if v6 {
        for (ns, ifname, addr) in [
            (&t.server, &t.server_if, "2001:2::2/64"),
            (&t.client, &t.client_if, "2001:2::1/64"),
        ] {
            let knob = format!("net.ipv6.conf.{ifname}.disable_ipv6=0");
            ns.exec_ok(&["sysctl", "-qw", &knob]);
            ns.exec_ok(&["ip", "addr", "add", addr, "dev", ifname, "nodad"]);
        }
    }
    // The host firewall a careful operator runs: untracked packets to the service are
    // dropped (so a NOTRACK rule that matched the service would break it).
    for (tool, addr) in [("iptables", service), ("ip6tables", service6)] {
        if tool == "ip6tables" && !v6 {
            continue;
        }
        let port = PORT.to_string();
        t.server.exec_ok(&[
            tool,
            "-A",
            "INPUT",
            "-d",
            addr,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "conntrack",
            "--ctstate",
            "UNTRACKED",
            "-j",
            "DROP",
        ]);
    }
    let port = PORT.to_string();
    let _svc4 = t
        .server
        .spawn(&["python3", "-c", SERVICE, service, &port], None);
    let _svc6 = v6.then(|| {
        t.server
            .spawn(&["python3", "-c", SERVICE, service6, &port], None)
    });
    let listeners = |ns: &Netns| {
        let out = ns.exec(&["ss", "-Hltn", &format!("sport = :{PORT}")]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let want = if v6 { 2 } else { 1 };
    assert!(
        common::wait_for(std::time::Duration::from_secs(10), || listeners(&t.server)
            >= want),
        "the service listens"
    );
    let check = |t: &common::Topology, when: &str| {
        assert_eq!(
            probe_service(&t.client, service),
            "reset",
            "IPv4 service {when}"
        );
        if v6 {
            assert_eq!(
                probe_service(&t.client, service6),
                "reset",
                "IPv6 service {when}"
            );
        }
    };
    check(&t, "with rawtun running");
    // The tunnel on the same port number works meanwhile.
    let sink = t
        .server
        .run(|| std::net::TcpListener::bind("127.0.0.1:9001").expect("bind the forward's target"));
    let echo = t.server.thread(move || {
        use std::io::{Read, Write};
        let (mut c, _) = sink.accept().expect("accept");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("read");
        c.write_all(&buf).expect("write");
    });
    let got = t.client.run(|| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("127.0.0.1:9000").expect("forward");
        c.write_all(b"hello").expect("write");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("read through the tunnel");
        buf
    });
    echo.join().expect("echo");
    assert_eq!(&got, b"hello");
    assert!(t.stop(common::Side::Client).success());
    assert!(t.stop(common::Side::Server).success());
    check(&t, "after rawtun stopped");
}
