//! `keyward sync` metrics: the textfile after real syncs against
//! nginx, read by the real node-exporter textfile collector (Debian's
//! prometheus-node-exporter, unpacked into a test directory and started on
//! 127.0.0.1 only), and the exit codes of sync: 0 all refreshed, 1 some
//! users failed, 2 nothing could be synced or a config error.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::keyward::make_cache_dir;
use crate::support::{
    chown_to, ensure_system_user, free_port, must, run, wait_port, Keyward, KwConfig, Nginx, Out,
    Rsyslog, SshKey, TestDir,
};

/// The node-exporter binary, unpacked once from Debian's package (cached
/// across runs under /var/cache/keyward-tests; no maintainer script runs,
/// so no daemon is started).
fn node_exporter() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new("/var/cache/keyward-tests/node-exporter");
        let bin = root.join("usr/bin/prometheus-node-exporter");
        if bin.is_file() {
            return bin;
        }
        let work = TestDir::new("ne-download");
        let out = run(
            Command::new("apt-get")
                .args(["download", "prometheus-node-exporter"])
                .current_dir(work.path()),
            Duration::from_secs(300),
        );
        assert!(
            out.success(),
            "apt-get download prometheus-node-exporter (after apt-get update): {out}"
        );
        let deb = fs::read_dir(work.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .expect("the downloaded .deb");
        let tmp = PathBuf::from(format!("{}.tmp-{}", root.display(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        must(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp));
        fs::create_dir_all(root.parent().unwrap()).unwrap();
        // Another test process may have won the race: either copy is fine.
        if fs::rename(&tmp, root).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        assert!(bin.is_file(), "{} after unpacking", bin.display());
        bin
    })
}

/// A node-exporter with only the textfile collector, on 127.0.0.1.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(textfile_dir: &Path) -> Exporter {
        let port = free_port();
        let child = Command::new(node_exporter())
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                textfile_dir.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node-exporter");
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "node-exporter listens"
        );
        Exporter { child, port }
    }

    /// `GET /metrics`: sample lines as `name{labels}` → value.
    fn scrape(&self) -> BTreeMap<String, f64> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    dir: TestDir,
    nginx: Nginx,
    _syslog: Rsyslog,
    kw: Keyward,
    textfiles: PathBuf,
    prom: PathBuf,
}

impl World {
    fn new() -> World {
        ensure_system_user("keyward");
        let dir = TestDir::new("metrics");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        // The textfile directory, writable by the account sync runs as.
        let textfiles = dir.subdir("textfile");
        chown_to(&textfiles, "keyward");
        let prom = textfiles.join("keyward.prom");
        let nginx = Nginx::start();
        let syslog = Rsyslog::start();
        let mut cf = KwConfig::new(&cache, Some(&syslog.socket)).url(nginx.users_url());
        cf.extra = format!("[sync]\nmetrics_file = \"{}\"\n", prom.display());
        let kw = Keyward::with_config(&cf);
        World {
            dir,
            nginx,
            _syslog: syslog,
            kw,
            textfiles,
            prom,
        }
    }

    fn key(&self, name: &str) -> String {
        SshKey::ed25519(self.dir.path(), name).public_material()
    }

    /// Caches `user` through the login path.
    fn warm(&self, user: &str, key: &str) {
        self.nginx.put_keys(user, &format!("{key}\n"));
        let out = self.kw.keys_as_keyward(user, None);
        assert!(out.success() && out.stdout.contains(key), "{out}");
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

fn users(m: &BTreeMap<String, f64>, result: &str) -> f64 {
    m[&format!("keyward_sync_users{{result=\"{result}\"}}")]
}

#[test]
fn metrics_after_real_syncs_as_the_collector_reads_them() {
    let w = World::new();
    let (a, b) = (w.key("a"), w.key("b"));
    w.warm("alice", &a);
    w.warm("bob", &b);
    w.nginx.put_keys("bob", &format!("{b}\n{}\n", w.key("b2")));
    let before = now();
    // with the unit's UMask=0027: the file must still be readable by the
    // collector's user
    let out = run(
        Command::new("sh")
            .args(["-c", "umask 027 && exec \"$0\" \"$@\""])
            .arg(&w.kw.bin)
            .arg("--config")
            .arg(&w.kw.config)
            .arg("sync"),
        Duration::from_secs(60),
    );
    let after = now();
    assert_eq!(out.code, Some(0), "{out}");
    let md = fs::metadata(&w.prom).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
        0o644
    );
    let leftovers: Vec<_> = fs::read_dir(&w.textfiles)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "keyward.prom")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let exporter = Exporter::start(&w.textfiles);
    let m = exporter.scrape();
    assert_eq!(m.get("node_textfile_scrape_error"), Some(&0.0), "{m:#?}");
    // the collector read our file (1.5 labels it with the full path)
    assert!(
        m.keys()
            .any(|k| k.starts_with("node_textfile_mtime_seconds{file=")
                && k.ends_with("keyward.prom\"}")),
        "{m:#?}"
    );
    assert_eq!(
        m.get(&format!(
            "keyward_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(&1.0),
        "{m:#?}"
    );
    assert_eq!(users(&m, "updated"), 1.0);
    assert_eq!(users(&m, "unchanged"), 1.0);
    assert_eq!(users(&m, "removed"), 0.0);
    assert_eq!(users(&m, "failed"), 0.0);
    assert_eq!(m["keyward_cache_entries"], 2.0);
    let last = m["keyward_sync_last_success_timestamp_seconds"];
    assert!(last >= before - 1.0 && last <= after + 1.0, "{last}");
    // both entries were answered (200 and 304) during this sync
    let oldest = m["keyward_cache_oldest_fetch_timestamp_seconds"];
    assert!(oldest >= before - 1.0 && oldest <= after + 1.0, "{oldest}");
    assert_eq!(m["keyward_cache_max_stale_seconds"], 3.0 * 86400.0);
    // the lockout alert's expression, evaluated on the scrape: far away
    let until_lockout = oldest + m["keyward_cache_max_stale_seconds"] - now();
    assert!(until_lockout > 86400.0, "{until_lockout}");
    assert!(
        !m.keys().any(|k| k.starts_with("keyward_signed_")),
        "{m:#?}"
    );

    // Some users fail (a garbage answer for bob): exit 1, the last
    // success stays the previous run's.
    w.nginx.put_keys("bob", "<html>error page</html>\n");
    let out = w.kw.run(&["sync"]);
    assert_eq!(out.code, Some(1), "{out}");
    let m2 = exporter.scrape();
    assert_eq!(users(&m2, "failed"), 1.0);
    assert_eq!(users(&m2, "unchanged"), 1.0);
    assert_eq!(m2["keyward_sync_last_success_timestamp_seconds"], last);
    assert!(m2["keyward_sync_timestamp_seconds"] >= last);

    // Nothing can be synced (every user fails): exit 2.
    w.nginx.put_keys("alice", "<html>error page</html>\n");
    let out = w.kw.run(&["sync"]);
    assert_eq!(out.code, Some(2), "{out}");
    let m3 = exporter.scrape();
    assert_eq!(users(&m3, "failed"), 2.0);
    assert_eq!(m3["keyward_sync_last_success_timestamp_seconds"], last);
    // the cache still holds the old lists: they are what lockout counts
    assert_eq!(m3["keyward_cache_entries"], 2.0);

    // --metrics-file wins over [sync] metrics_file.
    w.nginx.put_keys("alice", &format!("{a}\n"));
    w.nginx.put_keys("bob", &format!("{b}\n"));
    let other = w.textfiles.join("other.prom");
    let out =
        w.kw.run(&["sync", "--metrics-file", other.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let text = fs::read_to_string(&other).unwrap();
    assert!(
        text.contains("keyward_sync_users{result=\"failed\"} 0"),
        "{text}"
    );
    let main = fs::read_to_string(&w.prom).unwrap();
    assert!(
        main.contains("keyward_sync_users{result=\"failed\"} 2"),
        "keyward.prom is not rewritten: {main}"
    );
}

#[test]
fn sync_exit_codes_for_configuration_states() {
    let w = World::new();
    // A config error: 2, and no metrics written.
    w.kw.write_config("[directory]\nurls = [\"ftp://x/{user}\"]\n");
    let out: Out = w.kw.run(&["sync"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(!w.prom.exists());
    // The packaged state (no key source): nothing to sync, 0.
    w.kw.write_config("[directory]\n# urls = []\n");
    let out = w.kw.run(&["sync"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("nothing to sync"), "{out}");
    // An invalid --user is a usage error of sync: 2.
    w.kw.write_config(&format!(
        "[directory]\nurls = [\"{}\"]\n",
        w.nginx.users_url()
    ));
    let out = w.kw.run(&["sync", "--user", "../etc"]);
    assert_eq!(out.code, Some(2), "{out}");
}

/// Signs `body` for the directory (`ssh-keygen -Y sign -n keyward`).
fn sign(dir: &Path, signer: &SshKey, body: &str) -> Vec<u8> {
    let file = dir.join(format!("tosign-{}", crate::support::unique()));
    crate::support::write_file(&file, body, 0o644);
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
            .arg(&signer.path)
            .arg(&file),
    );
    fs::read(format!("{}.sig", file.display())).unwrap()
}

/// The earliest `expires` of the signed lists in the cache is a gauge: the
/// date a login is refused even while the directory is up but stale.
#[test]
fn signed_earliest_expiry_metric() {
    let w = World::new();
    let signer = SshKey::ed25519(w.dir.path(), "signer");
    let text = fs::read_to_string(&w.kw.config).unwrap().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            crate::support::keyward::toml_str(&signer.public_line())
        ),
        1,
    );
    w.kw.write_config(&text);
    let t = now() as u64;
    let (soon, later) = (t + 2 * 86400, t + 9 * 86400);
    for (user, expires) in [("alice", later), ("bob", soon)] {
        let utc = must(Command::new("date").args([
            "-u",
            "-d",
            &format!("@{expires}"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ]))
        .stdout;
        let body = format!(
            "#keyward user={user} serial={t} expires={}\n{}\n",
            utc.trim(),
            w.key(user)
        );
        let sig = sign(w.dir.path(), &signer, &body);
        w.nginx.put_keys(user, &body);
        w.nginx.put(&format!("users/{user}.keys.sig"), sig);
        let out = w.kw.keys_as_keyward(user, None);
        assert!(out.success() && !out.stdout.is_empty(), "{out}");
    }
    let out = w.kw.run(&["sync"]);
    assert_eq!(out.code, Some(0), "{out}");
    let exporter = Exporter::start(&w.textfiles);
    let m = exporter.scrape();
    assert_eq!(
        m.get("keyward_signed_earliest_expiry_timestamp_seconds"),
        Some(&(soon as f64)),
        "{m:#?}"
    );
}
