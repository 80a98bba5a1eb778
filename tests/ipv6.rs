//! The tunnel over IPv6 end to end (2001:2::/48 inside namespaces): data both ways through a
//! forward, and the server's silence towards IPv6 strangers and replays (IPv6 flow bindings
//! are 37 bytes, not 13: this is their test on the wire).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::attack::{mac, rewrite, segment, Injector, Recorder};
use common::capture::Capture;
use common::{addr, listen, require_root, serial, wait_for, Side, Topology, TunnelSpec};
use rand::{Rng, SeedableRng};
use rawtun::wire::TcpFlags;

const FORWARD: &str = "127.0.0.1:9000";
const TARGET: &str = "127.0.0.1:9001";

/// A random source in 2001:2::/48.
fn random_source_v6(rng: &mut impl Rng) -> SocketAddr {
    let ip = std::net::Ipv6Addr::new(
        0x2001,
        2,
        0,
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
    );
    SocketAddr::new(ip.into(), rng.random_range(1024..65535))
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn ipv6_tunnel_carries_data_and_stays_silent_to_strangers() {
    require_root();
    let _s = serial();
    let mut t = Topology::pair_v6();
    let (client6, server6) = t.v6.expect("an IPv6 pair");
    let spec = TunnelSpec::default();
    t.write_configs(&spec);
    let target = listen(&t.server, TARGET);
    t.start_server();
    let from_client = format!("ip6 and tcp dst port {} and src host {client6}", spec.port);
    let rec = Recorder::start(&t.server, &t.server_if, &from_client);
    t.start_client();
    assert!(
        wait_for(Duration::from_secs(10), || t
            .counter(Side::Client, "sessions_active")
            == 1),
        "no session over IPv6"
    );
    // 16 MiB each way through the forward, hashed.
    const LEN: u64 = 16 << 20;
    let l = target.try_clone().expect("listener");
    let echo = t.server.thread(move || {
        let (mut c, _) = l.accept().expect("accept");
        let got = common::data::receive_hashed(&mut c, LEN).expect("upload");
        let sent = common::data::send_seeded(&mut c, 2, LEN).expect("download");
        (got, sent)
    });
    let (up, down) = t.client.run(move || {
        let mut c = TcpStream::connect(addr(FORWARD)).expect("forward");
        let up = common::data::send_seeded(&mut c, 1, LEN).expect("upload");
        let down = common::data::receive_hashed(&mut c, LEN).expect("download");
        (up, down)
    });
    let (got, sent) = echo.join().expect("target");
    assert_eq!((got, down), (up, sent), "data differs over IPv6");
    let recording = rec.stop();
    // Silence towards IPv6 strangers and replays (the session is live and idle).
    let server: SocketAddr = SocketAddr::new(server6.into(), spec.port);
    let macs = (mac(&t.client_mac), mac(&t.server_mac));
    let file = t.path("v6-silence.pcap");
    let cap = Capture::start_filtered(
        &t.server,
        &t.server_if,
        &file,
        &format!("ip6 and src host {server6} and not icmp6"),
    );
    let iface = t.client_if.clone();
    let sent_junk = t.client.run(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let mut inj = Injector::open(&iface);
        let mut n = 0;
        for _ in 0..300 {
            let src = random_source_v6(&mut rng);
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
            let junk: Vec<u8> = (0..rng.random_range(0..=1200))
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
            n += 2;
        }
        for f in &recording {
            inj.send(&rewrite(f, |r, _| r.src = random_source_v6(&mut rng)));
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    let (pcap, _) = cap.stop();
    assert!(sent_junk > 600);
    assert!(
        pcap.frames.is_empty(),
        "the server answered {} IPv6 packets",
        pcap.frames.len()
    );
    // The stats file is rewritten once a second: wait for the flush after the attack.
    let counted = wait_for(Duration::from_secs(5), || {
        t.counter(Side::Server, "dropped_syn_invalid") >= 300
    });
    assert!(counted, "refusals not counted: {}", t.stats(Side::Server));
}
