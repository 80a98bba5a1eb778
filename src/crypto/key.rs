//! Long-term keys and what is derived from them.
//!
//! Two ways to configure who may connect (docs/SECURITY.md says why both exist):
//!
//! - **A key per client** (WireGuard's model): the server has an X25519 static key pair and a
//!   list of clients, each with a name and its own static public key; a client has its own
//!   key pair and the server's public key. The handshake is Noise IK, so a client's
//!   credential lets its holder neither impersonate the server (that needs the server's
//!   private key) nor read other clients' traffic, and removing a client from the list
//!   revokes it.
//! - **A shared key** (`transport.kcp.key`, paqet's schema): 64 hex digits are the secret
//!   itself; anything else is a password, stretched with Argon2id salted with the server's
//!   address and port (so a password guess costs one full Argon2 per guess *per server*).
//!   Both static key pairs are derived from the secret, so the same Noise IK handshake runs.
//!   Everyone holding the key can act as any party.
//!
//! From the server's public key (which every client has and strangers do not) come the keys
//! of the cheap checks: [`ServerIdentity::open`] for opening proofs (SYN and msg1) and
//! [`ServerIdentity::id`] for hiding client ids in probes. From the static-static DH of a
//! client and the server comes that client's reset key, which no other client can compute.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::{CryptoRng, TryRngCore};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::prf::{kdf, Prf};

/// Argon2id memory cost in KiB (OWASP's 19 MiB recommendation).
const ARGON2_M_KIB: u32 = 19_456;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;
/// Salt prefix of password stretching; the server's `ip:port` follows.
const ARGON2_SALT: &str = "rawtun v2 password salt ";

/// A key string or key material cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key string is empty.
    #[error("key is empty; generate one with `rawtun secret` or `rawtun keygen`")]
    Empty,
    /// Not 64 hex digits where a raw key is required.
    #[error("not a key: expected 64 hex digits (from `rawtun keygen`)")]
    NotHex,
    /// The private key gives an unusable public key (all zero).
    #[error("not a usable X25519 key")]
    Weak,
    /// Argon2 refused its parameters (cannot happen with the fixed ones).
    #[error("password key derivation failed: {0}")]
    Derive(String),
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// From 64 hex digits.
    pub fn from_hex(s: &str) -> Result<PublicKey, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| KeyError::NotHex)?;
        if out == [0; 32] {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..16])
    }
}

/// An X25519 private key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticSecret([u8; 32]);

impl fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticSecret(<redacted>)")
    }
}

fn x25519() -> Box<dyn snow::types::Dh> {
    DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver implements Curve25519")
}

impl StaticSecret {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> StaticSecret {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        StaticSecret(b)
    }

    /// From 64 hex digits (`identity.private_key`).
    pub fn from_hex(s: &str) -> Result<StaticSecret, KeyError> {
        if s.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| KeyError::NotHex)?;
        let k = StaticSecret(out);
        if k.public().0 == [0; 32] {
            return Err(KeyError::Weak);
        }
        Ok(k)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key (X25519 clamps the scalar, so any 32 bytes work).
    pub fn public(&self) -> PublicKey {
        let mut dh = x25519();
        dh.set(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(dh.pubkey());
        PublicKey(out)
    }

    /// X25519(self, peer); `None` for a low-order peer key (all-zero result).
    pub(crate) fn dh(&self, peer: &PublicKey) -> Option<[u8; 32]> {
        let mut dh = x25519();
        dh.set(&self.0);
        let mut out = [0u8; 32];
        dh.dh(&peer.0, &mut out).ok()?;
        (out != [0; 32]).then_some(out)
    }
}

/// A client's identifier in probes (hidden on the wire): the first 8 bytes of a hash of its
/// static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ClientId(pub [u8; 8]);

impl ClientId {
    pub fn of(public: &PublicKey) -> ClientId {
        let h = kdf(&public.0, "rawtun v2 client id");
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        ClientId(id)
    }
}

/// The PRF keys every party that knows the server's public key shares.
fn open_key(server: &PublicKey) -> Prf {
    Prf::new(&kdf(&server.0, "rawtun v2 open"))
}

fn id_key(server: &PublicKey) -> Prf {
    Prf::new(&kdf(&server.0, "rawtun v2 id"))
}

fn reset_key(ss: &[u8; 32]) -> Prf {
    Prf::new(&kdf(ss, "rawtun v2 reset"))
}

/// One client as the server knows it.
#[derive(Clone, Debug)]
pub struct ClientEntry {
    /// The configured name (`shared` for the shared key).
    pub name: Arc<str>,
    pub public: PublicKey,
    pub(crate) reset: Prf,
}

/// The server's side of one static key: its key pair, the derived check keys and the clients
/// that may use it.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    pub(crate) secret: StaticSecret,
    pub public: PublicKey,
    pub(crate) psk: [u8; 32],
    pub(crate) open: Prf,
    pub(crate) id: Prf,
    pub(crate) clients: HashMap<ClientId, ClientEntry>,
}

impl ServerIdentity {
    /// A server key with the given clients. Clients whose public key gives no usable shared
    /// secret with ours (low-order points) are skipped and named in the error list.
    pub fn new(
        secret: StaticSecret,
        clients: &[(String, PublicKey)],
    ) -> (ServerIdentity, Vec<String>) {
        let public = secret.public();
        let psk = kdf(&public.0, "rawtun v2 psk");
        Self::with_psk(secret, public, psk, clients)
    }

    fn with_psk(
        secret: StaticSecret,
        public: PublicKey,
        psk: [u8; 32],
        clients: &[(String, PublicKey)],
    ) -> (ServerIdentity, Vec<String>) {
        let mut map = HashMap::new();
        let mut bad = Vec::new();
        for (name, pk) in clients {
            match secret.dh(pk) {
                Some(ss) => {
                    map.insert(
                        ClientId::of(pk),
                        ClientEntry {
                            name: Arc::from(name.as_str()),
                            public: *pk,
                            reset: reset_key(&ss),
                        },
                    );
                }
                None => bad.push(name.clone()),
            }
        }
        let identity = ServerIdentity {
            open: open_key(&public),
            id: id_key(&public),
            secret,
            public,
            psk,
            clients: map,
        };
        (identity, bad)
    }

    /// The client with this static key, if it is allowed.
    pub fn client(&self, public: &PublicKey) -> Option<&ClientEntry> {
        self.clients
            .get(&ClientId::of(public))
            .filter(|c| c.public == *public)
    }

    pub fn client_by_id(&self, id: &ClientId) -> Option<&ClientEntry> {
        self.clients.get(id)
    }

    pub fn clients(&self) -> impl Iterator<Item = &ClientEntry> {
        self.clients.values()
    }
}

/// A client's credentials: its key pair, the server's public key and what derives from them.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub(crate) secret: StaticSecret,
    pub public: PublicKey,
    pub server: PublicKey,
    pub(crate) psk: [u8; 32],
    pub(crate) open: Prf,
    pub(crate) id: Prf,
    pub(crate) client_id: ClientId,
    pub(crate) reset: Prf,
}

impl ClientIdentity {
    /// Credentials from this client's private key and the server's public key.
    pub fn new(secret: StaticSecret, server: PublicKey) -> Result<ClientIdentity, KeyError> {
        let psk = kdf(&server.0, "rawtun v2 psk");
        Self::with_psk(secret, server, psk)
    }

    fn with_psk(
        secret: StaticSecret,
        server: PublicKey,
        psk: [u8; 32],
    ) -> Result<ClientIdentity, KeyError> {
        let ss = secret.dh(&server).ok_or(KeyError::Weak)?;
        let public = secret.public();
        Ok(ClientIdentity {
            open: open_key(&server),
            id: id_key(&server),
            client_id: ClientId::of(&public),
            reset: reset_key(&ss),
            secret,
            public,
            server,
            psk,
        })
    }
}

/// True for key strings that are passwords (anything but 64 hex digits).
pub fn is_password(key: &str) -> bool {
    !(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The secret behind `transport.kcp.key`. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey([u8; 32]);

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

/// The client name sessions of the shared key carry.
pub const SHARED_CLIENT: &str = "shared";

impl SharedKey {
    /// Exactly 64 hex digits are the key itself; any other non-empty string is a password
    /// stretched with Argon2id (m = 19456 KiB, t = 2, p = 1) salted with `server` (the
    /// address and port clients dial), which takes tens of milliseconds: call at config load.
    pub fn from_key(key: &str, server: SocketAddr) -> Result<SharedKey, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut out = [0u8; 32];
        if !is_password(key) {
            hex::decode_to_slice(key, &mut out).map_err(|_| KeyError::NotHex)?;
            return Ok(SharedKey(out));
        }
        let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(out.len()))
            .map_err(|e| KeyError::Derive(e.to_string()))?;
        let salt = format!("{ARGON2_SALT}{server}");
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(key.as_bytes(), salt.as_bytes(), &mut out)
            .map_err(|e| KeyError::Derive(e.to_string()))?;
        Ok(SharedKey(out))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SharedKey {
        SharedKey(bytes)
    }

    fn server_secret(&self) -> StaticSecret {
        StaticSecret(kdf(&self.0, "rawtun v2 shared server static"))
    }

    fn client_secret(&self) -> StaticSecret {
        StaticSecret(kdf(&self.0, "rawtun v2 shared client static"))
    }

    fn psk(&self) -> [u8; 32] {
        kdf(&self.0, "rawtun v2 shared psk")
    }

    /// The server's side: one client named [`SHARED_CLIENT`].
    pub fn server_identity(&self) -> ServerIdentity {
        let secret = self.server_secret();
        let public = secret.public();
        let client = (SHARED_CLIENT.to_string(), self.client_secret().public());
        ServerIdentity::with_psk(secret, public, self.psk(), &[client]).0
    }

    /// The client's side.
    pub fn client_identity(&self) -> ClientIdentity {
        let secret = self.server_secret();
        // Derived keys are never low-order points (probability 2^-250), so DH works.
        ClientIdentity::with_psk(self.client_secret(), secret.public(), self.psk())
            .expect("derived X25519 keys give a shared secret")
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
