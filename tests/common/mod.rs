//! Network-namespace harness shared by the root-only integration tests.
//!
//! [`Netns`] is a guard around one `ip netns` namespace with a name unique to this process
//! (`rt-<pid>-<n>-<tag>`); dropping it kills every process left inside and deletes it, also
//! while a test panics. [`Topology::pair`] joins a client and a server namespace with a veth
//! pair on a /30 of 198.18.0.0/15 that no other topology of the process uses, and runs the
//! `rawtun` binary in them with rendered configs and `--stats-file`. Code runs inside a
//! namespace on a thread that first calls `rawtun::sys::enter_netns` ([`Netns::thread`]).
//!
//! Nothing here sleeps and hopes: waits poll a condition until a deadline ([`wait_for`]).
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod attack;
pub mod capture;
pub mod data;
pub mod flood;
pub mod sim;
pub mod socks5;
pub mod wan;

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The tunnel port used on the wire by the e2e tests.
pub const TUNNEL_PORT: u16 = 9999;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// True when the effective user is root (read from /proc, no unsafe code needed).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            let euid = line.split_whitespace().nth(2)?;
            Some(euid == "0")
        })
        .unwrap_or(false)
}

/// Fails the test unless it runs as root. Root-only tests are also marked
/// `#[ignore = "needs root ..."]`, so a plain `cargo test` reports them as ignored; the test
/// command (scripts/test.sh, as root) runs them with `--include-ignored`. Run without root
/// and with `--include-ignored`, they fail here instead of passing silently.
pub fn require_root() {
    assert!(
        is_root(),
        "needs root (network namespaces, iptables, raw packets): run as root"
    );
}

/// Polls `cond` (every 10..100 ms) until it holds or `timeout` passes; returns its last value.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A file of the repository (scripts, iptables/); works from the crate and a scratch crate.
pub fn repo_path(rel: &str) -> PathBuf {
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if from_manifest.exists() {
        return from_manifest;
    }
    // tests/common/mod.rs -> repository root
    let from_source = Path::new(file!())
        .ancestors()
        .nth(3)
        .map(|root| root.join(rel));
    match from_source {
        Some(path) if path.exists() => path,
        _ => from_manifest,
    }
}

/// Runs a command on the host, panicking with its output when it fails.
pub fn host_ok(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit status and both output streams of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names of all namespaces currently listed by `ip netns list`.
pub fn netns_list() -> Vec<String> {
    host_ok(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Prefix of every namespace this process creates.
pub fn netns_prefix() -> String {
    format!("rt-{}-", std::process::id())
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct ChildGuard {
    child: Child,
    label: String,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Process id of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What was started, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where its stdout and stderr go, when they go to a file.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The log file's text (empty when there is none).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a `kill -s` name such as `TERM`) to the child.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status (None if it did not end).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        self.signal("TERM");
        let mut status = None;
        wait_for(timeout, || {
            status = self.exited();
            status.is_some()
        });
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace that exists for the guard's lifetime.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `rt-<pid>-<n>-<tag>` with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Netns::with_index(n, tag)
    }

    fn with_index(n: usize, tag: &str) -> Netns {
        let name = format!("{}{n}-{tag}", netns_prefix());
        host_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (`/run/netns/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `/etc/netns/<name>/<file>`: `ip netns exec` bind-mounts it over `/etc/<file>`
    /// for the programs it starts afterwards (`hosts`, `resolv.conf`). Removed on drop.
    pub fn set_etc(&self, file: &str, text: &str) {
        let dir = Path::new("/etc/netns").join(&self.name);
        fs::create_dir_all(&dir).expect("/etc/netns is writable as root");
        fs::write(dir.join(file), text).expect("/etc/netns/<name> is writable");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Like [`Netns::exec`], panicking unless the command succeeds; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}",
            self.name,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a command inside the namespace; stdout and stderr go to `log` (or nowhere).
    pub fn spawn(&self, args: &[&str], log: Option<&Path>) -> ChildGuard {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        match log {
            Some(path) => {
                let file = File::create(path)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
                let copy = file
                    .try_clone()
                    .expect("a fresh file descriptor can be duplicated");
                cmd.stdout(copy).stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {}: {e}", self.name));
        ChildGuard {
            child,
            label: format!("{} in {}", args.join(" "), self.name),
            log: log.map(Path::to_path_buf),
        }
    }

    /// Runs `f` on a new thread that has entered the namespace.
    pub fn thread<T, F>(&self, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name.clone();
        std::thread::spawn(move || {
            rawtun::sys::enter_netns(&name)
                .unwrap_or_else(|e| panic!("cannot enter namespace {name}: {e}"));
            f()
        })
    }

    /// Runs `f` inside the namespace and returns its result (a panic in `f` propagates).
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.thread(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Process ids inside the namespace (`ip netns pids`), this process excluded.
    pub fn pids(&self) -> Vec<u32> {
        let own = std::process::id();
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != own)
            .collect()
    }

    /// True once a TCP socket listens on `port` inside the namespace (asked of `ss`, so
    /// probing does not open a connection).
    pub fn listening(&self, port: u16) -> bool {
        let out = self.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside (children of guards, their children, strays).
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("warning: ip netns del {}: {}", self.name, describe(&o)),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// One side of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The side with SOCKS5 and forwards.
    Client,
    /// The side that dials targets.
    Server,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// A port forward of the client config.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Client namespace address it listens on.
    pub listen: String,
    /// Address the server dials (in the server namespace).
    pub target: String,
}

/// What the rendered configs contain.
#[derive(Clone, Debug)]
pub struct TunnelSpec {
    /// The server's `transport.kcp.key`.
    pub server_key: String,
    /// The client's `transport.kcp.key` (differs only in wrong-key tests).
    pub client_key: String,
    /// The server port on the wire.
    pub port: u16,
    /// SOCKS5 listen address of the client, if any.
    pub socks5: Option<String>,
    /// TCP forwards of the client.
    pub forwards: Vec<Forward>,
    /// UDP forwards of the client.
    pub udp_forwards: Vec<Forward>,
    /// `log.level` of both daemons.
    pub log_level: String,
    /// Extra lines under `transport.kcp` of both configs, unindented (`"mtu: 1200\n"`).
    pub kcp_yaml: String,
    /// Extra lines under `transport` of both configs, unindented
    /// (`"timeouts:\n  keepalive: 10\n"`).
    pub transport_yaml: String,
    /// Extra top-level sections of the server config (`targets`, `limits`). The default
    /// opens the server namespace's loopback, where the tests' targets listen (the default
    /// target policy refuses it); empty = the server's default policy.
    pub server_yaml: String,
}

/// The default [`TunnelSpec::server_yaml`]: the public internet plus the loopback targets.
pub const ALLOW_LOOPBACK: &str = "targets:\n  allow: [\"public\", \"127.0.0.0/8\", \"::1\"]\n";

impl Default for TunnelSpec {
    /// One shared fresh key, port 9999, SOCKS5 on 127.0.0.1:1080, and two forwards:
    /// 127.0.0.1:9000 -> 127.0.0.1:9001 and 127.0.0.1:9100 -> 127.0.0.1:9101.
    fn default() -> Self {
        let key = data::random_key_hex();
        TunnelSpec {
            server_key: key.clone(),
            client_key: key,
            port: TUNNEL_PORT,
            socks5: Some("127.0.0.1:1080".into()),
            forwards: vec![
                Forward {
                    listen: "127.0.0.1:9000".into(),
                    target: "127.0.0.1:9001".into(),
                },
                Forward {
                    listen: "127.0.0.1:9100".into(),
                    target: "127.0.0.1:9101".into(),
                },
            ],
            udp_forwards: Vec::new(),
            log_level: "info".into(),
            kcp_yaml: String::new(),
            transport_yaml: String::new(),
            server_yaml: ALLOW_LOOPBACK.into(),
        }
    }
}

/// The spec's extra `transport.kcp` and `transport` lines, indented for the rendered config.
fn transport_extra(spec: &TunnelSpec) -> String {
    let indent =
        |text: &str, by: &str| -> String { text.lines().map(|l| format!("{by}{l}\n")).collect() };
    indent(&spec.kcp_yaml, "    ") + &indent(&spec.transport_yaml, "  ")
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// Client and server namespaces joined by a veth pair, plus the daemons started in them.
///
/// Drop order: daemons (SIGKILL), then both namespaces (everything left is killed), then
/// the temporary directory. While panicking, the daemons' logs are printed first.
pub struct Topology {
    daemons: Vec<(Side, ChildGuard)>,
    /// Processes the topology itself needs (the raw-IP link's forwarders).
    helpers: Vec<ChildGuard>,
    /// Client namespace.
    pub client: Netns,
    /// Server namespace.
    pub server: Netns,
    /// Client veth name (inside `client`).
    pub client_if: String,
    /// Server veth name (inside `server`).
    pub server_if: String,
    /// Client veth MAC, `aa:bb:cc:dd:ee:ff`.
    pub client_mac: String,
    /// Server veth MAC.
    pub server_mac: String,
    /// Client veth address (/30).
    pub client_ip: Ipv4Addr,
    /// Server veth address (/30).
    pub server_ip: Ipv4Addr,
    /// IPv6 addresses (2001:2::/48, /64 per pair) of a pair built by [`Topology::pair_v6`];
    /// `write_configs` then puts the tunnel on IPv6.
    pub v6: Option<(std::net::Ipv6Addr, std::net::Ipv6Addr)>,
    spec: Option<TunnelSpec>,
    /// The emulated link between the two, for topologies built by [`Topology::wan`].
    link: Option<wan::WanLink>,
    /// Configs, logs, stats files and captures of this topology.
    pub dir: tempfile::TempDir,
}

/// Turns TSO/GSO/GRO (plus `extra`, e.g. `["tx", "off"]`) off on `ifname`: GRO hands a
/// capture frames larger than the MTU. A failure is reported, not fatal.
pub fn offloads_off(ns: &Netns, ifname: &str, extra: &[&str]) {
    let mut args = vec![
        "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off",
    ];
    args.extend_from_slice(extra);
    let out = ns.exec(&args);
    if !out.status.success() {
        eprintln!("warning: {args:?} in {}: {}", ns.name(), describe(&out));
    }
}

/// One end of a test link: `ip`/30 on `ifname`, IPv6 off, offloads off, link up.
pub fn configure_end(ns: &Netns, ifname: &str, ip: Ipv4Addr) {
    ns.exec_ok(&["ip", "addr", "add", &format!("{ip}/30"), "dev", ifname]);
    let _ = ns.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{ifname}.disable_ipv6=1"),
    ]);
    offloads_off(ns, ifname, &["tx", "off"]);
    ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
}

/// True once `ifname` in `ns` reports operstate up.
pub fn link_up(ns: &Netns, ifname: &str) -> bool {
    ns.exec(&["cat", &format!("/sys/class/net/{ifname}/operstate")])
        .stdout
        .starts_with(b"up")
}

impl Topology {
    /// Builds the two namespaces and the veth between them, and waits for the link to come up.
    /// Offloads are off (segmentation, and TX checksums so captured kernel frames carry real
    /// checksums) and IPv6 is off on the veth so captures hold only the test's traffic.
    pub fn pair() -> Topology {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let client = Netns::with_index(n, "c");
        let server = Netns::with_index(n, "s");
        // /30 number n of 198.18.0.0/15 (32768 of them): .1 client, .2 server.
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * (n as u32 % 32768);
        let client_ip = Ipv4Addr::from(base + 1);
        let server_ip = Ipv4Addr::from(base + 2);
        let client_if = format!("rtc{n}");
        let server_if = format!("rts{n}");
        let mac = |side: u8| {
            format!(
                "02:72:74:{:02x}:{:02x}:{side:02x}",
                (n >> 8) & 0xff,
                n & 0xff
            )
        };
        let (client_mac, server_mac) = (mac(1), mac(2));
        client.exec_ok(&[
            "ip",
            "link",
            "add",
            &client_if,
            "address",
            &client_mac,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
            "address",
            &server_mac,
            "netns",
            server.name(),
        ]);
        for (ns, ifname, ip) in [
            (&client, &client_if, client_ip),
            (&server, &server_if, server_ip),
        ] {
            configure_end(ns, ifname, ip);
        }
        let up = link_up;
        assert!(
            wait_for(Duration::from_secs(5), || up(&client, &client_if)
                && up(&server, &server_if)),
            "veth {client_if}/{server_if} did not come up"
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
            link: None,
            dir: tempfile::tempdir().expect("the temp dir is writable"),
        }
    }

    /// [`Topology::pair`] with IPv6 on the veth as well (2001:2:0:N::1 and ::2 /64, no
    /// duplicate-address detection wait); configs written afterwards put the tunnel on IPv6.
    pub fn pair_v6() -> Topology {
        let mut t = Topology::pair();
        let n: u16 = t.client_if.trim_start_matches("rtc").parse().unwrap_or(0);
        let ip = |host: u16| std::net::Ipv6Addr::new(0x2001, 2, 0, n, 0, 0, 0, host);
        let (c, s) = (ip(1), ip(2));
        for (ns, ifname, addr) in [(&t.client, &t.client_if, c), (&t.server, &t.server_if, s)] {
            ns.exec_ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{ifname}.disable_ipv6=0"),
            ]);
            ns.exec_ok(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
        }
        t.v6 = Some((c, s));
        t
    }

    /// A raw-IP link (no Ethernet header, like PPP, tun or WireGuard): a TUN device in each
    /// namespace, `rtu{N}c` / `rtu{N}s` with 198.19.128.0/17 addresses (/30 each, MTU
    /// 1400), joined by two `socat` processes that carry each packet in a UDP datagram over
    /// the veth of [`Topology::pair`]. `client_if`/`server_if`/`client_ip`/`server_ip` then
    /// name the TUN side, so configs written afterwards put the tunnel on it.
    pub fn pair_tun() -> Topology {
        let mut t = Topology::pair();
        let n: u32 = t.client_if.trim_start_matches("rtc").parse().unwrap_or(0);
        let base = u32::from(Ipv4Addr::new(198, 19, 128, 0)) + 4 * (n % 8192);
        let (client_tun, server_tun) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let ends = [
            (Side::Client, client_tun, t.server_ip),
            (Side::Server, server_tun, t.client_ip),
        ];
        for (side, addr, peer) in ends {
            let name = format!("rtu{n}{}", &side.as_str()[..1]);
            let tun = format!("TUN:{addr}/30,tun-type=tun,tun-name={name},iff-no-pi,iff-up");
            let udp = format!("UDP-DATAGRAM:{peer}:7000,bind=:7000");
            let log = t.path(&format!("socat-{}.log", side.as_str()));
            let guard = t.ns(side).spawn(&["socat", "-d", &tun, &udp], Some(&log));
            t.helpers.push(guard);
            let ns = t.ns(side);
            assert!(
                wait_for(Duration::from_secs(5), || ns
                    .exec(&["ip", "link", "show", &name])
                    .status
                    .success()),
                "socat did not create {name}: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            ns.exec_ok(&["ip", "link", "set", &name, "mtu", "1400"]);
            let _ = ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{name}.disable_ipv6=1"),
            ]);
            match side {
                Side::Client => t.client_if = name,
                Side::Server => t.server_if = name,
            }
        }
        t.client_ip = client_tun;
        t.server_ip = server_tun;
        let ping = t
            .client
            .exec(&["ping", "-c", "1", "-W", "2", &server_tun.to_string()]);
        assert!(
            ping.status.success(),
            "the raw-IP link does not carry a ping: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        t
    }

    /// [`Topology::pair`], firewall rules on both ends, configs from `spec`, both daemons
    /// started and ready.
    pub fn tunnel(spec: TunnelSpec) -> Topology {
        let mut t = Topology::pair();
        t.apply_firewall(spec.port);
        t.write_configs(&spec);
        t.start_server();
        t.start_client();
        t
    }

    /// The namespace of `side`.
    pub fn ns(&self, side: Side) -> &Netns {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    /// Runs iptables/rawtun-iptables.sh in both namespaces (server mode for the server's
    /// address, `--client SERVER_IP --local CLIENT_IP` in the client).
    pub fn apply_firewall(&self, port: u16) {
        let script = repo_path("iptables/rawtun-iptables.sh");
        let script = script.to_str().expect("the repository path is UTF-8");
        let port = port.to_string();
        let (server_ip, client_ip) = (self.server_ip.to_string(), self.client_ip.to_string());
        self.server
            .exec_ok(&["bash", script, "add", &port, "--local", &server_ip]);
        self.client.exec_ok(&[
            "bash", script, "add", &port, "--client", &server_ip, "--local", &client_ip,
        ]);
    }

    /// Path of a file in the topology's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Renders `server.yaml` and `client.yaml` into the temporary directory (on IPv6 for a
    /// pair from [`Topology::pair_v6`]).
    pub fn write_configs(&mut self, spec: &TunnelSpec) -> (PathBuf, PathBuf) {
        let (family, listen, server_ip, client_ip) = match self.v6 {
            Some((c, s)) => (
                "ipv6",
                format!("[{s}]:{}", spec.port),
                format!("[{s}]"),
                format!("[{c}]"),
            ),
            None => (
                "ipv4",
                format!(":{}", spec.port),
                self.server_ip.to_string(),
                self.client_ip.to_string(),
            ),
        };
        let server = format!(
            "role: server\n\
             log:\n  level: {level}\n\
             listen:\n  addr: \"{listen}\"\n\
             network:\n  backend: {backend}\n  interface: \"{ifname}\"\n  {family}:\n    addr: \"{server_ip}:{port}\"\n    router_mac: \"{peer_mac}\"\n\
             transport:\n  kcp:\n    key: \"{key}\"\n{extra}{server_extra}",
            extra = transport_extra(spec),
            backend = backend(),
            server_extra = spec.server_yaml,
            level = spec.log_level,
            port = spec.port,
            ifname = self.server_if,
            peer_mac = self.client_mac,
            key = spec.server_key,
        );
        let mut client = format!(
            "role: client\n\
             log:\n  level: {level}\n\
             server:\n  addr: \"{server_ip}:{port}\"\n",
            level = spec.log_level,
            port = spec.port,
        );
        if let Some(socks) = &spec.socks5 {
            client += &format!("socks5:\n  - listen: \"{socks}\"\n");
        }
        if !spec.forwards.is_empty() || !spec.udp_forwards.is_empty() {
            client += "forward:\n";
            let tcp = spec.forwards.iter().map(|f| (f, "tcp"));
            for (f, protocol) in tcp.chain(spec.udp_forwards.iter().map(|f| (f, "udp"))) {
                client += &format!(
                    "  - listen: \"{}\"\n    target: \"{}\"\n    protocol: {protocol}\n",
                    f.listen, f.target
                );
            }
        }
        client += &format!(
            "network:\n  backend: {backend}\n  interface: \"{ifname}\"\n  {family}:\n    addr: \"{client_ip}:0\"\n    router_mac: \"{peer_mac}\"\n\
             transport:\n  kcp:\n    key: \"{key}\"\n{extra}",
            extra = transport_extra(spec),
            backend = backend(),
            ifname = self.client_if,
            peer_mac = self.server_mac,
            key = spec.client_key,
        );
        let (server_path, client_path) = (self.path("server.yaml"), self.path("client.yaml"));
        fs::write(&server_path, server).expect("the temp dir is writable");
        fs::write(&client_path, client).expect("the temp dir is writable");
        self.spec = Some(spec.clone());
        (server_path, client_path)
    }

    /// Stats file of `side`'s daemon.
    pub fn stats_path(&self, side: Side) -> PathBuf {
        self.path(&format!("{}-stats.json", side.as_str()))
    }

    /// Log file (stderr) of `side`'s daemon.
    pub fn log_path(&self, side: Side) -> PathBuf {
        self.path(&format!("{}.log", side.as_str()))
    }

    fn start(&mut self, side: Side) {
        let config = self.path(&format!("{}.yaml", side.as_str()));
        assert!(
            config.exists(),
            "write_configs() before starting the {side:?}"
        );
        let stats = self.stats_path(side);
        // A stats file left by an earlier run of this side must not count as ready.
        let _ = fs::remove_file(&stats);
        let args = [
            env!("CARGO_BIN_EXE_rawtun"),
            "run",
            "-c",
            config.to_str().expect("temp paths are UTF-8"),
            "--stats-file",
            stats.to_str().expect("temp paths are UTF-8"),
        ];
        let child = self.ns(side).spawn(&args, Some(&self.log_path(side)));
        self.daemons.push((side, child));
        // Ready: the first stats file is written (every second), and the daemon still runs.
        let ready = wait_for(Duration::from_secs(15), || {
            self.daemon_exit(side).is_some() || self.stats(side).is_object()
        });
        if let Some(status) = self.daemon_exit(side) {
            panic!("rawtun {side:?} exited during start-up ({status})");
        }
        assert!(ready, "rawtun {side:?} wrote no stats file within 15 s");
    }

    /// Ends the `socat` that owns `side`'s TUN device in a [`Topology::pair_tun`]: the
    /// device disappears under the daemon.
    pub fn remove_tun(&mut self, side: Side) {
        let index = match side {
            Side::Client => 0,
            Side::Server => 1,
        };
        let helper = self.helpers.get_mut(index).expect("a pair_tun topology");
        helper.terminate(Duration::from_secs(5));
    }

    /// `side`'s daemon's exit status once it has ended, waiting up to `timeout`.
    pub fn wait_exit(&mut self, side: Side, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.daemon_exit(side) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_exit(&mut self, side: Side) -> Option<ExitStatus> {
        self.daemons
            .iter_mut()
            .rev()
            .find(|(s, _)| *s == side)
            .and_then(|(_, child)| child.exited())
    }

    /// Process id of `side`'s running daemon (the latest one started).
    pub fn daemon_pid(&self, side: Side) -> Option<u32> {
        self.daemons
            .iter()
            .rev()
            .find(|(s, _)| *s == side)
            .map(|(_, child)| child.pid())
    }

    /// Starts `rawtun run` with the server config and waits until it is ready.
    pub fn start_server(&mut self) {
        self.start(Side::Server);
    }

    /// Starts `rawtun run` with the client config and waits until its SOCKS5 and forward
    /// ports listen.
    pub fn start_client(&mut self) {
        self.start(Side::Client);
        let spec = self.spec.clone().expect("write_configs() ran before start");
        let ports: Vec<u16> = spec
            .socks5
            .iter()
            .chain(spec.forwards.iter().map(|f| &f.listen))
            .map(|a| port_of(a))
            .collect();
        let listening = wait_for(Duration::from_secs(10), || {
            ports.iter().all(|&p| self.client.listening(p))
        });
        assert!(
            listening,
            "rawtun client does not listen on all of {ports:?}"
        );
    }

    /// SIGTERM to `side`'s daemon; returns its exit status (panics if it does not exit
    /// within 10 s).
    pub fn stop(&mut self, side: Side) -> ExitStatus {
        let (_, child) = self
            .daemons
            .iter_mut()
            .rev()
            .find(|(s, _)| *s == side)
            .unwrap_or_else(|| panic!("no {side:?} daemon was started"));
        child
            .terminate(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("rawtun {side:?} ignored SIGTERM for 10 s"))
    }

    fn pid_of(&self, side: Side) -> u32 {
        self.daemon_pid(side)
            .unwrap_or_else(|| panic!("no {side:?} daemon was started"))
    }

    /// Sends `signal` (a `kill -s` name) to `side`'s daemon.
    pub fn signal(&self, side: Side, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, &self.pid_of(side).to_string()])
            .status();
    }

    /// The last stats object `side`'s daemon wrote (`Null` before the first one).
    pub fn stats(&self, side: Side) -> serde_json::Value {
        fs::read(self.stats_path(side))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// One counter of `side`'s stats (0 while absent).
    pub fn counter(&self, side: Side, key: &str) -> u64 {
        self.stats(side)
            .get(key)
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    /// Both daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for side in [Side::Server, Side::Client] {
            let log = fs::read_to_string(self.log_path(side)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            text += &format!(
                "--- rawtun {} log (last {} lines)\n",
                side.as_str(),
                tail.len()
            );
            for line in tail {
                text += line;
                text.push('\n');
            }
            text += &format!("--- {} stats: {}\n", side.as_str(), self.stats(side));
        }
        text
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(link) = &self.link {
                eprintln!("{}", link.log_tail());
            }
        }
        self.daemons.clear();
    }
}

/// The tests of one test binary take this lock to run one at a time: each runs busy
/// daemons (and often an emulator), and in parallel on a 2-CPU machine their timing would
/// turn into flakiness (cargo runs the tests of a binary in parallel).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the serial lock (a panic in another test does not poison the rest).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The packet backend the daemons of the end-to-end tests use: `RAWTUN_TEST_BACKEND`
/// (`afpacket`, the default, or `pcap`). scripts/test.sh runs the namespace tests once per
/// backend.
pub fn backend() -> &'static str {
    match std::env::var("RAWTUN_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("afpacket") => "afpacket",
        Ok("pcap") => "pcap",
        Ok(other) => panic!("RAWTUN_TEST_BACKEND={other:?}: expected afpacket or pcap"),
    }
}

/// Parses a test address literal.
pub fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("test addresses are valid")
}

/// Binds a TCP listener inside `ns` (before anything connects to it).
pub fn listen(ns: &Netns, at: &'static str) -> std::net::TcpListener {
    ns.run(move || {
        std::net::TcpListener::bind(addr(at)).expect("bind the target in the server namespace")
    })
}
