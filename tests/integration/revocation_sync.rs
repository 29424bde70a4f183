//! `keyward sync` keeps the host's revocation list: a real nginx serves a
//! tree `keyward publish` signed (with `SRC/revoked/*.spec`), sync installs
//! the list the index names, the login path (`keys` as sshd runs it)
//! refuses what it revokes, and nothing a mirror says (an older list
//! replayed with its older index, a 404, a bad signature) removes the
//! installed list or lowers its floor.

use std::fs;
use std::ops::Deref;
use std::path::PathBuf;

use crate::support::keyward::state_dir_of;
use crate::support::rsyslog::kv_field;
use crate::support::signeddir::{field, SignedDir};
use crate::support::*;

/// The shared fixture with a `revoked/` folder in its source, publishing
/// the full list only, and this file's helpers.
struct Host(SignedDir);

impl Deref for Host {
    type Target = SignedDir;

    fn deref(&self) -> &SignedDir {
        &self.0
    }
}

impl Host {
    fn new(tune: impl FnOnce(KwConfig) -> KwConfig) -> Host {
        Host::with(tune, true)
    }

    /// `signed`: the host pins the signer and publish signs.
    fn with(tune: impl FnOnce(KwConfig) -> KwConfig, signed: bool) -> Host {
        let d = SignedDir::new("revsync", signed, tune);
        fs::create_dir(d.src.join("revoked")).unwrap();
        Host(d)
    }

    /// `--delta-keep 0`: no deltas, so sync takes the full list's path
    /// (deltas: delta_sync.rs).
    fn publish(&self) {
        self.0.publish(&["--delta-keep", "0"]);
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
    assert!(paths.contains(&"revoked.list".to_owned()), "{paths:?}");
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
    assert!(paths.contains(&"revoked.list".to_owned()), "{paths:?}");
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
    let list_gets = paths.iter().filter(|p| *p == "revoked.list").count();
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
