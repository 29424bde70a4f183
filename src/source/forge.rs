//! A forge (or any per-user key URL) as a source: a URL template with
//! `{user}` (`https://github.com/{user}.keys`) and a list of the local
//! users to publish, each optionally mapped to its name at the forge.
//!
//! Every fetch goes through the login path's own HTTP client
//! (`directory::HttpDirectory`): the same time budget per user, size cap,
//! TLS trust (`[directory] ca_file`), proxy rule and refusal of anything
//! that is not a key list. A 404 means the forge has no such account (no
//! keys); a user whose fetch fails otherwise keeps the file published
//! before (reported), never an empty one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{Got, Item, Listing, Source};
use crate::config::{DirectoryConfig, UrlTemplate};
use crate::directory::{Directory, Fetch, HttpDirectory, Request};
use crate::entry::Kind;

/// One line of `--users`: the local name and the forge's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub local: String,
    pub remote: String,
}

/// Parses `--users` (pure): `local` or `local remote` per line, `#`
/// comments and blank lines ignored; a local name given twice is an error.
pub fn parse_users(text: &str, max_username_len: usize) -> Result<Vec<Mapped>, String> {
    let mut out: Vec<Mapped> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| format!("line {}: {why}", i + 1);
        let mut words = line.split_whitespace();
        let local = words.next().unwrap_or_default();
        let remote = words.next().unwrap_or(local);
        if words.next().is_some() {
            return Err(at(format!("{line:?}: expected `local` or `local remote`")));
        }
        crate::username::validate(local, max_username_len)
            .map_err(|e| at(format!("{local:?} is not a valid user name: {e}")))?;
        if out.iter().any(|m| m.local == local) {
            return Err(at(format!("{local} is listed twice")));
        }
        out.push(Mapped {
            local: local.to_owned(),
            remote: remote.to_owned(),
        });
    }
    Ok(out)
}

pub struct Forge {
    pub template: UrlTemplate,
    pub users: Vec<Mapped>,
    /// Budget, size cap, TLS and proxy: the fleet's `[directory]` settings
    /// (its URLs and signers are not used).
    pub directory: DirectoryConfig,
    pub jobs: usize,
}

/// The `--users` line a fetch was for, and what it means.
type Answer = (usize, Result<Option<Got>, String>);

/// What one fetch means for the listing (pure).
fn outcome(m: &Mapped, fetch: Fetch) -> Result<Option<Got>, String> {
    Ok(match fetch {
        Fetch::Keys { body, .. } => Some(Got::Text(body)),
        Fetch::NoKeys { .. } => None,
        Fetch::NotModified { url } => Some(Got::Failed(format!("{url}: unexpected 304"))),
        Fetch::Unavailable { errors } => {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Some(Got::Failed(why.join("; ")))
        }
        Fetch::Misconfigured { error } => return Err(format!("{}: {error}", m.local)),
    })
}

impl Source for Forge {
    fn describe(&self) -> String {
        format!(
            "{} for {} user(s)",
            self.template.as_str(),
            self.users.len()
        )
    }

    fn read(&self) -> Result<Listing, String> {
        if self.users.is_empty() {
            return Err("--users lists nobody".into());
        }
        let config = DirectoryConfig {
            urls: vec![self.template.clone()],
            principals_urls: Vec::new(),
            signers: Vec::new(),
            signers_file: None,
            index: None,
            ..self.directory.clone()
        };
        let dir = HttpDirectory::pooled(&config);
        let next = AtomicUsize::new(0);
        let got: Mutex<Vec<Answer>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.jobs.clamp(1, 32) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = self.users.get(i) else { break };
                    let req = Request {
                        user: &m.remote,
                        ..Request::default()
                    };
                    let r = outcome(m, dir.fetch(&req));
                    got.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
                });
            }
        });
        let mut got = got.into_inner().unwrap_or_else(|e| e.into_inner());
        got.sort_by_key(|(i, _)| *i);
        let mut listing = Listing::default();
        let mut answered = 0;
        for (i, r) in got {
            let m = &self.users[i];
            let Some(g) = r? else {
                answered += 1;
                listing.notes.push(format!(
                    "{}: {} has no such account (404): no keys",
                    m.local,
                    self.template.expand(&m.remote)
                ));
                continue;
            };
            // A failed fetch is reported by publish, which knows whether
            // there is a file to keep.
            if !matches!(g, Got::Failed(_)) {
                answered += 1;
            }
            listing.items.push(Item {
                user: m.local.clone(),
                kind: Kind::Keys,
                got: g,
                origin: self.template.expand(&m.remote),
            });
        }
        if answered == 0 {
            return Err(format!(
                "no fetch from {} succeeded: nothing to publish",
                self.template.as_str()
            ));
        }
        listing.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file() {
        let u = parse_users("# team\nalice\n\nbob  bob-gh\n", 255).unwrap();
        assert_eq!(
            u,
            [
                Mapped {
                    local: "alice".into(),
                    remote: "alice".into()
                },
                Mapped {
                    local: "bob".into(),
                    remote: "bob-gh".into()
                },
            ]
        );
        assert!(parse_users("alice a b\n", 255)
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_users("alice\nalice x\n", 255)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_users("-rf\n", 255).is_err());
    }

    #[test]
    fn a_failed_fetch_keeps_and_a_404_is_no_keys() {
        let m = Mapped {
            local: "a".into(),
            remote: "a".into(),
        };
        let url = "http://f/a.keys".to_owned();
        assert_eq!(outcome(&m, Fetch::NoKeys { url: url.clone() }), Ok(None));
        let failed = Fetch::Unavailable {
            errors: vec![crate::directory::MirrorError::new(
                &url,
                crate::fetch::FailKind::Answer,
                "HTTP 503",
            )],
        };
        assert_eq!(
            outcome(&m, failed),
            Ok(Some(Got::Failed(format!("{url}: HTTP 503"))))
        );
        let bad = Fetch::Misconfigured {
            error: "ca_file".into(),
        };
        assert!(outcome(&m, bad).is_err());
    }
}
