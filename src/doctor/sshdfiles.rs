//! Where sshd's configuration files set a keyword: the file and line of the
//! value sshd uses. For most keywords sshd keeps the first value it reads,
//! and `Include` expands in place, its glob in lexical order; so when
//! cloud-init's `50-cloud-init.conf` says `PasswordAuthentication yes`, no
//! later line can change it, and doctor must name that file, not the one it
//! would put a fix in. Directives inside `Match` are conditional and not
//! reported. The files are read by [`crate::sshd::read_sshd_config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sshd::Directive;

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

/// The first value of every keyword outside `Match` blocks (pure).
pub fn first_of(directives: &[Directive]) -> BTreeMap<String, SetAt> {
    let mut out = BTreeMap::new();
    for d in directives.iter().filter(|d| !d.in_match) {
        out.entry(d.keyword.clone()).or_insert_with(|| SetAt {
            file: d.loc.file.clone(),
            line: d.loc.line,
            value: d.value.clone(),
        });
    }
    out
}

/// [`first_of`] the configuration at `main` and its Includes.
pub fn first_settings(main: &Path) -> BTreeMap<String, SetAt> {
    first_of(&crate::sshd::read_sshd_config(main).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_match_is_conditional() {
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
        assert!(!s.contains_key("permitrootlogin"), "inside Match");
    }
}
