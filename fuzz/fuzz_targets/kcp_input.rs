//! Fuzz target: arbitrary KCP packets from a peer. The input is cut into packets (a 2-byte
//! little-endian length before each); each goes to `KcpSession::handle_input` with the clock
//! advancing, interleaved with sends, flushes, transmits and receives. Nothing may panic; a
//! segment header that parses must emit back to the same 24 bytes.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rawtun::kcp::{KcpConfig, KcpSession, SegmentHeader, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut kcp = KcpSession::new(7, &KcpConfig::default(), now);
    let mut out = vec![0u8; 4096];
    let mut tx = vec![0u8; 65536];
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % 2048;
        rest = &rest[2..];
        let packet = &rest[..len.min(rest.len())];
        rest = &rest[packet.len()..];
        if let Ok((header, body)) = SegmentHeader::parse(packet) {
            let mut again = Vec::new();
            header.emit(&mut again);
            assert_eq!(&again[..], &packet[..HEADER_LEN]);
            assert_eq!(body.len(), header.len as usize);
        }
        let _ = kcp.handle_input(packet, now);
        // Some of our own traffic so ACKs and window updates meet real send state.
        if packet.first().is_some_and(|b| b & 1 == 1) {
            let _ = kcp.send(&packet[..packet.len().min(1500)]);
            kcp.flush(now);
        }
        now += Duration::from_millis(u64::from(packet.len() as u8));
        kcp.handle_timeout(now);
        while kcp.poll_transmit(&mut tx).is_some() {}
        while kcp.recv(&mut out) > 0 {}
        let _ = kcp.poll_timeout();
    }
    let _ = kcp.stats();
});
