//! sshd's safe_path() rules for files keyward trusts (misc.c): a regular
//! file, owned by root or the expected user, not group/world-writable, and
//! every parent directory up to `/` (or up to the home directory) the same.
//!
//! The decision (`check`) is pure; `open_checked` probes the filesystem.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What made a path unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotRegular,
    NotDir,
    Symlink,
    Owner { uid: u32 },
    Writable { mode: u32 },
}

/// An unsafe path, worded for the admin who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Unsafe {
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.problem {
            Problem::NotRegular => write!(f, "{p} is not a regular file"),
            Problem::NotDir => write!(f, "{p} is not a directory"),
            Problem::Symlink => write!(f, "{p} is a symbolic link"),
            Problem::Owner { uid } => write!(f, "bad ownership of {p} (owner uid {uid})"),
            Problem::Writable { mode } => {
                let who = if mode & 0o002 != 0 { "world" } else { "group" };
                write!(
                    f,
                    "bad modes for {p} (mode {:04o}, {who}-writable; fix: chmod go-w {p})",
                    mode & 0o7777
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Unsafe(#[from] Unsafe),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl OpenError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The rule for one path component: every problem it has (none: safe).
/// A wrong file type is the only problem reported for it; otherwise the
/// owner and the modes are both named.
pub fn problems(kind: Kind, uid: u32, mode: u32, allowed: &[u32]) -> Vec<Problem> {
    let fmt = mode & libc::S_IFMT;
    match kind {
        Kind::File if fmt == libc::S_IFLNK => return vec![Problem::Symlink],
        Kind::File if fmt != libc::S_IFREG => return vec![Problem::NotRegular],
        Kind::Dir if fmt != libc::S_IFDIR => return vec![Problem::NotDir],
        _ => {}
    }
    let mut out = Vec::new();
    if !allowed.contains(&uid) {
        out.push(Problem::Owner { uid });
    }
    if mode & 0o022 != 0 {
        out.push(Problem::Writable { mode });
    }
    out
}

/// The rule for one path component, as an error naming the first problem.
pub fn check(path: &Path, kind: Kind, uid: u32, mode: u32, allowed: &[u32]) -> Result<(), Unsafe> {
    match problems(kind, uid, mode, allowed).into_iter().next() {
        Some(problem) => Err(Unsafe {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// One path component as `lstat` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// `st_mode`, file type bits included.
    pub mode: u32,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// `path` (symlinks resolved, as sshd's realpath) and every parent up to
/// `stop_at` (inclusive) or `/`, each as `lstat` sees it: the target first.
pub fn stat_chain(path: &Path, stop_at: Option<&Path>) -> Result<Vec<Node>, OpenError> {
    if stop_at.is_none() {
        if let Some(nodes) = literal_chain(path) {
            return Ok(nodes);
        }
    }
    resolved_chain(path, stop_at)
}

/// The chain of an absolute path without `..` in which no component is a
/// symlink: such a path is its own realpath, so the lstat of each component
/// (needed anyway) replaces realpath's readlink of each (a login checks two
/// such chains). None (resolve it) on a symlink or any error.
fn literal_chain(path: &Path) -> Option<Vec<Node>> {
    use std::path::Component;
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let path: PathBuf = path.components().collect();
    let mut out = Vec::new();
    let mut cur = Some(path.as_path());
    while let Some(p) = cur {
        let m = std::fs::symlink_metadata(p).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        out.push(Node {
            path: p.to_owned(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
        });
        cur = p.parent();
    }
    Some(out)
}

fn resolved_chain(path: &Path, stop_at: Option<&Path>) -> Result<Vec<Node>, OpenError> {
    let io_err = |p: &Path| {
        let path = p.to_owned();
        move |source| OpenError::Io { path, source }
    };
    let target = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let real = std::fs::canonicalize(target).map_err(io_err(path))?;
    let stop = stop_at.and_then(|s| std::fs::canonicalize(s).ok());
    let mut out = Vec::new();
    let mut cur = Some(real.as_path());
    while let Some(p) = cur {
        let m = std::fs::symlink_metadata(p).map_err(io_err(p))?;
        out.push(Node {
            path: p.to_owned(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
        });
        if stop.as_deref() == Some(p) {
            break;
        }
        cur = p.parent();
    }
    Ok(out)
}

/// Opens `path` for reading after checking it and its parents.
///
/// The file is opened with `O_NOFOLLOW | O_NONBLOCK` (a symlink is refused, a
/// FIFO cannot block us) and checked on the open descriptor, so it cannot be
/// swapped between check and read. Parents are checked from the file's
/// directory up to `stop_at` (inclusive) or `/`.
pub fn open_checked(
    path: &Path,
    allowed: &[u32],
    stop_at: Option<&Path>,
) -> Result<File, OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                OpenError::Unsafe(Unsafe {
                    path: path.to_owned(),
                    problem: Problem::Symlink,
                })
            } else {
                io_err(e)
            }
        })?;
    let meta = file.metadata().map_err(io_err)?;
    check(path, Kind::File, meta.uid(), meta.mode(), allowed)?;
    if let Some(parent) = path.parent() {
        check_dirs(parent, allowed, stop_at)?;
    }
    Ok(file)
}

/// Checks `dir` and each of its parents up to `stop_at` or `/`.
pub fn check_dirs(dir: &Path, allowed: &[u32], stop_at: Option<&Path>) -> Result<(), OpenError> {
    for n in stat_chain(dir, stop_at)? {
        check(&n.path, Kind::Dir, n.uid, n.mode, allowed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: u32 = libc::S_IFREG;
    const DIR: u32 = libc::S_IFDIR;

    #[test]
    fn rules() {
        let p = Path::new("/x");
        assert!(check(p, Kind::File, 0, REG | 0o644, &[0]).is_ok());
        assert!(check(p, Kind::File, 1000, REG | 0o600, &[0, 1000]).is_ok());
        assert_eq!(
            check(p, Kind::File, 1000, REG | 0o644, &[0])
                .unwrap_err()
                .problem,
            Problem::Owner { uid: 1000 }
        );
        assert_eq!(
            check(p, Kind::File, 0, REG | 0o664, &[0])
                .unwrap_err()
                .problem,
            Problem::Writable { mode: REG | 0o664 }
        );
        assert!(check(p, Kind::Dir, 0, DIR | 0o777, &[0]).is_err());
        // the sticky bit does not make /tmp safe, as in sshd
        assert!(check(p, Kind::Dir, 0, DIR | 0o1777, &[0]).is_err());
        assert_eq!(
            check(p, Kind::File, 0, libc::S_IFIFO | 0o600, &[0])
                .unwrap_err()
                .problem,
            Problem::NotRegular
        );
        assert_eq!(
            check(p, Kind::Dir, 0, REG | 0o755, &[0])
                .unwrap_err()
                .problem,
            Problem::NotDir
        );
    }

    #[test]
    fn each_kind_gets_its_own_problem() {
        let p = Path::new("/x");
        assert!(check(p, Kind::Dir, 0, DIR | 0o755, &[0]).is_ok());
        assert!(check(p, Kind::Dir, 7, DIR | 0o700, &[0, 7]).is_ok());
        assert_eq!(
            check(p, Kind::File, 0, libc::S_IFLNK | 0o777, &[0])
                .unwrap_err()
                .problem,
            Problem::Symlink
        );
        assert_eq!(
            check(p, Kind::Dir, 0, libc::S_IFLNK | 0o777, &[0])
                .unwrap_err()
                .problem,
            Problem::NotDir
        );
        assert_eq!(
            check(p, Kind::Dir, 5, DIR | 0o755, &[0])
                .unwrap_err()
                .problem,
            Problem::Owner { uid: 5 }
        );
    }

    /// A private tree under a fresh 0700 temporary directory owned by us:
    /// the checks stop at that directory, so they do not depend on /tmp.
    struct Tree {
        root: tempfile::TempDir,
        me: u32,
    }

    impl Tree {
        fn new() -> Tree {
            Tree {
                root: tempfile::tempdir().unwrap(),
                me: unsafe { libc::geteuid() },
            }
        }

        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.root.path().join(rel)
        }

        fn open(&self, rel: &str, stop: &str) -> Result<File, OpenError> {
            open_checked(&self.path(rel), &[self.me], Some(&self.path(stop)))
        }
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn open_checked_refuses_symlinks_fifos_and_unsafe_parents() {
        let t = Tree::new();
        std::fs::create_dir_all(t.path("a/b")).unwrap();
        std::fs::write(t.path("a/b/keys"), "k").unwrap();
        chmod(&t.path("a/b/keys"), 0o600);
        assert!(t.open("a/b/keys", "").is_ok());

        // A symlink to a good file is refused as a symlink (O_NOFOLLOW).
        std::os::unix::fs::symlink(t.path("a/b/keys"), t.path("a/b/link")).unwrap();
        let e = t.open("a/b/link", "").unwrap_err();
        assert!(
            matches!(&e, OpenError::Unsafe(u) if u.problem == Problem::Symlink),
            "{e}"
        );
        assert!(!e.is_not_found());

        // A FIFO nobody writes to: refused at once (O_NONBLOCK), not waited on.
        let fifo = std::ffi::CString::new(t.path("a/b/fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = t.open("a/b/fifo", "").unwrap_err();
        assert!(
            matches!(&e, OpenError::Unsafe(u) if u.problem == Problem::NotRegular),
            "{e}"
        );

        // Missing: an I/O error that says so.
        let e = t.open("a/b/none", "").unwrap_err();
        assert!(e.is_not_found(), "{e}");

        // A group-writable directory between the file and stop_at.
        chmod(&t.path("a"), 0o775);
        let e = t.open("a/b/keys", "").unwrap_err();
        assert!(
            matches!(&e, OpenError::Unsafe(u) if u.path == t.path("a").canonicalize().unwrap()),
            "{e}"
        );
        assert!(!e.is_not_found());
        // ... is not looked at when stop_at is below it.
        assert!(t.open("a/b/keys", "a/b").is_ok());
        assert!(check_dirs(&t.path("a/b"), &[t.me], Some(&t.path("a/b"))).is_ok());
        assert!(check_dirs(&t.path("a/b"), &[t.me], Some(&t.path(""))).is_err());
    }

    #[test]
    fn node_kinds_and_permission_bits() {
        let node = |mode| Node {
            path: "/x".into(),
            uid: 0,
            gid: 0,
            mode,
        };
        let f = node(REG | 0o4755);
        assert!(f.is_file() && !f.is_dir());
        assert_eq!(f.perm(), 0o4755);
        let d = node(DIR | 0o755);
        assert!(d.is_dir() && !d.is_file());
        for other in [libc::S_IFLNK, libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR] {
            let n = node(other | 0o644);
            assert!(!n.is_file() && !n.is_dir(), "{other:o}");
        }
    }

    #[test]
    fn not_found_is_only_a_missing_file() {
        let io = |kind| OpenError::Io {
            path: "/x".into(),
            source: io::Error::from(kind),
        };
        assert!(io(io::ErrorKind::NotFound).is_not_found());
        assert!(!io(io::ErrorKind::PermissionDenied).is_not_found());
        let unsafe_file = OpenError::Unsafe(Unsafe {
            path: "/x".into(),
            problem: Problem::NotRegular,
        });
        assert!(!unsafe_file.is_not_found());
    }

    #[test]
    fn the_literal_walk_is_the_resolved_chain() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let real = base.join("real");
        std::fs::create_dir(&real).unwrap();
        let file = real.join("f");
        std::fs::write(&file, "x").unwrap();
        let want = resolved_chain(&file, None).unwrap();
        assert_eq!(want[0].path, file);
        assert_eq!(want.last().unwrap().path, Path::new("/"));
        // No symlink: the walk answers, with what realpath would give.
        assert_eq!(literal_chain(&file), Some(want.clone()));
        let odd = PathBuf::from(format!("{}//./f", real.display()));
        assert_eq!(stat_chain(&odd, None).unwrap(), want);
        // A symlinked directory or `..`: resolved as before.
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(literal_chain(&link.join("f")), None);
        assert_eq!(stat_chain(&link.join("f"), None).unwrap(), want);
        let up = real.join("..").join("real").join("f");
        assert_eq!(literal_chain(&up), None);
        assert_eq!(stat_chain(&up, None).unwrap(), want);
        // A missing file is the same error either way.
        let gone = real.join("missing");
        assert!(stat_chain(&gone, None).unwrap_err().is_not_found());
    }

    #[test]
    fn messages_name_file_mode_and_fix() {
        let e = check(
            Path::new("/var/cache/keyward/alice"),
            Kind::File,
            0,
            REG | 0o664,
            &[0],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "bad modes for /var/cache/keyward/alice (mode 0664, group-writable; fix: chmod go-w /var/cache/keyward/alice)"
        );
    }
}
