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

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64ct::Encoding;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::signed::NAMESPACE;

/// The message hash ssh-keygen uses for SSHSIG.
const HASH: HashAlg = HashAlg::Sha512;
/// Larger "key files" are refused (an RSA 16384 key is about 13 KiB).
const KEY_FILE_LIMIT: u64 = 64 * 1024;
/// Largest signature read back (an SSHSIG of the largest keys is a few KiB).
pub const MAX_SIG: u64 = 64 * 1024;

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
    if holds(text, b"ecdsa-sha2-nistp521") {
        // ssh-key 0.6.7 refuses about a third of OpenSSH's P-521 keys
        // ("length invalid"): all go to ssh-keygen, so that a key does not
        // sign one way or the other by chance.
        return Ok(KeyFile::ForSshKeygen(
            "an ECDSA P-521 key, which keyward signs with through ssh-keygen \
             (ed25519, P-256 and P-384 keys sign in-process)"
                .into(),
        ));
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
        // q), so every RSA signature fails: ed25519, P-256 and P-384 sign here.
        return Ok(KeyFile::ForSshKeygen(
            "an RSA key, which keyward signs with through ssh-keygen \
             (an ed25519, P-256 or P-384 key signs in-process)"
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

/// Whether the binary inside an OpenSSH private key's armor holds
/// `needle` (the key type names are in its clear part).
fn holds(armored: &str, needle: &[u8]) -> bool {
    let b64: String = armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64ct::Base64::decode_vec(&b64)
        .is_ok_and(|bin| bin.windows(needle.len()).any(|w| w == needle))
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

    /// The public half: of the key itself, or read from the key file (or
    /// `KEY.pub`) for ssh-keygen's; None when neither is an OpenSSH key.
    pub fn public_key(&self) -> Option<PublicKey> {
        match self {
            Signer::Native { key, .. } => Some(key.public_key().clone()),
            Signer::SshKeygen { path, .. } => public_key_of(path),
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

/// `ssh-keygen -Y sign` writes `FILE.sig` next to the file it signs, by
/// name, through any link there. So it signs a copy in a fresh private
/// folder (mode 0700, an unpredictable name created exclusively under
/// `$TMPDIR`), never in the output folder that others may write; the
/// signature is read back from there and the folder removed. Its terminal
/// stays ours, so a passphrase or a token touch can be asked for.
fn sign_ssh_keygen(key: &Path, msg: &[u8]) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| e.to_string();
    let dir = tempfile::Builder::new()
        .prefix("keyward-sign-")
        .tempdir()
        .map_err(fail)?;
    let file = dir.path().join("file");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(msg))
        .map_err(fail)?;
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
    let mut sig = Vec::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.path().join("file.sig"))
        .and_then(|f| f.take(MAX_SIG + 1).read_to_end(&mut sig))
        .map_err(fail)?;
    if sig.len() as u64 > MAX_SIG {
        return Err("ssh-keygen wrote an oversized signature".into());
    }
    dir.close().map_err(fail)?;
    Ok(sig)
}

/// The public half of `signer` (an OpenSSH private key, whose public half
/// is readable without its passphrase, or a public key), else of
/// `signer.pub`; None when neither is an OpenSSH key.
pub fn public_key_of(signer: &Path) -> Option<PublicKey> {
    let parse = |path: &Path| -> Option<PublicKey> {
        let mut text = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(KEY_FILE_LIMIT)
            .read_to_string(&mut text)
            .ok()?;
        PublicKey::from_openssh(text.trim())
            .ok()
            .or_else(|| Some(PrivateKey::from_openssh(&text).ok()?.public_key().clone()))
    };
    parse(signer).or_else(|| {
        let mut pub_path = signer.as_os_str().to_owned();
        pub_path.push(".pub");
        parse(Path::new(&pub_path))
    })
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

    #[test]
    fn the_public_half_of_every_signer_form() {
        let dir = tempfile::tempdir().unwrap();
        let gen = |name: &str, pass: &str| {
            let path = dir.path().join(name);
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", pass, "-f"])
                .arg(&path)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            path
        };
        let plain = gen("plain", "");
        let locked = gen("locked", "a passphrase");
        let want = |p: &Path| {
            let pub_line = std::fs::read_to_string(format!("{}.pub", p.display())).unwrap();
            ssh_key::PublicKey::from_openssh(pub_line.trim()).unwrap()
        };
        assert_eq!(public_key_of(&plain), Some(want(&plain)));
        // The public half of an encrypted key needs no passphrase.
        let locked_pub = want(&locked);
        std::fs::remove_file(format!("{}.pub", locked.display())).unwrap();
        assert_eq!(
            public_key_of(&locked).map(|k| k.key_data().clone()),
            Some(locked_pub.key_data().clone())
        );
        // A public key (its private half in ssh-agent).
        let public = dir.path().join("plain.pub");
        assert_eq!(public_key_of(&public), Some(want(&plain)));
        // Something else, with a .pub next to it; and nothing at all.
        let other = dir.path().join("other");
        std::fs::write(&other, "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        std::fs::copy(&public, dir.path().join("other.pub")).unwrap();
        assert_eq!(public_key_of(&other), Some(want(&plain)));
        assert_eq!(public_key_of(&dir.path().join("absent")), None);
    }
}
