//! `keyward sync`: refresh the cache of users already cached.
//!
//! Conditional GETs (the cached ETag), a bounded number of worker threads,
//! an optional random delay before starting (so a fleet does not hit the
//! directory in the same second). What each answer does to an entry is
//! `state`'s rule, the same one the login path follows: a 404 removes the
//! entry but never the rollback floor; a transient error touches nothing.
//! Principals entries (`<dir>/.principals`) are refreshed the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::audit::Record;
use crate::cache::{Cache, Kind};
use crate::config::Config;
use crate::directory::{Directory, Request};
use crate::os::clock::now_secs;
use crate::state::{self, Current, Mode, Ttls};

pub use crate::state::Change;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<(String, String)>,
    /// How many of `users` were principals entries.
    pub principals: usize,
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
        if self.principals > 0 {
            r.push("principals", self.principals);
        }
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
    ttls: &Ttls,
    signed: bool,
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
                let change = sync_one(cache, dir, ttls, signed, user);
                if let Ok(mut sum) = summary.lock() {
                    match cache.kind() {
                        Kind::Keys => sum.add(user, change),
                        Kind::Principals => sum.add(&format!("{user} (principals)"), change),
                    }
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, users.len());
            });
        }
    });
    summary.into_inner().unwrap_or_default()
}

fn sync_one(cache: &Cache, dir: &dyn Directory, ttls: &Ttls, signed: bool, user: &str) -> Change {
    let read = cache.read(user).and_then(|lookup| {
        let floor = if signed {
            cache.read_floor(user)?
        } else {
            None
        };
        Ok(Current::new(lookup, floor))
    });
    let cur = match read {
        Ok(c) => c,
        Err(e) => return Change::Failed(e.to_string()),
    };
    let mode = Mode::of(signed, user, cache.kind());
    let t = state::sync(&cur, now_secs(), ttls, mode, |etag, floor| {
        dir.fetch(&Request { user, etag, floor })
    });
    match cache.apply(user, &t) {
        Ok(()) => t.change,
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
    let ttls = Ttls::from_config(&config.cache);
    let signed = config.directory.signed();
    let mut summary = sync_users(&cache, &dir, &ttls, signed, &users, jobs, progress);
    // Principals: the accounts whose list is cached (`--user`: only if it
    // is), so a host without certificate logins asks for nothing more.
    let pcache = Cache::for_kind(&config.cache.dir, Kind::Principals);
    let mut pusers = pcache.users().map_err(|e| e.to_string())?;
    if let Some(u) = only {
        pusers.retain(|p| p == u);
    }
    if !pusers.is_empty() {
        let pdir =
            crate::directory::HttpDirectory::pooled(&config.directory).for_kind(Kind::Principals);
        let p = sync_users(&pcache, &pdir, &ttls, signed, &pusers, jobs, progress);
        summary.users += p.users;
        summary.principals += p.users;
        summary.updated += p.updated;
        summary.unchanged += p.unchanged;
        summary.removed += p.removed;
        summary.failed.extend(p.failed);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    // What sync does to an entry is specified by `state`'s table tests.

    #[test]
    fn jitter_is_bounded() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) < Duration::from_millis(50));
        }
    }
}
