//! The server's posture towards the network, in virtual time (tests/common/sim.rs): it
//! answers nothing to strangers, junk, wrong keys, replayed openings (a second or a day
//! later, from the same or another address) or corrupted packets; only a valid probe for a
//! session it lost gets a reset, and that reset ends only the flow it was made for; a
//! blackout is survived; removed clients are told and cut off; keys rotate through loss and
//! reordering without losing a byte; runs are reproducible from their seeds.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::sim::*;
use rand::{Rng, SeedableRng};
use rawtun::crypto::{ClientIdentity, PublicKey, ServerIdentity, StaticSecret};
use rawtun::endpoint::{CloseNotice, CloseReason, ConnEvent, Phase};
use rawtun::io::mem::LinkModel;
use rawtun::mux::MuxEvent;
use rawtun::wire::{parse_frame, LinkType, TcpFlags};

fn other_addr() -> SocketAddr {
    "198.18.0.77:40000".parse().unwrap()
}

/// A listener with the shared key "k" and no client at all.
fn lone_server() -> Sim {
    Sim::new(clean_link(10, 1), "not-k", "k")
}

#[test]
fn strangers_and_junk_get_no_answer_and_no_state() {
    let mut sim = lone_server();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let srv = server_addr();
    let mut answered = 0;
    for i in 0..1000u32 {
        let src: SocketAddr = format!("198.18.{}.{}:{}", i % 200, 1 + i % 250, 1024 + i)
            .parse()
            .unwrap();
        // A stranger's SYN, with or without timestamps.
        let ts = (i % 2 == 0).then(|| rng.random());
        answered += sim.inject(&segment(src, srv, TcpFlags::SYN, rng.random(), 0, ts, &[]));
        // Junk of random length 0..=1400 with data-segment flags.
        let len = rng.random_range(0..=1400);
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let flags = [TcpFlags::PSH_ACK, TcpFlags::ACK, TcpFlags(0x19)][i as usize % 3];
        answered += sim.inject(&segment(
            src,
            srv,
            flags,
            rng.random(),
            rng.random(),
            Some(1),
            &junk,
        ));
    }
    assert_eq!(answered, 0, "the server answered a stranger");
    assert_eq!(sim.server.connections().count(), 0);
    let d = sim.server.stats().drops;
    assert_eq!(d.syn_invalid, 1000, "{d:?}");
    assert_eq!(d.no_flow, 1000, "{d:?}");
}

/// Records a whole session (SYN, ACK, msg1, data), ends it, and replays the recording in
/// every way the issue names. Nothing may come back.
fn replays_get_nothing(nat: bool) {
    let now = std::time::Instant::now();
    let mut cfg = conn_cfg(now);
    cfg.bind_source = !nat;
    let ids: Arc<[ServerIdentity]> = vec![shared("k").server_identity()].into();
    let client = Arc::new(shared("k").client_identity());
    let mut sim = Sim::with(clean_link(10, 2), cfg, client, ids.clone(), now);
    sim.recorded = Some(Vec::new());
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    let recording = sim.recorded.take().expect("recorded");
    assert!(recording.len() >= 4, "SYN, ACK, msg1 and data");
    // The client goes away; the server drops the session at its idle timeout (60 s).
    sim.client.close_with_notice(CloseNotice::Shutdown, sim.now);
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    sim.blackout_until = Some(sim.now + Duration::from_secs(3600));
    sim.run_for(Duration::from_secs(65), &mut cev, &mut sev);
    assert_eq!(
        sim.server.connections().count(),
        0,
        "the session should be gone"
    );
    let replay_all = |sim: &mut Sim, rewrite: &dyn Fn(&[u8]) -> Vec<u8>| -> u64 {
        recording.iter().map(|f| sim.inject(&rewrite(f))).sum()
    };
    // From the original address, after the session ended (66 s later: still inside the
    // clock window, so the seen-sets must refuse it).
    assert_eq!(
        replay_all(&mut sim, &|f| f.to_vec()),
        0,
        "replay from the same address"
    );
    // From another address.
    assert_eq!(
        replay_all(&mut sim, &|f| from_address(f, other_addr())),
        0,
        "from another"
    );
    let d = sim.server.stats().drops;
    assert!(d.syn_replay + d.syn_invalid >= 2, "{d:?}");
    // After a server restart (empty seen-sets): made before it started.
    sim.server = listener(sim.cfg(), ids.clone(), sim.now, 9);
    assert_eq!(replay_all(&mut sim, &|f| f.to_vec()), 0, "after a restart");
    assert!(sim.server.stats().drops.syn_stale >= 1);
    // A day later.
    sim.now += Duration::from_secs(86_400);
    sim.server = listener(sim.cfg(), ids, sim.now - Duration::from_secs(3600), 10);
    assert_eq!(replay_all(&mut sim, &|f| f.to_vec()), 0, "a day later");
    assert_eq!(replay_all(&mut sim, &|f| from_address(f, other_addr())), 0);
    assert_eq!(sim.server.connections().count(), 0);
}

#[test]
fn recorded_openings_replayed_later_get_nothing() {
    replays_get_nothing(false);
}

#[test]
fn recorded_openings_from_behind_nat_replayed_later_get_nothing() {
    replays_get_nothing(true);
}

#[test]
fn a_valid_packet_with_bytes_flipped_gets_no_answer() {
    let mut sim = Sim::new(clean_link(10, 4), "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    let id = sim.client.open_stream(b"x").expect("open");
    sim.client.stream_write(id, &[1; 3000]);
    sim.recorded = Some(Vec::new());
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    let data = sim
        .recorded
        .take()
        .unwrap()
        .into_iter()
        .find(|f| parse_frame(LinkType::Ethernet, f).is_ok_and(|p| p.payload.len() > 1000))
        .expect("a data frame");
    // Idle: nothing in flight, the session sends nothing by itself for a while.
    sim.run_for(Duration::from_secs(2), &mut cev, &mut sev);
    // Refused: failed authentication, or (a flipped counter) taken for a replay.
    let refused = |sim: &Sim| {
        let s = sim.server.connections().next().unwrap().1.stats();
        s.auth_failures + s.replays
    };
    let before = refused(&sim);
    for i in [0, 3, 4, 20, 500, 1000] {
        let bad = rewrite(&data, |_, p| p[i] ^= 0x40);
        assert_eq!(
            sim.inject(&bad),
            0,
            "answered a corrupted packet (byte {i})"
        );
    }
    assert_eq!(refused(&sim) - before, 6);
    // And a strange client's copy from elsewhere, unaltered: nothing either.
    assert_eq!(sim.inject(&from_address(&data, other_addr())), 0);
}

/// Runs a session, then cuts the server off so the client probes; returns the sim and one
/// recorded probe frame.
fn session_with_a_probe() -> (Sim, Vec<u8>) {
    let mut sim = Sim::new(clean_link(20, 5), "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_millis(500), &mut cev, &mut sev);
    sim.blackout_until = Some(sim.now + Duration::from_secs(3));
    let id = sim.client.open_stream(b"x").expect("open");
    sim.client.stream_write(id, b"hello");
    sim.recorded = Some(Vec::new());
    sim.run_for(Duration::from_secs(2), &mut cev, &mut sev);
    assert!(
        sim.client.stats().probes_out >= 1,
        "the client should have probed"
    );
    // A probe is short: the recorded frames' shortest payload of probe size.
    let frames = sim.recorded.take().unwrap();
    let probe = frames
        .into_iter()
        .rev()
        .find(|f| {
            let n = parse_frame(LinkType::Ethernet, f).unwrap().payload.len();
            (45..=120).contains(&n)
        })
        .expect("a probe frame");
    (sim, probe)
}

#[test]
fn a_copied_probe_gets_no_reset_anywhere() {
    let (mut sim, probe) = session_with_a_probe();
    sim.blackout_until = None;
    // The server still has the session: a live session's probe is never answered.
    let resets = sim.server.stats().resets_sent;
    sim.inject(&probe);
    // From another address (an on-path injector's own): binding fails, nothing comes back.
    assert_eq!(sim.inject(&from_address(&probe, other_addr())), 0);
    assert_eq!(sim.server.stats().resets_sent, resets);
    // After a restart, the probe made before it is stale.
    let ids: Arc<[ServerIdentity]> = vec![shared("k").server_identity()].into();
    sim.server = listener(sim.cfg(), ids, sim.now, 11);
    assert_eq!(sim.inject(&probe), 0, "a probe from before the restart");
    assert_eq!(sim.inject(&from_address(&probe, other_addr())), 0);
    assert_eq!(sim.server.stats().resets_sent, 0);
}

#[test]
fn forged_resets_and_rsts_do_not_end_a_session() {
    // alice and bob are clients of one server; bob knows the server's public key.
    let now = std::time::Instant::now();
    let server = StaticSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(1));
    let alice = StaticSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(2));
    let bob = StaticSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(3));
    let clients = [
        ("alice".to_string(), alice.public()),
        ("bob".into(), bob.public()),
    ];
    let (sid, _) = ServerIdentity::new(server.clone(), &clients);
    let alice_id = Arc::new(ClientIdentity::new(alice, server.public()).unwrap());
    let bob_id = ClientIdentity::new(bob, server.public()).unwrap();
    let mut sim = Sim::with(
        clean_link(20, 6),
        conn_cfg(now),
        alice_id.clone(),
        vec![sid].into(),
        now,
    );
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    // Make alice probe, and read her probes off the wire as an on-path attacker would.
    sim.blackout_until = Some(sim.now + Duration::from_secs(2));
    let id = sim.client.open_stream(b"x").expect("open");
    sim.client.stream_write(id, b"hi");
    sim.recorded = Some(Vec::new());
    sim.run_for(Duration::from_millis(1500), &mut cev, &mut sev);
    let probes: Vec<Vec<u8>> = sim.recorded.take().unwrap();
    let flow = rawtun::crypto::Binding::flow(client_addr(), server_addr());
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut forged = Vec::new();
    // bob answers each probe with a reset under his own key, and with alice's id.
    let (bob_server, _) = ServerIdentity::new(
        StaticSecret::generate(&mut rng),
        &[
            ("alice".to_string(), alice_id.public),
            ("bob".to_string(), bob_id.public),
        ],
    );
    for f in &probes {
        let p = parse_frame(LinkType::Ethernet, f).unwrap();
        let nonce: [u8; 12] = match p.payload.get(..12) {
            Some(n) => n.try_into().unwrap(),
            None => continue,
        };
        for client in [bob_id.public, alice_id.public] {
            let probe = rawtun::crypto::proof::Probe {
                client: rawtun::crypto::ClientId::of(&client),
                nonce,
                t_ms: T0,
            };
            let mut buf = [0u8; 120];
            if let Some(n) =
                rawtun::crypto::proof::write_reset(&bob_server, &flow, &probe, &mut rng, &mut buf)
            {
                forged.push(buf[..n].to_vec());
            }
        }
    }
    assert!(!forged.is_empty());
    sim.blackout_until = None;
    for payload in forged {
        let mut f = segment(
            server_addr(),
            client_addr(),
            TcpFlags::PSH_ACK,
            1,
            1,
            Some(1),
            &payload,
        );
        f[..6].copy_from_slice(&CLIENT_MAC);
        let p = parse_frame(LinkType::Ethernet, &f).unwrap();
        sim.client.handle_frame(&p, sim.now);
        let rst = segment(
            server_addr(),
            client_addr(),
            TcpFlags(0x14),
            1,
            1,
            None,
            &[],
        );
        sim.client
            .handle_frame(&parse_frame(LinkType::Ethernet, &rst).unwrap(), sim.now);
    }
    assert_eq!(
        sim.client.phase(),
        Phase::Established,
        "a forged reset ended the session"
    );
    // The stream still works end to end.
    sim.run_for(Duration::from_secs(2), &mut cev, &mut sev);
    assert!(sev.iter().any(
        |e| matches!(&e.event, ConnEvent::Stream(MuxEvent::Data { data, .. }) if data[..] == b"hi"[..])
    ));
    assert!(!cev.iter().any(|e| matches!(e, ConnEvent::SessionLost(_))));
}

#[test]
fn a_20s_blackout_on_a_500ms_path_is_survived_and_probes_get_no_reset() {
    let mut sim = Sim::new(clean_link(250, 7), "k", "k");
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_secs(2), &mut cev, &mut sev);
    let id = sim.client.open_stream(b"x").expect("open");
    sim.blackout_until = Some(sim.now + Duration::from_secs(20));
    sim.client.stream_write(id, &[9; 100_000]);
    sim.run_for(Duration::from_secs(30), &mut cev, &mut sev);
    assert!(
        !cev.iter().any(|e| matches!(e, ConnEvent::SessionLost(_))),
        "{cev:?}"
    );
    assert!(!sev
        .iter()
        .any(|e| matches!(e.event, ConnEvent::SessionLost(_))));
    let got: usize = sev
        .iter()
        .filter_map(|e| match &e.event {
            ConnEvent::Stream(MuxEvent::Data { data, .. }) => Some(data.len()),
            _ => None,
        })
        .sum();
    assert_eq!(
        got, 100_000,
        "the data sent into the blackout arrived after it"
    );
    let probes = sim.client.stats().probes_out;
    assert!(
        (5..=60).contains(&probes),
        "{probes} probes in a 20 s blackout"
    );
    assert_eq!(sim.server.stats().resets_sent, 0);
}

#[test]
fn a_removed_client_is_told_and_cut_off() {
    let now = std::time::Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let server = StaticSecret::generate(&mut rng);
    let alice = StaticSecret::generate(&mut rng);
    let carol = StaticSecret::generate(&mut rng);
    let list = |names: &[(&str, &StaticSecret)]| -> Arc<[ServerIdentity]> {
        let clients: Vec<(String, PublicKey)> = names
            .iter()
            .map(|(n, k)| (n.to_string(), k.public()))
            .collect();
        vec![ServerIdentity::new(server.clone(), &clients).0].into()
    };
    let alice_id = Arc::new(ClientIdentity::new(alice.clone(), server.public()).unwrap());
    let ids = list(&[("alice", &alice), ("carol", &carol)]);
    let mut sim = Sim::with(clean_link(20, 8), conn_cfg(now), alice_id.clone(), ids, now);
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    sim.run_for(Duration::from_millis(500), &mut cev, &mut sev);
    let (_, conn) = sim.server.connections().next().unwrap();
    assert_eq!(&*conn.client_info().unwrap().name, "alice");
    // SIGHUP with alice removed.
    let removed_at = sim.now;
    sim.server
        .set_identities(list(&[("carol", &carol)]), sim.now);
    cev.clear();
    sev.clear();
    sim.run_for(Duration::from_secs(1), &mut cev, &mut sev);
    assert!(
        cev.iter().any(|e| matches!(
            e,
            ConnEvent::SessionLost(CloseReason::PeerClosed(CloseNotice::Revoked))
        )),
        "alice was not told: {cev:?}"
    );
    assert!(sev.iter().any(|e| matches!(
        e.event,
        ConnEvent::SessionLost(CloseReason::Local(CloseNotice::Revoked))
    )));
    assert!(sim.now - removed_at < Duration::from_secs(5));
    // alice tries again: her SYN proves the server's key (SYN-ACK: every holder of the
    // server's public key can do that much), but her msg1 is refused without an answer.
    sim.client = rawtun::endpoint::Connection::client(
        sim.cfg(),
        alice_id,
        client_flow("198.18.0.1:40002".parse().unwrap()),
        seed(77),
        sim.now,
    )
    .unwrap();
    cev.clear();
    sim.run_for(Duration::from_secs(5), &mut cev, &mut sev);
    assert_ne!(sim.client.phase(), Phase::Established);
    // Refused before any DH work: her msg1's mac1 is keyed by her removed key.
    let d = sim.server.stats().drops;
    assert!(d.msg1_invalid >= 1 && d.handshake_failed == 0, "{d:?}");
}

/// Issue 9's rekey acceptance: rekeys every 300 packets through 5 % loss and reordering;
/// 50 MiB arrive byte-identical.
#[test]
fn rekeys_every_300_packets_through_loss_and_reordering() {
    let now = std::time::Instant::now();
    let mut cfg = conn_cfg(now);
    cfg.rekey_packets = 300;
    let ids: Arc<[ServerIdentity]> = vec![shared("k").server_identity()].into();
    let client = Arc::new(shared("k").client_identity());
    let model = LinkModel {
        loss: 0.05,
        reorder: 0.05,
        jitter: Duration::from_millis(5),
        ..clean_link(20, 13)
    };
    let mut sim = Sim::with(model, cfg, client, ids, now);
    sim.transfer(50 << 20);
    let updates = sim.client.stats().key_updates;
    assert!(
        updates > 100,
        "only {updates} key phases for 50 MiB at 300 packets each"
    );
    eprintln!("50 MiB through 5% loss and 5% reorder with {updates} key phases (both directions)");
}

/// Everything random is an input: the same seeds give the same packets on the wire.
#[test]
fn a_simulation_is_reproducible_from_its_seeds() {
    let run = || {
        let mut sim = Sim::new(
            LinkModel {
                loss: 0.02,
                ..clean_link(15, 21)
            },
            "k",
            "k",
        );
        sim.recorded = Some(Vec::new());
        let (mut cev, mut sev) = (Vec::new(), Vec::new());
        sim.establish(&mut cev, &mut sev);
        let id = sim.client.open_stream(b"r").unwrap();
        sim.client.stream_write(id, &[5; 200_000]);
        sim.run_for(Duration::from_secs(3), &mut cev, &mut sev);
        let mut h = DefaultHasher::new();
        sim.recorded.unwrap().hash(&mut h);
        (h.finish(), sim.server_frames)
    };
    assert_eq!(run(), run());
}

/// The first frame `conn` sends at `now`.
fn first_frame(conn: &mut rawtun::endpoint::Connection, now: std::time::Instant) -> Vec<u8> {
    let mut buf = vec![0u8; rawtun::endpoint::MAX_FRAME];
    let r = conn.poll_transmit(now, &mut buf).expect("a frame");
    buf[r].to_vec()
}

/// Everything the server has to send now.
fn server_output(server: &mut rawtun::endpoint::Listener, now: std::time::Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; rawtun::endpoint::MAX_FRAME];
    let mut out = Vec::new();
    while let Some(r) = server.poll_transmit(now, &mut buf) {
        out.push(buf[r].to_vec());
    }
    out
}

/// `rounds` exchanges between `client` and `server` (wired directly), `step` apart.
fn exchange(
    client: &mut rawtun::endpoint::Connection,
    server: &mut rawtun::endpoint::Listener,
    mut t: std::time::Instant,
    rounds: usize,
    step: Duration,
) {
    let mut buf = vec![0u8; rawtun::endpoint::MAX_FRAME];
    for _ in 0..rounds {
        while let Some(r) = client.poll_transmit(t, &mut buf) {
            let f = buf[r].to_vec();
            feed(server, &f, t);
        }
        for f in server_output(server, t) {
            client.handle_frame(&parse_frame(LinkType::Ethernet, &f).unwrap(), t);
        }
        t += step;
    }
}

fn feed(server: &mut rawtun::endpoint::Listener, frame: &[u8], now: std::time::Instant) {
    server.handle_frame(&parse_frame(LinkType::Ethernet, frame).unwrap(), now);
}

/// Review finding: a msg1 refused for the rate limit was not recorded, so its replay from
/// another address got the DH work and a msg2. Now it is recorded before the rate check,
/// and the client's retransmission is a fresh msg1 that gets in once the rate allows.
#[test]
fn a_msg1_refused_for_the_rate_is_still_refused_when_replayed() {
    let now = std::time::Instant::now();
    let mut cfg = conn_cfg(now);
    cfg.flow.handshake = false;
    cfg.bind_source = false;
    let ids: Arc<[ServerIdentity]> = vec![shared("k").server_identity()].into();
    let mut server = listener(cfg.clone(), ids, now, 7);
    let key = Arc::new(shared("k").client_identity());
    let nat: std::net::IpAddr = "198.18.9.9".parse().unwrap();
    let mut victim = None;
    for i in 0..301u16 {
        let a = SocketAddr::new(nat, 10_000 + i);
        let mut c = rawtun::endpoint::Connection::client(
            cfg.clone(),
            key.clone(),
            client_flow(a),
            seed(1000 + u64::from(i)),
            now,
        )
        .unwrap();
        let f = first_frame(&mut c, now);
        feed(&mut server, &f, now);
        if i == 300 {
            victim = Some((c, f, a));
        }
    }
    let (mut victim, msg1, victim_addr) = victim.unwrap();
    assert_eq!(
        server.stats().drops.handshake_rate,
        1,
        "the 301st is over the burst"
    );
    server_output(&mut server, now);
    // Replayed from the prober's own address: a replay, no flow, no answer.
    let at = now + Duration::from_millis(50);
    feed(&mut server, &from_address(&msg1, other_addr()), at);
    assert_eq!(server.stats().drops.msg1_replay, 1);
    assert!(server.connection_mut(&other_addr()).is_none());
    assert!(server_output(&mut server, at).is_empty());
    // The victim retransmits a fresh msg1 a second later and gets its session.
    let at = now + Duration::from_millis(1000);
    let f = first_frame(&mut victim, at);
    assert_ne!(f, msg1, "a retransmitted msg1 is fresh");
    feed(&mut server, &f, at);
    assert!(
        server.connection_mut(&victim_addr).is_some(),
        "the victim is in"
    );
}

/// Review finding: seen-set entries named the server key by its index, so a reload that
/// added a key in front reopened the replay window. They name it by its public key now.
#[test]
fn a_reload_that_reorders_keys_does_not_reopen_replays() {
    let now = std::time::Instant::now();
    let mut cfg = conn_cfg(now);
    cfg.bind_source = false;
    let ids: Arc<[ServerIdentity]> = vec![shared("k").server_identity()].into();
    let client = Arc::new(shared("k").client_identity());
    let mut sim = Sim::with(clean_link(10, 5), cfg, client, ids, now);
    sim.recorded = Some(Vec::new());
    let (mut cev, mut sev) = (Vec::new(), Vec::new());
    sim.establish(&mut cev, &mut sev);
    let rec = sim.recorded.take().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let alice = StaticSecret::generate(&mut rng).public();
    let (per_client, _) =
        ServerIdentity::new(StaticSecret::generate(&mut rng), &[("alice".into(), alice)]);
    sim.now += Duration::from_secs(10);
    sim.server.set_identities(
        vec![per_client, shared("k").server_identity()].into(),
        sim.now,
    );
    for f in &rec {
        assert_eq!(sim.inject(&from_address(f, other_addr())), 0);
    }
    assert!(sim.server.connection_mut(&other_addr()).is_none());
    assert!(sim.server.stats().drops.syn_replay >= 1);
}

/// Review finding: a removed client made the server do DH work, and valid SYNs (which any
/// holder of the server's public key can make) could fill the seen-set and lock everyone
/// out. A removed client's msg1 now fails before DH (its mac1 is keyed by its own key), and
/// a full SYN seen-set fails open.
#[test]
fn a_removed_client_costs_no_dh_and_cannot_lock_others_out() {
    let now = std::time::Instant::now();
    let cfg = conn_cfg(now);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let server_sk = StaticSecret::generate(&mut rng);
    let alice_sk = StaticSecret::generate(&mut rng);
    let bob_sk = StaticSecret::generate(&mut rng);
    let bob_only: Arc<[ServerIdentity]> =
        vec![ServerIdentity::new(server_sk.clone(), &[("bob".into(), bob_sk.public())]).0].into();
    let gate_cfg = rawtun::endpoint::GateConfig::default();
    let shared_gate = rawtun::endpoint::GateShared::new(&gate_cfg, T0, now);
    let mut server = rawtun::endpoint::Listener::new(
        cfg.clone(),
        bob_only.clone(),
        gate_cfg,
        shared_gate.clone(),
        server_addr(),
        SERVER_MAC,
        None,
        16,
        seed(7),
    );
    let alice = Arc::new(ClientIdentity::new(alice_sk, server_sk.public()).unwrap());
    let bob = Arc::new(ClientIdentity::new(bob_sk, server_sk.public()).unwrap());
    // alice (removed) runs a full opening against the server.
    let a_addr: SocketAddr = "198.18.0.50:40000".parse().unwrap();
    let mut a = rawtun::endpoint::Connection::client(
        cfg.clone(),
        alice.clone(),
        client_flow(a_addr),
        seed(1),
        now,
    )
    .unwrap();
    exchange(&mut a, &mut server, now, 30, Duration::from_millis(200));
    let d = server.stats().drops;
    assert_eq!(d.handshake_failed, 0, "DH work for a removed client: {d:?}");
    assert!(d.msg1_invalid >= 1, "{d:?}");
    assert_ne!(a.phase(), Phase::Established);
    // alice floods the SYN seen-set through another worker's gate...
    let mut gate = rawtun::endpoint::Gate::new(
        bob_only,
        gate_cfg,
        shared_gate,
        rand::rngs::StdRng::seed_from_u64(1),
    );
    let now_ms = T0 + 1;
    for i in 0..(1u32 << 18) + 16 {
        let src = SocketAddr::new(
            std::net::Ipv4Addr::new(198, 19, (i >> 15) as u8, 1).into(),
            1024 + (i & 0x7fff) as u16,
        );
        let p =
            rawtun::crypto::proof::syn_proof(&alice, &rawtun::crypto::Binding::source(src), now_ms);
        let f = segment(
            src,
            server_addr(),
            TcpFlags::SYN,
            p.isn,
            0,
            Some(p.tsval),
            &[],
        );
        gate.check_syn(&parse_frame(LinkType::Ethernet, &f).unwrap(), now, now_ms);
    }
    assert!(
        gate_drops_state_full(&gate) > 0,
        "the seen-set never filled"
    );
    // ...and bob, in good standing, still opens a session.
    let b_addr: SocketAddr = "198.18.0.60:40000".parse().unwrap();
    let mut b =
        rawtun::endpoint::Connection::client(cfg, bob, client_flow(b_addr), seed(3), now).unwrap();
    exchange(&mut b, &mut server, now, 10, Duration::from_millis(100));
    assert_eq!(b.phase(), Phase::Established, "bob was locked out");
}

fn gate_drops_state_full(gate: &rawtun::endpoint::Gate) -> u64 {
    gate.drops().state_full
}

/// A full flow table makes room for each new opening by dropping its oldest half-open flow,
/// opening after opening (found without scanning the table).
#[test]
fn a_full_table_drops_its_oldest_half_open_flow() {
    let now = std::time::Instant::now();
    let cfg = conn_cfg(now);
    let key = shared("k");
    let ids: Arc<[ServerIdentity]> = vec![key.server_identity()].into();
    // `listener` holds 16 flows.
    let mut server = listener(cfg.clone(), ids, now, 3);
    let identity = Arc::new(key.client_identity());
    let addr = |i: u16| SocketAddr::new([198, 18, 0, 1].into(), 41_000 + i);
    let mut t = now;
    let open = |server: &mut rawtun::endpoint::Listener, i: u16, t| {
        let mut c = rawtun::endpoint::Connection::client(
            cfg.clone(),
            identity.clone(),
            client_flow(addr(i)),
            seed(u64::from(i)),
            t,
        )
        .expect("client");
        let syn = first_frame(&mut c, t);
        server.handle_frame(&parse_frame(LinkType::Ethernet, &syn).unwrap(), t);
    };
    for i in 0..16 {
        open(&mut server, i, t);
        t += Duration::from_millis(10);
    }
    assert_eq!(server.connections().count(), 16);
    for i in 16..20 {
        open(&mut server, i, t);
        t += Duration::from_millis(10);
        assert_eq!(server.connections().count(), 16);
        assert!(server.connection(&addr(i)).is_some(), "opening {i} refused");
        assert!(
            server.connection(&addr(i - 16)).is_none(),
            "opening {i} did not replace the oldest half-open flow"
        );
    }
    assert_eq!(server.stats().flows_expired, 4);
    assert_eq!(server.stats().drops.table_full, 0);
}
