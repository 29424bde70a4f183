//! `keyward publish --check OUT`: is a published tree fit to upload? Every
//! file the index names is there with the hash the index gives, every
//! signature verifies with the signer's key and every header names its own
//! user and kind and has not expired, the compressed index says what the
//! index says, and nothing else is in the folder (a stray file is served
//! to nobody, or was left by something other than publish).
//!
//! The rules (`check_tree`) are pure, over the folder's names and bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use ssh_key::PublicKey;

use crate::entry::Kind;
use crate::signed;

/// What a folder holds, for the check: regular files by name (their
/// bytes), and the names of anything else (links, folders, FIFOs).
#[derive(Debug, Default)]
pub struct Tree {
    pub files: BTreeMap<String, Vec<u8>>,
    pub others: Vec<String>,
}

/// Reads `out` without following links (each file at most `cap` bytes).
/// A delta folder (`F.d/`, see `publish/delta.rs`) is read one level deep:
/// its files are named `F.d/NAME`.
pub fn read_tree(out: &Path, cap: u64) -> Result<Tree, String> {
    let mut tree = Tree::default();
    read_level(out, "", cap, &mut tree)?;
    Ok(tree)
}

fn read_level(dir: &Path, prefix: &str, cap: u64, tree: &mut Tree) -> Result<(), String> {
    let shown = dir.display();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{shown}: {e}"))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("{shown}: {e}"))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let ftype = entry.file_type().ok();
        let is_file = ftype.is_some_and(|t| t.is_file());
        if prefix.is_empty() && name.ends_with(".d") && ftype.is_some_and(|t| t.is_dir()) {
            read_level(&entry.path(), &format!("{name}/"), cap, tree)?;
            continue;
        }
        if !is_file {
            tree.others.push(name);
            continue;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(entry.path())
            .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if bytes.len() as u64 > cap {
            return Err(format!(
                "{}: larger than {cap} bytes",
                entry.path().display()
            ));
        }
        tree.files.insert(name, bytes);
    }
    Ok(())
}

/// The check in progress: the names accounted for, the problems found.
struct Checker<'a> {
    tree: &'a Tree,
    signers: Option<&'a [PublicKey]>,
    now: i64,
    expected: BTreeSet<String>,
    problems: Vec<String>,
}

fn text<'t>(tree: &'t Tree, name: &str) -> Option<&'t str> {
    std::str::from_utf8(tree.files.get(name)?).ok()
}

impl Checker<'_> {
    /// A signed file's signature and header; its serial when both hold.
    fn signed_file(&mut self, name: &str, user: &str, kind: Kind) -> Option<u64> {
        let signers = self.signers?;
        let sig_name = format!("{name}.sig");
        self.expected.insert(sig_name.clone());
        let tree = self.tree;
        let (Some(body), Some(sig)) = (text(tree, name), tree.files.get(&sig_name)) else {
            self.problems
                .push(format!("{name}: no signature ({sig_name} missing)"));
            return None;
        };
        match signed::check_file(body, sig, signers, user, kind, self.now) {
            Ok((h, _)) => Some(h.serial),
            Err(e) => {
                self.problems.push(format!("{name}: {e}"));
                None
            }
        }
    }

    /// The revocation list and the KRL (when published): the list passes
    /// the check a host runs before installing it, and each verifies with
    /// its detached signature in a signed tree.
    fn revoked(&mut self) {
        use super::revoked::{KRL, LIST};
        let tree = self.tree;
        for name in [LIST, KRL] {
            let Some(body) = tree.files.get(name) else {
                continue;
            };
            self.expected.insert(name.to_owned());
            if name == LIST {
                let checked = std::str::from_utf8(body)
                    .map_err(|_| "not UTF-8".to_string())
                    .and_then(crate::revocation::list::check);
                if let Err(e) = checked {
                    self.problems.push(format!("{name}: {e}"));
                }
            }
            let Some(signers) = self.signers else {
                continue;
            };
            let sig_name = format!("{name}.sig");
            self.expected.insert(sig_name.clone());
            match tree.files.get(&sig_name) {
                None => self
                    .problems
                    .push(format!("{name}: no signature ({sig_name} missing)")),
                Some(sig) => {
                    if let Err(e) = signed::verify(body, sig, signers) {
                        self.problems.push(format!("{name}: {e}"));
                    }
                }
            }
        }
    }

    /// The deltas of `file` (the index or the list), if it has any: each
    /// signed, unexpired, of its kind and leading to `file` as it is, with
    /// the empty one for its own serial.
    fn deltas(&mut self, file: &str, kind: &str, serial_of: fn(&str) -> Option<u64>) {
        let tree = self.tree;
        let folder = format!("{file}.d/");
        let names: Vec<&String> = tree
            .files
            .keys()
            .filter(|n| n.starts_with(&folder))
            .collect();
        if names.is_empty() {
            return;
        }
        let Some(body) = text(tree, file) else {
            self.problems
                .push(format!("{folder}: deltas of a file not published"));
            return;
        };
        let sha = crate::delta::sha256(body);
        let (to, header) = (serial_of(body), body.lines().next().unwrap_or_default());
        let mut own = false;
        for name in names {
            let serial = &name[folder.len()..];
            if serial.ends_with(".sig") {
                continue;
            }
            self.expected.insert(name.clone());
            let Some(dtext) = text(tree, name) else {
                self.problems.push(format!("{name}: not UTF-8"));
                continue;
            };
            let d = match crate::delta::Delta::parse(dtext) {
                Ok(d) => d,
                Err(e) => {
                    self.problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
            if d.from.to_string() != serial
                || d.kind != kind
                || d.to_sha256 != sha
                || Some(d.to) != to
                || d.change.header != header
            {
                self.problems.push(format!(
                    "{name}: not a delta from {serial} to {file} as published"
                ));
            }
            own |= d.is_empty();
            if let Some(signers) = self.signers {
                let sig_name = format!("{name}.sig");
                self.expected.insert(sig_name.clone());
                match tree.files.get(&sig_name) {
                    None => self
                        .problems
                        .push(format!("{name}: no signature ({sig_name} missing)")),
                    Some(sig) => {
                        if let Err(e) = signed::verify(dtext.as_bytes(), sig, signers) {
                            self.problems.push(format!("{name}: {e}"));
                        }
                    }
                }
                match d.expires {
                    Some(e) if e <= self.now => self
                        .problems
                        .push(format!("{name}: expired at {}", signed::format_utc(e))),
                    None => self
                        .problems
                        .push(format!("{name}: signed without expires")),
                    _ => {}
                }
            }
        }
        if !own {
            self.problems
                .push(format!("{folder}: no empty delta for {file}'s own serial"));
        }
    }

    /// The index, its signature, and every file it lists.
    fn index(&mut self, index: &str) {
        self.expected.insert(index.to_owned());
        let tree = self.tree;
        let Some(itext) = text(tree, index) else {
            self.problems
                .push(format!("{index}: missing (or not UTF-8)"));
            return;
        };
        if let Some(signers) = self.signers {
            let sig_name = format!("{index}.sig");
            self.expected.insert(sig_name.clone());
            match tree.files.get(&sig_name) {
                None => self
                    .problems
                    .push(format!("{index}: no signature ({sig_name} missing)")),
                Some(sig) => {
                    if let Err(e) = signed::verify(itext.as_bytes(), sig, signers) {
                        self.problems.push(format!("{index}: {e}"));
                    }
                }
            }
        }
        let signed = self.signers.is_some();
        check_index(
            self.tree,
            index,
            itext,
            signed,
            self.now,
            &mut self.problems,
        );
        if self.tree.files.contains_key(&format!("{index}.gz")) {
            self.expected.insert(format!("{index}.gz"));
        }
        let Ok(idx) = crate::index::Index::parse(itext) else {
            return;
        };
        for line in &idx.lines {
            if line.user == crate::index::DELTAS {
                // A folder: checked by `deltas`.
                continue;
            }
            self.expected.insert(line.path.to_owned());
            let Some(body) = tree.files.get(line.path) else {
                self.problems.push(format!(
                    "{}: listed in {index} for {}, missing",
                    line.path, line.user
                ));
                continue;
            };
            if crate::index::digest(body) != line.hash {
                self.problems.push(format!(
                    "{}: its hash is not the one {index} gives",
                    line.path
                ));
            }
            if line.user == crate::index::REVOKED {
                // The revocation list: checked by `revoked`.
                continue;
            }
            let serial = self.signed_file(line.path, line.user, Kind::Keys);
            if serial.is_some() && serial != line.serial {
                self.problems
                    .push(format!("{}: serial differs from {index}'s", line.path));
            }
        }
    }
}

/// Every problem with the tree (empty: fit to upload). `signers`: the
/// keys its signatures must verify with; None for an unsigned tree.
pub fn check_tree(
    tree: &Tree,
    index: Option<&str>,
    signers: Option<&[PublicKey]>,
    now: i64,
) -> Vec<String> {
    let mut c = Checker {
        tree,
        signers,
        now,
        expected: BTreeSet::new(),
        problems: tree
            .others
            .iter()
            .map(|n| format!("{n}: not a regular file"))
            .collect(),
    };
    if let Some(index) = index {
        c.index(index);
        c.deltas(index, "index", |t| {
            crate::index::Header::parse(t.lines().next()?).ok()?.serial
        });
    }
    c.revoked();
    c.deltas(super::revoked::LIST, "revoked", |t| {
        crate::revocation::list::Header::parse(t.lines().next()?)
            .ok()?
            .serial
    });
    for name in tree.files.keys() {
        // Principals files are not in the index; without an index, neither
        // are keys files: each is checked on its own.
        let own = match (name.strip_suffix(".principals"), name.strip_suffix(".keys")) {
            (Some(user), _) => Some((user, Kind::Principals)),
            (None, Some(user)) if index.is_none() => Some((user, Kind::Keys)),
            _ => None,
        };
        if let Some((user, kind)) = own {
            c.expected.insert(name.clone());
            c.signed_file(name, user, kind);
        }
    }
    for name in tree.files.keys() {
        if c.expected.contains(name) {
            continue;
        }
        let why = if name.starts_with('.') {
            "a leftover temporary file"
        } else if name.ends_with(".keys") {
            "a keys file the index does not list"
        } else if name.ends_with(".sig") && signers.is_none() {
            "a signature in an unsigned tree"
        } else {
            "not part of the publication"
        };
        c.problems.push(format!("{name}: stray ({why})"));
    }
    c.problems
}

/// The index itself: it parses, has not expired, and its gzip copy (if
/// any) holds exactly the same text.
fn check_index(
    tree: &Tree,
    index: &str,
    itext: &str,
    signed: bool,
    now: i64,
    problems: &mut Vec<String>,
) {
    match crate::index::Index::parse(itext) {
        Err(e) => problems.push(format!("{index}: {e}")),
        Ok(idx) => match idx.header.expires {
            Some(e) if e <= now => {
                problems.push(format!("{index}: expired at {}", signed::format_utc(e)))
            }
            None if signed => problems.push(format!("{index}: signed index without expires")),
            _ => {}
        },
    }
    if let Some(gz) = tree.files.get(&format!("{index}.gz")) {
        let mut back = String::new();
        let same = flate2::read::GzDecoder::new(&gz[..])
            .take(crate::index::MAX_BYTES)
            .read_to_string(&mut back)
            .is_ok()
            && back == itext;
        if !same {
            problems.push(format!("{index}.gz: does not hold {index}'s text"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::publish::{build_body, build_index};
    use crate::signed::Header;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";
    /// ssh-key's documentation key (unencrypted ed25519).
    const SIGNER: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYgAAAJgAIAxdACAM
XQAAAAtzc2gtZWQyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYg
AAAEC2BsIi0QwW2uFscKTUUXNHLsYX4FxlaSDSblbAj7WR7bM+rvN+ot98qgEN796jTiQf
ZfG1KaT0PtFDJ/XFSqtiAAAAEHVzZXJAZXhhbXBsZS5jb20BAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";
    const NOW: i64 = 1_800_000_000;

    /// A signed tree of two users and the index, as publish writes it.
    fn tree() -> (Tree, Vec<PublicKey>) {
        let key = ssh_key::PrivateKey::from_openssh(SIGNER).unwrap();
        let sign = |b: &str| crate::sign::sign_native(&key, b.as_bytes()).unwrap();
        let mut t = Tree::default();
        let mut published = Vec::new();
        for (i, user) in ["alice", "bob"].into_iter().enumerate() {
            let h = Header {
                user: user.into(),
                kind: Kind::Keys,
                serial: 10 + i as u64,
                expires: NOW + 3600,
            };
            let (body, p) = build_body(
                user,
                &format!("{ED} {user}\n"),
                &PolicyConfig::default(),
                Some(&h),
                NOW,
            );
            t.files.insert(format!("{user}.keys.sig"), sign(&body));
            t.files.insert(format!("{user}.keys"), body.into_bytes());
            published.push(p);
        }
        let index = build_index(&published, &[], 99, Some(NOW + 3600));
        t.files.insert("keyward.index.sig".into(), sign(&index));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, index.as_bytes()).unwrap();
        t.files
            .insert("keyward.index.gz".into(), gz.finish().unwrap());
        t.files.insert("keyward.index".into(), index.into_bytes());
        (t, vec![key.public_key().clone()])
    }

    fn problems(t: &Tree, signers: &[PublicKey]) -> String {
        check_tree(t, Some("keyward.index"), Some(signers), NOW).join("\n")
    }

    #[test]
    fn a_tree_as_published_passes() {
        let (t, signers) = tree();
        assert_eq!(problems(&t, &signers), "");
    }

    #[test]
    fn missing_changed_unsigned_stray_and_expired_files_are_named() {
        let (t, signers) = tree();
        let mut missing = tree().0;
        missing.files.remove("bob.keys");
        assert!(problems(&missing, &signers)
            .contains("bob.keys: listed in keyward.index for bob, missing"));

        let mut changed = tree().0;
        changed
            .files
            .get_mut("alice.keys")
            .unwrap()
            .extend_from_slice(format!("{ED} extra\n").as_bytes());
        let p = problems(&changed, &signers);
        assert!(p.contains("alice.keys: its hash is not the one"), "{p}");
        assert!(p.contains("alice.keys: signature does not verify"), "{p}");

        let mut nosig = tree().0;
        nosig.files.remove("keyward.index.sig");
        assert!(problems(&nosig, &signers).contains("keyward.index: no signature"));

        let mut stray = tree().0;
        stray.files.insert("carol.keys".into(), b"x".to_vec());
        stray.files.insert(".alice.keys.tmp".into(), b"x".to_vec());
        stray.others.push("sub".into());
        let p = problems(&stray, &signers);
        assert!(
            p.contains("carol.keys: stray (a keys file the index does not list)"),
            "{p}"
        );
        assert!(p.contains(".alice.keys.tmp: stray"), "{p}");
        assert!(p.contains("sub: not a regular file"), "{p}");

        let mut gz = tree().0;
        gz.files
            .insert("keyward.index.gz".into(), b"not gzip".to_vec());
        assert!(problems(&gz, &signers).contains("keyward.index.gz: does not hold"));

        let later = check_tree(&t, Some("keyward.index"), Some(&signers), NOW + 7200).join("\n");
        assert!(later.contains("keyward.index: expired"), "{later}");
        assert!(later.contains("alice.keys: signed file expired"), "{later}");

        let other = PublicKey::from_openssh(ED).unwrap();
        let p = problems(&t, &[other]);
        assert!(p.contains("not a configured signer"), "{p}");
    }
}
