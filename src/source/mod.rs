//! Where `keyward publish` reads users from: one module per kind of source
//! (a folder of files, an LDAP directory, a forge's per-user key URL), each
//! reading everything it has into a [`Listing`]. Publishing (checking,
//! signing, writing) is the same for all of them.
//!
//! A source either answers for every user or fails as a whole (an
//! unreachable server, a refused bind, a truncated search): a failure must
//! never look like a directory with fewer users, or publish would remove
//! the missing users' files.

pub mod folder;
pub mod forge;
pub mod ldap;
pub mod ldif;
pub mod unprivileged;

use crate::entry::Kind;

/// What a source says about one user's file of one kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Got {
    /// The file's text: one authorized_keys (or principals) line per line,
    /// to be checked like any other input.
    Text(String),
    /// No answer for this user this time (a forge fetch failed): the file
    /// published before stays as it is.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub user: String,
    pub kind: Kind,
    pub got: Got,
    /// Where it came from, for messages: a file name, a DN, a URL.
    pub origin: String,
}

/// Something in the source publish leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refused {
    /// The source's name for it: a file name (lossy when not UTF-8), a DN.
    pub file: String,
    pub why: String,
}

/// Everything a source has, sorted by user and kind, each (user, kind) once.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    pub items: Vec<Item>,
    /// Left out: nothing is published for these (and what was published
    /// for them before is removed).
    pub refused: Vec<Refused>,
    /// Worth a look, nothing left out by them: a value that held a line
    /// break, a fetch that failed (the file published before is kept).
    pub notes: Vec<String>,
}

impl Listing {
    /// Sorts the items; a (user, kind) given twice is a source bug here,
    /// since each source resolves its own duplicates.
    pub fn finish(mut self) -> Result<Listing, String> {
        self.items
            .sort_by(|a, b| (&a.user, a.kind.as_str()).cmp(&(&b.user, b.kind.as_str())));
        self.refused.sort_by(|a, b| a.file.cmp(&b.file));
        if let Some(w) = self
            .items
            .windows(2)
            .find(|w| w[0].user == w[1].user && w[0].kind == w[1].kind)
        {
            return Err(format!(
                "{} has two {} entries",
                w[0].user,
                w[0].kind.as_str()
            ));
        }
        Ok(self)
    }
}

/// A place users and their keys are read from (shared by the threads that
/// build the users' files).
pub trait Source: Sync {
    /// For messages: what is read (`LDAP ldaps://…`, `folder /srv/keys`).
    fn describe(&self) -> String;
    /// Reads every user, or fails as a whole.
    fn read(&self) -> Result<Listing, String>;
    /// The folder this source reads, if it is one: its `revoked/` holds
    /// the revocation specs publish turns into the revocation list.
    fn folder(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// The lines of a multi-valued attribute (or a list) as one file's text:
/// each value one line. A value that holds a line break would become two
/// lines (or smuggle in a second key): it is left out and noted.
pub fn lines_text(user: &str, values: &[String], notes: &mut Vec<String>) -> String {
    let mut text = String::new();
    for (i, v) in values.iter().enumerate() {
        let v = v.trim_end_matches(['\n', '\r']).trim_start();
        if v.contains(['\n', '\r', '\0']) {
            notes.push(format!(
                "{user}: value {} dropped: it holds a line break or NUL, not one key line",
                i + 1
            ));
            continue;
        }
        text.push_str(v);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_is_one_line_and_line_breaks_are_refused() {
        let mut notes = Vec::new();
        let values = vec![
            "ssh-ed25519 AAAA a\n".to_owned(),
            "ssh-ed25519 BBBB b\nssh-ed25519 CCCC c".to_owned(),
            "  ssh-rsa DDDD d\r\n".to_owned(),
        ];
        let text = lines_text("alice", &values, &mut notes);
        assert_eq!(text, "ssh-ed25519 AAAA a\nssh-rsa DDDD d\n");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("alice: value 2"), "{notes:?}");
    }

    #[test]
    fn a_listing_is_sorted_and_has_each_user_once() {
        let item = |u: &str| Item {
            user: u.into(),
            kind: Kind::Keys,
            got: Got::Text(String::new()),
            origin: u.into(),
        };
        let l = Listing {
            items: vec![item("bob"), item("alice")],
            ..Listing::default()
        }
        .finish()
        .unwrap();
        assert_eq!(l.items[0].user, "alice");
        let twice = Listing {
            items: vec![item("bob"), item("bob")],
            ..Listing::default()
        };
        assert!(twice.finish().is_err());
    }
}
