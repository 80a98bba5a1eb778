//! Whole protocol stack (fake TCP + Noise + AEAD + KCP + mux) between a client
//! [`Connection`] and a server [`Listener`] over a seeded lossy in-memory network, in virtual
//! time: no sleeping, deterministic for a seed, seconds of wall time for minutes of network
//! time. The harness is tests/common/sim.rs; the security scenarios (silence, replays,
//! resets, revocation, rekeying) are in tests/sim_security.rs.

mod common;

use std::time::Duration;

use common::sim::*;
use rawtun::daemon::Snapshot;
use rawtun::endpoint::{ConnEvent, ConnTotals, Connection, DatagramError, ListenerEvent, Phase};
use rawtun::io::mem::LinkModel;
use rawtun::mux::{MuxEvent, StreamId};

/// Sends `total` bytes on one stream client → server through `model`; returns virtual time
/// taken and checks every byte.
fn transfer(model: LinkModel, total: u64) -> Duration {
    Sim::new(model, "k", "k").transfer(total)
}

#[test]
fn ten_mib_through_loss_delay_and_reordering_arrives_intact() {
    let model = LinkModel {
        loss: 0.05,
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        reorder: 0.02,
        duplicate: 0.0,
        mtu: 1514,
        seed: 7,
    };
    let took = transfer(model, 10 << 20);
    eprintln!("10 MiB at 5% loss, 200 ms RTT, 2% reorder: {took:?} of virtual time");
}

#[test]
fn duplication_and_jitter_do_not_corrupt() {
    let model = LinkModel {
        loss: 0.01,
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        reorder: 0.05,
        duplicate: 0.02,
        mtu: 1514,
        seed: 11,
    };
    transfer(model, 2 << 20);
}

#[test]
fn wrong_key_never_establishes_and_the_server_stays_silent() {
    let model = clean_link(20, 3);
    let mut sim = Sim::new(model, "client-key", "server-key");
    let mut cev = Vec::new();
    let mut sev = Vec::new();
    sim.run_for(Duration::from_secs(10), &mut cev, &mut sev);
    assert!(cev.iter().all(|e| !matches!(e, ConnEvent::Established)));
    assert!(sev.is_empty(), "server events: {sev:?}");
    assert_ne!(sim.client.phase(), Phase::Established);
    assert_eq!(sim.server_frames, 0, "the server answered a stranger");
    assert_eq!(sim.server.connections().count(), 0, "state for a stranger");
    let drops = sim.server.stats().drops;
    assert!(
        drops.syn_invalid >= 3,
        "SYN retransmissions counted: {drops:?}"
    );
}

/// 50 streams at once, each echoed back by the server while it is still being sent (both
/// directions busy, every stream's window in play).
#[test]
fn fifty_streams_echoed_concurrently() {
    const STREAMS: usize = 50;
    const LEN: u64 = 512 * 1024;
    let model = LinkModel {
        loss: 0.01,
        delay: Duration::from_millis(20),
        jitter: Duration::ZERO,
        reorder: 0.0,
        duplicate: 0.0,
        mtu: 1514,
        seed: 5,
    };
    let mut sim = Sim::new(model, "k", "k");
    let start = sim.now;
    let mut ids: Vec<StreamId> = Vec::new();
    let mut credit: Vec<i64> = Vec::new();
    let mut written = vec![0u64; STREAMS];
    let mut echoed = vec![0u64; STREAMS];
    let mut server_credit: std::collections::HashMap<StreamId, i64> = Default::default();
    let mut server_backlog: std::collections::HashMap<StreamId, Vec<u8>> = Default::default();
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    let mut chunk = Vec::new();
    let limit = start + Duration::from_secs(300);
    while echoed.iter().any(|&e| e < LEN) {
        assert!(sim.now < limit, "stalled: echoed {echoed:?}");
        sim.step(&mut cev, &mut sev);
        for e in cev.drain(..) {
            match e {
                ConnEvent::Established => {
                    for _ in 0..STREAMS {
                        ids.push(sim.client.open_stream(b"echo").expect("open"));
                        credit.push(256 * 1024);
                    }
                }
                ConnEvent::Stream(MuxEvent::Sent { id, bytes }) => {
                    let i = ids.iter().position(|&x| x == id).expect("known stream");
                    credit[i] += bytes as i64;
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    let i = ids.iter().position(|&x| x == id).expect("known stream");
                    for (k, b) in data.iter().enumerate() {
                        assert_eq!(*b, pattern(i as u64, echoed[i] + k as u64));
                    }
                    echoed[i] += data.len() as u64;
                    sim.client.stream_consumed(id, data.len());
                }
                ConnEvent::SessionLost(r) => panic!("client session lost: {r:?}"),
                _ => {}
            }
        }
        let mut peer = None;
        for ListenerEvent { peer: p, event } in sev.drain(..) {
            peer = Some(p);
            match event {
                ConnEvent::Stream(MuxEvent::Opened { id, .. }) => {
                    server_credit.insert(id, 256 * 1024);
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    server_backlog
                        .entry(id)
                        .or_default()
                        .extend_from_slice(&data);
                }
                ConnEvent::Stream(MuxEvent::Sent { id, bytes }) => {
                    *server_credit.entry(id).or_default() += bytes as i64;
                }
                ConnEvent::SessionLost(r) => panic!("server session lost: {r:?}"),
                _ => {}
            }
        }
        // The server application echoes what it has, as far as its credit allows, and only
        // then reports the bytes consumed (like a socket write completing).
        if let Some(p) = peer.or_else(|| sim.server.connections().next().map(|(p, _)| *p)) {
            let conn = sim.server.connection_mut(&p).expect("server conn");
            for (id, backlog) in server_backlog.iter_mut() {
                let c = server_credit.entry(*id).or_default();
                let n = backlog.len().min((*c).max(0) as usize);
                if n > 0 {
                    assert!(conn.stream_write(*id, &backlog[..n]));
                    conn.stream_consumed(*id, n);
                    backlog.drain(..n);
                    *c -= n as i64;
                }
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            while credit[i] > 0 && written[i] < LEN {
                let n = (16 * 1024).min(LEN - written[i]).min(credit[i] as u64);
                chunk.clear();
                chunk.extend((0..n).map(|k| pattern(i as u64, written[i] + k)));
                assert!(sim.client.stream_write(id, &chunk));
                written[i] += n;
                credit[i] -= n as i64;
            }
        }
        sim.advance();
    }
}

/// A server that restarted (lost every session) stays silent to the client's data, but
/// answers the probe the client sends when it hears nothing with a reset bound to the flow;
/// the client notices within a second instead of waiting for its idle timeout.
#[test]
fn restarted_server_resets_the_client_session() {
    let model = clean_link(25, 9);
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_millis(200), &mut cev, &mut sev);
    // The server process restarts: a fresh listener with the same key and address.
    let ids: std::sync::Arc<[_]> = vec![shared("k").server_identity()].into();
    sim.server = listener(sim.cfg(), ids, sim.now, 8);
    let restarted_at = sim.now;
    let id = sim.client.open_stream(b"after restart").expect("open");
    assert!(sim.client.stream_write(id, b"hello"));
    cev.clear();
    let mut lost = None;
    while lost.is_none() {
        assert!(
            sim.now < restarted_at + Duration::from_secs(5),
            "client did not notice the restart"
        );
        sim.step(&mut cev, &mut sev);
        lost = cev.iter().find_map(|e| match e {
            ConnEvent::SessionLost(r) => Some(*r),
            _ => None,
        });
        sim.advance();
    }
    let took = sim.now - restarted_at;
    assert_eq!(lost, Some(rawtun::endpoint::CloseReason::PeerRestarted));
    assert!(sim.client.is_closed());
    assert!(took < Duration::from_secs(1), "noticed after {took:?}");
    assert_eq!(
        sim.server.stats().resets_sent,
        1,
        "one reset, for one probe"
    );
    assert!(sim.client.stats().probes_out >= 1);
}

/// A second handshake on a live flow (an attacker holding the key who spoofs the client's
/// address, and so never sees the answers) must not displace the session: the server keeps
/// it until a data packet opens with the newer keys.
#[test]
fn handshake_on_a_live_flow_does_not_displace_the_session() {
    let model = clean_link(10, 4);
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    let cfg = sim.cfg();
    let key = std::sync::Arc::new(shared("k").client_identity());
    let mut intruder = rawtun::endpoint::Connection::client(
        cfg,
        key,
        client_flow(client_addr()),
        seed(99),
        sim.now,
    )
    .expect("intruder");
    let mut buf = vec![0u8; rawtun::endpoint::MAX_FRAME];
    for _ in 0..3 {
        while let Some(r) = intruder.poll_transmit(sim.now, &mut buf) {
            let frame = buf[r].to_vec();
            let parsed =
                rawtun::wire::parse_frame(rawtun::wire::LinkType::Ethernet, &frame).expect("parse");
            sim.server.handle_frame(&parsed, sim.now);
        }
        // Pretend the SYN-ACK came back to the intruder so it sends its msg1 (msg2 goes to
        // the real client's address, which the intruder does not see).
        let mut replies = Vec::new();
        sim.server.connections_mut().for_each(|(_, c)| {
            while let Some(r) = c.poll_transmit(sim.now, &mut buf) {
                replies.push(buf[r].to_vec());
            }
        });
        for f in replies {
            let parsed =
                rawtun::wire::parse_frame(rawtun::wire::LinkType::Ethernet, &f).expect("parse");
            if parsed.payload.is_empty() {
                intruder.handle_frame(&parsed, sim.now);
            }
        }
    }
    // The real client goes on using its session.
    let id = sim.client.open_stream(b"still here").expect("open");
    assert!(sim.client.stream_write(id, &[7u8; 50_000]));
    sim.client.stream_finish(id);
    cev.clear();
    sev.clear();
    let mut got = 0usize;
    let mut done = false;
    let end = sim.now + Duration::from_secs(10);
    while !done {
        assert!(sim.now < end, "stream did not complete: {got} bytes");
        sim.step(&mut cev, &mut sev);
        for e in sev.drain(..) {
            match e.event {
                ConnEvent::Stream(MuxEvent::Data { data, .. }) => {
                    assert!(data.iter().all(|&b| b == 7));
                    got += data.len();
                }
                ConnEvent::Stream(MuxEvent::Finished { .. }) => done = true,
                ConnEvent::SessionLost(r) => panic!("server dropped the session: {r:?}"),
                _ => {}
            }
        }
        for e in cev.drain(..) {
            if let ConnEvent::SessionLost(r) = e {
                panic!("client lost its session: {r:?}");
            }
        }
        sim.advance();
    }
    assert_eq!(got, 50_000);
}

/// Datagrams beside a saturating stream, through 5% loss and 2% duplication: each arrives
/// at most once, intact, one link delay after it was sent (never behind stream bytes, never
/// retransmitted); an oversized one is refused whole.
#[test]
fn datagrams_skip_the_stream_queue_and_are_never_retransmitted() {
    let model = LinkModel {
        loss: 0.05,
        duplicate: 0.02,
        ..clean_link(50, 3)
    };
    let mut sim = Sim::new(model, "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    let max = sim.client.max_datagram();
    assert_eq!(
        sim.client.send_datagram(&vec![0; max + 1]),
        Err(DatagramError::TooLarge { len: max + 1, max })
    );
    let stream = sim.client.open_stream(b"bulk").expect("open stream");
    let chunk = vec![0x5a; 64 * 1024];
    let start = sim.now;
    let mut sent_at = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut worst = Duration::ZERO;
    let mut next_send = sim.now;
    let mut seq = 0u32;
    const COUNT: u32 = 2000;
    // Until every datagram is sent and a second has passed (60 s of virtual time at most).
    while sim.now < start + Duration::from_secs(60)
        && (seq < COUNT || sim.now < next_send + Duration::from_secs(1))
    {
        // Keep the stream's queue full, so KCP always has a window's worth waiting.
        sim.client.stream_write(stream, &chunk);
        if seq < COUNT && sim.now >= next_send {
            let mut body = seq.to_be_bytes().to_vec();
            body.extend((0..200).map(|i| pattern(u64::from(seq), i)));
            sim.client.send_datagram(&body).expect("queued");
            sent_at.insert(seq, sim.now);
            seq += 1;
            next_send = sim.now + Duration::from_millis(2);
        }
        sim.step(&mut cev, &mut sev);
        cev.clear();
        for ListenerEvent { peer, event } in sev.drain(..) {
            match event {
                ConnEvent::Datagram(body) => {
                    let n = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                    assert!(seen.insert(n), "datagram {n} delivered twice");
                    assert!(
                        body[4..]
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == pattern(u64::from(n), i as u64)),
                        "datagram {n} altered"
                    );
                    worst = worst.max(sim.now - sent_at[&n]);
                }
                ConnEvent::Stream(MuxEvent::Data { id, data }) => {
                    let conn = sim.server.connection_mut(&peer).expect("server conn");
                    conn.stream_consumed(id, data.len());
                }
                _ => {}
            }
        }
        sim.advance();
    }
    let stats = sim.client.stats();
    assert_eq!(seq, COUNT);
    assert_eq!(
        stats.datagrams_out,
        u64::from(COUNT),
        "sent once each, never again"
    );
    assert_eq!(stats.datagrams_dropped, 1, "only the oversized one");
    let got = seen.len() as u32;
    assert!(
        got < COUNT && got > COUNT * 9 / 10,
        "{got} of {COUNT} arrived through 5% loss"
    );
    // 50 ms one way; the sim's time step and the bulk stream's frames in the same
    // transmit round add at most a few ms.
    assert!(
        worst < Duration::from_millis(55),
        "a datagram took {worst:?}"
    );
    let kcp = sim.client.kcp_stats().expect("session");
    assert!(
        kcp.retransmits + kcp.fast_retransmits > 0,
        "the stream did see the loss"
    );
}

/// The snapshot a packet worker publishes for these sessions (the daemon's own code):
/// the ended ones' counters plus the live ones', as JSON.
fn published<'a>(
    ended: &ConnTotals,
    live: impl IntoIterator<Item = &'a Connection>,
) -> serde_json::Value {
    let mut s = Snapshot::default();
    s.add_sessions(ended, live);
    serde_json::to_value(s).expect("snapshot JSON")
}

/// The server worker's snapshot of `sim`'s listener.
fn server_published(sim: &Sim) -> serde_json::Value {
    published(
        sim.server.retired(),
        sim.server.connections().map(|(_, c)| c),
    )
}

/// Every counter of `before` (every numeric field, nested ones too, but the gauges) is
/// still there in `after` and no lower. Returns how many were above zero before.
fn no_counter_went_down(before: &serde_json::Value, after: &serde_json::Value, who: &str) -> usize {
    let mut moved = 0;
    for (key, b) in before.as_object().expect("object") {
        if Snapshot::GAUGES.contains(&key.as_str()) {
            continue;
        }
        if b.is_object() {
            moved += no_counter_went_down(b, &after[key], who);
            continue;
        }
        let (b, a) = (b.as_u64().expect("a number"), after[key].as_u64());
        assert!(
            a.is_some_and(|a| a >= b),
            "{who}: {key} went from {b} to {a:?}\nbefore: {before}\nafter: {after}"
        );
        moved += usize::from(b > 0);
    }
    moved
}

/// A lossy, duplicating link and short key phases, so retransmissions, replays and key
/// updates happen as well as handshakes, packets and bytes.
fn busy_sim() -> Sim {
    let now = std::time::Instant::now();
    let mut cfg = conn_cfg(now);
    cfg.rekey_packets = 200;
    let ids: std::sync::Arc<[_]> = vec![shared("k").server_identity()].into();
    let client = std::sync::Arc::new(shared("k").client_identity());
    let model = LinkModel {
        loss: 0.03,
        duplicate: 0.02,
        reorder: 0.02,
        ..clean_link(20, 21)
    };
    let mut sim = Sim::with(model, cfg, client, ids, now);
    sim.transfer(1 << 20);
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    for i in 0..20u8 {
        let _ = sim.client.send_datagram(&[i; 100]);
        if let Some(c) = sim.server.connection_mut(&client_addr()) {
            let _ = c.send_datagram(&[i; 100]);
        }
        sim.run_for(Duration::from_millis(5), &mut cev, &mut sev);
    }
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    sim
}

/// Counters that only go up (issue 11): a session moves traffic through loss, then ends;
/// every counter the server's and the client's workers publish is at least what it was
/// while the session was live. The client worker then opens a new connection, as it does.
#[test]
fn an_ended_session_keeps_every_counter_on_both_sides() {
    let mut sim = busy_sim();
    let mut client_ended = ConnTotals::default();
    let client_before = published(&client_ended, [&sim.client]);
    let server_before = server_published(&sim);
    let c = sim.client.stats();
    assert!(
        c.retransmits + c.fast_retransmits > 0,
        "no loss seen: {c:?}"
    );
    assert!(c.key_updates > 0 && c.datagrams_out > 0, "{c:?}");

    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.client
        .close_with_notice(rawtun::endpoint::CloseNotice::Shutdown, sim.now);
    sim.run_for(Duration::from_secs(2), &mut cev, &mut sev);
    assert!(sim.client.is_closed());
    assert_eq!(
        sim.server.connections().count(),
        0,
        "the server kept the flow"
    );
    // What the client worker does with a closed session: keep its counters, reconnect.
    client_ended.retire(&sim.client);
    let other = "198.18.0.1:40002".parse().expect("addr");
    sim.client = Connection::client(
        sim.cfg(),
        std::sync::Arc::new(shared("k").client_identity()),
        client_flow(other),
        seed(43),
        sim.now,
    )
    .expect("reconnect");
    sim.run_for(Duration::from_millis(100), &mut cev, &mut sev);

    let server_after = server_published(&sim);
    let moved = no_counter_went_down(&server_before, &server_after, "server");
    assert!(
        moved >= 8,
        "only {moved} server counters moved: {server_before}"
    );
    let client_after = published(&client_ended, [&sim.client]);
    let moved = no_counter_went_down(&client_before, &client_after, "client");
    assert!(
        moved >= 10,
        "only {moved} client counters moved: {client_before}"
    );
}

/// The client restarts on the same address and port (a fixed `client port`): the server
/// switches the flow to the newer session, and the old session's counters (replays, key
/// phases, retransmissions) stay in the connection's.
#[test]
fn a_session_replaced_on_the_same_flow_keeps_its_counters() {
    let mut sim = busy_sim();
    let before = server_published(&sim);
    let old = sim.server.connections().next().expect("flow").1.stats();
    assert!(old.key_updates > 0, "{old:?}");
    sim.client = Connection::client(
        sim.cfg(),
        std::sync::Arc::new(shared("k").client_identity()),
        client_flow(client_addr()),
        seed(44),
        sim.now,
    )
    .expect("restarted client");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    assert!(
        sev.iter().any(|e| matches!(
            e.event,
            ConnEvent::SessionLost(rawtun::endpoint::CloseReason::PeerRestarted)
        )),
        "the server did not switch sessions: {sev:?}"
    );
    assert_eq!(sim.server.connections().count(), 1);
    let after = server_published(&sim);
    no_counter_went_down(&before, &after, "server");
    let s = &sim.server.stats();
    assert_eq!(s.flows_expired, 0, "same connection, new session");
}
