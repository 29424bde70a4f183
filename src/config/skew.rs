//! Version skew: a file whose top-level `min_version` is newer than this
//! keyward was written for a later version, and is read leniently (the
//! rule is described in [`crate::config::layers`]): [`relax`] blanks the
//! keys this version does not know, keeps the lines, lists them
//! ([`Ignored`], the records' [`warning`]) and refuses near-misses of known
//! keys ([`NearMiss`], [`near_miss`]). Pure.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::config::layers::fields_of;
use crate::config::{line_of, section_keys, Config, ConfigError};

/// A configuration key a file set and this version ignored (`min_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub path: PathBuf,
    pub line: usize,
    /// `section.key`, or `section` for a whole unknown section.
    pub key: String,
    /// The file's `min_version`.
    pub min_version: Version,
}

/// An unknown key that looks like a misspelling of a known one: an error
/// even in a file for a newer keyward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    pub path: PathBuf,
    pub line: usize,
    /// `section.key` as written (or `section`).
    pub key: String,
    /// The known `section.key` (or `section`) it resembles.
    pub known: String,
}

impl NearMiss {
    pub fn error(&self) -> ConfigError {
        ConfigError::Syntax {
            path: self.path.clone(),
            line: self.line,
            message: format!(
                "unknown key {} looks like a misspelling of {}: a file with a newer min_version may carry keys this keyward does not know, but not near-misses of known ones (fix the spelling)",
                self.key, self.known
            ),
        }
    }
}

/// One file's text as this version reads it.
#[derive(Debug, Clone)]
pub struct Relaxed<'a> {
    pub text: Cow<'a, str>,
    pub ignored: Vec<Ignored>,
    /// Unknown keys refused as misspellings (each is an error).
    pub near_misses: Vec<NearMiss>,
}

impl Relaxed<'_> {
    /// The first near-miss as the error (the login path's rule).
    pub fn checked(self) -> Result<Self, ConfigError> {
        match self.near_misses.first() {
            Some(n) => Err(n.error()),
            None => Ok(self),
        }
    }
}

/// Whether `unknown` looks like a misspelling of `known`: equal but for
/// case and `-`/`_`, or within a Damerau-Levenshtein distance (optimal
/// string alignment) of 2, or of 1 when `known` has 5 characters or
/// fewer (`ttl`, `urls`, `dir`: two edits would reach unrelated words).
pub fn near_miss(unknown: &str, known: &str) -> bool {
    let norm = |s: &str| -> Vec<u8> {
        s.bytes()
            .map(|b| match b.to_ascii_lowercase() {
                b'-' => b'_',
                b => b,
            })
            .collect()
    };
    let (a, b) = (norm(unknown), norm(known));
    let limit = if b.len() <= 5 { 1 } else { 2 };
    a.len().abs_diff(b.len()) <= limit && osa_distance(&a, &b) <= limit
}

/// Edit distance with adjacent transpositions (optimal string alignment).
fn osa_distance(a: &[u8], b: &[u8]) -> usize {
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The known name `unknown` resembles, if any.
fn resembles<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().find(|k| near_miss(unknown, k))
}

/// The `config_warning` of a decision record while keys are ignored:
/// short (at most three keys named), one line.
pub fn warning(ignored: &[Ignored]) -> Option<String> {
    if ignored.is_empty() {
        return None;
    }
    let mut versions: Vec<String> = ignored.iter().map(|i| i.min_version.to_string()).collect();
    versions.dedup();
    let keys: Vec<&str> = ignored.iter().take(3).map(|i| i.key.as_str()).collect();
    let more = ignored.len().saturating_sub(keys.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "ignored unknown key{} {}{more} (min_version {})",
        if ignored.len() == 1 { "" } else { "s" },
        keys.join(", "),
        versions.join(", ")
    ))
}

/// Applies the `min_version` rule to one file's text: unchanged unless the
/// file says it needs a newer keyward; then the keys this version does not
/// know are blanked (their lines stay, empty) and listed.
pub fn relax<'a>(text: &'a str, path: &Path) -> Result<Relaxed<'a>, ConfigError> {
    let unchanged = Relaxed {
        text: Cow::Borrowed(text),
        ignored: Vec::new(),
        near_misses: Vec::new(),
    };
    // The common case costs one substring search.
    if !text.contains("min_version") {
        return Ok(unchanged);
    }
    let syntax = |e: toml_edit::TomlError| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
        message: e.message().trim().replace('\n', " "),
    };
    let doc = toml_edit::ImDocument::parse(text).map_err(syntax)?;
    let Some(item) = doc.as_table().get("min_version") else {
        return Ok(unchanged);
    };
    let at = item.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    let wanted = item
        .as_str()
        .ok_or("min_version must be a string such as \"0.2.0\"")
        .and_then(|s| Version::parse(s).ok_or("min_version must look like \"0.2.0\""))
        .map_err(|m| ConfigError::Syntax {
            path: path.to_owned(),
            line: at,
            message: m.into(),
        })?;
    if wanted <= Version::current() {
        return Ok(unchanged);
    }
    let mut blank = Vec::new();
    let mut ignored = Vec::new();
    let mut near_misses = Vec::new();
    for u in unknown_keys(&doc, text) {
        let Some(first) = u.ranges.iter().map(|r| r.start).min() else {
            continue;
        };
        let line = line_of(text, first);
        let path = path.to_owned();
        match u.like {
            Some(known) => near_misses.push(NearMiss {
                path,
                line,
                key: u.key,
                known,
            }),
            None => {
                ignored.push(Ignored {
                    path,
                    line,
                    key: u.key,
                    min_version: wanted,
                });
                blank.extend(u.ranges);
            }
        }
    }
    // Only ASCII bytes are written over whole UTF-8 sequences' ranges.
    let text = String::from_utf8(blanked(text, &blank)).map_err(|_| ConfigError::Syntax {
        path: path.to_owned(),
        line: at,
        message: "cannot ignore the unknown keys of this file".into(),
    })?;
    Ok(Relaxed {
        text: Cow::Owned(text),
        ignored,
        near_misses,
    })
}

/// A key (or section) this version does not know, where it is, and the
/// known one it resembles (a near-miss) if any.
struct Unknown {
    key: String,
    like: Option<String>,
    ranges: Vec<std::ops::Range<usize>>,
}

/// Every unknown key of a parsed file: in a known section, the keys that
/// section does not have; at the top, unknown keys and sections whole.
fn unknown_keys(doc: &toml_edit::ImDocument<&str>, text: &str) -> Vec<Unknown> {
    let mut out = Vec::new();
    let root = doc.as_table();
    let top = fields_of::<Config>();
    for (k, item) in root.iter() {
        let key_span = root.key(k).and_then(|k| k.span());
        match (section_keys(k), item) {
            (Some(known), toml_edit::Item::Table(t)) => {
                for (name, v) in t.iter().filter(|(n, _)| !known.contains(n)) {
                    out.push(Unknown {
                        key: format!("{k}.{name}"),
                        like: resembles(name, known).map(|n| format!("{k}.{n}")),
                        ranges: ranges(text, v, t.key(name).and_then(|k| k.span())),
                    });
                }
            }
            _ if top.contains(&k) => {}
            _ => out.push(Unknown {
                key: k.to_owned(),
                like: resembles(k, top).map(str::to_owned),
                ranges: ranges(text, item, key_span),
            }),
        }
    }
    out
}

/// `text` with every byte in `ranges` but newlines turned into a space.
fn blanked(text: &str, ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        for b in &mut bytes[r.clone()] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    bytes
}

/// The byte ranges an item occupies: a value's whole `key = value` from
/// the start of its line (a dotted key, `directory.future = 1`, names
/// itself from there: blanking only `future = 1` would leave `directory.`
/// behind); a table's header and each of its entries (a sub-table's header
/// may sit after other sections, so a table is never blanked as one range).
fn ranges(
    text: &str,
    item: &toml_edit::Item,
    key: Option<std::ops::Range<usize>>,
) -> Vec<std::ops::Range<usize>> {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let value = |v: Option<std::ops::Range<usize>>| match (key.clone(), v) {
        (Some(k), Some(v)) => {
            std::iter::once(line_start(k.start.min(v.start))..k.end.max(v.end)).collect()
        }
        (k, v) => k.into_iter().chain(v).collect(),
    };
    match item {
        toml_edit::Item::None => Vec::new(),
        toml_edit::Item::Value(v) => value(v.span()),
        toml_edit::Item::Table(t) => table_ranges(text, t, key),
        toml_edit::Item::ArrayOfTables(a) => {
            a.iter().flat_map(|t| table_ranges(text, t, None)).collect()
        }
    }
}

fn table_ranges(
    text: &str,
    t: &toml_edit::Table,
    key: Option<std::ops::Range<usize>>,
) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<_> = match t.span() {
        // `[a.b]` header (its span covers the brackets and the name)
        Some(h) => vec![h],
        // a dotted key (`a.b = 1`): each entry's range covers its line
        None => key.into_iter().collect(),
    };
    for (name, v) in t.iter() {
        out.extend(ranges(text, v, t.key(name).and_then(|k| k.span())));
    }
    out
}

/// A keyward version, `MAJOR[.MINOR[.PATCH]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.trim().split('.');
        let mut next = |required: bool| match parts.next() {
            None if !required => Some(0),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            _ => None,
        };
        let v = Version(next(true)?, next(false)?, next(false)?);
        parts.next().is_none().then_some(v)
    }

    /// This keyward's version.
    pub fn current() -> Version {
        Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version(0, 0, 0))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("min_version {s:?} must look like \"0.2.0\""))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn near_miss_distance() {
        assert!(near_miss("signer_file", "signers_file"));
        assert!(
            near_miss("sigenrs_fiel", "signers_file"),
            "two transpositions"
        );
        assert!(!near_miss("signatures_file", "signers_file"));
        assert!(!near_miss("shard_count", "max_bytes"));
        assert!(!near_miss("principals", "policy"));
        // short names: one edit only
        assert!(near_miss("tll", "ttl"));
        assert!(near_miss("URLS", "urls"));
        assert!(!near_miss("tls", "urls"));
        assert!(!near_miss("dns", "dir"));
        assert!(!near_miss("ttl_ms", "ttl"));
        assert!(near_miss("logs", "log"));
        assert_eq!(osa_distance(b"ca", b"ac"), 1);
        assert_eq!(osa_distance(b"", b"abc"), 3);
        assert_eq!(osa_distance(b"kitten", b"sitting"), 3);
    }

    /// Optimal string alignment, straight from its definition (the
    /// distance of the prefixes `a[..i]`, `b[..j]`, remembered): the
    /// cheapest of a deletion, an insertion, a substitution (free when
    /// equal) and a swap of two adjacent characters, each edit touching
    /// fresh text.
    fn osa_by_definition(a: &[u8], b: &[u8]) -> usize {
        fn d(
            a: &[u8],
            b: &[u8],
            i: usize,
            j: usize,
            seen: &mut HashMap<(usize, usize), usize>,
        ) -> usize {
            if i == 0 || j == 0 {
                return i + j;
            }
            if let Some(&v) = seen.get(&(i, j)) {
                return v;
            }
            let mut best = (d(a, b, i - 1, j, seen) + 1)
                .min(d(a, b, i, j - 1, seen) + 1)
                .min(d(a, b, i - 1, j - 1, seen) + usize::from(a[i - 1] != b[j - 1]));
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d(a, b, i - 2, j - 2, seen) + 1);
            }
            seen.insert((i, j), best);
            best
        }
        d(a, b, a.len(), b.len(), &mut HashMap::new())
    }

    #[test]
    fn osa_distance_agrees_with_the_definition() {
        let mut words: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..3 {
            let longer: Vec<Vec<u8>> = words
                .iter()
                .filter(|w| w.len() == words.last().unwrap().len())
                .flat_map(|w| {
                    b"abc".iter().map(move |&c| {
                        let mut w = w.clone();
                        w.push(c);
                        w
                    })
                })
                .collect();
            words.extend(longer);
        }
        assert_eq!(words.len(), 1 + 3 + 9 + 27);
        for a in &words {
            for b in &words {
                assert_eq!(osa_distance(a, b), osa_by_definition(a, b), "{a:?} {b:?}");
            }
        }
        // Not the unrestricted Damerau distance: no edit after a swap.
        assert_eq!(osa_distance(b"ca", b"abc"), 3);
        for (a, b) in [("signers_file", "sigenrs_fiel"), ("max_stale", "mxa_stael")] {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            assert_eq!(osa_distance(a, b), osa_by_definition(a, b));
            assert_eq!(osa_distance(b, a), osa_by_definition(b, a));
        }
    }

    /// Two edits for a name of six characters or more, one for shorter
    /// ones; case and `-` for `_` are no edits at all.
    #[test]
    fn near_miss_limit_by_length() {
        assert!(near_miss("shrad", "shard"), "5 characters: one swap");
        assert!(!near_miss("shxyd", "shard"), "5 characters: two edits");
        assert!(!near_miss("sha", "shard"), "5 characters: two shorter");
        assert!(near_miss("shxyd_", "shard_"), "6 characters: two edits");
        assert!(
            near_miss("sha_d", "shard_"),
            "6 characters: one shorter, two edits"
        );
        assert!(!near_miss("sxxyd_", "shard_"), "6 characters: three edits");
        // two swaps and a `-`: two edits
        assert!(near_miss("Sigenrs-Fiel", "signers_file"));
    }
}
