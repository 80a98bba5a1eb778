//! `rawtun-linkemu`: a user-space WAN link emulator (this kernel has no `tc netem`).
//!
//! It bridges two interfaces, normally the two inner veth ends of a middle network
//! namespace: every frame arriving on `--a` goes through the a→b [`Link`] model and is
//! injected unchanged on `--b`, and the reverse. Per direction there is a capture thread
//! (pcap, inbound only, promiscuous) that stamps arrivals and hands them over a bounded
//! channel to a release thread that owns the model and the injection handle; the release
//! thread sleeps (1 ns timer slack) until shortly before the next release instant and then
//! spins, so delays hold to well under a millisecond. See docs/LINKEMU.md.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command as Cli};
use rawtun::io::{open_pcap, PacketRx, PacketTx, PcapOptions, PcapTx, RxStats};
use rawtun::linkemu::{
    complete_checksum, parse_blackout, parse_duration, parse_gilbert_elliott, parse_probability,
    parse_queue, parse_rate, Impairments, Link, LinkStats,
};

/// Frames waiting between a capture thread and its release thread.
const CHANNEL_FRAMES: usize = 1 << 16;
/// Longest a release thread waits without looking at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The per-direction options: (name, value name, help). Each exists plain (both
/// directions), as `--ab-NAME` and as `--ba-NAME`.
const LINK_OPTIONS: &[(&str, &str, &str)] = &[
    ("delay", "DUR", "one-way delay, e.g. 100ms"),
    (
        "jitter",
        "DUR",
        "uniform ± jitter around the delay (never reorders by itself)",
    ),
    ("loss", "P", "random loss, e.g. 1% or 0.01"),
    (
        "ge",
        "P_GB,P_BG,LOSS_GOOD,LOSS_BAD",
        "Gilbert–Elliott bursty loss",
    ),
    (
        "reorder",
        "P",
        "probability a frame is held back so later ones overtake it",
    ),
    (
        "reorder-gap",
        "DUR",
        "how long a reordered frame is held back [default: 5ms]",
    ),
    ("duplicate", "P", "probability a frame is delivered twice"),
    (
        "rate",
        "RATE",
        "bottleneck rate, e.g. 50mbit, 1gbit, 800kbit (whole frames)",
    ),
    (
        "queue",
        "DUR|SIZE",
        "rate limiter queue bound, e.g. 100ms or 64kb [default: 100ms]",
    ),
    ("mtu", "BYTES", "drop frames whose IP packet exceeds this"),
    (
        "blackout",
        "START+DUR",
        "drop everything entering in this window (repeatable)",
    ),
    (
        "signal-blackout",
        "DUR",
        "SIGUSR1 starts a blackout of this length",
    ),
];

fn cli() -> Cli {
    let mut cli = Cli::new("rawtun-linkemu")
        .about("WAN link emulator: forwards Ethernet frames between two interfaces with delay, loss, rate limits and outages")
        .arg(Arg::new("a").long("a").value_name("IFACE").required(true).help("first interface"))
        .arg(Arg::new("b").long("b").value_name("IFACE").required(true).help("second interface"))
        .arg(
            Arg::new("seed")
                .long("seed")
                .value_name("N")
                .value_parser(clap::value_parser!(u64))
                .default_value("1")
                .help("PRNG seed (the b→a direction uses a derived seed)"),
        )
        .arg(
            Arg::new("stats-file")
                .long("stats-file")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help("write JSON counters here every second and at exit"),
        )
        .arg(
            Arg::new("spin")
                .long("spin")
                .value_name("DUR")
                .default_value("50us")
                .help("busy-wait this long before each release instead of sleeping"),
        )
        .arg(
            Arg::new("no-fix-checksums")
                .long("no-fix-checksums")
                .action(ArgAction::SetTrue)
                .help("forward TCP/UDP frames whose checksum does not verify as they are"),
        )
        .arg(
            Arg::new("no-realtime")
                .long("no-realtime")
                .action(ArgAction::SetTrue)
                .help("do not give the forwarding threads real-time priority (chrt -f 1)"),
        )
        .arg(
            Arg::new("keep-offloads")
                .long("keep-offloads")
                .action(ArgAction::SetTrue)
                .help("do not turn GRO/GSO/TSO off on the interfaces"),
        );
    for prefix in ["", "ab-", "ba-"] {
        let heading = match prefix {
            "" => "Impairments (both directions)",
            "ab-" => "a→b overrides (--ab-<option>)",
            _ => "b→a overrides (--ba-<option>)",
        };
        for &(name, value, help) in LINK_OPTIONS {
            let id: &'static str = Box::leak(format!("{prefix}{name}").into_boxed_str());
            let mut arg = Arg::new(id)
                .long(id)
                .value_name(value)
                .help(help)
                .help_heading(heading);
            if name == "blackout" {
                arg = arg.action(ArgAction::Append);
            }
            if !prefix.is_empty() {
                arg = arg.hide_short_help(true);
            }
            cli = cli.arg(arg);
        }
    }
    cli
}

/// One direction's settings: the plain options overridden by the prefixed ones.
struct Direction {
    impairments: Impairments,
    signal_blackout: Option<Duration>,
}

fn direction(m: &ArgMatches, prefix: &str) -> Result<Direction> {
    // The value and the option it came from (for error messages).
    let get = |name: &str| -> Option<(String, String)> {
        let own = format!("{prefix}{name}");
        match m.get_one::<String>(&own) {
            Some(v) => Some((v.clone(), own)),
            None => m
                .get_one::<String>(name)
                .map(|v| (v.clone(), name.to_owned())),
        }
    };
    let mut i = Impairments::default();
    let mut signal_blackout = None;
    macro_rules! set {
        ($name:literal, $parse:expr, |$v:ident| $apply:expr) => {
            if let Some((text, option)) = get($name) {
                let $v = $parse(&text).with_context(|| format!("--{option}"))?;
                $apply;
            }
        };
    }
    set!("delay", parse_duration, |v| i.delay = v);
    set!("jitter", parse_duration, |v| i.jitter = v);
    set!("loss", parse_probability, |v| i.loss = v);
    set!("ge", parse_gilbert_elliott, |v| i.gilbert_elliott = Some(v));
    set!("reorder", parse_probability, |v| i.reorder = v);
    set!("reorder-gap", parse_duration, |v| i.reorder_gap = v);
    set!("duplicate", parse_probability, |v| i.duplicate = v);
    set!("rate", parse_rate, |v| i.rate = Some(v));
    set!("queue", parse_queue, |v| i.queue = v);
    set!("mtu", |t: &str| t.parse::<usize>(), |v| i.mtu = Some(v));
    set!("signal-blackout", parse_duration, |v| signal_blackout =
        Some(v));
    let own = format!("{prefix}blackout");
    let windows = match m.get_many::<String>(&own) {
        Some(w) => Some((w, own)),
        None => m
            .get_many::<String>("blackout")
            .map(|w| (w, "blackout".into())),
    };
    if let Some((windows, option)) = windows {
        for w in windows {
            i.blackouts
                .push(parse_blackout(w).with_context(|| format!("--{option}"))?);
        }
    }
    Ok(Direction {
        impairments: i,
        signal_blackout,
    })
}

/// How the forwarding threads run.
#[derive(Clone, Copy)]
struct Tuning {
    /// Busy-wait this long before a release instead of sleeping.
    spin: Duration,
    /// Complete TCP/UDP checksums left to offload.
    fix_checksums: bool,
    /// SCHED_FIFO priority for the forwarding threads.
    realtime: bool,
}

/// What a capture thread hands its release thread.
enum Msg {
    Frame(Instant, Vec<u8>),
    Blackout(Instant, Duration),
}

/// Counters one direction publishes for the stats file.
#[derive(Default, Clone, Copy)]
struct Published {
    link: LinkStats,
    capture: RxStats,
    /// Frames dropped because the release thread fell behind (channel full).
    dropped_overload: u64,
    checksums_fixed: u64,
    inject_errors: u64,
    late: Lateness,
}

/// How late release batches left compared with their release instant.
#[derive(Default, Clone, Copy)]
struct Lateness {
    batches: u64,
    total: Duration,
    max: Duration,
    /// Batches more than 1 ms late.
    over_1ms: u64,
}

impl Lateness {
    fn record(&mut self, late: Duration) {
        self.batches += 1;
        self.total += late;
        self.max = self.max.max(late);
        self.over_1ms += u64::from(late > Duration::from_millis(1));
    }
}

struct Shared {
    stop: AtomicBool,
    overload: AtomicU64,
    stats: Mutex<Published>,
}

/// Exit code for a bad command line (runtime failures exit 1).
const EXIT_USAGE: i32 = 2;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let m = cli().get_matches();
    let a = m.get_one::<String>("a").cloned().unwrap_or_default();
    let b = m.get_one::<String>("b").cloned().unwrap_or_default();
    if a == b {
        bail!("--a and --b must be different interfaces");
    }
    let seed = m.get_one::<u64>("seed").copied().unwrap_or(1);
    let spin = parse_duration(m.get_one::<String>("spin").map_or("200us", |s| s.as_str()))
        .context("--spin")?;
    let tuning = Tuning {
        spin,
        fix_checksums: !m.get_flag("no-fix-checksums"),
        realtime: !m.get_flag("no-realtime"),
    };
    let realtime = tuning.realtime;
    let (ab, ba) = match (direction(&m, "ab-"), direction(&m, "ba-")) {
        (Ok(ab), Ok(ba)) => (ab, ba),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("rawtun-linkemu: {e:#}");
            std::process::exit(EXIT_USAGE);
        }
    };
    for (name, d) in [("a→b", &ab), ("b→a", &ba)] {
        tracing::info!(direction = name, impairments = ?d.impairments, signal_blackout = ?d.signal_blackout, "link");
    }

    if !m.get_flag("keep-offloads") {
        for iface in [&a, &b] {
            disable_offloads(iface, None);
            // A veth peer with TSO/GSO on hands us 64 KiB super-frames: turn them off there.
            match veth_peer(iface) {
                Some((netns, peer)) => disable_offloads(&peer, netns.as_deref()),
                None => {
                    tracing::info!(%iface, "not a veth with a reachable peer: make sure the senders have TSO/GSO off")
                }
            }
        }
    }
    let promisc = [set_promisc(&a)?, set_promisc(&b)?];

    let snaplen = [&a, &b]
        .iter()
        .map(|i| rawtun::sys::interface_mtu(i).map_or(1500, |m| m as usize))
        .max()
        .unwrap_or(1500)
        + 64;
    let open = |iface: &str| {
        let mut opts = PcapOptions::new(iface, "");
        opts.snaplen = snaplen;
        opts.sockbuf = 16 << 20;
        open_pcap(&opts).with_context(|| format!("opening {iface}"))
    };
    let (rx_a, tx_a, _) = open(&a)?;
    let (rx_b, tx_b, _) = open(&b)?;

    let epoch = Instant::now();
    let mut threads = Vec::new();
    let mut senders = Vec::new();
    let mut shared = Vec::new();
    let dirs = [
        ("a→b", rx_a, tx_b, ab, seed),
        ("b→a", rx_b, tx_a, ba, seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    for (name, rx, tx, dir, seed) in dirs {
        let share = Arc::new(Shared {
            stop: AtomicBool::new(false),
            overload: AtomicU64::new(0),
            stats: Mutex::new(Published::default()),
        });
        let (send, recv) = flume::bounded::<Msg>(CHANNEL_FRAMES);
        let link = Link::new(dir.impairments, seed, epoch);
        threads.push(spawn_capture(
            name,
            rx,
            send.clone(),
            share.clone(),
            snaplen,
            realtime,
        )?);
        threads.push(spawn_release(name, link, tx, recv, share.clone(), tuning)?);
        senders.push((send, dir.signal_blackout));
        shared.push(share);
    }
    tracing::info!(%a, %b, snaplen, "forwarding");

    let stats_file = m.get_one::<PathBuf>("stats-file").cloned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let result = runtime.block_on(wait_signals(&senders, &shared, stats_file.as_ref()));

    for s in &shared {
        s.stop.store(true, Ordering::SeqCst);
    }
    drop(senders);
    for t in threads {
        let _ = t.join();
    }
    let summary = stats_json(&shared, epoch);
    if let Some(path) = &stats_file {
        write_stats(path, &summary);
    }
    eprintln!("rawtun-linkemu counters: {summary}");
    for (iface, was) in [(&a, promisc[0]), (&b, promisc[1])] {
        if !was {
            let _ = Command::new("ip")
                .args(["link", "set", iface, "promisc", "off"])
                .status();
        }
    }
    result
}

/// Waits for SIGTERM/SIGINT, handling SIGUSR1 and the stats file meanwhile.
async fn wait_signals(
    senders: &[(flume::Sender<Msg>, Option<Duration>)],
    shared: &[Arc<Shared>],
    stats_file: Option<&PathBuf>,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let epoch = Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                let now = Instant::now();
                let mut any = false;
                for (send, duration) in senders {
                    if let Some(d) = duration {
                        any = true;
                        let _ = send.send(Msg::Blackout(now, *d));
                    }
                }
                if any {
                    tracing::info!("SIGUSR1: blackout started");
                } else {
                    tracing::warn!("SIGUSR1 ignored: no --signal-blackout configured");
                }
            }
            _ = tick.tick() => {
                if let Some(path) = stats_file {
                    write_stats(path, &stats_json(shared, epoch));
                }
                for s in shared {
                    if s.stop.load(Ordering::Relaxed) {
                        bail!("a worker thread stopped; see the log");
                    }
                }
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

fn spawn_capture(
    name: &'static str,
    mut rx: impl PacketRx + 'static,
    send: flume::Sender<Msg>,
    share: Arc<Shared>,
    snaplen: usize,
    realtime: bool,
) -> Result<JoinHandle<()>> {
    let thread = std::thread::Builder::new().name(format!("capture {name}"));
    let handle = thread.spawn(move || {
        if realtime {
            make_realtime(name);
        }
        let mut buf = vec![0u8; snaplen];
        let mut last_stats = Instant::now();
        while !share.stop.load(Ordering::Relaxed) {
            match rx.recv(&mut buf) {
                Ok(Some(len)) => {
                    let now = Instant::now();
                    let frame = buf.get(..len).unwrap_or_default().to_vec();
                    if send.try_send(Msg::Frame(now, frame)).is_err() {
                        share.overload.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(direction = name, error = %e, "capture failed");
                    share.stop.store(true, Ordering::SeqCst);
                    break;
                }
            }
            if last_stats.elapsed() >= Duration::from_millis(200) {
                last_stats = Instant::now();
                if let Ok(mut s) = share.stats.lock() {
                    s.capture = rx.stats();
                }
            }
        }
        if let Ok(mut s) = share.stats.lock() {
            s.capture = rx.stats();
        }
    })?;
    Ok(handle)
}

fn spawn_release(
    name: &'static str,
    mut link: Link,
    mut tx: PcapTx,
    recv: flume::Receiver<Msg>,
    share: Arc<Shared>,
    tuning: Tuning,
) -> Result<JoinHandle<()>> {
    let Tuning {
        spin,
        fix_checksums: fix,
        realtime,
    } = tuning;
    let thread = std::thread::Builder::new().name(format!("release {name}"));
    let handle = thread.spawn(move || {
        // Wake-ups within microseconds of the deadline instead of the default 50 µs slack.
        if let Err(e) = fs::write("/proc/thread-self/timerslack_ns", "1") {
            tracing::debug!(error = %e, "cannot lower the timer slack");
        }
        if realtime {
            make_realtime(name);
        }
        let mut fixed = 0u64;
        let mut errors = 0u64;
        let mut late = Lateness::default();
        let handle = |link: &mut Link, msg: Msg| match msg {
            Msg::Frame(at, frame) => {
                link.enqueue(at, frame);
            }
            Msg::Blackout(at, d) => link.start_blackout(at, d),
        };
        while !share.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if let Some(due) = link.next_release().filter(|&due| due <= now) {
                late.record(now - due);
            }
            while let Some(mut frame) = link.poll_release(now) {
                if fix && complete_checksum(&mut frame) {
                    fixed += 1;
                }
                if let Err(e) = tx.send(&frame) {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(direction = name, error = %e, errors, "inject failed");
                    }
                }
            }
            let target = link.next_release().unwrap_or(now + IDLE_WAIT);
            let sleep_until = target.checked_sub(spin).unwrap_or(target);
            let got = if sleep_until > now {
                if let Ok(mut s) = share.stats.lock() {
                    s.link = link.stats();
                    s.dropped_overload = share.overload.load(Ordering::Relaxed);
                    s.checksums_fixed = fixed;
                    s.inject_errors = errors;
                    s.late = late;
                }
                match recv.recv_deadline(sleep_until.min(now + IDLE_WAIT)) {
                    Ok(msg) => Some(msg),
                    Err(flume::RecvTimeoutError::Timeout) => None,
                    Err(flume::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match recv.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => {
                        std::thread::yield_now();
                        None
                    }
                }
            };
            if let Some(msg) = got {
                handle(&mut link, msg);
                for msg in recv.try_iter().take(CHANNEL_FRAMES) {
                    handle(&mut link, msg);
                }
            }
        }
        if let Ok(mut s) = share.stats.lock() {
            s.link = link.stats();
            s.dropped_overload = share.overload.load(Ordering::Relaxed);
            s.checksums_fixed = fixed;
            s.inject_errors = errors;
            s.late = late;
        }
    })?;
    Ok(handle)
}

/// Gives the calling thread SCHED_FIFO priority 1 with `chrt` (no unsafe code here), so
/// the thread preempts ordinary ones when its timer fires. It only ever runs briefly (it
/// sleeps between releases; the spin is bounded by `--spin`), and the kernel's RT throttle
/// keeps 5 % of each core for others regardless.
fn make_realtime(name: &str) {
    let tid = fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let ok = tid.is_some_and(|tid| {
        Command::new("chrt")
            .args(["-f", "-p", "1", &tid])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        tracing::warn!(
            thread = name,
            "cannot set real-time priority; delays may vary more under load"
        );
    }
}

/// Runs `ethtool -K IFACE gro off gso off tso off` (and LRO, best effort), inside the
/// named namespace if given.
fn disable_offloads(iface: &str, netns: Option<&str>) {
    let mut failed = Vec::new();
    for feature in ["gro", "gso", "tso", "lro"] {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ethtool"]);
                c
            }
            None => Command::new("ethtool"),
        };
        match cmd.args(["-K", iface, feature, "off"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(_) if feature == "lro" => {} // veths have no LRO to turn off
            Ok(_) => failed.push(feature),
            Err(e) => {
                tracing::warn!(%iface, error = %e, "ethtool not found: GRO/GSO may hand the capture frames larger than the MTU");
                return;
            }
        }
    }
    if failed.is_empty() {
        tracing::info!(%iface, netns = netns.unwrap_or("(own)"), "offloads off (gro gso tso)");
    } else {
        tracing::warn!(%iface, ?failed, "could not turn offloads off");
    }
}

/// The far end of a veth: `(namespace name or None for our own, interface name)`, found
/// with `ip -d link` (link_index, link_netnsid) and `ip netns list` (id → name).
fn veth_peer(iface: &str) -> Option<(Option<String>, String)> {
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new("ip").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let json_number = |text: &str, key: &str| -> Option<u64> {
        let rest = &text[text.find(&format!("\"{key}\":"))? + key.len() + 3..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let detail = run(&["-j", "-d", "link", "show", "dev", iface])?;
    if !detail.contains("\"info_kind\":\"veth\"") {
        return None;
    }
    let index = json_number(&detail, "link_index")?;
    let netns = match json_number(&detail, "link_netnsid") {
        None => None,
        Some(id) => {
            let list = run(&["netns", "list"])?;
            let suffix = format!("(id: {id})");
            let line = list.lines().find(|l| l.trim_end().ends_with(&suffix))?;
            Some(line.split_whitespace().next()?.to_owned())
        }
    };
    let links = match &netns {
        Some(ns) => run(&["-n", ns, "-o", "link", "show"])?,
        None => run(&["-o", "link", "show"])?,
    };
    let prefix = format!("{index}: ");
    let line = links.lines().find(|l| l.starts_with(&prefix))?;
    let name = line[prefix.len()..].split(['@', ':']).next()?.trim();
    Some((netns, name.to_owned()))
}

/// Puts `iface` in promiscuous mode (frames are addressed to the far peer, not to us);
/// returns whether it already was.
fn set_promisc(iface: &str) -> Result<bool> {
    let flags = fs::read_to_string(format!("/sys/class/net/{iface}/flags"))
        .with_context(|| format!("no interface {iface}"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let was = flags & 0x100 != 0; // IFF_PROMISC
    if !was {
        let ok = Command::new("ip")
            .args(["link", "set", iface, "promisc", "on"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            tracing::warn!(%iface, "could not enable promiscuous mode");
        }
    }
    Ok(was)
}

fn stats_json(shared: &[Arc<Shared>], epoch: Instant) -> String {
    let mut out = format!("{{\"uptime_ms\":{}", epoch.elapsed().as_millis());
    for (name, share) in ["ab", "ba"].iter().zip(shared) {
        let p = share.stats.lock().map(|s| *s).unwrap_or_default();
        let l = p.link;
        out += &format!(
            ",\"{name}\":{{\"received\":{},\"forwarded\":{},\"forwarded_bytes\":{},\
             \"lost_random\":{},\"lost_burst\":{},\"lost_blackout\":{},\"dropped_queue\":{},\
             \"dropped_mtu\":{},\"duplicated\":{},\"reordered\":{},\"max_queue_delay_us\":{},\
             \"dropped_overload\":{},\"capture_dropped_by_kernel\":{},\"capture_oversize\":{},\
             \"checksums_fixed\":{},\"inject_errors\":{},\"release_batches\":{},\
             \"release_late_avg_us\":{},\"release_late_max_us\":{},\"release_late_over_1ms\":{}}}",
            l.received,
            l.forwarded,
            l.forwarded_bytes,
            l.lost_random,
            l.lost_burst,
            l.lost_blackout,
            l.dropped_queue,
            l.dropped_mtu,
            l.duplicated,
            l.reordered,
            l.max_queue_delay.as_micros(),
            p.dropped_overload,
            p.capture.dropped_by_kernel,
            p.capture.oversize,
            p.checksums_fixed,
            p.inject_errors,
            p.late.batches,
            p.late
                .total
                .as_micros()
                .checked_div(u128::from(p.late.batches))
                .unwrap_or(0),
            p.late.max.as_micros(),
            p.late.over_1ms,
        );
    }
    out.push('}');
    out
}

/// Writes the stats atomically (temp file + rename) so readers never see half a file.
fn write_stats(path: &PathBuf, json: &str) {
    let tmp = path.with_extension("tmp");
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write stats");
    }
}
