//! `rawtun dump`: a tcpdump-like view of the tunnel port — flows, flags, seq/ack, lengths —
//! and, for each packet, what can be said about it from outside a session. On a server
//! (which holds the keys that openings prove):
//!
//! - a SYN's opening proof: valid (and how far its clock is from ours), or not;
//! - a msg1's mac1: valid for which server key, its clock, and whether its client key is
//!   configured (this takes the handshake's DH work);
//! - a probe (a client that hears nothing) with a valid tag;
//! - anything else: a session packet (sealed with ephemeral keys: nobody outside the
//!   session can check it, dump included) or junk — the server answers neither.
//!
//! It captures what arrives at this host (the capture is inbound-only); on a client it can
//! only show the packets, since the server's replies verify only inside a session.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::config::{Config, Role};
use crate::crypto::proof;
use crate::crypto::{self, Binding, ServerIdentity};
use crate::io::{self, PacketRx, PcapOptions};
use crate::wire::{self, ParsedFrame, TcpFlags};

/// What dump concluded about one frame, given the server's keys (empty on a client).
pub fn verdict(
    ids: &[ServerIdentity],
    cipher: crypto::Cipher,
    p: &ParsedFrame<'_>,
    now_ms: u64,
) -> String {
    let r = &p.repr;
    let skew = |t: u64| format!("clock {:+.1} s", (t as i64 - now_ms as i64) as f64 / 1000.0);
    let bindings = [Binding::source(r.src), Binding::NONE];
    if r.flags.contains(TcpFlags::SYN) && !r.flags.contains(TcpFlags::ACK) {
        let Some((tsval, _)) = r.options.timestamp else {
            return "SYN without timestamps: not a rawtun opening".into();
        };
        for id in ids {
            for b in &bindings {
                let t = proof::syn_time(id, b, r.seq, tsval, now_ms);
                if proof::check_syn(id, b, r.seq, t) {
                    return format!("SYN: opening proof valid ({})", skew(t));
                }
            }
        }
        return if ids.is_empty() {
            "SYN".into()
        } else {
            "SYN: no valid opening proof (stranger, or another key)".into()
        };
    }
    if p.payload.is_empty() {
        return "no payload".into();
    }
    if let Some(check) = crypto::check_msg1(ids, &bindings, p.payload) {
        let id = &ids[check.identity];
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let mut out = Vec::new();
        let who = match crypto::respond(id, &check, cipher, p.payload, &[], &mut rng, &mut out) {
            Ok(a) => format!("client {}", a.client.name),
            Err(e) => e.to_string(),
        };
        return format!("msg1: mac1 valid ({}); {who}", skew(check.t_ms));
    }
    let flow = Binding::flow(r.src, r.dst);
    for id in ids {
        if let Some(probe) = proof::check_probe(id, &flow, p.payload) {
            let name = id.client_by_id(&probe.client).map_or("?", |c| &*c.name);
            return format!("probe from client {name} ({})", skew(probe.t_ms));
        }
    }
    "sealed session packet, server reply, or junk (not checkable outside a session)".into()
}

/// Prints one line per captured frame until `count` frames (0 = until interrupted).
pub fn dump(cfg: &Config, count: u64) -> anyhow::Result<()> {
    let interface = cfg
        .network
        .interface
        .clone()
        .context("network.interface is not set")?;
    let filter = match cfg.role {
        Role::Server => io::tunnel_filter(cfg.listen.map_or(0, |l| l.port()), None),
        Role::Client => io::tunnel_filter(0, cfg.server),
    };
    let opts = PcapOptions {
        interface: interface.clone(),
        filter: filter.clone(),
        sockbuf: cfg.network.pcap_sockbuf,
        snaplen: 4096,
    };
    let (mut rx, _tx, link) =
        io::open_pcap(&opts).with_context(|| format!("opening {interface}"))?;
    let ids: Arc<[ServerIdentity]> = match cfg.role {
        Role::Server => {
            let unspecified = IpAddr::from([0, 0, 0, 0]);
            let addrs = super::keys::server_addresses(cfg, unspecified, Some(&interface));
            super::keys::server_identities(cfg, &addrs)?
        }
        Role::Client => Vec::new().into(),
    };
    let wall = super::wall_clock();
    eprintln!("rawtun dump: {interface}, filter `{filter}`, inbound");
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut seen = 0u64;
    while count == 0 || seen < count {
        let Some(n) = rx.recv(&mut buf)? else {
            continue;
        };
        seen += 1;
        let t = start.elapsed().as_secs_f64();
        match wire::parse_frame(link, &buf[..n]) {
            Ok(p) => {
                let r = &p.repr;
                println!(
                    "{t:10.6} {} > {} [{}] seq {} ack {} win {} len {} ttl {} id {}: {}",
                    r.src,
                    r.dst,
                    r.flags,
                    r.seq,
                    r.ack,
                    r.window,
                    p.payload.len(),
                    r.ttl,
                    r.ip_id,
                    verdict(
                        &ids,
                        cfg.transport.kcp.block,
                        &p,
                        wall.unix_ms(Instant::now())
                    )
                );
            }
            Err(e) => println!("{t:10.6} unparsable frame ({n} bytes): {e}"),
        }
    }
    Ok(())
}
