//! One client against the per-client limits, end to end in network namespaces with a real
//! server daemon (root only).
//!
//! An authenticated client (tests/common/flood.rs: a real session that never waits for
//! connect results) opens 1,000 streams to names whose nameserver never answers and
//! 10,000 streams to a target that never answers, writing into each. Meanwhile a second,
//! well-behaved client (the harness's rawtun client, SOCKS5) measures its echo round trips
//! and opens streams by name. The server's memory must stay under the documented
//! per-session bound (`rawtun::proxy::session_memory_bound`), every bound must have been
//! exercised (refusals counted), and the second client must be served: all its opens by
//! name succeed and its echo round trip p99 stays within 2x of its idle p99.
//!
//! Two things made that ratio 0.9x-2.2x from run to run before (2026-12-05):
//! - the server's worker handled its input in arrival order, and the flood's bulk put up
//!   to 5,848 frames ahead of the other client's next packet (`queue_peak`); the worker
//!   now serves flows in turn (`src/daemon/fair.rs`);
//! - on a 2-CPU test box the link emulator (real-time priority, ~1 CPU at the flood's
//!   rate), the flooding client (~0.5 CPU) and the server shared both CPUs, and a
//!   system-wide profile showed the server's worker getting a quarter of a CPU while its
//!   queue grew. An attacker and a network path do not run on the server's CPUs, so the
//!   test gives the server a CPU of its own (`taskset`) and puts everything else on the
//!   others. Measured since: p99 ratio 1.18-1.36 (AMD EPYC, 2 vCPUs).
//!
//! Client and server are joined through `rawtun-linkemu` with 50 ms of delay each way, as
//! rawtun's users' paths are long: on a bare veth the idle round trip is a fraction of a
//! millisecond and the ratio measures how the two test CPUs are shared (1.4x to 17x in
//! runs on the same box), not whether the server keeps serving the other client.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wan::LinkSpec;
use common::{addr, flood, serial, socks5, Side, Topology, TunnelSpec};
use rawtun::tunnel::{OpenRequest, Protocol, Target};

const SOCKS5: &str = "127.0.0.1:1080";
const ECHO: u16 = 7201;
/// Routed from the server namespace into the client namespace, which does not forward:
/// SYNs to it vanish, so a dial waits for its timeout.
const BLACKHOLE: &str = "198.19.253.0/24";

/// A nameserver on 127.0.0.1:53 in the server namespace: `*.slow.test` is never answered
/// (the query is read and dropped), `*.echo.test` resolves to 127.0.0.1 (TTL 60), anything
/// else is NXDOMAIN. Counts the queries it reads.
fn nameserver(ns: &common::Netns) -> Arc<AtomicU64> {
    let sock = ns.run(|| UdpSocket::bind("127.0.0.1:53").expect("bind the nameserver"));
    let queries = Arc::new(AtomicU64::new(0));
    let count = queries.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            count.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = answer(&buf[..n]) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    queries
}

/// The reply to a one-question query, or `None` to stay silent.
fn answer(q: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    if name.ends_with("slow.test") {
        return None;
    }
    let mut r = q.get(..question_end)?.to_vec();
    r[2] = 0x84 | (q[2] & 0x01); // QR, AA, RD copied
    r[3] = 0x80; // RA
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if name.ends_with("echo.test") {
        if qtype == 1 {
            r[7] = 1; // ANCOUNT
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
        }
    } else {
        r[3] |= 3; // NXDOMAIN
    }
    Some(r)
}

fn echo_server(ns: &common::Netns) {
    let l = ns.run(|| TcpListener::bind(("127.0.0.1", ECHO)).expect("bind the echo server"));
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// `count` echo round trips of 32 bytes over one SOCKS5 connection to `host`; their
/// durations in milliseconds, sorted.
fn round_trips(proxy: SocketAddr, host: &str, count: usize) -> Vec<f64> {
    let mut c = socks5::connect(proxy, host, ECHO).expect("the echo target");
    c.set_nodelay(true).expect("nodelay");
    let msg = [7u8; 32];
    let mut back = [0u8; 32];
    let mut rtts = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = Instant::now();
        c.write_all(&msg).expect("write");
        c.read_exact(&mut back).expect("echo");
        rtts.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    rtts
}

fn p(sorted: &[f64], pct: usize) -> f64 {
    sorted[(sorted.len() * pct / 100).min(sorted.len() - 1)]
}

/// Restricts every thread of `pid` (and threads it starts later) to `cpus` (`taskset`).
fn pin(pid: u32, cpus: &str) {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .expect("taskset (util-linux)");
    assert!(
        out.status.success(),
        "taskset -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key` of /proc/PID/status in bytes (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn one_client_flood_is_bounded_and_another_client_is_served() {
    common::require_root();
    let _s = serial();
    // 100 ms round trip, nothing else: no rate limit, so no shared queue in the emulator
    // in which the flood's bytes could delay the other client's.
    let mut t = Topology::wan(LinkSpec::new(&["--delay", "50ms"]));
    t.server.set_etc("resolv.conf", "nameserver 127.0.0.1\n");
    let queries = nameserver(&t.server);
    echo_server(&t.server);
    let client_ip = t.client_ip.to_string();
    t.server
        .exec_ok(&["ip", "route", "add", BLACKHOLE, "via", &client_ip]);
    let spec = TunnelSpec {
        forwards: Vec::new(),
        ..TunnelSpec::default()
    };
    t.apply_firewall(spec.port);
    let (server_cfg, client_cfg) = t.write_configs(&spec);
    t.start_server();
    t.start_client();
    let pid = t.daemon_pid(Side::Server).expect("server pid");
    let cfg = rawtun::config::load(&server_cfg).expect("server config");
    let bound = rawtun::proxy::session_memory_bound(&cfg);
    let proxy = addr(SOCKS5);
    // The server gets a CPU of its own; the emulator, the flooding client and the other
    // client share the rest (see the header).
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 {
        let last = cpus - 1;
        let rest = format!("0-{}", last - 1);
        pin(pid, &last.to_string());
        for other in [
            t.daemon_pid(Side::Client).expect("client pid"),
            t.link().emulator.pid(),
            std::process::id(),
        ] {
            pin(other, &rest);
        }
        println!("server on CPU {last}, emulator and clients on CPUs {rest}");
    } else {
        println!("one CPU: server, emulator and clients share it");
    }

    // Idle figures of the well-behaved client.
    let mut idle = t.client.run(move || round_trips(proxy, "127.0.0.1", 200));
    idle.sort_by(f64::total_cmp);
    let rss_idle = proc_kib(pid, "VmRSS:");
    let opened_idle = t.counter(Side::Server, "streams_opened");

    // The flood: 1,000 slow names, then 10,000 blackholed dials, written into.
    let mut opens = Vec::new();
    for i in 0..1000 {
        opens.push(OpenRequest {
            protocol: Protocol::Tcp,
            target: Target::Domain(format!("n{i}.slow.test"), 80),
        });
    }
    for i in 0..10_000u32 {
        let ip = Ipv4Addr::new(198, 19, 253, (i % 250 + 1) as u8);
        opens.push(OpenRequest {
            protocol: Protocol::Tcp,
            target: Target::Ip(SocketAddr::from((ip, 80))),
        });
    }
    // The flood ends by itself after `hold`; `stop` is for a test that wants it sooner.
    let stop = Arc::new(AtomicBool::new(false));
    let plan = flood::Plan {
        opens,
        // The first 64 streams (slow names, 32 of which the server holds while it looks
        // them up: `limits.lookups_per_session`) get 2 MiB each, within the stream window
        // (8 MiB) but together twice the session's receive bound (`smuxbuf`, 32 MiB); the
        // rest 8 KiB.
        heavy: (64, 2 << 20),
        rest: 8 << 10,
        burst: 256,
        // Past the dial timeout (10 s) and the other client's measurement (about 55 s):
        // the blackholed dials end while the session lives.
        hold: Duration::from_secs(65),
        stop: stop.clone(),
    };
    let attacker = t.client.thread(move || flood::run(&client_cfg, plan));

    // The other client, measured while the flood is under way: it starts once the flooding
    // session opens its first streams, and interleaves opens by name with the round trips.
    let started = common::wait_for(Duration::from_secs(30), || {
        t.counter(Side::Server, "streams_opened") > opened_idle + 100
    });
    assert!(
        started,
        "the flood opened no streams: {}",
        t.stats(Side::Server)
    );
    let (loaded, by_name) = t.client.run(move || {
        let mut rtts = Vec::new();
        let mut opened = 0;
        let t0 = Instant::now();
        for i in 0..20 {
            rtts.extend(round_trips(proxy, "127.0.0.1", 25));
            if socks5::connect(proxy, &format!("e{i}.echo.test"), ECHO).is_ok() {
                opened += 1;
            }
        }
        // The five slowest round trips and when they happened (index in time order, ms), to
        // tell a stall at one moment of the flood from a general slowdown.
        let mut slowest: Vec<(usize, f64)> = rtts.iter().copied().enumerate().collect();
        slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
        slowest.truncate(5);
        println!(
            "slowest round trips under the flood (index of {}, ms): {slowest:.1?}",
            rtts.len()
        );
        rtts.sort_by(f64::total_cmp);
        (rtts, (opened, t0.elapsed()))
    });
    // Every bound has been hit by now (or soon): the flood sends all its opens at once.
    let hit = common::wait_for(Duration::from_secs(30), || {
        [
            "refused_streams",
            "refused_dials",
            "refused_lookups",
            "reset_over_buffer",
        ]
        .iter()
        .all(|k| t.counter(Side::Server, k) > 0)
    });
    let during_stats = t.stats(Side::Server);
    let rss_during = proc_kib(pid, "VmRSS:");
    let report = attacker.join().expect("the flood thread");
    let peak = proc_kib(pid, "VmHWM:");
    let s = t.stats(Side::Server);

    println!("emulator: {}", t.link().stats());
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let ratio = p(&loaded, 99) / p(&idle, 99);
    println!(
        "flood: {report:?}\nserver counters during the flood: {during_stats}\nafter: {s}\n\
         nameserver queries: {}\n\
         server RSS idle {:.1} MiB, during {:.1} MiB, peak {:.1} MiB; documented bound per \
         session {:.1} MiB\n\
         echo RTT ms idle p50 {:.2} p99 {:.2}; loaded p50 {:.2} p99 {:.2} (p99 ratio {ratio:.2})\n\
         opens by name during the flood: {}/20, measurement took {:?}",
        queries.load(Ordering::Relaxed),
        mib(rss_idle),
        mib(rss_during),
        mib(peak),
        mib(bound),
        p(&idle, 50),
        p(&idle, 99),
        p(&loaded, 50),
        p(&loaded, 99),
        by_name.0,
        by_name.1,
    );
    assert!(
        report.established_after.is_some() && report.session_lost.is_none(),
        "the flooding client keeps its session: {report:?}"
    );
    assert!(report.opened >= 11_000, "every open was sent: {report:?}");
    assert!(hit, "every per-session bound was exercised: {during_stats}");
    assert!(
        peak <= rss_idle + bound,
        "server peak RSS {:.1} MiB exceeds idle {:.1} MiB + the documented bound {:.1} MiB",
        mib(peak),
        mib(rss_idle),
        mib(bound)
    );
    assert_eq!(
        by_name.0, 20,
        "the other client's opens by name all succeed"
    );
    assert!(
        p(&loaded, 99) <= 2.0 * p(&idle, 99),
        "echo p99 {:.2} ms under the flood vs {:.2} ms idle (ratio {ratio:.2})",
        p(&loaded, 99),
        p(&idle, 99)
    );
}
