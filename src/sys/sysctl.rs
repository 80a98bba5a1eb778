//! Kernel and process limits that cap rawtun's throughput or connection count: socket
//! buffer maxima, the receive backlog, the listen queue and open-file limits. [`check`]
//! compares them with what the configuration needs and returns a [`Warning`] per setting
//! that falls short, each with the current value, the recommended one and the command that
//! fixes it (or `scripts/tune.sh`, which applies them all).

use std::fmt;
use std::fs;

/// Receive backlog per CPU (`net.core.netdev_max_backlog`, default 1000) that absorbs a
/// burst of several thousand packets between softirq runs.
pub const RECOMMENDED_BACKLOG: u64 = 16384;
/// Listen queue length (`net.core.somaxconn`) for SOCKS5 / forward listeners.
pub const RECOMMENDED_SOMAXCONN: u64 = 4096;
/// System-wide open files (`fs.file-max`).
pub const RECOMMENDED_FILE_MAX: u64 = 1 << 20;
/// Open files per process (RLIMIT_NOFILE soft limit; each proxied connection uses two).
pub const RECOMMENDED_NOFILE: u64 = 65536;
/// The script that applies every recommendation.
pub const TUNE_SCRIPT: &str = "scripts/tune.sh";

/// One setting below its recommended value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The sysctl name (`net.core.rmem_max`) or `RLIMIT_NOFILE`.
    pub setting: &'static str,
    /// Its current value.
    pub current: u64,
    /// The smallest value that does not limit rawtun.
    pub recommended: u64,
    /// Why it matters.
    pub reason: String,
    /// A command that fixes it.
    pub fix: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, recommended at least {} ({}); fix: {} (or run {TUNE_SCRIPT})",
            self.setting, self.current, self.recommended, self.reason, self.fix
        )
    }
}

/// The settings that fall short for KCP windows of `rcvwnd_bytes` / `sndwnd_bytes` and a
/// capture buffer of `sockbuf` bytes. Settings that cannot be read are skipped.
pub fn check(rcvwnd_bytes: usize, sndwnd_bytes: usize, sockbuf: usize) -> Vec<Warning> {
    evaluate(
        read_sysctl,
        nofile_limit(),
        rcvwnd_bytes,
        sndwnd_bytes,
        sockbuf,
    )
}

/// [`check`] with the readings passed in: `sysctl(name)` reads a sysctl, `nofile` is the
/// RLIMIT_NOFILE soft limit.
pub(crate) fn evaluate(
    sysctl: impl Fn(&str) -> Option<u64>,
    nofile: Option<u64>,
    rcvwnd_bytes: usize,
    sndwnd_bytes: usize,
    sockbuf: usize,
) -> Vec<Warning> {
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let wanted: [(&'static str, u64, &str); 5] = [
        (
            "net.core.rmem_max",
            bytes(rcvwnd_bytes.max(sockbuf)),
            "caps socket receive buffers below the receive window and capture buffer",
        ),
        (
            "net.core.wmem_max",
            bytes(sndwnd_bytes.max(sockbuf)),
            "caps socket send buffers below the send window",
        ),
        (
            "net.core.netdev_max_backlog",
            RECOMMENDED_BACKLOG,
            "packets beyond the backlog are dropped before capture during bursts",
        ),
        (
            "net.core.somaxconn",
            RECOMMENDED_SOMAXCONN,
            "connection bursts overflow the listen queue of SOCKS5 and forward listeners",
        ),
        (
            "fs.file-max",
            RECOMMENDED_FILE_MAX,
            "the system runs out of file descriptors under many connections",
        ),
    ];
    let mut warnings: Vec<Warning> = wanted
        .into_iter()
        .filter_map(|(setting, recommended, reason)| {
            let current = sysctl(setting)?;
            (current < recommended).then(|| Warning {
                setting,
                current,
                recommended,
                reason: reason.to_owned(),
                fix: format!("sysctl -w {setting}={recommended}"),
            })
        })
        .collect();
    if let Some(current) = nofile.filter(|&n| n < RECOMMENDED_NOFILE) {
        warnings.push(Warning {
            setting: "RLIMIT_NOFILE",
            current,
            recommended: RECOMMENDED_NOFILE,
            reason: "each proxied connection uses two file descriptors".to_owned(),
            fix: format!(
                "ulimit -n {RECOMMENDED_NOFILE} before starting, or LimitNOFILE={RECOMMENDED_NOFILE} in the systemd unit"
            ),
        });
    }
    warnings
}

/// Reads `/proc/sys/a/b/c` for `a.b.c`; the first number of the file.
fn read_sysctl(name: &str) -> Option<u64> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    parse_value(&fs::read_to_string(path).ok()?)
}

/// The first whitespace-separated number of a /proc/sys file.
pub(crate) fn parse_value(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The soft RLIMIT_NOFILE of this process (`None` if getrlimit fails).
pub fn nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed rlimit for getrlimit(2) to fill;
    // RLIMIT_NOFILE is a valid resource, and the return value is checked.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn readings(values: &[(&str, u64)]) -> impl Fn(&str) -> Option<u64> {
        let map: HashMap<String, u64> = values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        move |name| map.get(name).copied()
    }

    #[test]
    fn defaults_of_a_stock_kernel_warn() {
        let sysctl = readings(&[
            ("net.core.rmem_max", 212_992),
            ("net.core.wmem_max", 212_992),
            ("net.core.netdev_max_backlog", 1000),
            ("net.core.somaxconn", 4096),
            ("fs.file-max", 9_223_372_036_854_775_807),
        ]);
        let warnings = evaluate(sysctl, Some(1024), 8 << 20, 4 << 20, 4 << 20);
        let names: Vec<&str> = warnings.iter().map(|w| w.setting).collect();
        assert_eq!(
            names,
            [
                "net.core.rmem_max",
                "net.core.wmem_max",
                "net.core.netdev_max_backlog",
                "RLIMIT_NOFILE"
            ]
        );
        assert_eq!(warnings[0].current, 212_992);
        assert_eq!(warnings[0].recommended, 8 << 20);
        assert_eq!(warnings[0].fix, "sysctl -w net.core.rmem_max=8388608");
        assert_eq!(warnings[1].recommended, 4 << 20, "max(sndwnd, sockbuf)");
        assert!(warnings[3].fix.starts_with("ulimit -n 65536"));
        assert!(warnings[2]
            .to_string()
            .starts_with("net.core.netdev_max_backlog is 1000, recommended at least 16384 ("));
        assert!(warnings[2]
            .to_string()
            .ends_with("(or run scripts/tune.sh)"));
    }

    #[test]
    fn tuned_or_unreadable_settings_do_not_warn() {
        let sysctl = readings(&[
            ("net.core.rmem_max", 64 << 20),
            ("net.core.wmem_max", 64 << 20),
            ("net.core.netdev_max_backlog", 250_000),
            ("fs.file-max", 2 << 20),
        ]);
        assert_eq!(
            evaluate(sysctl, Some(1 << 20), 8 << 20, 8 << 20, 4 << 20),
            []
        );
        assert_eq!(evaluate(|_| None, None, 8 << 20, 8 << 20, 4 << 20), []);
    }

    #[test]
    fn sockbuf_raises_the_recommendation() {
        let sysctl = readings(&[("net.core.rmem_max", 8 << 20)]);
        let warnings = evaluate(sysctl, None, 1 << 20, 1 << 20, 16 << 20);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].recommended, 16 << 20);
    }

    #[test]
    fn proc_values() {
        assert_eq!(parse_value("212992\n"), Some(212_992));
        assert_eq!(parse_value("4096\t16384\t4194304\n"), Some(4096));
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("x\n"), None);
    }

    #[test]
    fn live_readings_parse() {
        // This machine's /proc/sys is readable; the soft limit is positive.
        assert!(read_sysctl("net.core.somaxconn").is_some());
        assert!(nofile_limit().is_some_and(|n| n > 0));
    }
}
