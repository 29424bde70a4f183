//! Rules that rested on a single test (or none), each tried again another
//! way: through real sshd where its verdict is the point, through a real
//! rsyslog where the log line is. Each test was checked to fail with its
//! rule broken in the code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::fault::dead_url;
use crate::support::keyward::toml_str;
use crate::support::rsyslog::LogLine;
use crate::support::*;

/// keyward's syslog lines for `user` (and `fp`, if given).
fn kw_lines(log: &Rsyslog, user: &str, fp: Option<&str>) -> Vec<LogLine> {
    log.lines_of("keyward")
        .into_iter()
        .filter(|l| l.field("user").as_deref() == Some(user))
        .filter(|l| fp.is_none() || l.field("fp").as_deref() == fp)
        .collect()
}

/// A key login through `sshd`, and keyward's last line about that key
/// written during it (sshd runs the command once or twice per key).
fn attempt(sshd: &Sshd, log: &Rsyslog, user: &TestUser, key: &SshKey) -> (SshOut, LogLine) {
    let fp = key.fingerprint();
    let before = kw_lines(log, &user.name, Some(&fp)).len();
    let r = sshd.login(&user.name, &key.path, "id -un");
    let lines = log.wait_for_n(before + 1, Duration::from_secs(10), |l| {
        l.program == "keyward"
            && l.field("user").as_deref() == Some(user.name.as_str())
            && l.field("fp").as_deref() == Some(fp.as_str())
    });
    let line = lines.into_iter().skip(before).last().unwrap_or_else(|| {
        panic!(
            "no keyward line for {} {fp}: {r}\n{}\n{}",
            user.name,
            log.text(),
            sshd.log_text()
        )
    });
    if r.ok {
        assert_eq!(r.stdout().trim(), user.name, "{r}");
    }
    (r, line)
}

fn sshd_for(kw: &Keyward, command_user: &str) -> Sshd {
    Sshd::builder()
        .authorized_keys_command(&kw.authorized_keys_command())
        .authorized_keys_command_user(command_user)
        .start()
}

fn set_mode(p: &Path, mode: u32) {
    chmod(p, mode);
}

// ---------------------------------------------------------------------------
// StrictModes for [files], judged against sshd's own StrictModes.

/// Every layout is tried three ways: sshd's own `AuthorizedKeysFile` with
/// StrictModes (the reference), sshd running keyward, and keyward run
/// directly (whose log line must name the unsafe path). A file in the home
/// is checked up to the home directory (sshd's `safe_path` stops there); a
/// file outside it up to `/`.
#[test]
fn files_strict_modes_on_every_directory_as_sshd_judges_them() {
    let keys = TestDir::new("guard-sm");
    // A file outside the home, under a directory the test can open up.
    let outside_parent = keys.subdir("shared");
    let outside = outside_parent.join("keys");
    fs::create_dir_all(&outside).unwrap();
    set_mode(&outside, 0o755);
    let env = KeysEnv::new(|mut c| {
        c.files = vec![
            "%h/.ssh/authorized_keys".into(),
            format!("{}/%u", outside.display()),
        ];
        c
    });
    // sshd's runs log to their own rsyslog: the direct run below counts
    // exactly its own line.
    let sshd_log = Rsyslog::start();
    let mut kw_cf = env.config.clone();
    kw_cf.log_socket = Some(sshd_log.socket.clone());
    let kw = Keyward::with_config(&kw_cf);
    let via_keyward = sshd_for(&kw, "root");
    let reference = Sshd::builder()
        .set(
            "AuthorizedKeysFile",
            &format!(".ssh/authorized_keys {}/%u", outside.display()),
        )
        .start();

    let user = TestUser::new();
    let other = TestUser::new();
    let home_key = SshKey::ed25519(keys.path(), "home");
    let out_key = SshKey::ed25519(keys.path(), "out");
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let ak = ssh.join("authorized_keys");
    fs::write(&ak, format!("{}\n", home_key.public_line())).unwrap();
    let ok_file = outside.join(&user.name);
    fs::write(&ok_file, format!("{}\n", out_key.public_line())).unwrap();
    for p in [&ssh, &ak, &ok_file] {
        chown_to(p, &user.name);
    }
    set_mode(&user.home, 0o750);
    set_mode(&ssh, 0o700);
    set_mode(&ak, 0o600);
    set_mode(&ok_file, 0o600);

    // (layout, home key served, outside key served, path the refusal names)
    let check = |layout: &str, home_ok: bool, out_ok: bool, named: Option<&Path>| {
        let r = env.keys(&user.name, None);
        assert_eq!(r.out.code, Some(0), "{layout}: {r}");
        let served = r.materials();
        assert_eq!(
            served.contains(&home_key.public_material()),
            home_ok,
            "{layout}: home key: {r}"
        );
        assert_eq!(
            served.contains(&out_key.public_material()),
            out_ok,
            "{layout}: outside key: {r}"
        );
        if let Some(p) = named {
            let p = p.display().to_string();
            assert!(
                r.log.raw.contains(&format!("{p}:")) || r.log.raw.contains(&format!("{p} ")),
                "{layout}: the log names {p}: {r}"
            );
        }
        for (key, want) in [(&home_key, home_ok), (&out_key, out_ok)] {
            let by_sshd = reference.login(&user.name, &key.path, "id -un");
            assert_eq!(
                by_sshd.ok,
                want,
                "{layout}: sshd's own StrictModes, key {}: {by_sshd}\n{}",
                key.path.display(),
                reference.log_text()
            );
            let by_kw = via_keyward.login(&user.name, &key.path, "id -un");
            assert_eq!(
                by_kw.ok,
                want,
                "{layout}: sshd through keyward, key {}: {by_kw}\n{}\n{}",
                key.path.display(),
                via_keyward.log_text(),
                sshd_log.text()
            );
        }
    };

    check("safe layout", true, true, None);

    // Debian's sshd accepts a group-writable directory whose group has the
    // owner as its only member (its user private group); keyward does not
    // (DESIGN.md). The group here has another member, so both refuse.
    let chgrp = |p: &Path, gid: u32| std::os::unix::fs::chown(p, None, Some(gid)).unwrap();
    chgrp(&ssh, other.gid);
    set_mode(&ssh, 0o770);
    check("group-writable ~/.ssh", false, true, Some(&ssh));
    set_mode(&ssh, 0o700);
    chgrp(&ssh, user.gid);

    chgrp(&user.home, other.gid);
    set_mode(&user.home, 0o770);
    check("group-writable home", false, true, Some(&user.home));
    set_mode(&user.home, 0o750);
    chgrp(&user.home, user.gid);

    // Traversable, so the owner rule (not a permission error) refuses it.
    chown_to(&ssh, &other.name);
    set_mode(&ssh, 0o755);
    check("~/.ssh owned by another user", false, true, Some(&ssh));
    chown_to(&ssh, &user.name);
    set_mode(&ssh, 0o700);

    set_mode(&outside_parent, 0o777);
    check(
        "world-writable directory above a file outside the home",
        true,
        false,
        Some(&outside_parent),
    );
    set_mode(&outside_parent, 0o755);

    check("safe again", true, true, None);

    // The home itself under a world-writable directory: sshd stops at the
    // home, and so does keyward.
    let open_dir = keys.subdir("open");
    set_mode(&open_dir, 0o777);
    let moved = open_dir.join(&user.name);
    // usermod refuses while a process of the user runs: the last login's
    // session may still be ending.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while Command::new("pgrep")
        .args(["-u", &user.name])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run(
        Command::new("usermod")
            .args(["-m", "-d"])
            .arg(&moved)
            .arg(&user.name),
        Duration::from_secs(30),
    );
    assert!(out.success(), "usermod -m -d: {out}");
    check("home under a world-writable directory", true, true, None);
}

// ---------------------------------------------------------------------------
// Fail closed with local files when the directory is down.

/// docs/ROBUSTNESS.md 1b: with `[files]` and a directory that cannot be
/// asked (and no usable cache entry), the lookup fails closed: the local
/// keys are not served either, since the directory's answer is unknown.
/// Tried here through real sshd; the same key logs in once the directory
/// answers (a 404: this user has no directory keys).
#[test]
fn files_with_the_directory_down_fail_closed_through_sshd() {
    let keys = TestDir::new("guard-down");
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|mut c| {
        c.files = vec!["%h/.ssh/authorized_keys".into()];
        c.url(dead_url()).timeout("1s")
    });
    let sshd = sshd_for(&env.kw, "root");
    let user = TestUser::new();
    let key = SshKey::ed25519(keys.path(), "local");
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let ak = ssh.join("authorized_keys");
    fs::write(&ak, format!("{}\n", key.public_line())).unwrap();
    chown_to(&ssh, &user.name);
    chown_to(&ak, &user.name);
    set_mode(&ssh, 0o700);
    set_mode(&ak, 0o600);

    let (r, line) = attempt(&sshd, &env.log, &user, &key);
    assert!(!r.ok, "directory down, no cache: fail closed: {r}");
    line.assert_field("decision", "fail");
    assert!(line.field("reason").is_some(), "{}", line.raw);
    assert!(
        !env.entry(&user.name).exists(),
        "nothing cached from a failed lookup"
    );

    env.reconfigure(|c| {
        let mut c = c;
        c.urls = vec![nginx.users_url()];
        c
    });
    let (r, line) = attempt(&sshd, &env.log, &user, &key);
    assert!(
        r.ok,
        "the directory answers: the local key works: {r}\n{}",
        line.raw
    );
    // sshd's second run (the signed request) answers from the cache.
    assert!(
        line.field("source")
            .is_some_and(|s| s == "files+directory" || s == "files+cache"),
        "{}",
        line.raw
    );
}

// ---------------------------------------------------------------------------
// An unsafe drop-in.

/// A drop-in that redirects the directory to a mirror serving a key: read
/// while it is root-owned and not group/world-writable (the key logs in
/// through sshd), refused otherwise: the login fails, keyward's syslog line
/// names the file, and `sync` refuses to run (exit 2).
#[test]
fn unsafe_drop_in_is_refused_by_the_login_path_and_by_sync() {
    let keys = TestDir::new("guard-dropin");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(dead_url()).timeout("1s"));
    let sshd = sshd_for(&env.kw, "keyward");
    let user = TestUser::new();
    let key = SshKey::ed25519(keys.path(), "k");
    nginx.put_keys(&user.name, &format!("{}\n", key.public_line()));
    let d = PathBuf::from(format!("{}.d", env.kw.config.display()));
    mkdir_root_0755(&d);
    let drop_in = d.join("50-mirror.toml");
    write_file(
        &drop_in,
        format!("[directory]\nurls = [{}]\n", toml_str(&nginx.users_url())),
        0o644,
    );

    let (r, line) = attempt(&sshd, &env.log, &user, &key);
    assert!(r.ok, "a safe drop-in is read: {r}\n{}", line.raw);

    let other = TestUser::new();
    for (what, unsafe_it) in [
        (
            "group-writable",
            Box::new(|| set_mode(&drop_in, 0o664)) as Box<dyn Fn()>,
        ),
        ("world-writable", Box::new(|| set_mode(&drop_in, 0o646))),
        (
            "owned by a user",
            Box::new(|| chown_to(&drop_in, &other.name)),
        ),
    ] {
        unsafe_it();
        let r = sshd.login(&user.name, &key.path, "id -un");
        assert!(!r.ok, "{what} drop-in: the login must fail: {r}");
        // The refused config cannot say where to log: its record goes to
        // the default socket and stderr. The lookup run by hand shows it.
        let out = env.kw.keys_as_keyward(&user.name, Some(&key.fingerprint()));
        assert_eq!(out.code, Some(1), "{what}: {out}");
        assert_eq!(out.stdout, "", "{what}: {out}");
        assert!(
            out.stderr.contains("decision=fail")
                && out.stderr.contains(&drop_in.display().to_string()),
            "{what}: the record names the drop-in: {out}"
        );
        let out = env.kw.run(&["sync"]);
        assert_eq!(out.code, Some(2), "{what}: sync refuses to run: {out}");
        assert!(
            out.stderr.contains(&drop_in.display().to_string()),
            "{what}: {out}"
        );
        std::os::unix::fs::chown(&drop_in, Some(0), Some(0)).unwrap();
        set_mode(&drop_in, 0o644);
    }
    let (r, line) = attempt(&sshd, &env.log, &user, &key);
    assert!(r.ok, "safe again: {r}\n{}", line.raw);
}

// ---------------------------------------------------------------------------
// The rollback floor after a 404 at login (signed mode).

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed_body(user: &str, serial: u64, key: &SshKey) -> String {
    let expires = now() + 3600;
    let date = run(
        Command::new("date").args(["-u", "-d", &format!("@{expires}"), "+%Y-%m-%dT%H:%M:%SZ"]),
        Duration::from_secs(10),
    );
    format!(
        "#keyward user={user} serial={serial} expires={}\n{}\n",
        date.stdout.trim(),
        key.public_line()
    )
}

/// Puts `body` and its signature (`ssh-keygen -Y sign -n keyward`) on nginx.
fn publish_signed(nginx: &Nginx, dir: &Path, signer: &SshKey, user: &str, body: &str) {
    let file = dir.join(format!("tosign-{}", unique()));
    write_file(&file, body, 0o644);
    let out = run(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
            .arg(&signer.path)
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(out.success(), "ssh-keygen -Y sign: {out}");
    let sig = fs::read(format!("{}.sig", file.display())).unwrap();
    nginx.put_keys(user, body);
    nginx.put(&format!("users/{user}.keys.sig"), sig);
}

/// Serial 200 (key `current`) is accepted at a login; the directory then
/// answers 404 to a login (the user loses their keys: authoritative, but
/// unsigned); then a mirror replays serial 100 (key `revoked`), validly
/// signed and not expired. The 404 must not have lowered or forgotten the
/// floor: the revoked key does not log in, and the log says why.
#[test]
fn a_404_at_login_keeps_the_rollback_floor_through_sshd() {
    let keys = TestDir::new("guard-floor");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let current = SshKey::ed25519(keys.path(), "current");
    let revoked = SshKey::ed25519(keys.path(), "revoked");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| {
        c.url(nginx.users_url())
            .ttl("1s")
            .negative_ttl("1s")
            .max_stale("1h")
            .timeout("3s")
    });
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            toml_str(&signer.public_line())
        ),
        1,
    );
    env.kw.write_config(&toml);
    let sshd = sshd_for(&env.kw, "keyward");
    let user = TestUser::new();

    publish_signed(
        &nginx,
        keys.path(),
        &signer,
        &user.name,
        &signed_body(&user.name, 200, &current),
    );
    let (r, line) = attempt(&sshd, &env.log, &user, &current);
    assert!(r.ok, "serial 200: {r}\n{}", line.raw);

    nginx.remove_keys(&user.name);
    nginx.remove(&format!("users/{}.keys.sig", user.name));
    sleep(Duration::from_millis(1100));
    let (r, line) = attempt(&sshd, &env.log, &user, &current);
    assert!(!r.ok, "after a 404 the user has no keys: {r}");
    line.assert_field("source", "directory");

    publish_signed(
        &nginx,
        keys.path(),
        &signer,
        &user.name,
        &signed_body(&user.name, 100, &revoked),
    );
    sleep(Duration::from_millis(1100));
    let (r, line) = attempt(&sshd, &env.log, &user, &revoked);
    assert!(
        !r.ok,
        "a replayed older file after a 404: refused: {r}\n{}",
        line.raw
    );
    assert_ne!(
        line.field("decision").as_deref(),
        Some("match"),
        "{}",
        line.raw
    );
    assert!(
        line.msg.contains(
            "serial 100 is lower than the highest accepted serial 200 (rollback refused)"
        ),
        "the log names the rollback: {}",
        line.raw
    );

    publish_signed(
        &nginx,
        keys.path(),
        &signer,
        &user.name,
        &signed_body(&user.name, 201, &current),
    );
    sleep(Duration::from_millis(1100));
    let (r, line) = attempt(&sshd, &env.log, &user, &current);
    assert!(r.ok, "a newer signed file is accepted: {r}\n{}", line.raw);
}

// ---------------------------------------------------------------------------
// Quote escaping in a real log line.

/// The raw line rsyslog wrote, split the strict way a log parser would:
/// `key=value` tokens, a value either bare or double-quoted with `\"` and
/// `\\` escapes. Returns None if the line does not parse.
fn strict_fields(msg: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = msg.chars().peekable();
    loop {
        while it.peek() == Some(&' ') {
            it.next();
        }
        if it.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        loop {
            match it.next()? {
                '=' => break,
                c if c == ' ' || c == '"' || c == '\\' => return None,
                c => key.push(c),
            }
        }
        let mut value = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next()? {
                    '\\' => match it.next()? {
                        c @ ('"' | '\\') => value.push(c),
                        'x' => value.push_str("\\x"),
                        _ => return None,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            if !matches!(it.peek(), None | Some(' ')) {
                return None;
            }
        } else {
            while let Some(&c) = it.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '\\' {
                    return None;
                }
                value.push(c);
                it.next();
            }
        }
        out.push((key, value));
    }
}

/// Values with `"`, `\`, `=` and spaces, chosen to forge a `decision=match`
/// field, reach a real rsyslog as one quoted value each: the line parses
/// back to exactly the values given, with one `decision`.
#[test]
fn quotes_and_backslashes_are_escaped_in_a_real_log_line() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    let fp = "SHA256:q\"\\ decision=match user=\"root\\\" x=\\";
    let r = env.keys(&user, Some(fp));
    assert_eq!(r.out.code, Some(0), "{r}");
    let msg = &r.log.msg;
    assert!(
        msg.contains(r#"fp="SHA256:q\"\\ decision=match user=\"root\\\" x=\\""#),
        "the raw line: {}",
        r.log.raw
    );
    let fields = strict_fields(msg).unwrap_or_else(|| panic!("does not parse: {}", r.log.raw));
    let get = |k: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("fp"), vec![fp], "{}", r.log.raw);
    assert_eq!(get("user"), vec![user.as_str()], "{}", r.log.raw);
    assert_eq!(get("decision").len(), 1, "one decision: {}", r.log.raw);
    assert_ne!(get("decision"), vec!["match"], "{}", r.log.raw);

    // A user name with a quote and a backslash: refused or not, its record
    // carries the name intact.
    let odd = format!("{}\"\\", fake_user());
    let out = env.kw.keys(&odd, None);
    let line = env
        .log
        .wait_for(Duration::from_secs(10), |l| {
            l.program == "keyward" && l.raw.contains(&fake_prefix(&odd))
        })
        .unwrap_or_else(|| panic!("no line for {odd:?}: {out}\n{}", env.log.text()));
    let fields = strict_fields(&line.msg).unwrap_or_else(|| panic!("does not parse: {}", line.raw));
    let users: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "user")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(users, vec![odd.as_str()], "{}", line.raw);
}

/// The part of a name before its quote (what a raw line surely contains).
fn fake_prefix(name: &str) -> String {
    name.split('"').next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------
// The RSA size boundary through real sshd.

/// `min_rsa_bits = 2048`: a 2047-bit RSA key (ssh-keygen -b 2047, which
/// sshd itself accepts) does not log in and the log says why; a 2048-bit
/// key does.
#[test]
fn rsa_boundary_2047_refused_2048_served_through_sshd() {
    let keys = TestDir::new("guard-rsa");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).min_rsa_bits(2048));
    let sshd = sshd_for(&env.kw, "keyward");
    let user = TestUser::new();
    let small = SshKey::generate(keys.path(), "r2047", KeyType::Rsa(2047));
    let exact = SshKey::generate(keys.path(), "r2048", KeyType::Rsa(2048));
    nginx.put_keys(
        &user.name,
        &format!("{}\n{}\n", small.public_line(), exact.public_line()),
    );

    let (r, line) = attempt(&sshd, &env.log, &user, &small);
    assert!(!r.ok, "RSA 2047 below min_rsa_bits 2048: {r}");
    line.assert_field("decision", "nomatch");
    assert!(
        line.field("reason")
            .unwrap_or_default()
            .contains("2047 bits is below min_rsa_bits 2048"),
        "{}",
        line.raw
    );
    let (r, line) = attempt(&sshd, &env.log, &user, &exact);
    assert!(r.ok, "RSA 2048 = min_rsa_bits: served: {r}\n{}", line.raw);
}
