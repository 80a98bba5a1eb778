//! Operator commands against live daemons in network namespaces (root only): `rawtun ping`
//! (RTT and loss; "wrong key" told apart from "no answer"), `rawtun status` and the
//! Prometheus endpoint (counters move during a transfer and stay when a session ends),
//! SIGHUP reload.

mod common;

use common::{serial, wait_for, Side, Topology, TunnelSpec};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::time::Duration;

const METRICS: &str = "127.0.0.1:9464";

fn rawtun(t: &Topology, side: Side, args: &[&str]) -> Output {
    let mut all = vec![env!("CARGO_BIN_EXE_rawtun")];
    all.extend_from_slice(args);
    t.ns(side).exec(&all)
}

/// The client config with a different `transport.kcp.key`.
fn with_key(yaml: &str, key: &str) -> String {
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("key:"))
        .expect("key line");
    yaml.replace(line, &format!("    key: \"{key}\""))
}

/// `rawtun ping -c CONFIG ARGS...` in the client namespace.
fn ping(t: &Topology, config: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["ping", "-c", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    rawtun(t, Side::Client, &all)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds a pair with both daemons; the client config gets `extra` YAML appended.
fn start(extra: &str) -> Topology {
    let mut t = Topology::pair();
    let spec = TunnelSpec::default();
    let (_, client) = t.write_configs(&spec);
    let mut yaml = std::fs::read_to_string(&client).expect("client config");
    yaml += extra;
    std::fs::write(&client, yaml).expect("write client config");
    t.apply_firewall(spec.port);
    t.start_server();
    t.start_client();
    t
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn ping_reports_rtt_and_says_why_a_silent_server_may_not_answer() {
    common::require_root();
    let _s = serial();
    let t = start("");
    let cfg = t.path("client.yaml");
    let out = ping(&t, &cfg, &["-n", "3", "-i", "200"]);
    let s = text(&out);
    assert!(out.status.success(), "ping failed: {s}");
    assert!(s.contains("3 probes sent, 3 received, 0.0% loss"), "{s}");
    assert!(s.contains("rtt min/avg/max"), "{s}");

    // Same server, wrong key: the server answers nothing at all (it cannot tell a wrong
    // key from a prober), so ping names the key among the causes.
    let yaml = std::fs::read_to_string(&cfg).expect("config");
    let wrong = t.path("wrong.yaml");
    std::fs::write(&wrong, with_key(&yaml, "not-the-right-key")).expect("write");
    let out = ping(&t, &wrong, &["-n", "1", "-W", "4"]);
    let s = text(&out);
    assert!(!out.status.success(), "wrong key must fail: {s}");
    assert!(s.contains("no answer") && s.contains("the key"), "{s}");
    let refused = wait_for(Duration::from_secs(5), || {
        t.counter(Side::Server, "dropped_syn_invalid") > 0
    });
    assert!(refused, "the wrong key's SYNs were not counted");

    // No server at that address: no answer at all.
    let nowhere = t.path("nowhere.yaml");
    let server_ip = t.server_ip.to_string();
    std::fs::write(
        &nowhere,
        yaml.replace(&format!("{server_ip}:"), "198.18.255.254:"),
    )
    .expect("write");
    let out = ping(&t, &nowhere, &["-n", "1", "-W", "3"]);
    let s = text(&out);
    assert!(!out.status.success(), "{s}");
    assert!(s.contains("no answer"), "{s}");
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in:\n{body}"))
}

fn scrape(t: &Topology) -> String {
    t.client.run(|| {
        let mut c = TcpStream::connect(METRICS).expect("metrics endpoint");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        c.read_to_string(&mut body).expect("response");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    })
}

fn status_json(t: &Topology) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rawtun"))
        .args(["status", "--socket", "/run/rawtun/client.sock", "--json"])
        .output()
        .expect("run rawtun status");
    assert!(out.status.success(), "status failed: {}", text(&out));
    let _ = t;
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn status_and_metrics_show_counters_moving_during_a_transfer() {
    common::require_root();
    let _s = serial();
    let mut t = start(&format!("metrics:\n  listen: \"{METRICS}\"\n"));
    let sink = t
        .server
        .run(|| TcpListener::bind("127.0.0.1:9001").expect("bind sink"));
    // The stream stays open across both samples: the sender sends a first part, waits to be
    // told, then sends the second part (no timing assumption about how fast it goes).
    const PART: usize = 8 << 20;
    let receiver = t.server.thread(move || {
        let (mut c, _) = sink.accept().expect("accept");
        let mut buf = vec![0u8; PART * 2];
        c.read_exact(&mut buf).expect("receive");
        buf
    });
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let sender = t.client.thread(move || {
        let data: Vec<u8> = (0..PART * 2).map(|i| (i % 251) as u8).collect();
        let mut c = TcpStream::connect("127.0.0.1:9000").expect("forward");
        c.write_all(&data[..PART]).expect("send part 1");
        go_rx.recv().expect("go");
        c.write_all(&data[PART..]).expect("send part 2");
        data
    });
    assert!(wait_for(Duration::from_secs(20), || t
        .counter(Side::Client, "bytes_out")
        > (PART as u64) / 2));
    let s1 = status_json(&t);
    let m1 = scrape(&t);
    go_tx.send(()).expect("sender waits");
    assert!(wait_for(Duration::from_secs(20), || {
        status_json(&t)["totals"]["bytes_out"].as_u64().unwrap_or(0)
            > s1["totals"]["bytes_out"].as_u64().unwrap_or(0) + (PART as u64) / 2
    }));
    let s2 = status_json(&t);
    let m2 = scrape(&t);
    let sessions = s2["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{s2}");
    assert_eq!(sessions[0]["phase"], "established");
    let peer: SocketAddr = sessions[0]["peer"]
        .as_str()
        .expect("peer")
        .parse()
        .expect("addr");
    assert_eq!(peer.ip().to_string(), t.server_ip.to_string());
    // s1 was taken while the sender held its stream open.
    assert!(s1["totals"]["streams_active"].as_u64() >= Some(1), "{s1}");
    assert!(
        metric(&m2, "rawtun_bytes_out_total") > metric(&m1, "rawtun_bytes_out_total"),
        "metrics did not move"
    );
    assert_eq!(metric(&m2, "rawtun_sessions_active"), 1);
    let human = std::process::Command::new(env!("CARGO_BIN_EXE_rawtun"))
        .args(["status", "--socket", "/run/rawtun/client.sock"])
        .output()
        .expect("status");
    assert!(text(&human).contains("established"), "{}", text(&human));
    // The packet backend and its capture rings (AF_PACKET: one per worker) are shown, and
    // the rings' frame counters moved with the transfer.
    assert_eq!(s2["backend"], common::backend(), "{s2}");
    let rings = |s: &serde_json::Value| -> u64 {
        s["capture"]
            .as_array()
            .expect("capture rings")
            .iter()
            .map(|r| r["received"].as_u64().expect("received"))
            .sum()
    };
    assert!(
        rings(&s2) > rings(&s1),
        "capture counters did not move: {s1} {s2}"
    );
    assert!(metric(&m2, "rawtun_capture_received_total") > 0);
    // Each packet worker has its own row: frames in, drops and send errors.
    let workers = s2["workers"].as_array().expect("per-worker counters");
    assert!(!workers.is_empty(), "{s2}");
    let worker_frames: u64 = workers
        .iter()
        .map(|w| w["frames_in"].as_u64().expect("frames_in"))
        .sum();
    assert_eq!(
        worker_frames,
        s2["totals"]["frames_in"].as_u64().unwrap(),
        "{s2}"
    );
    assert!(worker_frames > 0, "{s2}");
    assert!(
        text(&human).contains(&format!("backend {}", common::backend())),
        "{}",
        text(&human)
    );
    assert!(sender.join().expect("sender") == receiver.join().expect("receiver"));

    // Counters only go up when a session ends (issue 11). The client's: the server stops
    // (its close notice ends the client's session) and the client keeps running.
    let (m3, c3) = (scrape(&t), t.stats(Side::Client));
    assert!(t.stop(Side::Server).success());
    assert!(
        wait_for(Duration::from_secs(10), || t
            .counter(Side::Client, "sessions_active")
            == 0),
        "the client did not see its session end"
    );
    counters_kept(&c3, &t.stats(Side::Client), "client stats file");
    prometheus_counters_kept(&m3, &scrape(&t));
    // The server's: it is back, the client reconnects, then the client stops.
    t.start_server();
    let both_up = || {
        t.counter(Side::Client, "sessions_active") == 1
            && t.counter(Side::Server, "sessions_active") == 1
    };
    assert!(wait_for(Duration::from_secs(30), both_up), "no new session");
    let s4 = t.stats(Side::Server);
    assert!(t.stop(Side::Client).success());
    assert!(
        wait_for(Duration::from_secs(10), || t
            .counter(Side::Server, "sessions_active")
            == 0),
        "the server did not see the session end"
    );
    counters_kept(&s4, &t.stats(Side::Server), "server stats file");
}

/// Every counter of a stats file (every number but the gauges) is no lower in `after`.
fn counters_kept(before: &serde_json::Value, after: &serde_json::Value, what: &str) {
    let gauges = rawtun::daemon::Snapshot::GAUGES;
    let mut moved = 0;
    for (key, b) in before.as_object().expect("a stats object") {
        let Some(b) = b.as_u64().filter(|_| !gauges.contains(&key.as_str())) else {
            continue;
        };
        let a = after[key].as_u64();
        assert!(
            a.is_some_and(|a| a >= b),
            "{what}: {key} went from {b} to {a:?}\nbefore: {before}\nafter: {after}"
        );
        moved += usize::from(b > 0);
    }
    assert!(
        moved >= 5,
        "{what}: only {moved} counters above zero: {before}"
    );
}

/// Every `*_total` series of `before` is in `after` and no lower, but the per-session
/// ones (their session is gone).
fn prometheus_counters_kept(before: &str, after: &str) {
    let series = |body: &str| -> std::collections::HashMap<String, u64> {
        body.lines()
            .filter(|l| l.starts_with("rawtun_") && !l.starts_with("rawtun_session_"))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let name = key.split('{').next()?;
                Some((key.to_string(), value.parse().ok()?)).filter(|_| name.ends_with("_total"))
            })
            .collect()
    };
    let (b, a) = (series(before), series(after));
    assert!(b.len() >= 10, "{before}");
    for (key, v) in &b {
        let now = a.get(key);
        assert!(
            now.is_some_and(|n| n >= v),
            "{key} went from {v} to {now:?}\n{after}"
        );
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn sighup_reload_adds_a_forward_without_dropping_the_session() {
    common::require_root();
    let _s = serial();
    let mut t = start("");
    assert!(wait_for(Duration::from_secs(10), || t
        .counter(Side::Client, "sessions_active")
        == 1));
    // Add a third forward to the config and reload.
    let cfg = t.path("client.yaml");
    let yaml = std::fs::read_to_string(&cfg).expect("config").replace(
        "forward:\n",
        "forward:\n  - listen: \"127.0.0.1:9200\"\n    target: \"127.0.0.1:9001\"\n    protocol: tcp\n",
    );
    std::fs::write(&cfg, yaml).expect("write");
    let echo = t
        .server
        .run(|| TcpListener::bind("127.0.0.1:9001").expect("bind"));
    let echo = t.server.thread(move || {
        let (mut c, _) = echo.accept().expect("accept");
        let mut b = [0u8; 5];
        c.read_exact(&mut b).expect("read");
        c.write_all(&b).expect("write");
    });
    let pid = t.client.pids();
    assert!(!pid.is_empty());
    for p in pid {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &p.to_string()])
            .status();
    }
    assert!(
        wait_for(Duration::from_secs(10), || t.client.listening(9200)),
        "new forward not listening"
    );
    let got = t.client.run(|| {
        let mut c = TcpStream::connect("127.0.0.1:9200").expect("new forward");
        c.write_all(b"hello").expect("write");
        let mut b = [0u8; 5];
        c.read_exact(&mut b).expect("read");
        b
    });
    assert_eq!(&got, b"hello");
    echo.join().expect("echo");
    assert_eq!(
        t.counter(Side::Client, "handshakes_ok"),
        1,
        "the session was not kept"
    );
    let status = t.stop(Side::Client);
    assert!(status.success());
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn dump_shows_flows_and_which_handshakes_authenticate() {
    common::require_root();
    let _s = serial();
    let t = start("");
    let server_cfg = t.path("server.yaml");
    let log = t.path("dump.log");
    let dump = t.server.spawn(
        &[
            env!("CARGO_BIN_EXE_rawtun"),
            "dump",
            "-c",
            server_cfg.to_str().expect("utf-8"),
            "-n",
            "400",
        ],
        Some(&log),
    );
    assert!(wait_for(Duration::from_secs(10), || dump
        .log_text()
        .contains("rawtun dump:")));
    // A fresh session (ping makes its own handshake) and a wrong-key attempt.
    let cfg = t.path("client.yaml");
    let out = ping(&t, &cfg, &["-n", "2", "-i", "100"]);
    assert!(out.status.success(), "{}", text(&out));
    let yaml = std::fs::read_to_string(&cfg).expect("config");
    let wrong = t.path("wrong.yaml");
    std::fs::write(&wrong, with_key(&yaml, "wrong")).expect("write");
    let _ = ping(&t, &wrong, &["-n", "1", "-W", "2"]);
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = dump.log_text();
            s.contains("SYN: opening proof valid")
                && s.contains("msg1: mac1 valid")
                && s.contains("client shared")
                && s.contains("SYN: no valid opening proof")
                && s.contains("sealed session packet")
        }),
        "dump output:\n{}",
        dump.log_text()
    );
    let s = dump.log_text();
    let client_ip = t.client_ip.to_string();
    assert!(
        s.lines().any(|l| l.contains(&format!("{client_ip}:"))
            && l.contains("[S]")
            && l.contains("seq")),
        "no SYN line from the client:\n{s}"
    );
    dump.signal("TERM");
}
