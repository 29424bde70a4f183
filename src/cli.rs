//! Command line: parse, load the configuration safely, dispatch.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::audit::{self, Record, Severity, Sink};
use crate::config::{self, Config};

mod admin;
pub mod panics;
mod publish;

use admin::{run_sync, SyncArgs};
pub use admin::{sync_exit_code, SYNC_FAILED, SYNC_OK, SYNC_SOME_FAILED};

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
    /// Print USER's authorized keys (sshd: `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U`).
    Keys {
        /// The user sshd asks about (%u).
        user: String,
        /// Only print the key with this fingerprint (%f), plus every cert-authority line.
        fingerprint: Option<String>,
        /// The account's numeric uid as sshd resolved it (%U): the uid-0 rule then needs no NSS lookup.
        uid: Option<String>,
        /// The offered key's type (%t), for a chained [[command]] that uses %t.
        #[arg(requires = "key")]
        key_type: Option<String>,
        /// The offered key in base64 (%k), for a chained [[command]] that uses %k.
        key: Option<String>,
    },
    /// Print the certificate principals USER accepts (sshd:
    /// `AuthorizedPrincipalsCommand /usr/sbin/keyward principals %u uid=%U fp=%f ca=%F id=%i serial=%s`).
    Principals {
        /// The account sshd asks about (%u).
        user: String,
        /// Certificate details for the log: fp=%f ca=%F id=%i serial=%s type=%t.
        #[arg(
            value_name = "NAME=VALUE",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        cert: Vec<String>,
    },
    /// Refresh the cache of users already cached (conditional GET); used by the systemd timer.
    Sync {
        /// Only this user (cached or not).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Parallel requests.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Wait a random time up to this long before starting (e.g. "30s").
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_delay)]
        max_delay: std::time::Duration,
        /// Write node-exporter metrics to this `*.prom` file (atomically);
        /// overrides `[sync] metrics_file`.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// Poll (the packaged timer, every 30 s): check the index and the
        /// revocation list, act on what changed at once, and re-check each
        /// user only once its entry is 4/5 of its ttl old.
        #[arg(long)]
        poll: bool,
    },
    /// Check the configuration (files, drop-ins, signers, ca_file, URL
    /// templates) without network or log line; print each problem with its
    /// file and line; exit 0 when keyward would run with it, 1 otherwise.
    CheckConfig {
        /// Also read FILE as the last drop-in (e.g. Ansible's
        /// `validate: keyward check-config --drop-in %s`).
        #[arg(long, value_name = "FILE")]
        drop_in: Option<PathBuf>,
        /// Print nothing when the configuration is valid.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Build a signed static directory tree from a folder of key files, an
    /// LDAP directory or a forge; `--check OUT` checks one before upload.
    Publish(Box<publish::PublishArgs>),
    /// Print a shell completion script (bash, zsh, fish, …) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Audit the set-up (config, binary, cache, sshd -T, PAM, directory, timer,
    /// SELinux): one line per check with the fix; exit 0 all ok, 1 warnings,
    /// 2 failures (the Nagios convention).
    Doctor {
        /// Machine-readable output (stable JSON).
        #[arg(long)]
        json: bool,
        /// Also check the effective sshd settings for USER (sshd -T -C) and
        /// fetch and verify USER's file from every mirror.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// sshd configuration to check (passed to `sshd -T -f`).
        #[arg(long, value_name = "PATH")]
        sshd_config: Option<PathBuf>,
        /// PAM file of sshd to check.
        #[arg(long, value_name = "PATH", default_value = crate::doctor::DEFAULT_PAM_FILE)]
        pam_file: PathBuf,
    },
    /// Explain why USER can or cannot log in with a key: every key from every
    /// source with its verdict, and what sshd does with the user; exit 0 when
    /// USER can log in, 1 when not, 2 when it cannot tell.
    Explain {
        /// The user to explain.
        user: String,
        /// Mark the key sshd would ask about (%f, `SHA256:…`).
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        /// Machine-readable output (stable JSON).
        #[arg(long)]
        json: bool,
        /// sshd configuration to consult (passed to `sshd -T -f`).
        #[arg(long, value_name = "PATH")]
        sshd_config: Option<PathBuf>,
    },
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn sink_for(config: &Config) -> Sink {
    let facility =
        audit::parse_facility(&config.log.facility).unwrap_or(syslog::Facility::LOG_AUTHPRIV);
    let mut sink = Sink::open(&config.log.socket, facility);
    sink.count_losses_in(config.cache.dir.join(audit::LOST_RECORDS));
    // An admin running keyward by hand sees the decision too.
    sink.tee_stderr(std::io::stderr().is_terminal());
    sink
}

/// The binary's whole run: [`main`] with stdout flushed after it, and any
/// panic turned into one `decision=fail` record and exit 1 (see `panics`).
pub fn process(started: Instant) -> i32 {
    panics::remember();
    panics::guard(
        || {
            let code = main(std::env::args_os().collect(), started);
            let _ = std::io::stdout().flush();
            code
        },
        |message| report_panic(&std::env::args_os().collect::<Vec<_>>(), message, started),
    )
}

/// Writes the record of a panic through the sink the call's configuration
/// names (the default socket when it cannot be read: reading it is code
/// that may have panicked itself).
#[cold]
#[inline(never)]
fn report_panic(args: &[OsString], message: &str, started: Instant) {
    let call = panics::Call::of(args);
    let config = std::panic::catch_unwind(|| Config::load(call.config()).ok())
        .ok()
        .flatten();
    let mut sink = match &config {
        Some(c) => sink_for(c),
        None => Sink::open(Path::new("/dev/log"), syslog::Facility::LOG_AUTHPRIV),
    };
    sink.tee_stderr(true);
    sink.send(
        Severity::Err,
        &panics::record(&call, message, started.elapsed()),
    );
}

/// The entry point of the commands: the login path's exact argument forms skip clap
/// (building clap's command tree costs more than the whole cache lookup);
/// anything else, including every error and `--help`, goes through clap.
pub fn main(args: Vec<OsString>, started: Instant) -> i32 {
    if let Some(fast) = fast_keys_args(&args) {
        return run_keys(&fast, started);
    }
    main_other(args, started)
}

/// Everything but the `keys` call sshd makes for every login. Never inlined
/// into `main`: its code (clap and every other command) stays off the pages
/// a key lookup runs.
#[cold]
#[inline(never)]
fn main_other(args: Vec<OsString>, started: Instant) -> i32 {
    if let Some(p) = crate::principals::fast_args(&args) {
        return run_principals(&p.config, &p.user, &p.rest, started);
    }
    // A login-path call with bytes that are not UTF-8 would die in clap with
    // nothing in syslog (sshd discards stderr): fail closed with its record.
    let lossy: Vec<OsString> = args
        .iter()
        .map(|a| OsString::from(a.to_string_lossy().into_owned()))
        .collect();
    if let Some(p) = crate::principals::fast_args(&lossy) {
        let reason = "the user or config argument is not valid UTF-8".to_string();
        return run_principals_failed(
            Config::load(&p.config).ok().as_ref(),
            &p.user,
            reason,
            started,
        );
    }
    if let Some(k) = fast_keys_args(&lossy) {
        let config = Config::load(&k.config).ok();
        let reason = "an argument is not valid UTF-8".to_string();
        log_failure(
            config.as_ref(),
            &k.user,
            k.fingerprint.as_deref(),
            reason,
            started,
        );
        return 1;
    }
    if let Some(k) = dash_user_keys_args(&args) {
        // Refused by the login path's own user-name check, with its log line.
        return run_keys(&k, started);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    run(cli, started)
}

/// Arguments of `keyward [--config PATH] keys USER [FP [UID]]`.
#[derive(Debug, PartialEq, Eq)]
pub struct KeysArgs {
    pub config: PathBuf,
    pub user: String,
    pub fingerprint: Option<String>,
    pub uid: Option<String>,
    /// sshd's `%t` and `%k` (for chained commands).
    pub key_type: Option<String>,
    pub key: Option<String>,
}

impl KeysArgs {
    fn from_call(call: crate::sshd::KeysCall) -> KeysArgs {
        KeysArgs {
            config: PathBuf::from(call.config.unwrap_or(config::DEFAULT_PATH)),
            user: call.user.to_owned(),
            fingerprint: call.fingerprint.map(str::to_owned),
            uid: call.uid.map(str::to_owned),
            key_type: call.key_type.map(str::to_owned),
            key: call.key.map(str::to_owned),
        }
    }
}

/// Recognises only the forms sshd runs (`[--config P|--config=P] keys USER
/// [FP]`, no value starting with `-`); None sends the command line to clap.
pub fn fast_keys_args(args: &[OsString]) -> Option<KeysArgs> {
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    crate::sshd::keys_call(&args).ok().map(KeysArgs::from_call)
}

/// `keys USER [FP]` where USER starts with `-` (see
/// `sshd::keys_call_with_dash_user`).
fn dash_user_keys_args(args: &[OsString]) -> Option<KeysArgs> {
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    crate::sshd::keys_call_with_dash_user(&args).map(KeysArgs::from_call)
}

/// `keyward keys`: the login path, with its one audit record.
pub fn run_keys(args: &KeysArgs, started: Instant) -> i32 {
    let (user, fingerprint) = (args.user.as_str(), args.fingerprint.as_deref());
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            log_failure(None, user, fingerprint, e.to_string(), started);
            return 1;
        }
    };
    arm_watchdog(&config);
    let mut sink = sink_for(&config);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let uid = args.uid.as_deref();
    let offered = crate::chain::Offered {
        fingerprint,
        key_type: args.key_type.as_deref(),
        key: args.key.as_deref(),
    };
    let outcome = crate::lookup::run(&config, user, offered, uid, started, &mut out);
    if outcome.exit != 0 {
        sink.tee_stderr(true);
    }
    sink.send(outcome.severity, &outcome.record);
    outcome.exit
}

/// `keyward principals`: sshd's AuthorizedPrincipalsCommand, with its one
/// audit record (see `principals`).
pub fn run_principals(config_path: &Path, user: &str, cert: &[String], started: Instant) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return run_principals_failed(None, user, e.to_string(), started),
    };
    let info = match crate::principals::CertInfo::parse(cert) {
        Ok(i) => i,
        Err(e) => return run_principals_failed(Some(&config), user, e, started),
    };
    arm_watchdog(&config);
    let mut sink = sink_for(&config);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = crate::lookup::run_principals(&config, user, &info, started, &mut out);
    if outcome.exit != 0 {
        sink.tee_stderr(true);
    }
    sink.send(outcome.severity, &outcome.record);
    outcome.exit
}

fn run_principals_failed(
    config: Option<&Config>,
    user: &str,
    reason: String,
    started: Instant,
) -> i32 {
    let mut sink = match config {
        Some(c) => sink_for(c),
        None => Sink::open(Path::new("/dev/log"), syslog::Facility::LOG_AUTHPRIV),
    };
    sink.tee_stderr(true);
    let mut o = crate::lookup::principals_failed(user, reason, started);
    if let Some(w) = config.and_then(Config::warning) {
        o.record.push("config_warning", w);
    }
    sink.send(o.severity, &o.record);
    o.exit
}

/// The one record of a `keys` call that failed before the login path ran.
/// Without a usable config, the default socket is the best guess.
fn log_failure(
    config: Option<&Config>,
    user: &str,
    fp: Option<&str>,
    reason: String,
    started: Instant,
) {
    let mut sink = match config {
        Some(c) => sink_for(c),
        None => Sink::open(Path::new("/dev/log"), syslog::Facility::LOG_AUTHPRIV),
    };
    sink.tee_stderr(true);
    let mut r = Record::new().with("decision", "fail").with("user", user);
    if let Some(fp) = fp {
        r.push("fp", fp);
    }
    if let Some(w) = config.and_then(Config::warning) {
        r.push("config_warning", w);
    }
    r.push("reason", reason);
    r.push("ms", audit::millis(started.elapsed()));
    sink.send(Severity::Err, &r);
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli, started: Instant) -> i32 {
    match cli.command {
        Command::Keys {
            user,
            fingerprint,
            uid,
            key_type,
            key,
        } => run_keys(
            &KeysArgs {
                config: cli.config,
                user,
                fingerprint,
                uid,
                key_type,
                key,
            },
            started,
        ),
        Command::Principals { user, cert } => run_principals(&cli.config, &user, &cert, started),
        Command::Sync {
            user,
            jobs,
            max_delay,
            metrics_file,
            poll,
        } => run_sync(
            &cli.config,
            &SyncArgs {
                user: user.as_deref(),
                jobs: jobs.into(),
                max_delay,
                metrics_file: metrics_file.as_deref(),
                poll,
            },
            started,
        ),
        Command::CheckConfig { drop_in, quiet } => {
            crate::checkconfig::run(&cli.config, drop_in.as_deref(), quiet)
        }
        Command::Publish(args) => publish::run_publish(&cli.config, &args),
        Command::Doctor {
            json,
            user,
            sshd_config,
            pam_file,
        } => crate::doctor::run(&crate::doctor::Options {
            config: cli.config,
            json,
            user,
            sshd_config,
            pam_file,
        }),
        Command::Explain {
            user,
            fingerprint,
            json,
            sshd_config,
        } => crate::explain::run(&crate::explain::Options {
            config: cli.config,
            user,
            fingerprint,
            json,
            sshd_config,
        }),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "keyward",
                &mut std::io::stdout(),
            );
            0
        }
    }
}

/// sshd gives the command no timeout but LoginGraceTime: if anything hangs
/// (an NFS home, a stuck socket), SIGALRM ends the process, which fails
/// closed. The directory budget is enforced separately; this is the backstop.
fn arm_watchdog(config: &Config) {
    // Chained commands run side by side before the directory is asked.
    let chain = crate::config::command::budget(&config.commands);
    crate::os::process::arm_alarm(config.directory.timeout.0.as_secs() + chain.as_secs() + 5);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_exit_codes() {
        assert_eq!(sync_exit_code(0, 0), 0);
        assert_eq!(sync_exit_code(5, 0), 0);
        assert_eq!(sync_exit_code(5, 1), 1);
        assert_eq!(sync_exit_code(5, 5), 2);
        assert_eq!(sync_exit_code(1, 1), 2);
    }

    fn fast(args: &[&str]) -> Option<KeysArgs> {
        let v: Vec<OsString> = std::iter::once("keyward")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        fast_keys_args(&v)
    }

    #[test]
    fn fast_path_takes_only_the_sshd_forms() {
        let k = fast(&["keys", "alice", "SHA256:abc"]).unwrap();
        assert_eq!(k.config, Path::new(config::DEFAULT_PATH));
        assert_eq!(
            (k.user.as_str(), k.fingerprint.as_deref()),
            ("alice", Some("SHA256:abc"))
        );
        let k = fast(&["--config", "/etc/kw.toml", "keys", "bob"]).unwrap();
        assert_eq!(
            (k.config.to_str(), k.fingerprint),
            (Some("/etc/kw.toml"), None)
        );
        let k = fast(&["--config=/x.toml", "keys", "bob"]).unwrap();
        assert_eq!(k.config, Path::new("/x.toml"));
        // sshd's %u %f %U
        let k = fast(&["keys", "bob", "SHA256:abc", "1001"]).unwrap();
        assert_eq!(k.uid.as_deref(), Some("1001"));
        // everything else is clap's: options, flags, errors, other commands
        for a in [
            &["keys"][..],
            &["keys", "a", "b", "c", "d"],
            &["keys", "a", "b", "-1"],
            &["keys", "-rf"],
            &["keys", "--", "-rf"],
            &["keys", "alice", "--config", "/x"],
            &["keys", "alice", "-h"],
            &["--config", "keys", "alice"],
            &["--config=", "keys", "alice"],
            &["sync"],
            &["--help"],
            &["keys", ""],
        ] {
            assert_eq!(fast(a), None, "{a:?}");
        }
        // non-UTF-8 goes to clap, which reports it
        use std::os::unix::ffi::OsStringExt;
        let v = vec![
            OsString::from("keyward"),
            OsString::from("keys"),
            OsString::from_vec(vec![0xff]),
        ];
        assert_eq!(fast_keys_args(&v), None);
    }
}
