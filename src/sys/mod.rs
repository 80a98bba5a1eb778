//! System helpers: interface facts (MAC, MTU, addresses), neighbour (gateway) MACs,
//! privilege checks and network-namespace entry; firewall rules ([`firewall`]), detection
//! of interface, address and gateway from the routing table ([`route`]) and sysctl/ulimit
//! checks ([`sysctl`]).
//!
//! Everything here answers for the calling thread's network namespace (ioctl, netlink and
//! `/proc/thread-self`), not for the namespace `/sys` happened to be mounted in, so it works
//! from a thread that called [`enter_netns`].

pub mod firewall;
mod interface;
mod neighbor;
pub mod notify;
mod process;
pub mod route;
mod socket;
pub mod sysctl;

pub use interface::{interface_addrs, interface_mac, interface_mtu, local_addrs};
pub use neighbor::neighbor_mac;
pub use process::{enter_netns, is_root, is_root_or_capable, terminate_self};
pub use socket::set_recv_buffer;

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits in either case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests;
