//! The admin commands that run from the command line only: `sync` (with
//! its exit codes and metrics textfile) and `publish`. Cold code, kept out of
//! the login path's module.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use super::sink_for;
use crate::audit::{Record, Severity, Sink};
use crate::config::{self, Config};

/// `keyward sync`'s options.
pub(super) struct SyncArgs<'a> {
    pub(super) user: Option<&'a str>,
    pub(super) jobs: usize,
    pub(super) max_delay: std::time::Duration,
    pub(super) poll: bool,
    pub(super) metrics_file: Option<&'a Path>,
}

/// Exit codes of `keyward sync`: every user refreshed (or nothing to do),
/// some users failed, nothing could be synced (config, cache, privileges,
/// or every user failed).
pub const SYNC_OK: i32 = 0;
pub const SYNC_SOME_FAILED: i32 = 1;
pub const SYNC_FAILED: i32 = 2;

pub(super) fn run_sync(config_path: &Path, args: &SyncArgs, started: Instant) -> i32 {
    let mut early = Sink::stderr();
    let fail = |sink: &mut Sink, why: String| {
        sink.tee_stderr(true);
        sink.send(
            Severity::Err,
            &Record::new()
                .with("decision", "sync-fail")
                .with("reason", why),
        );
        SYNC_FAILED
    };
    let config = match Config::load(config_path) {
        Ok(c) => c,
        // The packaged state: nothing configured yet, so nothing to refresh
        // (systemd < 243 ignores the unit's ExecCondition and gets here).
        Err(e @ config::ConfigError::NoKeySource { .. }) => {
            let mut sink = Sink::stderr();
            sink.send(
                Severity::Info,
                &Record::new()
                    .with("decision", "sync")
                    .with("users", 0)
                    .with("reason", format!("nothing to sync: {e}")),
            );
            return SYNC_OK;
        }
        Err(e) => return fail(&mut early, e.to_string()),
    };
    let mut sink = sink_for(&config);
    if let Some(u) = args.user {
        if let Err(e) = crate::username::validate(u, config.policy.max_username_len) {
            return fail(&mut sink, format!("invalid user name {u:?}: {e}"));
        }
    }
    if config.directory.urls.is_empty() {
        // A files-only set-up is valid: there is simply nothing to refresh.
        sink.send(
            Severity::Info,
            &Record::new()
                .with("decision", "sync")
                .with("users", 0)
                .with("reason", "no [directory] urls configured: nothing to sync"),
        );
        return SYNC_OK;
    }
    // Same rule as the login path: never talk to the network as root.
    if let Err(e) = crate::os::privdrop::drop_to(&config.cache.owner) {
        return fail(&mut sink, e);
    }
    std::thread::sleep(crate::sync::jitter(args.max_delay));
    let tty = std::io::stderr().is_terminal();
    let progress = move |done: usize, total: usize| {
        if tty && (done == total || done % 25 == 0) {
            eprint!("\rsync: {done}/{total} users");
            if done == total {
                eprintln!();
            }
        }
    };
    let metrics = args.metrics_file.or(config.sync.metrics_file.as_deref());
    match crate::sync::run(&config, args.user, args.jobs, args.poll, &progress) {
        Ok(summary) => {
            let code = report_sync(&mut sink, &summary, tty, started);
            if let Some(path) = metrics {
                if let Err(e) = write_metrics(&config, path, &summary, code, started, &mut sink) {
                    sink.tee_stderr(true);
                    sink.send(
                        Severity::Warning,
                        &Record::new()
                            .with("decision", "metrics-fail")
                            .with("reason", format!("{}: {e}", path.display())),
                    );
                }
            }
            code
        }
        Err(e) => fail(&mut sink, e),
    }
}

/// The metrics textfile after a sync run.
fn write_metrics(
    config: &Config,
    path: &Path,
    summary: &crate::sync::Summary,
    code: i32,
    started: Instant,
    sink: &mut Sink,
) -> Result<(), String> {
    let cache = crate::cache::Cache::new(&config.cache.dir, &config.state.dir);
    let stats = crate::metrics::scan(&cache, config.directory.signed())?;
    let previous = crate::metrics::read_previous(path).unwrap_or_else(|e| {
        warn(sink, "metrics-previous", path, &e);
        None
    });
    let lost_path = config.cache.dir.join(crate::audit::LOST_RECORDS);
    let log_records_lost = crate::os::tally::count(&lost_path)
        .inspect_err(|e| warn(sink, "metrics-log-lost", &lost_path, &e.to_string()))
        .ok();
    let m = crate::metrics::Metrics {
        version: env!("CARGO_PKG_VERSION"),
        now: crate::os::clock::now_secs(),
        success: code == SYNC_OK,
        previous_success: previous.and_then(|t| crate::metrics::previous_success(&t)),
        updated: summary.updated,
        unchanged: summary.unchanged,
        removed: summary.removed,
        failed: summary.failed.len(),
        duration_ms: started.elapsed().as_millis() as u64,
        max_stale_secs: config.cache.max_stale.0.as_secs(),
        cache: stats,
        log_records_lost,
        revocation: crate::metrics::scan_revocation(config),
    };
    crate::metrics::write_atomic(path, &m.render()).map_err(|e| e.to_string())
}

/// A warning record about a file the metrics step met (also on stderr).
fn warn(sink: &mut Sink, decision: &str, path: &Path, why: &str) {
    sink.tee_stderr(true);
    sink.send(
        Severity::Warning,
        &Record::new()
            .with("decision", decision.to_owned())
            .with("reason", format!("{}: {why}", path.display())),
    );
}

/// The one record of a sync run (and, on a terminal, the failed users);
/// returns the exit code.
fn report_sync(
    sink: &mut Sink,
    summary: &crate::sync::Summary,
    tty: bool,
    started: Instant,
) -> i32 {
    let record = summary.record(started.elapsed());
    let failed = !summary.failed.is_empty();
    sink.tee_stderr(tty || failed);
    sink.send(
        // An unusable index (a bad signature, a rollback) is worth a look
        // even when every user was then synced on its own; so is a
        // revocation list not refreshed.
        if failed
            || summary.index_error.is_some()
            || summary.revoked.as_ref().is_some_and(|r| r.error.is_some())
            || summary.krl.as_ref().is_some_and(|k| k.error.is_some())
            || matches!(summary.revoked_confirmed, Some(Err(_)))
        {
            Severity::Warning
        } else {
            Severity::Info
        },
        &record,
    );
    if tty {
        for (u, why) in summary.failed.iter().take(20) {
            eprintln!("  failed: {u}: {why}");
        }
    }
    sync_exit_code(summary.users, summary.failed.len())
}

/// 0: nothing failed; 2: users were due and every one failed; else 1.
pub fn sync_exit_code(users: usize, failed: usize) -> i32 {
    match failed {
        0 => SYNC_OK,
        f if f >= users => SYNC_FAILED,
        _ => SYNC_SOME_FAILED,
    }
}
