//! Mux frame codec and KCP transfer throughput.
//!
//! - `mux_frame/{encode,decode}/{1KiB,16KiB}`: one DATA frame.
//! - `mux_session/16KiB`: write + poll_output on one side, handle_bytes on the other.
//! - `kcp_transfer/1MiB`: send + flush + input of 1 MiB between two sessions in memory
//!   (lossless, virtual clock advancing 1 ms per round), including ACKs and recv.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rawtun::kcp::{KcpConfig, KcpSession};
use rawtun::mux::{Frame, Mux, MuxConfig, MuxEvent};

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("mux_frame");
    for size in [1024usize, 16 * 1024] {
        let data = vec![0xa5u8; size];
        let label = format!("{}KiB", size / 1024);
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size + 64);
        g.bench_with_input(BenchmarkId::new("encode", &label), &data, |b, d| {
            b.iter(|| {
                out.clear();
                Frame::Data { id: 7, data: d }.encode(&mut out);
                black_box(out.len())
            })
        });
        let mut encoded = Vec::new();
        Frame::Data { id: 7, data: &data }.encode(&mut encoded);
        g.bench_with_input(BenchmarkId::new("decode", &label), &encoded, |b, e| {
            b.iter(|| match Frame::decode(black_box(e)) {
                Ok(Some((Frame::Data { data, .. }, n))) => black_box(data.len() + n),
                _ => unreachable!("valid frame"),
            })
        });
    }
    g.finish();
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("mux_session");
    let chunk = vec![0x5au8; 16 * 1024];
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    let now = Instant::now();
    let cfg = MuxConfig {
        stream_window: u32::MAX / 2,
        session_window: u32::MAX / 2,
        ..MuxConfig::default()
    };
    let mut client = Mux::new(cfg.clone(), true, now);
    let mut server = Mux::new(cfg, false, now);
    let id = client.open_stream(b"bench").expect("fresh session");
    let mut wire = Vec::with_capacity(64 * 1024);
    g.bench_function("16KiB", |b| {
        b.iter(|| {
            client.write(id, &chunk).expect("open stream");
            wire.clear();
            while client.has_output() {
                client.poll_output(&mut wire, 64 * 1024, now);
            }
            while client.poll_event().is_some() {}
            server.handle_bytes(&wire, now).expect("valid frames");
            while let Some(ev) = server.poll_event() {
                if let MuxEvent::Data { id, data } = ev {
                    server.consumed(id, data.len());
                }
            }
            let mut back = Vec::new();
            server.poll_output(&mut back, usize::MAX, now);
            client.handle_bytes(&back, now).expect("valid frames");
        })
    });
    g.finish();
}

fn kcp_transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("kcp_transfer");
    g.sample_size(20);
    let data = vec![0x3cu8; 1024 * 1024];
    g.throughput(Throughput::Bytes(data.len() as u64));
    let cfg = KcpConfig::default();
    g.bench_function("1MiB", |b| {
        b.iter(|| {
            let mut now = Instant::now();
            let mut a = KcpSession::new(1, &cfg, now);
            let mut z = KcpSession::new(1, &cfg, now);
            let mut buf = vec![0u8; 64 * 1024];
            let mut packet = vec![0u8; 2048];
            let (mut off, mut got) = (0, 0);
            while got < data.len() {
                off += a.send(&data[off..]).expect("queueing cannot fail");
                a.flush(now);
                while let Some(n) = a.poll_transmit(&mut packet) {
                    z.handle_input(&packet[..n], now).expect("valid packet");
                }
                loop {
                    let n = z.recv(&mut buf);
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                z.flush(now);
                while let Some(n) = z.poll_transmit(&mut packet) {
                    a.handle_input(&packet[..n], now).expect("valid packet");
                }
                now += Duration::from_millis(1);
            }
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, frames, session, kcp_transfer);
criterion_main!(benches);
