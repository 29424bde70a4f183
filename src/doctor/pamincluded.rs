//! `pam.included`: which files of the PAM directory name pam_keyward,
//! directly or through `@include`/`include`/`substack`, and whether a stack
//! shared with other services (console, `su`, `sudo`) holds it. Pure over
//! the files' text ([`placement`]); [`read_pam_dir`] reads them.

use std::path::Path;

use super::pam::is_keyward;
use super::pamfile::flatten;
use crate::report::Check;

/// PAM stacks that distributions share between services (console, `su`,
/// `sudo`, display managers and sshd include them).
const SHARED_STACKS: &[&str] = &[
    "common-auth",
    "common-account",
    "common-password",
    "common-session",
    "common-session-noninteractive",
    "system-auth",
    "password-auth",
    "smartcard-auth",
    "fingerprint-auth",
    "postlogin",
    "system-login",
    "system-local-login",
    "system-remote-login",
    "system-services",
];

const TYPES: [&str; 4] = ["auth", "account", "password", "session"];

/// Where the PAM files of one directory name pam_keyward: `named` holds
/// `(file, "TYPE line N")` for every line naming it directly, `reached`
/// every file whose stacks reach such a line through includes, and
/// `includers` for each file naming it, the files that include it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub named: Vec<(String, String)>,
    pub reached: Vec<String>,
    pub includers: Vec<(String, Vec<String>)>,
}

/// [`Placement`] over `files` (name, text) of one PAM directory. Pure:
/// includes resolve among `files` (by base name, as PAM resolves a
/// relative name in /etc/pam.d).
pub fn placement(files: &[(String, String)]) -> Placement {
    let none = |_: &str| None;
    let mut direct: Vec<&str> = Vec::new();
    let mut out = Placement::default();
    // file -> the files it includes (any type)
    let mut includes: Vec<(&str, Vec<String>)> = Vec::new();
    for (name, text) in files {
        let mut inc = Vec::new();
        for kind in TYPES {
            for m in flatten(kind, name, text, &none, 0) {
                if is_keyward(&m) {
                    out.named
                        .push((name.clone(), format!("{kind} line {}", m.top_line)));
                    if !direct.contains(&name.as_str()) {
                        direct.push(name);
                    }
                } else if let Some(f) = m
                    .module
                    .strip_prefix("<include ")
                    .and_then(|f| f.strip_suffix('>'))
                {
                    let base = f.rsplit('/').next().unwrap_or(f).to_owned();
                    if !inc.contains(&base) {
                        inc.push(base);
                    }
                }
            }
        }
        includes.push((name, inc));
    }
    // Fixpoint: a file reaches pam_keyward if it names it or includes a
    // file that does (cycles end because the set only grows).
    let mut reached: Vec<&str> = direct.clone();
    loop {
        let more: Vec<&str> = includes
            .iter()
            .filter(|(f, inc)| {
                !reached.contains(f) && inc.iter().any(|i| reached.contains(&i.as_str()))
            })
            .map(|(f, _)| *f)
            .collect();
        if more.is_empty() {
            break;
        }
        reached.extend(more);
    }
    out.reached = reached.iter().map(|s| s.to_string()).collect();
    out.reached.sort();
    for d in direct {
        let mut by: Vec<String> = includes
            .iter()
            .filter(|(f, inc)| *f != d && inc.iter().any(|i| i == d))
            .map(|(f, _)| f.to_string())
            .collect();
        by.sort();
        out.includers.push((d.to_owned(), by));
    }
    out
}

/// The safe order to take keyward out, for doctor and the docs: the
/// module must leave the PAM files before it leaves the disk.
pub const REMOVAL_ORDER: &str = "to remove keyward: first remove the pam_keyward lines from every PAM file, then the sshd drop-in, reload sshd, and only then remove the package (a PAM line naming a module that is gone fails every SSH login, key logins included)";

/// The `pam.included` check: which files of `dir` name pam_keyward, and a
/// warning when a stack shared by other services holds it.
pub fn included_check(dir: &str, p: &Placement) -> Check {
    if p.named.is_empty() {
        return Check::ok(
            "pam.included",
            format!("no PAM file in {dir} names pam_keyward.so"),
        );
    }
    let named: Vec<String> = p
        .named
        .iter()
        .map(|(f, at)| format!("{f} ({at})"))
        .collect();
    let shared: Vec<String> = p
        .includers
        .iter()
        .filter(|(f, by)| !by.is_empty() || SHARED_STACKS.contains(&f.as_str()))
        .map(|(f, by)| match by.is_empty() {
            true => format!("{f} (a stack distributions share between services)"),
            false => format!("{f} (included by {})", by.join(", ")),
        })
        .collect();
    let found = format!(
        "pam_keyward.so is named in {dir}: {}; PAM services that reach it: {}",
        named.join(", "),
        p.reached.join(", ")
    );
    if shared.is_empty() {
        return Check::ok("pam.included", format!("{found}; {REMOVAL_ORDER}"));
    }
    Check::warn(
        "pam.included",
        format!(
            "{found}. It is in a shared stack: {}. pam_keyward acts only for the services in its services= argument (sshd by default) and returns PAM_IGNORE to the others, but a shared line hides which services it guards",
            shared.join("; ")
        ),
        "put the pam_keyward lines in the sshd file itself (the first auth line, and the session line) and remove them from the shared stack; list other sshd-like services with services=",
    )
}

/// Reads the regular files of a PAM directory (bounded: PAM files are
/// small; a huge or unreadable file is left out).
pub fn read_pam_dir(dir: &Path) -> Vec<(String, String)> {
    const MAX_FILES: usize = 2000;
    const MAX_SIZE: u64 = 1 << 20;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = rd
        .flatten()
        .take(MAX_FILES)
        .filter(|e| {
            e.file_type().is_ok_and(|t| t.is_file())
                && e.metadata().is_ok_and(|m| m.len() <= MAX_SIZE)
        })
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), text))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::pam::tests::COMMON_AUTH;
    use crate::report::Status;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn placement_in_the_sshd_file_only() {
        let f = files(&[
            ("sshd", "auth requisite pam_keyward.so\n@include common-auth\nsession required pam_keyward.so require_publickey\n"),
            ("common-auth", COMMON_AUTH),
            ("sudo", "@include common-auth\n"),
            ("notes", "# auth requisite pam_keyward.so\n"),
        ]);
        let p = placement(&f);
        assert_eq!(
            p.named,
            vec![
                ("sshd".to_string(), "auth line 1".to_string()),
                ("sshd".to_string(), "session line 3".to_string())
            ]
        );
        assert_eq!(p.reached, vec!["sshd"]);
        let c = included_check("/etc/pam.d", &p);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(
            c.found
                .contains("sshd (auth line 1), sshd (session line 3)"),
            "{}",
            c.found
        );
        assert!(
            c.found.contains("first remove the pam_keyward lines"),
            "{}",
            c.found
        );
        let c = included_check(
            "/etc/pam.d",
            &placement(&files(&[("sshd", "@include common-auth\n")])),
        );
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(
            c.found.starts_with("no PAM file in /etc/pam.d names"),
            "{}",
            c.found
        );
    }

    #[test]
    fn placement_in_a_shared_stack_warns() {
        // Debian: common-auth included by sshd, sudo, login (one through
        // another file, one by absolute path)
        let f = files(&[
            (
                "common-auth",
                "auth requisite pam_keyward.so\nauth [success=1 default=ignore] pam_unix.so\n",
            ),
            ("sshd", "@include common-auth\n"),
            ("sudo", "auth include /etc/pam.d/common-auth\n"),
            ("login", "@include site-login\n"),
            ("site-login", "auth substack common-auth\n"),
            ("cron", "session required pam_env.so\n"),
        ]);
        let p = placement(&f);
        assert_eq!(
            p.reached,
            vec!["common-auth", "login", "site-login", "sshd", "sudo"]
        );
        let c = included_check("/etc/pam.d", &p);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.found
                .contains("common-auth (included by site-login, sshd, sudo)"),
            "{}",
            c.found
        );
        assert!(c.fix.unwrap().contains("sshd file itself"));
        // a known shared name warns even before anything includes it
        let p = placement(&files(&[(
            "system-auth",
            "auth requisite pam_keyward.so\n",
        )]));
        assert_eq!(included_check("/etc/pam.d", &p).status, Status::Warn);
        // include cycles end
        let p = placement(&files(&[
            ("a", "@include b\n"),
            ("b", "@include a\nsession required pam_keyward.so\n"),
        ]));
        assert_eq!(p.reached, vec!["a", "b"]);
    }
}
