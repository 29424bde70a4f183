//! A source read by an unprivileged account: `keyward publish` often runs
//! as root (to write a root-owned web root, from a system timer), and a
//! forge source talks HTTP(S) to servers outside the organisation. The
//! fetches run in a child process that drops to the account for good
//! (`os::privdrop::drop_privileges`: uid, gid, groups, capabilities,
//! no_new_privs), and the listing comes back through a pipe; the parent
//! keeps root only to write OUT.
//!
//! The child is forked while the process has a single thread (nothing else
//! is safe to fork), and ends with `_exit`: none of the parent's buffers
//! or temporary files are flushed or removed twice.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use super::{Listing, Source};
use crate::os::nss::Account;

/// Largest listing read back from the child: far above what 100,000 users'
/// key files take, far below what would exhaust memory.
const MAX_WIRE: u64 = 1 << 30;

pub struct Unprivileged {
    pub inner: Box<dyn Source>,
    pub account: Account,
}

/// How many threads this process has (`/proc/self/status`).
fn threads() -> Result<usize, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "/proc/self/status: no thread count".into())
}

impl Unprivileged {
    /// The child's work: drop for good, read, send. Never returns.
    fn child(&self, write_fd: libc::c_int) -> ! {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let account = &self.account;
            let r = crate::os::privdrop::drop_privileges(Some(account))
                .map_err(|e| format!("dropping privileges to {:?}: {e}", account.name))
                .and_then(|()| self.inner.read());
            let bytes = serde_json::to_vec(&r).unwrap_or_default();
            // SAFETY: the write end of the pipe, owned by the child alone.
            let mut pipe = unsafe { File::from_raw_fd(write_fd) };
            pipe.write_all(&bytes).is_ok()
        }));
        // SAFETY: ends the forked child without running the parent's exit code.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) }
    }
}

impl Source for Unprivileged {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn folder(&self) -> Option<std::path::PathBuf> {
        self.inner.folder()
    }

    fn read(&self) -> Result<Listing, String> {
        let n = threads()?;
        if n != 1 {
            return Err(format!(
                "cannot start the fetch as {:?}: {n} threads run (a fork needs one)",
                self.account.name
            ));
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: single-threaded (checked above); the child only runs
        // `child`, which ends in _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            return Err(format!("fork: {e}"));
        }
        if pid == 0 {
            unsafe { libc::close(fds[0]) };
            self.child(fds[1]);
        }
        unsafe { libc::close(fds[1]) };
        // SAFETY: the read end, owned here alone.
        let pipe = unsafe { File::from_raw_fd(fds[0]) };
        let mut bytes = Vec::new();
        let read = pipe.take(MAX_WIRE).read_to_end(&mut bytes);
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("waiting for the fetch process: {e}"));
            }
        }
        read.map_err(|e| format!("reading from the fetch process: {e}"))?;
        let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if !exited_ok {
            return Err(format!(
                "the fetch process (as {:?}) failed (wait status {status:#x}): nothing read",
                self.account.name
            ));
        }
        // The listing crosses the pipe as JSON (serde's derives on `Listing`).
        serde_json::from_slice::<Result<Listing, String>>(&bytes)
            .map_err(|e| format!("the fetch process's answer: {e}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Kind;
    use crate::source::{Got, Item, Refused};

    #[test]
    fn a_listing_crosses_the_pipe_unchanged() {
        let l = Listing {
            items: vec![
                Item {
                    user: "alice".into(),
                    kind: Kind::Keys,
                    got: Got::Text("ssh-ed25519 AAAA a\n".into()),
                    origin: "https://f/alice.keys".into(),
                },
                Item {
                    user: "bob".into(),
                    kind: Kind::Principals,
                    got: Got::Failed("HTTP 503".into()),
                    origin: "b".into(),
                },
            ],
            refused: vec![Refused {
                file: "x".into(),
                why: "y".into(),
            }],
            notes: vec!["n".into()],
        };
        let bytes = serde_json::to_vec(&Ok::<_, String>(l.clone())).unwrap();
        let back: Result<Listing, String> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.unwrap(), l);
    }
}
