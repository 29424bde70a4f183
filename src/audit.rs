//! Audit lines: one `key=value` record per decision, sent to syslog.
//!
//! Values come from users, HTTP servers and key files, so they are escaped
//! here and nowhere else: control characters become `\xNN` and values with
//! spaces, quotes, `=` or nothing at all are double-quoted. A log line can
//! therefore never be split or forged by its content.

use std::fmt::{self, Display, Write as _};
use std::io::Write;
use std::path::Path;

/// Severity of a record, mapped onto syslog priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Err,
    Warning,
    Notice,
    Info,
}

/// One audit record: ordered `key=value` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    fields: Vec<(&'static str, String)>,
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a field (builder style).
    pub fn with(mut self, key: &'static str, value: impl Display) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a field; a key given twice keeps both, in order.
    pub fn push(&mut self, key: &'static str, value: impl Display) {
        self.fields.push((key, value.to_string()));
    }

    /// Replaces the value of the first field named `key` (or appends it).
    pub fn set_first(&mut self, key: &'static str, value: impl Display) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.push(key, value),
        }
    }

    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{key}={}", escape_value(value))?;
        }
        Ok(())
    }
}

/// Longest value written (characters). syslog daemons cut messages at a few
/// KiB (rsyslog: 8 KiB); one hostile value must not push `reason=` out.
pub const MAX_VALUE: usize = 1024;

/// Escapes one value for a `key=value` line, cutting it at [`MAX_VALUE`].
pub fn escape_value(value: &str) -> String {
    let count = value.chars().count();
    if count > MAX_VALUE {
        let cut: String = value.chars().take(MAX_VALUE).collect();
        return escape_value_full(&format!("{cut}…[{} more characters]", count - MAX_VALUE));
    }
    escape_value_full(value)
}

fn escape_value_full(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\');
    let mut out = String::with_capacity(value.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    for c in value.chars() {
        match c {
            '"' if needs_quotes => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Control characters (including newline, NUL, DEL and the C1
            // range) would let a value start a forged log line; Unicode line
            // separators and bidirectional controls would make a log viewer
            // show a line break or reversed text that is not there.
            c if c.is_control() || deceptive(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
    out
}

/// Invisible characters that change how a line is displayed.
fn deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width, LRM, RLM
        | '\u{2028}' | '\u{2029}' // line and paragraph separators
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{FEFF}')
}

/// Parses a syslog facility name as used in `[log] facility`.
pub fn parse_facility(name: &str) -> Option<syslog::Facility> {
    use syslog::Facility::*;
    Some(match name {
        "auth" => LOG_AUTH,
        "authpriv" => LOG_AUTHPRIV,
        "daemon" => LOG_DAEMON,
        "user" => LOG_USER,
        "local0" => LOG_LOCAL0,
        "local1" => LOG_LOCAL1,
        "local2" => LOG_LOCAL2,
        "local3" => LOG_LOCAL3,
        "local4" => LOG_LOCAL4,
        "local5" => LOG_LOCAL5,
        "local6" => LOG_LOCAL6,
        "local7" => LOG_LOCAL7,
        _ => return None,
    })
}

/// Where records go: a syslog socket, or stderr when none can be reached
/// (visible under `sshd -d`, and to an admin running keyward by hand).
pub struct Sink {
    logger: Option<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>,
    also_stderr: bool,
}

impl Sink {
    /// Connects to the syslog socket at `socket`. Never fails: without a
    /// socket, records go to stderr.
    pub fn open(socket: &Path, facility: syslog::Facility) -> Self {
        let formatter = syslog::Formatter3164 {
            facility,
            hostname: None,
            process: "keyward".into(),
            pid: std::process::id(),
        };
        let logger = syslog::unix_custom(formatter, socket).ok();
        let also_stderr = logger.is_none();
        Sink {
            logger,
            also_stderr,
        }
    }

    /// A sink that only writes to stderr (used before the config is read).
    pub fn stderr() -> Self {
        Sink {
            logger: None,
            also_stderr: true,
        }
    }

    /// Also copy every record to stderr (interactive use).
    pub fn tee_stderr(&mut self, on: bool) {
        self.also_stderr = on || self.logger.is_none();
    }

    pub fn send(&mut self, severity: Severity, record: &Record) {
        let line = record.to_string();
        let mut sent = false;
        if let Some(logger) = self.logger.as_mut() {
            let r = match severity {
                Severity::Err => logger.err(&line),
                Severity::Warning => logger.warning(&line),
                Severity::Notice => logger.notice(&line),
                Severity::Info => logger.info(&line),
            };
            sent = r.is_ok();
        }
        if self.also_stderr || !sent {
            let _ = writeln!(std::io::stderr(), "keyward: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_bare() {
        let r = Record::new()
            .with("decision", "match")
            .with("user", "alice")
            .with("ms", 0.6);
        assert_eq!(r.to_string(), "decision=match user=alice ms=0.6");
    }

    #[test]
    fn spaces_quotes_and_empties_are_quoted() {
        assert_eq!(escape_value(""), "\"\"");
        assert_eq!(escape_value("a b"), "\"a b\"");
        assert_eq!(escape_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(escape_value("k=v"), "\"k=v\"");
        assert_eq!(escape_value("a\\b"), "\"a\\\\b\"");
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let v = escape_value("alice\ndecision=match user=root\0\x7f\u{85}");
        assert!(!v.chars().any(|c| c.is_control()), "{v}");
        assert!(v.contains("\\x0a"));
        assert!(v.contains("\\x00"));
        assert!(v.contains("\\x7f"));
        assert!(v.contains("\\x85"));
        let v = escape_value("bob\u{2028}decision=match\u{202E}txt");
        assert!(v.contains("\\x2028") && v.contains("\\x202e"), "{v}");
    }

    #[test]
    fn long_values_are_cut_so_later_fields_survive() {
        let r = Record::new()
            .with("user", "a".repeat(10_000))
            .with("reason", "invalid user name");
        let line = r.to_string();
        assert!(line.len() < 1200, "{}", line.len());
        assert!(line.contains("more characters"));
        assert!(line.ends_with("reason=\"invalid user name\""), "{line}");
    }

    #[test]
    fn get_finds_first_field() {
        let r = Record::new().with("a", 1).with("b", 2).with("a", 3);
        assert_eq!(r.get("a"), Some("1"));
        assert_eq!(r.get("c"), None);
    }

    #[test]
    fn facilities() {
        assert!(matches!(
            parse_facility("authpriv"),
            Some(syslog::Facility::LOG_AUTHPRIV)
        ));
        assert!(matches!(
            parse_facility("local7"),
            Some(syslog::Facility::LOG_LOCAL7)
        ));
        assert!(parse_facility("kern").is_none());
    }

    #[test]
    fn every_documented_facility_maps_to_its_own() {
        use syslog::Facility::*;
        let all = [
            ("auth", LOG_AUTH),
            ("authpriv", LOG_AUTHPRIV),
            ("daemon", LOG_DAEMON),
            ("user", LOG_USER),
            ("local0", LOG_LOCAL0),
            ("local1", LOG_LOCAL1),
            ("local2", LOG_LOCAL2),
            ("local3", LOG_LOCAL3),
            ("local4", LOG_LOCAL4),
            ("local5", LOG_LOCAL5),
            ("local6", LOG_LOCAL6),
            ("local7", LOG_LOCAL7),
        ];
        for (name, want) in all {
            let got = parse_facility(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(got as u32, want as u32, "{name}");
        }
        for bad in ["", "AUTH", "authpriv ", "local8", "kern", "mail"] {
            assert!(parse_facility(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn set_first_replaces_only_the_first_field_of_that_name() {
        let mut r = Record::new().with("a", 1).with("b", 2).with("a", 3);
        r.set_first("a", 9);
        assert_eq!(r.to_string(), "a=9 b=2 a=3");
        r.set_first("b", "x y");
        assert_eq!(r.to_string(), "a=9 b=\"x y\" a=3");
        r.set_first("c", 4);
        assert_eq!(r.to_string(), "a=9 b=\"x y\" a=3 c=4");
    }

    #[test]
    fn values_are_cut_only_beyond_max_value() {
        let exact = "a".repeat(MAX_VALUE);
        assert_eq!(escape_value(&exact), exact);
        let over = "a".repeat(MAX_VALUE + 1);
        let cut = escape_value(&over);
        assert!(cut.contains("[1 more characters]"), "{cut}");
        assert!(cut.starts_with(&format!("\"{exact}…")), "{cut}");
        // Characters, not bytes: a multi-byte value of MAX_VALUE characters stays whole.
        let wide = "é".repeat(MAX_VALUE);
        assert_eq!(escape_value(&wide), wide);
    }
}
