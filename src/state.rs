//! What a cache entry may become: every transition, in one place (pure).
//!
//! `keys`, `sync`, `doctor` and `explain` all ask this module; none decides
//! on its own: two copies of these rules drift (a 404 answered to sync must
//! not erase the serial that stops a signed file being rolled back, at login
//! or in sync alike). The table in the tests below is
//! the specification: current state × the directory's answer → what is
//! stored, what is served, what is logged.
//!
//! The **rollback floor** is kept apart from the entry (`Cache::read_floor`):
//! per user, the highest serial ever accepted and the SHA-256 of that file.
//! Nothing here ever lowers or forgets it: not a 404 (unsigned, so anyone on
//! the path can send one), not sync, not removing the entry, not `max_stale`.

use std::time::Duration;

use crate::entry::{Corrupt, Entry, Kind, Lookup, Status};
use crate::fetch::Fetch;
use crate::signed::Signer;

mod floor;
mod indexed;
mod settle;
pub use floor::{binding, Floor, Rollback};
pub use indexed::{
    index_renewal_due, is_listed_version, login_indexed, poll_skips, sync_indexed, Listing,
};
pub use settle::{settle, unsettled};

/// How long answers stay good (from `[cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_stale: Duration,
}

impl Ttls {
    pub fn from_config(c: &crate::config::CacheConfig) -> Ttls {
        Ttls {
            ttl: c.ttl.0,
            negative_ttl: c.negative_ttl.0,
            max_stale: c.max_stale.0,
        }
    }
}

/// What an entry is good for at time `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it, no network.
    Fresh,
    /// Refresh it; serve it only if the directory cannot be reached.
    Stale,
    /// Refresh it; never serve it.
    Expired,
}

/// Age-only freshness; `assess` adds the signed-file rules on top.
pub fn freshness(entry: &Entry, now: u64, t: &Ttls) -> Freshness {
    // From the future: clock trouble or tampering, never trusted as fresh.
    let Some(age) = entry.age(now) else {
        return Freshness::Expired;
    };
    let ttl = match entry.status {
        Status::Keys => t.ttl,
        Status::NoKeys => t.negative_ttl,
    };
    if age < ttl.as_secs() {
        Freshness::Fresh
    } else if age < t.max_stale.as_secs() {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// Whether signatures are required, for which user and kind of file, and
/// by which signers (their fingerprints, from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    Unsigned,
    Signed {
        user: &'a str,
        kind: Kind,
        signers: &'a [Signer],
    },
}

impl<'a> Mode<'a> {
    /// The mode of a lookup: signed when `[directory]` requires signatures
    /// (`signers`: the trusted signers then).
    pub fn of(signers: Option<&'a [Signer]>, user: &'a str, kind: Kind) -> Mode<'a> {
        match signers {
            Some(signers) => Mode::Signed {
                user,
                kind,
                signers,
            },
            None => Mode::Unsigned,
        }
    }
}

/// Why an entry's signer does not let it be served: none recorded (an
/// entry written before entries recorded it: refetched, since it cannot
/// be told apart from a removed signer's), or one no longer trusted.
fn untrusted(e: &Entry, signers: &[Signer]) -> Option<String> {
    // (An entry with no serial was not signed at all: `signed_usable` says so.)
    e.serial?;
    match &e.signer {
        None => Some("cached entry records no signer (refetched)".into()),
        Some(s) if !signers.contains(s) => Some(format!(
            "cached entry was signed by {s}, which is no longer a configured signer"
        )),
        Some(_) => None,
    }
}

/// Everything known about a user before asking the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub entry: Option<Entry>,
    /// Why a present entry could not be used at all (checksum, format).
    pub corrupt: Option<Corrupt>,
    /// The stored floor (signed mode only; None when none was ever stored).
    pub floor: Option<Floor>,
}

impl Current {
    pub fn new(lookup: Lookup, floor: Option<Floor>) -> Current {
        let (entry, corrupt) = match lookup {
            Lookup::Found(e) => (Some(e), None),
            Lookup::Missing => (None, None),
            Lookup::Corrupt(c) => (None, Some(c)),
        };
        Current {
            entry,
            corrupt,
            floor,
        }
    }
}

/// The entry judged at `now`: what the login path may do without asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// None: no usable entry.
    pub freshness: Option<Freshness>,
    /// Why a present entry may not be served at all (signed rules).
    pub unusable: Option<String>,
    /// The floor in force: the stored one, raised by the entry's own serial
    /// (entries written before floors were stored apart carry it).
    pub floor: Option<Floor>,
    /// The floor must be (re)written: the entry's serial is above the
    /// stored one.
    pub floor_behind: bool,
}

/// Judges the current entry. Pure; every command uses it.
pub fn assess(cur: &Current, now: u64, ttls: &Ttls, mode: Mode) -> Assessment {
    // Only a trusted signer's entry raises the floor; a removed signer's
    // floor does not bind (nor is its entry ever served, below).
    let (entry_floor, stored) = match (mode, &cur.entry) {
        (Mode::Signed { signers, .. }, Some(e))
            if e.status == Status::Keys && untrusted(e, signers).is_none() =>
        {
            (
                e.serial.map(|s| Floor::of(s, &e.body).by(e.signer)),
                binding(cur.floor, signers),
            )
        }
        (Mode::Signed { signers, .. }, _) => (None, binding(cur.floor, signers)),
        (Mode::Unsigned, _) => (None, cur.floor),
    };
    let floor = Floor::max(stored, entry_floor);
    let floor_behind = floor.is_some() && floor != cur.floor;
    let unusable = cur.entry.as_ref().and_then(|e| match mode {
        Mode::Signed {
            user,
            kind,
            signers,
        } if e.status == Status::Keys => untrusted(e, signers).map_or_else(
            || signed_usable(e, user, kind, now, floor.as_ref()).err(),
            Some,
        ),
        _ => None,
    });
    let freshness = cur.entry.as_ref().map(|e| match unusable {
        None => freshness(e, now, ttls),
        Some(_) => Freshness::Expired,
    });
    Assessment {
        freshness,
        unusable,
        floor,
        floor_behind,
    }
}

/// A cached signed file stays usable only while its header is valid for this
/// user and kind, not expired, and not below the floor.
pub fn signed_usable(
    e: &Entry,
    user: &str,
    kind: Kind,
    now: u64,
    floor: Option<&Floor>,
) -> Result<(), String> {
    let Some(serial) = e.serial else {
        return Err("cached entry was not signed".into());
    };
    let h = crate::signed::parse_header(&e.body)?;
    crate::signed::check_header(&h, user, kind, now as i64)?;
    if h.serial != serial {
        return Err("cached entry's serial does not match its header".into());
    }
    if let Some(f) = floor {
        f.admits(serial, &e.body).map_err(|r| r.to_string())?;
    }
    Ok(())
}

/// What to send the directory: the ETag only for an entry that may still be
/// confirmed by a 304, and the floor every signed answer must clear.
pub fn etag<'a>(cur: &'a Current, a: &Assessment) -> Option<&'a str> {
    cur.entry
        .as_ref()
        .filter(|e| e.status == Status::Keys && a.unusable.is_none())
        .and_then(|e| e.etag.as_deref())
}

/// Who is asking: the login path answers sshd; sync only maintains the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    Sync,
}

/// What to do with the entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    Nothing,
    /// A new answer: durable write.
    Write(Entry),
    /// Same body, new age (304): no fsync needed.
    Refresh(Entry),
    /// Drop the entry (sync, after a 404). The floor stays.
    Remove,
}

/// For sync's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Updated,
    Unchanged,
    Removed,
    Failed(String),
}

/// What the login path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Keys (None: the user has no keys) from `source`, `age_s` old.
    Serve {
        body: Option<String>,
        source: &'static str,
        age_s: u64,
    },
    /// Fail closed with this reason.
    Fail(String),
}

/// One transition: the entry's next state and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub store: Store,
    /// A floor to persist (raised, or carried out of an entry).
    pub floor: Option<Floor>,
    pub answer: Answer,
    pub change: Change,
    pub warning: Option<String>,
}

/// The login path with a fresh entry: serve it, no network.
pub fn serve_cached(cur: &Current, a: &Assessment, now: u64) -> Option<Transition> {
    let e = cur.entry.as_ref()?;
    if a.freshness != Some(Freshness::Fresh) {
        return None;
    }
    Some(Transition {
        store: Store::Nothing,
        floor: a.floor.filter(|_| a.floor_behind),
        answer: Answer::Serve {
            body: body_of(e),
            source: "cache",
            age_s: e.age(now).unwrap_or(0),
        },
        change: Change::Unchanged,
        warning: None,
    })
}

/// The entry's next state after the directory answered `fetched`.
pub fn on_answer(
    cur: &Current,
    a: &Assessment,
    fetched: Fetch,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    purpose: Purpose,
) -> Transition {
    let ctx = Answered {
        cur,
        a,
        now,
        ttls,
        purpose,
        warning: cur.corrupt.as_ref().map(|c| format!("{c}; refetching")),
        carried: a.floor.filter(|_| a.floor_behind),
    };
    match fetched {
        Fetch::Keys {
            body,
            etag,
            url,
            serial,
            signer,
        } => ctx.keys(mode, body, etag, url, serial, signer),
        Fetch::NotModified { url } => ctx.not_modified(url),
        Fetch::NoKeys { url } => ctx.no_keys(url),
        Fetch::Unavailable { errors } => {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            ctx.refused(&why.join("; "))
        }
        Fetch::Misconfigured { error } => Transition {
            store: Store::Nothing,
            floor: ctx.carried,
            answer: Answer::Fail(error.clone()),
            change: Change::Failed(error),
            warning: ctx.warning,
        },
    }
}

/// What an answer is judged against (see `on_answer`).
struct Answered<'a> {
    cur: &'a Current,
    a: &'a Assessment,
    now: u64,
    ttls: &'a Ttls,
    purpose: Purpose,
    /// Set when the entry read was corrupt.
    warning: Option<String>,
    /// The floor to write when the entry's serial is above the stored one.
    carried: Option<Floor>,
}

impl Answered<'_> {
    /// A served answer from the directory.
    fn done(
        self,
        store: Store,
        floor: Option<Floor>,
        body: Option<String>,
        change: Change,
    ) -> Transition {
        Transition {
            store,
            floor,
            answer: Answer::Serve {
                body,
                source: "directory",
                age_s: 0,
            },
            change,
            warning: self.warning,
        }
    }

    fn refused(&self, why: &str) -> Transition {
        refused(self.cur, self.a, self.now, self.ttls, self.purpose, why)
    }

    /// 200: a new entry (signature and floor checked again in signed mode).
    fn keys(
        self,
        mode: Mode,
        body: String,
        etag: Option<String>,
        url: String,
        serial: Option<u64>,
        signer: Option<Signer>,
    ) -> Transition {
        // The directory checks signatures and the floor before it answers;
        // checked again here so no Directory can skip it.
        let floor = match (mode, serial, signer) {
            (Mode::Unsigned, _, _) => None,
            (Mode::Signed { signers, .. }, Some(s), Some(by)) if signers.contains(&by) => {
                if let Some(Err(r)) = self.a.floor.as_ref().map(|f| f.admits(s, &body)) {
                    return self.refused(&r.to_string());
                }
                Some(Floor::of(s, &body).by(Some(by)))
            }
            (Mode::Signed { .. }, _, _) => {
                return self.refused("answer not signed by a configured signer in signed mode")
            }
        };
        let raised = match (floor, self.a.floor) {
            (Some(new), Some(old)) if new.serial > old.serial => Some(new),
            (Some(new), None) => Some(new),
            _ => self.carried,
        };
        let same = self
            .cur
            .entry
            .as_ref()
            .is_some_and(|o| o.status == Status::Keys && o.body == body);
        let change = if same {
            Change::Unchanged
        } else {
            Change::Updated
        };
        let entry = Entry {
            fetched_at: self.now,
            status: Status::Keys,
            etag,
            url,
            serial,
            signer: signer.filter(|_| floor.is_some()),
            body,
        };
        let served = Some(entry.body.clone());
        self.done(Store::Write(entry), raised, served, change)
    }

    /// 304: the cached entry, refreshed, when it may still be used.
    fn not_modified(self, url: String) -> Transition {
        match &self.cur.entry {
            Some(e) if e.status == Status::Keys && self.a.unusable.is_none() => {
                let mut e = e.clone();
                e.fetched_at = self.now;
                e.url = url;
                let served = Some(e.body.clone());
                let carried = self.carried;
                self.done(Store::Refresh(e), carried, served, Change::Unchanged)
            }
            _ => self.refused("directory answered 304 but no cached entry matches"),
        }
    }

    /// 404: authoritative "no keys", but unsigned: it may only take keys
    /// away. The floor is untouched (and carried out of the entry before
    /// the entry goes).
    fn no_keys(self, url: String) -> Transition {
        let (store, change) = match self.purpose {
            Purpose::Login => (
                Store::Write(Entry {
                    fetched_at: self.now,
                    status: Status::NoKeys,
                    etag: None,
                    url,
                    serial: None,
                    signer: None,
                    body: String::new(),
                }),
                Change::Updated,
            ),
            Purpose::Sync => (Store::Remove, Change::Removed),
        };
        let carried = self.carried;
        self.done(store, carried, None, change)
    }
}

/// No usable answer: serve the entry while stale-servable, else fail
/// closed. The entry is never touched (a transient error changes nothing).
fn refused(
    cur: &Current,
    a: &Assessment,
    now: u64,
    ttls: &Ttls,
    purpose: Purpose,
    why: &str,
) -> Transition {
    let carried = a.floor.filter(|_| a.floor_behind);
    let fail = |reason: String| Transition {
        store: Store::Nothing,
        floor: carried,
        answer: Answer::Fail(reason.clone()),
        change: Change::Failed(reason),
        warning: None,
    };
    if purpose == Purpose::Sync {
        return fail(why.to_owned());
    }
    match (&cur.entry, a.freshness) {
        (Some(e), Some(Freshness::Stale)) => {
            let age = e.age(now).unwrap_or(0);
            Transition {
                store: Store::Nothing,
                floor: carried,
                answer: Answer::Serve {
                    body: body_of(e),
                    source: "stale",
                    age_s: age,
                },
                change: Change::Unchanged,
                warning: Some(format!(
                    "directory unavailable ({why}); serving cache entry {age}s old"
                )),
            }
        }
        (Some(_), _) if a.unusable.is_some() => fail(format!(
            "directory unavailable ({why}) and the cached entry cannot be served ({})",
            a.unusable.as_deref().unwrap_or_default()
        )),
        (Some(e), _) => fail(match e.age(now) {
            Some(age) => format!(
                "directory unavailable ({why}) and the cache entry is too old to serve (age {age}s, max_stale {}s)",
                ttls.max_stale.as_secs()
            ),
            None => format!(
                "directory unavailable ({why}) and the cache entry is dated in the future (clock?)"
            ),
        }),
        (None, _) => fail(format!("directory unavailable ({why}) and nothing cached")),
    }
}

/// The login path: a fresh entry is served without calling `fetch`;
/// otherwise `fetch` is called once, with the ETag and floor to send.
pub fn login(
    cur: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    fetch: impl FnOnce(Option<&str>, Option<Floor>) -> Fetch,
) -> Transition {
    login_indexed(cur, now, ttls, mode, || None, fetch)
}

/// Sync: always asks (conditionally), never serves.
pub fn sync(
    cur: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    fetch: impl FnOnce(Option<&str>, Option<Floor>) -> Fetch,
) -> Transition {
    let a = assess(cur, now, ttls, mode);
    let fetched = fetch(etag(cur, &a), a.floor);
    on_answer(cur, &a, fetched, now, ttls, mode, Purpose::Sync)
}

fn body_of(e: &Entry) -> Option<String> {
    match e.status {
        Status::Keys => Some(e.body.clone()),
        Status::NoKeys => None,
    }
}

#[cfg(test)]
mod tests {
    //! The specification: current state × answer → store, floor, answer.
    use super::*;
    use crate::signed::Header;

    const T: u64 = 1_700_000_000;
    const U: Mode = Mode::Unsigned;
    /// The trusted signer of the table's signed files.
    const FP: Signer = Signer::Sha256([7; 32]);
    const TRUSTED: &[Signer] = &[FP];
    const S: Mode = Mode::Signed {
        user: "alice",
        kind: Kind::Keys,
        signers: TRUSTED,
    };

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
            signer: None,
            body: "old\n".into(),
        }
    }

    fn signed_body(user: &str, serial: u64, key: &str) -> String {
        let h = Header {
            user: user.into(),
            kind: Kind::Keys,
            serial,
            expires: T as i64 + 86400,
        };
        format!("{}\n{key}\n", h.to_line())
    }

    fn signed_entry(age: u64, serial: u64) -> Entry {
        Entry {
            serial: Some(serial),
            signer: Some(FP),
            body: signed_body("alice", serial, "k"),
            ..entry(age)
        }
    }

    fn cur(e: Option<Entry>, floor: Option<Floor>) -> Current {
        Current {
            entry: e,
            corrupt: None,
            floor,
        }
    }

    fn keys(body: &str, serial: Option<u64>) -> Fetch {
        Fetch::Keys {
            body: body.into(),
            etag: Some("\"e2\"".into()),
            url: "http://m2/alice".into(),
            serial,
            signer: serial.map(|_| FP),
        }
    }

    fn down() -> Fetch {
        Fetch::Unavailable {
            errors: vec![crate::fetch::MirrorError::new(
                "m1",
                crate::fetch::FailKind::Answer,
                "HTTP 500",
            )],
        }
    }

    fn never(_: Option<&str>, _: Option<Floor>) -> Fetch {
        panic!("a fresh entry must not touch the directory")
    }

    fn served(t: &Transition) -> (Option<&str>, &'static str) {
        match &t.answer {
            Answer::Serve { body, source, .. } => (body.as_deref(), source),
            Answer::Fail(why) => panic!("failed: {why}"),
        }
    }

    fn failed(t: &Transition) -> &str {
        match &t.answer {
            Answer::Fail(why) => why,
            other => panic!("served: {other:?}"),
        }
    }

    #[test]
    fn freshness_by_age() {
        let t = ttls();
        let e = entry(0);
        assert_eq!(freshness(&e, T, &t), Freshness::Fresh);
        assert_eq!(freshness(&e, T + 299, &t), Freshness::Fresh);
        assert_eq!(freshness(&e, T + 300, &t), Freshness::Stale);
        assert_eq!(freshness(&e, T + 3599, &t), Freshness::Stale);
        assert_eq!(freshness(&e, T + 3600, &t), Freshness::Expired);
        assert_eq!(
            freshness(&e, T - 1, &t),
            Freshness::Expired,
            "from the future"
        );
        let neg = Entry {
            status: Status::NoKeys,
            ..entry(0)
        };
        assert_eq!(freshness(&neg, T + 29, &t), Freshness::Fresh);
        assert_eq!(freshness(&neg, T + 30, &t), Freshness::Stale);
    }

    #[test]
    fn fresh_entry_is_served_without_network() {
        let t = login(&cur(Some(entry(10)), None), T, &ttls(), U, never);
        assert_eq!(served(&t), (Some("old\n"), "cache"));
        assert_eq!(t.store, Store::Nothing);
        let neg = Entry {
            status: Status::NoKeys,
            ..entry(10)
        };
        let t = login(&cur(Some(neg), None), T, &ttls(), U, never);
        assert_eq!(served(&t), (None, "cache"));
    }

    #[test]
    fn stale_entry_revalidates_with_its_etag() {
        let t = login(&cur(Some(entry(400)), None), T, &ttls(), U, |etag, _| {
            assert_eq!(etag, Some("\"e1\""));
            Fetch::NotModified {
                url: "http://m2/alice".into(),
            }
        });
        assert_eq!(served(&t), (Some("old\n"), "directory"));
        match t.store {
            Store::Refresh(e) => {
                assert_eq!((e.fetched_at, e.url.as_str()), (T, "http://m2/alice"));
                assert_eq!(e.body, "old\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_body_replaces_the_entry() {
        let t = login(&cur(Some(entry(400)), None), T, &ttls(), U, |_, _| {
            keys("new\n", None)
        });
        assert_eq!(served(&t), (Some("new\n"), "directory"));
        assert_eq!(t.change, Change::Updated);
        assert!(matches!(&t.store, Store::Write(e) if e.etag.as_deref() == Some("\"e2\"")));
        let t = sync(&cur(Some(entry(10)), None), T, &ttls(), U, |_, _| {
            keys("old\n", None)
        });
        assert_eq!(t.change, Change::Unchanged);
    }

    #[test]
    fn not_found_is_remembered_by_login_and_removed_by_sync() {
        let t = login(&cur(None, None), T, &ttls(), U, |etag, _| {
            assert_eq!(etag, None);
            Fetch::NoKeys { url: "u".into() }
        });
        assert_eq!(served(&t), (None, "directory"));
        assert!(matches!(&t.store, Store::Write(e) if e.status == Status::NoKeys));
        let t = sync(&cur(Some(entry(10)), None), T, &ttls(), U, |_, _| {
            Fetch::NoKeys { url: "u".into() }
        });
        assert_eq!((t.store, t.change), (Store::Remove, Change::Removed));
    }

    #[test]
    fn unavailable_serves_stale_within_max_stale_only() {
        let t = login(&cur(Some(entry(400)), None), T, &ttls(), U, |_, _| down());
        assert_eq!(served(&t), (Some("old\n"), "stale"));
        assert!(t.warning.unwrap().contains("HTTP 500"));
        assert_eq!(t.store, Store::Nothing);
        let t = login(&cur(Some(entry(3600)), None), T, &ttls(), U, |_, _| down());
        assert!(failed(&t).contains("too old"));
        let t = login(&cur(None, None), T, &ttls(), U, |_, _| down());
        assert!(failed(&t).contains("nothing cached"));
        let mut future = entry(0);
        future.fetched_at = T + 1000;
        let t = login(&cur(Some(future), None), T, &ttls(), U, |_, _| down());
        assert!(failed(&t).contains("future"));
    }

    #[test]
    fn sync_never_serves_and_never_touches_an_entry_on_errors() {
        let t = sync(&cur(Some(entry(400)), None), T, &ttls(), U, |_, _| down());
        assert_eq!(t.store, Store::Nothing);
        assert!(matches!(t.change, Change::Failed(w) if w.contains("500")));
        let t = sync(&cur(None, None), T, &ttls(), U, |_, _| Fetch::NotModified {
            url: "u".into(),
        });
        assert_eq!(t.store, Store::Nothing);
        assert!(matches!(t.change, Change::Failed(_)));
    }

    #[test]
    fn misconfiguration_fails_closed_even_with_a_stale_entry() {
        let bad = || Fetch::Misconfigured {
            error: "ca_file /etc/keyward/ca.pem: group-writable".into(),
        };
        let t = login(&cur(Some(entry(400)), None), T, &ttls(), U, |_, _| bad());
        assert!(failed(&t).contains("ca_file"));
        assert_eq!(t.store, Store::Nothing);
    }

    #[test]
    fn corrupt_entry_is_never_served_and_is_refetched_without_etag() {
        let c = Current::new(Lookup::Corrupt(Corrupt("checksum mismatch")), None);
        let t = login(&c, T, &ttls(), U, |_, _| down());
        assert!(failed(&t).contains("nothing cached"));
        let t = login(&c, T, &ttls(), U, |etag, _| {
            assert_eq!(etag, None);
            keys("k\n", None)
        });
        assert!(t.warning.unwrap().contains("checksum"));
    }

    #[test]
    fn signed_entries_expire_with_their_header_and_bind_the_user() {
        let ok = signed_entry(10, 7);
        let t = login(&cur(Some(ok.clone()), None), T, &ttls(), S, never);
        assert_eq!(served(&t).1, "cache");
        // The entry's serial becomes the floor if none was stored yet.
        assert_eq!(t.floor.map(|f| f.serial), Some(7));

        let mut expired = signed_entry(10, 7);
        expired.body = format!(
            "{}\nk\n",
            Header {
                user: "alice".into(),
                kind: Kind::Keys,
                serial: 7,
                expires: T as i64 - 1
            }
            .to_line()
        );
        let t = login(&cur(Some(expired), None), T, &ttls(), S, |etag, floor| {
            assert_eq!(etag, None, "an unusable entry is not revalidated by 304");
            assert_eq!(floor.map(|f| f.serial), Some(7));
            down()
        });
        assert!(failed(&t).contains("cannot be served (signed file expired"));

        let t = login(&cur(Some(entry(10)), None), T, &ttls(), S, |_, _| down());
        assert!(failed(&t).contains("not signed"));
        let bob = Mode::Signed {
            user: "bob",
            kind: Kind::Keys,
            signers: TRUSTED,
        };
        let t = login(&cur(Some(ok), None), T, &ttls(), bob, |_, _| down());
        assert!(failed(&t).contains("not \"bob\""));
    }

    #[test]
    fn floor_refuses_lower_serials_and_same_serial_other_body() {
        let f = Floor::of(200, "body");
        assert_eq!(f.admits(200, "body"), Ok(()));
        assert_eq!(f.admits(201, "other"), Ok(()));
        assert_eq!(
            f.admits(199, "body"),
            Err(Rollback::Lower {
                got: 199,
                floor: 200
            })
        );
        assert_eq!(
            f.admits(200, "other"),
            Err(Rollback::SameSerialOtherBody { serial: 200 })
        );
        assert_eq!(Floor::decode(&f.encode()), Ok(f));
        assert!(Floor::decode("keyward-floor 1\nserial 5\n").is_err());
        assert!(Floor::decode("keyward-floor 1\nserial 5\nsha256 zz\n").is_err());
        assert_eq!(Floor::max(Some(f), Some(Floor::of(100, "x"))), Some(f));
    }

    #[test]
    fn a_replayed_older_file_is_refused_after_404_and_entry_removal() {
        let floor = Floor::of(200, &signed_body("alice", 200, "new"));
        // The entry is gone (sync after a 404, or removed by hand); the
        // floor is not. An older, validly signed file is refused.
        let old = signed_body("alice", 100, "revoked");
        let t = login(&cur(None, Some(floor)), T, &ttls(), S, |_, f| {
            assert_eq!(f, Some(floor), "the floor is sent with the request");
            keys(&old, Some(100))
        });
        assert!(failed(&t).contains("rollback refused"), "{t:?}");
        assert_eq!(t.store, Store::Nothing);
        // The same serial with another body: refused too.
        let forged = signed_body("alice", 200, "other");
        let t = login(&cur(None, Some(floor)), T, &ttls(), S, |_, _| {
            keys(&forged, Some(200))
        });
        assert!(failed(&t).contains("different body"));
    }

    #[test]
    fn nothing_lowers_or_forgets_the_floor() {
        // 404 to sync: the entry goes, its serial is carried into the floor
        // first (entries from before floors were stored apart).
        let e = signed_entry(10, 200);
        let t = sync(&cur(Some(e.clone()), None), T, &ttls(), S, |_, f| {
            assert_eq!(f.map(|f| f.serial), Some(200));
            Fetch::NoKeys { url: "u".into() }
        });
        assert_eq!(t.store, Store::Remove);
        assert_eq!(t.floor, Some(Floor::of(200, &e.body).by(Some(FP))));
        // With the floor already stored, a 404 writes no floor (none lower).
        let stored = Floor::of(200, &e.body);
        let t = sync(
            &cur(Some(e.clone()), Some(stored)),
            T,
            &ttls(),
            S,
            |_, _| Fetch::NoKeys { url: "u".into() },
        );
        assert_eq!(t.floor, None);
        // A newer file raises it.
        let newer = signed_body("alice", 300, "k");
        let t = sync(&cur(Some(e), Some(stored)), T, &ttls(), S, |_, _| {
            keys(&newer, Some(300))
        });
        assert_eq!(t.floor, Some(Floor::of(300, &newer).by(Some(FP))));
        // Past max_stale the entry is not served, but the floor still holds.
        let ancient = signed_entry(7200, 200);
        let a = assess(&cur(Some(ancient), Some(stored)), T, &ttls(), S);
        assert_eq!(a.floor, Some(stored));
    }

    #[test]
    fn a_cached_entry_below_the_floor_is_not_served() {
        // e.g. an old cache restored from a backup.
        let e = signed_entry(10, 100);
        let floor = Floor::of(200, "newer");
        let t = login(&cur(Some(e), Some(floor)), T, &ttls(), S, |etag, _| {
            assert_eq!(etag, None);
            down()
        });
        assert!(failed(&t).contains("rollback"), "{t:?}");
    }

    #[test]
    fn a_keys_file_is_never_served_as_principals() {
        // Same user, valid signature and serial: only the kind differs.
        let e = signed_entry(10, 7);
        let p = Mode::Signed {
            user: "alice",
            kind: Kind::Principals,
            signers: TRUSTED,
        };
        let t = login(&cur(Some(e), None), T, &ttls(), p, |etag, _| {
            assert_eq!(etag, None, "an unusable entry is not revalidated by 304");
            down()
        });
        assert!(failed(&t).contains("not a principals file"), "{t:?}");
    }

    #[test]
    fn unsigned_answer_in_signed_mode_is_refused() {
        let t = login(&cur(None, None), T, &ttls(), S, |_, _| keys("k\n", None));
        assert!(failed(&t).contains("not signed by a configured signer"));
    }

    /// An answer said to be signed by a signer that is not configured is
    /// refused here too (not only by the directory that checked it): not
    /// served, not stored, no floor.
    #[test]
    fn an_answer_by_an_unconfigured_signer_is_refused() {
        const OTHER: Signer = Signer::Sha256([9; 32]);
        let body = signed_body("alice", 5, "k");
        for purpose in [Purpose::Login, Purpose::Sync] {
            let fetch = |_: Option<&str>, _: Option<Floor>| Fetch::Keys {
                body: body.clone(),
                etag: None,
                url: "http://m2/alice".into(),
                serial: Some(5),
                signer: Some(OTHER),
            };
            let t = match purpose {
                Purpose::Login => login(&cur(None, None), T, &ttls(), S, fetch),
                Purpose::Sync => sync(&cur(None, None), T, &ttls(), S, fetch),
            };
            assert!(
                failed(&t).contains("not signed by a configured signer"),
                "{purpose:?}"
            );
            assert_eq!((&t.store, t.floor), (&Store::Nothing, None), "{purpose:?}");
        }
    }

    #[test]
    fn floor_max_keeps_the_higher_and_on_a_tie_the_first() {
        let (a5, b5, c6) = (Floor::of(5, "a"), Floor::of(5, "b"), Floor::of(6, "c"));
        assert_eq!(Floor::max(Some(a5), Some(c6)), Some(c6));
        assert_eq!(Floor::max(Some(c6), Some(a5)), Some(c6));
        // The stored floor wins a tie: an entry with the stored serial but
        // another body must not replace the floor it is judged against.
        assert_eq!(Floor::max(Some(a5), Some(b5)), Some(a5));
        assert_eq!(Floor::max(None, Some(b5)), Some(b5));
        assert_eq!(Floor::max(Some(a5), None), Some(a5));
        assert_eq!(Floor::max(None, None), None);
    }

    #[test]
    fn floor_text_needs_exactly_64_hex_digits() {
        let f = Floor::of(9, "body");
        let text = f.encode();
        assert_eq!(Floor::decode(&text), Ok(f));
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix("sha256 "))
            .unwrap()
            .to_owned();
        for bad in [
            hex[..62].to_owned(),
            format!("{hex}00"),
            format!("{}zz", &hex[..62]),
        ] {
            assert!(Floor::decode(&text.replace(&hex, &bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signed_no_keys_entry_is_served_and_makes_no_floor() {
        // A 404 carries no signature: its entry neither needs a valid header
        // nor gives a floor (a floor from its empty body would refuse the
        // real file of the same serial later).
        let neg = Entry {
            status: Status::NoKeys,
            serial: Some(7),
            body: String::new(),
            ..entry(10)
        };
        let a = assess(&cur(Some(neg), None), T, &ttls(), S);
        assert_eq!(a.freshness, Some(Freshness::Fresh));
        assert_eq!(a.unusable, None);
        assert_eq!(a.floor, None);
        assert!(!a.floor_behind);
    }

    #[test]
    fn the_first_signed_file_sets_the_floor_and_a_repeat_changes_nothing() {
        let body = signed_body("alice", 5, "k");
        let t = login(&cur(None, None), T, &ttls(), S, |_, _| keys(&body, Some(5)));
        assert_eq!(served(&t).0, Some(body.as_str()));
        assert_eq!(t.floor, Some(Floor::of(5, &body).by(Some(FP))));
        // The same file again (a stale entry refetched): no floor to write.
        let e = signed_entry(400, 5);
        let f = Floor::of(5, &e.body);
        let again = e.body.clone();
        let t = login(&cur(Some(e), Some(f)), T, &ttls(), S, |_, _| {
            keys(&again, Some(5))
        });
        assert_eq!(served(&t).0, Some(again.as_str()));
        assert_eq!(t.floor, None);
        // A higher serial raises it.
        let body6 = signed_body("alice", 6, "k2");
        let t = login(
            &cur(Some(signed_entry(400, 5)), Some(f)),
            T,
            &ttls(),
            S,
            |_, _| keys(&body6, Some(6)),
        );
        assert_eq!(t.floor, Some(Floor::of(6, &body6).by(Some(FP))));
    }

    #[test]
    fn a_304_never_revives_an_entry_that_may_not_be_served() {
        let not_modified = |_: Option<&str>, _: Option<Floor>| Fetch::NotModified {
            url: "http://m2/alice".into(),
        };
        // A signed file past its `expires`: refused, even if the directory
        // says "not modified".
        let h = Header {
            user: "alice".into(),
            kind: Kind::Keys,
            serial: 5,
            expires: T as i64 - 1,
        };
        let expired = Entry {
            serial: Some(5),
            body: format!("{}\nk\n", h.to_line()),
            ..entry(400)
        };
        let t = login(&cur(Some(expired), None), T, &ttls(), S, not_modified);
        assert!(failed(&t).contains("304"), "{:?}", t.answer);
        assert_eq!(t.store, Store::Nothing);
        // A stale "no keys" entry is not a key list a 304 could refresh:
        // served as the stale answer it is, nothing stored.
        let neg = Entry {
            status: Status::NoKeys,
            ..entry(100)
        };
        let t = login(&cur(Some(neg), None), T, &ttls(), U, not_modified);
        assert_eq!(served(&t), (None, "stale"));
        assert_eq!(t.store, Store::Nothing);
    }

    // --- The directory index ------------------------------------------------

    fn listed(e: &Entry) -> Listing {
        Listing::Listed {
            serial: e.serial,
            hash: crate::index::digest(e.body.as_bytes()),
        }
    }

    fn absent() -> Listing {
        Listing::Absent {
            index: "http://d/keyward.index".into(),
        }
    }

    #[test]
    fn a_poll_rechecks_a_user_only_when_due_or_when_the_index_says_it_changed() {
        let t = ttls();
        // 4/5 of ttl (300 s) is 240 s.
        let young = cur(Some(entry(239)), None);
        let due = cur(Some(entry(240)), None);
        assert!(poll_skips(&young, T, &t, U, None));
        assert!(!poll_skips(&due, T, &t, U, None));
        assert!(
            !poll_skips(&cur(None, None), T, &t, U, None),
            "nothing cached"
        );
        let e = entry(10);
        assert!(poll_skips(
            &cur(Some(e.clone()), None),
            T,
            &t,
            U,
            Some(&listed(&e))
        ));
        let other = Listing::Listed {
            serial: None,
            hash: crate::index::digest(b"new\n"),
        };
        assert!(
            !poll_skips(&cur(Some(e.clone()), None), T, &t, U, Some(&other)),
            "another version listed: fetched at once"
        );
        assert!(
            !poll_skips(&cur(Some(e), None), T, &t, U, Some(&absent())),
            "removed from the index: dropped at once"
        );
        let none = Entry {
            status: Status::NoKeys,
            body: String::new(),
            ..entry(10)
        };
        assert!(poll_skips(
            &cur(Some(none.clone()), None),
            T,
            &t,
            U,
            Some(&absent())
        ));
        // negative_ttl 30 s: due from 24 s.
        let old_none = Entry {
            fetched_at: T - 24,
            ..none
        };
        assert!(!poll_skips(&cur(Some(old_none), None), T, &t, U, None));
        let future = cur(Some(entry(0)), None);
        assert!(!poll_skips(&future, T - 1, &t, U, None), "from the future");
        let mut broken = cur(Some(entry(10)), None);
        broken.corrupt = Some(Corrupt("checksum"));
        assert!(!poll_skips(&broken, T, &t, U, None));
    }

    #[test]
    fn a_poll_never_skips_a_signed_entry_that_must_be_refreshed() {
        let t = ttls();
        let e = signed_entry(10, 7);
        assert!(poll_skips(
            &cur(Some(e.clone()), Some(Floor::of(7, &e.body).by(Some(FP)))),
            T,
            &t,
            S,
            None
        ));
        assert!(
            !poll_skips(&cur(Some(e.clone()), None), T, &t, S, None),
            "its floor must be written"
        );
        let stored = Floor::of(9, "newer").by(Some(FP));
        assert!(
            !poll_skips(&cur(Some(e), Some(stored)), T, &t, S, None),
            "below the floor: unusable"
        );
    }

    #[test]
    fn index_confirms_the_listed_version_without_a_request() {
        let e = entry(400);
        let t = sync_indexed(
            &cur(Some(e.clone()), None),
            T,
            &ttls(),
            U,
            &listed(&e),
            never,
        );
        assert_eq!(t.change, Change::Unchanged);
        match t.store {
            Store::Refresh(r) => {
                assert_eq!(r.fetched_at, T, "the age is refreshed");
                assert_eq!((r.body, r.url), (e.body, e.url), "nothing else changes");
            }
            other => panic!("{other:?}"),
        }
        // Even past max_stale: the index is a fresh word from the directory.
        let old = entry(7200);
        let t = sync_indexed(
            &cur(Some(old.clone()), None),
            T,
            &ttls(),
            U,
            &listed(&old),
            never,
        );
        assert!(matches!(t.store, Store::Refresh(_)));
    }

    #[test]
    fn index_listing_another_version_fetches_it() {
        let e = entry(10);
        let other = Listing::Listed {
            serial: None,
            hash: crate::index::digest(b"new\n"),
        };
        let t = sync_indexed(&cur(Some(e), None), T, &ttls(), U, &other, |etag, _| {
            assert_eq!(etag, Some("\"e1\""));
            keys("new\n", None)
        });
        assert_eq!(t.change, Change::Updated);
        assert!(matches!(&t.store, Store::Write(w) if w.body == "new\n"));
        // A remembered 404 for a user the index now lists: fetched.
        let neg = Entry {
            status: Status::NoKeys,
            body: String::new(),
            ..entry(10)
        };
        let fetched = std::cell::Cell::new(false);
        sync_indexed(
            &cur(Some(neg.clone()), None),
            T,
            &ttls(),
            U,
            &listed(&neg),
            |_, _| {
                fetched.set(true);
                keys("k\n", None)
            },
        );
        assert!(fetched.get());
    }

    #[test]
    fn index_absence_removes_like_a_404() {
        let t = sync_indexed(&cur(Some(entry(10)), None), T, &ttls(), U, &absent(), never);
        assert_eq!((t.store, t.change), (Store::Remove, Change::Removed));
        assert_eq!(t.floor, None);
    }

    #[test]
    fn signed_index_absence_removes_the_entry_but_never_the_floor() {
        let e = signed_entry(10, 200);
        // Floor only in the entry (older caches): carried out before removal.
        let t = sync_indexed(&cur(Some(e.clone()), None), T, &ttls(), S, &absent(), never);
        assert_eq!(t.store, Store::Remove);
        assert_eq!(t.floor, Some(Floor::of(200, &e.body).by(Some(FP))));
        // Stored floor: nothing lower is ever written.
        let stored = Floor::of(200, &e.body);
        let t = sync_indexed(&cur(Some(e), Some(stored)), T, &ttls(), S, &absent(), never);
        assert_eq!((t.store, t.floor), (Store::Remove, None));
        // And the older, validly signed file is still refused afterwards.
        let old = signed_body("alice", 100, "revoked");
        let t = login(&cur(None, Some(stored)), T, &ttls(), S, |_, _| {
            keys(&old, Some(100))
        });
        assert!(failed(&t).contains("rollback refused"), "{t:?}");
    }

    #[test]
    fn signed_index_refreshes_only_a_usable_entry_of_the_listed_serial() {
        let e = signed_entry(400, 7);
        let t = sync_indexed(
            &cur(Some(e.clone()), None),
            T,
            &ttls(),
            S,
            &listed(&e),
            never,
        );
        assert!(matches!(t.store, Store::Refresh(_)));
        // Same body hash, other serial: fetched.
        let other = Listing::Listed {
            serial: Some(8),
            hash: crate::index::digest(e.body.as_bytes()),
        };
        let asked = std::cell::Cell::new(false);
        sync_indexed(
            &cur(Some(e.clone()), None),
            T,
            &ttls(),
            S,
            &other,
            |_, _| {
                asked.set(true);
                down()
            },
        );
        assert!(asked.get());
        // Expired signed entry: never refreshed, even if listed.
        let mut expired = e.clone();
        expired.body = format!(
            "{}\nk\n",
            Header {
                user: "alice".into(),
                kind: Kind::Keys,
                serial: 7,
                expires: T as i64 - 1
            }
            .to_line()
        );
        let t = sync_indexed(
            &cur(Some(expired.clone()), None),
            T,
            &ttls(),
            S,
            &listed(&expired),
            |etag, _| {
                assert_eq!(etag, None);
                down()
            },
        );
        assert_eq!(t.store, Store::Nothing);
        assert!(matches!(t.change, Change::Failed(_)));
        // Below the floor (a cache restored from a backup): not refreshed.
        let floor = Floor::of(9, "newer");
        let t = sync_indexed(
            &cur(Some(e.clone()), Some(floor)),
            T,
            &ttls(),
            S,
            &listed(&e),
            |_, f| {
                assert_eq!(f, Some(floor));
                down()
            },
        );
        assert_eq!(t.store, Store::Nothing);
        // An unsigned entry in signed mode is never the listed version.
        let plain = entry(10);
        assert!(!is_listed_version(&plain, &listed(&plain), S));
        assert!(is_listed_version(&plain, &listed(&plain), U));
    }

    #[test]
    fn login_uses_the_index_only_for_a_user_it_does_not_list() {
        let no_index = || -> Option<Listing> { panic!("a cache hit must not read the index") };
        let t = login_indexed(&cur(Some(entry(10)), None), T, &ttls(), U, no_index, never);
        assert_eq!(served(&t), (Some("old\n"), "cache"));

        let t = login_indexed(&cur(None, None), T, &ttls(), U, || Some(absent()), never);
        assert_eq!(served(&t), (None, "index"));
        assert!(matches!(&t.store, Store::Write(e) if e.status == Status::NoKeys));
        // A stale entry of a user the index dropped: keys taken away.
        let t = login_indexed(
            &cur(Some(entry(400)), None),
            T,
            &ttls(),
            U,
            || Some(absent()),
            never,
        );
        assert_eq!(served(&t), (None, "index"));

        // Listed, or no fresh index: the directory is asked as before.
        let e = entry(400);
        let l = listed(&e);
        let t = login_indexed(
            &cur(Some(e), None),
            T,
            &ttls(),
            U,
            || Some(l),
            |etag, _| {
                assert_eq!(etag, Some("\"e1\""));
                Fetch::NotModified { url: "u".into() }
            },
        );
        assert_eq!(served(&t).1, "directory");
        let t = login_indexed(
            &cur(None, None),
            T,
            &ttls(),
            U,
            || None,
            |_, _| keys("k\n", None),
        );
        assert_eq!(served(&t), (Some("k\n"), "directory"));

        // Signed: the deny keeps the floor the entry carried.
        let se = signed_entry(400, 200);
        let t = login_indexed(
            &cur(Some(se.clone()), None),
            T,
            &ttls(),
            S,
            || Some(absent()),
            never,
        );
        assert_eq!(served(&t), (None, "index"));
        assert_eq!(t.floor, Some(Floor::of(200, &se.body).by(Some(FP))));
    }

    /// Lookup A read floor 100 and fetched serial 150 from a slow mirror;
    /// meanwhile B accepted serial 200. Under the lock A must neither lower
    /// the floor nor store or serve serial 150.
    #[test]
    fn settling_never_writes_from_a_stale_read() {
        let older = signed_entry(0, 150);
        let newer = signed_entry(0, 200);
        let read = cur(None, Some(Floor::of(100, "x")));
        let t = login(&read, T, &ttls(), S, |_, _| keys(&older.body, Some(150)));
        assert_eq!(t.floor.map(|f| f.serial), Some(150));
        let disk = cur(Some(newer.clone()), Some(Floor::of(200, &newer.body)));
        let s = settle(&read, t, &disk, T, &ttls(), S, Purpose::Login);
        assert_eq!(
            s.floor, None,
            "the floor on disk is higher: nothing written"
        );
        assert_eq!(s.store, Store::Nothing);
        assert_eq!(served(&s), (Some(newer.body.as_str()), "cache"));
        assert!(s.warning.unwrap().contains("rollback refused"));
        // Sync: refused, nothing stored.
        let t = sync(&read, T, &ttls(), S, |_, _| keys(&older.body, Some(150)));
        let s = settle(&read, t, &disk, T, &ttls(), S, Purpose::Sync);
        assert!(matches!(s.change, Change::Failed(ref w) if w.contains("rollback refused")));
        assert_eq!((s.floor, s.store), (None, Store::Nothing));
        // A stale entry of serial 150 is not served once 200 is on disk.
        let stale = cur(
            Some(signed_entry(400, 150)),
            Some(Floor::of(150, &older.body)),
        );
        let t = login(&stale, T, &ttls(), S, |_, _| down());
        assert_eq!(served(&t).1, "stale");
        let mut disk_stale = disk.clone();
        disk_stale.entry = Some(signed_entry(400, 200));
        let s = settle(&stale, t, &disk_stale, T, &ttls(), S, Purpose::Login);
        assert_eq!(
            served(&s).0,
            Some(disk_stale.entry.as_ref().unwrap().body.as_str())
        );
        // One warning that says both why the fetched file was refused and
        // that a stale entry is served, the reason given once.
        let w = s.warning.unwrap();
        assert!(w.contains("serving cache entry 400s old"), "{w}");
        assert_eq!(w.matches("rollback refused: ").count(), 1, "{w}");
        // With nothing newer on disk, the transition is carried out as is.
        let t = login(&read, T, &ttls(), S, |_, _| keys(&older.body, Some(150)));
        let s = settle(&read, t.clone(), &read, T, &ttls(), S, Purpose::Login);
        assert_eq!(s, t);
    }

    /// Only a fresh cache hit that writes nothing goes without the state
    /// lock: anything written, and any answer decided from a read that may
    /// be old by now (the directory's, a stale entry), is settled under it.
    #[test]
    fn only_a_fresh_cache_hit_that_writes_nothing_skips_settling() {
        let fresh = cur(Some(entry(10)), None);
        let hit = login(&fresh, T, &ttls(), U, never);
        assert_eq!(served(&hit).1, "cache");
        assert!(!hit.needs_settling());
        let with = |f: &dyn Fn(&mut Transition)| {
            let mut t = hit.clone();
            f(&mut t);
            t.needs_settling()
        };
        assert!(with(&|t| t.floor = Some(Floor::of(1, "x"))), "a floor");
        assert!(with(&|t| t.store = Store::Remove), "a store");
        assert!(with(&|t| t.store = Store::Refresh(entry(0))), "a refresh");
        for source in ["stale", "directory"] {
            let t = |t: &mut Transition| {
                t.answer = Answer::Serve {
                    body: Some("k\n".into()),
                    source,
                    age_s: 0,
                }
            };
            assert!(with(&t), "{source}");
        }
        // Failing closed with nothing to write needs no lock.
        assert!(!with(&|t| t.answer = Answer::Fail("no".into())));
        // Served from the directory: settled.
        let stale = cur(Some(entry(400)), None);
        let t = login(&stale, T, &ttls(), U, |_, _| keys("new\n", None));
        assert!(t.needs_settling());
        // Settling not done in time: nothing stored, the lookup fails closed.
        let u = unsettled("state lock busy".into());
        assert_eq!((u.store, u.floor), (Store::Nothing, None));
        assert_eq!(u.answer, Answer::Fail("state lock busy".into()));
        assert_eq!(u.change, Change::Failed("state lock busy".into()));
    }

    /// A floor decided from an earlier read is written only when it is
    /// above the one on disk now: another process may have raised the floor
    /// meanwhile (a lower one is never written back) or written the same.
    #[test]
    fn settling_writes_a_floor_only_above_the_one_on_disk() {
        let e = signed_entry(10, 200);
        let read = cur(Some(e.clone()), None);
        let t = sync(&read, T, &ttls(), S, |_, _| Fetch::NoKeys {
            url: "u".into(),
        });
        let carried = Floor::of(200, &e.body).by(Some(FP));
        assert_eq!((t.floor, &t.store), (Some(carried), &Store::Remove));
        let s = settle(&read, t.clone(), &read, T, &ttls(), S, Purpose::Sync);
        assert_eq!(s.floor, Some(carried), "nothing on disk: written");
        let newer = signed_entry(0, 300);
        let higher = Floor::of(300, &newer.body).by(Some(FP));
        let disk = cur(Some(newer), Some(higher));
        let s = settle(&read, t.clone(), &disk, T, &ttls(), S, Purpose::Sync);
        assert_eq!(s.floor, None, "never lowered");
        let s = settle(
            &read,
            t,
            &cur(None, Some(carried)),
            T,
            &ttls(),
            S,
            Purpose::Sync,
        );
        assert_eq!(s.floor, None, "already there");
    }

    #[test]
    fn a_304_does_not_write_back_an_entry_replaced_meanwhile() {
        let old = entry(400);
        let read = cur(Some(old.clone()), None);
        let t = login(&read, T, &ttls(), U, |_, _| Fetch::NotModified {
            url: "u".into(),
        });
        assert!(matches!(t.store, Store::Refresh(_)));
        let mut newer = entry(0);
        newer.body = "newer\n".into();
        let s = settle(
            &read,
            t.clone(),
            &cur(Some(newer), None),
            T,
            &ttls(),
            U,
            Purpose::Login,
        );
        assert_eq!(s.store, Store::Nothing);
        let s = settle(&read, t, &read, T, &ttls(), U, Purpose::Login);
        assert!(matches!(s.store, Store::Refresh(_)));
    }

    #[test]
    fn raising_a_floor_never_lowers_it() {
        let f = Floor::of(200, "a");
        assert_eq!(Floor::raise(None, f), Ok(Some(f)));
        assert_eq!(
            Floor::raise(Some(f), f),
            Ok(None),
            "same file: nothing to write"
        );
        let up = Floor::of(201, "b");
        assert_eq!(Floor::raise(Some(f), up), Ok(Some(up)));
        assert!(Floor::raise(Some(up), f).is_err());
        assert!(Floor::raise(Some(f), Floor::of(200, "b")).is_err());
    }

    /// The old signer, compromised, signed serial u64::MAX-1 with the
    /// attacker's key; the operator removed it from the signers. Its entry
    /// is never served (not fresh, not stale) and its floor binds no more.
    #[test]
    fn a_removed_signers_entry_and_floor_are_void() {
        const OLD: Signer = Signer::Sha256([9; 32]);
        let absurd = u64::MAX - 1;
        let evil = Entry {
            signer: Some(OLD),
            ..signed_entry(10, absurd)
        };
        let floor = Floor::of(absurd, &evil.body).by(Some(OLD));
        let c = cur(Some(evil.clone()), Some(floor));
        let a = assess(&c, T, &ttls(), S);
        assert_eq!(a.floor, None, "a removed signer's floor does not bind");
        assert!(a
            .unusable
            .unwrap()
            .contains("no longer a configured signer"));
        // Not served even though fresh, nor stale when the directory is down.
        let t = login(&c, T, &ttls(), S, |_, f| {
            assert_eq!(f, None, "no floor sent");
            down()
        });
        assert!(failed(&t).contains("cannot be served"), "{t:?}");
        // The new signer's file with a far lower serial is accepted, and its
        // floor replaces the void one.
        let body = signed_body("alice", 5, "k");
        let t = login(&c, T, &ttls(), S, |_, _| keys(&body, Some(5)));
        assert_eq!(served(&t).0, Some(body.as_str()));
        assert_eq!(t.floor, Some(Floor::of(5, &body).by(Some(FP))));
        let settled = settle(&c, t, &c, T, &ttls(), S, Purpose::Login);
        assert_eq!(settled.floor, Some(Floor::of(5, &body).by(Some(FP))));
        // While the old signer is still trusted, the same floor binds.
        let both = Mode::Signed {
            user: "alice",
            kind: Kind::Keys,
            signers: &[FP, OLD],
        };
        let t = login(&cur(None, Some(floor)), T, &ttls(), both, |_, _| {
            keys(&body, Some(5))
        });
        assert!(failed(&t).contains("rollback refused"));
    }

    /// Entries and floors written before they recorded a signer: a floor
    /// binds whatever the signers; an entry is refetched, never served.
    #[test]
    fn entries_and_floors_without_a_signer() {
        let legacy = Entry {
            signer: None,
            ..signed_entry(10, 200)
        };
        let floor = Floor::of(200, &legacy.body);
        let c = cur(Some(legacy), Some(floor));
        let a = assess(&c, T, &ttls(), S);
        assert_eq!(a.floor, Some(floor), "binds");
        assert!(a.unusable.unwrap().contains("records no signer"));
        let t = login(&c, T, &ttls(), S, |etag, _| {
            assert_eq!(etag, None, "not revalidated by a 304");
            down()
        });
        assert!(failed(&t).contains("cannot be served"));
        let old = signed_body("alice", 100, "k");
        let t = login(&cur(None, Some(floor)), T, &ttls(), S, |_, _| {
            keys(&old, Some(100))
        });
        assert!(failed(&t).contains("rollback refused"));
        assert!(Floor::decode(&floor.encode()).unwrap().signer.is_none());
        let bound = floor.by(Some(FP));
        assert_eq!(Floor::decode(&bound.encode()), Ok(bound));
    }

    #[test]
    fn the_stored_index_is_renewed_only_once_it_is_four_fifths_of_ttl_old() {
        let ttl = std::time::Duration::from_secs(300);
        assert!(!super::index_renewal_due(1_000, 1_000, ttl));
        assert!(!super::index_renewal_due(1_000, 1_239, ttl));
        assert!(super::index_renewal_due(1_000, 1_240, ttl));
        assert!(super::index_renewal_due(1_000, 5_000, ttl));
        // dated in the future: the clock moved back
        assert!(super::index_renewal_due(1_000, 999, ttl));
    }
}
