//! End-to-end acceptance tests of the core tunnel (root only): the real `rawtun` binary as
//! client and server in two network namespaces joined by a veth, firewall rules from
//! iptables/rawtun-iptables.sh on both ends, real clients (curl, std TCP from threads inside
//! the namespaces), and a tcpdump capture read back and checked frame by frame.

mod common;

use common::capture::{analyze, dropped_by_kernel, segments, Capture};
use common::data::{expected_hash, receive_hashed, send_seeded, Prng, STALL};
use common::{addr, listen, serial, wait_for, Netns, Side, Topology, TunnelSpec};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FORWARD: &str = "127.0.0.1:9000"; // -> server namespace 127.0.0.1:9001
const FORWARD_TARGET: &str = "127.0.0.1:9001";
const FORWARD_2: &str = "127.0.0.1:9100"; // -> server namespace 127.0.0.1:9101
const FORWARD_2_TARGET: &str = "127.0.0.1:9101";

/// Connects from a thread already inside the client namespace.
fn connect(at: &str) -> TcpStream {
    TcpStream::connect_timeout(&addr(at), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to the forward {at}: {e}"))
}

fn mb_per_s(bytes: u64, since: Instant) -> f64 {
    bytes as f64 / 1e6 / since.elapsed().as_secs_f64()
}

/// Stops both daemons with SIGTERM and checks the clean exit the contract promises.
fn stop_cleanly(t: &mut Topology) {
    for side in [Side::Client, Side::Server] {
        let status = t.stop(side);
        assert!(
            status.success(),
            "rawtun {side:?} exited with {status} on SIGTERM"
        );
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn socks5_curl_fetches_page() {
    common::require_root();
    let _serial = serial();
    let mut t = Topology::tunnel(TunnelSpec::default());
    // A page with known content, served from the server namespace's loopback.
    let site = t.path("site");
    std::fs::create_dir(&site).expect("temp dir is writable");
    let mut page = Vec::new();
    for i in 0..2000 {
        page.extend_from_slice(format!("line {i} of the rawtun e2e page\n").as_bytes());
    }
    std::fs::write(site.join("file"), &page).expect("temp dir is writable");
    let site_str = site.to_str().expect("UTF-8 temp path");
    let http = t.server.spawn(
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "--directory",
            site_str,
        ],
        Some(&t.path("http.log")),
    );
    assert!(
        wait_for(Duration::from_secs(10), || t.server.listening(8080)),
        "http.server did not start: {}",
        http.log_text()
    );

    let out_file = t.path("curl.out");
    let out = t.client.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        "--socks5-hostname",
        "127.0.0.1:1080",
        "-o",
        out_file.to_str().expect("UTF-8 temp path"),
        "-w",
        "%{http_code}",
        "http://localhost:8080/file",
    ]);
    assert!(
        out.status.success(),
        "curl through SOCKS5: {}",
        common::describe(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let body = std::fs::read(&out_file).expect("curl wrote the body");
    assert!(
        body == page,
        "body differs: {} bytes, want {}",
        body.len(),
        page.len()
    );

    assert!(
        wait_for(Duration::from_secs(5), || t
            .counter(Side::Server, "handshakes_ok")
            >= 1),
        "server stats show no handshake: {}",
        t.stats(Side::Server)
    );
    assert_eq!(t.counter(Side::Server, "auth_failures"), 0);
    stop_cleanly(&mut t);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn forward_100mib_both_directions_sha256() {
    common::require_root();
    let _serial = serial();
    const LEN: u64 = 100 << 20;
    let t = Topology::tunnel(TunnelSpec::default());

    // client -> server: a sink in the server namespace hashes what the forward delivers.
    let sink = listen(&t.server, FORWARD_TARGET);
    let sink = t.server.thread(move || {
        let (mut conn, _) = sink.accept().expect("the server dials the sink");
        receive_hashed(&mut conn, LEN)
    });
    let start = Instant::now();
    let sent = t
        .client
        .run(|| send_seeded(&mut connect(FORWARD), 1, LEN))
        .expect("send 100 MiB into the forward");
    let received = sink
        .join()
        .expect("sink thread")
        .expect("sink reads 100 MiB");
    eprintln!("client -> server: {:.1} MB/s", mb_per_s(LEN, start));
    assert_eq!(sent, expected_hash(1, LEN));
    assert_eq!(received, sent, "client -> server data differs");

    // server -> client: a source in the server namespace, the client reads and hashes.
    let source = listen(&t.server, FORWARD_2_TARGET);
    let source = t.server.thread(move || {
        let (mut conn, _) = source.accept().expect("the server dials the source");
        let hash = send_seeded(&mut conn, 2, LEN);
        // Keep the connection open until the client has read everything.
        let mut rest = Vec::new();
        let _ = conn.set_read_timeout(Some(STALL));
        let _ = conn.read_to_end(&mut rest);
        hash
    });
    let start = Instant::now();
    let received = t.client.run(|| {
        let mut conn = connect(FORWARD_2);
        let hash = receive_hashed(&mut conn, LEN);
        drop(conn);
        hash
    });
    let received = received.expect("client reads 100 MiB from the forward");
    eprintln!("server -> client: {:.1} MB/s", mb_per_s(LEN, start));
    let sent = source
        .join()
        .expect("source thread")
        .expect("source sends 100 MiB");
    assert_eq!(sent, expected_hash(2, LEN));
    assert_eq!(received, sent, "server -> client data differs");
}

/// Echo server in the server namespace: one thread per connection, until EOF.
fn echo_server(ns: &Netns, at: &'static str, conns: usize) -> JoinHandle<()> {
    let listener = listen(ns, at);
    ns.thread(move || {
        let mut workers = Vec::new();
        for _ in 0..conns {
            let Ok((mut conn, _)) = listener.accept() else {
                break;
            };
            workers.push(std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(STALL));
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.join();
        }
    })
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn fifty_concurrent_streams() {
    common::require_root();
    let _serial = serial();
    const STREAMS: usize = 50;
    const LEN: usize = 2 << 20;
    let t = Topology::tunnel(TunnelSpec::default());
    let echo = echo_server(&t.server, FORWARD_TARGET, STREAMS);

    let clients: Vec<JoinHandle<Result<(), String>>> = (0..STREAMS)
        .map(|i| {
            t.client.thread(move || {
                let mut data = vec![0u8; LEN];
                Prng::new(1000 + i as u64).fill(&mut data);
                let mut conn = connect(FORWARD);
                let mut writer = conn.try_clone().map_err(|e| e.to_string())?;
                let _ = writer.set_write_timeout(Some(STALL));
                let expected = data.clone();
                let write = std::thread::spawn(move || writer.write_all(&data));
                conn.set_read_timeout(Some(STALL))
                    .map_err(|e| e.to_string())?;
                let mut back = vec![0u8; LEN];
                conn.read_exact(&mut back)
                    .map_err(|e| format!("stream {i}: read back: {e}"))?;
                write
                    .join()
                    .map_err(|_| format!("stream {i}: writer panicked"))?
                    .map_err(|e| format!("stream {i}: write: {e}"))?;
                if back != expected {
                    let at = back.iter().zip(&expected).position(|(a, b)| a != b);
                    return Err(format!("stream {i}: echo differs at byte {at:?}"));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|c| match c.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("client thread panicked".into()),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} streams failed: {failures:#?}",
        failures.len()
    );
    echo.join().expect("echo server");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn wrong_key_moves_no_bytes() {
    common::require_root();
    let _serial = serial();
    let spec = TunnelSpec {
        client_key: common::data::random_key_hex(),
        ..TunnelSpec::default()
    };
    assert_ne!(spec.client_key, spec.server_key);
    let t = Topology::tunnel(spec);
    let target = listen(&t.server, FORWARD_TARGET);
    target.set_nonblocking(true).expect("nonblocking listener");

    // The forward must not deliver a byte either way: connect fails, or it closes/stays
    // silent without data.
    let got = t.client.run(|| {
        let Ok(mut conn) = TcpStream::connect_timeout(&addr(FORWARD), Duration::from_secs(5))
        else {
            return 0;
        };
        let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 1024];
        match conn.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(_) => 0,
        }
    });
    assert_eq!(got, 0, "a client with the wrong key received {got} bytes");
    // The server drops the wrong key's openings without a word (docs/SECURITY.md).
    assert!(
        wait_for(Duration::from_secs(15), || t
            .counter(Side::Server, "dropped_syn_invalid")
            > 0),
        "server counted no refused opening: {}",
        t.stats(Side::Server)
    );
    assert_eq!(
        t.counter(Side::Server, "frames_out"),
        0,
        "the server answered"
    );
    assert_eq!(t.counter(Side::Server, "handshakes_ok"), 0);
    assert_eq!(t.counter(Side::Server, "streams_opened"), 0);
    match target.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the server dialled the target for an unauthenticated peer {peer}"),
        Err(e) => panic!("accept on the target: {e}"),
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn capture_shows_seq_advancing_and_no_plaintext() {
    common::require_root();
    let _serial = serial();
    const MARKER: &[u8] = b"RAWTUN-E2E-PLAINTEXT-MARKER:0123456789abcdef|";
    const LEN: usize = 4 << 20;
    let t = Topology::tunnel(TunnelSpec::default());
    // Both veths: each direction is complete at least on its receiving side, even if the
    // sender's frames bypass the qdisc layer (and so the sender's taps).
    let client_cap = Capture::start(&t.client, &t.client_if, &t.path("client.pcap"));
    let server_cap = Capture::start(&t.server, &t.server_if, &t.path("server.pcap"));

    let data: Vec<u8> = MARKER.iter().copied().cycle().take(LEN).collect();
    let want = hex_sha(&data);
    let sink = listen(&t.server, FORWARD_TARGET);
    let sink = t.server.thread(move || {
        let (mut conn, _) = sink.accept().expect("the server dials the sink");
        let mut got = vec![0u8; LEN];
        conn.set_read_timeout(Some(STALL)).expect("timeout");
        conn.read_exact(&mut got).map(|()| hex_sha(&got))
    });
    t.client.run(move || {
        let mut conn = connect(FORWARD);
        conn.set_write_timeout(Some(STALL)).expect("timeout");
        conn.write_all(&data).expect("send the marker stream");
        // Hold the connection until the sink has everything (no half-close semantics assumed).
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.read(&mut [0u8; 1]);
    });
    let got = sink
        .join()
        .expect("sink thread")
        .expect("sink reads the marker stream");
    assert_eq!(got, want, "marker stream corrupted in the tunnel");

    let (client_pcap, client_report) = client_cap.stop();
    let (server_pcap, server_report) = server_cap.stop();
    for (name, pcap, report) in [
        ("client veth", &client_pcap, &client_report),
        ("server veth", &server_pcap, &server_report),
    ] {
        let segs = segments(pcap);
        let analysis = analyze(&segs, MARKER);
        eprintln!(
            "{name}: {} frames, data segments {:?}",
            pcap.frames.len(),
            analysis.data_segments
        );
        assert_eq!(
            analysis.marker_hits, 0,
            "{name}: plaintext marker on the wire"
        );
        assert_eq!(
            dropped_by_kernel(report),
            0,
            "{name}: tcpdump dropped frames, seq check impossible: {report}"
        );
        assert!(
            analysis.seq_violations.is_empty(),
            "{name}: seq does not advance by payload length ({} violations): {:#?}",
            analysis.seq_violations.len(),
            &analysis.seq_violations[..analysis.seq_violations.len().min(10)]
        );
        // Not vacuous: the marker stream crossed this veth as data segments, both ways.
        let bytes: u64 = analysis.payload_bytes.values().sum();
        assert!(
            bytes >= LEN as u64,
            "{name}: only {bytes} payload bytes captured"
        );
        assert!(
            analysis.data_segments.len() >= 2,
            "{name}: data segments in both directions expected: {:?}",
            analysis.data_segments
        );
    }
}

fn hex_sha(bytes: &[u8]) -> String {
    common::data::hex(&Sha256::digest(bytes))
}

/// A link without Ethernet headers (what PPP, tun and WireGuard users have): the daemons
/// find the link type themselves and carry 8 MiB each way intact, through the backend
/// under test.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn raw_ip_link_carries_both_directions() {
    common::require_root();
    let _serial = serial();
    const LEN: u64 = 8 << 20;
    let mut t = Topology::pair_tun();
    // The TUN devices' MTU is 1400: the default kcp.mtu (1350) makes 1423-byte packets,
    // which the kernel would refuse to send. The daemon says so and does not start.
    t.write_configs(&TunnelSpec::default());
    let cfg = t.path("server.yaml");
    let out = t.server.exec(&[
        env!("CARGO_BIN_EXE_rawtun"),
        "run",
        "-c",
        cfg.to_str().expect("utf-8 path"),
    ]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "started with a too large mtu: {said}"
    );
    assert!(
        said.contains("transport.kcp.mtu 1350") && said.contains("1327 or less"),
        "{said}"
    );
    let spec = TunnelSpec {
        kcp_yaml: "mtu: 1327\n".into(),
        ..TunnelSpec::default()
    };
    t.apply_firewall(spec.port);
    t.write_configs(&spec);
    t.start_server();
    t.start_client();

    let sink = listen(&t.server, FORWARD_TARGET);
    let sink = t.server.thread(move || {
        let (mut conn, _) = sink.accept().expect("the server dials the sink");
        receive_hashed(&mut conn, LEN)
    });
    let sent = t
        .client
        .run(|| send_seeded(&mut connect(FORWARD), 5, LEN))
        .expect("send into the forward");
    let received = sink.join().expect("sink thread").expect("sink reads");
    assert_eq!(sent, expected_hash(5, LEN));
    assert_eq!(received, sent, "client -> server data differs");

    let source = listen(&t.server, FORWARD_2_TARGET);
    let source = t.server.thread(move || {
        let (mut conn, _) = source.accept().expect("the server dials the source");
        let hash = send_seeded(&mut conn, 6, LEN);
        let mut rest = Vec::new();
        let _ = conn.set_read_timeout(Some(STALL));
        let _ = conn.read_to_end(&mut rest);
        hash
    });
    let received = t.client.run(|| {
        let mut conn = connect(FORWARD_2);
        receive_hashed(&mut conn, LEN)
    });
    let received = received.expect("client reads from the forward");
    let sent = source.join().expect("source thread").expect("source sends");
    assert_eq!(sent, expected_hash(6, LEN));
    assert_eq!(received, sent, "server -> client data differs");
    // The tunnel ran on the TUN devices, not the veth under them.
    let config = std::fs::read_to_string(t.path("server.yaml")).expect("config");
    assert!(config.contains(&format!("\"{}\"", t.server_if)), "{config}");

    // The server's device disappears: its capture can never work again, so the daemon
    // stops with an error (for its supervisor to restart it) instead of running deaf.
    t.remove_tun(Side::Server);
    let status = t
        .wait_exit(Side::Server, Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "the server kept running without its interface:\n{}",
                t.logs()
            )
        });
    assert!(!status.success(), "{status}: {}", t.logs());
}
