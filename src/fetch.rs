//! What a directory lookup can say: keys, "not modified", "no keys", every
//! mirror failed (and why, typed), or keyward's own settings are unusable.
//! Data only: [`crate::directory`] produces it, [`crate::state`] decides
//! what it means for the cache and the login.

/// What the directory said about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    Keys {
        body: String,
        etag: Option<String>,
        url: String,
        /// Serial of a verified signed file.
        serial: Option<u64>,
        /// The pinned signer that signed it.
        signer: Option<crate::signed::Signer>,
    },
    NotModified {
        url: String,
    },
    NoKeys {
        url: String,
    },
    /// Every mirror failed; one reason per mirror tried.
    Unavailable {
        errors: Vec<MirrorError>,
    },
    /// keyward's own set-up cannot be trusted (an unsafe `ca_file`, unusable
    /// signers): no answer may be served, not even a stale one.
    Misconfigured {
        error: String,
    },
}

/// Why one mirror gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorError {
    pub url: String,
    pub kind: FailKind,
    /// What happened, for the log (`HTTP 503`, `timed out (…)`).
    pub detail: String,
}

/// The kind of a mirror failure: what the admin has to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// DNS, connect, reset, timeout, the time budget: the way to the server.
    Network,
    /// The TLS handshake or the server certificate.
    Tls,
    /// The server answered, but not with a key list (status, redirect,
    /// HTML, garbage, size).
    Answer,
    /// The signature is missing, invalid or by an unknown key, the signed
    /// header does not fit, or the file is older than the rollback floor.
    Signature,
}

impl MirrorError {
    pub fn new(url: &str, kind: FailKind, detail: impl Into<String>) -> MirrorError {
        MirrorError {
            url: url.to_owned(),
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.url, self.detail)
    }
}
