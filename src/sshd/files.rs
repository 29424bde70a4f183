//! sshd's configuration files as sshd reads them (Include globs, Match
//! blocks, `keyword value` or `keyword=value`), so doctor can say which
//! file and line set a directive.

use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// The sshd wiring: OpenSSH before 9.4 ignores AuthorizedPrincipalsCommand
// when AuthorizedKeysCommand came first (servconf.c tested
// `authorized_keys_command == NULL` where it meant the principals one).
// `sshd -T` then shows `authorizedprincipalscommand none`; to say which
// lines to move, doctor reads the configuration files as sshd does.

/// Where a directive is: file and line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `Keyword value` line of an sshd configuration, in the order sshd
/// reads it (Includes expanded in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub loc: Loc,
    /// Lower case.
    pub keyword: String,
    pub value: String,
    /// Inside a `Match` block.
    pub in_match: bool,
}

/// Splits one configuration line into (lower-case keyword, value), as
/// sshd does: blank lines and `#` comments skipped, `Keyword=value` allowed.
pub fn split_directive(line: &str) -> Option<(String, String)> {
    let l = line.trim_matches([' ', '\t', '\r']);
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let end = l.find([' ', '\t', '=']).unwrap_or(l.len());
    let keyword = l[..end].to_ascii_lowercase();
    let rest = l[end..].trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((keyword, rest.trim_start_matches([' ', '\t']).to_owned()))
}

/// Reads `path` and the files it includes, in sshd's order. Unreadable
/// files are reported in the second list and skipped.
pub fn read_sshd_config(path: &Path) -> (Vec<Directive>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    read_into(path, false, 0, &mut out, &mut errors);
    (out, errors)
}

fn read_into(
    path: &Path,
    in_match: bool,
    depth: usize,
    out: &mut Vec<Directive>,
    errors: &mut Vec<String>,
) {
    if depth > 16 {
        errors.push(format!("{}: Include nested too deeply", path.display()));
        return;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{}: {e}", path.display()));
            return;
        }
    };
    let mut in_match = in_match;
    for (i, line) in text.lines().enumerate() {
        let Some((keyword, value)) = split_directive(line) else {
            continue;
        };
        if keyword == "match" {
            in_match = true;
        }
        if keyword == "include" {
            for pattern in value.split_whitespace() {
                for file in include_files(pattern) {
                    read_into(&file, in_match, depth + 1, out, errors);
                }
            }
            continue;
        }
        out.push(Directive {
            loc: Loc {
                file: path.to_owned(),
                line: i + 1,
            },
            keyword,
            value,
            in_match,
        });
    }
}

/// The files an `Include` pattern names, in lexical order; relative
/// patterns are under /etc/ssh. Wildcards only in the last component
/// (the form every distribution ships).
fn include_files(pattern: &str) -> Vec<PathBuf> {
    let full = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if !name.contains(['*', '?', '[']) {
        return vec![full];
    }
    let dir = full.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && fnmatch(&name, &n)
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// fnmatch(3) without flags, for `*`, `?` and `[...]` in one component
/// (what glob(3) applies to Include patterns; [`glob`] is sshd's own
/// match_pattern, without classes).
fn fnmatch(p: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return s.first() == Some(&'[') && go(&p[1..], &s[1..]);
                };
                let (neg, set) = match p[1] {
                    '!' | '^' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                let Some(&c) = s.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &s[1..])
            }
            Some(&c) => s.first() == Some(&c) && go(&p[1..], &s[1..]),
        }
    }
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    go(&p, &s)
}

/// The pre-9.4 trap in a configuration, global scope only: the first
/// AuthorizedPrincipalsCommand and the AuthorizedKeysCommand read before
/// it, when there is one.
pub fn order_trap(directives: &[Directive]) -> Option<(&Directive, &Directive)> {
    let global = || directives.iter().filter(|d| !d.in_match);
    let principals = global().find(|d| d.keyword == "authorizedprincipalscommand")?;
    let keys = global()
        .take_while(|d| !std::ptr::eq(*d, principals))
        .find(|d| d.keyword == "authorizedkeyscommand")?;
    Some((principals, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(files: &[(&str, &str)]) -> Vec<Directive> {
        let mut out = Vec::new();
        for (name, text) in files {
            let mut in_match = false;
            for (i, l) in text.lines().enumerate() {
                if let Some((keyword, value)) = split_directive(l) {
                    in_match |= keyword == "match";
                    out.push(Directive {
                        loc: Loc {
                            file: PathBuf::from(name),
                            line: i + 1,
                        },
                        keyword,
                        value,
                        in_match,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn directives_as_sshd_splits_them() {
        assert_eq!(split_directive("  # x"), None);
        assert_eq!(split_directive(""), None);
        assert_eq!(
            split_directive("AuthorizedKeysCommand /usr/sbin/keyward keys %u %f"),
            Some((
                "authorizedkeyscommand".into(),
                "/usr/sbin/keyward keys %u %f".into()
            ))
        );
        assert_eq!(
            split_directive("\tUsePAM=yes"),
            Some(("usepam".into(), "yes".into()))
        );
        assert_eq!(
            split_directive("Port = 22"),
            Some(("port".into(), "22".into()))
        );
    }

    #[test]
    fn the_pre_9_4_order_trap() {
        let apc = "AuthorizedPrincipalsCommand /usr/sbin/keyward principals %u";
        let akc = "AuthorizedKeysCommand /usr/sbin/keyward keys %u %f";
        let bad = directives(&[
            ("/etc/ssh/sshd_config", "Port 22\n"),
            ("a.conf", &format!("{akc}\n{apc}\n")),
        ]);
        let (p, k) = order_trap(&bad).unwrap();
        assert_eq!(
            (p.loc.to_string(), k.loc.to_string()),
            ("a.conf:2".into(), "a.conf:1".into())
        );
        // Across files: a keys drop-in read before the principals one.
        let split = directives(&[("10-keys.conf", akc), ("20-certs.conf", apc)]);
        assert!(order_trap(&split).is_some());
        let good = directives(&[("k.conf", &format!("{apc}\n{akc}\n"))]);
        assert_eq!(order_trap(&good), None);
        let none = directives(&[("k.conf", akc)]);
        assert_eq!(order_trap(&none), None);
        let in_match = directives(&[("k.conf", &format!("{akc}\nMatch User x\n{apc}\n"))]);
        assert_eq!(
            order_trap(&in_match),
            None,
            "Match blocks: sshd -T -C decides"
        );
    }

    #[test]
    fn include_globs() {
        assert!(fnmatch("*.conf", "keyward.conf"));
        assert!(!fnmatch("*.conf", "keyward.conf.bak"));
        assert!(fnmatch("[0-9]*-x", "10-x"));
        assert!(!fnmatch("[!0-9]*", "1a"));
        assert!(fnmatch("a?c", "abc"));
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("sshd_config");
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            &main,
            format!(
                "Include {}/*.conf\nAuthorizedKeysCommand /k keys %u\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("20-b.conf"),
            "AuthorizedPrincipalsCommand /k principals %u\n",
        )
        .unwrap();
        std::fs::write(d.join("10-a.conf"), "TrustedUserCAKeys /ca.pub\n").unwrap();
        std::fs::write(d.join("30-c.conf.bak"), "Port 1\n").unwrap();
        let (ds, errors) = read_sshd_config(&main);
        assert!(errors.is_empty(), "{errors:?}");
        let kws: Vec<&str> = ds.iter().map(|d| d.keyword.as_str()).collect();
        assert_eq!(
            kws,
            [
                "trustedusercakeys",
                "authorizedprincipalscommand",
                "authorizedkeyscommand"
            ]
        );
        assert_eq!(order_trap(&ds), None);
        assert_eq!(ds[1].loc.line, 1);
    }
}
