//! Server side of a stream: dial the target the client asked for, report the result, relay.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::bridge::{Command, Input, StreamPort};
use super::stats::Stats;
use crate::proxy::{self, DialPolicy};
use crate::tunnel::{ConnectResult, OpenRequest};

/// What every server stream task shares.
pub struct ServerCtx {
    pub policy: DialPolicy,
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
            port.send_raw(result.encode().to_vec()).await;
            port.finish().await;
            let key = port.key;
            let _ = port
                .cmd
                .send_async(Input::Cmd(Command::Close { key }))
                .await;
        }
    }
}
