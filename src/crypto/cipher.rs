//! The data-packet cipher chosen by `transport.kcp.block`, and the refusal of paqet's legacy,
//! unauthenticated block ciphers.

use std::fmt;

/// AEAD used for data packets after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// AES-256-GCM (`aes`, `aes-256-gcm`); the default.
    #[default]
    Aes256Gcm,
    /// AES-128-GCM (`aes-128-gcm`).
    Aes128Gcm,
    /// ChaCha20-Poly1305 (`chacha20-poly1305`, `chacha20`).
    ChaCha20Poly1305,
    /// No encryption or authentication of data packets (`none`); the handshake still runs
    /// and still proves both ends hold the key. The caller should log a warning.
    None,
}

/// `transport.kcp.block` names a cipher rawtun does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// A paqet/kcp-go cipher without authentication.
    #[error(
        "block cipher `{0}` is unauthenticated and not supported; use `aes` (AES-256-GCM) or \
         `chacha20-poly1305`"
    )]
    Unauthenticated(String),
    /// A name nobody knows.
    #[error(
        "unknown block cipher `{0}`; use `aes` (AES-256-GCM), `aes-128-gcm`, \
         `chacha20-poly1305` or `none`"
    )]
    Unknown(String),
}

/// paqet (kcp-go) cipher names that are refused as unauthenticated.
const LEGACY: &[&str] = &[
    "salsa20", "blowfish", "twofish", "cast5", "3des", "tea", "xtea", "xor", "sm4", "aes-128",
    "aes-192", "null",
];

impl Cipher {
    /// Parses a `transport.kcp.block` value (case-insensitive, surrounding blanks ignored).
    pub fn from_block_name(name: &str) -> Result<Cipher, CipherError> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "aes" | "aes-256-gcm" => Ok(Cipher::Aes256Gcm),
            "aes-128-gcm" => Ok(Cipher::Aes128Gcm),
            "chacha20-poly1305" | "chacha20" => Ok(Cipher::ChaCha20Poly1305),
            "none" => Ok(Cipher::None),
            other if LEGACY.contains(&other) => Err(CipherError::Unauthenticated(lower)),
            _ => Err(CipherError::Unknown(name.to_owned())),
        }
    }

    /// Canonical name, accepted back by [`Cipher::from_block_name`].
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::Aes128Gcm => "aes-128-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::None => "none",
        }
    }

    /// Authentication tag bytes appended to each data packet (0 for `none`).
    pub fn tag_len(self) -> usize {
        match self {
            Cipher::None => 0,
            _ => 16,
        }
    }

    /// Identifier carried inside handshake msg1.
    pub(crate) fn id(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::Aes128Gcm => 2,
            Cipher::ChaCha20Poly1305 => 3,
            Cipher::None => 4,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Cipher> {
        match id {
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::Aes128Gcm),
            3 => Some(Cipher::ChaCha20Poly1305),
            4 => Some(Cipher::None),
            _ => None,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
