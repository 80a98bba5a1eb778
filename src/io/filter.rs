//! The BPF capture filter for tunnel traffic (pcap filter syntax, see pcap-filter(7)).

use std::net::SocketAddr;

/// The BPF expression that captures the tunnel's packets.
///
/// - server (`remote == None`): every TCP segment to the listening port, `tcp dst port P`;
/// - client: only the server's segments to our port,
///   `tcp and src host H and src port SP and dst port LP` (IPv6 hosts use the same syntax;
///   an IPv4-mapped IPv6 address is written as IPv4); with `local_port == 0` (sessions on
///   several local ports) the `dst port` clause is left out.
pub fn tunnel_filter(local_port: u16, remote: Option<SocketAddr>) -> String {
    match remote {
        None => format!("tcp dst port {local_port}"),
        // A client whose sessions use several (changing) local ports.
        Some(remote) if local_port == 0 => format!(
            "tcp and src host {} and src port {}",
            remote.ip().to_canonical(),
            remote.port()
        ),
        Some(remote) => format!(
            "tcp and src host {} and src port {} and dst port {}",
            remote.ip().to_canonical(),
            remote.port(),
            local_port
        ),
    }
}

#[cfg(test)]
mod tests;
