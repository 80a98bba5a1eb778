//! Packet captures: a `tcpdump -w` guard (immediate mode, settled before it stops), a minimal pcap file reader, and the analysis the
//! capture tests assert on (per-direction sequence advance, plaintext marker search).
//!
//! pcap file layout (libpcap format, all fields in the writer's byte order, told apart by the
//! magic number):
//!
//! ```text
//! global header, 24 bytes:
//! | magic u32 | major u16 | minor u16 | thiszone i32 | sigfigs u32 | snaplen u32 | linktype u32 |
//! each record, 16-byte header then incl_len bytes of frame:
//! | ts_sec u32 | ts_frac u32 | incl_len u32 | orig_len u32 | frame ... |
//! ```
//! magic a1b2c3d4 (microsecond) or a1b23c4d (nanosecond timestamps); linktype 1 = Ethernet.

use super::{wait_for, ChildGuard, Netns};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// pcap `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Frames of a pcap file and its link type.
pub struct PcapFile {
    /// Link type from the global header.
    pub linktype: u32,
    /// Captured bytes of each frame, in file order.
    pub frames: Vec<Vec<u8>>,
}

/// Reads a pcap file. A record cut short at the end (capture killed mid-write) is dropped.
pub fn read_pcap(path: &Path) -> std::io::Result<PcapFile> {
    let bytes = std::fs::read(path)?;
    parse_pcap(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Parses the bytes of a pcap file.
pub fn parse_pcap(bytes: &[u8]) -> Result<PcapFile, String> {
    let header = bytes
        .get(..24)
        .ok_or("pcap shorter than its 24-byte header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    let big_endian = match magic {
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |b: &[u8], at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let linktype = u32_at(header, 20);
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(record) = bytes.get(at..at + 16) {
        let incl_len = u32_at(record, 8) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + incl_len) else {
            break;
        };
        frames.push(frame.to_vec());
        at += 16 + incl_len;
    }
    Ok(PcapFile { linktype, frames })
}

/// A running `tcpdump -w FILE -U -s 0` on one interface of a namespace.
pub struct Capture {
    child: ChildGuard,
    file: PathBuf,
}

impl Capture {
    /// Starts tcpdump on `iface` inside `ns`, writing `file` (TCP only), and waits until it
    /// reports that it listens.
    pub fn start(ns: &Netns, iface: &str, file: &Path) -> Capture {
        Capture::start_filtered(ns, iface, file, "tcp")
    }

    /// [`Capture::start`] with a tcpdump filter of the caller's.
    pub fn start_filtered(ns: &Netns, iface: &str, file: &Path, filter: &str) -> Capture {
        let log = file.with_extension("tcpdump.log");
        let file_str = file.to_str().expect("temp paths are UTF-8");
        let child = ns.spawn(
            &[
                "tcpdump",
                "--immediate-mode",
                "-i",
                iface,
                "-w",
                file_str,
                "-U",
                "-s",
                "0",
                "-n",
                "-B",
                "65536",
                "-Z",
                "root",
                filter,
            ],
            Some(&log),
        );
        let ready = wait_for(Duration::from_secs(10), || {
            child.log_text().contains("listening on")
        });
        assert!(ready, "tcpdump did not start: {}", child.log_text());
        Capture {
            child,
            file: file.to_path_buf(),
        }
    }

    /// Waits until the file has not grown for 300 ms (at most 10 s), so frames still in
    /// flight or in the capture buffer are written before the capture stops.
    pub fn settle(&self) {
        let mut last = (u64::MAX, Instant::now());
        wait_for(Duration::from_secs(10), || {
            let size = std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
            if size != last.0 {
                last = (size, Instant::now());
            }
            last.1.elapsed() >= Duration::from_millis(300)
        });
    }

    /// Settles, then stops tcpdump (SIGTERM, so it flushes) and reads the file. Returns the
    /// frames and tcpdump's closing report (`N packets captured ... M packets dropped by
    /// kernel`).
    pub fn stop(mut self) -> (PcapFile, String) {
        self.settle();
        let status = self.child.terminate(Duration::from_secs(10));
        assert!(status.is_some(), "tcpdump ignored SIGTERM");
        let pcap = read_pcap(&self.file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.file.display()));
        (pcap, self.child.log_text())
    }
}

/// Kernel drop count from tcpdump's closing report (0 when absent).
pub fn dropped_by_kernel(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A TCP segment of a capture, reduced to what the analysis needs.
#[derive(Clone, Debug)]
pub struct Segment {
    /// "src -> dst" of the frame (the direction).
    pub direction: String,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP payload.
    pub payload: Vec<u8>,
}

/// What [`analyze`] found.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Data segments (payload > 0) per direction.
    pub data_segments: BTreeMap<String, usize>,
    /// Payload bytes per direction.
    pub payload_bytes: BTreeMap<String, u64>,
    /// Each consecutive pair of data segments whose seq did not advance by the payload
    /// length, as text.
    pub seq_violations: Vec<String>,
    /// Segments whose payload holds a 16-byte window of the marker.
    pub marker_hits: usize,
}

/// Checks, per direction, that for consecutive data segments
/// `seq(next) == seq(prev) + len(prev) (mod 2^32)`, and counts payloads containing any
/// 16-byte window of `marker` (a payload holding the whole marker holds such a window).
pub fn analyze(segments: &[Segment], marker: &[u8]) -> Analysis {
    const WINDOW: usize = 16;
    let windows: HashSet<&[u8]> = marker.windows(WINDOW.min(marker.len())).collect();
    let mut last: BTreeMap<&str, (u32, usize, usize)> = BTreeMap::new();
    let mut out = Analysis::default();
    for (index, seg) in segments.iter().enumerate() {
        if seg
            .payload
            .windows(WINDOW.min(marker.len()))
            .any(|w| windows.contains(w))
        {
            out.marker_hits += 1;
        }
        if seg.payload.is_empty() {
            continue;
        }
        *out.data_segments.entry(seg.direction.clone()).or_default() += 1;
        *out.payload_bytes.entry(seg.direction.clone()).or_default() += seg.payload.len() as u64;
        if let Some((seq, len, prev_index)) = last.get(seg.direction.as_str()) {
            let want = seq.wrapping_add(*len as u32);
            if seg.seq != want {
                out.seq_violations.push(format!(
                    "{}: segment #{index} seq {} but #{prev_index} (seq {seq}, {len} bytes) \
                     predicts {want}",
                    seg.direction, seg.seq
                ));
            }
        }
        last.insert(&seg.direction, (seg.seq, seg.payload.len(), index));
    }
    out
}

/// Parses each Ethernet frame with `rawtun::wire::parse_frame`; frames that are not TCP
/// (ARP, or anything the parser refuses) are skipped.
pub fn segments(pcap: &PcapFile) -> Vec<Segment> {
    assert_eq!(pcap.linktype, LINKTYPE_ETHERNET, "capture is not Ethernet");
    pcap.frames
        .iter()
        .filter_map(|frame| {
            let parsed = rawtun::wire::parse_frame(rawtun::wire::LinkType::Ethernet, frame).ok()?;
            Some(Segment {
                direction: format!("{:?} -> {:?}", parsed.repr.src, parsed.repr.dst),
                seq: parsed.repr.seq,
                payload: parsed.payload.to_vec(),
            })
        })
        .collect()
}
