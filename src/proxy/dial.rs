//! Server side: resolve a [`Target`], check every address against the [`TargetPolicy`] and
//! connect, within a session's [`SessionBudget`] of dials and lookups in flight.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use super::budget::{LimitCounters, SessionBudget};
use super::policy::TargetPolicy;
use super::resolve::{ResolveError, Resolver};
use crate::tunnel::{ConnectResult, Target};

/// What the server may connect to, how it resolves names, and how long it may try.
#[derive(Clone, Debug)]
pub struct DialPolicy {
    /// Budget for resolution plus all connection attempts of one dial.
    pub timeout: Duration,
    /// Which addresses may be reached.
    pub targets: TargetPolicy,
    /// Name resolution.
    pub resolver: Resolver,
}

impl DialPolicy {
    /// A policy that permits every address and resolves with the system configuration.
    pub fn allow_all(timeout: Duration) -> DialPolicy {
        DialPolicy::new(timeout, TargetPolicy::allow_all())
    }

    /// `targets` with a system resolver of 256 lookups in flight.
    pub fn new(timeout: Duration, targets: TargetPolicy) -> DialPolicy {
        DialPolicy {
            timeout,
            targets,
            resolver: Resolver::system(256, timeout),
        }
    }
}

/// Resolves `target` (domains with the [`Resolver`], within the session's lookup budget
/// and by `deadline`) and keeps the addresses the policy permits. `Denied` if it resolved
/// only to forbidden addresses; `Failure` if the session has its limit of lookups in flight.
pub async fn resolve(
    target: &Target,
    policy: &DialPolicy,
    budget: &Arc<SessionBudget>,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ConnectResult> {
    let resolved: Vec<SocketAddr> = match target {
        Target::Ip(addr) => vec![*addr],
        Target::Domain(host, port) => {
            let Some(_slot) = budget.try_lookup() else {
                debug!(%target, "lookup refused: the session has its limit in flight");
                return Err(ConnectResult::Failure);
            };
            match timeout_at(deadline, policy.resolver.lookup(host, *port)).await {
                Err(_) | Ok(Err(ResolveError::Timeout)) => return Err(ConnectResult::Timeout),
                Ok(Err(error)) => {
                    debug!(%target, %error, "resolution failed");
                    return Err(ConnectResult::Unreachable);
                }
                Ok(Ok(addrs)) => addrs,
            }
        }
    };
    let permitted: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match policy.targets.check(*addr) {
            Ok(()) => true,
            Err(why) => {
                debug!(%target, %addr, %why, "target refused by policy");
                false
            }
        })
        .collect();
    if permitted.is_empty() {
        return Err(ConnectResult::Denied);
    }
    Ok(permitted)
}

/// Resolves `target`, drops addresses the policy denies and tries the rest in order until
/// one connects, all within `policy.timeout` and one of the session's dial slots (none
/// free: `Failure` at once). Policy refusals are counted in the budget's counters.
pub async fn dial(
    target: &Target,
    policy: &DialPolicy,
    budget: &Arc<SessionBudget>,
) -> Result<TcpStream, ConnectResult> {
    let Some(_slot) = budget.try_dial() else {
        debug!(%target, "dial refused: the session has its limit in flight");
        return Err(ConnectResult::Failure);
    };
    let deadline = Instant::now() + policy.timeout;
    let addrs = match resolve(target, policy, budget, deadline).await {
        Ok(a) => a,
        Err(ConnectResult::Denied) => {
            LimitCounters::bump(&budget.counters().targets_denied);
            return Err(ConnectResult::Denied);
        }
        Err(other) => return Err(other),
    };
    let mut last = ConnectResult::Failure;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectResult::Timeout),
            Ok(Ok(stream)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%addr, %error, "dial: set_nodelay failed");
                }
                return Ok(stream);
            }
            Ok(Err(error)) => {
                debug!(%target, %addr, %error, "dial: connect failed");
                last = result_of(&error);
            }
        }
    }
    Err(last)
}

fn result_of(error: &io::Error) -> ConnectResult {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectResult::Refused,
        io::ErrorKind::TimedOut => ConnectResult::Timeout,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            ConnectResult::Unreachable
        }
        _ => ConnectResult::Failure,
    }
}
