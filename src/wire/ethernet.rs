//! Ethernet II framing (RFC 894) with an optional 802.1Q VLAN tag on parse.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Destination MAC (6 bytes)                    |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                     Source MAC (6 bytes)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  EtherType (0x0800 / 0x86DD) |  payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! with 802.1Q: EtherType = 0x8100, then TCI (2 bytes), then the inner EtherType.
//! ```

use super::{Error, Field, Result};

/// Byte ranges of the Ethernet header.
pub mod field {
    use super::Field;
    /// Destination MAC address.
    pub const DESTINATION: Field = 0..6;
    /// Source MAC address.
    pub const SOURCE: Field = 6..12;
    /// EtherType (or the 802.1Q TPID).
    pub const ETHERTYPE: Field = 12..14;
    /// 802.1Q tag control information, when tagged.
    pub const VLAN_TCI: Field = 14..16;
    /// EtherType behind an 802.1Q tag.
    pub const VLAN_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values used here.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
}

/// Zero-copy view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checks; accessors may panic if it is shorter than the header.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer, checking it holds the whole header (including a VLAN tag if present).
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Frame { buffer };
        let len = frame.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if len < frame.header_len() {
            return Err(Error::Truncated);
        }
        Ok(frame)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    /// The outer EtherType field (0x8100 when VLAN-tagged).
    pub fn outer_ethertype(&self) -> u16 {
        self.u16_at(field::ETHERTYPE)
    }

    /// True when the frame carries an 802.1Q tag.
    pub fn is_vlan_tagged(&self) -> bool {
        self.outer_ethertype() == ethertype::VLAN
    }

    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        if self.is_vlan_tagged() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The VLAN tag control information, when tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_vlan_tagged().then(|| self.u16_at(field::VLAN_TCI))
    }

    /// The EtherType of the payload (behind the VLAN tag, if any).
    pub fn ethertype(&self) -> u16 {
        if self.is_vlan_tagged() {
            self.u16_at(field::VLAN_ETHERTYPE)
        } else {
            self.outer_ethertype()
        }
    }
}

impl<'a> Frame<&'a [u8]> {
    /// The bytes after the header (and VLAN tag).
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        b.get(self.header_len()..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&a);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&a);
    }

    /// Sets the outer EtherType field.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }
}

/// High-level description of an Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src_addr: [u8; 6],
    /// Destination MAC address.
    pub dst_addr: [u8; 6],
    /// EtherType of the payload (inner one when VLAN-tagged).
    pub ethertype: u16,
    /// 802.1Q tag control information seen on parse (never emitted).
    pub vlan_tci: Option<u16>,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<EthernetRepr> {
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
            vlan_tci: frame.vlan_tci(),
        })
    }

    /// Bytes `emit` writes: always an untagged 14-byte header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes an untagged header into the first 14 bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}
