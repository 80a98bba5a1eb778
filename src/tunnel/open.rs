//! [`OpenRequest`]: the header a client sends to open a tunnel stream (layout in the
//! module doc of [`crate::tunnel`]).

use super::target::{address_len, read_address, write_address, Reader, Target};
use super::{HeaderError, VERSION};

const PROTOCOL_TCP: u8 = 1;
const PROTOCOL_UDP: u8 = 2;

/// Transport the server should use towards the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A TCP connection; the stream carries its bytes.
    Tcp,
    /// UDP datagrams to and from the target.
    Udp,
}

/// The stream open header: protocol and target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Where to connect.
    pub target: Target,
}

impl OpenRequest {
    /// Number of bytes [`OpenRequest::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        2 + address_len(&self.target)
    }

    /// Appends the header to `out`.
    ///
    /// A domain that fails [`super::is_valid_domain`] (front ends never build one) is written as an
    /// empty name, which [`OpenRequest::decode`] rejects, so the server refuses the stream
    /// instead of connecting somewhere unintended.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let protocol = match self.protocol {
            Protocol::Tcp => PROTOCOL_TCP,
            Protocol::Udp => PROTOCOL_UDP,
        };
        out.extend_from_slice(&[VERSION, protocol]);
        write_address(&self.target, out);
    }

    /// Parses a header that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<OpenRequest, HeaderError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let protocol = match r.u8()? {
            PROTOCOL_TCP => Protocol::Tcp,
            PROTOCOL_UDP => Protocol::Udp,
            other => return Err(HeaderError::Protocol(other)),
        };
        let target = read_address(&mut r)?;
        if !r.0.is_empty() {
            return Err(HeaderError::Trailing(r.0.len()));
        }
        Ok(OpenRequest { protocol, target })
    }
}
