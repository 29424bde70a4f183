//! The central key directory over HTTP(S).
//!
//! Mirrors are tried in order within one total time budget. Each attempt
//! gets an equal share of what is left, so a black-holed first mirror cannot
//! eat the whole budget, while a mirror that fails fast hands its share on.
//! 404 is authoritative ("no keys"); 304 confirms the cached entry; anything
//! else that is not a plausible key list (5xx, redirect, oversize, HTML,
//! garbage, TLS failure, timeout) is no answer from that mirror for this
//! lookup. Each failure is also classified for mirror health
//! ([`crate::health::Seen`]): only an unreachable or unanswering mirror can be
//! marked down, never one path's bad answer.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{DirectoryConfig, UrlTemplate};
use crate::entry::Kind;
pub use crate::fetch::{FailKind, Fetch, MirrorError};
use crate::health::{Health, Seen};
use crate::keyline;
use crate::state::Floor;

mod deltafetch;
mod fetched;
mod indexfetch;
mod krlfetch;
mod mirrors;
mod revokedfetch;
mod sigfetch;
pub use deltafetch::{DeltaFetch, NewDelta};
pub use fetched::Fetched;
pub use indexfetch::{IndexFetch, NewIndex};
pub use krlfetch::KrlFetch;
pub use revokedfetch::{NewList, RevokedFetch};

/// One lookup: the user, the cached ETag and the rollback floor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub user: &'a str,
    pub etag: Option<&'a str>,
    /// Every signed answer must clear it (`Floor::admits`); a mirror whose
    /// file does not is skipped like a failed one.
    pub floor: Option<Floor>,
}

/// A source of per-user key lists (HTTP in production).
pub trait Directory {
    fn fetch(&self, req: &Request) -> Fetch;
}

/// What happened to the mirrors, for the log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Events {
    /// The URL that gave the last answer.
    pub answered: Option<String>,
    /// Mirrors skipped as down: (template, why), one entry per mirror.
    pub skipped: Vec<(String, String)>,
}

pub struct HttpDirectory<'a> {
    config: &'a DirectoryConfig,
    /// Built on first use only: a fresh cache answer never sets up TLS.
    agent: OnceLock<Result<ureq::Agent, String>>,
    /// Keep connections open between requests (sync); a login makes one.
    pooled: bool,
    /// Pinned signers, loaded on first use when signatures are required.
    signers: OnceLock<Result<Vec<ssh_key::PublicKey>, String>>,
    /// Mirror health records (None: every mirror is always tried).
    health: Option<Health>,
    events: Mutex<Events>,
    /// HTTP requests sent (signatures included).
    requests: AtomicUsize,
    /// Which file this directory serves, and its URL templates.
    kind: Kind,
    urls: Result<std::borrow::Cow<'a, [UrlTemplate]>, String>,
}

/// How one attempt at one mirror ended.
enum Attempt<T> {
    Done(T),
    /// No usable answer. `seen`: what it says about the mirror itself
    /// (unreachable, no answer, or an answer that is only this path's
    /// failure), for its health record.
    Failed {
        kind: FailKind,
        why: String,
        seen: Seen,
    },
}

impl<T> Attempt<T> {
    /// No answer came (`seen` from [`describe`] or [`describe_io`]).
    fn failed((kind, seen, why): (FailKind, Seen, String)) -> Self {
        Attempt::Failed { kind, why, seen }
    }

    /// The mirror answered, but not with something usable (a status,
    /// oversize, garbage, a bad signature): this path's failure.
    fn refused(kind: FailKind, why: impl Into<String>) -> Self {
        Attempt::Failed {
            kind,
            why: why.into(),
            seen: Seen::Answered,
        }
    }
}

/// Every mirror failed, or keyward cannot fetch safely at all.
enum Failure {
    Unavailable(Vec<MirrorError>),
    Misconfigured(String),
}

impl<'a> HttpDirectory<'a> {
    /// For the login path: one lookup, no connection pool.
    pub fn new(config: &'a DirectoryConfig) -> Self {
        HttpDirectory {
            config,
            agent: OnceLock::new(),
            pooled: false,
            signers: OnceLock::new(),
            health: None,
            events: Mutex::new(Events::default()),
            requests: AtomicUsize::new(0),
            kind: Kind::Keys,
            urls: Ok(std::borrow::Cow::Borrowed(&config.urls)),
        }
    }

    /// The same directory, serving `kind` files (`[directory]
    /// principals_urls`, or the keys URLs with `.principals`).
    pub fn for_kind(self, kind: Kind) -> Self {
        if kind == self.kind {
            return self;
        }
        HttpDirectory {
            kind,
            urls: self.config.templates(kind).map(std::borrow::Cow::Owned),
            ..self
        }
    }

    /// For many lookups from several threads (sync): keep-alive connections.
    pub fn pooled(config: &'a DirectoryConfig) -> Self {
        HttpDirectory {
            pooled: true,
            ..Self::new(config)
        }
    }

    /// Records mirror failures in `cache_dir` and skips a mirror that failed
    /// for `[directory] retry_interval` (the login path and sync; doctor
    /// probes every mirror regardless).
    pub fn with_health(mut self, cache_dir: &Path) -> Self {
        self.health = Some(Health::new(cache_dir, self.config.retry_interval.0));
        self
    }

    /// What happened so far (which mirror answered, which were skipped).
    pub fn events(&self) -> Events {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// HTTP requests sent so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    fn note(&self, f: impl FnOnce(&mut Events)) {
        if let Ok(mut e) = self.events.lock() {
            f(&mut e);
        }
    }

    fn note_skip(&self, template: &str, why: String) {
        self.note(
            |e| match e.skipped.iter_mut().find(|(t, _)| t == template) {
                Some(s) => s.1 = why,
                None => e.skipped.push((template.to_owned(), why)),
            },
        );
    }

    /// Errors here are keyward's own set-up, not the directory's.
    fn agent(&self) -> Result<&ureq::Agent, String> {
        self.agent
            .get_or_init(|| self.build_agent())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn build_agent(&self) -> Result<ureq::Agent, String> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &self.config.ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&load_ca_file(ca)?));
        }
        // The environment's proxy variables are never read: sshd's
        // environment is not the admin's, and a proxy must be a decision.
        let proxy = match &self.config.proxy {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| format!("proxy {p:?}: {e}"))?),
            None => None,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .tls_config(tls.build())
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            // Only the index asks for gzip (per request): key files are tiny.
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .max_idle_connections(if self.pooled { 64 } else { 0 })
            .max_idle_connections_per_host(if self.pooled { 16 } else { 0 })
            .build();
        Ok(config.into())
    }

    fn signers(&self) -> Result<&[ssh_key::PublicKey], String> {
        self.signers
            .get_or_init(|| self.config.load_signers())
            .as_deref()
            .map_err(Clone::clone)
    }

    fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        gzip: bool,
        budget: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut req = agent.get(url);
        if let Some(etag) = etag {
            req = req.header("If-None-Match", etag);
        }
        if gzip {
            req = req.header("Accept-Encoding", "gzip");
        }
        self.send(req, budget)
    }

    /// Sends a GET built by the caller, within `budget`.
    fn send(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        budget: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The connection (DNS, TCP, TLS) gets at most 9/10 of the share, so
        // a connect that hangs ends as a connect timeout (the mirror is
        // unreachable) rather than as the overall one (no answer); a
        // connection that late could not have carried the answer anyway.
        let connect = budget.mul_f64(0.9);
        req.config()
            .timeout_global(Some(budget))
            .timeout_resolve(Some(connect))
            .timeout_connect(Some(connect))
            .build()
            .call()
    }

    /// One mirror: the request, its status, the body as a key list, and
    /// in signed mode the signature.
    fn attempt(
        &self,
        agent: &ureq::Agent,
        url: &str,
        req: &Request,
        budget: Duration,
        deadline: Instant,
    ) -> Attempt<Fetch> {
        let mut resp = match self.open(agent, url, req.etag, false, budget) {
            Opened::Body(r) => r,
            Opened::NotModified => return Attempt::Done(Fetch::NotModified { url: url.into() }),
            Opened::NotFound => return Attempt::Done(Fetch::NoKeys { url: url.into() }),
            Opened::Failed(a) => return relabel(a),
        };
        let etag = etag_of(&resp);
        let body = match read_body(&mut resp, self.config.max_bytes, "max_bytes") {
            Ok(b) => b,
            Err(a) => return relabel(a),
        };
        match self.kind {
            Kind::Keys if !plausible_key_list(&body) => {
                let why = "response has no valid key line (garbage?)";
                return Attempt::refused(FailKind::Answer, why);
            }
            Kind::Principals if !crate::principals::plausible(&body) => {
                let why = "response has no valid principals line (garbage?)";
                return Attempt::refused(FailKind::Answer, why);
            }
            _ => {}
        }
        let (serial, signer) = if self.config.signed() {
            match self.check_signed(agent, url, &body, req, deadline) {
                Ok((serial, signer)) => (Some(serial), Some(signer)),
                Err(a) => return a,
            }
        } else {
            (None, None)
        };
        Attempt::Done(Fetch::Keys {
            body,
            etag,
            url: url.into(),
            serial,
            signer,
        })
    }

    fn user_fetch(&self, req: &Request, url_of: &dyn Fn(&UrlTemplate) -> Option<String>) -> Fetch {
        let mut attempt = |agent: &ureq::Agent, url: &str, share, deadline| {
            self.attempt(agent, url, req, share, deadline)
        };
        match self.over_mirrors(self.config.timeout.0, req.user, url_of, &mut attempt) {
            Ok(f) => f,
            Err(Failure::Unavailable(errors)) => Fetch::Unavailable { errors },
            Err(Failure::Misconfigured(error)) => Fetch::Misconfigured { error },
        }
    }
}

/// An attempt's failure, for another answer type.
/// A mirror's answer by status, the rule every fetch (keys, principals,
/// index) shares: 200 is a body to read, 304 and 404 are answers, anything
/// else (or no answer) is the mirror failing.
enum Opened {
    Body(ureq::http::Response<ureq::Body>),
    NotModified,
    NotFound,
    Failed(Attempt<()>),
}

impl HttpDirectory<'_> {
    fn open(
        &self,
        agent: &ureq::Agent,
        url: &str,
        etag: Option<&str>,
        gzip: bool,
        budget: Duration,
    ) -> Opened {
        let resp = match self.get(agent, url, etag, gzip, budget) {
            Ok(r) => r,
            Err(e) => return Opened::Failed(Attempt::failed(describe(&e))),
        };
        match resp.status().as_u16() {
            200 => Opened::Body(resp),
            304 => Opened::NotModified,
            404 => Opened::NotFound,
            s => Opened::Failed(status_failure(s, &resp)),
        }
    }
}

fn relabel<A, B>(a: Attempt<A>) -> Attempt<B> {
    match a {
        Attempt::Failed { kind, why, seen } => Attempt::Failed { kind, why, seen },
        Attempt::Done(_) => Attempt::refused(FailKind::Answer, "unexpected answer"),
    }
}

fn etag_of(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A status other than 200/304/404 (5xx and 429 included): an answer
/// keyward cannot use for this path; the mirror stays up.
fn status_failure<T>(status: u16, resp: &ureq::http::Response<ureq::Body>) -> Attempt<T> {
    match status {
        301 | 302 | 303 | 307 | 308 => {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            Attempt::refused(
                FailKind::Answer,
                format!("HTTP {status} redirect to {to} not followed"),
            )
        }
        s => Attempt::refused(FailKind::Answer, format!("HTTP {s}")),
    }
}

/// Reads a 200 body: at most `max` bytes (`what` names the limit), not
/// HTML, UTF-8 text without NUL.
fn read_body(
    resp: &mut ureq::http::Response<ureq::Body>,
    max: u64,
    what: &str,
) -> Result<String, Attempt<()>> {
    let answer = |why: String| Err(Attempt::refused(FailKind::Answer, why));
    let too_large = format!("response larger than {what} {max}");
    if resp.body().content_length().is_some_and(|n| n > max) {
        return answer(too_large);
    }
    let html = resp
        .body()
        .mime_type()
        .is_some_and(|m| m.eq_ignore_ascii_case("text/html"));
    let mut bytes = Vec::new();
    // Read one byte past the cap to tell "exactly max" from "more".
    let read = resp
        .body_mut()
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut bytes);
    if let Err(e) = read {
        let (kind, _, why) = describe_io(&e);
        // The answer had begun: whatever cut it off, this is no answer.
        return Err(Attempt::failed((
            kind,
            Seen::NoAnswer,
            format!("reading body: {why}"),
        )));
    }
    if bytes.len() as u64 > max {
        return answer(too_large);
    }
    if html {
        return answer("response is HTML, not a key list".into());
    }
    let Ok(body) = String::from_utf8(bytes) else {
        return answer("response is not UTF-8 text".into());
    };
    if body.contains('\0') {
        return answer("response contains NUL bytes".into());
    }
    Ok(body)
}

impl Directory for HttpDirectory<'_> {
    fn fetch(&self, req: &Request) -> Fetch {
        let user = req.user;
        self.user_fetch(req, &|t| Some(t.expand(user)))
    }
}

/// Reads the extra trust anchors with the rules of the config file itself
/// (root-owned, not group/world-writable, every parent too, no symlink
/// tricks): whoever can write it can impersonate the directory.
pub fn load_ca_file(ca: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut pem = Vec::new();
    crate::os::safepath::open_checked(ca, &[0], None)
        .map_err(|e| format!("ca_file {}: {e}", ca.display()))?
        .take(1 << 20)
        .read_to_end(&mut pem)
        .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("ca_file {}: no PEM certificate", ca.display()));
    }
    Ok(certs)
}

/// A 200 body is accepted when it is empty/comments only, or when at least
/// one line is a valid key line. A body where every line is garbage (an
/// error page, a captive portal) would otherwise wipe the user's keys.
pub fn plausible_key_list(body: &str) -> bool {
    if body.contains('\0') {
        return false;
    }
    let mut content = 0;
    for line in body.lines() {
        match keyline::parse_line(line) {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => content += 1,
        }
    }
    content == 0
}

/// What a failed request says: its kind, what it says about the mirror
/// (unreachable before any connection, or no answer after one), and why.
fn describe(e: &ureq::Error) -> (FailKind, Seen, String) {
    use ureq::Timeout as T;
    match e {
        ureq::Error::Timeout(t @ (T::Resolve | T::Connect)) => (
            FailKind::Network,
            Seen::Unreachable,
            format!("timed out ({t})"),
        ),
        ureq::Error::Timeout(t) => (
            FailKind::Network,
            Seen::NoAnswer,
            format!("timed out ({t})"),
        ),
        ureq::Error::Io(io) => describe_io(io),
        ureq::Error::HostNotFound => (
            FailKind::Network,
            Seen::Unreachable,
            "host not found".into(),
        ),
        ureq::Error::ConnectionFailed => (
            FailKind::Network,
            Seen::Unreachable,
            "connection failed".into(),
        ),
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => (FailKind::Tls, Seen::Unreachable, e.to_string()),
        // Connected, but what came back was no HTTP answer.
        other => (FailKind::Answer, Seen::NoAnswer, other.to_string()),
    }
}

fn describe_io(e: &std::io::Error) -> (FailKind, Seen, String) {
    use std::io::ErrorKind as K;
    // TLS failures reach us as io errors (InvalidData) wrapping the rustls
    // error; other io errors are the connection's: refused or unroutable
    // before it exists, reset or cut off after.
    let unreachable = matches!(
        e.kind(),
        K::ConnectionRefused
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable
    );
    let seen = if unreachable {
        Seen::Unreachable
    } else {
        Seen::NoAnswer
    };
    match e.get_ref() {
        Some(inner) if e.kind() == K::InvalidData => (
            FailKind::Tls,
            Seen::Unreachable,
            format!("{}: {inner}", e.kind()),
        ),
        Some(inner) => (FailKind::Network, seen, format!("{}: {inner}", e.kind())),
        None => (FailKind::Network, seen, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

    /// Which request failures say the mirror is unreachable (down at once)
    /// and which only that no answer came (counted across users).
    #[test]
    fn what_a_failed_request_says_about_the_mirror() {
        use std::io::{Error as IoError, ErrorKind as K};
        use ureq::{Error as E, Timeout as T};
        let seen = |e: E| describe(&e).1;
        for e in [
            E::Timeout(T::Resolve),
            E::Timeout(T::Connect),
            E::HostNotFound,
            E::ConnectionFailed,
            E::TlsRequired,
            E::Io(IoError::from(K::ConnectionRefused)),
            E::Io(IoError::from(K::NetworkUnreachable)),
            E::Io(IoError::new(K::InvalidData, "bad certificate")),
        ] {
            let d = format!("{e:?}");
            assert_eq!(seen(e), Seen::Unreachable, "{d}");
        }
        for e in [
            E::Timeout(T::Global),
            E::Timeout(T::RecvResponse),
            E::Timeout(T::RecvBody),
            E::Timeout(T::SendRequest),
            E::Io(IoError::from(K::ConnectionReset)),
            E::Io(IoError::from(K::UnexpectedEof)),
            E::Io(IoError::from(K::TimedOut)),
        ] {
            let d = format!("{e:?}");
            assert_eq!(seen(e), Seen::NoAnswer, "{d}");
        }
    }

    #[test]
    fn plausible_bodies() {
        assert!(plausible_key_list(""));
        assert!(plausible_key_list("# nobody home\n\n"));
        assert!(plausible_key_list(&format!("{ED}\n")));
        assert!(plausible_key_list(&format!("junk\n{ED}\nmore junk\n")));
        assert!(!plausible_key_list(
            "<html><body>502 Bad Gateway</body></html>"
        ));
        assert!(!plausible_key_list(&format!("{ED}\0\n")));
        assert!(!plausible_key_list("{\"keys\": []}"));
    }
}
