//! Text forms of the emulator's settings, as the `rawtun-linkemu` command line takes them:
//! probabilities (`2%`, `0.02`), durations (`250us`, `100ms`, `1.5s`, `2m`), rates
//! (`800kbit`, `50mbit`, `1gbit`, plain bit/s), queue bounds (`100ms` or `64kb`), the four
//! Gilbert–Elliott probabilities and blackout windows (`START+DURATION`).

use std::time::Duration;

use super::{Blackout, GilbertElliott, QueueLimit};

/// Why a setting did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a probability in `[0, 1]` (`2%` or `0.02`).
    #[error("`{0}` is not a probability (expected e.g. `2%` or `0.02`, between 0 and 1)")]
    Probability(String),
    /// Not a duration with a unit.
    #[error("`{0}` is not a duration (expected e.g. `250us`, `100ms`, `1.5s`, `2m`)")]
    Duration(String),
    /// Not a rate with a unit.
    #[error("`{0}` is not a rate (expected e.g. `800kbit`, `50mbit`, `1gbit`)")]
    Rate(String),
    /// Not a queue bound.
    #[error("`{0}` is not a queue bound (expected a duration like `100ms` or a size like `64kb`)")]
    Queue(String),
    /// Not four comma-separated probabilities.
    #[error("`{0}` is not P_GB,P_BG,LOSS_GOOD,LOSS_BAD (four probabilities)")]
    GilbertElliott(String),
    /// Not `START+DURATION`.
    #[error("`{0}` is not a blackout window START+DURATION (e.g. `10s+20s`)")]
    Blackout(String),
}

/// Splits `text` into a number and its (lower-cased) unit suffix.
fn split_unit(text: &str) -> Option<(f64, String)> {
    let text = text.trim();
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value, unit.trim().to_ascii_lowercase()))
}

/// `2%` → 0.02; `0.02` → 0.02.
pub fn parse_probability(text: &str) -> Result<f64, ParseError> {
    let err = || ParseError::Probability(text.into());
    let (value, unit) = split_unit(text).ok_or_else(err)?;
    let p = match unit.as_str() {
        "%" => value / 100.0,
        "" => value,
        _ => return Err(err()),
    };
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(err())
    }
}

/// `100ms`, `1.5s`, `250us`, `2m`; a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let err = || ParseError::Duration(text.into());
    let (value, unit) = split_unit(text).ok_or_else(err)?;
    let seconds = match unit.as_str() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "" if value == 0.0 => 0.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| err())
}

/// Rate in bit/s: `800kbit`, `50mbit`, `1gbit`, `1000000` (bit/s). Zero is refused.
pub fn parse_rate(text: &str) -> Result<u64, ParseError> {
    let err = || ParseError::Rate(text.into());
    let (value, unit) = split_unit(text).ok_or_else(err)?;
    let scale = match unit.as_str() {
        "" | "bit" | "bps" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return Err(err()),
    };
    let bits = (value * scale).round();
    if bits >= 1.0 && bits < u64::MAX as f64 {
        Ok(bits as u64)
    } else {
        Err(err())
    }
}

/// A queue bound: a duration (`100ms`) or a size (`64kb` = 64 000 bytes, `64kib`, `1mb`,
/// `1500b`).
pub fn parse_queue(text: &str) -> Result<QueueLimit, ParseError> {
    if let Ok(d) = parse_duration(text) {
        return Ok(QueueLimit::Time(d));
    }
    let err = || ParseError::Queue(text.into());
    let (value, unit) = split_unit(text).ok_or_else(err)?;
    let scale = match unit.as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = (value * scale).round();
    if bytes < u64::MAX as f64 {
        Ok(QueueLimit::Bytes(bytes as u64))
    } else {
        Err(err())
    }
}

/// `P_GB,P_BG,LOSS_GOOD,LOSS_BAD`, each a probability (`1%,30%,0,100%`).
pub fn parse_gilbert_elliott(text: &str) -> Result<GilbertElliott, ParseError> {
    let err = || ParseError::GilbertElliott(text.into());
    let parts = text
        .split(',')
        .map(parse_probability)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err())?;
    match parts[..] {
        [p_good_bad, p_bad_good, loss_good, loss_bad] => Ok(GilbertElliott {
            p_good_bad,
            p_bad_good,
            loss_good,
            loss_bad,
        }),
        _ => Err(err()),
    }
}

/// `START+DURATION`, both durations from the emulator's start (`10s+20s`).
pub fn parse_blackout(text: &str) -> Result<Blackout, ParseError> {
    let err = || ParseError::Blackout(text.into());
    let (start, duration) = text.split_once('+').ok_or_else(err)?;
    Ok(Blackout {
        start: parse_duration(start).map_err(|_| err())?,
        duration: parse_duration(duration).map_err(|_| err())?,
    })
}
