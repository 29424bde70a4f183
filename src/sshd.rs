//! sshd as keyward sees it: the effective configuration (`sshd -T`), the
//! OpenSSH version, sshd's own rules (argv splitting, `%` tokens, the
//! Allow/Deny lists) and the grammar of the `keys` call it runs. Pure except
//! [`probe`], which runs sshd. Used by the login path's fast path (the
//! grammar), doctor and explain.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::os::command::run_command;

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

/// A `keys` call as sshd runs it: `[--config P | --config=P] keys USER [FP
/// [UID [TYPE KEY]]]` (the arguments after the program; sshd's `%u %f %U
/// %t %k`: the offered key's type and base64 are needed only by chained
/// commands that use `%t` or `%k`). The login
/// path's fast path takes exactly these forms; doctor checks the
/// AuthorizedKeysCommand against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysCall<'a> {
    pub config: Option<&'a str>,
    pub user: &'a str,
    pub fingerprint: Option<&'a str>,
    /// sshd's `%U`: the account's numeric uid, as sshd resolved it.
    pub uid: Option<&'a str>,
    /// sshd's `%t` and `%k`: the offered key's type and base64.
    pub key_type: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// Why an argument list is not a `keys` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotKeys<'a> {
    /// Another subcommand (or an option keyward does not have), or none.
    Subcommand(Option<&'a str>),
    /// `keys` followed by this many arguments (it takes one to three, or five).
    Arity(usize),
    /// An empty value, or one starting with `-` (an option to clap).
    Option(&'a str),
}

/// Parses the arguments after the program name.
pub fn keys_call<'a>(args: &[&'a str]) -> Result<KeysCall<'a>, NotKeys<'a>> {
    let (config, rest) = match args {
        ["--config", path, rest @ ..] => (Some(*path), rest),
        [first, rest @ ..] if first.starts_with("--config=") => {
            (Some(&first["--config=".len()..]), rest)
        }
        rest => (None, rest),
    };
    let (user, fingerprint, uid, key) = match rest {
        ["keys", user] => (*user, None, None, None),
        ["keys", user, fp] => (*user, Some(*fp), None, None),
        ["keys", user, fp, uid] => (*user, Some(*fp), Some(*uid), None),
        ["keys", user, fp, uid, t, k] => (*user, Some(*fp), Some(*uid), Some((*t, *k))),
        ["keys", more @ ..] => return Err(NotKeys::Arity(more.len())),
        other => return Err(NotKeys::Subcommand(other.first().copied())),
    };
    let plain = |v: &str| !v.is_empty() && !v.starts_with('-');
    for v in config
        .into_iter()
        .chain([user])
        .chain(fingerprint)
        .chain(uid)
        .chain(key.iter().flat_map(|(t, k)| [*t, *k]))
    {
        if !plain(v) {
            return Err(NotKeys::Option(v));
        }
    }
    Ok(KeysCall {
        config,
        user,
        fingerprint,
        uid,
        key_type: key.map(|(t, _)| t),
        key: key.map(|(_, k)| k),
    })
}

/// The value sshd substitutes for `%U` (the uid as `%llu`): decimal digits
/// only, no sign, no spaces, within `uid_t`.
pub fn uid_arg(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the uid argument {s:?} is not a number (sshd passes %U as digits)"
        ));
    }
    s.parse()
        .map_err(|_| format!("the uid argument {s:?} is out of range"))
}

/// sshd passes `%u` as it is, so a hostile account name may start with `-`.
/// Such a call is still the login path (its refusal must reach the log), not
/// an option for clap; only the help and version flags keep their meaning.
pub fn keys_call_with_dash_user<'a>(args: &[&'a str]) -> Option<KeysCall<'a>> {
    match keys_call(args) {
        Err(NotKeys::Option(v)) if v.starts_with('-') => {
            // `keyward keys --help` typed alone is a question; with the
            // fingerprint or uid after it, it is sshd's call for an account
            // with that name and must never print help on stdout.
            let pos = args.iter().position(|a| *a == "keys")?;
            let alone = args.len() == pos + 2;
            if alone && matches!(v, "-h" | "--help" | "-V" | "--version") {
                return None;
            }
            // The same call with the user swapped for a plain stand-in must
            // parse: only the user may start with `-`.
            let pos = args.iter().position(|a| *a == "keys")? + 1;
            if args.get(pos) != Some(&v) {
                return None;
            }
            let mut plain = args.to_vec();
            plain[pos] = "x";
            let call = keys_call(&plain).ok()?;
            Some(KeysCall { user: v, ..call })
        }
        _ => None,
    }
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

/// Tokens sshd expands in AuthorizedPrincipalsCommand arguments (more than
/// for AuthorizedKeysCommand: the certificate's and its CA's); `%C` and `%D`
/// only from OpenSSH 9.4.
pub fn principals_token_supported(t: char, v: Option<Version>) -> Option<bool> {
    match t {
        'F' | 'i' | 'K' | 's' | 'T' => Some(true),
        _ => token_supported(t, v),
    }
}

/// A `principals` call as sshd runs it: `[--config P | --config=P]
/// principals USER [NAME=VALUE…]` (the arguments after the program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalsCall<'a> {
    pub config: Option<&'a str>,
    pub user: &'a str,
    /// The `NAME=VALUE` arguments, for the log.
    pub rest: Vec<&'a str>,
}

/// Parses the arguments after the program name. The grammar is
/// `principals USER NAME=VALUE…` whatever USER is: sshd passes `%u` as it
/// is, and an account called `--help`, `-h` or `--` must neither make clap
/// print its help to stdout (sshd would read `Options:` as a principal)
/// nor shift the arguments. Such a user is refused by the name check, with
/// its record.
pub fn principals_call<'a>(args: &[&'a str]) -> Result<PrincipalsCall<'a>, NotKeys<'a>> {
    let (config, rest) = match args {
        ["--config", path, rest @ ..] => (Some(*path), rest),
        [first, rest @ ..] if first.starts_with("--config=") => {
            (Some(&first["--config=".len()..]), rest)
        }
        rest => (None, rest),
    };
    let (user, more) = match rest {
        ["principals", user, more @ ..] => (*user, more),
        ["principals"] => return Err(NotKeys::Arity(0)),
        other => return Err(NotKeys::Subcommand(other.first().copied())),
    };
    if let Some(c) = config.filter(|c| c.is_empty() || c.starts_with('-')) {
        return Err(NotKeys::Option(c));
    }
    Ok(PrincipalsCall {
        config,
        user,
        rest: more.to_vec(),
    })
}

mod files;
pub use files::{order_trap, read_sshd_config, split_directive, Directive, Loc};

#[cfg(test)]
mod tests {
    use super::*;

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
    fn keys_call_grammar() {
        assert_eq!(
            keys_call(&["--config", "/k.toml", "keys", "%u", "%f"]),
            Ok(KeysCall {
                config: Some("/k.toml"),
                user: "%u",
                fingerprint: Some("%f"),
                uid: None,
                key_type: None,
                key: None,
            })
        );
        assert_eq!(
            keys_call(&["keys", "%u", "%f", "%U"]).unwrap().uid,
            Some("%U")
        );
        assert_eq!(
            keys_call(&["--config=/k", "keys", "%u"]).unwrap().config,
            Some("/k")
        );
        assert_eq!(keys_call(&["keys"]), Err(NotKeys::Arity(0)));
        let five = keys_call(&["keys", "a", "SHA256:x", "7", "ssh-ed25519", "AAAA"]).unwrap();
        assert_eq!(
            (five.uid, five.key_type, five.key),
            (Some("7"), Some("ssh-ed25519"), Some("AAAA"))
        );
        assert_eq!(
            keys_call(&["keys", "a", "b", "c", "d", "-e"]),
            Err(NotKeys::Option("-e"))
        );
        assert_eq!(
            keys_call(&["keys", "a", "b", "c", "d", "e", "f"]),
            Err(NotKeys::Arity(6))
        );
        assert_eq!(
            keys_call(&["keys", "a", "b", "c", "d"]),
            Err(NotKeys::Arity(4))
        );
        assert_eq!(
            keys_call(&["keys", "a", "b", "-1"]),
            Err(NotKeys::Option("-1"))
        );
        assert_eq!(keys_call(&["%u"]), Err(NotKeys::Subcommand(Some("%u"))));
        assert_eq!(keys_call(&[]), Err(NotKeys::Subcommand(None)));
        assert_eq!(keys_call(&["keys", "-h"]), Err(NotKeys::Option("-h")));
        // A user starting with `-` is still a login-path call (logged).
        assert_eq!(
            keys_call_with_dash_user(&["--config", "/k", "keys", "-oops", "SHA256:x"]),
            Some(KeysCall {
                config: Some("/k"),
                user: "-oops",
                fingerprint: Some("SHA256:x"),
                uid: None,
                key_type: None,
                key: None,
            })
        );
        assert_eq!(keys_call_with_dash_user(&["keys", "--help"]), None);
        assert_eq!(keys_call_with_dash_user(&["keys", "-V"]), None);
        // An empty user is no account name at all, not one starting with `-`.
        assert_eq!(keys_call_with_dash_user(&["keys", ""]), None);
        assert_eq!(keys_call_with_dash_user(&["keys", "", "SHA256:x"]), None);
        // sshd's form for accounts named like clap's options: the user
        for user in ["--help", "-h", "-V", "--version"] {
            let c = keys_call_with_dash_user(&["keys", user, "SHA256:x", "7"]).unwrap();
            assert_eq!((c.user, c.uid), (user, Some("7")));
            let c = keys_call_with_dash_user(&["keys", user, "SHA256:x"]).unwrap();
            assert_eq!(c.user, user);
        }
        assert_eq!(keys_call_with_dash_user(&["keys", "alice", "-x"]), None);
        assert_eq!(
            keys_call_with_dash_user(&["--config", "-c", "keys", "a"]),
            None
        );
        assert_eq!(keys_call_with_dash_user(&["keys", "alice"]), None);
        assert_eq!(
            keys_call(&["--config=", "keys", "a"]),
            Err(NotKeys::Option(""))
        );
    }

    #[test]
    fn uid_argument() {
        assert_eq!(uid_arg("0"), Ok(0));
        assert_eq!(uid_arg("1000"), Ok(1000));
        assert_eq!(uid_arg("4294967295"), Ok(u32::MAX));
        for bad in ["", "%U", "+1", "-1", " 1", "1 ", "0x10", "4294967296", "١"] {
            assert!(uid_arg(bad).is_err(), "{bad:?}");
        }
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

    #[test]
    fn principals_call_grammar() {
        let c = principals_call(&["principals", "%u", "fp=%f", "id=%i"]).unwrap();
        assert_eq!((c.config, c.user, c.rest.len()), (None, "%u", 2));
        let c = principals_call(&["--config=/k.toml", "principals", "-x"]).unwrap();
        assert_eq!((c.config, c.user), (Some("/k.toml"), "-x"));
        assert_eq!(
            principals_call(&["keys", "%u"]),
            Err(NotKeys::Subcommand(Some("keys")))
        );
        assert_eq!(principals_call(&["principals"]), Err(NotKeys::Arity(0)));
        // whatever the user is, it is the user, and the rest stays in place
        for user in [
            "--help",
            "-h",
            "--",
            "-V",
            "--version",
            "--config=/x",
            "--config",
            "",
        ] {
            let c = principals_call(&["principals", user, "uid=7", "fp=x"]).unwrap();
            assert_eq!((c.user, c.rest.as_slice()), (user, &["uid=7", "fp=x"][..]));
        }
        assert_eq!(
            principals_call(&["--config", "-", "principals", "u"]),
            Err(NotKeys::Option("-"))
        );
        assert_eq!(principals_token_supported('i', None), Some(true));
        assert_eq!(principals_token_supported('C', None), None);
        assert_eq!(token_supported('i', None), Some(false));
    }
}
