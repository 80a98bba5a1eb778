//! Command-line interface: argument parsing only; the work is done by the library layers.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod firewall;
pub mod keygen;

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
        /// Status socket for `rawtun status` (default /run/rawtun/<config name>.sock).
        #[arg(long)]
        status_socket: Option<PathBuf>,
        /// Seconds open streams may drain after SIGTERM.
        #[arg(long, default_value_t = 5)]
        drain: u64,
    },
    /// Validate a config file and print the effective configuration with defaults.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Round trips to the server over the raw path (needs a client config).
    Ping {
        #[arg(short, long)]
        config: PathBuf,
        /// Number of probes.
        #[arg(short = 'n', long, default_value_t = 5)]
        count: u32,
        /// Milliseconds between probes.
        #[arg(short, long, default_value_t = 1000)]
        interval: u64,
        /// Seconds to wait for the session and for the last reply.
        #[arg(short = 'W', long, default_value_t = 10)]
        timeout: u64,
    },
    /// Show the tunnel port's packets (tcpdump-like) and whether they authenticate.
    Dump {
        #[arg(short, long)]
        config: PathBuf,
        /// Stop after this many packets (0: until interrupted).
        #[arg(short = 'n', long, default_value_t = 0)]
        count: u64,
    },
    /// Show a running daemon's sessions and counters.
    Status {
        /// The daemon's config (to find its status socket).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The status socket (overrides --config).
        #[arg(short, long)]
        socket: Option<PathBuf>,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Print, apply or remove the firewall rules (raw drop in, NOTRACK + RST drop out) for a config's tunnel
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
    /// Print a new random key (64 hex characters) for transport.kcp.key (one key shared by
    /// the server and all its clients).
    Secret,
    /// Print a new key pair for a key per client (identity.private_key and the public key
    /// for the other side); with --client NAME -c SERVER.yaml, the lines to add to the
    /// server's config and the client's whole key setup.
    Keygen {
        /// Make a key pair for this client of the server config given with -c.
        #[arg(long, value_name = "NAME", requires = "config")]
        client: Option<String>,
        /// With --client: the server config. Without: print the public key of this
        /// config's identity.private_key instead of a new pair.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}
