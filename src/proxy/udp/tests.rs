//! UDP front ends and server associations over an in-memory tunnel: the SOCKS5 relay and
//! UDP forwards on one side, `serve_udp_association` on the other, real UDP sockets on
//! loopback at both ends.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::proxy::socks5::message::{
    method, reply, Command, Greeting, MethodSelection, Reply, Request, UdpHeader,
};
use crate::proxy::udp::forward::UdpForwardLimits;
use crate::proxy::{serve_socks5, serve_udp_association, serve_udp_forward, Connector, DialPolicy};
use crate::tunnel::{ConnectResult, Target};

/// Body limit of the in-memory tunnel (a 1350-byte MTU, as the default config).
const MAX_BODY: usize = 1350;

struct MemSink {
    tx: mpsc::Sender<Vec<u8>>,
}

impl DatagramSink for MemSink {
    fn send_body(&self, body: Vec<u8>) -> Result<(), UdpDrop> {
        self.tx.try_send(body).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => UdpDrop::QueueFull,
            mpsc::error::TrySendError::Closed(_) => UdpDrop::Closed,
        })
    }
    fn max_body(&self) -> usize {
        MAX_BODY
    }
}

/// Each association is a pair of in-memory pipes to a `serve_udp_association` task.
#[derive(Clone)]
struct MemTunnel {
    client: Arc<UdpCounters>,
    server: Arc<UdpCounters>,
    idle: Duration,
}

impl MemTunnel {
    fn new() -> MemTunnel {
        MemTunnel {
            client: Arc::default(),
            server: Arc::default(),
            idle: Duration::from_secs(30),
        }
    }
}

impl Connector for MemTunnel {
    type Stream = DuplexStream;
    async fn connect(&self, _target: Target) -> Result<DuplexStream, ConnectResult> {
        Err(ConnectResult::Refused)
    }
    async fn associate(&self, _target: Target) -> Result<UdpAssociation, ConnectResult> {
        let (up_tx, up_rx) = mpsc::channel(64);
        let (down_tx, down_rx) = mpsc::channel(64);
        let id = self.client.associations.load(Ordering::Relaxed) as u32 + 1;
        let client = UdpAssociation::new(
            id,
            Arc::new(MemSink { tx: up_tx }),
            down_rx,
            self.client.clone(),
        );
        let server = UdpAssociation::new(
            id,
            Arc::new(MemSink { tx: down_tx }),
            up_rx,
            self.server.clone(),
        );
        let policy = DialPolicy::allow_all(Duration::from_secs(2));
        let budget = crate::proxy::SessionBudget::unlimited();
        tokio::spawn(serve_udp_association(server, policy, budget, self.idle));
        Ok(client)
    }
}

/// A UDP server on loopback that answers every datagram with "re:" + the datagram.
async fn echo_server() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut out = b"re:".to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&out, from).await;
        }
    });
    addr
}

/// Connects to a SOCKS5 server, asks for UDP ASSOCIATE and returns the control connection
/// and the relay address from the reply.
async fn socks5_associate(proxy: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut control = TcpStream::connect(proxy).await.unwrap();
    Greeting {
        methods: vec![method::NO_AUTH],
    }
    .write_to(&mut control)
    .await
    .unwrap();
    let sel = MethodSelection::read_from(&mut control).await.unwrap();
    assert_eq!(sel.method, method::NO_AUTH);
    Request {
        command: Command::UdpAssociate,
        target: Target::Ip(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
    }
    .write_to(&mut control)
    .await
    .unwrap();
    let answer = Reply::read_from(&mut control).await.unwrap();
    assert_eq!(answer.code, reply::SUCCEEDED);
    let Target::Ip(relay) = answer.bound else {
        panic!("relay address is not an IP: {:?}", answer.bound)
    };
    assert_ne!(relay.port(), 0, "the reply names the relay port");
    (control, relay)
}

fn socks5_datagram(frag: u8, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    UdpHeader {
        frag,
        addr: Target::Ip(to),
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

async fn recv_timeout(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    tokio::time::timeout(Duration::from_secs(3), socket.recv_from(buf))
        .await
        .ok()
        .map(|r| r.unwrap())
}

async fn start_socks5(tunnel: MemTunnel) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(serve_socks5(listener, None, tunnel, stop));
    (addr, stop_tx)
}

/// A SOCKS5 front end over a fresh in-memory tunnel, an echo server, and one application
/// socket with its UDP association open.
struct Associated {
    echo: SocketAddr,
    tunnel: MemTunnel,
    control: TcpStream,
    relay: SocketAddr,
    app: UdpSocket,
    stop: watch::Sender<bool>,
}

async fn associated() -> Associated {
    let echo = echo_server().await;
    let tunnel = MemTunnel::new();
    let (proxy, stop) = start_socks5(tunnel.clone()).await;
    let (control, relay) = socks5_associate(proxy).await;
    let app = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    Associated {
        echo,
        tunnel,
        control,
        relay,
        app,
        stop,
    }
}

/// Polls `cond` for up to 3 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test]
async fn socks5_udp_associate_carries_a_query_and_its_reply_with_the_source() {
    let Associated {
        echo,
        tunnel,
        control: _control,
        relay,
        app,
        stop: _stop,
    } = associated().await;
    app.send_to(&socks5_datagram(0, echo, b"query 1"), relay)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = recv_timeout(&app, &mut buf)
        .await
        .expect("a reply through the relay");
    assert_eq!(from, relay);
    let (header, start) = UdpHeader::parse(&buf[..n]).await.unwrap();
    assert_eq!(
        header,
        UdpHeader {
            frag: 0,
            addr: Target::Ip(echo)
        }
    );
    assert_eq!(&buf[start..n], b"re:query 1");
    let c = tunnel.client.snapshot();
    assert_eq!(
        (c.received, c.tunnel_out, c.tunnel_in, c.delivered),
        (1, 1, 1, 1)
    );
    let s = tunnel.server.snapshot();
    assert_eq!(
        (s.tunnel_in, s.delivered, s.received, s.tunnel_out),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn socks5_udp_drops_fragments_foreign_sources_and_oversize_datagrams_counting_each() {
    let Associated {
        echo,
        tunnel,
        control: _control,
        relay,
        app,
        stop: _stop,
    } = associated().await;
    // The first datagram fixes the client's port; it goes through.
    app.send_to(&socks5_datagram(0, echo, b"hello"), relay)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    assert!(recv_timeout(&app, &mut buf).await.is_some());
    // A fragment.
    app.send_to(&socks5_datagram(1, echo, b"part"), relay)
        .await
        .unwrap();
    // Another port of the same host.
    let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    other
        .send_to(&socks5_datagram(0, echo, b"intruder"), relay)
        .await
        .unwrap();
    // The limit: header 4 + 7 (IPv4 address) in a 1350-byte body.
    let limit = MAX_BODY - 11;
    // One byte over it: dropped at the client, never cut.
    app.send_to(&socks5_datagram(0, echo, &vec![7u8; limit + 1]), relay)
        .await
        .unwrap();
    // Exactly at it: carried; the 3-byte-longer echo is too big for the way back and is
    // dropped by the server.
    app.send_to(&socks5_datagram(0, echo, &vec![8u8; limit]), relay)
        .await
        .unwrap();
    // Three under it: the echo is exactly at the limit and comes back whole.
    app.send_to(&socks5_datagram(0, echo, &vec![9u8; limit - 3]), relay)
        .await
        .unwrap();
    let (n, _) = recv_timeout(&app, &mut buf)
        .await
        .expect("the reply at the limit");
    let (_, start) = UdpHeader::parse(&buf[..n]).await.unwrap();
    assert_eq!(n - start, limit, "the reply at the limit arrives whole");
    assert!(
        buf[start + 3..n].iter().all(|&b| b == 9),
        "it is the last datagram's echo"
    );
    let c = tunnel.client.snapshot();
    assert_eq!(c.dropped_fragment, 1, "{c:?}");
    assert_eq!(c.dropped_foreign, 1, "{c:?}");
    assert_eq!(c.dropped_oversize, 1, "{c:?}");
    assert_eq!(c.tunnel_out, 3, "hello, at-limit, under-limit: {c:?}");
    assert_eq!(c.delivered, 2, "{c:?}");
    let s = tunnel.server.snapshot();
    assert_eq!(s.delivered, 3, "{s:?}");
    assert_eq!(s.dropped_oversize, 1, "the too-long echo: {s:?}");
    assert_eq!(s.tunnel_out, 2, "{s:?}");
}

#[tokio::test]
async fn socks5_udp_association_ends_with_its_control_connection() {
    let Associated {
        echo,
        tunnel,
        control,
        relay,
        app,
        stop: _stop,
    } = associated().await;
    app.send_to(&socks5_datagram(0, echo, b"x"), relay)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(recv_timeout(&app, &mut buf).await.is_some());
    assert_eq!(tunnel.client.snapshot().associations_active, 1);
    assert_eq!(tunnel.server.snapshot().associations_active, 1);
    drop(control);
    let (c, s) = (tunnel.client.clone(), tunnel.server.clone());
    assert!(
        eventually(
            || c.snapshot().associations_active == 0 && s.snapshot().associations_active == 0
        )
        .await,
        "associations still open: client {:?} server {:?}",
        c.snapshot(),
        s.snapshot()
    );
}

#[tokio::test]
async fn server_association_accepts_replies_only_from_destinations_it_sent_to() {
    let echo = echo_server().await;
    let tunnel = MemTunnel::new();
    let mut assoc = tunnel.associate(Target::Ip(echo)).await.unwrap();
    let sender = assoc.sender();
    sender.send(&Target::Ip(echo), b"ping").unwrap();
    let (from, payload) = tokio::time::timeout(Duration::from_secs(3), assoc.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (from, payload.as_slice()),
        (Target::Ip(echo), &b"re:ping"[..])
    );
    // A second destination that records where the association sends from.
    let spy = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let spy_addr = spy.local_addr().unwrap();
    sender.send(&Target::Ip(spy_addr), b"hello spy").unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, server_socket) = recv_timeout(&spy, &mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello spy");
    // The spy may answer (it was sent to) ...
    spy.send_to(b"answer", server_socket).await.unwrap();
    let (from, payload) = tokio::time::timeout(Duration::from_secs(3), assoc.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (from, payload.as_slice()),
        (Target::Ip(spy_addr), &b"answer"[..])
    );
    // ... a stranger may not.
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    stranger.send_to(b"spam", server_socket).await.unwrap();
    let counters = tunnel.server.clone();
    assert!(eventually(|| counters.snapshot().dropped_foreign == 1).await);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), assoc.recv())
            .await
            .is_err(),
        "nothing from the stranger reaches the client"
    );
}

#[tokio::test]
async fn server_association_refuses_destinations_the_policy_denies() {
    let echo = echo_server().await;
    let (up_tx, up_rx) = mpsc::channel(8);
    let (down_tx, mut down_rx) = mpsc::channel(8);
    let counters: Arc<UdpCounters> = Arc::default();
    let server = UdpAssociation::new(
        1,
        Arc::new(MemSink { tx: down_tx }),
        up_rx,
        counters.clone(),
    );
    // The default policy: the echo server on loopback is refused.
    let policy = DialPolicy::new(
        Duration::from_secs(1),
        crate::proxy::TargetPolicy::new(crate::config::TargetAcl::default()),
    );
    let task = tokio::spawn(serve_udp_association(
        server,
        policy,
        crate::proxy::SessionBudget::unlimited(),
        Duration::from_secs(5),
    ));
    let mut body = Vec::new();
    crate::tunnel::encode_datagram(1, &Target::Ip(echo), b"q", &mut body);
    up_tx.send(body).await.unwrap();
    let c = counters.clone();
    assert!(eventually(|| c.snapshot().dropped_denied == 1).await);
    assert_eq!(counters.snapshot().delivered, 0);
    drop(up_tx);
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
    assert!(down_rx.try_recv().is_err());
}

#[tokio::test]
async fn udp_forward_gives_each_source_its_own_association_and_expires_idle_ones() {
    let echo = echo_server().await;
    let tunnel = MemTunnel::new();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let listen = socket.local_addr().unwrap();
    let (_stop_tx, stop) = watch::channel(false);
    let limits = UdpForwardLimits {
        idle: Duration::from_millis(300),
        max_sources: 2,
    };
    tokio::spawn(serve_udp_forward(
        socket,
        Target::Ip(echo),
        tunnel.clone(),
        tunnel.client.clone(),
        limits,
        stop,
    ));
    let mut apps = Vec::new();
    for i in 0..3u8 {
        let app = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        app.send_to(&[b'a' + i], listen).await.unwrap();
        apps.push(app);
    }
    let mut buf = [0u8; 64];
    for (i, app) in apps.iter().enumerate().take(2) {
        let (n, from) = recv_timeout(app, &mut buf).await.expect("a reply");
        assert_eq!(from, listen);
        assert_eq!(&buf[..n], &[b'r', b'e', b':', b'a' + i as u8]);
    }
    let c = tunnel.client.clone();
    assert_eq!(c.snapshot().associations, 2);
    assert!(
        eventually(|| c.snapshot().dropped_limit == 1).await,
        "{:?}",
        c.snapshot()
    );
    // Both go idle and end; then the third source gets its turn.
    assert!(
        eventually(|| c.snapshot().associations_active == 0).await,
        "{:?}",
        c.snapshot()
    );
    apps[2].send_to(b"c", listen).await.unwrap();
    let (n, _) = recv_timeout(&apps[2], &mut buf)
        .await
        .expect("a reply after the expiry");
    assert_eq!(&buf[..n], b"re:c");
    assert_eq!(c.snapshot().associations, 3);
}

#[test]
fn sender_refuses_what_does_not_fit_and_never_cuts() {
    let (tx, mut rx) = mpsc::channel(4);
    let counters: Arc<UdpCounters> = Arc::default();
    let (_dtx, drx) = mpsc::channel(1);
    let assoc = UdpAssociation::new(7, Arc::new(MemSink { tx }), drx, counters.clone());
    let s = assoc.sender();
    let v4 = Target::Ip(SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 53)));
    let v6: Target = Target::Ip("[2001:db8::1]:53".parse().unwrap());
    let name = Target::Domain("example.test".into(), 53);
    assert_eq!(s.max_payload(&v4), MAX_BODY - 11);
    assert_eq!(s.max_payload(&v6), MAX_BODY - 23);
    assert_eq!(
        s.max_payload(&name),
        MAX_BODY - 4 - 4 - "example.test".len()
    );
    for addr in [&v4, &v6, &name] {
        let max = s.max_payload(addr);
        assert_eq!(
            s.send(addr, &vec![1; max + 1]),
            Err(UdpDrop::TooLarge {
                len: MAX_BODY + 1,
                max: MAX_BODY
            })
        );
        s.send(addr, &vec![2; max]).unwrap();
        let body = rx.try_recv().unwrap();
        assert_eq!(body.len(), MAX_BODY);
        let d = crate::tunnel::decode_datagram(&body).unwrap();
        assert_eq!((d.association, &d.addr, d.payload.len()), (7, addr, max));
    }
    let c = counters.snapshot();
    assert_eq!((c.dropped_oversize, c.tunnel_out), (3, 3));
}
