//! Which of the gathered lines sshd gets: every key the policy serves that
//! the fingerprint filter lets through and the revocation list does not
//! revoke, and what was printed or dropped, for the record.

use crate::config::Config;
use crate::keyline;
use crate::os::clock::now_secs;
use crate::policy::{self, Candidate, FpFilter, Judged};
use crate::revocation::list::{ListFile, Revoked};
use crate::revocation::store;

/// What the answer to sshd held, for the record.
#[derive(Default)]
pub struct Printed {
    /// Lines that parse as keys.
    pub valid: usize,
    pub served: usize,
    /// Printed lines that are the key sshd asked about.
    pub matched: usize,
    /// Type of the key sshd asked about, when printed.
    pub key_type: Option<ssh_key::Algorithm>,
    /// (is it the key sshd asked about, `source:line reason`).
    pub drops: Vec<(bool, String)>,
    /// The key sshd asked about is revoked.
    pub revoked: Option<Revoked>,
}

/// The lines to print: every key policy serves that the fingerprint filter
/// lets through and the revocation list does not revoke, re-serialised.
/// Err: the revocation list is unusable (fail closed).
pub fn select(
    config: &Config,
    cands: &[Candidate],
    filter: &FpFilter,
) -> Result<(String, Printed), String> {
    let mut text = String::new();
    let mut p = Printed::default();
    // Opened once, and only when there is a key to judge: without a list,
    // one failed open().
    let mut list: Option<Option<ListFile>> = None;
    // The key sshd asks about (for a certificate, its certified key) by
    // its SHA-256: when it is revoked nothing is printed, cert-authority
    // lines included, which would let its certificate in.
    let asked_revoked = match (filter, cands.is_empty()) {
        (FpFilter::Sha256(fp), false) => revoked_by_fp(&mut list, config, fp)?,
        _ => None,
    };
    for (c, judged) in policy::judge(&config.policy, cands, now_secs() as i64) {
        p.valid += usize::from(c.parsed.is_ok());
        match judged {
            Judged::Served(k) => {
                let m = filter.check(k);
                let revoked = match (m.printed, &asked_revoked) {
                    (false, _) => None,
                    (true, Some(r)) => Some(r.clone()),
                    (true, None) => revoked_key(&mut list, config, k, m.asked)?,
                };
                if let Some(r) = revoked {
                    if m.asked && p.revoked.is_none() {
                        p.revoked = Some(r.clone());
                    }
                    // A cert-authority line, refused for the key asked about.
                    let why = if !m.asked && asked_revoked.is_some() {
                        format!("not served, the key asked about is revoked: {r}")
                    } else {
                        format!("revoked: {r}")
                    };
                    p.drops
                        .push((m.asked, format!("{}:{} {why}", c.source, c.line_no)));
                } else if m.printed {
                    text.push_str(&k.to_line());
                    text.push('\n');
                    p.served += 1;
                    p.matched += usize::from(m.asked);
                    if m.asked && p.key_type.is_none() {
                        p.key_type = Some(k.key.algorithm());
                    }
                }
            }
            Judged::Dropped(why) => {
                // Only the `nomatch` reason needs to know which key it was.
                let asked = matches!(filter, FpFilter::Sha256(_))
                    && c.parsed.as_ref().is_ok_and(|k| filter.check(k).asked);
                p.drops
                    .push((asked, format!("{}:{} {why}", c.source, c.line_no)));
            }
        }
    }
    if p.revoked.is_none() {
        p.revoked = asked_revoked;
    }
    Ok((text, p))
}

/// Whether the revocation list revokes `k` (`asked`: the key sshd asked
/// about, whose SHA-256 was looked up already); the list is opened on the
/// first call (`list`: None until then, then the list if there is one).
fn revoked_key(
    list: &mut Option<Option<ListFile>>,
    config: &Config,
    k: &keyline::KeyLine,
    asked: bool,
) -> Result<Option<Revoked>, String> {
    match opened(list, config)? {
        Some(l) if asked => store::key_sha1(l, config, k),
        Some(l) => store::key(l, config, k),
        None => Ok(None),
    }
}

/// Whether the list revokes the key with SHA-256 fingerprint `fp`.
fn revoked_by_fp(
    list: &mut Option<Option<ListFile>>,
    config: &Config,
    fp: &str,
) -> Result<Option<Revoked>, String> {
    match opened(list, config)? {
        Some(l) => store::fingerprint(l, config, fp),
        None => Ok(None),
    }
}

fn opened<'l>(
    list: &'l mut Option<Option<ListFile>>,
    config: &Config,
) -> Result<Option<&'l ListFile>, String> {
    if list.is_none() {
        *list = Some(store::open(config)?);
    }
    Ok(list.as_ref().and_then(Option::as_ref))
}
