//! `transport`: KCP settings with mode presets and window sizing, session timeouts, and
//! their validation from the raw YAML structs.

use std::fmt;
use std::time::Duration;

use super::raw::{RawKcp, RawTimeouts, RawTransport, Switch};
use super::validate::{ranged, ranged_or, Ctx};
use super::{ConfigError, DEFAULT_MTU, DEFAULT_SMUXBUF, DEFAULT_STREAMBUF, DEFAULT_WINDOW};
use crate::crypto::Cipher;

/// `transport`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    /// Reliability protocol.
    pub protocol: TransportProtocol,
    /// Parallel KCP sessions per client (1–256).
    pub conn: u16,
    /// KCP settings.
    pub kcp: Kcp,
    /// Session timers.
    pub timeouts: Timeouts,
}

/// `transport.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportProtocol {
    /// KCP + stream multiplexer.
    Kcp,
}

/// `transport.kcp.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcpMode {
    /// nodelay 0, interval 40, resend 2, nocongestion 1.
    Normal,
    /// nodelay 0, interval 30, resend 2, nocongestion 1 (default).
    Fast,
    /// nodelay 1, interval 20, resend 2, nocongestion 1.
    Fast2,
    /// nodelay 1, interval 10, resend 2, nocongestion 1.
    Fast3,
    /// Values given one by one; missing ones come from `fast`.
    Manual,
}

/// The four KCP knobs a mode sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KcpPreset {
    /// KCP nodelay.
    pub nodelay: bool,
    /// Internal update interval in ms.
    pub interval_ms: u32,
    /// Fast-resend threshold in duplicate ACKs (0 = off).
    pub resend: u32,
    /// Disable congestion control.
    pub nocongestion: bool,
}

impl KcpMode {
    /// The preset values of this mode (`manual` uses `fast`'s).
    pub fn preset(self) -> KcpPreset {
        let (nodelay, interval_ms) = match self {
            KcpMode::Normal => (false, 40),
            KcpMode::Fast | KcpMode::Manual => (false, 30),
            KcpMode::Fast2 => (true, 20),
            KcpMode::Fast3 => (true, 10),
        };
        KcpPreset {
            nodelay,
            interval_ms,
            resend: 2,
            nocongestion: true,
        }
    }

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KcpMode::Normal => "normal",
            KcpMode::Fast => "fast",
            KcpMode::Fast2 => "fast2",
            KcpMode::Fast3 => "fast3",
            KcpMode::Manual => "manual",
        }
    }
}

/// `transport.kcp`. `Debug` never shows the key.
#[derive(Clone, PartialEq)]
pub struct Kcp {
    /// The mode named in the file.
    pub mode: KcpMode,
    /// Effective nodelay (explicit value, else preset).
    pub nodelay: bool,
    /// Effective update interval in ms (10–5000).
    pub interval_ms: u32,
    /// Effective fast-resend threshold.
    pub resend: u32,
    /// Effective congestion-control switch.
    pub nocongestion: bool,
    /// Delay flushing writes until the next update.
    pub wdelay: bool,
    /// Send ACKs immediately.
    pub acknodelay: bool,
    /// Cap data in flight at twice the measured bandwidth-delay product (rawtun).
    pub ratecap: bool,
    /// KCP packet size in bytes (50–1500).
    pub mtu: u16,
    /// Receive window in packets (1–32768).
    pub rcvwnd: u16,
    /// Send window in packets (1–32768).
    pub sndwnd: u16,
    /// AEAD selected by `block`.
    pub block: Cipher,
    /// `block` as written (lowercased), for display.
    pub block_name: String,
    /// `key`: the shared secret (see [`super::Auth`], which holds the validated copy).
    pub key: Option<String>,
    /// Per-session receive buffer in bytes (≥ 1024).
    pub smuxbuf: usize,
    /// Per-stream flow-control window in bytes (1024..=smuxbuf).
    pub streambuf: usize,
}

impl fmt::Debug for Kcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kcp")
            .field("mode", &self.mode)
            .field("nodelay", &self.nodelay)
            .field("interval_ms", &self.interval_ms)
            .field("resend", &self.resend)
            .field("nocongestion", &self.nocongestion)
            .field("wdelay", &self.wdelay)
            .field("acknodelay", &self.acknodelay)
            .field("ratecap", &self.ratecap)
            .field("mtu", &self.mtu)
            .field("rcvwnd", &self.rcvwnd)
            .field("sndwnd", &self.sndwnd)
            .field("block", &self.block_name)
            .field("key", &"<redacted>")
            .field("smuxbuf", &self.smuxbuf)
            .field("streambuf", &self.streambuf)
            .finish()
    }
}

impl Kcp {
    /// Throughput ceilings in bit/s that the windows impose on one path of round-trip
    /// time `rtt`: `(kcp, stream)` where kcp = min(sndwnd, rcvwnd) × mtu × 8 / rtt (one
    /// session) and stream = streambuf × 8 / rtt (one stream). A zero RTT gives `u64::MAX`.
    pub fn window_cap_bps(&self, rtt: Duration) -> (u64, u64) {
        let nanos = rtt.as_nanos();
        if nanos == 0 {
            return (u64::MAX, u64::MAX);
        }
        let per_rtt = |bytes: u128| {
            let bps = bytes * 8 * 1_000_000_000 / nanos;
            u64::try_from(bps).unwrap_or(u64::MAX)
        };
        let window = u128::from(self.sndwnd.min(self.rcvwnd));
        (
            per_rtt(window * u128::from(self.mtu)),
            per_rtt(self.streambuf as u128),
        )
    }
}

/// `transport.timeouts`, all whole seconds in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Interval between keepalive frames on an idle session.
    pub keepalive: Duration,
    /// A session with no packet from the peer for this long is dead.
    pub idle: Duration,
    /// Server: time limit for connecting to a target.
    pub dial: Duration,
    /// Time limit for the Noise handshake.
    pub handshake: Duration,
}

pub(super) fn transport(ctx: &Ctx, raw: Option<RawTransport>) -> Result<Transport, ConfigError> {
    let raw = raw.unwrap_or_default();
    let protocol = match raw.protocol.as_deref() {
        None | Some("kcp") => TransportProtocol::Kcp,
        Some("quic") => {
            return Err(ctx.err("transport.protocol", "quic is not supported yet"));
        }
        Some(other) => {
            let msg = format!("{other:?} is not one of kcp, quic");
            return Err(ctx.err("transport.protocol", msg));
        }
    };
    let conn = match raw.conn {
        Some(v) => ranged(ctx, "transport.conn", v, 1, 256)?,
        None => 1,
    };
    Ok(Transport {
        protocol,
        conn,
        kcp: kcp(ctx, raw.kcp.unwrap_or_default())?,
        timeouts: timeouts(ctx, raw.timeouts.unwrap_or_default())?,
    })
}

fn switch(ctx: &Ctx, field: &str, v: Option<Switch>) -> Result<Option<bool>, ConfigError> {
    match v {
        None => Ok(None),
        Some(Switch(0)) => Ok(Some(false)),
        Some(Switch(1)) => Ok(Some(true)),
        Some(Switch(n)) => Err(ctx.err(field, format!("{n} is not 0 or 1"))),
    }
}

fn kcp(ctx: &Ctx, raw: RawKcp) -> Result<Kcp, ConfigError> {
    const F: &str = "transport.kcp";
    let mode = match raw.mode.as_deref() {
        None | Some("fast") => KcpMode::Fast,
        Some("normal") => KcpMode::Normal,
        Some("fast2") => KcpMode::Fast2,
        Some("fast3") => KcpMode::Fast3,
        Some("manual") => KcpMode::Manual,
        Some(other) => {
            let msg = format!("{other:?} is not one of normal, fast, fast2, fast3, manual");
            return Err(ctx.err(&format!("{F}.mode"), msg));
        }
    };
    let preset = mode.preset();
    for (name, v) in [("dshard", raw.dshard), ("pshard", raw.pshard)] {
        if v.is_some_and(|v| v != 0) {
            let msg = "FEC (dshard/pshard) is not supported yet; set 0";
            return Err(ctx.err(&format!("{F}.{name}"), msg));
        }
    }
    let block_name = raw.block.unwrap_or_else(|| "aes".to_owned()).to_lowercase();
    let block = Cipher::from_block_name(&block_name)
        .map_err(|e| ctx.err(&format!("{F}.block"), e.to_string()))?;
    let key = match raw.key {
        Some(k) if !k.trim().is_empty() => Some(k),
        Some(_) => return Err(ctx.err(&format!("{F}.key"), "must not be empty")),
        None => None,
    };
    let field = |name: &str| format!("{F}.{name}");
    let mtu = ranged_or(ctx, &field("mtu"), raw.mtu, 50, 1500, DEFAULT_MTU)?;
    let rcvwnd = ranged_or(ctx, &field("rcvwnd"), raw.rcvwnd, 1, 32768, DEFAULT_WINDOW)?;
    let sndwnd = ranged_or(ctx, &field("sndwnd"), raw.sndwnd, 1, 32768, DEFAULT_WINDOW)?;
    let interval = raw.interval;
    let interval_ms = ranged_or(
        ctx,
        &field("interval"),
        interval,
        10,
        5000,
        preset.interval_ms,
    )?;
    let max_resend = i64::from(u32::MAX);
    let resend = ranged_or(
        ctx,
        &field("resend"),
        raw.resend,
        0,
        max_resend,
        preset.resend,
    )?;
    const GIB: i64 = 1 << 30;
    let smuxbuf = ranged_or(
        ctx,
        &field("smuxbuf"),
        raw.smuxbuf,
        1024,
        GIB,
        DEFAULT_SMUXBUF,
    )?;
    // A stream window larger than the session buffer could never be used (smux refuses it).
    let max_stream = i64::try_from(smuxbuf).unwrap_or(GIB);
    let default_stream = DEFAULT_STREAMBUF.min(smuxbuf);
    let streambuf = ranged_or(
        ctx,
        &field("streambuf"),
        raw.streambuf,
        1024,
        max_stream,
        default_stream,
    )?;
    Ok(Kcp {
        mode,
        nodelay: switch(ctx, &format!("{F}.nodelay"), raw.nodelay)?.unwrap_or(preset.nodelay),
        interval_ms,
        resend,
        nocongestion: switch(ctx, &format!("{F}.nocongestion"), raw.nocongestion)?
            .unwrap_or(preset.nocongestion),
        wdelay: raw.wdelay.unwrap_or(false),
        acknodelay: raw.acknodelay.unwrap_or(true),
        ratecap: raw.ratecap.unwrap_or(true),
        mtu,
        rcvwnd,
        sndwnd,
        block,
        block_name,
        key,
        smuxbuf,
        streambuf,
    })
}

fn timeouts(ctx: &Ctx, raw: RawTimeouts) -> Result<Timeouts, ConfigError> {
    const F: &str = "transport.timeouts";
    let secs = |name: &str, v: Option<i64>, lo: i64, hi: i64, default: u64| {
        ranged_or(ctx, &format!("{F}.{name}"), v, lo, hi, default)
    };
    let keepalive = secs("keepalive", raw.keepalive, 1, 600, 10)?;
    let idle = secs("idle", raw.idle, 30, 86_400, 60.max(3 * keepalive))?;
    if idle <= 2 * keepalive {
        let field = if raw.idle.is_some() {
            "idle"
        } else {
            "keepalive"
        };
        let msg = format!("idle ({idle} s) must be more than 2 × keepalive ({keepalive} s)");
        return Err(ctx.err(&format!("{F}.{field}"), msg));
    }
    Ok(Timeouts {
        keepalive: Duration::from_secs(keepalive),
        idle: Duration::from_secs(idle),
        dial: Duration::from_secs(secs("dial", raw.dial, 1, 600, 10)?),
        handshake: Duration::from_secs(secs("handshake", raw.handshake, 1, 600, 10)?),
    })
}
