//! Every key line from every source, judged by the login path's own code
//! (`policy::judge`, `FpFilter`), as rows of the explanation; and the
//! one-sentence verdict. Nothing private is printed: an invalid line is
//! described by its error, never echoed.

use std::collections::HashMap;

use serde::Serialize;

use super::Explanation;
use crate::config::Config;
use crate::keyline::{KeyLine, LineError};
use crate::lookup::{Gathered, Skipped};
use crate::os::clock::now_secs;
use crate::os::nss::Account;
use crate::policy::{self, DropReason, FpFilter, Judged};
use crate::report::Status;
use crate::revocation;

/// What keyward does with one line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyVerdict {
    Served,
    #[default]
    Dropped,
    /// A whole file skipped (unsafe, unreadable), like sshd skips it.
    Skipped,
}

impl KeyVerdict {
    pub fn label(self) -> &'static str {
        match self {
            KeyVerdict::Served => "served",
            KeyVerdict::Dropped => "dropped",
            KeyVerdict::Skipped => "skipped",
        }
    }
}

/// One key (or one skipped file) and its verdict.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// 1-based position among the candidates (as in "duplicate of key #1").
    pub n: Option<usize>,
    /// `directory` or the file path.
    pub source: String,
    pub line: Option<usize>,
    /// How the directory answer was obtained (`cache`, `directory`,
    /// `stale`), or `files`.
    pub via: String,
    pub age_s: Option<u64>,
    /// `served`, `dropped` or `skipped` (an unsafe file).
    pub verdict: KeyVerdict,
    /// `key-type`, `rsa-bits`, `expired`, `duplicate`, `max-keys`,
    /// `invalid`, `unsafe-file`, `revoked`.
    pub reason_tag: Option<String>,
    pub reason: Option<String>,
    pub key_type: Option<String>,
    pub bits: Option<u32>,
    pub fingerprint: Option<String>,
    pub comment: Option<String>,
    pub options: Option<String>,
    pub cert_authority: bool,
    pub expires: Option<String>,
    /// With --fingerprint: whether this is the key sshd asks about.
    pub matches: Option<bool>,
    /// With --fingerprint: whether keyward prints this line to sshd.
    pub printed: Option<bool>,
}

/// An invalid line described without echoing what may be key material.
pub fn describe_invalid(e: &LineError) -> String {
    // keyline errors never quote more than a short option name (long text
    // is only measured there); what is left to add is the hint for a pasted
    // private key's armour line.
    let secret = |name: &str| -> Option<String> {
        (name.starts_with("-----") || name.to_ascii_uppercase().contains("PRIVATE")).then(|| {
            "looks like a PRIVATE key (not shown): remove it from the source and replace that key"
                .into()
        })
    };
    match e {
        LineError::UnknownOption(n) | LineError::BadOption(n) => {
            secret(n).unwrap_or_else(|| format!("invalid line: {e}"))
        }
        other => format!("invalid line: {other}"),
    }
}

fn reason_text(r: &DropReason) -> String {
    match r {
        DropReason::Invalid(e) => describe_invalid(e),
        other => other.to_string(),
    }
}

/// The fields a parsed key line gives.
fn key_info(k: &KeyLine) -> KeyInfo {
    KeyInfo {
        key_type: Some(k.key.algorithm().as_str().to_owned()),
        bits: Some(k.bits()),
        fingerprint: Some(k.fingerprint()),
        comment: Some(k.key.comment().to_owned()).filter(|c| !c.is_empty()),
        options: Some(k.options.clone()).filter(|o| !o.is_empty()),
        cert_authority: k.cert_authority,
        expires: k
            .expiry
            .and_then(|e| e.epoch())
            .map(crate::signed::format_utc),
        ..KeyInfo::default()
    }
}

/// A file skipped before any of its lines was read.
fn skipped_info(s: &Skipped) -> KeyInfo {
    KeyInfo {
        source: s.path.clone(),
        via: "files".into(),
        verdict: KeyVerdict::Skipped,
        reason_tag: Some("unsafe-file".into()),
        reason: Some(format!("file skipped, like sshd would: {}", s.why)),
        ..KeyInfo::default()
    }
}

/// Ages of the configured local files, by the path `gather` labels them with.
pub fn file_ages(config: &Config, acct: &Account) -> HashMap<String, u64> {
    config
        .files
        .paths
        .iter()
        .filter_map(|t| {
            let p = crate::config::expand_file_template(t, &acct.home, &acct.name);
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((p, crate::os::clock::secs_since(m)))
        })
        .collect()
}

/// Fills the sources, key rows, warnings and verdict from what the login
/// path gathered.
pub fn fill(
    ex: &mut Explanation,
    config: &Config,
    g: Gathered,
    ages: &HashMap<String, u64>,
    fp: Option<&str>,
) {
    ex.sources = g.sources.iter().map(|s| s.to_string()).collect();
    let dir_via = g
        .sources
        .iter()
        .find(|s| **s != "files")
        .map_or("directory", |s| s);
    let filter = FpFilter::parse(fp);
    // The revocation list, as the login path uses it (`lookup::select`).
    let (list, list_error) = match revocation::store::open(config) {
        Ok(l) => (l, None),
        Err(e) => (None, Some(e)),
    };
    let revoked = |k: &KeyLine| {
        list.as_ref()
            .and_then(|l| revocation::store::key(l, config, k).ok().flatten())
    };
    let asked_revoked = match (&list, fp) {
        (Some(l), Some(f)) => revocation::store::fingerprint(l, config, f).ok().flatten(),
        _ => None,
    };
    let judged = policy::judge(&config.policy, &g.cands, now_secs() as i64);
    for (i, (c, j)) in judged.into_iter().enumerate() {
        let mut info = c.parsed.as_ref().map(key_info).unwrap_or_default();
        info.n = Some(i + 1);
        info.source = c.source.clone();
        info.line = Some(c.line_no);
        (info.via, info.age_s) = if c.source == "directory" {
            (dir_via.to_owned(), g.age)
        } else {
            ("files".into(), ages.get(&c.source).copied())
        };
        let mut served = matches!(j, Judged::Served(_));
        match j {
            Judged::Served(k) => match revoked(k) {
                Some(r) => {
                    served = false;
                    info.verdict = KeyVerdict::Dropped;
                    info.reason_tag = Some("revoked".into());
                    info.reason = Some(format!("revoked ({}) by {}", r.by.as_str(), r.source));
                }
                None => info.verdict = KeyVerdict::Served,
            },
            Judged::Dropped(r) => {
                info.verdict = KeyVerdict::Dropped;
                info.reason_tag = Some(r.tag().into());
                info.reason = Some(reason_text(&r));
            }
        }
        if let (Some(_), Ok(k)) = (fp, &c.parsed) {
            let m = filter.check(k);
            info.matches = Some(m.asked);
            // A revoked asked key: nothing is printed, cert-authority
            // lines included.
            info.printed = Some(served && m.printed && asked_revoked.is_none());
        }
        ex.keys.push(info);
    }
    ex.keys.extend(g.skipped.iter().map(skipped_info));
    ex.warnings.extend(g.warnings);
    if let Some(e) = &list_error {
        ex.failure = Some(e.clone());
    }
    ex.verdict = match (&list_error, &asked_revoked) {
        (Some(e), _) => format!("keyward fails closed (prints nothing): {e}"),
        (None, Some(r)) => format!(
            "the key asked about is revoked ({}) by {}: sshd gets no key",
            r.by.as_str(),
            r.source
        ),
        (None, None) => verdict(ex, &filter, fp),
    };
}

/// One sentence: how many keys sshd gets, and what happens to the one it
/// asks about.
fn verdict(ex: &Explanation, filter: &FpFilter, fp: Option<&str>) -> String {
    let served = ex
        .keys
        .iter()
        .filter(|k| k.verdict == KeyVerdict::Served)
        .count();
    let total = ex.keys.iter().filter(|k| k.n.is_some()).count();
    let base = if total == 0 {
        format!("no key for {} in any source: no key login", ex.user)
    } else {
        format!("{served} of {total} key line(s) served to sshd")
    };
    let blocked = ex.checks.iter().any(|c| c.status == Status::Fail);
    let base = if blocked && served > 0 {
        format!("{base}, but sshd refuses the login anyway (see the failing checks above)")
    } else {
        base
    };
    match (fp, filter) {
        (None, _) => base,
        (Some(f), FpFilter::All) => format!(
            "{base}; {f} is not a SHA256 fingerprint: keyward prints every served key and sshd does the matching"
        ),
        (Some(f), FpFilter::Sha256(_)) => format!("{base}; {}", asked_key(ex, f)),
    }
}

/// What happens to the key with fingerprint `f`.
fn asked_key(ex: &Explanation, f: &str) -> String {
    let asked = |k: &&super::KeyInfo| k.matches == Some(true);
    let printed = ex
        .keys
        .iter()
        .filter(asked)
        .find(|k| k.printed == Some(true));
    let cas = ex
        .keys
        .iter()
        .filter(|k| k.cert_authority && k.printed == Some(true))
        .count();
    match (printed, ex.keys.iter().find(asked)) {
        (Some(k), _) => format!(
            "sshd asks for {f}: key #{} is printed, so keyward accepts it (sshd still checks the signature and options such as from=)",
            k.n.unwrap_or(0)
        ),
        (None, Some(k)) => format!(
            "sshd asks for {f}: key #{} has it but is dropped ({}), so sshd rejects it",
            k.n.unwrap_or(0),
            k.reason.clone().unwrap_or_default()
        ),
        (None, None) if cas > 0 => format!(
            "no key has {f}: only the {cas} cert-authority line(s) are printed (enough for a certificate signed by that CA)"
        ),
        (None, None) => format!("no key has {f}: sshd rejects it"),
    }
}

/// The configuration key behind a drop reason.
fn setting_of(tag: &str) -> Option<&'static str> {
    Some(match tag {
        "key-type" => "policy.key_types",
        "rsa-bits" => "policy.min_rsa_bits",
        "max-keys" => "policy.max_keys",
        _ => return None,
    })
}

/// Names the file (and line) that set each value explain's verdicts
/// depend on: the config files, every value's origin, and for a key
/// dropped by a policy value, where that value comes from.
pub fn attribute(ex: &mut Explanation, sources: &[crate::config::layers::Source]) {
    let origins = crate::config::layers::origins(sources);
    ex.config_files = sources
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    ex.settings = origins
        .iter()
        .map(|(k, o)| (k.clone(), o.to_string()))
        .collect();
    let at = |key: &str| match origins.get(key) {
        Some(o) => format!("{key} set at {o}"),
        None => format!("{key} is the built-in default"),
    };
    for k in &mut ex.keys {
        if let (Some(tag), Some(reason)) = (k.reason_tag.as_deref(), k.reason.as_mut()) {
            if let Some(key) = setting_of(tag) {
                *reason = format!("{reason} ({})", at(key));
            }
        }
    }
    for c in &mut ex.checks {
        if c.id == "keyward.deny" {
            c.found = format!("{} ({})", c.found, at("policy.deny_users"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_material_is_never_echoed() {
        for line in [
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW QyNTUxOQAAACDzjH8C",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
        ] {
            let err = crate::keyline::parse_line(line).unwrap_err();
            let text = describe_invalid(&err);
            assert!(!text.contains("b3BlbnNz") && !text.contains("QyNTUx"), "{text}");
            if line.starts_with("-----") {
                assert!(text.contains("PRIVATE key"), "{text}");
            }
        }
        let e = crate::keyline::parse_line("bogus-opt ssh-ed25519 AAAA").unwrap_err();
        assert_eq!(
            describe_invalid(&e),
            "invalid line: unknown option \"bogus-opt\""
        );
    }
}
