//! The authentication settings around keyward (`sshd.keys_file`,
//! `sshd.password`, `sshd.kbdint`…): what reaches sshd besides keyward's
//! keys, and whether passwords get in. One function per check id; pure
//! over [`Facts`].

use super::sshd::Facts;
use crate::report::Check;

/// The authentication settings around keyward, in report order.
pub fn auth_checks(f: &Facts) -> Vec<Check> {
    [
        Some(keys_file_check(f)),
        trusted_ca_check(f),
        pubkey_check(f),
        Some(password_check(f)),
        Some(kbdint_check(f)),
        root_login_check(f),
        Some(empty_passwords_check(f)),
        Some(use_pam_check(f)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Where the value sshd uses was set, for a finding: ` (set in FILE line
/// N)`, or nothing when no file sets it (the built-in default).
fn set_in(f: &Facts, keyword: &str) -> String {
    (f.set_at)(keyword)
        .map(|at| format!(" (set in {at})"))
        .unwrap_or_default()
}

/// The fix for `keyword`: change it where sshd reads it first; a line in
/// `fix_file` only helps when that file is read before.
fn fix_at(f: &Facts, keyword: &str, good: &str) -> String {
    match (f.set_at)(keyword) {
        Some(at) if !at.starts_with(&format!("{} ", f.fix_file)) => format!(
            "{good} at {at}, or in a file sshd reads before it (sshd keeps the first value: a later {} does not override it)",
            f.fix_file
        ),
        _ => format!("{good} in {}", f.fix_file),
    }
}

fn use_pam(f: &Facts) -> bool {
    f.t.yes("usepam").unwrap_or(false)
}

/// pam_keyward refuses passwords only when sshd uses PAM and the stack
/// has it first.
fn pam_blocks(f: &Facts) -> bool {
    use_pam(f) && f.pam_blocks == Some(true)
}

/// Why PAM does not block passwords, for the messages below.
fn pam_note(f: &Facts) -> String {
    if !use_pam(f) {
        return "UsePAM no, so pam_keyward cannot block it".into();
    }
    match f.pam_blocks {
        Some(false) => format!(
            "pam_keyward does not block the auth stack of {}",
            f.pam_file
        ),
        None => "the PAM stack was not checked".into(),
        Some(true) => String::new(),
    }
}

/// `sshd.keys_file`: keys that reach sshd by another way than keyward.
fn keys_file_check(f: &Facts) -> Check {
    match f.t.set("authorizedkeysfile") {
        None => Check::ok("sshd.keys_file", "AuthorizedKeysFile none: keyward is the only source of keys"),
        Some(v) => Check::warn(
            "sshd.keys_file",
            format!("AuthorizedKeysFile {v} coexists with keyward: keys in these files are accepted outside keyward's policy and audit"),
            format!("AuthorizedKeysFile none in {} (list files keyward should check in [files] paths)", f.fix_file),
        ),
    }
}

/// `sshd.trusted_ca`, only when TrustedUserCAKeys is set and keyward does
/// not decide the principals (when it does, `super::principals` checks the
/// file).
fn trusted_ca_check(f: &Facts) -> Option<Check> {
    let v = f.t.set("trustedusercakeys")?;
    if super::principals::keyward_asked(f.t) {
        return None;
    }
    Some(Check::warn(
        "sshd.trusted_ca",
        format!("TrustedUserCAKeys {v}: certificates signed by these CAs are accepted without keyward (any certificate naming the account)"),
        format!("let keyward decide which principals log in (`AuthorizedPrincipalsCommand /usr/sbin/keyward principals %u uid=%U fp=%f ca=%F id=%i serial=%s` and `AuthorizedPrincipalsCommandUser keyward`, before AuthorizedKeysCommand), serve the CA as a cert-authority line from the key directory instead, or remove TrustedUserCAKeys from {}", f.fix_file),
    ))
}

/// `sshd.pubkey`, only when key logins are off.
fn pubkey_check(f: &Facts) -> Option<Check> {
    (f.t.yes("pubkeyauthentication") == Some(false)).then(|| {
        Check::fail(
            "sshd.pubkey",
            "PubkeyAuthentication no: no key login can succeed",
            format!("PubkeyAuthentication yes in {}", f.fix_file),
        )
    })
}

/// `sshd.password`: passwords are off, or PAM refuses them.
fn password_check(f: &Facts) -> Check {
    match f.t.yes("passwordauthentication") {
        Some(true) if pam_blocks(f) => Check::ok(
            "sshd.password",
            format!("PasswordAuthentication yes, but pam_keyward refuses every password in the auth stack of {}", f.pam_file),
        ),
        Some(true) => Check::fail(
            "sshd.password",
            format!("PasswordAuthentication yes{} and {}: passwords are accepted", set_in(f, "passwordauthentication"), pam_note(f)),
            format!("{} (or UsePAM yes with `auth requisite pam_keyward.so` first in {})", fix_at(f, "passwordauthentication", "PasswordAuthentication no"), f.pam_file),
        ),
        _ => Check::ok("sshd.password", "PasswordAuthentication no"),
    }
}

/// `sshd.kbdint`: keyboard-interactive is off, or PAM refuses it.
fn kbdint_check(f: &Facts) -> Check {
    match f.t.yes("kbdinteractiveauthentication") {
        Some(true) if pam_blocks(f) => Check::ok(
            "sshd.kbdint",
            "KbdInteractiveAuthentication yes, but pam_keyward refuses it in the auth stack",
        ),
        Some(true) if use_pam(f) => Check::fail(
            "sshd.kbdint",
            format!("KbdInteractiveAuthentication yes{} and {}: PAM password prompts are accepted", set_in(f, "kbdinteractiveauthentication"), pam_note(f)),
            format!("{} (or `auth requisite pam_keyward.so` first in {})", fix_at(f, "kbdinteractiveauthentication", "KbdInteractiveAuthentication no"), f.pam_file),
        ),
        Some(true) => Check::warn(
            "sshd.kbdint",
            "KbdInteractiveAuthentication yes with UsePAM no: no device to answer it on Linux, but nothing blocks it either",
            format!("KbdInteractiveAuthentication no in {}", f.fix_file),
        ),
        _ => Check::ok("sshd.kbdint", "KbdInteractiveAuthentication no"),
    }
}

/// `sshd.root_login`, when sshd reports PermitRootLogin.
fn root_login_check(f: &Facts) -> Option<Check> {
    Some(match f.t.get("permitrootlogin")? {
        v @ ("no" | "prohibit-password" | "without-password" | "forced-commands-only") => {
            Check::ok("sshd.root_login", format!("PermitRootLogin {v}"))
        }
        v => Check::warn(
            "sshd.root_login",
            format!("PermitRootLogin {v}: root may log in with a password"),
            format!(
                "PermitRootLogin prohibit-password (or no) in {}",
                f.fix_file
            ),
        ),
    })
}

/// `sshd.empty_passwords`.
fn empty_passwords_check(f: &Facts) -> Check {
    match f.t.yes("permitemptypasswords") {
        Some(true) => Check::fail(
            "sshd.empty_passwords",
            "PermitEmptyPasswords yes: accounts without a password log in with none",
            format!("PermitEmptyPasswords no in {}", f.fix_file),
        ),
        _ => Check::ok("sshd.empty_passwords", "PermitEmptyPasswords no"),
    }
}

/// `sshd.use_pam`: without PAM, pam_keyward never runs.
fn use_pam_check(f: &Facts) -> Check {
    if use_pam(f) {
        Check::ok("sshd.use_pam", "UsePAM yes")
    } else {
        Check::warn(
            "sshd.use_pam",
            "UsePAM no: pam_keyward never runs (no block of passwords by PAM, no session audit of the key used)",
            format!("UsePAM yes in {}, with pam_keyward in {}", f.fix_file, f.pam_file),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::sshd::fixtures::*;
    use crate::doctor::sshd::{command_checks, command_user_check};
    use crate::report::Status;
    use crate::sshd::SshdT;

    #[test]
    fn healthy_command() {
        let t = SshdT::parse(T92);
        let cfg = config(false);
        let checks = with(&t, Some(&cfg), Some(true), command_checks);
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        assert_eq!(
            with(&t, Some(&cfg), Some(true), command_user_check).status,
            Status::Ok
        );
        let auth = with(&t, Some(&cfg), Some(true), auth_checks);
        assert!(auth.iter().all(|c| c.status == Status::Ok), "{auth:?}");
    }

    #[test]
    fn names_the_file_that_sets_the_value() {
        let t = replace("passwordauthentication", "yes");
        let cloud = |kw: &str| {
            (kw == "passwordauthentication")
                .then(|| "/etc/ssh/sshd_config.d/50-cloud-init.conf line 1".to_string())
        };
        let c = with(&t, None, Some(false), |f| {
            let f = Facts {
                set_at: &cloud,
                ..*f
            };
            password_check(&f)
        });
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found
                .contains("(set in /etc/ssh/sshd_config.d/50-cloud-init.conf line 1)"),
            "{c:?}"
        );
        let fix = c.fix.unwrap();
        assert!(
            fix.starts_with("PasswordAuthentication no at /etc/ssh/sshd_config.d/50-cloud-init.conf line 1, or in a file sshd reads before it"),
            "{fix}"
        );
        // set in the file doctor would fix anyway: the plain fix
        let ours = |_: &str| Some("/etc/ssh/sshd_config.d/keyward.conf line 3".to_string());
        let c = with(&t, None, Some(false), |f| {
            password_check(&Facts {
                set_at: &ours,
                ..*f
            })
        });
        assert!(c
            .fix
            .unwrap()
            .starts_with("PasswordAuthentication no in /etc/ssh/sshd_config.d/keyward.conf"));
    }

    #[test]
    fn password_rules_depend_on_pam() {
        let t = replace("passwordauthentication", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(true), auth_checks), "sshd.password"),
            Status::Ok
        );
        let c = with(&t, None, Some(false), auth_checks);
        assert_eq!(status_of(&c, "sshd.password"), Status::Fail);
        let t = SshdT::parse(
            &T92.replace("usepam yes", "usepam no")
                .replace("passwordauthentication no", "passwordauthentication yes"),
        );
        let c = with(&t, None, Some(true), auth_checks);
        assert_eq!(status_of(&c, "sshd.password"), Status::Fail);
        assert_eq!(status_of(&c, "sshd.use_pam"), Status::Warn);
        let t = replace("kbdinteractiveauthentication", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(false), auth_checks), "sshd.kbdint"),
            Status::Fail
        );
        let t = replace("permitemptypasswords", "yes");
        assert_eq!(
            status_of(
                &with(&t, None, Some(true), auth_checks),
                "sshd.empty_passwords"
            ),
            Status::Fail
        );
        let t = replace("permitrootlogin", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(true), auth_checks), "sshd.root_login"),
            Status::Warn
        );
        let t = replace(
            "authorizedkeysfile",
            ".ssh/authorized_keys .ssh/authorized_keys2",
        );
        let c = with(&t, None, Some(true), auth_checks);
        assert_eq!(status_of(&c, "sshd.keys_file"), Status::Warn);
    }
}
