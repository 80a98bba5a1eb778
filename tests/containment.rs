//! The server contained and honest, end to end in network namespaces with real daemons
//! (root only):
//!
//! - a server with the default target policy refuses TCP to its own loopback, unspecified
//!   addresses, its own address, link-local metadata and a name that resolves to loopback
//!   with the SOCKS5 "not allowed" reply, drops UDP to the same (counted), and reaches an
//!   explicitly allowed `127.0.0.1:PORT`;
//! - a target that sends 1 MB and then resets reaches the SOCKS5 client as a reset (and
//!   `curl` fails), while the same transfer ending with a FIN stays complete; an
//!   application's reset reaches the target as a reset; half-close works.
//!
//! The flood test (one client against the per-client limits) is in `tests/limits.rs`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{addr, serial, socks5, Side, Topology, TunnelSpec};

const SOCKS5: &str = "127.0.0.1:1080";
/// The one loopback service the policy test opens.
const ALLOWED: u16 = 7001;
/// A loopback service the default policy must keep closed.
const CLOSED: u16 = 7002;

/// TCP and UDP echo services on `[::]:port` (dual stack) in `ns`, serving until the
/// namespace goes away.
fn echo_services(ns: &common::Netns, port: u16) {
    let tcp =
        ns.run(move || TcpListener::bind(("::", port)).expect("bind the TCP echo (dual stack)"));
    let udp = ns.run(move || UdpSocket::bind(("::", port)).expect("bind the UDP echo"));
    std::thread::spawn(move || {
        for conn in tcp.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
}

/// Starts the two daemons of `t` with configs from `spec` (after the caller has written
/// the namespaces' /etc files, which `ip netns exec` mounts only for programs it starts).
fn start(t: &mut Topology, spec: &TunnelSpec) {
    t.apply_firewall(spec.port);
    t.write_configs(spec);
    t.start_server();
    t.start_client();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn default_policy_refuses_the_server_itself_and_its_networks() {
    common::require_root();
    let _s = serial();
    let mut t = Topology::pair();
    // A name that resolves to loopback on the server, from its /etc/hosts; no nameserver
    // answers there.
    t.server
        .set_etc("hosts", "127.0.0.1 localhost\n127.0.0.1 loop.test\n");
    t.server.set_etc("resolv.conf", "nameserver 127.0.0.1\n");
    let spec = TunnelSpec {
        server_yaml: format!("targets:\n  allow: [\"public\", \"127.0.0.1:{ALLOWED}\"]\n"),
        forwards: Vec::new(),
        ..TunnelSpec::default()
    };
    start(&mut t, &spec);
    echo_services(&t.server, ALLOWED);
    echo_services(&t.server, CLOSED);
    let server_ip = t.server_ip.to_string();
    let refused = [
        ("127.0.0.1", CLOSED),
        ("0.0.0.0", CLOSED),
        ("::", CLOSED),
        ("::1", CLOSED),
        (server_ip.as_str(), CLOSED),
        ("169.254.169.254", 80),
        ("loop.test", CLOSED),
        ("::ffff:127.0.0.1", CLOSED),
    ];

    // TCP: each one refused with reply 2, "connection not allowed by ruleset".
    let proxy = addr(SOCKS5);
    let cases: Vec<(String, u16)> = refused.iter().map(|(h, p)| (h.to_string(), *p)).collect();
    let got = t.client.run(move || {
        cases
            .iter()
            .map(|(host, port)| (host.clone(), socks5::connect(proxy, host, *port).err()))
            .collect::<Vec<_>>()
    });
    for (host, reply) in &got {
        assert_eq!(*reply, Some(2), "TCP to {host}: SOCKS5 reply {reply:?}");
    }
    // The explicitly allowed service works.
    let echoed = t.client.run(move || {
        let mut c = socks5::connect(proxy, "127.0.0.1", ALLOWED).expect("allowed target");
        c.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).expect("echo");
        buf
    });
    assert_eq!(&echoed, b"ping");
    let n = refused.len() as u64;
    assert!(
        common::wait_for(Duration::from_secs(5), || t
            .counter(Side::Server, "targets_denied")
            >= n),
        "every refusal is counted: {}",
        t.stats(Side::Server)
    );
    assert_eq!(t.counter(Side::Server, "targets_denied"), n);

    // UDP through SOCKS5 UDP ASSOCIATE: the same destinations are dropped and counted, the
    // allowed one answers.
    let dests: Vec<(String, u16)> = refused.iter().map(|(h, p)| (h.to_string(), *p)).collect();
    let answered = t.client.run(move || {
        let (control, relay) = socks5::associate(proxy);
        let app = UdpSocket::bind("127.0.0.1:0").expect("bind");
        app.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        for (host, port) in &dests {
            let mut d = socks5::udp_header(host, *port);
            d.extend_from_slice(b"refused?");
            app.send_to(&d, relay).expect("send");
        }
        let mut stray = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = app.recv_from(&mut buf) {
            stray.push(buf[..n].to_vec());
        }
        let mut d = socks5::udp_header("127.0.0.1", ALLOWED);
        d.extend_from_slice(b"allowed");
        let mut reply = None;
        for _ in 0..10 {
            app.send_to(&d, relay).expect("send");
            if let Ok((n, _)) = app.recv_from(&mut buf) {
                reply = Some(socks5::udp_parse(&buf[..n]).1.to_vec());
                break;
            }
        }
        drop(control);
        (stray, reply)
    });
    assert!(answered.0.is_empty(), "no refused destination answered");
    assert_eq!(answered.1.as_deref(), Some(&b"allowed"[..]));
    assert!(
        common::wait_for(Duration::from_secs(5), || t
            .counter(Side::Server, "udp_dropped_denied")
            >= n),
        "every dropped datagram is counted: {}",
        t.stats(Side::Server)
    );
    assert_eq!(t.counter(Side::Server, "udp_dropped_denied"), n);
}

/// An HTTP/1.0 server whose bodies end with the connection (no Content-Length, so a client
/// can tell a complete body only from a clean close): `GET /fin` sends 1 MB and closes,
/// `GET /rst` sends 1 MB and resets.
const HTTP_TARGET: &str = r#"
import socket, struct, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(16)
def serve(c):
    head = b''
    while b'\r\n\r\n' not in head:
        d = c.recv(4096)
        if not d:
            return
        head += d
    c.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n')
    c.sendall(b'x' * (1 << 20))
    if head.startswith(b'GET /rst'):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,)).start()
"#;

const HTTP_PORT: u16 = 7101;
const SINK_PORT: u16 = 7102;

/// Reads until EOF or an error: the bytes and the error kind (None for a clean EOF).
fn read_all(c: &mut TcpStream) -> (usize, Option<ErrorKind>) {
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (total, None),
            Ok(n) => total += n,
            Err(e) => return (total, Some(e.kind())),
        }
    }
}

fn curl(t: &Topology, path: &str) -> (Option<i32>, String) {
    let url = format!("http://127.0.0.1:{HTTP_PORT}{path}");
    let out = t.client.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        "--socks5-hostname",
        SOCKS5,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ]);
    (
        out.status.code(),
        format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_reset_stays_a_reset_and_a_clean_close_stays_complete() {
    common::require_root();
    let _s = serial();
    let t = Topology::tunnel(TunnelSpec::default());
    let port = HTTP_PORT.to_string();
    let _http = t.server.spawn(&["python3", "-c", HTTP_TARGET, &port], None);
    assert!(
        common::wait_for(Duration::from_secs(10), || t.server.listening(HTTP_PORT)),
        "the HTTP target listens"
    );
    let proxy = addr(SOCKS5);

    // 1 MB then FIN: complete, EOF; curl succeeds with every byte.
    let (n, err) = t.client.run(move || {
        let mut c = socks5::connect(proxy, "127.0.0.1", HTTP_PORT).expect("connect");
        c.write_all(b"GET /fin HTTP/1.0\r\n\r\n").expect("request");
        read_all(&mut c)
    });
    assert_eq!(err, None, "a clean close arrives as EOF");
    assert!(n > 1 << 20, "all of the body: {n}");
    let (code, out) = curl(&t, "/fin");
    assert_eq!(code, Some(0), "curl of a complete body: {out}");
    assert!(out.starts_with("1048576"), "{out}");

    // 1 MB then RST: the client sees a reset, not EOF; curl exits with an error.
    let (n, err) = t.client.run(move || {
        let mut c = socks5::connect(proxy, "127.0.0.1", HTTP_PORT).expect("connect");
        c.write_all(b"GET /rst HTTP/1.0\r\n\r\n").expect("request");
        read_all(&mut c)
    });
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionReset),
        "the target's reset after {n} bytes"
    );
    let (code, out) = curl(&t, "/rst");
    assert_ne!(
        code,
        Some(0),
        "curl must not take a cut-off body as complete: {out}"
    );

    // The other way: the application resets, the target sees a reset; and half-close: the
    // application finishes sending, the target answers after the FIN.
    let sink = t
        .server
        .run(|| TcpListener::bind(("127.0.0.1", SINK_PORT)).expect("bind the sink"));
    let target = t.server.thread(move || {
        let (mut a, _) = sink.accept().expect("accept");
        let first = read_all(&mut a);
        let (mut b, _) = sink.accept().expect("accept");
        let mut req = Vec::new();
        b.read_to_end(&mut req).expect("read to the FIN");
        b.write_all(&req).expect("answer after the client's FIN");
        (first, req.len())
    });
    t.client.run(move || {
        let c = socks5::connect(proxy, "127.0.0.1", SINK_PORT).expect("connect");
        let mut c = {
            let mut c = c;
            c.write_all(&[1u8; 100_000]).expect("write");
            c
        };
        c.flush().expect("flush");
        // SO_LINGER 0 through tokio (std has no stable setter), then close: an RST.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            c.set_nonblocking(true).expect("nonblocking");
            let s = tokio::net::TcpStream::from_std(c).expect("tokio stream");
            s.set_zero_linger().expect("linger");
            drop(s);
        });
        let mut c = socks5::connect(proxy, "127.0.0.1", SINK_PORT).expect("connect");
        c.write_all(b"half").expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("FIN");
        let mut back = Vec::new();
        c.read_to_end(&mut back)
            .expect("the answer after our FIN, then EOF");
        assert_eq!(back, b"half");
    });
    let ((_, first_err), half) = target.join().expect("target");
    assert_eq!(
        first_err,
        Some(ErrorKind::ConnectionReset),
        "the application's reset reaches the target"
    );
    assert_eq!(half, 4);
}
