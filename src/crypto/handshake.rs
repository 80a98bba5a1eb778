//! The session handshake: `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` (Noise spec rev. 34, §7.5
//! and §9, as in WireGuard), wrapped so a server can refuse a stranger's or a replayed msg1
//! before any public-key work, then per-direction traffic keys by HKDF-SHA256.
//!
//! ```text
//! msg1 initiator -> responder                     msg2 responder -> initiator
//! +--------------------------------------+        +-----------------------------------+
//! | e: ephemeral X25519 (32)             |        | e: ephemeral X25519 (32)          |
//! | s: client static, encrypted (32+16)  |        | encrypted payload (+16):          |
//! | encrypted payload (+16):             |        |   version (1) | pad len n (1)     |
//! |   version (1) | cipher id (1)        |        |   caller payload | padding (n)    |
//! |   pad len n (1) | t (8)              |        +-----------------------------------+
//! |   caller payload | padding (n)       |
//! +--------------------------------------+
//! | id ⊕ m[0..8]                  (8)    |   m = PRF(open, "msg1 mask" ‖ e): the client's
//! | t  ⊕ m[8..16]                 (8)    |   id and time, readable before any DH
//! | mac1 = PRF(reset key of the client,  |   proves this client's own key (so a removed
//! |   "mac1" ‖ binding ‖ all above) (16) |   client fails here), bound to its address
//! +--------------------------------------+
//! ```
//!
//! - The server unmasks the client id (one PRF per server key), looks the client up, checks
//!   `mac1` under that client's own key and the time rule ([`check_msg1`], no state), its
//!   seen-set and the client's rate limit, then does the DH work ([`respond`]). Noise IK
//!   authenticates the client by its static key, which must be the one the id named; the
//!   `t` inside the encryption must equal the one outside.
//! - The cipher id is authenticated; a mismatch is [`HandshakeError::CipherMismatch`].
//! - Random padding makes the message sizes vary; X25519 public keys have bit 255 clear
//!   (RFC 7748 §5), so on the wire that bit is set at random and cleared before Noise reads
//!   the key: no byte has a fixed bit.
//! - After msg2 each side takes the raw Noise split keys and derives the data-packet keys
//!   ([`super::packet`]), salted with the handshake hash. Forward secrecy comes from the
//!   ephemeral-ephemeral DH.
//! - Randomness (ephemeral key, padding, the top bit) comes from the caller's generator, so
//!   a simulation is reproducible from its seed.

use rand::{CryptoRng, RngCore, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::key::{ClientEntry, ClientId, ClientIdentity, PublicKey, ServerIdentity};
use super::packet::{Opener, Sealer};
use super::prf::{ct_eq, Binding, PRF_LEN};
use super::Cipher;

const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"rawtun v2 handshake";
/// Wire format version: the first byte of both encrypted payloads, and part of every label.
pub const VERSION: u8 = 2;
/// Noise message size limit (spec §3).
const NOISE_MAX: usize = 65_535;
const DH_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Bytes of msg1 outside the Noise message: masked client id, masked time and mac1.
const MSG1_TRAILER: usize = 8 + 8 + PRF_LEN;
/// Maximum random padding per message.
const MAX_PAD: usize = 255;
/// Largest caller payload either message can carry.
pub const MAX_PAYLOAD: usize = 64;
/// Shortest and longest Noise msg1: e, encrypted s, and the encrypted payload (version,
/// cipher, pad length, time, caller payload, padding).
const MSG1_NOISE_MIN: usize = DH_LEN + DH_LEN + TAG_LEN + 11 + TAG_LEN;
const MSG1_NOISE_MAX: usize = MSG1_NOISE_MIN + MAX_PAYLOAD + MAX_PAD;

/// The handshake failed; the session must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The message did not authenticate: the peer has another key, or it is garbage.
    #[error("handshake authentication failed (wrong key or not a rawtun peer)")]
    Auth,
    /// The client's static key is not in the server's client list (or was removed).
    #[error("handshake from a client key that is not configured (or was removed)")]
    UnknownClient,
    /// Authenticated, but the peer uses another data cipher.
    #[error("cipher mismatch: we use `{ours}`, the peer uses `{theirs}`")]
    CipherMismatch { ours: Cipher, theirs: Cipher },
    /// Authenticated, but another wire-format version.
    #[error("peer speaks wire format version {0}; this rawtun speaks {VERSION}")]
    Version(u8),
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

/// snow's default primitives, with the ephemeral key drawn from the caller's generator.
struct SeededResolver {
    seed: [u8; 32],
}

struct SeededRandom(rand::rngs::StdRng);

impl snow::types::Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        Some(Box::new(SeededRandom(rand::rngs::StdRng::from_seed(
            self.seed,
        ))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn snow::types::Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn noise_state(
    rng: &mut impl CryptoRng,
    local: &[u8; 32],
    remote: Option<&PublicKey>,
    psk: &[u8; 32],
) -> Result<snow::HandshakeState, HandshakeError> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(map_noise)?;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let builder = snow::Builder::with_resolver(params, Box::new(SeededResolver { seed }))
        .prologue(PROLOGUE)
        .map_err(map_noise)?
        .local_private_key(local)
        .map_err(map_noise)?
        .psk(2, psk)
        .map_err(map_noise)?;
    match remote {
        Some(server) => builder
            .remote_public_key(&server.0)
            .map_err(map_noise)?
            .build_initiator(),
        None => builder.build_responder(),
    }
    .map_err(map_noise)
}

/// Plaintext of a message: `head`, pad length, payload, zero padding.
fn padded(rng: &mut impl RngCore, head: &[u8], payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if payload.len() > MAX_PAYLOAD + 8 {
        return Err(HandshakeError::PayloadTooLarge(payload.len()));
    }
    let pad = (rng.next_u32() as usize) % (MAX_PAD + 1);
    let mut inner = Vec::with_capacity(head.len() + 1 + payload.len() + pad);
    inner.extend_from_slice(head);
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
    rng: &mut impl RngCore,
    state: &mut snow::HandshakeState,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    out.clear();
    out.resize(DH_LEN * 2 + inner.len() + TAG_LEN * 2, 0);
    let n = state.write_message(inner, out).map_err(map_noise)?;
    out.truncate(n);
    if rng.next_u32() & 1 == 1 {
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

impl SessionCrypto {
    /// Packets per key phase in both directions (see [`super::packet`]); both ends must use
    /// the same value. Call before the first packet.
    pub fn set_phase_len(&mut self, packets: u64) {
        self.sealer.set_phase_len(packets);
        self.opener.set_phase_len(packets);
    }
}

/// The mask of msg1's client id (bytes 0..8) and time (8..16), from its ephemeral key as
/// sent.
fn msg1_mask(open: &super::prf::Prf, ephemeral: &[u8]) -> [u8; 16] {
    open.compute(&[b"rawtun v2 msg1 mask", ephemeral])
}

/// The ephemeral key of a msg1 as the Noise layer reads it (bit 255 cleared): a unique
/// name for the message, for seen-sets.
pub fn msg1_ephemeral(msg1: &[u8]) -> Option<[u8; 32]> {
    let mut e: [u8; 32] = msg1.get(..DH_LEN)?.try_into().ok()?;
    e[DH_LEN - 1] &= 0x7f;
    Some(e)
}

/// Client side of a handshake waiting for msg2. A msg2 that fails to authenticate leaves it
/// unchanged (Noise restores its state), so garbage injected at the client's flow cannot
/// make it start over.
pub struct Initiator {
    state: Option<Box<snow::HandshakeState>>,
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
    /// Builds msg1 into `out` (cleared first): `payload` and our cipher, sent at Unix time
    /// `t_ms`, bound to `binding`.
    pub fn start(
        client: &ClientIdentity,
        cipher: Cipher,
        t_ms: u64,
        binding: &Binding,
        payload: &[u8],
        rng: &mut impl CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<Initiator, HandshakeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(HandshakeError::PayloadTooLarge(payload.len()));
        }
        let mut state = Box::new(noise_state(
            rng,
            client.secret.as_bytes(),
            Some(&client.server),
            &client.psk,
        )?);
        let mut body = Vec::with_capacity(8 + payload.len());
        body.extend_from_slice(&t_ms.to_be_bytes());
        body.extend_from_slice(payload);
        let inner = padded(rng, &[VERSION, cipher.id()], &body)?;
        write(rng, &mut state, &inner, out)?;
        let m = msg1_mask(&client.open, &out[..DH_LEN]);
        let t = t_ms.to_be_bytes();
        let clear = client.client_id.0.iter().chain(t.iter());
        out.extend(clear.zip(m).map(|(c, m)| c ^ m));
        let mac1 = client
            .reset
            .compute(&[b"rawtun v2 mac1", binding.as_bytes(), out]);
        out.extend_from_slice(&mac1);
        Ok(Initiator {
            state: Some(state),
            cipher,
        })
    }

    /// The cipher offered in msg1.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Reads msg2; returns the session keys and the responder's payload. After an error
    /// the initiator can read another msg2; after success it is spent.
    pub fn finish(&mut self, msg2: &[u8]) -> Result<(SessionCrypto, Vec<u8>), HandshakeError> {
        let spent = || HandshakeError::Internal("handshake already finished".into());
        let state = self.state.as_mut().ok_or_else(spent)?;
        let inner = read(state, msg2)?;
        let (&version, rest) = inner.split_first().ok_or(HandshakeError::Malformed)?;
        if version != VERSION {
            return Err(HandshakeError::Version(version));
        }
        let payload = unpadded(rest)?;
        let state = self.state.take().ok_or_else(spent)?;
        Ok((session(*state, self.cipher, true)?, payload))
    }
}

/// What [`check_msg1`] learned from a msg1 without any public-key work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg1Check {
    /// Which of the server's identities it is for.
    pub identity: usize,
    /// Which of the offered bindings verified.
    pub binding: usize,
    /// The client it names (and whose key its mac1 proves).
    pub client: ClientId,
    /// The time it claims (check it with the time rule).
    pub t_ms: u64,
}

/// Cheap check of a msg1: its length, the client its masked id names among `identities`'
/// clients, and its mac1 under that client's key for one of `bindings`. Costs one PRF per
/// server key, plus one per binding for a msg1 that names a configured client.
pub fn check_msg1(
    identities: &[ServerIdentity],
    bindings: &[Binding],
    msg1: &[u8],
) -> Option<Msg1Check> {
    let noise_len = msg1.len().checked_sub(MSG1_TRAILER)?;
    if !(MSG1_NOISE_MIN..=MSG1_NOISE_MAX).contains(&noise_len) {
        return None;
    }
    let (body, mac) = msg1.split_at(msg1.len() - PRF_LEN);
    let masked = &body[noise_len..];
    for (identity, id) in identities.iter().enumerate() {
        let m = msg1_mask(&id.open, &msg1[..DH_LEN]);
        let mut clear = [0u8; 16];
        for i in 0..16 {
            clear[i] = masked[i] ^ m[i];
        }
        let mut cid = [0u8; 8];
        cid.copy_from_slice(&clear[..8]);
        let Some(client) = id.client_by_id(&ClientId(cid)) else {
            continue;
        };
        for (binding, b) in bindings.iter().enumerate() {
            let want = client
                .reset
                .compute(&[b"rawtun v2 mac1", b.as_bytes(), body]);
            if ct_eq(&want, mac) {
                let mut t = [0u8; 8];
                t.copy_from_slice(&clear[8..]);
                return Some(Msg1Check {
                    identity,
                    binding,
                    client: ClientId(cid),
                    t_ms: u64::from_be_bytes(t),
                });
            }
        }
    }
    None
}

/// A handshake the server accepted.
#[derive(Debug)]
pub struct Accepted {
    pub keys: SessionCrypto,
    /// The client, as configured.
    pub client: ClientEntry,
    /// The initiator's payload.
    pub payload: Vec<u8>,
}

/// Server side, after [`check_msg1`] passed for `identity`: the DH work. Builds msg2 into
/// `out` (cleared first) carrying `payload`. On error `out` holds nothing to send.
pub fn respond(
    identity: &ServerIdentity,
    check: &Msg1Check,
    cipher: Cipher,
    msg1: &[u8],
    payload: &[u8],
    rng: &mut impl CryptoRng,
    out: &mut Vec<u8>,
) -> Result<Accepted, HandshakeError> {
    out.clear();
    let noise = msg1
        .len()
        .checked_sub(MSG1_TRAILER)
        .and_then(|n| msg1.get(..n))
        .ok_or(HandshakeError::Malformed)?;
    let mut state = noise_state(rng, identity.secret.as_bytes(), None, &identity.psk)?;
    let inner = read(&mut state, noise)?;
    let client_key: [u8; 32] = state
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or(HandshakeError::Malformed)?;
    let client = identity
        .client(&PublicKey(client_key))
        .ok_or(HandshakeError::UnknownClient)?
        .clone();
    if ClientId::of(&client.public) != check.client {
        return Err(HandshakeError::Auth);
    }
    let [version, cipher_id, rest @ ..] = inner.as_slice() else {
        return Err(HandshakeError::Malformed);
    };
    if *version != VERSION {
        return Err(HandshakeError::Version(*version));
    }
    let theirs = Cipher::from_id(*cipher_id).ok_or(HandshakeError::Malformed)?;
    if theirs != cipher {
        return Err(HandshakeError::CipherMismatch {
            ours: cipher,
            theirs,
        });
    }
    let body = unpadded(rest)?;
    let (t, their_payload) = body
        .split_first_chunk::<8>()
        .ok_or(HandshakeError::Malformed)?;
    if u64::from_be_bytes(*t) != check.t_ms {
        return Err(HandshakeError::Auth);
    }
    let their_payload = their_payload.to_vec();
    let reply = padded(rng, &[VERSION], payload)?;
    if let Err(e) = write(rng, &mut state, &reply, out) {
        out.clear();
        return Err(e);
    }
    Ok(Accepted {
        keys: session(state, cipher, false)?,
        client,
        payload: their_payload,
    })
}
