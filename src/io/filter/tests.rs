use super::tunnel_filter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ethernet + IP + 20-byte TCP header with the given protocol and ports (checksums zero:
/// BPF does not look at them).
fn frame(src: IpAddr, dst: IpAddr, protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    let l4_len = 20u16;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&(20 + l4_len).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&l4_len.to_be_bytes());
            f.extend_from_slice(&[protocol, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("test frames need one address family"),
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

fn matches(filter: &str, frame: &[u8]) -> bool {
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("dead capture allocates");
    let program = dead.compile(filter, true).expect("filter compiles");
    program.filter(frame)
}

const TCP: u8 = 6;
const UDP: u8 = 17;

#[test]
fn server_filter_text() {
    assert_eq!(tunnel_filter(9999, None), "tcp dst port 9999");
}

#[test]
fn client_filter_text_v4_and_v6() {
    let v4: SocketAddr = "198.18.0.1:443".parse().unwrap();
    assert_eq!(
        tunnel_filter(40000, Some(v4)),
        "tcp and src host 198.18.0.1 and src port 443 and dst port 40000"
    );
    let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    assert_eq!(
        tunnel_filter(40000, Some(v6)),
        "tcp and src host 2001:db8::1 and src port 443 and dst port 40000"
    );
    let mapped: SocketAddr = "[::ffff:198.18.0.1]:443".parse().unwrap();
    assert_eq!(tunnel_filter(1, Some(mapped)), tunnel_filter(1, Some(v4)));
}

#[test]
fn server_filter_selects_tcp_to_port() {
    let f = tunnel_filter(9999, None);
    let a: IpAddr = Ipv4Addr::new(198, 18, 0, 1).into();
    let b: IpAddr = Ipv4Addr::new(198, 18, 0, 2).into();
    assert!(matches(&f, &frame(a, b, TCP, 1234, 9999)));
    assert!(!matches(&f, &frame(a, b, TCP, 9999, 1234)));
    assert!(!matches(&f, &frame(a, b, UDP, 1234, 9999)));
    let a6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into();
    let b6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into();
    assert!(matches(&f, &frame(a6, b6, TCP, 1234, 9999)));
    assert!(!matches(&f, &frame(a6, b6, TCP, 1234, 9998)));
}

#[test]
fn client_filter_selects_only_the_server() {
    let server: IpAddr = Ipv4Addr::new(198, 18, 0, 1).into();
    let other: IpAddr = Ipv4Addr::new(198, 18, 0, 3).into();
    let me: IpAddr = Ipv4Addr::new(198, 18, 0, 2).into();
    let f = tunnel_filter(40000, Some(SocketAddr::new(server, 443)));
    assert!(matches(&f, &frame(server, me, TCP, 443, 40000)));
    assert!(!matches(&f, &frame(other, me, TCP, 443, 40000)));
    assert!(!matches(&f, &frame(server, me, TCP, 444, 40000)));
    assert!(!matches(&f, &frame(server, me, TCP, 443, 40001)));
    assert!(!matches(&f, &frame(server, me, UDP, 443, 40000)));

    let server6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into();
    let other6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3).into();
    let me6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into();
    let f6 = tunnel_filter(40000, Some(SocketAddr::new(server6, 443)));
    assert!(matches(&f6, &frame(server6, me6, TCP, 443, 40000)));
    assert!(!matches(&f6, &frame(other6, me6, TCP, 443, 40000)));
    assert!(!matches(&f6, &frame(server, me, TCP, 443, 40000)));
}
