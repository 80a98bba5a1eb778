//! The `rawtun` binary: parses the command line, sets up logging, and hands over to the
//! library. Exit codes: 0 success, 1 runtime failure, 2 configuration error.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rawtun::config::{self, Config, LogLevel};

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAWTUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_filter()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
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
        cli::Command::Check { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = rawtun::crypto::Psk::from_key(&cfg.transport.kcp.key) {
                eprintln!("error: {}: transport.kcp.key: {e}", config.display());
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
            if k.block == rawtun::crypto::Cipher::None {
                println!("# warning: block `none` sends tunnel traffic unencrypted");
            }
            println!("# {}: OK", config.display());
            ExitCode::SUCCESS
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
        cli::Command::Run { config, stats_file } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cfg.log_level);
            match rawtun::daemon::run(cfg, rawtun::daemon::RunOptions { stats_file }) {
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
