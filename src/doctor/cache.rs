//! The cache as the login path will find it: entries older than `ttl` or
//! `max_stale`, corrupt or unsafe entries, leftover temp files. Reading never
//! changes anything. Classification is pure; `scan` reads the directory.

use std::path::Path;
use std::time::SystemTime;

use super::perms;
use crate::cache::{Cache, CacheError, Entry, Freshness, Kind, Lookup, Ttls};
use crate::config::Config;
use crate::os::clock::now_secs;
use crate::os::nss::Account;
use crate::os::privdrop;
use crate::os::safepath::Problem;
use crate::report::Check;
use crate::signed::Signer;
use crate::term::human_age;

/// What the login path would do with one entry now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Fresh,
    /// Older than ttl: refreshed at the next login (served if the directory
    /// is down).
    Stale,
    /// Never served again: older than max_stale, from the future, or a
    /// signed header that expired.
    Expired(String),
    Corrupt(String),
    /// The login path fails closed on it; the fix when the rule that
    /// refused it names one.
    Unsafe {
        why: String,
        fix: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub user: String,
    pub state: State,
    pub age: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub items: Vec<Item>,
    /// `.tmp-*` files older than a minute (a crash between write and rename).
    pub leftovers: Vec<(String, u64)>,
}

/// The state of `e` at `now`; `signed` is Some(user) when signatures are
/// required (a cached signed entry is usable only while its header is).
pub fn classify(e: &Entry, now: u64, ttls: &Ttls, signed: Option<(&str, &[Signer])>) -> State {
    classify_kind(e, now, ttls, signed, Kind::Keys)
}

/// [`classify`] for an entry of `kind` (a principals list's signed header
/// must say so).
pub fn classify_kind(
    e: &Entry,
    now: u64,
    ttls: &Ttls,
    signed: Option<(&str, &[Signer])>,
    kind: Kind,
) -> State {
    // The login path's own judgement (state::assess), floor included where
    // the entry carries one.
    let cur = crate::state::Current {
        entry: Some(e.clone()),
        corrupt: None,
        floor: None,
    };
    let mode = match signed {
        Some((user, signers)) => crate::state::Mode::Signed {
            user,
            kind,
            signers,
        },
        None => crate::state::Mode::Unsigned,
    };
    let a = crate::state::assess(&cur, now, ttls, mode);
    if let Some(why) = a.unusable {
        return State::Expired(why);
    }
    match a.freshness.unwrap_or(Freshness::Expired) {
        Freshness::Fresh => State::Fresh,
        Freshness::Stale => State::Stale,
        Freshness::Expired => match e.age(now) {
            None => State::Expired("dated in the future (clock?)".into()),
            Some(a) => State::Expired(format!(
                "{} old, max_stale {}",
                human_age(a),
                human_age(ttls.max_stale.as_secs())
            )),
        },
    }
}

fn list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s += &format!(" and {} more", names.len() - 5);
    }
    s
}

/// `N entr(y|ies)`, with an adjective when given (`2 corrupt entries`).
fn entries(n: usize, adjective: &str) -> String {
    let word = if n == 1 { "entry" } else { "entries" };
    if adjective.is_empty() {
        format!("{n} {word}")
    } else {
        format!("{n} {adjective} {word}")
    }
}

/// The `cache.*` checks for a scan of `dir`.
pub fn checks(scan: &Scan, dir: &Path, ttls: &Ttls) -> Vec<Check> {
    vec![
        entries_check(scan, dir, ttls),
        expired_check(scan, ttls),
        corrupt_check(scan, dir),
        tmp_check(scan, dir),
    ]
}

/// `cache.entries`: how many, how fresh; a failure for entries the login
/// path refuses (it fails closed for those users).
fn entries_check(scan: &Scan, dir: &Path, ttls: &Ttls) -> Check {
    let count = |f: &dyn Fn(&State) -> bool| scan.items.iter().filter(|i| f(&i.state)).count();
    let unsafe_: Vec<(&str, &str, Option<&String>)> = scan
        .items
        .iter()
        .filter_map(|i| match &i.state {
            State::Unsafe { why, fix } => Some((i.user.as_str(), why.as_str(), fix.as_ref())),
            _ => None,
        })
        .collect();
    let Some((_, why, fix)) = unsafe_.first() else {
        return Check::ok(
            "cache.entries",
            format!(
                "{}: {} fresh, {} stale (older than ttl {}: refreshed at the next login or sync)",
                entries(scan.items.len(), ""),
                count(&|s| *s == State::Fresh),
                count(&|s| *s == State::Stale),
                human_age(ttls.ttl.as_secs())
            ),
        );
    };
    let users: Vec<String> = unsafe_.iter().map(|(u, _, _)| u.to_string()).collect();
    let fix = fix.cloned().unwrap_or_else(|| {
        format!(
            "chown the entries to the [cache] owner and chmod 0640 them (in {})",
            dir.display()
        )
    });
    Check::fail(
        "cache.entries",
        format!(
            "{} ({}): keyward fails closed for these users: {why}",
            entries(unsafe_.len(), "unsafe"),
            list(&users)
        ),
        fix,
    )
}

/// `cache.expired`: entries never served again.
fn expired_check(scan: &Scan, ttls: &Ttls) -> Check {
    let names: Vec<String> = scan
        .items
        .iter()
        .filter_map(|i| match &i.state {
            State::Expired(why) => Some(format!("{} ({why})", i.user)),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Check::ok(
            "cache.expired",
            format!(
                "no entry older than max_stale {}",
                human_age(ttls.max_stale.as_secs())
            ),
        );
    }
    Check::warn(
        "cache.expired",
        format!(
            "{} entr{} older than max_stale, never served again: {}; these users cannot log in while the directory is unreachable",
            names.len(),
            if names.len() == 1 { "y is" } else { "ies are" },
            list(&names)
        ),
        "keyward sync (and check that keyward-sync.timer runs)",
    )
}

/// `cache.corrupt`: never served, refetched at the next login.
fn corrupt_check(scan: &Scan, dir: &Path) -> Check {
    let corrupt: Vec<(&str, String)> = scan
        .items
        .iter()
        .filter_map(|i| match &i.state {
            State::Corrupt(why) => Some((i.user.as_str(), format!("{} ({why})", i.user))),
            _ => None,
        })
        .collect();
    let Some((first, _)) = corrupt.first() else {
        return Check::ok("cache.corrupt", "no corrupt entry");
    };
    let names: Vec<String> = corrupt.iter().map(|(_, n)| n.clone()).collect();
    let d = dir.display();
    Check::warn(
        "cache.corrupt",
        format!(
            "{} (never served; refetched at the next login): {}",
            entries(corrupt.len(), "corrupt"),
            list(&names)
        ),
        format!("keyward sync --user {first} (or rm {d}/{first}); check the disk"),
    )
}

/// `cache.tmp`: temp files left by an interrupted write.
fn tmp_check(scan: &Scan, dir: &Path) -> Check {
    if scan.leftovers.is_empty() {
        return Check::ok("cache.tmp", "no leftover temporary files");
    }
    let names: Vec<String> = scan
        .leftovers
        .iter()
        .map(|(n, age)| format!("{n} ({})", human_age(*age)))
        .collect();
    Check::warn(
        "cache.tmp",
        format!(
            "{} leftover temporary file(s) from an interrupted write: {}",
            scan.leftovers.len(),
            list(&names)
        ),
        format!("rm -f {}/.tmp-*", dir.display()),
    )
}

/// An entry the login path refuses, with the fix for a mode problem.
fn unsafe_state(e: &CacheError) -> State {
    let fix = match e {
        CacheError::Unsafe(u) => match u.problem {
            Problem::Writable { mode } => Some(perms::chmod_fix(mode, &u.path)),
            _ => None,
        },
        _ => None,
    };
    State::Unsafe {
        why: e.to_string(),
        fix,
    }
}

/// Reads every entry of the cache in `dir` (keys, then principals lists,
/// named `USER (principals)`) with the current credentials.
pub fn scan(
    dir: &Path,
    state: &Path,
    ttls: &Ttls,
    signers: Option<&[Signer]>,
    now: u64,
) -> Result<Scan, String> {
    let mut out = Scan::default();
    for kind in [Kind::Keys, Kind::Principals] {
        let cache = Cache::for_kind(dir, state, kind);
        let here = cache.dir();
        let rd = match std::fs::read_dir(here) {
            Err(e) if kind == Kind::Principals && e.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            rd => rd.map_err(|e| format!("{}: {e}", here.display()))?,
        };
        let mut leftovers: Vec<(String, u64)> = rd
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let mtime = e.metadata().ok().and_then(|m| m.modified().ok());
                Some((name, mtime))
            })
            .filter(|(n, _)| n.starts_with(".tmp-"))
            .map(|(n, mtime): (String, Option<SystemTime>)| {
                let name = match kind {
                    Kind::Keys => n,
                    Kind::Principals => format!(".principals/{n}"),
                };
                (name, mtime.map(crate::os::clock::secs_since).unwrap_or(0))
            })
            .filter(|(_, age)| *age > 60)
            .collect();
        leftovers.sort();
        out.leftovers.extend(leftovers);
        // The cache's own reading of its file names (encoded, hashed).
        let users = cache.users().map_err(|e| e.to_string())?;
        for user in users {
            let (state, age) = match cache.read(&user) {
                Ok(Lookup::Found(e)) => (
                    classify_kind(&e, now, ttls, signers.map(|s| (user.as_str(), s)), kind),
                    e.age(now),
                ),
                Ok(Lookup::Corrupt(c)) => (State::Corrupt(c.0.to_owned()), None),
                Ok(Lookup::Missing) => continue,
                Err(e) => (unsafe_state(&e), None),
            };
            out.items.push(Item {
                user: match kind {
                    Kind::Keys => user,
                    Kind::Principals => format!("{user} (principals)"),
                },
                state,
                age,
            });
        }
    }
    Ok(out)
}

/// The `cache.*` entry checks, scanning as the `[cache] owner` when root
/// (the login path never reads the cache as root either).
pub fn entry_checks(config: &Config, acct: Option<&Account>, root: bool) -> Vec<Check> {
    let ttls = Ttls::from_config(&config.cache);
    let dir = &config.cache.dir;
    let scan = || {
        let signers = crate::lookup::trusted_signers(&config.directory)?;
        scan(
            dir,
            &config.state.dir,
            &ttls,
            signers.as_deref(),
            now_secs(),
        )
    };
    let result = match acct {
        Some(a) if root => privdrop::as_user(a, scan).and_then(|r| r),
        _ if root => Err("[cache] owner unusable".into()),
        _ => scan(),
    };
    let why = match result {
        Ok(s) => return checks(&s, dir, &ttls),
        Err(e) if root => format!("skipped: {e}"),
        Err(e) => format!("skipped: needs root or the [cache] owner ({e})"),
    };
    [
        "cache.entries",
        "cache.expired",
        "cache.corrupt",
        "cache.tmp",
    ]
    .iter()
    .map(|id| Check::skip(id, why.clone()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use std::time::Duration;

    const T: u64 = 1_800_000_000;

    fn ttls() -> Ttls {
        Ttls {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(3 * 86400),
        }
    }

    const FPS: &[Signer] = &[Signer::Sha256([7; 32])];

    fn entry(age: u64) -> Entry {
        Entry {
            fetched_at: T - age,
            status: crate::cache::Status::Keys,
            etag: None,
            url: "u".into(),
            serial: None,
            signer: None,
            body: "k\n".into(),
        }
    }

    #[test]
    fn states() {
        assert_eq!(classify(&entry(10), T, &ttls(), None), State::Fresh);
        assert_eq!(classify(&entry(400), T, &ttls(), None), State::Stale);
        match classify(&entry(4 * 86400), T, &ttls(), None) {
            State::Expired(w) => assert_eq!(w, "4d old, max_stale 3d"),
            s => panic!("{s:?}"),
        }
        let mut future = entry(0);
        future.fetched_at = T + 100;
        assert!(
            matches!(classify(&future, T, &ttls(), None), State::Expired(w) if w.contains("future"))
        );
        // signatures required: an unsigned entry is not usable
        assert!(
            matches!(classify(&entry(10), T, &ttls(), Some(("alice", FPS))), State::Expired(w) if w.contains("not signed"))
        );
        let h = crate::signed::Header {
            user: "alice".into(),
            kind: crate::entry::Kind::Keys,
            serial: 3,
            expires: T as i64 - 1,
        };
        let mut signed = entry(10);
        signed.serial = Some(3);
        signed.signer = Some(FPS[0]);
        signed.body = format!("{}\nk\n", h.to_line());
        assert!(
            matches!(classify(&signed, T, &ttls(), Some(("alice", FPS))), State::Expired(w) if w.contains("expired"))
        );
        // A removed signer's entry is never usable, whatever its dates.
        assert!(
            matches!(classify(&signed, T, &ttls(), Some(("alice", &[]))), State::Expired(w) if w.contains("no longer a configured signer"))
        );
    }

    #[test]
    fn check_lines() {
        let scan = Scan {
            items: vec![
                Item {
                    user: "alice".into(),
                    state: State::Fresh,
                    age: Some(1),
                },
                Item {
                    user: "bob".into(),
                    state: State::Stale,
                    age: Some(400),
                },
                Item {
                    user: "carol".into(),
                    state: State::Expired("4d old, max_stale 3d".into()),
                    age: None,
                },
                Item {
                    user: "dave".into(),
                    state: State::Corrupt("checksum mismatch".into()),
                    age: None,
                },
            ],
            leftovers: vec![(".tmp-abc".into(), 3600)],
        };
        let c = checks(&scan, Path::new("/var/cache/keyward"), &ttls());
        let by = |id: &str| c.iter().find(|x| x.id == id).unwrap();
        assert_eq!(by("cache.entries").status, Status::Ok);
        assert!(by("cache.entries").found.contains("1 fresh, 1 stale"));
        assert_eq!(by("cache.expired").status, Status::Warn);
        assert!(by("cache.expired")
            .found
            .contains("carol (4d old, max_stale 3d)"));
        assert_eq!(by("cache.corrupt").status, Status::Warn);
        assert_eq!(
            by("cache.corrupt").fix.as_deref(),
            Some("keyward sync --user dave (or rm /var/cache/keyward/dave); check the disk")
        );
        assert_eq!(
            by("cache.tmp").fix.as_deref(),
            Some("rm -f /var/cache/keyward/.tmp-*")
        );
        let bad = Scan {
            items: vec![Item {
                user: "eve".into(),
                state: State::Unsafe {
                    why: "unsafe cache: bad modes for /c/eve (mode 0666, group- and world-writable; fix: chmod go-w /c/eve)".into(),
                    fix: Some("chmod go-w /c/eve".into()),
                },
                age: None,
            }],
            leftovers: vec![],
        };
        let c = checks(&bad, Path::new("/c"), &ttls());
        assert_eq!(c[0].status, Status::Fail);
        assert_eq!(c[0].fix.as_deref(), Some("chmod go-w /c/eve"));
    }
}
