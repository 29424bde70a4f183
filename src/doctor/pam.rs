//! The PAM stack for sshd: is pam_keyward in `auth` before anything that
//! checks a password or can skip it, and in `session` before anything that
//! lets users rewrite SSH_AUTH_INFO_0? The rules are pure (over
//! [`pamfile`](super::pamfile) lines); [`checks`] reads the files.

use std::path::{Path, PathBuf};

use super::pamfile::{flatten, load_include, ModLine};
use super::pamincluded::{included_check, placement, read_pam_dir, REMOVAL_ORDER};
use super::perms;
use crate::os::safepath::Kind;
use crate::pam::args::{Args, KNOWN};
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

/// Whether pam_keyward's refusal holds in one stack (auth or session):
/// it is in the stack, nothing before it can end the stack with success
/// or jump over it, and its control does not ignore its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Index of the first pam_keyward line.
    pub at: Option<usize>,
    pub keyward: Option<ModLine>,
    /// A line before pam_keyward that can end the stack with success
    /// (`sufficient`, `success=done`) or jump over pam_keyward.
    pub bypass: Option<ModLine>,
    /// What pam_keyward's control does with its refusal.
    pub blocking: Blocking,
}

/// [`Reach`] of `lines`; `refusal` is the return value pam_keyward
/// refuses with in this stack (`auth_err`, `perm_denied`).
pub fn reach(lines: &[ModLine], refusal: &str) -> Reach {
    let at = lines.iter().position(is_keyward);
    let bypass = at.and_then(|k| {
        (0..k)
            .find(|&i| same_level(&lines[i], &lines[k]) && can_bypass(lines, i, k))
            .map(|i| lines[i].clone())
    });
    let keyward = at.map(|i| lines[i].clone());
    let blocking = keyward
        .as_ref()
        .map_or(Blocking::No, |k| blocking_on(&k.control, refusal));
    Reach {
        at,
        keyward,
        bypass,
        blocking,
    }
}

/// Whether a `done` or jump in `line` acts at pam_keyward's level: a
/// substack's `done` and jumps stay inside it, so they matter only when
/// pam_keyward is in that same substack.
fn same_level(line: &ModLine, keyward: &ModLine) -> bool {
    !line.substack || (keyward.substack && keyward.top_line == line.top_line)
}

/// What the auth stack does about passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStack {
    pub keyward: Option<ModLine>,
    /// The first module that could accept a password.
    pub first_password: Option<ModLine>,
    pub keyward_first: bool,
    /// A line before pam_keyward that can end the auth stack with success
    /// or jump over pam_keyward.
    pub bypass: Option<ModLine>,
    pub blocking: Blocking,
    /// pam_keyward acts for the stack's service (its `services=`); set by
    /// [`analyse_auth_for`].
    pub acts: bool,
}

pub fn is_keyward(m: &ModLine) -> bool {
    m.base() == "pam_keyward.so"
}

pub fn analyse_auth(lines: &[ModLine]) -> AuthStack {
    let r = reach(lines, "auth_err");
    let password_at = lines
        .iter()
        .position(|m| !is_keyward(m) && !HARMLESS.contains(&m.base()));
    AuthStack {
        keyward: r.keyward,
        first_password: password_at.map(|i| lines[i].clone()),
        bypass: r.bypass,
        blocking: r.blocking,
        acts: true,
        keyward_first: match (r.at, password_at) {
            (Some(k), Some(p)) => k < p,
            (Some(_), None) => true,
            _ => false,
        },
    }
}

/// [`analyse_auth`] for PAM service `service`: a pam_keyward line whose
/// `services=` leaves the service out blocks nothing (bad arguments fail
/// closed, so they still block).
pub fn analyse_auth_for(lines: &[ModLine], service: &str) -> AuthStack {
    let mut s = analyse_auth(lines);
    s.acts = s
        .keyward
        .as_ref()
        .is_none_or(|k| Args::parse(&k.args).map_or(true, |a| a.acts_for(service)));
    s
}

/// The PAM service a file configures: its name inside a `pam.d`
/// directory (PAM names a service by its file); a file elsewhere is a
/// staged copy of sshd's.
pub fn service_of(pam_file: &Path) -> String {
    let in_pam_d = pam_file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "pam.d");
    match pam_file.file_name() {
        Some(n) if in_pam_d => n.to_string_lossy().into_owned(),
        _ => "sshd".into(),
    }
}

/// pam_keyward's own arguments on `k`, read with the module's parser: a
/// bad one makes every call of the stack fail (PAM_SERVICE_ERR), and a
/// `services=` without `service` makes the line do nothing.
fn args_problem(id: &str, k: &ModLine, service: &str) -> Option<Check> {
    match Args::parse(&k.args) {
        Err(e) => {
            let what = if k.kind == "session" {
                "every session of this stack fails (every SSH login, key logins included)"
            } else {
                "every password attempt fails with a module error (break-glass exemptions too)"
            };
            Some(Check::fail(
                id,
                format!("pam_keyward.so at {}: {e}: the module fails closed, so {what}", k.origin),
                format!("fix the argument at {} (known: {KNOWN})", k.origin),
            ))
        }
        Ok(a) if !a.acts_for(service) => Some(Check::fail(
            id,
            format!(
                "pam_keyward.so at {} acts only for services={} and returns PAM_IGNORE to service {service}: it does nothing in this stack",
                k.origin,
                a.services_list()
            ),
            format!("add {service} to services= at {} (without services= it acts for sshd)", k.origin),
        )),
        Ok(_) => None,
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

/// How `control` treats pam_keyward's refusal in the auth stack.
pub fn blocking(control: &str) -> Blocking {
    blocking_on(control, "auth_err")
}

/// How `control` treats pam_keyward returning `refusal` (`auth_err`,
/// `perm_denied`).
pub fn blocking_on(control: &str, refusal: &str) -> Blocking {
    match control {
        "requisite" => Blocking::Stops,
        "required" => Blocking::FailsLater,
        c if c.starts_with('[') => {
            let acts = actions(c);
            let action = |key: &str| acts.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            match action(refusal).or_else(|| action("default")) {
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
                self.acts
                    && self.keyward_first
                    && self.bypass.is_none()
                    && self.blocking != Blocking::No
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

/// Whether a pam_env line reads the user's ~/.pam_environment: pam_env
/// takes `user_readenv=` through atoi(3), the last one on the line wins,
/// and any value that is not 0 turns it on (off when absent).
fn reads_user_env(m: &ModLine) -> bool {
    m.base() == "pam_env.so"
        && m.args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix("user_readenv="))
            .is_some_and(|v| atoi(v) != 0)
}

/// C's atoi(3): leading whitespace, an optional sign, then digits; 0 when
/// there are none (saturating instead of overflowing).
fn atoi(v: &str) -> i64 {
    let v = v.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// The `pam.session` check: `session required pam_keyward.so
/// require_publickey`, reached by every session (nothing before it ends
/// the stack or jumps over it), its refusal not ignored, and no pam_env
/// before it that lets users rewrite SSH_AUTH_INFO_0.
pub fn session_check(file: &str, session: &[ModLine]) -> Check {
    let r = reach(session, "perm_denied");
    let (Some(k), Some(kw)) = (r.at, &r.keyward) else {
        return Check::warn(
            "pam.session",
            format!("no pam_keyward.so in the session stack of {file}: the key that opened a session is not logged"),
            format!("add `session required pam_keyward.so require_publickey` to {file} (leave it out if break-glass password logins need a shell)"),
        );
    };
    let required = kw.args.iter().any(|a| a == "require_publickey");
    if let Some(env) = session[..k].iter().find(|m| reads_user_env(m)) {
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
    if let Some(b) = &r.bypass {
        return Check::fail(
            "pam.session",
            format!(
                "`{}` ({}) comes before pam_keyward.so ({}) and can end the session stack with success or jump over pam_keyward: such a session opens without keyward's check{} and without its record",
                b.text(),
                b.origin,
                kw.origin,
                if required { " (require_publickey)" } else { "" }
            ),
            format!(
                "move `{}` above line {} of {file}, so nothing before it can skip it",
                kw.text(),
                b.top_line
            ),
        );
    }
    if r.blocking == Blocking::No {
        let found = format!(
            "pam_keyward.so is `{}` at {}: PAM ignores its refusal{}",
            kw.control,
            kw.origin,
            if required {
                ", so require_publickey refuses nothing (a password session opens anyway)"
            } else {
                " (a bad argument or internal error goes unnoticed)"
            }
        );
        let good = kw.text().replacen(&kw.control, "required", 1);
        let fix = format!("`{good}` at {}", kw.origin);
        return if required {
            Check::fail("pam.session", found, fix)
        } else {
            Check::warn("pam.session", found, fix)
        };
    }
    if required {
        Check::ok(
            "pam.session",
            format!(
                "pam_keyward.so require_publickey in the session stack ({})",
                kw.origin
            ),
        )
    } else {
        Check::ok(
            "pam.session",
            format!(
                "pam_keyward.so in the session stack ({}), without require_publickey",
                kw.origin
            ),
        )
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
    let service = service_of(pam_file);
    let stack = analyse_auth_for(&auth, &service);
    let stack_c = stack
        .keyward
        .as_ref()
        .and_then(|k| args_problem("pam.stack", k, &service))
        .unwrap_or_else(|| stack_check(&file, &stack));
    let session_c = session
        .iter()
        .find(|m| is_keyward(m))
        .and_then(|k| args_problem("pam.session", k, &service))
        .unwrap_or_else(|| session_check(&file, &session));
    let mut out = Vec::new();
    for mut check in [stack_c, session_c] {
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
    let dir = pam_file.parent().unwrap_or(Path::new("/etc/pam.d"));
    out.push(included_check(
        &dir.display().to_string(),
        &placement(&read_pam_dir(dir)),
    ));
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
            format!("{module} is in {file} but not installed (looked in {where_}): PAM cannot load it (\"Module is unknown\"): every stack naming it fails (a session line fails every SSH login, key logins included) and nothing is logged"),
            format!("install the keyward package again (pam_keyward.so, root 0644, in the security directory), or remove the pam_keyward lines from {file}; {REMOVAL_ORDER}"),
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

    /// A `sufficient` line ends only the substack it is in: it bypasses
    /// pam_keyward when both sit in the same substack (one include line),
    /// never from another substack.
    #[test]
    fn a_substacks_sufficient_line_bypasses_only_within_that_substack() {
        let line = |control: &str, module: &str, top_line: usize, substack: bool| ModLine {
            kind: "auth".into(),
            control: control.into(),
            module: module.into(),
            args: vec![],
            origin: format!("x:{top_line}"),
            top_line,
            substack,
        };
        let keyward = line("requisite", "pam_keyward.so", 5, true);
        let other_substack = [line("sufficient", "pam_unix.so", 3, true), keyward.clone()];
        assert_eq!(reach(&other_substack, "auth_err").bypass, None);
        let same_substack = [line("sufficient", "pam_unix.so", 5, true), keyward.clone()];
        assert!(reach(&same_substack, "auth_err").bypass.is_some());
        let top_level = [line("sufficient", "pam_unix.so", 1, false), keyward];
        assert!(reach(&top_level, "auth_err").bypass.is_some());
    }

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
        // A harmless module is harmless only when it cannot end
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
        // ~/.pam_environment can rewrite SSH_AUTH_INFO_0 before
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

    fn session(text: &str) -> Check {
        session_check(
            "/etc/pam.d/sshd",
            &flatten("session", "sshd", text, &load, 3),
        )
    }

    const KW_SESSION: &str = "session required pam_keyward.so require_publickey";

    #[test]
    fn session_optional_keyward_refuses_nothing() {
        let c =
            session("session optional pam_keyward.so require_publickey\n@include common-session\n");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.found.contains("`optional` at sshd:1"), "{}", c.found);
        assert!(
            c.found.contains("require_publickey refuses nothing"),
            "{}",
            c.found
        );
        assert_eq!(
            c.fix.as_deref(),
            Some(&*format!("`{KW_SESSION}` at sshd:1"))
        );
        for control in [
            "[success=ok default=ignore]",
            "[perm_denied=ignore default=bad]",
            "sufficient",
        ] {
            let c = session(&format!(
                "session {control} pam_keyward.so require_publickey\n"
            ));
            assert_eq!(c.status, Status::Fail, "{control}: {c:?}");
        }
        // logging only: a warning
        let c = session("session optional pam_keyward.so\n");
        assert_eq!(c.status, Status::Warn, "{c:?}");
        // controls that keep the refusal
        for control in [
            "required",
            "requisite",
            "[success=ok default=die]",
            "[default=bad]",
            "[perm_denied=die default=ignore]",
        ] {
            let c = session(&format!(
                "session {control} pam_keyward.so require_publickey\n"
            ));
            assert_eq!(c.status, Status::Ok, "{control}: {c:?}");
        }
    }

    #[test]
    fn session_lines_that_skip_keyward_are_flagged() {
        for first in [
            "session [success=1 default=ignore] pam_succeed_if.so user ingroup wheel",
            "session [default=2] pam_succeed_if.so uid < 1000",
            "session sufficient pam_succeed_if.so user = deploy",
            "session [success=done default=ignore] pam_listfile.so item=user sense=allow file=/etc/ok",
            "session [default=done] pam_limits.so",
        ] {
            let c = session(&format!("{first}\n{KW_SESSION}\n@include common-session\n"));
            assert_eq!(c.status, Status::Fail, "{first}: {c:?}");
            assert!(c.found.contains("sshd:1") && c.found.contains("pam_keyward.so (sshd:2)"), "{}", c.found);
            assert!(c.found.contains("can end the session stack with success or jump over pam_keyward"), "{}", c.found);
            assert_eq!(
                c.fix.as_deref(),
                Some(&*format!("move `{KW_SESSION}` above line 1 of /etc/pam.d/sshd, so nothing before it can skip it")),
            );
        }
        // a jump that lands before pam_keyward, or failures that end the stack: fine
        for first in [
            "session [success=1 default=ignore] pam_succeed_if.so uid < 1000\nsession required pam_limits.so",
            "session [success=ok default=die] pam_succeed_if.so uid >= 1000",
            "session requisite pam_nologin.so",
            "session optional pam_motd.so",
        ] {
            let c = session(&format!("{first}\n{KW_SESSION}\n@include common-session\n"));
            assert_eq!(c.status, Status::Ok, "{first}: {c:?}");
        }
        // a sufficient line in an included file counts; in a substack it does not
        let load2 = |name: &str| match name {
            "site-session" => {
                Some("session sufficient pam_succeed_if.so user = deploy\n".to_string())
            }
            other => load(other),
        };
        let l = flatten(
            "session",
            "sshd",
            &format!("@include site-session\n{KW_SESSION}\n"),
            &load2,
            3,
        );
        let c = session_check("f", &l);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.found.contains("site-session:1 via include at sshd:1"),
            "{}",
            c.found
        );
        let l = flatten(
            "session",
            "sshd",
            &format!("session substack site-session\n{KW_SESSION}\n"),
            &load2,
            3,
        );
        assert_eq!(session_check("f", &l).status, Status::Ok);
    }

    #[test]
    fn any_nonzero_user_readenv_before_keyward_session_is_flagged() {
        for arg in [
            "user_readenv=1",
            "user_readenv=2",
            "user_readenv=01",
            "user_readenv=-1",
            "user_readenv=1x",
            "user_readenv=0 user_readenv=1",
        ] {
            let c = session(&format!(
                "session required pam_env.so {arg}\n{KW_SESSION}\n"
            ));
            assert_eq!(c.status, Status::Fail, "{arg}: {c:?}");
            assert!(c.found.contains("~/.pam_environment"), "{}", c.found);
        }
        for arg in [
            "user_readenv=0",
            "user_readenv=00",
            "user_readenv=",
            "user_readenv=yes",
            "user_readenv=1 user_readenv=0",
            "readenv=1",
        ] {
            let c = session(&format!(
                "session required pam_env.so {arg}\n{KW_SESSION}\n"
            ));
            assert_eq!(c.status, Status::Ok, "{arg}: {c:?}");
        }
        assert_eq!(atoi(" +12abc"), 12);
        assert_eq!(atoi("-3"), -3);
        assert_eq!(atoi("x1"), 0);
        assert_eq!(atoi("99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn keyward_arguments_are_read_with_the_modules_parser() {
        assert_eq!(service_of(Path::new("/etc/pam.d/sshd")), "sshd");
        assert_eq!(service_of(Path::new("/etc/pam.d/sshd-kbd")), "sshd-kbd");
        assert_eq!(service_of(Path::new("/tmp/x/pam-sshd")), "sshd");
        let lines = |text: &str| flatten("auth", "sshd", text, &load, 3);
        // services= without the stack's service: blocks nothing
        let l = lines(&format!(
            "auth requisite pam_keyward.so services=sshd-kbd\n{DEBIAN}"
        ));
        assert!(analyse_auth(&l).blocks());
        assert!(!analyse_auth_for(&l, "sshd").blocks());
        assert!(analyse_auth_for(&l, "sshd-kbd").blocks());
        let k = analyse_auth(&l).keyward.unwrap();
        let c = args_problem("pam.stack", &k, "sshd").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found
                .contains("acts only for services=sshd-kbd and returns PAM_IGNORE to service sshd"),
            "{}",
            c.found
        );
        assert_eq!(args_problem("pam.stack", &k, "sshd-kbd"), None);
        // no services=: sshd only
        let l = lines(&format!("auth requisite pam_keyward.so\n{DEBIAN}"));
        assert!(!analyse_auth_for(&l, "login").blocks());
        assert!(analyse_auth_for(&l, "sshd").blocks());
        // a bad argument fails closed: it blocks, but it is a failure
        let l = lines(&format!(
            "auth requisite pam_keyward.so alow_group=x\n{DEBIAN}"
        ));
        assert!(analyse_auth_for(&l, "sshd").blocks());
        let c = args_problem(
            "pam.stack",
            analyse_auth(&l).keyward.as_ref().unwrap(),
            "sshd",
        )
        .unwrap();
        assert!(
            c.found
                .contains("argument 1 \"alow_group=x\": unknown argument"),
            "{}",
            c.found
        );
        let l = flatten(
            "session",
            "sshd",
            "session required pam_keyward.so require_publickey services=\n",
            &load,
            1,
        );
        let c = args_problem("pam.session", &l[0], "sshd").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found.contains("every SSH login, key logins included"),
            "{}",
            c.found
        );
    }
}
