//! TCP header (RFC 9293 §3.1) with the options the fake-TCP layer uses: MSS (RFC 9293
//! §3.2), Window Scale and Timestamps (RFC 7323 §2.2, §3.2), SACK-Permitted (RFC 2018 §2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |     |N|C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsv |S|W|C|R|C|S|S|Y|I|            Window             |
//! |       |     | |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (Data Offset > 5)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Options: EOL (0) | NOP (1) | kind, length (≥ 2, covering kind and length), data:
//!   MSS  02 04 mss(2)          WS 03 03 shift(1)          SACK-Permitted 04 02
//!   Timestamps 08 0a TSval(4) TSecr(4)
//! Emit order (Linux's): MSS, SACK-Perm+TS / NOP NOP TS / NOP NOP SACK-Perm, NOP WS.
//! ```
//!
//! The checksum covers a pseudo-header (see [`super::checksum`]), the header and the payload.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use super::{checksum, Error, Field, Result};

/// Byte ranges of the TCP header.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Field = 4..8;
    /// Acknowledgment number.
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high nibble), reserved bits and the NS/AE bit.
    pub const DATA_OFF: usize = 12;
    /// The eight classic flag bits.
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: Field = 14..16;
    /// Checksum.
    pub const CHECKSUM: Field = 16..18;
    /// Urgent pointer.
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const TIMESTAMPS: u8 = 8;
}

/// The eight TCP flag bits (byte 13 of the header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flags.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// PSH|ACK, paqet's default for data segments.
    pub const PSH_ACK: TcpFlags = TcpFlags(0x18);
    /// SYN|ACK.
    pub const SYN_ACK: TcpFlags = TcpFlags(0x12);

    /// Letters in display order, with their bits.
    const LETTERS: [(char, u8); 8] = [
        ('F', 0x01),
        ('S', 0x02),
        ('R', 0x04),
        ('P', 0x08),
        ('A', 0x10),
        ('U', 0x20),
        ('E', 0x40),
        ('C', 0x80),
    ];

    /// Parses paqet's flag letters (`"PA"`, `"S"`, `"FA"`...): F=FIN S=SYN R=RST P=PSH
    /// A=ACK U=URG E=ECE C=CWR; `N` (the NS bit, outside the 8-bit field) is accepted and
    /// ignored. Letters may come in any order and either case; an empty string is no flags.
    pub fn parse_letters(s: &str) -> Result<TcpFlags> {
        let mut bits = 0u8;
        for ch in s.chars() {
            let ch = ch.to_ascii_uppercase();
            if ch == 'N' {
                continue;
            }
            let (_, bit) = Self::LETTERS
                .iter()
                .find(|(l, _)| *l == ch)
                .ok_or(Error::Malformed(
                    "unknown TCP flag letter (expected FSRPAUECN)",
                ))?;
            bits |= bit;
        }
        Ok(TcpFlags(bits))
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any bit of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & !other.0)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for TcpFlags {
    /// Letters in the order `FSRPAUEC` (so PSH|ACK shows as `PA`); no flags shows as nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, bit) in Self::LETTERS {
            if self.0 & bit != 0 {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// The TCP options this layer reads and writes. Unknown options are skipped on parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2).
    pub mss: Option<u16>,
    /// Window scale shift count (kind 3), as sent (RFC 7323 caps its use at 14).
    pub window_scale: Option<u8>,
    /// SACK-Permitted (kind 4).
    pub sack_permitted: bool,
    /// Timestamps (kind 8): (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    /// Parses the options area of a header (bytes 20..data offset × 4).
    pub fn parse(mut rest: &[u8]) -> Result<TcpOptions> {
        let mut opts = TcpOptions::default();
        while let Some((&k, after_kind)) = rest.split_first() {
            match k {
                kind::EOL => break,
                kind::NOP => {
                    rest = after_kind;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(
                *after_kind
                    .first()
                    .ok_or(Error::Malformed("TCP option without length"))?,
            );
            if len < 2 {
                return Err(Error::Malformed("TCP option length below 2"));
            }
            let option = rest
                .get(..len)
                .ok_or(Error::Malformed("TCP option runs past the header"))?;
            let data = option.get(2..).unwrap_or_default();
            match k {
                kind::MSS => match *data {
                    [a, b] => opts.mss = Some(u16::from_be_bytes([a, b])),
                    _ => return Err(Error::Malformed("TCP MSS option length")),
                },
                kind::WINDOW_SCALE => match *data {
                    [shift] => opts.window_scale = Some(shift),
                    _ => return Err(Error::Malformed("TCP window scale option length")),
                },
                kind::SACK_PERMITTED => {
                    if !data.is_empty() {
                        return Err(Error::Malformed("TCP SACK-permitted option length"));
                    }
                    opts.sack_permitted = true;
                }
                kind::TIMESTAMPS => match *data {
                    [a, b, c, d, e, f, g, h] => {
                        opts.timestamp = Some((
                            u32::from_be_bytes([a, b, c, d]),
                            u32::from_be_bytes([e, f, g, h]),
                        ))
                    }
                    _ => return Err(Error::Malformed("TCP timestamps option length")),
                },
                _ => {}
            }
            rest = rest.get(len..).unwrap_or_default();
        }
        Ok(opts)
    }

    /// Bytes `emit` writes (a multiple of 4, at most 20).
    pub const fn buffer_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamp.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    /// Writes the options into `buf`, which must be exactly `buffer_len()` long.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            put(&[kind::MSS, 4, a, b]);
        }
        match (self.sack_permitted, self.timestamp) {
            (sack, Some((val, ecr))) => {
                if sack {
                    put(&[kind::SACK_PERMITTED, 2]);
                } else {
                    put(&[kind::NOP, kind::NOP]);
                }
                put(&[kind::TIMESTAMPS, 10]);
                put(&val.to_be_bytes());
                put(&ecr.to_be_bytes());
            }
            (true, None) => put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[kind::NOP, kind::WINDOW_SCALE, 3, shift]);
        }
    }
}

/// Zero-copy view of a TCP segment (header and payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer, checking the data offset and that the header fits.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.header_len() < HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5"));
        }
        if p.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn u32_at(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight flag bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window.
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// The options area.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True when the checksum verifies, given the pseudo-header's partial sum.
    pub fn verify_checksum(&self, pseudo_header: u64) -> bool {
        checksum::is_valid(checksum::add(
            pseudo_header,
            checksum::sum(self.buffer.as_ref()),
        ))
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload after the header.
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        b.get(self.header_len()..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and stores the checksum over the whole buffer (header and payload).
    pub fn fill_checksum(&mut self, pseudo_header: u64) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let s = checksum::add(pseudo_header, checksum::sum(self.buffer.as_ref()));
        let c = !checksum::fold(s);
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// High-level description of a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Reads a checked segment: verifies the checksum against `pseudo_header` (the partial
    /// sum from [`checksum::pseudo_header_v4`] / [`checksum::pseudo_header_v6`]) and parses
    /// the options.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, pseudo_header: u64) -> Result<TcpRepr> {
        if !p.verify_checksum(pseudo_header) {
            return Err(Error::Checksum);
        }
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            options: TcpOptions::parse(p.options())?,
        })
    }

    /// Header bytes `emit` writes (20 plus options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Writes the header into the start of the segment buffer, with the checksum field
    /// zero; call [`Packet::fill_checksum`] once the payload is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let hl = self.buffer_len();
        let b = p.buffer.as_mut();
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::SEQ_NUM].copy_from_slice(&self.seq.to_be_bytes());
        b[field::ACK_NUM].copy_from_slice(&self.ack.to_be_bytes());
        // `hl` is at most 40, so the data offset fits in the high nibble.
        b[field::DATA_OFF] = ((hl / 4) as u8) << 4;
        b[field::FLAGS] = self.flags.0;
        b[field::WINDOW].copy_from_slice(&self.window.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        b[field::URGENT].copy_from_slice(&[0, 0]);
        self.options.emit(&mut b[HEADER_LEN..hl]);
    }
}
