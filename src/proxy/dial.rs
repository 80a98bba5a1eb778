//! Server side: resolve a [`Target`], check it against the [`DialPolicy`] and connect.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use crate::tunnel::{ConnectResult, Target};

/// What the server may connect to, and how long it may try.
#[derive(Clone)]
pub struct DialPolicy {
    /// Budget for resolution plus all connection attempts of one dial.
    pub timeout: Duration,
    /// Whether a resolved address may be connected to (IPv4-mapped IPv6 addresses are
    /// passed as IPv4).
    pub permits: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl DialPolicy {
    /// A policy that permits every address.
    pub fn allow_all(timeout: Duration) -> DialPolicy {
        DialPolicy {
            timeout,
            permits: Arc::new(|_| true),
        }
    }
}

impl fmt::Debug for DialPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialPolicy")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Resolves `target` (domains with the system resolver, bounded by `deadline`) and keeps
/// the addresses the policy permits (IPv4-mapped IPv6 addresses become IPv4). `Denied` if
/// it resolved only to forbidden addresses.
pub async fn resolve(
    target: &Target,
    policy: &DialPolicy,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ConnectResult> {
    let resolved: Vec<SocketAddr> = match target {
        Target::Ip(addr) => vec![*addr],
        Target::Domain(host, port) => {
            match timeout_at(deadline, tokio::net::lookup_host((host.as_str(), *port))).await {
                Err(_) => return Err(ConnectResult::Timeout),
                Ok(Err(error)) => {
                    debug!(%target, %error, "resolution failed");
                    return Err(ConnectResult::Unreachable);
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    if resolved.is_empty() {
        return Err(ConnectResult::Unreachable);
    }
    let permitted: Vec<SocketAddr> = resolved
        .into_iter()
        .map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))
        .filter(|addr| {
            let ok = (policy.permits)(addr.ip());
            if !ok {
                debug!(%target, %addr, "denied by policy");
            }
            ok
        })
        .collect();
    if permitted.is_empty() {
        return Err(ConnectResult::Denied);
    }
    Ok(permitted)
}

/// Resolves `target`, drops addresses the policy denies and tries the rest in order until
/// one connects, all within `policy.timeout`.
pub async fn dial(target: &Target, policy: &DialPolicy) -> Result<TcpStream, ConnectResult> {
    let deadline = Instant::now() + policy.timeout;
    let mut last = ConnectResult::Failure;
    for addr in resolve(target, policy, deadline).await? {
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
