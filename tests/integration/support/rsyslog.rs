//! A private rsyslogd, and the shared `/dev/log` fixture for PAM tests.
//!
//! The private instance listens on its own socket (`imuxsock`, system socket
//! off) and writes every message to a file, one line per message:
//! `FACILITY.SEVERITY PROGRAM[PID]: MESSAGE` (e.g.
//! `authpriv.info keyward[4242]: decision=serve user=alice ...`).

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{lock, wait_until, TestDir};

/// A running private rsyslogd; stopped on drop.
pub struct Rsyslog {
    /// The socket to point keyward's `[log] socket` at.
    pub socket: PathBuf,
    /// Where every message goes.
    pub out: PathBuf,
    /// Extra sockets it also listens on (e.g. /dev/log).
    extra: Vec<PathBuf>,
    pidfile: PathBuf,
    child: Option<Child>,
    dir: TestDir,
}

/// One message as written by the private rsyslog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `authpriv`, `auth`, `user`, ...
    pub facility: String,
    /// `info`, `notice`, `warning`, `err`, ...
    pub severity: String,
    pub program: String,
    pub pid: String,
    /// The message text (after `PROGRAM[PID]: `).
    pub msg: String,
    /// The whole line.
    pub raw: String,
}

impl LogLine {
    pub fn parse(line: &str) -> Option<LogLine> {
        let (fs, rest) = line.split_once(' ')?;
        let (facility, severity) = fs.split_once('.')?;
        let (tag, msg) = rest
            .split_once(": ")
            .unwrap_or((rest.trim_end_matches(':'), ""));
        let (program, pid) = match tag.split_once('[') {
            Some((p, pid)) => (p, pid.trim_end_matches(']')),
            None => (tag, ""),
        };
        Some(LogLine {
            facility: facility.to_owned(),
            severity: severity.to_owned(),
            program: program.to_owned(),
            pid: pid.to_owned(),
            msg: msg.trim().to_owned(),
            raw: line.to_owned(),
        })
    }

    /// The value of `key=` in a `key=value` message, unquoted
    /// (`reason="a b"` → `a b`). None when absent.
    pub fn field(&self, key: &str) -> Option<String> {
        kv_field(&self.msg, key)
    }

    /// Asserts `key=want`, showing the whole record when it is not.
    #[track_caller]
    pub fn assert_field(&self, key: &str, want: &str) {
        assert_eq!(self.field(key).as_deref(), Some(want), "{}", self.raw);
    }
}

/// Extracts `key=value` from a keyward-style record (values with spaces are
/// double-quoted, `\"` and `\\` escaped inside quotes).
pub fn kv_field(msg: &str, key: &str) -> Option<String> {
    let bytes = msg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // at the start of a token
        let start = i;
        let eq = msg[start..].find('=').map(|p| start + p);
        let k_end = match eq {
            Some(e) if !msg[start..e].contains(' ') => e,
            _ => {
                // not a key=value token: skip to the next space
                match msg[start..].find(' ') {
                    Some(p) => {
                        i = start + p + 1;
                        continue;
                    }
                    None => return None,
                }
            }
        };
        let k = &msg[start..k_end];
        let mut j = k_end + 1;
        let mut value = String::new();
        if bytes.get(j) == Some(&b'"') {
            j += 1;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' if j + 1 < bytes.len() => {
                        value.push(bytes[j + 1] as char);
                        j += 2;
                    }
                    b'"' => {
                        j += 1;
                        break;
                    }
                    _ => {
                        let ch = msg[j..].chars().next().unwrap();
                        value.push(ch);
                        j += ch.len_utf8();
                    }
                }
            }
        } else {
            let end = msg[j..].find(' ').map(|p| j + p).unwrap_or(msg.len());
            value.push_str(&msg[j..end]);
            j = end;
        }
        if k == key {
            return Some(value);
        }
        i = j + 1;
    }
    None
}

/// Builder for [`Rsyslog`].
#[derive(Default)]
pub struct RsyslogBuilder {
    extra: Vec<PathBuf>,
}

impl RsyslogBuilder {
    /// Also listen on `path` (e.g. `/dev/log`). The caller must make sure
    /// nothing else owns that path; it is removed when rsyslog stops.
    pub fn extra_socket(mut self, path: &Path) -> Self {
        self.extra.push(path.to_owned());
        self
    }

    pub fn start(self) -> Rsyslog {
        let dir = TestDir::new("rsyslog");
        let work = dir.subdir("work");
        let socket = dir.join("log.sock");
        let out = dir.join("messages");
        let pidfile = dir.join("rsyslogd.pid");
        let conf = dir.join("rsyslog.conf");
        let mut inputs = format!(
            "input(type=\"imuxsock\" Socket=\"{}\" CreatePath=\"on\" RateLimit.Interval=\"0\")\n",
            socket.display()
        );
        for e in &self.extra {
            inputs.push_str(&format!(
                "input(type=\"imuxsock\" Socket=\"{}\" CreatePath=\"on\" RateLimit.Interval=\"0\")\n",
                e.display()
            ));
        }
        let text = format!(
            r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
{inputs}template(name="keywardTests" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]:%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="{out}" template="keywardTests")
"#,
            work = work.display(),
            out = out.display(),
        );
        fs::write(&conf, text).unwrap();
        fs::write(&out, "").unwrap();
        let check = super::run(
            Command::new("rsyslogd").arg("-N1").arg("-f").arg(&conf),
            Duration::from_secs(30),
        );
        assert!(check.success(), "rsyslogd -N1: {check}");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rsyslogd");
        let mut r = Rsyslog {
            socket,
            out,
            extra: self.extra,
            pidfile,
            child: Some(child),
            dir,
        };
        let all: Vec<PathBuf> = std::iter::once(r.socket.clone())
            .chain(r.extra.iter().cloned())
            .collect();
        let up = wait_until(Duration::from_secs(10), || all.iter().all(|s| s.exists()));
        if !up {
            r.stop();
            panic!("rsyslogd did not create its sockets {all:?}");
        }
        // Prove the whole path (socket → file) works before a test relies on it.
        let probe = format!("probe-{}", super::unique_name("rsyslog"));
        let sock = UnixDatagram::unbound().unwrap();
        let ok = wait_until(Duration::from_secs(10), || {
            let _ = sock.send_to(
                format!("<14>keyward-tests-probe[1]: {probe}").as_bytes(),
                &r.socket,
            );
            std::thread::sleep(Duration::from_millis(100));
            r.text().contains(&probe)
        });
        if !ok {
            r.stop();
            panic!("private rsyslogd does not write what it receives");
        }
        r
    }
}

impl Rsyslog {
    pub fn start() -> Rsyslog {
        RsyslogBuilder::default().start()
    }

    pub fn builder() -> RsyslogBuilder {
        RsyslogBuilder::default()
    }

    /// The whole output file.
    pub fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Every message so far, parsed.
    pub fn lines(&self) -> Vec<LogLine> {
        self.text().lines().filter_map(LogLine::parse).collect()
    }

    /// Messages from one program (e.g. `keyward`).
    pub fn lines_of(&self, program: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.program == program)
            .collect()
    }

    /// Polls the output until a message satisfies `pred`; returns it.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&LogLine) -> bool,
    ) -> Option<LogLine> {
        poll_line(timeout, || self.lines(), pred)
    }

    /// Polls until at least `n` messages satisfy `pred`, then waits a little
    /// longer (to catch extra ones) and returns all that match.
    pub fn wait_for_n(
        &self,
        n: usize,
        timeout: Duration,
        mut pred: impl FnMut(&LogLine) -> bool,
    ) -> Vec<LogLine> {
        let end = Instant::now() + timeout;
        loop {
            let found: Vec<LogLine> = self.lines().into_iter().filter(|l| pred(l)).collect();
            if found.len() >= n || Instant::now() >= end {
                std::thread::sleep(Duration::from_millis(300));
                return self.lines().into_iter().filter(|l| pred(l)).collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets rsyslog flush and remove its sockets.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let done = wait_until(Duration::from_secs(5), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !done {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for e in &self.extra {
            let _ = fs::remove_file(e);
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// /dev/log, shared and reference-counted
// ---------------------------------------------------------------------------

const DEV_LOG: &str = "/dev/log";
/// Records that /dev/log was created by a test process (its pid), so that a
/// socket left behind by a killed test run can be told apart from the
/// machine's own.
const DEV_LOG_MARKER: &str = "/run/keyward-tests-devlog.pid";

struct DevLogState {
    users: usize,
    /// Some: our rsyslog listens on /dev/log. None with users > 0: the
    /// machine has its own /dev/log (nothing we can read).
    rsyslog: Option<Rsyslog>,
}

static DEV_LOG_STATE: Mutex<DevLogState> = Mutex::new(DevLogState {
    users: 0,
    rsyslog: None,
});

/// A handle on `/dev/log` for code that can only log there (PAM modules use
/// syslog(3)). Where the machine has no `/dev/log`, the first handle starts a
/// private rsyslog listening on it and the last one dropped stops it and
/// removes `/dev/log`. An existing `/dev/log` is never replaced: then
/// [`DevLog::readable`] is false and tests cannot see what was logged.
pub struct DevLog {
    out: Option<PathBuf>,
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// A /dev/log socket nobody listens on, left by an earlier test process of
/// ours that was killed: safe to remove.
fn stale_dev_log_of_ours() -> bool {
    let Ok(pid) = fs::read_to_string(DEV_LOG_MARKER) else {
        return false;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return false;
    };
    if pid_alive(pid) {
        return false;
    }
    let s = UnixDatagram::unbound().unwrap();
    s.connect(DEV_LOG).is_err()
}

impl DevLog {
    pub fn acquire() -> DevLog {
        let mut st = lock(&DEV_LOG_STATE);
        if st.users == 0 {
            let exists = fs::symlink_metadata(DEV_LOG).is_ok();
            if exists && stale_dev_log_of_ours() {
                let _ = fs::remove_file(DEV_LOG);
                let _ = fs::remove_file(DEV_LOG_MARKER);
            }
            if fs::symlink_metadata(DEV_LOG).is_err() {
                fs::write(DEV_LOG_MARKER, std::process::id().to_string()).unwrap();
                st.rsyslog = Some(Rsyslog::builder().extra_socket(Path::new(DEV_LOG)).start());
            } else {
                eprintln!(
                    "note: {DEV_LOG} already exists (the machine's own syslog); \
                     not replacing it, tests cannot read what PAM modules log there"
                );
                st.rsyslog = None;
            }
        }
        st.users += 1;
        DevLog {
            out: st.rsyslog.as_ref().map(|r| r.out.clone()),
        }
    }

    /// Keeps [`DevLog`] from creating or removing `/dev/log` while the guard
    /// lives (waits for current users to finish first), so a test can prove
    /// that something else leaves the machine's `/dev/log` alone.
    pub fn hold_idle() -> MutexGuard<'static, impl Sized> {
        loop {
            let st = lock(&DEV_LOG_STATE);
            if st.users == 0 {
                return st;
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// When no handle is held: whether /dev/log exists (None while in use).
    pub fn exists_when_idle() -> Option<bool> {
        let st = lock(&DEV_LOG_STATE);
        (st.users == 0).then(|| fs::symlink_metadata(DEV_LOG).is_ok())
    }

    /// Whether messages sent to /dev/log can be read back.
    pub fn readable(&self) -> bool {
        self.out.is_some()
    }

    /// The file messages sent to /dev/log end up in (when readable).
    pub fn out(&self) -> Option<&Path> {
        self.out.as_deref()
    }

    pub fn lines(&self) -> Vec<LogLine> {
        match &self.out {
            Some(p) => fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(LogLine::parse)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Polls for a message satisfying `pred`. None on timeout, or at once
    /// when /dev/log is not ours to read.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&LogLine) -> bool,
    ) -> Option<LogLine> {
        self.out.as_ref()?;
        poll_line(timeout, || self.lines(), pred)
    }
}

impl Drop for DevLog {
    fn drop(&mut self) {
        let mut st = lock(&DEV_LOG_STATE);
        st.users -= 1;
        if st.users == 0 {
            if let Some(r) = st.rsyslog.take() {
                drop(r); // stops rsyslog, removes /dev/log
                let _ = fs::remove_file(DEV_LOG);
                let _ = fs::remove_file(DEV_LOG_MARKER);
            }
        }
    }
}

/// Polls `lines` until one satisfies `pred` or `timeout` passes.
fn poll_line(
    timeout: Duration,
    lines: impl Fn() -> Vec<LogLine>,
    mut pred: impl FnMut(&LogLine) -> bool,
) -> Option<LogLine> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(l) = lines().into_iter().find(|l| pred(l)) {
            return Some(l);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse() {
        let l = LogLine::parse(
            r#"authpriv.err keyward[42]: decision=fail user=bob reason="bad modes \"x\" 0664" ms=1.0"#,
        )
        .unwrap();
        assert_eq!(l.facility, "authpriv");
        assert_eq!(l.severity, "err");
        assert_eq!(l.program, "keyward");
        assert_eq!(l.pid, "42");
        assert_eq!(l.field("decision").as_deref(), Some("fail"));
        assert_eq!(l.field("reason").as_deref(), Some("bad modes \"x\" 0664"));
        assert_eq!(l.field("ms").as_deref(), Some("1.0"));
        assert_eq!(l.field("fp"), None);
    }
}
