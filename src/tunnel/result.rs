//! [`ConnectResult`]: the server's answer to an open request (layout in the module doc of
//! [`crate::tunnel`]).

use super::{HeaderError, VERSION};

/// Outcome of the server's attempt to reach the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectResult {
    /// Connected; data flows.
    Ok,
    /// The target actively refused the connection.
    Refused,
    /// No route to the target, or its name did not resolve.
    Unreachable,
    /// The target did not answer in time.
    Timeout,
    /// The server's policy forbids the target.
    Denied,
    /// Any other failure.
    Failure,
}

impl ConnectResult {
    /// Size of the encoded result.
    pub const ENCODED_LEN: usize = 2;

    fn code(self) -> u8 {
        match self {
            ConnectResult::Ok => 0,
            ConnectResult::Refused => 1,
            ConnectResult::Unreachable => 2,
            ConnectResult::Timeout => 3,
            ConnectResult::Denied => 4,
            ConnectResult::Failure => 5,
        }
    }

    /// The two header bytes: version, result.
    pub fn encode(self) -> [u8; Self::ENCODED_LEN] {
        [VERSION, self.code()]
    }

    /// Parses a result that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<ConnectResult, HeaderError> {
        let code = match bytes {
            [version, ..] if *version != VERSION => return Err(HeaderError::Version(*version)),
            [_, code] => *code,
            [] | [_] => return Err(HeaderError::Truncated),
            [_, _, rest @ ..] => return Err(HeaderError::Trailing(rest.len())),
        };
        Ok(match code {
            0 => ConnectResult::Ok,
            1 => ConnectResult::Refused,
            2 => ConnectResult::Unreachable,
            3 => ConnectResult::Timeout,
            4 => ConnectResult::Denied,
            5 => ConnectResult::Failure,
            other => return Err(HeaderError::Result(other)),
        })
    }

    /// The SOCKS5 reply code for this result (RFC 1928 §6): succeeded (0), connection
    /// refused (5), host unreachable (4), TTL expired (6, the closest code for a timeout),
    /// connection not allowed by ruleset (2), general failure (1).
    pub fn socks5_reply_code(self) -> u8 {
        match self {
            ConnectResult::Ok => 0,
            ConnectResult::Refused => 5,
            ConnectResult::Unreachable => 4,
            ConnectResult::Timeout => 6,
            ConnectResult::Denied => 2,
            ConnectResult::Failure => 1,
        }
    }
}
