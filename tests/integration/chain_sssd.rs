//! A real third-party provider chained as it ships: Debian's
//! `sss_ssh_authorizedkeys` (sssd-common) under keyward's `[[command]]`,
//! configured line for line as the GUIDE's "SSSD" section says.
//!
//! SSSD's packages edit /etc/nsswitch.conf and the PAM stack, which the test
//! machine's must never change, so everything SSSD runs in a booted Debian
//! 12 container (support/nspawn.rs) whose /etc is its own: a debootstrap
//! tree with sssd-ldap, cached in /var/lib/keyward-tests-sssd/bookworm. In
//! it: sssd with an LDAP domain pointed at a private slapd on the host's
//! 127.0.0.1 (support/slapd.rs, the openssh-lpk schema), which holds the
//! user's key in `sshPublicKey`; sshd on a private 127.0.0.1 port running
//! the test's keyward binary (bind-mounted read-only at /usr/sbin/keyward)
//! as `keyward`; and the host's nginx as the key directory for a second key.
//! keyward logs to the container's journald. The user is a local account
//! in the container (files before sss in its nsswitch), so sshd still knows
//! it when sssd is stopped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::nspawn::{tree, Container};
use crate::support::rsyslog::kv_field;
use crate::support::slapd::{self, Slapd, PEOPLE, READER, READER_PW};
use crate::support::*;

const TREE: &str = "/var/lib/keyward-tests-sssd/bookworm";
/// sssd-ldap brings sssd-common (sss_ssh_authorizedkeys, libnss-sss);
/// ldap-utils lets one ask the slapd from inside when sssd finds nothing.
const INCLUDE: &str =
    "systemd,systemd-sysv,dbus,openssh-server,adduser,libpam-runtime,sssd-ldap,ldap-utils";
const MARKS: &[&str] = &[
    "usr/lib/systemd/systemd",
    "usr/sbin/sshd",
    "usr/sbin/sssd",
    "usr/bin/sss_ssh_authorizedkeys",
];

/// The account: in LDAP (with its key) and local in the container.
const USER: &str = "kwsssd";
const UID: u32 = 10025;

/// The GUIDE's SSSD fragment, verbatim (checked against the GUIDE below).
const SSSD_TABLE: &str = r#"
[[command]]
name = "sssd"
command = "/usr/bin/sss_ssh_authorizedkeys %u"
user = "keyward"
timeout = "2s"
"#;

/// The GUIDE's sshd lines for it.
const SSHD_DROP_IN: &str = "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f %U
AuthorizedKeysCommandUser keyward
";

/// The GUIDE's "### SSSD" section.
fn guide_section() -> &'static str {
    let guide = include_str!("../../docs/GUIDE.md");
    let start = guide
        .find("\n### SSSD\n")
        .expect("the GUIDE has an SSSD section");
    let rest = &guide[start + 1..];
    let end = rest[4..].find("\n##").map_or(rest.len(), |e| e + 4);
    &rest[..end]
}

fn sssd_conf(ldap_port: u16) -> String {
    format!(
        "[sssd]
services = nss, ssh
domains = test

[domain/test]
id_provider = ldap
auth_provider = none
ldap_uri = ldap://127.0.0.1:{ldap_port}
ldap_search_base = {PEOPLE}
ldap_schema = rfc2307
ldap_default_bind_dn = {READER}
ldap_default_authtok = {READER_PW}
ldap_user_ssh_public_key = sshPublicKey
cache_credentials = false
"
    )
}

/// The user's posixAccount entry (what SSSD's rfc2307 schema looks for)
/// with `key` in `sshPublicKey`.
fn ldif(key: &str) -> String {
    format!(
        "dn: uid={USER},{PEOPLE}
objectClass: account
objectClass: posixAccount
objectClass: ldapPublicKey
uid: {USER}
cn: {USER}
uidNumber: {UID}
gidNumber: {UID}
homeDirectory: /home/{USER}
loginShell: /bin/sh
sshPublicKey: {key}
"
    )
}

/// One login attempt's outcome and keyward's line for it.
struct Attempt {
    ok: bool,
    ssh: SshOut,
    line: String,
}

impl Attempt {
    fn field(&self, key: &str) -> Option<String> {
        kv_field(&self.line, key)
    }
}

struct Site {
    c: Container,
    ssh_port: u16,
}

impl Site {
    /// keyward's journal lines for USER and the key `fp`.
    fn lines(&self, fp: &str) -> Vec<String> {
        self.c
            .must(&format!(
                "journalctl -q -t keyward -o cat --no-pager KEYWARD_USER={USER}"
            ))
            .lines()
            .filter(|l| kv_field(l, "fp").as_deref() == Some(fp))
            .map(str::to_owned)
            .collect()
    }

    /// Logs in with `key` (`id -un`); keyward's last line for it.
    fn attempt(&self, key: &SshKey) -> Attempt {
        let fp = key.fingerprint();
        let before = self.lines(&fp).len();
        let ssh = ssh_key_login(self.ssh_port, USER, &key.path, None, "id -un");
        let ok = ssh.ok && ssh.stdout().trim() == USER;
        let mut lines = Vec::new();
        wait_until(Duration::from_secs(30), || {
            lines = self.lines(&fp);
            lines.len() > before
        });
        let line = lines.pop().unwrap_or_else(|| {
            panic!(
                "no keyward line for {fp}\n{ssh}\n--- journal ---\n{}",
                self.c.sh("journalctl -q --no-pager | tail -60").stdout
            )
        });
        Attempt { ok, ssh, line }
    }
}

#[test]
fn chain_sssd_sss_ssh_authorizedkeys_serves_its_key_beside_the_directory() {
    // What runs here is what the GUIDE tells an admin to write.
    let guide = guide_section();
    assert!(guide.contains(SSSD_TABLE.trim_start()), "{guide}");
    assert!(guide.contains(SSHD_DROP_IN), "{guide}");
    assert!(
        slapd::available(),
        "slapd or ldapsearch missing: apt-get install -y slapd ldap-utils"
    );
    let base = tree(TREE, INCLUDE, MARKS);
    let files = TestDir::new("sssd");
    let sssd_key = SshKey::ed25519(files.path(), "sssd");
    let dir_key = SshKey::ed25519(files.path(), "dir");
    let stranger = SshKey::ed25519(files.path(), "stranger");

    // --- the LDAP directory SSSD reads, on the host's 127.0.0.1.
    let ldap = Slapd::start(&[], &[], false);
    let entry = files.write("user.ldif", ldif(&sssd_key.public_line()), 0o644);
    must(
        Command::new("ldapadd")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", ldap.port)])
            .args(["-D", &format!("cn=admin,{}", slapd::BASE)])
            .args(["-w", "admin-secret", "-f"])
            .arg(&entry),
    );

    // --- the key directory, with the second key only.
    let nginx = Nginx::start();
    nginx.put_keys(USER, &format!("{}\n", dir_key.public_line()));

    // --- the container's files: sshd's port (before boot), the GUIDE's
    // keyward and sshd configuration, sssd's.
    let kw = Keyward::install();
    let ssh_port = free_port();
    files.write(
        "00-kwt.conf",
        format!("Port {ssh_port}\nListenAddress 127.0.0.1\nLogLevel VERBOSE\n"),
        0o644,
    );
    files.write(
        "keyward.toml",
        format!(
            "[directory]\nurls = [\"{}\"]\n{SSSD_TABLE}",
            nginx.users_url()
        ),
        0o644,
    );
    files.write("40-keyward.conf", SSHD_DROP_IN, 0o644);
    files.write("sssd.conf", sssd_conf(ldap.port), 0o600);
    let binds: Vec<(PathBuf, &str)> = vec![
        (
            files.join("00-kwt.conf"),
            "/etc/ssh/sshd_config.d/00-kwt.conf",
        ),
        (kw.bin.clone(), "/usr/sbin/keyward"),
    ];
    let c = Container::boot(&base, files, &binds);
    let versions = c.must("sssd --version; sshd -V 2>&1 | head -1; /usr/sbin/keyward --version");
    eprintln!("in the container: {}", versions.replace('\n', " | "));

    // keyward's account and directories as its package makes them; the
    // user local, as sshd needs it whether sssd runs or not.
    c.must(&format!(
        "set -e
addgroup --system --quiet keyward
adduser --system --quiet --ingroup keyward --no-create-home --home /nonexistent --shell /usr/sbin/nologin keyward
install -d -o keyward -g keyward -m 0750 /var/cache/keyward /var/lib/keyward
install -d -m 0755 /etc/keyward
install -m 0644 /mnt/kw/keyward.toml /etc/keyward/keyward.toml
groupadd -g {UID} {USER}
useradd -m -u {UID} -g {UID} -s /bin/sh {USER} && usermod -p '*' {USER}
install -m 0600 /mnt/kw/sssd.conf /etc/sssd/sssd.conf
systemctl restart sssd
keyward check-config"
    ));

    // --- SSSD serves the key as it ships (sssd goes online in a moment).
    let serves = |out: &Out| out.success() && out.stdout.contains(&sssd_key.public_material());
    let mut served = c.sh(&format!("sss_ssh_authorizedkeys {USER}"));
    wait_until(Duration::from_secs(60), || {
        served = c.sh(&format!("sss_ssh_authorizedkeys {USER}"));
        serves(&served)
    });
    assert!(
        serves(&served),
        "sss_ssh_authorizedkeys {USER}: {served}\n{}",
        c.sh("journalctl -q -u sssd --no-pager | tail -30").stdout
    );
    c.must("install -m 0644 /mnt/kw/40-keyward.conf /etc/ssh/sshd_config.d/ && sshd -t && systemctl reload ssh");
    assert!(
        wait_port(ssh_port, Duration::from_secs(20)),
        "container sshd"
    );
    let site = Site { c, ssh_port };

    // The key only SSSD has logs in; keyward's line names the command.
    let a = site.attempt(&sssd_key);
    assert!(a.ok, "SSSD key: {}\n{}", a.ssh, a.line);
    assert_eq!(a.field("decision").as_deref(), Some("match"), "{}", a.line);
    let source = a.field("source").unwrap_or_default();
    assert!(source.split('+').any(|s| s == "command:sssd"), "{}", a.line);
    assert_eq!(a.field("warning"), None, "{}", a.line);

    // The directory's key logs in too: both sources answered, merged.
    let a = site.attempt(&dir_key);
    assert!(a.ok, "directory key: {}\n{}", a.ssh, a.line);
    assert_eq!(a.field("decision").as_deref(), Some("match"), "{}", a.line);
    assert!(
        a.field("source")
            .unwrap_or_default()
            .contains("command:sssd"),
        "{}",
        a.line
    );
    assert_eq!(a.field("keys").as_deref(), Some("2"), "{}", a.line);

    // A key neither source has is refused.
    let a = site.attempt(&stranger);
    assert!(!a.ok, "stranger key: {}", a.ssh);
    assert_eq!(
        a.field("decision").as_deref(),
        Some("nomatch"),
        "{}",
        a.line
    );

    // sssd stopped: its key fails (the source's failure, logged), the
    // directory's key still logs in (the source is optional).
    site.c.must("systemctl stop sssd");
    let down = site.c.sh(&format!("sss_ssh_authorizedkeys {USER}"));
    assert!(!down.success(), "sssd stopped yet: {down}");
    let a = site.attempt(&sssd_key);
    assert!(!a.ok, "SSSD key with sssd stopped: {}", a.ssh);
    assert_eq!(
        a.field("decision").as_deref(),
        Some("nomatch"),
        "{}",
        a.line
    );
    assert!(
        a.field("warning")
            .unwrap_or_default()
            .contains("command:sssd failed"),
        "{}",
        a.line
    );
    let a = site.attempt(&dir_key);
    assert!(
        a.ok,
        "directory key with sssd stopped: {}\n{}",
        a.ssh, a.line
    );
    assert_eq!(a.field("decision").as_deref(), Some("match"), "{}", a.line);
    drop(site);
    drop(ldap);
}
