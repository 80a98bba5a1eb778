//! Fuzz target: arbitrary bytes from the reliable layer into a server-side `Mux`, cut at
//! fuzzer-chosen points, with the application consuming what it receives and the output
//! drained after every chunk. Nothing may panic; every frame `Frame::decode` accepts must
//! encode back to the same bytes; the receive bound (`session_window`) must hold for the
//! bytes handed out and not consumed.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rawtun::mux::{Frame, Mux, MuxConfig, MuxEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    // Every decodable frame at the start of the input round-trips.
    let mut at = 0;
    while let Ok(Some((frame, len))) = Frame::decode(&data[at..]) {
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(&again[..], &data[at..at + len]);
        at += len;
    }

    let cfg = MuxConfig {
        stream_window: 64 * 1024,
        session_window: 256 * 1024,
        ..MuxConfig::default()
    };
    let bound = u64::from(cfg.session_window);
    let mut now = Instant::now();
    let mut mux = Mux::new(cfg, false, now);
    let chunk = usize::from(cut).max(1);
    let mut out = Vec::new();
    // Bytes handed out and not consumed, per live stream (a reset stream's bytes are
    // dropped by the application, as the daemon's inbox does).
    let mut held: HashMap<u32, u64> = HashMap::new();
    let mut gone: HashSet<u32> = HashSet::new();
    for piece in data.chunks(chunk) {
        let failed = mux.handle_bytes(piece, now).is_err();
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::Data { id, .. } if gone.contains(&id) => {}
                MuxEvent::Data { id, data } => {
                    // Consume every other chunk's bytes, so some stay unconsumed.
                    if piece.len() % 2 == 0 {
                        mux.consumed(id, data.len());
                    } else {
                        *held.entry(id).or_default() += data.len() as u64;
                    }
                }
                MuxEvent::Reset { id } => {
                    held.remove(&id);
                }
                MuxEvent::Opened { id, .. } if piece.len() % 3 == 0 => {
                    mux.reset(id);
                    gone.insert(id);
                }
                _ => {}
            }
        }
        let total: u64 = held.values().sum();
        assert!(total <= bound, "{total} bytes held past the bound");
        assert_eq!(total, mux.stats().session_unconsumed);
        out.clear();
        mux.poll_output(&mut out, 64 * 1024, now);
        now += Duration::from_millis(5);
        mux.handle_timeout(now);
        if failed {
            break;
        }
    }
    let _ = mux.stats();
});
