//! loadgen — the small load tool behind `scripts/bench.sh`: a 1-byte TCP echo pair for
//! request/response latency and a minimal HTTP/1.1 server and client (optionally through a
//! SOCKS5 proxy) for requests per second under a given concurrency.
//!
//! ```text
//! loadgen echo-server ADDR
//! loadgen echo-client ADDR [--count 1000] [--max-seconds 60]
//! loadgen idle-client ADDR [--count 10000] [--hold 10] [--parallel 200] [--timeout 60]
//! loadgen http-server ADDR
//! loadgen http-client --url http://HOST:PORT/ [--socks5 ADDR] [--concurrency 20]
//!                     [--duration 5] [--timeout 5]
//! ```
//!
//! The clients print one JSON object on stdout. Everything they do is bounded: the echo
//! client stops after `--count` round trips or `--max-seconds`, the HTTP client starts no
//! request after `--duration` and gives every request (SOCKS5 handshake and TCP connect
//! included) at most `--timeout` seconds. The idle client opens `--count` connections (at
//! most `--parallel` opening at once), proves each one end to end with a 1-byte echo, prints
//! one JSON line, holds them all open and idle for `--hold` seconds, then closes them;
//! opening stops after `--timeout` seconds. The SOCKS5 support is the client half of RFC 1928
//! CONNECT with no authentication, written here so the tool has no proxy dependency.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        bail!("usage: loadgen echo-server|echo-client|idle-client|http-server|http-client ...");
    };
    let opts = Opts::parse(&args[1..])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.number("threads", 2.0)?.max(1.0) as usize)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        match mode.as_str() {
            "echo-server" => echo_server(opts.positional()?).await,
            "echo-client" => echo_client(&opts).await,
            "idle-client" => idle_client(&opts).await,
            "http-server" => http_server(opts.positional()?).await,
            "http-client" => http_client(&opts).await,
            other => bail!("unknown mode {other:?}"),
        }
    })
}

/// `--name value` pairs plus at most one positional argument.
struct Opts {
    pairs: Vec<(String, String)>,
    positional: Option<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut pairs = Vec::new();
        let mut positional = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
                pairs.push((name.to_string(), value.clone()));
            } else if positional.replace(arg.clone()).is_some() {
                bail!("unexpected argument {arg:?}");
            }
        }
        Ok(Opts { pairs, positional })
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, default: f64) -> Result<f64> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => v.parse().with_context(|| format!("--{name} {v:?}")),
        }
    }

    fn positional(&self) -> Result<SocketAddr> {
        let addr = self
            .positional
            .as_deref()
            .ok_or_else(|| anyhow!("missing ADDR"))?;
        addr.parse().with_context(|| format!("ADDR {addr:?}"))
    }
}

/// The value at quantile `q` (0..=1) of sorted samples, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn echo_server(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).await.context("bind")?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if sock.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn idle_client(opts: &Opts) -> Result<()> {
    use std::io::Write as _;
    let addr = opts.positional()?;
    let count = opts.number("count", 10000.0)? as usize;
    let parallel = (opts.number("parallel", 200.0)? as usize).max(1);
    let hold = Duration::from_secs_f64(opts.number("hold", 10.0)?);
    let deadline = Instant::now() + Duration::from_secs_f64(opts.number("timeout", 60.0)?);
    let started = Instant::now();
    let open_one = move || async move {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, async {
            let mut sock = TcpStream::connect(addr).await?;
            let mut byte = [0u8; 1];
            sock.write_all(b"i").await?;
            sock.read_exact(&mut byte).await?;
            anyhow::Ok(sock)
        })
        .await
        .map_err(|_| anyhow!("timed out"))?
    };
    let mut socks = Vec::with_capacity(count);
    let mut failed = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0usize;
    while next < count || !tasks.is_empty() {
        while next < count && tasks.len() < parallel && Instant::now() < deadline {
            tasks.spawn(open_one());
            next += 1;
        }
        if next < count && Instant::now() >= deadline {
            failed += count - next; // never tried: out of time
            next = count;
        }
        match tasks.join_next().await {
            Some(Ok(Ok(sock))) => socks.push(sock),
            Some(_) => failed += 1,
            None => {}
        }
    }
    println!(
        "{{\"open\": {}, \"failed\": {failed}, \"open_seconds\": {:.1}}}",
        socks.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    tokio::time::sleep(hold).await;
    drop(socks);
    Ok(())
}

async fn echo_client(opts: &Opts) -> Result<()> {
    let addr = opts.positional()?;
    let count = opts.number("count", 1000.0)? as usize;
    let deadline = Instant::now() + Duration::from_secs_f64(opts.number("max-seconds", 60.0)?);
    let mut sock = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    sock.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(count);
    let mut byte = [0u8; 1];
    // One warm-up round trip (stream open through a tunnel) that is not counted.
    sock.write_all(b"w").await?;
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut byte))
        .await
        .context("warm-up timed out")??;
    while samples.len() < count && Instant::now() < deadline {
        let t0 = Instant::now();
        sock.write_all(b"x").await?;
        let left = deadline.saturating_duration_since(t0) + Duration::from_secs(5);
        tokio::time::timeout(left, sock.read_exact(&mut byte))
            .await
            .context("echo timed out")??;
        samples.push(t0.elapsed().as_micros() as u64);
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    let out = serde_json::json!({
        "count": samples.len(),
        "p50_us": quantile(&samples, 0.50),
        "p99_us": quantile(&samples, 0.99),
        "max_us": samples.last().copied().unwrap_or(0),
        "mean_us": mean.round(),
    });
    println!("{out}");
    Ok(())
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

async fn http_server(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).await.context("bind")?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            loop {
                // Answer every complete request head in the buffer (pipelining works too).
                while let Some(end) = find(&buf, b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    if sock.write_all(RESPONSE).await.is_err() {
                        return;
                    }
                }
                if buf.len() > 64 * 1024 {
                    return; // not a GET we understand
                }
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `http://HOST:PORT/PATH` split into host, port and path.
fn split_url(url: &str) -> Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs: {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().with_context(|| format!("port in {url:?}"))?),
        None => (authority, 80),
    };
    Ok((host.to_string(), port, path.to_string()))
}

struct Target {
    host: String,
    port: u16,
    request: Vec<u8>,
    socks5: Option<SocketAddr>,
}

async fn http_client(opts: &Opts) -> Result<()> {
    let url = opts
        .text("url")
        .ok_or_else(|| anyhow!("--url is required"))?;
    let (host, port, path) = split_url(url)?;
    let socks5 = match opts.text("socks5") {
        Some(a) => Some(a.parse().with_context(|| format!("--socks5 {a:?}"))?),
        None => None,
    };
    let concurrency = opts.number("concurrency", 20.0)?.max(1.0) as usize;
    let duration = Duration::from_secs_f64(opts.number("duration", 5.0)?);
    let timeout = Duration::from_secs_f64(opts.number("timeout", 5.0)?);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: loadgen\r\n\r\n");
    let target = std::sync::Arc::new(Target {
        host,
        port,
        request: request.into_bytes(),
        socks5,
    });
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(target.clone(), deadline, timeout)))
        .collect();
    let mut samples = Vec::new();
    let (mut failed, mut connects) = (0u64, 0u64);
    for w in workers {
        let r = w.await.context("worker panicked")?;
        samples.extend(r.samples);
        failed += r.failed;
        connects += r.connects;
    }
    let elapsed = start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let ok = samples.len() as u64;
    let total = ok + failed;
    let out = serde_json::json!({
        "concurrency": concurrency,
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "requests": total,
        "ok": ok,
        "failed": failed,
        "connections": connects,
        "success_pct": if total == 0 { 0.0 } else { (ok as f64 * 10000.0 / total as f64).round() / 100.0 },
        "rps": (ok as f64 / duration.as_secs_f64().max(1e-3)).round(),
        "p50_us": quantile(&samples, 0.50),
        "p99_us": quantile(&samples, 0.99),
    });
    println!("{out}");
    Ok(())
}

struct WorkerResult {
    samples: Vec<u64>,
    failed: u64,
    connects: u64,
}

/// One keep-alive connection issuing requests back to back until `deadline`; a failed
/// request (connect, proxy, timeout, bad answer) counts once and the connection is redone.
/// The first request on a connection includes the connect and SOCKS5 handshake in its time.
async fn worker(
    target: std::sync::Arc<Target>,
    deadline: Instant,
    timeout: Duration,
) -> WorkerResult {
    let mut r = WorkerResult {
        samples: Vec::new(),
        failed: 0,
        connects: 0,
    };
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let attempt = tokio::time::timeout(timeout, async {
            if conn.is_none() {
                let sock = connect(&target).await?;
                conn = Some((sock, Vec::with_capacity(1024)));
                r.connects += 1;
            }
            let (sock, buf) = conn.as_mut().expect("connection was set just above");
            sock.write_all(&target.request).await?;
            read_response(sock, buf).await
        })
        .await;
        match attempt {
            Ok(Ok(())) => r.samples.push(t0.elapsed().as_micros() as u64),
            _ => {
                r.failed += 1;
                conn = None;
                // Do not spin on a refusing target: wait a little before the next try.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    r
}

async fn connect(t: &Target) -> Result<TcpStream> {
    let Some(proxy) = t.socks5 else {
        let sock = TcpStream::connect((t.host.as_str(), t.port)).await?;
        sock.set_nodelay(true)?;
        return Ok(sock);
    };
    let mut sock = TcpStream::connect(proxy).await?;
    sock.set_nodelay(true)?;
    // Greeting: version 5, one method, "no authentication".
    sock.write_all(&[5, 1, 0]).await?;
    let mut reply = [0u8; 2];
    sock.read_exact(&mut reply).await?;
    if reply != [5, 0] {
        bail!("socks5: method refused {reply:?}");
    }
    // CONNECT with an IPv4/IPv6 literal or a domain name.
    let mut req = vec![5, 1, 0];
    match t.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let name = t.host.as_bytes();
            let len = u8::try_from(name.len()).context("socks5: host name too long")?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&t.port.to_be_bytes());
    sock.write_all(&req).await?;
    let mut head = [0u8; 4];
    sock.read_exact(&mut head).await?;
    if head[0] != 5 || head[1] != 0 {
        bail!("socks5: CONNECT failed, reply code {}", head[1]);
    }
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            sock.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        other => bail!("socks5: bad address type {other}"),
    };
    let mut bound = vec![0u8; skip];
    sock.read_exact(&mut bound).await?;
    Ok(sock)
}

/// Reads one response (status line, headers, Content-Length body) from `sock`, keeping any
/// bytes past it in `buf` for the next one.
async fn read_response(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("response head too long");
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head not UTF-8")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("status {:?}", head.lines().next().unwrap_or(""));
    }
    let body_len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .context("bad Content-Length")?
        .unwrap_or(0);
    let total = head_end + body_len;
    while buf.len() < total {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..total);
    Ok(())
}
