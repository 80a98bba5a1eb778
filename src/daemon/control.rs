//! Local control surfaces of a running daemon: the status socket (`rawtun status`) and the
//! Prometheus metrics endpoint (`metrics.listen`). Both only read [`Stats`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stats::{Report, Stats};

/// Default status socket for a config file: `/run/rawtun/<file stem>.sock`.
pub fn default_socket(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or_else(|| "rawtun".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("/run/rawtun").join(format!("{stem}.sock"))
}

/// Serves the status report as JSON to every connection on a unix socket.
pub async fn serve_status(path: PathBuf, stats: Arc<Stats>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("status socket {}", path.display()))?;
    tracing::info!(socket = %path.display(), "status socket ready");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let body = serde_json::to_vec(&stats.report()).unwrap_or_default();
            tokio::spawn(async move {
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(())
}

/// Serves Prometheus text metrics over HTTP/1.1 at any path.
pub async fn serve_metrics(addr: SocketAddr, stats: Arc<Stats>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics.listen {addr}"))?;
    tracing::info!(%addr, "metrics endpoint ready");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let stats = stats.clone();
            tokio::spawn(async move {
                // Read (and ignore) the request head, bounded, then answer and close.
                let mut buf = [0u8; 4096];
                let mut got = 0;
                while got < buf.len() {
                    let read = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        conn.read(&mut buf[got..]),
                    )
                    .await;
                    match read {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                        Ok(Ok(n)) => got += n,
                    }
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body = stats.to_prometheus();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(())
}

/// Client side of `rawtun status`: reads the report from a daemon's socket.
pub fn query_status(path: &Path) -> anyhow::Result<Report> {
    use std::io::Read;
    let mut conn = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("connecting to {} (is the daemon running?)", path.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body)?;
    serde_json::from_slice(&body).context("parsing the status report")
}

/// The report as a human-readable table.
pub fn render_status(r: &Report) -> String {
    use std::fmt::Write as _;
    let t = &r.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rawtun {} — up {} s, {} session(s), {} stream(s) open, {} opened",
        r.role, r.uptime_s, t.sessions_active, t.streams_active, r.streams_opened
    );
    let _ = writeln!(
        s,
        "frames in/out {}/{}, bytes in/out {}/{}, handshakes {}, auth failures {}, replays {}, retransmits {}, RSTs ignored {}",
        t.frames_in, t.frames_out, t.conn.bytes_in, t.conn.bytes_out, t.conn.handshakes_ok,
        t.conn.auth_failures, t.conn.replays, t.retransmits(), t.conn.rst_ignored
    );
    if !r.backend.is_empty() {
        let per_ring = |f: fn(&super::stats::CaptureInfo) -> u64| {
            r.capture
                .iter()
                .map(|c| f(c).to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let _ = writeln!(
            s,
            "backend {}, {} capture ring(s): frames read {}, dropped by the kernel (ring full) {}, oversize {}",
            r.backend,
            r.capture.len(),
            per_ring(|c| c.received),
            per_ring(|c| c.dropped_by_kernel),
            per_ring(|c| c.oversize),
        );
    }
    if r.workers.len() > 1 || r.workers.iter().any(|w| w.queue_full + w.send_errors > 0) {
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>12} {:>10} {:>11} {:>10} {:>8} {:>7}",
            "worker",
            "frames in",
            "frames out",
            "queue full",
            "send errors",
            "queue peak",
            "sessions",
            "streams"
        );
        for (i, w) in r.workers.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:<8} {:>12} {:>12} {:>10} {:>11} {:>10} {:>8} {:>7}",
                i,
                w.frames_in,
                w.frames_out,
                w.queue_full,
                w.send_errors,
                w.queue_peak,
                w.sessions_active,
                w.streams_active
            );
        }
    }
    let drops: Vec<String> = t
        .drops
        .reasons()
        .into_iter()
        .chain([
            ("queue_full", t.queue_full),
            ("parse_error", t.parse_errors),
        ])
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if r.role == "server" || !drops.is_empty() {
        let _ = writeln!(
            s,
            "dropped without answer: {} (resets sent {})",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            },
            t.resets_sent
        );
    }
    let _ = writeln!(
        s,
        "{:<16} {:<22} {:<22} {:<12} {:>7} {:>7} {:>9} {:>12} {:>12} {:>7} {:>6}",
        "client",
        "local",
        "peer",
        "phase",
        "rtt ms",
        "rto ms",
        "retrans",
        "bytes in",
        "bytes out",
        "streams",
        "auth!"
    );
    for x in &r.sessions {
        let _ = writeln!(
            s,
            "{:<16} {:<22} {:<22} {:<12} {:>7} {:>7} {:>9} {:>12} {:>12} {:>7} {:>6}",
            x.client.as_deref().unwrap_or("-"),
            x.local.to_string(),
            x.peer.to_string(),
            x.phase,
            x.rtt_ms,
            x.rto_ms,
            x.retransmits + x.fast_retransmits,
            x.bytes_in,
            x.bytes_out,
            x.streams,
            x.auth_failures
        );
    }
    s
}
