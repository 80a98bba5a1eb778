//! KCP sessions: the reliability layer under the mux, sans-IO.
//!
//! A [`KcpSession`] is one KCP conversation in stream mode (a reliable, ordered byte stream
//! cut into segments of at most `mtu - 24` bytes). It is driven like quinn-proto:
//!
//! 1. [`KcpSession::handle_input`] with every KCP packet from the peer,
//! 2. [`KcpSession::send`] / [`KcpSession::recv`] for the byte stream,
//! 3. [`KcpSession::flush`] after `send` (unless `wdelay`) and after `handle_input`,
//! 4. [`KcpSession::poll_transmit`] until `None`: each call writes one packet into the
//!    caller's buffer (the crypto layer's, at the payload offset, so it is sealed in place),
//! 5. [`KcpSession::handle_timeout`] when [`KcpSession::poll_timeout`] has passed.
//!
//! Time is an [`Instant`] passed in; KCP's wire timestamps are milliseconds since an origin
//! fixed at construction, truncated to `u32` (RTT samples use wrapping arithmetic, so the
//! 49-day wrap is harmless).
//!
//! # Why not the `kcp` crate
//!
//! The segment format and the algorithm (RTO estimation, fast resend, window probing,
//! KCP's congestion control, `nodelay` backoff) follow skywind3000's KCP, but this is a
//! fresh implementation rather than a wrapper around the `kcp` crate 0.6, because that crate:
//! - panics in debug builds on peer-controlled values: `timediff` is `a as i32 - b as i32`
//!   (overflows for a hostile `ts`, `sn` or `una`), and `update_ack` computes `7 * srtt + rtt`
//!   in `u32` with a peer-chosen `rtt`;
//! - cannot cap the per-segment RTO backoff (a segment's `rto` grows without bound; only the
//!   estimator is capped at 60 s), so after a 20 s outage retransmission can stall for tens
//!   of seconds;
//! - removes acked segments with `VecDeque::remove` after a linear scan (O(window) per ACK)
//!   and returns at most one segment per `recv` call.
//!
//! Here the send buffer is indexed by `sn - snd_una` (O(1) ACKs), all sequence arithmetic
//! wraps, and no peer value can panic.
//!
//! # Buffers
//!
//! No allocation per packet once a session has warmed up: the bytes to send and in flight
//! live in one `ring::ByteRing`; a flush only decides *what* to send (segment headers in
//! a queue) and [`KcpSession::poll_transmit`] packs those segments into the caller's
//! buffer; received segments are copied into buffers recycled through a small pool, and
//! [`KcpSession::recv_with`] lends them to the reader instead of copying them out.
//!
//! # Outages and backoff
//!
//! The dead-link rule of KCP (give up after N retransmissions) is not implemented: liveness
//! is the mux idle timeout's job. A segment's retransmission timeout backs off (×1.5 with
//! `nodelay`, ×2 otherwise) but never beyond `max(rto, BACKOFF_CAP_MS)` = 3 s, and as soon as
//! an ACK shows progress again every backed-off segment returns to the current RTO. After a
//! 20 s outage on a 500 ms path, the first retransmission therefore leaves within 3 s of the
//! link returning and the rest of the window follows one RTO after its ACK.

mod input;
mod output;
mod rate;
mod segment;
#[cfg(test)]
mod tests;

pub use segment::{Command, SegmentHeader, HEADER_LEN};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ring::ByteRing;

/// Minimum RTO with `nodelay`.
const RTO_MIN_NODELAY: u32 = 30;
/// Minimum RTO without `nodelay`.
const RTO_MIN: u32 = 100;
/// RTO before the first sample.
const RTO_INITIAL: u32 = 200;
/// Upper bound of the RTO estimate.
const RTO_MAX: u32 = 60_000;
/// A segment's backed-off RTO never exceeds `max(rto, BACKOFF_CAP_MS)`.
pub const BACKOFF_CAP_MS: u32 = 3_000;
/// First window probe after the peer's window closed.
const PROBE_INIT_MS: u64 = 1_000;
/// Longest interval between window probes.
const PROBE_LIMIT_MS: u64 = 10_000;
/// Fast resend stops once a segment has been sent this many times.
const FASTACK_LIMIT: u32 = 5;
/// RTT samples above this are discarded (stale or forged timestamps).
const RTT_SAMPLE_MAX: u32 = 60_000;
/// Smallest usable MTU.
const MTU_MIN: u16 = 50;
/// Receive buffers kept for reuse at most (a loss burst may need more for a while; those
/// are freed once read).
const RCV_POOL_MAX: usize = 128;

/// KCP tuning, as in paqet/kcptun configuration.
#[derive(Clone, Debug)]
pub struct KcpConfig {
    /// Lower minimum RTO (30 ms) and gentler backoff (×1.5).
    pub nodelay: bool,
    /// Flush timer in ms (clamped to 10..=5000).
    pub interval_ms: u32,
    /// Fast resend after this many later ACKs (0 = off).
    pub resend: u32,
    /// Disable congestion control (windows only).
    pub nocongestion: bool,
    /// Largest KCP packet in bytes (header included).
    pub mtu: u16,
    /// Send window in segments.
    pub sndwnd: u16,
    /// Receive window in segments.
    pub rcvwnd: u16,
    /// The caller batches sends and relies on the timer instead of flushing after `send`.
    pub wdelay: bool,
    /// ACK input at once instead of on the next timer tick.
    pub acknodelay: bool,
    /// Cap data in flight at twice the measured bandwidth-delay product (see `rate.rs`),
    /// so bulk transfers do not build standing queues. On by default.
    pub rate_cap: bool,
}

impl Default for KcpConfig {
    /// paqet's `fast` mode with its default windows.
    fn default() -> Self {
        KcpConfig {
            nodelay: true,
            interval_ms: 20,
            resend: 2,
            nocongestion: true,
            mtu: 1350,
            sndwnd: 1024,
            rcvwnd: 1024,
            wdelay: false,
            acknodelay: true,
            rate_cap: true,
        }
    }
}

/// Errors from [`KcpSession::handle_input`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KcpError {
    /// Fewer bytes than a segment header.
    #[error("KCP segment of {0} bytes is shorter than its 24-byte header")]
    TooShort(usize),
    /// The segment belongs to another conversation.
    #[error("KCP conversation {got:#010x} does not match {expected:#010x}")]
    ConvMismatch {
        /// This session's conversation id.
        expected: u32,
        /// The segment's.
        got: u32,
    },
    /// Unknown `cmd` byte.
    #[error("unknown KCP command {0}")]
    UnknownCommand(u8),
    /// `len` runs past the end of the packet.
    #[error("KCP segment claims {claimed} data bytes but {available} remain")]
    Truncated {
        /// The header's `len`.
        claimed: u32,
        /// Bytes left in the packet.
        available: usize,
    },
}

/// Counters and estimates of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KcpStats {
    /// Smoothed RTT (0 before the first sample).
    pub srtt_ms: u32,
    /// RTT variation.
    pub rttvar_ms: u32,
    /// Current retransmission timeout.
    pub rto_ms: u32,
    /// Congestion window in segments (unused with `nocongestion`).
    pub cwnd: u32,
    /// The peer's last advertised free receive window, in segments.
    pub remote_window: u32,
    /// Segments sent and not yet acknowledged.
    pub in_flight: usize,
    /// KCP's `waitsnd`: in flight plus queued, in segments.
    pub waitsnd: usize,
    /// Bytes queued and not yet cut into segments.
    pub queued_bytes: usize,
    /// Retransmissions after a timeout.
    pub retransmits: u64,
    /// Fast retransmissions (after `resend` later ACKs).
    pub fast_retransmits: u64,
    /// Packets handed out by `poll_transmit`.
    pub packets_sent: u64,
    /// The delivery-rate cap on segments in flight (0: none yet, or disabled).
    pub rate_cap: u64,
    /// Highest delivery rate measured in the last 10 s, segments per second.
    pub delivery_rate: u64,
    /// Minimum RTT the rate cap works with (ms).
    pub min_rtt_ms: u32,
    /// Packets accepted by `handle_input`.
    pub packets_received: u64,
    /// New data segments sent (first transmissions).
    pub segments_sent: u64,
    /// Payload bytes of first transmissions.
    pub bytes_sent: u64,
    /// New data segments received (duplicates excluded).
    pub segments_received: u64,
    /// Payload bytes of new data segments.
    pub bytes_received: u64,
    /// Data segments received more than once or outside the window.
    pub duplicates: u64,
}

/// A data segment in the send buffer: its bytes are `start..start + len` of the send
/// stream, held in the ring until `una` passes the segment.
#[derive(Debug)]
struct InFlight {
    /// Offset of its first byte in the send stream.
    start: u64,
    len: usize,
    /// When it was last sent (ms since origin); its `ts` on the wire.
    sent_at: u64,
    resend_at: u64,
    rto: u32,
    fastack: u32,
    xmit: u32,
    acked: bool,
}

/// One KCP conversation in stream mode. See the module docs for the calling order.
#[derive(Debug)]
pub struct KcpSession {
    conv: u32,
    origin: Instant,
    now_ms: u64,
    mtu: usize,
    mss: usize,
    nodelay: bool,
    interval: u32,
    fast_resend: u32,
    nocwnd: bool,
    acknodelay: bool,
    rate_cap: bool,
    rate: rate::RateCap,
    snd_wnd: u32,
    rcv_wnd: u32,
    rmt_wnd: u32,
    cwnd: u32,
    ssthresh: u32,
    incr: usize,
    srtt: u32,
    rttvar: u32,
    rto: u32,
    min_rto: u32,
    /// Oldest unacknowledged sn; `snd_buf[i]` has sn `snd_una + i`.
    snd_una: u32,
    snd_nxt: u32,
    /// Bytes of the segments in `snd_buf`, then the bytes queued and not yet cut into
    /// segments; `snd_ring[0]` is byte `snd_base` of the send stream.
    snd_ring: ByteRing,
    snd_base: u64,
    /// Stream offset of the first queued byte (the end of the newest segment).
    queued_from: u64,
    snd_buf: VecDeque<InFlight>,
    in_flight_bytes: usize,
    backed_off: bool,
    /// Earliest `resend_at` in the send buffer (may be early, never late).
    next_resend: u64,
    /// Some segment has collected enough duplicate ACKs for a fast resend.
    fastack_due: bool,
    /// Next sn expected; `rcv_buf[i]` holds sn `rcv_nxt + i` if received.
    rcv_nxt: u32,
    rcv_buf: VecDeque<Option<Vec<u8>>>,
    /// In-order segments not yet read; `rcv_read` bytes of the front one are read.
    rcv_queue: VecDeque<Vec<u8>>,
    rcv_read: usize,
    /// Emptied receive buffers, for the next segments.
    rcv_pool: Vec<Vec<u8>>,
    acklist: Vec<(u32, u32)>,
    probe_ask: bool,
    probe_tell: bool,
    probe_wait: u64,
    probe_at: u64,
    next_flush: u64,
    /// Segments a flush decided to send, in order; `true` ends a packet (a flush never
    /// shares a packet with the next). `poll_transmit` packs them into the caller's buffer.
    pending: VecDeque<(SegmentHeader, bool)>,
    stats: KcpStats,
}

/// `a - b` for wrapping sequence numbers and timestamps.
fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl KcpSession {
    /// A session for conversation `conv`; `now` becomes the origin of its clock.
    pub fn new(conv: u32, cfg: &KcpConfig, now: Instant) -> Self {
        let mtu = usize::from(cfg.mtu.max(MTU_MIN));
        let snd_wnd = u32::from(cfg.sndwnd.max(1));
        let rcv_wnd = u32::from(cfg.rcvwnd.max(1));
        KcpSession {
            conv,
            origin: now,
            now_ms: 0,
            mtu,
            mss: mtu - HEADER_LEN,
            nodelay: cfg.nodelay,
            interval: cfg.interval_ms.clamp(10, 5000),
            fast_resend: cfg.resend,
            nocwnd: cfg.nocongestion,
            acknodelay: cfg.acknodelay,
            rate_cap: cfg.rate_cap,
            rate: rate::RateCap::default(),
            snd_wnd,
            rcv_wnd,
            rmt_wnd: rcv_wnd,
            cwnd: 1,
            ssthresh: 2,
            incr: 0,
            srtt: 0,
            rttvar: 0,
            rto: RTO_INITIAL,
            min_rto: if cfg.nodelay {
                RTO_MIN_NODELAY
            } else {
                RTO_MIN
            },
            snd_una: 0,
            snd_nxt: 0,
            snd_ring: ByteRing::default(),
            snd_base: 0,
            queued_from: 0,
            snd_buf: VecDeque::new(),
            in_flight_bytes: 0,
            backed_off: false,
            next_resend: u64::MAX,
            fastack_due: false,
            rcv_nxt: 0,
            rcv_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_read: 0,
            rcv_pool: Vec::new(),
            acklist: Vec::new(),
            probe_ask: false,
            probe_tell: false,
            probe_wait: 0,
            probe_at: 0,
            next_flush: 0,
            pending: VecDeque::new(),
            stats: KcpStats::default(),
        }
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    fn advance_clock(&mut self, now: Instant) {
        let ms = millis(now.saturating_duration_since(self.origin));
        self.now_ms = self.now_ms.max(ms);
    }

    /// Processes one KCP packet (one or more segments) from the peer. Segments before a
    /// malformed one are processed; the rest of the packet is dropped.
    pub fn handle_input(&mut self, packet: &[u8], now: Instant) -> Result<(), KcpError> {
        self.advance_clock(now);
        if packet.len() < HEADER_LEN {
            return Err(KcpError::TooShort(packet.len()));
        }
        let old_una = self.snd_una;
        let mut acked_new = false;
        let mut max_ack: Option<(u32, u32)> = None;
        let mut rest = packet;
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            let (hdr, data) = match SegmentHeader::parse(rest) {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            rest = rest.get(HEADER_LEN + data.len()..).unwrap_or_default();
            if hdr.conv != self.conv {
                break Err(KcpError::ConvMismatch {
                    expected: self.conv,
                    got: hdr.conv,
                });
            }
            self.rmt_wnd = u32::from(hdr.wnd);
            self.parse_una(hdr.una);
            match hdr.cmd {
                Command::Ack => {
                    let rtt = (self.now_ms as u32).wrapping_sub(hdr.ts);
                    if rtt <= RTT_SAMPLE_MAX {
                        self.update_rtt(rtt);
                        self.rate.on_rtt(rtt, self.now_ms);
                    }
                    acked_new |= self.parse_ack(hdr.sn);
                    max_ack = match max_ack {
                        Some((sn, ts))
                            if !(seq_diff(hdr.sn, sn) > 0 && seq_diff(hdr.ts, ts) > 0) =>
                        {
                            Some((sn, ts))
                        }
                        _ => Some((hdr.sn, hdr.ts)),
                    };
                }
                Command::Push => self.parse_data(hdr.sn, hdr.ts, data),
                Command::WindowAsk => self.probe_tell = true,
                Command::WindowTell => {}
            }
        };
        if result.is_ok() {
            self.stats.packets_received += 1;
        }
        if let Some((sn, ts)) = max_ack {
            self.parse_fastack(sn, ts);
        }
        self.rate.on_tick(self.now_ms, self.srtt);
        let progressed = seq_diff(self.snd_una, old_una) > 0;
        if progressed {
            self.grow_cwnd();
        }
        if (progressed || acked_new) && self.backed_off {
            self.reset_backoff();
        }
        self.release_sent();
        if self.acknodelay {
            self.flush_acks();
        }
        result
    }

    /// Queues bytes for sending; returns how many were taken (at most
    /// [`KcpSession::send_capacity`]). The `Result` is kept for API stability; queueing
    /// itself cannot fail.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, KcpError> {
        let take = data.len().min(self.send_capacity());
        self.snd_ring.push(&data[..take]);
        Ok(take)
    }

    /// Bytes queued and not yet cut into segments.
    fn queued_len(&self) -> usize {
        (self.snd_base + self.snd_ring.len() as u64 - self.queued_from) as usize
    }

    /// Bytes that may still be queued: queued plus in-flight data is kept at or below
    /// `2 × sndwnd` full segments.
    pub fn send_capacity(&self) -> usize {
        // Against the rate cap too: what the cap holds back waits in the mux's per-stream
        // queues (scheduled fairly), not in this FIFO.
        (2 * self.window() as usize * self.mss)
            .saturating_sub(self.queued_len() + self.in_flight_bytes)
    }

    /// The send window in segments, lowered to the rate cap when there is one.
    fn window(&self) -> u64 {
        let wnd = u64::from(self.snd_wnd);
        match self.rate_limit() {
            Some(cap) => wnd.min(cap),
            None => wnd,
        }
    }

    /// The delivery-rate cap in segments, if enabled and measured.
    fn rate_limit(&self) -> Option<u64> {
        if self.rate_cap {
            self.rate.cap()
        } else {
            None
        }
    }

    /// Copies received in-order bytes into `buf`; 0 means nothing is ready.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let was_full = self.rcv_queue.len() >= self.rcv_wnd as usize;
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.rcv_queue.front() else {
                break;
            };
            let rest = front.get(self.rcv_read..).unwrap_or_default();
            let k = rest.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&rest[..k]);
            n += k;
            self.rcv_read += k;
            if k == rest.len() {
                self.pop_received();
            }
        }
        self.move_ready();
        self.after_read(was_full);
        n
    }

    /// Hands every received in-order byte to `read`, one segment's bytes at a time, in
    /// order, without copying them out (the reader is lent the session's buffer). A chunk
    /// counts as read even when `read` fails; the first error stops and is returned.
    /// Returns the bytes handed over.
    pub fn recv_with<E>(
        &mut self,
        mut read: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let was_full = self.rcv_queue.len() >= self.rcv_wnd as usize;
        let mut n = 0;
        let mut result = Ok(());
        while result.is_ok() {
            let Some(front) = self.rcv_queue.front() else {
                break;
            };
            let chunk = front.get(self.rcv_read..).unwrap_or_default();
            n += chunk.len();
            result = read(chunk);
            self.pop_received();
            self.move_ready();
        }
        self.after_read(was_full);
        result.map(|()| n)
    }

    /// Drops the front of the receive queue, keeping its buffer for reuse.
    fn pop_received(&mut self) {
        self.rcv_read = 0;
        if let Some(buf) = self.rcv_queue.pop_front() {
            if self.rcv_pool.len() < RCV_POOL_MAX {
                self.rcv_pool.push(buf);
            }
        }
    }

    fn after_read(&mut self, was_full: bool) {
        if was_full && self.rcv_queue.len() < self.rcv_wnd as usize {
            // Tell the peer its window opened instead of waiting for its probe.
            self.probe_tell = true;
        }
    }

    /// Runs the periodic flush if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        self.rate.on_tick(self.now_ms, self.srtt);
        if self.now_ms >= self.next_flush {
            self.next_flush = self.now_ms + u64::from(self.interval);
            self.flush_at_now();
        }
    }

    /// Sends ACKs, probes, new data the windows allow and due retransmissions now.
    pub fn flush(&mut self, now: Instant) {
        self.advance_clock(now);
        self.flush_at_now();
    }

    /// When [`KcpSession::handle_timeout`] must run next; `None` while the session is idle
    /// (nothing queued, in flight or to acknowledge, the peer's window open): an idle
    /// session costs no wake-ups. Once something is queued or received the deadline is the
    /// periodic flush again (already due if the session was idle for longer than an
    /// interval).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_idle() {
            return None;
        }
        Some(self.origin + Duration::from_millis(self.next_flush))
    }

    /// True when a flush has nothing to do: no segment in flight, no byte queued, no ACK
    /// owed, no window probe due or running.
    fn is_idle(&self) -> bool {
        self.snd_buf.is_empty()
            && self.queued_len() == 0
            && self.acklist.is_empty()
            && self.rmt_wnd != 0
            && !self.probe_ask
            && !self.probe_tell
    }

    /// A snapshot of counters and estimates.
    pub fn stats(&self) -> KcpStats {
        let queued_segments = self.queued_len().div_ceil(self.mss);
        let in_flight = self.snd_buf.iter().filter(|s| !s.acked).count();
        KcpStats {
            srtt_ms: self.srtt,
            rttvar_ms: self.rttvar,
            rto_ms: self.rto,
            cwnd: self.cwnd,
            remote_window: self.rmt_wnd,
            in_flight,
            waitsnd: in_flight + queued_segments,
            queued_bytes: self.queued_len(),
            rate_cap: self.rate_limit().unwrap_or(0),
            delivery_rate: self.rate.estimates().0,
            min_rtt_ms: self.rate.estimates().1,
            ..self.stats.clone()
        }
    }
}
