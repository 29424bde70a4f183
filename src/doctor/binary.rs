//! `binary`: the AuthorizedKeysCommand program and every parent directory
//! up to `/` root-owned and not group/world-writable (sshd's rule), with
//! Debian's relaxation for a group that has no member but the owner.

use std::path::{Path, PathBuf};

use super::perms::{self, Node};
use crate::os::nss::{self, Account, Group};
use crate::os::safepath::Kind;
use crate::report::Check;
use crate::sshd::{argv_split, SshdT};

/// The program to check, and how the report names it: the one sshd runs,
/// else this keyward, else the packaged path.
pub fn target(sshd: Option<&SshdT>, this_exe: Option<&Path>) -> (PathBuf, &'static str) {
    let akc = sshd
        .and_then(|t| t.set("authorizedkeyscommand"))
        .and_then(|l| argv_split(l).ok())
        .and_then(|a| a.into_iter().next())
        .filter(|a| a.starts_with('/'));
    match (akc, this_exe) {
        (Some(b), _) => (PathBuf::from(b), "the AuthorizedKeysCommand"),
        (None, Some(exe)) => (exe.to_owned(), "this keyward"),
        (None, None) => (PathBuf::from("/usr/sbin/keyward"), "the packaged keyward"),
    }
}

/// The `binary` check for `path` (`from` says which program it is).
pub fn check(path: &Path, from: &str) -> Check {
    let p = path.display().to_string();
    let chain = match perms::stat_chain(path) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "binary",
                format!("{from}: {e}: sshd cannot run it"),
                "install keyward there, or point AuthorizedKeysCommand at the installed binary (/usr/sbin/keyward)",
            )
            .subject(p)
        }
    };
    if let Some(f) = perms::check_chain(&chain, Kind::File, &[0], "root") {
        let debian_ok =
            perms::group_write_only(&chain, &[0]).and_then(|i| owner_only_group_of(&chain[i]));
        return match debian_ok {
            Some(group) => Check::warn(
                "binary",
                format!(
                    "{}: Debian's sshd tolerates it (group {group} has no member but the owner); upstream OpenSSH and RPM-based distributions refuse it (log: Unsafe AuthorizedKeysCommand \"{p}\")",
                    f.found
                ),
                f.fix,
            ),
            None => Check::fail(
                "binary",
                format!(
                    "{}: sshd refuses to run it (log: Unsafe AuthorizedKeysCommand \"{p}\")",
                    f.found
                ),
                f.fix,
            ),
        }
        .subject(p);
    }
    if chain[0].mode & 0o001 == 0 {
        return Check::fail(
            "binary",
            format!("not executable by others (mode {:04o})", chain[0].perm()),
            format!("chmod 0755 {p}"),
        )
        .subject(p);
    }
    Check::ok(
        "binary",
        format!("{from}: root-owned and not group/world-writable, every parent directory too"),
    )
    .subject(p)
}

/// Debian's rule: a group-writable component is harmless when the group's
/// only member, listed or by primary group, is the component's owner.
pub fn owner_only(group: &Group, primary: &[Account], owner: &Account) -> bool {
    let listed_ok = group.members.iter().all(|m| *m == owner.name);
    let primary_ok = primary.iter().all(|a| a.uid == owner.uid);
    listed_ok && primary_ok && (!group.members.is_empty() || !primary.is_empty())
}

/// The name of `node`'s group when [`owner_only`] holds for it.
fn owner_only_group_of(node: &Node) -> Option<String> {
    let owner = nss::account_by_uid(node.uid).ok()??;
    let group = nss::group_by_gid(node.gid).ok()??;
    let primary = nss::accounts_in_primary_group(node.gid).ok()?;
    owner_only(&group, &primary, &owner).then_some(group.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: 50,
            home: "/".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn debian_owner_only_group() {
        let root = acct("root", 0);
        let g = |members: &[&str]| Group {
            name: "staff".into(),
            gid: 50,
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        assert!(owner_only(&g(&["root"]), &[], &root));
        assert!(owner_only(&g(&[]), std::slice::from_ref(&root), &root));
        assert!(!owner_only(&g(&["root", "alice"]), &[], &root));
        assert!(!owner_only(
            &g(&[]),
            &[root.clone(), acct("bob", 1001)],
            &root
        ));
        // an empty group: nobody's group, not the owner's
        assert!(!owner_only(&g(&[]), &[], &root));
    }

    #[test]
    fn target_prefers_what_sshd_runs() {
        let t = SshdT::parse("authorizedkeyscommand /opt/kw/keyward keys %u %f\n");
        assert_eq!(
            target(Some(&t), Some(Path::new("/x"))),
            (
                PathBuf::from("/opt/kw/keyward"),
                "the AuthorizedKeysCommand"
            )
        );
        let relative = SshdT::parse("authorizedkeyscommand keyward keys %u\n");
        assert_eq!(
            target(Some(&relative), Some(Path::new("/x"))).0,
            PathBuf::from("/x")
        );
        assert_eq!(target(None, None).1, "the packaged keyward");
    }
}
