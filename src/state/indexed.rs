//! The directory index's rules: what an index line, or its
//! absence, does to a cache entry. Every effect is an answer the directory
//! could have given (`Fetch::NotModified`, `Fetch::NoKeys`) run through
//! `on_answer`, so the floor and every other rule of `state` apply unchanged.
//! The table tests are `state`'s.

use super::{
    assess, etag, on_answer, serve_cached, Answer, Current, Fetch, Floor, Mode, Purpose,
    Transition, Ttls,
};
use crate::entry::{Entry, Status};

/// What a valid directory index says about one user (see `index`). The
/// index's effects on an entry are answers the directory could have given,
/// so every rule above (the floor above all) applies to them unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Not listed: the user has no keys, like a 404. In signed mode the
    /// index is signed, so this may deny; like a 404 it never lowers or
    /// forgets a floor.
    Absent { index: String },
    /// Listed with this file version (hash of the file as served, and the
    /// serial of a signed file).
    Listed {
        serial: Option<u64>,
        hash: crate::index::Digest,
    },
}

/// Whether `e` is the file the index lists: same body hash, and in signed
/// mode the same serial. (Whether it may still be served is `assess`'s.)
pub fn is_listed_version(e: &Entry, listing: &Listing, mode: Mode) -> bool {
    let Listing::Listed { serial, hash } = listing else {
        return false;
    };
    e.status == Status::Keys
        && crate::index::digest(e.body.as_bytes()) == *hash
        && match mode {
            Mode::Unsigned => true,
            Mode::Signed { .. } => e.serial.is_some() && e.serial == *serial,
        }
}

/// Whether a polling sync (`keyward sync --poll`, the packaged timer's)
/// leaves this entry alone this run. The timer polls the index every 30 s so
/// that a change lands at once, but a per-user check (a request, or an age
/// refresh written to disk) is due only once the entry is 4/5 of its ttl old:
/// polling often must cost neither a request nor a write per user. What the
/// index says changed (another version listed, the user gone) is never
/// skipped, nor an entry that is unusable or whose floor must be written.
pub fn poll_skips(
    cur: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    listing: Option<&Listing>,
) -> bool {
    let Some(e) = &cur.entry else {
        return false;
    };
    let a = assess(cur, now, ttls, mode);
    if cur.corrupt.is_some() || a.unusable.is_some() || a.floor_behind {
        return false;
    }
    let agrees = match listing {
        None => true,
        Some(Listing::Absent { .. }) => e.status == Status::NoKeys,
        Some(l) => is_listed_version(e, l, mode),
    };
    if !agrees {
        return false;
    }
    let ttl = match e.status {
        Status::Keys => ttls.ttl,
        Status::NoKeys => ttls.negative_ttl,
    };
    !renewal_due(e.age(now), ttl)
}

/// Whether something the login path trusts for `ttl` is due for a renewal
/// at this poll: once it is 4/5 of `ttl` old, leaving the last fifth for
/// the poll after (None: dated in the future, the clock moved back).
fn renewal_due(age: Option<u64>, ttl: std::time::Duration) -> bool {
    age.is_none_or(|age| age.saturating_mul(5) >= ttl.as_secs().saturating_mul(4))
}

/// Whether a poll that found the index unchanged (a 304) writes the stored
/// copy again to renew its age. The login path trusts a stored index
/// younger than `ttl` (`IndexCache::login_listing`); renewing it at every
/// 30 s poll would rewrite the whole index (megabytes at 100,000 users)
/// twice a minute, so, like a user's entry in `poll_skips`, only once it is
/// 4/5 of `ttl` old (or dated in the future: the clock moved back).
pub fn index_renewal_due(fetched_at: u64, now: u64, ttl: std::time::Duration) -> bool {
    renewal_due(now.checked_sub(fetched_at), ttl)
}

/// Sync with an index: a user the index does not list is dropped like a
/// 404 (floor kept); an entry that is the listed version and still usable
/// (a signed one within its own expiry, above the floor) has its age
/// refreshed like a 304, with no request; anything else is fetched.
pub fn sync_indexed(
    cur: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    listing: &Listing,
    fetch: impl FnOnce(Option<&str>, Option<Floor>) -> Fetch,
) -> Transition {
    let a = assess(cur, now, ttls, mode);
    let fetched = match (listing, &cur.entry) {
        (Listing::Absent { index }, _) => Fetch::NoKeys { url: index.clone() },
        (Listing::Listed { .. }, Some(e))
            if a.unusable.is_none() && is_listed_version(e, listing, mode) =>
        {
            Fetch::NotModified { url: e.url.clone() }
        }
        (Listing::Listed { .. }, _) => fetch(etag(cur, &a), a.floor),
    };
    on_answer(cur, &a, fetched, now, ttls, mode, Purpose::Sync)
}

/// The login path with a fresh index at hand: as `login`, but an entry that
/// is not fresh, for a user the index does not list, is answered "no keys"
/// without a request (`source=index`). `listing` is only called when the
/// entry is not fresh, so a cache hit never reads the index.
pub fn login_indexed(
    cur: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    listing: impl FnOnce() -> Option<Listing>,
    fetch: impl FnOnce(Option<&str>, Option<Floor>) -> Fetch,
) -> Transition {
    let a = assess(cur, now, ttls, mode);
    if let Some(t) = serve_cached(cur, &a, now) {
        return t;
    }
    if let Some(Listing::Absent { index }) = listing() {
        let mut t = on_answer(
            cur,
            &a,
            Fetch::NoKeys { url: index },
            now,
            ttls,
            mode,
            Purpose::Login,
        );
        if let Answer::Serve { source, .. } = &mut t.answer {
            *source = "index";
        }
        return t;
    }
    let fetched = fetch(etag(cur, &a), a.floor);
    on_answer(cur, &a, fetched, now, ttls, mode, Purpose::Login)
}
