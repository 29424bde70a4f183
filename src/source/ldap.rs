//! An LDAP directory as a source (OpenLDAP or 389 with the openssh-lpk
//! schema's `sshPublicKey`, FreeIPA's `ipaSshPubKey`), read with OpenLDAP's
//! own `ldapsearch` (ldap-utils): the client admins already use and debug
//! with, its TLS and `ldap.conf`, and no LDAP code in the `keyward` binary
//! that every login runs.
//!
//! The search is paged (RFC 2696, `-E pr=N/noprompt`), so a server's size
//! limit does not cut a large directory short; any failure of the search
//! (bind refused, server down, size or time limit hit, a referral to
//! another server) fails the whole read, so publishing never sees a
//! partial directory. Each value of the key attribute is one key line. A
//! name held by two entries is left out and reported, never merged.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ldif, lines_text, Got, Item, Listing, Refused, Source};
use crate::entry::Kind;

/// The `ldapsearch` run (PATH lookup unless set, for tests and odd installs).
pub const LDAPSEARCH: &str = "ldapsearch";
/// Entries per page: under every common server's default size limit (500).
pub const PAGE_SIZE: u32 = 200;
/// The bind password file's size limit.
const PASSWORD_LIMIT: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    One,
    Sub,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Base => "base",
            Scope::One => "one",
            Scope::Sub => "sub",
        }
    }
}

/// `ldap[s|i]://host[:port]/BASE??SCOPE?FILTER` (RFC 4516), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUrl {
    /// `scheme://host:port`, what `ldapsearch -H` takes.
    pub server: String,
    pub tls: bool,
    pub base: String,
    pub scope: Scope,
    pub filter: String,
}

/// Whether `src` names an LDAP directory rather than a folder or a URL.
pub fn is_ldap_url(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    ["ldap://", "ldaps://", "ldapi://"]
        .iter()
        .any(|p| l.starts_with(p))
}

/// Parses an LDAP URL. The scope defaults to `sub` (RFC 4516's `base`
/// would read the base entry only), the filter to `(objectClass=*)`;
/// attributes and extensions are refused: they are options of publish
/// (`--user-attribute`, `--key-attribute`, `--bind-dn`).
pub fn parse_url(s: &str) -> Result<LdapUrl, String> {
    let bad = |why: &str| format!("LDAP URL {s:?}: {why}");
    let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !["ldap", "ldaps", "ldapi"].contains(&scheme.as_str()) {
        return Err(bad("the scheme must be ldap, ldaps or ldapi"));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(bad("bad host"));
    }
    if host.is_empty() && scheme != "ldapi" {
        return Err(bad("no host (the server must be named)"));
    }
    let mut parts = path.split('?');
    let base = decode(parts.next().unwrap_or(""), s)?;
    let attrs = parts.next().unwrap_or("");
    let scope = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
        "" | "sub" => Scope::Sub,
        "one" => Scope::One,
        "base" => Scope::Base,
        other => return Err(bad(&format!("unknown scope {other:?}"))),
    };
    let filter = decode(parts.next().unwrap_or(""), s)?;
    if !attrs.is_empty() {
        return Err(bad(
            "attributes in the URL are not used: set --user-attribute and --key-attribute",
        ));
    }
    if parts.next().is_some_and(|e| !e.is_empty()) {
        return Err(bad(
            "extensions are not supported (bind with --bind-dn and --bind-password-file)",
        ));
    }
    if base.is_empty() {
        return Err(bad("no base DN (ldap://host/ou=people,dc=example,dc=com)"));
    }
    let filter = if filter.is_empty() {
        "(objectClass=*)".to_owned()
    } else if filter.starts_with('(') {
        filter
    } else {
        format!("({filter})")
    };
    Ok(LdapUrl {
        server: format!("{scheme}://{host}"),
        tls: scheme == "ldaps",
        base,
        scope,
        filter,
    })
}

fn decode(part: &str, url: &str) -> Result<String, String> {
    let b = part.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = part
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("LDAP URL {url:?}: bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("LDAP URL {url:?}: not UTF-8"))
}

/// An attribute description keyward passes to ldapsearch: a name or an OID.
fn check_attribute(what: &str, a: &str) -> Result<(), String> {
    let name = a.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let oid = a.starts_with(|c: char| c.is_ascii_digit())
        && a.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if name || oid {
        Ok(())
    } else {
        Err(format!("{what} {a:?} is not an attribute name"))
    }
}

pub struct Ldap {
    pub url: LdapUrl,
    pub bind_dn: Option<String>,
    /// Owner-only; its content (one trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    pub starttls: bool,
    /// The CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    pub user_attribute: String,
    pub key_attribute: String,
    pub page_size: u32,
    /// For the whole search.
    pub timeout: Duration,
    pub ldapsearch: PathBuf,
}

impl Ldap {
    /// Checks the options together (before any connection).
    pub fn check(&self) -> Result<(), String> {
        check_attribute("--user-attribute", &self.user_attribute)?;
        check_attribute("--key-attribute", &self.key_attribute)?;
        match (&self.bind_dn, &self.password_file) {
            (Some(_), None) => {
                return Err("--bind-dn needs --bind-password-file (a password is never \
                     taken from the command line)"
                    .into())
            }
            (None, Some(_)) => return Err("--bind-password-file needs --bind-dn".into()),
            _ => {}
        }
        if self.starttls && self.url.tls {
            return Err("--starttls with an ldaps:// URL: the connection is already TLS".into());
        }
        if self.page_size == 0 {
            return Err("the page size must be at least 1".into());
        }
        Ok(())
    }

    /// ldapsearch's arguments (pure): the password is never among them.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-LLL".into(),
            "-o".into(),
            "ldif-wrap=no".into(),
            "-o".into(),
            format!("nettimeout={}", self.timeout.as_secs().max(1)),
            "-x".into(),
            "-H".into(),
            self.url.server.clone(),
        ];
        if self.starttls {
            // -ZZ: StartTLS must succeed, never a silent fallback to plain.
            a.push("-ZZ".into());
        }
        if let Some(dn) = &self.bind_dn {
            a.extend(["-D".into(), dn.clone(), "-y".into(), "/dev/stdin".into()]);
        }
        a.extend([
            "-E".into(),
            format!("pr={}/noprompt", self.page_size),
            "-z".into(),
            "0".into(),
            "-b".into(),
            self.url.base.clone(),
            "-s".into(),
            self.url.scope.as_str().into(),
            "--".into(),
            self.url.filter.clone(),
            self.user_attribute.clone(),
            self.key_attribute.clone(),
        ]);
        a
    }

    fn password(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let mut pw = crate::os::secret::read(path, PASSWORD_LIMIT)
            .map_err(|e| format!("bind password file {e}"))?;
        // `echo secret > file` adds a newline that is no part of the password.
        if pw.ends_with(b"\n") {
            pw.pop();
            if pw.ends_with(b"\r") {
                pw.pop();
            }
        }
        if pw.is_empty() {
            return Err(format!(
                "bind password file {} is empty (an empty password is an anonymous bind)",
                path.display()
            ));
        }
        Ok(Some(pw))
    }

    /// Runs ldapsearch; its LDIF output, or why the search failed.
    fn search(&self) -> Result<String, String> {
        let password = self.password()?;
        let mut cmd = Command::new(&self.ldapsearch);
        cmd.args(self.args())
            .env("LDAPTLS_REQCERT", "demand")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = &self.ca_file {
            cmd.env("LDAPTLS_CACERT", ca);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.ldapsearch.display()))?;
        let stdin = child.stdin.take();
        let feed = std::thread::spawn(move || {
            if let (Some(mut s), Some(pw)) = (stdin, password) {
                let _ = s.write_all(&pw);
            }
        });
        let drain = |p: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(p) = p {
                    let _ = p.take(4 << 30).read_to_end(&mut v);
                }
                v
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "LDAP search at {} took longer than {}s",
                        self.url.server,
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e.to_string()),
            }
        };
        let _ = feed.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        if !status.success() {
            return Err(search_failure(&self.url.server, status.code(), &stderr));
        }
        String::from_utf8(stdout)
            .map_err(|_| "ldapsearch printed something that is not UTF-8".into())
    }
}

/// Why a search failed, from ldapsearch's exit code (the LDAP result code)
/// and its message.
fn search_failure(server: &str, code: Option<i32>, stderr: &str) -> String {
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = said.join("; ");
    let hint = match code {
        Some(4) => " (the server's size limit cut the search short; raise its limit for paged searches, e.g. OpenLDAP's size.prtotal)",
        Some(3) => " (the server's time limit)",
        Some(10) => " (a referral: keyward does not follow referrals; name the server that holds the entries)",
        Some(32) => " (the base DN does not exist)",
        Some(49) => " (check --bind-dn and the password file)",
        Some(255) => " (server unreachable)",
        _ => "",
    };
    let code = code.map_or("killed".to_owned(), |c| format!("exit {c}"));
    format!("LDAP search at {server} failed ({code}){hint}: {said}")
}

/// The listing from the search's LDIF (pure): one item per name with keys;
/// a name held by two entries, or an entry with no name or two names, is
/// refused (left out).
pub fn listing(text: &str, user_attribute: &str, key_attribute: &str) -> Result<Listing, String> {
    let ldif = ldif::parse(text)?;
    if let Some(r) = ldif.references.first() {
        return Err(format!(
            "the search returned a referral to {r}: keyward does not follow referrals, so \
             the users there would be missing; search that server, or narrow the base"
        ));
    }
    if ldif.entries.is_empty() {
        return Err("the search matched no entries: check the base DN and the filter".into());
    }
    let mut listing = Listing::default();
    let mut refuse = |file: String, why: String| listing.refused.push(Refused { file, why });
    // Names compare without case, as LDAP's uid does (caseIgnoreMatch): a
    // login as either spelling would find both entries.
    let mut by_name: BTreeMap<String, Vec<(String, &ldif::Entry)>> = BTreeMap::new();
    for e in &ldif.entries {
        let names = e.values(user_attribute);
        match names.as_slice() {
            // Not an account (the base, an ou), unless it holds keys.
            [] if e.values(key_attribute).is_empty() => {}
            [] => refuse(
                e.dn.clone(),
                format!("the entry has {key_attribute} but no {user_attribute}"),
            ),
            [name] => by_name
                .entry(name.to_lowercase())
                .or_default()
                .push((name.clone(), e)),
            _ => refuse(
                e.dn.clone(),
                format!(
                    "{} values of {user_attribute} ({}): which name the keys are for is ambiguous",
                    names.len(),
                    names.join(", ")
                ),
            ),
        }
    }
    let mut with_values = 0;
    let mut items = Vec::new();
    let mut notes = Vec::new();
    for group in by_name.into_values() {
        let [(name, entry)] = group.as_slice() else {
            let mut dns: Vec<&str> = group.iter().map(|(_, e)| e.dn.as_str()).collect();
            dns.sort_unstable();
            let why = format!(
                "{} entries have the name {}: never merged",
                group.len(),
                group[0].0
            );
            refuse(dns.join("; "), why);
            continue;
        };
        let keys = entry.values(key_attribute);
        if keys.is_empty() {
            continue;
        }
        with_values += 1;
        items.push(Item {
            user: name.clone(),
            kind: Kind::Keys,
            got: Got::Text(lines_text(name, &keys, &mut notes)),
            origin: entry.dn.clone(),
        });
    }
    if with_values == 0 {
        return Err(format!(
            "{} entries matched, but none has a {key_attribute} value: is the attribute \
             readable by this bind (anonymous binds often see no keys)?",
            ldif.entries.len()
        ));
    }
    listing.items = items;
    listing.notes = notes;
    listing.finish()
}

impl Source for Ldap {
    fn describe(&self) -> String {
        format!(
            "LDAP {} base {:?} filter {}",
            self.url.server, self.url.base, self.url.filter
        )
    }

    fn read(&self) -> Result<Listing, String> {
        self.check()?;
        let text = self.search()?;
        listing(&text, &self.user_attribute, &self.key_attribute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("ldaps://ldap.example.com:636/ou=people,dc=example,dc=com??sub?(objectClass=posixAccount)").unwrap();
        assert_eq!(u.server, "ldaps://ldap.example.com:636");
        assert!(u.tls);
        assert_eq!(u.base, "ou=people,dc=example,dc=com");
        assert_eq!(u.scope, Scope::Sub);
        assert_eq!(u.filter, "(objectClass=posixAccount)");
        let u = parse_url("ldap://127.0.0.1:3890/ou=people,dc=x").unwrap();
        assert_eq!(
            (u.scope, u.filter.as_str(), u.tls),
            (Scope::Sub, "(objectClass=*)", false)
        );
        let u =
            parse_url("ldap://h/dc=x??one?%28%26%28uid%3Da%2A%29%28!%28x%3D1%29%29%29").unwrap();
        assert_eq!(
            (u.scope, u.filter.as_str()),
            (Scope::One, "(&(uid=a*)(!(x=1)))")
        );
        assert_eq!(
            parse_url("ldap://h/dc=x???uid=a").unwrap().filter,
            "(uid=a)"
        );
        assert!(parse_url("ldapi://%2Frun%2Fslapd%2Fldapi/dc=x").is_ok());
        for bad in [
            "http://h/dc=x",
            "ldap:///dc=x",
            "ldap://h/",
            "ldap://h/dc=x?uid?sub",
            "ldap://h/dc=x??subtree",
            "ldap://h/dc=x??sub?(uid=*)?bindname=cn=admin",
            "ldap://h/dc=%zz",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(is_ldap_url("LDAPS://h/dc=x"));
        assert!(!is_ldap_url("/srv/keys"));
    }

    fn ldap(bind: bool) -> Ldap {
        Ldap {
            url: parse_url("ldap://127.0.0.1:389/dc=x").unwrap(),
            bind_dn: bind.then(|| "cn=reader,dc=x".into()),
            password_file: bind.then(|| "/etc/keyward/ldap.pw".into()),
            starttls: true,
            ca_file: None,
            user_attribute: "uid".into(),
            key_attribute: "sshPublicKey".into(),
            page_size: 200,
            timeout: Duration::from_secs(60),
            ldapsearch: LDAPSEARCH.into(),
        }
    }

    #[test]
    fn arguments_never_hold_the_password() {
        let l = ldap(true);
        l.check().unwrap();
        let a = l.args();
        let s = a.join(" ");
        assert!(s.contains("-ZZ"), "{s}");
        assert!(s.contains("-D cn=reader,dc=x -y /dev/stdin"), "{s}");
        assert!(s.contains("-E pr=200/noprompt"), "{s}");
        assert!(s.ends_with("-- (objectClass=*) uid sshPublicKey"), "{s}");
        let mut l = ldap(true);
        l.password_file = None;
        assert!(l.check().unwrap_err().contains("--bind-password-file"));
        let mut l = ldap(false);
        l.key_attribute = "sshPublicKey) (x".into();
        assert!(l.check().is_err());
        let mut l = ldap(false);
        l.url = parse_url("ldaps://h/dc=x").unwrap();
        assert!(l.check().is_err(), "StartTLS inside ldaps");
    }

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

    #[test]
    fn one_item_per_unambiguous_name_with_keys() {
        let text = format!(
            "dn: uid=alice,dc=x\nuid: alice\nsshPublicKey: {K1} a1\nsshPublicKey: {K1} a2\n\n\
             dn: uid=bob,dc=x\nuid: bob\n\n\
             dn: uid=carol,ou=a,dc=x\nuid: carol\nsshPublicKey: {K1} c1\n\n\
             dn: uid=Carol,ou=b,dc=x\nuid: Carol\nsshPublicKey: {K1} c2\n\n\
             dn: cn=two,dc=x\nuid: dave\nuid: dmiller\nsshPublicKey: {K1} d\n\n\
             dn: cn=svc,dc=x\nsshPublicKey: {K1} s\n\n\
             dn: ou=people,dc=x\nou: people\n\n"
        );
        let l = listing(&text, "uid", "sshPublicKey").unwrap();
        let users: Vec<&str> = l.items.iter().map(|i| i.user.as_str()).collect();
        assert_eq!(users, ["alice"]);
        assert_eq!(l.items[0].got, Got::Text(format!("{K1} a1\n{K1} a2\n")));
        let refused: Vec<String> = l
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.file, r.why))
            .collect();
        assert_eq!(
            refused,
            [
                "cn=svc,dc=x: the entry has sshPublicKey but no uid",
                "cn=two,dc=x: 2 values of uid (dave, dmiller): which name the keys are for is ambiguous",
                "uid=Carol,ou=b,dc=x; uid=carol,ou=a,dc=x: 2 entries have the name carol: never merged",
            ]
        );
        assert_eq!(l.items[0].origin, "uid=alice,dc=x");
    }

    #[test]
    fn searches_that_cannot_be_complete_fail() {
        assert!(listing("", "uid", "sshPublicKey").is_err());
        let r = "dn: uid=a,dc=x\nuid: a\nsshPublicKey: k\n\nref: ldap://other/dc=x\n\n";
        assert!(listing(r, "uid", "sshPublicKey")
            .unwrap_err()
            .contains("referral"));
        let none = "dn: uid=a,dc=x\nuid: a\n\n";
        assert!(listing(none, "uid", "sshPublicKey")
            .unwrap_err()
            .contains("readable"));
        let msg = search_failure(
            "ldap://h",
            Some(49),
            "ldap_bind: Invalid credentials (49)\n",
        );
        assert!(
            msg.contains("exit 49") && msg.contains("Invalid credentials"),
            "{msg}"
        );
    }
}
