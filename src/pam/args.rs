//! Module arguments of `pam_keyward.so` (pure).
//!
//! ```text
//! auth     requisite  pam_keyward.so  allow_group=breakglass
//! session  required   pam_keyward.so  require_publickey allow_group=breakglass
//! ```
//!
//! Every argument is known to every callback (an admin can copy one set of
//! arguments to every line); an argument that does not apply to a stage is
//! simply not used there. Anything unknown or malformed is an error, and
//! the callbacks fail closed on it.

use std::fmt;

/// Parsed module arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `allow_user=NAME[,NAME…]`: exempt users, matched byte for byte.
    pub allow_users: Vec<String>,
    /// `allow_group=GROUP[,GROUP…]`: exempt members (primary or
    /// supplementary) of these groups.
    pub allow_groups: Vec<String>,
    /// `audit_only`: log what would be refused, refuse nothing.
    pub audit_only: bool,
    /// `debug`: more detail in every log line.
    pub debug: bool,
    /// `require_publickey` (session): refuse a session that was not opened
    /// by a public key.
    pub require_publickey: bool,
    /// `missing_ok` (session): accept a session without `SSH_AUTH_INFO_0`
    /// (a PAM service other than sshd). Default: refuse it.
    pub missing_ok: bool,
    /// `services=NAME[,NAME…]`: the PAM services the module acts for;
    /// empty means [`DEFAULT_SERVICES`]. Any other service gets PAM_IGNORE,
    /// so a line in a shared stack (`common-auth`) cannot block console,
    /// `su` or `sudo` passwords.
    pub services: Vec<String>,
}

/// The services acted for when no `services=` is given.
pub const DEFAULT_SERVICES: &[&str] = &["sshd"];

/// The arguments this module knows, for error messages.
pub const KNOWN: &str =
    "allow_user=NAME[,NAME], allow_group=GROUP[,GROUP], services=SERVICE[,SERVICE], audit_only, debug, require_publickey, missing_ok";

/// Upper bounds that keep a mistyped (or hostile) configuration cheap.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_LEN: usize = 4096;
pub const MAX_NAMES: usize = 256;
/// Longer than any user or group name NSS hands out in practice.
pub const MAX_NAME_LEN: usize = 256;

/// Why the arguments were refused: which one (1-based), what it was (lossy
/// UTF-8, escaped when logged) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError {
    /// 1-based position on the PAM line; 0 when it is about the whole line.
    pub position: usize,
    pub arg: String,
    pub reason: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(
                f,
                "argument {} {:?}: {}",
                self.position, self.arg, self.reason
            )
        }
    }
}

impl std::error::Error for ArgError {}

impl Args {
    /// Parses UTF-8 arguments (convenience for tests and callers that
    /// already have `&str`).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Args, ArgError> {
        let raw: Vec<&[u8]> = args.iter().map(|a| a.as_ref().as_bytes()).collect();
        Self::parse_bytes(&raw)
    }

    /// Parses the raw argument bytes as PAM hands them over (`argv`).
    pub fn parse_bytes(args: &[&[u8]]) -> Result<Args, ArgError> {
        if args.len() > MAX_ARGS {
            return Err(ArgError {
                position: 0,
                arg: String::new(),
                reason: format!("{} arguments, at most {MAX_ARGS} allowed", args.len()),
            });
        }
        let mut out = Args::default();
        for (i, raw) in args.iter().enumerate() {
            let position = i + 1;
            let err = |reason: String| ArgError {
                position,
                arg: String::from_utf8_lossy(&raw[..raw.len().min(MAX_ARG_LEN)]).into_owned(),
                reason,
            };
            if raw.len() > MAX_ARG_LEN {
                return Err(err(format!("longer than {MAX_ARG_LEN} bytes")));
            }
            let arg = std::str::from_utf8(raw).map_err(|_| err("not valid UTF-8".into()))?;
            match arg.split_once('=') {
                None => {
                    let flag = match arg {
                        "audit_only" => &mut out.audit_only,
                        "debug" => &mut out.debug,
                        "require_publickey" => &mut out.require_publickey,
                        "missing_ok" => &mut out.missing_ok,
                        "allow_user" | "allow_group" | "services" => {
                            return Err(err(format!("{arg} needs a value ({arg}=NAME[,NAME])")))
                        }
                        "" => return Err(err("empty argument".into())),
                        _ => return Err(err(format!("unknown argument (known: {KNOWN})"))),
                    };
                    *flag = true;
                }
                Some((key, value)) => {
                    let list = match key {
                        "allow_user" => &mut out.allow_users,
                        "allow_group" => &mut out.allow_groups,
                        "services" => &mut out.services,
                        "audit_only" | "debug" | "require_publickey" | "missing_ok" => {
                            return Err(err(format!("{key} is a flag and takes no value")))
                        }
                        _ => return Err(err(format!("unknown argument (known: {KNOWN})"))),
                    };
                    for name in value.split(',') {
                        check_name(name).map_err(|why| err(format!("{key}: {why}")))?;
                        if !list.iter().any(|n| n == name) {
                            list.push(name.to_owned());
                        }
                    }
                    if list.len() > MAX_NAMES {
                        return Err(err(format!("{key}: more than {MAX_NAMES} names")));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether any exemption is configured.
    pub fn has_exemptions(&self) -> bool {
        !self.allow_users.is_empty() || !self.allow_groups.is_empty()
    }

    /// Whether the module acts for PAM service `service`. An unknown
    /// (empty) service counts as listed: acting is the safe side.
    pub fn acts_for(&self, service: &str) -> bool {
        if service.is_empty() {
            return true;
        }
        if self.services.is_empty() {
            DEFAULT_SERVICES.contains(&service)
        } else {
            self.services.iter().any(|s| s == service)
        }
    }

    /// The services acted for, comma-separated (for log lines).
    pub fn services_list(&self) -> String {
        if self.services.is_empty() {
            DEFAULT_SERVICES.join(",")
        } else {
            self.services.join(",")
        }
    }

    /// The arguments in canonical form (for `debug` lines).
    pub fn canonical(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.allow_users.is_empty() {
            parts.push(format!("allow_user={}", self.allow_users.join(",")));
        }
        if !self.allow_groups.is_empty() {
            parts.push(format!("allow_group={}", self.allow_groups.join(",")));
        }
        if !self.services.is_empty() {
            parts.push(format!("services={}", self.services.join(",")));
        }
        for (on, name) in [
            (self.audit_only, "audit_only"),
            (self.require_publickey, "require_publickey"),
            (self.missing_ok, "missing_ok"),
            (self.debug, "debug"),
        ] {
            if on {
                parts.push(name.to_owned());
            }
        }
        parts.join(" ")
    }
}

/// A user or group name in an `allow_*` list, or a service name in
/// `services=`: not empty, no whitespace, control characters, `,`, `=`,
/// `:` or `/` (none of which NSS names or /etc/pam.d file names contain),
/// bounded length.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name in the list".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("name longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '=' | ':' | '/'))
    {
        return Err(format!("name {name:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, ArgError> {
        Args::parse(args)
    }

    #[test]
    fn no_arguments_is_plain_blocking() {
        assert_eq!(p(&[]).unwrap(), Args::default());
    }

    #[test]
    fn flags() {
        let a = p(&["audit_only", "debug", "require_publickey", "missing_ok"]).unwrap();
        assert!(a.audit_only && a.debug && a.require_publickey && a.missing_ok);
        assert!(!a.has_exemptions());
        // Repeating a flag is harmless.
        assert_eq!(p(&["debug", "debug"]).unwrap(), p(&["debug"]).unwrap());
    }

    #[test]
    fn allow_lists_merge_and_deduplicate() {
        let a = p(&[
            "allow_user=root,ops",
            "allow_group=breakglass",
            "allow_user=ops,alice",
            "allow_group=wheel,admin",
        ])
        .unwrap();
        assert_eq!(a.allow_users, ["root", "ops", "alice"]);
        assert_eq!(a.allow_groups, ["breakglass", "wheel", "admin"]);
        assert!(a.has_exemptions());
        assert_eq!(
            a.canonical(),
            "allow_user=root,ops,alice allow_group=breakglass,wheel,admin"
        );
    }

    #[test]
    fn names_with_dots_at_and_dollar_are_fine() {
        let a = p(&["allow_user=alice.smith@corp.example,HOST$,_svc-1"]).unwrap();
        assert_eq!(
            a.allow_users,
            ["alice.smith@corp.example", "HOST$", "_svc-1"]
        );
    }

    #[test]
    fn unknown_arguments_fail() {
        for bad in [
            "alow_user=bob",
            "use_first_pass",
            "nullok",
            "Debug",
            "audit-only",
        ] {
            let e = p(&["debug", bad]).unwrap_err();
            assert_eq!(e.position, 2, "{bad}");
            assert_eq!(e.arg, bad);
            assert!(e.reason.starts_with("unknown argument"), "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn malformed_values_fail() {
        for (bad, why) in [
            ("allow_user=", "empty name"),
            ("allow_user=a,,b", "empty name"),
            ("allow_user=a,", "empty name"),
            ("allow_group=,x", "empty name"),
            ("allow_user", "needs a value"),
            ("allow_group", "needs a value"),
            ("debug=1", "is a flag"),
            ("audit_only=yes", "is a flag"),
            ("require_publickey=", "is a flag"),
            ("allow_user=a b", "contains ' '"),
            ("allow_user=a\tb", "contains '\\t'"),
            ("allow_user=a\nb", "contains '\\n'"),
            ("allow_group=a=b", "contains '='"),
            ("allow_group=a:b", "contains ':'"),
            ("allow_user=../x", "contains '/'"),
            ("", "empty argument"),
        ] {
            let e = p(&[bad]).unwrap_err();
            assert_eq!(e.position, 1);
            assert!(e.reason.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn services_default_to_sshd_and_list_others() {
        let a = p(&[]).unwrap();
        assert!(a.acts_for("sshd"));
        for other in [
            "sudo",
            "su",
            "login",
            "sshd-kbd",
            "SSHD",
            "sshd ",
            "common-auth",
        ] {
            assert!(!a.acts_for(other), "{other:?}");
        }
        assert_eq!(a.services_list(), "sshd");
        let a = p(&["services=sshd-kbd,sshd", "services=sshd,login"]).unwrap();
        assert_eq!(a.services, ["sshd-kbd", "sshd", "login"]);
        assert!(a.acts_for("sshd") && a.acts_for("sshd-kbd") && a.acts_for("login"));
        assert!(!a.acts_for("sudo"));
        assert_eq!(a.canonical(), "services=sshd-kbd,sshd,login");
        // A list without sshd leaves sshd alone.
        let a = p(&["services=sshd-kbd"]).unwrap();
        assert!(!a.acts_for("sshd") && a.acts_for("sshd-kbd"));
        // No service name (unset item): act, the safe side.
        assert!(a.acts_for(""));
    }

    #[test]
    fn bad_services_fail() {
        for (bad, why) in [
            ("services", "needs a value"),
            ("services=", "empty name"),
            ("services=sshd,", "empty name"),
            ("services=sshd sudo", "contains ' '"),
            ("services=../sshd", "contains '/'"),
            ("service=sshd", "unknown argument"),
        ] {
            let e = p(&["debug", bad]).unwrap_err();
            assert_eq!(e.position, 2, "{bad}");
            assert!(e.reason.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn non_utf8_argument_is_reported_lossily() {
        let e = Args::parse_bytes(&[b"debug", b"allow_user=b\xffb"]).unwrap_err();
        assert_eq!(e.position, 2);
        assert_eq!(e.arg, "allow_user=b\u{fffd}b");
        assert_eq!(e.reason, "not valid UTF-8");
    }

    #[test]
    fn bounds() {
        let many = vec!["debug"; MAX_ARGS + 1];
        assert_eq!(p(&many).unwrap_err().position, 0);
        let long = format!("allow_user={}", "a".repeat(MAX_ARG_LEN));
        let e = p(&[&long]).unwrap_err();
        assert!(e.reason.contains("longer than"), "{e}");
        assert!(e.arg.len() <= MAX_ARG_LEN);
        let name = format!("allow_user={}", "a".repeat(MAX_NAME_LEN + 1));
        assert!(p(&[&name]).unwrap_err().reason.contains("name longer"));
        let list: Vec<String> = (0..=MAX_NAMES).map(|i| format!("u{i}")).collect();
        let arg = format!("allow_user={}", list.join(","));
        assert!(p(&[&arg]).unwrap_err().reason.contains("more than"));
    }

    #[test]
    fn bounds_are_inclusive() {
        // Exactly at every bound is still accepted.
        assert!(p(&vec!["debug"; MAX_ARGS]).is_ok());
        let name = "a".repeat(MAX_NAME_LEN);
        let a = p(&[&format!("allow_user={name}")]).unwrap();
        assert_eq!(a.allow_users, [name]);
        let list: Vec<String> = (0..MAX_NAMES).map(|i| format!("u{i}")).collect();
        let a = p(&[&format!("allow_group={}", list.join(","))]).unwrap();
        assert_eq!(a.allow_groups.len(), MAX_NAMES);
        // MAX_ARG_LEN bytes exactly: within the bound (then refused only
        // because the one name in it is too long for a name).
        let arg = format!(
            "allow_user={}",
            "a".repeat(MAX_ARG_LEN - "allow_user=".len())
        );
        assert_eq!(arg.len(), MAX_ARG_LEN);
        let e = p(&[&arg]).unwrap_err();
        assert!(e.reason.contains("name longer"), "{e}");
        assert_eq!(e.arg, arg);
    }

    #[test]
    fn canonical_lists_every_flag_in_a_fixed_order() {
        let a = p(&["debug", "missing_ok", "require_publickey", "audit_only"]).unwrap();
        assert_eq!(
            a.canonical(),
            "audit_only require_publickey missing_ok debug"
        );
        assert_eq!(p(&["missing_ok"]).unwrap().canonical(), "missing_ok");
        assert_eq!(Args::default().canonical(), "");
        assert!(p(&["allow_group=g"]).unwrap().has_exemptions());
        assert!(!p(&["audit_only"]).unwrap().has_exemptions());
    }

    #[test]
    fn errors_say_where() {
        let e = p(&["debug", "nullok"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("argument 2 \"nullok\": unknown argument"),
            "{e}"
        );
        let many = vec!["debug"; MAX_ARGS + 1];
        let e = p(&many).unwrap_err();
        assert_eq!(e.to_string(), e.reason);
        assert!(e.reason.starts_with("65 arguments"), "{e}");
    }
}
