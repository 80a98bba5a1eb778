use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{pipe, reset_pipe, Abortable};

const LIMIT: Duration = Duration::from_secs(10);

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.expect("connect"), b.expect("accept").0)
}

async fn read_to_end_or_error(s: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

#[tokio::test]
async fn reset_pipe_turns_an_aborted_end_into_connection_reset() {
    let (a, mut b) = reset_pipe(1024);
    let mut a = a;
    a.write_all(b"partial").await.expect("write");
    a.abort();
    drop(a);
    let mut got = [0u8; 7];
    b.read_exact(&mut got)
        .await
        .expect("buffered bytes still arrive");
    assert_eq!(&got, b"partial");
    let err = b.read(&mut [0u8; 8]).await.expect_err("reset, not EOF");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    let (a, mut b) = reset_pipe(1024);
    drop(a);
    assert_eq!(
        b.read(&mut [0u8; 8]).await.expect("EOF"),
        0,
        "a plain drop is EOF"
    );
}

#[tokio::test]
async fn a_reset_on_one_side_becomes_a_reset_on_the_other() {
    // app <-> [a  pipe  b] <-> target: the target resets after some data.
    let (mut app, a) = tcp_pair().await;
    let (b, mut target) = tcp_pair().await;
    let relay = tokio::spawn(pipe(a, b));
    target
        .write_all(&[7u8; 100_000])
        .await
        .expect("target writes");
    target.set_zero_linger().expect("linger");
    drop(target); // RST
    let (got, err) = tokio::time::timeout(LIMIT, read_to_end_or_error(&mut app))
        .await
        .expect("app sees the end");
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionReset),
        "after {} bytes",
        got.len()
    );
    let outcome = tokio::time::timeout(LIMIT, relay)
        .await
        .expect("relay ends")
        .expect("join");
    assert!(!outcome.clean);
}

#[tokio::test]
async fn a_clean_close_stays_a_fin_and_half_close_works_both_ways() {
    let (mut app, a) = tcp_pair().await;
    let (b, mut target) = tcp_pair().await;
    let relay = tokio::spawn(pipe(a, b));
    // The app finishes first; the target still answers, then finishes.
    app.write_all(b"request").await.expect("write");
    app.shutdown().await.expect("shutdown");
    let mut req = Vec::new();
    target
        .read_to_end(&mut req)
        .await
        .expect("target reads to EOF");
    assert_eq!(req, b"request");
    target
        .write_all(b"response")
        .await
        .expect("answer after the FIN");
    target.shutdown().await.expect("shutdown");
    let (got, err) = read_to_end_or_error(&mut app).await;
    assert_eq!((got.as_slice(), err), (&b"response"[..], None));
    let outcome = tokio::time::timeout(LIMIT, relay)
        .await
        .expect("relay ends")
        .expect("join");
    assert!(outcome.clean);
    assert_eq!((outcome.up, outcome.down), (7, 8));
}

#[tokio::test]
async fn an_app_reset_reaches_the_target_as_a_reset_through_a_reset_pipe() {
    // app <-> pipe(app_side, tunnel_end) ... pipe(tunnel_far_end, target)
    let (mut app, app_side) = tcp_pair().await;
    let (near, far) = reset_pipe(64 * 1024);
    let (target_side, mut target) = tcp_pair().await;
    let front = tokio::spawn(pipe(app_side, near));
    let back = tokio::spawn(pipe(far, target_side));
    app.write_all(b"hello").await.expect("write");
    let mut five = [0u8; 5];
    target.read_exact(&mut five).await.expect("target reads");
    app.set_zero_linger().expect("linger");
    drop(app); // RST
    let (_, err) = tokio::time::timeout(LIMIT, read_to_end_or_error(&mut target))
        .await
        .expect("target sees the end");
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    for task in [front, back] {
        let outcome = tokio::time::timeout(LIMIT, task)
            .await
            .expect("ends")
            .expect("join");
        assert!(!outcome.clean);
    }
}
