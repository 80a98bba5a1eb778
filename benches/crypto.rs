//! Per-packet crypto cost: seal and open of 64 B and 1350 B packets for each cipher, and one
//! full handshake (msg1 + msg2 + finish).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rawtun::crypto::{respond, Cipher, Initiator, Psk, SessionCrypto, HEADER_LEN};

const CIPHERS: [Cipher; 4] = [
    Cipher::Aes256Gcm,
    Cipher::Aes128Gcm,
    Cipher::ChaCha20Poly1305,
    Cipher::None,
];
const SIZES: [usize; 2] = [64, 1350];

fn session_pair(cipher: Cipher) -> (SessionCrypto, SessionCrypto) {
    let psk = Psk::from_bytes([7; 32]);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let init = Initiator::start(&psk, cipher, b"", &mut m1).expect("bench handshake: msg1");
    let (server, _) = respond(&psk, cipher, &m1, b"", &mut m2).expect("bench handshake: msg2");
    let (client, _) = init.finish(&m2).expect("bench handshake: finish");
    (client, server)
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

criterion_group!(benches, seal, open, handshake);
criterion_main!(benches);
