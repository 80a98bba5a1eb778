//! The boundary between packet workers (OS threads that own sessions) and tokio tasks (that
//! own application sockets).
//!
//! Each tunnel stream has a [`StreamPort`] on the tokio side and a [`Slot`] in its worker.
//! Back-pressure runs the whole way and every queue between the packet path and a socket
//! is bounded:
//!
//! - app → tunnel: a task takes credit before handing data to the worker — from its
//!   stream's semaphore ([`STREAM_CREDIT`] bytes) *and* from its session's (the session's
//!   `smuxbuf`), so the bytes a session's tasks have handed over and the mux has not framed
//!   yet are bounded per stream and per session. The worker returns credit as the mux
//!   frames the bytes, and KCP only takes what its send window allows. A slow path
//!   therefore stops the task reading its socket. Credit of bytes still in the mux after
//!   the task closed the stream is returned when they are framed (or dropped by a reset).
//! - tunnel → app: the worker appends received data to the stream's [`Inbox`]; the peer can
//!   only have sent what the stream window allowed and, over all streams, what the
//!   session's receive bound (`smuxbuf`) allowed, and the window reopens (`Consumed`) only
//!   after the task has written the bytes out. A reset empties the inbox at once, also
//!   while the task is still dialing. A slow application therefore stops the peer.
//! - the worker's command queue is a bounded channel; tasks wait on it (`send_async`). Its
//!   frames come on a queue of their own, which the capture thread never waits on (a full
//!   one drops the frame and counts it), so a flood of frames cannot keep commands out.
//!
//! UDP associations are streams too (their open and close), with a datagram channel beside
//! them: datagrams never wait for credit or block anyone. A task queues one with
//! `try_send` and the worker hands received ones on with `try_send`; a full queue drops the
//! datagram and counts it, as a congested router would.
//!
//! [`StreamPort::relay`] ends honestly (see [`crate::proxy::relay`]): a FIN from the peer
//! becomes a FIN to the socket; a reset from the peer, or a reset or error on the socket,
//! resets both (the socket with an RST, the stream with a mux RST).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

pub use super::inbox::{Inbox, StreamMsg};
use crate::mux::StreamId;
use crate::proxy::udp::{DatagramSink, UdpAssociation, UdpCounters, UdpDrop};
use crate::proxy::Abortable;
use crate::tunnel::{ConnectResult, OpenRequest};

/// Bytes a task may hand a worker ahead of the mux (per stream).
pub const STREAM_CREDIT: usize = 512 * 1024;
/// Largest chunk a task reads from its socket at once.
const CHUNK: usize = 32 * 1024;
/// First read buffer of a relay; it grows to [`CHUNK`] when reads fill it, so an idle
/// stream holds little.
const FIRST_CHUNK: usize = 4 * 1024;
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

/// Task → worker.
pub enum Command {
    /// Client: open a stream for `req`; the reply carries the port or why not.
    Open {
        req: OpenRequest,
        reply: oneshot::Sender<Result<StreamPort, ConnectResult>>,
    },
    /// Stream bytes; `credited` if the task took credit for them (everything but the
    /// connect result).
    Data {
        key: StreamKey,
        data: Vec<u8>,
        credited: bool,
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

impl Command {
    /// The session the command belongs to (`None` for a client's open).
    pub fn session(&self) -> Option<SocketAddr> {
        match self {
            Command::Open { .. } => None,
            Command::Data { key, .. }
            | Command::Finish { key }
            | Command::Reset { key }
            | Command::Consumed { key, .. }
            | Command::Close { key }
            | Command::Datagram { key, .. } => Some(key.conn),
        }
    }
}

/// Everything a worker receives: frames on its frame queue, commands and controls on its
/// command queue.
pub enum Input {
    /// A captured frame and the hash of its flow (the worker's fairness lane).
    Frame {
        flow: u64,
        data: Vec<u8>,
    },
    Cmd(Command),
    Control(Control),
}

/// Daemon → worker.
pub enum Control {
    /// Server: new keys and client lists (SIGHUP); sessions of removed clients end.
    SetIdentities(Arc<[crate::crypto::ServerIdentity]>),
}

/// The worker's half of a stream. Dropping it resets the inbox, so the task never waits
/// for a stream its worker has forgotten.
pub struct Slot {
    pub inbox: Arc<Inbox>,
    pub credit: Arc<Semaphore>,
    /// UDP associations: where received datagrams go.
    pub datagrams: Option<mpsc::Sender<Vec<u8>>>,
    /// Connect-result bytes handed to the mux and not yet framed.
    raw: usize,
    /// Credited bytes handed to the mux and not yet framed.
    pub queued: usize,
}

impl Slot {
    /// The task handed `len` bytes to the mux.
    pub fn queue(&mut self, len: usize, credited: bool) {
        if credited {
            self.queued += len;
        } else {
            self.raw += len;
        }
    }

    /// The mux framed `bytes` of this stream: returns how many of them were credited (the
    /// credit to give back to the stream and the session).
    pub fn sent(&mut self, bytes: usize) -> usize {
        let raw = bytes.min(self.raw);
        self.raw -= raw;
        let credited = (bytes - raw).min(self.queued);
        self.queued -= credited;
        credited
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inbox.reset();
    }
}

/// The task's half of a stream.
pub struct StreamPort {
    pub key: StreamKey,
    pub cmd: flume::Sender<Input>,
    pub inbox: Arc<Inbox>,
    pub credit: Arc<Semaphore>,
    /// The session's send credit, shared by all its streams.
    pub session_credit: Arc<Semaphore>,
    /// UDP associations: received datagrams, and the largest body a packet carries.
    pub datagrams: Option<(mpsc::Receiver<Vec<u8>>, usize)>,
}

/// Makes both halves of a new stream of a session whose send credit is `session_credit`;
/// `datagram_max` (the session's largest datagram body) makes it a UDP association with a
/// datagram channel.
pub fn stream_pair(
    key: StreamKey,
    cmd: flume::Sender<Input>,
    session_credit: Arc<Semaphore>,
    datagram_max: Option<usize>,
) -> (Slot, StreamPort) {
    let inbox = Arc::new(Inbox::default());
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
            inbox: inbox.clone(),
            credit: credit.clone(),
            datagrams: dtx,
            raw: 0,
            queued: 0,
        },
        StreamPort {
            key,
            cmd,
            inbox,
            credit,
            session_credit,
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
            credited: false,
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

    /// Resets the stream and releases it (an open abandoned before its result).
    pub async fn abandon(self) {
        self.send(Command::Reset { key: self.key }).await;
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
            match self.inbox.recv().await {
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

    /// Relays between the stream and an application socket until both directions end
    /// (FIN each way) or either side is reset. `pending` is data already received for the
    /// application. Returns bytes (up, down). A reset from the peer resets the socket
    /// (`Abortable`); a reset or error on the socket resets the stream.
    pub async fn relay<S>(self, io: S, pending: Vec<u8>) -> (u64, u64)
    where
        S: AsyncRead + AsyncWrite + Abortable + Unpin + Send + 'static,
    {
        let (mut r, mut w) = tokio::io::split(io);
        let StreamPort {
            key,
            cmd,
            inbox,
            credit,
            session_credit,
            ..
        } = self;
        let (mut up_total, mut down_total) = (0u64, 0u64);
        let clean = {
            let up = relay_up(&mut r, &cmd, key, &credit, &session_credit, &mut up_total);
            let down = relay_down(&mut w, &cmd, key, &inbox, pending, &mut down_total);
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            let mut clean = true;
            while !(up_done && down_done) {
                tokio::select! {
                    ok = &mut up, if !up_done => {
                        up_done = true;
                        if !ok {
                            clean = false;
                            break;
                        }
                    }
                    ok = &mut down, if !down_done => {
                        down_done = true;
                        if !ok {
                            clean = false;
                            break;
                        }
                    }
                }
            }
            clean
        };
        if !clean {
            let io = r.unsplit(w);
            io.abort();
            drop(io);
            let _ = cmd.send_async(Input::Cmd(Command::Reset { key })).await;
        }
        let _ = cmd.send_async(Input::Cmd(Command::Close { key })).await;
        (up_total, down_total)
    }
}

/// app → tunnel until EOF (then FIN: true) or a read error / gone worker (false).
async fn relay_up<R: AsyncRead + Unpin>(
    r: &mut R,
    cmd: &flume::Sender<Input>,
    key: StreamKey,
    credit: &Semaphore,
    session_credit: &Semaphore,
    total: &mut u64,
) -> bool {
    let mut buf = vec![0u8; FIRST_CHUNK];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return false,
        };
        let permits = u32::try_from(n).unwrap_or(u32::MAX);
        for sem in [credit, session_credit] {
            match sem.acquire_many(permits).await {
                Ok(p) => p.forget(),
                Err(_) => return false,
            }
        }
        let data = buf.get(..n).unwrap_or_default().to_vec();
        let sent = cmd
            .send_async(Input::Cmd(Command::Data {
                key,
                data,
                credited: true,
            }))
            .await;
        if sent.is_err() {
            return false;
        }
        *total += n as u64;
        if n == buf.len() && buf.len() < CHUNK {
            buf.resize((buf.len() * 2).min(CHUNK), 0);
        }
    }
    cmd.send_async(Input::Cmd(Command::Finish { key }))
        .await
        .is_ok()
}

/// tunnel → app until the peer's FIN (then shutdown: true) or its reset or a write error
/// (false). A reset interrupts a write in progress.
async fn relay_down<W: AsyncWrite + Unpin>(
    w: &mut W,
    cmd: &flume::Sender<Input>,
    key: StreamKey,
    inbox: &Inbox,
    pending: Vec<u8>,
    total: &mut u64,
) -> bool {
    let mut next = (!pending.is_empty()).then_some(StreamMsg::Data(pending));
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => inbox.recv().await,
        };
        match msg {
            StreamMsg::Data(d) => {
                let written = tokio::select! {
                    r = w.write_all(&d) => r.is_ok(),
                    () = inbox.wait_reset() => false,
                };
                if !written {
                    return false;
                }
                *total += d.len() as u64;
                let consumed = Command::Consumed {
                    key,
                    bytes: d.len(),
                };
                let _ = cmd.send_async(Input::Cmd(consumed)).await;
            }
            StreamMsg::Fin => {
                let _ = w.shutdown().await;
                return true;
            }
            StreamMsg::Reset => return false,
        }
    }
}
