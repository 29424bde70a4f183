//! Deltas against a real nginx: `keyward publish` (signed with a real
//! key) writes `keyward.index.d/` and `revoked.list.d/`, `keyward sync`
//! (as `keyward`) polls the delta from its serial, and nginx's access log
//! shows what each sync cost. A forged, replayed, unsigned or missing
//! delta is never applied: the full file is fetched instead, and the
//! stored copy is byte for byte the published one.

use std::fs;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;

use crate::support::keyward::state_dir_of;
use crate::support::signeddir::{field, SignedDir};
use crate::support::*;

/// The shared fixture and this file's helpers: users' key files, the
/// published and stored index, what a forger with the key signs.
struct Host(SignedDir);

impl Deref for Host {
    type Target = SignedDir;

    fn deref(&self) -> &SignedDir {
        &self.0
    }
}

impl Host {
    fn new() -> Host {
        Host::with(true)
    }

    /// `signed`: the host pins the signer and publish signs.
    fn with(signed: bool) -> Host {
        Host(SignedDir::new("deltasync", signed, |c| c))
    }

    /// The stored index's text (after the store's own head).
    fn stored_index(&self) -> String {
        let bytes = fs::read_to_string(self.cache.join(".keyward-index")).unwrap();
        bytes.split_once("\n\n").unwrap().1.to_owned()
    }

    fn published(&self, name: &str) -> String {
        fs::read_to_string(self.out().join(name)).unwrap()
    }

    fn serial(&self) -> u64 {
        let text = self.published("keyward.index");
        let first = text.lines().next().unwrap();
        let s = first.split(' ').find_map(|f| f.strip_prefix("serial="));
        s.unwrap().parse().unwrap()
    }

    fn user(&self, user: &str, key: &SshKey, tag: &str) {
        let line = format!("{} {tag}\n", key.public_line());
        fs::write(self.src.join(format!("{user}.keys")), line).unwrap();
    }

    fn served(&self, user: &str) -> String {
        let out = self.kw.keys_as_keyward(user, None);
        assert!(out.success(), "{out}");
        out.stdout
    }

    /// Signs `text` as the directory's signer does (`ssh-keygen -Y sign`):
    /// what a forger with the key could serve.
    fn sign(&self, text: &str) -> Vec<u8> {
        let f = self.dir.join("forged");
        fs::write(&f, text).unwrap();
        let _ = fs::remove_file(self.dir.join("forged.sig"));
        must(
            Command::new("ssh-keygen")
                .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
                .arg(&self.signer.path)
                .arg(&f),
        );
        fs::read(self.dir.join("forged.sig")).unwrap()
    }
}

/// The acceptance numbers: one changed user costs the delta, its signature
/// and that user's file (and signature); nothing changed costs one request
/// answered 304; the stored index is the published one, byte for byte.
#[test]
fn a_changed_user_costs_the_delta_and_that_users_file_and_nothing_changed_one_304() {
    let h = Host::new();
    let keys: Vec<SshKey> = (0..4)
        .map(|i| SshKey::ed25519(h.dir.path(), &format!("k{i}")))
        .collect();
    let users = ["alice", "bob", "carol"];
    for (u, k) in users.iter().zip(&keys) {
        h.user(u, k, "v1");
    }
    h.publish(&[]);
    for u in users {
        assert!(h.served(u).contains(&keys[0].public_line()[..20]));
    }
    // The first sync has no stored index: the full one.
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    assert_eq!(h.stored_index(), h.published("keyward.index"));
    assert!(
        h.published("keyward.index")
            .contains("\n:deltas - 0000000000000000 keyward.index.d\n"),
        "{}",
        h.published("keyward.index")
    );
    assert!(paths.contains(&"keyward.index".to_owned()), "{paths:?}");
    let s1 = h.serial();

    // Then the empty delta from its serial (200 once), then 304s: one
    // request each, no signature.
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "current", "{rec}");
    assert_eq!(paths, [format!("keyward.index.d/{s1}")], "{rec}");
    // A 304 does not write the stored index again while it is young (ttl
    // is 1h here): the same file, untouched.
    let stored = |h: &Host| {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(h.cache.join(".keyward-index")).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let before = stored(&h);
    for _ in 0..2 {
        let (rec, paths) = h.sync();
        assert_eq!(field(&rec, "index_delta"), "304", "{rec}");
        assert_eq!(field(&rec, "requests"), "1", "{rec}");
        assert_eq!(paths, [format!("keyward.index.d/{s1}")], "{rec}");
        let inm = h.nginx.accesses().last().unwrap().clone();
        assert_eq!(inm.status, 304, "{inm:?}");
        assert!(inm.if_none_match.is_some(), "{inm:?}");
        assert_eq!(stored(&h), before, "a 304 rewrote the stored index");
    }

    // bob's key changes: the delta from s1, its signature, bob's file and
    // its signature; nothing else.
    h.user("bob", &keys[3], "v2");
    h.publish(&[]);
    let s2 = h.serial();
    assert!(s2 > s1);
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "applied", "{rec}");
    assert_eq!(field(&rec, "updated"), "1", "{rec}");
    assert_eq!(
        paths,
        [
            format!("keyward.index.d/{s1}"),
            format!("keyward.index.d/{s1}.sig"),
            "bob.keys".to_owned(),
            "bob.keys.sig".to_owned(),
        ],
        "{rec}"
    );
    assert_eq!(h.stored_index(), h.published("keyward.index"));
    assert!(h.served("bob").contains(&keys[3].public_line()[..60]));
    // Current again: the empty delta from s2, then 304.
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "current", "{rec}");
    assert_eq!(paths, [format!("keyward.index.d/{s2}")]);
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "304", "{rec}");

    // Two publishes later, a host at s2 still needs one delta (composed).
    h.user("carol", &keys[3], "v2");
    h.publish(&[]);
    fs::remove_file(h.src.join("alice.keys")).unwrap();
    h.publish(&[]);
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "applied", "{rec}");
    assert_eq!(field(&rec, "removed"), "1", "{rec}");
    assert_eq!(
        paths[..2],
        [
            format!("keyward.index.d/{s2}"),
            format!("keyward.index.d/{s2}.sig")
        ]
    );
    assert_eq!(h.stored_index(), h.published("keyward.index"));
    let check = h.kw.run(&[
        "publish",
        "--check",
        h.out().to_str().unwrap(),
        "--signer",
        h.signer.path.to_str().unwrap(),
    ]);
    assert!(check.success(), "{check}");
}

/// Every delta that must not apply falls back to the full index, and the
/// stored index is then the published one: a replayed older delta (from
/// another serial), one whose signature does not verify or is missing, one
/// validly signed but from another text (from_sha256) or giving another
/// (to_sha256), and none at all (404: too far behind).
#[test]
fn a_forged_replayed_unsigned_or_missing_delta_is_refused_and_the_full_index_fetched() {
    let h = Host::new();
    let k = SshKey::ed25519(h.dir.path(), "k");
    h.user("alice", &k, "v0");
    h.publish(&[]);
    h.served("alice");
    h.sync();
    let older = {
        let s = h.serial();
        h.user("alice", &k, "v1");
        h.publish(&[]);
        let (rec, _) = h.sync();
        assert_eq!(field(&rec, "index_delta"), "applied", "{rec}");
        let d = format!("users/keyward.index.d/{s}");
        (
            fs::read(h.nginx.root.join(&d)).unwrap(),
            fs::read(h.nginx.root.join(format!("{d}.sig"))).unwrap(),
        )
    };
    type Forge<'a> = &'a dyn Fn(&Host, &str, &str) -> Option<(Vec<u8>, Option<Vec<u8>>)>;
    let replayed: Forge = &|_, _, _| Some((older.0.clone(), Some(older.1.clone())));
    let bad_sig: Forge = &|_, text, _| Some((text.as_bytes().to_vec(), Some(older.1.clone())));
    let no_sig: Forge = &|_, text, _| Some((text.as_bytes().to_vec(), None));
    let other_from: Forge = &|h, text, _| {
        let (head, _) = text.split_once(" from_sha256=").unwrap();
        let rest = &text[head.len() + 13 + 64..];
        let forged = format!("{head} from_sha256={}{rest}", "0".repeat(64));
        Some((forged.as_bytes().to_vec(), Some(h.sign(&forged))))
    };
    let other_to: Forge = &|h, text, _| {
        // A line dropped from the change: the result is not to_sha256's.
        let forged = text.trim_end().rsplit_once('\n').unwrap().0.to_owned() + "\n";
        Some((forged.as_bytes().to_vec(), Some(h.sign(&forged))))
    };
    let gone: Forge = &|_, _, _| None;
    for (i, (what, forge, why)) in [
        ("replayed", replayed, "from="),
        ("bad signature", bad_sig, "signature"),
        ("no signature", no_sig, "signature"),
        ("from_sha256", other_from, "from_sha256"),
        ("to_sha256", other_to, "to_sha256"),
        ("404", gone, "404"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = h.serial();
        // Two keys changed, so that dropping a line leaves a change.
        h.user("alice", &k, &format!("w{i}"));
        h.user("bob", &k, &format!("w{i}"));
        h.publish(&[]);
        let rel = format!("users/keyward.index.d/{at}");
        let text = fs::read_to_string(h.nginx.root.join(&rel)).unwrap();
        match forge(&h, &text, &rel) {
            Some((body, sig)) => {
                h.nginx.put(&rel, body);
                match sig {
                    Some(sig) => h.nginx.put(&format!("{rel}.sig"), sig),
                    None => {
                        h.nginx.remove(&format!("{rel}.sig"));
                        PathBuf::new()
                    }
                };
            }
            None => h.nginx.remove(&rel),
        }
        must(
            Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&h.nginx.root),
        );
        let (rec, paths) = h.sync();
        let note = field(&rec, "index_delta");
        assert!(
            note.starts_with("fallback:") && note.contains(why),
            "{what}: {rec}"
        );
        assert_eq!(field(&rec, "index"), "200", "{what}: {rec}");
        assert!(
            paths.contains(&"keyward.index".to_owned()),
            "{what}: {paths:?}"
        );
        assert_eq!(h.stored_index(), h.published("keyward.index"), "{what}");
        assert!(h.served("alice").contains(&format!("w{i}")), "{what}");
    }
}

/// The revocation list by delta: a revocation added costs the list's
/// delta and its signature, never the list; the installed list is the
/// published one and the login path refuses the revoked key. A delta
/// forged with the signer's key but from another list is refused and the
/// full list installed.
#[test]
fn a_revocation_added_costs_the_lists_delta_and_a_forged_one_falls_back() {
    let h = Host::new();
    let keys: Vec<SshKey> = (0..4)
        .map(|i| SshKey::ed25519(h.dir.path(), &format!("r{i}")))
        .collect();
    let lines: String = keys.iter().map(|k| k.public_line() + "\n").collect();
    fs::write(h.src.join("alice.keys"), &lines).unwrap();
    fs::create_dir(h.src.join("revoked")).unwrap();
    let spec = h.src.join("revoked/laptop.spec");
    fs::write(&spec, format!("hash: {}\n", keys[0].fingerprint())).unwrap();
    h.publish(&[]);
    h.served("alice");
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    let installed = state_dir_of(&h.cache).join("revoked.list");
    let list_serial = |text: &str| -> u64 {
        let first = text.lines().next().unwrap();
        first
            .split(' ')
            .find_map(|f| f.strip_prefix("serial="))
            .unwrap()
            .parse()
            .unwrap()
    };

    let s1 = list_serial(&h.published("revoked.list"));
    fs::write(
        &spec,
        format!(
            "hash: {}\nhash: {}\n",
            keys[0].fingerprint(),
            keys[1].fingerprint()
        ),
    )
    .unwrap();
    h.publish(&[]);
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "revoked_delta"), "applied", "{rec}");
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert!(paths.contains(&format!("revoked.list.d/{s1}")), "{paths:?}");
    assert!(
        paths.contains(&format!("revoked.list.d/{s1}.sig")),
        "{paths:?}"
    );
    assert!(!paths.contains(&"revoked.list".to_owned()), "{paths:?}");
    assert_eq!(
        fs::read_to_string(&installed).unwrap(),
        h.published("revoked.list")
    );
    let served = h.served("alice");
    assert!(!served.contains(&keys[1].public_line()[..60]), "{served}");
    assert!(served.contains(&keys[2].public_line()[..60]), "{served}");

    // A forged delta (validly signed, from another list): refused, the
    // full list installed.
    let s2 = list_serial(&h.published("revoked.list"));
    fs::write(
        &spec,
        format!(
            "hash: {}\nhash: {}\nhash: {}\n",
            keys[0].fingerprint(),
            keys[1].fingerprint(),
            keys[2].fingerprint()
        ),
    )
    .unwrap();
    h.publish(&[]);
    let rel = format!("users/revoked.list.d/{s2}");
    let text = fs::read_to_string(h.nginx.root.join(&rel)).unwrap();
    let (head, _) = text.split_once(" from_sha256=").unwrap();
    let rest = &text[head.len() + 13 + 64..];
    let forged = format!("{head} from_sha256={}{rest}", "f".repeat(64));
    h.nginx.put(&rel, &forged);
    h.nginx.put(&format!("{rel}.sig"), h.sign(&forged));
    must(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&h.nginx.root),
    );
    let (rec, paths) = h.sync();
    let note = field(&rec, "revoked_delta");
    assert!(
        note.starts_with("fallback:") && note.contains("from_sha256"),
        "{rec}"
    );
    assert_eq!(field(&rec, "revoked"), "installed", "{rec}");
    assert!(paths.contains(&"revoked.list".to_owned()), "{paths:?}");
    assert_eq!(
        fs::read_to_string(&installed).unwrap(),
        h.published("revoked.list")
    );
    assert!(!h.served("alice").contains(&keys[2].public_line()[..60]));
}

/// An index removed from the directory while its deltas stay (a hand
/// upload, an index no longer published): the deltas still say "nothing
/// changed", but once a day the poll is the index's own conditional GET,
/// which notices (here the day is made to have passed by ageing the stored
/// copy's `checked_at`).
#[test]
fn an_index_gone_without_its_deltas_is_noticed_at_the_daily_full_check() {
    let h = Host::new();
    let k = SshKey::ed25519(h.dir.path(), "k");
    h.user("alice", &k, "v0");
    h.publish(&[]);
    h.served("alice");
    h.sync();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "current", "{rec}");
    let stored = h.cache.join(".keyward-index");
    let age_a_day = || {
        let text = fs::read_to_string(&stored).unwrap();
        let aged: Vec<String> = text
            .split('\n')
            .map(|l| match l.strip_prefix("checked_at ") {
                Some(t) => format!("checked_at {}", t.parse::<u64>().unwrap() - 86_400),
                None => l.to_owned(),
            })
            .collect();
        fs::write(&stored, aged.join("\n")).unwrap();
    };
    // The daily check while the index is the one the deltas lead to: its
    // first line only (a range request answered 206), one request.
    age_a_day();
    let before = h.nginx.total();
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "checked", "{rec}");
    assert_eq!(paths, ["keyward.index"], "{rec}");
    let asked = h.nginx.accesses().split_off(before);
    assert_eq!(asked[0].status, 206, "{asked:?}");
    let (rec, _) = h.sync();
    assert_eq!(
        field(&rec, "index_delta"),
        "304",
        "checked: not due again: {rec}"
    );
    h.nginx.remove("users/keyward.index");
    h.nginx.remove("users/keyward.index.sig");
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "304", "{rec}");
    age_a_day();
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "due", "{rec}");
    assert_eq!(field(&rec, "index"), "none", "{rec}");
    assert_eq!(paths[0], "keyward.index", "{paths:?}");
    assert!(!stored.exists(), "the copy goes after a 404");
}

/// Unsigned (hosts without `signers`): the same one request when nothing
/// changed and the delta alone when something did; the stored index is
/// the published one; a delta that does not give `to_sha256` falls back.
#[test]
fn unsigned_deltas_are_applied_only_when_their_hashes_hold() {
    let h = Host::with(false);
    let k = SshKey::ed25519(h.dir.path(), "k");
    h.user("alice", &k, "v0");
    h.user("bob", &k, "v0");
    h.publish(&[]);
    h.served("alice");
    h.served("bob");
    h.sync();
    let s1 = h.serial();
    let (rec, _) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "current", "{rec}");
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "304", "{rec}");
    assert_eq!(paths, [format!("keyward.index.d/{s1}")]);
    h.user("alice", &k, "v1");
    h.publish(&[]);
    let (rec, paths) = h.sync();
    assert_eq!(field(&rec, "index_delta"), "applied", "{rec}");
    assert_eq!(
        paths,
        [format!("keyward.index.d/{s1}"), "alice.keys".to_owned()],
        "{rec}"
    );
    assert_eq!(h.stored_index(), h.published("keyward.index"));
    assert!(h.served("alice").contains("v1"));
    // A delta whose result is not to_sha256 (a line dropped): refused.
    let s2 = h.serial();
    h.user("alice", &k, "v2");
    h.user("bob", &k, "v2");
    h.publish(&[]);
    let rel = format!("users/keyward.index.d/{s2}");
    let text = fs::read_to_string(h.nginx.root.join(&rel)).unwrap();
    let forged = text.trim_end().rsplit_once('\n').unwrap().0.to_owned() + "\n";
    h.nginx.put(&rel, forged);
    must(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&h.nginx.root),
    );
    let (rec, _) = h.sync();
    let note = field(&rec, "index_delta");
    assert!(
        note.starts_with("fallback:") && note.contains("to_sha256"),
        "{rec}"
    );
    assert_eq!(field(&rec, "index"), "200", "{rec}");
    assert_eq!(h.stored_index(), h.published("keyward.index"));
    assert!(h.served("bob").contains("v2"));
}
