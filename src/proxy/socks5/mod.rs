//! SOCKS5 front end (RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password):
//! accepts local clients, negotiates, and carries each CONNECT over a tunnel stream and each
//! UDP ASSOCIATE over a tunnel UDP association ([`crate::proxy::udp`]). BIND is answered with reply 7
//! (command not supported). Message formats are in [`message`].

pub mod message;
#[cfg(test)]
mod tests;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use self::message::{
    method, reply, Command, Greeting, MethodSelection, PasswordRequest, PasswordResponse, Reply,
    Request, Socks5Error,
};
use super::{accept_loop, close_gracefully, relay::pipe, Abortable, Connector, HANDSHAKE_TIMEOUT};
use crate::tunnel::ConnectResult;

/// Credentials a SOCKS5 client must present (RFC 1929).
#[derive(Clone)]
pub struct Socks5Auth {
    /// Expected user name.
    pub username: String,
    /// Expected password.
    pub password: String,
}

impl std::fmt::Debug for Socks5Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5Auth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Socks5Auth {
    /// Compares in time that depends only on the lengths, never on where bytes differ.
    fn matches(&self, request: &PasswordRequest) -> bool {
        let user = constant_time_eq(self.username.as_bytes(), &request.username);
        let pass = constant_time_eq(self.password.as_bytes(), &request.password);
        user & pass
    }
}

fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for i in 0..expected.len().max(given.len()) {
        let a = expected.get(i).copied().unwrap_or(0);
        let b = given.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(a ^ b);
    }
    diff == 0
}

/// Serves SOCKS5 on `listener` until `shutdown` becomes true. With `auth`, clients must
/// use username/password; without, only "no authentication" is accepted.
pub async fn serve_socks5<C: Connector>(
    listener: TcpListener,
    auth: Option<Socks5Auth>,
    connector: C,
    shutdown: watch::Receiver<bool>,
) {
    let auth = auth.map(Arc::new);
    accept_loop(listener, shutdown, "socks5", move |stream, peer| {
        let auth = auth.clone();
        let connector = connector.clone();
        // UDP ASSOCIATE binds its relay on the address the client reached us at.
        let local = stream.local_addr().ok();
        async move {
            let client = Client { peer, local };
            session(
                stream,
                client,
                auth.as_deref(),
                &connector,
                HANDSHAKE_TIMEOUT,
            )
            .await;
        }
    })
    .await;
}

/// The two ends of a client's control connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Client {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our end of the connection (`None` when it has no socket address, as in tests).
    pub local: Option<SocketAddr>,
}

/// Why a handshake ended without a usable request; any reply due was already sent.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error(transparent)]
    Message(#[from] Socks5Error),
    #[error("no acceptable authentication method among {0:?}")]
    NoAcceptableMethod(Vec<u8>),
    #[error("wrong username or password")]
    Credentials,
    #[error("unsupported command {0:?}")]
    Command(Command),
}

/// One client connection: handshake (bounded by `handshake_timeout`), then CONNECT (connect,
/// relay) or UDP ASSOCIATE (relay datagrams while the connection stays open).
pub(crate) async fn session<S, C>(
    mut client: S,
    ends: Client,
    auth: Option<&Socks5Auth>,
    connector: &C,
    handshake_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Abortable + Unpin + Send,
    C: Connector,
{
    let started = Instant::now();
    let peer = ends.peer;
    let request = match tokio::time::timeout(handshake_timeout, handshake(&mut client, auth)).await
    {
        Err(_) => {
            debug!(%peer, "socks5: handshake timed out");
            return;
        }
        Ok(Err(error)) => {
            debug!(%peer, %error, "socks5: handshake failed");
            close_gracefully(client).await;
            return;
        }
        Ok(Ok(request)) => request,
    };
    let target = request.target;
    if request.command == Command::UdpAssociate {
        udp::associate(client, ends, target, connector).await;
        return;
    }
    debug!(%peer, %target, "socks5: connecting");
    let tunnel = match connector.connect(target.clone()).await {
        Ok(tunnel) => tunnel,
        Err(result) => {
            info!(%peer, %target, ?result, "socks5: connect failed");
            let _ = Reply::new(result.socks5_reply_code())
                .write_to(&mut client)
                .await;
            close_gracefully(client).await;
            return;
        }
    };
    if let Err(error) = Reply::new(reply::SUCCEEDED).write_to(&mut client).await {
        debug!(%peer, %target, %error, "socks5: client gone before reply");
        return;
    }
    let o = pipe(client, tunnel).await;
    info!(
        %peer, %target, result = ?ConnectResult::Ok, up = o.up, down = o.down,
        clean = o.clean, ms = started.elapsed().as_millis() as u64, "socks5: closed"
    );
}

/// Negotiates a method, authenticates and reads the request; sends error replies itself.
async fn handshake<S>(client: &mut S, auth: Option<&Socks5Auth>) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = match Greeting::read_from(client).await {
        Ok(greeting) => greeting,
        Err(error) => {
            if let Socks5Error::Version(_) = error {
                let refusal = MethodSelection {
                    method: method::NO_ACCEPTABLE,
                };
                let _ = refusal.write_to(client).await;
            }
            return Err(error.into());
        }
    };
    let wanted = match auth {
        Some(_) => method::USERNAME_PASSWORD,
        None => method::NO_AUTH,
    };
    if !greeting.methods.contains(&wanted) {
        let refusal = MethodSelection {
            method: method::NO_ACCEPTABLE,
        };
        let _ = refusal.write_to(client).await;
        return Err(HandshakeError::NoAcceptableMethod(greeting.methods));
    }
    MethodSelection { method: wanted }
        .write_to(client)
        .await
        .map_err(Socks5Error::from)?;

    if let Some(auth) = auth {
        let accepted = match PasswordRequest::read_from(client).await {
            Ok(request) => auth.matches(&request),
            Err(Socks5Error::Version(_)) => false,
            Err(error) => return Err(error.into()),
        };
        let status = u8::from(!accepted);
        let _ = PasswordResponse { status }.write_to(client).await;
        if !accepted {
            return Err(HandshakeError::Credentials);
        }
    }

    let error = match Request::read_from(client).await {
        Ok(
            request @ Request {
                command: Command::Connect | Command::UdpAssociate,
                ..
            },
        ) => return Ok(request),
        Ok(Request { command, .. }) => {
            let _ = Reply::new(reply::COMMAND_NOT_SUPPORTED)
                .write_to(client)
                .await;
            return Err(HandshakeError::Command(command));
        }
        Err(error) => error,
    };
    let code = match error {
        Socks5Error::Io(_) => return Err(error.into()),
        Socks5Error::Command(_) => reply::COMMAND_NOT_SUPPORTED,
        Socks5Error::AddressType(_) => reply::ADDRESS_TYPE_NOT_SUPPORTED,
        Socks5Error::Version(_) | Socks5Error::Domain => reply::GENERAL_FAILURE,
    };
    let _ = Reply::new(code).write_to(client).await;
    Err(error.into())
}
