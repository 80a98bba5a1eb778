//! Completing TCP/UDP checksums that a sender left to offload.
//!
//! A kernel sending over a veth with TX checksum offload on hands the peer a frame whose
//! TCP/UDP checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL). The kernel
//! that receives it directly trusts it, but a frame captured with AF_PACKET and injected on
//! another interface arrives as CHECKSUM_NONE and is dropped by the receiver. The emulator
//! therefore verifies the transport checksum of unfragmented IPv4/IPv6 TCP and UDP frames
//! and rewrites it when it does not verify (RFC 1071; pseudo-headers per RFC 9293 §3.1 and
//! RFC 8200 §8.1). Frames with valid checksums (rawtun's own) are left byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::checksum::{add, fold, pseudo_header_v4, pseudo_header_v6, sum};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Makes the TCP/UDP checksum of an Ethernet frame valid; true if it rewrote it. Frames
/// that are not unfragmented IPv4/IPv6 TCP/UDP, or are truncated, are left alone.
pub fn complete_checksum(frame: &mut [u8]) -> bool {
    let Some(&[t0, t1]) = frame.get(12..14) else {
        return false;
    };
    let l3 = 14;
    let (protocol, pseudo, l4) = match u16::from_be_bytes([t0, t1]) {
        0x0800 => {
            let Some(ip) = frame.get(l3..l3 + 20) else {
                return false;
            };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || fragment {
                return false;
            }
            let protocol = ip[9];
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let Ok(len) = u16::try_from(total - ihl) else {
                return false;
            };
            let pseudo = pseudo_header_v4(src, dst, protocol, len);
            (protocol, pseudo, l3 + ihl..l3 + total)
        }
        0x86dd => {
            let Some(ip) = frame.get(l3..l3 + 40) else {
                return false;
            };
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let protocol = ip[6];
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = Ipv6Addr::from(a);
            let pseudo = pseudo_header_v6(&src, &dst, protocol, payload as u32);
            (protocol, pseudo, l3 + 40..l3 + 40 + payload)
        }
        _ => return false,
    };
    let field = match protocol {
        TCP => 16,
        UDP => 6,
        _ => return false,
    };
    let Some(segment) = frame.get_mut(l4) else {
        return false;
    };
    if segment.len() < field + 2 {
        return false;
    }
    let stored = u16::from_be_bytes([segment[field], segment[field + 1]]);
    // UDP over IPv4 may carry no checksum at all.
    if protocol == UDP && stored == 0 && t0 == 0x08 {
        return false;
    }
    if fold(add(pseudo, sum(segment))) == 0xffff {
        return false;
    }
    segment[field] = 0;
    segment[field + 1] = 0;
    let mut value = !fold(add(pseudo, sum(segment)));
    if protocol == UDP && value == 0 {
        value = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&value.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP "hi", checksum of the datagram filled by hand below.
    fn udp_v4() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, UDP, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 10, 0, 0, b'h', b'i']);
        f
    }

    #[test]
    fn fills_partial_and_keeps_valid() {
        let mut f = udp_v4();
        // Pseudo-header-only sum, as a sender with offload leaves it.
        let pseudo = pseudo_header_v4(
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
            UDP,
            10,
        );
        f[40..42].copy_from_slice(&fold(pseudo).to_be_bytes());
        assert!(complete_checksum(&mut f));
        let fixed = f.clone();
        assert!(fold(add(pseudo, sum(&f[34..]))) == 0xffff);
        // Already valid: untouched.
        assert!(!complete_checksum(&mut f));
        assert_eq!(f, fixed);
    }

    #[test]
    fn ignores_other_frames() {
        let mut f = udp_v4();
        f[40..42].copy_from_slice(&[0, 0]); // IPv4 UDP without checksum
        assert!(!complete_checksum(&mut f));
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete_checksum(&mut arp));
        let mut short = udp_v4();
        short.truncate(40);
        assert!(!complete_checksum(&mut short));
        let mut fragment = udp_v4();
        fragment[20] = 0x20; // MF
        fragment[40..42].copy_from_slice(&[1, 2]);
        assert!(!complete_checksum(&mut fragment));
    }
}
