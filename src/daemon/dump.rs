//! `rawtun dump`: a tcpdump-like view of the tunnel port — flows, flags, seq/ack, lengths —
//! and, for each packet, what can be said about its authenticity from outside a session:
//!
//! - a handshake first message authenticates with the pre-shared key alone (Noise psk0), so
//!   dump tells "key matches" from "wrong key or not a handshake";
//! - a stateless reset verifies with the key too;
//! - session packets are sealed with ephemeral keys (forward secrecy): nobody outside the
//!   session can check them, dump included, and it says so.
//!
//! It captures what arrives at this host (the capture is inbound-only).

use std::time::Instant;

use anyhow::Context;

use crate::config::{Config, Role};
use crate::crypto::{self, Psk};
use crate::io::{self, PacketRx, PcapOptions};
use crate::wire;

/// What dump concluded about one payload.
pub fn verdict(psk: &Psk, cipher: crypto::Cipher, payload: &[u8]) -> &'static str {
    if payload.is_empty() {
        return "no payload";
    }
    if crypto::reset::check_reset(psk, payload).is_some() {
        return "stateless reset: verifies with the key";
    }
    let mut out = Vec::new();
    match crypto::respond(psk, cipher, payload, &[], &mut out) {
        Ok(_) => "handshake: key matches",
        Err(crypto::HandshakeError::CipherMismatch { .. }) => {
            "handshake: key matches, cipher differs"
        }
        Err(_) => {
            "sealed: session packet or reply (not checkable outside the session) or wrong key"
        }
    }
}

/// Prints one line per captured frame until `count` frames (0 = until interrupted).
pub fn dump(cfg: &Config, count: u64) -> anyhow::Result<()> {
    let psk = Psk::from_key(&cfg.transport.kcp.key).context("deriving the key")?;
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
                    verdict(&psk, cfg.transport.kcp.block, p.payload)
                );
            }
            Err(e) => println!("{t:10.6} unparsable frame ({n} bytes): {e}"),
        }
    }
    Ok(())
}
