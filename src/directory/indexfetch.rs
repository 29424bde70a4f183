//! The directory index over HTTP (`keyward sync`): one conditional GET,
//! the signature only when the index changed, and a user's file at the
//! path its index line gives.

use std::time::{Duration, Instant};

use super::{Attempt, Fetched, HttpDirectory, Request};
use crate::config::UrlTemplate;
use crate::fetch::{FailKind, Fetch};
use crate::os::clock::now_secs;
use crate::state::Floor;

/// What the directory said about its index (`keyward sync`); `Missing`:
/// this directory publishes no index (per-user requests, as before).
pub type IndexFetch = Fetched<NewIndex>;

/// A new index, checked (`Index::parse`) and, in signed mode, verified
/// and above the index's rollback floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIndex {
    pub text: String,
    pub etag: Option<String>,
    pub url: String,
    pub signed: bool,
    /// The pinned signer that signed it (signed mode).
    pub signer: Option<crate::signed::Signer>,
}

impl HttpDirectory<'_> {
    /// `req.user`'s file at the `path` an index lists, relative to each
    /// mirror's folder (mirrors with `{user}` outside the path: their own
    /// URL for the user).
    pub fn fetch_listed(&self, req: &Request, path: &str) -> Fetch {
        let user = req.user;
        self.user_fetch(req, &|t| {
            Some(match t.folder() {
                Some(f) => crate::index::join_url(f, path),
                None => t.expand(user),
            })
        })
    }

    /// The index URLs, one per mirror that has one.
    pub fn index_urls(&self) -> Vec<String> {
        match &self.config.index {
            Some(name) => self
                .config
                .urls
                .iter()
                .filter_map(|t| t.folder().map(|f| format!("{f}{name}")))
                .collect(),
            None => Vec::new(),
        }
    }

    /// One conditional GET for the index (and its signature only when it
    /// changed). `floor`: the stored index's serial and hash; a signed index
    /// below it is refused like a failed mirror.
    pub fn fetch_index(&self, etag: Option<&str>, floor: Option<Floor>) -> IndexFetch {
        let Some(name) = self.config.index.clone() else {
            return IndexFetch::Missing { url: String::new() };
        };
        let signed = self.config.signed();
        let mut attempt = |agent: &ureq::Agent, url: &str, share: Duration, deadline: Instant| {
            self.attempt_index(agent, url, etag, floor, signed, share, deadline)
        };
        let url_of = |t: &UrlTemplate| t.folder().map(|f| format!("{f}{name}"));
        // Sync is not a login: a large index on a slow link gets time.
        let budget = self.config.timeout.0.max(INDEX_BUDGET);
        self.over_mirrors(budget, "", &url_of, &mut attempt)
            .unwrap_or_else(Fetched::from)
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_index(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        floor: Option<Floor>,
        signed: bool,
        budget: Duration,
        deadline: Instant,
    ) -> Attempt<IndexFetch> {
        let (text, new_etag) = match self.get_text(
            agent,
            url,
            etag,
            budget,
            crate::index::MAX_BYTES,
            "the index limit",
        ) {
            Ok(got) => got,
            Err(a) => return a,
        };
        let refused = |kind, why: String| Attempt::refused(kind, format!("index refused: {why}"));
        let header = match crate::index::Index::parse(&text) {
            Ok(idx) => idx.header,
            Err(e) => return refused(FailKind::Answer, e),
        };
        let mut signer = None;
        if signed {
            match self.verify_file(agent, url, &text, deadline, "index") {
                Ok(s) => signer = Some(s),
                Err(a) => return a,
            }
            let (Some(serial), Some(expires)) = (header.serial, header.expires) else {
                let why = "a signed index needs serial= and expires=".to_owned();
                return refused(FailKind::Signature, why);
            };
            if expires <= now_secs() as i64 {
                let why = format!("expired at {}", crate::signed::format_utc(expires));
                return refused(FailKind::Signature, why);
            }
            if let Some(f) = floor {
                if let Err(r) = f.admits(serial, &text) {
                    let why = r.to_string().replace("signed file", "index");
                    return refused(FailKind::Signature, why);
                }
            }
        }
        Attempt::Done(Fetched::New(NewIndex {
            text,
            etag: new_etag,
            url: url.into(),
            signed,
            signer,
        }))
    }
}

/// How much of the index is asked for to read its serial: its header line
/// is far shorter.
const HEAD_BYTES: u64 = 1024;

impl HttpDirectory<'_> {
    /// The serial on the index's first line, read with a range request
    /// (`Range: bytes=0-1023`, no compression), or None when no mirror gave
    /// one (404, an error, a first line that is not an index header). A
    /// server that ignores the range answers 200: only the first kilobyte is
    /// read. Unsigned and unverified: it only tells a host that its copy
    /// (built from deltas) is still the published one; anything it could
    /// grant comes from a verified index.
    pub fn index_serial(&self) -> Option<u64> {
        let name = self.config.index.clone()?;
        let url_of = |t: &UrlTemplate| t.folder().map(|f| format!("{f}{name}"));
        let mut attempt = |agent: &ureq::Agent, url: &str, share: Duration, _: Instant| {
            let req = agent
                .get(url)
                .header("Range", format!("bytes=0-{}", HEAD_BYTES - 1));
            let mut resp = match self.send(req, share) {
                Ok(r) => r,
                Err(e) => return Attempt::failed(super::describe(&e)),
            };
            if !matches!(resp.status().as_u16(), 200 | 206) {
                let why = format!("HTTP {}", resp.status().as_u16());
                return Attempt::refused(FailKind::Answer, why);
            }
            let mut head = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(resp.body_mut().as_reader(), HEAD_BYTES),
                &mut head,
            );
            let line = read
                .ok()
                .and_then(|_| head.split(|b| *b == b'\n').next().map(<[u8]>::to_vec))
                .filter(|l| l.len() < head.len())
                .and_then(|l| String::from_utf8(l).ok());
            match line.map(|l| crate::index::Header::parse(&l)) {
                Some(Ok(h)) => Attempt::Done(h.serial),
                _ => Attempt::refused(FailKind::Answer, "no index header line"),
            }
        };
        self.over_mirrors(self.config.timeout.0, "", &url_of, &mut attempt)
            .ok()
            .flatten()
    }
}

/// The least time the index fetch (all mirrors) gets.
const INDEX_BUDGET: Duration = Duration::from_secs(30);
