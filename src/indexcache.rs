//! The directory index as a server keeps it: `<cache dir>/.keyward-index`,
//! a small header (when it was fetched, from where, its ETag, whether its
//! signature was checked, a SHA-256 of the text) and then the published
//! text verbatim. `sync` reads and replaces it; the login path reads it only
//! on a cache miss, by binary search (a few `pread`s, whatever the number
//! of users).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::entry::Corrupt;
use crate::index::{corrupt, hex, search, unhex, Header, Line, MAX_BYTES, MAX_LINE};

const STORE_MAGIC: &str = "keyward-index-cache 1";
/// The stored header is at most this long (its values are capped).
const STORE_HEAD_MAX: usize = 4096;

/// What is known about the stored index, besides its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Unix time of the last answer (200 or 304) for the index, or for a
    /// delta of it.
    pub fetched_at: u64,
    /// Unix time of the last answer for the index itself (not a delta).
    pub checked_at: u64,
    pub etag: Option<String>,
    /// The index URL that answered.
    pub url: String,
    /// Whether its signature was checked when it was fetched.
    pub signed: bool,
    pub header: Header,
    /// SHA-256 of the text (with the serial: the index's rollback floor).
    pub sha256: [u8; 32],
    pub length: u64,
    /// The delta this index was last polled with (its path below the
    /// mirrors' folders) and that answer's ETag: the next poll of the same
    /// delta is conditional (`sync/delta.rs`).
    pub delta_etag: Option<(String, String)>,
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
            checked_at: fetched_at,
            etag: etag.filter(|e| header_safe(e)),
            url,
            signed,
            header,
            sha256: sha2::Sha256::digest(body.as_bytes()).into(),
            length: body.len() as u64,
            delta_etag: None,
        })
    }

    pub fn encode_head(&self) -> String {
        let mut s = format!(
            "{STORE_MAGIC}\nfetched_at {}\nchecked_at {}\n",
            self.fetched_at, self.checked_at
        );
        if let Some(e) = &self.etag {
            s.push_str(&format!("etag {e}\n"));
        }
        if header_safe(&self.url) {
            s.push_str(&format!("url {}\n", self.url));
        }
        s.push_str(&format!("signed {}\n", u8::from(self.signed)));
        s.push_str(&format!("sha256 {}\n", hex(&self.sha256)));
        if let Some((path, etag)) = &self.delta_etag {
            // Bounded, so the head stays within STORE_HEAD_MAX.
            let fits = path.len() + etag.len() <= 512;
            if fits && header_safe(path) && !path.contains(' ') && header_safe(etag) {
                s.push_str(&format!("delta_etag {path} {etag}\n"));
            }
        }
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
        let (mut delta_etag, mut checked_at) = (None, 0);
        for line in lines {
            let (k, v) = line.split_once(' ').ok_or(Corrupt("index: bad header"))?;
            match k {
                "fetched_at" => fetched_at = v.parse().ok(),
                "checked_at" => checked_at = v.parse().unwrap_or(0),
                "etag" => etag = header_safe(v).then(|| v.to_owned()),
                "url" => url = v.to_owned(),
                "signed" => signed = Some(v == "1"),
                "sha256" => sha = unhex::<32>(v),
                "length" => length = v.parse().ok(),
                "delta_etag" => {
                    delta_etag = v.split_once(' ').map(|(p, e)| (p.to_owned(), e.to_owned()))
                }
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
            checked_at,
            etag,
            url,
            signed: signed.ok_or(Corrupt("index: no signed"))?,
            header,
            sha256: sha.ok_or(Corrupt("index: no sha256"))?,
            length: length.ok_or(Corrupt("index: no length"))?,
            delta_etag,
        };
        Ok((s, text_at))
    }

    /// The index's rollback floor: its serial and text hash.
    pub fn floor(&self) -> Option<crate::state::Floor> {
        self.header.serial.map(|serial| crate::state::Floor {
            serial,
            sha256: self.sha256,
            signer: None,
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
        match crate::os::safepath::open_checked(&self.path, &self.owners, Some(&self.cache_dir)) {
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
    use crate::index::{digest, render};

    fn sample(n: usize) -> String {
        let names: Vec<String> = (0..n).map(|i| format!("u{i:06}")).collect();
        let paths: Vec<String> = names.iter().map(|u| format!("{u}.keys")).collect();
        let mut lines: Vec<Line> = names
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (u, p))| Line {
                user: u,
                serial: Some(7),
                hash: digest(format!("body {i}").as_bytes()),
                path: p,
            })
            .collect();
        let h = Header {
            serial: Some(9),
            expires: Some(1_900_000_000),
        };
        render(&h, &mut lines)
    }

    #[test]
    fn stored_index_round_trip_and_lookup_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let c = IndexCache::new(dir.path());
        assert!(c.read().unwrap().is_none());
        assert!(c.lookup("u000001").unwrap().is_none());
        let text = sample(3000);
        let mut s = Stored::new(
            1_700_000_000,
            Some("\"e1\"".into()),
            "http://k/users/keyward.index".into(),
            true,
            &text,
        )
        .unwrap();
        s.delta_etag = Some(("keyward.index.d/9".into(), "\"a b\"".into()));
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
