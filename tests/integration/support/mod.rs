//! Shared helpers for the integration tests.
//!
//! Every test runs as root on a disposable Debian 12 machine and starts
//! private instances (nginx, rsyslog, sshd) on 127.0.0.1. Each helper cleans
//! up on `Drop` (daemons killed, directories and users removed) and is safe to
//! use from tests running in parallel threads: ports, directories and user
//! names are unique per process and per call.
//!
//! Nothing here touches the machine's own sshd, PAM or syslog configuration.
//! `/dev/log` is never touched by the PAM tests: they give pamtester and sshd
//! a private one in their mount namespace ([`devlog::PrivateDevLog`]). The
//! older shared fixture [`rsyslog::DevLog`] only creates `/dev/log` when the
//! machine has none, and removes it again with its last user.
//!
//! Layout:
//! - this file: unique directories, ports, names, running commands with a
//!   timeout, test users and groups, waiting helpers;
//! - [`nginx`]: a private nginx serving a directory (the key directory);
//! - [`fault`]: misbehaving HTTP servers (black hole, slow drip, truncated);
//! - [`rsyslog`]: a private rsyslogd and the shared `/dev/log` fixture;
//! - [`devlog`]: a private `/dev/log` inside a mount namespace (for code
//!   that can only use syslog(3), e.g. PAM modules), the machine's untouched;
//! - [`skip`]: tests that cannot run their real check say so (and fail
//!   under CI);
//! - [`sshkeys`]: key generation, fingerprints, user certificates;
//! - [`keyward`]: installing the binary where sshd accepts it, its config,
//!   running `keyward keys`;
//! - [`keysenv`]: keyward + cache dir + private rsyslog, one lookup → its
//!   one syslog line;
//! - [`signeddir`]: a directory `keyward publish` signs on a real nginx and
//!   a host syncing from it (records and the paths nginx served);
//! - [`sshd`]: a private sshd and the ssh client helpers.

#![allow(dead_code, unused_imports)]

pub mod cachefiles;
pub mod checks;
pub mod devlog;
pub mod fault;
pub mod keysenv;
pub mod keyward;
pub mod nginx;
pub mod nspawn;
pub mod rsyslog;
pub mod signeddir;
pub mod skip;
pub mod slapd;
pub mod sshd;
pub mod sshkeys;

mod selftest;

pub use devlog::{dev_log_identity, PrivateDevLog};
pub use fault::FaultServer;
pub use keysenv::{fake_user, materials, KeysEnv, Lookup};
pub use keyward::{Keyward, KwConfig};
pub use nginx::Nginx;
pub use rsyslog::{DevLog, Rsyslog};
pub use skip::skip;
pub use sshd::{ssh_key_login, ssh_password_login, SshOut, Sshd};
pub use sshkeys::{KeyType, SshKey};

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// Root of every test directory: sshd and keyward refuse anything under a
/// world-writable tree such as /tmp, so tests live under /var/lib.
pub const TEST_ROOT: &str = "/var/lib/keyward-tests";

/// Root of installed test binaries (root-owned, 0755 all the way up).
pub const BIN_ROOT: &str = "/usr/local/lib/keyward-tests";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this process.
pub fn unique() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// `prefix-<pid>-<n>`: unique within this machine while this process lives.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), unique())
}

/// Locks a mutex even if a panicking test poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `path` and its missing parents as root-owned 0755 directories,
/// and makes sure every existing component is root-owned and not
/// group/world-writable (what sshd's safe_path() and keyward require).
pub fn mkdir_root_0755(path: &Path) {
    let mut cur = PathBuf::from("/");
    for comp in path.components().skip(1) {
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => {
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755)).unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("mkdir {}: {e}", cur.display()),
        }
    }
    let mut cur = PathBuf::from("/");
    for comp in path.components().skip(1) {
        cur.push(comp);
        let md = fs::metadata(&cur).unwrap_or_else(|e| panic!("stat {}: {e}", cur.display()));
        assert!(
            md.uid() == 0 && md.mode() & 0o022 == 0,
            "{} must be root-owned and not group/world-writable (mode {:o}, uid {})",
            cur.display(),
            md.mode() & 0o7777,
            md.uid()
        );
    }
}

/// A unique directory `/var/lib/keyward-tests/<name>-<pid>-<n>`, root-owned
/// 0755 with root-owned 0755 parents. Removed (recursively) on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let root = Path::new(TEST_ROOT);
        mkdir_root_0755(root);
        let path = root.join(unique_name(name));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// Creates a subdirectory (root-owned, 0755) and returns its path.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Writes a root-owned file with `mode` (parents created 0755).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let p = self.path.join(rel);
        write_file(&p, contents, mode);
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Writes `contents` to `path` with `mode` (parents created 0755).
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent).unwrap();
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `chown NAME:NAME-group PATH` (numeric ids looked up with `id`).
pub fn chown_to(path: &Path, user: &str) {
    let (uid, gid) = user_ids(user).unwrap_or_else(|| panic!("no such user {user}"));
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} {user}: {e}", path.display()));
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// (uid, primary gid) of a user, via `id`.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let uid = Command::new("id").args(["-u", user]).output().ok()?;
    let gid = Command::new("id").args(["-g", user]).output().ok()?;
    if !uid.status.success() || !gid.status.success() {
        return None;
    }
    let p = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().parse().ok();
    Some((p(&uid)?, p(&gid)?))
}

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1 for a daemon to listen on. Never hands out
/// the same port twice in one process. Ports come from 20000-32767, below
/// the kernel's ephemeral range (32768-60999 by default), so that client
/// connections and `bind(0)` listeners (fault servers) cannot grab a port
/// between this check and the daemon's own bind; the kernel's own choice
/// (bind to port 0) is the fallback.
pub fn free_port() -> u16 {
    let mut used = lock(&PORTS);
    let used = used.get_or_insert_with(HashSet::new);
    // a cheap per-process spread so parallel test processes rarely collide
    let seed = std::process::id() as usize * 7919 + unique() * 104_729;
    for i in 0..2000 {
        let port = 20000 + ((seed + i * 6151) % 12768) as u16;
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// Waits until something accepts TCP connections on 127.0.0.1:port.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || {
        std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_millis(200),
        )
        .is_ok()
    })
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a finished (or killed) command did.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code; None when killed by a signal (or by the timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Non-empty, trimmed stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit={:?}{} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code,
            if self.timed_out { " (timed out)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (stdin /dev/null, stdout and stderr captured), killing it
/// after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Out {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    Out {
        code: if timed_out { None } else { status.code() },
        stdout,
        stderr,
        elapsed,
        timed_out,
    }
}

/// Runs a setup command and panics with its output unless it succeeds.
pub fn must(cmd: &mut Command) -> Out {
    let desc = format!("{cmd:?}");
    let out = run(cmd, Duration::from_secs(120));
    assert!(out.success(), "{desc} failed: {out}");
    out
}

/// `ssh-keygen -A` and `mkdir -p /run/sshd`, once per process.
pub fn prepare_sshd_host() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        must(Command::new("ssh-keygen").arg("-A"));
        fs::create_dir_all("/run/sshd").unwrap();
        chmod(Path::new("/run/sshd"), 0o755);
    });
}

// ---------------------------------------------------------------------------
// Users and groups
// ---------------------------------------------------------------------------

/// useradd/userdel/groupadd lock /etc/passwd: one at a time in this process,
/// and retried when another process holds the lock.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn account_cmd(program: &str, args: &[&str]) -> Out {
    let _g = lock(&ACCOUNTS);
    let mut last = None;
    for _ in 0..20 {
        let out = run(Command::new(program).args(args), Duration::from_secs(60));
        // 10 = cannot lock /etc/passwd (shadow-utils); try again.
        if out.code == Some(10) || out.stderr.contains("cannot lock") {
            last = Some(out);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        return out;
    }
    last.unwrap()
}

/// Creates a system account (no home, nologin) unless it exists; kept.
pub fn ensure_system_user(name: &str) {
    if user_ids(name).is_some() {
        return;
    }
    let out = account_cmd(
        "useradd",
        &[
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
    );
    // 9 = already exists (a parallel test won the race).
    assert!(
        out.success() || out.code == Some(9),
        "useradd --system {name}: {out}"
    );
}

/// A throwaway login account, removed with `userdel -r` on drop.
pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub password: Option<String>,
}

/// Options for [`TestUser`].
#[derive(Default)]
pub struct UserBuilder {
    password: Option<String>,
    groups: Vec<String>,
    ids: Vec<String>,
}

impl UserBuilder {
    /// Sets a password (chpasswd). Without one the account has no usable
    /// password but is not locked (`*`), so sshd accepts key logins.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_owned());
        self
    }

    /// A second root account (`useradd -o -u 0`), like BSD's `toor`.
    pub fn uid0(mut self) -> Self {
        self.ids.extend(["-o".into(), "-u".into(), "0".into()]);
        self
    }

    /// Primary group root (`useradd -g 0`).
    pub fn gid0(mut self) -> Self {
        self.ids.extend(["-N".into(), "-g".into(), "0".into()]);
        self
    }

    /// Adds a supplementary group (must exist, e.g. a [`TestGroup`]).
    pub fn group(mut self, g: &str) -> Self {
        self.groups.push(g.to_owned());
        self
    }

    pub fn create(self) -> TestUser {
        // "kwt" + counter + "x" + pid: short (<= 32 bytes), POSIX-portable,
        // unique on this machine while this process lives.
        let name = format!("kwt{}x{}", unique(), std::process::id());
        assert!(name.len() <= 32);
        let home = PathBuf::from(format!("/home/{name}"));
        let home_s = home.to_str().unwrap().to_owned();
        let mut args: Vec<&str> = vec!["-m", "-d", &home_s, "-s", "/bin/bash"];
        let groups = self.groups.join(",");
        if !groups.is_empty() {
            args.extend(["-G", &groups]);
        }
        args.extend(self.ids.iter().map(String::as_str));
        args.push(&name);
        let out = account_cmd("useradd", &args);
        assert!(out.success(), "useradd {name}: {out}");
        let mut user = TestUser {
            name: name.clone(),
            home,
            uid: 0,
            gid: 0,
            password: self.password.clone(),
        };
        // From here on, Drop removes the account even if a step fails.
        let (uid, gid) = user_ids(&name).expect("id of new user");
        user.uid = uid;
        user.gid = gid;
        match &self.password {
            Some(pw) => {
                let _g = lock(&ACCOUNTS);
                let mut child = Command::new("chpasswd")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("chpasswd");
                use std::io::Write;
                writeln!(child.stdin.take().unwrap(), "{name}:{pw}").unwrap();
                assert!(child.wait().unwrap().success(), "chpasswd {name}");
            }
            None => {
                // useradd leaves "!" (locked): sshd refuses locked accounts
                // for every method when UsePAM is off. "*" = no password.
                let out = account_cmd("usermod", &["-p", "*", &name]);
                assert!(out.success(), "usermod -p '*' {name}: {out}");
            }
        }
        user
    }
}

impl TestUser {
    /// A user with no password (key logins only).
    pub fn new() -> TestUser {
        UserBuilder::default().create()
    }

    pub fn builder() -> UserBuilder {
        UserBuilder::default()
    }

    pub fn with_password(pw: &str) -> TestUser {
        UserBuilder::default().password(pw).create()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // -f: also when a session process is still winding down.
        let out = account_cmd("userdel", &["-r", "-f", &self.name]);
        if !(out.success() || out.code == Some(12)) {
            // 12 = could not remove home (already gone); anything else: tell.
            eprintln!("warning: userdel -r {}: {out}", self.name);
        }
    }
}

/// A throwaway group (e.g. a break-glass group), removed on drop.
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn new() -> TestGroup {
        let name = format!("kwg{}x{}", unique(), std::process::id());
        let out = account_cmd("groupadd", &[&name]);
        assert!(out.success(), "groupadd {name}: {out}");
        TestGroup { name }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = account_cmd("groupdel", &[&self.name]);
    }
}

/// The PAM module this test binary was built with. `cargo test` builds the
/// lib target with both crate types, but leaves the cdylib in `deps/` next to
/// the test binary (only `cargo build` copies it up to `target/<profile>/`,
/// where it may be older than this test binary, or missing on a clean tree).
pub fn built_pam_module() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.join("libpam_keyward.so"),
        deps.parent()
            .expect("target/<profile>")
            .join("libpam_keyward.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("libpam_keyward.so not found in {candidates:?}: cargo build --lib")
        })
}

/// Every file under `dir` (subfolders as `SUB/FILE`) with its bytes: to
/// prove a refused or failed run wrote nothing.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            for (sub, bytes) in files_under(&e.path()) {
                files.insert(format!("{name}/{sub}"), bytes);
            }
        } else {
            files.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    files
}
