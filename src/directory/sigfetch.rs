//! Detached signatures of fetched files: `{url}.sig` fetched and checked
//! against the pinned signers, for a user's file (with its header and
//! rollback floor) and for the files sync fetches whole.

use std::io::Read;
use std::time::Instant;

use super::{describe, describe_io, relabel, Attempt, HttpDirectory, Request};
use crate::fetch::{FailKind, Fetch};
use crate::health::Seen;
use crate::os::clock::now_secs;

impl HttpDirectory<'_> {
    /// Fetches `{url}.sig` and checks `body` against the pinned signers:
    /// the SSHSIG part only; the caller checks what the body says.
    pub(super) fn fetch_sig(
        &self,
        agent: &ureq::Agent,
        url: &str,
        body: &(impl AsRef<[u8]> + ?Sized),
        deadline: Instant,
    ) -> Result<crate::signed::Signer, Attempt<()>> {
        let signers = self
            .signers()
            .map_err(|e| Attempt::refused(FailKind::Signature, e))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let sig_url = format!("{url}.sig");
        let mut resp = self.get(agent, &sig_url, None, false, left).map_err(|e| {
            let (kind, seen, why) = describe(&e);
            Attempt::failed((kind, seen, format!("signature {sig_url}: {why}")))
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let why = format!("signature {sig_url}: HTTP {status}");
            return Err(Attempt::refused(FailKind::Signature, why));
        }
        let mut sig = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_end(&mut sig)
            .map_err(|e| {
                let (kind, seen, why) = describe_io(&e);
                Attempt::failed((kind, seen, format!("signature {sig_url}: {why}")))
            })?;
        crate::signed::verify(body.as_ref(), &sig, signers)
            .map_err(|e| Attempt::refused(FailKind::Signature, e))
    }

    /// `fetch_sig` for a file sync fetches whole (the index, a delta, the
    /// revocation list, the KRL): a bad signature refuses the file, named
    /// (`"{what} refused: …"`); a mirror that did not answer stays failed.
    pub(super) fn verify_file<T>(
        &self,
        agent: &ureq::Agent,
        url: &str,
        body: &(impl AsRef<[u8]> + ?Sized),
        deadline: Instant,
        what: &str,
    ) -> Result<crate::signed::Signer, Attempt<T>> {
        self.fetch_sig(agent, url, body, deadline)
            .map_err(|a| match a {
                Attempt::Failed {
                    kind,
                    why,
                    seen: Seen::Answered,
                } => Attempt::refused(kind, format!("{what} refused: {why}")),
                a => relabel(a),
            })
    }

    /// Fetches `{url}.sig` and checks the file against the pinned signers,
    /// its header (user, expiry) and the rollback floor. (The error is the
    /// mirror's whole attempt, returned once per mirror: boxing it would
    /// only add an allocation.)
    #[allow(clippy::result_large_err)]
    pub(super) fn check_signed(
        &self,
        agent: &ureq::Agent,
        url: &str,
        body: &str,
        req: &Request,
        deadline: Instant,
    ) -> Result<(u64, crate::signed::Signer), Attempt<Fetch>> {
        let signer = self
            .fetch_sig(agent, url, body, deadline)
            .map_err(relabel)?;
        let bad = |why: String| Attempt::refused(FailKind::Signature, why);
        let h = crate::signed::parse_header(body).map_err(bad)?;
        crate::signed::check_header(&h, req.user, self.kind, now_secs() as i64).map_err(bad)?;
        if let Some(floor) = &req.floor {
            floor
                .admits(h.serial, body)
                .map_err(|r| bad(r.to_string()))?;
        }
        Ok((h.serial, signer))
    }
}
