//! `keyward sync`: refresh the cache of users already cached.
//!
//! Conditional GETs (the cached ETag), a bounded number of worker threads,
//! an optional random delay before starting (so a fleet does not hit the
//! directory in the same second). A 404 removes the entry: the directory no
//! longer knows the user. A transient error never touches an entry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit::Record;
use crate::cache::{Cache, Entry, Lookup, Status};
use crate::config::Config;
use crate::directory::{Directory, Fetch, Request};

/// What happened to one user's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Updated,
    Unchanged,
    Removed,
    Failed(String),
}

/// The pure part: what to store for a user given the directory's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Write(Entry),
    /// Same body, new age (304): no fsync needed.
    Refresh(Entry),
    Remove,
    Keep(String),
}

pub fn decide(old: Option<&Entry>, fetched: Fetch, now: u64) -> (Action, Change) {
    match fetched {
        Fetch::Keys {
            body,
            etag,
            url,
            serial,
        } => {
            let same = old.is_some_and(|o| o.status == Status::Keys && o.body == body);
            let entry = Entry {
                fetched_at: now,
                status: Status::Keys,
                etag,
                url,
                serial,
                body,
            };
            let change = if same {
                Change::Unchanged
            } else {
                Change::Updated
            };
            (Action::Write(entry), change)
        }
        Fetch::NotModified { url } => match old {
            Some(o) if o.status == Status::Keys => {
                let mut e = o.clone();
                e.fetched_at = now;
                e.url = url;
                (Action::Refresh(e), Change::Unchanged)
            }
            _ => {
                let why = "304 without a cached entry".to_string();
                (Action::Keep(why.clone()), Change::Failed(why))
            }
        },
        Fetch::NoKeys { .. } => (Action::Remove, Change::Removed),
        Fetch::Unavailable { errors } => {
            let why = errors.join("; ");
            (Action::Keep(why.clone()), Change::Failed(why))
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<(String, String)>,
}

impl Summary {
    fn add(&mut self, user: &str, change: Change) {
        match change {
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
            Change::Removed => self.removed += 1,
            Change::Failed(why) => self.failed.push((user.to_owned(), why)),
        }
    }

    pub fn record(&self, elapsed: Duration) -> Record {
        let mut r = Record::new()
            .with("decision", "sync")
            .with("users", self.users)
            .with("updated", self.updated)
            .with("unchanged", self.unchanged)
            .with("removed", self.removed)
            .with("failed", self.failed.len());
        if let Some((user, why)) = self.failed.first() {
            r.push("reason", format!("{user}: {why}"));
        }
        r.with("ms", format!("{:.1}", elapsed.as_secs_f64() * 1000.0))
    }
}

/// Refreshes `users` with `jobs` threads; `progress` is called after each.
pub fn sync_users(
    cache: &Cache,
    dir: &(dyn Directory + Sync),
    users: &[String],
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Summary {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let summary = Mutex::new(Summary {
        users: users.len(),
        ..Summary::default()
    });
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 64).min(users.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(user) = users.get(i) else { break };
                let change = sync_one(cache, dir, user);
                if let Ok(mut sum) = summary.lock() {
                    sum.add(user, change);
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, users.len());
            });
        }
    });
    summary.into_inner().unwrap_or_default()
}

fn sync_one(cache: &Cache, dir: &dyn Directory, user: &str) -> Change {
    let old = match cache.read(user) {
        Ok(Lookup::Found(e)) => Some(e),
        Ok(Lookup::Missing | Lookup::Corrupt(_)) => None,
        Err(e) => return Change::Failed(e.to_string()),
    };
    let etag = old
        .as_ref()
        .filter(|e| e.status == Status::Keys)
        .and_then(|e| e.etag.as_deref());
    let fetched = dir.fetch(&Request {
        user,
        etag,
        min_serial: old.as_ref().and_then(|e| e.serial),
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (action, change) = decide(old.as_ref(), fetched, now);
    let stored = match action {
        Action::Write(e) => cache.write(user, &e),
        Action::Refresh(e) => cache.refresh(user, &e),
        Action::Remove => cache.remove(user),
        Action::Keep(_) => Ok(()),
    };
    match stored {
        Ok(()) => change,
        Err(e) => Change::Failed(e.to_string()),
    }
}

/// A random delay in [0, max): spreads a fleet's timers further.
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let r = if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        u64::from(std::process::id())
    };
    Duration::from_millis(r % max.as_millis().max(1) as u64)
}

/// Everything `keyward sync` does after the config is loaded and privileges
/// are dropped.
pub fn run(
    config: &Config,
    only: Option<&str>,
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Summary, String> {
    let cache = Cache::new(&config.cache.dir);
    let users = match only {
        Some(u) => vec![u.to_owned()],
        None => cache.users().map_err(|e| e.to_string())?,
    };
    let dir = crate::directory::HttpDirectory::pooled(&config.directory);
    Ok(sync_users(&cache, &dir, &users, jobs, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old() -> Entry {
        Entry {
            fetched_at: 100,
            status: Status::Keys,
            etag: Some("\"a\"".into()),
            url: "u".into(),
            serial: None,
            body: "k\n".into(),
        }
    }

    #[test]
    fn not_modified_refreshes_age_only() {
        let (a, c) = decide(Some(&old()), Fetch::NotModified { url: "u2".into() }, 200);
        assert_eq!(c, Change::Unchanged);
        match a {
            Action::Refresh(e) => {
                assert_eq!(e.fetched_at, 200);
                assert_eq!(e.body, "k\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_body_updates() {
        let f = Fetch::Keys {
            body: "k2\n".into(),
            etag: None,
            url: "u".into(),
            serial: None,
        };
        assert_eq!(decide(Some(&old()), f, 200).1, Change::Updated);
        let same = Fetch::Keys {
            body: "k\n".into(),
            etag: None,
            url: "u".into(),
            serial: None,
        };
        assert_eq!(decide(Some(&old()), same, 200).1, Change::Unchanged);
    }

    #[test]
    fn unknown_user_removed_transient_error_kept() {
        assert_eq!(
            decide(Some(&old()), Fetch::NoKeys { url: "u".into() }, 200),
            (Action::Remove, Change::Removed)
        );
        let (a, c) = decide(
            Some(&old()),
            Fetch::Unavailable {
                errors: vec!["HTTP 503".into()],
            },
            200,
        );
        assert!(matches!(a, Action::Keep(_)));
        assert!(matches!(c, Change::Failed(w) if w.contains("503")));
    }

    #[test]
    fn jitter_is_bounded() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) < Duration::from_millis(50));
        }
    }
}
