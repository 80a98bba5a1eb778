//! [`ConfigError`]: one error type for loading a config, always naming the file, the line
//! (when known) and the dotted field path, e.g.
//! `configs/x.yaml:23: transport.kcp.mtu: 9000 is out of range 50..=1500`.

use std::fmt;

use super::locate::LineIndex;

/// Why a config file could not be loaded. `Display` is the one-line message for users.
#[derive(Debug)]
pub struct ConfigError {
    /// File name (or other origin) the text came from.
    pub origin: String,
    /// 1-based line of the offending field, when it could be found.
    pub line: Option<usize>,
    /// Dotted field path (`transport.kcp.mtu`, `socks5[0].listen`); empty when the error
    /// is not about one field (unreadable file, YAML syntax).
    pub field: String,
    /// What is wrong, without the location.
    pub message: String,
    source: Option<std::io::Error>,
}

impl ConfigError {
    pub(super) fn new(
        origin: &str,
        line: Option<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            origin: origin.to_owned(),
            line,
            field: field.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    pub(super) fn io(origin: &str, err: std::io::Error) -> Self {
        ConfigError {
            origin: origin.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {err}"),
            source: Some(err),
        }
    }

    /// Converts a serde_yaml_ng error (syntax, unknown field, wrong type) using the line
    /// index of the same text to name the field at the reported line.
    pub(super) fn from_yaml(origin: &str, index: &LineIndex, err: &serde_yaml_ng::Error) -> Self {
        let line = err.location().map(|l| l.line());
        let mut text = err.to_string();
        if let Some(loc) = err.location() {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = text.strip_suffix(&suffix) {
                text = stripped.to_owned();
            }
        }
        // serde_yaml_ng prefixes the path of the enclosing mapping: `transport.kcp: msg`.
        let (serde_path, message) = match text.split_once(": ") {
            Some((p, m)) if !p.is_empty() && !p.contains([' ', '`', '"']) => {
                (p.to_owned(), m.to_owned())
            }
            _ => (String::new(), text),
        };
        let message = message
            .replace("expected i64", "expected an integer")
            .replace("expected u16", "expected an integer");
        // A duplicate key is reported at its mapping's start: point at the second copy.
        if let Some(name) = message
            .strip_prefix("duplicate field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let field = if serde_path.is_empty() {
                name.to_owned()
            } else {
                format!("{serde_path}.{name}")
            };
            let line = index.last_line_of(&field).or(line);
            return ConfigError::new(origin, line, &field, "appears twice");
        }
        let field = line
            .and_then(|l| index.path_at(l))
            .map(str::to_owned)
            .unwrap_or(serde_path);
        ConfigError::new(origin, line, &field, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
