//! Tunnel cryptography: the Noise handshake with the pre-shared key, per-packet AEAD with
//! counter nonces and header-protected counters, the anti-replay window, and turning the
//! configured `transport.kcp.block` / `transport.kcp.key` strings into a [`Cipher`] and a
//! [`Psk`].
//!
//! Sans-IO: nothing here reads a clock, sleeps or does I/O. The only randomness is the Noise
//! ephemeral key, the handshake padding and [`generate_secret`], all from the OS RNG.
//!
//! Flow: the client calls [`Initiator::start`] (msg1), the server calls [`respond`] (msg2), the
//! client calls [`Initiator::finish`]; both sides now hold a [`SessionCrypto`] whose
//! [`Sealer`] and [`Opener`] protect data packets. See [`handshake`] for the handshake
//! messages and [`packet`] for the data-packet layout.

mod cipher;
pub mod handshake;
mod key;
pub mod packet;
mod replay;
pub mod reset;

pub use cipher::{Cipher, CipherError};
pub use handshake::{respond, HandshakeError, Initiator, SessionCrypto, MAX_PAYLOAD};
pub use key::{generate_secret, KeyError, Psk};
pub use packet::{OpenError, Opener, OpenerStats, SealError, Sealer, HEADER_LEN, MAX_PACKETS};
pub use replay::{ReplayWindow, REPLAY_WINDOW};

#[cfg(test)]
mod tests;
