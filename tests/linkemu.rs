//! `rawtun-linkemu` in namespaces (root only): client ⇄ link ⇄ server, where the link
//! namespace runs the emulator between the two inner veth ends and client and server share
//! one 198.19.200.0/24 segment through it. Checks delay, precision under load, loss,
//! blackouts and the rate limit with plain kernel traffic (ping, UDP, TCP).
//!
//! The tests run one at a time (a lock): they measure timing on a 2-core machine.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{require_root, wait_for, ChildGuard, Netns};

const CLIENT_IP: &str = "198.19.200.1";
const SERVER_IP: &str = "198.19.200.2";
const PORT: u16 = 5400;

/// Three namespaces joined by two veth pairs, with the emulator running in the middle.
struct Wan {
    client: Netns,
    server: Netns,
    // Dropped after the emulator so it is killed before its namespace goes.
    link: Netns,
    emulator: Option<ChildGuard>,
    dir: tempfile::TempDir,
    /// Roughly when the emulator's clock started (when its "forwarding" line appeared).
    started: Instant,
}

impl Wan {
    fn new(emulator_args: &[&str]) -> Wan {
        let client = Netns::new("lec");
        let link = Netns::new("lel");
        let server = Netns::new("les");
        for (ns, outer, inner) in [(&client, "lec0", "lea0"), (&server, "les0", "leb0")] {
            common::host_ok(&[
                "ip",
                "link",
                "add",
                outer,
                "netns",
                ns.name(),
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                link.name(),
            ]);
            link.exec_ok(&["ip", "link", "set", inner, "up"]);
        }
        // No IPv6 chatter (router solicitations, MLD) in the counters.
        for ns in [&client, &server] {
            ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        client.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            "lec0",
        ]);
        server.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "les0",
        ]);
        client.exec_ok(&["ip", "link", "set", "lec0", "up"]);
        server.exec_ok(&["ip", "link", "set", "les0", "up"]);
        // Static neighbours: ARP through a lossy link would make the first packets flaky.
        let mac = |ns: &Netns, dev: &str| {
            ns.exec_ok(&["cat", &format!("/sys/class/net/{dev}/address")])
                .trim()
                .to_owned()
        };
        let (client_mac, server_mac) = (mac(&client, "lec0"), mac(&server, "les0"));
        client.exec_ok(&[
            "ip",
            "neigh",
            "replace",
            SERVER_IP,
            "lladdr",
            &server_mac,
            "dev",
            "lec0",
            "nud",
            "permanent",
        ]);
        server.exec_ok(&[
            "ip",
            "neigh",
            "replace",
            CLIENT_IP,
            "lladdr",
            &client_mac,
            "dev",
            "les0",
            "nud",
            "permanent",
        ]);

        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let stats = dir.path().join("stats.json");
        let log = dir.path().join("linkemu.log");
        let mut args = vec![
            env!("CARGO_BIN_EXE_rawtun-linkemu"),
            "--a",
            "lea0",
            "--b",
            "leb0",
            "--stats-file",
            stats.to_str().expect("temporary paths are UTF-8"),
        ];
        args.extend_from_slice(emulator_args);
        let emulator = link.spawn(&args, Some(&log));
        let ready = wait_for(Duration::from_secs(20), || {
            emulator.log_text().contains("forwarding")
        });
        let started = Instant::now();
        assert!(ready, "emulator did not start:\n{}", emulator.log_text());
        Wan {
            client,
            server,
            link,
            emulator: Some(emulator),
            dir,
            started,
        }
    }

    /// Stops the emulator (SIGTERM, clean exit expected) and returns its final counters.
    fn stop(&mut self) -> serde_json::Value {
        let mut emulator = self.emulator.take().expect("the emulator runs until stop");
        let status = emulator.terminate(Duration::from_secs(5));
        let log = emulator.log_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "exit {status:?}:\n{log}"
        );
        assert!(log.contains("rawtun-linkemu counters"), "{log}");
        let text = std::fs::read_to_string(self.stats_path()).expect("stats file written at exit");
        serde_json::from_str(&text).expect("stats file is JSON")
    }

    fn stats_path(&self) -> PathBuf {
        self.dir.path().join("stats.json")
    }

    /// Round-trip times (ms) of `count` pings at `interval` seconds.
    fn ping(&self, count: u32, interval: &str) -> Vec<f64> {
        let out = self.client.exec(&[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "2",
            SERVER_IP,
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        drop(self.emulator.take());
        let _ = &self.link;
    }
}

fn median(rtts: &[f64]) -> f64 {
    let mut sorted = rtts.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn summary(rtts: &[f64]) -> (f64, f64, f64) {
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    (min, rtts.iter().sum::<f64>() / rtts.len() as f64, max)
}

/// A UDP receiver in the server namespace: returns the sequence numbers it got, once no
/// datagram has arrived for `quiet` after `done` is set (or after 60 s at most).
fn udp_sink(
    wan: &Wan,
    done: Arc<AtomicBool>,
    quiet: Duration,
) -> std::thread::JoinHandle<Vec<u64>> {
    let bound = Arc::new(AtomicBool::new(false));
    let ready = bound.clone();
    let handle = wan.server.thread(move || {
        let socket = UdpSocket::bind((SERVER_IP, PORT)).expect("bind the UDP sink");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        bound.store(true, Ordering::SeqCst);
        let mut seqs = Vec::new();
        let mut buf = [0u8; 2048];
        let mut last = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match socket.recv(&mut buf) {
                Ok(n) if n >= 8 => {
                    seqs.push(u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")));
                    last = Instant::now();
                }
                _ => {
                    if done.load(Ordering::SeqCst) && last.elapsed() >= quiet {
                        break;
                    }
                }
            }
        }
        seqs
    });
    assert!(wait_for(Duration::from_secs(5), || ready.load(Ordering::SeqCst)));
    handle
}

/// Sends datagrams of `len` bytes (sequence number first) from the client namespace: one
/// every `gap`, `count` in all, paced against the clock so bursts stay small. Returns the
/// send instant of each.
fn udp_send(wan: &Wan, count: u64, gap: Duration, len: usize) -> Vec<Instant> {
    wan.client.run(move || {
        let socket = UdpSocket::bind((CLIENT_IP, 0)).expect("bind the UDP sender");
        let to: SocketAddr = format!("{SERVER_IP}:{PORT}").parse().expect("address");
        let mut payload = vec![0u8; len];
        let start = Instant::now();
        let mut sent = Vec::with_capacity(count as usize);
        for seq in 0..count {
            let due = start + gap.mul_f64(seq as f64);
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait.min(Duration::from_micros(500)));
            }
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            // ENOBUFS under load is a lost datagram like any other.
            let _ = socket.send_to(&payload, to);
            sent.push(Instant::now());
        }
        sent
    })
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn delay_50ms_each_way() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--delay", "50ms"]);
    let rtts = wan.ping(20, "0.1");
    let (min, avg, max) = summary(&rtts);
    eprintln!("delay 50ms each way: ping rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
    assert_eq!(rtts.len(), 20, "{rtts:?}");
    // Never early (the emulator holds each frame at least its delay); late only by what the
    // shared machine adds in scheduling, so the median, not every sample, must be close.
    // A missing or doubled delay fails either bound; the spread is printed above.
    assert!(
        rtts.iter().all(|&r| r >= 99.9),
        "a reply came early: {rtts:?}"
    );
    assert!(
        median(&rtts) <= 105.0,
        "median {} ms: {rtts:?}",
        median(&rtts)
    );
    let stats = wan.stop();
    assert!(stats["ab"]["forwarded"].as_u64() >= Some(20), "{stats}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn precision_under_load() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--delay", "20ms", "--rate", "50mbit", "--queue", "200ms"]);
    let done = Arc::new(AtomicBool::new(false));
    let sink = udp_sink(&wan, done.clone(), Duration::from_millis(300));
    // 45 Mbit/s of 1200-byte datagrams (one per 213 µs) for 4 s, pinging meanwhile.
    let gap = Duration::from_nanos(1200 * 8 * 1_000_000_000 / 45_000_000);
    let count: u64 = 4 * 45_000_000 / (1200 * 8);
    let load = {
        let client = wan.client.name().to_owned();
        std::thread::spawn(move || {
            rawtun::sys::enter_netns(&client).expect("enter the client namespace");
            let socket = UdpSocket::bind((CLIENT_IP, 0)).expect("bind the UDP sender");
            let to: SocketAddr = format!("{SERVER_IP}:{PORT}").parse().expect("address");
            let mut payload = vec![0u8; 1200];
            let mut due = Instant::now();
            for seq in 0..count {
                while let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait.min(Duration::from_micros(200)));
                }
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                let _ = socket.send_to(&payload, to);
                // Never catch up after a stall (other processes share the CPUs): a burst
                // would queue at the 50 Mbit/s bottleneck and measure the queue, not timing.
                due = (due + gap).max(Instant::now() - Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300)); // let the load reach steady state
    let rtts = wan.ping(50, "0.05");
    load.join().expect("the load thread finishes");
    done.store(true, Ordering::SeqCst);
    let received = sink.join().expect("the sink finishes").len();
    let stats = wan.stop();
    let (min, avg, max) = summary(&rtts);
    eprintln!(
        "under 45 Mbit/s load through 50 Mbit/s, 20 ms each way: ping rtt min/avg/max = \
         {min:.3}/{avg:.3}/{max:.3} ms; {received}/{count} datagrams; a→b max queue delay \
         {} µs, release lateness avg/max {}/{} µs",
        stats["ab"]["max_queue_delay_us"],
        stats["ab"]["release_late_avg_us"],
        stats["ab"]["release_late_max_us"],
    );
    assert_eq!(rtts.len(), 50, "{rtts:?}");
    // Never early, and the 45 Mbit/s load does not push the typical ping far past 40 ms (an
    // emulator that fell behind its release times, or queued beyond what the 50 Mbit/s rate
    // needs, would). How late each one is depends on the shared machine's 2 cores (a CI box
    // may be busier than this one), so the precision figures are printed above and kept in
    // docs/LINKEMU.md, not asserted to the millisecond.
    assert!(
        rtts.iter().all(|&r| r >= 39.9),
        "a reply came early: {rtts:?}"
    );
    let med = median(&rtts);
    assert!(med <= 48.0, "median {med} ms (avg {avg}): {rtts:?}");
    assert!(received as u64 > count * 95 / 100, "{received}/{count}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn random_loss_10_percent() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--ab-loss", "10%", "--seed", "7"]);
    let done = Arc::new(AtomicBool::new(false));
    let sink = udp_sink(&wan, done.clone(), Duration::from_millis(300));
    udp_send(&wan, 2000, Duration::from_micros(200), 200);
    done.store(true, Ordering::SeqCst);
    let received = sink.join().expect("the sink finishes").len() as u64;
    let stats = wan.stop();
    let lost = stats["ab"]["lost_random"].as_u64().unwrap_or(0);
    eprintln!("loss 10%: {received}/2000 datagrams arrived, emulator counted {lost} lost");
    // Binomial(2000, 0.1): sd ≈ 13.4; allow 5 sd.
    assert!((1733..=1867).contains(&received), "{received}");
    assert_eq!(received + lost, 2000, "{stats}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn blackout_window_drops_everything_in_it() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--blackout", "1s+2s"]);
    let done = Arc::new(AtomicBool::new(false));
    let sink = udp_sink(&wan, done.clone(), Duration::from_millis(300));
    let sent = udp_send(&wan, 80, Duration::from_millis(50), 100);
    done.store(true, Ordering::SeqCst);
    let got: std::collections::HashSet<u64> = sink
        .join()
        .expect("the sink finishes")
        .into_iter()
        .collect();
    let stats = wan.stop();
    // `started` is up to ~50 ms after the emulator's epoch: offsets here are that much early.
    for (seq, at) in sent.iter().enumerate() {
        let offset = at.saturating_duration_since(wan.started).as_secs_f64();
        let arrived = got.contains(&(seq as u64));
        if (1.0..2.85).contains(&offset) {
            assert!(
                !arrived,
                "datagram {seq} at {offset:.3}s crossed the blackout"
            );
        } else if !(0.85..3.0).contains(&offset) {
            assert!(
                arrived,
                "datagram {seq} at {offset:.3}s lost outside the blackout"
            );
        }
    }
    let lost = stats["ab"]["lost_blackout"].as_u64().unwrap_or(0);
    eprintln!(
        "blackout 1s+2s: {} of 80 arrived, {lost} dropped in the window",
        got.len()
    );
    // The counter may include stray frames too (none expected with IPv6 off).
    assert!(got.len() as u64 + lost >= 80, "{stats}");
    // About 40 of the 80 fall in the 2 s window; a sender stalled by the shared machine
    // moves a few across its edges (each one is checked by its own send time above).
    assert!(
        (32..=48).contains(&(80 - got.len())),
        "{} arrived",
        got.len()
    );
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn signal_blackout() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--signal-blackout", "1s"]);
    assert_eq!(wan.ping(3, "0.1").len(), 3);
    wan.emulator.as_ref().expect("running").signal("USR1");
    let emulator_saw = wait_for(Duration::from_secs(5), || {
        wan.emulator
            .as_ref()
            .is_some_and(|e| e.log_text().contains("blackout started"))
    });
    assert!(emulator_saw);
    assert!(wan.ping(4, "0.1").is_empty(), "pings crossed the blackout");
    std::thread::sleep(Duration::from_millis(800)); // past the 1 s window
    assert_eq!(wan.ping(3, "0.1").len(), 3);
    let stats = wan.stop();
    assert!(stats["ab"]["lost_blackout"].as_u64() >= Some(4), "{stats}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn rate_limit_20mbit() {
    require_root();
    let _serial = common::serial();
    let mut wan = Wan::new(&["--rate", "20mbit"]);
    let listening = Arc::new(AtomicBool::new(false));
    let ready = listening.clone();
    let server = wan.server.thread(move || {
        let listener = TcpListener::bind((SERVER_IP, PORT)).expect("bind the TCP sink");
        ready.store(true, Ordering::SeqCst);
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        let mut first = None;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    total += n as u64;
                }
            }
        }
        let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
        (total, elapsed)
    });
    assert!(wait_for(Duration::from_secs(5), || listening.load(Ordering::SeqCst)));
    wan.client.run(|| {
        let mut stream = TcpStream::connect((SERVER_IP, PORT)).expect("connect through the link");
        let chunk = vec![0x5au8; 64 << 10];
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            stream.write_all(&chunk).expect("write");
        }
    });
    let (bytes, elapsed) = server.join().expect("the sink finishes");
    let mbit = bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    let stats = wan.stop();
    eprintln!(
        "rate 20mbit: TCP goodput {mbit:.2} Mbit/s ({bytes} bytes in {elapsed:?}); dropped_queue {}",
        stats["ab"]["dropped_queue"]
    );
    // Never above the rate; below it only when the shared machine starves the sender.
    assert!((10.0..=21.0).contains(&mbit), "{mbit} Mbit/s");
}
