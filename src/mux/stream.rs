//! Per-stream state of the mux: send buffer, flow-control counters, half-close flags.

use crate::ring::ByteRing;

/// The window a sender assumes before the receiver's first WINDOW frame arrives.
pub const INITIAL_WINDOW: u32 = 64 * 1024;

/// One stream as seen by one side.
#[derive(Debug)]
pub(super) struct Stream {
    /// Bytes written by the application and not yet framed.
    pub send_buf: ByteRing,
    /// The application called `finish`.
    pub fin_requested: bool,
    /// Our FIN has been framed.
    pub fin_sent: bool,
    /// Total DATA bytes framed (mod 2^32).
    pub sent: u32,
    /// The peer's last reported `consumed`.
    pub peer_consumed: u32,
    /// The peer's last reported window.
    pub peer_window: u32,
    /// The id is queued in the scheduler's round-robin list.
    pub in_active: bool,
    /// Total DATA bytes received.
    pub received: u64,
    /// Bytes the application reported consumed.
    pub consumed: u64,
    /// `consumed` as of our last WINDOW frame.
    pub advertised: u64,
    /// A WINDOW frame for this stream is queued.
    pub window_pending: bool,
    /// The peer sent FIN.
    pub remote_fin: bool,
}

impl Stream {
    pub fn new() -> Self {
        Stream {
            send_buf: ByteRing::default(),
            fin_requested: false,
            fin_sent: false,
            sent: 0,
            peer_consumed: 0,
            peer_window: INITIAL_WINDOW,
            in_active: false,
            received: 0,
            consumed: 0,
            advertised: 0,
            window_pending: false,
            remote_fin: false,
        }
    }

    /// Bytes framed that the peer has not reported consumed.
    pub fn outstanding(&self) -> u32 {
        self.sent.wrapping_sub(self.peer_consumed)
    }

    /// DATA bytes the peer's window still allows.
    pub fn send_credit(&self) -> u32 {
        self.peer_window.saturating_sub(self.outstanding())
    }

    /// A FIN is due: requested, not sent, and no data left in front of it.
    pub fn fin_due(&self) -> bool {
        self.fin_requested && !self.fin_sent && self.send_buf.is_empty()
    }

    /// Both directions are finished and nothing is left to send.
    pub fn is_done(&self) -> bool {
        self.fin_sent && self.remote_fin && self.send_buf.is_empty()
    }
}
