//! The keyed functions behind the cheap checks a server runs before it keeps any state or
//! does any public-key work, and the key derivation that feeds them.
//!
//! - [`Prf`]: keyed BLAKE2s (RFC 7693 §2.9 keyed mode) with a 16-byte output, the MAC that
//!   WireGuard uses for its `mac1`. One compression for inputs up to 64 bytes; the keyed
//!   initial state is computed once per key and cloned per call.
//! - [`kdf`]: HKDF-SHA256 (RFC 5869) from a secret and a label to a 32-byte key.
//! - [`Binding`]: the addresses and ports a proof is bound to, encoded for MAC input.
//!
//! Every label starts with `rawtun v2 `: the version of the wire format is part of every
//! key and MAC, so a later version's packets never verify under this one's keys.

use std::net::{IpAddr, SocketAddr};

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac;
use ring::hkdf;

/// Output bytes of [`Prf::compute`].
pub const PRF_LEN: usize = 16;

/// A keyed BLAKE2s-128 MAC with the key schedule done once.
#[derive(Clone)]
pub struct Prf(Blake2sMac<U16>);

impl std::fmt::Debug for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prf(<key>)")
    }
}

impl Prf {
    pub fn new(key: &[u8; 32]) -> Prf {
        // A 32-byte key is within BLAKE2s's 1..=32 key-length range, so this cannot fail.
        let mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(key)
            .expect("32-byte keys are valid BLAKE2s keys");
        Prf(mac)
    }

    /// MAC of the concatenation of `parts`.
    pub fn compute(&self, parts: &[&[u8]]) -> [u8; PRF_LEN] {
        let mut mac = self.0.clone();
        for p in parts {
            Mac::update(&mut mac, p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The first 4 bytes of [`Prf::compute`] as a big-endian integer.
    pub fn u32(&self, parts: &[&[u8]]) -> u32 {
        let out = self.compute(parts);
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    /// The first 8 bytes of [`Prf::compute`] as a big-endian integer.
    pub fn u64(&self, parts: &[&[u8]]) -> u64 {
        let out = self.compute(parts);
        let mut b = [0u8; 8];
        b.copy_from_slice(&out[..8]);
        u64::from_be_bytes(b)
    }
}

/// HKDF output length as a ring `KeyType`.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256 of `secret` with the info `label` (no salt): a 32-byte key.
pub fn kdf(secret: &[u8], label: &str) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(secret);
    let mut out = [0u8; 32];
    let info = [label.as_bytes()];
    // 32 bytes is far below HKDF-SHA256's 255 × 32 limit, so neither step can fail.
    prk.expand(&info, Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 can expand 32 bytes");
    out
}

/// Constant-time equality of two byte strings of the same length (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a proof is bound to, as MAC input: a kind byte and the addresses and ports.
///
/// ```text
/// kind 0: nothing (an opening from behind NAT: its source address is not known to it)
/// kind 4: client IPv4 (4) client port (2)                       (openings)
/// kind 6: client IPv6 (16) client port (2)                      (openings)
/// kind 5/7: as the server saw the flow: client IP, client port, server IP, server port
///           (IPv4 / IPv6), learned by the client from msg2      (probes and resets)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Binding {
    len: u8,
    bytes: [u8; 37],
}

impl Binding {
    /// Bound to nothing.
    pub const NONE: Binding = Binding {
        len: 1,
        bytes: [0; 37],
    };

    /// Bound to the client's source address and port.
    pub fn source(client: SocketAddr) -> Binding {
        let mut b = Binding {
            len: 0,
            bytes: [0; 37],
        };
        b.push(if client.is_ipv4() { 4 } else { 6 });
        b.push_addr(client);
        b
    }

    /// Bound to the whole flow as the server sees it.
    pub fn flow(client: SocketAddr, server: SocketAddr) -> Binding {
        let mut b = Binding {
            len: 0,
            bytes: [0; 37],
        };
        b.push(if client.is_ipv4() { 5 } else { 7 });
        b.push_addr(client);
        b.push_addr(server);
        b
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(usize::from(self.len)) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn push_addr(&mut self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(v4) => v4.octets().iter().for_each(|&o| self.push(o)),
            IpAddr::V6(v6) => v6.octets().iter().for_each(|&o| self.push(o)),
        }
        a.port().to_be_bytes().iter().for_each(|&o| self.push(o));
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Decodes a flow binding as written by [`Binding::encode_flow`] (in msg2); `None` when
    /// malformed.
    pub fn decode_flow(bytes: &[u8]) -> Option<(Binding, usize)> {
        let (&kind, rest) = bytes.split_first()?;
        let ip_len = match kind {
            5 => 4,
            7 => 16,
            _ => return None,
        };
        let len = 1 + 2 * (ip_len + 2);
        rest.get(..len - 1)?;
        let mut b = Binding {
            len: 0,
            bytes: [0; 37],
        };
        for &byte in &bytes[..len] {
            b.push(byte);
        }
        Some((b, len))
    }

    /// The bytes of a flow binding, for msg2.
    pub fn encode_flow(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_is_keyed_and_sees_every_byte() {
        let a = Prf::new(&[1; 32]);
        let b = Prf::new(&[2; 32]);
        assert_ne!(a.compute(&[b"x"]), b.compute(&[b"x"]));
        assert_eq!(a.compute(&[b"ab", b"c"]), a.compute(&[b"a", b"bc"]));
        assert_ne!(a.compute(&[b"abc"]), a.compute(&[b"abd"]));
        assert_eq!(a.u32(&[b"q"]).to_be_bytes(), a.compute(&[b"q"])[..4]);
    }

    /// RFC 7693 Appendix A's keyed test vector style: BLAKE2s-128 with a key, checked
    /// against the `blake2` crate's own unkeyed-vs-keyed difference (no published vector
    /// exists for 16-byte output), so this pins that the key is used as the MAC key.
    #[test]
    fn prf_matches_blake2s_keyed_mode() {
        let key = [0x0f; 32];
        let mut direct = <Blake2sMac<U16> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut direct, b"rawtun");
        let want: [u8; 16] = direct.finalize().into_bytes().into();
        assert_eq!(Prf::new(&key).compute(&[b"raw", b"tun"]), want);
    }

    #[test]
    fn kdf_separates_labels_and_secrets() {
        assert_ne!(kdf(b"s", "a"), kdf(b"s", "b"));
        assert_ne!(kdf(b"s", "a"), kdf(b"t", "a"));
        assert_eq!(kdf(b"s", "a"), kdf(b"s", "a"));
    }

    #[test]
    fn bindings_encode_addresses_and_round_trip() {
        let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let s: SocketAddr = "198.18.0.2:9999".parse().unwrap();
        assert_eq!(Binding::NONE.as_bytes(), &[0]);
        assert_eq!(
            Binding::source(c).as_bytes(),
            &[4, 198, 18, 0, 1, 0x9c, 0x40]
        );
        let f = Binding::flow(c, s);
        assert_eq!(f.as_bytes().len(), 13);
        let mut enc = Vec::new();
        f.encode_flow(&mut enc);
        enc.push(0xee);
        assert_eq!(Binding::decode_flow(&enc), Some((f, 13)));
        assert_eq!(Binding::decode_flow(&enc[..12]), None);
        let c6: SocketAddr = "[2001:2::1]:40000".parse().unwrap();
        let s6: SocketAddr = "[2001:2::2]:9999".parse().unwrap();
        let f6 = Binding::flow(c6, s6);
        assert_eq!(f6.as_bytes().len(), 37);
        let mut enc = Vec::new();
        f6.encode_flow(&mut enc);
        assert_eq!(Binding::decode_flow(&enc), Some((f6, 37)));
        assert_eq!(Binding::decode_flow(&[9, 1, 2]), None);
        assert_eq!(Binding::decode_flow(&[]), None);
    }

    #[test]
    fn ct_eq_compares_whole_strings() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
