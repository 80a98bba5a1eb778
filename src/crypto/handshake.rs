//! The session handshake: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (Noise spec rev. 34,
//! §7.4 and §9) with the pre-shared key, then per-direction traffic keys by HKDF-SHA256.
//!
//! Two messages; both ends are stateless until the first one arrives:
//!
//! ```text
//! msg1 initiator -> responder       msg2 responder -> initiator
//! +--------------------------+      +--------------------------+
//! | e: ephemeral X25519 (32) |      | e: ephemeral X25519 (32) |
//! +--------------------------+      +--------------------------+
//! | encrypted payload:       |      | encrypted payload:       |
//! |   cipher id (1)          |      |   pad len n (1)          |
//! |   pad len n (1)          |      |   caller payload         |
//! |   caller payload         |      |   padding (n = 0..63)    |
//! |   padding (n = 0..63)    |      +--------------------------+
//! +--------------------------+      | tag (16)                 |
//! | tag (16)                 |      +--------------------------+
//! +--------------------------+
//! ```
//!
//! - `psk0` mixes the key in before msg1's payload is encrypted, so a wrong key fails at the
//!   responder on the first message ([`HandshakeError::Auth`]) and nothing is sent back.
//! - The cipher id is authenticated; a mismatch is [`HandshakeError::CipherMismatch`].
//! - Random padding makes the message sizes vary.
//! - X25519 public keys always have bit 255 clear (RFC 7748 §5); on the wire that bit is set
//!   at random and cleared again before Noise reads the key, so no byte has a fixed bit.
//! - After msg2 each side takes the raw Noise split keys `(k_i2r, k_r2i)` and derives, per
//!   direction, `PRK = HKDF-Extract(salt = handshake hash, k)` and from it the AEAD key,
//!   IV and header-protection key (labels `rawtun v1 key|iv|hp` + cipher name). Forward
//!   secrecy comes from the ephemeral-ephemeral DH.

use rand::Rng;

use super::packet::{Opener, Sealer};
use super::{Cipher, Psk};

const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"rawtun handshake v1";
/// Noise message size limit (spec §3).
const NOISE_MAX: usize = 65_535;
const DH_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Maximum random padding per message.
const MAX_PAD: usize = 63;
/// Largest caller payload either message can carry.
pub const MAX_PAYLOAD: usize = NOISE_MAX - DH_LEN - TAG_LEN - 2 - MAX_PAD;

/// The handshake failed; the session must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The message did not authenticate: the peer has another key, or it is garbage.
    #[error("handshake authentication failed (wrong key or not a rawtun peer)")]
    Auth,
    /// Authenticated, but the peer uses another data cipher.
    #[error("cipher mismatch: we use `{ours}`, the peer uses `{theirs}`")]
    CipherMismatch { ours: Cipher, theirs: Cipher },
    /// Too short, too long, or a decrypted payload that breaks the format.
    #[error("malformed handshake message")]
    Malformed,
    /// Our own payload exceeds [`MAX_PAYLOAD`].
    #[error("handshake payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge(usize),
    /// The Noise library failed for a reason that is not the peer's fault.
    #[error("handshake internal error: {0}")]
    Internal(String),
}

fn map_noise(e: snow::Error) -> HandshakeError {
    match e {
        snow::Error::Decrypt | snow::Error::Dh => HandshakeError::Auth,
        snow::Error::Input => HandshakeError::Malformed,
        other => HandshakeError::Internal(other.to_string()),
    }
}

fn noise_state(psk: &Psk, initiator: bool) -> Result<snow::HandshakeState, HandshakeError> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(map_noise)?;
    let builder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .map_err(map_noise)?
        .psk(0, psk.as_bytes())
        .map_err(map_noise)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(map_noise)
}

/// Plaintext of a message: `prefix`, pad length, payload, zero padding.
fn padded(prefix: &[u8], payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(HandshakeError::PayloadTooLarge(payload.len()));
    }
    let pad = rand::rng().random_range(0..=MAX_PAD);
    let mut inner = Vec::with_capacity(prefix.len() + 1 + payload.len() + pad);
    inner.extend_from_slice(prefix);
    inner.push(pad as u8);
    inner.extend_from_slice(payload);
    inner.resize(inner.len() + pad, 0);
    Ok(inner)
}

/// Caller payload from `| pad len | payload | padding |`.
fn unpadded(inner: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let (&pad, rest) = inner.split_first().ok_or(HandshakeError::Malformed)?;
    let pad = usize::from(pad);
    if pad > MAX_PAD {
        return Err(HandshakeError::Malformed);
    }
    let len = rest
        .len()
        .checked_sub(pad)
        .ok_or(HandshakeError::Malformed)?;
    Ok(rest[..len].to_vec())
}

/// Writes one Noise message into `out` and randomises the ephemeral key's bit 255.
fn write(
    state: &mut snow::HandshakeState,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    out.clear();
    out.resize(DH_LEN + inner.len() + TAG_LEN, 0);
    let n = state.write_message(inner, out).map_err(map_noise)?;
    out.truncate(n);
    if rand::rng().random::<bool>() {
        if let Some(b) = out.get_mut(DH_LEN - 1) {
            *b |= 0x80;
        }
    }
    Ok(())
}

/// Reads one Noise message (clearing bit 255 of the ephemeral key) and returns its payload.
fn read(state: &mut snow::HandshakeState, msg: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if msg.len() < DH_LEN + TAG_LEN || msg.len() > NOISE_MAX {
        return Err(HandshakeError::Malformed);
    }
    let mut wire = msg.to_vec();
    wire[DH_LEN - 1] &= 0x7f;
    let mut inner = vec![0u8; msg.len()];
    let n = state.read_message(&wire, &mut inner).map_err(map_noise)?;
    inner.truncate(n);
    Ok(inner)
}

/// Derives both directions' keys from a finished handshake.
fn session(
    mut state: snow::HandshakeState,
    cipher: Cipher,
    initiator: bool,
) -> Result<SessionCrypto, HandshakeError> {
    if !state.is_handshake_finished() {
        return Err(HandshakeError::Internal("handshake not finished".into()));
    }
    let (i2r, r2i) = state.dangerously_get_raw_split();
    let transcript = state.get_handshake_hash().to_vec();
    let (send, recv) = if initiator {
        (&i2r, &r2i)
    } else {
        (&r2i, &i2r)
    };
    let derive_failed = || HandshakeError::Internal("traffic key derivation failed".into());
    Ok(SessionCrypto {
        sealer: Sealer::new(cipher, send, &transcript).ok_or_else(derive_failed)?,
        opener: Opener::new(cipher, recv, &transcript).ok_or_else(derive_failed)?,
    })
}

/// Keys of an established session.
#[derive(Debug)]
pub struct SessionCrypto {
    /// Protects packets we send.
    pub sealer: Sealer,
    /// Checks packets we receive.
    pub opener: Opener,
}

/// Client side of a handshake waiting for msg2.
pub struct Initiator {
    state: Box<snow::HandshakeState>,
    cipher: Cipher,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Builds msg1 into `out` (cleared first), carrying `payload` and our cipher.
    pub fn start(
        psk: &Psk,
        cipher: Cipher,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Initiator, HandshakeError> {
        let mut state = Box::new(noise_state(psk, true)?);
        let inner = padded(&[cipher.id()], payload)?;
        write(&mut state, &inner, out)?;
        Ok(Initiator { state, cipher })
    }

    /// The cipher offered in msg1.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Consumes msg2; returns the session keys and the responder's payload.
    pub fn finish(mut self, msg2: &[u8]) -> Result<(SessionCrypto, Vec<u8>), HandshakeError> {
        let inner = read(&mut self.state, msg2)?;
        let payload = unpadded(&inner)?;
        Ok((session(*self.state, self.cipher, true)?, payload))
    }
}

/// Server side, stateless: consumes msg1, builds msg2 into `out` (cleared first), returns
/// the session keys and the initiator's payload. On error `out` holds nothing to send.
pub fn respond(
    psk: &Psk,
    cipher: Cipher,
    msg1: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(SessionCrypto, Vec<u8>), HandshakeError> {
    out.clear();
    let mut state = noise_state(psk, false)?;
    let inner = read(&mut state, msg1)?;
    let (&id, rest) = inner.split_first().ok_or(HandshakeError::Malformed)?;
    let theirs = Cipher::from_id(id).ok_or(HandshakeError::Malformed)?;
    if theirs != cipher {
        return Err(HandshakeError::CipherMismatch {
            ours: cipher,
            theirs,
        });
    }
    let their_payload = unpadded(rest)?;
    let reply = padded(&[], payload)?;
    if let Err(e) = write(&mut state, &reply, out) {
        out.clear();
        return Err(e);
    }
    Ok((session(state, cipher, false)?, their_payload))
}
