//! Firewall rules that keep the kernel TCP stack out of a rawtun flow: the daemon's
//! equivalent of `iptables/rawtun-iptables.sh` and `iptables/rawtun-nft.sh` (the scripts
//! install exactly these rules, with the same comments and, for nftables, the same chains).
//!
//! The kernel sees every fake-TCP packet rawtun sends and captures. Without rules,
//! conntrack tracks a connection that never completed a handshake and the kernel runs its
//! TCP input for each packet, finds no socket and answers with a TCP RST. Packet sockets
//! (pcap, AF_PACKET) take their copy of an incoming frame before netfilter's PREROUTING
//! hook, so the incoming rule *drops* the tunnel's packets in the raw table: rawtun still
//! captures them, and the kernel neither tracks them nor spends a route lookup, a TCP
//! lookup and an RST on each (measured: one stream 375/361 → 510/518 Mbit/s up/down on a
//! 2-vCPU AMD EPYC, see ../shared/TESTBED.md). The outgoing NOTRACK and RST-drop rules are
//! the second line: rawtun's own frames leave through a packet socket and never meet
//! netfilter's OUTPUT hook, so these two only match a packet the kernel itself builds on
//! the flow — an RST if the incoming drop is missing (another tool flushed the raw table,
//! or the rules are being put in place) — and cost nothing otherwise. Both ends need
//! rules, and they match the tunnel's flow only — its local address, its port and that
//! address's family — so another service on the same port number but another address (or
//! family) keeps its connection tracking and its RSTs:
//!
//! ```text
//!             server (LOCAL_IP:PORT)                client (LOCAL_IP to SERVER_IP:PORT)
//! raw    PRE  -p tcp -d LOCAL_IP --dport PORT        -p tcp -s SERVER_IP -d LOCAL_IP
//!             -j DROP                                --sport PORT -j DROP
//! raw    OUT  -p tcp -s LOCAL_IP --sport PORT        -p tcp -s LOCAL_IP -d SERVER_IP
//!             -j NOTRACK                             --dport PORT -j NOTRACK
//! mangle OUT  -p tcp -s LOCAL_IP --sport PORT        -p tcp -s LOCAL_IP -d SERVER_IP
//!             --tcp-flags RST RST -j DROP            --dport PORT --tcp-flags RST RST -j DROP
//! ```
//!
//! iptables: every rule carries `-m comment --comment rawtun:PORT`; rules go to the tool of
//! LOCAL_IP's family (iptables or ip6tables) only.
//! [`RuleSet::apply`] checks each rule with `-C` before `-A` (idempotent, also across
//! processes: a daemon killed with SIGKILL and restarted still leaves one copy);
//! [`RuleSet::remove`] deletes every copy.
//!
//! nftables: table `inet rawtun`, three base chains per rule set, named after it
//! (`server_PORT_LOCAL_*` or `client_PORT_SERVER_LOCAL_*`, each address being the dotted
//! IPv4 address or the eight 4-digit groups of the IPv6 address joined by `-`): `_prerouting` and `_output` at
//! priority raw (drop in, notrack out), `_rst` on output at priority mangle (drop RSTs). Apply creates
//! and flushes the chains and adds the rules in one `nft` transaction, so a second apply
//! recreates rather than duplicates; remove deletes the chains, and the table once no chain
//! is left. Each rule's comment is `rawtun:PORT`.
//!
//! Tools are run with [`std::process::Command`] (no shell); errors name the command and its
//! stderr.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

/// The nftables table every rawtun rule set lives in.
pub const NFT_TABLE: &str = "rawtun";

/// Which firewall tool installs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables / ip6tables (either variant: legacy or nf_tables).
    Iptables,
    /// nft, table `inet rawtun`.
    Nftables,
}

impl Backend {
    /// `iptables` when that binary is on `PATH`, otherwise `nftables`.
    pub fn detect() -> Backend {
        if on_path("iptables") {
            Backend::Iptables
        } else {
            Backend::Nftables
        }
    }

    /// The spelling used on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// Which end of the tunnel the rules are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A server whose tunnel is `local:port` (rules for that address and its family).
    Server {
        /// The tunnel port.
        port: u16,
        /// The address the tunnel's packets arrive at and leave from.
        local: IpAddr,
    },
    /// A client at `local` of `server` (rules for that flow only).
    Client {
        /// The server's address and tunnel port.
        server: SocketAddr,
        /// The client's own address on the path to the server.
        local: IpAddr,
    },
}

impl Side {
    /// The tunnel port the rules match.
    pub fn port(&self) -> u16 {
        match self {
            Side::Server { port, .. } => *port,
            Side::Client { server, .. } => server.port(),
        }
    }

    /// This end's address (IPv4-mapped IPv6 addresses taken as IPv4).
    pub fn local_ip(&self) -> IpAddr {
        match self {
            Side::Server { local, .. } | Side::Client { local, .. } => local.to_canonical(),
        }
    }

    /// The server address of a client (IPv4-mapped IPv6 addresses taken as IPv4).
    fn server_ip(&self) -> Option<IpAddr> {
        match self {
            Side::Server { .. } => None,
            Side::Client { server, .. } => Some(server.ip().to_canonical()),
        }
    }
}

/// What [`RuleSet::commands`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The commands that install the rules.
    Apply,
    /// The commands that delete them.
    Remove,
}

/// How many of a rule set's rules are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleState {
    /// Every rule.
    All,
    /// Some but not all.
    Partial,
    /// None.
    None,
}

/// Failure to run a firewall tool or of the tool itself.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The tool could not be started.
    #[error("cannot run `{command}`: {source} (install the {package} package)")]
    Spawn {
        /// The command line.
        command: String,
        /// Which Debian package provides the tool.
        package: &'static str,
        /// Why it could not start.
        source: io::Error,
    },
    /// The tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// The rules of one tunnel end, for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The tool that installs them.
    pub backend: Backend,
    /// The end they are for.
    pub side: Side,
    /// iptables tools to run (`iptables`, `ip6tables`); empty for nftables.
    tools: Vec<&'static str>,
}

/// One iptables rule: table, chain and match/target words (without the comment).
struct IptRule {
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
}

/// One nftables base chain of a rule set and its single rule.
struct NftChain {
    name: String,
    hook: &'static str,
    priority: &'static str,
    rule: String,
}

impl RuleSet {
    /// The rules for `side`; `backend: None` picks iptables when its binary exists, else
    /// nftables ([`Backend::detect`]).
    pub fn new(side: Side, backend: Option<Backend>) -> RuleSet {
        let backend = backend.unwrap_or_else(Backend::detect);
        let tools = match (backend, side.local_ip()) {
            (Backend::Nftables, _) => Vec::new(),
            (Backend::Iptables, IpAddr::V4(_)) => vec!["iptables"],
            (Backend::Iptables, IpAddr::V6(_)) => vec!["ip6tables"],
        };
        RuleSet {
            backend,
            side,
            tools,
        }
    }

    /// The comment every rule carries: `rawtun:PORT`.
    pub fn comment(&self) -> String {
        format!("rawtun:{}", self.side.port())
    }

    /// The command lines (program first) that install or delete the rules, for
    /// `rawtun firewall print`. [`RuleSet::apply`] runs the `Apply` commands after checking
    /// each iptables rule with `-C`; [`RuleSet::remove`] repeats each iptables `-D` while
    /// the rule exists and deletes only nft chains that exist.
    pub fn commands(&self, action: Action) -> Vec<Vec<String>> {
        match self.backend {
            Backend::Iptables => {
                let op = match action {
                    Action::Apply => "-A",
                    Action::Remove => "-D",
                };
                self.ipt_rules()
                    .iter()
                    .flat_map(|rule| self.tools.iter().map(move |tool| self.ipt(tool, op, rule)))
                    .collect()
            }
            Backend::Nftables => {
                let chains = self.nft_chains();
                let script = match action {
                    Action::Apply => nft_apply_script(&chains),
                    Action::Remove => nft_remove_script(chains.iter().map(|c| c.name.as_str())),
                };
                vec![vec!["nft".to_owned(), script]]
            }
        }
    }

    /// Installs the rules; a rule already present is not added again.
    pub fn apply(&self) -> Result<(), FirewallError> {
        match self.backend {
            Backend::Iptables => {
                for rule in self.ipt_rules() {
                    for tool in &self.tools {
                        if !succeeds(&self.ipt(tool, "-C", &rule))? {
                            run(&self.ipt(tool, "-A", &rule))?;
                        }
                    }
                }
                Ok(())
            }
            Backend::Nftables => {
                let script = nft_apply_script(&self.nft_chains());
                run(&["nft".to_owned(), script]).map(drop)
            }
        }
    }

    /// Deletes every copy of the rules; nothing to delete is not an error.
    pub fn remove(&self) -> Result<(), FirewallError> {
        match self.backend {
            Backend::Iptables => {
                for rule in self.ipt_rules() {
                    for tool in &self.tools {
                        while succeeds(&self.ipt(tool, "-C", &rule))? {
                            run(&self.ipt(tool, "-D", &rule))?;
                        }
                    }
                }
                Ok(())
            }
            Backend::Nftables => {
                let Some(listing) = nft_table_listing()? else {
                    return Ok(());
                };
                let existing = parse_nft_chains(&listing);
                let ours = self.nft_chains();
                let doomed: Vec<&str> = ours
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|name| existing.iter().any(|e| e == name))
                    .collect();
                if !doomed.is_empty() {
                    run(&["nft".to_owned(), nft_remove_script(doomed.iter().copied())])?;
                }
                if existing.len() == doomed.len() {
                    let table = format!("delete table inet {NFT_TABLE}");
                    run(&["nft".to_owned(), table])?;
                }
                Ok(())
            }
        }
    }

    /// Whether all, some or none of the rules are installed.
    pub fn present(&self) -> Result<RuleState, FirewallError> {
        let (mut present, mut missing) = (0usize, 0usize);
        match self.backend {
            Backend::Iptables => {
                for rule in self.ipt_rules() {
                    for tool in &self.tools {
                        if succeeds(&self.ipt(tool, "-C", &rule))? {
                            present += 1;
                        } else {
                            missing += 1;
                        }
                    }
                }
            }
            Backend::Nftables => {
                let listing = nft_table_listing()?.unwrap_or_default();
                let tag = format!("comment \"{}\"", self.comment());
                for chain in self.nft_chains() {
                    let body = nft_chain_body(&listing, &chain.name);
                    if body.is_some_and(|b| b.iter().any(|l| l.contains(&tag))) {
                        present += 1;
                    } else {
                        missing += 1;
                    }
                }
            }
        }
        Ok(match (present, missing) {
            (_, 0) => RuleState::All,
            (0, _) => RuleState::None,
            _ => RuleState::Partial,
        })
    }

    fn ipt_rules(&self) -> Vec<IptRule> {
        let port = self.side.port().to_string();
        let local = self.side.local_ip().to_string();
        let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        let rst = ["--tcp-flags", "RST", "RST", "-j", "DROP"];
        let notrack = ["-j", "NOTRACK"];
        let drop = ["-j", "DROP"];
        let (incoming, outgoing) = match self.side.server_ip() {
            None => (
                words(&["-p", "tcp", "-d", &local, "--dport", &port]),
                words(&["-p", "tcp", "-s", &local, "--sport", &port]),
            ),
            Some(ip) => {
                let ip = ip.to_string();
                (
                    words(&["-p", "tcp", "-s", &ip, "-d", &local, "--sport", &port]),
                    words(&["-p", "tcp", "-s", &local, "-d", &ip, "--dport", &port]),
                )
            }
        };
        vec![
            IptRule {
                table: "raw",
                chain: "PREROUTING",
                spec: [incoming, words(&drop)].concat(),
            },
            IptRule {
                table: "raw",
                chain: "OUTPUT",
                spec: [outgoing.clone(), words(&notrack)].concat(),
            },
            IptRule {
                table: "mangle",
                chain: "OUTPUT",
                spec: [outgoing, words(&rst)].concat(),
            },
        ]
    }

    /// `TOOL -w -t TABLE OP CHAIN SPEC... -m comment --comment rawtun:PORT`.
    fn ipt(&self, tool: &str, op: &str, rule: &IptRule) -> Vec<String> {
        let mut cmd: Vec<String> = [tool, "-w", "-t", rule.table, op, rule.chain]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        cmd.extend(rule.spec.iter().cloned());
        cmd.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            self.comment(),
        ]);
        cmd
    }

    fn nft_chains(&self) -> Vec<NftChain> {
        let port = self.side.port();
        let comment = self.comment();
        let local = self.side.local_ip();
        let family = if local.is_ipv4() { "ip" } else { "ip6" };
        let (prefix, pre, out) = match self.side.server_ip() {
            None => (
                format!("server_{port}_{}", chain_addr(local)),
                format!("{family} daddr {local} tcp dport {port}"),
                format!("{family} saddr {local} tcp sport {port}"),
            ),
            Some(ip) => (
                format!("client_{port}_{}_{}", chain_addr(ip), chain_addr(local)),
                format!("{family} saddr {ip} {family} daddr {local} tcp sport {port}"),
                format!("{family} saddr {local} {family} daddr {ip} tcp dport {port}"),
            ),
        };
        vec![
            NftChain {
                name: format!("{prefix}_prerouting"),
                hook: "prerouting",
                priority: "raw",
                rule: format!("{pre} drop comment \"{comment}\""),
            },
            NftChain {
                name: format!("{prefix}_output"),
                hook: "output",
                priority: "raw",
                rule: format!("{out} notrack comment \"{comment}\""),
            },
            NftChain {
                name: format!("{prefix}_rst"),
                hook: "output",
                priority: "mangle",
                rule: format!("{out} tcp flags & rst == rst drop comment \"{comment}\""),
            },
        ]
    }
}

/// An address as part of a chain name: dotted IPv4, or the eight IPv6 groups as
/// 4 hex digits joined by `-` (nft identifiers cannot hold `:`).
fn chain_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// One nft transaction: the table, then per chain add + flush + the rule.
fn nft_apply_script(chains: &[NftChain]) -> String {
    let mut parts = vec![format!("add table inet {NFT_TABLE}")];
    for c in chains {
        parts.push(format!(
            "add chain inet {NFT_TABLE} {} {{ type filter hook {} priority {}; policy accept; }}",
            c.name, c.hook, c.priority
        ));
        parts.push(format!("flush chain inet {NFT_TABLE} {}", c.name));
        parts.push(format!("add rule inet {NFT_TABLE} {} {}", c.name, c.rule));
    }
    parts.join("; ")
}

fn nft_remove_script<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("delete chain inet {NFT_TABLE} {n}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `nft list table inet rawtun`, or `None` when the table does not exist.
fn nft_table_listing() -> Result<Option<String>, FirewallError> {
    let cmd = ["nft", "list", "tables"].map(str::to_owned);
    let tables = run(&cmd)?;
    let wanted = format!("table inet {NFT_TABLE}");
    if !tables.lines().any(|l| l.trim() == wanted) {
        return Ok(None);
    }
    run(&["nft", "list", "table", "inet", NFT_TABLE].map(str::to_owned)).map(Some)
}

/// Names of the chains in an `nft list table` listing.
pub(crate) fn parse_nft_chains(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("chain ")?;
            let name = rest.strip_suffix('{')?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

/// The lines inside `chain NAME { ... }` of a listing, or `None` if it has no such chain.
pub(crate) fn nft_chain_body<'a>(listing: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let header = format!("chain {name} {{");
    let mut lines = listing.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    Some(
        lines
            .take_while(|l| l.trim() != "}")
            .map(str::trim)
            .collect(),
    )
}

/// Whether `name` is an executable file in a directory of `PATH` (or /usr/sbin, /sbin).
fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A command line as a shell would accept it (words quoted when needed), for messages and
/// `rawtun firewall print`.
pub fn shell_line(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/=,+@%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn package(program: &str) -> &'static str {
    if program == "nft" {
        "nftables"
    } else {
        "iptables"
    }
}

fn output(cmd: &[String]) -> Result<std::process::Output, FirewallError> {
    let (program, args) = cmd.split_first().expect("a command line has a program");
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| FirewallError::Spawn {
            command: shell_line(cmd),
            package: package(program),
            source,
        })
}

/// Runs `cmd`; its stdout on success.
fn run(cmd: &[String]) -> Result<String, FirewallError> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::Failed {
            command: shell_line(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs a check (`iptables -C`): exit 0 = true, 1 = false, anything else is an error.
fn succeeds(cmd: &[String]) -> Result<bool, FirewallError> {
    let out = output(cmd)?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(FirewallError::Failed {
            command: shell_line(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
    }
}

impl fmt::Display for RuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleState::All => "all rules present",
            RuleState::Partial => "some rules present",
            RuleState::None => "no rules present",
        })
    }
}

#[cfg(test)]
mod tests;
