//! Chained commands (`[[command]]`) and the AuthorizedKeysCommand of
//! another provider: `chain.foreign` (sshd runs another provider: the
//! keyward table that chains it and the sshd lines that replace it) and
//! `chain.command` (one per table: the program passes sshd's path rule, its
//! account exists, keyward can run it as that account, and sshd passes the
//! tokens it uses). Pure: the stat chain and the account lookups come in
//! as facts.

use crate::config::command::CommandConfig;
use crate::config::Config;
use crate::os::safepath::{Kind, Node};
use crate::report::Check;
use crate::sshd::{argv_split, keys_call};

use super::command::is_named_keyward;
use super::perms;

/// What sshd runs, from `sshd -T`.
pub struct Wired<'a> {
    /// `authorizedkeyscommand` (None: unset or `none`).
    pub command: Option<&'a str>,
    /// `authorizedkeyscommanduser`.
    pub user: Option<&'a str>,
    /// `FILE line N` of the AuthorizedKeysCommand line.
    pub set_at: Option<String>,
    /// Whether the command is this keyward (or a keyward).
    pub is_keyward: bool,
}

impl Wired<'_> {
    /// Whether sshd passes `%t %k` after `%U` to keyward.
    fn passes_key(&self) -> bool {
        let Some(argv) = self.command.and_then(|c| argv_split(c).ok()) else {
            return false;
        };
        let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
        keys_call(&args).is_ok_and(|c| c.key_type == Some("%t") && c.key == Some("%k"))
    }
}

/// A `[[command]]` name from a program path: its file name, in the
/// characters a name allows.
pub fn name_for(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    let n: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() {
        "provider".into()
    } else {
        n
    }
}

/// The keyward line for sshd: `%t %k` only when a chained command uses them.
pub fn keyward_line(bin: &str, config_path: &str, with_key: bool) -> String {
    let config = if config_path == crate::config::DEFAULT_PATH {
        String::new()
    } else {
        format!(" --config {config_path}")
    };
    let key = if with_key { " %t %k" } else { "" };
    format!("AuthorizedKeysCommand {bin}{config} keys %u %f %U{key}")
}

/// `chain.foreign`: sshd runs another provider. The fix is the table that
/// chains it exactly as sshd runs it, and the sshd lines that put keyward
/// in its place (the packages never edit sshd's configuration).
pub fn foreign_check(w: &Wired, bin: &str, config_path: &str, owner: &str) -> Option<Check> {
    let line = w.command.filter(|_| !w.is_keyward)?;
    let program = argv_split(line)
        .ok()
        .and_then(|a| a.into_iter().next())
        .unwrap_or_default();
    let user = w.user.unwrap_or("nobody");
    let with_key = line.contains("%t") || line.contains("%k");
    // One line of TOML (an inline array of tables is `[[command]]`), to
    // paste into a drop-in of its own.
    let q = |v: &str| toml_string(v);
    let table = format!(
        "command = [{{ name = {}, command = {}, user = {}, timeout = \"2s\" }}]",
        q(&name_for(&program)),
        q(line),
        q(user)
    );
    // Keyward must start as root to run the provider as another account.
    let akc_user = if user == owner { owner } else { "root" };
    let at = w
        .set_at
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Some(Check::warn(
        "chain.foreign",
        format!("sshd runs another key provider{at}: AuthorizedKeysCommand {line} as {user}; keyward can run it as a source under its policy and log"),
        format!(
            "write `{table}` into {config_path}.d/50-chain.toml; then replace sshd's lines{at} with `{}` and `AuthorizedKeysCommandUser {akc_user}`",
            keyward_line(bin, config_path, with_key)
        ),
    ))
}

/// A TOML basic string holding `v`.
fn toml_string(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Facts about one table's program and account.
pub struct CommandFacts {
    /// The program and its parents (`stat_chain`), or why not.
    pub nodes: Result<Vec<Node>, String>,
    /// Whether the run-as account exists (None: unknown).
    pub user_exists: Option<bool>,
}

/// `chain.command` for one table.
pub fn command_check(c: &CommandConfig, f: &CommandFacts, w: Option<&Wired>) -> Check {
    let id = "chain.command";
    let name = &c.name;
    let program = &c.command.argv[0];
    let nodes = match &f.nodes {
        Ok(n) => n,
        Err(e) => {
            return Check::fail(
                id,
                format!("command:{name}: {program}: {e}"),
                format!("install {program} or fix [[command]] {name}'s command"),
            )
        }
    };
    if let Some(bad) = perms::check_chain(nodes, Kind::File, &[0], "root") {
        return Check::fail(
            id,
            format!(
                "command:{name}: unsafe program path, keyward refuses to run it as sshd would: {}",
                bad.found
            ),
            bad.fix,
        );
    }
    if f.user_exists == Some(false) {
        return Check::fail(
            id,
            format!("command:{name}: user {} does not exist", c.user),
            format!(
                "create the account {} or set another [[command]] user",
                c.user
            ),
        );
    }
    if let Some(w) = w.filter(|w| w.is_keyward) {
        match w.user {
            Some(u) if u != "root" && u != c.user => {
                return Check::fail(
                    id,
                    format!(
                        "command:{name} must run as {}, but keyward runs as {u} (AuthorizedKeysCommandUser), which cannot switch users: the source always fails",
                        c.user
                    ),
                    format!("set user = {u:?} in [[command]] {name}, or `AuthorizedKeysCommandUser root`"),
                );
            }
            _ => {}
        }
        if (c.uses('t') || c.uses('k')) && !w.passes_key() {
            return Check::fail(
                id,
                format!("command:{name} uses %t/%k, but sshd does not pass them to keyward: the source always fails"),
                "end keyward's AuthorizedKeysCommand with `keys %u %f %U %t %k`",
            );
        }
    }
    Check::ok(
        id,
        format!(
            "command:{name}: {program} (root-owned path), runs as {}, {} share{}",
            c.user,
            humantime::format_duration(c.timeout.0),
            if c.required { ", required" } else { "" }
        ),
    )
}

/// Every `chain.*` check; `stat` and `exists` are the probes.
pub fn checks(
    config: Option<&Config>,
    w: Option<&Wired>,
    bin: &str,
    config_path: &str,
    stat: &dyn Fn(&str) -> Result<Vec<Node>, String>,
    exists: &dyn Fn(&str) -> Option<bool>,
) -> Vec<Check> {
    let owner = config.map_or("keyward", |c| c.cache.owner.as_str());
    let mut out: Vec<Check> = w
        .and_then(|w| foreign_check(w, bin, config_path, owner))
        .into_iter()
        .collect();
    for c in config.map(|c| c.commands.as_slice()).unwrap_or_default() {
        let facts = CommandFacts {
            nodes: stat(&c.command.argv[0]),
            user_exists: exists(&c.user),
        };
        out.push(command_check(c, &facts, w));
    }
    out
}

/// Whether `argv0` is keyward, for [`Wired::is_keyward`].
pub fn runs_keyward(command: &str, is_this: Option<bool>) -> bool {
    let argv0 = argv_split(command)
        .ok()
        .and_then(|a| a.into_iter().next())
        .unwrap_or_default();
    is_this.unwrap_or(false) || is_named_keyward(&argv0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::command::parse_command_line;
    use crate::config::ConfDuration;
    use crate::report::Status;
    use std::path::PathBuf;

    fn node(path: &str, uid: u32, mode: u32) -> Node {
        Node {
            path: PathBuf::from(path),
            uid,
            gid: 0,
            mode,
        }
    }

    fn safe() -> Vec<Node> {
        vec![
            node("/usr/bin/sss_ssh_authorizedkeys", 0, libc::S_IFREG | 0o755),
            node("/usr/bin", 0, libc::S_IFDIR | 0o755),
            node("/usr", 0, libc::S_IFDIR | 0o755),
            node("/", 0, libc::S_IFDIR | 0o755),
        ]
    }

    fn cmd(line: &str, user: &str) -> CommandConfig {
        CommandConfig {
            name: "sssd".into(),
            command: parse_command_line(line).unwrap(),
            user: user.into(),
            timeout: ConfDuration(std::time::Duration::from_secs(2)),
            required: false,
        }
    }

    fn wired<'a>(command: &'a str, user: &'a str) -> Wired<'a> {
        Wired {
            command: Some(command),
            user: Some(user),
            set_at: Some("/etc/ssh/sshd_config.d/50-sssd.conf line 3".into()),
            is_keyward: runs_keyward(command, None),
        }
    }

    #[test]
    fn a_foreign_provider_gets_the_table_and_the_sshd_lines_that_chain_it() {
        let w = wired("/usr/bin/sss_ssh_authorizedkeys %u", "nobody");
        let c = foreign_check(
            &w,
            "/usr/sbin/keyward",
            crate::config::DEFAULT_PATH,
            "keyward",
        )
        .unwrap();
        assert_eq!(c.status, Status::Warn);
        assert!(c.found.contains("50-sssd.conf line 3"), "{}", c.found);
        let fix = c.fix.unwrap();
        assert!(
            fix.contains(r#"`command = [{ name = "sss_ssh_authorizedkeys", command = "/usr/bin/sss_ssh_authorizedkeys %u", user = "nobody", timeout = "2s" }]` into /etc/keyward/keyward.toml.d/50-chain.toml"#),
            "{fix}"
        );
        assert!(
            fix.contains("`AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U` and `AuthorizedKeysCommandUser root`"),
            "{fix}"
        );
        // a provider that takes the key needs sshd to pass it through
        let w = wired("/usr/bin/gitea keys -e git -u %u -t %t -k %k", "git");
        let fix = foreign_check(&w, "/usr/sbin/keyward", "/etc/kw.toml", "keyward")
            .unwrap()
            .fix
            .unwrap();
        assert!(
            fix.contains("--config /etc/kw.toml keys %u %f %U %t %k"),
            "{fix}"
        );
        // keyward itself is not foreign
        let w = wired("/usr/sbin/keyward keys %u %f %U", "keyward");
        assert!(foreign_check(&w, "/usr/sbin/keyward", "/x", "keyward").is_none());
    }

    #[test]
    fn the_suggested_table_is_toml_keyward_reads() {
        let w = wired(r#"/opt/x/p -n "a \"b\"" %u"#, "nobody");
        let fix = foreign_check(&w, "/usr/sbin/keyward", "/etc/k.toml", "keyward")
            .unwrap()
            .fix
            .unwrap();
        let toml = fix.split('`').nth(1).unwrap();
        let text = format!("{toml}\n[directory]\nurls = [\"https://k/{{user}}.keys\"]\n");
        let c = Config::parse(&text, std::path::Path::new("/x.toml")).unwrap();
        assert_eq!(
            c.commands[0].command.argv,
            ["/opt/x/p", "-n", "a \"b\"", "%u"]
        );
        assert_eq!(c.commands[0].name, "p");
        assert_eq!(c.commands[0].user, "nobody");
    }

    #[test]
    fn an_unsafe_program_path_is_named_with_its_fix() {
        let mut nodes = safe();
        nodes[1].mode = libc::S_IFDIR | 0o775;
        let f = CommandFacts {
            nodes: Ok(nodes),
            user_exists: Some(true),
        };
        let c = command_check(
            &cmd("/usr/bin/sss_ssh_authorizedkeys %u", "nobody"),
            &f,
            None,
        );
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found.contains("unsafe program path") && c.found.contains("/usr/bin "),
            "{}",
            c.found
        );
        assert_eq!(c.fix.as_deref(), Some("chmod g-w /usr/bin"));
        let f = CommandFacts {
            nodes: Ok(safe()),
            user_exists: Some(true),
        };
        let ok = command_check(
            &cmd("/usr/bin/sss_ssh_authorizedkeys %u", "nobody"),
            &f,
            None,
        );
        assert_eq!(ok.status, Status::Ok, "{}", ok.found);
    }

    #[test]
    fn the_account_and_the_tokens_must_be_reachable_from_how_sshd_runs_keyward() {
        let f = CommandFacts {
            nodes: Ok(safe()),
            user_exists: Some(true),
        };
        let c = cmd("/usr/bin/sss_ssh_authorizedkeys %u", "nobody");
        let as_keyward = wired("/usr/sbin/keyward keys %u %f %U", "keyward");
        let bad = command_check(&c, &f, Some(&as_keyward));
        assert_eq!(bad.status, Status::Fail);
        assert!(bad.found.contains("cannot switch users"), "{}", bad.found);
        let as_root = wired("/usr/sbin/keyward keys %u %f %U", "root");
        assert_eq!(command_check(&c, &f, Some(&as_root)).status, Status::Ok);
        let k = cmd("/usr/bin/gitea keys -u %u -k %k", "keyward");
        assert_eq!(
            command_check(&k, &f, Some(&as_keyward)).status,
            Status::Fail
        );
        let passes = wired("/usr/sbin/keyward keys %u %f %U %t %k", "keyward");
        assert_eq!(command_check(&k, &f, Some(&passes)).status, Status::Ok);
        let gone = CommandFacts {
            nodes: Ok(safe()),
            user_exists: Some(false),
        };
        assert_eq!(command_check(&c, &gone, None).status, Status::Fail);
    }
}
