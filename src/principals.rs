//! `keyward principals USER [NAME=VALUE…]`: sshd's AuthorizedPrincipalsCommand.
//!
//! With `TrustedUserCAKeys`, sshd accepts a user certificate for an account
//! when one of the certificate's principals is listed for that account. It
//! asks this command for the list: one principal per line, optionally after
//! authorized_keys options (`from="10.0.0.0/8",command="…" team-web`).
//!
//! The list is the directory's `<user>.principals` file, fetched through the
//! same cache, `state` rules (freshness, stale serving, fail closed, rollback
//! floor), signatures (`kind=principals` in the header) and syslog record as
//! `keys` (the login path: `lookup::run_principals`). This module is the
//! pure part: the line syntax, the policy, the arguments. Lines are parsed the way sshd parses them
//! (auth2-pubkeyfile.c: `auth_process_principals`,
//! `auth_check_principals_line`); a line sshd would read differently from
//! how it looks is dropped and logged, never passed on. Options are printed
//! byte for byte as written.
//!
//! The extra arguments only feed the syslog record, so an audit trail names
//! the certificate: `fp=%f ca=%F id=%i serial=%s type=%t`. Each is one
//! argument whatever its value (sshd splits the command line before it
//! expands tokens), so a key ID with spaces or a leading `-` is harmless.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::audit::Record;
use crate::config::{self, PolicyConfig};
use crate::keyline::{self, ExpiryTime, LineError};

/// One principals line as sshd will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalLine {
    /// Options exactly as written ("" when none).
    pub options: String,
    pub principal: String,
    pub expiry: Option<ExpiryTime>,
}

impl PrincipalLine {
    /// The line keyward prints: options verbatim, one space, the principal.
    pub fn to_line(&self) -> String {
        if self.options.is_empty() {
            self.principal.clone()
        } else {
            format!("{} {}", self.options, self.principal)
        }
    }
}

/// Why a line is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("control character in line")]
    ControlChar,
    #[error("'#' inside quoted options (sshd cuts the line there)")]
    HashInOptions,
    #[error("no principal after the options")]
    NoPrincipal,
    #[error("more than one word on the line (one principal per line; options, comma-separated, go before it)")]
    ExtraWords,
    #[error("{0}")]
    Options(LineError),
    #[error("cert-authority is not valid on a principals line (sshd refuses the line)")]
    CertAuthority,
    #[error("principals= is not valid on a principals line (sshd refuses the line)")]
    PrincipalsOption,
}

/// Parses one line. `Ok(None)` for blank lines and comments.
pub fn parse_line(raw: &str) -> Result<Option<PrincipalLine>, LineProblem> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    let line = line.trim_start_matches([' ', '\t']);
    // sshd cuts every line at its first '#', quoted or not.
    let (content, cut) = match line.find('#') {
        Some(i) => (&line[..i], true),
        None => (line, false),
    };
    let content = content.trim_end_matches([' ', '\t']);
    if content.is_empty() {
        return Ok(None);
    }
    if content.chars().any(|c| c.is_control() && c != '\t') {
        return Err(LineProblem::ControlChar);
    }
    if cut && open_quote(content) {
        return Err(LineProblem::HashInOptions);
    }
    // The principal is what follows the last space (else the last tab),
    // exactly as sshd finds it.
    let Some(sep) = content.rfind(' ').or_else(|| content.rfind('\t')) else {
        return Ok(Some(PrincipalLine {
            options: String::new(),
            principal: content.to_owned(),
            expiry: None,
        }));
    };
    let principal = content[sep..].trim_start_matches([' ', '\t']);
    // Options end at the first space or tab outside double quotes (sshd's
    // sshauthopt_parse); they must end before the principal, with only
    // whitespace between.
    let (i, quoted) = scan_options(content, true);
    if quoted {
        return Err(LineProblem::Options(LineError::UnterminatedQuote));
    }
    let options = &content[..i];
    if i > sep || principal.is_empty() || principal.contains([' ', '\t']) {
        return Err(LineProblem::NoPrincipal);
    }
    if !content[i..content.len() - principal.len()]
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
    {
        return Err(LineProblem::ExtraWords);
    }
    let mut expiry = None;
    let parsed = match keyline::parse_options(options) {
        // `team-web alice`: two principals on one line, not an option.
        Err(LineError::UnknownOption(_)) if !options.contains(['=', ',', '"']) => {
            return Err(LineProblem::ExtraWords)
        }
        r => r.map_err(LineProblem::Options)?,
    };
    for (name, value) in parsed {
        match name.to_ascii_lowercase().as_str() {
            "cert-authority" => return Err(LineProblem::CertAuthority),
            "principals" => return Err(LineProblem::PrincipalsOption),
            "expiry-time" => {
                let v = value.unwrap_or_default();
                expiry = Some(
                    keyline::parse_expiry(&v)
                        .ok_or(LineProblem::Options(LineError::BadExpiry(v)))?,
                );
            }
            _ => {}
        }
    }
    Ok(Some(PrincipalLine {
        options: options.to_owned(),
        principal: principal.to_owned(),
        expiry,
    }))
}

/// Scans `s` as sshd scans options: `"` opens and closes a quoted value,
/// `\"` inside one is an escaped quote. Returns where the scan stopped (the
/// first space or tab outside quotes when `stop_at_space`, else the end) and
/// whether a quote was left open there.
fn scan_options(s: &str, stop_at_space: bool) -> (usize, bool) {
    let bytes = s.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted && stop_at_space => break,
            _ => {}
        }
        i += 1;
    }
    (i.min(bytes.len()), quoted)
}

/// Whether a quote is still open at the end of `s` (the line was cut
/// inside a quoted value).
fn open_quote(s: &str) -> bool {
    scan_options(s, false).1
}

/// A 200 body is taken when it is empty or comments only, or when at least
/// one line is a valid principals line: an error page where every line is
/// garbage would otherwise replace the list. (A one-word page is a valid
/// list by syntax: signatures are what tell a directory file from anything
/// else.)
pub fn plausible(body: &str) -> bool {
    if body.contains('\0') {
        return false;
    }
    let mut content = 0;
    for line in body.lines() {
        match parse_line(line) {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => content += 1,
        }
    }
    content == 0
}

/// One line of the directory file, parsed or not.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub line_no: usize,
    pub parsed: Result<PrincipalLine, LineProblem>,
}

/// Every non-blank, non-comment line of `body`.
pub fn candidates(body: &str) -> Vec<Candidate> {
    body.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            Some(Candidate {
                line_no: i + 1,
                parsed: parse_line(l).transpose()?,
            })
        })
        .collect()
}

/// Why a line is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    Invalid(LineProblem),
    Expired,
    /// The same options and principal as line `first` (a candidate index).
    Duplicate {
        first: usize,
    },
    OverMax {
        max: usize,
    },
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::Invalid(p) => write!(f, "invalid line: {p}"),
            Dropped::Expired => write!(f, "expiry-time has passed"),
            Dropped::Duplicate { first } => write!(f, "duplicate of principal #{}", first + 1),
            Dropped::OverMax { max } => write!(f, "more than max_keys {max}"),
        }
    }
}

/// The `[policy]` rules that apply to principals lines, one verdict per
/// candidate (None: served): expiry, exact duplicates, `max_keys`.
pub fn evaluate(policy: &PolicyConfig, cands: &[Candidate], now: i64) -> Vec<Option<Dropped>> {
    let mut served: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(cands.len());
    for (i, c) in cands.iter().enumerate() {
        let verdict = match &c.parsed {
            Err(p) => Some(Dropped::Invalid(p.clone())),
            // An expiry that cannot be converted counts as passed.
            Ok(l) if l.expiry.is_some_and(|e| e.epoch().is_none_or(|t| t <= now)) => {
                Some(Dropped::Expired)
            }
            Ok(l) => {
                let dup = served
                    .iter()
                    .copied()
                    .find(|&j| cands[j].parsed.as_ref().is_ok_and(|o| o == l));
                match dup {
                    Some(first) => Some(Dropped::Duplicate { first }),
                    None if served.len() >= policy.max_keys => Some(Dropped::OverMax {
                        max: policy.max_keys,
                    }),
                    None => {
                        served.push(i);
                        None
                    }
                }
            }
        };
        out.push(verdict);
    }
    out
}

/// The arguments sshd passes after the user, for the audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// sshd's `%U` (the account's uid): the uid-0 rule then needs no NSS.
    pub uid: Option<String>,
    pub fp: Option<String>,
    pub ca: Option<String>,
    pub id: Option<String>,
    pub serial: Option<String>,
    pub key_type: Option<String>,
}

/// The names `NAME=VALUE` arguments may use, with the sshd token for each.
pub const ARG_NAMES: &[(&str, &str)] = &[
    ("uid", "%U"),
    ("fp", "%f"),
    ("ca", "%F"),
    ("id", "%i"),
    ("serial", "%s"),
    ("type", "%t"),
];

impl CertInfo {
    /// Parses `NAME=VALUE` arguments; an unknown name is an error (a
    /// mistyped sshd_config line must be seen, not ignored).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<CertInfo, String> {
        let mut info = CertInfo::default();
        for a in args {
            let a = a.as_ref();
            let (name, value) = a.split_once('=').ok_or_else(|| bad_arg(a))?;
            let slot = match name {
                "uid" => &mut info.uid,
                "fp" => &mut info.fp,
                "ca" => &mut info.ca,
                "id" => &mut info.id,
                "serial" => &mut info.serial,
                "type" => &mut info.key_type,
                _ => return Err(bad_arg(a)),
            };
            *slot = Some(value.to_owned());
        }
        Ok(info)
    }

    /// Adds the certificate's fields to a log record.
    pub fn record(&self, r: &mut Record) {
        for (k, v) in [
            ("uid", &self.uid),
            ("id", &self.id),
            ("serial", &self.serial),
            ("fp", &self.fp),
            ("ca", &self.ca),
            ("type", &self.key_type),
        ] {
            if let Some(v) = v {
                r.push(k, v);
            }
        }
    }
}

fn bad_arg(a: &str) -> String {
    let names: Vec<String> = ARG_NAMES.iter().map(|(n, t)| format!("{n}={t}")).collect();
    let shown: String = a.chars().take(40).collect();
    format!(
        "unknown argument {shown:?}: after the user, only {} are accepted",
        names.join(" ")
    )
}

/// `keyward [--config P] principals USER [NAME=VALUE…]` as sshd runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config: PathBuf,
    pub user: String,
    /// The remaining arguments (lossily UTF-8: they are only logged).
    pub rest: Vec<String>,
}

/// Recognises the sshd forms without clap (it costs more than a cached
/// lookup): `[--config P|--config=P] principals USER [NAME=VALUE…]`. The
/// config path and user must be UTF-8 (else None: clap reports the error);
/// the rest is taken as it is: a certificate's key ID may be anything, and
/// only the log sees it.
pub fn fast_args(args: &[OsString]) -> Option<Args> {
    // Only the config path and the user must be UTF-8: the NAME=VALUE
    // arguments are logged, lossily if need be.
    let lossy: Vec<std::borrow::Cow<str>> =
        args.iter().skip(1).map(|a| a.to_string_lossy()).collect();
    let strs: Vec<&str> = lossy.iter().map(|a| a.as_ref()).collect();
    let call = crate::sshd::principals_call(&strs).ok()?;
    // The argument each came from must have been valid UTF-8 as it is
    // (`--config=P` holds P inside it: compare by address range).
    // (An empty value came from an empty argument: lossy text never is.)
    let utf8 = |v: &str| {
        if v.is_empty() {
            return true;
        }
        let p = v.as_ptr() as usize;
        strs.iter()
            .position(|s| {
                let start = s.as_ptr() as usize;
                (start..=start + s.len()).contains(&p)
            })
            .is_some_and(|i| args[i + 1].to_str().is_some())
    };
    if !call.config.is_none_or(utf8) || !utf8(call.user) {
        return None;
    }
    Some(Args {
        config: PathBuf::from(call.config.unwrap_or(config::DEFAULT_PATH)),
        user: call.user.to_owned(),
        rest: call.rest.iter().map(|a| a.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> PrincipalLine {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn plain_and_optioned_lines() {
        assert_eq!(ok("team-web").principal, "team-web");
        assert_eq!(ok("  alice\t ").to_line(), "alice");
        assert_eq!(ok("alice # the web team").to_line(), "alice");
        assert_eq!(ok("alice\r").to_line(), "alice");
        let l = ok(r#"from="10.0.0.0/8",command="echo \"hi there\"",no-pty   team-web"#);
        assert_eq!(
            l.options,
            r#"from="10.0.0.0/8",command="echo \"hi there\"",no-pty"#
        );
        assert_eq!(l.principal, "team-web");
        assert_eq!(
            l.to_line(),
            r#"from="10.0.0.0/8",command="echo \"hi there\"",no-pty team-web"#
        );
        assert_eq!(ok("restrict\talice").to_line(), "restrict alice");
        assert_eq!(ok("Restrict alice@corp.example.com").options, "Restrict");
        let e = ok(r#"expiry-time="20300101Z" alice"#);
        assert!(e.expiry.is_some());
        for skip in ["", "   ", "# comment", "  # x", "#team-web"] {
            assert_eq!(parse_line(skip), Ok(None), "{skip:?}");
        }
    }

    #[test]
    fn lines_sshd_would_read_otherwise_are_refused() {
        let err = |l: &str| parse_line(l).unwrap_err();
        assert_eq!(err("team-web alice"), LineProblem::ExtraWords);
        assert_eq!(
            err("nopty,team-web alice"),
            LineProblem::Options(LineError::UnknownOption("nopty".into()))
        );
        assert_eq!(err("restrict foo alice"), LineProblem::ExtraWords);
        assert_eq!(err(r#"command="a b""#), LineProblem::NoPrincipal);
        assert_eq!(err(r#"command="a b"	alice"#), LineProblem::NoPrincipal);
        assert_eq!(
            err(r#"command="echo #1" alice"#),
            LineProblem::HashInOptions
        );
        assert_eq!(err("cert-authority alice"), LineProblem::CertAuthority);
        assert_eq!(
            err(r#"principals="a" alice"#),
            LineProblem::PrincipalsOption
        );
        assert_eq!(err("restrict a\x1bb"), LineProblem::ControlChar);
        assert_eq!(err("al\0ice"), LineProblem::ControlChar);
        assert!(matches!(
            err(r#"command="x alice"#),
            LineProblem::Options(_)
        ));
        assert!(matches!(
            err(r#"expiry-time="soon" alice"#),
            LineProblem::Options(LineError::BadExpiry(_))
        ));
        // A keys line is never a principals line.
        assert!(parse_line("ssh-ed25519 AAAAC3Nza alice@laptop").is_err());
        assert!(parse_line("ssh-ed25519 AAAAC3Nza").is_err());
    }

    #[test]
    fn policy_rules() {
        let body = "alice\nbad line here\nalice\nfrom=\"10.0.0.1\" alice\nexpiry-time=\"20000101Z\" bob\ncarol\n";
        let cands = candidates(body);
        let p = PolicyConfig {
            max_keys: 2,
            ..PolicyConfig::default()
        };
        let v = evaluate(&p, &cands, 1_700_000_000);
        assert_eq!(v[0], None);
        assert!(matches!(
            v[1],
            Some(Dropped::Invalid(LineProblem::ExtraWords))
        ));
        assert_eq!(v[2], Some(Dropped::Duplicate { first: 0 }));
        assert_eq!(v[3], None, "other options: not a duplicate");
        assert_eq!(v[4], Some(Dropped::Expired));
        assert_eq!(v[5], Some(Dropped::OverMax { max: 2 }));
        assert_eq!(cands[5].line_no, 6);
    }

    #[test]
    fn plausibility() {
        assert!(plausible(""));
        assert!(plausible("# nobody\n"));
        assert!(plausible("team-web\n"));
        assert!(!plausible("<html><body>502 Bad Gateway</body></html>\n"));
        assert!(!plausible("Service Unavailable\n"));
        assert!(!plausible("alice\0\n"));
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        std::iter::once("keyward")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn sshd_argument_forms() {
        let a = fast_args(&os(&["principals", "deploy", "id=-x y", "serial=5"])).unwrap();
        assert_eq!(a.config, PathBuf::from(config::DEFAULT_PATH));
        assert_eq!((a.user.as_str(), a.rest.len()), ("deploy", 2));
        let info = CertInfo::parse(&a.rest).unwrap();
        assert_eq!(info.id.as_deref(), Some("-x y"));
        assert_eq!(info.serial.as_deref(), Some("5"));
        let a = fast_args(&os(&["--config", "/k.toml", "principals", "a@b"])).unwrap();
        assert_eq!(
            (a.config.to_str(), a.user.as_str()),
            (Some("/k.toml"), "a@b")
        );
        let a = fast_args(&os(&["--config=/k.toml", "principals", "a", "id="])).unwrap();
        assert_eq!(CertInfo::parse(&a.rest).unwrap().id.as_deref(), Some(""));
        // Any user, even one clap would read as an option: refused later
        // by the name check, with its log line (never clap's help).
        for user in [
            "-rf",
            "--help",
            "-h",
            "--",
            "-V",
            "--version",
            "--config=/x",
            "",
        ] {
            let a = fast_args(&os(&["principals", user, "id=x"])).unwrap();
            assert_eq!((a.user.as_str(), a.rest.len()), (user, 1));
        }
        for bad in [
            &["principals"][..],
            &["keys", "alice"],
            &["--config", "principals", "alice"],
            &["--help"],
        ] {
            assert_eq!(fast_args(&os(bad)), None, "{bad:?}");
        }
        // A key ID that is not UTF-8 is logged lossily, not refused.
        use std::os::unix::ffi::OsStringExt;
        let mut v = os(&["principals", "deploy"]);
        v.push(OsString::from_vec(b"id=\xff".to_vec()));
        assert_eq!(fast_args(&v).unwrap().rest, ["id=\u{fffd}"]);
        // A user or config that is not UTF-8 is not (clap reports it, the
        // cli logs the failure).
        let mut v = os(&["principals"]);
        v.push(OsString::from_vec(b"j\xf6rg".to_vec()));
        assert_eq!(fast_args(&v), None);
        let mut v = os(&[]);
        v.push(OsString::from_vec(b"--config=/k\xff".to_vec()));
        v.extend(["principals", "u"].map(OsString::from));
        assert_eq!(fast_args(&v), None);
        assert!(CertInfo::parse(&["nonsense"])
            .unwrap_err()
            .contains("fp=%f"));
        assert!(CertInfo::parse(&["key=1"]).is_err());
        // sshd's %U, logged as uid=
        let info = CertInfo::parse(&["uid=0", "id=x"]).unwrap();
        assert_eq!(info.uid.as_deref(), Some("0"));
        let mut r = Record::new();
        info.record(&mut r);
        assert_eq!(r.to_string(), "uid=0 id=x");
    }
}
