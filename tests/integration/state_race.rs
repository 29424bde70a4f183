//! Security state across processes: many `keyward keys` and `keyward sync`
//! at once against a mirror that holds answers back and sometimes serves
//! older (still valid, validly signed) files. The rollback floor on disk
//! never decreases, and no key revoked by a file accepted before a lookup
//! started is served by it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::signed::{header, now, sign};
use crate::support::keyward::toml_str;
use crate::support::*;

/// One published version of a user's file: body and its signature.
pub(crate) struct Version {
    pub body: String,
    pub sig: Vec<u8>,
}

/// What the mirror shares between its connection threads.
struct Shared {
    user: String,
    versions: Vec<Version>,
    /// The version the publisher has most recently published.
    current: AtomicUsize,
    /// The version whose body was last sent and whose `.sig` is owed:
    /// keeps a body and its signature together across two requests.
    owed: Mutex<Option<(usize, Instant)>>,
    freed: Condvar,
    rng: Mutex<u64>,
    held: AtomicUsize,
    older: AtomicUsize,
}

impl Shared {
    fn rand(&self, n: u64) -> u64 {
        let mut s = self.rng.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s % n
    }

    /// The version this request gets: the current one or one of the two
    /// before it, decided on arrival; the answer is then held back up to
    /// 700 ms half of the time, while newer versions get published.
    fn pick(&self) -> usize {
        let cur = self.current.load(Ordering::SeqCst);
        let back = [0, 0, 1, 2][self.rand(4) as usize];
        let v = cur.saturating_sub(back);
        if v < cur {
            self.older.fetch_add(1, Ordering::SeqCst);
        }
        if self.rand(2) == 0 {
            self.held.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_millis(100 + self.rand(600)));
        }
        v
    }

    fn answer(&self, path: &str) -> (u16, Vec<u8>) {
        let keys = format!("/users/{}.keys", self.user);
        if path == keys {
            let v = self.pick();
            let mut owed = self.owed.lock().unwrap();
            // One body at a time until its .sig is asked for (or 400 ms).
            while owed.is_some_and(|(_, at)| at.elapsed() < Duration::from_millis(400)) {
                owed = self
                    .freed
                    .wait_timeout(owed, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            *owed = Some((v, Instant::now()));
            (200, self.versions[v].body.clone().into_bytes())
        } else if path == format!("{keys}.sig") {
            let mut owed = self.owed.lock().unwrap();
            let v = owed.take();
            self.freed.notify_all();
            match v {
                Some((v, _)) => (200, self.versions[v].sig.clone()),
                None => (404, b"no body owed\n".to_vec()),
            }
        } else {
            (404, b"not found\n".to_vec())
        }
    }
}

/// A mirror that answers late: nginx cannot hold an answer back while the
/// file under it changes, so this is a small HTTP/1.1 server in a thread.
struct LateMirror {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LateMirror {
    fn start(user: &str, versions: Vec<Version>) -> LateMirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            user: user.to_owned(),
            versions,
            current: AtomicUsize::new(0),
            owed: Mutex::new(None),
            freed: Condvar::new(),
            rng: Mutex::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id())),
            held: AtomicUsize::new(0),
            older: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let sh = sh.clone();
                        conns.push(std::thread::spawn(move || serve(c, &sh)));
                    }
                    Err(_) => sleep(Duration::from_millis(2)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        LateMirror {
            port,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/users/{{user}}.keys", self.port)
    }

    fn publish(&self, v: usize) {
        self.shared.current.store(v, Ordering::SeqCst);
    }
}

impl Drop for LateMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (keyward's login agent keeps none; sync's
/// pooled agent gets `Connection: close`).
fn serve(mut c: TcpStream, sh: &Shared) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
    let (status, body) = sh.answer(&path);
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(&body);
}

/// The serial of the floor file, if any.
fn floor_serial(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("serial "))
        .and_then(|v| v.parse().ok())
}

/// Where the state keeps `user`'s keys floor.
pub(crate) fn keys_floor(env: &KeysEnv, user: &str) -> PathBuf {
    crate::support::keyward::state_dir_of(&env.cache)
        .join("keys")
        .join(user)
}

/// `n` signed files for `user`, version k (serial `base + k`)
/// holding key k alone, so every file revokes the keys of all before it.
fn versions(
    dir: &Path,
    signer: &SshKey,
    user: &str,
    base: u64,
    n: usize,
) -> Vec<(Version, SshKey)> {
    let t = now();
    (0..n)
        .map(|k| {
            let key = SshKey::ed25519(dir, &format!("k{k}"));
            let body = format!(
                "{}{}\n",
                header(user, base + k as u64, t + 3600),
                key.public_line()
            );
            let sig = sign(dir, signer, "keyward", &body);
            (Version { body, sig }, key)
        })
        .collect()
}

pub(crate) fn signed_env(signer: &SshKey, url: String) -> KeysEnv {
    let env = KeysEnv::new(|c| {
        c.url(url)
            .ttl("1ms")
            .max_stale("1h")
            .timeout("5s")
            .index("false")
    });
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            toml_str(&signer.public_line())
        ),
        1,
    );
    env.kw.write_config(&toml);
    env
}

#[test]
fn concurrent_lookups_and_syncs_never_lower_the_floor_nor_serve_a_revoked_key() {
    let keys = TestDir::new("racekeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let user = keysenv::fake_user();
    let base = 1_000;
    const N: usize = 24;
    let made = versions(keys.path(), &signer, &user, base, N);
    let mats: Vec<String> = made.iter().map(|(_, k)| k.public_material()).collect();
    let mirror = LateMirror::start(&user, made.into_iter().map(|(v, _)| v).collect());
    let env = Arc::new(signed_env(&signer, mirror.url()));
    let floor_file = keys_floor(&env, &user);

    // The sampler: the highest floor seen so far, and any decrease.
    let stop = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicU64::new(0));
    let decreases = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let sampler = {
        let (stop, highest, decreases, path) = (
            stop.clone(),
            highest.clone(),
            decreases.clone(),
            floor_file.clone(),
        );
        std::thread::spawn(move || {
            let (mut last, mut prev) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                if let Some(s) = floor_serial(&path) {
                    // Each decrease once, not once per sample.
                    if s < last && s != prev {
                        decreases.lock().unwrap().push((last, s));
                    }
                    prev = s;
                    last = last.max(s);
                    highest.fetch_max(s, Ordering::SeqCst);
                }
                sleep(Duration::from_millis(1));
            }
        })
    };

    // (floor accepted before the lookup started, version served, output)
    let served = Arc::new(Mutex::new(Vec::<(u64, Option<usize>, String)>::new()));
    let syncs = Arc::new(Mutex::new(Vec::<Out>::new()));
    let mut workers = Vec::new();
    for round in 0..N {
        mirror.publish(round);
        for _ in 0..4 {
            let (env, user, served, highest, path, mats) = (
                env.clone(),
                user.clone(),
                served.clone(),
                highest.clone(),
                floor_file.clone(),
                mats.clone(),
            );
            workers.push(std::thread::spawn(move || {
                let before = highest
                    .load(Ordering::SeqCst)
                    .max(floor_serial(&path).unwrap_or(0));
                let out = env.kw.keys_as_keyward(&user, None);
                let got = materials(&out.stdout);
                let v = got.first().and_then(|m| mats.iter().position(|k| k == m));
                served.lock().unwrap().push((before, v, out.to_string()));
            }));
        }
        if round % 3 == 1 {
            let (env, syncs) = (env.clone(), syncs.clone());
            workers.push(std::thread::spawn(move || {
                let out = env.kw.run(&["sync"]);
                syncs.lock().unwrap().push(out);
            }));
        }
        sleep(Duration::from_millis(120));
    }
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    let decreases = decreases.lock().unwrap().clone();
    assert!(
        decreases.is_empty(),
        "the floor on disk decreased {} times (from, to), the first: {:?}",
        decreases.len(),
        &decreases[..decreases.len().min(8)]
    );
    let served = served.lock().unwrap();
    let mut violations = Vec::new();
    for (before, v, out) in served.iter() {
        if let Some(v) = v {
            let serial = base + *v as u64;
            if serial < *before {
                violations.push(format!(
                    "served serial {serial} after serial {before} was accepted:\n{out}"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    // The run did what it is for: held answers, older files, real lookups.
    let answered = served.iter().filter(|(_, v, _)| v.is_some()).count();
    assert!(
        answered >= N,
        "too few lookups answered: {answered}; the last:\n{}",
        served.last().map(|s| s.2.as_str()).unwrap_or_default()
    );
    assert!(mirror.shared.held.load(Ordering::SeqCst) > 10);
    assert!(mirror.shared.older.load(Ordering::SeqCst) > 10);
    for s in syncs.lock().unwrap().iter() {
        assert!(s.code.is_some(), "sync must end: {s}");
    }
    // Afterwards, a lookup serves a version at least as new as the floor.
    mirror.publish(N - 1);
    let last = floor_serial(&floor_file).expect("a floor was stored");
    let out = env.kw.keys_as_keyward(&user, None);
    let got = materials(&out.stdout);
    let v = got.first().and_then(|m| mats.iter().position(|k| k == m));
    assert!(
        v.is_some_and(|v| base + v as u64 >= last),
        "after the run (floor {last}): {out}"
    );
}
