//! Logging never blocks a login, and the metrics step never follows or waits
//! on what it finds at the textfile path.
//!
//! A log daemon that stops reading (hung, SIGSTOPped, its queue full) leaves
//! a full socket: a blocking send would hold `keyward keys` until its
//! watchdog kills it, and sshd rejects every key a killed command printed.
//! The stalled socket here is a real unix datagram socket bound by the test
//! that nobody reads, filled until a send would block.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::cachefiles::mkfifo;
use crate::support::keyward::make_cache_dir;
use crate::support::*;

/// A bound datagram socket that nobody reads, full.
struct StalledSocket {
    path: PathBuf,
    sock: UnixDatagram,
}

impl StalledSocket {
    fn new(dir: &Path) -> StalledSocket {
        let path = dir.join("stalled.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // keyward sends as the `keyward` user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let s = StalledSocket { path, sock };
        s.fill();
        s
    }

    /// Sends until the kernel refuses more (the receive queue is full).
    fn fill(&self) {
        let tx = UnixDatagram::unbound().unwrap();
        tx.connect(&self.path).unwrap();
        tx.set_nonblocking(true).unwrap();
        let msg = [b'x'; 512];
        for _ in 0..1_000_000 {
            match tx.send(&msg) {
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("filling the socket: {e}"),
            }
        }
        panic!("the socket never filled");
    }

    /// Reads everything queued (the daemon resumes).
    fn drain(&self) {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 65536];
        while self.sock.recv(&mut buf).is_ok() {}
    }

    /// The messages queued since the last drain.
    fn received(&self) -> Vec<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 65536];
        let mut out = Vec::new();
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }
}

fn lost(cache: &Path) -> u64 {
    fs::symlink_metadata(cache.join(".log-lost")).map_or(0, |m| m.len())
}

/// The value of a sample line `NAME VALUE` in a textfile.
fn sample(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn a_stalled_log_socket_neither_fails_a_key_login_nor_loses_count() {
    let dir = TestDir::new("stalled");
    let stalled = StalledSocket::new(dir.path());
    let cache = dir.join("cache");
    ensure_system_user("keyward");
    make_cache_dir(&cache, "keyward");
    let nginx = Nginx::start();
    let prom = dir.subdir("textfile").join("keyward.prom");
    chown_to(prom.parent().unwrap(), "keyward");
    // The watchdog fires at timeout + 5 s: a blocked send ends in SIGALRM.
    let config = KwConfig::new(&cache, Some(&stalled.path))
        .url(nginx.users_url())
        .timeout("1s");
    let kw = Keyward::with_config(&config);
    let user = TestUser::new();
    let key = SshKey::ed25519(dir.path(), "k");
    nginx.put_keys(&user.name, &format!("{}\n", key.public_line()));

    // The lookup sshd makes, run directly: exit 0 with the key.
    let out = kw.keys_as_keyward(&user.name, Some(&key.fingerprint()));
    assert_eq!(
        out.code,
        Some(0),
        "a stalled logger must not fail the lookup: {out}"
    );
    assert!(out.stdout.contains(&key.public_material()), "{out}");
    // The record went to stderr instead, and was counted.
    assert!(out.stderr.contains("decision=match"), "{out}");
    assert_eq!(lost(&cache), 1, "one record lost, one counted");

    // Through real sshd: the key login works with the logger still stalled.
    let sshd = Sshd::builder()
        .authorized_keys_command(&kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();
    let before = lost(&cache);
    let r = sshd.login(&user.name, &key.path, "id -un");
    assert!(
        r.ok,
        "key login with a stalled logger: {r}\n{}",
        sshd.log_text()
    );
    assert_eq!(r.stdout().trim(), user.name, "{r}");
    assert!(
        lost(&cache) > before,
        "sshd's lookups were lost and counted"
    );

    // The daemon reads again: sync's own records get through, and the
    // metric reports every record lost so far.
    stalled.drain();
    let count = lost(&cache);
    let out = kw.run(&["sync", "--metrics-file", prom.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let text = fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("# TYPE keyward_log_records_lost_total counter"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "keyward_log_records_lost_total"),
        Some(count.to_string()),
        "{text}"
    );
    assert_eq!(lost(&cache), count, "nothing lost once the daemon reads");
    let got = stalled.received();
    assert!(
        got.iter()
            .any(|m| m.contains("keyward[") && m.contains("decision=sync")),
        "sync's record reached the socket: {got:?}"
    );
}

/// The metrics step meets a FIFO, then a symlink, at the textfile path.
#[test]
fn metrics_step_neither_hangs_on_a_fifo_nor_follows_a_symlink() {
    ensure_system_user("keyward");
    let dir = TestDir::new("promfifo");
    let cache = dir.join("cache");
    make_cache_dir(&cache, "keyward");
    let textfiles = dir.subdir("textfile");
    chown_to(&textfiles, "keyward");
    let prom = textfiles.join("keyward.prom");
    let nginx = Nginx::start();
    let log = Rsyslog::start();
    let kw = Keyward::with_config(&KwConfig::new(&cache, Some(&log.socket)).url(nginx.users_url()));
    let key = SshKey::ed25519(dir.path(), "k");
    nginx.put_keys("alice", &format!("{}\n", key.public_line()));
    let out = kw.keys_as_keyward("alice", None);
    assert!(out.success(), "{out}");
    let sync = |what: &str| {
        let out = run(
            &mut kw.command(&["sync", "--metrics-file", prom.to_str().unwrap()]),
            Duration::from_secs(30),
        );
        assert!(
            !out.timed_out,
            "sync hung on a {what} at the textfile path: {out}"
        );
        out
    };

    // A FIFO nobody writes: sync finishes, replaces it, and says so.
    mkfifo(&prom);
    chown_to(&prom, "keyward");
    let out = sync("FIFO");
    assert_eq!(out.code, Some(0), "{out}");
    let md = fs::symlink_metadata(&prom).unwrap();
    assert!(md.file_type().is_file() && !md.file_type().is_fifo());
    assert!(fs::read_to_string(&prom)
        .unwrap()
        .contains("keyward_sync_users"));
    assert!(
        out.stderr.contains("not a regular file"),
        "a warning names the problem: {out}"
    );

    // A symlink to a file that claims a last success: not followed. A
    // failed run (the directory is down) reports no last success, since
    // none is known, rather than the target's.
    let decoy = dir.join("decoy.prom");
    fs::write(
        &decoy,
        "keyward_sync_last_success_timestamp_seconds 12345\n",
    )
    .unwrap();
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&prom).unwrap();
    std::os::unix::fs::symlink(&decoy, &prom).unwrap();
    let down = KwConfig::new(&cache, Some(&log.socket)).url(crate::support::fault::dead_url());
    kw.write_config(&down.to_toml());
    let out = sync("symlink");
    assert_ne!(out.code, Some(0), "the directory is down: {out}");
    let md = fs::symlink_metadata(&prom).unwrap();
    assert!(md.file_type().is_file(), "the link itself is replaced");
    let text = fs::read_to_string(&prom).unwrap();
    assert_eq!(
        sample(&text, "keyward_sync_last_success_timestamp_seconds"),
        None,
        "read through the symlink: {text}"
    );
    assert_eq!(
        fs::read_to_string(&decoy).unwrap(),
        "keyward_sync_last_success_timestamp_seconds 12345\n"
    );
    assert!(out.stderr.contains("symlink"), "{out}");
}

/// A stream syslog socket (as some syslog-ng set-ups use) whose daemon
/// stopped accepting: the listen backlog is full, so a blocking connect
/// would wait. Python's socket module plays the daemon (listen(0), the
/// backlog filled by its own connections).
struct StalledListener {
    path: PathBuf,
    child: std::process::Child,
}

impl StalledListener {
    fn new(dir: &Path) -> StalledListener {
        use std::io::BufRead;
        let path = dir.join("stalled-stream.sock");
        let script = r#"
import os, socket, sys, time
p = sys.argv[1]
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(p)
os.chmod(p, 0o666)
l.listen(0)
held = []
while True:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(p)
    except BlockingIOError:
        break
    held.append(c)
print("full", len(held), flush=True)
time.sleep(3600)
"#;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("full"), "the listener: {line:?}");
        StalledListener { path, child }
    }
}

impl Drop for StalledListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_stream_log_socket_with_a_full_backlog_does_not_fail_a_key_login() {
    let dir = TestDir::new("stalled-stream");
    let stalled = StalledListener::new(dir.path());
    let cache = dir.join("cache");
    ensure_system_user("keyward");
    make_cache_dir(&cache, "keyward");
    let nginx = Nginx::start();
    let config = KwConfig::new(&cache, Some(&stalled.path))
        .url(nginx.users_url())
        .timeout("1s");
    let kw = Keyward::with_config(&config);
    let key = SshKey::ed25519(dir.path(), "k");
    let user = fake_user();
    nginx.put_keys(&user, &format!("{}\n", key.public_line()));
    let out = kw.keys_as_keyward(&user, Some(&key.fingerprint()));
    assert_eq!(
        out.code,
        Some(0),
        "a stalled logger must not fail the lookup: {out}"
    );
    assert!(out.stdout.contains(&key.public_material()), "{out}");
    assert!(out.stderr.contains("decision=match"), "{out}");
    assert_eq!(lost(&cache), 1, "one record lost, one counted");
}
