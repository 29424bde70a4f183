//! Tests that cannot run their real check (a tool missing, no systemd, …)
//! must never pass quietly.
//!
//! [`skip`] fails the test under CI (`CI` set to anything but `false`/`0`:
//! there every prerequisite is installed by scripts/test.sh, so a skip is a
//! bug in the set-up). Elsewhere it prints `SKIPPED test: why` and records
//! it in `$CARGO_TARGET_TMPDIR/skipped/`, which scripts/test.sh counts and
//! lists at its end.

use std::path::PathBuf;

/// Where skipped checks are recorded, one file each
/// (`KEYWARD_TEST_SKIP_DIR` overrides it, for the support self-test).
pub fn skip_dir() -> PathBuf {
    match std::env::var_os("KEYWARD_TEST_SKIP_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped"),
    }
}

/// Whether this run is CI's (skips are failures there).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Records that `test` could not run (part of) its real check, because of
/// `why`. Panics under CI. The caller returns (or goes on with what it can
/// still check) after it.
pub fn skip(test: &str, why: &str) {
    assert!(
        !under_ci(),
        "{test}: cannot run its real check: {why} (a skip is a failure under CI)"
    );
    eprintln!("SKIPPED {test}: {why}");
    let dir = skip_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}-{}.txt", test, super::unique_name("skip")));
    if let Err(e) = std::fs::write(&file, format!("{test}: {why}\n")) {
        eprintln!(
            "warning: could not record the skip in {}: {e}",
            file.display()
        );
    }
}
