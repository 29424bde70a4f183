//! `keyward sync` with `[revocation] sshd_krl = PATH`: installs the KRL the
//! installed revocation list names (its header's `krl=`) at PATH for sshd's
//! `RevokedKeys`.
//!
//! sshd refuses every key login while its `RevokedKeys` file is missing or
//! unreadable, so the installed file is only ever replaced whole (temp file
//! in the same folder, fsync, rename, fsync the folder), mode 0644, and
//! never removed or truncated: a KRL that is missing (404), corrupt,
//! unsigned or wrongly signed, not the one the list names, or older than
//! the installed one leaves the installed file as it is (the run's record
//! says why). The KRL is bound to the list by hash, so it inherits the
//! list's signature, expiry and rollback floor; in signed mode its own
//! signature and its version (the list's serial) are checked as well.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::directory::{HttpDirectory, KrlFetch};
use crate::revocation::{krl, list, store};
use crate::statestore::{atomic_write_mode, FloorStore};

/// What every failure's record ends with.
const KEPT: &str = "the installed KRL is kept";

/// How long sync waits for the list's state lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What this run did about the KRL, for the sync record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `installed`, `unchanged` (the installed KRL is the one the list
    /// names), `nolist` (no list installed yet), `off` (no mirror folder),
    /// or `failed` (see `error`; the installed KRL is kept).
    pub how: &'static str,
    /// The installed KRL's version after this run.
    pub version: Option<u64>,
    pub error: Option<String>,
}

/// The KRL's path relative to the mirrors' folders: beside the list.
pub fn sibling(list_path: &str) -> String {
    match list_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}", krl::FILE),
        None => krl::FILE.to_owned(),
    }
}

/// Installs the KRL the installed list names at `dest`, when it is not
/// there yet. `list_path`: the list's path relative to the mirrors'
/// folders (as the index names it).
pub fn sync(
    config: &Config,
    dest: &Path,
    dir: &HttpDirectory,
    floors: &FloorStore,
    list_path: &str,
) -> Outcome {
    let installed = std::fs::read(dest).ok();
    let have = installed.as_deref().and_then(krl::version);
    let done = |how, error: Option<String>| Outcome {
        how,
        version: have,
        error,
    };
    let header = match listed_krl(config) {
        Ok(Some(h)) => h,
        Ok(None) => return done("nolist", None),
        Err(e) => return done("failed", Some(format!("{e}; {KEPT}"))),
    };
    let Some(want) = header.krl else {
        let why = "the installed revocation list names no KRL (no krl= in its header: \
                   publish it with this keyward)";
        return done("failed", Some(format!("{why}; {KEPT}")));
    };
    if installed.as_deref().map(krl::digest) == Some(want) {
        return done("unchanged", None);
    }
    if !dir.has_folders() {
        return done("off", None);
    }
    let bytes = match dir.fetch_krl(&sibling(list_path), &want) {
        KrlFetch::New { bytes, .. } => bytes,
        KrlFetch::Missing { url } => return done("failed", Some(format!("{url}: 404; {KEPT}"))),
        KrlFetch::Unavailable { errors } => {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return done("failed", Some(format!("{}; {KEPT}", why.join("; "))));
        }
        KrlFetch::Misconfigured { error } => {
            return done("failed", Some(format!("{error}; {KEPT}")))
        }
    };
    match install(
        config,
        dest,
        floors,
        &bytes,
        want,
        config.directory.signed(),
    ) {
        Ok(v) => Outcome {
            how: "installed",
            version: Some(v),
            error: None,
        },
        Err(e) => done("failed", Some(format!("{e}; {KEPT}"))),
    }
}

/// The installed list's header (None: no list installed).
fn listed_krl(config: &Config) -> Result<Option<list::Header>, String> {
    match store::open(config)? {
        Some(l) => Ok(Some(l.header)),
        None => Ok(None),
    }
}

/// Whether `new` may replace `installed` (versions: `new_v` and the
/// installed KRL's, if it parses). Signed mode: the KRL's version is the
/// list's serial (publish builds it so).
pub fn admits(new_v: u64, installed: Option<u64>, list_serial: Option<u64>) -> Result<(), String> {
    if let Some(s) = list_serial {
        if new_v != s {
            return Err(format!(
                "KRL version {new_v} is not the installed list's serial {s}"
            ));
        }
    }
    match installed {
        Some(old) if new_v < old => Err(format!(
            "KRL version {new_v} is older than the installed one ({old}): a replay"
        )),
        _ => Ok(()),
    }
}

/// Replaces `dest` with `bytes` under the list's state lock: the list on
/// disk must still name this KRL (a concurrent sync may have installed a
/// newer list) and the installed KRL must not be newer.
fn install(
    config: &Config,
    dest: &Path,
    floors: &FloorStore,
    bytes: &[u8],
    want: krl::Digest,
    signed: bool,
) -> Result<u64, String> {
    let v = krl::version(bytes).ok_or("not an OpenSSH KRL")?;
    let _lock = floors
        .lock(super::revoked::FLOOR, LOCK_WAIT)
        .map_err(|e| e.to_string())?;
    let header = listed_krl(config)?.ok_or("the installed revocation list vanished")?;
    if header.krl != Some(want) {
        return Err("the installed revocation list changed meanwhile".into());
    }
    let have = std::fs::read(dest).ok();
    let serial = if signed { header.serial } else { None };
    admits(v, have.as_deref().and_then(krl::version), serial)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    };
    atomic_write_mode(parent, dest, bytes, true, 0o644)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_krl_sits_beside_the_list() {
        assert_eq!(sibling("revoked.list"), "revoked.krl");
        assert_eq!(sibling("rev/2026/revoked.list"), "rev/2026/revoked.krl");
    }

    #[test]
    fn never_an_older_krl_and_in_signed_mode_the_lists_version() {
        assert_eq!(admits(7, None, Some(7)), Ok(()));
        assert_eq!(admits(7, Some(7), Some(7)), Ok(()));
        assert_eq!(admits(8, Some(7), Some(8)), Ok(()));
        assert!(admits(6, Some(7), Some(6)).unwrap_err().contains("replay"));
        assert!(admits(7, None, Some(8)).unwrap_err().contains("serial 8"));
        // Unsigned: no serial to match, still never older.
        assert_eq!(admits(3, None, None), Ok(()));
        assert!(admits(3, Some(4), None).is_err());
    }
}
