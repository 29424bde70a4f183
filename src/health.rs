//! Mirror health: a mirror that failed is skipped for a while.
//!
//! Without this, every lookup during an outage (a black-holed mirror) waits
//! its whole share of `timeout` before serving stale, and sshd runs keyward
//! twice per login. After a failure (timeout, refused, TLS, 5xx) keyward
//! records the mirror as down in `<cache dir>/.health/<id>` and skips it
//! until a jittered `retry_interval` has passed; a success removes the file.
//!
//! Once the interval has passed, exactly one lookup (across processes) probes
//! the mirror: it holds an `flock` on `<id>.lock` while it tries, and
//! re-reads the record after taking the lock, so a probe that just failed
//! (and pushed the retry time on) is not repeated by a process that was
//! waiting. Everyone else keeps skipping. The lock dies with its process, so
//! a probe killed mid-way (the watchdog) never leaves a stuck claim.
//!
//! Nothing here is read on a cache hit: only when a fetch is needed.
//! The record format and the decisions are pure; `Health` does the I/O.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAGIC: &str = "keyward-health 1";

/// A mirror recorded as down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The mirror's URL template (for the admin reading the file).
    pub url: String,
    /// Unix ms of the first failure in this outage.
    pub since_ms: u64,
    /// Unix ms before which the mirror is skipped.
    pub retry_at_ms: u64,
    /// Failures in a row (the first one and every failed probe).
    pub failures: u32,
    /// What failed last (`network`, `tls`, `answer`…), so a skip is
    /// reported as that kind of failure.
    pub kind: String,
    /// The last failure, as logged.
    pub reason: String,
}

/// Keeps a value on one line of the record.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

impl Down {
    pub fn encode(&self) -> String {
        format!(
            "{MAGIC}\nurl {}\nsince_ms {}\nretry_at_ms {}\nfailures {}\nkind {}\nreason {}\n",
            one_line(&self.url),
            self.since_ms,
            self.retry_at_ms,
            self.failures,
            one_line(&self.kind),
            one_line(&self.reason)
        )
    }

    /// None for anything that is not a complete record (treated as "up":
    /// a damaged record must never keep a mirror skipped).
    pub fn decode(text: &str) -> Option<Down> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return None;
        }
        let (mut url, mut since, mut retry, mut failures) = (None, None, None, None);
        let (mut kind, mut reason) = (String::new(), String::new());
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "url" => url = Some(v.to_owned()),
                "since_ms" => since = v.parse().ok(),
                "retry_at_ms" => retry = v.parse().ok(),
                "failures" => failures = v.parse().ok(),
                "kind" => kind = v.to_owned(),
                "reason" => reason = v.to_owned(),
                _ => {}
            }
        }
        Some(Down {
            url: url?,
            since_ms: since?,
            retry_at_ms: retry?,
            failures: failures?,
            kind,
            reason,
        })
    }

    /// How the admin reads it in a log line.
    pub fn describe(&self, now_ms: u64) -> String {
        let left = self.retry_at_ms.saturating_sub(now_ms);
        format!(
            "down for {}s ({}), retry in {}.{}s",
            now_ms.saturating_sub(self.since_ms) / 1000,
            self.reason,
            left / 1000,
            left % 1000 / 100
        )
    }
}

/// What to do with a mirror before trying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// No failure recorded: try it.
    Up,
    /// Down, and the retry time has come: try it if the probe can be claimed.
    Due(Down),
    /// Down: skip it.
    Skip(Down),
}

/// The decision for a mirror at `now_ms` (pure). A retry time further
/// out than `interval` can have put it (a clock that jumped back, a record
/// written by hand) counts as due: the skip stays bounded.
pub fn gate(state: Option<Down>, now_ms: u64, interval: Duration) -> Gate {
    let longest = now_ms.saturating_add(max_wait(interval));
    match state {
        None => Gate::Up,
        Some(d) if now_ms >= d.retry_at_ms || d.retry_at_ms > longest => Gate::Due(d),
        Some(d) => Gate::Skip(d),
    }
}

/// The longest wait `after_failure` gives, in ms.
fn max_wait(interval: Duration) -> u64 {
    (interval.as_millis() as f64 * 1.25) as u64 + 1
}

/// The record after a failure at `now_ms`; `r` in [0, 1) spreads the
/// retry over 0.75–1.25 × `interval`, so a fleet does not probe in step.
pub fn after_failure(
    prev: Option<&Down>,
    url: &str,
    kind: &str,
    reason: &str,
    now_ms: u64,
    interval: Duration,
    r: f64,
) -> Down {
    let base = interval.as_millis() as f64;
    let wait = (base * (0.75 + 0.5 * r.clamp(0.0, 1.0))) as u64;
    Down {
        url: url.to_owned(),
        since_ms: prev.map_or(now_ms, |p| p.since_ms.min(now_ms)),
        retry_at_ms: now_ms.saturating_add(wait.max(1)),
        failures: prev.map_or(1, |p| p.failures.saturating_add(1)),
        kind: kind.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A uniform random number in [0, 1) (the jitter).
fn random_unit() -> f64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    let v = if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    };
    (v >> 11) as f64 / (1u64 << 53) as f64
}

/// A file name for a mirror: 16 hex digits of the SHA-256 of its template.
pub fn mirror_id(template: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(template.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a probe may go ahead.
pub enum Claim {
    /// This process probes; the lock is held until the claim is dropped.
    Probe(ProbeClaim),
    /// Someone else is probing, or has just probed and failed: skip.
    Busy(Down),
    /// The mirror recovered meanwhile (the record is gone): just try it.
    Recovered,
}

/// The probe lock; released when dropped (or when the process dies).
pub struct ProbeClaim {
    _lock: File,
}

/// Mirror health records in `<cache dir>/.health/`.
pub struct Health {
    cache_dir: PathBuf,
    dir: PathBuf,
    interval: Duration,
}

impl Health {
    /// No I/O, no system call: the login path builds one on every lookup,
    /// and a cache hit must not pay for it.
    pub fn new(cache_dir: &Path, interval: Duration) -> Health {
        Health {
            cache_dir: cache_dir.to_owned(),
            dir: cache_dir.join(".health"),
            interval,
        }
    }

    /// Owners a record may have: root and the account keyward runs as.
    fn owners() -> Vec<u32> {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            vec![0]
        } else {
            vec![0, euid]
        }
    }

    fn record_path(&self, template: &str) -> PathBuf {
        self.dir.join(mirror_id(template))
    }

    /// The recorded state of a mirror. Anything unreadable or unsafe counts
    /// as "up": at worst the mirror is tried once more.
    pub fn read(&self, template: &str) -> Option<Down> {
        let path = self.record_path(template);
        let file = crate::os::safepath::open_checked(&path, &Self::owners(), Some(&self.cache_dir))
            .ok()?;
        let mut text = String::new();
        file.take(4096).read_to_string(&mut text).ok()?;
        Down::decode(&text).filter(|d| d.url == one_line(template))
    }

    /// The decision for a mirror now.
    pub fn gate(&self, template: &str, now_ms: u64) -> Gate {
        gate(self.read(template), now_ms, self.interval)
    }

    /// Tries to become the one process that probes a mirror that is due.
    pub fn claim(&self, template: &str, now_ms: u64) -> Claim {
        let lock = match self.open_lock(template) {
            Ok(f) => f,
            // Cannot lock (read-only cache, not the owner): probe anyway,
            // unlocked; the record still spaces the probes out.
            Err(_) => return self.claim_unlocked(template, now_ms),
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return match self.read(template) {
                Some(d) => Claim::Busy(d),
                None => Claim::Recovered,
            };
        }
        // Re-read under the lock: a probe that finished between our first
        // read and the lock has moved the retry time (or cleared the record).
        match gate(self.read(template), now_ms, self.interval) {
            Gate::Up => Claim::Recovered,
            Gate::Skip(d) => Claim::Busy(d),
            Gate::Due(_) => Claim::Probe(ProbeClaim { _lock: lock }),
        }
    }

    fn claim_unlocked(&self, template: &str, now_ms: u64) -> Claim {
        match self.gate(template, now_ms) {
            Gate::Up => Claim::Recovered,
            Gate::Skip(d) => Claim::Busy(d),
            Gate::Due(_) => Claim::Probe(ProbeClaim {
                _lock: match File::open("/dev/null") {
                    Ok(f) => f,
                    Err(_) => return Claim::Recovered,
                },
            }),
        }
    }

    fn ensure_dir(&self) -> io::Result<()> {
        match std::fs::DirBuilder::new().mode(0o750).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    fn open_lock(&self, template: &str) -> io::Result<File> {
        self.ensure_dir()?;
        let mut p = self.record_path(template).into_os_string();
        p.push(".lock");
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(p)
    }

    /// Records a failure: the mirror is skipped until the returned record's
    /// retry time.
    pub fn failed(
        &self,
        template: &str,
        kind: &str,
        reason: &str,
        now_ms: u64,
    ) -> io::Result<Down> {
        let prev = self.read(template);
        let d = after_failure(
            prev.as_ref(),
            template,
            kind,
            reason,
            now_ms,
            self.interval,
            random_unit(),
        );
        self.ensure_dir()?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .tempfile_in(&self.dir)?;
        io::Write::write_all(&mut tmp, d.encode().as_bytes())?;
        // No fsync: after a crash the worst case is one more attempt.
        tmp.persist(self.record_path(template))
            .map_err(|e| e.error)?;
        Ok(d)
    }

    /// Records a success: the mirror is no longer skipped.
    pub fn succeeded(&self, template: &str) {
        let _ = std::fs::remove_file(self.record_path(template));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000_000;

    fn down(retry_at_ms: u64) -> Down {
        Down {
            url: "http://m1/{user}.keys".into(),
            since_ms: T - 5000,
            retry_at_ms,
            failures: 2,
            kind: "network".into(),
            reason: "timed out".into(),
        }
    }

    #[test]
    fn record_round_trip_and_damage_counts_as_up() {
        let d = down(T + 1);
        assert_eq!(Down::decode(&d.encode()), Some(d.clone()));
        let text = d.encode();
        for cut in [0, 10, text.len() / 2] {
            assert_eq!(Down::decode(&text[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Down::decode("keyward-health 2\n"), None);
        let mut evil = d.clone();
        evil.reason = "x\nretry_at_ms 99999999999999999".into();
        assert_eq!(Down::decode(&evil.encode()).unwrap().retry_at_ms, T + 1);
    }

    #[test]
    fn gate_by_retry_time() {
        let i = Duration::from_secs(30);
        assert_eq!(gate(None, T, i), Gate::Up);
        assert_eq!(gate(Some(down(T + 1)), T, i), Gate::Skip(down(T + 1)));
        assert_eq!(gate(Some(down(T)), T, i), Gate::Due(down(T)));
        // Never skipped longer than the interval allows.
        assert_eq!(
            gate(Some(down(T + 37_500)), T, i),
            Gate::Skip(down(T + 37_500))
        );
        let far = down(T + 37_502);
        assert_eq!(gate(Some(far.clone()), T, i), Gate::Due(far));
        let forever = down(u64::MAX);
        assert_eq!(gate(Some(forever.clone()), T, i), Gate::Due(forever));
    }

    #[test]
    fn failures_push_the_retry_out_by_a_jittered_interval() {
        let i = Duration::from_secs(30);
        let first = after_failure(None, "u", "network", "refused", T, i, 0.0);
        assert_eq!((first.since_ms, first.failures), (T, 1));
        assert_eq!(first.retry_at_ms, T + 22_500);
        let again = after_failure(
            Some(&first),
            "u",
            "network",
            "timed out",
            T + 30_000,
            i,
            0.999_999,
        );
        assert_eq!((again.since_ms, again.failures), (T, 2));
        assert!(
            again.retry_at_ms > T + 30_000 + 37_000 && again.retry_at_ms <= T + 30_000 + 37_500
        );
        assert_eq!(again.reason, "timed out");
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn records_and_claims_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let h = Health::new(dir.path(), Duration::from_secs(30));
        let m = "http://m1/{user}.keys";
        assert_eq!(h.gate(m, T), Gate::Up);
        let d = h.failed(m, "network", "connection refused", T).unwrap();
        assert!(matches!(h.gate(m, T + 1), Gate::Skip(ref s) if *s == d));
        assert_eq!(h.gate("http://m2/{user}", T + 1), Gate::Up, "per mirror");
        // Due: one claim wins, a second (another open file) is busy.
        let due = d.retry_at_ms;
        let c1 = h.claim(m, due);
        assert!(matches!(c1, Claim::Probe(_)));
        assert!(matches!(h.claim(m, due), Claim::Busy(_)));
        // The probe fails: the record moves on, and a waiter that takes the
        // lock afterwards sees the new retry time and does not probe again.
        let d2 = h.failed(m, "network", "timed out", due).unwrap();
        drop(c1);
        assert!(d2.retry_at_ms > due);
        assert!(matches!(h.claim(m, due), Claim::Busy(ref b) if b.failures == 2));
        // A success clears the record.
        h.succeeded(m);
        assert_eq!(h.gate(m, due), Gate::Up);
        assert!(matches!(h.claim(m, due), Claim::Recovered));
    }
}
