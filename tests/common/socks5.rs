//! A minimal SOCKS5 client (RFC 1928, no authentication) for the namespace tests: CONNECT
//! with the reply code, UDP ASSOCIATE, and the UDP request header.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The destination as SOCKS5 writes it: ATYP, address, port. `host` is an IPv4 or IPv6
/// literal (without brackets) or a domain name.
pub fn address(host: &str, port: u16) -> Vec<u8> {
    let mut a = Vec::new();
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            a.push(1);
            a.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            a.push(4);
            a.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            a.push(3);
            a.push(u8::try_from(host.len()).expect("a domain of at most 255 bytes"));
            a.extend_from_slice(host.as_bytes());
        }
    }
    a.extend_from_slice(&port.to_be_bytes());
    a
}

fn greet(proxy: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect_timeout(&proxy, Duration::from_secs(10)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    c.write_all(&[5, 1, 0]).expect("greeting");
    let mut sel = [0u8; 2];
    c.read_exact(&mut sel).expect("method selection");
    assert_eq!(sel, [5, 0], "no-auth method selected");
    c
}

/// CONNECT to `host:port` through `proxy`: the connected stream, or the reply code.
pub fn connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, u8> {
    let mut c = greet(proxy);
    let mut req = vec![5, 1, 0];
    req.extend_from_slice(&address(host, port));
    c.write_all(&req).expect("request");
    let mut head = [0u8; 4];
    c.read_exact(&mut head).expect("reply");
    assert_eq!(head[0], 5, "SOCKS version in the reply");
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut n = [0u8; 1];
            c.read_exact(&mut n).expect("reply");
            usize::from(n[0]) + 2
        }
        other => panic!("reply with address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    c.read_exact(&mut bound).expect("reply address");
    if head[1] == 0 {
        Ok(c)
    } else {
        Err(head[1])
    }
}

/// UDP ASSOCIATE through `proxy`: the control connection and the relay address.
pub fn associate(proxy: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut c = greet(proxy);
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .expect("request");
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).expect("reply");
    assert_eq!(
        &reply[..4],
        &[5, 0, 0, 1],
        "UDP ASSOCIATE succeeded with an IPv4 relay"
    );
    let ip = Ipv4Addr::new(reply[4], reply[5], reply[6], reply[7]);
    let port = u16::from_be_bytes([reply[8], reply[9]]);
    (c, SocketAddr::from((ip, port)))
}

/// RSV, FRAG 0, then the destination (see [`address`]).
pub fn udp_header(host: &str, port: u16) -> Vec<u8> {
    let mut h = vec![0, 0, 0];
    h.extend_from_slice(&address(host, port));
    h
}

/// Splits a SOCKS5 UDP reply into its source address and payload.
pub fn udp_parse(d: &[u8]) -> (SocketAddr, &[u8]) {
    assert_eq!(&d[..3], &[0, 0, 0], "RSV and FRAG are zero");
    match d[3] {
        1 => {
            let ip = Ipv4Addr::new(d[4], d[5], d[6], d[7]);
            (
                SocketAddr::from((ip, u16::from_be_bytes([d[8], d[9]]))),
                &d[10..],
            )
        }
        4 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&d[4..20]);
            let ip = Ipv6Addr::from(o);
            (
                SocketAddr::from((ip, u16::from_be_bytes([d[20], d[21]]))),
                &d[22..],
            )
        }
        other => panic!("reply has address type {other}"),
    }
}
