use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::message::*;
use super::*;
use crate::proxy::Connector;
use crate::tunnel::{ConnectResult, Target};

/// Refuses everything: the handshake tests never get past the request.
#[derive(Clone)]
struct Refusing;

impl Connector for Refusing {
    type Stream = DuplexStream;
    async fn connect(&self, _target: Target) -> Result<DuplexStream, ConnectResult> {
        Err(ConnectResult::Refused)
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn auth() -> Socks5Auth {
    Socks5Auth {
        username: "user".into(),
        password: "secret".into(),
    }
}

/// Runs a session on `input` (then EOF) and returns what it wrote; fails on panic or hang.
async fn run(input: Vec<u8>, auth: Option<Socks5Auth>) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(4096);
    let task = tokio::spawn(async move {
        session(
            server,
            Client {
                peer: peer(),
                local: None,
            },
            auth.as_ref(),
            &Refusing,
            Duration::from_secs(5),
        )
        .await;
    });
    client.write_all(&input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut output = Vec::new();
    let _ = client.read_to_end(&mut output).await;
    let joined = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(joined, Ok(Ok(()))), "session hung or panicked");
    output
}

#[test]
fn constant_time_eq_compares_bytes_and_lengths() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"ab", b"abc"));
    assert!(!constant_time_eq(b"a\0", b"a"));
}

#[tokio::test]
async fn messages_round_trip_through_bytes() {
    let request = Request {
        command: Command::UdpAssociate,
        target: Target::Domain("example.org".into(), 53),
    };
    let mut bytes = Vec::new();
    request.write_to(&mut bytes).await.unwrap();
    let mut expected = vec![5, 3, 0, 3, 11];
    expected.extend_from_slice(b"example.org");
    expected.extend_from_slice(&[0, 53]);
    assert_eq!(bytes, expected);
    assert_eq!(Request::read_from(&mut &bytes[..]).await.unwrap(), request);

    let reply = Reply::new(5);
    let mut bytes = Vec::new();
    reply.write_to(&mut bytes).await.unwrap();
    assert_eq!(bytes, [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(Reply::read_from(&mut &bytes[..]).await.unwrap(), reply);

    let login = PasswordRequest {
        username: b"u".to_vec(),
        password: b"pw".to_vec(),
    };
    let mut bytes = Vec::new();
    login.write_to(&mut bytes).await.unwrap();
    assert_eq!(bytes, [1, 1, b'u', 2, b'p', b'w']);
    assert_eq!(
        PasswordRequest::read_from(&mut &bytes[..]).await.unwrap(),
        login
    );

    let greeting = Greeting {
        methods: vec![0, 2],
    };
    let mut bytes = Vec::new();
    greeting.write_to(&mut bytes).await.unwrap();
    assert_eq!(bytes, [5, 2, 0, 2]);
    assert_eq!(
        Greeting::read_from(&mut &bytes[..]).await.unwrap(),
        greeting
    );
}

#[tokio::test]
async fn ip_literal_domain_becomes_ip_target() {
    let mut bytes = vec![5, 1, 0, 3, 3];
    bytes.extend_from_slice(b"::1");
    bytes.extend_from_slice(&[0, 80]);
    let request = Request::read_from(&mut &bytes[..]).await.unwrap();
    assert_eq!(request.target, Target::Ip("[::1]:80".parse().unwrap()));
}

#[tokio::test]
async fn bad_domain_gets_general_failure() {
    let mut input = vec![5, 1, 0, 5, 1, 0, 3, 4];
    input.extend_from_slice(b"a b!");
    input.extend_from_slice(&[0, 80]);
    assert_eq!(run(input, None).await, [5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn refused_connect_gets_reply_5() {
    let input = vec![5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80];
    assert_eq!(run(input, None).await, [5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn every_truncation_ends_the_session() {
    let mut full = vec![5, 2, 0, 2, 1, 4];
    full.extend_from_slice(b"user");
    full.push(6);
    full.extend_from_slice(b"secret");
    full.extend_from_slice(&[5, 1, 0, 3, 7]);
    full.extend_from_slice(b"a.b.com");
    full.extend_from_slice(&[1, 187]);
    for len in 0..=full.len() {
        let output = run(full[..len].to_vec(), Some(auth())).await;
        // A reply to the request only ever comes once the request is complete.
        assert_eq!(output.len() > 4, len == full.len(), "len {len}");
    }
}

#[tokio::test]
async fn idle_client_is_dropped_after_the_handshake_timeout() {
    // Tokio's paused clock needs the `test-util` feature, which the crate does not enable,
    // so this uses a short real timeout instead of HANDSHAKE_TIMEOUT.
    let limit = Duration::from_millis(100);
    let (mut client, server) = tokio::io::duplex(64);
    let task = tokio::spawn(async move {
        session(
            server,
            Client {
                peer: peer(),
                local: None,
            },
            None,
            &Refusing,
            limit,
        )
        .await;
    });
    client.write_all(&[5, 1]).await.unwrap();
    let started = std::time::Instant::now();
    let mut output = Vec::new();
    // The server drops its end when the timeout fires, which ends this read.
    client.read_to_end(&mut output).await.unwrap();
    assert!(output.is_empty());
    assert!(started.elapsed() >= limit);
    task.await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn garbage_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..64),
        with_auth in any::<bool>(),
        valid_greeting in any::<bool>(),
    ) {
        let mut bytes = if valid_greeting {
            vec![5, 2, 0, 2]
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(&input);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(bytes, with_auth.then(auth)));
    }
}
