//! `config.file` and `config.parse`: the configuration as keyward itself
//! loads it ([`Config::load`]), and, when keyward would refuse the file, its
//! text anyway (the other checks still need to know what is configured).

use std::path::Path;

use super::perms;
use crate::config::{Config, ConfigError};
use crate::report::{Check, Status};
use crate::safepath::Kind;

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
    match Config::load(path) {
        Ok(c) => {
            let parse = Check::ok("config.parse", describe(&c));
            (Some(c), vec![file, parse])
        }
        Err(e) if e.is_permission_denied() => {
            let skip = Check::skip("config.parse", format!("skipped: needs root ({e})"));
            (None, vec![file, skip])
        }
        // The file itself (a symlink, not a regular file…), not its text.
        Err(e @ ConfigError::Open(_)) => {
            let file = Check::fail(
                "config.file",
                format!("{e}: keyward refuses to run"),
                format!("make {p} a regular file owned by root, mode 0644"),
            );
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
