//! The central key directory over HTTP(S).
//!
//! Mirrors are tried in order within one total time budget. Each attempt
//! gets an equal share of what is left, so a black-holed first mirror cannot
//! eat the whole budget, while a mirror that fails fast hands its share on.
//! 404 is authoritative ("no keys"); 304 confirms the cached entry; anything
//! else that is not a plausible key list (5xx, redirect, oversize, HTML,
//! garbage, TLS failure, timeout) makes the mirror unavailable.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::{DirectoryConfig, UrlTemplate};
use crate::entry::Kind;
pub use crate::fetch::{FailKind, Fetch, MirrorError};
use crate::keyline;
use crate::state::Floor;

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

pub struct HttpDirectory<'a> {
    config: &'a DirectoryConfig,
    /// Built on first use only: a fresh cache answer never sets up TLS.
    agent: OnceLock<Result<ureq::Agent, String>>,
    /// Keep connections open between requests (sync); a login makes one.
    pooled: bool,
    /// Pinned signers, loaded on first use when signatures are required.
    signers: OnceLock<Result<Vec<ssh_key::PublicKey>, String>>,
    /// Which file this directory serves, and its URL templates.
    kind: Kind,
    urls: Result<std::borrow::Cow<'a, [UrlTemplate]>, String>,
}

impl<'a> HttpDirectory<'a> {
    /// For the login path: one lookup, no connection pool.
    pub fn new(config: &'a DirectoryConfig) -> Self {
        HttpDirectory {
            config,
            agent: OnceLock::new(),
            pooled: false,
            signers: OnceLock::new(),
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

    /// Fetches `{url}.sig` and checks the file against the pinned signers.
    fn check_signed(
        &self,
        agent: &ureq::Agent,
        url: &str,
        body: &str,
        req: &Request,
        deadline: Instant,
    ) -> Result<u64, (FailKind, String)> {
        let signers = self.signers().map_err(|e| (FailKind::Signature, e))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let sig_url = format!("{url}.sig");
        let mut resp = agent
            .get(&sig_url)
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|e| {
                let (kind, why) = describe(&e);
                (kind, format!("signature {sig_url}: {why}"))
            })?;
        if resp.status().as_u16() != 200 {
            let why = format!("signature {sig_url}: HTTP {}", resp.status().as_u16());
            return Err((FailKind::Signature, why));
        }
        let mut sig = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_end(&mut sig)
            .map_err(|e| {
                let (kind, why) = describe_io(&e);
                (kind, format!("signature {sig_url}: {why}"))
            })?;
        let now = crate::os::clock::now_secs() as i64;
        let bad = |why: String| (FailKind::Signature, why);
        let h = crate::signed::check_file(body, &sig, signers, req.user, self.kind, now)
            .map_err(bad)?;
        if let Some(floor) = &req.floor {
            floor
                .admits(h.serial, body)
                .map_err(|r| bad(r.to_string()))?;
        }
        Ok(h.serial)
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
    ) -> Attempt {
        let mut get = agent.get(url);
        if let Some(etag) = req.etag {
            get = get.header("If-None-Match", etag);
        }
        let result = get
            .config()
            .timeout_global(Some(budget))
            .timeout_connect(Some(budget))
            .build()
            .call();
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let (kind, why) = describe(&e);
                return Attempt::Failed(kind, why);
            }
        };
        if let Some(other) = status_outcome(&resp, url) {
            return other;
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match read_key_list(&mut resp, self.config.max_bytes, self.kind) {
            Ok(b) => b,
            Err((kind, why)) => return Attempt::Failed(kind, why),
        };
        let serial = if self.config.signed() {
            match self.check_signed(agent, url, &body, req, deadline) {
                Ok(serial) => Some(serial),
                Err((kind, why)) => return Attempt::Failed(kind, why),
            }
        } else {
            None
        };
        Attempt::Done(Fetch::Keys {
            body,
            etag,
            url: url.into(),
            serial,
        })
    }
}

/// Every status but 200: 304 and 404 are answers, the rest failures.
fn status_outcome(resp: &ureq::http::Response<ureq::Body>, url: &str) -> Option<Attempt> {
    let answer = |why: String| Some(Attempt::Failed(FailKind::Answer, why));
    match resp.status().as_u16() {
        200 => None,
        304 => Some(Attempt::Done(Fetch::NotModified { url: url.into() })),
        404 => Some(Attempt::Done(Fetch::NoKeys { url: url.into() })),
        status @ (301 | 302 | 303 | 307 | 308) => {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            answer(format!("HTTP {status} redirect to {to} not followed"))
        }
        s => answer(format!("HTTP {s}")),
    }
}

/// A 200 body that can be a key list: within `max` bytes, not HTML, UTF-8
/// text without NUL, with a key line (or only comments).
fn read_key_list(
    resp: &mut ureq::http::Response<ureq::Body>,
    max: u64,
    kind: Kind,
) -> Result<String, (FailKind, String)> {
    let answer = |why: &str| Err((FailKind::Answer, why.to_owned()));
    let too_large = format!("response larger than max_bytes {max}");
    if resp.body().content_length().is_some_and(|n| n > max) {
        return answer(&too_large);
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
        let (kind, why) = describe_io(&e);
        return Err((kind, format!("reading body: {why}")));
    }
    if bytes.len() as u64 > max {
        return answer(&too_large);
    }
    if html {
        return answer("response is HTML, not a key list");
    }
    let Ok(body) = String::from_utf8(bytes) else {
        return answer("response is not UTF-8 text");
    };
    if body.contains('\0') {
        return answer("response contains NUL bytes");
    }
    match kind {
        Kind::Keys if !plausible_key_list(&body) => {
            answer("response has no valid key line (garbage?)")
        }
        Kind::Principals if !crate::principals::plausible(&body) => {
            answer("response has no valid principals line (garbage?)")
        }
        _ => Ok(body),
    }
}

enum Attempt {
    Done(Fetch),
    Failed(FailKind, String),
}

impl Directory for HttpDirectory<'_> {
    fn fetch(&self, req: &Request) -> Fetch {
        let deadline = Instant::now() + self.config.timeout.0;
        let agent = match self.agent() {
            Ok(a) => a,
            Err(error) => return Fetch::Misconfigured { error },
        };
        if self.config.signed() {
            if let Err(error) = self.signers() {
                return Fetch::Misconfigured { error };
            }
        }
        let urls = match &self.urls {
            Ok(u) => u,
            Err(error) => {
                return Fetch::Misconfigured {
                    error: error.clone(),
                }
            }
        };
        let mut errors = Vec::new();
        for (i, template) in urls.iter().enumerate() {
            let url = template.expand(req.user);
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(5) {
                let why = "time budget exhausted";
                errors.push(MirrorError::new(&url, FailKind::Network, why));
                continue;
            }
            let share = left / (urls.len() - i) as u32;
            match self.attempt(agent, &url, req, share, deadline) {
                Attempt::Done(f) => return f,
                Attempt::Failed(kind, why) => errors.push(MirrorError::new(&url, kind, why)),
            }
        }
        Fetch::Unavailable { errors }
    }
}

/// Reads the extra trust anchors with the rules of the config file itself
/// (root-owned, not group/world-writable, every parent too, no symlink
/// tricks): whoever can write it can impersonate the directory.
fn load_ca_file(ca: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut pem = Vec::new();
    crate::safepath::open_checked(ca, &[0], None)
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

fn describe(e: &ureq::Error) -> (FailKind, String) {
    match e {
        ureq::Error::Timeout(t) => (FailKind::Network, format!("timed out ({t})")),
        ureq::Error::Io(io) => describe_io(io),
        ureq::Error::HostNotFound => (FailKind::Network, "host not found".into()),
        ureq::Error::ConnectionFailed => (FailKind::Network, "connection failed".into()),
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => (FailKind::Tls, e.to_string()),
        other => (FailKind::Answer, other.to_string()),
    }
}

fn describe_io(e: &std::io::Error) -> (FailKind, String) {
    // TLS failures reach us as io errors (InvalidData) wrapping the rustls
    // error; other io errors are the connection's.
    match e.get_ref() {
        Some(inner) if e.kind() == std::io::ErrorKind::InvalidData => {
            (FailKind::Tls, format!("{}: {inner}", e.kind()))
        }
        Some(inner) => (FailKind::Network, format!("{}: {inner}", e.kind())),
        None => (FailKind::Network, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

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
