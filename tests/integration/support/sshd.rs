//! A private sshd on 127.0.0.1, and the ssh client helpers.
//!
//! `sshd -f CONF -E LOG` with its own Port, PidFile and log; checked with
//! `sshd -t` first; killed (from its PidFile) on drop. Optionally started in
//! a private mount namespace where a test PAM stack is bind-mounted over
//! /etc/pam.d/sshd (the rest of the machine keeps seeing the real file).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::devlog::PrivateDevLog;
use super::{free_port, prepare_sshd_host, run, wait_port, wait_until, Out, TestDir};

/// Builder for [`Sshd`]. Later `set` calls replace defaults; `line`s are
/// written before the defaults (in sshd_config the first value wins);
/// `match_block`s go at the end.
pub struct SshdBuilder {
    settings: Vec<(String, String)>,
    lines: Vec<String>,
    matches: Vec<String>,
    /// (file, target) bind mounts of a private mount namespace.
    binds: Vec<(PathBuf, String)>,
    /// Shell set-up run first in that namespace (e.g. a private /dev/log).
    preludes: Vec<String>,
    /// No `-E`: sshd logs through syslog(3), with its pid (use with
    /// [`SshdBuilder::dev_log`]).
    syslog_only: bool,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        let d = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        SshdBuilder {
            settings: vec![
                d("HostKey", "/etc/ssh/ssh_host_ed25519_key"),
                d("AuthorizedKeysFile", "none"),
                d("AuthorizedKeysCommandUser", "keyward"),
                d("LogLevel", "VERBOSE"),
                d("UsePAM", "no"),
                d("PermitRootLogin", "no"),
                d("UseDNS", "no"),
                d("PrintMotd", "no"),
                d("PrintLastLog", "no"),
                d("LoginGraceTime", "60"),
                d("MaxStartups", "100"),
                d("MaxAuthTries", "10"),
                d("StrictModes", "yes"),
            ],
            lines: Vec::new(),
            matches: Vec::new(),
            binds: Vec::new(),
            preludes: Vec::new(),
            syslog_only: false,
        }
    }
}

impl SshdBuilder {
    /// Sets (or replaces) a global keyword.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        if let Some(slot) = self
            .settings
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            slot.1 = value.to_owned();
        } else {
            self.settings.push((key.to_owned(), value.to_owned()));
        }
        self
    }

    /// `AuthorizedKeysCommand CMD` (see `Keyward::authorized_keys_command`).
    pub fn authorized_keys_command(self, cmd: &str) -> Self {
        self.set("AuthorizedKeysCommand", cmd)
    }

    pub fn authorized_keys_command_user(self, user: &str) -> Self {
        self.set("AuthorizedKeysCommandUser", user)
    }

    /// A raw global line, written before the defaults (so it wins).
    pub fn line(mut self, l: &str) -> Self {
        self.lines.push(l.to_owned());
        self
    }

    /// A `Match` block, written at the end.
    pub fn match_block(mut self, block: &str) -> Self {
        self.matches.push(block.to_owned());
        self
    }

    /// Start sshd in a private mount namespace where `stack` is
    /// bind-mounted over /etc/pam.d/sshd. Implies `UsePAM yes`.
    pub fn pam_stack(self, stack: &Path) -> Self {
        self.bind(stack, "/etc/pam.d/sshd").set("UsePAM", "yes")
    }

    /// Start sshd in a private mount namespace where `file` is bind-mounted
    /// over `target`; the rest of the machine keeps seeing its own file.
    pub fn bind(mut self, file: &Path, target: &str) -> Self {
        self.binds.push((file.to_owned(), target.to_owned()));
        self
    }

    /// Start sshd in a private mount namespace where `/dev/log` is the
    /// private rsyslog of `log` (what the PAM modules in sshd log through
    /// syslog(3) lands there; the machine's /dev/log is left alone).
    pub fn dev_log(mut self, log: &PrivateDevLog) -> Self {
        self.preludes.push(log.prelude());
        self
    }

    /// sshd logs through syslog(3) (its pid in every line) instead of to
    /// its `-E` file; with [`SshdBuilder::dev_log`] the lines land in that
    /// private rsyslog, and [`Sshd::log_text`] stays empty.
    pub fn syslog_only(mut self) -> Self {
        self.syslog_only = true;
        self
    }

    pub fn start(self) -> Sshd {
        prepare_sshd_host();
        let dir = TestDir::new("sshd");
        // A port can be taken between the check and sshd's bind: retry.
        for attempt in 0.. {
            let port = free_port();
            let conf = dir.join("sshd_config");
            let log = dir.join("sshd.log");
            let pidfile = dir.join("sshd.pid");
            let text = self.config_text(port, &pidfile);
            fs::write(&conf, &text).unwrap();
            fs::write(&log, "").unwrap();
            let _ = fs::remove_file(&pidfile);
            let t = run(
                Command::new("/usr/sbin/sshd")
                    .arg("-t")
                    .arg("-f")
                    .arg(&conf),
                Duration::from_secs(30),
            );
            assert!(t.success(), "sshd -t -f {}: {t}\n{text}", conf.display());
            let started = self.spawn(&conf, &log);
            if !started.success() {
                let l = fs::read_to_string(&log).unwrap_or_default();
                if attempt < 3
                    && (l.contains("Address already in use") || l.contains("Cannot bind"))
                {
                    continue;
                }
                panic!("starting sshd: {started}\n--- sshd log ---\n{l}");
            }
            let mut sshd = Sshd {
                port,
                conf,
                log,
                pidfile,
                pid: None,
                dir,
            };
            let have_pid = wait_until(Duration::from_secs(10), || sshd.read_pid().is_some());
            sshd.pid = sshd.read_pid();
            if !have_pid || !wait_port(port, Duration::from_secs(10)) {
                let l = sshd.log_text();
                drop(sshd);
                panic!("sshd did not come up on port {port}:\n{l}");
            }
            return sshd;
        }
        unreachable!()
    }

    fn config_text(&self, port: u16, pidfile: &Path) -> String {
        let mut text = String::new();
        for l in &self.lines {
            text += l;
            text += "\n";
        }
        text += &format!(
            "Port {port}\nListenAddress 127.0.0.1\nPidFile {}\n",
            pidfile.display()
        );
        for (k, v) in &self.settings {
            text += &format!("{k} {v}\n");
        }
        for m in &self.matches {
            text += m;
            text += "\n";
        }
        text
    }

    /// Runs sshd (it daemonises once it listens); the result of the parent.
    fn spawn(&self, conf: &Path, log: &Path) -> Out {
        if self.binds.is_empty() && self.preludes.is_empty() {
            return run(
                Command::new("/usr/sbin/sshd")
                    .arg("-f")
                    .arg(conf)
                    .arg("-E")
                    .arg(log),
                Duration::from_secs(30),
            );
        }
        let mounts: Vec<String> = self
            .binds
            .iter()
            .map(|(file, target)| format!("mount --bind '{}' '{target}'", file.display()))
            .collect();
        let mut script = self.preludes.concat();
        for m in mounts {
            script += &m;
            script += " &&\n";
        }
        script += &format!("exec /usr/sbin/sshd -f '{}'", conf.display());
        if !self.syslog_only {
            script += &format!(" -E '{}'", log.display());
        }
        run(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(script),
            Duration::from_secs(30),
        )
    }
}

/// A running private sshd; killed on drop.
pub struct Sshd {
    pub port: u16,
    pub conf: PathBuf,
    /// `-E` log file: sshd's own messages (Accepted/Failed publickey …).
    pub log: PathBuf,
    pidfile: PathBuf,
    pid: Option<i32>,
    dir: TestDir,
}

impl Sshd {
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// A default sshd running `cmd` as AuthorizedKeysCommand (user keyward).
    pub fn with_command(cmd: &str) -> Sshd {
        Self::builder().authorized_keys_command(cmd).start()
    }

    fn read_pid(&self) -> Option<i32> {
        fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls sshd's log until a line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().contains(needle))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Logs in with a key: see [`ssh_key_login`].
    pub fn login(&self, user: &str, key: &Path, cmd: &str) -> SshOut {
        ssh_key_login(self.port, user, key, None, cmd)
    }

    /// Logs in with a key and a certificate.
    pub fn login_cert(&self, user: &str, key: &Path, cert: &Path, cmd: &str) -> SshOut {
        ssh_key_login(self.port, user, key, Some(cert), cmd)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let pid = self.pid.or_else(|| self.read_pid());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let gone = wait_until(Duration::from_secs(5), || unsafe {
                libc::kill(pid, 0) != 0
            });
            if !gone {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// What an ssh client run did.
#[derive(Debug, Clone)]
pub struct SshOut {
    /// Logged in and the remote command exited 0.
    pub ok: bool,
    pub out: Out,
}

impl SshOut {
    pub fn stdout(&self) -> &str {
        &self.out.stdout
    }
}

impl std::fmt::Display for SshOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ok={} {}", self.ok, self.out)
    }
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn base_client_args(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect()
}

/// `ssh -F /dev/null -o BatchMode=yes … -o IdentitiesOnly=yes -i KEY
/// [-o CertificateFile=CERT] -p PORT USER@127.0.0.1 CMD`.
pub fn ssh_key_login(port: u16, user: &str, key: &Path, cert: Option<&Path>, cmd: &str) -> SshOut {
    let mut c = Command::new("ssh");
    c.env_remove("SSH_AUTH_SOCK")
        .args(base_client_args(port))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            "PreferredAuthentications=publickey",
            "-i",
        ])
        .arg(key);
    if let Some(cert) = cert {
        c.arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
    }
    c.arg(format!("{user}@127.0.0.1")).arg(cmd);
    let started = Instant::now();
    let out = run(&mut c, CLIENT_TIMEOUT);
    let _ = started;
    SshOut {
        ok: out.success(),
        out,
    }
}

/// `sshpass -p PW ssh -o PubkeyAuthentication=no
/// -o PreferredAuthentications=METHOD … USER@127.0.0.1 CMD`, where METHOD
/// is `password` or `keyboard-interactive`.
pub fn ssh_password_login(
    port: u16,
    user: &str,
    password: &str,
    method: &str,
    cmd: &str,
) -> SshOut {
    let mut c = Command::new("sshpass");
    c.env_remove("SSH_AUTH_SOCK")
        .arg("-p")
        .arg(password)
        .arg("ssh")
        .args(base_client_args(port))
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
        ])
        .arg(format!("PreferredAuthentications={method}"))
        .arg(format!("{user}@127.0.0.1"))
        .arg(cmd);
    let out = run(&mut c, CLIENT_TIMEOUT);
    SshOut {
        ok: out.success(),
        out,
    }
}
