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
//! The directory's revocation list (`revocation::list`, `revoked.list`)
//! has a line of its own, for the user [`REVOKED`] (`:revoked SERIAL HASH
//! revoked.list`): a host learns from the index's one conditional GET
//! whether the list changed. It is an ordinary line, so hosts that know
//! nothing of revocation read the index as before: they only ever look up
//! the users they serve, and no account is named `:revoked` (`:` separates
//! the fields of passwd; `publish` refuses such a user).
//!
//! Likewise a `:deltas` line ([`DELTAS`]) tells a host that `publish`
//! writes deltas (`delta`) beside the index and the list, so that a poll
//! is one conditional GET of the delta from the host's serial.
//!
//! Pure: the format, the checks and the binary search. The copy a server
//! keeps (`<cache dir>/.keyward-index`) is `indexcache`.

use std::io;

use crate::config::percent_encode;

/// The first bytes of every published index.
pub const PREFIX: &str = "#keyward-index";
/// Largest index accepted (after decompression): ~50 bytes a user, so well
/// over a million users.
pub const MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Longest line accepted (keeps the binary search's reads bounded): room
/// for the longest user name keyward accepts, twice (name and path).
pub const MAX_LINE: usize = 4096;

/// The index line naming the revocation list's version (see the module
/// comment).
pub const REVOKED: &str = ":revoked";

/// The index line announcing deltas (`:deltas - 0000000000000000
/// keyward.index.d`): the folder of the index's deltas, and that each
/// signed file the index names has its own (`revoked.list.d/`). A line,
/// not a header field: older hosts refuse an index header field they do
/// not know, but read past a line for a user nobody is.
pub const DELTAS: &str = ":deltas";

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

pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
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
        check_fields(user, path).map_err(|e| format!("index line for {user:?}: {e}"))?;
        let serial = match serial {
            "-" => None,
            s => Some(
                s.parse()
                    .map_err(|_| format!("index line for {user}: bad serial"))?,
            ),
        };
        let hash =
            unhex::<8>(hash).ok_or_else(|| format!("index line for {user}: bad hash {hash:?}"))?;
        Ok(Line {
            user,
            serial,
            hash,
            path,
        })
    }
}

/// Whether a line for `user` whose file is at `path` can be written so that
/// [`Line::parse`] reads back exactly these fields: fields are separated by
/// single spaces (so neither may contain one), the user must be a name
/// keyward serves, and the path must pass [`check_path`]. The writer
/// refuses such a line and the reader refuses it.
pub fn check_fields(user: &str, path: &str) -> Result<(), String> {
    crate::username::validate(user, crate::username::MAX_LEN_LIMIT).map_err(|e| e.to_string())?;
    if user.contains(' ') {
        return Err(format!(
            "user name {user:?} contains a space, which an index line cannot carry"
        ));
    }
    check_path(path)
}

/// A relative path below the index's folder: no `..`, no query, nothing a
/// URL would read differently. Each segment is percent-encoded when used.
pub fn check_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 2048
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
        Err(format!(
            "bad path {p:?} (an index path is printable ASCII without ?#%\\, \
             with no empty, . or .. segment)"
        ))
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

pub fn corrupt(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
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
    fn lines_an_index_cannot_carry_are_refused_by_writer_and_reader() {
        for (user, path) in [
            ("alice", "alice.keys"),
            ("a@corp.example.com", "a@corp.example.com.keys"),
            ("host$", "host$.keys"),
            ("a=b", "a=b.keys"),
        ] {
            assert_eq!(check_fields(user, path), Ok(()), "{user}");
        }
        for (user, path) in [
            ("a b", "a_b.keys"),
            ("a", "a b.keys"),
            ("dåve", "dåve.keys"),
            ("CORP\\alice", "CORP\\alice.keys"),
            ("a#b", "a#b.keys"),
            ("a%41", "a%41.keys"),
            ("a?b", "a?b.keys"),
            ("a\tb", "a\tb.keys"),
            ("-a", "-a.keys"),
            ("", ".keys"),
        ] {
            assert!(check_fields(user, path).is_err(), "{user:?} {path:?}");
        }
        // What writing a name with a space would give: a line of 5 fields
        // the reader refuses (and with it the whole index).
        let l = Line {
            user: "a b",
            serial: None,
            hash: digest(b"x"),
            path: "a.keys",
        };
        assert!(Line::parse(&l.to_line()).is_err());
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Write the line of user U (file `U.keys`), parse it: the same line,
        /// or the writer refuses it; and the reader only ever returns a
        /// line the writer writes.
        #[test]
        fn an_index_line_reads_back_its_fields_or_is_refused(
            user in "[a-z =#%?\\\\/\\t\\x00-\\x1f\\x7f\\u{85}\\u{2028}åé@.$-]{0,12}|\\PC{0,12}",
            serial in proptest::option::of(any::<u64>()),
            hash in any::<[u8; 8]>(),
        ) {
            let path = format!("{user}.keys");
            let l = Line { user: &user, serial, hash, path: &path };
            let text = l.to_line();
            let read = Line::parse(&text);
            match check_fields(&user, &path) {
                Ok(()) => prop_assert_eq!(read, Ok(l)),
                Err(_) => prop_assert_ne!(read, Ok(l)),
            }
            if let Ok(r) = Line::parse(&text) {
                prop_assert_eq!(check_fields(r.user, r.path), Ok(()));
            }
        }
    }
}
