//! The mirror loop: mirrors in order within one budget, what each attempt
//! says about its mirror recorded in the health records (`health`: only an
//! unreachable or unanswering mirror goes down, never for one path's bad
//! answer), a mirror recorded as down skipped until its retry time, then
//! probed by one process.

use std::time::{Duration, Instant};

use super::{Attempt, Failure, HttpDirectory};
use crate::config::UrlTemplate;
use crate::fetch::{FailKind, MirrorError};
use crate::health::{Claim, Gate, Outcome, Record, Seen};
use crate::os::clock::now_millis;

impl HttpDirectory<'_> {
    /// Tries the mirrors in order within one `budget`. Mirrors recorded as
    /// down are skipped (no connection at all) until their retry time; then
    /// one process probes. Skipped mirrors do not take a share of the
    /// budget. `user`: whom the lookup is for ("" for the index), so that
    /// only failures across users mark a mirror down. `url_of` gives a
    /// mirror's URL (None: the mirror has none).
    pub(super) fn over_mirrors<T>(
        &self,
        budget: Duration,
        user: &str,
        url_of: &dyn Fn(&UrlTemplate) -> Option<String>,
        attempt: &mut dyn FnMut(&ureq::Agent, &str, Duration, Instant) -> Attempt<T>,
    ) -> Result<T, Failure> {
        let deadline = Instant::now() + budget;
        if self.config.signed() {
            self.signers().map_err(Failure::Misconfigured)?;
        }
        let urls = self
            .urls
            .as_ref()
            .map_err(|e| Failure::Misconfigured(e.clone()))?;
        let now_ms = now_millis();
        let mut errors = Vec::new();
        let mut plan = Vec::new();
        for t in urls.iter() {
            let Some(url) = url_of(t) else { continue };
            let gate = match &self.health {
                Some(h) => h.gate(t.as_str(), now_ms),
                None => Gate::Up,
            };
            match gate {
                Gate::Skip(d) => errors.push(self.skipped(t, &url, &d, now_ms)),
                g => plan.push((t, url, g)),
            }
        }
        if plan.is_empty() {
            return Err(Failure::Unavailable(errors));
        }
        // Only now: all mirrors skipped costs no TLS set-up at all.
        let agent = self.agent().map_err(Failure::Misconfigured)?;
        let n = plan.len();
        for (i, (t, url, gate)) in plan.into_iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(5) {
                let why = "time budget exhausted";
                errors.push(MirrorError::new(&url, FailKind::Network, why));
                continue;
            }
            // A mirror whose retry time has come: one process probes it.
            let _claim = match (&self.health, gate) {
                (Some(h), Gate::Due(_)) => match h.claim(t.as_str(), now_millis()) {
                    Claim::Probe(c) => Some(c),
                    Claim::Recovered => None,
                    Claim::Busy(d) => {
                        errors.push(self.skipped(t, &url, &d, now_millis()));
                        continue;
                    }
                },
                _ => None,
            };
            let share = left / (n - i) as u32;
            match self.settle(t, &url, user, attempt(agent, &url, share, deadline)) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(e),
            }
        }
        Err(Failure::Unavailable(errors))
    }

    /// Records what one attempt says about its mirror (`health::next`):
    /// an answer, even an unusable one, proves it up; an unreachable mirror
    /// is down until a jittered retry time; no answer counts across users.
    fn settle<T>(
        &self,
        t: &UrlTemplate,
        url: &str,
        user: &str,
        outcome: Attempt<T>,
    ) -> Result<T, MirrorError> {
        let (kind, mut why, seen, result) = match outcome {
            Attempt::Done(v) => {
                self.note(|e| e.answered = Some(url.to_owned()));
                (FailKind::Answer, String::new(), Seen::Answered, Some(v))
            }
            Attempt::Failed { kind, why, seen } => (kind, why, seen, None),
        };
        if let Some(h) = &self.health {
            let subject = crate::health::subject_id(user);
            let o = Outcome {
                seen,
                subject: &subject,
                kind: kind_name(kind),
                reason: &why,
            };
            match h.record(t.as_str(), &o, now_millis()) {
                Ok(Some(Record::Down(d))) => {
                    let left = d.retry_at_ms.saturating_sub(now_millis());
                    why.push_str(&if left < 1000 {
                        format!(" (skipped for the next {left}ms)")
                    } else {
                        format!(" (skipped for the next {}s)", left.div_ceil(1000))
                    });
                }
                Ok(Some(Record::Stalled(_))) => why.push_str(
                    " (not marked down unless a lookup for another user gets no answer too)",
                ),
                Ok(None) => {}
                Err(e) if result.is_none() => why.push_str(&format!(" (health not recorded: {e})")),
                Err(_) => {}
            }
        }
        match result {
            Some(v) => Ok(v),
            None => Err(MirrorError::new(url, kind, why)),
        }
    }

    /// A mirror skipped as down: logged, and told as its last failure.
    fn skipped(
        &self,
        t: &UrlTemplate,
        url: &str,
        d: &crate::health::Down,
        now_ms: u64,
    ) -> MirrorError {
        let why = d.describe(now_ms);
        self.note_skip(t.as_str(), why.clone());
        MirrorError::new(url, kind_of(&d.kind), format!("skipped, {why}"))
    }
}

/// A failure kind as the health record keeps it.
fn kind_name(k: FailKind) -> &'static str {
    match k {
        FailKind::Network => "network",
        FailKind::Tls => "tls",
        FailKind::Answer => "answer",
        FailKind::Signature => "signature",
    }
}

fn kind_of(name: &str) -> FailKind {
    match name {
        "tls" => FailKind::Tls,
        "answer" => FailKind::Answer,
        "signature" => FailKind::Signature,
        _ => FailKind::Network,
    }
}
