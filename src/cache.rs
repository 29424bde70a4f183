//! The on-disk cache: one file per user, `<dir>/<user>`.
//!
//! An entry is a small text header and the raw directory body. The header
//! carries the body's length and CRC-32, so a truncated or corrupted entry
//! is detected and treated as missing, never served. (The checksum guards
//! against torn writes and bit rot; against people, the file's ownership and
//! mode do, as for sshd's own files. CRC-32 costs a fraction of SHA-256 on
//! every login.) Entries are replaced
//! atomically (temp file, fsync, rename, fsync of the directory); temp files
//! start with `.`, which no valid user name does.
//!
//! Encoding, decoding and freshness are pure; `Cache` does the I/O. One file
//! per user in one directory keeps a lookup O(1) (one open by name; ext4 and
//! xfs index directories), whatever the number of users.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use crate::entry::{Corrupt, Entry, Lookup, Status};
use crate::safepath::{self, OpenError};
use crate::state::{Floor, Store, Transition};
use std::os::unix::fs::DirBuilderExt;

/// Entries larger than this are corrupt whatever they say (max_bytes is capped
/// at 16 MiB, plus header).
const MAX_ENTRY: u64 = 17 * 1024 * 1024;
/// Initial read buffer for an entry (most are a few hundred bytes; a
/// larger one grows). Small, because every heap page first touched is a
/// page fault.
const ENTRY_READ_HINT: usize = 2 * 1024;

// Freshness rules live in `state`; re-exported for the readers of entries.
pub use crate::state::{Freshness, Ttls};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("unsafe cache: {0}")]
    Unsafe(#[from] safepath::Unsafe),
    #[error("cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("rollback floor {path} is corrupt ({why}): remove it only if you trust the directory's current files")]
    Floor { path: PathBuf, why: &'static str },
}

pub struct Cache {
    dir: PathBuf,
    /// Owners a cache file may have: root and the account keyward runs as.
    owners: Vec<u32>,
}

impl Cache {
    pub fn new(dir: &Path) -> Cache {
        let euid = crate::privdrop::euid();
        let mut owners = vec![0];
        if euid != 0 {
            owners.push(euid);
        }
        Cache {
            dir: dir.to_owned(),
            owners,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path for an already validated user name.
    pub fn path(&self, user: &str) -> PathBuf {
        self.dir.join(user)
    }

    /// Reads `user`'s entry after sshd-style ownership/mode checks of the
    /// file and every directory above it. An unsafe file is an error (fail
    /// closed): someone else may have written it.
    pub fn read(&self, user: &str) -> Result<Lookup, CacheError> {
        let path = self.path(user);
        let mut file = match safepath::open_checked(&path, &self.owners, None) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => {
                // The directory itself must still be safe and present.
                self.check_dir()?;
                return Ok(Lookup::Missing);
            }
            Err(OpenError::Unsafe(u)) => return Err(CacheError::Unsafe(u)),
            Err(OpenError::Io { path, source }) => return Err(CacheError::Io { path, source }),
        };
        // Room for a typical entry up front: one read(2) fills it and one
        // sees the end, where an empty Vec grows through five small reads.
        let mut bytes = Vec::with_capacity(ENTRY_READ_HINT);
        (&mut file)
            .take(MAX_ENTRY + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| CacheError::Io {
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_ENTRY {
            return Ok(Lookup::Corrupt(Corrupt("entry too large")));
        }
        Ok(match Entry::decode(&bytes) {
            Ok(e) => Lookup::Found(e),
            Err(c) => Lookup::Corrupt(c),
        })
    }

    fn check_dir(&self) -> Result<(), CacheError> {
        safepath::check_dirs(&self.dir, &self.owners, None).map_err(|e| match e {
            OpenError::Unsafe(u) => CacheError::Unsafe(u),
            OpenError::Io { path, source } => CacheError::Io { path, source },
        })
    }

    /// Atomically replaces `user`'s entry: readers see the old entry or the
    /// new one, never a mix, and a crash leaves at most a `.tmp` file.
    pub fn write(&self, user: &str, entry: &Entry) -> Result<(), CacheError> {
        self.replace(user, entry, true)
    }

    /// Rewrites an entry whose body did not change (after a 304) to record
    /// its new age. Still atomic (rename), but without the fsyncs: after a
    /// crash the worst case is the older age (one more conditional request)
    /// or a torn file, which the checksum rejects.
    pub fn refresh(&self, user: &str, entry: &Entry) -> Result<(), CacheError> {
        self.replace(user, entry, false)
    }

    fn replace(&self, user: &str, entry: &Entry, durable: bool) -> Result<(), CacheError> {
        atomic_write(&self.dir, &self.path(user), &entry.encode(), durable).map_err(|source| {
            CacheError::Io {
                path: self.dir.clone(),
                source,
            }
        })
    }

    /// The rollback floor lives in `.floor/<user>`: apart from the entry so
    /// that removing an entry (sync after a 404, an admin's `rm`) never
    /// removes it. Names starting with `.` are never user names.
    fn floor_path(&self, user: &str) -> PathBuf {
        self.dir.join(".floor").join(user)
    }

    /// Reads `user`'s floor with the same ownership rules as an entry. A
    /// corrupt floor is an error (fail closed): forgetting it would reopen
    /// the rollback it guards against.
    pub fn read_floor(&self, user: &str) -> Result<Option<Floor>, CacheError> {
        let path = self.floor_path(user);
        let file = match safepath::open_checked(&path, &self.owners, None) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(OpenError::Unsafe(u)) => return Err(CacheError::Unsafe(u)),
            Err(OpenError::Io { path, source }) => return Err(CacheError::Io { path, source }),
        };
        let mut text = String::new();
        file.take(4096)
            .read_to_string(&mut text)
            .map_err(|source| CacheError::Io {
                path: path.clone(),
                source,
            })?;
        Floor::decode(&text)
            .map(Some)
            .map_err(|c| CacheError::Floor { path, why: c.0 })
    }

    /// Durably replaces `user`'s floor (temp file, fsync, rename, fsync).
    pub fn write_floor(&self, user: &str, floor: &Floor) -> Result<(), CacheError> {
        let dir = self.dir.join(".floor");
        let io = |source| CacheError::Io {
            path: dir.clone(),
            source,
        };
        match std::fs::DirBuilder::new().mode(0o750).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io(e)),
            _ => {}
        }
        atomic_write(
            &dir,
            &self.floor_path(user),
            floor.encode().as_bytes(),
            true,
        )
        .map_err(io)
    }

    /// Carries out a `state` transition: the floor first (durably), then
    /// the entry. If the floor cannot be stored, the entry is left alone, so
    /// an entry that still carries a serial is never removed before its floor
    /// is safe.
    pub fn apply(&self, user: &str, t: &Transition) -> Result<(), CacheError> {
        if let Some(floor) = &t.floor {
            self.write_floor(user, floor)?;
        }
        match &t.store {
            Store::Nothing => Ok(()),
            Store::Write(e) => self.write(user, e),
            Store::Refresh(e) => self.refresh(user, e),
            Store::Remove => self.remove(user),
        }
    }

    /// Removes `user`'s entry (sync drops users the directory no longer knows).
    pub fn remove(&self, user: &str) -> Result<(), CacheError> {
        match std::fs::remove_file(self.path(user)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CacheError::Io {
                path: self.path(user),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// User names with an entry (skips temp files and anything else odd).
    pub fn users(&self) -> Result<Vec<String>, CacheError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| CacheError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut users: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| crate::username::validate(n, 256).is_ok())
            .collect();
        users.sort();
        Ok(users)
    }
}

/// Temp file in `dir`, write, (fsync), rename over `path`, (fsync `dir`):
/// readers see the old file or the new one, never a mix.
fn atomic_write(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
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

    fn entry() -> Entry {
        Entry {
            fetched_at: 1_700_000_000,
            status: Status::Keys,
            etag: Some("\"6543-12\"".into()),
            url: "http://127.0.0.1:8080/users/alice.keys".into(),
            serial: None,
            body: "ssh-ed25519 AAAA x\n\n# comment\n".into(),
        }
    }

    #[test]
    fn round_trip() {
        let e = entry();
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let mut e2 = entry();
        e2.status = Status::NoKeys;
        e2.etag = None;
        e2.serial = Some(42);
        e2.body = String::new();
        assert_eq!(Entry::decode(&e2.encode()).unwrap(), e2);
    }

    #[test]
    fn truncation_and_corruption_detected() {
        let bytes = entry().encode();
        for cut in [0, 5, 20, bytes.len() - 10, bytes.len() - 1] {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        assert_eq!(Entry::decode(&flipped), Err(Corrupt("checksum mismatch")));
        assert!(Entry::decode(b"hello\n\nworld").is_err());
    }

    #[test]
    fn hostile_etag_not_stored() {
        let mut e = entry();
        e.etag = Some("x\nstatus 404".into());
        let d = Entry::decode(&e.encode()).unwrap();
        assert_eq!(d.etag, None);
        assert_eq!(d.status, Status::Keys);
    }

    #[test]
    fn write_read_replace() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            dir: dir.path().to_owned(),
            owners: vec![unsafe { libc::geteuid() }, 0],
        };
        cache.write("alice", &entry()).unwrap();
        let mut e2 = entry();
        e2.body = "new\n".into();
        cache.write("alice", &e2).unwrap();
        // Reading checks parents up to /, which a tempdir under /tmp fails
        // (world-writable): that is the rule working, so only decode here.
        let bytes = std::fs::read(cache.path("alice")).unwrap();
        assert_eq!(Entry::decode(&bytes).unwrap(), e2);
        assert_eq!(cache.users().unwrap(), vec!["alice"]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
        cache.remove("alice").unwrap();
        cache.remove("alice").unwrap();
        assert!(cache.users().unwrap().is_empty());
    }
}
