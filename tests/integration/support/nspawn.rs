//! A booted Debian 12 container for tests that need a machine whose /etc
//! they may change: a tree made once with debootstrap (cached under
//! /var/lib, reused by every later run) and booted with
//! `systemd-nspawn --volatile=overlay` (the tree stays read-only, every
//! change lives in a tmpfs and is gone when the container stops). It
//! shares the host's network, so the host's 127.0.0.1 services (nginx,
//! slapd) are reachable from inside and its sshd from the host. Killed on
//! drop, never left running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{run, wait_until, Out, TestDir};

/// The Debian mirror the host's apt uses.
fn mirror() -> String {
    let out = run(
        Command::new("sh").args([
            "-c",
            "grep -rhs '^URIs:' /etc/apt/sources.list.d; grep -hs '^deb ' /etc/apt/sources.list",
        ]),
        Duration::from_secs(10),
    );
    out.stdout
        .lines()
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with("http") && w.contains("debian") && !w.contains("security"))
        .unwrap_or("http://deb.debian.org/debian")
        .trim_end_matches('/')
        .to_owned()
}

/// The cached bookworm tree at `path` with the packages `include` (a
/// debootstrap `--include` list), made once: it counts as made when every
/// file in `marks` exists in it. Tests that need the same tree wait for the
/// one making it (a lock beside it) rather than make it twice at once.
pub fn tree(path: &str, include: &str, marks: &[&str]) -> PathBuf {
    let base = PathBuf::from(path);
    let made = || marks.iter().all(|m| base.join(m).exists());
    if made() {
        return base;
    }
    for tool in ["/usr/sbin/debootstrap", "/usr/bin/systemd-nspawn"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: apt-get install -y debootstrap systemd-container"
        );
    }
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    let lock = fs::File::create(format!("{path}.lock")).unwrap();
    // SAFETY: flock(2) on a descriptor this function owns; released when
    // `lock` is dropped at the end of the function.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {path}.lock");
    if made() {
        return base;
    }
    let tmp = format!("{path}.tmp-{}", std::process::id());
    // A mirror can answer one attempt badly (an InRelease caught while it is
    // being replaced fails its signature check): one more try.
    let mut out = None;
    for _ in 0..2 {
        let _ = fs::remove_dir_all(&tmp);
        let o = run(
            Command::new("debootstrap").args([
                "--variant=minbase",
                &format!("--include={include}"),
                "bookworm",
                &tmp,
                &mirror(),
            ]),
            Duration::from_secs(1200),
        );
        let ok = o.success();
        out = Some(o);
        if ok {
            break;
        }
    }
    let out = out.unwrap();
    assert!(out.success(), "debootstrap: {out}");
    for m in marks {
        assert!(Path::new(&tmp).join(m).exists(), "debootstrap made no {m}");
    }
    // Another test process may have finished first: either tree is fine.
    if fs::rename(&tmp, &base).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    base
}

/// A booted container; killed on drop (its PID 1, then systemd-nspawn).
pub struct Container {
    nspawn: Child,
    /// The container's PID 1, as the host sees it.
    init: u32,
    _files: TestDir,
}

impl Container {
    /// Boots `tree` with `files` bind-mounted read-only at /mnt/kw and each
    /// `(host path, container path)` of `binds` read-only; waits until its
    /// systemd reports the boot done.
    pub fn boot(tree: &Path, files: TestDir, binds: &[(PathBuf, &str)]) -> Container {
        let name = format!("kwt-{}-{}", std::process::id(), super::unique());
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args(["-q", "--boot", "--register=no", "--keep-unit"])
            .arg(format!("--machine={name}"))
            // Names the test process in the container's PID 1 environment:
            // test.sh's leftover check finds containers that outlive it.
            .arg(format!("--setenv=KEYWARD_TEST_PID={}", std::process::id()))
            .arg("-D")
            .arg(tree)
            .arg("--volatile=overlay")
            .arg(format!("--bind-ro={}:/mnt/kw", files.path().display()));
        for (host, inside) in binds {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn");
        let pid = nspawn.id();
        let mut init = 0;
        wait_until(Duration::from_secs(30), || {
            let out = run(
                Command::new("pgrep").args(["-P", &pid.to_string()]),
                Duration::from_secs(5),
            );
            init = out
                .stdout
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            // the forked child execs systemd once the container is set up
            init != 0
                && fs::read_to_string(format!("/proc/{init}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
        });
        let c = Container {
            nspawn,
            init,
            _files: files,
        };
        assert!(c.init != 0, "no PID 1 under systemd-nspawn {pid}");
        // "offline" or no bus at all until the manager answers
        let mut up = c.sh("systemctl is-system-running --wait");
        wait_until(Duration::from_secs(90), || {
            up = c.sh("systemctl is-system-running --wait");
            matches!(up.stdout.trim(), "running" | "degraded")
        });
        assert!(
            matches!(up.stdout.trim(), "running" | "degraded"),
            "container did not boot: {up}\n{}",
            c.sh("systemctl --failed --no-pager").stdout
        );
        c
    }

    /// Runs a shell command inside (all namespaces of PID 1).
    pub fn sh(&self, script: &str) -> Out {
        run(
            Command::new("nsenter").args(["-t", &self.init.to_string(), "-a", "sh", "-c", script]),
            Duration::from_secs(180),
        )
    }

    /// Runs a shell command inside and panics with its output unless it
    /// succeeds; its stdout.
    pub fn must(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.success(), "in the container: {script}: {out}");
        out.stdout
    }

    /// A journalctl query's output once `found` holds (journald files what
    /// its sockets received a moment after the sender is done; under load
    /// that moment grows), or the last output after 30 s.
    pub fn journal(&self, query: &str, found: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        wait_until(Duration::from_secs(30), || {
            text = self.must(query);
            found(&text)
        });
        text
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing systemd-nspawn alone leaves the booted container running
        // (its PID 1 is reparented to the host's): kill the container's
        // PID 1, which ends every process in its PID namespace, then let
        // nspawn tear down its mounts and exit.
        if self.init != 0 {
            // SAFETY: kill(2) with a pid this test found under its nspawn.
            unsafe { libc::kill(self.init as libc::pid_t, libc::SIGKILL) };
        }
        let done = wait_until(Duration::from_secs(20), || {
            matches!(self.nspawn.try_wait(), Ok(Some(_)))
        });
        if !done {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}
