//! `keyward sync` by deltas (`delta`, written by `publish`): with a stored
//! index at serial S whose `:deltas` line announces them, a poll is one
//! conditional GET of `keyward.index.d/S`. A 304, or the empty delta, says
//! nothing changed; a delta from S is checked (its signature, `expires`,
//! `from` = S, `from_sha256` = the stored text's, `to` above S) and applied,
//! the result checked against `to_sha256` and as a full index, then stored
//! through the same commit as a fetched index (`commit_index`: the index
//! floor raised under its lock). The revocation list likewise, from the
//! installed list's serial (`revoked.list.d/S`), installed through
//! `sync::revoked::install`. Anything else (404: too far behind, a bad
//! signature, a hash that differs) falls back to the full file, and says
//! why in the sync record (`index_delta=`, `revoked_delta=`). Once a day
//! ([`FULL_CHECK`]) the poll reads the index's own first line instead (a
//! range request: `index_delta=checked` when its serial is the stored
//! one), and a different serial or none fetches the index itself
//! (`index_delta=due`), so an index changed or removed without its deltas
//! is noticed without every host downloading it daily.

use super::{commit_index, revoked, FreshIndex};
use crate::config::Config;
use crate::delta::Delta;
use crate::directory::{DeltaFetch, HttpDirectory, NewDelta};
use crate::index::{Digest, Index, DELTAS};
use crate::indexcache::{IndexCache, Stored};
use crate::signed::Signer;
use crate::statestore::FloorStore;

/// How often a host checks the index itself although deltas say nothing
/// changed: a directory whose index changed (or went) without its deltas
/// (an upload by hand, the index no longer published) is noticed within
/// this time, and the poll is still one request. It guards against an
/// operator's mistake only (a mirror that lies can answer 304 for the
/// index too).
pub const FULL_CHECK: u64 = 24 * 3600;

/// What a delta poll of the index gave.
pub enum Polled {
    /// The index itself is due (`FULL_CHECK`).
    Due,
    /// The index for this run, and the record's `index_delta=` (`304`,
    /// `current`, `applied`, `checked`).
    Done(Box<FreshIndex>, &'static str),
    /// The stored index announces no deltas.
    NotAnnounced,
    /// Fetch the full index; why.
    Fallback(String),
}

/// The delta folder a stored index's `:deltas` line names (None: no such
/// line). Found without parsing the whole index.
pub fn announced(text: &str) -> Option<&str> {
    let at = text.find(&format!("\n{DELTAS} "))?;
    let line = text[at + 1..].lines().next()?;
    let l = crate::index::Line::parse(line).ok()?;
    Some(l.path)
}

/// The transient failures of a delta fetch, for the record.
fn why_not(f: DeltaFetch) -> String {
    match f {
        DeltaFetch::Missing { .. } => "404".into(),
        DeltaFetch::NotModified { .. } | DeltaFetch::New(_) => "unexpected answer".into(),
        f => f.failure().unwrap_or_default(),
    }
}

/// Checks `d` against the stored text at `serial` (its hash `sha`) and
/// applies it: the new text, or why not.
fn checked_apply(d: &Delta, serial: u64, sha: &[u8; 32], text: &str) -> Result<String, String> {
    if d.from != serial {
        return Err(format!("from={} is not the stored serial {serial}", d.from));
    }
    if &d.from_sha256 != sha {
        return Err("from_sha256 is not the stored text's".into());
    }
    if d.to <= serial {
        return Err(format!("to={} is not above {serial}", d.to));
    }
    d.apply_to(text)
}

/// The index by delta, when the stored copy (`trusted`) announces deltas
/// and its full check is not due; `note`: the record's `index_delta=`.
pub fn poll(
    dir: &HttpDirectory,
    store: &IndexCache,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    (now, ttl): (u64, std::time::Duration),
    (s, text): (&Stored, &str),
    note: &mut Option<String>,
) -> Option<FreshIndex> {
    match poll_index(dir, store, floors, signers, (now, ttl), s, text) {
        Polled::Done(fresh, how) => {
            *note = Some(how.into());
            return Some(*fresh);
        }
        Polled::NotAnnounced => {}
        Polled::Due => *note = Some("due".into()),
        Polled::Fallback(why) => *note = Some(format!("fallback:{why}")),
    }
    None
}

/// The revocation list this run: by delta first when the index announces
/// deltas (`poll_revoked`), then `revoked::sync` as ever (which finds the
/// list a delta installed current). The outcome, and `revoked_delta=`.
pub fn revoked(
    config: &Config,
    dir: &HttpDirectory,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    listed: revoked::Listed,
    deltas: bool,
) -> (revoked::Outcome, Option<String>) {
    let note = match listed {
        revoked::Listed::Line { hash, path } if deltas => {
            poll_revoked(config, dir, floors, signers, hash, path)
        }
        _ => None,
    };
    let mut out = revoked::sync(config, dir, floors, signers, listed);
    if note.as_deref() == Some("applied") {
        out.how = "installed";
    }
    (out, note)
}

/// One delta poll for the index (see the module comment). `s`, `text`:
/// the trusted stored copy.
pub fn poll_index(
    dir: &HttpDirectory,
    store: &IndexCache,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    (now, ttl): (u64, std::time::Duration),
    s: &Stored,
    text: &str,
) -> Polled {
    let Some(folder) = announced(text) else {
        return Polled::NotAnnounced;
    };
    let Some(serial) = s.header.serial else {
        return Polled::Fallback("the stored index has no serial".into());
    };
    let due = now.saturating_sub(s.checked_at) >= FULL_CHECK;
    let signed = signers.is_some();
    let rel = format!("{folder}/{serial}");
    let etag = s
        .delta_etag
        .as_ref()
        .filter(|(p, _)| *p == rel)
        .map(|(_, e)| e.as_str());
    // Nothing changed: the stored copy gets a new age (and the ETag of the
    // empty delta), as after a 304 for the index; after a plain 304, only
    // once its age is due (`index_renewal_due`).
    let unchanged = |etag: Option<(String, String)>, note| {
        if note == "304" && !crate::state::index_renewal_due(s.fetched_at, now, ttl) {
            return done(s.clone(), text.to_owned(), "304", None, note, now, signed);
        }
        let mut s2 = s.clone();
        s2.fetched_at = now;
        if note == "checked" {
            s2.checked_at = now;
        }
        if etag.is_some() {
            s2.delta_etag = etag;
        }
        match commit_index(store, floors, signers, None, &s2, text, false) {
            Ok(warning) => done(s2, text.to_owned(), "304", warning, note, now, signed),
            Err(no) => Polled::Fallback(no.why.unwrap_or_default()),
        }
    };
    // The daily check reads the index's own first line (one small range
    // request, instead of this run's delta poll): the same serial as the
    // stored copy means the deltas told the truth; anything else, the full
    // index (a conditional GET).
    if due {
        return match dir.index_serial() {
            Some(n) if n == serial => unchanged(None, "checked"),
            _ => Polled::Due,
        };
    }
    let (d, new_etag, signer) = match dir.fetch_delta(&rel, etag, "index") {
        DeltaFetch::NotModified { .. } => return unchanged(None, "304"),
        DeltaFetch::New(NewDelta {
            delta,
            etag,
            signer,
            ..
        }) => (delta, etag, signer),
        other => return Polled::Fallback(why_not(other)),
    };
    if d.is_empty() && d.from == serial && d.from_sha256 == s.sha256 {
        return unchanged(new_etag.map(|e| (rel, e)), "current");
    }
    let new = match checked_apply(&d, serial, &s.sha256, text) {
        Ok(t) => t,
        Err(why) => return Polled::Fallback(why),
    };
    let header = match Index::parse(&new) {
        Ok(i) => i.header,
        Err(e) => return Polled::Fallback(format!("the result is not an index: {e}")),
    };
    if header.serial != Some(d.to) {
        return Polled::Fallback("the result's serial is not to=".into());
    }
    let mut s2 = match Stored::new(now, None, s.url.clone(), signed, &new) {
        Ok(s2) => s2,
        Err(e) => return Polled::Fallback(e),
    };
    s2.checked_at = s.checked_at;
    match commit_index(store, floors, signers, signer, &s2, &new, true) {
        Ok(warning) => done(s2, new, "delta", warning, "applied", now, signed),
        Err(no) => Polled::Fallback(no.why.unwrap_or_default()),
    }
}

fn done(
    s: Stored,
    text: String,
    how: &'static str,
    warning: Option<String>,
    note: &'static str,
    now: u64,
    signed: bool,
) -> Polled {
    // A signed index is used only within its own expiry.
    if let Err(why) = s.usable(now, signed, None) {
        return Polled::Fallback(why);
    }
    let fresh = FreshIndex {
        stored: s,
        text,
        how,
        warning,
    };
    Polled::Done(Box::new(fresh), note)
}

/// The revocation list by delta, when the index announces deltas and
/// names a list other than the installed one: `Some("applied")` once the
/// new list is installed, `Some("fallback:WHY")` when the full list must
/// be fetched, None when there is nothing to do by delta.
pub fn poll_revoked(
    config: &Config,
    dir: &HttpDirectory,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    hash: Digest,
    path: &str,
) -> Option<String> {
    let installed = std::fs::read_to_string(crate::revocation::store::path(config)).ok()?;
    if crate::index::digest(installed.as_bytes()) == hash {
        return None;
    }
    let fallback = |why: String| Some(format!("fallback:{why}"));
    // An unsigned list has no serial to name a delta by: publish writes none.
    let Ok(Some(serial)) = crate::revocation::list::check(&installed).map(|h| h.serial) else {
        return None;
    };
    let rel = format!("{path}.d/{serial}");
    let (d, signer) = match dir.fetch_delta(&rel, None, "revoked") {
        DeltaFetch::New(NewDelta { delta, signer, .. }) => (delta, signer),
        other => return fallback(why_not(other)),
    };
    let sha = crate::delta::sha256(&installed);
    let new = match checked_apply(&d, serial, &sha, &installed) {
        Ok(t) => t,
        Err(why) => return fallback(why),
    };
    if crate::index::digest(new.as_bytes()) != hash {
        return fallback("the result is not the list the index names".into());
    }
    let header = match crate::revocation::list::check(&new) {
        Ok(h) => h,
        Err(e) => return fallback(format!("the result is not a list: {e}")),
    };
    let serial = match signers {
        Some(_) => {
            let now = crate::os::clock::now_secs() as i64;
            match crate::signed::check_list_header(header.serial, header.expires, now) {
                Ok(s) => Some(s),
                Err(why) => return fallback(why),
            }
        }
        None => header.serial,
    };
    if serial != Some(d.to) {
        return fallback("the result's serial is not to=".into());
    }
    match revoked::install(config, floors, signers, &new, serial, signer) {
        Ok(()) => {
            // The installed list's ETag is of the list replaced.
            let _ = std::fs::remove_file(revoked::etag_path(config));
            Some("applied".into())
        }
        Err(why) => fallback(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deltas_line_is_found_where_it_sorts() {
        let text = "#keyward-index serial=5\n0user - 0000000000000000 0user.keys\n\
                    :deltas - 0000000000000000 keyward.index.d\n\
                    :revoked 5 0123456789abcdef revoked.list\n\
                    alice 5 0123456789abcdef alice.keys\n";
        assert_eq!(announced(text), Some("keyward.index.d"));
        // What a host that knows nothing of deltas reads: the same users.
        let idx = Index::parse(text).unwrap();
        assert_eq!(idx.get("alice").unwrap().path, "alice.keys");
        assert_eq!(idx.lines.len(), 4);
        assert_eq!(announced("#keyward-index serial=5\n"), None);
        assert_eq!(
            announced("#keyward-index\nalice - 0000000000000000 :deltas\n"),
            None
        );
    }
}
