//! Output scheduling of the [`Mux`]: control frames first, then streams round-robin in
//! chunks of at most [`CHUNK`] bytes, each stream's FIN after its last DATA.

use std::time::Instant;

use super::frame::{self, Frame, HEADER_LEN};
use super::{Control, Mux, MuxEvent, StreamId, Turn, CHUNK};

/// The send-ring capacity a stream keeps once it has drained (see `turn`).
const KEEP_SEND_BUF: usize = 64 * 1024;

impl Mux {
    /// Appends frames to `out`, at most `max` bytes, stopping at a frame boundary (a DATA
    /// frame may be cut shorter to fit). Returns the bytes appended.
    pub fn poll_output(&mut self, out: &mut Vec<u8>, max: usize, now: Instant) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        let start = out.len();
        if self.emit_control(out, max) {
            self.emit_data(out, start, max);
        }
        let n = out.len() - start;
        if n > 0 {
            self.next_ping = now + self.cfg.keepalive;
        }
        n
    }

    /// Emits queued control frames in order; false if `max` stopped it.
    fn emit_control(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let start = out.len();
        while let Some(c) = self.control.front() {
            let frame = match c {
                Control::Open(id, payload) => Some(Frame::Open { id: *id, payload }),
                Control::Window(id) => self.streams.get(id).map(|s| Frame::Window {
                    id: *id,
                    consumed: s.consumed as u32,
                    window: self.cfg.stream_window,
                }),
                Control::Rst(id) => Some(Frame::Rst { id: *id }),
                Control::Ping(opaque) => Some(Frame::Ping { opaque: *opaque }),
                Control::Pong(opaque) => Some(Frame::Pong { opaque: *opaque }),
            };
            if let Some(f) = frame {
                if out.len() - start + f.encoded_len() > max {
                    return false;
                }
                f.encode(out);
                self.stats.frames_sent += 1;
            }
            match self.control.pop_front() {
                Some(Control::Window(id)) => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.window_pending = false;
                        self.unadvertised =
                            self.unadvertised.saturating_sub(s.consumed - s.advertised);
                        s.advertised = s.consumed;
                    }
                }
                Some(Control::Rst(_)) => {
                    self.stats.resets_sent += 1;
                    self.pending_rsts = self.pending_rsts.saturating_sub(1);
                }
                Some(Control::Pong(_)) => self.pending_pongs -= 1,
                Some(Control::Ping(_)) => self.stats.pings_sent += 1,
                _ => {}
            }
        }
        true
    }

    /// Serves streams round-robin until `max` is reached or nothing can be sent.
    fn emit_data(&mut self, out: &mut Vec<u8>, start: usize, max: usize) {
        loop {
            let mut progress = false;
            for _ in 0..self.active.len() {
                let Some(id) = self.active.pop_front() else {
                    break;
                };
                let budget = max.saturating_sub(out.len() - start);
                match self.turn(id, out, budget) {
                    Turn::Gone => {}
                    Turn::Blocked => {
                        if let Some(s) = self.streams.get_mut(&id) {
                            s.in_active = false;
                        }
                    }
                    Turn::SessionBlocked => self.active.push_back(id),
                    Turn::Full => {
                        self.active.push_front(id);
                        return;
                    }
                    Turn::Wrote { bytes, more } => {
                        progress |= bytes > 0;
                        if more {
                            self.active.push_back(id);
                        } else if let Some(s) = self.streams.get_mut(&id) {
                            s.in_active = false;
                        }
                        self.remove_if_done(id);
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// One turn of stream `id`: up to [`CHUNK`] bytes of DATA, then its FIN if due.
    fn turn(&mut self, id: StreamId, out: &mut Vec<u8>, budget: usize) -> Turn {
        let session_credit = u64::from(self.cfg.session_window)
            .saturating_sub(self.session_outstanding)
            .min(CHUNK as u64) as usize;
        let Some(s) = self.streams.get_mut(&id) else {
            return Turn::Gone;
        };
        let mut wrote = 0;
        if !s.send_buf.is_empty() {
            let credit = s.send_credit() as usize;
            if credit == 0 {
                return Turn::Blocked;
            }
            if session_credit == 0 {
                return Turn::SessionBlocked;
            }
            let room = budget.saturating_sub(HEADER_LEN);
            if room == 0 {
                return Turn::Full;
            }
            let n = s.send_buf.len().min(credit).min(session_credit).min(room);
            // Encoded from the ring, then dropped from its front.
            frame::encode_data(id, s.send_buf.front(n).into(), out);
            s.send_buf.consume(n);
            // A ring that grew for a burst is freed once drained; a small one stays, so a
            // stream that drains at every pass does not allocate per write.
            s.send_buf.release_above(KEEP_SEND_BUF);
            s.sent = s.sent.wrapping_add(n as u32);
            self.session_outstanding += n as u64;
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += n as u64;
            self.events.push_back(MuxEvent::Sent { id, bytes: n });
            wrote += HEADER_LEN + n;
        }
        if s.fin_due() {
            if budget - wrote < HEADER_LEN {
                return if wrote == 0 {
                    Turn::Full
                } else {
                    Turn::Wrote {
                        bytes: wrote,
                        more: true,
                    }
                };
            }
            Frame::Fin { id }.encode(out);
            s.fin_sent = true;
            self.stats.frames_sent += 1;
            wrote += HEADER_LEN;
        }
        let more = !s.send_buf.is_empty() || s.fin_due();
        Turn::Wrote { bytes: wrote, more }
    }

    fn sendable(&self, id: StreamId) -> bool {
        let session_open = u64::from(self.cfg.session_window) > self.session_outstanding;
        self.streams.get(&id).is_some_and(|s| {
            s.fin_due() || (!s.send_buf.is_empty() && s.send_credit() > 0 && session_open)
        })
    }

    /// True if [`Mux::poll_output`] has frames to emit now.
    pub fn has_output(&self) -> bool {
        !self.control.is_empty() || self.active.iter().any(|&id| self.sendable(id))
    }
}
