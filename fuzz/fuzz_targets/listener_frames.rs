//! Fuzz target: arbitrary segments into a server's listener (its gate, the fake-TCP flows it
//! creates, and any session). Whatever arrives, nothing may panic — and since no input can
//! forge a 128-bit MAC, the server must never send anything in answer: a frame out is a
//! finding (the silence of docs/SECURITY.md).
//!
//! Input: flags (1) | seq (4) | ack (4) | TSval (4) | source port (2) | source host (1) |
//! payload (rest). Built into a valid frame so the fuzzer works past the parser (the raw
//! bytes are parsed and fed too).

#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rawtun::crypto::{ServerIdentity, SharedKey};
use rawtun::endpoint::{test_config, GateConfig, GateShared, Listener, WallClock, MAX_FRAME};
use rawtun::wire::{emit_frame, header_len, parse_frame, FrameRepr, LinkType, TcpFlags, TcpOptions};

const SERVER: &str = "198.18.0.2:9999";

struct State {
    listener: Listener,
    now: Instant,
    events: Vec<rawtun::endpoint::ListenerEvent>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new({
        let now = Instant::now();
        let cfg = test_config(WallClock { at: now, unix_ms: 1_800_000_000_000 });
        let ids: Arc<[ServerIdentity]> = vec![SharedKey::from_bytes([7; 32]).server_identity()].into();
        let gate = GateConfig::default();
        let shared = GateShared::new(&gate, 1_800_000_000_000, now);
        let server: SocketAddr = SERVER.parse().unwrap();
        let listener = Listener::new(cfg, ids, gate, shared, server, [2; 6], None, 64, [1; 32]);
        State { listener, now, events: Vec::new() }
    });
}

fn frame(data: &[u8]) -> Option<Vec<u8>> {
    let (head, payload) = data.split_at_checked(16)?;
    let u32_at = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let src: SocketAddr = format!("198.18.1.{}:{}", head[15], u16::from_be_bytes([head[13], head[14]]))
        .parse()
        .ok()?;
    let repr = FrameRepr {
        link: LinkType::Ethernet,
        src_mac: [1; 6],
        dst_mac: [2; 6],
        src,
        dst: SERVER.parse().ok()?,
        ttl: 64,
        ip_id: 1,
        seq: u32_at(1),
        ack: u32_at(5),
        flags: TcpFlags(head[0]),
        window: 65535,
        options: TcpOptions { timestamp: Some((u32_at(9), 0)), ..TcpOptions::default() },
    };
    let payload = payload.get(..payload.len().min(1400))?;
    let at = header_len(&repr);
    let mut buf = vec![0u8; at + payload.len()];
    buf[at..].copy_from_slice(payload);
    let start = emit_frame(&repr, &mut buf, at, payload.len()).ok()?;
    Some(buf[start..].to_vec())
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let st = &mut *s;
        st.now += Duration::from_millis(1);
        let now = st.now;
        for f in [frame(data), Some(data.to_vec())].into_iter().flatten() {
            if let Ok(p) = parse_frame(LinkType::Ethernet, &f) {
                st.listener.handle_frame(&p, now);
            }
        }
        st.listener.handle_timeout(now, &mut st.events);
        st.events.clear();
        let mut buf = vec![0u8; MAX_FRAME];
        assert!(st.listener.poll_transmit(now, &mut buf).is_none(), "answered junk");
    });
});
