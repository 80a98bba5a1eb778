//! A packet worker: an OS thread that owns a shard of the flows, their sessions, a transmit
//! handle and its buffers. It waits on two bounded queues, captured frames and application
//! commands (so a flood of frames never keeps a command out, nor the reverse), then runs the
//! sans-IO endpoint and sends what it produced. No lock on the per-packet path.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use super::bridge::{self, Command, Control, Input, Slot, StreamKey, StreamPort};
use super::fair::{FairQueue, Pushed};
use super::server::ServerCtx;
use super::stats::{Snapshot, Stats};
use crate::endpoint::{
    ConnConfig, ConnEvent, ConnTotals, Connection, Listener, ListenerEvent, MAX_FRAME,
};
use crate::faketcp::FlowAddrs;
use crate::io::{PacketTx, SendFailure};
use crate::mux::{Bound, MuxEvent, StreamId};
use crate::proxy::{LimitCounters, SessionBudget};
use crate::tunnel::{ConnectResult, OpenRequest, Protocol};
use crate::wire::{self, LinkType};

/// Longest a worker sleeps without looking at the shutdown flag.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often a worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Inputs handled per wake-up before transmitting (batching).
const BATCH: usize = 256;
/// Frames a worker holds in its fairness lanes ([`FairQueue`]) in all, and items in one
/// lane: a quarter, so one flow's own backlog stays short and three busy flows leave
/// room; when the lanes are full, the longest loses its oldest frame.
const LANES_CAP: usize = super::WORKER_QUEUE;
const LANE_CAP: usize = LANES_CAP / 4;
/// Rounds of moving inputs from the channels into the lanes per turn of the run loop at
/// most (a command and a frame each), so a flood the lanes refuse never keeps the worker
/// from its timers; what the worker does not take waits in its channel, and the capture
/// thread drops the frames that do not fit there.
const DRAIN_MAX: usize = 4 * BATCH;
/// Frames of flows that are not an established session of this worker (handshakes,
/// probes, strangers) share one lane: however many source ports a stranger uses, the
/// established sessions each keep their turn.
const STRANGERS_LANE: u64 = 0x5bd1_e995_5bd1_e995;
const COMMAND_LANE: u64 = 0x9e37_79b9_7f4a_7c15;
/// Client reconnect backoff bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// What the worker keeps per established session (beside its `Connection`).
struct SessionCtx {
    generation: u64,
    /// Send credit shared by the session's streams (`smuxbuf` bytes).
    credit: Arc<Semaphore>,
    /// Server: dials and lookups in flight.
    budget: Arc<SessionBudget>,
    /// Credited bytes of streams whose task has closed, still in the mux: returned to
    /// `credit` as they are framed.
    draining: HashMap<StreamId, usize>,
    /// Server: the client address this session is counted under.
    counted: Option<std::net::IpAddr>,
}
/// A client's connection slot: one of `transport.conn` sessions.
struct ClientSlot {
    conn: Option<Connection>,
    retry_at: Instant,
    backoff: Duration,
}

pub struct ClientSide {
    pub server: SocketAddr,
    /// Our credentials.
    pub identity: Arc<crate::crypto::ClientIdentity>,
    pub local_ip: std::net::IpAddr,
    /// Local ports are chosen so `port % workers == index`, so captured frames reach the
    /// worker that owns their flow.
    pub port_shard: (u16, u16),
    pub fixed_port: Option<u16>,
    pub local_mac: [u8; 6],
    pub router_mac: [u8; 6],
    pub sessions: usize,
    /// How long an open waits for a session before failing.
    pub open_wait: Duration,
}

struct ClientState {
    side: ClientSide,
    slots: Vec<ClientSlot>,
    pending: VecDeque<PendingOpen>,
    rr: usize,
    /// Counters of sessions that have ended, so totals never go backwards.
    retired: ConnTotals,
}

type PendingOpen = (
    Instant,
    OpenRequest,
    oneshot::Sender<Result<StreamPort, ConnectResult>>,
);

// One per worker: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Role {
    Client(ClientState),
    Server(Listener, Arc<ServerCtx>),
}

/// What ended a worker's wait.
enum Woke {
    Input(Input),
    Timeout,
    /// Every command sender is gone. (The worker holds one for its streams, so in the
    /// daemon it stops on the shutdown flag, seen within `MAX_WAIT`.)
    Closed,
    /// Every capture reader is gone (the daemon is stopping): stop waiting on frames.
    FramesClosed,
}

pub struct Worker {
    index: usize,
    /// Application commands and daemon controls.
    inputs: flume::Receiver<Input>,
    /// Captured frames (`Input::Frame`).
    frames: flume::Receiver<Input>,
    frames_open: bool,
    self_tx: flume::Sender<Input>,
    tx: Box<dyn PacketTx>,
    link: LinkType,
    cfg: ConnConfig,
    role: Role,
    streams: HashMap<StreamKey, Slot>,
    generations: HashMap<SocketAddr, u64>,
    sessions: HashMap<SocketAddr, SessionCtx>,
    next_generation: u64,
    stats: Arc<Stats>,
    runtime: tokio::runtime::Handle,
    shutdown: Arc<AtomicBool>,
    buf: Vec<u8>,
    events: Vec<ListenerEvent>,
    frames_in: u64,
    parse_errors: u64,
    send_errors: u64,
    /// Datagrams for no open association (late, or after it closed).
    datagrams_unroutable: u64,
    /// Datagrams dropped because their association's task was behind.
    datagrams_app_full: u64,
    /// Inputs taken from the channel and not yet handled, per flow.
    lanes: FairQueue<Input>,
    /// Frames (and datagrams) refused because their lane or all lanes were full.
    lanes_full: u64,
    /// The capture thread's flow hash key, and the hashes of this worker's established
    /// sessions' flows (refreshed at each publish): frames of other flows are strangers'.
    flow_key: std::collections::hash_map::RandomState,
    known_flows: std::collections::HashSet<u64>,
    /// Deepest the lanes have been (see `Snapshot::queue_peak`).
    queue_peak: u64,
    last_publish: Instant,
}

pub struct WorkerParts {
    pub index: usize,
    pub inputs: flume::Receiver<Input>,
    pub frames: flume::Receiver<Input>,
    pub self_tx: flume::Sender<Input>,
    pub tx: Box<dyn PacketTx>,
    pub link: LinkType,
    pub cfg: ConnConfig,
    pub stats: Arc<Stats>,
    pub runtime: tokio::runtime::Handle,
    pub shutdown: Arc<AtomicBool>,
    pub flow_key: std::collections::hash_map::RandomState,
}

impl Worker {
    pub fn client(p: WorkerParts, side: ClientSide) -> Worker {
        let now = Instant::now();
        let slots = (0..side.sessions)
            .map(|_| ClientSlot {
                conn: None,
                retry_at: now,
                backoff: RECONNECT_MIN,
            })
            .collect();
        Worker::new(
            p,
            Role::Client(ClientState {
                side,
                slots,
                pending: VecDeque::new(),
                rr: 0,
                retired: ConnTotals::default(),
            }),
        )
    }

    pub fn server(p: WorkerParts, listener: Listener, ctx: Arc<ServerCtx>) -> Worker {
        Worker::new(p, Role::Server(listener, ctx))
    }

    fn new(p: WorkerParts, role: Role) -> Worker {
        Worker {
            index: p.index,
            inputs: p.inputs,
            frames: p.frames,
            frames_open: true,
            self_tx: p.self_tx,
            tx: p.tx,
            link: p.link,
            cfg: p.cfg,
            role,
            streams: HashMap::new(),
            generations: HashMap::new(),
            sessions: HashMap::new(),
            next_generation: 1,
            stats: p.stats,
            runtime: p.runtime,
            shutdown: p.shutdown,
            buf: vec![0; MAX_FRAME],
            events: Vec::new(),
            frames_in: 0,
            parse_errors: 0,
            send_errors: 0,
            datagrams_unroutable: 0,
            datagrams_app_full: 0,
            lanes: FairQueue::new(LANES_CAP, LANE_CAP),
            lanes_full: 0,
            flow_key: p.flow_key,
            known_flows: Default::default(),
            queue_peak: 0,
            last_publish: Instant::now(),
        }
    }

    /// Runs until shutdown is requested or every input sender is gone.
    pub fn run(mut self) {
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            // Wait for input only when none is waiting in the lanes.
            if self.lanes.is_empty() {
                let now = Instant::now();
                let wait_until = self
                    .poll_timeout()
                    .map_or(now + MAX_WAIT, |t| t.min(now + MAX_WAIT));
                match self.wait(wait_until) {
                    Woke::Input(input) => self.stage(input),
                    Woke::Timeout => {}
                    Woke::Closed => break,
                    Woke::FramesClosed => self.frames_open = false,
                }
            }
            // What waits in the channels goes to its flow's lane (while the lanes have
            // room), a command and a frame in turn; then the lanes are served in turn: a
            // flow that floods the worker delays another flow's packet by one of its own,
            // not by its whole backlog.
            for _ in 0..DRAIN_MAX {
                if self.lanes.is_saturated() {
                    break;
                }
                let mut took = false;
                if let Ok(input) = self.inputs.try_recv() {
                    self.stage(input);
                    took = true;
                }
                if !self.lanes.is_saturated() {
                    if let Ok(input) = self.frames.try_recv() {
                        self.stage(input);
                        took = true;
                    }
                }
                if !took {
                    break;
                }
            }
            self.queue_peak = self.queue_peak.max(self.lanes.len() as u64);
            for _ in 0..BATCH {
                match self.lanes.pop() {
                    Some(input) => self.handle_input(input),
                    None => break,
                }
            }
            let now = Instant::now();
            self.handle_timeouts(now);
            self.transmit(now);
            self.dispatch_events();
            if now >= self.last_publish + PUBLISH_EVERY {
                self.last_publish = now;
                self.refresh_wall_clock();
                self.publish();
            }
        }
        // Tell the peers we stop: a server's clients reconnect as soon as it is back, a
        // client's server frees the session at once.
        let now = Instant::now();
        match &mut self.role {
            Role::Server(l, _) => l.close_all(now),
            Role::Client(cs) => {
                for conn in cs.slots.iter_mut().filter_map(|s| s.conn.as_mut()) {
                    conn.close_with_notice(crate::endpoint::CloseNotice::Shutdown, now);
                }
            }
        }
        self.transmit(now);
        self.publish();
    }

    /// Waits until `until` for a command or a frame, whichever comes first. Something
    /// already waiting is taken without building a selector (that registers hooks on both
    /// channels, and seeds a random generator).
    fn wait(&self, until: Instant) -> Woke {
        if let Ok(input) = self.inputs.try_recv() {
            return Woke::Input(input);
        }
        if let Ok(input) = self.frames.try_recv() {
            return Woke::Input(input);
        }
        let mut sel =
            flume::Selector::new().recv(&self.inputs, |r| r.map_or(Woke::Closed, Woke::Input));
        if self.frames_open {
            sel = sel.recv(&self.frames, |r| r.map_or(Woke::FramesClosed, Woke::Input));
        }
        sel.wait_deadline(until).unwrap_or(Woke::Timeout)
    }

    /// Follows the system clock (which NTP may step) for the Unix time proofs carry.
    fn refresh_wall_clock(&mut self) {
        let wall = super::wall_clock();
        self.cfg.wall = wall;
        if let Role::Server(l, _) = &mut self.role {
            l.set_wall_clock(wall);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.role {
            Role::Server(l, _) => l.poll_timeout(),
            Role::Client(c) => {
                let mut t: Option<Instant> = c.pending.front().map(|p| p.0);
                for s in &c.slots {
                    let d = match &s.conn {
                        Some(conn) => conn.poll_timeout(),
                        None => Some(s.retry_at),
                    };
                    t = match (t, d) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                t
            }
        }
    }

    /// Puts `input` in its flow's lane: frames of an established session by the flow hash
    /// the capture thread computed, other frames in the strangers' lane, commands by their
    /// session. A frame or datagram its lane has no room for is dropped and counted; other
    /// commands are always taken (stream credit and the channel's bound hold them back).
    fn stage(&mut self, input: Input) {
        let (lane, must) = match &input {
            Input::Frame { flow, .. } => (self.frame_lane(*flow), false),
            Input::Cmd(c) => (
                c.session()
                    .map_or(0, |a| super::flow_hash(&self.flow_key, a))
                    ^ COMMAND_LANE,
                !matches!(c, Command::Datagram { .. }),
            ),
            Input::Control(_) => return self.handle_input(input),
        };
        match self.lanes.push(lane, input, must) {
            Pushed::Queued => {}
            Pushed::Evicted(_) | Pushed::Refused(_) => self.lanes_full += 1,
        }
    }

    /// The lane of a frame of `flow`: its own for an established session's flow (a
    /// client's: one of its connections' ports), else the strangers' lane.
    fn frame_lane(&self, flow: u64) -> u64 {
        let known = match &self.role {
            Role::Server(..) => self.known_flows.contains(&flow),
            Role::Client(c) => c.slots.iter().any(|s| {
                s.conn
                    .as_ref()
                    .is_some_and(|conn| u64::from(conn.addrs().local.port()) == flow)
            }),
        };
        if known {
            flow
        } else {
            STRANGERS_LANE
        }
    }

    /// The flow hashes of this worker's established sessions (server).
    fn refresh_known_flows(&mut self) {
        if let Role::Server(l, _) = &self.role {
            self.known_flows.clear();
            for (peer, conn) in l.connections() {
                if conn.phase() == crate::endpoint::Phase::Established {
                    self.known_flows
                        .insert(super::flow_hash(&self.flow_key, *peer));
                }
            }
        }
    }

    fn handle_input(&mut self, input: Input) {
        match input {
            Input::Frame { flow, data } => {
                let peer = self.handle_frame(&data);
                // A session that has just been established gets its own lane at once.
                if let (Some(peer), Role::Server(l, _)) = (peer, &self.role) {
                    if !self.known_flows.contains(&flow)
                        && l.connection(&peer)
                            .is_some_and(|c| c.phase() == crate::endpoint::Phase::Established)
                    {
                        self.known_flows.insert(flow);
                    }
                }
            }
            Input::Cmd(c) => self.handle_command(c),
            Input::Control(Control::SetIdentities(ids)) => {
                if let Role::Server(l, _) = &mut self.role {
                    l.set_identities(ids, Instant::now());
                }
            }
        }
    }

    /// Feeds one frame to its connection; on a server, returns the client it belonged to.
    fn handle_frame(&mut self, frame: &[u8]) -> Option<SocketAddr> {
        let now = Instant::now();
        self.frames_in += 1;
        let parsed = match wire::parse_frame(self.link, frame) {
            Ok(p) => p,
            Err(_) => {
                self.parse_errors += 1;
                return None;
            }
        };
        match &mut self.role {
            Role::Server(listener, _) => listener.handle_frame(&parsed, now),
            Role::Client(c) => {
                let dst = parsed.repr.dst;
                let src = parsed.repr.src;
                if src != c.side.server {
                    self.parse_errors += 1;
                    return None;
                }
                for slot in c.slots.iter_mut() {
                    if let Some(conn) = slot.conn.as_mut() {
                        if conn.addrs().local.port() == dst.port() {
                            conn.handle_frame(&parsed, now);
                            return None;
                        }
                    }
                }
                None
            }
        }
    }

    fn handle_command(&mut self, c: Command) {
        match c {
            Command::Open { req, reply } => {
                if let Role::Client(cs) = &mut self.role {
                    cs.pending
                        .push_back((Instant::now() + cs.side.open_wait, req, reply));
                } else {
                    let _ = reply.send(Err(ConnectResult::Failure));
                }
                self.serve_pending_opens();
            }
            Command::Data {
                key,
                data,
                credited,
            } => {
                let len = data.len();
                if self.with_conn(key, |conn| conn.stream_write(key.id, &data)) {
                    match self.streams.get_mut(&key) {
                        Some(slot) => slot.queue(len, credited),
                        // No slot (the task sends nothing after Close, so this is not
                        // expected): the credit returns as the bytes are framed.
                        None if credited => {
                            if let Some(s) = self.session_of(key) {
                                *s.draining.entry(key.id).or_insert(0) += len;
                            }
                        }
                        None => {}
                    }
                } else {
                    if credited {
                        self.return_credit(key, len);
                    }
                    self.drop_stream(key);
                }
            }
            Command::Finish { key } => {
                self.with_conn(key, |conn| {
                    conn.stream_finish(key.id);
                    true
                });
            }
            Command::Reset { key } => {
                self.with_conn(key, |conn| {
                    conn.stream_reset(key.id);
                    true
                });
                self.drop_stream(key);
            }
            Command::Consumed { key, bytes } => {
                self.with_conn(key, |conn| {
                    conn.stream_consumed(key.id, bytes);
                    true
                });
            }
            Command::Close { key } => self.close_stream(key),
            Command::Datagram { key, body } => {
                // Only for an association that is still open; refusals count in ConnStats.
                if self.streams.contains_key(&key) {
                    self.with_conn(key, |conn| conn.send_datagram(&body).is_ok());
                } else {
                    self.datagrams_unroutable += 1;
                }
            }
        }
    }

    /// Runs `f` on the connection of `key` if its session generation is still current.
    fn with_conn(&mut self, key: StreamKey, f: impl FnOnce(&mut Connection) -> bool) -> bool {
        if self.generations.get(&key.conn) != Some(&key.generation) {
            return false;
        }
        match &mut self.role {
            Role::Server(l, _) => l.connection_mut(&key.conn).is_some_and(f),
            Role::Client(c) => c
                .slots
                .iter_mut()
                .filter_map(|s| s.conn.as_mut())
                .find(|conn| conn.addrs().local == key.conn)
                .is_some_and(f),
        }
    }

    /// Forgets a stream that is gone from the mux (reset, or its session lost): its task
    /// sees a reset (the slot's drop resets the inbox) and its unsent bytes' credit returns
    /// to the session.
    fn drop_stream(&mut self, key: StreamKey) {
        let mut queued = 0;
        if let Some(slot) = self.streams.remove(&key) {
            queued = slot.queued;
        }
        if let Some(s) = self.session_of(key) {
            queued += s.draining.remove(&key.id).unwrap_or(0);
        }
        self.return_credit(key, queued);
    }

    /// The task is done with a stream that may still have bytes in the mux: their credit
    /// returns as they are framed.
    fn close_stream(&mut self, key: StreamKey) {
        let Some(slot) = self.streams.remove(&key) else {
            return;
        };
        // A reset or session loss later releases what is left (drop_stream).
        if slot.queued > 0 {
            if let Some(s) = self.session_of(key) {
                *s.draining.entry(key.id).or_insert(0) += slot.queued;
            }
        }
    }

    /// The session of `key`, if it is still the current one on its connection.
    fn session_of(&mut self, key: StreamKey) -> Option<&mut SessionCtx> {
        self.sessions
            .get_mut(&key.conn)
            .filter(|s| s.generation == key.generation)
    }

    fn return_credit(&mut self, key: StreamKey, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if let Some(s) = self.session_of(key) {
            s.credit.add_permits(bytes);
        }
    }

    fn serve_pending_opens(&mut self) {
        let Role::Client(cs) = &mut self.role else {
            return;
        };
        let now = Instant::now();
        while let Some((deadline, _, _)) = cs.pending.front() {
            let n = cs.slots.len();
            // Established *and* its Established event handled (its generation exists), so
            // stream keys carry the right generation.
            let generations = &self.generations;
            let pick = (0..n).map(|i| (cs.rr + i) % n).find(|&i| {
                cs.slots[i].conn.as_ref().is_some_and(|c| {
                    c.phase() == crate::endpoint::Phase::Established
                        && generations.contains_key(&c.addrs().local)
                })
            });
            let Some(i) = pick else {
                if *deadline <= now {
                    if let Some((_, req, reply)) = cs.pending.pop_front() {
                        tracing::warn!(target = %req.target, "no tunnel session: open failed");
                        let _ = reply.send(Err(ConnectResult::Failure));
                    }
                    continue;
                }
                return;
            };
            cs.rr = i + 1;
            let Some((_, req, reply)) = cs.pending.pop_front() else {
                return;
            };
            if reply.is_closed() {
                continue;
            }
            let Some(conn) = cs.slots[i].conn.as_mut() else {
                continue;
            };
            let mut header = Vec::new();
            req.encode(&mut header);
            let Some(id) = conn.open_stream(&header) else {
                let _ = reply.send(Err(ConnectResult::Failure));
                continue;
            };
            let addr = conn.addrs().local;
            let generation = self.generations.get(&addr).copied().unwrap_or(0);
            let key = StreamKey {
                conn: addr,
                generation,
                id,
            };
            let datagram_max = (req.protocol == Protocol::Udp).then(|| conn.max_datagram());
            let Some(credit) = self.sessions.get(&addr).map(|s| s.credit.clone()) else {
                conn.stream_reset(id);
                let _ = reply.send(Err(ConnectResult::Failure));
                continue;
            };
            let (slot, port) = bridge::stream_pair(key, self.self_tx.clone(), credit, datagram_max);
            if reply.send(Ok(port)).is_ok() {
                self.streams.insert(key, slot);
            } else {
                conn.stream_reset(id);
            }
        }
    }

    fn handle_timeouts(&mut self, now: Instant) {
        match &mut self.role {
            Role::Server(l, _) => l.handle_timeout(now, &mut self.events),
            Role::Client(cs) => {
                let used_ports: Vec<u16> = cs
                    .slots
                    .iter()
                    .filter_map(|s| s.conn.as_ref())
                    .map(|c| c.addrs().local.port())
                    .collect();
                for slot in cs.slots.iter_mut() {
                    match &mut slot.conn {
                        Some(conn) => {
                            if conn.poll_timeout().is_some_and(|t| t <= now) {
                                conn.handle_timeout(now);
                            }
                            if conn.is_closed() {
                                let local = conn.addrs().local;
                                cs.retired.retire(conn);
                                while let Some(event) = conn.poll_event() {
                                    self.events.push(ListenerEvent { peer: local, event });
                                }
                                slot.conn = None;
                                slot.retry_at = now + slot.backoff;
                                tracing::info!(
                                    retry_in_ms = slot.backoff.as_millis() as u64,
                                    "session lost; reconnecting"
                                );
                                slot.backoff = (slot.backoff * 2).min(RECONNECT_MAX);
                            }
                        }
                        None if slot.retry_at <= now => {
                            slot.conn = new_client_conn(&self.cfg, &cs.side, &used_ports, now);
                            slot.retry_at = now + RECONNECT_MAX;
                        }
                        None => {}
                    }
                }
                let expired = cs.pending.front().is_some_and(|p| p.0 <= now);
                if expired {
                    self.serve_pending_opens();
                }
            }
        }
    }

    fn transmit(&mut self, now: Instant) {
        let buf = &mut self.buf;
        let tx = &mut self.tx;
        let send_errors = &mut self.send_errors;
        let mut count = |r: Result<(), SendFailure>| {
            if let Err(f) = r {
                *send_errors += f.frames as u64;
                tracing::debug!(error = %f.error, frames = f.frames, "send failed");
            }
        };
        match &mut self.role {
            Role::Server(l, _) => {
                while let Some(r) = l.poll_transmit(now, buf) {
                    count(tx.queue(&buf[r]));
                }
            }
            Role::Client(cs) => {
                for conn in cs.slots.iter_mut().filter_map(|s| s.conn.as_mut()) {
                    while let Some(r) = conn.poll_transmit(now, buf) {
                        count(tx.queue(&buf[r]));
                    }
                }
            }
        }
        // Whatever the backend batched goes out now: nothing waits past this pass.
        count(tx.flush());
    }

    fn dispatch_events(&mut self) {
        match &mut self.role {
            Role::Server(l, _) => l.poll_events(&mut self.events),
            Role::Client(cs) => {
                for slot in cs.slots.iter_mut() {
                    if let Some(conn) = slot.conn.as_mut() {
                        let local = conn.addrs().local;
                        while let Some(event) = conn.poll_event() {
                            if matches!(event, ConnEvent::Established) {
                                slot.backoff = RECONNECT_MIN;
                            }
                            self.events.push(ListenerEvent { peer: local, event });
                        }
                    }
                }
            }
        }
        let events = std::mem::take(&mut self.events);
        let mut opened = false;
        for ListenerEvent { peer, event } in events {
            match event {
                ConnEvent::Established => {
                    let generation = self.next_generation;
                    self.generations.insert(peer, generation);
                    self.next_generation += 1;
                    self.session_established(peer, generation);
                    opened = true;
                }
                ConnEvent::SessionLost(_) => {
                    self.generations.remove(&peer);
                    let keys: Vec<StreamKey> = self
                        .streams
                        .keys()
                        .filter(|k| k.conn == peer)
                        .copied()
                        .collect();
                    for k in keys {
                        self.drop_stream(k);
                    }
                    if let Some(s) = self.sessions.remove(&peer) {
                        if let (Some(ip), Role::Server(_, ctx)) = (s.counted, &self.role) {
                            ctx.addresses.release(ip);
                        }
                    }
                }
                ConnEvent::Stream(ev) => self.stream_event(peer, ev),
                // The task's channel takes an owned copy; the arena piece is dropped here.
                ConnEvent::Datagram(body) => self.route_datagram(peer, body.to_vec()),
            }
        }
        if opened {
            self.serve_pending_opens();
        }
    }

    fn stream_event(&mut self, peer: SocketAddr, ev: MuxEvent) {
        let generation = self.generations.get(&peer).copied().unwrap_or(0);
        let key = |id| StreamKey {
            conn: peer,
            generation,
            id,
        };
        match ev {
            MuxEvent::Opened { id, payload } => self.accept_stream(key(id), &payload),
            MuxEvent::Data { id, data } => match self.streams.get(&key(id)) {
                Some(s) => s.inbox.push(&data),
                None => {
                    // The task is gone: nobody will consume these bytes.
                    self.with_conn(key(id), |c| {
                        c.stream_reset(id);
                        true
                    });
                    self.drop_stream(key(id));
                }
            },
            MuxEvent::Finished { id } => {
                let udp = match self.streams.get(&key(id)) {
                    Some(s) => {
                        s.inbox.finish();
                        s.datagrams.is_some()
                    }
                    None => false,
                };
                if udp {
                    // The peer ended the association: end ours (its task sees the datagram
                    // channel close) and release the stream.
                    self.drop_stream(key(id));
                    self.with_conn(key(id), |c| {
                        c.stream_reset(id);
                        true
                    });
                }
            }
            MuxEvent::Reset { id } => self.drop_stream(key(id)),
            MuxEvent::Sent { id, bytes } => {
                let k = key(id);
                let credited = match self.streams.get_mut(&k) {
                    Some(slot) => {
                        let n = slot.sent(bytes);
                        slot.credit.add_permits(n);
                        n
                    }
                    None => match self.session_of(k) {
                        Some(s) => match s.draining.get_mut(&id) {
                            Some(left) => {
                                let n = bytes.min(*left);
                                *left -= n;
                                if *left == 0 {
                                    s.draining.remove(&id);
                                }
                                n
                            }
                            None => 0,
                        },
                        None => 0,
                    },
                };
                self.return_credit(k, credited);
            }
            MuxEvent::Exceeded { bound, .. } => {
                let counters = self.counters();
                let c = match bound {
                    Bound::Streams => &counters.refused_streams,
                    Bound::StreamWindow | Bound::SessionWindow => &counters.reset_over_buffer,
                };
                LimitCounters::bump(c);
            }
            MuxEvent::Pong { .. } => {}
        }
    }

    /// The refusal counters (the server's, or the daemon's on a client).
    fn counters(&self) -> Arc<LimitCounters> {
        match &self.role {
            Role::Server(_, ctx) => ctx.counters.clone(),
            Role::Client(_) => self.stats.limits.clone(),
        }
    }

    /// A session is up: its credit and budget; on a server, counted under its client
    /// address, or closed when that address has `limits.sessions_per_address` already.
    fn session_established(&mut self, peer: SocketAddr, generation: u64) {
        let window = self.cfg.mux.session_window as usize;
        let (budget, counted) = match &self.role {
            Role::Server(_, ctx) => {
                let ip = peer.ip();
                if !ctx.addresses.admit(ip, ctx.limits.sessions_per_address) {
                    tracing::warn!(
                        %peer,
                        max = ctx.limits.sessions_per_address,
                        "session limit of this client address reached: closing the new session"
                    );
                    LimitCounters::bump(&ctx.counters.refused_sessions);
                    if let Role::Server(l, _) = &mut self.role {
                        if let Some(c) = l.connection_mut(&peer) {
                            c.close_by_limit();
                        }
                    }
                    return;
                }
                (ctx.session_budget(), Some(ip))
            }
            Role::Client(_) => (SessionBudget::unlimited(), None),
        };
        self.sessions.insert(
            peer,
            SessionCtx {
                generation,
                credit: Arc::new(Semaphore::new(window)),
                budget,
                draining: HashMap::new(),
                counted,
            },
        );
    }

    /// Hands a received datagram to its association's task.
    fn route_datagram(&mut self, peer: SocketAddr, body: Vec<u8>) {
        let Some(&generation) = self.generations.get(&peer) else {
            self.datagrams_unroutable += 1;
            return;
        };
        let Ok(id) = crate::tunnel::datagram_association(&body) else {
            self.datagrams_unroutable += 1;
            return;
        };
        let key = StreamKey {
            conn: peer,
            generation,
            id,
        };
        match self.streams.get(&key).and_then(|s| s.datagrams.as_ref()) {
            Some(tx) => {
                if tx.try_send(body).is_err() {
                    self.datagrams_app_full += 1;
                }
            }
            None => self.datagrams_unroutable += 1,
        }
    }

    /// Server: a client opened a stream.
    fn accept_stream(&mut self, key: StreamKey, header: &[u8]) {
        let Role::Server(_, ctx) = &self.role else {
            // Clients do not accept streams from the server.
            self.with_conn(key, |c| {
                c.stream_reset(key.id);
                true
            });
            return;
        };
        let ctx = ctx.clone();
        let req = match OpenRequest::decode(header) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "bad stream open header");
                self.with_conn(key, |c| {
                    c.stream_reset(key.id);
                    true
                });
                return;
            }
        };
        let Some((credit, budget)) = self
            .sessions
            .get(&key.conn)
            .filter(|s| s.generation == key.generation)
            .map(|s| (s.credit.clone(), s.budget.clone()))
        else {
            // A session over its address limit, closing: it gets no streams.
            self.with_conn(key, |c| {
                c.stream_reset(key.id);
                true
            });
            return;
        };
        if req.protocol == Protocol::Udp {
            let open = self
                .streams
                .iter()
                .filter(|(k, s)| k.conn == key.conn && s.datagrams.is_some())
                .count();
            let mut max = None;
            self.with_conn(key, |c| {
                max = Some(c.max_datagram());
                true
            });
            let limit = ctx.limits.udp_associations_per_session;
            let Some(max) = max.filter(|_| open < limit) else {
                tracing::warn!(peer = %key.conn, open, "UDP association limit reached: refused");
                LimitCounters::bump(&ctx.counters.refused_udp);
                crate::proxy::udp::bump(&self.stats.udp.dropped_limit);
                self.with_conn(key, |c| {
                    c.stream_reset(key.id);
                    true
                });
                return;
            };
            let (slot, port) = bridge::stream_pair(key, self.self_tx.clone(), credit, Some(max));
            self.streams.insert(key, slot);
            self.runtime.spawn(super::server::serve_udp(
                port,
                req,
                ctx,
                budget,
                self.stats.clone(),
            ));
            return;
        }
        let (slot, port) = bridge::stream_pair(key, self.self_tx.clone(), credit, None);
        self.streams.insert(key, slot);
        self.runtime.spawn(super::server::serve_stream(
            port,
            req,
            ctx,
            budget,
            self.stats.clone(),
        ));
    }

    fn publish(&mut self) {
        self.refresh_known_flows();
        let mut s = Snapshot {
            frames_in: self.frames_in,
            parse_errors: self.parse_errors,
            send_errors: self.send_errors,
            streams_active: self.streams.len() as u64,
            datagrams_unroutable: self.datagrams_unroutable,
            datagrams_app_full: self.datagrams_app_full,
            queue_peak: self.queue_peak,
            queue_full: self.lanes_full,
            ..Snapshot::default()
        };
        let sessions = match &self.role {
            Role::Server(l, _) => {
                let ls = l.stats();
                s.drops = ls.drops;
                s.resets_sent = ls.resets_sent;
                s.add_sessions(l.retired(), l.connections().map(|(_, c)| c))
            }
            Role::Client(cs) => {
                s.add_sessions(&cs.retired, cs.slots.iter().filter_map(|s| s.conn.as_ref()))
            }
        };
        s.frames_out = s.conn.packets_out + s.resets_sent;
        self.stats.publish(self.index, s, sessions);
    }
}

fn new_client_conn(
    cfg: &ConnConfig,
    side: &ClientSide,
    used: &[u16],
    now: Instant,
) -> Option<Connection> {
    let (index, workers) = side.port_shard;
    let port = match side.fixed_port {
        Some(p) => p,
        None => {
            // A random port in 32768..61000 that belongs to this worker's shard and that no
            // other session of this worker uses (two flows on one port would collide).
            let mut port = 0;
            for _ in 0..64 {
                let base = 32768 + (rand::random::<u16>() % 28000);
                port = base - (base % workers) + index;
                if !used.contains(&port) {
                    break;
                }
            }
            port
        }
    };
    let addrs = FlowAddrs {
        local: SocketAddr::new(side.local_ip, port),
        remote: side.server,
        local_mac: side.local_mac,
        remote_mac: side.router_mac,
    };
    tracing::info!(local = %addrs.local, server = %side.server, "opening session");
    match Connection::client(
        cfg.clone(),
        side.identity.clone(),
        addrs,
        rand::random(),
        now,
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot start handshake");
            None
        }
    }
}
