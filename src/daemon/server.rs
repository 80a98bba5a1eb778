//! Server side of a stream: dial the target the client asked for, report the result, relay
//! — within the client session's budget of dials and lookups, under the target policy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bridge::StreamPort;
use super::stats::Stats;
use crate::config::Limits;
use crate::proxy::{self, DialPolicy, LimitCounters, SessionBudget};
use crate::tunnel::{ConnectResult, OpenRequest, Target};

/// A server-side UDP association with no datagram either way for this long ends. Longer
/// than the client's forward idle time (60 s) so the client, which knows its applications,
/// normally decides.
pub const UDP_IDLE: Duration = Duration::from_secs(120);

/// What every server stream task shares.
pub struct ServerCtx {
    pub policy: DialPolicy,
    pub limits: Limits,
    /// Refusals by cause (also in the daemon's stats).
    pub counters: Arc<LimitCounters>,
    /// Established sessions per client address, over all workers.
    pub addresses: AddressTable,
}

/// Established sessions per client IP address, shared by the workers (touched when a
/// session is established or lost, never per packet).
#[derive(Debug, Default)]
pub struct AddressTable(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl AddressTable {
    /// Counts a new session from `ip` unless `ip` has `max` already (then false).
    pub fn admit(&self, ip: std::net::IpAddr, max: usize) -> bool {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Forgets one session from `ip`.
    pub fn release(&self, ip: std::net::IpAddr) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&ip);
            }
        }
    }
}

impl ServerCtx {
    /// A fresh budget for one client session.
    pub fn session_budget(&self) -> Arc<SessionBudget> {
        SessionBudget::new(
            self.limits.dials_per_session,
            self.limits.lookups_per_session,
            self.counters.clone(),
        )
    }
}

/// Serves a UDP association: checks a fixed target against the policy (so a forward to a
/// forbidden or unresolvable target fails at once, with the reason), reports the
/// [`ConnectResult`], then relays datagrams until the client ends it or it is idle.
pub async fn serve_udp(
    port: StreamPort,
    req: OpenRequest,
    ctx: Arc<ServerCtx>,
    budget: Arc<SessionBudget>,
    stats: Arc<Stats>,
) {
    let fixed = match &req.target {
        Target::Ip(a) => !a.ip().is_unspecified() || a.port() != 0,
        Target::Domain(..) => true,
    };
    if fixed {
        let deadline = tokio::time::Instant::now() + ctx.policy.timeout;
        if let Err(result) = proxy::resolve(&req.target, &ctx.policy, &budget, deadline).await {
            stats.dial_failures.fetch_add(1, Ordering::Relaxed);
            if result == ConnectResult::Denied {
                LimitCounters::bump(&ctx.counters.targets_denied);
            }
            tracing::info!(target = %req.target, ?result, "UDP association refused");
            port.refuse(result).await;
            return;
        }
    }
    if !port.send_raw(ConnectResult::Ok.encode().to_vec()).await {
        return;
    }
    let Some(assoc) = port.into_association(stats.udp.clone()) else {
        return;
    };
    tracing::debug!(target = %req.target, "UDP association open");
    proxy::serve_udp_association(assoc, ctx.policy.clone(), budget, UDP_IDLE).await;
    tracing::debug!(target = %req.target, "UDP association closed");
}

/// Dials `req.target`, writes the [`ConnectResult`] as the stream's first bytes, then
/// relays until both directions end or either is reset. A reset of the stream while the
/// dial runs ends the dial.
pub async fn serve_stream(
    port: StreamPort,
    req: OpenRequest,
    ctx: Arc<ServerCtx>,
    budget: Arc<SessionBudget>,
    stats: Arc<Stats>,
) {
    let started = Instant::now();
    stats.streams_opened.fetch_add(1, Ordering::Relaxed);
    let dialed = tokio::select! {
        d = proxy::dial(&req.target, &ctx.policy, &budget) => d,
        () = port.inbox.wait_reset() => {
            tracing::debug!(target = %req.target, "stream reset while dialing");
            port.abandon().await;
            return;
        }
    };
    match dialed {
        Ok(tcp) => {
            if !port.send_raw(ConnectResult::Ok.encode().to_vec()).await {
                return;
            }
            let (up, down) = port.relay(tcp, Vec::new()).await;
            tracing::debug!(
                target = %req.target,
                from_client = up,
                to_client = down,
                ms = started.elapsed().as_millis() as u64,
                "stream closed"
            );
        }
        Err(result) => {
            stats.dial_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target = %req.target, ?result, "dial failed");
            port.refuse(result).await;
        }
    }
}
