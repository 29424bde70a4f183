//! Local authorized_keys files (`[files] paths`), read the way sshd would
//! with StrictModes: after resolving symlinks, the file and every directory
//! up to the home directory (or `/`) must be owned by root or the user and
//! not group/world-writable. An unsafe file is skipped and reported, exactly
//! like sshd skips it; the user's other sources still count.

use std::io::Read;
use std::path::Path;

use crate::config::expand_file_template;
use crate::os::privdrop::{self, Account};
use crate::os::safepath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Read(String),
    Missing,
    /// Refused by the ownership/mode rules, or unreadable: why.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    pub path: String,
    pub outcome: FileOutcome,
}

/// Reads every configured file for `user`. As root, each file is read with
/// the user's own uid so a symlink cannot make keyward read what the user
/// could not. A uid switch that fails (either way) is an error: the lookup
/// fails closed rather than go on half-switched.
pub fn read_all(
    templates: &[String],
    user: &Account,
    max_bytes: u64,
) -> Result<Vec<FileRead>, String> {
    let as_root = privdrop::euid() == 0;
    templates
        .iter()
        .map(|t| {
            let path = expand_file_template(t, &user.home, &user.name);
            let outcome = if as_root {
                privdrop::as_user(user, || read_one(&path, user, max_bytes))?
            } else {
                read_one(&path, user, max_bytes)
            };
            Ok(FileRead { path, outcome })
        })
        .collect()
}

fn read_one(path: &str, user: &Account, max_bytes: u64) -> FileOutcome {
    let real = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileOutcome::Missing,
        Err(e) => return FileOutcome::Refused(format!("{path}: {e}")),
    };
    let owners = [0, user.uid];
    let home = Path::new(&user.home);
    let stop = real.starts_with(home).then_some(home);
    let file = match safepath::open_checked(&real, &owners, stop) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return FileOutcome::Missing,
        Err(e) => return FileOutcome::Refused(e.to_string()),
    };
    let mut text = String::new();
    match file.take(max_bytes + 1).read_to_string(&mut text) {
        Ok(n) if n as u64 > max_bytes => {
            FileOutcome::Refused(format!("{path}: larger than max_bytes {max_bytes}"))
        }
        Ok(_) => FileOutcome::Read(text),
        Err(e) => FileOutcome::Refused(format!("{path}: {e}")),
    }
}
