//! Robustness (issue 7): keyward on the login path under directory faults,
//! local faults, hostile input and concurrency, against real components
//! (nginx, sshd, rsyslog) on 127.0.0.1.
//!
//! What every test here holds keyward to:
//! - it never locks out a user because of a transient fault while a good
//!   cache entry is younger than `max_stale` (served stale, with a warning);
//! - without such an entry it fails closed (exit 1, nothing on stdout),
//!   within its own time budget, never sshd's LoginGraceTime;
//! - nothing is lost: a fault never damages a good cache entry, never
//!   leaves a `.tmp-` file;
//! - hostile input touches no path and no URL, and never reaches sshd;
//! - exactly one decision line per invocation, with a reason.
//!
//! The fault matrix and the concurrency counts are written to
//! `$CARGO_TARGET_TMPDIR/robustness/*.md` on every run, and into
//! `docs/ROBUSTNESS.md` (between markers) when `KEYWARD_ROBUSTNESS_DOC=1`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pam_keyward::cache::Entry;

use crate::support::fault::dead_url;
use crate::support::rsyslog::LogLine;
use crate::support::*;

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

/// `.tmp-*` files left in a cache directory.
fn tmp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every name in a directory.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Puts `bytes` at `path` (rename over), owned by keyward, 0640: what
/// keyward itself would have written.
fn plant_entry(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".plant-{}", unique()));
    fs::write(&tmp, bytes).unwrap();
    chown_to(&tmp, "keyward");
    chmod(&tmp, 0o640);
    fs::rename(&tmp, path).unwrap();
}

fn decode(bytes: &[u8]) -> Entry {
    Entry::decode(bytes).unwrap_or_else(|e| panic!("cache entry does not decode: {e}"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until `fetched_at` is at least `secs` seconds in the past.
fn age_past(fetched_at: u64, secs: u64) {
    while now_s() < fetched_at + secs {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `f`, then returns its result and the keyward syslog lines it caused
/// (waiting for at least `min` of them).
fn logged<T>(log: &Rsyslog, min: usize, f: impl FnOnce() -> T) -> (T, Vec<LogLine>) {
    let before = log.lines_of("keyward").len();
    let t = f();
    let lines = log.wait_for_n(before + min, Duration::from_secs(10), |l| {
        l.program == "keyward"
    });
    (t, lines.into_iter().skip(before).collect())
}

fn field(l: &LogLine, k: &str) -> String {
    l.field(k).unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn mats(keys: &[&SshKey]) -> Vec<String> {
    sorted(keys.iter().map(|k| k.public_material()).collect())
}

fn body(keys: &[&SshKey]) -> String {
    keys.iter().map(|k| k.public_line() + "\n").collect()
}

/// No panic message, no signal death: the process ended on its own terms.
fn no_crash(out: &Out, what: &str) {
    assert!(
        matches!(out.code, Some(0..=2)),
        "{what}: unexpected exit (panic/signal?): {out}"
    );
    assert!(!out.stderr.contains("panicked"), "{what}: panic: {out}");
}

/// A failure that is fail-closed: exit 1, nothing on stdout.
fn closed(out: &Out, what: &str) {
    assert_eq!(out.code, Some(1), "{what}: must fail closed: {out}");
    assert_eq!(out.stdout, "", "{what}: fail closed prints nothing: {out}");
    no_crash(out, what);
}

/// Writes a generated section to `$CARGO_TARGET_TMPDIR/robustness/` and,
/// with `KEYWARD_ROBUSTNESS_DOC=1`, into docs/ROBUSTNESS.md between
/// `<!-- BEGIN section -->` and `<!-- END section -->`.
fn publish(section: &str, text: &str) {
    static DOC: Mutex<()> = Mutex::new(());
    let _g = lock(&DOC);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("robustness");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{section}.md")), text).unwrap();
    println!("{text}");
    if std::env::var_os("KEYWARD_ROBUSTNESS_DOC").is_some() {
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ROBUSTNESS.md");
        let old = fs::read_to_string(&doc).unwrap();
        let (begin, end) = (
            format!("<!-- BEGIN {section} -->"),
            format!("<!-- END {section} -->"),
        );
        let (Some(b), Some(e)) = (old.find(&begin), old.find(&end)) else {
            panic!("{} has no {begin} … {end} markers", doc.display());
        };
        let new = format!("{}{begin}\n{text}{}", &old[..b], &old[e..]);
        fs::write(&doc, new).unwrap();
    }
}

/// A self-signed certificate for 127.0.0.1 (a leaf, usable as its own
/// trust anchor): `openssl req -x509`.
fn self_signed_cert(dir: &TestDir) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    must(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    chmod(&cert, 0o644);
    (cert, key)
}

fn mkfifo(path: &Path) {
    must(Command::new("mkfifo").arg("-m").arg("0640").arg(path));
}

/// A private sshd in its own mount namespace where `/etc/resolv.conf` names
/// 127.0.0.1 only: the DNS fault never sends a query off this machine. The
/// machine's own file is untouched (the bind mount exists only inside).
fn ns_sshd(dir: &TestDir, command: &str) -> Sshd {
    let resolv = dir.write(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        0o644,
    );
    Sshd::builder()
        .authorized_keys_command(command)
        .set("LoginGraceTime", "120")
        .set("PasswordAuthentication", "no")
        .set("KbdInteractiveAuthentication", "no")
        .bind(&resolv, "/etc/resolv.conf")
        .start()
}

/// A small tmpfs mounted over a directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str, owner: &str) -> Tmpfs {
        let (uid, gid) = user_ids(owner).unwrap();
        must(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0750,uid={uid},gid={gid}"))
                .arg("tmpfs")
                .arg(path),
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem with a hidden file until ENOSPC.
    fn fill(&self) {
        let mut f = fs::File::create(self.path.join(".filler")).unwrap();
        let chunk = [0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        // the last page may take a smaller write
        while f.write_all(&chunk[..1]).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = run(
            Command::new("umount").arg(&self.path),
            Duration::from_secs(30),
        );
        if !out.success() {
            let _ = run(
                Command::new("umount").arg("-l").arg(&self.path),
                Duration::from_secs(30),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Fault matrix: nginx + fault servers + sshd, with and without a cache
// ---------------------------------------------------------------------------

/// The directory timeout of the matrix (seconds).
const BUDGET: u64 = 2;

struct Fault {
    name: &'static str,
    url: String,
    ca_file: Option<PathBuf>,
    /// Lower-case words, one of which the logged reason must contain.
    says: &'static [&'static str],
}

struct Row {
    fault: &'static str,
    cached: bool,
    ok: bool,
    login: Duration,
    answers: String,
    logged: String,
    kw_ms: f64,
}

fn answers(lines: &[LogLine]) -> String {
    let mut v: Vec<String> = Vec::new();
    for l in lines {
        let mut a = field(l, "decision");
        if let Some(s) = l.field("source") {
            a = format!("{a}/{s}");
        }
        v.push(a);
    }
    // "match/stale ×2"
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let n = v[i..].iter().take_while(|x| **x == v[i]).count();
        out.push(if n > 1 {
            format!("{} ×{n}", v[i])
        } else {
            v[i].clone()
        });
        i += n;
    }
    out.join(", ")
}

fn max_ms(lines: &[LogLine]) -> f64 {
    lines
        .iter()
        .filter_map(|l| l.field("ms")?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn robust_fault_matrix_sshd_serves_stale_or_fails_closed_within_budget() {
    let keys = TestDir::new("robust-matrix-keys");
    let k = SshKey::ed25519(keys.path(), "k");
    let evil = SshKey::ed25519(keys.path(), "evil");
    let good_body = body(&[&k]);
    let (cert, cert_key) = self_signed_cert(&keys);
    let tls_port = free_port();

    // Where the redirect points: a server that would hand out another key.
    let elsewhere = FaultServer::raw(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        evil.public_line().len() + 1,
        evil.public_line() + "\n"
    ));
    let nginx = Nginx::builder()
        .server_line(&format!("listen 127.0.0.1:{tls_port} ssl;"))
        .server_line(&format!("ssl_certificate {};", cert.display()))
        .server_line(&format!("ssl_certificate_key {};", cert_key.display()))
        .location("location ^~ /err/ { return 500; }")
        .location("location ^~ /html/ { types { } default_type text/html; }")
        .location(&format!(
            "location ~ ^/moved/(.*)$ {{ return 302 http://127.0.0.1:{}/users/$1; }}",
            elsewhere.port
        ))
        .start();
    let hole = FaultServer::black_hole();
    let drip = FaultServer::slow_drip(Duration::from_millis(100), &good_body);
    let trunc = FaultServer::truncated(2000, &good_body);

    // Each row measures what one lookup does with its fault, so mirror
    // health (a failed mirror is skipped for a while; outage.rs tests it)
    // must not turn the second lookup into a skip: every lookup is due.
    let mut env = KeysEnv::new(|c| {
        c.url(nginx.users_url())
            .ttl("1s")
            .max_stale("1h")
            .timeout(&format!("{BUDGET}s"))
            .max_bytes(4096)
            .retry_interval("1ms")
    });
    let user = TestUser::new();
    let name = user.name.clone();
    nginx.put_keys(&name, &good_body);
    nginx.put(
        &format!("html/{name}.keys"),
        "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body><form>Wi-Fi login</form></body></html>\n",
    );
    let mut big = good_body.clone();
    while big.len() < 8192 {
        big.push_str("# padding to exceed max_bytes ...................................\n");
    }
    nginx.put(&format!("big/{name}.keys"), &big);

    let sshd_dir = TestDir::new("robust-sshd");
    let sshd = ns_sshd(&sshd_dir, &env.kw.authorized_keys_command());
    let debug = |sshd: &Sshd, env: &KeysEnv| {
        format!(
            "--- syslog ---\n{}--- sshd ---\n{}",
            env.log.text(),
            sshd.log_text()
        )
    };

    // Warm-up through the real path: the good entry.
    let (r, _) = logged(&env.log, 1, || sshd.login(&name, &k.path, "id -un"));
    assert!(r.ok, "warm-up login: {r}\n{}", debug(&sshd, &env));
    let entry = env.entry(&name);
    let good = fs::read(&entry).expect("warm-up wrote the cache entry");
    let good_entry = decode(&good);
    assert_eq!(good_entry.body, good_body);
    age_past(good_entry.fetched_at, 1); // stale from here on (ttl 1s)

    let tls_url = format!("https://127.0.0.1:{tls_port}/users/{{user}}.keys");
    let faults = vec![
        Fault {
            name: "connection refused (dead port)",
            url: dead_url(),
            ca_file: None,
            says: &["refused", "connection failed"],
        },
        Fault {
            name: "black hole (accepts, never answers)",
            url: hole.users_url(),
            ca_file: None,
            says: &["timed out", "timeout"],
        },
        Fault {
            name: "slow drip (1 byte / 100 ms)",
            url: drip.users_url(),
            ca_file: None,
            says: &["timed out", "timeout"],
        },
        Fault {
            name: "HTTP 500 (nginx `return 500`)",
            url: nginx.url("/err/{user}.keys"),
            ca_file: None,
            says: &["http 500"],
        },
        Fault {
            name: "200 with text/html (captive portal)",
            url: nginx.url("/html/{user}.keys"),
            ca_file: None,
            says: &["html"],
        },
        Fault {
            name: "truncated body (Content-Length 2000, then close)",
            url: trunc.users_url(),
            ca_file: None,
            says: &["reading body", "eof", "incomplete", "closed"],
        },
        Fault {
            name: "oversize body (8 KiB > max_bytes 4096)",
            url: nginx.url("/big/{user}.keys"),
            ca_file: None,
            says: &["max_bytes"],
        },
        Fault {
            name: "302 redirect to another server",
            url: nginx.url("/moved/{user}.keys"),
            ca_file: None,
            says: &["redirect"],
        },
        Fault {
            name: "TLS, self-signed certificate, no ca_file",
            url: tls_url.clone(),
            ca_file: None,
            says: &["certificate", "unknownissuer", "tls"],
        },
        Fault {
            name: "DNS name that cannot resolve (keys.invalid)",
            url: "http://keys.invalid:1/{user}.keys".into(),
            ca_file: None,
            says: &["host not found", "resolve", "lookup", "name"],
        },
    ];

    let budget = Duration::from_secs(BUDGET);
    let mut rows = Vec::new();
    for f in &faults {
        env.reconfigure(|c| KwConfig {
            urls: vec![f.url.clone()],
            ca_file: f.ca_file.clone(),
            ..c
        });
        let url = f.url.replace("{user}", &name);
        let short = |s: String| s.replace(&url, "<url>");
        let says = |s: &str| {
            let s = s.to_lowercase();
            f.says.iter().any(|w| s.contains(w))
        };

        // A: a good entry, older than ttl: served stale, login works.
        plant_entry(&entry, &good);
        let (r, lines) = logged(&env.log, 1, || sshd.login(&name, &k.path, "id -un"));
        let ctx = format!("{} (cached): {r}\n{}", f.name, debug(&sshd, &env));
        assert!(r.ok, "stale entry must keep the user in: {ctx}");
        assert!(!lines.is_empty(), "{ctx}");
        for l in &lines {
            assert_eq!(field(l, "decision"), "match", "{}\n{ctx}", l.raw);
            assert_eq!(field(l, "source"), "stale", "{}\n{ctx}", l.raw);
            let w = field(l, "warning");
            assert!(
                w.contains("directory unavailable") && says(&w),
                "warning must say why ({:?}): {}\n{ctx}",
                f.says,
                l.raw
            );
            let ms: f64 = field(l, "ms").parse().unwrap();
            assert!(
                ms < (BUDGET * 1000 + 1500) as f64,
                "one invocation must stay within the budget: {}",
                l.raw
            );
        }
        assert!(
            r.out.elapsed < budget * lines.len() as u32 + Duration::from_secs(5),
            "login bounded by the budget, not LoginGraceTime: {ctx}"
        );
        assert_eq!(
            fs::read(&entry).unwrap(),
            good,
            "the good entry must survive byte-identical: {ctx}"
        );
        assert_eq!(tmp_files(&env.cache), Vec::<String>::new(), "{ctx}");
        rows.push(Row {
            fault: f.name,
            cached: true,
            ok: r.ok,
            login: r.out.elapsed,
            answers: answers(&lines),
            logged: short(field(&lines[0], "warning")),
            kw_ms: max_ms(&lines),
        });

        // B: nothing cached: fail closed, quickly.
        fs::remove_file(&entry).unwrap();
        let (r, lines) = logged(&env.log, 1, || sshd.login(&name, &k.path, "id -un"));
        let ctx = format!("{} (no cache): {r}\n{}", f.name, debug(&sshd, &env));
        assert!(!r.ok, "no entry and no directory: refused: {ctx}");
        assert!(!lines.is_empty(), "{ctx}");
        for l in &lines {
            assert_eq!(field(l, "decision"), "fail", "{}\n{ctx}", l.raw);
            let why = field(l, "reason");
            assert!(
                why.contains("nothing cached") && says(&why),
                "reason must say why ({:?}): {}\n{ctx}",
                f.says,
                l.raw
            );
        }
        assert!(
            r.out.elapsed < budget + Duration::from_secs(5),
            "refusal bounded by the budget: {ctx}"
        );
        assert!(!entry.exists(), "a fault must not create an entry: {ctx}");
        assert_eq!(tmp_files(&env.cache), Vec::<String>::new(), "{ctx}");
        rows.push(Row {
            fault: f.name,
            cached: false,
            ok: r.ok,
            login: r.out.elapsed,
            answers: answers(&lines),
            logged: short(field(&lines[0], "reason")),
            kw_ms: max_ms(&lines),
        });
    }
    assert_eq!(
        elsewhere.connections(),
        0,
        "the redirect target must never be contacted"
    );
    assert!(hole.connections() >= 2 && trunc.connections() >= 2);
    assert!(drip.connections() >= 2);

    // Control: the same TLS server with ca_file = its certificate works,
    // and a successful fetch is the only thing that refreshes the entry.
    env.reconfigure(|c| KwConfig {
        urls: vec![tls_url.clone()],
        ca_file: Some(cert.clone()),
        ..c
    });
    let tls_name = "TLS, self-signed certificate, ca_file = that certificate";
    plant_entry(&entry, &good);
    let (r, lines) = logged(&env.log, 1, || sshd.login(&name, &k.path, "id -un"));
    let ctx = format!("{tls_name}: {r}\n{}", debug(&sshd, &env));
    assert!(r.ok, "{ctx}");
    assert_eq!(field(&lines[0], "source"), "directory", "{ctx}");
    let now = decode(&fs::read(&entry).unwrap());
    assert_eq!(now.body, good_body, "{ctx}");
    assert!(now.fetched_at > good_entry.fetched_at, "refreshed: {ctx}");
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
    rows.push(Row {
        fault: tls_name,
        cached: true,
        ok: r.ok,
        login: r.out.elapsed,
        answers: answers(&lines),
        logged: field(&lines[0], "warning"),
        kw_ms: max_ms(&lines),
    });
    fs::remove_file(&entry).unwrap();
    let (r, lines) = logged(&env.log, 1, || sshd.login(&name, &k.path, "id -un"));
    let ctx = format!("{tls_name} (no cache): {r}\n{}", debug(&sshd, &env));
    assert!(r.ok, "{ctx}");
    assert_eq!(decode(&fs::read(&entry).unwrap()).body, good_body);
    rows.push(Row {
        fault: tls_name,
        cached: false,
        ok: r.ok,
        login: r.out.elapsed,
        answers: answers(&lines),
        logged: field(&lines[0], "warning"),
        kw_ms: max_ms(&lines),
    });

    let mut t = format!(
        "Directory timeout {BUDGET}s, ttl 1s, max_stale 1h, max_bytes 4096; sshd 9.2 \
         (LoginGraceTime 120) runs `keyward keys %u %f` as `keyward`; one ed25519 key offered. \
         \"Cached\" = a good entry older than ttl; sshd runs keyward once per offered key and \
         again for the accepted one, so a successful login shows two decisions. \
         `<url>` stands for the mirror URL.\n\n\
         | Fault | Good entry cached | Login | Login time | keyward answered (decision/source) | keyward ms (max) | Logged warning / reason |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for r in &rows {
        t += &format!(
            "| {} | {} | {} | {} ms | {} | {:.0} | {} |\n",
            r.fault,
            if r.cached { "yes" } else { "no" },
            if r.ok { "accepted" } else { "refused" },
            r.login.as_millis(),
            r.answers,
            r.kw_ms,
            if r.logged.is_empty() {
                "—".into()
            } else {
                r.logged.replace('|', "\\|")
            }
        );
    }
    publish("fault-matrix", &t);
}

// ---------------------------------------------------------------------------
// 2. Local faults
// ---------------------------------------------------------------------------

#[test]
fn robust_cache_dir_not_writable_keys_still_answer_from_the_directory() {
    let keys = TestDir::new("robust-ro-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    for (label, owner, mode) in [
        ("keyward-owned, mode 0550", "keyward", 0o550),
        ("root-owned, mode 0755", "root", 0o755),
    ] {
        let (cached, fresh) = (fake_user(), fake_user());
        nginx.put_keys(&cached, &body(&[&a]));
        let r = env.keys_as_keyward(&cached, None);
        assert_eq!(r.materials(), mats(&[&a]), "{label}: {r}");
        let good = fs::read(env.entry(&cached)).unwrap();

        chown_to(&env.cache, owner);
        chmod(&env.cache, mode);
        // the directory changed meanwhile: keyward serves the new answer,
        // cannot store it, says so, and leaves the old entry alone
        nginx.put_keys(&cached, &body(&[&a, &b]));
        nginx.put_keys(&fresh, &body(&[&b]));
        age_past(decode(&good).fetched_at, 1);
        for as_keyward in [true, false] {
            let r = if as_keyward {
                env.keys_as_keyward(&cached, None)
            } else {
                env.keys(&cached, None)
            };
            assert_eq!(r.out.code, Some(0), "{label}: {r}");
            assert_eq!(sorted(r.materials()), mats(&[&a, &b]), "{label}: {r}");
            assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
            assert!(
                r.field("warning")
                    .is_some_and(|w| w.contains("cache not updated")),
                "{label}: the admin is told: {r}"
            );
            assert_eq!(fs::read(env.entry(&cached)).unwrap(), good, "{label}");

            let r = env.keys_as_keyward(&fresh, Some(&b.fingerprint()));
            assert_eq!(r.out.code, Some(0), "{label}: {r}");
            assert_eq!(r.materials(), mats(&[&b]), "{label}: {r}");
            assert_eq!(r.decision(), "match", "{r}");
            assert!(
                r.field("warning")
                    .is_some_and(|w| w.contains("cache not updated")),
                "{label}: {r}"
            );
            assert!(!env.entry(&fresh).exists(), "{label}");
        }
        // sync cannot store either: reports it, changes nothing
        let out = env.kw.run_as("keyward", &["sync"]);
        no_crash(&out, label);
        assert_eq!(
            out.code,
            Some(1),
            "{label}: sync must report failure: {out}"
        );
        assert_eq!(fs::read(env.entry(&cached)).unwrap(), good, "{label}");
        assert_eq!(tmp_files(&env.cache), Vec::<String>::new(), "{label}");

        chown_to(&env.cache, "keyward");
        chmod(&env.cache, 0o750);
    }
}

#[test]
fn robust_disk_full_cache_still_answers_and_leaves_no_temp_files() {
    let keys = TestDir::new("robust-full-keys");
    let (a, b, c) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
        SshKey::ed25519(keys.path(), "c"),
    );
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|cf| cf.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    // declared after env: unmounted before env's directory is removed
    let disk = Tmpfs::mount(&env.cache, "64k", "keyward");
    let md = fs::metadata(&env.cache).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750);

    let (old, new) = (fake_user(), fake_user());
    nginx.put_keys(&old, &body(&[&a]));
    let r = env.keys_as_keyward(&old, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let good = fs::read(env.entry(&old)).unwrap();

    disk.fill();
    let probe = fs::write(env.cache.join(".probe"), [0u8; 4096]);
    assert!(probe.is_err(), "the tmpfs should be full");
    let _ = fs::remove_file(env.cache.join(".probe"));

    // a user never cached: answered from the directory, not stored
    nginx.put_keys(&new, &body(&[&b]));
    let r = env.keys_as_keyward(&new, None);
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.materials(), mats(&[&b]), "{r}");
    let w = r.field("warning").unwrap_or_default();
    assert!(
        w.contains("cache not updated") && w.contains("No space left"),
        "{r}"
    );
    assert!(!env.entry(&new).exists());
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());

    // a stale user whose keys changed: the new answer is served, the old
    // entry stays intact (never half-replaced)
    nginx.put_keys(&old, &body(&[&a, &c]));
    age_past(decode(&good).fetched_at, 1);
    let r = env.keys(&old, Some(&c.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(r.materials(), mats(&[&c]), "{r}");
    assert!(r
        .field("warning")
        .is_some_and(|w| w.contains("cache not updated")));
    assert_eq!(fs::read(env.entry(&old)).unwrap(), good);
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());

    // directory down too: the intact old entry is served stale
    env.reconfigure(|cf| KwConfig {
        urls: vec![dead_url()],
        ..cf
    });
    let r = env.keys_as_keyward(&old, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");

    // sync on a full disk: fails, reports, leaves nothing behind
    env.reconfigure(|cf| KwConfig {
        urls: vec![nginx.users_url()],
        ..cf
    });
    let out = env.kw.run_as("keyward", &["sync"]);
    no_crash(&out, "sync on a full disk");
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(fs::read(env.entry(&old)).unwrap(), good);
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
    drop(disk);
}

#[test]
fn robust_truncated_and_corrupt_cache_entries_are_never_served() {
    let keys = TestDir::new("robust-corrupt-keys");
    let (a, evil) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "evil"),
    );
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m").max_stale("1h"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let entry = env.entry(&user);
    let good = fs::read(&entry).unwrap();
    let sep = good.windows(2).position(|w| w == b"\n\n").unwrap();

    // the same body length, the evil key instead of the good one: only the
    // checksum can tell
    let swapped = String::from_utf8(good.clone())
        .unwrap()
        .replace(&a.public_material(), &evil.public_material())
        .into_bytes();
    assert_eq!(swapped.len(), good.len());
    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x01;
    let lied_length = String::from_utf8(good.clone())
        .unwrap()
        .replacen("length ", "length 1", 1)
        .into_bytes();
    let future = {
        let mut e = decode(&good);
        e.fetched_at = now_s() + 86_400;
        e.encode()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", Vec::new()),
        ("header only", good[..sep + 2].to_vec()),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("last byte missing", good[..good.len() - 1].to_vec()),
        ("one bit flipped in the body", flipped),
        ("evil key swapped in, same length", swapped),
        ("length field lies", lied_length),
        (
            "garbage",
            b"\x00\xff\xfekeyward\n\nssh-ed25519 AAAA".to_vec(),
        ),
        ("fetched_at in the future", future),
    ];
    for (what, bytes) in &cases {
        // directory reachable: refetched, the good key served
        plant_entry(&entry, bytes);
        let before = nginx.count(&user);
        let r = env.keys(&user, None);
        assert_eq!(r.out.code, Some(0), "{what}: {r}");
        assert_eq!(r.materials(), mats(&[&a]), "{what}: {r}");
        assert_eq!(
            r.field("source").as_deref(),
            Some("directory"),
            "{what}: {r}"
        );
        assert_eq!(nginx.count(&user), before + 1, "{what}: refetched");
        if *what != "fetched_at in the future" {
            assert!(
                r.field("warning").is_some_and(|w| w.contains("corrupt")),
                "{what}: the corruption is logged: {r}"
            );
        }
        let now = decode(&fs::read(&entry).unwrap());
        assert!(now.body.contains(&a.public_material()), "{what}: repaired");
    }
    // directory down: a corrupt entry is never served, the lookup fails closed
    env.reconfigure(|c| KwConfig {
        urls: vec![dead_url()],
        ..c
    });
    for (what, bytes) in &cases {
        plant_entry(&entry, bytes);
        let r = env.keys(&user, Some(&evil.fingerprint()));
        closed(&r.out, what);
        assert_eq!(r.decision(), "fail", "{what}: {r}");
        assert!(!r.out.stdout.contains(&evil.public_material()));
        assert_eq!(fs::read(&entry).unwrap(), *bytes, "{what}: left for sync");
    }
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
}

#[test]
fn robust_cache_entry_symlink_fifo_or_directory_is_refused_quickly() {
    let keys = TestDir::new("robust-link-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m").timeout("2s"));
    let (alice, bob) = (fake_user(), fake_user());
    nginx.put_keys(&alice, &body(&[&a]));
    nginx.put_keys(&bob, &body(&[&b]));
    for u in [&alice, &bob] {
        assert_eq!(env.keys_as_keyward(u, None).out.code, Some(0));
    }
    let bob_entry = fs::read(env.entry(&bob)).unwrap();
    let entry = env.entry(&alice);

    // alice -> bob: following it would hand bob's keys to alice
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&bob, &entry).unwrap();
    let r = env.keys_as_keyward(&alice, Some(&b.fingerprint()));
    closed(&r.out, "symlinked entry");
    let why = r.field("reason").unwrap_or_default();
    assert!(
        why.contains("symbolic link") && why.contains(&entry.display().to_string()),
        "{r}"
    );
    assert!(!r.out.stdout.contains(&b.public_material()));
    // as root (keyward drops to the keyward user first) the same
    let r = env.keys(&alice, None);
    closed(&r.out, "symlinked entry, as root");
    // a symlink to a file outside the cache
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &entry).unwrap();
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "symlink to /etc/passwd");
    assert!(r
        .field("reason")
        .unwrap_or_default()
        .contains("symbolic link"));

    // a FIFO nobody writes to: refused at once, never blocks
    fs::remove_file(&entry).unwrap();
    mkfifo(&entry);
    chown_to(&entry, "keyward");
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "FIFO entry");
    assert!(
        r.out.elapsed < Duration::from_secs(3),
        "a FIFO must not block: {r}"
    );
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("not a regular file"),
        "{r}"
    );

    // a directory
    fs::remove_file(&entry).unwrap();
    fs::create_dir(&entry).unwrap();
    chown_to(&entry, "keyward");
    chmod(&entry, 0o750);
    let r = env.keys_as_keyward(&alice, None);
    closed(&r.out, "directory entry");
    assert!(r
        .field("reason")
        .unwrap_or_default()
        .contains("not a regular file"));

    // sync walks the same cache: it neither hangs nor follows anything
    fs::remove_dir(&entry).unwrap();
    mkfifo(&entry);
    let link = env.entry(&fake_user());
    std::os::unix::fs::symlink(&bob, &link).unwrap();
    let out = env.kw.run_as("keyward", &["sync"]);
    no_crash(&out, "sync over a FIFO and a symlink");
    assert!(out.elapsed < Duration::from_secs(10), "{out}");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(&entry).unwrap().file_type().is_fifo());
    assert_eq!(
        decode(&fs::read(env.entry(&bob)).unwrap()).body,
        decode(&bob_entry).body
    );
    assert_eq!(tmp_files(&env.cache), Vec::<String>::new());
}

#[test]
fn robust_unreadable_or_unsafe_config_fails_closed_and_names_the_file() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let good = env.config.to_toml();
    let cfg = env.kw.config.clone();
    let cfgs = cfg.display().to_string();
    let user = fake_user();
    let check = |what: &str, out: &Out, needles: &[&str]| {
        closed(out, what);
        assert!(
            out.stderr.contains("decision=fail"),
            "{what}: the decision line (stderr copy): {out}"
        );
        for n in needles {
            assert!(out.stderr.contains(n), "{what}: must mention {n:?}: {out}");
        }
        assert!(out.elapsed < Duration::from_secs(5), "{what}: {out}");
    };

    chmod(&cfg, 0o664);
    check(
        "group-writable",
        &env.kw.keys(&user, None),
        &[&cfgs, "0664"],
    );
    chmod(&cfg, 0o602);
    check(
        "world-writable",
        &env.kw.keys(&user, None),
        &[&cfgs, "0602"],
    );
    chmod(&cfg, 0o600);
    check(
        "unreadable by keyward",
        &env.kw.keys_as_keyward(&user, None),
        &[&cfgs, "Permission denied"],
    );
    env.kw.write_config(&good);

    fs::remove_file(&cfg).unwrap();
    check(
        "missing",
        &env.kw.keys(&user, None),
        &[&cfgs, "No such file"],
    );

    let real = env.kw.dir.join("real.toml");
    fs::write(&real, &good).unwrap();
    std::os::unix::fs::symlink(&real, &cfg).unwrap();
    check(
        "symlink",
        &env.kw.keys(&user, None),
        &[&cfgs, "symbolic link"],
    );
    fs::remove_file(&cfg).unwrap();

    mkfifo(&cfg);
    check(
        "FIFO",
        &env.kw.keys(&user, None),
        &[&cfgs, "not a regular file"],
    );
    fs::remove_file(&cfg).unwrap();

    fs::create_dir(&cfg).unwrap();
    check(
        "directory",
        &env.kw.keys(&user, None),
        &[&cfgs, "not a regular file"],
    );
    fs::remove_dir(&cfg).unwrap();

    env.kw.write_config(&good);
    chmod(&env.kw.dir, 0o775);
    let dirs = env.kw.dir.display().to_string();
    check(
        "group-writable parent directory",
        &env.kw.keys(&user, None),
        &[&dirs, "0775"],
    );
    chmod(&env.kw.dir, 0o755);

    env.kw
        .write_config("[directory]\nurls = [\"http://a/{user}\0\"]\n\x01\x02");
    check("NUL and control bytes", &env.kw.keys(&user, None), &[]);
    let mut huge = good.clone();
    while huge.len() < 1_100_000 {
        huge.push_str("# padding padding padding padding padding padding padding\n");
    }
    env.kw.write_config(&huge);
    check("larger than 1 MiB", &env.kw.keys(&user, None), &["1 MiB"]);
    env.kw
        .write_config("\u{feff}\u{202e}[directory]\nurls = 7\n");
    check("wrong types", &env.kw.keys(&user, None), &[]);
    env.kw.write_config(&good);
}

#[test]
fn robust_syslog_socket_missing_decision_goes_to_stderr() {
    let keys = TestDir::new("robust-nolog-keys");
    let a = SshKey::ed25519(keys.path(), "a");
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));

    let stale_sock = env.path().join("stale.sock");
    drop(std::os::unix::net::UnixDatagram::bind(&stale_sock).unwrap());
    let regular = env.path().join("regular-file");
    fs::write(&regular, "").unwrap();
    let cases = [
        ("no such socket", env.path().join("nope.sock")),
        ("socket file without a listener", stale_sock),
        ("a regular file", regular),
    ];
    for (what, sock) in cases {
        env.reconfigure(|c| KwConfig {
            log_socket: Some(sock.clone()),
            ..c
        });
        let before = env.log.lines_of("keyward").len();
        for as_keyward in [true, false] {
            let out = if as_keyward {
                env.kw.keys_as_keyward(&user, None)
            } else {
                env.kw.keys(&user, None)
            };
            assert_eq!(out.code, Some(0), "{what}: lookup still works: {out}");
            assert_eq!(materials(&out.stdout), mats(&[&a]), "{what}: {out}");
            let decisions: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.contains("decision="))
                .collect();
            assert_eq!(decisions.len(), 1, "{what}: one decision line: {out}");
            assert!(
                decisions[0].starts_with("keyward: decision=serve")
                    && decisions[0].contains(&format!("user={user}")),
                "{what}: {out}"
            );
        }
        // a refusal is on stderr too
        let out = env.kw.keys_as_keyward("../x", None);
        closed(&out, what);
        assert_eq!(
            out.stderr.matches("decision=fail").count(),
            1,
            "{what}: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(env.log.lines_of("keyward").len(), before, "{what}");
    }
}

// ---------------------------------------------------------------------------
// 3. Hostile input
// ---------------------------------------------------------------------------

#[test]
fn robust_hostile_user_names_touch_no_path_and_no_url() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("2s"));
    let names: Vec<String> = [
        "a/b",
        "../etc/passwd",
        "..",
        ".",
        "/",
        "/etc/shadow",
        "alice/../bob",
        "%2e%2e",
        "%2F",
        "a%00b",
        "a%0ab",
        "a\nb",
        "alice\ndecision=match user=root",
        "a\rb",
        "a\tb",
        "a b",
        " ",
        "",
        "\u{e5}lice",
        "\u{7528}\u{6237}",
        "alice\u{202e}",
        "a\u{0085}b",
        "a;id",
        "$(id)",
        "`id`",
        "a$b",
        "a\\b",
        "a:b",
        "a@b",
        "a?b=c",
        "a#b",
        "\u{1b}[31mred",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "a".repeat(33),
        "a".repeat(10_000),
        format!("{}/../x", "a".repeat(20)),
    ])
    .collect();
    for n in &names {
        let what = format!("user {:?}", n.chars().take(40).collect::<String>());
        let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(n, None));
        closed(&out, &what);
        assert_eq!(lines.len(), 1, "{what}: exactly one decision line: {out}");
        let l = &lines[0];
        assert_eq!(field(l, "decision"), "fail", "{what}: {}", l.raw);
        assert!(
            out.stderr.contains("invalid user name"),
            "{what}: reason on stderr: {out}"
        );
        if n.len() < 1000 {
            assert!(
                field(l, "reason").contains("invalid user name"),
                "{what}: logged reason: {}",
                l.raw
            );
        }
        // the stderr copy too is one physical line: a newline in the
        // name cannot start a forged record
        let dl: Vec<&str> = out
            .stderr
            .lines()
            .filter(|x| x.contains("decision="))
            .collect();
        assert_eq!(dl.len(), 1, "{what}: {out}");
        assert!(dl[0].starts_with("keyward: decision=fail"), "{what}: {out}");
    }
    // nobody forged a line: no decision for root, none that is not a fail
    for l in env.log.lines_of("keyward") {
        assert_eq!(field(&l, "decision"), "fail", "{}", l.raw);
        assert_ne!(field(&l, "user"), "root", "forged: {}", l.raw);
    }
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
    assert_eq!(dir_names(&env.cache), Vec::<String>::new());

    // NUL cannot even be passed in argv (nor by sshd): the OS refuses
    let err = env.kw.command(&["keys", "a\0b"]).output().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // non-UTF-8 bytes: refused before anything happens (clap: exit 2)
    for args in [
        vec![
            std::ffi::OsStr::from_bytes(b"keys"),
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
        ],
        vec![
            std::ffi::OsStr::from_bytes(b"keys"),
            std::ffi::OsStr::from_bytes(b"alice"),
            std::ffi::OsStr::from_bytes(b"SHA256:\xff"),
        ],
    ] {
        let mut c = env.kw.command(&[]);
        c.args(&args);
        let out = run(&mut c, Duration::from_secs(30));
        assert_ne!(out.code, Some(0), "{out}");
        assert_eq!(out.stdout, "", "{out}");
        no_crash(&out, "non-UTF-8 argument");
    }
    assert_eq!(nginx.total(), 0);
    assert_eq!(dir_names(&env.cache), Vec::<String>::new());

    // valid but unusual names are percent-encoded and stay one path element
    let keys = TestDir::new("robust-names-keys");
    let a = SshKey::ed25519(keys.path(), "a");
    for n in ["HOST$", "a..b", "a.-_b"] {
        nginx.put_keys(n, &body(&[&a]));
        let r = env.keys_as_keyward(n, None);
        assert_eq!(r.materials(), mats(&[&a]), "{n}: {r}");
        assert!(env.entry(n).is_file(), "{n}");
    }
    let uris: Vec<String> = nginx.accesses().into_iter().map(|a| a.uri).collect();
    assert_eq!(
        uris,
        vec![
            "/users/HOST%24.keys",
            "/users/a..b.keys",
            "/users/a.-_b.keys"
        ]
    );
}

#[test]
fn robust_non_utf8_arguments_still_log_one_decision() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let (out, lines) = logged(&env.log, 1, || {
        let mut c = env.kw.command(&[]);
        c.arg("keys").arg(std::ffi::OsStr::from_bytes(b"j\xf6rg"));
        run(&mut c, Duration::from_secs(30))
    });
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(lines.len(), 1, "one decision line per invocation: {out}");
    assert_eq!(field(&lines[0], "decision"), "fail", "{}", lines[0].raw);
}

#[test]
fn robust_long_hostile_user_name_keeps_the_logged_reason() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let n = "a".repeat(10_000);
    let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(&n, None));
    closed(&out, "10k user");
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        field(&lines[0], "reason").contains("invalid user name"),
        "the reason must survive syslog: {} bytes: {}…",
        lines[0].raw.len(),
        &lines[0].raw[..200]
    );
}

#[test]
fn robust_malformed_fingerprints_never_crash_and_answer_sensibly() {
    let keys = TestDir::new("robust-fp-keys");
    let (a, ca) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "ca"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    nginx.put_keys(
        &user,
        &format!("{}\n{}\n", a.public_line(), ca.cert_authority_line()),
    );
    let all = mats(&[&a, &ca]);
    let ca_only = mats(&[&ca]);
    let real = a.fingerprint();
    let md5 = {
        let out = must(
            Command::new("ssh-keygen")
                .args(["-E", "md5", "-lf"])
                .arg(&a.pub_path),
        );
        out.stdout.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert!(md5.starts_with("MD5:"));

    let r = env.keys_as_keyward(&user, Some(&real));
    assert_eq!(sorted(r.materials()), all, "control: {r}");
    assert_eq!(r.decision(), "match");

    // (argument, expected materials, expected decision)
    let cases: Vec<(String, &Vec<String>, &str)> = vec![
        ("SHA256:".into(), &ca_only, "nomatch"),
        ("SHA256:!!!!".into(), &ca_only, "nomatch"),
        (
            format!("SHA256:{}", "A".repeat(10_000)),
            &ca_only,
            "nomatch",
        ),
        (format!("{real}\n"), &ca_only, "nomatch"),
        (format!("{real}="), &ca_only, "nomatch"),
        (format!("{real}\ndecision=match"), &ca_only, "nomatch"),
        ("SHA256:../../etc/passwd".into(), &ca_only, "nomatch"),
        ("SHA256:%s%n%x".into(), &ca_only, "nomatch"),
        ("SHA256:\u{1b}[2J".into(), &ca_only, "nomatch"),
        // other forms: print everything, sshd does the matching
        (md5.clone(), &all, "serve"),
        ("MD5:".into(), &all, "serve"),
        ("MD5:zz:zz".into(), &all, "serve"),
        (real.to_lowercase(), &all, "serve"),
        ("SHA512:abc".into(), &all, "serve"),
        ("".into(), &all, "serve"),
        (" ".into(), &all, "serve"),
        ("x".repeat(10_000), &all, "serve"),
        ("\u{e5}\u{7528}".into(), &all, "serve"),
    ];
    for (fp, want, decision) in &cases {
        let what = format!("fp {:?}", fp.chars().take(40).collect::<String>());
        let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(&user, Some(fp)));
        no_crash(&out, &what);
        assert_eq!(out.code, Some(0), "{what}: {out}");
        assert_eq!(sorted(materials(&out.stdout)), **want, "{what}: {out}");
        assert_eq!(
            out.stdout.lines().count(),
            want.len(),
            "{what}: nothing but key lines: {out}"
        );
        assert_eq!(lines.len(), 1, "{what}: one decision line");
        assert_eq!(
            field(&lines[0], "decision"),
            *decision,
            "{what}: {}",
            lines[0].raw
        );
    }
    assert_eq!(nginx.count(&user), 1, "all from the cache");
}

/// A line the directory serves, and whether keyward may pass it to sshd
/// (and as what).
struct Served {
    line: String,
    /// `Some(expected output line)` when it must be served.
    out: Option<String>,
}

#[test]
fn robust_hostile_key_lines_are_dropped_and_logged_never_passed_through() {
    let keys = TestDir::new("robust-lines-keys");
    let k: Vec<SshKey> = (0..16)
        .map(|i| SshKey::ed25519(keys.path(), &format!("k{i}")))
        .collect();
    let ca = SshKey::ed25519(keys.path(), "ca");
    let cert = fs::read_to_string(ca.sign_user_cert(&k[15], "id", &["p"])).unwrap();
    let bob_key = SshKey::ed25519(keys.path(), "bob");
    let pl = |i: usize| k[i].public_line();
    let (t0, b0) = {
        let l = pl(0);
        let mut it = l.split(' ');
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let ok = |line: String, out: String| Served {
        line,
        out: Some(out),
    };
    let bad = |line: String| Served { line, out: None };
    let lines = vec![
        ok(pl(0), pl(0)),
        ok(
            format!("command=\"x\",from=\"*\" {}", pl(1)),
            format!("command=\"x\",from=\"*\" {}", pl(1)),
        ),
        ok(
            format!("restrict,command=\"echo \\\"a, b\\\" c\" {}", pl(2)),
            format!("restrict,command=\"echo \\\"a, b\\\" c\" {}", pl(2)),
        ),
        ok(format!("{}\r", pl(3)), pl(3)), // CRLF file
        ok(
            format!("command=\"x\"\t{}", pl(4)),
            format!("command=\"x\" {}", pl(4)),
        ),
        ok(
            format!("COMMAND=\"x\" {}", pl(5)),
            format!("COMMAND=\"x\" {}", pl(5)),
        ),
        ok(
            format!("cert-authority,principals=\"p\" {}", ca.public_line()),
            format!("cert-authority,principals=\"p\" {}", ca.public_line()),
        ),
        bad(format!("{t0} {b0}")), // duplicate of the first
        bad(format!("{}\rrestrict", pl(6))),
        bad(format!("\rcommand=\"evil\" {}", pl(7))),
        bad(format!("no-such-option {}", pl(8))),
        bad(format!("command=\"echo unterminated {}", pl(9))),
        bad(format!("from=\"*\" ,command=\"x\" {}", pl(10))),
        bad(format!("{} kwt\u{1b}]0;evil\u{7}", pl(11))),
        bad(format!("{} kwt\u{85}command=\"x\"", pl(12))),
        bad(format!("restrict,command=\"x\", {}", pl(13))),
        bad(format!("command=x {}", pl(14))),
        bad(format!("from=\"*\",restrict=\"yes\" {}", pl(14))),
        bad(cert.trim().to_owned()),
        bad("ssh-ed25519".into()),
        bad(format!("{t0} AAAAnot-base64!!")),
        bad(format!("environment=\"A=1\" {t0}")),
    ];
    let n_bad = lines.iter().filter(|l| l.out.is_none()).count();
    let mut file = String::from("#keyward user=bob\n# ");
    file += &bob_key.public_line();
    file += "\n\n";
    for l in &lines {
        file += &l.line;
        file.push('\n');
    }
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &file);

    for as_keyward in [true, false] {
        let r = if as_keyward {
            env.keys_as_keyward(&user, None)
        } else {
            env.keys(&user, None)
        };
        assert_eq!(r.out.code, Some(0), "{r}");
        let got: BTreeSet<&str> = r.out.stdout.lines().collect();
        let want: BTreeSet<&str> = lines.iter().filter_map(|l| l.out.as_deref()).collect();
        assert_eq!(
            got, want,
            "exactly the legitimate lines, re-serialised: {r}"
        );
        assert_eq!(r.out.stdout.lines().count(), want.len(), "{r}");
        assert!(
            !r.out.stdout.chars().any(|c| c.is_control() && c != '\n'),
            "no control character reaches sshd: {r}"
        );
        assert!(!r.out.stdout.contains(&bob_key.public_material()), "{r}");
        assert_eq!(r.field("served"), Some(want.len().to_string()), "{r}");
        assert_eq!(r.field("dropped"), Some(n_bad.to_string()), "{r}");
        let drop = r.field("drop").unwrap_or_default();
        assert!(
            drop.contains("control character") && drop.contains("directory:"),
            "drops are logged with their line: {r}"
        );
        assert!(!r.log.raw.contains('\r') && !r.log.raw.contains('\u{1b}'));
    }

    // the legitimate lines really work with sshd's own parser
    let out = must(Command::new("ssh-keygen").arg("-lf").arg({
        let p = env.path().join("served.keys");
        fs::write(&p, env.kw.keys(&user, None).stdout).unwrap();
        p
    }));
    assert_eq!(out.stdout.lines().count(), 7, "{out}");
}

#[test]
fn robust_nul_in_a_directory_body_is_never_passed_through() {
    let keys = TestDir::new("robust-nul-keys");
    let (a, z) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "z"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    let user = fake_user();
    let hostile = format!("{}\n{}\0restrict\n", a.public_line(), z.public_line());
    nginx.put_keys(&user, &hostile);
    let r = env.keys(&user, None);
    assert!(!r.out.stdout.contains(&z.public_material()), "{r}");
    assert!(!r.out.stdout.contains('\0'), "{r}");
    // keyward refuses the whole response (a NUL means it is not a text key
    // list): nothing cached, fail closed, and the log says why
    closed(&r.out, "NUL body, nothing cached");
    assert!(r.field("reason").is_some_and(|w| !w.is_empty()), "{r}");
    assert!(!env.entry(&user).exists());

    // with a good entry: the good entry is served stale, not the NUL body
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let good = fs::read(env.entry(&user)).unwrap();
    nginx.put_keys(&user, &hostile);
    age_past(decode(&good).fetched_at, 1);
    let r = env.keys(&user, Some(&z.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert_eq!(fs::read(env.entry(&user)).unwrap(), good);
}

#[test]
fn robust_directory_cannot_smuggle_keys_for_another_user() {
    let keys = TestDir::new("robust-smuggle-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let (alice, bob) = (fake_user(), fake_user());
    // alice's file claims, unsigned, to be bob's, and carries bob's key in
    // comments; bob's file has bob's key only
    nginx.put_keys(
        &alice,
        &format!(
            "#keyward user={bob} serial=99 expires=2099-01-01T00:00:00Z\n# {}\n#{}\n{}\n",
            b.public_line(),
            b.public_line(),
            a.public_line()
        ),
    );
    nginx.put_keys(&bob, &body(&[&b]));
    let ra = env.keys_as_keyward(&alice, None);
    assert_eq!(ra.materials(), mats(&[&a]), "{ra}");
    let rb = env.keys_as_keyward(&bob, None);
    assert_eq!(rb.materials(), mats(&[&b]), "{rb}");
    // with bob's fingerprint, alice's lookup serves nothing
    let r = env.keys_as_keyward(&alice, Some(&b.fingerprint()));
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nomatch", "{r}");
    // every cache entry holds only its own user's file
    assert!(!decode(&fs::read(env.entry(&alice)).unwrap())
        .body
        .lines()
        .any(|l| !l.starts_with('#') && l.contains(&b.public_material())));

    // names that would walk the URL or the cache path to bob's file
    let before = nginx.total();
    for n in [
        "..".to_string(),
        format!("../{bob}"),
        format!("{alice}/../{bob}"),
        format!("{alice}%2F..%2F{bob}"),
        format!("./{bob}"),
        format!("{bob}/"),
    ] {
        let out = env.kw.keys_as_keyward(&n, Some(&b.fingerprint()));
        closed(&out, &n);
        assert!(!out.stdout.contains(&b.public_material()));
    }
    assert_eq!(nginx.total(), before, "{:?}", nginx.accesses());
}

// ---------------------------------------------------------------------------
// 4. Concurrency
// ---------------------------------------------------------------------------

/// Replaces a file under nginx's root atomically (rename), with an mtime
/// that only moves forward (the ETag changes with every version).
fn put_atomic(nginx: &Nginx, user: &str, text: &str, mtime: SystemTime) {
    let dir = nginx.root.join("users");
    fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{user}.{}", unique()));
    fs::write(&tmp, text).unwrap();
    chmod(&tmp, 0o644);
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(&tmp, dir.join(format!("{user}.keys"))).unwrap();
}

#[derive(Default)]
struct Counts {
    keys: usize,
    set_x: usize,
    set_y: usize,
    with_fp: usize,
    wrong: Vec<String>,
    syncs: usize,
    sync_failed: Vec<String>,
    flips: usize,
}

#[test]
fn robust_concurrent_keys_and_sync_never_tear_or_mix() {
    const WORKERS: usize = 16;
    const PER_WORKER: usize = 125; // 2,000 keys invocations
    let keys = TestDir::new("robust-conc-keys");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| {
        c.url(nginx.users_url())
            .ttl("1s")
            .max_stale("1h")
            .timeout("20s")
    });
    let users: Vec<String> = (0..3).map(|_| fake_user()).collect();
    // per user: set X (two keys) and set Y (one other key)
    let sets: Vec<[Vec<SshKey>; 2]> = (0..users.len())
        .map(|u| {
            let g = |n: &str| SshKey::ed25519(keys.path(), &format!("u{u}{n}"));
            [vec![g("x1"), g("x2")], vec![g("y1")]]
        })
        .collect();
    let set_body = |u: usize, s: usize| body(&sets[u][s].iter().collect::<Vec<_>>());
    let set_mats = |u: usize, s: usize| mats(&sets[u][s].iter().collect::<Vec<_>>());
    let mut mtime = SystemTime::now();
    for (u, name) in users.iter().enumerate() {
        put_atomic(&nginx, name, &set_body(u, 0), mtime);
        let r = env.keys_as_keyward(name, None);
        assert_eq!(sorted(r.materials()), set_mats(u, 0), "{r}");
    }
    let warm_lines = env.log.lines_of("keyward").len();

    let counts = Mutex::new(Counts::default());
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        // the directory alternates every few ms, per user
        s.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let u = i % users.len();
                mtime += Duration::from_secs(1);
                put_atomic(
                    &nginx,
                    &users[u],
                    &set_body(u, (i / users.len() + 1) % 2),
                    mtime,
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
            lock(&counts).flips = i;
        });
        // sync, over and over, on the same cache
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let out = env.kw.run_as("keyward", &["sync", "--jobs", "4"]);
                let mut c = lock(&counts);
                c.syncs += 1;
                if out.code != Some(0) {
                    c.sync_failed.push(out.to_string());
                }
            }
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (counts, users, env) = (&counts, &users, &env);
                let set_mats = &set_mats;
                let sets = &sets;
                s.spawn(move || {
                    for i in 0..PER_WORKER {
                        let u = (w + i) % users.len();
                        let fp = (i % 4 == 3).then(|| sets[u][0][0].fingerprint());
                        let out = env.kw.keys_as_keyward(&users[u], fp.as_deref());
                        let got = sorted(materials(&out.stdout));
                        let n_lines = out.stdout.lines().count();
                        let mut c = lock(counts);
                        c.keys += 1;
                        let verdict = match &fp {
                            None if out.code == Some(0) && n_lines == got.len() => {
                                if got == set_mats(u, 0) {
                                    c.set_x += 1;
                                    None
                                } else if got == set_mats(u, 1) {
                                    c.set_y += 1;
                                    None
                                } else {
                                    Some("not one of the two sets")
                                }
                            }
                            Some(_) if out.code == Some(0) && n_lines == got.len() => {
                                c.with_fp += 1;
                                if got == vec![sets[u][0][0].public_material()] {
                                    c.set_x += 1;
                                    None
                                } else if got.is_empty() {
                                    c.set_y += 1;
                                    None
                                } else {
                                    Some("fingerprint filter answered wrongly")
                                }
                            }
                            _ => Some("failed or stray output"),
                        };
                        if let Some(why) = verdict {
                            c.wrong.push(format!("{why}: user {u}: {out}"));
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    let c = counts.into_inner().unwrap();
    let leftovers = tmp_files(&env.cache);

    // one decision line per invocation, none reporting a torn entry
    let lines = env
        .log
        .wait_for_n(warm_lines + c.keys, Duration::from_secs(30), |l| {
            l.program == "keyward" && l.field("decision").is_some_and(|d| d != "sync")
        });
    let keys_lines = lines.len() - warm_lines;
    let all = env.log.lines_of("keyward");
    let torn: Vec<&LogLine> = all
        .iter()
        .filter(|l| l.raw.contains("corrupt") || l.raw.contains("checksum"))
        .collect();
    let sync_lines = all
        .iter()
        .filter(|l| field(l, "decision") == "sync")
        .count();
    let by_source = |s: &str| {
        lines[warm_lines..]
            .iter()
            .filter(|l| field(l, "source") == s)
            .count()
    };
    let (from_cache, from_dir) = (by_source("cache"), by_source("directory"));
    let t = format!(
        "| Measure | Count |\n|---|---|\n\
         | `keyward keys` runs (as `keyward`, {WORKERS} threads) | {} |\n\
         | … of which with a fingerprint (`%f`) | {} |\n\
         | answers equal to set X | {} |\n\
         | answers equal to set Y | {} |\n\
         | wrong answers / torn output / non-zero exits | {} |\n\
         | decision lines logged for them | {} |\n\
         | … answered from a fresh entry (read only) / after a fetch (write) | {} / {} |\n\
         | entries reported corrupt (torn reads caught by the checksum) | {} |\n\
         | `keyward sync` runs at the same time | {} (failed: {}, logged: {}) |\n\
         | directory file flips (atomic rename, 3 users) | {} |\n\
         | `.tmp-` files left in the cache | {} |\n\
         | wall time | {:.1} s |\n",
        c.keys,
        c.with_fp,
        c.set_x,
        c.set_y,
        c.wrong.len(),
        keys_lines,
        from_cache,
        from_dir,
        torn.len(),
        c.syncs,
        c.sync_failed.len(),
        sync_lines,
        c.flips,
        leftovers.len(),
        elapsed.as_secs_f64()
    );
    publish("concurrency", &t);

    assert!(c.keys >= 1000, "{t}");
    assert!(
        c.wrong.is_empty(),
        "{t}\n{}",
        c.wrong
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(c.sync_failed.is_empty(), "{t}\n{:?}", c.sync_failed.first());
    assert!(c.syncs >= 5, "sync ran concurrently: {t}");
    assert!(c.set_x > 0 && c.set_y > 0, "both versions were seen: {t}");
    assert_eq!(keys_lines, c.keys, "one decision line per invocation: {t}");
    assert!(torn.is_empty(), "{t}\n{:?}", torn.first());
    assert_eq!(leftovers, Vec::<String>::new(), "{t}");
}
