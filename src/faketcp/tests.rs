//! A client and a server [`Flow`] exchanging frames in memory, in virtual time.

use std::time::{Duration, Instant};

use super::*;
use crate::wire::{parse_frame, FrameRepr, LinkType, ParsedFrame, TcpFlags};

const CLIENT_ISN: u32 = 0xffff_fff0; // wraps during the data test
const SERVER_ISN: u32 = 0x1234_5678;

fn client_addrs() -> FlowAddrs {
    FlowAddrs {
        local: "10.0.0.1:40000".parse().unwrap(),
        remote: "10.0.0.2:443".parse().unwrap(),
        local_mac: [2, 0, 0, 0, 0, 1],
        remote_mac: [2, 0, 0, 0, 0, 2],
    }
}

fn server_addrs() -> FlowAddrs {
    let c = client_addrs();
    FlowAddrs {
        local: c.remote,
        remote: c.local,
        local_mac: c.remote_mac,
        remote_mac: c.local_mac,
    }
}

/// What a flow made of a segment, owned so frames can be dropped.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Payload(Vec<u8>),
    Control,
    Restarted,
    IgnoredRst,
    Ignored,
}

struct Pair {
    client: Flow,
    server: Flow,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn new(cfg: FlowConfig) -> Pair {
        let now = Instant::now();
        Pair {
            client: Flow::client(cfg.clone(), client_addrs(), CLIENT_ISN, 1000, 7, now),
            server: Flow::server(cfg, server_addrs(), SERVER_ISN, 50_000, 0xfffe, now),
            now,
            buf: vec![0; 2048],
        }
    }

    /// The next control frame of the client or the server, if any.
    fn control(&mut self, client: bool) -> Option<Vec<u8>> {
        let flow = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        let range = flow.poll_control(self.now, &mut self.buf)?;
        Some(self.buf[range].to_vec())
    }

    fn handshake(&mut self) {
        let syn = self.control(true).expect("SYN due at creation");
        assert_eq!(deliver(&mut self.server, &syn, self.now), Got::Control);
        let syn_ack = self.control(false).expect("SYN-ACK after SYN");
        assert_eq!(deliver(&mut self.client, &syn_ack, self.now), Got::Control);
        let ack = self.control(true).expect("ACK after SYN-ACK");
        assert_eq!(deliver(&mut self.server, &ack, self.now), Got::Ignored);
        assert!(self.client.is_established() && self.server.is_established());
    }
}

fn parse(frame: &[u8]) -> ParsedFrame<'_> {
    parse_frame(LinkType::Ethernet, frame).expect("every emitted frame parses with valid checksums")
}

/// Hands `frame` to `flow`; a payload is confirmed as the layers above would confirm an
/// authentic one.
fn deliver(flow: &mut Flow, frame: &[u8], now: Instant) -> Got {
    let seg = parse(frame);
    match flow.handle_segment(&seg, now) {
        Inbound::Payload(p) => {
            flow.confirm(&seg);
            Got::Payload(p.to_vec())
        }
        Inbound::Control => Got::Control,
        Inbound::Restarted => Got::Restarted,
        Inbound::IgnoredRst => Got::IgnoredRst,
        Inbound::Ignored => Got::Ignored,
    }
}

/// Wraps `payload` through `flow` and returns the frame.
fn send(flow: &mut Flow, now: Instant, payload: &[u8]) -> Result<Vec<u8>, FlowError> {
    let at = flow.headroom();
    let mut buf = vec![0u8; at + payload.len()];
    buf[at..].copy_from_slice(payload);
    let range = flow.encapsulate(now, &mut buf, at, payload.len())?;
    assert_eq!(range.end, at + payload.len());
    Ok(buf[range].to_vec())
}

fn repr(frame: &[u8]) -> FrameRepr {
    parse(frame).repr
}

#[test]
fn handshake_segments_look_like_linux() {
    let mut p = Pair::new(FlowConfig::default());
    assert!(!p.client.is_established());
    assert_eq!(p.client.poll_timeout(), Some(p.now));
    let syn = p.control(true).unwrap();
    let r = repr(&syn);
    assert_eq!(r.flags, TcpFlags::SYN);
    assert_eq!(
        (r.seq, r.ack, r.ttl, r.ip_id, r.window),
        (CLIENT_ISN, 0, 64, 7, 65535)
    );
    assert_eq!(r.options.mss, Some(1460));
    assert_eq!(r.options.window_scale, Some(7));
    assert!(r.options.sack_permitted);
    assert_eq!(r.options.timestamp, Some((1000, 0)));
    assert_eq!(
        (r.src_mac, r.dst_mac),
        ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    );
    assert_eq!(p.control(true), None, "SYN not due again yet");

    p.now += Duration::from_millis(30);
    assert_eq!(deliver(&mut p.server, &syn, p.now), Got::Control);
    assert!(!p.server.is_established());
    let syn_ack = p.control(false).unwrap();
    let r = repr(&syn_ack);
    assert_eq!(r.flags, TcpFlags::SYN_ACK);
    assert_eq!(
        (r.seq, r.ack, r.ip_id),
        (SERVER_ISN, CLIENT_ISN.wrapping_add(1), 0xfffe)
    );
    assert_eq!(r.options.timestamp, Some((50_030, 1000)));
    assert!(r.options.sack_permitted && r.options.window_scale == Some(7));

    p.now += Duration::from_millis(30);
    assert_eq!(deliver(&mut p.client, &syn_ack, p.now), Got::Control);
    assert!(p.client.is_established());
    let ack = p.control(true).unwrap();
    let r = repr(&ack);
    assert_eq!(r.flags, TcpFlags::ACK);
    assert_eq!(
        (r.seq, r.ack, r.ip_id),
        (CLIENT_ISN.wrapping_add(1), SERVER_ISN + 1, 8)
    );
    assert_eq!(r.options.timestamp, Some((1060, 50_030)));
    assert_eq!(deliver(&mut p.server, &ack, p.now), Got::Ignored);
    assert!(p.server.is_established());
    assert_eq!(p.control(true), None);
    assert_eq!(p.control(false), None);
    assert_eq!(
        (p.client.poll_timeout(), p.server.poll_timeout()),
        (None, None)
    );
    assert_eq!(p.client.stats().segments_out, 2);
    assert_eq!(p.server.stats().segments_in, 2);
}

#[test]
fn lost_syn_is_retransmitted_with_backoff() {
    let mut p = Pair::new(FlowConfig::default());
    let t0 = p.now;
    let first = p.control(true).unwrap(); // lost
    let mut expected = t0;
    for (i, gap) in [1u64, 2, 4, 8, 8, 8].into_iter().enumerate() {
        expected += Duration::from_secs(gap);
        assert_eq!(p.client.poll_timeout(), Some(expected));
        p.now = expected - Duration::from_millis(1);
        assert_eq!(p.control(true), None, "not before the deadline");
        p.now = expected;
        let again = p.control(true).expect("SYN retransmitted at the deadline");
        let r = repr(&again);
        assert_eq!((r.flags, r.seq), (TcpFlags::SYN, repr(&first).seq));
        assert_eq!(p.client.stats().syn_retransmits, i as u64 + 1);
        if i == 0 {
            // The retransmit gets through.
            assert_eq!(deliver(&mut p.server, &again, p.now), Got::Control);
        }
    }
    let syn_ack = p.control(false).unwrap();
    assert_eq!(deliver(&mut p.client, &syn_ack, p.now), Got::Control);
    assert!(p.client.is_established());
    assert_eq!(p.client.poll_timeout(), Some(p.now), "handshake ACK due");
    assert!(p.control(true).is_some());
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn lost_syn_ack_is_answered_again() {
    let mut p = Pair::new(FlowConfig::default());
    let syn = p.control(true).unwrap();
    assert_eq!(deliver(&mut p.server, &syn, p.now), Got::Control);
    let lost = p.control(false).unwrap();
    p.now += Duration::from_secs(1);
    let syn2 = p.control(true).unwrap();
    assert_eq!(deliver(&mut p.server, &syn2, p.now), Got::Control);
    let syn_ack = p.control(false).unwrap();
    assert_eq!(repr(&syn_ack).seq, repr(&lost).seq);
    assert_eq!(repr(&syn_ack).ip_id, repr(&lost).ip_id.wrapping_add(1));
    assert_eq!(deliver(&mut p.client, &syn_ack, p.now), Got::Control);
    let ack = p.control(true).unwrap();
    // The stale SYN-ACK arriving late makes the client acknowledge again, nothing more.
    assert_eq!(deliver(&mut p.client, &lost, p.now), Got::Control);
    assert_eq!(repr(&p.control(true).unwrap()).ack, repr(&ack).ack);
    assert_eq!(deliver(&mut p.server, &ack, p.now), Got::Ignored);
    assert!(p.server.is_established());
}

#[test]
fn data_before_established_is_refused() {
    let mut p = Pair::new(FlowConfig::default());
    assert_eq!(
        send(&mut p.client, p.now, b"x"),
        Err(FlowError::NotEstablished)
    );
    let syn = p.control(true).unwrap();
    assert_eq!(
        send(&mut p.client, p.now, b"x"),
        Err(FlowError::NotEstablished)
    );
    deliver(&mut p.server, &syn, p.now);
    assert_eq!(
        send(&mut p.server, p.now, b"x"),
        Err(FlowError::NotEstablished)
    );
    let syn_ack = p.control(false).unwrap();
    deliver(&mut p.client, &syn_ack, p.now);
    // The handshake ACK is lost: the server becomes established on the first data.
    let _lost_ack = p.control(true).unwrap();
    let data = send(&mut p.client, p.now, b"first").unwrap();
    assert_eq!(
        deliver(&mut p.server, &data, p.now),
        Got::Payload(b"first".to_vec())
    );
    assert!(p.server.is_established());
    assert!(send(&mut p.server, p.now, b"reply").is_ok());
}

#[test]
fn seq_ack_timestamps_and_ip_id_track_the_stream() {
    let mut p = Pair::new(FlowConfig::default());
    p.handshake();
    let mut rng: u32 = 0x9e37_79b9;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut client_seq = CLIENT_ISN.wrapping_add(1);
    let mut server_seq = SERVER_ISN.wrapping_add(1);
    let mut last_client_id = None::<u16>;
    let mut last_server_id = None::<u16>;
    for round in 0..200 {
        p.now += Duration::from_millis(u64::from(next() % 50));
        let len = (next() % 1400) as usize + 1;
        let payload: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
        let frame = send(&mut p.client, p.now, &payload).unwrap();
        let r = repr(&frame);
        assert_eq!(r.seq, client_seq, "client seq advances by payload length");
        assert_eq!(r.ack, server_seq, "client acks the server's next byte");
        if let Some(id) = last_client_id {
            assert_eq!(r.ip_id, id.wrapping_add(1));
        }
        last_client_id = Some(r.ip_id);
        client_seq = client_seq.wrapping_add(len as u32);
        let client_tsval = r.options.timestamp.unwrap().0;
        assert_eq!(deliver(&mut p.server, &frame, p.now), Got::Payload(payload));

        if round % 3 == 0 {
            let len = (next() % 300) as usize + 1;
            let reply = send(&mut p.server, p.now, &vec![0xab; len]).unwrap();
            let r = repr(&reply);
            assert_eq!(r.seq, server_seq);
            assert_eq!(r.ack, client_seq, "server acks the client's next byte");
            assert_eq!(
                r.options.timestamp.unwrap().1,
                client_tsval,
                "TSecr echoes TSval"
            );
            if let Some(id) = last_server_id {
                assert_eq!(r.ip_id, id.wrapping_add(1));
            }
            last_server_id = Some(r.ip_id);
            server_seq = server_seq.wrapping_add(len as u32);
            assert_eq!(
                deliver(&mut p.client, &reply, p.now),
                Got::Payload(vec![0xab; len])
            );
        }
    }
    assert!(
        client_seq < CLIENT_ISN,
        "the client's sequence space wrapped"
    );
    // A duplicate (older) segment is still passed up but does not move ack backwards.
    let old = send(&mut p.client, p.now, b"dup").unwrap();
    let newer = send(&mut p.client, p.now, b"new").unwrap();
    assert!(matches!(
        deliver(&mut p.server, &newer, p.now),
        Got::Payload(_)
    ));
    assert_eq!(
        deliver(&mut p.server, &old, p.now),
        Got::Payload(b"dup".to_vec())
    );
    let reply = send(&mut p.server, p.now, b"r").unwrap();
    assert_eq!(repr(&reply).ack, repr(&newer).seq.wrapping_add(3));
}

#[test]
fn tsval_counts_milliseconds_from_the_offset() {
    let mut p = Pair::new(FlowConfig::default());
    let start = p.now;
    p.handshake();
    p.now = start + Duration::from_millis(12_345);
    let r = repr(&send(&mut p.client, p.now, b"x").unwrap());
    assert_eq!(r.options.timestamp.unwrap().0, 1000 + 12_345);
    let r = repr(&send(&mut p.server, p.now, b"y").unwrap());
    assert_eq!(r.options.timestamp.unwrap().0, 50_000 + 12_345);
}

#[test]
fn flags_cycle_through_the_list() {
    let cfg = FlowConfig {
        local_flags: vec![TcpFlags::PSH_ACK, TcpFlags::ACK],
        ..FlowConfig::default()
    };
    let mut p = Pair::new(cfg);
    p.handshake();
    let flags: Vec<TcpFlags> = (0..5)
        .map(|_| repr(&send(&mut p.client, p.now, b"z").unwrap()).flags)
        .collect();
    use TcpFlags as F;
    assert_eq!(flags, [F::PSH_ACK, F::ACK, F::PSH_ACK, F::ACK, F::PSH_ACK]);
    // SYN/RST are stripped from data flags; a flag set without ACK carries ack 0.
    let cfg = FlowConfig {
        local_flags: vec![TcpFlags::PSH | TcpFlags::RST, TcpFlags::SYN],
        handshake: false,
        ..FlowConfig::default()
    };
    let mut p = Pair::new(cfg);
    let a = repr(&send(&mut p.client, p.now, b"a").unwrap());
    let b = repr(&send(&mut p.client, p.now, b"b").unwrap());
    assert_eq!((a.flags, a.ack), (TcpFlags::PSH, 0));
    assert_eq!(b.flags, TcpFlags::ACK);
}

#[test]
fn rst_is_counted_and_ignored() {
    let mut p = Pair::new(FlowConfig::default());
    p.handshake();
    let data = send(&mut p.server, p.now, b"hello").unwrap();
    let mut rst = parse(&data).repr;
    rst.flags = TcpFlags::RST | TcpFlags::ACK;
    let mut buf = vec![0u8; 200];
    let hl = crate::wire::header_len(&rst);
    let start = crate::wire::emit_frame(&rst, &mut buf, hl, 0).unwrap();
    for _ in 0..3 {
        assert_eq!(
            deliver(&mut p.client, &buf[start..hl], p.now),
            Got::IgnoredRst
        );
    }
    assert_eq!(p.client.stats().rst_ignored, 3);
    assert!(p.client.is_established());
    assert_eq!(
        deliver(&mut p.client, &data, p.now),
        Got::Payload(b"hello".to_vec())
    );
}

#[test]
fn segments_for_other_ports_are_ignored() {
    let mut p = Pair::new(FlowConfig::default());
    p.handshake();
    let data = send(&mut p.client, p.now, b"x").unwrap();
    let mut other = parse(&data).repr;
    other.src.set_port(40001);
    let mut buf = vec![0u8; 200];
    let hl = crate::wire::header_len(&other);
    buf[hl] = b'x';
    let start = crate::wire::emit_frame(&other, &mut buf, hl, 1).unwrap();
    assert_eq!(
        deliver(&mut p.server, &buf[start..hl + 1], p.now),
        Got::Ignored
    );
    // A SYN-ACK on the server or a bare SYN on the client are ignored too.
    let mut client = Flow::client(FlowConfig::default(), client_addrs(), 1, 0, 0, p.now);
    let syn = {
        let r = client.poll_control(p.now, &mut p.buf).unwrap();
        p.buf[r].to_vec()
    };
    let mut other_client = Flow::client(FlowConfig::default(), server_addrs(), 9, 0, 0, p.now);
    assert_eq!(deliver(&mut other_client, &syn, p.now), Got::Ignored);
}

#[test]
fn syn_on_established_server_restarts_it() {
    let mut p = Pair::new(FlowConfig::default());
    p.handshake();
    for _ in 0..3 {
        let d = send(&mut p.server, p.now, b"before").unwrap();
        deliver(&mut p.client, &d, p.now);
    }
    // A delayed copy of the original SYN is not a restart.
    let mut stale = Flow::client(
        FlowConfig::default(),
        client_addrs(),
        CLIENT_ISN,
        1000,
        7,
        p.now,
    );
    let stale_syn = {
        let r = stale.poll_control(p.now, &mut p.buf).unwrap();
        p.buf[r].to_vec()
    };
    assert_eq!(deliver(&mut p.server, &stale_syn, p.now), Got::Ignored);
    assert!(p.server.is_established());

    p.now += Duration::from_secs(5);
    p.client = Flow::client(FlowConfig::default(), client_addrs(), 777, 3, 100, p.now);
    let syn = p.control(true).unwrap();
    assert_eq!(deliver(&mut p.server, &syn, p.now), Got::Restarted);
    assert!(!p.server.is_established());
    assert_eq!(
        send(&mut p.server, p.now, b"x"),
        Err(FlowError::NotEstablished)
    );
    let syn_ack = p.control(false).unwrap();
    let r = repr(&syn_ack);
    assert_eq!(r.ack, 778);
    assert_eq!(r.options.timestamp.unwrap().1, 3);
    assert_eq!(deliver(&mut p.client, &syn_ack, p.now), Got::Control);
    let ack = p.control(true).unwrap();
    assert_eq!(deliver(&mut p.server, &ack, p.now), Got::Ignored);
    let d = send(&mut p.client, p.now, b"again").unwrap();
    assert_eq!(
        deliver(&mut p.server, &d, p.now),
        Got::Payload(b"again".to_vec())
    );
}

#[test]
fn handshake_off_is_established_at_once() {
    let cfg = FlowConfig {
        handshake: false,
        link: LinkType::RawIp,
        ..FlowConfig::default()
    };
    let now = Instant::now();
    let mut client = Flow::client(cfg.clone(), client_addrs(), 10, 0, 0, now);
    let mut server = Flow::server(cfg, server_addrs(), 20, 0, 0, now);
    let mut buf = vec![0u8; 256];
    assert!(client.is_established() && server.is_established());
    assert_eq!(client.poll_control(now, &mut buf), None);
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.headroom(), 20 + 20 + 12);
    let at = client.headroom();
    buf[at..at + 4].copy_from_slice(b"data");
    let range = client.encapsulate(now, &mut buf, at, 4).unwrap();
    let parsed = parse_frame(LinkType::RawIp, &buf[range]).unwrap();
    assert_eq!((parsed.repr.seq, parsed.repr.ack), (10, 0));
    assert_eq!(
        server.handle_segment(&parsed, now),
        Inbound::Payload(b"data")
    );
    server.confirm(&parsed);
    let at = server.headroom();
    let range = server.encapsulate(now, &mut buf, at, 0).unwrap();
    let parsed = parse_frame(LinkType::RawIp, &buf[range]).unwrap();
    assert_eq!((parsed.repr.seq, parsed.repr.ack), (20, 14));
    assert_eq!(client.handle_segment(&parsed, now), Inbound::Ignored);
}

#[test]
fn encapsulate_errors() {
    let mut p = Pair::new(FlowConfig {
        handshake: false,
        ..FlowConfig::default()
    });
    let at = p.client.headroom();
    assert_eq!(at, 14 + 20 + 20 + 12);
    let mut buf = vec![0u8; 70_000];
    assert_eq!(
        p.client.encapsulate(p.now, &mut buf, at - 1, 10),
        Err(FlowError::Wire(crate::wire::Error::Truncated))
    );
    assert_eq!(
        p.client.encapsulate(p.now, &mut buf, at, 65_500),
        Err(FlowError::TooLarge)
    );
    assert_eq!(p.client.stats().segments_out, 0);
    let r = p.client.encapsulate(p.now, &mut buf, at, 1).unwrap();
    assert_eq!(
        repr(&buf[r]).seq,
        CLIENT_ISN,
        "failed calls did not advance seq"
    );
}

#[test]
fn ipv6_flow_handshake() {
    let now = Instant::now();
    let c = FlowAddrs {
        local: "[2001:db8::1]:1000".parse().unwrap(),
        remote: "[2001:db8::2]:2000".parse().unwrap(),
        local_mac: [1; 6],
        remote_mac: [2; 6],
    };
    let s = FlowAddrs {
        local: c.remote,
        remote: c.local,
        local_mac: c.remote_mac,
        remote_mac: c.local_mac,
    };
    let mut client = Flow::client(FlowConfig::default(), c, 5, 0, 0, now);
    let mut server = Flow::server(FlowConfig::default(), s, 6, 0, 0, now);
    let mut buf = vec![0u8; 256];
    let r = client.poll_control(now, &mut buf).unwrap();
    let syn = buf[r].to_vec();
    assert_eq!(repr(&syn).options.mss, Some(1440));
    assert_eq!(server.handle_segment(&parse(&syn), now), Inbound::Control);
    let r = server.poll_control(now, &mut buf).unwrap();
    let syn_ack = buf[r].to_vec();
    assert_eq!(
        client.handle_segment(&parse(&syn_ack), now),
        Inbound::Control
    );
    assert!(client.is_established());
    assert_eq!(client.headroom(), 14 + 40 + 20 + 12);
}

/// An injected segment (its payload never authenticates) moves neither our acknowledgment
/// number nor our timestamp echo; and a flow waiting for the handshake's ACK takes only one
/// that acknowledges our SYN-ACK.
#[test]
fn unconfirmed_payloads_do_not_move_ack_or_timestamp_echo() {
    let now = Instant::now();
    let cfg = FlowConfig {
        link: LinkType::RawIp,
        handshake: false,
        ..FlowConfig::default()
    };
    let mut client = Flow::client(cfg.clone(), client_addrs(), 10, 0, 0, now);
    let mut server = Flow::server(cfg, server_addrs(), 20, 0, 0, now);
    let mut buf = vec![0u8; 256];
    let at = client.headroom();
    buf[at..at + 4].copy_from_slice(b"data");
    let range = client.encapsulate(now, &mut buf, at, 4).unwrap();
    let genuine = buf[range].to_vec();
    let parsed = parse_frame(LinkType::RawIp, &genuine).unwrap();
    assert_eq!(
        server.handle_segment(&parsed, now),
        Inbound::Payload(b"data")
    );
    server.confirm(&parsed);
    // The injector's segment: far ahead in sequence space, with its own timestamp.
    let mut forged = parsed;
    forged.repr.seq = parsed.repr.seq.wrapping_add(1 << 30);
    forged.repr.options.timestamp = Some((0xdead_beef, 0));
    assert_eq!(
        server.handle_segment(&forged, now),
        Inbound::Payload(b"data")
    );
    let at = server.headroom();
    let range = server.encapsulate(now, &mut buf, at, 0).unwrap();
    let reply = parse_frame(LinkType::RawIp, &buf[range]).unwrap();
    assert_eq!(reply.repr.ack, 14, "the forged segment moved our ack");
    assert_ne!(reply.repr.options.timestamp.map(|t| t.1), Some(0xdead_beef));
}
