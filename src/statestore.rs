//! Security state on disk: rollback floors, and the locks every update of
//! them takes. The rules are `state`'s; this module only reads, writes and
//! locks.
//!
//! It lives in `[state] dir` (default `/var/lib/keyward`), apart from the
//! cache, so that cleaning the cache (`systemctl clean --what=cache`, a cache
//! cleaner, a new `[cache] dir`) never resets it:
//!
//! ```text
//! <state>/keys/<name>           keys rollback floors
//! <state>/keys/.index           the directory index's floor
//! <state>/principals/<name>     principals rollback floors
//! <state>/<kind>/.locks/<name>  the lock of each
//! <state>/.migrated             floors of the old layout moved here
//! ```
//!
//! `name` is the user's file name (`username::file_name`, derived once per
//! lookup), or a dot name of keyward's own such as `.index`. Every
//! update of a floor, and of the entry that goes with it, holds
//! `<dir>/.locks/<name>` (flock) from the read that decides it to the write:
//! two processes never write from a stale read. The wait for the lock is
//! bounded (the caller's budget): a stuck holder cannot hang a login.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::entry::Kind;
use crate::os::flock::{self, LockError};
use crate::os::safepath::{self, OpenError};
use crate::state::Floor;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("unsafe state: {0}")]
    Unsafe(#[from] safepath::Unsafe),
    #[error("state {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("rollback floor {path} is corrupt ({why}): remove it only if you trust the directory's current files")]
    Floor { path: PathBuf, why: &'static str },
    #[error("state lock {path} still held by another keyward after {waited_ms} ms: nothing stored, failing closed")]
    Busy { path: PathBuf, waited_ms: u128 },
}

/// `[state] dir`.
pub struct StateDir {
    root: PathBuf,
}

/// Marks a state directory whose floors of the old layout were moved in.
const MIGRATED: &str = ".migrated";

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the floors of the old layout were moved in.
    pub fn migrated(&self) -> bool {
        self.root.join(MIGRATED).exists()
    }

    /// The floors of `kind`'s files (the keys floors also hold the index's).
    pub fn floors(&self, kind: Kind) -> FloorStore {
        FloorStore::new(&self.root.join(kind.as_str()))
    }

    /// Moves the floors of the old layout (`<cache>/.floor/NAME`,
    /// `<cache>/.principals/.floor/NAME`, names from before they were
    /// encoded included) into the state directory, once: each under its
    /// lock, never lowering a floor already there; an old file is removed
    /// only once its floor is stored. Returns how many were moved; a
    /// corrupt old floor stops the migration (it is not forgotten).
    pub fn migrate(&self, cache_dir: &Path) -> Result<usize, StateError> {
        if self.root.join(MIGRATED).exists() {
            return Ok(0);
        }
        let mut moved = 0;
        for kind in [Kind::Keys, Kind::Principals] {
            let old_dir = match kind {
                Kind::Keys => cache_dir.join(".floor"),
                Kind::Principals => cache_dir.join(".principals/.floor"),
            };
            let old = FloorStore::new(&old_dir);
            let new = self.floors(kind);
            let names = match std::fs::read_dir(&old_dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                rd => rd.map_err(old.io(&old_dir))?,
            };
            for n in names.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
                let Some(name) = migrated_name(&n) else {
                    continue;
                };
                let Some(floor) = old.read(&n)? else { continue };
                let lock = new.lock(&name, Duration::from_secs(10))?;
                let higher = crate::state::Floor::max(new.read(&name)?, Some(floor));
                if higher != new.read(&name)? {
                    if let Some(f) = higher {
                        new.write(&name, &f, &lock)?;
                    }
                }
                std::fs::remove_file(old.path(&n)).map_err(old.io(&old.path(&n)))?;
                moved += 1;
            }
            let _ = std::fs::remove_dir_all(old_dir.join(".locks"));
            let _ = std::fs::remove_dir(&old_dir);
        }
        // Nothing was there to move and no state directory can be made (a
        // host without signatures, set up by hand): nothing to mark either.
        let made = FloorStore::new(&self.root).ensure();
        match made {
            Err(_) if moved == 0 => return Ok(0),
            r => r?,
        }
        atomic_write(&self.root, &self.root.join(MIGRATED), b"1\n", true).map_err(|e| {
            StateError::Io {
                path: self.root.join(MIGRATED),
                source: e,
            }
        })?;
        Ok(moved)
    }
}

/// The name an old-layout floor file gets in the state directory: its
/// user's file name (a name from before names were encoded, `Alice`, is
/// encoded now: `%41lice`); the index's keeps its dot name; other files
/// (temp files, locks) are not floors.
fn migrated_name(old: &str) -> Option<String> {
    use crate::username::{self, FileName};
    if old == ".index" {
        return Some(old.to_owned());
    }
    match username::parse_file_name(old) {
        FileName::User(u) => Some(username::file_name(&u).into_owned()),
        FileName::Hashed => Some(old.to_owned()),
        FileName::Other if !old.starts_with('.') => {
            username::validate(old, username::MAX_LEN_LIMIT)
                .ok()
                .map(|_| username::file_name(old).into_owned())
        }
        FileName::Other => None,
    }
}

/// The floors of one kind of file (or the index's), in one directory.
pub struct FloorStore {
    dir: PathBuf,
    /// Owners a floor may have: root and the account keyward runs as.
    owners: Vec<u32>,
}

/// Held while a floor is read, checked and written; released on drop
/// (closing the file releases the flock).
#[must_use]
pub struct Lock {
    _file: File,
}

impl FloorStore {
    pub fn new(dir: &Path) -> FloorStore {
        let euid = crate::os::privdrop::euid();
        let mut owners = vec![0];
        if euid != 0 {
            owners.push(euid);
        }
        FloorStore {
            dir: dir.to_owned(),
            owners,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn io(&self, path: &Path) -> impl Fn(io::Error) -> StateError + '_ {
        let path = path.to_owned();
        move |source| StateError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Creates the directory (and its lock directory), 0750, when missing.
    fn ensure(&self) -> Result<(), StateError> {
        for d in [self.dir.clone(), self.dir.join(".locks")] {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&d)
            {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(self.io(&d)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads a floor with the ownership rules of sshd's own files. A corrupt
    /// floor is an error (fail closed): forgetting it would reopen the
    /// rollback it guards against.
    pub fn read(&self, name: &str) -> Result<Option<Floor>, StateError> {
        let path = self.path(name);
        let file = match safepath::open_checked(&path, &self.owners, None) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(OpenError::Unsafe(u)) => return Err(StateError::Unsafe(u)),
            Err(OpenError::Io { path, source }) => return Err(StateError::Io { path, source }),
        };
        let mut text = String::new();
        file.take(4096)
            .read_to_string(&mut text)
            .map_err(self.io(&path))?;
        Floor::decode(&text)
            .map(Some)
            .map_err(|c| StateError::Floor { path, why: c.0 })
    }

    /// Durably replaces a floor (temp file, fsync, rename, fsync). Callers
    /// hold its lock and have checked the new floor against the one on disk.
    pub fn write(&self, name: &str, floor: &Floor, _held: &Lock) -> Result<(), StateError> {
        self.ensure()?;
        atomic_write(&self.dir, &self.path(name), floor.encode().as_bytes(), true)
            .map_err(self.io(&self.dir))
    }

    /// Takes `name`'s lock, waiting at most `wait`.
    pub fn lock(&self, name: &str, wait: Duration) -> Result<Lock, StateError> {
        self.ensure()?;
        let path = self.dir.join(".locks").join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(self.io(&path))?;
        match flock::exclusive(&file, wait) {
            Ok(()) => Ok(Lock { _file: file }),
            Err(LockError::Busy { waited }) => Err(StateError::Busy {
                path,
                waited_ms: waited.as_millis(),
            }),
            Err(LockError::Io(e)) => Err(self.io(&path)(e)),
        }
    }
}

/// Temp file in `dir`, write, (fsync), rename over `path`, (fsync `dir`):
/// readers see the old file or the new one, never a mix.
pub fn atomic_write(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    atomic_write_mode(dir, path, bytes, durable, 0o640)
}

/// [`atomic_write`] of a file others read too (`mode`, e.g. 0644).
pub fn atomic_write_mode(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    durable: bool,
    mode: u32,
) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durable {
        File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_held_lock_bounds_the_wait_of_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = FloorStore::new(dir.path());
        let held = store.lock("alice", Duration::from_millis(10)).unwrap();
        let t = Instant::now();
        let e = store
            .lock("alice", Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(matches!(e, StateError::Busy { .. }), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Another name is another lock.
        let _bob = store.lock("bob", Duration::ZERO).unwrap();
        drop(held);
        let _again = store.lock("alice", Duration::ZERO).unwrap();
    }

    #[test]
    fn floors_round_trip_under_their_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = FloorStore::new(&dir.path().join("keys"));
        let lock = store.lock("alice", Duration::ZERO).unwrap();
        store.write("alice", &Floor::of(7, "x"), &lock).unwrap();
        let text = std::fs::read_to_string(store.path("alice")).unwrap();
        assert_eq!(Floor::decode(&text).unwrap(), Floor::of(7, "x"));
    }
}
