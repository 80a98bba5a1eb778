//! The [`Flow`] state machine: handshake, sequence/ack/timestamp bookkeeping, control
//! segment scheduling and data-segment encapsulation.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::{FlowAddrs, FlowConfig, FlowError, FlowStats, Inbound};
use crate::wire::{self, FrameRepr, ParsedFrame, TcpFlags, TcpOptions};

/// MSS announced over IPv4 (a 1500-byte Ethernet MTU less 40 bytes of headers).
const MSS_V4: u16 = 1460;
/// MSS announced over IPv6 (1500 less 60 bytes of headers).
const MSS_V6: u16 = 1440;
/// Window-scale shift announced in SYN and SYN-ACK (Linux's usual value).
const WINDOW_SCALE: u8 = 7;
/// First SYN retransmission timeout.
const SYN_RTO_INITIAL: Duration = Duration::from_secs(1);
/// Cap of the SYN retransmission backoff.
const SYN_RTO_MAX: Duration = Duration::from_secs(8);
/// How far a restarted server flow moves its ISN past everything it sent before.
const RESTART_ISN_STEP: u32 = 1 << 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Client: SYN sent (or due), waiting for SYN-ACK.
    SynSent,
    /// Server: created, no SYN seen yet.
    Listen,
    /// Server: SYN-ACK sent, waiting for the ACK or data.
    SynReceived,
    /// Data may flow.
    Established,
}

/// A control segment due at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    SynAck,
    Ack,
}

/// One fake-TCP flow: see the [module docs](super) for its behaviour and how to drive it.
#[derive(Debug)]
pub struct Flow {
    cfg: FlowConfig,
    addrs: FlowAddrs,
    role: Role,
    state: State,
    /// Our initial sequence number.
    iss: u32,
    /// Sequence number of the next byte we send.
    snd_nxt: u32,
    /// The ISN of the peer's SYN, once seen.
    peer_isn: Option<u32>,
    /// Next byte expected from the peer, once anything was seen.
    rcv_nxt: Option<u32>,
    /// Options the peer offered in its SYN (echoed in the SYN-ACK).
    peer_sack: bool,
    peer_window_scale: bool,
    ts_origin: Instant,
    ts_offset: u32,
    /// Most recent TSval received from the peer.
    ts_recent: u32,
    /// IPv4 identification of the next frame.
    ip_id: u16,
    /// Data-segment flags (sanitised `cfg.local_flags`, never empty).
    data_flags: Vec<TcpFlags>,
    flag_index: usize,
    /// Client: when the next SYN is due, and the backoff after it.
    syn_deadline: Option<Instant>,
    syn_rto: Duration,
    syn_sent: bool,
    /// A control segment due now, with the time it was queued.
    pending: Option<(Pending, Instant)>,
    stats: FlowStats,
}

impl Flow {
    fn new(
        cfg: FlowConfig,
        addrs: FlowAddrs,
        role: Role,
        isn: u32,
        ts_offset: u32,
        ip_id: u16,
        now: Instant,
    ) -> Flow {
        let mut data_flags: Vec<TcpFlags> = cfg
            .local_flags
            .iter()
            .map(|f| f.without(TcpFlags::SYN | TcpFlags::RST))
            .map(|f| {
                if f == TcpFlags::NONE {
                    TcpFlags::ACK
                } else {
                    f
                }
            })
            .collect();
        if data_flags.is_empty() {
            data_flags.push(TcpFlags::PSH_ACK);
        }
        let state = match (cfg.handshake, role) {
            (false, _) => State::Established,
            (true, Role::Client) => State::SynSent,
            (true, Role::Server) => State::Listen,
        };
        let syn_deadline = (state == State::SynSent).then_some(now);
        Flow {
            cfg,
            addrs,
            role,
            state,
            iss: isn,
            snd_nxt: isn,
            peer_isn: None,
            rcv_nxt: None,
            peer_sack: false,
            peer_window_scale: false,
            ts_origin: now,
            ts_offset,
            ts_recent: 0,
            ip_id,
            data_flags,
            flag_index: 0,
            syn_deadline,
            syn_rto: SYN_RTO_INITIAL,
            syn_sent: false,
            pending: None,
            stats: FlowStats::default(),
        }
    }

    /// The connecting side. With the handshake on, its first SYN is due at `now`.
    pub fn client(
        cfg: FlowConfig,
        addrs: FlowAddrs,
        isn: u32,
        ts_offset: u32,
        ip_id: u16,
        now: Instant,
    ) -> Flow {
        Flow::new(cfg, addrs, Role::Client, isn, ts_offset, ip_id, now)
    }

    /// The accepting side, created when a SYN (or, handshake off, data) arrives for an
    /// unknown flow; pass that same segment to [`Flow::handle_segment`] next. With the
    /// handshake on, a data segment arriving before any SYN (the server restarted under a
    /// live client) establishes the flow directly.
    pub fn server(
        cfg: FlowConfig,
        addrs: FlowAddrs,
        isn: u32,
        ts_offset: u32,
        ip_id: u16,
        now: Instant,
    ) -> Flow {
        Flow::new(cfg, addrs, Role::Server, isn, ts_offset, ip_id, now)
    }

    /// True once data may be sent.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Counters.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// The flow's addresses.
    pub fn addrs(&self) -> &FlowAddrs {
        &self.addrs
    }

    /// The ISN of the peer's SYN, once one was accepted.
    pub fn peer_isn(&self) -> Option<u32> {
        self.peer_isn
    }

    /// Headroom the caller must leave in front of a payload for [`Flow::encapsulate`].
    pub fn headroom(&self) -> usize {
        wire::header_len(&self.repr(TcpFlags::ACK, 0, 0, self.data_options(0)))
    }

    fn tsval(&self, now: Instant) -> u32 {
        // Milliseconds wrap modulo 2^32 like any TCP timestamp clock.
        let ms = now.saturating_duration_since(self.ts_origin).as_millis() as u32;
        self.ts_offset.wrapping_add(ms)
    }

    fn data_options(&self, tsval: u32) -> TcpOptions {
        TcpOptions {
            timestamp: Some((tsval, self.ts_recent)),
            ..TcpOptions::default()
        }
    }

    fn mss(&self) -> u16 {
        if self.addrs.local.is_ipv4() {
            MSS_V4
        } else {
            MSS_V6
        }
    }

    fn repr(&self, flags: TcpFlags, seq: u32, ack: u32, options: TcpOptions) -> FrameRepr {
        FrameRepr {
            link: self.cfg.link,
            src_mac: self.addrs.local_mac,
            dst_mac: self.addrs.remote_mac,
            src: self.addrs.local,
            dst: self.addrs.remote,
            ttl: self.cfg.ttl,
            ip_id: self.ip_id,
            seq,
            ack,
            flags,
            window: self.cfg.window,
            options,
        }
    }

    /// The acknowledgment number to put in a segment with `flags`: zero without ACK.
    fn ack_for(&self, flags: TcpFlags) -> u32 {
        match self.rcv_nxt {
            Some(n) if flags.contains(TcpFlags::ACK) => n,
            _ => 0,
        }
    }

    /// Writes a header-only frame at the start of `buf`.
    fn write_control(&mut self, repr: &FrameRepr, buf: &mut [u8]) -> Option<Range<usize>> {
        let hl = wire::header_len(repr);
        let start = wire::emit_frame(repr, buf, hl, 0).ok()?;
        self.ip_id = self.ip_id.wrapping_add(1);
        self.stats.segments_out += 1;
        Some(start..hl)
    }

    /// The payload of `seg` (returned by [`Flow::handle_segment`]) authenticated: take its
    /// sequence number and timestamp.
    pub fn confirm(&mut self, seg: &ParsedFrame<'_>) {
        self.note_peer(seg);
    }

    /// Records sequence and timestamp information from an accepted peer segment.
    fn note_peer(&mut self, seg: &ParsedFrame<'_>) {
        // Payloads are far below 2^32 bytes.
        let end = seg.repr.seq.wrapping_add(seg.payload.len() as u32);
        self.rcv_nxt = match self.rcv_nxt {
            Some(n) if (end.wrapping_sub(n) as i32) <= 0 => Some(n),
            _ => Some(end),
        };
        if let Some((tsval, _)) = seg.repr.options.timestamp {
            self.ts_recent = tsval;
        }
    }

    /// Takes in the peer's SYN: its ISN, timestamp and offered options.
    fn accept_syn(&mut self, seg: &ParsedFrame<'_>, now: Instant) {
        let r = &seg.repr;
        self.peer_isn = Some(r.seq);
        self.rcv_nxt = Some(r.seq.wrapping_add(1));
        self.ts_recent = r.options.timestamp.map_or(0, |(val, _)| val);
        self.peer_sack = r.options.sack_permitted;
        self.peer_window_scale = r.options.window_scale.is_some();
        self.state = State::SynReceived;
        self.snd_nxt = self.iss.wrapping_add(1);
        self.pending = Some((Pending::SynAck, now));
    }

    /// Handles one parsed frame of this flow (from the peer to us).
    pub fn handle_segment<'a>(&mut self, seg: &ParsedFrame<'a>, now: Instant) -> Inbound<'a> {
        self.stats.segments_in += 1;
        let r = &seg.repr;
        let (local, remote) = (self.addrs.local, self.addrs.remote);
        if r.src.ip() != remote.ip()
            || r.src.port() != remote.port()
            || r.dst.ip() != local.ip()
            || r.dst.port() != local.port()
        {
            return Inbound::Ignored;
        }
        if r.flags.contains(TcpFlags::RST) {
            self.stats.rst_ignored += 1;
            return Inbound::IgnoredRst;
        }
        if r.flags.contains(TcpFlags::SYN) {
            return self.handle_syn(seg, now);
        }
        match self.state {
            State::SynSent => return Inbound::Ignored,
            State::Listen if seg.payload.is_empty() => return Inbound::Ignored,
            // The handshake completes with the segment that acknowledges our SYN-ACK (only
            // a party that saw it knows our ISN).
            State::SynReceived if r.ack != self.iss.wrapping_add(1) => return Inbound::Ignored,
            State::Listen | State::SynReceived => {
                self.state = State::Established;
                if seg.payload.is_empty() {
                    self.note_peer(seg);
                }
            }
            State::Established => {}
        }
        // A payload's sequence number and timestamp are taken only once the layers above
        // have authenticated it ([`Flow::confirm`]): an injected segment must not move our
        // acknowledgment or timestamp echo.
        if seg.payload.is_empty() {
            Inbound::Ignored
        } else {
            Inbound::Payload(seg.payload)
        }
    }

    fn handle_syn<'a>(&mut self, seg: &ParsedFrame<'a>, now: Instant) -> Inbound<'a> {
        if !self.cfg.handshake {
            return Inbound::Ignored;
        }
        let r = &seg.repr;
        let is_syn_ack = r.flags.contains(TcpFlags::ACK);
        match (self.role, is_syn_ack) {
            (Role::Client, true) => {
                if r.ack != self.iss.wrapping_add(1) {
                    return Inbound::Ignored;
                }
                match self.state {
                    State::SynSent => {
                        self.peer_isn = Some(r.seq);
                        self.rcv_nxt = Some(r.seq.wrapping_add(1));
                        if let Some((tsval, _)) = r.options.timestamp {
                            self.ts_recent = tsval;
                        }
                        self.snd_nxt = self.iss.wrapping_add(1);
                        self.state = State::Established;
                        self.syn_deadline = None;
                        self.pending = Some((Pending::Ack, now));
                        Inbound::Control
                    }
                    // Our handshake ACK may have been lost: acknowledge the repeat.
                    State::Established if self.peer_isn == Some(r.seq) => {
                        self.pending = Some((Pending::Ack, now));
                        Inbound::Control
                    }
                    _ => Inbound::Ignored,
                }
            }
            (Role::Server, false) => match self.state {
                State::Listen | State::SynReceived => {
                    self.accept_syn(seg, now);
                    Inbound::Control
                }
                // A delayed copy of the SYN that opened this flow.
                State::Established if self.peer_isn == Some(r.seq) => Inbound::Ignored,
                State::Established | State::SynSent => {
                    self.iss = self.snd_nxt.wrapping_add(RESTART_ISN_STEP);
                    self.flag_index = 0;
                    self.accept_syn(seg, now);
                    Inbound::Restarted
                }
            },
            _ => Inbound::Ignored,
        }
    }

    /// Writes the next due control segment (SYN, SYN-ACK, handshake ACK, SYN retransmit)
    /// as a whole frame at the start of `buf` and returns its range; `None` when nothing is
    /// due (or `buf` is too small: the segment stays due).
    pub fn poll_control(&mut self, now: Instant, buf: &mut [u8]) -> Option<Range<usize>> {
        let tsval = self.tsval(now);
        if let Some((pending, _)) = self.pending {
            let repr = match pending {
                Pending::SynAck => {
                    let options = TcpOptions {
                        mss: Some(self.mss()),
                        window_scale: self.peer_window_scale.then_some(WINDOW_SCALE),
                        sack_permitted: self.peer_sack,
                        timestamp: Some((tsval, self.ts_recent)),
                    };
                    let flags = TcpFlags::SYN_ACK;
                    self.repr(flags, self.iss, self.ack_for(flags), options)
                }
                Pending::Ack => {
                    let flags = TcpFlags::ACK;
                    let options = self.data_options(tsval);
                    self.repr(flags, self.snd_nxt, self.ack_for(flags), options)
                }
            };
            let range = self.write_control(&repr, buf)?;
            self.pending = None;
            return Some(range);
        }
        let deadline = self.syn_deadline?;
        if self.state != State::SynSent || now < deadline {
            return None;
        }
        // Every copy of the SYN is identical: its ISN and TSval carry the opening proof
        // (crate::crypto::proof), which a server checks against the first copy's time.
        let options = TcpOptions {
            mss: Some(self.mss()),
            window_scale: Some(WINDOW_SCALE),
            sack_permitted: true,
            timestamp: Some((self.ts_offset, 0)),
        };
        let repr = self.repr(TcpFlags::SYN, self.iss, 0, options);
        let range = self.write_control(&repr, buf)?;
        if self.syn_sent {
            self.stats.syn_retransmits += 1;
        }
        self.syn_sent = true;
        self.syn_deadline = Some(now + self.syn_rto);
        self.syn_rto = (self.syn_rto * 2).min(SYN_RTO_MAX);
        Some(range)
    }

    /// When [`Flow::poll_control`] next has something to send: a queued segment (already
    /// due) or the next SYN (re)transmission. `None` when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.pending {
            Some((_, since)) => Some(since),
            None if self.state == State::SynSent => self.syn_deadline,
            None => None,
        }
    }

    /// Wraps the payload at `buf[payload_at .. payload_at + len]` in a data segment (next
    /// flags of the cycle, current seq/ack/timestamps) and returns the frame's range.
    /// `payload_at` must be at least [`Flow::headroom`].
    pub fn encapsulate(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        payload_at: usize,
        len: usize,
    ) -> Result<Range<usize>, FlowError> {
        if self.state != State::Established {
            return Err(FlowError::NotEstablished);
        }
        let flags = self
            .data_flags
            .get(self.flag_index % self.data_flags.len())
            .copied()
            .unwrap_or(TcpFlags::PSH_ACK);
        let options = self.data_options(self.tsval(now));
        let repr = self.repr(flags, self.snd_nxt, self.ack_for(flags), options);
        let start = wire::emit_frame(&repr, buf, payload_at, len).map_err(|e| match e {
            wire::Error::Unsupported(_) => FlowError::TooLarge,
            e => FlowError::Wire(e),
        })?;
        // `len` fits in an IP packet, so it is far below 2^32.
        self.snd_nxt = self.snd_nxt.wrapping_add(len as u32);
        self.ip_id = self.ip_id.wrapping_add(1);
        self.flag_index = (self.flag_index + 1) % self.data_flags.len();
        self.stats.segments_out += 1;
        Ok(start..payload_at + len)
    }
}
