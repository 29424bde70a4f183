//! ssh-keygen's KRL specification files (`ssh-keygen -k`, ssh-keygen(1),
//! KEY REVOCATION LISTS), parsed (pure).
//!
//! One directive a line, case-insensitive, `#` starts a comment anywhere on
//! the line, leading and trailing blanks (space, tab) are ignored:
//!
//! ```text
//! serial: 1234          # or a range: serial: 1000-1999 (0x.. hex, 0.. octal)
//! id: deploy@ci         # a certificate's key ID
//! key: ssh-ed25519 AAAA...   # a key (a certificate's key, as a plain key)
//! sha1: ssh-ed25519 AAAA...  # a key, revoked by its SHA-1
//! sha256: ssh-ed25519 AAAA...
//! hash: SHA256:Xb0c...  # a fingerprint as `ssh-keygen -l` prints it
//! ssh-ed25519 AAAA...   # a bare key: by SHA-1; a bare certificate: by
//!                       # its serial (or key ID when the serial is 0) for
//!                       # the CA that signed it
//! ```
//!
//! `serial:` and `id:` revoke certificates of one CA: the spec's `NAME.pub`
//! beside `NAME.spec`. Without it they are an error, as ssh-keygen makes
//! them (keyward never builds "any CA" revocations). Where ssh-keygen
//! would accept something odd that keyward could not express back to it
//! (an empty key ID, a sign before a serial, a CR line ending), this parser
//! refuses it: keyward's list and the KRL it builds must mean the same.

use std::fmt;

use ssh_key::public::KeyData;
use ssh_key::{Fingerprint, HashAlg, PublicKey};

/// SHA-256 of a plain public key blob (what `SHA256:` fingerprints show).
pub type Sha256 = [u8; 32];
/// SHA-1 of a plain public key blob.
pub type Sha1 = [u8; 20];

/// Longest spec line accepted: a 16384-bit RSA certificate fits.
pub const MAX_LINE: usize = 16 * 1024;
/// Longest key ID accepted (keeps the list's lines bounded).
pub const MAX_KEY_ID: usize = 1024;
/// Longest spec file name accepted.
pub const MAX_NAME: usize = 128;

/// A certificate authority: its fingerprint and its public key as
/// `TYPE BASE64` (what `ssh-keygen -s CA.pub` reads back).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ca {
    pub fp: Sha256,
    pub key: String,
}

impl Ca {
    pub fn from_key_data(k: &KeyData) -> Result<Ca, String> {
        Ok(Ca {
            fp: sha256_of(k),
            key: openssh_line(k)?,
        })
    }
}

/// What one spec line revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// `key:`, `sha256:`, `hash:`: a key by the SHA-256 of its blob.
    KeySha256(Sha256),
    /// `sha1:` and a bare plain key: a key by the SHA-1 of its blob; the
    /// key (`TYPE BASE64`) is kept since a KRL spec can only name a SHA-1
    /// by its key.
    KeySha1 { digest: Sha1, key: String },
    /// `serial:` for the spec's CA, or a bare certificate with a serial.
    Serial { ca: Ca, lo: u64, hi: u64 },
    /// `id:` for the spec's CA, or a bare certificate with serial 0.
    KeyId { ca: Ca, id: String },
}

/// One revoking line of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub line: usize,
    pub what: Revocation,
}

/// A parsed spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The file name (`NAME.spec`), for errors and the list's sources.
    pub file: String,
    pub ca: Option<Ca>,
    pub lines: Vec<Line>,
}

/// An error in a spec (or its CA) file, naming file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.msg),
            n => write!(f, "{}:{n}: {}", self.file, self.msg),
        }
    }
}

impl std::error::Error for SpecError {}

/// SHA-256 of `k`'s plain blob.
pub fn sha256_of(k: &KeyData) -> Sha256 {
    let mut out = [0u8; 32];
    out.copy_from_slice(Fingerprint::new(HashAlg::Sha256, k).as_bytes());
    out
}

/// SHA-1 of `k`'s plain blob.
pub fn sha1_of(k: &KeyData) -> Result<Sha1, String> {
    use sha1::Digest as _;
    let blob = PublicKey::new(k.clone(), "")
        .to_bytes()
        .map_err(|e| format!("cannot encode key: {e}"))?;
    Ok(sha1::Sha1::digest(&blob).into())
}

fn openssh_line(k: &KeyData) -> Result<String, String> {
    PublicKey::new(k.clone(), "")
        .to_openssh()
        .map(|s| s.trim_end().to_owned())
        .map_err(|e| format!("cannot encode key: {e}"))
}

/// A spec's file name: what the list records as the source of a
/// revocation, so it stays a plain token.
pub fn check_file_name(file: &str) -> Result<(), String> {
    let ok = !file.is_empty()
        && file.len() <= MAX_NAME
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad file name {file:?} (letters, digits and ._-+@ only, at most {MAX_NAME})"
        ))
    }
}

/// A key or certificate as ssh-keygen reads one: `TYPE BASE64 [COMMENT]`.
pub enum AnyKey {
    Plain(PublicKey),
    Cert(Box<Cert>),
}

/// What a revocation needs from a certificate. (ssh-key's own parser
/// refuses certificates valid "forever", ssh-keygen's default, so the
/// wire format is read here.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The certified key, as a plain key.
    pub key: KeyData,
    pub serial: u64,
    pub key_id: Vec<u8>,
    /// The signing CA.
    pub ca: KeyData,
}

impl AnyKey {
    pub fn parse(text: &str) -> Result<AnyKey, String> {
        let mut it = text.split([' ', '\t']).filter(|s| !s.is_empty());
        let (Some(kind), Some(b64)) = (it.next(), it.next()) else {
            return Err("not a public key (TYPE BASE64 [COMMENT])".into());
        };
        if kind.ends_with(CERT_SUFFIX) {
            let blob = base64_decode(b64).ok_or("bad certificate: invalid base64")?;
            let c = parse_cert(kind, &blob).map_err(|e| format!("bad certificate: {e}"))?;
            Ok(AnyKey::Cert(Box::new(c)))
        } else {
            let k = PublicKey::from_openssh(&format!("{kind} {b64}"))
                .map_err(|e| format!("bad public key: {e}"))?;
            Ok(AnyKey::Plain(k))
        }
    }

    /// The key itself (a certificate's subject key).
    pub fn plain(&self) -> &KeyData {
        match self {
            AnyKey::Plain(k) => k.key_data(),
            AnyKey::Cert(c) => &c.key,
        }
    }
}

const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// Reads an OpenSSH certificate blob (PROTOCOL.certkeys): type, nonce,
/// the key's public fields, serial, type, key ID, principals, validity,
/// options, extensions, reserved, signature key, signature.
pub fn parse_cert(kind: &str, blob: &[u8]) -> Result<Cert, String> {
    let mut r = Wire(blob);
    if r.string()? != kind.as_bytes() {
        return Err("type inside the blob differs from the line's".into());
    }
    let base = &kind[..kind.len() - CERT_SUFFIX.len()];
    // sk- types keep their @openssh.com suffix as plain keys.
    let (plain, fields) = match base {
        "ssh-ed25519" => (base.to_owned(), 1),
        "ssh-rsa" => (base.to_owned(), 2),
        "ssh-dss" => (base.to_owned(), 4),
        b if b.starts_with("ecdsa-sha2-") => (b.to_owned(), 2),
        "sk-ssh-ed25519" => (format!("{base}@openssh.com"), 2),
        "sk-ecdsa-sha2-nistp256" => (format!("{base}@openssh.com"), 3),
        _ => return Err(format!("unknown certificate type {kind:?}")),
    };
    r.string()?; // nonce
    let mut key_blob = Vec::new();
    put_string(&mut key_blob, plain.as_bytes());
    for _ in 0..fields {
        put_string(&mut key_blob, r.string()?);
    }
    let key = PublicKey::from_bytes(&key_blob)
        .map_err(|e| format!("bad certified key: {e}"))?
        .key_data()
        .clone();
    let serial = r.u64()?;
    r.u32()?; // user or host
    let key_id = r.string()?.to_vec();
    r.string()?; // principals
    r.u64()?; // valid after
    r.u64()?; // valid before
    r.string()?; // critical options
    r.string()?; // extensions
    r.string()?; // reserved
    let ca = PublicKey::from_bytes(r.string()?)
        .map_err(|e| format!("bad CA key: {e}"))?
        .key_data()
        .clone();
    r.string()?; // signature
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(Cert {
        key,
        serial,
        key_id,
        ca,
    })
}

struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let hi = self.u32()? as u64;
        Ok(hi << 32 | self.u32()? as u64)
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Standard base64 with `=` padding (as in key lines).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, q) in s.chunks(4).enumerate() {
        let last = i + 1 == s.len() / 4;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Parses a CA public key file (`NAME.pub`): one plain public key, with
/// blank and `#` lines allowed around it.
pub fn parse_ca(file: &str, text: &[u8]) -> Result<Ca, SpecError> {
    let err = |line, msg: String| SpecError {
        file: file.to_owned(),
        line,
        msg,
    };
    let mut found = None;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let s = std::str::from_utf8(raw).map_err(|_| err(n, "not UTF-8".into()))?;
        let s = s.trim_matches([' ', '\t', '\r']);
        if s.is_empty() || s.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(err(n, "more than one key in a CA file".into()));
        }
        let key = match AnyKey::parse(s).map_err(|e| err(n, e))? {
            AnyKey::Plain(k) => k,
            AnyKey::Cert(_) => {
                return Err(err(n, "a CA must be a plain key, not a certificate".into()))
            }
        };
        found = Some(Ca::from_key_data(key.key_data()).map_err(|e| err(n, e))?);
    }
    found.ok_or_else(|| err(0, "no public key in the CA file".into()))
}

/// Parses the spec `file` (its name, e.g. `alice.spec`), scoped to `ca`
/// (from `NAME.pub`, when there is one). Stops at the first error.
pub fn parse(file: &str, text: &[u8], ca: Option<&Ca>) -> Result<Spec, SpecError> {
    let err = |line, msg: String| SpecError {
        file: file.to_owned(),
        line,
        msg,
    };
    check_file_name(file).map_err(|e| err(0, e))?;
    let mut lines = Vec::new();
    let mut raw_lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if raw_lines.last().is_some_and(|l| l.is_empty()) {
        raw_lines.pop();
    }
    for (i, raw) in raw_lines.into_iter().enumerate() {
        let n = i + 1;
        if raw.len() > MAX_LINE {
            return Err(err(n, format!("line longer than {MAX_LINE} bytes")));
        }
        let s = std::str::from_utf8(raw).map_err(|_| err(n, "not UTF-8".into()))?;
        if let Some(what) = parse_line(s, ca).map_err(|e| err(n, e))? {
            lines.push(Line { line: n, what });
        }
    }
    Ok(Spec {
        file: file.to_owned(),
        ca: ca.cloned(),
        lines,
    })
}

/// `s` with ssh-keygen's trimming: leading blanks, then everything from
/// `#`, then trailing blanks.
fn significant(s: &str) -> &str {
    let s = s.trim_start_matches([' ', '\t']);
    let s = s.split('#').next().unwrap_or_default();
    s.trim_end_matches([' ', '\t'])
}

/// `rest` after a case-insensitive `directive` (with its colon), blanks
/// skipped.
fn directive<'a>(s: &'a str, directive: &str) -> Option<&'a str> {
    let head = s.get(..directive.len())?;
    head.eq_ignore_ascii_case(directive)
        .then(|| s[directive.len()..].trim_start_matches([' ', '\t']))
}

fn parse_line(raw: &str, ca: Option<&Ca>) -> Result<Option<Revocation>, String> {
    if raw.ends_with('\r') {
        return Err("line ends with CR (save the file with Unix line endings)".into());
    }
    if raw.contains(['\0', '\r']) {
        return Err("control character in line".into());
    }
    let s = significant(raw);
    if s.is_empty() {
        return Ok(None);
    }
    let need_ca = |what: &str| {
        ca.cloned().ok_or_else(|| {
            format!("revoking certificates by {what} requires a CA key (NAME.pub beside NAME.spec)")
        })
    };
    if let Some(rest) = directive(s, "serial:") {
        let ca = need_ca("serial number")?;
        let (lo, hi) = parse_serials(rest)?;
        return Ok(Some(Revocation::Serial { ca, lo, hi }));
    }
    if let Some(rest) = directive(s, "id:") {
        let ca = need_ca("key ID")?;
        check_key_id(rest)?;
        return Ok(Some(Revocation::KeyId {
            ca,
            id: rest.to_owned(),
        }));
    }
    if let Some(rest) = directive(s, "hash:") {
        return parse_fingerprint(rest).map(|h| Some(Revocation::KeySha256(h)));
    }
    let (mode, rest) = if let Some(r) = directive(s, "key:") {
        ("key", r)
    } else if let Some(r) = directive(s, "sha1:") {
        ("sha1", r)
    } else if let Some(r) = directive(s, "sha256:") {
        ("sha256", r)
    } else {
        ("", s)
    };
    let key = AnyKey::parse(rest).map_err(|e| {
        if mode.is_empty() {
            format!("not a directive (serial: id: key: sha1: sha256: hash:) nor a key: {e}")
        } else {
            e
        }
    })?;
    let sha1 = |k: &KeyData| -> Result<Revocation, String> {
        Ok(Revocation::KeySha1 {
            digest: sha1_of(k)?,
            key: openssh_line(k)?,
        })
    };
    Ok(Some(match (mode, &key) {
        ("key" | "sha256", k) => Revocation::KeySha256(sha256_of(k.plain())),
        ("sha1", k) => sha1(k.plain())?,
        (_, AnyKey::Plain(k)) => sha1(k.key_data())?,
        (_, AnyKey::Cert(c)) => {
            let ca = Ca::from_key_data(&c.ca)?;
            if c.serial != 0 {
                Revocation::Serial {
                    ca,
                    lo: c.serial,
                    hi: c.serial,
                }
            } else {
                let id = String::from_utf8(c.key_id.clone()).map_err(|_| {
                    "certificate with serial 0 and a key ID that is not UTF-8".to_owned()
                })?;
                check_key_id(&id).map_err(|e| {
                    format!("certificate with serial 0: {e}; revoke it with key: or id:")
                })?;
                Revocation::KeyId { ca, id }
            }
        }
    }))
}

/// A key ID a spec line can carry (and keyward's list can store).
pub fn check_key_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty key ID".into());
    }
    if id.len() > MAX_KEY_ID {
        return Err(format!("key ID longer than {MAX_KEY_ID} bytes"));
    }
    if id.starts_with([' ', '\t']) || id.ends_with([' ', '\t']) || id.contains('#') {
        return Err(format!(
            "key ID {id:?} has a leading or trailing blank or a '#', which a spec line cannot carry"
        ));
    }
    if id.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("key ID {id:?} has a control character"));
    }
    Ok(())
}

/// `N` or `N-M` (M > N, N > 0), each as C's strtoull with base 0 reads it
/// (decimal, `0x` hex, `0` octal), as ssh-keygen does.
fn parse_serials(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid serial {s:?}");
    let (lo, rest) = c_number(s).ok_or_else(bad)?;
    let hi = match rest.strip_prefix('-') {
        None if rest.is_empty() => lo,
        None => return Err(bad()),
        Some(r) => {
            let (hi, rest) = c_number(r.trim_start_matches([' ', '\t'])).ok_or_else(bad)?;
            if !rest.is_empty() {
                return Err(bad());
            }
            if hi <= lo {
                return Err(format!("invalid serial range {lo}-{hi}"));
            }
            hi
        }
    };
    if lo == 0 {
        return Err("serial 0 cannot be revoked (it means \"no serial\")".into());
    }
    Ok((lo, hi))
}

/// An unsigned number with C's base-0 prefixes; the rest of `s` after it.
fn c_number(s: &str) -> Option<(u64, &str)> {
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let v = u64::from_str_radix(&digits[..end], radix).ok()?;
    Some((v, &digits[end..]))
}

/// `SHA256:BASE64` (padding optional), as `ssh-keygen -l` prints and
/// sshd passes as `%f`/`%F`.
pub fn parse_fingerprint(s: &str) -> Result<Sha256, String> {
    if !s.starts_with("SHA256:") {
        return Err(format!("unsupported hash {s:?} (only SHA256:...)"));
    }
    let fp: Fingerprint = s
        .trim_end_matches('=')
        .parse()
        .map_err(|_| format!("invalid hash {s:?}"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(fp.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519` keys; CERT is KEY signed by CA with
    // `-I deploy@ci -n alice -z 42`, CERT0 the same with `-z 0`.
    pub const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBeAAb2gUteuwnwfmNigStmSLc6UgtXGJPv6+tlilTEO ca";
    pub const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICbQcg/AlQD+pBljhdEYNMVTUkOb7SY8X8Ifq83ttkVG key";
    pub const CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIBlV9L+4nieJQ8vUIjwN3pi45bF5iVN8Uu5CbYmZyC+7AAAAICbQcg/AlQD+pBljhdEYNMVTUkOb7SY8X8Ifq83ttkVGAAAAAAAAACoAAAABAAAACWRlcGxveUBjaQAAAAkAAAAFYWxpY2UAAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgF4ABvaBS167CfB+Y2KBK2ZItzpSC1cYk+/r62WKVMQ4AAABTAAAAC3NzaC1lZDI1NTE5AAAAQA+WSvHD/xofxSq33cM9E1GiJMCU9SOQgxHY7/Bvnt+zC0mru+4Q5Bq3qTQi8WG3mh92jKuI4l+0kha9JisxUgQ= key";
    pub const CERT0: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAILttVIqC7pa4bEoLw7T7hRDLlSsKn7RLdVSX3k46pbkRAAAAICbQcg/AlQD+pBljhdEYNMVTUkOb7SY8X8Ifq83ttkVGAAAAAAAAAAAAAAABAAAACWRlcGxveUBjaQAAAAkAAAAFYWxpY2UAAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgF4ABvaBS167CfB+Y2KBK2ZItzpSC1cYk+/r62WKVMQ4AAABTAAAAC3NzaC1lZDI1NTE5AAAAQDdZ9xMhqR9JO0zfEq5Ufn4wgqK8PHRVSd8aDscVIbzNOHsUZ3ctay32AowsI6p0x0MuenWBWePIQ+L53ctEjAU= key";
    /// `ssh-keygen -l -f` of KEY and CA.
    pub const KEY_FP: &str = "SHA256:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk";
    pub const CA_FP: &str = "SHA256:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";

    fn ca() -> Ca {
        parse_ca("ca.pub", CA.as_bytes()).unwrap()
    }

    fn one(line: &str, ca: Option<&Ca>) -> Result<Revocation, String> {
        let s = parse("t.spec", line.as_bytes(), ca).map_err(|e| e.to_string())?;
        assert_eq!(s.lines.len(), 1, "{line:?}");
        Ok(s.lines[0].what.clone())
    }

    #[test]
    fn serials_read_as_strtoull_base_0() {
        let c = ca();
        for (text, lo, hi) in [
            ("serial: 5", 5, 5),
            ("SERIAL:5", 5, 5),
            ("Serial:\t 1-10", 1, 10),
            ("serial: 010", 8, 8),
            ("serial: 0x10-0X20", 16, 32),
            ("serial: 7- 9", 7, 9),
            ("  serial: 18446744073709551615  # max", u64::MAX, u64::MAX),
        ] {
            assert_eq!(
                one(text, Some(&c)),
                Ok(Revocation::Serial {
                    ca: c.clone(),
                    lo,
                    hi
                }),
                "{text}"
            );
        }
        for bad in [
            "serial:",
            "serial: 0",
            "serial: 0-5",
            "serial: 5-5",
            "serial: 9-3",
            "serial: 09",
            "serial: 0x",
            "serial: -1",
            "serial: +1",
            "serial: 1 -2",
            "serial: 5-",
            "serial: 1-2-3",
            "serial: 18446744073709551616",
            "serial: 12abc",
        ] {
            let e = one(bad, Some(&c)).unwrap_err();
            assert!(e.starts_with("t.spec:1: "), "{bad}: {e}");
        }
    }

    #[test]
    fn serial_and_id_need_a_ca() {
        for l in ["serial: 1", "id: x"] {
            let e = one(l, None).unwrap_err();
            assert!(e.contains("requires a CA key"), "{e}");
        }
    }

    #[test]
    fn ids_comments_and_blanks() {
        let c = ca();
        let text =
            "# revoked after the laptop theft\n\n   \t\nid: deploy@ci  # old\nID:\tbob laptop\n";
        let s = parse("a.spec", text.as_bytes(), Some(&c)).unwrap();
        assert_eq!(
            s.lines,
            vec![
                Line {
                    line: 4,
                    what: Revocation::KeyId {
                        ca: c.clone(),
                        id: "deploy@ci".into()
                    }
                },
                Line {
                    line: 5,
                    what: Revocation::KeyId {
                        ca: c.clone(),
                        id: "bob laptop".into()
                    }
                },
            ]
        );
        assert!(one("id:", Some(&c)).unwrap_err().contains("empty key ID"));
        assert!(one("id:   # nothing", Some(&c)).is_err());
        assert!(parse("a.spec", b"", None).unwrap().lines.is_empty());
    }

    #[test]
    fn keys_by_hash_sha256_sha1_and_bare() {
        let k = PublicKey::from_openssh(KEY).unwrap();
        let want = sha256_of(k.key_data());
        let fp = k.fingerprint(HashAlg::Sha256).to_string();
        assert_eq!(
            one(&format!("key: {KEY}"), None),
            Ok(Revocation::KeySha256(want))
        );
        assert_eq!(
            one(&format!("sha256:{KEY}"), None),
            Ok(Revocation::KeySha256(want))
        );
        assert_eq!(
            one(&format!("hash: {fp}"), None),
            Ok(Revocation::KeySha256(want))
        );
        assert_eq!(
            one(&format!("hash: {fp}="), None),
            Ok(Revocation::KeySha256(want))
        );
        let sha1 = Revocation::KeySha1 {
            digest: sha1_of(k.key_data()).unwrap(),
            key: KEY.rsplit_once(' ').unwrap().0.to_owned(),
        };
        assert_eq!(one(&format!("sha1: {KEY}"), None), Ok(sha1.clone()));
        // A bare key is revoked by SHA-1, as ssh-keygen does.
        assert_eq!(one(KEY, None), Ok(sha1));
        for bad in [
            "hash: SHA1:abcd",
            "hash: SHA256:abc",
            "hash: SHA256:!!!!",
            "hash:",
            "key: ssh-ed25519",
            "key: ssh-ed25519 AAAA",
            "key: ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHWSsRefCqjWZhyz7BRzqrg3BmBiJqp/8FK8vqpIWfsB",
            "revoke: everything",
            "serial 5",
        ] {
            assert!(one(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_agree_with_ssh_keygen() {
        let k = PublicKey::from_openssh(KEY).unwrap();
        // `ssh-keygen -l -E sha1 -f key.pub`, base64 turned to hex.
        let d = sha1_of(k.key_data()).unwrap();
        assert_eq!(hex(&d), "293362aec9ceb3fe17cd7ec6aa5fa7ead1acc3e7");
        assert_eq!(sha256_of(k.key_data()), parse_fingerprint(KEY_FP).unwrap());
        assert_eq!(ca().fp, parse_fingerprint(CA_FP).unwrap());
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn certificates() {
        let c = ca();
        let key = PublicKey::from_openssh(KEY).unwrap();
        // key:/sha256:/sha1: revoke a certificate's key as a plain key.
        assert_eq!(
            one(&format!("key: {CERT}"), None),
            Ok(Revocation::KeySha256(sha256_of(key.key_data())))
        );
        assert_eq!(
            one(&format!("sha256: {CERT0}"), None),
            Ok(Revocation::KeySha256(sha256_of(key.key_data())))
        );
        assert!(matches!(
            one(&format!("sha1: {CERT}"), None),
            Ok(Revocation::KeySha1 { digest, .. }) if digest == sha1_of(key.key_data()).unwrap()
        ));
        // A bare certificate: its serial for its own CA (no NAME.pub needed),
        // or its key ID when the serial is 0.
        assert_eq!(
            one(CERT, None),
            Ok(Revocation::Serial {
                ca: c.clone(),
                lo: 42,
                hi: 42
            })
        );
        assert_eq!(
            one(CERT0, None),
            Ok(Revocation::KeyId {
                ca: c.clone(),
                id: "deploy@ci".into()
            })
        );
        // A certificate is no CA.
        assert!(parse_ca("c.pub", CERT.as_bytes()).is_err());
        // Damaged certificates are errors, never panics.
        let b64 = CERT.split(' ').nth(1).unwrap();
        let blob = base64_decode(b64).unwrap();
        let kind = "ssh-ed25519-cert-v01@openssh.com";
        assert_eq!(parse_cert(kind, &blob).unwrap().serial, 42);
        for n in 0..blob.len() {
            assert!(parse_cert(kind, &blob[..n]).is_err(), "{n}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(parse_cert(kind, &longer).is_err());
        assert!(parse_cert("ssh-rsa-cert-v01@openssh.com", &blob).is_err());
        assert!(one(&format!("key: {kind} {}", &b64[1..]), None).is_err());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("x.spec", b"# ok\nkey: nonsense\n", None).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("x.spec", 2));
        assert!(e.to_string().starts_with("x.spec:2: "), "{e}");
        let e = parse("x.spec", b"\xff\n", None).unwrap_err();
        assert_eq!(e.to_string(), "x.spec:1: not UTF-8");
        let e = parse("x.spec", b"id: a\r\n", Some(&ca())).unwrap_err();
        assert!(e.msg.contains("CR"), "{e}");
        for name in ["", ".hidden.spec", "a b.spec", "a/b.spec", "ä.spec"] {
            assert!(parse(name, b"", None).is_err(), "{name:?}");
        }
        let long = "x".repeat(MAX_LINE + 1);
        assert!(parse("x.spec", long.as_bytes(), None).is_err());
    }

    #[test]
    fn ca_files() {
        assert_eq!(ca().key, CA.rsplit_once(' ').unwrap().0);
        assert_eq!(
            parse_ca("c.pub", format!("# the CA\n{CA}\n\n").as_bytes()).unwrap(),
            ca()
        );
        assert!(parse_ca("c.pub", b"")
            .unwrap_err()
            .to_string()
            .starts_with("c.pub: "));
        let two = format!("{CA}\n{KEY}\n");
        assert_eq!(parse_ca("c.pub", two.as_bytes()).unwrap_err().line, 2);
        assert!(parse_ca("c.pub", b"garbage\n").is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        for bad in ["Zg=", "Z===", "Zg==Zm9v", "Zm9v!A==", "===="] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }

    // Fixtures for the other certificate types, `ssh-keygen -O clear` (no
    // extensions, to keep them short) signed by CA2 with
    // `-z 81985529216486895` (0x0123456789abcdef: both halves of the u64
    // non-zero). The sk- keys are public keys written by hand (an ed25519
    // key and a nistp256 point with application "ssh:"), which ssh-keygen
    // certifies like any other.
    const CA2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjcnLWvsLlHNrinvLnbuATxwfwIWumrpZZDnd2OGk8h ca2";
    const TYPES: [(&str, &str); 5] = [
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyHlV6Qjxq1qEQ2m58/sOG9hDpyGZNLq8QM2uVePvIv1yocZCHtyb/iiHyIcvQQC/rF8xoQH2mfT6Z2fIq/+DGmxJEOq8KCVBHubA07Rw+YQF0HA5I79xNfMNmV2wBmu6IhfKtjyJC4f2+AgJwiTaU+YBMcJN0G/+pjtpBD8dskw== rsa", "ssh-rsa-cert-v01@openssh.com AAAAHHNzaC1yc2EtY2VydC12MDFAb3BlbnNzaC5jb20AAAAg5cZferA58ztDDRQmmeR+pOcXb10M4r340cZYLp5s4IgAAAADAQABAAAAgQCyHlV6Qjxq1qEQ2m58/sOG9hDpyGZNLq8QM2uVePvIv1yocZCHtyb/iiHyIcvQQC/rF8xoQH2mfT6Z2fIq/+DGmxJEOq8KCVBHubA07Rw+YQF0HA5I79xNfMNmV2wBmu6IhfKtjyJC4f2+AgJwiTaU+YBMcJN0G/+pjtpBD8dskwEjRWeJq83vAAAAAQAAAAZpZC1yc2EAAAAJAAAABWFsaWNlAAAAAAAAAAD//////////wAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgONycta+wuUc2uKe8udu4BPHB/Aha6aullkOd3Y4aTyEAAABTAAAAC3NzaC1lZDI1NTE5AAAAQC+fQo9kzWFFBlH4q+Kde7lVMRGzdeLU/+AJZ4T/jyUPfJyaE8Mci3nOQtS9dnXjkFBRJ/bq1XFIVbtZsQYR7wY= rsa"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAMBcA591AdfSSLHIoEYPr0Pc1CkxzzvM4dLLAcweUHDZr69PCXua57alQiLhUAWUa5iK25yeaUfp7mBCxY0FkqhKbXW+0YO7q43Ne6mYRJQpIfnBoHJIwXpFtRXSvGNXfje0RUMf4AWm17P4Ja08H6BKSLNQbGN1zdnqqaECDjA3AAAAFQDr5fp3twKCBVdNiuxcRxEJW1/UvQAAAIA/HjyBR/kmT8Yue7TdNh0yhaZQKPllRXA4/vLdBYkJIr8OHGRmc7tfdh4clAr8PO+vmDmKHUJ7Or8GDPzpuXA54Clm0SyTzTgH91amHL7J3zGFkGyei5DAWnq0MdgLiujD304kTAXVSF78cIN6wJtyLpEuG5ILD9/KawCHDB51ZwAAAIAyFv09/0VZL6ksSQNo6zSaK/ucuEfyNkXuBxFQdpXjBjheMXUG5fR+/EnW5Gmcnyu4xRBSEs4kQbFr8XwhQ/O73SnX4q3wfUjD4KhAYfFKa0t36vvLSnSUubiIuObBwz61sPAxuyd3YFCQ1ovR0DQ/ny7LiIFJHrIbgXJvm41Gaw== dsa", "ssh-dss-cert-v01@openssh.com AAAAHHNzaC1kc3MtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgXNnqJ9d5K2XiHzOCBVrIfMh6ciJPWi1QIK5c3DvZQawAAACBAMBcA591AdfSSLHIoEYPr0Pc1CkxzzvM4dLLAcweUHDZr69PCXua57alQiLhUAWUa5iK25yeaUfp7mBCxY0FkqhKbXW+0YO7q43Ne6mYRJQpIfnBoHJIwXpFtRXSvGNXfje0RUMf4AWm17P4Ja08H6BKSLNQbGN1zdnqqaECDjA3AAAAFQDr5fp3twKCBVdNiuxcRxEJW1/UvQAAAIA/HjyBR/kmT8Yue7TdNh0yhaZQKPllRXA4/vLdBYkJIr8OHGRmc7tfdh4clAr8PO+vmDmKHUJ7Or8GDPzpuXA54Clm0SyTzTgH91amHL7J3zGFkGyei5DAWnq0MdgLiujD304kTAXVSF78cIN6wJtyLpEuG5ILD9/KawCHDB51ZwAAAIAyFv09/0VZL6ksSQNo6zSaK/ucuEfyNkXuBxFQdpXjBjheMXUG5fR+/EnW5Gmcnyu4xRBSEs4kQbFr8XwhQ/O73SnX4q3wfUjD4KhAYfFKa0t36vvLSnSUubiIuObBwz61sPAxuyd3YFCQ1ovR0DQ/ny7LiIFJHrIbgXJvm41GawEjRWeJq83vAAAAAQAAAAZpZC1kc2EAAAAJAAAABWFsaWNlAAAAAAAAAAD//////////wAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgONycta+wuUc2uKe8udu4BPHB/Aha6aullkOd3Y4aTyEAAABTAAAAC3NzaC1lZDI1NTE5AAAAQM2SHYMTr2/6ja9LV/6Qj/anDLldlj17pFUGpVNKVW4Xx2wyU2eaCMT7wselbLOlIm2dczqG232yp82ZhANLXAs= dsa"),
        ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLLHodtoJJ5N7A3GNHs35CMIVbQVr8u5VxG6elGHwNKludn8bzmJW2B50UjkOD4tv803TfkB96c++mTIuYENEmY= ecdsa", "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgNpedUgiKMCt29S9PBNhV/eG8nJh8uinIXFfErgcOiKwAAAAIbmlzdHAyNTYAAABBBLLHodtoJJ5N7A3GNHs35CMIVbQVr8u5VxG6elGHwNKludn8bzmJW2B50UjkOD4tv803TfkB96c++mTIuYENEmYBI0VniavN7wAAAAEAAAAIaWQtZWNkc2EAAAAJAAAABWFsaWNlAAAAAAAAAAD//////////wAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgONycta+wuUc2uKe8udu4BPHB/Aha6aullkOd3Y4aTyEAAABTAAAAC3NzaC1lZDI1NTE5AAAAQO6Af4nrRCodxQQvAQSvnmVtmXAWbMiSU4IWFJ2JDl9Zd+V2bcKAFY1euh2f/jbVBgdGn1y4clFLconxYzUJGgk= ecdsa"),
        ("sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAABHNzaDo= sked", "sk-ssh-ed25519-cert-v01@openssh.com AAAAI3NrLXNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIG0Fuq6TyVB6XA6M0WjPloO7UR63LqepEDcMKqCwBPCkAAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAABHNzaDoBI0VniavN7wAAAAEAAAAHaWQtc2tlZAAAAAkAAAAFYWxpY2UAAAAAAAAAAP//////////AAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA43Jy1r7C5Rza4p7y527gE8cH8CFrpq6WWQ53djhpPIQAAAFMAAAALc3NoLWVkMjU1MTkAAABAWT6l7SodNEfhpFCeYjArJ55oWika4znXZOHZjyqFGYQYDXBe91GAsK8YX+5E7t40zoSoJidnMpU92zxgWlRCCg== sked"),
        ("sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBLLHodtoJJ5N7A3GNHs35CMIVbQVr8u5VxG6elGHwNKludn8bzmJW2B50UjkOD4tv803TfkB96c++mTIuYENEmYAAAAEc3NoOg== skec", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAK3NrLWVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgUczoXQxQTNfs5zbk2324ZQBaspAKdRZLANUWD6pRcEIAAAAIbmlzdHAyNTYAAABBBLLHodtoJJ5N7A3GNHs35CMIVbQVr8u5VxG6elGHwNKludn8bzmJW2B50UjkOD4tv803TfkB96c++mTIuYENEmYAAAAEc3NoOgEjRWeJq83vAAAAAQAAAAdpZC1za2VjAAAACQAAAAVhbGljZQAAAAAAAAAA//////////8AAAAAAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIDjcnLWvsLlHNrinvLnbuATxwfwIWumrpZZDnd2OGk8hAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEAPykTj7mEn+vzl4lNDV0JuKEaYdzIu0/lFGbNq+rwKVw0luh/72pFC4e41eKzYWk1MK4HM/N+74ePFmrJQm0wE skec"),
    ];
    const BIG_SERIAL: u64 = 0x0123_4567_89ab_cdef;
    /// Serial 0, key ID " lead", "a#b", "a\tb" and "a\x01b": the subject
    /// key is ED.
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXh ed";
    const ID_LEAD: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIKpDAcmL9bGhTChxAcn3wAR1m+Oxc8rCvPeRnnA+fCbhAAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAAAAAAAAAAAAABAAAABSBsZWFkAAAAAAAAAAAAAAAA//////////8AAAAAAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIDjcnLWvsLlHNrinvLnbuATxwfwIWumrpZZDnd2OGk8hAAAAUwAAAAtzc2gtZWQyNTUxOQAAAED5dfb0Z9rejqt1mmU1bYgynDmf9gJamB7qKe6Qy1qopoXHW8UBgNdiVA2PiDq24Kw1ugiN+A4ISVfNIUE4/08E ed";
    const ID_HASH: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIKqozQKkrSAn580sCLVmt3nfW7A9qrwlzeKxO8pluEINAAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAAAAAAAAAAAAABAAAAA2EjYgAAAAAAAAAAAAAAAP//////////AAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA43Jy1r7C5Rza4p7y527gE8cH8CFrpq6WWQ53djhpPIQAAAFMAAAALc3NoLWVkMjU1MTkAAABAfn7HRDnLWSEJMRLk96Uh+pi2CWR9nCJ9HfXICnsJJKh5UioLo7xruNMnYyBYZBW8c8hDWNDf5Io0mEky3kCGBA== ed";
    const ID_TAB: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIJQpEIDnckCGIA/V6tWNBWtn8/Ni8rKe++zpT8FsAL+3AAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAAAAAAAAAAAAABAAAAA2EJYgAAAAAAAAAAAAAAAP//////////AAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA43Jy1r7C5Rza4p7y527gE8cH8CFrpq6WWQ53djhpPIQAAAFMAAAALc3NoLWVkMjU1MTkAAABAzuBodr3sXZAnY5KN5qxhTVdhPeAmfgVtXTk2FuGL9pYlECz/MzHey3AcCI5tRSpqiP5QtyPRMWmasmnE1cLnCw== ed";
    const ID_CTRL: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIC4cp6NN8bIz7zA3PHLMP2GxA0cdRCqAZ3VZGRbrbmXPAAAAIChAL+QfI9CbBd8yctNQp5NAM58aqFR3stqPSg1V1jXhAAAAAAAAAAAAAAABAAAAA2EBYgAAAAAAAAAAAAAAAP//////////AAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA43Jy1r7C5Rza4p7y527gE8cH8CFrpq6WWQ53djhpPIQAAAFMAAAALc3NoLWVkMjU1MTkAAABAjSLZccQIJbIZbZzBZuOm8n6aNADe80u7g6YwjEcD98CbtjpVoB4k4QUxOQj4rQPUaZTKRVf2z3WX+bwHlQtgDQ== ed";

    #[test]
    fn certificates_of_every_key_type() {
        let ca2 = parse_ca("ca2.pub", CA2.as_bytes()).unwrap();
        for (plain, cert) in TYPES {
            let kind = cert.split(' ').next().unwrap();
            // The certified key, read back as the plain key it certifies.
            assert_eq!(
                one(&format!("key: {cert}"), None),
                one(&format!("key: {plain}"), None),
                "{kind}"
            );
            assert_eq!(
                one(&format!("sha1: {cert}"), None),
                one(&format!("sha1: {plain}"), None),
                "{kind}"
            );
            assert_eq!(
                one(cert, None),
                Ok(Revocation::Serial {
                    ca: ca2.clone(),
                    lo: BIG_SERIAL,
                    hi: BIG_SERIAL
                }),
                "{kind}"
            );
            let AnyKey::Cert(c) = AnyKey::parse(cert).unwrap() else {
                panic!("{kind}: not read as a certificate");
            };
            assert_eq!(
                c.key_id,
                format!("id-{}", plain.rsplit(' ').next().unwrap()).as_bytes()
            );
        }
        // A type this parser does not know is refused by name, also when
        // the rest of the blob would read as another type's.
        let (_, rsa_cert) = TYPES[0];
        let mut blob = base64_decode(rsa_cert.split(' ').nth(1).unwrap()).unwrap();
        blob[4..11].copy_from_slice(b"ssh-foo");
        let foo = "ssh-foo-cert-v01@openssh.com";
        assert_eq!(
            parse_cert(foo, &blob),
            Err(format!("unknown certificate type {foo:?}"))
        );
    }

    #[test]
    fn key_ids_a_spec_line_cannot_carry_are_refused() {
        let c = ca();
        let id = |id: &str| one(&format!("id: {id}"), Some(&c));
        let max = "x".repeat(MAX_KEY_ID);
        assert_eq!(
            id(&max),
            Ok(Revocation::KeyId {
                ca: c.clone(),
                id: max.clone()
            })
        );
        for n in [MAX_KEY_ID + 1, MAX_KEY_ID + 2, 2 * MAX_KEY_ID] {
            let e = id(&"x".repeat(n)).unwrap_err();
            assert!(e.contains("longer than 1024"), "{n}: {e}");
        }
        for ok in ["a b", "a\tb", "ünï"] {
            assert_eq!(check_key_id(ok), Ok(()), "{ok:?}");
        }
        // What `id:` lines trim away can only come from a certificate.
        for bad in [
            " lead", "\tlead", "trail ", "trail\t", "a#b", "#", "a\x01b", "a\x7fb", "a\nb",
        ] {
            assert!(check_key_id(bad).is_err(), "{bad:?}");
        }
        // Bare certificates with serial 0 are revoked by key ID, so theirs
        // are held to the same rule.
        let ca2 = parse_ca("ca2.pub", CA2.as_bytes()).unwrap();
        assert_eq!(
            one(ID_TAB, None),
            Ok(Revocation::KeyId {
                ca: ca2,
                id: "a\tb".into()
            })
        );
        for cert in [ID_LEAD, ID_HASH, ID_CTRL] {
            let e = one(cert, None).unwrap_err();
            assert!(e.contains("certificate with serial 0: key ID"), "{e}");
            assert!(
                one(&format!("key: {cert}"), None).unwrap()
                    == one(&format!("key: {ED}"), None).unwrap()
            );
        }
    }

    #[test]
    fn longest_line_is_max_line_bytes() {
        let c = ca();
        let padded = |n: usize| {
            let mut l = "serial: 5 #".to_owned();
            l.push_str(&"x".repeat(n - l.len()));
            l
        };
        assert_eq!(
            one(&padded(MAX_LINE), Some(&c)),
            Ok(Revocation::Serial {
                ca: c.clone(),
                lo: 5,
                hi: 5
            })
        );
        for n in [MAX_LINE + 1, MAX_LINE + 2] {
            let text = format!("serial: 6\n{}\n", padded(n));
            let e = parse("x.spec", text.as_bytes(), Some(&c)).unwrap_err();
            assert_eq!(e.to_string(), "x.spec:2: line longer than 16384 bytes");
        }
    }

    proptest::proptest! {
        #[test]
        fn cert_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_cert("ssh-ed25519-cert-v01@openssh.com", &bytes);
            let _ = parse_cert("sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", &bytes);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let c = ca();
            let _ = parse("p.spec", &bytes, Some(&c));
            let _ = parse("p.spec", &bytes, None);
            let _ = parse_ca("p.pub", &bytes);
        }

        #[test]
        fn directive_like_lines_never_panic(
            head in "(?i)(serial|id|key|sha1|sha256|hash):",
            tail in "[ \\t0-9a-fA-FxX+/=:#-]{0,40}",
        ) {
            let c = ca();
            let line = format!("{head}{tail}\n");
            let _ = parse("p.spec", line.as_bytes(), Some(&c));
        }
    }
}
