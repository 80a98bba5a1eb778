//! Interface facts: hardware address and MTU (SIOCGIFHWADDR/SIOCGIFMTU ioctls) and IP
//! addresses of one interface or of all (getifaddrs(3)).
//!
//! The ioctls are used rather than `/sys/class/net/NAME/*` because sysfs shows the network
//! namespace it was mounted in, while a socket belongs to the calling thread's namespace.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The Ethernet address of interface `name`. Loopback reports all zeros; interfaces
/// without an Ethernet address (tun) are an `Unsupported` error.
pub fn interface_mac(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    ioctl(name, &mut req, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel filled the `ifru_hwaddr` member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER && hw.sa_family != libc::ARPHRD_LOOPBACK {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{name} has no Ethernet address (ARPHRD {})", hw.sa_family),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// The MTU of interface `name` (IP packet size, without the link header).
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(name, &mut req, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel filled the `ifru_mtu` member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("{name} reports MTU {mtu}")))
}

/// The IPv4 and IPv6 addresses of interface `name` (in getifaddrs order); `NotFound` if no
/// such interface exists.
pub fn interface_addrs(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut found = false;
    let mut addrs = Vec::new();
    walk_ifaddrs(|entry_name, addr, _broadcast| {
        if entry_name == name.as_bytes() {
            found = true;
            addrs.extend(addr);
        }
    })?;
    if found {
        Ok(addrs)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name}"),
        ))
    }
}

/// Every address of every interface of this network namespace, with the IPv4 broadcast
/// address of each interface that has one (deduplicated, sorted): what "the host itself"
/// means to the server's target policy.
pub fn local_addrs() -> io::Result<Vec<IpAddr>> {
    let mut addrs = Vec::new();
    walk_ifaddrs(|_, addr, broadcast| {
        addrs.extend(addr);
        addrs.extend(broadcast);
    })?;
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Reads an IPv4 or IPv6 socket address; `None` for a null pointer or another family.
///
/// # Safety
/// `sa` is null or points at a sockaddr that is at least as large as its family's struct.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null and valid per the contract; read_unaligned makes no alignment
    // assumption.
    let family = unsafe { sa.read_unaligned().sa_family };
    match i32::from(family) {
        libc::AF_INET => {
            // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
            let sin = unsafe { sa.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: family AF_INET6 means the sockaddr is a sockaddr_in6.
            let sin6 = unsafe { sa.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Calls `each(name, address, broadcast)` for every entry getifaddrs(3) lists (entries
/// without an IP address give `None`; `broadcast` only where IFF_BROADCAST is set).
fn walk_ifaddrs(mut each: impl FnMut(&[u8], Option<IpAddr>, Option<IpAddr>)) -> io::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success it owns a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a non-null node of the list getifaddrs returned, alive until
        // freeifaddrs below.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) };
        // SAFETY: the list's address pointers are null or point at sockaddrs sized for
        // their family.
        let addr = unsafe { ip_of(entry.ifa_addr) };
        let broadcast = if entry.ifa_flags & (libc::IFF_BROADCAST as u32) != 0 {
            // SAFETY: with IFF_BROADCAST set, ifa_ifu holds the broadcast address (or null).
            unsafe { ip_of(entry.ifa_ifu) }.filter(IpAddr::is_ipv4)
        } else {
            None
        };
        each(name.to_bytes(), addr, broadcast);
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no
    // reference into the list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

/// An `ifreq` with the name filled in, after checking it fits IFNAMSIZ.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data (C struct and union of integers and arrays); all
    // zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Runs an interface ioctl on a throwaway datagram socket.
fn ioctl(name: &str, req: &mut libc::ifreq, request: libc::Ioctl) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid, exclusively borrowed ifreq, which is what interface ioctls
    // read and write; the socket is open for the duration of the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("interface {name}: {err}"),
        ));
    }
    Ok(())
}
