//! The `rawtun` binary: parses the command line, sets up logging, and hands over to the
//! library. Exit codes: 0 success, 1 runtime failure, 2 configuration error.

mod cli;
mod environment;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rawtun::config::{self, Config, LogLevel};
use rawtun::daemon::control;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

/// Sets up logging to stderr; the returned function changes the level later (SIGHUP).
/// `RAWTUN_LOG` (an env-filter directive) overrides the configured level.
fn init_logging(level: LogLevel) -> Arc<dyn Fn(LogLevel) + Send + Sync> {
    let from_env = std::env::var("RAWTUN_LOG").ok();
    let filter = from_env
        .as_deref()
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(level.as_filter()));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
    Arc::new(move |level: LogLevel| {
        if from_env.is_none() {
            let _ = handle.modify(|f| *f = EnvFilter::new(level.as_filter()));
        }
    })
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(config: &Path) -> ExitCode {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = check_keys(&cfg) {
        eprintln!("error: {}: {e:#}", config.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    print!("{}", cfg.to_effective_yaml());
    let k = &cfg.transport.kcp;
    for rtt_ms in [200u64, 500] {
        let (kcp, stream) = k.window_cap_bps(Duration::from_millis(rtt_ms));
        println!(
            "# window caps at {rtt_ms} ms RTT: KCP {:.1} Mbit/s, per stream {:.1} Mbit/s",
            kcp as f64 / 1e6,
            stream as f64 / 1e6
        );
    }
    let (v4, v6) = rawtun::tunnel::max_udp_payloads(usize::from(k.mtu));
    println!(
        "# largest UDP datagram: {v4} bytes to IPv4, {v6} to IPv6 destinations \
         (kcp.mtu {} minus the datagram header); larger ones are dropped and counted, never cut",
        k.mtu
    );
    if k.block == rawtun::crypto::Cipher::None {
        println!("# warning: block `none` sends tunnel traffic unencrypted");
    }
    print!("{}", describe_keys(&cfg));
    if cfg.role == rawtun::config::Role::Server {
        let policy = rawtun::proxy::TargetPolicy::new(cfg.targets.clone());
        println!(
            "# target policy (TCP dials and UDP destinations, checked on every resolved address):"
        );
        for line in policy.describe().lines() {
            println!("#{line}");
        }
        let session = rawtun::proxy::session_memory_bound(&cfg);
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        println!(
            "# memory one client session can hold: at most {:.0} MiB \
             (3 x smuxbuf + KCP windows + {} streams x 48 KiB); \
             one client address: {} sessions, {:.0} MiB",
            mib(session),
            cfg.limits.streams_per_session,
            cfg.limits.sessions_per_address,
            mib(session * cfg.limits.sessions_per_address as u64)
        );
    }
    let errors = environment::check(&cfg);
    if errors > 0 {
        println!("# {}: {errors} environment error(s)", config.display());
        return ExitCode::from(EXIT_RUNTIME);
    }
    println!("# {}: OK", config.display());
    ExitCode::SUCCESS
}

/// Derives the keys once, so a key that cannot work fails here and not at start.
fn check_keys(cfg: &Config) -> anyhow::Result<()> {
    use rawtun::daemon::keys;
    match cfg.role {
        config::Role::Client => keys::client_identity(cfg).map(|_| ()),
        config::Role::Server => {
            let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
            let addrs = keys::server_addresses(cfg, unspecified, cfg.network.interface.as_deref());
            if cfg
                .auth
                .shared
                .as_deref()
                .is_some_and(rawtun::crypto::is_password)
                && addrs.is_empty()
            {
                return Ok(()); // reported by describe_keys
            }
            keys::server_identities(cfg, &addrs).map(|_| ())
        }
    }
}

/// What `rawtun check` says about the keys: which scheme, who may connect, and warnings.
fn describe_keys(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let a = &cfg.auth;
    if !a.clients.is_empty() {
        let names: Vec<&str> = a.clients.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(
            s,
            "# keys: a key per client; {} client(s): {}",
            names.len(),
            names.join(", ")
        );
    }
    if a.identity.is_some() && cfg.role == config::Role::Client {
        let _ = writeln!(
            s,
            "# keys: this client's own key (identity.private_key) and the server's public key"
        );
    }
    if let Some(key) = &a.shared {
        if rawtun::crypto::is_password(key) {
            let _ = writeln!(
                s,
                "# warning: transport.kcp.key is a password, not a key. Anyone who records one \
                 opening can test password guesses offline (one Argon2 per guess per server \
                 address). Use `rawtun secret` (64 hex digits, the same on both ends) or \
                 `rawtun keygen` (a key per client) instead."
            );
            if cfg.role == config::Role::Server {
                let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
                let addrs = rawtun::daemon::keys::server_addresses(
                    cfg,
                    unspecified,
                    cfg.network.interface.as_deref(),
                );
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    s,
                    "# a password key is salted with the address clients dial; this server \
                     accepts clients that dial: {} (behind NAT, use a hex key or per-client keys)",
                    if list.is_empty() {
                        "nothing yet: set network.ipv4.addr".to_string()
                    } else {
                        list.join(", ")
                    }
                );
            }
        } else {
            let _ = writeln!(
                s,
                "# keys: one shared key (transport.kcp.key) for the server and all clients"
            );
        }
    }
    s
}

fn status(config: Option<PathBuf>, socket: Option<PathBuf>, json: bool) -> ExitCode {
    let path = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => control::default_socket(&c),
        (None, None) => {
            eprintln!("error: give --config FILE or --socket PATH");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match control::query_status(&path) {
        Ok(r) if json => {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            print!("{}", control::render_status(&r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => {
            println!("rawtun {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::Secret => {
            println!("{}", rawtun::crypto::generate_secret());
            ExitCode::SUCCESS
        }
        cli::Command::Check { config } => check(&config),
        cli::Command::Keygen { client, config } => {
            let cfg = match config.as_deref().map(load).transpose() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let out = match (client, cfg) {
                (None, None) => Ok(cli::keygen::pair()),
                (None, Some(cfg)) => cli::keygen::public_of(&cfg),
                (Some(name), Some(cfg)) => cli::keygen::for_client(&cfg, &name),
                (Some(_), None) => Err(anyhow::anyhow!("--client needs -c SERVER.yaml")),
            };
            match out {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        cli::Command::Dump { config, count } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match rawtun::daemon::dump::dump(&cfg, count) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        cli::Command::Firewall {
            action,
            config,
            backend,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cli::firewall::run(&cfg, action, backend) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        cli::Command::Status {
            config,
            socket,
            json,
        } => status(config, socket, json),
        cli::Command::Ping {
            config,
            count,
            interval,
            timeout,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(LogLevel::Warn);
            let opts = rawtun::daemon::ping::PingOptions {
                count,
                interval: Duration::from_millis(interval),
                timeout: Duration::from_secs(timeout),
            };
            match rawtun::daemon::ping::ping(&cfg, &opts) {
                Ok(s) => {
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    println!(
                        "--- {} probes sent, {} received, {:.1}% loss",
                        s.sent,
                        s.received,
                        s.loss_percent()
                    );
                    if !s.rtts.is_empty() {
                        let min = s.rtts.iter().min().copied().unwrap_or_default();
                        let max = s.rtts.iter().max().copied().unwrap_or_default();
                        let avg = s.rtts.iter().sum::<Duration>() / s.rtts.len() as u32;
                        println!(
                            "rtt min/avg/max = {:.2}/{:.2}/{:.2} ms",
                            ms(min),
                            ms(avg),
                            ms(max)
                        );
                    }
                    if s.received > 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_RUNTIME)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        cli::Command::Run {
            config,
            stats_file,
            status_socket,
            drain,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let set_log_level = init_logging(cfg.log_level);
            let opts = rawtun::daemon::RunOptions {
                stats_file,
                status_socket: Some(
                    status_socket.unwrap_or_else(|| control::default_socket(&config)),
                ),
                drain: Duration::from_secs(drain),
                config_path: Some(config),
                set_log_level: Some(set_log_level),
            };
            match rawtun::daemon::run(cfg, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}
