//! The login path: `keyward keys USER [FP]`.
//!
//! sources (local files, directory through the cache) → parse → policy →
//! fingerprint filter → stdout, and exactly one audit record. The cache/
//! directory decision (`resolve`) is pure; `run` does the I/O around it.

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::audit::{Record, Severity};
use crate::cache::{self, Cache, Entry, Freshness, Lookup, Status, Ttls};
use crate::config::Config;
use crate::directory::{Directory, Fetch, HttpDirectory, Request};
use crate::files::{self, FileOutcome};
use crate::keyline;
use crate::policy::{self, Candidate, FpFilter, Verdict};
use crate::privdrop;
use crate::username;

/// What one invocation decided.
pub struct Outcome {
    /// 0 = answered, 1 = failed closed (nothing printed).
    pub exit: i32,
    pub severity: Severity,
    pub record: Record,
}

/// Where the directory's answer came from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// None: the user has no keys in the directory.
    pub body: Option<String>,
    pub source: &'static str,
    pub age_s: u64,
    /// Entry to store (new answer, or refreshed age after a 304).
    pub store: Option<Entry>,
    /// `store` only records a new age (304): no fsync needed.
    pub refresh_only: bool,
    pub warning: Option<String>,
}

/// Decides how to answer from the cache and, only if needed, the directory.
/// `fetch` is called at most once, with the cached ETag.
/// With `signed` (the user name), a cached entry is only usable while its
/// signed header is valid for that user and not expired.
pub fn resolve(
    cached: Lookup,
    now: u64,
    ttls: &Ttls,
    signed: Option<&str>,
    fetch: impl FnOnce(&Request) -> Fetch,
) -> Result<Resolution, String> {
    let mut warning = None;
    let entry = match cached {
        Lookup::Found(e) => Some(e),
        Lookup::Missing => None,
        Lookup::Corrupt(c) => {
            warning = Some(format!("{c}; refetching"));
            None
        }
    };
    // Computed once: with signatures, whether the cached entry may be used
    // at all (serving, 304 revalidation, stale fallback all depend on it).
    let unusable = entry.as_ref().and_then(|e| match signed {
        Some(user) if e.status == Status::Keys => signed_usable(e, user, now).err(),
        _ => None,
    });
    let freshness = entry.as_ref().map(|e| match unusable {
        None => cache::freshness(e, now, ttls),
        Some(_) => Freshness::Expired,
    });
    if let (Some(e), Some(Freshness::Fresh)) = (&entry, freshness) {
        return Ok(Resolution {
            body: body_of(e),
            source: "cache",
            age_s: e.age(now).unwrap_or(0),
            store: None,
            refresh_only: false,
            warning,
        });
    }
    // An entry that is no longer usable must not be revalidated by a 304.
    let etag = entry
        .as_ref()
        .filter(|e| e.status == Status::Keys && unusable.is_none())
        .and_then(|e| e.etag.as_deref());
    let min_serial = entry.as_ref().and_then(|e| e.serial);
    let fresh_entry = |status, body: String, etag, url, serial| Entry {
        fetched_at: now,
        status,
        etag,
        url,
        serial,
        body,
    };
    let answered = |e: Entry, warning| Resolution {
        body: body_of(&e),
        source: "directory",
        age_s: 0,
        store: Some(e),
        refresh_only: false,
        warning,
    };
    let user = signed.unwrap_or_default();
    let req = Request {
        user,
        etag,
        min_serial,
    };
    match fetch(&req) {
        Fetch::Keys {
            body,
            etag,
            url,
            serial,
        } => Ok(answered(
            fresh_entry(Status::Keys, body, etag, url, serial),
            warning,
        )),
        Fetch::NoKeys { url } => Ok(answered(
            // Keep the serial: a later file must not roll back below it.
            fresh_entry(Status::NoKeys, String::new(), None, url, min_serial),
            warning,
        )),
        Fetch::NotModified { url } => match entry {
            Some(mut e) if e.status == Status::Keys && unusable.is_none() => {
                e.fetched_at = now;
                e.url = url;
                Ok(Resolution {
                    refresh_only: true,
                    ..answered(e, warning)
                })
            }
            _ => Err("directory answered 304 but no cached entry matches".into()),
        },
        Fetch::Unavailable { errors } => {
            let why = errors.join("; ");
            match (entry, freshness) {
                (Some(e), Some(Freshness::Stale)) => {
                    let age = e.age(now).unwrap_or(0);
                    Ok(Resolution {
                        body: body_of(&e),
                        source: "stale",
                        age_s: age,
                        store: None,
                        refresh_only: false,
                        warning: Some(format!(
                            "directory unavailable ({why}); serving cache entry {age}s old"
                        )),
                    })
                }
                (Some(_), _) if unusable.is_some() => Err(format!(
                    "directory unavailable ({why}) and the cached entry cannot be served ({})",
                    unusable.unwrap_or_default()
                )),
                (Some(e), _) => Err(match e.age(now) {
                    Some(age) => format!(
                        "directory unavailable ({why}) and the cache entry is too old to serve (age {age}s, max_stale {}s)",
                        ttls.max_stale.as_secs()
                    ),
                    None => format!(
                        "directory unavailable ({why}) and the cache entry is dated in the future (clock?)"
                    ),
                }),
                (None, _) => Err(format!("directory unavailable ({why}) and nothing cached")),
            }
        }
    }
}

/// A cached signed file stays usable only while its header is valid.
pub fn signed_usable(e: &Entry, user: &str, now: u64) -> Result<(), String> {
    if e.serial.is_none() {
        return Err("cached entry was not signed".into());
    }
    let h = crate::signed::parse_header(&e.body)?;
    crate::signed::check_header(&h, user, now as i64, None)
}

fn body_of(e: &Entry) -> Option<String> {
    match e.status {
        Status::Keys => Some(e.body.clone()),
        Status::NoKeys => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    /// `files`, `cache`, `directory`, `stale`, in the order used.
    pub sources: Vec<&'static str>,
    pub warnings: Vec<String>,
    /// Age of the directory answer in seconds (None: no directory).
    pub age: Option<u64>,
}

/// Why gathering failed (the login path then fails closed).
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub source: Option<&'static str>,
}

impl Failure {
    fn new(reason: String) -> Failure {
        Failure {
            reason,
            source: None,
        }
    }
}

/// Reads local files (as the user), drops privileges, then resolves the
/// directory through the cache. `user` must already be validated.
pub fn gather(config: &Config, user: &str) -> Result<Gathered, Failure> {
    let mut sources: Vec<&'static str> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();

    // Local files first: they may need root, which is dropped right after.
    if !config.files.paths.is_empty() {
        match privdrop::account(user) {
            Ok(Some(acct)) => {
                for f in files::read_all(&config.files.paths, &acct, config.directory.max_bytes) {
                    match f.outcome {
                        FileOutcome::Read(text) => {
                            candidates(&f.path, &text, &mut cands);
                            if !sources.contains(&"files") {
                                sources.push("files");
                            }
                        }
                        FileOutcome::Missing => {}
                        FileOutcome::Refused(why) => warnings.push(format!("file skipped: {why}")),
                    }
                }
            }
            Ok(None) => warnings.push("user unknown to NSS: no local files".into()),
            Err(e) => return Err(Failure::new(format!("looking up user: {e}"))),
        }
    }
    let owner = if privdrop::euid() == 0 {
        match privdrop::account(&config.cache.owner) {
            Ok(a) => a,
            Err(e) => return Err(Failure::new(format!("looking up [cache] owner: {e}"))),
        }
    } else {
        None
    };
    if let Err(e) = privdrop::drop_privileges(owner.as_ref()) {
        return Err(Failure::new(format!(
            "dropping privileges to {:?}: {e}",
            config.cache.owner
        )));
    }

    let mut age = None;
    if !config.directory.urls.is_empty() {
        let cache = Cache::new(&config.cache.dir);
        let cached = match cache.read(user) {
            Ok(c) => c,
            Err(e) => return Err(Failure::new(e.to_string())),
        };
        let ttls = Ttls {
            ttl: config.cache.ttl.0,
            negative_ttl: config.cache.negative_ttl.0,
            max_stale: config.cache.max_stale.0,
        };
        let dir = HttpDirectory::new(&config.directory);
        let signed = config.directory.signed().then_some(user);
        let fetch = |req: &Request| {
            dir.fetch(&Request {
                user,
                etag: req.etag,
                min_serial: req.min_serial,
            })
        };
        let res = match resolve(cached, now_secs(), &ttls, signed, fetch) {
            Ok(r) => r,
            Err(reason) => {
                return Err(Failure {
                    reason,
                    source: Some("directory"),
                })
            }
        };
        if let Some(entry) = &res.store {
            let stored = if res.refresh_only {
                cache.refresh(user, entry)
            } else {
                cache.write(user, entry)
            };
            if let Err(e) = stored {
                warnings.push(format!("cache not updated: {e}"));
            }
        }
        warnings.extend(res.warning);
        sources.push(res.source);
        age = Some(res.age_s);
        if let Some(body) = &res.body {
            candidates("directory", body, &mut cands);
        }
    }

    Ok(Gathered {
        cands,
        sources,
        warnings,
        age,
    })
}

/// Runs the login path and writes the answer to `out`.
pub fn run(
    config: &Config,
    user: &str,
    fp: Option<&str>,
    started: Instant,
    out: &mut dyn Write,
) -> Outcome {
    let mut record = Record::new();
    record_head(&mut record, user, fp);
    let fail = |mut record: Record, reason: String| {
        record.push("reason", reason);
        Outcome {
            exit: 1,
            severity: Severity::Err,
            record: finish(record, "fail", started),
        }
    };

    if let Err(e) = username::validate(user, config.policy.max_username_len) {
        return fail(record, format!("invalid user name: {e}"));
    }
    if config.policy.deny_users.iter().any(|d| d == user) {
        record.push("reason", "user is in [policy] deny_users");
        return Outcome {
            exit: 0,
            severity: Severity::Notice,
            record: finish(record, "deny", started),
        };
    }

    let Gathered {
        cands,
        sources,
        warnings,
        age,
    } = match gather(config, user) {
        Ok(g) => g,
        Err(Failure { reason, source }) => {
            if let Some(src) = source {
                record.push("source", src);
            }
            return fail(record, reason);
        }
    };
    let verdicts = policy::evaluate(&config.policy, &cands, now_secs() as i64);
    let filter = FpFilter::parse(fp);
    let mut text = String::new();
    let (mut valid, mut served, mut matched) = (0, 0, 0);
    let mut drops = Vec::new();
    for (c, v) in cands.iter().zip(&verdicts) {
        if c.parsed.is_ok() {
            valid += 1;
        }
        match (v, &c.parsed) {
            (Verdict::Served, Ok(k)) => {
                let (printed, asked) = filter.check(k);
                if printed {
                    text.push_str(&k.to_line());
                    text.push('\n');
                    served += 1;
                    matched += usize::from(asked);
                }
            }
            (Verdict::Dropped(why), parsed) => {
                // Only the `nomatch` reason needs to know which key it was.
                let asked = matches!(&filter, FpFilter::Sha256(_))
                    && parsed.as_ref().is_ok_and(|k| filter.check(k).1);
                drops.push((asked, format!("{}:{} {why}", c.source, c.line_no)));
            }
            _ => {}
        }
    }
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        return fail(record, format!("writing to stdout: {e}"));
    }

    record.push(
        "source",
        if sources.is_empty() {
            "none".into()
        } else {
            sources.join("+")
        },
    );
    if let Some(a) = age {
        record.push("age_s", a);
    }
    record.push("keys", valid);
    record.push("served", served);
    record.push("dropped", drops.len());
    let decision = match &filter {
        _ if cands.is_empty() => "nokeys",
        FpFilter::All => "serve",
        FpFilter::Sha256(_) if matched > 0 => "match",
        FpFilter::Sha256(_) => {
            let why = drops
                .iter()
                .find(|(asked, _)| *asked)
                .map(|(_, d)| format!("key dropped by policy: {d}"))
                .unwrap_or_else(|| "no authorized key has this fingerprint".into());
            record.push("reason", why);
            "nomatch"
        }
    };
    if !drops.is_empty() {
        let detail: Vec<&str> = drops.iter().take(5).map(|(_, d)| d.as_str()).collect();
        record.push("drop", detail.join("; "));
    }
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

/// Starts a record; the decision (first field) is filled in by `finish`.
fn record_head(record: &mut Record, user: &str, fp: Option<&str>) {
    record.push("decision", "");
    record.push("user", user);
    if let Some(fp) = fp {
        record.push("fp", fp);
    }
}

fn finish(mut record: Record, decision: &str, started: Instant) -> Record {
    record.set_first("decision", decision);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    record.push("ms", format!("{ms:.1}"));
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: u64 = 1_700_000_000;

    fn ttls() -> Ttls {
        Ttls {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
        }
    }

    fn entry(age: u64) -> Entry {
        Entry {
            fetched_at: T - age,
            status: Status::Keys,
            etag: Some("\"e1\"".into()),
            url: "http://d/alice".into(),
            serial: None,
            body: "old\n".into(),
        }
    }

    fn never(_: &Request) -> Fetch {
        panic!("fresh cache must not touch the directory")
    }

    #[test]
    fn fresh_entry_needs_no_network() {
        let r = resolve(Lookup::Found(entry(10)), T, &ttls(), None, never).unwrap();
        assert_eq!(r.source, "cache");
        assert_eq!(r.age_s, 10);
        assert_eq!(r.body.as_deref(), Some("old\n"));
        assert!(r.store.is_none());
    }

    #[test]
    fn stale_entry_revalidates_with_etag() {
        let r = resolve(Lookup::Found(entry(400)), T, &ttls(), None, |req| {
            assert_eq!(req.etag, Some("\"e1\""));
            Fetch::NotModified {
                url: "http://m2/alice".into(),
            }
        })
        .unwrap();
        assert_eq!(r.source, "directory");
        assert!(r.refresh_only);
        let stored = r.store.unwrap();
        assert_eq!(stored.fetched_at, T);
        assert_eq!(stored.body, "old\n");
        assert_eq!(stored.url, "http://m2/alice");
    }

    #[test]
    fn new_body_replaces_entry() {
        let r = resolve(Lookup::Found(entry(400)), T, &ttls(), None, |_| {
            Fetch::Keys {
                body: "new\n".into(),
                etag: Some("\"e2\"".into()),
                url: "u".into(),
                serial: None,
            }
        })
        .unwrap();
        assert_eq!(r.body.as_deref(), Some("new\n"));
        assert_eq!(r.store.unwrap().etag.as_deref(), Some("\"e2\""));
    }

    #[test]
    fn not_found_is_authoritative_and_cached() {
        let r = resolve(Lookup::Missing, T, &ttls(), None, |req| {
            assert_eq!(req.etag, None);
            Fetch::NoKeys { url: "u".into() }
        })
        .unwrap();
        assert_eq!(r.body, None);
        assert_eq!(r.store.unwrap().status, Status::NoKeys);
        // a remembered 404 is fresh for negative_ttl
        let mut neg = entry(10);
        neg.status = Status::NoKeys;
        let r = resolve(Lookup::Found(neg), T, &ttls(), None, never).unwrap();
        assert_eq!((r.body, r.source), (None, "cache"));
    }

    #[test]
    fn unavailable_serves_stale_within_max_stale_only() {
        let down = |_: &Request| Fetch::Unavailable {
            errors: vec!["m1: HTTP 500".into()],
        };
        let r = resolve(Lookup::Found(entry(400)), T, &ttls(), None, down).unwrap();
        assert_eq!(r.source, "stale");
        assert!(r.warning.unwrap().contains("HTTP 500"));
        let e = resolve(Lookup::Found(entry(3600)), T, &ttls(), None, down).unwrap_err();
        assert!(e.contains("too old"), "{e}");
        let e = resolve(Lookup::Missing, T, &ttls(), None, down).unwrap_err();
        assert!(e.contains("nothing cached"), "{e}");
    }

    #[test]
    fn corrupt_entry_is_never_served() {
        let down = |_: &Request| Fetch::Unavailable { errors: vec![] };
        let corrupt = || Lookup::Corrupt(cache::Corrupt("checksum mismatch"));
        assert!(resolve(corrupt(), T, &ttls(), None, down).is_err());
        let r = resolve(corrupt(), T, &ttls(), None, |req| {
            assert_eq!(req.etag, None);
            Fetch::Keys {
                body: "k\n".into(),
                etag: None,
                url: "u".into(),
                serial: None,
            }
        })
        .unwrap();
        assert!(r.warning.unwrap().contains("checksum"));
    }

    #[test]
    fn future_entry_is_refreshed_not_trusted() {
        let mut e = entry(0);
        e.fetched_at = T + 1000;
        let down = |_: &Request| Fetch::Unavailable { errors: vec![] };
        assert!(resolve(Lookup::Found(e), T, &ttls(), None, down).is_err());
    }

    fn signed_entry(expires: i64) -> Entry {
        let h = crate::signed::Header {
            user: "alice".into(),
            serial: 7,
            expires,
        };
        Entry {
            serial: Some(7),
            body: format!("{}\nk\n", h.to_line()),
            ..entry(10)
        }
    }

    #[test]
    fn signed_cache_entries_expire_with_their_header() {
        let ok = signed_entry(T as i64 + 100);
        let r = resolve(Lookup::Found(ok), T, &ttls(), Some("alice"), never).unwrap();
        assert_eq!(r.source, "cache");
        // expired header: not fresh, not stale-servable, no 304 revalidation
        let down = |req: &Request| {
            assert_eq!(req.etag, None);
            assert_eq!(req.min_serial, Some(7));
            Fetch::Unavailable {
                errors: vec!["down".into()],
            }
        };
        let old = signed_entry(T as i64 - 1);
        let err = resolve(Lookup::Found(old), T, &ttls(), Some("alice"), down).unwrap_err();
        assert!(
            err.contains("cannot be served (signed file expired"),
            "{err}"
        );
        // an unsigned entry is not trusted once signatures are required
        let down_unsigned = |req: &Request| {
            assert_eq!(req.etag, None);
            Fetch::Unavailable { errors: vec![] }
        };
        assert!(resolve(
            Lookup::Found(entry(10)),
            T,
            &ttls(),
            Some("alice"),
            down_unsigned
        )
        .is_err());
        // another user's signed file is not served from the cache either
        let ok = signed_entry(T as i64 + 100);
        assert!(
            resolve(Lookup::Found(ok), T, &ttls(), Some("bob"), |_: &Request| {
                Fetch::Unavailable { errors: vec![] }
            })
            .is_err()
        );
    }

    #[test]
    fn candidates_keep_line_numbers() {
        let mut c = Vec::new();
        candidates("directory", "# c\n\nssh-ed25519 AAAA\n", &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line_no, 3);
        assert!(c[0].parsed.is_err());
    }
}
