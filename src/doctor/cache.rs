//! The cache as the login path will find it: entries older than `ttl` or
//! `max_stale`, corrupt or unsafe entries, leftover temp files. Reading never
//! changes anything. Classification is pure; `scan` reads the directory.

use std::path::Path;
use std::time::SystemTime;

use super::Check;
use crate::cache::{Cache, Entry, Freshness, Lookup, Ttls};
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
    /// The login path fails closed on it.
    Unsafe(String),
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
pub fn classify(e: &Entry, now: u64, ttls: &Ttls, signed: Option<&str>) -> State {
    // The login path's own judgement (state::assess), floor included where
    // the entry carries one.
    let cur = crate::state::Current {
        entry: Some(e.clone()),
        corrupt: None,
        floor: None,
    };
    let mode = match signed {
        Some(user) => crate::state::Mode::Signed {
            user,
            kind: crate::cache::Kind::Keys,
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

/// The `cache.*` checks for a scan of `dir`.
pub fn checks(scan: &Scan, dir: &Path, ttls: &Ttls) -> Vec<Check> {
    let d = dir.display();
    let count = |f: &dyn Fn(&State) -> bool| scan.items.iter().filter(|i| f(&i.state)).count();
    let fresh = count(&|s| *s == State::Fresh);
    let stale = count(&|s| *s == State::Stale);
    let mut out = Vec::new();

    let unsafe_: Vec<&Item> = scan
        .items
        .iter()
        .filter(|i| matches!(i.state, State::Unsafe(_)))
        .collect();
    let summary = format!(
        "{} entr{}: {fresh} fresh, {stale} stale (older than ttl {}: refreshed at the next login or sync)",
        scan.items.len(),
        if scan.items.len() == 1 { "y" } else { "ies" },
        human_age(ttls.ttl.as_secs())
    );
    match unsafe_.first() {
        Some(Item {
            state: State::Unsafe(why),
            ..
        }) => {
            let fix = why
                .split("fix: ")
                .nth(1)
                .map(|f| f.trim_end_matches(')').to_owned())
                .unwrap_or_else(|| {
                    format!("chown the entries to the [cache] owner and chmod 0640 them (in {d})")
                });
            out.push(Check::fail(
                "cache.entries",
                format!(
                    "{} unsafe entr{} ({}): keyward fails closed for these users: {why}",
                    unsafe_.len(),
                    if unsafe_.len() == 1 { "y" } else { "ies" },
                    list(&unsafe_.iter().map(|i| i.user.clone()).collect::<Vec<_>>())
                ),
                fix,
            ))
        }
        _ => out.push(Check::ok("cache.entries", summary)),
    }

    let expired: Vec<&Item> = scan
        .items
        .iter()
        .filter(|i| matches!(i.state, State::Expired(_)))
        .collect();
    if expired.is_empty() {
        out.push(Check::ok(
            "cache.expired",
            format!(
                "no entry older than max_stale {}",
                human_age(ttls.max_stale.as_secs())
            ),
        ));
    } else {
        let names: Vec<String> = expired
            .iter()
            .map(|i| match &i.state {
                State::Expired(why) => format!("{} ({why})", i.user),
                _ => i.user.clone(),
            })
            .collect();
        out.push(Check::warn(
            "cache.expired",
            format!(
                "{} entr{} older than max_stale, never served again: {}; these users cannot log in while the directory is unreachable",
                expired.len(),
                if expired.len() == 1 { "y is" } else { "ies are" },
                list(&names)
            ),
            "keyward sync (and check that keyward-sync.timer runs)",
        ));
    }

    let corrupt: Vec<String> = scan
        .items
        .iter()
        .filter_map(|i| match &i.state {
            State::Corrupt(why) => Some(format!("{} ({why})", i.user)),
            _ => None,
        })
        .collect();
    if corrupt.is_empty() {
        out.push(Check::ok("cache.corrupt", "no corrupt entry"));
    } else {
        let first = scan
            .items
            .iter()
            .find(|i| matches!(i.state, State::Corrupt(_)))
            .map(|i| i.user.as_str())
            .unwrap_or_default();
        out.push(Check::warn(
            "cache.corrupt",
            format!(
                "{} corrupt entr{} (never served; refetched at the next login): {}",
                corrupt.len(),
                if corrupt.len() == 1 { "y" } else { "ies" },
                list(&corrupt)
            ),
            format!("keyward sync --user {first} (or rm {d}/{first}); check the disk"),
        ));
    }

    if scan.leftovers.is_empty() {
        out.push(Check::ok("cache.tmp", "no leftover temporary files"));
    } else {
        let names: Vec<String> = scan
            .leftovers
            .iter()
            .map(|(n, age)| format!("{n} ({})", human_age(*age)))
            .collect();
        out.push(Check::warn(
            "cache.tmp",
            format!(
                "{} leftover temporary file(s) from an interrupted write: {}",
                scan.leftovers.len(),
                list(&names)
            ),
            format!("rm -f {d}/.tmp-*"),
        ));
    }
    out
}

/// Reads every entry of the cache in `dir` with the current credentials.
pub fn scan(dir: &Path, ttls: &Ttls, signed: bool, now: u64) -> Result<Scan, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cache = Cache::new(dir);
    let mut out = Scan::default();
    let mut names: Vec<(String, Option<SystemTime>)> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let m = e.metadata().ok();
            Some((
                e.file_name().into_string().ok()?,
                m.and_then(|m| m.modified().ok()),
            ))
        })
        .collect();
    names.sort();
    for (name, mtime) in names {
        if name.starts_with(".tmp-") {
            let age = mtime
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if age > 60 {
                out.leftovers.push((name, age));
            }
            continue;
        }
        if crate::username::validate(&name, 256).is_err() {
            continue;
        }
        let (state, age) = match cache.read(&name) {
            Ok(Lookup::Found(e)) => (
                classify(&e, now, ttls, signed.then_some(name.as_str())),
                e.age(now),
            ),
            Ok(Lookup::Corrupt(c)) => (State::Corrupt(c.0.to_owned()), None),
            Ok(Lookup::Missing) => continue,
            Err(e) => (State::Unsafe(e.to_string()), None),
        };
        out.items.push(Item {
            user: name,
            state,
            age,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use std::time::Duration;

    const T: u64 = 1_800_000_000;

    fn ttls() -> Ttls {
        Ttls {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(3 * 86400),
        }
    }

    fn entry(age: u64) -> Entry {
        Entry {
            fetched_at: T - age,
            status: crate::cache::Status::Keys,
            etag: None,
            url: "u".into(),
            serial: None,
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
            matches!(classify(&entry(10), T, &ttls(), Some("alice")), State::Expired(w) if w.contains("not signed"))
        );
        let h = crate::signed::Header {
            user: "alice".into(),
            kind: crate::cache::Kind::Keys,
            serial: 3,
            expires: T as i64 - 1,
        };
        let mut signed = entry(10);
        signed.serial = Some(3);
        signed.body = format!("{}\nk\n", h.to_line());
        assert!(
            matches!(classify(&signed, T, &ttls(), Some("alice")), State::Expired(w) if w.contains("expired"))
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
            items: vec![Item { user: "eve".into(), state: State::Unsafe("unsafe cache: bad modes for /c/eve (mode 0666, group- and world-writable; fix: chmod go-w /c/eve)".into()), age: None }],
            leftovers: vec![],
        };
        let c = checks(&bad, Path::new("/c"), &ttls());
        assert_eq!(c[0].status, Status::Fail);
        assert_eq!(c[0].fix.as_deref(), Some("chmod go-w /c/eve"));
    }
}
