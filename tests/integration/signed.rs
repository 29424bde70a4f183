//! Signed key directory: files signed with real `ssh-keygen -Y sign`, served
//! by a real nginx. Every refusal must leave the previous good entry served
//! (within max_stale), logged with the reason.

use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::keyward::toml_str;
use crate::support::*;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn utc(t: u64) -> String {
    // `date` formats it the way the header wants.
    let out =
        must(Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]));
    out.stdout.trim().to_owned()
}

pub(crate) fn header(user: &str, serial: u64, expires: u64) -> String {
    format!(
        "#keyward user={user} serial={serial} expires={}\n",
        utc(expires)
    )
}

/// Signs `body` with `signer` in `namespace`; returns the .sig bytes.
pub(crate) fn sign(dir: &Path, signer: &SshKey, namespace: &str, body: &str) -> Vec<u8> {
    let file = dir.join(format!("tosign-{}", unique()));
    write_file(&file, body, 0o644);
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(&signer.path)
            .arg(&file),
    );
    let sig = std::fs::read(format!("{}.sig", file.display())).unwrap();
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(format!("{}.sig", file.display()));
    sig
}

/// A key directory that requires signatures by `signers`.
struct Signed {
    keys: TestDir,
    nginx: Nginx,
    env: KeysEnv,
}

impl Signed {
    fn new(signers: &[&SshKey], keys: TestDir) -> Signed {
        let nginx = Nginx::start();
        let url = nginx.users_url();
        let mut env = KeysEnv::new(|c| c.url(url).ttl("1s").max_stale("1h").timeout("3s"));
        Self::set_signers(&mut env, signers);
        Signed { keys, nginx, env }
    }

    fn set_signers(env: &mut KeysEnv, signers: &[&SshKey]) {
        let list: Vec<String> = signers.iter().map(|k| toml_str(&k.public_line())).collect();
        let toml = env.config.to_toml().replacen(
            "[directory]\n",
            &format!("[directory]\nsigners = [{}]\n", list.join(", ")),
            1,
        );
        env.kw.write_config(&toml);
    }

    /// Serves `body` for `user` with `sig` (None: no .sig file).
    fn serve(&self, user: &str, body: &str, sig: Option<&[u8]>) {
        self.nginx.put_keys(user, body);
        match sig {
            Some(s) => {
                self.nginx.put(&format!("users/{user}.keys.sig"), s);
            }
            None => self.nginx.remove(&format!("users/{user}.keys.sig")),
        }
    }

    fn serve_signed(&self, user: &str, signer: &SshKey, body: &str) {
        let sig = sign(self.keys.path(), signer, "keyward", body);
        self.serve(user, body, Some(&sig));
    }
}

fn expect_served(r: &Lookup, key: &SshKey, source: &str) {
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.materials(), vec![key.public_material()], "{r}");
    assert_eq!(r.field("source").as_deref(), Some(source), "{r}");
}

#[test]
fn signed_directory_accepts_valid_and_refuses_every_forgery() {
    let keys = TestDir::new("signkeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let stranger = SshKey::ed25519(keys.path(), "stranger");
    let alice_key = SshKey::ed25519(keys.path(), "alice");
    let mallory_key = SshKey::ed25519(keys.path(), "mallory");
    let s = Signed::new(&[&signer], keys);
    let user = keysenv::fake_user();
    let t = now();
    let good = format!(
        "{}{}\n",
        header(&user, t, t + 3600),
        alice_key.public_line()
    );

    // valid → served, straight from the directory
    s.serve_signed(&user, &signer, &good);
    let r = s.env.keys(&user, None);
    expect_served(&r, &alice_key, "directory");
    assert_eq!(s.nginx.count(&format!("{user}.keys.sig")), 1);

    // Each forgery: the entry is stale (ttl 1s), the directory now serves
    // something that must be refused, the good entry is served stale.
    let evil_lines = format!("{}\n", mallory_key.public_line());
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "tampered body",
            Box::new(|| {
                let sig = sign(s.keys.path(), &signer, "keyward", &good);
                let tampered = format!("{good}{evil_lines}");
                s.serve(&user, &tampered, Some(&sig));
            }),
            "signature does not verify",
        ),
        (
            "wrong namespace",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header(&user, t + 1, t + 3600));
                let sig = sign(s.keys.path(), &signer, "file", &body);
                s.serve(&user, &body, Some(&sig));
            }),
            "namespace",
        ),
        (
            "unknown signer",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header(&user, t + 1, t + 3600));
                s.serve_signed(&user, &stranger, &body);
            }),
            "not a configured signer",
        ),
        (
            "file for another user",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header("someoneelse", t + 1, t + 3600));
                s.serve_signed(&user, &signer, &body);
            }),
            "is for user \"someoneelse\"",
        ),
        (
            "expired file",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header(&user, t + 1, t - 10));
                s.serve_signed(&user, &signer, &body);
            }),
            "expired",
        ),
        (
            "rollback to a lower serial",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header(&user, t - 1, t + 3600));
                s.serve_signed(&user, &signer, &body);
            }),
            "rollback",
        ),
        (
            "missing signature",
            Box::new(|| {
                let body = format!("{}{evil_lines}", header(&user, t + 1, t + 3600));
                s.serve(&user, &body, None);
            }),
            ".sig: HTTP 404",
        ),
    ];
    for (name, setup, reason) in &cases {
        setup();
        sleep(Duration::from_millis(1100));
        let r = s.env.keys(&user, None);
        assert_eq!(r.out.code, Some(0), "{name}: {r}");
        assert_eq!(
            r.materials(),
            vec![alice_key.public_material()],
            "{name}: the previous good entry must be served: {r}"
        );
        assert_eq!(r.field("source").as_deref(), Some("stale"), "{name}: {r}");
        let warning = r.field("warning").unwrap_or_default();
        assert!(
            warning.contains(reason),
            "{name}: expected {reason:?} in the log: {r}"
        );
    }

    // A new, higher serial from the real signer is accepted again.
    let newer = format!(
        "{}{}\n",
        header(&user, t + 5, t + 3600),
        mallory_key.public_line()
    );
    s.serve_signed(&user, &signer, &newer);
    sleep(Duration::from_millis(1100));
    let r = s.env.keys(&user, None);
    expect_served(&r, &mallory_key, "directory");
}

#[test]
fn signed_directory_without_a_cache_fails_closed() {
    let keys = TestDir::new("signkeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let stranger = SshKey::ed25519(keys.path(), "stranger");
    let k = SshKey::ed25519(keys.path(), "k");
    let s = Signed::new(&[&signer], keys);
    let user = keysenv::fake_user();
    let t = now();
    s.serve_signed(
        &user,
        &stranger,
        &format!("{}{}\n", header(&user, t, t + 60), k.public_line()),
    );
    let r = s.env.keys(&user, None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("not a configured signer"),
        "{r}"
    );
}

#[test]
fn signer_rotation_with_overlapping_signers() {
    let keys = TestDir::new("signkeys");
    let old = SshKey::ed25519(keys.path(), "old");
    let new = SshKey::ed25519(keys.path(), "new");
    let k1 = SshKey::ed25519(keys.path(), "k1");
    let k2 = SshKey::ed25519(keys.path(), "k2");
    let mut s = Signed::new(&[&old, &new], keys);
    let user = keysenv::fake_user();
    let t = now();

    // Both pinned: a file by the old signer, then one by the new signer.
    s.serve_signed(
        &user,
        &old,
        &format!("{}{}\n", header(&user, t, t + 3600), k1.public_line()),
    );
    expect_served(&s.env.keys(&user, None), &k1, "directory");
    s.serve_signed(
        &user,
        &new,
        &format!("{}{}\n", header(&user, t + 1, t + 3600), k2.public_line()),
    );
    sleep(Duration::from_millis(1100));
    expect_served(&s.env.keys(&user, None), &k2, "directory");

    // Old signer removed from the config: its files are refused, the new
    // signer's are accepted.
    Signed::set_signers(&mut s.env, &[&new]);
    s.serve_signed(
        &user,
        &old,
        &format!("{}{}\n", header(&user, t + 2, t + 3600), k1.public_line()),
    );
    sleep(Duration::from_millis(1100));
    let r = s.env.keys(&user, None);
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert!(
        r.field("warning")
            .unwrap_or_default()
            .contains("not a configured signer"),
        "{r}"
    );
    s.serve_signed(
        &user,
        &new,
        &format!("{}{}\n", header(&user, t + 3, t + 3600), k1.public_line()),
    );
    sleep(Duration::from_millis(1100));
    expect_served(&s.env.keys(&user, None), &k1, "directory");
}

#[test]
fn publish_round_trip_to_a_real_sshd_login() {
    let keys = TestDir::new("pubkeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let login = SshKey::ed25519(keys.path(), "login");
    let weak = SshKey::generate(keys.path(), "weak", KeyType::Rsa(1024));
    let user = TestUser::new();

    // Source folder: one file per user, with a key the policy drops.
    let src = keys.subdir("src");
    write_file(
        &src.join(format!("{}.keys", user.name)),
        format!(
            "# {}\n{}\n{}\n",
            user.name,
            login.public_line(),
            weak.public_line()
        ),
        0o644,
    );
    let nginx = Nginx::start();
    let out_dir = nginx.root.join("users");
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s"));
    Signed::set_signers(&mut env, &[&signer]);

    let published = env.kw.run(&[
        "publish",
        src.to_str().unwrap(),
        out_dir.to_str().unwrap(),
        "--signer",
        signer.path.to_str().unwrap(),
        "--validity",
        "1d",
    ]);
    assert!(published.success(), "{published}");
    assert!(
        published.stdout.contains("1 key(s) published"),
        "{published}"
    );
    assert!(
        published.stdout.contains("below min_rsa_bits"),
        "{published}"
    );
    assert!(out_dir.join(format!("{}.keys.sig", user.name)).exists());
    // nginx runs as www-data: the published tree must be readable
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));

    // The signature also verifies with OpenSSH itself.
    let allowed = keys.write(
        "allowed_signers",
        format!("keyward@publish {}\n", signer.public_line()),
        0o644,
    );
    let body = out_dir.join(format!("{}.keys", user.name));
    let verify = run(
        Command::new("sh").arg("-c").arg(format!(
            "ssh-keygen -Y verify -f {} -I keyward@publish -n keyward -s {}.sig < {}",
            allowed.display(),
            body.display(),
            body.display()
        )),
        Duration::from_secs(20),
    );
    assert!(verify.success(), "ssh-keygen -Y verify: {verify}");

    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();
    let r = sshd.login(&user.name, &login.path, "id -un");
    assert!(
        r.ok,
        "login through a published signed directory: {r}\n{}",
        sshd.log_text()
    );
    assert_eq!(r.stdout().trim(), user.name);
    let weak_login = sshd.login(&user.name, &weak.path, "id -un");
    assert!(!weak_login.ok, "the dropped RSA-1024 key must not log in");
}

/// An unsigned 404 answered to sync must not delete the only copy of the
/// serial: an older, still valid signed file (with a revoked key) would be
/// served again. The floor survives the 404 and the removal.
#[test]
fn a_404_to_sync_does_not_reopen_a_rollback() {
    rollback_after(|s, user| {
        s.nginx.remove(&format!("users/{user}.keys"));
        s.nginx.remove(&format!("users/{user}.keys.sig"));
        let out = s.env.kw.run(&["sync"]);
        assert_eq!(out.code, Some(0), "{out}");
        assert!(
            !s.env.entry(user).exists(),
            "sync removes the entry after a 404"
        );
    });
}

/// The same when the admin removes the cache entry by hand.
#[test]
fn removing_the_cache_entry_does_not_reopen_a_rollback() {
    rollback_after(|s, user| {
        std::fs::remove_file(s.env.entry(user)).unwrap();
    });
}

/// Serial 200 (the current file, key `new`) is cached; `between` happens;
/// then a mirror replays serial 100 (key `revoked`), validly signed and not
/// yet expired. It must not be served, and the log must say why.
fn rollback_after(between: impl FnOnce(&Signed, &str)) {
    let keys = TestDir::new("signkeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let new_key = SshKey::ed25519(keys.path(), "new");
    let revoked = SshKey::ed25519(keys.path(), "revoked");
    let s = Signed::new(&[&signer], keys);
    let user = keysenv::fake_user();
    let t = now();
    let current = format!(
        "{}{}\n",
        header(&user, 200, t + 3600),
        new_key.public_line()
    );
    let old = format!(
        "{}{}\n",
        header(&user, 100, t + 3600),
        revoked.public_line()
    );

    s.serve_signed(&user, &signer, &current);
    let r = s.env.keys(&user, None);
    expect_served(&r, &new_key, "directory");

    between(&s, &user);

    s.serve_signed(&user, &signer, &old);
    sleep(Duration::from_millis(1100));
    let r = s.env.keys(&user, None);
    assert_eq!(
        r.out.code,
        Some(1),
        "the revoked key must not be served: {r}"
    );
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "fail", "{r}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains("serial 100 is lower than the highest accepted serial 200"),
        "the log must name the rollback: {r}"
    );
    // The same file with serial 200 but another body is refused as well.
    let forged = format!(
        "{}{}\n",
        header(&user, 200, t + 3600),
        revoked.public_line()
    );
    s.serve_signed(&user, &signer, &forged);
    let r = s.env.keys(&user, None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("reuses serial 200"),
        "{r}"
    );
    // A newer file is accepted again.
    let newer = format!(
        "{}{}\n",
        header(&user, 201, t + 3600),
        new_key.public_line()
    );
    s.serve_signed(&user, &signer, &newer);
    let r = s.env.keys(&user, None);
    expect_served(&r, &new_key, "directory");
}

/// An unsafe ca_file is refused like an unsafe config: fail closed (even with
/// a stale entry to serve), and the log names the file.
#[test]
fn unsafe_ca_file_fails_closed_and_is_named() {
    let keys = TestDir::new("signkeys");
    let k = SshKey::ed25519(keys.path(), "k");
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let mut env = KeysEnv::new(|c| c.url(url).ttl("1s").max_stale("1h").timeout("3s"));
    let user = keysenv::fake_user();
    nginx.put_keys(&user, &format!("{}\n", k.public_line()));
    let r = env.keys(&user, None);
    assert_eq!(r.out.code, Some(0), "{r}");

    // Any PEM will do: the file is refused before it is parsed.
    let ca = env.path().join("ca.pem");
    write_file(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
        0o666,
    );
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nca_file = {}\n",
            toml_str(&ca.display().to_string())
        ),
        1,
    );
    env.kw.write_config(&toml);
    sleep(Duration::from_millis(1100));
    let r = env.keys(&user, None);
    assert_eq!(
        r.out.code,
        Some(1),
        "stale must not be served past an unsafe ca_file: {r}"
    );
    assert_eq!(r.out.stdout, "", "{r}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains(&format!("ca_file {}", ca.display())) && reason.contains("writable"),
        "{r}"
    );
    let _ = &mut env;
}

/// The signer-rotation procedure of docs/SECURITY.md: the old signer is
/// compromised and signs the attacker's key with an absurd serial; the
/// operator removes it from the signers and adds the new one. The
/// attacker's cached key is no longer served (not even stale), and the new
/// signer's files, with far lower serials, are accepted.
#[test]
fn removing_a_compromised_signer_voids_its_entries_and_floor() {
    let keys = TestDir::new("signkeys");
    let old = SshKey::ed25519(keys.path(), "old");
    let new = SshKey::ed25519(keys.path(), "new");
    let good = SshKey::ed25519(keys.path(), "good");
    let evil = SshKey::ed25519(keys.path(), "evil");
    let mut s = Signed::new(&[&old], keys);
    let user = keysenv::fake_user();
    let t = now();
    let line = |k: &SshKey, serial: u64| {
        format!("{}{}\n", header(&user, serial, t + 3600), k.public_line())
    };

    s.serve_signed(&user, &old, &line(&good, t));
    expect_served(&s.env.keys(&user, None), &good, "directory");
    // The attacker holds the old signer's key.
    s.serve_signed(&user, &old, &line(&evil, 9_999_999_999));
    sleep(Duration::from_millis(1100));
    expect_served(&s.env.keys(&user, None), &evil, "directory");

    // Step 1: the old signer out, the new one in. The mirror still serves
    // the attacker's file: refused, and the cached copy is not served
    // either (it would be, as stale, were it still trusted).
    Signed::set_signers(&mut s.env, &[&new]);
    let r = s.env.keys(&user, None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "the attacker's key is not served: {r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("no longer a configured signer"),
        "{r}"
    );
    // Step 2: the new signer's file, with a serial far below the absurd
    // one, is accepted: the removed signer's floor binds no more.
    s.serve_signed(&user, &new, &line(&good, t + 1));
    expect_served(&s.env.keys(&user, None), &good, "directory");
    // And from then on the new signer's floor holds.
    s.serve_signed(&user, &new, &line(&evil, t));
    sleep(Duration::from_millis(1100));
    let r = s.env.keys(&user, None);
    assert_eq!(r.materials(), vec![good.public_material()], "{r}");
    assert!(
        r.field("warning").unwrap_or_default().contains("rollback"),
        "{r}"
    );
}
