//! The human rendering of an explanation: the account and sshd checks, the
//! warnings, one table row per key (with a details line for reasons,
//! options and expiry) and the verdict. Everything from outside is
//! sanitised by the table (`term`).

use super::keys::{KeyInfo, KeyVerdict};
use super::principals::PrincipalsInfo;
use super::Explanation;
use crate::report;
use crate::term::{human_age, sanitize, Cell, Color, Style, Table};

/// The whole human report.
pub fn render(ex: &Explanation, style: &Style) -> String {
    let drop_ins = ex.config_files.len().saturating_sub(1);
    let mut out = format!(
        "keyward explain {}: config {}{}{}\n\n",
        ex.user,
        ex.config,
        match drop_ins {
            0 => String::new(),
            n => format!(" + {n} drop-in(s): {}", ex.config_files[1..].join(", ")),
        },
        ex.fingerprint
            .as_ref()
            .map(|f| format!(", fingerprint {f}"))
            .unwrap_or_default()
    );
    if !ex.checks.is_empty() {
        out += &style.paint("Account and sshd\n", Color::Bold);
        let t = report::check_table(Table::new().indent(2), &ex.checks, |t| {
            t.replace("USER", &ex.user)
        });
        out += &t.render(style);
        out.push('\n');
    }
    for w in &ex.warnings {
        let label = style.paint("warning:", Color::Yellow);
        out += &format!("{label} {}\n", sanitize(w));
    }
    if !ex.warnings.is_empty() {
        out.push('\n');
    }
    if let Some(f) = &ex.failure {
        out += &format!("{} {f}\n\n", style.paint("keyward fails:", Color::Red));
    }
    if !ex.keys.is_empty() {
        out += &keys_section(ex, style);
    }
    out += &format!("{} {}\n", style.paint("Verdict:", Color::Bold), ex.verdict);
    if let Some(p) = &ex.principals {
        out += &principals_section(p, style);
    }
    out
}

/// Certificate logins: how sshd decides, each principals line and its
/// verdict, and the certificate verdict.
fn principals_section(p: &PrincipalsInfo, style: &Style) -> String {
    let from = match (&p.source, p.age_s) {
        (Some(s), Some(a)) => format!(" (source: {s}, {})", human_age(a)),
        (Some(s), None) => format!(" (source: {s})"),
        _ => String::new(),
    };
    let mut out = format!(
        "\n{}\n  {}\n",
        style.paint(&format!("Certificates{from}"), Color::Bold),
        sanitize(&p.sshd)
    );
    for w in &p.warnings {
        out += &format!(
            "  {} {}\n",
            style.paint("warning:", Color::Yellow),
            sanitize(w)
        );
    }
    if let Some(f) = &p.failure {
        out += &format!(
            "  {} {}\n",
            style.paint("keyward fails:", Color::Red),
            sanitize(f)
        );
    }
    if !p.lines.is_empty() {
        out.push('\n');
        let mut t = Table::new()
            .header(&["#", "VERDICT", "PRINCIPAL", "SOURCE", "OPTIONS"])
            .indent(2);
        for l in &p.lines {
            let verdict = match l.reason_tag {
                Some(tag) => format!("{}: {tag}", l.verdict),
                None => l.verdict.to_string(),
            };
            let color = if l.verdict == "accepted" {
                Color::Green
            } else {
                Color::Yellow
            };
            t.row(vec![
                Cell::new(l.n.to_string()),
                Cell::colored(verdict, color),
                Cell::new(dash(l.principal.as_ref())),
                Cell::new(format!("directory:{}", l.line)),
                Cell::new(dash(l.options.as_ref())),
            ]);
        }
        out += &t.render(style);
        let reasons: Vec<String> = p
            .lines
            .iter()
            .filter_map(|l| Some(sanitize(&format!("  #{}: {}", l.n, l.reason.as_ref()?))))
            .collect();
        if !reasons.is_empty() {
            out.push('\n');
            out += &reasons.join("\n");
            out.push('\n');
        }
    }
    out += &format!(
        "{} {}\n",
        style.paint("Certificates:", Color::Bold),
        sanitize(&p.verdict)
    );
    out
}

/// The key table and the details under it.
fn keys_section(ex: &Explanation, style: &Style) -> String {
    let srcs = if ex.sources.is_empty() {
        "none".to_string()
    } else {
        ex.sources.join(" + ")
    };
    let mut out = style.paint(&format!("Keys (sources: {srcs})\n"), Color::Bold);
    let with_fp = ex.fingerprint.is_some();
    let mut header = vec![
        "#",
        "VERDICT",
        "TYPE",
        "BITS",
        "FINGERPRINT",
        "SOURCE",
        "AGE",
        "COMMENT",
    ];
    if with_fp {
        header.insert(2, "SSHD");
    }
    let mut t = Table::new()
        .header(&header)
        .right_align(if with_fp { 4 } else { 3 })
        .indent(2);
    for k in &ex.keys {
        t.row(key_row(k, with_fp));
    }
    out += &t.render(style);
    let details: Vec<String> = ex.keys.iter().filter_map(details).collect();
    if !details.is_empty() {
        out.push('\n');
        out += &details.join("\n");
        out.push('\n');
    }
    out.push('\n');
    out
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn key_row(k: &KeyInfo, with_fp: bool) -> Vec<Cell> {
    let verdict = match (k.verdict, &k.reason_tag) {
        (KeyVerdict::Served, _) => Cell::colored("served", Color::Green),
        (v, Some(tag)) => Cell::colored(format!("{}: {tag}", v.label()), Color::Red),
        (v, None) => Cell::colored(v.label(), Color::Red),
    };
    let src = match (k.line, k.via.as_str()) {
        (Some(l), "files") => format!("{}:{l}", k.source),
        (Some(l), "directory") => format!("{}:{l} (fetched now)", k.source),
        (Some(l), "stale") => format!("{}:{l} (stale cache, directory down)", k.source),
        (Some(l), via) => format!("{}:{l} ({via})", k.source),
        (None, _) => k.source.clone(),
    };
    let key_type = k.key_type.as_ref().map(|t| {
        if k.cert_authority {
            format!("{t} (CA)")
        } else {
            t.clone()
        }
    });
    let mut row = vec![
        Cell::new(dash(k.n)),
        verdict,
        Cell::new(dash(key_type)),
        Cell::new(dash(k.bits)),
        Cell::new(dash(k.fingerprint.as_ref())),
        Cell::new(src),
        Cell::new(dash(k.age_s.map(human_age))),
        Cell::new(k.comment.clone().unwrap_or_default()),
    ];
    if with_fp {
        let s = match (k.matches, k.printed) {
            (Some(true), Some(true)) => Cell::colored("match, printed", Color::Green),
            (Some(true), _) => Cell::colored("match, not printed", Color::Red),
            (_, Some(true)) => Cell::new("printed (CA)"),
            _ => Cell::new("-"),
        };
        row.insert(2, s);
    }
    row
}

/// `  #N: reason; options: …; expires …` for a key that has any of them.
fn details(k: &KeyInfo) -> Option<String> {
    let mut parts = Vec::new();
    parts.extend(k.reason.clone());
    parts.extend(k.options.as_ref().map(|o| format!("options: {o}")));
    parts.extend(k.expires.as_ref().map(|e| format!("expires {e}")));
    if parts.is_empty() {
        return None;
    }
    let n =
        k.n.map(|n| format!("#{n}"))
            .unwrap_or_else(|| k.source.clone());
    Some(sanitize(&format!("  {n}: {}", parts.join("; "))))
}
