//! The PAM stack for sshd: is pam_keyward in `auth` before the modules that
//! check a password? Parsing and the rules are pure; files are read through
//! a loader so tests need no /etc/pam.d.

use std::path::{Path, PathBuf};

use crate::report::Check;

/// One module line after includes are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModLine {
    pub kind: String,
    pub control: String,
    /// As written (`pam_unix.so` or an absolute path).
    pub module: String,
    pub args: Vec<String>,
    /// `FILE:LINE`, plus ` via @include at FILE:LINE` when included.
    pub origin: String,
    /// Line number in the top file this entry comes from (the include line).
    pub top_line: usize,
    /// From a `substack` include: its `done` and jumps stay inside it, and
    /// a jump in the parent counts the whole substack as one module.
    pub substack: bool,
}

impl ModLine {
    /// `pam_unix.so` for `/lib/security/pam_unix.so` too.
    pub fn base(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// The line as a PAM file would have it (comments, continuations gone).
    pub fn text(&self) -> String {
        let mut t = format!("{} {} {}", self.kind, self.control, self.module);
        for a in &self.args {
            t.push(' ');
            t.push_str(a);
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Module {
        kind: String,
        control: String,
        module: String,
        args: Vec<String>,
        line: usize,
    },
    /// Debian's `@include FILE`: every type from FILE.
    AtInclude { file: String, line: usize },
    /// `TYPE include|substack FILE`: lines of TYPE from FILE.
    Include {
        kind: String,
        file: String,
        line: usize,
        substack: bool,
    },
}

/// Splits a PAM file into items: comments removed, `\` continuations
/// joined, `[...]` controls kept whole, a leading `-` on the type dropped.
fn parse(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = raw.split('#').next().unwrap_or_default();
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let full = full.trim();
        if full.is_empty() {
            continue;
        }
        if let Some(rest) = full.strip_prefix("@include") {
            items.push(Item::AtInclude {
                file: rest.trim().to_owned(),
                line: start,
            });
            continue;
        }
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut bracket = false;
        for c in full.chars() {
            match c {
                '[' if cur.is_empty() => {
                    bracket = true;
                    cur.push(c);
                }
                ']' if bracket => {
                    bracket = false;
                    cur.push(c);
                }
                ' ' | '\t' if !bracket => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        if words.len() < 3 {
            continue;
        }
        let kind = words[0].trim_start_matches('-').to_ascii_lowercase();
        let control = words[1].clone();
        if control == "include" || control == "substack" {
            items.push(Item::Include {
                substack: control == "substack",
                kind,
                file: words[2].clone(),
                line: start,
            });
        } else {
            items.push(Item::Module {
                kind,
                control,
                module: words[2].clone(),
                args: words[3..].to_vec(),
                line: start,
            });
        }
    }
    items
}

/// The `kind` lines of `file`, includes followed up to `depth` levels.
/// `load(name)` returns the text of an included file (None: unreadable);
/// an include that cannot be read becomes an `<include NAME>` pseudo module,
/// which counts as able to check a password (the safe assumption).
pub fn flatten(
    kind: &str,
    label: &str,
    text: &str,
    load: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Vec<ModLine> {
    flatten_at(kind, label, text, load, depth, None, false)
}

fn flatten_at(
    kind: &str,
    label: &str,
    text: &str,
    load: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    via: Option<(&str, usize)>,
    in_substack: bool,
) -> Vec<ModLine> {
    let mut out = Vec::new();
    let origin = |line: usize| match via {
        Some((v, _)) => format!("{label}:{line} via {v}"),
        None => format!("{label}:{line}"),
    };
    for item in parse(text) {
        let (file, line, substack) = match item {
            Item::Module {
                kind: k,
                control,
                module,
                args,
                line,
            } => {
                if k == kind {
                    out.push(ModLine {
                        kind: k,
                        control,
                        module,
                        args,
                        origin: origin(line),
                        top_line: via.map_or(line, |(_, l)| l),
                        substack: in_substack,
                    });
                }
                continue;
            }
            Item::AtInclude { file, line } => (file, line, in_substack),
            Item::Include {
                kind: k,
                file,
                line,
                substack,
            } if k == kind => (file, line, in_substack || substack),
            Item::Include { .. } => continue,
        };
        let here = format!("include at {}", origin(line));
        let top = via.map_or(line, |(_, l)| l);
        let name = file.rsplit('/').next().unwrap_or(&file).to_owned();
        match (depth > 0).then(|| load(&file)).flatten() {
            Some(t) => out.extend(flatten_at(
                kind,
                &name,
                &t,
                load,
                depth - 1,
                Some((&here, top)),
                substack,
            )),
            None => out.push(ModLine {
                kind: kind.to_owned(),
                control: "include".into(),
                module: format!("<include {file}>"),
                args: Vec::new(),
                origin: origin(line),
                top_line: top,
                substack,
            }),
        }
    }
    out
}

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
    if !s.keyward_first {
        let p = s.first_password.as_ref().expect("a module comes first");
        return Check::fail(
            "pam.stack",
            format!(
                "pam_keyward.so ({}) comes after {} ({}): the password is checked before keyward can refuse it",
                k.origin,
                p.base(),
                p.origin
            ),
            format!("move `auth {} pam_keyward.so` above line {} of {file}", k.control, p.top_line),
        );
    }
    if let Some(b) = &s.bypass {
        return Check::fail(
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
        );
    }
    let good = format!("auth requisite pam_keyward.so{}", {
        let a: Vec<&String> = k.args.iter().filter(|a| *a != "audit_only").collect();
        if a.is_empty() {
            String::new()
        } else {
            format!(
                " {}",
                a.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            )
        }
    });
    match blocking(&k.control) {
        Blocking::No => {
            return Check::fail(
                "pam.stack",
                format!("pam_keyward.so is `{}` at {}: its refusal is ignored and the next module checks the password", k.control, k.origin),
                format!("`{good}` at {}", k.origin),
            )
        }
        Blocking::FailsLater => {
            return Check::warn(
                "pam.stack",
                format!("pam_keyward.so is `{}` at {}: the login fails, but later modules still prompt for and check the password", k.control, k.origin),
                format!("`{good}` at {}", k.origin),
            )
        }
        Blocking::Stops => {}
    }
    if k.args.iter().any(|a| a == "audit_only") {
        return Check::warn(
            "pam.stack",
            format!("pam_keyward.so at {} has audit_only: it logs what it would block and blocks nothing", k.origin),
            format!("remove audit_only at {} once the log shows only expected blocks", k.origin),
        );
    }
    let after = s
        .first_password
        .as_ref()
        .map(|p| format!(", before {} ({})", p.base(), p.origin))
        .unwrap_or_default();
    Check::ok(
        "pam.stack",
        format!("pam_keyward.so ({}) at {}{after}", k.control, k.origin),
    )
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

/// Reads an included file the way PAM does: relative names from /etc/pam.d.
pub fn load_include(name: &str) -> Option<String> {
    let p = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/etc/pam.d").join(name)
    };
    std::fs::read_to_string(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

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
    fn continuation_and_comments() {
        let items = parse(
            "auth requisite \\\n  pam_keyward.so a=1 # comment\n# auth required pam_unix.so\n",
        );
        assert_eq!(items.len(), 1);
        match &items[0] {
            Item::Module {
                module, args, line, ..
            } => {
                assert_eq!(module, "pam_keyward.so");
                assert_eq!(args, &vec!["a=1".to_string()]);
                assert_eq!(*line, 1);
            }
            other => panic!("{other:?}"),
        }
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
