//! `keyward sync` keeps the host's revocation list current: when the
//! index's `:revoked` line names a version other than the installed one
//! (or, without an index, on a conditional GET of `revoked.list`), it
//! fetches the list (`HttpDirectory::fetch_revoked`: size, `list::check`,
//! signature, `expires`, floor), then installs it at `store::path` under
//! the list's state lock: the floor on disk is read again and raised,
//! never lowered, before the list is replaced (temp file, fsync, rename).
//! Nothing a mirror says removes the installed list or lowers its floor: a
//! 404, an older (replayed) list, a bad signature or a failed fetch leave
//! both as they are.

use std::time::Duration;

use crate::config::Config;
use crate::directory::{HttpDirectory, NewList, RevokedFetch};
use crate::index::Digest;
use crate::revocation::store;
use crate::signed::Signer;
use crate::state::{self, Floor};
use crate::statestore::{atomic_write, FloorStore};

/// The list's floor among the keys floors (a dot name: never a user's).
pub const FLOOR: &str = ".revoked";
/// The list's path relative to the mirrors' folders when no index names it.
pub const DEFAULT_PATH: &str = "revoked.list";
/// How long sync waits for the list's state lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What the index says about the list this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed<'a> {
    /// No usable index this run: ask for the list itself.
    NoIndex,
    /// The index has no `:revoked` line: the directory publishes no list.
    Absent,
    /// The index's line: the list's hash and path.
    Line { hash: Digest, path: &'a str },
}

/// What this run did, for the sync record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `installed`, `unchanged` (the index names the installed list),
    /// `304`, `none` (no list published), `off` (no mirror folder), or
    /// `failed` (see `error`).
    pub how: &'static str,
    /// The installed list's serial after this run (signed mode).
    pub serial: Option<u64>,
    pub error: Option<String>,
}

/// Where the ETag of the installed list is kept: the cache (it only saves
/// a download; the list and its floor are state).
pub(super) fn etag_path(config: &Config) -> std::path::PathBuf {
    config.cache.dir.join(".revoked.etag")
}

/// Refreshes the installed list (see the module comment).
pub fn sync(
    config: &Config,
    dir: &HttpDirectory,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    listed: Listed,
) -> Outcome {
    let path = store::path(config);
    let installed = std::fs::read_to_string(&path).ok();
    let serial_of = |t: &str| {
        crate::revocation::list::Header::parse(t.lines().next().unwrap_or_default())
            .ok()
            .and_then(|h| h.serial)
    };
    let done = |how, serial, error| Outcome { how, serial, error };
    let installed_serial = installed.as_deref().and_then(serial_of);
    if !dir.has_folders() {
        return done("off", installed_serial, None);
    }
    let path_rel = match listed {
        Listed::Absent => return done("none", installed_serial, None),
        Listed::Line { hash, .. }
            if installed
                .as_deref()
                .is_some_and(|t| crate::index::digest(t.as_bytes()) == hash) =>
        {
            return done("unchanged", installed_serial, None)
        }
        Listed::Line { path, .. } => path,
        Listed::NoIndex => DEFAULT_PATH,
    };
    let failed = |why: String| done("failed", installed_serial, Some(why));
    let kept = match signers {
        Some(_) => match floors.read(FLOOR) {
            Ok(f) => f,
            Err(e) => return failed(e.to_string()),
        },
        None => None,
    };
    let floor = state::binding(kept, signers.unwrap_or_default());
    // The ETag only when the installed list is there to fall back on.
    let etag = installed
        .as_ref()
        .and_then(|_| std::fs::read_to_string(etag_path(config)).ok());
    match dir.fetch_revoked(path_rel, etag.as_deref().map(str::trim), floor) {
        RevokedFetch::NotModified { .. } => done("304", installed_serial, None),
        RevokedFetch::Missing { url } => match listed {
            // The index names a list the mirrors do not have.
            Listed::Line { .. } => failed(format!("{url}: 404, the installed list is kept")),
            _ => done("none", installed_serial, None),
        },
        f @ (RevokedFetch::Unavailable { .. } | RevokedFetch::Misconfigured { .. }) => {
            failed(f.failure().unwrap_or_default())
        }
        RevokedFetch::New(NewList {
            text,
            etag,
            serial,
            signer,
            ..
        }) => match install(config, floors, signers, &text, serial, signer) {
            Ok(()) => {
                let e = etag_path(config);
                match etag {
                    Some(tag) => {
                        let _ = atomic_write(&config.cache.dir, &e, tag.as_bytes(), false);
                    }
                    None => {
                        let _ = std::fs::remove_file(&e);
                    }
                }
                done("installed", serial, None)
            }
            Err(why) => failed(why),
        },
    }
}

/// Installs a checked list: in signed mode under the list's state lock,
/// its serial checked again against the floor on disk (another sync may
/// have installed a newer list meanwhile) and the floor raised first.
pub(super) fn install(
    config: &Config,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    text: &str,
    serial: Option<u64>,
    signer: Option<Signer>,
) -> Result<(), String> {
    let path = store::path(config);
    let write = || {
        use std::os::unix::fs::DirBuilderExt;
        let state = &config.state.dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(state)
            .and_then(|()| atomic_write(state, &path, text.as_bytes(), true))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let Some(signers) = signers else {
        return write();
    };
    let serial = serial.ok_or("a signed revocation list needs serial=")?;
    let new = Floor::of(serial, text).by(signer);
    let lock = floors.lock(FLOOR, LOCK_WAIT).map_err(|e| e.to_string())?;
    let disk = floors.read(FLOOR).map_err(|e| e.to_string())?;
    match Floor::raise(state::binding(disk, signers), new) {
        Err(r) => Err(format!(
            "revocation list refused: {}",
            r.to_string().replace("signed file", "list")
        )),
        Ok(raised) => {
            if let Some(f) = raised {
                floors.write(FLOOR, &f, &lock).map_err(|e| e.to_string())?;
            }
            write()
        }
    }
}
