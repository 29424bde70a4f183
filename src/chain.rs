//! Other AuthorizedKeysCommands chained as key sources (`[[command]]`).
//!
//! sshd takes one AuthorizedKeysCommand; keyward can be that one and run
//! the others, whose lines then go through the same parsing, policy,
//! de-duplication and `%f` rules as every other source. Each command is run
//! the way sshd runs its own (`run`): the program checked like sshd checks
//! it, as its configured account, a minimal environment, stdin `/dev/null`,
//! cwd `/`; and bounded as sshd never bounds it: output size, and a time
//! share after which its process group is killed. Its failure (exit status,
//! signal, time, size) is that source's failure: none of its lines count,
//! as sshd ignores every line of a command that exits non-zero.
//!
//! The token expansion (`expand`) is pure.

pub mod run;

use crate::config::command::CommandConfig;
use crate::config::Config;

/// What sshd told keyward about the attempt, for the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered<'a> {
    /// `%f`: the fingerprint of the key offered.
    pub fingerprint: Option<&'a str>,
    /// `%t`: its type (`ssh-ed25519`).
    pub key_type: Option<&'a str>,
    /// `%k`: the key itself, base64.
    pub key: Option<&'a str>,
}

/// The values of every token for one lookup (None: not known here).
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub user: &'a str,
    pub uid: Option<u32>,
    pub home: Option<&'a str>,
    pub offered: Offered<'a>,
}

/// Expands sshd's tokens in the arguments (never in the program), each
/// argument on its own: a value never splits into more arguments. A
/// program without arguments gets the user name, as sshd gives it (its
/// "old behaviour", which providers such as `google_authorized_keys`
/// rely on). Err: a token whose value keyward was not given, naming what
/// passes it.
pub fn expand(argv: &[String], v: &Values) -> Result<Vec<String>, String> {
    if argv.len() == 1 {
        return Ok(vec![argv[0].clone(), v.user.to_owned()]);
    }
    let mut out = Vec::with_capacity(argv.len());
    let mut args = argv.iter();
    out.extend(args.next().cloned());
    for a in args {
        let mut s = String::with_capacity(a.len());
        let mut chars = a.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                s.push(c);
                continue;
            }
            let t = chars.next().unwrap_or('%');
            let uid = v.uid.map(|u| u.to_string());
            let value = match t {
                '%' => Some("%"),
                'u' => Some(v.user),
                'U' => uid.as_deref(),
                'h' => v.home,
                'f' => v.offered.fingerprint,
                't' => v.offered.key_type,
                'k' => v.offered.key,
                other => return Err(format!("unknown token %{other}")),
            };
            match value {
                Some(x) => s.push_str(x),
                None => return Err(missing(t)),
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// Why a token has no value, and what passes it.
fn missing(t: char) -> String {
    match t {
        'f' => "it uses %f, and keyward was not given the fingerprint (sshd passes it: `keys %u %f`)".into(),
        't' | 'k' => format!(
            "it uses %{t}, and keyward was not given the offered key: sshd passes it when its AuthorizedKeysCommand is `keyward keys %u %f %U %t %k`"
        ),
        'U' => "it uses %U, and neither sshd (%U) nor NSS gave the uid".into(),
        'h' => "it uses %h, and NSS does not know the account (no home directory)".into(),
        t => format!("it uses %{t}, which has no value"),
    }
}

/// Whether the login path must ask NSS for the account because a chained
/// command needs its home (`%h`) or its uid (`%U`, when sshd did not pass it).
pub fn needs_account(commands: &[CommandConfig], uid_from_sshd: bool) -> bool {
    commands
        .iter()
        .any(|c| c.uses('h') || (!uid_from_sshd && c.uses('U')))
}

/// What the chained commands gave one lookup.
#[derive(Debug, Default)]
pub struct Chained {
    /// (`command:NAME`, its output) of each command that succeeded.
    pub outputs: Vec<(String, String)>,
    /// Each failure of an optional command, worded for the log.
    pub failures: Vec<String>,
}

/// Runs every configured command (none: nothing at all, not one syscall).
/// Err: a `required` one failed, worded for the log (the lookup fails
/// closed).
pub fn run_configured(config: &Config, v: &Values) -> Result<Chained, String> {
    let mut out = Chained::default();
    if config.commands.is_empty() {
        return Ok(out);
    }
    for r in run::run_all(&config.commands, v, config.directory.max_bytes) {
        match (r.failure(), r.result) {
            (Some(why), _) if r.required => return Err(format!("{why} (required)")),
            (Some(why), _) => out.failures.push(why),
            (None, Ok(text)) => out.outputs.push((source_label(&r.name), text)),
            (None, Err(_)) => {}
        }
    }
    Ok(out)
}

/// One chained command's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub name: String,
    pub required: bool,
    /// Ok: its output (exit 0, in time, within the size limit). Err: why
    /// the source failed.
    pub result: Result<String, String>,
    /// The start of what it wrote to stderr (sshd discards it; keyward logs it).
    pub stderr: String,
}

impl Ran {
    /// The source label of its lines (`command:NAME`).
    pub fn source(&self) -> String {
        source_label(&self.name)
    }

    /// The failure worded for the log, with the start of stderr.
    pub fn failure(&self) -> Option<String> {
        let why = self.result.as_ref().err()?;
        let mut s = format!("command:{} failed: {why}", self.name);
        let err = self.stderr.trim();
        if !err.is_empty() {
            s.push_str(&format!(" (stderr: {err})"));
        }
        Some(s)
    }
}

pub fn source_label(name: &str) -> String {
    format!("command:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn values() -> Values<'static> {
        Values {
            user: "alice",
            uid: Some(1001),
            home: Some("/home/alice"),
            offered: Offered {
                fingerprint: Some("SHA256:abc"),
                key_type: Some("ssh-ed25519"),
                key: Some("AAAAC3Nz"),
            },
        }
    }

    #[test]
    fn tokens_expand_per_argument_like_sshd() {
        let a = argv(&["/p%u", "%u", "-t", "%t:%k", "%%u", "%h/x y", "%U", "%f"]);
        assert_eq!(
            expand(&a, &values()).unwrap(),
            [
                "/p%u",
                "alice",
                "-t",
                "ssh-ed25519:AAAAC3Nz",
                "%u",
                "/home/alice/x y",
                "1001",
                "SHA256:abc"
            ]
        );
        // no arguments: the user, as sshd passes it
        assert_eq!(
            expand(&argv(&["/usr/bin/google_authorized_keys"]), &values()).unwrap(),
            ["/usr/bin/google_authorized_keys", "alice"]
        );
        // a value with spaces stays one argument; nothing is re-split
        let v = Values {
            user: "a b",
            ..values()
        };
        assert_eq!(expand(&argv(&["/p", "%u"]), &v).unwrap(), ["/p", "a b"]);
    }

    #[test]
    fn a_token_without_a_value_fails_the_source_naming_what_passes_it() {
        let v = Values {
            offered: Offered::default(),
            uid: None,
            home: None,
            ..values()
        };
        let e = expand(&argv(&["/p", "%k"]), &v).unwrap_err();
        assert!(e.contains("%t %k"), "{e}");
        assert!(expand(&argv(&["/p", "%f"]), &v).unwrap_err().contains("%f"));
        assert!(expand(&argv(&["/p", "%U"]), &v).is_err());
        assert!(expand(&argv(&["/p", "%h"]), &v).is_err());
        assert_eq!(expand(&argv(&["/p", "%u"]), &v).unwrap(), ["/p", "alice"]);
    }

    #[test]
    fn a_failure_names_the_source_and_its_stderr() {
        let r = Ran {
            name: "eic".into(),
            required: false,
            result: Err("exit status 1".into()),
            stderr: "curl: (7) failed\n".into(),
        };
        assert_eq!(
            r.failure().unwrap(),
            "command:eic failed: exit status 1 (stderr: curl: (7) failed)"
        );
        let ok = Ran {
            result: Ok(String::new()),
            ..r
        };
        assert_eq!(ok.failure(), None);
        assert_eq!(ok.source(), "command:eic");
    }
}
