use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::frame::{Frame, FrameError};
use super::*;

fn cfg() -> MuxConfig {
    MuxConfig {
        stream_window: 64 * 1024,
        session_window: 1024 * 1024,
        keepalive: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_streams: 64,
    }
}

/// Moves everything `from` can emit into `to`; returns the bytes moved.
fn pump(from: &mut Mux, to: &mut Mux, now: Instant) -> usize {
    let mut buf = Vec::new();
    let mut total = 0;
    while from.has_output() {
        buf.clear();
        let n = from.poll_output(&mut buf, 64 * 1024, now);
        if n == 0 {
            break;
        }
        total += n;
        to.handle_bytes(&buf, now).expect("peer output is valid");
    }
    total
}

fn events(m: &mut Mux) -> Vec<MuxEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn data_of(evs: &[MuxEvent], want: StreamId) -> Vec<u8> {
    evs.iter()
        .filter_map(|e| match e {
            MuxEvent::Data { id, data } if *id == want => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn frame_byte_literals() {
    let cases: Vec<(Frame<'_>, Vec<u8>)> = vec![
        (
            Frame::Open {
                id: 1,
                payload: b"hi",
            },
            vec![1, 0, 0, 2, 0, 0, 0, 1, b'h', b'i'],
        ),
        (
            Frame::Data {
                id: 0x0102_0304,
                data: b"abc",
            },
            vec![1, 1, 0, 3, 1, 2, 3, 4, b'a', b'b', b'c'],
        ),
        (Frame::Fin { id: 2 }, vec![1, 2, 0, 0, 0, 0, 0, 2]),
        (Frame::Rst { id: 3 }, vec![1, 3, 0, 0, 0, 0, 0, 3]),
        (
            Frame::Window {
                id: 5,
                consumed: 0x0a0b_0c0d,
                window: 0x0001_0000,
            },
            vec![1, 4, 0, 8, 0, 0, 0, 5, 0x0a, 0x0b, 0x0c, 0x0d, 0, 1, 0, 0],
        ),
        (
            Frame::Ping {
                opaque: 0x0102_0304_0506_0708,
            },
            vec![1, 5, 0, 8, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (
            Frame::Pong { opaque: 9 },
            vec![1, 6, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
        ),
    ];
    for (frame, bytes) in cases {
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(out, bytes, "{frame:?}");
        assert_eq!(frame.encoded_len(), bytes.len());
        assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
        // Every strict prefix is incomplete, not an error.
        for cut in 0..bytes.len() {
            assert_eq!(
                Frame::decode(&bytes[..cut]),
                Ok(None),
                "{frame:?} cut {cut}"
            );
        }
    }
}

#[test]
fn malformed_frames_are_errors() {
    let bad: Vec<(Vec<u8>, FrameError)> = vec![
        (vec![2, 1, 0, 0, 0, 0, 0, 1], FrameError::Version(2)),
        (vec![1, 7, 0, 0, 0, 0, 0, 1], FrameError::Command(7)),
        (
            vec![1, 2, 0, 1, 0, 0, 0, 1, 0],
            FrameError::Length { cmd: 2, len: 1 },
        ),
        (
            vec![1, 4, 0, 4, 0, 0, 0, 1],
            FrameError::Length { cmd: 4, len: 4 },
        ),
        (
            vec![1, 0, 0x04, 0x01, 0, 0, 0, 1],
            FrameError::Length { cmd: 0, len: 1025 },
        ),
        (
            vec![1, 5, 0, 8, 0, 0, 0, 1],
            FrameError::StreamId { cmd: 5, id: 1 },
        ),
        (
            vec![1, 1, 0, 0, 0, 0, 0, 0],
            FrameError::StreamId { cmd: 1, id: 0 },
        ),
    ];
    for (bytes, err) in bad {
        assert_eq!(Frame::decode(&bytes), Err(err.clone()));
        let mut m = Mux::new(cfg(), false, Instant::now());
        let got = m.handle_bytes(&bytes, Instant::now());
        assert_eq!(got, Err(MuxError::Protocol(ProtocolError::Frame(err))));
        // The session stays failed.
        assert!(m.handle_bytes(&[1], Instant::now()).is_err());
        assert!(m.open_stream(b"").is_err());
    }
}

/// A client stream that opens, sends, finishes, as raw frame bytes.
fn client_script() -> Vec<u8> {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    let a = c.open_stream(b"target-a").unwrap();
    let b = c.open_stream(b"target-b").unwrap();
    c.write(a, &[7u8; 3000]).unwrap();
    c.write(b, b"hello").unwrap();
    c.finish(b);
    let mut out = Vec::new();
    while c.has_output() {
        c.poll_output(&mut out, 1000, now);
    }
    out
}

#[test]
fn split_at_every_boundary_decodes_the_same() {
    let script = client_script();
    let now = Instant::now();
    let mut whole = Mux::new(cfg(), false, now);
    whole.handle_bytes(&script, now).unwrap();
    let expected = events(&mut whole);
    assert!(expected.len() >= 5, "{expected:?}");
    for cut in 0..=script.len() {
        let mut m = Mux::new(cfg(), false, now);
        m.handle_bytes(&script[..cut], now).unwrap();
        m.handle_bytes(&script[cut..], now).unwrap();
        let got = events(&mut m);
        // Data may arrive in the same frames: compare after merging per stream.
        assert_eq!(data_of(&got, 1), data_of(&expected, 1), "cut {cut}");
        assert_eq!(data_of(&got, 3), b"hello", "cut {cut}");
        let ctrl = |e: &Vec<MuxEvent>| {
            e.iter()
                .filter(|e| !matches!(e, MuxEvent::Data { .. }))
                .count()
        };
        assert_eq!(ctrl(&got), ctrl(&expected), "cut {cut}");
    }
    let mut m = Mux::new(cfg(), false, now);
    for b in &script {
        m.handle_bytes(std::slice::from_ref(b), now).unwrap();
    }
    assert_eq!(events(&mut m), expected);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let now = Instant::now();
        let mut m = Mux::new(cfg(), false, now);
        for c in &chunks {
            let _ = m.handle_bytes(c, now);
            while m.poll_event().is_some() {}
            let mut out = Vec::new();
            m.poll_output(&mut out, 4096, now);
        }
    }

    #[test]
    fn valid_headers_random_payloads_never_panic(frames in proptest::collection::vec(
        (0u8..7, 0u32..8, proptest::collection::vec(any::<u8>(), 0..16)), 0..32)) {
        let now = Instant::now();
        let mut m = Mux::new(cfg(), false, now);
        for (cmd, id, payload) in &frames {
            let mut b = vec![1, *cmd];
            b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(payload);
            let _ = m.handle_bytes(&b, now);
            while let Some(e) = m.poll_event() {
                if let MuxEvent::Data { id, data } = e {
                    m.consumed(id, data.len());
                }
            }
            let mut out = Vec::new();
            m.poll_output(&mut out, 4096, now);
        }
    }
}

#[test]
fn writer_cannot_exceed_window_until_peer_consumes() {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    let mut s = Mux::new(cfg(), false, now);
    let id = c.open_stream(b"x").unwrap();
    c.write(id, &vec![1u8; 1024 * 1024]).unwrap();
    for _ in 0..10 {
        pump(&mut c, &mut s, now);
        pump(&mut s, &mut c, now);
    }
    let got = data_of(&events(&mut s), id);
    assert_eq!(got.len(), 64 * 1024, "exactly one window arrives");
    assert!(!c.has_output(), "sender is blocked, not spinning");
    // Consuming less than a quarter window releases nothing.
    s.consumed(id, 16 * 1024 - 1);
    assert_eq!(pump(&mut s, &mut c, now), 0);
    s.consumed(id, 1);
    assert!(pump(&mut s, &mut c, now) > 0);
    pump(&mut c, &mut s, now);
    let more = data_of(&events(&mut s), id);
    assert_eq!(more.len(), 16 * 1024);
}

#[test]
fn peer_exceeding_window_gets_stream_reset() {
    let now = Instant::now();
    let mut s = Mux::new(cfg(), false, now);
    let mut bytes = Vec::new();
    Frame::Open {
        id: 1,
        payload: b"",
    }
    .encode(&mut bytes);
    let chunk = vec![0u8; 32 * 1024];
    for _ in 0..3 {
        Frame::Data {
            id: 1,
            data: &chunk,
        }
        .encode(&mut bytes);
    }
    s.handle_bytes(&bytes, now).unwrap();
    let evs = events(&mut s);
    assert!(evs.contains(&MuxEvent::Reset { id: 1 }), "{evs:?}");
    assert_eq!(s.stream_count(), 0);
    assert_eq!(s.stats().violations, 1);
    let mut out = Vec::new();
    s.poll_output(&mut out, 4096, now);
    let mut rst = Vec::new();
    Frame::Rst { id: 1 }.encode(&mut rst);
    assert!(out.windows(rst.len()).any(|w| w == rst.as_slice()));
    // More DATA for the reset stream is ignored, not an error.
    let mut late = Vec::new();
    Frame::Data {
        id: 1,
        data: b"late",
    }
    .encode(&mut late);
    s.handle_bytes(&late, now).unwrap();
    assert!(events(&mut s).is_empty());
}

#[test]
fn data_on_never_opened_stream_is_protocol_error() {
    let now = Instant::now();
    let mut s = Mux::new(cfg(), false, now);
    let mut b = Vec::new();
    Frame::Data { id: 9, data: b"x" }.encode(&mut b);
    assert_eq!(
        s.handle_bytes(&b, now),
        Err(MuxError::Protocol(ProtocolError::Unopened(9)))
    );
    // The server must not accept an OPEN with its own (even) parity, nor a reused id.
    let mut s = Mux::new(cfg(), false, now);
    let mut b = Vec::new();
    Frame::Open {
        id: 2,
        payload: b"",
    }
    .encode(&mut b);
    assert!(s.handle_bytes(&b, now).is_err());
    let mut s = Mux::new(cfg(), false, now);
    let mut b = Vec::new();
    Frame::Open {
        id: 3,
        payload: b"",
    }
    .encode(&mut b);
    Frame::Open {
        id: 1,
        payload: b"",
    }
    .encode(&mut b);
    assert_eq!(
        s.handle_bytes(&b, now),
        Err(MuxError::Protocol(ProtocolError::BadOpen(1)))
    );
}

#[test]
fn small_stream_is_not_starved_by_bulk() {
    let big = MuxConfig {
        stream_window: 32 * 1024 * 1024,
        session_window: 64 * 1024 * 1024,
        ..cfg()
    };
    let now = Instant::now();
    let mut c = Mux::new(big, true, now);
    let bulk = c.open_stream(b"bulk").unwrap();
    let small = c.open_stream(b"small").unwrap();
    c.write(bulk, &vec![0u8; 10 * 1024 * 1024]).unwrap();
    c.write(small, &vec![1u8; 10 * 1024]).unwrap();
    c.finish(small);
    let mut small_sent = 0;
    let mut rounds = 0;
    while small_sent < 10 * 1024 {
        rounds += 1;
        assert!(
            rounds <= 3,
            "small stream still waiting after {rounds} rounds"
        );
        let mut out = Vec::new();
        assert!(c.poll_output(&mut out, 32 * 1024, now) > 0);
        for e in events(&mut c) {
            if let MuxEvent::Sent { id, bytes } = e {
                if id == small {
                    small_sent += bytes;
                }
            }
        }
    }
    assert!(c.has_output(), "bulk still pending");
}

#[test]
fn output_respects_max_and_frame_boundaries() {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    let id = c.open_stream(b"open").unwrap();
    c.write(id, &[5u8; 5000]).unwrap();
    c.finish(id);
    let mut all = Vec::new();
    while c.has_output() {
        let before = all.len();
        let n = c.poll_output(&mut all, 100, now);
        assert!(n <= 100 && n > 0);
        assert_eq!(all.len() - before, n);
    }
    let mut s = Mux::new(cfg(), false, now);
    s.handle_bytes(&all, now).unwrap();
    let evs = events(&mut s);
    assert_eq!(data_of(&evs, id), vec![5u8; 5000]);
    assert_eq!(evs.last(), Some(&MuxEvent::Finished { id }));
}

#[test]
fn fin_both_ways_removes_stream() {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    let mut s = Mux::new(cfg(), false, now);
    let id = c.open_stream(b"t").unwrap();
    c.write(id, b"ping").unwrap();
    c.finish(id);
    assert_eq!(c.write(id, b"x"), Err(MuxError::Finished(id)));
    pump(&mut c, &mut s, now);
    let evs = events(&mut s);
    assert_eq!(
        evs.first(),
        Some(&MuxEvent::Opened {
            id,
            payload: b"t".to_vec()
        })
    );
    assert!(evs.contains(&MuxEvent::Finished { id }));
    s.write(id, b"pong").unwrap();
    s.finish(id);
    pump(&mut s, &mut c, now);
    assert_eq!(s.stream_count(), 0);
    assert_eq!(c.stream_count(), 0);
    let evs = events(&mut c);
    assert_eq!(data_of(&evs, id), b"pong");
    assert!(evs.contains(&MuxEvent::Finished { id }));
    assert_eq!(c.write(id, b"x"), Err(MuxError::UnknownStream(id)));
    c.finish(id);
    c.reset(id);
    c.consumed(id, 10);
    assert!(!c.has_output());
}

#[test]
fn reset_aborts_both_sides() {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    let mut s = Mux::new(cfg(), false, now);
    let id = c.open_stream(b"t").unwrap();
    pump(&mut c, &mut s, now);
    events(&mut s);
    s.write(id, &[0u8; 1000]).unwrap();
    s.reset(id);
    assert_eq!(s.stream_count(), 0);
    pump(&mut s, &mut c, now);
    assert_eq!(events(&mut c), vec![MuxEvent::Reset { id }]);
    assert_eq!(c.stream_count(), 0);
    assert_eq!(s.stats().session_outstanding, 0);
}

#[test]
fn keepalive_ping_after_idle_and_pong_rtt() {
    let t0 = Instant::now();
    let mut c = Mux::new(cfg(), true, t0);
    let mut s = Mux::new(cfg(), false, t0);
    assert_eq!(c.poll_timeout(), t0 + Duration::from_secs(10));
    c.handle_timeout(t0 + Duration::from_secs(9));
    assert!(!c.has_output(), "no PING before the keepalive interval");
    let t1 = t0 + Duration::from_secs(10);
    c.handle_timeout(t1);
    let mut out = Vec::new();
    c.poll_output(&mut out, 1024, t1);
    assert_eq!(out[..8], [1, 5, 0, 8, 0, 0, 0, 0]);
    assert_eq!(c.stats().pings_sent, 1);
    let t2 = t1 + Duration::from_millis(300);
    s.handle_bytes(&out, t2).unwrap();
    let t3 = t2 + Duration::from_millis(300);
    pump(&mut s, &mut c, t3);
    assert_eq!(
        events(&mut c),
        vec![MuxEvent::Pong {
            rtt: Duration::from_millis(600)
        }]
    );
    // A PONG nobody asked for is ignored.
    let mut b = Vec::new();
    Frame::Pong { opaque: 1 }.encode(&mut b);
    c.handle_bytes(&b, t3).unwrap();
    assert!(events(&mut c).is_empty());
}

#[test]
fn sending_postpones_keepalive() {
    let t0 = Instant::now();
    let mut c = Mux::new(cfg(), true, t0);
    let id = c.open_stream(b"").unwrap();
    let t1 = t0 + Duration::from_secs(8);
    c.write(id, b"x").unwrap();
    let mut out = Vec::new();
    c.poll_output(&mut out, 1024, t1);
    c.handle_timeout(t0 + Duration::from_secs(12));
    assert!(!c.has_output());
    assert_eq!(c.poll_timeout(), t1 + Duration::from_secs(10));
}

#[test]
fn idle_timeout_decides_liveness() {
    let t0 = Instant::now();
    let mut m = Mux::new(cfg(), true, t0);
    assert!(
        !m.is_dead(t0 + Duration::from_secs(20)),
        "20 s silence survives"
    );
    assert!(!m.is_dead(t0 + Duration::from_millis(59_999)));
    assert!(m.is_dead(t0 + Duration::from_secs(60)));
    // Any received bytes restart the clock.
    let mut ping = Vec::new();
    Frame::Ping { opaque: 1 }.encode(&mut ping);
    m.handle_bytes(&ping, t0 + Duration::from_secs(50)).unwrap();
    assert!(!m.is_dead(t0 + Duration::from_secs(100)));
    assert!(m.is_dead(t0 + Duration::from_secs(110)));
    assert!(m.poll_timeout() <= t0 + Duration::from_secs(110));
}

#[test]
fn ping_flood_is_bounded() {
    let now = Instant::now();
    let mut s = Mux::new(cfg(), false, now);
    let mut b = Vec::new();
    for i in 0..1000 {
        Frame::Ping { opaque: i }.encode(&mut b);
    }
    s.handle_bytes(&b, now).unwrap();
    let mut out = Vec::new();
    s.poll_output(&mut out, usize::MAX, now);
    assert_eq!(out.len(), 16 * 16);
}

#[test]
fn open_payload_limit_and_id_parity() {
    let now = Instant::now();
    let mut c = Mux::new(cfg(), true, now);
    assert_eq!(
        c.open_stream(&[0u8; 1025]),
        Err(MuxError::PayloadTooLarge(1025))
    );
    assert_eq!(c.open_stream(&[0u8; 1024]), Ok(1));
    assert_eq!(c.open_stream(b""), Ok(3));
    let mut s = Mux::new(cfg(), false, now);
    assert_eq!(s.open_stream(b""), Ok(2));
    assert_eq!(s.open_stream(b""), Ok(4));
}

#[test]
fn session_window_caps_all_streams() {
    let small = MuxConfig {
        stream_window: 64 * 1024,
        session_window: 100 * 1024,
        ..cfg()
    };
    let now = Instant::now();
    let mut c = Mux::new(small, true, now);
    let mut s = Mux::new(cfg(), false, now);
    let ids: Vec<_> = (0..4).map(|_| c.open_stream(b"").unwrap()).collect();
    for &id in &ids {
        c.write(id, &[0u8; 64 * 1024]).unwrap();
    }
    for _ in 0..5 {
        pump(&mut c, &mut s, now);
        pump(&mut s, &mut c, now);
    }
    let evs = events(&mut s);
    let total: usize = ids.iter().map(|&id| data_of(&evs, id).len()).sum();
    assert_eq!(total, 100 * 1024);
    assert_eq!(c.stats().session_outstanding, 100 * 1024);
    // Consumption on one stream frees session credit for any stream.
    let first = ids[0];
    let got = data_of(&evs, first).len();
    s.consumed(first, got);
    pump(&mut s, &mut c, now);
    pump(&mut c, &mut s, now);
    let evs = events(&mut s);
    let more: usize = ids.iter().map(|&id| data_of(&evs, id).len()).sum();
    assert!(more > 0);
}

fn open_frames(ids: impl Iterator<Item = StreamId>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for id in ids {
        Frame::Open { id, payload: b"" }.encode(&mut bytes);
    }
    bytes
}

#[test]
fn opens_beyond_max_streams_are_refused_with_rst() {
    let now = Instant::now();
    let mut s = Mux::new(cfg(), false, now); // max_streams 64
    let ids = (0..70).map(|i| 2 * i + 1);
    s.handle_bytes(&open_frames(ids), now).unwrap();
    let evs = events(&mut s);
    let opened = evs
        .iter()
        .filter(|e| matches!(e, MuxEvent::Opened { .. }))
        .count();
    let refused: Vec<StreamId> = evs
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Exceeded {
                id,
                bound: Bound::Streams,
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(opened, 64);
    assert_eq!(refused, vec![129, 131, 133, 135, 137, 139]);
    assert_eq!(s.stream_count(), 64);
    assert_eq!(s.stats().refused_opens, 6);
    let mut out = Vec::new();
    s.poll_output(&mut out, 1 << 20, now);
    for id in refused {
        let mut rst = Vec::new();
        Frame::Rst { id }.encode(&mut rst);
        assert!(
            out.windows(rst.len()).any(|w| w == rst.as_slice()),
            "RST {id}"
        );
    }
    // Data for a refused stream is ignored (it was opened, then reset).
    let mut late = Vec::new();
    Frame::Data {
        id: 129,
        data: b"x",
    }
    .encode(&mut late);
    s.handle_bytes(&late, now).unwrap();
    // Once a stream closes, a new one is accepted.
    s.reset(1);
    s.handle_bytes(&open_frames([141].into_iter()), now)
        .unwrap();
    assert!(events(&mut s).contains(&MuxEvent::Opened {
        id: 141,
        payload: Vec::new()
    }));
}

#[test]
fn a_peer_that_never_reads_its_refusals_breaks_the_session() {
    let now = Instant::now();
    let mut s = Mux::new(cfg(), false, now);
    // A burst of refusals within the allowance is fine (here 64 accepted, 936 refused)...
    s.handle_bytes(&open_frames((0..1000).map(|i| 2 * i + 1)), now)
        .expect("a burst of opens is refused, not an error");
    // ...but more than 16 x 64 refusals waiting, without ever polling output, is not.
    let err = s
        .handle_bytes(&open_frames((1000..1200).map(|i| 2 * i + 1)), now)
        .expect_err("open flood");
    assert_eq!(err, MuxError::Protocol(ProtocolError::OpenFlood));
}

#[test]
fn session_receive_bound_resets_the_stream_that_exceeds_it() {
    let bounded = MuxConfig {
        stream_window: 64 * 1024,
        session_window: 100 * 1024,
        ..cfg()
    };
    let now = Instant::now();
    let mut s = Mux::new(bounded, false, now);
    let mut bytes = open_frames([1, 3].into_iter());
    let chunk = vec![0u8; 60 * 1024];
    for id in [1, 3] {
        Frame::Data { id, data: &chunk }.encode(&mut bytes);
    }
    s.handle_bytes(&bytes, now).unwrap();
    let evs = events(&mut s);
    assert_eq!(data_of(&evs, 1).len(), 60 * 1024, "within both windows");
    assert!(data_of(&evs, 3).is_empty(), "would pass the session bound");
    assert!(evs.contains(&MuxEvent::Exceeded {
        id: 3,
        bound: Bound::SessionWindow
    }));
    assert!(evs.contains(&MuxEvent::Reset { id: 3 }));
    assert_eq!(s.stats().session_unconsumed, 60 * 1024);
    // Consuming frees room for a new stream.
    s.consumed(1, 60 * 1024);
    assert_eq!(s.stats().session_unconsumed, 0);
    let mut more = open_frames([5].into_iter());
    Frame::Data {
        id: 5,
        data: &chunk,
    }
    .encode(&mut more);
    s.handle_bytes(&more, now).unwrap();
    assert_eq!(data_of(&events(&mut s), 5).len(), 60 * 1024);
}

#[test]
fn an_equal_sender_never_trips_the_session_receive_bound() {
    let both = MuxConfig {
        stream_window: 64 * 1024,
        session_window: 100 * 1024,
        ..cfg()
    };
    let now = Instant::now();
    let mut c = Mux::new(both.clone(), true, now);
    let mut s = Mux::new(both, false, now);
    let ids: Vec<_> = (0..8).map(|_| c.open_stream(b"").unwrap()).collect();
    for &id in &ids {
        c.write(id, &[7u8; 200 * 1024]).unwrap();
    }
    let mut received = 0;
    for round in 0..200 {
        pump(&mut c, &mut s, now);
        for e in events(&mut s) {
            match e {
                MuxEvent::Data { id, data } => {
                    received += data.len();
                    // Consume slowly, and one stream not at all for a while.
                    if id != ids[0] || round > 50 {
                        s.consumed(id, data.len());
                    }
                }
                MuxEvent::Exceeded { .. } | MuxEvent::Reset { .. } => panic!("{e:?}"),
                _ => {}
            }
        }
        pump(&mut s, &mut c, now);
        events(&mut c);
    }
    assert!(received >= 7 * 200 * 1024, "{received}");
}
