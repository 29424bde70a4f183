//! The report model shared by `doctor` and `explain`: a check is one line
//! (status, stable id, what was found, the exact fix), a report is a list of
//! them with a summary, rendered as an aligned table or as stable JSON.
//! Pure apart from [`print`].

use std::io::Write;

use serde::Serialize;

use crate::term::{Cell, Color, Style, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    pub fn color(self) -> Color {
        match self {
            Status::Ok => Color::Green,
            Status::Warn => Color::Yellow,
            Status::Fail => Color::Red,
            Status::Skip => Color::Dim,
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `sshd.command_tokens`.
    pub id: String,
    pub status: Status,
    /// What the check is about when there are several (a URL, a file).
    pub subject: Option<String>,
    pub found: String,
    /// The exact fix (None when nothing needs fixing).
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(id: &str, found: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status: Status::Ok,
            subject: None,
            found: found.into(),
            fix: None,
        }
    }

    pub fn warn(id: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::ok(id, found)
        }
    }

    pub fn fail(id: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Check::ok(id, found)
        }
    }

    /// A check that could not be made; `why` starts with "skipped: ".
    pub fn skip(id: &str, why: impl Into<String>) -> Check {
        Check {
            status: Status::Skip,
            ..Check::ok(id, why)
        }
    }

    pub fn subject(mut self, s: impl Into<String>) -> Check {
        self.subject = Some(s.into());
        self
    }

    /// `subject: found  -> fix: fix`, the text column of the table.
    pub fn text(&self) -> String {
        let mut text = String::new();
        if let Some(s) = &self.subject {
            text += &format!("{s}: ");
        }
        text += &self.found;
        if let Some(fix) = &self.fix {
            text += &format!("  -> fix: {fix}");
        }
        text
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Summary {
    pub fn of(checks: &[Check]) -> Summary {
        let mut s = Summary::default();
        for c in checks {
            match c.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }
}

/// A whole report (doctor's `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version of this document.
    pub format: u32,
    pub keyward: &'static str,
    pub config: String,
    pub user: Option<String>,
    /// Effective uid the command started with.
    pub uid: u32,
    pub summary: Summary,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(config: String, user: Option<String>, uid: u32, checks: Vec<Check>) -> Report {
        Report {
            format: 1,
            keyward: env!("CARGO_PKG_VERSION"),
            config,
            user,
            uid,
            summary: Summary::of(&checks),
            checks,
        }
    }

    /// The Nagios convention (doctor): 0 all ok, 1 warnings, 2 failures.
    pub fn exit_code(&self) -> i32 {
        if self.summary.fail > 0 {
            2
        } else if self.summary.warn > 0 {
            1
        } else {
            0
        }
    }

    /// The human report: one aligned line per check, then the summary.
    pub fn render(&self, style: &Style) -> String {
        let who = if self.uid == 0 {
            "root".to_string()
        } else {
            format!("uid {} (checks that need root are skipped)", self.uid)
        };
        let mut out = format!(
            "keyward doctor {}: config {}{}, running as {who}\n\n",
            self.keyward,
            self.config,
            self.user
                .as_ref()
                .map(|u| format!(", user {u}"))
                .unwrap_or_default()
        );
        let table = Table::new().header(&["STATUS", "CHECK", "FOUND / FIX"]);
        out += &check_table(table, &self.checks, |t| t.to_owned()).render(style);
        let s = &self.summary;
        let verdict = if s.fail > 0 {
            style.paint(&format!("{} failing", s.fail), Color::Red)
        } else {
            style.paint("no failing check", Color::Green)
        };
        out += &format!(
            "\n{verdict}: {} ok, {} warn, {} fail, {} skipped\n",
            s.ok, s.warn, s.fail, s.skip
        );
        out
    }
}

/// Adds one row per check to `table`: status (coloured), id, and the text
/// after `edit` (explain puts the user's name in).
pub fn check_table(mut table: Table, checks: &[Check], edit: impl Fn(&str) -> String) -> Table {
    for c in checks {
        table.row(vec![
            Cell::colored(c.status.label(), c.status.color()),
            Cell::new(c.id.as_str()),
            Cell::new(edit(&c.text())),
        ]);
    }
    table
}

/// A document as stable, pretty JSON with a final newline.
pub fn json<T: Serialize>(doc: &T) -> String {
    let mut s = serde_json::to_string_pretty(doc)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    s.push('\n');
    s
}

/// Writes `text` to stdout (a closed pipe is not an error worth a panic).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_render_and_json() {
        let r = Report::new(
            "/etc/keyward/keyward.toml".into(),
            None,
            0,
            vec![
                Check::ok("config.file", "fine"),
                Check::fail(
                    "binary",
                    "bad ownership or modes for directory /usr/local (mode 0775, group-writable)",
                    "chmod g-w /usr/local",
                )
                .subject("/usr/local/bin/keyward"),
                Check::skip("systemd.timer", "skipped: systemd not running"),
            ],
        );
        assert_eq!(r.exit_code(), 2);
        assert_eq!(
            r.summary,
            Summary {
                ok: 1,
                warn: 0,
                fail: 1,
                skip: 1
            }
        );
        let text = r.render(&Style::plain());
        assert!(text.contains("fail    binary         /usr/local/bin/keyward: bad ownership or modes for directory /usr/local (mode 0775, group-writable)  -> fix: chmod g-w /usr/local"), "{text}");
        assert!(text.contains("1 failing: 1 ok, 0 warn, 1 fail, 1 skipped"));
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["fix"], "chmod g-w /usr/local");
        assert_eq!(json["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(json["summary"]["fail"], 1);
        assert_eq!(json["format"], 1);
    }
}
