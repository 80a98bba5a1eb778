//! Sans-IO composition of the protocol layers for one peer flow, and the server's table of
//! flows.
//!
//! A [`Connection`] is one fake-TCP flow ([`crate::faketcp::Flow`]) carrying one session:
//! a Noise handshake ([`crate::crypto`]), then AEAD-sealed packets whose plaintext holds KCP
//! packets ([`crate::kcp`]) that carry a byte stream multiplexed into streams
//! ([`crate::mux`]). A [`Listener`] is the server side: it owns the connections of every
//! client that talks to the server's port and creates one when a client opens a flow.
//!
//! Like quinn-proto's `Connection`, these types never read the clock or touch a socket. Drive
//! them in this order, repeatedly:
//!
//! 1. [`Connection::handle_frame`] / [`Listener::handle_frame`] for each captured frame;
//! 2. the stream calls (`open_stream`, `stream_write`, ...) for application input;
//! 3. [`Connection::poll_transmit`] until it returns `None`, sending each frame;
//! 4. [`Connection::poll_event`] until `None`, acting on each event;
//! 5. [`Connection::handle_timeout`] once `now` reaches [`Connection::poll_timeout`].
//!
//! Sealed-packet plaintext, once the handshake is done (the whole thing is encrypted, so the
//! kind byte is not visible on the wire):
//!
//! ```text
//!  0        1
//! +--------+------------------------------+
//! |  kind  |  body (KCP packet, ...)       |
//! +--------+------------------------------+
//! kind 0x01: body is one KCP packet
//! kind 0x02: body is one datagram ([`crate::tunnel`] datagram header + UDP payload)
//! ```
//!
//! Datagrams are never retransmitted or reordered by rawtun: a lost one stays lost (the
//! replay window drops duplicates the path made). They are queued apart from the stream
//! bytes and leave ahead of KCP packets, so a full KCP send window never delays them.

mod connection;
mod listener;

pub use connection::{
    CloseReason, ConnConfig, ConnEvent, ConnStats, Connection, DatagramError, Phase, MAX_FRAME,
};
pub use listener::{Listener, ListenerEvent, ListenerStats};
