//! KCP + mux over a seeded lossy link in virtual time (no sleeping, no sockets).
//!
//! Two endpoints, each a `KcpSession` carrying a `Mux`, exchange KCP packets through an
//! event queue that drops with probability `loss`, delays by a fixed one-way delay and
//! optionally reorders. The client opens 4 streams, both sides send 2 MiB on each, and the
//! bytes must arrive identical (SHA-256), with flow control, FIN and stream removal working.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rawtun::kcp::{KcpConfig, KcpSession};
use rawtun::mux::{Mux, MuxConfig, MuxEvent, StreamId};
use sha2::{Digest, Sha256};

const STREAMS: usize = 4;
const PER_STREAM: usize = 2 * 1024 * 1024;
/// Bytes an application keeps buffered in the mux per stream (released by `Sent`).
const APP_BUFFER: usize = 256 * 1024;

/// splitmix64: small, seeded, good enough for loss decisions and test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

fn stream_data(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(PER_STREAM);
    while v.len() < PER_STREAM {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(PER_STREAM);
    v
}

/// A packet in flight: (deliver at, tie-break sequence, destination side, bytes).
type InFlight = Reverse<(Instant, u64, usize, Vec<u8>)>;

struct Link {
    rng: Rng,
    loss: f64,
    delay: Duration,
    reorder: f64,
    /// Everything sent in this window is dropped.
    outage: Option<(Instant, Instant)>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    sent: u64,
    dropped: u64,
}

impl Link {
    fn send(&mut self, now: Instant, to: usize, packet: Vec<u8>) {
        self.sent += 1;
        let out = self.outage.is_some_and(|(a, b)| now >= a && now < b);
        if out || self.rng.chance(self.loss) {
            self.dropped += 1;
            return;
        }
        let mut at = now + self.delay;
        if self.rng.chance(self.reorder) {
            at += self.delay / 2 * (self.rng.next() % 100) as u32 / 100;
        }
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, to, packet)));
    }
}

/// What one side sends and expects on a stream.
struct Flow {
    out: Vec<u8>,
    written: usize,
    buffered: usize,
    finished: bool,
    received: Sha256,
    received_len: usize,
    peer_fin: bool,
}

impl Flow {
    fn new(seed: u64) -> Self {
        Flow {
            out: stream_data(seed),
            written: 0,
            buffered: 0,
            finished: false,
            received: Sha256::new(),
            received_len: 0,
            peer_fin: false,
        }
    }
}

struct Endpoint {
    kcp: KcpSession,
    mux: Mux,
    is_client: bool,
    flows: HashMap<StreamId, Flow>,
    scratch: Vec<u8>,
    rbuf: Vec<u8>,
}

fn seed_for(id: StreamId, from_client: bool) -> u64 {
    u64::from(id) * 2 + u64::from(from_client)
}

impl Endpoint {
    fn new(kcfg: &KcpConfig, mcfg: &MuxConfig, is_client: bool, now: Instant) -> Self {
        let mut e = Endpoint {
            kcp: KcpSession::new(0x5eed, kcfg, now),
            mux: Mux::new(mcfg.clone(), is_client, now),
            is_client,
            flows: HashMap::new(),
            scratch: Vec::new(),
            rbuf: vec![0u8; 64 * 1024],
        };
        if is_client {
            for i in 0..STREAMS {
                let id = e.mux.open_stream(format!("stream-{i}").as_bytes()).unwrap();
                e.flows.insert(id, Flow::new(seed_for(id, true)));
            }
        }
        e
    }

    /// Tops up each stream's mux buffer from its data, finishing at the end.
    fn write_more(&mut self) {
        for (&id, f) in self.flows.iter_mut() {
            let room = APP_BUFFER.saturating_sub(f.buffered);
            let n = room.min(f.out.len() - f.written);
            if n > 0 {
                self.mux
                    .write(id, &f.out[f.written..f.written + n])
                    .unwrap();
                f.written += n;
                f.buffered += n;
            }
            if f.written == f.out.len() && !f.finished {
                self.mux.finish(id);
                f.finished = true;
            }
        }
    }

    fn handle_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.mux.poll_event() {
            any = true;
            match ev {
                MuxEvent::Opened { id, payload } => {
                    assert!(!self.is_client);
                    assert!(payload.starts_with(b"stream-"));
                    self.flows.insert(id, Flow::new(seed_for(id, false)));
                }
                MuxEvent::Data { id, data } => {
                    let f = self.flows.get_mut(&id).expect("data for a known stream");
                    f.received.update(&data);
                    f.received_len += data.len();
                    self.mux.consumed(id, data.len());
                }
                MuxEvent::Sent { id, bytes } => {
                    if let Some(f) = self.flows.get_mut(&id) {
                        f.buffered -= bytes;
                    }
                }
                MuxEvent::Finished { id } => {
                    self.flows.get_mut(&id).expect("known stream").peer_fin = true;
                }
                MuxEvent::Reset { id } => panic!("stream {id} reset"),
                MuxEvent::Exceeded { id, bound } => panic!("stream {id} exceeded {bound:?}"),
                MuxEvent::Pong { .. } => {}
            }
        }
        if any {
            self.write_more();
        }
        any
    }

    fn drive(&mut self, now: Instant, link: &mut Link, me: usize) {
        self.write_more();
        loop {
            let mut progress = self.handle_events();
            while self.mux.has_output() {
                let cap = self.kcp.send_capacity().min(64 * 1024);
                if cap == 0 {
                    break;
                }
                self.scratch.clear();
                let n = self.mux.poll_output(&mut self.scratch, cap, now);
                if n == 0 {
                    break;
                }
                assert_eq!(self.kcp.send(&self.scratch).unwrap(), n);
                progress = true;
            }
            loop {
                let n = self.kcp.recv(&mut self.rbuf);
                if n == 0 {
                    break;
                }
                self.mux.handle_bytes(&self.rbuf[..n], now).unwrap();
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.kcp.flush(now);
        let mut packet = [0u8; 2048];
        while let Some(n) = self.kcp.poll_transmit(&mut packet) {
            assert!(n <= 1350);
            link.send(now, 1 - me, packet[..n].to_vec());
        }
    }

    fn bytes_received(&self) -> usize {
        self.flows.values().map(|f| f.received_len).sum()
    }

    fn done(&self) -> bool {
        self.flows.len() == STREAMS
            && self
                .flows
                .values()
                .all(|f| f.peer_fin && f.finished && f.received_len == PER_STREAM)
    }

    fn check(&self, is_client: bool) {
        for (&id, f) in &self.flows {
            let want = Sha256::digest(stream_data(seed_for(id, !is_client)));
            assert_eq!(f.received.clone().finalize(), want, "stream {id}");
        }
    }
}

struct Outcome {
    virtual_time: Duration,
    resumed_after: Option<Duration>,
    retransmits: u64,
}

fn run(loss: f64, one_way: Duration, reorder: f64, outage: Option<Duration>) -> Outcome {
    let kcfg = KcpConfig {
        nodelay: true,
        interval_ms: 20,
        resend: 2,
        nocongestion: true,
        mtu: 1350,
        sndwnd: 1024,
        rcvwnd: 1024,
        wdelay: false,
        acknodelay: true,
        rate_cap: true,
    };
    let mcfg = MuxConfig {
        stream_window: 1024 * 1024,
        session_window: 4 * 1024 * 1024,
        keepalive: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        ..MuxConfig::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut sides = [
        Endpoint::new(&kcfg, &mcfg, true, now),
        Endpoint::new(&kcfg, &mcfg, false, now),
    ];
    let mut link = Link {
        rng: Rng(0x00c0_ffee),
        loss,
        delay: one_way,
        reorder,
        outage: None,
        queue: BinaryHeap::new(),
        seq: 0,
        sent: 0,
        dropped: 0,
    };
    let total = 2 * STREAMS * PER_STREAM;
    let mut resumed_after = None;
    let mut received_at_outage_end = None;
    loop {
        for (i, s) in sides.iter_mut().enumerate() {
            s.drive(now, &mut link, i);
        }
        if sides.iter().all(Endpoint::done) {
            break;
        }
        let received = sides[0].bytes_received() + sides[1].bytes_received();
        // The outage starts once half of all bytes have arrived.
        if let (Some(len), None) = (outage, link.outage) {
            if received >= total / 2 {
                link.outage = Some((now, now + len));
            }
        }
        if let Some((_, end)) = link.outage {
            if now >= end {
                let base = *received_at_outage_end.get_or_insert(received);
                if received > base && resumed_after.is_none() {
                    resumed_after = Some(now - end);
                }
            }
        }
        let next = sides
            .iter()
            .flat_map(|s| [s.kcp.poll_timeout(), Some(s.mux.poll_timeout())])
            .flatten()
            .chain(link.queue.peek().map(|Reverse(p)| p.0))
            .min()
            .expect("timers exist");
        now = now.max(next);
        assert!(
            now - t0 < Duration::from_secs(300),
            "no progress: {received} of {total}"
        );
        while link.queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
            let Some(Reverse((_, _, to, p))) = link.queue.pop() else {
                break;
            };
            sides[to].kcp.handle_input(&p, now).unwrap();
        }
        for s in sides.iter_mut() {
            if s.kcp.poll_timeout().is_some_and(|t| now >= t) {
                s.kcp.handle_timeout(now);
            }
            if now >= s.mux.poll_timeout() {
                s.mux.handle_timeout(now);
            }
            assert!(!s.mux.is_dead(now), "mux declared dead at {:?}", now - t0);
        }
    }
    sides[0].check(true);
    sides[1].check(false);
    // Both directions finished: the streams are gone on both sides.
    assert_eq!(sides[0].mux.stream_count(), 0);
    assert_eq!(sides[1].mux.stream_count(), 0);
    assert!(link.dropped > 0 || loss == 0.0);
    Outcome {
        virtual_time: now - t0,
        resumed_after,
        retransmits: sides.iter().map(|s| s.kcp.stats().retransmits).sum(),
    }
}

#[test]
fn four_streams_through_five_percent_loss() {
    let o = run(0.05, Duration::from_millis(100), 0.0, None);
    eprintln!(
        "5% loss, 100 ms: {:?} virtual, {} retransmits",
        o.virtual_time, o.retransmits
    );
    assert!(o.retransmits > 0);
}

#[test]
fn four_streams_with_loss_and_reordering() {
    let o = run(0.02, Duration::from_millis(60), 0.1, None);
    eprintln!("2% loss, reorder 10%: {:?} virtual", o.virtual_time);
}

#[test]
fn survives_twenty_second_outage() {
    let o = run(
        0.0,
        Duration::from_millis(250),
        0.0,
        Some(Duration::from_secs(20)),
    );
    let resumed = o.resumed_after.expect("transfer resumed after the outage");
    eprintln!(
        "20 s outage, 250 ms one-way: {:?} virtual, resumed {:?} after the link returned",
        o.virtual_time, resumed
    );
    assert!(o.virtual_time > Duration::from_secs(20));
    assert!(
        resumed < Duration::from_secs(5),
        "resumed after {resumed:?}"
    );
}
