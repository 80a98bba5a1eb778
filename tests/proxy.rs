//! Proxy front ends and server dialing on loopback, with an in-process fake connector whose
//! streams are `tokio::io::duplex` pipes relayed to a local echo server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rawtun::config::TargetAcl;
use rawtun::proxy::{
    await_connect_result, dial, relay, serve_http_connect, serve_socks5, serve_stream,
    serve_tcp_forward, Connector, DialPolicy, SessionBudget, Socks5Auth, TargetPolicy,
};
use rawtun::tunnel::{ConnectResult, OpenRequest, Protocol, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// Echoes every byte back and half-closes when the client does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// Records each target; answers `result`, and on `Ok` pipes to the echo server.
#[derive(Clone)]
struct FakeConnector {
    echo: SocketAddr,
    result: ConnectResult,
    seen: Arc<Mutex<Vec<Target>>>,
}

impl FakeConnector {
    async fn new(result: ConnectResult) -> FakeConnector {
        FakeConnector {
            echo: echo_server().await,
            result,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Target> {
        self.seen.lock().unwrap().clone()
    }
}

impl Connector for FakeConnector {
    type Stream = DuplexStream;

    async fn connect(&self, target: Target) -> Result<DuplexStream, ConnectResult> {
        self.seen.lock().unwrap().push(target);
        if self.result != ConnectResult::Ok {
            return Err(self.result);
        }
        let (near, far) = tokio::io::duplex(16 * 1024);
        let echo = TcpStream::connect(self.echo)
            .await
            .map_err(|_| ConnectResult::Failure)?;
        tokio::spawn(relay(far, echo));
        Ok(near)
    }
}

struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        timeout(LIMIT, self.task).await.unwrap().unwrap();
    }
}

enum Kind {
    Socks5(Option<Socks5Auth>),
    Http,
    Forward(Target),
}

async fn start(kind: Kind, connector: FakeConnector) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let task = match kind {
        Kind::Socks5(auth) => tokio::spawn(serve_socks5(listener, auth, connector, shutdown)),
        Kind::Http => tokio::spawn(serve_http_connect(listener, connector, shutdown)),
        Kind::Forward(target) => {
            tokio::spawn(serve_tcp_forward(listener, target, connector, shutdown))
        }
    };
    Running { addr, stop, task }
}

async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(LIMIT, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

/// Reads until EOF (or reset); the server must close within the limit.
async fn read_rest(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = timeout(LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("server did not close the connection");
    rest
}

const OK_REPLY: [u8; 10] = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0];

fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn credentials() -> Option<Socks5Auth> {
    Some(Socks5Auth {
        username: "alice".into(),
        password: "s3cret".into(),
    })
}

/// Sends "ping", then half-closes; expects "ping" back and EOF.
async fn assert_echo_with_half_close(stream: &mut TcpStream) {
    stream.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(stream, 4).await, b"ping");
    stream.write_all(b" pong").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_rest(stream).await, b" pong");
}

async fn socks5_no_auth_connect(request: &[u8]) -> (TcpStream, FakeConnector, Running) {
    let connector = FakeConnector::new(ConnectResult::Ok).await;
    let server = start(Kind::Socks5(None), connector.clone()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, [5, 0]);
    client.write_all(request).await.unwrap();
    assert_eq!(read_n(&mut client, 10).await, OK_REPLY);
    (client, connector, server)
}

#[tokio::test]
async fn socks5_connect_ipv4() {
    let request = [5, 1, 0, 1, 192, 0, 2, 9, 0x1f, 0x90];
    let (mut client, connector, server) = socks5_no_auth_connect(&request).await;
    assert_echo_with_half_close(&mut client).await;
    assert_eq!(
        connector.seen(),
        [Target::Ip("192.0.2.9:8080".parse().unwrap())]
    );
    server.stop().await;
}

#[tokio::test]
async fn socks5_connect_ipv6() {
    let mut request = vec![5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8];
    request.extend_from_slice(&[0; 11]);
    request.extend_from_slice(&[7, 1, 187]);
    let (mut client, connector, server) = socks5_no_auth_connect(&request).await;
    assert_echo_with_half_close(&mut client).await;
    assert_eq!(
        connector.seen(),
        [Target::Ip("[2001:db8::7]:443".parse().unwrap())]
    );
    server.stop().await;
}

#[tokio::test]
async fn socks5_connect_domain() {
    let mut request = vec![5, 1, 0, 3, 11];
    request.extend_from_slice(b"example.com");
    request.extend_from_slice(&[0, 80]);
    let (mut client, connector, server) = socks5_no_auth_connect(&request).await;
    assert_echo_with_half_close(&mut client).await;
    assert_eq!(connector.seen(), [Target::Domain("example.com".into(), 80)]);
    server.stop().await;
}

#[tokio::test]
async fn socks5_relays_a_megabyte_both_ways() {
    let request = [5, 1, 0, 1, 127, 0, 0, 1, 0, 9];
    let (client, _connector, server) = socks5_no_auth_connect(&request).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    timeout(LIMIT, read.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(echoed == data, "echo differs");
    server.stop().await;
}

async fn socks5_login(username: &[u8], password: &[u8]) -> (TcpStream, Running) {
    let connector = FakeConnector::new(ConnectResult::Ok).await;
    let server = start(Kind::Socks5(credentials()), connector).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(&[5, 2, 0, 2]).await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, [5, 2]);
    let mut login = vec![1, username.len() as u8];
    login.extend_from_slice(username);
    login.push(password.len() as u8);
    login.extend_from_slice(password);
    client.write_all(&login).await.unwrap();
    (client, server)
}

#[tokio::test]
async fn socks5_password_success() {
    let (mut client, server) = socks5_login(b"alice", b"s3cret").await;
    assert_eq!(read_n(&mut client, 2).await, [1, 0]);
    client
        .write_all(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 7])
        .await
        .unwrap();
    assert_eq!(read_n(&mut client, 10).await, OK_REPLY);
    assert_echo_with_half_close(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn socks5_password_failure_closes() {
    for (user, pass) in [
        (&b"alice"[..], &b"s3creT"[..]),
        (b"alicE", b"s3cret"),
        (b"alice", b"s3cret!"),
        (b"", b""),
    ] {
        let (mut client, server) = socks5_login(user, pass).await;
        assert_eq!(read_n(&mut client, 2).await, [1, 1]);
        assert_eq!(read_rest(&mut client).await, b"");
        server.stop().await;
    }
}

/// Sends `input` to a fresh SOCKS5 server and returns everything it answers before closing.
async fn socks5_exchange(auth: Option<Socks5Auth>, result: ConnectResult, input: &[u8]) -> Vec<u8> {
    let connector = FakeConnector::new(result).await;
    let server = start(Kind::Socks5(auth), connector).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(input).await.unwrap();
    let answer = read_rest(&mut client).await;
    server.stop().await;
    answer
}

#[tokio::test]
async fn socks5_refuses_bad_greetings() {
    // Wrong version.
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &[4, 1, 0]).await,
        [5, 0xff]
    );
    // Only GSSAPI offered.
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &[5, 1, 1]).await,
        [5, 0xff]
    );
    // No methods at all.
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &[5, 0]).await,
        [5, 0xff]
    );
    // Credentials configured but only "no auth" offered.
    assert_eq!(
        socks5_exchange(credentials(), ConnectResult::Ok, &[5, 1, 0]).await,
        [5, 0xff]
    );
    // No credentials configured but only username/password offered.
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &[5, 1, 2]).await,
        [5, 0xff]
    );
}

#[tokio::test]
async fn socks5_unsupported_commands_get_reply_7() {
    for command in [2u8, 9] {
        let input = [5, 1, 0, 5, command, 0, 1, 127, 0, 0, 1, 0, 53];
        let mut expected = vec![5, 0];
        expected.extend_from_slice(&reply(7));
        assert_eq!(
            socks5_exchange(None, ConnectResult::Ok, &input).await,
            expected,
            "command {command}"
        );
    }
}

#[tokio::test]
async fn socks5_udp_associate_without_udp_in_the_connector_gets_general_failure() {
    let input = [5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0];
    let mut expected = vec![5, 0];
    expected.extend_from_slice(&reply(1));
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &input).await,
        expected
    );
}

#[tokio::test]
async fn socks5_bad_request_replies() {
    let mut expected = vec![5, 0];
    expected.extend_from_slice(&reply(8));
    let input = [5, 1, 0, 5, 1, 0, 2, 1, 2, 3, 4, 0, 80];
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &input).await,
        expected
    );

    let mut expected = vec![5, 0];
    expected.extend_from_slice(&reply(1));
    let input = [5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80];
    assert_eq!(
        socks5_exchange(None, ConnectResult::Ok, &input).await,
        expected
    );
}

#[tokio::test]
async fn socks5_reply_code_for_each_connect_result() {
    let cases = [
        (ConnectResult::Refused, 5),
        (ConnectResult::Unreachable, 4),
        (ConnectResult::Timeout, 6),
        (ConnectResult::Denied, 2),
        (ConnectResult::Failure, 1),
    ];
    for (result, code) in cases {
        let input = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
        let mut expected = vec![5, 0];
        expected.extend_from_slice(&reply(code));
        assert_eq!(
            socks5_exchange(None, result, &input).await,
            expected,
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn socks5_truncated_and_garbage_input_closes() {
    let mut full = vec![5, 2, 0, 2, 1, 5];
    full.extend_from_slice(b"alice");
    full.push(6);
    full.extend_from_slice(b"s3cret");
    full.extend_from_slice(&[5, 1, 0, 4]);
    full.extend_from_slice(&[0; 15]);
    full.extend_from_slice(&[1, 0, 80]);
    let connector = FakeConnector::new(ConnectResult::Ok).await;
    let server = start(Kind::Socks5(credentials()), connector.clone()).await;
    for len in 0..full.len() {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client.write_all(&full[..len]).await.unwrap();
        client.shutdown().await.unwrap();
        let answer = read_rest(&mut client).await;
        assert!(answer.len() <= 4, "len {len}: {answer:?}");
    }
    let garbage: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 300],
        &[5, 255, 0, 0, 0],
        &[5, 1, 2, 1, 0xff, 0xff],
        &[0],
    ];
    for input in garbage {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        read_rest(&mut client).await;
    }
    assert!(connector.seen().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_open_connections() {
    let request = [5, 1, 0, 1, 127, 0, 0, 1, 0, 9];
    let (mut client, _connector, server) = socks5_no_auth_connect(&request).await;
    let addr = server.addr;
    server.stop().await;
    // The established relay ends too.
    assert_eq!(read_rest(&mut client).await, b"");
    assert!(TcpStream::connect(addr).await.is_err());
}

async fn http_exchange(result: ConnectResult, request: &[u8]) -> (String, FakeConnector) {
    let connector = FakeConnector::new(result).await;
    let server = start(Kind::Http, connector.clone()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(request).await.unwrap();
    let answer = read_rest(&mut client).await;
    server.stop().await;
    (String::from_utf8(answer).unwrap(), connector)
}

#[tokio::test]
async fn http_connect_success_with_early_data() {
    let connector = FakeConnector::new(ConnectResult::Ok).await;
    let server = start(Kind::Http, connector.clone()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nhello")
        .await
        .unwrap();
    let status = b"HTTP/1.1 200 Connection established\r\n\r\n";
    assert_eq!(read_n(&mut client, status.len()).await, status);
    assert_eq!(read_n(&mut client, 5).await, b"hello");
    assert_echo_with_half_close(&mut client).await;
    assert_eq!(
        connector.seen(),
        [Target::Domain("example.com".into(), 443)]
    );
    server.stop().await;
}

#[tokio::test]
async fn http_connect_errors() {
    let connect = b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n";
    for (result, status) in [
        (ConnectResult::Refused, "502 Bad Gateway"),
        (ConnectResult::Unreachable, "502 Bad Gateway"),
        (ConnectResult::Failure, "502 Bad Gateway"),
        (ConnectResult::Denied, "403 Forbidden"),
        (ConnectResult::Timeout, "504 Gateway Timeout"),
    ] {
        let (answer, connector) = http_exchange(result, connect).await;
        assert_eq!(answer, format!("HTTP/1.1 {status}\r\n\r\n"));
        assert_eq!(
            connector.seen(),
            [Target::Ip("[2001:db8::1]:443".parse().unwrap())]
        );
    }
    let bad: [(&[u8], &str); 4] = [
        (b"GET http://x/ HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
        (b"CONNECT nowhere HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (b"CONNECT a:1 SPDY/3\r\n\r\n", "400 Bad Request"),
        (&[b'A'; 9000], "431 Request Header Fields Too Large"),
    ];
    for (request, status) in bad {
        let (answer, connector) = http_exchange(ConnectResult::Ok, request).await;
        assert_eq!(answer, format!("HTTP/1.1 {status}\r\n\r\n"));
        assert!(connector.seen().is_empty());
    }
}

#[tokio::test]
async fn tcp_forward_carries_every_connection_to_its_target() {
    let target = Target::Domain("db.internal".into(), 5432);
    let connector = FakeConnector::new(ConnectResult::Ok).await;
    let server = start(Kind::Forward(target.clone()), connector.clone()).await;
    for _ in 0..2 {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        assert_echo_with_half_close(&mut client).await;
    }
    assert_eq!(connector.seen(), [target.clone(), target]);
    server.stop().await;
}

#[tokio::test]
async fn tcp_forward_closes_on_connect_failure() {
    let connector = FakeConnector::new(ConnectResult::Refused).await;
    let server = start(Kind::Forward(Target::Domain("x".into(), 1)), connector).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(read_rest(&mut client).await, b"");
    server.stop().await;
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn dial_results() {
    let open = DialPolicy::allow_all(LIMIT);
    let any = SessionBudget::unlimited();
    let target = Target::Ip(closed_port().await);
    assert_eq!(
        dial(&target, &open, &any).await.unwrap_err(),
        ConnectResult::Refused
    );

    let echo = echo_server().await;
    let mut stream = dial(&Target::Ip(echo), &open, &any).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    assert_eq!(read_n(&mut stream, 1).await, b"x");

    // The default policy refuses loopback, counted as a denied target.
    let safe = DialPolicy::new(LIMIT, TargetPolicy::new(TargetAcl::default()));
    let counted = SessionBudget::new(8, 8, Arc::default());
    assert_eq!(
        dial(&Target::Ip(echo), &safe, &counted).await.unwrap_err(),
        ConnectResult::Denied
    );
    // IPv4-mapped IPv6 is checked as the IPv4 address it is.
    let mapped = Target::Ip(
        format!("[::ffff:127.0.0.1]:{}", echo.port())
            .parse()
            .unwrap(),
    );
    assert_eq!(
        dial(&mapped, &safe, &counted).await.unwrap_err(),
        ConnectResult::Denied
    );
    // "localhost" may resolve to ::1 first; the dial moves on to 127.0.0.1.
    let by_name = Target::Domain("localhost".into(), echo.port());
    dial(&by_name, &open, &any).await.unwrap();
    assert_eq!(
        dial(&by_name, &safe, &counted).await.unwrap_err(),
        ConnectResult::Denied,
        "every address the name resolves to is checked"
    );
    assert_eq!(counted.counters().snapshot().targets_denied, 3);
    assert_eq!(
        (counted.dials(), counted.lookups()),
        (0, 0),
        "slots released"
    );
    let nowhere = Target::Domain("name.invalid".into(), 80);
    assert!(matches!(
        dial(&nowhere, &open, &any).await.unwrap_err(),
        ConnectResult::Unreachable | ConnectResult::Timeout
    ));
}

#[tokio::test]
async fn a_session_over_its_dial_or_lookup_budget_is_refused_at_once() {
    let open = DialPolicy::allow_all(LIMIT);
    let echo = echo_server().await;
    let budget = SessionBudget::new(1, 0, Arc::default());
    let held = budget.try_dial().expect("the one dial slot");
    assert_eq!(
        dial(&Target::Ip(echo), &open, &budget).await.unwrap_err(),
        ConnectResult::Failure
    );
    drop(held);
    dial(&Target::Ip(echo), &open, &budget)
        .await
        .expect("a slot is free again");
    let by_name = Target::Domain("localhost".into(), echo.port());
    assert_eq!(
        dial(&by_name, &open, &budget).await.unwrap_err(),
        ConnectResult::Failure,
        "no lookup slot"
    );
    let c = budget.counters().snapshot();
    assert_eq!((c.refused_dials, c.refused_lookups), (1, 1));
}

#[tokio::test]
async fn relay_propagates_half_close_from_the_target() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connect = TcpStream::connect(listener.local_addr().unwrap());
    let (target_side, accepted) = tokio::join!(connect, listener.accept());
    let mut far_end = accepted.unwrap().0;
    let (mut tunnel, tunnel_far) = tokio::io::duplex(1024);
    let relayed = tokio::spawn(relay(tunnel_far, target_side.unwrap()));

    far_end.write_all(b"bye").await.unwrap();
    far_end.shutdown().await.unwrap();
    let mut got = Vec::new();
    tunnel.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
    // The other direction still works after the target's FIN.
    tunnel.write_all(b"late").await.unwrap();
    tunnel.shutdown().await.unwrap();
    assert_eq!(read_rest(&mut far_end).await, b"late");
    assert_eq!(timeout(LIMIT, relayed).await.unwrap().unwrap(), (4, 3));
}

#[tokio::test]
async fn serve_stream_answers_then_relays() {
    let policy = DialPolicy::allow_all(LIMIT);
    let echo = echo_server().await;
    let (client, server_side) = tokio::io::duplex(1024);
    let request = OpenRequest {
        protocol: Protocol::Tcp,
        target: Target::Ip(echo),
    };
    let served = tokio::spawn(async move { serve_stream(server_side, &request, &policy).await });
    let mut stream = await_connect_result(client).await.unwrap();
    stream.write_all(b"abc").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"abc");
    assert_eq!(served.await.unwrap(), (ConnectResult::Ok, 3, 3));

    let policy = DialPolicy::allow_all(LIMIT);
    let (mut client, server_side) = tokio::io::duplex(1024);
    let request = OpenRequest {
        protocol: Protocol::Tcp,
        target: Target::Ip(closed_port().await),
    };
    let served = tokio::spawn(async move { serve_stream(server_side, &request, &policy).await });
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, [1, 1]);
    assert_eq!(served.await.unwrap(), (ConnectResult::Refused, 0, 0));
}
