//! The README's first command, `bash scripts/demo.sh`, end to end.
//!
//! The demo runs with the binaries this test was built with
//! (`KEYWARD_DEMO_KEYWARD`, `KEYWARD_DEMO_PAM_MODULE`) instead of its own
//! release build. Its output must show each part of the product with the
//! real log line behind it, and the test checks independently that the
//! clean-up it reports really happened.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::rsyslog::LogLine;
use crate::support::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The word after `marker` on the first line that contains it.
fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next())
}

/// The syslog lines the demo printed (indented `FACILITY.SEVERITY TAG msg`).
fn syslog_lines(text: &str) -> Vec<LogLine> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("authpriv."))
        .filter_map(LogLine::parse)
        .collect()
}

fn sha256(path: &str) -> String {
    must(Command::new("sha256sum").arg(path))
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn demo_shows_keys_and_pam_and_cleans_up() {
    // The demo creates the shared `keyward` system user when missing and
    // removes it at the end: make sure it exists, so that the demo keeps it
    // for the tests running beside it.
    ensure_system_user("keyward");
    prepare_sshd_host();
    let pam_before = sha256("/etc/pam.d/sshd");

    let out = run(
        Command::new("bash")
            .arg(Path::new(REPO).join("scripts/demo.sh"))
            .env("KEYWARD_DEMO_KEYWARD", env!("CARGO_BIN_EXE_keyward"))
            .env("KEYWARD_DEMO_PAM_MODULE", built_pam_module()),
        Duration::from_secs(300),
    );
    let text = &out.stdout;
    assert!(out.success(), "demo.sh failed: {out}");
    assert!(
        out.stderr.trim().is_empty(),
        "demo.sh wrote to stderr: {out}"
    );

    // Who and what the demo made (its names are random).
    let work = word_after(text, "removed /var/lib/keyward-demo.")
        .map(|s| format!("/var/lib/keyward-demo.{s}"))
        .unwrap_or_else(|| panic!("no work directory in the output:\n{text}"));
    let user = word_after(text, "✔ key login as ").expect("key login line");
    let glass = word_after(text, "✔ break-glass login as ").expect("break-glass line");
    let fp = word_after(text, "✔ key ").expect("the demo user's key");
    let stranger = text
        .lines()
        .find(|l| l.contains("(a stranger's, not in the directory)"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("the stranger's key");
    let group = word_after(text, ") in group ").expect("the break-glass group");
    assert!(fp.starts_with("SHA256:") && stranger.starts_with("SHA256:"));
    assert_ne!(fp, stranger);

    let lines = syslog_lines(text);
    let find = |what: &str, pred: &dyn Fn(&LogLine) -> bool| -> LogLine {
        lines
            .iter()
            .find(|l| pred(l))
            .cloned()
            .unwrap_or_else(|| panic!("no {what} line in the demo's output:\n{text}"))
    };
    let field = |l: &LogLine, k: &str| l.field(k).unwrap_or_default();

    // 1. The key login: output of the remote command, and keyward's match.
    assert!(
        text.contains(&format!("hello from {user}\n")),
        "remote command output:\n{text}"
    );
    let m = find("keyward decision=match", &|l| {
        l.program == "keyward"
            && l.field("decision").as_deref() == Some("match")
            && l.field("user").as_deref() == Some(user)
    });
    assert_eq!(field(&m, "fp"), fp, "{}", m.raw);
    assert_eq!(field(&m, "source"), "directory", "first lookup: {}", m.raw);
    assert!(
        lines.iter().any(|l| l.program == "keyward"
            && l.field("source").as_deref() == Some("cache")
            && l.field("user").as_deref() == Some(user)),
        "a lookup answered from the cache:\n{text}"
    );
    // 2. The stranger's key: refused, with keyward's reason.
    assert!(text.contains("✔ login with the stranger's key refused"));
    let n = find("keyward decision=nomatch", &|l| {
        l.program == "keyward" && l.field("decision").as_deref() == Some("nomatch")
    });
    assert_eq!(field(&n, "fp"), stranger, "{}", n.raw);
    assert!(!field(&n, "reason").is_empty(), "{}", n.raw);
    assert!(text.contains(&format!("Failed publickey for {user} from 127.0.0.1")));
    // 3. The password login: refused by pam_keyward's auth line, for this user.
    assert!(text.contains("✔ password login refused"));
    let b = find("pam_keyward decision=block", &|l| {
        l.msg.starts_with("pam_keyward(sshd:auth): decision=block ")
    });
    for (k, v) in [("user", user), ("rhost", "127.0.0.1"), ("service", "sshd")] {
        assert_eq!(field(&b, k), v, "{}", b.raw);
    }
    assert_eq!(b.facility, "authpriv");
    assert!(text.contains(&format!("Failed password for {user} from 127.0.0.1")));
    assert!(text.contains("why: decision=block"), "the reason explained");
    // 4. The break-glass login: in, and exempt in auth and session.
    assert!(text.contains(&format!("hello from {glass}\n")));
    for stage in ["auth", "session"] {
        let e = find(&format!("exempt {stage}"), &|l| {
            l.msg
                .starts_with(&format!("pam_keyward(sshd:{stage}): decision=exempt "))
        });
        assert_eq!(field(&e, "user"), glass, "{}", e.raw);
        assert_eq!(
            field(&e, "exempt_by"),
            format!("group:{group}"),
            "{}",
            e.raw
        );
    }
    // 5. The session line names the key that opened the session.
    let s = find("pam_keyward decision=session", &|l| {
        l.msg
            .starts_with("pam_keyward(sshd:session): decision=session ")
    });
    assert_eq!(field(&s, "user"), user, "{}", s.raw);
    assert_eq!(field(&s, "fp"), fp, "{}", s.raw);
    assert_eq!(field(&s, "methods"), "publickey", "{}", s.raw);
    assert!(text.contains(&format!("✔ session fingerprint {fp}")));
    // Nothing was refused at the session stage.
    assert!(lines
        .iter()
        .all(|l| l.field("decision").as_deref() != Some("refuse")));

    // 6. The key revoked in the directory: one poll installs the list and
    // the next login is refused, with the spec line named.
    let sync = find("keyward decision=sync", &|l| {
        l.msg.starts_with("decision=sync ") && l.msg.contains(" revoked=installed")
    });
    assert_eq!(field(&sync, "failed"), "0", "{}", sync.raw);
    let r = find("keyward reason=revoked", &|l| {
        l.msg.contains(" reason=revoked ")
    });
    assert_eq!(field(&r, "user"), user, "{}", r.raw);
    assert_eq!(field(&r, "fp"), fp, "{}", r.raw);
    assert_eq!(field(&r, "revoked_source"), "laptop.spec:2", "{}", r.raw);
    assert!(text.contains(&format!("✔ login with {user}'s revoked key refused")));

    // 7. The summary: the exact lines, and a time for each of the 14 steps.
    assert!(text.contains("AuthorizedKeysCommand /var/lib/keyward-demo."));
    assert!(text.contains(&format!("pam_keyward.so  allow_group={group}")));
    assert!(text.contains(&format!(
        "pam_keyward.so  require_publickey allow_group={group}"
    )));
    let times = text
        .lines()
        .skip_while(|l| !l.contains("Time per step:"))
        .filter(|l| l.trim_end().ends_with('s') && l.trim_start().starts_with(char::is_numeric))
        .count();
    assert_eq!(times, 14, "a time for every step:\n{text}");

    // 8. The clean-up it reports, checked.
    assert!(
        text.contains("clean-up complete: no demo process, user, group, mount or file is left"),
        "{text}"
    );
    assert!(text.contains("demo finished in "), "{text}");
    assert!(!Path::new(&work).exists(), "{work} left behind");
    for name in [user, glass] {
        assert!(user_ids(name).is_none(), "user {name} left behind");
    }
    let g = run(
        Command::new("getent").args(["group", group]),
        Duration::from_secs(10),
    );
    assert!(!g.success(), "group {group} left behind: {g}");
    assert!(
        user_ids("keyward").is_some(),
        "the shared keyward user must be kept"
    );
    let procs = must(Command::new("ps").args(["-eo", "args"]));
    assert!(
        !procs.stdout.contains(&work),
        "a process of the demo is still running:\n{}",
        procs.stdout
    );
    // No mount of the demo is visible (they lived in its namespace only),
    // and the machine's PAM file is what it was.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("keyward-demo"), "{mounts}");
    assert_eq!(
        sha256("/etc/pam.d/sshd"),
        pam_before,
        "/etc/pam.d/sshd changed"
    );
}

#[test]
fn demo_says_what_to_do_when_not_root() {
    // As an ordinary user, before touching anything: one line, exit 1. A
    // copy the user can read (the checkout may be under root's 0700 home).
    let user = TestUser::new();
    let dir = TestDir::new("demo-notroot");
    let script = dir.write(
        "demo.sh",
        std::fs::read(Path::new(REPO).join("scripts/demo.sh")).unwrap(),
        0o755,
    );
    let out = run(
        Command::new("setpriv")
            .arg(format!("--reuid={}", user.name))
            .arg(format!("--regid={}", user.name))
            .arg("--clear-groups")
            .arg("bash")
            .arg(&script),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{out}");
    let msg: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(msg.len(), 1, "one line: {out}");
    assert!(msg[0].contains("sudo bash scripts/demo.sh"), "{out}");
    assert!(
        msg[0].contains("'bash scripts/demo.sh' in a root shell"),
        "{out}"
    );
    assert!(out.stdout.trim().is_empty(), "{out}");
}
