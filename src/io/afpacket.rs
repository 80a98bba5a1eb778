//! The AF_PACKET backend: capture from a TPACKET_V3 receive ring, one ring per packet
//! worker, all of them in one `PACKET_FANOUT` group (the kernel's flow hash keeps a flow on
//! one ring), with the tunnel's BPF filter attached in the kernel; injection on a socket
//! that never receives, in batches of up to [`TX_BATCH`] frames per `sendmmsg` call.
//!
//! Opened by [`open_afpacket`]. Compared with libpcap it saves a library layer and a copy
//! of the ring into libpcap's buffer, lets several threads capture at once (fanout), and
//! exposes the ring's own drop counter (`PACKET_STATISTICS`).
//!
//! Ring layout (linux/if_packet.h): the mapping is `blocks` blocks of `block_size` bytes.
//! A block belongs to the kernel until it sets `TP_STATUS_USER` in the block descriptor
//! (when the block is full or `retire_ms` after its first packet); the reader then walks its
//! `num_pkts` packets (each a `tpacket3_hdr`, chained by `tp_next_offset`) and hands the
//! block back by writing `TP_STATUS_KERNEL`. Blocks are used in order.
//!
//! Links: `ARPHRD_ETHER` interfaces are Ethernet; interfaces without a link-layer header
//! (tun, PPP, WireGuard and other raw-IP devices) hand over and take bare IP packets
//! ([`LinkType::RawIp`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{IoError, LinkType, PacketRx, PacketTx, RxStats, SendFailure};

// linux/if_packet.h and linux/if_ether.h (stable kernel ABI).
const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
/// The group's hook skips outgoing frames (PACKET_IGNORE_OUTGOING for a fanout group).
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
/// The kernel picks an unused group id (read back with getsockopt).
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ARPHRD_ETHER: u16 = 1;

// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then tpacket_hdr_v1).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_MAC: usize = 24;

/// Longest `recv` waits for a frame.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Refresh the kernel drop counter after this many frames (and on every read timeout).
const STATS_REFRESH_FRAMES: u32 = 4096;

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// The receive ring's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    /// Bytes per block (a power of two, at least a page).
    pub block_size: usize,
    /// Number of blocks.
    pub blocks: usize,
    /// A block that holds packets is handed to the reader at the latest this long after its
    /// first packet (the kernel's `tp_retire_blk_tov`; it also wakes the reader sooner when
    /// the block fills). This is the latency a lone packet can wait in the ring.
    pub retire_ms: u32,
}

impl RingSpec {
    /// A ring of about `bytes` (rounded to whole 256 KiB blocks, at least 4 blocks).
    pub fn with_bytes(bytes: usize) -> RingSpec {
        const BLOCK: usize = 256 << 10;
        RingSpec {
            block_size: BLOCK,
            blocks: bytes.div_ceil(BLOCK).clamp(4, 4096),
            retire_ms: 1,
        }
    }
}

/// What [`open_afpacket`] opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// The capture filter in pcap syntax ([`super::tunnel_filter`]), compiled by libpcap
    /// into classic BPF and attached to every ring in the kernel.
    pub filter: String,
    /// Geometry of each receive ring.
    pub ring: RingSpec,
    /// Number of receive rings (one per capturing thread), joined in one fanout group.
    pub rings: usize,
    /// Number of injection sockets (one per packet worker).
    pub senders: usize,
    /// Send with `PACKET_QDISC_BYPASS` (skips the interface's qdisc: faster, but no traffic
    /// shaping or queueing discipline applies to rawtun's frames).
    pub qdisc_bypass: bool,
}

/// Rings, senders and the link type of [`open_afpacket`].
pub struct AfPacket {
    /// One per requested ring, in one fanout group.
    pub rx: Vec<AfPacketRx>,
    /// One per requested sender.
    pub tx: Vec<AfPacketTx>,
    /// The interface's link layer.
    pub link: LinkType,
}

/// A socket, its ring, and where the reader is in it.
pub struct AfPacketRx {
    fd: OwnedFd,
    ring: NonNull<u8>,
    ring_len: usize,
    spec: RingSpec,
    /// The block being read (or waited for).
    block: usize,
    /// Packets left in `block` once it is ours, and the offset of the next one.
    left: u32,
    offset: usize,
    stats: RxStats,
    since_refresh: u32,
    /// The interface's index, and whether the kernel reported it down (ENETDOWN).
    ifindex: i32,
    down: std::cell::Cell<bool>,
}

// SAFETY: the mapping is owned by this value alone (created in `open_ring`, unmapped in
// `drop`); moving it to another thread moves that exclusive ownership along.
unsafe impl Send for AfPacketRx {}

/// An injection socket: bound to no protocol, so it never receives. Frames given to
/// [`PacketTx::queue`] wait in `batch` (at most [`TX_BATCH`] of them) and go to the kernel
/// in one `sendmmsg` call.
pub struct AfPacketTx {
    fd: OwnedFd,
    ifindex: i32,
    link: LinkType,
    /// Queued frames back to back; `ends[i]` is where frame `i` ends. Both keep their
    /// capacity, so queueing allocates nothing once the first batches went out.
    batch: Vec<u8>,
    ends: Vec<usize>,
}

/// Frames sent per `sendmmsg` call at most.
pub const TX_BATCH: usize = 32;

/// Opens `opts.rings` receive rings in one fanout group and `opts.senders` injection
/// sockets on `opts.interface`.
pub fn open_afpacket(opts: &AfPacketOptions) -> Result<AfPacket, IoError> {
    let interface = opts.interface.as_str();
    let open_err = |e: io::Error| open_error(interface, e);
    let ifindex = ifindex(interface).map_err(open_err)?;
    let probe = packet_socket(0).map_err(open_err)?;
    let link = link_type(&probe, interface)?;
    let program = inbound_only(compile_filter(interface, &opts.filter, link)?);
    let mut rx: Vec<AfPacketRx> = Vec::with_capacity(opts.rings);
    // The first ring creates the fanout group (the kernel picks an unused id, so two
    // daemons in one namespace never share a group); the others join it.
    let mut group = None;
    for _ in 0..opts.rings.max(1) {
        let ring = open_ring(ifindex, &opts.ring, &program).map_err(open_err)?;
        if opts.rings > 1 {
            group = Some(ring.join_fanout(group).map_err(open_err)?);
        }
        rx.push(ring);
    }
    let mut tx = Vec::with_capacity(opts.senders);
    for _ in 0..opts.senders.max(1) {
        let fd = packet_socket(0).map_err(open_err)?;
        if opts.qdisc_bypass {
            setsockopt(&fd, SOL_PACKET, PACKET_QDISC_BYPASS, &1i32).map_err(open_err)?;
        }
        tx.push(AfPacketTx {
            fd,
            ifindex,
            link,
            batch: Vec::with_capacity(TX_BATCH * 1600),
            ends: Vec::with_capacity(TX_BATCH),
        });
    }
    Ok(AfPacket { rx, tx, link })
}

fn open_error(interface: &str, e: io::Error) -> IoError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => IoError::PermissionDenied {
            interface: interface.to_owned(),
            message: e.to_string(),
        },
        _ => IoError::Open {
            interface: interface.to_owned(),
            message: e.to_string(),
        },
    }
}

/// The interface's index.
fn ifindex(interface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))
}

/// Whether an interface with this index exists (in the caller's network namespace).
fn interface_exists(ifindex: i32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname(3) may write.
    !unsafe { libc::if_indextoname(ifindex as libc::c_uint, name.as_mut_ptr()) }.is_null()
}

/// Ethernet for `ARPHRD_ETHER`; raw IP for devices without a link-layer header.
///
/// Asked of the kernel (SIOCGIFHWADDR on `fd`) rather than read from /sys, which shows the
/// network namespace /sys was mounted in, not necessarily the caller's.
fn link_type(fd: &OwnedFd, interface: &str) -> Result<LinkType, IoError> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(IoError::Open {
            interface: interface.to_owned(),
            message: "interface name too long".into(),
        });
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the kernel fills the union.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        return Err(open_error(interface, io::Error::last_os_error()));
    }
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let kind = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    match kind {
        ARPHRD_ETHER => Ok(LinkType::Ethernet),
        // PPP, raw IP, IP-in-IP / IPv6 tunnels, SIT, and "none" (tun, WireGuard): a
        // packet socket reads and writes bare IP packets on them. (GRE devices are left
        // out: without a fixed remote they carry the outer header on packet sockets.)
        512 | 519 | 768 | 769 | 776 | 65534 => Ok(LinkType::RawIp),
        other => Err(IoError::UnsupportedLink {
            interface: interface.to_owned(),
            dlt: i32::from(other),
            dlt_name: format!("ARPHRD {other}"),
        }),
    }
}

/// `program` behind a check that refuses outgoing frames (the packet type, a kernel
/// ancillary load), so no kernel needs PACKET_IGNORE_OUTGOING or the fanout group's flag
/// for rawtun never to read back what it sent.
fn inbound_only(program: Vec<libc::sock_filter>) -> Vec<libc::sock_filter> {
    const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
    const PACKET_OUTGOING: u32 = 4;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut out = vec![
        insn(0x30, 0, 0, SKF_AD_PKTTYPE),  // ldb [pkttype]
        insn(0x15, 0, 1, PACKET_OUTGOING), // jeq #outgoing, next, skip one
        insn(0x06, 0, 0, 0),               // ret #0 (drop)
    ];
    out.extend(program);
    out
}

/// The filter compiled by libpcap for the link type, as kernel socket-filter instructions.
fn compile_filter(
    interface: &str,
    filter: &str,
    link: LinkType,
) -> Result<Vec<libc::sock_filter>, IoError> {
    let err = |message: String| IoError::Filter {
        interface: interface.to_owned(),
        filter: filter.to_owned(),
        message,
    };
    let linktype = match link {
        LinkType::Ethernet => ::pcap::Linktype::ETHERNET,
        LinkType::RawIp => ::pcap::Linktype(12), // DLT_RAW
    };
    let dead = ::pcap::Capture::dead(linktype).map_err(|e| err(e.to_string()))?;
    let program = dead.compile(filter, true).map_err(|e| err(e.to_string()))?;
    // The pcap crate exposes an instruction only through Display: "code jt jf k".
    program
        .get_instructions()
        .iter()
        .map(|insn| {
            let text = insn.to_string();
            let words: Vec<&str> = text.split_whitespace().collect();
            let parsed = match words.as_slice() {
                [code, jt, jf, k] => (|| {
                    Some(libc::sock_filter {
                        code: code.parse().ok()?,
                        jt: jt.parse().ok()?,
                        jf: jf.parse().ok()?,
                        k: k.parse().ok()?,
                    })
                })(),
                _ => None,
            };
            parsed.ok_or_else(|| err(format!("unreadable BPF instruction `{text}`")))
        })
        .collect()
}

fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            i32::from(protocol.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

/// A socket with the filter attached, a TPACKET_V3 ring mapped, bound to the interface
/// and (with `fanout`) joined to the group.
fn open_ring(
    ifindex: i32,
    spec: &RingSpec,
    program: &[libc::sock_filter],
) -> io::Result<AfPacketRx> {
    // Protocol 0: nothing is queued on the socket before bind(), so no frame slips past
    // the filter.
    let fd = packet_socket(0)?;
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
    // Our own injected frames are not captured (kernel ≥ 4.20; older ones do not have the
    // option and rely on the filter: the tunnel's frames go the other way).
    let _ = setsockopt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32);
    setsockopt(&fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
    let frame_size = 2048u32;
    let req = TpacketReq3 {
        block_size: spec.block_size as u32,
        block_nr: spec.blocks as u32,
        frame_size,
        frame_nr: (spec.block_size as u32 / frame_size) * spec.blocks as u32,
        retire_blk_tov: spec.retire_ms,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    setsockopt(&fd, SOL_PACKET, PACKET_RX_RING, &req)?;
    let ring_len = spec.block_size * spec.blocks;
    // SAFETY: maps the ring the kernel just allocated for this socket; the result is
    // checked, and the mapping lives until `AfPacketRx::drop` unmaps it.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    let map = if map == libc::MAP_FAILED {
        // MAP_LOCKED needs RLIMIT_MEMLOCK; retry without it.
        // SAFETY: as above.
        let again = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if again == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        again
    } else {
        map
    };
    let ring = NonNull::new(map.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
    let rx = AfPacketRx {
        fd,
        ring,
        ring_len,
        spec: *spec,
        block: 0,
        left: 0,
        offset: 0,
        stats: RxStats::default(),
        since_refresh: 0,
        ifindex,
        down: std::cell::Cell::new(false),
    };
    let sa = sockaddr(ifindex, ETH_P_ALL);
    // SAFETY: `sa` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            rx.fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rx)
}

impl AfPacketRx {
    /// Joins fanout group `group`, or creates one with a kernel-chosen id; returns the id.
    /// The group hashes flows (so a flow stays on one ring) and skips outgoing frames (a
    /// member's own PACKET_IGNORE_OUTGOING does not apply to the group's hook).
    fn join_fanout(&self, group: Option<u16>) -> io::Result<u16> {
        let arg = |kind: u32| match group {
            Some(id) => u32::from(id) | (kind << 16),
            None => (kind | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        };
        let kind = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        if let Err(e) = setsockopt(&self.fd, SOL_PACKET, PACKET_FANOUT, &arg(kind)) {
            // A kernel without the flag (the filter drops outgoing frames anyway).
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            setsockopt(
                &self.fd,
                SOL_PACKET,
                PACKET_FANOUT,
                &arg(PACKET_FANOUT_HASH),
            )?;
        }
        let mut val: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: `val` and `len` are live and sized for the option.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_FANOUT,
                (&mut val as *mut u32).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((val & 0xffff) as u16)
    }

    /// The block descriptor's 32-bit field at `field`.
    fn block_word(&self, block: usize, field: usize) -> u32 {
        let at = block * self.spec.block_size + field;
        assert!(at + 4 <= self.ring_len, "block descriptor outside the ring");
        // SAFETY: `at` lies inside the mapping (checked); the descriptor is 8-byte aligned
        // (blocks are page aligned). Only read after `block_status` saw TP_STATUS_USER with
        // Acquire ordering, so the kernel no longer writes it.
        unsafe { std::ptr::read_volatile(self.ring.as_ptr().add(at).cast::<u32>()) }
    }

    /// The block's status word, shared with the kernel: loaded with Acquire (the kernel
    /// publishes a block's packets before it sets TP_STATUS_USER).
    fn block_status(&self, block: usize) -> &AtomicU32 {
        let at = block * self.spec.block_size + BLOCK_STATUS;
        assert!(at + 4 <= self.ring_len, "block descriptor outside the ring");
        // SAFETY: `at` is inside the mapping (checked) and 4-byte aligned; the mapping
        // outlives `&self`, and the word is only ever accessed atomically from this side.
        unsafe { AtomicU32::from_ptr(self.ring.as_ptr().add(at).cast::<u32>()) }
    }

    /// A packet header's field (`u32` at `field` of the `tpacket3_hdr` at `offset`).
    fn pkt_u32(&self, offset: usize, field: usize) -> u32 {
        let at = self.spec.block_size * self.block + offset + field;
        assert!(at + 4 <= self.ring_len, "packet header outside the ring");
        // SAFETY: bounds checked above; headers are 4-byte aligned (TPACKET_ALIGNMENT 16).
        unsafe { std::ptr::read_unaligned(self.ring.as_ptr().add(at).cast::<u32>()) }
    }

    fn pkt_u16(&self, offset: usize, field: usize) -> u16 {
        let at = self.spec.block_size * self.block + offset + field;
        assert!(at + 2 <= self.ring_len, "packet header outside the ring");
        // SAFETY: bounds checked above.
        unsafe { std::ptr::read_unaligned(self.ring.as_ptr().add(at).cast::<u16>()) }
    }

    /// Hands the current block back to the kernel and moves to the next.
    fn release_block(&mut self) {
        // Release: our reads of the block happen before the kernel may reuse it.
        self.block_status(self.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.spec.blocks;
        self.left = 0;
    }

    /// Reads `PACKET_STATISTICS` (the kernel resets it on each read) into the counters.
    fn refresh_stats(&mut self) {
        self.since_refresh = 0;
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and sized for the option.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.stats.dropped_by_kernel += u64::from(st.drops);
        }
    }

    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if pfd.revents & libc::POLLERR != 0 {
            // A pending socket error keeps poll(2) returning at once until it is read.
            // ENETDOWN (the interface went down; the kernel re-attaches the socket when it
            // comes back up): clear it and wait. The interface gone (ENODEV, ENXIO) or
            // anything else: the ring will never see a frame again.
            return match self.take_error() {
                Some(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    if !self.down.replace(true) {
                        tracing::warn!("capture interface is down; waiting for it to come back");
                    }
                    std::thread::sleep(timeout);
                    Ok(false)
                }
                Some(e) => Err(e),
                None => Ok(false),
            };
        }
        Ok(rc > 0)
    }

    /// Reads and clears the socket's pending error (SO_ERROR).
    fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` are live and sized for the option.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Some(io::Error::last_os_error());
        }
        (err != 0).then(|| io::Error::from_raw_os_error(err))
    }

    /// The socket's file descriptor (readable when a block is ready).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next frame if one is ready, without waiting.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            if self.left == 0 {
                if self.block_status(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                    return None;
                }
                self.left = self.block_word(self.block, BLOCK_NUM_PKTS);
                self.offset = self.block_word(self.block, BLOCK_FIRST_PKT) as usize;
                if self.left == 0 {
                    self.release_block();
                    continue;
                }
            }
            let off = self.offset;
            let snap = self.pkt_u32(off, PKT_SNAPLEN) as usize;
            let len = self.pkt_u32(off, PKT_LEN) as usize;
            let mac = self.pkt_u16(off, PKT_MAC) as usize;
            let next = self.pkt_u32(off, PKT_NEXT) as usize;
            let start = self.spec.block_size * self.block + off + mac;
            let fits = snap == len && snap <= buf.len() && start + snap <= self.ring_len;
            if fits {
                // SAFETY: `start..start + snap` is inside the mapping (checked) and the
                // packet belongs to us while its block's status is TP_STATUS_USER.
                let src =
                    unsafe { std::slice::from_raw_parts(self.ring.as_ptr().add(start), snap) };
                buf[..snap].copy_from_slice(src);
            } else {
                self.stats.oversize += 1;
            }
            self.left -= 1;
            self.offset = off + next;
            if self.left == 0 || next == 0 {
                self.release_block();
            }
            self.since_refresh += 1;
            if self.since_refresh >= STATS_REFRESH_FRAMES {
                self.refresh_stats();
            }
            if fits {
                self.stats.received += 1;
                return Some(snap);
            }
        }
    }
}

impl PacketRx for AfPacketRx {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if let Some(n) = self.try_recv(buf) {
            self.down.set(false);
            return Ok(Some(n));
        }
        if !self.wait(READ_TIMEOUT)? {
            self.refresh_stats();
            // Down and then removed (the kernel reports both as ENETDOWN): the socket is
            // detached for good, even if a device of the same name comes back.
            if self.down.get() && !interface_exists(self.ifindex) {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the capture interface (index {}) was removed", self.ifindex),
                ));
            }
        }
        Ok(self.try_recv(buf))
    }

    fn stats(&self) -> RxStats {
        self.stats
    }
}

impl Drop for AfPacketRx {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `open_ring`, which nothing references any more.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_len) };
    }
}

impl AfPacketTx {
    /// The link-layer protocol of a frame, for its `sockaddr_ll`.
    fn protocol(&self, frame: &[u8]) -> io::Result<u16> {
        Ok(match self.link {
            LinkType::Ethernet => match frame.get(12..14) {
                Some(t) => u16::from_be_bytes([t[0], t[1]]),
                None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "short frame")),
            },
            LinkType::RawIp => match frame.first().map(|b| b >> 4) {
                Some(6) => ETH_P_IPV6,
                _ => ETH_P_IP,
            },
        })
    }

    /// Waits up to a millisecond for room in the socket's send buffer (the socket is
    /// non-blocking, so a full device queue never stalls a worker for long).
    fn wait_writable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 1) } > 0;
        // POLLERR alone is not room: the next send would report that error instead.
        ready && pfd.revents & libc::POLLOUT != 0
    }

    /// Sends the queued frames with as few `sendmmsg` calls as the kernel allows and
    /// empties the batch. A frame the kernel refuses (e.g. EMSGSIZE) is skipped and the
    /// rest still go; when the send buffer stays full for a millisecond, the rest are
    /// dropped (counted by the worker; KCP resends them).
    fn send_batch(&mut self) -> Result<(), SendFailure> {
        let n = self.ends.len();
        if n == 0 {
            return Ok(());
        }
        // SAFETY: sockaddr_ll, iovec and mmsghdr are plain old data; all-zero is valid.
        let mut addrs: [libc::sockaddr_ll; TX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; TX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        let mut lost = 0usize;
        let mut error = None;
        // Frames with no usable header are dropped here; the rest are packed in order.
        let mut count = 0usize;
        let mut start = 0usize;
        for i in 0..n {
            let end = self.ends[i];
            let frame = &self.batch[start..end];
            match self.protocol(frame) {
                Ok(protocol) => {
                    addrs[count] = sockaddr(self.ifindex, protocol);
                    iovs[count] = libc::iovec {
                        iov_base: frame.as_ptr() as *mut libc::c_void,
                        iov_len: frame.len(),
                    };
                    count += 1;
                }
                Err(e) => {
                    lost += 1;
                    error = Some(e);
                }
            }
            start = end;
        }
        for i in 0..count {
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_ll).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
        }
        let mut sent = 0usize;
        while sent < count {
            // SAFETY: `msgs[sent..count]` are initialised headers whose name and iovec
            // pointers refer to `addrs`, `iovs` and `self.batch`, all alive and unchanged
            // for the call; the kernel only reads them (and writes each `msg_len`).
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[sent..count].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                sent += rc as usize;
                continue;
            }
            if rc == 0 {
                // Not expected for a non-empty batch; never spin on it.
                lost += count - sent;
                error = Some(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "sendmmsg sent nothing",
                ));
                break;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if !self.wait_writable() {
                        lost += count - sent;
                        error = Some(e);
                        break;
                    }
                }
                // The device or interface refuses everything for now (a stopped driver
                // queue with qdisc bypass: ENOBUFS; the interface down or gone): the rest
                // of the batch is dropped at once instead of failing one call per frame.
                _ if device_error(&e) => {
                    lost += count - sent;
                    error = Some(e);
                    break;
                }
                // This frame is refused (e.g. EMSGSIZE); the ones after it may still go.
                _ => {
                    lost += 1;
                    sent += 1;
                    error = Some(e);
                }
            }
        }
        self.batch.clear();
        self.ends.clear();
        match error {
            Some(error) if lost > 0 => Err(SendFailure {
                frames: lost,
                error,
            }),
            _ => Ok(()),
        }
    }
}

/// Errors of the device or interface rather than of one frame.
fn device_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

impl Drop for AfPacketTx {
    /// The worker flushes after every pass; this only matters for other owners.
    fn drop(&mut self) {
        let _ = self.send_batch();
    }
}

impl PacketTx for AfPacketTx {
    fn queue(&mut self, frame: &[u8]) -> Result<(), SendFailure> {
        self.batch.extend_from_slice(frame);
        self.ends.push(self.batch.len());
        if self.ends.len() >= TX_BATCH {
            return self.send_batch();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SendFailure> {
        self.send_batch()
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // Frames queued before this one go first.
        if let Err(f) = self.send_batch() {
            tracing::debug!(error = %f.error, frames = f.frames, "queued frames not sent");
        }
        let sa = sockaddr(self.ifindex, self.protocol(frame)?);
        loop {
            // SAFETY: `frame` and `sa` are valid for the lengths passed.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // Wait a millisecond for room, then report the frame as not sent (counted
                // by the worker; KCP resends it).
                io::ErrorKind::WouldBlock => {
                    if !self.wait_writable() {
                        return Err(e);
                    }
                }
                _ => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_spec_rounds_to_whole_blocks() {
        assert_eq!(RingSpec::with_bytes(4 << 20).blocks, 16);
        assert_eq!(RingSpec::with_bytes(1).blocks, 4);
        assert_eq!(RingSpec::with_bytes((4 << 20) + 1).blocks, 17);
    }

    #[test]
    fn the_tunnel_filter_compiles_to_kernel_instructions() {
        let eth = compile_filter("x", "tcp dst port 443", LinkType::Ethernet).unwrap();
        let raw = compile_filter("x", "tcp dst port 443", LinkType::RawIp).unwrap();
        // Both end in returns and differ (the IP header is at 14 on Ethernet, 0 raw).
        assert!(eth.len() > 4 && raw.len() > 4);
        assert_ne!(
            eth.iter().map(|i| (i.code, i.k)).collect::<Vec<_>>(),
            raw.iter().map(|i| (i.code, i.k)).collect::<Vec<_>>()
        );
        // BPF_RET | BPF_K as the last instruction.
        assert_eq!(eth.last().unwrap().code, 0x06);
        assert!(compile_filter("x", "tcp dst port", LinkType::Ethernet).is_err());
        // The outgoing check goes in front; libpcap's jumps are relative, so they hold.
        let guarded = inbound_only(eth.clone());
        assert_eq!(guarded.len(), eth.len() + 3);
        assert_eq!(
            (guarded[0].code, guarded[0].k, guarded[1].k, guarded[2].code),
            (0x30, 0xffff_f004, 4, 0x06)
        );
    }
}
