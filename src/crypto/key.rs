//! The pre-shared key: from 64 hex characters as is, or stretched from a password with
//! Argon2id; and generation of fresh secrets for `rawtun secret`.

use std::fmt;

use rand::TryRngCore;

/// Salt for password stretching; fixed so both ends derive the same key.
const ARGON2_SALT: &[u8] = b"rawtun/psk/v1";
/// Argon2id memory cost in KiB (OWASP's 19 MiB recommendation).
const ARGON2_M_KIB: u32 = 19_456;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;

/// 32-byte pre-shared key mixed into the Noise handshake (`psk0`).
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; 32]);

/// `transport.kcp.key` cannot become a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key string is empty.
    #[error("key is empty; generate one with `rawtun secret`")]
    Empty,
    /// Argon2 refused its parameters (cannot happen with the fixed ones).
    #[error("password key derivation failed: {0}")]
    Derive(String),
}

impl Psk {
    /// Exactly 64 hex digits are the key itself; any other non-empty string is a password
    /// stretched with Argon2id (m = 19456 KiB, t = 2, p = 1, salt `rawtun/psk/v1`), which
    /// takes tens of milliseconds: call once at config load.
    pub fn from_key(key: &str) -> Result<Psk, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut out = [0u8; 32];
        if key.len() == 64 && hex::decode_to_slice(key, &mut out).is_ok() {
            return Ok(Psk(out));
        }
        let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(out.len()))
            .map_err(|e| KeyError::Derive(e.to_string()))?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(key.as_bytes(), ARGON2_SALT, &mut out)
            .map_err(|e| KeyError::Derive(e.to_string()))?;
        Ok(Psk(out))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Psk {
        Psk(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// 32 random bytes from the OS RNG as 64 lowercase hex digits (for `rawtun secret`).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random number generator works (getrandom)");
    hex::encode(bytes)
}
