//! Input side of a KCP session: ACK and UNA processing, RTT estimation, congestion window
//! growth, and reassembly of received segments.

use super::{seq_diff, KcpSession, FASTACK_LIMIT, RTO_MAX};

impl KcpSession {
    pub(super) fn parse_una(&mut self, una: u32) {
        let adv = una.wrapping_sub(self.snd_una);
        if adv == 0 || adv > self.snd_nxt.wrapping_sub(self.snd_una) {
            return;
        }
        for _ in 0..adv {
            if let Some(seg) = self.snd_buf.pop_front() {
                if !seg.acked {
                    self.in_flight_bytes -= seg.len;
                    self.rate.on_delivered(1);
                }
            }
        }
        self.snd_una = una;
        self.pop_acked();
    }

    /// Releases the ring bytes of segments no longer in the send buffer.
    pub(super) fn release_sent(&mut self) {
        let keep_from = self.snd_buf.front().map_or(self.queued_from, |s| s.start);
        let done = keep_from.saturating_sub(self.snd_base);
        if done > 0 {
            self.snd_ring.consume(done as usize);
            self.snd_base = keep_from;
        }
    }

    /// Marks `sn` acknowledged; true if it was outstanding.
    pub(super) fn parse_ack(&mut self, sn: u32) -> bool {
        let off = sn.wrapping_sub(self.snd_una) as usize;
        let Some(seg) = self.snd_buf.get_mut(off) else {
            return false;
        };
        if seg.acked {
            return false;
        }
        seg.acked = true;
        self.in_flight_bytes -= seg.len;
        self.rate.on_delivered(1);
        self.pop_acked();
        true
    }

    pub(super) fn pop_acked(&mut self) {
        while self.snd_buf.front().is_some_and(|s| s.acked) {
            self.snd_buf.pop_front();
            self.snd_una = self.snd_una.wrapping_add(1);
        }
    }

    pub(super) fn parse_fastack(&mut self, sn: u32, ts: u32) {
        let end = seq_diff(sn, self.snd_una);
        if end <= 0 {
            return;
        }
        for seg in self.snd_buf.iter_mut().take(end as usize) {
            if !seg.acked && seq_diff(ts, seg.sent_at as u32) >= 0 {
                seg.fastack = seg.fastack.saturating_add(1);
                if self.fast_resend > 0
                    && seg.fastack >= self.fast_resend
                    && seg.xmit <= FASTACK_LIMIT
                {
                    self.fastack_due = true;
                }
            }
        }
    }

    pub(super) fn update_rtt(&mut self, rtt: u32) {
        if self.srtt == 0 {
            self.srtt = rtt.max(1);
            self.rttvar = rtt / 2;
        } else {
            let delta = rtt.abs_diff(self.srtt);
            self.rttvar = (3 * self.rttvar + delta) / 4;
            self.srtt = ((7 * self.srtt + rtt) / 8).max(1);
        }
        let rto = self.srtt + self.interval.max(4 * self.rttvar);
        self.rto = rto.clamp(self.min_rto, RTO_MAX);
    }

    pub(super) fn grow_cwnd(&mut self) {
        if self.cwnd >= self.rmt_wnd {
            return;
        }
        let mss = self.mss;
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
            self.incr += mss;
        } else {
            self.incr = self.incr.max(mss);
            self.incr += mss * mss / self.incr + mss / 16;
            if (self.cwnd as usize + 1) * mss <= self.incr {
                self.cwnd = u32::try_from(self.incr.div_ceil(mss)).unwrap_or(u32::MAX);
            }
        }
        if self.cwnd > self.rmt_wnd {
            self.cwnd = self.rmt_wnd;
            self.incr = self.rmt_wnd as usize * mss;
        }
    }

    /// After progress, backed-off segments return to the current RTO (TCP does the same on
    /// a new ACK), so a window stalled by an outage is resent one RTO after the link returns.
    pub(super) fn reset_backoff(&mut self) {
        for seg in self.snd_buf.iter_mut().filter(|s| !s.acked && s.xmit > 0) {
            seg.rto = self.rto;
            seg.resend_at = seg.resend_at.min(seg.sent_at + u64::from(self.rto));
        }
        self.backed_off = false;
        self.next_resend = 0;
    }

    pub(super) fn parse_data(&mut self, sn: u32, ts: u32, data: &[u8]) {
        let off = seq_diff(sn, self.rcv_nxt);
        if off >= self.rcv_wnd as i32 {
            self.stats.duplicates += 1;
            return;
        }
        // Duplicates are acknowledged again: the first ACK may have been lost.
        if self.acklist.len() < 4 * self.rcv_wnd as usize {
            self.acklist.push((sn, ts));
        }
        if off < 0 {
            self.stats.duplicates += 1;
            return;
        }
        let idx = off as usize;
        if self.rcv_buf.len() <= idx {
            self.rcv_buf.resize(idx + 1, None);
        }
        match self.rcv_buf.get_mut(idx) {
            Some(slot @ None) => {
                let mut buf = self
                    .rcv_pool
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(self.mss));
                buf.clear();
                buf.extend_from_slice(data);
                *slot = Some(buf);
                self.stats.segments_received += 1;
                self.stats.bytes_received += data.len() as u64;
            }
            _ => self.stats.duplicates += 1,
        }
        self.move_ready();
    }

    /// Moves in-order segments from the reorder buffer to the receive queue.
    pub(super) fn move_ready(&mut self) {
        while self.rcv_queue.len() < self.rcv_wnd as usize
            && matches!(self.rcv_buf.front(), Some(Some(_)))
        {
            if let Some(Some(data)) = self.rcv_buf.pop_front() {
                self.rcv_queue.push_back(data);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            }
        }
    }
}
