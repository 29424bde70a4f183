//! The directory index against a real nginx, counting requests
//! in nginx's access log.
//!
//! The tree is built with `keyward publish` (unsigned, or signed with a
//! real `ssh-keygen -Y sign`), the cache is warmed through the login path
//! (`keyward keys` as the `keyward` user, as sshd runs it), then `keyward
//! sync` is checked on both sides: what nginx saw and what the cache holds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::keyward::{make_cache_dir, toml_str};
use crate::support::nginx::Access;
use crate::support::rsyslog::kv_field;
use crate::support::*;

/// nginx, a private syslog, a cache owned by `keyward`, an installed
/// keyward, a source folder for `publish` and a few real keys.
struct World {
    dir: TestDir,
    nginx: Nginx,
    syslog: Rsyslog,
    cache: PathBuf,
    kw: Keyward,
    config: KwConfig,
    src: PathBuf,
    keys: Vec<String>,
}

impl World {
    fn new(nginx: Nginx, tune: impl FnOnce(KwConfig) -> KwConfig) -> World {
        ensure_system_user("keyward");
        let dir = TestDir::new("index");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        let syslog = Rsyslog::start();
        let config = tune(
            KwConfig::new(&cache, Some(&syslog.socket))
                .url(nginx.users_url())
                .ttl("1h")
                .max_stale("3d"),
        );
        let kw = Keyward::with_config(&config);
        let src = dir.subdir("src");
        let keys = (0..8)
            .map(|i| SshKey::ed25519(dir.path(), &format!("k{i}")).public_line())
            .collect();
        World {
            dir,
            nginx,
            syslog,
            cache,
            kw,
            config,
            src,
            keys,
        }
    }

    /// Writes `user`'s source file (key `k`, a comment that makes each
    /// user's body its own).
    fn source(&self, user: &str, k: usize, tag: &str) {
        write_file(
            &self.src.join(format!("{user}.keys")),
            format!("{} {user}-{tag}\n", self.keys[k % self.keys.len()]),
            0o644,
        );
    }

    /// `keyward publish SRC www/users [--signer KEY]`, then the tree made
    /// readable for nginx.
    fn publish(&self, signer: Option<&SshKey>) -> Out {
        let out_dir = self.nginx.root.join("users");
        // The full index's path (deltas: delta_sync.rs).
        let mut args = vec![
            "publish".to_owned(),
            self.src.display().to_string(),
            out_dir.display().to_string(),
            "--delta-keep".to_owned(),
            "0".to_owned(),
        ];
        if let Some(s) = signer {
            args.extend(["--signer".into(), s.path.display().to_string()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.kw.run(&a);
        assert!(out.success(), "publish: {out}");
        must(
            Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&self.nginx.root),
        );
        out
    }

    fn warm(&self, users: &[String]) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(u) = users.get(i) else { break };
                    let out = self.kw.keys_as_keyward(u, None);
                    assert!(
                        out.success() && !out.stdout.is_empty(),
                        "warming {u}: {out}"
                    );
                });
            }
        });
    }

    /// `keyward sync` as `keyward`; its summary record and the requests
    /// nginx saw meanwhile.
    fn sync(&self) -> (Out, String, Vec<Access>) {
        self.sync_with(&[])
    }

    /// `sync` with extra arguments (`--poll`).
    fn sync_with(&self, extra: &[&str]) -> (Out, String, Vec<Access>) {
        let before = self.nginx.total();
        let n = self.sync_records().len();
        let mut args = vec!["sync", "--jobs", "8"];
        args.extend_from_slice(extra);
        let out = self.kw.run_as("keyward", &args);
        let recs = self.syslog.wait_for_n(n + 1, Duration::from_secs(10), |l| {
            l.program == "keyward" && l.msg.starts_with("decision=sync")
        });
        assert_eq!(recs.len(), n + 1, "one summary per sync: {out}");
        let rec = recs.last().unwrap().msg.clone();
        (out, rec, self.nginx.accesses().split_off(before))
    }

    fn sync_records(&self) -> Vec<String> {
        self.syslog
            .lines_of("keyward")
            .into_iter()
            .filter(|l| l.msg.starts_with("decision=sync"))
            .map(|l| l.msg)
            .collect()
    }

    /// `keyward keys USER` as keyward and its one syslog line.
    fn keys(&self, user: &str) -> (Out, String) {
        let is = |l: &rsyslog::LogLine| {
            l.program == "keyward" && l.field("user").as_deref() == Some(user)
        };
        let n = self.syslog.lines().into_iter().filter(is).count();
        let out = self.kw.keys_as_keyward(user, None);
        let lines = self.syslog.wait_for_n(n + 1, Duration::from_secs(10), is);
        assert_eq!(lines.len(), n + 1, "{out}");
        (out, lines.last().unwrap().msg.clone())
    }

    fn entry(&self, user: &str) -> PathBuf {
        self.cache.join(user)
    }

    fn stored_index(&self) -> PathBuf {
        self.cache.join(".keyward-index")
    }

    /// Rewrites the config with `signers` added to `[directory]`.
    fn require_signers(&self, signer: &SshKey) {
        let toml = self.config.to_toml().replacen(
            "[directory]\n",
            &format!(
                "[directory]\nsigners = [{}]\n",
                toml_str(&signer.public_line())
            ),
            1,
        );
        self.kw.write_config(&toml);
    }
}

fn field(rec: &str, key: &str) -> String {
    kv_field(rec, key).unwrap_or_else(|| panic!("no {key}= in {rec}"))
}

fn fetched_at(entry: &Path) -> u64 {
    let text = fs::read_to_string(entry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("fetched_at "))
        .and_then(|v| v.parse().ok())
        .expect("fetched_at")
}

fn users(tag: &str, n: usize) -> Vec<String> {
    let id = unique();
    (0..n).map(|i| format!("i{tag}{id}u{i:04}")).collect()
}

/// The acceptance numbers: 1,000 cached users, nothing changed = 1 request;
/// 3 changed = 4; a user dropped from the index is dropped from the cache
/// and then answered "no keys" from the index without a request.
#[test]
fn sync_with_an_index_costs_one_request_plus_one_per_changed_user() {
    const N: usize = 1000;
    let w = World::new(Nginx::start(), |c| c);
    let all = users("a", N);
    for (i, u) in all.iter().enumerate() {
        w.source(u, i, "v1");
    }
    let published = w.publish(None);
    assert!(
        published.stdout.contains("keyward.index"),
        "publish reports the index: {published}"
    );
    let index_file = w.nginx.root.join("users/keyward.index");
    let text = fs::read_to_string(&index_file).unwrap();
    assert_eq!(
        text.lines().count(),
        N + 1,
        "a header and one line per user"
    );
    assert!(w.nginx.root.join("users/keyward.index.gz").exists());
    w.warm(&all);
    assert_eq!(w.nginx.total(), N, "warming: one request per user");

    // First sync: the index is new (200); every entry is the listed
    // version, so no user is asked for.
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        (new[0].uri.as_str(), new[0].status),
        ("/users/keyward.index", 200)
    );
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    assert_eq!(field(&rec, "requests"), "1", "{rec}");
    assert_eq!(field(&rec, "unchanged"), N.to_string(), "{rec}");
    assert!(w.stored_index().exists(), "the index is kept in the cache");

    // Nothing changed: exactly one conditional request (304), and every
    // cached entry's age is refreshed.
    std::thread::sleep(Duration::from_millis(1100));
    let sample = w.entry(&all[N / 2]);
    let before = fetched_at(&sample);
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 1, "nothing changed = 1 request: {new:?}");
    assert_eq!(new[0].status, 304, "{new:?}");
    assert!(new[0].if_none_match.is_some(), "conditional: {new:?}");
    assert_eq!(field(&rec, "index"), "304", "{rec}");
    assert_eq!(
        field(&rec, "mirror"),
        w.nginx.url("/users/keyward.index"),
        "{rec}"
    );
    assert_eq!(field(&rec, "unchanged"), N.to_string(), "{rec}");
    assert!(
        fetched_at(&sample) > before,
        "a 304 refreshes every entry's age"
    );

    // Three users changed: 1 + 3 requests, and the new keys are served.
    let changed = [&all[3], &all[500], &all[999]];
    for u in changed {
        w.source(u, 7, "v2");
    }
    w.publish(None);
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 4, "3 users changed = 4 requests: {new:?}");
    assert_eq!(new[0].uri, "/users/keyward.index");
    for u in changed {
        let a = new.iter().find(|a| a.uri == format!("/users/{u}.keys"));
        assert_eq!(a.map(|a| a.status), Some(200), "{u}: {new:?}");
        let (served, line) = w.keys(u);
        assert!(served.stdout.contains(&format!("{u}-v2")), "{served}");
        assert_eq!(field(&line, "source"), "cache", "{line}");
    }
    assert_eq!(field(&rec, "updated"), "3", "{rec}");
    assert_eq!(field(&rec, "unchanged"), (N - 3).to_string(), "{rec}");

    // A user removed from the index is removed from the cache (unsigned).
    let gone = &all[42];
    fs::remove_file(w.src.join(format!("{gone}.keys"))).unwrap();
    w.publish(None);
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(
        new.len(),
        1,
        "the removal costs no request of its own: {new:?}"
    );
    assert_eq!(field(&rec, "removed"), "1", "{rec}");
    assert!(!w.entry(gone).exists(), "{gone} is removed from the cache");
    assert!(w.entry(&all[43]).exists());

    // The login path answers users the (fresh) index does not list with
    // "no keys", without a request; listed users missing from the cache are
    // fetched as before.
    let before = w.nginx.total();
    let (out, line) = w.keys(gone);
    assert!(out.success() && out.stdout.is_empty(), "{out}");
    assert_eq!(field(&line, "decision"), "nokeys", "{line}");
    assert_eq!(field(&line, "source"), "index", "{line}");
    let stranger = format!("i{}nobody", unique());
    let (out, line) = w.keys(&stranger);
    assert!(out.success() && out.stdout.is_empty(), "{out}");
    assert_eq!(field(&line, "source"), "index", "{line}");
    assert_eq!(w.nginx.total(), before, "no request for unlisted users");
    fs::remove_file(w.entry(&all[7])).unwrap();
    let (out, line) = w.keys(&all[7]);
    assert!(out.success() && !out.stdout.is_empty(), "{out}");
    assert_eq!(field(&line, "source"), "directory", "{line}");
    assert_eq!(
        field(&line, "mirror"),
        w.nginx.url(&format!("/users/{}.keys", all[7])),
        "the log names the mirror that answered: {line}"
    );
    assert_eq!(w.nginx.total(), before + 1);
}

/// The packaged timer polls every 30 s with `sync --poll`: one request
/// when nothing changed, no write for a young entry that agrees with the
/// index, and a changed or removed user acted on in the same run; without an
/// index, a young entry costs no request either.
#[test]
fn a_poll_costs_one_request_and_acts_on_a_change_at_once() {
    let w = World::new(Nginx::start(), |c| c);
    let all = users("p", 20);
    for (i, u) in all.iter().enumerate() {
        w.source(u, i, "v1");
    }
    w.publish(None);
    w.warm(&all);
    let sample = w.entry(&all[5]);
    let warmed_at = fetched_at(&sample);
    std::thread::sleep(Duration::from_millis(1100));

    let (out, rec, new) = w.sync_with(&["--poll"]);
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 1, "the new index only: {new:?}");
    assert_eq!(field(&rec, "unchanged"), "20", "{rec}");
    let (out, rec, new) = w.sync_with(&["--poll"]);
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 1, "nothing changed = 1 request: {new:?}");
    assert_eq!(new[0].status, 304, "{new:?}");
    assert_eq!(field(&rec, "requests"), "1", "{rec}");
    assert_eq!(
        fetched_at(&sample),
        warmed_at,
        "a young entry that agrees with the index is not rewritten"
    );

    // One user changed and one removed: both in this very poll.
    w.source(&all[3], 7, "v2");
    fs::remove_file(w.src.join(format!("{}.keys", all[9]))).unwrap();
    w.publish(None);
    let (out, rec, new) = w.sync_with(&["--poll"]);
    assert!(out.success(), "{out}");
    let uris: Vec<&str> = new.iter().map(|a| a.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "/users/keyward.index".to_owned(),
            format!("/users/{}.keys", all[3])
        ],
        "{new:?}"
    );
    assert_eq!(field(&rec, "updated"), "1", "{rec}");
    assert_eq!(field(&rec, "removed"), "1", "{rec}");
    assert!(!w.entry(&all[9]).exists());
    let (served, _) = w.keys(&all[3]);
    assert!(
        served.stdout.contains(&format!("{}-v2", all[3])),
        "{served}"
    );

    // A plain sync still checks everyone (the index's 304 refreshes ages).
    let (out, _, _) = w.sync();
    assert!(out.success(), "{out}");
    assert!(fetched_at(&sample) > warmed_at, "plain sync refreshes");

    // Without an index: a young entry costs no request under --poll, and a
    // plain sync asks for each user.
    w.nginx.remove("users/keyward.index");
    let (out, _, _) = w.sync();
    assert!(out.success(), "{out}");
    let (out, _, new) = w.sync_with(&["--poll"]);
    assert!(out.success(), "{out}");
    let per_user = new.iter().filter(|a| a.uri.ends_with(".keys")).count();
    assert_eq!(per_user, 0, "young entries: no per-user request: {new:?}");
}

/// A directory that stops publishing an index: the stored copy is dropped
/// (the login path must never answer from an index nobody maintains) and
/// sync asks for every user again, as before.
#[test]
fn a_directory_without_an_index_works_as_before() {
    let w = World::new(Nginx::start(), |c| c);
    let all = users("n", 3);
    for (i, u) in all.iter().enumerate() {
        w.source(u, i, "v1");
    }
    w.publish(None);
    w.warm(&all);
    let (out, rec, _) = w.sync();
    assert!(
        out.success() && field(&rec, "index") == "200",
        "{out}\n{rec}"
    );
    assert!(w.stored_index().exists());

    w.nginx.remove("users/keyward.index");
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(field(&rec, "index"), "none", "{rec}");
    // Index 404, one per user, then the revocation list (asked for on its
    // own without an index; this directory has none: 404).
    assert_eq!(
        new.len(),
        2 + all.len(),
        "index 404, then one per user, then the list: {new:?}"
    );
    assert_eq!(new[0].status, 404);
    assert!(
        new[1..=all.len()].iter().all(|a| a.status == 304),
        "{new:?}"
    );
    assert_eq!(new[1 + all.len()].uri, "/users/revoked.list", "{new:?}");
    assert!(!w.stored_index().exists(), "the stale index is forgotten");
    // Unlisted users go to the directory again.
    let before = w.nginx.total();
    let (_, line) = w.keys(&format!("i{}nobody", unique()));
    assert_eq!(field(&line, "source"), "directory", "{line}");
    assert_eq!(w.nginx.total(), before + 1);

    // `index = false`: not even asked for.
    let off = KwConfig {
        index: Some("false".into()),
        ..w.config.clone()
    };
    w.kw.write_config(&off.to_toml());
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(field(&rec, "index"), "off", "{rec}");
    // One per cached entry, the stranger's remembered 404 included, and
    // the revocation list.
    assert_eq!(new.len(), all.len() + 2, "{new:?}");
    assert!(
        new.iter().all(|a| !a.uri.contains("keyward.index")),
        "{new:?}"
    );
}

/// nginx `gzip_static`: the client asks for gzip (only for the index) and
/// decodes it. Without the plain file, nginx serves the `.gz` only to a
/// client that accepts gzip, so a working sync proves both.
#[test]
fn the_index_travels_gzip_compressed() {
    let nginx = Nginx::builder().server_line("gzip_static on;").start();
    let w = World::new(nginx, |c| c);
    let all = users("z", 2);
    for (i, u) in all.iter().enumerate() {
        w.source(u, i, "v1");
    }
    w.publish(None);
    w.warm(&all);
    w.nginx.remove("users/keyward.index");
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    assert_eq!(new.len(), 1, "{new:?}");
    let stored = fs::read_to_string(w.stored_index()).unwrap();
    assert!(
        stored.contains("\n\n#keyward-index "),
        "stored decoded: {stored}"
    );
}

/// Signed mode: the index is signed like the entries. A user dropped from
/// it loses the entry but never the rollback floor (an older signed file is
/// still refused); a forged index removes nobody.
#[test]
fn signed_index_drops_users_behind_the_rollback_floor() {
    let w = World::new(Nginx::start(), |c| c.timeout("5s"));
    let signer = SshKey::ed25519(w.dir.path(), "signer");
    w.require_signers(&signer);
    let all = users("s", 3);
    for (i, u) in all.iter().enumerate() {
        w.source(u, i, "v1");
    }
    w.publish(Some(&signer));
    let victim = &all[1];
    // Keep the first signed file of the victim: the replay of later.
    let old_body = fs::read(w.nginx.root.join(format!("users/{victim}.keys"))).unwrap();
    let old_sig = fs::read(w.nginx.root.join(format!("users/{victim}.keys.sig"))).unwrap();
    // A newer file for the victim (new key): a new serial.
    w.source(victim, 5, "v2");
    std::thread::sleep(Duration::from_millis(1100)); // serial = now
    let out = w.publish(Some(&signer));
    assert!(out.stdout.contains("index"), "{out}");
    w.warm(&all);
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}\n{rec}");
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    let uris: Vec<&str> = new.iter().map(|a| a.uri.as_str()).collect();
    assert_eq!(uris, ["/users/keyward.index", "/users/keyward.index.sig"]);
    let (out, _, new) = w.sync();
    assert!(out.success());
    assert_eq!(
        new.len(),
        1,
        "unchanged: the signature is not fetched again: {new:?}"
    );
    let floor = crate::support::keyward::state_dir_of(&w.cache)
        .join("keys")
        .join(victim);
    let floor_text = fs::read_to_string(&floor).expect("the victim's floor");

    // Republish without the victim: the others keep their files and
    // serials (nothing to fetch), the victim's entry goes, its floor stays.
    fs::remove_file(w.src.join(format!("{victim}.keys"))).unwrap();
    let keep = fs::read(w.nginx.root.join(format!("users/{}.keys", all[0]))).unwrap();
    w.publish(Some(&signer));
    assert_eq!(
        fs::read(w.nginx.root.join(format!("users/{}.keys", all[0]))).unwrap(),
        keep,
        "an unchanged user is not re-signed"
    );
    let (out, rec, new) = w.sync();
    assert!(out.success(), "{out}");
    assert_eq!(new.len(), 2, "index + its signature only: {new:?}");
    assert_eq!(field(&rec, "removed"), "1", "{rec}");
    assert!(!w.entry(victim).exists());
    assert_eq!(
        fs::read_to_string(&floor).unwrap(),
        floor_text,
        "the floor is kept"
    );
    let (out, line) = w.keys(victim);
    assert!(out.success() && out.stdout.is_empty(), "{out}");
    assert_eq!(field(&line, "source"), "index", "{line}");

    // A mirror replays the victim's older, validly signed file: refused by
    // the floor (asked for directly, past the index).
    w.nginx.put(&format!("users/{victim}.keys"), &old_body);
    w.nginx.put(&format!("users/{victim}.keys.sig"), &old_sig);
    must(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&w.nginx.root),
    );
    let out = w.kw.run_as("keyward", &["sync", "--user", victim]);
    assert!(!out.success(), "the replay must be refused: {out}");
    // (The lookup above remembered "no keys"; that is all there is.)
    let entry = fs::read_to_string(w.entry(victim)).unwrap_or_default();
    assert!(
        !entry.contains("status 200"),
        "a rollback grants nothing: {entry}"
    );
    let (out, line) = w.keys(victim);
    assert!(
        out.success() && out.stdout.is_empty(),
        "{out}\n{line}\n{entry}"
    );
    let recs = w.sync_records();
    assert!(
        recs.last()
            .unwrap()
            .contains("lower than the highest accepted serial"),
        "{recs:?}"
    );

    // A forged index (a line added, the old signature): refused, and the
    // sync falls back to asking for every user; nobody is removed.
    let idx = w.nginx.root.join("users/keyward.index");
    let mut forged = fs::read_to_string(&idx).unwrap();
    forged = forged.replace(&format!("{} ", all[2]), &format!("{}x ", all[2]));
    w.nginx.put("users/keyward.index", &forged);
    must(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&w.nginx.root),
    );
    let (_, rec, _) = w.sync();
    assert_eq!(field(&rec, "index"), "unusable", "{rec}");
    assert!(field(&rec, "index_error").contains("signature"), "{rec}");
    assert_eq!(field(&rec, "removed"), "0", "{rec}");
    assert_eq!(field(&rec, "unchanged"), "2", "{rec}");
    // The one failure: the victim (its remembered "no keys" is asked for
    // on its own now), whose replayed file is refused again.
    assert_eq!(field(&rec, "failed"), "1", "{rec}");
    assert!(field(&rec, "reason").contains("rollback refused"), "{rec}");
    for u in [&all[0], &all[2]] {
        let e = fs::read_to_string(w.entry(u)).unwrap();
        assert!(e.contains("status 200"), "{u} kept: {e}");
    }
}

/// Two cached users, `a` and `b`, from a signed index that lists both
/// (serial s2); `old` is the earlier index (serial s1 < s2) that lists
/// `a` only, kept with its signature.
fn two_users_signed(w: &World, signer: &SshKey) -> (Vec<String>, Vec<u8>, Vec<u8>) {
    w.require_signers(signer);
    let all = users("f", 2);
    w.source(&all[0], 0, "v1");
    w.publish(Some(signer));
    let old = fs::read(w.nginx.root.join("users/keyward.index")).unwrap();
    let old_sig = fs::read(w.nginx.root.join("users/keyward.index.sig")).unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // serial = now
    w.source(&all[1], 1, "v1");
    w.publish(Some(signer));
    w.warm(&all);
    let (out, rec, _) = w.sync();
    assert!(out.success(), "{out}\n{rec}");
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    (all, old, old_sig)
}

/// Serves `text` as the index with `sig` (None: no signature).
fn serve_index(w: &World, text: &[u8], sig: Option<&[u8]>) {
    w.nginx.put("users/keyward.index", text);
    match sig {
        Some(s) => {
            w.nginx.put("users/keyward.index.sig", s);
        }
        None => w.nginx.remove("users/keyward.index.sig"),
    }
    must(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&w.nginx.root),
    );
}

/// An unsigned 404 for the index removes the stored copy but not the
/// index's rollback floor: an older, validly signed index that omits a
/// user is refused afterwards, and the user keeps the cached entry.
#[test]
fn an_unsigned_404_for_the_index_does_not_forget_its_floor() {
    let w = World::new(Nginx::start(), |c| c.timeout("5s"));
    let signer = SshKey::ed25519(w.dir.path(), "signer");
    let (all, old, old_sig) = two_users_signed(&w, &signer);

    w.nginx.remove("users/keyward.index");
    w.nginx.remove("users/keyward.index.sig");
    let (out, rec, _) = w.sync();
    assert!(out.success(), "{out}\n{rec}");
    assert_eq!(field(&rec, "index"), "none", "{rec}");
    assert!(!w.stored_index().exists(), "the copy goes after a 404");

    serve_index(&w, &old, Some(&old_sig));
    let (_, rec, _) = w.sync();
    assert_eq!(field(&rec, "index"), "unusable", "{rec}");
    assert!(
        rec.contains("lower than the highest accepted serial"),
        "the older index is refused as a rollback: {rec}"
    );
    assert_eq!(field(&rec, "removed"), "0", "{rec}");
    assert!(w.entry(&all[1]).exists(), "b is not removed on its word");
    let (out, _) = w.keys(&all[1]);
    assert!(out.success() && !out.stdout.is_empty(), "{out}");
}

/// While signatures are required, an index without a signature, or one
/// with a new (higher) serial signed by a key that is not a signer, is
/// refused, and a sync removes no cached user on its word.
#[test]
fn an_unsigned_or_forged_index_removes_nobody() {
    let w = World::new(Nginx::start(), |c| c.timeout("5s"));
    let signer = SshKey::ed25519(w.dir.path(), "signer");
    let stranger = SshKey::ed25519(w.dir.path(), "stranger");
    let (all, _, _) = two_users_signed(&w, &signer);
    let current = fs::read_to_string(w.nginx.root.join("users/keyward.index")).unwrap();
    let current_sig = fs::read(w.nginx.root.join("users/keyward.index.sig")).unwrap();
    // The current index without b's line, with a serial far ahead.
    let mut lines: Vec<String> = current
        .lines()
        .filter(|l| !l.starts_with(&format!("{} ", all[1])))
        .map(str::to_owned)
        .collect();
    let serial = kv_field(&lines[0], "serial").unwrap();
    let higher = serial.parse::<u64>().unwrap() + 1_000_000;
    lines[0] = lines[0].replace(&format!("serial={serial}"), &format!("serial={higher}"));
    let forged = format!("{}\n", lines.join("\n"));

    let cases: [(&str, Option<Vec<u8>>, &str); 2] = [
        ("unsigned", None, ".sig"),
        (
            "signed by a stranger",
            Some(crate::signed::sign(
                w.dir.path(),
                &stranger,
                "keyward",
                &forged,
            )),
            "not a configured signer",
        ),
    ];
    for (name, sig, why) in cases {
        serve_index(&w, forged.as_bytes(), sig.as_deref());
        let (_, rec, _) = w.sync();
        assert_eq!(field(&rec, "index"), "unusable", "{name}: {rec}");
        assert!(rec.contains(why), "{name}: {rec}");
        assert_eq!(field(&rec, "removed"), "0", "{name}: {rec}");
        assert!(w.entry(&all[1]).exists(), "{name}: b is kept");
        let (out, line) = w.keys(&all[1]);
        assert!(
            out.success() && !out.stdout.is_empty(),
            "{name}: {out}\n{line}"
        );
    }
    // The real index is accepted again: the forged serial was never a floor.
    serve_index(&w, current.as_bytes(), Some(&current_sig));
    let (out, rec, _) = w.sync();
    assert!(out.success(), "{out}\n{rec}");
    assert_ne!(field(&rec, "index"), "unusable", "{rec}");
}
