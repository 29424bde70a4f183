//! `keyward sync` against a real nginx key directory.
//!
//! Each test warms a private cache with `keyward keys` (which fetches and
//! stores the entry), then runs `keyward sync` and checks both sides: what
//! nginx saw (access log: 200/304/404, If-None-Match) and what the cache
//! holds afterwards (entries, their `fetched_at`, no `.tmp-` leftovers).
//!
//! `bench_sync_1000_cached_users` is ignored by default (it measures, it does
//! not check behaviour); run it with
//! `cargo test --test integration sync::bench -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::support::keyward::make_cache_dir;
use crate::support::rsyslog::kv_field;
use crate::support::{ensure_system_user, Keyward, KwConfig, Nginx, Out, Rsyslog, SshKey, TestDir};

/// One test's world: a directory (nginx), a cache owned by `keyward`, a
/// private syslog, and an installed keyward configured for all three.
struct World {
    dir: TestDir,
    nginx: Nginx,
    syslog: Rsyslog,
    cache: PathBuf,
    kw: Keyward,
}

impl World {
    fn new() -> World {
        Self::with(|c| c)
    }

    fn with(tune: impl FnOnce(KwConfig) -> KwConfig) -> World {
        ensure_system_user("keyward");
        let dir = TestDir::new("sync");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        let nginx = Nginx::start();
        let syslog = Rsyslog::start();
        let config = tune(KwConfig::new(&cache, Some(&syslog.socket)).url(nginx.users_url()));
        let kw = Keyward::with_config(&config);
        World {
            dir,
            nginx,
            syslog,
            cache,
            kw,
        }
    }

    /// A fresh ed25519 key; returns its `TYPE BASE64` (what keyward prints).
    fn key(&self, name: &str) -> String {
        SshKey::ed25519(self.dir.path(), name).public_material()
    }

    /// Fetches `user` into the cache with `keyward keys` (as sshd would run it).
    fn warm(&self, user: &str) {
        let out = self.kw.keys_as_keyward(user, None);
        assert!(out.success(), "warming {user}: {out}");
        assert!(
            self.entry(user).is_some(),
            "no cache entry for {user} after keys"
        );
    }

    fn sync(&self, args: &[&str]) -> Out {
        let mut a = vec!["sync"];
        a.extend_from_slice(args);
        self.kw.run_as("keyward", &a)
    }

    fn entry(&self, user: &str) -> Option<CacheEntry> {
        CacheEntry::read(&self.cache.join(user))
    }

    fn tmp_files(&self) -> Vec<String> {
        tmp_files(&self.cache)
    }

    /// The `decision=sync…` summary lines logged so far.
    fn sync_records(&self) -> Vec<String> {
        self.syslog
            .lines_of("keyward")
            .into_iter()
            .filter(|l| l.msg.starts_with("decision=sync"))
            .map(|l| l.msg)
            .collect()
    }

    fn wait_sync_records(&self, n: usize) -> Vec<String> {
        let found = self.syslog.wait_for_n(n, Duration::from_secs(5), |l| {
            l.program == "keyward" && l.msg.starts_with("decision=sync")
        });
        found.into_iter().map(|l| l.msg).collect()
    }
}

/// The parts of a cache entry the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheEntry {
    fetched_at: u64,
    etag: Option<String>,
    body: String,
    raw: Vec<u8>,
}

impl CacheEntry {
    fn read(path: &Path) -> Option<CacheEntry> {
        let raw = fs::read(path).ok()?;
        let text = String::from_utf8(raw.clone()).expect("cache entry is UTF-8");
        let (header, body) = text.split_once("\n\n").expect("cache entry has a header");
        let mut fetched_at = None;
        let mut etag = None;
        for line in header.lines() {
            if let Some(v) = line.strip_prefix("fetched_at ") {
                fetched_at = v.parse().ok();
            }
            if let Some(v) = line.strip_prefix("etag ") {
                etag = Some(v.to_owned());
            }
        }
        Some(CacheEntry {
            fetched_at: fetched_at.expect("fetched_at in header"),
            etag,
            body: body.to_owned(),
            raw,
        })
    }
}

fn tmp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// A user name unique to this test run (POSIX portable, short).
fn user(tag: &str) -> String {
    format!("s{tag}{}", crate::support::unique())
}

/// The `TYPE BASE64` part of each printed key line.
fn key_set(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            format!("{} {}", f.next().unwrap_or(""), f.next().unwrap_or(""))
        })
        .collect()
}

/// The fields of the last sync record, e.g. `field(rec, "unchanged")`.
fn field(record: &str, key: &str) -> String {
    kv_field(record, key).unwrap_or_else(|| panic!("no {key}= in {record}"))
}

#[test]
fn not_modified_keeps_entries_and_refreshes_their_age() {
    let w = World::new();
    let users: Vec<String> = (0..3).map(|_| user("nm")).collect();
    let mut keys = Vec::new();
    for u in &users {
        let k = w.key(u);
        w.nginx.put_keys(u, &format!("{k} {u}@example\n"));
        w.warm(u);
        keys.push(k);
    }
    let before: Vec<CacheEntry> = users.iter().map(|u| w.entry(u).unwrap()).collect();
    for e in &before {
        assert!(
            e.etag.is_some(),
            "nginx sends an ETag; the entry keeps it: {e:?}"
        );
    }
    // fetched_at has a resolution of one second.
    std::thread::sleep(Duration::from_millis(1100));
    let requests_before = w.nginx.total();

    let out = w.sync(&[]);
    assert!(out.success(), "sync: {out}");

    let mut new: Vec<_> = w.nginx.accesses().split_off(requests_before);
    // First the index: this directory has none (404), so every
    // cached user gets its own conditional request, as before.
    assert_eq!(new.remove(0).uri, "/users/keyward.index", "{new:?}");
    assert_eq!(
        new.len(),
        users.len(),
        "one request per cached user: {new:?}"
    );
    for (u, e) in users.iter().zip(&before) {
        let a = new
            .iter()
            .find(|a| a.uri == format!("/users/{u}.keys"))
            .unwrap_or_else(|| panic!("no request for {u}: {new:?}"));
        assert_eq!(a.status, 304, "{a:?}");
        assert_eq!(
            a.if_none_match, e.etag,
            "conditional GET with the cached ETag"
        );
    }
    for ((u, old), k) in users.iter().zip(&before).zip(&keys) {
        let now = w
            .entry(u)
            .unwrap_or_else(|| panic!("{u}'s entry was dropped on a 304"));
        assert_eq!(now.body, old.body, "a 304 keeps the body");
        assert_eq!(now.etag, old.etag);
        assert!(
            now.fetched_at > old.fetched_at,
            "a 304 refreshes the age: {} -> {}",
            old.fetched_at,
            now.fetched_at
        );
        let served = w.kw.keys_as_keyward(u, None);
        assert!(served.success(), "{served}");
        assert_eq!(key_set(&served.stdout), BTreeSet::from([k.clone()]));
    }
    let rec = w.wait_sync_records(1).pop().expect("sync logs a summary");
    assert_eq!(field(&rec, "decision"), "sync", "{rec}");
    assert_eq!(field(&rec, "users"), "3", "{rec}");
    assert_eq!(field(&rec, "unchanged"), "3", "{rec}");
    assert_eq!(field(&rec, "failed"), "0", "{rec}");

    // A changed file is fetched (200) and replaces the entry.
    let k2 = w.key("nm-new");
    w.nginx.put_keys(&users[0], &format!("{k2} new\n"));
    let out = w.sync(&[]);
    assert!(out.success(), "sync: {out}");
    let last = w.nginx.accesses_for(&users[0]).pop().unwrap();
    assert_eq!(last.status, 200, "{last:?}");
    let served = w.kw.keys_as_keyward(&users[0], None);
    assert_eq!(key_set(&served.stdout), BTreeSet::from([k2]));
    let rec = w.wait_sync_records(2).pop().unwrap();
    assert_eq!(field(&rec, "updated"), "1", "{rec}");
    assert_eq!(field(&rec, "unchanged"), "2", "{rec}");
    assert!(w.tmp_files().is_empty(), "{:?}", w.tmp_files());
}

#[test]
fn users_removed_from_the_directory_are_dropped() {
    let w = World::new();
    let (keep, gone) = (user("rk"), user("rg"));
    for u in [&keep, &gone] {
        let k = w.key(u);
        w.nginx.put_keys(u, &format!("{k}\n"));
        w.warm(u);
    }
    w.nginx.remove_keys(&gone);

    // As root: keyward drops to [cache] owner by itself (the timer runs it
    // as keyward directly; an admin may type it as root).
    let out = w.kw.run(&["sync"]);
    assert!(out.success(), "sync: {out}");

    assert_eq!(w.nginx.accesses_for(&gone).pop().unwrap().status, 404);
    assert!(w.entry(&gone).is_none(), "a 404 removes the entry");
    assert!(w.entry(&keep).is_some(), "the other user is kept");
    let rec = w.wait_sync_records(1).pop().unwrap();
    assert_eq!(field(&rec, "removed"), "1", "{rec}");
    assert_eq!(field(&rec, "unchanged"), "1", "{rec}");
    // The next sync no longer asks for the removed user.
    let before = w.nginx.count(&gone);
    assert!(w.sync(&[]).success());
    assert_eq!(
        w.nginx.count(&gone),
        before,
        "a dropped user is not synced again"
    );
    // Entries written by the root run belong to keyward, not root.
    let md = fs::metadata(w.cache.join(&keep)).unwrap();
    let (uid, _) = crate::support::user_ids("keyward").unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), uid);
}

#[test]
fn directory_down_or_failing_leaves_every_entry_intact() {
    let w = World::new();
    let users: Vec<String> = (0..4).map(|_| user("dd")).collect();
    for u in &users {
        let k = w.key(u);
        w.nginx.put_keys(u, &format!("{k}\n"));
        w.warm(u);
    }
    let snapshot = |w: &World| -> Vec<Vec<u8>> {
        users
            .iter()
            .map(|u| w.entry(u).expect("entry").raw)
            .collect()
    };
    let before = snapshot(&w);
    std::thread::sleep(Duration::from_millis(1100));

    // 1. The directory answers 503 for everyone.
    let failing = Nginx::builder()
        .location("location /users/ { return 503; }")
        .start();
    w.kw.write_config(
        &KwConfig::new(&w.cache, Some(&w.syslog.socket))
            .url(failing.users_url())
            .to_toml(),
    );
    let out = w.sync(&[]);
    assert!(
        !out.success(),
        "sync must fail when the directory fails: {out}"
    );
    // A 503 is an answer for that path: the mirror stays up and each
    // user's request gets its own 503.
    assert!(failing.total() >= 1, "{:?}", failing.accesses());
    assert_eq!(snapshot(&w), before, "a 5xx never touches an entry");

    // 2. Nothing listens any more.
    let dead = failing.users_url();
    drop(failing);
    let out = w.sync(&[]);
    assert!(
        !out.success(),
        "sync must fail when the directory is down: {out}"
    );
    assert_eq!(
        snapshot(&w),
        before,
        "a network error never touches an entry"
    );
    let recs = w.wait_sync_records(2);
    let rec = recs.last().unwrap();
    assert_eq!(field(rec, "failed"), users.len().to_string(), "{rec}");
    assert_eq!(field(rec, "removed"), "0", "{rec}");
    assert!(rec.contains("reason="), "the first failure is named: {rec}");
    assert!(w.tmp_files().is_empty(), "{:?}", w.tmp_files());

    // The cached keys are still served (fresh within ttl).
    for u in &users {
        let out = w.kw.keys_as_keyward(u, None);
        assert!(out.success() && !out.stdout.is_empty(), "{u}: {out}");
    }
    // Mirrors: a dead first mirror, the real directory second: sync succeeds.
    w.kw.write_config(
        &KwConfig::new(&w.cache, Some(&w.syslog.socket))
            .url(dead)
            .url(w.nginx.users_url())
            .to_toml(),
    );
    let out = w.sync(&[]);
    assert!(out.success(), "second mirror answers: {out}");
}

#[test]
fn sync_user_fetches_one_user_and_empty_cache_is_fine() {
    let w = World::new();
    let out = w.sync(&[]);
    assert!(out.success(), "nothing cached, nothing to do: {out}");
    assert_eq!(w.nginx.total(), 0);

    let u = user("one");
    let k = w.key(&u);
    w.nginx.put_keys(&u, &format!("{k}\n"));
    let out = w.sync(&["--user", &u]);
    assert!(out.success(), "{out}");
    assert!(w.entry(&u).is_some(), "--user caches a user not cached yet");
    let out = w.sync(&["--user", "../etc/passwd"]);
    assert!(!out.success(), "invalid user names are refused: {out}");
    assert_eq!(w.nginx.total(), 1);
}

/// Replaces a file atomically (temp + rename) with a distinct mtime, so
/// nginx never serves a half-written file and its ETag always changes.
fn put_atomic(nginx: &Nginx, user: &str, text: &str, mtime: SystemTime) {
    let dir = nginx.root.join("users");
    fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{user}.tmp"));
    fs::write(&tmp, text).unwrap();
    let f = fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    fs::rename(&tmp, dir.join(format!("{user}.keys"))).unwrap();
}

#[test]
fn concurrent_keys_during_sync_never_see_a_torn_entry() {
    const KEYS_RUNS: usize = 200;
    const KEYS_THREADS: usize = 8;
    let w = World::new();
    let hot = user("hot");
    // Three valid answers of very different sizes: a reader that saw a mix
    // of two writes would print none of them.
    let ks: Vec<String> = (0..40).map(|i| w.key(&format!("hot{i}"))).collect();
    let sets: Vec<Vec<String>> = vec![ks[..1].to_vec(), ks[1..3].to_vec(), ks[3..].to_vec()];
    let body = |i: usize| -> String {
        sets[i % sets.len()]
            .iter()
            .map(|k| format!("{k} set{}\n", i % sets.len()))
            .collect()
    };
    let t0 = SystemTime::now();
    put_atomic(&w.nginx, &hot, &body(0), t0);
    w.warm(&hot);
    // Other cached users make each sync run longer (and rewrite more).
    for k in ks.iter().take(15) {
        let u = user("bg");
        w.nginx.put_keys(&u, &format!("{k}\n"));
        w.warm(&u);
    }
    let cached = fs::read_dir(&w.cache).unwrap().count();
    let valid: Vec<BTreeSet<String>> = sets.iter().map(|s| s.iter().cloned().collect()).collect();

    let stop = AtomicBool::new(false);
    let sync_runs = AtomicUsize::new(0);
    let sync_failures = Mutex::new(Vec::new());
    let bad = Mutex::new(Vec::new());
    let requests_before = w.nginx.total();
    let is_hot = |l: &crate::support::rsyslog::LogLine| {
        l.program == "keyward" && l.msg.contains(&format!("user={hot} "))
    };
    // The warm-up `keys` run logged source=directory: skip what is there.
    let logged_before = w.syslog.wait_for_n(1, Duration::from_secs(5), is_hot).len();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 1;
            while !stop.load(Ordering::SeqCst) || sync_runs.load(Ordering::SeqCst) < 3 {
                put_atomic(&w.nginx, &hot, &body(i), t0 + Duration::from_secs(i as u64));
                i += 1;
                let out = w.sync(&["--jobs", "4"]);
                if !out.success() {
                    sync_failures.lock().unwrap().push(out.to_string());
                }
                sync_runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Let the first sync start before the readers.
        while sync_runs.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        s.spawn(|| {
            std::thread::scope(|r| {
                for _ in 0..KEYS_THREADS {
                    r.spawn(|| {
                        for _ in 0..KEYS_RUNS / KEYS_THREADS {
                            let out = w.kw.keys_as_keyward(&hot, None);
                            let got = key_set(&out.stdout);
                            if !out.success() || !valid.contains(&got) {
                                bad.lock().unwrap().push(out.to_string());
                            }
                        }
                    });
                }
            });
            stop.store(true, Ordering::SeqCst);
        });
        // Bounded: never spin forever if something hangs.
        while !stop.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(300), "readers hung");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let bad = bad.into_inner().unwrap();
    assert!(
        bad.is_empty(),
        "{} torn or failed reads, first: {}",
        bad.len(),
        bad[0]
    );
    let failures = sync_failures.into_inner().unwrap();
    assert!(failures.is_empty(), "sync failed: {}", failures[0]);
    let runs = sync_runs.load(Ordering::SeqCst);
    assert!(runs >= 3, "sync ran only {runs} times");
    // Every request came from sync (one per cached user per run): no `keys`
    // run ever found the entry missing or corrupt and went to the network.
    // (Plus one index request per run: this directory has none.)
    assert_eq!(
        w.nginx.total() - requests_before,
        runs * (cached + 1),
        "requests other than sync's were made"
    );
    // And syslog says every keys run answered from the cache.
    let keys_lines: Vec<String> = w
        .syslog
        .wait_for_n(logged_before + KEYS_RUNS, Duration::from_secs(10), is_hot)
        .into_iter()
        .skip(logged_before)
        .map(|l| l.msg)
        .filter(|m| m.starts_with("decision=serve"))
        .collect();
    assert!(
        keys_lines.len() >= KEYS_RUNS,
        "{} serve lines",
        keys_lines.len()
    );
    for m in &keys_lines {
        assert!(m.contains("source=cache"), "{m}");
        assert!(!m.contains("warning="), "{m}");
    }
    assert!(
        w.tmp_files().is_empty(),
        "temp files left: {:?}",
        w.tmp_files()
    );
    eprintln!("concurrent: {runs} sync runs over {cached} users during {KEYS_RUNS} keys runs");
}

/// Measures `keyward sync` over 1,000 cached users that are all unchanged
/// (every request a 304), against the local nginx. Prints users/s.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_sync_1000_cached_users() {
    const N: usize = 1000;
    let w = World::with(|c| c.ttl("1h").max_stale("3d"));
    let users: Vec<String> = (0..N).map(|i| format!("bench{i:04}")).collect();
    let keys: Vec<String> = (0..20).map(|i| w.key(&format!("b{i}"))).collect();
    for (i, u) in users.iter().enumerate() {
        w.nginx
            .put_keys(u, &format!("{} {u}\n", keys[i % keys.len()]));
    }
    // Warm the cache: the first sync of each user is a 200.
    for chunk in users.chunks(100) {
        for u in chunk {
            let out = w.sync(&["--user", u]);
            assert!(out.success(), "{out}");
        }
    }
    assert_eq!(
        fs::read_dir(&w.cache).unwrap().count(),
        N,
        "every user cached"
    );
    // Also the packaged release binary when scripts/package.sh has run.
    let release =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/package/release/keyward-pkg/keyward");
    for (label, bin) in [("test build", None), ("release", Some(release))] {
        let kw_bin;
        let runner: &Keyward = match &bin {
            None => &w.kw,
            Some(p) if p.exists() => {
                kw_bin = Keyward::install();
                crate::support::must(
                    std::process::Command::new("install")
                        .args(["-m", "755"])
                        .arg(p)
                        .arg(&kw_bin.bin),
                );
                fs::copy(&w.kw.config, &kw_bin.config).unwrap();
                &kw_bin
            }
            Some(_) => continue,
        };
        for jobs in ["8", "16"] {
            let before = w.nginx.total();
            let t = Instant::now();
            let out = runner.run_as("keyward", &["sync", "--jobs", jobs]);
            let elapsed = t.elapsed();
            assert!(out.success(), "{out}");
            let new = w.nginx.accesses().split_off(before);
            assert_eq!(new.len(), N);
            assert!(new.iter().all(|a| a.status == 304), "all 304");
            eprintln!(
                "bench ({label}, --jobs {jobs}): {N} users in {:.3} s = {:.0} users/s",
                elapsed.as_secs_f64(),
                N as f64 / elapsed.as_secs_f64()
            );
        }
    }
    let recs = w.sync_records();
    assert!(!recs.is_empty());
}
