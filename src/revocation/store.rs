//! The revocation list a host enforces at login: where it is kept, and the
//! login path's questions to it ("is this key revoked?", "is this
//! certificate?").
//!
//! The stored list is installed only after its checks (signature,
//! `expires`, rollback floor, `list::check`: `install`), so at login it is
//! trusted to be well formed and only searched (`ListFile`: a few
//! `pread`s). What the
//! login path does:
//!
//! * No list (the file is absent): nothing is revoked. This costs one
//!   failed `open()`.
//! * A list that cannot be opened or read, or whose header or a line read
//!   by the search is malformed: the host was tampered with or its disk is
//!   damaged. The login path fails closed (nothing served, `decision=fail`,
//!   the reason names the list), since "revoked" cannot be told from "not
//!   revoked".
//! * A list past its `expires` is still enforced: a list only ever refuses
//!   keys, so an old one never lets in anything a newer one would refuse
//!   that the directory's own files do not.

use std::io;
use std::path::PathBuf;

use super::list::{CertQuery, ListFile, Revoked};
use super::spec::{self, Sha256};
use crate::config::Config;
use crate::keyline::KeyLine;
use crate::principals::CertInfo;

/// Where the host keeps its installed list: security state, beside the
/// rollback floors (`[state] dir`), so cleaning the cache never drops a
/// revocation.
pub fn path(config: &Config) -> PathBuf {
    config.state.dir.join("revoked.list")
}

/// The installed list, if there is one.
pub fn open(config: &Config) -> Result<Option<ListFile>, String> {
    let p = path(config);
    match ListFile::open(&p, 0) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unusable(&p, e)),
    }
}

fn unusable(p: &std::path::Path, e: io::Error) -> String {
    format!(
        "revocation list {} unusable ({e}): failing closed, since a revoked key cannot be told apart",
        p.display()
    )
}

/// Whether a served key line's key is revoked (a `cert-authority` line's
/// key is the CA's: revoking a CA revokes what it signed).
pub fn key(list: &ListFile, config: &Config, k: &KeyLine) -> Result<Option<Revoked>, String> {
    list.key(k.key.key_data())
        .map_err(|e| unusable(&path(config), e))
}

/// Whether a served key line's key is revoked by its SHA-1 (for the key
/// sshd asked about, whose SHA-256 [`fingerprint`] already looked up).
pub fn key_sha1(list: &ListFile, config: &Config, k: &KeyLine) -> Result<Option<Revoked>, String> {
    let sha1 = spec::sha1_of(k.key.key_data())?;
    list.key_sha1(&sha1).map_err(|e| unusable(&path(config), e))
}

/// Whether the key with the SHA-256 fingerprint `fp` (sshd's `%f`) is
/// revoked by its SHA-256 (a fingerprint that does not parse names no key).
pub fn fingerprint(list: &ListFile, config: &Config, fp: &str) -> Result<Option<Revoked>, String> {
    let Ok(h) = spec::parse_fingerprint(fp) else {
        return Ok(None);
    };
    list.key_hashes(&h, None)
        .map_err(|e| unusable(&path(config), e))
}

/// The certificate sshd describes to `principals` (`fp=%f ca=%F id=%i
/// serial=%s`), as a list query. Every field is needed: without one, a
/// revocation of that kind could not be seen.
pub fn cert_query(info: &CertInfo) -> Result<CertQuery<'_>, String> {
    let missing = |name: &str, token: &str| {
        format!(
            "a revocation list is installed but sshd passed no {name}= ({name}={token}): \
             the certificate cannot be checked against it; use the packaged \
             AuthorizedPrincipalsCommand line"
        )
    };
    let fp = |v: &Option<String>, name: &str, token: &str| -> Result<Sha256, String> {
        let v = v.as_deref().ok_or_else(|| missing(name, token))?;
        spec::parse_fingerprint(v).map_err(|e| format!("{name}={v:?}: {e}"))
    };
    let serial = info
        .serial
        .as_deref()
        .ok_or_else(|| missing("serial", "%s"))?;
    Ok(CertQuery {
        key: fp(&info.fp, "fp", "%f")?,
        key_sha1: None,
        ca: fp(&info.ca, "ca", "%F")?,
        ca_sha1: None,
        serial: serial
            .parse()
            .map_err(|_| format!("serial={serial:?} is not a certificate serial"))?,
        key_id: info
            .id
            .as_deref()
            .ok_or_else(|| missing("id", "%i"))?
            .as_bytes(),
    })
}

/// Whether the certificate is revoked: by its key, its CA's key, its key ID
/// or its serial for its CA (SHA-256 revocations only: sshd passes no key
/// blobs here, so `sha1:` lines reach certificates through `RevokedKeys`).
pub fn cert(list: &ListFile, config: &Config, info: &CertInfo) -> Result<Option<Revoked>, String> {
    let q = cert_query(info)?;
    list.cert(&q).map_err(|e| unusable(&path(config), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";

    fn info<S: AsRef<str>>(args: &[S]) -> CertInfo {
        CertInfo::parse(args).unwrap()
    }

    #[test]
    fn a_certificate_query_needs_every_field_sshd_can_pass() {
        let full = info(&[
            &format!("fp={FP}"),
            &format!("ca={FP}"),
            "id=deploy@ci",
            "serial=42",
        ]);
        let q = cert_query(&full).unwrap();
        assert_eq!(q.serial, 42);
        assert_eq!(q.key_id, b"deploy@ci");
        assert_eq!(q.key, spec::parse_fingerprint(FP).unwrap());
        // An empty key ID is a key ID (never revoked by ID), not a missing one.
        let empty_id = info(&[&format!("fp={FP}"), &format!("ca={FP}"), "id=", "serial=0"]);
        assert_eq!(cert_query(&empty_id).unwrap().key_id, b"");
        for (args, what) in [
            (
                vec![format!("ca={FP}"), "id=x".into(), "serial=1".into()],
                "fp=%f",
            ),
            (
                vec![format!("fp={FP}"), "id=x".into(), "serial=1".into()],
                "ca=%F",
            ),
            (
                vec![format!("fp={FP}"), format!("ca={FP}"), "serial=1".into()],
                "id=%i",
            ),
            (
                vec![format!("fp={FP}"), format!("ca={FP}"), "id=x".into()],
                "serial=%s",
            ),
        ] {
            let e = cert_query(&info(&args)).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
        for bad in [
            vec![
                "fp=MD5:aa".to_owned(),
                format!("ca={FP}"),
                "id=x".into(),
                "serial=1".into(),
            ],
            vec![
                format!("fp={FP}"),
                format!("ca={FP}"),
                "id=x".into(),
                "serial=-1".into(),
            ],
            vec![
                format!("fp={FP}"),
                format!("ca={FP}"),
                "id=x".into(),
                "serial=%s".into(),
            ],
        ] {
            assert!(cert_query(&info(&bad)).is_err(), "{bad:?}");
        }
    }
}
