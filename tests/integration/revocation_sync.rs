//! `keyward sync` keeps the host's revocation list: a real nginx serves a
//! tree `keyward publish` signed (with `SRC/revoked/*.spec`), sync installs
//! the list the index names, the login path (`keys` as sshd runs it)
//! refuses what it revokes, and nothing a mirror says (an older list
//! replayed with its older index, a 404, a bad signature) removes the
//! installed list or lowers its floor.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::keyward::{make_cache_dir, state_dir_of, toml_str};
use crate::support::rsyslog::kv_field;
use crate::support::*;

struct Host {
    dir: TestDir,
    nginx: Nginx,
    syslog: Rsyslog,
    cache: PathBuf,
    kw: Keyward,
    src: PathBuf,
    signer: SshKey,
    signed: bool,
}

impl Host {
    fn new(tune: impl FnOnce(KwConfig) -> KwConfig) -> Host {
        Host::with(tune, true)
    }

    /// `signed`: the host pins the signer and publish signs.
    fn with(tune: impl FnOnce(KwConfig) -> KwConfig, signed: bool) -> Host {
        ensure_system_user("keyward");
        let dir = TestDir::new("revsync");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        let syslog = Rsyslog::start();
        let nginx = Nginx::start();
        let config = tune(
            KwConfig::new(&cache, Some(&syslog.socket))
                .url(nginx.users_url())
                .ttl("1h"),
        );
        let kw = Keyward::with_config(&config);
        let signer = SshKey::ed25519(dir.path(), "signer");
        if signed {
            let toml = config.to_toml().replacen(
                "[directory]\n",
                &format!(
                    "[directory]\nsigners = [{}]\n",
                    toml_str(&signer.public_line())
                ),
                1,
            );
            kw.write_config(&toml);
        }
        let src = dir.subdir("src");
        fs::create_dir(src.join("revoked")).unwrap();
        Host {
            dir,
            nginx,
            syslog,
            cache,
            kw,
            src,
            signer,
            signed,
        }
    }

    fn out(&self) -> PathBuf {
        self.nginx.root.join("users")
    }

    fn publish(&self) {
        let out = self.out();
        // The full list's path (deltas: delta_sync.rs).
        let mut args = vec![
            "publish",
            self.src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--delta-keep",
            "0",
        ];
        if self.signed {
            args.extend(["--signer", self.signer.path.to_str().unwrap()]);
        }
        let p = self.kw.run(&args);
        assert!(p.success(), "publish: {p}");
        // nginx's ETag is the mtime (in seconds) and the size: a file
        // rewritten within the same second at the same size (an index
        // whose serial and hash changed) would keep it. Put again, each
        // gets a newer mtime.
        for name in ["keyward.index", "revoked.list"] {
            if let Ok(bytes) = fs::read(out.join(name)) {
                self.nginx.put(&format!("users/{name}"), bytes);
            }
        }
        must(
            Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&self.nginx.root),
        );
    }

    /// `keyward sync` as keyward: its record and the paths nginx served.
    fn sync(&self) -> (String, Vec<String>) {
        let before = self.nginx.total();
        let is =
            |l: &rsyslog::LogLine| l.program == "keyward" && l.msg.starts_with("decision=sync");
        let n = self.syslog.lines().into_iter().filter(is).count();
        let out = self.kw.run_as("keyward", &["sync"]);
        let recs = self.syslog.wait_for_n(n + 1, Duration::from_secs(10), is);
        assert_eq!(recs.len(), n + 1, "{out}");
        let paths = self
            .nginx
            .accesses()
            .split_off(before)
            .into_iter()
            .map(|a| a.uri)
            .collect();
        (recs.last().unwrap().msg.clone(), paths)
    }

    fn installed(&self) -> PathBuf {
        state_dir_of(&self.cache).join("revoked.list")
    }

    /// The key lines `keys alice` prints as sshd runs it (as keyward).
    fn served(&self) -> String {
        let out = self.kw.keys_as_keyward("alice", None);
        assert!(out.success(), "{out}");
        out.stdout
    }
}

fn field(rec: &str, key: &str) -> String {
    kv_field(rec, key).unwrap_or_else(|| panic!("no {key}= in {rec}"))
}

#[test]
fn sync_installs_the_list_the_index_names_and_never_a_replayed_or_missing_one() {
    let h = Host::new(|c| c);
    let stolen = SshKey::ed25519(h.dir.path(), "stolen");
    let second = SshKey::ed25519(h.dir.path(), "second");
    let keep = SshKey::ed25519(h.dir.path(), "keep");
    fs::write(
        h.src.join("alice.keys"),
        format!(
            "{}\n{}\n{}\n",
            stolen.public_line(),
            second.public_line(),
            keep.public_line()
        ),
    )
    .unwrap();
    let spec = h.src.join("revoked/laptop.spec");
    fs::write(&spec, format!("hash: {}\n", stolen.fingerprint())).unwrap();
    h.publish();
    // The cache knows alice (sync refreshes known users); no list yet.
    assert!(h.served().contains(&stolen.public_line()[..60]));

    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let list1 = fs::read(h.out().join("revoked.list")).unwrap();
    let sig1 = fs::read(h.out().join("revoked.list.sig")).unwrap();
    assert_eq!(fs::read(h.installed()).unwrap(), list1);
    let serial1: u64 = field(&rec, "revoked_serial").parse().unwrap();
    assert!(
        paths.iter().any(|p| p.ends_with("/revoked.list")),
        "{paths:?}"
    );
    let served = h.served();
    assert!(!served.contains(&stolen.public_line()[..60]), "{served}");
    assert!(served.contains(&keep.public_line()[..60]), "{served}");

    // Nothing changed: the index's one conditional GET, nothing more.
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked"), "unchanged", "{rec}");
    assert_eq!(field(&rec, "requests"), "1", "{rec} {paths:?}");
    assert_eq!(paths.len(), 1, "{paths:?}");

    // A second revocation: the new list, a higher serial.
    let index1 = fs::read(h.out().join("keyward.index")).unwrap();
    let index_sig1 = fs::read(h.out().join("keyward.index.sig")).unwrap();
    fs::write(
        &spec,
        format!(
            "hash: {}\nkey: {}\n",
            stolen.fingerprint(),
            second.public_line()
        ),
    )
    .unwrap();
    h.publish();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let serial2: u64 = field(&rec, "revoked_serial").parse().unwrap();
    assert!(serial2 > serial1, "{rec}");
    let read = |name: &str| fs::read(h.out().join(name)).unwrap();
    let (list2, sig2) = (read("revoked.list"), read("revoked.list.sig"));
    let (index2, index_sig2) = (read("keyward.index"), read("keyward.index.sig"));
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    assert!(!h.served().contains(&second.public_line()[..60]));

    // A mirror replays the older directory (index and list, validly
    // signed): the older index is refused by its floor, the list asked
    // for on its own is refused by the list's floor, and the newer list
    // stays installed.
    let put = |name: &str, bytes: &[u8]| {
        h.nginx.put(&format!("users/{name}"), bytes);
    };
    put("keyward.index", &index1);
    put("keyward.index.sig", &index_sig1);
    let _ = fs::remove_file(h.out().join("keyward.index.gz"));
    put("revoked.list", &list1);
    put("revoked.list.sig", &sig1);
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked"), "failed", "{rec}");
    assert!(
        field(&rec, "revoked_error").contains("lower than the highest accepted serial"),
        "{rec}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("/revoked.list")),
        "{paths:?}"
    );
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    assert_eq!(field(&rec, "revoked_serial"), serial2.to_string());
    assert!(!h.served().contains(&second.public_line()[..60]));

    // The current tree again: the index names the installed list.
    let _ = fs::remove_file(h.out().join("keyward.index.gz"));
    put("keyward.index", &index2);
    put("keyward.index.sig", &index_sig2);
    put("revoked.list", &list2);
    put("revoked.list.sig", &sig2);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "unchanged", "{rec}");

    // A third list, the index names it, but the mirror has no list (404)
    // or one with a signature that does not verify: the installed list
    // stays, each time.
    fs::write(&spec, format!("hash: {}\n", stolen.fingerprint())).unwrap();
    h.publish();
    let (list3, sig3) = (read("revoked.list"), read("revoked.list.sig"));
    fs::remove_file(h.out().join("revoked.list")).unwrap();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "failed", "{rec}");
    assert!(field(&rec, "revoked_error").contains("404"), "{rec}");
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    put("revoked.list", &list3);
    put("revoked.list.sig", &sig2);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "failed", "{rec}");
    assert!(field(&rec, "revoked_error").contains("signature"), "{rec}");
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    assert!(!h.served().contains(&second.public_line()[..60]));
    // With its own signature, the third list (which lifts the second
    // revocation) is installed.
    put("revoked.list.sig", &sig3);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert_eq!(fs::read(h.installed()).unwrap(), list3);
    assert!(h.served().contains(&second.public_line()[..60]));
    assert!(!h.served().contains(&stolen.public_line()[..60]));
}

#[test]
fn without_an_index_sync_asks_for_the_list_itself_conditionally() {
    let h = Host::new(|c| c.index("false"));
    let stolen = SshKey::ed25519(h.dir.path(), "stolen");
    let keep = SshKey::ed25519(h.dir.path(), "keep");
    fs::write(
        h.src.join("alice.keys"),
        format!("{}\n{}\n", stolen.public_line(), keep.public_line()),
    )
    .unwrap();
    let spec = h.src.join("revoked/laptop.spec");
    fs::write(&spec, format!("key: {}\n", keep.public_line())).unwrap();
    h.publish();
    assert!(h.served().contains(&keep.public_line()[..60]));
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let list1 = fs::read(h.out().join("revoked.list")).unwrap();
    let sig1 = fs::read(h.out().join("revoked.list.sig")).unwrap();
    assert!(!h.served().contains(&keep.public_line()[..60]));
    // Nothing changed: the list's conditional GET answers 304.
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked"), "304", "{rec}");
    let list_gets = paths
        .iter()
        .filter(|p| p.ends_with("/revoked.list"))
        .count();
    assert_eq!(list_gets, 1, "{paths:?}");
    assert!(!paths.iter().any(|p| p.ends_with(".sig")), "{paths:?}");

    // A newer list, then the older one replayed: refused by the floor.
    fs::write(
        &spec,
        format!(
            "key: {}\nkey: {}\n",
            keep.public_line(),
            stolen.public_line()
        ),
    )
    .unwrap();
    h.publish();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let list2 = fs::read(h.installed()).unwrap();
    h.nginx.put("users/revoked.list", &list1);
    h.nginx.put("users/revoked.list.sig", &sig1);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "failed", "{rec}");
    assert!(field(&rec, "revoked_error").contains("lower"), "{rec}");
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    // Nobody publishes a list any more (404): the installed one stays.
    fs::remove_file(h.out().join("revoked.list")).unwrap();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "none", "{rec}");
    assert_eq!(fs::read(h.installed()).unwrap(), list2);
    assert_eq!(h.served(), "");
}

#[test]
fn unsigned_the_list_is_installed_and_its_changes_followed() {
    let h = Host::with(|c| c, false);
    let stolen = SshKey::ed25519(h.dir.path(), "stolen");
    let keep = SshKey::ed25519(h.dir.path(), "keep");
    fs::write(
        h.src.join("alice.keys"),
        format!("{}\n{}\n", stolen.public_line(), keep.public_line()),
    )
    .unwrap();
    let spec = h.src.join("revoked/laptop.spec");
    fs::write(&spec, format!("hash: {}\n", stolen.fingerprint())).unwrap();
    h.publish();
    assert!(!h.out().join("revoked.list.sig").exists());
    assert!(h.served().contains(&stolen.public_line()[..60]));
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert!(kv_field(&rec, "revoked_serial").is_none(), "{rec}");
    let served = h.served();
    assert!(!served.contains(&stolen.public_line()[..60]), "{served}");
    assert!(served.contains(&keep.public_line()[..60]), "{served}");
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked"), "unchanged", "{rec} {paths:?}");
    // Lifting the revocation (an empty spec) is followed too.
    fs::write(&spec, "").unwrap();
    h.publish();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert!(h.served().contains(&stolen.public_line()[..60]));
}
