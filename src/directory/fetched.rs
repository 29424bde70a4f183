//! What the directory said about one file sync fetches whole (the index,
//! a delta, the revocation list): the same five answers for each, with
//! what a new file carries as `T`.

use std::time::Duration;

use super::{etag_of, read_body, relabel, Attempt, Failure, HttpDirectory, Opened};
use crate::fetch::MirrorError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched<T> {
    /// A new file that passed every check of its kind.
    New(T),
    NotModified {
        url: String,
    },
    /// 404 from a mirror: the directory has no such file.
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

impl<T> From<Failure> for Fetched<T> {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable(errors) => Fetched::Unavailable { errors },
            Failure::Misconfigured(error) => Fetched::Misconfigured { error },
        }
    }
}

impl<T> Fetched<T> {
    /// Why no mirror could answer (every mirror's error), for
    /// `Unavailable` and `Misconfigured`; None for an answer.
    pub fn failure(&self) -> Option<String> {
        match self {
            Fetched::Unavailable { errors } => {
                let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                Some(why.join("; "))
            }
            Fetched::Misconfigured { error } => Some(error.clone()),
            _ => None,
        }
    }
}

impl HttpDirectory<'_> {
    /// One mirror's (conditional) GET of a whole file: its text and ETag,
    /// or the attempt's end (a 304 or 404 as their answers, a failure, a
    /// body over `max`, which names `limit`).
    pub(super) fn get_text<T>(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        budget: Duration,
        max: u64,
        limit: &str,
    ) -> Result<(String, Option<String>), Attempt<Fetched<T>>> {
        let mut resp = match self.open(agent, url, etag, true, budget) {
            Opened::Body(r) => r,
            Opened::NotModified => {
                return Err(Attempt::Done(Fetched::NotModified { url: url.into() }))
            }
            Opened::NotFound => return Err(Attempt::Done(Fetched::Missing { url: url.into() })),
            Opened::Failed(a) => return Err(relabel(a)),
        };
        let etag = etag_of(&resp);
        let text = read_body(&mut resp, max, limit).map_err(relabel)?;
        Ok((text, etag))
    }
}
