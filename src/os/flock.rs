//! Advisory locks between keyward's own processes (`flock`), with a bounded
//! wait: a login must never hang on a lock another process holds.
//!
//! flock has no timed wait, and a blocking flock under `alarm` would need a
//! signal handler in a process that prints keys, so the wait polls with a
//! short back-off. The lock is released when the file is closed.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum LockError {
    /// Another process held it for the whole wait.
    Busy {
        waited: Duration,
    },
    Io(io::Error),
}

/// Takes an exclusive lock on `file` (a regular file or a directory opened
/// for reading), waiting at most `wait` (zero: one try).
pub fn exclusive(file: &File, wait: Duration) -> Result<(), LockError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: flock on a descriptor the caller owns for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR)
        ) {
            return Err(LockError::Io(e));
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(LockError::Busy { waited });
        }
        std::thread::sleep(pause.min(wait - waited));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_for_the_wait_then_free_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        exclusive(&a, Duration::ZERO).unwrap();
        match exclusive(&b, Duration::from_millis(30)) {
            Err(LockError::Busy { waited }) => assert!(waited >= Duration::from_millis(30)),
            other => panic!("{other:?}"),
        }
        drop(a);
        exclusive(&b, Duration::ZERO).unwrap();
        // directories lock too (publish locks its output folder)
        let d = File::open(dir.path()).unwrap();
        exclusive(&d, Duration::ZERO).unwrap();
    }
}
