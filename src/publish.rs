//! `keyward publish`: build a complete, static directory tree.
//!
//! Input: what a `source::Source` lists (a folder of per-user key files
//! `alice`/`alice.keys` and principals files `deploy.principals`, an LDAP
//! search, a forge's per-user URLs). Each user's lines are checked with the
//! same parser and policy as the login path; what passes is written as
//! `OUT/<user>.keys` or `OUT/<user>.principals` with a `#keyward` header
//! (`kind=principals` for the latter) and signed by a `sign::Signer`
//! (in-process for an unencrypted ed25519/ECDSA key, else `ssh-keygen -Y
//! sign -n keyward`: agents, tokens and passphrases work as admins already
//! use them); without a signer the same files are written unsigned, with no
//! header. Files for users no longer in the source are removed, so the tree
//! is complete; a file whose content would not change is left alone until
//! it nears expiry; a user the source could not answer for this time keeps
//! the file published before. Last, the directory index
//! (`OUT/keyward.index`, see `index`) lists every user's keys file, signed
//! the same way, plus a gzip copy (`keyward.index.gz`) for servers that
//! serve precompressed files (nginx `gzip_static`).
//!
//! OUT may be writable by others while publish runs as root: every access
//! to it goes through `outdir` (no link followed, temporary files created
//! exclusively, renamed into place), and ssh-keygen signs in a private
//! folder (`sign`). A user name that a header or an index line cannot
//! carry unambiguously is refused (`publishable`): reported, left out, the
//! rest published.

mod check;
mod delta;
mod guard;
mod indexfile;
mod outdir;
mod revoked;
mod users;

pub use check::{check_tree, read_tree, Tree};
pub use guard::MaxRemoved;
pub use indexfile::build_index;
use indexfile::write_index;

use std::path::{Path, PathBuf};

use outdir::OutDir;

use crate::config::PolicyConfig;
use crate::entry::Kind;
use crate::lookup::candidates;
use crate::policy::{self, Judged};
use crate::sign::Signer;
use crate::signed::{self, Header};
use crate::source::{Got, Item, Listing, Source};

/// What publishing one user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub user: String,
    pub kind: Kind,
    /// The serial signed into the file (never one published before); None
    /// when publishing unsigned.
    pub serial: Option<u64>,
    pub served: usize,
    /// The index line's hash: of the file as written.
    pub hash: crate::index::Digest,
    /// `line N: reason` for each dropped line.
    pub dropped: Vec<String>,
}

/// Starts a body: the signed header line, when signing.
fn head(header: Option<&Header>) -> String {
    match header {
        Some(h) => format!("{}\n", h.to_line()),
        None => String::new(),
    }
}

/// A published file: the header, then every served line; the dropped
/// ones (`Err`: why, with its line number) are only reported.
fn assemble(
    user: &str,
    kind: Kind,
    header: Option<&Header>,
    lines: impl Iterator<Item = Result<String, String>>,
) -> (String, Published) {
    let mut body = head(header);
    let (mut served, mut dropped) = (0, Vec::new());
    for line in lines {
        match line {
            Ok(l) => {
                body.push_str(&l);
                body.push('\n');
                served += 1;
            }
            Err(why) => dropped.push(why),
        }
    }
    let p = Published {
        user: user.to_owned(),
        kind,
        serial: header.map(|h| h.serial),
        served,
        hash: crate::index::digest(body.as_bytes()),
        dropped,
    };
    (body, p)
}

/// Builds the body for one user (pure); with a header, the signed form.
pub fn build_body(
    user: &str,
    text: &str,
    policy: &PolicyConfig,
    header: Option<&Header>,
    now: i64,
) -> (String, Published) {
    let mut cands = Vec::new();
    candidates("input", text, &mut cands);
    let lines = policy::judge(policy, &cands, now)
        .into_iter()
        .map(|(c, judged)| match judged {
            Judged::Served(k) => Ok(k.to_line()),
            Judged::Dropped(why) => Err(format!("line {}: {why}", c.line_no)),
        });
    assemble(user, Kind::Keys, header, lines)
}

/// Builds the principals body for one user (pure): the lines
/// `keyward principals` would serve, options verbatim.
pub fn build_principals_body(
    user: &str,
    text: &str,
    policy: &PolicyConfig,
    header: Option<&Header>,
    now: i64,
) -> (String, Published) {
    let cands = crate::principals::candidates(text);
    let verdicts = crate::principals::evaluate(policy, &cands, now);
    let lines = cands
        .iter()
        .zip(&verdicts)
        .filter_map(|(c, v)| match (v, &c.parsed) {
            (None, Ok(l)) => Some(Ok(l.to_line())),
            (Some(d), _) => Some(Err(format!("line {}: {d}", c.line_no))),
            // A line that does not parse always has a verdict.
            (None, Err(_)) => None,
        });
    assemble(user, Kind::Principals, header, lines)
}

pub struct Options<'a> {
    /// Where users and keys are read from (a folder, LDAP, a forge).
    pub source: &'a dyn Source,
    pub out: &'a Path,
    /// None: unsigned files (for hosts without `signers`).
    pub signer: Option<&'a Signer>,
    /// The index file name (`[directory] index`); None: no index.
    pub index: Option<&'a str>,
    pub serial: u64,
    pub expires: i64,
    pub policy: &'a PolicyConfig,
    pub max_username_len: usize,
    /// How many older serials of the index and the revocation list keep a
    /// delta (`publish/delta.rs`); 0: none, and the index announces none.
    pub delta_keep: usize,
    /// How many of the users published in OUT this run may remove.
    pub max_removed: MaxRemoved,
}

pub use guard::DEFAULT as MAX_REMOVED;

pub use delta::KEEP as DELTA_KEEP;

/// Largest previous file publish reads back from OUT (to keep it or to
/// continue its serial): the largest index a host accepts.
const OLD_MAX: u64 = crate::index::MAX_BYTES;

/// Whether publish can write `user`'s file of `kind` so that every reader
/// reads back exactly this user: a name keyward serves, one a `#keyward`
/// header carries (checked unsigned too, so that turning signing on never
/// drops a user) and, for a keys file listed in an index, one an index line
/// carries.
pub fn publishable(user: &str, kind: Kind, max_len: usize, index: bool) -> Result<(), String> {
    crate::username::validate(user, max_len).map_err(|e| e.to_string())?;
    signed::check_user(user)?;
    if user == crate::index::REVOKED || user == crate::index::DELTAS {
        return Err("the name of one of the index's own lines".into());
    }
    if index && kind == Kind::Keys {
        crate::index::check_fields(user, &out_name(user, kind))
            .map_err(|e| format!("an index line cannot carry it: {e}"))?;
    }
    Ok(())
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub users: Vec<Published>,
    /// Source entries left out, sorted: nothing was written for them.
    pub refused: Vec<Refused>,
    /// The source's notes, and users kept as published before.
    pub notes: Vec<String>,
    pub index: Option<IndexInfo>,
    /// None: no `SRC/revoked/`.
    pub revoked: Option<revoked::RevokedInfo>,
}

pub use crate::source::Refused;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// None: no deltas (`--delta-keep 0`).
    pub deltas: Option<delta::DeltaInfo>,
    pub path: PathBuf,
    pub serial: u64,
    pub bytes: u64,
    pub gzip_bytes: u64,
}

impl Publication {
    /// What `keyward publish` prints: each user, dropped lines, a summary.
    pub fn report(&self, o: &Options) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.users {
            let what = match r.kind {
                Kind::Keys => "key(s)",
                Kind::Principals => "principal(s)",
            };
            out.push(format!("{}: {} {what} published", r.user, r.served));
            out.extend(r.dropped.iter().map(|d| format!("  dropped {d}")));
        }
        let dropped: usize = self.users.iter().map(|r| r.dropped.len()).sum();
        let signed = match self.users.iter().filter_map(|r| r.serial).max() {
            Some(serial) => format!(
                "serial up to {serial}, expires {}",
                signed::format_utc(o.expires)
            ),
            None if o.signer.is_some() => "signed".into(),
            None => "unsigned".into(),
        };
        let refused = match self.refused.len() {
            0 => String::new(),
            n => format!("; {n} source file(s) refused"),
        };
        out.push(format!(
            "published {} user(s) to {} ({signed}); {dropped} line(s) dropped{refused}",
            self.users.len(),
            o.out.display(),
        ));
        if let Some(r) = &self.revoked {
            out.push(revoked::report(r));
        }
        if let Some(i) = &self.index {
            out.push(format!(
                "index {} (serial {}): {} bytes, {} gzip-compressed",
                i.path.display(),
                i.serial,
                i.bytes,
                i.gzip_bytes
            ));
            if let Some(d) = &i.deltas {
                out.push(format!(
                    "deltas: {}.d/ from {} older serial(s), the largest {} bytes",
                    i.path.display(),
                    d.kept,
                    d.largest
                ));
            }
        }
        out
    }

    /// One line per refused source file, for stderr (names quoted and
    /// escaped: they may hold control characters).
    pub fn refusals(&self, o: &Options) -> Vec<String> {
        self.refused
            .iter()
            .map(|r| {
                format!(
                    "{}: refused {:?}, nothing published for it: {}",
                    o.source.describe(),
                    r.file,
                    r.why
                )
            })
            .collect()
    }
}

/// What the source has that can be published, with what is refused (by
/// the source or by `publishable`) and the source's notes.
fn scan(o: &Options) -> Result<Listing, String> {
    let listing = o.source.read()?;
    let mut refused = listing.refused;
    let mut items = Vec::with_capacity(listing.items.len());
    for item in listing.items {
        match publishable(&item.user, item.kind, o.max_username_len, o.index.is_some()) {
            Ok(()) => items.push(item),
            Err(why) => refused.push(Refused {
                file: item.origin,
                why,
            }),
        }
    }
    refused.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Listing {
        items,
        refused,
        notes: listing.notes,
    })
}

/// The text to publish for `item`: what the source gave or, when it could
/// not answer for this user, the lines of the file published before (kept
/// as they are, re-signed only when near expiry); None when there is none.
fn input_text(item: &Item, old: Option<&str>) -> Option<String> {
    match &item.got {
        Got::Text(t) => Some(t.clone()),
        Got::Failed(_) => {
            let old = old?;
            Some(match signed::parse_header(old) {
                Ok(_) => old.split_once('\n').map_or("", |(_, rest)| rest).to_owned(),
                Err(_) => old.to_owned(),
            })
        }
    }
}

/// Publishes every user the source has into `out`, then the index. A
/// refused entry is left out (and a file published for it earlier
/// removed); a user the source could not answer for keeps its file.
pub fn publish(o: &Options) -> Result<Publication, String> {
    let Listing {
        items: inputs,
        refused,
        mut notes,
    } = scan(o)?;
    // Before anything is written: a bad spec fails the run.
    let revocations = match o.source.folder() {
        Some(dir) => revoked::load(&dir)?,
        None => None,
    };
    if let Some(name) = o.index {
        // The index must never be taken for a user's file, nor overwritten.
        if let Some(Item { user, kind, .. }) =
            inputs.iter().find(|i| out_name(&i.user, i.kind) == name)
        {
            return Err(format!(
                "{user}'s {} file would be the index {name}: choose another [directory] index",
                kind.as_str()
            ));
        }
    }
    std::fs::create_dir_all(o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let out = OutDir::new(o.out);
    let _held = out.lock()?;
    let key = o.signer.and_then(Signer::public_key);
    // What OUT holds, listed once: the guard counts its users, and a user's
    // file is kept only with its signature among them.
    let present = out
        .regular_files()
        .map_err(|e| format!("listing {}: {e}", o.out.display()))?;
    refuse_mass_removal(o, &present, &inputs)?;
    let now = crate::os::clock::now_secs() as i64;
    // Every user's files are written first and renamed into place together:
    // a failure (a signature, a full disk) leaves the tree as it was.
    // Files are created on this thread only: on ext4, threads creating
    // files in one folder contend in the inode allocator (badly so after a
    // mass deletion), where building and signing them spreads well.
    let (mut results, mut staged, mut stale_sigs) = (Vec::new(), Vec::new(), Vec::new());
    for step in users::steps(o, &out, &present, key.as_ref(), &inputs, now)? {
        notes.extend(step.note);
        results.extend(step.published);
        if let Some(w) = step.write {
            staged.extend(stage_signed(o, &out, &w.name, &w.body, w.sig.as_deref())?);
        }
        stale_sigs.extend(step.stale_sig);
    }
    let stale_sigs: Vec<&str> = stale_sigs.iter().map(String::as_str).collect();
    out.commit(staged, &stale_sigs)
        .map_err(|e| format!("{}: {e}", o.out.display()))?;
    let rev = match &revocations {
        Some(l) => Some(revoked::write(o, &out, key.as_ref(), l, now)?),
        None => None,
    };
    let extra: Vec<crate::index::Line> = rev.iter().map(revoked::index_line).collect();
    let index = match o.index {
        Some(name) => Some(write_index(o, &out, key.as_ref(), name, &results, &extra)?),
        None => None,
    };
    remove_stale(&out, &results, o.index)?;
    out.sync()
        .map_err(|e| format!("{}: {e}", o.out.display()))?;
    Ok(Publication {
        users: results,
        refused,
        notes,
        index,
        revoked: rev,
    })
}

/// Fails before anything is written when this run would remove more of
/// the users published in OUT than `--max-removed` allows (`guard`).
fn refuse_mass_removal(
    o: &Options,
    present: &outdir::Names,
    inputs: &[Item],
) -> Result<(), String> {
    let mut kept: Vec<(&str, &str)> = inputs
        .iter()
        .map(|i| (i.user.as_str(), i.kind.as_str()))
        .collect();
    kept.sort_unstable();
    // The index is nobody's file, whatever its name.
    let users_files = present
        .iter()
        .filter(|n| !o.index.is_some_and(|i| of_index(n, i)));
    guard::check(users_files, &kept, o.max_removed).map_err(|e| format!("{}: {e}", o.out.display()))
}

/// The body of one input file, of its kind.
fn build(
    o: &Options,
    user: &str,
    kind: Kind,
    text: &str,
    header: Option<&Header>,
    now: i64,
) -> (String, Published) {
    match kind {
        Kind::Keys => build_body(user, text, o.policy, header, now),
        Kind::Principals => build_principals_body(user, text, o.policy, header, now),
    }
}

/// Whether a signed file (or index) expiring at `expires` is still good
/// for long enough not to be re-signed: more than half of `--validity` left.
fn fresh_enough(o: &Options, expires: i64, now: i64) -> bool {
    expires - now > (o.expires - now) / 2
}

/// The file `name` already in OUT, if publish may build on it (keep it, or
/// continue its serial): read without following links and, when signing
/// and its serial (`serial_of`) is at or above this run's, only if its
/// `.sig` verifies with this signer. Whoever can write OUT could otherwise
/// plant a header with serial 2^64-1 for this run to continue and sign,
/// and every host's rollback floor would then refuse all later files. A
/// lower serial changes nothing this run signs (`next_serial`), so the
/// usual case pays no verification. When the signer's public key cannot be
/// read (neither the key file nor `KEY.pub` is an OpenSSH key) the file is
/// taken as it is.
fn previous(
    o: &Options,
    out: &OutDir,
    name: &str,
    key: Option<&ssh_key::PublicKey>,
    serial_of: fn(&str) -> Option<u64>,
) -> Result<Option<String>, String> {
    let read = |name: &str, cap| {
        out.read(name, cap)
            .map_err(|e| format!("{}: {e}", o.out.join(name).display()))
    };
    let Some(text) = read(name, OLD_MAX)? else {
        return Ok(None);
    };
    let (Some(_), Some(key)) = (o.signer, key) else {
        return Ok(Some(text));
    };
    if serial_of(&text).is_none_or(|serial| serial < o.serial) {
        return Ok(Some(text));
    }
    let sig = read(&format!("{name}.sig"), crate::sign::MAX_SIG)?;
    let ours = sig.is_some_and(|sig| {
        signed::verify(text.as_bytes(), sig.as_bytes(), std::slice::from_ref(key)).is_ok()
    });
    Ok(ours.then_some(text))
}

/// The published entry for `user` if the file already published (`old`) is
/// exactly what this run would write with its header (and its signature,
/// when signing, is among the regular files `present` in OUT): nothing to do.
fn keep(
    o: &Options,
    present: &outdir::Names,
    user: &str,
    kind: Kind,
    text: &str,
    old: Option<&str>,
    now: i64,
) -> Option<Published> {
    let old = old?;
    let header = match o.signer {
        Some(_) => {
            let h = signed::parse_header(old).ok()?;
            let sig = format!("{}.sig", out_name(user, kind));
            if h.user != user
                || h.kind != kind
                || !fresh_enough(o, h.expires, now)
                || !present.contains(&sig)
            {
                return None;
            }
            Some(h)
        }
        None => None,
    };
    let (body, p) = build(o, user, kind, text, header.as_ref(), now);
    (body == old).then_some(p)
}

/// `alice.keys`, `deploy.principals`: the names the URL templates ask for.
fn out_name(user: &str, kind: Kind) -> String {
    format!("{user}.{}", kind.as_str())
}

fn now_secs() -> i64 {
    crate::os::clock::now_secs() as i64
}

/// Stages `name` with `body` and, when signing, `name.sig` before it (a
/// reader never gets a new body with no signature for it).
fn stage(
    o: &Options,
    out: &OutDir,
    name: &str,
    body: &[u8],
) -> Result<Vec<outdir::Staged>, String> {
    let sig = sign(o, name, body)?;
    stage_signed(o, out, name, body, sig.as_deref())
}

/// The signature of `body` (the file `name`), when signing.
fn sign(o: &Options, name: &str, body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    o.signer
        .map(|s| s.sign(body).map_err(|e| format!("signing {name}: {e}")))
        .transpose()
}

/// Stages `name` with `body`, and its signature `sig` before it.
fn stage_signed(
    o: &Options,
    out: &OutDir,
    name: &str,
    body: &[u8],
    sig: Option<&[u8]>,
) -> Result<Vec<outdir::Staged>, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", o.out.join(name).display());
    let mut files = Vec::with_capacity(2);
    if let Some(sig) = sig {
        files.push(out.stage(&format!("{name}.sig"), sig).map_err(fail)?);
    }
    files.push(out.stage(name, body).map_err(fail)?);
    Ok(files)
}

/// A serial is never reused: hosts refuse a signed file whose serial is at
/// or below one they accepted with another body (the rollback floor), so a
/// repeated serial would lock the user out. `max(requested, last + 1)`.
pub fn next_serial(requested: u64, last: Option<u64>) -> u64 {
    match last {
        Some(l) => requested.max(l.saturating_add(1)),
        None => requested,
    }
}

/// The serial in the header of a file already published.
fn last_serial(old: &str) -> Option<u64> {
    signed::parse_header(old).ok().map(|h| h.serial)
}

/// Whether `name` is the index `index` or its signature or gzip copy.
fn of_index(name: &str, index: &str) -> bool {
    name.strip_prefix(index)
        .is_some_and(|r| ["", ".sig", ".gz"].contains(&r))
}

/// Removes the files of users not published this run (refused ones
/// included): only names in OUT, links themselves, never a directory.
fn remove_stale(out: &OutDir, results: &[Published], index: Option<&str>) -> Result<(), String> {
    let keep: std::collections::HashSet<(&str, &str)> = results
        .iter()
        .map(|r| (r.user.as_str(), r.kind.as_str()))
        .collect();
    let names = out
        .entries()
        .map_err(|e| format!("listing the output folder: {e}"))?;
    for raw in names {
        let name = raw.to_string_lossy().into_owned();
        if index.is_some_and(|i| of_index(&name, i)) {
            continue;
        }
        if let Some((user, kind)) = guard::published_name(&name) {
            if !keep.contains(&(user, kind.as_str())) {
                out.remove(&raw).map_err(|e| format!("{name}: {e}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::indexfile::gzip;
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

    #[test]
    fn serials_are_never_reused() {
        assert_eq!(next_serial(100, None), 100);
        assert_eq!(next_serial(100, Some(50)), 100);
        assert_eq!(next_serial(100, Some(100)), 101);
        assert_eq!(next_serial(100, Some(200)), 201);
        assert_eq!(next_serial(5, Some(u64::MAX)), u64::MAX);
    }

    #[test]
    fn body_has_header_and_only_policy_clean_keys() {
        let h = Header {
            user: "alice".into(),
            kind: crate::entry::Kind::Keys,
            serial: 3,
            expires: 2_000_000_000,
        };
        let text = format!("# laptop\n{ED} a\nssh-dss AAAA\n{ED} dup\n");
        let (body, p) = build_body("alice", &text, &PolicyConfig::default(), Some(&h), 0);
        let mut lines = body.lines();
        assert_eq!(signed::parse_header(&body).unwrap(), h);
        lines.next();
        assert_eq!(lines.next(), Some(format!("{ED} a").as_str()));
        assert_eq!(lines.next(), None);
        assert_eq!(p.served, 1);
        assert_eq!(p.dropped.len(), 2, "{:?}", p.dropped);
        assert_eq!(p.hash, crate::index::digest(body.as_bytes()));
        // Unsigned: the same keys, no header.
        let (plain, p) = build_body("alice", &text, &PolicyConfig::default(), None, 0);
        assert_eq!(plain, format!("{ED} a\n"));
        assert_eq!(p.serial, None);
    }

    #[test]
    fn index_lists_every_published_keys_file_with_its_version() {
        let policy = PolicyConfig::default();
        let mut results = Vec::new();
        for (u, serial) in [("bob", None), ("alice", Some(7))] {
            let h = serial.map(|s| Header {
                user: u.into(),
                kind: Kind::Keys,
                serial: s,
                expires: 2_000_000_000,
            });
            results.push(build_body(
                u,
                &format!("{ED} {u}\n"),
                &policy,
                h.as_ref(),
                0,
            ));
        }
        let mut published: Vec<Published> = results.iter().map(|(_, p)| p.clone()).collect();
        // A principals file is not in the index.
        published.push(build_principals_body("carol", "team\n", &policy, None, 0).1);
        let text = build_index(&published, &[], 42, Some(2_000_000_000));
        let idx = crate::index::Index::parse(&text).unwrap();
        assert_eq!(idx.header.serial, Some(42));
        assert_eq!(idx.lines.len(), 2);
        let alice = idx.get("alice").unwrap();
        assert_eq!((alice.serial, alice.path), (Some(7), "alice.keys"));
        assert_eq!(alice.hash, crate::index::digest(results[1].0.as_bytes()));
        assert_eq!(idx.get("bob").unwrap().serial, None);
        assert!(idx.get("carol").is_none());
        // The same lines under another header: rendered once, re-headed.
        let other = crate::index::Header {
            serial: Some(43),
            expires: None,
        };
        assert_eq!(
            super::indexfile::with_header(&text, &other),
            build_index(&published, &[], 43, None)
        );
        let gz = gzip(text.as_bytes()).unwrap();
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn publishable_names() {
        use Kind::{Keys, Principals};
        for (user, kind, index) in [
            ("alice", Keys, true),
            ("a@corp.example.com", Keys, true),
            // No index line for these: the header alone carries them.
            ("dåve", Keys, false),
            ("dåve", Principals, true),
            ("CORP\\alice", Keys, false),
        ] {
            assert_eq!(publishable(user, kind, 255, index), Ok(()), "{user}");
        }
        for (user, kind, index) in [
            ("a b", Keys, false),
            ("a b", Principals, false),
            ("a=b", Principals, false),
            ("alice kind=principals", Keys, false),
            ("dåve", Keys, true),
            ("a#b", Keys, true),
            ("a\tb", Keys, false),
            ("-a", Keys, false),
            ("aaaa", Keys, false),
            // The index's revocation list line is nobody's.
            (":revoked", Keys, true),
            (":revoked", Principals, false),
        ] {
            let max = if user == "aaaa" { 3 } else { 255 };
            assert!(publishable(user, kind, max, index).is_err(), "{user:?}");
        }
    }

    #[test]
    fn refused_names_are_left_out_and_their_old_files_removed() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let (src, out) = (root.path().join("src"), root.path().join("out"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&out).unwrap();
        for name in ["alice.keys", "a b.keys", "x=y.principals"] {
            std::fs::write(src.join(name), format!("{ED} k\n")).unwrap();
        }
        let raw = std::ffi::OsStr::from_bytes(b"n\xff.keys");
        std::fs::write(src.join(raw), format!("{ED} k\n")).unwrap();
        // What an earlier publish wrote for a refused name.
        std::fs::write(out.join("a b.keys"), format!("{ED} k\n")).unwrap();
        std::fs::write(out.join("a b.keys.sig"), "old").unwrap();
        let policy = PolicyConfig::default();
        let folder = crate::source::folder::Folder { dir: src.clone() };
        let o = Options {
            source: &folder,
            out: &out,
            signer: None,
            index: Some("keyward.index"),
            serial: 1,
            expires: 2_000_000_000,
            policy: &policy,
            max_username_len: 255,
            delta_keep: 0,
            // "a b" is the only user published before.
            max_removed: MaxRemoved::Percent(100),
        };
        let p = publish(&o).unwrap();
        let users: Vec<&str> = p.users.iter().map(|u| u.user.as_str()).collect();
        assert_eq!(users, ["alice"]);
        let refused: Vec<&str> = p.refused.iter().map(|r| r.file.as_str()).collect();
        assert_eq!(refused, ["a b.keys", "n\u{fffd}.keys", "x=y.principals"]);
        assert!(
            p.refusals(&o)[0].contains("\"a b.keys\""),
            "{:?}",
            p.refusals(&o)
        );
        let report = p.report(&o);
        assert!(
            report
                .iter()
                .any(|l| l.contains("; 3 source file(s) refused")),
            "{report:?}"
        );
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["alice.keys", "keyward.index", "keyward.index.gz"]);
        let index = std::fs::read_to_string(out.join("keyward.index")).unwrap();
        let idx = crate::index::Index::parse(&index).unwrap();
        assert_eq!(
            idx.lines.iter().map(|l| l.user).collect::<Vec<_>>(),
            ["alice"]
        );
    }

    #[test]
    fn principals_body_has_its_kind_and_verbatim_options() {
        let h = Header {
            user: "deploy".into(),
            kind: Kind::Principals,
            serial: 9,
            expires: 2_000_000_000,
        };
        let text = "# web\nfrom=\"10.0.0.0/8\",command=\"echo \\\"a b\\\"\"  team-web\nteam-web extra\nalice\n";
        let (body, p) =
            build_principals_body("deploy", text, &PolicyConfig::default(), Some(&h), 0);
        let mut lines = body.lines();
        assert_eq!(signed::parse_header(&body).unwrap(), h);
        lines.next();
        assert_eq!(
            lines.next(),
            Some("from=\"10.0.0.0/8\",command=\"echo \\\"a b\\\"\" team-web")
        );
        assert_eq!(lines.next(), Some("alice"));
        assert_eq!(lines.next(), None);
        assert_eq!(
            (p.served, p.dropped.len(), p.kind),
            (2, 1, Kind::Principals)
        );
    }
}
