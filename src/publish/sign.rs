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
const MAX_SIG: u64 = 64 * 1024;

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
