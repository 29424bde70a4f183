//! Producing SSHSIG signatures for `keyward publish`: the format of
//! `ssh-keygen -Y sign -n keyward` (namespace `keyward`, SHA-512 message
//! hash), which `signed::verify` and `ssh-keygen -Y verify` accept.
//!
//! An unencrypted OpenSSH private key file signs in-process: one signature
//! costs microseconds instead of a process, which is what makes a full
//! re-sign of a large directory affordable. Everything else goes through
//! `ssh-keygen`, which admins already use for it: a public key whose private
//! half is in ssh-agent, a key on a token (`sk-*`), an encrypted key (its
//! passphrase is asked by ssh-keygen), a key in another file format.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::signed::NAMESPACE;

/// The message hash ssh-keygen uses for SSHSIG.
const HASH: HashAlg = HashAlg::Sha512;
/// Larger "key files" are refused (an RSA 16384 key is about 12 kB).
const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// How `--sign-with` asks the signer to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum How {
    /// In-process when the file is an unencrypted private key, else ssh-keygen.
    #[default]
    Auto,
    /// In-process only: any other key file is an error.
    Native,
    /// Always ssh-keygen (one process per file).
    SshKeygen,
}

impl How {
    pub fn parse(s: &str) -> Result<How, String> {
        match s {
            "auto" => Ok(How::Auto),
            "native" => Ok(How::Native),
            "ssh-keygen" => Ok(How::SshKeygen),
            _ => Err(format!(
                "unknown signing method {s:?} (auto, native or ssh-keygen)"
            )),
        }
    }
}

/// A signing key, ready to sign many files.
pub enum Signer {
    Native {
        key: Box<PrivateKey>,
        path: PathBuf,
    },
    /// `ssh-keygen -Y sign -f path`; `why`: why not in-process.
    SshKeygen {
        path: PathBuf,
        why: String,
    },
}

/// What a key file is, from its text (pure).
#[derive(Debug)]
enum KeyFile {
    Usable(Box<PrivateKey>),
    /// Only ssh-keygen can use it: the reason.
    ForSshKeygen(String),
}

const OPENSSH_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const TO_SSH_KEYGEN: &str = "sign with ssh-keygen (--sign-with ssh-keygen), or load the key \
     into ssh-agent and give its public key as --signer";

fn classify(text: &str) -> Result<KeyFile, String> {
    let text = text.trim_start();
    if !text.starts_with(OPENSSH_PRIVATE) {
        let why = if text.starts_with("-----BEGIN ") {
            "not in OpenSSH's private key format (PEM/PKCS#8)"
        } else {
            "not a private key (a public key: its private half is expected in ssh-agent)"
        };
        return Ok(KeyFile::ForSshKeygen(why.into()));
    }
    let key = PrivateKey::from_openssh(text).map_err(|e| format!("unreadable private key: {e}"))?;
    if key.is_encrypted() {
        return Ok(KeyFile::ForSshKeygen(
            "encrypted with a passphrase; keyward does not decrypt keys".into(),
        ));
    }
    let alg = key.algorithm();
    if matches!(
        alg,
        ssh_key::Algorithm::SkEd25519 | ssh_key::Algorithm::SkEcdsaSha2NistP256
    ) {
        return Ok(KeyFile::ForSshKeygen(
            "held on a security key (sk-*): only ssh-keygen can sign with it".into(),
        ));
    }
    if alg.clone().is_rsa() {
        // ssh-key 0.6.7 builds the RSA private key from p twice (not p and
        // q), so every RSA signature fails: ed25519 and ECDSA sign here.
        return Ok(KeyFile::ForSshKeygen(
            "an RSA key, which keyward signs with through ssh-keygen \
             (an ed25519 or ECDSA key signs in-process)"
                .into(),
        ));
    }
    // Find out now, not on the first file, if the crate cannot sign with it.
    if let Err(e) = key.sign(NAMESPACE, HASH, b"probe") {
        return Ok(KeyFile::ForSshKeygen(format!(
            "a {alg} key the in-process signer cannot use ({e})"
        )));
    }
    Ok(KeyFile::Usable(Box::new(key)))
}

impl Signer {
    /// Opens the signing key `path` for `how`.
    pub fn open(path: &Path, how: How) -> Result<Signer, String> {
        let shown = path.display();
        if how == How::SshKeygen {
            return Ok(Signer::SshKeygen {
                path: path.to_owned(),
                why: "--sign-with ssh-keygen".into(),
            });
        }
        // A private key must be private (ssh-keygen refuses it otherwise
        // too); a public key file is only read to tell which kind it is.
        let (text, private_err) = match crate::os::secret::read(path, KEY_FILE_LIMIT) {
            Ok(bytes) => (bytes, None),
            Err(e) => {
                let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
                (bytes, Some(e))
            }
        };
        let text = String::from_utf8(text).map_err(|_| format!("{shown}: not a key file"))?;
        let kind = classify(&text).map_err(|e| format!("{shown}: {e}"))?;
        match (kind, private_err, how) {
            (KeyFile::Usable(_), Some(e), _) => Err(format!("private key {e}")),
            (KeyFile::Usable(key), None, _) => Ok(Signer::Native {
                key,
                path: path.to_owned(),
            }),
            (KeyFile::ForSshKeygen(why), _, How::Native) => Err(format!(
                "{shown}: cannot sign in-process: the key is {why}; {TO_SSH_KEYGEN}"
            )),
            (KeyFile::ForSshKeygen(why), _, _) => Ok(Signer::SshKeygen {
                path: path.to_owned(),
                why,
            }),
        }
    }

    /// Whether signatures are made in-process.
    pub fn is_native(&self) -> bool {
        matches!(self, Signer::Native { .. })
    }

    /// One line for the report: which key, and how it signs.
    pub fn describe(&self) -> String {
        match self {
            Signer::Native { key, path } => format!(
                "signing in-process with {} ({})",
                path.display(),
                key.public_key().fingerprint(HashAlg::Sha256)
            ),
            Signer::SshKeygen { path, why } => format!(
                "signing with ssh-keygen -Y sign -f {} ({why})",
                path.display()
            ),
        }
    }

    /// The public half, when known without asking ssh-keygen.
    pub fn public_key(&self) -> Option<PublicKey> {
        match self {
            Signer::Native { key, .. } => Some(key.public_key().clone()),
            Signer::SshKeygen { .. } => None,
        }
    }

    /// The armored SSHSIG signature of `msg` (what `{file}.sig` holds).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Signer::Native { key, .. } => sign_native(key, msg),
            Signer::SshKeygen { path, .. } => sign_ssh_keygen(path, msg),
        }
    }
}

/// In-process SSHSIG (pure).
pub fn sign_native(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, String> {
    let sig = key
        .sign(NAMESPACE, HASH, msg)
        .map_err(|e| format!("signing: {e}"))?;
    sig.to_pem(LineEnding::LF)
        .map(String::into_bytes)
        .map_err(|e| format!("encoding the signature: {e}"))
}

/// `ssh-keygen -Y sign` on a private temporary copy of `msg`; its terminal
/// stays ours, so a passphrase or a token touch can be asked for.
fn sign_ssh_keygen(key: &Path, msg: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).map_err(|e| format!("{}: {e}", file.display()))?;
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(key)
        .arg(&file)
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| format!("running ssh-keygen: {e}"))?;
    if !status.success() {
        return Err(format!("ssh-keygen -Y sign failed ({status})"));
    }
    let sig = dir.path().join("msg.sig");
    std::fs::read(&sig).map_err(|e| format!("{}: {e}", sig.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unencrypted ed25519 key (ssh-key's own documentation example).
    const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYgAAAJgAIAxdACAM
XQAAAAtzc2gtZWQyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYg
AAAEC2BsIi0QwW2uFscKTUUXNHLsYX4FxlaSDSblbAj7WR7bM+rvN+ot98qgEN796jTiQf
ZfG1KaT0PtFDJ/XFSqtiAAAAEHVzZXJAZXhhbXBsZS5jb20BAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn native_signatures_verify_as_keyward_signatures() {
        let KeyFile::Usable(key) = classify(ED25519).unwrap() else {
            panic!("an unencrypted ed25519 key signs in-process");
        };
        let body = b"#keyward user=alice serial=1 expires=2030-01-01T00:00:00Z\n";
        let pem = sign_native(&key, body).unwrap();
        let text = String::from_utf8(pem.clone()).unwrap();
        assert!(
            text.starts_with("-----BEGIN SSH SIGNATURE-----\n"),
            "{text}"
        );
        assert!(text.ends_with("-----END SSH SIGNATURE-----\n"), "{text}");
        let signers = [key.public_key().clone()];
        crate::signed::verify(body, &pem, &signers).unwrap();
        assert!(crate::signed::verify(b"another body", &pem, &signers).is_err());
        let sig = ssh_key::SshSig::from_pem(&pem).unwrap();
        assert_eq!(sig.hash_alg(), HashAlg::Sha512);
    }

    #[test]
    fn other_key_files_go_to_ssh_keygen() {
        for (text, why) in [
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti x\n", "ssh-agent"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n", "PEM"),
        ] {
            match classify(text).unwrap() {
                KeyFile::ForSshKeygen(w) => assert!(w.contains(why), "{w}"),
                KeyFile::Usable(_) => panic!("{text}"),
            }
        }
        assert!(classify(
            "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        .is_err());
        assert_eq!(How::parse("native"), Ok(How::Native));
        assert!(How::parse("agent").is_err());
    }
}
