//! `rawtun ping`: real round trips to the server over the raw path — fake TCP, handshake,
//! AEAD, KCP and a mux PING per probe — reported like ping(8), telling "no answer" apart
//! from "answers that fail authentication" (wrong key or cipher).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::{Config, Role};
use crate::endpoint::{ConnEvent, Connection, MAX_FRAME};
use crate::faketcp::FlowAddrs;
use crate::mux::MuxEvent;
use crate::wire::{self, LinkType};

/// What `rawtun ping` was asked to do.
#[derive(Clone, Debug)]
pub struct PingOptions {
    pub count: u32,
    pub interval: Duration,
    /// How long to wait for the session and for the last reply.
    pub timeout: Duration,
}

/// The outcome.
#[derive(Clone, Debug, Default)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    pub rtts: Vec<Duration>,
    pub handshake: Option<Duration>,
    /// Packets from the server that failed authentication.
    pub auth_failures: u64,
    /// Packets received from the server at all.
    pub packets_in: u64,
}

impl PingSummary {
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * f64::from(self.sent - self.received) / f64::from(self.sent)
    }
}

/// Runs the probes and prints one line per reply. Errors if no session could be made,
/// saying whether the server answered at all.
pub fn ping(cfg: &Config, opts: &PingOptions) -> anyhow::Result<PingSummary> {
    if cfg.role != Role::Client {
        bail!("rawtun ping needs a client config (role: client, server.addr)");
    }
    let server = cfg.server.context("server.addr is required")?;
    let identity = super::keys::client_identity(cfg)?;
    // One worker: one capture ring (a fanout group of several would hand some of the
    // replies to rings nobody reads) and one transmit handle.
    let mut one = cfg.clone();
    one.performance.packet_workers = 1;
    let (plan, (rxs, mut txs)) = super::plan(&one, Some(server.ip()))?;
    let mut rx = rxs.into_iter().next().context("no capture handle")?;
    let mut tx = txs.pop().context("no transmit handle")?;
    let router_mac = match (plan.router_mac, plan.conn.flow.link) {
        (Some(m), _) => m,
        (None, LinkType::RawIp) => [0; 6],
        (None, LinkType::Ethernet) => {
            bail!("gateway MAC for {server} unknown: set network.ipv4.router_mac")
        }
    };
    let port = 32768 + rand::random::<u16>() % 28000;
    let addrs = FlowAddrs {
        local: SocketAddr::new(plan.local_ip, port),
        remote: server,
        local_mac: plan.local_mac,
        remote_mac: router_mac,
    };
    let start = Instant::now();
    let mut conn = Connection::client(plan.conn.clone(), identity, addrs, rand::random(), start)
        .map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    println!(
        "PING {server} via {} from {}:{port}",
        plan.interface, plan.local_ip
    );
    let link = plan.conn.flow.link;
    let mut rxbuf = vec![0u8; 65536];
    let mut txbuf = vec![0u8; MAX_FRAME];
    let mut sum = PingSummary::default();
    let mut next_probe: Option<Instant> = None;
    let mut probe_sent: Option<Instant> = None;
    let mut last_activity = start;
    loop {
        let now = Instant::now();
        if let Some(Ok(n)) = rx.recv(&mut rxbuf).transpose() {
            if let Ok(p) = wire::parse_frame(link, &rxbuf[..n]) {
                if p.repr.dst.port() == port && p.repr.src == server {
                    conn.handle_frame(&p, Instant::now());
                }
            }
        }
        let now = now.max(Instant::now());
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        while let Some(ev) = conn.poll_event() {
            match ev {
                ConnEvent::Established => {
                    sum.handshake = Some(now - start);
                    println!(
                        "session established in {:.1} ms",
                        (now - start).as_secs_f64() * 1e3
                    );
                    next_probe = Some(now);
                }
                ConnEvent::Stream(MuxEvent::Pong { rtt }) => {
                    if probe_sent.take().is_some() {
                        sum.received += 1;
                        sum.rtts.push(rtt);
                        last_activity = now;
                        println!(
                            "reply from {server}: seq={} time={:.2} ms",
                            sum.sent,
                            rtt.as_secs_f64() * 1e3
                        );
                    }
                }
                ConnEvent::SessionLost(r) => bail!("session lost: {r:?}"),
                ConnEvent::Stream(_) | ConnEvent::Datagram(_) => {}
            }
        }
        if let Some(t) = next_probe {
            if now >= t {
                if sum.sent == opts.count {
                    if probe_sent.is_none() || now >= last_activity + opts.timeout {
                        break;
                    }
                } else {
                    if probe_sent.take().is_some() {
                        println!("no reply: seq={}", sum.sent);
                    }
                    sum.sent += 1;
                    conn.ping(now);
                    probe_sent = Some(now);
                    last_activity = now;
                    next_probe = Some(now + opts.interval);
                }
            }
        } else if now >= start + opts.timeout {
            let st = conn.stats();
            sum.auth_failures = st.auth_failures;
            sum.packets_in = st.packets_in;
            if st.auth_failures > 0 {
                bail!(
                    "{} packet(s) from {server} failed authentication: something on the path \
                     answers in the server's name, or the server's key changed",
                    st.auth_failures
                );
            }
            if st.packets_in > 0 {
                bail!(
                    "the server accepted the opening (the key it was made with matches) but \
                     refused the handshake within {:?}: this client's key is not in its \
                     clients list (or was removed), or transport.kcp.block differs; the \
                     server's log says which",
                    opts.timeout
                );
            }
            bail!(
                "no answer from {server} within {:?}. A rawtun server answers nothing to an \
                 opening that does not prove its key, so check: the key (transport.kcp.key, \
                 or identity.private_key and server.public_key), that both clocks agree \
                 within 2 minutes, server.addr, that the server runs, routes and firewalls \
                 on the path",
                opts.timeout
            );
        }
        while let Some(r) = conn.poll_transmit(Instant::now(), &mut txbuf) {
            tx.send(&txbuf[r]).context("sending")?;
        }
    }
    let st = conn.stats();
    sum.auth_failures = st.auth_failures;
    sum.packets_in = st.packets_in;
    Ok(sum)
}
