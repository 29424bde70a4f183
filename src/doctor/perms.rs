//! sshd's safe_path() findings worded for the admin: over a chain of path
//! components (the file, then every parent up to `/`), what exactly is
//! wrong, in sshd's own words, with the `chown`/`chmod` that fixes it. The
//! rule itself is [`safepath::problems`]; this module only words it.

use std::path::Path;

pub use crate::os::safepath::Node;
use crate::os::safepath::{self, Kind, Problem};

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
    nodes.iter().enumerate().find_map(|(i, n)| {
        let kind = if i == 0 { kind } else { Kind::Dir };
        let problems = safepath::problems(kind, n.uid, n.mode, owners);
        (!problems.is_empty()).then(|| finding(n, kind, &problems, owner_name))
    })
}

/// The wording of one unsafe component's problems.
fn finding(n: &Node, kind: Kind, problems: &[Problem], owner_name: &str) -> Finding {
    let p = n.path.display();
    let (mut details, mut fixes) = (Vec::new(), Vec::new());
    for problem in problems {
        match problem {
            Problem::NotRegular | Problem::Symlink => {
                return Finding {
                    found: format!("{p} is not a regular file"),
                    fix: format!("replace {p} with a regular file"),
                }
            }
            Problem::NotDir => {
                return Finding {
                    found: format!("{p} is not a directory"),
                    fix: format!("replace {p} with a directory"),
                }
            }
            Problem::Owner { uid } => {
                details.push(format!("owner uid {uid}"));
                fixes.push(format!("chown {owner_name} {p}"));
            }
            Problem::Writable { mode } => {
                details.push(format!("mode {:04o}, {}", n.perm(), writable_word(*mode)));
                fixes.push(chmod_fix(*mode, &n.path));
            }
        }
    }
    let what = if kind == Kind::File {
        "file"
    } else {
        "directory"
    };
    Finding {
        found: format!(
            "bad ownership or modes for {what} {p} ({})",
            details.join(", ")
        ),
        fix: fixes.join(" && "),
    }
}

/// When the first unsafe component in `nodes` is unsafe only because it is
/// group-writable (right owner, not world-writable): its index. Debian's
/// sshd tolerates that when the group has no member but the owner (its
/// "harmless group-writability" patch); upstream OpenSSH never does.
pub fn group_write_only(nodes: &[Node], owners: &[u32]) -> Option<usize> {
    // Owner and modes only: the file type is not what Debian relaxes.
    let problems =
        |n: &Node| safepath::problems(Kind::Dir, n.uid, n.perm() | libc::S_IFDIR, owners);
    let (i, found) = nodes
        .iter()
        .map(problems)
        .enumerate()
        .find(|(_, p)| !p.is_empty())?;
    let group_only = matches!(found.as_slice(), [Problem::Writable { mode }] if mode & 0o002 == 0);
    group_only.then_some(i)
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

/// `path` and every parent up to `/`, the target first (the error names
/// the component that could not be read).
pub fn stat_chain(path: &Path) -> Result<Vec<Node>, String> {
    safepath::stat_chain(path, None).map_err(|e| e.to_string())
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
