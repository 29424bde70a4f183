//! The cache directory, the state directory and the account that owns
//! them: `cache.owner`, `cache.config_readable`, `cache.dir`, `state.dir`,
//! `cache.write`. What the login path needs after it drops to the `[cache]
//! owner`; the state directory (the rollback floors) has the cache
//! directory's rules.

use std::path::{Path, PathBuf};

use super::perms::{self, Finding, Node};
use crate::config::Config;
use crate::os::nss::{self, Account};
use crate::os::privdrop;
use crate::os::safepath::Kind;
use crate::report::{Check, Status};

/// The checks in report order, and the owner's account when usable.
pub fn checks(config: &Config, config_path: &Path, root: bool) -> (Option<Account>, Vec<Check>) {
    let (acct, owner) = owner_check(&config.cache.owner);
    let out = vec![
        owner,
        config_readable_check(config, config_path, acct.as_ref()),
        dir_check(config, acct.as_ref()),
        state_dir_check(config, acct.as_ref()),
        write_check(config, acct.as_ref(), root),
    ];
    (acct, out)
}

/// `cache.owner`: exists, and is not root (the drop refuses uid or gid 0).
fn owner_check(owner: &str) -> (Option<Account>, Check) {
    match nss::account(owner) {
        Ok(Some(a)) if a.uid == 0 || a.gid == 0 => (
            None,
            Check::fail(
                "cache.owner",
                format!("[cache] owner {owner} is root (uid {}, gid {}): keyward refuses to drop to root", a.uid, a.gid),
                "owner = \"keyward\" in [cache]",
            ),
        ),
        Ok(Some(a)) => {
            let found = format!("[cache] owner {owner} exists (uid {}, gid {})", a.uid, a.gid);
            (Some(a), Check::ok("cache.owner", found))
        }
        Ok(None) => (
            None,
            Check::fail(
                "cache.owner",
                format!("[cache] owner {owner} does not exist: keyward started as root cannot drop privileges and fails"),
                format!("useradd --system --no-create-home --shell /usr/sbin/nologin {owner} (the package creates it)"),
            ),
        ),
        Err(e) => (
            None,
            Check::fail(
                "cache.owner",
                format!("looking up [cache] owner {owner}: {e}"),
                "check NSS (/etc/nsswitch.conf)",
            ),
        ),
    }
}

/// `cache.config_readable`: the files the owner (and sshd's
/// AuthorizedKeysCommandUser) must read after the drop.
fn config_readable_check(config: &Config, config_path: &Path, acct: Option<&Account>) -> Check {
    let owner = &config.cache.owner;
    let Some(a) = acct else {
        return Check::skip(
            "cache.config_readable",
            format!("skipped: [cache] owner {owner} unusable"),
        );
    };
    let gids = nss::groups_of(&a.name, a.gid).unwrap_or_else(|_| vec![a.gid]);
    let mut files: Vec<PathBuf> = vec![config_path.to_owned()];
    files.extend(config.directory.ca_file.clone());
    files.extend(config.directory.signers_file.clone());
    let problem = files.iter().find_map(|f| {
        let chain = perms::stat_chain(f).map_err(|e| Finding {
            found: e,
            fix: format!("create {}", f.display()),
        });
        chain
            .and_then(|chain| perms::readable_by(&chain, a.uid, &gids))
            .err()
    });
    match problem {
        Some(f) => Check::fail(
            "cache.config_readable",
            format!("{owner} {}: keyward running as {owner} fails", f.found),
            f.fix,
        ),
        None => {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Check::ok(
                "cache.config_readable",
                format!("{owner} can read {}", names.join(", ")),
            )
        }
    }
}

/// `cache.dir`: a directory the owner owns, not group/world-writable, safe
/// parents; readable by others is only worth a warning.
fn dir_check(config: &Config, acct: Option<&Account>) -> Check {
    let (owner, dir) = (&config.cache.owner, &config.cache.dir);
    let d = dir.display();
    let make = format!("install -d -o {owner} -g {owner} -m 0750 {d}");
    let chain = match perms::stat_chain(dir) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "cache.dir",
                format!("{e}: keyward cannot cache (and fails closed when the directory is down)"),
                make,
            )
        }
    };
    let top = &chain[0];
    match dir_finding(&chain, acct.map(|a| a.uid), owner, &make, "the cache") {
        Some((Status::Fail, found, fix)) => Check::fail("cache.dir", found, fix),
        Some((_, found, fix)) => Check::warn("cache.dir", found, fix),
        None => Check::ok(
            "cache.dir",
            format!(
                "{d}: owned by {owner}, mode {:04o}, parents safe",
                top.perm()
            ),
        ),
    }
}

/// `state.dir`: the rollback floors' directory, checked like the cache
/// directory. Missing, keyward cannot keep a floor, and a signed lookup
/// that must store one fails closed.
fn state_dir_check(config: &Config, acct: Option<&Account>) -> Check {
    let (owner, dir) = (&config.cache.owner, &config.state.dir);
    let d = dir.display();
    let make = format!("install -d -o {owner} -g {owner} -m 0750 {d} (the package creates it)");
    let chain = match perms::stat_chain(dir) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "state.dir",
                format!("{e}: keyward cannot keep rollback floors (signed lookups that must store one fail closed)"),
                make,
            )
        }
    };
    let top = &chain[0];
    match dir_finding(
        &chain,
        acct.map(|a| a.uid),
        owner,
        &make,
        "the state directory",
    ) {
        Some((Status::Fail, found, fix)) => Check::fail("state.dir", found, fix),
        Some((_, found, fix)) => Check::warn("state.dir", found, fix),
        None => Check::ok(
            "state.dir",
            format!(
                "{d}: owned by {owner}, mode {:04o}, parents safe",
                top.perm()
            ),
        ),
    }
}

/// What is wrong with the cache (or state) directory `chain[0]`, `what`
/// for the message (pure).
fn dir_finding(
    chain: &[Node],
    uid: Option<u32>,
    owner: &str,
    make: &str,
    what: &str,
) -> Option<(Status, String, String)> {
    let top = &chain[0];
    let d = top.path.display();
    let mut owners = vec![0];
    owners.extend(uid);
    if !top.is_dir() {
        return Some((
            Status::Fail,
            format!("{d} is not a directory"),
            make.to_owned(),
        ));
    }
    if top.mode & 0o022 != 0 {
        let fix = perms::check_chain(&chain[..1], Kind::Dir, &owners, owner)
            .map(|f| f.fix)
            .unwrap_or_else(|| perms::chmod_fix(top.mode, &top.path));
        let who = if top.mode & 0o002 != 0 {
            "world-writable"
        } else {
            "group-writable"
        };
        return Some((
            Status::Fail,
            format!(
                "{d} is {who} (mode {:04o}): keyward refuses {what} and fails closed",
                top.perm()
            ),
            fix,
        ));
    }
    if Some(top.uid) != uid && top.uid != 0 {
        return Some((
            Status::Fail,
            format!(
                "{d} is owned by uid {}, not {owner}: keyward refuses it and fails closed",
                top.uid
            ),
            format!("chown {owner}: {d}"),
        ));
    }
    if top.uid == 0 && uid.is_some() {
        return Some((
            Status::Warn,
            format!("{d} is owned by root: keyward (running as {owner}) may not update it"),
            format!("chown {owner}: {d} && chmod 0750 {d}"),
        ));
    }
    if let Some(f) = perms::check_chain(&chain[1..], Kind::Dir, &owners, "root") {
        return Some((
            Status::Fail,
            format!("{}: keyward refuses {what} and fails closed", f.found),
            f.fix,
        ));
    }
    (top.mode & 0o007 != 0).then(|| {
        (
            Status::Warn,
            format!(
                "{d} (mode {:04o}) lets every local user see who has keys",
                top.perm()
            ),
            format!("chmod 0750 {d}"),
        )
    })
}

/// `cache.write`: a real write as the owner (a temp file, removed at once).
fn write_check(config: &Config, acct: Option<&Account>, root: bool) -> Check {
    let (owner, dir) = (&config.cache.owner, &config.cache.dir);
    let d = dir.display();
    let probe = || -> Result<(), String> {
        tempfile::Builder::new()
            .prefix(".doctor-probe-")
            .tempfile_in(dir)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let written = match acct {
        Some(a) if root => Some(privdrop::as_user(a, probe).and_then(|r| r)),
        Some(a) if a.uid == privdrop::euid() => Some(probe()),
        _ => None,
    };
    match written {
        Some(Ok(())) => Check::ok("cache.write", format!("{owner} can write in {d}")),
        Some(Err(e)) => Check::fail(
            "cache.write",
            format!("{owner} cannot create files in {d}: {e}"),
            format!("chown {owner}: {d} && chmod 0750 {d}"),
        ),
        None if acct.is_none() => Check::skip(
            "cache.write",
            format!("skipped: [cache] owner {owner} unusable"),
        ),
        None => Check::skip(
            "cache.write",
            format!("skipped: needs root (or run as {owner})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, uid: u32, mode: u32) -> Node {
        Node {
            path: path.into(),
            uid,
            gid: 0,
            mode,
        }
    }

    fn chain(top_uid: u32, top_mode: u32) -> Vec<Node> {
        vec![
            node("/var/cache/keyward", top_uid, libc::S_IFDIR | top_mode),
            node("/var/cache", 0, libc::S_IFDIR | 0o755),
            node("/var", 0, libc::S_IFDIR | 0o755),
            node("/", 0, libc::S_IFDIR | 0o755),
        ]
    }

    fn status(top_uid: u32, top_mode: u32) -> Option<Status> {
        dir_finding(
            &chain(top_uid, top_mode),
            Some(999),
            "keyward",
            "mk",
            "the cache",
        )
        .map(|f| f.0)
    }

    #[test]
    fn cache_dir_rules() {
        assert_eq!(status(999, 0o750), None);
        assert_eq!(status(999, 0o770), Some(Status::Fail));
        assert_eq!(status(1000, 0o750), Some(Status::Fail));
        assert_eq!(status(0, 0o755), Some(Status::Warn));
        assert_eq!(status(999, 0o755), Some(Status::Warn));
        let mut c = chain(999, 0o750);
        c[1].mode = libc::S_IFDIR | 0o777;
        let f = dir_finding(&c, Some(999), "keyward", "mk", "the cache").unwrap();
        assert_eq!(f.0, Status::Fail);
        assert_eq!(f.2, "chmod go-w /var/cache");
    }
}
