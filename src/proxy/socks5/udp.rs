//! SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a relay socket per association, bound on the address
//! the client's control connection reached, carrying datagrams through one tunnel UDP
//! association (any destination).
//!
//! - Only the associating client may use the relay: datagrams from another IP address, or
//!   from another port once the client's port is known (from the request's DST.PORT, else
//!   its first datagram), are dropped and counted (`dropped_foreign`).
//! - Fragments (FRAG ≠ 0) are dropped and counted (`dropped_fragment`); reassembly is
//!   optional in the RFC and no common client sends them.
//! - Replies carry the address they came from in the header, as the RFC asks.
//! - The association ends when the control connection closes (either way), and the control
//!   connection is closed when the tunnel ends the association (session lost).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::UdpSocket;
use tracing::{debug, info};

use super::message::{reply, Reply, UdpHeader};
use super::Client;
use crate::proxy::udp::{bump, source_ip, UdpDrop, MAX_UDP_PAYLOAD};
use crate::proxy::{close_gracefully, Connector};
use crate::tunnel::Target;

/// Runs one UDP ASSOCIATE after a successful handshake; `requested` is the request's
/// DST.ADDR/DST.PORT (where the client will send from, or zeros).
pub(super) async fn associate<S, C>(mut control: S, ends: Client, requested: Target, connector: &C)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    C: Connector,
{
    let peer = ends.peer;
    let any = Target::Ip(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let mut assoc = match connector.associate(any).await {
        Ok(assoc) => assoc,
        Err(result) => {
            info!(%peer, ?result, "socks5: UDP associate failed");
            let _ = Reply::new(result.socks5_reply_code())
                .write_to(&mut control)
                .await;
            close_gracefully(control).await;
            return;
        }
    };
    let bind_ip = ends
        .local
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
    let relay = match UdpSocket::bind((bind_ip, 0)).await.and_then(|s| {
        let at = s.local_addr()?;
        Ok((s, at))
    }) {
        Ok(r) => r,
        Err(error) => {
            info!(%peer, %error, "socks5: cannot bind the UDP relay");
            let _ = Reply::new(reply::GENERAL_FAILURE)
                .write_to(&mut control)
                .await;
            close_gracefully(control).await;
            return;
        }
    };
    let (relay, relay_addr) = relay;
    crate::proxy::udp::enlarge_recv_buffer(&relay);
    let answer = Reply {
        code: reply::SUCCEEDED,
        bound: Target::Ip(relay_addr),
    };
    if answer.write_to(&mut control).await.is_err() {
        return;
    }
    info!(%peer, relay = %relay_addr, "socks5: UDP association open");

    let client_ip = peer.ip().to_canonical();
    let mut client_port = match requested {
        Target::Ip(a) if a.port() != 0 => Some(a.port()),
        _ => None,
    };
    let sender = assoc.sender();
    let counters = assoc.counters().clone();
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let mut control_buf = [0u8; 512];
    let mut out = Vec::with_capacity(2048);
    let ended_by = loop {
        tokio::select! {
            r = control.read(&mut control_buf) => match r {
                Ok(0) | Err(_) => break "control connection closed",
                Ok(_) => {} // nothing is expected here; ignore
            },
            r = relay.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(error) => {
                        debug!(%peer, %error, "socks5: relay receive error");
                        continue;
                    }
                };
                if from.ip().to_canonical() != client_ip
                    || client_port.is_some_and(|p| p != from.port())
                {
                    bump(&counters.dropped_foreign);
                    continue;
                }
                client_port.get_or_insert(from.port());
                bump(&counters.received);
                let (header, start) = match UdpHeader::parse(&buf[..n]).await {
                    Ok(x) => x,
                    Err(_) => {
                        bump(&counters.dropped_malformed);
                        continue;
                    }
                };
                if header.frag != 0 {
                    bump(&counters.dropped_fragment);
                    continue;
                }
                match sender.send(&header.addr, &buf[start..n]) {
                    Ok(()) => {}
                    Err(UdpDrop::Closed) => break "tunnel association ended",
                    Err(why) => debug!(%peer, dest = %header.addr, %why, "socks5: datagram dropped"),
                }
            }
            d = assoc.recv() => {
                let Some((from, payload)) = d else {
                    break "tunnel association ended";
                };
                let (Some(port), Some(from)) = (client_port, source_ip(&from)) else {
                    bump(&counters.dropped_malformed);
                    continue;
                };
                out.clear();
                UdpHeader { frag: 0, addr: Target::Ip(from) }.write(&mut out);
                out.extend_from_slice(&payload);
                match relay.send_to(&out, SocketAddr::new(client_ip, port)).await {
                    Ok(_) => bump(&counters.delivered),
                    Err(error) => {
                        debug!(%peer, %error, "socks5: relay send failed");
                        bump(&counters.send_errors);
                    }
                }
            }
        }
    };
    info!(%peer, relay = %relay_addr, reason = ended_by, "socks5: UDP association closed");
}
