//! `keyward principals USER [NAME=VALUE…]`: sshd's
//! AuthorizedPrincipalsCommand, through the same cache, `state` rules and
//! audit record as `keys` (the line syntax and policy: `crate::principals`).

use std::io::Write;
use std::time::Instant;

use super::{finish, gate, through_cache, DirAnswer, Failure, Gate, Outcome};
use crate::audit::{Record, Severity};
use crate::cache::Kind;
use crate::config::Config;
use crate::os::clock::now_secs;
use crate::os::privdrop;
use crate::principals;
use crate::revocation;

/// An account's principals file, judged: what `run_principals` prints and
/// `explain` shows.
pub struct PrincipalsGathered {
    pub cands: Vec<principals::Candidate>,
    /// One per candidate; None: served.
    pub verdicts: Vec<Option<principals::Dropped>>,
    /// None: no directory is configured (no principals at all).
    pub answer: Option<DirAnswer>,
    pub warnings: Vec<String>,
}

/// Drops privileges (when root), then resolves `user`'s principals through
/// the cache with the `state` rules and judges every line. `user` must be
/// validated and not denied.
pub fn gather_principals(config: &Config, user: &str) -> Result<PrincipalsGathered, Failure> {
    privdrop::drop_to(&config.cache.owner).map_err(Failure::new)?;
    let mut warnings = Vec::new();
    if config.directory.urls.is_empty() && config.directory.principals_urls.is_empty() {
        return Ok(PrincipalsGathered {
            cands: Vec::new(),
            verdicts: Vec::new(),
            answer: None,
            warnings,
        });
    }
    let answer = through_cache(config, user, Kind::Principals, &mut warnings)?;
    let cands = answer
        .body
        .as_deref()
        .map(principals::candidates)
        .unwrap_or_default();
    let verdicts = principals::evaluate(&config.policy, &cands, now_secs() as i64);
    Ok(PrincipalsGathered {
        cands,
        verdicts,
        answer: Some(answer),
        warnings,
    })
}

/// `keyward principals`: writes the served lines to `out` and returns the
/// one decision to log (the keys path's rules: name, uid-0/deny, fail
/// closed, one record).
pub fn run_principals(
    config: &Config,
    user: &str,
    info: &principals::CertInfo,
    started: Instant,
    out: &mut dyn Write,
) -> Outcome {
    let mut record = Record::new();
    record.push("decision", "");
    record.push("kind", "principals");
    record.push("user", user);
    info.record(&mut record);
    // The sshd process that ran us (it logs the "Accepted publickey" line).
    record.push("ppid", crate::os::process::parent_pid());
    if let Some(w) = config.warning() {
        record.push("config_warning", w);
    }
    let fail = |mut record: Record, source: Option<&str>, reason: String| {
        if let Some(s) = source {
            record.push("source", s);
        }
        record.push("reason", reason);
        Outcome {
            exit: 1,
            severity: Severity::Err,
            record: finish(record, "fail", started),
        }
    };
    let decided = |mut record: Record, severity, decision, reason: &str| {
        record.push("reason", reason);
        Outcome {
            exit: 0,
            severity,
            record: finish(record, decision, started),
        }
    };
    // The keys path's gate: the name, sshd's uid (`uid=%U`) or NSS, deny.
    match gate(config, user, info.uid.as_deref()) {
        Gate::Admit(..) => {}
        Gate::Fail(why) => return fail(record, None, why),
        Gate::Deny(why) => return decided(record, Severity::Notice, "deny", &why),
    }
    let g = match gather_principals(config, user) {
        Ok(g) => g,
        Err(Failure { reason, source }) => return fail(record, source, reason),
    };
    // The certificate itself, whatever the account's principals.
    match cert_refused(config, info, &mut record) {
        Ok(None) => {}
        Ok(Some((severity, reason))) => return decided(record, severity, "deny", reason),
        Err(why) => return fail(record, None, why),
    }
    let Some(answer) = &g.answer else {
        record.push("source", "none");
        let why = "no [directory] configured: no principals";
        return decided(record, Severity::Info, "noprincipals", why);
    };
    let mut text = String::new();
    for (c, v) in g.cands.iter().zip(&g.verdicts) {
        if let (None, Ok(l)) = (v, &c.parsed) {
            text.push_str(&l.to_line());
            text.push('\n');
        }
    }
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        return fail(record, None, format!("writing to stdout: {e}"));
    }
    let (severity, decision) = principals_answer(&mut record, &g, answer);
    Outcome {
        exit: 0,
        severity,
        record: finish(record, decision, started),
    }
}

/// Whether the installed revocation list revokes the certificate sshd
/// describes (no list: nothing is revoked, and sshd's arguments are not
/// needed).
fn revoked_cert(
    config: &Config,
    info: &principals::CertInfo,
) -> Result<Option<revocation::list::Revoked>, String> {
    match revocation::store::open(config)? {
        Some(list) => revocation::store::cert(&list, config, info),
        None => Ok(None),
    }
}

/// Why the certificate is refused whatever the account's principals: it is
/// revoked, or the revocation list is too old to tell (its fields go on
/// the record).
fn cert_refused(
    config: &Config,
    info: &principals::CertInfo,
    record: &mut Record,
) -> Result<Option<(Severity, &'static str)>, String> {
    if let Some(r) = revoked_cert(config, info)? {
        record.push("revoked_by", r.by.as_str());
        record.push("revoked_source", r.source.to_string());
        if let revocation::list::By::Serial { lo, hi } = r.by {
            record.push("revoked_serials", format!("{lo}-{hi}"));
        }
        return Ok(Some((Severity::Notice, "revoked")));
    }
    // A list not confirmed current for too long cannot be trusted to name
    // every revoked certificate: refuse them (keys follow max_stale).
    if let Some(age) = stale_list(config)? {
        record.push("revocation_age", age);
        return Ok(Some((Severity::Warning, revocation::offline::STALE)));
    }
    Ok(None)
}

/// The list's age in words when it is past `[revocation] max_age` (the
/// offline bound, `revocation::offline`).
fn stale_list(config: &Config) -> Result<Option<String>, String> {
    use revocation::offline::{self, Offline};
    let Some(max_age) = config.revocation.max_age else {
        return Ok(None);
    };
    let confirmed = offline::read(config).map_err(|e| {
        format!("revocation list confirmation unreadable ({e}): failing closed for certificates")
    })?;
    Ok(
        match offline::verdict(confirmed, crate::os::clock::now_secs(), Some(max_age)) {
            Offline::Stale { age, max_age } => Some(format!(
                "{} (max_age {})",
                offline::human(age),
                offline::human(max_age)
            )),
            _ => None,
        },
    )
}

/// The answer fields of a principals record, the severity and decision.
fn principals_answer(
    record: &mut Record,
    g: &PrincipalsGathered,
    answer: &DirAnswer,
) -> (Severity, &'static str) {
    record.push("source", answer.source);
    record.push("age_s", answer.age_s);
    if let Some(m) = &answer.mirror {
        record.push("mirror", m);
    }
    let valid = g.cands.iter().filter(|c| c.parsed.is_ok()).count();
    let drops: Vec<String> = g
        .cands
        .iter()
        .zip(&g.verdicts)
        .filter_map(|(c, v)| Some(format!("directory:{} {}", c.line_no, v.as_ref()?)))
        .collect();
    let served = g.verdicts.iter().filter(|v| v.is_none()).count();
    record.push("principals", valid);
    record.push("served", served);
    record.push("dropped", drops.len());
    if !drops.is_empty() {
        let detail: Vec<&str> = drops.iter().take(5).map(String::as_str).collect();
        record.push("drop", detail.join("; "));
    }
    let severity = if g.warnings.is_empty() {
        Severity::Info
    } else {
        record.push("warning", g.warnings.join("; "));
        Severity::Warning
    };
    (severity, if served > 0 { "serve" } else { "noprincipals" })
}

/// The record of a `principals` call that failed before `run_principals`
/// (config, arguments).
pub fn principals_failed(user: &str, reason: String, started: Instant) -> Outcome {
    let record = Record::new()
        .with("decision", "")
        .with("kind", "principals")
        .with("user", user)
        .with("reason", reason);
    Outcome {
        exit: 1,
        severity: Severity::Err,
        record: finish(record, "fail", started),
    }
}
