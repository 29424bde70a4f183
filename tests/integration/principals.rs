//! Certificate principals: a real sshd with `TrustedUserCAKeys`
//! runs `AuthorizedPrincipalsCommand <keyward> principals %u …` as the
//! keyward user; the directory's `<account>.principals` decides which
//! certificate principals may log in as the account.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::keyward::toml_str;
use crate::support::rsyslog::LogLine;
use crate::support::*;

/// The sshd lines, principals first (OpenSSH before 9.4 ignores
/// AuthorizedPrincipalsCommand after AuthorizedKeysCommand).
fn principals_lines(kw: &Keyward) -> [String; 2] {
    [
        format!(
            "AuthorizedPrincipalsCommand {} --config {} principals %u uid=%U fp=%f ca=%F id=%i serial=%s",
            kw.bin.display(),
            kw.config.display()
        ),
        "AuthorizedPrincipalsCommandUser keyward".to_string(),
    ]
}

/// nginx directory + keyward (cache, rsyslog) + sshd trusting `ca`.
struct Certs {
    keys: TestDir,
    nginx: Nginx,
    env: KeysEnv,
    sshd: Sshd,
    ca: SshKey,
}

impl Certs {
    fn new(configure: impl FnOnce(KwConfig) -> KwConfig) -> Certs {
        let keys = TestDir::new("certkeys");
        let ca = SshKey::ed25519(keys.path(), "ca");
        let nginx = Nginx::start();
        let url = nginx.users_url();
        let env = KeysEnv::new(|c| configure(c.url(url).timeout("3s")));
        let sshd = Certs::sshd(&env.kw, &ca);
        Certs {
            keys,
            nginx,
            env,
            sshd,
            ca,
        }
    }

    fn sshd(kw: &Keyward, ca: &SshKey) -> Sshd {
        Certs::sshd_ordered(kw, ca, true)
    }

    /// `principals_first: false` writes AuthorizedKeysCommand first: the
    /// order OpenSSH before 9.4 silently ignores the principals command in.
    fn sshd_ordered(kw: &Keyward, ca: &SshKey, principals_first: bool) -> Sshd {
        let [apc, apcu] = principals_lines(kw);
        let akc = format!("AuthorizedKeysCommand {}", kw.authorized_keys_command());
        let mut b = Sshd::builder().line(&format!("TrustedUserCAKeys {}", ca.pub_path.display()));
        let lines: [&str; 3] = if principals_first {
            [&apc, &apcu, &akc]
        } else {
            [&akc, &apc, &apcu]
        };
        for l in lines {
            b = b.line(l);
        }
        b.authorized_keys_command_user("keyward").start()
    }

    /// A key with a certificate for `principals`, key ID `id`.
    fn cert(&self, name: &str, id: &str, principals: &[&str]) -> (SshKey, std::path::PathBuf) {
        let key = SshKey::ed25519(self.keys.path(), name);
        let cert = self.ca.sign_user_cert(&key, id, principals);
        (key, cert)
    }

    fn serve(&self, account: &str, body: &str) {
        self.nginx.put(&format!("users/{account}.principals"), body);
    }

    fn login(&self, account: &str, cert: &(SshKey, std::path::PathBuf), cmd: &str) -> SshOut {
        self.sshd.login_cert(account, &cert.0.path, &cert.1, cmd)
    }

    fn lines(&self, account: &str) -> Vec<LogLine> {
        self.env
            .log
            .lines_of("keyward")
            .into_iter()
            .filter(|l| {
                l.field("kind").as_deref() == Some("principals")
                    && l.field("user").as_deref() == Some(account)
            })
            .collect()
    }

    /// The last principals line for `account` after a login attempt.
    fn last(&self, account: &str, before: usize) -> LogLine {
        let lines = self
            .env
            .log
            .wait_for_n(before + 1, Duration::from_secs(10), |l| {
                l.field("kind").as_deref() == Some("principals")
                    && l.field("user").as_deref() == Some(account)
            });
        lines
            .into_iter()
            .nth(before)
            .unwrap_or_else(|| panic!("no principals line for {account}\n{}", self.debug()))
    }

    fn debug(&self) -> String {
        format!(
            "--- syslog ---\n{}--- sshd log ---\n{}",
            self.env.log.text(),
            self.sshd.log_text()
        )
    }
}

/// `uid=%U`: a second uid-0 account is denied on the uid sshd passed (root
/// is in deny_users, as by default), its principals never fetched.
#[test]
fn principals_second_root_account_is_denied_on_the_uid_sshd_passes() {
    let s = Certs::new(|c| c.ttl("5m").deny_users(&["root"]));
    let toor = TestUser::builder().uid0().create();
    s.serve(&toor.name, "team-web\n");
    let web = s.cert("web", "alice@laptop", &["team-web"]);
    let r = s.login(&toor.name, &web, "id -un");
    assert!(!r.ok, "a uid-0 account must be refused: {r}");
    let l = s.last(&toor.name, 0);
    l.assert_field("decision", "deny");
    l.assert_field("uid", "0");
    assert!(
        l.field("reason").unwrap_or_default().contains("uid 0"),
        "{}",
        l.raw
    );
    assert_eq!(s.nginx.count(&toor.name), 0, "{:?}", s.nginx.accesses());
}

#[test]
fn principals_certificate_logs_in_as_the_account_the_directory_names() {
    let s = Certs::new(|c| c.ttl("5m"));
    let deploy = TestUser::new();
    s.serve(
        &deploy.name,
        "# who may log in as deploy\nteam-web\nfrom=\"192.0.2.1\" team-db\ncommand=\"echo forced by principals\",no-pty  team-ops # ops\n",
    );
    let web = s.cert("web", "alice@laptop", &["team-web"]);
    let r = s.login(&deploy.name, &web, "id -un");
    assert!(r.ok, "team-web may log in as deploy: {r}\n{}", s.debug());
    assert_eq!(r.stdout().trim(), deploy.name);
    let l = s.last(&deploy.name, 0);
    l.assert_field("decision", "serve");
    l.assert_field("id", "alice@laptop");
    assert_eq!(l.field("uid"), Some(deploy.uid.to_string()), "{}", l.raw);
    l.assert_field("serial", "0");
    assert_eq!(l.field("ca"), Some(s.ca.fingerprint()), "{}", l.raw);
    l.assert_field("served", "3");
    l.assert_field("source", "directory");

    // Another principal, and the account's own name (which sshd accepts by
    // default when no principals command is in effect): refused.
    for (name, p) in [
        ("other", "team-mobile".to_string()),
        ("own", deploy.name.clone()),
    ] {
        let c = s.cert(name, &format!("id-{name}"), &[&p]);
        let r = s.login(&deploy.name, &c, "id -un");
        assert!(!r.ok, "principal {p} must not log in as deploy: {r}");
    }
    // Options on principals lines reach sshd byte for byte: from= keeps
    // team-db out of 127.0.0.1; command= forces team-ops' command.
    let db = s.cert("db", "bob@db", &["team-db"]);
    assert!(!s.login(&deploy.name, &db, "id -un").ok);
    assert!(
        s.sshd.log_text().contains("not from a permitted host"),
        "{}",
        s.debug()
    );
    let ops = s.cert("ops", "carol@ops", &["team-ops"]);
    let r = s.login(&deploy.name, &ops, "id -un");
    assert!(r.ok, "{r}\n{}", s.debug());
    assert_eq!(r.stdout().trim(), "forced by principals");
    // The answer came from the cache after the first lookup.
    assert_eq!(
        s.nginx.count(&format!("{}.principals", deploy.name)),
        1,
        "{:?}",
        s.nginx.accesses()
    );

    // An account the directory has no file for: no principals, no login.
    let stranger = TestUser::new();
    let before = s.lines(&stranger.name).len();
    let c = s.cert("stranger", "x", &["team-web"]);
    assert!(!s.login(&stranger.name, &c, "id -un").ok);
    let l = s.last(&stranger.name, before);
    l.assert_field("decision", "noprincipals");
}

#[test]
fn principals_outage_and_fail_closed_match_keys() {
    let mut s = Certs::new(|c| c.ttl("1s").max_stale("4s").negative_ttl("1s"));
    let deploy = TestUser::new();
    s.serve(&deploy.name, "team-web\n");
    let web = s.cert("web", "alice", &["team-web"]);
    assert!(s.login(&deploy.name, &web, "true").ok, "{}", s.debug());

    // The directory goes away: within max_stale the cached list is served.
    s.env.reconfigure(|c| {
        let mut c = c;
        c.urls = vec!["http://127.0.0.1:9/users/{user}.keys".into()];
        c
    });
    std::thread::sleep(Duration::from_millis(1200));
    let before = s.lines(&deploy.name).len();
    assert!(s.login(&deploy.name, &web, "true").ok, "{}", s.debug());
    let l = s.last(&deploy.name, before);
    l.assert_field("source", "stale");
    assert!(l
        .field("warning")
        .unwrap_or_default()
        .contains("directory unavailable"));

    // Past max_stale: fail closed.
    std::thread::sleep(Duration::from_millis(4000));
    let before = s.lines(&deploy.name).len();
    assert!(!s.login(&deploy.name, &web, "true").ok);
    let l = s.last(&deploy.name, before);
    l.assert_field("decision", "fail");
    assert!(
        l.field("reason")
            .unwrap_or_default()
            .contains("too old to serve"),
        "{}",
        l.raw
    );

    // Nothing cached and no directory: fail closed.
    let other = TestUser::new();
    let before = s.lines(&other.name).len();
    assert!(!s.login(&other.name, &web, "true").ok);
    let l = s.last(&other.name, before);
    l.assert_field("decision", "fail");
    assert!(l
        .field("reason")
        .unwrap_or_default()
        .contains("nothing cached"));

    // An unusable config: fail closed (exit 1, nothing printed).
    s.env.kw.write_config("[directory\n");
    let out = s.env.kw.run_as("keyward", &["principals", &deploy.name]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");
    assert!(
        out.stderr.contains("decision=fail kind=principals"),
        "{out}"
    );
}

fn set_signers(env: &KeysEnv, signers: &[&SshKey]) {
    let list: Vec<String> = signers.iter().map(|k| toml_str(&k.public_line())).collect();
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!("[directory]\nsigners = [{}]\n", list.join(", ")),
        1,
    );
    env.kw.write_config(&toml);
}

fn publish(kw: &Keyward, src: &Path, out: &Path, signer: &SshKey) -> Out {
    let o = kw.run(&[
        "publish",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--signer",
        signer.path.to_str().unwrap(),
        "--validity",
        "1d",
    ]);
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(out));
    o
}

#[test]
fn principals_signed_by_publish_and_tampered_ones_refused() {
    let s = Certs::new(|c| c.ttl("1s").max_stale("1h"));
    let signer = SshKey::ed25519(s.keys.path(), "signer");
    set_signers(&s.env, &[&signer]);
    let deploy = TestUser::new();
    let src = s.keys.subdir("src");
    let login = SshKey::ed25519(s.keys.path(), "login");
    write_file(
        &src.join(format!("{}.principals", deploy.name)),
        "team-web\nteam-web extra words\n",
        0o644,
    );
    write_file(
        &src.join(format!("{}.keys", deploy.name)),
        format!("{}\n", login.public_line()),
        0o644,
    );
    let users = s.nginx.root.join("users");
    let out = publish(&s.env.kw, &src, &users, &signer);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("1 principal(s) published"), "{out}");
    assert!(out.stdout.contains("one principal per line"), "{out}");
    let body = std::fs::read_to_string(users.join(format!("{}.principals", deploy.name))).unwrap();
    assert!(
        body.starts_with(&format!("#keyward user={} kind=principals ", deploy.name)),
        "{body}"
    );

    let web = s.cert("web", "alice", &["team-web"]);
    let evil = s.cert("evil", "mallory", &["evil"]);
    assert!(s.login(&deploy.name, &web, "true").ok, "{}", s.debug());
    let r = s.sshd.login(&deploy.name, &login.path, "true");
    assert!(r.ok, "keys too: {r}");

    // Tampered: a principal added after signing. Refused; the last good
    // list stays served (within max_stale), as for keys.
    let path = users.join(format!("{}.principals", deploy.name));
    s.nginx.put(
        &format!("users/{}.principals", deploy.name),
        format!("{body}evil\n"),
    );
    std::thread::sleep(Duration::from_millis(1200));
    let before = s.lines(&deploy.name).len();
    assert!(!s.login(&deploy.name, &evil, "true").ok, "tampered list");
    let l = s.last(&deploy.name, before);
    l.assert_field("source", "stale");
    assert!(
        l.field("warning")
            .unwrap_or_default()
            .contains("signature does not verify"),
        "{}",
        l.raw
    );
    assert!(s.login(&deploy.name, &web, "true").ok);

    // A host with nothing cached refuses the tampered file outright.
    let fresh = KeysEnv::new(|c| c.url(s.nginx.users_url()).timeout("3s"));
    set_signers(&fresh, &[&signer]);
    let out = fresh.kw.run_as("keyward", &["principals", &deploy.name]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");

    // A validly signed keys file served as the principals file: refused
    // (the header's kind binds it). With no keys left, its body is only the
    // header: a list that would parse as an empty principals file.
    write_file(&src.join(format!("{}.keys", deploy.name)), "", 0o644);
    let out = publish(&s.env.kw, &src, &users, &signer);
    assert!(out.success(), "{out}");
    std::fs::copy(users.join(format!("{}.keys", deploy.name)), &path).unwrap();
    std::fs::copy(
        users.join(format!("{}.keys.sig", deploy.name)),
        users.join(format!("{}.principals.sig", deploy.name)),
    )
    .unwrap();
    let out = fresh.kw.run_as("keyward", &["principals", &deploy.name]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");
    assert!(
        out.stderr.contains("a keys file, not a principals file"),
        "{out}"
    );
}

#[test]
fn principals_command_prints_lines_as_sshd_reads_them_and_sync_refreshes_them() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    let opts = r#"from="10.0.0.0/8,!10.1.2.3",command="/usr/bin/echo \"a b\"",environment="X=1""#;
    nginx.put(
        &format!("users/{user}.principals"),
        format!("  team-web\t\n{opts}   team-ops # comment\ncert-authority team-ca\nteam-web\ncommand=\"x #1\" team-x\n"),
    );
    // A lookup's own record: sync's record may reach the log file after the
    // next lookup started (rsyslog writes asynchronously).
    let lookup = |l: &rsyslog::LogLine| {
        l.program == "keyward" && l.field("decision").as_deref() != Some("sync")
    };
    let run = |args: &[&str]| {
        let before = env.log.lines().iter().filter(|l| lookup(l)).count();
        let out = env.kw.run_as("keyward", args);
        let l = env
            .log
            .wait_for_n(before + 1, Duration::from_secs(10), lookup)
            .into_iter()
            .nth(before)
            .expect("one line");
        (out, l)
    };
    let (out, l) = run(&[
        "principals",
        &user,
        "id=-odd key id",
        "serial=42",
        "fp=SHA256:x",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, format!("team-web\n{opts} team-ops\n"));
    l.assert_field("decision", "serve");
    l.assert_field("id", "-odd key id");
    assert_eq!(l.field("serial").as_deref(), Some("42"));
    l.assert_field("dropped", "3");
    let drop = l.field("drop").unwrap_or_default();
    assert!(
        drop.contains("directory:3 invalid line: cert-authority"),
        "{drop}"
    );
    assert!(drop.contains("directory:4 duplicate"), "{drop}");
    assert!(
        drop.contains("directory:5 invalid line: '#' inside quoted"),
        "{drop}"
    );
    // Principals entries live apart from keys entries.
    assert!(env.cache.join(".principals").join(&user).is_file());
    assert!(!env.cache.join(&user).exists());

    // sync refreshes the cached principals list.
    nginx.put(&format!("users/{user}.principals"), "team-new\n");
    let out = env.kw.run_as("keyward", &["sync"]);
    assert!(out.success(), "{out}");
    let (out, l) = run(&["principals", &user]);
    assert_eq!(out.stdout, "team-new\n", "{out}");
    l.assert_field("source", "cache");
    let sync = env
        .log
        .lines_of("keyward")
        .into_iter()
        .find(|l| l.field("decision").as_deref() == Some("sync"))
        .expect("sync line");
    sync.assert_field("principals", "1");
    sync.assert_field("updated", "1");

    // Refused before anything is asked: bad names, unknown arguments.
    let requests = nginx.total();
    for args in [
        vec!["principals", "../etc/passwd"],
        vec!["principals", "-rf"],
        vec!["principals", "a\u{1b}b"],
        vec!["principals", &user, "fingerprint=SHA256:x"],
    ] {
        let out = env.kw.run_as("keyward", &args);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(1), ""),
            "{args:?}: {out}"
        );
        assert!(
            out.stderr.contains("decision=fail kind=principals"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(nginx.total(), requests);
}

/// `keyward doctor --json --sshd-config CONF`: the checks with `id`.
fn doctor(kw: &Keyward, conf: &Path) -> serde_json::Value {
    let out = kw.run(&["doctor", "--json", "--sshd-config", conf.to_str().unwrap()]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn check<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {doc:#}"))
}

/// The trap, on this machine's sshd (Debian 12: OpenSSH 9.2): with
/// AuthorizedKeysCommand first, `sshd -T` drops the principals command, a
/// certificate the directory allows is refused and one naming the account
/// gets in; doctor names both lines and the fix.
#[test]
fn principals_after_keys_command_is_ignored_before_9_4_and_doctor_says_so() {
    let s = Certs::new(|c| c.ttl("5m"));
    let deploy = TestUser::new();
    s.serve(&deploy.name, "team-web\n");
    let web = s.cert("web", "alice", &["team-web"]);
    let own = s.cert("own", "deploy-itself", &[&deploy.name]);
    // The right order (Certs' sshd): the directory decides.
    assert!(s.login(&deploy.name, &web, "true").ok, "{}", s.debug());
    assert!(!s.login(&deploy.name, &own, "true").ok);
    let good = doctor(&s.env.kw, &s.sshd.conf);
    for id in [
        "sshd.principals",
        "sshd.principals_tokens",
        "sshd.principals_user",
        "sshd.trusted_ca",
        "config.principals_urls",
    ] {
        assert_eq!(
            check(&good, id)["status"],
            "ok",
            "{id}: {:#}",
            check(&good, id)
        );
    }

    // Keys command first: sshd 9.2 forgets the principals command.
    let trap = Certs::sshd_ordered(&s.env.kw, &s.ca, false);
    let t = run(
        Command::new("/usr/sbin/sshd")
            .arg("-T")
            .arg("-f")
            .arg(&trap.conf),
        Duration::from_secs(30),
    );
    assert!(t.success(), "{t}");
    let version = run(
        Command::new("/usr/sbin/sshd").arg("-V"),
        Duration::from_secs(10),
    );
    let v: Vec<u32> = version
        .stderr
        .split("OpenSSH_")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit() && c != '.').next())
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert!(v.len() >= 2, "sshd -V: {version}");
    if v[0] > 9 || (v[0] == 9 && v[1] >= 4) {
        // Fixed upstream: the order no longer matters.
        assert!(
            !t.stdout.contains("authorizedprincipalscommand none"),
            "{t}"
        );
    } else {
        assert!(t.stdout.contains("authorizedprincipalscommand none"), "{t}");
        let r = trap.login_cert(&deploy.name, &own.0.path, &own.1, "true");
        assert!(
            r.ok,
            "ignored command: the account's own name is accepted: {r}\n{}",
            trap.log_text()
        );
        let r = trap.login_cert(&deploy.name, &web.0.path, &web.1, "true");
        assert!(!r.ok, "{r}");
        let doc = doctor(&s.env.kw, &trap.conf);
        let c = check(&doc, "sshd.principals");
        assert_eq!(c["status"], "fail", "{c:#}");
        let conf = trap.conf.display().to_string();
        let found = c["found"].as_str().unwrap();
        // The builder writes its lines first: TrustedUserCAKeys, keys on 2,
        // principals on 3.
        assert!(
            found.contains(&format!("{conf}:3")) && found.contains(&format!("{conf}:2")),
            "{found}"
        );
        assert!(
            c["fix"]
                .as_str()
                .unwrap()
                .contains("above AuthorizedKeysCommand"),
            "{c:#}"
        );
    }

    // A TrustedUserCAKeys file that is not there.
    let missing = s.keys.join("no-such-ca.pub");
    let text = fs::read_to_string(&s.sshd.conf).unwrap().replace(
        &s.ca.pub_path.display().to_string(),
        &missing.display().to_string(),
    );
    let conf = s.keys.write("sshd_missing_ca", text, 0o644);
    let doc = doctor(&s.env.kw, &conf);
    let c = check(&doc, "sshd.trusted_ca");
    assert_eq!(c["status"], "fail", "{c:#}");
    assert!(
        c["found"].as_str().unwrap().contains("no-such-ca.pub"),
        "{c:#}"
    );
}

#[test]
fn principals_explain_shows_what_the_account_accepts_and_why() {
    let s = Certs::new(|c| c.ttl("5m"));
    let deploy = TestUser::new();
    s.serve(
        &deploy.name,
        "team-web\nteam-web extra\nfrom=\"10.0.0.0/8\" ci-runner\nteam-web\n",
    );
    let conf = s.sshd.conf.to_str().unwrap().to_owned();
    let out = s
        .env
        .kw
        .run(&["explain", &deploy.name, "--json", "--sshd-config", &conf]);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let p = &v["principals"];
    assert!(
        p["sshd"].as_str().unwrap().contains("principals %u"),
        "{p:#}"
    );
    let lines = p["lines"].as_array().unwrap();
    let verdicts: Vec<(&str, Option<&str>)> = lines
        .iter()
        .map(|l| (l["verdict"].as_str().unwrap(), l["reason_tag"].as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("accepted", None),
            ("dropped", Some("invalid")),
            ("accepted", None),
            ("dropped", Some("duplicate"))
        ],
        "{p:#}"
    );
    assert_eq!(lines[2]["principal"], "ci-runner");
    assert_eq!(lines[2]["options"], "from=\"10.0.0.0/8\"");
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .contains("one principal per line"));
    let verdict = p["verdict"].as_str().unwrap();
    assert!(verdict.contains("team-web or ci-runner"), "{verdict}");
    // The human form says the same.
    let out = s
        .env
        .kw
        .run(&["explain", &deploy.name, "--sshd-config", &conf]);
    assert!(out.stdout.contains("Certificates"), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "a certificate with principal team-web or ci-runner logs in as {}",
            deploy.name
        )),
        "{out}"
    );

    // With the principals lines after AuthorizedKeysCommand (ignored by
    // sshd before 9.4), explain says sshd does not ask keyward.
    let trap = Certs::sshd_ordered(&s.env.kw, &s.ca, false);
    let out = s.env.kw.run(&[
        "explain",
        &deploy.name,
        "--json",
        "--sshd-config",
        trap.conf.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let t = run(
        Command::new("/usr/sbin/sshd")
            .arg("-T")
            .arg("-f")
            .arg(&trap.conf),
        Duration::from_secs(30),
    );
    if t.stdout.contains("authorizedprincipalscommand none") {
        let sshd = v["principals"]["sshd"].as_str().unwrap();
        assert!(
            sshd.contains("no AuthorizedPrincipalsCommand in effect"),
            "{sshd}"
        );
        assert!(v["principals"]["lines"].as_array().unwrap().is_empty());
    }
}
