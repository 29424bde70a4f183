//! Local faults: the cache directory not writable, a full disk, truncated
//! or corrupt entries, entries replaced by symlinks, FIFOs or directories,
//! an unsafe or unreadable config, no syslog socket. keyward answers when it
//! safely can, fails closed when it cannot, and never serves a damaged entry.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use crate::support::cachefiles::*;
use crate::support::checks::*;
use crate::support::fault::dead_url;
use crate::support::*;

#[test]
fn robust_cache_dir_not_writable_keys_still_answer_from_the_directory() {
    let keys = TestDir::new("robust-ro-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    for (label, owner, mode) in [
        ("keyward-owned, mode 0550", "keyward", 0o550),
        ("root-owned, mode 0755", "root", 0o755),
    ] {
        let (cached, fresh) = (fake_user(), fake_user());
        nginx.put_keys(&cached, &body(&[&a]));
        let r = env.keys_as_keyward(&cached, None);
        assert_eq!(r.materials(), mats(&[&a]), "{label}: {r}");
        let good = fs::read(env.entry(&cached)).unwrap();

        chown_to(&env.cache, owner);
        chmod(&env.cache, mode);
        // the directory changed meanwhile: keyward serves the new answer,
        // cannot store it, says so, and leaves the old entry alone
        nginx.put_keys(&cached, &body(&[&a, &b]));
        nginx.put_keys(&fresh, &body(&[&b]));
        age_past(decode(&good).fetched_at, 1);
        for as_keyward in [true, false] {
            let r = if as_keyward {
                env.keys_as_keyward(&cached, None)
            } else {
                env.keys(&cached, None)
            };
            assert_eq!(r.out.code, Some(0), "{label}: {r}");
            assert_eq!(sorted(r.materials()), mats(&[&a, &b]), "{label}: {r}");
            assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
            assert!(
                r.field("warning")
                    .is_some_and(|w| w.contains("cache not updated")),
                "{label}: the admin is told: {r}"
            );
            assert_eq!(fs::read(env.entry(&cached)).unwrap(), good, "{label}");

            let r = env.keys_as_keyward(&fresh, Some(&b.fingerprint()));
            assert_eq!(r.out.code, Some(0), "{label}: {r}");
            assert_eq!(r.materials(), mats(&[&b]), "{label}: {r}");
            assert_eq!(r.decision(), "match", "{r}");
            assert!(
                r.field("warning")
                    .is_some_and(|w| w.contains("cache not updated")),
                "{label}: {r}"
            );
            assert!(!env.entry(&fresh).exists(), "{label}");
        }
        // sync cannot store either: reports it, changes nothing
        let out = env.kw.run_as("keyward", &["sync"]);
        no_crash(&out, label);
        // the only cached user failed, so nothing could be
        // synced: exit 2 (1 is "some users failed")
        assert_eq!(
            out.code,
            Some(2),
            "{label}: sync must report failure: {out}"
        );
        assert_eq!(fs::read(env.entry(&cached)).unwrap(), good, "{label}");
        assert_eq!(tmp_files(&env.cache), Vec::<String>::new(), "{label}");

        chown_to(&env.cache, "keyward");
        chmod(&env.cache, 0o750);
    }
}

#[test]
fn robust_disk_full_cache_still_answers_and_leaves_no_temp_files() {
    let keys = TestDir::new("robust-full-keys");
    let (a, b, c) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
        SshKey::ed25519(keys.path(), "c"),
    );
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|cf| cf.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    // declared after env: unmounted before env's directory is removed
    let disk = Tmpfs::mount(&env.cache, "64k", "keyward");
    let md = fs::metadata(&env.cache).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750);

    let (old, new) = (fake_user(), fake_user());
    nginx.put_keys(&old, &body(&[&a]));
    let r = env.keys_as_keyward(&old, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let good = fs::read(env.entry(&old)).unwrap();

    disk.fill();
    let probe = fs::write(env.cache.join(".probe"), [0u8; 4096]);
    assert!(probe.is_err(), "the tmpfs should be full");
    let _ = fs::remove_file(env.cache.join(".probe"));

    // a user never cached: answered from the directory, not stored
    nginx.put_keys(&new, &body(&[&b]));
    let r = env.keys_as_keyward(&new, None);
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.materials(), mats(&[&b]), "{r}");
    let w = r.field("warning").unwrap_or_default();
    assert!(
        w.contains("cache not updated") && w.contains("No space left"),
        "{r}"
    );
    assert!(!env.entry(&new).exists());
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());

    // a stale user whose keys changed: the new answer is served, the old
    // entry stays intact (never half-replaced)
    nginx.put_keys(&old, &body(&[&a, &c]));
    age_past(decode(&good).fetched_at, 1);
    let r = env.keys(&old, Some(&c.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(r.materials(), mats(&[&c]), "{r}");
    assert!(r
        .field("warning")
        .is_some_and(|w| w.contains("cache not updated")));
    assert_eq!(fs::read(env.entry(&old)).unwrap(), good);
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());

    // directory down too: the intact old entry is served stale
    env.reconfigure(|cf| KwConfig {
        urls: vec![dead_url()],
        ..cf
    });
    let r = env.keys_as_keyward(&old, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");

    // sync on a full disk: fails, reports, leaves nothing behind
    env.reconfigure(|cf| KwConfig {
        urls: vec![nginx.users_url()],
        ..cf
    });
    let out = env.kw.run_as("keyward", &["sync"]);
    no_crash(&out, "sync on a full disk");
    // every user failed, so exit 2
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(fs::read(env.entry(&old)).unwrap(), good);
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
    drop(disk);
}

#[test]
fn robust_truncated_and_corrupt_cache_entries_are_never_served() {
    let keys = TestDir::new("robust-corrupt-keys");
    let (a, evil) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "evil"),
    );
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m").max_stale("1h"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let entry = env.entry(&user);
    let good = fs::read(&entry).unwrap();
    let sep = good.windows(2).position(|w| w == b"\n\n").unwrap();

    // the same body length, the evil key instead of the good one: only the
    // checksum can tell
    let swapped = String::from_utf8(good.clone())
        .unwrap()
        .replace(&a.public_material(), &evil.public_material())
        .into_bytes();
    assert_eq!(swapped.len(), good.len());
    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x01;
    let lied_length = String::from_utf8(good.clone())
        .unwrap()
        .replacen("length ", "length 1", 1)
        .into_bytes();
    let future = {
        let mut e = decode(&good);
        e.fetched_at = now_s() + 86_400;
        e.encode()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", Vec::new()),
        ("header only", good[..sep + 2].to_vec()),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("last byte missing", good[..good.len() - 1].to_vec()),
        ("one bit flipped in the body", flipped),
        ("evil key swapped in, same length", swapped),
        ("length field lies", lied_length),
        (
            "garbage",
            b"\x00\xff\xfekeyward\n\nssh-ed25519 AAAA".to_vec(),
        ),
        ("fetched_at in the future", future),
    ];
    for (what, bytes) in &cases {
        // directory reachable: refetched, the good key served
        plant_entry(&entry, bytes);
        let before = nginx.count(&user);
        let r = env.keys(&user, None);
        assert_eq!(r.out.code, Some(0), "{what}: {r}");
        assert_eq!(r.materials(), mats(&[&a]), "{what}: {r}");
        assert_eq!(
            r.field("source").as_deref(),
            Some("directory"),
            "{what}: {r}"
        );
        assert_eq!(nginx.count(&user), before + 1, "{what}: refetched");
        if *what != "fetched_at in the future" {
            assert!(
                r.field("warning").is_some_and(|w| w.contains("corrupt")),
                "{what}: the corruption is logged: {r}"
            );
        }
        let now = decode(&fs::read(&entry).unwrap());
        assert!(now.body.contains(&a.public_material()), "{what}: repaired");
    }
    // directory down: a corrupt entry is never served, the lookup fails closed
    env.reconfigure(|c| KwConfig {
        urls: vec![dead_url()],
        ..c
    });
    for (what, bytes) in &cases {
        plant_entry(&entry, bytes);
        let r = env.keys(&user, Some(&evil.fingerprint()));
        closed(&r.out, what);
        assert_eq!(r.decision(), "fail", "{what}: {r}");
        assert!(!r.out.stdout.contains(&evil.public_material()));
        assert_eq!(fs::read(&entry).unwrap(), *bytes, "{what}: left for sync");
    }
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
}

#[test]
fn robust_cache_entry_symlink_fifo_or_directory_is_refused_quickly() {
    let keys = TestDir::new("robust-link-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m").timeout("2s"));
    let (alice, bob) = (fake_user(), fake_user());
    nginx.put_keys(&alice, &body(&[&a]));
    nginx.put_keys(&bob, &body(&[&b]));
    for u in [&alice, &bob] {
        assert_eq!(env.keys_as_keyward(u, None).out.code, Some(0));
    }
    let bob_entry = fs::read(env.entry(&bob)).unwrap();
    let entry = env.entry(&alice);

    // alice -> bob: following it would hand bob's keys to alice
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&bob, &entry).unwrap();
    let r = env.keys_as_keyward(&alice, Some(&b.fingerprint()));
    closed(&r.out, "symlinked entry");
    let why = r.field("reason").unwrap_or_default();
    assert!(
        why.contains("symbolic link") && why.contains(&entry.display().to_string()),
        "{r}"
    );
    assert!(!r.out.stdout.contains(&b.public_material()));
    // as root (keyward drops to the keyward user first) the same
    let r = env.keys(&alice, None);
    closed(&r.out, "symlinked entry, as root");
    // a symlink to a file outside the cache
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &entry).unwrap();
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "symlink to /etc/passwd");
    assert!(r
        .field("reason")
        .unwrap_or_default()
        .contains("symbolic link"));

    // a FIFO nobody writes to: refused at once, never blocks
    fs::remove_file(&entry).unwrap();
    mkfifo(&entry);
    chown_to(&entry, "keyward");
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "FIFO entry");
    assert!(
        r.out.elapsed < Duration::from_secs(3),
        "a FIFO must not block: {r}"
    );
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("not a regular file"),
        "{r}"
    );

    // a directory
    fs::remove_file(&entry).unwrap();
    fs::create_dir(&entry).unwrap();
    chown_to(&entry, "keyward");
    chmod(&entry, 0o750);
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "directory entry");
    assert!(r
        .field("reason")
        .unwrap_or_default()
        .contains("not a regular file"));

    // sync walks the same cache: it neither hangs nor follows anything
    fs::remove_dir(&entry).unwrap();
    mkfifo(&entry);
    let link = env.entry(&fake_user());
    std::os::unix::fs::symlink(&bob, &link).unwrap();
    let out = env.kw.run_as("keyward", &["sync"]);
    no_crash(&out, "sync over a FIFO and a symlink");
    assert!(out.elapsed < Duration::from_secs(10), "{out}");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(&entry).unwrap().file_type().is_fifo());
    assert_eq!(
        decode(&fs::read(env.entry(&bob)).unwrap()).body,
        decode(&bob_entry).body
    );
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
}

#[test]
fn robust_unreadable_or_unsafe_config_fails_closed_and_names_the_file() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let good = env.config.to_toml();
    let cfg = env.kw.config.clone();
    let cfgs = cfg.display().to_string();
    let user = fake_user();
    let check = |what: &str, out: &Out, needles: &[&str]| {
        closed(out, what);
        assert!(
            out.stderr.contains("decision=fail"),
            "{what}: the decision line (stderr copy): {out}"
        );
        for n in needles {
            assert!(out.stderr.contains(n), "{what}: must mention {n:?}: {out}");
        }
        assert!(out.elapsed < Duration::from_secs(5), "{what}: {out}");
    };

    chmod(&cfg, 0o664);
    check(
        "group-writable",
        &env.kw.keys(&user, None),
        &[&cfgs, "0664"],
    );
    chmod(&cfg, 0o602);
    check(
        "world-writable",
        &env.kw.keys(&user, None),
        &[&cfgs, "0602"],
    );
    chmod(&cfg, 0o600);
    check(
        "unreadable by keyward",
        &env.kw.keys_as_keyward(&user, None),
        &[&cfgs, "Permission denied"],
    );
    env.kw.write_config(&good);

    fs::remove_file(&cfg).unwrap();
    check(
        "missing",
        &env.kw.keys(&user, None),
        &[&cfgs, "No such file"],
    );

    let real = env.kw.dir.join("real.toml");
    fs::write(&real, &good).unwrap();
    std::os::unix::fs::symlink(&real, &cfg).unwrap();
    check(
        "symlink",
        &env.kw.keys(&user, None),
        &[&cfgs, "symbolic link"],
    );
    fs::remove_file(&cfg).unwrap();

    mkfifo(&cfg);
    check(
        "FIFO",
        &env.kw.keys(&user, None),
        &[&cfgs, "not a regular file"],
    );
    fs::remove_file(&cfg).unwrap();

    fs::create_dir(&cfg).unwrap();
    check(
        "directory",
        &env.kw.keys(&user, None),
        &[&cfgs, "not a regular file"],
    );
    fs::remove_dir(&cfg).unwrap();

    env.kw.write_config(&good);
    chmod(&env.kw.dir, 0o775);
    let dirs = env.kw.dir.display().to_string();
    check(
        "group-writable parent directory",
        &env.kw.keys(&user, None),
        &[&dirs, "0775"],
    );
    chmod(&env.kw.dir, 0o755);

    env.kw
        .write_config("[directory]\nurls = [\"http://a/{user}\0\"]\n\x01\x02");
    check("NUL and control bytes", &env.kw.keys(&user, None), &[]);
    let mut huge = good.clone();
    while huge.len() < 1_100_000 {
        huge.push_str("# padding padding padding padding padding padding padding\n");
    }
    env.kw.write_config(&huge);
    check("larger than 1 MiB", &env.kw.keys(&user, None), &["1 MiB"]);
    env.kw
        .write_config("\u{feff}\u{202e}[directory]\nurls = 7\n");
    check("wrong types", &env.kw.keys(&user, None), &[]);
    env.kw.write_config(&good);
}

#[test]
fn robust_syslog_socket_missing_decision_goes_to_stderr() {
    let keys = TestDir::new("robust-nolog-keys");
    let a = SshKey::ed25519(keys.path(), "a");
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));

    let stale_sock = env.path().join("stale.sock");
    drop(std::os::unix::net::UnixDatagram::bind(&stale_sock).unwrap());
    let regular = env.path().join("regular-file");
    fs::write(&regular, "").unwrap();
    let cases = [
        ("no such socket", env.path().join("nope.sock")),
        ("socket file without a listener", stale_sock),
        ("a regular file", regular),
    ];
    for (what, sock) in cases {
        env.reconfigure(|c| KwConfig {
            log_socket: Some(sock.clone()),
            ..c
        });
        let before = env.log.lines_of("keyward").len();
        for as_keyward in [true, false] {
            let out = if as_keyward {
                env.kw.keys_as_keyward(&user, None)
            } else {
                env.kw.keys(&user, None)
            };
            assert_eq!(out.code, Some(0), "{what}: lookup still works: {out}");
            assert_eq!(materials(&out.stdout), mats(&[&a]), "{what}: {out}");
            let decisions: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.contains("decision="))
                .collect();
            assert_eq!(decisions.len(), 1, "{what}: one decision line: {out}");
            assert!(
                decisions[0].starts_with("keyward: decision=serve")
                    && decisions[0].contains(&format!("user={user}")),
                "{what}: {out}"
            );
        }
        // a refusal is on stderr too
        let out = env.kw.keys_as_keyward("../x", None);
        closed(&out, what);
        assert_eq!(
            out.stderr.matches("decision=fail").count(),
            1,
            "{what}: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(env.log.lines_of("keyward").len(), before, "{what}");
    }
}
