//! What the `keyward` binary asks of the system: glibc 2.34 at most (RHEL 9)
//! and the unwinder linked the ordinary way (no part of the C loader
//! answered by keyward itself); and what it does when it panics.

use std::process::Command;
use std::time::Duration;

use crate::support::checks::logged;
use crate::support::keyward::{make_cache_dir, Keyward, KwConfig, KEYWARD_BIN};
use crate::support::*;

fn readelf(args: &[&str]) -> String {
    let out = run(
        Command::new("readelf").args(args).arg(KEYWARD_BIN),
        Duration::from_secs(60),
    );
    assert!(out.success(), "readelf {args:?}: {out}");
    out.stdout
}

#[test]
fn binary_needs_glibc_2_34_at_most_and_wraps_nothing_of_the_loader() {
    let needed: Vec<String> = readelf(&["-d", "-W"])
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .map(|l| {
            l.split('[')
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(']')
                .to_owned()
        })
        .collect();
    // libc, the unwinder, and the loader itself when TLS needs
    // `__tls_get_addr` (debug builds).
    assert!(
        needed
            .iter()
            .all(|n| n == "libc.so.6" || n == "libgcc_s.so.1" || n.starts_with("ld-linux")),
        "shared libraries loaded at start: {needed:?}"
    );

    // Every version the binary requires of glibc (symbols and the
    // GLIBC_ABI_* markers alike), from the version-needs section.
    let versions = readelf(&["-V", "-W"]);
    let newest = versions
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut p = v.split('.');
            Some((
                p.next()?.parse::<u32>().ok()?,
                p.next().unwrap_or("0").parse::<u32>().ok()?,
            ))
        })
        .max()
        .expect("no GLIBC_ version needed");
    assert!(
        newest <= (2, 34),
        "needs GLIBC_{}.{}: RHEL 9 has 2.34",
        newest.0,
        newest.1
    );
    assert!(
        !versions.contains("GLIBC_ABI_DT_RELR"),
        "DT_RELR needs glibc 2.36"
    );

    // No symbol of the loader's is wrapped (`--wrap=SYM` needs a
    // `__wrap_SYM` in the binary) or answered by keyward itself.
    let symbols = readelf(&["--syms", "-W"]);
    let own: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains("__wrap_") || l.contains("__real_") || l.contains("_dl_find_object"))
        .collect();
    assert!(own.is_empty(), "{own:#?}");
}

/// `keyward completions bash >/dev/full`: clap_complete panics on the
/// write error. The panic is one `decision=fail` record in the configured
/// syslog (and on stderr), with its message, and the exit is 1: not an
/// abort, not Rust's 101.
#[test]
fn a_panic_is_one_fail_record_and_exit_1() {
    ensure_system_user("keyward");
    let dir = TestDir::new("panic");
    let cache = dir.join("cache");
    make_cache_dir(&cache, "keyward");
    let syslog = Rsyslog::start();
    // A valid configuration naming the private syslog; completions never
    // contacts the directory.
    let config = KwConfig::new(&cache, Some(&syslog.socket)).url(fault::dead_url());
    let kw = Keyward::with_config(&config);
    let (out, lines) = logged(&syslog, 1, || {
        let mut c = Command::new("sh");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .args(["-c", "exec \"$@\" >/dev/full", "sh"])
            .arg(&kw.bin)
            .arg("--config")
            .arg(&kw.config)
            .args(["completions", "bash"]);
        run(&mut c, Duration::from_secs(60))
    });
    assert_eq!(out.code, Some(1), "{out}");
    // Nothing else arrives later (a second record, a retry).
    std::thread::sleep(Duration::from_millis(300));
    let all = syslog.lines_of("keyward");
    assert_eq!(all.len(), 1, "{all:#?}\n{out}");
    let l = &lines[0];
    l.assert_field("decision", "fail");
    l.assert_field("command", "completions");
    assert_eq!(l.severity, "err", "{}", l.raw);
    let reason = l.field("reason").unwrap_or_default();
    assert!(
        reason.starts_with("panic: failed to write completion file")
            && reason.contains("No space left"),
        "{}",
        l.raw
    );
    // The message's quotes are escaped inside the one quoted value.
    assert!(
        l.msg.contains(r#"\"No space left on device\""#),
        "{}",
        l.raw
    );
    // stderr: the same record once, no panic text of std's own.
    assert_eq!(out.stderr.matches("decision=fail").count(), 1, "{out}");
    assert!(!out.stderr.contains("panicked at"), "{out}");
}
