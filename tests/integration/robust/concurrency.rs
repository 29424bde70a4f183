//! Concurrency: thousands of lookups as `keyward` while `keyward sync`
//! rewrites the same cache and the directory flips between two key sets.
//! Every answer is exactly one of the two sets; nothing is torn or mixed.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::support::cachefiles::*;
use crate::support::checks::*;
use crate::support::rsyslog::LogLine;
use crate::support::*;

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
