//! With journald, keyward's records carry structured fields. A real
//! `systemd-journald` runs in a private mount namespace (tmpfs over
//! /run/systemd and /run/log, so the machine's own journal, if any, is never
//! touched), keyward logs to the default `/dev/log` setting and finds the
//! journal socket, and `journalctl -o json` reads the fields back.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Runs `inner` (a shell snippet) in a mount namespace with its own journald,
/// then prints the journal as JSON lines for `SYSLOG_IDENTIFIER=keyward`.
fn with_journald(dir: &Path, inner: &str) -> Out {
    let script = dir.join("journal.sh");
    write_file(
        &script,
        format!(
            r#"set -eu
mount -t tmpfs none /run/systemd 2>/dev/null || {{ mkdir -p /run/systemd && mount -t tmpfs none /run/systemd; }}
mkdir -p /run/log && mount -t tmpfs none /run/log
{JOURNALD} & J=$!
trap 'kill $J 2>/dev/null; wait $J 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
{inner}
for _ in $(seq 50); do
    journalctl -q -D /run/log/journal -o json -t keyward 2>/dev/null | grep -q KEYWARD_DECISION && break
    sleep 0.1
done
echo ---journal---
journalctl -q -D /run/log/journal -o json -t keyward
"#
        ),
        0o755,
    );
    run(
        Command::new("unshare").arg("-m").arg("bash").arg(&script),
        Duration::from_secs(60),
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn journald_gets_structured_fields() {
    assert!(
        Path::new(JOURNALD).exists(),
        "{JOURNALD} missing: apt-get install systemd"
    );
    let dir = TestDir::new("journal");
    let keys = TestDir::new("journalkeys");
    let k = SshKey::ed25519(keys.path(), "k");
    let nginx = Nginx::start();
    let cache = dir.join("cache");
    ensure_system_user("keyward");
    keyward::make_cache_dir(&cache, "keyward");
    // No log socket in the config: the default /dev/log, which means "the
    // journal when there is one".
    let config = KwConfig::new(&cache, None).url(nginx.users_url());
    let kw = Keyward::with_config(&config);
    let user = keysenv::fake_user();
    nginx.put_keys(&user, &format!("{}\n", k.public_line()));
    let fp = k.fingerprint();
    let cmd = kw.command(&["keys", &user, &fp]);
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let out = with_journald(
        dir.path(),
        &format!(
            "setpriv --reuid=keyward --regid=keyward --clear-groups {} >{}",
            argv.join(" "),
            dir.join("stdout").display()
        ),
    );
    assert!(out.success(), "{out}");
    let printed = std::fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(printed.contains(&k.public_material()), "{printed}\n{out}");
    let journal = out.stdout.split("---journal---").nth(1).unwrap_or_default();
    let rec: serde_json::Value = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["KEYWARD_USER"] == user.as_str())
        .unwrap_or_else(|| panic!("no keyward record for {user} in the journal:\n{out}"));
    assert_eq!(rec["KEYWARD_DECISION"], "match", "{rec}");
    assert_eq!(rec["KEYWARD_FP"], fp.as_str(), "{rec}");
    assert_eq!(
        rec["MESSAGE_ID"], "8d3c5b0a6e2f4f1c9a7b2d4e6f8a0c1e",
        "{rec}"
    );
    assert_eq!(rec["SYSLOG_FACILITY"], "10", "authpriv: {rec}");
    assert_eq!(rec["PRIORITY"], "6", "{rec}");
    let msg = rec["MESSAGE"].as_str().unwrap_or_default();
    assert!(msg.starts_with("decision=match user="), "{rec}");
    assert!(msg.contains("mirror=http://127.0.0.1"), "{rec}");
    assert!(msg.contains("key_type=ssh-ed25519"), "{rec}");
    assert!(msg.contains("ppid="), "{rec}");
}
