//! `[[command]]`: another AuthorizedKeysCommand (EC2 Instance Connect,
//! Google OS Login, SSSD, a forge's helper) chained as a key source. Each
//! value is checked where it is written, like the rest of the config; the
//! rules between tables (unique names, the total budget) are in
//! [`check_all`].

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::values::ConfDuration;

/// The default share of the time budget of one chained command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest share: sshd's LoginGraceTime (120 s by default) covers every
/// attempt of a login, and sshd runs keyward twice for the accepted key.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many chained commands (each may run on every key tried).
pub const MAX_COMMANDS: usize = 8;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Names the source in the log (`source=command:NAME`) and in explain.
    #[serde(deserialize_with = "name")]
    pub name: String,
    /// The program (absolute path) and its arguments, split like sshd
    /// splits its own AuthorizedKeysCommand, tokens expanded per argument.
    #[serde(deserialize_with = "command_line")]
    pub command: CommandLine,
    /// The account it runs as (sshd's AuthorizedKeysCommandUser for it).
    #[serde(deserialize_with = "account")]
    pub user: String,
    /// Its share of the time budget: killed (its process group) after it.
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    pub timeout: ConfDuration,
    /// Whether its failure fails the whole lookup closed. By default the
    /// other sources still answer: a failed source only serves no keys.
    #[serde(default)]
    pub required: bool,
}

impl CommandConfig {
    /// Whether any argument uses the token `%t` (`t`).
    pub fn uses(&self, token: char) -> bool {
        self.command.tokens.contains(&token)
    }
}

/// A command line as written and as split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub line: String,
    /// The program, then the arguments (tokens not yet expanded).
    pub argv: Vec<String>,
    /// Every token the arguments use (`%%` excluded).
    pub tokens: Vec<char>,
}

/// Tokens sshd expands in AuthorizedKeysCommand arguments that keyward can
/// pass on (`%C` and `%D` never reach keyward).
pub const TOKENS: &[char] = &['u', 'U', 'f', 't', 'k', 'h'];

fn default_timeout() -> ConfDuration {
    ConfDuration(DEFAULT_TIMEOUT)
}

/// Letters, digits, `-`, `_`, `.`: the name goes into a log field.
pub fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "[[command]] name {n:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Splits and checks a command line: an absolute program without tokens,
/// arguments with only the tokens keyward can pass.
pub fn parse_command_line(line: &str) -> Result<CommandLine, String> {
    let argv =
        crate::sshd::argv_split(line).map_err(|e| format!("[[command]] command {line:?}: {e}"))?;
    let Some(program) = argv.first() else {
        return Err("[[command]] command is empty".into());
    };
    if !program.starts_with('/') {
        return Err(format!(
            "[[command]] command {program:?} must be an absolute path (sshd's rule for its own command)"
        ));
    }
    if program.contains('%') {
        return Err(format!(
            "[[command]] command {program:?}: tokens are expanded in the arguments only, as sshd does"
        ));
    }
    let mut tokens = Vec::new();
    for a in &argv[1..] {
        for t in crate::sshd::tokens(a).map_err(|e| format!("[[command]] command: {e}"))? {
            match t {
                '%' => {}
                t if TOKENS.contains(&t) => {
                    if !tokens.contains(&t) {
                        tokens.push(t);
                    }
                }
                t => {
                    return Err(format!(
                        "[[command]] command {line:?}: unknown token %{t}; keyward passes %u %U %f %t %k %h and %%"
                    ))
                }
            }
        }
    }
    Ok(CommandLine {
        line: line.to_owned(),
        argv,
        tokens,
    })
}

fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let n = String::deserialize(d)?;
    check_name(&n).map_err(serde::de::Error::custom)?;
    Ok(n)
}

fn command_line<'de, D: Deserializer<'de>>(d: D) -> Result<CommandLine, D::Error> {
    parse_command_line(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn account<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let u = String::deserialize(d)?;
    if u.is_empty()
        || u.starts_with('-')
        || u.contains(['/', ':', '\0'])
        || u.contains(char::is_whitespace)
    {
        return Err(serde::de::Error::custom(format!(
            "[[command]] user {u:?} is not an account name"
        )));
    }
    Ok(u)
}

fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<ConfDuration, D::Error> {
    let t = ConfDuration::deserialize(d)?;
    if t.0 > MAX_TIMEOUT {
        return Err(serde::de::Error::custom(format!(
            "[[command]] timeout must be at most {}s (sshd's LoginGraceTime covers every attempt)",
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(t)
}

/// The rules between the tables: unique names, at most [`MAX_COMMANDS`].
pub fn check_all(commands: &[CommandConfig]) -> Result<(), String> {
    if commands.len() > MAX_COMMANDS {
        return Err(format!(
            "at most {MAX_COMMANDS} [[command]] tables (each may run for every key a client offers)"
        ));
    }
    for (i, c) in commands.iter().enumerate() {
        if commands[..i].iter().any(|o| o.name == c.name) {
            return Err(format!("[[command]] name {:?} is used twice", c.name));
        }
    }
    Ok(())
}

/// The longest any chained command may run in one lookup: they run side
/// by side, so the longest share.
pub fn budget(commands: &[CommandConfig]) -> Duration {
    commands
        .iter()
        .map(|c| c.timeout.0)
        .max()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_sshd_and_take_sshd_tokens() {
        let c = parse_command_line("/usr/bin/eic_run_authorized_keys %u %f").unwrap();
        assert_eq!(c.argv, ["/usr/bin/eic_run_authorized_keys", "%u", "%f"]);
        assert_eq!(c.tokens, ['u', 'f']);
        let c = parse_command_line("/x -t %t -k \"%k here\" %% %h %U %u").unwrap();
        assert_eq!(c.argv[4], "%k here");
        assert_eq!(c.tokens, ['t', 'k', 'h', 'U', 'u']);
        for bad in [
            "",
            "sss_ssh_authorizedkeys %u",
            "/x/%u",
            "/x %C",
            "/x %D",
            "/x %i",
            "/x 50%",
            "/x \"open",
        ] {
            assert!(parse_command_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_log_safe() {
        assert!(check_name("eic").is_ok());
        assert!(check_name("os-login_2.x").is_ok());
        for bad in ["", "a b", "a=b", "a;b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
