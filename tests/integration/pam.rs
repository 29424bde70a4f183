//! pam_keyward.so through the real libpam.
//!
//! - pamtester under libpam_wrapper: the service file lives in a private
//!   directory (`PAM_WRAPPER_SERVICE_DIR`) and names the module by absolute
//!   path; the machine's /etc/pam.d is never read or changed.
//!   `PAM_WRAPPER_USE_SYSLOG=1` sends the module's pam_syslog(3) lines to the
//!   real syslog(3), i.e. /dev/log: pamtester runs in its own mount
//!   namespace where /dev/log is a private rsyslog's socket
//!   ([`PrivateDevLog`]), so every log assertion runs on every machine and
//!   the machine's own /dev/log is never touched.
//! - A real sshd (UsePAM, password and keyboard-interactive on) started in a
//!   private mount namespace where a test stack is bind-mounted over
//!   /etc/pam.d/sshd and /dev/log is the test's private rsyslog, with
//!   keyward as its AuthorizedKeysCommand.
//!
//! The stacks used with pamtester tell PAM_IGNORE apart from PAM_SUCCESS:
//! `auth [ignore=1 success=bad default=die] pam_keyward.so …` followed by
//! `pam_deny` (skipped only on ignore) and `pam_permit`. So "authenticated"
//! means exactly "pam_keyward returned PAM_IGNORE", and any other code is
//! what pamtester prints (pam_strerror).

use std::fs::File;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::support::rsyslog::LogLine;
use crate::support::sshkeys::fingerprint_of_line;
use crate::support::*;

const RHOST: &str = "192.0.2.7";
const LOG_WAIT: Duration = Duration::from_secs(10);

// pam_strerror(3) texts pamtester prints.
const AUTH_ERR: &str = "Authentication failure";
const SERVICE_ERR: &str = "Error in service module";
const PERM_DENIED: &str = "Permission denied";

fn built_module() -> PathBuf {
    built_pam_module()
}

/// Copies the module into `dir` (root-owned, 0644): sshd and pamtester load
/// a copy that a concurrent `cargo build` cannot rewrite under them.
fn install_module(dir: &TestDir) -> PathBuf {
    let dst = dir.join("pam_keyward.so");
    must(
        Command::new("install")
            .args(["-m", "644", "-o", "root", "-g", "root"])
            .arg(built_module())
            .arg(&dst),
    );
    dst
}

/// Serialises the PAM tests of concurrent test processes (an flock held
/// while any PAM test of this process runs): libpam_wrapper's runtime
/// directories race between concurrent pamtesters (see pam_stress.rs), and
/// these tests do not retry.
static SERIAL: Mutex<(usize, Option<File>)> = Mutex::new((0, None));
const SERIAL_LOCK: &str = "/run/keyward-tests-pam.lock";

struct SerialGuard;

impl SerialGuard {
    fn acquire() -> SerialGuard {
        let mut st = lock(&SERIAL);
        if st.0 == 0 {
            let f = File::create(SERIAL_LOCK).expect(SERIAL_LOCK);
            // SAFETY: a valid fd; blocks until the other process is done.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            assert_eq!(rc, 0, "flock {SERIAL_LOCK}");
            st.1 = Some(f);
        }
        st.0 += 1;
        SerialGuard
    }
}

impl Drop for SerialGuard {
    fn drop(&mut self) {
        let mut st = lock(&SERIAL);
        st.0 -= 1;
        if st.0 == 0 {
            st.1 = None; // closing the file releases the flock
        }
    }
}

/// The log of one PAM test: a private rsyslog that pamtester and sshd see
/// as /dev/log in their mount namespace (so the log checks always run, and
/// each test reads only its own records), plus the PAM tests' lock.
struct PamLog {
    log: PrivateDevLog,
    _serial: SerialGuard,
}

impl PamLog {
    fn acquire() -> PamLog {
        let serial = SerialGuard::acquire();
        PamLog {
            log: PrivateDevLog::start(),
            _serial: serial,
        }
    }
}

impl Deref for PamLog {
    type Target = PrivateDevLog;
    fn deref(&self) -> &PrivateDevLog {
        &self.log
    }
}

/// Messages pam_keyward wrote about `user`, in order.
fn pam_lines(log: &PrivateDevLog, user: &str) -> Vec<LogLine> {
    log.lines()
        .into_iter()
        .filter(|l| l.msg.starts_with("pam_keyward(") && l.field("user").as_deref() == Some(user))
        .collect()
}

/// Waits for the first pam_keyward line about `user` with `decision`.
fn wait_decision(log: &PrivateDevLog, user: &str, decision: &str) -> Option<LogLine> {
    log.wait_for(LOG_WAIT, |l| {
        l.msg.starts_with("pam_keyward(")
            && l.field("user").as_deref() == Some(user)
            && l.field("decision").as_deref() == Some(decision)
    })
}

fn dump(log: &PrivateDevLog) -> String {
    log.text()
}

// ---------------------------------------------------------------------------
// pamtester + libpam_wrapper
// ---------------------------------------------------------------------------

/// A private PAM service for pamtester: `<dir>/svc/<name>`, with `{MOD}` in
/// the stack text replaced by the module's absolute path.
struct PamService {
    dir: TestDir,
    name: String,
    module: PathBuf,
    /// Namespace set-up giving pamtester the test's private /dev/log.
    prelude: String,
}

impl PamService {
    fn new(log: &PrivateDevLog) -> PamService {
        let dir = TestDir::new("pamsvc");
        let module = install_module(&dir);
        // The service pam_keyward acts for by default; the directory is
        // private, so the name clashes with nothing.
        let name = "sshd".to_string();
        dir.subdir("svc");
        PamService {
            dir,
            name,
            module,
            prelude: log.prelude(),
        }
    }

    /// Writes the service file (raw bytes: arguments may be non-UTF-8).
    fn stack(&self, text: &[u8]) {
        self.stack_for(&self.name, text);
    }

    /// Writes the file of service `name` in the same private directory.
    fn stack_for(&self, name: &str, text: &[u8]) {
        let module = self.module.to_str().unwrap().as_bytes();
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.windows(5).position(|w| w == b"{MOD}") {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(module);
            rest = &rest[i + 5..];
        }
        out.extend_from_slice(rest);
        self.dir.write(format!("svc/{name}"), out, 0o644);
    }

    /// The standard test stack: every stage runs pam_keyward with `args`;
    /// pam_keyward's PAM_IGNORE (auth) and failures are observable as
    /// described in the file comment.
    fn with_args(log: &PrivateDevLog, args: &[u8]) -> PamService {
        let s = PamService::new(log);
        let a = |stage: &str, control: &str| {
            let mut l = format!("{stage} {control} {{MOD}} ").into_bytes();
            l.extend_from_slice(args);
            l.push(b'\n');
            l
        };
        let mut t = Vec::new();
        t.extend(a("auth", "[ignore=1 success=bad default=die]"));
        t.extend(b"auth requisite pam_deny.so\nauth required pam_permit.so\n");
        t.extend(a("account", "required"));
        t.extend(b"account required pam_permit.so\n");
        t.extend(a("session", "required"));
        t.extend(b"session required pam_permit.so\n");
        t.extend(a("password", "required"));
        t.extend(b"password required pam_permit.so\n");
        s.stack(&t);
        s
    }

    /// `pamtester -v -I rhost=… -I tty=pts/7 [-E VAR=VALUE…] SVC USER OPS…`
    /// in a mount namespace whose /dev/log is the test's private rsyslog.
    fn run(&self, user: &str, env: &[(&str, &str)], ops: &[&str]) -> Out {
        self.run_service(&self.name, user, env, ops)
    }

    /// [`Self::run`] for another service file of the directory.
    fn run_service(&self, service: &str, user: &str, env: &[(&str, &str)], ops: &[&str]) -> Out {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{}exec \"$@\"\n", self.prelude))
            .arg("sh")
            // Only pamtester gets the preload (libpam_wrapper sets itself up
            // in every process it is loaded into).
            .args(["env", "LD_PRELOAD=libpam_wrapper.so", "pamtester"])
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.dir.join("svc"))
            .env("PAM_WRAPPER_USE_SYSLOG", "1")
            .args(["-v", "-I"])
            .arg(format!("rhost={RHOST}"))
            .args(["-I", "tty=pts/7"]);
        for (k, v) in env {
            c.arg("-E").arg(format!("{k}={v}"));
        }
        c.arg(service).arg(user).args(ops);
        run(&mut c, Duration::from_secs(30))
    }

    fn authenticate(&self, user: &str) -> Out {
        self.run(user, &[], &["authenticate"])
    }
}

fn text(out: &Out) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn assert_refused(out: &Out, why: &str) {
    assert!(!out.success(), "expected {why:?}, got success: {out}");
    assert!(text(out).contains(why), "expected {why:?}: {out}");
}

/// Checks the parts every auth record has.
fn assert_auth_record(l: &LogLine, svc: &PamService, user: &str) {
    assert_eq!(l.facility, "authpriv", "{}", l.raw);
    assert!(
        l.msg
            .starts_with(&format!("pam_keyward({}:auth): decision=", svc.name)),
        "{}",
        l.raw
    );
    assert_eq!(l.field("user").as_deref(), Some(user), "{}", l.raw);
    assert_eq!(l.field("rhost").as_deref(), Some(RHOST), "{}", l.raw);
    assert_eq!(
        l.field("service").as_deref(),
        Some(svc.name.as_str()),
        "{}",
        l.raw
    );
    l.assert_field("tty", "pts/7");
}

#[test]
fn pamtester_blocks_every_password_attempt() {
    let log = PamLog::acquire();
    let user = TestUser::with_password("correct horse");
    let svc = PamService::with_args(&log, b"");
    let out = svc.authenticate(&user.name);
    assert_refused(&out, AUTH_ERR);
    // An account NSS does not know is blocked the same way.
    let out = svc.authenticate("kw-no-such-user");
    assert_refused(&out, AUTH_ERR);
    let l = wait_decision(&log, &user.name, "block")
        .unwrap_or_else(|| panic!("no decision=block line:\n{}", dump(&log)));
    assert_auth_record(&l, &svc, &user.name);
    assert_eq!(l.severity, "notice", "{}", l.raw);
    assert!(wait_decision(&log, "kw-no-such-user", "block").is_some());
}

#[test]
fn pamtester_exempts_users_by_name() {
    let log = PamLog::acquire();
    let glass = TestUser::new();
    let other = TestUser::new();
    let args = format!("allow_user=kw-nobody,{}", glass.name);
    let svc = PamService::with_args(&log, args.as_bytes());

    let out = svc.authenticate(&glass.name);
    assert!(out.success(), "exempt user must get PAM_IGNORE: {out}");
    assert!(out.stdout.contains("successfully authenticated"), "{out}");
    assert_refused(&svc.authenticate(&other.name), AUTH_ERR);
    // setcred after an exempt login must not fail.
    let out = svc.run(&glass.name, &[], &["authenticate", "setcred"]);
    assert!(out.success(), "{out}");
    let l = wait_decision(&log, &glass.name, "exempt")
        .unwrap_or_else(|| panic!("no decision=exempt line:\n{}", dump(&log)));
    assert_auth_record(&l, &svc, &glass.name);
    l.assert_field("exempt_by", "user");
    assert!(wait_decision(&log, &other.name, "block").is_some());
}

#[test]
fn pamtester_exempts_supplementary_group_members() {
    let log = PamLog::acquire();
    let group = TestGroup::new();
    let member = TestUser::builder().group(&group.name).create();
    let outsider = TestUser::new();
    // The membership is supplementary: the primary group is the user's own.
    let primary = must(Command::new("id").args(["-gn", &member.name]));
    assert_ne!(primary.stdout.trim(), group.name);

    let svc = PamService::with_args(&log, format!("allow_group={}", group.name).as_bytes());
    let out = svc.authenticate(&member.name);
    assert!(out.success(), "group member must get PAM_IGNORE: {out}");
    assert_refused(&svc.authenticate(&outsider.name), AUTH_ERR);

    // A group that does not exist exempts nobody, and says so.
    let typo = PamService::with_args(&log, format!("allow_group={}x", group.name).as_bytes());
    assert_refused(&typo.authenticate(&member.name), AUTH_ERR);
    let l = wait_decision(&log, &member.name, "exempt")
        .unwrap_or_else(|| panic!("no decision=exempt line:\n{}", dump(&log)));
    assert_auth_record(&l, &svc, &member.name);
    assert_eq!(
        l.field("exempt_by"),
        Some(format!("group:{}", group.name)),
        "{}",
        l.raw
    );
    assert!(wait_decision(&log, &outsider.name, "block").is_some());
    let l = wait_decision(&log, &member.name, "block")
        .unwrap_or_else(|| panic!("no block with the misspelt group:\n{}", dump(&log)));
    assert_eq!(
        l.field("note"),
        Some(format!("allow_group {}x: no such group", group.name)),
        "{}",
        l.raw
    );
    assert_eq!(l.severity, "warning", "{}", l.raw);
}

#[test]
fn pamtester_audit_only_blocks_nothing() {
    let log = PamLog::acquire();
    let user = TestUser::new();
    let glass = TestUser::new();
    let svc = PamService::with_args(
        &log,
        format!("audit_only allow_user={}", glass.name).as_bytes(),
    );
    let out = svc.authenticate(&user.name);
    assert!(out.success(), "audit_only must return PAM_IGNORE: {out}");
    assert!(svc.authenticate(&glass.name).success());
    let l = wait_decision(&log, &user.name, "would-block")
        .unwrap_or_else(|| panic!("no decision=would-block line:\n{}", dump(&log)));
    assert_auth_record(&l, &svc, &user.name);
    l.assert_field("mode", "audit_only");
    // audit_only still tells exempt users apart.
    assert!(wait_decision(&log, &glass.name, "exempt").is_some());
    assert!(wait_decision(&log, &user.name, "block").is_none());
}

#[test]
fn pamtester_bad_arguments_fail_closed() {
    let log = PamLog::acquire();
    let cases: &[(&[u8], &str, &str)] = &[
        (b"alow_user=root", "alow_user=root", "unknown argument"),
        (b"debug allow_user=", "allow_user=", "empty name"),
        (b"audit_only=yes", "audit_only=yes", "is a flag"),
        (b"allow_group", "allow_group", "needs a value"),
        // Non-UTF-8: pamsm's own wrapper would refuse it without a word.
        (
            b"allow_user=r\xffot",
            "allow_user=r\u{fffd}ot",
            "not valid UTF-8",
        ),
    ];
    for (args, shown, why) in cases {
        // One user per case: every case's service is `sshd`, so the user
        // tells their records apart.
        let user = TestUser::new();
        let svc = PamService::with_args(&log, args);
        // authenticate, account and session all fail closed ...
        assert_refused(&svc.authenticate(&user.name), SERVICE_ERR);
        assert_refused(&svc.run(&user.name, &[], &["acct_mgmt"]), SERVICE_ERR);
        assert_refused(&svc.run(&user.name, &[], &["open_session"]), SERVICE_ERR);
        let l = log
            .wait_for(LOG_WAIT, |l| {
                l.msg
                    .starts_with(&format!("pam_keyward({}:auth): decision=error", svc.name))
                    && l.field("user").as_deref() == Some(user.name.as_str())
            })
            .unwrap_or_else(|| panic!("no decision=error line for {shown}:\n{}", dump(&log)));
        assert_eq!(l.severity, "err", "{}", l.raw);
        assert_eq!(l.field("arg").as_deref(), Some(*shown), "{}", l.raw);
        assert!(l.field("reason").unwrap().contains(why), "{}", l.raw);
        l.assert_field("ret", "PAM_SERVICE_ERR");
        let position = if args.starts_with(b"debug") { "2" } else { "1" };
        assert_eq!(l.field("position").as_deref(), Some(position), "{}", l.raw);
    }
}

#[test]
fn pamtester_session_requires_a_publickey() {
    let log = PamLog::acquire();
    let keys = TestDir::new("pamsesskeys");
    let user = TestUser::new();
    let key = SshKey::ed25519(keys.path(), "k");
    let ca = SshKey::ed25519(keys.path(), "ca");
    let cert = ca.sign_user_cert(&key, "kwt laptop", &[&user.name]);
    let cert_line = std::fs::read_to_string(&cert).unwrap();
    let cert_material: Vec<&str> = cert_line.split_whitespace().take(2).collect();
    let cert_material = cert_material.join(" ");

    let svc = PamService::with_args(&log, b"require_publickey");
    let info = |v: &str| vec![("SSH_AUTH_INFO_0", v.to_owned())];
    let session = |svc: &PamService, v: Option<&str>| {
        let env: Vec<(&str, String)> = v.map(info).unwrap_or_default();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        svc.run(&user.name, &env, &["open_session", "close_session"])
    };

    let pk = format!("publickey {}\n", key.public_material());
    let out = session(&svc, Some(&pk));
    assert!(out.success(), "publickey session: {out}");
    let out = session(&svc, Some(&format!("publickey {cert_material}\n")));
    assert!(out.success(), "certificate session: {out}");
    // multi-line: a key and then a password (AuthenticationMethods)
    let out = session(&svc, Some(&format!("{pk}password\n")));
    assert!(out.success(), "publickey,password session: {out}");

    for refused in ["password\n", "keyboard-interactive/pam\n", ""] {
        assert_refused(&session(&svc, Some(refused)), PERM_DENIED);
    }
    assert_refused(&session(&svc, None), PERM_DENIED);
    // missing_ok: a service without SSH_AUTH_INFO_0 is let through ...
    let lax = PamService::with_args(&log, b"require_publickey missing_ok");
    assert!(session(&lax, None).success());
    // ... but not one that says it used a password.
    assert_refused(&session(&lax, Some("password\n")), PERM_DENIED);
    let fp = key.fingerprint();
    let l = log
        .wait_for(LOG_WAIT, |l| {
            l.field("user").as_deref() == Some(user.name.as_str())
                && l.field("decision").as_deref() == Some("session")
                && l.field("key_type").as_deref() == Some("ssh-ed25519")
        })
        .unwrap_or_else(|| panic!("no decision=session line:\n{}", dump(&log)));
    assert!(
        l.msg.starts_with(&format!(
            "pam_keyward({}:session): decision=session",
            svc.name
        )),
        "{}",
        l.raw
    );
    assert_eq!(l.field("fp"), Some(fp.clone()), "{}", l.raw);
    assert_eq!(l.severity, "info", "{}", l.raw);
    let l = log
        .wait_for(LOG_WAIT, |l| {
            l.field("user").as_deref() == Some(user.name.as_str()) && l.field("cert_id").is_some()
        })
        .unwrap_or_else(|| panic!("no certificate session line:\n{}", dump(&log)));
    assert_eq!(l.field("fp"), Some(fp.clone()), "{}", l.raw);
    l.assert_field("cert_id", "kwt laptop");
    assert_eq!(
        l.field("ca_fp"),
        Some(fingerprint_of_line(keys.path(), &ca.public_line())),
        "{}",
        l.raw
    );
    assert_eq!(
        l.field("key_type").as_deref(),
        Some("ssh-ed25519-cert-v01@openssh.com")
    );
    assert!(log
        .wait_for(LOG_WAIT, |l| {
            l.field("user").as_deref() == Some(user.name.as_str())
                && l.field("methods").as_deref() == Some("publickey,password")
                && l.field("decision").as_deref() == Some("session")
        })
        .is_some());
    let refusals: Vec<LogLine> = pam_lines(&log, &user.name)
        .into_iter()
        .filter(|l| l.field("decision").as_deref() == Some("refuse"))
        .collect();
    let methods: Vec<String> = refusals.iter().filter_map(|l| l.field("methods")).collect();
    for m in ["password", "keyboard-interactive/pam", "", "unknown"] {
        assert!(methods.iter().any(|x| x == m), "{m:?} in {methods:?}");
    }
    assert!(refusals.iter().all(|l| l.severity == "warning"));
}

#[test]
fn pamtester_other_callbacks_never_fail() {
    let log = PamLog::acquire();
    let user = TestUser::new();
    let svc = PamService::with_args(&log, b"allow_group=kw-no-such-group debug");
    let out = svc.run(
        &user.name,
        &[("SSH_AUTH_INFO_0", "password\n")],
        &[
            "acct_mgmt",
            "setcred",
            "open_session",
            "close_session",
            "chauthtok",
        ],
    );
    // open_session without require_publickey only logs.
    assert!(out.success(), "{out}");
    // setcred never fails, even with arguments that fail everything else.
    let bad = PamService::with_args(&log, b"no-such-argument");
    let out = bad.run(&user.name, &[], &["setcred"]);
    assert!(out.success(), "setcred must not fail: {out}");
}

/// A password-only stack as a shared `common-auth` would hand it to any
/// service: pam_keyward first, then a module that accepts everything. So
/// "authenticated" means pam_keyward let the service through (PAM_IGNORE),
/// and the session stack opens only if pam_keyward does not refuse it.
fn shared_stack(args: &str) -> String {
    format!(
        "auth requisite {{MOD}} {args}\nauth required pam_permit.so\n\
         account required pam_permit.so\n\
         session required {{MOD}} require_publickey {args}\nsession required pam_permit.so\n"
    )
}

#[test]
fn pamtester_acts_only_for_the_services_listed() {
    let log = PamLog::acquire();
    let user = TestUser::with_password("correct horse");
    let svc = PamService::new(&log);
    let ops = ["authenticate", "open_session"];
    // Default: sshd only. The same stack under sudo and login lets the
    // password through and opens the session (no SSH_AUTH_INFO_0 there).
    for service in ["sshd", "sudo", "login"] {
        svc.stack_for(service, shared_stack("").as_bytes());
    }
    for service in ["sudo", "login"] {
        let out = svc.run_service(service, &user.name, &[], &ops);
        assert!(out.success(), "{service} must be left alone: {out}");
        assert!(
            out.stdout.contains("successfully opened a session"),
            "{out}"
        );
    }
    assert_refused(&svc.run_service("sshd", &user.name, &[], &ops), AUTH_ERR);
    let l = wait_decision(&log, &user.name, "block")
        .unwrap_or_else(|| panic!("no decision=block line:\n{}", dump(&log)));
    l.assert_field("service", "sshd");
    // sudo and login ran first: nothing of theirs is in the log.
    let services: Vec<String> = pam_lines(&log, &user.name)
        .iter()
        .filter_map(|l| l.field("service"))
        .collect();
    assert_eq!(services, ["sshd"], "{}", dump(&log));

    // services= lists others: sudo is blocked, sshd-kbd too, sshd left alone.
    for service in ["sshd", "sudo", "sshd-kbd", "login"] {
        svc.stack_for(service, shared_stack("services=sudo,sshd-kbd").as_bytes());
    }
    for service in ["sudo", "sshd-kbd"] {
        let out = svc.run_service(service, &user.name, &[], &ops);
        assert_refused(&out, AUTH_ERR);
    }
    for service in ["sshd", "login"] {
        let out = svc.run_service(service, &user.name, &[], &ops);
        assert!(out.success(), "{service} is not listed: {out}");
    }
    // The session line of a listed service still refuses a session
    // without a key.
    let out = svc.run_service("sudo", &user.name, &[], &["open_session"]);
    assert_refused(&out, PERM_DENIED);
    assert!(
        log.wait_for(LOG_WAIT, |l| l
            .msg
            .starts_with("pam_keyward(sudo:auth): decision=block")
            && l.field("user").as_deref() == Some(user.name.as_str()))
            .is_some(),
        "{}",
        dump(&log)
    );

    // A bad value fails closed for every service, listed or not.
    for (args, shown) in [
        ("services=", "services="),
        ("services=sudo,,login", "services=sudo,,login"),
    ] {
        for service in ["login", "sshd"] {
            svc.stack_for(service, shared_stack(args).as_bytes());
            let out = svc.run_service(service, &user.name, &[], &["authenticate"]);
            assert_refused(&out, SERVICE_ERR);
            let l = log
                .wait_for(LOG_WAIT, |l| {
                    l.msg
                        .starts_with(&format!("pam_keyward({service}:auth): decision=error"))
                        && l.field("arg").as_deref() == Some(shown)
                })
                .unwrap_or_else(|| {
                    panic!("no error line for {args} in {service}:\n{}", dump(&log))
                });
            assert!(
                l.field("reason").unwrap().contains("empty name"),
                "{}",
                l.raw
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A real sshd
// ---------------------------------------------------------------------------

const PW: &str = "Pw-for-kw-tests-1";
const GLASS_PW: &str = "Pw-for-breakglass-2";

/// Starts an sshd with `stack` bind-mounted over /etc/pam.d/sshd, password
/// and keyboard-interactive authentication on, and (optionally) keyward as
/// its AuthorizedKeysCommand.
fn pam_sshd(
    log: &PrivateDevLog,
    dir: &TestDir,
    name: &str,
    stack: &str,
    akc: Option<&str>,
) -> Sshd {
    let stack_file = dir.write(format!("pam.d/{name}"), stack, 0o644);
    let mut b = Sshd::builder()
        .pam_stack(&stack_file)
        .dev_log(log)
        .set("PasswordAuthentication", "yes")
        .set("KbdInteractiveAuthentication", "yes");
    if let Some(cmd) = akc {
        b = b
            .authorized_keys_command(cmd)
            .authorized_keys_command_user("keyward");
    }
    b.start()
}

fn password_login(sshd: &Sshd, user: &TestUser, pw: &str, method: &str) -> SshOut {
    let r = ssh_password_login(sshd.port, &user.name, pw, method, "id -un");
    if r.ok {
        assert_eq!(r.stdout().trim(), user.name, "{r}");
    }
    r
}

#[test]
fn sshd_refuses_passwords_allows_keys_and_breakglass() {
    let log = PamLog::acquire();
    let dir = TestDir::new("pamsshd");
    let module = install_module(&dir);
    let module = module.display();
    let keys = TestDir::new("pamsshdkeys");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s").ttl("5m"));
    let akc = env.kw.authorized_keys_command();
    let group = TestGroup::new();
    let user = TestUser::with_password(PW);
    let glass = TestUser::builder()
        .password(GLASS_PW)
        .group(&group.name)
        .create();
    let key = SshKey::ed25519(keys.path(), "user");
    nginx.put_keys(&user.name, &format!("{}\n", key.public_line()));

    // Control: without pam_keyward the password is accepted by both methods.
    let plain = "auth required pam_unix.so\naccount required pam_unix.so\n\
                 session required pam_unix.so\n";
    {
        let sshd = pam_sshd(&log, &dir, "plain", plain, None);
        for method in ["password", "keyboard-interactive"] {
            let r = password_login(&sshd, &user, PW, method);
            assert!(
                r.ok,
                "control {method} login must work: {r}\n{}",
                sshd.log_text()
            );
        }
    }

    let stack = format!(
        "auth     requisite {module} allow_group={g}\n\
         auth     required  pam_unix.so\n\
         account  required  pam_unix.so\n\
         session  required  {module} require_publickey allow_group={g}\n\
         session  required  pam_unix.so\n",
        g = group.name
    );
    let sshd = pam_sshd(&log, &dir, "keyward", &stack, Some(&akc));
    let debug = |what: &str| {
        format!(
            "{what}\n--- /dev/log ---\n{}--- keyward log ---\n{}--- sshd log ---\n{}",
            dump(&log),
            env.log.text(),
            sshd.log_text()
        )
    };

    // The right password, both methods: refused by pam_keyward.
    for method in ["password", "keyboard-interactive"] {
        let r = password_login(&sshd, &user, PW, method);
        assert!(
            !r.ok,
            "{}",
            debug(&format!("{method} login must be refused: {r}"))
        );
    }
    // Refused in the auth stage (not later, by the session line).
    for method in ["password", "keyboard-interactive/pam"] {
        let needle = format!("Failed {method} for {} from 127.0.0.1", user.name);
        assert!(
            sshd.wait_log(&needle, LOG_WAIT),
            "{}",
            debug(&format!("sshd log must say {needle:?}"))
        );
    }
    // A key through keyward: in, and the session line names the key.
    let r = sshd.login(&user.name, &key.path, "id -un");
    assert!(r.ok, "{}", debug(&format!("key login: {r}")));
    assert_eq!(r.stdout().trim(), user.name);
    // The break-glass user still logs in with a password, both methods.
    for method in ["password", "keyboard-interactive"] {
        let r = password_login(&sshd, &glass, GLASS_PW, method);
        assert!(
            r.ok,
            "{}",
            debug(&format!("break-glass {method} login: {r}"))
        );
    }

    // keyward served the key (its own syslog line).
    let kl = env
        .log
        .wait_for(LOG_WAIT, |l| {
            l.program == "keyward"
                && l.field("user").as_deref() == Some(user.name.as_str())
                && l.field("decision").as_deref() == Some("match")
        })
        .unwrap_or_else(|| panic!("{}", debug("no keyward decision=match line")));
    assert_eq!(kl.field("fp"), Some(key.fingerprint()), "{}", kl.raw);
    // Two refusals (password, keyboard-interactive), from sshd's auth stack.
    let blocks = log.wait_for_n_lines(2, |l| {
        l.program == "sshd"
            && l.msg.starts_with("pam_keyward(sshd:auth): decision=block ")
            && l.field("user").as_deref() == Some(user.name.as_str())
    });
    assert_eq!(blocks.len(), 2, "{}", debug("two decision=block lines"));
    for l in &blocks {
        assert_eq!(l.facility, "authpriv", "{}", l.raw);
        l.assert_field("service", "sshd");
        l.assert_field("rhost", "127.0.0.1");
        assert!(l.field("tty").is_some(), "{}", l.raw);
    }
    let s = wait_decision(&log, &user.name, "session")
        .unwrap_or_else(|| panic!("{}", debug("no decision=session line")));
    assert!(
        s.msg.starts_with("pam_keyward(sshd:session): "),
        "{}",
        s.raw
    );
    assert_eq!(s.field("fp"), Some(key.fingerprint()), "{}", s.raw);
    s.assert_field("key_type", "ssh-ed25519");
    s.assert_field("methods", "publickey");
    // The break-glass user: exempt in auth and in session, for both methods.
    let g = |l: &LogLine| {
        l.field("user").as_deref() == Some(glass.name.as_str())
            && l.field("decision").as_deref() == Some("exempt")
    };
    let exempt = log.wait_for_n_lines(4, g);
    let auth = exempt
        .iter()
        .filter(|l| l.msg.contains("(sshd:auth)"))
        .count();
    let sess: Vec<String> = exempt
        .iter()
        .filter(|l| l.msg.contains("(sshd:session)"))
        .filter_map(|l| l.field("methods"))
        .collect();
    assert_eq!(auth, 2, "{}", debug("two exempt auth lines"));
    assert_eq!(
        sess,
        ["password", "keyboard-interactive/pam"],
        "{}",
        debug("exempt sessions")
    );
    for l in exempt {
        assert_eq!(l.field("exempt_by"), Some(format!("group:{}", group.name)));
    }
    // Nothing was refused at the session stage.
    assert!(pam_lines(&log, &user.name)
        .iter()
        .chain(pam_lines(&log, &glass.name).iter())
        .all(|l| l.field("decision").as_deref() != Some("refuse")));
}

/// Defence in depth: a stack whose auth part lets passwords through (no
/// pam_keyward there) still gets no session without a key.
#[test]
fn sshd_session_line_refuses_password_sessions() {
    let log = PamLog::acquire();
    let dir = TestDir::new("pamsshdsess");
    let module = install_module(&dir);
    let user = TestUser::with_password(PW);
    let stack = format!(
        "auth     required  pam_unix.so\n\
         account  required  pam_unix.so\n\
         session  required  {m} require_publickey\n\
         session  required  pam_unix.so\n",
        m = module.display()
    );
    let sshd = pam_sshd(&log, &dir, "session-only", &stack, None);
    for method in ["password", "keyboard-interactive"] {
        let r = password_login(&sshd, &user, PW, method);
        assert!(!r.ok, "{method} session must be refused: {r}");
        // The password itself was accepted: the refusal is the session's.
        let needle = if method == "password" {
            format!("Accepted password for {}", user.name)
        } else {
            format!("Accepted keyboard-interactive/pam for {}", user.name)
        };
        assert!(
            sshd.wait_log(&needle, LOG_WAIT),
            "{needle}\n{}",
            sshd.log_text()
        );
    }
    let refused = log.wait_for_n_lines(2, |l| {
        l.field("user").as_deref() == Some(user.name.as_str())
            && l.field("decision").as_deref() == Some("refuse")
    });
    let methods: Vec<String> = refused.iter().filter_map(|l| l.field("methods")).collect();
    assert_eq!(
        methods,
        ["password", "keyboard-interactive/pam"],
        "{}",
        dump(&log)
    );
    for l in &refused {
        assert!(
            l.msg.starts_with("pam_keyward(sshd:session): "),
            "{}",
            l.raw
        );
        assert_eq!(l.severity, "warning", "{}", l.raw);
    }
}

#[test]
fn sshd_audit_only_logs_and_lets_passwords_through() {
    let log = PamLog::acquire();
    let dir = TestDir::new("pamsshdaudit");
    let module = install_module(&dir);
    let user = TestUser::with_password(PW);
    let stack = format!(
        "auth     requisite {m} audit_only\n\
         auth     required  pam_unix.so\n\
         account  required  pam_unix.so\n\
         session  required  {m} require_publickey audit_only\n\
         session  required  pam_unix.so\n",
        m = module.display()
    );
    let sshd = pam_sshd(&log, &dir, "audit", &stack, None);
    for method in ["password", "keyboard-interactive"] {
        let r = password_login(&sshd, &user, PW, method);
        assert!(
            r.ok,
            "audit_only must let {method} through: {r}\n{}",
            sshd.log_text()
        );
    }
    let would = log.wait_for_n_lines(2, |l| {
        l.field("user").as_deref() == Some(user.name.as_str())
            && l.field("decision").as_deref() == Some("would-block")
    });
    assert_eq!(would.len(), 2, "{}", dump(&log));
    let refuse = log.wait_for_n_lines(2, |l| {
        l.field("user").as_deref() == Some(user.name.as_str())
            && l.field("decision").as_deref() == Some("would-refuse")
    });
    let methods: Vec<String> = refuse.iter().filter_map(|l| l.field("methods")).collect();
    assert_eq!(
        methods,
        ["password", "keyboard-interactive/pam"],
        "{}",
        dump(&log)
    );
    assert!(refuse
        .iter()
        .all(|l| l.field("mode").as_deref() == Some("audit_only")));
}

/// Waiting for several lines on the private /dev/log (a local helper: the
/// shared log only waits for one).
trait WaitLines {
    fn wait_for_n_lines(&self, n: usize, pred: impl FnMut(&LogLine) -> bool) -> Vec<LogLine>;
}

impl WaitLines for PrivateDevLog {
    fn wait_for_n_lines(&self, n: usize, mut pred: impl FnMut(&LogLine) -> bool) -> Vec<LogLine> {
        let mut found = Vec::new();
        wait_until(LOG_WAIT, || {
            found = self.lines().into_iter().filter(|l| pred(l)).collect();
            found.len() >= n
        });
        std::thread::sleep(Duration::from_millis(300));
        self.lines().into_iter().filter(|l| pred(l)).collect()
    }
}
