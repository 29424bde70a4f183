//! A delta over HTTP (`keyward sync`, `delta`): one conditional GET of
//! `F.d/S` in each mirror's folder, and its signature only when it says
//! something changed. An empty delta ("nothing changed since S") needs no
//! signature: it changes nothing a 304 would not. A mirror whose delta
//! does not parse, is of another kind, has expired or fails its signature
//! is skipped like a failed one; the caller checks what the delta is from
//! and what it gives.

use std::time::{Duration, Instant};

use super::{Attempt, Fetched, HttpDirectory};
use crate::config::UrlTemplate;
use crate::delta::{self, Delta};
use crate::fetch::FailKind;
use crate::os::clock::now_secs;

/// What the directory said about a delta.
pub type DeltaFetch = Fetched<NewDelta>;

/// A parsed delta of the kind asked for; in signed mode a non-empty one
/// verified, with the pinned signer that signed it, and unexpired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelta {
    pub delta: Box<Delta>,
    pub etag: Option<String>,
    pub url: String,
    pub signer: Option<crate::signed::Signer>,
}

/// The least time a delta's fetch (all mirrors) gets.
const BUDGET: Duration = Duration::from_secs(30);

impl HttpDirectory<'_> {
    /// The delta at `path` (relative to each mirror's folder), conditional
    /// on `etag`; `kind`: the delta's `kind=` (`index`, `revoked`).
    pub fn fetch_delta(&self, path: &str, etag: Option<&str>, kind: &str) -> DeltaFetch {
        let signed = self.config.signed();
        let mut attempt = |agent: &ureq::Agent, url: &str, share: Duration, deadline: Instant| {
            self.attempt_delta(agent, url, etag, kind, signed, share, deadline)
        };
        let url_of = |t: &UrlTemplate| t.folder().map(|f| crate::index::join_url(f, path));
        let budget = self.config.timeout.0.max(BUDGET);
        self.over_mirrors(budget, "", &url_of, &mut attempt)
            .unwrap_or_else(Fetched::from)
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_delta(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        kind: &str,
        signed: bool,
        budget: Duration,
        deadline: Instant,
    ) -> Attempt<DeltaFetch> {
        let (text, new_etag) = match self.get_text(
            agent,
            url,
            etag,
            budget,
            delta::MAX_BYTES,
            "the delta limit",
        ) {
            Ok(got) => got,
            Err(a) => return a,
        };
        let refused = |kind, why: String| Attempt::refused(kind, format!("delta refused: {why}"));
        let d = match Delta::parse(&text) {
            Ok(d) => d,
            Err(e) => return refused(FailKind::Answer, e),
        };
        if d.kind != kind {
            return refused(FailKind::Answer, format!("kind={} (not {kind})", d.kind));
        }
        let mut signer = None;
        if signed && !d.is_empty() {
            match self.verify_file(agent, url, &text, deadline, "delta") {
                Ok(s) => signer = Some(s),
                Err(a) => return a,
            }
            match d.expires {
                Some(e) if e > now_secs() as i64 => {}
                Some(e) => {
                    let why = format!("expired at {}", crate::signed::format_utc(e));
                    return refused(FailKind::Signature, why);
                }
                None => return refused(FailKind::Signature, "signed without expires".into()),
            }
        }
        Attempt::Done(Fetched::New(NewDelta {
            delta: Box::new(d),
            etag: new_etag,
            url: url.into(),
            signer,
        }))
    }
}
