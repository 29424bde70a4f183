//! What pam_keyward answers, and the one log record that explains it (pure).
//!
//! The FFI layer gathers a [`Context`] from the PAM handle, parses the
//! arguments, and asks here; NSS group membership comes in through the
//! [`Accounts`] trait so the decisions are unit-tested with a fake.

use crate::audit::{Record, Severity};

use super::args::{ArgError, Args};
use super::authinfo::AuthInfo;

/// The PAM callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Authenticate,
    Setcred,
    Account,
    OpenSession,
    CloseSession,
    Chauthtok,
}

impl Stage {
    /// The answer on a configuration error or an internal fault: refuse
    /// wherever refusing protects something; setcred must never fail
    /// (sshd treats a failing setcred as fatal after keyboard-interactive).
    pub fn fail_closed(self) -> Ret {
        match self {
            Stage::Setcred => Ret::Ignore,
            _ => Ret::ServiceErr,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Authenticate => "auth",
            Stage::Setcred => "setcred",
            Stage::Account => "account",
            Stage::OpenSession => "open_session",
            Stage::CloseSession => "close_session",
            Stage::Chauthtok => "chauthtok",
        }
    }
}

/// PAM return codes this module uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    Success,
    Ignore,
    AuthErr,
    PermDenied,
    ServiceErr,
}

impl Ret {
    pub fn name(self) -> &'static str {
        match self {
            Ret::Success => "PAM_SUCCESS",
            Ret::Ignore => "PAM_IGNORE",
            Ret::AuthErr => "PAM_AUTH_ERR",
            Ret::PermDenied => "PAM_PERM_DENIED",
            Ret::ServiceErr => "PAM_SERVICE_ERR",
        }
    }
}

/// An answer and what to log about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ret: Ret,
    /// None: nothing to log.
    pub log: Option<(Severity, Record)>,
}

impl Verdict {
    fn silent(ret: Ret) -> Verdict {
        Verdict { ret, log: None }
    }

    fn logged(ret: Ret, severity: Severity, record: Record) -> Verdict {
        Verdict {
            ret,
            log: Some((severity, record)),
        }
    }

    /// The `decision=` of the record, if any.
    pub fn decision(&self) -> Option<&str> {
        self.log.as_ref().and_then(|(_, r)| r.get("decision"))
    }
}

/// PAM items of the current transaction, already made printable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub service: String,
    /// PAM_USER; None when unset.
    pub user: Option<String>,
    /// PAM_USER was not valid UTF-8 (`user` holds a lossy copy that must
    /// never match an exemption).
    pub user_lossy: bool,
    pub rhost: String,
    pub tty: String,
}

impl Context {
    /// The user name usable for exemption matching.
    fn user_for_matching(&self) -> Option<&str> {
        if self.user_lossy {
            None
        } else {
            self.user.as_deref()
        }
    }

    /// `decision=D user= rhost= service= tty=`: the head of every record.
    fn record(&self, decision: &str) -> Record {
        Record::new()
            .with("decision", decision)
            .with("user", self.user.as_deref().unwrap_or(""))
            .with("rhost", &self.rhost)
            .with("service", &self.service)
            .with("tty", &self.tty)
    }
}

/// NSS lookups needed for `allow_group=`.
pub trait Accounts {
    /// Every group id of `user`: primary and supplementary
    /// (getpwnam + getgrouplist). Ok(None): NSS does not know the user.
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, String>;
    /// The id of `group` (getgrnam). Ok(None): no such group.
    fn group_gid(&self, group: &str) -> Result<Option<u32>, String>;
}

/// Why a user is exempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exemption {
    /// Named in `allow_user=`.
    User,
    /// Member of this `allow_group=` group.
    Group(String),
}

impl Exemption {
    /// `user` or `group:NAME` (the `exempt_by=` field).
    pub fn label(&self) -> String {
        match self {
            Exemption::User => "user".into(),
            Exemption::Group(g) => format!("group:{g}"),
        }
    }
}

/// The result of matching a user against the exemptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExemptCheck {
    pub exemption: Option<Exemption>,
    /// Problems an admin should see (lookup errors, groups that do not
    /// exist): always logged, as `note=`.
    pub notes: Vec<String>,
    /// How the answer was reached: logged with `debug`, as `detail=`.
    pub detail: Vec<String>,
}

/// Matches `user` against `allow_user=` and `allow_group=`. Any lookup
/// failure means "not exempt" (fail closed) plus a note.
pub fn check_exemption(args: &Args, user: Option<&str>, db: &dyn Accounts) -> ExemptCheck {
    let mut out = ExemptCheck::default();
    if !args.has_exemptions() {
        return out;
    }
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        out.detail
            .push("no usable user name (unset, empty or not UTF-8)".into());
        return out;
    };
    if args.allow_users.iter().any(|u| u == user) {
        out.exemption = Some(Exemption::User);
        return out;
    }
    if args.allow_groups.is_empty() {
        out.detail.push("not in allow_user".into());
        return out;
    }
    let gids = match db.user_gids(user) {
        Ok(Some(gids)) => gids,
        Ok(None) => {
            out.detail.push("user unknown to NSS".into());
            return out;
        }
        Err(e) => {
            out.notes.push(format!("groups of {user}: {e}"));
            return out;
        }
    };
    for group in &args.allow_groups {
        match db.group_gid(group) {
            Ok(Some(gid)) if gids.contains(&gid) => {
                out.exemption = Some(Exemption::Group(group.clone()));
                return out;
            }
            Ok(Some(gid)) => out.detail.push(format!("not in {group} ({gid})")),
            Ok(None) => out
                .notes
                .push(format!("allow_group {group}: no such group")),
            Err(e) => out.notes.push(format!("allow_group {group}: {e}")),
        }
    }
    out
}

fn add_notes(rec: &mut Record, args: &Args, check: &ExemptCheck) {
    if let Some(e) = &check.exemption {
        rec.push("exempt_by", e.label());
    }
    for n in &check.notes {
        rec.push("note", n);
    }
    if args.debug {
        for d in &check.detail {
            rec.push("detail", d);
        }
    }
}

fn add_debug(rec: &mut Record, args: &Args, ret: Ret) {
    if args.debug {
        rec.push("args", args.canonical());
        rec.push("ret", ret.name());
    }
}

/// `pam_sm_authenticate`: only password and keyboard-interactive logins
/// get here. Block (`PAM_AUTH_ERR`), or let an exempt user through to the
/// next module (`PAM_IGNORE`); `audit_only` only says what it would do.
pub fn authenticate(args: &Args, ctx: &Context, db: &dyn Accounts) -> Verdict {
    let check = check_exemption(args, ctx.user_for_matching(), db);
    let (decision, ret) = match (&check.exemption, args.audit_only) {
        (Some(_), _) => ("exempt", Ret::Ignore),
        (None, true) => ("would-block", Ret::Ignore),
        (None, false) => ("block", Ret::AuthErr),
    };
    let mut rec = ctx.record(decision);
    if decision == "block" {
        // The line must say why on its own: an admin reads it in auth.log.
        rec.push(
            "reason",
            "password and keyboard-interactive logins are refused (keys only); user not exempt by allow_user/allow_group",
        );
    }
    if args.audit_only {
        rec.push("mode", "audit_only");
    }
    add_notes(&mut rec, args, &check);
    add_debug(&mut rec, args, ret);
    let severity = if check.notes.is_empty() {
        Severity::Notice
    } else {
        Severity::Warning
    };
    Verdict::logged(ret, severity, rec)
}

/// `pam_sm_open_session`: log which key opened the session; with
/// `require_publickey`, refuse (`PAM_PERM_DENIED`) a session that no
/// public key authenticated, unless the user is exempt.
///
/// `auth_info` is `SSH_AUTH_INFO_0` from the PAM environment (None when
/// unset: not sshd, or sshd without PAM).
pub fn open_session(
    args: &Args,
    ctx: &Context,
    auth_info: Option<&str>,
    db: &dyn Accounts,
) -> Verdict {
    let info = auth_info.map(AuthInfo::parse);
    let has_key = info.as_ref().is_some_and(AuthInfo::has_publickey);
    let missing_ok = info.is_none() && args.missing_ok;

    let mut check = ExemptCheck::default();
    let (decision, ret, severity) = if has_key || !args.require_publickey || missing_ok {
        ("session", Ret::Success, Severity::Info)
    } else {
        check = check_exemption(args, ctx.user_for_matching(), db);
        match (&check.exemption, args.audit_only) {
            (Some(_), _) => ("exempt", Ret::Success, Severity::Notice),
            (None, true) => ("would-refuse", Ret::Success, Severity::Notice),
            (None, false) => ("refuse", Ret::PermDenied, Severity::Warning),
        }
    };

    let mut rec = ctx.record(decision);
    match &info {
        None => {
            rec.push("methods", "unknown");
            rec.push("auth_info", "missing");
        }
        Some(info) => {
            rec.push("methods", info.labels());
            for m in info.publickeys() {
                let Some(key) = &m.key else {
                    rec.push("key_error", "no key in SSH_AUTH_INFO_0");
                    continue;
                };
                if let Some(fp) = &key.fingerprint {
                    rec.push("fp", fp);
                }
                rec.push("key_type", &key.key_type);
                if let Some(c) = &key.cert {
                    rec.push("cert_id", &c.key_id);
                    rec.push("cert_serial", c.serial);
                    rec.push("ca_fp", &c.ca_fingerprint);
                }
                if let Some(e) = &key.error {
                    rec.push("key_error", e);
                }
            }
            if let Some(t) = &info.truncated {
                rec.push("auth_info", "truncated");
                rec.push("note", format!("SSH_AUTH_INFO_0 not parsed: {t}"));
            }
        }
    }
    if decision != "session" {
        let why = match &info {
            None => "SSH_AUTH_INFO_0 not set (not sshd? add missing_ok for other services)",
            Some(i) if i.publickeys().next().is_some() => {
                "no publickey method with a parseable key in SSH_AUTH_INFO_0"
            }
            Some(_) => "no publickey method in SSH_AUTH_INFO_0",
        };
        rec.push("reason", why);
    } else if missing_ok && args.require_publickey {
        rec.push("reason", "missing_ok");
    }
    if args.audit_only {
        rec.push("mode", "audit_only");
    }
    add_notes(&mut rec, args, &check);
    add_debug(&mut rec, args, ret);
    Verdict::logged(ret, severity, rec)
}

/// Callbacks with nothing to decide: account, setcred, close_session,
/// chauthtok. Never failing (valid arguments).
pub fn passive(stage: Stage) -> Verdict {
    match stage {
        Stage::CloseSession => Verdict::silent(Ret::Success),
        _ => Verdict::silent(Ret::Ignore),
    }
}

/// A PAM service the module is not meant for (not in `services=`,
/// default sshd): PAM_IGNORE from every callback, so a line in a stack
/// shared with `login`, `su` or `sudo` changes nothing there. Silent unless
/// `debug` (these services run often: no record each time).
pub fn other_service(args: &Args, ctx: &Context, stage: Stage) -> Option<Verdict> {
    if args.acts_for(&ctx.service) {
        return None;
    }
    let ret = Ret::Ignore;
    if !args.debug {
        return Some(Verdict::silent(ret));
    }
    let rec = ctx
        .record("skip")
        .with(
            "reason",
            format!("service not in services={}", args.services_list()),
        )
        .with("stage", stage.name())
        .with("ret", ret.name());
    Some(Verdict::logged(ret, Severity::Info, rec))
}

/// Unknown or malformed arguments: logged precisely, fail closed.
pub fn bad_args(err: &ArgError, ctx: &Context, stage: Stage) -> Verdict {
    let ret = stage.fail_closed();
    let mut rec = ctx.record("error");
    rec.push("reason", format!("bad module argument: {}", err.reason));
    if err.position > 0 {
        rec.push("arg", &err.arg);
        rec.push("position", err.position);
    }
    rec.push("ret", ret.name());
    Verdict::logged(ret, Severity::Err, rec)
}

/// A panic was caught in a callback: fail closed, say so.
pub fn internal_error(ctx: &Context, stage: Stage) -> Verdict {
    let ret = stage.fail_closed();
    let rec = ctx
        .record("error")
        .with("reason", "internal error (panic caught)")
        .with("ret", ret.name());
    Verdict::logged(ret, Severity::Err, rec)
}

#[cfg(test)]
mod tests {
    use super::super::authinfo::tests::{CA_FP, CERT, EC, EC_FP, ED, ED_FP};
    use super::*;
    use std::collections::HashMap;

    /// users: name → gids; groups: name → gid. `fail` makes every
    /// lookup fail.
    #[derive(Default)]
    struct Fake {
        users: HashMap<&'static str, Vec<u32>>,
        groups: HashMap<&'static str, u32>,
        fail: bool,
    }

    impl Accounts for Fake {
        fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, String> {
            if self.fail {
                return Err("NSS unavailable".into());
            }
            Ok(self.users.get(user).cloned())
        }
        fn group_gid(&self, group: &str) -> Result<Option<u32>, String> {
            if self.fail {
                return Err("NSS unavailable".into());
            }
            Ok(self.groups.get(group).copied())
        }
    }

    fn db() -> Fake {
        let mut f = Fake::default();
        // alice: primary 1000; bob: primary 1001, supplementary 27 (breakglass)
        f.users.insert("alice", vec![1000]);
        f.users.insert("bob", vec![1001, 27]);
        f.users.insert("carol", vec![27]); // primary group breakglass
        f.groups.insert("alice", 1000);
        f.groups.insert("breakglass", 27);
        f.groups.insert("wheel", 10);
        f
    }

    fn ctx(user: &str) -> Context {
        Context {
            service: "sshd".into(),
            user: Some(user.into()),
            user_lossy: false,
            rhost: "192.0.2.7".into(),
            tty: "ssh".into(),
        }
    }

    fn args(a: &[&str]) -> Args {
        Args::parse(a).unwrap()
    }

    fn line(v: &Verdict) -> String {
        v.log.as_ref().unwrap().1.to_string()
    }

    #[test]
    fn blocks_everyone_by_default() {
        let v = authenticate(&args(&[]), &ctx("alice"), &db());
        assert_eq!(v.ret, Ret::AuthErr);
        assert_eq!(
            line(&v),
            "decision=block user=alice rhost=192.0.2.7 service=sshd tty=ssh \
             reason=\"password and keyboard-interactive logins are refused (keys only); \
             user not exempt by allow_user/allow_group\""
        );
        assert_eq!(v.log.as_ref().unwrap().0, Severity::Notice);
    }

    #[test]
    fn exempt_by_name() {
        let a = args(&["allow_user=root,alice"]);
        let v = authenticate(&a, &ctx("alice"), &db());
        assert_eq!(v.ret, Ret::Ignore);
        assert_eq!(
            line(&v),
            "decision=exempt user=alice rhost=192.0.2.7 service=sshd tty=ssh exempt_by=user"
        );
        // Exact match only.
        for other in ["Alice", "alice ", "alic", "alice2", ""] {
            assert_eq!(
                authenticate(&a, &ctx(other), &db()).ret,
                Ret::AuthErr,
                "{other:?}"
            );
        }
    }

    #[test]
    fn exempt_by_supplementary_and_primary_group() {
        let a = args(&["allow_group=wheel,breakglass"]);
        for u in ["bob", "carol"] {
            let v = authenticate(&a, &ctx(u), &db());
            assert_eq!(v.ret, Ret::Ignore, "{u}");
            assert_eq!(v.decision(), Some("exempt"));
            assert!(
                line(&v).ends_with("exempt_by=group:breakglass"),
                "{}",
                line(&v)
            );
        }
        let v = authenticate(&a, &ctx("alice"), &db());
        assert_eq!(v.ret, Ret::AuthErr);
        // Unknown users are blocked, quietly.
        let v = authenticate(&a, &ctx("mallory"), &db());
        assert_eq!(v.ret, Ret::AuthErr);
        assert!(!line(&v).contains("note="), "{}", line(&v));
    }

    #[test]
    fn missing_group_and_lookup_failures_fail_closed_with_a_note() {
        let a = args(&["allow_group=breakglas"]);
        let v = authenticate(&a, &ctx("bob"), &db());
        assert_eq!(v.ret, Ret::AuthErr);
        assert!(line(&v).contains("note=\"allow_group breakglas: no such group\""));
        assert_eq!(v.log.as_ref().unwrap().0, Severity::Warning);

        let mut broken = db();
        broken.fail = true;
        let v = authenticate(&args(&["allow_group=breakglass"]), &ctx("bob"), &broken);
        assert_eq!(v.ret, Ret::AuthErr);
        assert!(line(&v).contains("note=\"groups of bob: NSS unavailable\""));
        // allow_user needs no lookup, so it still works.
        let v = authenticate(
            &args(&["allow_group=breakglass", "allow_user=bob"]),
            &ctx("bob"),
            &broken,
        );
        assert_eq!(v.ret, Ret::Ignore);
    }

    #[test]
    fn unusable_user_names_are_never_exempt() {
        let a = args(&["allow_user=\u{fffd}", "allow_group=breakglass"]);
        let mut c = ctx("\u{fffd}");
        c.user_lossy = true;
        assert_eq!(authenticate(&a, &c, &db()).ret, Ret::AuthErr);
        let mut c = ctx("");
        c.user = None;
        let v = authenticate(&a, &c, &db());
        assert_eq!(v.ret, Ret::AuthErr);
        assert!(line(&v).contains("user=\"\""));
    }

    #[test]
    fn audit_only_blocks_nothing() {
        let a = args(&["audit_only", "allow_user=alice"]);
        let v = authenticate(&a, &ctx("bob"), &db());
        assert_eq!(v.ret, Ret::Ignore);
        assert_eq!(
            line(&v),
            "decision=would-block user=bob rhost=192.0.2.7 service=sshd tty=ssh mode=audit_only"
        );
        let v = authenticate(&a, &ctx("alice"), &db());
        assert_eq!(v.ret, Ret::Ignore);
        assert_eq!(v.decision(), Some("exempt"));
    }

    #[test]
    fn debug_adds_detail() {
        let a = args(&["debug", "allow_group=wheel"]);
        let v = authenticate(&a, &ctx("bob"), &db());
        let l = line(&v);
        assert!(l.contains("detail=\"not in wheel (10)\""), "{l}");
        assert!(l.contains("args=\"allow_group=wheel debug\""), "{l}");
        assert!(l.ends_with("ret=PAM_AUTH_ERR"), "{l}");
    }

    #[test]
    fn hostile_values_cannot_forge_lines() {
        let mut c = ctx("x\ndecision=exempt user=root");
        c.rhost = "h\u{7}ost".into();
        let v = authenticate(&args(&[]), &c, &db());
        let l = line(&v);
        assert!(!l.chars().any(char::is_control), "{l}");
        assert!(l.starts_with("decision=block user=\"x\\x0adecision=exempt user=root\""));
    }

    #[test]
    fn session_logs_the_key() {
        let a = args(&["require_publickey"]);
        let v = open_session(&a, &ctx("alice"), Some(&format!("publickey {ED}\n")), &db());
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(
            line(&v),
            format!(
                "decision=session user=alice rhost=192.0.2.7 service=sshd tty=ssh \
                 methods=publickey fp={ED_FP} key_type=ssh-ed25519"
            )
        );
        assert_eq!(v.log.as_ref().unwrap().0, Severity::Info);
    }

    #[test]
    fn session_certificate_and_second_factor() {
        let a = args(&["require_publickey"]);
        let v = open_session(
            &a,
            &ctx("alice"),
            Some(&format!("publickey {CERT}\nkeyboard-interactive/pam\n")),
            &db(),
        );
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(
            line(&v),
            format!(
                "decision=session user=alice rhost=192.0.2.7 service=sshd tty=ssh \
                 methods=publickey,keyboard-interactive/pam fp={ED_FP} \
                 key_type=ssh-ed25519-cert-v01@openssh.com cert_id=\"alice@corp laptop\" \
                 cert_serial=42 ca_fp={CA_FP}"
            )
        );
        // Two keys: both named, in order.
        let v = open_session(
            &a,
            &ctx("alice"),
            Some(&format!("publickey {ED}\npublickey {EC}\n")),
            &db(),
        );
        let r = &v.log.as_ref().unwrap().1;
        assert_eq!(r.get("fp"), Some(ED_FP));
        assert!(line(&v).contains(&format!("fp={EC_FP} key_type=ecdsa-sha2-nistp256")));
    }

    #[test]
    fn session_without_publickey_is_refused() {
        let a = args(&["require_publickey"]);
        for (info, methods) in [
            ("password\n", "password"),
            ("keyboard-interactive/pam\n", "keyboard-interactive/pam"),
            ("", "\"\""),
        ] {
            let v = open_session(&a, &ctx("alice"), Some(info), &db());
            assert_eq!(v.ret, Ret::PermDenied, "{info:?}");
            assert_eq!(
                line(&v),
                format!(
                    "decision=refuse user=alice rhost=192.0.2.7 service=sshd tty=ssh \
                     methods={methods} reason=\"no publickey method in SSH_AUTH_INFO_0\""
                )
            );
            assert_eq!(v.log.as_ref().unwrap().0, Severity::Warning);
        }
    }

    #[test]
    fn session_needs_a_key_that_parses() {
        // The word `publickey` alone proves nothing: SSH_AUTH_INFO_0 can be
        // rewritten by a pam_env user_readenv=1 line placed too early.
        let a = args(&["require_publickey"]);
        for v in ["publickey ssh-foo AAAA\n", "publickey\n"] {
            let v = open_session(&a, &ctx("alice"), Some(v), &db());
            assert_eq!(v.ret, Ret::PermDenied);
            let l = line(&v);
            assert!(l.contains("key_error="), "{l}");
            assert!(!l.contains("fp="), "{l}");
            assert!(l.contains("with a parseable key"), "{l}");
        }
    }

    #[test]
    fn session_missing_variable() {
        let v = open_session(&args(&["require_publickey"]), &ctx("alice"), None, &db());
        assert_eq!(v.ret, Ret::PermDenied);
        assert!(
            line(&v).contains("methods=unknown auth_info=missing reason=\"SSH_AUTH_INFO_0 not set")
        );
        let v = open_session(
            &args(&["require_publickey", "missing_ok"]),
            &ctx("alice"),
            None,
            &db(),
        );
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(v.decision(), Some("session"));
        assert!(line(&v).ends_with("auth_info=missing reason=missing_ok"));
        // missing_ok does not excuse a present variable without a key.
        let v = open_session(
            &args(&["require_publickey", "missing_ok"]),
            &ctx("alice"),
            Some("password\n"),
            &db(),
        );
        assert_eq!(v.ret, Ret::PermDenied);
    }

    #[test]
    fn session_exempt_and_audit_only() {
        let a = args(&["require_publickey", "allow_group=breakglass"]);
        let v = open_session(&a, &ctx("bob"), Some("password\n"), &db());
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(v.decision(), Some("exempt"));
        assert!(
            line(&v).ends_with("exempt_by=group:breakglass"),
            "{}",
            line(&v)
        );
        let v = open_session(&a, &ctx("alice"), Some("password\n"), &db());
        assert_eq!(v.ret, Ret::PermDenied);

        let a = args(&["require_publickey", "audit_only"]);
        let v = open_session(&a, &ctx("alice"), Some("password\n"), &db());
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(v.decision(), Some("would-refuse"));
        assert!(line(&v).contains("mode=audit_only"));
    }

    #[test]
    fn session_without_require_publickey_only_logs() {
        let v = open_session(&args(&[]), &ctx("alice"), Some("password\n"), &db());
        assert_eq!(v.ret, Ret::Success);
        assert_eq!(v.decision(), Some("session"));
        let v = open_session(&args(&[]), &ctx("alice"), None, &db());
        assert_eq!(v.ret, Ret::Success);
    }

    #[test]
    fn bad_arguments_fail_closed_except_setcred() {
        let err = Args::parse(&["debug", "alow_user=bob"]).unwrap_err();
        for stage in [
            Stage::Authenticate,
            Stage::Account,
            Stage::OpenSession,
            Stage::CloseSession,
            Stage::Chauthtok,
        ] {
            let v = bad_args(&err, &ctx("alice"), stage);
            assert_eq!(v.ret, Ret::ServiceErr, "{stage:?}");
            assert_eq!(v.log.as_ref().unwrap().0, Severity::Err);
            assert!(
                line(&v).starts_with("decision=error user=alice"),
                "{}",
                line(&v)
            );
            assert!(
                line(&v).contains("reason=\"bad module argument: unknown argument (known: "),
                "{}",
                line(&v)
            );
            assert!(
                line(&v).ends_with("arg=\"alow_user=bob\" position=2 ret=PAM_SERVICE_ERR"),
                "{}",
                line(&v)
            );
        }
        let v = bad_args(&err, &ctx("alice"), Stage::Setcred);
        assert_eq!(v.ret, Ret::Ignore);
        assert_eq!(internal_error(&ctx("a"), Stage::Setcred).ret, Ret::Ignore);
        assert_eq!(
            internal_error(&ctx("a"), Stage::Authenticate).ret,
            Ret::ServiceErr
        );
    }

    #[test]
    fn other_services_are_ignored_quietly() {
        let mut c = ctx("alice");
        for stage in [
            Stage::Authenticate,
            Stage::Setcred,
            Stage::Account,
            Stage::OpenSession,
            Stage::CloseSession,
            Stage::Chauthtok,
        ] {
            for service in ["sudo", "su", "login", "sshd-kbd"] {
                c.service = service.into();
                let v = other_service(&args(&["require_publickey"]), &c, stage)
                    .unwrap_or_else(|| panic!("{service} {stage:?} acted"));
                assert_eq!(v, Verdict::silent(Ret::Ignore), "{service}");
            }
            c.service = "sshd".into();
            assert_eq!(other_service(&args(&[]), &c, stage), None);
            // unknown service: act (fail closed)
            c.service = String::new();
            assert_eq!(other_service(&args(&[]), &c, stage), None);
        }
        c.service = "sshd-kbd".into();
        let a = args(&["services=sshd,sshd-kbd"]);
        assert_eq!(other_service(&a, &c, Stage::Authenticate), None);
        assert_eq!(authenticate(&a, &c, &db()).ret, Ret::AuthErr);
        c.service = "sudo".into();
        let v = other_service(&args(&["debug"]), &c, Stage::Authenticate).unwrap();
        assert_eq!(v.ret, Ret::Ignore);
        assert_eq!(v.log.as_ref().unwrap().0, Severity::Info);
        assert_eq!(
            line(&v),
            "decision=skip user=alice rhost=192.0.2.7 service=sudo tty=ssh \
             reason=\"service not in services=sshd\" stage=auth ret=PAM_IGNORE"
        );
    }

    #[test]
    fn passive_callbacks_never_fail() {
        for s in [Stage::Setcred, Stage::Account, Stage::Chauthtok] {
            assert_eq!(passive(s).ret, Ret::Ignore);
        }
        assert_eq!(passive(Stage::CloseSession).ret, Ret::Success);
        assert!(passive(Stage::Account).log.is_none());
    }

    #[test]
    fn stage_names_are_the_pam_function_names() {
        for (stage, name) in [
            (Stage::Authenticate, "auth"),
            (Stage::Setcred, "setcred"),
            (Stage::Account, "account"),
            (Stage::OpenSession, "open_session"),
            (Stage::CloseSession, "close_session"),
            (Stage::Chauthtok, "chauthtok"),
        ] {
            assert_eq!(stage.name(), name);
        }
    }

    #[test]
    fn a_whole_line_argument_error_names_no_argument() {
        let e = ArgError {
            position: 0,
            arg: String::new(),
            reason: "65 arguments, at most 64 allowed".into(),
        };
        let v = bad_args(&e, &ctx("alice"), Stage::Authenticate);
        assert_eq!(v.ret, Ret::ServiceErr);
        let l = line(&v);
        assert!(
            l.contains("reason=\"bad module argument: 65 arguments"),
            "{l}"
        );
        assert!(!l.contains("arg=") && !l.contains("position="), "{l}");
        let e = ArgError { position: 2, ..e };
        let l = line(&bad_args(&e, &ctx("alice"), Stage::Account));
        assert!(l.contains("position=2"), "{l}");
    }
}
