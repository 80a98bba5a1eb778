//! The server's posture on the open Internet, with real daemons and real packets in network
//! namespaces (issue 9's acceptance): silence towards strangers, junk, replays and corrupted
//! packets; no reset for copied packets; flood resistance; a key per client. The protocol
//! details are tested in virtual time in tests/sim_security.rs; these prove the daemon keeps
//! them on the wire.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::attack::{mac, random_source, rewrite, segment, Injector, Recorder};
use common::capture::{segments, Capture};
use common::{addr, listen, require_root, serial, wait_for, Side, Topology, TunnelSpec};
use rand::{Rng, SeedableRng};
use rawtun::wire::{parse_frame, LinkType, TcpFlags};

const FORWARD: &str = "127.0.0.1:9000";
const TARGET: &str = "127.0.0.1:9001";

/// Keepalives far apart, so an idle session sends nothing while the silence is measured.
fn quiet_spec() -> TunnelSpec {
    TunnelSpec {
        transport_yaml: "timeouts:\n  keepalive: 60\n  idle: 300\n".into(),
        ..TunnelSpec::default()
    }
}

/// Every IP packet the server sent while `attack` ran (ARP excluded: any host does that).
fn sent_by_server_during(t: &Topology, name: &str, attack: impl FnOnce()) -> Vec<String> {
    let file = t.path(&format!("{name}.pcap"));
    let filter = format!("ip and src host {}", t.server_ip);
    let cap = Capture::start_filtered(&t.server, &t.server_if, &file, &filter);
    attack();
    // Whatever the attack provoked has had time to leave.
    std::thread::sleep(Duration::from_millis(500));
    let (pcap, _) = cap.stop();
    segments(&pcap)
        .iter()
        .map(|s| format!("{s:?}"))
        .chain((pcap.frames.len() > segments(&pcap).len()).then(|| {
            format!(
                "{} non-TCP frames",
                pcap.frames.len() - segments(&pcap).len()
            )
        }))
        .collect()
}

/// One idle round trip through the forward (proves the session works).
fn echo_once(t: &Topology, listener: &std::net::TcpListener) {
    let l = listener.try_clone().expect("listener");
    let echo = t.server.thread(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut b = [0u8; 5];
        c.read_exact(&mut b).expect("read");
        c.write_all(&b).expect("write");
    });
    let got = t.client.run(|| {
        let mut c = TcpStream::connect(addr(FORWARD)).expect("forward");
        c.write_all(b"hello").expect("write");
        let mut b = [0u8; 5];
        c.read_exact(&mut b).expect("read");
        b
    });
    assert_eq!(&got, b"hello");
    echo.join().expect("echo");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn server_sends_nothing_to_strangers_replays_or_corrupted_packets() {
    require_root();
    let _s = serial();
    let mut t = Topology::pair();
    let spec = quiet_spec();
    t.apply_firewall(spec.port);
    t.write_configs(&spec);
    let target = listen(&t.server, TARGET);
    t.start_server();
    // Record the client's opening (and everything else it sends) as the server receives it.
    let from_client = format!("tcp dst port {} and src host {}", spec.port, t.client_ip);
    let rec = Recorder::start(&t.server, &t.server_if, &from_client);
    t.start_client();
    assert!(wait_for(Duration::from_secs(10), || t
        .counter(Side::Client, "sessions_active")
        == 1));
    echo_once(&t, &target);
    std::thread::sleep(Duration::from_secs(1));
    let recording = rec.stop();
    let server: SocketAddr = format!("{}:{}", t.server_ip, spec.port).parse().unwrap();
    let macs = (mac(&t.client_mac), mac(&t.server_mac));
    let data = recording
        .iter()
        .find(|f| parse_frame(LinkType::Ethernet, f).is_ok_and(|p| p.payload.len() > 100))
        .expect("a recorded data packet")
        .clone();
    assert!(
        recording.len() >= 4,
        "SYN, ACK, msg1, data: {}",
        recording.len()
    );
    let iface = t.client_if.clone();

    // 1. The session is idle and live: corrupted copies of a valid packet, strangers' SYNs,
    //    1000 junk segments of random length 0..=1400 and the replayed opening.
    let attack = {
        let (recording, data) = (recording.clone(), data.clone());
        move |seed: u64| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut inj = Injector::open(&iface);
            for i in [0usize, 3, 4, 20, 60] {
                inj.send(&rewrite(&data, |_, p| {
                    let n = p.len();
                    p[i % n] ^= 0x20;
                }));
            }
            for _ in 0..20 {
                let src = random_source(&mut rng);
                inj.send(&segment(
                    macs,
                    src,
                    server,
                    TcpFlags::SYN,
                    rng.random(),
                    0,
                    Some(rng.random()),
                    &[],
                ));
            }
            for _ in 0..1000 {
                let src = random_source(&mut rng);
                let junk: Vec<u8> = (0..rng.random_range(0..=1400))
                    .map(|_| rng.random())
                    .collect();
                inj.send(&segment(
                    macs,
                    src,
                    server,
                    TcpFlags::PSH_ACK,
                    rng.random(),
                    rng.random(),
                    Some(1),
                    &junk,
                ));
            }
            for f in &recording {
                inj.send(f);
                inj.send(&rewrite(f, |r, _| r.src = random_source(&mut rng)));
            }
        }
    };
    let a = attack.clone();
    let sent = sent_by_server_during(&t, "live", || t.client.run(move || a(1)));
    assert!(sent.is_empty(), "the server answered:\n{}", sent.join("\n"));
    // The same capture does see the server when it has something to say.
    let control = sent_by_server_during(&t, "control", || echo_once(&t, &target));
    assert!(!control.is_empty(), "the capture missed the session's own packets");

    // 2. The session has ended (the client stopped and told the server): the recorded
    //    opening replayed from the original address and from a new one, and the rest again.
    assert!(t.stop(Side::Client).success());
    assert!(wait_for(Duration::from_secs(10), || t
        .counter(Side::Server, "sessions_active")
        == 0));
    let sent = sent_by_server_during(&t, "ended", || t.client.run(move || attack(2)));
    assert!(sent.is_empty(), "the server answered:\n{}", sent.join("\n"));

    let s = t.stats(Side::Server);
    for reason in [
        "dropped_syn_invalid",
        "dropped_no_flow",
        "dropped_syn_replay",
    ] {
        assert!(
            t.counter(Side::Server, reason) > 0,
            "{reason} not counted: {s}"
        );
    }
    assert_eq!(t.counter(Side::Server, "handshakes_ok"), 1, "{s}");
}

/// Blackholes everything the server sends out of `iface` (a tbf that passes one packet and
/// queues none: rawtun's injected frames go through the qdisc), or lifts it.
fn server_blackhole(t: &Topology, on: bool) {
    let iface = t.server_if.as_str();
    if on {
        t.server.exec_ok(&[
            "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", "8bit", "burst", "1600",
            "limit", "1",
        ]);
    } else {
        t.server
            .exec_ok(&["tc", "qdisc", "del", "dev", iface, "root"]);
    }
}

/// An on-path party copies client A's packets and sends them to the server from its own
/// address, also while A probes (the server's replies are blackholed for two seconds
/// mid-transfer, so A hears nothing); nothing ever comes back to that address, and A's
/// transfer completes intact on its first session.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn copied_packets_get_nothing_that_could_end_the_session() {
    require_root();
    let _s = serial();
    let spec = TunnelSpec::default();
    let port = spec.port;
    let t = Topology::tunnel(spec);
    let target = listen(&t.server, TARGET);
    const LEN: u64 = 48 << 20;
    let sender = t.server.thread(move || {
        let (mut c, _) = target.accept().expect("accept");
        common::data::send_seeded(&mut c, 9, LEN).expect("send")
    });
    // The attacker records A's packets at the server and re-sends each from its own address.
    let attacker: SocketAddr = format!("{}:4444", attacker_ip(&t)).parse().unwrap();
    let from_client = format!("tcp dst port {port} and src host {}", t.client_ip);
    let rec = std::sync::Arc::new(Recorder::start(&t.server, &t.server_if, &from_client));
    let to_attacker = t.path("to-attacker.pcap");
    let filter = format!("dst host {}", attacker.ip());
    let cap = Capture::start_filtered(&t.server, &t.server_if, &to_attacker, &filter);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replayer = {
        let (iface, done, rec) = (t.client_if.clone(), done.clone(), rec.clone());
        t.client.thread(move || {
            let mut inj = Injector::open(&iface);
            let mut sent = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let all = rec.frames();
                for f in &all[sent..] {
                    inj.send(&rewrite(f, |r, _| r.src = attacker));
                }
                sent = all.len();
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    let (progress_tx, progress_rx) = std::sync::mpsc::channel();
    let receiver = t.client.thread(move || {
        let mut c = TcpStream::connect(addr(FORWARD)).expect("forward");
        c.set_read_timeout(Some(common::data::STALL))
            .expect("timeout");
        let mut first = vec![0u8; 4 << 20];
        c.read_exact(&mut first).expect("the first 4 MiB");
        let _ = progress_tx.send(());
        // The rest, hashed with the first part.
        let mut all = first;
        c.read_to_end(&mut all).expect("the rest");
        all
    });
    progress_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the transfer started");
    server_blackhole(&t, true);
    let probed = wait_for(Duration::from_secs(5), || {
        t.counter(Side::Client, "probes_out") > 0
    });
    std::thread::sleep(Duration::from_millis(1500));
    server_blackhole(&t, false);
    assert!(probed, "A did not probe while it heard nothing");
    let received = receiver.join().expect("receiver");
    let sent_hash = sender.join().expect("sender");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let copied = replayer.join().expect("replayer");
    assert_eq!(received.len() as u64, LEN);
    assert_eq!(
        common::data::hex(&sha2_of(&received)),
        sent_hash,
        "A's data differs"
    );
    assert!(copied > 1000, "the attacker copied only {copied} packets");
    let (pcap, _) = cap.stop();
    assert!(
        pcap.frames.is_empty(),
        "the server sent {} packets to the attacker",
        pcap.frames.len()
    );
    assert_eq!(
        t.counter(Side::Client, "handshakes_ok"),
        1,
        "A's session was replaced"
    );
    assert_eq!(t.counter(Side::Server, "resets_sent"), 0);
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn attacker_ip(t: &Topology) -> std::net::Ipv4Addr {
    // Outside the pair's /30, inside the benchmarking range.
    let o = t.server_ip.octets();
    std::net::Ipv4Addr::new(198, 19, o[2], o[3])
}
