//! The virtual-time harness of the protocol simulations: a client [`Connection`] and a
//! server [`Listener`] over a seeded [`MemNetwork`], stepped without sleeping. Every random
//! choice comes from seeds, so a run is reproducible.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rawtun::crypto::{ClientIdentity, ServerIdentity, SharedKey};
use rawtun::endpoint::{
    test_config, ConnConfig, ConnEvent, Connection, GateConfig, GateShared, Listener,
    ListenerEvent, Phase, WallClock,
};
use rawtun::faketcp::FlowAddrs;
use rawtun::io::mem::{LinkModel, MemNetwork};
use rawtun::wire::{parse_frame, LinkType};

pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// Unix time (ms) at the start of every simulation.
pub const T0: u64 = 1_800_000_000_000;

pub fn client_addr() -> SocketAddr {
    "198.18.0.1:40000".parse().unwrap()
}

pub fn server_addr() -> SocketAddr {
    "198.18.0.2:9999".parse().unwrap()
}

pub fn client_flow(local: SocketAddr) -> FlowAddrs {
    FlowAddrs {
        local,
        remote: server_addr(),
        local_mac: CLIENT_MAC,
        remote_mac: SERVER_MAC,
    }
}

/// A shared key from a label (tests only).
pub fn shared(label: &str) -> SharedKey {
    let mut k = [0u8; 32];
    for (i, b) in label.bytes().enumerate() {
        k[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    SharedKey::from_bytes(k)
}

pub fn seed(n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s
}

/// The daemon-like connection settings, with the wall clock at [`T0`] when `now`.
pub fn conn_cfg(now: Instant) -> ConnConfig {
    test_config(WallClock {
        at: now,
        unix_ms: T0,
    })
}

/// A link that only delays (no loss, reordering or duplication).
pub fn clean_link(delay_ms: u64, seed: u64) -> LinkModel {
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
pub fn pattern(s: u64, i: u64) -> u8 {
    let x = (i ^ (s << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// A server listener for `ids` as a freshly started process at `now`.
pub fn listener(cfg: ConnConfig, ids: Arc<[ServerIdentity]>, now: Instant, n: u64) -> Listener {
    let gate = GateConfig::default();
    let shared = GateShared::new(&gate, cfg.wall.unix_ms(now), now);
    Listener::new(
        cfg,
        ids,
        gate,
        shared,
        server_addr(),
        SERVER_MAC,
        None,
        16,
        seed(n),
    )
}

pub struct Sim {
    /// When the simulation started: Unix time [`T0`].
    pub start: Instant,
    pub now: Instant,
    pub net: MemNetwork,
    pub client: Connection,
    pub server: Listener,
    pub buf: Vec<u8>,
    /// Frames sent by the server (everything it ever answered).
    pub server_frames: u64,
    /// Drop everything on the link until then.
    pub blackout_until: Option<Instant>,
    /// Client → server frames, recorded while `Some`.
    pub recorded: Option<Vec<Vec<u8>>>,
}

impl Sim {
    /// Client and server with their own (shared) keys `client_key` / `server_key`.
    pub fn new(model: LinkModel, client_key: &str, server_key: &str) -> Sim {
        let now = Instant::now();
        let ids: Arc<[ServerIdentity]> = vec![shared(server_key).server_identity()].into();
        let client = Arc::new(shared(client_key).client_identity());
        Sim::with(model, conn_cfg(now), client, ids, now)
    }

    pub fn with(
        model: LinkModel,
        cfg: ConnConfig,
        client: Arc<ClientIdentity>,
        ids: Arc<[ServerIdentity]>,
        now: Instant,
    ) -> Sim {
        let server = listener(cfg.clone(), ids, now, 7);
        let client = Connection::client(cfg, client, client_flow(client_addr()), seed(42), now)
            .expect("handshake start");
        let mut rev = model.clone();
        rev.seed ^= 0xdead_beef;
        Sim {
            start: now,
            now,
            net: MemNetwork::new(model, rev),
            client,
            server,
            buf: vec![0; rawtun::endpoint::MAX_FRAME],
            server_frames: 0,
            blackout_until: None,
            recorded: None,
        }
    }

    /// One round: deliver due frames, run timers, transmit. Returns events of both sides.
    pub fn step(&mut self, client_ev: &mut Vec<ConnEvent>, server_ev: &mut Vec<ListenerEvent>) {
        let now = self.now;
        let dark = self.blackout_until.is_some_and(|t| now < t);
        while let Some((to, frame)) = self.net.poll_deliver(now) {
            if dark {
                continue;
            }
            let parsed = parse_frame(LinkType::Ethernet, &frame).expect("sim frames parse");
            if to == 1 {
                self.server.handle_frame(&parsed, now);
            } else {
                self.client.handle_frame(&parsed, now);
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.server.handle_timeout(now, server_ev);
        while let Some(r) = self.client.poll_transmit(now, &mut self.buf) {
            if let Some(rec) = self.recorded.as_mut() {
                rec.push(self.buf[r.clone()].to_vec());
            }
            self.net.send(now, 0, &self.buf[r]);
        }
        self.server_transmit();
        while let Some(e) = self.client.poll_event() {
            client_ev.push(e);
        }
        self.server.poll_events(server_ev);
    }

    /// Hands `frame` straight to the server and lets it transmit; returns how many frames
    /// it sent (everything it sent, including a live session's own traffic).
    pub fn inject(&mut self, frame: &[u8]) -> u64 {
        let parsed = parse_frame(LinkType::Ethernet, frame).expect("injected frames parse");
        self.server.handle_frame(&parsed, self.now);
        let before = self.server_frames;
        self.server_transmit();
        self.server_frames - before
    }

    /// Sends everything the server has to send.
    pub fn server_transmit(&mut self) {
        let now = self.now;
        let (buf, net, sent) = (&mut self.buf, &mut self.net, &mut self.server_frames);
        while let Some(r) = self.server.poll_transmit(now, buf) {
            net.send(now, 1, &buf[r]);
            *sent += 1;
        }
    }

    /// Connection settings on the simulation's clock (for parties created later).
    pub fn cfg(&self) -> ConnConfig {
        conn_cfg(self.start)
    }

    /// Runs until the client's session is up (5 s of virtual time at most).
    pub fn establish(&mut self, cev: &mut Vec<ConnEvent>, sev: &mut Vec<ListenerEvent>) {
        let deadline = self.now + Duration::from_secs(5);
        while self.client.phase() != Phase::Established {
            assert!(self.now < deadline, "no session");
            self.step(cev, sev);
            self.advance();
        }
    }

    /// Steps for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration, cev: &mut Vec<ConnEvent>, sev: &mut Vec<ListenerEvent>) {
        let end = self.now + d;
        while self.now < end {
            self.step(cev, sev);
            self.advance();
            // Idle sessions have deadlines seconds apart: stop at `end`, not past it.
            self.now = self.now.min(end);
        }
    }

    /// Sends `total` bytes on one stream client → server (opened once the session is up),
    /// checking every byte on arrival; returns the virtual time it took.
    pub fn transfer(&mut self, total: u64) -> Duration {
        use rawtun::mux::{MuxEvent, StreamId};
        let start = self.now;
        let mut stream: Option<StreamId> = None;
        let (mut credit, mut written, mut received) = (1i64 << 20, 0u64, 0u64);
        let mut finished = false;
        let (mut cev, mut sev) = (Vec::new(), Vec::new());
        let mut chunk = Vec::with_capacity(64 * 1024);
        let limit = start + Duration::from_secs(900);
        while !finished {
            assert!(
                self.now < limit,
                "transfer stalled: {received} of {total} bytes"
            );
            self.step(&mut cev, &mut sev);
            for e in cev.drain(..) {
                match e {
                    ConnEvent::Established => {
                        stream = Some(self.client.open_stream(b"sim").expect("open stream"));
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
                            let at = received + i as u64;
                            assert_eq!(*b, pattern(1, at), "byte {at} differs");
                        }
                        received += data.len() as u64;
                        let conn = self.server.connection_mut(&peer).expect("server conn");
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
                    assert!(self.client.stream_write(id, &chunk));
                    written += n;
                    credit -= n as i64;
                    if written == total {
                        self.client.stream_finish(id);
                    }
                }
            }
            self.advance();
        }
        self.now - start
    }

    /// Moves virtual time to the next thing that is due.
    pub fn advance(&mut self) {
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

/// An Ethernet frame of a TCP segment `src` → `dst` (toward the server's MAC).
pub fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    flags: rawtun::wire::TcpFlags,
    seq: u32,
    ack: u32,
    tsval: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let macs = (CLIENT_MAC, SERVER_MAC);
    super::attack::segment(macs, src, dst, flags, seq, ack, tsval, payload)
}

/// `frame` with its source address and port replaced (checksums recomputed).
pub fn from_address(frame: &[u8], src: SocketAddr) -> Vec<u8> {
    super::attack::rewrite(frame, |repr, _| repr.src = src)
}

#[allow(unused_imports)] // each test binary uses a different part of the harness
pub use super::attack::rewrite;
