//! Output side of a KCP session: ACKs, window probes, new segments, retransmissions, and
//! packing segments into packets of at most `mtu` bytes.

use std::collections::VecDeque;

use super::{
    Command, InFlight, KcpSession, SegmentHeader, BACKOFF_CAP_MS, FASTACK_LIMIT, HEADER_LEN,
    PROBE_INIT_MS, PROBE_LIMIT_MS,
};

impl KcpSession {
    pub(super) fn wnd_unused(&self) -> u16 {
        let free = self.rcv_wnd.saturating_sub(self.rcv_queue.len() as u32);
        u16::try_from(free).unwrap_or(u16::MAX)
    }

    /// Appends one segment to the packet being built, starting a new packet when it would
    /// exceed the MTU.
    pub(super) fn emit(&mut self, hdr: SegmentHeader, data: &[u8]) {
        emit_into(&mut self.cur, &mut self.tx, self.mtu, &hdr, data);
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
            self.emit(hdr, &[]);
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
        if !self.cur.is_empty() {
            self.tx.push_back(std::mem::take(&mut self.cur));
        }
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
            self.emit(ask, &[]);
        }
        if std::mem::take(&mut self.probe_tell) {
            self.emit(tell, &[]);
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
            && !self.snd_queue.is_empty()
            && cap_bytes.is_none_or(|c| self.in_flight_bytes < c)
        {
            new_segments += 1;
            let n = self.snd_queue.len().min(self.mss);
            let data = self.snd_queue.split_to(n).freeze();
            self.in_flight_bytes += data.len();
            self.stats.segments_sent += 1;
            self.stats.bytes_sent += data.len() as u64;
            self.snd_buf.push_back(InFlight {
                data,
                sent_at: now,
                resend_at: now,
                rto: self.rto,
                fastack: 0,
                xmit: 0,
                acked: false,
            });
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
        }
        if self.snd_queue.is_empty() && cap_bytes.is_none_or(|c| self.in_flight_bytes < c) {
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
                len: seg.data.len() as u32,
            };
            emit_into(&mut self.cur, &mut self.tx, self.mtu, &hdr, &seg.data);
        }
        self.next_resend = next_resend;
        if full {
            self.fastack_due = false;
        }
        if !self.cur.is_empty() {
            self.tx.push_back(std::mem::take(&mut self.cur));
        }

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

fn emit_into(
    cur: &mut Vec<u8>,
    tx: &mut VecDeque<Vec<u8>>,
    mtu: usize,
    hdr: &SegmentHeader,
    data: &[u8],
) {
    if !cur.is_empty() && cur.len() + HEADER_LEN + data.len() > mtu {
        tx.push_back(std::mem::replace(cur, Vec::with_capacity(mtu)));
    }
    if cur.capacity() == 0 {
        cur.reserve(mtu);
    }
    hdr.emit(cur);
    cur.extend_from_slice(data);
}
