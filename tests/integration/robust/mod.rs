//! Robustness: keyward on the login path under directory faults,
//! local faults, hostile input and concurrency, against real components
//! (nginx, sshd, rsyslog) on 127.0.0.1.
//!
//! What every test here holds keyward to:
//! - it never locks out a user because of a transient fault while a good
//!   cache entry is younger than `max_stale` (served stale, with a warning);
//! - without such an entry it fails closed (exit 1, nothing on stdout),
//!   within its own time budget, never sshd's LoginGraceTime, whatever other
//!   source (local files) could still answer;
//! - nothing is lost: a fault never damages a good cache entry, never
//!   leaves a `.tmp-` file;
//! - hostile input touches no path and no URL, and never reaches sshd;
//! - exactly one decision line per invocation, with a reason.
//!
//! The fault matrix and the concurrency counts are written to
//! `$CARGO_TARGET_TMPDIR/robustness/*.md` on every run, and into
//! `docs/ROBUSTNESS.md` (between markers) when `KEYWARD_ROBUSTNESS_DOC=1`.
//! Helpers shared with other tests live in `support::cachefiles` and
//! `support::checks`.

mod concurrency;
mod faults;
mod hostile;
mod local;
mod sources;
