//! Server side of one UDP association: sends the client's datagrams to their destinations
//! from the association's own sockets (one per address family, bound on first use) and
//! carries the replies back with their source address.
//!
//! Rules: destinations pass the same [`DialPolicy`] as TCP targets (domain names are
//! resolved here, on the server, within the session's lookup budget; the resolver caches
//! answers for their TTL); replies are accepted only
//! from addresses the association has sent to (what a port-restricted NAT does), so nobody
//! else can push datagrams to the client; the association ends when the client closes it
//! (the datagram channel ends) or after `idle` without a datagram either way.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::debug;

use super::{bump, UdpAssociation, UdpDrop, MAX_UDP_PAYLOAD};
use crate::proxy::dial::{resolve, DialPolicy};
use crate::proxy::SessionBudget;
use crate::tunnel::Target;

/// Peers (destinations sent to) one association remembers; past this the oldest half of the
/// set is forgotten, so replies from them are dropped as foreign.
const MAX_PEERS: usize = 1024;

/// Sockets bound lazily, per family.
#[derive(Default)]
struct Sockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl Sockets {
    async fn for_addr(&mut self, addr: SocketAddr) -> io::Result<&UdpSocket> {
        let (slot, bind): (_, SocketAddr) = if addr.is_ipv4() {
            (&mut self.v4, (Ipv4Addr::UNSPECIFIED, 0).into())
        } else {
            (&mut self.v6, (Ipv6Addr::UNSPECIFIED, 0).into())
        };
        if slot.is_none() {
            let socket = UdpSocket::bind(bind).await?;
            super::enlarge_recv_buffer(&socket);
            *slot = Some(socket);
        }
        slot.as_ref()
            .ok_or_else(|| io::Error::other("socket just bound"))
    }
}

/// Receives on `socket` if it exists; otherwise never resolves.
async fn recv_on(socket: &Option<UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Serves one association until the client ends it or it is idle for `idle`; its name
/// lookups count against `budget`.
pub async fn serve_udp_association(
    mut assoc: UdpAssociation,
    policy: DialPolicy,
    budget: Arc<SessionBudget>,
    idle: Duration,
) {
    let sender = assoc.sender();
    let counters = assoc.counters().clone();
    let mut sockets = Sockets::default();
    let mut peers: HashSet<SocketAddr> = HashSet::new();
    let mut buf4 = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let mut buf6 = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let mut last = Instant::now();
    loop {
        let got = tokio::select! {
            d = assoc.recv() => match d {
                None => break,
                Some((dest, payload)) => {
                    last = Instant::now();
                    let deadline = Instant::now() + policy.timeout;
                    let to = resolve(&dest, &policy, &budget, deadline)
                        .await
                        .and_then(|a| a.first().copied().ok_or(crate::tunnel::ConnectResult::Unreachable));
                    let to = match to {
                        Ok(a) => a,
                        Err(result) => {
                            debug!(%dest, ?result, "udp: destination refused");
                            bump(&counters.dropped_denied);
                            continue;
                        }
                    };
                    if peers.len() >= MAX_PEERS {
                        peers.clear();
                    }
                    peers.insert(to);
                    let sent = match sockets.for_addr(to).await {
                        Ok(s) => s.send_to(&payload, to).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match sent {
                        Ok(()) => bump(&counters.delivered),
                        Err(error) => {
                            debug!(%to, %error, "udp: send failed");
                            bump(&counters.send_errors);
                        }
                    }
                    continue;
                }
            },
            r = recv_on(&sockets.v4, &mut buf4) => r.map(|(n, from)| (n, from, true)),
            r = recv_on(&sockets.v6, &mut buf6) => r.map(|(n, from)| (n, from, false)),
            () = tokio::time::sleep_until(last + idle) => {
                debug!("udp: association idle: closing");
                break;
            }
        };
        let (n, from, v4) = match got {
            Ok(x) => x,
            Err(error) => {
                // ICMP errors (port unreachable) surface here on Linux; not fatal.
                debug!(%error, "udp: receive error");
                continue;
            }
        };
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        if !peers.contains(&from) {
            bump(&counters.dropped_foreign);
            continue;
        }
        last = Instant::now();
        bump(&counters.received);
        let payload = if v4 { &buf4[..n] } else { &buf6[..n] };
        match sender.send(&Target::Ip(from), payload) {
            Ok(()) => {}
            Err(UdpDrop::Closed) => break,
            Err(why) => debug!(%from, %why, "udp: reply dropped"),
        }
    }
}
