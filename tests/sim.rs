//! Whole protocol stack (fake TCP + Noise + AEAD + KCP + mux) between a client
//! [`Connection`] and a server [`Listener`] over a seeded lossy in-memory network, in virtual
//! time: no sleeping, deterministic for a seed, seconds of wall time for minutes of network
//! time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rawtun::crypto::{Cipher, Psk};
use rawtun::endpoint::{
    ConnConfig, ConnEvent, Connection, DatagramError, Listener, ListenerEvent, Phase,
};
use rawtun::faketcp::{FlowAddrs, FlowConfig};
use rawtun::io::mem::{LinkModel, MemNetwork};
use rawtun::kcp::KcpConfig;
use rawtun::mux::{MuxConfig, MuxEvent, StreamId};
use rawtun::wire::{parse_frame, LinkType};

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn client_addr() -> SocketAddr {
    "198.18.0.1:40000".parse().unwrap()
}
fn server_addr() -> SocketAddr {
    "198.18.0.2:9999".parse().unwrap()
}

fn conn_cfg(key: &str) -> ConnConfig {
    ConnConfig {
        flow: FlowConfig::default(),
        cipher: Cipher::Aes256Gcm,
        psk: Arc::new(Psk::from_bytes(blake_like(key))),
        kcp: KcpConfig {
            nodelay: true,
            interval_ms: 10,
            resend: 2,
            nocongestion: true,
            mtu: 1350,
            sndwnd: 4096,
            rcvwnd: 4096,
            wdelay: false,
            acknodelay: true,
            rate_cap: true,
        },
        mux: MuxConfig {
            stream_window: 8 << 20,
            session_window: 8 << 20,
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..MuxConfig::default()
        },
        handshake_timeout: Duration::from_secs(30),
    }
}

/// A fixed 32-byte key from a label (tests only; the daemon derives keys with Argon2).
fn blake_like(label: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in label.bytes().enumerate() {
        k[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    k
}

/// A link that only delays (no loss, reordering or duplication).
fn clean_link(delay_ms: u64, seed: u64) -> LinkModel {
    LinkModel {
        loss: 0.0,
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::ZERO,
        reorder: 0.0,
        duplicate: 0.0,
        mtu: 1514,
        seed,
    }
}

/// Deterministic test data: byte `i` of stream `s`.
fn pattern(s: u64, i: u64) -> u8 {
    let x = (i ^ (s << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

struct Sim {
    now: Instant,
    net: MemNetwork,
    client: Connection,
    server: Listener,
    buf: Vec<u8>,
    rng: u64,
}

impl Sim {
    fn new(model: LinkModel, client_key: &str, server_key: &str) -> Sim {
        let now = Instant::now();
        let client = Connection::client(
            conn_cfg(client_key),
            FlowAddrs {
                local: client_addr(),
                remote: server_addr(),
                local_mac: CLIENT_MAC,
                remote_mac: SERVER_MAC,
            },
            0x1234_5678,
            777,
            100,
            42,
            now,
        )
        .expect("handshake start");
        let server = Listener::new(conn_cfg(server_key), server_addr(), SERVER_MAC, None, 16);
        let mut rev = model.clone();
        rev.seed ^= 0xdead_beef;
        Sim {
            now,
            net: MemNetwork::new(model, rev),
            client,
            server,
            buf: vec![0; rawtun::endpoint::MAX_FRAME],
            rng: 0x5eed,
        }
    }

    /// One round: deliver due frames, run timers, transmit. Returns events of both sides.
    fn step(&mut self, client_ev: &mut Vec<ConnEvent>, server_ev: &mut Vec<ListenerEvent>) {
        let now = self.now;
        while let Some((to, frame)) = self.net.poll_deliver(now) {
            let parsed = parse_frame(LinkType::Ethernet, &frame).expect("sim frames parse");
            if to == 1 {
                let rng = &mut self.rng;
                let mut seed = move || {
                    *rng ^= *rng << 13;
                    *rng ^= *rng >> 7;
                    *rng ^= *rng << 17;
                    *rng as u32
                };
                self.server.handle_frame(&parsed, now, &mut seed);
            } else {
                self.client.handle_frame(&parsed, now);
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.server.handle_timeout(now, server_ev);
        while let Some(r) = self.client.poll_transmit(now, &mut self.buf) {
            self.net.send(now, 0, &self.buf[r]);
        }
        let buf = &mut self.buf;
        let net = &mut self.net;
        self.server.connections_mut().for_each(|(_, c)| {
            while let Some(r) = c.poll_transmit(now, buf) {
                net.send(now, 1, &buf[r]);
            }
        });
        while let Some(e) = self.client.poll_event() {
            client_ev.push(e);
        }
        self.server.poll_events(server_ev);
    }

    /// Runs until the client's session is up (5 s of virtual time at most).
    fn establish(&mut self, cev: &mut Vec<ConnEvent>, sev: &mut Vec<ListenerEvent>) {
        let deadline = self.now + Duration::from_secs(5);
        while self.client.phase() != Phase::Established {
            assert!(self.now < deadline, "no session");
            self.step(cev, sev);
            self.advance();
        }
    }

    /// Moves virtual time to the next thing that is due.
    fn advance(&mut self) {
        let next = [
            self.net.next_delivery(),
            self.client.poll_timeout(),
            self.server.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let floor = self.now + Duration::from_micros(100);
        self.now = match next {
            Some(t) if t > floor => t,
            _ => floor,
        };
    }
}

/// Sends `total` bytes on one stream client → server through `model`; returns virtual time
/// taken and checks every byte.
fn transfer(model: LinkModel, total: u64) -> Duration {
    let mut sim = Sim::new(model, "k", "k");
    let start = sim.now;
    let mut stream: Option<StreamId> = None;
    let mut credit: i64 = 1 << 20;
    let mut written = 0u64;
    let mut received = 0u64;
    let mut finished = false;
    let mut cev = Vec::new();
    let mut sev = Vec::new();
    let mut chunk = Vec::with_capacity(64 * 1024);
    let limit = start + Duration::from_secs(600);
    while !finished {
        assert!(
            sim.now < limit,
            "transfer stalled: {received} of {total} bytes"
        );
        sim.step(&mut cev, &mut sev);
        for e in cev.drain(..) {
            match e {
                ConnEvent::Established => {
                    stream = Some(sim.client.open_stream(b"sim").expect("open stream"));
                }
                ConnEvent::Stream(MuxEvent::Sent { bytes, .. }) => credit += bytes as i64,
                ConnEvent::SessionLost(r) => panic!("client session lost: {r:?}"),
                _ => {}
            }
        }
        for ListenerEvent { peer, event } in sev.drain(..) {
            match event {
                ConnEvent::Stream(MuxEvent::Opened { payload, .. }) => {
                    assert_eq!(payload, b"sim");
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    for (i, b) in data.iter().enumerate() {
                        let want = pattern(1, received + i as u64);
                        assert_eq!(*b, want, "byte {} differs", received + i as u64);
                    }
                    received += data.len() as u64;
                    let conn = sim.server.connection_mut(&peer).expect("server conn");
                    conn.stream_consumed(id, data.len());
                }
                ConnEvent::Stream(MuxEvent::Finished { .. }) => {
                    assert_eq!(received, total);
                    finished = true;
                }
                ConnEvent::SessionLost(r) => panic!("server session lost: {r:?}"),
                _ => {}
            }
        }
        if let Some(id) = stream {
            while credit > 0 && written < total {
                let n = (64 * 1024).min(total - written).min(credit as u64);
                chunk.clear();
                chunk.extend((0..n).map(|i| pattern(1, written + i)));
                assert!(sim.client.stream_write(id, &chunk));
                written += n;
                credit -= n as i64;
                if written == total {
                    sim.client.stream_finish(id);
                }
            }
        }
        sim.advance();
    }
    sim.now - start
}

#[test]
fn ten_mib_through_loss_delay_and_reordering_arrives_intact() {
    let model = LinkModel {
        loss: 0.05,
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        reorder: 0.02,
        duplicate: 0.0,
        mtu: 1514,
        seed: 7,
    };
    let took = transfer(model, 10 << 20);
    eprintln!("10 MiB at 5% loss, 200 ms RTT, 2% reorder: {took:?} of virtual time");
}

#[test]
fn duplication_and_jitter_do_not_corrupt() {
    let model = LinkModel {
        loss: 0.01,
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        reorder: 0.05,
        duplicate: 0.02,
        mtu: 1514,
        seed: 11,
    };
    transfer(model, 2 << 20);
}

#[test]
fn wrong_key_never_establishes_and_counts_auth_failures() {
    let model = clean_link(20, 3);
    let mut sim = Sim::new(model, "client-key", "server-key");
    let mut cev = Vec::new();
    let mut sev = Vec::new();
    let end = sim.now + Duration::from_secs(10);
    while sim.now < end {
        sim.step(&mut cev, &mut sev);
        sim.advance();
    }
    assert!(cev.iter().all(|e| !matches!(e, ConnEvent::Established)));
    assert!(sev
        .iter()
        .all(|e| !matches!(e.event, ConnEvent::Established)));
    assert_ne!(sim.client.phase(), Phase::Established);
    let failures: u64 = sim
        .server
        .connections()
        .map(|(_, c)| c.stats().auth_failures)
        .sum::<u64>()
        + sim.server.stats().auth_failures_closed;
    assert!(failures >= 2, "server counted {failures} auth failures");
    assert_eq!(
        sim.server
            .connections()
            .map(|(_, c)| c.stats().handshakes_ok)
            .sum::<u64>(),
        0
    );
}

/// 50 streams at once, each echoed back by the server while it is still being sent (both
/// directions busy, every stream's window in play).
#[test]
fn fifty_streams_echoed_concurrently() {
    const STREAMS: usize = 50;
    const LEN: u64 = 512 * 1024;
    let model = LinkModel {
        loss: 0.01,
        delay: Duration::from_millis(20),
        jitter: Duration::ZERO,
        reorder: 0.0,
        duplicate: 0.0,
        mtu: 1514,
        seed: 5,
    };
    let mut sim = Sim::new(model, "k", "k");
    let start = sim.now;
    let mut ids: Vec<StreamId> = Vec::new();
    let mut credit: Vec<i64> = Vec::new();
    let mut written = vec![0u64; STREAMS];
    let mut echoed = vec![0u64; STREAMS];
    let mut server_credit: std::collections::HashMap<StreamId, i64> = Default::default();
    let mut server_backlog: std::collections::HashMap<StreamId, Vec<u8>> = Default::default();
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    let mut chunk = Vec::new();
    let limit = start + Duration::from_secs(300);
    while echoed.iter().any(|&e| e < LEN) {
        assert!(sim.now < limit, "stalled: echoed {echoed:?}");
        sim.step(&mut cev, &mut sev);
        for e in cev.drain(..) {
            match e {
                ConnEvent::Established => {
                    for _ in 0..STREAMS {
                        ids.push(sim.client.open_stream(b"echo").expect("open"));
                        credit.push(256 * 1024);
                    }
                }
                ConnEvent::Stream(MuxEvent::Sent { id, bytes }) => {
                    let i = ids.iter().position(|&x| x == id).expect("known stream");
                    credit[i] += bytes as i64;
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    let i = ids.iter().position(|&x| x == id).expect("known stream");
                    for (k, b) in data.iter().enumerate() {
                        assert_eq!(*b, pattern(i as u64, echoed[i] + k as u64));
                    }
                    echoed[i] += data.len() as u64;
                    sim.client.stream_consumed(id, data.len());
                }
                ConnEvent::SessionLost(r) => panic!("client session lost: {r:?}"),
                _ => {}
            }
        }
        let mut peer = None;
        for ListenerEvent { peer: p, event } in sev.drain(..) {
            peer = Some(p);
            match event {
                ConnEvent::Stream(MuxEvent::Opened { id, .. }) => {
                    server_credit.insert(id, 256 * 1024);
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    server_backlog
                        .entry(id)
                        .or_default()
                        .extend_from_slice(&data);
                }
                ConnEvent::Stream(MuxEvent::Sent { id, bytes }) => {
                    *server_credit.entry(id).or_default() += bytes as i64;
                }
                ConnEvent::SessionLost(r) => panic!("server session lost: {r:?}"),
                _ => {}
            }
        }
        // The server application echoes what it has, as far as its credit allows, and only
        // then reports the bytes consumed (like a socket write completing).
        if let Some(p) = peer.or_else(|| sim.server.connections().next().map(|(p, _)| *p)) {
            let conn = sim.server.connection_mut(&p).expect("server conn");
            for (id, backlog) in server_backlog.iter_mut() {
                let c = server_credit.entry(*id).or_default();
                let n = backlog.len().min((*c).max(0) as usize);
                if n > 0 {
                    assert!(conn.stream_write(*id, &backlog[..n]));
                    conn.stream_consumed(*id, n);
                    backlog.drain(..n);
                    *c -= n as i64;
                }
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            while credit[i] > 0 && written[i] < LEN {
                let n = (16 * 1024).min(LEN - written[i]).min(credit[i] as u64);
                chunk.clear();
                chunk.extend((0..n).map(|k| pattern(i as u64, written[i] + k)));
                assert!(sim.client.stream_write(id, &chunk));
                written[i] += n;
                credit[i] -= n as i64;
            }
        }
        sim.advance();
    }
}

/// A server that restarted (lost every session) answers the client's next data packet with a
/// stateless reset; the client notices at once instead of waiting for its idle timeout.
#[test]
fn restarted_server_resets_the_client_session() {
    let model = clean_link(25, 9);
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    // The server process restarts: a fresh listener with the same key and address.
    sim.server = Listener::new(conn_cfg("k"), server_addr(), SERVER_MAC, None, 16);
    let restarted_at = sim.now;
    let id = sim.client.open_stream(b"after restart").expect("open");
    assert!(sim.client.stream_write(id, b"hello"));
    cev.clear();
    let mut lost = None;
    let mut took = Duration::ZERO;
    while lost.is_none() {
        assert!(
            sim.now < restarted_at + Duration::from_secs(5),
            "client did not notice the restart"
        );
        sim.step(&mut cev, &mut sev);
        lost = cev.iter().find_map(|e| match e {
            ConnEvent::SessionLost(r) => Some(*r),
            _ => None,
        });
        took = sim.now - restarted_at;
        sim.advance();
    }
    assert_eq!(lost, Some(rawtun::endpoint::CloseReason::PeerRestarted));
    assert!(sim.client.is_closed());
    assert!(took < Duration::from_secs(1), "noticed after {took:?}");
}

/// Resets from a party without the key, or for packets the client never sent, are ignored.
#[test]
fn forged_or_replayed_resets_are_ignored() {
    use rawtun::crypto::reset::write_reset;
    let psk = Psk::from_bytes(blake_like("k"));
    let wrong = Psk::from_bytes(blake_like("other"));
    let model = clean_link(5, 1);
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    // Build server→client frames carrying resets: one under the wrong key for a prefix never
    // sent, one under the right key for a prefix never sent.
    let mut frames = Vec::new();
    for key in [&wrong, &psk] {
        let mut payload = [0u8; 64];
        let n = write_reset(key, &[0x42; 16], 3, &mut payload).expect("fits");
        frames.push(payload[..n].to_vec());
    }
    let server_flow_frame = |payload: &[u8]| {
        use rawtun::wire::{emit_frame, header_len, FrameRepr, TcpFlags, TcpOptions};
        let repr = FrameRepr {
            link: LinkType::Ethernet,
            src_mac: SERVER_MAC,
            dst_mac: CLIENT_MAC,
            src: server_addr(),
            dst: client_addr(),
            ttl: 64,
            ip_id: 1,
            seq: 1,
            ack: 1,
            flags: TcpFlags::PSH_ACK,
            window: 1000,
            options: TcpOptions::default(),
        };
        let at = header_len(&repr);
        let mut buf = vec![0u8; at + payload.len()];
        buf[at..].copy_from_slice(payload);
        let start = emit_frame(&repr, &mut buf, at, payload.len()).expect("emit");
        buf[start..].to_vec()
    };
    for payload in frames {
        let frame = server_flow_frame(&payload);
        let parsed = parse_frame(LinkType::Ethernet, &frame).expect("parse");
        sim.client.handle_frame(&parsed, sim.now);
    }
    assert_eq!(sim.client.phase(), Phase::Established);
    assert!(sim.client.poll_event().is_none());
}

/// A second handshake on a live flow (a replayed or forged msg1, or an attacker who knows
/// the key's holder's address but has no way to follow with data) must not displace the
/// session: the server keeps it until a data packet opens with the newer keys.
#[test]
fn handshake_on_a_live_flow_does_not_displace_the_session() {
    let model = clean_link(10, 4);
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    // An intruder with the key sends SYN + msg1 from the client's address, straight to the
    // server; its answers go to the real client, so it never completes.
    let mut intruder = Connection::client(
        conn_cfg("k"),
        FlowAddrs {
            local: client_addr(),
            remote: server_addr(),
            local_mac: CLIENT_MAC,
            remote_mac: SERVER_MAC,
        },
        99,
        5,
        7,
        8,
        sim.now,
    )
    .expect("intruder");
    let mut buf = vec![0u8; rawtun::endpoint::MAX_FRAME];
    let mut seed = || 17u32;
    for _ in 0..3 {
        while let Some(r) = intruder.poll_transmit(sim.now, &mut buf) {
            let frame = buf[r].to_vec();
            let parsed = parse_frame(LinkType::Ethernet, &frame).expect("parse");
            sim.server.handle_frame(&parsed, sim.now, &mut seed);
        }
        // Pretend the SYN-ACK came back to the intruder so it sends its msg1.
        let mut replies = Vec::new();
        sim.server.connections_mut().for_each(|(_, c)| {
            while let Some(r) = c.poll_transmit(sim.now, &mut buf) {
                replies.push(buf[r].to_vec());
            }
        });
        for f in replies {
            let parsed = parse_frame(LinkType::Ethernet, &f).expect("parse");
            intruder.handle_frame(&parsed, sim.now);
        }
    }
    // The real client goes on using its session.
    let id = sim.client.open_stream(b"still here").expect("open");
    assert!(sim.client.stream_write(id, &[7u8; 50_000]));
    sim.client.stream_finish(id);
    cev.clear();
    sev.clear();
    let mut got = 0usize;
    let mut done = false;
    let end = sim.now + Duration::from_secs(10);
    while !done {
        assert!(sim.now < end, "stream did not complete: {got} bytes");
        sim.step(&mut cev, &mut sev);
        for e in sev.drain(..) {
            match e.event {
                ConnEvent::Stream(MuxEvent::Data { data, .. }) => {
                    assert!(data.iter().all(|&b| b == 7));
                    got += data.len();
                }
                ConnEvent::Stream(MuxEvent::Finished { .. }) => done = true,
                ConnEvent::SessionLost(r) => panic!("server dropped the session: {r:?}"),
                _ => {}
            }
        }
        for e in cev.drain(..) {
            if let ConnEvent::SessionLost(r) = e {
                panic!("client lost its session: {r:?}");
            }
        }
        sim.advance();
    }
    assert_eq!(got, 50_000);
}

/// Datagrams beside a saturating stream, through 5% loss and 2% duplication: each arrives
/// at most once, intact, one link delay after it was sent (never behind stream bytes, never
/// retransmitted); an oversized one is refused whole.
#[test]
fn datagrams_skip_the_stream_queue_and_are_never_retransmitted() {
    let model = LinkModel {
        loss: 0.05,
        duplicate: 0.02,
        ..clean_link(50, 3)
    };
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    let max = sim.client.max_datagram();
    assert_eq!(
        sim.client.send_datagram(vec![0; max + 1]),
        Err(DatagramError::TooLarge { len: max + 1, max })
    );
    let stream = sim.client.open_stream(b"bulk").expect("open stream");
    let chunk = vec![0x5a; 64 * 1024];
    let start = sim.now;
    let mut sent_at = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut worst = Duration::ZERO;
    let mut next_send = sim.now;
    let mut seq = 0u32;
    const COUNT: u32 = 2000;
    // Until every datagram is sent and a second has passed (60 s of virtual time at most).
    while sim.now < start + Duration::from_secs(60)
        && (seq < COUNT || sim.now < next_send + Duration::from_secs(1))
    {
        // Keep the stream's queue full, so KCP always has a window's worth waiting.
        sim.client.stream_write(stream, &chunk);
        if seq < COUNT && sim.now >= next_send {
            let mut body = seq.to_be_bytes().to_vec();
            body.extend((0..200).map(|i| pattern(u64::from(seq), i)));
            sim.client.send_datagram(body).expect("queued");
            sent_at.insert(seq, sim.now);
            seq += 1;
            next_send = sim.now + Duration::from_millis(2);
        }
        sim.step(&mut cev, &mut sev);
        cev.clear();
        for ListenerEvent { peer, event } in sev.drain(..) {
            match event {
                ConnEvent::Datagram(body) => {
                    let n = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                    assert!(seen.insert(n), "datagram {n} delivered twice");
                    assert!(
                        body[4..]
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == pattern(u64::from(n), i as u64)),
                        "datagram {n} altered"
                    );
                    worst = worst.max(sim.now - sent_at[&n]);
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    let conn = sim.server.connection_mut(&peer).expect("server conn");
                    conn.stream_consumed(id, data.len());
                }
                _ => {}
            }
        }
        sim.advance();
    }
    let stats = sim.client.stats();
    assert_eq!(seq, COUNT);
    assert_eq!(
        stats.datagrams_out,
        u64::from(COUNT),
        "sent once each, never again"
    );
    assert_eq!(stats.datagrams_dropped, 1, "only the oversized one");
    let got = seen.len() as u32;
    assert!(
        got < COUNT && got > COUNT * 9 / 10,
        "{got} of {COUNT} arrived through 5% loss"
    );
    // 50 ms one way; the sim's time step and the bulk stream's frames in the same
    // transmit round add at most a few ms.
    assert!(
        worst < Duration::from_millis(55),
        "a datagram took {worst:?}"
    );
    let kcp = sim.client.kcp_stats().expect("session");
    assert!(
        kcp.retransmits + kcp.fast_retransmits > 0,
        "the stream did see the loss"
    );
}
