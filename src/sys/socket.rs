//! Socket options std and tokio do not expose.

use std::io;
use std::os::fd::AsRawFd;

/// Asks for a receive buffer of `bytes` on `socket`: first with `SO_RCVBUFFORCE` (root or
/// CAP_NET_ADMIN may exceed `net.core.rmem_max`), else with `SO_RCVBUF` (capped by it).
/// Returns the size the kernel granted (it doubles the request for bookkeeping).
pub fn set_recv_buffer(socket: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: `fd` is an open socket borrowed for the call; the option value is a c_int
        // on the stack whose size is passed alongside.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; `got` and `len` are valid for writes and `len` holds got's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}
