//! The directory index: one file that says, for every user, which version of
//! the user's file is current, so that `keyward sync` costs one conditional
//! request when nothing changed (and 1 + k when k users changed) instead of
//! one request per cached user.
//!
//! `keyward publish` writes it as `keyward.index` next to the users' files
//! (signed like them when it signs):
//!
//! ```text
//! #keyward-index serial=1795430000 expires=2026-12-01T00:00:00Z
//! alice 1795430000 3f2c9a0b11d2e3f4 alice.keys
//! bob - 9a8b7c6d5e4f3a2b bob.keys
//! ```
//!
//! One line per user, sorted by name (bytewise, no duplicates): the user,
//! the serial of the user's signed file (`-` when unsigned), the first 64
//! bits of the SHA-256 of the file as served (hex), and the file's path
//! relative to the index. The hash only detects change; authenticity comes
//! from the signatures (signed mode) or is not claimed (unsigned). The
//! `#keyward-index` header can never be taken for a user file's `#keyward `
//! header, and the other way round, although both use the namespace
//! `keyward`.
//!
//! On a server, the last index fetched is kept in `<cache dir>/.keyward-index`
//! (a small header, then the published text verbatim). The login path reads
//! it only on a cache miss, by binary search (a few `pread`s, whatever the
//! number of users). Parsing and the search are pure; `IndexCache` does I/O.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cache::Corrupt;
use crate::config::percent_encode;

/// The first bytes of every published index.
pub const PREFIX: &str = "#keyward-index";
/// Largest index accepted (after decompression): ~50 bytes a user, so well
/// over a million users.
pub const MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Longest line accepted (keeps the binary search's reads bounded).
pub const MAX_LINE: usize = 1024;

/// 64 bits of SHA-256: enough to tell a changed file from its predecessor.
pub type Digest = [u8; 8];

pub fn digest(body: &[u8]) -> Digest {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(body);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The index's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Never lower than an index accepted before (signed mode).
    pub serial: Option<u64>,
    /// Unix time after which the index is not used (required when signed).
    pub expires: Option<i64>,
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
        s
    }

    pub fn parse(line: &str) -> Result<Header, String> {
        let rest = line
            .strip_prefix(PREFIX)
            .filter(|r| r.is_empty() || r.starts_with(' '))
            .ok_or("not a keyward index (no #keyward-index header)")?;
        let mut h = Header::default();
        for field in rest.split(' ').filter(|f| !f.is_empty()) {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("bad index header field {field:?}"))?;
            let dup = match k {
                "serial" => h
                    .serial
                    .replace(v.parse().map_err(|_| format!("bad index serial {v:?}"))?)
                    .is_some(),
                "expires" => h
                    .expires
                    .replace(
                        crate::signed::parse_utc(v)
                            .ok_or_else(|| format!("bad index expires {v:?}"))?,
                    )
                    .is_some(),
                _ => return Err(format!("unknown index header field {k:?}")),
            };
            if dup {
                return Err(format!("index header field {k:?} given twice"));
            }
        }
        Ok(h)
    }
}

/// One user's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub user: &'a str,
    /// Serial of the user's signed file.
    pub serial: Option<u64>,
    pub hash: Digest,
    /// Relative to the index's folder.
    pub path: &'a str,
}

impl Line<'_> {
    pub fn to_line(&self) -> String {
        let serial = self.serial.map_or("-".to_owned(), |s| s.to_string());
        format!("{} {serial} {} {}", self.user, hex(&self.hash), self.path)
    }

    /// The user a raw line is for (the search compares only this).
    fn user_of(raw: &[u8]) -> &[u8] {
        raw.split(|&b| b == b' ').next().unwrap_or(raw)
    }

    pub fn parse(raw: &str) -> Result<Line<'_>, String> {
        if raw.len() > MAX_LINE {
            return Err("index line too long".into());
        }
        let f: Vec<&str> = raw.split(' ').collect();
        let [user, serial, hash, path] = f[..] else {
            return Err(format!("index line {raw:?} does not have 4 fields"));
        };
        crate::username::validate(user, 256)
            .map_err(|e| format!("index line for {user:?}: {e}"))?;
        let serial = match serial {
            "-" => None,
            s => Some(
                s.parse()
                    .map_err(|_| format!("index line for {user}: bad serial"))?,
            ),
        };
        let hash =
            unhex::<8>(hash).ok_or_else(|| format!("index line for {user}: bad hash {hash:?}"))?;
        check_path(path).map_err(|e| format!("index line for {user}: {e}"))?;
        Ok(Line {
            user,
            serial,
            hash,
            path,
        })
    }
}

/// A relative path below the index's folder: no `..`, no query, nothing a
/// URL would read differently. Each segment is percent-encoded when used.
pub fn check_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 512
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"?#%\\".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("bad path {p:?}"))
    }
}

/// `folder` (ending in `/`) + the percent-encoded `path`.
pub fn join_url(folder: &str, path: &str) -> String {
    let enc: Vec<String> = path.split('/').map(percent_encode).collect();
    format!("{folder}{}", enc.join("/"))
}

/// A parsed, checked index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index<'a> {
    pub header: Header,
    /// Sorted by user, no duplicates.
    pub lines: Vec<Line<'a>>,
}

impl<'a> Index<'a> {
    /// Checks every line; refuses anything the binary search could not rely
    /// on (unsorted or duplicate users) and anything malformed.
    pub fn parse(body: &'a str) -> Result<Index<'a>, String> {
        if body.contains('\0') || body.contains('\r') {
            return Err("index contains NUL or CR".into());
        }
        let mut raw = body.lines();
        let header = Header::parse(raw.next().unwrap_or_default())?;
        let mut lines: Vec<Line> = Vec::new();
        for (i, l) in raw.enumerate() {
            if l.is_empty() {
                return Err(format!("index line {}: empty", i + 2));
            }
            let line = Line::parse(l).map_err(|e| format!("index line {}: {e}", i + 2))?;
            if let Some(prev) = lines.last() {
                if prev.user.as_bytes() >= line.user.as_bytes() {
                    return Err(format!(
                        "index line {}: {:?} is not after {:?} (unsorted or duplicate)",
                        i + 2,
                        line.user,
                        prev.user
                    ));
                }
            }
            lines.push(line);
        }
        if !body.ends_with('\n') {
            return Err("index does not end with a newline (truncated?)".into());
        }
        Ok(Index { header, lines })
    }

    pub fn get(&self, user: &str) -> Option<&Line<'a>> {
        self.lines
            .binary_search_by(|l| l.user.as_bytes().cmp(user.as_bytes()))
            .ok()
            .map(|i| &self.lines[i])
    }
}

/// Renders an index (`lines` are sorted here).
pub fn render(header: &Header, lines: &mut [Line]) -> String {
    lines.sort_by(|a, b| a.user.as_bytes().cmp(b.user.as_bytes()));
    let mut s = header.to_line();
    s.push('\n');
    for l in lines.iter() {
        s.push_str(&l.to_line());
        s.push('\n');
    }
    s
}

/// Binary search for `user` in a sorted index body held somewhere `read`
/// can fetch ranges from (`read(offset, len)` returns up to `len` bytes).
/// `start..end` are the byte offsets of the data lines (after the header
/// line). Returns the raw line. A few reads of at most a few KiB each.
pub fn search(
    read: &mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
    start: u64,
    end: u64,
    user: &str,
) -> io::Result<Option<String>> {
    const SCAN: u64 = 8192;
    let target = user.as_bytes();
    // lo is a line start; every line starting before lo is < user.
    // hi is a line start (or end); the line at hi, if any, is >= user.
    let (mut lo, mut hi) = (start, end);
    while hi - lo > SCAN {
        let mid = lo + (hi - lo) / 2;
        let chunk = read(mid - 1, 2 * MAX_LINE + 2)?;
        // The first line starting at or after mid.
        let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
            return Err(corrupt("index line longer than allowed"));
        };
        let s = mid + nl as u64;
        if s >= hi {
            break;
        }
        let rest = &chunk[nl + 1..];
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("index line longer than allowed"))?;
        if Line::user_of(&rest[..line_end]) < target {
            lo = s;
        } else {
            hi = s;
        }
    }
    // Scan from lo to the line at hi (inclusive).
    let len = (hi.saturating_add(MAX_LINE as u64 + 1)).min(end) - lo;
    let chunk = read(lo, len as usize)?;
    for raw in chunk.split(|&b| b == b'\n') {
        let u = Line::user_of(raw);
        if u == target {
            return String::from_utf8(raw.to_vec())
                .map(Some)
                .map_err(|_| corrupt("index line not UTF-8"));
        }
        if u > target {
            break;
        }
    }
    Ok(None)
}

fn corrupt(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

// ---------------------------------------------------------------------------
// The copy kept in the cache directory
// ---------------------------------------------------------------------------

const STORE_MAGIC: &str = "keyward-index-cache 1";
/// The stored header is at most this long (its values are capped).
const STORE_HEAD_MAX: usize = 4096;

/// What is known about the stored index, besides its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Unix time of the last answer (200 or 304) for the index.
    pub fetched_at: u64,
    pub etag: Option<String>,
    /// The index URL that answered.
    pub url: String,
    /// Whether its signature was checked when it was fetched.
    pub signed: bool,
    pub header: Header,
    /// SHA-256 of the text (with the serial: the index's rollback floor).
    pub sha256: [u8; 32],
    pub length: u64,
}

fn header_safe(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && !v.chars().any(|c| c.is_control())
}

impl Stored {
    pub fn new(
        fetched_at: u64,
        etag: Option<String>,
        url: String,
        signed: bool,
        body: &str,
    ) -> Result<Stored, String> {
        use sha2::Digest as _;
        let header = Header::parse(body.lines().next().unwrap_or_default())?;
        Ok(Stored {
            fetched_at,
            etag: etag.filter(|e| header_safe(e)),
            url,
            signed,
            header,
            sha256: sha2::Sha256::digest(body.as_bytes()).into(),
            length: body.len() as u64,
        })
    }

    pub fn encode_head(&self) -> String {
        let mut s = format!("{STORE_MAGIC}\nfetched_at {}\n", self.fetched_at);
        if let Some(e) = &self.etag {
            s.push_str(&format!("etag {e}\n"));
        }
        if header_safe(&self.url) {
            s.push_str(&format!("url {}\n", self.url));
        }
        s.push_str(&format!("signed {}\n", u8::from(self.signed)));
        s.push_str(&format!("sha256 {}\n", hex(&self.sha256)));
        s.push_str(&format!("length {}\n\n", self.length));
        s
    }

    /// Parses the stored head; returns it and the offset of the text.
    pub fn decode_head(bytes: &[u8]) -> Result<(Stored, usize), Corrupt> {
        let sep = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or(Corrupt("index: no header end"))?;
        let head = std::str::from_utf8(&bytes[..sep]).map_err(|_| Corrupt("index: not UTF-8"))?;
        let mut lines = head.lines();
        if lines.next() != Some(STORE_MAGIC) {
            return Err(Corrupt("index: unknown format"));
        }
        let (mut fetched_at, mut etag, mut url, mut signed, mut sha, mut length) =
            (None, None, String::new(), None, None, None);
        for line in lines {
            let (k, v) = line.split_once(' ').ok_or(Corrupt("index: bad header"))?;
            match k {
                "fetched_at" => fetched_at = v.parse().ok(),
                "etag" => etag = header_safe(v).then(|| v.to_owned()),
                "url" => url = v.to_owned(),
                "signed" => signed = Some(v == "1"),
                "sha256" => sha = unhex::<32>(v),
                "length" => length = v.parse().ok(),
                _ => {}
            }
        }
        // The published header line follows: parse it from what was read.
        let text_at = sep + 2;
        let first = bytes[text_at..]
            .split(|&b| b == b'\n')
            .next()
            .and_then(|l| std::str::from_utf8(l).ok())
            .ok_or(Corrupt("index: no text"))?;
        let header = Header::parse(first).map_err(|_| Corrupt("index: bad text header"))?;
        let s = Stored {
            fetched_at: fetched_at.ok_or(Corrupt("index: no fetched_at"))?,
            etag,
            url,
            signed: signed.ok_or(Corrupt("index: no signed"))?,
            header,
            sha256: sha.ok_or(Corrupt("index: no sha256"))?,
            length: length.ok_or(Corrupt("index: no length"))?,
        };
        Ok((s, text_at))
    }

    /// The index's rollback floor: its serial and text hash.
    pub fn floor(&self) -> Option<crate::state::Floor> {
        self.header.serial.map(|serial| crate::state::Floor {
            serial,
            sha256: self.sha256,
        })
    }

    /// Whether the index may be used at `now` in this mode: a signed one
    /// only while it has not expired, and never an unsigned one in signed
    /// mode. `max_age` (the login path: `ttl`) also bounds its age.
    pub fn usable(&self, now: u64, signed: bool, max_age: Option<u64>) -> Result<(), String> {
        if signed {
            if !self.signed {
                return Err("the stored index was not signed".into());
            }
            match self.header.expires {
                Some(e) if e > now as i64 => {}
                Some(e) => {
                    return Err(format!(
                        "the index expired at {}",
                        crate::signed::format_utc(e)
                    ))
                }
                None => return Err("the signed index has no expires".into()),
            }
        }
        if let Some(max) = max_age {
            match now.checked_sub(self.fetched_at) {
                Some(age) if age < max => {}
                _ => return Err("the stored index is not fresh".into()),
            }
        }
        Ok(())
    }

    /// The folder the index (and, by default, the users' files) lives in.
    pub fn folder(&self) -> &str {
        match self.url.rfind('/') {
            Some(i) => &self.url[..=i],
            None => "",
        }
    }
}

/// The stored index in `<cache dir>/.keyward-index`.
pub struct IndexCache {
    cache_dir: PathBuf,
    path: PathBuf,
    owners: Vec<u32>,
}

impl IndexCache {
    pub fn new(cache_dir: &Path) -> IndexCache {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let mut owners = vec![0];
        if euid != 0 {
            owners.push(euid);
        }
        IndexCache {
            cache_dir: cache_dir.to_owned(),
            path: cache_dir.join(".keyward-index"),
            owners,
        }
    }

    fn open(&self) -> io::Result<Option<File>> {
        match crate::safepath::open_checked(&self.path, &self.owners, Some(&self.cache_dir)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// The stored index and its text (sync). A corrupt file reads as none.
    pub fn read(&self) -> io::Result<Option<(Stored, String)>> {
        let Some(f) = self.open()? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.take(MAX_BYTES + STORE_HEAD_MAX as u64)
            .read_to_end(&mut bytes)?;
        let Ok((s, at)) = Stored::decode_head(&bytes) else {
            return Ok(None);
        };
        let text = &bytes[at..];
        use sha2::Digest as _;
        if text.len() as u64 != s.length || <[u8; 32]>::from(sha2::Sha256::digest(text)) != s.sha256
        {
            return Ok(None);
        }
        match String::from_utf8(text.to_vec()) {
            Ok(t) => Ok(Some((s, t))),
            Err(_) => Ok(None),
        }
    }

    /// The login path: the stored index's head and `user`'s line (None:
    /// not listed), by binary search. None when there is no usable file.
    pub fn lookup(&self, user: &str) -> io::Result<Option<(Stored, Option<String>)>> {
        let Some(f) = self.open()? else {
            return Ok(None);
        };
        let mut head = vec![0u8; STORE_HEAD_MAX + MAX_LINE];
        let n = read_full_at(&f, &mut head, 0)?;
        head.truncate(n);
        let Ok((s, at)) = Stored::decode_head(&head) else {
            return Ok(None);
        };
        // A truncated file would hide users: its length must be complete.
        let size = f.metadata()?.len();
        if size != at as u64 + s.length {
            return Ok(None);
        }
        // Data lines start after the published header line.
        let first_nl = head[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("index header line too long"))?;
        let start = (at + first_nl + 1) as u64;
        let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let len = len.min(size.saturating_sub(off) as usize);
            let mut buf = vec![0u8; len];
            let n = read_full_at(&f, &mut buf, off)?;
            buf.truncate(n);
            Ok(buf)
        };
        let line = search(&mut read, start, size, user)?;
        Ok(Some((s, line)))
    }

    /// The login path on a cache miss: what a fresh, valid stored index
    /// says about `user` (None: no such index; ask the directory). Fresh =
    /// younger than `ttl_s`; valid = signed and unexpired in signed mode,
    /// and fetched from one of the configured index URLs.
    pub fn login_listing(
        &self,
        user: &str,
        now: u64,
        signed: bool,
        ttl_s: u64,
        index_urls: &[String],
    ) -> Option<crate::state::Listing> {
        let (s, line) = self.lookup(user).ok()??;
        s.usable(now, signed, Some(ttl_s)).ok()?;
        if !index_urls.contains(&s.url) {
            return None;
        }
        Some(match line {
            None => crate::state::Listing::Absent { index: s.url },
            Some(raw) => {
                let l = Line::parse(&raw).ok()?;
                crate::state::Listing::Listed {
                    serial: l.serial,
                    hash: l.hash,
                }
            }
        })
    }

    /// Replaces the stored index atomically (`durable`: fsync, for a new
    /// text; a refreshed age after a 304 needs none).
    pub fn write(&self, s: &Stored, text: &str, durable: bool) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .tempfile_in(&self.cache_dir)?;
        io::Write::write_all(&mut tmp, s.encode_head().as_bytes())?;
        io::Write::write_all(&mut tmp, text.as_bytes())?;
        if durable {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(&self.path).map_err(|e| e.error)?;
        if durable {
            File::open(&self.cache_dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }

    /// The directory no longer publishes an index: forget it, so the login
    /// path never answers from an index nobody maintains.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn read_full_at(f: &File, buf: &mut [u8], mut off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(user: &str, serial: Option<u64>, body: &str) -> Line<'static> {
        Line {
            user: Box::leak(user.to_owned().into_boxed_str()),
            serial,
            hash: digest(body.as_bytes()),
            path: Box::leak(format!("{user}.keys").into_boxed_str()),
        }
    }

    fn sample(n: usize) -> String {
        let mut lines: Vec<Line> = (0..n)
            .map(|i| line(&format!("u{i:06}"), Some(7), &format!("body {i}")))
            .collect();
        let h = Header {
            serial: Some(9),
            expires: Some(1_900_000_000),
        };
        render(&h, &mut lines)
    }

    #[test]
    fn render_parse_round_trip() {
        let mut lines = vec![line("bob", None, "b"), line("alice", Some(5), "a")];
        let h = Header {
            serial: Some(12),
            expires: Some(1_893_456_000),
        };
        let text = render(&h, &mut lines);
        assert!(text.starts_with("#keyward-index serial=12 expires=2030-01-01T00:00:00Z\nalice 5 "));
        let idx = Index::parse(&text).unwrap();
        assert_eq!(idx.header, h);
        assert_eq!(idx.lines.len(), 2);
        assert_eq!(idx.get("alice").unwrap().serial, Some(5));
        assert_eq!(idx.get("bob").unwrap().hash, digest(b"b"));
        assert_eq!(idx.get("bob").unwrap().path, "bob.keys");
        assert!(idx.get("carol").is_none());
        assert_eq!(Index::parse("#keyward-index\n").unwrap().lines.len(), 0);
    }

    #[test]
    fn malformed_indexes_are_refused() {
        let ok = "alice - 0123456789abcdef alice.keys";
        for bad in [
            format!("#keyward user=alice serial=1\n{ok}\n"),
            format!("#keyward-indexx\n{ok}\n"),
            format!("#keyward-index serial=x\n{ok}\n"),
            format!("#keyward-index foo=1\n{ok}\n"),
            format!("#keyward-index\n{ok}"),
            format!("#keyward-index\n{ok}\n{ok}\n"),
            "#keyward-index\nbob - 0123456789abcdef b\nalice - 0123456789abcdef a\n".into(),
            "#keyward-index\nalice - 0123456789ABCDEF a\n".into(),
            "#keyward-index\nalice - 0123 a\n".into(),
            "#keyward-index\nalice x 0123456789abcdef a\n".into(),
            "#keyward-index\n../x - 0123456789abcdef a\n".into(),
            "#keyward-index\nalice - 0123456789abcdef ../etc/passwd\n".into(),
            "#keyward-index\nalice - 0123456789abcdef a?b\n".into(),
            "#keyward-index\nalice - 0123456789abcdef /abs\n".into(),
            "#keyward-index\nalice - 0123456789abcdef a b\n".into(),
            format!("#keyward-index\n\n{ok}\n"),
            format!("#keyward-index\r\n{ok}\n"),
        ] {
            assert!(Index::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(check_path("a/b.keys").is_ok());
        assert!(check_path("a//b").is_err());
        assert_eq!(
            join_url("https://k/u/", "a b/HOST$.keys"),
            "https://k/u/a%20b/HOST%24.keys"
        );
    }

    #[test]
    fn binary_search_finds_every_user_and_only_them() {
        for n in [0, 1, 2, 3, 50, 2000] {
            let text = sample(n);
            let bytes = text.as_bytes().to_vec();
            let start = (text.find('\n').unwrap() + 1) as u64;
            let reads = std::cell::Cell::new(0);
            let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
                reads.set(reads.get() + 1);
                let off = off as usize;
                Ok(bytes[off..(off + len).min(bytes.len())].to_vec())
            };
            let idx = Index::parse(&text).unwrap();
            for l in &idx.lines {
                let got = search(&mut read, start, bytes.len() as u64, l.user).unwrap();
                assert_eq!(got, Some(l.to_line()), "n={n} {}", l.user);
            }
            for absent in ["", "a", "u", "u0000005x", "u999999", "zzz", "u000000 "] {
                if absent.is_empty() {
                    continue;
                }
                assert_eq!(
                    search(&mut read, start, bytes.len() as u64, absent).unwrap(),
                    None,
                    "n={n} {absent}"
                );
            }
            // log2(2000 lines × ~40 bytes / 8 KiB) + 1 reads per lookup.
            if n == 2000 {
                let before = reads.get();
                search(&mut read, start, bytes.len() as u64, "u001234").unwrap();
                assert!(reads.get() - before <= 6, "{} reads", reads.get() - before);
            }
        }
    }

    #[test]
    fn binary_search_agrees_with_a_linear_scan_on_random_names() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        const CH: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
        let name = |rnd: &mut dyn FnMut(u64) -> u64| {
            let len = 1 + rnd(40) as usize;
            let mut s = String::from((b'a' + rnd(26) as u8) as char);
            for _ in 1..len {
                s.push(CH[rnd(CH.len() as u64) as usize] as char);
            }
            s
        };
        let mut names: Vec<String> = (0..6000).map(|_| name(&mut rnd)).collect();
        names.sort();
        names.dedup();
        let (listed, absent): (Vec<_>, Vec<_>) =
            names.iter().enumerate().partition(|(i, _)| i % 3 != 0);
        let mut lines: Vec<Line> = listed.iter().map(|(_, u)| line(u, None, u)).collect();
        let text = render(&Header::default(), &mut lines);
        let bytes = text.as_bytes();
        let start = (text.find('\n').unwrap() + 1) as u64;
        let mut read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let off = off as usize;
            Ok(bytes[off..(off + len).min(bytes.len())].to_vec())
        };
        for (_, u) in &listed {
            let got = search(&mut read, start, bytes.len() as u64, u).unwrap();
            assert!(got.is_some_and(|l| l.starts_with(&format!("{u} "))), "{u}");
        }
        for (_, u) in &absent {
            assert_eq!(
                search(&mut read, start, bytes.len() as u64, u).unwrap(),
                None,
                "{u}"
            );
        }
    }

    #[test]
    fn stored_index_round_trip_and_lookup_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let c = IndexCache::new(dir.path());
        assert!(c.read().unwrap().is_none());
        assert!(c.lookup("u000001").unwrap().is_none());
        let text = sample(3000);
        let s = Stored::new(
            1_700_000_000,
            Some("\"e1\"".into()),
            "http://k/users/keyward.index".into(),
            true,
            &text,
        )
        .unwrap();
        c.write(&s, &text, true).unwrap();
        let (s2, t2) = c.read().unwrap().unwrap();
        assert_eq!((&s2, &t2), (&s, &text));
        assert_eq!(s2.folder(), "http://k/users/");
        assert_eq!(s2.floor().unwrap().serial, 9);
        let (_, l) = c.lookup("u002999").unwrap().unwrap();
        assert!(l.unwrap().starts_with("u002999 7 "));
        let (_, l) = c.lookup("nobody").unwrap().unwrap();
        assert_eq!(l, None);
        // Truncated: never used (it would hide users).
        let path = dir.path().join(".keyward-index");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(c.lookup("u000001").unwrap().is_none());
        assert!(c.read().unwrap().is_none());
        c.remove().unwrap();
        c.remove().unwrap();
    }

    #[test]
    fn usable_rules() {
        let text = sample(1);
        let mut s = Stored::new(100, None, "u".into(), true, &text).unwrap();
        assert!(s.usable(200, true, None).is_ok());
        assert!(s.usable(200, true, Some(100)).is_err(), "too old");
        assert!(s.usable(199, true, Some(100)).is_ok());
        assert!(s.usable(50, false, Some(100)).is_err(), "from the future");
        assert!(s
            .usable(1_900_000_000, true, None)
            .unwrap_err()
            .contains("expired"));
        assert!(
            s.usable(1_900_000_000, false, None).is_ok(),
            "unsigned ignores expires"
        );
        s.signed = false;
        assert!(s
            .usable(200, true, None)
            .unwrap_err()
            .contains("not signed"));
    }
}
