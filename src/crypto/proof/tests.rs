use std::collections::HashSet;
use std::net::SocketAddr;

use rand::SeedableRng;

use super::*;
use crate::crypto::{ClientIdentity, PublicKey, ServerIdentity, StaticSecret};

const T: u64 = 1_800_000_000_000;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A server with clients alice and bob; returns (server, alice, bob).
fn setup() -> (ServerIdentity, ClientIdentity, ClientIdentity) {
    let server = StaticSecret::generate(&mut rng(1));
    let alice = StaticSecret::generate(&mut rng(2));
    let bob = StaticSecret::generate(&mut rng(3));
    let clients: Vec<(String, PublicKey)> = vec![
        ("alice".into(), alice.public()),
        ("bob".into(), bob.public()),
    ];
    let (s, _) = ServerIdentity::new(server.clone(), &clients);
    let a = ClientIdentity::new(alice, server.public()).unwrap();
    let b = ClientIdentity::new(bob, server.public()).unwrap();
    (s, a, b)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn syn_proof_carries_time_and_needs_key_and_binding() {
    let (s, a, _) = setup();
    let here = Binding::source(addr("198.18.0.1:40000"));
    let there = Binding::source(addr("198.18.0.5:40000"));
    let p = syn_proof(&a, &here, T);
    let t = syn_time(&s, &here, p.isn, p.tsval, T + 3000);
    assert_eq!(t, T);
    assert!(check_syn(&s, &here, p.isn, t));
    assert!(!check_syn(&s, &here, p.isn ^ 1, t));
    assert!(!check_syn(&s, &here, p.isn, t + 1));
    // The same SYN from another address, or for another server key, does not verify.
    let t2 = syn_time(&s, &there, p.isn, p.tsval, T);
    assert!(!check_syn(&s, &there, p.isn, t2));
    let (other, _) = ServerIdentity::new(StaticSecret::generate(&mut rng(9)), &[]);
    let t3 = syn_time(&other, &here, p.isn, p.tsval, T);
    assert!(!check_syn(&other, &here, p.isn, t3));
    // Every SYN has its own TSval offset: the offset (TSval minus the time) differs between
    // connections, also between clients behind NAT (empty binding) a second apart, so the
    // SYNs of one server's clients cannot be tied together by it.
    let mut offsets = HashSet::new();
    for (i, b) in [here, Binding::NONE, Binding::NONE, there]
        .iter()
        .enumerate()
    {
        let t = T + 1000 * i as u64;
        offsets.insert(syn_proof(&a, b, t).tsval.wrapping_sub(t as u32));
    }
    assert_eq!(offsets.len(), 4, "shared TSval offsets");
}

#[test]
fn probes_verify_for_their_client_and_flow_only() {
    let (s, a, b) = setup();
    let flow = Binding::flow(addr("198.18.0.1:40000"), addr("198.18.0.2:9999"));
    let other = Binding::flow(addr("198.18.0.7:40000"), addr("198.18.0.2:9999"));
    let mut buf = [0u8; SHORT_MAX];
    let mut r = rng(4);
    let mut lens = HashSet::new();
    let mut heads = HashSet::new();
    for _ in 0..50 {
        let (n, nonce) = write_probe(&a, &flow, T, &mut r, &mut buf).expect("fits");
        assert!((SHORT_MIN..=SHORT_MAX).contains(&n));
        lens.insert(n);
        heads.insert(buf[NONCE_LEN..NONCE_LEN + 8].to_vec());
        let p = check_probe(&s, &flow, &buf[..n]).expect("valid");
        assert_eq!((p.client, p.nonce, p.t_ms), (a.client_id, nonce, T));
        assert_eq!(
            check_probe(&s, &other, &buf[..n]),
            None,
            "copied to another flow"
        );
        for i in 0..PROBE_BODY {
            let mut bad = buf;
            bad[i] ^= 1;
            assert_eq!(check_probe(&s, &flow, &bad[..n]), None, "byte {i}");
        }
    }
    assert!(lens.len() > 10, "probe lengths barely vary: {lens:?}");
    assert_eq!(heads.len(), 50, "the client id is visible");
    // bob's probe names bob.
    let (n, _) = write_probe(&b, &flow, T, &mut r, &mut buf).unwrap();
    assert_eq!(
        check_probe(&s, &flow, &buf[..n]).unwrap().client,
        b.client_id
    );
}

#[test]
fn resets_answer_one_probe_of_one_flow_and_only_the_server_makes_them() {
    let (s, a, b) = setup();
    let flow = Binding::flow(addr("198.18.0.1:40000"), addr("198.18.0.2:9999"));
    let other = Binding::flow(addr("198.18.0.1:40001"), addr("198.18.0.2:9999"));
    let mut buf = [0u8; SHORT_MAX];
    let mut r = rng(5);
    let (n, nonce) = write_probe(&a, &flow, T, &mut r, &mut buf).unwrap();
    let probe = check_probe(&s, &flow, &buf[..n]).unwrap();
    let mut reset = [0u8; SHORT_MAX];
    let m = write_reset(&s, &flow, &probe, &mut r, &mut reset).unwrap();
    assert!((SHORT_MIN..=SHORT_MAX).contains(&m));
    assert!(check_reset(
        &a,
        &flow,
        &[[9; NONCE_LEN], nonce],
        &reset[..m]
    ));
    assert!(
        !check_reset(&a, &flow, &[[9; NONCE_LEN]], &reset[..m]),
        "answers another probe"
    );
    assert!(
        !check_reset(&a, &other, &[nonce], &reset[..m]),
        "another flow"
    );
    assert!(!check_reset(&b, &flow, &[nonce], &reset[..m]), "bob's key");
    for i in 0..RESET_BODY {
        let mut bad = reset;
        bad[i] ^= 1;
        assert!(!check_reset(&a, &flow, &[nonce], &bad[..m]), "byte {i}");
    }
    // Nothing of the probe is echoed.
    assert!(!reset[..m]
        .windows(8)
        .any(|w| buf[..n].windows(8).any(|v| v == w)));
    // bob, who knows the server's public key, cannot make a reset for alice's flow: the
    // best he can do is one with his own key.
    let bobs = Probe {
        client: b.client_id,
        ..probe
    };
    let m = write_reset(&s, &flow, &bobs, &mut r, &mut reset).unwrap();
    assert!(!check_reset(&a, &flow, &[nonce], &reset[..m]));
}

#[test]
fn junk_is_never_a_probe_or_a_reset() {
    let (s, a, _) = setup();
    let flow = Binding::flow(addr("198.18.0.1:40000"), addr("198.18.0.2:9999"));
    let mut r = rng(6);
    let mut junk = [0u8; 200];
    for len in 0..200 {
        rand::RngCore::fill_bytes(&mut r, &mut junk[..len]);
        assert_eq!(check_probe(&s, &flow, &junk[..len]), None);
        assert!(!check_reset(&a, &flow, &[[1; NONCE_LEN]], &junk[..len]));
    }
}
