//! Facts about and changes to the calling process or thread: privilege, network namespace.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Bit of CAP_NET_RAW in the capability sets (linux/capability.h).
const CAP_NET_RAW: u32 = 13;

/// Whether the process can open packet sockets: effective uid 0, or CAP_NET_RAW in the
/// effective capability set (`CapEff` in /proc/self/status).
pub fn is_root_or_capable() -> bool {
    if is_root() {
        return true;
    }
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| cap_eff(&status))
        .is_some_and(|caps| caps & (1 << CAP_NET_RAW) != 0)
}

/// Whether the effective user id is 0 (tests that create namespaces need full root).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `CapEff:` mask of a /proc/PID/status text.
pub(super) fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Moves the calling thread (only) into the named network namespace `/run/netns/NAME`, as
/// created by `ip netns add NAME`. Sockets and pcap handles opened afterwards by this thread
/// live in that namespace; use a dedicated thread, since there is no way back short of
/// entering the original namespace again.
pub fn enter_netns(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad network namespace name {name:?}"),
        ));
    }
    let path = Path::new("/run/netns").join(name);
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: the descriptor is valid for the duration of the call (owned by `file`), and
    // setns(2) does not take ownership of it; CLONE_NEWNET makes the kernel check it is a
    // network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("setns {}: {err}", path.display()),
        ));
    }
    Ok(())
}

/// Asks this process to stop as if an operator had sent SIGTERM (the daemon's normal,
/// orderly shutdown: drain, remove firewall rules, exit).
pub fn terminate_self() {
    // SAFETY: kill(2) on our own pid with a valid signal number touches no memory.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
}
