//! `keyward doctor`: audit the whole set-up and say what is wrong and how to
//! fix it. Every check is one line: status (ok / warn / fail / skip), what
//! was found, and the exact fix ([`crate::report`]). `--json` gives the same
//! as stable JSON. Exit status (Nagios convention): 0 every check ok or
//! skipped, 1 a warning, 2 a failure.
//!
//! One file per area, one function per check id. The rules are pure
//! functions (sshd -T text, PAM file text, stat results, cache entries,
//! systemctl output) with unit tests; the probes around them are thin. Runs
//! as root or as anyone: what needs root is reported as "skipped: needs
//! root". As root, every network request is made after dropping to the
//! `[cache] owner`, like the login path.

pub mod auth;
pub mod binary;
pub mod cache;
pub mod cachedir;
pub mod chain;
pub mod command;
pub mod config;
pub mod directory;
pub mod pam;
pub mod pamfile;
pub mod pamincluded;
pub mod perms;
pub mod principals;
pub mod revocation;
pub mod selinux;
pub mod sshd;
pub mod sshdfiles;
pub mod systemd;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::os::clock::now_secs;
use crate::os::nss;
use crate::os::privdrop;
use crate::report::{self, Check, Report};
use crate::sshd::Probe;
use crate::term::Style;

/// The PAM file sshd uses.
pub const DEFAULT_PAM_FILE: &str = "/etc/pam.d/sshd";

/// What `keyward doctor` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub json: bool,
    pub user: Option<String>,
    /// `sshd -T -f PATH` (default: sshd's own config).
    pub sshd_config: Option<PathBuf>,
    pub pam_file: PathBuf,
}

/// Runs doctor and prints the report; returns the exit code.
pub fn run(opts: &Options) -> i32 {
    let report = collect(opts);
    report::print(&if opts.json {
        report::json(&report)
    } else {
        report.render(&Style::detect())
    });
    report.exit_code()
}

/// Every check, in report order.
pub fn collect(opts: &Options) -> Report {
    let uid = privdrop::euid();
    let root = uid == 0;
    let report = |checks| {
        Report::new(
            opts.config.display().to_string(),
            opts.user.clone(),
            uid,
            checks,
        )
    };
    if let Some(bad) = opts.user.as_deref().and_then(|u| user_name_check(u, None)) {
        return report(vec![bad]);
    }
    let (config, mut checks) = config::checks(&opts.config);
    if let (Some(c), Some(u)) = (&config, &opts.user) {
        checks.extend(user_name_check(u, Some(c)));
    }
    let this_exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let probe = crate::sshd::probe(opts.sshd_config.as_deref(), opts.user.as_deref());
    let (bin, from) = binary::target(probe.result.as_ref().ok(), this_exe.as_deref());
    checks.push(binary::check(&bin, from));

    let acct = match &config {
        Some(c) => {
            let (a, cs) = cachedir::checks(c, &opts.config, root);
            checks.extend(cs);
            checks.extend(cache::entry_checks(c, a.as_ref(), root));
            a
        }
        None => {
            checks.push(Check::skip(
                "cache.owner",
                "skipped: the config did not load",
            ));
            None
        }
    };

    // sshd, with the PAM verdict it depends on; the PAM lines come after.
    let use_pam = probe.result.as_ref().ok().and_then(|t| t.yes("usepam"));
    let (pam_blocks, pam_list) = pam::checks(&opts.pam_file, use_pam);
    let ctx = SshdContext {
        opts,
        config: config.as_ref(),
        this_exe: this_exe.as_deref(),
        pam_blocks,
        root,
    };
    checks.extend(sshd_checks(&probe, &ctx));
    if let Some(c) = &config {
        let t = probe.result.as_ref().ok();
        match t {
            Some(t) => checks.extend(revocation::checks(c, t.get("revokedkeys"))),
            None => checks.extend([
                Check::skip("revocation.krl", "skipped: sshd -T did not run"),
                revocation::age(c),
            ]),
        }
    }
    checks.extend(chain_checks(&probe, &ctx));
    checks.extend(pam_list);

    checks.extend(opts.user.as_deref().map(user_account_check));
    checks.extend(systemd_checks(config.as_ref()));
    checks.extend(selinux_checks(config.as_ref(), &opts.config, &bin));
    // Network last: as root, only after dropping to the cache owner.
    checks.extend(
        config
            .map(|c| directory_checks(&c, acct.is_some(), opts.user.as_deref()))
            .unwrap_or_default(),
    );
    report(checks)
}

/// `user.name`: a name keyward accepts (any name at all without a config,
/// else one within `[policy] max_username_len`).
fn user_name_check(user: &str, config: Option<&Config>) -> Option<Check> {
    let max = config.map_or(crate::username::MAX_LEN_LIMIT, |c| {
        c.policy.max_username_len
    });
    let e = crate::username::validate(user, max).err()?;
    Some(match config {
        None => Check::fail(
            "user.name",
            format!("{user:?} is not a valid user name: {e}"),
            "pass the name as NSS has it (keyward refuses '/', control characters, \".\", \"..\" and a leading '-')",
        ),
        Some(_) => Check::fail(
            "user.name",
            format!("{user:?}: {e}: keyward refuses it"),
            crate::username::fix(&e),
        ),
    })
}

/// What the sshd rules need besides `sshd -T`.
struct SshdContext<'a> {
    opts: &'a Options,
    config: Option<&'a Config>,
    this_exe: Option<&'a Path>,
    pam_blocks: Option<bool>,
    root: bool,
}

/// `sshd` (the probe itself) and, when it worked, every `sshd.*` rule.
fn sshd_checks(probe: &Probe, ctx: &SshdContext) -> Vec<Check> {
    let opts = ctx.opts;
    let t = match &probe.result {
        Ok(t) => t,
        Err(e) if !ctx.root => {
            return vec![Check::skip(
                "sshd",
                format!(
                    "skipped: needs root (`{}` must read the host keys: {e})",
                    probe.cmdline
                ),
            )]
        }
        Err(e) => {
            let f = opts
                .sshd_config
                .as_ref()
                .map(|p| format!(" -f {}", p.display()))
                .unwrap_or_default();
            return vec![Check::fail(
                "sshd",
                format!("`{}` failed: {e}", probe.cmdline),
                format!("sshd -t{f} shows the error; fix it before anything else"),
            )];
        }
    };
    let version = probe
        .version
        .map(|v| format!("OpenSSH {v}"))
        .unwrap_or_else(|| "OpenSSH (version unknown)".into());
    let mut out = vec![Check::ok(
        "sshd",
        format!(
            "{version}, effective configuration from `{}`",
            probe.cmdline
        ),
    )];
    let fix_file = opts
        .sshd_config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/etc/ssh/sshd_config.d/40-keyward.conf".into());
    let pam_file = opts.pam_file.display().to_string();
    let user_exists = |name: &str| nss::account(name).ok().map(|a| a.is_some());
    let settings = sshdfiles::first_settings(
        opts.sshd_config
            .as_deref()
            .unwrap_or(Path::new("/etc/ssh/sshd_config")),
    );
    let set_at = |kw: &str| settings.get(kw).map(|s| s.to_string());
    let facts = sshd::Facts {
        t,
        version: probe.version,
        fix_file: &fix_file,
        this_exe: ctx.this_exe,
        same_file: &same_file,
        doctor_config: &opts.config,
        keyward: ctx.config,
        user_exists: &user_exists,
        pam_blocks: ctx.pam_blocks,
        pam_file: &pam_file,
        set_at: &set_at,
    };
    out.extend(sshd::command_checks(&facts));
    out.push(sshd::command_user_check(&facts));
    // Certificate logins: the files sshd read tell where a line is ignored.
    let main_config = opts
        .sshd_config
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssh/sshd_config"));
    let (directives, _) = crate::sshd::read_sshd_config(&main_config);
    let wiring = principals::Wiring {
        directives: &directives,
        ca_keys: &principals::count_ca_keys,
    };
    out.extend(principals::checks(&facts, &wiring));
    out.extend(auth::auth_checks(&facts));
    out
}

/// `chain.*`: another provider in sshd's AuthorizedKeysCommand, and each
/// `[[command]]` (its program path, account, and what sshd passes).
fn chain_checks(probe: &Probe, ctx: &SshdContext) -> Vec<Check> {
    let opts = ctx.opts;
    let t = probe.result.as_ref().ok();
    let settings = sshdfiles::first_settings(
        opts.sshd_config
            .as_deref()
            .unwrap_or(Path::new("/etc/ssh/sshd_config")),
    );
    let command = t.and_then(|t| t.set("authorizedkeyscommand"));
    let wired = t.map(|t| chain::Wired {
        command,
        user: t.set("authorizedkeyscommanduser"),
        set_at: settings.get("authorizedkeyscommand").map(|s| s.to_string()),
        is_keyward: command.is_some_and(|c| {
            let argv0 = crate::sshd::argv_split(c)
                .ok()
                .and_then(|a| a.into_iter().next())
                .unwrap_or_default();
            let is_this = ctx.this_exe.map(|exe| same_file(Path::new(&argv0), exe));
            chain::runs_keyward(c, is_this)
        }),
    });
    let exists = |name: &str| nss::account(name).ok().map(|a| a.is_some());
    let stat = |p: &str| perms::stat_chain(Path::new(p));
    // The keyward that would replace a foreign provider: this one.
    let keyward = ctx
        .this_exe
        .map_or("/usr/sbin/keyward".into(), |p| p.display().to_string());
    chain::checks(
        ctx.config,
        wired.as_ref(),
        &keyward,
        &opts.config.display().to_string(),
        &stat,
        &exists,
    )
}

/// Whether two paths name the same file (same device and inode), or the
/// same path when either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// `user.account`: sshd runs the command only for users NSS knows.
fn user_account_check(u: &str) -> Check {
    match nss::account(u) {
        Ok(Some(a)) => Check::ok(
            "user.account",
            format!("{u} is known to NSS (uid {}, home {}); `keyward explain {u}` shows every key and verdict", a.uid, a.home),
        ),
        Ok(None) => Check::fail(
            "user.account",
            format!("{u} is unknown to NSS: sshd never runs the AuthorizedKeysCommand for it"),
            format!("create the account {u} (or fix NSS: getent passwd {u})"),
        ),
        Err(e) => Check::fail(
            "user.account",
            format!("looking up {u}: {e}"),
            "check NSS (/etc/nsswitch.conf)",
        ),
    }
}

/// `systemd.*`: the sync timer runs often enough for the cache's ttl.
fn systemd_checks(config: Option<&Config>) -> Vec<Check> {
    if !systemd::running() {
        return vec![Check::skip("systemd.timer", "skipped: systemd not running")];
    }
    let hour = Duration::from_secs(3600);
    let max_age = config.map_or(hour, |c| (c.cache.ttl.0 * 2).max(hour));
    systemd::checks(&systemd::probe(), now_secs(), max_age)
}

/// `selinux.*`: the labels of the cache, the binary sshd runs and the
/// config, and the boolean a networked AuthorizedKeysCommand needs.
fn selinux_checks(config: Option<&Config>, config_path: &Path, bin: &Path) -> Vec<Check> {
    let cache = config.map(|c| c.cache.dir.clone());
    let mut paths: Vec<&Path> = cache.iter().map(|p| p.as_path()).collect();
    paths.extend([bin, config_path]);
    let networked = config.is_some_and(|c| !c.directory.urls.is_empty());
    selinux::checks(&selinux::probe(&paths, networked))
}

/// `directory.*`: every mirror (and the user's file), fetched as the cache
/// owner, or as `nobody` when the owner is unusable: never as root.
fn directory_checks(config: &Config, owner_usable: bool, user: Option<&str>) -> Vec<Check> {
    if config.directory.urls.is_empty() {
        return vec![Check::ok(
            "directory.mirror",
            "no [directory] urls: keys come from [files] only",
        )];
    }
    // The login path's drop; `nobody` when the owner itself is unusable.
    let dropped = privdrop::drop_to(&config.cache.owner).or_else(|e| {
        if owner_usable {
            Err(e)
        } else {
            privdrop::drop_to("nobody")
        }
    });
    match dropped {
        Ok(()) => directory::checks(&config.directory, user),
        Err(e) => vec![Check::skip(
            "directory.mirror",
            format!("skipped: no network I/O as root, and dropping privileges failed: {e}"),
        )],
    }
}
