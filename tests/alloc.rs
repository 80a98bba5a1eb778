//! Allocation count of the packet path: once a session has warmed up, moving packets
//! through the whole sans-IO stack — wire parse → fake TCP → AEAD → KCP → mux and back
//! (and datagrams beside the stream) — allocates nothing. Issue 11, scope point 2.
//!
//! A counting global allocator counts the allocations (`alloc`, `alloc_zeroed`, `realloc`)
//! made on the test's thread while counting is switched on. A client [`Connection`] and a
//! server [`Listener`] talk over a test link that reuses its frame buffers (so the link
//! itself allocates nothing either): 100 Mbit/s each way, 10 ms one way, no loss. After a
//! warm-up with bulk data both ways on one mux stream and datagrams both ways, the next
//! [`STEADY_FRAMES`] frames are counted. It is a count, not a timing.
//!
//! Run with `--nocapture` to see the counts; set `RAWTUN_ALLOC_BACKTRACE=1` to print where
//! the first counted allocations come from.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sim::{client_addr, client_flow, conn_cfg, listener, seed, shared};
use rawtun::endpoint::{ConnEvent, Connection, Listener, ListenerEvent, Phase, MAX_FRAME};
use rawtun::mux::{MuxEvent, StreamId};
use rawtun::wire::{parse_frame, LinkType};

/// Counts allocations of the current thread while switched on; forwards everything to the
/// system allocator.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    // `try_with`: thread-local storage may already be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            BYTES.with(|b| b.set(b.get() + size as u64));
            if std::env::var_os("RAWTUN_ALLOC_BACKTRACE").is_some() {
                // Off while the backtrace is captured and printed (they allocate).
                on.set(false);
                eprintln!(
                    "allocation of {size} bytes at:\n{}",
                    std::backtrace::Backtrace::force_capture()
                );
                on.set(true);
            }
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the counting around it only touches const-initialised thread-locals without
// destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCATIONS.with(|n| n.set(0));
    BYTES.with(|b| b.set(0));
    COUNTING.with(|on| on.set(true));
    let r = f();
    COUNTING.with(|on| on.set(false));
    (r, ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get))
}

/// Frames counted after the warm-up.
const STEADY_FRAMES: u64 = 20_000;
/// Bytes each side moves on the stream before counting starts.
const WARMUP_BYTES: u64 = 24 << 20;
/// Link rate, each way, in bytes per second (100 Mbit/s).
const RATE: u64 = 12_500_000;
/// One-way delay.
const DELAY: Duration = Duration::from_millis(10);
/// A datagram goes each way every this many rounds.
const DATAGRAM_EVERY: u64 = 8;

/// One direction of a lossless link with a rate and a delay, reusing its frame buffers.
#[derive(Default)]
struct Direction {
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// When the link is free to start the next frame.
    free_at: Option<Instant>,
}

struct Link {
    dirs: [Direction; 2],
    spare: Vec<Vec<u8>>,
    frames: u64,
}

impl Link {
    fn send(&mut self, now: Instant, to: usize, frame: &[u8]) {
        let dir = &mut self.dirs[to];
        let start = dir.free_at.map_or(now, |t| t.max(now));
        let done = start + Duration::from_nanos(frame.len() as u64 * 1_000_000_000 / RATE);
        dir.free_at = Some(done);
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        dir.queue.push_back((done + DELAY, buf));
        self.frames += 1;
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.dirs
            .iter()
            .filter_map(|d| d.queue.front())
            .map(|(t, _)| *t)
            .min()
    }
}

/// Bytes of the stream in each direction: byte `i` is `i % 251`.
fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// One side's stream: what it has written and read.
#[derive(Default)]
struct Ends {
    credit: i64,
    written: u64,
    read: u64,
    datagrams: u64,
}

struct Pair {
    now: Instant,
    client: Connection,
    server: Listener,
    link: Link,
    buf: Vec<u8>,
    /// The stream both sides send on (client-opened), once open.
    stream: Option<StreamId>,
    peer: Option<SocketAddr>,
    up: Ends,
    down: Ends,
    server_events: Vec<ListenerEvent>,
    /// A window of the pattern to write from (its offset is `written % 251`).
    source: Vec<u8>,
    rounds: u64,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let cfg = conn_cfg(now);
        let ids: Arc<[_]> = vec![shared("k").server_identity()].into();
        let server = listener(cfg.clone(), ids, now, 7);
        let identity = Arc::new(shared("k").client_identity());
        let client = Connection::client(cfg, identity, client_flow(client_addr()), seed(42), now)
            .expect("handshake start");
        Pair {
            now,
            client,
            server,
            link: Link {
                dirs: Default::default(),
                spare: Vec::new(),
                frames: 0,
            },
            buf: vec![0; MAX_FRAME],
            stream: None,
            peer: None,
            up: Ends {
                credit: 1 << 20,
                ..Ends::default()
            },
            down: Ends {
                credit: 1 << 20,
                ..Ends::default()
            },
            server_events: Vec::with_capacity(1 << 16),
            source: (0..64 * 1024 + 251).map(pattern_byte).collect(),
            rounds: 0,
        }
    }

    /// One round: deliver due frames, run timers, act on events, write, transmit; then
    /// move virtual time to the next thing due.
    fn round(&mut self) {
        let now = self.now;
        self.rounds += 1;
        for to in 0..2 {
            while self.link.dirs[to]
                .queue
                .front()
                .is_some_and(|(t, _)| *t <= now)
            {
                let Some((_, frame)) = self.link.dirs[to].queue.pop_front() else {
                    break;
                };
                let parsed = parse_frame(LinkType::Ethernet, &frame).expect("frames parse");
                if to == 1 {
                    self.server.handle_frame(&parsed, now);
                } else {
                    self.client.handle_frame(&parsed, now);
                }
                self.link.spare.push(frame);
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.server.handle_timeout(now, &mut self.server_events);
        self.client_events();
        self.server_events();
        self.write();
        while let Some(r) = self.client.poll_transmit(now, &mut self.buf) {
            self.link.send(now, 1, &self.buf[r]);
        }
        let (buf, link) = (&mut self.buf, &mut self.link);
        while let Some(r) = self.server.poll_transmit(now, buf) {
            link.send(now, 0, &buf[r]);
        }
        let next = [
            self.link.next_delivery(),
            self.client.poll_timeout(),
            self.server.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let floor = now + Duration::from_micros(100);
        self.now = next.filter(|&t| t > floor).unwrap_or(floor);
    }

    fn client_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            match e {
                ConnEvent::Established => {
                    self.stream = Some(self.client.open_stream(b"alloc").expect("open"));
                }
                ConnEvent::Stream(MuxEvent::Sent { bytes, .. }) => self.up.credit += bytes as i64,
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    check(&data, self.down.read);
                    self.down.read += data.len() as u64;
                    self.client.stream_consumed(id, data.len());
                }
                ConnEvent::Datagram(body) => {
                    assert_eq!(&body[..], b"down");
                    self.down.datagrams += 1;
                }
                ConnEvent::SessionLost(r) => panic!("client session lost: {r:?}"),
                _ => {}
            }
        }
    }

    fn server_events(&mut self) {
        self.server.poll_events(&mut self.server_events);
        for ListenerEvent { peer, event } in self.server_events.drain(..) {
            let conn = self.server.connection_mut(&peer);
            match event {
                ConnEvent::Stream(MuxEvent::Opened { payload, .. }) => {
                    assert_eq!(payload, b"alloc");
                    self.peer = Some(peer);
                }
                ConnEvent::Stream(MuxEvent::Sent { bytes, .. }) => {
                    self.down.credit += bytes as i64;
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    check(&data, self.up.read);
                    self.up.read += data.len() as u64;
                    conn.expect("server connection")
                        .stream_consumed(id, data.len());
                }
                ConnEvent::Datagram(body) => {
                    assert_eq!(&body[..], b"up");
                    self.up.datagrams += 1;
                }
                ConnEvent::SessionLost(r) => panic!("server session lost: {r:?}"),
                _ => {}
            }
        }
    }

    /// Writes as much of the pattern as each side has credit for, both ways, and now and
    /// then a datagram each way.
    fn write(&mut self) {
        let (Some(id), Some(peer)) = (self.stream, self.peer) else {
            return;
        };
        let datagrams = self.rounds.is_multiple_of(DATAGRAM_EVERY);
        let source = &self.source;
        let fill = |ends: &mut Ends, conn: &mut Connection, dgram: &[u8]| {
            while ends.credit > 0 {
                let n = (64 * 1024).min(ends.credit as u64) as usize;
                let at = (ends.written % 251) as usize;
                assert!(conn.stream_write(id, &source[at..at + n]));
                ends.written += n as u64;
                ends.credit -= n as i64;
            }
            if datagrams {
                conn.send_datagram(dgram).expect("datagram queued");
            }
        };
        fill(&mut self.up, &mut self.client, b"up");
        let server = self
            .server
            .connection_mut(&peer)
            .expect("server connection");
        fill(&mut self.down, server, b"down");
    }
}

/// Checks received stream bytes against the pattern (from stream offset `at`).
fn check(data: &[u8], at: u64) {
    for (i, &b) in data.iter().enumerate() {
        assert_eq!(
            b,
            pattern_byte(at + i as u64),
            "byte {} differs",
            at + i as u64
        );
    }
}

#[test]
fn steady_state_packets_allocate_nothing() {
    let mut p = Pair::new();
    let deadline = p.now + Duration::from_secs(5);
    while p.client.phase() != Phase::Established || p.peer.is_none() {
        assert!(p.now < deadline, "no session");
        p.round();
    }
    // Warm-up: buffers, queues, windows and the rate estimate reach their working size.
    let limit = p.now + Duration::from_secs(60);
    while p.up.read < WARMUP_BYTES || p.down.read < WARMUP_BYTES {
        assert!(
            p.now < limit,
            "warm-up stalled: {} / {}",
            p.up.read,
            p.down.read
        );
        p.round();
    }
    assert!(
        p.up.datagrams > 0 && p.down.datagrams > 0,
        "datagrams in the warm-up"
    );
    let warm = (
        p.link.frames,
        p.up.read,
        p.down.read,
        p.up.datagrams,
        p.down.datagrams,
    );
    let t0 = p.now;

    let ((), allocations, bytes) = allocations_in(|| {
        let end = p.link.frames + STEADY_FRAMES;
        while p.link.frames < end {
            p.round();
        }
    });

    let frames = p.link.frames - warm.0;
    let (up, down) = (p.up.read - warm.1, p.down.read - warm.2);
    let datagrams = (p.up.datagrams - warm.3, p.down.datagrams - warm.4);
    println!(
        "steady state: {frames} frames, {up} bytes up and {down} down on the stream, \
         {} + {} datagrams, {:?} of virtual time: {allocations} allocations ({bytes} bytes)",
        datagrams.0,
        datagrams.1,
        p.now - t0,
    );
    // The window did real work both ways.
    assert!(
        up > 4 << 20 && down > 4 << 20,
        "stream bytes moved: {up} / {down}"
    );
    assert!(
        datagrams.0 > 0 && datagrams.1 > 0,
        "datagrams: {datagrams:?}"
    );
    assert_eq!(
        allocations, 0,
        "allocations in {frames} steady-state frames (RAWTUN_ALLOC_BACKTRACE=1 shows where)"
    );
}
