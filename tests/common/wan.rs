//! WAN topology: client and server namespaces joined through a third, `link`, namespace in
//! which `rawtun-linkemu` moves Ethernet frames between two veths while applying delay,
//! loss, rate limits, reordering, MTU limits and blackouts (there is no netem here).
//!
//! ```text
//!  client ns                 link ns                      server ns
//!  rtc<n> ──veth── rla<n> [rawtun-linkemu] rlb<n> ──veth── rts<n>
//!  198.18.x.1/30         (promiscuous, forwards frames)   198.18.x.2/30
//! ```
//!
//! Client and server sit on one /30, one L2 segment through the emulator, so each end's
//! `router_mac` is the other end's MAC. Offloads are off on all four veth ends, so the
//! emulator sees frames no larger than the MTU. [`WanLink`] owns the link namespace and the
//! emulator; it is part of the [`Topology`] and goes away with it.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    configure_end, link_up, offloads_off, wait_for, ChildGuard, Netns, Topology, TunnelSpec,
    COUNTER,
};
use std::sync::atomic::Ordering;

/// The emulator binary, when cargo built one (it is a `src/bin` target of this crate).
const LINKEMU: Option<&str> = option_env!("CARGO_BIN_EXE_rawtun-linkemu");

/// What the emulator is told: its CLI options except `--a`, `--b` and `--stats-file`,
/// which the topology supplies.
#[derive(Clone, Debug, Default)]
pub struct LinkSpec {
    /// Options such as `["--delay", "100ms", "--loss", "2%"]`.
    pub args: Vec<String>,
}

impl LinkSpec {
    /// A spec from option words; `--seed 1` is added unless the words name a seed, so runs
    /// are reproducible.
    pub fn new(args: &[&str]) -> LinkSpec {
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a == "--seed") {
            args.extend(["--seed".to_string(), "1".to_string()]);
        }
        LinkSpec { args }
    }
}

/// The link namespace with its two veth ends and the emulator running between them.
///
/// Drop order: the emulator (SIGKILL), then the namespace (anything left is killed).
pub struct WanLink {
    /// The emulator process.
    pub emulator: ChildGuard,
    /// The middle namespace.
    pub ns: Netns,
    /// Veth end facing the client (inside `ns`).
    pub a_if: String,
    /// Veth end facing the server (inside `ns`).
    pub b_if: String,
    /// The emulator's `--stats-file`.
    pub stats_path: PathBuf,
    /// The emulator's stdout and stderr.
    pub log_path: PathBuf,
    /// The options it was started with.
    pub spec: LinkSpec,
}

impl WanLink {
    /// Sends `signal` (`USR1` starts a `--signal-blackout`) to the emulator.
    pub fn signal(&self, signal: &str) {
        self.emulator.signal(signal);
    }

    /// The emulator's last stats object (`Null` when it wrote none).
    pub fn stats(&self) -> serde_json::Value {
        fs::read(&self.stats_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The last lines of the emulator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.emulator.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        let mut text = format!("--- rawtun-linkemu log (last {} lines)\n", tail.len());
        for line in tail {
            text += line;
            text.push('\n');
        }
        text += &format!("--- rawtun-linkemu stats: {}\n", self.stats());
        text
    }
}

/// `ethtool -K DEV tso off gso off gro off` (plus `extra`), when ethtool is installed.
impl Topology {
    /// Client, link and server namespaces, two veth pairs, `rawtun-linkemu` started in the
    /// link namespace with `link`'s options; returns once a ping crosses the emulated path.
    pub fn wan(link: LinkSpec) -> Topology {
        let Some(linkemu) = LINKEMU else {
            panic!(
                "the rawtun-linkemu binary is not part of this build (src/bin/rawtun-linkemu.rs)"
            );
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let client = Netns::with_index(n, "c");
        let middle = Netns::with_index(n, "l");
        let server = Netns::with_index(n, "s");
        let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + 4 * (n as u32 % 32768);
        let client_ip = std::net::Ipv4Addr::from(base + 1);
        let server_ip = std::net::Ipv4Addr::from(base + 2);
        let (client_if, server_if) = (format!("rtc{n}"), format!("rts{n}"));
        let (a_if, b_if) = (format!("rla{n}"), format!("rlb{n}"));
        let mac = |side: u8| {
            format!(
                "02:72:74:{:02x}:{:02x}:{side:02x}",
                (n >> 8) & 0xff,
                n & 0xff
            )
        };
        let (client_mac, server_mac) = (mac(1), mac(2));
        for (ns, ifname, ifmac, link_if, link_mac) in [
            (&client, &client_if, &client_mac, &a_if, mac(3)),
            (&server, &server_if, &server_mac, &b_if, mac(4)),
        ] {
            ns.exec_ok(&[
                "ip",
                "link",
                "add",
                ifname,
                "address",
                ifmac,
                "type",
                "veth",
                "peer",
                "name",
                link_if,
                "address",
                &link_mac,
                "netns",
                middle.name(),
            ]);
        }
        for (ns, ifname, ip) in [
            (&client, &client_if, client_ip),
            (&server, &server_if, server_ip),
        ] {
            configure_end(ns, ifname, ip);
        }
        for ifname in [&a_if, &b_if] {
            let _ = middle.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{ifname}.disable_ipv6=1"),
            ]);
            offloads_off(&middle, ifname, &[]);
            middle.exec_ok(&["ip", "link", "set", ifname, "up"]);
        }
        let up = link_up;
        assert!(
            wait_for(Duration::from_secs(5), || up(&client, &client_if)
                && up(&server, &server_if)
                && up(&middle, &a_if)
                && up(&middle, &b_if)),
            "veths {client_if}/{a_if} and {b_if}/{server_if} did not come up"
        );

        let dir = tempfile::tempdir().expect("the temp dir is writable");
        let stats_path = dir.path().join("linkemu-stats.json");
        let log_path = dir.path().join("linkemu.log");
        let stats_str = stats_path.to_str().expect("temp paths are UTF-8");
        let mut args: Vec<&str> = vec![linkemu, "--a", &a_if, "--b", &b_if];
        args.extend(link.args.iter().map(String::as_str));
        args.extend(["--stats-file", stats_str]);
        let emulator = middle.spawn(&args, Some(&log_path));
        let mut wan = WanLink {
            emulator,
            ns: middle,
            a_if,
            b_if,
            stats_path,
            log_path,
            spec: link,
        };
        // Ready: a ping crosses the emulated path (ARP included). Each try waits up to 2 s,
        // so lossy or long paths get several tries.
        let target = server_ip.to_string();
        let reached = wait_for(Duration::from_secs(20), || {
            wan.emulator.exited().is_none()
                && client
                    .exec(&["ping", "-n", "-q", "-c", "1", "-W", "2", &target])
                    .status
                    .success()
        });
        if let Some(status) = wan.emulator.exited() {
            panic!(
                "rawtun-linkemu exited during start-up ({status}):\n{}",
                wan.log_tail()
            );
        }
        assert!(
            reached,
            "no ping crossed the emulated link within 20 s:\n{}",
            wan.log_tail()
        );
        Topology {
            daemons: Vec::new(),
            helpers: Vec::new(),
            client,
            server,
            client_if,
            server_if,
            client_mac,
            server_mac,
            client_ip,
            server_ip,
            v6: None,
            spec: None,
            link: Some(wan),
            dir,
        }
    }

    /// [`Topology::wan`], then firewall rules, configs from `spec` and both daemons, as
    /// [`Topology::tunnel`] does on a plain veth.
    pub fn wan_tunnel(link: LinkSpec, spec: TunnelSpec) -> Topology {
        let mut t = Topology::wan(link);
        t.apply_firewall(spec.port);
        t.write_configs(&spec);
        t.start_server();
        t.start_client();
        t
    }

    /// The emulated link (panics on a topology built by [`Topology::pair`]).
    pub fn link(&self) -> &WanLink {
        self.link
            .as_ref()
            .expect("Topology::wan() built this topology")
    }
}
