//! Tests of iptables/rawtun-iptables.sh and iptables/rawtun-nft.sh, each inside a fresh
//! network namespace (root only; argument checks run anywhere): add is idempotent, remove
//! clears every copy, status exit codes, and the rules really keep the kernel out.

mod common;

use common::{describe, repo_path, Netns, Topology};
use std::process::{Command, Output};

const IPT: &str = "iptables/rawtun-iptables.sh";
const NFT: &str = "iptables/rawtun-nft.sh";

fn script(ns: Option<&Netns>, which: &str, args: &[&str]) -> Output {
    let path = repo_path(which);
    let path = path.to_str().expect("the repository path is UTF-8");
    let mut all = vec!["bash", path];
    all.extend_from_slice(args);
    match ns {
        Some(ns) => ns.exec(&all),
        None => Command::new(all[0])
            .args(&all[1..])
            .output()
            .expect("bash runs"),
    }
}

fn ok(ns: &Netns, which: &str, args: &[&str]) {
    let out = script(Some(ns), which, args);
    assert!(out.status.success(), "{which} {args:?}: {}", describe(&out));
}

fn code(ns: &Netns, which: &str, args: &[&str]) -> i32 {
    script(Some(ns), which, args).status.code().unwrap_or(-1)
}

/// Lines of `iptables-save` (or `ip6tables-save`) that carry the rawtun comment of `port`.
fn saved(ns: &Netns, tool: &str, port: u16) -> Vec<String> {
    let tag = format!("\"rawtun:{port}\"");
    ns.exec_ok(&[tool])
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

fn count(lines: &[String], parts: &[&str]) -> usize {
    lines
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

fn have_ip6tables() -> bool {
    Command::new("ip6tables-save")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn usage_errors_exit_64() {
    for which in [IPT, NFT] {
        for args in [
            &[][..],
            &["add"][..],
            &["flush", "9999"][..],
            &["add", "0"][..],
            &["add", "65536"][..],
            &["add", "http"][..],
            &["add", "9999", "--client"][..],
            &[
                "add",
                "9999",
                "--client",
                "not-an-ip",
                "--local",
                "198.18.0.1",
            ][..],
            &["add", "9999", "--bogus"][..],
            // No --local: the rules would match every address.
            &["add", "9999"][..],
            &["add", "9999", "--client", "198.18.0.2"][..],
            // Anything that is not an address or a port is refused, including words
            // that iptables or nft would read as options or expressions.
            &["add", "9999", "--local", "-j ACCEPT"][..],
            &["add", "9999", "--local", "198.18.0.2/24"][..],
            &["add", "9999", "--local", "198.18.0.256"][..],
            &["add", "9999", "--local", "eth0"][..],
            &["add", "9999", "--local", "1.2.3.4; flush ruleset"][..],
            &["add", "9999", "--local", "::ffff:1.2.3.4"][..],
            &["add", "9999", "--local", "2001:db8::1::2"][..],
            &[
                "add",
                "9999",
                "--local",
                "198.18.0.2",
                "--local",
                "198.18.0.3",
            ][..],
            &["add", "9999 ", "--local", "198.18.0.2"][..],
            &["add", "99999", "--local", "198.18.0.2"][..],
            // Client and local of different families.
            &[
                "add",
                "9999",
                "--client",
                "2001:db8::2",
                "--local",
                "198.18.0.1",
            ][..],
        ] {
            let out = script(None, which, args);
            assert_eq!(
                out.status.code(),
                Some(64),
                "{which} {args:?}: {}",
                describe(&out)
            );
        }
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn iptables_server_rules_add_twice_remove_all() {
    common::require_root();
    let ns = Netns::new("ipt");
    let local = ["--local", "198.18.0.2"];
    let with = |action: &'static str, port: &'static str| {
        let mut v = vec![action, port];
        v.extend_from_slice(&local);
        v
    };
    assert_eq!(
        code(&ns, IPT, &with("status", "9999")),
        1,
        "nothing installed yet"
    );
    ok(&ns, IPT, &with("add", "9999"));
    ok(&ns, IPT, &with("add", "9999"));
    let tools = vec!["iptables-save"];
    if have_ip6tables() {
        assert!(
            saved(&ns, "ip6tables-save", 9999).is_empty(),
            "an IPv4 tunnel leaves IPv6 alone"
        );
    }
    for tool in &tools {
        let lines = saved(&ns, tool, 9999);
        assert_eq!(lines.len(), 3, "{tool}: {lines:#?}");
        let (dst, src) = ("-d 198.18.0.2/32", "-s 198.18.0.2/32");
        assert_eq!(
            count(&lines, &["-A PREROUTING", dst, "--dport 9999", "-j DROP"]),
            1
        );
        assert_eq!(
            count(&lines, &["-A OUTPUT", src, "--sport 9999", "-j NOTRACK"]),
            1
        );
        assert_eq!(
            count(
                &lines,
                &[
                    "-A OUTPUT",
                    src,
                    "--sport 9999",
                    "--tcp-flags RST RST",
                    "-j DROP"
                ]
            ),
            1
        );
    }
    // The rules sit in the raw and mangle tables.
    let raw = ns.exec_ok(&["iptables", "-t", "raw", "-S"]);
    assert_eq!(raw.matches("rawtun:9999").count(), 2, "{raw}");
    let mangle = ns.exec_ok(&["iptables", "-t", "mangle", "-S"]);
    assert_eq!(mangle.matches("rawtun:9999").count(), 1, "{mangle}");
    assert_eq!(code(&ns, IPT, &with("status", "9999")), 0);
    // Another port, or another address, is independent.
    assert_eq!(code(&ns, IPT, &with("status", "8443")), 1);
    assert_eq!(
        code(&ns, IPT, &["status", "9999", "--local", "198.18.0.6"]),
        1
    );

    // A duplicate made by hand, and one rule missing: status says "partial".
    ns.exec_ok(&[
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
    ]);
    ns.exec_ok(&[
        "iptables",
        "-t",
        "raw",
        "-D",
        "PREROUTING",
        "-p",
        "tcp",
        "-d",
        "198.18.0.2",
        "--dport",
        "9999",
        "-j",
        "DROP",
        "-m",
        "comment",
        "--comment",
        "rawtun:9999",
    ]);
    assert_eq!(code(&ns, IPT, &with("status", "9999")), 2);

    ok(&ns, IPT, &with("remove", "9999"));
    for tool in &tools {
        assert_eq!(saved(&ns, tool, 9999), Vec::<String>::new(), "{tool}");
    }
    assert_eq!(code(&ns, IPT, &with("status", "9999")), 1);
    ok(&ns, IPT, &with("remove", "9999")); // removing nothing is fine
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn iptables_client_rules_add_twice_remove_all() {
    common::require_root();
    let ns = Netns::new("iptc");
    let args = ["9999", "--client", "198.18.0.2", "--local", "198.18.0.1"];
    let with = |action: &'static str| {
        let mut v = vec![action];
        v.extend_from_slice(&args);
        v
    };
    assert_eq!(code(&ns, IPT, &with("status")), 1);
    ok(&ns, IPT, &with("add"));
    ok(&ns, IPT, &with("add"));
    let lines = saved(&ns, "iptables-save", 9999);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let from_server = "-s 198.18.0.2/32 -d 198.18.0.1/32";
    let to_server = "-s 198.18.0.1/32 -d 198.18.0.2/32";
    assert_eq!(
        count(
            &lines,
            &["-A PREROUTING", from_server, "--sport 9999", "-j DROP"]
        ),
        1
    );
    assert_eq!(
        count(
            &lines,
            &["-A OUTPUT", to_server, "--dport 9999", "-j NOTRACK"]
        ),
        1
    );
    assert_eq!(
        count(
            &lines,
            &[
                "-A OUTPUT",
                to_server,
                "--dport 9999",
                "--tcp-flags RST RST",
                "-j DROP"
            ]
        ),
        1
    );
    if have_ip6tables() {
        assert!(
            saved(&ns, "ip6tables-save", 9999).is_empty(),
            "IPv4 server: no v6 rules"
        );
    }
    assert_eq!(code(&ns, IPT, &with("status")), 0);
    assert_eq!(
        code(&ns, IPT, &["status", "9999", "--local", "198.18.0.1"]),
        1,
        "server rules are separate"
    );
    ok(&ns, IPT, &with("remove"));
    assert!(saved(&ns, "iptables-save", 9999).is_empty());
    assert_eq!(code(&ns, IPT, &with("status")), 1);

    if have_ip6tables() {
        let v6 = [
            "add",
            "9999",
            "--client",
            "2001:db8::2",
            "--local",
            "2001:db8::1",
        ];
        ok(&ns, IPT, &v6);
        ok(&ns, IPT, &v6);
        assert_eq!(saved(&ns, "ip6tables-save", 9999).len(), 3);
        assert!(saved(&ns, "iptables-save", 9999).is_empty());
        let rm = [
            "remove",
            "9999",
            "--client",
            "2001:db8::2",
            "--local",
            "2001:db8::1",
        ];
        ok(&ns, IPT, &rm);
        assert!(saved(&ns, "ip6tables-save", 9999).is_empty());
    }
}

fn nft_tagged(ns: &Netns, port: u16) -> Vec<String> {
    let tag = format!("comment \"rawtun:{port}\"");
    let out = ns.exec(&["nft", "list", "ruleset"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn nft_rules_add_twice_remove_all() {
    common::require_root();
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIPPED: nft not installed");
        return;
    }
    let ns = Netns::new("nft");
    let server = ["9999", "--local", "198.18.0.6"];
    let client = ["9999", "--client", "198.18.0.2", "--local", "198.18.0.1"];
    let with = |action: &'static str, args: &[&'static str]| {
        let mut v = vec![action];
        v.extend_from_slice(args);
        v
    };
    assert_eq!(code(&ns, NFT, &with("status", &server)), 1);
    ok(&ns, NFT, &with("add", &server));
    ok(&ns, NFT, &with("add", &server));
    ok(&ns, NFT, &with("add", &client));
    ok(&ns, NFT, &with("add", &client));
    let lines = nft_tagged(&ns, 9999);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    // Incoming packets dropped (server: to its port; client: from the server's port),
    // outgoing ones untracked, the kernel's RSTs dropped.
    assert_eq!(
        count(&lines, &["ip daddr 198.18.0.6 tcp dport 9999 drop"]),
        1
    );
    assert_eq!(
        count(&lines, &["ip daddr 198.18.0.1 tcp sport 9999 drop"]),
        1
    );
    assert_eq!(
        count(&lines, &["ip saddr 198.18.0.6 tcp sport 9999 notrack"]),
        1
    );
    assert_eq!(
        count(&lines, &["ip daddr 198.18.0.2 tcp dport 9999 notrack"]),
        1
    );
    assert_eq!(count(&lines, &["drop"]), 4);
    assert_eq!(count(&lines, &["ip daddr 198.18.0.6 tcp dport 9999"]), 1);
    assert_eq!(count(&lines, &["198.18.0.2", "198.18.0.1"]), 3);
    assert_eq!(code(&ns, NFT, &with("status", &server)), 0);
    ok(&ns, NFT, &with("remove", &server));
    assert_eq!(nft_tagged(&ns, 9999).len(), 3, "client rules stay");
    assert_eq!(code(&ns, NFT, &with("status", &server)), 1);
    assert_eq!(code(&ns, NFT, &with("status", &client)), 0);
    ok(&ns, NFT, &with("remove", &client));
    assert!(nft_tagged(&ns, 9999).is_empty());
    let tables = ns.exec_ok(&["nft", "list", "tables"]);
    assert!(
        !tables.contains("rawtun"),
        "empty table is deleted: {tables}"
    );
}

/// What a kernel TCP connect sees: "refused" (an RST came back), "timeout", or "connected".
fn probe(ns: &Netns, bind_port: u16, target: &str, port: u16) -> String {
    let program = format!(
        "import socket\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('', {bind_port}))\n\
         s.settimeout(1.0)\n\
         try:\n    s.connect(('{target}', {port})); print('connected')\n\
         except ConnectionRefusedError: print('refused')\n\
         except (TimeoutError, socket.timeout): print('timeout')\n"
    );
    ns.exec_ok(&["python3", "-c", &program]).trim().to_owned()
}

/// The RST-drop rules at work: a connect to a closed port is refused without rules and
/// runs into a timeout with them, on the server (RST from port 9999) and on the client (RST
/// to the server's port 9999).
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn rules_keep_kernel_rsts_off_the_wire() {
    common::require_root();
    let t = Topology::pair();
    let (client_ip, server_ip) = (t.client_ip.to_string(), t.server_ip.to_string());
    // Client connects to server:9999 (closed): the server kernel would answer with an RST.
    assert_eq!(probe(&t.client, 0, &server_ip, 9999), "refused");
    // Server-side socket on port 9999 connects to a closed client port: the client kernel
    // would answer with an RST to server:9999.
    assert_eq!(probe(&t.server, 9999, &client_ip, 5555), "refused");

    t.apply_firewall(9999);
    assert_eq!(probe(&t.client, 0, &server_ip, 9999), "timeout");
    assert_eq!(probe(&t.server, 9999, &client_ip, 5555), "timeout");
    // Other ports are untouched.
    assert_eq!(probe(&t.client, 0, &server_ip, 9998), "refused");

    let script = repo_path(IPT);
    let script = script.to_str().expect("UTF-8 path");
    t.server
        .exec_ok(&["bash", script, "remove", "9999", "--local", &server_ip]);
    t.client.exec_ok(&[
        "bash", script, "remove", "9999", "--client", &server_ip, "--local", &client_ip,
    ]);
    assert_eq!(probe(&t.client, 0, &server_ip, 9999), "refused");
    assert_eq!(probe(&t.server, 9999, &client_ip, 5555), "refused");
}
