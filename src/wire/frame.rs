//! One whole fake-TCP frame: link header (Ethernet or none), IPv4 or IPv6, TCP, payload.
//!
//! ```text
//! Ethernet: | dst mac | src mac | type | IPv4 (20..60) or IPv6 (40) | TCP (20..60) | payload |
//!           0         6         12     14
//! RawIp:    | IPv4 or IPv6 (version from the first nibble)           | TCP          | payload |
//! ```
//!
//! [`parse_frame`] takes a captured frame and checks everything the layers above rely on:
//! lengths (link padding past the IP length is ignored), the IPv4 header checksum, the TCP
//! checksum over the pseudo-header, and the options. [`emit_frame`] writes the headers in
//! front of a payload that is already in the buffer (so the payload can be sealed in place
//! first) and fills every length and checksum. IPv4 is emitted without options and with DF;
//! IPv6 with a flow label derived from the addresses and ports (stable per flow, like
//! Linux's automatic flow labels).

use std::net::{IpAddr, SocketAddr};

use super::ethernet::{self, EthernetRepr};
use super::ipv4::{self, Ipv4Repr};
use super::ipv6::{self, Ipv6Repr};
use super::tcp::{self, TcpFlags, TcpOptions, TcpRepr};
use super::{checksum, Error, LinkType, Result, IP_PROTOCOL_TCP};

/// Everything needed to build, or learned from parsing, one fake-TCP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRepr {
    /// Link header kind.
    pub link: LinkType,
    /// Source MAC (ignored for [`LinkType::RawIp`]; zero when parsed from one).
    pub src_mac: [u8; 6],
    /// Destination MAC (ignored for [`LinkType::RawIp`]; zero when parsed from one).
    pub dst_mac: [u8; 6],
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port; same IP family as `src`.
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored for IPv6, zero when parsed from one).
    pub ip_id: u16,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// TCP window.
    pub window: u16,
    /// TCP options.
    pub options: TcpOptions,
}

/// A parsed frame: its description and the TCP payload, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    /// Header fields.
    pub repr: FrameRepr,
    /// TCP payload.
    pub payload: &'a [u8],
}

fn tcp_repr(repr: &FrameRepr) -> TcpRepr {
    TcpRepr {
        src_port: repr.src.port(),
        dst_port: repr.dst.port(),
        seq: repr.seq,
        ack: repr.ack,
        flags: repr.flags,
        window: repr.window,
        options: repr.options,
    }
}

fn ip_header_len(repr: &FrameRepr) -> usize {
    match repr.src {
        SocketAddr::V4(_) => ipv4::HEADER_LEN,
        SocketAddr::V6(_) => ipv6::HEADER_LEN,
    }
}

/// Bytes of link + IP + TCP header that `repr` needs (depends on family and options).
pub fn header_len(repr: &FrameRepr) -> usize {
    repr.link.header_len() + ip_header_len(repr) + tcp_repr(repr).buffer_len()
}

/// A 20-bit IPv6 flow label that is stable for one address/port 4-tuple and never zero.
fn flow_label(repr: &FrameRepr) -> u32 {
    let ips = match (repr.src.ip(), repr.dst.ip()) {
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::add(
            checksum::sum(&s.octets()).rotate_left(17),
            checksum::sum(&d.octets()),
        ),
        _ => 0,
    };
    let ports = (u64::from(repr.src.port()) << 16) | u64::from(repr.dst.port());
    let h = (ips ^ ports).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let label = ((h >> 40) as u32) & 0x000f_ffff;
    label.max(1)
}

/// Writes the headers for `repr` in front of a payload already at
/// `buf[payload_at .. payload_at + payload_len]`, into
/// `buf[payload_at - header_len(repr) .. payload_at]`, filling lengths and checksums.
/// Returns the start of the frame: the frame is `buf[start .. payload_at + payload_len]`.
///
/// Errors: [`Error::Truncated`] when the headroom or the buffer is too short,
/// [`Error::Malformed`] when `src` and `dst` differ in family, [`Error::Unsupported`] when
/// the packet would exceed the 16-bit IP length. Nothing is written on error.
pub fn emit_frame(
    repr: &FrameRepr,
    buf: &mut [u8],
    payload_at: usize,
    payload_len: usize,
) -> Result<usize> {
    if repr.src.is_ipv4() != repr.dst.is_ipv4() {
        return Err(Error::Malformed(
            "source and destination address families differ",
        ));
    }
    let hl = header_len(repr);
    let start = payload_at.checked_sub(hl).ok_or(Error::Truncated)?;
    let end = payload_at
        .checked_add(payload_len)
        .ok_or(Error::Truncated)?;
    let frame = buf.get_mut(start..end).ok_or(Error::Truncated)?;
    let tcp = tcp_repr(repr);
    let segment_len = tcp.buffer_len() + payload_len;
    let ip_len = ip_header_len(repr);
    let limit = match repr.src {
        SocketAddr::V4(_) => usize::from(u16::MAX) - ip_len,
        SocketAddr::V6(_) => usize::from(u16::MAX),
    };
    if segment_len > limit {
        return Err(Error::Unsupported("payload too large for one IP packet"));
    }

    let (link, packet) = frame.split_at_mut(repr.link.header_len());
    let (ip, segment) = packet.split_at_mut(ip_len);
    let pseudo = match (repr.src.ip(), repr.dst.ip()) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            let ip_repr = Ipv4Repr {
                src_addr,
                dst_addr,
                protocol: IP_PROTOCOL_TCP,
                payload_len: segment_len,
                ttl: repr.ttl,
                ident: repr.ip_id,
            };
            ip_repr.emit(&mut ipv4::Packet::new_unchecked(&mut *ip));
            // `segment_len` was checked against the 16-bit limit above.
            checksum::pseudo_header_v4(src_addr, dst_addr, IP_PROTOCOL_TCP, segment_len as u16)
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            let ip_repr = Ipv6Repr {
                src_addr,
                dst_addr,
                next_header: IP_PROTOCOL_TCP,
                payload_len: segment_len,
                hop_limit: repr.ttl,
                flow_label: flow_label(repr),
            };
            ip_repr.emit(&mut ipv6::Packet::new_unchecked(&mut *ip));
            checksum::pseudo_header_v6(&src_addr, &dst_addr, IP_PROTOCOL_TCP, segment_len as u32)
        }
        _ => {
            return Err(Error::Malformed(
                "source and destination address families differ",
            ))
        }
    };
    if repr.link == LinkType::Ethernet {
        let ethertype = if repr.src.is_ipv4() {
            ethernet::ethertype::IPV4
        } else {
            ethernet::ethertype::IPV6
        };
        let eth = EthernetRepr {
            src_addr: repr.src_mac,
            dst_addr: repr.dst_mac,
            ethertype,
            vlan_tci: None,
        };
        eth.emit(&mut ethernet::Frame::new_unchecked(&mut *link));
    }
    let mut seg = tcp::Packet::new_unchecked(segment);
    tcp.emit(&mut seg);
    seg.fill_checksum(pseudo);
    Ok(start)
}

/// Parses a whole captured frame. Any input gives a value or an [`Error`], never a panic.
pub fn parse_frame(link: LinkType, frame: &[u8]) -> Result<ParsedFrame<'_>> {
    let (src_mac, dst_mac, version, packet) = match link {
        LinkType::Ethernet => {
            let eth = ethernet::Frame::new_checked(frame)?;
            let r = EthernetRepr::parse(&eth)?;
            let version = match r.ethertype {
                ethernet::ethertype::IPV4 => 4,
                ethernet::ethertype::IPV6 => 6,
                _ => return Err(Error::Unsupported("EtherType is not IPv4 or IPv6")),
            };
            (r.src_addr, r.dst_addr, version, eth.payload())
        }
        LinkType::RawIp => {
            let first = frame.first().ok_or(Error::Truncated)?;
            ([0; 6], [0; 6], first >> 4, frame)
        }
    };
    let (src_ip, dst_ip, ttl, ip_id, segment, pseudo) = match version {
        4 => {
            let p = ipv4::Packet::new_checked(packet)?;
            let r = Ipv4Repr::parse(&p)?;
            if r.protocol != IP_PROTOCOL_TCP {
                return Err(Error::Unsupported("IP protocol is not TCP"));
            }
            let segment = p.payload();
            // The segment is shorter than the 16-bit Total Length.
            let len = segment.len() as u16;
            let pseudo = checksum::pseudo_header_v4(r.src_addr, r.dst_addr, r.protocol, len);
            (
                IpAddr::V4(r.src_addr),
                IpAddr::V4(r.dst_addr),
                r.ttl,
                r.ident,
                segment,
                pseudo,
            )
        }
        6 => {
            let p = ipv6::Packet::new_checked(packet)?;
            let r = Ipv6Repr::parse(&p)?;
            if r.next_header != IP_PROTOCOL_TCP {
                return Err(Error::Unsupported("IP protocol is not TCP"));
            }
            let segment = p.payload();
            let len = segment.len() as u32;
            let pseudo = checksum::pseudo_header_v6(&r.src_addr, &r.dst_addr, r.next_header, len);
            (
                IpAddr::V6(r.src_addr),
                IpAddr::V6(r.dst_addr),
                r.hop_limit,
                0,
                segment,
                pseudo,
            )
        }
        _ => return Err(Error::Malformed("IP version is not 4 or 6")),
    };
    let seg = tcp::Packet::new_checked(segment)?;
    let t = TcpRepr::parse(&seg, pseudo)?;
    Ok(ParsedFrame {
        repr: FrameRepr {
            link,
            src_mac,
            dst_mac,
            src: SocketAddr::new(src_ip, t.src_port),
            dst: SocketAddr::new(dst_ip, t.dst_port),
            ttl,
            ip_id,
            seq: t.seq,
            ack: t.ack,
            flags: t.flags,
            window: t.window,
            options: t.options,
        },
        payload: seg.payload(),
    })
}
