use super::*;

fn words(cmd: &[String]) -> String {
    cmd.join(" ")
}

fn server(local: &str) -> Side {
    Side::Server {
        port: 9999,
        local: local.parse().unwrap(),
    }
}

fn client(server: &str, local: &str) -> Side {
    Side::Client {
        server: server.parse().unwrap(),
        local: local.parse().unwrap(),
    }
}

#[test]
fn iptables_server_commands_match_the_local_address_and_its_family_only() {
    let rules = RuleSet::new(server("198.18.0.2"), Some(Backend::Iptables));
    let apply: Vec<String> = rules
        .commands(Action::Apply)
        .iter()
        .map(|c| words(c))
        .collect();
    let tag = "-m comment --comment rawtun:9999";
    assert_eq!(
        apply,
        [
            format!("iptables -w -t raw -A PREROUTING -p tcp -d 198.18.0.2 --dport 9999 -j DROP {tag}"),
            format!("iptables -w -t raw -A OUTPUT -p tcp -s 198.18.0.2 --sport 9999 -j NOTRACK {tag}"),
            format!(
                "iptables -w -t mangle -A OUTPUT -p tcp -s 198.18.0.2 --sport 9999 --tcp-flags RST RST -j DROP {tag}"
            ),
        ]
    );
    let remove = rules.commands(Action::Remove);
    assert_eq!(remove.len(), 3);
    assert!(remove.iter().all(|c| c[4] == "-D"), "{remove:?}");
    let v6 = RuleSet::new(server("2001:2::2"), Some(Backend::Iptables));
    let cmds = v6.commands(Action::Apply);
    assert!(cmds.iter().all(|c| c[0] == "ip6tables"), "{cmds:?}");
    assert!(words(&cmds[0]).contains("-d 2001:2::2 --dport 9999"));
}

#[test]
fn iptables_client_commands_match_both_ends_of_the_flow() {
    let v4 = RuleSet::new(
        client("198.18.0.2:443", "198.18.0.1"),
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
            format!("iptables -w -t raw -A PREROUTING -p tcp -s 198.18.0.2 -d 198.18.0.1 --sport 443 -j DROP {tag}"),
            format!("iptables -w -t raw -A OUTPUT -p tcp -s 198.18.0.1 -d 198.18.0.2 --dport 443 -j NOTRACK {tag}"),
            format!(
                "iptables -w -t mangle -A OUTPUT -p tcp -s 198.18.0.1 -d 198.18.0.2 --dport 443 --tcp-flags RST RST -j DROP {tag}"
            ),
        ]
    );
    let v6 = RuleSet::new(
        client("[2001:db8::2]:443", "2001:db8::1"),
        Some(Backend::Iptables),
    );
    let cmds = v6.commands(Action::Apply);
    assert!(cmds.iter().all(|c| c[0] == "ip6tables"), "{cmds:?}");
    assert!(words(&cmds[0]).contains("-s 2001:db8::2 -d 2001:db8::1 --sport 443"));
    // IPv4-mapped addresses are IPv4.
    let mapped = RuleSet::new(
        client("[::ffff:198.18.0.2]:443", "::ffff:198.18.0.1"),
        Some(Backend::Iptables),
    );
    assert_eq!(mapped.commands(Action::Apply), v4.commands(Action::Apply));
}

#[test]
fn nft_server_script() {
    let rules = RuleSet::new(server("198.18.0.2"), Some(Backend::Nftables));
    let cmds = rules.commands(Action::Apply);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0][0], "nft");
    let script: Vec<&str> = cmds[0][1].split("; ").collect();
    assert_eq!(
        script[..4],
        [
            "add table inet rawtun",
            "add chain inet rawtun server_9999_198.18.0.2_prerouting { type filter hook prerouting priority raw",
            "policy accept",
            "}",
        ]
    );
    assert!(cmds[0][1].contains(
        "flush chain inet rawtun server_9999_198.18.0.2_prerouting; \
         add rule inet rawtun server_9999_198.18.0.2_prerouting ip daddr 198.18.0.2 tcp dport 9999 drop comment \"rawtun:9999\""
    ));
    assert!(cmds[0][1].contains(
        "add rule inet rawtun server_9999_198.18.0.2_output ip saddr 198.18.0.2 tcp sport 9999 notrack comment \"rawtun:9999\""
    ));
    assert!(cmds[0][1].contains(
        "add chain inet rawtun server_9999_198.18.0.2_rst { type filter hook output priority mangle; policy accept; }"
    ));
    assert!(cmds[0][1].contains(
        "add rule inet rawtun server_9999_198.18.0.2_rst ip saddr 198.18.0.2 tcp sport 9999 tcp flags & rst == rst drop comment \"rawtun:9999\""
    ));
    assert_eq!(
        rules.commands(Action::Remove),
        [vec![
            "nft".to_owned(),
            "delete chain inet rawtun server_9999_198.18.0.2_prerouting; \
             delete chain inet rawtun server_9999_198.18.0.2_output; \
             delete chain inet rawtun server_9999_198.18.0.2_rst"
                .to_owned()
        ]]
    );
}

#[test]
fn nft_client_chains_name_both_ends() {
    let v4 = RuleSet::new(
        client("198.18.0.2:443", "198.18.0.1"),
        Some(Backend::Nftables),
    );
    let script = &v4.commands(Action::Apply)[0][1];
    assert!(script.contains(
        "add rule inet rawtun client_443_198.18.0.2_198.18.0.1_prerouting \
         ip saddr 198.18.0.2 ip daddr 198.18.0.1 tcp sport 443 drop"
    ));
    let v6 = RuleSet::new(
        client("[2001:db8::2]:443", "2001:db8::1"),
        Some(Backend::Nftables),
    );
    let script = &v6.commands(Action::Apply)[0][1];
    assert!(script.contains(
        "add rule inet rawtun client_443_2001-0db8-0000-0000-0000-0000-0000-0002_\
         2001-0db8-0000-0000-0000-0000-0000-0001_rst \
         ip6 saddr 2001:db8::1 ip6 daddr 2001:db8::2 tcp dport 443 tcp flags & rst == rst drop comment \"rawtun:443\""
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
