//! 2,000 idle sessions on one server [`Listener`] (one packet worker's table) cost no work
//! at a wake-up beyond their own deadlines: the listener visits a connection when its
//! deadline is due or a frame reached it, never the whole table (issue 11, point 4). It is
//! a count of visits (`ListenerStats::conn_polls`), not a timing.
//!
//! 2,000 client [`Connection`]s are wired to the listener by a zero-delay in-memory link and
//! driven in virtual time. Once every session is up, the simulation idles for a minute of
//! virtual time, waking every 50 ms as a worker would (timers, then transmit). At every
//! wake-up the listener may visit a connection at most twice (its timer, then serving it)
//! for each connection that was due and each frame it received; at a wake-up where nothing
//! of the server's was due and no frame came, it visits nothing. Over the minute, each
//! session costs a handful of visits per keepalive period (KCP does not tick while idle).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sim::{client_flow, conn_cfg, seed, server_addr, shared, SERVER_MAC};
use rawtun::crypto::ServerIdentity;
use rawtun::endpoint::{
    Connection, GateConfig, GateShared, Listener, ListenerEvent, Phase, MAX_FRAME,
};
use rawtun::wire::{parse_frame, LinkType};

const FLOWS: usize = 2_000;
const TICK: Duration = Duration::from_millis(50);
const IDLE: Duration = Duration::from_secs(60);

struct Net {
    server: Listener,
    clients: Vec<Connection>,
    by_addr: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
    events: Vec<ListenerEvent>,
}

impl Net {
    /// One wake-up at `now`: due client timers, then rounds of client → server → client
    /// until nothing moves. Returns the frames the server received.
    fn wake(&mut self, now: Instant) -> u64 {
        for c in &mut self.clients {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        let mut frames_in = 0;
        loop {
            let mut moved = 0;
            for c in &mut self.clients {
                while let Some(r) = c.poll_transmit(now, &mut self.buf) {
                    let p = parse_frame(LinkType::Ethernet, &self.buf[r]).expect("parse");
                    self.server.handle_frame(&p, now);
                    moved += 1;
                    frames_in += 1;
                }
                while c.poll_event().is_some() {}
            }
            // What a packet worker does at each wake-up.
            self.server.handle_timeout(now, &mut self.events);
            while let Some(r) = self.server.poll_transmit(now, &mut self.buf) {
                let p = parse_frame(LinkType::Ethernet, &self.buf[r]).expect("parse");
                let i = self.by_addr[&p.repr.dst];
                self.clients[i].handle_frame(&p, now);
                moved += 1;
            }
            self.server.poll_events(&mut self.events);
            self.events.clear();
            if moved == 0 {
                return frames_in;
            }
        }
    }

    /// Server connections whose own deadline has come at `now`.
    fn due(&self, now: Instant) -> u64 {
        self.server
            .connections()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .count() as u64
    }
}

#[test]
fn two_thousand_idle_flows_cost_only_their_own_deadlines() {
    let t0 = Instant::now();
    let cfg = conn_cfg(t0);
    let ids: Arc<[ServerIdentity]> = vec![shared("idle").server_identity()].into();
    let identity = Arc::new(shared("idle").client_identity());
    // Every client shares one key here: lift the per-key handshake budget.
    let gate = GateConfig {
        handshakes_per_client: (1e6, 1e6),
        handshakes_total: (1e6, 1e6),
        ..GateConfig::default()
    };
    let gshared = GateShared::new(&gate, cfg.wall.unix_ms(t0), t0);
    let server = Listener::new(
        cfg.clone(),
        ids,
        gate,
        gshared,
        server_addr(),
        SERVER_MAC,
        None,
        4 * FLOWS,
        seed(1),
    );
    let mut clients = Vec::with_capacity(FLOWS);
    let mut by_addr = HashMap::new();
    for i in 0..FLOWS {
        let addr = SocketAddr::new(
            [198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8].into(),
            40_000 + i as u16,
        );
        let c = Connection::client(
            cfg.clone(),
            identity.clone(),
            client_flow(addr),
            seed(100 + i as u64),
            t0,
        )
        .expect("client");
        by_addr.insert(addr, i);
        clients.push(c);
    }
    let mut net = Net {
        server,
        clients,
        by_addr,
        buf: vec![0; MAX_FRAME],
        events: Vec::new(),
    };

    // Every session up.
    let mut now = t0;
    while net.clients.iter().any(|c| c.phase() != Phase::Established) {
        assert!(now - t0 < Duration::from_secs(30), "sessions not up");
        net.wake(now);
        now += Duration::from_millis(1);
    }
    assert_eq!(net.server.connections().count(), FLOWS);
    // Let the openings' last ACKs and window updates settle.
    for _ in 0..20 {
        now += TICK;
        net.wake(now);
    }

    // A minute of idling, one wake-up per tick.
    let start_polls = net.server.stats().conn_polls;
    let start_stale = net.server.stats().timers_stale;
    let (mut wakeups, mut quiet_wakeups, mut total_due, mut total_frames) = (0u64, 0u64, 0, 0);
    let end = now + IDLE;
    while now < end {
        now += TICK;
        let due = net.due(now);
        let before = net.server.stats().conn_polls;
        let frames = net.wake(now);
        let polls = net.server.stats().conn_polls - before;
        wakeups += 1;
        total_due += due;
        total_frames += frames;
        assert!(
            polls <= 2 * (due + frames),
            "wake-up at +{:?}: {polls} visits for {due} due connections and {frames} frames",
            now - t0
        );
        if due == 0 && frames == 0 {
            quiet_wakeups += 1;
            assert_eq!(polls, 0, "a wake-up with nothing due visited connections");
        }
    }
    let polls = net.server.stats().conn_polls - start_polls;
    let stale = net.server.stats().timers_stale - start_stale;
    eprintln!(
        "{FLOWS} idle flows, {wakeups} wake-ups in {IDLE:?} ({quiet_wakeups} with nothing due): \
         {polls} visits for {total_due} deadlines and {total_frames} frames, {stale} stale \
         timer entries skipped (visiting every flow at every wake-up: {})",
        wakeups * FLOWS as u64
    );
    // A stale heap entry is left only by a visit that moved a deadline.
    assert!(
        stale <= polls,
        "{stale} stale timer entries for {polls} visits"
    );
    assert_eq!(net.server.connections().count(), FLOWS, "sessions lost");
    assert!(
        quiet_wakeups > 0,
        "no quiet wake-up: the test shows nothing"
    );
    // The keepalive is 10 s: a minute is ~6 pings each way per session, a few visits each.
    let per_flow = polls as f64 / FLOWS as f64;
    assert!(
        per_flow <= 6.0 * 8.0,
        "{per_flow:.1} visits per idle flow in a minute"
    );
}
