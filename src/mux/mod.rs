//! The stream multiplexer: many streams over one reliable byte stream (a KCP session).
//!
//! smux-like framing (see [`frame`] for the byte layout): OPEN carries the tunnel open
//! header, DATA the bytes, FIN half-closes, RST aborts, WINDOW returns flow-control credit,
//! PING/PONG keep the session alive and measure RTT.
//!
//! # Driving a [`Mux`]
//!
//! One owner drives it, sans-IO; it holds no lock and reads no clock:
//! - bytes from the reliable layer go to [`Mux::handle_bytes`] (frames may be split anywhere);
//! - [`Mux::poll_event`] yields what the peer did ([`MuxEvent`]);
//! - while [`Mux::has_output`], [`Mux::poll_output`] appends frames, at most `max` bytes
//!   (pass the reliable layer's free send capacity);
//! - [`Mux::handle_timeout`] when [`Mux::poll_timeout`] has passed; drop the session once
//!   [`Mux::is_dead`].
//!
//! # Flow control
//!
//! Each direction of each stream has a window: the sender may have at most `window` bytes
//! that the receiving application has not consumed. Credit returns only when the application
//! calls [`Mux::consumed`] (after it really wrote the bytes out), in a WINDOW frame once a
//! quarter of the window has been consumed, so a slow consumer stops the peer. A sender
//! assumes [`INITIAL_WINDOW`] until the first WINDOW frame; both sides send one when a
//! stream opens. `session_window` caps the bytes outstanding over all streams of this
//! sender, and the receiver enforces the same figure (its own `session_window`) on the sum
//! of the bytes it has handed out and the application has not consumed: a peer exceeding a
//! stream's window, or pushing the session past its receive bound, gets that stream reset
//! ([`MuxEvent::Exceeded`] says which bound). A sender whose `session_window` is at most
//! the receiver's never trips it: every byte the receiver holds unconsumed is outstanding
//! at the sender too.
//!
//! # Bounds on what a peer can make this side hold
//!
//! - bytes received and not consumed: `session_window` over all streams, `stream_window`
//!   (or [`INITIAL_WINDOW`] before it is advertised) per stream;
//! - streams: an OPEN beyond `max_streams` open streams is refused with an RST
//!   ([`MuxEvent::Exceeded`] with [`Bound::Streams`]) and never reaches the application;
//! - frames queued in reply: PONGs are capped, and a peer whose refused opens leave more
//!   than `16 × max_streams` RSTs unsent (it opens far faster than it reads) breaks the
//!   session.
//!
//! # Fairness
//!
//! Control frames (OPEN, WINDOW, RST, PING, PONG) leave first; then streams with data are
//! served round-robin, at most [`CHUNK`] bytes per turn, so a bulk stream cannot starve the
//! others. A stream's FIN follows its last DATA.

mod arena;
pub mod frame;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use arena::Arena;
pub use frame::{Frame, FrameError, MAX_OPEN_PAYLOAD};
pub use stream::INITIAL_WINDOW;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stream::Stream;

/// A stream id: odd when the client opened it, even when the server did.
pub type StreamId = u32;

/// Largest DATA payload per scheduling turn.
pub const CHUNK: usize = 16 * 1024;
/// PONGs queued beyond this are dropped (a peer flooding PINGs gets no more).
const MAX_PENDING_PONGS: usize = 16;

/// Mux tuning.
#[derive(Clone, Debug)]
pub struct MuxConfig {
    /// Per-stream receive window in bytes (what this side advertises).
    pub stream_window: u32,
    /// Cap on bytes this side has outstanding over all streams.
    pub session_window: u32,
    /// A PING is sent after this much send-idleness.
    pub keepalive: Duration,
    /// The session is dead after this long without receiving anything.
    pub idle_timeout: Duration,
    /// Streams open at once; an OPEN from the peer beyond it is refused with an RST.
    pub max_streams: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            stream_window: 2 * 1024 * 1024,
            session_window: 8 * 1024 * 1024,
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams: 1024,
        }
    }
}

/// What the peer did.
#[derive(Debug, PartialEq, Eq)]
pub enum MuxEvent {
    /// The peer opened a stream.
    Opened {
        /// Its id.
        id: StreamId,
        /// The OPEN payload.
        payload: Vec<u8>,
    },
    /// Stream bytes; report them with [`Mux::consumed`] once written out.
    Data {
        /// Stream id.
        id: StreamId,
        /// The bytes: a piece of the session's receive arena (no allocation of its own),
        /// which holds its block until dropped, so drop it once copied or written out.
        data: Bytes,
    },
    /// The peer will send no more data on the stream.
    Finished {
        /// Stream id.
        id: StreamId,
    },
    /// The stream was aborted (by the peer, or by this side for a window violation).
    Reset {
        /// Stream id.
        id: StreamId,
    },
    /// `bytes` of the stream left the send buffer in frames: release that much credit to
    /// the producer.
    Sent {
        /// Stream id.
        id: StreamId,
        /// Bytes framed.
        bytes: usize,
    },
    /// Answer to our PING.
    Pong {
        /// Round-trip time through the whole stack.
        rtt: Duration,
    },
    /// The peer exceeded a receive bound on stream `id`: an OPEN beyond `max_streams` was
    /// refused (the application never saw the stream), or the stream was reset for its
    /// window or the session's receive bound (a [`MuxEvent::Reset`] follows). For counting.
    Exceeded {
        /// Stream id.
        id: StreamId,
        /// Which bound.
        bound: Bound,
    },
}

/// A bound a peer exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// More open streams than `max_streams`.
    Streams,
    /// More unconsumed bytes on one stream than its window.
    StreamWindow,
    /// More unconsumed bytes over all streams than `session_window`.
    SessionWindow,
}

/// Protocol violations that end the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A malformed frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// OPEN with our parity, or an id not above the peer's previous ones.
    #[error("peer opened stream {0} with a wrong or reused id")]
    BadOpen(StreamId),
    /// DATA or FIN for a stream that was never opened.
    #[error("frame for stream {0}, which was never opened")]
    Unopened(StreamId),
    /// The peer keeps opening streams beyond the limit and does not read the RSTs.
    #[error("peer opens streams beyond the limit faster than it reads the refusals")]
    OpenFlood,
}

/// Errors of the mux API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// The peer broke the protocol; the session is unusable.
    #[error("mux protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// No such stream (never opened, or already closed or reset).
    #[error("stream {0} is unknown or closed")]
    UnknownStream(StreamId),
    /// `write` after `finish`.
    #[error("stream {0} is finished")]
    Finished(StreamId),
    /// OPEN payload over [`MAX_OPEN_PAYLOAD`].
    #[error("open payload of {0} bytes exceeds {MAX_OPEN_PAYLOAD}")]
    PayloadTooLarge(usize),
    /// All stream ids of this side are used.
    #[error("stream ids exhausted")]
    IdsExhausted,
}

/// Counters of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Streams open now.
    pub streams: usize,
    /// Streams opened by this side.
    pub opened_local: u64,
    /// Streams opened by the peer.
    pub opened_remote: u64,
    /// Frames emitted.
    pub frames_sent: u64,
    /// Frames decoded.
    pub frames_received: u64,
    /// DATA payload bytes emitted.
    pub bytes_sent: u64,
    /// DATA payload bytes received.
    pub bytes_received: u64,
    /// RST frames emitted.
    pub resets_sent: u64,
    /// RST frames received for live streams.
    pub resets_received: u64,
    /// Streams reset because the peer broke flow control or sent after FIN.
    pub violations: u64,
    /// OPENs refused because `max_streams` streams were open.
    pub refused_opens: u64,
    /// Frames for closed streams, ignored.
    pub ignored_frames: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// Last PING round trip.
    pub last_rtt: Option<Duration>,
    /// Bytes outstanding over all streams (sender side).
    pub session_outstanding: u64,
    /// Bytes received and handed out but not consumed, over all streams (receiver side).
    pub session_unconsumed: u64,
}

/// Frames waiting in front of all data.
#[derive(Debug)]
enum Control {
    Open(StreamId, Vec<u8>),
    Window(StreamId),
    Rst(StreamId),
    Ping(u64),
    Pong(u64),
}

/// Outcome of one scheduling turn of a stream.
enum Turn {
    /// The stream is gone.
    Gone,
    /// Wrote bytes; `more` if the stream still has something to send.
    Wrote { bytes: usize, more: bool },
    /// Its window is closed: leave the round-robin until a WINDOW frame arrives.
    Blocked,
    /// The session window is closed: stay in the list.
    SessionBlocked,
    /// `max` reached: stop.
    Full,
}

/// One mux session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Mux {
    cfg: MuxConfig,
    is_client: bool,
    origin: Instant,
    next_id: u64,
    max_peer_id: StreamId,
    streams: HashMap<StreamId, Stream>,
    control: VecDeque<Control>,
    pending_pongs: usize,
    active: VecDeque<StreamId>,
    events: VecDeque<MuxEvent>,
    rx: Vec<u8>,
    /// Where received DATA payloads are copied to be handed out.
    arena: Arena,
    session_outstanding: u64,
    /// Receiver side: bytes handed out in [`MuxEvent::Data`] and not yet consumed, over all
    /// live streams (bounded by `session_window`).
    session_unconsumed: u64,
    /// RST frames queued and not yet emitted.
    pending_rsts: usize,
    /// Bytes the application consumed that no WINDOW frame has reported yet, over all
    /// streams. Flushed at a quarter of `session_window`, so a peer capped by its session
    /// window is never left waiting on per-stream thresholds no stream reaches.
    unadvertised: u64,
    last_recv: Instant,
    next_ping: Instant,
    ping_outstanding: Option<u64>,
    failed: Option<ProtocolError>,
    stats: MuxStats,
}

mod schedule;
mod session;
