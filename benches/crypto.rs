//! Per-packet crypto cost: seal and open of 64 B and 1350 B packets for each cipher, one
//! full handshake (msg1 + checks + msg2 + finish), and what the server spends on a packet
//! from a stranger before dropping it (SYN proof, msg1 mac1, probe tag).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rawtun::crypto::proof;
use rawtun::crypto::{
    check_msg1, respond, Binding, Cipher, Initiator, SessionCrypto, SharedKey, HEADER_LEN,
};

const CIPHERS: [Cipher; 4] = [
    Cipher::Aes256Gcm,
    Cipher::Aes128Gcm,
    Cipher::ChaCha20Poly1305,
    Cipher::None,
];
const SIZES: [usize; 2] = [64, 1350];

const T: u64 = 1_800_000_000_000;

fn session_pair(cipher: Cipher) -> (SessionCrypto, SessionCrypto) {
    let key = SharedKey::from_bytes([7; 32]);
    let (s, c) = (key.server_identity(), key.client_identity());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let b = Binding::NONE;
    let mut init = Initiator::start(&c, cipher, T, &b, b"", &mut rng, &mut m1).expect("bench msg1");
    let check = check_msg1(std::slice::from_ref(&s), &[b], &m1).expect("bench mac1");
    let a = respond(&s, &check, cipher, &m1, b"", &mut rng, &mut m2).expect("bench msg2");
    let (client, _) = init.finish(&m2).expect("bench handshake: finish");
    (client, a.keys)
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for cipher in CIPHERS {
        for size in SIZES {
            let (mut client, _) = session_pair(cipher);
            let mut buf = vec![0x42u8; HEADER_LEN + size + cipher.tag_len()];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(cipher.name(), size), &size, |b, &size| {
                b.iter(|| {
                    client
                        .sealer
                        .seal(black_box(&mut buf), 0, size)
                        .expect("bench seal")
                })
            });
        }
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    for cipher in CIPHERS {
        for size in SIZES {
            let (mut client, mut server) = session_pair(cipher);
            let len = HEADER_LEN + size + cipher.tag_len();
            // Seal packets ahead in batches so each open sees a fresh counter (the replay
            // window would reject a repeated packet before doing any crypto).
            const BATCH: usize = 1024;
            let mut sealed = vec![0x42u8; len * BATCH];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(cipher.name(), size), &size, |b, &size| {
                b.iter_custom(|iters| {
                    let mut total = std::time::Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = (iters - done).min(BATCH as u64) as usize;
                        for chunk in sealed.chunks_exact_mut(len).take(n) {
                            chunk.fill(0x42);
                            client.sealer.seal(chunk, 0, size).expect("bench seal");
                        }
                        let start = std::time::Instant::now();
                        for chunk in sealed.chunks_exact_mut(len).take(n) {
                            black_box(server.opener.open(chunk).expect("bench open"));
                        }
                        total += start.elapsed();
                        done += n as u64;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    c.bench_function("handshake", |b| {
        b.iter(|| session_pair(black_box(Cipher::Aes256Gcm)))
    });
}

/// What a packet from a stranger costs the server before it is dropped: the SYN proof (one
/// PRF to read its time, one for the ISN), a msg1-sized packet (mac1 over 2 bindings) and a
/// probe-sized packet (the hidden client id).
fn stranger(c: &mut Criterion) {
    let key = SharedKey::from_bytes([7; 32]);
    let s = key.server_identity();
    let ids = std::slice::from_ref(&s);
    let src: std::net::SocketAddr = "198.18.0.1:40000".parse().expect("addr");
    let dst: std::net::SocketAddr = "198.18.0.2:9999".parse().expect("addr");
    let bindings = [Binding::source(src), Binding::NONE];
    let mut group = c.benchmark_group("stranger");
    group.bench_function("syn", |b| {
        b.iter(|| {
            let t = proof::syn_time(
                &s,
                &bindings[0],
                black_box(0x9abc_def0),
                black_box(0x1234_5678),
                T,
            );
            black_box(proof::check_syn(
                &s,
                &bindings[0],
                black_box(0x9abc_def0),
                t,
            ))
        })
    });
    let junk = vec![0x5au8; 200];
    group.bench_function("msg1_200B", |b| {
        b.iter(|| black_box(check_msg1(ids, &bindings, black_box(&junk))))
    });
    let flow = Binding::flow(src, dst);
    group.bench_function("probe_64B", |b| {
        b.iter(|| black_box(proof::check_probe(&s, &flow, black_box(&junk[..64]))))
    });
    group.finish();
}

criterion_group!(benches, seal, open, handshake, stranger);
criterion_main!(benches);
