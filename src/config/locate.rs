//! A small line scanner over block-style YAML that maps dotted field paths
//! (`transport.kcp.mtu`, `socks5[0].listen`) to 1-based line numbers and back.
//!
//! It walks the text by indentation, following `key:` lines and `- ` list items (each item
//! is one nesting level, named `[index]`). It only serves error messages: anything it does
//! not understand (flow mappings, multi-line scalars) is skipped, and a lookup that fails
//! falls back to the nearest enclosing field, or to no line at all.

use std::collections::HashMap;

/// Field path ↔ line table of one YAML text.
#[derive(Debug, Default)]
pub(super) struct LineIndex {
    entries: Vec<(String, usize)>,
}

struct Frame {
    indent: usize,
    path: String,
    item: bool,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut counters: HashMap<String, usize> = HashMap::new();
        let mut block_scalar: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let content = raw[indent..].trim_end();
            if let Some(owner) = block_scalar {
                if content.is_empty() || indent > owner {
                    continue;
                }
                block_scalar = None;
            }
            if content.is_empty()
                || content.starts_with('#')
                || content.starts_with('%')
                || content == "---"
                || content == "..."
            {
                continue;
            }
            let is_item = content == "-" || content.starts_with("- ");
            while let Some(top) = stack.last() {
                let same_level_ends = top.indent == indent && (top.item || !is_item);
                if top.indent > indent || same_level_ends {
                    stack.pop();
                } else {
                    break;
                }
            }
            let mut base = stack.last().map(|f| f.path.clone()).unwrap_or_default();
            let mut col = indent;
            let mut rest = content;
            if is_item {
                let counter = counters.entry(base.clone()).or_insert(0);
                let path = format!("{base}[{counter}]");
                *counter += 1;
                entries.push((path.clone(), line_no));
                stack.push(Frame {
                    indent,
                    path: path.clone(),
                    item: true,
                });
                let after = &content[1..];
                let trimmed = after.trim_start();
                col = indent + 1 + (after.len() - trimmed.len());
                rest = trimmed;
                base = path;
                if rest.is_empty() || rest.starts_with('#') || rest.starts_with('-') {
                    continue;
                }
            }
            if let Some((key, value)) = split_key(rest) {
                let path = if base.is_empty() {
                    key.to_owned()
                } else {
                    format!("{base}.{key}")
                };
                entries.push((path.clone(), line_no));
                let value = value.trim();
                if value.is_empty() || value.starts_with('#') {
                    stack.push(Frame {
                        indent: col,
                        path,
                        item: false,
                    });
                } else if value.starts_with('|') || value.starts_with('>') {
                    block_scalar = Some(col);
                }
            }
        }
        LineIndex { entries }
    }

    /// Line of `path`, or of its nearest recorded ancestor.
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some((_, line)) = self.entries.iter().find(|(e, _)| e == p) {
                return Some(*line);
            }
            p = parent(p)?;
        }
    }

    /// Line of the last occurrence of exactly `path`.
    pub(super) fn last_line_of(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .rev()
            .find(|(e, _)| e == path)
            .map(|(_, l)| *l)
    }

    /// Deepest field path recorded on `line`.
    pub(super) fn path_at(&self, line: usize) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(_, l)| *l == line)
            .map(|(p, _)| p.as_str())
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Splits `key: value` / `key:` (plain or quoted key) into key and the rest.
fn split_key(s: &str) -> Option<(&str, &str)> {
    if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = s[1..].find(q)? + 1;
        let after = s[end + 1..].trim_start();
        let value = after.strip_prefix(':')?;
        if !value.is_empty() && !value.starts_with(' ') {
            return None;
        }
        return Some((&s[1..end], value));
    }
    if s.starts_with(['[', '{', '#']) {
        return None;
    }
    let pos = match s.find(": ") {
        Some(p) => p,
        None => s.strip_suffix(':').map(str::len)?,
    };
    let key = s[..pos].trim();
    if key.is_empty() {
        return None;
    }
    Some((key, &s[pos + 1..]))
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn maps_nested_keys_and_items() {
        let text = "role: client\n# c\nsocks5:\n  - listen: \"a\"\n    username: u\n  - listen: b\nnetwork:\n  tcp:\n    local_flag:\n    - PA\n    - S\n  \"pcap\":\n    sockbuf: 1 # x\nlog:\n  level: |\n    not: a key\n  other: 1\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of("role"), Some(1));
        assert_eq!(idx.line_of("socks5"), Some(3));
        assert_eq!(idx.line_of("socks5[0].listen"), Some(4));
        assert_eq!(idx.line_of("socks5[0].username"), Some(5));
        assert_eq!(idx.line_of("socks5[1].listen"), Some(6));
        assert_eq!(idx.line_of("network.tcp.local_flag[1]"), Some(11));
        assert_eq!(idx.line_of("network.pcap.sockbuf"), Some(13));
        assert_eq!(idx.line_of("log.other"), Some(17));
        assert_eq!(
            idx.line_of("log.not"),
            Some(14),
            "block scalar text is no key"
        );
        assert_eq!(
            idx.line_of("network.tcp.remote_flag"),
            Some(8),
            "falls back to parent"
        );
        assert_eq!(idx.line_of("metrics.listen"), None);
        assert_eq!(idx.path_at(4), Some("socks5[0].listen"));
        assert_eq!(idx.path_at(2), None);
    }
}
