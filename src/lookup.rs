//! The login path: `keyward keys USER [FP [UID]]`.
//!
//! sources (local files, directory through the cache) → parse → policy →
//! fingerprint filter → stdout, and exactly one audit record. The cache/
//! directory decision (`resolve`) is pure; `run` does the I/O around it.

use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

use crate::audit::{Record, Severity};
use crate::cache::{Cache, Kind, Settle};
use crate::chain::{self, Offered};
use crate::config::Config;
use crate::directory::{Directory, HttpDirectory, Request};
use crate::files::{self, FileOutcome};
use crate::indexcache::IndexCache;
use crate::keyline;
use crate::os::clock::now_secs;
use crate::os::privdrop;
use crate::policy::{self, Candidate, FpFilter};
use crate::state::{self, Answer, Mode, Purpose, Ttls};
use crate::username;

mod principals;
mod select;

use select::{select, Printed};

/// What one invocation decided.
pub struct Outcome {
    /// 0 = answered, 1 = failed closed (nothing printed).
    pub exit: i32,
    pub severity: Severity,
    pub record: Record,
}

/// Parses every line of `text` into candidates labelled `source`.
pub fn candidates(source: &str, text: &str, out: &mut Vec<Candidate>) {
    for (i, line) in text.lines().enumerate() {
        if let Some(parsed) = keyline::parse_line(line).transpose() {
            out.push(Candidate {
                source: source.to_owned(),
                line_no: i + 1,
                parsed,
            });
        }
    }
}

/// Every candidate line from every source, before policy.
pub struct Gathered {
    pub cands: Vec<Candidate>,
    /// `files`, `cache`, `directory`, `stale`, `command:NAME`, in the
    /// order used.
    pub sources: Vec<Cow<'static, str>>,
    pub warnings: Vec<String>,
    /// Local files refused by the ownership/mode rules (or unreadable),
    /// skipped like sshd skips them.
    pub skipped: Vec<Skipped>,
    /// Age of the directory answer in seconds (None: no directory).
    pub age: Option<u64>,
    /// The mirror that answered this lookup (None: cache, or no directory).
    pub mirror: Option<String>,
}

/// A local file skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The configured path (templates expanded).
    pub path: String,
    pub why: String,
}

/// Why gathering failed (the login path then fails closed).
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub source: Option<&'static str>,
}

impl Failure {
    pub fn new(reason: String) -> Failure {
        Failure {
            reason,
            source: None,
        }
    }
}

/// Reads local files (as the user), runs the chained commands, drops
/// privileges, parses them, then resolves the directory through the cache.
/// `user` is validated; `acct` its account (None: unknown, or not asked).
pub fn gather_for(
    config: &Config,
    user: &str,
    acct: Option<&privdrop::Account>,
    uid: Option<u32>,
    offered: Offered,
) -> Result<Gathered, Failure> {
    let mut sources: Vec<Cow<'static, str>> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();

    // Local files first: they may need root. Only the raw text is kept until
    // root is dropped: parsing runs as the cache owner, never as root.
    let mut texts: Vec<(String, String)> = Vec::new();
    if !config.files.paths.is_empty() {
        match acct {
            Some(acct) => {
                let read = files::read_all(&config.files.paths, acct, config.directory.max_bytes)
                    .map_err(|e| Failure::new(format!("reading local files: {e}")))?;
                for f in read {
                    match f.outcome {
                        FileOutcome::Read(text) => texts.push((f.path, text)),
                        FileOutcome::Missing => {}
                        FileOutcome::Refused(why) => skipped.push(Skipped { path: f.path, why }),
                    }
                }
            }
            None => warnings.push("user unknown to NSS: no local files".into()),
        }
    }
    // Chained commands, still with the privileges to run them as their
    // account (and to kill them); their output is parsed after the drop.
    let values = chain::Values {
        user,
        uid: uid.or(acct.map(|a| a.uid)),
        home: acct.map(|a| a.home.as_str()),
        offered,
    };
    let ran = chain::run_configured(config, &values).map_err(|reason| Failure {
        reason,
        source: Some("command"),
    })?;
    privdrop::drop_to(&config.cache.owner).map_err(Failure::new)?;
    for (path, text) in &texts {
        candidates(path, text, &mut cands);
    }
    if !texts.is_empty() {
        sources.push("files".into());
    }

    let (mut age, mut mirror) = (None, None);
    if !config.directory.urls.is_empty() {
        let answer = through_cache(config, user, Kind::Keys, &mut warnings)?;
        sources.push(answer.source.into());
        age = Some(answer.age_s);
        mirror = answer.mirror;
        if let Some(body) = &answer.body {
            candidates("directory", body, &mut cands);
        }
    }
    // Keyward's own sources first: sshd takes the first line that matches.
    for (label, text) in ran.outputs {
        candidates(&label, &text, &mut cands);
        sources.push(label.into());
    }
    warnings.extend(ran.failures);

    Ok(Gathered {
        cands,
        sources,
        warnings,
        skipped,
        age,
        mirror,
    })
}

/// What the directory (through the cache) said for a user.
pub struct DirAnswer {
    /// None: the user has no keys (principals).
    pub body: Option<String>,
    pub source: &'static str,
    pub age_s: u64,
    /// The mirror that answered this lookup (None: from the cache).
    pub mirror: Option<String>,
}

/// The directory's `kind` file for `user` through the cache, as `state`
/// rules. The cache is updated as the transition says. `keys` and
/// `principals` both come here.
pub fn through_cache(
    config: &Config,
    user: &str,
    kind: Kind,
    warnings: &mut Vec<String>,
) -> Result<DirAnswer, Failure> {
    let cache = Cache::for_kind(&config.cache.dir, &config.state.dir, kind);
    // The user's file name, once: the entry, the floor and its lock use it.
    let name = username::file_name(user);
    let signed = config.directory.signed();
    let signers = trusted_signers(&config.directory).map_err(Failure::new)?;
    let cur = cache
        .current(user, &name, signed)
        .map_err(|e| Failure::new(e.to_string()))?;
    let mode = Mode::of(signers.as_deref(), user, kind);
    // Mirror health and the stored index are read only from here on: a
    // fresh entry is answered by `state` before either is touched.
    let dir = HttpDirectory::new(&config.directory)
        .for_kind(kind)
        .with_health(&config.cache.dir);
    let now = now_secs();
    let ttls = Ttls::from_config(&config.cache);
    let t = state::login_indexed(
        &cur,
        now,
        &ttls,
        mode,
        // The index lists keys files only.
        || match kind {
            Kind::Keys => IndexCache::new(&config.cache.dir).login_listing(
                user,
                now,
                signed,
                config.cache.ttl.0.as_secs(),
                &dir.index_urls(),
            ),
            Kind::Principals => None,
        },
        |etag, floor| dir.fetch(&Request { user, etag, floor }),
    );
    // Re-decided under the state lock against what is on disk by now; the
    // lock wait shares the lookup's budget.
    let settle = Settle {
        now,
        ttls: &ttls,
        mode,
        purpose: Purpose::Login,
        lock_wait: config.directory.timeout.0,
    };
    let (t, stored) = cache.commit(user, &name, &cur, t, &settle);
    if let Err(e) = stored {
        warnings.push(format!("cache not updated: {e}"));
    }
    warnings.extend(t.warning);
    // The mirror that gave this lookup's answer (None: the cache or the
    // stored index answered, or no mirror did).
    let events = dir.events();
    if events.answered.is_some() {
        // (When none answered, the failure or stale warning names them.)
        for (m, why) in events.skipped {
            warnings.push(format!("mirror {m} skipped: {why}"));
        }
    }
    let mirror = events.answered;
    match t.answer {
        Answer::Serve {
            body,
            source,
            age_s,
        } => Ok(DirAnswer {
            body,
            source,
            age_s,
            mirror,
        }),
        Answer::Fail(reason) => Err(Failure {
            reason,
            source: Some("directory"),
        }),
    }
}

/// The fingerprints of the trusted signers when signatures are required
/// (None: they are not). Entries and floors of any other signer are void.
pub fn trusted_signers(
    config: &crate::config::DirectoryConfig,
) -> Result<Option<Vec<crate::signed::Signer>>, String> {
    if !config.signed() {
        return Ok(None);
    }
    let keys = config.load_signers()?;
    Ok(Some(keys.iter().map(crate::signed::fingerprint).collect()))
}

/// Whether the login path must ask NSS about the account: for the home
/// directory when local files are read, and for the uid when a deny rule
/// needs it and sshd did not pass it (`%U`). sshd resolved the account
/// before it ran us, so its uid is the one sshd is about to log in as.
pub fn needs_nss(config: &Config, uid_from_sshd: Option<u32>) -> bool {
    !config.files.paths.is_empty()
        || (uid_from_sshd.is_none() && policy::needs_uid(&config.policy))
        || chain::needs_account(&config.commands, uid_from_sshd.is_some())
}

/// The account facts the deny rules and the local files use: NSS's account
/// (None: not asked, or unknown) and the uid the rules judge.
fn account_facts(
    config: &Config,
    user: &str,
    uid_arg: Option<&str>,
) -> Result<(Option<privdrop::Account>, Option<u32>), String> {
    let given = uid_arg.map(crate::sshd::uid_arg).transpose()?;
    if !needs_nss(config, given) {
        return Ok((None, given));
    }
    let acct = privdrop::account(user).map_err(|e| format!("looking up user: {e}"))?;
    match (&acct, given) {
        (Some(a), Some(g)) if a.uid != g => Err(format!(
            "sshd passed uid {g} but NSS now says uid {} for the account",
            a.uid
        )),
        _ => {
            let uid = given.or(acct.as_ref().map(|a| a.uid));
            // sshd never runs us for a name NSS does not know: a "not
            // found" now (NSS changed, a backend down and answering
            // nothing) must not pass for "not uid 0".
            if uid.is_none() && policy::needs_uid(&config.policy) {
                return Err(
                    "NSS returned no account (not found, or its database unreadable) and sshd \
                     passed no uid (%U): the uid-0 rule (root is in [policy] deny_users) \
                     cannot be checked; pass %U"
                        .into(),
                );
            }
            Ok((acct, uid))
        }
    }
}

/// Whether an account may be asked about at all, the same for `keys` and
/// `principals`: a name keyward accepts, the uid the rules judge (sshd's
/// `%U`, else NSS), and the deny rules.
enum Gate {
    /// Go on, with NSS's account when it was asked (local files need it)
    /// and the uid the rules judged.
    Admit(Option<privdrop::Account>, Option<u32>),
    /// Refused by policy: nothing is served, the call succeeds.
    Deny(String),
    /// Fail closed.
    Fail(String),
}

fn gate(config: &Config, user: &str, uid_arg: Option<&str>) -> Gate {
    if let Err(e) = username::validate(user, config.policy.max_username_len) {
        return Gate::Fail(format!("invalid user name: {e}"));
    }
    // A name denied as such needs no uid (and no NSS lookup).
    if let Some(why) = policy::denied(&config.policy, user, None) {
        return Gate::Deny(why);
    }
    // At most one NSS lookup serves the uid-0 rule and the local files.
    match account_facts(config, user, uid_arg) {
        Err(e) => Gate::Fail(e),
        Ok((acct, uid)) => match policy::denied(&config.policy, user, uid) {
            Some(why) => Gate::Deny(why),
            None => Gate::Admit(acct, uid),
        },
    }
}

/// Runs the login path and writes the answer to `out`. `uid_arg` is sshd's
/// `%U` when the AuthorizedKeysCommand passes it; `offered`: `%f` (`%t %k`).
pub fn run(
    config: &Config,
    user: &str,
    offered: Offered,
    uid_arg: Option<&str>,
    started: Instant,
    out: &mut dyn Write,
) -> Outcome {
    let fp = offered.fingerprint;
    let mut record = Record::new();
    record_head(&mut record, user, fp);
    if let Some(uid) = uid_arg {
        record.push("uid", uid);
    }
    // Keys a newer config set and this version ignores (min_version):
    // on every decision, so the log shows what is not enforced.
    if let Some(w) = config.warning() {
        record.push("config_warning", w);
    }
    let fail = |mut record: Record, reason: String| {
        record.push("reason", reason);
        Outcome {
            exit: 1,
            severity: Severity::Err,
            record: finish(record, "fail", started),
        }
    };

    let (acct, uid) = match gate(config, user, uid_arg) {
        Gate::Admit(acct, uid) => (acct, uid),
        Gate::Fail(why) => return fail(record, why),
        Gate::Deny(why) => {
            record.push("reason", why);
            return Outcome {
                exit: 0,
                severity: Severity::Notice,
                record: finish(record, "deny", started),
            };
        }
    };

    let g = match gather_for(config, user, acct.as_ref(), uid, offered) {
        Ok(g) => g,
        Err(Failure { reason, source }) => {
            if let Some(src) = source {
                record.push("source", src);
            }
            return fail(record, reason);
        }
    };
    let filter = FpFilter::parse(fp);
    let (text, printed) = match select(config, &g.cands, &filter) {
        Ok(x) => x,
        Err(why) => return fail(record, why),
    };
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        return fail(record, format!("writing to stdout: {e}"));
    }
    let decision = record_answer(&mut record, &g, &filter, &printed);
    let warnings: Vec<String> = g
        .skipped
        .iter()
        .map(|s| format!("file skipped: {}", s.why))
        .chain(g.warnings)
        .collect();
    let severity = if warnings.is_empty() {
        Severity::Info
    } else {
        record.push("warning", warnings.join("; "));
        Severity::Warning
    };
    Outcome {
        exit: 0,
        severity,
        record: finish(record, decision, started),
    }
}

/// The answer's fields of the record; returns the decision.
fn record_answer(
    record: &mut Record,
    g: &Gathered,
    filter: &FpFilter,
    p: &Printed,
) -> &'static str {
    let source = if g.sources.is_empty() {
        "none".into()
    } else {
        g.sources.join("+")
    };
    record.push("source", source);
    if let Some(a) = g.age {
        record.push("age_s", a);
    }
    if let Some(m) = &g.mirror {
        record.push("mirror", m);
    }
    if let Some(t) = &p.key_type {
        record.push("key_type", t.as_str());
    }
    record.push("keys", p.valid);
    record.push("served", p.served);
    record.push("dropped", p.drops.len());
    let decision = match filter {
        _ if g.cands.is_empty() => "nokeys",
        FpFilter::All => "serve",
        FpFilter::Sha256(_) if p.matched > 0 => "match",
        FpFilter::Sha256(_) if p.revoked.is_some() => {
            if let Some(r) = &p.revoked {
                record.push("reason", "revoked");
                record.push("revoked_by", r.by.as_str());
                record.push("revoked_source", r.source.to_string());
            }
            "nomatch"
        }
        FpFilter::Sha256(_) => {
            let why = p
                .drops
                .iter()
                .find(|(asked, _)| *asked)
                .map(|(_, d)| format!("key dropped by policy: {d}"))
                .unwrap_or_else(|| "no authorized key has this fingerprint".into());
            record.push("reason", why);
            "nomatch"
        }
    };
    if !p.drops.is_empty() {
        let detail: Vec<&str> = p.drops.iter().take(5).map(|(_, d)| d.as_str()).collect();
        record.push("drop", detail.join("; "));
    }
    decision
}

/// Starts a record; the decision (first field) is filled in by `finish`.
fn record_head(record: &mut Record, user: &str, fp: Option<&str>) {
    record.push("decision", "");
    record.push("user", user);
    if let Some(fp) = fp {
        record.push("fp", fp);
    }
    // The sshd process that ran us: it logs the matching "Accepted
    // publickey for USER" line under this pid.
    record.push("ppid", crate::os::process::parent_pid());
}

fn finish(mut record: Record, decision: &str, started: Instant) -> Record {
    record.set_first("decision", decision);
    record.push("ms", crate::audit::millis(started.elapsed()));
    record
}

pub use principals::{gather_principals, principals_failed, run_principals, PrincipalsGathered};

#[cfg(test)]
mod tests {
    use super::*;

    // The cache/directory rules are specified by `state`'s table tests.

    #[test]
    fn candidates_keep_line_numbers() {
        let mut c = Vec::new();
        candidates("directory", "# c\n\nssh-ed25519 AAAA\n", &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line_no, 3);
        assert!(c[0].parsed.is_err());
    }

    #[test]
    fn a_record_starts_with_its_decision_and_ends_with_its_time() {
        let mut r = Record::new();
        record_head(&mut r, "alice", Some("SHA256:x"));
        let text = finish(r, "match", Instant::now()).to_string();
        assert!(
            text.starts_with("decision=match user=alice fp=SHA256:x ppid="),
            "{text}"
        );
        assert!(text.contains(" ms="), "{text}");
    }

    #[test]
    fn nss_is_asked_only_for_what_a_rule_or_a_file_needs() {
        let mut config = Config::default();
        // default: root denied, so the uid matters; %U answers it
        assert!(needs_nss(&config, None));
        assert!(!needs_nss(&config, Some(1000)));
        assert!(!needs_nss(&config, Some(0)));
        // local files need the home directory whatever sshd passed
        config.files.paths = vec!["%h/.ssh/authorized_keys".into()];
        assert!(needs_nss(&config, Some(1000)));
        // nobody denied by uid: no lookup for the rules
        config.files.paths.clear();
        config.policy.deny_users = vec!["alice".into()];
        assert!(!needs_nss(&config, None));
    }

    #[test]
    fn uid_from_sshd_feeds_the_uid_0_rule_without_nss() {
        let config = Config::default();
        // a user NSS does not know: only sshd's uid can say it is root
        let user = "kwnosuchuser-uid0";
        let (acct, uid) = account_facts(&config, user, Some("0")).unwrap();
        assert!(acct.is_none());
        assert_eq!(uid, Some(0));
        assert!(policy::denied(&config.policy, user, uid).is_some());
        assert!(account_facts(&config, user, Some("%U")).is_err());
        assert!(account_facts(&config, user, Some("-1")).is_err());
    }

    #[test]
    fn without_a_uid_an_account_nss_does_not_know_fails_closed_when_the_uid_rule_needs_it() {
        let mut config = Config::default();
        let user = "kwnosuchuser-nouid";
        let e = account_facts(&config, user, None).unwrap_err();
        assert!(e.contains("uid-0 rule") && e.contains("%U"), "{e}");
        assert!(matches!(gate(&config, user, None), Gate::Fail(_)));
        // a name denied as such is denied without a lookup
        config.policy.deny_users = vec!["root".into(), user.into()];
        assert!(matches!(gate(&config, user, None), Gate::Deny(_)));
        // nobody denied by uid: the name alone is judged
        config.policy.deny_users = vec!["alice".into()];
        assert_eq!(account_facts(&config, user, None).unwrap(), (None, None));
        // local files without the uid rule: no home, no files, no failure
        config.files.paths = vec!["%h/.ssh/authorized_keys".into()];
        assert_eq!(account_facts(&config, user, None).unwrap(), (None, None));
    }

    #[test]
    fn uid_from_sshd_must_match_nss_when_both_are_asked() {
        let mut config = Config::default();
        config.files.paths = vec!["%h/.ssh/authorized_keys".into()];
        // root is uid 0 on every machine
        let (acct, uid) = account_facts(&config, "root", Some("0")).unwrap();
        assert_eq!((acct.map(|a| a.uid), uid), (Some(0), Some(0)));
        let e = account_facts(&config, "root", Some("1234")).unwrap_err();
        assert!(
            e.contains("sshd passed uid 1234 but NSS now says uid 0"),
            "{e}"
        );
    }
}
