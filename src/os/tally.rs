//! A counter that many short-lived processes add to without a lock: one
//! byte appended per event (`O_APPEND` writes never interleave), so the
//! count is the file's size. Used for log records that reached no log
//! socket; `keyward sync` reports the count as a metric.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Adds one to the tally at `path`, creating it (mode 0640). Never follows a
/// symlink, never blocks on a FIFO, writes only to a regular file. A file
/// created by root takes the owner and group of its directory, so the
/// unprivileged processes that share the directory can add to it.
pub fn add_one(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.uid() == 0 && crate::os::privdrop::euid() == 0 {
        give_to_directory_owner(&file, path)?;
    }
    file.write_all(b"1")
}

fn give_to_directory_owner(file: &File, path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let d = std::fs::metadata(dir)?;
    if d.uid() != 0 {
        std::os::unix::fs::fchown(file, Some(d.uid()), Some(d.gid()))?;
    }
    Ok(())
}

/// The tally at `path`: 0 when there is none; an error when `path` is not a
/// regular file (the metric would lie).
pub fn count(path: &Path) -> io::Result<u64> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(m.len()),
        Ok(_) => Err(io::Error::other("not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_add_counts_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        assert_eq!(count(&p).unwrap(), 0);
        add_one(&p).unwrap();
        add_one(&p).unwrap();
        add_one(&p).unwrap();
        assert_eq!(count(&p).unwrap(), 3);
    }

    #[test]
    fn never_follows_a_symlink_or_writes_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(add_one(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        assert!(count(&link).is_err());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(add_one(&fifo).is_err());
        assert!(count(&fifo).is_err());
    }
}
