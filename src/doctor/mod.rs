//! `keyward doctor`: audit the whole set-up and say what is wrong and how to
//! fix it. Every check is one line: status (ok / warn / fail / skip), what
//! was found, and the exact fix. `--json` gives the same as stable JSON.
//! Exit status 1 when any check fails.
//!
//! The rules live in pure functions (sshd -T text, PAM file text, stat
//! results, cache entries, systemctl output) with unit tests; the probes
//! around them are thin. Runs as root or as anyone: what needs root is
//! reported as "skipped: needs root". As root, every network request is made
//! after dropping to the `[cache] owner`, like the login path.

pub mod cache;
pub mod directory;
pub mod pam;
pub mod perms;
pub mod sshd;
pub mod systemd;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::Ttls;
use crate::config::{Config, ConfigError};
use crate::privdrop::{self, Account};
use crate::report::{self, Check, Report, Status};
use crate::safepath::Kind;
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether two paths name the same file (same device and inode), or the
/// same path when either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// The groups `acct` is in (primary first), through NSS.
pub fn groups_of(acct: &Account) -> Vec<u32> {
    let Ok(name) = std::ffi::CString::new(acct.name.as_str()) else {
        return vec![acct.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: groups has room for n entries; n is updated on return.
        let rc =
            unsafe { libc::getgrouplist(name.as_ptr(), acct.gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n > 65536 {
            return vec![acct.gid];
        }
        n = n.max(64) * 2;
    }
}

fn user_exists(name: &str) -> Option<bool> {
    privdrop::account(name).ok().map(|a| a.is_some())
}

/// config.file and config.parse. Returns the config when its text parses
/// (even if its modes are wrong: the rest of the checks are still useful).
fn config_checks(path: &Path) -> (Option<Config>, Vec<Check>) {
    let mut out = Vec::new();
    let p = path.display();
    let chain = match perms::stat_chain(path) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::fail(
                "config.file",
                format!("cannot use the config: {e}"),
                format!(
                    "create {p} (the package installs a documented default) or pass --config PATH"
                ),
            ));
            out.push(Check::skip("config.parse", "skipped: no config file"));
            return (None, out);
        }
    };
    let mode_ok = match perms::check_chain(&chain, Kind::File, &[0], "root") {
        Some(f) => {
            out.push(Check::fail(
                "config.file",
                format!("{}: keyward refuses to run", f.found),
                f.fix,
            ));
            false
        }
        None => {
            out.push(Check::ok(
                "config.file",
                format!("{p}: root-owned, not group/world-writable, parents too"),
            ));
            true
        }
    };
    let describe = |c: &Config| {
        format!(
            "parses: {} mirror(s), {} [files] path(s), cache {} owned by {}{}",
            c.directory.urls.len(),
            c.files.paths.len(),
            c.cache.dir.display(),
            c.cache.owner,
            if c.directory.signed() {
                ", signatures required"
            } else {
                ""
            }
        )
    };
    match Config::load(path) {
        Ok(c) => {
            out.push(Check::ok("config.parse", describe(&c)));
            (Some(c), out)
        }
        Err(e @ ConfigError::Open(_)) if mode_ok && !e.is_permission_denied() => {
            // The file itself (a symlink, not a regular file…), not its text.
            out.retain(|c| c.id != "config.file");
            out.push(Check::fail(
                "config.file",
                format!("{e}: keyward refuses to run"),
                format!("make {p} a regular file owned by root, mode 0644"),
            ));
            out.push(Check::skip("config.parse", "skipped: see config.file"));
            (None, out)
        }
        Err(e) if mode_ok => {
            if e.is_permission_denied() {
                out.push(Check::skip(
                    "config.parse",
                    format!("skipped: needs root ({e})"),
                ));
            } else {
                out.push(Check::fail(
                    "config.parse",
                    e.to_string(),
                    format!("fix the line named, then re-run keyward --config {p} doctor"),
                ));
            }
            (None, out)
        }
        Err(_) => match std::fs::read_to_string(path) {
            Ok(text) => match Config::parse(&text, path) {
                Ok(c) => {
                    out.push(Check::ok(
                        "config.parse",
                        format!("{} (but see config.file)", describe(&c)),
                    ));
                    (Some(c), out)
                }
                Err(e) => {
                    out.push(Check::fail(
                        "config.parse",
                        e.to_string(),
                        "fix the line named",
                    ));
                    (None, out)
                }
            },
            Err(e) => {
                out.push(Check::skip(
                    "config.parse",
                    format!("skipped: cannot read {p}: {e}"),
                ));
                (None, out)
            }
        },
    }
}

/// The name of `node`'s group when its only member (primary or
/// supplementary) is the node's owner: Debian's sshd then accepts the
/// group-writable component. None otherwise.
fn group_of_owner_only(node: &perms::Node) -> Option<String> {
    let owner = privdrop_name(node.uid)?;
    let mut members = 0;
    // SAFETY: getgrgid/getpwent return pointers into static storage, read
    // before the next call; doctor has no other thread doing NSS lookups.
    unsafe {
        let gr = libc::getgrgid(node.gid);
        if gr.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*gr).gr_name)
            .to_string_lossy()
            .into_owned();
        let mut mem = (*gr).gr_mem;
        while !mem.is_null() && !(*mem).is_null() {
            if std::ffi::CStr::from_ptr(*mem).to_string_lossy() != owner {
                return None;
            }
            members += 1;
            mem = mem.add(1);
        }
        libc::setpwent();
        let mut foreign = false;
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            if (*pw).pw_gid == node.gid {
                if (*pw).pw_uid != node.uid {
                    foreign = true;
                    break;
                }
                members += 1;
            }
        }
        libc::endpwent();
        (!foreign && members > 0).then_some(name)
    }
}

fn privdrop_name(uid: u32) -> Option<String> {
    // SAFETY: as above.
    unsafe {
        let pw = libc::getpwuid(uid);
        (!pw.is_null()).then(|| {
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// binary: the AuthorizedKeysCommand program and every parent up to `/`
/// root-owned and not group/world-writable (sshd's rule).
fn binary_check(path: &Path, from: &str) -> Check {
    let p = path.display().to_string();
    let chain = match perms::stat_chain(path) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "binary",
                format!("{from}: {e}: sshd cannot run it"),
                "install keyward there, or point AuthorizedKeysCommand at the installed binary (/usr/sbin/keyward)",
            )
            .subject(p)
        }
    };
    if let Some(f) = perms::check_chain(&chain, Kind::File, &[0], "root") {
        if let Some(i) = perms::group_write_only(&chain, &[0]) {
            if let Some(group) = group_of_owner_only(&chain[i]) {
                return Check::warn(
                    "binary",
                    format!(
                        "{}: Debian's sshd tolerates it (group {group} has no member but the owner); upstream OpenSSH and RPM-based distributions refuse it (log: Unsafe AuthorizedKeysCommand \"{p}\")",
                        f.found
                    ),
                    f.fix,
                )
                .subject(p);
            }
        }
        return Check::fail(
            "binary",
            format!(
                "{}: sshd refuses to run it (log: Unsafe AuthorizedKeysCommand \"{p}\")",
                f.found
            ),
            f.fix,
        )
        .subject(p);
    }
    if chain[0].mode & 0o001 == 0 {
        return Check::fail(
            "binary",
            format!("not executable by others (mode {:04o})", chain[0].perm()),
            format!("chmod 0755 {p}"),
        )
        .subject(p);
    }
    Check::ok(
        "binary",
        format!("{from}: root-owned and not group/world-writable, every parent directory too"),
    )
    .subject(p)
}

/// cache.owner, cache.config_readable, cache.dir, cache.write.
fn owner_and_dir_checks(
    config: &Config,
    config_path: &Path,
    root: bool,
) -> (Option<Account>, Vec<Check>) {
    let mut out = Vec::new();
    let owner = &config.cache.owner;
    let dir = &config.cache.dir;
    let d = dir.display();
    let acct = match privdrop::account(owner) {
        Ok(Some(a)) if a.uid == 0 => {
            out.push(Check::fail(
                "cache.owner",
                format!("[cache] owner {owner} is root: keyward refuses to drop to root"),
                "owner = \"keyward\" in [cache]",
            ));
            None
        }
        Ok(Some(a)) => {
            out.push(Check::ok(
                "cache.owner",
                format!(
                    "[cache] owner {owner} exists (uid {}, gid {})",
                    a.uid, a.gid
                ),
            ));
            Some(a)
        }
        Ok(None) => {
            out.push(Check::fail(
                "cache.owner",
                format!("[cache] owner {owner} does not exist: keyward started as root cannot drop privileges and fails"),
                format!("useradd --system --no-create-home --shell /usr/sbin/nologin {owner} (the package creates it)"),
            ));
            None
        }
        Err(e) => {
            out.push(Check::fail(
                "cache.owner",
                format!("looking up [cache] owner {owner}: {e}"),
                "check NSS (/etc/nsswitch.conf)",
            ));
            None
        }
    };

    // Files the owner (and sshd's AuthorizedKeysCommandUser) must read.
    match &acct {
        Some(a) => {
            let gids = groups_of(a);
            let mut files = vec![config_path.to_owned()];
            files.extend(config.directory.ca_file.clone());
            files.extend(config.directory.signers_file.clone());
            let mut problem = None;
            for f in &files {
                let r = perms::stat_chain(f).map_err(|e| perms::Finding {
                    found: e,
                    fix: format!("create {}", f.display()),
                });
                if let Err(e) = r.and_then(|chain| perms::readable_by(&chain, a.uid, &gids)) {
                    problem = Some(e);
                    break;
                }
            }
            match problem {
                Some(f) => out.push(Check::fail(
                    "cache.config_readable",
                    format!("{owner} {}: keyward running as {owner} fails", f.found),
                    f.fix,
                )),
                None => out.push(Check::ok(
                    "cache.config_readable",
                    format!(
                        "{owner} can read {}",
                        files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        None => out.push(Check::skip(
            "cache.config_readable",
            format!("skipped: [cache] owner {owner} unusable"),
        )),
    }

    let uid = acct.as_ref().map(|a| a.uid);
    let chain = perms::stat_chain(dir);
    let make = format!("install -d -o {owner} -g {owner} -m 0750 {d}");
    match chain {
        Err(e) => {
            out.push(Check::fail(
                "cache.dir",
                format!("{e}: keyward cannot cache (and fails closed when the directory is down)"),
                make.clone(),
            ));
        }
        Ok(chain) => {
            let top = &chain[0];
            let mut owners = vec![0];
            owners.extend(uid);
            let finding = if !top.is_dir() {
                Some((
                    Status::Fail,
                    format!("{d} is not a directory"),
                    make.clone(),
                ))
            } else if top.mode & 0o022 != 0 {
                let f = perms::check_chain(&chain[..1], Kind::Dir, &owners, owner)
                    .map(|f| f.fix)
                    .unwrap_or_else(|| perms::chmod_fix(top.mode, dir));
                Some((
                    Status::Fail,
                    format!(
                        "{d} is {} (mode {:04o}): keyward refuses the cache and fails closed",
                        if top.mode & 0o002 != 0 {
                            "world-writable"
                        } else {
                            "group-writable"
                        },
                        top.perm()
                    ),
                    f,
                ))
            } else if Some(top.uid) != uid && top.uid != 0 {
                Some((
                    Status::Fail,
                    format!(
                        "{d} is owned by uid {}, not {owner}: keyward refuses it and fails closed",
                        top.uid
                    ),
                    format!("chown {owner}: {d}"),
                ))
            } else if top.uid == 0 && uid.is_some() {
                Some((
                    Status::Warn,
                    format!("{d} is owned by root: keyward (running as {owner}) may not update it"),
                    format!("chown {owner}: {d} && chmod 0750 {d}"),
                ))
            } else {
                perms::check_chain(&chain[1..], Kind::Dir, &owners, "root")
                    .map(|f| {
                        (
                            Status::Fail,
                            format!("{}: keyward refuses the cache and fails closed", f.found),
                            f.fix,
                        )
                    })
                    .or_else(|| {
                        (top.mode & 0o007 != 0).then(|| {
                            (
                                Status::Warn,
                                format!(
                                    "{d} (mode {:04o}) lets every local user see who has keys",
                                    top.perm()
                                ),
                                format!("chmod 0750 {d}"),
                            )
                        })
                    })
            };
            match finding {
                Some((Status::Fail, found, fix)) => out.push(Check::fail("cache.dir", found, fix)),
                Some((_, found, fix)) => out.push(Check::warn("cache.dir", found, fix)),
                None => out.push(Check::ok(
                    "cache.dir",
                    format!(
                        "{d}: owned by {owner}, mode {:04o}, parents safe",
                        top.perm()
                    ),
                )),
            }
        }
    }

    // A real write as the owner (a temp file, removed at once).
    let probe = || -> Result<(), String> {
        tempfile::Builder::new()
            .prefix(".doctor-probe-")
            .tempfile_in(dir)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let written = match &acct {
        Some(a) if root => Some(privdrop::as_user(a, probe).and_then(|r| r)),
        Some(a) if a.uid == privdrop::euid() => Some(probe()),
        _ => None,
    };
    match written {
        Some(Ok(())) => out.push(Check::ok(
            "cache.write",
            format!("{owner} can write in {d}"),
        )),
        Some(Err(e)) => out.push(Check::fail(
            "cache.write",
            format!("{owner} cannot create files in {d}: {e}"),
            format!("chown {owner}: {d} && chmod 0750 {d}"),
        )),
        None if acct.is_none() => out.push(Check::skip(
            "cache.write",
            format!("skipped: [cache] owner {owner} unusable"),
        )),
        None => out.push(Check::skip(
            "cache.write",
            format!("skipped: needs root (or run as {owner})"),
        )),
    }
    (acct, out)
}

fn cache_entry_checks(config: &Config, acct: Option<&Account>, root: bool) -> Vec<Check> {
    let ttls = Ttls {
        ttl: config.cache.ttl.0,
        negative_ttl: config.cache.negative_ttl.0,
        max_stale: config.cache.max_stale.0,
    };
    let signed = config.directory.signed();
    let dir = &config.cache.dir;
    let scan = || cache::scan(dir, &ttls, signed, now_secs());
    let result = match acct {
        Some(a) if root => privdrop::as_user(a, scan).and_then(|r| r),
        _ if root => Err("[cache] owner unusable".into()),
        _ => scan(),
    };
    match result {
        Ok(s) => cache::checks(&s, dir, &ttls),
        Err(e) => {
            let why = if root {
                format!("skipped: {e}")
            } else {
                format!("skipped: needs root or the [cache] owner ({e})")
            };
            [
                "cache.entries",
                "cache.expired",
                "cache.corrupt",
                "cache.tmp",
            ]
            .iter()
            .map(|id| Check::skip(id, why.clone()))
            .collect()
        }
    }
}

fn pam_checks(opts: &Options, use_pam: Option<bool>) -> (Option<bool>, Vec<Check>) {
    let file = opts.pam_file.display().to_string();
    let mut out = Vec::new();
    let text = match std::fs::read_to_string(&opts.pam_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            out.push(Check::skip(
                "pam.stack",
                format!("skipped: needs root ({file}: {e})"),
            ));
            return (None, out);
        }
        Err(e) => {
            out.push(Check::fail(
                "pam.stack",
                format!("{file}: {e}"),
                format!("create {file} with `auth requisite pam_keyward.so` before the password modules"),
            ));
            return (Some(false), out);
        }
    };
    let label = opts
        .pam_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    let auth = pam::flatten("auth", &label, &text, &pam::load_include, 2);
    let session = pam::flatten("session", &label, &text, &pam::load_include, 2);
    let stack = pam::analyse_auth(&auth);
    for mut check in [
        pam::stack_check(&file, &stack),
        pam::session_check(&file, &session),
    ] {
        if use_pam == Some(false) && check.status == Status::Fail {
            // sshd does not use PAM: sshd.password already says what matters.
            check.status = Status::Warn;
            check.found = format!("(UsePAM no: sshd does not use it) {}", check.found);
        }
        out.push(check);
    }
    // The module itself: present, and as safe as sshd's own files.
    let named: Vec<&pam::ModLine> = auth
        .iter()
        .chain(&session)
        .filter(|m| pam::is_keyward(m))
        .collect();
    let module = named
        .first()
        .map(|m| m.module.clone())
        .unwrap_or_else(|| "pam_keyward.so".into());
    let dirs = pam::security_dirs();
    let where_ = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match pam::find_module(&module, &dirs) {
        Some(p) => match perms::stat_chain(&p).ok().and_then(|c| perms::check_chain(&c, Kind::File, &[0], "root")) {
            Some(f) => out.push(Check::fail(
                "pam.module",
                format!("{}: sshd loads it as root", f.found),
                f.fix,
            )),
            None => out.push(Check::ok("pam.module", format!("{} installed", p.display()))),
        },
        None if !named.is_empty() => out.push(Check::fail(
            "pam.module",
            format!("{module} is in {file} but not installed (looked in {where_}): PAM cannot load it, the stack errors and nothing is logged"),
            "install the keyward package (pam_keyward.so, root 0644, in the security directory)",
        )),
        None => out.push(Check::warn(
            "pam.module",
            format!("pam_keyward.so is not installed (looked in {where_})"),
            "install the keyward package",
        )),
    }
    (Some(stack.blocks()), out)
}

fn new_report(opts: &Options, uid: u32, checks: Vec<Check>) -> Report {
    Report::new(
        opts.config.display().to_string(),
        opts.user.clone(),
        uid,
        checks,
    )
}

/// Every check, in report order.
pub fn collect(opts: &Options) -> Report {
    let uid = privdrop::euid();
    let root = uid == 0;
    let mut checks = Vec::new();

    if let Some(u) = &opts.user {
        if let Err(e) = crate::username::validate(u, 256) {
            checks.push(Check::fail(
                "user.name",
                format!("{u:?} is not a valid user name: {e}"),
                "pass a POSIX user name",
            ));
            return new_report(opts, uid, checks);
        }
    }
    let (config, c) = config_checks(&opts.config);
    checks.extend(c);
    if let (Some(c), Some(u)) = (&config, &opts.user) {
        if let Err(e) = crate::username::validate(u, c.policy.max_username_len) {
            checks.push(Check::fail(
                "user.name",
                format!("{u:?}: {e}: keyward refuses it"),
                "raise [policy] max_username_len, or rename the account",
            ));
        }
    }

    let this_exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let probe = crate::sshd::probe(opts.sshd_config.as_deref(), opts.user.as_deref());
    let akc_bin = probe
        .result
        .as_ref()
        .ok()
        .and_then(|t| t.set("authorizedkeyscommand"))
        .and_then(|l| crate::sshd::argv_split(l).ok())
        .and_then(|a| a.into_iter().next())
        .filter(|a| a.starts_with('/'));
    match (&akc_bin, &this_exe) {
        (Some(b), _) => checks.push(binary_check(Path::new(b), "the AuthorizedKeysCommand")),
        (None, Some(exe)) => checks.push(binary_check(exe, "this keyward")),
        (None, None) => checks.push(binary_check(
            Path::new("/usr/sbin/keyward"),
            "the packaged keyward",
        )),
    }

    let mut acct = None;
    match &config {
        Some(c) => {
            let (a, cs) = owner_and_dir_checks(c, &opts.config, root);
            checks.extend(cs);
            checks.extend(cache_entry_checks(c, a.as_ref(), root));
            acct = a;
        }
        None => checks.push(Check::skip(
            "cache.owner",
            "skipped: the config did not load",
        )),
    }

    // sshd, with the PAM verdict it depends on.
    let use_pam = probe.result.as_ref().ok().and_then(|t| t.yes("usepam"));
    let (pam_blocks, pam_list) = pam_checks(opts, use_pam);
    let fix_file = opts
        .sshd_config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/etc/ssh/sshd_config.d/keyward.conf".into());
    let pam_file = opts.pam_file.display().to_string();
    match &probe.result {
        Ok(t) => {
            checks.push(Check::ok(
                "sshd",
                format!(
                    "{}, effective configuration from `{}`",
                    probe
                        .version
                        .map(|v| format!("OpenSSH {v}"))
                        .unwrap_or_else(|| "OpenSSH (version unknown)".into()),
                    probe.cmdline
                ),
            ));
            let same = |a: &Path, b: &Path| same_file(a, b);
            let facts = sshd::Facts {
                t,
                version: probe.version,
                fix_file: &fix_file,
                this_exe: this_exe.as_deref(),
                same_file: &same,
                doctor_config: &opts.config,
                keyward: config.as_ref(),
                user_exists: &user_exists,
                pam_blocks,
                pam_file: &pam_file,
            };
            checks.extend(sshd::command_checks(&facts));
            checks.push(sshd::command_user_check(&facts));
            checks.extend(sshd::auth_checks(&facts));
        }
        Err(e) if !root => checks.push(Check::skip(
            "sshd",
            format!(
                "skipped: needs root (`{}` must read the host keys: {e})",
                probe.cmdline
            ),
        )),
        Err(e) => checks.push(Check::fail(
            "sshd",
            format!("`{}` failed: {e}", probe.cmdline),
            format!(
                "sshd -t{} shows the error; fix it before anything else",
                opts.sshd_config
                    .as_ref()
                    .map(|p| format!(" -f {}", p.display()))
                    .unwrap_or_default()
            ),
        )),
    }
    checks.extend(pam_list);

    if let Some(u) = &opts.user {
        match privdrop::account(u) {
            Ok(Some(a)) => checks.push(Check::ok(
                "user.account",
                format!("{u} is known to NSS (uid {}, home {}); `keyward explain {u}` shows every key and verdict", a.uid, a.home),
            )),
            Ok(None) => checks.push(Check::fail(
                "user.account",
                format!("{u} is unknown to NSS: sshd never runs the AuthorizedKeysCommand for it"),
                format!("create the account {u} (or fix NSS: getent passwd {u})"),
            )),
            Err(e) => checks.push(Check::fail(
                "user.account",
                format!("looking up {u}: {e}"),
                "check NSS (/etc/nsswitch.conf)",
            )),
        }
    }

    if systemd::running() {
        let max_age = config
            .as_ref()
            .map(|c| (c.cache.ttl.0 * 2).max(Duration::from_secs(3600)))
            .unwrap_or(Duration::from_secs(3600));
        checks.extend(systemd::checks(&systemd::probe(), now_secs(), max_age));
    } else {
        checks.push(Check::skip("systemd.timer", "skipped: systemd not running"));
    }

    // Network last: as root, only after dropping to the cache owner.
    if let Some(c) = &config {
        if c.directory.urls.is_empty() {
            checks.push(Check::ok(
                "directory.mirror",
                "no [directory] urls: keys come from [files] only",
            ));
        } else {
            let dropped = if root {
                let target = match acct {
                    Some(a) => Ok(Some(a)),
                    None => privdrop::account("nobody").map_err(|e| e.to_string()),
                };
                target.and_then(|a| privdrop::drop_privileges(a.as_ref()))
            } else {
                Ok(())
            };
            match dropped {
                Ok(()) => checks.extend(directory::checks(&c.directory, opts.user.as_deref())),
                Err(e) => checks.push(Check::skip(
                    "directory.mirror",
                    format!("skipped: no network I/O as root, and dropping privileges failed: {e}"),
                )),
            }
        }
    }
    new_report(opts, uid, checks)
}
