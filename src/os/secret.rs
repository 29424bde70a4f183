//! Files that hold a secret (a signing key, an LDAP bind password): the
//! rule OpenSSH applies to private keys (`sshkey_perm_ok`): a regular file,
//! not a symbolic link, owned by whoever runs keyward, readable by nobody
//! else. The decision is pure; `read` probes the file on its descriptor.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a secret file is refused (None: it is safe). `euid`: who runs us.
pub fn problem(is_file: bool, uid: u32, mode: u32, euid: u32) -> Option<String> {
    if !is_file {
        return Some("is not a regular file".into());
    }
    if uid != euid {
        return Some(format!(
            "is owned by uid {uid}, not by the user running keyward (uid {euid})"
        ));
    }
    if mode & 0o077 != 0 {
        return Some(format!(
            "is readable or writable by others (mode {:04o}; fix: chmod 600)",
            mode & 0o7777
        ));
    }
    None
}

/// Reads a secret file of at most `limit` bytes after checking it.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!("{shown} is a symbolic link"),
            _ => format!("{shown}: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if let Some(p) = problem(meta.is_file(), meta.uid(), meta.mode(), euid) {
        return Err(format!("{shown} {p}"));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{shown} is larger than {limit} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_only_regular_files_pass() {
        assert_eq!(problem(true, 1000, 0o100600, 1000), None);
        assert_eq!(problem(true, 1000, 0o100400, 1000), None);
        assert!(problem(true, 1000, 0o100640, 1000)
            .unwrap()
            .contains("chmod 600"));
        assert!(problem(true, 1000, 0o100604, 1000).is_some());
        assert!(problem(true, 0, 0o100600, 1000).unwrap().contains("uid 0"));
        assert!(problem(false, 1000, 0o020600, 1000).is_some());
    }
}
