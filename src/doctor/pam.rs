//! The PAM stack for sshd: is pam_keyward in `auth` before anything that
//! checks a password or can skip it, and in `session` before anything that
//! lets users rewrite SSH_AUTH_INFO_0? The rules are pure (over
//! [`pamfile`](super::pamfile) lines); [`checks`] reads the files.

use std::path::{Path, PathBuf};

use super::pamfile::{flatten, load_include, ModLine};
use super::perms;
use crate::os::safepath::Kind;
use crate::report::{Check, Status};

/// Auth modules that never accept a password by themselves: they may come
/// before pam_keyward without letting a password in.
const HARMLESS: &[&str] = &[
    "pam_env.so",
    "pam_faildelay.so",
    "pam_nologin.so",
    "pam_warn.so",
    "pam_deny.so",
    "pam_securetty.so",
    "pam_access.so",
    "pam_listfile.so",
    "pam_shells.so",
    "pam_succeed_if.so",
    "pam_localuser.so",
    "pam_faillock.so",
    "pam_tally2.so",
    "pam_group.so",
    "pam_time.so",
    "pam_echo.so",
    "pam_sepermit.so",
    "pam_selinux.so",
    "pam_loginuid.so",
    "pam_cap.so",
    "pam_keyinit.so",
    "pam_limits.so",
    "pam_motd.so",
    "pam_mail.so",
    "pam_umask.so",
];

/// What the auth stack does about passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStack {
    pub keyward: Option<ModLine>,
    /// The first module that could accept a password.
    pub first_password: Option<ModLine>,
    pub keyward_first: bool,
    /// A line before pam_keyward that can end the stack with success
    /// (`sufficient`, `success=done`) or jump over pam_keyward.
    pub bypass: Option<ModLine>,
}

pub fn is_keyward(m: &ModLine) -> bool {
    m.base() == "pam_keyward.so"
}

pub fn analyse_auth(lines: &[ModLine]) -> AuthStack {
    let keyward_at = lines.iter().position(is_keyward);
    let password_at = lines
        .iter()
        .position(|m| !is_keyward(m) && !HARMLESS.contains(&m.base()));
    let bypass = keyward_at.and_then(|k| {
        (0..k)
            .find(|&i| !lines[i].substack && can_bypass(lines, i, k))
            .map(|i| lines[i].clone())
    });
    AuthStack {
        keyward: keyward_at.map(|i| lines[i].clone()),
        first_password: password_at.map(|i| lines[i].clone()),
        bypass,
        keyward_first: match (keyward_at, password_at) {
            (Some(k), Some(p)) => k < p,
            (Some(_), None) => true,
            _ => false,
        },
    }
}

/// The `value=action` pairs of a `[...]` control (none for a keyword).
fn actions(control: &str) -> Vec<(&str, &str)> {
    control
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
        .map(|c| {
            c.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect()
        })
        .unwrap_or_default()
}

/// How many modules a jump from `lines[from]` must skip to pass
/// `lines[to]` (a substack counts as one module, as PAM counts it).
fn modules_to(lines: &[ModLine], from: usize, to: usize) -> usize {
    let mut n = 0;
    let mut prev_substack = None;
    for m in &lines[from + 1..=to] {
        let unit = m.substack.then_some(m.top_line);
        if unit.is_none() || unit != prev_substack {
            n += 1;
        }
        prev_substack = unit;
    }
    n
}

/// Whether `lines[i]` (before pam_keyward at `k`) can let the stack
/// succeed without pam_keyward: `sufficient` and `done` on success end the
/// stack; a jump of `N` on any result that reaches `k` skips pam_keyward.
fn can_bypass(lines: &[ModLine], i: usize, k: usize) -> bool {
    let control = lines[i].control.as_str();
    if control == "sufficient" {
        return true;
    }
    let acts = actions(control);
    let on = |key: &str| acts.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    // `default` covers every value not listed, success included.
    if on("success").or_else(|| on("default")) == Some("done") {
        return true;
    }
    let reach = modules_to(lines, i, k);
    acts.iter()
        .any(|(_, v)| v.parse::<usize>().is_ok_and(|n| n >= reach))
}

/// How a control value treats a failure of pam_keyward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// requisite / `default=die`: the stack stops at once.
    Stops,
    /// required / `default=bad`: the stack fails, but later modules still
    /// prompt for (and check) the password first.
    FailsLater,
    /// sufficient / optional / anything else: a refusal is ignored.
    No,
}

pub fn blocking(control: &str) -> Blocking {
    match control {
        "requisite" => Blocking::Stops,
        "required" => Blocking::FailsLater,
        c if c.starts_with('[') => {
            let acts = actions(c);
            let action = |key: &str| acts.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            match action("auth_err").or_else(|| action("default")) {
                Some("die") => Blocking::Stops,
                Some("bad") => Blocking::FailsLater,
                _ => Blocking::No,
            }
        }
        _ => Blocking::No,
    }
}

impl AuthStack {
    /// Whether password / keyboard-interactive attempts are refused.
    pub fn blocks(&self) -> bool {
        match &self.keyward {
            Some(k) => {
                self.keyward_first
                    && self.bypass.is_none()
                    && blocking(&k.control) != Blocking::No
                    && !k.args.iter().any(|a| a == "audit_only")
            }
            None => false,
        }
    }
}

/// The `pam.stack` check.
pub fn stack_check(file: &str, s: &AuthStack) -> Check {
    let Some(k) = &s.keyward else {
        let before = s
            .first_password
            .as_ref()
            .map(|p| format!(" (before line {}, where {} comes in)", p.top_line, p.base()))
            .unwrap_or_default();
        return Check::fail(
            "pam.stack",
            format!("pam_keyward.so is not in the auth stack of {file}: PAM accepts passwords and keyboard-interactive answers"),
            format!("add `auth requisite pam_keyward.so` as the first auth line of {file}{before}"),
        );
    };
    order_problem(file, s, k)
        .or_else(|| control_problem(k))
        .unwrap_or_else(|| {
            let after = s
                .first_password
                .as_ref()
                .map(|p| format!(", before {} ({})", p.base(), p.origin))
                .unwrap_or_default();
            Check::ok(
                "pam.stack",
                format!("pam_keyward.so ({}) at {}{after}", k.control, k.origin),
            )
        })
}

/// A password module, or a line that can skip pam_keyward, before it.
fn order_problem(file: &str, s: &AuthStack, k: &ModLine) -> Option<Check> {
    if !s.keyward_first {
        let p = s.first_password.as_ref()?;
        return Some(Check::fail(
            "pam.stack",
            format!(
                "pam_keyward.so ({}) comes after {} ({}): the password is checked before keyward can refuse it",
                k.origin,
                p.base(),
                p.origin
            ),
            format!("move `auth {} pam_keyward.so` above line {} of {file}", k.control, p.top_line),
        ));
    }
    let b = s.bypass.as_ref()?;
    Some(Check::fail(
        "pam.stack",
        format!(
            "`{}` ({}) comes before pam_keyward.so ({}) and can end the auth stack with success or jump over pam_keyward: a password is then accepted without keyward refusing it",
            b.text(),
            b.origin,
            k.origin
        ),
        format!(
            "move `auth {} pam_keyward.so` above line {} of {file}, so nothing before it can skip it (exempt users with pam_keyward's allow_user=/allow_group= instead)",
            k.control, b.top_line
        ),
    ))
}

/// pam_keyward's own line: a control that ignores its refusal, or
/// audit_only.
fn control_problem(k: &ModLine) -> Option<Check> {
    let args: Vec<&str> = k
        .args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "audit_only")
        .collect();
    let good = format!("auth requisite pam_keyward.so {}", args.join(" "));
    let fix = format!("`{}` at {}", good.trim_end(), k.origin);
    match blocking(&k.control) {
        Blocking::No => Some(Check::fail(
            "pam.stack",
            format!("pam_keyward.so is `{}` at {}: its refusal is ignored and the next module checks the password", k.control, k.origin),
            fix,
        )),
        Blocking::FailsLater => Some(Check::warn(
            "pam.stack",
            format!("pam_keyward.so is `{}` at {}: the login fails, but later modules still prompt for and check the password", k.control, k.origin),
            fix,
        )),
        Blocking::Stops if k.args.len() > args.len() => Some(Check::warn(
            "pam.stack",
            format!("pam_keyward.so at {} has audit_only: it logs what it would block and blocks nothing", k.origin),
            format!("remove audit_only at {} once the log shows only expected blocks", k.origin),
        )),
        Blocking::Stops => None,
    }
}

/// The `pam.session` check: `session required pam_keyward.so require_publickey`.
pub fn session_check(file: &str, session: &[ModLine]) -> Check {
    let keyward_at = session.iter().position(is_keyward);
    let env_at = session
        .iter()
        .position(|m| m.base() == "pam_env.so" && m.args.iter().any(|a| a == "user_readenv=1"));
    if let (Some(k), Some(e)) = (keyward_at, env_at) {
        if e < k {
            let (kw, env) = (&session[k], &session[e]);
            return Check::fail(
                "pam.session",
                format!(
                    "pam_keyward.so ({}) comes after `{}` ({}): a user's ~/.pam_environment can rewrite SSH_AUTH_INFO_0 before pam_keyward reads it (require_publickey fooled, the logged key forged)",
                    kw.origin,
                    env.text(),
                    env.origin
                ),
                format!(
                    "move `{}` above line {} of {file} (before any pam_env line)",
                    kw.text(),
                    env.top_line
                ),
            );
        }
    }
    match keyward_at.map(|i| &session[i]) {
        Some(m) if m.args.iter().any(|a| a == "require_publickey") => Check::ok(
            "pam.session",
            format!("pam_keyward.so require_publickey in the session stack ({})", m.origin),
        ),
        Some(m) => Check::ok(
            "pam.session",
            format!("pam_keyward.so in the session stack ({}), without require_publickey", m.origin),
        ),
        None => Check::warn(
            "pam.session",
            format!("no pam_keyward.so in the session stack of {file}: the key that opened a session is not logged"),
            format!("add `session required pam_keyward.so require_publickey` to {file} (leave it out if break-glass password logins need a shell)"),
        ),
    }
}

/// Directories PAM loads modules from, by distribution.
pub fn security_dirs() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    vec![
        PathBuf::from(format!("/usr/lib/{arch}-linux-gnu/security")),
        PathBuf::from(format!("/lib/{arch}-linux-gnu/security")),
        PathBuf::from("/usr/lib64/security"),
        PathBuf::from("/lib64/security"),
        PathBuf::from("/usr/lib/security"),
        PathBuf::from("/lib/security"),
    ]
}

/// Where `module` (as written in the stack) is loaded from, if anywhere.
pub fn find_module(module: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if module.starts_with('/') {
        let p = PathBuf::from(module);
        return p.is_file().then_some(p);
    }
    dirs.iter().map(|d| d.join(module)).find(|p| p.is_file())
}

/// `pam.stack`, `pam.session` and `pam.module` for sshd's PAM file, and
/// whether pam_keyward blocks passwords there (None: unknown).
pub fn checks(pam_file: &Path, use_pam: Option<bool>) -> (Option<bool>, Vec<Check>) {
    let file = pam_file.display().to_string();
    let text = match std::fs::read_to_string(pam_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let why = format!("skipped: needs root ({file}: {e})");
            return (None, vec![Check::skip("pam.stack", why)]);
        }
        Err(e) => {
            let missing = Check::fail(
                "pam.stack",
                format!("{file}: {e}"),
                format!("create {file} with `auth requisite pam_keyward.so` before the password modules"),
            );
            return (Some(false), vec![missing]);
        }
    };
    let label = pam_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    let auth = flatten("auth", &label, &text, &load_include, 2);
    let session = flatten("session", &label, &text, &load_include, 2);
    let stack = analyse_auth(&auth);
    let mut out = Vec::new();
    for mut check in [stack_check(&file, &stack), session_check(&file, &session)] {
        if use_pam == Some(false) && check.status == Status::Fail {
            // sshd does not use PAM: sshd.password already says what matters.
            check.status = Status::Warn;
            check.found = format!("(UsePAM no: sshd does not use it) {}", check.found);
        }
        out.push(check);
    }
    let named: Vec<&ModLine> = auth
        .iter()
        .chain(&session)
        .filter(|m| is_keyward(m))
        .collect();
    out.push(module_check(&file, &named));
    (Some(stack.blocks()), out)
}

/// `pam.module`: the module the stack names is installed, and as safe as
/// sshd's own files (PAM loads it into sshd as root).
fn module_check(file: &str, named: &[&ModLine]) -> Check {
    let module = named
        .first()
        .map(|m| m.module.clone())
        .unwrap_or_else(|| "pam_keyward.so".into());
    let dirs = security_dirs();
    let where_: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let where_ = where_.join(", ");
    match find_module(&module, &dirs) {
        Some(p) => {
            let unsafe_ = perms::stat_chain(&p)
                .ok()
                .and_then(|c| perms::check_chain(&c, Kind::File, &[0], "root"));
            match unsafe_ {
                Some(f) => Check::fail("pam.module", format!("{}: sshd loads it as root", f.found), f.fix),
                None => Check::ok("pam.module", format!("{} installed", p.display())),
            }
        }
        None if !named.is_empty() => Check::fail(
            "pam.module",
            format!("{module} is in {file} but not installed (looked in {where_}): PAM cannot load it, the stack errors and nothing is logged"),
            "install the keyward package (pam_keyward.so, root 0644, in the security directory)",
        ),
        None => Check::warn(
            "pam.module",
            format!("pam_keyward.so is not installed (looked in {where_})"),
            "install the keyward package",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMON_AUTH: &str = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n";

    fn load(name: &str) -> Option<String> {
        match name {
            "common-auth" => Some(COMMON_AUTH.into()),
            "common-session" => {
                Some("session required pam_unix.so\n-session optional pam_systemd.so\n".into())
            }
            _ => None,
        }
    }

    fn stack(text: &str) -> AuthStack {
        analyse_auth(&flatten("auth", "sshd", text, &load, 3))
    }

    const DEBIAN: &str = "# PAM configuration for the Secure Shell service\n\n# Standard Un*x authentication.\n@include common-auth\naccount    required     pam_nologin.so\n@include common-account\n";

    #[test]
    fn debian_default_has_no_keyward() {
        let s = stack(DEBIAN);
        assert!(s.keyward.is_none() && !s.blocks());
        let p = s.first_password.as_ref().unwrap();
        assert_eq!(p.base(), "pam_unix.so");
        assert_eq!(p.origin, "common-auth:1 via include at sshd:4");
        assert_eq!(p.top_line, 4);
        let c = stack_check("/etc/pam.d/sshd", &s);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("before line 4"));
    }

    #[test]
    fn keyward_first_blocks() {
        let s = stack(&format!(
            "auth  requisite  pam_keyward.so allow_group=breakglass\n{DEBIAN}"
        ));
        assert!(s.blocks());
        let c = stack_check("/etc/pam.d/sshd", &s);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.found.contains("sshd:1"));
    }

    #[test]
    fn harmless_modules_may_come_first() {
        let s = stack(&format!("auth required pam_env.so\nauth optional pam_faildelay.so delay=1\n-auth requisite /usr/lib/x86_64-linux-gnu/security/pam_keyward.so\n{DEBIAN}"));
        assert!(s.blocks());
    }

    #[test]
    fn keyward_after_common_auth() {
        let s = stack(&format!("{DEBIAN}auth requisite pam_keyward.so\n"));
        assert!(!s.blocks());
        let c = stack_check("/etc/pam.d/sshd", &s);
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("comes after pam_unix.so"), "{}", c.found);
        assert_eq!(
            c.fix.as_deref(),
            Some("move `auth requisite pam_keyward.so` above line 4 of /etc/pam.d/sshd")
        );
    }

    #[test]
    fn controls() {
        assert_eq!(blocking("requisite"), Blocking::Stops);
        assert_eq!(blocking("required"), Blocking::FailsLater);
        assert_eq!(blocking("sufficient"), Blocking::No);
        assert_eq!(blocking("optional"), Blocking::No);
        assert_eq!(blocking("[success=ok default=die]"), Blocking::Stops);
        assert_eq!(blocking("[default=bad]"), Blocking::FailsLater);
        assert_eq!(blocking("[success=1 default=ignore]"), Blocking::No);
        let s = stack(&format!(
            "auth [success=ok default=die] pam_keyward.so\n{DEBIAN}"
        ));
        assert!(s.blocks());
        let s = stack(&format!("auth sufficient pam_keyward.so\n{DEBIAN}"));
        assert!(!s.blocks());
        assert_eq!(stack_check("f", &s).status, Status::Fail);
        let s = stack(&format!("auth required pam_keyward.so\n{DEBIAN}"));
        assert!(s.blocks());
        assert_eq!(stack_check("f", &s).status, Status::Warn);
        let s = stack(&format!(
            "auth requisite pam_keyward.so audit_only\n{DEBIAN}"
        ));
        assert!(!s.blocks());
        assert_eq!(stack_check("f", &s).status, Status::Warn);
    }

    #[test]
    fn include_and_substack_by_type() {
        let text = "auth requisite pam_keyward.so\nauth substack common-auth\nsession include common-session\n";
        let auth = flatten("auth", "sshd", text, &load, 3);
        assert_eq!(auth.len(), 4);
        let session = flatten("session", "sshd", text, &load, 3);
        assert_eq!(
            session.iter().map(|m| m.base()).collect::<Vec<_>>(),
            vec!["pam_unix.so", "pam_systemd.so"]
        );
        // an unreadable include is assumed to check passwords
        let s = stack("@include nowhere\nauth requisite pam_keyward.so\n");
        assert!(!s.blocks());
        assert_eq!(s.first_password.unwrap().module, "<include nowhere>");
    }

    #[test]
    fn session_rules() {
        let l = flatten(
            "session",
            "sshd",
            "session required pam_keyward.so require_publickey\n",
            &load,
            1,
        );
        assert_eq!(session_check("f", &l).status, Status::Ok);
        assert_eq!(session_check("f", &[]).status, Status::Warn);
    }

    #[test]
    fn sufficient_or_jump_before_keyward_is_a_bypass() {
        // issue 11: a harmless module is harmless only when it cannot end
        // the stack with success or jump over pam_keyward
        for first in [
            "auth sufficient pam_listfile.so item=user sense=allow file=/etc/ssh/ok onerr=fail",
            "auth [success=1 default=ignore] pam_succeed_if.so user ingroup wheel",
            "auth [success=done default=ignore] pam_succeed_if.so uid < 1000",
            "auth [default=done] pam_access.so",
        ] {
            let s = stack(&format!(
                "{first}
auth requisite pam_keyward.so
{DEBIAN}"
            ));
            assert!(!s.blocks(), "{first}");
            let c = stack_check("/etc/pam.d/sshd", &s);
            assert_eq!(c.status, Status::Fail, "{first}: {c:?}");
            let module = first
                .split_whitespace()
                .find(|w| w.ends_with(".so"))
                .unwrap();
            assert!(
                c.found.contains(module) && c.found.contains("sshd:1"),
                "{}",
                c.found
            );
            assert!(c.found.contains("pam_keyward.so (sshd:2)"), "{}", c.found);
            assert!(
                c.fix.as_deref().unwrap().starts_with(
                    "move `auth requisite pam_keyward.so` above line 1 of /etc/pam.d/sshd"
                ),
                "{c:?}"
            );
        }
        // the same line in an @include'd file before pam_keyward counts too
        let load2 = |name: &str| match name {
            "site-auth" => Some("auth sufficient pam_succeed_if.so user = deploy\n".to_string()),
            other => load(other),
        };
        let lines = flatten(
            "auth",
            "sshd",
            &format!("auth required pam_env.so\n@include site-auth\nauth requisite pam_keyward.so\n{DEBIAN}"),
            &load2,
            3,
        );
        let s = analyse_auth(&lines);
        assert!(!s.blocks());
        let c = stack_check("/etc/pam.d/sshd", &s);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found.contains("site-auth:1 via include at sshd:2"),
            "{}",
            c.found
        );
        assert!(
            c.fix.as_deref().unwrap().contains("above line 2 of"),
            "{c:?}"
        );
        // inside a substack, `sufficient` ends only the substack
        let lines = flatten(
            "auth",
            "sshd",
            &format!("auth substack site-auth\nauth requisite pam_keyward.so\n{DEBIAN}"),
            &load2,
            3,
        );
        assert!(analyse_auth(&lines).blocks());
        // and a jump in the parent counts the substack as one module
        let lines = flatten(
            "auth",
            "sshd",
            &format!("auth [success=1 default=ignore] pam_succeed_if.so uid < 1000\nauth substack site-auth\nauth requisite pam_keyward.so\n{DEBIAN}"),
            &load2,
            3,
        );
        assert!(analyse_auth(&lines).blocks());
        // a jump that lands before pam_keyward skips nothing that matters
        let s = stack(&format!(
            "auth [success=1 default=ignore] pam_succeed_if.so uid < 1000\nauth required pam_faildelay.so delay=1\nauth requisite pam_keyward.so\n{DEBIAN}"
        ));
        assert!(s.blocks(), "{s:?}");
        assert_eq!(stack_check("f", &s).status, Status::Ok);
        // required / requisite / optional lines of harmless modules stay harmless
        let s = stack(&format!(
            "auth requisite pam_nologin.so\nauth required pam_succeed_if.so uid >= 1000\nauth optional pam_faildelay.so\nauth requisite pam_keyward.so\n{DEBIAN}"
        ));
        assert!(s.blocks(), "{s:?}");
    }

    #[test]
    fn user_readenv_before_keyward_session_is_flagged() {
        // issue 11: ~/.pam_environment can rewrite SSH_AUTH_INFO_0 before
        // pam_keyward reads it
        let text = "session required pam_env.so\nsession required pam_env.so user_readenv=1 envfile=/etc/default/locale\nsession required pam_keyward.so require_publickey\n";
        let l = flatten("session", "sshd", text, &load, 1);
        let c = session_check("/etc/pam.d/sshd", &l);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.found.contains("pam_env.so user_readenv=1") && c.found.contains("sshd:2"),
            "{}",
            c.found
        );
        assert!(c.found.contains("sshd:3"), "{}", c.found);
        assert_eq!(
            c.fix.as_deref(),
            Some("move `session required pam_keyward.so require_publickey` above line 2 of /etc/pam.d/sshd (before any pam_env line)")
        );
        // keyward first, or pam_env without user_readenv: fine
        let text = "session required pam_keyward.so require_publickey\nsession required pam_env.so user_readenv=1\n";
        let l = flatten("session", "sshd", text, &load, 1);
        assert_eq!(session_check("f", &l).status, Status::Ok);
        let text = "session required pam_env.so readenv=1\nsession required pam_keyward.so require_publickey\n";
        let l = flatten("session", "sshd", text, &load, 1);
        assert_eq!(session_check("f", &l).status, Status::Ok);
    }
}
