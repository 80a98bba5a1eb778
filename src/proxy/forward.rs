//! TCP forward: every accepted connection is carried over a tunnel stream to one fixed
//! [`Target`].

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

use super::{accept_loop, relay::pipe, Connector};
use crate::tunnel::{ConnectResult, Target};

/// Forwards every connection accepted on `listener` to `target` until `shutdown` is true.
pub async fn serve_tcp_forward<C: Connector>(
    listener: TcpListener,
    target: Target,
    connector: C,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, shutdown, "tcp-forward", move |stream, peer| {
        let connector = connector.clone();
        let target = target.clone();
        async move { session(stream, peer, target, &connector).await }
    })
    .await;
}

async fn session<C: Connector>(client: TcpStream, peer: SocketAddr, target: Target, connector: &C) {
    let started = Instant::now();
    debug!(%peer, %target, "tcp-forward: connecting");
    match connector.connect(target.clone()).await {
        Err(result) => info!(%peer, %target, ?result, "tcp-forward: connect failed"),
        Ok(tunnel) => {
            let o = pipe(client, tunnel).await;
            info!(
                %peer, %target, result = ?ConnectResult::Ok, up = o.up, down = o.down,
                clean = o.clean, ms = started.elapsed().as_millis() as u64,
                "tcp-forward: closed"
            );
        }
    }
}
