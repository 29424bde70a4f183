//! The directory's revocations: `SRC/revoked/NAME.spec` (ssh-keygen's KRL
//! specs, scoped to the CA in `NAME.pub` when there is one) become
//! `OUT/revoked.list` (keyward's list, `revocation::list`) and
//! `OUT/revoked.krl` (an OpenSSH KRL for sshd's `RevokedKeys`), each with
//! its own detached signature when signing: OpenSSH refuses KRLs with an
//! embedded signature since 9.4, so the KRL is signed apart, like every
//! other file. The index lists the list's version on its
//! `index::REVOKED` line, so a host's one conditional GET of the index
//! tells it whether the list changed.
//!
//! Every spec is parsed before anything is written: a spec that does not
//! parse fails the whole run (a revocation silently left out would let a
//! revoked key in). Without `SRC/revoked/` nothing is written or removed.

use std::path::Path;

use super::outdir::OutDir;
use super::{fresh_enough, next_serial, previous, stage, Options};
use crate::index::Digest;
use crate::revocation::krl;
use crate::revocation::list::{self, Revocations};
use crate::revocation::spec::{self, Spec};

/// The list's file name in OUT (and on the index's `revoked` line).
pub const LIST: &str = "revoked.list";
/// The KRL's file name in OUT.
pub const KRL: &str = "revoked.krl";
/// The input folder's name in SRC.
pub const FOLDER: &str = "revoked";
/// Largest spec or CA file read.
const MAX_INPUT: u64 = 256 * 1024 * 1024;

/// The revocations read from SRC, before anything is written.
pub struct Loaded {
    pub revocations: Revocations,
    pub specs: usize,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedInfo {
    /// The list's serial (None: unsigned).
    pub serial: Option<u64>,
    /// The index line's hash: of the list as written.
    pub hash: Digest,
    pub specs: usize,
    /// Revoked keys (both hashes) and CAs with certificate revocations.
    pub keys: usize,
    pub cas: usize,
    pub list_bytes: u64,
    pub krl_bytes: u64,
    /// Whether this run wrote the files (false: they were already current).
    pub written: bool,
}

/// Reads and parses `SRC/revoked/*.spec` in name order (None: no such
/// folder). Any error names the file and line.
pub fn load(src: &Path) -> Result<Option<Loaded>, String> {
    let dir = src.join(FOLDER);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|raw| format!("{}: file name {raw:?} is not UTF-8", dir.display()))?;
        if name.ends_with(".spec") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    let mut specs: Vec<Spec> = Vec::with_capacity(names.len());
    for name in &names {
        let ca_name = format!("{}.pub", name.trim_end_matches(".spec"));
        let ca = match read(&dir, &ca_name)? {
            Some(text) => Some(spec::parse_ca(&ca_name, &text).map_err(|e| e.to_string())?),
            None => None,
        };
        let text = read(&dir, name)?.ok_or_else(|| format!("{name}: vanished while read"))?;
        specs.push(
            spec::parse(name, &text, ca.as_ref()).map_err(|e| format!("{}: {e}", dir.display()))?,
        );
    }
    Ok(Some(Loaded {
        revocations: Revocations::from_specs(&specs),
        specs: specs.len(),
    }))
}

/// A file of the input folder (None: absent).
fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let path = dir.join(name);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    f.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!("{}: larger than {MAX_INPUT} bytes", path.display()));
    }
    Ok(Some(bytes))
}

/// The serial in a published list's header.
fn list_serial(text: &str) -> Option<u64> {
    list::Header::parse(text.lines().next()?).ok()?.serial
}

/// Writes `OUT/revoked.list` and `OUT/revoked.krl` (signed when `o.signer`
/// is set) for `loaded`, or leaves them as they are when the list would
/// not change and (signed) is not near its expiry.
pub fn write(
    o: &Options,
    out: &OutDir,
    key: Option<&ssh_key::PublicKey>,
    loaded: &Loaded,
    now: i64,
) -> Result<RevokedInfo, String> {
    let r = &loaded.revocations;
    let old = previous(o, out, LIST, key, list_serial)?;
    let old_header = old
        .as_deref()
        .and_then(|t| list::Header::parse(t.lines().next()?).ok());
    let info = |text: &str, serial, written| RevokedInfo {
        serial,
        hash: crate::index::digest(text.as_bytes()),
        specs: loaded.specs,
        keys: r.sha256.len() + r.sha1.len(),
        cas: r.cas.len(),
        list_bytes: text.len() as u64,
        krl_bytes: out.file_len(KRL).unwrap_or(0),
        written,
    };
    if let (Some(t), Some(h)) = (&old, old_header) {
        let signed_ok = match (o.signer, h.expires) {
            (Some(_), Some(e)) => {
                fresh_enough(o, e, now)
                    && out.is_file(&format!("{LIST}.sig"))
                    && out.is_file(&format!("{KRL}.sig"))
            }
            (None, None) => true,
            _ => false,
        };
        // The KRL is kept only while the list names it (`krl=`).
        if signed_ok && h.krl.is_some() && out.is_file(KRL) && r.render(&h) == *t {
            list_deltas(o, key, Some(t), t)?;
            return Ok(info(t, h.serial, false));
        }
    }
    let serial = o
        .signer
        .map(|_| next_serial(o.serial, old_header.and_then(|h| h.serial)));
    let krl_bytes = build_krl(r, serial.unwrap_or(o.serial))?;
    // The list names its KRL by hash: a host installs for sshd only the KRL
    // of the list it installed (same signature, floor and version).
    let header = list::Header {
        serial,
        expires: o.signer.map(|_| o.expires),
        krl: Some(krl::digest(&krl_bytes)),
    };
    let text = r.render(&header);
    // What a host will run on it: never publish a list hosts refuse.
    list::check(&text).map_err(|e| format!("{LIST}: built a list that fails its check: {e}"))?;
    let fail = |name: &str| {
        let path = o.out.join(name);
        move |e: std::io::Error| format!("{}: {e}", path.display())
    };
    // The deltas before the list they lead to.
    list_deltas(o, key, old.as_deref(), &text)?;
    // The KRL first: a host fetching the list right after sees its KRL.
    let mut files = stage(o, out, KRL, &krl_bytes)?;
    files.extend(stage(o, out, LIST, text.as_bytes())?);
    let stale: Vec<String> = match o.signer {
        Some(_) => Vec::new(),
        None => vec![format!("{KRL}.sig"), format!("{LIST}.sig")],
    };
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    out.commit(files, &stale).map_err(fail(LIST))?;
    let mut i = info(&text, header.serial, true);
    i.krl_bytes = krl_bytes.len() as u64;
    Ok(i)
}

/// The list's deltas (`publish/delta.rs`): signed lists only (a delta is
/// named by its serial), none with `--delta-keep 0`.
fn list_deltas(
    o: &Options,
    key: Option<&ssh_key::PublicKey>,
    old: Option<&str>,
    new: &str,
) -> Result<(), String> {
    if o.delta_keep == 0 || list_serial(new).is_none() {
        return super::delta::remove_all(o, LIST);
    }
    super::delta::update(o, key, LIST, "revoked", list_serial, old, new).map(|_| ())
}

/// The KRL's bytes, built by `ssh-keygen -k` in a private folder (never in
/// OUT, which others may write), version `version`.
fn build_krl(r: &Revocations, version: u64) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("building {KRL}: {e}");
    let dir = tempfile::Builder::new()
        .prefix("keyward-krl-")
        .tempdir()
        .map_err(fail)?;
    let path = dir.path().join(KRL);
    let opts = krl::Options {
        version: Some(version),
        ..krl::Options::default()
    };
    krl::build(r, &path, &opts).map_err(|e| format!("building {KRL}: {e}"))?;
    let bytes = std::fs::read(&path).map_err(fail)?;
    dir.close().map_err(fail)?;
    Ok(bytes)
}

/// The index line naming the list's version.
pub fn index_line(i: &RevokedInfo) -> crate::index::Line<'static> {
    crate::index::Line {
        user: crate::index::REVOKED,
        serial: i.serial,
        hash: i.hash,
        path: LIST,
    }
}

/// What `keyward publish` prints about it.
pub fn report(i: &RevokedInfo) -> String {
    let serial = i
        .serial
        .map_or("unsigned".to_owned(), |s| format!("serial {s}"));
    let state = if i.written { "written" } else { "unchanged" };
    format!(
        "revocations: {} spec(s), {} key(s), {} CA(s) with revoked certificates: \
         {LIST} ({serial}, {} bytes) and {KRL} ({} bytes) {state}",
        i.specs, i.keys, i.cas, i.list_bytes, i.krl_bytes
    )
}
