//! Where sshd's configuration files set a keyword: the file and line of the
//! value sshd uses. For most keywords sshd keeps the first value it reads,
//! and `Include` expands in place, its glob in lexical order; so when
//! cloud-init's `50-cloud-init.conf` says `PasswordAuthentication yes`, no
//! later line can change it, and doctor must name that file, not the one it
//! would put a fix in. Directives after the first `Match` are conditional
//! and not reported. [`parse`] is pure; [`first_settings`] reads the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a keyword got the value sshd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAt {
    pub file: PathBuf,
    pub line: usize,
    pub value: String,
}

impl std::fmt::Display for SetAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

/// `(line, keyword in lower case, arguments)` of each directive.
pub fn parse(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (k, v) = l
                .split_once(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or((l, ""));
            let v = v.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
            Some((i + 1, k.to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// The first value of every keyword before the first `Match`, following
/// `Include` (relative patterns are under /etc/ssh, as sshd resolves them).
pub fn first_settings(main: &Path) -> BTreeMap<String, SetAt> {
    let mut out = BTreeMap::new();
    walk(main, 0, &mut out);
    out
}

/// Returns false once a `Match` ends the unconditional part.
fn walk(file: &Path, depth: usize, out: &mut BTreeMap<String, SetAt>) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return true;
    };
    if depth > 16 {
        return true;
    }
    for (line, k, v) in parse(&text) {
        match k.as_str() {
            "match" => return false,
            "include" => {
                for pattern in v.split_whitespace() {
                    for f in expand(pattern) {
                        if !walk(&f, depth + 1, out) {
                            return false;
                        }
                    }
                }
            }
            _ => {
                out.entry(k).or_insert(SetAt {
                    file: file.to_owned(),
                    line,
                    value: v,
                });
            }
        }
    }
    true
}

/// The files an Include pattern names (a `*`/`?` glob in the last
/// component), in lexical order.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let p = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![p];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| glob(name, n)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// `*` and `?` matching, no leading-dot special case (sshd uses glob(3),
/// which does not match a leading dot with `*`).
fn glob(pat: &str, name: &str) -> bool {
    if name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pat.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        let d = parse("# c\n\nPasswordAuthentication yes\n  UsePAM=no\nInclude a b\n");
        assert_eq!(
            d,
            [
                (3, "passwordauthentication".into(), "yes".into()),
                (4, "usepam".into(), "no".into()),
                (5, "include".into(), "a b".into()),
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*.conf", "50-cloud-init.conf"));
        assert!(!glob("*.conf", "50-cloud-init.conf.bak"));
        assert!(!glob("*.conf", ".hidden.conf"));
        assert!(glob("4?-*.conf", "40-keyward.conf"));
    }

    #[test]
    fn first_value_wins_and_match_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("50-cloud-init.conf"), "PasswordAuthentication yes\n").unwrap();
        std::fs::write(
            d.join("40-keyward.conf"),
            "\nKbdInteractiveAuthentication no\n",
        )
        .unwrap();
        let main = dir.path().join("sshd_config");
        std::fs::write(
            &main,
            format!(
                "Include {}/*.conf\nPasswordAuthentication no\nMatch User x\nPermitRootLogin yes\n",
                d.display()
            ),
        )
        .unwrap();
        let s = first_settings(&main);
        let pa = &s["passwordauthentication"];
        assert_eq!(
            (pa.file.clone(), pa.line, pa.value.as_str()),
            (d.join("50-cloud-init.conf"), 1, "yes")
        );
        assert_eq!(
            s["kbdinteractiveauthentication"].to_string(),
            format!("{} line 2", d.join("40-keyward.conf").display())
        );
        assert!(!s.contains_key("permitrootlogin"), "after Match");
    }
}
