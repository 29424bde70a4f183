//! Logins during a directory outage: a hung mirror costs the
//! first lookups of two users their budget (no answer for one user alone
//! may be that user's path); after that the mirror is skipped (no
//! connection at all, counted by the server) and stale entries are served
//! at once, until the retry interval passes; then one lookup probes it.
//!
//! The mirror is a switch on 127.0.0.1: a black hole (accepts, never
//! answers: a hung server, not a refused or dropped connect, which marks
//! the mirror down at once) or a plain TCP relay to a real nginx, counting
//! connections in each mode. Times are measured and printed, not asserted; the assertions
//! are the mechanism (connection counts, health records, log lines).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::rsyslog::LogLine;
use crate::support::*;

/// A mirror that is either a black hole or a relay to `upstream`.
struct Switch {
    port: u16,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Connections accepted while down / while relaying.
    hole: Arc<AtomicUsize>,
    relayed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Switch {
    fn start(upstream: u16) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let hole = Arc::new(AtomicUsize::new(0));
        let relayed = Arc::new(AtomicUsize::new(0));
        let (d, s, h, r) = (down.clone(), stop.clone(), hole.clone(), relayed.clone());
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let s2 = s.clone();
                        if d.load(Ordering::SeqCst) {
                            h.fetch_add(1, Ordering::SeqCst);
                            handlers.push(std::thread::spawn(move || swallow(conn, &s2)));
                        } else {
                            r.fetch_add(1, Ordering::SeqCst);
                            handlers.push(std::thread::spawn(move || relay(conn, upstream)));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for t in handlers {
                let _ = t.join();
            }
        });
        Switch {
            port,
            down,
            stop,
            hole,
            relayed,
            thread: Some(thread),
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn hole(&self) -> usize {
        self.hole.load(Ordering::SeqCst)
    }

    fn relayed(&self) -> usize {
        self.relayed.load(Ordering::SeqCst)
    }

    fn users_url(&self) -> String {
        format!("http://127.0.0.1:{}/users/{{user}}.keys", self.port)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The black hole: read and ignore until the client gives up (bounded).
fn swallow(mut conn: TcpStream, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            _ => continue,
        }
    }
}

/// Relays bytes both ways until either side closes.
fn relay(client: TcpStream, upstream: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let (mut s3, mut c3) = (server, client);
    let _ = std::io::copy(&mut s3, &mut c3);
    let _ = c3.flush();
    let _ = c3.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// The health record of the (only) mirror: `.health/<16 hex>`.
fn health_record(cache: &std::path::Path) -> Option<(std::path::PathBuf, String)> {
    let dir = cache.join(".health");
    let rd = std::fs::read_dir(&dir).ok()?;
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
}

fn retry_at_ms(record: &str) -> u64 {
    record
        .lines()
        .find_map(|l| l.strip_prefix("retry_at_ms "))
        .and_then(|v| v.parse().ok())
        .expect("retry_at_ms")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// keyward's own time for each invocation (`ms=` of its log lines).
fn kw_ms(lines: &[LogLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.field("ms").unwrap_or_default())
        .collect()
}

/// Logs in and returns the result and the keyward lines it produced.
fn login(sshd: &Sshd, env: &KeysEnv, user: &TestUser, key: &SshKey) -> (SshOut, Vec<LogLine>) {
    let is = |l: &LogLine| {
        l.program == "keyward" && l.field("user").as_deref() == Some(user.name.as_str())
    };
    let before = env.log.lines().into_iter().filter(is).count();
    let r = sshd.login(&user.name, &key.path, "true");
    // sshd runs the command twice for an accepted key (query, then the
    // signed request): wait for both lines.
    let lines = env.log.wait_for_n(before + 2, Duration::from_secs(10), is);
    (r, lines.into_iter().skip(before).collect())
}

#[test]
fn outage_logins_skip_a_black_holed_mirror_until_the_retry_interval() {
    let nginx = Nginx::start();
    let switch = Switch::start(nginx.port);
    let mut env = KeysEnv::new(|c| {
        c.url(switch.users_url())
            .ttl("1h")
            .max_stale("1h")
            .timeout("2s")
            .retry_interval("20s")
    });
    let user = TestUser::new();
    let key = SshKey::ed25519(env.path(), "login");
    nginx.put_keys(&user.name, &format!("{}\n", key.public_line()));
    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();

    // Warm-up through the mirror, then logins on a fresh entry: the
    // baseline (a cache hit).
    let (r, lines) = login(&sshd, &env, &user, &key);
    assert!(r.ok, "warm-up: {r}\n{}", sshd.log_text());
    assert_eq!(
        lines[0].field("source").as_deref(),
        Some("directory"),
        "{}",
        lines[0].raw
    );
    assert_eq!(
        lines[0].field("mirror"),
        Some(switch.users_url().replace("{user}", &user.name)),
        "the log names the mirror that answered: {}",
        lines[0].raw
    );
    let (mut hits, mut hit_ms) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (r, lines) = login(&sshd, &env, &user, &key);
        assert!(r.ok, "{r}");
        assert!(lines
            .iter()
            .all(|l| l.field("source").as_deref() == Some("cache")));
        hits.push(r.out.elapsed);
        hit_ms.extend(kw_ms(&lines));
    }

    // The outage: the entry goes stale (ttl 1s), the mirror black-holes.
    env.reconfigure(|c| c.ttl("1s"));
    std::thread::sleep(Duration::from_millis(1100));
    switch.set_down(true);
    // Another user's lookup gets no answer first: recorded, not down.
    let other = keysenv::fake_user();
    let r = env.keys_as_keyward(&other, None);
    assert_eq!(r.decision(), "fail", "{r}");
    assert_eq!(switch.hole(), 1);
    assert!(health_record(&env.cache).is_some_and(|(_, t)| !t.contains("retry_at_ms")));
    let (r, lines) = login(&sshd, &env, &user, &key);
    assert!(r.ok, "stale entry keeps the user in: {r}");
    let first = r.out.elapsed;
    let first_ms = kw_ms(&lines);
    assert_eq!(
        switch.hole(),
        2,
        "the first lookup tries the mirror (a second user: down); the second skips it"
    );
    let w0 = lines[0].field("warning").unwrap_or_default();
    let w1 = lines[1].field("warning").unwrap_or_default();
    assert!(
        w0.contains("timed out") && w0.contains("skipped for the next"),
        "{w0}"
    );
    assert!(w1.contains("skipped, down for"), "the skip is logged: {w1}");
    for l in &lines {
        l.assert_field("source", "stale");
    }
    let (record, text) = health_record(&env.cache).expect("a health record");
    assert!(text.starts_with("keyward-health 1\n"), "{text}");
    assert!(text.contains("reason timed out"), "{text}");
    let md = std::fs::metadata(&record).unwrap();
    let (uid, _) = user_ids("keyward").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.uid(), md.mode() & 0o777),
        (uid, 0o640),
        "written as the cache owner"
    );
    let retry_at = retry_at_ms(&text);

    // Ten more logins within the skip window: no connection to the hole.
    let (mut outage, mut outage_ms) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (r, lines) = login(&sshd, &env, &user, &key);
        assert!(r.ok, "{r}");
        outage_ms.extend(kw_ms(&lines));
        for l in &lines {
            l.assert_field("source", "stale");
            assert!(
                l.field("warning").unwrap_or_default().contains("skipped"),
                "{}",
                l.raw
            );
        }
        outage.push(r.out.elapsed);
    }
    assert!(
        now_ms() < retry_at,
        "the ten logins must fit in the skip window"
    );
    assert_eq!(
        switch.hole(),
        2,
        "no connection to the black hole while skipped"
    );

    // The mirror comes back; past the retry time the next lookup uses it.
    switch.set_down(false);
    let relayed = switch.relayed();
    let requests = nginx.total();
    std::thread::sleep(Duration::from_millis(
        retry_at.saturating_sub(now_ms()) + 200,
    ));
    let (r, lines) = login(&sshd, &env, &user, &key);
    assert!(r.ok, "{r}");
    assert_eq!(
        lines[0].field("source").as_deref(),
        Some("directory"),
        "{}",
        lines[0].raw
    );
    assert!(lines[0].field("mirror").is_some(), "{}", lines[0].raw);
    assert_eq!(
        switch.relayed(),
        relayed + 1,
        "one request through the recovered mirror"
    );
    assert_eq!(nginx.total(), requests + 1);
    assert!(
        health_record(&env.cache).is_none(),
        "a success clears the record"
    );
    assert_eq!(switch.hole(), 2);

    eprintln!(
        "outage (timeout 2s, retry_interval 20s), ssh login wall time: \
         cache hit median {} ({:?}); first outage login {}; next ten logins \
         median {} max {} ({:?}); after recovery {}\n\
         keyward ms per invocation: cache hit {hit_ms:?}; first outage login \
         {first_ms:?}; next ten {outage_ms:?}",
        ms(median(&hits)),
        hits.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        ms(first),
        ms(median(&outage)),
        ms(*outage.iter().max().unwrap()),
        outage.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        ms(r.out.elapsed),
    );
}

/// Many lookups at once when the retry time of a still-dead mirror comes:
/// exactly one of them probes it (one connection), the rest serve stale at
/// once; the failed probe pushes the retry time out again.
#[test]
fn a_recovering_mirror_gets_one_probe_not_a_stampede() {
    let nginx = Nginx::start();
    let switch = Switch::start(nginx.port);
    let env = KeysEnv::new(|c| {
        c.url(switch.users_url())
            .ttl("1s")
            .max_stale("1h")
            .timeout("1s")
            .retry_interval("2s")
    });
    let user = keysenv::fake_user();
    let key = SshKey::ed25519(env.path(), "k");
    nginx.put_keys(&user, &format!("{}\n", key.public_line()));
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
    std::thread::sleep(Duration::from_millis(1100));
    switch.set_down(true);
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert_eq!(switch.hole(), 1);
    // No answer for a second user too: down.
    let r = env.keys_as_keyward(&keysenv::fake_user(), None);
    assert_eq!(r.decision(), "fail", "{r}");
    assert_eq!(switch.hole(), 2);
    let (_, text) = health_record(&env.cache).unwrap();
    std::thread::sleep(Duration::from_millis(
        retry_at_ms(&text).saturating_sub(now_ms()) + 50,
    ));

    const N: usize = 12;
    let times: Vec<Duration> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    let out = env.kw.keys_as_keyward(&user, None);
                    assert!(out.success() && !out.stdout.is_empty(), "{out}");
                    out.elapsed
                })
            })
            .collect();
        runs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(switch.hole(), 3, "one probe for {N} concurrent lookups");
    let (_, text) = health_record(&env.cache).unwrap();
    assert!(
        text.contains("failures 2"),
        "the failed probe is recorded: {text}"
    );
    assert!(
        retry_at_ms(&text) > now_ms(),
        "and pushes the retry time out"
    );
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "stampede: {N} concurrent lookups at the retry time: 1 probe; times {:?}",
        sorted.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
}
