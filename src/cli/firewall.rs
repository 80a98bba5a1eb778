//! `rawtun firewall print|apply|remove|status -c FILE`: the rules of
//! [`rawtun::sys::firewall`] for the tunnel port of a config, printed as commands or
//! installed/removed now.

use anyhow::Context;
use clap::ValueEnum;
use rawtun::config::Config;
use rawtun::sys::firewall::{shell_line, Action, Backend, RuleSet, RuleState};

/// What `rawtun firewall` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirewallAction {
    /// Print the commands that install the rules (and, commented, those that remove them).
    Print,
    /// Install the rules (idempotent).
    Apply,
    /// Remove every copy of the rules.
    Remove,
    /// Say whether the rules are installed (exit 0 only when all are).
    Status,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// iptables / ip6tables.
    Iptables,
    /// nft (table `inet rawtun`).
    Nftables,
}

/// Runs `rawtun firewall ACTION` for `cfg`.
pub fn run(
    cfg: &Config,
    action: FirewallAction,
    backend: Option<BackendArg>,
) -> anyhow::Result<()> {
    let backend = backend.map(|b| match b {
        BackendArg::Iptables => Backend::Iptables,
        BackendArg::Nftables => Backend::Nftables,
    });
    let rules = RuleSet::new(rawtun::daemon::firewall_side(cfg, None)?, backend);
    let what = format!("{} rules {}", rules.backend.as_str(), rules.comment());
    match action {
        FirewallAction::Print => {
            println!("# {what}: apply");
            for cmd in rules.commands(Action::Apply) {
                println!("{}", shell_line(&cmd));
            }
            println!("# remove");
            for cmd in rules.commands(Action::Remove) {
                println!("# {}", shell_line(&cmd));
            }
        }
        FirewallAction::Apply => {
            rules.apply().with_context(|| format!("applying {what}"))?;
            println!("applied {what}");
        }
        FirewallAction::Remove => {
            rules.remove().with_context(|| format!("removing {what}"))?;
            println!("removed {what}");
        }
        FirewallAction::Status => {
            let state = rules
                .present()
                .with_context(|| format!("checking {what}"))?;
            println!("{what}: {state}");
            if state != RuleState::All {
                anyhow::bail!("{what} are not all installed");
            }
        }
    }
    Ok(())
}
