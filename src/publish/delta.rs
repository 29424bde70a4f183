//! The deltas publish writes beside the index and the revocation list
//! (`delta`'s format): for a file F at serial T, the folder `F.d/` holds
//! `F.d/S` = the change from S to T for each older serial S still kept,
//! and `F.d/T`, the empty delta, which a current host polls (and gets 304
//! for) until F changes. Each is signed like every file (`F.d/S.sig`).
//!
//! When F changes from T' to T, each kept `F.d/S` (S to T') is read back,
//! checked (its signature with this signer when its key is known, its
//! `to` and `to_sha256` against F at T'), composed with the step T' to T
//! and rewritten: a host at any kept S still needs one request. A delta is
//! dropped once it is larger than [`MAX_FRACTION`] of F (and over
//! [`SMALL`]: then the full file costs the host about as much), or when
//! more than `--delta-keep` older serials are kept; a host whose serial has
//! no delta gets a 404 and fetches F whole.
//!
//! The folder is opened once without following links and used through
//! its descriptor (`/proc/self/fd/N`), so a link planted in OUT never
//! redirects a write.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::outdir::OutDir;
use super::{stage, Options};
use crate::delta::{self, Delta};

/// The default of `--delta-keep`: how many older serials keep a delta.
pub const KEEP: usize = 100;
/// A delta larger than F / MAX_FRACTION is dropped...
pub const MAX_FRACTION: usize = 4;
/// ...unless it is this small.
pub const SMALL: usize = 8192;

/// What was written for one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaInfo {
    /// Older serials with a delta (the empty one not counted).
    pub kept: usize,
    /// The largest delta, in bytes.
    pub largest: usize,
}

/// The delta folder of F in OUT, opened without following a link.
struct SubDir {
    _fd: File,
    path: PathBuf,
}

fn open_subdir(o: &Options, name: &str) -> Result<SubDir, String> {
    let full = o.out.join(name);
    let fail = |e: std::io::Error| format!("{}: {e}", full.display());
    // Anything but a folder in its place (a planted link) goes, itself.
    match std::fs::symlink_metadata(&full) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => std::fs::remove_file(&full).map_err(fail)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    match std::fs::DirBuilder::new().create(&full) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(fail(e)),
        _ => {}
    }
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&full)
        .map_err(fail)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok(SubDir { _fd: fd, path })
}

/// A delta file's name: its `from` serial, in plain decimal.
fn serial_name(name: &str) -> Option<u64> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    ok.then(|| name.parse().ok()).flatten()
}

/// What every delta written this run leads to.
struct Target<'a> {
    kind: &'a str,
    to: u64,
    to_sha256: [u8; 32],
    expires: Option<i64>,
}

impl Target<'_> {
    fn from(&self, from: u64, from_sha256: [u8; 32], change: delta::Change) -> Delta {
        Delta {
            kind: self.kind.to_owned(),
            from,
            from_sha256,
            to: self.to,
            to_sha256: self.to_sha256,
            expires: self.expires,
            change,
        }
    }
}

/// Writes F's deltas for the move from `old` (F as published before, if
/// any) to `new` (F as this run publishes it, at serial `serial_of(new)`).
/// `file`: F's name in OUT; `kind`: the deltas' `kind=`. Called before F
/// itself is replaced, so the deltas are in place when F names them.
#[allow(clippy::too_many_arguments)]
pub(super) fn update(
    o: &Options,
    key: Option<&ssh_key::PublicKey>,
    file: &str,
    kind: &str,
    serial_of: fn(&str) -> Option<u64>,
    old: Option<&str>,
    new: &str,
) -> Result<DeltaInfo, String> {
    let t = serial_of(new).ok_or_else(|| format!("{file}: no serial for its deltas"))?;
    let sub = open_subdir(o, &format!("{file}.d"))?;
    let d = OutDir::new(&sub.path);
    let shown = format!("{}/{file}.d", o.out.display());
    let names: Vec<String> = d
        .entries()
        .map_err(|e| format!("{shown}: {e}"))?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    let on_disk: BTreeSet<u64> = names.iter().filter_map(|n| serial_name(n)).collect();
    let target = Target {
        kind,
        to: t,
        to_sha256: delta::sha256(new),
        expires: o.signer.map(|_| o.expires),
    };
    // F unchanged: its deltas stand; only the empty one must be there.
    let keep_old = old == Some(new);
    let deltas = match old.map(|old| (old, serial_of(old))) {
        Some((old, Some(tp))) if old != new && tp < t => {
            composed(o, &d, key, &target, &on_disk, (old, tp), new)
                .map_err(|e| format!("{file}: {e}"))?
        }
        _ => Vec::new(),
    };
    let limit = (new.len() / MAX_FRACTION).max(SMALL);
    let mut rendered: Vec<(u64, String)> = deltas
        .iter()
        .map(|x| (x.from, x.render()))
        .filter(|(_, text)| text.len() <= limit)
        .take(o.delta_keep)
        .collect();
    let mut info = DeltaInfo {
        kept: rendered.len(),
        largest: rendered.iter().map(|(_, t)| t.len()).max().unwrap_or(0),
    };
    let signed_ok = |n: &str| o.signer.is_none() || d.is_file(&format!("{n}.sig"));
    if keep_old {
        info.kept = on_disk.iter().filter(|&&s| s < t).count();
        if d.is_file(&t.to_string()) && signed_ok(&t.to_string()) {
            return Ok(info);
        }
    }
    let empty = target.from(t, target.to_sha256, delta::diff(new, new)?);
    rendered.push((t, empty.render()));
    let mut staged = Vec::with_capacity(2 * rendered.len());
    for (s, text) in &rendered {
        let name = s.to_string();
        staged.extend(stage(o, &d, &name, text.as_bytes()).map_err(|e| format!("{shown}: {e}"))?);
    }
    // Every other serial's delta (and signature) goes: it no longer leads
    // to F as published. Kept deltas stay when F did not change.
    let written: BTreeSet<u64> = rendered.iter().map(|(s, _)| *s).collect();
    let stale: Vec<&str> = names
        .iter()
        .filter(|n| {
            let base = n.strip_suffix(".sig").unwrap_or(n);
            let unsigned_sig = o.signer.is_none() && n.ends_with(".sig");
            serial_name(base).is_some_and(|s| unsigned_sig || (!keep_old && !written.contains(&s)))
        })
        .map(String::as_str)
        .collect();
    d.commit(staged, &stale)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(info)
}

/// The deltas to `new` from the previous serial `tp` (the step `old` to
/// `new`) and from each older serial on disk whose delta to `tp` checks
/// (`read_checked`), composed with the step; newest first, at most one
/// more than `--delta-keep`.
fn composed(
    o: &Options,
    d: &OutDir,
    key: Option<&ssh_key::PublicKey>,
    target: &Target,
    on_disk: &BTreeSet<u64>,
    (old, tp): (&str, u64),
    new: &str,
) -> Result<Vec<Delta>, String> {
    let step = delta::diff(old, new)?;
    let old_sha = delta::sha256(old);
    let mut deltas = vec![target.from(tp, old_sha, step.clone())];
    for &s in on_disk.iter().rev().filter(|&&s| s < tp) {
        if deltas.len() > o.delta_keep {
            break;
        }
        let prev = read_checked(d, key, o, &s.to_string(), target.kind, tp, old_sha);
        let Some(prev) = prev.filter(|p| p.from == s) else {
            continue;
        };
        if let Ok(change) = delta::compose(&prev.change, &step) {
            deltas.push(target.from(s, prev.from_sha256, change));
        }
    }
    Ok(deltas)
}

/// A delta already in the folder that leads to F at `to` (text hash
/// `to_sha`), of this `kind`, signed by this signer when its key is known.
fn read_checked(
    d: &OutDir,
    key: Option<&ssh_key::PublicKey>,
    o: &Options,
    name: &str,
    kind: &str,
    to: u64,
    to_sha: [u8; 32],
) -> Option<Delta> {
    let text = d.read(name, delta::MAX_BYTES).ok()??;
    if let (Some(_), Some(key)) = (o.signer, key) {
        let sig = d
            .read(&format!("{name}.sig"), crate::sign::MAX_SIG)
            .ok()??;
        crate::signed::verify(text.as_bytes(), sig.as_bytes(), std::slice::from_ref(key)).ok()?;
    }
    let x = Delta::parse(&text).ok()?;
    (x.kind == kind && x.to == to && x.to_sha256 == to_sha).then_some(x)
}

/// Removes F's deltas (`--delta-keep 0`): hosts are not told of them and
/// `publish --check` would find them stale.
pub(super) fn remove_all(o: &Options, file: &str) -> Result<(), String> {
    let full = o.out.join(format!("{file}.d"));
    match std::fs::symlink_metadata(&full) {
        Ok(md) if md.is_dir() => {}
        _ => return Ok(()),
    }
    let sub = open_subdir(o, &format!("{file}.d"))?;
    let d = OutDir::new(&sub.path);
    let names = d
        .entries()
        .map_err(|e| format!("{}: {e}", full.display()))?;
    for n in names {
        d.remove(&n)
            .map_err(|e| format!("{}: {e}", full.display()))?;
    }
    drop(sub);
    match std::fs::remove_dir(&full) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", full.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

    /// Four publishes, one user changed each time, two older serials kept:
    /// each kept delta leads from its serial's index to the current one,
    /// the oldest is gone, and `--check` finds the tree fit; a delta
    /// tampered with is found by `--check` and dropped by the next run.
    #[test]
    fn each_kept_delta_leads_to_the_current_index_and_the_oldest_goes() {
        let root = tempfile::tempdir().unwrap();
        let (src, out) = (root.path().join("src"), root.path().join("out"));
        std::fs::create_dir(&src).unwrap();
        let policy = crate::config::PolicyConfig::default();
        let folder = crate::source::folder::Folder { dir: src.clone() };
        let write = |u: &str, tag: &str| {
            std::fs::write(src.join(format!("{u}.keys")), format!("{ED} {u}-{tag}\n")).unwrap()
        };
        let publish = |serial: u64| {
            let o = Options {
                source: &folder,
                out: &out,
                signer: None,
                index: Some("keyward.index"),
                serial,
                expires: 2_000_000_000,
                policy: &policy,
                max_username_len: 255,
                delta_keep: 2,
                max_removed: crate::publish::MAX_REMOVED,
            };
            crate::publish::publish(&o).unwrap();
            std::fs::read_to_string(out.join("keyward.index")).unwrap()
        };
        for u in ["a", "b", "c"] {
            write(u, "0");
        }
        let mut texts = vec![(10, publish(10))];
        for (serial, u) in [(20, "b"), (30, "c"), (40, "a")] {
            write(u, "1");
            texts.push((serial, publish(serial)));
        }
        let dir = out.join("keyward.index.d");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["20", "30", "40"]);
        let current = &texts[3].1;
        assert!(current.contains("\n:deltas - 0000000000000000 keyward.index.d\n"));
        for (serial, text) in &texts[1..] {
            let d = Delta::parse(&std::fs::read_to_string(dir.join(serial.to_string())).unwrap())
                .unwrap();
            assert_eq!((d.from, d.to, d.kind.as_str()), (*serial, 40, "index"));
            assert_eq!(&d.apply_to(text).unwrap(), current, "from {serial}");
        }
        let check = |out: &std::path::Path| {
            let tree = crate::publish::read_tree(out, 1 << 20).unwrap();
            crate::publish::check_tree(&tree, Some("keyward.index"), None, 1_900_000_000)
        };
        assert_eq!(check(&out), Vec::<String>::new());
        let tampered = std::fs::read_to_string(dir.join("30"))
            .unwrap()
            .replace(" to=40 ", " to=41 ");
        std::fs::write(dir.join("30"), tampered).unwrap();
        let problems = check(&out);
        assert!(
            problems.len() == 1 && problems[0].contains("keyward.index.d/30"),
            "{problems:?}"
        );
        write("b", "2");
        let text50 = publish(50);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["20", "40", "50"],
            "the tampered delta is not carried on"
        );
        let d = Delta::parse(&std::fs::read_to_string(dir.join("40")).unwrap()).unwrap();
        assert_eq!(d.apply_to(current).unwrap(), text50);
        assert_eq!(check(&out), Vec::<String>::new());
    }

    #[test]
    fn delta_file_names_are_plain_serials() {
        for (n, want) in [
            ("0", Some(0)),
            ("17", Some(17)),
            ("017", None),
            ("", None),
            ("1.sig", None),
            ("-1", None),
            ("18446744073709551616", None),
        ] {
            assert_eq!(serial_name(n), want, "{n}");
        }
    }
}
