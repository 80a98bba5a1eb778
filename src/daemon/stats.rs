//! Daemon counters: each packet worker publishes a snapshot of its figures and of its
//! sessions a few times a second; readers (the stats file, `rawtun status`, the metrics
//! endpoint) add the snapshots up. Workers never contend on a counter on the per-packet
//! path.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::endpoint::{ConnStats, ConnTotals, Connection, DropStats, Phase};
use crate::proxy::udp::{UdpCounters, UdpSnapshot};
use crate::proxy::{LimitCounters, LimitSnapshot};

/// One worker's figures at one moment, or every worker's added up. Each field is either a
/// counter, which never goes down while the daemon runs (Prometheus `rawtun_*_total`), or
/// one of the [`Snapshot::GAUGES`]. Sessions that end keep their counters: the server's listener and a
/// client worker each fold them into a [`ConnTotals`], and [`Snapshot::add_sessions`] adds
/// the live ones to that.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Gauge: established sessions.
    pub sessions_active: u64,
    /// Gauge: open tunnel streams.
    pub streams_active: u64,
    /// Gauge: the largest smoothed RTT of the established sessions (the largest of the
    /// workers' when added up).
    pub rtt_ms: u64,
    /// Gauge (high-water mark): deepest any worker's fairness lanes have been since start
    /// (inputs taken from its channel and not yet handled; up to as many more may wait in
    /// the channel).
    #[serde(default)]
    pub queue_peak: u64,
    /// Counters of the sessions, live and ended: `handshakes_ok`, `auth_failures`,
    /// `replays`, `packets_in`/`_out`, `bytes_in`/`_out`, `rst_ignored`, `datagrams_in`/
    /// `_out`/`_dropped` (refused by a session), `probes_out` (client), `key_updates`,
    /// `retransmits` and `fast_retransmits` (KCP). Flattened into the JSON object.
    #[serde(flatten)]
    pub conn: ConnStats,
    /// Counter: frames the capture handed to the workers.
    pub frames_in: u64,
    /// Counter: frames handed to the backend: the sessions' `packets_out` plus the
    /// server's `resets_sent`.
    pub frames_out: u64,
    /// Counter: frames the backend failed to send.
    pub send_errors: u64,
    /// Counter: datagrams that arrived for no open association.
    pub datagrams_unroutable: u64,
    /// Counter: datagrams dropped because their association's task was behind.
    pub datagrams_app_full: u64,
    /// Counter: resets sent (server) in answer to probes for sessions it does not have.
    #[serde(default)]
    pub resets_sent: u64,
    /// Counter: frames that failed to parse.
    #[serde(default)]
    pub parse_errors: u64,
    /// Counters (server): packets dropped without an answer, by reason.
    #[serde(default)]
    pub drops: DropStats,
    /// Counter: frames dropped because a worker's input channel (the capture thread) or the
    /// flow's lane in the worker (the worker, see `daemon/fair.rs`) was full.
    #[serde(default)]
    pub queue_full: u64,
}

impl Snapshot {
    /// The figures of the stats file (its flat JSON object, a snapshot's fields included)
    /// that are gauges: a level now, or a high-water mark. Every other figure is a counter.
    pub const GAUGES: [&'static str; 5] = [
        "sessions_active",
        "streams_active",
        "rtt_ms",
        "queue_peak",
        "udp_associations_active",
    ];

    fn add(&mut self, o: &Snapshot) {
        // Destructured, so a field added to the struct and not here fails to compile.
        let Snapshot {
            sessions_active,
            streams_active,
            rtt_ms,
            queue_peak,
            conn,
            frames_in,
            frames_out,
            send_errors,
            datagrams_unroutable,
            datagrams_app_full,
            resets_sent,
            parse_errors,
            drops,
            queue_full,
        } = *o;
        self.sessions_active += sessions_active;
        self.streams_active += streams_active;
        self.rtt_ms = self.rtt_ms.max(rtt_ms);
        self.queue_peak = self.queue_peak.max(queue_peak);
        self.conn += conn;
        self.frames_in += frames_in;
        self.frames_out += frames_out;
        self.send_errors += send_errors;
        self.datagrams_unroutable += datagrams_unroutable;
        self.datagrams_app_full += datagrams_app_full;
        self.resets_sent += resets_sent;
        self.parse_errors += parse_errors;
        self.drops += drops;
        self.queue_full += queue_full;
    }

    /// Adds the sessions of one worker: the counters of those that ended (`ended`) and of
    /// each `live` one, and the gauges of the live ones. Returns one `SessionInfo` per live
    /// connection. The server's and the client's workers both publish through this.
    pub fn add_sessions<'a>(
        &mut self,
        ended: &ConnTotals,
        live: impl IntoIterator<Item = &'a Connection>,
    ) -> Vec<SessionInfo> {
        self.conn += ended.retired();
        let mut sessions = Vec::new();
        for conn in live {
            let c = conn.stats();
            self.conn += c;
            let k = conn.kcp_stats().unwrap_or_default();
            if conn.phase() == Phase::Established {
                self.sessions_active += 1;
                self.rtt_ms = self.rtt_ms.max(u64::from(k.srtt_ms));
            }
            sessions.push(SessionInfo {
                local: conn.addrs().local,
                peer: conn.addrs().remote,
                phase: format!("{:?}", conn.phase()).to_lowercase(),
                rtt_ms: k.srtt_ms,
                rto_ms: k.rto_ms,
                retransmits: c.retransmits,
                fast_retransmits: c.fast_retransmits,
                in_flight: k.in_flight,
                packets_in: c.packets_in,
                packets_out: c.packets_out,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                streams: conn.stream_count(),
                auth_failures: c.auth_failures,
                client: conn.client_info().map(|i| i.name.to_string()),
                key_updates: c.key_updates,
            });
        }
        sessions
    }

    /// KCP retransmissions of both kinds.
    pub fn retransmits(&self) -> u64 {
        self.conn.retransmits + self.conn.fast_retransmits
    }
}

/// One session as `rawtun status` shows it. Its counters cover the connection's life (a
/// session the server replaced on the same flow included); they start again from zero for
/// a new connection, even from the same address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub phase: String,
    /// Gauge: KCP's smoothed RTT.
    pub rtt_ms: u32,
    /// Gauge: KCP's retransmission timeout.
    pub rto_ms: u32,
    /// Counter: KCP retransmissions after a timeout.
    pub retransmits: u64,
    /// Counter: KCP fast retransmissions.
    pub fast_retransmits: u64,
    /// Gauge: segments sent and not yet acknowledged.
    pub in_flight: usize,
    /// Counters: see [`ConnStats`].
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Gauge: open streams.
    pub streams: usize,
    /// Counter: packets on the flow that no key opened.
    pub auth_failures: u64,
    /// Server: the configured name of the session's client (`shared` for the shared key).
    #[serde(default)]
    pub client: Option<String>,
    /// Counter: key phases moved through (rekeys), both directions.
    #[serde(default)]
    pub key_updates: u64,
}

/// Everything `rawtun status` receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub role: String,
    pub uptime_s: u64,
    pub totals: Snapshot,
    pub streams_opened: u64,
    pub dial_failures: u64,
    pub connect_failures: u64,
    /// UDP front ends (client) or associations (server).
    #[serde(default)]
    pub udp: UdpSnapshot,
    /// Refusals by the target policy and the per-client limits (server).
    #[serde(default)]
    pub limits: LimitSnapshot,
    pub sessions: Vec<SessionInfo>,
    /// The packet backend (`afpacket` or `pcap`).
    #[serde(default)]
    pub backend: String,
    /// Per capture ring (AF_PACKET: one per packet worker; pcap: one), what it read and
    /// what the kernel dropped because the ring was full.
    #[serde(default)]
    pub capture: Vec<CaptureInfo>,
    /// Per packet worker, in worker order: its frames and its drops (a worker that falls
    /// behind shows here, not only in the totals).
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
}

/// One packet worker's counters as `rawtun status` shows them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Frames handed to this worker.
    pub frames_in: u64,
    /// Frames it handed to the backend.
    pub frames_out: u64,
    /// Frames dropped for it because its queue (the capture thread's) or a flow's lane
    /// (its own) was full.
    pub queue_full: u64,
    /// Frames the backend failed to send for it.
    pub send_errors: u64,
    /// Deepest its lanes have been.
    pub queue_peak: u64,
    /// Established sessions and open streams now.
    pub sessions_active: u64,
    pub streams_active: u64,
}

/// One capture ring's counters as `rawtun status` shows them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// Frames read from the ring.
    pub received: u64,
    /// Frames the kernel dropped: the ring was full (`PACKET_STATISTICS` / pcap_stats).
    pub dropped_by_kernel: u64,
    /// Frames skipped: longer than a tunnel frame can be.
    pub oversize: u64,
}

impl Report {
    /// The capture rings' counters added up.
    pub fn capture_total(&self) -> CaptureInfo {
        self.capture
            .iter()
            .fold(CaptureInfo::default(), |a, c| CaptureInfo {
                received: a.received + c.received,
                dropped_by_kernel: a.dropped_by_kernel + c.dropped_by_kernel,
                oversize: a.oversize + c.oversize,
            })
    }
}

#[derive(Default)]
struct WorkerView {
    snap: Snapshot,
    sessions: Vec<SessionInfo>,
}

/// Counted by the capture thread, read when workers' snapshots are added up.
#[derive(Default)]
struct CaptureView {
    queue_full: AtomicU64,
}

/// Shared by the workers, the tokio tasks and the readers.
pub struct Stats {
    role: &'static str,
    started: std::time::Instant,
    workers: Mutex<Vec<WorkerView>>,
    capture: Vec<CaptureView>,
    backend: &'static str,
    rings: Mutex<Vec<CaptureInfo>>,
    /// Counted by tokio tasks.
    pub streams_opened: AtomicU64,
    pub dial_failures: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Counted by the UDP tasks.
    pub udp: Arc<UdpCounters>,
    /// Policy and limit refusals (server).
    pub limits: Arc<LimitCounters>,
}

impl Stats {
    /// Counters of `workers` packet workers fed by `rings` capture rings of `backend`.
    pub fn new(
        role: &'static str,
        workers: usize,
        backend: &'static str,
        rings: usize,
    ) -> Arc<Stats> {
        Arc::new(Stats {
            role,
            started: std::time::Instant::now(),
            workers: Mutex::new((0..workers).map(|_| WorkerView::default()).collect()),
            capture: (0..workers).map(|_| CaptureView::default()).collect(),
            backend,
            rings: Mutex::new(vec![CaptureInfo::default(); rings]),
            streams_opened: AtomicU64::new(0),
            dial_failures: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            udp: Arc::default(),
            limits: Arc::default(),
        })
    }

    pub fn publish(&self, worker: usize, snap: Snapshot, sessions: Vec<SessionInfo>) {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = w.get_mut(worker) {
            *slot = WorkerView { snap, sessions };
        }
    }

    /// A capture thread's ring counters (since start).
    pub fn publish_capture(&self, ring: usize, info: CaptureInfo) {
        let mut r = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = r.get_mut(ring) {
            *slot = info;
        }
    }

    /// The capture thread dropped a frame for `worker`: its queue was full.
    pub fn count_queue_full(&self, worker: usize) {
        if let Some(c) = self.capture.get(worker) {
            c.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> Snapshot {
        self.views(false).0
    }

    /// The totals and each worker's counters from one look at the workers (so they add
    /// up), and the live sessions when `sessions`.
    fn views(&self, sessions: bool) -> (Snapshot, Vec<WorkerInfo>, Vec<SessionInfo>) {
        let w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = Snapshot::default();
        let mut workers = Vec::with_capacity(w.len());
        for (i, v) in w.iter().enumerate() {
            t.add(&v.snap);
            // Counted by the capture thread for this worker.
            let capture_full = self
                .capture
                .get(i)
                .map_or(0, |c| c.queue_full.load(Ordering::Relaxed));
            t.queue_full += capture_full;
            workers.push(WorkerInfo {
                frames_in: v.snap.frames_in,
                frames_out: v.snap.frames_out,
                queue_full: v.snap.queue_full + capture_full,
                send_errors: v.snap.send_errors,
                queue_peak: v.snap.queue_peak,
                sessions_active: v.snap.sessions_active,
                streams_active: v.snap.streams_active,
            });
        }
        let live = if sessions {
            w.iter().flat_map(|v| v.sessions.iter().cloned()).collect()
        } else {
            Vec::new()
        };
        (t, workers, live)
    }

    pub fn report(&self) -> Report {
        let (totals, workers, sessions) = self.views(true);
        Report {
            role: self.role.to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            totals,
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            udp: self.udp.snapshot(),
            limits: self.limits.snapshot(),
            sessions,
            backend: self.backend.to_owned(),
            capture: self.rings.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            workers,
        }
    }

    /// The counters as one flat JSON object (the `--stats-file` format).
    pub fn to_json(&self) -> String {
        let r = self.report();
        let ring = r.capture_total();
        let mut v = serde_json::to_value(r.totals).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("role".into(), r.role.into());
            m.insert("streams_opened".into(), r.streams_opened.into());
            m.insert("dial_failures".into(), r.dial_failures.into());
            m.insert("connect_failures".into(), r.connect_failures.into());
            if let Ok(serde_json::Value::Object(udp)) = serde_json::to_value(r.udp) {
                for (k, v) in udp {
                    m.insert(format!("udp_{k}"), v);
                }
            }
            m.remove("drops");
            for (reason, n) in r.totals.drops.reasons() {
                m.insert(format!("dropped_{reason}"), n.into());
            }
            if let Ok(serde_json::Value::Object(limits)) = serde_json::to_value(r.limits) {
                m.extend(limits);
            }
            m.insert("backend".into(), r.backend.clone().into());
            m.insert("capture_received".into(), ring.received.into());
            m.insert(
                "capture_dropped_by_kernel".into(),
                ring.dropped_by_kernel.into(),
            );
            m.insert("capture_oversize".into(), ring.oversize.into());
        }
        v.to_string()
    }

    /// Writes the JSON to `path` atomically (temp file + rename).
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_json() + "\n")?;
        std::fs::rename(tmp, path)
    }

    /// Prometheus text exposition of the same figures.
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let r = self.report();
        let t = &r.totals;
        let mut s = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP rawtun_{name} {help}\n# TYPE rawtun_{name} {kind}"
            );
            let _ = writeln!(s, "rawtun_{name}{{role=\"{}\"}} {value}", r.role);
        };
        let ring = r.capture_total();
        metric(
            "capture_received_total",
            "counter",
            "Frames read from the capture rings.",
            ring.received,
        );
        metric(
            "capture_kernel_drops_total",
            "counter",
            "Frames the kernel dropped because a capture ring was full.",
            ring.dropped_by_kernel,
        );
        metric(
            "sessions_active",
            "gauge",
            "Established sessions.",
            t.sessions_active,
        );
        metric(
            "streams_active",
            "gauge",
            "Open tunnel streams.",
            t.streams_active,
        );
        metric(
            "handshakes_total",
            "counter",
            "Completed handshakes.",
            t.conn.handshakes_ok,
        );
        metric(
            "auth_failures_total",
            "counter",
            "Packets that failed authentication.",
            t.conn.auth_failures,
        );
        metric(
            "replays_total",
            "counter",
            "Replayed packets dropped.",
            t.conn.replays,
        );
        metric(
            "frames_in_total",
            "counter",
            "Frames captured.",
            t.frames_in,
        );
        metric("frames_out_total", "counter", "Frames sent.", t.frames_out);
        metric(
            "bytes_in_total",
            "counter",
            "Tunnel payload bytes received.",
            t.conn.bytes_in,
        );
        metric(
            "bytes_out_total",
            "counter",
            "Tunnel frame bytes sent.",
            t.conn.bytes_out,
        );
        metric(
            "retransmits_total",
            "counter",
            "KCP retransmissions (after a timeout, and fast).",
            t.retransmits(),
        );
        metric(
            "rst_ignored_total",
            "counter",
            "TCP RSTs from the path ignored.",
            t.conn.rst_ignored,
        );
        metric(
            "send_errors_total",
            "counter",
            "Frames the backend failed to send.",
            t.send_errors,
        );
        metric(
            "streams_opened_total",
            "counter",
            "Streams opened.",
            r.streams_opened,
        );
        metric(
            "dial_failures_total",
            "counter",
            "Targets the server failed to reach.",
            r.dial_failures,
        );
        metric(
            "probes_total",
            "counter",
            "Probes sent because nothing came back for a while.",
            t.conn.probes_out,
        );
        metric(
            "resets_total",
            "counter",
            "Resets sent in answer to probes for lost sessions.",
            t.resets_sent,
        );
        let u = &r.udp;
        metric(
            "datagrams_out_total",
            "counter",
            "Datagram packets sent.",
            t.conn.datagrams_out,
        );
        metric(
            "datagrams_in_total",
            "counter",
            "Datagram packets received.",
            t.conn.datagrams_in,
        );
        metric(
            "udp_associations_active",
            "gauge",
            "Open UDP associations.",
            u.associations_active,
        );
        by_reason(
            &mut s,
            "udp_dropped_total",
            "Datagrams not carried, by reason.",
            &r.role,
            [
                ("oversize", u.dropped_oversize),
                ("queue_full", u.dropped_queue_full),
                ("fragment", u.dropped_fragment),
                ("foreign", u.dropped_foreign),
                ("malformed", u.dropped_malformed),
                ("denied", u.dropped_denied),
                ("limit", u.dropped_limit),
                ("session_refused", t.conn.datagrams_dropped),
                ("unroutable", t.datagrams_unroutable),
                ("task_behind", t.datagrams_app_full),
            ],
        );
        by_reason(
            &mut s,
            "dropped_total",
            "Packets dropped without an answer, by reason.",
            &r.role,
            t.drops.reasons().into_iter().chain([
                ("queue_full", t.queue_full),
                ("parse_error", t.parse_errors),
            ]),
        );
        for (name, help, field) in [
            (
                "worker_frames_in_total",
                "Frames handed to each packet worker.",
                (|w| w.frames_in) as fn(&WorkerInfo) -> u64,
            ),
            (
                "worker_queue_full_total",
                "Frames dropped because a packet worker's queue or a flow's lane in it was full.",
                |w| w.queue_full,
            ),
            (
                "worker_send_errors_total",
                "Frames a packet worker's backend failed to send.",
                |w| w.send_errors,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP rawtun_{name} {help}\n# TYPE rawtun_{name} counter"
            );
            for (i, w) in r.workers.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "rawtun_{name}{{role=\"{}\",worker=\"{i}\"}} {}",
                    r.role,
                    field(w)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP rawtun_client_sessions Established sessions per client.\n# TYPE rawtun_client_sessions gauge"
        );
        let mut per_client: std::collections::BTreeMap<&str, u64> = Default::default();
        for x in &r.sessions {
            if let Some(c) = &x.client {
                *per_client.entry(c.as_str()).or_default() += u64::from(x.phase == "established");
            }
        }
        for (client, n) in per_client {
            let _ = writeln!(s, "rawtun_client_sessions{{client=\"{client}\"}} {n}");
        }
        let l = &r.limits;
        by_reason(
            &mut s,
            "refused_total",
            "Opens and targets refused by the target policy or a per-client limit, by reason.",
            &r.role,
            [
                ("target_denied", l.targets_denied),
                ("streams_per_session", l.refused_streams),
                ("dials_per_session", l.refused_dials),
                ("lookups_per_session", l.refused_lookups),
                ("udp_associations_per_session", l.refused_udp),
                ("sessions_per_address", l.refused_sessions),
                ("receive_buffer", l.reset_over_buffer),
            ],
        );
        let _ = writeln!(s, "# HELP rawtun_session_rtt_ms Smoothed RTT per session.\n# TYPE rawtun_session_rtt_ms gauge");
        for x in &r.sessions {
            let _ = writeln!(
                s,
                "rawtun_session_rtt_ms{{peer=\"{}\",local=\"{}\",client=\"{}\"}} {}",
                x.peer,
                x.local,
                x.client.as_deref().unwrap_or(""),
                x.rtt_ms
            );
        }
        let _ = writeln!(s, "# HELP rawtun_session_retransmits_total Retransmissions per session.\n# TYPE rawtun_session_retransmits_total counter");
        for x in &r.sessions {
            let _ = writeln!(
                s,
                "rawtun_session_retransmits_total{{peer=\"{}\",local=\"{}\"}} {}",
                x.peer,
                x.local,
                x.retransmits + x.fast_retransmits
            );
        }
        s
    }
}

/// One Prometheus counter family with a `reason` label.
fn by_reason<'a>(
    s: &mut String,
    name: &str,
    help: &str,
    role: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "# HELP rawtun_{name} {help}\n# TYPE rawtun_{name} counter"
    );
    for (reason, value) in values {
        let _ = writeln!(
            s,
            "rawtun_{name}{{role=\"{role}\",reason=\"{reason}\"}} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot with every figure set (to `n`, or derived from it).
    fn busy(n: u64) -> Snapshot {
        // Every field of ConnStats, whatever it is called, through its JSON object.
        let mut v = serde_json::to_value(ConnStats::default()).expect("JSON");
        for x in v.as_object_mut().expect("object").values_mut() {
            *x = n.into();
        }
        let conn: ConnStats = serde_json::from_value(v).expect("JSON");
        Snapshot {
            sessions_active: 1,
            streams_active: 2,
            rtt_ms: 10 * n,
            queue_peak: 100 * n,
            conn,
            frames_in: n,
            frames_out: n,
            send_errors: n,
            datagrams_unroutable: n,
            datagrams_app_full: n,
            resets_sent: n,
            parse_errors: n,
            drops: DropStats {
                no_flow: n,
                ..DropStats::default()
            },
            queue_full: n,
        }
    }

    fn stats_with(snaps: &[Snapshot]) -> Arc<Stats> {
        let stats = Stats::new("server", snaps.len(), "afpacket", 1);
        for (i, s) in snaps.iter().enumerate() {
            stats.publish(i, *s, Vec::new());
        }
        stats
    }

    #[test]
    fn workers_add_up_counters_and_keep_the_level_of_gauges() {
        let t = stats_with(&[busy(1), busy(2)]).total();
        assert_eq!(t.conn.bytes_in, 3);
        assert_eq!(t.conn.fast_retransmits, 3);
        assert_eq!(t.retransmits(), 6);
        assert_eq!(t.drops.no_flow, 3);
        assert_eq!((t.sessions_active, t.streams_active), (2, 4));
        assert_eq!((t.rtt_ms, t.queue_peak), (20, 200), "largest, not summed");
    }

    /// Each worker's counters are shown apart (the capture thread's drops for it added to
    /// its own), and they add up to the totals.
    #[test]
    fn each_worker_shows_its_own_frames_and_drops() {
        let stats = stats_with(&[busy(1), busy(2)]);
        stats.count_queue_full(1);
        stats.count_queue_full(1);
        let r = stats.report();
        let w = &r.workers;
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].frames_in, w[0].queue_full, w[0].send_errors),
            (1, 1, 1)
        );
        assert_eq!(
            (w[1].frames_in, w[1].queue_full, w[1].send_errors),
            (2, 4, 2)
        );
        assert_eq!(r.totals.queue_full, w[0].queue_full + w[1].queue_full);
        assert_eq!(r.totals.frames_in, w[0].frames_in + w[1].frames_in);
        let human = super::super::control::render_status(&r);
        let row = human
            .lines()
            .find(|l| l.split_whitespace().next() == Some("1"))
            .unwrap_or_else(|| panic!("no row for worker 1:\n{human}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..5], ["1", "2", "2", "4", "2"], "{human}");
        let text = stats.to_prometheus();
        assert!(
            text.contains("rawtun_worker_queue_full_total{role=\"server\",worker=\"1\"} 4"),
            "{text}"
        );
        // A report from an older daemon (no per-worker figures) still reads.
        let mut old = serde_json::to_value(&r).expect("JSON");
        old.as_object_mut().expect("object").remove("workers");
        let back: Report = serde_json::from_value(old).expect("reads");
        assert!(back.workers.is_empty());
    }

    /// Every session counter reaches the stats file under its own name, beside the gauges.
    #[test]
    fn the_stats_file_has_every_session_counter_and_every_gauge() {
        let json: serde_json::Value =
            serde_json::from_str(&stats_with(&[busy(5)]).to_json()).expect("JSON");
        let conn = serde_json::to_value(ConnStats::default()).expect("JSON");
        for key in conn.as_object().expect("object").keys() {
            assert_eq!(json[key], 5, "{key} missing or wrong in {json}");
        }
        for key in Snapshot::GAUGES {
            assert!(json[key].is_u64(), "gauge {key} missing in {json}");
        }
        let back: Snapshot = serde_json::from_value(json).expect("a snapshot reads back");
        assert_eq!(back.conn, busy(5).conn);
    }

    /// Prometheus: a family is a counter exactly when its name ends in `_total`, and the
    /// gauges of the snapshot are exported as gauges.
    #[test]
    fn prometheus_counters_end_in_total_and_gauges_do_not() {
        let text = stats_with(&[busy(3)]).to_prometheus();
        let mut kinds = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}"
            );
            kinds += 1;
        }
        assert!(kinds > 10, "{text}");
        for gauge in ["sessions_active", "streams_active"] {
            assert!(
                text.contains(&format!("# TYPE rawtun_{gauge} gauge")),
                "{text}"
            );
        }
        assert!(
            text.contains("rawtun_retransmits_total{role=\"server\"} 6"),
            "{text}"
        );
    }
}
