//! Carrying out a transition under the state lock: what was decided from
//! an earlier read, decided again against what is on disk now. Pure; the
//! lock and the reads are `cache::commit`'s.

use super::{assess, refused, serve_cached, Answer, Assessment, Change, Current, Floor};
use super::{Mode, Purpose, Store, Transition, Ttls};
use crate::entry::Entry;

impl Transition {
    /// Whether carrying it out needs the state lock: it writes something,
    /// or serves what is not a fresh cache hit (a directory answer or a
    /// stale entry, decided from a read that may be old by now).
    pub fn needs_settling(&self) -> bool {
        self.floor.is_some()
            || self.store != Store::Nothing
            || matches!(&self.answer, Answer::Serve { source, .. } if *source != "cache")
    }
}

/// A transition re-decided under the state lock against `disk`, what is on
/// disk now (read under the lock); `cur` is what it was decided from. The
/// written floor is never below the one on disk; a served or stored signed
/// file must still clear it, otherwise the answer is decided again from
/// disk (the file is refused as a rollback: another process accepted a
/// newer one meanwhile). A 304's refresh is dropped when the entry changed.
pub fn settle(
    cur: &Current,
    t: Transition,
    disk: &Current,
    now: u64,
    ttls: &Ttls,
    mode: Mode,
    purpose: Purpose,
) -> Transition {
    let da = assess(disk, now, ttls, mode);
    // On equal serials the one on disk stays (`Floor::max` keeps the first).
    let floor_now = Floor::max(da.floor, t.floor);
    if let (Mode::Signed { .. }, Answer::Serve { body: Some(b), .. }, Some(f)) =
        (mode, &t.answer, &floor_now)
    {
        let clears = crate::signed::parse_header(b)
            .and_then(|h| f.admits(h.serial, b).map_err(|r| r.to_string()));
        if let Err(why) = clears {
            return redecide(disk, &da, now, ttls, purpose, &why);
        }
    }
    let same_entry = |e: &Entry| {
        disk.entry
            .as_ref()
            .is_some_and(|d| d.status == e.status && d.serial == e.serial && d.body == e.body)
            && cur.entry.as_ref().is_some_and(|c| c.body == e.body)
    };
    let store = match t.store {
        Store::Refresh(e) if !same_entry(&e) => Store::Nothing,
        s => s,
    };
    Transition {
        store,
        floor: floor_now.filter(|f| Some(*f) != disk.floor),
        ..t
    }
}

/// The answer decided again from what is on disk, after the fetched file
/// was refused under the lock.
fn redecide(
    disk: &Current,
    da: &Assessment,
    now: u64,
    ttls: &Ttls,
    purpose: Purpose,
    why: &str,
) -> Transition {
    let why = format!("rollback refused: {why} (a newer file was accepted meanwhile)");
    let mut t = match purpose {
        Purpose::Login => serve_cached(disk, da, now),
        Purpose::Sync => None,
    }
    .unwrap_or_else(|| refused(disk, da, now, ttls, purpose, &why));
    t.warning = Some(match t.warning.take() {
        Some(w) if !w.contains(&why) => format!("{why}; {w}"),
        Some(w) => w,
        None => why,
    });
    t
}

/// The lock could not be had (or the state not read) in time: nothing is
/// stored and the lookup fails closed, since its answer could not be
/// checked against the floor on disk.
pub fn unsettled(why: String) -> Transition {
    Transition {
        store: Store::Nothing,
        floor: None,
        answer: Answer::Fail(why.clone()),
        change: Change::Failed(why),
        warning: None,
    }
}
