//! The .deb under a real systemd: a Debian 12 tree made once with
//! debootstrap (cached in /var/lib/keyward-tests-systemd/bookworm), booted
//! with `systemd-nspawn --volatile=overlay` (the tree stays read-only, every
//! change lives in a tmpfs and is gone when the container stops; never left
//! running). It shares the host's network: the host's nginx on 127.0.0.1 is
//! its key directory, and its own sshd listens on a private 127.0.0.1 port
//! (a bind-mounted sshd_config.d drop-in, in place before boot).
//!
//! Checked: dpkg enables and starts the timer; the service is skipped
//! (ExecCondition) until a key source is configured; then a sync under the
//! unit's sandbox writes the metrics textfile and logs to journald with
//! keyward's native fields; and a key login through the container's sshd,
//! which logs through syslog (journald), shows that keyward's `ppid=` is the
//! pid of the sshd process that logged "Accepted publickey".
//!
//! And the packaged timer unchanged, end to end: a key revoked in a signed
//! directory stops being served in the container after the timer's next
//! poll (the seconds it took are printed, not asserted).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::nspawn::{tree, Container};
use crate::support::{free_port, must, run, wait_port, wait_until, Nginx, SshKey, TestDir};

const BASE: &str = "/var/lib/keyward-tests-systemd/bookworm";

/// Boots the cached Debian 12 tree with systemd and sshd (made once, ~1 min)
/// with `files` at /mnt/kw and its `00-kwt.conf` as an sshd drop-in.
fn boot(files: TestDir) -> Container {
    let base = tree(
        BASE,
        "systemd,systemd-sysv,dbus,openssh-server,adduser,libpam-runtime",
        &["usr/lib/systemd/systemd", "usr/sbin/sshd"],
    );
    let dropin = files.join("00-kwt.conf");
    Container::boot(
        &base,
        files,
        &[(dropin, "/etc/ssh/sshd_config.d/00-kwt.conf")],
    )
}

#[test]
fn deb_under_a_booted_systemd() {
    let p = crate::packaging::packages();
    let nginx = Nginx::start();
    let files = TestDir::new("nspawn");
    let ssh_port = free_port();
    files.write(
        "00-kwt.conf",
        format!("Port {ssh_port}\nListenAddress 127.0.0.1\n"),
        0o644,
    );
    fs::copy(&p.deb, files.join("keyward.deb")).unwrap();
    let key = SshKey::ed25519(files.path(), "login");
    let c = boot(files);

    // --- install: the timer is enabled and running, the service skipped.
    c.must("DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/kw/keyward.deb");
    assert_eq!(
        c.must("systemctl is-enabled keyward-sync.timer").trim(),
        "enabled"
    );
    assert_eq!(
        c.must("systemctl is-active keyward-sync.timer").trim(),
        "active"
    );
    c.sh("systemctl start keyward-sync.service");
    let show = c.must("systemctl show -p Result keyward-sync.service");
    assert_eq!(
        show.trim(),
        "Result=exec-condition",
        "skipped until configured"
    );

    // --- configure through a drop-in, warm the cache as the login path.
    let user = "kwtalice";
    nginx.put_keys(user, &format!("{}\n", key.public_line()));
    c.must(&format!(
        "set -e
useradd -m -s /bin/sh {user} && usermod -p '*' {user}
install -d -o root -g keyward -m 0775 /var/lib/prometheus/node-exporter
printf '[directory]\\nurls = [\"{url}\"]\\n[sync]\\nmetrics_file = \"/var/lib/prometheus/node-exporter/keyward.prom\"\\n' \
  > /etc/keyward/keyward.toml.d/50-site.toml
keyward check-config
runuser -u keyward -- keyward keys {user} >/dev/null",
        url = nginx.users_url()
    ));

    // --- a sync under the unit's sandbox: metrics and journald.
    c.must("systemctl start keyward-sync.service");
    let show = c.must("systemctl show -p Result,ExecMainStatus keyward-sync.service");
    assert!(
        show.contains("Result=success") && show.contains("ExecMainStatus=0"),
        "{show}"
    );
    let prom = c.must("cat /var/lib/prometheus/node-exporter/keyward.prom");
    assert!(
        prom.contains("keyward_sync_users{result=\"unchanged\"} 1"),
        "{prom}"
    );
    assert!(prom.contains("keyward_cache_entries 1"), "{prom}");
    let owner = c.must("stat -c '%U %a' /var/lib/prometheus/node-exporter/keyward.prom");
    assert_eq!(owner.trim(), "keyward 644");
    let sync_line = |t: &str| t.lines().any(|l| l.starts_with("decision=sync "));
    // Not `-u keyward-sync.service`: journald learns a sender's unit from its
    // cgroup when it reads the record, and a sync that has already exited by
    // then is filed without one (the query came back empty under CI load).
    let journal = c.journal("journalctl -q -t keyward -o cat --no-pager", sync_line);
    assert!(sync_line(&journal), "{journal}");
    let native = c.journal(
        "journalctl -q KEYWARD_DECISION=sync -o cat --no-pager",
        |t| !t.trim().is_empty(),
    );
    assert!(!native.trim().is_empty(), "journald native fields");
    let exposure = c.must("systemd-analyze security keyward-sync.service --no-pager | tail -1");
    assert!(exposure.contains("Overall exposure level"), "{exposure}");

    // --- a key login through the container's sshd: ppid= is the sshd pid
    // that logged "Accepted publickey" (sshd logs through syslog here).
    c.must(
        "cp /usr/share/keyward/sshd_config.d/40-keyward.conf /etc/ssh/sshd_config.d/ \
         && sshd -t && systemctl reload ssh",
    );
    assert!(
        wait_port(ssh_port, Duration::from_secs(20)),
        "container sshd"
    );
    let key_login = || {
        must(Command::new("ssh").args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            key.path.to_str().unwrap(),
            "-p",
            &ssh_port.to_string(),
            &format!("{user}@127.0.0.1"),
            "echo kwt-login-ok",
        ]))
    };
    let login = key_login();
    assert!(login.stdout.contains("kwt-login-ok"), "{login}");
    let mut accepted = String::new();
    wait_until(Duration::from_secs(10), || {
        accepted = c
            .sh("journalctl -q -t sshd -o json --no-pager --grep 'Accepted publickey for kwtalice'")
            .stdout;
        !accepted.trim().is_empty()
    });
    let line: serde_json::Value =
        serde_json::from_str(accepted.lines().last().expect("an Accepted publickey line")).unwrap();
    let sshd_pid = line["_PID"].as_str().unwrap().to_owned();
    let msg = line["MESSAGE"].as_str().unwrap();
    let fp = msg.rsplit(' ').next().unwrap();
    assert_eq!(fp, key.fingerprint(), "{msg}");
    let records = c.journal(
        &format!(
            "journalctl -q -t keyward -o cat --no-pager KEYWARD_USER={user} KEYWARD_DECISION=match"
        ),
        |t| t.contains(&format!("fp={fp}")),
    );
    let matching: Vec<&str> = records
        .lines()
        .filter(|l| l.contains(&format!("fp={fp}")))
        .collect();
    assert!(!matching.is_empty(), "{records}");
    for r in &matching {
        assert!(
            r.contains(&format!(" ppid={sshd_pid} ")) || r.ends_with(&format!(" ppid={sshd_pid}")),
            "keyward's ppid is the sshd that accepted the key ({sshd_pid}): {r}"
        );
    }

    // --- with the PAM lines in /etc/pam.d/sshd, removing the package is
    // refused (without the module every SSH login would fail): the timer
    // keeps running and key logins keep working, the session recorded.
    c.must(
        "set -e
printf 'auth requisite pam_keyward.so\\nsession required pam_keyward.so require_publickey\\n' >/tmp/pam-sshd
cat /etc/pam.d/sshd >>/tmp/pam-sshd
cat /tmp/pam-sshd >/etc/pam.d/sshd",
    );
    let out = c.sh("DEBIAN_FRONTEND=noninteractive dpkg -r keyward");
    assert!(!out.success(), "dpkg -r must refuse: {out}");
    assert!(
        out.stderr.contains(
            "keyward: not removed: pam_keyward is still named in /etc/pam.d/sshd, and without the module PAM fails every SSH login (key logins too); first remove the pam_keyward lines, then the sshd drop-in, reload sshd, then remove keyward (or set KEYWARD_FORCE_REMOVE=1)"
        ),
        "{out}"
    );
    let status = c.must("dpkg-query -W -f '${db:Status-Abbrev}' keyward");
    assert_eq!(
        status.chars().nth(1),
        Some('i'),
        "still installed: {status}"
    );
    assert_eq!(
        c.must("systemctl is-active keyward-sync.timer").trim(),
        "active"
    );
    let login = key_login();
    assert!(login.stdout.contains("kwt-login-ok"), "{login}");
    let session = c.journal(
        &format!("journalctl -q -t sshd -o cat --no-pager --grep 'pam_keyward.*decision=session user={user}'"),
        |t| t.contains(&format!("fp={fp}")),
    );
    assert!(session.contains(&format!("fp={fp}")), "{session}");
    drop(c);
}

/// `keyward publish SRC OUT --signer KEY` with the test build (the
/// directory is published on the host; the container only reads it).
fn publish(src: &Path, out: &Path, signer: &SshKey) {
    let p = run(
        Command::new(crate::support::keyward::KEYWARD_BIN)
            .args(["--config", "/nonexistent/keyward.toml", "publish"])
            .arg(src)
            .arg(out)
            .arg("--signer")
            .arg(&signer.path),
        Duration::from_secs(120),
    );
    assert!(p.success(), "publish: {p}");
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(out));
}

/// The packaged timer, unchanged, end to end: a key revoked in the signed
/// directory (SRC/revoked/*.spec, republished) stops being served inside
/// the booted container once the timer's next `keyward sync --poll` has
/// installed the new list. The bound (3 min) is generous on purpose: the
/// time it takes is printed, not asserted (bench/fleet.py measures it).
#[test]
fn deb_timer_applies_a_revocation() {
    let p = crate::packaging::packages();
    let nginx = Nginx::start();
    let files = TestDir::new("nspawn-rev");
    files.write(
        "00-kwt.conf",
        format!("Port {}\nListenAddress 127.0.0.1\n", free_port()),
        0o644,
    );
    fs::copy(&p.deb, files.join("keyward.deb")).unwrap();
    let key = SshKey::ed25519(files.path(), "login");
    let signer = SshKey::ed25519(files.path(), "signer");
    let src = files.subdir("src");
    fs::create_dir(src.join("revoked")).unwrap();
    let user = "kwtbob";
    fs::write(src.join(format!("{user}.keys")), key.public_line() + "\n").unwrap();
    let out = nginx.root.join("users");
    publish(&src, &out, &signer);
    let c = boot(files);

    // --- the package as installed, the timer untouched; a signed directory.
    c.must(&format!(
        "set -e
DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/kw/keyward.deb
useradd -m -s /bin/sh {user}
printf '[directory]\\nurls = [\"{url}\"]\\nsigners = [\"{signer}\"]\\n' > /etc/keyward/keyward.toml.d/50-site.toml
keyward check-config",
        url = nginx.users_url(),
        signer = signer.public_line(),
    ));
    let timer = c.must("systemctl cat keyward-sync.timer");
    let packaged = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/keyward-sync.timer"),
    )
    .unwrap();
    assert!(
        timer.contains(packaged.trim()),
        "the packaged timer, unchanged: {timer}"
    );
    let keys = format!(
        "runuser -u keyward -- keyward keys {user} {}",
        key.fingerprint()
    );
    let served = c.must(&keys);
    assert!(
        served.contains(&key.public_material()),
        "served before: {served}"
    );

    // --- the timer's first run (no manual start): the list is installed.
    let syncs = "journalctl -q -t keyward -o cat --no-pager --grep '^decision=sync '";
    // Its offset in the 30 s period is fixed per machine: within a minute.
    let mut first = String::new();
    // (journalctl --grep exits 1 while nothing matches)
    wait_until(Duration::from_secs(120), || {
        first = c.sh(syncs).stdout;
        first.contains("revoked=installed")
    });
    assert!(
        first.contains("revoked=installed"),
        "no timer-started sync: {first}"
    );
    let before = first.lines().count();

    // --- revoke: the spec, republished. t0 = the directory is uploaded.
    fs::write(
        src.join("revoked/lost-laptop.spec"),
        format!("key: {}\n", key.public_line()),
    )
    .unwrap();
    publish(&src, &out, &signer);
    let t0 = std::time::Instant::now();
    let mut refused = None;
    wait_until(Duration::from_secs(180), || {
        let now = c.sh(&keys);
        if now.success() && !now.stdout.contains(&key.public_material()) {
            refused = Some(t0.elapsed());
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    let journal = c.must(
        "journalctl -q -o short-precise --no-pager -u keyward-sync.timer -u keyward-sync.service; \
         journalctl -q -o short-precise --no-pager -t keyward --grep '^decision=sync '",
    );
    eprintln!("keyward-sync.timer and its runs:\n{journal}");
    let refused =
        refused.unwrap_or_else(|| panic!("still served 180 s after the republish:\n{journal}"));
    eprintln!(
        "revoked key refused in the container {:.1} s after the republish (timer: {})",
        refused.as_secs_f64(),
        c.must("systemctl list-timers --all --no-pager keyward-sync.timer | sed -n 2p")
            .trim()
    );
    // The refusal's record, and the timer-started run that installed it.
    let mut rec = String::new();
    wait_until(Duration::from_secs(30), || {
        rec = c
            .sh(&format!(
                "journalctl -q -t keyward -o cat --no-pager KEYWARD_USER={user} --grep 'reason=revoked'"
            ))
            .stdout;
        rec.contains("decision=nomatch")
    });
    assert!(rec.contains("decision=nomatch"), "{rec}");
    let after = c.sh(syncs).stdout;
    assert!(
        after
            .lines()
            .skip(before)
            .any(|l| l.contains("revoked=installed")),
        "a later sync installed the new list: {after}"
    );
    drop(c);
}
