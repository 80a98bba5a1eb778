//! Command-line interface: argument parsing only; the work is done by the library layers.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod firewall;

/// rawtun: a raw-packet TCP tunnel (fake TCP + KCP + Noise/AEAD).
#[derive(Debug, Parser)]
#[command(name = "rawtun", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the client or server described by the config file.
    Run {
        /// Config file (YAML, paqet-compatible).
        #[arg(short, long)]
        config: PathBuf,
        /// Write counters as JSON to this file every second and at exit.
        #[arg(long)]
        stats_file: Option<PathBuf>,
    },
    /// Validate a config file and print the effective configuration with defaults.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print, apply or remove the firewall rules (NOTRACK + RST drop) for a config's tunnel
    /// port: a server's listen port, or a client's server address and port.
    Firewall {
        /// What to do.
        action: firewall::FirewallAction,
        #[arg(short, long)]
        config: PathBuf,
        /// Firewall tool (default: iptables if installed, else nftables).
        #[arg(long)]
        backend: Option<firewall::BackendArg>,
    },
    /// Print a new random key (64 hex characters) for transport.kcp.key.
    Secret,
    /// Print the version.
    Version,
}
