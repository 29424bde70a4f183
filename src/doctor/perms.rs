//! Ownership and mode rules over a chain of path components (the file, then
//! every parent up to `/`), worded like sshd's own messages and with the
//! exact `chown`/`chmod` that fixes them. The rules are pure; `stat_chain`
//! is the probe.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::safepath::Kind;

/// One path component as `stat` saw it.
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

/// A problem with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub found: String,
    pub fix: String,
}

/// `chmod g-w`, `o-w` or `go-w` for the writable bits of `mode`.
pub fn chmod_fix(mode: u32, path: &Path) -> String {
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "go-w",
        (true, false) => "g-w",
        _ => "o-w",
    };
    format!("chmod {who} {}", path.display())
}

fn writable_word(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group- and world-writable",
        (true, false) => "group-writable",
        _ => "world-writable",
    }
}

/// sshd's safe_path() rule over `nodes` (the target first, then its parents
/// up to `/`): regular file (or directory for `Kind::Dir`), every component
/// owned by one of `owners` and not group/world-writable. `owner_name` is
/// used in the `chown` fix. The message is sshd's ("bad ownership or modes
/// for directory /usr/local") plus what exactly is wrong.
pub fn check_chain(
    nodes: &[Node],
    kind: Kind,
    owners: &[u32],
    owner_name: &str,
) -> Option<Finding> {
    let first = nodes.first()?;
    match kind {
        Kind::File if !first.is_file() => {
            return Some(Finding {
                found: format!("{} is not a regular file", first.path.display()),
                fix: format!("replace {} with a regular file", first.path.display()),
            })
        }
        Kind::Dir if !first.is_dir() => {
            return Some(Finding {
                found: format!("{} is not a directory", first.path.display()),
                fix: format!("replace {} with a directory", first.path.display()),
            })
        }
        _ => {}
    }
    for (i, n) in nodes.iter().enumerate() {
        let what = if i == 0 && kind == Kind::File {
            "file"
        } else {
            "directory"
        };
        let bad_owner = !owners.contains(&n.uid);
        let bad_mode = n.mode & 0o022 != 0;
        if !bad_owner && !bad_mode {
            continue;
        }
        let p = n.path.display();
        let mut details = Vec::new();
        let mut fixes = Vec::new();
        if bad_owner {
            details.push(format!("owner uid {}", n.uid));
            fixes.push(format!("chown {owner_name} {p}"));
        }
        if bad_mode {
            details.push(format!("mode {:04o}, {}", n.perm(), writable_word(n.mode)));
            fixes.push(chmod_fix(n.mode, &n.path));
        }
        return Some(Finding {
            found: format!(
                "bad ownership or modes for {what} {p} ({})",
                details.join(", ")
            ),
            fix: fixes.join(" && "),
        });
    }
    None
}

/// When the first unsafe component in `nodes` is unsafe only because it is
/// group-writable (right owner, not world-writable): its index. Debian's
/// sshd tolerates that when the group has no member but the owner (its
/// "harmless group-writability" patch); upstream OpenSSH never does.
pub fn group_write_only(nodes: &[Node], owners: &[u32]) -> Option<usize> {
    let i = nodes
        .iter()
        .position(|n| !owners.contains(&n.uid) || n.mode & 0o022 != 0)?;
    let n = &nodes[i];
    (owners.contains(&n.uid) && n.mode & 0o002 == 0).then_some(i)
}

/// Whether a process with `uid` and groups `gids` can read the file
/// `nodes[0]` (r on the file, x on every parent), from the mode bits. On
/// failure: the component that blocks and the `chmod` that opens it.
pub fn readable_by(nodes: &[Node], uid: u32, gids: &[u32]) -> Result<(), Finding> {
    if uid == 0 {
        return Ok(());
    }
    for (i, n) in nodes.iter().enumerate() {
        let (need, bit_name) = if i == 0 && !n.is_dir() {
            (4, "r")
        } else {
            (1, "x")
        };
        let class = if n.uid == uid {
            (n.mode >> 6) & 7
        } else if gids.contains(&n.gid) {
            (n.mode >> 3) & 7
        } else {
            n.mode & 7
        };
        if class & need == 0 {
            let p = n.path.display();
            let what = if i == 0 && !n.is_dir() {
                "cannot read"
            } else {
                "cannot enter"
            };
            return Err(Finding {
                found: format!("{what} {p} (mode {:04o}, owner uid {} gid {})", n.perm(), n.uid, n.gid),
                fix: format!("chmod o+{bit_name} {p} (or chgrp to a group of the user and chmod g+{bit_name})"),
            });
        }
    }
    Ok(())
}

/// Stats `path` (symlinks resolved, as sshd's realpath) and every parent up
/// to `/`: the target first.
pub fn stat_chain(path: &Path) -> Result<Vec<Node>, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut cur = Some(real.as_path());
    while let Some(p) = cur {
        let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(Node {
            path: p.to_owned(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
        });
        cur = p.parent();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str, uid: u32, mode: u32) -> Node {
        Node {
            path: path.into(),
            uid,
            gid: 0,
            mode,
        }
    }

    const F: u32 = libc::S_IFREG;
    const D: u32 = libc::S_IFDIR;

    fn chain(dir_mode: u32) -> Vec<Node> {
        vec![
            n("/usr/local/bin/keyward", 0, F | 0o755),
            n("/usr/local/bin", 0, D | 0o755),
            n("/usr/local", 0, D | dir_mode),
            n("/usr", 0, D | 0o755),
            n("/", 0, D | 0o755),
        ]
    }

    #[test]
    fn safe_chain_passes() {
        assert_eq!(check_chain(&chain(0o755), Kind::File, &[0], "root"), None);
    }

    #[test]
    fn group_writable_parent_named_like_sshd_with_fix() {
        let f = check_chain(&chain(0o775), Kind::File, &[0], "root").unwrap();
        assert_eq!(
            f.found,
            "bad ownership or modes for directory /usr/local (mode 0775, group-writable)"
        );
        assert_eq!(f.fix, "chmod g-w /usr/local");
        let f = check_chain(&chain(0o777), Kind::File, &[0], "root").unwrap();
        assert_eq!(f.fix, "chmod go-w /usr/local");
    }

    #[test]
    fn bad_owner_and_mode_on_the_file() {
        let mut c = chain(0o755);
        c[0] = n("/usr/local/bin/keyward", 1000, F | 0o757);
        let f = check_chain(&c, Kind::File, &[0], "root").unwrap();
        assert!(f.found.starts_with("bad ownership or modes for file /usr/local/bin/keyward (owner uid 1000, mode 0757, world-writable"), "{}", f.found);
        assert_eq!(
            f.fix,
            "chown root /usr/local/bin/keyward && chmod o-w /usr/local/bin/keyward"
        );
    }

    #[test]
    fn group_write_only_cases() {
        assert_eq!(group_write_only(&chain(0o755), &[0]), None);
        assert_eq!(group_write_only(&chain(0o775), &[0]), Some(2));
        assert_eq!(group_write_only(&chain(0o777), &[0]), None);
        let mut c = chain(0o775);
        c[1].uid = 1000;
        assert_eq!(group_write_only(&c, &[0]), None);
    }

    #[test]
    fn kind_mismatch() {
        let c = chain(0o755);
        assert!(check_chain(&c, Kind::Dir, &[0], "root")
            .unwrap()
            .found
            .contains("not a directory"));
        assert!(check_chain(&c[1..], Kind::File, &[0], "root")
            .unwrap()
            .found
            .contains("not a regular file"));
    }

    #[test]
    fn readability_by_mode_bits() {
        let mut c = vec![
            Node {
                path: "/etc/keyward/keyward.toml".into(),
                uid: 0,
                gid: 0,
                mode: F | 0o640,
            },
            Node {
                path: "/etc/keyward".into(),
                uid: 0,
                gid: 0,
                mode: D | 0o755,
            },
            Node {
                path: "/etc".into(),
                uid: 0,
                gid: 0,
                mode: D | 0o755,
            },
        ];
        let e = readable_by(&c, 999, &[999]).unwrap_err();
        assert!(
            e.found.starts_with("cannot read /etc/keyward/keyward.toml"),
            "{}",
            e.found
        );
        assert!(e.fix.starts_with("chmod o+r /etc/keyward/keyward.toml"));
        // group read for the user's group
        c[0].gid = 999;
        assert!(readable_by(&c, 999, &[999]).is_ok());
        // a parent without x for others
        c[0].gid = 0;
        c[0].mode = F | 0o644;
        c[1].mode = D | 0o750;
        let e = readable_by(&c, 999, &[999]).unwrap_err();
        assert!(
            e.found.starts_with("cannot enter /etc/keyward"),
            "{}",
            e.found
        );
        assert!(readable_by(&c, 0, &[]).is_ok());
    }
}
