//! Daemon counters: each packet worker publishes a snapshot of its figures a few times a
//! second; readers (the stats file, logs) add the snapshots up. Workers never contend on a
//! counter on the per-packet path.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One worker's figures at one moment.
#[derive(Clone, Copy, Debug, Default)]
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
    pub unknown_flow: u64,
    pub streams_active: u64,
    pub send_errors: u64,
    pub rtt_ms: u64,
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
        self.unknown_flow += o.unknown_flow;
        self.streams_active += o.streams_active;
        self.send_errors += o.send_errors;
        self.rtt_ms = self.rtt_ms.max(o.rtt_ms);
    }
}

/// Shared by the workers, the tokio tasks and the stats writer.
#[derive(Default)]
pub struct Stats {
    workers: Mutex<Vec<Snapshot>>,
    /// Counted by tokio tasks.
    pub streams_opened: AtomicU64,
    pub dial_failures: AtomicU64,
    pub connect_failures: AtomicU64,
}

impl Stats {
    pub fn new(workers: usize) -> Arc<Stats> {
        Arc::new(Stats {
            workers: Mutex::new(vec![Snapshot::default(); workers]),
            ..Stats::default()
        })
    }

    pub fn publish(&self, worker: usize, snap: Snapshot) {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = w.get_mut(worker) {
            *slot = snap;
        }
    }

    pub fn total(&self) -> Snapshot {
        let w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = Snapshot::default();
        for s in w.iter() {
            t.add(s);
        }
        t
    }

    /// The counters as one JSON object.
    pub fn to_json(&self, role: &str) -> String {
        let t = self.total();
        let mut s = String::with_capacity(512);
        let _ = write!(
            s,
            "{{\"role\":\"{role}\",\"sessions_active\":{},\"handshakes_ok\":{},\
             \"auth_failures\":{},\"replays\":{},\"frames_in\":{},\"frames_out\":{},\
             \"bytes_in\":{},\"bytes_out\":{},\"rst_ignored\":{},\"unknown_flow\":{},\
             \"streams_active\":{},\"send_errors\":{},\"rtt_ms\":{},\"streams_opened\":{},\
             \"dial_failures\":{},\"connect_failures\":{}}}",
            t.sessions_active,
            t.handshakes_ok,
            t.auth_failures,
            t.replays,
            t.frames_in,
            t.frames_out,
            t.bytes_in,
            t.bytes_out,
            t.rst_ignored,
            t.unknown_flow,
            t.streams_active,
            t.send_errors,
            t.rtt_ms,
            self.streams_opened.load(Ordering::Relaxed),
            self.dial_failures.load(Ordering::Relaxed),
            self.connect_failures.load(Ordering::Relaxed),
        );
        s
    }

    /// Writes the JSON to `path` atomically (temp file + rename).
    pub fn write_file(&self, path: &Path, role: &str) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_json(role) + "\n")?;
        std::fs::rename(tmp, path)
    }
}
