//! Sans-IO composition of the protocol layers for one peer flow, and the server's table of
//! flows behind its gate.
//!
//! A [`Connection`] is one fake-TCP flow ([`crate::faketcp::Flow`]) carrying one session:
//! a Noise IK handshake ([`crate::crypto`]), then AEAD-sealed packets whose plaintext holds
//! KCP packets ([`crate::kcp`]) that carry a byte stream multiplexed into streams
//! ([`crate::mux`]), or datagrams. A [`Listener`] is the server side: it owns the
//! connections of every client that talks to the server's port, creates one only when an
//! opening proves a key ([`Gate`]), and answers nothing else — except a valid probe for a
//! session it lost, with a reset. docs/SECURITY.md gives the threat model.
//!
//! Like quinn-proto's `Connection`, these types never read the clock, touch a socket or
//! read the OS random generator: `now`, a [`WallClock`] (for the Unix time that proofs
//! carry) and random seeds are inputs. Drive them in this order, repeatedly:
//!
//! 1. [`Connection::handle_frame`] / [`Listener::handle_frame`] for each captured frame;
//! 2. the stream calls (`open_stream`, `stream_write`, ...) for application input;
//! 3. [`Listener::poll_transmit`] (server), then [`Connection::poll_transmit`] until it
//!    returns `None`, sending each frame;
//! 4. [`Connection::poll_event`] / [`Listener::poll_events`] until empty, acting on each;
//! 5. [`Connection::handle_timeout`] / [`Listener::handle_timeout`] once `now` reaches
//!    their `poll_timeout`.
//!
//! Datagrams are never retransmitted or reordered by rawtun: a lost one stays lost (the
//! replay window drops duplicates the path made). They are queued apart from the stream
//! bytes and leave ahead of KCP packets, so a full KCP send window never delays them.
//! Session plaintext kinds are drawn in [`session`].

mod client;
mod connection;
mod gate;
mod listener;
mod server;
pub mod session;
mod stats;

pub use connection::{
    test_config, ClientInfo, CloseReason, ConnConfig, ConnEvent, Connection, DatagramError, Phase,
    WallClock, MAX_FRAME,
};
pub use gate::{Gate, GateConfig, GateShared, Opening};
pub use listener::{Listener, ListenerEvent, ListenerStats};
pub use session::CloseNotice;
pub use stats::{ConnStats, ConnTotals, DropStats};
