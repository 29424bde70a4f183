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

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

pub use crate::config::skew::{near_miss, relax, warning, Ignored, NearMiss, Relaxed, Version};
use crate::config::{line_of, Config, ConfigError, MAX_CONFIG};
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
        for bad in [
            "", "1.", "a", "1.2.3.4", "-1", "1.2-rc1", "1..2", "+1", "1.+2",
        ] {
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
