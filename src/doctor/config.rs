//! `config.file` and `config.parse`: the configuration as keyward itself
//! loads it ([`Config::load`]), and, when keyward would refuse the file, its
//! text anyway (the other checks still need to know what is configured).

use std::path::Path;

use super::perms;
use crate::config::{Config, ConfigError};
use crate::os::safepath::Kind;
use crate::report::{Check, Status};

/// Both checks; the config when its text parses (even if keyward refuses
/// the file: the rest of the report is still useful).
pub fn checks(path: &Path) -> (Option<Config>, Vec<Check>) {
    let p = path.display();
    let chain = match perms::stat_chain(path) {
        Ok(c) => c,
        Err(e) => {
            let missing = Check::fail(
                "config.file",
                format!("cannot use the config: {e}"),
                format!(
                    "create {p} (the package installs a documented default) or pass --config PATH"
                ),
            );
            return (
                None,
                vec![
                    missing,
                    Check::skip("config.parse", "skipped: no config file"),
                ],
            );
        }
    };
    let file = match perms::check_chain(&chain, Kind::File, &[0], "root") {
        Some(f) => Check::fail(
            "config.file",
            format!("{}: keyward refuses to run", f.found),
            f.fix,
        ),
        None => Check::ok(
            "config.file",
            format!("{p}: root-owned, not group/world-writable, parents too"),
        ),
    };
    if file.status != Status::Ok {
        let (config, parse) = parse_anyway(path);
        return (config, vec![file, parse]);
    }
    match crate::config::layers::read(path)
        .and_then(|s| crate::config::layers::merge(&s, path).map(|l| (s, l)))
    {
        Ok((sources, l)) => {
            let parse = Check::ok("config.parse", describe(&l.config));
            let layers = layers_check(&sources, &l.ignored);
            (Some(l.config), vec![file, parse, layers])
        }
        Err(e) if e.is_permission_denied() => {
            let skip = Check::skip("config.parse", format!("skipped: needs root ({e})"));
            (None, vec![file, skip])
        }
        // The file itself (a symlink, not a regular file…), not its text;
        // or a drop-in (or the .d directory), named.
        Err(e @ ConfigError::Open(_)) => {
            let bad = match &e {
                ConfigError::Open(crate::os::safepath::OpenError::Unsafe(u)) => u.path.clone(),
                ConfigError::Open(crate::os::safepath::OpenError::Io { path, .. }) => path.clone(),
                _ => path.to_owned(),
            };
            let fix = if bad == path {
                format!("make {p} a regular file owned by root, mode 0644")
            } else {
                format!(
                    "make {} owned by root and not group/world-writable (chown root:root, chmod go-w), a regular file or, for the .d directory, a real directory",
                    bad.display()
                )
            };
            let file = Check::fail("config.file", format!("{e}: keyward refuses to run"), fix);
            (
                None,
                vec![
                    file,
                    Check::skip("config.parse", "skipped: see config.file"),
                ],
            )
        }
        Err(e) => {
            let parse = Check::fail(
                "config.parse",
                e.to_string(),
                format!("fix the line named, then re-run keyward --config {p} doctor"),
            );
            (None, vec![file, parse])
        }
    }
}

/// `config.parse` for a file keyward refuses: its text, read without the
/// safe-path rule.
fn parse_anyway(path: &Path) -> (Option<Config>, Check) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("skipped: cannot read {}: {e}", path.display());
            return (None, Check::skip("config.parse", why));
        }
    };
    match Config::parse(&text, path) {
        Ok(c) => {
            let found = format!("{} (but see config.file)", describe(&c));
            (Some(c), Check::ok("config.parse", found))
        }
        Err(e) => (
            None,
            Check::fail("config.parse", e.to_string(), "fix the line named"),
        ),
    }
}

/// `config.layers`: which files make the configuration and which values
/// each one sets (the last one wins); a warning for keys ignored under a
/// newer `min_version`.
pub fn layers_check(
    sources: &[crate::config::layers::Source],
    ignored: &[crate::config::layers::Ignored],
) -> Check {
    let origins = crate::config::layers::origins(sources);
    let per_file: Vec<String> = sources
        .iter()
        .map(|s| {
            let keys: Vec<&str> = origins
                .iter()
                .filter(|(_, o)| o.path == s.path)
                .map(|(k, _)| k.as_str())
                .collect();
            let keys = if keys.is_empty() {
                "nothing in effect".to_string()
            } else {
                keys.join(", ")
            };
            format!("{} ({keys})", s.path.display())
        })
        .collect();
    let found = format!(
        "{} file(s), later values win: {}",
        sources.len(),
        per_file.join("; ")
    );
    if ignored.is_empty() {
        return Check::ok("config.layers", found);
    }
    let what: Vec<String> = ignored
        .iter()
        .map(|i| {
            format!(
                "{}:{} {} (min_version {})",
                i.path.display(),
                i.line,
                i.key,
                i.min_version
            )
        })
        .collect();
    Check::warn(
        "config.layers",
        format!(
            "{found}; ignored, unknown to keyward {}: {}",
            crate::config::layers::Version::current(),
            what.join(", ")
        ),
        "upgrade keyward to the min_version these files ask for (or remove the keys); `keyward check-config` lists them",
    )
}

fn describe(c: &Config) -> String {
    format!(
        "parses: {} mirror(s), {} [files] path(s), cache {} owned by {}{}",
        c.directory.urls.len(),
        c.files.paths.len(),
        c.cache.dir.display(),
        c.cache.owner,
        if c.directory.signed() {
            ", signatures required"
        } else {
            ""
        }
    )
}
