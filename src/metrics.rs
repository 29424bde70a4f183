//! `keyward sync --metrics-file PATH` (or `[sync] metrics_file`): a
//! Prometheus node-exporter textfile, replaced atomically after each run so
//! the collector never reads half a file.
//!
//! What monitoring needs to see a lockout coming: when the last sync fully
//! succeeded, what the last run did per user, and the age of the oldest
//! cached key list (it is served only until `max_stale` after its fetch
//! while the directory is unreachable), plus the earliest `expires` of a
//! signed list. Rendering is pure; [`scan`] and [`write_atomic`] do the I/O.

use std::io::Write;
use std::path::Path;

use crate::cache::{Cache, Lookup, Status};

/// What the cache holds, for the gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries that decode (keys and "no keys" alike).
    pub entries: usize,
    /// `fetched_at` of the oldest entry with keys (a "no keys" entry locks
    /// nobody out).
    pub oldest_fetch: Option<u64>,
    /// Earliest `expires` in the header of a signed entry with keys.
    pub earliest_expiry: Option<i64>,
}

/// Everything one textfile says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub version: &'static str,
    /// When this run ended (Unix seconds).
    pub now: u64,
    /// Whether every user of this run was refreshed.
    pub success: bool,
    /// `keyward_sync_last_success_timestamp_seconds` of the previous file.
    pub previous_success: Option<u64>,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: usize,
    pub duration_ms: u64,
    pub max_stale_secs: u64,
    pub cache: CacheStats,
    /// Log records that reached no log socket (see `audit::LOST_RECORDS`);
    /// None when the tally could not be read.
    pub log_records_lost: Option<u64>,
    pub revocation: RevocationStats,
}

/// How current this host's view of the directory is: what an alert on
/// hosts that fell behind needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationStats {
    /// When the stored index was last fetched or confirmed (200/304).
    pub index_fetched_at: Option<u64>,
    /// When sync last confirmed the revocation list current
    /// (`revocation::offline`).
    pub list_confirmed_at: Option<u64>,
    /// The installed list's serial (signed mode).
    pub list_serial: Option<u64>,
    /// `[revocation] max_age` (None: no bound).
    pub max_age_secs: Option<u64>,
    /// With `[revocation] sshd_krl`: whether the KRL there is the one the
    /// installed list names.
    pub krl_installed: Option<bool>,
}

const LAST_SUCCESS: &str = "keyward_sync_last_success_timestamp_seconds";

impl Metrics {
    /// The textfile (exposition format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
            write_metric(&mut out, "gauge", name, help, samples)
        };
        let one = |v: String| vec![(String::new(), v)];
        gauge(
            "keyward_build_info",
            "The keyward that wrote this file.",
            &[(format!("{{version=\"{}\"}}", self.version), "1".into())],
        );
        let last = if self.success {
            Some(self.now)
        } else {
            self.previous_success
        };
        gauge(
            LAST_SUCCESS,
            "When a sync last refreshed every user without a failure.",
            &last.map(|t| one(t.to_string())).unwrap_or_default(),
        );
        gauge(
            "keyward_sync_timestamp_seconds",
            "When the last sync run ended, whatever its result.",
            &one(self.now.to_string()),
        );
        gauge(
            "keyward_sync_duration_seconds",
            "How long the last sync run took.",
            &one(format!("{:.3}", self.duration_ms as f64 / 1000.0)),
        );
        gauge(
            "keyward_sync_users",
            "Users of the last sync run, by result.",
            &[
                ("updated", self.updated),
                ("unchanged", self.unchanged),
                ("removed", self.removed),
                ("failed", self.failed),
            ]
            .map(|(r, n)| (format!("{{result=\"{r}\"}}"), n.to_string())),
        );
        gauge(
            "keyward_cache_entries",
            "Cache entries (users with keys or a remembered \"no keys\").",
            &one(self.cache.entries.to_string()),
        );
        gauge(
            "keyward_cache_oldest_fetch_timestamp_seconds",
            "Fetch time of the oldest cached key list: it is refused max_stale after this while the directory is unreachable.",
            &self.cache.oldest_fetch.map(|t| one(t.to_string())).unwrap_or_default(),
        );
        gauge(
            "keyward_cache_max_stale_seconds",
            "The configured [cache] max_stale.",
            &one(self.max_stale_secs.to_string()),
        );
        gauge(
            "keyward_signed_earliest_expiry_timestamp_seconds",
            "Earliest expires= of a cached signed key list: refused after this.",
            &self
                .cache
                .earliest_expiry
                .map(|t| one(t.to_string()))
                .unwrap_or_default(),
        );
        self.render_revocation(&mut out);
        write_metric(
            &mut out,
            "counter",
            "keyward_log_records_lost_total",
            "Audit records no log socket took (a stalled or missing syslog/journald): they went to stderr only, which sshd discards.",
            &self.log_records_lost.map(|n| one(n.to_string())).unwrap_or_default(),
        );
        out
    }
}

impl Metrics {
    /// The index's and the revocation list's ages (seconds since last
    /// confirmed current), the list's serial, the bound and the KRL.
    fn render_revocation(&self, out: &mut String) {
        let r = &self.revocation;
        let one = |v: Option<u64>| v.map(|v| vec![(String::new(), v.to_string())]);
        let age = |t: Option<u64>| one(t.map(|t| self.now.saturating_sub(t)));
        for (name, help, v) in [
            (
                "keyward_index_age_seconds",
                "Seconds since the stored directory index was last fetched or renewed (a 304 renews it once it is 4/5 of ttl old).",
                age(r.index_fetched_at),
            ),
            (
                "keyward_revoked_list_age_seconds",
                "Seconds since the revocation list was last confirmed current: past keyward_revoked_list_max_age_seconds, certificates are refused.",
                age(r.list_confirmed_at),
            ),
            (
                "keyward_revoked_list_serial",
                "Serial of the installed revocation list.",
                one(r.list_serial),
            ),
            (
                "keyward_revoked_list_max_age_seconds",
                "The configured [revocation] max_age.",
                one(r.max_age_secs),
            ),
            (
                "keyward_revoked_krl_installed",
                "1 when the KRL at [revocation] sshd_krl is the one the installed list names.",
                one(r.krl_installed.map(u64::from)),
            ),
        ] {
            write_metric(out, "gauge", name, help, &v.unwrap_or_default());
        }
    }
}

/// Reads what [`RevocationStats`] reports (as the cache owner, after sync).
pub fn scan_revocation(config: &crate::config::Config) -> RevocationStats {
    use crate::revocation::{krl, offline, store};
    let index = crate::indexcache::IndexCache::new(&config.cache.dir);
    let header = store::open(config).ok().flatten().map(|l| l.header);
    let krl_installed = config.revocation.sshd_krl.as_ref().map(|p| {
        let want = header.and_then(|h| h.krl);
        let have = std::fs::read(p).ok().map(|b| krl::digest(&b));
        want.is_some() && have == want
    });
    RevocationStats {
        index_fetched_at: index
            .lookup(crate::index::REVOKED)
            .ok()
            .flatten()
            .map(|(s, _)| s.fetched_at),
        list_confirmed_at: offline::read(config).ok().flatten(),
        list_serial: header.and_then(|h| h.serial),
        max_age_secs: config.revocation.max_age.map(|d| d.as_secs()),
        krl_installed,
    }
}

/// One metric: its HELP and TYPE lines and samples (`labels`, `value`);
/// nothing without samples (absent() is what alerts test for).
fn write_metric(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    samples: &[(String, String)],
) {
    if samples.is_empty() {
        return;
    }
    *out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    for (labels, value) in samples {
        *out += &format!("{name}{labels} {value}\n");
    }
}

/// Longest previous textfile read (a real one is a few KiB).
const MAX_PREVIOUS: u64 = 1 << 20;

/// The previous textfile at `path`, if any. Opened without following a
/// symlink and without blocking on a FIFO, and read only if it is a regular
/// file: whoever can create a name in the textfile directory must not make
/// sync read another file or hang. Err says why it was not read; the caller
/// warns and [`write_atomic`] then replaces the name itself.
pub fn read_previous(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("the previous textfile is a symlink: not followed".into())
        }
        Err(e) => return Err(format!("the previous textfile: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("the previous textfile: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("the previous textfile is not a regular file: not read".into());
    }
    let mut text = String::new();
    file.take(MAX_PREVIOUS)
        .read_to_string(&mut text)
        .map_err(|e| format!("the previous textfile: {e}"))?;
    Ok(Some(text))
}

/// The last-success timestamp of an earlier textfile, so that a failed run
/// keeps reporting when the last good one was.
pub fn previous_success(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(LAST_SUCCESS)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Reads every entry of the cache (as the cache owner, like sync itself).
/// `signed`: whether headers carry an `expires` worth reporting.
pub fn scan(cache: &Cache, signed: bool) -> Result<CacheStats, String> {
    let mut stats = CacheStats::default();
    for user in cache.users().map_err(|e| e.to_string())? {
        let Ok(Lookup::Found(e)) = cache.read(&user) else {
            continue;
        };
        stats.entries += 1;
        if e.status != Status::Keys {
            continue;
        }
        stats.oldest_fetch = Some(
            stats
                .oldest_fetch
                .map_or(e.fetched_at, |o| o.min(e.fetched_at)),
        );
        if signed {
            if let Ok(h) = crate::signed::parse_header(&e.body) {
                stats.earliest_expiry = Some(
                    stats
                        .earliest_expiry
                        .map_or(h.expires, |o| o.min(h.expires)),
                );
            }
        }
    }
    Ok(stats)
}

/// Temp file next to `path` (a name the collector ignores: not `*.prom`),
/// mode 0644 whatever the umask (the collector's user must read it), fsync,
/// rename over `path`.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".keyward-metrics-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    // The unit's UMask=0027 would leave 0640: the collector runs as another
    // user, so set the mode on the descriptor.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        Metrics {
            version: "1.2.3",
            now: 1_700_000_000,
            success: true,
            previous_success: Some(1_600_000_000),
            updated: 2,
            unchanged: 5,
            removed: 1,
            failed: 0,
            duration_ms: 1250,
            max_stale_secs: 259_200,
            cache: CacheStats {
                entries: 7,
                oldest_fetch: Some(1_699_990_000),
                earliest_expiry: None,
            },
            log_records_lost: Some(4),
            revocation: RevocationStats {
                index_fetched_at: Some(1_699_999_940),
                list_confirmed_at: Some(1_699_999_000),
                list_serial: Some(1_795_430_007),
                max_age_secs: Some(86400),
                krl_installed: Some(false),
            },
        }
    }

    #[test]
    fn renders_the_exposition_format() {
        let text = sample().render();
        for line in [
            "# TYPE keyward_build_info gauge",
            "keyward_build_info{version=\"1.2.3\"} 1",
            "keyward_sync_last_success_timestamp_seconds 1700000000",
            "keyward_sync_users{result=\"updated\"} 2",
            "keyward_sync_users{result=\"unchanged\"} 5",
            "keyward_sync_users{result=\"removed\"} 1",
            "keyward_sync_users{result=\"failed\"} 0",
            "keyward_sync_duration_seconds 1.250",
            "keyward_cache_entries 7",
            "keyward_cache_oldest_fetch_timestamp_seconds 1699990000",
            "keyward_cache_max_stale_seconds 259200",
            "# TYPE keyward_log_records_lost_total counter",
            "keyward_log_records_lost_total 4",
            "keyward_index_age_seconds 60",
            "keyward_revoked_list_age_seconds 1000",
            "keyward_revoked_list_serial 1795430007",
            "keyward_revoked_list_max_age_seconds 86400",
            "keyward_revoked_krl_installed 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        // no samples, no metric (absent() is what alerts test for)
        assert!(!text.contains("keyward_signed_earliest_expiry"), "{text}");
        let bare = Metrics {
            revocation: RevocationStats::default(),
            ..sample()
        }
        .render();
        assert!(!bare.contains("keyward_revoked"), "{bare}");
        assert!(!bare.contains("keyward_index_age"), "{bare}");
        // every sample line is `name[{labels}] number`, each TYPE once
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let m = Metrics {
            success: false,
            failed: 3,
            ..sample()
        };
        let text = m.render();
        assert_eq!(previous_success(&text), Some(1_600_000_000));
        let never = Metrics {
            previous_success: None,
            ..m
        };
        assert_eq!(previous_success(&never.render()), None);
        assert_eq!(previous_success(&sample().render()), Some(1_700_000_000));
        assert_eq!(previous_success("garbage\n"), None);
    }
}
