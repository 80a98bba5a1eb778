//! Daemon counters: each packet worker publishes a snapshot of its figures and of its
//! sessions a few times a second; readers (the stats file, `rawtun status`, the metrics
//! endpoint) add the snapshots up. Workers never contend on a counter on the per-packet
//! path.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::endpoint::DropStats;
use crate::proxy::udp::{UdpCounters, UdpSnapshot};
use crate::proxy::{LimitCounters, LimitSnapshot};

/// One worker's figures at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub sessions_active: u64,
    pub handshakes_ok: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rst_ignored: u64,
    pub streams_active: u64,
    pub send_errors: u64,
    pub rtt_ms: u64,
    pub retransmits: u64,
    /// Datagram packets sent / received by the sessions.
    pub datagrams_out: u64,
    pub datagrams_in: u64,
    /// Datagrams a session refused to queue (too large, queue full, no session).
    pub datagrams_dropped: u64,
    /// Datagrams that arrived for no open association.
    pub datagrams_unroutable: u64,
    /// Datagrams dropped because their association's task was behind.
    pub datagrams_app_full: u64,
    /// Probes sent (client) / resets sent (server).
    #[serde(default)]
    pub probes_out: u64,
    #[serde(default)]
    pub resets_sent: u64,
    /// Key phases moved through by live sessions (rekeys).
    #[serde(default)]
    pub key_updates: u64,
    /// Frames that failed to parse.
    #[serde(default)]
    pub parse_errors: u64,
    /// Server: packets dropped without an answer, by reason.
    #[serde(default)]
    pub drops: DropStats,
    /// Frames dropped because a worker's input channel (the capture thread) or the flow's
    /// lane in the worker (the worker, see `daemon/fair.rs`) was full.
    #[serde(default)]
    pub queue_full: u64,
    /// Deepest any worker's fairness lanes have been since start (inputs taken from its
    /// channel and not yet handled; up to as many more may wait in the channel).
    #[serde(default)]
    pub queue_peak: u64,
}

impl Snapshot {
    fn add(&mut self, o: &Snapshot) {
        self.sessions_active += o.sessions_active;
        self.handshakes_ok += o.handshakes_ok;
        self.auth_failures += o.auth_failures;
        self.replays += o.replays;
        self.frames_in += o.frames_in;
        self.frames_out += o.frames_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rst_ignored += o.rst_ignored;
        self.streams_active += o.streams_active;
        self.send_errors += o.send_errors;
        self.rtt_ms = self.rtt_ms.max(o.rtt_ms);
        self.retransmits += o.retransmits;
        self.datagrams_out += o.datagrams_out;
        self.datagrams_in += o.datagrams_in;
        self.datagrams_dropped += o.datagrams_dropped;
        self.datagrams_unroutable += o.datagrams_unroutable;
        self.datagrams_app_full += o.datagrams_app_full;
        self.probes_out += o.probes_out;
        self.resets_sent += o.resets_sent;
        self.key_updates += o.key_updates;
        self.parse_errors += o.parse_errors;
        self.drops += o.drops;
        self.queue_full += o.queue_full;
        self.queue_peak = self.queue_peak.max(o.queue_peak);
    }
}

/// One session as `rawtun status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub phase: String,
    pub rtt_ms: u32,
    pub rto_ms: u32,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub in_flight: usize,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub streams: usize,
    pub auth_failures: u64,
    /// Server: the configured name of the session's client (`shared` for the shared key).
    #[serde(default)]
    pub client: Option<String>,
    /// Key phases moved through (rekeys), both directions.
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
        let w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = Snapshot::default();
        for v in w.iter() {
            t.add(&v.snap);
        }
        t.queue_full += self
            .capture
            .iter()
            .map(|c| c.queue_full.load(Ordering::Relaxed))
            .sum::<u64>();
        t
    }

    pub fn report(&self) -> Report {
        let sessions = {
            let w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            w.iter().flat_map(|v| v.sessions.iter().cloned()).collect()
        };
        Report {
            role: self.role.to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            totals: self.total(),
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            udp: self.udp.snapshot(),
            limits: self.limits.snapshot(),
            sessions,
            backend: self.backend.to_owned(),
            capture: self.rings.lock().unwrap_or_else(|e| e.into_inner()).clone(),
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
            t.handshakes_ok,
        );
        metric(
            "auth_failures_total",
            "counter",
            "Packets that failed authentication.",
            t.auth_failures,
        );
        metric(
            "replays_total",
            "counter",
            "Replayed packets dropped.",
            t.replays,
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
            t.bytes_in,
        );
        metric(
            "bytes_out_total",
            "counter",
            "Tunnel frame bytes sent.",
            t.bytes_out,
        );
        metric(
            "retransmits_total",
            "counter",
            "KCP retransmissions.",
            t.retransmits,
        );
        metric(
            "rst_ignored_total",
            "counter",
            "TCP RSTs from the path ignored.",
            t.rst_ignored,
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
            t.probes_out,
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
            t.datagrams_out,
        );
        metric(
            "datagrams_in_total",
            "counter",
            "Datagram packets received.",
            t.datagrams_in,
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
                ("session_refused", t.datagrams_dropped),
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
