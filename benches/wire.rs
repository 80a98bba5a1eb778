//! Per-packet costs of the wire layer: checksum over 1400 bytes, building a whole frame in
//! front of a 1400-byte payload, and parsing that frame back.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rawtun::wire::{
    checksum, emit_frame, header_len, parse_frame, FrameRepr, LinkType, TcpFlags, TcpOptions,
};

const PAYLOAD_LEN: usize = 1400;

fn repr() -> FrameRepr {
    FrameRepr {
        link: LinkType::Ethernet,
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: "192.0.2.1:40000".parse().expect("literal address"),
        dst: "198.51.100.7:443".parse().expect("literal address"),
        ttl: 64,
        ip_id: 0x1234,
        seq: 0xdead_beef,
        ack: 0x0102_0304,
        flags: TcpFlags::PSH_ACK,
        window: 502,
        options: TcpOptions {
            timestamp: Some((123_456, 654_321)),
            ..TcpOptions::default()
        },
    }
}

fn bench_wire(c: &mut Criterion) {
    let data: Vec<u8> = (0..PAYLOAD_LEN).map(|i| (i * 7) as u8).collect();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(PAYLOAD_LEN as u64));
    g.bench_function("checksum_1400", |b| {
        b.iter(|| checksum::checksum(black_box(&data)))
    });

    let r = repr();
    let at = header_len(&r);
    let mut buf = vec![0u8; at + PAYLOAD_LEN];
    buf[at..].copy_from_slice(&data);
    g.bench_function("emit_frame_1400", |b| {
        b.iter(|| {
            emit_frame(black_box(&r), &mut buf, at, PAYLOAD_LEN)
                .expect("buffer sized for the frame")
        })
    });

    let start = emit_frame(&r, &mut buf, at, PAYLOAD_LEN).expect("buffer sized for the frame");
    let frame = buf[start..].to_vec();
    g.bench_function("parse_frame_1400", |b| {
        b.iter(|| {
            parse_frame(LinkType::Ethernet, black_box(&frame))
                .expect("valid frame")
                .payload
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
