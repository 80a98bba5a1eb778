//! Neighbour (ARP / NDP) cache lookups: the MAC the kernel resolved for an on-link address,
//! typically the gateway's.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use super::parse_mac;

/// ATF_COM in /proc/net/arp flags: the entry is complete.
const ATF_COM: u32 = 0x2;

/// The resolved MAC of `ip` on `iface`, or `None` if the cache has no complete entry.
/// IPv4 reads `/proc/thread-self/net/arp`; IPv6 parses `ip -6 neigh show ADDR dev IFACE`.
pub fn neighbor_mac(ip: IpAddr, iface: &str) -> io::Result<Option<[u8; 6]>> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let table = fs::read_to_string("/proc/thread-self/net/arp")
                .or_else(|_| fs::read_to_string("/proc/net/arp"))?;
            Ok(parse_arp_table(&table, v4, iface))
        }
        IpAddr::V6(v6) => {
            let output = Command::new("ip")
                .args(["-6", "neigh", "show", &v6.to_string(), "dev", iface])
                .output()?;
            if !output.status.success() {
                return Err(io::Error::other(format!(
                    "ip -6 neigh show {v6} dev {iface}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            Ok(parse_ip_neigh(&String::from_utf8_lossy(&output.stdout)))
        }
    }
}

/// Finds a complete entry for `ip` on `iface` in the text of /proc/net/arp:
/// `IP address  HW type  Flags  HW address  Mask  Device`.
pub(super) fn parse_arp_table(table: &str, ip: Ipv4Addr, iface: &str) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [addr, _hw_type, flags, mac, _mask, device] = fields.as_slice() else {
            return None;
        };
        if addr.parse::<Ipv4Addr>().ok()? != ip || *device != iface {
            return None;
        }
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        let mac = parse_mac(mac)?;
        (flags & ATF_COM != 0 && mac != [0; 6]).then_some(mac)
    })
}

/// Takes the `lladdr` of the first line of `ip neigh` output that has one
/// (`fe80::1 lladdr 52:54:00:12:34:56 router REACHABLE`); FAILED/INCOMPLETE lines have none.
pub(super) fn parse_ip_neigh(output: &str) -> Option<[u8; 6]> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        let mac = parse_mac(words.next()?)?;
        (mac != [0; 6]).then_some(mac)
    })
}
