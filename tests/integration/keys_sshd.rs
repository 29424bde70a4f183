//! End to end: a real sshd on a private port runs
//! `AuthorizedKeysCommand <keyward> --config C keys %u %f %U` as the `keyward`
//! user, keyward answers from a real nginx key directory, logs to a private
//! rsyslog, and the ssh client either gets in or does not.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::fault;
use crate::support::rsyslog::LogLine;
use crate::support::*;

/// nginx directory + keyward (cache, rsyslog) + sshd wired to it.
struct Stack {
    keys: TestDir,
    nginx: Nginx,
    env: KeysEnv,
    sshd: Sshd,
}

impl Stack {
    fn new(configure: impl FnOnce(KwConfig) -> KwConfig) -> Stack {
        let keys = TestDir::new("sshdkeys");
        let nginx = Nginx::start();
        let url = nginx.users_url();
        let env = KeysEnv::new(|c| configure(c.url(url).timeout("3s")));
        let sshd = Sshd::builder()
            .authorized_keys_command(&env.kw.authorized_keys_command())
            .authorized_keys_command_user("keyward")
            .start();
        Stack {
            keys,
            nginx,
            env,
            sshd,
        }
    }

    fn key(&self, name: &str, kind: KeyType) -> SshKey {
        SshKey::generate(self.keys.path(), name, kind)
    }

    fn publish(&self, user: &TestUser, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.nginx.put_keys(&user.name, &text);
    }

    /// Logs in with `key` and runs `id -un`; true if it worked as `user`.
    fn login(&self, user: &TestUser, key: &SshKey) -> SshOut {
        let r = self.sshd.login(&user.name, &key.path, "id -un");
        if r.ok {
            assert_eq!(r.stdout().trim(), user.name, "{r}");
        }
        r
    }

    fn is_line(l: &LogLine, user: &TestUser, fp: &str) -> bool {
        l.program == "keyward"
            && l.field("user").as_deref() == Some(user.name.as_str())
            && l.field("fp").as_deref() == Some(fp)
    }

    /// keyward lines so far for `user` asking about `fp`.
    fn count(&self, user: &TestUser, fp: &str) -> usize {
        self.env
            .log
            .lines()
            .iter()
            .filter(|l| Self::is_line(l, user, fp))
            .count()
    }

    /// Logs in with `key` (`id -un`) and returns the result with the last
    /// keyward line written for this user and key during the attempt.
    fn attempt(&self, user: &TestUser, key: &SshKey) -> (SshOut, LogLine) {
        let fp = key.fingerprint();
        let before = self.count(user, &fp);
        let r = self.login(user, key);
        let line = self
            .env
            .log
            .wait_for_n(before + 1, Duration::from_secs(10), |l| {
                Self::is_line(l, user, &fp)
            })
            .into_iter()
            .skip(before)
            .last()
            .unwrap_or_else(|| {
                panic!(
                    "no new keyward line for user={} fp={fp}\n{r}\n{}",
                    user.name,
                    self.debug()
                )
            });
        (r, line)
    }

    fn debug(&self) -> String {
        format!(
            "--- syslog ---\n{}--- sshd log ---\n{}",
            self.env.log.text(),
            self.sshd.log_text()
        )
    }
}

#[test]
fn sshd_ed25519_ecdsa_rsa_and_certificate_logins() {
    let s = Stack::new(|c| c.ttl("5m"));
    let user = TestUser::new();
    let ed = s.key("ed", KeyType::Ed25519);
    let ec = s.key("ec", KeyType::Ecdsa(256));
    let rsa = s.key("rsa", KeyType::Rsa(3072));
    let ca = s.key("ca", KeyType::Ed25519);
    let certkey = s.key("certkey", KeyType::Ed25519);
    let cert = ca.sign_user_cert(&certkey, "kwt-cert", &[&user.name]);
    s.publish(
        &user,
        &[
            ed.public_line(),
            ec.public_line(),
            rsa.public_line(),
            ca.cert_authority_line(),
        ],
    );

    for k in [&ed, &ec, &rsa] {
        let (r, line) = s.attempt(&user, k);
        assert!(r.ok, "{:?} login: {r}\n{}", k.kind, s.debug());
        line.assert_field("decision", "match");
        assert_eq!(line.facility, "authpriv", "{}", line.raw);
        assert!(line.field("fp").unwrap().starts_with("SHA256:"));
    }
    assert!(
        s.sshd.wait_log(
            &format!("Accepted publickey for {}", user.name),
            Duration::from_secs(5)
        ),
        "{}",
        s.debug()
    );

    // a certificate signed by the CA the directory lists as cert-authority
    let r = s
        .sshd
        .login_cert(&user.name, &certkey.path, &cert, "id -un");
    assert!(r.ok, "certificate login: {r}\n{}", s.debug());
    assert_eq!(r.stdout().trim(), user.name);
    assert!(
        s.sshd.wait_log("ED25519-CERT", Duration::from_secs(5)),
        "sshd accepted a certificate: {}",
        s.debug()
    );

    // the same certified key without its certificate is not authorized
    let r = s.login(&user, &certkey);
    assert!(!r.ok, "bare certified key must be refused: {r}");

    // one directory request: everything after the first lookup came from cache
    assert_eq!(s.nginx.count(&user.name), 1, "{:?}", s.nginx.accesses());
}

/// The shipped `keys %u %f %U`: sshd passes the uid it resolved, keyward
/// logs it, and a second uid-0 account is denied on that uid (root is in
/// deny_users, as by default) while a plain account logs in.
#[test]
fn sshd_passes_the_uid_and_a_second_root_account_is_denied() {
    let s = Stack::new(|c| c.ttl("5m").deny_users(&["root"]));
    let alice = TestUser::new();
    let toor = TestUser::builder().uid0().create();
    let a = s.key("a", KeyType::Ed25519);
    let t = s.key("t", KeyType::Ed25519);
    s.publish(&alice, &[a.public_line()]);
    s.publish(&toor, &[t.public_line()]);

    let (r, line) = s.attempt(&alice, &a);
    assert!(r.ok, "{r}\n{}", s.debug());
    assert_eq!(
        line.field("uid"),
        Some(alice.uid.to_string()),
        "{}",
        line.raw
    );

    let (r, line) = s.attempt(&toor, &t);
    assert!(!r.ok, "a uid-0 account must be refused: {r}");
    line.assert_field("decision", "deny");
    line.assert_field("uid", "0");
    assert!(
        line.field("reason").unwrap_or_default().contains("uid 0"),
        "{}",
        line.raw
    );
    assert_eq!(
        s.nginx.count(&toor.name),
        0,
        "no fetch for a denied account"
    );
}

#[test]
fn sshd_refuses_unknown_key_denied_user_small_rsa_and_unsafe_cache() {
    let s = Stack::new(|c| c.ttl("5m").min_rsa_bits(2048));
    let alice = TestUser::new();
    let denied = TestUser::new();
    let small = TestUser::new();
    let fragile = TestUser::new();
    let mut cfg = s.env.config.clone();
    cfg.deny_users = Some(vec!["root".into(), denied.name.clone()]);
    s.env.kw.write_config(&cfg.to_toml());

    let a = s.key("a", KeyType::Ed25519);
    let stranger = s.key("stranger", KeyType::Ed25519);
    let d = s.key("d", KeyType::Ed25519);
    let rsa1024 = s.key("rsa1024", KeyType::Rsa(1024));
    let f = s.key("f", KeyType::Ed25519);
    s.publish(&alice, &[a.public_line()]);
    s.publish(&denied, &[d.public_line()]);
    s.publish(&small, &[rsa1024.public_line()]);
    s.publish(&fragile, &[f.public_line()]);

    // control: the right key works
    let r = s.login(&alice, &a);
    assert!(r.ok, "{r}\n{}", s.debug());

    // an unknown key
    let (r, line) = s.attempt(&alice, &stranger);
    assert!(!r.ok, "unknown key must be refused: {r}");
    line.assert_field("decision", "nomatch");
    assert!(line.field("reason").is_some(), "{}", line.raw);

    // a user in deny_users, whose key IS in the directory
    let (r, line) = s.attempt(&denied, &d);
    assert!(!r.ok, "denied user must be refused: {r}");
    line.assert_field("decision", "deny");
    assert!(line.field("reason").is_some(), "{}", line.raw);
    assert_eq!(
        s.nginx.count(&denied.name),
        0,
        "no lookup for a denied user"
    );

    // RSA 1024 below min_rsa_bits 2048 (sshd itself would accept it)
    let (r, line) = s.attempt(&small, &rsa1024);
    assert!(!r.ok, "RSA 1024 must be refused: {r}");
    line.assert_field("decision", "nomatch");
    let reason = line.field("reason").unwrap_or_default();
    assert!(
        reason.contains("1024") || reason.contains("min_rsa_bits"),
        "reason should say the key is too small: {}",
        line.raw
    );

    // warm-up, then the cache entry becomes group-writable
    let r = s.login(&fragile, &f);
    assert!(r.ok, "warm-up login: {r}\n{}", s.debug());
    let entry = s.env.entry(&fragile.name);
    let mode = fs::metadata(&entry).unwrap().permissions().mode() & 0o7777;
    chmod(&entry, mode | 0o020);
    let (r, line) = s.attempt(&fragile, &f);
    assert!(!r.ok, "group-writable cache entry must fail closed: {r}");
    line.assert_field("decision", "fail");
    let reason = line.field("reason").unwrap_or_default();
    assert!(
        reason.contains(&entry.display().to_string()),
        "reason names the file: {}",
        line.raw
    );
    assert!(
        reason.contains(&format!("{:04o}", mode | 0o020)),
        "reason names the mode: {}",
        line.raw
    );
    assert_eq!(
        line.field("fp").as_deref(),
        Some(f.fingerprint().as_str()),
        "{}",
        line.raw
    );
}

#[test]
fn sshd_enforces_from_option_served_by_the_directory() {
    let s = Stack::new(|c| c.ttl("5m"));
    let user = TestUser::new();
    let far = s.key("far", KeyType::Ed25519);
    let near = s.key("near", KeyType::Ed25519);
    let cmd = s.key("cmd", KeyType::Ed25519);
    s.publish(
        &user,
        &[
            format!("from=\"10.9.8.7\" {}", far.public_line()),
            format!("from=\"127.0.0.1\" {}", near.public_line()),
            format!("command=\"echo forced a b\",no-pty {}", cmd.public_line()),
        ],
    );

    let (r, line) = s.attempt(&user, &far);
    assert!(
        !r.ok,
        "from=\"10.9.8.7\" must be refused from 127.0.0.1: {r}"
    );
    // keyward did serve it (the refusal is sshd enforcing the option)
    line.assert_field("decision", "match");

    let r = s.login(&user, &near);
    assert!(r.ok, "from=\"127.0.0.1\" must work: {r}\n{}", s.debug());

    // command="…" with spaces reaches sshd intact
    let r = s.sshd.login(&user.name, &cmd.path, "id -un");
    assert!(r.ok, "{r}\n{}", s.debug());
    assert_eq!(r.stdout().trim(), "forced a b", "{r}");
}

#[test]
fn sshd_directory_down_serves_stale_cache_then_fails_closed() {
    let s = Stack::new(|c| c.ttl("1s").max_stale("4s").timeout("2s"));
    let user = TestUser::new();
    let k = s.key("k", KeyType::Ed25519);
    s.publish(&user, &[k.public_line()]);
    let warm = std::time::Instant::now();
    let r = s.login(&user, &k);
    assert!(r.ok, "{r}\n{}", s.debug());

    // every mirror down
    let mut cfg = s.env.config.clone();
    cfg.urls = vec![fault::dead_url()];
    s.env.kw.write_config(&cfg.to_toml());
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(warm.elapsed()));
    let (r, line) = s.attempt(&user, &k);
    assert!(
        r.ok,
        "stale entry within max_stale must still log in: {r}\n{}",
        s.debug()
    );
    line.assert_field("source", "stale");

    std::thread::sleep(Duration::from_millis(5500).saturating_sub(warm.elapsed()));
    let (r, line) = s.attempt(&user, &k);
    assert!(
        !r.ok,
        "past max_stale with the directory down: refused: {r}"
    );
    line.assert_field("decision", "fail");
    assert!(line.field("reason").is_some(), "{}", line.raw);
}

/// sshd tries every line: two `cert-authority` lines for one CA with other
/// `principals=` are two grants, not a duplicate. The certificate whose
/// principal only the second line names must log in (it did not when
/// keyward dropped the second line as a duplicate of the first).
#[test]
fn sshd_second_cert_authority_line_for_the_same_ca_grants_its_principal() {
    let s = Stack::new(|c| c.ttl("5m"));
    let user = TestUser::new();
    let ca = s.key("ca", KeyType::Ed25519);
    let web = s.key("web", KeyType::Ed25519);
    let ops = s.key("ops", KeyType::Ed25519);
    let web_cert = ca.sign_user_cert(&web, "kwt-web", &["team-web"]);
    let ops_cert = ca.sign_user_cert(&ops, "kwt-ops", &["team-ops"]);
    s.publish(
        &user,
        &[
            format!("cert-authority,principals=\"team-db\" {}", ca.public_line()),
            format!(
                "cert-authority,principals=\"team-web\" {}",
                ca.public_line()
            ),
            // An exact repeat is the only kind of duplicate dropped.
            format!(
                "cert-authority,principals=\"team-web\" {}",
                ca.public_line()
            ),
        ],
    );
    let r = s
        .sshd
        .login_cert(&user.name, &web.path, &web_cert, "id -un");
    assert!(
        r.ok,
        "team-web certificate, granted by line 2: {r}\n{}",
        s.debug()
    );
    assert_eq!(r.stdout().trim(), user.name);
    let r = s
        .sshd
        .login_cert(&user.name, &ops.path, &ops_cert, "id -un");
    assert!(!r.ok, "team-ops is named by no line: {r}");
    let line = s
        .env
        .log
        .lines_of("keyward")
        .into_iter()
        .rfind(|l| l.field("user").as_deref() == Some(user.name.as_str()))
        .expect("a keyward line");
    assert!(
        line.field("drop")
            .unwrap_or_default()
            .contains("duplicate of key #2"),
        "the exact repeat is dropped and logged: {line:?}"
    );
}
