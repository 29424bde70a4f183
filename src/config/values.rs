//! The config's value types and their checks: durations, directory URL
//! templates, `[files]` path templates, signer keys, the index name, and the
//! serde functions that reject a bad value where it is written.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Largest configured response cap: keys for one user never need more.
const MAX_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// Key algorithms keyward knows how to check; `key_types` must name these.
pub const KNOWN_KEY_TYPES: &[&str] = crate::keyline::KEY_TYPES;

/// The index file name when `[directory] index` is not set.
pub const DEFAULT_INDEX: &str = "keyward.index";

/// `index = "name"` or `index = false` (`true`: the default name).
pub(super) fn index_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        On(bool),
        Name(String),
    }
    match V::deserialize(d)? {
        V::On(false) => Ok(None),
        V::On(true) => Ok(Some(DEFAULT_INDEX.into())),
        V::Name(n) => check_index_name(&n)
            .map(|()| Some(n))
            .map_err(serde::de::Error::custom),
    }
}

/// One path segment of unreserved URL characters: the name is appended to
/// each mirror's folder as is.
pub(super) fn check_index_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 255
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "index {n:?} must be a file name of letters, digits, '.', '_', '-', '~' (or false)"
        ))
    }
}

/// A signer public key (`ssh-ed25519 AAAA… comment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerKey(pub ssh_key::PublicKey);

pub(super) fn signer_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SignerKey>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| {
            parse_signer(s)
                .map(SignerKey)
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

/// Parses one signer line: a plain public key, no options.
pub fn parse_signer(s: &str) -> Result<ssh_key::PublicKey, String> {
    match crate::keyline::parse_line(s) {
        Ok(Some(k)) if k.options.is_empty() => Ok(k.key),
        Ok(Some(_)) => Err(format!("signer {s:?}: options are not allowed")),
        Ok(None) => Err("empty signer key".into()),
        Err(e) => Err(format!("signer {s:?}: {e}")),
    }
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// A duration written like `500ms`, `2s`, `5m`, `3d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(ConfDuration)
            .map_err(serde::de::Error::custom)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"2s\", \"5m\", \"3d\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// A directory URL with a `{user}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(format!(
                "directory URL {s:?} must start with https:// or http://"
            ));
        }
        if s.matches("{user}").count() != 1 {
            return Err(format!(
                "directory URL {s:?} must contain {{user}} exactly once"
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("directory URL {s:?} contains whitespace"));
        }
        let host_part = &s[s.find("://").map(|i| i + 3).unwrap_or(0)..];
        if host_part.starts_with("{user}") || host_part.split('/').next() == Some("") {
            return Err(format!(
                "directory URL {s:?} has no host (or {{user}} in the host)"
            ));
        }
        if host_part
            .split('/')
            .next()
            .is_some_and(|h| h.contains("{user}"))
        {
            return Err(format!(
                "directory URL {s:?}: {{user}} must be in the path, not the host"
            ));
        }
        Ok(UrlTemplate(s.to_owned()))
    }

    /// The URL for `user`, percent-encoded: everything but RFC 3986's
    /// unreserved characters (`alice@corp` becomes `alice%40corp`), so a
    /// name can never add a path segment, a query or a fragment.
    pub fn expand(&self, user: &str) -> String {
        self.0.replace("{user}", &percent_encode(user))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder the `{user}` path lives in, with its trailing `/`
    /// (`https://k/users/{user}.keys` → `https://k/users/`); None when
    /// `{user}` is in the query or fragment, where no folder is implied.
    pub fn folder(&self) -> Option<&str> {
        let at = self.0.find("{user}")?;
        let head = &self.0[..at];
        if head.contains(['?', '#']) {
            return None;
        }
        head.rfind('/').map(|i| &self.0[..=i])
    }
}

impl<'de> Deserialize<'de> for UrlTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UrlTemplate::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 0 || n > MAX_BYTES_LIMIT {
        return Err(serde::de::Error::custom(format!(
            "max_bytes must be between 1 and {MAX_BYTES_LIMIT}"
        )));
    }
    Ok(n)
}

pub(super) fn key_types<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for t in &v {
        if !KNOWN_KEY_TYPES.contains(&t.as_str()) {
            return Err(serde::de::Error::custom(format!(
                "unknown key type {t:?}; known: {}",
                KNOWN_KEY_TYPES.join(", ")
            )));
        }
    }
    Ok(v)
}

pub(super) fn facility<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if crate::audit::parse_facility(&s).is_none() {
        return Err(serde::de::Error::custom(format!(
            "unknown syslog facility {s:?}; use auth, authpriv, daemon, user or local0..local7"
        )));
    }
    Ok(s)
}

pub(super) fn file_templates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for p in &v {
        check_file_template(p).map_err(serde::de::Error::custom)?;
    }
    Ok(v)
}

/// `[files] paths` entries: `%h`, `%u`, `%%` only, absolute after expansion.
pub(super) fn check_file_template(p: &str) -> Result<(), String> {
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('h' | 'u' | '%') => {}
                other => {
                    return Err(format!(
                        "file path {p:?}: unknown token %{}; use %h, %u or %%",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        }
    }
    if !(p.starts_with('/') || p.starts_with("%h")) {
        return Err(format!("file path {p:?} must be absolute or start with %h"));
    }
    Ok(())
}

/// Expands `%h`, `%u` and `%%` in a `[files] paths` template.
pub fn expand_file_template(template: &str, home: &str, user: &str) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(home),
            Some('u') => out.push_str(user),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o)
            }
            None => out.push('%'),
        }
    }
    out
}
