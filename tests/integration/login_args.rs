//! The login path's arguments and the account facts it judges, through the
//! installed binary: `principals USER NAME=VALUE…` whatever USER is (an
//! account named like an option never reaches clap), and the uid-0 rule
//! without sshd's `%U` for a name NSS does not know.

use std::time::Duration;

use crate::support::*;

/// Accounts named `--help`, `-h`, `--`, `-V`, `--version`: sshd passes
/// `%u` as it is. Nothing on stdout (sshd would read clap's help as
/// principals), a non-zero exit, and exactly one `decision=fail` record
/// for that user saying why.
#[test]
fn principals_for_accounts_named_like_options_fail_closed_with_one_record() {
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let env = KeysEnv::new(|c| c.url(url).timeout("3s"));
    for user in ["--help", "-h", "--", "-V", "--version"] {
        nginx.put(&format!("users/{user}.principals"), "team-web\n");
        let out = env.kw.run_as(
            "keyward",
            &["principals", user, "uid=1000", "fp=SHA256:x", "id=alice"],
        );
        assert_ne!(out.code, Some(0), "{user}: {out}");
        assert_eq!(out.stdout, "", "{user}: {out}");
        let mine = |l: &rsyslog::LogLine| {
            l.program == "keyward"
                && l.field("kind").as_deref() == Some("principals")
                && l.field("user").as_deref() == Some(user)
        };
        let lines = env.log.wait_for_n(1, Duration::from_secs(10), mine);
        assert_eq!(lines.len(), 1, "{user}: {lines:#?}\n{out}");
        let l = &lines[0];
        l.assert_field("decision", "fail");
        assert!(
            l.field("reason")
                .unwrap_or_default()
                .contains("invalid user name"),
            "{}",
            l.raw
        );
        // the arguments after the user stayed in place
        l.assert_field("uid", "1000");
        l.assert_field("id", "alice");
    }
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
}

/// The same for `keys` in sshd's form (`keys %u %f %U`): an account named
/// `--help` or `-V` is a user name, refused with its record, and clap's
/// help or version never reaches stdout (`keyward keys --help` typed alone
/// still answers a human).
#[test]
fn keys_for_accounts_named_like_options_fail_closed_with_one_record() {
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let env = KeysEnv::new(|c| c.url(url).timeout("3s"));
    for user in ["--help", "-h", "-V", "--version"] {
        let out = env
            .kw
            .run_as("keyward", &["keys", user, "SHA256:x", "1000"]);
        assert_eq!(out.code, Some(1), "{user}: {out}");
        assert_eq!(out.stdout, "", "{user}: {out}");
        let mine = |l: &rsyslog::LogLine| {
            l.program == "keyward" && l.field("user").as_deref() == Some(user)
        };
        let lines = env.log.wait_for_n(1, Duration::from_secs(10), mine);
        assert_eq!(lines.len(), 1, "{user}: {lines:#?}\n{out}");
        assert_eq!(lines[0].field("decision").as_deref(), Some("fail"));
    }
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
}

/// `keys NAME FP` without `%U` for a name NSS does not know, while root is
/// denied: the uid-0 rule has no uid to judge, so the lookup fails closed
/// (nothing fetched, nothing printed) and says why. With sshd's uid, or
/// when no rule needs it, the same name is served.
#[test]
fn keys_without_uid_for_a_name_nss_does_not_know_fails_closed_when_root_is_denied() {
    let keys = TestDir::new("nouid");
    let a = SshKey::ed25519(keys.path(), "a");
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let mut env = KeysEnv::new(|c| c.url(url).deny_users(&["root"]));
    let user = fake_user();
    assert!(
        !run(
            std::process::Command::new("getent").args(["passwd", &user]),
            Duration::from_secs(10)
        )
        .success(),
        "{user} must be unknown to NSS"
    );
    nginx.put_keys(&user, &format!("{}\n", a.public_line()));
    let fp = a.fingerprint();

    let r = env.keys_as_keyward(&user, Some(&fp));
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "fail", "{r}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains("uid-0 rule") && reason.contains("%U"),
        "{r}"
    );
    assert_eq!(nginx.count(&user), 0, "{:?}", nginx.accesses());

    // sshd's %U answers the rule without NSS
    let r = env.keys_with_uid(&user, &fp, "1000");
    assert_eq!(r.out.code, Some(0), "{r}");
    assert!(r.out.stdout.contains(&a.public_material()), "{r}");

    // no rule needs the uid: the name alone is judged
    env.reconfigure(|c| c.deny_users(&["bob"]));
    let r = env.keys_as_keyward(&user, Some(&fp));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert!(r.out.stdout.contains(&a.public_material()), "{r}");
}

/// The same rule when NSS fails: a second uid-0 account (`toor`) looked up
/// while the passwd database cannot be read (an empty /etc, mounted in a
/// namespace of the keyward process only: glibc falls back to `files` and
/// cannot open /etc/passwd, as with a backend that is gone). glibc reports
/// that failure as ENOENT, which getpwnam_r(3) also uses for "not found".
/// Without `%U` keyward must not take it for "not uid 0": it fails closed
/// and serves none of toor's keys.
#[test]
fn keys_without_uid_when_nss_fails_never_serves_a_uid_0_account() {
    let keys = TestDir::new("nsserr");
    let t = SshKey::ed25519(keys.path(), "t");
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let env = KeysEnv::new(|c| c.url(url).deny_users(&["root"]));
    let toor = TestUser::builder().uid0().create();
    nginx.put_keys(&toor.name, &format!("{}\n", t.public_line()));
    let fp = t.fingerprint();
    let id = |flag: &str| {
        must(std::process::Command::new("id").args([flag, "keyward"]))
            .stdout
            .trim()
            .to_owned()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let mut c = std::process::Command::new("unshare");
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .args([
            "-m",
            "sh",
            "-c",
            // numeric ids: setpriv could not resolve a name in there
            "mount -t tmpfs -o mode=755 kwnoetc /etc && exec setpriv --reuid=\"$1\" --regid=\"$2\" --clear-groups \"$3\" --config \"$4\" keys \"$5\" \"$6\"",
            "sh",
        ])
        .args([&uid, &gid])
        .arg(&env.kw.bin)
        .arg(&env.kw.config)
        .args([&toor.name, &fp]);
    let out = run(&mut c, Duration::from_secs(60));
    let line = env
        .log
        .wait_for(Duration::from_secs(10), |l| {
            l.program == "keyward" && l.field("user").as_deref() == Some(toor.name.as_str())
        })
        .unwrap_or_else(|| panic!("no record for {}\n{out}", toor.name));
    assert!(
        !out.stdout.contains(&t.public_material()),
        "a uid-0 account's key was served: {out}\n{}",
        line.raw
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");
    line.assert_field("decision", "fail");
    assert_eq!(nginx.count(&toor.name), 0, "{:?}", nginx.accesses());

    // With NSS working, the same call is denied on the uid NSS gives.
    let r = env.keys_as_keyward(&toor.name, Some(&fp));
    assert_eq!(r.decision(), "deny", "{r}");
    assert!(
        r.field("reason").unwrap_or_default().contains("uid 0"),
        "{r}"
    );
}
