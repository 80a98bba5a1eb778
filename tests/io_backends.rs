//! The packet backends (pcap and AF_PACKET) on a real veth pair between two network
//! namespaces (needs root); each test runs once per backend.
//!
//! Namespace A (198.18.200.1/24, `rta`) injects hand-built Ethernet/IPv4/TCP frames to
//! namespace B (198.18.200.2/24, `rtb`): B must capture every frame to the tunnel port with
//! identical bytes and none to another port, and A must never capture its own injections.
//! With AF_PACKET, B captures on two rings in one fanout group: the flow's frames all land
//! on one of them.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rawtun::io::{
    open_afpacket, open_pcap, tunnel_filter, AfPacketOptions, IoError, LinkType, PacketRx,
    PacketTx, PcapOptions, RingSpec,
};
use rawtun::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Pcap,
    AfPacket,
    /// AF_PACKET with `PACKET_QDISC_BYPASS`, A sending through `queue`/`flush` (batches of
    /// `TX_BATCH` frames per `sendmmsg`, and partial batches at each flush).
    AfPacketBatched,
}

type Handles = (Vec<Box<dyn PacketRx>>, Box<dyn PacketTx>, LinkType);

/// The backend's capture handles (AF_PACKET: two rings in a fanout group) and one sender.
fn open(backend: Backend, interface: &str, filter: String) -> Result<Handles, IoError> {
    match backend {
        Backend::Pcap => {
            let mut opts = PcapOptions::new(interface, filter);
            // veth has offloads on, so libpcap sizes each ring slot by snaplen: 65535 would
            // leave only sockbuf / 64 KiB = 64 slots for a burst of 1100 frames.
            opts.snaplen = 2048;
            let (rx, tx, link) = open_pcap(&opts)?;
            Ok((vec![Box::new(rx)], Box::new(tx), link))
        }
        Backend::AfPacket | Backend::AfPacketBatched => {
            let opened = open_afpacket(&AfPacketOptions {
                interface: interface.to_owned(),
                filter,
                ring: RingSpec::with_bytes(4 << 20),
                rings: 2,
                senders: 1,
                qdisc_bypass: backend == Backend::AfPacketBatched,
            })?;
            let rxs = opened
                .rx
                .into_iter()
                .map(|r| Box::new(r) as Box<dyn PacketRx>)
                .collect();
            let tx = opened.tx.into_iter().next().expect("one sender");
            Ok((rxs, Box::new(tx), opened.link))
        }
    }
}

const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 2);
const TUNNEL_PORT: u16 = 4000;
const OTHER_PORT: u16 = 4001;
const SRC_PORT: u16 = 5000;
const FRAMES: u32 = 1000;
const DEADLINE: Duration = Duration::from_secs(15);

/// Two namespaces joined by a veth pair; deleted on drop, also when the test panics.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create(tag: &str) -> Namespaces {
        let pid = std::process::id();
        let ns = Namespaces {
            a: format!("rt-io-{pid}-{tag}a"),
            b: format!("rt-io-{pid}-{tag}b"),
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&[
            "-n", &ns.a, "link", "add", "rta", "type", "veth", "peer", "name", "rtb", "netns",
            &ns.b,
        ]);
        ip(&["-n", &ns.a, "addr", "add", "198.18.200.1/24", "dev", "rta"]);
        ip(&["-n", &ns.b, "addr", "add", "198.18.200.2/24", "dev", "rtb"]);
        ip(&["-n", &ns.a, "link", "set", "rta", "up"]);
        ip(&["-n", &ns.b, "link", "set", "rtb", "up"]);
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("runs ip(8)");
    assert!(status.success(), "ip {args:?} failed");
}

/// RFC 1071 checksum of `data` added to `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + TCP (ACK|PSH) + 16 payload bytes carrying `n`, checksums valid.
fn tcp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], dport: u16, n: u32) -> Vec<u8> {
    let mut payload = [0x5au8; 16];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    let tcp_len = 20 + payload.len();
    let mut tcp = Vec::with_capacity(tcp_len);
    tcp.extend_from_slice(&SRC_PORT.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&(1000 + n * 16).to_be_bytes()); // seq
    tcp.extend_from_slice(&1u32.to_be_bytes()); // ack
    tcp.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(&payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&IP_A.octets());
    pseudo.extend_from_slice(&IP_B.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let tcp_sum = checksum(sum, &tcp);
    tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());

    let mut ipv4 = vec![0x45, 0];
    ipv4.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ipv4.extend_from_slice(&(n as u16).to_be_bytes());
    ipv4.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
    ipv4.extend_from_slice(&IP_A.octets());
    ipv4.extend_from_slice(&IP_B.octets());
    let ip_sum = checksum(0, &ipv4);
    ipv4[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    let mut frame = Vec::with_capacity(14 + ipv4.len() + tcp.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ipv4);
    frame.extend_from_slice(&tcp);
    frame
}

struct Captured {
    frames: Vec<Vec<u8>>,
    /// Frames each capture handle read.
    per_ring: Vec<u64>,
    neighbor_a: Option<[u8; 6]>,
}

/// Namespace B: open the capture, report B's MAC, collect frames until FRAMES arrived and the
/// line is quiet.
fn side_b(backend: Backend, netns: String, mac_tx: mpsc::Sender<[u8; 6]>) -> Captured {
    sys::enter_netns(&netns).expect("enters namespace B");
    assert_eq!(sys::interface_mtu("rtb").unwrap(), 1500);
    let addrs = sys::interface_addrs("rtb").unwrap();
    assert!(addrs.contains(&IpAddr::V4(IP_B)), "{addrs:?}");
    let (mut rxs, _tx, link) =
        open(backend, "rtb", tunnel_filter(TUNNEL_PORT, None)).expect("opens rtb");
    assert_eq!(link, LinkType::Ethernet);
    mac_tx.send(sys::interface_mac("rtb").unwrap()).unwrap();

    let start = Instant::now();
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65535];
    'read: while start.elapsed() < DEADLINE {
        let mut quiet = true;
        // Each handle until it has nothing for a read timeout (frames of one flow arrive
        // in order on one of them).
        for rx in rxs.iter_mut() {
            while let Some(n) = rx.recv(&mut buf).unwrap() {
                frames.push(buf[..n].to_vec());
                quiet = false;
            }
        }
        // Quiet for a read timeout after everything arrived: no stragglers left.
        if quiet && frames.len() >= FRAMES as usize {
            break 'read;
        }
    }
    let per_ring: Vec<u64> = rxs.iter().map(|rx| rx.stats().received).collect();
    assert_eq!(per_ring.iter().sum::<u64>(), frames.len() as u64);
    for rx in &rxs {
        let stats = rx.stats();
        assert_eq!(
            (stats.dropped_by_kernel, stats.oversize),
            (0, 0),
            "{stats:?}"
        );
    }
    // B's kernel answered A's segments with RSTs, which resolved A in B's ARP cache.
    let mut neighbor_a = None;
    for _ in 0..20 {
        neighbor_a = sys::neighbor_mac(IpAddr::V4(IP_A), "rtb").unwrap();
        if neighbor_a.is_some() {
            break;
        }
        let _ = rxs[0].recv(&mut buf); // waits up to one read timeout
    }
    Captured {
        frames,
        per_ring,
        neighbor_a,
    }
}

fn between_namespaces(backend: Backend) {
    assert!(
        sys::is_root(),
        "needs root (network namespaces, raw packets)"
    );
    let ns = Namespaces::create(match backend {
        Backend::Pcap => "p",
        Backend::AfPacket => "f",
        Backend::AfPacketBatched => "m",
    });

    let (mac_tx, mac_rx) = mpsc::channel();
    let b_name = ns.b.clone();
    let b = thread::spawn(move || side_b(backend, b_name, mac_tx));

    let a_name = ns.a.clone();
    let a = thread::spawn(move || {
        sys::enter_netns(&a_name).expect("enters namespace A");
        let bad = open(backend, "rta", "tcp dst port notaport".into());
        assert!(matches!(bad, Err(IoError::Filter { .. })));
        // Everything A itself sends would match: A must not capture its own frames.
        let (mut rxs, mut tx, link) =
            open(backend, "rta", format!("tcp and src host {IP_A}")).expect("opens rta");
        assert_eq!(link, LinkType::Ethernet);
        let mac_a = sys::interface_mac("rta").unwrap();
        let mac_b = mac_rx.recv_timeout(DEADLINE).expect("B is ready");
        let mut expected = Vec::new();
        let batched = backend == Backend::AfPacketBatched;
        // Batched: frames the kernel or the backend refuses are counted, not sent.
        let refused = std::cell::Cell::new(0);
        let send = |tx: &mut Box<dyn PacketTx>, frame: &[u8]| {
            if batched {
                if let Err(f) = tx.queue(frame) {
                    refused.set(refused.get() + f.frames);
                }
            } else {
                tx.send(frame).unwrap();
            }
        };
        for n in 0..FRAMES {
            let frame = tcp_frame(mac_b, mac_a, TUNNEL_PORT, n);
            send(&mut tx, &frame);
            expected.push(frame);
            if n % 10 == 0 {
                send(&mut tx, &tcp_frame(mac_b, mac_a, OTHER_PORT, n));
            }
            if batched && (n == 5 || n == 300) {
                // Longer than the link's MTU (EMSGSIZE), mid-batch: the frames after it
                // in its batch must still go.
                let mut big = tcp_frame(mac_b, mac_a, TUNNEL_PORT, n);
                big.resize(2000, 0);
                send(&mut tx, &big);
            }
            if batched && n == 9 {
                send(&mut tx, &[0u8; 10]); // no Ethernet header
            }
            // Flush at a period prime to the batch size: full and partial batches.
            if batched && n % 97 == 96 {
                if let Err(f) = tx.flush() {
                    refused.set(refused.get() + f.frames);
                }
            }
        }
        if let Err(f) = tx.flush() {
            refused.set(refused.get() + f.frames);
        }
        assert_eq!(refused.get(), if batched { 3 } else { 0 }, "refused frames");
        let mut buf = vec![0u8; 65535];
        let mut own = 0;
        let start = Instant::now();
        for rx in rxs.iter_mut() {
            while rx.recv(&mut buf).unwrap().is_some() && start.elapsed() < DEADLINE {
                own += 1;
            }
        }
        (mac_a, expected, own)
    });

    let (mac_a, expected, own) = a.join().expect("side A");
    let captured = b.join().expect("side B");
    assert_eq!(own, 0, "A captured its own outgoing frames");
    assert_eq!(
        captured.frames.len(),
        expected.len(),
        "B's capture count {:?}",
        captured.per_ring
    );
    for (n, (got, want)) in captured.frames.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {n} differs");
    }
    // One flow, one ring: the fanout group keeps a flow's frames together (in order).
    assert_eq!(
        captured.per_ring.iter().filter(|&&n| n > 0).count(),
        1,
        "{:?}",
        captured.per_ring
    );
    assert_eq!(captured.neighbor_a, Some(mac_a), "A's MAC in B's ARP cache");
    drop(ns);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pcap_between_namespaces() {
    between_namespaces(Backend::Pcap);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn afpacket_between_namespaces() {
    between_namespaces(Backend::AfPacket);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn afpacket_batched_sends_with_qdisc_bypass_between_namespaces() {
    between_namespaces(Backend::AfPacketBatched);
}
