//! The key directory: every mirror reachable (TLS valid), and with
//! `--user U` U's file fetched and verified through the login path's own
//! code (`HttpDirectory`), signatures included. The cache is never touched.
//! Turning an answer into a check is pure.

use crate::config::{DirectoryConfig, UrlTemplate};
use crate::directory::{Directory, FailKind, Fetch, HttpDirectory, MirrorError, Request};
use crate::report::Check;

/// A user name no directory should know: 404 and 200 both prove the
/// mirror answers.
pub const PROBE_USER: &str = "keyward-doctor-probe";

fn is_https(t: &UrlTemplate) -> bool {
    t.as_str().to_ascii_lowercase().starts_with("https://")
}

/// The fix for the kind of failure most worth fixing among `errors` (a
/// signature before TLS before an odd answer before the network).
pub fn fix_for(errors: &[MirrorError], ca_file: bool) -> String {
    let has = |k: FailKind| errors.iter().any(|e| e.kind == k);
    if has(FailKind::Signature) {
        "re-sign the directory files with a key listed in [directory] signers (keyward publish --signer KEY), or pin the key that signs them".into()
    } else if has(FailKind::Tls) {
        if ca_file {
            "the server certificate does not chain to [directory] ca_file (or its name/date is wrong): fix the certificate or ca_file".into()
        } else {
            "the server certificate is not trusted (or its name/date is wrong): fix it, or set [directory] ca_file to your CA".into()
        }
    } else if has(FailKind::Answer) {
        "fix the directory server (it answers, but not with a key list)".into()
    } else {
        "check the URL, DNS, routes/firewall and that the directory server is running".into()
    }
}

/// keyward's own directory settings are unusable (ca_file, signers, proxy).
const MISCONFIGURED_FIX: &str = "fix the [directory] setting named (ca_file, signers, signers_file or proxy): keyward refuses to fetch, and fails closed, until then";

/// The failures without their URLs (the check already names the URL).
fn details(errors: &[MirrorError]) -> String {
    let d: Vec<&str> = errors.iter().map(|e| e.detail.as_str()).collect();
    d.join("; ")
}

/// The `directory.mirror` check for the probe answer of one mirror.
pub fn mirror_check(t: &UrlTemplate, fetched: &Fetch, signed: bool, ca_file: bool) -> Check {
    let url = t.as_str();
    let how = match fetched {
        Fetch::NoKeys { .. } => "HTTP 404 for a probe user",
        Fetch::Keys { .. } | Fetch::NotModified { .. } => "HTTP 200 for a probe user",
        Fetch::Unavailable { errors } => {
            return Check::fail(
                "directory.mirror",
                format!("unreachable: {}", details(errors)),
                fix_for(errors, ca_file),
            )
            .subject(url);
        }
        Fetch::Misconfigured { error } => {
            return Check::fail(
                "directory.mirror",
                format!("keyward cannot fetch safely: {error}"),
                MISCONFIGURED_FIX,
            )
            .subject(url);
        }
    };
    let check = if is_https(t) {
        Check::ok(
            "directory.mirror",
            format!("reachable, TLS verified ({how})"),
        )
    } else if signed {
        Check::ok(
            "directory.mirror",
            format!("reachable over plain http ({how}); answers are protected by signatures"),
        )
    } else {
        Check::warn(
            "directory.mirror",
            format!(
                "reachable over plain http ({how}): anyone on the path can change the keys served"
            ),
            "use an https:// URL, or sign the directory ([directory] signers)",
        )
    };
    check.subject(url)
}

/// The `directory.user` check for U's file from one mirror.
pub fn user_check(
    t: &UrlTemplate,
    user: &str,
    fetched: &Fetch,
    signed: bool,
    ca_file: bool,
) -> Check {
    let url = t.expand(user);
    match fetched {
        Fetch::Keys { body, serial, .. } => {
            let keys = body
                .lines()
                .filter(|l| matches!(crate::keyline::parse_line(l), Ok(Some(_))))
                .count();
            let sig = match (signed, serial) {
                (true, Some(s)) => format!(", signature valid (serial {s})"),
                _ => String::new(),
            };
            Check::ok(
                "directory.user",
                format!("{user}: HTTP 200, {keys} valid key line(s){sig}"),
            )
        }
        Fetch::NotModified { .. } => Check::ok("directory.user", format!("{user}: HTTP 304")),
        Fetch::NoKeys { .. } => Check::warn(
            "directory.user",
            format!("{user}: HTTP 404: the directory has no keys for {user}, who cannot log in with a key"),
            format!("publish {user}'s keys to the directory"),
        ),
        Fetch::Unavailable { errors } => {
            let what = if errors.iter().any(|e| e.kind == FailKind::Signature) {
                "bad signature"
            } else {
                "fetch failed"
            };
            Check::fail(
                "directory.user",
                format!("{user}: {what}: {}", details(errors)),
                fix_for(errors, ca_file),
            )
        }
        Fetch::Misconfigured { error } => Check::fail(
            "directory.user",
            format!("{user}: keyward cannot fetch safely: {error}"),
            MISCONFIGURED_FIX,
        ),
    }
    .subject(url)
}

/// Probes every mirror (and U's file on each with `user`).
pub fn checks(config: &DirectoryConfig, user: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    let signed = config.signed();
    let ca = config.ca_file.is_some();
    if signed {
        match config.load_signers() {
            Ok(keys) => {
                let fps: Vec<String> = keys
                    .iter()
                    .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
                    .collect();
                let hint = if user.is_none() {
                    "; signatures are per user: `keyward doctor --user U` verifies one file"
                } else {
                    ""
                };
                out.push(Check::ok(
                    "directory.signers",
                    format!("{} signer key(s): {}{hint}", keys.len(), fps.join(", ")),
                ));
            }
            Err(e) => {
                out.push(Check::fail(
                    "directory.signers",
                    format!("{e}: every directory answer is refused"),
                    "fix [directory] signers / signers_file (root-owned, readable by the [cache] owner, one public key per line)",
                ));
            }
        }
    }
    for t in &config.urls {
        let mut one = config.clone();
        one.urls = vec![t.clone()];
        let dir = HttpDirectory::new(&one);
        let probe = dir.fetch(&Request {
            user: PROBE_USER,
            etag: None,
            floor: None,
        });
        out.push(mirror_check(t, &probe, signed, ca));
        if let Some(u) = user {
            let got = dir.fetch(&Request {
                user: u,
                etag: None,
                floor: None,
            });
            out.push(user_check(t, u, &got, signed, ca));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn t(s: &str) -> UrlTemplate {
        UrlTemplate::parse(s).unwrap()
    }

    #[test]
    fn mirrors() {
        let https = t("https://keys.example.com/{user}.keys");
        let http = t("http://127.0.0.1:8080/{user}.keys");
        let nokeys = Fetch::NoKeys { url: "u".into() };
        assert_eq!(
            mirror_check(&https, &nokeys, false, false).status,
            Status::Ok
        );
        assert_eq!(
            mirror_check(&http, &nokeys, false, false).status,
            Status::Warn
        );
        assert_eq!(mirror_check(&http, &nokeys, true, false).status, Status::Ok);
        let down = Fetch::Unavailable {
            errors: vec![MirrorError::new(
                "http://127.0.0.1:9/keyward-doctor-probe.keys",
                FailKind::Network,
                "connection failed",
            )],
        };
        let c = mirror_check(&http, &down, false, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("connection failed"));
        assert!(c.fix.unwrap().contains("server is running"));
        let tls = Fetch::Unavailable {
            errors: vec![MirrorError::new(
                "u",
                FailKind::Tls,
                "InvalidData: invalid peer certificate: UnknownIssuer",
            )],
        };
        assert!(mirror_check(&https, &tls, false, true)
            .fix
            .unwrap()
            .contains("ca_file"));
    }

    #[test]
    fn user_files() {
        let http = t("http://127.0.0.1:8080/{user}.keys");
        let bad = Fetch::Unavailable {
            errors: vec![MirrorError::new(
                "u",
                FailKind::Signature,
                "signed by SHA256:abc, which is not a configured signer",
            )],
        };
        let c = user_check(&http, "alice", &bad, true, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.starts_with("alice: bad signature"), "{}", c.found);
        assert!(c.fix.unwrap().contains("re-sign"));
        assert_eq!(
            c.subject.as_deref(),
            Some("http://127.0.0.1:8080/alice.keys")
        );
        let ok = Fetch::Keys {
            body: "#keyward user=alice serial=3 expires=2030-01-01T00:00:00Z\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A\n".into(),
            etag: None,
            url: "u".into(),
            serial: Some(3),
            signer: None,
        };
        let c = user_check(&http, "alice", &ok, true, false);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.found
                .contains("1 valid key line(s), signature valid (serial 3)"),
            "{}",
            c.found
        );
        assert_eq!(
            user_check(
                &http,
                "alice",
                &Fetch::NoKeys { url: "u".into() },
                false,
                false
            )
            .status,
            Status::Warn
        );
    }
}
