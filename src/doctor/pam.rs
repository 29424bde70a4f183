//! The PAM stack for sshd: is pam_keyward in `auth` before the modules that
//! check a password? Parsing and the rules are pure; files are read through
//! a loader so tests need no /etc/pam.d.

use std::path::{Path, PathBuf};

use super::Check;

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
}

impl ModLine {
    /// `pam_unix.so` for `/lib/security/pam_unix.so` too.
    pub fn base(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
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
    flatten_at(kind, label, text, load, depth, None)
}

fn flatten_at(
    kind: &str,
    label: &str,
    text: &str,
    load: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    via: Option<(&str, usize)>,
) -> Vec<ModLine> {
    let mut out = Vec::new();
    let origin = |line: usize| match via {
        Some((v, _)) => format!("{label}:{line} via {v}"),
        None => format!("{label}:{line}"),
    };
    for item in parse(text) {
        let (file, line) = match item {
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
                    });
                }
                continue;
            }
            Item::AtInclude { file, line } => (file, line),
            Item::Include {
                kind: k,
                file,
                line,
            } if k == kind => (file, line),
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
            )),
            None => out.push(ModLine {
                kind: kind.to_owned(),
                control: "include".into(),
                module: format!("<include {file}>"),
                args: Vec::new(),
                origin: origin(line),
                top_line: top,
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
}

pub fn is_keyward(m: &ModLine) -> bool {
    m.base() == "pam_keyward.so"
}

pub fn analyse_auth(lines: &[ModLine]) -> AuthStack {
    let keyward_at = lines.iter().position(is_keyward);
    let password_at = lines
        .iter()
        .position(|m| !is_keyward(m) && !HARMLESS.contains(&m.base()));
    AuthStack {
        keyward: keyward_at.map(|i| lines[i].clone()),
        first_password: password_at.map(|i| lines[i].clone()),
        keyward_first: match (keyward_at, password_at) {
            (Some(k), Some(p)) => k < p,
            (Some(_), None) => true,
            _ => false,
        },
    }
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
            let action = |key: &str| {
                c.trim_matches(['[', ']'])
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
            };
            match action("auth_err").or_else(|| action("default")).as_deref() {
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
    match session.iter().find(|m| is_keyward(m)) {
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
    use crate::doctor::Status;

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
}
