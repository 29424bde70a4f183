//! Mirror health: a mirror that failed is skipped for a while.
//!
//! Without this, every lookup during an outage (a black-holed mirror) waits
//! its whole share of `timeout` before serving stale, and sshd runs keyward
//! twice per login. Only a failure of the mirror itself marks it down, never
//! one user's path: whoever can attempt an SSH login to an account whose
//! file errors must not take the mirror out for everyone else.
//!
//! What one attempt says about its mirror ([`Seen`]):
//! - `Unreachable` (DNS, refused connection, connect timeout, TLS): the
//!   mirror is down at once.
//! - `NoAnswer` (connected, then a timeout or a dropped connection): down
//!   only when the failure recorded just before it, within `retry_interval`
//!   and with no answer in between, was also a `NoAnswer` for another user.
//!   One slow path (the same user again and again) never marks it down; a
//!   hung server is down after two users' lookups.
//! - `Answered` (any HTTP status, oversize, garbage, a bad signature): that
//!   path's failure only; the mirror is up (the lookup moves on to the next
//!   mirror or to the stale rules).
//!
//! A down mirror is recorded in `<cache dir>/.health/<id>` and skipped until
//! a jittered `retry_interval` has passed; an answer removes the record. A
//! lone `NoAnswer` is recorded in the same file (which user, when) without
//! marking the mirror down. Every update is read–decide–write under an
//! `flock` on the `.health` directory, so two processes never write a record
//! decided from a stale read.
//!
//! Once the interval has passed, exactly one lookup (across processes) probes
//! the mirror: it holds an `flock` on `<id>.lock` while it tries, and
//! re-reads the record after taking the lock, so a probe that just failed
//! (and pushed the retry time on) is not repeated by a process that was
//! waiting. Everyone else keeps skipping. The lock dies with its process, so
//! a probe killed mid-way (the watchdog) never leaves a stuck claim. A failed
//! probe (unreachable, or no answer for any user) keeps the mirror down.
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

/// A lone `NoAnswer`: which user's lookup got none, and when. The mirror
/// is not down; a `NoAnswer` for another user soon after marks it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub url: String,
    /// [`subject_id`] of the user (never the name itself).
    pub subject: String,
    pub at_ms: u64,
    pub kind: String,
    pub reason: String,
}

impl Stall {
    pub fn encode(&self) -> String {
        format!(
            "{MAGIC}\nurl {}\nstalled_for {}\nstalled_at_ms {}\nkind {}\nreason {}\n",
            one_line(&self.url),
            one_line(&self.subject),
            self.at_ms,
            one_line(&self.kind),
            one_line(&self.reason)
        )
    }

    pub fn decode(text: &str) -> Option<Stall> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return None;
        }
        let (mut url, mut subject, mut at) = (None, None, None);
        let (mut kind, mut reason) = (String::new(), String::new());
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "url" => url = Some(v.to_owned()),
                "stalled_for" => subject = Some(v.to_owned()),
                "stalled_at_ms" => at = v.parse().ok(),
                "kind" => kind = v.to_owned(),
                "reason" => reason = v.to_owned(),
                _ => {}
            }
        }
        Some(Stall {
            url: url?,
            subject: subject?,
            at_ms: at?,
            kind,
            reason,
        })
    }
}

/// What `.health/<id>` holds for a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Down(Down),
    Stalled(Stall),
}

impl Record {
    pub fn encode(&self) -> String {
        match self {
            Record::Down(d) => d.encode(),
            Record::Stalled(s) => s.encode(),
        }
    }

    /// None for anything that is not a complete record ("up").
    pub fn decode(text: &str) -> Option<Record> {
        Down::decode(text)
            .map(Record::Down)
            .or_else(|| Stall::decode(text).map(Record::Stalled))
    }

    fn url(&self) -> &str {
        match self {
            Record::Down(d) => &d.url,
            Record::Stalled(s) => &s.url,
        }
    }

    /// The mirror is down (skipped until its retry time).
    pub fn down(self) -> Option<Down> {
        match self {
            Record::Down(d) => Some(d),
            Record::Stalled(_) => None,
        }
    }
}

/// What one attempt at a mirror says about the mirror itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An HTTP answer, usable or not (any status, oversize, garbage, a bad
    /// signature): the mirror is up; a bad answer is that path's failure.
    Answered,
    /// The mirror cannot be reached: DNS, refused connection, connect
    /// timeout, TLS.
    Unreachable,
    /// Connected, then no answer: a timeout, a dropped connection, no HTTP.
    /// It may be one slow path or a hung server: counted across users.
    NoAnswer,
}

/// One attempt, as the record rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub seen: Seen,
    /// [`subject_id`] of the user looked up (of the index for sync's).
    pub subject: &'a str,
    /// The failure kind (`network`, `tls`…) and the reason, as logged.
    pub kind: &'a str,
    pub reason: &'a str,
}

/// The record after an attempt (pure); None: no record (the mirror is up).
/// `r` in [0, 1) is the jitter of the retry time.
pub fn next(
    prev: Option<&Record>,
    url: &str,
    o: &Outcome,
    now_ms: u64,
    interval: Duration,
    r: f64,
) -> Option<Record> {
    let down = |prev: Option<&Down>| {
        Some(Record::Down(after_failure(
            prev, url, o.kind, o.reason, now_ms, interval, r,
        )))
    };
    match (o.seen, prev) {
        (Seen::Answered, _) => None,
        (Seen::Unreachable, Some(Record::Down(d))) | (Seen::NoAnswer, Some(Record::Down(d))) => {
            down(Some(d))
        }
        (Seen::Unreachable, _) => down(None),
        (Seen::NoAnswer, Some(Record::Stalled(s)))
            if s.subject != o.subject && stall_is_recent(s, now_ms, interval) =>
        {
            let mut d = after_failure(None, url, o.kind, o.reason, now_ms, interval, r);
            d.since_ms = s.at_ms;
            Some(Record::Down(d))
        }
        (Seen::NoAnswer, _) => Some(Record::Stalled(Stall {
            url: url.to_owned(),
            subject: o.subject.to_owned(),
            at_ms: now_ms,
            kind: o.kind.to_owned(),
            reason: o.reason.to_owned(),
        })),
    }
}

/// A stall counts toward "down" for `interval` after it (never one from
/// the future: a clock that jumped back).
fn stall_is_recent(s: &Stall, now_ms: u64, interval: Duration) -> bool {
    s.at_ms <= now_ms && now_ms - s.at_ms < interval.as_millis() as u64
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
    short_hash(template)
}

/// Who a lookup was for, as a stall record keeps it: 16 hex digits of the
/// SHA-256 of the user name ("" for the index).
pub fn subject_id(user: &str) -> String {
    short_hash(&format!("subject {user}"))
}

fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
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
    pub fn read_record(&self, template: &str) -> Option<Record> {
        let path = self.record_path(template);
        let file = crate::os::safepath::open_checked(&path, &Self::owners(), Some(&self.cache_dir))
            .ok()?;
        let mut text = String::new();
        file.take(4096).read_to_string(&mut text).ok()?;
        Record::decode(&text).filter(|r| r.url() == one_line(template))
    }

    /// The mirror, if it is recorded as down.
    pub fn read(&self, template: &str) -> Option<Down> {
        self.read_record(template).and_then(Record::down)
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

    /// Records what an attempt said about a mirror (`next`), read, decided
    /// and written under the lock on the directory. Returns the new record.
    pub fn record(&self, template: &str, o: &Outcome, now_ms: u64) -> io::Result<Option<Record>> {
        // An answer with no record on disk (the common case) changes
        // nothing: no lock, no write.
        if o.seen == Seen::Answered {
            match std::fs::symlink_metadata(self.record_path(template)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                _ => {}
            }
        }
        self.ensure_dir()?;
        let _lock = self.lock_dir()?;
        let prev = self.read_record(template);
        let rec = next(
            prev.as_ref(),
            template,
            o,
            now_ms,
            self.interval,
            random_unit(),
        );
        match &rec {
            None => match std::fs::remove_file(self.record_path(template)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
            Some(r) => self.write(template, r)?,
        }
        Ok(rec)
    }

    /// The update lock: an `flock` on `.health` itself, held for one
    /// read–decide–write (never across a network attempt).
    fn lock_dir(&self) -> io::Result<File> {
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.dir)?;
        // Held for microseconds; a holder stuck longer than this is not
        // worth a login waiting for (the update is skipped, as for any
        // other I/O error here).
        match crate::os::flock::exclusive(&dir, std::time::Duration::from_secs(1)) {
            Ok(()) => Ok(dir),
            Err(crate::os::flock::LockError::Busy { .. }) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{}: locked by another process", self.dir.display()),
            )),
            Err(crate::os::flock::LockError::Io(e)) => Err(e),
        }
    }

    fn write(&self, template: &str, r: &Record) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .tempfile_in(&self.dir)?;
        io::Write::write_all(&mut tmp, r.encode().as_bytes())?;
        // No fsync: after a crash the worst case is one more attempt.
        tmp.persist(self.record_path(template))
            .map_err(|e| e.error)?;
        Ok(())
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

    fn seen(seen: Seen, user: &str) -> (Seen, String) {
        (seen, subject_id(user))
    }

    /// The record rule as a table: the record before, what an attempt for
    /// which user saw, `ms` after the previous event, the record after.
    #[test]
    fn what_marks_a_mirror_down() {
        use Seen::*;
        let i = Duration::from_secs(30);
        let url = "http://m1/{user}.keys";
        #[derive(Debug, PartialEq)]
        enum R {
            None,
            Stalled(&'static str),
            Down(u32),
        }
        let view = |r: &Option<Record>| match r {
            None => R::None,
            Some(Record::Down(d)) => R::Down(d.failures),
            Some(Record::Stalled(s)) if s.subject == subject_id("alice") => R::Stalled("alice"),
            Some(Record::Stalled(s)) if s.subject == subject_id("bob") => R::Stalled("bob"),
            Some(Record::Stalled(_)) => R::Stalled("?"),
        };
        // Each row: a sequence of (seen, user, ms since the previous event)
        // from no record, and the record after each step.
        type Steps<'a> = &'a [(Seen, &'a str, u64, R)];
        let table: &[(&str, Steps)] = &[
            (
                "an HTTP status answer for one path never marks it down",
                &[
                    (Answered, "alice", 0, R::None),
                    (Answered, "alice", 10, R::None),
                    (Answered, "bob", 10, R::None),
                ],
            ),
            (
                "unreachable: down at once, for any user",
                &[
                    (Unreachable, "alice", 0, R::Down(1)),
                    (Unreachable, "alice", 10, R::Down(2)),
                ],
            ),
            (
                "one slow path, again and again: never down",
                &[
                    (NoAnswer, "alice", 0, R::Stalled("alice")),
                    (NoAnswer, "alice", 10, R::Stalled("alice")),
                    (NoAnswer, "alice", 10, R::Stalled("alice")),
                ],
            ),
            (
                "no answer for two users in a row: down",
                &[
                    (NoAnswer, "alice", 0, R::Stalled("alice")),
                    (NoAnswer, "bob", 10, R::Down(1)),
                    (NoAnswer, "alice", 10, R::Down(2)),
                ],
            ),
            (
                "an answer in between clears the stall",
                &[
                    (NoAnswer, "alice", 0, R::Stalled("alice")),
                    (Answered, "bob", 10, R::None),
                    (NoAnswer, "bob", 10, R::Stalled("bob")),
                ],
            ),
            (
                "a stall older than the interval no longer counts",
                &[
                    (NoAnswer, "alice", 0, R::Stalled("alice")),
                    (NoAnswer, "bob", 30_000, R::Stalled("bob")),
                    (NoAnswer, "alice", 29_999, R::Down(1)),
                ],
            ),
            (
                "a down mirror stays down on any failed probe, up on an answer",
                &[
                    (Unreachable, "alice", 0, R::Down(1)),
                    (NoAnswer, "alice", 40_000, R::Down(2)),
                    (Answered, "alice", 40_000, R::None),
                ],
            ),
            (
                "unreachable after a stall: down",
                &[
                    (NoAnswer, "alice", 0, R::Stalled("alice")),
                    (Unreachable, "alice", 10, R::Down(1)),
                ],
            ),
        ];
        for (name, steps) in table {
            let (mut rec, mut now) = (None, T);
            for (n, (s, user, dt, want)) in steps.iter().enumerate() {
                now += dt;
                let (seen, subject) = seen(*s, user);
                let o = Outcome {
                    seen,
                    subject: &subject,
                    kind: "network",
                    reason: "timed out",
                };
                rec = next(rec.as_ref(), url, &o, now, i, 0.5);
                assert_eq!(&view(&rec), want, "{name}: step {n}");
                if let Some(r) = &rec {
                    assert_eq!(Record::decode(&r.encode()).as_ref(), Some(r), "{name}");
                }
            }
        }
        // The stall that led to "down" dates the outage; a stall from the
        // future (the clock jumped back) does not count.
        let alice = subject_id("alice");
        let bob = subject_id("bob");
        let stall = |at_ms| {
            Record::Stalled(Stall {
                url: url.into(),
                subject: alice.clone(),
                at_ms,
                kind: "network".into(),
                reason: "timed out".into(),
            })
        };
        let o = Outcome {
            seen: NoAnswer,
            subject: &bob,
            kind: "network",
            reason: "timed out",
        };
        let d = next(Some(&stall(T - 5)), url, &o, T, i, 0.0).and_then(Record::down);
        assert_eq!(
            d.map(|d| (d.since_ms, d.retry_at_ms)),
            Some((T - 5, T + 22_500))
        );
        assert!(matches!(
            next(Some(&stall(T + 5)), url, &o, T, i, 0.0),
            Some(Record::Stalled(_))
        ));
        // A stall is not down: the gate lets the mirror be tried.
        assert_eq!(gate(stall(T).down(), T, i), Gate::Up);
        assert_ne!(subject_id("alice"), subject_id("bob"));
        assert_ne!(subject_id(""), mirror_id(""));
    }

    /// Each mirror has its own record file: a name made of 16 hex digits
    /// of its template's SHA-256, the same on every call and host.
    #[test]
    fn each_mirror_has_its_own_record_name() {
        let ids: Vec<String> = ["http://m1/{user}.keys", "http://m2/{user}.keys", ""]
            .iter()
            .map(|t| mirror_id(t))
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        assert_eq!(mirror_id("http://m1/{user}.keys"), ids[0]);
        // SHA-256("") starts e3b0c44298fc1c14.
        assert_eq!(ids[2], "e3b0c44298fc1c14");
    }

    /// A mirror that failed many times in a row is still probed once its
    /// retry time comes, however many failures it has.
    #[test]
    fn a_mirror_that_failed_many_times_is_still_probed_after_the_interval() {
        let i = Duration::from_secs(30);
        let url = "http://m1/{user}.keys";
        let subject = subject_id("alice");
        let o = Outcome {
            seen: Seen::Unreachable,
            subject: &subject,
            kind: "network",
            reason: "connection refused",
        };
        let (mut rec, mut now) = (None, T);
        for n in 1..=1000u32 {
            rec = next(rec.as_ref(), url, &o, now, i, 0.999);
            let d = rec.clone().and_then(Record::down).unwrap();
            assert_eq!(d.failures, n);
            assert!(matches!(gate(Some(d.clone()), now + 1, i), Gate::Skip(_)));
            assert!(
                matches!(gate(Some(d.clone()), now + 37_500, i), Gate::Due(_)),
                "failure {n}: probed within 1.25 × retry_interval"
            );
            now = d.retry_at_ms;
            assert!(matches!(gate(Some(d), now, i), Gate::Due(_)));
        }
    }

    #[test]
    fn records_and_claims_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let h = Health::new(dir.path(), Duration::from_secs(30));
        let m = "http://m1/{user}.keys";
        let (alice, bob) = (subject_id("alice"), subject_id("bob"));
        let outcome = |seen, subject| Outcome {
            seen,
            subject,
            kind: "network",
            reason: "connection refused",
        };
        assert_eq!(h.gate(m, T), Gate::Up);
        // An answer with nothing recorded writes nothing at all.
        h.record(m, &outcome(Seen::Answered, &alice), T).unwrap();
        assert!(!dir.path().join(".health").exists());
        // A stall is recorded but the mirror stays up; a second user's
        // stall marks it down.
        let s = h.record(m, &outcome(Seen::NoAnswer, &alice), T).unwrap();
        assert!(matches!(s, Some(Record::Stalled(_))));
        assert_eq!(h.gate(m, T + 1), Gate::Up);
        let d = h
            .record(m, &outcome(Seen::NoAnswer, &bob), T + 1)
            .unwrap()
            .and_then(Record::down)
            .unwrap();
        assert!(matches!(h.gate(m, T + 2), Gate::Skip(ref s) if *s == d));
        assert_eq!(h.gate("http://m2/{user}", T + 1), Gate::Up, "per mirror");
        // Due: one claim wins, a second (another open file) is busy.
        let due = d.retry_at_ms;
        let c1 = h.claim(m, due);
        assert!(matches!(c1, Claim::Probe(_)));
        assert!(matches!(h.claim(m, due), Claim::Busy(_)));
        // The probe fails (the update lock is not the probe lock: no
        // deadlock): the record moves on, and a waiter that takes the lock
        // afterwards sees the new retry time and does not probe again.
        let d2 = h
            .record(m, &outcome(Seen::Unreachable, &alice), due)
            .unwrap()
            .and_then(Record::down)
            .unwrap();
        drop(c1);
        assert!(d2.retry_at_ms > due);
        assert!(matches!(h.claim(m, due), Claim::Busy(ref b) if b.failures == 2));
        // An answer clears the record.
        assert_eq!(
            h.record(m, &outcome(Seen::Answered, &bob), due).unwrap(),
            None
        );
        assert_eq!(h.gate(m, due), Gate::Up);
        assert!(h.read_record(m).is_none());
        assert!(matches!(h.claim(m, due), Claim::Recovered));
    }

    /// Concurrent updates from many threads (each its own lock file
    /// description, as separate processes have): every update is decided on
    /// what the previous one wrote, so no failure is lost.
    #[test]
    fn concurrent_updates_are_never_decided_on_a_stale_read() {
        let dir = tempfile::tempdir().unwrap();
        let m = "http://m1/{user}.keys";
        let subject = subject_id("alice");
        let h = Health::new(dir.path(), Duration::from_secs(30));
        h.record(
            m,
            &Outcome {
                seen: Seen::Unreachable,
                subject: &subject,
                kind: "network",
                reason: "refused",
            },
            T,
        )
        .unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let h = Health::new(dir.path(), Duration::from_secs(30));
                    for _ in 0..25 {
                        let o = Outcome {
                            seen: Seen::Unreachable,
                            subject: &subject,
                            kind: "network",
                            reason: "refused",
                        };
                        h.record(m, &o, T).unwrap();
                    }
                });
            }
        });
        assert_eq!(h.read(m).unwrap().failures, 1 + 8 * 25);
    }
}
