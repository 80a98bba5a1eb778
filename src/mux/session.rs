//! The [`Mux`] state machine: frame dispatch, scheduling, flow control and keepalive.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{Frame, MAX_OPEN_PAYLOAD};
use super::stream::{Stream, INITIAL_WINDOW};
use super::{
    Bound, Control, Mux, MuxConfig, MuxError, MuxEvent, MuxStats, ProtocolError, StreamId,
    MAX_PENDING_PONGS,
};

/// A session breaks when more than this many times `max_streams` refusal RSTs wait to be
/// sent: the peer opens far beyond the limit faster than it reads. The factor leaves room
/// for a burst of opens that arrives in one read (thousands fit in one KCP window) while
/// bounding the queue (each entry a few dozen bytes).
const OPEN_FLOOD_FACTOR: usize = 16;

impl Mux {
    /// A session; the client opens odd stream ids, the server even ones.
    pub fn new(cfg: MuxConfig, is_client: bool, now: Instant) -> Self {
        let next_ping = now + cfg.keepalive;
        Mux {
            cfg,
            is_client,
            origin: now,
            next_id: if is_client { 1 } else { 2 },
            max_peer_id: 0,
            streams: HashMap::new(),
            control: VecDeque::new(),
            pending_pongs: 0,
            active: VecDeque::new(),
            events: VecDeque::new(),
            rx: Vec::new(),
            arena: super::Arena::default(),
            session_outstanding: 0,
            session_unconsumed: 0,
            pending_rsts: 0,
            unadvertised: 0,
            last_recv: now,
            next_ping,
            ping_outstanding: None,
            failed: None,
            stats: MuxStats::default(),
        }
    }

    fn is_local(&self, id: StreamId) -> bool {
        (id % 2 == 1) == self.is_client
    }

    /// True if `id` was opened at some point (by either side).
    fn was_opened(&self, id: StreamId) -> bool {
        if self.is_local(id) {
            u64::from(id) < self.next_id
        } else {
            id <= self.max_peer_id
        }
    }

    /// The receive limit this side enforces: what it advertises, or what a sender may
    /// assume before the first WINDOW frame, whichever is larger.
    fn receive_limit(&self) -> u64 {
        u64::from(self.cfg.stream_window.max(INITIAL_WINDOW))
    }

    /// Opens a stream whose OPEN frame carries `payload` (≤ [`MAX_OPEN_PAYLOAD`] bytes).
    pub fn open_stream(&mut self, payload: &[u8]) -> Result<StreamId, MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        if payload.len() > MAX_OPEN_PAYLOAD {
            return Err(MuxError::PayloadTooLarge(payload.len()));
        }
        let id = u32::try_from(self.next_id).map_err(|_| MuxError::IdsExhausted)?;
        self.next_id += 2;
        self.streams.insert(id, Stream::new());
        self.control.push_back(Control::Open(id, payload.to_vec()));
        self.queue_window(id);
        self.stats.opened_local += 1;
        Ok(id)
    }

    /// Buffers `data` for stream `id`. The caller bounds what it hands in with the
    /// [`MuxEvent::Sent`] credits.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<(), MuxError> {
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(MuxError::UnknownStream(id))?;
        if s.fin_requested {
            return Err(MuxError::Finished(id));
        }
        if data.is_empty() {
            return Ok(());
        }
        s.send_buf.push(data);
        if !s.in_active {
            s.in_active = true;
            self.active.push_back(id);
        }
        Ok(())
    }

    /// Sends FIN after the data already buffered. Ignored for unknown streams.
    pub fn finish(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.fin_requested {
            return;
        }
        s.fin_requested = true;
        if !s.in_active {
            s.in_active = true;
            self.active.push_back(id);
        }
    }

    /// Aborts the stream: buffered data is dropped and RST sent. Ignored for unknown streams.
    pub fn reset(&mut self, id: StreamId) {
        if self.remove_stream(id) {
            self.queue_rst(id);
        }
    }

    fn queue_rst(&mut self, id: StreamId) {
        self.pending_rsts += 1;
        self.control.push_back(Control::Rst(id));
    }

    /// The application wrote `bytes` of the stream's received data out; credit returns to
    /// the peer once a quarter window has been consumed since the last update.
    pub fn consumed(&mut self, id: StreamId, bytes: usize) {
        let quarter = u64::from(self.cfg.stream_window / 4).max(1);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let before = s.consumed;
        s.consumed = (s.consumed + bytes as u64).min(s.received);
        self.unadvertised += s.consumed - before;
        self.session_unconsumed = self.session_unconsumed.saturating_sub(s.consumed - before);
        if s.consumed - s.advertised >= quarter {
            self.queue_window(id);
        } else if self.unadvertised >= u64::from(self.cfg.session_window / 4).max(1) {
            for (&id, s) in self.streams.iter_mut() {
                if s.consumed > s.advertised && !s.window_pending {
                    s.window_pending = true;
                    self.control.push_back(Control::Window(id));
                }
            }
        }
    }

    fn queue_window(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id) {
            // Also after the peer's FIN: its bytes stay charged to the peer's session
            // window until reported consumed.
            if !s.window_pending {
                s.window_pending = true;
                self.control.push_back(Control::Window(id));
            }
        }
    }

    /// Removes a stream, returning its unconsumed credit to the session. True if it existed.
    fn remove_stream(&mut self, id: StreamId) -> bool {
        match self.streams.remove(&id) {
            Some(s) => {
                self.unadvertised = self.unadvertised.saturating_sub(s.consumed - s.advertised);
                self.session_unconsumed = self
                    .session_unconsumed
                    .saturating_sub(s.received - s.consumed);
                self.session_outstanding = self
                    .session_outstanding
                    .saturating_sub(u64::from(s.outstanding()));
                true
            }
            None => false,
        }
    }

    pub(super) fn remove_if_done(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(Stream::is_done) {
            self.remove_stream(id);
        }
    }

    /// Resets a stream whose peer broke its rules.
    fn violation(&mut self, id: StreamId) {
        self.stats.violations += 1;
        self.reset(id);
        self.events.push_back(MuxEvent::Reset { id });
    }

    /// Resets a stream whose peer exceeded a receive bound.
    fn exceeded(&mut self, id: StreamId, bound: Bound) {
        self.events.push_back(MuxEvent::Exceeded { id, bound });
        self.violation(id);
    }

    /// Feeds bytes from the reliable layer. After an error the session is unusable and
    /// every later call returns the same error.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) -> Result<(), MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        if data.is_empty() {
            return Ok(());
        }
        self.last_recv = now;
        let result = if self.rx.is_empty() {
            let r = self.decode_all(data, now);
            if let Ok(n) = r {
                self.rx.extend_from_slice(data.get(n..).unwrap_or_default());
            }
            r
        } else {
            let mut rx = std::mem::take(&mut self.rx);
            rx.extend_from_slice(data);
            let r = self.decode_all(&rx, now);
            if let Ok(n) = r {
                rx.drain(..n);
                self.rx = rx;
            }
            r
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failed = Some(e.clone());
                self.rx = Vec::new();
                Err(e.into())
            }
        }
    }

    /// Handles every complete frame in `buf`; returns the bytes used.
    fn decode_all(&mut self, buf: &[u8], now: Instant) -> Result<usize, ProtocolError> {
        let mut at = 0;
        while let Some((frame, len)) = Frame::decode(buf.get(at..).unwrap_or_default())? {
            at += len;
            self.stats.frames_received += 1;
            self.handle_frame(frame, now)?;
        }
        Ok(at)
    }

    fn handle_frame(&mut self, frame: Frame<'_>, now: Instant) -> Result<(), ProtocolError> {
        match frame {
            Frame::Open { id, payload } => {
                if self.is_local(id) || id <= self.max_peer_id {
                    return Err(ProtocolError::BadOpen(id));
                }
                self.max_peer_id = id;
                if self.streams.len() >= self.cfg.max_streams {
                    // Refused before the application sees it; the id stays used.
                    self.stats.refused_opens += 1;
                    self.events.push_back(MuxEvent::Exceeded {
                        id,
                        bound: Bound::Streams,
                    });
                    self.queue_rst(id);
                    if self.pending_rsts > OPEN_FLOOD_FACTOR * self.cfg.max_streams.max(64) {
                        return Err(ProtocolError::OpenFlood);
                    }
                    return Ok(());
                }
                self.streams.insert(id, Stream::new());
                self.queue_window(id);
                self.stats.opened_remote += 1;
                self.events.push_back(MuxEvent::Opened {
                    id,
                    payload: payload.to_vec(),
                });
            }
            Frame::Data { id, data } => {
                let limit = self.receive_limit();
                let Some(s) = self.streams.get_mut(&id) else {
                    return self.unknown_stream(id, true);
                };
                s.received += data.len() as u64;
                self.session_unconsumed += data.len() as u64;
                self.stats.bytes_received += data.len() as u64;
                if s.remote_fin {
                    self.violation(id);
                } else if s.received - s.consumed > limit {
                    self.exceeded(id, Bound::StreamWindow);
                } else if self.session_unconsumed > u64::from(self.cfg.session_window) {
                    self.exceeded(id, Bound::SessionWindow);
                } else if !data.is_empty() {
                    let data = self.arena.copy(data);
                    self.events.push_back(MuxEvent::Data { id, data });
                }
            }
            Frame::Fin { id } => {
                let Some(s) = self.streams.get_mut(&id) else {
                    return self.unknown_stream(id, true);
                };
                if !s.remote_fin {
                    s.remote_fin = true;
                    self.events.push_back(MuxEvent::Finished { id });
                    self.remove_if_done(id);
                }
            }
            Frame::Rst { id } => {
                if self.remove_stream(id) {
                    self.stats.resets_received += 1;
                    self.events.push_back(MuxEvent::Reset { id });
                } else {
                    self.stats.ignored_frames += 1;
                }
            }
            Frame::Window {
                id,
                consumed,
                window,
            } => {
                let Some(s) = self.streams.get_mut(&id) else {
                    return self.unknown_stream(id, false);
                };
                let delta = consumed.wrapping_sub(s.peer_consumed);
                if delta > s.outstanding() {
                    // Credit for bytes never sent.
                    self.violation(id);
                    return Ok(());
                }
                s.peer_consumed = consumed;
                s.peer_window = window;
                self.session_outstanding = self.session_outstanding.saturating_sub(delta.into());
                if !s.in_active && (!s.send_buf.is_empty() || s.fin_due()) {
                    s.in_active = true;
                    self.active.push_back(id);
                }
            }
            Frame::Ping { opaque } => {
                if self.pending_pongs < MAX_PENDING_PONGS {
                    self.pending_pongs += 1;
                    self.control.push_back(Control::Pong(opaque));
                }
            }
            Frame::Pong { opaque } => {
                if self.ping_outstanding == Some(opaque) {
                    self.ping_outstanding = None;
                    let sent = self.origin.checked_add(Duration::from_nanos(opaque));
                    let rtt = sent.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                    self.stats.last_rtt = Some(rtt);
                    self.events.push_back(MuxEvent::Pong { rtt });
                }
            }
        }
        Ok(())
    }

    /// A stream frame for an id not in the table: ignored if the stream existed (it was
    /// closed or reset while the frame was in flight), a protocol error if it never did.
    fn unknown_stream(&mut self, id: StreamId, strict: bool) -> Result<(), ProtocolError> {
        if strict && !self.was_opened(id) {
            return Err(ProtocolError::Unopened(id));
        }
        self.stats.ignored_frames += 1;
        Ok(())
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// Queues a PING when the send side has been idle for `keepalive`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_ping {
            self.ping(now);
        }
    }

    /// Queues a PING now (for RTT measurement, e.g. `rawtun ping`); its PONG is reported as
    /// [`MuxEvent::Pong`]. A PING still unanswered is superseded.
    pub fn ping(&mut self, now: Instant) {
        let opaque = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        self.ping_outstanding = Some(opaque);
        self.control.push_back(Control::Ping(opaque));
        self.next_ping = now + self.cfg.keepalive;
    }

    /// The next keepalive or idle deadline.
    pub fn poll_timeout(&self) -> Instant {
        self.next_ping.min(self.last_recv + self.cfg.idle_timeout)
    }

    /// True once nothing has been received for `idle_timeout`.
    pub fn is_dead(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_recv) >= self.cfg.idle_timeout
    }

    /// Streams open now.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MuxStats {
        MuxStats {
            streams: self.streams.len(),
            session_outstanding: self.session_outstanding,
            session_unconsumed: self.session_unconsumed,
            ..self.stats.clone()
        }
    }
}
