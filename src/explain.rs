//! `keyward explain USER [--fingerprint FP]`: why can (or can't) USER log in
//! with a key? Every key from every source with type, bits, fingerprint,
//! comment, options, source and age, and the verdict of the login path's
//! own code for each (`lookup::gather` for the sources, `policy::evaluate`
//! for the verdicts), plus what sshd does with the user before it ever runs
//! keyward (NSS, locked or expired account, shell, AllowUsers…).
//!
//! Nothing private is printed: an invalid line is described by its error,
//! never echoed (a private key pasted into a key list stays unseen).
//!
//! As root, the account checks run first: `gather` drops privileges to the
//! `[cache] owner` for good, exactly as the login path does.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::doctor::sshd::{self, SshdT};
use crate::doctor::{Check, Status};
use crate::keyline::{KeyLine, LineError};
use crate::lookup::{self, Failure, Gathered};
use crate::policy::{self, DropReason, FpFilter, Verdict};
use crate::privdrop;
use crate::term::{human_age, Cell, Color, Style, Table};

/// What `keyward explain` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub user: String,
    pub fingerprint: Option<String>,
    pub json: bool,
    /// `sshd -T -f PATH` for the sshd part (default: sshd's own config).
    pub sshd_config: Option<PathBuf>,
}

/// One key (or one skipped file) and its verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// 1-based position among the candidates (as in "duplicate of key #1").
    pub n: Option<usize>,
    /// `directory` or the file path.
    pub source: String,
    pub line: Option<usize>,
    /// How the directory answer was obtained (`cache`, `directory`,
    /// `stale`), or `files`.
    pub via: String,
    pub age_s: Option<u64>,
    /// `served`, `dropped` or `skipped` (an unsafe file).
    pub verdict: String,
    /// `key-type`, `rsa-bits`, `expired`, `duplicate`, `max-keys`,
    /// `invalid`, `unsafe-file`.
    pub reason_tag: Option<String>,
    pub reason: Option<String>,
    pub key_type: Option<String>,
    pub bits: Option<u32>,
    pub fingerprint: Option<String>,
    pub comment: Option<String>,
    pub options: Option<String>,
    pub cert_authority: bool,
    pub expires: Option<String>,
    /// With --fingerprint: whether this is the key sshd asks about.
    pub matches: Option<bool>,
    /// With --fingerprint: whether keyward prints this line to sshd.
    pub printed: Option<bool>,
}

/// The whole explanation (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub format: u32,
    pub keyward: &'static str,
    pub config: String,
    pub user: String,
    /// Effective uid explain started with.
    pub uid: u32,
    /// Account and sshd facts, as doctor checks (`account.*`, `sshd.*`,
    /// `keyward.*`).
    pub checks: Vec<Check>,
    /// `cache`, `directory`, `stale`, `files` (what the login path used).
    pub sources: Vec<String>,
    pub keys: Vec<KeyInfo>,
    pub warnings: Vec<String>,
    /// Set when the login path would fail closed (sshd then rejects every key).
    pub failure: Option<String>,
    pub fingerprint: Option<String>,
    /// One sentence: what happens.
    pub verdict: String,
}

/// Runs explain and prints it; returns the exit code (0 when explained).
pub fn run(opts: &Options) -> i32 {
    let style = Style::detect();
    let config = match crate::cli::load_config(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            if opts.json {
                let v = serde_json::json!({ "format": 1, "error": e });
                println!("{v}");
            } else {
                eprintln!("keyward explain: {e}");
                eprintln!("(keyward refuses to run without a valid config: every login with a key fails; `keyward doctor` says how to fix it)");
            }
            return 1;
        }
    };
    let ex = explain(&config, opts);
    let text = if opts.json {
        let mut s = serde_json::to_string_pretty(&ex).unwrap_or_default();
        s.push('\n');
        s
    } else {
        render(&ex, &style)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    0
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (password field, expire day) from the shadow database (root only).
fn shadow(user: &str) -> Result<Option<(String, Option<i64>)>, String> {
    let cname = CString::new(user).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: out-parameters; buf outlives their use.
    let mut sp: libc::spwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::spwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getspnam_r(
            cname.as_ptr(),
            &mut sp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 && rc != libc::ENOENT {
        return Err(std::io::Error::from_raw_os_error(rc).to_string());
    }
    if result.is_null() {
        return Ok(None);
    }
    let pw = if sp.sp_pwdp.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(sp.sp_pwdp) }
            .to_string_lossy()
            .into_owned()
    };
    let expire = (sp.sp_expire >= 0).then_some(sp.sp_expire as i64);
    Ok(Some((pw, expire)))
}

/// Names of the groups of `acct`.
fn group_names(acct: &privdrop::Account) -> Vec<String> {
    crate::doctor::groups_of(acct)
        .into_iter()
        .filter_map(|gid| {
            let mut buf = vec![0u8; 16384];
            // SAFETY: out-parameters; buf outlives their use.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = unsafe {
                libc::getgrgid_r(
                    gid,
                    &mut grp,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            };
            if rc != 0 || result.is_null() || grp.gr_name.is_null() {
                return None;
            }
            Some(
                unsafe { CStr::from_ptr(grp.gr_name) }
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

/// What the shadow password field means for sshd. With UsePAM no, sshd
/// itself refuses an account whose field starts with `!` for every method,
/// keys included; with UsePAM yes it leaves that to PAM's account stack,
/// where pam_unix does not look at the lock (key logins then work).
pub fn password_check(field: &str, use_pam: Option<bool>) -> Check {
    if field.starts_with('!') {
        return match use_pam {
            Some(false) => Check::fail(
                "account.password",
                "locked (password field starts with '!') and UsePAM no: sshd refuses every login, keys included (\"User … not allowed because account is locked\")",
                "usermod -p '*' USER (no password, not locked) or UsePAM yes",
            ),
            Some(true) => Check::ok(
                "account.password",
                "locked (password field starts with '!'): no password login; with UsePAM yes sshd leaves the lock to PAM's account stack and key logins work",
            ),
            None => Check::warn(
                "account.password",
                "locked (password field starts with '!'): with UsePAM no sshd refuses every login (keys too); with UsePAM yes key logins work",
                "usermod -p '*' USER to allow key logins whatever UsePAM says",
            ),
        };
    }
    match field {
        "*" => Check::ok(
            "account.password",
            "no password ('*'), not locked: key logins work",
        ),
        "" => Check::warn(
            "account.password",
            "empty password field: with PermitEmptyPasswords yes anyone logs in without a password",
            "usermod -p '*' USER",
        ),
        _ => Check::ok(
            "account.password",
            "has a password (password logins are what pam_keyward refuses)",
        ),
    }
}

/// The shadow expire field (days since 1970), compared with today.
pub fn expiry_check(expire: Option<i64>, today: i64) -> Check {
    match expire {
        Some(d) if d <= today => Check::fail(
            "account.expiry",
            format!(
                "account expired on {}: sshd refuses every login (sshd itself, or pam_unix in the account stack)",
                &crate::signed::format_utc(d * 86400)[..10]
            ),
            "chage -E -1 USER (or a later date)",
        ),
        Some(d) => Check::ok(
            "account.expiry",
            format!("expires on {}", &crate::signed::format_utc(d * 86400)[..10]),
        ),
        None => Check::ok("account.expiry", "does not expire"),
    }
}

/// sshd's shell rule: a missing or non-executable shell refuses the user
/// before any key is tried; nologin lets the key through but no session.
pub fn shell_check(shell: &str, exists: bool, executable: bool) -> Check {
    let shell = if shell.is_empty() { "/bin/sh" } else { shell };
    if !exists {
        return Check::fail(
            "account.shell",
            format!("shell {shell} does not exist: sshd refuses the user before trying any key (\"not allowed because shell {shell} does not exist\")"),
            format!("chsh -s /bin/bash USER (or install {shell})"),
        );
    }
    if !executable {
        return Check::fail(
            "account.shell",
            format!("shell {shell} is not executable: sshd refuses the user before trying any key"),
            format!("chmod 0755 {shell}"),
        );
    }
    let base = shell.rsplit('/').next().unwrap_or(shell);
    if base == "nologin" || base == "false" {
        return Check::warn(
            "account.shell",
            format!("shell {shell}: the key is accepted, then the session ends at once"),
            "chsh -s /bin/bash USER if the user should get a shell",
        );
    }
    Check::ok("account.shell", format!("shell {shell}"))
}

/// Whether sshd runs the AuthorizedKeysCommand for `user` at all.
pub fn sshd_runs_check(t: &SshdT, user: &str, groups: &[String], locked: bool) -> Check {
    if let Err(why) = sshd::user_lists(t, user, groups) {
        return Check::fail(
            "sshd.runs",
            format!("sshd refuses {user} before trying any key: {why}"),
            "change AllowUsers/DenyUsers/AllowGroups/DenyGroups in sshd_config",
        );
    }
    if locked && t.yes("usepam") == Some(false) {
        return Check::fail(
            "sshd.runs",
            format!("sshd refuses {user}: account locked and UsePAM no"),
            "usermod -p '*' USER",
        );
    }
    if t.yes("pubkeyauthentication") == Some(false) {
        return Check::fail(
            "sshd.runs",
            format!("PubkeyAuthentication no for {user}: sshd tries no key"),
            "PubkeyAuthentication yes (check Match blocks)",
        );
    }
    let Some(cmd) = t.set("authorizedkeyscommand") else {
        return Check::fail(
            "sshd.runs",
            format!("no AuthorizedKeysCommand applies to {user}: sshd never asks keyward"),
            "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f (check Match blocks)",
        );
    };
    let Some(as_user) = t.set("authorizedkeyscommanduser") else {
        return Check::fail(
            "sshd.runs",
            "AuthorizedKeysCommandUser is not set: sshd refuses to run the command",
            "AuthorizedKeysCommandUser keyward",
        );
    };
    if !cmd.contains("keyward") {
        return Check::warn(
            "sshd.runs",
            format!("sshd runs `{cmd}` for {user}, which does not look like keyward"),
            "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f",
        );
    }
    Check::ok(
        "sshd.runs",
        format!("sshd runs `{cmd}` as {as_user} for {user}"),
    )
}

/// An invalid line described without echoing what may be key material.
pub fn describe_invalid(e: &LineError) -> String {
    // keyline errors never quote more than a short option name (long text
    // is only measured there); what is left to add is the hint for a pasted
    // private key's armour line.
    let secret = |name: &str| -> Option<String> {
        (name.starts_with("-----") || name.to_ascii_uppercase().contains("PRIVATE")).then(|| {
            "looks like a PRIVATE key (not shown): remove it from the source and replace that key"
                .into()
        })
    };
    match e {
        LineError::UnknownOption(n) | LineError::BadOption(n) => {
            secret(n).unwrap_or_else(|| format!("invalid line: {e}"))
        }
        other => format!("invalid line: {other}"),
    }
}

fn reason_text(r: &DropReason) -> String {
    match r {
        DropReason::Invalid(e) => describe_invalid(e),
        other => other.to_string(),
    }
}

fn key_fields(k: &KeyLine) -> KeyInfo {
    KeyInfo {
        n: None,
        source: String::new(),
        line: None,
        via: String::new(),
        age_s: None,
        verdict: String::new(),
        reason_tag: None,
        reason: None,
        key_type: Some(k.key.algorithm().as_str().to_owned()),
        bits: Some(k.bits()),
        fingerprint: Some(k.fingerprint()),
        comment: Some(k.key.comment().to_owned()).filter(|c| !c.is_empty()),
        options: Some(k.options.clone()).filter(|o| !o.is_empty()),
        cert_authority: k.cert_authority,
        expires: k
            .expiry
            .and_then(|e| e.epoch())
            .map(crate::signed::format_utc),
        matches: None,
        printed: None,
    }
}

/// Ages of the configured local files, by the path `gather` labels them with.
fn file_ages(config: &Config, acct: &privdrop::Account) -> HashMap<String, u64> {
    let now = SystemTime::now();
    config
        .files
        .paths
        .iter()
        .filter_map(|t| {
            let p = crate::config::expand_file_template(t, &acct.home, &acct.name);
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((p, now.duration_since(m).map(|d| d.as_secs()).unwrap_or(0)))
        })
        .collect()
}

/// Builds the explanation. As root this drops privileges (via `gather`).
pub fn explain(config: &Config, opts: &Options) -> Explanation {
    let user = opts.user.as_str();
    let uid = privdrop::euid();
    let root = uid == 0;
    let mut checks = Vec::new();
    let mut ex = Explanation {
        format: 1,
        keyward: env!("CARGO_PKG_VERSION"),
        config: opts.config.display().to_string(),
        user: user.to_owned(),
        uid,
        checks: Vec::new(),
        sources: Vec::new(),
        keys: Vec::new(),
        warnings: Vec::new(),
        failure: None,
        fingerprint: opts.fingerprint.clone(),
        verdict: String::new(),
    };

    if let Err(e) = crate::username::validate(user, config.policy.max_username_len) {
        checks.push(Check::fail(
            "keyward.name",
            format!("{user:?} is not a valid user name for keyward: {e}"),
            "rename the account, or raise [policy] max_username_len",
        ));
        ex.checks = checks;
        ex.failure = Some(format!("invalid user name: {e}"));
        ex.verdict = format!("keyward fails closed for {user:?}: sshd rejects every key");
        return ex;
    }

    // Everything that needs root, before gather drops privileges.
    let acct = privdrop::account(user).ok().flatten();
    let mut locked = false;
    match &acct {
        Some(a) => checks.push(Check::ok(
            "account.nss",
            format!("{user} is known to NSS (uid {}, home {})", a.uid, a.home),
        )),
        None => checks.push(Check::fail(
            "account.nss",
            format!("{user} is unknown to NSS: sshd never runs the AuthorizedKeysCommand for it, no key can work"),
            format!("create the account (useradd) or fix NSS: getent passwd {user}"),
        )),
    }
    let probe = if root {
        Some(sshd::probe(opts.sshd_config.as_deref(), Some(user)))
    } else {
        None
    };
    let use_pam = probe
        .as_ref()
        .and_then(|p| p.result.as_ref().ok())
        .and_then(|t| t.yes("usepam"));
    if let Some(a) = &acct {
        if root {
            match shadow(user) {
                Ok(Some((pw, expire))) => {
                    locked = pw.starts_with('!');
                    checks.push(password_check(&pw, use_pam));
                    checks.push(expiry_check(expire, (now_secs() / 86400) as i64));
                }
                Ok(None) => checks.push(Check::ok(
                    "account.password",
                    "no shadow entry (password managed elsewhere)",
                )),
                Err(e) => checks.push(Check::skip(
                    "account.password",
                    format!("skipped: shadow lookup failed: {e}"),
                )),
            }
        } else {
            checks.push(Check::skip(
                "account.password",
                "skipped: needs root (/etc/shadow)",
            ));
        }
        let shell = a.shell.clone();
        let shell_path = if shell.is_empty() {
            "/bin/sh".to_string()
        } else {
            shell.clone()
        };
        let meta = std::fs::metadata(&shell_path);
        let exec = meta
            .as_ref()
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
            .unwrap_or(false);
        checks.push(shell_check(&shell, meta.is_ok(), exec));
        match probe.as_ref().map(|p| &p.result) {
            Some(Ok(t)) => checks.push(sshd_runs_check(t, user, &group_names(a), locked)),
            Some(Err(e)) => checks.push(Check::warn(
                "sshd.runs",
                format!("sshd -T failed: {e}"),
                "sshd -t shows the error",
            )),
            None => checks.push(Check::skip(
                "sshd.runs",
                "skipped: needs root (sshd -T reads the host keys)",
            )),
        }
    }
    let ages = acct
        .as_ref()
        .map(|a| file_ages(config, a))
        .unwrap_or_default();

    if config.policy.deny_users.iter().any(|d| d == user) {
        checks.push(Check::fail(
            "keyward.deny",
            format!("{user} is in [policy] deny_users: keyward answers with no keys, without looking at any source"),
            format!("remove {user} from [policy] deny_users if keys should work"),
        ));
        ex.checks = checks;
        ex.verdict =
            format!("denied: keyward prints no key for {user} (deny_users), so no key login");
        return ex;
    }
    let owner_uid = privdrop::account(&config.cache.owner)
        .ok()
        .flatten()
        .map(|a| a.uid);
    let stand_in = !root && owner_uid != Some(uid);
    if stand_in {
        ex.warnings.push(format!(
            "running as uid {uid}: the login path runs as root or as the [cache] owner {}; what this uid cannot read shows up as a failure here",
            config.cache.owner
        ));
    }

    let gathered = lookup::gather(config, user);
    let Gathered {
        cands,
        sources,
        warnings,
        age,
        ..
    } = match gathered {
        Ok(g) => g,
        Err(Failure { reason, source }) => {
            ex.checks = checks;
            ex.failure = Some(match source {
                Some(s) => format!("{s}: {reason}"),
                None => reason,
            });
            ex.verdict = if stand_in {
                format!("cannot tell as uid {uid}: run `keyward explain {user}` as root")
            } else {
                format!("keyward fails closed for {user} (prints nothing, exits non-zero): sshd rejects every key")
            };
            return ex;
        }
    };
    ex.checks = checks;
    ex.sources = sources.iter().map(|s| s.to_string()).collect();
    let dir_via = sources
        .iter()
        .find(|s| **s != "files")
        .map(|s| s.to_string())
        .unwrap_or_else(|| "directory".into());
    let filter = FpFilter::parse(opts.fingerprint.as_deref());
    let verdicts = policy::evaluate(&config.policy, &cands, now_secs() as i64);
    for (i, (c, v)) in cands.iter().zip(&verdicts).enumerate() {
        let mut info = match &c.parsed {
            Ok(k) => key_fields(k),
            Err(_) => KeyInfo {
                n: None,
                source: String::new(),
                line: None,
                via: String::new(),
                age_s: None,
                verdict: String::new(),
                reason_tag: None,
                reason: None,
                key_type: None,
                bits: None,
                fingerprint: None,
                comment: None,
                options: None,
                cert_authority: false,
                expires: None,
                matches: None,
                printed: None,
            },
        };
        info.n = Some(i + 1);
        info.source = c.source.clone();
        info.line = Some(c.line_no);
        if c.source == "directory" {
            info.via = dir_via.clone();
            info.age_s = age;
        } else {
            info.via = "files".into();
            info.age_s = ages.get(&c.source).copied();
        }
        match v {
            Verdict::Served => info.verdict = "served".into(),
            Verdict::Dropped(r) => {
                info.verdict = "dropped".into();
                info.reason_tag = Some(r.tag().into());
                info.reason = Some(reason_text(r));
            }
        }
        if let (Some(_), Ok(k)) = (&opts.fingerprint, &c.parsed) {
            let (printed, asked) = filter.check(k);
            info.matches = Some(asked);
            info.printed = Some(*v == Verdict::Served && printed);
        }
        ex.keys.push(info);
    }
    for w in warnings {
        match w.strip_prefix("file skipped: ") {
            Some(why) => ex.keys.push(KeyInfo {
                n: None,
                source: why
                    .split(' ')
                    .find(|p| p.starts_with('/'))
                    .unwrap_or("file")
                    .trim_end_matches([':', ','])
                    .to_owned(),
                line: None,
                via: "files".into(),
                age_s: None,
                verdict: "skipped".into(),
                reason_tag: Some("unsafe-file".into()),
                reason: Some(format!("file skipped, like sshd would: {why}")),
                key_type: None,
                bits: None,
                fingerprint: None,
                comment: None,
                options: None,
                cert_authority: false,
                expires: None,
                matches: None,
                printed: None,
            }),
            None => ex.warnings.push(w),
        }
    }
    ex.verdict = verdict(&ex, &filter, opts.fingerprint.as_deref());
    ex
}

fn verdict(ex: &Explanation, filter: &FpFilter, fp: Option<&str>) -> String {
    let served = ex.keys.iter().filter(|k| k.verdict == "served").count();
    let total = ex.keys.iter().filter(|k| k.n.is_some()).count();
    let base = if total == 0 {
        format!("no key for {} in any source: no key login", ex.user)
    } else {
        format!("{served} of {total} key line(s) served to sshd")
    };
    let blocked = ex.checks.iter().any(|c| c.status == Status::Fail);
    let base = if blocked && served > 0 {
        format!("{base}, but sshd refuses the login anyway (see the failing checks above)")
    } else {
        base
    };
    match (fp, filter) {
        (None, _) => base,
        (Some(f), FpFilter::All) => format!(
            "{base}; {f} is not a SHA256 fingerprint: keyward prints every served key and sshd does the matching"
        ),
        (Some(f), FpFilter::Sha256(_)) => {
            let m = ex.keys.iter().find(|k| k.matches == Some(true) && k.printed == Some(true));
            let dropped = ex.keys.iter().find(|k| k.matches == Some(true));
            let cas = ex.keys.iter().filter(|k| k.cert_authority && k.printed == Some(true)).count();
            match (m, dropped) {
                (Some(k), _) => format!(
                    "{base}; sshd asks for {f}: key #{} is printed, so keyward accepts it (sshd still checks the signature and options such as from=)",
                    k.n.unwrap_or(0)
                ),
                (None, Some(k)) => format!(
                    "{base}; sshd asks for {f}: key #{} has it but is dropped ({}), so sshd rejects it",
                    k.n.unwrap_or(0),
                    k.reason.clone().unwrap_or_default()
                ),
                (None, None) if cas > 0 => format!(
                    "{base}; no key has {f}: only the {cas} cert-authority line(s) are printed (enough for a certificate signed by that CA)"
                ),
                (None, None) => format!("{base}; no key has {f}: sshd rejects it"),
            }
        }
    }
}

/// The human rendering.
pub fn render(ex: &Explanation, style: &Style) -> String {
    let mut out = format!(
        "keyward explain {}: config {}{}\n\n",
        ex.user,
        ex.config,
        ex.fingerprint
            .as_ref()
            .map(|f| format!(", fingerprint {f}"))
            .unwrap_or_default()
    );
    if !ex.checks.is_empty() {
        out += &style.paint("Account and sshd\n", Color::Bold);
        let mut t = Table::new().indent(2);
        for c in &ex.checks {
            let mut text = c.found.replace("USER", &ex.user);
            if let Some(fix) = &c.fix {
                text += &format!("  -> fix: {}", fix.replace("USER", &ex.user));
            }
            let color = match c.status {
                Status::Ok => Color::Green,
                Status::Warn => Color::Yellow,
                Status::Fail => Color::Red,
                Status::Skip => Color::Dim,
            };
            t.row(vec![
                Cell::colored(c.status.label(), color),
                Cell::new(c.id.as_str()),
                Cell::new(text),
            ]);
        }
        out += &t.render(style);
        out.push('\n');
    }
    for w in &ex.warnings {
        out += &format!(
            "{} {}\n",
            style.paint("warning:", Color::Yellow),
            crate::term::sanitize(w)
        );
    }
    if !ex.warnings.is_empty() {
        out.push('\n');
    }
    if let Some(f) = &ex.failure {
        out += &format!("{} {f}\n\n", style.paint("keyward fails:", Color::Red));
    }
    if !ex.keys.is_empty() {
        let srcs = if ex.sources.is_empty() {
            "none".to_string()
        } else {
            ex.sources.join(" + ")
        };
        out += &style.paint(&format!("Keys (sources: {srcs})\n"), Color::Bold);
        let mut header = vec![
            "#",
            "VERDICT",
            "TYPE",
            "BITS",
            "FINGERPRINT",
            "SOURCE",
            "AGE",
            "COMMENT",
        ];
        if ex.fingerprint.is_some() {
            header.insert(2, "SSHD");
        }
        let mut t = Table::new()
            .header(&header)
            .right_align(if ex.fingerprint.is_some() { 4 } else { 3 })
            .indent(2);
        for k in &ex.keys {
            let verdict = match (&k.verdict[..], &k.reason_tag) {
                ("served", _) => Cell::colored("served", Color::Green),
                (v, Some(tag)) => Cell::colored(format!("{v}: {tag}"), Color::Red),
                (v, None) => Cell::colored(v, Color::Red),
            };
            let src = match (k.line, k.via.as_str()) {
                (Some(l), "files") => format!("{}:{l}", k.source),
                (Some(l), "directory") => format!("{}:{l} (fetched now)", k.source),
                (Some(l), "stale") => format!("{}:{l} (stale cache, directory down)", k.source),
                (Some(l), via) => format!("{}:{l} ({via})", k.source),
                (None, _) => k.source.clone(),
            };
            let mut row = vec![
                Cell::new(k.n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())),
                verdict,
                Cell::new(
                    k.key_type
                        .clone()
                        .map(|t| {
                            if k.cert_authority {
                                format!("{t} (CA)")
                            } else {
                                t
                            }
                        })
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::new(k.bits.map(|b| b.to_string()).unwrap_or_else(|| "-".into())),
                Cell::new(k.fingerprint.clone().unwrap_or_else(|| "-".into())),
                Cell::new(src),
                Cell::new(k.age_s.map(human_age).unwrap_or_else(|| "-".into())),
                Cell::new(k.comment.clone().unwrap_or_default()),
            ];
            if ex.fingerprint.is_some() {
                let s = match (k.matches, k.printed) {
                    (Some(true), Some(true)) => Cell::colored("match, printed", Color::Green),
                    (Some(true), _) => Cell::colored("match, not printed", Color::Red),
                    (_, Some(true)) => Cell::new("printed (CA)"),
                    _ => Cell::new("-"),
                };
                row.insert(2, s);
            }
            t.row(row);
        }
        out += &t.render(style);
        let details: Vec<String> = ex
            .keys
            .iter()
            .filter_map(|k| {
                let mut parts = Vec::new();
                if let Some(r) = &k.reason {
                    parts.push(r.clone());
                }
                if let Some(o) = &k.options {
                    parts.push(format!("options: {o}"));
                }
                if let Some(e) = &k.expires {
                    parts.push(format!("expires {e}"));
                }
                if parts.is_empty() {
                    return None;
                }
                let n =
                    k.n.map(|n| format!("#{n}"))
                        .unwrap_or_else(|| k.source.clone());
                Some(crate::term::sanitize(&format!(
                    "  {n}: {}",
                    parts.join("; ")
                )))
            })
            .collect();
        if !details.is_empty() {
            out.push('\n');
            out += &details.join("\n");
            out.push('\n');
        }
        out.push('\n');
    }
    out += &format!("{} {}\n", style.paint("Verdict:", Color::Bold), ex.verdict);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_fields() {
        assert_eq!(password_check("*", Some(false)).status, Status::Ok);
        assert_eq!(
            password_check("!$y$j9T$abc", Some(false)).status,
            Status::Fail
        );
        assert_eq!(password_check("!", Some(true)).status, Status::Ok);
        assert_eq!(password_check("!*", None).status, Status::Warn);
        assert_eq!(password_check("", Some(true)).status, Status::Warn);
        assert!(password_check("$y$j9T$abc", Some(true))
            .found
            .contains("has a password"));
    }

    #[test]
    fn expiry_and_shell() {
        assert_eq!(expiry_check(Some(19000), 20000).status, Status::Fail);
        assert!(expiry_check(Some(19000), 20000)
            .found
            .contains("2022-01-08"));
        assert_eq!(expiry_check(Some(30000), 20000).status, Status::Ok);
        assert_eq!(expiry_check(None, 20000).status, Status::Ok);
        assert_eq!(shell_check("/bin/bash", true, true).status, Status::Ok);
        assert_eq!(shell_check("/bin/nope", false, false).status, Status::Fail);
        assert_eq!(
            shell_check("/usr/sbin/nologin", true, true).status,
            Status::Warn
        );
        assert!(shell_check("", true, true).found.contains("/bin/sh"));
    }

    #[test]
    fn sshd_runs() {
        let good = SshdT::parse("usepam yes\npubkeyauthentication yes\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\n");
        assert_eq!(
            sshd_runs_check(&good, "alice", &[], false).status,
            Status::Ok
        );
        assert_eq!(
            sshd_runs_check(&good, "alice", &[], true).status,
            Status::Ok
        );
        let nopam = SshdT::parse("usepam no\npubkeyauthentication yes\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\n");
        assert_eq!(
            sshd_runs_check(&nopam, "alice", &[], true).status,
            Status::Fail
        );
        let deny =
            SshdT::parse("denyusers alice\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\n");
        assert!(sshd_runs_check(&deny, "alice", &[], false)
            .found
            .contains("DenyUsers"));
        let none = SshdT::parse("authorizedkeyscommand none\n");
        assert_eq!(
            sshd_runs_check(&none, "alice", &[], false).status,
            Status::Fail
        );
    }

    #[test]
    fn private_material_is_never_echoed() {
        for line in [
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW QyNTUxOQAAACDzjH8C",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
        ] {
            let err = crate::keyline::parse_line(line).unwrap_err();
            let text = describe_invalid(&err);
            assert!(!text.contains("b3BlbnNz") && !text.contains("QyNTUx"), "{text}");
            if line.starts_with("-----") {
                assert!(text.contains("PRIVATE key"), "{text}");
            }
        }
        let e = crate::keyline::parse_line("bogus-opt ssh-ed25519 AAAA").unwrap_err();
        assert_eq!(
            describe_invalid(&e),
            "invalid line: unknown option \"bogus-opt\""
        );
    }
}
