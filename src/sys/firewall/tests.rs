use super::*;

fn words(cmd: &[String]) -> String {
    cmd.join(" ")
}

#[test]
fn iptables_server_commands() {
    let rules = RuleSet {
        backend: Backend::Iptables,
        side: Side::Server { port: 9999 },
        tools: vec!["iptables", "ip6tables"],
    };
    let apply: Vec<String> = rules
        .commands(Action::Apply)
        .iter()
        .map(|c| words(c))
        .collect();
    let tag = "-m comment --comment rawtun:9999";
    assert_eq!(
        apply,
        [
            format!("iptables -w -t raw -A PREROUTING -p tcp --dport 9999 -j NOTRACK {tag}"),
            format!("ip6tables -w -t raw -A PREROUTING -p tcp --dport 9999 -j NOTRACK {tag}"),
            format!("iptables -w -t raw -A OUTPUT -p tcp --sport 9999 -j NOTRACK {tag}"),
            format!("ip6tables -w -t raw -A OUTPUT -p tcp --sport 9999 -j NOTRACK {tag}"),
            format!(
                "iptables -w -t mangle -A OUTPUT -p tcp --sport 9999 --tcp-flags RST RST -j DROP {tag}"
            ),
            format!(
                "ip6tables -w -t mangle -A OUTPUT -p tcp --sport 9999 --tcp-flags RST RST -j DROP {tag}"
            ),
        ]
    );
    let remove = rules.commands(Action::Remove);
    assert_eq!(remove.len(), 6);
    assert!(remove.iter().all(|c| c[4] == "-D"), "{remove:?}");
}

#[test]
fn iptables_client_commands_follow_the_server_family() {
    let v4 = RuleSet::new(
        Side::Client {
            server: "198.18.0.2:443".parse().unwrap(),
        },
        Some(Backend::Iptables),
    );
    let apply: Vec<String> = v4
        .commands(Action::Apply)
        .iter()
        .map(|c| words(c))
        .collect();
    let tag = "-m comment --comment rawtun:443";
    assert_eq!(
        apply,
        [
            format!("iptables -w -t raw -A PREROUTING -p tcp -s 198.18.0.2 --sport 443 -j NOTRACK {tag}"),
            format!("iptables -w -t raw -A OUTPUT -p tcp -d 198.18.0.2 --dport 443 -j NOTRACK {tag}"),
            format!(
                "iptables -w -t mangle -A OUTPUT -p tcp -d 198.18.0.2 --dport 443 --tcp-flags RST RST -j DROP {tag}"
            ),
        ]
    );
    let v6 = RuleSet::new(
        Side::Client {
            server: "[2001:db8::2]:443".parse().unwrap(),
        },
        Some(Backend::Iptables),
    );
    let cmds = v6.commands(Action::Apply);
    assert!(cmds.iter().all(|c| c[0] == "ip6tables"), "{cmds:?}");
    assert!(words(&cmds[0]).contains("-s 2001:db8::2 --sport 443"));
    // An IPv4-mapped server address is an IPv4 server.
    let mapped = RuleSet::new(
        Side::Client {
            server: "[::ffff:198.18.0.2]:443".parse().unwrap(),
        },
        Some(Backend::Iptables),
    );
    assert_eq!(mapped.commands(Action::Apply), v4.commands(Action::Apply));
}

#[test]
fn nft_server_script() {
    let rules = RuleSet::new(Side::Server { port: 9999 }, Some(Backend::Nftables));
    let cmds = rules.commands(Action::Apply);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0][0], "nft");
    let script: Vec<&str> = cmds[0][1].split("; ").collect();
    assert_eq!(
        script[..4],
        [
            "add table inet rawtun",
            "add chain inet rawtun server_9999_prerouting { type filter hook prerouting priority raw",
            "policy accept",
            "}",
        ]
    );
    assert!(cmds[0][1].contains(
        "flush chain inet rawtun server_9999_prerouting; \
         add rule inet rawtun server_9999_prerouting tcp dport 9999 notrack comment \"rawtun:9999\""
    ));
    assert!(cmds[0][1].contains(
        "add rule inet rawtun server_9999_output tcp sport 9999 notrack comment \"rawtun:9999\""
    ));
    assert!(cmds[0][1].contains(
        "add chain inet rawtun server_9999_rst { type filter hook output priority mangle; policy accept; }"
    ));
    assert!(cmds[0][1].contains(
        "add rule inet rawtun server_9999_rst tcp sport 9999 tcp flags & rst == rst drop comment \"rawtun:9999\""
    ));
    assert_eq!(
        rules.commands(Action::Remove),
        [vec![
            "nft".to_owned(),
            "delete chain inet rawtun server_9999_prerouting; \
             delete chain inet rawtun server_9999_output; \
             delete chain inet rawtun server_9999_rst"
                .to_owned()
        ]]
    );
}

#[test]
fn nft_client_chains_name_the_server() {
    let v4 = RuleSet::new(
        Side::Client {
            server: "198.18.0.2:443".parse().unwrap(),
        },
        Some(Backend::Nftables),
    );
    let script = &v4.commands(Action::Apply)[0][1];
    assert!(script.contains(
        "add rule inet rawtun client_443_198.18.0.2_prerouting ip saddr 198.18.0.2 tcp sport 443 notrack"
    ));
    let v6 = RuleSet::new(
        Side::Client {
            server: "[2001:db8::2]:443".parse().unwrap(),
        },
        Some(Backend::Nftables),
    );
    let script = &v6.commands(Action::Apply)[0][1];
    assert!(script.contains(
        "add rule inet rawtun client_443_2001-0db8-0000-0000-0000-0000-0000-0002_rst \
         ip6 daddr 2001:db8::2 tcp dport 443 tcp flags & rst == rst drop comment \"rawtun:443\""
    ));
}

const LISTING: &str = "\
table inet rawtun {
\tchain server_9999_prerouting {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\ttcp dport 9999 notrack comment \"rawtun:9999\"
\t}

\tchain client_9999_2001-0db8-0000-0000-0000-0000-0000-0002_rst {
\t\ttype filter hook output priority mangle; policy accept;
\t}
}
";

#[test]
fn nft_listing_parsing() {
    assert_eq!(
        parse_nft_chains(LISTING),
        [
            "server_9999_prerouting",
            "client_9999_2001-0db8-0000-0000-0000-0000-0000-0002_rst"
        ]
    );
    assert_eq!(
        nft_chain_body(LISTING, "server_9999_prerouting"),
        Some(vec![
            "type filter hook prerouting priority raw; policy accept;",
            "tcp dport 9999 notrack comment \"rawtun:9999\""
        ])
    );
    assert_eq!(
        nft_chain_body(
            LISTING,
            "client_9999_2001-0db8-0000-0000-0000-0000-0000-0002_rst"
        ),
        Some(vec![
            "type filter hook output priority mangle; policy accept;"
        ])
    );
    assert_eq!(nft_chain_body(LISTING, "server_9999"), None);
    assert!(parse_nft_chains("").is_empty());
}

#[test]
fn shell_quoting() {
    let cmd = ["nft", "add rule x \"c\"", "it's", "-w", ""].map(str::to_owned);
    assert_eq!(shell_line(&cmd), r#"nft 'add rule x "c"' 'it'\''s' -w ''"#);
}
