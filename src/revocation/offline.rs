//! The offline bound: how long a host trusts a revocation list it could
//! not confirm current. A host cut off from the directory cannot learn of
//! new revocations; certificates have no other way to be revoked, so once
//! the list was last confirmed longer ago than `[revocation] max_age`,
//! `principals` refuses every certificate (`reason=revocation_list_stale`).
//! Keys are not bound here: they follow `[cache] max_stale` like every
//! cached key list.
//!
//! "Confirmed" is sync's word: the index answered (200 or 304) and named
//! the installed list, or the list itself was fetched or answered 304, or
//! the directory said it publishes none. sync records the time in
//! `[state] dir`/revoked.confirmed under the list's state lock, never
//! lowering it ([`confirm`]); the login path reads it ([`read`]) and
//! [`verdict`] decides. A host that never confirmed a list (sync never ran,
//! or the directory has no `{user}` folder) is not bound: there is no list
//! to be stale.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::statestore::{atomic_write, Lock};

/// The reason a refused certificate's record carries.
pub const STALE: &str = "revocation_list_stale";

/// Where sync records when the list was last confirmed current.
pub fn path(config: &Config) -> PathBuf {
    config.state.dir.join("revoked.confirmed")
}

/// What the bound says about certificates now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// No bound applies (`max_age = false`, or never confirmed).
    Unbound,
    /// Confirmed `age` ago, within the bound.
    Current { age: Duration },
    /// Confirmed `age` ago, past `max_age`: certificates are refused.
    Stale { age: Duration, max_age: Duration },
}

/// The rule. A confirmation time in the future (a clock stepped back)
/// counts as just now: the list was current then.
pub fn verdict(confirmed: Option<u64>, now: u64, max_age: Option<Duration>) -> Offline {
    let (Some(at), Some(max_age)) = (confirmed, max_age) else {
        return Offline::Unbound;
    };
    let age = Duration::from_secs(now.saturating_sub(at));
    if age > max_age {
        Offline::Stale { age, max_age }
    } else {
        Offline::Current { age }
    }
}

/// When sync last confirmed the list (None: never). A file that is not a
/// number is an error: the caller fails closed.
pub fn read(config: &Config) -> Result<Option<u64>, String> {
    read_at(&path(config))
}

fn read_at(p: &Path) -> Result<Option<u64>, String> {
    let f = match std::fs::File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let mut text = String::new();
    f.take(64)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("{}: not a Unix time: {:?}", p.display(), text.trim()))
}

/// Records that the list was confirmed current at `now`, while the list's
/// state lock is held; never moves the time back (a slower sync that
/// started earlier must not undo a later confirmation). Returns the time
/// stored.
pub fn confirm(config: &Config, now: u64, _held: &Lock) -> Result<u64, String> {
    let p = path(config);
    // A corrupt record is replaced: this run just confirmed the list.
    let at = read_at(&p).ok().flatten().map_or(now, |t| t.max(now));
    atomic_write(&config.state.dir, &p, format!("{at}\n").as_bytes(), true)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(at)
}

/// Words for a log record or doctor: "3h12m".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    match s {
        0..=119 => format!("{s}s"),
        3600 => "1h".into(),
        120..=7199 => format!("{}m", s / 60),
        _ if s < 172_800 && mins == 0 => format!("{}h", s / 3600),
        _ if s < 172_800 => format!("{}h{mins}m", s / 3600),
        _ if hours == 0 => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn certificates_are_bound_only_once_confirmed_and_with_a_bound() {
        let now = 1_800_000_000;
        assert_eq!(verdict(None, now, Some(DAY)), Offline::Unbound);
        assert_eq!(verdict(Some(now - 10 * 86400), now, None), Offline::Unbound);
        assert_eq!(
            verdict(Some(now - 86400), now, Some(DAY)),
            Offline::Current { age: DAY }
        );
        assert_eq!(
            verdict(Some(now - 86401), now, Some(DAY)),
            Offline::Stale {
                age: DAY + Duration::from_secs(1),
                max_age: DAY
            }
        );
        // The clock stepped back: the confirmation is as good as new.
        assert_eq!(
            verdict(Some(now + 500), now, Some(DAY)),
            Offline::Current {
                age: Duration::ZERO
            }
        );
    }

    #[test]
    fn the_record_only_moves_forward_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().to_owned();
        assert_eq!(read(&c), Ok(None));
        let floors = crate::statestore::FloorStore::new(dir.path());
        let lock = floors.lock(".revoked", Duration::from_secs(1)).unwrap();
        assert_eq!(confirm(&c, 1000, &lock), Ok(1000));
        assert_eq!(confirm(&c, 900, &lock), Ok(1000));
        assert_eq!(read(&c), Ok(Some(1000)));
        assert_eq!(confirm(&c, 2000, &lock), Ok(2000));
        std::fs::write(path(&c), "yesterday\n").unwrap();
        assert!(read(&c).unwrap_err().contains("not a Unix time"));
        assert_eq!(confirm(&c, 3000, &lock), Ok(3000));
        assert_eq!(read(&c), Ok(Some(3000)));
    }

    #[test]
    fn ages_in_words() {
        assert_eq!(human(Duration::from_secs(59)), "59s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 720)), "3h12m");
        assert_eq!(human(Duration::from_secs(2 * 86400 + 7200)), "2d2h");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(86400)), "24h");
        assert_eq!(human(Duration::from_secs(3 * 86400)), "3d");
    }
}
