//! Self-test of the namespace harness in `tests/common/` (root only): topologies come up,
//! threads inside the namespaces talk TCP across the veth, captures parse, and everything
//! is gone after drop — also after a panic.

mod common;

use common::capture::{analyze, segments, Capture};
use common::data::{expected_hash, receive_hashed, send_seeded};
use common::{netns_list, netns_prefix, wait_for, Netns, Topology};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

fn gone(pid: u32) -> bool {
    wait_for(Duration::from_secs(5), || {
        // A reaped process has no /proc entry; an unreaped zombie is dead too.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    })
}

/// Kernel TCP between threads in the two namespaces: 4 MiB one way (hash checked), an echo
/// back, and a tcpdump capture of it that the capture analysis must read as ordered,
/// plaintext TCP (the positive control of the e2e capture test).
fn echo_and_capture(t: &Topology) {
    const LEN: u64 = 4 << 20;
    const MARKER: &[u8] = b"HARNESS-PLAINTEXT-MARKER-0123456789";
    let server_addr = SocketAddr::from((t.server_ip, 7000));
    let capture = Capture::start(&t.client, &t.client_if, &t.path("echo.pcap"));
    let listener = t
        .server
        .run(move || TcpListener::bind(server_addr).expect("bind in server namespace"));
    let server = t.server.thread(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let hash = receive_hashed(&mut conn, LEN).expect("receive 4 MiB");
        let mut buf = [0u8; MARKER.len()];
        conn.read_exact(&mut buf).expect("read marker");
        conn.write_all(&buf).expect("echo marker");
        hash
    });
    let client = t.client.thread(move || {
        let mut conn = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5))
            .expect("connect across the veth");
        let sent = send_seeded(&mut conn, 7, LEN).expect("send 4 MiB");
        conn.write_all(MARKER).expect("send marker");
        let mut back = [0u8; MARKER.len()];
        conn.read_exact(&mut back).expect("read echo");
        assert_eq!(&back, MARKER);
        sent
    });
    let sent = client.join().expect("client thread");
    let received = server.join().expect("server thread");
    assert_eq!(sent, expected_hash(7, LEN));
    assert_eq!(sent, received);

    let (pcap, report) = capture.stop();
    let analysis = analyze(&segments(&pcap), MARKER);
    assert!(
        analysis.seq_violations.is_empty() || common::capture::dropped_by_kernel(&report) > 0,
        "kernel TCP seq must advance by payload length: {:?}",
        &analysis.seq_violations[..analysis.seq_violations.len().min(5)]
    );
    let bytes: u64 = analysis.payload_bytes.values().sum();
    assert!(
        bytes >= LEN,
        "capture holds {bytes} payload bytes: {analysis:?}"
    );
    assert!(
        analysis.data_segments.len() == 2,
        "two directions: {analysis:?}"
    );
    assert!(
        analysis.marker_hits >= 2,
        "plaintext marker visible both ways"
    );
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn harness_self_test() {
    common::require_root();
    // 1. A topology: names, link, addresses, TCP across the veth, capture tooling.
    let t = Topology::pair();
    let names = [t.client.name().to_owned(), t.server.name().to_owned()];
    let listed = netns_list();
    for name in &names {
        assert!(name.starts_with(&netns_prefix()), "{name} carries the pid");
        assert!(listed.contains(name), "{name} exists");
    }
    assert!(t.client_ip.octets()[..2] == [198, 18] || t.client_ip.octets()[..2] == [198, 19]);
    let mac = t
        .client
        .exec_ok(&["cat", &format!("/sys/class/net/{}/address", t.client_if)]);
    assert_eq!(mac.trim(), t.client_mac);
    echo_and_capture(&t);

    // A second topology alongside: distinct names and subnet, each reaches its own peer.
    let other = Topology::pair();
    assert_ne!(other.client.name(), t.client.name());
    assert_ne!(other.server_ip, t.server_ip);
    for topo in [&t, &other] {
        let ip = topo.server_ip.to_string();
        topo.client.exec_ok(&["ping", "-c", "1", "-W", "2", &ip]);
    }
    drop(other);

    // 2. Drop kills guarded children and strays started inside, and deletes both namespaces.
    let mut guarded = t.server.spawn(&["sleep", "300"], None);
    let stray = t
        .client
        .exec_ok(&["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
        .trim()
        .parse::<u32>()
        .expect("sh printed the pid");
    drop(t); // the child guard is still alive: the namespace guard must kill it
    assert!(
        wait_for(Duration::from_secs(5), || guarded.exited().is_some()),
        "spawned child survived the drop"
    );
    assert!(gone(stray), "stray process {stray} survived the drop");
    let listed = netns_list();
    for name in &names {
        assert!(!listed.contains(name), "{name} still exists after drop");
    }

    // 3. Cleanup also happens when the test body panics.
    let mut panicked_names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("p");
        panicked_names.push(ns.name().to_owned());
        let _child = ns.spawn(&["sleep", "300"], None);
        panic!("deliberate panic inside a namespace test");
    }));
    assert!(result.is_err());
    let listed = netns_list();
    assert!(
        !listed.contains(&panicked_names[0]),
        "namespace survived a panic"
    );

    // 4. Nothing of this process is left.
    let ours: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&netns_prefix()))
        .collect();
    assert!(ours.is_empty(), "namespaces left behind: {ours:?}");
    assert!(!Path::new(&format!("/run/netns/{}", names[0])).exists());
}
