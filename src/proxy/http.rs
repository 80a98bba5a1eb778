//! HTTP CONNECT front end (RFC 9110 §9.3.6): `CONNECT host:port HTTP/1.1` is answered with
//! `HTTP/1.1 200 Connection established` once the tunnel stream is up, then bytes flow.
//! The request head is limited to [`MAX_HEAD`] bytes. Failures map to 502 Bad Gateway,
//! 403 Forbidden (denied by the server's policy) or 504 Gateway Timeout; malformed
//! requests get 400, other methods 405, oversized heads 431.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use super::{accept_loop, close_gracefully, relay::pipe, Abortable, Connector, HANDSHAKE_TIMEOUT};
use crate::tunnel::{ConnectResult, Target};

/// Largest accepted request head (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;

const HEAD_END: &[u8] = b"\r\n\r\n";

/// Serves HTTP CONNECT on `listener` until `shutdown` becomes true.
pub async fn serve_http_connect<C: Connector>(
    listener: TcpListener,
    connector: C,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, shutdown, "http-connect", move |stream, peer| {
        let connector = connector.clone();
        async move { session(stream, peer, &connector, HANDSHAKE_TIMEOUT).await }
    })
    .await;
}

/// Why a request head was refused, with the status line to answer.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The client's connection ended or failed before the head was complete.
    #[error("connection ended: {0}")]
    Io(#[from] std::io::Error),
    /// No end of the head within 8 KiB (`MAX_HEAD`).
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// Not `METHOD AUTHORITY HTTP/1.x`, not UTF-8, or an authority that is not host:port.
    #[error("malformed request line")]
    Malformed,
    /// A method other than CONNECT.
    #[error("method {0:?} is not CONNECT")]
    Method(String),
}

impl HeadError {
    fn status(&self) -> Option<&'static str> {
        match self {
            HeadError::Io(_) => None,
            HeadError::TooLarge => Some("431 Request Header Fields Too Large"),
            HeadError::Malformed => Some("400 Bad Request"),
            HeadError::Method(_) => Some("405 Method Not Allowed"),
        }
    }
}

pub(crate) async fn session<S, C>(
    mut client: S,
    peer: SocketAddr,
    connector: &C,
    handshake_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Abortable + Unpin + Send,
    C: Connector,
{
    let started = Instant::now();
    let (target, early_data) =
        match tokio::time::timeout(handshake_timeout, read_connect_request(&mut client)).await {
            Err(_) => {
                debug!(%peer, "http-connect: request timed out");
                return;
            }
            Ok(Err(error)) => {
                debug!(%peer, %error, "http-connect: bad request");
                if let Some(status) = error.status() {
                    let _ = respond(&mut client, status).await;
                    close_gracefully(client).await;
                }
                return;
            }
            Ok(Ok(request)) => request,
        };
    debug!(%peer, %target, "http-connect: connecting");
    let mut tunnel = match connector.connect(target.clone()).await {
        Ok(tunnel) => tunnel,
        Err(result) => {
            info!(%peer, %target, ?result, "http-connect: connect failed");
            let status = match result {
                ConnectResult::Denied => "403 Forbidden",
                ConnectResult::Timeout => "504 Gateway Timeout",
                _ => "502 Bad Gateway",
            };
            let _ = respond(&mut client, status).await;
            close_gracefully(client).await;
            return;
        }
    };
    if respond(&mut client, "200 Connection established")
        .await
        .is_err()
    {
        return;
    }
    if !early_data.is_empty() {
        if let Err(error) = tunnel.write_all(&early_data).await {
            debug!(%peer, %target, %error, "http-connect: tunnel write failed");
            return;
        }
    }
    let o = pipe(client, tunnel).await;
    info!(
        %peer, %target, result = ?ConnectResult::Ok, up = o.up + early_data.len() as u64,
        down = o.down, clean = o.clean, ms = started.elapsed().as_millis() as u64,
        "http-connect: closed"
    );
}

async fn respond<S: AsyncWrite + Unpin>(client: &mut S, status: &str) -> std::io::Result<()> {
    let response = format!("HTTP/1.1 {status}\r\n\r\n");
    client.write_all(response.as_bytes()).await?;
    client.flush().await
}

/// Reads a CONNECT request head from a local client; returns the target and any bytes the
/// client sent after the head (early data, relayed once the stream is up).
pub async fn read_connect_request<S: AsyncRead + Unpin>(
    client: &mut S,
) -> Result<(Target, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let searched_from = buf.len().saturating_sub(HEAD_END.len() - 1);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let found = buf
            .get(searched_from..)
            .and_then(|tail| tail.windows(HEAD_END.len()).position(|w| w == HEAD_END));
        match found {
            Some(at) if searched_from + at + HEAD_END.len() <= MAX_HEAD => {
                break searched_from + at + HEAD_END.len()
            }
            Some(_) => return Err(HeadError::TooLarge),
            None if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
            None => {}
        }
    };
    let early_data = buf.split_off(end);
    let head = std::str::from_utf8(&buf).map_err(|_| HeadError::Malformed)?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(authority), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HeadError::Malformed);
    }
    if method != "CONNECT" {
        return Err(HeadError::Method(method.chars().take(32).collect()));
    }
    let target = authority
        .parse::<Target>()
        .map_err(|_| HeadError::Malformed)?;
    Ok((target, early_data))
}
