//! Data-packet protection after the handshake: AEAD with counter nonces, QUIC-style header
//! protection of the counter, and the anti-replay check.
//!
//! Sealed packet (AES-GCM and ChaCha20-Poly1305 ciphers):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        low 32 bits of the packet counter, masked (4 B)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  ciphertext (= plaintext length, >= 1 B) ...                  |
//! |  ... ┌ sample: 16 B starting right after the header ┐        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  AEAD tag (16 B)                                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - nonce = IV XOR (64-bit counter, big-endian, in the last 8 bytes); counters start at 0
//!   and are never reused; the sender stops at [`MAX_PACKETS`] (the caller rehandshakes).
//! - **Key phases** (rekeying without a message): packet `n` is sealed with the keys of
//!   phase `n / phase_len`. Phase 0's AEAD key and IV come from the handshake; phase `p + 1`
//!   derives from phase `p`'s secret by HKDF (`rawtun v2 ku`), and a side erases a phase's
//!   secret once it has moved past it (so old keys cannot be recomputed from new ones). The
//!   default `phase_len` is [`DEFAULT_PHASE_LEN`] = 2^23 packets, RFC 9001 §6.6's
//!   confidentiality limit for AES-GCM (applied to ChaCha20-Poly1305 too). Since the phase
//!   follows from the counter, the receiver needs no key-phase bit: it keeps the keys of
//!   every phase still inside the replay window, derives the next one when a packet of it
//!   authenticates, and so loses nothing to reordering at the switch. The header-protection
//!   key stays the same across phases (as in QUIC).
//! - Integrity limit (RFC 9001 §6.6): an [`Opener`] that has seen 2^52 (AES-GCM) or 2^36
//!   (ChaCha20-Poly1305) forged packets reports [`Opener::forgery_limit_reached`]; the
//!   session must end.
//! - AAD = the 4 *unmasked* counter bytes.
//! - Header protection as in RFC 9001 §5.4: `mask = HP(key_hp, sample)` with
//!   AES-ECB (§5.4.3, AES-128 or AES-256 to match the AEAD) or ChaCha20 (§5.4.4); the
//!   4 counter bytes are XORed with `mask[1..5]`. The sample always exists because the tag
//!   alone is 16 bytes.
//! - The receiver rebuilds the full counter from the truncated 32 bits relative to the
//!   highest authenticated counter (RFC 9000 §A.3), authenticates, and only then records
//!   it in the [`ReplayWindow`] (RFC 6479).
//!
//! With [`Cipher::None`] the layout is `| counter (4 B, clear) | plaintext |`: no tag, no
//! mask, but the replay window still applies.
//!
//! Every byte on the wire is either masked, ciphertext or tag: no constant plaintext bytes.

use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use super::{Cipher, ReplayWindow, REPLAY_WINDOW};

/// Bytes in front of the ciphertext: the masked truncated counter.
pub const HEADER_LEN: usize = 4;
/// The sender refuses to seal packet number `MAX_PACKETS` (2^62) or later.
pub const MAX_PACKETS: u64 = 1 << 62;
/// Packets per key phase unless set otherwise (RFC 9001 §6.6, AES-GCM).
pub const DEFAULT_PHASE_LEN: u64 = 1 << 23;
/// A receiver derives keys at most this many phases ahead of the newest it has.
const MAX_PHASES_AHEAD: u64 = 4;
/// Header-protection sample length (RFC 9001 §5.4.2).
const SAMPLE_LEN: usize = 16;
const IV_LEN: usize = 12;

/// The AEAD key and IV of one key phase.
struct PhaseKey {
    phase: u64,
    key: LessSafeKey,
    iv: [u8; IV_LEN],
}

/// One direction's key schedule: the secret of the next phase to derive.
#[derive(Clone)]
struct Schedule {
    alg: &'static aead::Algorithm,
    cipher: Cipher,
    next_phase: u64,
    next_secret: [u8; 32],
}

impl Schedule {
    /// The next phase's key; its secret is replaced by the one after it (erased).
    fn next(&mut self) -> Option<PhaseKey> {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &self.next_secret);
        let mut key = [0u8; 32];
        let key = &mut key[..self.alg.key_len()];
        let mut iv = [0u8; IV_LEN];
        expand(&prk, b"rawtun v2 key", self.cipher, key)?;
        expand(&prk, b"rawtun v2 iv", self.cipher, &mut iv)?;
        let mut secret = [0u8; 32];
        expand(&prk, b"rawtun v2 ku", self.cipher, &mut secret)?;
        let phase = self.next_phase;
        self.next_secret = secret;
        self.next_phase += 1;
        Some(PhaseKey {
            phase,
            key: LessSafeKey::new(UnboundKey::new(self.alg, key).ok()?),
            iv,
        })
    }
}

/// Keys for one direction.
// One per session direction; boxing the keys would add a pointer chase to every packet.
#[allow(clippy::large_enum_variant)]
enum Protection {
    Clear,
    Aead {
        hp: quic::HeaderProtectionKey,
        schedule: Schedule,
    },
}

/// HKDF output length as a ring `KeyType`.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, label: &[u8], cipher: Cipher, out: &mut [u8]) -> Option<()> {
    let info = [label, cipher.name().as_bytes()];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

impl Protection {
    /// Derives the header-protection key and the phase-0 secret of one direction from its
    /// Noise split secret, salted with the handshake hash. `None` only if ring refuses a
    /// length.
    fn derive(cipher: Cipher, secret: &[u8], transcript: &[u8]) -> Option<Protection> {
        let (alg, hp_alg) = match cipher {
            Cipher::None => return Some(Protection::Clear),
            Cipher::Aes256Gcm => (&aead::AES_256_GCM, &quic::AES_256),
            Cipher::Aes128Gcm => (&aead::AES_128_GCM, &quic::AES_128),
            Cipher::ChaCha20Poly1305 => (&aead::CHACHA20_POLY1305, &quic::CHACHA20),
        };
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, transcript).extract(secret);
        let mut hp = [0u8; 32];
        let hp = &mut hp[..hp_alg.key_len()];
        let mut first = [0u8; 32];
        expand(&prk, b"rawtun v2 hp", cipher, hp)?;
        expand(&prk, b"rawtun v2 phase 0", cipher, &mut first)?;
        Some(Protection::Aead {
            hp: quic::HeaderProtectionKey::new(hp_alg, hp).ok()?,
            schedule: Schedule {
                alg,
                cipher,
                next_phase: 0,
                next_secret: first,
            },
        })
    }
}

fn nonce(iv: &[u8; IV_LEN], counter: u64) -> Nonce {
    let mut n = *iv;
    for (b, c) in n[IV_LEN - 8..].iter_mut().zip(counter.to_be_bytes()) {
        *b ^= c;
    }
    Nonce::assume_unique_for_key(n)
}

/// XORs the 4 header bytes with `mask[1..5]` (RFC 9001 §5.4.1, without a first byte).
fn apply_mask(header: &mut [u8; HEADER_LEN], mask: &[u8; 5]) {
    for (h, m) in header.iter_mut().zip(&mask[1..]) {
        *h ^= m;
    }
}

/// Full counter from its low 32 bits, relative to the highest authenticated counter
/// (RFC 9000 §A.3 with `pn_nbits = 32`).
pub(crate) fn reconstruct(largest: Option<u64>, truncated: u32) -> u64 {
    const WIN: u64 = 1 << 32;
    const HWIN: u64 = WIN / 2;
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let candidate = (expected & !(WIN - 1)) | u64::from(truncated);
    if candidate.saturating_add(HWIN) <= expected && candidate < MAX_PACKETS - WIN {
        candidate + WIN
    } else if candidate > expected.saturating_add(HWIN) && candidate >= WIN {
        candidate - WIN
    } else {
        candidate
    }
}

/// `Sealer::seal` failed; nothing was sent and the counter did not advance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Empty plaintext (the header-protection sample needs at least one byte).
    #[error("cannot seal an empty packet")]
    Empty,
    /// `buf` cannot hold header + plaintext + tag from `start`.
    #[error("buffer too small to seal: need {need} bytes, have {have}")]
    BufferTooSmall { need: usize, have: usize },
    /// 2^62 packets sealed with these keys: rehandshake.
    #[error("packet counter exhausted; a new handshake is needed")]
    Exhausted,
    /// ring refused to seal (cannot happen with valid lengths).
    #[error("AEAD seal failed")]
    Internal,
}

/// `Opener::open` rejected a packet; the packet is dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than header + tag + 1 byte.
    #[error("packet too short")]
    Short,
    /// Tag did not verify (forged, corrupted, or another session's packet).
    #[error("packet authentication failed")]
    Auth,
    /// Counter already seen or older than the replay window.
    #[error("replayed or too old packet")]
    Replay,
}

/// Counts kept by an [`Opener`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenerStats {
    /// Packets authenticated and accepted.
    pub opened: u64,
    /// Packets whose tag did not verify.
    pub auth_failures: u64,
    /// Duplicates and packets older than the window.
    pub replays: u64,
    /// Packets too short to hold a header, a byte and a tag.
    pub short: u64,
}

/// Seals outgoing packets of one session, in place, with consecutive counters.
pub struct Sealer {
    cipher: Cipher,
    protection: Protection,
    /// The current phase's key (`None` for the clear cipher).
    current: Option<PhaseKey>,
    phase_len: u64,
    next: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("cipher", &self.cipher)
            .field("next", &self.next)
            .field("phase", &self.phase())
            .finish()
    }
}

impl Sealer {
    pub(crate) fn new(cipher: Cipher, secret: &[u8], transcript: &[u8]) -> Option<Sealer> {
        let mut protection = Protection::derive(cipher, secret, transcript)?;
        let current = match &mut protection {
            Protection::Clear => None,
            Protection::Aead { schedule, .. } => Some(schedule.next()?),
        };
        Some(Sealer {
            cipher,
            protection,
            current,
            phase_len: DEFAULT_PHASE_LEN,
            next: 0,
        })
    }

    /// Packets per key phase (both ends must agree); only before the first packet.
    pub(crate) fn set_phase_len(&mut self, packets: u64) {
        if self.next == 0 {
            self.phase_len = packets.max(1);
        }
    }

    /// The cipher in use.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Bytes a sealed packet adds to its plaintext: [`HEADER_LEN`] + tag.
    pub fn overhead(&self) -> usize {
        HEADER_LEN + self.cipher.tag_len()
    }

    /// Packets sealed so far (the next counter).
    pub fn sealed(&self) -> u64 {
        self.next
    }

    /// The key phase in use (key updates so far).
    pub fn phase(&self) -> u64 {
        self.current.as_ref().map_or(0, |k| k.phase)
    }

    /// Seals in place. The plaintext sits at `buf[start + HEADER_LEN..][..len]`, and
    /// `tag_len` bytes after it must be free. Writes the masked header in front and the tag
    /// after; returns the sealed length, counted from `start`.
    pub fn seal(&mut self, buf: &mut [u8], start: usize, len: usize) -> Result<usize, SealError> {
        if len == 0 {
            return Err(SealError::Empty);
        }
        let have = buf.len();
        let too_small = |need| SealError::BufferTooSmall { need, have };
        let total = len
            .checked_add(self.overhead())
            .ok_or(too_small(usize::MAX))?;
        let end = start.checked_add(total).ok_or(too_small(usize::MAX))?;
        let packet = buf.get_mut(start..end).ok_or(too_small(end))?;
        let counter = self.next;
        if counter >= MAX_PACKETS {
            return Err(SealError::Exhausted);
        }
        let (header, body) = packet.split_at_mut(HEADER_LEN);
        let mut head = (counter as u32).to_be_bytes();
        if let Protection::Aead { hp, schedule } = &mut self.protection {
            let phase = counter / self.phase_len;
            while self.current.as_ref().is_some_and(|k| k.phase < phase) {
                self.current = Some(schedule.next().ok_or(SealError::Internal)?);
            }
            let current = self.current.as_ref().ok_or(SealError::Internal)?;
            let (plain, tag_out) = body.split_at_mut(len);
            let tag = current
                .key
                .seal_in_place_separate_tag(nonce(&current.iv, counter), Aad::from(head), plain)
                .map_err(|_| SealError::Internal)?;
            tag_out.copy_from_slice(tag.as_ref());
            let mask = hp
                .new_mask(&body[..SAMPLE_LEN])
                .map_err(|_| SealError::Internal)?;
            apply_mask(&mut head, &mask);
        }
        header.copy_from_slice(&head);
        self.next = counter + 1;
        Ok(total)
    }

    #[cfg(test)]
    pub(crate) fn set_next_counter(&mut self, next: u64) {
        self.next = next;
    }
}

/// Authenticates and decrypts incoming packets of one session, in place, and filters
/// replays.
pub struct Opener {
    cipher: Cipher,
    protection: Protection,
    /// Keys of the phases still inside the replay window, oldest first.
    keys: std::collections::VecDeque<PhaseKey>,
    phase_len: u64,
    window: ReplayWindow,
    stats: OpenerStats,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("cipher", &self.cipher)
            .field("window", &self.window)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Forged packets an [`Opener`] tolerates before the session must end (RFC 9001 §6.6).
fn forgery_limit(cipher: Cipher) -> u64 {
    match cipher {
        Cipher::ChaCha20Poly1305 => 1 << 36,
        _ => 1 << 52,
    }
}

impl Opener {
    pub(crate) fn new(cipher: Cipher, secret: &[u8], transcript: &[u8]) -> Option<Opener> {
        let mut protection = Protection::derive(cipher, secret, transcript)?;
        let mut keys = std::collections::VecDeque::new();
        if let Protection::Aead { schedule, .. } = &mut protection {
            keys.push_back(schedule.next()?);
        }
        Some(Opener {
            cipher,
            protection,
            keys,
            phase_len: DEFAULT_PHASE_LEN,
            window: ReplayWindow::new(),
            stats: OpenerStats::default(),
        })
    }

    /// Packets per key phase (both ends must agree); only before the first packet.
    pub(crate) fn set_phase_len(&mut self, packets: u64) {
        if self.window.top().is_none() {
            self.phase_len = packets.max(1);
        }
    }

    /// The cipher in use.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Bytes a sealed packet adds to its plaintext: [`HEADER_LEN`] + tag.
    pub fn overhead(&self) -> usize {
        HEADER_LEN + self.cipher.tag_len()
    }

    /// Counts of accepted and rejected packets.
    pub fn stats(&self) -> OpenerStats {
        self.stats
    }

    /// The newest key phase the peer has used.
    pub fn phase(&self) -> u64 {
        self.keys.back().map_or(0, |k| k.phase)
    }

    /// True once so many forged packets failed that the keys must not be used any longer.
    pub fn forgery_limit_reached(&self) -> bool {
        self.stats.auth_failures >= forgery_limit(self.cipher)
    }

    /// Opens `packet` in place and returns the plaintext inside it. Any input is safe: bad
    /// packets return an error, are counted, and leave the replay window and keys unchanged.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        if packet.len() < self.overhead() + 1 {
            self.stats.short += 1;
            return Err(OpenError::Short);
        }
        let (header, body) = packet.split_at_mut(HEADER_LEN);
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(header);
        if let Protection::Aead { hp, .. } = &self.protection {
            let sample = body.get(..SAMPLE_LEN).ok_or(OpenError::Short)?;
            let mask = hp.new_mask(sample).map_err(|_| OpenError::Short)?;
            apply_mask(&mut head, &mask);
        }
        let counter = reconstruct(self.window.top(), u32::from_be_bytes(head));
        if !self.window.check(counter) {
            self.stats.replays += 1;
            return Err(OpenError::Replay);
        }
        let plain: &'a mut [u8] = match &mut self.protection {
            Protection::Clear => body,
            Protection::Aead { schedule, .. } => {
                let phase = counter / self.phase_len;
                let oldest = self.keys.front().map_or(0, |k| k.phase);
                let newest = self.keys.back().map_or(0, |k| k.phase);
                if phase < oldest {
                    self.stats.replays += 1;
                    return Err(OpenError::Replay);
                }
                if phase > newest + MAX_PHASES_AHEAD {
                    self.stats.auth_failures += 1;
                    return Err(OpenError::Auth);
                }
                // Keys of a phase not seen yet are derived on trial and kept only if the
                // packet authenticates (a forgery cannot advance the schedule).
                let mut trial = schedule.clone();
                let mut fresh = Vec::new();
                while newest + (fresh.len() as u64) < phase {
                    fresh.push(trial.next().ok_or(OpenError::Auth)?);
                }
                let key = match fresh.last() {
                    Some(k) => k,
                    None => self
                        .keys
                        .iter()
                        .find(|k| k.phase == phase)
                        .ok_or(OpenError::Auth)?,
                };
                match key
                    .key
                    .open_in_place(nonce(&key.iv, counter), Aad::from(head), body)
                {
                    Ok(plain) => {
                        if !fresh.is_empty() {
                            self.keys.extend(fresh);
                            *schedule = trial;
                        }
                        plain
                    }
                    Err(_) => {
                        self.stats.auth_failures += 1;
                        return Err(OpenError::Auth);
                    }
                }
            }
        };
        self.window.update(counter);
        self.stats.opened += 1;
        self.prune();
        Ok(plain)
    }

    /// Drops the keys of phases that lie wholly below the replay window.
    fn prune(&mut self) {
        let Some(top) = self.window.top() else { return };
        let floor = top.saturating_sub(REPLAY_WINDOW) / self.phase_len;
        while self.keys.len() > 1 && self.keys.front().is_some_and(|k| k.phase < floor) {
            self.keys.pop_front();
        }
    }

    #[cfg(test)]
    pub(crate) fn set_highest_counter(&mut self, counter: u64) {
        self.window = ReplayWindow::new();
        self.window.update(counter);
    }
}
