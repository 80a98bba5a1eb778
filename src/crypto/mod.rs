//! Tunnel cryptography: long-term keys (a key per client, or a shared key), the cheap proofs
//! a server checks before it keeps state or answers (SYN proof, msg1 mac1, probe), the Noise
//! IK handshake, per-packet AEAD with counter nonces, header-protected counters and key
//! phases, the anti-replay window, and the freshness state that refuses replayed openings.
//!
//! Sans-IO: nothing here reads a clock, sleeps or does I/O. Time (Unix milliseconds) and
//! randomness are inputs: every function that needs random bytes takes the caller's
//! generator, so a simulation is reproducible from its seed. Only [`generate_secret`] (for
//! `rawtun secret`) reads the OS generator itself.
//!
//! Flow: the client calls [`Initiator::start`] (msg1); the server runs [`check_msg1`] (no
//! public-key work), its freshness checks, then [`respond`] (msg2); the client calls
//! [`Initiator::finish`]; both sides now hold a [`SessionCrypto`] whose [`Sealer`] and
//! [`Opener`] protect data packets. See [`handshake`] for the messages, [`proof`] for the
//! SYN proof, probe and reset, [`packet`] for the data-packet layout, and docs/SECURITY.md
//! for the threat model.

mod cipher;
pub mod freshness;
pub mod handshake;
mod key;
pub mod packet;
pub mod prf;
pub mod proof;
mod replay;

pub use cipher::{Cipher, CipherError};
pub use freshness::{SeenSet, CLOCK_SKEW_MS};
pub use handshake::{
    check_msg1, msg1_ephemeral, respond, Accepted, HandshakeError, Initiator, Msg1Check,
    SessionCrypto, MAX_PAYLOAD, VERSION,
};
pub use key::{
    generate_secret, is_password, ClientEntry, ClientId, ClientIdentity, KeyError, PublicKey,
    ServerIdentity, SharedKey, StaticSecret, SHARED_CLIENT,
};
pub use packet::{
    OpenError, Opener, OpenerStats, SealError, Sealer, DEFAULT_PHASE_LEN, HEADER_LEN, MAX_PACKETS,
};
pub use prf::Binding;
pub use replay::{ReplayWindow, REPLAY_WINDOW};

#[cfg(test)]
mod tests;
