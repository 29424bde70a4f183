//! A real OpenSSH KRL (for sshd's `RevokedKeys`) built by `ssh-keygen -k`
//! from the same revocations as keyward's list.
//!
//! ssh-keygen takes one CA per run (`-s CA.pub`), so the KRL is built in
//! steps: the keys first (`hash:` and `sha1:` lines, no CA), then one
//! `-u` run per CA with its `serial:` and `id:` lines. The specs it reads
//! are written here from the parsed revocations, not copied from the
//! admin's files, so the KRL says exactly what keyward's list says. All of
//! it happens in a private directory beside the output; the finished KRL
//! is checked, synced and renamed over the output, so a reader (sshd)
//! never sees a partial or missing file.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::list::{b64, Revocations};
use super::spec::check_key_id;
use crate::os::command::run_command;

/// The KRL's file name beside the list in the directory (`publish`'s
/// `OUT/revoked.krl`).
pub const FILE: &str = "revoked.krl";

/// The first bytes of every KRL (PROTOCOL.krl).
pub const MAGIC: &[u8] = b"SSHKRL\n\0";

/// A KRL's SHA-256.
pub type Digest = super::spec::Sha256;

/// The SHA-256 a list's header names its KRL by (`krl=`).
pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A KRL's version number (`ssh-keygen -z`, the list's serial), from its
/// header (PROTOCOL.krl: the magic, a u32 format version, then the u64
/// version, big-endian); None: not a KRL.
pub fn version(bytes: &[u8]) -> Option<u64> {
    if !bytes.starts_with(MAGIC) {
        return None;
    }
    let v = bytes.get(MAGIC.len() + 4..MAGIC.len() + 12)?;
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// How to run ssh-keygen.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ssh-keygen` (found on PATH) unless set.
    pub ssh_keygen: PathBuf,
    /// Per ssh-keygen run.
    pub timeout: Duration,
    /// The KRL's version number (`-z`), e.g. the list's serial.
    pub version: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ssh_keygen: PathBuf::from("ssh-keygen"),
            timeout: Duration::from_secs(120),
            version: None,
        }
    }
}

/// The spec without a CA: every key revocation.
pub fn keys_spec(r: &Revocations) -> String {
    let mut s = String::new();
    for h in r.sha256.keys() {
        let _ = writeln!(s, "hash: SHA256:{}", b64(h));
    }
    for (_, key) in r.sha1.values() {
        let _ = writeln!(s, "sha1: {key}");
    }
    s
}

/// One spec per CA: (the CA's key line, the spec).
pub fn ca_specs(r: &Revocations) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for c in r.cas.values() {
        let mut s = String::new();
        for (lo, hi, _) in c.merged_serials() {
            if lo == hi {
                let _ = writeln!(s, "serial: {lo}");
            } else {
                let _ = writeln!(s, "serial: {lo}-{hi}");
            }
        }
        for id in c.ids.keys() {
            check_key_id(id)?;
            let _ = writeln!(s, "id: {id}");
        }
        if c.key.contains(['\n', '\r']) || c.key.split(' ').count() != 2 {
            return Err(format!("bad CA key {:?}", c.key));
        }
        out.push((c.key.clone(), s));
    }
    Ok(out)
}

/// Builds the KRL for `r` and puts it at `out` atomically; on any error
/// `out` is left as it was.
pub fn build(r: &Revocations, out: &Path, o: &Options) -> Result<(), String> {
    let name = out
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let cas = ca_specs(r)?;
    // 0700 and removed on every return.
    let tmp = tempfile::Builder::new()
        .prefix(".keyward-krl-")
        .tempdir_in(parent)
        .map_err(|e| format!("{}: cannot make a private directory: {e}", parent.display()))?;
    let krl = tmp.path().join("revoked.krl");
    let write =
        |p: &Path, text: &str| fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()));
    let keys = tmp.path().join("keys.spec");
    write(&keys, &keys_spec(r))?;
    run(o, &krl, None, &keys, false)?;
    for (i, (ca_key, spec)) in cas.iter().enumerate() {
        let ca = tmp.path().join(format!("ca{i}.pub"));
        let sp = tmp.path().join(format!("ca{i}.spec"));
        write(&ca, &format!("{ca_key}\n"))?;
        write(&sp, spec)?;
        run(o, &krl, Some(&ca), &sp, true)?;
    }
    let bytes = fs::read(&krl).map_err(|e| format!("{}: {e}", krl.display()))?;
    if !bytes.starts_with(MAGIC) {
        return Err("ssh-keygen wrote something that is not a KRL".into());
    }
    let f = fs::File::open(&krl).map_err(|e| format!("{}: {e}", krl.display()))?;
    f.sync_all()
        .map_err(|e| format!("{}: {e}", krl.display()))?;
    drop(f);
    set_mode(&krl, 0o644)?;
    let dest = parent.join(name);
    fs::rename(&krl, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// One `ssh-keygen -k` run.
fn run(
    o: &Options,
    krl: &Path,
    ca: Option<&Path>,
    spec: &Path,
    update: bool,
) -> Result<(), String> {
    let mut cmd = Command::new(&o.ssh_keygen);
    cmd.arg("-q").arg("-k");
    if update {
        cmd.arg("-u");
    }
    cmd.arg("-f").arg(krl);
    if let Some(ca) = ca {
        cmd.arg("-s").arg(ca);
    }
    if let Some(v) = o.version {
        cmd.arg("-z").arg(v.to_string());
    }
    cmd.arg(spec);
    let out = run_command(&mut cmd, o.timeout)?;
    if out.code != Some(0) {
        let why = out.stderr.trim();
        return Err(format!(
            "{} -k failed ({}): {}",
            o.ssh_keygen.display(),
            out.code
                .map_or("killed".to_owned(), |c| format!("exit {c}")),
            if why.is_empty() { "no message" } else { why }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::list::{CaRevocations, Source};

    fn src() -> Source {
        Source {
            file: "a.spec".into(),
            line: 1,
        }
    }

    #[test]
    fn specs_written_for_ssh_keygen() {
        let mut r = Revocations::default();
        r.sha256.insert([0; 32], src());
        r.sha1.insert([1; 20], (src(), "ssh-ed25519 AAAA".into()));
        let mut c = CaRevocations {
            key: "ssh-ed25519 AAAAC3".into(),
            ..Default::default()
        };
        c.serials = vec![(5, 5, src()), (7, 9, src()), (8, 12, src())];
        c.ids.insert("deploy@ci".into(), src());
        r.cas.insert([2; 32], c.clone());
        assert_eq!(
            keys_spec(&r),
            "hash: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nsha1: ssh-ed25519 AAAA\n"
        );
        assert_eq!(
            ca_specs(&r).unwrap(),
            vec![(
                "ssh-ed25519 AAAAC3".into(),
                "serial: 5\nserial: 7-12\nid: deploy@ci\n".into()
            )]
        );
        // An ID a spec line cannot carry is refused, never truncated.
        c.ids.insert("a#b".into(), src());
        r.cas.insert([2; 32], c);
        assert!(ca_specs(&r).is_err());
    }

    #[test]
    fn a_failed_build_leaves_the_old_krl_and_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("revoked.krl");
        fs::write(&out, b"old").unwrap();
        let mut r = Revocations::default();
        r.cas.insert(
            [2; 32],
            CaRevocations {
                // Not a key: ssh-keygen refuses it.
                key: "ssh-ed25519 AAAAnotakey".into(),
                serials: vec![(1, 1, src())],
                ..Default::default()
            },
        );
        let e = build(&r, &out, &Options::default()).unwrap_err();
        assert!(e.contains("-k failed"), "{e}");
        let missing = Options {
            ssh_keygen: "/nonexistent/ssh-keygen".into(),
            ..Options::default()
        };
        assert!(build(&Revocations::default(), &out, &missing).is_err());
        assert_eq!(fs::read(&out).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("revoked.krl")]);
        // An empty set is a valid (empty) KRL, its version as asked.
        let v = Options {
            version: Some(1_795_430_007),
            ..Options::default()
        };
        build(&Revocations::default(), &out, &v).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert_eq!(version(&bytes), Some(1_795_430_007));
        assert_eq!(version(&bytes[..MAGIC.len() + 11]), None);
        assert_eq!(version(b"SSHKRL\n"), None);
        assert_eq!(version(b"not a KRL at all, not at all"), None);
    }
}
