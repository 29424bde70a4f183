//! A private `/dev/log` for one process tree: code that can only log through
//! syslog(3) (a PAM module inside pamtester or sshd) is started in its own
//! mount namespace where `/dev/log` is a private rsyslog's socket.
//!
//! - When the machine has a `/dev/log` (any host running a syslog daemon),
//!   the private socket is bind-mounted over it inside the namespace.
//! - When it has none (or a dangling symlink), a mount point is needed that
//!   the machine does not see: inside the namespace `/dev` becomes an overlay of the real `/dev`
//!   (its submounts such as `/dev/pts` moved over) whose upper layer lives in
//!   the test directory, and the socket is bind-mounted over an empty file
//!   created there.
//!
//! Either way the machine's `/dev/log` (or its absence) is never touched, so
//! every log assertion runs on every machine, and concurrent tests each read
//! their own log.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::rsyslog::{LogLine, Rsyslog};
use super::TestDir;

/// What `/dev/log` is on the machine, to prove it was left alone:
/// (device, inode, file type bits), or None when there is none.
pub type DevLogIdentity = Option<(u64, u64, u32)>;

pub fn dev_log_identity() -> DevLogIdentity {
    std::fs::symlink_metadata("/dev/log")
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mode() & 0o170000))
}

/// A private rsyslog and the namespace set-up that makes it `/dev/log`.
pub struct PrivateDevLog {
    pub log: Rsyslog,
    /// Upper and work directories of the `/dev` overlays (one per process
    /// tree started).
    scratch: TestDir,
}

impl PrivateDevLog {
    pub fn start() -> PrivateDevLog {
        PrivateDevLog {
            log: Rsyslog::start(),
            scratch: TestDir::new("devlog-ns"),
        }
    }

    /// Shell commands (run as root in a fresh private mount namespace) that
    /// make `/dev/log` the private socket.
    pub fn prelude(&self) -> String {
        let sock = sh_quote(&self.log.socket);
        let scratch = sh_quote(self.scratch.path());
        format!(
            r#"set -e
if [ -e /dev/log ]; then
    mount --bind {sock} /dev/log
else
    s=$(mktemp -d -p {scratch} ns.XXXXXX)
    mkdir "$s/upper" "$s/work" "$s/sub"
    subs=$(awk '{{print $5}}' /proc/self/mountinfo | grep -E '^/dev/[^/]+$' | sort -u)
    for m in $subs; do
        mkdir "$s/sub/${{m#/dev/}}"
        mount --rbind "$m" "$s/sub/${{m#/dev/}}"
    done
    mount -t overlay kwt-dev -o "lowerdir=/dev,upperdir=$s/upper,workdir=$s/work" /dev
    for m in $subs; do
        mount --move "$s/sub/${{m#/dev/}}" "$m"
    done
    rm -f /dev/log
    : > /dev/log
    mount --bind {sock} /dev/log
fi
"#
        )
    }

    /// `unshare -m --propagation private sh -c '<prelude>; exec "$@"' sh
    /// PROGRAM`: add the program's arguments (and environment) to it.
    /// Use `env VAR=… PROGRAM` as the program for variables that must reach
    /// the program only (e.g. `LD_PRELOAD`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{}exec \"$@\"\n", self.prelude()))
            .arg("sh")
            .arg(program);
        c
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.log.lines()
    }

    pub fn text(&self) -> String {
        self.log.text()
    }

    pub fn out(&self) -> &Path {
        &self.log.out
    }

    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&LogLine) -> bool,
    ) -> Option<LogLine> {
        self.log.wait_for(timeout, pred)
    }
}

/// Single-quotes a path for sh.
pub fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}
