use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An Ethernet/IPv4-typed frame of `len` bytes carrying `seq` after the header.
fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(22)];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    f.truncate(len.max(22));
    f
}

fn seq_of(f: &[u8]) -> u64 {
    u64::from_be_bytes(f[14..22].try_into().unwrap())
}

/// Releases everything due up to `now`, recording (seq, release instant = `now`).
fn drain(link: &mut Link, now: Instant, out: &mut Vec<(u64, Instant)>) {
    while let Some(f) = link.poll_release(now) {
        out.push((seq_of(&f), now));
    }
}

/// Feeds `n` frames spaced by `gap` and runs the link exactly: every release is polled at
/// its own instant. Returns (seq, release time) in release order.
fn run(link: &mut Link, t0: Instant, n: u64, gap: Duration, len: usize) -> Vec<(u64, Instant)> {
    let mut out = Vec::new();
    for i in 0..n {
        let arrival = t0 + gap * u32::try_from(i).unwrap();
        while let Some(at) = link.next_release().filter(|&at| at <= arrival) {
            drain(link, at, &mut out);
        }
        link.enqueue(arrival, frame(i, len));
    }
    while let Some(at) = link.next_release() {
        drain(link, at, &mut out);
    }
    out
}

#[test]
fn no_impairments_forwards_immediately() {
    let t0 = Instant::now();
    let mut link = Link::new(Impairments::default(), 1, t0);
    assert_eq!(link.handle_frame(t0, &frame(7, 100)), Verdict::Queued);
    assert_eq!(link.next_release(), Some(t0));
    assert_eq!(link.poll_release(t0).map(|f| seq_of(&f)), Some(7));
    assert_eq!(link.poll_release(t0), None);
    assert_eq!(link.next_release(), None);
    let s = link.stats();
    assert_eq!((s.received, s.forwarded, s.forwarded_bytes), (1, 1, 100));
}

#[test]
fn delay_is_exact() {
    let t0 = Instant::now();
    let cfg = Impairments {
        delay: ms(37),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 1, t0);
    for i in 0..10u32 {
        link.enqueue(t0 + Duration::from_micros(1234) * i, frame(i.into(), 60));
    }
    for i in 0..10u32 {
        let due = t0 + Duration::from_micros(1234) * i + ms(37);
        assert_eq!(link.next_release(), Some(due));
        assert_eq!(link.poll_release(due - Duration::from_nanos(1)), None);
        assert_eq!(link.poll_release(due).map(|f| seq_of(&f)), Some(i.into()));
    }
}

#[test]
fn jitter_stays_in_bounds_and_never_reorders() {
    let t0 = Instant::now();
    let cfg = Impairments {
        delay: ms(50),
        jitter: ms(10),
        ..Impairments::default()
    };
    // Sparse frames: each delay is drawn freely within 50 ± 10 ms.
    let mut link = Link::new(cfg.clone(), 3, t0);
    let out = run(&mut link, t0, 2000, ms(100), 60);
    let delays: Vec<Duration> = out
        .iter()
        .map(|&(seq, at)| at - (t0 + ms(100) * u32::try_from(seq).unwrap()))
        .collect();
    assert!(delays.iter().all(|&d| d >= ms(40) && d <= ms(60)));
    let (lo, hi) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    assert!(
        *lo < ms(41) && *hi > ms(59),
        "{lo:?}..{hi:?}: not spread over ±10 ms"
    );
    // Dense frames (1 ms apart, jitter ±10 ms): still in order.
    let mut link = Link::new(cfg, 3, t0);
    let out = run(&mut link, t0, 2000, ms(1), 60);
    assert_eq!(out.len(), 2000);
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
}

#[test]
fn random_loss_rate_within_bounds() {
    let t0 = Instant::now();
    let cfg = Impairments {
        loss: 0.1,
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 42, t0);
    let n = 100_000u64;
    let out = run(&mut link, t0, n, Duration::from_micros(10), 100);
    let s = link.stats();
    // Binomial sd = sqrt(n p (1-p)) ≈ 95: allow 5 sd.
    assert!(s.lost_random.abs_diff(10_000) < 475, "{s:?}");
    assert_eq!(s.forwarded + s.lost_random, n);
    assert_eq!(out.len() as u64, s.forwarded);
}

#[test]
fn gilbert_elliott_makes_bursts() {
    let t0 = Instant::now();
    let ge = GilbertElliott {
        p_good_bad: 0.01,
        p_bad_good: 0.25,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let cfg = Impairments {
        gilbert_elliott: Some(ge),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 9, t0);
    let mut lost = Vec::new();
    for i in 0..200_000u32 {
        let now = t0 + Duration::from_micros(10) * i;
        let v = link.enqueue(now, frame(0, 60));
        lost.push(v == Verdict::LostBurst);
        while link.poll_release(now).is_some() {}
    }
    let mut bursts = Vec::new();
    let mut run_len = 0u32;
    for &l in &lost {
        if l {
            run_len += 1;
        } else if run_len > 0 {
            bursts.push(run_len);
            run_len = 0;
        }
    }
    let mean = f64::from(bursts.iter().sum::<u32>()) / bursts.len() as f64;
    // Mean burst length 1 / p_bad_good = 4; stationary loss p_gb / (p_gb + p_bg) ≈ 3.85 %.
    assert!((mean - 4.0).abs() < 0.3, "mean burst {mean}");
    let rate = link.stats().lost_burst as f64 / 200_000.0;
    assert!((rate - 0.0385).abs() < 0.004, "loss {rate}");
    assert!(bursts.iter().any(|&b| b >= 10), "no long bursts");
    assert_eq!(link.stats().lost_random, 0);
}

#[test]
fn rate_limit_gives_configured_throughput() {
    let t0 = Instant::now();
    let cfg = Impairments {
        rate: Some(50_000_000),
        queue: QueueLimit::Time(ms(100)),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 1, t0);
    // Offer 100 Mbit/s (1250-byte frames every 100 µs) for 2 s of virtual time.
    let out = run(&mut link, t0, 20_000, Duration::from_micros(100), 1250);
    let s = link.stats();
    assert!(s.dropped_queue > 9_000, "{s:?}");
    // Throughput over the release span.
    let span = out.last().unwrap().1 - out.first().unwrap().1;
    let bits = (out.len() as f64 - 1.0) * 1250.0 * 8.0;
    let rate = bits / span.as_secs_f64();
    assert!((rate - 50e6).abs() < 50e6 * 0.001, "{rate}");
    assert!(
        s.max_queue_delay <= ms(100) && s.max_queue_delay > ms(99),
        "{s:?}"
    );
    // Each frame left one serialization time (200 µs) after the previous one.
    assert!(out
        .windows(2)
        .all(|w| w[1].1 - w[0].1 == Duration::from_micros(200)));
}

#[test]
fn queue_bound_tail_drops() {
    let t0 = Instant::now();
    for queue in [QueueLimit::Time(ms(10)), QueueLimit::Bytes(10_000)] {
        let cfg = Impairments {
            rate: Some(8_000_000), // 1000-byte frame = 1 ms
            queue,
            delay: ms(5),
            ..Impairments::default()
        };
        let mut link = Link::new(cfg, 1, t0);
        let verdicts: Vec<Verdict> = (0..100).map(|i| link.enqueue(t0, frame(i, 1000))).collect();
        // Waits of 0, 1, …, 10 ms fit the 10 ms bound; the rest are dropped.
        assert!(
            verdicts[..11].iter().all(|&v| v == Verdict::Queued),
            "{queue:?}"
        );
        assert!(verdicts[11..].iter().all(|&v| v == Verdict::DroppedQueue));
        assert_eq!(link.stats().dropped_queue, 89);
        assert_eq!(link.stats().max_queue_delay, ms(10));
        // The last admitted frame: 10 ms queued + 1 ms serialization + 5 ms delay.
        let mut last = None;
        while let Some(at) = link.next_release() {
            link.poll_release(at);
            last = Some(at);
        }
        assert_eq!(last, Some(t0 + ms(16)));
    }
}

#[test]
fn blackout_windows_are_exact() {
    let t0 = Instant::now();
    let cfg = Impairments {
        blackouts: vec![
            parse_blackout("1s+2s").unwrap(),
            parse_blackout("5s+500ms").unwrap(),
        ],
        delay: ms(100),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 1, t0);
    let out = run(&mut link, t0, 7000, ms(1), 60);
    let passed: std::collections::HashSet<u64> = out.iter().map(|o| o.0).collect();
    for seq in 0..7000 {
        let dark = (1000..3000).contains(&seq) || (5000..5500).contains(&seq);
        assert_eq!(passed.contains(&seq), !dark, "frame at {seq} ms");
    }
    assert_eq!(link.stats().lost_blackout, 2500);

    // Signal-triggered: from now for the duration, extended by a second signal.
    let mut link = Link::new(Impairments::default(), 1, t0);
    link.start_blackout(t0 + ms(10), ms(20));
    link.start_blackout(t0 + ms(15), ms(5)); // inside the first: no effect
    assert_eq!(link.enqueue(t0 + ms(9), frame(0, 60)), Verdict::Queued);
    assert_eq!(
        link.enqueue(t0 + ms(10), frame(1, 60)),
        Verdict::LostBlackout
    );
    assert_eq!(
        link.enqueue(t0 + ms(29), frame(2, 60)),
        Verdict::LostBlackout
    );
    assert_eq!(link.enqueue(t0 + ms(30), frame(3, 60)), Verdict::Queued);
}

#[test]
fn mtu_counts_the_ip_packet() {
    let t0 = Instant::now();
    let cfg = Impairments {
        mtu: Some(1280),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 1, t0);
    assert_eq!(link.enqueue(t0, frame(0, 14 + 1280)), Verdict::Queued);
    assert_eq!(link.enqueue(t0, frame(1, 14 + 1281)), Verdict::DroppedMtu);
    let mut tagged = frame(2, 18 + 1280);
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(link.enqueue(t0, tagged), Verdict::Queued);
    assert_eq!(link.stats().dropped_mtu, 1);
    assert_eq!(ip_len(&[0u8; 5]), 0);
}

#[test]
fn reorder_and_duplicate_rates() {
    let t0 = Instant::now();
    let cfg = Impairments {
        delay: ms(20),
        reorder: 0.05,
        reorder_gap: ms(3),
        duplicate: 0.02,
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 5, t0);
    let n = 20_000;
    let out = run(&mut link, t0, n, ms(1), 60);
    let s = link.stats();
    assert!(s.reordered.abs_diff(1000) < 150, "{s:?}");
    assert!(s.duplicated.abs_diff(400) < 100, "{s:?}");
    assert_eq!(out.len() as u64, n + s.duplicated);
    // Overtaken frames: later sequence numbers released before earlier ones.
    let inversions = out.windows(2).filter(|w| w[1].0 < w[0].0).count() as u64;
    assert!(inversions > s.reordered * 9 / 10, "{inversions} vs {s:?}");
}

/// Everything on, recorded frame by frame.
fn trace(seed: u64) -> (Vec<(u64, Instant)>, LinkStats) {
    let t0 = Instant::now();
    let cfg = Impairments {
        delay: ms(30),
        jitter: ms(5),
        loss: 0.03,
        gilbert_elliott: Some(GilbertElliott {
            p_good_bad: 0.02,
            p_bad_good: 0.3,
            loss_good: 0.0,
            loss_bad: 0.8,
        }),
        reorder: 0.02,
        duplicate: 0.01,
        rate: Some(10_000_000),
        queue: QueueLimit::Bytes(30_000),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, seed, t0);
    let out = run(&mut link, t0, 5000, Duration::from_micros(900), 1400);
    let out = out.into_iter().map(|(s, at)| (s, t0 + (at - t0))).collect();
    (out, link.stats())
}

#[test]
fn same_seed_same_outcome() {
    let (a, sa) = trace(77);
    let (b, sb) = trace(77);
    let (c, sc) = trace(78);
    // Instants differ between runs only by t0; compare the sequences and the counters.
    let seqs = |v: &[(u64, Instant)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(seqs(&a), seqs(&b));
    assert_eq!(sa, sb);
    assert_ne!(seqs(&a), seqs(&c));
    assert_ne!(sa, sc);
    assert!(sa.lost_random > 0 && sa.lost_burst > 0 && sa.dropped_queue > 0);
}

#[test]
fn parses_cli_forms() {
    assert_eq!(parse_probability("2%"), Ok(0.02));
    assert_eq!(parse_probability("0.02"), Ok(0.02));
    assert!(parse_probability("120%").is_err());
    assert!(parse_probability("-1").is_err());
    assert!(parse_probability("2x").is_err());
    assert_eq!(parse_duration("100ms"), Ok(ms(100)));
    assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
    assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert!(parse_duration("100").is_err());
    assert!(parse_duration("").is_err());
    assert_eq!(parse_rate("50mbit"), Ok(50_000_000));
    assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
    assert_eq!(parse_rate("800kbit"), Ok(800_000));
    assert_eq!(parse_rate("1.5Mbit"), Ok(1_500_000));
    assert!(parse_rate("0mbit").is_err());
    assert!(parse_rate("50mb/s").is_err());
    assert_eq!(parse_queue("100ms"), Ok(QueueLimit::Time(ms(100))));
    assert_eq!(parse_queue("64kb"), Ok(QueueLimit::Bytes(64_000)));
    assert_eq!(parse_queue("64KiB"), Ok(QueueLimit::Bytes(65_536)));
    assert!(parse_queue("64").is_err());
    let ge = parse_gilbert_elliott("1%,30%,0,100%").unwrap();
    assert_eq!(
        (ge.p_good_bad, ge.p_bad_good, ge.loss_good, ge.loss_bad),
        (0.01, 0.3, 0.0, 1.0)
    );
    assert!(parse_gilbert_elliott("1%,30%,0").is_err());
    assert_eq!(
        parse_blackout("10s+20s"),
        Ok(Blackout {
            start: Duration::from_secs(10),
            duration: Duration::from_secs(20)
        })
    );
    assert!(parse_blackout("10s").is_err());
}

#[test]
fn serialization_time() {
    assert_eq!(serialization(1250, 10_000_000), Duration::from_millis(1));
    assert_eq!(serialization(1, 3), Duration::from_nanos(2_666_666_667));
}

#[test]
fn held_frames_are_bounded() {
    let t0 = Instant::now();
    let cfg = Impairments {
        delay: Duration::from_secs(1),
        ..Impairments::default()
    };
    let mut link = Link::new(cfg, 1, t0);
    for i in 0..HELD_LIMIT as u64 + 5 {
        link.enqueue(t0, frame(i, 22));
    }
    assert_eq!(link.held(), HELD_LIMIT);
    assert_eq!(link.stats().dropped_queue, 5);
}
