use super::*;

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0xab; len.max(4)];
    f[..4].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[..4].try_into().unwrap())
}

/// Drains everything, returning (offset from t0, port, frame) in delivery order.
fn drain(net: &mut MemNetwork, t0: Instant) -> Vec<(Duration, usize, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(at) = net.next_delivery() {
        while let Some((to, f)) = net.poll_deliver(at) {
            out.push((at - t0, to, f));
        }
    }
    out
}

fn rough() -> LinkModel {
    LinkModel {
        loss: 0.05,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        reorder: 0.05,
        duplicate: 0.02,
        mtu: 1500,
        seed: 7,
    }
}

/// Sends `n` frames from port 0, one every `gap`, and drains the network.
fn run(model: LinkModel, n: u32, gap: Duration) -> (Vec<(Duration, usize, Vec<u8>)>, LinkStats) {
    let t0 = Instant::now();
    let mut net = MemNetwork::new(model, LinkModel::default());
    let mut out = Vec::new();
    for i in 0..n {
        let now = t0 + gap * i;
        net.send(now, 0, &frame(i, 100));
        while let Some((to, f)) = net.poll_deliver(now) {
            out.push((now - t0, to, f));
        }
    }
    out.extend(drain(&mut net, t0));
    (out, net.stats())
}

#[test]
fn same_seed_same_deliveries() {
    let gap = Duration::from_micros(500);
    let (a, sa) = run(rough(), 5000, gap);
    let (b, sb) = run(rough(), 5000, gap);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, _) = run(LinkModel { seed: 8, ..rough() }, 5000, gap);
    assert_ne!(a, c, "a different seed must change the outcome");
}

#[test]
fn loss_rate_within_bounds() {
    let n = 100_000u32;
    let p = 0.1;
    let (out, stats) = run(
        LinkModel {
            loss: p,
            ..LinkModel::default()
        },
        n,
        Duration::ZERO,
    );
    // 5 standard deviations of a binomial(n, p).
    let sigma = (f64::from(n) * p * (1.0 - p)).sqrt();
    let lost = stats.lost as f64;
    assert!((lost - f64::from(n) * p).abs() < 5.0 * sigma, "lost {lost}");
    assert_eq!(stats.sent, u64::from(n));
    assert_eq!(stats.delivered + stats.lost, stats.sent);
    assert_eq!(out.len() as u64, stats.delivered);
    assert!(out.iter().all(|(_, to, _)| *to == 1));
}

#[test]
fn delay_is_exact_and_next_delivery_correct() {
    let delay = Duration::from_millis(30);
    let mut net = MemNetwork::symmetric(LinkModel {
        delay,
        ..LinkModel::default()
    });
    let t0 = Instant::now();
    assert_eq!(net.next_delivery(), None);
    assert_eq!(net.poll_deliver(t0 + delay), None);
    net.send(t0, 0, &frame(1, 60));
    net.send(t0 + Duration::from_millis(5), 1, &frame(2, 60));
    assert_eq!(net.next_delivery(), Some(t0 + delay));
    assert_eq!(net.in_flight(), 2);
    assert_eq!(net.poll_deliver(t0 + delay - Duration::from_nanos(1)), None);
    let (to, f) = net.poll_deliver(t0 + delay).unwrap();
    assert_eq!((to, seq_of(&f)), (1, 1));
    assert_eq!(
        net.next_delivery(),
        Some(t0 + delay + Duration::from_millis(5))
    );
    assert_eq!(net.poll_deliver(t0 + delay), None);
    let (to, f) = net.poll_deliver(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!((to, seq_of(&f)), (0, 2));
    assert_eq!(net.next_delivery(), None);
    assert_eq!(net.stats_from(0).delivered, 1);
    assert_eq!(net.stats_from(1).delivered, 1);
}

#[test]
fn jitter_stays_in_range_and_keeps_order() {
    let delay = Duration::from_millis(20);
    let jitter = Duration::from_millis(10);
    let gap = Duration::from_millis(1);
    let model = LinkModel {
        delay,
        jitter,
        seed: 3,
        ..LinkModel::default()
    };
    let (out, _) = run(model, 2000, gap);
    assert_eq!(out.len(), 2000);
    let mut late = 0;
    for (i, (at, _, f)) in out.iter().enumerate() {
        assert_eq!(seq_of(f), i as u32, "jitter alone must not reorder");
        let sent = gap * i as u32;
        // FIFO can push a frame behind its predecessor, but never past delay + jitter + gap.
        assert!(
            *at >= sent + delay && *at <= sent + delay + jitter,
            "{at:?} vs {sent:?}"
        );
        late += usize::from(*at > sent + delay + jitter / 2);
    }
    assert!(late > 100, "jitter must actually vary the delay");
}

#[test]
fn reorder_produces_out_of_order_deliveries() {
    let model = LinkModel {
        delay: Duration::from_millis(10),
        reorder: 0.1,
        seed: 11,
        ..LinkModel::default()
    };
    let (out, stats) = run(model, 1000, Duration::from_millis(1));
    assert_eq!(out.len(), 1000);
    let inversions = out
        .windows(2)
        .filter(|w| seq_of(&w[0].2) > seq_of(&w[1].2))
        .count();
    assert!(stats.reordered > 50 && stats.reordered < 150, "{stats:?}");
    assert!(
        inversions as u64 >= stats.reordered / 2,
        "inversions {inversions}"
    );
    let mut seqs: Vec<u32> = out.iter().map(|o| seq_of(&o.2)).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..1000).collect::<Vec<_>>(),
        "reordering loses nothing"
    );
}

#[test]
fn duplicates_are_counted_and_delivered() {
    let model = LinkModel {
        duplicate: 0.2,
        loss: 0.1,
        seed: 5,
        ..LinkModel::default()
    };
    let (out, stats) = run(model, 10_000, Duration::from_micros(10));
    assert!(
        stats.duplicated > 1500 && stats.duplicated < 2500,
        "{stats:?}"
    );
    assert_eq!(stats.delivered, stats.sent - stats.lost + stats.duplicated);
    let mut counts = vec![0u8; 10_000];
    for (_, _, f) in &out {
        counts[seq_of(f) as usize] += 1;
    }
    let twice = counts.iter().filter(|&&c| c == 2).count() as u64;
    assert_eq!(twice, stats.duplicated);
    assert!(counts.iter().all(|&c| c <= 2));
}

#[test]
fn oversize_frames_are_dropped() {
    let mut net = MemNetwork::symmetric(LinkModel {
        mtu: 100,
        ..LinkModel::default()
    });
    let t0 = Instant::now();
    net.send(t0, 0, &frame(1, 100));
    net.send(t0, 0, &frame(2, 101));
    net.send(t0, 1, &frame(3, 5000));
    let out = drain(&mut net, t0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2, frame(1, 100));
    let s = net.stats();
    assert_eq!((s.sent, s.delivered, s.oversize), (3, 1, 2));
}

#[test]
#[should_panic(expected = "ports are 0 and 1")]
fn bad_port_panics() {
    MemNetwork::symmetric(LinkModel::default()).send(Instant::now(), 2, &[0]);
}

#[test]
fn mem_pair_carries_frames_both_ways() {
    let delay = Duration::from_millis(20);
    let ((mut rx_a, mut tx_a), (mut rx_b, mut tx_b)) = mem_pair(
        LinkModel {
            delay,
            ..LinkModel::default()
        },
        LinkModel::default(),
    );
    assert_eq!(rx_a.link_type(), LinkType::Ethernet);
    let mut buf = [0u8; 2000];
    let start = Instant::now();
    tx_a.send(&frame(9, 300)).unwrap();
    let n = rx_b
        .recv(&mut buf)
        .unwrap()
        .expect("frame within the read timeout");
    assert!(start.elapsed() >= delay, "delivered before the link delay");
    assert_eq!(&buf[..n], &frame(9, 300)[..]);

    // A reader on another thread is woken by the send.
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2000];
        rx_a.recv(&mut buf).unwrap().map(|n| buf[..n].to_vec())
    });
    tx_b.send(&frame(10, 64)).unwrap();
    assert_eq!(reader.join().unwrap(), Some(frame(10, 64)));
    assert_eq!(rx_b.link_stats().delivered, 2);
    assert_eq!(rx_b.stats().received, 1);
}

#[test]
fn mem_rx_skips_oversize_and_times_out() {
    let ((_, mut tx_a), (mut rx_b, _)) = mem_pair(LinkModel::default(), LinkModel::default());
    rx_b.set_read_timeout(Duration::from_millis(10));
    tx_a.send(&frame(1, 500)).unwrap();
    tx_a.send(&frame(2, 100)).unwrap();
    let mut small = [0u8; 200];
    assert_eq!(rx_b.recv(&mut small).unwrap(), Some(100));
    assert_eq!(seq_of(&small), 2);
    assert_eq!(rx_b.recv(&mut small).unwrap(), None);
    let s = rx_b.stats();
    assert_eq!((s.received, s.oversize, s.dropped_by_kernel), (1, 1, 0));
}
