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

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn server(backend: Backend) -> RuleSet {
    RuleSet::new(Side::Server { port: PORT }, Some(backend))
}

fn client(addr: &str, backend: Backend) -> RuleSet {
    let server: SocketAddr = addr.parse().expect("a literal socket address");
    RuleSet::new(Side::Client { server }, Some(backend))
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
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 3);
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
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 6);
        assert_eq!(tagged(&save(&ns, "iptables-save")), 6);
        on(&ns, &c6, RuleSet::remove);
        assert_eq!(tagged(&save(&ns, "ip6tables-save")), 3);
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
    del[7] = "--dport";
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
    assert_eq!(all.matches("chain server_9999_").count(), 3, "{all}");
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
        "server_9999_rst",
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
    script(&by_script, IPT, &["add", "9999"]);
    script(&by_script, IPT, &["add", "9999", "--client", "198.18.0.2"]);
    for set in [
        server(Backend::Iptables),
        client(SERVER_V4, Backend::Iptables),
    ] {
        on(&by_rust, &set, RuleSet::apply);
    }
    let mut tools = vec!["iptables-save"];
    if have("ip6tables") {
        script(&by_script, IPT, &["add", "9999", "--client", "2001:db8::2"]);
        on(
            &by_rust,
            &client(SERVER_V6, Backend::Iptables),
            RuleSet::apply,
        );
        tools.push("ip6tables-save");
    }
    for tool in &tools {
        let (a, b) = (save(&by_script, tool), save(&by_rust, tool));
        assert!(tagged(&a) >= 6, "{tool}: {a}");
        assert_eq!(a, b, "{tool}: script vs library");
    }
    // Cross-applying adds nothing.
    on(&by_script, &server(Backend::Iptables), RuleSet::apply);
    script(&by_rust, IPT, &["add", "9999"]);
    for tool in &tools {
        assert_eq!(save(&by_script, tool), save(&by_rust, tool), "{tool}");
    }
    // The script removes what the library installed.
    script(&by_rust, IPT, &["remove", "9999"]);
    script(&by_rust, IPT, &["remove", "9999", "--client", "198.18.0.2"]);
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
    script(&by_script, NFT, &["add", "9999"]);
    script(&by_script, NFT, &["add", "9999", "--client", "198.18.0.2"]);
    script(
        &by_script,
        NFT,
        &["add", "9999", "--client", "2001:DB8:0::02"],
    );
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
    script(&by_rust, NFT, &["add", "9999"]);
    assert_eq!(nft_ruleset(&by_script), nft_ruleset(&by_rust));
    assert_eq!(
        on(
            &by_script,
            &client(SERVER_V6, Backend::Nftables),
            RuleSet::present
        ),
        RuleState::All
    );
    script(&by_rust, NFT, &["remove", "9999"]);
    script(&by_rust, NFT, &["remove", "9999", "--client", "198.18.0.2"]);
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
        "role: server\nlisten:\n  addr: \":9999\"\n",
    );
    let client_cfg = write_config(
        dir.path(),
        "c.yaml",
        &format!("role: client\nserver:\n  addr: \"{SERVER_V4}\"\n"),
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
