//! Fuzz target: arbitrary bytes into a session's packet opener, for each cipher. Any input
//! must give an error or (for the `none` cipher only) a plaintext, never a panic; the key
//! schedule must never move on a packet that does not authenticate.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rawtun::crypto::{check_msg1, respond, Binding, Cipher, Initiator, Opener, SharedKey};

const CIPHERS: [Cipher; 4] = [Cipher::Aes256Gcm, Cipher::Aes128Gcm, Cipher::ChaCha20Poly1305, Cipher::None];

fn opener(cipher: Cipher) -> Opener {
    let key = SharedKey::from_bytes([7; 32]);
    let (s, c) = (key.server_identity(), key.client_identity());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let b = Binding::NONE;
    let mut init = Initiator::start(&c, cipher, 1, &b, b"", &mut rng, &mut m1).unwrap();
    let check = check_msg1(std::slice::from_ref(&s), &[b], &m1).unwrap();
    let mut a = respond(&s, &check, cipher, &m1, b"", &mut rng, &mut m2).unwrap();
    init.finish(&m2).unwrap();
    a.keys.set_phase_len(64);
    a.keys.opener
}

thread_local! {
    static OPENERS: RefCell<Vec<Opener>> = RefCell::new(CIPHERS.iter().map(|&c| opener(c)).collect());
}

fuzz_target!(|data: &[u8]| {
    OPENERS.with(|o| {
        for (i, opener) in o.borrow_mut().iter_mut().enumerate() {
            let phase = opener.phase();
            let mut packet = data.to_vec();
            let r = opener.open(&mut packet);
            if CIPHERS[i] != Cipher::None {
                assert!(r.is_err(), "{:?} opened a forged packet", CIPHERS[i]);
                assert_eq!(opener.phase(), phase, "a forgery moved the key schedule");
            }
        }
    });
});
