//! The packages: build both with `scripts/package.sh`, inspect them (lintian,
//! dpkg-deb, rpm), and install, use, upgrade, remove and purge the .deb on
//! this machine.
//!
//! The build is slow (a release build with LTO): it runs once per test
//! process and both package tests share it. The install test refuses to run
//! when a keyward package is already on the machine (it will not purge
//! something it did not install), and it checks that /etc/ssh/sshd_config
//! and the PAM configuration are byte-identical before and after.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{must, run, user_ids, Nginx, Out, Rsyslog, SshKey, Sshd, TestDir, TestUser};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const PAM_SO_DEB: &str = "/usr/lib/x86_64-linux-gnu/security/pam_keyward.so";

/// Lintian warnings the .deb is allowed to keep, with the reason. Anything
/// else at warning level or above fails the test. (Overrides that are
/// justified for every build live in packaging/lintian-overrides.)
const KEPT_LINTIAN_WARNINGS: &[(&str, &str)] = &[];

pub(crate) struct Packages {
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

/// Builds both packages once per process (scripts/package.sh).
pub(crate) fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        // A clean environment: the variables cargo sets for a test run would
        // make the release build differ from (and rebuild over) the one an
        // admin gets from the same command in a shell.
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(REPO).join("scripts/package.sh"))
            .current_dir(REPO)
            .env_clear();
        for var in [
            "PATH",
            "HOME",
            "LANG",
            "RUSTUP_HOME",
            "CARGO_HOME",
            "RUSTUP_TOOLCHAIN",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let out = run(&mut cmd, Duration::from_secs(45 * 60));
        if !out.success() {
            return Err(format!("scripts/package.sh failed: {out}"));
        }
        let path_of = |prefix: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|p| PathBuf::from(p.trim()))
                .filter(|p| p.is_file())
                .ok_or_else(|| format!("package.sh printed no {prefix:?} line: {out}"))
        };
        Ok(Packages {
            deb: path_of("deb: ")?,
            rpm: path_of("rpm: ")?,
        })
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn cmd_out(program: &str, args: &[&str]) -> Out {
    run(Command::new(program).args(args), Duration::from_secs(300))
}

fn must_out(program: &str, args: &[&str]) -> String {
    must(Command::new(program).args(args)).stdout
}

/// `dpkg-deb -c`: path (without the leading `.`) → (mode string, owner/group).
fn deb_contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    must_out("dpkg-deb", &["-c", deb.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(5)?.trim_start_matches('.').to_owned();
            Some((path, (f[0].to_owned(), f[1].to_owned())))
        })
        .collect()
}

/// `rpm -qp --qf`: path → (flags, mode string, user, group).
fn rpm_files(rpm: &Path) -> BTreeMap<String, (String, String, String, String)> {
    must_out(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILEFLAGS:fflags}|%{FILEMODES:perms}|%{FILEUSERNAME}|%{FILEGROUPNAME}|%{FILENAMES}\n]",
            rpm.to_str().unwrap(),
        ],
    )
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        (f.len() == 5).then(|| {
            (
                f[4].to_owned(),
                (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].to_owned()),
            )
        })
    })
    .collect()
}

/// Group- or world-writable according to an `ls`-style mode string.
fn others_can_write(mode: &str) -> bool {
    let b = mode.as_bytes();
    b.len() >= 10 && (b[5] == b'w' || b[8] == b'w')
}

/// `systemd-analyze security --offline=yes UNIT` → the overall exposure.
fn exposure(unit: &Path) -> f64 {
    let out = cmd_out(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--no-pager",
            unit.to_str().unwrap(),
        ],
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure in systemd-analyze output: {out}"));
    line.split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"))
}

#[test]
fn sync_unit_exposure_is_at_most_2() {
    let unit = Path::new(REPO).join("systemd/keyward-sync.service");
    let score = exposure(&unit);
    eprintln!("systemd-analyze security exposure of keyward-sync.service: {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0");
    let text = fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=oneshot",
        "ExecStart=/usr/sbin/keyward sync --poll",
        "User=keyward",
        "CacheDirectory=keyward",
        "CacheDirectoryMode=0750",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(text.contains(line), "unit lacks {line:?}");
    }
    let timer = fs::read_to_string(Path::new(REPO).join("systemd/keyward-sync.timer")).unwrap();
    for line in [
        "OnCalendar=*:*:0/30",
        "RandomizedDelaySec=30s",
        "FixedRandomDelay=true",
    ] {
        assert!(timer.contains(line), "timer lacks {line:?}");
    }
}

#[test]
fn packaged_config_documents_defaults_and_fails_closed() {
    // The packaged file sets nothing (every
    // default is a commented "#key = value" line, as in sshd_config), so
    // configuration management never has to edit the conffile. Each
    // commented setting must still be a real key with a valid value: each
    // one, uncommented alone, parses.
    let dir = TestDir::new("pkgconf");
    let text = fs::read_to_string(Path::new(REPO).join("packaging/keyward.toml")).unwrap();
    let active: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim();
            let header = t.starts_with('[') && t.ends_with(']');
            !(t.is_empty() || t.starts_with('#') || header)
        })
        .collect();
    assert!(
        active.is_empty(),
        "the packaged config sets values: {active:?}"
    );
    let conf = dir.write("keyward.toml", &text, 0o644);
    let out = run(
        Command::new(crate::support::keyward::KEYWARD_BIN)
            .arg("--config")
            .arg(&conf)
            .args(["keys", "alice"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("no key source"), "{out}");
    let with_urls = uncomment_urls(&text, "http://127.0.0.1:9/users/{user}.keys");
    let settings = commented_settings(&with_urls);
    assert!(settings.len() >= 18, "documented settings: {settings:?}");
    for (i, (line, _)) in settings.iter().enumerate() {
        let one = uncomment_setting(&with_urls, *line);
        // a placeholder ("ssh-ed25519 AAAA...") is an example, not a value
        if with_urls
            .lines()
            .nth(*line)
            .is_some_and(|l| l.contains("..."))
        {
            continue;
        }
        let conf = dir.write(format!("one-{i}.toml"), &one, 0o644);
        let out = run(
            Command::new(crate::support::keyward::KEYWARD_BIN)
                .arg("--config")
                .arg(&conf)
                .arg("check-config"),
            Duration::from_secs(30),
        );
        // exit 0 (warnings allowed); an example path (ca_file, signers_file)
        // that does not exist on this machine is the only error allowed
        let missing = out
            .stderr
            .lines()
            .filter(|l| l.contains(": error: "))
            .all(|l| l.contains("No such file or directory"));
        assert!(
            out.code == Some(0) || (out.code == Some(1) && missing),
            "setting on line {}: {out}",
            line + 1
        );
    }
    // With urls set (the commented example), the same file is valid.
    let conf2 = dir.write("keyward2.toml", with_urls, 0o644);
    let out = run(
        Command::new(crate::support::keyward::KEYWARD_BIN)
            .arg("--config")
            .arg(&conf2)
            .args(["keys", "root"]),
        Duration::from_secs(30),
    );
    assert!(
        out.success(),
        "root is in deny_users, answered with no key: {out}"
    );
    assert!(out.stdout.is_empty());
}

/// The commented `#key = value` settings: (index of the first line, lines).
fn commented_settings(text: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let is_setting = l.starts_with('#')
            && l[1..].split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
        if is_setting {
            let mut n = 1;
            if l.contains('[') && !l.contains(']') {
                while i + n < lines.len() && !lines[i + n - 1].contains(']') {
                    n += 1;
                }
            }
            out.push((i, n));
            i += n;
        } else {
            i += 1;
        }
    }
    out
}

/// `text` with the commented setting starting at line `at` made active.
fn uncomment_setting(text: &str, at: usize) -> String {
    let settings = commented_settings(text);
    let (_, n) = settings.iter().find(|(i, _)| *i == at).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i >= at && i < at + n {
                l.strip_prefix('#').unwrap_or(l).to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Turns the packaged `#urls = [...]` example into a real `urls` line.
fn uncomment_urls(packaged: &str, url: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in packaged.lines() {
        if line.starts_with("#urls = [") {
            out += &format!("urls = [\"{url}\"]\n");
            skipping = !line.ends_with(']');
            continue;
        }
        if skipping {
            skipping = !line.ends_with(']');
            continue;
        }
        out += line;
        out.push('\n');
    }
    assert!(
        out.contains("\nurls = ["),
        "no #urls example in the packaged config"
    );
    out
}

#[test]
fn packages_build_pass_lintian_and_rpm_checks() {
    let p = packages();
    let deb_size = fs::metadata(&p.deb).unwrap().len();
    let rpm_size = fs::metadata(&p.rpm).unwrap().len();
    eprintln!(
        "package sizes: {} {} bytes, {} {} bytes",
        p.deb.display(),
        deb_size,
        p.rpm.display(),
        rpm_size
    );

    // --- .deb contents, modes, owners.
    let deb = deb_contents(&p.deb);
    let expect_deb = [
        ("/usr/sbin/keyward", "-rwxr-xr-x"),
        (PAM_SO_DEB, "-rw-r--r--"),
        ("/etc/keyward/keyward.toml", "-rw-r--r--"),
        ("/lib/systemd/system/keyward-sync.service", "-rw-r--r--"),
        ("/lib/systemd/system/keyward-sync.timer", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/keyward.conf", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/keyward.conf", "-rw-r--r--"),
        ("/usr/share/man/man8/keyward.8.gz", "-rw-r--r--"),
        ("/usr/share/man/man5/keyward.toml.5.gz", "-rw-r--r--"),
        ("/usr/share/man/man8/pam_keyward.8.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/keyward",
            "-rw-r--r--",
        ),
        ("/usr/share/zsh/vendor-completions/_keyward", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/keyward.fish",
            "-rw-r--r--",
        ),
        (
            "/usr/share/keyward/sshd_config.d/40-keyward.conf",
            "-rw-r--r--",
        ),
        ("/usr/share/keyward/pam.d/sshd-keyward", "-rw-r--r--"),
        ("/etc/keyward/keyward.toml.d/README", "-rw-r--r--"),
        ("/etc/keyward/keyward.toml.d/", "drwxr-xr-x"),
        ("/usr/share/doc/keyward/copyright", "-rw-r--r--"),
        ("/usr/share/doc/keyward/changelog.Debian.gz", "-rw-r--r--"),
        // The README's links (docs/...) resolve in the installed copy.
        ("/usr/share/doc/keyward/docs/GUIDE.md", "-rw-r--r--"),
        (
            "/usr/share/doc/keyward/docs/TROUBLESHOOTING.md",
            "-rw-r--r--",
        ),
    ];
    for (path, mode) in expect_deb {
        let (m, owner) = deb
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the .deb: {deb:#?}"));
        assert_eq!(m, mode, "{path}");
        assert_eq!(owner, "0/0", "{path} must belong to root");
    }
    for (path, (mode, _)) in &deb {
        assert!(!others_can_write(mode), "{path} is {mode}");
        assert!(
            !path.starts_with("/etc/ssh") && !path.starts_with("/etc/pam.d"),
            "the package must not ship {path}: enabling keyward is the admin's decision"
        );
        assert!(!path.starts_with("/usr/share/pam-configs"), "{path}");
    }
    // The drop-in directory's README is a conffile too (it makes
    // dpkg own the directory).
    let conffiles = must_out("dpkg-deb", &["-I", p.deb.to_str().unwrap(), "conffiles"]);
    assert_eq!(
        conffiles.trim(),
        "/etc/keyward/keyward.toml\n/etc/keyward/keyward.toml.d/README"
    );
    let control = must_out("dpkg-deb", &["-f", p.deb.to_str().unwrap()]);
    for field in [
        "Section: admin",
        "Priority: optional",
        "Architecture: amd64",
    ] {
        assert!(control.contains(field), "{field}: {control}");
    }
    assert!(
        control.contains("adduser"),
        "postinst uses adduser: {control}"
    );
    let postinst = must_out("dpkg-deb", &["-I", p.deb.to_str().unwrap(), "postinst"]);
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(postinst.contains("chmod 0750"), "{postinst}");
    assert!(
        postinst.contains("[ -d /run/systemd/system ]"),
        "{postinst}"
    );
    let postrm = must_out("dpkg-deb", &["-I", p.deb.to_str().unwrap(), "postrm"]);
    assert!(postrm.contains("rm -rf /var/cache/keyward"), "{postrm}");

    // --- lintian: no errors; warnings only from the kept list.
    let lint = cmd_out(
        "lintian",
        &["--pedantic", "--display-info", p.deb.to_str().unwrap()],
    );
    let text = format!("{}{}", lint.stdout, lint.stderr);
    eprintln!("lintian:\n{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("W: "))
        .filter(|l| !KEPT_LINTIAN_WARNINGS.iter().any(|(tag, _)| l.contains(tag)))
        .collect();
    assert!(
        warnings.is_empty(),
        "lintian warnings:\n{}",
        warnings.join("\n")
    );
    assert!(
        !text.contains("internal error") && lint.code.is_some(),
        "lintian did not run cleanly: {lint}"
    );

    // --- .rpm: paths, modes, owners, config noreplace, scriptlets, requires.
    let rpm_path = p.rpm.to_str().unwrap();
    let files = rpm_files(&p.rpm);
    let expect_rpm = [
        ("/usr/sbin/keyward", "-rwxr-xr-x"),
        ("/usr/lib64/security/pam_keyward.so", "-rw-r--r--"),
        ("/etc/keyward/keyward.toml", "-rw-r--r--"),
        ("/usr/lib/systemd/system/keyward-sync.service", "-rw-r--r--"),
        ("/usr/lib/systemd/system/keyward-sync.timer", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/keyward.conf", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/keyward.conf", "-rw-r--r--"),
        ("/usr/share/man/man8/keyward.8.gz", "-rw-r--r--"),
        ("/usr/share/man/man5/keyward.toml.5.gz", "-rw-r--r--"),
        ("/usr/share/man/man8/pam_keyward.8.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/keyward",
            "-rw-r--r--",
        ),
        ("/usr/share/zsh/site-functions/_keyward", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/keyward.fish",
            "-rw-r--r--",
        ),
        (
            "/usr/share/keyward/sshd_config.d/40-keyward.conf",
            "-rw-r--r--",
        ),
        ("/usr/share/keyward/pam.d/sshd-keyward", "-rw-r--r--"),
        ("/etc/keyward/keyward.toml.d/README", "-rw-r--r--"),
        (
            "/usr/lib/systemd/system-preset/80-keyward.preset",
            "-rw-r--r--",
        ),
    ];
    for (path, mode) in expect_rpm {
        let (_, m, user, group) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the .rpm: {files:#?}"));
        assert_eq!(m, mode, "{path}");
        assert_eq!((user.as_str(), group.as_str()), ("root", "root"), "{path}");
    }
    // The RPM owns every directory it creates (%dir), the cache
    // with its owner and mode.
    for (dir, mode, owner) in [
        ("/etc/keyward", "drwxr-xr-x", "root"),
        ("/etc/keyward/keyward.toml.d", "drwxr-xr-x", "root"),
        ("/var/cache/keyward", "drwxr-x---", "keyward"),
        ("/usr/share/keyward", "drwxr-xr-x", "root"),
        ("/usr/share/keyward/sshd_config.d", "drwxr-xr-x", "root"),
        ("/usr/share/keyward/pam.d", "drwxr-xr-x", "root"),
        ("/usr/share/doc/keyward", "drwxr-xr-x", "root"),
        ("/usr/share/doc/keyward/docs", "drwxr-xr-x", "root"),
    ] {
        let (_, m, user, group) = files
            .get(dir)
            .unwrap_or_else(|| panic!("the .rpm does not own {dir}: {files:#?}"));
        assert_eq!(
            (m.as_str(), user.as_str(), group.as_str()),
            (mode, owner, owner),
            "{dir}"
        );
    }
    assert!(
        !files.keys().any(|f| f.contains(".build-id")),
        "no build-id links: {files:#?}"
    );
    for (path, (_, mode, _, _)) in &files {
        assert!(!others_can_write(mode), "{path} is {mode}");
        assert!(
            !path.starts_with("/etc/ssh") && !path.starts_with("/etc/pam.d"),
            "{path}"
        );
    }
    let flags = &files["/etc/keyward/keyward.toml"].0;
    assert!(
        flags.contains('c') && flags.contains('n'),
        "keyward.toml must be %config(noreplace), flags {flags:?}"
    );
    let qlpv = must_out("rpm", &["-qlpv", rpm_path]);
    let bin_line = qlpv
        .lines()
        .find(|l| l.ends_with(" /usr/sbin/keyward"))
        .unwrap_or_else(|| panic!("{qlpv}"));
    assert!(
        bin_line.starts_with("-rwxr-xr-x")
            && bin_line.contains(" root ")
            && bin_line.contains(" root "),
        "{bin_line}"
    );
    assert_eq!(
        must_out("rpm", &["-qpc", rpm_path]).trim(),
        "/etc/keyward/keyward.toml\n/etc/keyward/keyward.toml.d/README"
    );
    // The timer is enabled by a shipped preset (%post runs `systemctl preset`).
    let preset =
        fs::read_to_string(Path::new(REPO).join("packaging/systemd-preset/80-keyward.preset"))
            .unwrap();
    assert!(
        preset
            .lines()
            .any(|l| l.trim() == "enable keyward-sync.timer"),
        "{preset}"
    );
    let scripts = must_out("rpm", &["-qp", "--scripts", rpm_path]);
    for needle in [
        "preinstall scriptlet",
        "useradd -r -M -g keyward -d /nonexistent -s /usr/sbin/nologin",
        "postinstall scriptlet",
        "install -d -m 0750 -o keyward -g keyward /var/cache/keyward",
        "preuninstall scriptlet",
        "disable keyward-sync.timer",
        "postuninstall scriptlet",
        "rm -rf /var/cache/keyward",
    ] {
        assert!(
            scripts.contains(needle),
            "rpm scriptlets lack {needle:?}:\n{scripts}"
        );
    }
    let requires = must_out("rpm", &["-qpR", rpm_path]);
    for r in ["pam", "shadow-utils", "/bin/sh"] {
        assert!(
            requires.lines().any(|l| l.trim() == r),
            "Requires {r}: {requires}"
        );
    }
    for script in ["pre", "post", "preun", "postun"] {
        let path = Path::new(REPO).join("packaging/rpm").join(script);
        must(Command::new("sh").arg("-n").arg(&path));
    }
}

/// sha256 of each file, or "absent".
fn snapshot(paths: &[&str]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for p in paths {
        let v = if Path::new(p).exists() {
            must_out("sha256sum", &[p])
        } else {
            "absent".into()
        };
        m.insert((*p).to_owned(), v);
    }
    // Everything in /etc/pam.d and /etc/ssh/sshd_config.d too: the package
    // must not add, remove or change any of it.
    for dir in ["/etc/pam.d", "/etc/ssh/sshd_config.d"] {
        if let Ok(rd) = fs::read_dir(dir) {
            let mut names: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
            names.sort();
            for n in names {
                let v = if n.is_file() {
                    must_out("sha256sum", &[n.to_str().unwrap()])
                } else {
                    "not a file".into()
                };
                m.insert(n.display().to_string(), v);
            }
        }
    }
    m
}

fn dpkg_status() -> Option<String> {
    let out = cmd_out(
        "dpkg-query",
        &["-W", "-f", "${db:Status-Abbrev}", "keyward"],
    );
    let s = out.stdout.trim().to_owned();
    (out.success() && !s.is_empty() && !s.starts_with("un")).then_some(s)
}

/// Purges the package on drop if the test installed it and did not get to
/// purge it itself (a failing assertion half-way).
struct InstalledByTest;

impl Drop for InstalledByTest {
    fn drop(&mut self) {
        if dpkg_status().is_some() {
            let out = cmd_out("dpkg", &["--purge", "keyward"]);
            eprintln!("cleanup: dpkg --purge keyward: {out}");
        }
    }
}

fn mode_owner(path: &str) -> (u32, u32, u32) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (md.permissions().mode() & 0o7777, md.uid(), md.gid())
}

/// Paths under `dirs` whose name contains "keyward".
fn keyward_leftovers(dirs: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for d in dirs {
        if !Path::new(d).exists() {
            continue;
        }
        let out = must_out("find", &[d, "-name", "*keyward*"]);
        found.extend(out.lines().map(str::to_owned));
    }
    found
}

const SYSTEMD_STATE_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/var/lib/systemd/deb-systemd-helper-enabled",
    "/var/lib/systemd/deb-systemd-helper-masked",
];

#[test]
fn deb_installs_syncs_upgrades_and_purges_cleanly() {
    if let Some(status) = dpkg_status() {
        panic!(
            "a keyward package is already known to dpkg here (status {status:?}). This test \
             installs and purges the package itself and will not purge one it did not \
             install: remove it first with `dpkg --purge keyward`."
        );
    }
    for p in [
        "/etc/keyward",
        "/var/cache/keyward",
        "/usr/sbin/keyward",
        PAM_SO_DEB,
    ] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists although no keyward package is installed: left by something else; \
             this test will not delete it. Remove it by hand and re-run."
        );
    }
    let leftovers = keyward_leftovers(SYSTEMD_STATE_DIRS);
    assert!(
        leftovers.is_empty(),
        "systemd state left by something else: {leftovers:?}"
    );
    let p = packages();
    let watched = ["/etc/ssh/sshd_config", "/etc/pam.d/sshd"];
    let before = snapshot(&watched);
    let user_existed = user_ids("keyward").is_some();

    // --- install
    let guard = InstalledByTest;
    let out = cmd_out("dpkg", &["-i", p.deb.to_str().unwrap()]);
    assert!(out.success(), "dpkg -i: {out}");
    assert_eq!(dpkg_status().as_deref(), Some("ii"));

    let (uid, gid) = user_ids("keyward").expect("the keyward user exists after install");
    assert!(
        uid > 0 && uid < 1000,
        "keyward is a system user (uid {uid})"
    );
    let passwd = must_out("getent", &["passwd", "keyward"]);
    if !user_existed {
        assert!(
            passwd.trim().ends_with(":/nonexistent:/usr/sbin/nologin"),
            "{passwd}"
        );
    }
    assert!(
        must(Command::new("getent").args(["group", "keyward"])).success(),
        "keyward group"
    );
    assert_eq!(mode_owner("/var/cache/keyward"), (0o750, uid, gid));
    assert!(Path::new("/var/cache/keyward").is_dir());
    assert_eq!(mode_owner("/usr/sbin/keyward"), (0o755, 0, 0));
    assert_eq!(mode_owner(PAM_SO_DEB), (0o644, 0, 0));
    assert_eq!(mode_owner("/etc/keyward/keyward.toml"), (0o644, 0, 0));
    assert_eq!(mode_owner("/etc/keyward"), (0o755, 0, 0));
    // The drop-in directory belongs to the package.
    assert_eq!(mode_owner("/etc/keyward/keyward.toml.d"), (0o755, 0, 0));
    let owner = must_out("dpkg", &["-S", "/etc/keyward/keyward.toml.d"]);
    assert!(owner.starts_with("keyward:"), "{owner}");
    for unit in ["keyward-sync.service", "keyward-sync.timer"] {
        assert_eq!(
            mode_owner(&format!("/lib/systemd/system/{unit}")),
            (0o644, 0, 0)
        );
    }
    let conffiles = must_out("dpkg-query", &["-W", "-f", "${Conffiles}", "keyward"]);
    assert!(
        conffiles.contains("/etc/keyward/keyward.toml"),
        "{conffiles}"
    );
    // Enabled like debhelper does (takes effect when systemd runs).
    assert!(
        fs::symlink_metadata("/etc/systemd/system/timers.target.wants/keyward-sync.timer").is_ok(),
        "timer enabled: {:?}",
        keyward_leftovers(SYSTEMD_STATE_DIRS)
    );
    let installed_unit = Path::new("/lib/systemd/system/keyward-sync.service");
    assert!(exposure(installed_unit) <= 2.0);
    assert_eq!(
        snapshot(&watched),
        before,
        "installing changed sshd/PAM configuration"
    );

    let version = must_out("/usr/sbin/keyward", &["--version"]);
    assert!(version.starts_with("keyward "), "{version}");
    // The packaged config has no key source yet: fail closed.
    let out = cmd_out("/usr/sbin/keyward", &["keys", "alice"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.is_empty() && out.stderr.contains("no key source"),
        "{out}"
    );

    // --- sshd accepts the example snippet as shipped.
    let sshd = Sshd::builder()
        .line("Include /usr/share/keyward/sshd_config.d/40-keyward.conf")
        .start();
    let effective = must_out("/usr/sbin/sshd", &["-T", "-f", sshd.conf.to_str().unwrap()]);
    assert!(
        effective.contains("authorizedkeyscommand /usr/sbin/keyward keys %u %f"),
        "{effective}"
    );
    assert!(
        effective.contains("authorizedkeyscommanduser keyward"),
        "{effective}"
    );

    // --- point the packaged config at a private directory and use it.
    let nginx = Nginx::start();
    let syslog = Rsyslog::start();
    let keys_dir = TestDir::new("pkgkeys");
    let user = TestUser::new();
    let key = SshKey::ed25519(keys_dir.path(), "login");
    nginx.put_keys(&user.name, &format!("{}\n", key.public_line()));
    let packaged = fs::read_to_string("/etc/keyward/keyward.toml").unwrap();
    let configured = uncomment_urls(&packaged, &nginx.users_url());
    fs::write("/etc/keyward/keyward.toml", &configured).unwrap();
    fs::set_permissions(
        "/etc/keyward/keyward.toml",
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // The log socket comes from a drop-in (what configuration management
    // would own): the sync record below reaches it only if it is read.
    let drop_in = "/etc/keyward/keyward.toml.d/50-test.toml";
    crate::support::write_file(
        Path::new(drop_in),
        format!("[log]\nsocket = \"{}\"\n", syslog.socket.display()),
        0o644,
    );
    let out = cmd_out("/usr/sbin/keyward", &["check-config"]);
    assert!(
        out.success(),
        "check-config of the installed configuration: {out}"
    );

    let as_keyward = |args: &[&str]| -> Out {
        let mut c = Command::new("runuser");
        c.args(["-u", "keyward", "--", "/usr/sbin/keyward"])
            .args(args);
        run(c.current_dir("/"), Duration::from_secs(60))
    };
    let out = as_keyward(&["keys", &user.name]);
    assert!(out.success(), "keys as keyward: {out}");
    assert!(out.stdout.contains(&key.public_material()), "{out}");
    let entry = format!("/var/cache/keyward/{}", user.name);
    let (mode, euid, _) = mode_owner(&entry);
    assert_eq!(
        (euid, mode & 0o022),
        (uid, 0),
        "cache entry owner/mode {mode:o}"
    );

    let out = as_keyward(&["sync"]);
    assert!(out.success(), "sync as keyward: {out}");
    let last = nginx.accesses_for(&user.name).pop().unwrap();
    assert_eq!(last.status, 304, "{last:?}");
    let out = cmd_out("/usr/sbin/keyward", &["sync"]);
    assert!(out.success(), "sync as root (drops to keyward): {out}");
    assert!(
        syslog
            .wait_for(Duration::from_secs(5), |l| l
                .msg
                .starts_with("decision=sync "))
            .is_some(),
        "sync logs to the configured socket"
    );

    // A real login through the private sshd and the installed binary.
    let login = sshd.login(&user.name, &key.path, "echo kw-login-ok");
    assert!(
        login.ok && login.stdout().contains("kw-login-ok"),
        "ssh login with the packaged keyward: {:?}\nsshd log:\n{}",
        login.out,
        sshd.log_text()
    );
    drop(sshd);

    // --- upgrade path (same version again): the admin's config and the cache stay.
    let out = cmd_out("dpkg", &["-i", p.deb.to_str().unwrap()]);
    assert!(out.success(), "dpkg -i (again): {out}");
    assert_eq!(
        fs::read_to_string("/etc/keyward/keyward.toml").unwrap(),
        configured
    );
    assert!(Path::new(&entry).exists(), "the cache survives an upgrade");
    assert_eq!(mode_owner("/var/cache/keyward"), (0o750, uid, gid));
    assert!(
        Path::new(drop_in).exists(),
        "an upgrade keeps the admin's drop-in"
    );
    // The admin's own drop-in is the admin's to remove (dpkg keeps it).
    fs::remove_file(drop_in).unwrap();

    // --- remove refused while a PAM file names the module: dpkg -r as the
    // admin would run it, in a mount namespace whose /etc/pam.d holds the
    // example sshd lines (the machine's own PAM files stay untouched).
    let pam = TestDir::new("deb-pamd");
    pam.write(
        "sshd",
        fs::read_to_string(Path::new(REPO).join("packaging/examples/pam.d/sshd-keyward")).unwrap(),
        0o644,
    );
    let out = in_pam_dir(pam.path(), &["dpkg", "-r", "keyward"]);
    assert!(!out.success(), "dpkg -r must refuse: {out}");
    assert_refusal(&out, "/etc/pam.d/sshd");
    // Still installed (state `i`); dpkg may keep the "remove" wish (`ri`)
    // until the next install or remove.
    let status = dpkg_status();
    assert!(
        matches!(status.as_deref(), Some("ri" | "ii")),
        "{status:?}: {out}"
    );
    assert!(Path::new(PAM_SO_DEB).exists(), "the module stays: {out}");
    assert!(Path::new("/usr/sbin/keyward").exists(), "{out}");

    // --- remove: program gone, conffile kept.
    let out = cmd_out("dpkg", &["-r", "keyward"]);
    assert!(out.success(), "dpkg -r: {out}");
    assert_eq!(dpkg_status().as_deref(), Some("rc"));
    assert!(!Path::new("/usr/sbin/keyward").exists());
    assert!(!Path::new(PAM_SO_DEB).exists());
    assert!(
        Path::new("/etc/keyward/keyward.toml").exists(),
        "remove keeps conffiles"
    );

    // --- purge: nothing left.
    let out = cmd_out("dpkg", &["--purge", "keyward"]);
    assert!(out.success(), "dpkg --purge: {out}");
    drop(guard);
    assert_eq!(dpkg_status(), None, "dpkg still knows keyward");
    let mut left: Vec<String> = deb_contents(&p.deb)
        .into_iter()
        .filter(|(path, (mode, _))| !mode.starts_with('d') && Path::new(path).exists())
        .map(|(path, _)| path)
        .collect();
    for dir in [
        "/etc/keyward",
        "/var/cache/keyward",
        "/usr/share/keyward",
        "/usr/share/doc/keyward",
    ] {
        if Path::new(dir).exists() {
            left.push(dir.to_owned());
        }
    }
    left.extend(keyward_leftovers(SYSTEMD_STATE_DIRS));
    assert!(left.is_empty(), "left behind after purge: {left:#?}");
    // Debian practice (see packaging/debian/postrm): the system user stays.
    assert!(
        user_ids("keyward").is_some(),
        "the keyward user is kept on purge"
    );
    assert_eq!(snapshot(&watched), before, "sshd/PAM configuration changed");
}

/// Runs `argv` in a private mount namespace where `dir` is /etc/pam.d.
fn in_pam_dir<S: AsRef<std::ffi::OsStr>>(dir: &Path, argv: &[S]) -> Out {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/pam.d && exec \"$@\"")
        .arg(dir)
        .args(argv);
    run(&mut c, Duration::from_secs(120))
}

/// The one-line refusal of the removal scripts: why, where, the safe order
/// and the way to force it.
fn assert_refusal(out: &Out, file: &str) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("keyward: not removed: pam_keyward is still named in"))
        .unwrap_or_else(|| panic!("no refusal line: {out}"));
    assert!(line.contains(file), "{line}");
    assert!(
        line.contains("PAM fails every SSH login (key logins too)"),
        "{line}"
    );
    assert!(
        line.contains("first remove the pam_keyward lines, then the sshd drop-in, reload sshd, then remove keyward"),
        "{line}"
    );
    assert!(line.contains("KEYWARD_FORCE_REMOVE=1"), "{line}");
}

#[test]
fn removal_scripts_refuse_while_pam_names_the_module() {
    let dir = TestDir::new("rm-pamd");
    let pam = dir.subdir("pam.d");
    let stubs = dir.subdir("bin");
    let log = stubs.join("calls.log");
    for cmd in ["systemctl", "deb-systemd-invoke"] {
        crate::support::write_file(
            &stubs.join(cmd),
            format!("#!/bin/sh\necho \"{cmd} $*\" >>'{}'\n", log.display()),
            0o755,
        );
    }
    // (script, its argument for removal, for upgrade)
    let scripts = [
        ("packaging/debian/prerm", "remove", "upgrade"),
        ("packaging/rpm/preun", "0", "1"),
    ];
    let script = |path: &str, arg: &str, force: bool| {
        // A clean environment, stub service managers first in PATH.
        let mut argv: Vec<std::ffi::OsString> = vec!["env".into(), "-i".into()];
        argv.push(format!("PATH={}:/usr/bin:/bin", stubs.display()).into());
        if force {
            argv.push("KEYWARD_FORCE_REMOVE=1".into());
        }
        argv.push("/bin/sh".into());
        argv.push(Path::new(REPO).join(path).into());
        argv.push(arg.into());
        let _ = fs::remove_file(&log);
        let out = in_pam_dir(&pam, &argv);
        (out, fs::read_to_string(&log).unwrap_or_default())
    };
    // Only comments name it (whole-line and trailing): removal goes on.
    crate::support::write_file(
        &pam.join("other"),
        "# session required pam_keyward.so\nauth required pam_unix.so # was pam_keyward.so\n",
        0o644,
    );
    for (path, remove, _) in scripts {
        let (out, _) = script(path, remove, false);
        assert!(out.success(), "{path} {remove}: {out}");
    }
    // The example sshd lines, and a shared stack naming the module by path
    // on a last line without a newline: refused, the timer left running;
    // an upgrade and a forced removal go on.
    let example =
        fs::read_to_string(Path::new(REPO).join("packaging/examples/pam.d/sshd-keyward")).unwrap();
    crate::support::write_file(&pam.join("sshd"), example, 0o644);
    crate::support::write_file(
        &pam.join("common-session"),
        "session required /usr/lib/x86_64-linux-gnu/security/pam_keyward.so",
        0o644,
    );
    for (path, remove, upgrade) in scripts {
        let (out, calls) = script(path, remove, false);
        assert_eq!(out.code, Some(1), "{path} {remove}: {out}");
        assert_refusal(&out, "/etc/pam.d/sshd");
        assert_refusal(&out, "/etc/pam.d/common-session");
        assert!(calls.is_empty(), "nothing stopped or disabled: {calls}");
        let (out, _) = script(path, upgrade, false);
        assert!(out.success(), "{path} {upgrade}: {out}");
        let (out, _) = script(path, remove, true);
        assert!(out.success(), "{path} {remove} forced: {out}");
    }
}

/// Runs an RPM scriptlet with `sh` and stub commands that only record their
/// arguments (no RPM system here to run them for real): returns the log.
fn run_scriptlet(stubs: &Path, name: &str, arg: &str, existing_user: bool) -> String {
    let log = stubs.join("calls.log");
    let _ = fs::remove_file(&log);
    let getent_rc = if existing_user { 0 } else { 2 };
    for (cmd, rc) in [
        ("getent", getent_rc),
        ("groupadd", 0),
        ("useradd", 0),
        ("install", 0),
        ("systemctl", 0),
        ("systemd-tmpfiles", 0),
        ("rm", 0),
        ("rmdir", 0),
    ] {
        let script = format!(
            "#!/bin/sh\necho \"{cmd} $*\" >>'{}'\nexit {rc}\n",
            log.display()
        );
        crate::support::write_file(&stubs.join(cmd), script, 0o755);
    }
    let path = Path::new(REPO).join("packaging/rpm").join(name);
    let out = run(
        Command::new("/bin/sh")
            .arg(&path)
            .arg(arg)
            .env_clear()
            .env("PATH", stubs),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{name} {arg}: {out}");
    fs::read_to_string(&log).unwrap_or_default()
}

#[test]
fn rpm_scriptlets_do_what_they_say() {
    let dir = TestDir::new("scriptlets");
    let stubs = dir.subdir("bin");
    // %pre: creates the group and the user only when missing.
    let calls = run_scriptlet(&stubs, "pre", "1", false);
    assert!(calls.contains("groupadd -r keyward"), "{calls}");
    assert!(
        calls.contains("useradd -r -M -g keyward -d /nonexistent -s /usr/sbin/nologin"),
        "{calls}"
    );
    let calls = run_scriptlet(&stubs, "pre", "2", true);
    assert!(
        !calls.contains("groupadd") && !calls.contains("useradd"),
        "{calls}"
    );
    // %post: the cache directory; preset (not enable) on first install only.
    let calls = run_scriptlet(&stubs, "post", "1", true);
    assert!(
        calls.contains("install -d -m 0750 -o keyward -g keyward /var/cache/keyward"),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl --no-reload preset keyward-sync.timer"),
        "{calls}"
    );
    let calls = run_scriptlet(&stubs, "post", "2", true);
    assert!(
        !calls.contains("preset"),
        "an upgrade keeps the admin's choice: {calls}"
    );
    // %preun: disable on erase, nothing on upgrade.
    let calls = run_scriptlet(&stubs, "preun", "0", true);
    assert!(
        calls.contains("systemctl --no-reload disable keyward-sync.timer"),
        "{calls}"
    );
    assert!(run_scriptlet(&stubs, "preun", "1", true).is_empty());
    // %postun: erase removes the cache and the package's empty directories.
    let calls = run_scriptlet(&stubs, "postun", "0", true);
    assert!(calls.contains("rm -rf /var/cache/keyward"), "{calls}");
    assert!(calls.contains("rmdir /etc/keyward"), "{calls}");
    let calls = run_scriptlet(&stubs, "postun", "1", true);
    assert!(
        !calls.contains("rm "),
        "an upgrade keeps the cache: {calls}"
    );
    for calls in [
        run_scriptlet(&stubs, "post", "1", false),
        run_scriptlet(&stubs, "postun", "0", false),
    ] {
        assert!(
            !calls.contains("/etc/ssh") && !calls.contains("/etc/pam.d"),
            "{calls}"
        );
    }
}

/// Every member of a systemd syscall group, nested groups expanded.
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let text = must_out("systemd-analyze", &["syscall-filter", "--no-pager", group]);
    let mut set = std::collections::BTreeSet::new();
    for line in text.lines().skip(1) {
        let word = line.split_whitespace().next().unwrap_or("");
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        if word.starts_with('@') {
            set.extend(syscall_group(word));
        } else {
            set.insert(word.to_owned());
        }
    }
    set
}

/// The unit's SystemCallFilter (`@system-service`, minus `@privileged` and
/// `@resources`) allows every system call `keyward sync` makes: traced with
/// strace while it refreshes a cache (304s and a 200) as the keyward user.
/// There is no systemd here to run the unit itself.
#[test]
fn sync_system_calls_pass_the_unit_filter() {
    assert!(
        Path::new("/usr/bin/strace").exists(),
        "this test needs strace (apt-get install strace)"
    );
    let dir = TestDir::new("sysc");
    let cache = dir.join("cache");
    crate::support::keyward::make_cache_dir(&cache, "keyward");
    let nginx = Nginx::start();
    let key = SshKey::ed25519(dir.path(), "k");
    for u in ["alice", "bob"] {
        nginx.put_keys(u, &format!("{}\n", key.public_line()));
    }
    let kw = crate::support::Keyward::with_config(
        &crate::support::KwConfig::new(&cache, Some(&dir.join("no-syslog"))).url(nginx.users_url()),
    );
    for u in ["alice", "bob"] {
        let out = kw.keys_as_keyward(u, None);
        assert!(out.success(), "{out}");
    }
    nginx.put_keys("bob", &format!("{}\n# changed\n", key.public_line()));
    let trace = dir.join("strace.txt");
    let out = run(
        Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&trace)
            .args([
                "setpriv",
                "--reuid=keyward",
                "--regid=keyward",
                "--clear-groups",
            ])
            .arg(&kw.bin)
            .arg("--config")
            .arg(&kw.config)
            .arg("sync"),
        Duration::from_secs(60),
    );
    assert!(out.success(), "sync under strace: {out}");
    let text = fs::read_to_string(&trace).unwrap();
    // Only what keyward itself calls: everything after it is exec'd.
    let exec = format!("execve(\"{}\"", kw.bin.display());
    let start = text.find(&exec).expect("execve of keyward in the trace");
    let used: std::collections::BTreeSet<String> = text[start..]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let rest = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let name = rest.split('(').next()?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect();
    assert!(
        used.contains("connect")
            && ["rename", "renameat", "renameat2"]
                .iter()
                .any(|r| used.contains(*r)),
        "the trace shows a fetch and an atomic replace: {used:?}"
    );
    let allowed = syscall_group("@system-service");
    let mut denied = syscall_group("@privileged");
    denied.extend(syscall_group("@resources"));
    let outside: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    let refused: Vec<&String> = used.iter().filter(|s| denied.contains(*s)).collect();
    assert!(
        outside.is_empty() && refused.is_empty(),
        "keyward sync uses system calls keyward-sync.service refuses: not in @system-service \
         {outside:?}, in ~@privileged/@resources {refused:?}"
    );
    eprintln!("keyward sync used {} system calls, all allowed", used.len());
}

/// The PAM module's directory comes from the target architecture in both
/// packages (no aarch64 toolchain here: package.sh's layout for each target,
/// and no architecture written into the package metadata).
#[test]
fn pam_module_path_follows_the_target_architecture() {
    for (triple, deb_arch, deb_pam, rpm_arch) in [
        (
            "x86_64-unknown-linux-gnu",
            "amd64",
            "/usr/lib/x86_64-linux-gnu/security/pam_keyward.so",
            "x86_64",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "arm64",
            "/usr/lib/aarch64-linux-gnu/security/pam_keyward.so",
            "aarch64",
        ),
    ] {
        let out = cmd_out(
            "bash",
            &[
                &format!("{REPO}/scripts/package.sh"),
                "--target",
                triple,
                "--print-layout",
            ],
        );
        assert!(out.success(), "{out}");
        for line in [
            format!("deb-arch: {deb_arch}"),
            format!("deb-pam: {deb_pam}"),
            format!("rpm-arch: {rpm_arch}"),
            "rpm-pam: /usr/lib64/security/pam_keyward.so".to_string(),
        ] {
            assert!(
                out.stdout.lines().any(|l| l == line),
                "{triple}: {line}: {out}"
            );
        }
    }
    let out = cmd_out(
        "bash",
        &[
            &format!("{REPO}/scripts/package.sh"),
            "--target",
            "i686-unknown-linux-gnu",
            "--print-layout",
        ],
    );
    assert!(
        !out.success() && out.stderr.contains("unsupported target"),
        "{out}"
    );
    let manifest = fs::read_to_string(Path::new(REPO).join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("x86_64-linux-gnu\""),
        "a hard-coded multiarch path in Cargo.toml"
    );
}
