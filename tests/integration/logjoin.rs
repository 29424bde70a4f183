//! Log correlation, through a real sshd that logs through
//! syslog(3), as on a server: started without `-E` in a mount namespace
//! whose `/dev/log` is a private rsyslog (support::devlog), so its lines
//! carry its pid. keyward's `keys` record must name that sshd as `ppid=`:
//! the process that logs "Accepted publickey" is the one that ran the
//! AuthorizedKeysCommand.

use std::time::Duration;

use crate::support::keyward::make_cache_dir;
use crate::support::{
    ensure_system_user, Keyward, KwConfig, Nginx, PrivateDevLog, SshKey, Sshd, TestDir, TestUser,
};

#[test]
fn ppid_is_the_sshd_that_logged_accepted_publickey() {
    ensure_system_user("keyward");
    let dir = TestDir::new("logjoin");
    let cache = dir.join("cache");
    make_cache_dir(&cache, "keyward");
    let nginx = Nginx::start();
    let log = PrivateDevLog::start();
    // keyward logs to the same private rsyslog, through its own socket.
    let kw =
        Keyward::with_config(&KwConfig::new(&cache, Some(&log.log.socket)).url(nginx.users_url()));
    let user = TestUser::with_password("kwt-Pw-1");
    let key = SshKey::ed25519(dir.path(), "login");
    let other = SshKey::ed25519(dir.path(), "other");
    nginx.put_keys(
        &user.name,
        &format!("{}\n{}\n", other.public_line(), key.public_line()),
    );
    let sshd = Sshd::builder()
        .authorized_keys_command(&kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .set("LogLevel", "VERBOSE")
        .dev_log(&log)
        .syslog_only()
        .start();
    for round in 0..2 {
        let login = sshd.login(&user.name, &key.path, "echo kwt-joined");
        assert!(
            login.ok && login.stdout().contains("kwt-joined"),
            "round {round}: {:?}\n{}",
            login.out,
            log.text()
        );
    }
    let want = format!("Accepted publickey for {} ", user.name);
    let accepted = log.log.wait_for_n(2, Duration::from_secs(10), |l| {
        l.program == "sshd" && l.msg.starts_with(&want)
    });
    assert_eq!(
        accepted.len(),
        2,
        "two logins logged by sshd:\n{}",
        log.text()
    );
    let fp = key.fingerprint();
    for a in &accepted {
        assert!(a.msg.ends_with(&fp), "{}", a.raw);
        assert!(!a.pid.is_empty(), "sshd logged without a pid: {}", a.raw);
        // the keys records of this connection: same ppid, the accepted key
        let ours: Vec<_> = log
            .lines()
            .into_iter()
            .filter(|l| l.program == "keyward" && l.field("ppid").as_deref() == Some(&a.pid))
            .collect();
        assert!(
            !ours.is_empty(),
            "no keyward record with ppid={}:\n{}",
            a.pid,
            log.text()
        );
        assert!(
            ours.iter()
                .any(|l| l.field("decision").as_deref() == Some("match")
                    && l.field("fp").as_deref() == Some(fp.as_str())
                    && l.field("user").as_deref() == Some(user.name.as_str())),
            "ppid={}: {:#?}",
            a.pid,
            ours.iter().map(|l| &l.raw).collect::<Vec<_>>()
        );
    }
    assert_ne!(accepted[0].pid, accepted[1].pid, "one sshd per connection");
}
