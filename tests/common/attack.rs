//! The attacker's tools for the namespace tests of the server's posture: a frame builder,
//! random sources in 198.18.0.0/15, an injector (pcap inject on an interface of a
//! namespace) and a recorder (pcap capture of a filter, on its own thread).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::Rng;
use rawtun::io::{open_pcap, PacketRx, PacketTx, PcapOptions};
use rawtun::wire::{
    emit_frame, header_len, parse_frame, FrameRepr, LinkType, TcpFlags, TcpOptions,
};

use super::Netns;

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    m
}

/// A random address and port in 198.18.0.0/15.
pub fn random_source(rng: &mut impl Rng) -> SocketAddr {
    let host: u32 = rng.random_range(1..(1 << 17) - 1);
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
    SocketAddr::new(ip.into(), rng.random_range(1024..65535))
}

/// An Ethernet frame of one TCP segment.
#[allow(clippy::too_many_arguments)]
pub fn segment(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    tsval: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = FrameRepr {
        link: LinkType::Ethernet,
        src_mac: macs.0,
        dst_mac: macs.1,
        src,
        dst,
        ttl: 64,
        ip_id: 7,
        seq,
        ack,
        flags,
        window: 64240,
        options: TcpOptions {
            timestamp: tsval.map(|v| (v, 0)),
            ..TcpOptions::default()
        },
    };
    emit(&repr, payload)
}

fn emit(repr: &FrameRepr, payload: &[u8]) -> Vec<u8> {
    let at = header_len(repr);
    let mut buf = vec![0u8; at + payload.len()];
    buf[at..].copy_from_slice(payload);
    let start = emit_frame(repr, &mut buf, at, payload.len()).expect("emit a test frame");
    buf[start..].to_vec()
}

/// `frame` after `edit` changed its header or payload (checksums recomputed).
pub fn rewrite(frame: &[u8], edit: impl FnOnce(&mut FrameRepr, &mut Vec<u8>)) -> Vec<u8> {
    let p = parse_frame(LinkType::Ethernet, frame).expect("a recorded frame parses");
    let mut repr = p.repr;
    let mut payload = p.payload.to_vec();
    edit(&mut repr, &mut payload);
    emit(&repr, &payload)
}

/// Sends raw frames out of an interface of a namespace.
pub struct Injector {
    tx: Box<dyn PacketTx>,
}

impl Injector {
    /// Must be called on a thread that entered the namespace (see [`Netns::run`]).
    pub fn open(iface: &str) -> Injector {
        let (_, tx, _) = open_pcap(&PcapOptions::new(iface, "tcp and port 1")).expect("pcap");
        Injector { tx: Box::new(tx) }
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.tx.send(frame).expect("inject a frame");
    }
}

/// Frames matching a pcap filter on an interface (inbound), recorded on a thread until
/// [`Recorder::stop`].
pub struct Recorder {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start(ns: &Netns, iface: &str, filter: &str) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (iface, filter) = (iface.to_string(), filter.to_string());
        let (s, f) = (stop.clone(), frames.clone());
        let thread = ns.thread(move || {
            let (mut rx, _, _) = open_pcap(&PcapOptions::new(iface, filter)).expect("pcap");
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(Some(n)) = rx.recv(&mut buf) {
                    f.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(buf[..n].to_vec());
                }
            }
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the recorder opened its capture");
        Recorder {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops and returns everything recorded.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.frames()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
