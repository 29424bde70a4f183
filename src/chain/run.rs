//! Running the chained commands: side by side, each bounded by its own
//! time share and the output limit, read with poll(2) on the calling thread
//! (no thread: the login path changes uids and capabilities afterwards,
//! which must happen while the process has one thread).
//!
//! Which account a command runs as: keyward runs as sshd's
//! AuthorizedKeysCommandUser. As root it switches each command's process to
//! the configured `user` (its groups, gid and uid, as sshd's subprocess()
//! does) before exec; any other account cannot switch, so a command then
//! runs only when its `user` is that very account, and otherwise fails as a
//! source, saying so.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{expand, Ran, Values};
use crate::config::command::CommandConfig;
use crate::os::nss;
use crate::os::privdrop;
use crate::os::safepath::{self, Kind};

/// sshd's `_PATH_STDPATH`, the PATH it gives its own command.
const STD_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";
/// How much of a command's stderr goes into the log.
const STDERR_KEPT: usize = 512;

/// sshd's check of its AuthorizedKeysCommand (auth2-pubkey.c, through
/// `auth_secure_path`): the program, symlinks resolved, a regular file,
/// and it and every directory up to `/` owned by root and not group- or
/// world-writable.
pub fn check_program(path: &Path) -> Result<(), String> {
    let nodes = safepath::stat_chain(path, None).map_err(|e| e.to_string())?;
    for (i, n) in nodes.iter().enumerate() {
        let kind = if i == 0 { Kind::File } else { Kind::Dir };
        safepath::check(&n.path, kind, n.uid, n.mode, &[0])
            .map_err(|e| format!("unsafe program path: {e}"))?;
    }
    Ok(())
}

/// Whom a command runs as.
struct RunAs {
    acct: nss::Account,
    /// The groups to set, when keyward switches (root); None: it runs as
    /// keyward's own account.
    groups: Option<Vec<libc::gid_t>>,
}

fn run_as(cmd: &CommandConfig) -> Result<RunAs, String> {
    let user = &cmd.user;
    let acct = nss::account(user)
        .map_err(|e| format!("looking up user {user}: {e}"))?
        .ok_or_else(|| format!("user {user} does not exist"))?;
    let euid = privdrop::euid();
    if euid == 0 {
        let groups = nss::groups_of(user, acct.gid)
            .map_err(|e| format!("looking up the groups of {user}: {e}"))?;
        return Ok(RunAs {
            acct,
            groups: Some(groups),
        });
    }
    if acct.uid != euid {
        return Err(format!(
            "it must run as {user}, and keyward runs as uid {euid} (sshd's AuthorizedKeysCommandUser), which cannot switch users: set user to that account, or AuthorizedKeysCommandUser root"
        ));
    }
    Ok(RunAs { acct, groups: None })
}

/// One running command.
struct Job {
    name: String,
    required: bool,
    child: Child,
    out: Option<ChildStdout>,
    err: Option<ChildStderr>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timeout: Duration,
    deadline: Instant,
    status: Option<ExitStatus>,
    failed: Option<String>,
}

impl Job {
    fn done(&self) -> bool {
        self.failed.is_some() || (self.out.is_none() && self.err.is_none() && self.status.is_some())
    }

    /// Kills its whole process group (it leads one) and reaps it.
    fn kill(&mut self, why: String) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals our own child's process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        self.out = None;
        self.err = None;
        self.failed.get_or_insert(why);
    }

    fn ran(mut self) -> Ran {
        let result = match (self.failed.take(), self.status) {
            (Some(why), _) => Err(why),
            (None, Some(st)) if st.success() => {
                Ok(String::from_utf8_lossy(&self.stdout).into_owned())
            }
            (None, Some(st)) => Err(match (st.code(), st.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (_, Some(s)) => format!("killed by signal {s}"),
                _ => "ended abnormally".into(),
            }),
            (None, None) => Err("not waited for".into()),
        };
        // The record escapes what it logs.
        let stderr = String::from_utf8_lossy(&self.stderr).into_owned();
        Ran {
            name: std::mem::take(&mut self.name),
            required: self.required,
            result,
            stderr,
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill("abandoned".into());
        }
    }
}

/// Starts one command (after sshd's program check) as its account.
fn start(cmd: &CommandConfig, v: &Values) -> Result<Job, String> {
    let argv = expand(&cmd.command.argv, v)?;
    check_program(Path::new(&argv[0]))?;
    let who = run_as(cmd)?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", STD_PATH)
        .env("USER", &who.acct.name)
        .env("LOGNAME", &who.acct.name)
        .env("HOME", &who.acct.home)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the whole group is killed at its deadline.
        .process_group(0);
    if let Some(lang) = std::env::var_os("LANG") {
        c.env("LANG", lang);
    }
    let (uid, gid, groups) = (who.acct.uid, who.acct.gid, who.groups);
    // SAFETY: between fork and exec only async-signal-safe calls, on data
    // prepared before the fork.
    unsafe {
        c.pre_exec(move || {
            if let Some(g) = &groups {
                if libc::setgroups(g.len(), g.as_ptr()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing of root may remain (a saved uid 0 is a way back).
                if uid != 0 && (libc::setuid(0) == 0 || libc::seteuid(0) == 0) {
                    return Err(std::io::Error::other("privilege drop did not stick"));
                }
            }
            // No setuid program can raise what it runs with.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    Ok(Job {
        name: cmd.name.clone(),
        required: cmd.required,
        out: child.stdout.take(),
        err: child.stderr.take(),
        child,
        stdout: Vec::new(),
        stderr: Vec::new(),
        timeout: cmd.timeout.0,
        deadline: started + cmd.timeout.0,
        status: None,
        failed: None,
    })
}

/// Runs every command side by side and returns each one's result, in
/// configuration order. Returns within the longest time share (plus the
/// time to reap a killed process).
pub fn run_all(commands: &[CommandConfig], v: &Values, max_bytes: u64) -> Vec<Ran> {
    let mut slots: Vec<Result<Job, Ran>> = commands
        .iter()
        .map(|c| {
            start(c, v).map_err(|why| Ran {
                name: c.name.clone(),
                required: c.required,
                result: Err(why),
                stderr: String::new(),
            })
        })
        .collect();
    let mut jobs: Vec<&mut Job> = slots.iter_mut().filter_map(|s| s.as_mut().ok()).collect();
    drive(&mut jobs, max_bytes as usize);
    slots
        .into_iter()
        .map(|s| match s {
            Ok(job) => job.ran(),
            Err(ran) => ran,
        })
        .collect()
}

/// The poll loop: reads every open pipe, notices exits, kills at deadlines.
fn drive(jobs: &mut [&mut Job], max_bytes: usize) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        for j in jobs.iter_mut().filter(|j| !j.done()) {
            if j.status.is_none() {
                j.status = j.child.try_wait().ok().flatten();
            }
            if !j.done() && now >= j.deadline {
                let t = j.timeout;
                j.kill(format!("timed out after {}", humantime::format_duration(t)));
            }
        }
        let open: Vec<(usize, bool, libc::c_int)> = jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| !j.done())
            .flat_map(|(i, j)| {
                let o = j.out.as_ref().map(|p| (i, true, p.as_raw_fd()));
                let e = j.err.as_ref().map(|p| (i, false, p.as_raw_fd()));
                o.into_iter().chain(e)
            })
            .collect();
        let Some(next) = jobs.iter().filter(|j| !j.done()).map(|j| j.deadline).min() else {
            return;
        };
        let mut wait = next.saturating_duration_since(now);
        if open.is_empty()
            || jobs
                .iter()
                .any(|j| !j.done() && j.out.is_none() && j.err.is_none())
        {
            // A process that closed its pipes but has not exited: look again soon.
            wait = wait.min(Duration::from_millis(1));
        }
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|&(_, _, fd)| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` holds `fds.len()` initialised pollfd entries.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc <= 0 {
            continue;
        }
        for (k, &(i, is_out, _)) in open.iter().enumerate() {
            if fds[k].revents == 0 {
                continue;
            }
            let j = &mut *jobs[i];
            if j.done() {
                continue;
            }
            read_some(j, is_out, &mut buf, max_bytes);
        }
    }
}

/// One read from a ready pipe: stdout up to `max_bytes` (more fails the
/// source), stderr's start kept and the rest drained.
fn read_some(j: &mut Job, is_out: bool, buf: &mut [u8], max_bytes: usize) {
    let n = if is_out {
        j.out.as_mut().map(|p| p.read(buf))
    } else {
        j.err.as_mut().map(|p| p.read(buf))
    };
    let n = match n {
        Some(Ok(n)) => n,
        Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => return,
        _ => 0,
    };
    if n == 0 {
        if is_out {
            j.out = None;
        } else {
            j.err = None;
        }
        return;
    }
    if is_out {
        if j.stdout.len() + n > max_bytes {
            j.kill(format!(
                "output larger than {max_bytes} bytes ([directory] max_bytes)"
            ));
            return;
        }
        j.stdout.extend_from_slice(&buf[..n]);
    } else {
        let room = STDERR_KEPT.saturating_sub(j.stderr.len());
        j.stderr.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Offered;
    use crate::config::command::parse_command_line;
    use crate::config::ConfDuration;

    fn me() -> String {
        nss::account_by_uid(privdrop::euid()).unwrap().unwrap().name
    }

    fn cmd(name: &str, line: &str, timeout_ms: u64) -> CommandConfig {
        CommandConfig {
            name: name.into(),
            command: parse_command_line(line).unwrap(),
            user: me(),
            timeout: ConfDuration(Duration::from_millis(timeout_ms)),
            required: false,
        }
    }

    fn values() -> Values<'static> {
        Values {
            user: "alice",
            uid: Some(1001),
            home: None,
            offered: Offered::default(),
        }
    }

    #[test]
    fn output_exit_time_and_size_decide_the_source() {
        let sh = "/bin/sh -c";
        let cmds = [
            cmd("ok", &format!("{sh} 'echo line-$0; echo err >&2' %u"), 5000),
            cmd("exit", &format!("{sh} 'echo a; exit 3'"), 5000),
            cmd("hang", &format!("{sh} 'echo a; sleep 30'"), 300),
            cmd("flood", &format!("{sh} 'yes ssh-ed25519'"), 5000),
            cmd("env", "/usr/bin/env -u KW_NONE", 5000),
            // a child that keeps the pipe open after its parent exits
            cmd("orphan", &format!("{sh} 'sleep 30 & echo x'"), 300),
        ];
        let started = Instant::now();
        let ran = run_all(&cmds, &values(), 4096);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ran[0].result, Ok("line-alice\n".into()));
        assert_eq!(ran[0].stderr, "err\n");
        assert_eq!(ran[1].result, Err("exit status 3".into()));
        assert!(
            ran[2].result.as_ref().unwrap_err().contains("timed out"),
            "{:?}",
            ran[2]
        );
        assert!(
            ran[3]
                .result
                .as_ref()
                .unwrap_err()
                .contains("larger than 4096"),
            "{:?}",
            ran[3]
        );
        let env = ran[4]
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{e}: {:?}", ran[4]));
        let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort();
        names.retain(|n| *n != "LANG");
        assert_eq!(names, ["HOME", "LOGNAME", "PATH", "USER"], "{env}");
        assert!(
            ran[5].result.as_ref().unwrap_err().contains("timed out"),
            "{:?}",
            ran[5]
        );
    }

    #[test]
    fn a_program_on_an_unsafe_path_is_not_run() {
        // /tmp is world-writable (sticky): sshd refuses anything under it
        let dir = std::env::temp_dir().join(format!("kw-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("prog");
        std::fs::write(&p, "#!/bin/sh\necho ran\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ran = run_all(&[cmd("t", p.to_str().unwrap(), 2000)], &values(), 4096);
        let e = ran[0].result.as_ref().unwrap_err();
        assert!(
            e.contains("unsafe program path") && e.contains("/tmp"),
            "{e}"
        );
        assert!(check_program(Path::new("/bin/sh")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
