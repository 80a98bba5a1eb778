//! A misbehaving authenticated client for the limit tests: a real client session — the
//! library's `Connection` over pcap in the client namespace, driven the way `daemon::ping`
//! drives one — that opens streams one after the other and writes into each without
//! waiting for its connect result, and never closes what the server refuses. Its own send
//! side holds nothing back for the session (`session_window` at its maximum), so only the
//! server's bounds stop it.
//!
//! It uses the key and addresses of a client config the harness wrote (`client.yaml`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rawtun::endpoint::{ConnEvent, Connection, MAX_FRAME};
use rawtun::faketcp::FlowAddrs;
use rawtun::io::{open_pcap, tunnel_filter, PacketRx, PacketTx, PcapOptions};
use rawtun::mux::MuxEvent;
use rawtun::tunnel::{ConnectResult, OpenRequest};
use rawtun::wire;

/// What to do.
pub struct Plan {
    /// Streams to open, in order.
    pub opens: Vec<OpenRequest>,
    /// Bytes written into each stream right after its OPEN: `(first n streams, bytes)`,
    /// then `rest` bytes into every other stream. The other streams are opened only once
    /// the heavy streams' bytes have gone out (or their streams were reset), so the heavy
    /// bytes reach the server first however fast the path and the CPUs are (the mux would
    /// otherwise share the link among thousands of streams and the heavy ones trickle).
    pub heavy: (usize, usize),
    pub rest: usize,
    /// Opens per loop turn (the pace of the flood).
    pub burst: usize,
    /// How long to keep the session (and every stream it was not refused) after the last
    /// open.
    pub hold: Duration,
    /// Set to stop early.
    pub stop: Arc<AtomicBool>,
}

/// What happened.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub opened: usize,
    /// Connect results by code (ok, refused, unreachable, timeout, denied, failure).
    pub results: [u64; 6],
    /// Streams the server reset (refused opens, bounds exceeded).
    pub resets: u64,
    pub bytes_written: u64,
    pub session_lost: Option<String>,
    pub established_after: Option<Duration>,
}

/// Runs the flood on the calling thread, which must be inside the client namespace.
pub fn run(client_config: &Path, plan: Plan) -> Report {
    let cfg = rawtun::config::load(client_config).expect("the harness's client config loads");
    let server = cfg.server.expect("a client config names its server");
    let interface = cfg
        .network
        .interface
        .clone()
        .expect("the harness pins the interface");
    let v4 = cfg
        .network
        .ipv4
        .as_ref()
        .expect("the harness pins the address");
    let router_mac = v4.router_mac.expect("and the gateway MAC");
    let identity = rawtun::daemon::keys::client_identity(&cfg).expect("the client's key");
    let opts = PcapOptions {
        interface: interface.clone(),
        filter: tunnel_filter(0, Some(server)),
        sockbuf: 16 << 20,
        snaplen: 2048,
    };
    let (mut rx, mut tx, link) = open_pcap(&opts).expect("pcap on the client veth");
    let mut conn_cfg = rawtun::daemon::conn_config(&cfg, link, true);
    conn_cfg.mux.session_window = u32::MAX;
    let port = 40000 + rand_port();
    let addrs = FlowAddrs {
        local: SocketAddr::new(v4.addr.ip(), port),
        remote: server,
        local_mac: rawtun::sys::interface_mac(&interface).expect("veth MAC"),
        remote_mac: router_mac,
    };
    let start = Instant::now();
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(4) {
        chunk.copy_from_slice(&rand_u32().to_le_bytes());
    }
    let mut conn =
        Connection::client(conn_cfg, identity, addrs, seed, start).expect("client connection");

    // Capture on its own thread: the driver below never blocks on pcap.
    let (frames_tx, frames) = mpsc::sync_channel::<Vec<u8>>(1 << 16);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                if let Ok(Some(n)) = rx.recv(&mut buf) {
                    if frames_tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        })
    };

    let mut report = Report::default();
    let mut next_open = 0usize;
    let mut last_open: Option<Instant> = None;
    let mut txbuf = vec![0u8; MAX_FRAME];
    let heavy_chunk = vec![0x5a; plan.heavy.1];
    let rest_chunk = vec![0xa5; plan.rest];
    let mut first_result: std::collections::HashSet<u32> = std::collections::HashSet::new();
    // Heavy streams' bytes not yet framed, by stream.
    let mut heavy_unsent: std::collections::HashMap<u32, usize> = Default::default();
    let mut first_open: Option<Instant> = None;
    let give_up = start + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        if plan.stop.load(Ordering::Relaxed) {
            break;
        }
        if last_open.is_some_and(|t| now >= t + plan.hold) {
            break;
        }
        if report.established_after.is_none() && now >= give_up {
            report.session_lost = Some("no session within 30 s".into());
            break;
        }
        let wait = conn
            .poll_timeout()
            .map_or(Duration::from_millis(5), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(5));
        let mut batch = Vec::new();
        if let Ok(f) = frames.recv_timeout(wait) {
            batch.push(f);
            while let Ok(f) = frames.try_recv() {
                batch.push(f);
                if batch.len() >= 1024 {
                    break;
                }
            }
        }
        let now = Instant::now();
        for f in &batch {
            if let Ok(p) = wire::parse_frame(link, f) {
                if p.repr.dst.port() == port && p.repr.src == server {
                    conn.handle_frame(&p, now);
                }
            }
        }
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        while let Some(ev) = conn.poll_event() {
            match ev {
                ConnEvent::Established => report.established_after = Some(now - start),
                ConnEvent::SessionLost(r) => report.session_lost = Some(format!("{r:?}")),
                // The first bytes of a stream are its connect result.
                ConnEvent::Stream(MuxEvent::Data { id, data }) if first_result.insert(id) => {
                    if let Ok(r) = ConnectResult::decode(data.get(..2).unwrap_or_default()) {
                        let code = match r {
                            ConnectResult::Ok => 0,
                            ConnectResult::Refused => 1,
                            ConnectResult::Unreachable => 2,
                            ConnectResult::Timeout => 3,
                            ConnectResult::Denied => 4,
                            ConnectResult::Failure => 5,
                        };
                        report.results[code] += 1;
                    }
                }
                ConnEvent::Stream(MuxEvent::Reset { id }) => {
                    report.resets += 1;
                    heavy_unsent.remove(&id);
                }
                ConnEvent::Stream(MuxEvent::Sent { id, bytes }) => {
                    if let Some(left) = heavy_unsent.get_mut(&id) {
                        *left = left.saturating_sub(bytes);
                        if *left == 0 {
                            heavy_unsent.remove(&id);
                        }
                    }
                }
                _ => {}
            }
        }
        if report.session_lost.is_some() {
            break;
        }
        if report.established_after.is_some() {
            for _ in 0..plan.burst {
                let Some(req) = plan.opens.get(next_open) else {
                    break;
                };
                // (At most 10 s: the flood goes on even if some heavy bytes never leave.)
                let heavy_gate = first_open.is_none_or(|t| now < t + Duration::from_secs(10));
                if next_open >= plan.heavy.0 && !heavy_unsent.is_empty() && heavy_gate {
                    break;
                }
                let mut header = Vec::new();
                req.encode(&mut header);
                let Some(id) = conn.open_stream(&header) else {
                    break;
                };
                let chunk = if next_open < plan.heavy.0 {
                    &heavy_chunk
                } else {
                    &rest_chunk
                };
                if !chunk.is_empty() && conn.stream_write(id, chunk) {
                    report.bytes_written += chunk.len() as u64;
                    if next_open < plan.heavy.0 {
                        heavy_unsent.insert(id, chunk.len());
                    }
                }
                next_open += 1;
                report.opened += 1;
                first_open.get_or_insert(now);
                if next_open == plan.opens.len() {
                    last_open = Some(now);
                }
            }
        }
        while let Some(r) = conn.poll_transmit(Instant::now(), &mut txbuf) {
            let _ = tx.send(&txbuf[r]);
        }
    }
    done.store(true, Ordering::Relaxed);
    drop(frames);
    let _ = reader.join();
    report
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

fn rand_port() -> u16 {
    (rand_u32() % 20000) as u16
}
