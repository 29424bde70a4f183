//! Security state on disk: rollback floors, and the locks every update of
//! them takes. The rules are `state`'s; this module only reads, writes and
//! locks.
//!
//! A floor lives in `<dir>/<name>` (`name` is the user's file name, derived
//! once per lookup, or a dot name of keyward's own such as `.index`). Every
//! update of a floor, and of the entry that goes with it, holds
//! `<dir>/.locks/<name>` (flock) from the read that decides it to the write:
//! two processes never write from a stale read. The wait for the lock is
//! bounded (the caller's budget): a stuck holder cannot hang a login.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

    /// Takes `name`'s lock, waiting at most `wait`. Polls with a short
    /// back-off: flock has no timed wait, and a blocking flock under
    /// `alarm` would need a signal handler in a process that prints keys.
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
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: file });
            }
            let e = io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR)
            ) {
                return Err(self.io(&path)(e));
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Err(StateError::Busy {
                    path,
                    waited_ms: waited.as_millis(),
                });
            }
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Temp file in `dir`, write, (fsync), rename over `path`, (fsync `dir`):
/// readers see the old file or the new one, never a mix.
pub fn atomic_write(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
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
