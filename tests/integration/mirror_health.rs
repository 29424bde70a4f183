//! Mirror health through the binary: what marks a mirror down, and that a
//! mirror marked down is probed again after `retry_interval` however many
//! times it failed.
//!
//! - An HTTP status for one user's path (500, 429) is that path's failure:
//!   whoever can attempt an SSH login to such an account must not take the
//!   mirror out for the other users.
//! - No answer (a listener that never answers) marks it down only across
//!   users; a refused connection marks it down at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::keysenv::{fake_user, Lookup};
use crate::support::*;

/// The health record of the (only) mirror: `.health/<16 hex>`, if any.
fn health_record(cache: &Path) -> Option<(PathBuf, String)> {
    let rd = std::fs::read_dir(cache.join(".health")).ok()?;
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
}

fn record_field(record: &str, key: &str) -> Option<u64> {
    record.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What a lookup said about the mirrors: its reason (a failure) and its
/// warning (stale served).
fn warning(r: &Lookup) -> String {
    format!(
        "{} {}",
        r.field("reason").unwrap_or_default(),
        r.field("warning").unwrap_or_default()
    )
}

/// sshd runs keyward for the bad account (a 500 for its path, again and
/// again, and a 429 for another); an account whose entry is not cached still
/// logs in at once, answered by the same (only) mirror.
#[test]
fn one_users_failing_path_leaves_the_mirror_up_for_everyone() {
    let bad = TestUser::new();
    let busy = fake_user();
    let good = TestUser::new();
    let nginx = Nginx::builder()
        .location(&format!(
            "location = /users/{}.keys {{ return 500; }}",
            bad.name
        ))
        .location(&format!("location = /users/{busy}.keys {{ return 429; }}"))
        .start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s").retry_interval("1h"));
    let bad_key = SshKey::ed25519(env.path(), "bad");
    let good_key = SshKey::ed25519(env.path(), "good");
    nginx.put_keys(&good.name, &format!("{}\n", good_key.public_line()));
    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();

    for _ in 0..3 {
        let r = sshd.login(&bad.name, &bad_key.path, "true");
        assert!(!r.ok, "no keys for the failing account: {r}");
    }
    let busy_first = env.keys_as_keyward(&busy, None);
    let busy_again = env.keys_as_keyward(&busy, None);
    let r = sshd.login(&good.name, &good_key.path, "true");
    assert!(
        r.ok,
        "the good account logs in: {r}\n{}",
        env.log
            .lines()
            .iter()
            .map(|l| l.raw.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let lines: Vec<_> = env
        .log
        .lines()
        .into_iter()
        .filter(|l| l.program == "keyward" && l.field("user").as_deref() == Some(&good.name))
        .collect();
    assert_eq!(
        lines.first().and_then(|l| l.field("source")).as_deref(),
        Some("directory"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.raw.contains("skipped")),
        "{lines:?}"
    );
    assert_eq!(nginx.count(&format!("/users/{}.keys", good.name)), 1);
    let asked = nginx.count(&format!("/users/{}.keys", bad.name));
    assert!(asked >= 3, "each login asked the mirror: {asked}");
    assert!(
        nginx
            .accesses_for(&bad.name)
            .iter()
            .all(|a| a.status == 500),
        "{:?}",
        nginx.accesses_for(&bad.name)
    );
    let r = busy_first;
    assert_eq!(r.decision(), "fail", "{r}");
    assert!(warning(&r).contains("HTTP 429"), "{r}");
    let r = busy_again;
    assert!(
        warning(&r).contains("HTTP 429") && !warning(&r).contains("skipped"),
        "the 429 path is asked again, not skipped: {r}"
    );
    assert!(
        health_record(&env.cache).is_none(),
        "a status answer records nothing: {:?}",
        health_record(&env.cache)
    );
}

/// A listener that accepts and never answers: two lookups for one user
/// leave the mirror up (one slow path), a lookup for a second user marks it
/// down, and a third user's lookup skips it without a connection.
#[test]
fn no_answer_marks_a_mirror_down_only_across_users() {
    let hole = FaultServer::black_hole();
    let env = KeysEnv::new(|c| c.url(hole.users_url()).timeout("1s").retry_interval("1h"));
    let (a, b, c) = (fake_user(), fake_user(), fake_user());
    for n in 1..=2 {
        let r = env.keys_as_keyward(&a, None);
        assert_eq!(r.decision(), "fail", "{r}");
        assert!(warning(&r).contains("timed out"), "{r}");
        assert!(!warning(&r).contains("skipped"), "{r}");
        assert_eq!(
            hole.connections(),
            n,
            "lookup {n} for one user tries the mirror"
        );
        let (_, text) = health_record(&env.cache).expect("the stall is recorded");
        assert!(text.contains("stalled_for "), "{text}");
        assert_eq!(record_field(&text, "retry_at_ms"), None, "not down: {text}");
    }
    let r = env.keys_as_keyward(&b, None);
    assert!(warning(&r).contains("skipped for the next"), "{r}");
    assert_eq!(hole.connections(), 3);
    let (_, text) = health_record(&env.cache).unwrap();
    assert!(record_field(&text, "retry_at_ms").is_some(), "down: {text}");
    let r = env.keys_as_keyward(&c, None);
    assert!(warning(&r).contains("skipped, down for"), "{r}");
    assert_eq!(hole.connections(), 3, "no connection while down");
}

/// A mirror whose port is closed fails lookup after lookup (each retry time
/// a probe, refused again, the record counting the failures); brought up, it
/// is still skipped until its retry time, then used again.
#[test]
fn a_mirror_refused_many_times_is_used_again_after_retry_interval() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/users/{{user}}.keys");
    let env = KeysEnv::new(|c| c.url(url).timeout("2s").retry_interval("1s"));
    let user = fake_user();
    const ROUNDS: u64 = 7;
    let mut retry_at = 0;
    for round in 1..=ROUNDS {
        let r = env.keys_as_keyward(&user, None);
        assert_eq!(r.decision(), "fail", "{r}");
        let w = warning(&r);
        assert!(
            !w.contains("skipped, down for"),
            "round {round}: the retry time has come, the mirror is probed: {r}"
        );
        assert!(w.contains("skipped for the next"), "round {round}: {r}");
        let (_, text) = health_record(&env.cache).expect("a down record");
        assert_eq!(record_field(&text, "failures"), Some(round), "{text}");
        retry_at = record_field(&text, "retry_at_ms").unwrap();
        // Within the skip window: no attempt at all.
        let r = env.keys_as_keyward(&user, None);
        if now_ms() + 50 < retry_at {
            assert!(warning(&r).contains("skipped, down for"), "{r}");
        }
        std::thread::sleep(Duration::from_millis(
            retry_at.saturating_sub(now_ms()) + 30,
        ));
    }
    // One more failed probe, then the mirror comes up on that port.
    let r = env.keys_as_keyward(&user, None);
    assert!(warning(&r).contains("skipped for the next"), "{r}");
    let (_, text) = health_record(&env.cache).unwrap();
    assert_eq!(record_field(&text, "failures"), Some(ROUNDS + 1), "{text}");
    retry_at = record_field(&text, "retry_at_ms").unwrap().max(retry_at);
    let nginx = Nginx::builder()
        .server_line(&format!("listen 127.0.0.1:{port};"))
        .start();
    let key = SshKey::ed25519(env.path(), "k");
    nginx.put_keys(&user, &format!("{}\n", key.public_line()));
    let r = env.keys_as_keyward(&user, None);
    if now_ms() + 50 < retry_at {
        assert!(warning(&r).contains("skipped, down for"), "{r}");
        assert_eq!(nginx.count(&user), 0, "skipped until its retry time");
    }
    std::thread::sleep(Duration::from_millis(
        retry_at.saturating_sub(now_ms()) + 30,
    ));
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
    assert_eq!(r.materials().len(), 1, "{r}");
    assert_eq!(nginx.count(&user), 1);
    assert!(
        health_record(&env.cache).is_none(),
        "a success clears the record"
    );
}
