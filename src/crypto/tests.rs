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

fn psk(byte: u8) -> Psk {
    Psk::from_bytes([byte; 32])
}

/// Runs a full handshake; returns (client, server).
fn pair(cipher: Cipher) -> (SessionCrypto, SessionCrypto) {
    let key = psk(7);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let init = Initiator::start(&key, cipher, b"hello", &mut m1).expect("start");
    let (server, p1) = respond(&key, cipher, &m1, b"world", &mut m2).expect("respond");
    let (client, p2) = init.finish(&m2).expect("finish");
    assert_eq!(p1, b"hello");
    assert_eq!(p2, b"world");
    (client, server)
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
    let key = psk(1);
    let big = vec![0x5a; handshake::MAX_PAYLOAD];
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let init = Initiator::start(&key, Cipher::Aes256Gcm, &big, &mut m1).expect("start");
    let (_, p1) = respond(&key, Cipher::Aes256Gcm, &m1, &[], &mut m2).expect("respond");
    assert_eq!(p1, big);
    let (_, p2) = init.finish(&m2).expect("finish");
    assert!(p2.is_empty());
    let too_big = vec![0; handshake::MAX_PAYLOAD + 1];
    assert_eq!(
        Initiator::start(&key, Cipher::Aes256Gcm, &too_big, &mut m1).err(),
        Some(HandshakeError::PayloadTooLarge(handshake::MAX_PAYLOAD + 1))
    );
}

#[test]
fn handshake_sizes_vary_with_padding() {
    let mut sizes = HashSet::new();
    for _ in 0..40 {
        let mut m1 = Vec::new();
        Initiator::start(&psk(1), Cipher::Aes256Gcm, b"x", &mut m1).expect("start");
        assert!((32 + 2 + 1 + 16..=32 + 2 + 1 + 63 + 16).contains(&m1.len()));
        sizes.insert(m1.len());
    }
    assert!(sizes.len() > 5, "msg1 sizes barely vary: {sizes:?}");
}

#[test]
fn wrong_key_fails_at_respond() {
    let mut m1 = Vec::new();
    let mut m2 = vec![1, 2, 3];
    Initiator::start(&psk(1), Cipher::Aes256Gcm, b"hi", &mut m1).expect("start");
    let err = respond(&psk(2), Cipher::Aes256Gcm, &m1, b"", &mut m2).unwrap_err();
    assert_eq!(err, HandshakeError::Auth);
    assert!(m2.is_empty(), "nothing to send back on failure");
    // The `none` cipher still authenticates the handshake.
    Initiator::start(&psk(1), Cipher::None, b"hi", &mut m1).expect("start");
    let err = respond(&psk(2), Cipher::None, &m1, b"", &mut m2).unwrap_err();
    assert_eq!(err, HandshakeError::Auth);
}

#[test]
fn cipher_mismatch_is_reported() {
    let mut m1 = Vec::new();
    let mut m2 = Vec::new();
    Initiator::start(&psk(1), Cipher::ChaCha20Poly1305, b"", &mut m1).expect("start");
    let err = respond(&psk(1), Cipher::Aes256Gcm, &m1, b"", &mut m2).unwrap_err();
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
    for len in 0..200 {
        let garbage: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let mut out = Vec::new();
        let err = respond(&psk(1), Cipher::Aes256Gcm, &garbage, b"", &mut out).unwrap_err();
        let expected = if len < 48 {
            HandshakeError::Malformed
        } else {
            HandshakeError::Auth
        };
        assert_eq!(err, expected, "len {len}");
        let mut m1 = Vec::new();
        let init = Initiator::start(&psk(1), Cipher::Aes256Gcm, b"", &mut m1).expect("start");
        assert_eq!(init.finish(&garbage).unwrap_err(), expected, "len {len}");
    }
}

#[test]
fn tampering_any_handshake_byte_fails() {
    let key = psk(3);
    let mut m1 = Vec::new();
    let mut m2 = Vec::new();
    Initiator::start(&key, Cipher::Aes256Gcm, b"payload", &mut m1).expect("start");
    for i in 0..m1.len() {
        for flip in [0x01u8, 0x80] {
            if i == 31 && flip == 0x80 {
                continue; // the randomised top bit of the X25519 key, tested below
            }
            let mut bad = m1.clone();
            bad[i] ^= flip;
            assert!(
                respond(&key, Cipher::Aes256Gcm, &bad, b"", &mut m2).is_err(),
                "byte {i}"
            );
        }
    }
    // Truncation and extension also fail.
    assert!(respond(&key, Cipher::Aes256Gcm, &m1[..m1.len() - 1], b"", &mut m2).is_err());
    let mut longer = m1.clone();
    longer.push(0);
    assert!(respond(&key, Cipher::Aes256Gcm, &longer, b"", &mut m2).is_err());

    // msg2: a fresh initiator per attempt, since finish() consumes it.
    let mut len2 = 0;
    for i in 0.. {
        let init = Initiator::start(&key, Cipher::Aes256Gcm, b"", &mut m1).expect("start");
        respond(&key, Cipher::Aes256Gcm, &m1, b"reply", &mut m2).expect("respond");
        len2 = m2.len();
        if i >= len2 {
            break;
        }
        m2[i] ^= 0x01;
        assert!(init.finish(&m2).is_err(), "msg2 byte {i}");
    }
    assert!(len2 >= 48);
}

#[test]
fn ephemeral_key_top_bit_is_random_on_the_wire_and_ignored() {
    let key = psk(3);
    let mut seen = HashSet::new();
    for _ in 0..64 {
        let mut m1 = Vec::new();
        let mut m2 = Vec::new();
        let init = Initiator::start(&key, Cipher::Aes256Gcm, b"", &mut m1).expect("start");
        seen.insert(m1[31] & 0x80);
        m1[31] ^= 0x80;
        respond(&key, Cipher::Aes256Gcm, &m1, b"", &mut m2).expect("top bit is not authenticated");
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
fn sessions_with_same_psk_get_different_keys() {
    for cipher in AEAD {
        let (mut a, _) = pair(cipher);
        let (mut b, _) = pair(cipher);
        let pa = seal(&mut a.sealer, 0, &[0u8; 32]);
        let pb = seal(&mut b.sealer, 0, &[0u8; 32]);
        assert_ne!(pa[HEADER_LEN..], pb[HEADER_LEN..]);
        // And one session cannot open the other's packets.
        let (_, mut other_server) = pair(cipher);
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
fn psk_from_hex_and_password() {
    let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let expected: [u8; 32] = hex::decode(hex_key).expect("hex").try_into().expect("32");
    assert_eq!(Psk::from_key(hex_key), Ok(Psk::from_bytes(expected)));
    assert_eq!(
        Psk::from_key(&hex_key.to_uppercase()),
        Ok(Psk::from_bytes(expected))
    );
    // 63 hex digits, or 64 characters that are not all hex, are passwords.
    let p63 = Psk::from_key(&hex_key[..63]).expect("password");
    let not_hex = Psk::from_key(&format!("{}g", &hex_key[..63])).expect("password");
    assert_ne!(p63, not_hex);
    assert_ne!(not_hex, Psk::from_bytes(expected));
    let pw = Psk::from_key("correct horse battery staple").expect("password");
    assert_eq!(
        pw,
        Psk::from_key("correct horse battery staple").expect("password")
    );
    assert_ne!(
        pw,
        Psk::from_key("correct horse battery stapl").expect("password")
    );
    assert_eq!(Psk::from_key(""), Err(KeyError::Empty));
    let shown = format!("{pw:?} {:?}", Psk::from_bytes(expected));
    assert!(
        !shown.contains("0011") && !shown.contains("aabb"),
        "{shown}"
    );
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
    assert_eq!(Psk::from_key(&a), Ok(Psk::from_bytes(bytes)));
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
    fn respond_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        prop_assert!(respond(&psk(9), Cipher::Aes256Gcm, &bytes, b"", &mut out).is_err());
        prop_assert!(out.is_empty());
    }
}
