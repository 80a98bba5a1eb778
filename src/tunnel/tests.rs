use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

fn tcp(target: Target) -> OpenRequest {
    OpenRequest {
        protocol: Protocol::Tcp,
        target,
    }
}

fn encoded(request: &OpenRequest) -> Vec<u8> {
    let mut out = Vec::new();
    request.encode(&mut out);
    assert_eq!(out.len(), request.encoded_len());
    out
}

#[test]
fn ipv4_request_bytes() {
    let request = tcp(Target::Ip("192.0.2.7:443".parse().unwrap()));
    let bytes = [1, 1, 1, 192, 0, 2, 7, 0x01, 0xbb];
    assert_eq!(encoded(&request), bytes);
    assert_eq!(OpenRequest::decode(&bytes), Ok(request));
}

#[test]
fn ipv6_udp_request_bytes() {
    let request = OpenRequest {
        protocol: Protocol::Udp,
        target: Target::Ip("[2001:db8::1]:53".parse().unwrap()),
    };
    let mut bytes = vec![1, 2, 4, 0x20, 0x01, 0x0d, 0xb8];
    bytes.extend_from_slice(&[0; 11]);
    bytes.extend_from_slice(&[1, 0, 53]);
    assert_eq!(encoded(&request), bytes);
    assert_eq!(OpenRequest::decode(&bytes), Ok(request));
}

#[test]
fn domain_request_bytes() {
    let request = tcp(Target::Domain("a-b.example".into(), 8080));
    let mut bytes = vec![1, 1, 3, 11];
    bytes.extend_from_slice(b"a-b.example");
    bytes.extend_from_slice(&[0x1f, 0x90]);
    assert_eq!(encoded(&request), bytes);
    assert_eq!(OpenRequest::decode(&bytes), Ok(request));
}

#[test]
fn longest_domain_round_trips() {
    let name = "x".repeat(255);
    let request = tcp(Target::Domain(name, 1));
    let bytes = encoded(&request);
    assert_eq!(bytes[3], 255);
    assert_eq!(OpenRequest::decode(&bytes), Ok(request));
}

#[test]
fn invalid_domain_encodes_as_rejected_empty_name() {
    for name in [
        "x".repeat(256),
        "bad name".into(),
        String::new(),
        "é.example".into(),
    ] {
        let bytes = encoded(&tcp(Target::Domain(name, 80)));
        assert_eq!(bytes, [1, 1, 3, 0, 0, 80]);
        assert_eq!(OpenRequest::decode(&bytes), Err(HeaderError::EmptyDomain));
    }
}

#[test]
fn request_errors() {
    assert_eq!(OpenRequest::decode(&[]), Err(HeaderError::Truncated));
    assert_eq!(
        OpenRequest::decode(&[2, 1, 1, 1, 2, 3, 4, 0, 80]),
        Err(HeaderError::Version(2))
    );
    assert_eq!(
        OpenRequest::decode(&[1, 3, 1, 1, 2, 3, 4, 0, 80]),
        Err(HeaderError::Protocol(3))
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 2, 1, 2, 3, 4, 0, 80]),
        Err(HeaderError::AddressType(2))
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 1, 1, 2, 3, 4, 0]),
        Err(HeaderError::Truncated)
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 1, 1, 2, 3, 4, 0, 80, 9]),
        Err(HeaderError::Trailing(1))
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 3, 3, b'a', b'/', b'b', 0, 80]),
        Err(HeaderError::DomainChars)
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 3, 2, 0xc3, 0xa9, 0, 80]),
        Err(HeaderError::DomainChars)
    );
    assert_eq!(
        OpenRequest::decode(&[1, 1, 3, 5, b'a', 0, 80]),
        Err(HeaderError::Truncated)
    );
}

#[test]
fn every_prefix_of_a_request_is_truncated() {
    let bytes = encoded(&tcp(Target::Domain("example.com".into(), 443)));
    for len in 0..bytes.len() {
        assert_eq!(
            OpenRequest::decode(&bytes[..len]),
            Err(HeaderError::Truncated),
            "len {len}"
        );
    }
}

#[test]
fn connect_result_bytes() {
    let all = [
        (ConnectResult::Ok, [1, 0], 0),
        (ConnectResult::Refused, [1, 1], 5),
        (ConnectResult::Unreachable, [1, 2], 4),
        (ConnectResult::Timeout, [1, 3], 6),
        (ConnectResult::Denied, [1, 4], 2),
        (ConnectResult::Failure, [1, 5], 1),
    ];
    for (result, bytes, socks) in all {
        assert_eq!(result.encode(), bytes);
        assert_eq!(ConnectResult::decode(&bytes), Ok(result));
        assert_eq!(result.socks5_reply_code(), socks);
    }
    assert_eq!(ConnectResult::ENCODED_LEN, 2);
}

#[test]
fn connect_result_errors() {
    assert_eq!(ConnectResult::decode(&[]), Err(HeaderError::Truncated));
    assert_eq!(ConnectResult::decode(&[1]), Err(HeaderError::Truncated));
    assert_eq!(ConnectResult::decode(&[7]), Err(HeaderError::Version(7)));
    assert_eq!(ConnectResult::decode(&[0, 0]), Err(HeaderError::Version(0)));
    assert_eq!(ConnectResult::decode(&[1, 6]), Err(HeaderError::Result(6)));
    assert_eq!(
        ConnectResult::decode(&[1, 0, 0]),
        Err(HeaderError::Trailing(1))
    );
}

#[test]
fn target_display_and_parse() {
    let cases = [
        ("192.0.2.1:80", Target::Ip("192.0.2.1:80".parse().unwrap())),
        (
            "[2001:db8::2]:443",
            Target::Ip("[2001:db8::2]:443".parse().unwrap()),
        ),
        (
            "example.com:8443",
            Target::Domain("example.com".into(), 8443),
        ),
    ];
    for (text, target) in cases {
        assert_eq!(target.to_string(), text);
        assert_eq!(text.parse::<Target>(), Ok(target));
    }
    assert!(matches!(
        "example.com".parse::<Target>(),
        Err(TargetError::MissingPort(_))
    ));
    assert!(matches!(
        "example.com:70000".parse::<Target>(),
        Err(TargetError::Port(_))
    ));
    assert!(matches!(
        "2001:db8::1:80".parse::<Target>(),
        Err(TargetError::Host(_))
    ));
    assert!(matches!(":80".parse::<Target>(), Err(TargetError::Host(_))));
}

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        // Flow info and scope id are not carried, so only plain addresses round-trip.
        (any::<std::net::IpAddr>(), any::<u16>())
            .prop_map(|(ip, port)| Target::Ip(SocketAddr::new(ip, port))),
        ("[a-zA-Z0-9._-]{1,255}", any::<u16>()).prop_map(|(h, p)| Target::Domain(h, p)),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = OpenRequest::decode(&bytes);
        let _ = ConnectResult::decode(&bytes);
    }

    #[test]
    fn decode_of_mutated_header_never_panics(
        target in arb_target(),
        index in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = encoded(&tcp(target));
        let i = index.index(bytes.len());
        bytes[i] = value;
        let _ = OpenRequest::decode(&bytes);
    }

    #[test]
    fn request_round_trips(target in arb_target(), udp in any::<bool>()) {
        let request = OpenRequest {
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            target,
        };
        let bytes = encoded(&request);
        prop_assert_eq!(OpenRequest::decode(&bytes), Ok(request));
    }
}

#[test]
fn datagram_bytes() {
    let to = Target::Ip("198.18.0.1:53".parse().unwrap());
    let mut out = Vec::new();
    encode_datagram(0x0102_0304, &to, b"hi", &mut out);
    assert_eq!(out, [1, 2, 3, 4, 1, 198, 18, 0, 1, 0, 53, b'h', b'i']);
    assert_eq!(datagram_header_len(&to), 11);
    let d = decode_datagram(&out).unwrap();
    assert_eq!(
        d,
        DatagramRef {
            association: 0x0102_0304,
            addr: to,
            payload: b"hi"
        }
    );
    assert_eq!(datagram_association(&out), Ok(0x0102_0304));
    // A domain destination, empty payload.
    let name = Target::Domain("a.b".into(), 443);
    out.clear();
    encode_datagram(7, &name, b"", &mut out);
    assert_eq!(out, [0, 0, 0, 7, 3, 3, b'a', b'.', b'b', 1, 187]);
    assert_eq!(decode_datagram(&out).unwrap().payload, b"");
    assert_eq!(max_udp_payloads(1350), (1339, 1327));
}

#[test]
fn datagram_truncations_are_errors() {
    let mut out = Vec::new();
    encode_datagram(
        9,
        &Target::Ip("[2001:db8::1]:5353".parse().unwrap()),
        b"",
        &mut out,
    );
    for n in 0..out.len() {
        assert_eq!(
            decode_datagram(&out[..n]),
            Err(HeaderError::Truncated),
            "prefix {n}"
        );
    }
    assert!(datagram_association(&out[..3]).is_err());
}

proptest! {
    #[test]
    fn datagram_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_datagram(&bytes);
    }
}
