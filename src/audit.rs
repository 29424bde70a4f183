//! Audit lines: one `key=value` record per decision, sent to syslog.
//!
//! Values come from users, HTTP servers and key files, so they are escaped
//! here and nowhere else: control characters become `\xNN` and values with
//! spaces, quotes, `=` or nothing at all are double-quoted. A log line can
//! therefore never be split or forged by its content.

use std::fmt::{self, Display, Write as _};
use std::io::Write;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

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

/// A duration in milliseconds with one decimal (`ms=0.6`), by integer
/// arithmetic: float formatting would put ~10 KiB of formatting code on the
/// login path's pages for one field.
pub fn millis(d: std::time::Duration) -> String {
    let tenths = (d.as_micros() + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Longest value written (characters). syslog daemons cut messages at a few
/// KiB (rsyslog: 8 KiB); one hostile value must not push `reason=` out.
pub const MAX_VALUE: usize = 1024;

/// Escapes one value for a `key=value` line, cutting it at [`MAX_VALUE`].
pub fn escape_value(value: &str) -> String {
    // No more bytes than the limit: no more characters either.
    let count = if value.len() <= MAX_VALUE {
        0
    } else {
        value.chars().count()
    };
    if count > MAX_VALUE {
        let cut: String = value.chars().take(MAX_VALUE).collect();
        return escape_value_full(&format!("{cut}…[{} more characters]", count - MAX_VALUE));
    }
    escape_value_full(value)
}

fn escape_value_full(value: &str) -> String {
    // Most values (names, fingerprints, numbers) are printable ASCII that
    // needs neither quotes nor escapes: copied as they are.
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\'))
    {
        return value.to_owned();
    }
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

/// journald's native socket. When it exists and the configured socket is the
/// default `/dev/log`, records go there with structured fields (journald
/// still forwards them to rsyslog's auth.log/secure with the facility).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The default `[log] socket`.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// Identifies keyward's decision records in the journal
/// (`journalctl MESSAGE_ID=…`); the decision itself is `KEYWARD_DECISION`.
pub const MESSAGE_ID: &str = "8d3c5b0a6e2f4f1c9a7b2d4e6f8a0c1e";

/// Where records go: journald (structured), a syslog socket, or stderr when
/// neither can be reached (visible under `sshd -d`, and to an admin running
/// keyward by hand).
pub struct Sink {
    out: Out,
    facility: syslog::Facility,
    also_stderr: bool,
    /// Where records that reached no socket are counted (see [`LOST_RECORDS`]).
    lost: Option<PathBuf>,
}

/// The file in the cache directory that counts records no log socket took
/// (one byte each, see `os::tally`); `keyward sync` reports it as
/// `keyward_log_records_lost_total`.
pub const LOST_RECORDS: &str = ".log-lost";

/// A socket connected once; each record is one `send`. The syslog datagram
/// is built here (RFC 3164, [`syslog_message`]): the syslog crate's
/// formatter parses a time format description on every message and pulls
/// the `time` crate's formatting into the login path.
enum Out {
    Journal(UnixDatagram),
    Syslog(UnixDatagram),
    /// A syslog socket of type SOCK_STREAM (connect gave EPROTOTYPE), as
    /// some syslog-ng set-ups use: each message ends with a NUL, as
    /// syslog(3) frames it.
    SyslogStream(UnixStream),
    Nowhere,
}

impl Sink {
    /// Connects to the journal (see [`JOURNAL_SOCKET`]) or the syslog socket
    /// at `socket`. Never fails: without a socket, records go to stderr.
    pub fn open(socket: &Path, facility: syslog::Facility) -> Self {
        let journal = Path::new(JOURNAL_SOCKET);
        let out = if socket == Path::new(DEFAULT_SOCKET) {
            Self::journal(journal)
        } else {
            None
        };
        let out = out.unwrap_or_else(|| Self::syslog(socket));
        let also_stderr = matches!(out, Out::Nowhere);
        Sink {
            out,
            facility,
            also_stderr,
            lost: None,
        }
    }

    /// Sends to journald's native socket at `path` (tests point it at their
    /// own socket; production uses [`JOURNAL_SOCKET`] through `open`).
    pub fn open_journal(path: &Path, facility: syslog::Facility) -> Self {
        let out = Self::journal(path).unwrap_or(Out::Nowhere);
        let also_stderr = matches!(out, Out::Nowhere);
        Sink {
            out,
            facility,
            also_stderr,
            lost: None,
        }
    }

    // Every socket is non-blocking: a log daemon that stopped reading fills
    // its socket, and a blocking send would then hold the login until the
    // watchdog kills keyward (sshd rejects the keys already printed).
    fn journal(path: &Path) -> Option<Out> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(path).ok()?;
        sock.set_nonblocking(true).ok()?;
        Some(Out::Journal(sock))
    }

    fn syslog(socket: &Path) -> Out {
        let Ok(sock) = UnixDatagram::unbound() else {
            return Out::Nowhere;
        };
        match sock.connect(socket) {
            Ok(()) if sock.set_nonblocking(true).is_ok() => Out::Syslog(sock),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                crate::os::unixsock::connect_stream(socket)
                    .map(Out::SyslogStream)
                    .unwrap_or(Out::Nowhere)
            }
            _ => Out::Nowhere,
        }
    }

    /// Counts every record that reaches no socket in `path` (see
    /// [`LOST_RECORDS`]).
    pub fn count_losses_in(&mut self, path: PathBuf) {
        self.lost = Some(path);
    }

    /// A sink that only writes to stderr (used before the config is read).
    pub fn stderr() -> Self {
        Sink {
            out: Out::Nowhere,
            facility: syslog::Facility::LOG_AUTHPRIV,
            also_stderr: true,
            lost: None,
        }
    }

    /// Also copy every record to stderr (interactive use).
    pub fn tee_stderr(&mut self, on: bool) {
        self.also_stderr = on || matches!(self.out, Out::Nowhere);
    }

    pub fn send(&mut self, severity: Severity, record: &Record) {
        let line = record.to_string();
        let sent = match &mut self.out {
            Out::Journal(sock) => {
                let msg = journal_message(&line, severity, self.facility, record);
                sock.send(msg.as_bytes()).is_ok()
            }
            Out::Syslog(sock) => {
                let msg = syslog_message(&line, severity, self.facility, now_unix(), process_id());
                sock.send(msg.as_bytes()).is_ok()
            }
            Out::SyslogStream(sock) => {
                let mut msg =
                    syslog_message(&line, severity, self.facility, now_unix(), process_id());
                msg.push('\0');
                sock.write_all(msg.as_bytes()).is_ok()
            }
            Out::Nowhere => false,
        };
        if !sent {
            if matches!(self.out, Out::SyslogStream(_)) {
                // A stream cut mid-message has lost its framing: the next
                // message would be glued to the cut one.
                self.out = Out::Nowhere;
            }
            if let Some(path) = &self.lost {
                let _ = crate::os::tally::add_one(path);
            }
        }
        if self.also_stderr || !sent {
            let _ = writeln!(std::io::stderr(), "keyward: {line}");
        }
    }
}

fn now_unix() -> i64 {
    crate::os::clock::now_secs() as i64
}

fn process_id() -> u32 {
    std::process::id()
}

/// syslog's numeric severity.
fn severity_code(severity: Severity) -> u32 {
    match severity {
        Severity::Err => 3,
        Severity::Warning => 4,
        Severity::Notice => 5,
        Severity::Info => 6,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One RFC 3164 datagram: `<PRI>Mmm dd hh:mm:ss keyward[PID]: LINE`, what
/// syslog(3) sends (no hostname: the local daemon adds its own). The time is
/// UTC, as the syslog crate wrote it before; rsyslog's imuxsock and
/// journald's /dev/log use their own receive time by default but parse this
/// header, so it stays well-formed.
pub fn syslog_message(
    line: &str,
    severity: Severity,
    facility: syslog::Facility,
    unix_secs: i64,
    pid: u32,
) -> String {
    let t = crate::os::clock::utc_fields(unix_secs);
    let mut m = String::with_capacity(line.len() + 48);
    let _ = write!(
        m,
        "<{}>{} {:>2} {:02}:{:02}:{:02} keyward[{pid}]: {line}",
        facility as u32 | severity_code(severity),
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
    );
    m
}

/// journald's native datagram: `FIELD=value` lines. Every value is the
/// escaped form used in the syslog line, so none contains a newline (which
/// the plain form cannot carry).
pub fn journal_message(
    line: &str,
    severity: Severity,
    facility: syslog::Facility,
    record: &Record,
) -> String {
    let priority = severity_code(severity);
    let mut m = String::with_capacity(line.len() + 256);
    let _ = write!(
        m,
        "MESSAGE={line}\nPRIORITY={priority}\nSYSLOG_FACILITY={}\nSYSLOG_IDENTIFIER=keyward\nSYSLOG_PID={}\nMESSAGE_ID={MESSAGE_ID}\n",
        facility as u32 >> 3,
        std::process::id()
    );
    for (field, key) in [
        ("KEYWARD_DECISION", "decision"),
        ("KEYWARD_USER", "user"),
        ("KEYWARD_FP", "fp"),
    ] {
        if let Some(v) = record.get(key) {
            let _ = writeln!(m, "{field}={}", escape_value(v));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_message_has_structured_fields_and_no_raw_newlines() {
        let r = Record::new()
            .with("decision", "match")
            .with("user", "mal\nlory")
            .with("fp", "SHA256:abc");
        let m = journal_message(
            &r.to_string(),
            Severity::Info,
            syslog::Facility::LOG_AUTHPRIV,
            &r,
        );
        let lines: Vec<&str> = m.lines().collect();
        assert!(lines.contains(&"PRIORITY=6"), "{m}");
        assert!(lines.contains(&"SYSLOG_FACILITY=10"), "{m}");
        assert!(lines.contains(&"SYSLOG_IDENTIFIER=keyward"), "{m}");
        assert!(lines.contains(&"KEYWARD_DECISION=match"), "{m}");
        assert!(lines.contains(&"KEYWARD_USER=mal\\x0alory"), "{m}");
        assert!(lines.contains(&"KEYWARD_FP=SHA256:abc"), "{m}");
        assert!(lines.iter().all(|l| l.contains('=')), "{m}");
        assert!(lines.iter().any(|l| l.starts_with("MESSAGE_ID=")), "{m}");
    }

    #[test]
    fn syslog_datagram_is_rfc3164() {
        let m = syslog_message(
            "decision=match user=alice",
            Severity::Info,
            syslog::Facility::LOG_AUTHPRIV,
            1_795_784_010,
            4242,
        );
        assert_eq!(
            m,
            "<86>Nov 27 12:53:30 keyward[4242]: decision=match user=alice"
        );
        // A day below 10 is padded with a space, as syslog(3) writes it.
        let m = syslog_message(
            "x",
            Severity::Err,
            syslog::Facility::LOG_AUTH,
            1_793_923_200,
            1,
        );
        assert_eq!(m, "<35>Nov  6 00:00:00 keyward[1]: x");
    }

    #[test]
    fn syslog_header_reads_this_process_and_the_clock() {
        // The datagram's `keyward[PID]` and timestamp come from these two.
        assert_eq!(process_id(), std::process::id());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now_unix() - now).abs() <= 5, "{} vs {now}", now_unix());
    }

    #[test]
    fn millis_has_one_decimal() {
        use std::time::Duration;
        assert_eq!(millis(Duration::from_micros(0)), "0.0");
        assert_eq!(millis(Duration::from_micros(649)), "0.6");
        assert_eq!(millis(Duration::from_micros(650)), "0.7");
        assert_eq!(millis(Duration::from_micros(1_234_949)), "1234.9");
    }

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
        // Values made only of the characters that need escaping take the
        // escaping path too (the fast path copies only plain values).
        assert_eq!(escape_value("="), "\"=\"");
        assert_eq!(escape_value("\""), "\"\\\"\"");
        assert_eq!(escape_value("\\"), "\"\\\\\"");
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
