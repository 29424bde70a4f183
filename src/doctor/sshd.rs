//! What the effective sshd configuration means for keyward's command: the
//! `sshd.command*` and `sshd.command_user` checks, one function per check
//! id (the authentication settings are in [`super::auth`]). Pure: `sshd -T`
//! is read by [`crate::sshd`], the facts around it come in [`Facts`].

use std::path::Path;

use super::command;
use crate::config::Config;
use crate::report::Check;
use crate::sshd::{keys_call, token_supported, NotKeys, SshdT, Version};

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
    /// Where sshd's files set a keyword (lower case): `FILE line N` of the
    /// value sshd uses (the first one read).
    pub set_at: &'a dyn Fn(&str) -> Option<String>,
}

fn example_command(argv0: &str, config: Option<&str>) -> String {
    match config {
        Some(c) if c != crate::config::DEFAULT_PATH => {
            format!("AuthorizedKeysCommand {argv0} --config {c} keys %u %f %U")
        }
        _ => format!("AuthorizedKeysCommand {argv0} keys %u %f %U"),
    }
}

/// The AuthorizedKeysCommand, split like sshd does.
struct Akc {
    line: String,
    argv0: String,
    /// The arguments after the program.
    args: Vec<String>,
    /// `--config`, the fingerprint and the uid argument, when it is a
    /// `keys` call.
    config: Option<String>,
    fp: Option<String>,
    uid: Option<String>,
    /// The line to write instead, with this program and config.
    good: String,
}

/// The AuthorizedKeysCommand rules: points at keyward `keys %u %f [%U]`, only
/// tokens this sshd knows, the same config as this doctor run.
pub fn command_checks(f: &Facts) -> Vec<Check> {
    let akc = match read_command(f) {
        Ok(akc) => akc,
        Err(check) => return vec![check],
    };
    // An unknown token is fatal whatever else is wrong: always checked.
    match call_check(f, &akc) {
        Some(fail) => vec![fail, tokens_check(f, &akc)],
        None => vec![
            target_check(f, &akc),
            fp_check(f, &akc),
            uid_check(f, &akc),
            tokens_check(f, &akc),
            config_check(f, &akc),
        ],
    }
}

/// Splits the command; the `sshd.command` failure when sshd cannot run it.
fn read_command(f: &Facts) -> Result<Akc, Check> {
    const ID: &str = "sshd.command";
    const KW: &str = "AuthorizedKeysCommand";
    let file = f.fix_file;
    let Some(line) = f.t.set("authorizedkeyscommand") else {
        return Err(Check::fail(
            ID,
            "AuthorizedKeysCommand is not set: sshd never asks keyward for keys",
            format!("add `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U` and `AuthorizedKeysCommandUser keyward` to {file}"),
        ));
    };
    let c = command::split(ID, KW, line, file)?;
    command::absolute(
        ID,
        KW,
        &c,
        &format!("use the full path, e.g. `AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U` in {file}"),
    )?;
    let args = c.args();
    let call = keys_call(&args).ok();
    Ok(Akc {
        config: call.as_ref().and_then(|c| c.config.map(str::to_owned)),
        fp: call.as_ref().and_then(|c| c.fingerprint.map(str::to_owned)),
        uid: call.as_ref().and_then(|c| c.uid.map(str::to_owned)),
        good: example_command(&c.argv0, call.as_ref().and_then(|c| c.config)),
        line: c.line,
        args: c.args,
        argv0: c.argv0,
    })
}

/// `sshd.command` when the arguments are not `keys %u [FP]`.
fn call_check(f: &Facts, akc: &Akc) -> Option<Check> {
    let line = &akc.line;
    let fail = |found: String| {
        let fix = format!("{} in {}", akc.good, f.fix_file);
        Some(Check::fail("sshd.command", found, fix))
    };
    let args: Vec<&str> = akc.args.iter().map(String::as_str).collect();
    let user = match keys_call(&args) {
        Ok(c) => c.user,
        Err(NotKeys::Subcommand(_)) => {
            let what = if command::is_named_keyward(&akc.argv0) {
                ""
            } else {
                " (not keyward at all?)"
            };
            return fail(format!(
                "AuthorizedKeysCommand {line:?} does not run `keyward keys`{what}"
            ));
        }
        Err(NotKeys::Arity(0)) => {
            return fail("AuthorizedKeysCommand passes nothing as the user: keyward needs %u".into())
        }
        Err(NotKeys::Arity(n)) => {
            return fail(format!("AuthorizedKeysCommand passes {n} arguments after `keys`: keyward takes the user (%u), the fingerprint (%f), the uid (%U), and then the key's type and base64 (%t %k) or nothing, so every login fails"))
        }
        Err(NotKeys::Option(v)) => {
            return fail(format!("AuthorizedKeysCommand passes {v:?}, which keyward reads as an option: every login fails"))
        }
    };
    match user {
        "%u" => None,
        "%U" => fail(
            "AuthorizedKeysCommand passes %U (the numeric uid): keyward needs the user name %u"
                .into(),
        ),
        other => fail(format!(
            "AuthorizedKeysCommand passes {other:?} as the user: keyward needs %u"
        )),
    }
}

/// `sshd.command`: the program is this keyward (or at least a keyward).
fn target_check(f: &Facts, akc: &Akc) -> Check {
    let (argv0, file) = (&akc.argv0, f.fix_file);
    let is_this = f.this_exe.map(|exe| (f.same_file)(Path::new(argv0), exe));
    match is_this {
        Some(false) if !command::is_named_keyward(argv0) => Check::fail(
            "sshd.command",
            format!("AuthorizedKeysCommand runs {argv0}, which is not keyward"),
            format!("{} in {file}", akc.good),
        ),
        Some(false) => Check::warn(
            "sshd.command",
            format!(
                "AuthorizedKeysCommand runs {argv0}, not this keyward ({}): another build or version?",
                f.this_exe.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            format!("run {argv0} doctor, or point AuthorizedKeysCommand at the keyward you mean in {file}"),
        ),
        _ => Check::ok("sshd.command", format!("AuthorizedKeysCommand {}", akc.line)),
    }
}

/// `sshd.command_fp`: `%f` lets keyward print only the key being tried.
fn fp_check(f: &Facts, akc: &Akc) -> Check {
    let fix = format!("{} in {}", akc.good, f.fix_file);
    match akc.fp.as_deref() {
        Some("%f") => Check::ok(
            "sshd.command_fp",
            "%f passed: keyward prints only the key being tried (plus cert-authority lines)",
        ),
        None => Check::warn(
            "sshd.command_fp",
            "no %f: keyward prints every key for every attempt (sshd runs it once per key offered)",
            fix,
        ),
        Some(o) => Check::warn(
            "sshd.command_fp",
            format!("{o:?} passed where keyward expects the fingerprint %f: every key is printed for every attempt"),
            fix,
        ),
    }
}

/// `sshd.command_uid`: `%U` gives the uid-0 rule sshd's own uid, so a
/// login needs no NSS lookup (unless local files need the home directory).
fn uid_check(f: &Facts, akc: &Akc) -> Check {
    match akc.uid.as_deref() {
        Some("%U") => Check::ok(
            "sshd.command_uid",
            "%U passed: the uid-0 rule uses the uid sshd resolved (no NSS lookup per key)",
        ),
        None => Check::ok(
            "sshd.command_uid",
            format!("no %U: keyward asks NSS for the uid on every call (`{}` saves that lookup)", akc.good),
        ),
        Some(o) => Check::fail(
            "sshd.command_uid",
            format!("{o:?} passed where keyward expects the uid %U: keyward refuses a uid that is not a number, so every login fails"),
            format!("{} in {}", akc.good, f.fix_file),
        ),
    }
}

/// `sshd.command_tokens`: sshd expands `%` tokens in the arguments only,
/// and an unknown one is fatal for every connection.
fn tokens_check(f: &Facts, akc: &Akc) -> Check {
    let (bad, unsure) = command::unexpanded_tokens(&akc.args, f.version, token_supported);
    let ver = f
        .version
        .map(|v| format!("OpenSSH {v}"))
        .unwrap_or_else(|| "this sshd (version unknown)".into());
    let (good, file) = (&akc.good, f.fix_file);
    if !bad.is_empty() {
        let needs94 = bad.iter().any(|t| t == "%C" || t == "%D");
        Check::fail(
            "sshd.command_tokens",
            format!(
                "{} in AuthorizedKeysCommand: not supported by {ver}{}: sshd is fatal for every connection (log: percent_expand: unknown key {})",
                bad.join(" "),
                if needs94 { " (needs 9.4)" } else { "" },
                bad[0]
            ),
            format!("remove {} from AuthorizedKeysCommand: {good} in {file}", bad.join(" ")),
        )
    } else if !unsure.is_empty() {
        Check::warn(
            "sshd.command_tokens",
            format!(
                "{} in AuthorizedKeysCommand needs OpenSSH 9.4; older sshd is fatal for every connection and the version of this sshd is unknown",
                unsure.join(" ")
            ),
            format!("{good} in {file}"),
        )
    } else {
        Check::ok(
            "sshd.command_tokens",
            format!("every token is supported by {ver}"),
        )
    }
}

/// `sshd.command_config`: sshd runs keyward with the config checked here.
fn config_check(f: &Facts, akc: &Akc) -> Check {
    let theirs = akc
        .config
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    if (f.same_file)(Path::new(&theirs), f.doctor_config) {
        Check::ok(
            "sshd.command_config",
            format!("sshd runs keyward with the config checked here ({theirs})"),
        )
    } else {
        Check::warn(
            "sshd.command_config",
            format!(
                "sshd runs keyward with config {theirs}, this doctor checked {}",
                f.doctor_config.display()
            ),
            format!("{} --config {theirs} doctor", akc.argv0),
        )
    }
}

/// AuthorizedKeysCommandUser: the cache owner, or root when `[files]` are
/// read (they are read with the user's own uid).
pub fn command_user_check(f: &Facts) -> Check {
    let file = f.fix_file;
    let user = match command::run_as(
        "sshd.command_user",
        "AuthorizedKeysCommandUser",
        f.t,
        f.user_exists,
        file,
    ) {
        Ok(u) => u,
        Err(c) => return c,
    };
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
    } else if user == "root" && config.commands.iter().any(|c| c.user != *owner) {
        Check::ok(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser root: needed to run each [[command]] as its user (then keyward drops to {owner})"),
        )
    } else if user == owner {
        Check::ok(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser {user} (the [cache] owner)"),
        )
    } else if user == "root" {
        Check::warn(
            "sshd.command_user",
            format!("AuthorizedKeysCommandUser root is not needed without [files] or a [[command]] run as another account: keyward drops to {owner} anyway"),
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

/// sshd -T text and facts shared by the tests of the `sshd.*` rules.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;
    use crate::report::Status;

    pub const T92: &str = "port 22\nusepam yes\npermitrootlogin without-password\npubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication no\npermitemptypasswords no\ntrustedusercakeys none\nauthorizedkeyscommand /usr/sbin/keyward keys %u %f\nauthorizedkeyscommanduser keyward\nauthorizedkeysfile none\n";

    pub fn config(files: bool) -> Config {
        let mut text = "[directory]\nurls = [\"https://k/{user}\"]\n".to_string();
        if files {
            text += "[files]\npaths = [\"%h/.ssh/authorized_keys\"]\n";
        }
        Config::parse(&text, Path::new("/etc/keyward/keyward.toml")).unwrap()
    }

    pub fn with<R>(
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
            set_at: &|_| None,
        };
        f(&facts)
    }

    pub fn status_of(checks: &[Check], id: &str) -> Status {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id} in {checks:?}"))
            .status
    }

    pub fn replace(key: &str, value: &str) -> SshdT {
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
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::report::Status;

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
            set_at: &|_| None,
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
    fn arguments_keyward_would_refuse() {
        // the same grammar as the login path's fast path: more than three
        // arguments or an option-looking value fails every login
        for cmd in [
            "/usr/sbin/keyward keys %u %f %U %C",
            "/usr/sbin/keyward keys -v %u",
            "/usr/sbin/keyward keys",
        ] {
            let t = replace("authorizedkeyscommand", cmd);
            let c = with(&t, None, None, command_checks);
            assert_eq!(status_of(&c, "sshd.command"), Status::Fail, "{cmd}: {c:?}");
            assert!(c.iter().any(|c| c.id == "sshd.command_tokens"), "{cmd}");
        }
    }

    #[test]
    fn uid_argument_rules() {
        let status = |cmd: &str| {
            let t = replace("authorizedkeyscommand", cmd);
            let c = with(&t, None, None, command_checks);
            assert_eq!(status_of(&c, "sshd.command"), Status::Ok, "{cmd}: {c:?}");
            status_of(&c, "sshd.command_uid")
        };
        assert_eq!(status("/usr/sbin/keyward keys %u %f %U"), Status::Ok);
        assert_eq!(status("/usr/sbin/keyward keys %u %f"), Status::Ok);
        // %u or %C where the uid goes: every login fails closed
        assert_eq!(status("/usr/sbin/keyward keys %u %f %u"), Status::Fail);
        assert_eq!(status("/usr/sbin/keyward keys %u %f %C"), Status::Fail);
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
}
