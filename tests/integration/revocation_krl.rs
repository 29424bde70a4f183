//! The host side of revocation through a real sshd: `keyward sync` with
//! `[revocation] sshd_krl` installs the KRL `keyward publish` built (the
//! one the installed list names by hash) where sshd's `RevokedKeys` reads
//! it, so sshd itself refuses a revoked key served by a plain
//! AuthorizedKeysFile; nothing a mirror serves (no KRL, a corrupt,
//! unsigned, wrongly signed or replayed one) removes or replaces the
//! installed file. The offline bound: once the list was last confirmed
//! longer ago than `max_age`, certificates are refused, keys are not.
//! doctor compares sshd -T's `revokedkeys` with `sshd_krl`.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::keyward::{state_dir_of, toml_str};
use crate::support::signeddir::{field, SignedDir};
use crate::support::*;

/// The shared fixture (signed) with `[revocation] sshd_krl` set and a
/// `revoked/` folder in its source.
struct Host {
    d: SignedDir,
    /// `[revocation] sshd_krl`.
    krl: PathBuf,
}

impl Deref for Host {
    type Target = SignedDir;

    fn deref(&self) -> &SignedDir {
        &self.d
    }
}

/// Where the packaged sync service may write: the state directory.
fn krl_of(cache: &Path) -> PathBuf {
    state_dir_of(cache).join("revoked.krl")
}

impl Host {
    /// A signed directory (nginx) and a host pinning its signer, with
    /// `[revocation]` set to `sshd_krl` and `extra` lines.
    fn new(extra: &str) -> Host {
        let d = SignedDir::new("revkrl", true, |mut config| {
            config.extra = format!(
                "\n[revocation]\nsshd_krl = {}\n{extra}",
                toml_str(&krl_of(&config.cache_dir).display().to_string())
            );
            config
        });
        fs::create_dir(d.src.join("revoked")).unwrap();
        let krl = krl_of(&d.cache);
        Host { d, krl }
    }

    fn revoke(&self, name: &str, spec: &str) {
        fs::write(self.src.join("revoked").join(format!("{name}.spec")), spec).unwrap();
    }

    fn installed(&self) -> Vec<u8> {
        fs::read(&self.krl).unwrap_or_else(|e| panic!("{}: {e}", self.krl.display()))
    }
}

fn authorized(user: &TestUser, keys: &[&SshKey]) {
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let ak = ssh.join("authorized_keys");
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.public_line()))
        .collect();
    fs::write(&ak, text).unwrap();
    chown_to(&ssh, &user.name);
    chown_to(&ak, &user.name);
    chmod(&ssh, 0o700);
    chmod(&ak, 0o600);
}

/// What sshd must still do after every refused KRL: refuse the revoked
/// keys, accept the good one.
fn sshd_enforces(sshd: &Sshd, user: &TestUser, revoked: &[&SshKey], good: &SshKey, when: &str) {
    for k in revoked {
        let r = sshd.login(&user.name, &k.path, "id -un");
        assert!(!r.ok, "{when}: a revoked key logged in: {r}");
    }
    let r = sshd.login(&user.name, &good.path, "id -un");
    assert!(
        r.ok,
        "{when}: the good key was refused: {r}\n{}",
        sshd.log_text()
    );
}

#[test]
fn sshd_itself_refuses_what_the_sync_installed_krl_revokes_and_a_bad_krl_never_replaces_it() {
    let h = Host::new("");
    let keys = TestDir::new("revkrlkeys");
    let stolen = SshKey::ed25519(keys.path(), "stolen");
    let second = SshKey::ed25519(keys.path(), "second");
    let good = SshKey::ed25519(keys.path(), "good");
    h.revoke("laptop", &format!("hash: {}\n", stolen.fingerprint()));
    h.publish(&[]);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert_eq!(field(&rec, "krl"), "installed", "{rec}");
    // Replaced whole, readable by sshd (root), the published bytes.
    let first = h.installed();
    assert_eq!(first, fs::read(h.out().join("revoked.krl")).unwrap());
    let md = fs::metadata(&h.krl).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(md.permissions().mode() & 0o777, 0o644);
    // The next sync changes nothing: the list still names this KRL; the
    // metrics say the KRL is installed and how old the list is.
    let prom_dir = h.dir.subdir("prom");
    chown_to(&prom_dir, "keyward");
    let prom = prom_dir.join("keyward.prom");
    let out = h.kw.run_as(
        "keyward",
        &["sync", "--metrics-file", prom.to_str().unwrap()],
    );
    assert!(out.success(), "{out}");
    let text = fs::read_to_string(&prom).unwrap();
    let metric = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(metric("keyward_revoked_krl_installed"), 1, "{text}");
    assert!(metric("keyward_revoked_list_age_seconds") < 60, "{text}");
    assert_eq!(
        metric("keyward_revoked_list_max_age_seconds"),
        86400,
        "{text}"
    );
    let serial = metric("keyward_revoked_list_serial");
    assert_eq!(
        u64::from_be_bytes(first[12..20].try_into().unwrap()),
        serial,
        "the KRL's version is the list's serial"
    );
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "krl"), "unchanged", "{rec}");
    // Nothing changed: one conditional GET (the list's 304), none for the KRL.
    assert_eq!(field(&rec, "revoked"), "304", "{rec}");
    assert_eq!(field(&rec, "requests"), "1", "{rec}");

    // keyward is not involved in the login: a plain AuthorizedKeysFile
    // holds every key, sshd's RevokedKeys is the installed KRL.
    let user = TestUser::new();
    authorized(&user, &[&stolen, &second, &good]);
    let sshd = Sshd::builder()
        .set("AuthorizedKeysFile", ".ssh/authorized_keys")
        .line(&format!("RevokedKeys {}", h.krl.display()))
        .start();
    sshd_enforces(&sshd, &user, &[&stolen], &good, "first KRL");
    assert!(
        sshd.log_text().contains("revoked"),
        "sshd names the revocation:\n{}",
        sshd.log_text()
    );
    assert!(sshd.login(&user.name, &second.path, "id -un").ok);

    // A second revocation: a new list naming a new KRL, installed.
    let old_krl = fs::read(h.out().join("revoked.krl")).unwrap();
    let old_sig = fs::read(h.out().join("revoked.krl.sig")).unwrap();
    h.revoke("desk", &format!("hash: {}\n", second.fingerprint()));
    h.publish(&[]);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "krl"), "installed", "{rec}");
    let current = h.installed();
    assert_ne!(current, first);
    sshd_enforces(&sshd, &user, &[&stolen, &second], &good, "second KRL");
    let krl_path = h.out().join("revoked.krl");
    let sig_path = h.out().join("revoked.krl.sig");

    // Each bad answer about a third list's KRL: the installed one stays.
    let third = SshKey::ed25519(keys.path(), "third");
    h.revoke("third", &format!("hash: {}\n", third.fingerprint()));
    h.publish(&[]);
    let new_krl = fs::read(&krl_path).unwrap();
    let new_sig = fs::read(&sig_path).unwrap();
    let other = SshKey::ed25519(h.dir.path(), "other-signer");
    let wrong_sig = {
        let p = h.dir.join("wrong.krl");
        fs::write(&p, &new_krl).unwrap();
        must(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "keyward", "-f"])
                .arg(&other.path)
                .arg(&p),
        );
        fs::read(format!("{}.sig", p.display())).unwrap()
    };
    let mut truncated = new_krl.clone();
    truncated.truncate(new_krl.len() / 2);
    type Case<'a> = (&'a str, Option<Vec<u8>>, Option<Vec<u8>>, &'a str);
    let cases: Vec<Case> = vec![
        ("missing (404)", None, Some(new_sig.clone()), "404"),
        (
            "corrupt",
            Some(b"SSHKRL\n\0garbage".to_vec()),
            Some(new_sig.clone()),
            "not an OpenSSH KRL",
        ),
        (
            "truncated",
            Some(truncated),
            Some(new_sig.clone()),
            "not the KRL the installed revocation list names",
        ),
        ("unsigned", Some(new_krl.clone()), None, "signature"),
        (
            "wrongly signed",
            Some(new_krl.clone()),
            Some(wrong_sig),
            "not a configured signer",
        ),
        (
            "replayed (the first KRL, signed)",
            Some(old_krl.clone()),
            Some(old_sig.clone()),
            "not the KRL the installed revocation list names",
        ),
    ];
    for (what, krl, sig, why) in cases {
        for (p, body) in [(&krl_path, krl), (&sig_path, sig)] {
            match body {
                Some(b) => fs::write(p, b).unwrap(),
                None => {
                    let _ = fs::remove_file(p);
                }
            }
        }
        h.readable();
        let (rec, _) = h.sync();
        assert_eq!(field(&rec, "krl"), "failed", "{what}: {rec}");
        let err = field(&rec, "krl_error");
        assert!(err.contains(why), "{what}: {err}");
        assert!(err.contains("installed KRL is kept"), "{what}: {err}");
        assert_eq!(h.installed(), current, "{what}: the installed KRL changed");
        sshd_enforces(&sshd, &user, &[&stolen, &second], &good, what);
    }
    // The right one again: installed, and the third key is refused too.
    fs::write(&krl_path, &new_krl).unwrap();
    fs::write(&sig_path, &new_sig).unwrap();
    h.readable();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "krl"), "installed", "{rec}");
    sshd_enforces(
        &sshd,
        &user,
        &[&stolen, &second, &third],
        &good,
        "third KRL",
    );
}

/// `AuthorizedPrincipalsCommand` as packaged, a CA sshd trusts.
fn cert_sshd(h: &Host, trusted: &Path) -> Sshd {
    Sshd::builder()
        .line(&format!("TrustedUserCAKeys {}", trusted.display()))
        .line(&format!(
            "AuthorizedPrincipalsCommand {} --config {} principals %u uid=%U fp=%f ca=%F id=%i serial=%s",
            h.kw.bin.display(),
            h.kw.config.display()
        ))
        .line("AuthorizedPrincipalsCommandUser keyward")
        .line(&format!(
            "AuthorizedKeysCommand {}",
            h.kw.authorized_keys_command()
        ))
        .authorized_keys_command_user("keyward")
        .start()
}

#[test]
fn certificates_are_refused_once_the_list_is_older_than_max_age_and_keys_are_not() {
    let h = Host::new("max_age = \"1h\"\n");
    let d = h.dir.path();
    let ca = SshKey::ed25519(d, "ca");
    let trusted = h.dir.join("trusted_cas");
    fs::write(&trusted, format!("{}\n", ca.public_line())).unwrap();
    let account = TestUser::new();
    let holder = SshKey::ed25519(d, "holder");
    let key = SshKey::ed25519(d, "key");
    let cert = ca.sign_user_cert(&holder, "alice@laptop", &["team-web"]);
    fs::write(
        h.src.join(format!("{}.principals", account.name)),
        "team-web\n",
    )
    .unwrap();
    fs::write(
        h.src.join(format!("{}.keys", account.name)),
        format!("{}\n", key.public_line()),
    )
    .unwrap();
    h.revoke("none", "# nothing revoked yet\n");
    h.publish(&[]);
    let sshd = cert_sshd(&h, &trusted);
    let is = |l: &rsyslog::LogLine| {
        l.field("kind").as_deref() == Some("principals")
            && l.field("user").as_deref() == Some(account.name.as_str())
    };
    let principals_line = |before: usize| {
        h.syslog
            .wait_for_n(before + 1, Duration::from_secs(10), is)
            .into_iter()
            .nth(before)
            .unwrap_or_else(|| panic!("no principals line\n{}", h.syslog.text()))
    };
    let count = || h.syslog.lines().iter().filter(|l| is(l)).count();
    // The login caches the user's files; sync confirms the list.
    assert!(sshd.login(&account.name, &key.path, "id -un").ok);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let confirmed = state_dir_of(&h.cache).join("revoked.confirmed");
    let at: u64 = fs::read_to_string(&confirmed)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let r = sshd.login_cert(&account.name, &holder.path, &cert, "id -un");
    assert!(r.ok, "a list confirmed just now: {r}");

    // The directory fails (garbage for the index and the list); time
    // passes (the record says 2h ago).
    let saved: Vec<(PathBuf, Vec<u8>)> = ["keyward.index", "revoked.list"]
        .iter()
        .map(|n| (h.out().join(n), fs::read(h.out().join(n)).unwrap()))
        .collect();
    for (p, _) in &saved {
        fs::write(p, "garbage\n").unwrap();
    }
    // Their deltas too: a signed "nothing changed" is a confirmation.
    let delta_dirs = ["keyward.index.d", "revoked.list.d"].map(|n| h.out().join(n));
    for d in &delta_dirs {
        fs::rename(d, d.with_extension("d-away")).unwrap();
    }
    h.readable();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "failed", "{rec}");
    assert_eq!(
        fs::read_to_string(&confirmed).unwrap().trim(),
        at.to_string(),
        "a failed sync confirms nothing"
    );
    fs::write(&confirmed, format!("{}\n", at - 7200)).unwrap();
    let before = count();
    let r = sshd.login_cert(&account.name, &holder.path, &cert, "id -un");
    assert!(!r.ok, "a list older than max_age: {r}");
    let l = principals_line(before);
    l.assert_field("decision", "deny");
    l.assert_field("reason", "revocation_list_stale");
    assert!(
        l.field("revocation_age")
            .unwrap_or_default()
            .contains("max_age 1h"),
        "{}",
        l.raw
    );
    // Keys follow max_stale, not this bound.
    let r = sshd.login(&account.name, &key.path, "id -un");
    assert!(r.ok, "a key while the list is stale: {r}");
    // doctor says so.
    let doc = h.kw.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&doc.stdout).unwrap();
    let age = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "revocation.age")
        .unwrap_or_else(|| panic!("no revocation.age: {doc}"));
    assert_eq!(age["status"], "fail", "{age}");
    // Back within the bound: accepted again.
    fs::write(&confirmed, format!("{}\n", at - 600)).unwrap();
    let r = sshd.login_cert(&account.name, &holder.path, &cert, "id -un");
    assert!(r.ok, "a list confirmed 10 minutes ago: {r}");
    // The directory back: sync confirms the list again, now.
    for d in &delta_dirs {
        fs::rename(d.with_extension("d-away"), d).unwrap();
    }
    for (p, bytes) in &saved {
        fs::write(p, bytes).unwrap();
    }
    h.readable();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "unchanged", "{rec}");
    let again: u64 = fs::read_to_string(&confirmed)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(again >= at, "{again} < {at}");
}

#[test]
fn doctor_names_sshds_revokedkeys_against_sshd_krl() {
    let h = Host::new("");
    h.revoke("none", "# nothing revoked yet\n");
    h.publish(&[]);
    let sshd_config = h.dir.join("sshd_config");
    let doctor = |revoked: Option<&Path>| {
        let mut text = String::new();
        if let Some(p) = revoked {
            text += &format!("RevokedKeys {}\n", p.display());
        }
        text += "Port 22\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\nAuthorizedKeysFile none\n";
        fs::write(&sshd_config, text).unwrap();
        let out = h.kw.run(&[
            "doctor",
            "--json",
            "--sshd-config",
            sshd_config.to_str().unwrap(),
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "revocation.krl")
            .unwrap_or_else(|| panic!("no revocation.krl: {out}"))
            .clone();
        (
            c["status"].as_str().unwrap().to_owned(),
            c["found"].as_str().unwrap().to_owned(),
        )
    };
    prepare_sshd_host();
    // Not installed yet, and sshd names it: every key login refused.
    let (s, f) = doctor(Some(&h.krl));
    assert_eq!(s, "fail", "{f}");
    assert!(f.contains("EVERY key login"), "{f}");
    // sshd does not use it.
    let (s, f) = doctor(None);
    assert_eq!(s, "warn", "{f}");
    assert!(f.contains("does not use it"), "{f}");
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "krl"), "installed", "{rec}");
    // Another file.
    let elsewhere = h.dir.join("other.krl");
    fs::copy(&h.krl, &elsewhere).unwrap();
    let (s, f) = doctor(Some(&elsewhere));
    assert_eq!(s, "warn", "{f}");
    assert!(f.contains("a different file"), "{f}");
    // The one keyward installs.
    let (s, f) = doctor(Some(&h.krl));
    assert_eq!(s, "ok", "{f}");
}
