//! Stateless reset: how a server that lost a session (it restarted) tells the client so,
//! without keys for that session and without letting anyone else forge the message.
//!
//! A client's sealed packets begin with 16 bytes that look random (masked counter and
//! ciphertext). A server that cannot open a packet answers with
//!
//! ```text
//! +------------------------+---------------------------+------------------+
//! | prefix (16 B, echoed)   | token = HMAC-SHA256(PSK,  | random padding   |
//! |                         |  label || prefix)[..16]   | (0..32 B)        |
//! +------------------------+---------------------------+------------------+
//! ```
//!
//! The client accepts a reset only if the token verifies under its PSK *and* the prefix is
//! one of the packets it sent recently, so a captured reset cannot be replayed later and a
//! party without the PSK cannot make one. (Like QUIC's stateless reset, RFC 9000 §10.3, but
//! keyed by the pre-shared key instead of a per-connection token.)

use ring::hmac;

use super::Psk;

/// Bytes of the echoed prefix and of the token.
pub const RESET_PREFIX: usize = 16;
const TOKEN: usize = 16;
const LABEL: &[u8] = b"rawtun v1 stateless reset";
/// Shortest and longest reset message.
pub const RESET_MIN: usize = RESET_PREFIX + TOKEN;
pub const RESET_MAX: usize = RESET_MIN + 31;

fn token(psk: &Psk, prefix: &[u8; RESET_PREFIX]) -> [u8; TOKEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, psk.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(LABEL);
    ctx.update(prefix);
    let tag = ctx.sign();
    let mut out = [0u8; TOKEN];
    out.copy_from_slice(&tag.as_ref()[..TOKEN]);
    out
}

/// Writes a reset answering a packet that began with `prefix` into `out`; returns its length.
/// `pad` (0..32) varies the length so resets have no fixed size.
pub fn write_reset(
    psk: &Psk,
    prefix: &[u8; RESET_PREFIX],
    pad: u8,
    out: &mut [u8],
) -> Option<usize> {
    let pad = usize::from(pad % 32);
    let len = RESET_MIN + pad;
    let out = out.get_mut(..len)?;
    out[..RESET_PREFIX].copy_from_slice(prefix);
    out[RESET_PREFIX..RESET_MIN].copy_from_slice(&token(psk, prefix));
    // Padding need not be secret, only not constant: derive it from the token.
    for i in 0..pad {
        out[RESET_MIN + i] = out[RESET_PREFIX + (i % TOKEN)].rotate_left(i as u32 % 8) ^ 0x5a;
    }
    Some(len)
}

/// If `msg` is a valid reset, the prefix it answers.
pub fn check_reset(psk: &Psk, msg: &[u8]) -> Option<[u8; RESET_PREFIX]> {
    if msg.len() < RESET_MIN || msg.len() > RESET_MAX {
        return None;
    }
    let mut prefix = [0u8; RESET_PREFIX];
    prefix.copy_from_slice(&msg[..RESET_PREFIX]);
    let want = token(psk, &prefix);
    // Constant-time comparison: fold the differences, branch once.
    let diff = want
        .iter()
        .zip(&msg[RESET_PREFIX..RESET_MIN])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_round_trips_and_rejects_forgeries() {
        let psk = Psk::from_bytes([7; 32]);
        let other = Psk::from_bytes([8; 32]);
        let prefix = [0xab; RESET_PREFIX];
        let mut buf = [0u8; 64];
        for pad in 0..32u8 {
            let n = write_reset(&psk, &prefix, pad, &mut buf).expect("fits");
            assert_eq!(n, RESET_MIN + pad as usize);
            assert_eq!(check_reset(&psk, &buf[..n]), Some(prefix));
            assert_eq!(check_reset(&other, &buf[..n]), None);
            for i in 0..RESET_MIN {
                let mut bad = buf;
                bad[i] ^= 1;
                assert_eq!(check_reset(&psk, &bad[..n]), None, "flip at {i}");
            }
        }
        assert_eq!(check_reset(&psk, &buf[..RESET_MIN - 1]), None);
        assert_eq!(check_reset(&psk, &[0u8; 80]), None);
    }
}
