//! Certificate logins: the `sshd.principals*` and `sshd.trusted_ca` checks
//! and `config.principals_urls`, one function per check id. Pure: `sshd -T`
//! comes in [`super::sshd::Facts`], the configuration files sshd read (to
//! find the pre-9.4 order trap) and the CA file probe in [`Wiring`].

use crate::config::Config;
use crate::entry::Kind;
use crate::principals::CertInfo;
use crate::report::Check;
use crate::sshd::{
    argv_split, order_trap, principals_call, principals_token_supported, Directive, NotKeys,
    Version,
};

use super::command;
use super::sshd::Facts;

/// What the principals rules need besides `sshd -T`.
pub struct Wiring<'a> {
    /// sshd's configuration files in the order sshd reads them.
    pub directives: &'a [Directive],
    /// Reads a TrustedUserCAKeys file: the number of CA keys in it.
    pub ca_keys: &'a dyn Fn(&str) -> Result<usize, String>,
}

/// The line to write, with this program and config.
fn example(argv0: &str, config: Option<&str>) -> String {
    let config = match config {
        Some(c) if c != crate::config::DEFAULT_PATH => format!(" --config {c}"),
        _ => String::new(),
    };
    format!("AuthorizedPrincipalsCommand {argv0}{config} principals %u uid=%U fp=%f ca=%F id=%i serial=%s")
}

/// The AuthorizedPrincipalsCommand when it runs `keyward principals`.
struct Apc {
    line: String,
    argv0: String,
    args: Vec<String>,
    config: Option<String>,
}

/// Every certificate-login check, in report order.
pub fn checks(f: &Facts, w: &Wiring) -> Vec<Check> {
    let apc = match f.t.set("authorizedprincipalscommand") {
        Some(line) => line,
        // TrustedUserCAKeys without keyward: `super::auth` warns.
        None => return vec![unset_check(f, w)],
    };
    let apc = match read_command(f, apc) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return vec![Check::ok(
                "sshd.principals",
                format!("AuthorizedPrincipalsCommand {apc} (not keyward: its principals are not checked here)"),
            )]
        }
        Err(c) => return vec![c],
    };
    let mut out = vec![call_check(f, &apc)];
    out.push(tokens_check(f, &apc));
    out.push(user_check(f));
    out.push(trusted_ca_check(f, w));
    if let Some(c) = f.keyward {
        out.push(urls_check(c, &apc));
    }
    out
}

/// `sshd.principals` when sshd shows no AuthorizedPrincipalsCommand: the
/// pre-9.4 trap when a file sets it after AuthorizedKeysCommand.
fn unset_check(f: &Facts, w: &Wiring) -> Check {
    let set_in_files = w
        .directives
        .iter()
        .find(|d| d.keyword == "authorizedprincipalscommand");
    let before_9_4 = f.version.is_none_or(|v| v < Version { major: 9, minor: 4 });
    let ver = f
        .version
        .map(|v| format!("OpenSSH {v}"))
        .unwrap_or_else(|| "this sshd (version unknown)".into());
    match (order_trap(w.directives), set_in_files) {
        (Some((p, k)), _) if before_9_4 => Check::fail(
            "sshd.principals",
            format!(
                "sshd ignores AuthorizedPrincipalsCommand ({}): AuthorizedKeysCommand comes first ({}), and {ver} then drops it silently (servconf.c tested the wrong field before 9.4); sshd -T shows authorizedprincipalscommand none, so certificates are matched against the account name only",
                p.loc, k.loc
            ),
            format!(
                "move the AuthorizedPrincipalsCommand and AuthorizedPrincipalsCommandUser lines above AuthorizedKeysCommand ({}), or into a drop-in read before it (e.g. /etc/ssh/sshd_config.d/00-principals.conf); then sshd -t and reload sshd",
                k.loc
            ),
        ),
        (_, Some(d)) if d.in_match => Check::ok(
            "sshd.principals",
            format!(
                "AuthorizedPrincipalsCommand is set only inside a Match block ({}): run keyward doctor --user USER to see it for one account",
                d.loc
            ),
        ),
        (_, Some(d)) => Check::fail(
            "sshd.principals",
            format!(
                "{} sets AuthorizedPrincipalsCommand but sshd -T shows none: sshd does not use it",
                d.loc
            ),
            "check `sshd -T | grep -i authorizedprincipals` and the order of the files sshd includes".to_string(),
        ),
        (_, None) => match f.t.set("trustedusercakeys") {
            Some(ca) => Check::ok(
                "sshd.principals",
                format!("TrustedUserCAKeys {ca} without AuthorizedPrincipalsCommand: sshd accepts a certificate whose principals include the account name (keyward is not asked)"),
            ),
            None => Check::ok(
                "sshd.principals",
                "no TrustedUserCAKeys: certificate logins are not configured",
            ),
        },
    }
}

/// Whether sshd's AuthorizedPrincipalsCommand is a `keyward principals`
/// call (keyward then decides which certificates log in).
pub fn keyward_asked(t: &crate::sshd::SshdT) -> bool {
    t.set("authorizedprincipalscommand")
        .and_then(|l| argv_split(l).ok())
        .is_some_and(|argv| {
            let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
            principals_call(&args).is_ok()
        })
}

/// Splits the command; Ok(None) when it is not keyward at all.
fn read_command(f: &Facts, line: &str) -> Result<Option<Apc>, Check> {
    const ID: &str = "sshd.principals";
    const KW: &str = "AuthorizedPrincipalsCommand";
    let file = f.fix_file;
    let c = command::split(ID, KW, line, file)?;
    let call = principals_call(&c.args());
    if !command::is_named_keyward(&c.argv0) && !matches!(call, Ok(_) | Err(NotKeys::Arity(_))) {
        return Ok(None);
    }
    let good = format!("{} in {file}", example("/usr/sbin/keyward", None));
    command::absolute(ID, KW, &c, &good)?;
    Ok(Some(Apc {
        config: call.ok().and_then(|c| c.config.map(str::to_owned)),
        line: c.line,
        args: c.args,
        argv0: c.argv0,
    }))
}

/// `sshd.principals`: `keyward principals %u` with arguments keyward takes.
fn call_check(f: &Facts, a: &Apc) -> Check {
    let fix = format!(
        "{} in {}",
        example(&a.argv0, a.config.as_deref()),
        f.fix_file
    );
    let fail = |found: String| Check::fail("sshd.principals", found, fix.clone());
    let args: Vec<&str> = a.args.iter().map(String::as_str).collect();
    let call = match principals_call(&args) {
        Ok(c) => c,
        Err(NotKeys::Arity(_)) => {
            return fail("AuthorizedPrincipalsCommand passes nothing as the account: keyward needs %u".into())
        }
        Err(NotKeys::Option(v)) => {
            return fail(format!("AuthorizedPrincipalsCommand passes {v:?}, which keyward reads as an option: every certificate login fails"))
        }
        Err(NotKeys::Subcommand(_)) => {
            return fail(format!(
                "AuthorizedPrincipalsCommand {:?} does not run `keyward principals`",
                a.line
            ))
        }
    };
    if call.user != "%u" {
        return fail(format!(
            "AuthorizedPrincipalsCommand passes {:?} as the account: keyward needs %u",
            call.user
        ));
    }
    if let Err(e) = CertInfo::parse(&call.rest) {
        return fail(format!(
            "AuthorizedPrincipalsCommand: {e}: keyward fails closed on every certificate login"
        ));
    }
    Check::ok(
        "sshd.principals",
        format!("AuthorizedPrincipalsCommand {}", a.line),
    )
}

/// `sshd.principals_tokens`: only tokens this sshd expands.
fn tokens_check(f: &Facts, a: &Apc) -> Check {
    let (bad, unsure) = command::unexpanded_tokens(&a.args, f.version, principals_token_supported);
    let fix = format!(
        "{} in {}",
        example(&a.argv0, a.config.as_deref()),
        f.fix_file
    );
    if !bad.is_empty() || !unsure.is_empty() {
        let (status_fail, list) = if bad.is_empty() {
            (false, unsure)
        } else {
            (true, bad)
        };
        let found = format!(
            "{} in AuthorizedPrincipalsCommand: not expanded by this sshd (%C and %D need OpenSSH 9.4): sshd fails every connection",
            list.join(" ")
        );
        return if status_fail {
            Check::fail("sshd.principals_tokens", found, fix)
        } else {
            Check::warn("sshd.principals_tokens", found, fix)
        };
    }
    Check::ok(
        "sshd.principals_tokens",
        "every token of AuthorizedPrincipalsCommand is one this sshd expands",
    )
}

/// `sshd.principals_user`: sshd refuses the command without its user.
fn user_check(f: &Facts) -> Check {
    let file = f.fix_file;
    let user = command::run_as(
        "sshd.principals_user",
        "AuthorizedPrincipalsCommandUser",
        f.t,
        f.user_exists,
        file,
    );
    match user {
        Err(c) => c,
        Ok("root") => Check::warn(
            "sshd.principals_user",
            "AuthorizedPrincipalsCommandUser root: keyward drops to the [cache] owner anyway; the owner itself is enough",
            format!("set AuthorizedPrincipalsCommandUser keyward in {file}"),
        ),
        Ok(u) => Check::ok(
            "sshd.principals_user",
            format!("AuthorizedPrincipalsCommandUser {u}"),
        ),
    }
}

/// `sshd.trusted_ca`: the CA keys sshd checks certificates against.
fn trusted_ca_check(f: &Facts, w: &Wiring) -> Check {
    let file = f.fix_file;
    let Some(path) = f.t.set("trustedusercakeys") else {
        return Check::warn(
            "sshd.trusted_ca",
            "TrustedUserCAKeys is not set: sshd accepts no user certificate, so it never asks keyward for principals",
            format!("add `TrustedUserCAKeys /etc/ssh/user_ca.pub` (your user CA's public key) to {file}"),
        );
    };
    match (w.ca_keys)(path) {
        Ok(0) => Check::fail(
            "sshd.trusted_ca",
            format!("TrustedUserCAKeys {path} holds no public key: sshd accepts no certificate"),
            format!("put your user CA's public key (ssh-keygen -y -f CA) in {path}"),
        ),
        Ok(n) => Check::ok(
            "sshd.trusted_ca",
            format!("TrustedUserCAKeys {path}: {n} CA key(s)"),
        ),
        Err(e) => Check::fail(
            "sshd.trusted_ca",
            format!("TrustedUserCAKeys {path}: {e}: sshd accepts no certificate"),
            format!("create {path} with your user CA's public key, or fix the path in {file}"),
        ),
    }
}

/// `config.principals_urls`: keyward knows where the principals files are.
fn urls_check(c: &Config, a: &Apc) -> Check {
    match c.directory.templates(Kind::Principals) {
        Ok(t) if t.is_empty() => Check::fail(
            "config.principals_urls",
            "no [directory] urls: keyward has no principals to give sshd",
            "set [directory] urls (principals files are <url without .keys>.principals) or principals_urls",
        ),
        Ok(t) => Check::ok(
            "config.principals_urls",
            format!(
                "principals from {}",
                t.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ),
        Err(e) => Check::fail(
            "config.principals_urls",
            format!("{e}: {} fails closed on every certificate login", a.argv0),
            "set [directory] principals_urls = [\"https://…/{user}.principals\"]",
        ),
    }
}

/// Reads a TrustedUserCAKeys file the way sshd does: one public key per
/// line, comments and blank lines skipped.
pub fn count_ca_keys(path: &str) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|l| matches!(crate::keyline::parse_line(l), Ok(Some(k)) if k.options.is_empty()))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshd::{Loc, SshdT};
    use std::path::{Path, PathBuf};

    fn facts<'a>(t: &'a SshdT, version: Option<Version>) -> Facts<'a> {
        Facts {
            t,
            version,
            fix_file: "/etc/ssh/sshd_config.d/keyward.conf",
            this_exe: None,
            same_file: &|a: &Path, b: &Path| a == b,
            doctor_config: Path::new(crate::config::DEFAULT_PATH),
            keyward: None,
            user_exists: &|u: &str| Some(u == "keyward" || u == "root"),
            pam_blocks: None,
            pam_file: "/etc/pam.d/sshd",
            set_at: &|_| None,
        }
    }

    fn dir(file: &str, line: usize, kw: &str, in_match: bool) -> Directive {
        Directive {
            loc: Loc {
                file: PathBuf::from(file),
                line,
            },
            keyword: kw.into(),
            value: String::new(),
            in_match,
        }
    }

    const V92: Option<Version> = Some(Version { major: 9, minor: 2 });
    const V94: Option<Version> = Some(Version { major: 9, minor: 4 });

    fn ca(_: &str) -> Result<usize, String> {
        Ok(1)
    }

    fn run(t: &str, v: Option<Version>, directives: &[Directive]) -> Vec<Check> {
        let t = SshdT::parse(t);
        let w = Wiring {
            directives,
            ca_keys: &ca,
        };
        checks(&facts(&t, v), &w)
    }

    fn by_id<'a>(cs: &'a [Check], id: &str) -> &'a Check {
        cs.iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} in {cs:#?}"))
    }

    #[test]
    fn the_order_trap_is_named_with_both_lines() {
        let ds = [
            dir(
                "/etc/ssh/sshd_config.d/keyward.conf",
                1,
                "authorizedkeyscommand",
                false,
            ),
            dir(
                "/etc/ssh/sshd_config.d/keyward.conf",
                3,
                "authorizedprincipalscommand",
                false,
            ),
        ];
        let t = "authorizedprincipalscommand none\nauthorizedprincipalscommanduser keyward\n";
        let cs = run(t, V92, &ds);
        let c = by_id(&cs, "sshd.principals");
        assert_eq!(c.status, crate::report::Status::Fail, "{c:?}");
        assert!(
            c.found.contains("keyward.conf:3") && c.found.contains("keyward.conf:1"),
            "{c:?}"
        );
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("above AuthorizedKeysCommand"));
        // Unknown version: assume the bug.
        assert_eq!(run(t, None, &ds)[0].status, crate::report::Status::Fail);
        // 9.4 fixed it: a none there is something else.
        let c = &run(t, V94, &ds)[0];
        assert!(c.found.contains("sshd does not use it"), "{c:?}");
        // Nothing set anywhere: informational.
        let c = &run("trustedusercakeys /etc/ssh/ca.pub\n", V92, &[])[0];
        assert_eq!(c.status, crate::report::Status::Ok);
        assert!(c.found.contains("account name"), "{c:?}");
    }

    #[test]
    fn a_keyward_principals_command_is_checked() {
        let good = "authorizedprincipalscommand /usr/sbin/keyward principals %u uid=%U fp=%f ca=%F id=%i serial=%s\nauthorizedprincipalscommanduser keyward\ntrustedusercakeys /etc/ssh/ca.pub\n";
        let cs = run(good, V92, &[]);
        for c in &cs {
            assert_eq!(c.status, crate::report::Status::Ok, "{c:?}");
        }
        let ids: Vec<&str> = cs.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sshd.principals",
                "sshd.principals_tokens",
                "sshd.principals_user",
                "sshd.trusted_ca"
            ]
        );
        let bad = |t: &str| run(t, V92, &[]);
        let c = &bad("authorizedprincipalscommand /usr/sbin/keyward principals %U\n")[0];
        assert!(c.found.contains("needs %u"), "{c:?}");
        let c = &bad("authorizedprincipalscommand /usr/sbin/keyward principals %u key=%i\n")[0];
        assert!(c.found.contains("unknown argument"), "{c:?}");
        let c = &bad("authorizedprincipalscommand /usr/sbin/keyward keys %u\n")[0];
        assert!(
            c.found.contains("does not run `keyward principals`"),
            "{c:?}"
        );
        let cs = bad("authorizedprincipalscommand /usr/sbin/keyward principals %u id=%C\n");
        assert_eq!(
            by_id(&cs, "sshd.principals_tokens").status,
            crate::report::Status::Fail
        );
        let cs = bad("authorizedprincipalscommand /usr/sbin/keyward principals %u\n");
        assert_eq!(
            by_id(&cs, "sshd.principals_user").status,
            crate::report::Status::Fail
        );
        assert_eq!(
            by_id(&cs, "sshd.trusted_ca").status,
            crate::report::Status::Warn
        );
        let c = &bad("authorizedprincipalscommand /usr/local/bin/other %u\n")[0];
        assert!(c.found.contains("not keyward"), "{c:?}");
    }
}
