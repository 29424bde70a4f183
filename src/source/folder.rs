//! A folder of per-user files: `alice` or `alice.keys` (keys) and
//! `deploy.principals` (the certificate principals the account accepts).

use std::path::{Path, PathBuf};

use super::{Got, Item, Listing, Refused, Source};
use crate::entry::Kind;

pub struct Folder {
    pub dir: PathBuf,
}

/// The user and kind of an input file name; None for files that are not
/// input (hidden and temporary files, signatures).
pub fn input_name(name: &str) -> Option<(&str, Kind)> {
    if name.starts_with('.') || name.ends_with(".sig") {
        return None;
    }
    Some(match name.strip_suffix(".principals") {
        Some(user) => (user, Kind::Principals),
        None => (name.strip_suffix(".keys").unwrap_or(name), Kind::Keys),
    })
}

impl Source for Folder {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn folder(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }

    fn read(&self) -> Result<Listing, String> {
        let shown = self.dir.display();
        let mut listing = Listing::default();
        let mut files: Vec<(String, Kind, String, PathBuf)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| format!("{shown}: {e}"))?;
        for entry in rd {
            let entry = entry.map_err(|e| format!("{shown}: {e}"))?;
            if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            let name = match entry.file_name().into_string() {
                Ok(n) => n,
                Err(raw) => {
                    listing.refused.push(Refused {
                        file: raw.to_string_lossy().into_owned(),
                        why: "the file name is not UTF-8".into(),
                    });
                    continue;
                }
            };
            let Some((user, kind)) = input_name(&name) else {
                continue;
            };
            if !seen.insert((user.to_owned(), kind.as_str())) {
                return Err(format!(
                    "{shown}: {user} has two {} files (`{user}` and `{user}.keys`)",
                    kind.as_str()
                ));
            }
            files.push((user.to_owned(), kind, name.clone(), entry.path()));
        }
        // Many small files: read on a few threads.
        let texts = crate::os::bulk::map(&files, MIN_PER_THREAD, |(.., path)| read_text(path))?;
        for ((user, kind, name, _), text) in files.into_iter().zip(texts) {
            listing.items.push(Item {
                user,
                kind,
                got: Got::Text(text),
                origin: name,
            });
        }
        listing.finish()
    }
}

/// Fewer files than this per thread are read on one thread.
const MIN_PER_THREAD: usize = 512;

fn read_text(path: &Path) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut text = String::new();
    crate::os::bulk::open_noatime(path, 0)
        .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
        .map_err(fail)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_names() {
        assert_eq!(input_name("alice"), Some(("alice", Kind::Keys)));
        assert_eq!(input_name("alice.keys"), Some(("alice", Kind::Keys)));
        assert_eq!(
            input_name("deploy.principals"),
            Some(("deploy", Kind::Principals))
        );
        assert_eq!(input_name("alice.keys.sig"), None);
        assert_eq!(input_name(".alice.keys.tmp"), None);
    }

    #[test]
    fn reads_every_file_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bob"), "b\n").unwrap();
        std::fs::write(dir.path().join("alice.keys"), "a\n").unwrap();
        std::fs::write(dir.path().join("deploy.principals"), "p\n").unwrap();
        std::fs::write(dir.path().join("alice.keys.sig"), "x").unwrap();
        let f = Folder {
            dir: dir.path().to_owned(),
        };
        let l = f.read().unwrap();
        let got: Vec<_> = l
            .items
            .iter()
            .map(|i| (i.user.as_str(), i.kind, i.got.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", Kind::Keys, Got::Text("a\n".into())),
                ("bob", Kind::Keys, Got::Text("b\n".into())),
                ("deploy", Kind::Principals, Got::Text("p\n".into())),
            ]
        );
        std::fs::write(dir.path().join("bob.keys"), "b\n").unwrap();
        assert!(f.read().unwrap_err().contains("two keys files"));
    }
}
