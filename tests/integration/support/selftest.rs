//! Proof that the support pieces themselves work, independent of keyward.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

fn http_get(url_port: u16, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", url_port))?;
    s.set_read_timeout(Some(timeout))?;
    use std::io::Write;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn support_nginx_serves_files_and_logs_conditional_requests() {
    let nginx = Nginx::builder()
        .location("location = /users/err.keys { return 500; }")
        .start();
    nginx.put_keys("alice", "ssh-ed25519 AAAA alice\n");
    let resp = http_get(nginx.port, "/users/alice.keys", Duration::from_secs(5)).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("ssh-ed25519 AAAA alice"), "{resp}");
    let etag = resp
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("nginx sends an ETag")
        .trim()
        .to_owned();
    // conditional request → 304, logged with the If-None-Match value
    let mut s = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    use std::io::Write;
    write!(
        s,
        "GET /users/alice.keys HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 304"), "{r}");
    let resp = http_get(nginx.port, "/users/err.keys", Duration::from_secs(5)).unwrap();
    assert!(resp.starts_with("HTTP/1.1 500"), "{resp}");
    let resp = http_get(nginx.port, "/users/nobody.keys", Duration::from_secs(5)).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(wait_until(Duration::from_secs(2), || nginx.total() == 4));
    let log = nginx.accesses();
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].if_none_match, None);
    assert_eq!(log[1].status, 304);
    assert_eq!(log[1].if_none_match.as_deref(), Some(etag.as_str()));
    assert_eq!(log[2].status, 500);
    assert_eq!(nginx.count("alice"), 2);
    // a same-size rewrite still changes the ETag
    nginx.put_keys("alice", "ssh-ed25519 BBBB alice\n");
    let resp = http_get(nginx.port, "/users/alice.keys", Duration::from_secs(5)).unwrap();
    let etag2 = resp.lines().find_map(|l| l.strip_prefix("ETag: ")).unwrap();
    assert_ne!(etag2.trim(), etag);
}

#[test]
fn support_fault_servers_misbehave_as_promised() {
    // black hole: connection accepted, nothing ever comes back
    let bh = FaultServer::black_hole();
    let t = Instant::now();
    let err = http_get(bh.port, "/x", Duration::from_millis(500)).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(bh.connections(), 1);

    // truncated: fewer bytes than Content-Length, then EOF
    let tr = FaultServer::truncated(5000, "ssh-ed25519 AAAA");
    let r = http_get(tr.port, "/x", Duration::from_secs(5)).unwrap();
    assert!(r.contains("Content-Length: 5000"), "{r}");
    assert!(r.ends_with("ssh-ed25519 AAAA"), "{r}");

    // slow drip: a few bytes in 600 ms, far from the claimed length
    let sd = FaultServer::slow_drip(Duration::from_millis(100), "abc");
    let mut s = TcpStream::connect(("127.0.0.1", sd.port)).unwrap();
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_millis(600);
    let mut buf = [0u8; 256];
    while Instant::now() < end {
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&got);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(!body.is_empty() && body.len() < 20, "{text:?}");

    // dropping stops them promptly even with a connection still open
    let t = Instant::now();
    drop(bh);
    drop(sd);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn support_rsyslog_receives_logger_lines() {
    let r = Rsyslog::start();
    let tag = unique_name("hello");
    must(
        Command::new("logger")
            .arg("-u")
            .arg(&r.socket)
            .args(["-p", "authpriv.notice", "-t", "keyward-selftest"])
            .arg(format!("decision=serve user=x reason=\"a b\" tag={tag}")),
    );
    let line = r
        .wait_for(Duration::from_secs(10), |l| l.msg.contains(&tag))
        .unwrap_or_else(|| panic!("no line in {}", r.text()));
    assert_eq!(line.facility, "authpriv");
    assert_eq!(line.severity, "notice");
    assert_eq!(line.program, "keyward-selftest");
    assert_eq!(line.field("reason").as_deref(), Some("a b"));
    assert_eq!(line.field("tag").as_deref(), Some(tag.as_str()));
}

#[test]
fn support_dev_log_is_shared_and_cleaned_up() {
    let existed_before = std::path::Path::new("/dev/log").exists();
    {
        let a = DevLog::acquire();
        let b = DevLog::acquire();
        assert!(std::path::Path::new("/dev/log").exists());
        if a.readable() {
            let tag = unique_name("devlog");
            must(
                Command::new("logger")
                    .args(["-p", "auth.info", "-t", "kwt-devlog"])
                    .arg(&tag),
            );
            assert!(b
                .wait_for(Duration::from_secs(10), |l| l.msg.contains(&tag))
                .is_some());
        }
    }
    // Other tests may hold it right now; only check when nobody does.
    if let Some(exists) = DevLog::exists_when_idle() {
        assert_eq!(exists, existed_before, "/dev/log left behind or removed");
    }
}

#[test]
fn support_sshd_runs_an_authorized_keys_command() {
    let dir = TestDir::new("sshd-selftest");
    let user = TestUser::new();
    let key = SshKey::generate(dir.path(), "id_ed25519", KeyType::Ed25519);
    let other = SshKey::generate(dir.path(), "other", KeyType::Ed25519);
    ensure_system_user("keyward");
    // A tiny root-owned command in a root-owned 0755 tree.
    let bindir = std::path::Path::new(BIN_ROOT).join(unique_name("akc"));
    mkdir_root_0755(&bindir);
    let keyfile = bindir.join("key.pub");
    write_file(&keyfile, key.public_line() + "\n", 0o644);
    let script = bindir.join("akc.sh");
    write_file(
        &script,
        format!("#!/bin/sh\nexec cat {}\n", keyfile.display()),
        0o755,
    );
    let sshd = Sshd::with_command(&format!("{} %u %f", script.display()));
    let ok = sshd.login(&user.name, &key.path, "id -un");
    let bad = sshd.login(&user.name, &other.path, "true");
    drop(sshd);
    let _ = std::fs::remove_dir_all(&bindir);
    assert!(ok.ok, "{ok}");
    assert_eq!(ok.stdout().trim(), user.name);
    assert!(
        !bad.ok,
        "a key the command does not print must be refused: {bad}"
    );
}

#[test]
fn support_keyward_install_is_sshd_safe() {
    let k = Keyward::install();
    k.write_config("[directory]\nurls = []\n");
    for p in [&k.bin, &k.config] {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(p).unwrap();
        assert_eq!(md.uid(), 0);
        assert_eq!(md.mode() & 0o022, 0, "{}", p.display());
    }
    let v = k.run(&["--version"]);
    assert!(v.success(), "{v}");
}

#[test]
fn support_sshd_uses_a_private_pam_stack() {
    let dir = TestDir::new("pam-selftest");
    let user = TestUser::with_password("Corr3ct-horse");
    let allow = dir.write(
        "allow",
        "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n",
        0o644,
    );
    let deny = dir.write(
        "deny",
        "auth required pam_deny.so\naccount required pam_unix.so\nsession required pam_unix.so\n",
        0o644,
    );
    let real_before = std::fs::read("/etc/pam.d/sshd").unwrap();
    for (stack, expect) in [(&allow, true), (&deny, false)] {
        let sshd = Sshd::builder()
            .pam_stack(stack)
            .set("PasswordAuthentication", "yes")
            .set("KbdInteractiveAuthentication", "yes")
            .start();
        // the machine outside the namespace still sees the real stack
        assert_eq!(std::fs::read("/etc/pam.d/sshd").unwrap(), real_before);
        for method in ["password", "keyboard-interactive"] {
            let r = ssh_password_login(sshd.port, &user.name, "Corr3ct-horse", method, "id -un");
            assert_eq!(r.ok, expect, "{method} with {}: {r}", stack.display());
        }
    }
}

#[test]
fn support_private_dev_log_is_private_and_leaves_the_machine_alone() {
    let _idle = DevLog::hold_idle();
    let before = crate::support::dev_log_identity();
    let a = PrivateDevLog::start();
    let b = PrivateDevLog::start();
    let tag = unique_name("nsdevlog");
    // logger(1) writes to /dev/log, like syslog(3) in a PAM module.
    let out = run(
        a.command("logger")
            .args(["-p", "authpriv.notice", "-t", "kwt-nsdevlog"])
            .arg(&tag),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{out}");
    let l = a
        .wait_for(Duration::from_secs(10), |l| l.msg.contains(&tag))
        .unwrap_or_else(|| panic!("not in the private log: {}", a.text()));
    assert_eq!(
        (l.facility.as_str(), l.severity.as_str()),
        ("authpriv", "notice")
    );
    let out = run(
        b.command("sh")
            .args(["-c", "test -S /dev/log && logger -t kwt-nsdevlog other"]),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{out}");
    assert!(b
        .wait_for(Duration::from_secs(10), |l| l.msg.contains("other"))
        .is_some());
    // Each namespace saw only its own socket.
    assert!(!b.text().contains(&tag), "{}", b.text());
    assert!(a.lines().iter().all(|l| l.msg != "other"), "{}", a.text());
    assert_eq!(
        crate::support::dev_log_identity(),
        before,
        "the machine's /dev/log changed while namespaces used a private one"
    );
    drop((a, b));
    assert_eq!(crate::support::dev_log_identity(), before);
}

/// Run only by `support_skip_fails_under_ci_and_is_recorded_elsewhere`.
#[test]
#[ignore = "a probe started by support_skip_fails_under_ci_and_is_recorded_elsewhere"]
fn support_skip_probe() {
    let tag = std::env::var("KWT_SKIP_PROBE_TAG").unwrap_or_default();
    skip("support_skip_probe", &format!("probe {tag}"));
}

#[test]
fn support_skip_fails_under_ci_and_is_recorded_elsewhere() {
    let exe = std::env::current_exe().unwrap();
    // The probe's records stay out of the real list scripts/test.sh reports.
    let records = TestDir::new("skip-records");
    let probe = |ci: Option<&str>, tag: &str| {
        let mut c = Command::new(&exe);
        c.args([
            "--exact",
            "support::selftest::support_skip_probe",
            "--ignored",
            "--nocapture",
        ])
        .env("KWT_SKIP_PROBE_TAG", tag)
        .env("KEYWARD_TEST_SKIP_DIR", records.path())
        .env_remove("CI");
        if let Some(v) = ci {
            c.env("CI", v);
        }
        run(&mut c, Duration::from_secs(60))
    };
    let recorded = |tag: &str| {
        std::fs::read_dir(records.path())
            .map(|rd| {
                rd.flatten()
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(tag)))
            })
            .unwrap_or(false)
    };
    let tag = unique_name("ci");
    let out = probe(Some("true"), &tag);
    assert!(!out.success(), "a skip must fail under CI=true: {out}");
    assert!(out.stdout.contains("1 failed"), "{out}");
    assert!(!recorded(&tag));
    let tag = unique_name("local");
    let out = probe(None, &tag);
    assert!(out.success(), "{out}");
    assert!(out.stderr.contains("SKIPPED support_skip_probe"), "{out}");
    assert!(recorded(&tag), "no record in {}", records.path().display());
    let tag = unique_name("cifalse");
    assert!(probe(Some("false"), &tag).success());
}
