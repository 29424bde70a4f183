//! The on-disk cache: one file per user and kind of directory file.
//!
//! Layout under `[cache] dir`:
//!
//! ```text
//! <dir>/<name>                     keys entries
//! <dir>/.principals/<name>         principals entries
//! ```
//!
//! The rollback floors are security state, not cache: they live in
//! `[state] dir` (`statestore`), so removing the cache never resets them.
//!
//! `<name>` is `username::file_name(user)`: injective, never starting with
//! `.`, nothing a filesystem could fold. Names starting with `.` are
//! keyward's own (temp files, floors, the principals directory).
//!
//! An entry is a small text header and the raw directory body. The header
//! carries the body's length and CRC-32, so a truncated or corrupted entry
//! is detected and treated as missing, never served. (The checksum guards
//! against torn writes and bit rot; against people, the file's ownership and
//! mode do, as for sshd's own files. CRC-32 costs a fraction of SHA-256 on
//! every login.) It also names the user, so an entry is never served for
//! another user even under a hashed file name. Entries are replaced
//! atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Encoding, decoding and freshness are pure; `Cache` does the I/O. One file
//! per user in one directory keeps a lookup O(1) (one open by name; ext4 and
//! xfs index directories), whatever the number of users.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use crate::entry::{Corrupt, Entry, Kind, Lookup, Status};
use crate::os::safepath::{self, OpenError};
use crate::state::{self, Current, Floor, Mode, Purpose, Store, Transition};
use crate::statestore::{atomic_write, FloorStore, Lock, StateDir, StateError};
use crate::username::FileName;
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
    #[error(transparent)]
    State(#[from] StateError),
}

/// How a transition is carried out: when, under which rules, and how long
/// to wait for the state lock.
pub struct Settle<'a> {
    pub now: u64,
    pub ttls: &'a Ttls,
    pub mode: Mode<'a>,
    pub purpose: Purpose,
    pub lock_wait: std::time::Duration,
}

pub struct Cache {
    /// Where this kind's entries live (`[cache] dir`, or its `.principals`).
    dir: PathBuf,
    /// `[cache] dir` itself.
    base: PathBuf,
    kind: Kind,
    /// Owners a cache file may have: root and the account keyward runs as.
    owners: Vec<u32>,
    floors: FloorStore,
    state: StateDir,
}

/// The subdirectory of principals entries; a dot name, so it is never a
/// user's entry.
const PRINCIPALS_DIR: &str = ".principals";

impl Cache {
    /// The keys cache in `dir`, its floors in `state`.
    pub fn new(dir: &Path, state: &Path) -> Cache {
        Cache::for_kind(dir, state, Kind::Keys)
    }

    /// The cache of `kind` entries under `[cache] dir` = `dir`, its floors
    /// under `[state] dir` = `state`.
    pub fn for_kind(dir: &Path, state: &Path, kind: Kind) -> Cache {
        let euid = crate::os::privdrop::euid();
        let mut owners = vec![0];
        if euid != 0 {
            owners.push(euid);
        }
        let dir_of_kind = match kind {
            Kind::Keys => dir.to_owned(),
            Kind::Principals => dir.join(PRINCIPALS_DIR),
        };
        let state = StateDir::new(state);
        Cache {
            floors: state.floors(kind),
            state,
            dir: dir_of_kind,
            base: dir.to_owned(),
            kind,
            owners,
        }
    }

    /// Which directory file this cache holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path for an already validated user name.
    pub fn path(&self, user: &str) -> PathBuf {
        self.dir.join(&*crate::username::file_name(user))
    }

    /// Reads `user`'s entry after sshd-style ownership/mode checks of the
    /// file and every directory above it. An unsafe file is an error (fail
    /// closed): someone else may have written it.
    pub fn read(&self, user: &str) -> Result<Lookup, CacheError> {
        self.read_named(user, &crate::username::file_name(user))
    }

    /// [`Cache::read`] with the user's file name already derived.
    fn read_named(&self, user: &str, name: &str) -> Result<Lookup, CacheError> {
        let path = self.dir.join(name);
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
        Ok(match Entry::decode_for(&bytes) {
            Ok((e, owner)) if owner_matches(owner.as_deref(), user, &path) => Lookup::Found(e),
            Ok(_) => Lookup::Corrupt(Corrupt("entry names another user")),
            Err(c) => Lookup::Corrupt(c),
        })
    }

    fn check_dir(&self) -> Result<(), CacheError> {
        let err = |e| match e {
            OpenError::Unsafe(u) => CacheError::Unsafe(u),
            OpenError::Io { path, source } => CacheError::Io { path, source },
        };
        match safepath::check_dirs(&self.dir, &self.owners, None) {
            // No principals entry was ever written: `[cache] dir` must
            // still be safe.
            Err(e) if e.is_not_found() && self.dir != self.base => {
                safepath::check_dirs(&self.base, &self.owners, None).map_err(err)
            }
            r => r.map_err(err),
        }
    }

    /// Creates this kind's subdirectory (0750) when it is missing.
    fn ensure_dir(&self) -> io::Result<()> {
        if self.dir == self.base {
            return Ok(());
        }
        match std::fs::DirBuilder::new().mode(0o750).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    /// Atomically replaces `user`'s entry: readers see the old entry or the
    /// new one, never a mix, and a crash leaves at most a `.tmp` file.
    pub fn write(&self, user: &str, entry: &Entry) -> Result<(), CacheError> {
        self.replace(user, &crate::username::file_name(user), entry, true)
    }

    /// Rewrites an entry whose body did not change (after a 304) to record
    /// its new age. Still atomic (rename), but without the fsyncs: after a
    /// crash the worst case is the older age (one more conditional request)
    /// or a torn file, which the checksum rejects.
    pub fn refresh(&self, user: &str, entry: &Entry) -> Result<(), CacheError> {
        self.replace(user, &crate::username::file_name(user), entry, false)
    }

    fn replace(
        &self,
        user: &str,
        name: &str,
        entry: &Entry,
        durable: bool,
    ) -> Result<(), CacheError> {
        self.ensure_dir()
            .and_then(|_| {
                atomic_write(
                    &self.dir,
                    &self.dir.join(name),
                    &entry.encode_for(Some(user)),
                    durable,
                )
            })
            .map_err(|source| CacheError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// The floors of this kind, in the state directory.
    pub fn floors(&self) -> &FloorStore {
        &self.floors
    }

    /// Moves the floors of the old layout (under the cache) into the state
    /// directory, once (sync does it; see `StateDir::migrate`).
    pub fn migrate_floors(&self) -> Result<usize, CacheError> {
        Ok(self.state.migrate(&self.base)?)
    }

    /// Reads `user`'s floor (`name`: its file name). Until the floors of the
    /// old layout have been moved (the first sync after an upgrade), a floor
    /// missing here is still read where it was; after that, never.
    pub fn read_floor(&self, user: &str, name: &str) -> Result<Option<Floor>, CacheError> {
        if let Some(f) = self.floors.read(name)? {
            return Ok(Some(f));
        }
        if self.state.migrated() {
            return Ok(None);
        }
        let old = FloorStore::new(&self.dir.join(".floor"));
        if let Some(f) = old.read(name)? {
            return Ok(Some(f));
        }
        match crate::username::legacy_file_name(user).filter(|_| self.dir == self.base) {
            Some(n) => Ok(old.read(n)?),
            None => Ok(None),
        }
    }

    /// Everything known about `user` (`name`: its file name, derived once
    /// per lookup) before asking the directory: the entry, and in signed
    /// mode the floor.
    pub fn current(&self, user: &str, name: &str, signed: bool) -> Result<Current, CacheError> {
        let lookup = self.read_named(user, name)?;
        // The floor matters only when signatures are required; unsigned
        // lookups skip the extra read.
        let floor = if signed {
            self.read_floor(user, name)?
        } else {
            None
        };
        Ok(Current::new(lookup, floor))
    }

    /// Carries out a `state` transition decided from `cur`: under `user`'s
    /// state lock (at most `s.lock_wait`), re-reads the entry and floor,
    /// lets `state::settle` re-decide against them, then writes the floor
    /// (durably) and the entry. Returns the transition carried out (its
    /// answer is the one to give) and whether storing it worked. A fresh
    /// cache hit takes no lock.
    pub fn commit(
        &self,
        user: &str,
        name: &str,
        cur: &Current,
        t: Transition,
        s: &Settle,
    ) -> (Transition, Result<(), CacheError>) {
        if !t.needs_settling() {
            return (t, Ok(()));
        }
        // Without signatures there is no floor to guard: last writer wins.
        if let Mode::Unsigned = s.mode {
            let stored = self.store(user, name, &t, None);
            return (t, stored);
        }
        let lock = match self.floors.lock(name, s.lock_wait) {
            Ok(l) => l,
            Err(e) => return (state::unsettled(e.to_string()), Err(e.into())),
        };
        let disk = match self.current(user, name, true) {
            Ok(d) => d,
            Err(e) => return (state::unsettled(e.to_string()), Err(e)),
        };
        let t = state::settle(cur, t, &disk, s.now, s.ttls, s.mode, s.purpose);
        let stored = self.store(user, name, &t, Some(&lock));
        (t, stored)
    }

    /// The floor first (durably), then the entry. If the floor cannot be
    /// stored, the entry is left alone, so an entry that still carries a
    /// serial is never removed before its floor is safe.
    fn store(
        &self,
        user: &str,
        name: &str,
        t: &Transition,
        lock: Option<&Lock>,
    ) -> Result<(), CacheError> {
        if let (Some(floor), Some(lock)) = (&t.floor, lock) {
            self.floors.write(name, floor, lock)?;
        }
        match &t.store {
            Store::Nothing => Ok(()),
            Store::Write(e) => self.replace(user, name, e, true),
            Store::Refresh(e) => self.replace(user, name, e, false),
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
    /// A hashed file name gives its user from the entry's header.
    pub fn users(&self) -> Result<Vec<String>, CacheError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.dir != self.base => {
                return Ok(Vec::new())
            }
            rd => rd.map_err(|source| CacheError::Io {
                path: self.dir.clone(),
                source,
            })?,
        };
        let mut users: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| match crate::username::parse_file_name(&n) {
                FileName::User(u) => Some(u),
                FileName::Hashed => self.header_user(&n),
                FileName::Other => None,
            })
            .collect();
        users.sort();
        Ok(users)
    }

    /// The user a hashed entry's header names, if it is the one that name
    /// belongs to.
    fn header_user(&self, name: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let path = self.dir.join(name);
        safepath::open_checked(&path, &self.owners, None)
            .ok()?
            .take(MAX_ENTRY)
            .read_to_end(&mut bytes)
            .ok()?;
        let user = Entry::decode_for(&bytes).ok()?.1?;
        (crate::username::file_name(&user) == name).then_some(user)
    }
}

/// Whether an entry whose header names `owner` may be served for `user`
/// from `path`. Entries from before the header named its user are trusted
/// only under an unhashed name (which alone identifies the user).
fn owner_matches(owner: Option<&str>, user: &str, path: &Path) -> bool {
    match owner {
        Some(o) => o == user,
        None => !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("%sha256-")),
    }
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
            signer: None,
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
            base: dir.path().to_owned(),
            kind: Kind::Keys,
            owners: vec![unsafe { libc::geteuid() }, 0],
            floors: FloorStore::new(&dir.path().join(".floor")),
            state: StateDir::new(&dir.path().join(".state")),
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

    #[test]
    fn entries_name_their_user() {
        let e = entry();
        let (d, user) = Entry::decode_for(&e.encode_for(Some("Alice@corp"))).unwrap();
        assert_eq!((d, user.as_deref()), (e.clone(), Some("Alice@corp")));
        assert_eq!(Entry::decode_for(&e.encode()).unwrap().1, None);
        let plain = Path::new("/c/alice");
        let hashed = Path::new("/c/%sha256-00");
        assert!(owner_matches(Some("alice"), "alice", plain));
        assert!(!owner_matches(Some("bob"), "alice", plain));
        assert!(owner_matches(None, "alice", plain), "entries from before");
        assert!(!owner_matches(None, "alice", hashed));
        assert!(owner_matches(Some("alice"), "alice", hashed));
    }

    #[test]
    fn kinds_and_odd_names_have_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let keys = Cache::for_kind(dir.path(), state.path(), Kind::Keys);
        let princ = Cache::for_kind(dir.path(), state.path(), Kind::Principals);
        let long = "L".repeat(100);
        let users = [
            "alice",
            "Alice",
            "alice@corp.example.com",
            "host$",
            ".x",
            &long,
        ];
        for u in users {
            let mut e = entry();
            e.body = format!("keys of {u}\n");
            keys.write(u, &e).unwrap();
            e.body = format!("principals of {u}\n");
            princ.write(u, &e).unwrap();
            let name = crate::username::file_name(u);
            let lock = princ.floors().lock(&name, Default::default()).unwrap();
            princ
                .floors()
                .write(&name, &Floor::of(1, u), &lock)
                .unwrap();
        }
        // (The hashed name's user comes from its header, which is read only
        // under safe parents: not under /tmp.)
        let mut want: Vec<String> = users[..5].iter().map(|u| u.to_string()).collect();
        want.sort();
        assert_eq!(keys.users().unwrap(), want);
        assert_eq!(princ.users().unwrap(), want);
        for u in users {
            let (k, p) = (keys.path(u), princ.path(u));
            assert_ne!(k, p);
            let k = Entry::decode(&std::fs::read(k).unwrap()).unwrap();
            assert_eq!(k.body, format!("keys of {u}\n"));
            let p = Entry::decode(&std::fs::read(p).unwrap()).unwrap();
            assert_eq!(p.body, format!("principals of {u}\n"));
        }
        assert!(state.path().join("principals/%41lice").is_file());
        assert!(
            !state.path().join("keys/%41lice").exists(),
            "keys floors apart"
        );
        assert!(
            !dir.path().join(".principals/.floor").exists(),
            "not in the cache"
        );
        // A principals cache that was never written has no users.
        let empty = tempfile::tempdir().unwrap();
        let none = Cache::for_kind(empty.path(), state.path(), Kind::Principals);
        assert!(none.users().unwrap().is_empty());
    }
}
