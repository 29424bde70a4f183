//! Revocation at login, through a real sshd: `keyward publish` builds the
//! list from KRL specs, the list is installed where the host keeps it
//! (`[state] dir`/revoked.list, where sync installs it), and sshd's
//! AuthorizedKeysCommand / AuthorizedPrincipalsCommand refuse what it
//! revokes, whatever the directory and the local files still say.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::keyward::state_dir_of;
use crate::support::rsyslog::LogLine;
use crate::support::*;

/// A spec file: (name, text, the CA's public key file for `NAME.pub`).
type SpecFile<'a> = (&'a str, String, Option<&'a Path>);

/// `keyward publish` of `specs` (and no users) signed by a fresh signer,
/// then the list installed in the cache directory as sync does: owned by
/// the keyward user, renamed into place.
fn install_list(env: &KeysEnv, specs: &[SpecFile]) {
    let work = TestDir::new("revlist");
    let src = work.subdir("src");
    let out = work.subdir("out");
    let rev = src.join("revoked");
    fs::create_dir(&rev).unwrap();
    for (name, text, ca) in specs {
        fs::write(rev.join(format!("{name}.spec")), text).unwrap();
        if let Some(ca) = ca {
            fs::copy(ca, rev.join(format!("{name}.pub"))).unwrap();
        }
    }
    let signer = SshKey::ed25519(work.path(), "signer");
    let p = run(
        &mut env.kw.command(&[
            "publish",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    assert!(p.success(), "{p}");
    let tmp = state_dir_of(&env.cache).join(".revoked.list.new");
    fs::copy(out.join("revoked.list"), &tmp).unwrap();
    chown_to(&tmp, "keyward");
    chmod(&tmp, 0o640);
    fs::rename(&tmp, list_path(env)).unwrap();
}

fn list_path(env: &KeysEnv) -> PathBuf {
    state_dir_of(&env.cache).join("revoked.list")
}

fn ssh_dir_with(user: &TestUser, line: &str) -> PathBuf {
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let ak = ssh.join("authorized_keys");
    fs::write(&ak, format!("{line}\n")).unwrap();
    chown_to(&ssh, &user.name);
    chown_to(&ak, &user.name);
    chmod(&ssh, 0o700);
    chmod(&ak, 0o600);
    ak
}

/// The keyward line of a login by `user` with the key of fingerprint
/// `fp`, after `before` earlier ones.
fn keys_line(log: &Rsyslog, user: &str, fp: &str, before: usize) -> LogLine {
    let is = |l: &LogLine| {
        l.program == "keyward"
            && l.field("user").as_deref() == Some(user)
            && l.field("fp").as_deref() == Some(fp)
    };
    log.wait_for_n(before + 1, Duration::from_secs(10), is)
        .into_iter()
        .nth(before)
        .unwrap_or_else(|| panic!("no keyward line for {user} {fp}\n{}", log.text()))
}

fn count(log: &Rsyslog, pred: impl Fn(&LogLine) -> bool) -> usize {
    log.lines().iter().filter(|l| pred(l)).count()
}

#[test]
fn a_key_revoked_by_hash_is_refused_from_the_directory_and_from_files() {
    let keys = TestDir::new("revkeys");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|mut c| {
        c.files = vec!["%h/.ssh/authorized_keys".into()];
        c.url(nginx.users_url()).timeout("3s")
    });
    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("root")
        .start();
    let user = TestUser::new();
    let stolen = SshKey::ed25519(keys.path(), "stolen");
    let other = SshKey::ed25519(keys.path(), "other");
    let old = SshKey::ed25519(keys.path(), "old");
    // The stolen key is everywhere: the directory and the user's own file.
    nginx.put_keys(
        &user.name,
        &format!(
            "{}\n{}\n{}\n",
            stolen.public_line(),
            other.public_line(),
            old.public_line()
        ),
    );
    let ak = ssh_dir_with(&user, &stolen.public_line());
    let (sfp, ofp) = (stolen.fingerprint(), other.fingerprint());

    let login = |key: &SshKey| sshd.login(&user.name, &key.path, "id -un");
    let r = login(&stolen);
    assert!(r.ok, "before the revocation: {r}");

    install_list(
        &env,
        &[(
            "laptop",
            format!(
                "# stolen 2026-12-07\nhash: {sfp}\n{}\n",
                // A bare key: revoked by its SHA-1 (ssh-keygen's rule).
                old.public_line()
            ),
            None,
        )],
    );
    // The bare key: refused by its SHA-1, which %f cannot carry.
    let ofp_old = old.fingerprint();
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&ofp_old));
    assert!(!login(&old).ok);
    let l = keys_line(&env.log, &user.name, &ofp_old, before);
    l.assert_field("revoked_by", "key-sha1");
    assert_eq!(l.field("revoked_source").as_deref(), Some("laptop.spec:3"));
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&sfp));
    let r = login(&stolen);
    assert!(
        !r.ok,
        "a revoked key must be refused: {r}\n{}",
        sshd.log_text()
    );
    let l = keys_line(&env.log, &user.name, &sfp, before);
    l.assert_field("decision", "nomatch");
    l.assert_field("reason", "revoked");
    l.assert_field("revoked_by", "key");
    l.assert_field("revoked_source", "laptop.spec:2");
    // The file's copy comes first (the directory's is its duplicate).
    let revoked = |src: &str| format!("{src}:1 revoked: revoked_by=key source=laptop.spec:2");
    let drop = l.field("drop").unwrap_or_default();
    assert!(
        drop.contains(&revoked(&ak.display().to_string())),
        "{}",
        l.raw
    );
    // In the directory alone, it is refused as well.
    fs::write(&ak, format!("{}\n", other.public_line())).unwrap();
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&sfp));
    let r = login(&stolen);
    assert!(!r.ok, "{r}");
    let l = keys_line(&env.log, &user.name, &sfp, before);
    l.assert_field("reason", "revoked");
    let drop = l.field("drop").unwrap_or_default();
    assert!(drop.contains(&revoked("directory")), "{}", l.raw);
    fs::write(&ak, format!("{}\n", stolen.public_line())).unwrap();
    // The other key still logs in.
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&ofp));
    let r = login(&other);
    assert!(r.ok, "{r}");
    let l = keys_line(&env.log, &user.name, &ofp, before);
    l.assert_field("decision", "match");

    // Without a fingerprint (all keys): every source's copy is left out.
    let all = env.keys(&user.name, None);
    assert_eq!(all.materials(), vec![material(&other)], "{all}");
    assert_eq!(all.field("dropped").as_deref(), Some("3"), "{all}");

    // explain says the same: each revoked key dropped with its spec line,
    // and the stolen key, asked about, gets sshd nothing.
    let ex = env.kw.run(&["explain", &user.name, "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&ex.stdout).unwrap_or_else(|e| panic!("{e}: {ex}"));
    let revoked_rows: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["reason_tag"] == "revoked")
        .map(|k| format!("{}:{} {}", k["source"], k["line"], k["reason"]))
        .collect();
    // (The directory's copy of the stolen key is the file's duplicate.)
    assert_eq!(revoked_rows.len(), 2, "{ex}");
    assert!(
        revoked_rows.iter().all(|r| r.contains("by laptop.spec:")),
        "{revoked_rows:?}"
    );
    let ex = env
        .kw
        .run(&["explain", &user.name, "--fingerprint", &sfp, "--json"]);
    assert_eq!(ex.code, Some(1), "cannot log in: {ex}");
    let v: serde_json::Value =
        serde_json::from_str(&ex.stdout).unwrap_or_else(|e| panic!("{e}: {ex}"));
    assert!(
        v["verdict"]
            .as_str()
            .unwrap_or_default()
            .contains("the key asked about is revoked (key) by laptop.spec:2"),
        "{ex}"
    );

    // A list damaged on disk: nobody is served (fail closed), and the log
    // names the list.
    let text = fs::read_to_string(list_path(&env)).unwrap();
    fs::write(list_path(&env), text.trim_end()).unwrap();
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&ofp));
    let r = login(&other);
    assert!(!r.ok, "{r}");
    let l = keys_line(&env.log, &user.name, &ofp, before);
    l.assert_field("decision", "fail");
    assert!(
        l.field("reason")
            .unwrap_or_default()
            .contains("revoked.list"),
        "{}",
        l.raw
    );
    // No list at all: nothing is revoked.
    fs::remove_file(list_path(&env)).unwrap();
    assert!(login(&stolen).ok);
}

fn material(k: &SshKey) -> String {
    let l = k.public_line();
    l.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// `ssh-keygen -s CA -I ID -n PRINCIPAL -z SERIAL -V -5m:+1h KEY.pub` →
/// `DIR/NAME.cert`.
fn cert(dir: &Path, ca: &SshKey, key: &SshKey, id: &str, serial: u64, name: &str) -> PathBuf {
    must(
        Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&ca.path)
            .args(["-I", id, "-n", "team-web", "-V", "-5m:+1h"])
            .args(["-z", &serial.to_string()])
            .arg(&key.pub_path),
    );
    let out = dir.join(format!("{name}.cert"));
    fs::rename(format!("{}-cert.pub", key.path.display()), &out).unwrap();
    out
}

#[test]
fn a_certificate_is_refused_by_serial_range_and_by_key_id_for_its_ca_only() {
    let keys = TestDir::new("revcerts");
    let d = keys.path();
    let ca = SshKey::ed25519(d, "ca");
    let other_ca = SshKey::ed25519(d, "other-ca");
    let trusted = keys.write(
        "trusted_cas",
        format!("{}\n{}\n", ca.public_line(), other_ca.public_line()),
        0o644,
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s").ttl("5m"));
    let sshd = Sshd::builder()
        .line(&format!("TrustedUserCAKeys {}", trusted.display()))
        .line(&format!(
            "AuthorizedPrincipalsCommand {} --config {} principals %u uid=%U fp=%f ca=%F id=%i serial=%s",
            env.kw.bin.display(),
            env.kw.config.display()
        ))
        .line("AuthorizedPrincipalsCommandUser keyward")
        .line(&format!(
            "AuthorizedKeysCommand {}",
            env.kw.authorized_keys_command()
        ))
        .authorized_keys_command_user("keyward")
        .start();
    let account = TestUser::new();
    nginx.put(&format!("users/{}.principals", account.name), "team-web\n");
    let holder = SshKey::ed25519(d, "holder");
    let c_range = cert(d, &ca, &holder, "alice@laptop", 150, "range");
    let c_id = cert(d, &ca, &holder, "gone@corp", 500, "id");
    let c_fine = cert(d, &ca, &holder, "alice@laptop", 200, "fine");
    let c_other_ca = cert(d, &other_ca, &holder, "gone@corp", 150, "other-ca");

    let is = |l: &LogLine| {
        l.field("kind").as_deref() == Some("principals")
            && l.field("user").as_deref() == Some(account.name.as_str())
    };
    let attempt = |c: &Path| {
        let before = count(&env.log, is);
        let r = sshd.login_cert(&account.name, &holder.path, c, "id -un");
        let l = env
            .log
            .wait_for_n(before + 1, Duration::from_secs(10), is)
            .into_iter()
            .nth(before)
            .unwrap_or_else(|| panic!("no principals line: {r}\n{}", env.log.text()));
        if r.ok {
            assert_eq!(r.stdout().trim(), account.name, "{r}");
        }
        (r, l)
    };

    // Before any list: each certificate logs in.
    for c in [&c_range, &c_id] {
        let (r, l) = attempt(c);
        assert!(r.ok, "{r}\n{}", l.raw);
    }

    install_list(
        &env,
        &[(
            "ci",
            "serial: 100-199\nid: gone@corp\n".into(),
            Some(&ca.pub_path),
        )],
    );
    for (c, by, source) in [
        (&c_range, "serial", "ci.spec:1"),
        (&c_id, "key-id", "ci.spec:2"),
    ] {
        let (r, l) = attempt(c);
        assert!(!r.ok, "{}: {r}", c.display());
        l.assert_field("decision", "deny");
        l.assert_field("reason", "revoked");
        assert_eq!(l.field("revoked_by").as_deref(), Some(by), "{}", l.raw);
        assert_eq!(
            l.field("revoked_source").as_deref(),
            Some(source),
            "{}",
            l.raw
        );
    }
    let (_, l) = attempt(&c_range);
    assert_eq!(l.field("revoked_serials").as_deref(), Some("100-199"));
    // The same key ID and serial from another CA, and a serial past the
    // range from this one, still log in.
    for c in [&c_other_ca, &c_fine] {
        let (r, l) = attempt(c);
        assert!(r.ok, "{}: {r}\n{}", c.display(), l.raw);
        l.assert_field("decision", "serve");
    }
}

/// A certificate sshd accepts through a `cert-authority` line the
/// directory serves (no TrustedUserCAKeys): sshd asks `keys` about the
/// certified key (`%f`), so a revoked key's certificate is refused too,
/// and another key's certificate from the same CA still logs in.
#[test]
fn a_revoked_keys_certificate_is_refused_through_a_cert_authority_line() {
    let keys = TestDir::new("revcaline");
    let d = keys.path();
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s").ttl("5m"));
    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();
    let user = TestUser::new();
    let ca = SshKey::ed25519(d, "ca");
    let stolen = SshKey::ed25519(d, "stolen");
    let other = SshKey::ed25519(d, "other");
    let c_stolen = ca.sign_user_cert(&stolen, "stolen@laptop", &[&user.name]);
    let c_other = ca.sign_user_cert(&other, "other@desk", &[&user.name]);
    nginx.put_keys(&user.name, &format!("{}\n", ca.cert_authority_line()));
    let login = |key: &SshKey, cert: &Path| sshd.login_cert(&user.name, &key.path, cert, "id -un");
    assert!(login(&stolen, &c_stolen).ok, "before the revocation");

    install_list(
        &env,
        &[("laptop", format!("hash: {}\n", stolen.fingerprint()), None)],
    );
    let sfp = stolen.fingerprint();
    let before = count(&env.log, |l| l.field("fp").as_deref() == Some(&sfp));
    let r = login(&stolen, &c_stolen);
    assert!(
        !r.ok,
        "the revoked key's certificate: {r}\n{}",
        sshd.log_text()
    );
    let l = keys_line(&env.log, &user.name, &sfp, before);
    l.assert_field("decision", "nomatch");
    l.assert_field("reason", "revoked");
    l.assert_field("revoked_source", "laptop.spec:1");
    assert!(
        l.field("drop")
            .unwrap_or_default()
            .contains("directory:1 not served, the key asked about is revoked"),
        "{}",
        l.raw
    );
    let r = login(&other, &c_other);
    assert!(r.ok, "{r}\n{}", env.log.text());
}
