//! `selinux.*` (RHEL, Fedora and other SELinux hosts): the mode, the
//! labels of what the login path touches, and the boolean sshd needs for a
//! networked AuthorizedKeysCommand.
//!
//! sshd runs `keyward keys` in its own domain (`sshd_t`: a `bin_t` program
//! gets no transition). In the targeted policy `sshd_t` may connect to
//! arbitrary ports (the directory's 443) only with `nis_enabled`, the
//! boolean for network NSS lookups; without it a cache miss fails (an AVC
//! `name_connect` denial) while hits keep working, which is why it is a
//! warning. A file labelled `unlabeled_t`, `default_t` or `file_t` was never
//! given its policy label (created before the policy knew it, or copied
//! with its context): `restorecon` fixes it. Rules are pure; [`probe`]
//! reads selinuxfs and the `security.selinux` attributes.

use std::path::{Path, PathBuf};

use crate::report::Check;

/// The SELinux mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforcing,
    Permissive,
}

/// What the probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// None: SELinux is disabled or absent (no selinuxfs).
    pub mode: Option<Mode>,
    /// `nis_enabled` (None: the policy has no such boolean).
    pub nis_enabled: Option<bool>,
    /// Paths and their contexts (None: no label could be read).
    pub labels: Vec<(PathBuf, Option<String>)>,
    /// Whether the login path may need the network ([directory] urls set).
    pub networked: bool,
}

/// The type field of a context `user:role:type:level`.
fn type_of(ctx: &str) -> &str {
    ctx.split(':').nth(2).unwrap_or(ctx)
}

/// `selinux.mode`, `selinux.boolean`, `selinux.labels`.
pub fn checks(f: &Facts) -> Vec<Check> {
    let Some(mode) = f.mode else {
        return vec![Check::ok(
            "selinux.mode",
            "SELinux is disabled or not present: nothing to check",
        )];
    };
    let mut out = vec![Check::ok(
        "selinux.mode",
        match mode {
            Mode::Enforcing => "enforcing (targeted policy rules apply to sshd and keyward)",
            Mode::Permissive => {
                "permissive: denials are logged, not enforced (ausearch -m avc -c keyward shows what enforcing would refuse)"
            }
        },
    )];
    match (f.networked, f.nis_enabled) {
        (false, _) => out.push(Check::ok(
            "selinux.boolean",
            "no [directory] urls: the login path needs no network",
        )),
        (true, Some(true)) => out.push(Check::ok(
            "selinux.boolean",
            "nis_enabled is on: sshd (sshd_t) may connect to the key directory",
        )),
        (true, Some(false)) if mode == Mode::Enforcing => out.push(Check::warn(
            "selinux.boolean",
            "nis_enabled is off: sshd runs keyward as sshd_t, which may not connect to the key directory; a login whose cache entry is missing or stale fails (AVC name_connect denial), cached logins work",
            "setsebool -P nis_enabled 1",
        )),
        (true, Some(false)) => out.push(Check::warn(
            "selinux.boolean",
            "nis_enabled is off: once enforcing, sshd (sshd_t) may not connect to the key directory",
            "setsebool -P nis_enabled 1",
        )),
        (true, None) => out.push(Check::skip(
            "selinux.boolean",
            "skipped: the policy has no nis_enabled boolean (check ausearch -m avc -c keyward)",
        )),
    }
    let bad: Vec<String> = f
        .labels
        .iter()
        .filter_map(|(p, ctx)| match ctx {
            Some(c) if matches!(type_of(c), "unlabeled_t" | "default_t" | "file_t") => {
                Some(format!("{} is {c}", p.display()))
            }
            _ => None,
        })
        .collect();
    let found: Vec<String> = f
        .labels
        .iter()
        .map(|(p, c)| format!("{} {}", p.display(), c.as_deref().unwrap_or("(no label)")))
        .collect();
    if bad.is_empty() {
        out.push(Check::ok("selinux.labels", found.join(", ")));
    } else {
        let paths: Vec<String> = f
            .labels
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        out.push(Check::warn(
            "selinux.labels",
            format!("never labelled by the policy: {}", bad.join(", ")),
            format!("restorecon -RFv {}", paths.join(" ")),
        ));
    }
    out
}

/// Reads the mode, `nis_enabled` and the labels of `paths`.
pub fn probe(paths: &[&Path], networked: bool) -> Facts {
    let fs = Path::new("/sys/fs/selinux");
    let mode = match std::fs::read_to_string(fs.join("enforce")) {
        Ok(t) if t.trim() == "1" => Some(Mode::Enforcing),
        Ok(_) => Some(Mode::Permissive),
        Err(_) => None,
    };
    // "CURRENT PENDING", e.g. "1 1"
    let nis_enabled = std::fs::read_to_string(fs.join("booleans/nis_enabled"))
        .ok()
        .map(|t| t.split_whitespace().next() == Some("1"));
    Facts {
        mode,
        nis_enabled,
        labels: paths.iter().map(|p| (p.to_path_buf(), label(p))).collect(),
        networked,
    }
}

/// The `security.selinux` attribute of `path` (not following a symlink).
fn label(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: the name is NUL-terminated, buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"security.selinux".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    let v = &buf[..n as usize];
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    Some(String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn facts(mode: Option<Mode>, nis: Option<bool>, cache: &str) -> Facts {
        Facts {
            mode,
            nis_enabled: nis,
            labels: vec![(PathBuf::from("/var/cache/keyward"), Some(cache.to_string()))],
            networked: true,
        }
    }

    #[test]
    fn absent_or_disabled() {
        let c = checks(&facts(None, None, "x"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Ok);
    }

    #[test]
    fn boolean_off_names_setsebool() {
        let c = checks(&facts(
            Some(Mode::Enforcing),
            Some(false),
            "system_u:object_r:var_t:s0",
        ));
        let b = c.iter().find(|c| c.id == "selinux.boolean").unwrap();
        assert_eq!(b.status, Status::Warn);
        assert_eq!(b.fix.as_deref(), Some("setsebool -P nis_enabled 1"));
        assert_eq!(
            c.iter().find(|c| c.id == "selinux.labels").unwrap().status,
            Status::Ok
        );
        let on = checks(&facts(Some(Mode::Enforcing), Some(true), "a:b:var_t:s0"));
        assert!(on.iter().all(|c| c.status == Status::Ok), "{on:?}");
        let files_only = Facts {
            networked: false,
            ..facts(Some(Mode::Enforcing), Some(false), "a:b:var_t:s0")
        };
        assert!(checks(&files_only).iter().all(|c| c.status == Status::Ok));
    }

    #[test]
    fn unlabelled_files_name_restorecon() {
        let c = checks(&facts(
            Some(Mode::Permissive),
            Some(true),
            "system_u:object_r:unlabeled_t:s0",
        ));
        let l = c.iter().find(|c| c.id == "selinux.labels").unwrap();
        assert_eq!(l.status, Status::Warn);
        assert_eq!(l.fix.as_deref(), Some("restorecon -RFv /var/cache/keyward"));
        assert!(l.found.contains("unlabeled_t"));
    }

    #[test]
    fn this_machine_probes_without_error() {
        // Debian test machines have no SELinux: the probe says so.
        let f = probe(&[Path::new("/")], true);
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            assert_eq!(f.mode, None);
        }
    }
}
