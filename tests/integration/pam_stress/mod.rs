//! pam_keyward.so under stress: thousands of pamtester runs with
//! random module arguments, PAM items, users, `SSH_AUTH_INFO_0` values and
//! operations, plus valgrind on a fixed sample.
//!
//! How a run is set up
//! - pamtester under libpam_wrapper (as in `pam.rs`): each worker thread has
//!   a private service directory holding one service file (libpam_wrapper
//!   copies the whole directory on every pam_start) that names the module
//!   by absolute path. The machine's /etc/pam.d is never read or changed.
//! - Every facility runs pam_keyward first, with a control that makes the
//!   module's exact return code visible to pamtester:
//!   `[success=ok ignore=1 default=die]` followed by `pam_debug.so …=system_err`
//!   and `pam_permit` (the session facility swaps success and ignore). The
//!   code the contract promises (PAM_IGNORE; PAM_SUCCESS for the session
//!   calls) lets the operation pass, the other one of the two fails it with
//!   "System error", and any failure code ends the stack with that code
//!   (`default=die`), which pamtester prints as pam_strerror(3).
//! - The module's log records: without `PAM_WRAPPER_USE_SYSLOG`,
//!   libpam_wrapper prints pam_syslog(3) on stderr
//!   (`PWRAP_<LEVEL>[…] - SYSLOG(<priority>): <message>`; level 2 shows
//!   notice and info too). So this file needs no `/dev/log` and does not
//!   take the PAM log lock of `pam.rs`.
//! - An oracle written from the contract (DESIGN.md "PAM module" and the
//!   README) predicts, for each operation, the return code and the
//!   `decision=` of the one record the module writes (or no record).
//!
//! What every run must satisfy: no death by signal, exit 0 or 1, no hang
//! (killed after [`TIMEOUT`]), no panic message on stderr (a panic caught by
//! catch_unwind is still a bug), no stray output line (a record that let a
//! raw newline through would show up as one), the predicted outcome of every
//! operation, the predicted records in order (with the syslog priority that
//! goes with the decision, and `position=` of the first bad argument).
//!
//! Environment:
//! - `KW_PAM_STRESS_N` invocations (default 2000);
//! - `KW_PAM_STRESS_SEED` replays a run (the seed is printed);
//! - `KW_PAM_STRESS_ONLY=i` runs only case `i` of that seed;
//! - `KW_PAM_STRESS_THREADS` parallel pamtesters (default: CPUs, 2 to 4);
//! - `KW_PAM_STRESS_SHOW_RETRIES=1` prints the runs repeated because of
//!   libpam_wrapper (see [`infra`]).
//!
//! The valgrind sample ([`SAMPLE`], every operation, bad arguments, odd
//! input) runs `valgrind --trace-children=no … pamtester` with
//! `LD_PRELOAD=libpam_wrapper.so` in the environment: valgrind passes the
//! preload on to pamtester (the module's records on stderr prove that the
//! private service was used). Only errors with a stack frame in the
//! module's file count against it; what valgrind finds elsewhere (pamtester,
//! libpam, libpam_wrapper, libc) is reported. A tiny C module that leaks
//! and reads out of bounds is the positive control of that attribution.
//! Where valgrind (or a C compiler, for the control) is missing the test
//! cannot run its check: it fails under CI and is listed as skipped by
//! scripts/test.sh elsewhere ([`skip`]).
//!
//! Limits of the method (libpam 1.5.2): a service-file line longer than
//! 1023 bytes is cut into chunks that libpam parses as lines of their own,
//! so an argument near the module's 4096-byte bound (or a list of more than
//! 256 names) cannot reach a module from a service file; those bounds are
//! covered by the unit tests and the argument fuzz target. `#` starts a
//! comment anywhere on a line, and an argument with a space or tab has to
//! be written `[like this]`; the generator respects all three.

use crate::support::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod authinfo;
mod cases;
mod judge;
mod model;
mod oracle;
mod random;
mod rng;
mod runner;
mod valgrind;
mod world;

use authinfo::*;
use cases::*;
use judge::*;
use model::*;
use oracle::*;
use rng::*;
use runner::*;
use world::*;

/// One pamtester run normally takes a few milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// One pamtester run under valgrind takes one or two seconds.
pub const VALGRIND_TIMEOUT: Duration = Duration::from_secs(300);
/// libpam reads service-file lines in 1024-byte chunks; stay well below.
pub const MAX_LINE: usize = 1000;
/// The module's bound on `SSH_AUTH_INFO_0` (bytes) and lines it looks at.
pub const INFO_MAX_LEN: usize = 64 * 1024;
pub const INFO_MAX_LINES: usize = 32;
/// The module's bound on the number of arguments.
pub const MAX_ARGS: usize = 64;

/// The PAM tests of `pam.rs` (in this and in other test processes) hold an
/// flock on this file while they run. The tests here take it too: they
/// keep both CPUs busy, and their thousands of pamtesters would otherwise
/// race those of `pam.rs` for libpam_wrapper's runtime directories (see
/// [`infra`]), where only the runs here know to retry.
pub const PAM_LOCK: &str = "/run/keyward-tests-pam.lock";

/// Holds the flock on [`PAM_LOCK`] (an flock belongs to the open file, so
/// it also excludes `pam.rs` tests of this same process).
pub struct PamLock {
    pub _file: fs::File,
}

impl PamLock {
    pub fn acquire() -> PamLock {
        let f = fs::File::create(PAM_LOCK).expect(PAM_LOCK);
        // SAFETY: a valid fd; blocks until the holder is done.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {PAM_LOCK}");
        PamLock { _file: f }
    }
}
