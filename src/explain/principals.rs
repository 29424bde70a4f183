//! `explain`'s certificate part: which certificate principals may log in as
//! the account, and why (the login path's own `principals::gather`), and
//! whether sshd asks keyward at all.

use serde::Serialize;

use crate::config::Config;
use crate::entry::Kind;
use crate::lookup::Failure;
use crate::principals::Dropped;
use crate::sshd::{argv_split, principals_call, SshdT};

/// How sshd decides on a user certificate for this account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// `AuthorizedPrincipalsCommand` runs `keyward principals` (the line).
    Keyward(String),
    /// Another AuthorizedPrincipalsCommand.
    Other(String),
    /// No command: a certificate must name the account itself (None: no
    /// TrustedUserCAKeys, so no certificate at all).
    AccountName(Option<String>),
    /// Not known (not root: `sshd -T` needs the host keys).
    Unknown,
}

/// From `sshd -T -C user=…` (None: not run).
pub fn asked(t: Option<&SshdT>) -> Asked {
    let Some(t) = t else { return Asked::Unknown };
    match t.set("authorizedprincipalscommand") {
        Some(line) => {
            let argv = argv_split(line).unwrap_or_default();
            let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
            if principals_call(&args).is_ok() {
                Asked::Keyward(line.to_owned())
            } else {
                Asked::Other(line.to_owned())
            }
        }
        None => Asked::AccountName(t.set("trustedusercakeys").map(str::to_owned)),
    }
}

/// One line of the account's principals file and its verdict.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PrincipalInfo {
    /// 1-based position among the lines (as in "duplicate of principal #1").
    pub n: usize,
    /// Line number in the directory file.
    pub line: usize,
    /// `accepted` or `dropped`.
    pub verdict: &'static str,
    pub principal: Option<String>,
    pub options: Option<String>,
    /// `invalid`, `expired`, `duplicate`, `max-keys`.
    pub reason_tag: Option<&'static str>,
    pub reason: Option<String>,
}

/// The certificate part of an explanation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PrincipalsInfo {
    /// How sshd decides (one sentence).
    pub sshd: String,
    /// `cache`, `directory`, `stale` (what the login path used).
    pub source: Option<String>,
    pub age_s: Option<u64>,
    pub lines: Vec<PrincipalInfo>,
    pub warnings: Vec<String>,
    /// Set when `keyward principals` fails closed (no certificate gets in).
    pub failure: Option<String>,
    pub verdict: String,
}

fn tag(d: &Dropped) -> &'static str {
    match d {
        Dropped::Invalid(_) => "invalid",
        Dropped::Expired => "expired",
        Dropped::Duplicate { .. } => "duplicate",
        Dropped::OverMax { .. } => "max-keys",
    }
}

/// Whether to look at the directory: sshd asks keyward, or (not knowing)
/// keyward already holds a list for the account. A host without
/// certificate logins gets no extra request per explain.
pub fn wanted(asked: &Asked, config: &Config, user: &str) -> bool {
    match asked {
        Asked::Keyward(_) => true,
        Asked::Unknown => {
            !config.directory.principals_urls.is_empty()
                || crate::cache::Cache::for_kind(
                    &config.cache.dir,
                    &config.state.dir,
                    Kind::Principals,
                )
                .path(user)
                .exists()
        }
        _ => false,
    }
}

/// How sshd decides when it does not ask keyward.
fn sshd_sentence(user: &str, asked: &Asked) -> String {
    match asked {
        Asked::Keyward(line) => format!("sshd asks `{line}` which certificate principals may log in as {user}"),
        Asked::Other(line) => format!("sshd asks `{line}` (not keyward) for {user}'s principals"),
        Asked::AccountName(Some(ca)) => format!("no AuthorizedPrincipalsCommand in effect: a certificate from TrustedUserCAKeys {ca} logs in as {user} only when {user} is one of its principals (keyward doctor: on OpenSSH before 9.4 the order of the lines matters)"),
        Asked::AccountName(None) => "no TrustedUserCAKeys: sshd accepts no user certificate".to_string(),
        Asked::Unknown => "not known as this uid (sshd -T needs root)".to_string(),
    }
}

/// The certificate part when sshd does not ask keyward.
pub fn not_asked(user: &str, asked: &Asked) -> PrincipalsInfo {
    PrincipalsInfo {
        sshd: sshd_sentence(user, asked),
        verdict: "keyward is not asked about certificates for this account".into(),
        ..PrincipalsInfo::default()
    }
}

/// The certificate part for `user` (validated, not denied). Resolves the
/// list exactly as `keyward principals` does (cache, state rules,
/// signatures), after dropping privileges like it.
pub fn explain(config: &Config, user: &str, asked: &Asked) -> PrincipalsInfo {
    let sshd = sshd_sentence(user, asked);
    let mut info = PrincipalsInfo {
        sshd,
        ..PrincipalsInfo::default()
    };
    let g = match crate::lookup::gather_principals(config, user) {
        Ok(g) => g,
        Err(Failure { reason, source }) => {
            info.failure = Some(match source {
                Some(s) => format!("{s}: {reason}"),
                None => reason,
            });
            info.verdict = format!(
                "keyward principals fails closed for {user} (prints nothing, exits non-zero): no certificate logs in as {user} through it"
            );
            return info;
        }
    };
    info.warnings = g.warnings;
    let Some(answer) = g.answer else {
        info.verdict = "no [directory] configured: keyward gives sshd no principals".into();
        return info;
    };
    info.source = Some(answer.source.to_owned());
    info.age_s = Some(answer.age_s);
    let mut accepted = Vec::new();
    for (i, (c, v)) in g.cands.iter().zip(&g.verdicts).enumerate() {
        let (principal, options) = match &c.parsed {
            Ok(l) => (
                Some(l.principal.clone()),
                (!l.options.is_empty()).then(|| l.options.clone()),
            ),
            Err(_) => (None, None),
        };
        if v.is_none() {
            accepted.extend(principal.clone());
        }
        info.lines.push(PrincipalInfo {
            n: i + 1,
            line: c.line_no,
            verdict: if v.is_none() { "accepted" } else { "dropped" },
            principal,
            options,
            reason_tag: v.as_ref().map(tag),
            reason: v.as_ref().map(|d| d.to_string()),
        });
    }
    info.verdict = if accepted.is_empty() {
        format!("no certificate logs in as {user} through keyward: the directory lists no usable principal")
    } else {
        format!(
            "a certificate with principal {} logs in as {user} (signed by a CA in TrustedUserCAKeys, within its validity)",
            accepted.join(" or ")
        )
    };
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sshd_asks() {
        assert_eq!(asked(None), Asked::Unknown);
        let t = SshdT::parse("authorizedprincipalscommand /usr/sbin/keyward principals %u id=%i\n");
        assert!(matches!(asked(Some(&t)), Asked::Keyward(_)));
        let t = SshdT::parse("authorizedprincipalscommand /bin/other %u\n");
        assert!(matches!(asked(Some(&t)), Asked::Other(_)));
        let t =
            SshdT::parse("authorizedprincipalscommand none\ntrustedusercakeys /etc/ssh/ca.pub\n");
        assert_eq!(
            asked(Some(&t)),
            Asked::AccountName(Some("/etc/ssh/ca.pub".into()))
        );
        let t = SshdT::parse("trustedusercakeys none\n");
        assert_eq!(asked(Some(&t)), Asked::AccountName(None));
    }
}
