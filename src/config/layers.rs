//! The configuration's files and how they combine: `keyward.toml`, then
//! every `keyward.toml.d/*.toml` drop-in in lexical (byte) order; a later
//! file's value replaces an earlier one key by key (an array is replaced, not
//! appended). For `--config PATH` the drop-ins are `PATH.d/*.toml`.
//!
//! - Every file and the `.d` directory must be root-owned and not
//!   group/world-writable (the `.d` directory's parents are the main file's,
//!   already checked); anything else fails closed, naming the file.
//! - Version skew: a file whose top-level `min_version` is newer than this
//!   keyward was written for a later version. Keys (and sections) this
//!   version does not know are then ignored, not refused: pushing a config
//!   for the next version before the package must not lock a fleet out.
//!   Everything this version knows is still validated strictly, and a file
//!   without `min_version` (or with an older one) keeps the strict rule, so
//!   a typo is still an error (`keyward check-config` shows both).
//! - A near-miss stays an error even under `min_version`: an unknown key
//!   within [`near_miss`]'s edit distance of a key its table knows (or an
//!   unknown section close to a known one) is refused, naming the key it
//!   resembles. `signer_file` for `signers_file` must not switch
//!   signatures off.
//! - While a key is ignored, every decision record carries a short
//!   `config_warning` ([`warning`]): nobody reads check-config on a
//!   login, but the log is read.
//! - Line numbers survive: ignored keys are blanked in place (spaces, the
//!   newlines kept) and the rest goes through the same typed parse.
//!
//! [`read`] does the I/O; [`relax`], [`merge`] and [`origins`] are pure.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::config::{line_of, section_keys, Config, ConfigError, MAX_CONFIG};
use crate::os::safepath::{self, Kind, OpenError, Problem, Unsafe};

/// One file of the configuration, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// The drop-in directory of the configuration file `main`: `main` + `.d`.
pub fn drop_in_dir(main: &Path) -> PathBuf {
    let mut s = main.as_os_str().to_owned();
    s.push(".d");
    PathBuf::from(s)
}

/// Reads the configuration file and its drop-ins; the first unsafe or
/// unreadable file is the error.
pub fn read(main: &Path) -> Result<Vec<Source>, ConfigError> {
    let mut out = vec![read_main(main)?];
    for f in drop_in_files(main)? {
        out.push(read_drop_in(&f)?);
    }
    Ok(out)
}

/// Like [`read`], but every problem (for `check-config`): the files that
/// could be read and the errors of the others.
pub fn read_all(main: &Path) -> (Vec<Source>, Vec<ConfigError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    match read_main(main) {
        Ok(s) => sources.push(s),
        Err(e) => errors.push(e),
    }
    match drop_in_files(main) {
        Ok(files) => {
            for f in files {
                match read_drop_in(&f) {
                    Ok(s) => sources.push(s),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    (sources, errors)
}

fn read_main(path: &Path) -> Result<Source, ConfigError> {
    let file = safepath::open_checked(path, &[0], None).map_err(ConfigError::Open)?;
    read_text(file, path)
}

/// A drop-in: the file itself is checked on its descriptor; its parents are
/// the `.d` directory (checked by [`drop_in_files`]) and the main file's.
pub fn read_drop_in(path: &Path) -> Result<Source, ConfigError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            ConfigError::Open(if e.raw_os_error() == Some(libc::ELOOP) {
                OpenError::Unsafe(Unsafe {
                    path: path.to_owned(),
                    problem: Problem::Symlink,
                })
            } else {
                OpenError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            })
        })?;
    let meta = file.metadata().map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    safepath::check(path, Kind::File, meta.uid(), meta.mode(), &[0])
        .map_err(|u| ConfigError::Open(OpenError::Unsafe(u)))?;
    read_text(file, path)
}

fn read_text(file: std::fs::File, path: &Path) -> Result<Source, ConfigError> {
    // Room for the packaged file (every setting documented, ~7 KiB) up
    // front: two read(2)s, where an empty String grows through a dozen.
    let mut text = String::with_capacity(READ_HINT);
    file.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(Source {
        path: path.to_owned(),
        text,
    })
}

/// Initial buffer for a configuration file.
const READ_HINT: usize = 16 * 1024;

/// The drop-ins of `main`, in the order they apply. No `.d` directory: none
/// (one failed `lstat`). The directory must be a real directory, owned by
/// root, not group/world-writable; only `*.toml` names not starting with
/// `.` count (editor and package-manager leftovers such as `x.toml.rpmsave`
/// or `.x.toml.swp` are not read).
pub fn drop_in_files(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = drop_in_dir(main);
    let unsafe_dir = |problem| {
        ConfigError::Open(OpenError::Unsafe(Unsafe {
            path: dir.clone(),
            problem,
        }))
    };
    let io = |source| {
        ConfigError::Open(OpenError::Io {
            path: dir.clone(),
            source,
        })
    };
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(Problem::Symlink));
    }
    safepath::check(&dir, Kind::Dir, meta.uid(), meta.mode(), &[0])
        .map_err(|u| ConfigError::Open(OpenError::Unsafe(u)))?;
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map_err(io)?
        .filter_map(|e| {
            use std::os::unix::ffi::OsStringExt;
            let name = e.ok()?.file_name().into_vec();
            is_drop_in_name(&name).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            use std::os::unix::ffi::OsStringExt;
            dir.join(std::ffi::OsString::from_vec(n))
        })
        .collect())
}

/// `*.toml`, not hidden.
pub fn is_drop_in_name(name: &[u8]) -> bool {
    name.len() > 5 && name.ends_with(b".toml") && name[0] != b'.'
}

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
    let mut ignore = |key: String, like: Option<&str>, ranges: Vec<std::ops::Range<usize>>| {
        let Some(first) = ranges.iter().map(|r| r.start).min() else {
            return;
        };
        let line = line_of(text, first);
        match like {
            Some(known) => near_misses.push(NearMiss {
                path: path.to_owned(),
                line,
                key,
                known: known.to_owned(),
            }),
            None => {
                ignored.push(Ignored {
                    path: path.to_owned(),
                    line,
                    key,
                    min_version: wanted,
                });
                blank.extend(ranges);
            }
        }
    };
    let root = doc.as_table();
    let top = fields_of::<Config>();
    for (k, item) in root.iter() {
        let key_span = root.key(k).and_then(|k| k.span());
        match (section_keys(k), item) {
            (Some(known), toml_edit::Item::Table(t)) => {
                for (name, v) in t.iter().filter(|(n, _)| !known.contains(n)) {
                    let ks = t.key(name).and_then(|k| k.span());
                    let like = resembles(name, known).map(|n| format!("{k}.{n}"));
                    ignore(format!("{k}.{name}"), like.as_deref(), ranges(text, v, ks));
                }
            }
            _ if top.contains(&k) => {}
            // An unknown section or top-level key, and all of it.
            _ => ignore(
                k.to_owned(),
                resembles(k, top),
                ranges(text, item, key_span),
            ),
        }
    }
    let mut bytes = text.as_bytes().to_vec();
    for r in &blank {
        for b in &mut bytes[r.clone()] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes were written over whole UTF-8 sequences' ranges.
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
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

/// The merged configuration and what went into it.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    /// Every file read, in the order applied.
    pub files: Vec<PathBuf>,
    /// Keys ignored under the `min_version` rule.
    pub ignored: Vec<Ignored>,
}

/// Combines the files (later values win) into a validated [`Config`].
/// One file is parsed directly; several are parsed into tables, merged, and
/// typed once. Errors name the file and line that caused them (a rule
/// between values names `main`).
pub fn merge(sources: &[Source], main: &Path) -> Result<Layered, ConfigError> {
    let mut relaxed = Vec::with_capacity(sources.len());
    let mut ignored = Vec::new();
    for s in sources {
        let r = relax(&s.text, &s.path)?.checked()?;
        ignored.extend(r.ignored.iter().cloned());
        relaxed.push((s, r));
    }
    let files = sources.iter().map(|s| s.path.clone()).collect();
    let config = match relaxed.as_slice() {
        [] => Config::parse_strict("", main)?,
        [(s, r)] => Config::parse_strict(&r.text, &s.path)?,
        _ => {
            let mut merged = toml::Table::new();
            for (s, r) in &relaxed {
                let table: toml::Table =
                    toml::from_str(&r.text).map_err(|_| locate(&r.text, &s.path))?;
                merge_tables(&mut merged, table);
            }
            match merged.try_into::<Config>() {
                Ok(c) => c,
                Err(e) => {
                    // Find the file and line: the first file that is wrong
                    // on its own (every key is checked per value).
                    for (s, r) in &relaxed {
                        Config::parse_strict(&r.text, &s.path)?;
                    }
                    return Err(ConfigError::Invalid {
                        path: main.to_owned(),
                        message: e.message().trim().replace('\n', " "),
                        keys: Vec::new(),
                    });
                }
            }
        }
    };
    config.validate(main)?;
    let config = Config {
        ignored: ignored.clone(),
        ..config
    };
    Ok(Layered {
        config,
        files,
        ignored,
    })
}

/// The error of one file's text, with its line.
fn locate(text: &str, path: &Path) -> ConfigError {
    match Config::parse_strict(text, path) {
        Err(e) => e,
        Ok(_) => ConfigError::Syntax {
            path: path.to_owned(),
            line: 0,
            message: "not a TOML table".into(),
        },
    }
}

/// `from` over `into`: tables merge key by key, anything else is replaced.
pub fn merge_tables(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_tables(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Where a value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// For each `section.key` some file sets: the file and line whose value is
/// in effect (the last one). For doctor, explain and check-config.
pub fn origins(sources: &[Source]) -> BTreeMap<String, Origin> {
    let mut out = BTreeMap::new();
    for s in sources {
        let Ok(r) = relax(&s.text, &s.path) else {
            continue;
        };
        let Ok(doc) = toml_edit::ImDocument::parse(r.text.as_ref()) else {
            continue;
        };
        let mut set = |key: String, span: Option<std::ops::Range<usize>>| {
            if let Some(sp) = span {
                out.insert(
                    key,
                    Origin {
                        path: s.path.clone(),
                        line: line_of(&r.text, sp.start),
                    },
                );
            }
        };
        for (k, item) in doc.as_table().iter() {
            match item {
                toml_edit::Item::Table(t) => {
                    for (name, _) in t.iter() {
                        set(format!("{k}.{name}"), t.key(name).and_then(|k| k.span()));
                    }
                }
                _ => set(k.to_owned(), doc.as_table().key(k).and_then(|k| k.span())),
            }
        }
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

/// The field names a derived `Deserialize` struct accepts (what serde
/// passes to `deserialize_struct`), so the schema is never written twice.
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldGrabber(&mut fields));
    fields
}

struct FieldGrabber<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldGrabber<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("fields taken"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[directory]\nurls = [\"https://keys.example.com/{user}.keys\"]\n";

    fn src(path: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    fn layered(files: &[(&str, &str)]) -> Result<Layered, ConfigError> {
        let s: Vec<Source> = files.iter().map(|(p, t)| src(p, t)).collect();
        merge(&s, Path::new(files[0].0))
    }

    #[test]
    fn later_files_win_key_by_key() {
        let l = layered(&[
            (
                "/k.toml",
                &format!("{MIN}timeout = \"3s\"\n[cache]\nttl = \"1m\"\n"),
            ),
            ("/k.toml.d/10-a.toml", "[cache]\nttl = \"2m\"\n"),
            (
                "/k.toml.d/20-b.toml",
                "[directory]\nurls = [\"https://b/{user}\"]\n",
            ),
        ])
        .unwrap();
        let c = &l.config;
        assert_eq!(c.cache.ttl.0.as_secs(), 120);
        assert_eq!(
            c.directory.timeout.0.as_secs(),
            3,
            "kept from the main file"
        );
        // an array is replaced, not appended
        assert_eq!(c.directory.urls.len(), 1);
        assert_eq!(c.directory.urls[0].as_str(), "https://b/{user}");
        assert_eq!(l.files.len(), 3);
    }

    #[test]
    fn a_source_may_come_from_a_drop_in_only() {
        let l = layered(&[("/k.toml", "# all commented\n"), ("/k.toml.d/a.toml", MIN)]).unwrap();
        assert_eq!(l.config.directory.urls.len(), 1);
        let e = layered(&[("/k.toml", "# all commented\n")]).unwrap_err();
        assert!(matches!(e, ConfigError::NoKeySource { .. }), "{e}");
    }

    #[test]
    fn errors_name_the_drop_in_and_line() {
        let e = layered(&[
            ("/k.toml", MIN),
            ("/k.toml.d/a.toml", "[cache]\n\nttl = \"soon\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/k.toml.d/a.toml line 3:"), "{e}");
        let e = layered(&[
            ("/k.toml", MIN),
            ("/k.toml.d/b.toml", "[cache]\nmax_stael = \"1d\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/k.toml.d/b.toml line 2:") && e.contains("max_stael"),
            "{e}"
        );
        let e = layered(&[("/k.toml", MIN), ("/k.toml.d/c.toml", "[cache\n")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/k.toml.d/c.toml line 1:"), "{e}");
        // a rule between values of two files: the keys are named
        let e = layered(&[
            ("/k.toml", &format!("{MIN}[cache]\nmax_stale = \"10m\"\n")),
            ("/k.toml.d/d.toml", "[cache]\nttl = \"1h\"\n"),
        ])
        .unwrap_err();
        match e {
            ConfigError::Invalid { keys, .. } => assert_eq!(keys, ["cache.max_stale", "cache.ttl"]),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn min_version_newer_ignores_only_unknown_keys() {
        let text = format!(
            "min_version = \"99.0\"\n{MIN}shard_count = 4\ntimeout = \"4s\"\n\n[future]\na = 1\nb = [\n  2,\n]\n\n[cache]\nttl = \"1m\"\nnew_thing = true\n"
        );
        let r = relax(&text, Path::new("/k.toml")).unwrap();
        let keys: Vec<(&str, usize)> = r.ignored.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert_eq!(
            keys,
            [
                ("directory.shard_count", 4),
                ("future", 7),
                ("cache.new_thing", 15)
            ]
        );
        assert_eq!(r.text.lines().count(), text.lines().count(), "lines kept");
        let c = Config::parse(&text, Path::new("/k.toml")).unwrap();
        assert_eq!(c.directory.timeout.0.as_secs(), 4);
        assert_eq!(c.cache.ttl.0.as_secs(), 60);
        // what this version knows is still checked, on its own line
        let bad = format!("min_version = \"99.0\"\n{MIN}timeout = \"soon\"\n");
        let e = Config::parse(&bad, Path::new("/k.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn min_version_current_or_older_stays_strict() {
        for v in ["0.1", "0.0.9", env!("CARGO_PKG_VERSION")] {
            let text = format!("min_version = \"{v}\"\n{MIN}[cache]\nmax_stael = \"1d\"\n");
            let e = Config::parse(&text, Path::new("/k.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 5") && e.contains("max_stael"), "{v}: {e}");
        }
        // without min_version: strict, as ever
        let e = Config::parse(&format!("{MIN}shard_count = 4\n"), Path::new("/k"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("shard_count"), "{e}");
        // a bad min_version is an error on its line
        for bad in [
            "min_version = 2",
            "min_version = \"two\"",
            "min_version = \"1.2.3.4\"",
        ] {
            let e = Config::parse(&format!("{bad}\n{MIN}"), Path::new("/k"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("line 1") && e.contains("min_version"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn min_version_applies_per_file() {
        // the newer drop-in is lenient, the main file stays strict
        let l = layered(&[
            ("/k.toml", MIN),
            (
                "/k.toml.d/90-next.toml",
                "min_version = \"9.9.9\"\n[cache]\nttl = \"1m\"\nfresh = 1\n",
            ),
        ])
        .unwrap();
        assert_eq!(l.config.cache.ttl.0.as_secs(), 60);
        assert_eq!(l.ignored.len(), 1);
        assert_eq!(
            (l.ignored[0].key.as_str(), l.ignored[0].line),
            ("cache.fresh", 4)
        );
        assert!(layered(&[
            ("/k.toml", &format!("{MIN}fresh = 1\n")),
            ("/k.toml.d/90-next.toml", "min_version = \"9.9.9\"\n"),
        ])
        .is_err());
    }

    #[test]
    fn near_misses_of_known_keys_stay_errors_under_min_version() {
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A k";
        for (typo, known) in [
            ("signer_file", "directory.signers_file"),
            ("signersfile", "directory.signers_file"),
            ("Signers_File", "directory.signers_file"),
            ("signers-file", "directory.signers_file"),
            ("sigenrs_file", "directory.signers_file"),
            ("signres", "directory.signers"),
            ("url", "directory.urls"),
        ] {
            let text = format!(
                "min_version = \"99.0\"\n{MIN}{typo} = \"/etc/keyward/signers\"\nfuture = 1\n"
            );
            let r = relax(&text, Path::new("/k.toml")).unwrap();
            let keys: Vec<(&str, &str, usize)> = r
                .near_misses
                .iter()
                .map(|n| (n.key.as_str(), n.known.as_str(), n.line))
                .collect();
            let key = format!("directory.{typo}");
            assert_eq!(keys, [(key.as_str(), known, 4)], "{typo}");
            // the unrelated new key is still only ignored
            assert_eq!(r.ignored.len(), 1, "{typo}");
            assert_eq!(r.ignored[0].key, "directory.future");
            let e = Config::parse(&text, Path::new("/k.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/k.toml line 4:") && e.contains(&key) && e.contains(known),
                "{typo}: {e}"
            );
        }
        // a misspelled section: all it holds would be ignored
        let text = format!("min_version = \"99.0\"\n{MIN}[direcotry]\nsigners = [\"{ed}\"]\n");
        let e = Config::parse(&text, Path::new("/k.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("direcotry") && e.contains("directory"),
            "{e}"
        );
        // in a drop-in, through the merge
        let e = layered(&[
            ("/k.toml", MIN),
            (
                "/k.toml.d/90-next.toml",
                "min_version = \"9.9.9\"\n[directory]\nsigner_file = \"/s\"\n",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/k.toml.d/90-next.toml line 3:") && e.contains("signers_file"),
            "{e}"
        );
    }

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

    #[test]
    fn dotted_unknown_keys_are_ignored_like_any_other() {
        let text = format!(
            "min_version = \"99.0\"\nfuture.x.y = \"z\"\ncache.future = 1\ncache . spaced = 2\ncache.ttl = \"1m\"\n{MIN}timeout = \"4s\"\n[policy]\nnext.level = true\n"
        );
        let r = relax(&text, Path::new("/k.toml")).unwrap();
        let keys: Vec<(&str, usize)> = r.ignored.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert_eq!(
            keys,
            [
                ("future", 2),
                ("cache.future", 3),
                ("cache.spaced", 4),
                ("policy.next", 10)
            ]
        );
        assert_eq!(r.text.lines().count(), text.lines().count(), "lines kept");
        let c = Config::parse(&text, Path::new("/k.toml")).unwrap();
        assert_eq!(c.directory.timeout.0.as_secs(), 4);
        assert_eq!(c.cache.ttl.0.as_secs(), 60);
        assert_eq!(c.directory.urls.len(), 1);
        assert_eq!(c.ignored.len(), 4);
        // a known section given only by dotted keys keeps its known ones
        let text = "min_version = \"99.0\"\ndirectory.urls = [\"https://k/{user}.keys\"]\ndirectory.future = 1\n";
        let c = Config::parse(text, Path::new("/k.toml")).unwrap();
        assert_eq!(c.directory.urls.len(), 1);
        // without min_version it stays an error
        assert!(Config::parse(&format!("directory.future = 1\n{MIN}"), Path::new("/k")).is_err());
    }

    #[test]
    fn ignored_keys_make_a_short_warning() {
        let c = Config::parse(MIN, Path::new("/k.toml")).unwrap();
        assert_eq!(c.warning(), None);
        let one = format!("min_version = \"0.99\"\n{MIN}foo = 1\n");
        let c = Config::parse(&one, Path::new("/k.toml")).unwrap();
        assert_eq!(
            c.warning().as_deref(),
            Some("ignored unknown key directory.foo (min_version 0.99.0)")
        );
        let many = format!("min_version = \"1.2\"\n{MIN}a1 = 1\nb22 = 2\nc333 = 3\nd4444 = 4\n");
        let c = Config::parse(&many, Path::new("/k.toml")).unwrap();
        assert_eq!(
            c.warning().as_deref(),
            Some("ignored unknown keys directory.a1, directory.b22, directory.c333 and 1 more (min_version 1.2.0)")
        );
        // through the layers: the merged config carries what each file ignored
        let l = layered(&[
            ("/k.toml", MIN),
            (
                "/k.toml.d/90-next.toml",
                "min_version = \"9.9.9\"\n[cache]\nfresh = 1\n",
            ),
        ])
        .unwrap();
        assert_eq!(
            l.config.warning().as_deref(),
            Some("ignored unknown key cache.fresh (min_version 9.9.9)")
        );
        assert!(!fields_of::<Config>().contains(&"ignored"), "not a setting");
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse("1"), Some(Version(1, 0, 0)));
        assert_eq!(Version::parse("1.2"), Some(Version(1, 2, 0)));
        assert_eq!(Version::parse("1.2.3"), Some(Version(1, 2, 3)));
        for bad in ["", "1.", "a", "1.2.3.4", "-1", "1.2-rc1", "1..2"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version(0, 10, 0) > Version(0, 9, 9));
        assert_eq!(Version::current().to_string(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn origins_are_the_last_file_setting_a_key() {
        let s = [
            src(
                "/k.toml",
                &format!("{MIN}[cache]\nttl = \"1m\"\nmax_stale = \"1d\"\n"),
            ),
            src("/k.toml.d/a.toml", "\n[cache]\nttl = \"2m\"\n"),
        ];
        let o = origins(&s);
        assert_eq!(o["cache.ttl"].to_string(), "/k.toml.d/a.toml:3");
        assert_eq!(o["cache.max_stale"].to_string(), "/k.toml:5");
        assert_eq!(o["directory.urls"].to_string(), "/k.toml:2");
    }

    #[test]
    fn drop_in_names() {
        assert!(is_drop_in_name(b"50-site.toml"));
        for n in [
            &b".x.toml"[..],
            b"x.toml.rpmsave",
            b"x.toml.dpkg-dist",
            b".toml",
            b"README",
            b"x.toml~",
        ] {
            assert!(!is_drop_in_name(n), "{}", String::from_utf8_lossy(n));
        }
        assert_eq!(
            drop_in_dir(Path::new("/etc/keyward/keyward.toml")),
            Path::new("/etc/keyward/keyward.toml.d")
        );
    }

    #[test]
    fn field_names_come_from_serde() {
        assert!(fields_of::<crate::config::CacheConfig>().contains(&"max_stale"));
        assert!(fields_of::<Config>().contains(&"min_version"));
    }
}
