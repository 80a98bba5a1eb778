//! Output side of a KCP session: ACKs, window probes, new segments, retransmissions, and
//! packing segments into packets of at most `mtu` bytes.
//!
//! A flush queues segment headers (`pending`); [`KcpSession::poll_transmit`] packs them,
//! with the data bytes read from the send ring, into the caller's buffer.

use super::{
    Command, InFlight, KcpSession, SegmentHeader, BACKOFF_CAP_MS, FASTACK_LIMIT, HEADER_LEN,
    PROBE_INIT_MS, PROBE_LIMIT_MS,
};

impl KcpSession {
    pub(super) fn wnd_unused(&self) -> u16 {
        let free = self.rcv_wnd.saturating_sub(self.rcv_queue.len() as u32);
        u16::try_from(free).unwrap_or(u16::MAX)
    }

    /// Queues one segment for the packet being built.
    pub(super) fn emit(&mut self, hdr: SegmentHeader) {
        self.pending.push_back((hdr, false));
    }

    /// Ends the packet being built: the next segment starts a new one.
    fn end_packet(&mut self) {
        if let Some((_, end)) = self.pending.back_mut() {
            *end = true;
        }
    }

    /// Writes the next packet into `buf` and returns its length, or `None` when nothing is
    /// due. A packet holds at most `mtu` bytes (fewer if `buf` is shorter; pass at least
    /// `mtu` bytes); segments are packed in the order the flushes queued them, and a
    /// segment acknowledged since its flush is left out.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let limit = self.mtu.min(buf.len());
        let mut n = 0;
        while let Some(&(hdr, end)) = self.pending.front() {
            let data = match hdr.cmd {
                Command::Push => match self.unacked(hdr.sn) {
                    Some(seg) => Some((seg.start - self.snd_base, seg.len)),
                    None => {
                        self.pending.pop_front();
                        if end && n > 0 {
                            break;
                        }
                        continue;
                    }
                },
                _ => None,
            };
            let len = HEADER_LEN + data.map_or(0, |(_, len)| len);
            if n + len > limit {
                if n > 0 {
                    break;
                }
                // It cannot fit even alone (a buffer shorter than the MTU): skip it.
                self.pending.pop_front();
                continue;
            }
            let Some(out) = buf.get_mut(n..n + len) else {
                break;
            };
            let (head, body) = out.split_at_mut(HEADER_LEN);
            if let Ok(head) = <&mut [u8; HEADER_LEN]>::try_from(head) {
                hdr.write(head);
            }
            if let Some((at, _)) = data {
                self.snd_ring.copy_out(at as usize, body);
            }
            n += len;
            self.pending.pop_front();
            if end {
                break;
            }
        }
        if n == 0 {
            return None;
        }
        self.stats.packets_sent += 1;
        Some(n)
    }

    /// Segment `sn`, if it is in the send buffer and not acknowledged.
    fn unacked(&self, sn: u32) -> Option<&InFlight> {
        let off = sn.wrapping_sub(self.snd_una) as usize;
        self.snd_buf.get(off).filter(|s| !s.acked)
    }

    pub(super) fn control(&self, cmd: Command, sn: u32, ts: u32) -> SegmentHeader {
        SegmentHeader {
            conv: self.conv,
            cmd,
            frg: 0,
            wnd: self.wnd_unused(),
            ts,
            sn,
            una: self.rcv_nxt,
            len: 0,
        }
    }

    /// Appends pending ACKs to the packet being built.
    fn emit_acks(&mut self) {
        let mut acks = std::mem::take(&mut self.acklist);
        for &(sn, ts) in &acks {
            let hdr = self.control(Command::Ack, sn, ts);
            self.emit(hdr);
        }
        acks.clear();
        // Keep the allocation for the next round.
        self.acklist = acks;
    }

    /// Emits pending ACKs now (packed into as few packets as the MTU allows).
    pub(super) fn flush_acks(&mut self) {
        if self.acklist.is_empty() {
            return;
        }
        self.emit_acks();
        self.end_packet();
    }

    /// The whole flush: ACKs, probes, new data, retransmissions.
    pub(super) fn flush_at_now(&mut self) {
        let now = self.now_ms;
        let wnd = self.wnd_unused();
        self.emit_acks();
        let ask = self.control(Command::WindowAsk, 0, now as u32);
        let tell = self.control(Command::WindowTell, 0, now as u32);

        // Window probing while the peer's window is closed.
        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT_MS;
                self.probe_at = now + self.probe_wait;
            } else if now >= self.probe_at {
                self.probe_wait = (self.probe_wait * 3 / 2).min(PROBE_LIMIT_MS);
                self.probe_at = now + self.probe_wait;
                self.probe_ask = true;
            }
        } else {
            self.probe_wait = 0;
        }
        if std::mem::take(&mut self.probe_ask) {
            self.emit(ask);
        }
        if std::mem::take(&mut self.probe_tell) {
            self.emit(tell);
        }

        // Cut queued bytes into new segments as far as the windows allow.
        let mut cwnd = self.snd_wnd.min(self.rmt_wnd);
        if !self.nocwnd {
            cwnd = cwnd.min(self.cwnd);
        }
        // The rate cap counts what is really outstanding (not the span from snd_una), so a
        // hole left by a lost segment does not stall new data.
        let cap_bytes = self.rate_limit().map(|c| c as usize * self.mss);
        let mut new_segments = 0;
        while self.snd_nxt.wrapping_sub(self.snd_una) < cwnd
            && self.queued_len() > 0
            && cap_bytes.is_none_or(|c| self.in_flight_bytes < c)
        {
            new_segments += 1;
            let len = self.queued_len().min(self.mss);
            let start = self.queued_from;
            self.queued_from += len as u64;
            self.in_flight_bytes += len;
            self.stats.segments_sent += 1;
            self.stats.bytes_sent += len as u64;
            self.snd_buf.push_back(InFlight {
                start,
                len,
                sent_at: now,
                resend_at: now,
                rto: self.rto,
                fastack: 0,
                xmit: 0,
                acked: false,
            });
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
        }
        if self.queued_len() == 0 && cap_bytes.is_none_or(|c| self.in_flight_bytes < c) {
            self.rate.on_app_limited();
        }

        // First transmissions, timeouts and fast resends. Only the new tail is visited
        // unless a timer or a fast resend is due somewhere in the window.
        let full = now >= self.next_resend || self.fastack_due;
        let skip = if full {
            0
        } else {
            self.snd_buf.len() - new_segments
        };
        let mut next_resend = if full { u64::MAX } else { self.next_resend };
        let first_extra = if self.nodelay { 0 } else { self.rto >> 3 };
        let backoff_cap = self.rto.max(BACKOFF_CAP_MS);
        let (mut lost, mut fast) = (false, false);
        let mut sn = self.snd_una.wrapping_add(skip as u32);
        for seg in self.snd_buf.range_mut(skip..) {
            let this_sn = sn;
            sn = sn.wrapping_add(1);
            if seg.acked {
                continue;
            }
            let send = if seg.xmit == 0 {
                seg.rto = self.rto;
                seg.resend_at = now + u64::from(seg.rto + first_extra);
                true
            } else if now >= seg.resend_at {
                let step = if self.nodelay {
                    seg.rto / 2
                } else {
                    seg.rto.max(self.rto)
                };
                seg.rto = seg.rto.saturating_add(step).min(backoff_cap);
                if seg.rto > self.rto {
                    self.backed_off = true;
                }
                seg.resend_at = now + u64::from(seg.rto);
                self.stats.retransmits += 1;
                lost = true;
                true
            } else if self.fast_resend > 0
                && seg.fastack >= self.fast_resend
                && seg.xmit <= FASTACK_LIMIT
            {
                seg.fastack = 0;
                seg.resend_at = now + u64::from(seg.rto);
                self.stats.fast_retransmits += 1;
                fast = true;
                true
            } else {
                false
            };
            next_resend = next_resend.min(seg.resend_at);
            if !send {
                continue;
            }
            seg.xmit += 1;
            seg.sent_at = now;
            let hdr = SegmentHeader {
                conv: self.conv,
                cmd: Command::Push,
                frg: 0,
                wnd,
                ts: now as u32,
                sn: this_sn,
                una: self.rcv_nxt,
                len: seg.len as u32,
            };
            self.pending.push_back((hdr, false));
        }
        self.next_resend = next_resend;
        if full {
            self.fastack_due = false;
        }
        self.end_packet();

        // KCP's congestion response.
        if fast {
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            self.ssthresh = (inflight / 2).max(2);
            self.cwnd = self.ssthresh + self.fast_resend;
            self.incr = self.cwnd as usize * self.mss;
        }
        if lost {
            self.ssthresh = (cwnd / 2).max(2);
            self.cwnd = 1;
            self.incr = self.mss;
        }
    }
}
