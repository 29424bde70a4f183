//! The output folder of `keyward publish`. Others may be able to write it (a
//! deploy account, a group-writable web root) while publish runs as root,
//! so nothing here follows a link or waits on a FIFO planted in it:
//!
//! - a read opens with `O_NOFOLLOW | O_NONBLOCK`, takes only a regular file
//!   and at most a given size; anything else reads as "no previous file";
//! - a write goes to a new file with an unpredictable name, created
//!   exclusively (`O_CREAT | O_EXCL`: a planted link or file makes it pick
//!   another name) and written through its descriptor; once every file of
//!   a step is written and synced, each is renamed over its published name
//!   (a rename replaces a link, never writes through it) and the folder is
//!   synced;
//! - a removal unlinks the name (a link, never its target) and leaves a
//!   directory alone.
//!
//! Every name is one component inside the folder: nothing outside it is
//! read, written or removed.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// File names, sorted: looked up by binary search (cheaper than hashing
/// a hundred thousand names).
pub struct Names(Vec<String>);

impl Names {
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// A file written under a temporary name, waiting for its rename.
pub struct Staged {
    tmp: tempfile::TempPath,
    path: PathBuf,
}

/// How long a publish waits for another one to let go of OUT.
const LOCK_WAIT: Duration = Duration::from_secs(2);

pub struct OutDir<'a> {
    path: &'a Path,
}

impl<'a> OutDir<'a> {
    pub fn new(path: &'a Path) -> OutDir<'a> {
        OutDir { path }
    }

    /// Holds the folder against a second `keyward publish` into it (until
    /// the returned handle is dropped): two runs would interleave their
    /// renames and serials. An advisory lock on the folder itself, so
    /// nothing is added to the tree that is uploaded.
    pub fn lock(&self) -> Result<File, String> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        // A short wait, not one try: a process that forks while another
        // run holds the lock shares the descriptor until the child's exec
        // closes it, so a run that just ended can look busy for an instant.
        match crate::os::flock::exclusive(&dir, LOCK_WAIT) {
            Ok(()) => Ok(dir),
            Err(crate::os::flock::LockError::Busy { .. }) => Err(format!(
                "{}: another keyward publish is writing this folder",
                self.path.display()
            )),
            Err(crate::os::flock::LockError::Io(e)) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// `folder/name`, or an error when `name` is not one plain component.
    fn join(&self, name: &OsStr) -> io::Result<PathBuf> {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(n)), None) if n == name => Ok(self.path.join(name)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a file name inside {}", self.path.display()),
            )),
        }
    }

    /// The text of the regular file `name`, if there is one of at most
    /// `cap` bytes in UTF-8; None for anything else (absent, a link, a FIFO,
    /// a directory, too large).
    pub fn read(&self, name: &str, cap: u64) -> io::Result<Option<String>> {
        let path = self.join(name.as_ref())?;
        let file = crate::os::bulk::open_noatime(&path, libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // O_NOFOLLOW on a link.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
            Err(e) => return Err(e),
        };
        let md = file.metadata()?;
        if !md.is_file() || md.len() > cap {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(md.len() as usize);
        file.take(cap + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > cap {
            return Ok(None);
        }
        Ok(String::from_utf8(bytes).ok())
    }

    /// The size of the regular file `name` (a link is not one).
    pub fn file_len(&self, name: &str) -> Option<u64> {
        let md = std::fs::symlink_metadata(self.join(name.as_ref()).ok()?).ok()?;
        md.is_file().then_some(md.len())
    }

    pub fn is_file(&self, name: &str) -> bool {
        self.file_len(name).is_some()
    }

    /// Writes `bytes` to a new temporary file in the folder, to be renamed
    /// over `name` by [`OutDir::commit`] (dropped uncommitted, it is removed).
    pub fn stage(&self, name: &str, bytes: &[u8]) -> io::Result<Staged> {
        let path = self.join(name.as_ref())?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".keyward-")
            .suffix(".tmp")
            // What a plain create gives (less the umask): served files.
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(self.path)?;
        tmp.write_all(bytes)?;
        // Closed, so that a large tree does not hold a descriptor per file.
        Ok(Staged {
            tmp: tmp.into_temp_path(),
            path,
        })
    }

    /// Makes every staged file durable (one `syncfs` for the lot rather
    /// than one fsync each), renames them into place in order, removes
    /// `remove` (as [`OutDir::remove`]), then syncs the folder.
    pub fn commit(&self, staged: Vec<Staged>, remove: &[&str]) -> io::Result<()> {
        if !staged.is_empty() {
            let dir = File::open(self.path)?;
            // SAFETY: a valid descriptor, owned by `dir` for the call.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for s in staged {
            s.tmp.persist(&s.path).map_err(|e| e.error)?;
        }
        for name in remove {
            self.remove(name.as_ref())?;
        }
        self.sync()
    }

    /// Removes `name` if it is there and is not a directory; a link is
    /// removed itself, its target never.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let path = self.join(name)?;
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => Ok(()),
            Ok(_) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The names in the folder.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(self.path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    /// The names of the regular files in the folder (links, folders and
    /// names that are not UTF-8 left out): one listing instead of a stat
    /// per name.
    pub fn regular_files(&self) -> io::Result<Names> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(self.path)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Ok(name) = e.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        Ok(Names(names))
    }

    /// Makes the renames and removals in the folder durable.
    pub fn sync(&self) -> io::Result<()> {
        File::open(self.path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_publish_into_the_same_folder_is_refused_while_one_runs() {
        let out = tempfile::tempdir().unwrap();
        let first = OutDir::new(out.path()).lock().unwrap();
        let e = OutDir::new(out.path()).lock().unwrap_err();
        assert!(e.contains("another keyward publish"), "{e}");
        drop(first);
        OutDir::new(out.path()).lock().unwrap();
    }
    use std::os::unix::fs::symlink;

    #[test]
    fn links_fifos_and_directories_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, out.join("link")).unwrap();
        let fifo = std::ffi::CString::new(out.join("fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(out.join("dir")).unwrap();
        std::fs::write(out.join("big"), "x".repeat(11)).unwrap();
        std::fs::write(out.join("ok"), "text").unwrap();
        let d = OutDir::new(&out);

        for name in ["link", "fifo", "dir", "big", "absent"] {
            assert_eq!(d.read(name, 10).unwrap(), None, "{name}");
            assert_eq!(d.is_file(name), name == "big", "{name}");
        }
        assert_eq!(d.read("ok", 10).unwrap().as_deref(), Some("text"));
        assert_eq!(d.file_len("ok"), Some(4));

        // Replacing the link replaces the link; a staged file dropped
        // uncommitted leaves nothing.
        let staged = vec![
            d.stage("link", b"new").unwrap(),
            d.stage("fifo", b"also").unwrap(),
        ];
        drop(d.stage("ok", b"never").unwrap());
        symlink(&victim, out.join("link3")).unwrap();
        d.commit(staged, &["link3"]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(d.read("link", 10).unwrap().as_deref(), Some("new"));
        assert_eq!(d.read("fifo", 10).unwrap().as_deref(), Some("also"));
        assert_eq!(d.read("ok", 10).unwrap().as_deref(), Some("text"));
        assert!(std::fs::symlink_metadata(out.join("link3")).is_err());

        symlink(&victim, out.join("link2")).unwrap();
        d.remove("link2".as_ref()).unwrap();
        d.remove("dir".as_ref()).unwrap();
        d.remove("absent".as_ref()).unwrap();
        assert!(victim.is_file() && out.join("dir").is_dir());
        assert!(std::fs::symlink_metadata(out.join("link2")).is_err());

        // Only names inside the folder.
        for bad in ["../victim", "/etc/passwd", "a/b", "..", ".", ""] {
            assert!(d.read(bad, 10).is_err(), "{bad}");
            assert!(d.stage(bad, b"x").is_err(), "{bad}");
            assert!(d.remove(bad.as_ref()).is_err(), "{bad}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // No temporary file is left behind.
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["big", "dir", "fifo", "link", "ok"]);
    }
}
