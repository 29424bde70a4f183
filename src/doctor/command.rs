//! The shape both of sshd's command settings share
//! (`AuthorizedKeysCommand`, `AuthorizedPrincipalsCommand`): split the line
//! like sshd, require an absolute program path, sort its `%` tokens into
//! those this sshd expands and those it does not, and check the account
//! sshd runs it as. The checks that differ (what the arguments must be)
//! stay in [`super::sshd`] and [`super::principals`].

use std::path::Path;

use crate::report::Check;
use crate::sshd::{argv_split, tokens, SshdT, Version};

/// A command line from `sshd -T`, split like sshd splits it.
pub struct Command {
    pub line: String,
    pub argv0: String,
    /// The arguments after the program.
    pub args: Vec<String>,
}

impl Command {
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// Splits `line` (the value of `keyword`, e.g. "AuthorizedKeysCommand");
/// the `id` failure when sshd cannot split it.
pub fn split(id: &'static str, keyword: &str, line: &str, file: &str) -> Result<Command, Check> {
    match argv_split(line) {
        Ok(argv) if !argv.is_empty() => Ok(Command {
            line: line.to_owned(),
            argv0: argv[0].clone(),
            args: argv[1..].to_vec(),
        }),
        _ => Err(Check::fail(
            id,
            format!("{keyword} {line:?} cannot be split into arguments"),
            format!("fix the quoting in {file}"),
        )),
    }
}

/// sshd refuses a relative program path (auth2-pubkey.c: "must be an
/// absolute path"); `good` is the line to write instead.
pub fn absolute(id: &'static str, keyword: &str, c: &Command, good: &str) -> Result<(), Check> {
    if c.argv0.starts_with('/') {
        return Ok(());
    }
    Err(Check::fail(
        id,
        format!(
            "{keyword} {} is not an absolute path: sshd refuses to run it",
            c.argv0
        ),
        good.to_owned(),
    ))
}

pub fn is_named_keyward(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("keyward"))
}

/// The `%` tokens of the arguments this sshd does not expand (`bad`: an
/// unknown token is fatal for every connection) and those it may not
/// (`unsure`: the version is unknown). `supported` is the token table of
/// the setting ([`crate::sshd::token_supported`] or its principals form).
pub fn unexpanded_tokens(
    args: &[String],
    version: Option<Version>,
    supported: fn(char, Option<Version>) -> Option<bool>,
) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut unsure) = (Vec::new(), Vec::new());
    for a in args {
        match tokens(a) {
            Ok(ts) => {
                for t in ts {
                    match supported(t, version) {
                        Some(true) => {}
                        Some(false) => bad.push(format!("%{t}")),
                        None => unsure.push(format!("%{t}")),
                    }
                }
            }
            Err(e) => bad.push(e),
        }
    }
    (bad, unsure)
}

/// The `…CommandUser` setting (`keyword`, e.g. "AuthorizedKeysCommandUser"):
/// sshd refuses to run the command when it is unset or names no account.
pub fn run_as<'t>(
    id: &'static str,
    keyword: &str,
    t: &'t SshdT,
    user_exists: &dyn Fn(&str) -> Option<bool>,
    file: &str,
) -> Result<&'t str, Check> {
    let kw = keyword.to_ascii_lowercase();
    let Some(user) = t.set(&kw) else {
        return Err(Check::fail(
            id,
            format!("{keyword} is not set: sshd refuses to run the command"),
            format!("add `{keyword} keyward` to {file}"),
        ));
    };
    if user_exists(user) == Some(false) {
        return Err(Check::fail(
            id,
            format!("{keyword} {user} does not exist: sshd cannot run the command"),
            format!("create the user (useradd --system --no-create-home --shell /usr/sbin/nologin {user}) or set {keyword} keyward in {file}"),
        ));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use crate::sshd::{principals_token_supported, token_supported};

    fn v(major: u32, minor: u32) -> Option<Version> {
        Some(Version { major, minor })
    }

    #[test]
    fn tokens_by_table_and_version() {
        let args = vec!["%u".to_string(), "%C".to_string(), "fp=%f%i".to_string()];
        let (bad, unsure) = unexpanded_tokens(&args, v(9, 2), token_supported);
        assert_eq!(bad, ["%C", "%i"]);
        assert!(unsure.is_empty());
        let (bad, unsure) = unexpanded_tokens(&args, None, principals_token_supported);
        assert!(bad.is_empty());
        assert_eq!(unsure, ["%C"]);
        let (bad, _) = unexpanded_tokens(&args, v(9, 4), principals_token_supported);
        assert!(bad.is_empty());
    }

    #[test]
    fn split_and_absolute() {
        let c = split("x", "K", "keyward keys %u", "f").unwrap();
        assert_eq!(
            (c.argv0.as_str(), c.args()),
            ("keyward", vec!["keys", "%u"])
        );
        let e = absolute("x", "K", &c, "good").unwrap_err();
        assert_eq!(e.status, Status::Fail);
        assert!(split("x", "K", "\"unclosed", "f").is_err());
        assert!(is_named_keyward("/opt/keyward-1/keyward"));
        assert!(!is_named_keyward("/usr/bin/sss_ssh_authorizedkeys"));
    }
}
