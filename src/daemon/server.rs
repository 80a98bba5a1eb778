//! Server side of a stream: dial the target the client asked for, report the result, relay.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bridge::StreamPort;
use super::stats::Stats;
use crate::proxy::{self, DialPolicy};
use crate::tunnel::{ConnectResult, OpenRequest, Target};

/// A server-side UDP association with no datagram either way for this long ends. Longer
/// than the client's forward idle time (60 s) so the client, which knows its applications,
/// normally decides.
pub const UDP_IDLE: Duration = Duration::from_secs(120);

/// What every server stream task shares.
pub struct ServerCtx {
    pub policy: DialPolicy,
}

/// Serves a UDP association: checks a fixed target against the policy (so a forward to a
/// forbidden or unresolvable target fails at once, with the reason), reports the
/// [`ConnectResult`], then relays datagrams until the client ends it or it is idle.
pub async fn serve_udp(port: StreamPort, req: OpenRequest, ctx: Arc<ServerCtx>, stats: Arc<Stats>) {
    let fixed = match &req.target {
        Target::Ip(a) => !a.ip().is_unspecified() || a.port() != 0,
        Target::Domain(..) => true,
    };
    if fixed {
        let deadline = tokio::time::Instant::now() + ctx.policy.timeout;
        if let Err(result) = proxy::resolve(&req.target, &ctx.policy, deadline).await {
            stats.dial_failures.fetch_add(1, Ordering::Relaxed);
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
    proxy::serve_udp_association(assoc, ctx.policy.clone(), UDP_IDLE).await;
    tracing::debug!(target = %req.target, "UDP association closed");
}

/// Dials `req.target`, writes the [`ConnectResult`] as the stream's first bytes, then
/// relays until both directions end.
pub async fn serve_stream(
    port: StreamPort,
    req: OpenRequest,
    ctx: Arc<ServerCtx>,
    stats: Arc<Stats>,
) {
    let started = Instant::now();
    stats.streams_opened.fetch_add(1, Ordering::Relaxed);
    match proxy::dial(&req.target, &ctx.policy).await {
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
