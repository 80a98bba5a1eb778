//! rawtun: a raw-packet tunnel.
//!
//! TCP (and later UDP) traffic is carried between a client and a server inside TCP-shaped
//! packets that rawtun builds and captures itself, so the kernel's TCP stack and connection
//! tracking never see a connection. The layers, bottom up:
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | Ethernet / IPv4 / IPv6 / TCP parse and emit, checksums |
//! | [`faketcp`] | per-flow TCP shape: ISN, seq/ack, timestamps, flags, handshake |
//! | [`crypto`] | Noise handshake, per-packet AEAD, header protection, replay window |
//! | [`kcp`] | KCP sessions (reliability, retransmission) |
//! | [`mux`] | streams over one KCP session, flow control, keepalive |
//! | [`tunnel`] | the stream open header and the connect result |
//! | [`endpoint`] | sans-IO composition of the above for one peer flow |
//! | [`io`] | packet I/O backends (pcap, in-memory) |
//! | [`linkemu`] | sans-IO WAN link model (delay, loss, bursts, rate, blackouts) for `rawtun-linkemu` |
//! | [`proxy`] | SOCKS5, HTTP CONNECT and forwards (client); target dialing (server) |
//! | [`sys`] | interface/address helpers, namespaces, privileges |
//! | [`config`] | YAML → validated configuration (paqet-compatible) |
//! | [`daemon`] | threads, runtime, orchestration: the only place that reads the clock |
//!
//! Everything from `wire` to `endpoint` is sans-IO: it takes bytes and a `now` and hands
//! back bytes and deadlines, which is what lets the tests run the whole protocol stack over
//! a seeded lossy network in virtual time.

pub mod config;
pub mod crypto;
pub mod daemon;
pub mod endpoint;
pub mod faketcp;
pub mod io;
pub mod kcp;
pub mod linkemu;
pub mod mux;
pub mod proxy;
pub(crate) mod ring;
pub mod sys;
pub mod tunnel;
pub mod wire;
