//! `keyward doctor` and `keyward explain` against real set-ups: the installed
//! binary, a private sshd config (`sshd -T -f`), a private PAM file, a real
//! nginx key directory, signatures made with `ssh-keygen -Y sign`, a cache
//! written by `keyward keys` itself. Each broken set-up must be named with
//! its fix; a healthy one must pass with exit 0.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::fault::dead_url;
use crate::support::keyward::{make_cache_dir, toml_str};
use crate::support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The PAM module cargo built (next to the keyward binary).
fn built_module() -> PathBuf {
    built_pam_module()
}

/// keyward installed where sshd accepts it, with its cache, a private sshd
/// config and a private PAM file. Nothing of the machine's is changed.
struct Env {
    /// Holds the cache, sshd config and PAM file; removed on drop.
    _dir: TestDir,
    cache: PathBuf,
    kw: Keyward,
    config: KwConfig,
    sshd_config: PathBuf,
    pam_file: PathBuf,
    /// pam_keyward.so installed root 0644 next to the binary.
    pam_so: PathBuf,
}

/// One `--json` doctor run.
struct Doc {
    out: Out,
    json: Value,
}

impl Doc {
    fn checks(&self, id: &str) -> Vec<&Value> {
        self.json["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks: {}", self.out))
            .iter()
            .filter(|c| c["id"] == id)
            .collect()
    }

    fn check(&self, id: &str) -> &Value {
        self.checks(id)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no check {id}: {}", self.out))
    }

    fn found(&self, id: &str) -> String {
        self.check(id)["found"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn fix(&self, id: &str) -> String {
        self.check(id)["fix"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Asserts `id` has `status`, with the whole report on failure.
    fn expect(&self, id: &str, status: &str) -> &Value {
        let c = self.check(id);
        assert_eq!(c["status"], status, "{id}: {c}\n{}", self.out);
        c
    }

    fn failing(&self) -> Vec<String> {
        self.json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| format!("{}: {}", c["id"], c["found"]))
            .collect()
    }
}

const HEALTHY_SSHD: &[(&str, &str)] = &[
    ("AuthorizedKeysCommandUser", "keyward"),
    ("AuthorizedKeysFile", "none"),
    ("PasswordAuthentication", "no"),
    ("KbdInteractiveAuthentication", "no"),
    ("PermitRootLogin", "prohibit-password"),
    ("PermitEmptyPasswords", "no"),
    ("PubkeyAuthentication", "yes"),
    ("UsePAM", "yes"),
];

impl Env {
    fn new(configure: impl FnOnce(KwConfig) -> KwConfig) -> Env {
        prepare_sshd_host();
        ensure_system_user("keyward");
        let dir = TestDir::new("doctor");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        // No syslog daemon listens there: keyward's lines go to stderr and
        // never into another test's /dev/log.
        let socket = dir.join("no-syslog.sock");
        let config = configure(KwConfig::new(&cache, Some(&socket)).timeout("3s"));
        let kw = Keyward::with_config(&config);
        let pam_so = kw.dir.join("pam_keyward.so");
        must(
            Command::new("install")
                .args(["-m", "644", "-o", "root", "-g", "root"])
                .arg(built_module())
                .arg(&pam_so),
        );
        let env = Env {
            sshd_config: dir.join("sshd_config"),
            pam_file: dir.join("pam-sshd"),
            _dir: dir,
            cache,
            kw,
            config,
            pam_so,
        };
        env.write_sshd(&[]);
        env.write_pam(&env.healthy_pam());
        env
    }

    /// Writes the private sshd config: `first` lines win over the healthy
    /// defaults (in sshd_config the first value of a keyword counts).
    fn write_sshd(&self, first: &[&str]) {
        let mut text: String = first.iter().map(|l| format!("{l}\n")).collect();
        text += "Port 22\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\n";
        text += &format!(
            "AuthorizedKeysCommand {}\n",
            self.kw.authorized_keys_command()
        );
        for (k, v) in HEALTHY_SSHD {
            text += &format!("{k} {v}\n");
        }
        write_file(&self.sshd_config, text, 0o644);
    }

    fn healthy_pam(&self) -> String {
        format!(
            "# sshd, keyward first\nauth     requisite  {so}\n@include common-auth\naccount  required   pam_nologin.so\n@include common-account\nsession  required   {so} require_publickey\n@include common-session\n",
            so = self.pam_so.display()
        )
    }

    fn write_pam(&self, text: &str) {
        write_file(&self.pam_file, text, 0o644);
    }

    fn set_config(&mut self, config: KwConfig) {
        self.kw.write_config(&config.to_toml());
        self.config = config;
    }

    fn doctor_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "doctor".into(),
            "--json".into(),
            "--sshd-config".into(),
            self.sshd_config.display().to_string(),
            "--pam-file".into(),
            self.pam_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn parse(out: Out) -> Doc {
        let json: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {out}"));
        Doc { out, json }
    }

    /// `keyward --config C doctor --json --sshd-config S --pam-file P EXTRA…` as root.
    fn doctor(&self, extra: &[&str]) -> Doc {
        let args = self.doctor_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::parse(self.kw.run(&args))
    }

    fn explain(&self, args: &[&str]) -> Out {
        let mut a = vec!["explain"];
        a.extend(args);
        let sshd = self.sshd_config.display().to_string();
        a.extend(["--sshd-config", &sshd]);
        self.kw.run(&a)
    }

    fn explain_json(&self, args: &[&str]) -> (Out, Value) {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.explain(&a);
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
        // explain exits 0 when the user can log in, 1 when not,
        // 2 when it cannot tell; the JSON says which.
        let want = match v["can_log_in"].as_bool() {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        assert_eq!(out.code, Some(want), "{out}");
        (out, v)
    }
}

// ---------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------

/// The exit status doctor's summary calls for: 2 failures, 1 warnings, 0.
fn nagios(json: &Value) -> i32 {
    if json["summary"]["fail"].as_u64() > Some(0) {
        2
    } else if json["summary"]["warn"].as_u64() > Some(0) {
        1
    } else {
        0
    }
}

#[test]
fn doctor_healthy_setup_passes() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let d = env.doctor(&[]);
    // doctor exits 0 ok, 1 warnings, 2 failures (Nagios).
    assert_eq!(
        d.json["summary"]["fail"],
        0,
        "failing: {:?}\n{}",
        d.failing(),
        d.out
    );
    assert_eq!(d.out.code, Some(nagios(&d.json)), "{}", d.out);
    assert_eq!(d.json["format"], 1);
    for id in [
        "config.file",
        "config.parse",
        "binary",
        "cache.owner",
        "cache.config_readable",
        "cache.dir",
        "state.dir",
        "cache.write",
        "cache.entries",
        "sshd",
        "sshd.command",
        "sshd.command_fp",
        "sshd.command_tokens",
        "sshd.command_config",
        "sshd.command_user",
        "sshd.keys_file",
        "sshd.password",
        "sshd.kbdint",
        "sshd.root_login",
        "sshd.empty_passwords",
        "sshd.use_pam",
        "pam.stack",
        "pam.session",
        "pam.module",
        "pam.included",
    ] {
        d.expect(id, "ok");
    }
    // plain http without signatures is worth a warning, not a failure
    d.expect("directory.mirror", "warn");
    assert!(d.found("directory.mirror").contains("reachable"));
    // statuses come from a fixed set; every non-ok line says how to fix it
    for c in d.json["checks"].as_array().unwrap() {
        let s = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "fail", "skip"].contains(&s), "{c}");
        if s == "warn" || s == "fail" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
    }
    assert!(
        d.found("sshd").contains("OpenSSH 9."),
        "{}",
        d.found("sshd")
    );
    // the probe never touched the cache, and nginx saw only the probe user
    assert!(fs::read_dir(&env.cache).unwrap().next().is_none());
    assert!(nginx
        .accesses()
        .iter()
        .all(|a| a.uri.contains("keyward-doctor-probe")));

    // The human report: one line per check, aligned, no colour off a TTY.
    let args = env.doctor_args(&[]);
    let args: Vec<&str> = args.iter().skip(2).map(String::as_str).collect();
    let mut human = vec!["doctor"];
    human.extend(args);
    let out = env.kw.run(&human);
    assert_eq!(out.code, d.out.code, "human and JSON runs agree: {out}");
    assert!(
        !out.stdout.contains('\x1b'),
        "no colour when not a TTY: {out}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("sshd.command_tokens"))
        .unwrap();
    assert!(line.starts_with("ok "), "{line}");
    assert!(out.stdout.contains("no failing check"), "{out}");
}

#[test]
fn doctor_names_group_writable_binary_directory() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let dir = env.kw.dir.display().to_string();
    // Group-writable by a group other than the owner's own: every sshd
    // (Debian's too) refuses the command.
    let group = TestGroup::new();
    must(Command::new("chgrp").arg(&group.name).arg(&env.kw.dir));
    chmod(&env.kw.dir, 0o775);
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2), "{}", d.out);
    let b = d.expect("binary", "fail");
    assert_eq!(b["subject"], env.kw.bin.display().to_string());
    let found = b["found"].as_str().unwrap();
    let sshd_says = format!("bad ownership or modes for directory {dir}");
    assert!(
        found.contains(&format!("{sshd_says} (mode 0775, group-writable)")),
        "{found}"
    );
    assert!(found.contains("Unsafe AuthorizedKeysCommand"), "{found}");
    assert_eq!(b["fix"], format!("chmod g-w {dir}"));
    // the config lives there too: keyward refuses it as well
    d.expect("config.file", "fail");
    assert_eq!(d.fix("config.file"), format!("chmod g-w {dir}"));

    // The real sshd logs the very message doctor quotes.
    let sshd = Sshd::with_command(&env.kw.authorized_keys_command());
    let user = TestUser::new();
    let keys = TestDir::new("doctor-gw");
    let key = SshKey::ed25519(keys.path(), "k");
    let login = sshd.login(&user.name, &key.path, "true");
    assert!(!login.ok, "{login}");
    let unsafe_line = format!(
        "Unsafe AuthorizedKeysCommand \"{}\": {sshd_says}",
        env.kw.bin.display()
    );
    assert!(
        sshd.wait_log(&unsafe_line, Duration::from_secs(10)),
        "sshd log: {}",
        sshd.log_text()
    );

    // Group root, whose only member is root: Debian's sshd tolerates it
    // ("harmless group-writability"), upstream OpenSSH does not: a warning.
    must(Command::new("chgrp").arg("root").arg(&env.kw.dir));
    let d = env.doctor(&[]);
    let b = d.expect("binary", "warn");
    assert!(
        b["found"]
            .as_str()
            .unwrap()
            .contains("Debian's sshd tolerates it"),
        "{b}"
    );
    assert_eq!(b["fix"], format!("chmod g-w {dir}"));
}

#[test]
fn doctor_names_percent_c_on_sshd_92() {
    let env = Env::new(|c| c.url(dead_url()));
    let cmd = format!("{} %C", env.kw.authorized_keys_command());
    env.write_sshd(&[&format!("AuthorizedKeysCommand {cmd}")]);
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    let sshd_v = must(Command::new("ssh").arg("-V")).stderr;
    if sshd_v.contains("OpenSSH_9.2") {
        let c = d.expect("sshd.command_tokens", "fail");
        let found = c["found"].as_str().unwrap();
        assert!(found.contains("%C"), "{found}");
        assert!(found.contains("OpenSSH 9.2"), "{found}");
        assert!(found.contains("fatal for every connection"), "{found}");
        assert!(d.fix("sshd.command_tokens").contains("remove %C"));
        assert!(d.fix("sshd.command_tokens").contains("keys %u %f"));
        // and the real sshd 9.2 does fail every connection that way
        let sshd = Sshd::with_command(&cmd);
        let user = TestUser::new();
        let keys = TestDir::new("doctor-pc");
        let key = SshKey::ed25519(keys.path(), "k");
        assert!(!sshd.login(&user.name, &key.path, "true").ok);
        assert!(
            sshd.wait_log("percent_expand: unknown key %C", Duration::from_secs(10)),
            "sshd log: {}",
            sshd.log_text()
        );
        assert!(found.contains("percent_expand: unknown key %C"), "{found}");
    }
}

#[test]
fn doctor_names_password_authentication_unless_pam_blocks_it() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    env.write_sshd(&["PasswordAuthentication yes"]);
    // pam_keyward first in auth: the password never gets checked
    let d = env.doctor(&[]);
    d.expect("sshd.password", "ok");
    assert!(d.found("sshd.password").contains("pam_keyward refuses"));
    // without it: passwords are accepted
    env.write_pam("@include common-auth\n@include common-account\n@include common-session\n");
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    d.expect("sshd.password", "fail");
    assert!(d.found("sshd.password").contains("passwords are accepted"));
    assert!(d.fix("sshd.password").starts_with(&format!(
        "PasswordAuthentication no in {}",
        env.sshd_config.display()
    )));
    // UsePAM no: PAM cannot help at all
    env.write_pam(&env.healthy_pam());
    env.write_sshd(&["PasswordAuthentication yes", "UsePAM no"]);
    let d = env.doctor(&[]);
    d.expect("sshd.password", "fail");
    assert!(d.found("sshd.password").contains("UsePAM no"));
    d.expect("sshd.use_pam", "warn");
}

#[test]
fn doctor_names_pam_module_missing_from_the_stack() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    // Debian's stock sshd stack, without pam_keyward
    env.write_pam(
        "# PAM configuration for the Secure Shell service\n\n# Standard Un*x authentication.\n@include common-auth\naccount    required     pam_nologin.so\n@include common-account\n@include common-session\n",
    );
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    let pam = env.pam_file.display().to_string();
    d.expect("pam.stack", "fail");
    assert!(d
        .found("pam.stack")
        .contains(&format!("pam_keyward.so is not in the auth stack of {pam}")));
    assert_eq!(
        d.fix("pam.stack"),
        format!(
            "add `auth requisite pam_keyward.so` as the first auth line of {pam} (before line 4, where pam_unix.so comes in)"
        )
    );
    d.expect("pam.session", "warn");
    // after the password module: named with both places
    env.write_pam(&format!(
        "@include common-auth\nauth requisite {}\n",
        env.pam_so.display()
    ));
    let d = env.doctor(&[]);
    d.expect("pam.stack", "fail");
    assert!(d.found("pam.stack").contains("comes after pam_unix.so"));
    assert_eq!(
        d.fix("pam.stack"),
        format!("move `auth requisite pam_keyward.so` above line 1 of {pam}")
    );
    // named but not installed
    env.write_pam("auth requisite /nonexistent/pam_keyward.so\n@include common-auth\n");
    let d = env.doctor(&[]);
    d.expect("pam.module", "fail");
    assert!(d.found("pam.module").contains("not installed"));
}

#[test]
fn doctor_names_pam_lines_that_bypass_pam_keyward() {
    let env = Env::new(|c| c.url(dead_url()));
    let pam = env.pam_file.display().to_string();
    let so = env.pam_so.display().to_string();
    // a sufficient line, a jump, and the same in an @include'd file
    let site = TestDir::new("doctor-pam-include");
    let include = site.join("site-auth");
    write_file(
        &include,
        "auth [success=1 default=ignore] pam_succeed_if.so user ingroup wheel\n",
        0o644,
    );
    for (first, names, line) in [
        (
            "auth sufficient pam_listfile.so item=user sense=allow file=/etc/ssh/allowed onerr=fail".to_string(),
            "`auth sufficient pam_listfile.so item=user sense=allow file=/etc/ssh/allowed onerr=fail` (pam-sshd:1)".to_string(),
            1,
        ),
        (
            "auth [success=1 default=ignore] pam_succeed_if.so user ingroup wheel".to_string(),
            "`auth [success=1 default=ignore] pam_succeed_if.so user ingroup wheel` (pam-sshd:1)".to_string(),
            1,
        ),
        (
            format!("auth required pam_env.so\n@include {}", include.display()),
            "(site-auth:1 via include at pam-sshd:2)".to_string(),
            2,
        ),
    ] {
        env.write_pam(&format!(
            "{first}\nauth requisite {so}\n@include common-auth\nsession required {so} require_publickey\n"
        ));
        let d = env.doctor(&[]);
        assert_eq!(d.out.code, Some(2), "{first}: {}", d.out);
        d.expect("pam.stack", "fail");
        let found = d.found("pam.stack");
        assert!(found.contains(&names), "{first}: {found}");
        assert!(found.contains("jump over pam_keyward"), "{found}");
        assert!(
            d.fix("pam.stack")
                .starts_with(&format!("move `auth requisite pam_keyward.so` above line {line} of {pam}")),
            "{}",
            d.fix("pam.stack")
        );
    }
    // required/requisite lines of the same modules do not bypass it
    env.write_pam(&format!(
        "auth requisite pam_succeed_if.so uid >= 1000\nauth required pam_listfile.so item=user sense=deny file=/etc/ssh/denied onerr=succeed\nauth requisite {so}\n@include common-auth\nsession required {so} require_publickey\n"
    ));
    env.doctor(&[]).expect("pam.stack", "ok");
}

#[test]
fn doctor_names_pam_env_user_readenv_before_the_session_line() {
    let env = Env::new(|c| c.url(dead_url()));
    let pam = env.pam_file.display().to_string();
    let so = env.pam_so.display().to_string();
    // Debian's stock order with the session line appended at the end
    env.write_pam(&format!(
        "auth requisite {so}\n@include common-auth\n@include common-session\nsession required pam_env.so user_readenv=1 envfile=/etc/default/locale\nsession required {so} require_publickey\n"
    ));
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2), "{}", d.out);
    d.expect("pam.session", "fail");
    let found = d.found("pam.session");
    assert!(
        found.contains(
            "`session required pam_env.so user_readenv=1 envfile=/etc/default/locale` (pam-sshd:4)"
        ),
        "{found}"
    );
    assert!(found.contains("SSH_AUTH_INFO_0"), "{found}");
    assert_eq!(
        d.fix("pam.session"),
        format!("move `session required {so} require_publickey` above line 4 of {pam} (before any pam_env line)")
    );
    // the fix applied: pam_keyward's session line first
    env.write_pam(&format!(
        "auth requisite {so}\n@include common-auth\nsession required {so} require_publickey\n@include common-session\nsession required pam_env.so user_readenv=1 envfile=/etc/default/locale\n"
    ));
    env.doctor(&[]).expect("pam.session", "ok");
}

/// pam_keyward's arguments as its errors list them.
const KNOWN_ARGS: &str = "allow_user=NAME[,NAME], allow_group=GROUP[,GROUP], services=SERVICE[,SERVICE], audit_only, debug, require_publickey, missing_ok";

#[test]
fn doctor_names_session_lines_that_skip_pam_keyward() {
    let env = Env::new(|c| c.url(dead_url()));
    let pam = env.pam_file.display().to_string();
    let so = env.pam_so.display().to_string();
    let good = format!("session required {so} require_publickey");
    for (session, names, fix) in [
        (
            format!("session optional {so} require_publickey"),
            "pam_keyward.so is `optional` at pam-sshd:3: PAM ignores its refusal".to_string(),
            format!("`{good}` at pam-sshd:3"),
        ),
        (
            format!("session [success=1 default=ignore] pam_succeed_if.so user ingroup wheel\n{good}"),
            "`session [success=1 default=ignore] pam_succeed_if.so user ingroup wheel` (pam-sshd:3) comes before pam_keyward.so (pam-sshd:4)".to_string(),
            format!("move `{good}` above line 3 of {pam}, so nothing before it can skip it"),
        ),
        (
            format!("session sufficient pam_succeed_if.so user = deploy\n{good}"),
            "can end the session stack with success or jump over pam_keyward".to_string(),
            format!("move `{good}` above line 3 of {pam}, so nothing before it can skip it"),
        ),
        (
            format!("session required {so} require_publickey services=sshd-kbd"),
            "pam_keyward.so at pam-sshd:3 acts only for services=sshd-kbd and returns PAM_IGNORE to service sshd".to_string(),
            "add sshd to services= at pam-sshd:3 (without services= it acts for sshd)".to_string(),
        ),
        (
            format!("session required {so} require_publickey services=sshd,"),
            "the module fails closed, so every session of this stack fails (every SSH login, key logins included)".to_string(),
            format!("fix the argument at pam-sshd:3 (known: {KNOWN_ARGS})"),
        ),
        (
            format!("session required pam_env.so user_readenv=2\n{good}"),
            "`session required pam_env.so user_readenv=2` (pam-sshd:3)".to_string(),
            format!("move `{good}` above line 3 of {pam} (before any pam_env line)"),
        ),
    ] {
        env.write_pam(&format!(
            "auth requisite {so}\n@include common-auth\n{session}\n@include common-session\n"
        ));
        let d = env.doctor(&[]);
        assert_eq!(d.out.code, Some(2), "{session}: {}", d.out);
        d.expect("pam.session", "fail");
        let found = d.found("pam.session");
        assert!(found.contains(&names), "{session}: {found}");
        assert_eq!(d.fix("pam.session"), fix, "{session}");
        d.expect("pam.stack", "ok");
    }
    // the fixes applied
    for session in [
        good.clone(),
        format!("{good}\nsession required pam_env.so user_readenv=2"),
        format!("session required pam_env.so user_readenv=0\nsession [success=1 default=ignore] pam_succeed_if.so uid < 1000\nsession required pam_limits.so\n{good}"),
    ] {
        env.write_pam(&format!(
            "auth requisite {so}\n@include common-auth\n{session}\n@include common-session\n"
        ));
        env.doctor(&[]).expect("pam.session", "ok");
    }
}

#[test]
fn doctor_says_which_pam_files_name_the_module() {
    let env = Env::new(|c| c.url(dead_url()));
    let so = env.pam_so.display().to_string();
    let dir = env.pam_file.parent().unwrap().to_owned();
    let d = env.doctor(&[]);
    d.expect("pam.included", "ok");
    let found = d.found("pam.included");
    assert!(
        found.contains("pam-sshd (auth line 2), pam-sshd (session line 6)"),
        "{found}"
    );
    assert!(
        found.contains("first remove the pam_keyward lines from every PAM file, then the sshd drop-in, reload sshd, and only then remove the package"),
        "{found}"
    );
    // the auth line moved into a shared stack that sudo includes too
    write_file(
        &dir.join("common-auth"),
        format!("auth requisite {so}\nauth required pam_unix.so\n"),
        0o644,
    );
    write_file(&dir.join("sudo"), "@include common-auth\n", 0o644);
    env.write_pam(&format!(
        "@include {}\nsession required {so} require_publickey\n",
        dir.join("common-auth").display()
    ));
    let d = env.doctor(&[]);
    d.expect("pam.included", "warn");
    let found = d.found("pam.included");
    assert!(
        found.contains("common-auth (auth line 1), pam-sshd (session line 2)"),
        "{found}"
    );
    assert!(
        found.contains("PAM services that reach it: common-auth, pam-sshd, sudo"),
        "{found}"
    );
    assert!(
        found.contains("common-auth (included by pam-sshd, sudo)"),
        "{found}"
    );
    assert!(
        d.fix("pam.included").contains("sshd file itself"),
        "{}",
        d.fix("pam.included")
    );
}

#[test]
fn doctor_names_wrong_authorized_keys_command_user() {
    let env = Env::new(|c| c.url(dead_url()));
    env.write_sshd(&["AuthorizedKeysCommandUser nobody"]);
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    d.expect("sshd.command_user", "fail");
    assert!(d
        .found("sshd.command_user")
        .contains("AuthorizedKeysCommandUser nobody"));
    assert_eq!(
        d.fix("sshd.command_user"),
        format!(
            "AuthorizedKeysCommandUser keyward in {}",
            env.sshd_config.display()
        )
    );
    // [files] needs root
    let mut env = env;
    let mut c = env.config.clone();
    c.files = vec!["%h/.ssh/authorized_keys".into()];
    env.set_config(c);
    env.write_sshd(&[]);
    let d = env.doctor(&[]);
    d.expect("sshd.command_user", "fail");
    assert!(d.found("sshd.command_user").contains("[files]"));
    assert!(d
        .fix("sshd.command_user")
        .starts_with("AuthorizedKeysCommandUser root"));
}

#[test]
fn doctor_names_unreachable_mirror() {
    let nginx = Nginx::start();
    let dead = dead_url();
    let env = Env::new(|c| c.url(dead.clone()).url(nginx.users_url()));
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    let mirrors = d.checks("directory.mirror");
    assert_eq!(mirrors.len(), 2, "{}", d.out);
    assert_eq!(mirrors[0]["subject"], dead.as_str());
    assert_eq!(mirrors[0]["status"], "fail");
    let found = mirrors[0]["found"].as_str().unwrap();
    assert!(found.starts_with("unreachable: "), "{found}");
    assert!(
        found.contains("refused") || found.contains("connection failed"),
        "{found}"
    );
    assert!(mirrors[0]["fix"]
        .as_str()
        .unwrap()
        .contains("directory server is running"));
    // the second mirror answers
    assert_ne!(mirrors[1]["status"], "fail", "{}", d.out);
}

/// `openssl s_server` with a self-signed certificate nobody trusts.
struct UntrustedTls {
    child: std::process::Child,
    port: u16,
    _dir: TestDir,
}

impl UntrustedTls {
    fn start() -> UntrustedTls {
        let dir = TestDir::new("doctor-tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        must(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let mut s = UntrustedTls {
            child,
            port,
            _dir: dir,
        };
        if !wait_port(port, Duration::from_secs(10)) {
            let _ = s.child.kill();
            panic!("openssl s_server did not start");
        }
        s
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn doctor_names_untrusted_tls_certificate() {
    let tls = UntrustedTls::start();
    let url = format!("https://127.0.0.1:{}/users/{{user}}.keys", tls.port);
    let env = Env::new(|c| c.url(url.clone()));
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    let c = d.expect("directory.mirror", "fail");
    let found = c["found"].as_str().unwrap().to_ascii_lowercase();
    assert!(found.contains("certificate"), "{found}");
    assert!(d.fix("directory.mirror").contains("ca_file"), "{}", d.out);
}

fn utc(t: u64) -> String {
    let out =
        must(Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]));
    out.stdout.trim().to_owned()
}

fn sign(dir: &Path, signer: &SshKey, body: &str) -> Vec<u8> {
    let file = dir.join(format!("tosign-{}", unique()));
    write_file(&file, body, 0o644);
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
            .arg(&signer.path)
            .arg(&file),
    );
    let sig = fs::read(format!("{}.sig", file.display())).unwrap();
    let _ = fs::remove_file(&file);
    let _ = fs::remove_file(format!("{}.sig", file.display()));
    sig
}

#[test]
fn doctor_names_bad_signature() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let keys = TestDir::new("doctor-sig");
    let good = SshKey::ed25519(keys.path(), "signer");
    let other = SshKey::ed25519(keys.path(), "other");
    let user_key = SshKey::ed25519(keys.path(), "user");
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            toml_str(&good.public_line())
        ),
        1,
    );
    env.kw.write_config(&toml);
    let user = fake_user();
    let body = format!(
        "#keyward user={user} serial=7 expires={}\n{}\n",
        utc(now() + 86400),
        user_key.public_line()
    );
    nginx.put_keys(&user, &body);
    nginx.put(
        &format!("users/{user}.keys.sig"),
        sign(keys.path(), &other, &body),
    );
    let d = env.doctor(&["--user", &user]);
    assert_eq!(d.out.code, Some(2), "{}", d.out);
    d.expect("directory.signers", "ok");
    // the mirror itself is fine (404 for the probe user)
    d.expect("directory.mirror", "ok");
    let c = d.expect("directory.user", "fail");
    let found = c["found"].as_str().unwrap();
    assert!(
        found.starts_with(&format!("{user}: bad signature")),
        "{found}"
    );
    assert!(found.contains(&other.fingerprint()), "{found}");
    assert!(found.contains("not a configured signer"), "{found}");
    assert!(d.fix("directory.user").contains("re-sign"));
    // signed by the pinned key: valid
    nginx.put(
        &format!("users/{user}.keys.sig"),
        sign(keys.path(), &good, &body),
    );
    let d = env.doctor(&["--user", &user]);
    d.expect("directory.user", "ok");
    assert!(d
        .found("directory.user")
        .contains("signature valid (serial 7)"));
    // still without touching the cache
    assert!(fs::read_dir(&env.cache).unwrap().next().is_none());
}

/// Rewrites the `fetched_at` of a cache entry (the checksum covers the body only).
fn age_entry(path: &Path, age: u64) {
    let text = fs::read_to_string(path).unwrap();
    let aged: String = text
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with("fetched_at ") {
                format!("fetched_at {}\n", now() - age)
            } else {
                l.to_owned()
            }
        })
        .collect();
    fs::write(path, aged).unwrap();
}

#[test]
fn doctor_names_stale_cache() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()).ttl("5m").max_stale("1d"));
    let keys = TestDir::new("doctor-cache");
    let k = SshKey::ed25519(keys.path(), "k");
    let (fresh, stale, old, corrupt) = (fake_user(), fake_user(), fake_user(), fake_user());
    for u in [&fresh, &stale, &old, &corrupt] {
        nginx.put_keys(u, &format!("{}\n", k.public_line()));
        let out = env.kw.keys(u, None);
        assert!(out.success(), "{out}");
    }
    age_entry(&env.cache.join(&stale), 3600);
    age_entry(&env.cache.join(&old), 3 * 86400);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(env.cache.join(&corrupt))
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    let tmp = env.cache.join(".tmp-crashed");
    write_file(&tmp, "partial", 0o640);
    chown_to(&tmp, "keyward");
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();

    let before = fs::read(env.cache.join(&old)).unwrap();
    let d = env.doctor(&[]);
    assert_eq!(
        d.out.code,
        Some(1),
        "warnings only (exit 1): {:?}\n{}",
        d.failing(),
        d.out
    );
    d.expect("cache.entries", "ok");
    assert!(
        d.found("cache.entries").contains("1 fresh, 1 stale"),
        "{}",
        d.found("cache.entries")
    );
    d.expect("cache.expired", "warn");
    let found = d.found("cache.expired");
    assert!(
        found.contains(&format!("{old} (3d old, max_stale 1d)")),
        "{found}"
    );
    assert!(found.contains("older than max_stale"), "{found}");
    assert!(d.fix("cache.expired").starts_with("keyward sync"));
    d.expect("cache.corrupt", "warn");
    assert!(d.found("cache.corrupt").contains(&corrupt));
    d.expect("cache.tmp", "warn");
    assert!(d.found("cache.tmp").contains(".tmp-crashed"));
    assert_eq!(
        d.fix("cache.tmp"),
        format!("rm -f {}/.tmp-*", env.cache.display())
    );
    // doctor changed nothing: the old entry is still there, still old
    assert_eq!(fs::read(env.cache.join(&old)).unwrap(), before);
    assert!(tmp.exists());

    // an unsafe entry makes the login path fail closed: a failure
    chmod(&env.cache.join(&fresh), 0o666);
    let d = env.doctor(&[]);
    assert_eq!(d.out.code, Some(2));
    d.expect("cache.entries", "fail");
    assert!(d.found("cache.entries").contains(&fresh));
    assert_eq!(
        d.fix("cache.entries"),
        format!("chmod go-w {}", env.cache.join(&fresh).display())
    );
}

#[test]
fn doctor_as_unprivileged_user_says_what_it_skipped() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let args = env.doctor_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let someone = TestUser::new();
    let d = Env::parse(env.kw.run_as(&someone.name, &args));
    assert_ne!(d.json["uid"], 0);
    d.expect("config.parse", "ok");
    d.expect("binary", "ok");
    d.expect("sshd", "skip");
    assert!(d.found("sshd").starts_with("skipped: needs root"));
    d.expect("cache.write", "skip");
    assert!(d.found("cache.write").contains("needs root"));
    d.expect("cache.entries", "skip");
    d.expect("pam.stack", "ok");
    assert_eq!(d.json["summary"]["fail"], 0, "{:?}", d.failing());
    assert_eq!(d.out.code, Some(nagios(&d.json)), "{:?}", d.failing());
}

#[test]
fn doctor_names_other_sshd_problems() {
    let env = Env::new(|c| c.url(dead_url()));
    env.write_sshd(&[
        "PermitEmptyPasswords yes",
        "PermitRootLogin yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "AuthorizedKeysCommand /usr/bin/true keys %u",
    ]);
    let d = env.doctor(&[]);
    d.expect("sshd.empty_passwords", "fail");
    d.expect("sshd.root_login", "warn");
    d.expect("sshd.keys_file", "warn");
    assert!(d.found("sshd.keys_file").contains("outside keyward"));
    d.expect("sshd.command", "fail");
    d.expect("binary", "ok");
}

// ---------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------

fn key_by_fp<'a>(v: &'a Value, fp: &str) -> Vec<&'a Value> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["fingerprint"] == fp)
        .collect()
}

#[test]
fn explain_gives_each_policy_verdict() {
    let nginx = Nginx::start();
    let keys = TestDir::new("explain-keys");
    let mut env = Env::new(|c| c.url(nginx.users_url()));
    let mut c = env.config.clone();
    c.key_types = Some(vec!["ssh-ed25519".into(), "ssh-rsa".into()]);
    c.max_keys = Some(3);
    env.set_config(c);
    let a = SshKey::ed25519(keys.path(), "a");
    let b = SshKey::generate(keys.path(), "b", KeyType::Ecdsa(256));
    let r = SshKey::generate(keys.path(), "r", KeyType::Rsa(1024));
    let x = SshKey::ed25519(keys.path(), "x");
    let e = SshKey::ed25519(keys.path(), "e");
    let f = SshKey::ed25519(keys.path(), "f");
    let g = SshKey::ed25519(keys.path(), "g");
    let leaked = fs::read_to_string(&g.path).unwrap();
    let body = format!(
        // a duplicate is a line identical in options and key
        "restrict {a}\n{b}\n{r}\nexpiry-time=\"20000101\" {x}\nrestrict {a_again} second copy\nthis is not a key\n{e}\n{f}\n{g}\n{leaked}",
        a = a.public_line(),
        b = b.public_line(),
        r = r.public_line(),
        x = x.public_line(),
        a_again = a.public_material(),
        e = e.public_line(),
        f = f.public_line(),
        g = g.public_line(),
    );
    let user = fake_user();
    nginx.put_keys(&user, &body);
    let (out, v) = env.explain_json(&[&user]);
    let one = |k: &SshKey| key_by_fp(&v, &k.fingerprint())[0].clone();
    assert_eq!(one(&a)["verdict"], "served", "{out}");
    assert_eq!(one(&a)["n"], 1);
    assert_eq!(one(&a)["source"], "directory");
    assert_eq!(one(&a)["via"], "directory");
    assert_eq!(one(&a)["comment"], "kwt-a");
    assert_eq!(one(&a)["key_type"], "ssh-ed25519");
    assert_eq!(one(&a)["bits"], 256);
    assert_eq!(one(&b)["reason_tag"], "key-type");
    assert_eq!(one(&r)["reason_tag"], "rsa-bits");
    assert_eq!(one(&r)["bits"], 1024);
    assert!(one(&r)["reason"]
        .as_str()
        .unwrap()
        .contains("below min_rsa_bits 2048"));
    assert_eq!(one(&x)["reason_tag"], "expired");
    let dup = key_by_fp(&v, &a.fingerprint())[1];
    assert_eq!(dup["reason_tag"], "duplicate");
    assert_eq!(dup["reason"], "duplicate of key #1");
    assert_eq!(dup["options"], "restrict");
    assert_eq!(one(&e)["verdict"], "served");
    assert_eq!(one(&f)["verdict"], "served");
    assert_eq!(one(&g)["reason_tag"], "max-keys");
    let invalid: Vec<&Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["reason_tag"] == "invalid")
        .collect();
    assert!(invalid.len() >= 3, "{out}");
    assert_eq!(invalid[0]["line"], 6);
    assert_eq!(
        invalid[0]["reason"],
        "invalid line: unknown option \"this\""
    );
    assert!(invalid.iter().any(|k| k["reason"]
        .as_str()
        .unwrap()
        .contains("looks like a PRIVATE key")));
    assert!(v["verdict"].as_str().unwrap().starts_with("3 of "), "{out}");
    // served, but the account is unknown to NSS: sshd never asks (exit 1)
    assert_eq!(v["can_log_in"], false, "{out}");
    assert_eq!(out.code, Some(1));
    // explain uses the login path: the answer is now cached
    assert!(env.cache.join(&user).exists());

    // Nothing of the pasted private key is ever printed, JSON or human.
    let human = env.explain(&[&user]);
    assert_eq!(human.code, out.code, "human and JSON runs agree: {human}");
    for line in leaked.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!out.stdout.contains(line), "private key material in JSON");
        assert!(
            !human.stdout.contains(line),
            "private key material in output"
        );
    }
    for word in [
        "served",
        "dropped: rsa-bits",
        "dropped: key-type",
        "dropped: expired",
        "dropped: duplicate",
        "dropped: max-keys",
        "dropped: invalid",
        "FINGERPRINT",
        "directory:1 (cache)",
    ] {
        assert!(human.stdout.contains(word), "{word}: {human}");
    }
    assert!(!human.stdout.contains('\x1b'), "{human}");

    // --fingerprint: which key sshd would match, and whether it is printed
    let (_, v) = env.explain_json(&[&user, "--fingerprint", &a.fingerprint()]);
    let ks = key_by_fp(&v, &a.fingerprint());
    assert_eq!(
        (ks[0]["matches"].clone(), ks[0]["printed"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert_eq!(ks[1]["printed"], false);
    assert!(
        v["verdict"].as_str().unwrap().contains("key #1 is printed"),
        "{v}"
    );
    let (_, v) = env.explain_json(&[&user, "--fingerprint", &r.fingerprint()]);
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .contains("is dropped (RSA key of 1024 bits"),
        "{v}"
    );
    let (_, v) = env.explain_json(&[&user, "--fingerprint", "SHA256:AAAAnotakeyAAAA"]);
    assert!(
        v["verdict"].as_str().unwrap().contains("sshd rejects it"),
        "{v}"
    );
    // user unknown to NSS: sshd would not even ask
    let nss = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "account.nss")
        .unwrap();
    assert_eq!(nss["status"], "fail");
}

#[test]
fn explain_names_unsafe_file_and_real_account() {
    let env = {
        let mut env = Env::new(|c| c);
        let mut c = env.config.clone();
        c.files = vec![
            "%h/.ssh/authorized_keys".into(),
            "%h/.ssh/authorized_keys2".into(),
        ];
        env.set_config(c);
        env.write_sshd(&["AuthorizedKeysCommandUser root"]);
        env
    };
    let user = TestUser::new();
    let keys = TestDir::new("explain-files");
    let (bad, good) = (
        SshKey::ed25519(keys.path(), "bad"),
        SshKey::ed25519(keys.path(), "good"),
    );
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    chown_to(&ssh, &user.name);
    chmod(&ssh, 0o700);
    let unsafe_file = ssh.join("authorized_keys");
    write_file(&unsafe_file, format!("{}\n", bad.public_line()), 0o664);
    chown_to(&unsafe_file, &user.name);
    let safe_file = ssh.join("authorized_keys2");
    write_file(&safe_file, format!("{}\n", good.public_line()), 0o600);
    chown_to(&safe_file, &user.name);

    let (out, v) = env.explain_json(&[&user.name]);
    let served = key_by_fp(&v, &good.fingerprint())[0];
    assert_eq!(served["verdict"], "served", "{out}");
    // a real account with a served key: explain exits 0
    assert_eq!(v["can_log_in"], true, "{out}");
    assert_eq!(out.code, Some(0));
    assert_eq!(served["via"], "files");
    assert_eq!(served["source"], safe_file.display().to_string());
    assert!(served["age_s"].as_u64().is_some(), "{out}");
    let skipped: Vec<&Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["verdict"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{out}");
    assert_eq!(skipped[0]["reason_tag"], "unsafe-file");
    assert_eq!(skipped[0]["source"], unsafe_file.display().to_string());
    let why = skipped[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("group-writable") && why.contains("chmod go-w"),
        "{why}"
    );
    assert!(key_by_fp(&v, &bad.fingerprint()).is_empty());
    // the account as sshd sees it
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {out}"))["status"]
            .clone()
    };
    assert_eq!(status("account.nss"), "ok");
    assert_eq!(status("account.password"), "ok");
    assert_eq!(status("account.shell"), "ok");
    assert_eq!(status("sshd.runs"), "ok");
    let human = env.explain(&[&user.name]);
    assert!(human.stdout.contains("skipped: unsafe-file"), "{human}");
    assert!(
        human.stdout.contains("1 of 1 key line(s) served"),
        "{human}"
    );
}

#[test]
fn explain_names_denied_user() {
    let nginx = Nginx::start();
    let user = fake_user();
    let env = Env::new(|c| {
        c.url(nginx.users_url())
            .deny_users(&["root", user.as_str()])
    });
    nginx.put_keys(&user, "# nothing\n");
    let (out, v) = env.explain_json(&[&user]);
    let deny = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "keyward.deny")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(deny["status"], "fail");
    assert!(deny["found"].as_str().unwrap().contains("deny_users"));
    assert!(
        v["verdict"].as_str().unwrap().starts_with("denied"),
        "{out}"
    );
    assert_eq!(v["can_log_in"], false, "denied: exit 1");
    assert_eq!(out.code, Some(1));
    // like the login path: no source is consulted for a denied user
    assert_eq!(nginx.count(&user), 0);
}

#[test]
fn explain_names_locked_account_only_when_sshd_checks_it() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let user = TestUser::new();
    must(Command::new("usermod").args(["-p", "!", &user.name]));
    nginx.put_keys(&user.name, "# none yet\n");
    let status = |v: &Value, id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {v}"))["status"]
            .clone()
    };
    // UsePAM yes: sshd leaves the lock to PAM's account stack, keys work
    let (_, v) = env.explain_json(&[&user.name]);
    assert_eq!(status(&v, "account.password"), "ok", "{v}");
    assert_eq!(status(&v, "sshd.runs"), "ok", "{v}");
    // UsePAM no: sshd itself refuses a locked account, keys included
    env.write_sshd(&["UsePAM no"]);
    let (out, v) = env.explain_json(&[&user.name]);
    assert_eq!(status(&v, "account.password"), "fail", "{out}");
    assert_eq!(status(&v, "sshd.runs"), "fail", "{out}");
    let human = env.explain(&[&user.name]);
    assert!(
        human
            .stdout
            .contains(&format!("usermod -p '*' {}", user.name)),
        "{human}"
    );
}

#[test]
fn doctor_colours_only_on_a_terminal_without_no_color() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let line = format!(
        "{} --config {} doctor --sshd-config {} --pam-file {}",
        env.kw.bin.display(),
        env.kw.config.display(),
        env.sshd_config.display(),
        env.pam_file.display()
    );
    // `script` gives the command a pseudo-terminal as stdout.
    let on_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TERM", "xterm")
            .args(["-qec", &line, "/dev/null"]);
        if no_color {
            c.env("NO_COLOR", "1");
        }
        run(&mut c, Duration::from_secs(60))
    };
    let tty = on_tty(false);
    assert!(tty.stdout.contains("\x1b[32mok\x1b[0m"), "{tty}");
    let plain = on_tty(true);
    assert!(plain.stdout.contains("ok "), "{plain}");
    assert!(!plain.stdout.contains('\x1b'), "NO_COLOR: {plain}");
}

/// The state directory (the rollback floors) is checked like the cache:
/// group-writable or missing, doctor fails it and says how to fix it.
#[test]
fn doctor_checks_the_state_directory_like_the_cache() {
    let nginx = Nginx::start();
    let env = Env::new(|c| c.url(nginx.users_url()));
    let state = crate::support::keyward::state_dir_of(&env.cache);
    let d = env.doctor(&[]);
    d.expect("state.dir", "ok");
    assert!(
        d.found("state.dir").contains("owned by keyward"),
        "{}",
        d.out
    );
    chmod(&state, 0o770);
    let d = env.doctor(&[]);
    d.expect("state.dir", "fail");
    assert!(d.found("state.dir").contains("group-writable"), "{}", d.out);
    fs::remove_dir(&state).unwrap();
    let d = env.doctor(&[]);
    d.expect("state.dir", "fail");
    assert!(
        d.found("state.dir").contains("rollback floors"),
        "{}",
        d.out
    );
}
