//! The account as sshd sees it before it ever runs keyward: known to NSS,
//! password field (locked?), expiry, shell, and whether sshd runs the
//! AuthorizedKeysCommand for it at all (AllowUsers…, UsePAM,
//! PubkeyAuthentication). The rules are pure; [`checks`] probes (as root:
//! shadow and `sshd -T -C user=…`).

use std::path::Path;

use crate::os::clock::now_secs;
use crate::os::nss::{self, Account};
use crate::report::Check;
use crate::sshd::{self, Probe, SshdT};

/// `account.*` and `sshd.runs` for `user`, in report order, and the
/// effective sshd configuration for the user when `sshd -T` ran (root).
pub fn checks(
    user: &str,
    acct: Option<&Account>,
    sshd_config: Option<&Path>,
    root: bool,
) -> (Vec<Check>, Option<SshdT>) {
    let Some(a) = acct else {
        let unknown = Check::fail(
            "account.nss",
            format!("{user} is unknown to NSS: sshd never runs the AuthorizedKeysCommand for it, no key can work"),
            format!("create the account (useradd) or fix NSS: getent passwd {user}"),
        );
        return (vec![unknown], None);
    };
    let mut out = vec![Check::ok(
        "account.nss",
        format!("{user} is known to NSS (uid {}, home {})", a.uid, a.home),
    )];
    // sshd -T reads the host keys: root only.
    let probe = root.then(|| sshd::probe(sshd_config, Some(user)));
    let use_pam = probe
        .as_ref()
        .and_then(|p| p.result.as_ref().ok())
        .and_then(|t| t.yes("usepam"));
    let (shadow, locked) = shadow_checks(user, use_pam, root);
    out.extend(shadow);
    out.push(shell_probe(a));
    out.push(runs_probe(probe.as_ref(), user, a, locked));
    (out, probe.and_then(|p| p.result.ok()))
}

/// `account.password` and `account.expiry` from the shadow entry, and
/// whether the account is locked.
fn shadow_checks(user: &str, use_pam: Option<bool>, root: bool) -> (Vec<Check>, bool) {
    if !root {
        let skip = Check::skip("account.password", "skipped: needs root (/etc/shadow)");
        return (vec![skip], false);
    }
    match nss::shadow(user) {
        Ok(Some(s)) => {
            let today = (now_secs() / 86400) as i64;
            let checks = vec![
                password_check(&s.password, use_pam),
                expiry_check(s.expire, today),
            ];
            (checks, s.password.starts_with('!'))
        }
        Ok(None) => (
            vec![Check::ok(
                "account.password",
                "no shadow entry (password managed elsewhere)",
            )],
            false,
        ),
        Err(e) => (
            vec![Check::skip(
                "account.password",
                format!("skipped: shadow lookup failed: {e}"),
            )],
            false,
        ),
    }
}

/// `account.shell`: the login shell exists and is executable.
fn shell_probe(a: &Account) -> Check {
    let path = if a.shell.is_empty() {
        "/bin/sh"
    } else {
        &a.shell
    };
    let meta = std::fs::metadata(path);
    let exec = meta.as_ref().is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    shell_check(&a.shell, meta.is_ok(), exec)
}

/// `sshd.runs` from the probe (None: not root).
fn runs_probe(probe: Option<&Probe>, user: &str, a: &Account, locked: bool) -> Check {
    match probe.map(|p| &p.result) {
        Some(Ok(t)) => {
            let gids = nss::groups_of(&a.name, a.gid).unwrap_or_else(|_| vec![a.gid]);
            let groups: Vec<String> = gids
                .into_iter()
                .filter_map(|g| nss::group_by_gid(g).ok().flatten().map(|g| g.name))
                .collect();
            sshd_runs_check(t, user, &groups, locked)
        }
        Some(Err(e)) => Check::warn(
            "sshd.runs",
            format!("sshd -T failed: {e}"),
            "sshd -t shows the error",
        ),
        None => Check::skip(
            "sshd.runs",
            "skipped: needs root (sshd -T reads the host keys)",
        ),
    }
}

/// What the shadow password field means for sshd. With UsePAM no, sshd
/// itself refuses an account whose field starts with `!` for every method,
/// keys included; with UsePAM yes it leaves that to PAM's account stack,
/// where pam_unix does not look at the lock (key logins then work).
pub fn password_check(field: &str, use_pam: Option<bool>) -> Check {
    if field.starts_with('!') {
        return match use_pam {
            Some(false) => Check::fail(
                "account.password",
                "locked (password field starts with '!') and UsePAM no: sshd refuses every login, keys included (\"User … not allowed because account is locked\")",
                "usermod -p '*' USER (no password, not locked) or UsePAM yes",
            ),
            Some(true) => Check::ok(
                "account.password",
                "locked (password field starts with '!'): no password login; with UsePAM yes sshd leaves the lock to PAM's account stack and key logins work",
            ),
            None => Check::warn(
                "account.password",
                "locked (password field starts with '!'): with UsePAM no sshd refuses every login (keys too); with UsePAM yes key logins work",
                "usermod -p '*' USER to allow key logins whatever UsePAM says",
            ),
        };
    }
    match field {
        "*" => Check::ok(
            "account.password",
            "no password ('*'), not locked: key logins work",
        ),
        "" => Check::warn(
            "account.password",
            "empty password field: with PermitEmptyPasswords yes anyone logs in without a password",
            "usermod -p '*' USER",
        ),
        _ => Check::ok(
            "account.password",
            "has a password (password logins are what pam_keyward refuses)",
        ),
    }
}

/// The shadow expire field (days since 1970), compared with today.
pub fn expiry_check(expire: Option<i64>, today: i64) -> Check {
    match expire {
        Some(d) if d <= today => Check::fail(
            "account.expiry",
            format!(
                "account expired on {}: sshd refuses every login (sshd itself, or pam_unix in the account stack)",
                &crate::signed::format_utc(d * 86400)[..10]
            ),
            "chage -E -1 USER (or a later date)",
        ),
        Some(d) => Check::ok(
            "account.expiry",
            format!("expires on {}", &crate::signed::format_utc(d * 86400)[..10]),
        ),
        None => Check::ok("account.expiry", "does not expire"),
    }
}

/// sshd's shell rule: a missing or non-executable shell refuses the user
/// before any key is tried; nologin lets the key through but no session.
pub fn shell_check(shell: &str, exists: bool, executable: bool) -> Check {
    let shell = if shell.is_empty() { "/bin/sh" } else { shell };
    if !exists {
        return Check::fail(
            "account.shell",
            format!("shell {shell} does not exist: sshd refuses the user before trying any key (\"not allowed because shell {shell} does not exist\")"),
            format!("chsh -s /bin/bash USER (or install {shell})"),
        );
    }
    if !executable {
        return Check::fail(
            "account.shell",
            format!("shell {shell} is not executable: sshd refuses the user before trying any key"),
            format!("chmod 0755 {shell}"),
        );
    }
    let base = shell.rsplit('/').next().unwrap_or(shell);
    if base == "nologin" || base == "false" {
        return Check::warn(
            "account.shell",
            format!("shell {shell}: the key is accepted, then the session ends at once"),
            "chsh -s /bin/bash USER if the user should get a shell",
        );
    }
    Check::ok("account.shell", format!("shell {shell}"))
}

/// Whether sshd runs the AuthorizedKeysCommand for `user` at all.
pub fn sshd_runs_check(t: &SshdT, user: &str, groups: &[String], locked: bool) -> Check {
    if let Err(why) = sshd::user_lists(t, user, groups) {
        return Check::fail(
            "sshd.runs",
            format!("sshd refuses {user} before trying any key: {why}"),
            "change AllowUsers/DenyUsers/AllowGroups/DenyGroups in sshd_config",
        );
    }
    if locked && t.yes("usepam") == Some(false) {
        return Check::fail(
            "sshd.runs",
            format!("sshd refuses {user}: account locked and UsePAM no"),
            "usermod -p '*' USER",
        );
    }
    if t.yes("pubkeyauthentication") == Some(false) {
        return Check::fail(
            "sshd.runs",
            format!("PubkeyAuthentication no for {user}: sshd tries no key"),
            "PubkeyAuthentication yes (check Match blocks)",
        );
    }
    let Some(cmd) = t.set("authorizedkeyscommand") else {
        return Check::fail(
            "sshd.runs",
            format!("no AuthorizedKeysCommand applies to {user}: sshd never asks keyward"),
            "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U (check Match blocks)",
        );
    };
    let Some(as_user) = t.set("authorizedkeyscommanduser") else {
        return Check::fail(
            "sshd.runs",
            "AuthorizedKeysCommandUser is not set: sshd refuses to run the command",
            "AuthorizedKeysCommandUser keyward",
        );
    };
    if !cmd.contains("keyward") {
        return Check::warn(
            "sshd.runs",
            format!("sshd runs `{cmd}` for {user}, which does not look like keyward"),
            "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U",
        );
    }
    Check::ok(
        "sshd.runs",
        format!("sshd runs `{cmd}` as {as_user} for {user}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn password_fields() {
        assert_eq!(password_check("*", Some(false)).status, Status::Ok);
        assert_eq!(
            password_check("!$y$j9T$abc", Some(false)).status,
            Status::Fail
        );
        assert_eq!(password_check("!", Some(true)).status, Status::Ok);
        assert_eq!(password_check("!*", None).status, Status::Warn);
        assert_eq!(password_check("", Some(true)).status, Status::Warn);
        assert!(password_check("$y$j9T$abc", Some(true))
            .found
            .contains("has a password"));
    }

    #[test]
    fn expiry_and_shell() {
        assert_eq!(expiry_check(Some(19000), 20000).status, Status::Fail);
        assert!(expiry_check(Some(19000), 20000)
            .found
            .contains("2022-01-08"));
        assert_eq!(expiry_check(Some(30000), 20000).status, Status::Ok);
        assert_eq!(expiry_check(None, 20000).status, Status::Ok);
        assert_eq!(shell_check("/bin/bash", true, true).status, Status::Ok);
        assert_eq!(shell_check("/bin/nope", false, false).status, Status::Fail);
        assert_eq!(
            shell_check("/usr/sbin/nologin", true, true).status,
            Status::Warn
        );
        assert!(shell_check("", true, true).found.contains("/bin/sh"));
    }

    #[test]
    fn sshd_runs() {
        let good = SshdT::parse("usepam yes\npubkeyauthentication yes\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\n");
        assert_eq!(
            sshd_runs_check(&good, "alice", &[], false).status,
            Status::Ok
        );
        assert_eq!(
            sshd_runs_check(&good, "alice", &[], true).status,
            Status::Ok
        );
        let nopam = SshdT::parse("usepam no\npubkeyauthentication yes\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\n");
        assert_eq!(
            sshd_runs_check(&nopam, "alice", &[], true).status,
            Status::Fail
        );
        let deny =
            SshdT::parse("denyusers alice\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\n");
        assert!(sshd_runs_check(&deny, "alice", &[], false)
            .found
            .contains("DenyUsers"));
        let none = SshdT::parse("authorizedkeyscommand none\n");
        assert_eq!(
            sshd_runs_check(&none, "alice", &[], false).status,
            Status::Fail
        );
    }
}
