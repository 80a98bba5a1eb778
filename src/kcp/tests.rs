use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn cfg() -> KcpConfig {
    KcpConfig {
        nodelay: true,
        interval_ms: 10,
        resend: 2,
        nocongestion: true,
        mtu: 1400,
        sndwnd: 128,
        rcvwnd: 128,
        wdelay: false,
        acknodelay: true,
        rate_cap: false,
    }
}

#[test]
fn segment_header_byte_literal() {
    let hdr = SegmentHeader {
        conv: 0x0403_0201,
        cmd: Command::Push,
        frg: 0,
        wnd: 0x0605,
        ts: 0x0a09_0807,
        sn: 0x0e0d_0c0b,
        una: 0x1211_100f,
        len: 3,
    };
    let mut out = Vec::new();
    hdr.emit(&mut out);
    out.extend_from_slice(b"xyz");
    #[rustfmt::skip]
    let want = [
        1, 2, 3, 4, 81, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
        15, 16, 17, 18, 3, 0, 0, 0, b'x', b'y', b'z',
    ];
    assert_eq!(out, want);
    assert_eq!(SegmentHeader::parse(&out), Ok((hdr, &b"xyz"[..])));
}

#[test]
fn malformed_segments_are_errors() {
    let now = Instant::now();
    let mut k = KcpSession::new(7, &cfg(), now);
    assert_eq!(k.handle_input(&[0u8; 23], now), Err(KcpError::TooShort(23)));
    let mut seg = Vec::new();
    SegmentHeader {
        conv: 7,
        cmd: Command::Push,
        frg: 0,
        wnd: 1,
        ts: 0,
        sn: 0,
        una: 0,
        len: 10,
    }
    .emit(&mut seg);
    assert_eq!(
        k.handle_input(&seg, now),
        Err(KcpError::Truncated {
            claimed: 10,
            available: 0
        })
    );
    seg[4] = 99;
    assert_eq!(k.handle_input(&seg, now), Err(KcpError::UnknownCommand(99)));
    seg[4] = 82;
    seg[20] = 0;
    seg[0] = 8;
    assert_eq!(
        k.handle_input(&seg, now),
        Err(KcpError::ConvMismatch {
            expected: 7,
            got: 8
        })
    );
    let mut buf = [0u8; 16];
    assert_eq!(k.recv(&mut buf), 0);
}

/// A lone ACK segment from the peer of session 1.
fn ack(sn: u32) -> Vec<u8> {
    let mut seg = Vec::new();
    SegmentHeader {
        conv: 1,
        cmd: Command::Ack,
        frg: 0,
        wnd: 128,
        ts: 0,
        sn,
        una: 0,
        len: 0,
    }
    .emit(&mut seg);
    seg
}

#[test]
fn poll_transmit_packs_into_the_callers_buffer_and_skips_acked_segments() {
    let now = Instant::now();
    let mut a = KcpSession::new(1, &cfg(), now);
    // mss = 1400 - 24 = 1376: segments of 1376, 1376 and 248 bytes, one per packet.
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    assert_eq!(a.send(&data).unwrap(), 3000);
    a.flush(now);
    let mut buf = [0u8; 2048];
    let n = a.poll_transmit(&mut buf).expect("first packet");
    assert_eq!(n, HEADER_LEN + 1376);
    let (hdr, body) = SegmentHeader::parse(&buf[..n]).unwrap();
    assert_eq!((hdr.cmd, hdr.sn, hdr.len), (Command::Push, 0, 1376));
    assert_eq!(body, &data[..1376]);
    // Segment 1 is acknowledged before it left: it is not sent.
    a.handle_input(&ack(1), now).unwrap();
    let n = a.poll_transmit(&mut buf).expect("last packet");
    let (hdr, body) = SegmentHeader::parse(&buf[..n]).unwrap();
    assert_eq!((hdr.sn, body), (2, &data[2752..]));
    assert_eq!(a.poll_transmit(&mut buf), None);
    assert_eq!(a.stats().packets_sent, 2);

    // The receiver lends its segments in order; a failing reader stops after its chunk.
    let mut b = KcpSession::new(1, &cfg(), now);
    let mut c = KcpSession::new(1, &cfg(), now);
    c.send(&data).unwrap();
    c.flush(now);
    while let Some(n) = c.poll_transmit(&mut buf) {
        b.handle_input(&buf[..n], now).unwrap();
    }
    let mut got = Vec::new();
    let r = b.recv_with(|chunk| {
        got.extend_from_slice(chunk);
        if got.len() > 2000 {
            Err("enough")
        } else {
            Ok(())
        }
    });
    assert_eq!((r, got.len()), (Err("enough"), 2752));
    let r = b.recv_with(|chunk| {
        got.extend_from_slice(chunk);
        Ok::<(), ()>(())
    });
    assert_eq!(r, Ok(248));
    assert_eq!(got, data);
    assert_eq!(b.recv_with(|_| Ok::<(), ()>(())), Ok(0));
}

#[test]
fn a_segment_larger_than_the_buffer_is_skipped_not_stuck() {
    let now = Instant::now();
    let mut a = KcpSession::new(1, &cfg(), now);
    a.send(&[1u8; 1000]).unwrap();
    a.flush(now);
    // Too small for the segment: it is dropped (and resent after its RTO) so the queue
    // behind it does not stall.
    assert_eq!(a.poll_transmit(&mut [0u8; 100]), None);
    assert_eq!(a.poll_transmit(&mut [0u8; 2048]), None);
    a.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(a.poll_transmit(&mut [0u8; 2048]), Some(HEADER_LEN + 1000));
}

/// Two sessions over an in-memory link in virtual time.
struct Pair {
    a: KcpSession,
    b: KcpSession,
    now: Instant,
    /// (deliver at, to b?, packet)
    wire: VecDeque<(Instant, bool, Vec<u8>)>,
    delay: Duration,
    /// Drop every packet while this returns true.
    drop: Box<dyn FnMut(Instant, u64) -> bool>,
    sent: u64,
}

impl Pair {
    fn new(cfg: &KcpConfig, delay: Duration) -> Self {
        let now = Instant::now();
        Pair {
            a: KcpSession::new(1, cfg, now),
            b: KcpSession::new(1, cfg, now),
            now,
            wire: VecDeque::new(),
            delay,
            drop: Box::new(|_, _| false),
            sent: 0,
        }
    }

    fn transmit(&mut self) {
        for to_b in [true, false] {
            let k = if to_b { &mut self.a } else { &mut self.b };
            let mut buf = [0u8; 2048];
            while let Some(n) = k.poll_transmit(&mut buf) {
                assert!(n <= 1400);
                let p = buf[..n].to_vec();
                self.sent += 1;
                if !(self.drop)(self.now, self.sent) {
                    self.wire.push_back((self.now + self.delay, to_b, p));
                }
            }
        }
    }

    /// Advances virtual time by one step, delivering and ticking.
    fn step(&mut self) {
        self.transmit();
        let next = [
            self.a.poll_timeout(),
            self.b.poll_timeout(),
            Some(self.wire.front().map_or(self.now + self.delay, |w| w.0)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.now);
        self.now = self.now.max(next);
        while self.wire.front().is_some_and(|w| w.0 <= self.now) {
            let (_, to_b, p) = self.wire.pop_front().unwrap();
            let k = if to_b { &mut self.b } else { &mut self.a };
            k.handle_input(&p, self.now).unwrap();
            k.flush(self.now);
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.transmit();
    }
}

/// Sends `data` from a to b; returns the bytes b received and the virtual time it took.
fn transfer(p: &mut Pair, data: &[u8], limit: Duration) -> (Vec<u8>, Duration) {
    let start = p.now;
    let mut off = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < data.len() {
        assert!(p.now - start < limit, "transfer stalled at {}", got.len());
        let n = p.a.send(&data[off..]).unwrap();
        assert!(n <= 2 * 128 * 1376);
        off += n;
        p.a.flush(p.now);
        p.step();
        loop {
            let n = p.b.recv(&mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    (got, p.now - start)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

#[test]
fn lossless_transfer_is_exact() {
    let mut p = Pair::new(&cfg(), Duration::from_millis(20));
    let data = pattern(1024 * 1024);
    let (got, _) = transfer(&mut p, &data, Duration::from_secs(30));
    assert_eq!(got, data);
    let s = p.a.stats();
    assert_eq!(s.retransmits, 0);
    assert_eq!(s.bytes_sent, data.len() as u64);
    assert!(s.srtt_ms >= 40 && s.srtt_ms < 100, "srtt {}", s.srtt_ms);
    assert_eq!(p.b.stats().bytes_received, data.len() as u64);
}

#[test]
fn lossy_transfer_is_exact() {
    let mut p = Pair::new(&cfg(), Duration::from_millis(30));
    p.drop = Box::new(|_, n| n % 7 == 3 || n % 13 == 0);
    let data = pattern(512 * 1024);
    let (got, _) = transfer(&mut p, &data, Duration::from_secs(60));
    assert_eq!(got, data);
    let s = p.a.stats();
    assert!(s.retransmits + s.fast_retransmits > 0);
}

#[test]
fn congestion_control_mode_transfers() {
    let c = KcpConfig {
        nodelay: false,
        nocongestion: false,
        resend: 0,
        interval_ms: 40,
        ..cfg()
    };
    let mut p = Pair::new(&c, Duration::from_millis(25));
    p.drop = Box::new(|_, n| n % 17 == 5);
    let data = pattern(256 * 1024);
    let (got, _) = transfer(&mut p, &data, Duration::from_secs(120));
    assert_eq!(got, data);
}

#[test]
fn send_capacity_is_bounded() {
    let now = Instant::now();
    let mut k = KcpSession::new(1, &cfg(), now);
    let cap = k.send_capacity();
    assert_eq!(cap, 2 * 128 * 1376);
    assert_eq!(k.send(&vec![0u8; cap + 10]).unwrap(), cap);
    assert_eq!(k.send_capacity(), 0);
    assert_eq!(k.send(b"more").unwrap(), 0);
    k.flush(now);
    // The window moved 128 segments in flight; the total stays bounded.
    assert_eq!(k.stats().in_flight, 128);
    assert_eq!(k.send_capacity(), 0);
    let mut packets = 0;
    let mut buf = [0u8; 2048];
    while let Some(n) = k.poll_transmit(&mut buf) {
        assert!(n <= 1400);
        packets += 1;
    }
    assert_eq!(packets, 128);
}

#[test]
fn outage_backoff_is_capped_and_recovers() {
    // 250 ms one-way, a 20 s total outage right after the transfer starts.
    let mut p = Pair::new(&cfg(), Duration::from_millis(250));
    let t0 = p.now;
    let outage = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(21));
    p.drop = Box::new(move |now, _| now >= outage.0 && now < outage.1);
    let data = pattern(2 * 1024 * 1024);
    let mut off = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut resumed = None;
    while got.len() < data.len() {
        assert!(
            p.now - t0 < Duration::from_secs(60),
            "stalled at {}",
            got.len()
        );
        off += p.a.send(&data[off..]).unwrap();
        p.a.flush(p.now);
        p.step();
        let before = got.len();
        loop {
            let n = p.b.recv(&mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if p.now >= outage.1 && got.len() > before && resumed.is_none() {
            resumed = Some(p.now - outage.1);
        }
    }
    assert!(got == data);
    // Delivery resumes within the cap plus a one-way delay and a tick of the link's return.
    let resumed = resumed.expect("data flowed after the outage");
    eprintln!("resumed {resumed:?} after the outage");
    assert!(
        resumed <= Duration::from_millis(3_500),
        "resumed after {resumed:?}"
    );
    assert!(p.a.stats().retransmits > 0);
}

#[test]
fn single_segment_backoff_is_capped() {
    let mut p = Pair::new(&cfg(), Duration::from_millis(250));
    let t0 = p.now;
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log2 = log.clone();
    p.drop = Box::new(move |now, _| {
        log2.borrow_mut().push(now);
        true
    });
    p.a.send(b"lonely").unwrap();
    p.a.flush(p.now);
    while p.now - t0 < Duration::from_secs(30) {
        p.step();
    }
    let times = log.borrow();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // The gaps grow (×1.5 with nodelay) and then stay at the 3 s cap.
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    let cap = Duration::from_millis(u64::from(BACKOFF_CAP_MS) + 10);
    assert!(gaps.iter().all(|g| *g <= cap), "{gaps:?}");
    assert!(
        *gaps.last().unwrap() >= Duration::from_millis(2_990),
        "{gaps:?}"
    );
    assert_eq!(p.a.stats().retransmits as usize, times.len() - 1);
}

#[test]
fn zero_window_is_probed_and_reopened() {
    let c = KcpConfig {
        rcvwnd: 16,
        sndwnd: 64,
        ..cfg()
    };
    let mut p = Pair::new(&c, Duration::from_millis(10));
    let data = pattern(100 * 1376);
    assert_eq!(p.a.send(&data).unwrap(), data.len());
    // b does not read: its window closes after 16 segments.
    for _ in 0..500 {
        p.a.flush(p.now);
        p.step();
    }
    assert_eq!(p.a.stats().remote_window, 0);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..100_000 {
        let n = p.b.recv(&mut buf);
        got.extend_from_slice(&buf[..n]);
        if got.len() == data.len() {
            break;
        }
        p.b.flush(p.now);
        p.step();
    }
    assert_eq!(got.len(), data.len());
    let first_diff = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_diff, None);
}

fn segment_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        81u8..=84,
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(cmd, frg, wnd, ts, sn, una, data)| {
            let mut v = Vec::new();
            let hdr = SegmentHeader {
                conv: 1,
                cmd: Command::from_code(cmd).expect("81..=84"),
                frg,
                wnd,
                ts,
                sn: sn % 300,
                una: if una % 2 == 0 { una } else { una % 300 },
                len: data.len() as u32,
            };
            hdr.emit(&mut v);
            v.extend_from_slice(&data);
            v
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(packets in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let now = Instant::now();
        let mut k = KcpSession::new(1, &cfg(), now);
        k.send(&[1u8; 5000]).unwrap();
        k.flush(now);
        for (i, p) in packets.iter().enumerate() {
            let t = now + Duration::from_millis(i as u64 * 7);
            let _ = k.handle_input(p, t);
            k.handle_timeout(t);
            while k.poll_transmit(&mut [0u8; 2048]).is_some() {}
            let mut buf = [0u8; 300];
            k.recv(&mut buf);
        }
    }

    #[test]
    fn hostile_fields_never_panic(packets in proptest::collection::vec(
        proptest::collection::vec(segment_strategy(), 1..4), 0..30)) {
        let now = Instant::now();
        let mut k = KcpSession::new(1, &cfg(), now);
        k.send(&[1u8; 20_000]).unwrap();
        k.flush(now);
        for (i, segs) in packets.iter().enumerate() {
            let t = now + Duration::from_millis(i as u64 * 13);
            prop_assert!(k.handle_input(&segs.concat(), t).is_ok());
            k.flush(t);
            let mut out = [0u8; 2048];
            while let Some(n) = k.poll_transmit(&mut out) {
                prop_assert!(n <= 1400);
            }
            let mut buf = [0u8; 1000];
            while k.recv(&mut buf) > 0 {}
            let s = k.stats();
            prop_assert!(s.in_flight <= 128);
            prop_assert!(s.rto_ms <= 60_000);
        }
    }
}
