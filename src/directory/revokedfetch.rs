//! The directory's revocation list over HTTP (`keyward sync`): one
//! (conditional) GET per mirror in turn, the signature only when the list
//! changed, and every check a host runs before it installs a list: its
//! size (its own cap, `list::MAX_BYTES`: a list can be megabytes, far
//! above `max_bytes`), `list::check`, and in signed mode the signature,
//! `expires` and the rollback floor. A mirror whose list fails any of them
//! is skipped like a failed one.

use std::time::{Duration, Instant};

use super::{Attempt, Fetched, HttpDirectory};
use crate::config::UrlTemplate;
use crate::fetch::FailKind;
use crate::os::clock::now_secs;
use crate::revocation::list;
use crate::state::Floor;

/// What the directory said about its revocation list; `Missing`: this
/// directory publishes no list.
pub type RevokedFetch = Fetched<NewList>;

/// A list that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewList {
    pub text: String,
    pub etag: Option<String>,
    pub url: String,
    /// Signed mode: its serial and the pinned signer that signed it.
    pub serial: Option<u64>,
    pub signer: Option<crate::signed::Signer>,
}

/// The least time the list's fetch (all mirrors) gets: it can be large.
const BUDGET: Duration = Duration::from_secs(60);

impl HttpDirectory<'_> {
    /// Whether any mirror has a folder for the list (`{user}` in the path).
    pub fn has_folders(&self) -> bool {
        self.config.urls.iter().any(|t| t.folder().is_some())
    }

    /// The list at `path` (relative to each mirror's folder, as the index
    /// names it), conditional on `etag`; `floor`: the installed list's, in
    /// signed mode.
    pub fn fetch_revoked(
        &self,
        path: &str,
        etag: Option<&str>,
        floor: Option<Floor>,
    ) -> RevokedFetch {
        let signed = self.config.signed();
        let mut attempt = |agent: &ureq::Agent, url: &str, share: Duration, deadline: Instant| {
            self.attempt_revoked(agent, url, etag, floor, signed, share, deadline)
        };
        let url_of = |t: &UrlTemplate| t.folder().map(|f| crate::index::join_url(f, path));
        let budget = self.config.timeout.0.max(BUDGET);
        self.over_mirrors(budget, "", &url_of, &mut attempt)
            .unwrap_or_else(Fetched::from)
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_revoked(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        floor: Option<Floor>,
        signed: bool,
        budget: Duration,
        deadline: Instant,
    ) -> Attempt<RevokedFetch> {
        let (text, new_etag) = match self.get_text(
            agent,
            url,
            etag,
            budget,
            list::MAX_BYTES,
            "the revocation list limit",
        ) {
            Ok(got) => got,
            Err(a) => return a,
        };
        let refused =
            |kind, why: String| Attempt::refused(kind, format!("revocation list refused: {why}"));
        let header = match list::check(&text) {
            Ok(h) => h,
            Err(e) => return refused(FailKind::Answer, e),
        };
        let (mut serial, mut signer) = (None, None);
        if signed {
            match self.verify_file(agent, url, &text, deadline, "revocation list") {
                Ok(s) => signer = Some(s),
                Err(a) => return a,
            }
            let now = now_secs() as i64;
            let s = match crate::signed::check_list_header(header.serial, header.expires, now) {
                Ok(s) => s,
                Err(why) => return refused(FailKind::Signature, why),
            };
            if let Some(f) = floor {
                if let Err(r) = f.admits(s, &text) {
                    let why = r.to_string().replace("signed file", "list");
                    return refused(FailKind::Signature, why);
                }
            }
            serial = Some(s);
        }
        Attempt::Done(Fetched::New(NewList {
            text,
            etag: new_etag,
            url: url.into(),
            serial,
            signer,
        }))
    }
}
