//! `SSH_AUTH_INFO_0`: which methods authenticated a session (pure).
//!
//! sshd (auth2.c, `auth2_update_session_info`) puts one line per completed
//! authentication method into the PAM environment:
//!
//! ```text
//! publickey ssh-ed25519 AAAAC3Nz…
//! publickey ssh-ed25519-cert-v01@openssh.com AAAAIHNz…
//! keyboard-interactive/pam
//! password
//! ```
//!
//! i.e. `METHOD[/SUBMETHOD][ KEYTYPE BASE64][ EXTRA]`, each line ending in
//! `\n`. With `AuthenticationMethods publickey,password` there are several
//! lines. The variable is complete only at the session stage.

use ssh_key::{Certificate, HashAlg, PublicKey};

/// Longer values are not parsed (sshd writes a few hundred bytes per line;
/// even several 16k-bit RSA keys stay far below this).
pub const MAX_LEN: usize = 64 * 1024;
/// At most this many lines are looked at.
pub const MAX_LINES: usize = 32;

/// One completed authentication method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// `publickey`, `password`, `keyboard-interactive`, `hostbased`, …
    pub name: String,
    /// `pam` in `keyboard-interactive/pam`.
    pub submethod: Option<String>,
    /// The key, for `publickey` and `hostbased`.
    pub key: Option<Key>,
}

impl Method {
    /// `name[/submethod]` as sshd wrote it.
    pub fn label(&self) -> String {
        match &self.submethod {
            Some(s) => format!("{}/{}", self.name, s),
            None => self.name.clone(),
        }
    }

    pub fn is_publickey(&self) -> bool {
        self.name == "publickey"
    }
}

/// The key of a `publickey`/`hostbased` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The key type token exactly as sshd wrote it
    /// (`ssh-ed25519`, `ssh-ed25519-cert-v01@openssh.com`, …).
    pub key_type: String,
    /// `SHA256:…` of the key (for a certificate: of the certified key, as
    /// sshd logs it), or None when the key could not be parsed.
    pub fingerprint: Option<String>,
    /// Certificate details, for certificate key types.
    pub cert: Option<CertInfo>,
    /// Why the key could not be parsed (fingerprint is None then).
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub key_id: String,
    pub serial: u64,
    /// `SHA256:…` of the signing CA key.
    pub ca_fingerprint: String,
}

/// The parsed variable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub methods: Vec<Method>,
    /// Set when the value was not (fully) parsed: too long, too many lines.
    pub truncated: Option<String>,
}

impl AuthInfo {
    /// Parses the value. Never fails: unknown shapes become methods with no
    /// key; a key that cannot be parsed keeps its type and an error.
    pub fn parse(value: &str) -> AuthInfo {
        let mut info = AuthInfo::default();
        if value.len() > MAX_LEN {
            info.truncated = Some(format!("{} bytes, more than {MAX_LEN}", value.len()));
            return info;
        }
        for (n, line) in value
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .enumerate()
        {
            if n == MAX_LINES {
                info.truncated = Some(format!("more than {MAX_LINES} lines"));
                break;
            }
            info.methods.push(parse_line(line));
        }
        info
    }

    /// The `publickey` methods, in order.
    pub fn publickeys(&self) -> impl Iterator<Item = &Method> {
        self.methods.iter().filter(|m| m.is_publickey())
    }

    /// A `publickey` method whose key parses. The word alone is not
    /// enough: a value rewritten before pam_keyward (e.g. by
    /// `pam_env user_readenv=1`) could carry just that word.
    pub fn has_publickey(&self) -> bool {
        self.publickeys()
            .any(|m| m.key.as_ref().is_some_and(|k| k.fingerprint.is_some()))
    }

    /// `publickey,keyboard-interactive/pam` (empty string: no method).
    pub fn labels(&self) -> String {
        let v: Vec<String> = self.methods.iter().map(Method::label).collect();
        v.join(",")
    }
}

fn parse_line(line: &str) -> Method {
    let mut toks = line.split_ascii_whitespace();
    let first = toks.next().unwrap_or_default();
    let (name, submethod) = match first.split_once('/') {
        Some((n, s)) => (n.to_owned(), Some(s.to_owned())),
        None => (first.to_owned(), None),
    };
    let key = if matches!(name.as_str(), "publickey" | "hostbased") {
        toks.next().map(|key_type| parse_key(key_type, toks.next()))
    } else {
        None
    };
    Method {
        name,
        submethod,
        key,
    }
}

fn parse_key(key_type: &str, blob: Option<&str>) -> Key {
    let mut key = Key {
        key_type: key_type.to_owned(),
        fingerprint: None,
        cert: None,
        error: None,
    };
    let Some(blob) = blob else {
        key.error = Some("no key data".into());
        return key;
    };
    let text = format!("{key_type} {blob}");
    if key_type.contains("-cert-v0") {
        match Certificate::from_openssh(&text) {
            Ok(cert) => {
                key.fingerprint = Some(cert.public_key().fingerprint(HashAlg::Sha256).to_string());
                key.cert = Some(CertInfo {
                    key_id: cert.key_id().to_owned(),
                    serial: cert.serial(),
                    ca_fingerprint: cert
                        .signature_key()
                        .fingerprint(HashAlg::Sha256)
                        .to_string(),
                });
            }
            Err(e) => key.error = Some(format!("certificate: {e}")),
        }
    } else {
        match PublicKey::from_openssh(&text) {
            Ok(pk) => key.fingerprint = Some(pk.fingerprint(HashAlg::Sha256).to_string()),
            Err(e) => key.error = Some(format!("public key: {e}")),
        }
    }
    key
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Made with ssh-keygen 9.2; fingerprints from `ssh-keygen -lf`.
    pub const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd2U1CU5aF1C6LhaOWKEq5SjtwJ9njFX9QYSgWtsSh9";
    pub const ED_FP: &str = "SHA256:eHmmM4iCrkPl0CV/9Eq5YIziSU1qVSZNDlSXTYEOc7o";
    pub const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBCKyjHTgMfYaQvDT8Vuu9DoIhkswmRT6EkflUyXcViZ3+WS5nLrdCGSpA7I6KT/mO+f+egu9cxe7mpKogy3W8Y=";
    pub const EC_FP: &str = "SHA256:gU1alVA2mmBAJfQkRWeOnsrpbH8xrL2B6qc4O/COi7M";
    /// ED signed by a CA (`-I "alice@corp laptop" -n alice -z 42`).
    pub const CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIOq/5ydxdfJTTexzFhv/ThsE2Xt5R2Ow1oWH8deQg4Q2AAAAIOd2U1CU5aF1C6LhaOWKEq5SjtwJ9njFX9QYSgWtsSh9AAAAAAAAACoAAAABAAAAEWFsaWNlQGNvcnAgbGFwdG9wAAAACQAAAAVhbGljZQAAAABrBBODAAAAAH3C6K8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACDRfQVjdaBlBKYJ8Ehi6DnDhxsIdz0h2UdNbFtbdXecngAAAFMAAAALc3NoLWVkMjU1MTkAAABANVy6DHL0xSF8w9WIB1+8PRHczjZLl/m0OoEtxoHOpZuRHtal2Nf3bOPEA8bY8PUzIfuisy9ki0NR3Hz5mZKxCw==";
    pub const CA_FP: &str = "SHA256:pPnqWze3Jdcx6uCJE3phMqRkPiXj27oxuGurQr9eJI0";

    #[test]
    fn single_publickey() {
        let info = AuthInfo::parse(&format!("publickey {ED}\n"));
        assert_eq!(info.methods.len(), 1);
        let m = &info.methods[0];
        assert!(m.is_publickey());
        assert_eq!(m.label(), "publickey");
        let k = m.key.as_ref().unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.fingerprint.as_deref(), Some(ED_FP));
        assert_eq!(k.cert, None);
        assert_eq!(k.error, None);
        assert!(info.has_publickey());
        assert_eq!(info.truncated, None);
    }

    #[test]
    fn multi_line_publickey_then_password() {
        let v = format!("publickey {EC}\npassword\n");
        let info = AuthInfo::parse(&v);
        assert_eq!(info.labels(), "publickey,password");
        let keys: Vec<_> = info.publickeys().collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].key.as_ref().unwrap().fingerprint.as_deref(),
            Some(EC_FP)
        );
        // Two keys (AuthenticationMethods publickey,publickey), no trailing \n.
        let info = AuthInfo::parse(&format!("publickey {ED}\npublickey {EC}"));
        let fps: Vec<_> = info
            .publickeys()
            .map(|m| m.key.as_ref().unwrap().fingerprint.clone().unwrap())
            .collect();
        assert_eq!(fps, [ED_FP, EC_FP]);
    }

    #[test]
    fn certificate_reports_certified_key_and_ca() {
        let info = AuthInfo::parse(&format!("publickey {CERT}\n"));
        let k = info.methods[0].key.as_ref().unwrap();
        assert_eq!(k.key_type, "ssh-ed25519-cert-v01@openssh.com");
        assert_eq!(k.fingerprint.as_deref(), Some(ED_FP));
        let c = k.cert.as_ref().unwrap();
        assert_eq!(c.key_id, "alice@corp laptop");
        assert_eq!(c.serial, 42);
        assert_eq!(c.ca_fingerprint, CA_FP);
    }

    #[test]
    fn keyboard_interactive_and_password_have_no_key() {
        let info = AuthInfo::parse("keyboard-interactive/pam\n");
        assert_eq!(info.methods.len(), 1);
        assert_eq!(info.methods[0].name, "keyboard-interactive");
        assert_eq!(info.methods[0].submethod.as_deref(), Some("pam"));
        assert_eq!(info.methods[0].label(), "keyboard-interactive/pam");
        assert!(!info.has_publickey());
        let info = AuthInfo::parse("password\n");
        assert_eq!(info.labels(), "password");
        assert!(info.methods[0].key.is_none());
        assert!(!info.has_publickey());
    }

    #[test]
    fn publickey_needs_a_key_that_parses() {
        for v in [
            "publickey\n",
            "publickey ssh-ed25519\n",
            "publickey ssh-ed25519 AAAA!!!!\n",
            "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
        ] {
            assert!(!AuthInfo::parse(v).has_publickey(), "{v:?}");
        }
        assert!(AuthInfo::parse(&format!("publickey {ED}\n")).has_publickey());
    }

    #[test]
    fn empty_means_no_method() {
        for v in ["", "\n", "\n\n  \n", "\r\n"] {
            let info = AuthInfo::parse(v);
            assert!(info.methods.is_empty(), "{v:?}");
            assert!(!info.has_publickey());
            assert_eq!(info.labels(), "");
        }
    }

    #[test]
    fn hostbased_key_is_not_publickey() {
        let info = AuthInfo::parse(&format!("hostbased {ED}\n"));
        assert!(!info.has_publickey());
        assert_eq!(
            info.methods[0].key.as_ref().unwrap().fingerprint.as_deref(),
            Some(ED_FP)
        );
    }

    #[test]
    fn unparsable_keys_keep_method_and_type() {
        for (v, ty) in [
            ("publickey ssh-ed25519 AAAAnotbase64!!", "ssh-ed25519"),
            ("publickey ssh-ed25519", "ssh-ed25519"),
            ("publickey ssh-foo AAAAC3NzaC1lZDI1NTE5", "ssh-foo"),
            (
                "publickey ssh-ed25519-cert-v01@openssh.com AAAA",
                "ssh-ed25519-cert-v01@openssh.com",
            ),
        ] {
            let info = AuthInfo::parse(v);
            // The method is kept (for the log), but it proves no key.
            assert_eq!(info.publickeys().count(), 1, "{v}");
            assert!(!info.has_publickey(), "{v}");
            let k = info.methods[0].key.as_ref().unwrap();
            assert_eq!(k.key_type, ty);
            assert_eq!(k.fingerprint, None, "{v}");
            assert!(k.error.is_some(), "{v}");
        }
        // A publickey line without even a key type: still the method.
        let info = AuthInfo::parse("publickey\n");
        assert_eq!(info.publickeys().count(), 1);
        assert!(!info.has_publickey());
        assert!(info.methods[0].key.is_none());
    }

    #[test]
    fn extra_tokens_after_the_key_are_ignored() {
        let info = AuthInfo::parse(&format!("publickey {ED} some extra info\n"));
        assert_eq!(
            info.methods[0].key.as_ref().unwrap().fingerprint.as_deref(),
            Some(ED_FP)
        );
    }

    #[test]
    fn bounds() {
        let long = "x".repeat(MAX_LEN + 1);
        let info = AuthInfo::parse(&long);
        assert!(info.methods.is_empty());
        assert!(info.truncated.is_some());
        let many = "password\n".repeat(MAX_LINES + 5);
        let info = AuthInfo::parse(&many);
        assert_eq!(info.methods.len(), MAX_LINES);
        assert!(info.truncated.is_some());
    }

    #[test]
    fn a_value_of_exactly_64_kib_is_still_read() {
        // The documented bound is 64 KiB (65,536 bytes), inclusive.
        let key = format!("publickey {ED}\n");
        let full = format!("{key}{}", "\n".repeat(65_536 - key.len()));
        assert_eq!(full.len(), 65_536);
        let info = AuthInfo::parse(&full);
        assert_eq!(info.truncated, None);
        assert!(info.has_publickey());
        let over = format!("{full}\n");
        let info = AuthInfo::parse(&over);
        assert!(info.truncated.is_some());
        assert!(!info.has_publickey());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for v in [
            "/",
            "//",
            "publickey/ x y z",
            "\0\0\0",
            "publickey \u{85} \u{2028}",
            "publickey ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ==",
            "publickey ssh-rsa-cert-v01@openssh.com AAAAHHNzaC1yc2EtY2VydC12MDFAb3BlbnNzaC5jb20=",
        ] {
            let _ = AuthInfo::parse(v);
        }
    }
}
