//! The effective sshd configuration (`sshd -T`) and what it means for
//! keyward. Parsing and every rule are pure; `probe` runs sshd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run_command;
use crate::config::Config;
use crate::report::Check;

/// `sshd -T` output: one `keyword value` per line, keywords lower-case.
/// Keywords that take a list (AllowUsers…) appear on several lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdT {
    entries: Vec<(String, String)>,
}

impl SshdT {
    pub fn parse(text: &str) -> SshdT {
        let entries = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                if l.is_empty() {
                    return None;
                }
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                Some((k.to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        SshdT { entries }
    }

    /// The first value of `key` (lower-case keyword).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list keyword, split on whitespace.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split_whitespace())
            .collect()
    }

    pub fn yes(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v.eq_ignore_ascii_case("yes"))
    }

    /// A keyword that names a file or command, `None` when unset/`none`.
    pub fn set(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty() && *v != "none")
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An OpenSSH version (`OpenSSH_9.2p1` → 9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Finds `OpenSSH_X.Y` in `sshd -V` / `ssh -V` output.
pub fn parse_version(text: &str) -> Option<Version> {
    let i = text.find("OpenSSH_")?;
    let rest = &text[i + "OpenSSH_".len()..];
    let mut parts = rest.splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_txt: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some(Version {
        major,
        minor: minor_txt.parse().ok()?,
    })
}

/// Splits a command line the way sshd's argv_split() does: whitespace
/// separates, double or single quotes group, a backslash escapes a quote,
/// a backslash or a space.
pub fn argv_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('"' | '\'' | '\\' | ' ')) => {
                cur.push(chars.next().unwrap_or('\\'));
                in_arg = true;
            }
            q @ ('"' | '\'') if quote.is_none() => {
                quote = Some(q);
                in_arg = true;
            }
            q if Some(q) == quote => quote = None,
            ' ' | '\t' if quote.is_none() => {
                if in_arg {
                    out.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            c => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_arg {
        out.push(cur);
    }
    Ok(out)
}

/// `%` tokens used in `arg` (the letter after each `%`; `%%` gives '%').
pub fn tokens(arg: &str) -> Result<Vec<char>, String> {
    let mut out = Vec::new();
    let mut chars = arg.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(t) => out.push(t),
                None => return Err(format!("{arg:?} ends with a lone %")),
            }
        }
    }
    Ok(out)
}

/// Tokens sshd expands in AuthorizedKeysCommand arguments: `%C` and `%D`
/// only from OpenSSH 9.4; any other makes sshd fatal on every connection.
pub fn token_supported(t: char, v: Option<Version>) -> Option<bool> {
    match t {
        '%' | 'u' | 'U' | 'h' | 't' | 'f' | 'k' => Some(true),
        'C' | 'D' => v.map(|v| v >= Version { major: 9, minor: 4 }),
        _ => Some(false),
    }
}

/// What the AuthorizedKeysCommand asks keyward to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Akc {
    pub argv: Vec<String>,
    /// `--config X` when given.
    pub config: Option<String>,
    /// The subcommand (`keys` expected).
    pub subcommand: Option<String>,
    /// Positionals after the subcommand: user token, fingerprint token.
    pub user_arg: Option<String>,
    pub fp_arg: Option<String>,
}

pub fn parse_akc(argv: Vec<String>) -> Akc {
    let mut config = None;
    let mut subcommand = None;
    let mut pos = Vec::new();
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            config = it.next().cloned();
        } else if let Some(c) = a.strip_prefix("--config=") {
            config = Some(c.to_owned());
        } else if a.starts_with('-') && a.len() > 1 {
            // another option: keyward keys has none
        } else if subcommand.is_none() {
            subcommand = Some(a.clone());
        } else {
            pos.push(a.clone());
        }
    }
    let mut pos = pos.into_iter();
    Akc {
        argv,
        config,
        subcommand,
        user_arg: pos.next(),
        fp_arg: pos.next(),
    }
}

/// Everything the sshd rules need besides `sshd -T` itself.
pub struct Facts<'a> {
    pub t: &'a SshdT,
    pub version: Option<Version>,
    /// Where a fix goes (`/etc/ssh/sshd_config.d/keyward.conf` or the
    /// `--sshd-config` file).
    pub fix_file: &'a str,
    /// The running keyward binary.
    pub this_exe: Option<&'a Path>,
    pub same_file: &'a dyn Fn(&Path, &Path) -> bool,
    /// The config this doctor run checks.
    pub doctor_config: &'a Path,
    pub keyward: Option<&'a Config>,
    pub user_exists: &'a dyn Fn(&str) -> Option<bool>,
    /// Whether pam_keyward blocks the auth stack (None: unknown).
    pub pam_blocks: Option<bool>,
    /// Name of the PAM file, for messages.
    pub pam_file: &'a str,
}

fn example_command(argv0: &str, config: Option<&str>) -> String {
    match config {
        Some(c) if c != crate::config::DEFAULT_PATH => {
            format!("AuthorizedKeysCommand {argv0} --config {c} keys %u %f")
        }
        _ => format!("AuthorizedKeysCommand {argv0} keys %u %f"),
    }
}

/// The AuthorizedKeysCommand rules: points at keyward `keys %u %f`, only
/// tokens this sshd knows, the same config as this doctor run.
pub fn command_checks(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    let file = f.fix_file;
    let Some(line) = f.t.set("authorizedkeyscommand") else {
        out.push(Check::fail(
            "sshd.command",
            "AuthorizedKeysCommand is not set: sshd never asks keyward for keys",
            format!("add `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f` and `AuthorizedKeysCommandUser keyward` to {file}"),
        ));
        return out;
    };
    let argv = match argv_split(line) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) | Err(_) => {
            out.push(Check::fail(
                "sshd.command",
                format!("AuthorizedKeysCommand {line:?} cannot be split into arguments"),
                format!("fix the quoting in {file}"),
            ));
            return out;
        }
    };
    let akc = parse_akc(argv);
    let argv0 = akc.argv[0].clone();
    let good = example_command(&argv0, akc.config.as_deref());
    if !argv0.starts_with('/') {
        out.push(Check::fail(
            "sshd.command",
            format!("AuthorizedKeysCommand {argv0} is not an absolute path: sshd refuses to run it"),
            format!("use the full path, e.g. `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f` in {file}"),
        ));
        return out;
    }
    let is_this = f.this_exe.map(|exe| (f.same_file)(Path::new(&argv0), exe));
    let named_keyward = Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("keyward"));
    if akc.subcommand.as_deref() != Some("keys") {
        out.push(Check::fail(
            "sshd.command",
            format!(
                "AuthorizedKeysCommand {line:?} does not run `keyward keys`{}",
                if named_keyward {
                    ""
                } else {
                    " (not keyward at all?)"
                }
            ),
            format!("{good} in {file}"),
        ));
        return out;
    }
    match akc.user_arg.as_deref() {
        Some("%u") => {}
        Some("%U") => {
            out.push(Check::fail(
                "sshd.command",
                "AuthorizedKeysCommand passes %U (the numeric uid): keyward needs the user name %u",
                format!("{good} in {file}"),
            ));
            return out;
        }
        other => {
            out.push(Check::fail(
                "sshd.command",
                format!(
                    "AuthorizedKeysCommand passes {} as the user: keyward needs %u",
                    other
                        .map(|o| format!("{o:?}"))
                        .unwrap_or_else(|| "nothing".into())
                ),
                format!("{good} in {file}"),
            ));
            return out;
        }
    }
    match is_this {
        Some(false) if !named_keyward => out.push(Check::fail(
            "sshd.command",
            format!("AuthorizedKeysCommand runs {argv0}, which is not keyward"),
            format!("{good} in {file}"),
        )),
        Some(false) => out.push(Check::warn(
            "sshd.command",
            format!(
                "AuthorizedKeysCommand runs {argv0}, not this keyward ({}): another build or version?",
                f.this_exe.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            format!("run {argv0} doctor, or point AuthorizedKeysCommand at the keyward you mean in {file}"),
        )),
        _ => out.push(Check::ok(
            "sshd.command",
            format!("AuthorizedKeysCommand {line}"),
        )),
    }
    match akc.fp_arg.as_deref() {
        Some("%f") => out.push(Check::ok(
            "sshd.command_fp",
            "%f passed: keyward prints only the key being tried (plus cert-authority lines)",
        )),
        None => out.push(Check::warn(
            "sshd.command_fp",
            "no %f: keyward prints every key for every attempt (sshd runs it once per key offered)",
            format!("{good} in {file}"),
        )),
        Some(o) => out.push(Check::warn(
            "sshd.command_fp",
            format!("{o:?} passed where keyward expects the fingerprint %f: every key is printed for every attempt"),
            format!("{good} in {file}"),
        )),
    }
    // Tokens: sshd expands them in the arguments only, and an unknown one is
    // fatal for every connection.
    let mut bad = Vec::new();
    let mut unsure = Vec::new();
    for a in &akc.argv[1..] {
        match tokens(a) {
            Ok(ts) => {
                for t in ts {
                    match token_supported(t, f.version) {
                        Some(true) => {}
                        Some(false) => bad.push(format!("%{t}")),
                        None => unsure.push(format!("%{t}")),
                    }
                }
            }
            Err(e) => bad.push(e),
        }
    }
    let ver = f
        .version
        .map(|v| format!("OpenSSH {v}"))
        .unwrap_or_else(|| "this sshd (version unknown)".into());
    if !bad.is_empty() {
        let needs94 = bad.iter().any(|t| t == "%C" || t == "%D");
        out.push(Check::fail(
            "sshd.command_tokens",
            format!(
                "{} in AuthorizedKeysCommand: not supported by {ver}{}: sshd is fatal for every connection (log: percent_expand: unknown key {})",
                bad.join(" "),
                if needs94 { " (needs 9.4)" } else { "" },
                bad[0]
            ),
            format!("remove {} from AuthorizedKeysCommand: {good} in {file}", bad.join(" ")),
        ));
    } else if !unsure.is_empty() {
        out.push(Check::warn(
            "sshd.command_tokens",
            format!(
                "{} in AuthorizedKeysCommand needs OpenSSH 9.4; older sshd is fatal for every connection and the version of this sshd is unknown",
                unsure.join(" ")
            ),
            format!("{good} in {file}"),
        ));
    } else {
        out.push(Check::ok(
            "sshd.command_tokens",
            format!("every token is supported by {ver}"),
        ));
    }
    let theirs = akc
        .config
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    if (f.same_file)(Path::new(&theirs), f.doctor_config) {
        out.push(Check::ok(
            "sshd.command_config",
            format!("sshd runs keyward with the config checked here ({theirs})"),
        ));
    } else {
        out.push(Check::warn(
            "sshd.command_config",
            format!(
                "sshd runs keyward with config {theirs}, this doctor checked {}",
                f.doctor_config.display()
            ),
            format!("{argv0} --config {theirs} doctor"),
        ));
    }
    out
}

/// AuthorizedKeysCommandUser: the cache owner, or root when `[files]` are
/// read (they are read with the user's own uid).
pub fn command_user_check(f: &Facts) -> Check {
    let file = f.fix_file;
    let Some(user) = f.t.set("authorizedkeyscommanduser") else {
        return Check::fail(
            "sshd.command_user",
            "AuthorizedKeysCommandUser is not set: sshd refuses to run the command",
            format!("add `AuthorizedKeysCommandUser keyward` to {file}"),
        );
    };
    if (f.user_exists)(user) == Some(false) {
        return Check::fail(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser {user} does not exist: sshd cannot run the command"),
            format!("create the user (useradd --system --no-create-home --shell /usr/sbin/nologin {user}) or set AuthorizedKeysCommandUser keyward in {file}"),
        );
    }
    let Some(config) = f.keyward else {
        return Check::warn(
            "sshd.command_user",
            format!(
                "AuthorizedKeysCommandUser {user} (not compared: the keyward config did not load)"
            ),
            "fix the config first (see config.*)",
        );
    };
    let owner = &config.cache.owner;
    if !config.files.paths.is_empty() {
        if user == "root" {
            Check::ok(
                "sshd.command_user",
                format!("AuthorizedKeysCommandUser root: needed for [files] (read as each user, then keyward drops to {owner})"),
            )
        } else {
            Check::fail(
                "sshd.command_user",
                format!("AuthorizedKeysCommandUser {user}, but [files] paths are configured: users' own files can only be read when keyward starts as root"),
                format!("AuthorizedKeysCommandUser root in {file} (or remove [files] paths)"),
            )
        }
    } else if user == owner {
        Check::ok(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser {user} (the [cache] owner)"),
        )
    } else if user == "root" {
        Check::warn(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser root is not needed without [files]: keyward drops to {owner} anyway"),
            format!("AuthorizedKeysCommandUser {owner} in {file}"),
        )
    } else {
        Check::fail(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser {user}, but the cache belongs to [cache] owner {owner}: keyward refuses cache files it does not own and cannot update them"),
            format!("AuthorizedKeysCommandUser {owner} in {file}"),
        )
    }
}

/// The authentication settings around keyward.
pub fn auth_checks(f: &Facts) -> Vec<Check> {
    let t = f.t;
    let file = f.fix_file;
    let mut out = Vec::new();
    let use_pam = t.yes("usepam").unwrap_or(false);
    let pam_blocks = use_pam && f.pam_blocks == Some(true);

    // Keys that reach sshd by another way than keyward.
    match t.set("authorizedkeysfile") {
        None => out.push(Check::ok("sshd.keys_file", "AuthorizedKeysFile none: keyward is the only source of keys")),
        Some(v) => out.push(Check::warn(
            "sshd.keys_file",
            format!("AuthorizedKeysFile {v} coexists with keyward: keys in these files are accepted outside keyward's policy and audit"),
            format!("AuthorizedKeysFile none in {file} (list files keyward should check in [files] paths)"),
        )),
    }
    if let Some(v) = t.set("trustedusercakeys") {
        out.push(Check::warn(
            "sshd.trusted_ca",
            format!("TrustedUserCAKeys {v}: certificates signed by these CAs are accepted without keyward"),
            format!("serve the CA as a cert-authority line from the key directory instead, or remove TrustedUserCAKeys from {file}"),
        ));
    }
    if t.yes("pubkeyauthentication") == Some(false) {
        out.push(Check::fail(
            "sshd.pubkey",
            "PubkeyAuthentication no: no key login can succeed",
            format!("PubkeyAuthentication yes in {file}"),
        ));
    }
    let pam_note = if !use_pam {
        "UsePAM no, so pam_keyward cannot block it".to_string()
    } else {
        match f.pam_blocks {
            Some(false) => format!(
                "pam_keyward does not block the auth stack of {}",
                f.pam_file
            ),
            None => "the PAM stack was not checked".to_string(),
            Some(true) => String::new(),
        }
    };
    match t.yes("passwordauthentication") {
        Some(true) if pam_blocks => out.push(Check::ok(
            "sshd.password",
            format!("PasswordAuthentication yes, but pam_keyward refuses every password in the auth stack of {}", f.pam_file),
        )),
        Some(true) => out.push(Check::fail(
            "sshd.password",
            format!("PasswordAuthentication yes and {pam_note}: passwords are accepted"),
            format!("PasswordAuthentication no in {file} (or UsePAM yes with `auth requisite pam_keyward.so` first in {})", f.pam_file),
        )),
        _ => out.push(Check::ok("sshd.password", "PasswordAuthentication no")),
    }
    match t.yes("kbdinteractiveauthentication") {
        Some(true) if pam_blocks => out.push(Check::ok(
            "sshd.kbdint",
            "KbdInteractiveAuthentication yes, but pam_keyward refuses it in the auth stack",
        )),
        Some(true) if use_pam => out.push(Check::fail(
            "sshd.kbdint",
            format!("KbdInteractiveAuthentication yes and {pam_note}: PAM password prompts are accepted"),
            format!("KbdInteractiveAuthentication no in {file} (or `auth requisite pam_keyward.so` first in {})", f.pam_file),
        )),
        Some(true) => out.push(Check::warn(
            "sshd.kbdint",
            "KbdInteractiveAuthentication yes with UsePAM no: no device to answer it on Linux, but nothing blocks it either",
            format!("KbdInteractiveAuthentication no in {file}"),
        )),
        _ => out.push(Check::ok("sshd.kbdint", "KbdInteractiveAuthentication no")),
    }
    match t.get("permitrootlogin") {
        Some(v @ ("no" | "prohibit-password" | "without-password" | "forced-commands-only")) => {
            out.push(Check::ok("sshd.root_login", format!("PermitRootLogin {v}")))
        }
        Some(v) => out.push(Check::warn(
            "sshd.root_login",
            format!("PermitRootLogin {v}: root may log in with a password"),
            format!("PermitRootLogin prohibit-password (or no) in {file}"),
        )),
        None => {}
    }
    match t.yes("permitemptypasswords") {
        Some(true) => out.push(Check::fail(
            "sshd.empty_passwords",
            "PermitEmptyPasswords yes: accounts without a password log in with none",
            format!("PermitEmptyPasswords no in {file}"),
        )),
        _ => out.push(Check::ok("sshd.empty_passwords", "PermitEmptyPasswords no")),
    }
    if use_pam {
        out.push(Check::ok("sshd.use_pam", "UsePAM yes"));
    } else {
        out.push(Check::warn(
            "sshd.use_pam",
            "UsePAM no: pam_keyward never runs (no block of passwords by PAM, no session audit of the key used)",
            format!("UsePAM yes in {file}, with pam_keyward in {}", f.pam_file),
        ));
    }
    out
}

/// sshd's `match_pattern`: `*` and `?` wildcards.
pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// sshd's allowed_user() lists, in its order: DenyUsers, AllowUsers,
/// DenyGroups, AllowGroups. `user@host` patterns are matched on the user
/// part only (the client host is not known here).
pub fn user_lists(t: &SshdT, user: &str, groups: &[String]) -> Result<(), String> {
    let user_part = |p: &str| p.split('@').next().unwrap_or(p).to_owned();
    if let Some(p) = t
        .all("denyusers")
        .into_iter()
        .find(|p| glob(&user_part(p), user))
    {
        return Err(format!("DenyUsers {p} matches {user}"));
    }
    let allow = t.all("allowusers");
    if !allow.is_empty() && !allow.iter().any(|p| glob(&user_part(p), user)) {
        return Err(format!("{user} is not in AllowUsers {}", allow.join(" ")));
    }
    let deny_g = t.all("denygroups");
    if let Some(g) = groups.iter().find(|g| deny_g.iter().any(|p| glob(p, g))) {
        return Err(format!("{user} is in group {g}, which DenyGroups lists"));
    }
    let allow_g = t.all("allowgroups");
    if !allow_g.is_empty() && !groups.iter().any(|g| allow_g.iter().any(|p| glob(p, g))) {
        return Err(format!(
            "none of {user}'s groups is in AllowGroups {}",
            allow_g.join(" ")
        ));
    }
    Ok(())
}

/// The result of running sshd.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The command line run, for messages.
    pub cmdline: String,
    pub result: Result<SshdT, String>,
    pub version: Option<Version>,
}

fn sshd_path() -> PathBuf {
    let p = Path::new("/usr/sbin/sshd");
    if p.exists() {
        p.to_owned()
    } else {
        PathBuf::from("sshd")
    }
}

/// Runs `sshd -T [-f CONFIG] [-C user=U,host=localhost,addr=127.0.0.1]`
/// and finds the version with `sshd -V` (or `ssh -V`).
pub fn probe(config: Option<&Path>, user: Option<&str>) -> Probe {
    let sshd = sshd_path();
    let mut cmd = Command::new(&sshd);
    cmd.arg("-T");
    let mut cmdline = format!("{} -T", sshd.display());
    if let Some(c) = config {
        cmd.arg("-f").arg(c);
        cmdline += &format!(" -f {}", c.display());
    }
    if let Some(u) = user {
        let spec = format!("user={u},host=localhost,addr=127.0.0.1");
        cmdline += &format!(" -C {spec}");
        cmd.arg("-C").arg(spec);
    }
    let result = match run_command(&mut cmd, Duration::from_secs(10)) {
        Ok(o) if o.code == Some(0) => Ok(SshdT::parse(&o.stdout)),
        Ok(o) => {
            let err = o.stderr.trim();
            Err(if err.is_empty() {
                format!("exit status {:?}", o.code)
            } else {
                err.lines().take(3).collect::<Vec<_>>().join("; ")
            })
        }
        Err(e) => Err(e),
    };
    let mut version = None;
    for (prog, arg) in [(sshd.clone(), "-V"), (PathBuf::from("ssh"), "-V")] {
        if let Ok(o) = run_command(Command::new(prog).arg(arg), Duration::from_secs(5)) {
            version = parse_version(&format!("{}\n{}", o.stderr, o.stdout));
            if version.is_some() {
                break;
            }
        }
    }
    Probe {
        cmdline,
        result,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    const T92: &str = "port 22\nusepam yes\npermitrootlogin without-password\npubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication no\npermitemptypasswords no\ntrustedusercakeys none\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\nauthorizedkeysfile none\n";

    fn config(files: bool) -> Config {
        let mut text = "[directory]\nurls = [\"https://k/{user}\"]\n".to_string();
        if files {
            text += "[files]\npaths = [\"%h/.ssh/authorized_keys\"]\n";
        }
        Config::parse(&text, Path::new("/etc/keyward/keyward.toml")).unwrap()
    }

    fn with<R>(
        t: &SshdT,
        cfg: Option<&Config>,
        pam: Option<bool>,
        f: impl FnOnce(&Facts) -> R,
    ) -> R {
        let same = |a: &Path, b: &Path| a == b;
        let exists = |u: &str| Some(u != "ghost");
        let facts = Facts {
            t,
            version: Some(Version { major: 9, minor: 2 }),
            fix_file: "/etc/ssh/sshd_config.d/keyward.conf",
            this_exe: Some(Path::new("/usr/sbin/keyward")),
            same_file: &same,
            doctor_config: Path::new("/etc/keyward/keyward.toml"),
            keyward: cfg,
            user_exists: &exists,
            pam_blocks: pam,
            pam_file: "/etc/pam.d/sshd",
        };
        f(&facts)
    }

    fn status_of(checks: &[Check], id: &str) -> Status {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id} in {checks:?}"))
            .status
    }

    fn replace(key: &str, value: &str) -> SshdT {
        let text: String = T92
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} ")) {
                    format!("{key} {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        SshdT::parse(&text)
    }

    #[test]
    fn parse_and_versions() {
        let t = SshdT::parse("AllowUsers alice\nallowusers bob carol\nusepam yes\n");
        assert_eq!(t.all("allowusers"), vec!["alice", "bob", "carol"]);
        assert_eq!(t.yes("usepam"), Some(true));
        assert_eq!(
            parse_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0"),
            Some(Version { major: 9, minor: 2 })
        );
        assert_eq!(
            parse_version("OpenSSH_9.2, OpenSSL"),
            Some(Version { major: 9, minor: 2 })
        );
        assert_eq!(
            parse_version("unknown option -- V\nOpenSSH_8.4p1, OpenSSL"),
            Some(Version { major: 8, minor: 4 })
        );
        assert_eq!(parse_version("nothing"), None);
        assert!(Version { major: 9, minor: 4 } > Version { major: 9, minor: 2 });
        assert!(
            Version {
                major: 10,
                minor: 0
            } > Version { major: 9, minor: 9 }
        );
    }

    #[test]
    fn argv_split_like_sshd() {
        assert_eq!(
            argv_split("/usr/sbin/keyward  keys %u\t%f").unwrap(),
            vec!["/usr/sbin/keyward", "keys", "%u", "%f"]
        );
        assert_eq!(
            argv_split(r#"/x --config "/etc/a b.toml" keys 'x y' a\ b"#).unwrap(),
            vec!["/x", "--config", "/etc/a b.toml", "keys", "x y", "a b"]
        );
        assert!(argv_split("/x \"open").is_err());
    }

    #[test]
    fn healthy_command() {
        let t = SshdT::parse(T92);
        let cfg = config(false);
        let checks = with(&t, Some(&cfg), Some(true), command_checks);
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        assert_eq!(
            with(&t, Some(&cfg), Some(true), command_user_check).status,
            Status::Ok
        );
        let auth = with(&t, Some(&cfg), Some(true), auth_checks);
        assert!(auth.iter().all(|c| c.status == Status::Ok), "{auth:?}");
    }

    #[test]
    fn percent_c_on_92_is_fatal() {
        let t = replace("authorizedkeyscommand", "/usr/sbin/keyward keys %u %f %C");
        let checks = with(&t, None, None, command_checks);
        let c = checks
            .iter()
            .find(|c| c.id == "sshd.command_tokens")
            .unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found.contains("%C") && c.found.contains("fatal for every connection"),
            "{}",
            c.found
        );
        assert!(c.found.contains("needs 9.4"));
        assert!(c.fix.as_deref().unwrap().contains("keys %u %f"));
        // fine on 9.4
        let same = |a: &Path, b: &Path| a == b;
        let exists = |_: &str| Some(true);
        let f = Facts {
            t: &t,
            version: Some(Version { major: 9, minor: 4 }),
            fix_file: "x",
            this_exe: None,
            same_file: &same,
            doctor_config: Path::new("/etc/keyward/keyward.toml"),
            keyward: None,
            user_exists: &exists,
            pam_blocks: None,
            pam_file: "p",
        };
        assert_eq!(
            status_of(&command_checks(&f), "sshd.command_tokens"),
            Status::Ok
        );
        let f = Facts { version: None, ..f };
        assert_eq!(
            status_of(&command_checks(&f), "sshd.command_tokens"),
            Status::Warn
        );
        // unknown tokens are fatal on any version
        let t = replace("authorizedkeyscommand", "/usr/sbin/keyward keys %u %Z");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command_tokens"),
            Status::Fail
        );
    }

    #[test]
    fn command_shapes() {
        let t = SshdT::parse("authorizedkeyscommand none\n");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command"),
            Status::Fail
        );
        let t = replace("authorizedkeyscommand", "/usr/sbin/keyward keys %u");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command_fp"),
            Status::Warn
        );
        let t = replace("authorizedkeyscommand", "/usr/sbin/keyward keys %U %f");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command"),
            Status::Fail
        );
        let t = replace("authorizedkeyscommand", "keyward keys %u %f");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command"),
            Status::Fail
        );
        let t = replace("authorizedkeyscommand", "/usr/bin/get-keys %u");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command"),
            Status::Fail
        );
        let t = replace("authorizedkeyscommand", "/opt/keyward keys %u %f");
        assert_eq!(
            status_of(&with(&t, None, None, command_checks), "sshd.command"),
            Status::Warn
        );
        let t = replace(
            "authorizedkeyscommand",
            "/usr/sbin/keyward --config /etc/other.toml keys %u %f",
        );
        let c = with(&t, None, None, command_checks);
        assert_eq!(status_of(&c, "sshd.command_config"), Status::Warn);
        assert_eq!(status_of(&c, "sshd.command"), Status::Ok);
    }

    #[test]
    fn command_user_rules() {
        let t = SshdT::parse(T92);
        assert_eq!(
            with(&t, Some(&config(true)), None, command_user_check).status,
            Status::Fail
        );
        let root = replace("authorizedkeyscommanduser", "root");
        assert_eq!(
            with(&root, Some(&config(true)), None, command_user_check).status,
            Status::Ok
        );
        assert_eq!(
            with(&root, Some(&config(false)), None, command_user_check).status,
            Status::Warn
        );
        let other = replace("authorizedkeyscommanduser", "nobody");
        let c = with(&other, Some(&config(false)), None, command_user_check);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("AuthorizedKeysCommandUser keyward in /etc/ssh/sshd_config.d/keyward.conf")
        );
        let ghost = replace("authorizedkeyscommanduser", "ghost");
        assert!(with(&ghost, Some(&config(false)), None, command_user_check)
            .found
            .contains("does not exist"));
        let none = replace("authorizedkeyscommanduser", "none");
        assert_eq!(
            with(&none, Some(&config(false)), None, command_user_check).status,
            Status::Fail
        );
    }

    #[test]
    fn password_rules_depend_on_pam() {
        let t = replace("passwordauthentication", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(true), auth_checks), "sshd.password"),
            Status::Ok
        );
        let c = with(&t, None, Some(false), auth_checks);
        assert_eq!(status_of(&c, "sshd.password"), Status::Fail);
        let t = SshdT::parse(
            &T92.replace("usepam yes", "usepam no")
                .replace("passwordauthentication no", "passwordauthentication yes"),
        );
        let c = with(&t, None, Some(true), auth_checks);
        assert_eq!(status_of(&c, "sshd.password"), Status::Fail);
        assert_eq!(status_of(&c, "sshd.use_pam"), Status::Warn);
        let t = replace("kbdinteractiveauthentication", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(false), auth_checks), "sshd.kbdint"),
            Status::Fail
        );
        let t = replace("permitemptypasswords", "yes");
        assert_eq!(
            status_of(
                &with(&t, None, Some(true), auth_checks),
                "sshd.empty_passwords"
            ),
            Status::Fail
        );
        let t = replace("permitrootlogin", "yes");
        assert_eq!(
            status_of(&with(&t, None, Some(true), auth_checks), "sshd.root_login"),
            Status::Warn
        );
        let t = replace(
            "authorizedkeysfile",
            ".ssh/authorized_keys .ssh/authorized_keys2",
        );
        let c = with(&t, None, Some(true), auth_checks);
        assert_eq!(status_of(&c, "sshd.keys_file"), Status::Warn);
    }

    #[test]
    fn allow_deny_lists() {
        let g = vec!["staff".to_string()];
        assert!(user_lists(&SshdT::parse(""), "alice", &g).is_ok());
        assert!(user_lists(&SshdT::parse("allowusers bob a*\n"), "alice", &g).is_ok());
        assert!(user_lists(&SshdT::parse("allowusers bob\n"), "alice", &g)
            .unwrap_err()
            .contains("AllowUsers"));
        assert!(user_lists(&SshdT::parse("denyusers al?ce@10.0.0.1\n"), "alice", &g).is_err());
        assert!(user_lists(&SshdT::parse("denygroups staff\n"), "alice", &g).is_err());
        assert!(user_lists(&SshdT::parse("allowgroups wheel\n"), "alice", &g).is_err());
        assert!(glob("*", "") && glob("a*c", "abbc") && !glob("a?c", "ac"));
    }
}
