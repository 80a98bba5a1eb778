//! The boundary between packet workers (OS threads that own sessions) and tokio tasks (that
//! own application sockets).
//!
//! Each tunnel stream has a [`StreamPort`] on the tokio side and a [`Slot`] in its worker.
//! Back-pressure runs the whole way without unbounded buffering:
//!
//! - app → tunnel: a task takes `credit` (a semaphore of bytes) before handing data to the
//!   worker; the worker returns credit as the mux moves the bytes into KCP, and KCP only takes
//!   what its send window allows. A slow path therefore stops the task reading its socket.
//! - tunnel → app: the worker passes received data straight on; the peer can only have sent
//!   what the stream window allowed, and the window is reopened (`Consumed`) only after the
//!   task has written the bytes to its socket. A slow application therefore stops the peer.
//!
//! UDP associations are streams too (their open and close), with a datagram channel beside
//! them: datagrams never wait for credit or block anyone. A task queues one with
//! `try_send` and the worker hands received ones on with `try_send`; a full queue drops the
//! datagram and counts it, as a congested router would.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::mux::StreamId;
use crate::proxy::udp::{DatagramSink, UdpAssociation, UdpCounters, UdpDrop};
use crate::tunnel::{ConnectResult, OpenRequest};

/// Bytes a task may hand a worker ahead of the mux (per stream).
pub const STREAM_CREDIT: usize = 512 * 1024;
/// Largest chunk a task reads from its socket at once.
const CHUNK: usize = 32 * 1024;
/// Received datagrams a worker may queue for one association's task.
pub const DATAGRAM_QUEUE: usize = 512;

/// Identifies a stream across threads: the connection (peer address on a server, local
/// address on a client), the session generation on that connection, and the mux stream id.
/// The generation keeps a late command of an ended session away from a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub conn: SocketAddr,
    pub generation: u64,
    pub id: StreamId,
}

/// Worker → task.
#[derive(Debug)]
pub enum StreamMsg {
    Data(Vec<u8>),
    /// The peer will send no more.
    Fin,
    /// The stream or its session is gone.
    Reset,
}

/// Task → worker.
pub enum Command {
    /// Client: open a stream for `req`; the reply carries the port or why not.
    Open {
        req: OpenRequest,
        reply: oneshot::Sender<Result<StreamPort, ConnectResult>>,
    },
    Data {
        key: StreamKey,
        data: Vec<u8>,
    },
    Finish {
        key: StreamKey,
    },
    Reset {
        key: StreamKey,
    },
    Consumed {
        key: StreamKey,
        bytes: usize,
    },
    /// The task is done with the stream.
    Close {
        key: StreamKey,
    },
    /// One datagram of the association `key` (header + payload, see [`crate::tunnel`]).
    Datagram {
        key: StreamKey,
        body: Vec<u8>,
    },
}

/// Everything a worker receives, in one queue.
pub enum Input {
    Frame(Vec<u8>),
    Cmd(Command),
    Control(Control),
}

/// Daemon → worker.
pub enum Control {
    /// Server: new keys and client lists (SIGHUP); sessions of removed clients end.
    SetIdentities(Arc<[crate::crypto::ServerIdentity]>),
}

/// The worker's half of a stream.
pub struct Slot {
    pub tx: mpsc::UnboundedSender<StreamMsg>,
    pub credit: Arc<Semaphore>,
    /// UDP associations: where received datagrams go.
    pub datagrams: Option<mpsc::Sender<Vec<u8>>>,
}

/// The task's half of a stream.
pub struct StreamPort {
    pub key: StreamKey,
    pub cmd: flume::Sender<Input>,
    pub rx: mpsc::UnboundedReceiver<StreamMsg>,
    pub credit: Arc<Semaphore>,
    /// UDP associations: received datagrams, and the largest body a packet carries.
    pub datagrams: Option<(mpsc::Receiver<Vec<u8>>, usize)>,
}

/// Makes both halves of a new stream; `datagram_max` (the session's largest datagram body)
/// makes it a UDP association with a datagram channel.
pub fn stream_pair(
    key: StreamKey,
    cmd: flume::Sender<Input>,
    datagram_max: Option<usize>,
) -> (Slot, StreamPort) {
    let (tx, rx) = mpsc::unbounded_channel();
    let credit = Arc::new(Semaphore::new(STREAM_CREDIT));
    let (dtx, drx) = match datagram_max {
        Some(max) => {
            let (t, r) = mpsc::channel(DATAGRAM_QUEUE);
            (Some(t), Some((r, max)))
        }
        None => (None, None),
    };
    (
        Slot {
            tx,
            credit: credit.clone(),
            datagrams: dtx,
        },
        StreamPort {
            key,
            cmd,
            rx,
            credit,
            datagrams: drx,
        },
    )
}

/// Sends an association's datagrams to its worker; dropping it (with the association) ends
/// the association: the control stream is reset and released.
pub struct WorkerSink {
    key: StreamKey,
    cmd: flume::Sender<Input>,
    max: usize,
}

impl WorkerSink {
    pub fn new(key: StreamKey, cmd: flume::Sender<Input>, max: usize) -> WorkerSink {
        WorkerSink { key, cmd, max }
    }
}

impl DatagramSink for WorkerSink {
    fn send_body(&self, body: Vec<u8>) -> Result<(), UdpDrop> {
        let key = self.key;
        self.cmd
            .try_send(Input::Cmd(Command::Datagram { key, body }))
            .map_err(|e| match e {
                flume::TrySendError::Full(_) => UdpDrop::QueueFull,
                flume::TrySendError::Disconnected(_) => UdpDrop::Closed,
            })
    }

    fn max_body(&self) -> usize {
        self.max
    }
}

impl Drop for WorkerSink {
    fn drop(&mut self) {
        let key = self.key;
        let cmd = self.cmd.clone();
        let msgs = [Command::Reset { key }, Command::Close { key }];
        // Usually there is room; otherwise finish from a task rather than block here.
        let mut rest = Vec::new();
        for m in msgs {
            if let Err(flume::TrySendError::Full(m)) = cmd.try_send(Input::Cmd(m)) {
                rest.push(m);
            }
        }
        if !rest.is_empty() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    for m in rest {
                        let _ = cmd.send_async(m).await;
                    }
                });
            }
        }
    }
}

impl StreamPort {
    async fn send(&self, c: Command) -> bool {
        self.cmd.send_async(Input::Cmd(c)).await.is_ok()
    }

    /// Sends bytes without taking credit (small control data such as the connect result).
    pub async fn send_raw(&self, data: Vec<u8>) -> bool {
        self.send(Command::Data {
            key: self.key,
            data,
        })
        .await
    }

    pub async fn finish(&self) {
        self.send(Command::Finish { key: self.key }).await;
    }

    /// Answers an open with a failed connect `result`, ends the stream and releases it.
    pub async fn refuse(self, result: ConnectResult) {
        self.send_raw(result.encode().to_vec()).await;
        self.finish().await;
        self.send(Command::Close { key: self.key }).await;
    }

    /// Turns a UDP association's port into the [`UdpAssociation`] front ends and the server
    /// use; `None` for a TCP stream.
    pub fn into_association(self, counters: Arc<UdpCounters>) -> Option<UdpAssociation> {
        let (rx, max) = self.datagrams?;
        let sink = Arc::new(WorkerSink::new(self.key, self.cmd, max));
        Some(UdpAssociation::new(self.key.id, sink, rx, counters))
    }

    /// Waits for the first `n` bytes of the stream (the connect result). Returns them and any
    /// bytes that came after in the same message, or `None` if the stream ended first.
    pub async fn read_exact_prefix(&mut self, n: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match self.rx.recv().await? {
                StreamMsg::Data(d) => got.extend_from_slice(&d),
                StreamMsg::Fin | StreamMsg::Reset => return None,
            }
        }
        let rest = got.split_off(n);
        self.send(Command::Consumed {
            key: self.key,
            bytes: n,
        })
        .await;
        Some((got, rest))
    }

    /// Relays between the stream and an application socket until both directions end.
    /// `pending` is data already received for the application. Returns bytes (up, down).
    pub async fn relay<S>(self, io: S, pending: Vec<u8>) -> (u64, u64)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut r, mut w) = tokio::io::split(io);
        let StreamPort {
            key,
            cmd: main_cmd,
            mut rx,
            credit,
            ..
        } = self;
        let cmd = main_cmd.clone();
        let up = async move {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                match credit.acquire_many(n as u32).await {
                    Ok(p) => p.forget(),
                    Err(_) => return (total, false),
                }
                let data = buf[..n].to_vec();
                if cmd
                    .send_async(Input::Cmd(Command::Data { key, data }))
                    .await
                    .is_err()
                {
                    return (total, false);
                }
                total += n as u64;
            }
            let _ = cmd.send_async(Input::Cmd(Command::Finish { key })).await;
            (total, true)
        };
        let cmd2 = main_cmd.clone();
        let down = async move {
            let mut total = 0u64;
            if !pending.is_empty() {
                if w.write_all(&pending).await.is_err() {
                    return (total, false);
                }
                total += pending.len() as u64;
                let _ = cmd2
                    .send_async(Input::Cmd(Command::Consumed {
                        key,
                        bytes: pending.len(),
                    }))
                    .await;
            }
            while let Some(msg) = rx.recv().await {
                match msg {
                    StreamMsg::Data(d) => {
                        if w.write_all(&d).await.is_err() {
                            return (total, false);
                        }
                        total += d.len() as u64;
                        let _ = cmd2
                            .send_async(Input::Cmd(Command::Consumed {
                                key,
                                bytes: d.len(),
                            }))
                            .await;
                    }
                    StreamMsg::Fin => {
                        let _ = w.shutdown().await;
                        return (total, true);
                    }
                    StreamMsg::Reset => return (total, false),
                }
            }
            (total, false)
        };
        let up = tokio::spawn(up);
        let (down_total, down_ok) = down.await;
        let (up_total, up_ok) = if down_ok {
            up.await.unwrap_or((0, false))
        } else {
            // The tunnel side broke: stop reading the application and reset the stream.
            up.abort();
            let _ = main_cmd
                .send_async(Input::Cmd(Command::Reset { key }))
                .await;
            (0, false)
        };
        if !up_ok && down_ok {
            let _ = main_cmd
                .send_async(Input::Cmd(Command::Reset { key }))
                .await;
        }
        let _ = main_cmd
            .send_async(Input::Cmd(Command::Close { key }))
            .await;
        (up_total, down_total)
    }
}
