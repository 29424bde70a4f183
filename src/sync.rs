//! `keyward sync`: refresh the cache of users already cached.
//!
//! With a directory index (`index`), one conditional GET tells whether
//! anything changed: a 304 (or an unchanged line) refreshes a user's entry
//! without a request, and only users whose line changed are fetched, so a
//! sync costs 1 request when nothing changed and 1 + k when k users did.
//! Without an index (the directory answers 404 for it), or when the index
//! cannot be used, every cached user gets a conditional GET (the cached
//! ETag), as before. Either way, bounded worker threads, an optional random
//! delay before starting (so a fleet does not hit the directory in the same
//! second), and what each answer does to an entry is `state`'s rule, the
//! same one the login path follows: a 404 (or a user the index no longer
//! lists) removes the entry but never the rollback floor; a transient error
//! touches nothing. Principals entries (`<dir>/.principals`) are refreshed
//! the same way, per user (the index lists keys files only).

pub mod delta;
pub mod krl;
mod revocation;
pub mod revoked;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::audit::Record;
use crate::cache::{Cache, Kind, Settle};
use crate::config::Config;
use crate::directory::{Directory, HttpDirectory, IndexFetch, NewIndex, Request};
use crate::index::Index;
use crate::indexcache::{IndexCache, Stored};
use crate::os::clock::now_secs;
use crate::signed::Signer;
use crate::state::{self, Floor, Listing, Mode, Purpose, Ttls};
use crate::statestore::FloorStore;

/// How long sync waits for a user's state lock (held by a login or another
/// sync only for a read and a write, never across a request).
const SYNC_LOCK_WAIT: Duration = Duration::from_secs(10);

pub use crate::state::Change;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<(String, String)>,
    /// How the index was used: `304`, `200`, `delta` (a delta applied:
    /// `sync/delta.rs`), `none` (the directory has none), `off` (not
    /// configured), `unusable` (see `index_error`).
    pub index: Option<&'static str>,
    pub index_error: Option<String>,
    /// The mirror that answered for the index.
    pub mirror: Option<String>,
    /// HTTP requests sent (signatures included).
    pub requests: usize,
    /// How many of `users` were principals entries.
    pub principals: usize,
    /// What became of the revocation list (not asked with `--user`).
    pub revoked: Option<revoked::Outcome>,
    /// When the list was last confirmed current, after this run (the
    /// offline bound's clock), or why it could not be recorded.
    pub revoked_confirmed: Option<Result<u64, String>>,
    /// What became of the KRL for sshd (`[revocation] sshd_krl`).
    pub krl: Option<krl::Outcome>,
    /// How a delta served the index (`sync/delta.rs`): `304`, `current`,
    /// `applied` or `fallback:WHY`; None when the index announces none.
    pub index_delta: Option<String>,
    /// Likewise for the revocation list: `applied` or `fallback:WHY`.
    pub revoked_delta: Option<String>,
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
        if let Some(i) = self.index {
            r.push("index", i);
        }
        if let Some(m) = &self.mirror {
            r.push("mirror", m);
        }
        r.push("requests", self.requests);
        if self.principals > 0 {
            r.push("principals", self.principals);
        }
        if let Some(why) = &self.index_error {
            r.push("index_error", why);
        }
        if let Some(d) = &self.index_delta {
            r.push("index_delta", d);
        }
        if let Some(rv) = &self.revoked {
            r.push("revoked", rv.how);
            if let Some(s) = rv.serial {
                r.push("revoked_serial", s);
            }
            if let Some(why) = &rv.error {
                r.push("revoked_error", why);
            }
        }
        if let Some(Err(why)) = &self.revoked_confirmed {
            r.push("revoked_confirm_error", why);
        }
        if let Some(k) = &self.krl {
            r.push("krl", k.how);
            if let Some(v) = k.version {
                r.push("krl_version", v);
            }
            if let Some(why) = &k.error {
                r.push("krl_error", why);
            }
        }
        if let Some(d) = &self.revoked_delta {
            r.push("revoked_delta", d);
        }
        if let Some((user, why)) = self.failed.first() {
            r.push("reason", format!("{user}: {why}"));
        }
        r.with("ms", format!("{:.1}", elapsed.as_secs_f64() * 1000.0))
    }
}

/// Fetches a user's file at the path an index lists.
pub type ListedFetch<'a> = &'a (dyn Fn(&Request, &str) -> crate::directory::Fetch + Sync);

/// A usable index for this run: its line for each user decides.
pub struct Indexed<'a> {
    pub index: &'a Index<'a>,
    /// The stored index's URL (a removed user's entry records it).
    pub url: &'a str,
    pub listed: ListedFetch<'a>,
}

/// Refreshes `users` with `jobs` threads; `progress` is called after each.
/// With `indexed`, the index decides who is fetched (`state::sync_indexed`).
#[allow(clippy::too_many_arguments)]
pub fn sync_users(
    cache: &Cache,
    dir: &(dyn Directory + Sync),
    indexed: Option<&Indexed>,
    ttls: &Ttls,
    signers: Option<&[Signer]>,
    users: &[String],
    jobs: usize,
    poll: bool,
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
                let change = sync_one(cache, dir, indexed, ttls, signers, user, poll);
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

fn sync_one(
    cache: &Cache,
    dir: &dyn Directory,
    indexed: Option<&Indexed>,
    ttls: &Ttls,
    signers: Option<&[Signer]>,
    user: &str,
    poll: bool,
) -> Change {
    let name = crate::username::file_name(user);
    let cur = match cache.current(user, &name, signers.is_some()) {
        Ok(c) => c,
        Err(e) => return Change::Failed(e.to_string()),
    };
    let mode = Mode::of(signers, user, cache.kind());
    let now = now_secs();
    let line = indexed.map(|ix| ix.index.get(user));
    let listing = indexed.zip(line).map(|(ix, line)| match line {
        None => Listing::Absent {
            index: ix.url.to_owned(),
        },
        Some(l) => Listing::Listed {
            serial: l.serial,
            hash: l.hash,
        },
    });
    if poll && state::poll_skips(&cur, now, ttls, mode, listing.as_ref()) {
        return Change::Unchanged;
    }
    let t = match (indexed, line, listing) {
        (Some(ix), Some(line), Some(listing)) => {
            state::sync_indexed(&cur, now, ttls, mode, &listing, |etag, floor| {
                let req = Request { user, etag, floor };
                match line {
                    Some(l) => (ix.listed)(&req, l.path),
                    None => dir.fetch(&req),
                }
            })
        }
        _ => state::sync(&cur, now, ttls, mode, |etag, floor| {
            dir.fetch(&Request { user, etag, floor })
        }),
    };
    let settle = Settle {
        now,
        ttls,
        mode,
        purpose: Purpose::Sync,
        lock_wait: SYNC_LOCK_WAIT,
    };
    match cache.commit(user, &name, &cur, t, &settle) {
        (t, Ok(())) => t.change,
        (_, Err(e)) => Change::Failed(e.to_string()),
    }
}

/// The index this run uses.
pub struct FreshIndex {
    pub stored: Stored,
    pub text: String,
    /// `304` or `200`.
    pub how: &'static str,
    /// The index is usable, but storing it failed.
    pub warning: Option<String>,
}

/// Why this run asks for every user on its own.
pub struct NoIndex {
    /// `none` (the directory has none) or `unusable`.
    pub how: &'static str,
    pub why: Option<String>,
}

fn unusable(why: impl Into<String>) -> NoIndex {
    NoIndex {
        how: "unusable",
        why: Some(why.into()),
    }
}

/// The index for this run: one conditional GET of the delta from the
/// stored serial when the stored index announces deltas (`sync/delta.rs`;
/// how it went in `delta_note`), else (or when that fails) of the index,
/// and the signature only when it changed.
pub fn refresh_index(
    dir: &HttpDirectory,
    store: &IndexCache,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    (now, ttl): (u64, Duration),
    delta_note: &mut Option<String>,
) -> Result<FreshIndex, NoIndex> {
    let signed = signers.is_some();
    let (trusted, floor) = trusted_copy(store, floors, signers)?;
    let trusted = trusted.as_ref();
    let etag = trusted.and_then(|(s, _)| s.etag.clone());
    let polled = trusted.and_then(|(s, text)| {
        delta::poll(
            dir,
            store,
            floors,
            signers,
            (now, ttl),
            (s, text),
            delta_note,
        )
    });
    if let Some(fresh) = polled {
        return Ok(fresh);
    }
    let (s, text, how, warning) = match dir.fetch_index(etag.as_deref(), floor) {
        IndexFetch::NotModified { url } => {
            let Some((mut s, text)) = trusted.cloned() else {
                return Err(unusable(
                    "the directory answered 304 but no index is stored",
                ));
            };
            s.fetched_at = now;
            s.checked_at = now;
            s.url = url;
            let warning = commit_index(store, floors, signers, None, &s, &text, false)?;
            (s, text, "304", warning)
        }
        IndexFetch::New(NewIndex {
            text,
            etag,
            url,
            signed: sgn,
            signer,
        }) => {
            let s = Stored::new(now, etag, url, sgn, &text).map_err(unusable)?;
            let warning = commit_index(store, floors, signers, signer, &s, &text, true)?;
            (s, text, "200", warning)
        }
        IndexFetch::Missing { .. } => {
            // Nobody maintains an index here (any more): never answer from
            // it. Its floor stays: a 404 is unsigned.
            let _ = store.remove();
            return Err(NoIndex {
                how: "none",
                why: None,
            });
        }
        f @ (IndexFetch::Unavailable { .. } | IndexFetch::Misconfigured { .. }) => {
            return Err(unusable(f.failure().unwrap_or_default()));
        }
    };
    // A signed index is used only within its own expiry (a frozen mirror
    // answering 304 cannot keep it alive).
    s.usable(now, signed, None).map_err(unusable)?;
    Ok(FreshIndex {
        stored: s,
        text,
        how,
        warning,
    })
}

/// A stored index and its text.
type StoredIndex = (Stored, String);

/// The stored index this run may build on (its ETag, a delta from its
/// serial) and the floor a new index must clear.
fn trusted_copy(
    store: &IndexCache,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
) -> Result<(Option<StoredIndex>, Option<Floor>), NoIndex> {
    let signed = signers.is_some();
    let stored = match store.read() {
        Ok(s) => s,
        Err(e) => return Err(unusable(format!("stored index: {e}"))),
    };
    // The index's floor is kept apart from its copy: a 404 for the index
    // removes the copy, never the floor. A floor of a signer no longer
    // trusted does not bind, and the copy that came with it is not trusted
    // either (no ETag: the index is fetched and verified again).
    let kept = match signers {
        Some(_) => floors
            .read(INDEX_FLOOR)
            .map_err(|e| unusable(e.to_string()))?,
        None => None,
    };
    let bound = state::binding(kept, signers.unwrap_or_default());
    let void = kept.is_some() && bound.is_none();
    // In signed mode an unsigned copy gives neither an ETag nor a floor.
    let trusted = stored.filter(|(s, _)| !signed || (s.signed && !void));
    // (A copy stored before the floor was kept apart still gives its own.)
    let floor = Floor::max(bound, trusted.as_ref().and_then(|(s, _)| s.floor()));
    Ok((trusted, floor))
}

/// The name of the index's floor among the floors (a dot name: never a
/// user's).
pub const INDEX_FLOOR: &str = ".index";

/// Stores the index copy. In signed mode under the index's state lock: its
/// serial must still clear the floor on disk (another sync may have stored
/// a newer index meanwhile) and the floor is raised, never lowered, before
/// the copy is replaced. Returns a warning when only the copy failed.
fn commit_index(
    store: &IndexCache,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    signer: Option<Signer>,
    s: &Stored,
    text: &str,
    durable: bool,
) -> Result<Option<String>, NoIndex> {
    let copy = |()| {
        store
            .write(s, text, durable)
            .err()
            .map(|e| format!("index not stored: {e}"))
    };
    let Some(signers) = signers else {
        return Ok(copy(()));
    };
    let new = s
        .floor()
        .ok_or_else(|| unusable("a signed index needs serial="))?
        .by(signer);
    let lock = floors
        .lock(INDEX_FLOOR, SYNC_LOCK_WAIT)
        .map_err(|e| unusable(e.to_string()))?;
    let disk = floors
        .read(INDEX_FLOOR)
        .map_err(|e| unusable(e.to_string()))?;
    match Floor::raise(state::binding(disk, signers), new) {
        Err(r) => Err(unusable(format!(
            "index refused: {}",
            r.to_string().replace("signed file", "index")
        ))),
        Ok(raised) => {
            // (A 304's copy gives no signer: its floor, from a copy stored
            // before the floor was kept apart, binds whatever the signers,
            // like every floor written before signers were recorded.)
            if let Some(f) = raised {
                floors
                    .write(INDEX_FLOOR, &f, &lock)
                    .map_err(|e| unusable(e.to_string()))?;
            }
            Ok(copy(()))
        }
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
    poll: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Summary, String> {
    // `--user` is an explicit ask: always checked.
    let poll = poll && only.is_none();
    let cache = Cache::new(&config.cache.dir, &config.state.dir);
    // Floors kept under the cache by older versions move to [state] dir,
    // once; the login path reads the old place only until then.
    cache
        .migrate_floors()
        .map_err(|e| format!("moving the rollback floors into [state] dir: {e}"))?;
    let users = match only {
        Some(u) => vec![u.to_owned()],
        None => cache.users().map_err(|e| e.to_string())?,
    };
    let dir = HttpDirectory::pooled(&config.directory).with_health(&config.cache.dir);
    let ttls = Ttls::from_config(&config.cache);
    let signers = crate::lookup::trusted_signers(&config.directory)?;
    let signers = signers.as_deref();
    let per_user = |index, index_error| {
        let mut s = sync_users(
            &cache, &dir, None, &ttls, signers, &users, jobs, poll, progress,
        );
        s.index = index;
        s.index_error = index_error;
        s
    };
    // What this run's index says about the revocation list, and whether it
    // announces deltas.
    let mut listed: Option<Option<(crate::index::Digest, String)>> = None;
    let (mut deltas, mut index_delta) = (false, None);
    // `--user` asks for that user only; nothing cached, nothing to ask.
    let mut summary = if only.is_some() || users.is_empty() {
        per_user(None, None)
    } else if config.directory.index.is_none() || dir.index_urls().is_empty() {
        per_user(Some("off"), None)
    } else {
        let store = IndexCache::new(&config.cache.dir);
        let floors = cache.floors();
        match refresh_index(
            &dir,
            &store,
            floors,
            signers,
            (now_secs(), config.cache.ttl.0),
            &mut index_delta,
        ) {
            Ok(fresh) => match Index::parse(&fresh.text) {
                Ok(index) => {
                    deltas = index.get(crate::index::DELTAS).is_some();
                    listed = Some(
                        index
                            .get(crate::index::REVOKED)
                            .map(|l| (l.hash, l.path.to_owned())),
                    );
                    let listed = |req: &Request, path: &str| dir.fetch_listed(req, path);
                    let ix = Indexed {
                        index: &index,
                        url: &fresh.stored.url,
                        listed: &listed,
                    };
                    let mut s = sync_users(
                        &cache,
                        &dir,
                        Some(&ix),
                        &ttls,
                        signers,
                        &users,
                        jobs,
                        poll,
                        progress,
                    );
                    s.index = Some(fresh.how);
                    s.index_error = fresh.warning;
                    s.mirror = Some(fresh.stored.url.clone());
                    s
                }
                Err(e) => per_user(Some("unusable"), Some(e)),
            },
            Err(no) => per_user(Some(no.how), no.why),
        }
    };
    if only.is_none() {
        revocation::run(
            config,
            &dir,
            cache.floors(),
            signers,
            &listed,
            deltas,
            &mut summary,
        );
    }
    summary.index_delta = index_delta;
    summary.requests = dir.requests();
    sync_principals(config, only, jobs, poll, progress, &mut summary)?;
    Ok(summary)
}

/// Principals: the accounts whose list is cached (`--user`: only if it is),
/// so a host without certificate logins asks for nothing more. Per user:
/// the index lists keys files only.
fn sync_principals(
    config: &Config,
    only: Option<&str>,
    jobs: usize,
    poll: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
    summary: &mut Summary,
) -> Result<(), String> {
    let pcache = Cache::for_kind(&config.cache.dir, &config.state.dir, Kind::Principals);
    let mut pusers = pcache.users().map_err(|e| e.to_string())?;
    if let Some(u) = only {
        pusers.retain(|p| p == u);
    }
    if pusers.is_empty() {
        return Ok(());
    }
    let pdir = HttpDirectory::pooled(&config.directory)
        .for_kind(Kind::Principals)
        .with_health(&config.cache.dir);
    let ttls = Ttls::from_config(&config.cache);
    let signers = crate::lookup::trusted_signers(&config.directory)?;
    let p = sync_users(
        &pcache,
        &pdir,
        None,
        &ttls,
        signers.as_deref(),
        &pusers,
        jobs,
        poll,
        progress,
    );
    summary.users += p.users;
    summary.principals += p.users;
    summary.updated += p.updated;
    summary.unchanged += p.unchanged;
    summary.removed += p.removed;
    summary.failed.extend(p.failed);
    summary.requests += pdir.requests();
    Ok(())
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
