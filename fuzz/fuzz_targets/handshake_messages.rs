//! Fuzz target: arbitrary bytes as every message a peer without the key can send or inject:
//! msg1 (the server's cheap check, and the DH step forced past it), msg2 (a client's
//! initiator), a probe (server) and a reset (client). None may panic; none may verify.

#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rawtun::crypto::proof::{check_probe, check_reset};
use rawtun::crypto::{check_msg1, respond, Binding, Cipher, Initiator, Msg1Check, SharedKey};

fuzz_target!(|data: &[u8]| {
    let key = SharedKey::from_bytes([7; 32]);
    let (s, c) = (key.server_identity(), key.client_identity());
    let src: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let dst: SocketAddr = "198.18.0.2:9999".parse().unwrap();
    let ids = std::slice::from_ref(&s);
    assert!(check_msg1(ids, &[Binding::source(src), Binding::NONE], data).is_none());
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut out = Vec::new();
    let forced = Msg1Check { identity: 0, binding: 1, client: rawtun::crypto::ClientId([0; 8]), t_ms: 1 };
    assert!(respond(&s, &forced, Cipher::Aes256Gcm, data, b"", &mut rng, &mut out).is_err());
    assert!(out.is_empty());
    let mut m1 = Vec::new();
    let mut init = Initiator::start(&c, Cipher::Aes256Gcm, 1, &Binding::NONE, b"", &mut rng, &mut m1).unwrap();
    assert!(init.finish(data).is_err());
    let flow = Binding::flow(src, dst);
    assert!(check_probe(&s, &flow, data).is_none());
    assert!(!check_reset(&c, &flow, &[[0; 12], [1; 12]], data));
});
