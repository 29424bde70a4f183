//! `keyward check-config [--config PATH] [--drop-in FILE]`: everything
//! keyward would refuse in the configuration, each problem with its file
//! and line, without network and without a log line. Exit 0 when keyward
//! would run with it, 1 otherwise. For config management:
//!
//! - `validate: keyward check-config --config %s` (Ansible, a main file);
//! - `validate: keyward check-config --drop-in %s` (a drop-in, checked as
//!   the last drop-in of the installed configuration);
//! - before a roll-out, on a host of each version in the fleet: a file for
//!   a newer keyward (`min_version`) passes with warnings for what this
//!   version ignores (each key with its file:line), a typo fails: also a
//!   near-miss of a known key in such a file (`signer_file`), named with
//!   the key it resembles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::layers::{self, Origin};
use crate::config::{Config, ConfigError};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Option<PathBuf>,
    /// 0: the file as a whole.
    pub line: usize,
    pub message: String,
    /// A warning does not fail the check.
    pub warning: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.path, self.line) {
            (Some(p), 0) => write!(f, "{}: ", p.display())?,
            (Some(p), l) => write!(f, "{}:{l}: ", p.display())?,
            (None, _) => {}
        }
        let kind = if self.warning { "warning" } else { "error" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl Problem {
    fn error(path: Option<&Path>, line: usize, message: impl Into<String>) -> Problem {
        Problem {
            path: path.map(Path::to_owned),
            line,
            message: message.into(),
            warning: false,
        }
    }

    fn at(origin: Option<&Origin>, fallback: &Path, message: impl Into<String>) -> Problem {
        match origin {
            Some(o) => Problem::error(Some(&o.path), o.line, message),
            None => Problem::error(Some(fallback), 0, message),
        }
    }
}

/// What was checked and what was found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub files: Vec<PathBuf>,
    pub problems: Vec<Problem>,
}

impl Outcome {
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| !p.warning).count()
    }
}

/// A [`ConfigError`] as a problem at its file and line.
fn problem_of(e: &ConfigError) -> Problem {
    match e {
        ConfigError::Syntax {
            path,
            line,
            message,
        } => Problem::error(Some(path), *line, message.clone()),
        ConfigError::Open(crate::os::safepath::OpenError::Unsafe(u)) => Problem::error(
            Some(&u.path),
            0,
            format!("keyward refuses this file: {u}"),
        ),
        ConfigError::Open(crate::os::safepath::OpenError::Io { path, source }) => {
            Problem::error(Some(path), 0, source.to_string())
        }
        ConfigError::Read { path, source } => Problem::error(Some(path), 0, source.to_string()),
        ConfigError::TooLarge { path } => Problem::error(Some(path), 0, "larger than 1 MiB"),
        ConfigError::Invalid { path, message, .. } => {
            Problem::error(Some(path), 0, message.clone())
        }
        ConfigError::NoKeySource { path } => Problem::error(
            Some(path),
            0,
            "no key source: set [directory] urls, [files] paths and/or a [[command]] (until then keyward fails closed)",
        ),
    }
}

/// Checks the configuration at `main` (its drop-ins, and `extra` as the
/// last drop-in when given).
pub fn check(main: &Path, extra: Option<&Path>) -> Outcome {
    let (mut sources, errors) = layers::read_all(main);
    let mut out = Outcome::default();
    out.problems.extend(errors.iter().map(problem_of));
    if let Some(x) = extra {
        match layers::read_drop_in(x) {
            Ok(s) => sources.push(s),
            Err(e) => out.problems.push(problem_of(&e)),
        }
    }
    out.files = sources.iter().map(|s| s.path.clone()).collect();
    // Each file on its own: syntax, unknown keys, values (every file, not
    // only the first with an error).
    for s in &sources {
        match layers::relax(&s.text, &s.path) {
            Ok(r) => {
                out.problems.extend(r.ignored.iter().map(|i| Problem {
                    path: Some(i.path.clone()),
                    line: i.line,
                    message: format!(
                        "{} is not known to keyward {}: ignored (this file declares min_version {})",
                        i.key,
                        layers::Version::current(),
                        i.min_version
                    ),
                    warning: true,
                }));
                out.problems
                    .extend(r.near_misses.iter().map(|n| problem_of(&n.error())));
                // The typed parse would repeat a near-miss as a syntax error.
                if r.near_misses.is_empty() {
                    if let Err(e) = Config::parse_strict(&r.text, &s.path) {
                        out.problems.push(problem_of(&e));
                    }
                }
            }
            Err(e) => out.problems.push(problem_of(&e)),
        }
    }
    if out.errors() > 0 {
        return out;
    }
    let origins = layers::origins(&sources);
    match layers::merge(&sources, main) {
        Ok(l) => out.problems.extend(deep_checks(&l.config, &origins, main)),
        Err(ConfigError::Invalid {
            path,
            message,
            keys,
        }) => {
            let set: Vec<String> = keys
                .iter()
                .filter_map(|k| origins.get(*k).map(|o| format!("{k} set at {o}")))
                .collect();
            let at = keys.iter().find_map(|k| origins.get(*k));
            let msg = if set.is_empty() {
                message
            } else {
                format!("{message} ({})", set.join(", "))
            };
            out.problems.push(Problem::at(at, &path, msg));
        }
        Err(e) => out.problems.push(problem_of(&e)),
    }
    out
}

/// What the typed parse cannot see: files the config names, the proxy.
/// No network.
fn deep_checks(c: &Config, origins: &BTreeMap<String, Origin>, main: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    let at = |key: &str, msg: String| Problem::at(origins.get(key), main, msg);
    if c.directory.signed() {
        if let Err(e) = c.directory.load_signers() {
            let key = if c.directory.signers_file.is_some() {
                "directory.signers_file"
            } else {
                "directory.signers"
            };
            out.push(at(key, e));
        }
    }
    if let Some(ca) = &c.directory.ca_file {
        if let Err(e) = crate::directory::load_ca_file(ca) {
            out.push(at("directory.ca_file", e));
        }
    }
    if let Some(p) = &c.directory.proxy {
        if let Err(e) = ureq::Proxy::new(p) {
            out.push(at("directory.proxy", format!("proxy {p:?}: {e}")));
        }
    }
    if let Some(m) = &c.sync.metrics_file {
        if m.parent().is_some_and(|d| !d.is_dir()) {
            let mut w = at(
                "sync.metrics_file",
                format!(
                    "the directory of metrics_file {} does not exist: sync cannot write it",
                    m.display()
                ),
            );
            w.warning = true;
            out.push(w);
        }
    }
    if let Some(k) = &c.revocation.sshd_krl {
        if k.parent().is_some_and(|d| !d.is_dir()) {
            let mut w = at(
                "revocation.sshd_krl",
                format!(
                    "the directory of sshd_krl {} does not exist: sync cannot install the KRL there",
                    k.display()
                ),
            );
            w.warning = true;
            out.push(w);
        }
    }
    if !c.cache.dir.is_dir() {
        let mut w = at(
            "cache.dir",
            format!(
                "cache directory {} does not exist (the package creates /var/cache/keyward)",
                c.cache.dir.display()
            ),
        );
        w.warning = true;
        out.push(w);
    }
    out
}

/// Runs the command: prints every problem, then one summary line.
pub fn run(main: &Path, extra: Option<&Path>, quiet: bool) -> i32 {
    let out = check(main, extra);
    for p in &out.problems {
        eprintln!("{p}");
    }
    let errors = out.errors();
    let warnings = out.problems.len() - errors;
    let files: Vec<String> = out.files.iter().map(|f| f.display().to_string()).collect();
    if errors > 0 {
        eprintln!(
            "keyward check-config: {errors} error(s), {warnings} warning(s) in {}",
            if files.is_empty() {
                main.display().to_string()
            } else {
                files.join(", ")
            }
        );
        return 1;
    }
    if !quiet {
        println!(
            "keyward check-config: ok ({} file(s): {}){}",
            files.len(),
            files.join(", "),
            if warnings > 0 {
                format!(", {warnings} warning(s)")
            } else {
                String::new()
            }
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_print_like_a_compiler() {
        let p = Problem::error(Some(Path::new("/etc/k.toml")), 7, "bad");
        assert_eq!(p.to_string(), "/etc/k.toml:7: error: bad");
        let w = Problem {
            warning: true,
            line: 0,
            ..p
        };
        assert_eq!(w.to_string(), "/etc/k.toml: warning: bad");
    }

    #[test]
    fn config_errors_keep_file_and_line() {
        let e = ConfigError::Syntax {
            path: "/a.toml".into(),
            line: 3,
            message: "unknown field `x`".into(),
        };
        assert_eq!(
            problem_of(&e).to_string(),
            "/a.toml:3: error: unknown field `x`"
        );
    }
}
