//! keyward's revocation list: the revocations of every spec in one sorted
//! text file, signed like every directory file, that a host answers "is
//! this key (or certificate) revoked?" from with a binary search over the
//! stored file (a few `pread`s), never a parse of the whole list per login.
//!
//! ```text
//! #keyward kind=revoked serial=1795430000 expires=2026-12-01T00:00:00Z
//! c:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY:i:deploy@ci ci.spec:4
//! c:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY:s:00000000000000001000 00000000000000001999 ci.spec:3
//! h:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk alice.spec:2
//! s:KTNirsnOs/4XzX7Gql+n6tGsw+c alice.spec:5
//! ```
//!
//! Each line is a lookup key, its values and the spec line it came from
//! (`FILE:LINE`, for the log), the keys sorted bytewise with no duplicates:
//!
//! * `h:SHA256` a key, by the SHA-256 of its blob in unpadded base64 (the
//!   text of a `SHA256:` fingerprint, as sshd's `%f` gives it): from
//!   `key:`, `sha256:` and `hash:` lines.
//! * `s:SHA1` a key by the SHA-1 of its blob (`sha1:` lines and bare keys):
//!   a SHA-1 cannot be turned into a SHA-256 without the key, so a host
//!   hashes the presented key both ways.
//! * `c:CA:i:ID` a key ID (percent-encoded) revoked for the CA with that
//!   fingerprint.
//! * `c:CA:s:LO HI` serials LO..=HI (20 digits, so bytewise is numeric
//!   order) revoked for that CA; one CA's ranges never overlap (they are
//!   merged), so the range holding a serial is the last line at or before
//!   `c:CA:s:SERIAL`.
//!
//! Pure. The host's search over a stored copy: [`super::lookup`].

use std::collections::BTreeMap;
use std::fmt;

use super::spec::{self, Revocation, Sha1, Sha256, Spec};

/// The header's first bytes (a signed file's `#keyward ` header with the
/// kind `revoked` and no user).
pub const PREFIX: &str = "#keyward kind=revoked";
/// Longest line accepted: a key ID of `spec::MAX_KEY_ID` bytes, each
/// percent-encoded, plus the CA and the source.
pub const MAX_LINE: usize = 4096;
/// Largest list accepted: ~65 bytes a revoked key, so over a million.
pub const MAX_BYTES: u64 = 128 * 1024 * 1024;

/// The list's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Never lower than a list accepted before (signed mode).
    pub serial: Option<u64>,
    /// Unix time after which the list is not used (signed mode).
    pub expires: Option<i64>,
    /// The SHA-256 of the KRL published with this list (`revoked.krl`):
    /// a host installs for sshd only the KRL this list names.
    pub krl: Option<Sha256>,
}

impl Header {
    pub fn to_line(&self) -> String {
        let mut s = PREFIX.to_owned();
        if let Some(n) = self.serial {
            s.push_str(&format!(" serial={n}"));
        }
        if let Some(e) = self.expires {
            s.push_str(&format!(" expires={}", crate::signed::format_utc(e)));
        }
        if let Some(k) = &self.krl {
            s.push_str(&format!(" krl={}", b64(k)));
        }
        s
    }

    /// By the shared `#keyward` header parser (`signed::parse_list_header`).
    pub fn parse(line: &str) -> Result<Header, String> {
        let f = crate::signed::parse_list_header(line)?;
        let krl = match f.krl {
            Some(k) => Some(spec::parse_fingerprint(&format!("SHA256:{k}"))?),
            None => None,
        };
        Ok(Header {
            serial: f.serial,
            expires: f.expires,
            krl,
        })
    }
}

/// The spec line a revocation comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl Source {
    pub(super) fn parse(s: &str) -> Result<Source, String> {
        let bad = || format!("bad source {s:?}");
        let (file, line) = s.rsplit_once(':').ok_or_else(bad)?;
        spec::check_file_name(file).map_err(|_| bad())?;
        if line.is_empty() || line.starts_with('0') || !line.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Source {
            file: file.to_owned(),
            line: line.parse().map_err(|_| bad())?,
        })
    }
}

/// One CA's revoked certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaRevocations {
    /// The CA's public key, `TYPE BASE64` (for `ssh-keygen -s`).
    pub key: String,
    /// Not merged: as the specs say.
    pub serials: Vec<(u64, u64, Source)>,
    pub ids: BTreeMap<String, Source>,
}

impl CaRevocations {
    /// The serial ranges sorted, overlapping ones merged (a merged range
    /// keeps the source of its first part).
    pub fn merged_serials(&self) -> Vec<(u64, u64, Source)> {
        let mut v = self.serials.clone();
        v.sort();
        let mut out: Vec<(u64, u64, Source)> = Vec::with_capacity(v.len());
        for (lo, hi, src) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi, src)),
            }
        }
        out
    }
}

/// Every revocation of a set of specs, deduplicated (the first spec line
/// naming a key or ID is its source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    pub sha256: BTreeMap<Sha256, Source>,
    /// With the key (`TYPE BASE64`): a KRL spec names a SHA-1 by its key.
    pub sha1: BTreeMap<Sha1, (Source, String)>,
    /// By the CA's fingerprint.
    pub cas: BTreeMap<Sha256, CaRevocations>,
}

impl Revocations {
    /// `specs` in the order given (sort them by file name for a stable
    /// result).
    pub fn from_specs(specs: &[Spec]) -> Revocations {
        let mut r = Revocations::default();
        for s in specs {
            for l in &s.lines {
                let src = Source {
                    file: s.file.clone(),
                    line: l.line,
                };
                match &l.what {
                    Revocation::KeySha256(h) => {
                        r.sha256.entry(*h).or_insert(src);
                    }
                    Revocation::KeySha1 { digest, key } => {
                        r.sha1.entry(*digest).or_insert((src, key.clone()));
                    }
                    Revocation::Serial { ca, lo, hi } => r.ca(ca).serials.push((*lo, *hi, src)),
                    Revocation::KeyId { ca, id } => {
                        r.ca(ca).ids.entry(id.clone()).or_insert(src);
                    }
                }
            }
        }
        r
    }

    fn ca(&mut self, ca: &spec::Ca) -> &mut CaRevocations {
        self.cas.entry(ca.fp).or_insert_with(|| CaRevocations {
            key: ca.key.clone(),
            ..Default::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty() && self.sha1.is_empty() && self.cas.is_empty()
    }

    /// The list's text.
    pub fn render(&self, header: &Header) -> String {
        let mut lines: Vec<(String, String)> = Vec::new();
        for (fp, c) in &self.cas {
            let ca = b64(fp);
            for (id, src) in &c.ids {
                lines.push((
                    format!("c:{ca}:i:{}", encode_id(id.as_bytes())),
                    src.to_string(),
                ));
            }
            for (lo, hi, src) in c.merged_serials() {
                lines.push((format!("c:{ca}:s:{lo:020}"), format!("{hi:020} {src}")));
            }
        }
        for (h, src) in &self.sha256 {
            lines.push((format!("h:{}", b64(h)), src.to_string()));
        }
        for (h, (src, _)) in &self.sha1 {
            lines.push((format!("s:{}", b64(h)), src.to_string()));
        }
        lines.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = header.to_line();
        out.push('\n');
        for (k, v) in lines {
            out.push_str(&k);
            out.push(' ');
            out.push_str(&v);
            out.push('\n');
        }
        out
    }
}

/// Unpadded standard base64, as OpenSSH prints fingerprints.
pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

/// A key ID as a list token: bytes outside a safe set as `%XX`.
pub fn encode_id(id: &[u8]) -> String {
    let mut s = String::with_capacity(id.len());
    for &b in id {
        if b.is_ascii_alphanumeric() || b"._-@+=,:/~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn check_encoded_id(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            if i + 2 >= b.len() {
                return false;
            }
            if !(hex(b[i + 1]) && hex(b[i + 2])) {
                return false;
            }
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(0);
            // Canonical: a safe byte is never encoded.
            if v.is_ascii_alphanumeric() || b"._-@+=,:/~".contains(&v) {
                return false;
            }
            i += 3;
        } else if b[i].is_ascii_alphanumeric() || b"._-@+=,:/~".contains(&b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    !b.is_empty()
}

fn is_b64(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn is_serial(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
}

/// Checks a whole list: header, every line's form, strict order, no
/// overlapping ranges. A host runs it once on a new list (after its
/// signature) before storing it; lookups then rely on it.
pub fn check(body: &str) -> Result<Header, String> {
    if body.len() as u64 > MAX_BYTES {
        return Err("revocation list too large".into());
    }
    if body.contains(['\0', '\r']) {
        return Err("revocation list contains NUL or CR".into());
    }
    if !body.ends_with('\n') {
        return Err("revocation list does not end with a newline (truncated?)".into());
    }
    let mut lines = body.lines();
    let header = Header::parse(lines.next().unwrap_or_default())?;
    let mut prev: Option<&str> = None;
    let mut prev_range: Option<(&str, u64)> = None;
    for (i, l) in lines.enumerate() {
        let n = i + 2;
        let e = |m: String| format!("revocation list line {n}: {m}");
        if l.len() > MAX_LINE {
            return Err(e("too long".into()));
        }
        let f: Vec<&str> = l.split(' ').collect();
        let key = f[0];
        let ok = match (key.get(..2), &f[..]) {
            (Some("h:"), [_, src]) => is_b64(&key[2..], 43) && Source::parse(src).is_ok(),
            (Some("s:"), [_, src]) => is_b64(&key[2..], 27) && Source::parse(src).is_ok(),
            (Some("c:"), rest) => {
                let ca = key.get(2..45).unwrap_or_default();
                let tail = key.get(45..).unwrap_or_default();
                let ok_ca = is_b64(ca, 43);
                match (tail.get(..3), rest) {
                    (Some(":i:"), [_, src]) => {
                        ok_ca && check_encoded_id(&tail[3..]) && Source::parse(src).is_ok()
                    }
                    (Some(":s:"), [_, hi, src])
                        if ok_ca && is_serial(&tail[3..]) && is_serial(hi) =>
                    {
                        let lo: u64 = tail[3..].parse().unwrap_or(0);
                        let hi: u64 = hi.parse().unwrap_or(0);
                        if lo == 0 || hi < lo {
                            return Err(e(format!("bad serial range {lo}-{hi}")));
                        }
                        if let Some((pca, phi)) = prev_range {
                            if pca == ca && lo <= phi {
                                return Err(e("serial ranges overlap".into()));
                            }
                        }
                        prev_range = Some((ca, hi));
                        Source::parse(src).is_ok()
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !ok {
            return Err(e(format!("malformed line {:?}", truncate(l))));
        }
        if let Some(p) = prev {
            if p.as_bytes() >= key.as_bytes() {
                return Err(e("unsorted or duplicate".into()));
            }
        }
        prev = Some(key);
    }
    Ok(header)
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub use super::lookup::{By, CertQuery, ListFile, Lookup, Revoked};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::lookup::*;
    use crate::revocation::spec::{parse, parse_ca, Ca};
    use std::io;

    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBeAAb2gUteuwnwfmNigStmSLc6UgtXGJPv6+tlilTEO ca";
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICbQcg/AlQD+pBljhdEYNMVTUkOb7SY8X8Ifq83ttkVG key";

    fn mem(text: &str) -> (Vec<u8>, u64) {
        let start = text.find('\n').unwrap() as u64 + 1;
        (text.as_bytes().to_vec(), start)
    }

    fn with<T>(text: &str, f: impl FnOnce(&mut Lookup) -> T) -> T {
        let (bytes, start) = mem(text);
        let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let off = off as usize;
            Ok(bytes[off.min(bytes.len())..(off + len).min(bytes.len())].to_vec())
        };
        let mut l = Lookup::new(&mut read, start, bytes.len() as u64);
        f(&mut l)
    }

    fn src(file: &str, line: usize) -> Source {
        Source {
            file: file.into(),
            line,
        }
    }

    #[test]
    fn specs_render_to_a_checked_list_and_every_kind_is_found() {
        let ca = parse_ca("ci.pub", CA.as_bytes()).unwrap();
        let ci = parse(
            "ci.spec",
            b"serial: 1000-1999\nid: deploy@ci\nserial: 1500-2500 # overlaps\nid: with space\n",
            Some(&ca),
        )
        .unwrap();
        let alice = parse(
            "alice.spec",
            format!("# laptop\nkey: {KEY}\nsha1: {KEY}\n").as_bytes(),
            None,
        )
        .unwrap();
        let r = Revocations::from_specs(&[alice, ci]);
        let h = Header {
            serial: Some(7),
            expires: Some(1_893_456_000),
            krl: None,
        };
        let text = r.render(&h);
        assert!(
            text.starts_with("#keyward kind=revoked serial=7 expires=2030-01-01T00:00:00Z\n"),
            "{text}"
        );
        assert_eq!(check(&text), Ok(h));
        // The KRL's hash round-trips through the header.
        let with_krl = Header {
            krl: Some([7; 32]),
            ..h
        };
        let t2 = r.render(&with_krl);
        assert!(t2.starts_with(&format!("{} krl={}\n", h.to_line(), b64(&[7; 32]))));
        assert_eq!(check(&t2), Ok(with_krl));
        assert!(text.contains("c:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY:s:00000000000000001000 00000000000000002500 ci.spec:1\n"), "{text}");
        assert!(
            text.contains(
                "c:rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY:i:with%20space ci.spec:4\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("h:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk alice.spec:2\n"),
            "{text}"
        );
        let key = ssh_key::PublicKey::from_openssh(KEY).unwrap();
        let k256 = spec::sha256_of(key.key_data());
        let k1 = spec::sha1_of(key.key_data()).unwrap();
        with(&text, |l| {
            assert_eq!(
                l.key(key.key_data()).unwrap(),
                Some(Revoked {
                    by: By::Key,
                    source: src("alice.spec", 2)
                })
            );
            assert_eq!(
                l.key_hashes(&[1; 32], Some(&k1)).unwrap(),
                Some(Revoked {
                    by: By::KeySha1,
                    source: src("alice.spec", 3)
                })
            );
            assert_eq!(l.key_hashes(&[1; 32], None).unwrap(), None);
            let q = |serial, id: &'static [u8], ca_fp: Sha256| CertQuery {
                key: [2; 32],
                key_sha1: None,
                ca: ca_fp,
                ca_sha1: None,
                serial,
                key_id: id,
            };
            for (serial, want) in [
                (999, None),
                (1000, Some((1000, 2500))),
                (2000, Some((1000, 2500))),
                (2500, Some((1000, 2500))),
                (2501, None),
                (0, None),
            ] {
                let got = l.cert(&q(serial, b"x", ca.fp)).unwrap();
                assert_eq!(
                    got.map(|r| r.by),
                    want.map(|(lo, hi)| By::Serial { lo, hi }),
                    "{serial}"
                );
            }
            assert_eq!(
                l.cert(&q(5, b"deploy@ci", ca.fp)).unwrap().unwrap(),
                Revoked {
                    by: By::KeyId,
                    source: src("ci.spec", 2)
                }
            );
            assert_eq!(
                l.cert(&q(5, b"with space", ca.fp)).unwrap().unwrap().by,
                By::KeyId
            );
            assert_eq!(l.cert(&q(5, b"deploy@ci2", ca.fp)).unwrap(), None);
            // Another CA's certificates are not affected.
            assert_eq!(l.cert(&q(2000, b"deploy@ci", [9; 32])).unwrap(), None);
            // A certificate of a revoked key, or by a revoked CA key.
            assert_eq!(
                l.cert(&CertQuery {
                    key: k256,
                    ..q(1, b"", [9; 32])
                })
                .unwrap()
                .unwrap()
                .by,
                By::Key
            );
            assert_eq!(l.cert(&q(1, b"", k256)).unwrap().unwrap().by, By::CaKey);
        });
        let d = Revoked {
            by: By::Serial { lo: 1, hi: 2 },
            source: src("ci.spec", 3),
        };
        assert_eq!(d.to_string(), "revoked_by=serial source=ci.spec:3");
    }

    #[test]
    fn specs_sharing_keys_and_cas_merge_and_the_first_line_is_the_source() {
        let ca = parse_ca("x.pub", CA.as_bytes()).unwrap();
        let a = parse(
            "a.spec",
            b"hash: SHA256:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk\n",
            None,
        )
        .unwrap();
        let b = parse("b.spec", format!("key: {KEY}\n").as_bytes(), None).unwrap();
        let c = parse("c.spec", b"serial: 1-10\nid: x\n", Some(&ca)).unwrap();
        let d = parse("d.spec", b"serial: 5-20\nid: x\nid: y\n", Some(&ca)).unwrap();
        let r = Revocations::from_specs(&[a, b, c, d]);
        assert_eq!(r.sha256.len(), 1);
        assert_eq!(r.sha256.values().next(), Some(&src("a.spec", 1)));
        assert_eq!(r.cas.len(), 1);
        let cr = &r.cas[&ca.fp];
        assert_eq!(cr.merged_serials(), vec![(1, 20, src("c.spec", 1))]);
        assert_eq!(cr.ids.get("x"), Some(&src("c.spec", 2)));
        assert_eq!(cr.ids.get("y"), Some(&src("d.spec", 3)));
        assert!(check(&r.render(&Header::default())).is_ok());
    }

    #[test]
    fn ranges_merge_only_when_they_overlap() {
        let c = CaRevocations {
            key: String::new(),
            serials: vec![
                (10, 20, src("b", 1)),
                (1, 5, src("a", 1)),
                (6, 9, src("a", 2)),
                (15, 30, src("c", 1)),
                (30, 30, src("d", 1)),
            ],
            ids: BTreeMap::new(),
        };
        assert_eq!(
            c.merged_serials(),
            vec![
                (1, 5, src("a", 1)),
                (6, 9, src("a", 2)),
                (10, 30, src("b", 1))
            ]
        );
    }

    #[test]
    fn malformed_lists_are_refused() {
        let ca = "rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";
        let h = "h:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a.spec:1";
        let ok =
            format!("{PREFIX}\nc:{ca}:s:00000000000000000001 00000000000000000002 a.spec:1\n{h}\n");
        assert!(check(&ok).is_ok());
        for bad in [
            format!("{PREFIX}\n{h}"),
            format!("{PREFIX}\n{h}\n{h}\n"),
            format!("#keyward user=a serial=1 expires=2030-01-01T00:00:00Z\n{h}\n"),
            format!("#keyward kind=revokedx\n{h}\n"),
            format!("{PREFIX} serial=x\n{h}\n"),
            format!("{PREFIX} user=alice\n{h}\n"),
            format!("{PREFIX}\nh:3Q148 a.spec:1\n"),
            format!("{PREFIX}\n{h} extra\n"),
            format!("{PREFIX}\nh:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a.spec:0\n"),
            format!("{PREFIX}\nh:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a/b:1\n"),
            format!("{PREFIX}\ns:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a.spec:1\n"),
            format!("{PREFIX}\nx:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a.spec:1\n"),
            format!("{PREFIX}\n\n"),
            format!("{PREFIX}\r\n{h}\n"),
            format!("{PREFIX}\nc:{ca}:s:00000000000000000000 00000000000000000002 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:s:00000000000000000003 00000000000000000002 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:s:1 2 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:s:99999999999999999999 99999999999999999999 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:s:00000000000000000001 00000000000000000005 a.spec:1\nc:{ca}:s:00000000000000000005 00000000000000000009 a.spec:2\n"),
            format!("{PREFIX}\nc:{ca}:i: a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:i:a%2 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:i:a%41 a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:i:a%zz a.spec:1\n"),
            format!("{PREFIX}\nc:{ca}:x:a a.spec:1\n"),
            format!("{PREFIX}\nc:short:i:a a.spec:1\n"),
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_encode_canonically() {
        assert_eq!(encode_id(b"deploy@ci"), "deploy@ci");
        assert_eq!(encode_id(b"a b%\xff#"), "a%20b%25%FF%23");
        for id in [&b"x"[..], b"a b", b"%41", b"\x00\x7f\xff", b"@:/~"] {
            assert!(check_encoded_id(&encode_id(id)), "{id:?}");
        }
        assert_eq!(b64(&[]), "");
        assert_eq!(b64(b"f"), "Zg");
        assert_eq!(b64(b"fo"), "Zm8");
        assert_eq!(b64(b"foo"), "Zm9v");
    }

    /// A random list checked against the plain meaning of the set.
    #[test]
    fn binary_search_agrees_with_the_set_on_random_lists() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for size in [0u64, 1, 3, 40, 3000] {
            let mut r = Revocations::default();
            let cas: Vec<Ca> = (0..3)
                .map(|i| Ca {
                    fp: [i as u8 * 50 + 1; 32],
                    key: format!("ca{i}"),
                })
                .collect();
            for i in 0..size {
                let mut h = [0u8; 32];
                h.iter_mut().for_each(|b| *b = rnd(256) as u8);
                match rnd(4) {
                    0 => {
                        r.sha256.insert(h, src("a.spec", i as usize + 1));
                    }
                    1 => {
                        let mut s1 = [0u8; 20];
                        s1.copy_from_slice(&h[..20]);
                        r.sha1
                            .insert(s1, (src("b.spec", i as usize + 1), String::new()));
                    }
                    2 => {
                        let c = &cas[rnd(2) as usize];
                        let lo = 1 + rnd(100_000);
                        let hi = lo + rnd(3) * rnd(50);
                        r.cas.entry(c.fp).or_default().serials.push((
                            lo,
                            hi,
                            src("c.spec", i as usize + 1),
                        ));
                    }
                    _ => {
                        let c = &cas[rnd(2) as usize];
                        // Now and then a long ID (its line is longer than
                        // the search's small reads), percent-encoded.
                        let n = rnd(5000);
                        let tail = match rnd(8) {
                            0 => "é ".repeat(rnd(300) as usize),
                            _ => String::new(),
                        };
                        r.cas
                            .entry(c.fp)
                            .or_default()
                            .ids
                            .insert(format!("id {n}{tail}"), src("c.spec", i as usize + 1));
                    }
                }
            }
            let text = r.render(&Header::default());
            check(&text).unwrap();
            with(&text, |l| {
                for (h, s) in &r.sha256 {
                    assert_eq!(l.key_hashes(h, None).unwrap().unwrap().source, *s);
                }
                for (h, (s, _)) in &r.sha1 {
                    assert_eq!(l.key_hashes(&[0; 32], Some(h)).unwrap().unwrap().source, *s);
                }
                for _ in 0..300 {
                    let c = &cas[rnd(3) as usize];
                    let serial = rnd(100_200);
                    let id = format!("id {}", rnd(5000));
                    let q = CertQuery {
                        key: [0; 32],
                        key_sha1: None,
                        ca: c.fp,
                        ca_sha1: None,
                        serial,
                        key_id: id.as_bytes(),
                    };
                    let set = r.cas.get(&c.fp);
                    let by_id = set.is_some_and(|s| s.ids.contains_key(&id));
                    let by_serial = serial != 0
                        && set.is_some_and(|s| {
                            s.serials
                                .iter()
                                .any(|&(lo, hi, _)| lo <= serial && serial <= hi)
                        });
                    let got = l.cert(&q).unwrap();
                    match got.map(|g| g.by) {
                        Some(By::KeyId) => assert!(by_id),
                        Some(By::Serial { lo, hi }) => {
                            assert!(!by_id && by_serial && lo <= serial && serial <= hi)
                        }
                        None => {
                            assert!(!by_id && !by_serial, "size {size} serial {serial} id {id}")
                        }
                        other => panic!("{other:?}"),
                    }
                }
            });
        }
    }

    #[test]
    fn a_stored_list_is_read_by_pread_after_a_store_header() {
        let mut r = Revocations::default();
        for i in 0..5000u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            r.sha256.insert(h, src("bulk.spec", i as usize + 1));
        }
        let text = r.render(&Header {
            serial: Some(3),
            expires: None,
            krl: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list");
        std::fs::write(&p, format!("store head\n\n{text}")).unwrap();
        let f = ListFile::open(&p, 12).unwrap();
        assert_eq!(f.header.serial, Some(3));
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&4321u32.to_be_bytes());
        assert_eq!(
            f.key_hashes(&h, None).unwrap().unwrap().source,
            src("bulk.spec", 4322)
        );
        h[31] = 1;
        assert_eq!(f.key_hashes(&h, None).unwrap(), None);
        // A truncated file is an error, never a verdict.
        std::fs::write(&p, &text.as_bytes()[..text.len() - 1]).unwrap();
        assert!(ListFile::open(&p, 0).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(ListFile::open(&p, 0).is_err());
    }

    #[test]
    fn size_and_line_length_bounds_are_exact() {
        // 128 MiB is accepted as a size (here refused for its NUL), one
        // byte more is too large.
        let mut bytes = vec![b'x'; 128 << 20];
        bytes[0] = 0;
        let mut body = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check(&body),
            Err("revocation list contains NUL or CR".into())
        );
        body.push('x');
        assert_eq!(check(&body), Err("revocation list too large".into()));
        drop(body);
        // A line of MAX_LINE bytes is accepted, one byte more is not.
        let ca = "rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";
        let line = |len: usize| {
            let fixed = format!("c:{ca}:i: a.spec:1").len();
            format!("c:{ca}:i:{} a.spec:1", "x".repeat(len - fixed))
        };
        assert_eq!(line(MAX_LINE).len(), MAX_LINE);
        assert_eq!(
            check(&format!("{PREFIX}\n{}\n", line(MAX_LINE))),
            Ok(Header::default())
        );
        assert_eq!(
            check(&format!("{PREFIX}\n{}\n", line(MAX_LINE + 1))),
            Err("revocation list line 2: too long".into())
        );
    }

    #[test]
    fn a_malformed_line_is_named_by_number_and_cut_at_a_char_boundary() {
        let h = "h:3Q148+i1r2lCfuIenpYfdNWMjuEyKy0IaD8sCXdOqvk a.spec:1";
        // 79 ASCII bytes, then a 2-byte character across the 80-byte cut.
        let bad = format!("h:{}é a.spec:2", "x".repeat(77));
        assert_eq!(
            check(&format!("{PREFIX}\n{h}\n{bad}\n")),
            Err(format!(
                "revocation list line 3: malformed line {:?}",
                &bad[..79]
            ))
        );
    }

    #[test]
    fn every_field_of_a_certificate_line_is_checked() {
        let ca = "rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";
        let bad_ca = format!("!{}", &ca[1..]);
        let one = |l: &str| check(&format!("{PREFIX}\n{l}\n"));
        let serial = |n: u64| format!("{n:020}");
        for good in [
            format!("c:{ca}:i:deploy@ci a.spec:1"),
            format!("c:{ca}:s:{} {} a.spec:1", serial(1), serial(2)),
        ] {
            assert!(one(&good).is_ok(), "{good}");
        }
        for bad in [
            // A CA that is not a fingerprint.
            format!("c:{bad_ca}:i:deploy@ci a.spec:1"),
            format!("c:{bad_ca}:s:{} {} a.spec:1", serial(1), serial(2)),
            // Serials of 20 digits only: a sign (which u64's parser takes)
            // or a short number would break the bytewise order.
            format!("c:{ca}:s:+{} {} a.spec:1", &serial(1)[1..], serial(2)),
            format!("c:{ca}:s:{} +{} a.spec:1", serial(1), &serial(2)[1..]),
            format!("c:{ca}:s:1 {} a.spec:1", serial(2)),
            format!("c:{ca}:s:{} 2 a.spec:1", serial(1)),
            // A key ID's escapes: two upper-case hex digits, both.
            format!("c:{ca}:i:a%2Z a.spec:1"),
            format!("c:{ca}:i:a%Z2 a.spec:1"),
            format!("c:{ca}:i:a%2f a.spec:1"),
        ] {
            assert!(one(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn revocations_keep_the_ca_key_and_know_when_they_are_empty() {
        let ca = parse_ca("ci.pub", CA.as_bytes()).unwrap();
        let ci = parse("ci.spec", b"id: x\n", Some(&ca)).unwrap();
        let r = Revocations::from_specs(&[ci]);
        assert_eq!(r.cas[&ca.fp].key, ca.key);
        assert!(!r.is_empty());
        let mut r = Revocations::default();
        assert!(r.is_empty());
        r.sha1.insert([1; 20], (src("a.spec", 1), String::new()));
        assert!(!r.is_empty());
        let mut r = Revocations::default();
        r.sha256.insert([1; 32], src("a.spec", 1));
        assert!(!r.is_empty());
    }

    /// The search reads a few small ranges, never the whole list: in a
    /// list of 5,000 keys (about 330 KiB) every lookup, hit or miss, takes
    /// at most 12 reads and 8 KiB.
    #[test]
    fn a_lookup_reads_a_few_small_ranges() {
        let mut r = Revocations::default();
        for i in 0..5000u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&(i * 7).to_be_bytes());
            r.sha256.insert(h, src("bulk.spec", i as usize + 1));
        }
        let text = r.render(&Header::default());
        let (bytes, start) = mem(&text);
        let (reads, read_bytes) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let off = off as usize;
            let got = bytes[off.min(bytes.len())..(off + len).min(bytes.len())].to_vec();
            reads.set(reads.get() + 1);
            read_bytes.set(read_bytes.get() + got.len());
            Ok(got)
        };
        let mut l = Lookup::new(&mut read, start, bytes.len() as u64);
        let (mut max_reads, mut max_bytes) = (0, 0);
        for i in (0..35_000u32).step_by(97) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            reads.set(0);
            read_bytes.set(0);
            let got = l.key_hashes(&h, None).unwrap();
            assert_eq!(got.is_some(), i % 7 == 0 && i < 35_000, "{i}");
            max_reads = max_reads.max(reads.get());
            max_bytes = max_bytes.max(read_bytes.get());
        }
        assert!(max_reads <= 12, "{max_reads} reads");
        assert!(max_bytes <= 8 * 1024, "{max_bytes} bytes");
    }

    /// One lookup (open, header, binary search for a key's SHA-256 and
    /// SHA-1) in a stored list of 100,000 revoked key hashes.
    /// `cargo test --release --lib revocation::list::tests::measure -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_lookup_in_100k() {
        let mut r = Revocations::default();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..100_000usize {
            let mut h = [0u8; 32];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            r.sha256.insert(h, src("bulk.spec", i + 1));
        }
        let key = ssh_key::PublicKey::from_openssh(KEY).unwrap();
        let text = r.render(&Header {
            serial: Some(1),
            expires: Some(1_893_456_000),
            krl: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list");
        std::fs::write(&p, &text).unwrap();
        let reads = std::cell::Cell::new(0u32);
        {
            let (bytes, start) = mem(&text);
            let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
                reads.set(reads.get() + 1);
                let off = off as usize;
                Ok(bytes[off..(off + len).min(bytes.len())].to_vec())
            };
            let mut l = Lookup::new(&mut read, start, bytes.len() as u64);
            assert!(l.key(key.key_data()).unwrap().is_none());
        }
        let rounds = 20_000u32;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let f = ListFile::open(&p, 0).unwrap();
            assert!(f.key(key.key_data()).unwrap().is_none());
        }
        let per = t.elapsed() / rounds;
        println!(
            "entries=100000 list_bytes={} reads_per_key_check={} open_and_check_us={:.1}",
            text.len(),
            reads.get(),
            per.as_secs_f64() * 1e6
        );
    }

    proptest::proptest! {
        #[test]
        fn check_and_lookup_never_panic(body in "#keyward kind=revoked\n([chs]:[A-Za-z0-9+/:%]{0,50} [0-9a-z.:]{0,25}\n){0,20}") {
            let _ = check(&body);
            with(&body, |l| {
                let _ = l.key_hashes(&[0; 32], Some(&[0; 20]));
                let _ = l.cert(&CertQuery { key: [0; 32], key_sha1: None, ca: [0; 32], ca_sha1: None, serial: 5, key_id: b"x" });
            });
        }
    }
}
