//! Command line: parse, load the configuration safely, dispatch.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::audit::{self, Record, Severity, Sink};
use crate::config::{self, Config};
use crate::safepath;

#[derive(Parser, Debug)]
#[command(
    name = "keyward",
    version,
    about = "Managed, audited SSH authorized keys (an sshd AuthorizedKeysCommand)"
)]
pub struct Cli {
    /// Configuration file (must be root-owned and not group/world-writable).
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print USER's authorized keys (sshd: `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f`).
    Keys {
        /// The user sshd asks about (%u).
        user: String,
        /// Only print the key with this fingerprint (%f), plus every cert-authority line.
        fingerprint: Option<String>,
    },
}

/// Largest configuration file read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// Reads and validates the configuration. Like sshd with its own files,
/// keyward refuses a config that root does not own or others could write.
pub fn load_config(path: &Path) -> Result<Config, String> {
    let file = safepath::open_checked(path, &[0], None).map_err(|e| format!("config: {e}"))?;
    let mut text = String::new();
    file.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("config {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(format!("config {}: larger than 1 MiB", path.display()));
    }
    Config::parse(&text, path).map_err(|e| e.to_string())
}

fn sink_for(config: &Config) -> Sink {
    let facility =
        audit::parse_facility(&config.log.facility).unwrap_or(syslog::Facility::LOG_AUTHPRIV);
    let mut sink = Sink::open(&config.log.socket, facility);
    // An admin running keyward by hand sees the decision too.
    sink.tee_stderr(unsafe { libc::isatty(2) } == 1);
    sink
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli, started: Instant) -> i32 {
    match cli.command {
        Command::Keys { user, fingerprint } => {
            let config = match load_config(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    // Without a config, the default socket is the best guess.
                    let mut sink =
                        Sink::open(Path::new("/dev/log"), syslog::Facility::LOG_AUTHPRIV);
                    sink.tee_stderr(true);
                    let mut r = Record::new().with("decision", "fail").with("user", &user);
                    if let Some(fp) = &fingerprint {
                        r.push("fp", fp);
                    }
                    r.push("reason", e);
                    sink.send(Severity::Err, &r);
                    return 1;
                }
            };
            arm_watchdog(&config);
            let mut sink = sink_for(&config);
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let outcome =
                crate::lookup::run(&config, &user, fingerprint.as_deref(), started, &mut out);
            if outcome.exit != 0 {
                sink.tee_stderr(true);
            }
            sink.send(outcome.severity, &outcome.record);
            outcome.exit
        }
    }
}

/// sshd gives the command no timeout but LoginGraceTime: if anything hangs
/// (an NFS home, a stuck socket), SIGALRM ends the process, which fails
/// closed. The directory budget is enforced separately; this is the backstop.
fn arm_watchdog(config: &Config) {
    let secs = config.directory.timeout.0.as_secs() + 5;
    // SAFETY: alarm only schedules SIGALRM, whose default action terminates.
    unsafe {
        libc::alarm(secs.min(u32::MAX as u64) as u32);
    }
}
