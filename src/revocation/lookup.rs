//! A host's question to its stored revocation list, "is this key (or
//! certificate) revoked?", answered by a binary search over the file (a few
//! `pread`s), never a parse of the whole list per login. The list's format
//! and its one full check when a host accepts it: [`super::list`].

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ssh_key::public::KeyData;

use super::list::{b64, encode_id, Header, Source, MAX_BYTES, MAX_LINE};
use super::spec::{self, Sha1, Sha256};
use crate::index::corrupt;

/// Why a key or certificate is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The key's SHA-256 (`key:`, `sha256:`, `hash:`).
    Key,
    /// The key's SHA-1 (`sha1:`, a bare key).
    KeySha1,
    /// The certificate's CA key is itself revoked.
    CaKey,
    /// A serial range of the certificate's CA.
    Serial { lo: u64, hi: u64 },
    /// A key ID of the certificate's CA.
    KeyId,
}

impl By {
    pub fn as_str(&self) -> &'static str {
        match self {
            By::Key => "key",
            By::KeySha1 => "key-sha1",
            By::CaKey => "ca-key",
            By::Serial { .. } => "serial",
            By::KeyId => "key-id",
        }
    }
}

/// A revoked verdict: how, and the spec line that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub by: By,
    pub source: Source,
}

impl fmt::Display for Revoked {
    /// `revoked_by=serial source=ci.spec:3` (log fields).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revoked_by={} source={}", self.by.as_str(), self.source)
    }
}

/// A certificate to check, as sshd describes it to `principals`
/// (`%f %F %i %s`) or as parsed from `%k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertQuery<'a> {
    /// SHA-256 of the certified key's blob.
    pub key: Sha256,
    /// SHA-1 of it, when the key itself is at hand.
    pub key_sha1: Option<Sha1>,
    /// SHA-256 of the CA key's blob.
    pub ca: Sha256,
    pub ca_sha1: Option<Sha1>,
    pub serial: u64,
    pub key_id: &'a [u8],
}

/// Lookups over a checked list's data lines, held where `read(offset,
/// len)` fetches ranges from (up to `len` bytes); `start..end` are the
/// offsets of the data lines (after the header line).
pub struct Lookup<'r> {
    read: &'r mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
    start: u64,
    end: u64,
}

impl<'r> Lookup<'r> {
    pub fn new(
        read: &'r mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
        start: u64,
        end: u64,
    ) -> Lookup<'r> {
        Lookup { read, start, end }
    }

    /// A plain key (or a certificate's key), by both hashes.
    pub fn key(&mut self, key: &KeyData) -> io::Result<Option<Revoked>> {
        let sha1 =
            spec::sha1_of(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.key_hashes(&spec::sha256_of(key), Some(&sha1))
    }

    /// A key by its SHA-256 (and its SHA-1 when known).
    pub fn key_hashes(
        &mut self,
        sha256: &Sha256,
        sha1: Option<&Sha1>,
    ) -> io::Result<Option<Revoked>> {
        if let Some(src) = self.exact(&format!("h:{}", b64(sha256)))? {
            return Ok(Some(Revoked {
                by: By::Key,
                source: src.1,
            }));
        }
        match sha1 {
            Some(h) => self.key_sha1(h),
            None => Ok(None),
        }
    }

    /// A key by its SHA-1 only (its SHA-256 already looked up).
    pub fn key_sha1(&mut self, sha1: &Sha1) -> io::Result<Option<Revoked>> {
        Ok(self
            .exact(&format!("s:{}", b64(sha1)))?
            .map(|(_, source)| Revoked {
                by: By::KeySha1,
                source,
            }))
    }

    /// A certificate: its key, its CA's key, its key ID and serial for its
    /// CA (serial 0 means "none" and is never revoked by serial, as in
    /// OpenSSH).
    pub fn cert(&mut self, q: &CertQuery) -> io::Result<Option<Revoked>> {
        if let Some(r) = self.key_hashes(&q.key, q.key_sha1.as_ref())? {
            return Ok(Some(r));
        }
        if let Some(r) = self.key_hashes(&q.ca, q.ca_sha1.as_ref())? {
            return Ok(Some(Revoked { by: By::CaKey, ..r }));
        }
        let ca = b64(&q.ca);
        if !q.key_id.is_empty() {
            let key = format!("c:{ca}:i:{}", encode_id(q.key_id));
            if let Some((_, src)) = self.exact(&key)? {
                return Ok(Some(Revoked {
                    by: By::KeyId,
                    source: src,
                }));
            }
        }
        if q.serial != 0 {
            let prefix = format!("c:{ca}:s:");
            let target = format!("{prefix}{:020}", q.serial);
            if let Some((k, v)) = self.find_le(target.as_bytes())? {
                if let Some(lo) = k.strip_prefix(&prefix) {
                    let (hi, src) = v
                        .split_once(' ')
                        .ok_or_else(|| corrupt("bad serial line"))?;
                    let lo: u64 = lo.parse().map_err(|_| corrupt("bad serial"))?;
                    let hi: u64 = hi.parse().map_err(|_| corrupt("bad serial"))?;
                    if q.serial <= hi {
                        let source = Source::parse(src).map_err(|_| corrupt("bad source"))?;
                        return Ok(Some(Revoked {
                            by: By::Serial { lo, hi },
                            source,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The line whose key is exactly `key`: (rest of line before the
    /// source, source).
    fn exact(&mut self, key: &str) -> io::Result<Option<(String, Source)>> {
        let Some((k, v)) = self.find_le(key.as_bytes())? else {
            return Ok(None);
        };
        if k != key {
            return Ok(None);
        }
        let (rest, src) = v.rsplit_once(' ').map_or(("", v.as_str()), |(a, b)| (a, b));
        let source = Source::parse(src).map_err(|_| corrupt("bad source"))?;
        Ok(Some((rest.to_owned(), source)))
    }

    /// The last line whose key (first field) is <= `target`: (key, rest).
    /// A few reads of at most a few KiB each.
    fn find_le(&mut self, target: &[u8]) -> io::Result<Option<(String, String)>> {
        // Bisect down to a window this small, then scan it: a read of a
        // few hundred bytes per step costs less than comparing many lines.
        const SCAN: u64 = 1024;
        fn key_of(raw: &[u8]) -> &[u8] {
            raw.split(|&b| b == b' ').next().unwrap_or(raw)
        }
        // Lines starting before lo (and the one at lo, once moved) are <=
        // target; the line at hi (if any) is > target.
        let (mut lo, mut hi) = (self.start, self.end);
        while hi - lo > SCAN {
            let mid = lo + (hi - lo) / 2;
            // Lines are short (~70 bytes): a small read almost always
            // holds the line end before mid and the whole next line.
            const SMALL: usize = 512;
            let nl_at = |c: &[u8]| c.iter().position(|&b| b == b'\n');
            let whole = |c: &[u8]| nl_at(c).is_some_and(|nl| nl_at(&c[nl + 1..]).is_some());
            let mut chunk = (self.read)(mid - 1, SMALL)?;
            if chunk.len() == SMALL && !whole(&chunk) {
                chunk = (self.read)(mid - 1, 2 * MAX_LINE + 2)?;
            }
            let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
                return Err(corrupt("revocation list line longer than allowed"));
            };
            let s = mid + nl as u64;
            if s >= hi {
                break;
            }
            let rest = &chunk[nl + 1..];
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| corrupt("revocation list line longer than allowed"))?;
            if key_of(&rest[..end]) <= target {
                lo = s;
            } else {
                hi = s;
            }
        }
        let len = (hi - lo) as usize;
        let chunk = (self.read)(lo, len)?;
        if chunk.len() != len {
            return Err(corrupt("revocation list shorter than expected"));
        }
        let mut found = None;
        for raw in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if key_of(raw) > target {
                break;
            }
            found = Some(raw);
        }
        let Some(raw) = found else { return Ok(None) };
        let line = std::str::from_utf8(raw).map_err(|_| corrupt("revocation list not UTF-8"))?;
        let (k, v) = line
            .split_once(' ')
            .ok_or_else(|| corrupt("revocation list line without fields"))?;
        Ok(Some((k.to_owned(), v.to_owned())))
    }
}

/// A stored list on disk, searched by `pread`. `offset` is where the
/// list's text starts in the file (after a store header, if any); the
/// file must hold a list [`check`] accepted.
pub struct ListFile {
    file: File,
    pub header: Header,
    start: u64,
    end: u64,
}

impl ListFile {
    pub fn open(path: &Path, offset: u64) -> io::Result<ListFile> {
        Self::from_file(File::open(path)?, offset)
    }

    pub fn from_file(file: File, offset: u64) -> io::Result<ListFile> {
        let end = file.metadata()?.len();
        if end > offset.saturating_add(MAX_BYTES) || end <= offset {
            return Err(corrupt("revocation list empty or too large"));
        }
        let head = read_at(&file, offset, MAX_LINE.min((end - offset) as usize))?;
        let nl = head
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("revocation list header too long"))?;
        let line = std::str::from_utf8(&head[..nl])
            .map_err(|_| corrupt("revocation list header not UTF-8"))?;
        let header =
            Header::parse(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if read_at(&file, end - 1, 1)? != b"\n" {
            return Err(corrupt("revocation list does not end with a newline"));
        }
        Ok(ListFile {
            file,
            header,
            start: offset + nl as u64 + 1,
            end,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Lookup) -> io::Result<T>) -> io::Result<T> {
        let file = &self.file;
        let mut read = |off: u64, len: usize| read_at(file, off, len);
        let mut l = Lookup::new(&mut read, self.start, self.end);
        f(&mut l)
    }

    pub fn key(&self, key: &KeyData) -> io::Result<Option<Revoked>> {
        self.with(|l| l.key(key))
    }

    pub fn key_hashes(&self, sha256: &Sha256, sha1: Option<&Sha1>) -> io::Result<Option<Revoked>> {
        self.with(|l| l.key_hashes(sha256, sha1))
    }

    pub fn key_sha1(&self, sha1: &Sha1) -> io::Result<Option<Revoked>> {
        self.with(|l| l.key_sha1(sha1))
    }

    pub fn cert(&self, q: &CertQuery) -> io::Result<Option<Revoked>> {
        self.with(|l| l.cert(q))
    }
}

/// Up to `len` bytes at `off` (fewer only at the end of the file).
fn read_at(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}
