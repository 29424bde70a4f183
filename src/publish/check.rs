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
pub fn read_tree(out: &Path, cap: u64) -> Result<Tree, String> {
    let shown = out.display();
    let mut tree = Tree::default();
    let rd = std::fs::read_dir(out).map_err(|e| format!("{shown}: {e}"))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("{shown}: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file {
            tree.others.push(name);
            continue;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(entry.path())
            .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if bytes.len() as u64 > cap {
            return Err(format!("{}: larger than {cap} bytes", entry.path().display()));
        }
        tree.files.insert(name, bytes);
    }
    Ok(tree)
}

/// Every problem with the tree (empty: fit to upload). `signers`: the
/// keys its signatures must verify with; None for an unsigned tree.
pub fn check_tree(
    tree: &Tree,
    index: Option<&str>,
    signers: Option<&[PublicKey]>,
    now: i64,
) -> Vec<String> {
    let mut problems: Vec<String> = tree
        .others
        .iter()
        .map(|n| format!("{n}: not a regular file"))
        .collect();
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let text = |name: &str| -> Option<&str> {
        std::str::from_utf8(tree.files.get(name)?).ok()
    };
    // A signed file: its signature, then its header.
    let mut signed_file = |name: &str, user: &str, kind: Kind, problems: &mut Vec<String>| {
        let Some(signers) = signers else {
            return None;
        };
        let sig_name = format!("{name}.sig");
        expected.insert(sig_name.clone());
        let (Some(body), Some(sig)) = (text(name), tree.files.get(&sig_name)) else {
            problems.push(format!("{name}: no signature ({sig_name} missing)"));
            return None;
        };
        match signed::check_file(body, sig, signers, user, kind, now) {
            Ok(h) => Some(h.serial),
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                None
            }
        }
    };
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    if let Some(index) = index {
        expected.insert(index.to_owned());
        match text(index) {
            None => problems.push(format!("{index}: missing (or not UTF-8)")),
            Some(itext) => {
                if let Some(signers) = signers {
                    let sig_name = format!("{index}.sig");
                    expected.insert(sig_name.clone());
                    match tree.files.get(&sig_name) {
                        None => problems.push(format!("{index}: no signature ({sig_name} missing)")),
                        Some(sig) => {
                            if let Err(e) = signed::verify(itext.as_bytes(), sig, signers) {
                                problems.push(format!("{index}: {e}"));
                            }
                        }
                    }
                }
                check_index(tree, index, itext, signers.is_some(), now, &mut problems);
                if let Ok(idx) = crate::index::Index::parse(itext) {
                    for line in &idx.lines {
                        listed.insert(line.path);
                        expected.insert(line.path.to_owned());
                        let Some(body) = tree.files.get(line.path) else {
                            problems.push(format!("{}: listed in {index} for {}, missing", line.path, line.user));
                            continue;
                        };
                        if crate::index::digest(body) != line.hash {
                            problems.push(format!("{}: its hash is not the one {index} gives", line.path));
                        }
                        let serial = signed_file(line.path, line.user, Kind::Keys, &mut problems);
                        if serial.is_some() && serial != line.serial {
                            problems.push(format!("{}: serial differs from {index}'s", line.path));
                        }
                    }
                }
                if tree.files.contains_key(&format!("{index}.gz")) {
                    expected.insert(format!("{index}.gz"));
                }
            }
        }
    }
    for name in tree.files.keys() {
        if let Some(user) = name.strip_suffix(".principals") {
            expected.insert(name.clone());
            signed_file(name, user, Kind::Principals, &mut problems);
        } else if index.is_none() {
            if let Some(user) = name.strip_suffix(".keys") {
                expected.insert(name.clone());
                signed_file(name, user, Kind::Keys, &mut problems);
            }
        }
    }
    for name in tree.files.keys() {
        if expected.contains(name) {
            continue;
        }
        let why = match name.strip_suffix(".keys") {
            Some(_) if !listed.contains(name.as_str()) && index.is_some() => {
                "a keys file the index does not list"
            }
            _ if name.ends_with(".sig") && signers.is_none() => "a signature in an unsigned tree",
            _ if name.starts_with('.') => "a leftover temporary file",
            _ => "not part of the publication",
        };
        problems.push(format!("{name}: stray ({why})"));
    }
    problems
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
            Some(e) if e <= now => problems.push(format!(
                "{index}: expired at {}",
                signed::format_utc(e)
            )),
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
