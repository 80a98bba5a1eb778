//! Client and server orchestration: packet workers, the capture reader threads, the tokio
//! runtime for application sockets, stats and shutdown. This is the only layer that reads
//! the clock.
//!
//! With AF_PACKET there is one capture ring (and reader thread) per worker, all in one
//! fanout group, so capture runs on as many CPUs as the workers; with pcap one reader
//! serves every worker. A reader hands each frame to the worker that owns its flow.
//!
//! ```text
//!  capture reader thread(s) ──frames──▶ worker 0..N (sessions: Connection / Listener) ──▶ inject
//!                                       ▲   │ stream data / events (bounded, credit-based)
//!                         commands ─────┘   ▼
//!                 tokio runtime: SOCKS5 / HTTP CONNECT / forwards (client), dialed targets (server)
//! ```

mod bridge;
mod client;
pub mod control;
pub mod dump;
mod fair;
mod frontends;
mod inbox;
pub mod keys;
pub mod ping;
mod server;
mod stats;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

pub use stats::{Snapshot, Stats};

use crate::config::{Backend, Config, Host, HostPort, Role};
use crate::crypto::Cipher;
use crate::endpoint::{ConnConfig, GateConfig, GateShared, Listener, WallClock};
use crate::faketcp::FlowConfig;
use crate::io::{self, PacketRx, PacketTx, PcapOptions};
use crate::kcp::KcpConfig;
use crate::mux::MuxConfig;
use crate::tunnel::Target;
use crate::wire::{self, LinkType, TcpFlags};
use bridge::Input;
use worker::{ClientSide, Worker, WorkerParts};

/// Largest number of client flows one server worker keeps.
const MAX_FLOWS_PER_WORKER: usize = 4096;
/// Depth of each worker's input queue (frames and commands).
const WORKER_QUEUE: usize = 8192;
/// Capture buffer the reader thread reads into.
const CAPTURE_BUF: usize = 65536;

/// The system clock now, as the endpoint layer's [`WallClock`] (the daemon is the layer that
/// reads clocks).
pub fn wall_clock() -> WallClock {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    WallClock {
        at: std::time::Instant::now(),
        unix_ms,
    }
}

/// Options of `rawtun run` that are not in the config file.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Write counters as JSON here every second and at exit.
    pub stats_file: Option<PathBuf>,
    /// Serve `rawtun status` on this unix socket.
    pub status_socket: Option<PathBuf>,
    /// On SIGTERM, how long open streams may drain before the daemon exits.
    pub drain: Duration,
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Applies a new log level (SIGHUP).
    pub set_log_level: Option<Arc<dyn Fn(crate::config::LogLevel) + Send + Sync>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("stats_file", &self.stats_file)
            .field("status_socket", &self.status_socket)
            .field("drain", &self.drain)
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

/// The capture handles (one per reader thread) and one transmit handle per worker.
type PacketHandles = (Vec<Box<dyn PacketRx>>, Vec<Box<dyn PacketTx>>);

/// Everything both roles resolve from the config and the machine before starting.
struct Plan {
    interface: String,
    local_ip: IpAddr,
    local_mac: [u8; 6],
    router_mac: Option<[u8; 6]>,
    conn: ConnConfig,
    workers: usize,
}

pub fn kcp_config(k: &crate::config::Kcp) -> KcpConfig {
    KcpConfig {
        nodelay: k.nodelay,
        interval_ms: k.interval_ms,
        resend: k.resend,
        nocongestion: k.nocongestion,
        mtu: k.mtu,
        sndwnd: k.sndwnd,
        rcvwnd: k.rcvwnd,
        wdelay: k.wdelay,
        acknodelay: k.acknodelay,
        rate_cap: k.ratecap,
    }
}

/// The connection settings of `cfg`; `bind_source` binds a client's opening proofs to its
/// address (off behind NAT).
pub fn conn_config(cfg: &Config, link: LinkType, bind_source: bool) -> ConnConfig {
    let t = &cfg.transport;
    ConnConfig {
        flow: FlowConfig {
            link,
            local_flags: cfg
                .network
                .tcp
                .local_flag
                .iter()
                .map(|&b| TcpFlags(b))
                .collect(),
            handshake: cfg.network.tcp.handshake,
            ..FlowConfig::default()
        },
        cipher: t.kcp.block,
        kcp: kcp_config(&t.kcp),
        mux: MuxConfig {
            stream_window: t.kcp.streambuf.min(u32::MAX as usize) as u32,
            session_window: t.kcp.smuxbuf.min(u32::MAX as usize) as u32,
            keepalive: t.timeouts.keepalive,
            idle_timeout: t.timeouts.idle,
            max_streams: cfg.limits.streams_per_session,
        },
        handshake_timeout: t.timeouts.handshake,
        rekey_packets: crate::crypto::DEFAULT_PHASE_LEN,
        bind_source,
        wall: wall_clock(),
    }
}

/// The server's dial policy, per-client limits and refusal counters.
fn server_ctx(cfg: &Config, counters: Arc<crate::proxy::LimitCounters>) -> server::ServerCtx {
    let timeout = cfg.transport.timeouts.dial;
    server::ServerCtx {
        policy: crate::proxy::DialPolicy {
            timeout,
            targets: crate::proxy::TargetPolicy::new(cfg.targets.clone()),
            resolver: crate::proxy::Resolver::system(cfg.limits.lookups, timeout),
        },
        limits: cfg.limits,
        counters,
        addresses: server::AddressTable::default(),
    }
}

pub fn target_of(hp: &HostPort) -> Target {
    match &hp.host {
        Host::Ip(ip) => Target::Ip(SocketAddr::new(*ip, hp.port)),
        Host::Domain(d) => Target::Domain(d.clone(), hp.port),
    }
}

/// Interface, local address and next-hop MAC: from the config where given, detected
/// (route to the server on a client, default route on a server, neighbour table) where not.
pub struct Network {
    pub interface: String,
    pub local_ip: IpAddr,
    pub router_mac: Option<[u8; 6]>,
    /// True when anything was detected rather than configured.
    pub detected: bool,
}

/// Resolves [`Network`] for `cfg`; `peer_ip` is the server's address on a client.
pub fn resolve_network(cfg: &Config, peer_ip: Option<IpAddr>) -> anyhow::Result<Network> {
    let v6 = peer_ip.is_some_and(|ip| ip.is_ipv6())
        || (cfg.network.ipv4.is_none() && cfg.network.ipv6.is_some());
    let addr_cfg = if v6 {
        &cfg.network.ipv6
    } else {
        &cfg.network.ipv4
    };
    let configured_ip = addr_cfg
        .as_ref()
        .map(|a| a.addr.ip())
        .filter(|ip| !ip.is_unspecified());
    let configured_mac = addr_cfg.as_ref().and_then(|a| a.router_mac);
    let need_mac = cfg.role == Role::Client && configured_mac.is_none();
    if let (Some(interface), Some(ip), false) = (&cfg.network.interface, configured_ip, need_mac) {
        return Ok(Network {
            interface: interface.clone(),
            local_ip: ip,
            router_mac: configured_mac,
            detected: false,
        });
    }
    let d = crate::sys::route::detect(peer_ip, cfg.network.interface.as_deref(), configured_ip)
        .context(
            "detecting the network (set network.interface / ipv4.addr / router_mac to skip)",
        )?;
    let router_mac = configured_mac.or(d.next_hop_mac);
    tracing::info!(
        interface = %d.interface,
        local = %d.local_ip,
        gateway = ?d.gateway,
        next_hop_mac = %router_mac.map_or_else(|| "-".to_string(), |m| format_mac(&m)),
        "network detected"
    );
    Ok(Network {
        interface: d.interface,
        local_ip: d.local_ip,
        router_mac,
        detected: true,
    })
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn plan(cfg: &Config, peer_ip: Option<IpAddr>) -> anyhow::Result<(Plan, PacketHandles)> {
    let net = resolve_network(cfg, peer_ip)?;
    let interface = net.interface.clone();
    let local_ip = net.local_ip;
    let workers = cfg.performance.packet_workers.max(1);
    let tx_count = match cfg.role {
        Role::Client => workers.min(cfg.transport.conn as usize).max(1),
        Role::Server => workers,
    };
    check_mtu(cfg, &interface, local_ip)?;
    let filter = match cfg.role {
        Role::Server => io::tunnel_filter(cfg.listen.map_or(0, |l| l.port()), None),
        Role::Client => io::tunnel_filter(0, cfg.server),
    };
    let ((rxs, txs), link) = open_backend(cfg, &interface, filter, tx_count)
        .with_context(|| format!("opening {interface} ({})", cfg.network.backend.as_str()))?;
    let local_mac = match link {
        LinkType::Ethernet => crate::sys::interface_mac(&interface)
            .with_context(|| format!("reading the MAC address of {interface}"))?,
        LinkType::RawIp => [0; 6],
    };
    let router_mac = net.router_mac;
    Ok((
        Plan {
            interface,
            local_ip,
            local_mac,
            router_mac,
            conn: conn_config(cfg, link, cfg.network.nat.bind_source(local_ip)),
            workers: tx_count,
        },
        (rxs, txs),
    ))
}

/// Bytes an IP packet of the tunnel adds to a KCP packet of `transport.kcp.mtu`: the TCP
/// header with its timestamp option (32), the crypto header and tag, the kind byte.
fn tunnel_overhead(cfg: &Config, ip: IpAddr) -> usize {
    let ip_header = if ip.to_canonical().is_ipv4() { 20 } else { 40 };
    ip_header + 32 + crate::crypto::HEADER_LEN + cfg.transport.kcp.block.tag_len() + 1
}

/// Refuses a `transport.kcp.mtu` whose packets would not fit the interface: the kernel
/// refuses to send them (EMSGSIZE), so handshakes would work and every full data packet
/// fail. Links below 1500 bytes (WireGuard 1420, PPPoE 1492, tunnels) need a smaller mtu.
fn check_mtu(cfg: &Config, interface: &str, local_ip: IpAddr) -> anyhow::Result<()> {
    let Ok(link_mtu) = crate::sys::interface_mtu(interface) else {
        return Ok(()); // detection already named the interface; nothing to compare with
    };
    let overhead = tunnel_overhead(cfg, local_ip);
    let mtu = usize::from(cfg.transport.kcp.mtu);
    if mtu + overhead > link_mtu as usize {
        bail!(
            "transport.kcp.mtu {mtu} makes IP packets of {} bytes, more than the MTU of              {interface} ({link_mtu}): set transport.kcp.mtu to {} or less (on both ends)",
            mtu + overhead,
            (link_mtu as usize).saturating_sub(overhead)
        );
    }
    Ok(())
}

/// Opens the configured packet backend: capture handles and `senders` transmit handles.
fn open_backend(
    cfg: &Config,
    interface: &str,
    filter: String,
    senders: usize,
) -> anyhow::Result<(PacketHandles, LinkType)> {
    match cfg.network.backend {
        Backend::AfPacket => {
            let opened = io::open_afpacket(&io::AfPacketOptions {
                interface: interface.to_owned(),
                filter,
                // `network.pcap.sockbuf` sizes each ring (one per worker).
                ring: io::RingSpec::with_bytes(cfg.network.pcap_sockbuf),
                rings: senders,
                senders,
                qdisc_bypass: cfg.network.qdisc_bypass,
            })?;
            let rxs = opened
                .rx
                .into_iter()
                .map(|r| Box::new(r) as Box<dyn PacketRx>)
                .collect();
            let txs = opened
                .tx
                .into_iter()
                .map(|t| Box::new(t) as Box<dyn PacketTx>)
                .collect();
            Ok(((rxs, txs), opened.link))
        }
        Backend::Pcap => {
            let opts = PcapOptions {
                interface: interface.to_owned(),
                filter,
                sockbuf: cfg.network.pcap_sockbuf,
                // libpcap sizes ring slots by snaplen: a 64 KiB snaplen leaves room for
                // only a few dozen frames in the buffer. Tunnel frames never exceed the
                // interface MTU.
                snaplen: crate::sys::interface_mtu(interface)
                    .map_or(2048, |m| m as usize + 64)
                    .max(1600),
            };
            let (rx, tx, link) = io::open_pcap(&opts)?;
            let mut txs: Vec<Box<dyn PacketTx>> = vec![Box::new(tx)];
            for _ in 1..senders {
                let (_, tx, _) = io::open_pcap(&opts)?;
                txs.push(Box::new(tx));
            }
            Ok(((vec![Box::new(rx)], txs), link))
        }
    }
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    if !crate::sys::is_root_or_capable() {
        bail!("rawtun needs root or CAP_NET_RAW + CAP_NET_ADMIN to capture and inject packets");
    }
    if cfg.transport.kcp.block == Cipher::None {
        tracing::warn!("transport.kcp.block is `none`: tunnel traffic is NOT encrypted or authenticated after the handshake");
    }
    let peer_ip = match cfg.role {
        Role::Client => Some(
            cfg.server
                .context("server.addr is required on a client")?
                .ip(),
        ),
        Role::Server => None,
    };
    let (plan, (rxs, txs)) = plan(&cfg, peer_ip)?;
    // Keys before the firewall rules: a bad key fails before anything changes.
    let server_keys = match cfg.role {
        Role::Server => {
            let addrs = keys::server_addresses(&cfg, plan.local_ip, Some(&plan.interface));
            let ids = keys::server_identities(&cfg, &addrs)?;
            let names: Vec<&str> = cfg.auth.clients.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(clients = ?names, shared_key = cfg.auth.shared.is_some(), "server keys ready");
            Some(ids)
        }
        Role::Client => None,
    };
    let client_key = match cfg.role {
        Role::Client => Some(keys::client_identity(&cfg)?),
        Role::Server => None,
    };
    // Keep the kernel out of the tunnel's flow before the first packet: raw drop in,
    // NOTRACK and RST drop out, removed again when this guard drops (also on an error
    // below).
    let _firewall = if cfg.firewall.auto {
        Some(FirewallGuard::install(firewall_side(
            &cfg,
            Some(plan.local_ip),
        )?)?)
    } else {
        tracing::info!("firewall.auto is off: the raw-drop/NOTRACK/RST-drop rules must be in place (rawtun firewall apply)");
        None
    };
    let role = match cfg.role {
        Role::Client => "client",
        Role::Server => "server",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rawtun-io")
        .build()
        .context("starting the tokio runtime")?;
    let stats = Stats::new(role, plan.workers, cfg.network.backend.as_str(), rxs.len());
    let shutdown = Arc::new(AtomicBool::new(false));

    let mut senders = Vec::new();
    let mut handles = Vec::new();
    let gate_cfg = GateConfig::default();
    let gate_shared = GateShared::new(
        &gate_cfg,
        plan.conn.wall.unix_ms(plan.conn.wall.at),
        std::time::Instant::now(),
    );
    let server_ctx = Arc::new(server_ctx(&cfg, stats.limits.clone()));
    let link = plan.conn.flow.link;
    // The capture thread hashes each frame's flow with this key; the workers hash their
    // sessions' peers with it to tell their own flows from strangers'.
    let flow_key = std::collections::hash_map::RandomState::new();
    let mut frame_senders = Vec::new();
    for (index, tx) in txs.into_iter().enumerate() {
        let (in_tx, in_rx) = flume::bounded(WORKER_QUEUE);
        let (frame_tx, frame_rx) = flume::bounded(WORKER_QUEUE);
        frame_senders.push(frame_tx);
        let parts = WorkerParts {
            index,
            inputs: in_rx,
            frames: frame_rx,
            self_tx: in_tx.clone(),
            tx,
            link,
            cfg: plan.conn.clone(),
            stats: stats.clone(),
            runtime: runtime.handle().clone(),
            shutdown: shutdown.clone(),
            flow_key: flow_key.clone(),
        };
        let worker = match cfg.role {
            Role::Server => {
                let listen = cfg.listen.context("listen.addr is required on a server")?;
                let local = SocketAddr::new(plan.local_ip, listen.port());
                let identities = server_keys.clone().context("server keys")?;
                let listener = Listener::new(
                    plan.conn.clone(),
                    identities,
                    gate_cfg,
                    gate_shared.clone(),
                    local,
                    plan.local_mac,
                    plan.router_mac,
                    MAX_FLOWS_PER_WORKER,
                    rand::random(),
                );
                Worker::server(parts, listener, server_ctx.clone())
            }
            Role::Client => {
                let server = cfg.server.context("server.addr is required on a client")?;
                let router_mac = match (plan.router_mac, link) {
                    (Some(m), _) => m,
                    (None, LinkType::RawIp) => [0; 6],
                    (None, LinkType::Ethernet) => bail!(
                        "the gateway MAC for {server} is unknown: set network.ipv4.router_mac \
                         (or ipv6.router_mac); it was not in the neighbour table of {}",
                        plan.interface
                    ),
                };
                let n = plan.workers;
                let sessions = (cfg.transport.conn as usize + n - 1 - index) / n;
                let fixed_port = cfg
                    .network
                    .ipv4
                    .as_ref()
                    .map(|a| a.addr.port())
                    .filter(|&p| p != 0 && cfg.transport.conn == 1);
                Worker::client(
                    parts,
                    ClientSide {
                        server,
                        identity: client_key.clone().context("client key")?,
                        local_ip: plan.local_ip,
                        port_shard: (index as u16, n as u16),
                        fixed_port,
                        local_mac: plan.local_mac,
                        router_mac,
                        sessions,
                        open_wait: cfg.transport.timeouts.handshake * 3,
                    },
                )
            }
        };
        senders.push(in_tx);
        handles.push(
            std::thread::Builder::new()
                .name(format!("rawtun-worker-{index}"))
                .spawn(move || worker.run())
                .context("starting a packet worker")?,
        );
    }

    // Capture readers: each hands frames to the worker that owns their flow. They never
    // block on a full worker queue: the frame is dropped and counted for that worker.
    let mut readers = Vec::new();
    // Longest frame a reader takes: the interface MTU and a link header (a longer one is
    // counted as oversize: GRO/LRO merged it, see TROUBLESHOOTING.md).
    let capture_len = crate::sys::interface_mtu(&plan.interface)
        .map_or(CAPTURE_BUF, |m| m as usize + 64)
        .max(1600);
    // A capture that fails for good (the interface was deleted) ends the daemon with an
    // error, so a supervisor restarts it, instead of leaving its flows unserved.
    let fatal: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    for (ring, mut rx) in rxs.into_iter().enumerate() {
        let fatal = fatal.clone();
        let senders = frame_senders.clone();
        let shutdown = shutdown.clone();
        let is_server = cfg.role == Role::Server;
        let stats = stats.clone();
        let shard = Shard::new(link, is_server, senders.len(), flow_key.clone());
        readers.push(
            std::thread::Builder::new()
                .name(format!("rawtun-capture-{ring}"))
                .spawn(move || {
                    let mut buf = vec![0u8; capture_len];
                    let mut since_publish = 0u32;
                    while !shutdown.load(Ordering::Relaxed) {
                        let n = match rx.recv(&mut buf) {
                            Ok(Some(n)) => n,
                            Ok(None) => {
                                stats.publish_capture(ring, capture_info(rx.stats()));
                                continue;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, ring, "capture failed; stopping");
                                *fatal.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(format!("capture ring {ring} failed: {e}"));
                                crate::sys::terminate_self();
                                break;
                            }
                        };
                        since_publish += 1;
                        if since_publish >= 256 {
                            since_publish = 0;
                            stats.publish_capture(ring, capture_info(rx.stats()));
                        }
                        let frame = &buf[..n];
                        let (i, flow) = shard.of(frame);
                        let data = frame.to_vec();
                        match senders[i].try_send(Input::Frame { flow, data }) {
                            Ok(()) => {}
                            Err(flume::TrySendError::Full(_)) => stats.count_queue_full(i),
                            Err(flume::TrySendError::Disconnected(_)) => break,
                        }
                    }
                    stats.publish_capture(ring, capture_info(rx.stats()));
                })
                .context("starting a capture thread")?,
        );
    }

    // The readers hold the frame senders now: the frame queues close when they stop.
    drop(frame_senders);

    let reload_ctx = ReloadCtx {
        workers: senders.clone(),
        server_addresses: match cfg.role {
            Role::Server => keys::server_addresses(&cfg, plan.local_ip, Some(&plan.interface)),
            Role::Client => Vec::new(),
        },
    };
    let connector = client::TunnelConnector {
        workers: Arc::new(senders.clone()),
        next: Arc::new(AtomicUsize::new(0)),
        timeout: cfg.transport.timeouts.dial + cfg.transport.timeouts.handshake * 3,
        stats: stats.clone(),
    };
    let result = runtime.block_on(async {
        let mut front = frontends::FrontEnds::default();
        if cfg.role == Role::Client {
            front.apply(&cfg, &connector).await?;
        }
        if let Some(path) = opts.stats_file.clone() {
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = stats.write_file(&path) {
                        tracing::warn!(error = %e, path = %path.display(), "cannot write stats");
                    }
                }
            });
        }
        if let Some(path) = opts.status_socket.clone() {
            if let Err(e) = control::serve_status(path, stats.clone()).await {
                tracing::warn!("status socket unavailable: {e:#}");
            }
        }
        if let Some(addr) = cfg.metrics.listen {
            control::serve_metrics(addr, stats.clone()).await?;
        }
        tracing::info!(role, interface = %plan.interface, local = %plan.local_ip, workers = plan.workers, "rawtun running");
        let _ = crate::sys::notify::notify("READY=1");
        let mut cfg = cfg.clone();
        while let Signal::Reload = wait_for_signal().await {
            reload(&mut cfg, &opts, &mut front, &connector, &reload_ctx).await;
        }
        let _ = crate::sys::notify::notify("STOPPING=1");
        front.stop_all();
        drain(&stats, opts.drain).await;
        anyhow::Ok(())
    });
    tracing::info!("shutting down");
    shutdown.store(true, Ordering::Relaxed);
    drop(senders);
    for h in handles {
        let _ = h.join();
    }
    for r in readers {
        let _ = r.join();
    }
    if let Some(path) = &opts.stats_file {
        let _ = stats.write_file(path);
    }
    tracing::info!(stats = %stats.to_json(), "final counters");
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(why) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        bail!(why);
    }
    result
}

fn capture_info(s: io::RxStats) -> stats::CaptureInfo {
    stats::CaptureInfo {
        received: s.received,
        dropped_by_kernel: s.dropped_by_kernel,
        oversize: s.oversize,
    }
}

/// The firewall side of a config: a server's listen port, a client's server address.
/// The firewall rules' side for `cfg`: the tunnel port and this end's address — `local`
/// when the caller knows it (the daemon's resolved address), else the configured one
/// (`listen.addr`'s IP, `network.ipv4/ipv6.addr`), else the detected one.
pub fn firewall_side(
    cfg: &Config,
    local: Option<IpAddr>,
) -> anyhow::Result<crate::sys::firewall::Side> {
    use crate::sys::firewall::Side;
    let peer_ip = match cfg.role {
        Role::Server => None,
        Role::Client => Some(
            cfg.server
                .context("server.addr is required on a client")?
                .ip(),
        ),
    };
    let want_v6 = peer_ip.map_or(
        cfg.network.ipv4.is_none() && cfg.network.ipv6.is_some(),
        |ip| ip.to_canonical().is_ipv6(),
    );
    let configured = match (cfg.role, cfg.listen) {
        (Role::Server, Some(l)) if !l.ip().is_unspecified() => Some(l.ip()),
        _ if want_v6 => cfg.network.ipv6.as_ref().map(|a| a.addr.ip()),
        _ => cfg.network.ipv4.as_ref().map(|a| a.addr.ip()),
    };
    let local = match local.or(configured) {
        Some(ip) => ip,
        None => {
            resolve_network(cfg, peer_ip)
                .context(
                    "finding this end's address for the firewall rules (set network.ipv4.addr)",
                )?
                .local_ip
        }
    };
    Ok(match cfg.role {
        Role::Server => Side::Server {
            port: cfg
                .listen
                .context("listen.addr is required on a server")?
                .port(),
            local,
        },
        Role::Client => Side::Client {
            server: cfg.server.context("server.addr is required on a client")?,
            local,
        },
    })
}

/// Rules installed at start and removed on drop (`firewall.auto`).
struct FirewallGuard(crate::sys::firewall::RuleSet);

impl FirewallGuard {
    fn install(side: crate::sys::firewall::Side) -> anyhow::Result<FirewallGuard> {
        let rules = crate::sys::firewall::RuleSet::new(side, None);
        rules.apply().context(
            "installing the firewall rules (set firewall.auto: false to manage them yourself)",
        )?;
        tracing::info!(backend = rules.backend.as_str(), tag = %rules.comment(), "firewall rules installed");
        Ok(FirewallGuard(rules))
    }
}

impl Drop for FirewallGuard {
    fn drop(&mut self) {
        match self.0.remove() {
            Ok(()) => tracing::info!(tag = %self.0.comment(), "firewall rules removed"),
            Err(e) => tracing::error!("removing firewall rules: {e}"),
        }
    }
}

/// Which worker owns a captured frame: by client address and port on a server (hashed with
/// a per-process random key, so nobody can aim every flow at one worker), by local port
/// (chosen per worker) on a client.
/// The hash of a server's flow (its client's address and port), the same in the capture
/// thread (which worker, which lane) and in the workers (which flows are their sessions').
fn flow_hash(key: &std::collections::hash_map::RandomState, peer: SocketAddr) -> u64 {
    use std::hash::BuildHasher;
    key.hash_one(peer)
}

struct Shard {
    link: LinkType,
    is_server: bool,
    workers: usize,
    key: std::collections::hash_map::RandomState,
}

impl Shard {
    fn new(
        link: LinkType,
        is_server: bool,
        workers: usize,
        key: std::collections::hash_map::RandomState,
    ) -> Shard {
        Shard {
            link,
            is_server,
            workers: workers.max(1),
            key,
        }
    }

    /// The worker that owns the frame's flow, and the flow's hash (the server: the peer's
    /// address and port; the client: its own port).
    fn of(&self, frame: &[u8]) -> (usize, u64) {
        let flow = match wire::parse_frame(self.link, frame) {
            Ok(p) if self.is_server => flow_hash(&self.key, p.repr.src),
            Ok(p) => u64::from(p.repr.dst.port()),
            Err(_) => 0,
        };
        ((flow % self.workers as u64) as usize, flow)
    }
}

enum Signal {
    Stop,
    Reload,
}

async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGHUP; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Stop;
    };
    tokio::select! {
        _ = term.recv() => Signal::Stop,
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}

/// Waits until no stream is open, or `deadline` has passed.
async fn drain(stats: &Stats, deadline: Duration) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let open = stats.total().streams_active;
        if open == 0 {
            return;
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(open, "drain deadline passed: closing open streams");
            return;
        }
        tracing::info!(open, "draining streams");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a reload needs besides the config.
struct ReloadCtx {
    workers: Vec<flume::Sender<Input>>,
    /// Server: the addresses password keys are salted with.
    server_addresses: Vec<SocketAddr>,
}

/// SIGHUP: re-reads the config; applies socks5/forward rules, the log level and (server)
/// the keys and client list: sessions of removed clients end. Sessions and everything else
/// keep running; changes elsewhere need a restart and are reported.
async fn reload(
    cfg: &mut Config,
    opts: &RunOptions,
    front: &mut frontends::FrontEnds,
    connector: &client::TunnelConnector,
    ctx: &ReloadCtx,
) {
    let Some(path) = &opts.config_path else {
        tracing::warn!("SIGHUP: no config path to reload from");
        return;
    };
    let new = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: config not reloaded: {e}");
            return;
        }
    };
    let mut transport = new.transport.clone();
    transport.kcp.key.clone_from(&cfg.transport.kcp.key);
    if new.role != cfg.role || new.network != cfg.network || transport != cfg.transport {
        tracing::warn!("SIGHUP: role/network/transport changes need a restart; applying socks5, forward, keys and log only");
    }
    if let Some(set) = &opts.set_log_level {
        set(new.log_level);
    }
    if new.role == Role::Client {
        if let Err(e) = front.apply(&new, connector).await {
            tracing::error!("SIGHUP: {e:#}");
        }
        if new.auth != cfg.auth {
            tracing::warn!("SIGHUP: a client's key changes need a restart");
        }
    } else if new.role == Role::Server && new.auth != cfg.auth {
        let (c, addrs) = (new.clone(), ctx.server_addresses.clone());
        let keys = tokio::task::spawn_blocking(move || keys::server_identities(&c, &addrs)).await;
        match keys {
            Ok(Ok(ids)) => {
                for w in &ctx.workers {
                    let _ = w
                        .send_async(Input::Control(bridge::Control::SetIdentities(ids.clone())))
                        .await;
                }
                let names: Vec<&str> = new.auth.clients.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(clients = ?names, shared_key = new.auth.shared.is_some(), "SIGHUP: keys reloaded");
                cfg.auth = new.auth.clone();
                cfg.transport.kcp.key.clone_from(&new.transport.kcp.key);
            }
            Ok(Err(e)) => tracing::error!("SIGHUP: keys not reloaded: {e:#}"),
            Err(e) => tracing::error!("SIGHUP: keys not reloaded: {e}"),
        }
    }
    cfg.socks5 = new.socks5;
    cfg.forward = new.forward;
    cfg.log_level = new.log_level;
    tracing::info!("configuration reloaded");
}
