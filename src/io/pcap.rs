//! The libpcap backend: one capture handle ([`PcapRx`]) and one injection handle
//! ([`PcapTx`]) on the same interface, opened by [`open_pcap`].
//!
//! Capture runs in immediate mode (no batching delay), non-promiscuous, inbound only (our own
//! injected frames are never read back), with the caller's BPF filter compiled with
//! optimization. libpcap's own read timeout does not fire on an idle Linux interface
//! (TPACKET_V3 only retires blocks that hold packets), so the handle is non-blocking and
//! `recv` waits with poll(2) for at most 100 ms, letting the reader notice shutdown. The
//! injection handle gets a filter that matches nothing, so the kernel never queues captured
//! frames on it.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ::pcap::{Active, Capture, Direction, Linktype};

use super::{LinkType, PacketRx, PacketTx, RxStats};

/// Longest `recv` waits for a frame.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// libpcap's batching timeout (immediate mode makes it moot; kept short regardless).
const PCAP_TIMEOUT_MS: i32 = 10;
/// Default capture length: the largest frame libpcap will hand over whole.
pub const DEFAULT_SNAPLEN: usize = 65535;
/// Default kernel capture buffer.
pub const DEFAULT_SOCKBUF: usize = 4 << 20;
/// Refresh the kernel drop counter after this many frames (and on every read timeout).
const STATS_REFRESH_FRAMES: u32 = 4096;
/// A filter that matches no frame (no frame is shorter than one byte).
const MATCH_NOTHING: &str = "less 0";

// DLT values as returned by pcap_datalink() (not the LINKTYPE_ values of savefiles).
const DLT_EN10MB: i32 = 1;
/// Linux/most systems.
const DLT_RAW: i32 = 12;
/// OpenBSD's DLT_RAW.
const DLT_RAW_OPENBSD: i32 = 14;
const DLT_IPV4: i32 = 228;
const DLT_IPV6: i32 = 229;

/// What [`open_pcap`] opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapOptions {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// BPF filter expression (see [`super::tunnel_filter`]).
    pub filter: String,
    /// Kernel capture buffer in bytes.
    pub sockbuf: usize,
    /// Longest frame captured whole; longer frames are counted as oversize and skipped.
    ///
    /// In immediate mode libpcap gives every ring slot `snaplen` bytes when the interface
    /// has offloads on (it can only shrink slots to the MTU with offloads off), so the ring
    /// holds about `sockbuf / snaplen` frames: 64 with the defaults. Callers that know the
    /// largest frame (MTU + link header, with GRO/LRO off) should pass that.
    pub snaplen: usize,
}

impl PcapOptions {
    /// Options with the default buffer ([`DEFAULT_SOCKBUF`]) and snaplen ([`DEFAULT_SNAPLEN`]).
    pub fn new(interface: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            filter: filter.into(),
            sockbuf: DEFAULT_SOCKBUF,
            snaplen: DEFAULT_SNAPLEN,
        }
    }
}

/// Why [`open_pcap`] failed.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The process lacks the privilege to open a packet socket.
    #[error("cannot open {interface} for packet capture: {message} (needs root or CAP_NET_RAW)")]
    PermissionDenied {
        /// Interface name.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// libpcap could not open or configure the interface.
    #[error("cannot open {interface} for packet capture: {message}")]
    Open {
        /// Interface name.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// The BPF filter did not compile or could not be installed.
    #[error("capture filter `{filter}` on {interface}: {message}")]
    Filter {
        /// Interface name.
        interface: String,
        /// The filter expression.
        filter: String,
        /// libpcap's message.
        message: String,
    },
    /// The interface's link layer is neither Ethernet nor raw IP.
    #[error(
        "{interface} has link type DLT_{dlt_name} ({dlt}); rawtun supports Ethernet \
         (DLT_EN10MB) and raw-IP (DLT_RAW, e.g. tun) interfaces"
    )]
    UnsupportedLink {
        /// Interface name.
        interface: String,
        /// The DLT number.
        dlt: i32,
        /// libpcap's name for it, e.g. `LINUX_SLL`.
        dlt_name: String,
    },
}

/// The capture handle of [`open_pcap`].
pub struct PcapRx {
    capture: Capture<Active>,
    interface: String,
    stats: RxStats,
    since_refresh: u32,
}

/// The injection handle of [`open_pcap`].
pub struct PcapTx {
    capture: Capture<Active>,
    interface: String,
}

/// Opens capture (immediate mode, promiscuous off, direction = inbound only, buffer =
/// `sockbuf`, BPF filter compiled with optimization) and a second handle for injection.
/// Reports the link type: DLT_EN10MB → Ethernet; DLT_RAW/DLT_IPV4/DLT_IPV6 (tun) → RawIp;
/// anything else is an error naming the DLT.
pub fn open_pcap(opts: &PcapOptions) -> Result<(PcapRx, PcapTx, LinkType), IoError> {
    let interface = opts.interface.as_str();
    if interface.is_empty() {
        return Err(IoError::Open {
            interface: String::new(),
            message: "empty interface name".into(),
        });
    }
    let mut rx = activate(interface, opts.snaplen, opts.sockbuf)?
        .setnonblock()
        .map_err(|e| open_error(interface, e))?;
    let link = link_type(interface, rx.get_datalink())?;
    rx.direction(Direction::In)
        .map_err(|e| open_error(interface, e))?;
    rx.filter(&opts.filter, true).map_err(|e| IoError::Filter {
        interface: interface.into(),
        filter: opts.filter.clone(),
        message: e.to_string(),
    })?;

    // The injection handle only sends: a small ring and a filter that drops everything.
    let mut tx = activate(interface, 256, 256 << 10)?;
    tx.filter(MATCH_NOTHING, true)
        .map_err(|e| IoError::Filter {
            interface: interface.into(),
            filter: MATCH_NOTHING.into(),
            message: e.to_string(),
        })?;

    let rx = PcapRx {
        capture: rx,
        interface: interface.into(),
        stats: RxStats::default(),
        since_refresh: 0,
    };
    let tx = PcapTx {
        capture: tx,
        interface: interface.into(),
    };
    Ok((rx, tx, link))
}

fn activate(interface: &str, snaplen: usize, sockbuf: usize) -> Result<Capture<Active>, IoError> {
    let clamp = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    Capture::from_device(interface)
        .map_err(|e| open_error(interface, e))?
        .promisc(false)
        .immediate_mode(true)
        .snaplen(clamp(snaplen))
        .buffer_size(clamp(sockbuf))
        .timeout(PCAP_TIMEOUT_MS)
        .open()
        .map_err(|e| open_error(interface, e))
}

fn open_error(interface: &str, error: ::pcap::Error) -> IoError {
    let message = error.to_string();
    let lower = message.to_ascii_lowercase();
    let denied = lower.contains("permission")
        || lower.contains("not permitted")
        || lower.contains("cap_net_raw");
    if denied {
        IoError::PermissionDenied {
            interface: interface.into(),
            message,
        }
    } else {
        IoError::Open {
            interface: interface.into(),
            message,
        }
    }
}

fn link_type(interface: &str, dlt: Linktype) -> Result<LinkType, IoError> {
    match dlt.0 {
        DLT_EN10MB => Ok(LinkType::Ethernet),
        DLT_RAW | DLT_RAW_OPENBSD | DLT_IPV4 | DLT_IPV6 => Ok(LinkType::RawIp),
        other => Err(IoError::UnsupportedLink {
            interface: interface.into(),
            dlt: other,
            dlt_name: dlt.get_name().unwrap_or_else(|_| "UNKNOWN".into()),
        }),
    }
}

/// Turns a libpcap failure on a live handle into an `io::Error` naming the interface.
fn io_error(interface: &str, error: ::pcap::Error) -> io::Error {
    let message = error.to_string();
    // pcap_sendpacket reports errno only as text; keep ENOBUFS recognisable for back-off.
    if message.contains("No buffer space available") {
        return io::Error::from_raw_os_error(libc::ENOBUFS);
    }
    io::Error::other(format!("pcap on {interface}: {message}"))
}

impl PcapRx {
    /// The interface this handle captures on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    fn refresh_stats(&mut self) {
        self.since_refresh = 0;
        if let Ok(stat) = self.capture.stats() {
            self.stats.dropped_by_kernel = u64::from(stat.dropped);
        }
    }
}

impl PacketRx for PcapRx {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut deadline = None;
        loop {
            let read = match self.capture.next_packet() {
                Ok(packet) => {
                    let data = packet.data;
                    // Cut by snaplen or longer than the caller's buffer: count and skip.
                    let whole = usize::try_from(packet.header.len).is_ok_and(|l| l == data.len());
                    match buf.get_mut(..data.len()) {
                        Some(dst) if whole => {
                            dst.copy_from_slice(data);
                            Read::Frame(data.len())
                        }
                        _ => Read::Oversize,
                    }
                }
                // Non-blocking handle: nothing buffered right now.
                Err(::pcap::Error::TimeoutExpired) => Read::Empty,
                Err(e) => return Err(io_error(&self.interface, e)),
            };
            match read {
                Read::Frame(len) => {
                    self.stats.received += 1;
                    self.since_refresh += 1;
                    if self.since_refresh >= STATS_REFRESH_FRAMES {
                        self.refresh_stats();
                    }
                    return Ok(Some(len));
                }
                Read::Oversize => self.stats.oversize += 1,
                Read::Empty => {
                    let now = Instant::now();
                    let deadline = *deadline.get_or_insert(now + READ_TIMEOUT);
                    let wait = deadline.saturating_duration_since(now);
                    if wait.is_zero() || !wait_readable(&self.capture, wait)? {
                        self.refresh_stats();
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn stats(&self) -> RxStats {
        self.stats
    }
}

/// One attempt to read from the non-blocking capture handle.
enum Read {
    Frame(usize),
    Oversize,
    Empty,
}

/// Waits up to `wait` for the capture descriptor to become readable; `Ok(false)` on timeout.
fn wait_readable(capture: &Capture<Active>, wait: Duration) -> io::Result<bool> {
    let mut fd = libc::pollfd {
        fd: capture.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so a sub-millisecond remainder still waits instead of spinning.
    let ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    // SAFETY: `fd` is one valid pollfd for the duration of the call (nfds = 1), and the
    // descriptor stays open because `capture` is borrowed.
    let rc = unsafe { libc::poll(&mut fd, 1, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        // A signal is not a failure: report "maybe readable" and let the caller retry.
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(true)
        } else {
            Err(err)
        };
    }
    Ok(rc > 0)
}

impl PcapTx {
    /// The interface this handle injects on.
    pub fn interface(&self) -> &str {
        &self.interface
    }
}

impl PacketTx for PcapTx {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.capture
            .sendpacket(frame)
            .map_err(|e| io_error(&self.interface, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_map() {
        assert_eq!(link_type("x", Linktype(1)).unwrap(), LinkType::Ethernet);
        assert_eq!(link_type("x", Linktype(12)).unwrap(), LinkType::RawIp);
        assert_eq!(link_type("x", Linktype(229)).unwrap(), LinkType::RawIp);
        let err = link_type("any", Linktype(113)).unwrap_err().to_string();
        assert!(err.contains("DLT_LINUX_SLL (113)"), "{err}");
        assert!(err.contains("any"), "{err}");
    }

    #[test]
    fn missing_interface_is_named() {
        let opts = PcapOptions::new("rt-no-such0", "tcp");
        let err = open_pcap(&opts).err().expect("no such interface");
        let text = err.to_string();
        assert!(text.contains("rt-no-such0"), "{text}");
        if !crate::sys::is_root_or_capable() {
            assert!(matches!(err, IoError::PermissionDenied { .. }), "{text}");
            assert!(text.contains("needs root or CAP_NET_RAW"), "{text}");
        }
    }

    #[test]
    fn empty_interface_is_refused() {
        let err = open_pcap(&PcapOptions::new("", "tcp")).err();
        assert!(matches!(err, Some(IoError::Open { .. })));
    }

    #[test]
    fn defaults() {
        let o = PcapOptions::new("eth0", "tcp dst port 1");
        assert_eq!((o.snaplen, o.sockbuf), (65535, 4 << 20));
    }
}
