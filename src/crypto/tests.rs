use std::collections::HashSet;

use proptest::prelude::*;

use super::packet::reconstruct;
use super::*;

const ALL: [Cipher; 4] = [
    Cipher::Aes256Gcm,
    Cipher::Aes128Gcm,
    Cipher::ChaCha20Poly1305,
    Cipher::None,
];
const AEAD: [Cipher; 3] = [
    Cipher::Aes256Gcm,
    Cipher::Aes128Gcm,
    Cipher::ChaCha20Poly1305,
];

/// A fixed Unix time in ms for handshakes made in tests.
const T: u64 = 1_800_000_000_000;

fn rng(seed: u64) -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
}

/// Both sides' keys from a shared key of 32 `byte`s.
fn keys(byte: u8) -> (ServerIdentity, ClientIdentity) {
    let k = SharedKey::from_bytes([byte; 32]);
    (k.server_identity(), k.client_identity())
}

fn msg1(c: &ClientIdentity, cipher: Cipher, payload: &[u8], seed: u64) -> (Initiator, Vec<u8>) {
    let mut m1 = Vec::new();
    let init = Initiator::start(
        c,
        cipher,
        T,
        &Binding::NONE,
        payload,
        &mut rng(seed),
        &mut m1,
    )
    .expect("start");
    (init, m1)
}

fn accept(
    s: &ServerIdentity,
    cipher: Cipher,
    m1: &[u8],
    payload: &[u8],
) -> Result<(Accepted, Vec<u8>), HandshakeError> {
    let check =
        check_msg1(std::slice::from_ref(s), &[Binding::NONE], m1).ok_or(HandshakeError::Auth)?;
    let mut m2 = Vec::new();
    let a = respond(s, &check, cipher, m1, payload, &mut rng(99), &mut m2)?;
    Ok((a, m2))
}

/// Runs a full handshake; returns (client, server).
fn pair(cipher: Cipher) -> (SessionCrypto, SessionCrypto) {
    pair_seeded(cipher, 1)
}

/// [`pair`] with the client's ephemeral key from `seed`.
fn pair_seeded(cipher: Cipher, seed: u64) -> (SessionCrypto, SessionCrypto) {
    let (s, c) = keys(7);
    let (mut init, m1) = msg1(&c, cipher, b"hello", seed);
    let (a, m2) = accept(&s, cipher, &m1, b"world").expect("respond");
    let (client, p2) = init.finish(&m2).expect("finish");
    assert_eq!(a.payload, b"hello");
    assert_eq!(&*a.client.name, SHARED_CLIENT);
    assert_eq!(p2, b"world");
    (client, a.keys)
}

/// Seals `plain` into a fresh buffer with `start` bytes of headroom; returns the packet.
fn seal(sealer: &mut Sealer, start: usize, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0xAA; start + HEADER_LEN + plain.len() + sealer.overhead()];
    buf[start + HEADER_LEN..][..plain.len()].copy_from_slice(plain);
    let n = sealer.seal(&mut buf, start, plain.len()).expect("seal");
    assert_eq!(n, plain.len() + sealer.overhead());
    buf[start..start + n].to_vec()
}

#[test]
fn handshake_round_trip_each_cipher() {
    for cipher in ALL {
        let (mut client, mut server) = pair(cipher);
        assert_eq!(client.sealer.cipher(), cipher);
        assert_eq!(server.opener.cipher(), cipher);
        let mut p = seal(&mut client.sealer, 0, b"ping");
        assert_eq!(server.opener.open(&mut p).expect("open"), b"ping");
        let mut p = seal(&mut server.sealer, 3, b"pong!");
        assert_eq!(client.opener.open(&mut p).expect("open"), b"pong!");
        // Each direction has its own keys: a packet cannot be reflected back to its sender.
        let mut p = seal(&mut client.sealer, 0, b"reflect");
        if cipher != Cipher::None {
            assert_eq!(client.opener.open(&mut p), Err(OpenError::Auth));
        }
    }
}

#[test]
fn handshake_carries_empty_and_large_payloads() {
    let (s, c) = keys(1);
    let big = vec![0x5a; handshake::MAX_PAYLOAD];
    let (mut init, m1) = msg1(&c, Cipher::Aes256Gcm, &big, 2);
    let (a, m2) = accept(&s, Cipher::Aes256Gcm, &m1, &[]).expect("respond");
    assert_eq!(a.payload, big);
    let (_, p2) = init.finish(&m2).expect("finish");
    assert!(p2.is_empty());
    let too_big = vec![0; handshake::MAX_PAYLOAD + 1];
    let mut out = Vec::new();
    let err = Initiator::start(
        &c,
        Cipher::Aes256Gcm,
        T,
        &Binding::NONE,
        &too_big,
        &mut rng(1),
        &mut out,
    );
    assert_eq!(
        err.err(),
        Some(HandshakeError::PayloadTooLarge(handshake::MAX_PAYLOAD + 1))
    );
}

#[test]
fn handshake_sizes_vary_with_padding_and_follow_the_seed() {
    let (_, c) = keys(1);
    let mut sizes = HashSet::new();
    for seed in 0..40 {
        let (_, m1) = msg1(&c, Cipher::Aes256Gcm, b"x", seed);
        // e, encrypted s, payload (3 + t + "x" + pad + tag), masked id and t, mac1.
        let min = 32 + 48 + (3 + 8 + 1 + 16) + 16 + 16;
        assert!((min..=min + 255).contains(&m1.len()), "{}", m1.len());
        sizes.insert(m1.len());
        // Randomness is an input: the same seed makes the same message.
        assert_eq!(msg1(&c, Cipher::Aes256Gcm, b"x", seed).1, m1);
    }
    assert!(sizes.len() > 5, "msg1 sizes barely vary: {sizes:?}");
}

#[test]
fn msg1_check_reads_time_and_needs_the_key_and_binding() {
    let (s, c) = keys(1);
    let (other, _) = keys(2);
    let a: std::net::SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let b: std::net::SocketAddr = "198.18.0.9:40000".parse().unwrap();
    let mut m1 = Vec::new();
    Initiator::start(
        &c,
        Cipher::Aes256Gcm,
        T + 5,
        &Binding::source(a),
        b"",
        &mut rng(3),
        &mut m1,
    )
    .expect("start");
    let ids = [other.clone(), s.clone()];
    let check = check_msg1(&ids, &[Binding::source(a), Binding::NONE], &m1).expect("valid");
    assert_eq!((check.identity, check.binding, check.t_ms), (1, 0, T + 5));
    // Copied to another address, or checked against another server key: nothing.
    assert_eq!(
        check_msg1(&ids, &[Binding::source(b), Binding::NONE], &m1),
        None
    );
    assert_eq!(
        check_msg1(std::slice::from_ref(&other), &[Binding::source(a)], &m1),
        None
    );
}

#[test]
fn wrong_key_fails_before_any_dh_and_unknown_clients_after_it() {
    let (_, c) = keys(1);
    let (s2, _) = keys(2);
    let (_, m1) = msg1(&c, Cipher::Aes256Gcm, b"hi", 4);
    assert_eq!(
        check_msg1(std::slice::from_ref(&s2), &[Binding::NONE], &m1),
        None
    );
    // Per-client keys: the server knows alice only; mallory has the server's public key.
    let server = StaticSecret::generate(&mut rng(10));
    let alice = StaticSecret::generate(&mut rng(11));
    let mallory = StaticSecret::generate(&mut rng(12));
    let (sid, bad) = ServerIdentity::new(server.clone(), &[("alice".into(), alice.public())]);
    assert!(bad.is_empty());
    for (who, key, ok) in [("alice", &alice, true), ("mallory", &mallory, false)] {
        let c = ClientIdentity::new(key.clone(), server.public()).expect("client");
        let (mut init, m1) = msg1(&c, Cipher::Aes256Gcm, b"", 5);
        match accept(&sid, Cipher::Aes256Gcm, &m1, b"") {
            Ok((a, m2)) => {
                assert!(ok, "{who} accepted");
                assert_eq!(&*a.client.name, "alice");
                init.finish(&m2).expect("finish");
            }
            Err(e) => {
                assert!(!ok, "{who} refused: {e}");
                // Refused before any DH: mallory's msg1 names no configured client.
                let ids = std::slice::from_ref(&sid);
                assert_eq!(check_msg1(ids, &[Binding::NONE], &m1), None);
            }
        }
    }
}

#[test]
fn a_client_cannot_pose_as_the_server_to_another() {
    // bob holds a valid client key; he answers alice's msg1 as if he were the server.
    let server = StaticSecret::generate(&mut rng(20));
    let alice = ClientIdentity::new(StaticSecret::generate(&mut rng(21)), server.public()).unwrap();
    let bob_key = StaticSecret::generate(&mut rng(22));
    let (mut init, m1) = msg1(&alice, Cipher::Aes256Gcm, b"", 6);
    // Bob's best: a server identity built on his own key (he lacks the server's).
    let (fake, _) = ServerIdentity::new(bob_key.clone(), &[("alice".into(), alice.public)]);
    assert_eq!(
        check_msg1(std::slice::from_ref(&fake), &[Binding::NONE], &m1),
        None
    );
    let forced = Msg1Check {
        identity: 0,
        binding: 1,
        client: ClientId([0; 8]),
        t_ms: T,
    };
    let mut m2 = Vec::new();
    let r = respond(
        &fake,
        &forced,
        Cipher::Aes256Gcm,
        &m1,
        b"",
        &mut rng(7),
        &mut m2,
    );
    assert!(
        r.is_err(),
        "decrypting alice's msg1 needs the server's private key"
    );
    // Garbage or a replayed msg2 of another session fails, and alice's initiator survives.
    assert!(init.finish(&m2).is_err());
    assert!(init.finish(&[7u8; 80]).is_err());
}

#[test]
fn failed_msg2_leaves_the_initiator_usable() {
    let (s, c) = keys(3);
    let (mut init, m1) = msg1(&c, Cipher::Aes256Gcm, b"", 8);
    let (_, m2) = accept(&s, Cipher::Aes256Gcm, &m1, b"reply").expect("respond");
    for i in 0..m2.len() {
        let mut bad = m2.clone();
        bad[i] ^= 0x01;
        if i == 31 {
            continue; // the randomised top bit is flipped below
        }
        assert!(init.finish(&bad).is_err(), "msg2 byte {i}");
    }
    let mut top = m2.clone();
    top[31] ^= 0x80;
    assert_eq!(init.finish(&top).expect("top bit ignored").1, b"reply");
    assert!(init.finish(&m2).is_err(), "spent after success");
}

#[test]
fn cipher_mismatch_is_reported() {
    let (s, c) = keys(1);
    let (_, m1) = msg1(&c, Cipher::ChaCha20Poly1305, b"", 9);
    let err = accept(&s, Cipher::Aes256Gcm, &m1, b"").unwrap_err();
    assert_eq!(
        err,
        HandshakeError::CipherMismatch {
            ours: Cipher::Aes256Gcm,
            theirs: Cipher::ChaCha20Poly1305
        }
    );
    assert!(err.to_string().contains("chacha20-poly1305"));
}

#[test]
fn garbage_handshake_messages_fail_cleanly() {
    let (s, c) = keys(1);
    for len in 0..300 {
        let garbage: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(
            check_msg1(std::slice::from_ref(&s), &[Binding::NONE], &garbage),
            None
        );
        let check = Msg1Check {
            identity: 0,
            binding: 1,
            client: ClientId([0; 8]),
            t_ms: T,
        };
        let mut out = Vec::new();
        assert!(respond(
            &s,
            &check,
            Cipher::Aes256Gcm,
            &garbage,
            b"",
            &mut rng(1),
            &mut out
        )
        .is_err());
        assert!(out.is_empty(), "nothing to send back on failure");
        let (mut init, _) = msg1(&c, Cipher::Aes256Gcm, b"", 10);
        assert!(init.finish(&garbage).is_err(), "len {len}");
    }
}

#[test]
fn tampering_any_msg1_byte_fails_the_cheap_check() {
    let (s, c) = keys(3);
    let (_, m1) = msg1(&c, Cipher::Aes256Gcm, b"payload", 11);
    let ids = std::slice::from_ref(&s);
    assert!(check_msg1(ids, &[Binding::NONE], &m1).is_some());
    for i in 0..m1.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = m1.clone();
            bad[i] ^= flip;
            assert_eq!(check_msg1(ids, &[Binding::NONE], &bad), None, "byte {i}");
        }
    }
    assert_eq!(check_msg1(ids, &[Binding::NONE], &m1[..m1.len() - 1]), None);
    let mut longer = m1.clone();
    longer.push(0);
    assert_eq!(check_msg1(ids, &[Binding::NONE], &longer), None);
}

#[test]
fn a_recorded_msg1_cannot_be_refreshed() {
    // The outer id and time are readable with the open key (every client has it), but mac1
    // is keyed by the client's own key: another client cannot rewrite them at all. Even the
    // client itself (or the server) rewriting the outer time fails at the DH step, where the
    // inner time must match.
    let server = StaticSecret::generate(&mut rng(40));
    let alice = StaticSecret::generate(&mut rng(41));
    let bob = StaticSecret::generate(&mut rng(42));
    let list = [
        ("alice".into(), alice.public()),
        ("bob".into(), bob.public()),
    ];
    let (s, _) = ServerIdentity::new(server.clone(), &list);
    let c = ClientIdentity::new(alice, server.public()).unwrap();
    let b = ClientIdentity::new(bob, server.public()).unwrap();
    let (_, m1) = msg1(&c, Cipher::Aes256Gcm, b"", 12);
    let n = m1.len();
    let later = T + 86_400_000;
    let forge = |key: &ClientIdentity| {
        let mut forged = m1[..n - 32].to_vec();
        let m = key.open.compute(&[b"rawtun v2 msg1 mask", &forged[..32]]);
        let clear: Vec<u8> = c
            .client_id
            .0
            .iter()
            .chain(later.to_be_bytes().iter())
            .copied()
            .collect();
        forged.extend(clear.iter().zip(m).map(|(x, m)| x ^ m));
        let mac1 = key
            .reset
            .compute(&[b"rawtun v2 mac1", Binding::NONE.as_bytes(), &forged]);
        forged.extend_from_slice(&mac1);
        forged
    };
    let ids = std::slice::from_ref(&s);
    assert_eq!(
        check_msg1(ids, &[Binding::NONE], &forge(&b)),
        None,
        "bob's mac1 for alice"
    );
    let forged = forge(&c);
    let check = check_msg1(ids, &[Binding::NONE], &forged).expect("alice's own mac1");
    assert_eq!((check.t_ms, check.client), (later, c.client_id));
    let mut out = Vec::new();
    let r = respond(
        &s,
        &check,
        Cipher::Aes256Gcm,
        &forged,
        b"",
        &mut rng(1),
        &mut out,
    );
    assert_eq!(r.err(), Some(HandshakeError::Auth));
}

#[test]
fn ephemeral_key_top_bit_is_random_on_the_wire() {
    let (s, c) = keys(3);
    let mut seen = HashSet::new();
    for seed in 0..64 {
        let (mut init, m1) = msg1(&c, Cipher::Aes256Gcm, b"", seed);
        seen.insert(m1[31] & 0x80);
        let (_, m2) = accept(&s, Cipher::Aes256Gcm, &m1, b"").expect("respond");
        init.finish(&m2).expect("finish");
    }
    assert_eq!(seen.len(), 2);
}

#[test]
fn tampering_any_data_byte_fails() {
    for cipher in AEAD {
        let (mut client, mut server) = pair(cipher);
        let packet = seal(&mut client.sealer, 0, b"some data to protect");
        for i in 0..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x01;
            assert!(server.opener.open(&mut bad).is_err(), "{cipher} byte {i}");
        }
        let mut truncated = packet[..packet.len() - 1].to_vec();
        assert!(server.opener.open(&mut truncated).is_err());
        // Failures left the window untouched: the genuine packet still opens.
        let mut good = packet.clone();
        assert_eq!(
            server.opener.open(&mut good).expect("open"),
            b"some data to protect"
        );
        let stats = server.opener.stats();
        assert_eq!(stats.opened, 1);
        assert!(stats.auth_failures >= packet.len() as u64 - 1, "{stats:?}");
    }
}

#[test]
fn seal_open_round_trip_many_sizes() {
    for cipher in ALL {
        let (mut client, mut server) = pair(cipher);
        for len in (1..=64).chain([100, 255, 256, 1000, 1350, 1500, 9000]) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let start = len % 17;
            let mut p = seal(&mut client.sealer, start, &plain);
            assert_eq!(p.len(), len + HEADER_LEN + cipher.tag_len());
            if cipher != Cipher::None && len >= 8 {
                assert_ne!(
                    &p[HEADER_LEN..][..8],
                    &plain[..8],
                    "{cipher} did not encrypt"
                );
            }
            assert_eq!(server.opener.open(&mut p).expect("open"), &plain[..]);
        }
    }
}

#[test]
fn seal_checks_its_arguments() {
    let (mut client, _) = pair(Cipher::Aes256Gcm);
    let mut buf = [0u8; 64];
    assert_eq!(client.sealer.seal(&mut buf, 0, 0), Err(SealError::Empty));
    assert_eq!(
        client.sealer.seal(&mut buf, 10, 40),
        Err(SealError::BufferTooSmall { need: 70, have: 64 })
    );
    assert!(client.sealer.seal(&mut buf, usize::MAX, 1).is_err());
    assert_eq!(
        client.sealer.sealed(),
        0,
        "failed seals do not use a counter"
    );
    assert_eq!(client.sealer.seal(&mut buf, 4, 40), Ok(60));
    assert_eq!(client.sealer.sealed(), 1);
}

#[test]
fn sealer_stops_at_counter_limit() {
    let (mut client, _) = pair(Cipher::ChaCha20Poly1305);
    let mut buf = [0u8; 32];
    client.set_phase_len(u64::MAX);
    client.sealer.set_next_counter(MAX_PACKETS - 1);
    assert!(client.sealer.seal(&mut buf, 0, 4).is_ok());
    assert_eq!(
        client.sealer.seal(&mut buf, 0, 4),
        Err(SealError::Exhausted)
    );
}

#[test]
fn reconstruct_follows_rfc9000_a3() {
    assert_eq!(reconstruct(None, 0), 0);
    assert_eq!(reconstruct(None, 5), 5);
    assert_eq!(reconstruct(Some(0xffff_ffff), 0), 1 << 32);
    assert_eq!(
        reconstruct(Some((1 << 32) + 5), 0xffff_fff0),
        (1 << 32) - 16
    );
    assert_eq!(reconstruct(Some((3 << 32) + 7), 9), (3 << 32) + 9);
    assert_eq!(reconstruct(Some(0x1_a82f_30ea), 0xa82f_9b32), 0x1_a82f_9b32);
    // Values far below the expected one wrap forward, far above wrap back.
    assert_eq!(
        reconstruct(Some((5 << 32) + 0xf000_0000), 0x10),
        (6 << 32) + 0x10
    );
    assert_eq!(
        reconstruct(Some((5 << 32) + 0x10), 0xf000_0000),
        (4 << 32) + 0xf000_0000
    );
}

#[test]
fn counters_survive_the_32_bit_wrap() {
    for cipher in ALL {
        let (mut client, mut server) = pair(cipher);
        // One key phase throughout (phases are tested on their own below).
        client.set_phase_len(u64::MAX);
        server.set_phase_len(u64::MAX);
        let base = (1u64 << 32) - 100;
        client.sealer.set_next_counter(base);
        server.opener.set_highest_counter(base - 1);
        let packets: Vec<Vec<u8>> = (0..200u32)
            .map(|i| seal(&mut client.sealer, 0, &i.to_le_bytes()))
            .collect();
        // Open out of order across the boundary: odd ones first, then even ones.
        for i in (1..200).step_by(2).chain((0..200).step_by(2)) {
            let mut p = packets[i].clone();
            let plain = server.opener.open(&mut p).expect("open across wrap");
            assert_eq!(plain, (i as u32).to_le_bytes());
        }
        // Far beyond 2^32 too.
        client.sealer.set_next_counter((7 << 32) + 3);
        server.opener.set_highest_counter((7 << 32) - 2);
        let mut p = seal(&mut client.sealer, 0, b"far");
        assert_eq!(server.opener.open(&mut p).expect("open far"), b"far");
    }
}

#[test]
fn replays_rejected_and_reordering_accepted_once() {
    for cipher in ALL {
        let (mut client, mut server) = pair(cipher);
        let packets: Vec<Vec<u8>> = (0..10u8)
            .map(|i| seal(&mut client.sealer, 0, &[i]))
            .collect();
        for i in [3, 1, 2, 0, 9, 4, 8, 5, 7, 6] {
            let mut p = packets[i].clone();
            assert_eq!(server.opener.open(&mut p).expect("first"), [i as u8]);
            let mut again = packets[i].clone();
            assert_eq!(
                server.opener.open(&mut again),
                Err(OpenError::Replay),
                "{cipher} {i}"
            );
        }
        let stats = server.opener.stats();
        assert_eq!(
            (stats.opened, stats.replays, stats.auth_failures),
            (10, 10, 0)
        );
    }
}

#[test]
fn packets_older_than_window_rejected() {
    let (mut client, mut server) = pair(Cipher::Aes128Gcm);
    let old = seal(&mut client.sealer, 0, b"old");
    let edge = seal(&mut client.sealer, 0, b"edge");
    for _ in 2..REPLAY_WINDOW {
        seal(&mut client.sealer, 0, b"x");
    }
    // Counter REPLAY_WINDOW: `old` (0) is exactly a window behind, `edge` (1) just inside.
    let mut newest = seal(&mut client.sealer, 0, b"new");
    server.opener.open(&mut newest).expect("newest");
    let mut p = old.clone();
    assert_eq!(server.opener.open(&mut p), Err(OpenError::Replay));
    let mut p = edge.clone();
    assert_eq!(server.opener.open(&mut p).expect("edge of window"), b"edge");
}

#[test]
fn counter_is_hidden_on_the_wire() {
    for cipher in AEAD {
        let (mut client, _) = pair(cipher);
        let headers: Vec<u32> = (0..200)
            .map(|_| {
                let p = seal(&mut client.sealer, 0, b"same plaintext every time");
                u32::from_be_bytes([p[0], p[1], p[2], p[3]])
            })
            .collect();
        let clear = headers
            .iter()
            .enumerate()
            .filter(|(i, h)| **h == *i as u32)
            .count();
        let sequential = headers
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(
            clear < 3 && sequential < 3,
            "{cipher}: {clear} clear, {sequential} sequential"
        );
    }
    // `none` leaves the counter readable by design.
    let (mut client, _) = pair(Cipher::None);
    seal(&mut client.sealer, 0, b"a");
    assert_eq!(seal(&mut client.sealer, 0, b"b"), [0, 0, 0, 1, b'b']);
}

#[test]
fn sessions_with_the_same_keys_get_different_traffic_keys() {
    for cipher in AEAD {
        let (mut a, _) = pair_seeded(cipher, 1);
        let (mut b, _) = pair_seeded(cipher, 2);
        let pa = seal(&mut a.sealer, 0, &[0u8; 32]);
        let pb = seal(&mut b.sealer, 0, &[0u8; 32]);
        assert_ne!(pa[HEADER_LEN..], pb[HEADER_LEN..]);
        // And one session cannot open the other's packets.
        let (_, mut other_server) = pair_seeded(cipher, 3);
        let mut p = pa.clone();
        assert_eq!(other_server.opener.open(&mut p), Err(OpenError::Auth));
    }
}

#[test]
fn none_cipher_is_clear_but_replay_checked() {
    let (mut client, mut server) = pair(Cipher::None);
    assert_eq!(client.sealer.overhead(), HEADER_LEN);
    let p = seal(&mut client.sealer, 2, b"clear");
    assert_eq!(p, [0, 0, 0, 0, b'c', b'l', b'e', b'a', b'r']);
    let mut q = p.clone();
    assert_eq!(server.opener.open(&mut q).expect("open"), b"clear");
    let mut q = p.clone();
    assert_eq!(server.opener.open(&mut q), Err(OpenError::Replay));
    let mut short = [0u8; 4];
    assert_eq!(server.opener.open(&mut short), Err(OpenError::Short));
}

#[test]
fn shared_key_from_hex_and_password() {
    let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let expected: [u8; 32] = hex::decode(hex_key).expect("hex").try_into().expect("32");
    let a: std::net::SocketAddr = "198.18.0.2:9999".parse().unwrap();
    let b: std::net::SocketAddr = "198.18.0.3:9999".parse().unwrap();
    assert_eq!(
        SharedKey::from_key(hex_key, a),
        Ok(SharedKey::from_bytes(expected))
    );
    assert_eq!(
        SharedKey::from_key(&hex_key.to_uppercase(), b),
        Ok(SharedKey::from_bytes(expected)),
        "a hex key does not depend on the address"
    );
    assert!(!is_password(hex_key));
    // 63 hex digits, or 64 characters that are not all hex, are passwords.
    assert!(is_password(&hex_key[..63]));
    let p63 = SharedKey::from_key(&hex_key[..63], a).expect("password");
    let not_hex = SharedKey::from_key(&format!("{}g", &hex_key[..63]), a).expect("password");
    assert_ne!(p63, not_hex);
    assert_ne!(not_hex, SharedKey::from_bytes(expected));
    let pw = SharedKey::from_key("correct horse battery staple", a).expect("password");
    assert_eq!(
        pw,
        SharedKey::from_key("correct horse battery staple", a).unwrap()
    );
    assert_ne!(
        pw,
        SharedKey::from_key("correct horse battery stapl", a).unwrap()
    );
    // Salted per server: a guess tested against one server says nothing about another.
    assert_ne!(
        pw,
        SharedKey::from_key("correct horse battery staple", b).unwrap()
    );
    assert_eq!(SharedKey::from_key("", a), Err(KeyError::Empty));
    let shown = format!("{pw:?} {:?}", SharedKey::from_bytes(expected));
    assert!(
        !shown.contains("0011") && !shown.contains("aabb"),
        "{shown}"
    );
}

#[test]
fn static_keys_parse_and_never_show() {
    let k = StaticSecret::generate(&mut rng(1));
    let hex = k.to_hex();
    assert_eq!(StaticSecret::from_hex(&hex), Ok(k.clone()));
    assert_eq!(PublicKey::from_hex(&k.public().to_hex()), Ok(k.public()));
    assert_eq!(StaticSecret::from_hex("zz"), Err(KeyError::NotHex));
    assert_eq!(StaticSecret::from_hex(""), Err(KeyError::Empty));
    assert_eq!(PublicKey::from_hex(&"00".repeat(32)), Err(KeyError::Weak));
    assert!(!format!("{k:?}").contains(&hex[..8]));
    // Low-order client keys are refused by name.
    let (sid, bad) = ServerIdentity::new(k, &[("zero".into(), PublicKey([0; 32]))]);
    assert_eq!(bad, ["zero"]);
    assert_eq!(sid.clients().count(), 0);
}

#[test]
fn generated_secrets_are_hex_keys() {
    let a = generate_secret();
    let b = generate_secret();
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    let bytes: [u8; 32] = hex::decode(&a).expect("hex").try_into().expect("32");
    let any = "0.0.0.0:0".parse().unwrap();
    assert_eq!(
        SharedKey::from_key(&a, any),
        Ok(SharedKey::from_bytes(bytes))
    );
}

#[test]
fn key_phases_rotate_with_the_counter_and_lose_nothing_at_the_switch() {
    for cipher in AEAD {
        let (mut client, mut server) = pair(cipher);
        client.set_phase_len(100);
        server.set_phase_len(100);
        let packets: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| seal(&mut client.sealer, 0, &i.to_le_bytes()))
            .collect();
        assert_eq!(client.sealer.phase(), 9);
        // Deliver in blocks of 30, each block reversed: every switch sees packets of the
        // next phase before the last ones of the previous.
        let mut order: Vec<usize> = Vec::new();
        for block in (0..1000).collect::<Vec<_>>().chunks(30) {
            order.extend(block.iter().rev());
        }
        for i in order {
            let mut p = packets[i].clone();
            let plain = server
                .opener
                .open(&mut p)
                .unwrap_or_else(|e| panic!("{cipher} {i}: {e}"));
            assert_eq!(plain, (i as u32).to_le_bytes());
        }
        assert_eq!(server.opener.phase(), 9);
        assert_eq!(server.opener.stats().opened, 1000);
        // Same plaintext, counters a phase apart: different keys, different ciphertext.
        let mut a = seal(&mut client.sealer, 0, &[0; 16]);
        client.sealer.set_next_counter(client.sealer.sealed() + 99);
        let mut b = seal(&mut client.sealer, 0, &[0; 16]);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert!(server.opener.open(&mut a).is_ok());
        assert!(server.opener.open(&mut b).is_ok());
    }
}

#[test]
fn a_forged_packet_cannot_advance_the_key_schedule() {
    let (mut client, mut server) = pair(Cipher::Aes256Gcm);
    client.set_phase_len(10);
    server.set_phase_len(10);
    let mut first = seal(&mut client.sealer, 0, b"a");
    server.opener.open(&mut first).expect("phase 0");
    // A forged packet claiming phase 3 (counter 35): derived on trial, then thrown away.
    let mut forged = seal(&mut client.sealer, 0, b"b");
    forged[HEADER_LEN] ^= 1;
    assert_eq!(server.opener.open(&mut forged), Err(OpenError::Auth));
    assert_eq!(server.opener.phase(), 0);
    // Too far ahead is refused without trying.
    client.sealer.set_next_counter(1000);
    let mut far = seal(&mut client.sealer, 0, b"far");
    assert_eq!(server.opener.open(&mut far), Err(OpenError::Auth));
}

#[test]
fn cipher_names() {
    for (name, cipher) in [
        ("aes", Cipher::Aes256Gcm),
        ("aes-256-gcm", Cipher::Aes256Gcm),
        ("AES-128-GCM", Cipher::Aes128Gcm),
        ("chacha20", Cipher::ChaCha20Poly1305),
        ("chacha20-poly1305", Cipher::ChaCha20Poly1305),
        ("none", Cipher::None),
    ] {
        assert_eq!(Cipher::from_block_name(name), Ok(cipher), "{name}");
        assert_eq!(Cipher::from_block_name(cipher.name()), Ok(cipher));
    }
    assert_eq!(Cipher::default(), Cipher::Aes256Gcm);
    assert_eq!(Cipher::None.tag_len(), 0);
    assert_eq!(Cipher::Aes128Gcm.tag_len(), 16);
    for legacy in [
        "salsa20", "blowfish", "twofish", "cast5", "3des", "tea", "xtea", "xor", "sm4", "aes-128",
        "aes-192", "null", "Salsa20",
    ] {
        let err = Cipher::from_block_name(legacy).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CipherError::Unauthenticated(_)), "{legacy}");
        assert!(msg.contains("unauthenticated"), "{msg}");
        assert!(
            msg.contains("`aes` (AES-256-GCM)") && msg.contains("chacha20-poly1305"),
            "{msg}"
        );
    }
    assert_eq!(
        Cipher::from_block_name("salsa20").unwrap_err().to_string(),
        "block cipher `salsa20` is unauthenticated and not supported; use `aes` (AES-256-GCM) \
         or `chacha20-poly1305`"
    );
    let err = Cipher::from_block_name("rot13").unwrap_err();
    assert!(matches!(err, CipherError::Unknown(_)));
    assert!(err.to_string().contains("chacha20-poly1305"));
}

/// Model of the replay window: a set of seen counters and the window rule.
fn model_accepts(seen: &HashSet<u64>, top: Option<u64>, n: u64) -> bool {
    !seen.contains(&n) && top.is_none_or(|t| n > t || t - n < REPLAY_WINDOW)
}

proptest! {
    #[test]
    fn replay_window_matches_model(
        start in 0u64..(1 << 62),
        steps in prop::collection::vec((0u64..3, 0u64..6000), 1..400),
    ) {
        let mut window = ReplayWindow::new();
        let mut seen = HashSet::new();
        let mut top: Option<u64> = None;
        let mut cursor = start;
        for (kind, delta) in steps {
            // Mostly forward jumps, some backward probes, some repeats.
            let n = match kind {
                0 => cursor.saturating_add(delta / 8),
                1 => cursor.saturating_sub(delta),
                _ => cursor.saturating_add(delta),
            };
            let expected = model_accepts(&seen, top, n);
            prop_assert_eq!(window.check(n), expected, "check {}", n);
            prop_assert_eq!(window.update(n), expected, "update {}", n);
            prop_assert!(!window.update(n), "second update of {} accepted", n);
            if expected {
                seen.insert(n);
                top = Some(top.map_or(n, |t| t.max(n)));
            }
            prop_assert_eq!(window.top(), top);
            cursor = n;
        }
    }

    #[test]
    fn open_never_panics_on_garbage(
        cipher_index in 0usize..4,
        bytes in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let (_, mut server) = pair(ALL[cipher_index]);
        let mut packet = bytes.clone();
        let result = server.opener.open(&mut packet);
        if ALL[cipher_index] != Cipher::None {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn open_never_panics_on_truncated_or_mutated_packets(
        cipher_index in 0usize..4,
        len in 1usize..200,
        flip in any::<(usize, u8)>(),
    ) {
        let cipher = ALL[cipher_index];
        let (mut client, mut server) = pair(cipher);
        let packet = seal(&mut client.sealer, 0, &vec![0x42; len]);
        for cut in 0..packet.len() {
            let mut p = packet[..cut].to_vec();
            let result = server.opener.open(&mut p);
            if cipher != Cipher::None {
                prop_assert!(result.is_err(), "truncated to {} opened", cut);
            }
        }
        let mut p = packet.clone();
        let (at, mask) = (flip.0 % p.len(), flip.1 | 1);
        p[at] ^= mask;
        let result = server.opener.open(&mut p).map(<[u8]>::to_vec);
        if cipher != Cipher::None {
            prop_assert!(result.is_err());
        }
        if cipher != Cipher::None {
            let mut p = packet.clone();
            let plain = server.opener.open(&mut p).expect("genuine packet");
            prop_assert_eq!(plain, &vec![0x42; len][..]);
        }
    }

    #[test]
    fn handshake_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (s, c) = keys(9);
        prop_assert!(check_msg1(std::slice::from_ref(&s), &[Binding::NONE], &bytes).is_none());
        let check = Msg1Check { identity: 0, binding: 1, client: ClientId([0; 8]), t_ms: T };
        let mut out = Vec::new();
        prop_assert!(respond(&s, &check, Cipher::Aes256Gcm, &bytes, b"", &mut rng(1), &mut out).is_err());
        prop_assert!(out.is_empty());
        let (mut init, _) = msg1(&c, Cipher::Aes256Gcm, b"", 1);
        prop_assert!(init.finish(&bytes).is_err());
    }
}
