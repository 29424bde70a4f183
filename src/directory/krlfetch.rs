//! The published KRL over HTTP (`keyward sync` with `[revocation]
//! sshd_krl`): one GET per mirror in turn, then every check before sync
//! may hand it to sshd: its size, the KRL magic, the hash the installed
//! list names (`krl=`: the list's signature, expiry and floor vouch for
//! it), and in signed mode its own detached signature by a pinned signer.
//! A mirror whose KRL fails any of them is skipped like a failed one.

use std::io::Read;
use std::time::{Duration, Instant};

use super::{describe_io, relabel, Attempt, Failure, HttpDirectory, Opened};
use crate::config::UrlTemplate;
use crate::fetch::{FailKind, MirrorError};
use crate::health::Seen;
use crate::revocation::{krl, list, spec::Sha256};

/// What the directory said about the KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KrlFetch {
    /// The KRL the list names, checked.
    New {
        bytes: Vec<u8>,
        url: String,
    },
    /// 404 on every mirror that answered.
    Missing {
        url: String,
    },
    Unavailable {
        errors: Vec<MirrorError>,
    },
    Misconfigured {
        error: String,
    },
}

/// The least time the KRL's fetch (all mirrors) gets: it can be large.
const BUDGET: Duration = Duration::from_secs(60);

impl HttpDirectory<'_> {
    /// The KRL at `path` (relative to each mirror's folder), which must hash
    /// to `expect`.
    pub fn fetch_krl(&self, path: &str, expect: &Sha256) -> KrlFetch {
        let signed = self.config.signed();
        let mut attempt = |agent: &ureq::Agent, url: &str, share: Duration, deadline: Instant| {
            self.attempt_krl(agent, url, expect, signed, share, deadline)
        };
        let url_of = |t: &UrlTemplate| t.folder().map(|f| crate::index::join_url(f, path));
        let budget = self.config.timeout.0.max(BUDGET);
        match self.over_mirrors(budget, "", &url_of, &mut attempt) {
            Ok(f) => f,
            Err(Failure::Unavailable(errors)) => KrlFetch::Unavailable { errors },
            Err(Failure::Misconfigured(error)) => KrlFetch::Misconfigured { error },
        }
    }

    fn attempt_krl(
        &self,
        agent: &ureq::Agent,
        url: &str,
        expect: &Sha256,
        signed: bool,
        budget: Duration,
        deadline: Instant,
    ) -> Attempt<KrlFetch> {
        let mut resp = match self.open(agent, url, None, true, budget) {
            Opened::Body(r) => r,
            // Asked without an ETag: a 304 is no answer to this request.
            Opened::NotModified => {
                return Attempt::refused(FailKind::Answer, format!("{url}: 304 to a plain GET"))
            }
            Opened::NotFound => return Attempt::Done(KrlFetch::Missing { url: url.into() }),
            Opened::Failed(a) => return relabel(a),
        };
        let refused =
            |why: String| Attempt::refused(FailKind::Answer, format!("KRL refused: {why}"));
        let max = list::MAX_BYTES;
        if resp.body().content_length().is_some_and(|n| n > max) {
            return refused(format!("larger than {max} bytes"));
        }
        let mut bytes = Vec::new();
        if let Err(e) = resp
            .body_mut()
            .as_reader()
            .take(max + 1)
            .read_to_end(&mut bytes)
        {
            let (kind, _, why) = describe_io(&e);
            return Attempt::failed((kind, Seen::NoAnswer, format!("reading body: {why}")));
        }
        if bytes.len() as u64 > max {
            return refused(format!("larger than {max} bytes"));
        }
        if krl::version(&bytes).is_none() {
            return refused(format!("{url} is not an OpenSSH KRL"));
        }
        if krl::digest(&bytes) != *expect {
            return refused(format!(
                "{url} is not the KRL the installed revocation list names (krl={})",
                list::b64(expect)
            ));
        }
        if signed {
            if let Err(a) = self.verify_file(agent, url, &bytes[..], deadline, "KRL") {
                return a;
            }
        }
        Attempt::Done(KrlFetch::New {
            bytes,
            url: url.into(),
        })
    }
}
