//! Server side of one tunnel stream: dial the requested target, answer with the
//! [`ConnectResult`], then relay.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::{dial, relay, DialPolicy, SessionBudget, TunnelStream};
use crate::tunnel::{ConnectResult, OpenRequest, Protocol};

/// Handles a tunnel stream the client opened with `request`: dials under `policy` (with an
/// unlimited session budget: the daemon enforces its limits itself), writes
/// the encoded [`ConnectResult`] as the first bytes of the stream and, on success, relays
/// until both directions end. Returns the result and the bytes relayed
/// `(tunnel → target, target → tunnel)`. UDP requests are answered with `Failure` for now.
pub async fn serve_stream<S: TunnelStream>(
    mut tunnel: S,
    request: &OpenRequest,
    policy: &DialPolicy,
) -> (ConnectResult, u64, u64) {
    let started = Instant::now();
    let target = &request.target;
    let dialed = match request.protocol {
        Protocol::Tcp => dial(target, policy, &SessionBudget::unlimited()).await,
        Protocol::Udp => Err(ConnectResult::Failure),
    };
    let result = match &dialed {
        Ok(_) => ConnectResult::Ok,
        Err(result) => *result,
    };
    let sent = async {
        tunnel.write_all(&result.encode()).await?;
        tunnel.flush().await
    }
    .await;
    let connection = match (dialed, sent) {
        (Ok(connection), Ok(())) => connection,
        (_, Err(error)) => {
            debug!(%target, %error, "server: tunnel stream gone before result");
            return (result, 0, 0);
        }
        (Err(result), Ok(())) => {
            info!(%target, ?result, protocol = ?request.protocol, "server: connect failed");
            let _ = tunnel.shutdown().await;
            return (result, 0, 0);
        }
    };
    let (up, down) = relay(tunnel, connection).await;
    info!(
        %target, ?result, up, down, ms = started.elapsed().as_millis() as u64,
        "server: stream closed"
    );
    (result, up, down)
}
