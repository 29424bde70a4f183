//! SSH key pairs and user certificates, made with `ssh-keygen`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::must;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    /// Curve size: 256, 384 or 521.
    Ecdsa(u32),
    /// Modulus size in bits.
    Rsa(u32),
}

impl KeyType {
    fn args(self) -> Vec<String> {
        match self {
            KeyType::Ed25519 => vec!["-t".into(), "ed25519".into()],
            KeyType::Ecdsa(b) => vec!["-t".into(), "ecdsa".into(), "-b".into(), b.to_string()],
            KeyType::Rsa(b) => vec!["-t".into(), "rsa".into(), "-b".into(), b.to_string()],
        }
    }
}

/// A key pair on disk: `path` (private, 0600) and `path.pub`.
#[derive(Debug, Clone)]
pub struct SshKey {
    pub path: PathBuf,
    pub pub_path: PathBuf,
    pub kind: KeyType,
}

impl SshKey {
    /// `ssh-keygen -t TYPE [-b N] -N '' -C kwt-NAME -f DIR/NAME`.
    /// `dir` should be a [`super::TestDir`] path (removed with it).
    pub fn generate(dir: &Path, name: &str, kind: KeyType) -> SshKey {
        let path = dir.join(name);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("pub"));
        must(
            Command::new("ssh-keygen")
                .args(kind.args())
                .args(["-q", "-N", "", "-C"])
                .arg(format!("kwt-{name}"))
                .arg("-f")
                .arg(&path),
        );
        let pub_path = PathBuf::from(format!("{}.pub", path.display()));
        SshKey {
            path,
            pub_path,
            kind,
        }
    }

    pub fn ed25519(dir: &Path, name: &str) -> SshKey {
        Self::generate(dir, name, KeyType::Ed25519)
    }

    /// The public key line (`ssh-ed25519 AAAA… kwt-NAME`), trimmed.
    pub fn public_line(&self) -> String {
        fs::read_to_string(&self.pub_path)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `TYPE BASE64` without the comment: what keyward prints back.
    pub fn public_material(&self) -> String {
        let line = self.public_line();
        let mut it = line.split_whitespace();
        format!("{} {}", it.next().unwrap(), it.next().unwrap())
    }

    /// `SHA256:…` as printed by `ssh-keygen -lf` (what sshd passes as %f).
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.pub_path)
    }

    /// `cert-authority TYPE BASE64 COMMENT` for this key used as a user CA.
    pub fn cert_authority_line(&self) -> String {
        format!("cert-authority {}", self.public_line())
    }

    /// Signs `key` as a user certificate with this key as CA:
    /// `ssh-keygen -s CA -I ID -n PRINCIPALS -V VALIDITY key.pub`.
    /// The certificate is moved to `KEY.cert` (not `KEY-cert.pub`, which
    /// ssh would pick up by itself); pass it with `-o CertificateFile=`.
    pub fn sign_user_cert(&self, key: &SshKey, id: &str, principals: &[&str]) -> PathBuf {
        self.sign_user_cert_validity(key, id, principals, "-5m:+1h")
    }

    pub fn sign_user_cert_validity(
        &self,
        key: &SshKey,
        id: &str,
        principals: &[&str],
        validity: &str,
    ) -> PathBuf {
        must(
            Command::new("ssh-keygen")
                .arg("-q")
                .arg("-s")
                .arg(&self.path)
                .args(["-I", id, "-n", &principals.join(","), "-V", validity])
                .arg(&key.pub_path),
        );
        let generated = PathBuf::from(format!("{}-cert.pub", key.path.display()));
        let cert = PathBuf::from(format!("{}.cert", key.path.display()));
        fs::rename(&generated, &cert).unwrap();
        cert
    }
}

/// `ssh-keygen -lf PATH` → `SHA256:…`.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let out = must(Command::new("ssh-keygen").arg("-lf").arg(pub_path));
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("fingerprint in ssh-keygen -lf output")
        .to_owned()
}

/// The fingerprint of a public key line (written to a scratch file in `dir`).
pub fn fingerprint_of_line(dir: &Path, line: &str) -> String {
    let p = dir.join(format!("fp-{}.pub", super::unique()));
    fs::write(&p, format!("{line}\n")).unwrap();
    let fp = fingerprint_of(&p);
    let _ = fs::remove_file(&p);
    fp
}
