//! The KCP segment header: parse and emit.
//!
//! rawtun keeps the classic KCP segment layout (skywind3000/kcp, `ikcp.c`, "protocol" section
//! of its README; there is no RFC), little-endian, 24 bytes, followed by `len` data bytes. One
//! packet carries one or more segments back to back.
//!
//! ```text
//!  0               4       5       6               8
//! +---------------+-------+-------+---------------+
//! |     conv      |  cmd  |  frg  |      wnd      |   conv: conversation id
//! +---------------+-------+-------+---------------+   cmd:  81 PUSH, 82 ACK,
//! |      ts       |              sn               |         83 WASK, 84 WINS
//! +---------------+-------------------------------+   frg:  0 (stream mode)
//! |      una      |              len              |   wnd:  free receive window
//! +---------------+-------------------------------+         (segments)
//! |            data (len bytes, PUSH only)        |   ts:   sender's clock (ms);
//! +-----------------------------------------------+         ACKs echo the PUSH's ts
//!                                                     sn:   segment number
//!                                                     una:  next sn the sender expects
//! ```

use super::KcpError;

/// Length of a segment header.
pub const HEADER_LEN: usize = 24;

/// Segment commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Data.
    Push,
    /// Acknowledges one segment (`sn`, echoing its `ts`).
    Ack,
    /// Window probe: asks the peer to report its window.
    WindowAsk,
    /// Window report.
    WindowTell,
}

impl Command {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Command::Push => 81,
            Command::Ack => 82,
            Command::WindowAsk => 83,
            Command::WindowTell => 84,
        }
    }

    /// Parses a wire value.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            81 => Some(Command::Push),
            82 => Some(Command::Ack),
            83 => Some(Command::WindowAsk),
            84 => Some(Command::WindowTell),
            _ => None,
        }
    }
}

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Conversation id.
    pub conv: u32,
    /// Command.
    pub cmd: Command,
    /// Fragment count (always 0 in stream mode; ignored on input).
    pub frg: u8,
    /// Free receive window of the sender, in segments.
    pub wnd: u16,
    /// Timestamp (ms, wrapping).
    pub ts: u32,
    /// Segment number.
    pub sn: u32,
    /// First segment number the sender has not received.
    pub una: u32,
    /// Data length.
    pub len: u32,
}

fn u32_at(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl SegmentHeader {
    /// Parses the segment at the start of `buf`, returning the header and its data.
    pub fn parse(buf: &[u8]) -> Result<(SegmentHeader, &[u8]), KcpError> {
        let head: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(KcpError::TooShort(buf.len()))?;
        let cmd = Command::from_code(head[4]).ok_or(KcpError::UnknownCommand(head[4]))?;
        let hdr = SegmentHeader {
            conv: u32_at(head, 0),
            cmd,
            frg: head[5],
            wnd: u16::from_le_bytes([head[6], head[7]]),
            ts: u32_at(head, 8),
            sn: u32_at(head, 12),
            una: u32_at(head, 16),
            len: u32_at(head, 20),
        };
        let rest = &buf[HEADER_LEN..];
        let data = usize::try_from(hdr.len)
            .ok()
            .and_then(|n| rest.get(..n))
            .ok_or(KcpError::Truncated {
                claimed: hdr.len,
                available: rest.len(),
            })?;
        Ok((hdr, data))
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut head = [0u8; HEADER_LEN];
        self.write(&mut head);
        out.extend_from_slice(&head);
    }

    /// Writes the header into `out`, which is [`HEADER_LEN`] bytes long.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&self.conv.to_le_bytes());
        out[4] = self.cmd.code();
        out[5] = self.frg;
        out[6..8].copy_from_slice(&self.wnd.to_le_bytes());
        out[8..12].copy_from_slice(&self.ts.to_le_bytes());
        out[12..16].copy_from_slice(&self.sn.to_le_bytes());
        out[16..20].copy_from_slice(&self.una.to_le_bytes());
        out[20..24].copy_from_slice(&self.len.to_le_bytes());
    }
}
