//! A panic anywhere in the binary ends as one `decision=fail` record and
//! exit 1, on every command (a login's record is what an admin greps for;
//! sshd ignores the output of a command that exits non-zero).
//!
//! Two halves, because of where each runs:
//! - the panic hook ([`remember`]) runs at the panic site, before anything
//!   is unwound: a second panic there (the same bug in the code that writes
//!   records, say) aborts the process with no record and exit 134, and the
//!   panicking frame may still hold locks the record needs. So the hook only
//!   remembers the message and where it was raised, and prints nothing;
//! - [`guard`] catches the unwind in `main`, after the panicking frames are
//!   gone (their locks released, their sink dropped), and writes the record
//!   through a fresh sink, itself under `catch_unwind`. What the command
//!   left in stdout's buffer is never flushed. If reporting panics too, one
//!   fixed line goes to fd 2 with `write(2)`, and the exit is still 1.

use std::any::Any;
use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::audit::{self, Record};
use crate::config;

/// The exit code of a command that panicked.
pub const PANICKED: i32 = 1;

/// The first panic's message and location. The first, because a panic in a
/// worker thread (sync's) reaches `main` as a second one that only says "a
/// scoped thread panicked".
static FIRST: OnceLock<String> = OnceLock::new();

/// Installs the hook that remembers the first panic (see the module notes).
pub fn remember() {
    std::panic::set_hook(Box::new(|info| {
        let message = payload_text(info.payload());
        let text = match info.location() {
            Some(l) => format!("{message} (at {}:{})", l.file(), l.line()),
            None => message,
        };
        let _ = FIRST.set(text);
    }));
}

/// Runs `body`; if it panics, calls `report` with the panic's message and
/// returns [`PANICKED`]. Nothing unwinds out of this function.
pub fn guard(body: impl FnOnce() -> i32, report: impl FnOnce(&str)) -> i32 {
    let payload = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => return code,
        Err(payload) => payload,
    };
    let message = FIRST
        .get()
        .cloned()
        .unwrap_or_else(|| payload_text(&*payload));
    // A payload's own Drop could panic again: leak it, the process ends.
    std::mem::forget(payload);
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| report(&message))) {
        std::mem::forget(again);
        last_resort();
    }
    PANICKED
}

/// The text of a panic payload (`panic!` makes a `&str` or a `String`).
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Reporting the panic panicked as well: say so on stderr without std's
/// stderr (its lock and buffer are what might be broken).
fn last_resort() {
    let line = b"keyward: decision=fail reason=\"panic (and a second one while logging it)\"\n";
    // SAFETY: writes a static buffer of its own length to fd 2.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
    }
}

/// What the record says about the call that panicked, read from the
/// command line alone (the panic may have come before or during its own
/// parsing of it).
#[derive(Debug, PartialEq, Eq)]
pub struct Call {
    /// The configuration naming the audit sink.
    pub config: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Keys {
        user: String,
        fp: Option<String>,
    },
    Principals {
        user: String,
    },
    /// Any other command, by name (`None` when clap cannot tell).
    Other(Option<String>),
}

impl Call {
    pub fn of(args: &[OsString]) -> Call {
        let lossy: Vec<OsString> = args
            .iter()
            .map(|a| OsString::from(a.to_string_lossy().into_owned()))
            .collect();
        if let Some(k) =
            super::fast_keys_args(&lossy).or_else(|| super::dash_user_keys_args(&lossy))
        {
            return Call {
                config: k.config,
                kind: Kind::Keys {
                    user: k.user,
                    fp: k.fingerprint,
                },
            };
        }
        if let Some(p) = crate::principals::fast_args(&lossy) {
            return Call {
                config: p.config,
                kind: Kind::Principals { user: p.user },
            };
        }
        use clap::CommandFactory;
        match super::Cli::command().try_get_matches_from(lossy) {
            Ok(m) => Call {
                config: m
                    .get_one::<PathBuf>("config")
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH)),
                kind: Kind::Other(m.subcommand_name().map(str::to_owned)),
            },
            Err(_) => Call {
                config: PathBuf::from(config::DEFAULT_PATH),
                kind: Kind::Other(None),
            },
        }
    }

    pub fn config(&self) -> &Path {
        &self.config
    }
}

/// The one record of a call that panicked.
pub fn record(call: &Call, message: &str, elapsed: Duration) -> Record {
    let mut r = Record::new().with("decision", "fail");
    match &call.kind {
        Kind::Keys { user, fp } => {
            r.push("user", user);
            if let Some(fp) = fp {
                r.push("fp", fp);
            }
        }
        Kind::Principals { user } => {
            r.push("kind", "principals");
            r.push("user", user);
        }
        Kind::Other(Some(name)) => r.push("command", name),
        Kind::Other(None) => {}
    }
    r.push("reason", format!("panic: {message}"));
    r.push("ms", audit::millis(elapsed));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("keyward")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn a_normal_return_passes_through_and_reports_nothing() {
        let reported = Cell::new(false);
        assert_eq!(guard(|| 2, |_| reported.set(true)), 2);
        assert!(!reported.get());
    }

    #[test]
    fn a_panic_is_reported_once_with_its_message_and_exits_1() {
        let seen = std::cell::RefCell::new(Vec::new());
        let code = guard(
            || panic!("boom {}", 42),
            |m| seen.borrow_mut().push(m.to_owned()),
        );
        assert_eq!(code, PANICKED);
        assert_eq!(PANICKED, 1);
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 1, "{seen:?}");
        // Without the hook (unit tests keep the harness's), the payload.
        assert!(seen[0].contains("boom 42"), "{seen:?}");
    }

    #[test]
    fn a_panic_while_reporting_still_exits_1() {
        let code = guard(|| panic!("first"), |_| panic!("second, in the sink"));
        assert_eq!(code, PANICKED);
    }

    #[test]
    fn a_panic_while_stderr_is_locked_is_still_reported_on_stderr() {
        // The panicking frame holds stderr's lock (as the sink does while it
        // writes); the report, after the unwind, takes it again.
        let wrote = Cell::new(false);
        let code = guard(
            || {
                let mut held = std::io::stderr().lock();
                let _ = held.write_all(b"");
                panic!("in the sink");
            },
            |m| {
                let mut err = std::io::stderr().lock();
                wrote.set(writeln!(err, "report: {m}").is_ok());
            },
        );
        assert_eq!(code, PANICKED);
        assert!(wrote.get());
    }

    #[test]
    fn payloads_that_are_not_strings_still_say_something() {
        assert_eq!(payload_text(&"static"), "static");
        assert_eq!(payload_text(&String::from("owned")), "owned");
        assert_eq!(payload_text(&7u8), "a panic without a message");
    }

    #[test]
    fn the_record_names_the_login_call() {
        let c = Call::of(&args(&[
            "--config", "/k.toml", "keys", "alice", "SHA256:x", "1000",
        ]));
        assert_eq!(c.config(), Path::new("/k.toml"));
        let r = record(&c, "index out of bounds", Duration::from_micros(1500)).to_string();
        assert_eq!(
            r,
            "decision=fail user=alice fp=SHA256:x reason=\"panic: index out of bounds\" ms=1.5"
        );
        let c = Call::of(&args(&["principals", "bob", "uid=1000", "fp=SHA256:y"]));
        assert_eq!(c.config(), Path::new(config::DEFAULT_PATH));
        let r = record(&c, "x", Duration::ZERO).to_string();
        assert!(
            r.starts_with("decision=fail kind=principals user=bob reason="),
            "{r}"
        );
    }

    #[test]
    fn the_record_names_any_other_command_and_its_config() {
        let c = Call::of(&args(&["completions", "bash", "--config=/c.toml"]));
        assert_eq!(c.config(), Path::new("/c.toml"));
        assert_eq!(c.kind, Kind::Other(Some("completions".into())));
        let r = record(&c, "failed to write", Duration::ZERO).to_string();
        assert!(
            r.starts_with("decision=fail command=completions reason=\"panic: failed to write\""),
            "{r}"
        );
        // Arguments clap refuses: still a record, with the default config.
        let c = Call::of(&args(&["--no-such-option"]));
        assert_eq!(
            c,
            Call {
                config: PathBuf::from(config::DEFAULT_PATH),
                kind: Kind::Other(None)
            }
        );
    }

    #[test]
    fn the_message_cannot_forge_fields_or_lines() {
        let c = Call::of(&args(&["keys", "alice"]));
        let r = record(&c, "bad \"x\"\ndecision=serve user=root", Duration::ZERO).to_string();
        assert!(!r.contains('\n'), "{r}");
        assert!(
            r.starts_with("decision=fail user=alice reason=\"panic: bad \\\"x\\\""),
            "{r}"
        );
    }
}
