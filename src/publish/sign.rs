//! Signing with `ssh-keygen -Y sign -n keyward` (OpenSSH's own tool:
//! passphrases, agents and hardware keys work as admins already use them).
//!
//! ssh-keygen writes `FILE.sig` next to the file it signs, by name, through
//! any link there. So it signs a copy in a fresh private folder (mode 0700,
//! an unpredictable name created exclusively under `$TMPDIR`, default
//! `/tmp`), never in the output folder that others may write; the signature
//! is read back from there and the folder removed.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Largest signature read back (an SSHSIG of the largest keys is a few KiB).
pub const MAX_SIG: u64 = 64 * 1024;

/// The detached SSHSIG of `body` by `signer`; `what` names it in errors.
pub fn sign(body: &[u8], signer: &Path, what: &str) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("signing {what}: {e}");
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
        .and_then(|mut f| f.write_all(body))
        .map_err(fail)?;
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", crate::signed::NAMESPACE, "-f"])
        .arg(signer)
        .arg(&file)
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| format!("running ssh-keygen: {e}"))?;
    if !status.success() {
        return Err(format!("ssh-keygen -Y sign failed for {what} ({status})"));
    }
    let mut sig = Vec::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.path().join("file.sig"))
        .and_then(|f| f.take(MAX_SIG + 1).read_to_end(&mut sig))
        .map_err(fail)?;
    if sig.len() as u64 > MAX_SIG {
        return Err(format!(
            "signing {what}: ssh-keygen wrote an oversized signature"
        ));
    }
    dir.close().map_err(fail)?;
    Ok(sig)
}

/// The public half of `signer` (an OpenSSH private key, whose public half
/// is readable without its passphrase, or a public key), else of
/// `signer.pub`; None when neither is an OpenSSH key.
pub fn public_key(signer: &Path) -> Option<ssh_key::PublicKey> {
    let parse = |path: &Path| -> Option<ssh_key::PublicKey> {
        let mut text = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_KEY)
            .read_to_string(&mut text)
            .ok()?;
        ssh_key::PublicKey::from_openssh(text.trim())
            .ok()
            .or_else(|| {
                Some(
                    ssh_key::PrivateKey::from_openssh(&text)
                        .ok()?
                        .public_key()
                        .clone(),
                )
            })
    };
    parse(signer).or_else(|| {
        let mut pub_path = signer.as_os_str().to_owned();
        pub_path.push(".pub");
        parse(Path::new(&pub_path))
    })
}

/// Largest key file read (an RSA-16384 private key is ~13 KiB).
const MAX_KEY: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(public_key(&plain), Some(want(&plain)));
        // The public half of an encrypted key needs no passphrase.
        let locked_pub = want(&locked);
        std::fs::remove_file(format!("{}.pub", locked.display())).unwrap();
        assert_eq!(
            public_key(&locked).map(|k| k.key_data().clone()),
            Some(locked_pub.key_data().clone())
        );
        // A public key (its private half in ssh-agent).
        let public = dir.path().join("plain.pub");
        assert_eq!(public_key(&public), Some(want(&plain)));
        // Something else, with a .pub next to it; and nothing at all.
        let other = dir.path().join("other");
        std::fs::write(&other, "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        std::fs::copy(&public, dir.path().join("other.pub")).unwrap();
        assert_eq!(public_key(&other), Some(want(&plain)));
        assert_eq!(public_key(&dir.path().join("absent")), None);
    }
}
