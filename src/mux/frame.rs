//! Mux frames: parse and emit.
//!
//! The layout is rawtun's own, in the spirit of smux (xtaci/smux, `frame.go`; there is no
//! RFC). Integers are big-endian. Every frame is an 8-byte header and `length` payload bytes:
//!
//! ```text
//!  0        1        2                 4                                   8
//! +--------+--------+-----------------+-----------------------------------+
//! |version |  cmd   |     length      |             stream id             |
//! +--------+--------+-----------------+-----------------------------------+
//! |                     payload (length bytes)                            |
//! +-----------------------------------------------------------------------+
//!
//! version: 1
//! cmd  name    stream id   payload
//!  0   OPEN    new id      opaque open header (tunnel target), at most 1024 bytes
//!  1   DATA    id          stream bytes
//!  2   FIN     id          empty: the sender will send no more DATA on this stream
//!  3   RST     id          empty: the stream is aborted in both directions
//!  4   WINDOW  id          8 bytes: consumed (u32, total bytes consumed, wrapping)
//!                                   window   (u32, bytes the sender may have unconsumed)
//!  5   PING    0           8 bytes: opaque u64, echoed by PONG
//!  6   PONG    0           8 bytes: the PING's opaque
//! ```
//!
//! Stream ids opened by the client are odd, by the server even; 0 is the session itself.

use super::StreamId;

/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Length of a frame header.
pub const HEADER_LEN: usize = 8;
/// Largest OPEN payload.
pub const MAX_OPEN_PAYLOAD: usize = 1024;
/// Largest payload of any frame (the `length` field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

const CMD_OPEN: u8 = 0;
const CMD_DATA: u8 = 1;
const CMD_FIN: u8 = 2;
const CMD_RST: u8 = 3;
const CMD_WINDOW: u8 = 4;
const CMD_PING: u8 = 5;
const CMD_PONG: u8 = 6;

/// One decoded frame, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Opens stream `id`; `payload` is the tunnel open header.
    Open {
        /// New stream id.
        id: StreamId,
        /// Opaque payload (≤ [`MAX_OPEN_PAYLOAD`]).
        payload: &'a [u8],
    },
    /// Stream bytes.
    Data {
        /// Stream id.
        id: StreamId,
        /// The bytes.
        data: &'a [u8],
    },
    /// Half close.
    Fin {
        /// Stream id.
        id: StreamId,
    },
    /// Abort.
    Rst {
        /// Stream id.
        id: StreamId,
    },
    /// Flow-control credit from the receiver.
    Window {
        /// Stream id.
        id: StreamId,
        /// Total bytes the receiver's application consumed (mod 2^32).
        consumed: u32,
        /// Bytes the sender may have outstanding beyond `consumed`.
        window: u32,
    },
    /// Keepalive request.
    Ping {
        /// Echoed by the PONG.
        opaque: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The PING's value.
        opaque: u64,
    },
}

/// Malformed frames.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Version byte other than [`VERSION`].
    #[error("unsupported mux version {0}")]
    Version(u8),
    /// Unknown command.
    #[error("unknown mux command {0}")]
    Command(u8),
    /// Payload length not allowed for the command.
    #[error("mux command {cmd} with invalid length {len}")]
    Length {
        /// Command byte.
        cmd: u8,
        /// Its length field.
        len: usize,
    },
    /// Stream id not allowed for the command (0 on a stream frame, non-0 on PING/PONG).
    #[error("mux command {cmd} with invalid stream id {id}")]
    StreamId {
        /// Command byte.
        cmd: u8,
        /// Its stream id.
        id: u32,
    },
}

fn u64_at(p: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(p) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

impl<'a> Frame<'a> {
    /// Decodes the frame at the start of `buf`. `Ok(None)` means more bytes are needed;
    /// the header is checked as soon as it is complete.
    pub fn decode(buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let (version, cmd) = (head[0], head[1]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let id = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let len_ok = match cmd {
            CMD_OPEN => len <= MAX_OPEN_PAYLOAD,
            CMD_DATA => true,
            CMD_FIN | CMD_RST => len == 0,
            CMD_WINDOW | CMD_PING | CMD_PONG => len == 8,
            _ => return Err(FrameError::Command(cmd)),
        };
        if !len_ok {
            return Err(FrameError::Length { cmd, len });
        }
        let session_frame = matches!(cmd, CMD_PING | CMD_PONG);
        if session_frame != (id == 0) {
            return Err(FrameError::StreamId { cmd, id });
        }
        let Some(p) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let frame = match cmd {
            CMD_OPEN => Frame::Open { id, payload: p },
            CMD_DATA => Frame::Data { id, data: p },
            CMD_FIN => Frame::Fin { id },
            CMD_RST => Frame::Rst { id },
            CMD_WINDOW => {
                let v = u64_at(p);
                Frame::Window {
                    id,
                    consumed: (v >> 32) as u32,
                    window: v as u32,
                }
            }
            CMD_PING => Frame::Ping { opaque: u64_at(p) },
            _ => Frame::Pong { opaque: u64_at(p) },
        };
        Ok(Some((frame, HEADER_LEN + len)))
    }

    /// Bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Open { payload, .. } => payload.len(),
                Frame::Data { data, .. } => data.len(),
                Frame::Fin { .. } | Frame::Rst { .. } => 0,
                Frame::Window { .. } | Frame::Ping { .. } | Frame::Pong { .. } => 8,
            }
    }

    /// Appends the frame to `out`. Payloads longer than the 16-bit length field are the
    /// caller's bug and are truncated (the mux never builds them).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let fixed: [u8; 8];
        let (cmd, id, payload): (u8, u32, &[u8]) = match *self {
            Frame::Open { id, payload } => (CMD_OPEN, id, payload),
            Frame::Data { id, data } => (CMD_DATA, id, data),
            Frame::Fin { id } => (CMD_FIN, id, &[]),
            Frame::Rst { id } => (CMD_RST, id, &[]),
            Frame::Window {
                id,
                consumed,
                window,
            } => {
                fixed = ((u64::from(consumed) << 32) | u64::from(window)).to_be_bytes();
                (CMD_WINDOW, id, &fixed)
            }
            Frame::Ping { opaque } => {
                fixed = opaque.to_be_bytes();
                (CMD_PING, 0, &fixed)
            }
            Frame::Pong { opaque } => {
                fixed = opaque.to_be_bytes();
                (CMD_PONG, 0, &fixed)
            }
        };
        encode_parts(cmd, id, [payload, &[]], out);
    }
}

/// Appends a DATA frame whose payload is `parts` in order (a ring buffer's two halves).
/// As with [`Frame::encode`], a payload longer than the length field is truncated.
pub fn encode_data(id: u32, parts: [&[u8]; 2], out: &mut Vec<u8>) {
    encode_parts(CMD_DATA, id, parts, out);
}

fn encode_parts(cmd: u8, id: u32, [a, b]: [&[u8]; 2], out: &mut Vec<u8>) {
    let a = a.get(..MAX_PAYLOAD).unwrap_or(a);
    let b = b.get(..MAX_PAYLOAD - a.len()).unwrap_or(b);
    out.extend_from_slice(&[VERSION, cmd]);
    out.extend_from_slice(&((a.len() + b.len()) as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
}
