//! Directory faults end to end through sshd: for every fault, a good entry
//! older than `ttl` keeps the user in (served stale, with a warning), and
//! without one the login is refused (fail closed, with a reason), within
//! keyward's own time budget. The table is written to docs/ROBUSTNESS.md.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::fault::dead_url;
use crate::support::rsyslog::LogLine;
use pam_keyward::cache::Entry;

use crate::support::cachefiles::*;
use crate::support::checks::*;
use crate::support::*;

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

/// The directory timeout of the matrix (seconds).
const BUDGET: u64 = 2;

struct Fault {
    name: &'static str,
    url: String,
    ca_file: Option<PathBuf>,
    /// Lower-case words, one of which the logged reason must contain.
    says: &'static [&'static str],
}

impl Fault {
    /// Whether a logged warning or reason names this fault.
    fn said_by(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.says.iter().any(|w| text.contains(w))
    }
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

/// Everything the matrix runs against: nginx (with its error, HTML,
/// oversize, redirect and TLS locations), the fault servers, keyward with its
/// cache and log, and sshd running keyward for one user with one key.
struct Bench {
    _keys: TestDir,
    k: SshKey,
    good_body: String,
    cert: PathBuf,
    tls_url: String,
    elsewhere: FaultServer,
    nginx: Nginx,
    hole: FaultServer,
    drip: FaultServer,
    trunc: FaultServer,
    env: KeysEnv,
    user: TestUser,
    sshd: Sshd,
    _sshd_dir: TestDir,
}

impl Bench {
    fn start() -> Bench {
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
        // health (a failed mirror is skipped for a while; outage.rs tests
        // it) must not turn the second lookup into a skip: every lookup is
        // due again.
        let env = KeysEnv::new(|c| {
            c.url(nginx.users_url())
                .ttl("1s")
                .max_stale("1h")
                .timeout(&format!("{BUDGET}s"))
                .max_bytes(4096)
                .retry_interval("1ms")
        });
        let user = TestUser::new();
        let name = &user.name;
        nginx.put_keys(name, &good_body);
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
        Bench {
            _keys: keys,
            k,
            good_body,
            cert,
            tls_url: format!("https://127.0.0.1:{tls_port}/users/{{user}}.keys"),
            elsewhere,
            nginx,
            hole,
            drip,
            trunc,
            env,
            user,
            sshd,
            _sshd_dir: sshd_dir,
        }
    }

    /// Every fault, each the only mirror in turn.
    fn faults(&self) -> Vec<Fault> {
        let f = |name, url: String, says| Fault {
            name,
            url,
            ca_file: None,
            says,
        };
        let nginx = &self.nginx;
        vec![
            f(
                "connection refused (dead port)",
                dead_url(),
                &["refused", "connection failed"],
            ),
            f(
                "black hole (accepts, never answers)",
                self.hole.users_url(),
                &["timed out", "timeout"],
            ),
            f(
                "slow drip (1 byte / 100 ms)",
                self.drip.users_url(),
                &["timed out", "timeout"],
            ),
            f(
                "HTTP 500 (nginx `return 500`)",
                nginx.url("/err/{user}.keys"),
                &["http 500"],
            ),
            f(
                "200 with text/html (captive portal)",
                nginx.url("/html/{user}.keys"),
                &["html"],
            ),
            f(
                "truncated body (Content-Length 2000, then close)",
                self.trunc.users_url(),
                &["reading body", "eof", "incomplete", "closed"],
            ),
            f(
                "oversize body (8 KiB > max_bytes 4096)",
                nginx.url("/big/{user}.keys"),
                &["max_bytes"],
            ),
            f(
                "302 redirect to another server",
                nginx.url("/moved/{user}.keys"),
                &["redirect"],
            ),
            f(
                "TLS, self-signed certificate, no ca_file",
                self.tls_url.clone(),
                &["certificate", "unknownissuer", "tls"],
            ),
            f(
                "DNS name that cannot resolve (keys.invalid)",
                "http://keys.invalid:1/{user}.keys".into(),
                &["host not found", "resolve", "lookup", "name"],
            ),
        ]
    }

    fn use_mirror(&mut self, url: &str, ca_file: Option<PathBuf>) {
        self.env.reconfigure(|c| KwConfig {
            urls: vec![url.to_owned()],
            ca_file,
            ..c
        });
    }

    /// One key login through sshd, and the keyward lines it caused.
    fn login(&self) -> (SshOut, Vec<LogLine>) {
        logged(&self.env.log, 1, || {
            self.sshd.login(&self.user.name, &self.k.path, "id -un")
        })
    }

    fn entry(&self) -> PathBuf {
        self.env.entry(&self.user.name)
    }

    fn debug(&self) -> String {
        format!(
            "--- syslog ---\n{}--- sshd ---\n{}",
            self.env.log.text(),
            self.sshd.log_text()
        )
    }

    /// The logins' table row.
    fn row(
        fault: &'static str,
        cached: bool,
        r: &SshOut,
        lines: &[LogLine],
        logged: String,
    ) -> Row {
        Row {
            fault,
            cached,
            ok: r.ok,
            login: r.out.elapsed,
            answers: answers(lines),
            logged,
            kw_ms: max_ms(lines),
        }
    }
}

/// A good entry older than `ttl` keeps the user in during `f`: served
/// stale (every decision), with a warning naming the fault, within the
/// budget; the entry survives byte-identical.
fn stale_entry_keeps_the_user_in(b: &Bench, f: &Fault, good: &[u8]) -> Row {
    let entry = b.entry();
    let url = f.url.replace("{user}", &b.user.name);
    plant_entry(&entry, good);
    let (r, lines) = b.login();
    let ctx = format!("{} (cached): {r}\n{}", f.name, b.debug());
    assert!(r.ok, "stale entry must keep the user in: {ctx}");
    assert!(!lines.is_empty(), "{ctx}");
    for l in &lines {
        assert_eq!(field(l, "decision"), "match", "{}\n{ctx}", l.raw);
        assert_eq!(field(l, "source"), "stale", "{}\n{ctx}", l.raw);
        let w = field(l, "warning");
        assert!(
            w.contains("directory unavailable") && f.said_by(&w),
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
    // What this proves is "bounded by keyward's budget, not by sshd's
    // LoginGraceTime (120 s)"; the slack covers ssh's own handshake on a
    // loaded 2-core CI machine (5 s was seen to be too little: 9.3 s for two
    // 2 s lookups at load 12). Speed is for the benchmarks, not this test.
    let budget = Duration::from_secs(BUDGET);
    assert!(
        r.out.elapsed < budget * lines.len() as u32 + Duration::from_secs(30),
        "login bounded by the budget, not LoginGraceTime: {ctx}"
    );
    assert_eq!(
        fs::read(&entry).unwrap(),
        good,
        "the good entry must survive byte-identical: {ctx}"
    );
    assert_eq!(tmp_files(&b.env.cache), Vec::<String>::new(), "{ctx}");
    let warning = field(&lines[0], "warning").replace(&url, "<url>");
    Bench::row(f.name, true, &r, &lines, warning)
}

/// Without an entry the login is refused during `f`: every decision fails
/// closed with a reason naming the fault, quickly; no entry is created.
fn no_entry_fails_closed(b: &Bench, f: &Fault) -> Row {
    let entry = b.entry();
    let url = f.url.replace("{user}", &b.user.name);
    fs::remove_file(&entry).unwrap();
    let (r, lines) = b.login();
    let ctx = format!("{} (no cache): {r}\n{}", f.name, b.debug());
    assert!(!r.ok, "no entry and no directory: refused: {ctx}");
    assert!(!lines.is_empty(), "{ctx}");
    for l in &lines {
        assert_eq!(field(l, "decision"), "fail", "{}\n{ctx}", l.raw);
        let why = field(l, "reason");
        assert!(
            why.contains("nothing cached") && f.said_by(&why),
            "reason must say why ({:?}): {}\n{ctx}",
            f.says,
            l.raw
        );
    }
    assert!(
        r.out.elapsed < Duration::from_secs(BUDGET) + Duration::from_secs(5),
        "refusal bounded by the budget: {ctx}"
    );
    assert!(!entry.exists(), "a fault must not create an entry: {ctx}");
    assert_eq!(tmp_files(&b.env.cache), Vec::<String>::new(), "{ctx}");
    let reason = field(&lines[0], "reason").replace(&url, "<url>");
    Bench::row(f.name, false, &r, &lines, reason)
}

/// Control: the same TLS server with `ca_file` = its certificate works, and
/// a successful fetch is the only thing that refreshes the entry.
fn tls_with_ca_file_works(b: &mut Bench, good: &[u8], good_entry: &Entry) -> Vec<Row> {
    const NAME: &str = "TLS, self-signed certificate, ca_file = that certificate";
    b.use_mirror(&b.tls_url.clone(), Some(b.cert.clone()));
    let entry = b.entry();
    plant_entry(&entry, good);
    let (r, lines) = b.login();
    let ctx = format!("{NAME}: {r}\n{}", b.debug());
    assert!(r.ok, "{ctx}");
    assert_eq!(field(&lines[0], "source"), "directory", "{ctx}");
    let now = decode(&fs::read(&entry).unwrap());
    assert_eq!(now.body, b.good_body, "{ctx}");
    assert!(now.fetched_at > good_entry.fetched_at, "refreshed: {ctx}");
    assert_eq!(tmp_files(&b.env.cache), Vec::<String>::new());
    let mut rows = vec![Bench::row(
        NAME,
        true,
        &r,
        &lines,
        field(&lines[0], "warning"),
    )];
    fs::remove_file(&entry).unwrap();
    let (r, lines) = b.login();
    let ctx = format!("{NAME} (no cache): {r}\n{}", b.debug());
    assert!(r.ok, "{ctx}");
    assert_eq!(decode(&fs::read(&entry).unwrap()).body, b.good_body);
    rows.push(Bench::row(
        NAME,
        false,
        &r,
        &lines,
        field(&lines[0], "warning"),
    ));
    rows
}

fn render(rows: &[Row]) -> String {
    let mut t = format!(
        "Directory timeout {BUDGET}s, ttl 1s, max_stale 1h, max_bytes 4096; sshd 9.2 \
         (LoginGraceTime 120) runs `keyward keys %u %f` as `keyward`; one ed25519 key offered. \
         \"Cached\" = a good entry older than ttl; sshd runs keyward once per offered key and \
         again for the accepted one, so a successful login shows two decisions. \
         `<url>` stands for the mirror URL.\n\n\
         | Fault | Good entry cached | Login | Login time | keyward answered (decision/source) | keyward ms (max) | Logged warning / reason |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for r in rows {
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
    t
}

#[test]
fn robust_fault_matrix_sshd_serves_stale_or_fails_closed_within_budget() {
    let mut b = Bench::start();
    // Warm-up through the real path: the good entry.
    let (r, _) = b.login();
    assert!(r.ok, "warm-up login: {r}\n{}", b.debug());
    let good = fs::read(b.entry()).expect("warm-up wrote the cache entry");
    let good_entry = decode(&good);
    assert_eq!(good_entry.body, b.good_body);
    age_past(good_entry.fetched_at, 1); // stale from here on (ttl 1s)

    let mut rows = Vec::new();
    for f in b.faults() {
        b.use_mirror(&f.url, f.ca_file.clone());
        rows.push(stale_entry_keeps_the_user_in(&b, &f, &good));
        rows.push(no_entry_fails_closed(&b, &f));
    }
    assert_eq!(
        b.elsewhere.connections(),
        0,
        "the redirect target must never be contacted"
    );
    assert!(b.hole.connections() >= 2 && b.trunc.connections() >= 2);
    assert!(b.drip.connections() >= 2);
    rows.extend(tls_with_ca_file_works(&mut b, &good, &good_entry));
    publish("fault-matrix", &render(&rows));
}
