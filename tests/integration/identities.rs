//! User names: every name NSS can present to sshd is served
//! (SSSD's `name@domain`, names longer than 32 bytes, upper case), hostile
//! names still fail closed, and names that a filesystem or a URL could fold
//! together never share a cache entry.
//!
//! Debian's useradd refuses `@` in some forms and anything over 32 bytes even
//! with `--badname`, so [`NssUser`] creates an ordinary test account and
//! renames its /etc/passwd and /etc/shadow lines under shadow-utils' own
//! lock (`lckpwdf`, which useradd/userdel/chpasswd take too), and renames it
//! back before the account is removed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::support::*;

extern "C" {
    fn lckpwdf() -> libc::c_int;
    fn ulckpwdf() -> libc::c_int;
}

/// lckpwdf is a per-process lock: threads of this process take turns here.
static RENAMES: Mutex<()> = Mutex::new(());

/// Renames the account `from` to `to` in /etc/passwd and /etc/shadow.
pub fn rename_account(from: &str, to: &str) {
    let _g = lock(&RENAMES);
    // SAFETY: lckpwdf/ulckpwdf take no arguments; lckpwdf waits up to 15 s.
    assert_eq!(
        unsafe { lckpwdf() },
        0,
        "lckpwdf: {}",
        std::io::Error::last_os_error()
    );
    let result = std::panic::catch_unwind(|| {
        for file in ["/etc/passwd", "/etc/shadow"] {
            let text = fs::read_to_string(file).unwrap();
            let mut hits = 0;
            let mut out = String::with_capacity(text.len() + to.len());
            for line in text.lines() {
                match line.split_once(':') {
                    Some((name, rest)) if name == from => {
                        hits += 1;
                        out += &format!("{to}:{rest}\n");
                    }
                    _ => {
                        out += line;
                        out += "\n";
                    }
                }
            }
            assert_eq!(hits, 1, "{from} in {file}");
            // Same owner and mode, then rename over: readers (sshd's
            // getpwnam) see the old file or the new one.
            let meta = fs::metadata(file).unwrap();
            let tmp = format!("{file}.kwt{}", std::process::id());
            fs::write(&tmp, out).unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.mode() & 0o7777)).unwrap();
            std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())).unwrap();
            fs::rename(&tmp, file).unwrap();
        }
    });
    // SAFETY: as above.
    unsafe { ulckpwdf() };
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// A login account named `name` (anything /etc/passwd can hold), removed
/// when dropped: renamed back, then `userdel -r` by the inner TestUser.
pub struct NssUser {
    pub name: String,
    inner: TestUser,
}

impl NssUser {
    pub fn new(name: &str) -> NssUser {
        let inner = TestUser::new();
        rename_account(&inner.name, name);
        NssUser {
            name: name.to_owned(),
            inner,
        }
    }
}

impl Drop for NssUser {
    fn drop(&mut self) {
        rename_account(&self.name, &self.inner.name);
    }
}

/// An exclusive lock across processes (flock on a file under the test
/// root), for a fixed name several test runs on this machine could want.
struct ExclusiveName {
    _lock: fs::File,
}

impl ExclusiveName {
    fn take(what: &str) -> ExclusiveName {
        use std::os::fd::AsRawFd;
        mkdir_root_0755(std::path::Path::new(TEST_ROOT));
        let f = fs::File::create(format!("{TEST_ROOT}/.{what}.lock")).unwrap();
        // SAFETY: flock on a descriptor we own; released when it closes.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        ExclusiveName { _lock: f }
    }
}

/// A name unique to this run, padded with `l` to exactly `len` bytes.
fn long_name(len: usize) -> String {
    let base = format!("kwtlong{}x{}", unique(), std::process::id());
    format!("{base}{}", "l".repeat(len - base.len()))
}

fn sssd_name() -> String {
    format!("kwt{}x{}@corp.example.com", unique(), std::process::id())
}

/// nginx key directory + keyward + sshd running `keys %u %f`.
struct Stack {
    keys: TestDir,
    nginx: Nginx,
    env: KeysEnv,
    sshd: Sshd,
}

impl Stack {
    fn new() -> Stack {
        let keys = TestDir::new("idkeys");
        let nginx = Nginx::start();
        let url = nginx.users_url();
        let env = KeysEnv::new(|c| c.url(url).timeout("3s"));
        let sshd = Sshd::builder()
            .authorized_keys_command(&env.kw.authorized_keys_command())
            .authorized_keys_command_user("keyward")
            .start();
        Stack {
            keys,
            nginx,
            env,
            sshd,
        }
    }

    fn key(&self, name: &str) -> SshKey {
        SshKey::ed25519(self.keys.path(), name)
    }

    /// Logs in as `user` with `key` running `id -un`; asserts who it was.
    fn login(&self, user: &str, key: &SshKey) -> SshOut {
        let r = self.sshd.login(user, &key.path, "id -un");
        if r.ok {
            assert_eq!(r.stdout().trim(), user, "{r}");
        }
        r
    }

    /// keyward's lines for `user` so far.
    fn lines(&self, user: &str) -> Vec<crate::support::rsyslog::LogLine> {
        self.env
            .log
            .lines_of("keyward")
            .into_iter()
            .filter(|l| l.field("user").as_deref() == Some(user))
            .collect()
    }

    fn debug(&self) -> String {
        format!(
            "--- syslog ---\n{}--- sshd log ---\n{}",
            self.env.log.text(),
            self.sshd.log_text()
        )
    }

    /// The cache entry file of `user` (its encoded name).
    fn entry(&self, user: &str) -> PathBuf {
        self.env
            .cache
            .join(&*pam_keyward::username::file_name(user))
    }
}

#[test]
fn identities_sssd_and_long_names_log_in_with_keys() {
    let s = Stack::new();
    let sssd = NssUser::new(&sssd_name());
    let long = NssUser::new(&long_name(40));
    assert_eq!(long.name.len(), 40);
    for (u, k) in [(&sssd, "sssd"), (&long, "long")] {
        let key = s.key(k);
        s.nginx
            .put_keys(&u.name, &format!("{}\n", key.public_line()));
        let r = s.login(&u.name, &key);
        assert!(r.ok, "{} must log in: {r}\n{}", u.name, s.debug());
        s.env.log.wait_for(Duration::from_secs(10), |l| {
            l.field("user").as_deref() == Some(u.name.as_str())
                && l.field("decision").as_deref() == Some("match")
        });
        let decisions: Vec<String> = s
            .lines(&u.name)
            .iter()
            .filter_map(|l| l.field("decision"))
            .collect();
        assert!(decisions.iter().any(|d| d == "match"), "{decisions:?}");
        assert!(s.entry(&u.name).is_file(), "{}", u.name);
        // A key the directory does not list for this name does not.
        let other = s.key(&format!("{k}-other"));
        assert!(!s.login(&u.name, &other).ok, "{}", u.name);
    }
    // The directory was asked with the name percent-encoded.
    let uri = format!("/users/{}.keys", sssd.name.replace('@', "%40"));
    assert!(
        s.nginx
            .accesses()
            .iter()
            .any(|a| a.uri == uri && a.status == 200),
        "{uri} in {:?}",
        s.nginx.accesses()
    );
}

#[test]
fn identities_hostile_names_fail_closed_even_when_nss_knows_them() {
    let s = Stack::new();
    let key = s.key("dots");
    // What reaches keyward through ssh and sshd: ssh refuses control
    // characters and a leading '-' in a user name, and Debian's sshd cuts a
    // name at '/' (its SELinux `user/role` syntax) and ':' (`user:style`).
    // `..` passes both. Only one test process on the machine may hold it.
    let _excl = ExclusiveName::take("dotdot");
    let dots = NssUser::new("..");
    s.nginx
        .put("users/...keys", format!("{}\n", key.public_line()));
    let r = s.login(&dots.name, &key);
    assert!(!r.ok, "{r}");
    // sshd ran keyward (its log says so); rsyslog may write a moment later.
    s.env.log.wait_for(Duration::from_secs(10), |l| {
        l.program == "keyward" && l.field("user").as_deref() == Some("..")
    });
    let lines = s.lines("..");
    assert!(!lines.is_empty(), "sshd asked keyward: {}", s.debug());
    for l in &lines {
        l.assert_field("decision", "fail");
        assert!(
            l.field("reason")
                .unwrap_or_default()
                .contains("\".\" or \"..\""),
            "{}",
            l.raw
        );
    }
    drop(dots);
    assert_eq!(s.nginx.total(), 0, "no request for a refused name");
    // The rest of the unsafe set, straight to keyward (NSS cannot hold
    // some of them, ssh's command line cannot pass others).
    for n in [".", "..", "a\u{7}b", "a\u{9b}b", "a/b", "../etc/passwd"] {
        // (The log escapes control characters, so match on stderr's copy.)
        let out = s.env.kw.keys_as_keyward(n, None);
        assert_eq!(out.stdout, "", "{n:?}");
        assert_ne!(out.code, Some(0), "{n:?}");
        assert!(
            out.stderr.contains("decision=fail") && out.stderr.contains("invalid user name"),
            "{n:?}: {out}"
        );
    }
    assert_eq!(s.nginx.total(), 0);
    let names: Vec<String> = fs::read_dir(&s.env.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn identities_names_differing_only_in_case_have_their_own_entries() {
    let s = Stack::new();
    let base = format!("kwtfold{}x{}", unique(), std::process::id());
    let lower = NssUser::new(&base);
    let upper = NssUser::new(&base.to_uppercase());
    let (kl, ku) = (s.key("lower"), s.key("upper"));
    s.nginx
        .put_keys(&lower.name, &format!("{}\n", kl.public_line()));
    s.nginx
        .put_keys(&upper.name, &format!("{}\n", ku.public_line()));
    for round in ["directory", "cache"] {
        for (u, mine, theirs) in [(&lower, &kl, &ku), (&upper, &ku, &kl)] {
            let r = s.login(&u.name, mine);
            assert!(r.ok, "{round}: {} with its key: {r}\n{}", u.name, s.debug());
            assert!(
                !s.login(&u.name, theirs).ok,
                "{round}: {} with the other's key",
                u.name
            );
        }
    }
    let (el, eu) = (s.entry(&lower.name), s.entry(&upper.name));
    assert_ne!(el, eu);
    assert!(el.is_file() && eu.is_file());
    let upper_file = eu.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        !upper_file.bytes().any(|b| b.is_ascii_uppercase()),
        "nothing for a case-folding filesystem to merge: {upper_file}"
    );
    // The second round came from the cache: one request per user.
    assert_eq!(s.nginx.count(&lower.name), 1, "{:?}", s.nginx.accesses());
    assert_eq!(s.nginx.count(&upper.name), 1, "{:?}", s.nginx.accesses());
}

/// Pairs that case folding (vfat, NTFS, APFS, ext4 casefold), Unicode
/// normalisation (APFS, ZFS), trailing-dot stripping (vfat, NTFS) or URL
/// decoding could merge: each name keeps its own keys, from the directory
/// and again from the cache.
#[test]
fn identities_foldable_names_never_share_a_cache_entry() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let keys = TestDir::new("foldkeys");
    // `#` marks where a unique part goes (it must not hide the first or
    // last character the pair is about).
    let p = format!("kf{}x{}", unique(), std::process::id());
    let names: Vec<String> = [
        ("Alice#", "alice#"),
        ("#x%41", "#xA"),
        ("#x%2e", "#x."),
        ("#x.", "#x"),
        (".x#", "%2ex#"),
        ("#\u{e9}", "#e\u{301}"),
        ("#\u{212a}", "#K"),
        ("#a b", "#a+b"),
    ]
    .iter()
    .flat_map(|(a, b)| [a.replace('#', &p), b.replace('#', &p)])
    .collect();
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    let names = uniq;
    let mut key_of = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let k = SshKey::ed25519(keys.path(), &format!("k{i}"));
        nginx.put_keys(n, &format!("{}\n", k.public_line()));
        key_of.push(k);
    }
    for round in ["directory", "cache"] {
        for (n, k) in names.iter().zip(&key_of) {
            let r = env.keys_as_keyward(n, None);
            assert_eq!(
                r.materials(),
                vec![k.public_material()],
                "{round} {n:?}: {r}"
            );
            assert_eq!(r.field("source").as_deref(), Some(round), "{n:?}: {r}");
        }
    }
    let mut files: Vec<String> = fs::read_dir(&env.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), names.len(), "{files:?}");
    let mut folded: Vec<String> = files.iter().map(|f| f.to_lowercase()).collect();
    folded.sort();
    folded.dedup();
    assert_eq!(
        folded.len(),
        names.len(),
        "distinct after folding: {files:?}"
    );
    assert!(files
        .iter()
        .all(|f| f.is_ascii() && !f.starts_with('.') && !f.ends_with('.')));
    // sync finds every one of them again (it reads the names back).
    let out = env.kw.run_as("keyward", &["sync"]);
    assert!(out.success(), "{out}");
    let l = env
        .log
        .wait_for(Duration::from_secs(10), |l| {
            l.field("decision").as_deref() == Some("sync")
        })
        .expect("sync line");
    assert_eq!(l.field("users"), Some(names.len().to_string()), "{}", l.raw);
    l.assert_field("failed", "0");
}

#[test]
fn identities_max_username_len_is_configurable() {
    let env = KeysEnv::new(|c| {
        let mut c = c.url("http://127.0.0.1:9/users/{user}.keys");
        c.max_username_len = Some(40);
        c
    });
    let r = env.keys_as_keyward(&"a".repeat(41), None);
    assert_eq!(r.decision(), "fail", "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("longer than 40 bytes"),
        "{r}"
    );
    // 40 bytes is within the limit: refused only because the directory is down.
    let r = env.keys_as_keyward(&"a".repeat(40), None);
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("directory unavailable"),
        "{r}"
    );
}

/// An upgrade from the POSIX-only names: a rollback floor stored under the
/// old file name (`.floor/Alice`, now `%41lice`) still holds.
#[test]
fn identities_a_floor_under_the_old_file_name_still_refuses_a_rollback() {
    use pam_keyward::state::Floor;
    let nginx = Nginx::start();
    let keys = TestDir::new("legacyfloor");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let k = SshKey::ed25519(keys.path(), "k");
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s"));
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            crate::support::keyward::toml_str(&signer.public_line())
        ),
        1,
    );
    env.kw.write_config(&toml);
    let user = format!("Kwt{}x{}", unique(), std::process::id());
    // An old, validly signed file (serial 100) the directory serves again.
    let expires = "2099-01-01T00:00:00Z";
    let body = format!(
        "#keyward user={user} serial=100 expires={expires}\n{}\n",
        k.public_line()
    );
    let src = keys.write("tosign", &body, 0o644);
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
            .arg(&signer.path)
            .arg(&src),
    );
    nginx.put_keys(&user, &body);
    nginx.put(
        &format!("users/{user}.keys.sig"),
        fs::read(format!("{}.sig", src.display())).unwrap(),
    );
    // The floor an older keyward wrote: serial 200, under the raw name.
    let floor_dir = env.cache.join(".floor");
    fs::create_dir_all(&floor_dir).unwrap();
    chown_to(&floor_dir, "keyward");
    chmod(&floor_dir, 0o750);
    let floor = floor_dir.join(&user);
    fs::write(&floor, Floor::of(200, "newer file").encode()).unwrap();
    chown_to(&floor, "keyward");
    chmod(&floor, 0o640);
    assert_ne!(&*pam_keyward::username::file_name(&user), user.as_str());

    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.decision(), "fail", "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("rollback refused"),
        "{r}"
    );
    assert_eq!(r.out.stdout, "");
}
